/* chat/store.h - conversations, history, users, rate limits, quotas,
 * backend capacity/queue/breaker state and metrics: the chat store.
 *
 * The store is reached through a provider (chat_store_provider_t), the way
 * httpd's mod_socache reaches shmcb, redis or memcache through
 * ap_socache_provider_t: every chat_store_*() call below dispatches to the
 * provider of the handle. The core implements one provider, shared memory
 * ("shm"): one caller-given memory region (an APR shared-memory segment in
 * the module, a malloc'ed or mmap'ed buffer in the unit tests), set up with
 * chat_store_format/attach/load below. Inside the region everything is
 * addressed by offsets/indexes, never pointers, because httpd children map
 * the segment at different addresses and because the region is written to
 * a file verbatim (ChatbotHistoryFile) and read back.
 *
 * LOCKING: the store locks internally; callers never hold a lock. The shm
 * provider's locks are robust process-shared mutexes inside the region,
 * striped by identity (a shard), plus one short pool lock for free space
 * and one per backend: a child killed at any moment leaves no lock taken
 * and no half-made change (its work is rolled back by the next one to take
 * the lock). Functions marked "lock-free" only read or add atomically.
 * Callbacks (list, read, tail) run under a lock: they must not call back
 * into the store.
 *
 * The detailed layout is documented with an ASCII diagram in
 * mod_chatbot/core/chat_store.c; docs/storage.md explains it for operators.
 */
#ifndef CHAT_STORE_H
#define CHAT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "chat/common.h"
#include "chat/stream.h" /* chat_role_t */
#include "chat/ratelimit.h"
#include "chat/settings.h" /* CHAT_SETTINGS_MODEL_MAX */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- identity ----------------------------------------------------------- */

/* A user's identity as stored: SHA-1 of "u:<r->user>" or "s:<cookie>",
 * and whether it is an authenticated one ("u:"): quotas and eviction treat
 * the two classes differently. */
typedef struct {
    uint8_t b[20];
    uint32_t auth; /* 1 for "u:" identities */
} chat_owner_t;

/* Derives the stored owner key from an identity string ("u:..." counts as
 * authenticated, anything else as anonymous). */
void chat_owner_from(chat_owner_t *o, const char *identity, size_t len);

/* ---- quotas ----------------------------------------------------------------- */

/* What one identity of a class may hold. 0 = no limit. */
typedef struct {
    uint32_t conversations; /* conversations kept */
    uint64_t history_bytes; /* arena bytes its conversations take (256-byte blocks) */
    chat_rate_t create;     /* conversations created (count 0 = unlimited) */
} chat_quota_t;

/* How the store is divided. Anonymous identities may fill free space, but
 * together they are entitled to anon_share_pct percent of the conversation
 * slots and of the arena only: beyond it, authenticated identities take the
 * difference back when they need room (100 = no reservation). */
typedef struct {
    chat_quota_t anon;
    chat_quota_t auth;
    uint32_t anon_share_pct; /* 1..100 */
} chat_store_policy_t;

/* No quota, no reservation: what a handle starts with. */
void chat_store_policy_default(chat_store_policy_t *p);

/* ---- layout --------------------------------------------------------------- */

