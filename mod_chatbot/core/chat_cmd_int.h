/* chat_cmd_int.h - helpers shared by the files of the portable half of
 * commands (chat_cmd.c, chat_cmd_args.c, chat_cmd_output.c); not an API. */
#ifndef CHAT_CMD_INT_H
#define CHAT_CMD_INT_H

#include <stddef.h>

/* Writes fmt (two %s: a and b, NULL as "") into err, if err has room. */
void chat_cmd_seterr(char *err, size_t cap, const char *fmt, const char *a,
                     const char *b);

/* An ASCII letter or digit. */
int chat_cmd_is_alnum(unsigned char c);

#endif
