/* mod_chatbot_store.c - the shared-memory segment holding the chat store
 * (chat/store.h), its global mutex, persistence to ChatbotHistoryFile, and
 * small process-wide helpers (clock, CSPRNG).
 *
 * Lifetime: the segment and the mutex are created once, on the first
 * post_config, in the *process* pool, and re-used by every later generation,
 * so `apachectl graceful` keeps all conversations (old children still
 * finishing their connections use the very same segment and mutex; the
 * mod_slotmem_shm approach). If the sizing directives change, a new segment
 * is made and the conversations are migrated into it. With
 * ChatbotHistoryFile, the segment is written to the file by the parent when
 * httpd stops (a pconf cleanup that acts only when httpd is exiting) and read
 * back, after a full consistency check, at the next start.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_core.h"
#include "http_main.h"
#include "ap_mpm.h"
#include "util_mutex.h"
#include "apr_shm.h"
#include "apr_file_io.h"
#include "apr_strings.h"
#include "apr_time.h"

#include "mod_chatbot.h"

#define USERDATA_KEY "mod_chatbot-store"

typedef struct {
    apr_shm_t *shm;
    void *base;
    apr_size_t size;
    chat_store_layout_t layout;
    apr_global_mutex_t *mutex;
    const char *mutex_file;
    const char *history_file;
    server_rec *s;
    int generation; /* post_config count, for logs */
    pid_t pid;      /* the parent (the last to run post_config): only it saves
                     * the file; children and the pre-detach process never */
} chatbot_shm_t;

static chatbot_shm_t *g_shm;     /* process-wide (survives generations) */
static chat_store_t *g_store;    /* handle for this process */

chat_store_t *chatbot_store(void)
{
    return g_store;
}

apr_uint64_t chatbot_now_ms(void)
{
    return (apr_uint64_t)(apr_time_now() / 1000);
}

apr_uint64_t chatbot_random64(void)
{
    apr_uint64_t v = 0;

    while (v == 0) {
        if (apr_generate_random_bytes((unsigned char *)&v, sizeof(v)) != APR_SUCCESS) {
            v = (apr_uint64_t)apr_time_now() ^ ((apr_uint64_t)getpid() << 32);
        }
    }
    return v;
}

apr_status_t chatbot_lock(void)
{
    apr_status_t rv;

    if (!g_shm || !g_shm->mutex) {
        return APR_ENOLOCK;
    }
    rv = apr_global_mutex_lock(g_shm->mutex);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, ap_server_conf, APLOGNO(10901)
                     "chatbot: cannot lock the store mutex");
    }
    return rv;
}

void chatbot_unlock(void)
{
    apr_global_mutex_unlock(g_shm->mutex);
}

static void core_log(void *baton, chat_log_level_t level, const char *msg)
{
    int l = level == CHAT_LOG_ERROR    ? APLOG_ERR
            : level == CHAT_LOG_WARN   ? APLOG_WARNING
            : level == CHAT_LOG_NOTICE ? APLOG_NOTICE
            : level == CHAT_LOG_INFO   ? APLOG_INFO
                                       : APLOG_DEBUG;
    ap_log_error(APLOG_MARK, l, 0, ap_server_conf, "chatbot: %s", msg);
}

