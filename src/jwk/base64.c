/* jwk: the two base64 alphabets a JWK uses, base64url for key members and thumbprints,
 * standard base64 for x5c. */
#include <stdlib.h>

#include "internal.h"

static const char std_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes len bytes into buf with alphabet, padding with '=' when pad; returns the length. */
static size_t encode(const char *alphabet, int pad, const unsigned char *bytes, size_t len,
		     char *buf)
{
	size_t i, n = 0;

	for (i = 0; i + 2 < len; i += 3) {
		buf[n++] = alphabet[bytes[i] >> 2];
		buf[n++] = alphabet[(bytes[i] & 0x03) << 4 | bytes[i + 1] >> 4];
		buf[n++] = alphabet[(bytes[i + 1] & 0x0f) << 2 | bytes[i + 2] >> 6];
		buf[n++] = alphabet[bytes[i + 2] & 0x3f];
	}
	if (len - i == 1) {
		buf[n++] = alphabet[bytes[i] >> 2];
		buf[n++] = alphabet[(bytes[i] & 0x03) << 4];
		if (pad) {
			buf[n++] = '=';
			buf[n++] = '=';
		}
	} else if (len - i == 2) {
		buf[n++] = alphabet[bytes[i] >> 2];
		buf[n++] = alphabet[(bytes[i] & 0x03) << 4 | bytes[i + 1] >> 4];
		buf[n++] = alphabet[(bytes[i + 1] & 0x0f) << 2];
		if (pad)
			buf[n++] = '=';
	}
	buf[n] = '\0';
	return n;
}

size_t jwk_base64url_into(const unsigned char *bytes, size_t len, char *buf)
{
	return encode(url_alphabet, 0, bytes, len, buf);
}

static json_t *encode_string(const char *alphabet, int pad, const unsigned char *bytes,
			     size_t len)
{
	char *buf;
	size_t n;
	json_t *s;

	buf = malloc((len + 2) / 3 * 4 + 1);
	if (buf == NULL)
		return NULL;
	n = encode(alphabet, pad, bytes, len, buf);
	s = json_stringn_nocheck(buf, n);
	free(buf);
	return s;
}

json_t *jwk_base64url(const unsigned char *bytes, size_t len)
{
	return encode_string(url_alphabet, 0, bytes, len);
}

json_t *jwk_base64(const unsigned char *bytes, size_t len)
{
	return encode_string(std_alphabet, 1, bytes, len);
}
