/* Small pure helpers shared by every module. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/error.h"
#include "certvault/util.h"

int cv_name_valid(const char *name)
{
	size_t n;

	if (name == NULL)
		return 0;
	for (n = 0; name[n] != '\0'; n++) {
		char c = name[n];

		if (n >= CV_NAME_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-'))
			return 0;
	}
	return n > 0;
}

int cv_glob_valid(const char *pattern)
{
	size_t n;

	if (pattern == NULL)
		return 0;
	for (n = 0; pattern[n] != '\0'; n++) {
		char c = pattern[n];

		if (n >= CV_NAME_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '*' || c == '?'))
			return 0;
	}
	return n > 0;
}

static char fold(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int cv_glob_match(const char *pattern, const char *name)
{
	/* The classic backtracking walk: on a mismatch after a '*', that star takes one more
	 * character. Linear in practice, quadratic at worst on 64-character inputs. */
	const char *star = NULL, *resume = NULL;

	while (*name != '\0') {
		if (*pattern == '*') {
			star = pattern++;
			resume = name;
		} else if (*pattern != '\0' && (*pattern == '?' || fold(*pattern) == fold(*name))) {
			pattern++;
			name++;
		} else if (star != NULL) {
			pattern = star + 1;
			name = ++resume;
		} else {
			return 0;
		}
	}
	while (*pattern == '*')
		pattern++;
	return *pattern == '\0';
}

/* y-m-d of the proleptic Gregorian calendar for days since 1970-01-01 (H. Hinnant's
 * civil_from_days). */
static void civil_from_days(int64_t z, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*ret_d = doy - (153 * mp + 2) / 5 + 1;
	*ret_m = mp < 10 ? mp + 3 : mp - 9;
	*ret_y = (int64_t)yoe + era * 400 + (*ret_m <= 2);
}

static void put_digits(char *p, unsigned v, int n)
{
	while (n-- > 0) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

int64_t cv_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cv_cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t attr;
	int r = pthread_condattr_init(&attr);

	if (r != 0)
		return r;
	r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (r == 0)
		r = pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
	return r;
}

int cv_time_rfc3339(int64_t t, char *buf, size_t buflen)
{
	struct tm tm;
	time_t tt = (time_t)t;
	int64_t days, secs, y;
	unsigned m, d;

	if (buflen < CV_TIME_BUFLEN)
		return CV_ERR_INTERNAL;
	/* Years 1000-9999 by arithmetic: gmtime_r takes glibc's time zone lock on every call,
	 * and a list page formats two times per row on every HTTP thread. Other years keep
	 * strftime's form (%Y does not pad years before 1000). */
	if (t >= -30610224000LL && t <= 253402300799LL) {
		days = t / 86400;
		secs = t % 86400;
		if (secs < 0) {
			secs += 86400;
			days--;
		}
		civil_from_days(days, &y, &m, &d);
		put_digits(buf, (unsigned)y, 4);
		buf[4] = '-';
		put_digits(buf + 5, m, 2);
		buf[7] = '-';
		put_digits(buf + 8, d, 2);
		buf[10] = 'T';
		put_digits(buf + 11, (unsigned)(secs / 3600), 2);
		buf[13] = ':';
		put_digits(buf + 14, (unsigned)(secs / 60 % 60), 2);
		buf[16] = ':';
		put_digits(buf + 17, (unsigned)(secs % 60), 2);
		buf[19] = 'Z';
		buf[20] = '\0';
		return 0;
	}
	if (gmtime_r(&tt, &tm) == NULL)
		return CV_ERR_INTERNAL;
	if (strftime(buf, buflen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return CV_ERR_INTERNAL;
	return 0;
}

/* n decimal digits at s, or -1. */
static int digits_at(const char *s, int n)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int64_t cv_days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int cv_time_parse(const char *s, int64_t *ret)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0, leap;
	const char *p;

	if (s == NULL || strlen(s) < 20)
		return CV_ERR_BAD_REQUEST;
	y = digits_at(s, 4);
	mo = digits_at(s + 5, 2);
	d = digits_at(s + 8, 2);
	h = digits_at(s + 11, 2);
	mi = digits_at(s + 14, 2);
	sec = digits_at(s + 17, 2);
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
	    sec < 0 || sec > 59 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return CV_ERR_BAD_REQUEST;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
		return CV_ERR_BAD_REQUEST;
	p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return CV_ERR_BAD_REQUEST;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		sign = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		sign = *p == '+' ? 1 : -1;
		oh = digits_at(p + 1, 2);
		om = digits_at(p + 4, 2);
		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return CV_ERR_BAD_REQUEST;
	} else {
		return CV_ERR_BAD_REQUEST;
	}
	*ret = cv_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
	       sign * (oh * 3600 + om * 60);
	return 0;
}

void cv_hex_encode(const uint8_t *bytes, size_t len, char *buf)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		buf[2 * i] = digits[bytes[i] >> 4];
		buf[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	buf[2 * len] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int cv_hex_decode(const char *hex, uint8_t *ret_bytes, size_t len)
{
	size_t i;

	if (strlen(hex) != 2 * len)
		return CV_ERR_BAD_REQUEST;
	for (i = 0; i < len; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return CV_ERR_BAD_REQUEST;
		ret_bytes[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int cv_parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
	char *end;
	long long v;

	/* strtoll would also take leading blanks and a '+': a whole number is digits only. */
	if (s == NULL || strlen(s) > 20 || !(*s == '-' || (*s >= '0' && *s <= '9')))
		return CV_ERR_BAD_REQUEST;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return CV_ERR_BAD_REQUEST;
	*ret = v;
	return 0;
}

int cv_json_text(const json_t *json, size_t flags, char **ret_text)
{
	size_t need = json_dumpb(json, NULL, 0, flags);
	char *text;

	if (need == 0)
		return CV_ERR_INTERNAL;
	text = malloc(need + 1);
	if (text == NULL)
		return CV_ERR_NOMEM;
	if (json_dumpb(json, text, need, flags) != need) {
		free(text);
		return CV_ERR_INTERNAL;
	}
	text[need] = '\0';
	*ret_text = text;
	return 0;
}
