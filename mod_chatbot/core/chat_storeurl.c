/* chat_storeurl.c - parses the value of ChatbotStore (chat/storeurl.h). */
#include <string.h>
#include <stdlib.h>
#include "chat/storeurl.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Copies [s, s+n) into dst (size cap) decoding %XX; 0 or -1 (bad escape,
 * too long, or a NUL byte decoded). */
static int unescape(char *dst, size_t cap, const char *s, size_t n)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0) {
                return -1;
            }
            c = h * 16 + l;
            if (c == 0) {
                return -1;
            }
            i += 2;
        }
        if (o + 1 >= cap) {
            return -1;
        }
        dst[o++] = (char)c;
    }
    dst[o] = '\0';
    return 0;
}

/* A decimal number in [lo, hi] filling exactly [s, s+n); -1 if not. */
static long number(const char *s, size_t n, long lo, long hi)
{
    long v = 0;
    size_t i;

    if (n == 0 || n > 6) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v < lo || v > hi ? -1 : v;
}

static int host_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

static const char *parse_tcp(const char *s, chat_storeurl_t *u)
{
    const char *at, *end, *hp, *colon, *h;
    size_t hn;
    long v;

    end = s + strcspn(s, "/?#");
    if (*end == '?' || *end == '#') {
        return "query strings and fragments are not supported in redis:// (use /db)";
    }
    /* credentials: the last '@' before the path */
    at = NULL;
    for (hp = s; hp < end; hp++) {
        if (*hp == '@') {
            at = hp;
        }
    }
    hp = s;
    if (at) {
        const char *c = memchr(s, ':', (size_t)(at - s));
        if (!c) {
            return "credentials must be user:password@ or :password@";
        }
        if (unescape(u->user, sizeof(u->user), s, (size_t)(c - s)) ||
            unescape(u->password, sizeof(u->password), c + 1, (size_t)(at - c - 1))) {
            return "bad user or password (too long, or a bad %XX escape)";
        }
        if (!u->password[0]) {
            return "empty password";
        }
        hp = at + 1;
    }
    /* host, [v6], port */
    if (*hp == '[') {
        const char *rb = memchr(hp, ']', (size_t)(end - hp));
        if (!rb) {
            return "unterminated [IPv6] address";
        }
        h = hp + 1;
        hn = (size_t)(rb - h);
        for (v = 0; (size_t)v < hn; v++) {
            if (!(hexval(h[v]) >= 0 || h[v] == ':' || h[v] == '.')) {
                return "bad character in the [IPv6] address";
            }
        }
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        if (rb + 1 < end && !colon) {
            return "junk after the [IPv6] address";
        }
    }
    else {
        colon = memchr(hp, ':', (size_t)(end - hp));
        h = hp;
        hn = (size_t)((colon ? colon : end) - hp);
        for (v = 0; (size_t)v < hn; v++) {
            if (!host_char((unsigned char)h[v])) {
                return "bad character in the host name";
            }
        }
    }
    if (hn == 0) {
        return "no host";
    }
    if (hn > CHAT_STOREURL_HOST_MAX) {
        return "host name too long";
    }
    memcpy(u->host, h, hn);
    u->host[hn] = '\0';
    if (colon) {
        if ((v = number(colon + 1, (size_t)(end - colon - 1), 1, 65535)) < 0) {
            return "the port must be a number from 1 to 65535";
        }
        u->port = (int)v;
    }
    if (*end == '/' && end[1]) {
        if ((v = number(end + 1, strlen(end + 1), 0, 65535)) < 0) {
            return "the database must be a number from 0 to 65535 (redis://host:port/db)";
        }
        u->db = (int)v;
    }
    return NULL;
}

static const char *parse_unix(const char *s, chat_storeurl_t *u)
{
    const char *q = strchr(s, '?');
    size_t n = q ? (size_t)(q - s) : strlen(s);
    long v;

    if (n == 0 || s[0] != '/') {
        return "the socket path must be absolute (unix:/path/to/redis.sock)";
    }
    if (n > CHAT_STOREURL_PATH_MAX) {
        return "the socket path is too long for a unix socket";
    }
    memcpy(u->path, s, n);
    u->path[n] = '\0';
    if (q) {
        if (strncmp(q + 1, "db=", 3) != 0) {
            return "the only option of unix: is ?db=N";
        }
        if ((v = number(q + 4, strlen(q + 4), 0, 65535)) < 0) {
            return "db must be a number from 0 to 65535";
        }
        u->db = (int)v;
    }
    return NULL;
}

const char *chat_storeurl_parse(const char *s, chat_storeurl_t *u)
{
    if (!s || !u) {
        return "no value";
    }
    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (!strcmp(s, "shm")) {
        u->kind = CHAT_STOREURL_SHM;
        return NULL;
    }
    if (!strncmp(s, "redis://", 8)) {
        u->kind = CHAT_STOREURL_TCP;
        return parse_tcp(s + 8, u);
    }
    if (!strncmp(s, "unix:", 5)) {
        u->kind = CHAT_STOREURL_UNIX;
        return parse_unix(s + 5, u);
    }
    if (!strncmp(s, "rediss://", 9)) {
        return "TLS to redis (rediss://) needs hiredis 1.0 or later; this build has "
               "no TLS support (see docs/storage.md)";
    }
    return "expected shm, redis://[user:password@]host:port/db or "
           "unix:/path/to/redis.sock[?db=N]";
}
