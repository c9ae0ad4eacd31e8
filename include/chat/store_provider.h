/* chat/store_provider.h - the operations a store provider implements
 * (struct chat_store_provider: shared memory in mod_chatbot/core, redis
 * in mod_chatbot/mod_chatbot_store_redis_*.c); included by chat/store.h,
 * whose functions document each contract. An optional operation left NULL
 * gets the generic fallback in core/chat_store_api.c.
 */
#ifndef CHAT_STORE_PROVIDER_H
#define CHAT_STORE_PROVIDER_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the provider's operations --------------------------------------------- */

struct chat_store_provider {
    const char *name;
    void (*detach)(chat_store_t *st);
    void (*set_policy)(chat_store_t *st, const chat_store_policy_t *p);
    chat_status_t (*proc_attach)(chat_store_t *st, int pid, uint64_t now_ms);
    void (*proc_detach)(chat_store_t *st);
    int (*maintain)(chat_store_t *st, uint64_t now_ms);
    /* conversations */
    chat_status_t (*conv_create)(chat_store_t *st, const chat_owner_t *owner,
                                 const char *bot, const char *title, uint64_t tag,
                                 uint64_t now_ms, chat_conv_info_t *out);
    int64_t (*create_retry_ms)(chat_store_t *st, const chat_owner_t *owner,
                               uint64_t now_ms);
    chat_status_t (*conv_get)(chat_store_t *st, const chat_owner_t *owner, const char *id,
                              chat_conv_info_t *out);
    int (*conv_list)(chat_store_t *st, const chat_owner_t *owner, const char *bot,
                     int archived, void (*cb)(void *baton, const chat_conv_info_t *c),
                     void *baton);
    chat_status_t (*conv_latest)(chat_store_t *st, const chat_owner_t *owner,
                                 const char *bot, chat_conv_info_t *out);
    chat_status_t (*conv_rename)(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id, const char *title, uint64_t now_ms);
    chat_status_t (*conv_flags)(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t set, uint32_t clear,
                                uint64_t now_ms);
    chat_status_t (*conv_delete)(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id);
    chat_status_t (*gen_begin)(chat_store_t *st, const chat_owner_t *owner,
                               const char *id, uint64_t token, uint32_t state,
                               uint64_t now_ms);
    chat_status_t (*gen_state)(chat_store_t *st, const char *id, uint64_t token,
                               uint32_t state, int32_t queue_position);
    chat_status_t (*gen_end)(chat_store_t *st, const char *id, uint64_t token,
                             uint64_t now_ms);
    chat_status_t (*gen_request_stop)(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id);
    int (*gen_stop_requested)(chat_store_t *st, const char *id, uint64_t token);
    uint64_t (*conv_seq)(chat_store_t *st, const char *id);
    /* messages */
    chat_status_t (*msg_append)(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, chat_role_t role, uint32_t flags,
                                const char *text, size_t len, uint64_t now_ms,
                                uint32_t *index_out);
    chat_status_t (*msg_extend)(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, const char *text, size_t len,
                                uint64_t now_ms);
    chat_status_t (*msg_flags)(chat_store_t *st, const chat_owner_t *owner,
                               const char *id, uint32_t set, uint32_t clear,
                               uint64_t now_ms);
    chat_status_t (*msg_truncate)(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id, uint32_t keep, uint64_t now_ms);
    int (*msg_read)(chat_store_t *st, const chat_owner_t *owner, const char *id,
                    uint32_t start, uint32_t count, chat_buf_t *text, chat_msg_cb *cb,
                    void *baton);
    int (*msg_tail)(chat_store_t *st, const chat_owner_t *owner, const char *id,
                    uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                    chat_msg_cb *cb, void *baton);
    chat_status_t (*msg_branch)(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t parent, chat_role_t role,
                                uint32_t flags, const char *text, size_t len,
                                uint64_t now_ms, uint32_t *index_out);
    chat_status_t (*msg_select)(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t index, uint64_t now_ms);
    chat_status_t (*msg_get)(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint32_t index, size_t offset, chat_buf_t *text,
                             chat_msg_info_t *info);
    /* users */
    chat_status_t (*rate_take)(chat_store_t *st, const chat_owner_t *owner,
                               const chat_rate_t *rate, uint64_t now_ms,
                               int64_t *retry_after_ms);
    void (*user_bump)(chat_store_t *st, const chat_owner_t *owner);
    uint64_t (*user_seq)(chat_store_t *st, const chat_owner_t *owner);
    uint64_t (*events)(chat_store_t *st);
    /* backends */
    int (*backend_register)(chat_store_t *st, const char *name, uint32_t max_active);
    chat_status_t (*backend_acquire)(chat_store_t *st, int idx, uint64_t ticket,
                                     uint64_t now_ms, int32_t *position);
    void (*backend_cancel)(chat_store_t *st, int idx, uint64_t ticket);
    void (*backend_release)(chat_store_t *st, int idx, uint64_t ticket);
    void (*backend_beat)(chat_store_t *st, int idx, uint64_t ticket, uint64_t now_ms);
    int (*breaker_allow)(chat_store_t *st, int idx, uint64_t now_ms,
                         uint64_t cooldown_ms);
    void (*breaker_result)(chat_store_t *st, int idx, int ok, uint64_t now_ms,
                           uint32_t threshold, uint64_t cooldown_ms);
    void (*backend_health)(chat_store_t *st, int idx, int healthy, const char *version,
                           const char *detail, uint64_t now_ms);
    chat_status_t (*backend_get)(chat_store_t *st, int idx, chat_backend_info_t *out);
    int (*backend_count)(chat_store_t *st);
    /* metrics */
    int (*series)(chat_store_t *st, const char *bot, const char *backend);
    void (*metrics_add)(chat_store_t *st, int series, chat_counter_t c, uint64_t v);
    void (*metrics_observe)(chat_store_t *st, int series, chat_hist_t h, double v);
    void (*metrics_gauge_add)(chat_store_t *st, chat_gauge_t g, int64_t delta);
    void (*metrics_error)(chat_store_t *st, const char *code);
    void (*metrics_snapshot)(chat_store_t *st, chat_metrics_snapshot_t *out);
    int (*metrics_series_count)(chat_store_t *st);
    chat_status_t (*metrics_series_get)(chat_store_t *st, int series,
                                        chat_series_snapshot_t *out);
    /* optional (NULL: the calls one by one): chat_store_turn_start / _finish */
    chat_status_t (*turn_start)(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint64_t token, uint32_t state,
                                const char *text, size_t len, uint32_t flags,
                                uint64_t now_ms, uint32_t *index_out);
    chat_status_t (*turn_finish)(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id, uint64_t token, uint32_t answer_set,
                                 const char *err, size_t err_len, uint64_t now_ms);
    /* optional (NULL: msg_append or msg_extend, then turn_finish):
     * chat_store_turn_finish_text; ans is never NULL here */
    chat_status_t (*turn_finish_text)(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id, uint64_t token,
                                      chat_turn_text_t *ans, uint32_t answer_set,
                                      const char *err, size_t err_len, uint64_t now_ms);
    /* optional (NULL: turn_start only, acq->tried 0):
     * chat_store_turn_start_acquire */
    chat_status_t (*turn_start_acquire)(chat_store_t *st, const chat_owner_t *owner,
                                        const char *id, uint64_t token, uint32_t state,
                                        const char *text, size_t len, uint32_t flags,
                                        uint64_t now_ms, uint32_t *index_out,
                                        chat_turn_acquire_t *acq);
    /* optional (NULL: conv_get, the bot compared, then turn_start_acquire):
     * chat_store_turn_start_bot */
    chat_status_t (*turn_start_bot)(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, const char *bot, uint64_t token,
                                    uint32_t state, const char *text, size_t len,
                                    uint32_t flags, uint64_t now_ms, uint32_t *index_out,
                                    chat_turn_acquire_t *acq);
    /* optional (NULL: a look-up then a creation): chat_store_conv_find_or_create */
    chat_status_t (*conv_find_or_create)(chat_store_t *st, const chat_owner_t *owner,
                                         const char *bot, const char *title,
                                         uint32_t flags, uint64_t tag, uint64_t now_ms,
                                         chat_conv_info_t *out, int *created);
    /* optional (NULL: CHAT_EINTERNAL): chat_store_conv_meta_get/set */
    chat_status_t (*conv_meta_get)(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, chat_buf_t *out);
    chat_status_t (*conv_meta_set)(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, const char *data, size_t len,
                                   uint64_t now_ms);
    /* optional (NULL: conv_meta_get then msg_tail): chat_store_msg_tail_meta */
    int (*msg_tail_meta)(chat_store_t *st, const chat_owner_t *owner, const char *id,
                         uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                         chat_msg_cb *cb, void *baton, chat_buf_t *meta);
    /* optional (NULL: nothing to do): chat_store_watch */
    void (*watch)(chat_store_t *st, const chat_owner_t *owner, const char *id, int on);
    /* optional (NULL: backend_release, then chat_store_turn_finish_text):
     * chat_store_turn_finish_release; rel is never NULL here, ans NULL
     * when there is no text to store */
    chat_status_t (*turn_finish_release)(chat_store_t *st, const chat_owner_t *owner,
                                         const char *id, uint64_t token,
                                         chat_turn_text_t *ans, uint32_t answer_set,
                                         const char *err, size_t err_len, uint64_t now_ms,
                                         const chat_turn_release_t *rel);
    /* optional (NULL: rate_take twice): chat_store_rate_take2 */
    chat_status_t (*rate_take2)(chat_store_t *st, const chat_owner_t *owner,
                                const chat_rate_t *rate, const chat_owner_t *owner2,
                                const chat_rate_t *rate2, uint64_t now_ms,
                                int64_t *retry_after_ms);
};

#ifdef __cplusplus
}
#endif
#endif /* CHAT_STORE_PROVIDER_H */
