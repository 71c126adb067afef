/* Unit tests for the small helpers of src/core/util.c (names, RFC 3339 times, hex, integers)
 * and src/core/text.c (outside text made safe). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "certvault/error.h"
#include "certvault/text.h"
#include "certvault/util.h"

static void test_name_lengths(void **state)
{
	char name[CV_NAME_MAX + 2];

	(void)state;
	assert_int_equal(cv_name_valid("a"), 1);
	assert_int_equal(cv_name_valid(""), 0);
	assert_int_equal(cv_name_valid(NULL), 0);
	memset(name, 'x', sizeof(name));
	name[CV_NAME_MAX] = '\0';
	assert_int_equal(strlen(name), 64);
	assert_int_equal(cv_name_valid(name), 1);
	name[CV_NAME_MAX] = 'x';
	name[CV_NAME_MAX + 1] = '\0';
	assert_int_equal(strlen(name), 65);
	assert_int_equal(cv_name_valid(name), 0);
}

static void test_name_characters(void **state)
{
	static const char *const good[] = {
		"web", "Web-Prod-01", "0", "-", "a-b-c", "ABCxyz0189",
	};
	static const char *const bad[] = {
		"bad_name", "a.b", "a b", " a", "a ", "a\tb", "a/b", "a\\b", "a:b", "a@b",
		"caf\xc3\xa9", "\xe2\x80\x8b" "a", "a\nb", "a%2fb",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (cv_name_valid(good[i]) != 1)
			fail_msg("\"%s\" refused", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cv_name_valid(bad[i]) != 0)
			fail_msg("\"%s\" taken", bad[i]);
}

static void test_rfc3339(void **state)
{
	char buf[CV_TIME_BUFLEN];

	(void)state;
	assert_int_equal(cv_time_rfc3339(0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	assert_int_equal(cv_time_rfc3339(1767225600, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2026-01-01T00:00:00Z");
	assert_int_equal(cv_time_rfc3339(1795897800, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2026-11-28T20:30:00Z");
	/* past 2038 and far on */
	assert_int_equal(cv_time_rfc3339(2147483648LL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2038-01-19T03:14:08Z");
	assert_int_equal(cv_time_rfc3339(253402300799LL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "9999-12-31T23:59:59Z");
	/* before 1970 */
	assert_int_equal(cv_time_rfc3339(-1, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1969-12-31T23:59:59Z");
	/* a buffer too small is refused rather than cut */
	assert_int_equal(cv_time_rfc3339(0, buf, 10), CV_ERR_INTERNAL);
}

/* Years 1000-9999 are formatted by arithmetic: it agrees with gmtime_r and strftime at the
 * edges of that range, around leap days and centuries, and at steps all through it; past
 * it, gmtime_r still answers. */
static void test_rfc3339_agrees_with_gmtime(void **state)
{
	static const int64_t edges[] = { -62167219200LL, -30610224001LL, -30610224000LL,
					 -2208988800LL, -1, 0, 951782399, 951782400, 951868800,
					 4107542399LL, 4107542400LL, 253402300799LL, 253402300800LL,
					 -62167219201LL };
	char got[CV_TIME_BUFLEN], want[CV_TIME_BUFLEN];
	struct tm tm;
	time_t tt;
	int64_t t;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(edges) / sizeof(edges[0]) + 400000; i++) {
		t = i < sizeof(edges) / sizeof(edges[0])
			    ? edges[i]
			    : -30610224000LL + (int64_t)(i * 790001711ULL % 284012524800ULL);
		tt = (time_t)t;
		assert_non_null(gmtime_r(&tt, &tm));
		assert_true(strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0);
		assert_int_equal(cv_time_rfc3339(t, got, sizeof(got)), 0);
		if (strcmp(got, want) != 0)
			fail_msg("%lld: %s, gmtime says %s", (long long)t, got, want);
	}
}

static void test_hex(void **state)
{
	static const uint8_t bytes[] = { 0x00, 0x01, 0xab, 0xff, 0x7f };
	uint8_t back[5];
	char buf[11];

	(void)state;
	cv_hex_encode(bytes, sizeof(bytes), buf);
	assert_string_equal(buf, "0001abff7f");
	cv_hex_encode(bytes, 0, buf);
	assert_string_equal(buf, "");
	assert_int_equal(cv_hex_decode("0001abff7f", back, sizeof(back)), 0);
	assert_memory_equal(back, bytes, sizeof(bytes));
	assert_int_equal(cv_hex_decode("0001ABFF7F", back, sizeof(back)), 0);
	assert_memory_equal(back, bytes, sizeof(bytes));
	assert_int_equal(cv_hex_decode("0001abff7", back, sizeof(back)), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_hex_decode("0001abff7f00", back, sizeof(back)), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_hex_decode("0001abff7g", back, sizeof(back)), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_hex_decode("0x01abff7f", back, sizeof(back)), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_hex_decode(" 001abff7f", back, sizeof(back)), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_hex_decode("", back, 0), 0);
}

static void test_parse_int64(void **state)
{
	int64_t v = 42;

	(void)state;
	assert_int_equal(cv_parse_int64("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cv_parse_int64("10", 0, 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(cv_parse_int64("-5", -5, 5, &v), 0);
	assert_int_equal(v, -5);
	v = 42;
	assert_int_equal(cv_parse_int64("11", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("-1", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("-6", -5, 5, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(v, 42);
	assert_int_equal(cv_parse_int64("9223372036854775807", INT64_MIN, INT64_MAX, &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(cv_parse_int64("-9223372036854775808", INT64_MIN, INT64_MAX, &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(cv_parse_int64("9223372036854775808", INT64_MIN, INT64_MAX, &v),
			 CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("-9223372036854775809", INT64_MIN, INT64_MAX, &v),
			 CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("99999999999999999999999", INT64_MIN, INT64_MAX, &v),
			 CV_ERR_BAD_REQUEST);
	/* only a whole decimal number */
	assert_int_equal(cv_parse_int64("", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64(NULL, 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("5x", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("x5", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("5 ", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("5.0", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("0x5", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64(" 5", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("+5", 0, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_parse_int64("-", -5, 10, &v), CV_ERR_BAD_REQUEST);
	assert_int_equal(v, INT64_MIN);
}

/* src/core/text.c: what outside text becomes before it is stored, shown or logged. */
static void test_text_utf8(void **state)
{
	(void)state;
	assert_int_equal(cv_text_utf8_valid("", 0), 1);
	assert_int_equal(cv_text_utf8_valid("F\xc5\x91tan\xc3\xba", 8), 1);
	assert_int_equal(cv_text_utf8_valid("\xf0\x9f\x94\x91", 4), 1);       /* U+1F511 */
	assert_int_equal(cv_text_utf8_valid("\xff", 1), 0);
	assert_int_equal(cv_text_utf8_valid("\xc0\xaf", 2), 0);               /* overlong '/' */
	assert_int_equal(cv_text_utf8_valid("\xed\xa0\x80", 3), 0);           /* a surrogate */
	assert_int_equal(cv_text_utf8_valid("\xf4\x90\x80\x80", 4), 0);       /* > U+10FFFF */
	assert_int_equal(cv_text_utf8_valid("\xc3", 1), 0);                   /* cut short */
	assert_int_equal(cv_text_utf8_valid("a\0b", 3), 0);
	assert_int_equal(cv_text_clean("a\nb", 3, 0), 0);
	assert_int_equal(cv_text_clean("a\nb", 3, CV_TEXT_KEEP_NEWLINES), 1);
	assert_int_equal(cv_text_clean("a\x1b[2Jb", 6, CV_TEXT_KEEP_NEWLINES), 0);
	assert_int_equal(cv_text_clean("a\x7f", 2, 0), 0);
}

static void test_text_escape(void **state)
{
	char out[64];

	(void)state;
	/* clean text is kept as it is, backslashes too */
	assert_int_equal(cv_text_safe("F\xc5\x91 a\\b", 7, 0, out, sizeof(out)), 7);
	assert_string_equal(out, "F\xc5\x91 a\\b");
	/* anything else is escaped, and then the backslash too, so it reads back exactly */
	cv_text_safe("a\xff\\b\n", 5, 0, out, sizeof(out));
	assert_string_equal(out, "a\\xFF\\\\b\\x0A");
	/* a log field: one line of printable ASCII without spaces */
	cv_text_escape("/v1/x\nGET /forged 200", 21, CV_TEXT_LOG, out, sizeof(out));
	assert_string_equal(out, "/v1/x\\x0AGET\\x20/forged\\x20200");
	cv_text_escape("F\xc5\x91", 3, CV_TEXT_LOG, out, sizeof(out));
	assert_string_equal(out, "F\\xC5\\x91");
	cv_text_escape("a b\xc5\x91", 5, CV_TEXT_ASCII, out, sizeof(out));
	assert_string_equal(out, "a b\\xC5\\x91");
	/* cut before a character or an escape that does not fit, never inside */
	assert_int_equal(cv_text_safe("ab\xc5\x91", 4, 0, out, 4), 2);
	assert_string_equal(out, "ab");
	assert_int_equal(cv_text_escape("a\xff", 2, 0, out, 5), 1);
	assert_string_equal(out, "a");
	assert_int_equal(cv_text_cut("\xc5\x91\xc5\x91", 4, 3), 2);
	assert_int_equal(cv_text_cut("abc", 3, 3), 3);
}

static void test_text_json(void **state)
{
	json_t *j;

	(void)state;
	j = cv_text_json("\xff\xfe" "ok");
	assert_non_null(j);
	assert_string_equal(json_string_value(j), "\\xFF\\xFEok");
	json_decref(j);
	j = cv_text_json("F\xc5\x91");
	assert_string_equal(json_string_value(j), "F\xc5\x91");
	json_decref(j);
	j = cv_text_json(NULL);
	assert_true(json_is_null(j));
}

/* Whatever the bytes and the room, what comes out is what the contract says: the escaped
 * form is UTF-8 without control characters (printable ASCII without spaces for a log),
 * fits, and a cut never splits a character. Random inputs from a fixed seed. */
static void test_text_random_bytes(void **state)
{
	static const unsigned char pool[] = { 'a', ' ', '\\', '\n', 0x1b, 0x7f, 0xc3, 0xa9,
					      0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x94, 0x91, 0xff,
					      0xc0, 0xed, 0xa0, 0x80, 0xf4, 0x90 };
	unsigned seed = 12345;
	char in[40], out[64];
	size_t len, room, n, cut, i;
	int round;

	(void)state;
	for (round = 0; round < 20000; round++) {
		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof(in);
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = (char)pool[(seed >> 16) % sizeof(pool)];
		}
		room = 1 + (seed >> 8) % sizeof(out);
		n = cv_text_safe(in, len, 0, out, room);
		assert_true(n < room);
		assert_int_equal(strlen(out), n);
		assert_int_equal(cv_text_clean(out, n, 0), 1);
		n = cv_text_escape(in, len, CV_TEXT_LOG, out, room);
		for (i = 0; i < n; i++)
			assert_true(out[i] > 0x20 && out[i] < 0x7f);
		cut = cv_text_cut(in, len, room);
		assert_true(cut <= len && cut <= room);
		if (cv_text_utf8_valid(in, len))
			assert_int_equal(cv_text_utf8_valid(in, cut), 1);
	}
}

static void test_text_names(void **state)
{
	(void)state;
	assert_int_equal(cv_text_name_equal("WWW", "www"), 1);
	assert_int_equal(cv_text_name_equal("www-1", "WWW-1"), 1);
	assert_int_equal(cv_text_name_equal("www", "www1"), 0);
	assert_int_equal(cv_text_name_equal("\xc3\x89", "\xc3\xa9"), 0); /* ASCII only, as NOCASE */
	assert_int_equal(cv_text_name_equal("", ""), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_lengths),
		cmocka_unit_test(test_text_utf8),
		cmocka_unit_test(test_text_escape),
		cmocka_unit_test(test_text_json),
		cmocka_unit_test(test_text_names),
		cmocka_unit_test(test_text_random_bytes),
		cmocka_unit_test(test_name_characters),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_rfc3339_agrees_with_gmtime),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_parse_int64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
