/* mod_chatbot_ident.c - who is talking: r->user when an httpd auth module
 * authenticated the request, else an anonymous session cookie carrying 128
 * random bits (HttpOnly, SameSite=Strict, Secure over https). The store
 * only ever sees a SHA-1 of "u:<user>" or "s:<cookie>", so the two kinds
 * can never collide and cookies are not kept in clear in shared memory.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_ssl.h"
#include "apr_strings.h"

#include "mod_chatbot.h"

#define SID_BYTES 16
#define SID_HEX (2 * SID_BYTES)

/* Finds our cookie in the Cookie header(s); returns the value if it has the
 * exact form we issue (32 lowercase hex digits), else NULL. */
static const char *find_sid(request_rec *r)
{
    const apr_array_header_t *arr = apr_table_elts(r->headers_in);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    int i;

    for (i = 0; i < arr->nelts; i++) {
        const char *p;
        if (!e[i].key || strcasecmp(e[i].key, "Cookie") || !e[i].val) {
            continue;
        }
        for (p = e[i].val; (p = strstr(p, CHATBOT_COOKIE "=")) != NULL; p++) {
            const char *v = p + sizeof(CHATBOT_COOKIE);
            int k;
            if (p != e[i].val && p[-1] != ' ' && p[-1] != ';') {
                continue; /* suffix of another cookie's name */
            }
            for (k = 0; k < SID_HEX; k++) {
                if (!((v[k] >= '0' && v[k] <= '9') || (v[k] >= 'a' && v[k] <= 'f'))) {
                    break;
                }
            }
            if (k == SID_HEX && (v[k] == '\0' || v[k] == ';' || v[k] == ' ')) {
                return apr_pstrndup(r->pool, v, SID_HEX);
            }
        }
    }
    return NULL;
}

apr_status_t chatbot_ident_get(request_rec *r, chatbot_ident_t *id)
{
    chatbot_dir_conf *dc = ap_get_module_config(r->per_dir_config, &chatbot_module);
    const char *sid;
    const char *key;

    memset(id, 0, sizeof(*id));
    if (r->user && *r->user) {
        id->user = r->user;
        id->label = r->user;
        key = apr_pstrcat(r->pool, "u:", r->user, NULL);
        chat_owner_from(&id->owner, key, strlen(key));
        return APR_SUCCESS;
    }
    sid = find_sid(r);
    if (!sid) {
        unsigned char raw[SID_BYTES];
        char hex[SID_HEX + 1];
        int secure = dc->cookie_secure != CHATBOT_UNSET ? dc->cookie_secure
                                                        : ap_ssl_conn_is_ssl(r->connection);
        apr_status_t rv = apr_generate_random_bytes(raw, sizeof(raw));
        if (rv != APR_SUCCESS) {
            /* never a guessable or shared id */
            ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, APLOGNO(10920)
                          "chatbot: no random bytes for a session id");
            return rv;
        }
        chat_hex(raw, sizeof(raw), hex);
        sid = apr_pstrdup(r->pool, hex);
        /* err_headers_out: kept on 101 and on error responses too. */
        apr_table_addn(r->err_headers_out, "Set-Cookie",
                       apr_psprintf(r->pool, "%s=%s; Path=/; HttpOnly; SameSite=Strict%s; "
                                    "Max-Age=31536000", CHATBOT_COOKIE, sid,
                                    secure ? "; Secure" : ""));
        id->new_cookie = 1;
    }
    key = apr_pstrcat(r->pool, "s:", sid, NULL);
    chat_owner_from(&id->owner, key, strlen(key));
    id->label = apr_pstrcat(r->pool, "anon:", apr_pstrndup(r->pool, sid, 8), NULL);
    return APR_SUCCESS;
}