typedef struct {
    uint32_t max_users;         /* rate-limit / event slots, e.g. 4096 */
    uint32_t max_conversations; /* e.g. 1024 */
    uint32_t max_messages;      /* per conversation; oldest dropped beyond, e.g. 200 */
    uint32_t max_message_bytes; /* per stored message, e.g. 262144 */
    uint64_t history_bytes;     /* size of the text arena, e.g. 16 MiB */
    uint32_t max_backends;      /* e.g. 16 */
    uint32_t queue_cap;         /* per backend waiting queue, e.g. 64 */
    uint32_t max_active;        /* per backend concurrent-request slots, e.g. 64 */
    uint32_t metric_series;     /* (bot, backend) pairs, e.g. 64 */
    uint32_t max_procs;         /* processes using the store at once (the
                                 * process table: children of the current
                                 * and of older generations), e.g. 64 */
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

/* Attaches to a live region formatted earlier, one that other processes
 * may be using right now (a graceful restart). Verifies the magic, version
 * and that the layout matches l exactly, then, holding every lock (so that
 * no half-done update is seen; a holder that died is rolled back first),
 * gives back what dead holders leaked and checks every table and chain.
 * CHAT_OK, CHAT_EPARSE (not a store / corrupt), CHAT_EINVAL (layout differs). */
chat_status_t chat_store_attach(chat_store_t **pst, void *base, size_t size,
                                const chat_store_layout_t *l);

/* Attaches to an image nobody uses: bytes read back from a file, or a copy.
 * Its locks and process table are reset (what they held died with the
 * writer), then it is checked as by attach: a corrupted or hostile file can
 * never crash the server. Same returns as attach. */
chat_status_t chat_store_load(chat_store_t **pst, void *base, size_t size,
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

/* ---- the provider interface -------------------------------------------------- */

/* What every store provider implements. A provider's handle starts with a
 * chat_store_head_t; the functions of this header dispatch through it.
 * Lifecycle (creating, finding, saving the storage) is provider-specific:
 * for shm it is chat_store_format/attach/load above. Each operation has the
 * contract of the chat_store_* function of the same name. */
typedef struct chat_store_provider chat_store_provider_t;
typedef struct {
    const chat_store_provider_t *provider;
} chat_store_head_t;

/* The provider's name ("shm"). */
const char *chat_store_provider_name(chat_store_t *st);

/* ---- processes and upkeep ------------------------------------------------------ */

/* Sets this process's quotas and division of the store (process-local: the
 * parent sets it after reading the configuration, children inherit it). */
void chat_store_set_policy(chat_store_t *st, const chat_store_policy_t *p);

/* Registers the calling process (an httpd child, from its main thread, once)
 * so that other processes can tell when it dies: conversations it was
 * generating and backend slots it held are then released within a second
 * instead of after a timeout. CHAT_OK, or CHAT_EFULL (table full: the
 * process works, its crashes are noticed by timeouts only). */
chat_status_t chat_store_proc_attach(chat_store_t *st, int pid, uint64_t now_ms);
/* Unregisters at a clean exit (same thread as attach). */
void chat_store_proc_detach(chat_store_t *st);

/* Upkeep, cheap enough to call every second and after every child exit:
 * takes over locks whose holder died (rolling its work back), ends the
 * generations and frees the backend slots of processes that died, and
 * gives back what they leaked. Returns the number of dead processes
 * cleaned up. */
int chat_store_maintain(chat_store_t *st, uint64_t now_ms);

/* Test seam: fn (NULL: none) is called at every point of an update where a
 * process killed right there must leave the store consistent (before and
 * after each undo-log entry, at each commit). Crash tests stop or pause
 * there; production never sets it. Process-wide, not thread safe. */
void chat_store_set_crash_hook(void (*fn)(void));

/* ---- conversations ("bot sessions") -------------------------------------- */

#define CHAT_CONV_ID_LEN 24 /* 8 hex slot + 16 hex random tag */
#define CHAT_BOT_NAME_MAX 64
#define CHAT_TITLE_MAX 128

/* flags */
#define CHAT_CONV_ARCHIVED 0x1u
#define CHAT_CONV_STOPPED 0x2u /* the user stopped this bot session */

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
    int32_t queue_position; /* when QUEUED: 1-based, else 0 */
    uint64_t created_ms;
    uint64_t updated_ms; /* last activity (also the LRU key) */
    uint32_t nmsgs;
    uint64_t bytes;     /* text bytes stored */
    uint64_t seq;       /* bumps on every change to the conversation */
    uint64_t gen_token; /* who is generating (0 if nobody) */
    int stop_requested; /* another connection asked to stop */
    /* the model its settings blob names (chat_settings_model_of), "" if
     * none: whether it applies is the caller's policy */
    char model[CHAT_SETTINGS_MODEL_MAX + 1];
} chat_conv_info_t;

/* Creates a conversation owned by owner with bot and title (title may be
 * NULL: empty). tag must be 64 random bits (non-zero) from the caller's
 * CSPRNG: it makes ids unguessable. Spends one token of the identity's
 * creation rate (chat_quota_t.create). An identity at its conversation
 * quota gives up its own least recently used idle conversation. When the
 * store is full, the least recently used idle conversation of an identity
 * that holds at least as many conversations as owner will is evicted and
 * counted (owner's own if nobody else does) - an anonymous owner never
 * evicts an authenticated identity, and an authenticated owner takes back
 * the part of the anonymous share's excess (chat_store_policy_t) first.
 * CHAT_OK, CHAT_EINVAL, CHAT_ELIMIT (creation rate: see
 * chat_store_create_retry_ms), CHAT_EQUOTA (at its quota and all of its
 * conversations busy), CHAT_EFULL (nothing may be evicted for it). */
chat_status_t chat_store_conv_create(chat_store_t *st, const chat_owner_t *owner,
                                     const char *bot, const char *title, uint64_t tag,
                                     uint64_t now_ms, chat_conv_info_t *out);

/* The conversation of owner titled exactly title, or a new one: the first
 * of owner's conversations with that title in this order - neither stopped
 * nor archived, stopped, archived, both - most recently updated first
 * within each; when there is none, one is created as chat_store_conv_create
 * does, with flags (CHAT_CONV_STOPPED, CHAT_CONV_ARCHIVED) set. *created
 * says which. The look-up and the creation are one step for the shm
 * provider: two concurrent calls of one owner with one title make one
 * conversation (a provider without conv_find_or_create gets a look-up
 * followed by a creation). Returns what chat_store_conv_create returns. */
chat_status_t chat_store_conv_find_or_create(chat_store_t *st, const chat_owner_t *owner,
                                             const char *bot, const char *title,
                                             uint32_t flags, uint64_t tag,
                                             uint64_t now_ms, chat_conv_info_t *out,
                                             int *created);

/* After CHAT_ELIMIT from conv_create: milliseconds until owner may create
 * a conversation again (>= 1), 0 if it may now. */
int64_t chat_store_create_retry_ms(chat_store_t *st, const chat_owner_t *owner,
                                   uint64_t now_ms);

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

/* A conversation's settings: a blob of at most CHAT_CONV_META_MAX bytes
 * (chat/settings.h: model, system prompt, temperature; the store reads
 * only its model, for chat_conv_info_t.model), owner-checked like every conversation op,
 * counted against the owner's quota, removed with the conversation, kept in the history
 * file. get appends the blob to out (nothing if none was set) and returns
 * CHAT_OK or CHAT_ENOTFOUND. set replaces it (len 0 removes it): CHAT_OK,
 * CHAT_ENOTFOUND, CHAT_ETOOBIG, CHAT_EQUOTA, CHAT_EFULL, CHAT_EINTERNAL (a
 * provider without settings). Neither changes the conversation's place in
 * the most-recently-used order; set bumps its change counter. */
#define CHAT_CONV_META_MAX 8192
chat_status_t chat_store_conv_meta_get(chat_store_t *st, const chat_owner_t *owner,
                                       const char *id, chat_buf_t *out);
chat_status_t chat_store_conv_meta_set(chat_store_t *st, const chat_owner_t *owner,
                                       const char *id, const char *data, size_t len,
                                       uint64_t now_ms);

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

/* A turn's bookkeeping in one call (with the store on redis, one round
 * trip instead of four; a provider without it gets the calls one by one):
 *  turn_start: gen_begin(token, state); then, if text is not NULL, appends
 *    it as the user's message (flags, *index_out) and clears
 *    CHAT_CONV_STOPPED; bumps the owner's list. CHAT_EBUSY / CHAT_ENOTFOUND
 *    as gen_begin (nothing changed); if the append fails (CHAT_EFULL,
 *    CHAT_EQUOTA, CHAT_ETOOBIG...) the generation is ended again and that
 *    status returned.
 *  turn_finish: if answer_set is not 0, sets it on the last (assistant)
 *    message and clears CHAT_MSG_STREAMING; if err is not NULL, appends it
 *    as an assistant message flagged CHAT_MSG_ERROR; gen_end(token); bumps
 *    the owner's list. */
chat_status_t chat_store_turn_start(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint64_t token, uint32_t state,
                                    const char *text, size_t len, uint32_t flags,
                                    uint64_t now_ms, uint32_t *index_out);
chat_status_t chat_store_turn_finish(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id, uint64_t token, uint32_t answer_set,
                                     const char *err, size_t err_len, uint64_t now_ms);

/* The answer's text not yet stored, for chat_store_turn_finish_text (with
 * redis: the answer's last piece and the turn's end in one atomic round trip). */
typedef struct {
    const char *text; /* in: len > 0 bytes */
    size_t len;
    int extend;       /* in: 1 more of the last message (msg_extend), 0 a new
                       * assistant message flagged CHAT_MSG_STREAMING (msg_append) */
    uint32_t index;   /* out: the new message's index (extend 0, rc CHAT_OK) */
    chat_status_t rc; /* out: what storing the text returned */
} chat_turn_text_t;

/* chat_store_turn_finish with ans (NULL: none) stored first, as msg_append
 * or msg_extend would (same limits, quotas, evictions); answer_set applies
 * to it. If the store refuses the text (ans->rc neither CHAT_OK nor
 * CHAT_EUNAVAIL), nothing else is done and ans->rc is returned: the caller
 * finishes the turn itself (chat_store_turn_finish, with the reason). With
 * CHAT_EUNAVAIL the finish was asked all the same. Otherwise returns what
 * chat_store_turn_finish returns. */
chat_status_t chat_store_turn_finish_text(chat_store_t *st, const chat_owner_t *owner,
                                          const char *id, uint64_t token,
                                          chat_turn_text_t *ans, uint32_t answer_set,
                                          const char *err, size_t err_len,
                                          uint64_t now_ms);

/* A backend slot given back with a turn's finish
 * (chat_store_turn_finish_release). */
typedef struct {
    int backend;     /* chat_store_backend_register's index */
    uint64_t ticket; /* the holder's ticket */
} chat_turn_release_t;

/* chat_store_backend_release(rel) and chat_store_turn_finish_text (ans may
 * be NULL) in one request where the store can (with redis: the finish's
 * script gives the slot back first, whatever the finish then returns, so
 * that the next waiter is woken with the turn's end and not a request
 * later). rel NULL: chat_store_turn_finish_text alone. */
chat_status_t chat_store_turn_finish_release(chat_store_t *st, const chat_owner_t *owner,
                                             const char *id, uint64_t token,
                                             chat_turn_text_t *ans, uint32_t answer_set,
                                             const char *err, size_t err_len,
                                             uint64_t now_ms,
                                             const chat_turn_release_t *rel);

/* chat_store_turn_start and, if it succeeded, chat_store_backend_acquire
 * (backend, ticket) in the same request where the store can (with redis,
 * one script): acq->tried is then 1, acq->rc the acquire's status and
 * acq->position its place in line. A store that cannot (tried 0: the
 * caller acquires as usual) only starts the turn; acq NULL: turn_start. */
typedef struct {
    int backend;
    uint64_t ticket;
    uint64_t now_ms; /* the acquire's time */
    int tried;
    chat_status_t rc;
    int32_t position;
    int generating; /* a slot on a closed breaker: the state is generating already */
    /* in (0: none): the context that chat_store_msg_tail_meta will be
     * asked for next by this thread, if the slot is taken (its max_msgs
     * and max_bytes, meta wanted): a provider may read it with the start
     * and answer that call from it (redis: one round trip fewer) */
    uint32_t ctx_msgs;
    size_t ctx_bytes;
} chat_turn_acquire_t;
chat_status_t chat_store_turn_start_acquire(chat_store_t *st, const chat_owner_t *owner,
                                            const char *id, uint64_t token,
                                            uint32_t state, const char *text, size_t len,
                                            uint32_t flags, uint64_t now_ms,
                                            uint32_t *index_out,
                                            chat_turn_acquire_t *acq);

/* chat_store_turn_start_acquire for a conversation the caller believes to
 * be owner's and bot's (a connection's current one, looked up at an
 * earlier turn), so that a turn needs no look-up of its own first: the
 * belief is checked in the same step (with redis, in the start's script).
 * CHAT_ENOTFOUND (gone, or not owner's) or CHAT_ESTALE (its bot is not
 * bot): nothing changed, acq->tried 0, and the caller looks the
 * conversation up as usual; otherwise what chat_store_turn_start_acquire
 * returns. A provider without turn_start_bot gets chat_store_conv_get,
 * the comparison, then chat_store_turn_start_acquire. */
chat_status_t chat_store_turn_start_bot(chat_store_t *st, const chat_owner_t *owner,
                                        const char *id, const char *bot, uint64_t token,
                                        uint32_t state, const char *text, size_t len,
                                        uint32_t flags, uint64_t now_ms,
                                        uint32_t *index_out, chat_turn_acquire_t *acq);

/* Lock-free: the conversation's change counter (0 if the id is invalid).
 * Followers poll it to learn that something new was written. */
uint64_t chat_store_conv_seq(chat_store_t *st, const char *id);

/* ---- messages --------------------------------------------------------------- */

#define CHAT_MSG_COMPLETE 0x1u    /* assistant answer finished normally */
#define CHAT_MSG_INTERRUPTED 0x2u /* answer stopped/failed part way */
#define CHAT_MSG_COMMAND 0x4u     /* a command request or its result */
#define CHAT_MSG_ERROR 0x8u       /* an error shown in the conversation */
#define CHAT_MSG_STREAMING 0x10u  /* being written right now */
#define CHAT_MSG_REFUSED                                                                 \
    0x20u /* a refused command request or its refusal                                    \
           * (with CHAT_MSG_COMMAND; never sent to the                                   \
           * model, like CHAT_MSG_ERROR) */
#define CHAT_MSG_ATTACH                                                                  \
    0x1000u /* a user message whose text starts with                                     \
             * attachments in the form of chat/attach.h */
#define CHAT_MSG_ALT                                                                     \
    0x2000u /* another version: not the chosen one among its                             \
             * siblings (chat/versions.h) */

/* Versions and branches: every message has a parent (an earlier message,
 * or none for the first messages). Messages with the same parent are
 * versions of one another (a regenerated answer, an edited question);
 * exactly one of them is chosen, the others carry CHAT_MSG_ALT. The active
 * path runs from the chosen root through each chosen child; it is what a
 * conversation shows and what the model is sent. Nothing is deleted when
 * a version is added or chosen. */
#define CHAT_MSG_NO_PARENT 0xFFFFFFFFu
#define CHAT_MSG_MAX_VERSIONS 32u /* versions (siblings) of one message */

typedef struct {
    uint32_t index; /* 0-based position among the stored messages */
    chat_role_t role;
    uint32_t flags;
    uint64_t ts_ms;
    size_t len;
    uint32_t parent; /* index of the parent, or CHAT_MSG_NO_PARENT */
} chat_msg_info_t;

/* Appends a message as a child of the last message of the active path
 * (chat/versions.h). If the conversation already holds max_messages, the
 * oldest is dropped. If the owner would exceed its history quota, its own
 * least recently used idle conversations go, then this conversation's
 * oldest messages. If the arena is full, idle
 * conversations are evicted as for conv_create (measured in arena bytes),
 * never one that is QUEUED/GENERATING, never this one; then this
 * conversation's own oldest messages. CHAT_OK, CHAT_ENOTFOUND, CHAT_ETOOBIG
 * (len > max_message_bytes), CHAT_EQUOTA (larger than the owner's quota),
 * CHAT_EFULL (no room at all). index_out (may be NULL) gets the new
 * message's index. */
chat_status_t chat_store_msg_append(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, chat_role_t role, uint32_t flags,
                                    const char *text, size_t len, uint64_t now_ms,
                                    uint32_t *index_out);

/* Appends a message as a new version among the children of parent (an
 * index, or CHAT_MSG_NO_PARENT for a new first message): it becomes the
 * chosen one, its siblings get CHAT_MSG_ALT; nothing is deleted. Regenerate
 * adds an answer under the same question, an edit adds a question under
 * the edited one's parent. Room is made as for chat_store_msg_append (a
 * parent dropped by it makes the message a root). Returns what append
 * returns, and CHAT_ENOTFOUND (parent >= the number of messages),
 * CHAT_ELIMIT (parent has CHAT_MSG_MAX_VERSIONS children already). */
chat_status_t chat_store_msg_branch(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint32_t parent, chat_role_t role,
                                    uint32_t flags, const char *text, size_t len,
                                    uint64_t now_ms, uint32_t *index_out);

/* Makes message index the chosen version among its siblings (clearing
 * its CHAT_MSG_ALT and setting the others'): the active path then runs
 * through it and its own chosen descendants. CHAT_OK (also if it already
 * was), CHAT_ENOTFOUND, CHAT_EBUSY (the conversation is generating). */
chat_status_t chat_store_msg_select(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint32_t index, uint64_t now_ms);

/* Appends text to the last message (streaming an answer into history).
 * CHAT_OK, CHAT_ENOTFOUND, CHAT_EINVAL (no message), CHAT_ETOOBIG (the
 * message would exceed max_message_bytes: nothing appended), CHAT_EQUOTA,
 * CHAT_EFULL. */
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
                        uint32_t start, uint32_t count, chat_buf_t *text, chat_msg_cb *cb,
                        void *baton);

