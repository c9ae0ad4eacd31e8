/* chat_common.c - status names, the log hook and chat_buf_t. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/common.h"

static chat_log_fn *log_fn;
static void *log_baton;

const char *chat_status_str(chat_status_t st)
{
    switch (st) {
    case CHAT_OK:
        return "ok";
    case CHAT_EAGAIN:
        return "again";
    case CHAT_EINVAL:
        return "invalid argument";
    case CHAT_ENOMEM:
        return "out of memory";
    case CHAT_EINTERNAL:
        return "internal error";
    case CHAT_EPARSE:
        return "parse error";
    case CHAT_EPROTO:
        return "protocol error";
    case CHAT_EUTF8:
        return "invalid UTF-8";
    case CHAT_EINCOMPLETE:
        return "incomplete";
    case CHAT_ETOOBIG:
        return "too big";
    case CHAT_EFULL:
        return "full";
    case CHAT_ELIMIT:
        return "rate limited";
    case CHAT_EQUOTA:
        return "quota exceeded";
    case CHAT_ENOTFOUND:
        return "not found";
    case CHAT_ECLOSED:
        return "closed";
    case CHAT_EBUSY:
        return "busy";
    case CHAT_EUNAVAIL:
        return "store unavailable";
    case CHAT_EDENIED:
        return "denied";
    case CHAT_ESTALE:
        return "stale";
    }
    return "unknown status";
}

void chat_log_set(chat_log_fn *fn, void *baton)
{
    log_fn = fn;
    log_baton = baton;
}

void chat_log(chat_log_level_t level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!log_fn) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_fn(log_baton, level, msg);
}

void chat_buf_init(chat_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void chat_buf_free(chat_buf_t *b)
{
    free(b->data);
    chat_buf_init(b);
}

void chat_buf_reset(chat_buf_t *b, size_t keep)
{
    if (b->cap > keep) {
        chat_buf_free(b);
        return;
    }
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

chat_status_t chat_buf_reserve(chat_buf_t *b, size_t extra)
{
    size_t need, ncap;
    char *nd;

    if (extra > SIZE_MAX - b->len - 1) {
        return CHAT_ENOMEM;
    }
    need = b->len + extra + 1;
    if (need <= b->cap) {
        return CHAT_OK;
    }
    ncap = b->cap ? b->cap : 256;
    while (ncap < need) {
        ncap = (ncap > SIZE_MAX / 2) ? need : ncap * 2;
    }
    nd = realloc(b->data, ncap);
    if (!nd) {
        return CHAT_ENOMEM;
    }
    b->data = nd;
    b->cap = ncap;
    return CHAT_OK;
}

chat_status_t chat_buf_append_grow(chat_buf_t *b, const void *data, size_t len)
{
    if (chat_buf_reserve(b, len) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    if (len) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
    return CHAT_OK;
}

chat_status_t chat_buf_puts(chat_buf_t *b, const char *s)
{
    return chat_buf_append(b, s, strlen(s));
}

chat_status_t chat_buf_printf(chat_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return CHAT_EINVAL;
    }
    if (chat_buf_reserve(b, (size_t)n) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CHAT_OK;
}
