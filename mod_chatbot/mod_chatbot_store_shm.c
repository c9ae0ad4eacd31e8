/* mod_chatbot_store_shm.c - the "shm" store provider: the chat store in one
 * shared-memory segment for all children of one httpd (chat/store.h's
 * shared-memory provider, mod_chatbot/core/chat_store*.c), its persistence
 * to ChatbotHistoryFile, and migration when the sizing directives change.
 *
 * Lifetime: the segment is created once, on the first post_config, in the
 * *process* pool, and re-used by every later generation, so `apachectl
 * graceful` keeps all conversations (old children still finishing their
 * connections use the very same segment; the mod_slotmem_shm approach). If
 * the sizing directives change, a new segment is made and the conversations
 * are migrated into it. With ChatbotHistoryFile, the segment is written to
 * the file by the parent when httpd stops (a pconf cleanup that acts only
 * when httpd is exiting) and read back, after a full consistency check, at
 * the next start.
 *
 * Locking is inside the segment (robust process-shared mutexes, see
 * mod_chatbot/core/chat_store_lock.c): no APR mutex, nothing for the
 * `Mutex` directive to configure, and a child killed at any moment leaves
 * nothing locked. What every provider shares (the handle, child
 * registration, upkeep, backends) is in mod_chatbot_store.c.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_core.h"
#include "ap_mpm.h"
#include "apr_shm.h"
#include "apr_file_io.h"
#include "apr_strings.h"

#include "mod_chatbot.h"

#define USERDATA_KEY "mod_chatbot-store"

typedef struct {
    apr_shm_t *shm;
    void *base;
    apr_size_t size;
    chat_store_layout_t layout;
    const char *history_file;
    server_rec *s;
    int generation; /* post_config count, for logs */
    pid_t pid;      /* the parent (the last to run post_config): only it saves
                     * the file; children and the pre-detach process never */
} chatbot_shm_t;

/* Writes the segment to history_file atomically (tmp + rename). Called
 * from store_save_at_exit when httpd stops, in the parent, when no
 * child runs any more. The parent may be root and the directory writable by
 * others: a leftover or planted <file>.tmp (a symbolic link, a file of other
 * permissions) is removed and the temporary file created anew, exclusively
 * (O_EXCL never follows a link), mode 0600; a failed save removes it. */
static apr_status_t store_save(chatbot_shm_t *sh, apr_pool_t *p)
{
    apr_file_t *f;
    apr_status_t rv;
    apr_size_t n = sh->size;
    const char *tmp = apr_pstrcat(p, sh->history_file, ".tmp", NULL);

    apr_file_remove(tmp, p);
    rv = apr_file_open(
        &f, tmp, APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_EXCL | APR_FOPEN_BINARY,
        APR_FPROT_UREAD | APR_FPROT_UWRITE, p);
    if (rv == APR_SUCCESS) {
        rv = apr_file_write_full(f, sh->base, n, &n);
        if (rv == APR_SUCCESS) {
            rv = apr_file_sync(f);
        }
        apr_file_close(f);
        if (rv == APR_SUCCESS) {
            rv = apr_file_rename(tmp, sh->history_file, p);
        }
        if (rv != APR_SUCCESS) {
            apr_file_remove(tmp, p);
        }
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, sh->s,
                     APLOGNO(10902) "chatbot: could not save the history to %s",
                     sh->history_file);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sh->s,
                     APLOGNO(10903) "chatbot: history saved to %s (%" APR_SIZE_T_FMT
                                    " bytes)",
                     sh->history_file, sh->size);
    }
    return rv;
}

static apr_status_t free_cleanup(void *p)
{
    free(p);
    return APR_SUCCESS;
}

/* n bytes from the heap, freed with pool p; NULL if there is not enough. */
static void *load_buffer(apr_pool_t *p, apr_size_t n)
{
    void *b = malloc(n);

    if (b) {
        apr_pool_cleanup_register(p, b, free_cleanup, apr_pool_cleanup_null);
    }
    return b;
}

/* Reads history_file into the freshly formatted segment if it is a valid
 * store image; a valid image of another layout is migrated (also when it
 * happens to have the same size: the per-message limits change the layout,
 * not the size). Anything else is set aside as <file>.bad and the store
 * starts empty. Only as many bytes as the image's own header announces are
 * ever allocated, whatever the size of the file. */
