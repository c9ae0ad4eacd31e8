/* chat/store.h - conversations, history, users, rate limits, backend
 * capacity/queue/breaker state and metrics, kept in one caller-given
 * memory region (an APR shared-memory segment in the module, a malloc'ed
 * buffer in the unit tests).
 *
 * Everything inside the region is addressed by offsets/indexes, never
 * pointers, because httpd children may map the segment at different
 * addresses and because the region is written to a file verbatim
 * (ChatbotHistoryFile) and read back.
 *
 * LOCKING: the store does no locking. The caller holds one global mutex
 * around every call except the ones marked "lock-free" (atomic counters).
 *
 * The detailed layout is documented with an ASCII diagram in
 * mod_chatbot/core/chat_store.c.
 */
#ifndef CHAT_STORE_H
#define CHAT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "chat/common.h"
#include "chat/stream.h" /* chat_role_t */
#include "chat/ratelimit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- identity ----------------------------------------------------------- */

/* A user's identity as stored: SHA-1 of "u:<r->user>" or "s:<cookie>". */
typedef struct {
    uint8_t b[20];
} chat_owner_t;

/* Derives the stored owner key from an identity string. */
void chat_owner_from(chat_owner_t *o, const char *identity, size_t len);

/* ---- layout --------------------------------------------------------------- */

typedef struct {
    uint32_t max_users;          /* rate-limit / event slots, e.g. 4096 */
    uint32_t max_conversations;  /* e.g. 1024 */
    uint32_t max_messages;       /* per conversation; oldest dropped beyond, e.g. 200 */
    uint32_t max_message_bytes;  /* per stored message, e.g. 262144 */
    uint64_t history_bytes;      /* size of the text arena, e.g. 16 MiB */
    uint32_t max_backends;       /* e.g. 16 */
    uint32_t queue_cap;          /* per backend waiting queue, e.g. 64 */
    uint32_t max_active;         /* per backend concurrent-request slots, e.g. 64 */
    uint32_t metric_series;      /* (bot, backend) pairs, e.g. 64 */
} chat_store_layout_t;

/* 1 if the two layouts are the same (a region made for one fits the other). */
int chat_store_layout_equal(const chat_store_layout_t *a, const chat_store_layout_t *b);

/* Bytes needed for a region with this layout (0 if the layout is invalid:
 * a zero count, or sizes over the supported maxima). */
size_t chat_store_size(const chat_store_layout_t *l);

typedef struct chat_store chat_store_t; /* process-local handle */

/* Formats a fresh region (size >= chat_store_size(l)) and returns a handle.
 * CHAT_OK, CHAT_EINVAL, CHAT_ENOMEM (handle allocation). */
chat_status_t chat_store_format(chat_store_t **pst, void *base, size_t size,
                                const chat_store_layout_t *l, uint64_t now_ms);

/* Attaches to a region formatted earlier (another process, a graceful
 * restart, or bytes read back from a file). Verifies the magic, version and
 * that the layout matches l exactly, then checks every table and chain for
 * consistency (offsets in range, chains end, counts agree) so a corrupted
 * file can never crash the server.
 * CHAT_OK, CHAT_EPARSE (not a store / corrupt), CHAT_EINVAL (layout differs). */
chat_status_t chat_store_attach(chat_store_t **pst, void *base, size_t size,
                                const chat_store_layout_t *l);

/* Reads the layout recorded in a region's header (checking only the magic,
 * version and sizes), so that an image saved with other sizing directives
 * can be attached with its own layout and migrated.
 * CHAT_OK, CHAT_EPARSE (not a store image), CHAT_EINVAL (out NULL). */
chat_status_t chat_store_layout_of(const void *base, size_t size,
                                   chat_store_layout_t *out);

/* Bytes of a region's header: reading this many bytes of a saved image
 * (or all of it, if shorter) is enough for chat_store_image_size. */
#define CHAT_STORE_HEADER_BYTES 4096

/* The total size of the image whose first len bytes are at hdr, as its
 * header records it (after the same identification checks as
 * chat_store_layout_of), or 0 if hdr does not start a store image of this
 * format version. Lets a loader size its buffer from a file's header before
 * reading the rest. */
