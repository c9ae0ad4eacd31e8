/* mod_chatbot_util.c - process-wide helpers every glue file uses: the
 * clock (milliseconds), 64 random bits from the CSPRNG, and the descriptor
 * both front doors poll to see their client while an answer streams.
 */
#include <string.h>
#include <unistd.h>

#include "http_core.h"
#include "apr_general.h"
#include "apr_poll.h"
#include "apr_portable.h"
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

int chatbot_conn_pollfd(conn_rec *c, apr_pool_t *p)
{
    apr_pollfd_t pfd;
    apr_interval_time_t ptimeout;

    memset(&pfd, 0, sizeof(pfd));
    pfd.p = p;
    if (ap_get_pollfd_from_conn(c, &pfd, &ptimeout) == APR_SUCCESS) {
        if (pfd.desc_type == APR_POLL_SOCKET) {
            apr_os_sock_t fd;
            if (apr_os_sock_get(&fd, pfd.desc.s) == APR_SUCCESS) {
                return fd;
            }
        }
        else if (pfd.desc_type == APR_POLL_FILE) {
            apr_os_file_t fd;
            if (apr_os_file_get(&fd, pfd.desc.f) == APR_SUCCESS) {
                return fd;
            }
        }
    }
    return -1;
}
