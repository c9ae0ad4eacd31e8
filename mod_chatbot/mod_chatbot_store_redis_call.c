/* mod_chatbot_store_redis_call.c - how the redis store's scripts reach
 * redis: loaded once per child (as redis functions on redis 7, else as
 * scripts), called with FCALL or EVALSHA (rs_eval, rs_eval_nowait), and
 * loaded again when redis lost them (a FUNCTION FLUSH or SCRIPT FLUSH, a
 * restart without persistence). The scripts themselves are in
 * mod_chatbot_store_redis_lua.c; the connections in
 * mod_chatbot_store_redis.c.
 */
#include <string.h>

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_atomic.h"
#include "apr_sha1.h"
#include "apr_strings.h"

#include "mod_chatbot_store_redis.h"

static void sha_hex(const char *body, char out[41])
{
    unsigned char d[APR_SHA1_DIGESTSIZE];
    apr_sha1_ctx_t ctx;
    int i;

    apr_sha1_init(&ctx);
    apr_sha1_update(&ctx, body, (unsigned int)strlen(body));
    apr_sha1_final(d, &ctx);
    for (i = 0; i < APR_SHA1_DIGESTSIZE; i++) {
        apr_snprintf(out + 2 * i, 3, "%02x", d[i]);
    }
}

/* A script as a redis function: its library, named as the function
 * (chatbot_<the script's SHA-1>), runs the helpers once, when it is
 * loaded, and registers what follows RS_LUA_MAIN_MARK as the function, so
 * a call runs only that (an EVAL script makes all its helpers again on
 * every call). A script marked RS_LUA_MAIN_RO_MARK is declared
 * no-writes: a redis over its maxmemory refuses, before it runs, every
 * function not so declared, and reads should still answer there. Hosts of
 * different versions load different libraries; loading one that is there
 * is no change. NULL without a mark. */
static const char *rs_lua_split(apr_pool_t *p, const char *body, const char *name)
{
    const char *m = strstr(body, RS_LUA_MAIN_MARK);
    int ro = 0;

    if (!m && (m = strstr(body, RS_LUA_MAIN_RO_MARK))) {
        ro = 1;
    }
    if (!m) {
        return NULL;
    }
    return apr_pstrcat(p, "#!lua name=", name, "\n", apr_pstrmemdup(p, body, m - body),
                       "redis.register_function{function_name='", name,
                       "', callback=function(_, ARGV)\n", m, "end, flags={",
                       ro ? "'no-writes'" : "", "}}\n", NULL);
}

/* One command per script, pipelined (one round trip); a = {verb, sub,
 * code}, the code from each script's own. -> 0, or -1 (err set) if the
 * connection failed, or 1 (err set) if redis refused one: the first
 * refusal's text, "already exists" aside. */
static int load_each(rs_store_t *rs, redisContext *c, const char *verb, int fns,
                     char *err, size_t errlen)
{
    int i, bad = 0;

    for (i = 0; i < RS_LUA_COUNT; i++) {
        const char *a[3] = {verb, "LOAD", fns ? rs->lib[i] : rs_lua_body[i]};
        if (fns && !a[2]) {
            continue;
        }
        if (redisAppendCommandArgv(c, 3, a, NULL) != REDIS_OK) {
            apr_snprintf(err, errlen, "%s LOAD: %s", verb, c->errstr);
            return -1;
        }
    }
    for (i = 0; i < RS_LUA_COUNT; i++) {
        redisReply *r = NULL;
        if (fns && !rs->lib[i]) {
            continue;
        }
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            apr_snprintf(err, errlen, "%s LOAD: %s", verb,
                         c->errstr[0] ? c->errstr : "no reply");
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR && !bad && !strstr(r->str, "already exists")) {
            apr_snprintf(err, errlen, "%s LOAD: %s", verb, r->str);
            bad = 1;
        }
        freeReplyObject(r);
    }
    return bad;
}

/* The scripts loaded, on a child's first connection and on its first one
 * after redis was seen down: after a restart without persistence the
 * functions are gone (and the script cache always is), and the first
 * connection made again loads them. The pool's later connections do not
 * load them again (redis's functions and script cache serve all its
 * clients); a loss nobody here noticed (FUNCTION FLUSH, SCRIPT FLUSH) is
 * met by the fallbacks (rs_eval, settle). As functions (FUNCTION LOAD) if
 * redis takes them; if it refuses (before redis 7 it does not know
 * FUNCTION; an ACL may forbid it), as scripts (SCRIPT LOAD, EVALSHA),
 * logged once per process. */
int rs_load_scripts(rs_store_t *rs, redisContext *c, char *err, size_t errlen)
{
    static apr_uint32_t told; /* per process */
    int rc = load_each(rs, c, "FUNCTION", 1, err, errlen);

    if (rc <= 0) {
        apr_atomic_set32(&rs->fcall, rc == 0);
        return rc;
    }
    if (!apr_atomic_xchg32(&told, 1)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     APLOGNO(10926) "chatbot: redis store: %s; the store's scripts are "
                                    "sent as scripts (EVALSHA), not as functions",
                     err);
    }
    apr_atomic_set32(&rs->fcall, 0);
    return load_each(rs, c, "SCRIPT", 0, err, errlen) ? -1 : 0;
}

