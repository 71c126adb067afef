/* Unit tests for the jwk module: RFC 7638 thumbprints (with the RFC's own example), the JWK of
 * every key type certvault holds, alg and use rules, x5c and x5t#S256, keyUsage, chains, the
 * absence of private members, the JWKS document, and a round trip back into OpenSSL. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "certvault/jwk.h"
#include "testcert.h"

#define NOW ((time_t)1767225600) /* 2026-01-01T00:00:00Z */
#define DAY 86400

enum { K_RSA2048, K_P256, K_P384, K_P521, K_ED25519, K_RSA1024, K_SECP256K1, K_ED448, K__N };

static const char *const key_types[K__N] = {
	"rsa2048", "p256", "p384", "p521", "ed25519", "rsa1024", "secp256k1", "ed448",
};

/* Keys are slow to make: made once for the whole file. */
static EVP_PKEY *keys[K__N];

static int setup_keys(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < K__N; i++) {
		keys[i] = tc_key_new(key_types[i]);
		if (keys[i] == NULL)
			return -1;
	}
	return 0;
}

static int teardown_keys(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < K__N; i++)
		EVP_PKEY_free(keys[i]);
	return 0;
}

static X509 *make_cert_full(EVP_PKEY *key, const char *cn, int ca, X509 *issuer,
			    EVP_PKEY *issuer_key)
{
	struct tc_cert_spec spec = { 0 };
	X509 *x;

	spec.cn = cn;
	spec.sans = ca ? NULL : cn;
	spec.not_before = NOW - DAY;
	spec.not_after = NOW + 90 * DAY;
	spec.is_ca = ca;
	spec.issuer = issuer;
	spec.issuer_key = issuer_key;
	x = tc_cert_new(key, &spec);
	assert_non_null(x);
	return x;
}

static X509 *make_cert(EVP_PKEY *key)
{
	return make_cert_full(key, "api.example.com", 0, NULL, NULL);
}

/* A self-signed certificate for key with a keyUsage extension of value. */
static X509 *make_cert_key_usage(EVP_PKEY *key, const char *value)
{
	X509 *x = make_cert(key);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, value);

	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, key, EVP_PKEY_is_a(key, "ED25519") ? NULL : EVP_sha256()) > 0);
	return x;
}

/* Decodes base64 (url: the base64url alphabet, no padding allowed; else the standard one with
 * its padding) into a malloc'd buffer; fails the test on anything else. */
static unsigned char *b64_decode(const char *s, int url, size_t *ret_len)
{
	size_t n = strlen(s), i, padded = (n + 3) / 4 * 4, pad = 0;
	char *std = calloc(padded + 1, 1);
	unsigned char *out = malloc(padded / 4 * 3 + 1);
	int len;

	assert_non_null(std);
	assert_non_null(out);
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (url) {
			assert_true(c != '+' && c != '/' && c != '=');
			c = c == '-' ? '+' : c == '_' ? '/' : c;
		} else {
			assert_true(c != '-' && c != '_');
		}
		std[i] = c;
	}
	if (url) {
		assert_true(n % 4 != 1);
		for (; i < padded; i++)
			std[i] = '=';
	} else {
		assert_int_equal(n % 4, 0);
	}
	for (i = padded; i > 0 && std[i - 1] == '='; i--)
		pad++;
	len = EVP_DecodeBlock(out, (const unsigned char *)std, (int)padded);
	assert_true(len >= 0);
	*ret_len = (size_t)len - pad;
	free(std);
	return out;
}

static const char *member(const json_t *jwk, const char *name)
{
	const char *s = json_string_value(json_object_get(jwk, name));

	assert_non_null(s);
	return s;
}

static unsigned char *member_bytes(const json_t *jwk, const char *name, size_t *ret_len)
{
	return b64_decode(member(jwk, name), 1, ret_len);
}

static BIGNUM *member_bn(const json_t *jwk, const char *name)
{
	size_t len;
	unsigned char *bytes = member_bytes(jwk, name, &len);
	BIGNUM *bn = BN_bin2bn(bytes, (int)len, NULL);

	assert_non_null(bn);
	free(bytes);
	return bn;
}