size_t chat_store_image_size(const void *hdr, size_t len);

/* Copies all conversations, users and backend health of src into dst (a
 * freshly formatted store with a possibly different layout), evicting the
 * least recently used conversations if dst is smaller. Used when a restart
 * changes the sizing directives. Returns CHAT_OK. */
chat_status_t chat_store_migrate(chat_store_t *dst, const chat_store_t *src,
                                 uint64_t now_ms);

/* After a restart/reload: every conversation that was QUEUED or GENERATING
 * has its last (assistant) message marked CHAT_MSG_INTERRUPTED and becomes
 * IDLE; backend active counts and queues are emptied. */
void chat_store_recover(chat_store_t *st, uint64_t now_ms);

void chat_store_detach(chat_store_t *st); /* frees the handle only */

/* ---- conversations ("bot sessions") -------------------------------------- */

#define CHAT_CONV_ID_LEN 24   /* 8 hex slot + 16 hex random tag */
#define CHAT_BOT_NAME_MAX 64
#define CHAT_TITLE_MAX 128

/* flags */
#define CHAT_CONV_ARCHIVED 0x1u
#define CHAT_CONV_STOPPED 0x2u   /* the user stopped this bot session */

/* states */
#define CHAT_CONV_IDLE 0u
#define CHAT_CONV_QUEUED 1u
#define CHAT_CONV_GENERATING 2u

typedef struct {
    char id[CHAT_CONV_ID_LEN + 1];
    char bot[CHAT_BOT_NAME_MAX + 1];
    char title[CHAT_TITLE_MAX + 1];
    uint32_t flags;
    uint32_t state;
    int32_t queue_position;   /* when QUEUED: 1-based, else 0 */
    uint64_t created_ms;
    uint64_t updated_ms;      /* last activity (also the LRU key) */
    uint32_t nmsgs;
    uint64_t bytes;           /* text bytes stored */
    uint64_t seq;             /* bumps on every change to the conversation */
    uint64_t gen_token;       /* who is generating (0 if nobody) */
    int stop_requested;       /* another connection asked to stop */
} chat_conv_info_t;

/* Creates a conversation owned by owner with bot and title (title may be
 * NULL: empty). tag must be 64 random bits (non-zero) from the caller's
 * CSPRNG: it makes ids unguessable. When the table is full the least
 * recently used IDLE conversation (of any user) is evicted and counted.
 * CHAT_OK, CHAT_EINVAL, CHAT_EFULL (every slot is busy generating). */
chat_status_t chat_store_conv_create(chat_store_t *st, const chat_owner_t *owner,
                                     const char *bot, const char *title,
                                     uint64_t tag, uint64_t now_ms,
                                     chat_conv_info_t *out);

/* Looks up a conversation by id, for its owner only: a wrong owner, a
 * malformed id or a stale id all give CHAT_ENOTFOUND (never revealing that
 * the id exists). out may be NULL. */
chat_status_t chat_store_conv_get(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id, chat_conv_info_t *out);

/* Calls cb for each of owner's conversations, most recently updated first.
 * bot (NULL = all bots) filters; archived: 0 = only active, 1 = only
 * archived, -1 = both. Returns the number listed. The callback must not
 * call back into the store. */
int chat_store_conv_list(chat_store_t *st, const chat_owner_t *owner, const char *bot,
                         int archived, void (*cb)(void *baton, const chat_conv_info_t *c),
                         void *baton);

/* The most recently updated non-archived conversation of owner with bot.
 * CHAT_OK or CHAT_ENOTFOUND. */
chat_status_t chat_store_conv_latest(chat_store_t *st, const chat_owner_t *owner,
                                     const char *bot, chat_conv_info_t *out);

chat_status_t chat_store_conv_rename(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id, const char *title, uint64_t now_ms);
/* Sets then clears flag bits. */
chat_status_t chat_store_conv_flags(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint32_t set, uint32_t clear,
                                    uint64_t now_ms);
/* Deletes the conversation and frees its text. CHAT_EBUSY while generating. */
chat_status_t chat_store_conv_delete(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id);