/* The context to send to a model: the most recent messages of the active
 * path (chat/versions.h), oldest first,
 * at most max_msgs of them and at most max_bytes of text in total (the
 * newest message is always included, even if larger), skipping messages
 * flagged CHAT_MSG_ERROR. Same callback contract and return as read. */
int chat_store_msg_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                        uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                        chat_msg_cb *cb, void *baton);

/* chat_store_msg_tail and, first, chat_store_conv_meta_get into meta (the
 * settings blob appended, nothing if none is set or it cannot be read: a
 * turn's settings and context in one call; a store may answer both with
 * one request). Returns what chat_store_msg_tail returns. */
int chat_store_msg_tail_meta(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                             chat_msg_cb *cb, void *baton, chat_buf_t *meta);

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
/* chat_store_rate_take of owner, then (if a token was taken) of owner2
 * with rate2, in one step where the store can (redis: one script): a
 * message's identity and its address. CHAT_OK, or CHAT_ELIMIT with
 * *retry_after_ms from the bucket that refused (the first's token stays
 * taken if the second refuses, as with two calls). */
chat_status_t chat_store_rate_take2(chat_store_t *st, const chat_owner_t *owner,
                                    const chat_rate_t *rate, const chat_owner_t *owner2,
                                    const chat_rate_t *rate2, uint64_t now_ms,
                                    int64_t *retry_after_ms);