/* The public key the JWK describes, rebuilt with OpenSSL from its members alone. */
static EVP_PKEY *pkey_from_jwk(const json_t *jwk)
{
	const char *kty = member(jwk, "kty");
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;
	BIGNUM *n = NULL, *e = NULL;
	unsigned char point[1 + 2 * 66], *x = NULL, *y = NULL;
	size_t xlen, ylen;

	assert_non_null(bld);
	if (strcmp(kty, "OKP") == 0) {
		assert_string_equal(member(jwk, "crv"), "Ed25519");
		x = member_bytes(jwk, "x", &xlen);
		pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xlen);
		assert_non_null(pk);
		free(x);
		OSSL_PARAM_BLD_free(bld);
		return pk;
	}
	if (strcmp(kty, "RSA") == 0) {
		n = member_bn(jwk, "n");
		e = member_bn(jwk, "e");
		assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n), 1);
		assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e), 1);
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	} else {
		assert_string_equal(kty, "EC");
		x = member_bytes(jwk, "x", &xlen);
		y = member_bytes(jwk, "y", &ylen);
		assert_int_equal(xlen, ylen);
		assert_true(xlen <= 66);
		point[0] = 0x04; /* uncompressed */
		memcpy(point + 1, x, xlen);
		memcpy(point + 1 + xlen, y, ylen);
		assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
								 member(jwk, "crv"), 0), 1);
		assert_int_equal(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
								  point, 1 + xlen + ylen), 1);
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	assert_non_null(params);
	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	free(x);
	free(y);
	return pk;
}

static void assert_no_private_member(const json_t *jwk)
{
	static const char *const names[] = { "d", "p", "q", "dp", "dq", "qi", "oth", "k" };
	size_t i;

	assert_int_equal(cv_jwk_is_public(jwk), 1);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_null(json_object_get(jwk, names[i]));
}

static unsigned char *cert_der(X509 *x, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);

	assert_true(n > 0);
	*len = (size_t)n;
	return der;
}

/* x5c[i] is the standard base64 of x's DER. */
static void assert_x5c_entry(const json_t *jwk, size_t i, X509 *x)
{
	const char *s = json_string_value(json_array_get(json_object_get(jwk, "x5c"), i));
	unsigned char *want, *got;
	size_t want_len, got_len;

	assert_non_null(s);
	want = cert_der(x, &want_len);
	got = b64_decode(s, 0, &got_len);
	assert_int_equal(got_len, want_len);
	assert_memory_equal(got, want, want_len);
	OPENSSL_free(want);
	free(got);
}

static json_t *jwk_of(X509 *cert, STACK_OF(X509) *chain, const char *alg, const char *use)
{
	struct cv_errmsg err = { { 0 } };
	json_t *jwk = NULL;
	int r = cv_jwk_from_cert(cert, chain, alg, use, &jwk, &err);

	if (r != 0)
		fail_msg("cv_jwk_from_cert: %d %s", r, err.text);
	assert_non_null(jwk);
	return jwk;
}

/* The call is refused with want, leaves *ret_jwk alone, and says why. */
static void assert_refused(X509 *cert, STACK_OF(X509) *chain, const char *alg, const char *use,
			   int want, const char *message_part)
{
	struct cv_errmsg err = { { 0 } };
	json_t *jwk = NULL;

	assert_int_equal(cv_jwk_from_cert(cert, chain, alg, use, &jwk, &err), want);
	assert_null(jwk);
	assert_true(err.text[0] != '\0');
	if (message_part != NULL && strstr(err.text, message_part) == NULL)
		fail_msg("message \"%s\" does not say \"%s\"", err.text, message_part);
}

/* RFC 7638 section 3.1: the RSA key of RFC 7517 appendix A.1 and its published thumbprint. */
static const char rfc7638_n[] =
	"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
	"JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
	"DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
	"vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
static const char rfc7638_kid[] = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

static void test_thumbprint_rfc7638_example(void **state)
{
	struct cv_errmsg err = { { 0 } };
	char kid[CV_JWK_KID_LEN + 1];
	json_t *jwk;

	(void)state;
	/* As printed in the RFC: members in another order, plus alg and kid that do not count. */
	jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "n", rfc7638_n, "e", "AQAB",
			"alg", "RS256", "kid", "2011-04-29");
	assert_non_null(jwk);
	assert_int_equal(cv_jwk_thumbprint(jwk, kid, &err), 0);
	assert_string_equal(kid, rfc7638_kid);
	assert_int_equal(strlen(kid), CV_JWK_KID_LEN);

	/* Non-required members, however many, leave it alone. */
	assert_int_equal(json_object_set_new(jwk, "use", json_string("enc")), 0);
	assert_int_equal(json_object_set_new(jwk, "x5c", json_pack("[s]", "MIIB")), 0);
	assert_int_equal(cv_jwk_thumbprint(jwk, kid, &err), 0);
	assert_string_equal(kid, rfc7638_kid);

	/* Any change to a required member changes it. */
	assert_int_equal(json_object_set_new(jwk, "e", json_string("AQAC")), 0);
	assert_int_equal(cv_jwk_thumbprint(jwk, kid, &err), 0);
	assert_string_not_equal(kid, rfc7638_kid);
	json_decref(jwk);
}

