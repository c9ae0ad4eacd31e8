/* mod_chatbot_ws.h - what the WebSocket files (mod_chatbot_ws_*.c) share.
 *
 *   mod_chatbot_ws_handshake.c  RFC 6455 handshake, Origin check, per-address
 *                               caps, the 101 and the take-over
 *   mod_chatbot_ws_conn.c       the connection's life: states, the process
 *                               step, its end, the blocking driver
 *   mod_chatbot_ws_io.c         its I/O: the message layer, writes, reads
 *   mod_chatbot_ws_mpm.c        parking in the event MPM: its hooks, and the
 *                               upgrade request held open
 *   mod_chatbot_ws_messages.c   a client message dispatched to its operation,
 *                               the operations that are not turns, frames
 *   mod_chatbot_ws_chat.c       the turns: engine, waiting for a worker
 *   mod_chatbot_ws_settings.c   the "settings" message
 *   mod_chatbot_ws_follow.c     following (resume) an answer written elsewhere
 *   mod_chatbot_ws_watch.c      the child's registry of connections, the
 *                               watcher thread, the worker budget, counters
 *
 * A connection's life (docs/websocket.md):
 *
 *   HANDSHAKE --101--> IDLE <------> ACTIVE --> CLOSING --> DONE
 *                       |  ^           (a worker is held: an answer
 *                  park |  | the client     streams or is followed)
 *                       v  | sends
 *                     PARKED  (event MPM, CONN_STATE_ASYNC_WAITIO: no thread)
 *
 * Where a connection cannot be parked (HTTP/2 streams, MPMs other than
 * event, httpd < 2.4.63) the same step runs in a blocking loop on the
 * handler's thread, which the connection then holds for its whole life.
 */
#ifndef MOD_CHATBOT_WS_H
#define MOD_CHATBOT_WS_H

#include "httpd.h"
#include "util_filter.h"
#include "apr_buckets.h"

#include "mod_chatbot.h"
#include "chat/ws.h"

#define CHATBOT_WS_MAX_FOLLOW 4

typedef enum {
    WS_ST_HANDSHAKE = 0, /* the upgrade request is checked and answered */
    WS_ST_IDLE,          /* open, nothing to do; a thread runs it */
    WS_ST_PARKED,        /* open and idle, in the event MPM: no thread */
    WS_ST_ACTIVE,        /* an answer streams or is followed: a worker held */
    WS_ST_CLOSING,       /* we sent a close frame and wait for the peer's */
    WS_ST_DONE           /* over: nothing more is read or written */
} chatbot_ws_state_t;

/* What one process step asks of its driver. */
typedef enum {
    CHATBOT_WS_WANT_READ = 0, /* idle: wake me when the client sends */
    CHATBOT_WS_WANT_WRITE,    /* idle, output waits for a writable socket */
    CHATBOT_WS_CONTINUE,      /* busy: wait on the backends and the client */
    CHATBOT_WS_DONE           /* close the connection */
} chatbot_ws_next_t;

/* Why the watcher made a parked connection's socket readable. */
typedef enum {
    WS_KICK_NONE = 0,
    WS_KICK_STOP, /* the child stops: say 1001 */
    WS_KICK_IDLE  /* nothing received for ChatbotIdleTimeout */
} chatbot_ws_kick_t;

/* An answer followed for `resume` (written by another connection, maybe
 * in another child), read back from the shared store as it grows. */
typedef struct {
    int active;
    char conv[CHAT_CONV_ID_LEN + 1];
    uint32_t index;    /* where the answer was last seen */
    apr_uint64_t ts;   /* its creation time: with the role, its identity */
    int wait_new;      /* the answer has not started yet */
    apr_size_t offset; /* bytes already sent */
    apr_uint64_t seq;  /* the conversation's change counter last seen */
    int watched;       /* chat_store_watch on (while active) */
} chatbot_follow_t;

typedef struct chatbot_wsc chatbot_wsc_t;

struct chatbot_wsc {
    /* ---- set at the handshake, read-only afterwards ---------------------- */
    request_rec *r; /* lives as long as the connection (see EOR hold) */
    conn_rec *c;
    chatbot_srv_conf *sc;
    chatbot_limits_t lim;
    chatbot_ident_t id;
    int is_h2;                       /* an HTTP/2 stream (RFC 8441) */
    int can_park;                    /* the event MPM can take it back when idle */
    int fd;                          /* descriptor to poll for input, -1 if none */
    apr_uint64_t park_ping_ms;       /* ping period while parked (MPM Timeout) */
    ap_filter_t *core_out;           /* the network filter: non-blocking pushes */
    ap_filter_t *hold_out, *hold_in; /* see mod_chatbot_ws_mpm.c */

