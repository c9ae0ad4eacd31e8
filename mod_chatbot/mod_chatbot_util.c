/* mod_chatbot_util.c - process-wide helpers every glue file uses: the
 * clock (milliseconds) and 64 random bits from the CSPRNG.
 */
#include <unistd.h>

#include "apr_general.h"
#include "apr_time.h"

#include "mod_chatbot.h"

apr_uint64_t chatbot_now_ms(void)
{
    return (apr_uint64_t)(apr_time_now() / 1000);
}

apr_uint64_t chatbot_random64(void)
{
    apr_uint64_t v = 0;

    while (v == 0) {
        if (apr_generate_random_bytes((unsigned char *)&v, sizeof(v)) != APR_SUCCESS) {
            v = (apr_uint64_t)apr_time_now() ^ ((apr_uint64_t)getpid() << 32);
        }
    }
    return v;
}