static void test_thumbprint_refusals(void **state)
{
	static const struct {
		const char *json;
		int want;
	} cases[] = {
		{ "{}", CV_ERR_BAD_REQUEST },
		{ "{\"kty\": 1, \"n\": \"AQAB\", \"e\": \"AQAB\"}", CV_ERR_BAD_REQUEST },
		{ "{\"kty\": \"RSA\", \"e\": \"AQAB\"}", CV_ERR_BAD_REQUEST },
		{ "{\"kty\": \"RSA\", \"n\": 7, \"e\": \"AQAB\"}", CV_ERR_BAD_REQUEST },
		{ "{\"kty\": \"RSA\", \"n\": \"\", \"e\": \"AQAB\"}", CV_ERR_BAD_REQUEST },
		{ "{\"kty\": \"RSA\", \"n\": \"AQAB==\", \"e\": \"AQAB\"}", CV_ERR_BAD_REQUEST },
		{ "{\"kty\": \"RSA\", \"n\": \"a+b/\", \"e\": \"AQAB\"}", CV_ERR_BAD_REQUEST },
		{ "{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"AQAB\"}", CV_ERR_BAD_REQUEST },
		{ "{\"kty\": \"OKP\", \"x\": \"AQAB\"}", CV_ERR_BAD_REQUEST },
		{ "{\"kty\": \"oct\", \"k\": \"AQAB\"}", CV_ERR_UNSUPPORTED_KEY },
		{ "{\"kty\": \"rsa\", \"n\": \"AQAB\", \"e\": \"AQAB\"}", CV_ERR_UNSUPPORTED_KEY },
	};
	char kid[CV_JWK_KID_LEN + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cv_errmsg err = { { 0 } };
		json_t *jwk = json_loads(cases[i].json, 0, NULL);

		assert_non_null(jwk);
		if (cv_jwk_thumbprint(jwk, kid, &err) != cases[i].want)
			fail_msg("%s: not refused with %d", cases[i].json, cases[i].want);
		assert_true(err.text[0] != '\0');
		json_decref(jwk);
	}
}

/* What each key type certvault holds becomes. */
static const struct key_case {
	int key;
	const char *kty, *crv, *alg, *enc_alg;
	size_t coord_len; /* EC x and y, OKP x; RSA: the modulus */
} key_cases[] = {
	{ K_RSA2048, "RSA", NULL, "RS256", "RSA-OAEP-256", 256 },
	{ K_P256, "EC", "P-256", "ES256", "ECDH-ES", 32 },
	{ K_P384, "EC", "P-384", "ES384", "ECDH-ES", 48 },
	{ K_P521, "EC", "P-521", "ES512", "ECDH-ES", 66 },
	{ K_ED25519, "OKP", "Ed25519", "EdDSA", NULL, 32 },
};

