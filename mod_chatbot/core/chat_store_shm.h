/* chat_store_shm.h - the shared-memory provider's operations, one per entry
 * of chat_store_provider_t (chat/store.h has their contracts;
 * chat_store_api.c dispatches to them, chat_store_*.c define them).
 */
#ifndef CHAT_STORE_SHM_H
#define CHAT_STORE_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "chat_store_handle.h"

/* ---- the shared-memory provider's operations (chat/store.h has their
 * contracts; chat_store_api.c dispatches to them) ---------------------------- */
extern const chat_store_provider_t cs_shm_provider;
void cs_shm_detach(chat_store_t *st);
chat_status_t cs_shm_proc_attach(chat_store_t *st, int pid, uint64_t now_ms);
void cs_shm_proc_detach(chat_store_t *st);
int cs_shm_maintain(chat_store_t *st, uint64_t now_ms);
chat_status_t cs_shm_conv_create(chat_store_t *st, const chat_owner_t *owner,
                                 const char *bot, const char *title, uint64_t tag,
                                 uint64_t now_ms, chat_conv_info_t *out);
chat_status_t cs_shm_conv_find_or_create(chat_store_t *st, const chat_owner_t *owner,
                                         const char *bot, const char *title,
                                         uint32_t flags, uint64_t tag, uint64_t now_ms,
                                         chat_conv_info_t *out, int *created);
int64_t cs_shm_create_retry_ms(chat_store_t *st, const chat_owner_t *owner,
                               uint64_t now_ms);
chat_status_t cs_shm_conv_get(chat_store_t *st, const chat_owner_t *owner, const char *id,
                              chat_conv_info_t *out);
int cs_shm_conv_list(chat_store_t *st, const chat_owner_t *owner, const char *bot,
                     int archived, void (*cb)(void *baton, const chat_conv_info_t *c),
                     void *baton);
chat_status_t cs_shm_conv_latest(chat_store_t *st, const chat_owner_t *owner,
                                 const char *bot, chat_conv_info_t *out);
chat_status_t cs_shm_conv_rename(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id, const char *title, uint64_t now_ms);
chat_status_t cs_shm_conv_flags(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t set, uint32_t clear,
                                uint64_t now_ms);
chat_status_t cs_shm_conv_delete(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id);
chat_status_t cs_shm_gen_begin(chat_store_t *st, const chat_owner_t *owner,
                               const char *id, uint64_t token, uint32_t state,
                               uint64_t now_ms);
chat_status_t cs_shm_gen_state(chat_store_t *st, const char *id, uint64_t token,
                               uint32_t state, int32_t queue_position);
chat_status_t cs_shm_gen_end(chat_store_t *st, const char *id, uint64_t token,
                             uint64_t now_ms);
chat_status_t cs_shm_gen_request_stop(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id);
int cs_shm_gen_stop_requested(chat_store_t *st, const char *id, uint64_t token);
uint64_t cs_shm_conv_seq(chat_store_t *st, const char *id);
chat_status_t cs_shm_msg_append(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, chat_role_t role, uint32_t flags,
                                const char *text, size_t len, uint64_t now_ms,
                                uint32_t *index_out);
chat_status_t cs_shm_msg_extend(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, const char *text, size_t len,
                                uint64_t now_ms);
chat_status_t cs_shm_msg_flags(chat_store_t *st, const chat_owner_t *owner,
                               const char *id, uint32_t set, uint32_t clear,
                               uint64_t now_ms);
chat_status_t cs_shm_msg_truncate(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id, uint32_t keep, uint64_t now_ms);
int cs_shm_msg_read(chat_store_t *st, const chat_owner_t *owner, const char *id,
                    uint32_t start, uint32_t count, chat_buf_t *text, chat_msg_cb *cb,
                    void *baton);
int cs_shm_msg_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                    uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                    chat_msg_cb *cb, void *baton);
chat_status_t cs_shm_msg_branch(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t parent, chat_role_t role,
                                uint32_t flags, const char *text, size_t len,
                                uint64_t now_ms, uint32_t *index_out);
chat_status_t cs_shm_msg_select(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t index, uint64_t now_ms);
chat_status_t cs_shm_msg_get(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint32_t index, size_t offset, chat_buf_t *text,
                             chat_msg_info_t *info);
chat_status_t cs_shm_rate_take(chat_store_t *st, const chat_owner_t *owner,
                               const chat_rate_t *rate, uint64_t now_ms,
                               int64_t *retry_after_ms);
void cs_shm_user_bump(chat_store_t *st, const chat_owner_t *owner);
uint64_t cs_shm_user_seq(chat_store_t *st, const chat_owner_t *owner);
uint64_t cs_shm_events(chat_store_t *st);
int cs_shm_backend_register(chat_store_t *st, const char *name, uint32_t max_active);
chat_status_t cs_shm_backend_acquire(chat_store_t *st, int idx, uint64_t ticket,
                                     uint64_t now_ms, int32_t *position);
void cs_shm_backend_cancel(chat_store_t *st, int idx, uint64_t ticket);
void cs_shm_backend_release(chat_store_t *st, int idx, uint64_t ticket);
void cs_shm_backend_beat(chat_store_t *st, int idx, uint64_t ticket, uint64_t now_ms);
int cs_shm_breaker_allow(chat_store_t *st, int idx, uint64_t now_ms,
                         uint64_t cooldown_ms);
void cs_shm_breaker_result(chat_store_t *st, int idx, int ok, uint64_t now_ms,
                           uint32_t threshold, uint64_t cooldown_ms);
void cs_shm_backend_health(chat_store_t *st, int idx, int healthy, const char *version,
                           const char *detail, uint64_t now_ms);
chat_status_t cs_shm_backend_get(chat_store_t *st, int idx, chat_backend_info_t *out);
int cs_shm_backend_count(chat_store_t *st);
int cs_shm_series(chat_store_t *st, const char *bot, const char *backend);
void cs_shm_metrics_add(chat_store_t *st, int series, chat_counter_t c, uint64_t v);
void cs_shm_metrics_observe(chat_store_t *st, int series, chat_hist_t h, double v);
void cs_shm_metrics_gauge_add(chat_store_t *st, chat_gauge_t g, int64_t delta);
void cs_shm_metrics_error(chat_store_t *st, const char *code);
void cs_shm_metrics_snapshot(chat_store_t *st, chat_metrics_snapshot_t *out);
int cs_shm_metrics_series_count(chat_store_t *st);
chat_status_t cs_shm_metrics_series_get(chat_store_t *st, int series,
                                        chat_series_snapshot_t *out);

#endif /* CHAT_STORE_SHM_H */
