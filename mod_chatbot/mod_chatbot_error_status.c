/* mod_chatbot_error_status.c - the HTTP status of each error code
 * (CHAT_ERR_*) in REST replies: one map for every route, commands included.
 */
#include <string.h>

#include "mod_chatbot.h"

int chatbot_error_status(const char *code)
{
    static const struct {
        const char *code;
        int status;
    } map[] = {{CHAT_ERR_BAD_JSON, 400},
               {CHAT_ERR_BAD_REQUEST, 400},
               {CHAT_ERR_UNKNOWN_TYPE, 400},
               {CHAT_ERR_TOO_LARGE, 413},
               {CHAT_ERR_RATE_LIMITED, 429},
               {CHAT_ERR_NOT_FOUND, 404},
               {CHAT_ERR_BUSY, 409},
               {CHAT_ERR_BACKEND_UNREACHABLE, 502},
               {CHAT_ERR_BACKEND_TIMEOUT, 504},
               {CHAT_ERR_MODEL_NOT_FOUND, 502},
               {CHAT_ERR_BACKEND_BUSY, 503},
               {CHAT_ERR_BACKEND_BAD_REQUEST, 502},
               {CHAT_ERR_BACKEND_ERROR, 502},
               {CHAT_ERR_BACKEND_PROTOCOL, 502},
               {CHAT_ERR_INTERRUPTED, 502},
               {CHAT_ERR_QUEUE_FULL, 503},
               {CHAT_ERR_SERVER_BUSY, 503},
               {CHAT_ERR_COMMAND_DENIED, 403},
               {CHAT_ERR_FORBIDDEN, 403},
               {CHAT_ERR_COMMAND_FAILED, 500},
               {CHAT_ERR_STORAGE_FULL, 507},
               {CHAT_ERR_STORE_UNAVAILABLE, 503},
               {CHAT_ERR_QUOTA_EXCEEDED, 507},
               {CHAT_ERR_SETTING_REFUSED, 400},
               {NULL, 0}};
    int i;

    for (i = 0; map[i].code; i++) {
        if (!strcmp(map[i].code, code)) {
            return map[i].status;
        }
    }
    return 500; /* internal */
}