/* Generation ownership, so that exactly one connection streams into a
 * conversation at a time and any other connection (in any child) can ask
 * it to stop:
 *  begin: IDLE -> QUEUED or GENERATING with token (non-zero, caller-chosen).
 *         CHAT_EBUSY if someone else holds it.
 *  state: change state (QUEUED<->GENERATING, queue_position) if token holds.
 *  end:   back to IDLE if token holds (CHAT_ENOTFOUND otherwise).
 *  request_stop: sets stop_requested (any holder); CHAT_OK even if idle.
 *  stop_requested: lock-free read for the holder's loop. */
chat_status_t chat_store_gen_begin(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, uint64_t token, uint32_t state,
                                   uint64_t now_ms);
chat_status_t chat_store_gen_state(chat_store_t *st, const char *id, uint64_t token,
                                   uint32_t state, int32_t queue_position);
chat_status_t chat_store_gen_end(chat_store_t *st, const char *id, uint64_t token,
                                 uint64_t now_ms);
chat_status_t chat_store_gen_request_stop(chat_store_t *st, const chat_owner_t *owner,
                                          const char *id);
int chat_store_gen_stop_requested(chat_store_t *st, const char *id, uint64_t token);

/* Lock-free: the conversation's change counter (0 if the id is invalid).
 * Followers poll it to learn that something new was written. */
uint64_t chat_store_conv_seq(chat_store_t *st, const char *id);

/* ---- messages --------------------------------------------------------------- */

#define CHAT_MSG_COMPLETE 0x1u    /* assistant answer finished normally */
#define CHAT_MSG_INTERRUPTED 0x2u /* answer stopped/failed part way */
#define CHAT_MSG_COMMAND 0x4u     /* a command request or its result */
#define CHAT_MSG_ERROR 0x8u       /* an error shown in the conversation */
#define CHAT_MSG_STREAMING 0x10u  /* being written right now */
#define CHAT_MSG_REFUSED 0x20u    /* a refused command request or its refusal
                                   * (with CHAT_MSG_COMMAND; never sent to the
                                   * model, like CHAT_MSG_ERROR) */

typedef struct {
    uint32_t index; /* 0-based position among the stored messages */
    chat_role_t role;
    uint32_t flags;
    uint64_t ts_ms;
    size_t len;
} chat_msg_info_t;

/* Appends a message. If the conversation already holds max_messages, the
 * oldest is dropped. If the arena is full, LRU conversations of any user
 * are evicted (never one that is QUEUED/GENERATING, never this one); then
 * this conversation's own oldest messages. CHAT_OK, CHAT_ENOTFOUND,
 * CHAT_ETOOBIG (len > max_message_bytes), CHAT_EFULL (no room at all).
 * index_out (may be NULL) gets the new message's index. */
chat_status_t chat_store_msg_append(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, chat_role_t role, uint32_t flags,
                                    const char *text, size_t len, uint64_t now_ms,
                                    uint32_t *index_out);

/* Appends text to the last message (streaming an answer into history).
 * CHAT_OK, CHAT_ENOTFOUND, CHAT_EINVAL (no message), CHAT_ETOOBIG (the
 * message would exceed max_message_bytes: nothing appended), CHAT_EFULL. */
chat_status_t chat_store_msg_extend(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, const char *text, size_t len,
                                    uint64_t now_ms);

/* Sets/clears flag bits of the last message. */
chat_status_t chat_store_msg_flags(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, uint32_t set, uint32_t clear,
                                   uint64_t now_ms);

/* Keeps only the first keep messages (regenerate / edit). */
chat_status_t chat_store_msg_truncate(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id, uint32_t keep, uint64_t now_ms);

/* Copies messages [start, start+count) (count 0 = all) oldest first: for
 * each, text is reset and filled, then cb is called. Returns the number of
 * messages delivered, or a negative chat_status_t. cb must not call back
 * into the store. */
typedef void chat_msg_cb(void *baton, const chat_msg_info_t *info, const char *text,
                         size_t len);
int chat_store_msg_read(chat_store_t *st, const chat_owner_t *owner, const char *id,
                        uint32_t start, uint32_t count, chat_buf_t *text,
                        chat_msg_cb *cb, void *baton);