static void store_load(chatbot_shm_t *sh, apr_pool_t *ptemp)
{
    apr_finfo_t fi;
    apr_file_t *f = NULL;
    apr_status_t rv;
    void *buf;
    apr_size_t n, want;
    chat_store_t *src = NULL;
    chat_store_layout_t lay;
    const char *why = "corrupt or from another version";

    rv = apr_stat(&fi, sh->history_file, APR_FINFO_SIZE | APR_FINFO_TYPE, ptemp);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, sh->s,
                     APLOGNO(10904) "chatbot: no history file %s yet", sh->history_file);
        return;
    }
    if (fi.filetype != APR_REG) {
        ap_log_error(
            APLOG_MARK, APLOG_ERR, 0, sh->s,
            APLOGNO(
                10905) "chatbot: ChatbotHistoryFile %s is not a regular file; starting "
                       "empty (the history cannot be saved there either)",
            sh->history_file);
        return;
    }
    if (fi.size <= 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, sh->s,
                     APLOGNO(10905) "chatbot: history file %s is empty; starting empty",
                     sh->history_file);
        return;
    }
    rv = apr_file_open(&f, sh->history_file, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, ptemp);
    if (rv != APR_SUCCESS) {
        ap_log_error(
            APLOG_MARK, APLOG_ERR, rv, sh->s,
            APLOGNO(10906) "chatbot: cannot read history file %s; starting empty",
            sh->history_file);
        return;
    }
    /* The header first: it tells how large the image is. */
    n = CHAT_STORE_HEADER_BYTES;
    buf = apr_palloc(ptemp, n);
    rv = apr_file_read_full(f, buf, n, &n);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        apr_file_close(f);
        ap_log_error(
            APLOG_MARK, APLOG_ERR, rv, sh->s,
            APLOGNO(10906) "chatbot: cannot read history file %s; starting empty",
            sh->history_file);
        return;
    }
    want = chat_store_image_size(buf, n);
    if (want == 0 || (apr_off_t)want != fi.size) {
        apr_file_close(f);
        why = want == 0 ? "not a history image, or from another version"
                        : "truncated or extended";
        goto bad;
    }
    if (want == sh->size) {
        buf = sh->base; /* read straight into the segment, then verify */
    }
    else {
        /* an image of other sizes, as large as it says: the heap, so that
         * not having that much memory is an error, not an abort */
        if (!(buf = load_buffer(ptemp, want))) {
            apr_file_close(f);
            ap_log_error(
                APLOG_MARK, APLOG_ERR, APR_ENOMEM, sh->s,
                APLOGNO(
                    10906) "chatbot: no memory to read history file %s (%" APR_SIZE_T_FMT
                           " bytes); starting empty",
                sh->history_file, want);
            return;
        }
    }
    rv = apr_file_seek(f, APR_SET, &(apr_off_t){0});
    n = want;
    if (rv == APR_SUCCESS) {
        rv = apr_file_read_full(f, buf, n, &n);
    }
    apr_file_close(f);
    if (rv != APR_SUCCESS) {
        ap_log_error(
            APLOG_MARK, APLOG_ERR, rv, sh->s,
            APLOGNO(10906) "chatbot: cannot read history file %s; starting empty",
            sh->history_file);
        goto reformat;
    }
    if (chat_store_layout_of(buf, n, &lay) != CHAT_OK) {
        goto bad;
    }
    if (buf == sh->base && chat_store_layout_equal(&lay, &sh->layout)) {
        if (chat_store_load(&src, buf, n, &sh->layout) == CHAT_OK) {
            chat_store_detach(src);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sh->s,
                         APLOGNO(10907) "chatbot: history loaded from %s",
                         sh->history_file);
            return;
        }
        goto bad;
    }
    /* Another layout: attach with the layout recorded in the image, then
     * migrate into the freshly formatted segment. */
    if (buf == sh->base) {
        if (!(buf = load_buffer(ptemp, n))) {
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_ENOMEM, sh->s,
                         APLOGNO(10906) "chatbot: no memory to migrate history file %s; "
                                        "starting empty",
                         sh->history_file);
            goto reformat;
        }
        memcpy(buf, sh->base, n);
    }
    if (chat_store_load(&src, buf, n, &lay) == CHAT_OK) {
        chat_store_t *dst = NULL;
        if (chat_store_format(&dst, sh->base, sh->size, &sh->layout, chatbot_now_ms()) ==
            CHAT_OK) {
            chat_store_migrate(dst, src, chatbot_now_ms());
            chat_store_detach(dst);
            chat_store_detach(src);
            ap_log_error(
                APLOG_MARK, APLOG_NOTICE, 0, sh->s,
                APLOGNO(10908) "chatbot: history loaded from %s and migrated to the new "
                               "sizes",
                sh->history_file);
            return;
        }
        chat_store_detach(src);
    }