static void check_key_case(const struct key_case *kc)
{
	struct cv_errmsg err = { { 0 } };
	char kid[CV_JWK_KID_LEN + 1];
	unsigned char digest[SHA256_DIGEST_LENGTH], *bytes, *der, *x5t;
	const char *alg = NULL;
	size_t len, der_len;
	X509 *cert = make_cert(keys[kc->key]);
	json_t *jwk = jwk_of(cert, NULL, NULL, NULL), *from_key = NULL;
	EVP_PKEY *back;

	assert_string_equal(member(jwk, "kty"), kc->kty);
	assert_string_equal(member(jwk, "use"), "sig");
	assert_string_equal(member(jwk, "alg"), kc->alg);
	assert_int_equal(cv_jwk_alg_default(keys[kc->key], NULL, &alg, &err), 0);
	assert_string_equal(alg, kc->alg);
	if (kc->crv == NULL) {
		assert_null(json_object_get(jwk, "crv"));
		bytes = member_bytes(jwk, "n", &len);
		assert_int_equal(len, kc->coord_len);
		assert_true(bytes[0] != 0); /* no leading zero (RFC 7518 6.3.1.1) */
		free(bytes);
		assert_string_equal(member(jwk, "e"), "AQAB"); /* 65537 */
	} else {
		assert_string_equal(member(jwk, "crv"), kc->crv);
		bytes = member_bytes(jwk, "x", &len);
		assert_int_equal(len, kc->coord_len);
		free(bytes);
		if (strcmp(kc->kty, "EC") == 0) {
			bytes = member_bytes(jwk, "y", &len);
			assert_int_equal(len, kc->coord_len);
			free(bytes);
		} else {
			assert_null(json_object_get(jwk, "y"));
		}
	}

	/* kid is the thumbprint of what the JWK says. */
	assert_int_equal(cv_jwk_thumbprint(jwk, kid, &err), 0);
	assert_string_equal(member(jwk, "kid"), kid);
	assert_int_equal(strlen(kid), CV_JWK_KID_LEN);

	/* x5c holds the certificate alone; x5t#S256 is its SHA-256. */
	assert_int_equal(json_array_size(json_object_get(jwk, "x5c")), 1);
	assert_x5c_entry(jwk, 0, cert);
	der = cert_der(cert, &der_len);
	SHA256(der, der_len, digest);
	x5t = member_bytes(jwk, "x5t#S256", &len);
	assert_int_equal(len, sizeof(digest));
	assert_memory_equal(x5t, digest, sizeof(digest));
	free(x5t);
	OPENSSL_free(der);

	assert_no_private_member(jwk);

	/* The members alone give back the certificate's public key. */
	back = pkey_from_jwk(jwk);
	assert_int_equal(EVP_PKEY_eq(back, X509_get0_pubkey(cert)), 1);
	EVP_PKEY_free(back);

	/* Made from the private key itself: the same public JWK, nothing private in it. */
	assert_int_equal(cv_jwk_from_pkey(keys[kc->key], NULL, NULL, &from_key, &err), 0);
	assert_no_private_member(from_key);
	assert_string_equal(member(from_key, "kid"), kid);
	assert_null(json_object_get(from_key, "x5c"));
	assert_null(json_object_get(from_key, "x5t#S256"));
	json_decref(from_key);
	json_decref(jwk);

	/* The encryption default, where the key has one. */
	if (kc->enc_alg != NULL) {
		assert_int_equal(cv_jwk_alg_default(keys[kc->key], "enc", &alg, &err), 0);
		assert_string_equal(alg, kc->enc_alg);
		jwk = jwk_of(cert, NULL, NULL, "enc");
		assert_string_equal(member(jwk, "use"), "enc");
		assert_string_equal(member(jwk, "alg"), kc->enc_alg);
		{
			/* Another use of the key: its thumbprint, then .alg.use (a kid of its
			 * own, whose thumbprint part is still the key's). */
			char want[CV_JWK_KID_MAX + 1];

			snprintf(want, sizeof(want), "%s.%s.enc", kid, kc->enc_alg);
			assert_string_equal(member(jwk, "kid"), want);
			assert_true(strlen(want) <= CV_JWK_KID_MAX);
		}
		json_decref(jwk);
	} else {
		assert_int_equal(cv_jwk_alg_default(keys[kc->key], "enc", &alg, &err),
				 CV_ERR_BAD_REQUEST);
	}
	X509_free(cert);
}

static void test_each_key_type(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++)
		check_key_case(&key_cases[i]);
}

/* A coordinate whose first byte is zero still takes the curve's whole length: keys are made
 * until one has such a coordinate (1 in 128 for P-256, 1 in 2 for P-521). */
static void check_left_padding(const char *key_type, size_t coord_len)
{
	struct cv_errmsg err = { { 0 } };
	int tries, found = 0;

	for (tries = 0; tries < 4000 && !found; tries++) {
		EVP_PKEY *key = tc_key_new(key_type), *back;
		BIGNUM *x = NULL, *y = NULL;
		unsigned char *bytes;
		json_t *jwk = NULL;
		size_t len;

		assert_non_null(key);
		assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
		assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
		if ((size_t)BN_num_bytes(x) < coord_len || (size_t)BN_num_bytes(y) < coord_len) {
			found = 1;
			assert_int_equal(cv_jwk_from_pkey(key, NULL, NULL, &jwk, &err), 0);
			bytes = member_bytes(jwk, "x", &len);
			assert_int_equal(len, coord_len);
			free(bytes);
			bytes = member_bytes(jwk, "y", &len);
			assert_int_equal(len, coord_len);
			free(bytes);
			back = pkey_from_jwk(jwk);
			assert_int_equal(EVP_PKEY_eq(back, key), 1);
			EVP_PKEY_free(back);
			json_decref(jwk);
		}
		BN_free(x);
		BN_free(y);
		EVP_PKEY_free(key);
	}
	assert_true(found);
}

static void test_ec_coordinates_left_padded(void **state)
{
	(void)state;
	check_left_padding("p256", 32);
	check_left_padding("p521", 66);
}

