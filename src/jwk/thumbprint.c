/* jwk: RFC 7638 thumbprints, and the check that a JWK holds nothing private. */
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "certvault/jwk.h"
#include "certvault/util.h"
#include "internal.h"

/* RFC 7638 section 3.2 (RSA, EC) and RFC 8037 section 2 (OKP): the required members, in
 * lexicographic order. */
static const struct {
	const char *kty;
	const char *members[4];
} required[] = {
	{ "RSA", { "e", "kty", "n", NULL } },
	{ "EC", { "crv", "kty", "x", "y" } },
	{ "OKP", { "crv", "kty", "x", NULL } },
};

/* Members that hold private or secret key material (RFC 7518 sections 6.2.2, 6.3.2 and 6.4,
 * RFC 8037 section 2). */
static const char *const private_members[] = { "d", "p", "q", "dp", "dq", "qi", "oth", "k" };

/* 1 when s is one or more base64url characters without padding. */
static int is_base64url(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return 0;
	}
	return i > 0;
}

int cv_jwk_thumbprint(const json_t *jwk, char ret_kid[CV_JWK_KID_LEN + 1],
		      struct cv_errmsg *err)
{
	unsigned char digest[SHA256_DIGEST_LENGTH];
	const char *const *members = NULL;
	const char *kty, *value;
	json_t *canon = NULL;
	char *text = NULL;
	size_t i;
	int r;

	kty = json_string_value(json_object_get(jwk, "kty"));
	if (kty == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a JWK needs a string \"kty\"");
		goto out;
	}
	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (strcmp(kty, required[i].kty) == 0)
			members = required[i].members;
	}
	if (members == NULL) {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
				  "no thumbprint for kty \"%.16s\" (RSA, EC and OKP have one)", kty);
		goto out;
	}
	canon = json_object();
	if (canon == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < 4 && members[i] != NULL; i++) {
		value = json_string_value(json_object_get(jwk, members[i]));
		if (value == NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "a %s JWK needs a string \"%s\"", kty, members[i]);
			goto out;
		}
		/* kty and crv are names; every other required member is base64url. */
		if (strcmp(members[i], "kty") != 0 && strcmp(members[i], "crv") != 0 &&
		    !is_base64url(value)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "the JWK member \"%s\" is not base64url", members[i]);
			goto out;
		}
		if (json_object_set_new(canon, members[i], json_string(value)) != 0) {
			r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	/* RFC 7638 section 3.3: members sorted by name, no whitespace. */
	r = cv_json_text(canon, JSON_COMPACT | JSON_SORT_KEYS, &text);
	if (r < 0) {
		cv_errmsg_set(err, r, "the JWK cannot be written out");
		goto out;
	}
	if (SHA256((const unsigned char *)text, strlen(text), digest) == NULL) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "SHA-256 failed");
		goto out;
	}
	jwk_base64url_into(digest, sizeof(digest), ret_kid);
	r = 0;
out:
	free(text);
	json_decref(canon);
	return r;
}

int cv_jwk_is_public(const json_t *jwk)
{
	size_t i;

	if (!json_is_object(jwk))
		return 0;
	for (i = 0; i < sizeof(private_members) / sizeof(private_members[0]); i++) {
		if (json_object_get(jwk, private_members[i]) != NULL)
			return 0;
	}
	return 1;
}