    /* ---- the state machine ------------------------------------------------ */
    chatbot_ws_state_t state;
    int park_pending; /* returned to the MPM; PARKED once it queues it */
    int park_sense;   /* CONN_SENSE_WANT_READ or _WRITE while parked */
    int handing_over; /* between the handler's return and the MPM */
    apr_bucket *eor;  /* the upgrade request's end, logged at the end */

    /* ---- protocol and I/O ---------------------------------------------------- */
    chat_ws_t *ws;              /* NULL while parked at rest (rebuilt on wake) */
    chat_ws_stats_t ws_stats;   /* counters of the ws layers released so far */
    apr_bucket_brigade *bb_in;  /* read, not yet fed (a paused ws) */
    chat_buf_t out;             /* frames being queued (malloc: see ws_send_cb) */
    apr_bucket_brigade *bb_out; /* frames not yet passed to the filters */
    apr_bucket_brigade *bb_tmp; /* a slice being passed, a ping */
    int nb_out;                 /* writes never block (idle under the MPM) */
    int input_paused;           /* a reply waits for the client to read */
    int defer_flush;            /* frames are batched, flushed once per step */
    int peer_gone;              /* EOF / reset from the client */
    int detached;               /* the client was let go, answers go on */
    int write_failed;
    int going_away; /* we sent 1001 because httpd is stopping */
    const char *close_why;
    apr_uint64_t close_sent_at;
    int wakefd; /* eventfd the watcher writes (blocking driver) */

    /* ---- chat ------------------------------------------------------------------ */
    chatbot_engine_t *eng; /* exists while turns run (engine per turn) */
    chat_buf_t frame;      /* JSON being built */
    chat_buf_t scratch;
    chat_cmsg_t cm;
    chatbot_bot_t *cur_bot;
    char cur_conv[CHAT_CONV_ID_LEN + 1];
    chatbot_follow_t follow[CHATBOT_WS_MAX_FOLLOW];
    int answers_counted; /* turns counted in this address's cap */
    /* a turn that waits for a worker (ChatbotMaxWorkers), without a thread */
    chat_buf_t held; /* the client's frame, replayed when one is free */
    char held_conv[CHAT_CONV_ID_LEN + 1];
    apr_uint64_t held_since;
    const uint8_t *cur_raw; /* the frame being handled, to hold it back */
    size_t cur_raw_len;
    int replaying;         /* it is a held one, replayed */
    int held_again;        /* the replay has to wait again */
    apr_uint64_t last_msg; /* last client message or end of a turn */
    char note_msgs[24];    /* the access log's chatbot-messages note */
    char note_close[24];   /* and chatbot-close */
    apr_uint64_t msgs_in;
    int legacy;            /* sent a port-8000 "command" frame: error
                            * frames carry "success":false,"error" */
    apr_uint64_t user_seq; /* the identity's session-list version pushed */
    int watching;          /* chat_store_watch of the owner on */

    /* ---- timers ------------------------------------------------------------------ */
    apr_uint64_t last_rx, last_ping, parked_at;

    /* ---- the child's registry (mod_chatbot_ws_watch.c), under its mutex ---- */
    chatbot_wsc_t *reg_prev, *reg_next;
    chatbot_wsc_t *wait_prev, *wait_next; /* worker waiters, oldest first */
    int waiting;                          /* in the waiters' queue */
    int borrowed; /* the watcher is writing a ping to it, or leaning it */
    chatbot_ws_kick_t kick;
    int slot;               /* a worker of the budget is held (0/1) */
    int life_slot;          /* held for the whole life (blocking driver) */
    apr_uint64_t kicked_at; /* pinged to come back (news, a free worker) */
    int news;               /* its user's sessions changed while parked */
    int leaned;             /* its spare memory was given back in this park */
    apr_uint64_t watched_seq;
};

/* ---- mod_chatbot_ws_conn.c -------------------------------------------------- */

void chatbot_ws_transit(chatbot_wsc_t *w, chatbot_ws_state_t to, const char *why);
const char *chatbot_ws_state_name(chatbot_ws_state_t st);
/* One step of the connection: everything that can be done without
 * waiting. The driver then waits as the result says. */
chatbot_ws_next_t chatbot_ws_step(chatbot_wsc_t *w);
/* Drives a connection on this thread until it is idle (WANT_READ /
 * WANT_WRITE, only if it may park) or done. */
chatbot_ws_next_t chatbot_ws_drive(chatbot_wsc_t *w, int may_park);
/* Starts a close the server decides (a close frame with code, if the
 * connection is open; why goes to the log). */
