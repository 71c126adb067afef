/* Unit tests for the small helpers of src/core/util.c: names, RFC 3339 times, hex, integers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "certvault/error.h"
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_lengths),
		cmocka_unit_test(test_name_characters),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_rfc3339_agrees_with_gmtime),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_parse_int64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
