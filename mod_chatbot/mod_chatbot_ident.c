/* mod_chatbot_ident.c - who is talking: r->user when an httpd auth module
 * authenticated the request, else an anonymous session cookie, and the
 * server secret that signs those cookies.
 *
 * The cookie is "chatbot_sid=<32 hex>.<HMAC-SHA256>" (chat/cookie.h): 128
 * random bits and a MAC under the server secret, so nobody can choose an
 * identity (a planted "chatbot_sid=000...0" is refused and replaced, and so
 * is any value the server did not sign). Over https it is named
 * "__Host-chatbot_sid" (ChatbotCookieHostPrefix, on by default): browsers
 * accept such a cookie only from a secure origin, host-only and for Path=/,
 * so a sibling subdomain or a plain-http page cannot plant one. Cookies are
 * found by name (chat_cookie_find), never by searching the header text.
 *
 * The store only ever sees a SHA-1 of "u:<user>" or "s:<id>", so the two
 * kinds can never collide and ids are not kept in clear in shared memory.
 * Anonymous identities also carry their client address ("a4:1.2.3.4", or
 * the /64 of an IPv6 address), whose rate budget they share
 * (ChatbotAnonymousRateLimit): a new cookie is not a new budget.
 *
 * The secret: ChatbotCookieSecretFile if set (one key per line, the first
 * signs, every one verifies: rotation); else <ChatbotHistoryFile>.key,
 * generated at the first start and read back at every later one, so the
 * saved history stays reachable; else generated once per httpd run and kept
 * in the process pool (graceful restarts keep it, as they keep the store).
 */
#include <string.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_ssl.h"
#include "apr_file_io.h"
#include "apr_network_io.h"
#include "apr_strings.h"

#include "chat/cookie.h"
#include "mod_chatbot.h"

#define SECRET_USERDATA "mod_chatbot-cookie-secret"
#define MAX_KEYS 8
#define KEY_MIN 32 /* bytes of key text (openssl rand -hex 32 gives 64) */
#define KEY_MAX 1024
#define KEYFILE_MAX 16384
#define GEN_BYTES 32 /* random bytes of a generated key (written as hex) */
#define COOKIE_MAX_AGE "31536000"

typedef struct {
    int nkeys;
    size_t len[MAX_KEYS];
    unsigned char key[MAX_KEYS][KEY_MAX];
} chatbot_secret_t;

static chatbot_secret_t *g_secret; /* set in post_config, inherited by children */

/* ---- the secret ---------------------------------------------------------------- */

/* Parses key file text: one key per line (at least KEY_MIN bytes, trailing
 * blanks dropped), empty lines and '#' comments skipped. NULL or why. */
static const char *parse_keys(const char *text, apr_size_t n, chatbot_secret_t *sec)
{
    apr_size_t i = 0;

    memset(sec, 0, sizeof(*sec));
    while (i < n) {
        apr_size_t s = i, e;
        while (i < n && text[i] != '\n') {
            i++;
        }
        e = i++;
        while (e > s &&
               (text[e - 1] == '\r' || text[e - 1] == ' ' || text[e - 1] == '\t')) {
            e--;
        }
        if (e == s || text[s] == '#') {
            continue;
        }
        if (memchr(text + s, '\0', e - s)) {
            return "a key contains a NUL byte";
        }
        if (e - s < KEY_MIN) {
            return "a key is shorter than 32 bytes (make one with: openssl rand -hex 32)";
        }
        if (e - s > KEY_MAX) {
            return "a key is longer than 1024 bytes";
        }
        if (sec->nkeys == MAX_KEYS) {
            return "more than 8 keys";
        }
        memcpy(sec->key[sec->nkeys], text + s, e - s);
        sec->len[sec->nkeys++] = e - s;
    }
    return sec->nkeys ? NULL : "no key in the file (make one with: openssl rand -hex 32)";
}

/* Reads a key file. strict: refuse a file others may read or write (a
 * secret anyone on the machine can read signs identities for anyone).
 * Returns NULL or why; *missing is set when the file does not exist. */
