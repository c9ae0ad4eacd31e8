/* loadgen_stats.c - what the load generator measures: the measurement window,
 * the counters, the latency and relay samples, its own CPU time, the
 * "RESULT key=value ..." line and the raw sample files (--samples-out).
 */
#include "loadgen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

uint64_t t_measure0, t_measure1; /* the measurement window */
int measuring, stop_sending;

samples_t lat_us, relay_ns;
uint64_t turns_done, turns_window, errors, late, connect_fail, ws_open, protocol_errors,
    pings_sent, pongs_rcvd, server_pings, turns_inflight;
int errors_printed;

void sample_add(samples_t *s, uint64_t v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = realloc(s->v, s->cap * sizeof(uint32_t));
        if (!s->v) {
            die("out of memory");
        }
    }
    s->v[s->n++] = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static double pct(const samples_t *s, double q)
{
    size_t i;

    if (!s->n) {
        return 0;
    }
    i = (size_t)(q * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

double cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Sorts the samples and prints the RESULT line; cpu is the load
 * generator's CPU seconds over the window. */
void result_print(double cpu)
{
    qsort(lat_us.v, lat_us.n, sizeof(uint32_t), cmp_u32);
    qsort(relay_ns.v, relay_ns.n, sizeof(uint32_t), cmp_u32);

    double secs = opt.mode == M_IDLE ? (t_measure1 - t_measure0) / 1e9 : opt.duration;
    printf("RESULT label=%s mode=%s conns=%d open=%llu connect_failed=%llu rate=%g "
           "tokens=%d delay_us=%d secs=%.3f turns=%llu turns_per_s=%.1f errors=%llu "
           "late=%llu lat_n=%zu lat_min_us=%.0f lat_p50_us=%.0f lat_p90_us=%.0f "
           "lat_p99_us=%.0f lat_max_us=%.0f relay_n=%zu relay_p50_us=%.1f "
           "relay_p99_us=%.1f relay_max_us=%.1f cpu_s=%.3f pings=%llu pongs=%llu "
           "server_pings=%llu protocol_errors=%llu\n",
           opt.label,
           opt.mode == M_WS       ? "ws"
           : opt.mode == M_DIRECT ? "direct"
                                  : "idle",
           opt.conns, (unsigned long long)ws_open, (unsigned long long)connect_fail,
           opt.mode == M_IDLE ? 0 : opt.rate, opt.tokens, opt.delay_us, secs,
           (unsigned long long)(opt.mode == M_IDLE ? lat_us.n : turns_window),
           (opt.mode == M_IDLE ? lat_us.n : turns_window) / secs,
           (unsigned long long)errors, (unsigned long long)late, lat_us.n,
           lat_us.n ? (double)lat_us.v[0] : 0, pct(&lat_us, 0.5), pct(&lat_us, 0.9),
           pct(&lat_us, 0.99), lat_us.n ? (double)lat_us.v[lat_us.n - 1] : 0, relay_ns.n,
           pct(&relay_ns, 0.5) / 1000, pct(&relay_ns, 0.99) / 1000,
           relay_ns.n ? relay_ns.v[relay_ns.n - 1] / 1000.0 : 0, cpu,
           (unsigned long long)pings_sent, (unsigned long long)pongs_rcvd,
           (unsigned long long)server_pings, (unsigned long long)protocol_errors);
    fflush(stdout);
}

/* Writes one kind of samples to PREFIX.suffix (native uint32). */
void write_samples(const char *suffix, samples_t *s)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s.%s", opt.samples_out, suffix);
    f = fopen(path, "wb");
    if (!f) {
        die("%s: %s", path, strerror(errno));
    }
    if (s->n && fwrite(s->v, sizeof(uint32_t), s->n, f) != s->n) {
        die("%s: short write", path);
    }
    fclose(f);
}
