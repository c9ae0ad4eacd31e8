/* chat_store_ops.h - the operations the shared store's files share with
 * each other (not with the glue): the region's check and clock, finding and
 * locking conversations, owners and users, generations, settings blobs,
 * quotas and eviction, the text arena, versions, backends and metrics.
 * Each section names the file that defines it.
 */
#ifndef CHAT_STORE_OPS_H
#define CHAT_STORE_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "chat_store_lock.h"

/* ---- chat_store.c ----------------------------------------------------------- */
uint64_t cs_next_seq(chat_store_t *st);
void cs_note_now(chat_store_t *st, uint64_t now_ms);
uint64_t cs_now(chat_store_t *st); /* the largest now_ms seen */
/* Full consistency check of the region (what attach runs; the caller holds
 * every lock or nobody else uses the region). *leaked (may be NULL) gets
 * the number of blocks and slots reachable from nothing: a holder that died
 * between handing a resource over and recording it leaves those, and
 * cs_sweep gives them back. CHAT_OK or CHAT_EPARSE; CHAT_ENOMEM if the
 * scratch bitmaps cannot be allocated. */
chat_status_t cs_validate_ex(const chat_store_t *st, uint64_t *leaked);
chat_status_t cs_validate(const chat_store_t *st);
/* Gives leaked blocks and slots back and recounts the pool's class usage
 * (caller holds every lock; the store passed cs_validate_ex). */
void cs_sweep(chat_store_t *st);

/* ---- chat_store_conv.c ------------------------------------------------------- */
void cs_copy_trunc(char *dst, size_t cap, size_t maxlen, const char *src);
/* Finds a conversation by id for owner (NULL: any owner; the caller must
 * then hold the shard of the conversation's owner). NULL if not found. */
cs_conv_t *cs_conv_find(chat_store_t *st, const chat_owner_t *owner, const char *id);
/* Lock-free variant: only atomic reads of the slot. */
cs_conv_t *cs_conv_peek(chat_store_t *st, const char *id);
/* Locks the shard of owner (a transaction on its lock). */
chat_status_t cs_lock_owner(chat_store_t *st, const uint8_t *owner, cs_tx_t *tx);
void cs_tx_unlock(cs_tx_t *tx);
/* Takes the shard lock of owner and finds its conversation id (the lock is
 * held on CHAT_OK only). CHAT_OK, CHAT_ENOTFOUND, CHAT_EINTERNAL. */
chat_status_t cs_conv_lock_find(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, cs_tx_t *tx, cs_conv_t **pc);
/* Finds a conversation by id alone and locks the shard of its owner. */
cs_conv_t *cs_conv_find_locked(chat_store_t *st, const char *id, cs_tx_t *tx);
/* The slot info of c from its state (logged in tx). */
void cs_slot_update(cs_tx_t *tx, cs_conv_t *c);
void cs_conv_format_id(const chat_store_t *st, const cs_conv_t *c, char *out);
void cs_conv_info(const chat_store_t *st, const cs_conv_t *c, chat_conv_info_t *out);
/* Marks the conversation changed (new seq) and most recently used. */
void cs_conv_touch(cs_tx_t *tx, cs_conv_t *c, uint64_t now_ms);
void cs_conv_changed(chat_store_t *st, cs_conv_t *c);
cs_owner_t *cs_owner_find(chat_store_t *st, const uint8_t *key);
/* Finds or creates the owner record of key (caller holds its shard). NULL
 * if its shard's window of records is full. */
cs_owner_t *cs_owner_get(cs_tx_t *tx, const uint8_t *key, int auth);
/* Takes c off its owner's list (caller holds the shard). */
void cs_owner_list_unlink(cs_tx_t *tx, cs_owner_t *o, cs_conv_t *c);
/* Puts the conversation into the slot info and the owner's list (migrate,
 * sweep: no logging). */
void cs_conv_link_raw(chat_store_t *st, cs_conv_t *c, int auth);

/* ---- chat_store_user.c: the user table ---------------------------------------- */
cs_user_t *cs_user_find(chat_store_t *st, const uint8_t *owner);
/* Finds or creates owner's entry (caller holds its shard); a full window
 * replaces its least recently seen entry (only if it was seen before
 * seen_ms, unless force). */
cs_user_t *cs_user_get(cs_tx_t *tx, const uint8_t *owner, uint64_t seen_ms, int force);

/* ---- chat_store_gen.c: generation ownership ----------------------------------- */
/* Ends a generation whose process died: last answer interrupted, idle. */
void cs_gen_abandon(cs_tx_t *tx, cs_conv_t *c);
/* Ends generations of processes that died (maintenance). Returns how many. */
int cs_conv_reap_dead(chat_store_t *st);

/* ---- chat_store_meta.c: the settings blob of a conversation ----------------- */
/* Blocks held by c's settings blob (CS_CAP_NEXT text bytes each). */
static inline uint32_t cs_meta_blocks(uint32_t meta_len)
{
    return (meta_len + CS_CAP_NEXT - 1) / CS_CAP_NEXT;
}
chat_status_t cs_shm_conv_meta_get(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, chat_buf_t *out);
chat_status_t cs_shm_conv_meta_set(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, const char *data, size_t len,
                                   uint64_t now_ms);
