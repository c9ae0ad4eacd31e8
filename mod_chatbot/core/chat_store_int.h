/* chat_store_int.h - everything private to the shared-memory store
 * provider (chat_store*.c and chat_metrics.c), in one include:
 *
 *   chat_store_layout.h  the region's records, constants and size checks
 *   chat_store_handle.h  a process's handle, atomics, addressing helpers
 *   chat_store_lock.h    which lock guards what; locks and transactions
 *   chat_store_ops.h     the operations the store's files share
 *   chat_store_shm.h     the provider's operations (chat_store_provider_t)
 *
 * The layout diagram and the locking and crash-safety rules are at the top
 * of chat_store.c.
 *
 * Not part of the public API: unit tests and the fuzzer include it to reach
 * cs_validate(), the crash hook and the internals they check.
 */
#ifndef CHAT_STORE_INT_H
#define CHAT_STORE_INT_H

#include "chat_store_layout.h"
#include "chat_store_handle.h"
#include "chat_store_lock.h"
#include "chat_store_ops.h"
#include "chat_store_shm.h"

#endif /* CHAT_STORE_INT_H */