static const char *load_keys(apr_pool_t *p, const char *path, int strict,
                             chatbot_secret_t *sec, int *missing)
{
    apr_finfo_t fi;
    apr_file_t *f;
    apr_size_t n;
    apr_status_t rv;
    char *buf;
    char err[120];

    *missing = 0;
    rv = apr_stat(&fi, path, APR_FINFO_TYPE | APR_FINFO_SIZE | APR_FINFO_PROT, p);
    if (rv != APR_SUCCESS) {
        *missing = APR_STATUS_IS_ENOENT(rv);
        return apr_pstrcat(p, "cannot read it: ", apr_strerror(rv, err, sizeof(err)),
                           NULL);
    }
    if (fi.filetype != APR_REG) {
        return "not a regular file";
    }
    if (strict && (fi.protection & (APR_WREAD | APR_WWRITE))) {
        return "other users may read or change it; chmod 600 (or 640) it";
    }
    if (fi.size > KEYFILE_MAX) {
        return "larger than 16 KiB: not a key file";
    }
    rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, p);
    if (rv != APR_SUCCESS) {
        return apr_pstrcat(p, "cannot open it: ", apr_strerror(rv, err, sizeof(err)),
                           NULL);
    }
    buf = apr_palloc(p, KEYFILE_MAX + 1);
    n = KEYFILE_MAX;
    rv = apr_file_read_full(f, buf, n, &n);
    apr_file_close(f);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EOF(rv)) {
        return apr_pstrcat(p, "cannot read it: ", apr_strerror(rv, err, sizeof(err)),
                           NULL);
    }
    return parse_keys(buf, n, sec);
}

/* A new random key, as hex text (what `openssl rand -hex 32` writes). */
static apr_status_t generate_key(chatbot_secret_t *sec)
{
    unsigned char raw[GEN_BYTES];
    char hex[2 * GEN_BYTES + 1];
    apr_status_t rv = apr_generate_random_bytes(raw, sizeof(raw));

    if (rv != APR_SUCCESS) {
        return rv;
    }
    chat_hex(raw, sizeof(raw), hex);
    memset(sec, 0, sizeof(*sec));
    memcpy(sec->key[0], hex, 2 * GEN_BYTES);
    sec->len[0] = 2 * GEN_BYTES;
    sec->nkeys = 1;
    return APR_SUCCESS;
}

/* Writes the first key to path, created exclusively (never through a
 * planted link), mode 0600, as the store writes the history file. */
