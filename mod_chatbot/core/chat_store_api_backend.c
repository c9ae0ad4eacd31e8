/* chat_store_api_backend.c - the store's public functions for backends
 * (slots, queue, breaker, health) and metrics, which dispatch to the
 * provider of the handle as those of chat_store_api.c do.
 */
#include "chat_store_int.h"

int chat_store_backend_register(chat_store_t *st, const char *name, uint32_t max_active)
{
    if (!st) {
        return CHAT_EINVAL;
    }
    return ((chat_store_head_t *)st)->provider->backend_register(st, name, max_active);
}

chat_status_t chat_store_backend_acquire(chat_store_t *st, int idx, uint64_t ticket,
                                         uint64_t now_ms, int32_t *position)
{
    if (!st) {
        return CHAT_EINVAL;
    }
    return ((chat_store_head_t *)st)
        ->provider->backend_acquire(st, idx, ticket, now_ms, position);
}

void chat_store_backend_cancel(chat_store_t *st, int idx, uint64_t ticket)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->backend_cancel(st, idx, ticket);
}

void chat_store_backend_release(chat_store_t *st, int idx, uint64_t ticket)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->backend_release(st, idx, ticket);
}

chat_status_t chat_store_turn_finish_release(chat_store_t *st, const chat_owner_t *owner,
                                             const char *id, uint64_t token,
                                             chat_turn_text_t *ans, uint32_t answer_set,
                                             const char *err, size_t err_len,
                                             uint64_t now_ms,
                                             const chat_turn_release_t *rel)
{
    const chat_store_provider_t *pv;

    if (!st || !rel) {
        return chat_store_turn_finish_text(st, owner, id, token, ans, answer_set, err,
                                           err_len, now_ms);
    }
    pv = ((chat_store_head_t *)st)->provider;
    if (!pv->turn_finish_release || (ans && ans->len && !ans->text)) {
        /* one by one (a text without its bytes: chat_store_turn_finish_text
         * refuses it, CHAT_EINVAL) */
        pv->backend_release(st, rel->backend, rel->ticket);
        return chat_store_turn_finish_text(st, owner, id, token, ans, answer_set, err,
                                           err_len, now_ms);
    }
    if (ans && !ans->len) {
        ans->rc = CHAT_OK; /* nothing to store: the finish alone */
        ans = NULL;
    }
    return pv->turn_finish_release(st, owner, id, token, ans, answer_set, err, err_len,
                                   now_ms, rel);
}

void chat_store_backend_beat(chat_store_t *st, int idx, uint64_t ticket, uint64_t now_ms)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->backend_beat(st, idx, ticket, now_ms);
}

int chat_store_breaker_allow(chat_store_t *st, int idx, uint64_t now_ms,
                             uint64_t cooldown_ms)
{
    if (!st) {
        return 1;
    }
    return ((chat_store_head_t *)st)
        ->provider->breaker_allow(st, idx, now_ms, cooldown_ms);
}

void chat_store_breaker_result(chat_store_t *st, int idx, int ok, uint64_t now_ms,
                               uint32_t threshold, uint64_t cooldown_ms)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)
        ->provider->breaker_result(st, idx, ok, now_ms, threshold, cooldown_ms);
}

void chat_store_backend_health(chat_store_t *st, int idx, int healthy,
                               const char *version, const char *detail, uint64_t now_ms)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)
        ->provider->backend_health(st, idx, healthy, version, detail, now_ms);
}

chat_status_t chat_store_backend_get(chat_store_t *st, int idx, chat_backend_info_t *out)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)->provider->backend_get(st, idx, out);
}

int chat_store_backend_count(chat_store_t *st)
{
    if (!st) {
        return 0;
    }
    return ((chat_store_head_t *)st)->provider->backend_count(st);
}

int chat_store_series(chat_store_t *st, const char *bot, const char *backend)
{
    if (!st) {
        return CHAT_EINVAL;
    }
    return ((chat_store_head_t *)st)->provider->series(st, bot, backend);
}

void chat_metrics_add(chat_store_t *st, int series, chat_counter_t c, uint64_t v)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->metrics_add(st, series, c, v);
}

void chat_metrics_observe(chat_store_t *st, int series, chat_hist_t h, double v)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->metrics_observe(st, series, h, v);
}

void chat_metrics_gauge_add(chat_store_t *st, chat_gauge_t g, int64_t delta)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->metrics_gauge_add(st, g, delta);
}

void chat_metrics_error(chat_store_t *st, const char *code)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->metrics_error(st, code);
}

void chat_metrics_snapshot(chat_store_t *st, chat_metrics_snapshot_t *out)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->metrics_snapshot(st, out);
}

int chat_metrics_series_count(chat_store_t *st)
{
    if (!st) {
        return 0;
    }
    return ((chat_store_head_t *)st)->provider->metrics_series_count(st);
}

chat_status_t chat_metrics_series_get(chat_store_t *st, int series,
                                      chat_series_snapshot_t *out)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)->provider->metrics_series_get(st, series, out);
}