/* Per-user change counter for pushing session lists to every tab: bumped
 * by chat_store_user_bump (conversation created/renamed/state change...),
 * read lock-free by every connection of that user. */
void chat_store_user_bump(chat_store_t *st, const chat_owner_t *owner);
uint64_t chat_store_user_seq(chat_store_t *st, const chat_owner_t *owner);
/* Lock-free: changes whenever any user's counter is bumped, so one watcher
 * per process can tell cheaply that some connection may have news. */
uint64_t chat_store_events(chat_store_t *st);
/* Interest, from this process, in the changes of an owner's list (owner
 * set, id NULL: chat_store_user_seq) or of a conversation (id set:
 * chat_store_conv_seq). A store whose counters are moved by a change
 * channel (redis) listens only to the parts some connection here watches;
 * each on (1) is paired with one off (0). Nothing for shared memory. */
void chat_store_watch(chat_store_t *st, const chat_owner_t *owner, const char *id,
                      int on);

/* ---- backends: capacity, fair queue, circuit breaker, health ------------- */

#define CHAT_BREAKER_CLOSED 0
#define CHAT_BREAKER_OPEN 1
#define CHAT_BREAKER_HALF_OPEN 2

typedef struct {
    char name[CHAT_BOT_NAME_MAX + 1];
    uint32_t max_active; /* 0 = unlimited */
    uint32_t active;
    uint32_t queued;
    int breaker;       /* CHAT_BREAKER_* */
    uint32_t failures; /* consecutive */
    uint64_t open_until_ms;
    int healthy;         /* -1 unknown, 0 down, 1 up */
    uint64_t checked_ms; /* last health probe */
    char version[32];    /* from GET /api/version, "" if unknown */
    char detail[128];    /* last health error, "" if none */
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

/* Records the backend's health (version NULL: keep the known one). A report
 * that changes nothing within a second of the last one takes no lock. */
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
    CHAT_CTR_ANSWERS = 0, /* complete answers */
    CHAT_CTR_INTERRUPTED, /* answers stopped or failed part way */
    CHAT_CTR_TOKENS,      /* completion tokens */
    CHAT_CTR_PROMPT_TOKENS,
    CHAT_CTR_ERRORS, /* error frames sent for turns of this series */
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
    struct {
        char code[32];
        uint64_t count;
    } errors[CHAT_ERRCODE_MAX];
    int nerrors;
    /* store usage */
    uint32_t conversations, max_conversations, users, max_users;
    uint64_t arena_used, arena_size;
    uint32_t anon_conversations; /* of anonymous identities */
    uint64_t anon_arena_used;
    uint64_t started_ms;
    /* crash safety */
    uint64_t recoveries;   /* locks taken over from a process that died */
    uint64_t procs_reaped; /* dead processes whose generations were ended */
} chat_metrics_snapshot_t;

void chat_metrics_snapshot(chat_store_t *st, chat_metrics_snapshot_t *out);
int chat_metrics_series_count(chat_store_t *st);
chat_status_t chat_metrics_series_get(chat_store_t *st, int series,
                                      chat_series_snapshot_t *out);

#include "chat/store_provider.h"

#ifdef __cplusplus
}
#endif
#endif /* CHAT_STORE_H */