void chatbot_ws_close_with(chatbot_wsc_t *w, uint16_t code, const char *reason,
                           const char *why);
/* Ends the connection's life: access-log notes, the close line, and the
 * upgrade request's end (which frees w). */
void chatbot_ws_finish(chatbot_wsc_t *w);

/* ---- mod_chatbot_ws_io.c ---------------------------------------------------- */

/* (Re)creates the ws message layer of a connection. APR_SUCCESS or ENOMEM. */
apr_status_t chatbot_ws_layer(chatbot_wsc_t *w);
/* Releases the message layer of a connection about to park if nothing is
 * half received (a wake builds a new one). */
void chatbot_ws_layer_release(chatbot_wsc_t *w);
/* Queues the JSON in w->frame as a text frame (flushed per step). */
void chatbot_ws_send_json(chatbot_wsc_t *w);
/* Pushes queued frames to the client: blocking with a FLUSH, or (w->nb_out)
 * without ever waiting. Returns 1 if output is still pending. */
int chatbot_ws_flush(chatbot_wsc_t *w);
/* 1 if no frame waits to be passed to the filters. */
int chatbot_ws_out_empty(chatbot_wsc_t *w);
/* Reads what the client sent without blocking and feeds it to the message
 * layer (unless the input is paused until the replies are read). */
void chatbot_ws_read(chatbot_wsc_t *w);
/* Writes a ping on a parked connection (the watcher, on its own thread). */
void chatbot_ws_ping_parked(chatbot_wsc_t *w);

/* ---- mod_chatbot_ws_mpm.c ------------------------------------------------ */

/* Installs the filters that hand the connection to the MPM with its request
 * still open, and marks the connection as a WebSocket for the hooks. */
void chatbot_ws_hold(chatbot_wsc_t *w);
void chatbot_ws_lean(conn_rec *c);
void chatbot_ws_mpm_register(apr_pool_t *p);

/* ---- mod_chatbot_ws_messages.c --------------------------------------------- */

/* Starts a frame {"type":type in w->frame: the caller adds members, then
 * frame_end closes it and queues it. */
void chatbot_ws_frame_begin(chatbot_wsc_t *w, chat_jw_t *jw, const char *type);
void chatbot_ws_frame_end(chatbot_wsc_t *w, chat_jw_t *jw);
void chatbot_ws_send_error(chatbot_wsc_t *w, const char *code, const char *msg,
                           const char *conv, const char *id, apr_int64_t retry_ms);
void chatbot_ws_send_hello(chatbot_wsc_t *w);
void chatbot_ws_send_sessions(chatbot_wsc_t *w, const char *bot, int archived,
                              const char *id);
/* A complete client text message. */
void chatbot_ws_handle_message(chatbot_wsc_t *w, const uint8_t *data, size_t len);

/* ---- mod_chatbot_ws_settings.c --------------------------------------------- */

/* The "settings" message. */
void chatbot_ws_settings(chatbot_wsc_t *w);
/* "settings" of a conversation in brief, into an open object (history). */
void chatbot_ws_settings_brief(chatbot_wsc_t *w, chat_jw_t *jw, const char *conv);

/* ---- mod_chatbot_ws_chat.c ------------------------------------------------- */

/* A turn: "message", "regenerate" or "edit" in w->cm. */
void chatbot_ws_turn_start(chatbot_wsc_t *w, chatbot_turn_mode_t mode);
/* "stop": the conversation's turn here, a held one, or asks another
 * connection's to stop. */
void chatbot_ws_turn_stop(chatbot_wsc_t *w);
/* A command (`run`, or a message starting with '!'): args == NULL means
 * command is a chat line of nargs bytes. */
void chatbot_ws_run_command(chatbot_wsc_t *w, const char *command,
                            const char *const *args, apr_size_t nargs);
/* Picks bot + conversation for a message (creating the conversation if
 * create is set): NULL, or a CHAT_ERR_* code. */
const char *chatbot_ws_resolve(chatbot_wsc_t *w, const char *bot_id, const char *conv_id,
                               int create, chatbot_bot_t **bot, chat_conv_info_t *ci);
/* The identity's rate limit: NULL, or a CHAT_ERR_* code with *retry (ms);
 * rate_msg writes the error's text into buf. */
const char *chatbot_ws_rate_check(chatbot_wsc_t *w, apr_int64_t *retry);
const char *chatbot_ws_rate_msg(chatbot_wsc_t *w, apr_int64_t retry_ms, char *buf,
                                apr_size_t len);
/* 1 if the frame being handled may hold a worker now; otherwise it is held
 * back (or refused) and 0 returned. */
