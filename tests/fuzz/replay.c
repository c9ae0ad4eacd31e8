/* replay.c - runs fuzz inputs through a libFuzzer target without libFuzzer.
 *
 * Linked with every tests/fuzz/fuzz_*.c: for each argument, a directory's
 * regular files (in name order, so runs are reproducible) or a file given
 * directly are read and passed to LLVMFuzzerTestOneInput once each. A crash
 * or sanitizer report fails the run; otherwise it prints how many inputs ran
 * and exits 0. Unreadable paths are reported and skipped.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads a whole file; NULL on error. *size gets its length. */
static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf = NULL, *nb;
    size_t cap = 0, len = 0, r;

    if (!fp) {
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = nb;
        }
        r = fread(buf + len, 1, cap - len, fp);
        len += r;
        if (r == 0) {
            break;
        }
    }
    if (ferror(fp)) {
        free(buf);
        fclose(fp);
        return NULL;
    }
    fclose(fp);
    /* Shrink to exactly len bytes so ASan catches reads past the end. */
    nb = realloc(buf, len ? len : 1);
    if (nb) {
        buf = nb;
    }
    *size = len;
    return buf;
}

static int run_file(const char *path)
{
    size_t size = 0;
    uint8_t *data = read_file(path, &size);

    if (!data) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        return 0;
    }
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    int ran = 0;

    if (!d) {
        fprintf(stderr, "replay: cannot open %s\n", dir);
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (n == cap) {
            char **nn;
            cap = cap ? cap * 2 : 64;
            nn = realloc(names, cap * sizeof(*names));
            if (!nn) {
                break;
            }
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (names[n]) {
            n++;
        }
    }
    closedir(d);
    if (n) {
        qsort(names, n, sizeof(*names), cmp_names);
    }
    for (i = 0; i < n; i++) {
        size_t pl = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(pl);
        struct stat st;
        if (path) {
            snprintf(path, pl, "%s/%s", dir, names[i]);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                ran += run_file(path);
            }
            free(path);
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    int i, ran = 0;

    for (i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: cannot stat %s\n", argv[i]);
            continue;
        }
        ran += S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]);
    }
    printf("replay: %d input(s) ran\n", ran);
    return 0;
}
