/* chat/storeurl.h - the value of ChatbotStore, parsed:
 *   shm
 *   redis://[[user]:password@]host[:port][/db]
 *   unix:/path/to/redis.sock[?db=N]
 * A pure helper (no I/O), so that `apachectl -t` can refuse a bad value
 * with a precise message and the unit tests can check every form. */
#ifndef CHAT_STOREURL_H
#define CHAT_STOREURL_H

#ifdef __cplusplus
extern "C" {
#endif

#define CHAT_STOREURL_HOST_MAX 255
#define CHAT_STOREURL_PATH_MAX 107 /* sun_path of struct sockaddr_un, minus NUL */
#define CHAT_STOREURL_CRED_MAX 255

typedef enum {
    CHAT_STOREURL_SHM = 0,
    CHAT_STOREURL_TCP,
    CHAT_STOREURL_UNIX
} chat_storeurl_kind_t;

typedef struct {
    chat_storeurl_kind_t kind;
    char host[CHAT_STOREURL_HOST_MAX +
              1]; /* TCP: name or address ([v6] without brackets) */
    int port;     /* TCP: 1..65535 (default 6379) */
    char path[CHAT_STOREURL_PATH_MAX + 1];     /* UNIX: absolute path */
    int db;                                    /* 0..65535 (default 0) */
    char user[CHAT_STOREURL_CRED_MAX + 1];     /* "" = none (AUTH password only) */
    char password[CHAT_STOREURL_CRED_MAX + 1]; /* "" = no AUTH */
} chat_storeurl_t;

/* Parses s into out. Returns NULL on success, else a static message saying
 * what is wrong (out is then unspecified). Percent-escapes (%XX) are
 * decoded in user and password only. */
const char *chat_storeurl_parse(const char *s, chat_storeurl_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_STOREURL_H */
