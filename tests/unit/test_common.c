/* Unit tests: chat_buf_t, SHA-1, base64, hex, status names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "chat/common.h"

static void hexof(const char *s, size_t n, char out[41])
{
    uint8_t d[20];
    chat_sha1(s, n, d);
    chat_hex(d, 20, out);
}

static void test_sha1_vectors(void **state)
{
    char h[41];
    (void)state;
    hexof("abc", 3, h);
    assert_string_equal(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    hexof("", 0, h);
    assert_string_equal(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    hexof("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, h);
    assert_string_equal(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

static void test_sha1_incremental(void **state)
{
    const char *s = "The quick brown fox jumps over the lazy dog, many many times over";
    size_t n = strlen(s), split;
    uint8_t whole[20], part[20];
    (void)state;
    chat_sha1(s, n, whole);
    for (split = 0; split <= n; split++) {
        chat_sha1_t c;
        chat_sha1_init(&c);
        chat_sha1_update(&c, s, split);
        chat_sha1_update(&c, s + split, n - split);
        chat_sha1_final(&c, part);
        assert_memory_equal(whole, part, 20);
    }
}

static void test_base64_roundtrip(void **state)
{
    const uint8_t in[] = {0, 1, 2, 250, 251, 252, 253, 254, 255, 'x'};
    char enc[64];
    uint8_t dec[64];
    size_t n;
    (void)state;
    for (n = 0; n <= sizeof(in); n++) {
        size_t el = chat_base64_encode(in, n, enc, sizeof(enc));
        assert_int_equal(el, 4 * ((n + 2) / 3));
        assert_int_equal(chat_base64_decode(enc, el, dec, sizeof(dec)), (long)n);
        assert_memory_equal(in, dec, n);
    }
    assert_int_equal(chat_base64_encode((const uint8_t *)"hello", 5, enc, sizeof(enc)),
                     8);
    assert_string_equal(enc, "aGVsbG8=");
    assert_int_equal(chat_base64_decode("aGVsbG8", 7, dec, sizeof(dec)), -1);
    assert_int_equal(chat_base64_decode("aG=sbG8=", 8, dec, sizeof(dec)), -1);
    assert_int_equal(chat_base64_decode("a!VsbG8=", 8, dec, sizeof(dec)), -1);
    assert_int_equal(chat_base64_encode((const uint8_t *)"hello", 5, enc, 8), 0);
}

static void test_buf(void **state)
{
    chat_buf_t b;
    int i;
    (void)state;
    chat_buf_init(&b);
    for (i = 0; i < 1000; i++) {
        assert_int_equal(chat_buf_printf(&b, "%d,", i), CHAT_OK);
    }
    assert_true(b.len > 2000);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data, "0,1,2,", 6);
    chat_buf_reset(&b, 1 << 20);
    assert_int_equal(b.len, 0);
    assert_non_null(b.data); /* kept */
    chat_buf_reset(&b, 16);
    assert_null(b.data); /* released: it was bigger than 16 */
    assert_int_equal(chat_buf_append(&b, "ab", 2), CHAT_OK);
    assert_string_equal(b.data, "ab");
    chat_buf_free(&b);
    assert_string_equal(chat_status_str(CHAT_ENOTFOUND), "not found");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1_vectors),
        cmocka_unit_test(test_sha1_incremental),
        cmocka_unit_test(test_base64_roundtrip),
        cmocka_unit_test(test_buf),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