static void test_alg_fits_the_key(void **state)
{
	static const struct {
		int key;
		const char *alg, *use;
	} fits[] = {
		{ K_RSA2048, "RS256", "sig" }, { K_RSA2048, "PS256", "sig" },
		{ K_RSA2048, "RS512", NULL },  { K_RSA2048, "PS384", "sig" },
		{ K_RSA2048, "RSA-OAEP-256", "enc" }, { K_RSA2048, "RSA-OAEP", "enc" },
		{ K_P256, "ES256", NULL },     { K_P384, "ES384", "sig" },
		{ K_P521, "ES512", "sig" },    { K_P256, "ECDH-ES", "enc" },
		{ K_P384, "ECDH-ES+A256KW", "enc" }, { K_ED25519, "EdDSA", "sig" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(fits) / sizeof(fits[0]); i++) {
		X509 *cert = make_cert(keys[fits[i].key]);
		json_t *jwk = jwk_of(cert, NULL, fits[i].alg, fits[i].use);

		assert_string_equal(member(jwk, "alg"), fits[i].alg);
		assert_string_equal(member(jwk, "use"), fits[i].use != NULL ? fits[i].use : "sig");
		json_decref(jwk);
		X509_free(cert);
	}
}

static void test_alg_mismatch_refused(void **state)
{
	static const struct {
		int key;
		const char *alg, *use, *says;
	} refused[] = {
		{ K_RSA2048, "ES256", NULL, "RS256" },
		{ K_RSA2048, "EdDSA", "sig", "PS256" },
		{ K_RSA2048, "rs256", NULL, "RS256" },      /* alg values are case-sensitive */
		{ K_RSA2048, "none", NULL, "RS256" },
		{ K_RSA2048, "HS256", NULL, "RS256" },
		{ K_RSA2048, "RSA1_5", "enc", "RSA-OAEP-256" },
		{ K_RSA2048, "", NULL, "RS256" },
		{ K_P256, "RS256", NULL, "ES256" },
		{ K_P256, "PS256", NULL, "ES256" },
		{ K_P256, "ES384", NULL, "ES256" },
		{ K_P256, "ES512", NULL, "ES256" },
		{ K_P384, "ES256", NULL, "ES384" },
		{ K_P521, "ES384", NULL, "ES512" },
		{ K_ED25519, "ES256", NULL, "EdDSA" },
		{ K_ED25519, "Ed25519", NULL, "EdDSA" },
		/* A signature algorithm is no encryption algorithm, and the other way round. */
		{ K_RSA2048, "RS256", "enc", "RSA-OAEP" },
		{ K_RSA2048, "PS256", "enc", "RSA-OAEP" },
		{ K_P256, "ES256", "enc", "ECDH-ES" },
		{ K_RSA2048, "RSA-OAEP", "sig", "RS256" },
		{ K_P256, "ECDH-ES", "sig", "ES256" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		X509 *cert = make_cert(keys[refused[i].key]);

		assert_refused(cert, NULL, refused[i].alg, refused[i].use, CV_ERR_BAD_REQUEST,
			       refused[i].says);
		X509_free(cert);
	}
}

static void test_use_refused(void **state)
{
	static const char *const bad[] = { "", "SIG", "Enc", "signature", "sig ", "both" };
	X509 *rsa = make_cert(keys[K_RSA2048]), *ed = make_cert(keys[K_ED25519]);
	const char *alg = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_refused(rsa, NULL, NULL, bad[i], CV_ERR_BAD_REQUEST, "\"use\"");
		assert_int_equal(cv_jwk_alg_default(keys[K_RSA2048], bad[i], &alg, NULL),
				 CV_ERR_BAD_REQUEST);
	}
	/* Ed25519 only signs (key agreement is X25519's, RFC 8037). */
	assert_refused(ed, NULL, NULL, "enc", CV_ERR_BAD_REQUEST, "Ed25519");
	assert_refused(ed, NULL, "EdDSA", "enc", CV_ERR_BAD_REQUEST, "Ed25519");
	X509_free(rsa);
	X509_free(ed);
}

static void test_unsupported_keys(void **state)
{
	static const int unsupported[] = { K_RSA1024, K_SECP256K1, K_ED448 };
	const char *alg = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
		X509 *cert = make_cert(keys[unsupported[i]]);

		assert_refused(cert, NULL, NULL, NULL, CV_ERR_UNSUPPORTED_KEY, NULL);
		assert_int_equal(cv_jwk_alg_default(keys[unsupported[i]], NULL, &alg, NULL),
				 CV_ERR_UNSUPPORTED_KEY);
		X509_free(cert);
	}
}

