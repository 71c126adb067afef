/* token: RFC 7512 PKCS#11 URIs naming a key, for users and for tools (libp11, p11tool). */
#include <string.h>

#include "internal.h"

/* RFC 7512 pk11-pchar without pct-encoded: unreserved / pk11-res-avail / "&". Anything else,
 * ';' and '/' and '%' and spaces included, is percent-encoded. */
static int pchar_allowed(unsigned char c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("-._~:[]@!$'()*+,=&", c) != NULL;
}

struct out {
	char *buf;
	size_t len;
	size_t pos;
	int overflow;
};

static void put_char(struct out *o, char c)
{
	if (o->pos + 1 < o->len)
		o->buf[o->pos] = c;
	else
		o->overflow = 1;
	o->pos++;
}

static void put_str(struct out *o, const char *s)
{
	while (*s != '\0')
		put_char(o, *s++);
}

static void put_pct(struct out *o, unsigned char c)
{
	static const char hex[] = "0123456789ABCDEF";

	put_char(o, '%');
	put_char(o, hex[c >> 4]);
	put_char(o, hex[c & 0x0f]);
}

static void put_attr(struct out *o, const char *name, const unsigned char *value, size_t len,
		     int encode_all)
{
	size_t i;

	put_str(o, name);
	put_char(o, '=');
	for (i = 0; i < len; i++) {
		if (!encode_all && pchar_allowed(value[i]))
			put_char(o, (char)value[i]);
		else
			put_pct(o, value[i]);
	}
	put_char(o, ';');
}

int cv_token_key_uri(const struct cv_token *token, const uint8_t *id, size_t id_len,
		     const char *label, char *buf, size_t buflen)
{
	struct out o = { buf, buflen, 0, 0 };

	put_str(&o, "pkcs11:");
	/* Empty token fields are left out: "serial=" would match only an empty serial. */
	if (token->model[0] != '\0')
		put_attr(&o, "model", (const unsigned char *)token->model, strlen(token->model), 0);
	if (token->manufacturer[0] != '\0')
		put_attr(&o, "manufacturer", (const unsigned char *)token->manufacturer,
			 strlen(token->manufacturer), 0);
	if (token->serial[0] != '\0')
		put_attr(&o, "serial", (const unsigned char *)token->serial, strlen(token->serial),
			 0);
	put_attr(&o, "token", (const unsigned char *)token->label, strlen(token->label), 0);
	/* The id is binary: every byte encoded, as RFC 7512 recommends. */
	put_attr(&o, "id", id, id_len, 1);
	if (label != NULL)
		put_attr(&o, "object", (const unsigned char *)label, strlen(label), 0);
	put_str(&o, "type=private");
	if (o.overflow || buflen == 0) {
		if (buflen > 0)
			buf[0] = '\0';
		return CV_ERR_INTERNAL;
	}
	buf[o.pos] = '\0';
	return 0;
}