static apr_status_t write_keyfile(apr_pool_t *p, const char *path,
                                  const chatbot_secret_t *sec)
{
    apr_file_t *f;
    apr_size_t n;
    apr_status_t rv;
    const char *text = apr_pstrcat(
        p, "# mod_chatbot cookie secret (generated; keep it with the history file)\n",
        apr_pstrndup(p, (const char *)sec->key[0], sec->len[0]), "\n", NULL);

    rv = apr_file_open(
        &f, path, APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_EXCL | APR_FOPEN_BINARY,
        APR_FPROT_UREAD | APR_FPROT_UWRITE, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    n = strlen(text);
    rv = apr_file_write_full(f, text, n, &n);
    if (rv == APR_SUCCESS) {
        rv = apr_file_sync(f);
    }
    apr_file_close(f);
    if (rv != APR_SUCCESS) {
        apr_file_remove(path, p);
    }
    return rv;
}

const char *chatbot_ident_set_secret_file(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *path;
    chatbot_secret_t *tmp;
    int missing;

    if (err) {
        return err;
    }
    path = ap_server_root_relative(cmd->pool, arg);
    if (!path) {
        return apr_psprintf(cmd->pool, "ChatbotCookieSecretFile: invalid path '%s'", arg);
    }
    /* checked now, so that apachectl -t tells what is wrong with it */
    tmp = apr_palloc(cmd->temp_pool, sizeof(*tmp));
    if ((err = load_keys(cmd->temp_pool, path, 1, tmp, &missing))) {
        return apr_psprintf(cmd->pool, "ChatbotCookieSecretFile %s: %s", path, err);
    }
    chatbot_srv(cmd->server)->cookie_secret_file = path;
    return NULL;
}

apr_status_t chatbot_ident_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                       server_rec *s)
{
    chatbot_srv_conf *sc = chatbot_srv(s);
    apr_pool_t *proc = s->process->pool;
    chatbot_secret_t *kept = NULL, *sec;
    const char *why;
    apr_status_t rv;
    int missing;

    apr_pool_userdata_get((void **)&kept, SECRET_USERDATA, proc);
    if (sc->cookie_secret_file) {
        sec = apr_palloc(pconf, sizeof(*sec));
        if ((why = load_keys(ptemp, sc->cookie_secret_file, 1, sec, &missing))) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                         APLOGNO(10991) "chatbot: ChatbotCookieSecretFile %s: %s",
                         sc->cookie_secret_file, why);
            return APR_EGENERAL;
        }
        g_secret = sec;
        return APR_SUCCESS;
    }
    if (!kept) {
        /* the process pool lives as long as httpd: graceful and plain
         * restarts keep the secret, as they keep the store */
        kept = apr_pcalloc(proc, sizeof(*kept));
        apr_pool_userdata_set(kept, SECRET_USERDATA, apr_pool_cleanup_null, proc);
    }
    if (sc->history_file) {
        const char *path = apr_pstrcat(ptemp, sc->history_file, ".key", NULL);
        chatbot_secret_t *fromfile = apr_palloc(ptemp, sizeof(*fromfile));
        why = load_keys(ptemp, path, 0, fromfile, &missing);
        if (!why) {
            *kept = *fromfile;
            g_secret = kept;
            return APR_SUCCESS;
        }
        if (!missing) {
            const char *bad = apr_pstrcat(ptemp, path, ".bad", NULL);
            ap_log_error(
                APLOG_MARK, APLOG_ERR, 0, s,
                APLOGNO(
                    10992) "chatbot: cookie secret %s: %s; set aside as %s, a new secret "
                           "is made (anonymous users get new identities)",
                path, why, bad);
            apr_file_rename(path, bad, ptemp);
        }
        if (!kept->nkeys && (rv = generate_key(kept)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                         APLOGNO(10993) "chatbot: no random bytes for the cookie secret");
            return rv;
        }
        rv = write_keyfile(ptemp, path, kept);
        if (rv != APR_SUCCESS) {
            ap_log_error(
                APLOG_MARK, APLOG_ERR, rv, s,
                APLOGNO(
                    10994) "chatbot: cannot write the cookie secret to %s: anonymous "
                           "users will get new identities (and lose their saved history) "
                           "at the next full restart",
                path);
        }
        else {
            ap_log_error(
                APLOG_MARK, APLOG_NOTICE, 0, s,
                APLOGNO(10995) "chatbot: cookie secret generated and saved to %s", path);
        }
        g_secret = kept;
        return APR_SUCCESS;
    }
    if (!kept->nkeys && (rv = generate_key(kept)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     APLOGNO(10993) "chatbot: no random bytes for the cookie secret");
        return rv;
    }
    if (sc->store_url && strcmp(sc->store_url, "shm")) {
        /* the store outlives this httpd and is shared with other hosts;
         * a secret in memory is neither */
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            APLOGNO(10999) "chatbot: the chat store is on redis but the cookie "
                           "secret is in memory: anonymous identities are "
                           "valid on this host only and lost at a full restart "
                           "(their conversations become unreachable); set "
                           "ChatbotCookieSecretFile, the same file on every host");
    }
    g_secret = kept;
    return APR_SUCCESS;
}

/* ---- cookies ----------------------------------------------------------------------- */