static void test_x5c_chain(void **state)
{
	X509 *root = make_cert_full(keys[K_P384], "Root CA", 1, NULL, NULL);
	X509 *inter = make_cert_full(keys[K_P256], "Intermediate CA", 1, root, keys[K_P384]);
	X509 *leaf = make_cert_full(keys[K_RSA2048], "api.example.com", 0, inter, keys[K_P256]);
	X509 *other = make_cert_full(keys[K_P521], "Other CA", 1, NULL, NULL);
	STACK_OF(X509) *chain = sk_X509_new_null(), *wrong = sk_X509_new_null();
	STACK_OF(X509) *lonely = sk_X509_new_null(), *longest = sk_X509_new_null();
	const char *s;
	json_t *jwk;
	size_t i;

	(void)state;
	assert_non_null(chain);
	assert_true(sk_X509_push(chain, inter) > 0 && sk_X509_push(chain, root) > 0);
	jwk = jwk_of(leaf, chain, NULL, NULL);
	assert_int_equal(json_array_size(json_object_get(jwk, "x5c")), 3);
	assert_x5c_entry(jwk, 0, leaf);
	assert_x5c_entry(jwk, 1, inter);
	assert_x5c_entry(jwk, 2, root);
	/* Standard base64 with padding: a long DER certainly holds '+' or '/', never '-' '_'. */
	for (i = 0; i < 3; i++) {
		s = json_string_value(json_array_get(json_object_get(jwk, "x5c"), i));
		assert_null(strpbrk(s, "-_\n"));
	}
	/* kid and x5t#S256 speak of the leaf only. */
	assert_string_equal(member(jwk, "alg"), "RS256");
	json_decref(jwk);

	/* An empty chain is the certificate alone. */
	jwk = jwk_of(leaf, lonely, NULL, NULL);
	assert_int_equal(json_array_size(json_object_get(jwk, "x5c")), 1);
	json_decref(jwk);

	/* Out of order, or not the issuer at all. */
	assert_true(sk_X509_push(wrong, root) > 0 && sk_X509_push(wrong, inter) > 0);
	assert_refused(leaf, wrong, NULL, NULL, CV_ERR_BAD_CHAIN, "issuance order");
	sk_X509_zero(wrong);
	assert_true(sk_X509_push(wrong, other) > 0);
	assert_refused(leaf, wrong, NULL, NULL, CV_ERR_BAD_CHAIN, "issuance order");
	sk_X509_zero(wrong);
	assert_true(sk_X509_push(wrong, inter) > 0 && sk_X509_push(wrong, other) > 0);
	assert_refused(leaf, wrong, NULL, NULL, CV_ERR_BAD_CHAIN, "certificate 2");

	/* No more than CV_X509_MAX_CHAIN entries. */
	for (i = 0; i < 17; i++)
		assert_true(sk_X509_push(longest, inter) > 0);
	assert_refused(leaf, longest, NULL, NULL, CV_ERR_BAD_CHAIN, NULL);

	sk_X509_free(chain);
	sk_X509_free(wrong);
	sk_X509_free(lonely);
	sk_X509_free(longest);
	X509_free(root);
	X509_free(inter);
	X509_free(leaf);
	X509_free(other);
}

static void test_key_usage_honoured(void **state)
{
	X509 *x;
	json_t *jwk;

	(void)state;
	x = make_cert_key_usage(keys[K_RSA2048], "critical,digitalSignature");
	jwk = jwk_of(x, NULL, "PS256", "sig");
	json_decref(jwk);
	assert_refused(x, NULL, NULL, "enc", CV_ERR_BAD_REQUEST, "keyEncipherment");
	X509_free(x);

	x = make_cert_key_usage(keys[K_RSA2048], "critical,keyEncipherment");
	assert_refused(x, NULL, NULL, "sig", CV_ERR_BAD_REQUEST, "digitalSignature");
	jwk = jwk_of(x, NULL, NULL, "enc");
	assert_string_equal(member(jwk, "alg"), "RSA-OAEP-256");
	json_decref(jwk);
	X509_free(x);

	x = make_cert_key_usage(keys[K_P256], "critical,digitalSignature,keyAgreement");
	json_decref(jwk_of(x, NULL, NULL, "sig"));
	json_decref(jwk_of(x, NULL, NULL, "enc"));
	X509_free(x);

	x = make_cert_key_usage(keys[K_P384], "critical,digitalSignature");
	assert_refused(x, NULL, NULL, "enc", CV_ERR_BAD_REQUEST, "keyAgreement");
	X509_free(x);

	x = make_cert_key_usage(keys[K_ED25519], "nonRepudiation");
	json_decref(jwk_of(x, NULL, NULL, NULL));
	X509_free(x);

	/* A CA certificate's key signs certificates, not JWSs. */
	x = make_cert_full(keys[K_P256], "Some CA", 1, NULL, NULL);
	assert_refused(x, NULL, NULL, NULL, CV_ERR_BAD_REQUEST, "digitalSignature");
	X509_free(x);
}