int chatbot_store_pre_config(apr_pool_t *pconf)
{
    apr_status_t rv = ap_mutex_register(pconf, CHATBOT_MUTEX_TYPE, NULL, APR_LOCK_FLOCK,
                                        0);
    chat_log_set(core_log, NULL);
    return rv == APR_SUCCESS ? OK : 500;
}

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
    rv = apr_file_open(&f, tmp, APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_EXCL |
                       APR_FOPEN_BINARY, APR_FPROT_UREAD | APR_FPROT_UWRITE, p);
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
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, sh->s, APLOGNO(10902)
                     "chatbot: could not save the history to %s", sh->history_file);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sh->s, APLOGNO(10903)
                     "chatbot: history saved to %s (%" APR_SIZE_T_FMT " bytes)",
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
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, sh->s, APLOGNO(10904)
                     "chatbot: no history file %s yet", sh->history_file);
        return;
    }
    if (fi.filetype != APR_REG) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, sh->s, APLOGNO(10905)
                     "chatbot: ChatbotHistoryFile %s is not a regular file; starting "
                     "empty (the history cannot be saved there either)",
                     sh->history_file);
        return;
    }
    if (fi.size <= 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, sh->s, APLOGNO(10905)
                     "chatbot: history file %s is empty; starting empty",
                     sh->history_file);
        return;
    }
    rv = apr_file_open(&f, sh->history_file, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, ptemp);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, sh->s, APLOGNO(10906)
                     "chatbot: cannot read history file %s; starting empty",
                     sh->history_file);
        return;
    }
    /* The header first: it tells how large the image is. */
    n = CHAT_STORE_HEADER_BYTES;
    buf = apr_palloc(ptemp, n);
    rv = apr_file_read_full(f, buf, n, &n);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        apr_file_close(f);
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, sh->s, APLOGNO(10906)
                     "chatbot: cannot read history file %s; starting empty",
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
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_ENOMEM, sh->s, APLOGNO(10906)
                         "chatbot: no memory to read history file %s (%" APR_SIZE_T_FMT
                         " bytes); starting empty", sh->history_file, want);
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
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, sh->s, APLOGNO(10906)
                     "chatbot: cannot read history file %s; starting empty",
                     sh->history_file);
        goto reformat;
    }
    if (chat_store_layout_of(buf, n, &lay) != CHAT_OK) {
        goto bad;
    }
    if (buf == sh->base && chat_store_layout_equal(&lay, &sh->layout)) {
        if (chat_store_attach(&src, buf, n, &sh->layout) == CHAT_OK) {
            chat_store_detach(src);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sh->s, APLOGNO(10907)
                         "chatbot: history loaded from %s", sh->history_file);
            return;
        }
        goto bad;
    }
    /* Another layout: attach with the layout recorded in the image, then
     * migrate into the freshly formatted segment. */
    if (buf == sh->base) {
        if (!(buf = load_buffer(ptemp, n))) {
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_ENOMEM, sh->s, APLOGNO(10906)
                         "chatbot: no memory to migrate history file %s; starting empty",
                         sh->history_file);
            goto reformat;
        }
        memcpy(buf, sh->base, n);
    }
    if (chat_store_attach(&src, buf, n, &lay) == CHAT_OK) {
        chat_store_t *dst = NULL;
        if (chat_store_format(&dst, sh->base, sh->size, &sh->layout, chatbot_now_ms()) ==
            CHAT_OK) {
            chat_store_migrate(dst, src, chatbot_now_ms());
            chat_store_detach(dst);
            chat_store_detach(src);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sh->s, APLOGNO(10908)
                         "chatbot: history loaded from %s and migrated to the new "
                         "sizes", sh->history_file);
            return;
        }
        chat_store_detach(src);
    }
bad:
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, sh->s, APLOGNO(10909)
                 "chatbot: history file %s is not a valid history image (%s); "
                 "starting empty and keeping it as %s.bad",
                 sh->history_file, why, sh->history_file);
    apr_file_rename(sh->history_file, apr_pstrcat(ptemp, sh->history_file, ".bad", NULL),
                    ptemp);
reformat:
    {
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
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, sh->s, APLOGNO(10917)
                     "chatbot: the directory %s of ChatbotHistoryFile is not writable: "
                     "the history will not be saved when httpd stops", dir);
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
        if (chat_store_attach(&st, sh->base, sh->size, &sh->layout) == CHAT_OK) {
            chat_store_recover(st, chatbot_now_ms());
            chat_store_detach(st);
            store_save(sh, p);
        }
        else {
            /* A child killed in the middle of an update (httpd gives up
             * waiting for it): an image that would be refused at the next
             * start must not replace the last good file. */
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, sh->s, APLOGNO(10918)
                         "chatbot: the shared store failed its consistency check at "
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
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, APLOGNO(10910)
                     "chatbot: cannot create %" APR_SIZE_T_FMT " bytes of shared memory "
                     "(lower ChatbotHistorySize/ChatbotMaxConversations?)",
                     size);
        return rv;
    }
    sh->base = apr_shm_baseaddr_get(sh->shm);
    sh->size = apr_shm_size_get(sh->shm);
    return APR_SUCCESS;
}