/* HMAC-SHA256 of the token's id under key k. 0 on failure. */
static int sid_mac(int k, const char *sid_hex, unsigned char mac[CHAT_SID_MAC_BYTES])
{
    char in[CHAT_SID_MAC_INPUT_LEN];
    unsigned int mlen = 0;
    size_t n = chat_sid_mac_input(sid_hex, in, sizeof(in));

    if (!n || !g_secret || k >= g_secret->nkeys) {
        return 0;
    }
    return HMAC(EVP_sha256(), g_secret->key[k], (int)g_secret->len[k],
                (const unsigned char *)in, n, mac, &mlen) != NULL &&
           mlen == CHAT_SID_MAC_BYTES;
}

static int cookie_secure(request_rec *r, chatbot_dir_conf *dc)
{
    return dc->cookie_secure != CHATBOT_UNSET ? dc->cookie_secure
                                              : ap_ssl_conn_is_ssl(r->connection);
}

/* "__Host-chatbot_sid" over https (ChatbotCookieHostPrefix), else
 * "chatbot_sid". */
static const char *cookie_name(request_rec *r)
{
    chatbot_dir_conf *dc = ap_get_module_config(r->per_dir_config, &chatbot_module);
    int prefix = dc->cookie_host_prefix != CHATBOT_UNSET ? dc->cookie_host_prefix : 1;

    return prefix && cookie_secure(r, dc) ? "__Host-" CHATBOT_COOKIE : CHATBOT_COOKIE;
}

/* The first cookie called name, in every Cookie header, whose MAC verifies
 * under one of the keys: its id into sid (33 bytes). Returns the index of
 * the key that verified it, -1 if none did (*seen: a cookie of that name
 * was there, forged, unsigned or signed with a retired key). */
static int find_signed(request_rec *r, const char *name, char *sid, int *seen)
{
    const apr_array_header_t *arr = apr_table_elts(r->headers_in);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    int i, k;

    *seen = 0;
    for (i = 0; i < arr->nelts; i++) {
        size_t pos = 0, len;
        chat_cookie_t c;

        if (!e[i].key || strcasecmp(e[i].key, "Cookie") || !e[i].val) {
            continue;
        }
        len = strlen(e[i].val);
        while (chat_cookie_find(e[i].val, len, name, &pos, &c)) {
            unsigned char got[CHAT_SID_MAC_BYTES], want[CHAT_SID_MAC_BYTES];
            *seen = 1;
            if (chat_sid_token_parse(c.value, c.value_len, sid, got) != CHAT_OK) {
                continue;
            }
            for (k = 0; g_secret && k < g_secret->nkeys; k++) {
                if (sid_mac(k, sid, want) && CRYPTO_memcmp(got, want, sizeof(got)) == 0) {
                    return k;
                }
            }
        }
    }
    return -1;
}

static apr_status_t set_cookie(request_rec *r, const char *name, const char *sid)
{
    chatbot_dir_conf *dc = ap_get_module_config(r->per_dir_config, &chatbot_module);
    unsigned char mac[CHAT_SID_MAC_BYTES];
    char token[CHAT_SID_TOKEN_LEN + 1];

    if (!sid_mac(0, sid, mac) ||
        chat_sid_token_format(sid, mac, token, sizeof(token)) != CHAT_OK) {
        return APR_EGENERAL;
    }
    /* err_headers_out: kept on 101 and on error responses too. */
    apr_table_addn(r->err_headers_out, "Set-Cookie",
                   apr_psprintf(r->pool,
                                "%s=%s; Path=/; HttpOnly; SameSite=Strict%s; "
                                "Max-Age=" COOKIE_MAX_AGE,
                                name, token, cookie_secure(r, dc) ? "; Secure" : ""));
    return APR_SUCCESS;
}

/* The rate-budget key of the client's address (r->useragent_addr, which
 * mod_remoteip sets from the proxy's header): the address for IPv4, the /64
 * for IPv6 (one host usually has a whole /64 to choose from). */