static void test_is_public(void **state)
{
	static const char *const private_jwks[] = {
		"{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\", \"d\": \"AQAB\"}",
		"{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\", \"p\": \"AQAB\"}",
		"{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\", \"q\": \"AQAB\"}",
		"{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\", \"dp\": \"AQAB\"}",
		"{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\", \"dq\": \"AQAB\"}",
		"{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\", \"qi\": \"AQAB\"}",
		"{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\", \"oth\": []}",
		"{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"AQAB\", \"y\": \"AQAB\", \"d\": null}",
		"{\"kty\": \"OKP\", \"crv\": \"Ed25519\", \"x\": \"AQAB\", \"d\": \"AQAB\"}",
		"{\"kty\": \"oct\", \"k\": \"AQAB\"}",
		"[]",
		"\"RSA\"",
	};
	json_t *jwk;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(private_jwks) / sizeof(private_jwks[0]); i++) {
		jwk = json_loads(private_jwks[i], JSON_DECODE_ANY, NULL);
		assert_non_null(jwk);
		if (cv_jwk_is_public(jwk))
			fail_msg("%s taken as public", private_jwks[i]);
		json_decref(jwk);
	}
	assert_int_equal(cv_jwk_is_public(NULL), 0);
	jwk = json_pack("{s:s, s:s, s:s}", "kty", "RSA", "n", rfc7638_n, "e", "AQAB");
	assert_int_equal(cv_jwk_is_public(jwk), 1);
	json_decref(jwk);
}

static void test_jwks_document(void **state)
{
	struct cv_errmsg err = { { 0 } };
	X509 *a = make_cert(keys[K_P256]), *b = make_cert(keys[K_ED25519]);
	json_t *jwks = json_array(), *doc = NULL, *keys_member, *bad;
	char *text;

	(void)state;
	assert_int_equal(json_array_append_new(jwks, jwk_of(a, NULL, NULL, NULL)), 0);
	assert_int_equal(json_array_append_new(jwks, jwk_of(b, NULL, NULL, NULL)), 0);
	assert_int_equal(cv_jwks_document(jwks, &doc, &err), 0);
	assert_int_equal(json_object_size(doc), 1);
	keys_member = json_object_get(doc, "keys");
	assert_int_equal(json_array_size(keys_member), 2);
	assert_true(json_equal(json_array_get(keys_member, 0), json_array_get(jwks, 0)));
	assert_true(json_equal(json_array_get(keys_member, 1), json_array_get(jwks, 1)));
	/* A copy: what the caller does to its JWKs afterwards does not reach the document. */
	json_array_clear(jwks);
	assert_int_equal(json_array_size(keys_member), 2);
	text = json_dumps(doc, JSON_COMPACT);
	assert_non_null(text);
	assert_null(strstr(text, "\"d\""));
	free(text);
	json_decref(doc);

	doc = NULL;
	assert_int_equal(cv_jwks_document(jwks, &doc, &err), 0);
	assert_int_equal(json_array_size(json_object_get(doc, "keys")), 0);
	json_decref(doc);

	/* A private member anywhere, or no array, makes no document. */
	doc = NULL;
	assert_int_equal(json_array_append_new(jwks, jwk_of(a, NULL, NULL, NULL)), 0);
	bad = jwk_of(b, NULL, NULL, NULL);
	assert_int_equal(json_object_set_new(bad, "d", json_string("AQAB")), 0);
	assert_int_equal(json_array_append_new(jwks, bad), 0);
	assert_int_equal(cv_jwks_document(jwks, &doc, &err), CV_ERR_INTERNAL);
	assert_null(doc);
	assert_int_equal(cv_jwks_document(json_object_get(bad, "kty"), &doc, &err),
			 CV_ERR_INTERNAL);
	assert_null(doc);

	json_decref(jwks);
	X509_free(a);
	X509_free(b);
}

/* Many threads at once, each on its own certificate, agree with one thread. */
struct work {
	X509 *cert;
	const char *kid;
	int failures;
};

static void *work(void *arg)
{
	struct work *w = arg;
	int i;

	for (i = 0; i < 200; i++) {
		struct cv_errmsg err;
		json_t *jwk = NULL;
		const char *kid;

		if (cv_jwk_from_cert(w->cert, NULL, NULL, NULL, &jwk, &err) != 0) {
			w->failures++;
			continue;
		}
		kid = json_string_value(json_object_get(jwk, "kid"));
		if (kid == NULL || strcmp(kid, w->kid) != 0 || !cv_jwk_is_public(jwk))
			w->failures++;
		json_decref(jwk);
	}
	return NULL;
}