int chatbot_ws_need_worker(chatbot_wsc_t *w, const char *conv);
/* The same without holding back: 1 (a worker held), or 0 (nothing said). */
int chatbot_ws_worker_free(chatbot_wsc_t *w);
/* Drops the turn held back for conv, if any (1). */
int chatbot_ws_drop_held(chatbot_wsc_t *w, const char *conv);
/* Replays a held turn once a worker is free (or expires it). */
void chatbot_ws_held_run(chatbot_wsc_t *w);
/* Drops the engine once no turn runs (an idle connection holds no curl
 * handle) and keeps the per-address answer count in step. */
void chatbot_ws_engine_settle(chatbot_wsc_t *w);
/* Stops every turn of the connection. */
void chatbot_ws_stop_all(chatbot_wsc_t *w, const char *reason);
int chatbot_ws_turns(chatbot_wsc_t *w);

/* ---- mod_chatbot_ws_follow.c ------------------------------------------------ */

void chatbot_ws_resume(chatbot_wsc_t *w);
void chatbot_ws_follow_run(chatbot_wsc_t *w);
void chatbot_ws_follow_drop(chatbot_wsc_t *w, const char *conv);
/* Ends following f (and the store's watch of its conversation). */
void chatbot_ws_follow_end(chatbot_follow_t *f);
int chatbot_ws_following(chatbot_wsc_t *w);

/* ---- mod_chatbot_ws_handshake.c --------------------------------------------- */

/* Per client address counts in this child: open connections and answers
 * being generated. Returns the count after adding delta. */
apr_uint32_t chatbot_ws_ip_conns(conn_rec *c, int delta);
apr_uint32_t chatbot_ws_ip_answers(conn_rec *c, int delta);
int chatbot_ws_max_answers_per_ip(chatbot_srv_conf *sc);

/* ---- mod_chatbot_ws_counts.c ------------------------------------------------- */

/* Whether this httpd can park connections (event MPM with WAITIO): as
 * found at child init, and asked of the MPM now. */
int chatbot_ws_mpm_can_park(void);
int chatbot_ws_mpm_parks(void);
/* prefork: one thread per child; ChatbotMaxWorkers then counts children
 * across the server. */
int chatbot_ws_mpm_one_thread(void);
int chatbot_ws_max_workers(chatbot_srv_conf *sc);
/* One entry per scoreboard slot, written by the child in that slot; a
 * reader adds up the entries whose pid is the slot's live process, so a
 * child that died leaves nothing behind. */
typedef struct {
    volatile apr_uint32_t pid;
    volatile apr_uint32_t parked, active, waiting, blocking;
} chatbot_ws_count_t;

/* This child's entry (NULL before the scoreboard knows it). */
chatbot_ws_count_t *chatbot_ws_my_count(void);
/* A connection entered (delta 1) or left (-1) state st. */
void chatbot_ws_count_state(chatbot_ws_state_t st, int delta);
/* Connections holding a thread for their whole life, summed over the live
 * children. */
apr_uint32_t chatbot_ws_blocking_children(void);
void chatbot_ws_counts_child_init(int max_workers);

/* ---- mod_chatbot_ws_watch.c -------------------------------------------------- */

/* Registry of the child's open connections. */
void chatbot_ws_reg_add(chatbot_wsc_t *w);
/* State changes that the registry and the counters follow. */
void chatbot_ws_reg_state(chatbot_wsc_t *w, chatbot_ws_state_t from,
                          chatbot_ws_state_t to);
/* Waits until the watcher is done with a parked connection and marks it
 * as run by this thread again. */
void chatbot_ws_reg_unpark(chatbot_wsc_t *w);
/* The worker budget (ChatbotMaxWorkers). take: 1 if a worker may be held
 * (or was held already); 0 if none is free. One budget for every thread a
 * WebSocket holds: an HTTP/2 one holds one of mod_http2's workers, and its
 * session keeps an httpd worker too while the stream is open. */
int chatbot_ws_slot_take(chatbot_wsc_t *w);
void chatbot_ws_slot_release(chatbot_wsc_t *w);
/* Queue of connections whose turn waits for a worker: returns the position
 * (1 = next). */
int chatbot_ws_wait_add(chatbot_wsc_t *w);
void chatbot_ws_wait_remove(chatbot_wsc_t *w);
/* 1 if a turn may take a worker now without jumping the queue. */
int chatbot_ws_wait_may_take(chatbot_wsc_t *w);
/* An answer ended: a turn held back by its address's cap may go now. */
void chatbot_ws_poke(void);
void chatbot_ws_reg_engine(chatbot_wsc_t *w, chatbot_engine_t *e);
void chatbot_ws_handshake_child_init(apr_pool_t *p);

#endif /* MOD_CHATBOT_WS_H */