bad:
    ap_log_error(
        APLOG_MARK, APLOG_ERR, 0, sh->s,
        APLOGNO(10909) "chatbot: history file %s is not a valid history image (%s); "
                       "starting empty and keeping it as %s.bad",
        sh->history_file, why, sh->history_file);
    apr_file_rename(sh->history_file, apr_pstrcat(ptemp, sh->history_file, ".bad", NULL),
                    ptemp);
reformat : {
    chat_store_t *st = NULL;
    if (chat_store_format(&st, sh->base, sh->size, &sh->layout, chatbot_now_ms()) ==
        CHAT_OK) {
        chat_store_detach(st);
    }
}
}

/* Tells at start, rather than only when httpd stops, that the history
 * cannot be saved: the file's directory must be writable by the parent
 * (it writes <file>.tmp there and renames it). */
static void check_history_dir(chatbot_shm_t *sh, apr_pool_t *ptemp)
{
    char *dir = apr_pstrdup(ptemp, sh->history_file);
    char *slash = strrchr(dir, '/');

    if (!slash) {
        dir = ".";
    }
    else if (slash == dir) {
        dir[1] = '\0';
    }
    else {
        *slash = '\0';
    }
    if (access(dir, W_OK | X_OK) != 0) {
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, sh->s,
            APLOGNO(
                10917) "chatbot: the directory %s of ChatbotHistoryFile is not writable: "
                       "the history will not be saved when httpd stops",
            dir);
    }
}

/* A cleanup on pconf (module code must never be called from the process
 * pool: httpd unloads the module with pconf, before the process pool goes).
 * It runs at every restart too; only the parent's final exit saves. */
static apr_status_t store_cleanup(void *data)
{
    chatbot_shm_t *sh = data;
    apr_pool_t *p;

    if (ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_EXITING) {
        return APR_SUCCESS; /* a restart: the segment lives on */
    }
    /* Only the parent; children run pool cleanups at exit too. */
    if (sh->pid == getpid() && sh->history_file && sh->base &&
        apr_pool_create(&p, NULL) == APR_SUCCESS) {
        chat_store_t *st = NULL;
        /* attach takes every lock: an update a child was killed in the
         * middle of (httpd gave up waiting for it) is rolled back first */
        if (chat_store_attach(&st, sh->base, sh->size, &sh->layout) == CHAT_OK) {
            chat_store_recover(st, chatbot_now_ms());
            chat_store_detach(st);
            store_save(sh, p);
        }
        else {
            /* An image that would be refused at the next start must not
             * replace the last good file. */
            ap_log_error(
                APLOG_MARK, APLOG_ERR, 0, sh->s,
                APLOGNO(
                    10918) "chatbot: the shared store failed its consistency check at "
                           "stop; history not saved, %s keeps the previous copy",
                sh->history_file);
        }
        apr_pool_destroy(p);
    }
    return APR_SUCCESS;
}

static apr_status_t make_segment(chatbot_shm_t *sh, apr_pool_t *pproc, server_rec *s)
{
    apr_status_t rv;
    apr_size_t size = chat_store_size(&sh->layout);

    rv = apr_shm_create(&sh->shm, size, NULL, pproc);
    if (rv == APR_ENOTIMPL) {
        const char *fname = ap_runtime_dir_relative(pproc, "chatbot-store.shm");
        apr_shm_remove(fname, pproc);
        rv = apr_shm_create(&sh->shm, size, fname, pproc);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     APLOGNO(10910) "chatbot: cannot create %" APR_SIZE_T_FMT
                                    " bytes of shared memory "
                                    "(lower ChatbotHistorySize/ChatbotMaxConversations?)",
                     size);
        return rv;
    }
    sh->base = apr_shm_baseaddr_get(sh->shm);
    sh->size = apr_shm_size_get(sh->shm);
    return APR_SUCCESS;
}

/* Processes that may use the store at once: every child of this
 * generation and of the older ones still finishing after graceful
 * restarts. */
static uint32_t procs_for_mpm(void)
{
    int limit = 0;
    uint64_t n;

    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit) != APR_SUCCESS || limit <= 0) {
        limit = 16;
    }
    n = (uint64_t)limit * 2 + 16;
    return (uint32_t)(n < 64 ? 64 : n > 65536 ? 65536 : n);
}

/* A fresh segment of the configured layout, formatted: used when there is
 * none yet, when the sizes change, and when the old one fails its check
 * (never formatted in place: children of the old generation still use
 * it). */
static apr_status_t fresh_segment(chatbot_shm_t *sh, apr_pool_t *pproc, server_rec *s,
                                  chat_store_t **out)
{
    apr_status_t rv = make_segment(sh, pproc, s);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (chat_store_format(out, sh->base, sh->size, &sh->layout, chatbot_now_ms()) !=
        CHAT_OK) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     APLOGNO(10912) "chatbot: cannot format the shared store");
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