static void test_threads(void **state)
{
	static const int kinds[] = { K_RSA2048, K_P256, K_P521, K_ED25519 };
	struct work w[4];
	pthread_t th[4];
	json_t *first[4];
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++) {
		w[i].cert = make_cert(keys[kinds[i]]);
		first[i] = jwk_of(w[i].cert, NULL, NULL, NULL);
		w[i].kid = member(first[i], "kid");
		w[i].failures = 0;
	}
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
		json_decref(first[i]);
		X509_free(w[i].cert);
	}
}

/* A JWS's signing input (issue 18 part 4): the vault's alg and kid first, the client's
 * members after, what would name another key or change the encoding refused. */
static void test_jws_signing_input(void **state)
{
	json_t *jwk = json_pack("{s:s, s:s}", "kty", "EC", "x5t#S256", "abc");
	json_t *header = json_pack("{s:s, s:s}", "typ", "JWT", "x5t#S256", "abc"), *bad;
	struct cv_errmsg err;
	char *input = NULL, *jws = NULL;
	size_t len = 0, jws_len = 0, i;
	static const char *const refused[] = {
		"{\"alg\":\"none\"}", "{\"kid\":\"other\"}", "{\"jwk\":{}}", "{\"jku\":\"https://x\"}",
		"{\"x5u\":\"https://x\"}", "{\"x5c\":[]}", "{\"b64\":false}", "{\"crit\":[\"b64\"]}",
		"{\"x5t#S256\":\"abd\"}", "{\"x5t\":\"abc\"}",
	};
	const unsigned char sig[3] = { 0xfb, 0xff, 0x00 };

	(void)state;
	assert_int_equal(cv_jws_signing_input(header, "ES256", "k1", jwk, "e30", 3, &input, &len,
					      &err), 0);
	/* {"alg":"ES256","kid":"k1","typ":"JWT","x5t#S256":"abc"} */
	assert_string_equal(input, "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIiwieDV0I1My"
				   "NTYiOiJhYmMifQ.e30");
	assert_int_equal(len, strlen(input));
	assert_int_equal(cv_jws_compact(input, len, sig, sizeof(sig), &jws, &jws_len), 0);
	assert_int_equal(jws_len, len + 1 + 4);
	assert_string_equal(jws + len, ".-_8A");
	free(jws);
	free(input);
	input = NULL;
	/* No header, an empty payload; alg and kid repeated with the vault's values. */
	assert_int_equal(cv_jws_signing_input(NULL, "RS256", "k", jwk, "", 0, &input, &len, &err),
			 0);
	assert_string_equal(input, "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.");
	free(input);
	input = NULL;
	bad = json_pack("{s:s, s:s}", "alg", "RS256", "kid", "k");
	assert_int_equal(cv_jws_signing_input(bad, "RS256", "k", jwk, "", 0, &input, &len, &err), 0);
	free(input);
	input = NULL;
	json_decref(bad);
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		bad = json_loads(refused[i], 0, NULL);
		assert_non_null(bad);
		if (cv_jws_signing_input(bad, "ES256", "k1", jwk, "e30", 3, &input, &len, &err) !=
		    CV_ERR_BAD_REQUEST)
			fail_msg("header %s was taken", refused[i]);
		assert_null(input);
		json_decref(bad);
	}
	/* The payload: base64url without padding, nothing else. */
	assert_int_equal(cv_jws_signing_input(NULL, "ES256", "k1", jwk, "e30=", 4, &input, &len,
					      &err), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_jws_signing_input(NULL, "ES256", "k1", jwk, "e3+0", 4, &input, &len,
					      &err), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_jws_signing_input(NULL, "ES256", "k1", jwk, "e", 1, &input, &len,
					      &err), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_jws_signing_input(NULL, "ES256", "k1", jwk, "e3\0", 3, &input, &len,
					      &err), CV_ERR_BAD_REQUEST);
	json_decref(header);
	json_decref(jwk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thumbprint_rfc7638_example),
		cmocka_unit_test(test_thumbprint_refusals),
		cmocka_unit_test(test_each_key_type),
		cmocka_unit_test(test_ec_coordinates_left_padded),
		cmocka_unit_test(test_alg_fits_the_key),
		cmocka_unit_test(test_alg_mismatch_refused),
		cmocka_unit_test(test_use_refused),
		cmocka_unit_test(test_unsupported_keys),
		cmocka_unit_test(test_x5c_chain),
		cmocka_unit_test(test_key_usage_honoured),
		cmocka_unit_test(test_is_public),
		cmocka_unit_test(test_jwks_document),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_jws_signing_input),
	};

	return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