/* The context to send to a model: the most recent messages, oldest first,
 * at most max_msgs of them and at most max_bytes of text in total (the
 * newest message is always included, even if larger), skipping messages
 * flagged CHAT_MSG_ERROR. Same callback contract and return as read. */
int chat_store_msg_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                        uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                        chat_msg_cb *cb, void *baton);

/* For resume: copies bytes [offset, len) of message index into text
 * (reset first) and fills info. CHAT_OK, CHAT_ENOTFOUND (conversation or
 * index), CHAT_EINVAL (offset > len). */
chat_status_t chat_store_msg_get(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id, uint32_t index, size_t offset,
                                 chat_buf_t *text, chat_msg_info_t *info);

/* ---- users: rate limit and change notification -------------------------- */

/* Takes one token from owner's bucket (created full on first use; users
 * beyond max_users replace the least recently seen among a few probes).
 * CHAT_OK, or CHAT_ELIMIT with *retry_after_ms set. */
chat_status_t chat_store_rate_take(chat_store_t *st, const chat_owner_t *owner,
                                   const chat_rate_t *rate, uint64_t now_ms,
                                   int64_t *retry_after_ms);

/* Per-user change counter for pushing session lists to every tab: bumped
 * by chat_store_user_bump (conversation created/renamed/state change...),
 * read lock-free by every connection of that user. */
void chat_store_user_bump(chat_store_t *st, const chat_owner_t *owner);
uint64_t chat_store_user_seq(chat_store_t *st, const chat_owner_t *owner);
/* Lock-free: changes whenever any user's counter is bumped, so one watcher
 * per process can tell cheaply that some connection may have news. */
uint64_t chat_store_events(chat_store_t *st);

/* ---- backends: capacity, fair queue, circuit breaker, health ------------- */

#define CHAT_BREAKER_CLOSED 0
#define CHAT_BREAKER_OPEN 1
#define CHAT_BREAKER_HALF_OPEN 2

typedef struct {
    char name[CHAT_BOT_NAME_MAX + 1];
    uint32_t max_active;      /* 0 = unlimited */
    uint32_t active;
    uint32_t queued;
    int breaker;              /* CHAT_BREAKER_* */
    uint32_t failures;        /* consecutive */
    uint64_t open_until_ms;
    int healthy;              /* -1 unknown, 0 down, 1 up */
    uint64_t checked_ms;      /* last health probe */
    char version[32];         /* from GET /api/version, "" if unknown */
    char detail[128];         /* last health error, "" if none */
} chat_backend_info_t;

/* Registers (or finds, by name) a backend and sets its limits; returns its
 * index >= 0, or CHAT_EFULL. Called at startup for each ChatbotBackend. */
int chat_store_backend_register(chat_store_t *st, const char *name, uint32_t max_active);

/* Asks for a request slot, FIFO-fair across all children. ticket must be
 * unique (caller-chosen, non-zero) and stays the same while waiting.
 *   CHAT_OK      a slot is held: call release when the request ends
 *   CHAT_EAGAIN  queued; *position (1-based) tells where; call again
 *                (poll) every few tens of ms with the same ticket
 *   CHAT_EFULL   the queue is at queue_cap: tell the user "busy"
 * Waiters that stop polling for 10 s are dropped; holders that do not call
 * backend_beat for 60 s are reaped (a crashed child never leaks a slot). */
chat_status_t chat_store_backend_acquire(chat_store_t *st, int idx, uint64_t ticket,
                                         uint64_t now_ms, int32_t *position);
/* Leaves the queue (user stopped while waiting). */
void chat_store_backend_cancel(chat_store_t *st, int idx, uint64_t ticket);
void chat_store_backend_release(chat_store_t *st, int idx, uint64_t ticket);
void chat_store_backend_beat(chat_store_t *st, int idx, uint64_t ticket, uint64_t now_ms);

/* Circuit breaker (as the old service: open after `threshold` consecutive
 * failures, one half-open probe after cooldown_ms).
 * allow: 1 if a request may be sent now (CLOSED, or OPEN whose cooldown
 * passed -> HALF_OPEN with this caller as the single probe), else 0.
 * result: report success (closes) or failure (counts; opens). */
int chat_store_breaker_allow(chat_store_t *st, int idx, uint64_t now_ms,
                             uint64_t cooldown_ms);
