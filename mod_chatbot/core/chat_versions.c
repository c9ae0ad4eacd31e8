/* chat_versions.c - the active path and the versions of a message
 * (chat/versions.h). The shared store walks its own headers by the same
 * rule (chat_store_ver.c); this is the form for messages already read. */
#include "chat/versions.h"

static uint32_t parent_at(const uint32_t *parent, uint32_t i)
{
    return parent[i] < i ? parent[i] : CHAT_MSG_NO_PARENT;
}

uint32_t chat_ver_path(const uint32_t *parent, const uint32_t *flags, uint32_t n,
                       uint32_t *path)
{
    uint32_t cur = CHAT_MSG_NO_PARENT, i, k = 0;

    for (i = 0; i < n; i++) {
        if (!(flags[i] & CHAT_MSG_ALT) && parent_at(parent, i) == cur) {
            cur = i;
            path[k++] = i;
        }
    }
    return k;
}

uint32_t chat_ver_siblings(const uint32_t *parent, uint32_t n, uint32_t i, uint32_t *out,
                           uint32_t cap, uint32_t *pos)
{
    uint32_t p, j, k = 0;

    if (i >= n) {
        return 0;
    }
    p = parent_at(parent, i);
    for (j = 0; j < n; j++) {
        if (parent_at(parent, j) != p) {
            continue;
        }
        if (j == i && pos) {
            *pos = k;
        }
        if (out && k < cap) {
            out[k] = j;
        }
        k++;
    }
    return k;
}
