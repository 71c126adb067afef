/* Text from outside made safe: well-formed UTF-8, escaped where it is not, cut on character
 * boundaries (see include/certvault/text.h for the escaped form). */
#include <stdlib.h>
#include <string.h>

#include "certvault/text.h"

/* The length of the well-formed UTF-8 character at s (at most len bytes), 0 when the bytes
 * there are not one (RFC 3629's table: no overlong forms, no surrogates, <= U+10FFFF). */
static size_t char_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return len >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

		return len >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

		return len >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
		       (s[3] & 0xc0) == 0x80 ? 4 : 0;
	}
	return 0;
}

static int is_control(unsigned char c, unsigned flags)
{
	if ((flags & CV_TEXT_KEEP_NEWLINES) && (c == '\t' || c == '\n' || c == '\r'))
		return 0;
	return c < 0x20 || c == 0x7f;
}

int cv_text_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		/* ASCII, the common case, a byte at a time without the decoder. */
		if (p[i] >= 0x01 && p[i] < 0x80) {
			i++;
			continue;
		}
		if (p[i] == 0)
			return 0;
		n = char_len(p + i, len - i);
		if (n == 0)
			return 0;
		i += n;
	}
	return 1;
}

int cv_text_clean(const char *s, size_t len, unsigned flags)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		if (is_control(p[i], flags))
			return 0;
		n = char_len(p + i, len - i);
		if (n == 0)
			return 0;
		i += n;
	}
	return 1;
}

size_t cv_text_cut(const char *s, size_t len, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	if (len <= max && cv_text_utf8_valid(s, len))
		return len;
	/* Walk whole characters; a byte that is not one counts as one (it cannot be split). */
	while (i < len) {
		n = char_len(p + i, len - i);
		if (n == 0)
			n = 1;
		if (i + n > max)
			break;
		i += n;
	}
	return i;
}

size_t cv_text_escape(const char *s, size_t len, unsigned flags, char *out, size_t outsize)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, n, k;
	char piece[16];

	if (outsize == 0)
		return 0;
	while (i < len) {
		n = char_len(p + i, len - i);
		if (p[i] == '\\') {
			memcpy(piece, "\\\\", 2);
			k = 2;
			n = 1;
		} else if (n == 0 || is_control(p[i], flags) ||
			   ((flags & (CV_TEXT_LOG | CV_TEXT_ASCII)) && p[i] >= 0x80) ||
			   ((flags & CV_TEXT_LOG) && p[i] == ' ')) {
			/* Escaped one byte at a time: a character outside ASCII in a log line
			 * becomes its UTF-8 bytes, each visible. */
			piece[0] = '\\';
			piece[1] = 'x';
			piece[2] = hex[p[i] >> 4];
			piece[3] = hex[p[i] & 0x0f];
			k = 4;
			n = 1;
		} else {
			memcpy(piece, p + i, n);
			k = n;
		}
		if (o + k >= outsize)
			break;
		memcpy(out + o, piece, k);
		o += k;
		i += n;
	}
	out[o] = '\0';
	return o;
}

size_t cv_text_safe(const char *s, size_t len, unsigned flags, char *out, size_t outsize)
{
	size_t n;

	if (outsize == 0)
		return 0;
	if (!cv_text_clean(s, len, flags) || (flags & (CV_TEXT_LOG | CV_TEXT_ASCII)))
		return cv_text_escape(s, len, flags, out, outsize);
	n = cv_text_cut(s, len, outsize - 1);
	memmove(out, s, n);
	out[n] = '\0';
	return n;
}

json_t *cv_text_json(const char *s)
{
	size_t len, n;
	json_t *j;
	char *buf;

	if (s == NULL)
		return json_null();
	len = strlen(s);
	/* Checked here once: jansson need not check again (the list builds ~150 a page). */
	if (cv_text_utf8_valid(s, len))
		return json_stringn_nocheck(s, len);
	/* Four bytes out for one in at most, and the NUL. */
	buf = malloc(4 * len + 1);
	if (buf == NULL)
		return NULL;
	n = cv_text_escape(s, len, 0, buf, 4 * len + 1);
	j = json_stringn(buf, n);
	free(buf);
	return j;
}

int cv_text_name_equal(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++) {
		char x = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
		char y = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;

		if (x != y)
			return 0;
	}
	return *a == *b;
}
