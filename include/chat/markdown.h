/* chat/markdown.h - the little Markdown structure the exports need to keep
 * intact: code fences left open by a message (typically an answer stopped
 * in the middle of a code block) and text that must stay on one line. */
#ifndef CHAT_MARKDOWN_H
#define CHAT_MARKDOWN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Scans text for CommonMark fenced code blocks (a line indented at most 3
 * spaces starting with 3 or more backticks or tildes; an opening backtick
 * fence's info string has no backtick; a closing fence uses the same
 * character, is at least as long and has only blanks after it). Returns
 * the length of the fence still open at the end of text (0 if none) and
 * sets *fence_ch (may be NULL) to its character: a line of that many of
 * them closes it. Fences inside indented code or block quotes are not told
 * apart; the result is only used to close what a message left open. */
size_t chat_md_open_fence(const char *text, size_t len, char *fence_ch);

/* Turns, in place, every C0 control character (tab and line breaks
 * included), DEL and C1 control character (U+0080-U+009F, two bytes in
 * UTF-8, two spaces) of the NUL-terminated s into spaces, so that it stays
 * one line of plain text (a title in a heading or a list). The length and
 * every other byte are kept, so valid UTF-8 stays valid. */
void chat_one_line(char *s);

#ifdef __cplusplus
}
#endif

#endif /* CHAT_MARKDOWN_H */