/* Each script's SHA-1 (EVALSHA), its function's name and its library
 * (rs_lua_split), once at start-up. */
void rs_lua_prepare(rs_store_t *rs, apr_pool_t *p)
{
    int i;

    for (i = 0; i < RS_LUA_COUNT; i++) {
        sha_hex(rs_lua_body[i], rs->sha[i]);
        apr_snprintf(rs->fn[i], sizeof(rs->fn[i]), "chatbot_%s", rs->sha[i]);
        rs->lib[i] = rs_lua_split(p, rs_lua_body[i], rs->fn[i]);
    }
}

/* Whether an error reply says that redis lost the script called: 1 its
 * script cache (NOSCRIPT), 2 its functions; 0 another error. */
int rs_lost(const char *e)
{
    return !strncmp(e, "NOSCRIPT", 8) ? 1 : !strcmp(e, "ERR Function not found") ? 2 : 0;
}

int rs_refused(const char *e)
{
    static const char *const code[] = {"OOM",     "MISCONF",    "READONLY",
                                       "LOADING", "BUSY",       "NOPERM",
                                       "NOAUTH",  "MASTERDOWN", "NOREPLICAS"};
    size_t k, n;

    for (k = 0; k < sizeof(code) / sizeof(code[0]); k++) {
        n = strlen(code[k]);
        if (!strncmp(e, code[k], n) && (e[n] == ' ' || e[n] == '\0')) {
            return 1;
        }
    }
    return 0;
}

#define RS_EVAL_ARGS 32

/* FCALL's or EVALSHA's arguments in a and l (argc + 4 of them); -1 if
 * too many. */
static int eval_args(rs_store_t *rs, rs_lua_t i, int argc, const char **argv,
                     const size_t *lens, const char **a, size_t *l)
{
    int k;

    if (argc > RS_EVAL_ARGS) {
        return -1;
    }
    if (rs->lib[i] && apr_atomic_read32(&rs->fcall)) {
        a[0] = "FCALL";
        a[1] = rs->fn[i];
    }
    else {
        a[0] = "EVALSHA";
        a[1] = rs->sha[i];
    }
    a[2] = "0";
    a[3] = RS_PREFIX;
    for (k = 0; k < 4; k++) {
        l[k] = strlen(a[k]);
    }
    for (k = 0; k < argc; k++) {
        a[k + 4] = argv[k];
        l[k + 4] = lens ? lens[k] : strlen(argv[k]);
    }
    return 0;
}

redisReply *rs_eval(rs_store_t *rs, rs_lua_t i, int argc, const char **argv,
                    const size_t *lens)
{
    const char *a[RS_EVAL_ARGS + 4];
    size_t l[RS_EVAL_ARGS + 4];
    redisReply *r;

    if (eval_args(rs, i, argc, argv, lens, a, l)) {
        return NULL;
    }
    r = rs_command(rs, argc + 4, a, l);
    if (r && r->type == REDIS_REPLY_ERROR && rs_lost(r->str) == 2) {
        /* the functions were flushed, or redis restarted without its data:
         * the library is loaded again */
        const char *fl[3] = {"FUNCTION", "LOAD", rs->lib[i]};
        redisReply *lr = rs_command(rs, 3, fl, NULL);
        if (lr && (lr->type != REDIS_REPLY_ERROR || strstr(lr->str, "already exists"))) {
            freeReplyObject(r);
            r = rs_command(rs, argc + 4, a, l);
        }
        if (lr) {
            freeReplyObject(lr);
        }
    }
    if (r && r->type == REDIS_REPLY_ERROR && rs_lost(r->str)) {
        /* redis restarted (scripts are not persisted), or it refuses the
         * function: EVAL runs the script (and loads it) */
        freeReplyObject(r);
        a[0] = "EVAL";
        a[1] = rs_lua_body[i];
        l[0] = 4;
        l[1] = strlen(rs_lua_body[i]);
        r = rs_command(rs, argc + 4, a, l);
    }
    if (r && r->type == REDIS_REPLY_ERROR) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     APLOGNO(10962) "chatbot: redis store script %d failed: %s", (int)i,
                     r->str);
        if (rs_refused(r->str)) {
            rs_failed();
        }
    }
    return r;
}

int rs_eval_nowait(rs_store_t *rs, rs_lua_t i, int argc, const char **argv,
                   const size_t *lens)
{
    const char *a[RS_EVAL_ARGS + 4];
    size_t l[RS_EVAL_ARGS + 4];

    if (eval_args(rs, i, argc, argv, lens, a, l)) {
        return -1;
    }
    return rs_command_nowait(rs, argc + 4, a, l);
}
