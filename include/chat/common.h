/* chat/common.h - status codes, logging hook and the growable byte buffer
 * shared by every unit of the portable core (libchatcore).
 *
 * The core never includes httpd, APR or curl headers. It logs through a
 * callback the glue installs (chat_log_set), so it can be unit tested and
 * fuzzed without a server.
 */
#ifndef CHAT_COMMON_H
#define CHAT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. 0 is success; errors are negative, grouped by class:
 *   -1..-19   generic / argument
 *   -20..-39  input format (JSON, framing, encoding)
 *   -40..-59  resource limits
 *   -60..-79  state / lookup
 */
typedef enum {
    CHAT_OK = 0,
    CHAT_EAGAIN = -1,       /* need more input / try again later */
    CHAT_EINVAL = -2,       /* bad argument */
    CHAT_ENOMEM = -3,       /* allocation failed */
    CHAT_EINTERNAL = -4,    /* should not happen */
    CHAT_EPARSE = -20,      /* malformed input (JSON, line, value) */
    CHAT_EPROTO = -21,      /* protocol violation */
    CHAT_EUTF8 = -22,       /* invalid UTF-8 */
    CHAT_EINCOMPLETE = -23, /* input ended before it was complete */
    CHAT_ETOOBIG = -40,     /* a size limit was exceeded */
    CHAT_EFULL = -41,       /* a table or queue is full */
    CHAT_ELIMIT = -42,      /* a rate limit was hit */
    CHAT_EQUOTA = -43,      /* an identity's quota is used up */
    CHAT_ENOTFOUND = -60,   /* unknown id (or not owned by the caller) */
    CHAT_ECLOSED = -61,     /* the object is closed / finished */
    CHAT_EBUSY = -62,       /* the object is busy (e.g. already generating) */
    CHAT_EDENIED = -63,     /* not allowed */
    CHAT_EUNAVAIL = -64,    /* a remote store is unreachable (try again later) */
    CHAT_ESTALE = -65       /* what the caller knew of the object is out of date */
} chat_status_t;

/* A short, stable, human readable name for a status ("ok", "parse", ...). */
const char *chat_status_str(chat_status_t st);

/* Logging: the glue installs one function; the core calls chat_log(). */
typedef enum {
    CHAT_LOG_ERROR = 3,
    CHAT_LOG_WARN = 4,
    CHAT_LOG_NOTICE = 5,
    CHAT_LOG_INFO = 6,
    CHAT_LOG_DEBUG = 7
} chat_log_level_t;

typedef void chat_log_fn(void *baton, chat_log_level_t level, const char *msg);

/* Install the log sink (NULL to disable). Not thread safe: call at startup. */
void chat_log_set(chat_log_fn *fn, void *baton);
/* printf-style log through the installed sink; a no-op without one. */
void chat_log(chat_log_level_t level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* A growable byte buffer. Reused across frames: chat_buf_reset() keeps the
 * allocation, so steady-state streaming does not allocate. The data is
 * always NUL terminated (not counted in len) for convenience. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} chat_buf_t;

void chat_buf_init(chat_buf_t *b);
void chat_buf_free(chat_buf_t *b);
/* Empties the buffer; if it grew beyond keep bytes, the memory is released
 * (so one huge message does not pin memory for the life of a connection). */
void chat_buf_reset(chat_buf_t *b, size_t keep);
/* Ensures room for extra more bytes. CHAT_OK or CHAT_ENOMEM. */
chat_status_t chat_buf_reserve(chat_buf_t *b, size_t extra);
/* Appends bytes / a C string / a formatted string. CHAT_OK or CHAT_ENOMEM. */
/* chat_buf_append's path when the buffer must grow (or is empty). */
chat_status_t chat_buf_append_grow(chat_buf_t *b, const void *data, size_t len);
/* The common case, a write that fits, is a copy at the call site. */
static inline chat_status_t chat_buf_append(chat_buf_t *b, const void *data, size_t len)
{
    if (b->data && len < b->cap - b->len) {
        if (len) {
            memcpy(b->data + b->len, data, len);
        }
        b->len += len;
        b->data[b->len] = '\0';
        return CHAT_OK;
    }
    return chat_buf_append_grow(b, data, len);
}
chat_status_t chat_buf_puts(chat_buf_t *b, const char *s);
chat_status_t chat_buf_printf(chat_buf_t *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* SHA-1 (for the WebSocket accept key and identity keys; not for secrets). */
typedef struct {
    uint32_t h[5];
    uint64_t nbytes;
    uint8_t block[64];
    size_t used;
} chat_sha1_t;
void chat_sha1_init(chat_sha1_t *c);
void chat_sha1_update(chat_sha1_t *c, const void *data, size_t len);
void chat_sha1_final(chat_sha1_t *c, uint8_t out[20]);
void chat_sha1(const void *data, size_t len, uint8_t out[20]);

/* Standard base64 (RFC 4648, with padding). encode writes 4*ceil(n/3) chars
 * plus NUL into out (outcap must allow it); returns the length or 0 if it
 * does not fit. decode returns the decoded length, or -1 on bad input or if
 * it does not fit. */
size_t chat_base64_encode(const uint8_t *in, size_t n, char *out, size_t outcap);
long chat_base64_decode(const char *in, size_t n, uint8_t *out, size_t outcap);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void chat_hex(const uint8_t *in, size_t n, char *out);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_COMMON_H */