static void addr_owner(request_rec *r, chat_owner_t *o)
{
    apr_sockaddr_t *sa =
        r->useragent_addr ? r->useragent_addr : r->connection->client_addr;
    const char *ip = r->useragent_ip ? r->useragent_ip : r->connection->client_ip;
    char key[64];

#if APR_HAVE_IPV6
    if (sa && sa->family == APR_INET6) {
        const unsigned char *b = (const unsigned char *)&sa->sa.sin6.sin6_addr;
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0,    0,
                                                   0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(b, v4mapped, sizeof(v4mapped))) {
            apr_snprintf(key, sizeof(key), "a4:%u.%u.%u.%u", b[12], b[13], b[14], b[15]);
        }
        else {
            char hex[17];
            chat_hex(b, 8, hex);
            apr_snprintf(key, sizeof(key), "a6:%s/64", hex);
        }
        chat_owner_from(o, key, strlen(key));
        return;
    }
#endif
    apr_snprintf(key, sizeof(key), "a4:%s", ip ? ip : "-");
    chat_owner_from(o, key, strlen(key));
}

/* create: a request without a valid cookie gets a new identity and a
 * Set-Cookie; else (read-only routes) an identity that owns nothing and no
 * cookie: reading must not create state. */
static apr_status_t ident_resolve(request_rec *r, chatbot_ident_t *id, int create)
{
    const char *name, *key;
    char sid[CHAT_SID_HEX + 1];
    int k, seen;

    memset(id, 0, sizeof(*id));
    if (r->user && *r->user) {
        id->user = r->user;
        id->label = r->user;
        key = apr_pstrcat(r->pool, "u:", r->user, NULL);
        chat_owner_from(&id->owner, key, strlen(key));
        return APR_SUCCESS;
    }
    id->anonymous = 1;
    addr_owner(r, &id->addr);
    name = cookie_name(r);
    k = find_signed(r, name, sid, &seen);
    if (k < 0 && seen) {
        ap_log_rerror(
            APLOG_MARK, APLOG_INFO, 0, r,
            APLOGNO(
                10996) "chatbot: %s cookie not signed by this server (forged, damaged or "
                       "from before a secret change)%s",
            name, create ? "; a new identity is issued" : "");
    }
    if (k < 0 && !create) {
        /* owns nothing: random bytes match no stored owner */
        unsigned char raw[sizeof(id->owner.b)];
        if (apr_generate_random_bytes(raw, sizeof(raw)) != APR_SUCCESS) {
            return APR_EGENERAL;
        }
        memcpy(id->owner.b, raw, sizeof(raw));
        id->label = "anon:-";
        id->none = 1;
        return APR_SUCCESS;
    }
    if (k < 0) {
        unsigned char raw[CHAT_SID_BYTES];
        apr_status_t rv = apr_generate_random_bytes(raw, sizeof(raw));
        if (rv != APR_SUCCESS) {
            /* never a guessable or shared id */
            ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                          APLOGNO(10920) "chatbot: no random bytes for a session id");
            return rv;
        }
        chat_hex(raw, sizeof(raw), sid);
        if ((rv = set_cookie(r, name, sid)) != APR_SUCCESS) {
            ap_log_rerror(
                APLOG_MARK, APLOG_ERR, rv, r,
                APLOGNO(10997) "chatbot: cannot sign a session cookie (no secret?)");
            return rv;
        }
        id->new_cookie = 1;
    }
    else if (k > 0 && create) {
        /* signed with an older key of ChatbotCookieSecretFile: same
         * identity, signed again with the current one */
        set_cookie(r, name, sid);
    }
    key = apr_pstrcat(r->pool, "s:", sid, NULL);
    chat_owner_from(&id->owner, key, strlen(key));
    id->label = apr_pstrcat(r->pool, "anon:", apr_pstrndup(r->pool, sid, 8), NULL);
    return APR_SUCCESS;
}

apr_status_t chatbot_ident_get(request_rec *r, chatbot_ident_t *id)
{
    return ident_resolve(r, id, 1);
}

apr_status_t chatbot_ident_find(request_rec *r, chatbot_ident_t *id)
{
    return ident_resolve(r, id, 0);
}