void chat_store_breaker_result(chat_store_t *st, int idx, int ok, uint64_t now_ms,
                               uint32_t threshold, uint64_t cooldown_ms);

void chat_store_backend_health(chat_store_t *st, int idx, int healthy,
                               const char *version, const char *detail, uint64_t now_ms);
chat_status_t chat_store_backend_get(chat_store_t *st, int idx, chat_backend_info_t *out);
int chat_store_backend_count(chat_store_t *st);

/* ---- metrics (all lock-free, atomic) -------------------------------------- */

/* Histogram bucket upper bounds are fixed (see chat_metrics_bounds). */
#define CHAT_HIST_BUCKETS 12
typedef enum {
    CHAT_HIST_TTFT = 0,       /* time to first token, ms */
    CHAT_HIST_DURATION = 1,   /* answer duration, ms */
    CHAT_HIST_TPS = 2,        /* tokens per second */
    CHAT_HIST_QUEUE_WAIT = 3, /* time queued, ms */
    CHAT_HIST_COUNT = 4
} chat_hist_t;
/* Upper bounds of the buckets of histogram h (the last is +Inf). */
const double *chat_metrics_bounds(chat_hist_t h);

typedef enum {
    CHAT_CTR_ANSWERS = 0,     /* complete answers */
    CHAT_CTR_INTERRUPTED,     /* answers stopped or failed part way */
    CHAT_CTR_TOKENS,          /* completion tokens */
    CHAT_CTR_PROMPT_TOKENS,
    CHAT_CTR_ERRORS,          /* error frames sent for turns of this series */
    CHAT_CTR_COUNT
} chat_counter_t;

typedef enum {
    CHAT_G_CONNECTIONS = 0,   /* gauge: open WebSockets */
    CHAT_G_GENERATING,        /* gauge: answers being generated */
    CHAT_G_QUEUED,            /* gauge: turns waiting for a backend slot */
    CHAT_G_CONNECTIONS_TOTAL, /* counter */
    CHAT_G_MESSAGES_IN,       /* counter: client messages */
    CHAT_G_RATE_LIMITED,      /* counter */
    CHAT_G_EVICTIONS,         /* counter: conversations evicted */
    CHAT_G_COMMANDS,          /* counter: commands run */
    CHAT_G_COUNT
} chat_gauge_t;

/* Error codes are counted by name in a small fixed table. */
#define CHAT_ERRCODE_MAX 24

/* Series are (bot, backend) pairs, found or created by name; returns the
 * series index or CHAT_EFULL. Needs the lock (creation); then use the index
 * lock-free. */
int chat_store_series(chat_store_t *st, const char *bot, const char *backend);
void chat_metrics_add(chat_store_t *st, int series, chat_counter_t c, uint64_t v);
void chat_metrics_observe(chat_store_t *st, int series, chat_hist_t h, double v);
void chat_metrics_gauge_add(chat_store_t *st, chat_gauge_t g, int64_t delta);
void chat_metrics_error(chat_store_t *st, const char *code);

typedef struct {
    char bot[CHAT_BOT_NAME_MAX + 1];
    char backend[CHAT_BOT_NAME_MAX + 1];
    uint64_t counters[CHAT_CTR_COUNT];
    uint64_t hist[CHAT_HIST_COUNT][CHAT_HIST_BUCKETS]; /* non-cumulative */
    double hist_sum[CHAT_HIST_COUNT];
    uint64_t hist_count[CHAT_HIST_COUNT];
} chat_series_snapshot_t;

typedef struct {
    int64_t gauges[CHAT_G_COUNT];
    struct { char code[32]; uint64_t count; } errors[CHAT_ERRCODE_MAX];
    int nerrors;
    /* store usage */
    uint32_t conversations, max_conversations, users, max_users;
    uint64_t arena_used, arena_size;
    uint64_t started_ms;
} chat_metrics_snapshot_t;

void chat_metrics_snapshot(chat_store_t *st, chat_metrics_snapshot_t *out);
int chat_metrics_series_count(chat_store_t *st);
chat_status_t chat_metrics_series_get(chat_store_t *st, int series,
                                      chat_series_snapshot_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_STORE_H */