/* Detaches c's blob (logged in tx): returns its block count, its chain in
 * first..last (for cs_pool_give_blocks after the commit). */
uint32_t cs_meta_unlink(cs_tx_t *tx, cs_conv_t *c, uint32_t *first, uint32_t *last);
/* Copies sc's blob into dst's blocks from *cursor on (migrate: dst fresh). */
void cs_meta_copy_raw(chat_store_t *dst, cs_conv_t *dc, const chat_store_t *src,
                      const cs_conv_t *sc, uint32_t *cursor);

/* ---- chat_store_evict.c: quotas and making room ------------------------------ */
#define CS_RES_SLOTS 0
#define CS_RES_BLOCKS 1
/* Makes `need` of resource res available for the conversation c (may be
 * NULL when creating) of owner o (both in the shard of tx), within o's
 * quota and class share, evicting per the fairness rules. The caller holds
 * tx's shard lock only. CHAT_OK, CHAT_EQUOTA (o at its quota with nothing
 * of its own to give up), CHAT_EFULL. */
chat_status_t cs_make_room(cs_tx_t *tx, cs_owner_t *o, int auth, cs_conv_t *c, int res,
                           uint64_t need);
/* Evicts conversation c (idle, in tx's shard): unlinks it, commits, gives
 * its slot and blocks back to the pool. */
void cs_conv_evict(cs_tx_t *tx, cs_conv_t *c, const char *why);
/* Deletes c (as evict, without the eviction count and log line). */
void cs_conv_release(cs_tx_t *tx, cs_conv_t *c);
/* Per-identity limits of the class. */
const chat_quota_t *cs_quota(const chat_store_t *st, int auth);

/* ---- chat_store_msg.c -------------------------------------------------------- */
/* Takes n blocks from the pool as a chain first..last (last->next is
 * undefined): the pool commits at once. 0 if the pool has fewer. */
int cs_pool_take_blocks(chat_store_t *st, uint32_t n, int auth, uint32_t *first,
                        uint32_t *last);
/* Gives the chain first..last of n blocks back (the caller has committed the
 * unlink). */
void cs_pool_give_blocks(chat_store_t *st, uint32_t first, uint32_t last, uint32_t n,
                         int auth);
int cs_pool_take_slot(chat_store_t *st, int auth, uint32_t *slot);
void cs_pool_give_slot(chat_store_t *st, uint32_t slot, int auth);
/* Drops c's oldest message (committed, blocks given back). */
void cs_msg_drop_oldest(cs_tx_t *tx, cs_conv_t *c, cs_owner_t *o, int auth);
/* Unlinks every block of c (caller commits, then gives them back):
 * returns the chain and its length. */
uint32_t cs_msg_unlink_all(cs_tx_t *tx, cs_conv_t *c, uint32_t *first, uint32_t *last);
/* Migrate: copies message head of src into a new last message of dc,
 * taking dst's blocks in index order from *cursor (dst is fresh; its free
 * lists are rebuilt afterwards). */
void cs_msg_copy_raw(chat_store_t *dst, cs_conv_t *dc, const chat_store_t *src,
                     uint32_t head, uint32_t *cursor);
/* Rebuilds the free lists of slots and blocks from what conversations use
 * (format, migrate, load: nobody else uses the region). */
void cs_free_lists_rebuild(chat_store_t *st);

/* HEAD block of message index of c (walking from the nearer end). */
uint32_t cs_msg_at(const chat_store_t *st, const cs_conv_t *c, uint32_t index);

/* ---- chat_store_ver.c: versions and branches ------------------------------------ */
/* The index of the last message of c's active path (CHAT_MSG_NO_PARENT if
 * c is empty). */
uint32_t cs_ver_leaf(const chat_store_t *st, const cs_conv_t *c);
/* How many messages of c have this parent (CHAT_MSG_NO_PARENT: roots). */
uint32_t cs_ver_children(const chat_store_t *st, const cs_conv_t *c, uint32_t parent);
/* Among the children of parent, makes the one whose HEAD block is keep
 * the chosen one and every other an alternative (keep CS_NIL: all of
 * them alternatives). Undo-logged in tx. */
void cs_ver_choose(cs_tx_t *tx, cs_conv_t *c, uint32_t parent, uint32_t keep);
/* The context of msg_tail: the newest messages of the active path, newest
 * first, as HEAD blocks and indexes (arrays of c->nmsgs). Returns how many. */
int cs_ver_tail(const chat_store_t *st, const cs_conv_t *c, uint32_t max_msgs,
                size_t max_bytes, uint32_t *heads, uint32_t *idx);

/* ---- chat_store_backend.c ------------------------------------------------------ */
/* Repairs a backend's tables after its lock's holder died. */
void cs_backend_repair(chat_store_t *st, uint32_t idx);
/* Drops holders and waiters of dead processes. Returns how many. */
int cs_backend_reap_dead(chat_store_t *st);

/* ---- chat_metrics.c ------------------------------------------------------------ */
void cs_metrics_error_add(chat_store_t *st, const char *code, uint64_t n);
/* Repairs the series table after the misc lock's holder died. */
void cs_misc_repair(chat_store_t *st);

#endif /* CHAT_STORE_OPS_H */