/* The provider's init (post_config in the parent): finds the segment of
 * the previous generation or makes one (loading ChatbotHistoryFile on a
 * full start, migrating when the sizes changed), checks it and returns
 * this process's handle on it. */
static apr_status_t shm_init(chat_store_t **out, server_rec *s, apr_pool_t *pconf,
                             apr_pool_t *ptemp)
{
    chatbot_srv_conf *sc = chatbot_srv(s);
    apr_pool_t *pproc = s->process->pool;
    chatbot_shm_t *sh = NULL;
    chat_store_t *st = NULL;
    apr_status_t rv;
    int fresh = 0, migrated = 0;
    void *data = NULL;

    *out = NULL;
    sc->layout.max_procs = procs_for_mpm();
    apr_pool_userdata_get(&data, USERDATA_KEY, pproc);
    sh = data;
    if (!sh) {
        sh = apr_pcalloc(pproc, sizeof(*sh));
        sh->s = s;
        sh->pid = getpid();
        sh->layout = sc->layout;
        sh->history_file = sc->history_file ? apr_pstrdup(pproc, sc->history_file) : NULL;
        if ((rv = fresh_segment(sh, pproc, s, &st)) != APR_SUCCESS) {
            return rv;
        }
        chat_store_detach(st);
        st = NULL;
        if (sh->history_file) {
            store_load(sh, ptemp);
        }
        apr_pool_userdata_set(sh, USERDATA_KEY, apr_pool_cleanup_null, pproc);
        fresh = 1;
    }
    else if (!chat_store_layout_equal(&sh->layout, &sc->layout)) {
        /* Sizes changed on a restart: new segment, migrate. The old one is
         * left to old-generation children still using it until the process
         * ends (it is rare). The copy runs holding every lock of the old
         * segment: its children are still writing into it. */
        chatbot_shm_t old = *sh;
        chat_store_t *src = NULL;
        sh->layout = sc->layout;
        if ((rv = fresh_segment(sh, pproc, s, &st)) != APR_SUCCESS) {
            *sh = old;
            return rv;
        }
        if (chat_store_attach(&src, old.base, old.size, &old.layout) == CHAT_OK) {
            chat_store_migrate(st, src, chatbot_now_ms());
            chat_store_detach(src);
            migrated = 1;
            ap_log_error(
                APLOG_MARK, APLOG_NOTICE, 0, s,
                APLOGNO(10911) "chatbot: store sizes changed; conversations migrated");
        }
        chat_store_detach(st);
        st = NULL;
    }
    sh->history_file = sc->history_file ? apr_pstrdup(pproc, sc->history_file) : NULL;
    sh->s = s;
    sh->pid = getpid(); /* the parent (it may have daemonized since the first pass) */
    sh->generation++;
    apr_pool_cleanup_register(pconf, sh, store_cleanup, apr_pool_cleanup_null);
    if (sh->history_file) {
        check_history_dir(sh, ptemp);
    }
    /* On a graceful restart the children of the previous generation are
     * still running (streaming answers into this very segment) while the
     * parent re-reads the configuration: attach checks the segment holding
     * every lock, so it never sees a half-done update, and rolls back the
     * work of any child that died holding one. Answers cut by a full
     * restart are marked interrupted - but not on a graceful restart, where
     * old children end their own turns cleanly when they see their child
     * stopping. */
    if (chat_store_attach(&st, sh->base, sh->size, &sh->layout) != CHAT_OK) {
        ap_log_error(
            APLOG_MARK, APLOG_CRIT, 0, s,
            APLOGNO(10913) "chatbot: the shared store failed its consistency check; "
                           "starting empty");
        /* a new segment: the old one may still be used by old children */
        if ((rv = fresh_segment(sh, pproc, s, &st)) != APR_SUCCESS) {
            return rv;
        }
        fresh = 1;
    }
    if (fresh || migrated) {
        chat_store_recover(st, chatbot_now_ms());
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 APLOGNO(10915) "chatbot: shared store %" APR_SIZE_T_FMT
                                " bytes (%u conversations, "
                                "%" APR_UINT64_T_FMT " bytes of history), generation %d",
                 sh->size, sh->layout.max_conversations, sh->layout.history_bytes,
                 sh->generation);
    *out = st;
    return APR_SUCCESS;
}

/* The segment is inherited by the children at fork: nothing of their own. */
const chatbot_store_provider_t chatbot_store_shm = {
    "shm",
    shm_init,
    NULL,
};
