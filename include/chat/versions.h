/* chat/versions.h - answer versions and branches over a conversation's
 * messages as the store gives them (chat_msg_info_t.parent and the
 * CHAT_MSG_ALT flag, see chat/store.h): the active path and the versions
 * of a message. Pure functions on arrays; the views and the page use them
 * to show "< 2/3 >" and to pick what a switch selects.
 */
#ifndef CHAT_VERSIONS_H
#define CHAT_VERSIONS_H

#include <stdint.h>
#include "chat/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The active path of n messages whose parents (an earlier index or
 * CHAT_MSG_NO_PARENT) and flags are given: from the chosen root through
 * each chosen child (the first child without CHAT_MSG_ALT). Writes the
 * indexes, oldest first, to path (room for n) and returns how many. A
 * parent that is not earlier counts as none. */
uint32_t chat_ver_path(const uint32_t *parent, const uint32_t *flags, uint32_t n,
                       uint32_t *path);

/* The versions of message i: the messages with the same parent, in index
 * order (at most cap written to out, may be NULL). Returns how many there
 * are; *pos (may be NULL) gets i's 0-based place among them. */
uint32_t chat_ver_siblings(const uint32_t *parent, uint32_t n, uint32_t i, uint32_t *out,
                           uint32_t cap, uint32_t *pos);

#ifdef __cplusplus
}
#endif

#endif /* CHAT_VERSIONS_H */
