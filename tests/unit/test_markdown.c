/* Unit tests: chat_markdown - the code fence a message leaves open (closed
 * by the Markdown export so that later headings stay headings) and titles
 * kept to one line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "chat/markdown.h"

static size_t open_of(const char *s, char *ch)
{
    return chat_md_open_fence(s, strlen(s), ch);
}

static void test_fences(void **state)
{
    char ch = 'x';
    (void)state;

    /* nothing open */
    assert_int_equal(open_of("", &ch), 0);
    assert_int_equal(ch, 0);
    assert_int_equal(open_of("plain text\nno fence", &ch), 0);
    assert_int_equal(open_of("```c\nint x;\n```\n", &ch), 0);
    assert_int_equal(open_of("```c\nint x;\n```", &ch), 0);   /* no final newline */
    assert_int_equal(open_of("~~~\nx\n~~~   \n", &ch), 0);    /* blanks after */
    assert_int_equal(open_of("```\r\nx\r\n```\r\n", &ch), 0); /* CRLF */
    assert_int_equal(open_of("inline ``` is not a fence", &ch), 0);
    assert_int_equal(open_of("``\nnot three\n", &ch), 0);
    assert_int_equal(open_of("    ```\nindented 4: code, not a fence\n", &ch), 0);
    assert_int_equal(open_of("```a`b\nan info string with a backtick: no fence\n", &ch),
                     0);
    /* open at the end: an answer stopped inside a code block */
    assert_int_equal(open_of("Here:\n```python\nprint(1)", &ch), 3);
    assert_int_equal(ch, '`');
    assert_int_equal(open_of("   ~~~~\nx\n", &ch), 4);
    assert_int_equal(ch, '~');
    /* a shorter run or the other character does not close */
    assert_int_equal(open_of("`````\n```\n~~~~~~\n", &ch), 5);
    assert_int_equal(ch, '`');
    /* a closing fence has nothing after it but blanks */
    assert_int_equal(open_of("```\nx\n``` not closed\n", &ch), 3);
    /* a longer run closes */
    assert_int_equal(open_of("```\nx\n``````\n", &ch), 0);
    /* inside a fence, the other kind is text; ``` in ~~~ does not open */
    assert_int_equal(open_of("~~~\n```\n~~~\n", &ch), 0);
    assert_int_equal(open_of("~~~\n```\n~~~\n```js\n", &ch), 3);
    assert_int_equal(ch, '`');
    /* a fence opened again after a close is open at the end */
    assert_int_equal(open_of("```\na\n```\n```\nb\n", &ch), 3);
    /* a very long fence is reported with its full length */
    {
        char big[300];
        memset(big, '`', 200);
        strcpy(big + 200, "\ncode\n");
        assert_int_equal(open_of(big, &ch), 200);
    }
    /* length-delimited: the scan stops at len, NUL or not */
    assert_int_equal(chat_md_open_fence("```\nx\n```", 6, &ch), 3);
    assert_int_equal(chat_md_open_fence(NULL, 0, &ch), 0);
    assert_int_equal(chat_md_open_fence("```", 3, NULL), 3);
}

static void test_one_line(void **state)
{
    char s[64];
    (void)state;

    strcpy(s, "a\nb\r\n\tc\x01\x1f\x7f");
    chat_one_line(s);
    assert_string_equal(s, "a b   c   ");
    /* C1 controls (two bytes each) become two spaces; U+00A0 is kept */
    strcpy(s, "x\xc2\x80y\xc2\x9fz\xc2\xa0w");
    chat_one_line(s);
    assert_string_equal(s, "x  y  z\xc2\xa0w");
    /* other UTF-8 untouched, even a lead byte at the very end */
    strcpy(s, "\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\xc2");
    chat_one_line(s);
    assert_string_equal(s, "\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\xc2");
    chat_one_line(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fences),
        cmocka_unit_test(test_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
