/* jwk: compact JWS signed for a client. The signature comes from the token through the
 * vault; this file decides what is signed (the protected header and the payload as the
 * client gave it) and writes the result. */
#include <stdlib.h>
#include <string.h>

#include "certvault/jwk.h"
#include "certvault/util.h"
#include "internal.h"

/* Members a client may not put in the protected header: they would name a key other than
 * the one that signs (a verifier that trusts an embedded jwk or fetches jku/x5u would be led
 * to the client's key), or change what the signature covers (RFC 7797's b64, critical
 * extensions no verifier here knows). */
static const char *const refused[] = { "jwk", "jku", "x5u", "x5c", "b64", "crit", NULL };
/* Members that are the key's own: kept when they say what the JWK says. */
static const char *const own[] = { "x5t", "x5t#S256", NULL };

static int in_list(const char *const *list, const char *key)
{
	size_t i;

	for (i = 0; list[i] != NULL; i++)
		if (strcmp(list[i], key) == 0)
			return 1;
	return 0;
}

/* A member name as it can be quoted in a message. */
static const char *shown(const char *key)
{
	return strlen(key) <= 32 && strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW"
					   "XYZ0123456789_-#") == strlen(key) ? key : "(a member)";
}

static int header_build(const json_t *header, const char *alg, const char *kid,
			const json_t *jwk, json_t **ret, struct cv_errmsg *err)
{
	json_t *h = json_pack("{s:s, s:s}", "alg", alg, "kid", kid), *value, *mine;
	const char *key;
	int r = 0;

	if (h == NULL)
		return CV_ERR_NOMEM;
	if (header != NULL && !json_is_object(header)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"header\" must be a JSON object");
		goto out;
	}
	json_object_foreach((json_t *)header, key, value) {
		if (strcmp(key, "alg") == 0 || strcmp(key, "kid") == 0) {
			if (!json_equal(value, json_object_get(h, key))) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the header's \"%s\" "
						  "conflicts with the JWK's: certvault sets it (%s)",
						  key, strcmp(key, "alg") == 0 ? alg : kid);
				goto out;
			}
			continue;
		}
		if (in_list(refused, key)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the header may not hold \"%s\": "
					  "the JWS names its key by kid (verifiers find it in the "
					  "JWKS), is base64url-encoded and has no critical "
					  "extensions", key);
			goto out;
		}
		if (in_list(own, key)) {
			mine = jwk != NULL ? json_object_get(jwk, key) : NULL;
			if (mine == NULL || !json_equal(value, mine)) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the header's \"%s\" "
						  "conflicts with the JWK's", key);
				goto out;
			}
		}
		if (json_object_set(h, key, value) < 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the header member %s cannot be "
					  "used", shown(key));
			goto out;
		}
	}
	*ret = h;
	h = NULL;
out:
	json_decref(h);
	return r;
}

int cv_jws_signing_input(const json_t *header, const char *alg, const char *kid,
			 const json_t *jwk, const char *payload, size_t payload_len,
			 char **ret_input, size_t *ret_len, struct cv_errmsg *err)
{
	static const char url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					"0123456789-_";
	json_t *h = NULL;
	char *text = NULL, *input = NULL;
	size_t text_len, enc_len, i;
	int r;

	if (payload_len > CV_JWS_PAYLOAD_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"payload\" is longer than %d "
				     "characters", CV_JWS_PAYLOAD_MAX);
	/* base64url without padding: never 1 character past a multiple of 4. */
	for (i = 0; i < payload_len; i++)
		if (payload[i] == '\0' || strchr(url_chars, payload[i]) == NULL)
			break;
	if (i != payload_len || payload_len % 4 == 1)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"payload\" must be base64url "
				     "without padding (RFC 7515 section 2)");
	r = header_build(header, alg, kid, jwk, &h, err);
	if (r < 0)
		return r;
	r = cv_json_text(h, JSON_COMPACT, &text);
	if (r < 0)
		goto out;
	text_len = strlen(text);
	enc_len = (4 * text_len + 2) / 3;
	input = malloc(enc_len + 1 + payload_len + 1);
	if (input == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	enc_len = jwk_base64url_into((const unsigned char *)text, text_len, input);
	input[enc_len] = '.';
	memcpy(input + enc_len + 1, payload, payload_len);
	input[enc_len + 1 + payload_len] = '\0';
	*ret_input = input;
	*ret_len = enc_len + 1 + payload_len;
	input = NULL;
	r = 0;
out:
	free(input);
	free(text);
	json_decref(h);
	return r;
}

int cv_jws_compact(const char *input, size_t input_len, const unsigned char *sig,
		   size_t sig_len, char **ret_jws, size_t *ret_len)
{
	char *jws = malloc(input_len + 1 + (4 * sig_len + 2) / 3 + 1);
	size_t n;

	if (jws == NULL)
		return CV_ERR_NOMEM;
	memcpy(jws, input, input_len);
	jws[input_len] = '.';
	n = jwk_base64url_into(sig, sig_len, jws + input_len + 1);
	*ret_jws = jws;
	*ret_len = input_len + 1 + n;
	return 0;
}