apr_status_t chatbot_store_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                       server_rec *s)
{
    chatbot_srv_conf *sc = chatbot_srv(s);
    apr_pool_t *pproc = s->process->pool;
    chatbot_shm_t *sh = NULL;
    apr_status_t rv;
    int i, fresh = 0, migrated = 0;
    void *data = NULL;

    apr_pool_userdata_get(&data, USERDATA_KEY, pproc);
    sh = data;
    if (!sh) {
        sh = apr_pcalloc(pproc, sizeof(*sh));
        sh->s = s;
        sh->pid = getpid();
        sh->layout = sc->layout;
        sh->history_file = sc->history_file ? apr_pstrdup(pproc, sc->history_file) : NULL;
        if ((rv = make_segment(sh, pproc, s)) != APR_SUCCESS) {
            return rv;
        }
        /* One mutex for the life of the process: all generations share the
         * segment, so they must share the lock. */
        rv = ap_global_mutex_create(&sh->mutex, &sh->mutex_file, CHATBOT_MUTEX_TYPE, NULL,
                                    s, pproc, 0);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        apr_pool_userdata_set(sh, USERDATA_KEY, apr_pool_cleanup_null, pproc);
        fresh = 1;
    }
    else if (!chat_store_layout_equal(&sh->layout, &sc->layout)) {
        /* Sizes changed on a restart: new segment, migrate. The old one is
         * leaked deliberately to old-generation children still using it
         * until the process ends (it is small and rare). */
        chatbot_shm_t old = *sh;
        chat_store_t *src = NULL, *dst = NULL;
        sh->layout = sc->layout;
        if ((rv = make_segment(sh, pproc, s)) != APR_SUCCESS) {
            *sh = old;
            return rv;
        }
        /* The old generation's children are still writing into the old
         * segment: check and copy it under the store mutex only. */
        if ((rv = apr_global_mutex_lock(sh->mutex)) != APR_SUCCESS) {
            *sh = old;
            return rv;
        }
        if (chat_store_format(&dst, sh->base, sh->size, &sh->layout, chatbot_now_ms()) ==
                CHAT_OK &&
            chat_store_attach(&src, old.base, old.size, &old.layout) == CHAT_OK) {
            chat_store_migrate(dst, src, chatbot_now_ms());
            migrated = 1;
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, APLOGNO(10911)
                         "chatbot: store sizes changed; conversations migrated");
        }
        apr_global_mutex_unlock(sh->mutex);
        if (src) chat_store_detach(src);
        if (dst) chat_store_detach(dst);
    }
    sh->history_file = sc->history_file ? apr_pstrdup(pproc, sc->history_file) : NULL;
    sh->s = s;
    sh->pid = getpid(); /* the parent (it may have daemonized since the first pass) */
    sh->generation++;
    g_shm = sh;
    apr_pool_cleanup_register(pconf, sh, store_cleanup, apr_pool_cleanup_null);

    if (g_store) {
        chat_store_detach(g_store);
        g_store = NULL;
    }
    if (fresh) {
        if (chat_store_format(&g_store, sh->base, sh->size, &sh->layout,
                              chatbot_now_ms()) != CHAT_OK) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, APLOGNO(10912)
                         "chatbot: cannot format the shared store");
            return APR_EGENERAL;
        }
        chat_store_detach(g_store);
        g_store = NULL;
        if (sh->history_file) {
            store_load(sh, ptemp);
        }
    }
    if (sh->history_file) {
        check_history_dir(sh, ptemp);
    }
    /* On a graceful restart the children of the previous generation are
     * still running (streaming answers into this very segment) while the
     * parent re-reads the configuration: the consistency check below must
     * not see a half-done update - it would find the store "corrupt" and
     * wipe it under their feet - so it runs under the store mutex, like the
     * registration that follows. Answers cut by a full restart are marked
     * interrupted - but not on a graceful restart, where old children end
     * their own turns cleanly when they see their child stopping. */
    if (apr_global_mutex_lock(sh->mutex) != APR_SUCCESS) {
        return APR_EGENERAL;
    }
    if (chat_store_attach(&g_store, sh->base, sh->size, &sh->layout) != CHAT_OK) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, APLOGNO(10913)
                     "chatbot: the shared store failed its consistency check; "
                     "starting empty");
        chat_store_format(&g_store, sh->base, sh->size, &sh->layout, chatbot_now_ms());
    }
    if (fresh || migrated) {
        chat_store_recover(g_store, chatbot_now_ms());
    }
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        be->index = chat_store_backend_register(g_store, be->name, (uint32_t)be->max_active);
        if (be->index < 0) {
            apr_global_mutex_unlock(sh->mutex);
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, APLOGNO(10914)
                         "chatbot: no room for backend %s in the shared store", be->name);
            return APR_EGENERAL;
        }
    }
    for (i = 0; i < sc->bots->nelts; i++) {
        chatbot_bot_t *b = APR_ARRAY_IDX(sc->bots, i, chatbot_bot_t *);
        int j;
        b->series = apr_pcalloc(pconf, sizeof(int) * (apr_size_t)(b->backends->nelts + 1));
        for (j = 0; j < b->backends->nelts; j++) {
            chatbot_backend_t *be = APR_ARRAY_IDX(b->backends, j, chatbot_backend_t *);
            b->series[j] = chat_store_series(g_store, b->name, be->name);
        }
    }
    apr_global_mutex_unlock(sh->mutex);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, APLOGNO(10915)
                 "chatbot: shared store %" APR_SIZE_T_FMT " bytes (%u conversations, "
                 "%" APR_UINT64_T_FMT " bytes of history), generation %d",
                 sh->size, sh->layout.max_conversations, sh->layout.history_bytes,
                 sh->generation);
    return APR_SUCCESS;
}

void chatbot_store_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    if (!g_shm || !g_shm->mutex) {
        return;
    }
    rv = apr_global_mutex_child_init(&g_shm->mutex, g_shm->mutex_file, pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, APLOGNO(10916)
                     "chatbot: cannot attach the store mutex in the child");
    }
}
