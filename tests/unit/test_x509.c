/* Unit tests for the x509 module: every encoding of certificates, chains and keys; the import
 * checks (key types, dates, weak signatures, key match, chain); the details; status and days. */
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/ecdsa.h>
#include <openssl/pkcs12.h>
#include <openssl/rsa.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "certvault/x509.h"
#include "testcert.h"

/* Every certificate is judged at this moment: 2026-01-01T00:00:00Z. */
#define NOW ((time_t)1767225600)
#define DAY 86400

enum {
	K_RSA2048, K_RSA3072, K_RSA4096, K_P256, K_P384, K_P521, K_ED25519,
	K_RSA2048B, K_P256B, K_ED25519B, K_RSA1024, K_SECP256K1, K_ED448, K__N
};

static const char *const key_types[K__N] = {
	"rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521", "ed25519",
	"rsa2048", "p256", "ed25519", "rsa1024", "secp256k1", "ed448",
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

static X509 *make_cert_full(EVP_PKEY *key, const char *cn, const char *sans, time_t nb,
			    time_t na, const char *md, int ca, X509 *issuer, EVP_PKEY *issuer_key)
{
	struct tc_cert_spec spec = { 0 };
	X509 *x;

	spec.cn = cn;
	spec.sans = sans;
	spec.not_before = nb;
	spec.not_after = na;
	spec.md = md;
	spec.is_ca = ca;
	spec.issuer = issuer;
	spec.issuer_key = issuer_key;
	x = tc_cert_new(key, &spec);
	assert_non_null(x);
	return x;
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *sans, time_t nb, time_t na)
{
	return make_cert_full(key, cn, sans, nb, na, NULL, 0, NULL, NULL);
}

static X509 *simple_cert(EVP_PKEY *key)
{
	return make_cert(key, "www.example.com", "www.example.com", NOW - DAY, NOW + 90 * DAY);
}

/* base64 of bytes; with wrap, a newline every 64 characters. */
static char *b64(const unsigned char *bytes, size_t len, int wrap)
{
	char *flat = malloc(4 * ((len + 2) / 3) + 1), *out;
	size_t n, i, j = 0;

	assert_non_null(flat);
	n = (size_t)EVP_EncodeBlock((unsigned char *)flat, bytes, (int)len);
	out = malloc(n + n / 64 + 2);
	assert_non_null(out);
	for (i = 0; i < n; i++) {
		out[j++] = flat[i];
		if (wrap && i % 64 == 63)
			out[j++] = '\n';
	}
	out[j] = '\0';
	free(flat);
	return out;
}

static char *b64s(const char *text)
{
	return b64((const unsigned char *)text, strlen(text), 1);
}

static unsigned char *cert_der(X509 *x, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);

	assert_true(n > 0);
	*len = (size_t)n;
	return der;
}

/* DER of a key: "pkcs8", "trad" (PKCS#1 / SEC1), or "pkcs8enc" with password. */
static unsigned char *key_der(EVP_PKEY *key, const char *form, const char *password,
			      size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	unsigned char *out;
	char *data;
	long n;
	int ok;

	assert_non_null(bio);
	if (strcmp(form, "pkcs8") == 0)
		ok = i2d_PKCS8PrivateKey_bio(bio, key, NULL, NULL, 0, NULL, NULL);
	else if (strcmp(form, "pkcs8enc") == 0)
		ok = i2d_PKCS8PrivateKey_bio(bio, key, EVP_aes_256_cbc(), NULL, 0, NULL,
					     (void *)password);
	else
		ok = i2d_PrivateKey_bio(bio, key);
	assert_int_equal(ok, 1);
	n = BIO_get_mem_data(bio, &data);
	assert_true(n > 0);
	out = malloc((size_t)n);
	assert_non_null(out);
	memcpy(out, data, (size_t)n);
	*len = (size_t)n;
	BIO_free(bio);
	return out;
}

static char *concat(const char *a, const char *b, const char *c)
{
	size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
	char *s = malloc(n);

	assert_non_null(s);
	snprintf(s, n, "%s%s%s", a, b, c);
	return s;
}

static void assert_same_cert(X509 *a, X509 *b)
{
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(X509_cmp(a, b), 0);
}

static int parse_cert(const char *text, enum cv_encoding enc, X509 **ret, struct cv_errmsg *err)
{
	memset(err, 0, sizeof(*err));
	*ret = NULL;
	return cv_x509_cert_parse(text, strlen(text), enc, ret, err);
}

static int parse_key(const char *text, enum cv_encoding enc, const char *pw, EVP_PKEY **ret,
		     struct cv_errmsg *err)
{
	memset(err, 0, sizeof(*err));
	*ret = NULL;
	return cv_x509_key_parse(text, strlen(text), enc, pw, ret, err);
}

static int parse_chain(const char *text, enum cv_encoding enc, STACK_OF(X509) **ret,
		       struct cv_errmsg *err)
{
	memset(err, 0, sizeof(*err));
	*ret = NULL;
	return cv_x509_chain_parse(text, text != NULL ? strlen(text) : 0, enc, ret, err);
}

static int check(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain, time_t now, int weak_ok,
		 struct cv_errmsg *err)
{
	struct cv_x509_policy policy = { now, weak_ok, 0 };

	memset(err, 0, sizeof(*err));
	return cv_x509_check_import(cert, key, chain, &policy, err);
}

/* ---- encodings ---- */

static void test_encoding_names(void **state)
{
	enum cv_encoding e = CV_ENC_BASE64;

	(void)state;
	assert_int_equal(cv_x509_encoding_parse(NULL, &e), 0);
	assert_int_equal(e, CV_ENC_PEM);
	assert_int_equal(cv_x509_encoding_parse("base64", &e), 0);
	assert_int_equal(e, CV_ENC_BASE64);
	assert_int_equal(cv_x509_encoding_parse("base64pem", &e), 0);
	assert_int_equal(e, CV_ENC_BASE64PEM);
	assert_int_equal(cv_x509_encoding_parse("pem", &e), 0);
	assert_int_equal(e, CV_ENC_PEM);
	assert_int_equal(cv_x509_encoding_parse("BASE64PEM", &e), 0);
	assert_int_equal(e, CV_ENC_BASE64PEM);
	assert_int_equal(cv_x509_encoding_parse("hex", &e), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_x509_encoding_parse("", &e), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_x509_encoding_parse("base64 ", &e), CV_ERR_BAD_REQUEST);
}

/* ---- certificates ---- */

static void test_cert_parse_every_encoding(void **state)
{
	X509 *orig = simple_cert(keys[K_P256]), *x;
	char *pem = tc_cert_pem(orig), *text, *crlf, *b;
	unsigned char *der;
	size_t der_len, i, j;
	struct cv_errmsg err;

	(void)state;
	assert_int_equal(parse_cert(pem, CV_ENC_PEM, &x, &err), 0);
	assert_same_cert(orig, x);
	X509_free(x);
	/* text around the block, as `openssl x509 -text` prints it */
	text = concat("subject=CN = www.example.com\nissuer=CN = www.example.com\n\n", pem,
		      "\nsome trailing words\n");
	assert_int_equal(parse_cert(text, CV_ENC_PEM, &x, &err), 0);
	assert_same_cert(orig, x);
	X509_free(x);
	free(text);
	/* Windows line ends */
	crlf = malloc(2 * strlen(pem) + 1);
	assert_non_null(crlf);
	for (i = 0, j = 0; pem[i] != '\0'; i++) {
		if (pem[i] == '\n')
			crlf[j++] = '\r';
		crlf[j++] = pem[i];
	}
	crlf[j] = '\0';
	assert_int_equal(parse_cert(crlf, CV_ENC_PEM, &x, &err), 0);
	assert_same_cert(orig, x);
	X509_free(x);
	free(crlf);
	/* base64 of DER, on one line and wrapped */
	der = cert_der(orig, &der_len);
	for (i = 0; i < 2; i++) {
		b = b64(der, der_len, (int)i);
		assert_int_equal(parse_cert(b, CV_ENC_BASE64, &x, &err), 0);
		assert_same_cert(orig, x);
		X509_free(x);
		free(b);
	}
	/* base64 of PEM */
	b = b64s(pem);
	assert_int_equal(parse_cert(b, CV_ENC_BASE64PEM, &x, &err), 0);
	assert_same_cert(orig, x);
	X509_free(x);
	/* the wrong encoding for the text is refused, not guessed */
	assert_int_equal(parse_cert(b, CV_ENC_PEM, &x, &err), CV_ERR_BAD_ENCODING);
	assert_null(x);
	assert_int_equal(parse_cert(pem, CV_ENC_BASE64, &x, &err), CV_ERR_BAD_ENCODING);
	free(b);
	OPENSSL_free(der);
	free(pem);
	X509_free(orig);
}

static void test_cert_parse_refusals(void **state)
{
	X509 *orig = simple_cert(keys[K_P256]), *other = simple_cert(keys[K_P384]), *x;
	char *pem = tc_cert_pem(orig), *pem2 = tc_cert_pem(other), *two, *cut, *b;
	char *keypem = tc_key_pem(keys[K_P256], "pkcs8", NULL);
	unsigned char *der, *der2;
	size_t der_len;
	struct cv_errmsg err;
	static const char *const pem_bad[] = {
		"",
		"   \n\t\r\n",
		"hello",
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
		"-----BEGIN CERTIFICATE-----\nMIIB\n",
		"-----END CERTIFICATE-----\n",
	};
	static const char *const b64_bad[] = {
		"", "!!!!", "TUlJ", "TUlJQg", "TUlJQg=", "TUlJQg===", "TU=lJQg==", "TUlJ-_==",
		"TUlJQg==TUlJ", "AAAA",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(pem_bad) / sizeof(pem_bad[0]); i++) {
		assert_int_equal(parse_cert(pem_bad[i], CV_ENC_PEM, &x, &err),
				 CV_ERR_BAD_ENCODING);
		assert_null(x);
		assert_true(strlen(err.text) > 10);
	}
	for (i = 0; i < sizeof(b64_bad) / sizeof(b64_bad[0]); i++) {
		assert_int_equal(parse_cert(b64_bad[i], CV_ENC_BASE64, &x, &err),
				 CV_ERR_BAD_ENCODING);
		assert_int_equal(parse_cert(b64_bad[i], CV_ENC_BASE64PEM, &x, &err),
				 CV_ERR_BAD_ENCODING);
		assert_null(x);
	}
	assert_int_equal(parse_cert("!!!!", CV_ENC_BASE64, &x, &err), CV_ERR_BAD_ENCODING);
	assert_string_equal(err.text, "the certificate is not valid base64");
	assert_int_equal(parse_cert("hello", CV_ENC_PEM, &x, &err), CV_ERR_BAD_ENCODING);
	assert_non_null(strstr(err.text, "no certificate found"));
	/* two certificates where one is expected */
	two = concat(pem, pem2, "");
	assert_int_equal(parse_cert(two, CV_ENC_PEM, &x, &err), CV_ERR_BAD_ENCODING);
	assert_non_null(strstr(err.text, "more than one certificate"));
	free(two);
	/* a PEM cut in the middle */
	cut = strdup(pem);
	assert_non_null(cut);
	cut[strlen(cut) / 2] = '\0';
	assert_int_equal(parse_cert(cut, CV_ENC_PEM, &x, &err), CV_ERR_BAD_ENCODING);
	free(cut);
	/* a private key pasted as the certificate */
	assert_int_equal(parse_cert(keypem, CV_ENC_PEM, &x, &err), CV_ERR_BAD_ENCODING);
	assert_non_null(strstr(err.text, "PRIVATE KEY"));
	/* truncated DER, and DER with a byte after it */
	der = cert_der(orig, &der_len);
	b = b64(der, der_len - 1, 0);
	assert_int_equal(parse_cert(b, CV_ENC_BASE64, &x, &err), CV_ERR_BAD_ENCODING);
	free(b);
	der2 = malloc(der_len + 1);
	assert_non_null(der2);
	memcpy(der2, der, der_len);
	der2[der_len] = 0;
	b = b64(der2, der_len + 1, 0);
	assert_int_equal(parse_cert(b, CV_ENC_BASE64, &x, &err), CV_ERR_BAD_ENCODING);
	free(b);
	/* explicit length: only the first half of the text is read */
	assert_int_equal(cv_x509_cert_parse(pem, strlen(pem) / 2, CV_ENC_PEM, &x, &err),
			 CV_ERR_BAD_ENCODING);
	/* no error is left behind in the OpenSSL queue */
	assert_int_equal(ERR_peek_error(), 0);
	free(der2);
	OPENSSL_free(der);
	free(keypem);
	free(pem);
	free(pem2);
	X509_free(orig);
	X509_free(other);
}

/* ---- chains ---- */

static void test_chain_parse(void **state)
{
	X509 *root = make_cert_full(keys[K_P384], "Root", NULL, NOW - DAY, NOW + 900 * DAY, NULL,
				    1, NULL, NULL);
	X509 *inter = make_cert_full(keys[K_P256], "Inter", NULL, NOW - DAY, NOW + 800 * DAY,
				     NULL, 1, root, keys[K_P384]);
	X509 *inter2 = make_cert_full(keys[K_RSA2048], "Inter 2", NULL, NOW - DAY,
				      NOW + 700 * DAY, NULL, 1, inter, keys[K_P256]);
	char *p_root = tc_cert_pem(root), *p_inter = tc_cert_pem(inter);
	char *p_inter2 = tc_cert_pem(inter2), *three, *with_junk, *b, *many = NULL;
	STACK_OF(X509) *chain;
	unsigned char *der;
	size_t der_len, len, i;
	struct cv_errmsg err;

	(void)state;
	/* empty */
	assert_int_equal(parse_chain("", CV_ENC_PEM, &chain, &err), 0);
	assert_non_null(chain);
	assert_int_equal(sk_X509_num(chain), 0);
	sk_X509_pop_free(chain, X509_free);
	assert_int_equal(parse_chain(NULL, CV_ENC_PEM, &chain, &err), 0);
	assert_int_equal(sk_X509_num(chain), 0);
	sk_X509_pop_free(chain, X509_free);
	assert_int_equal(parse_chain(" \n", CV_ENC_BASE64, &chain, &err), 0);
	assert_int_equal(sk_X509_num(chain), 0);
	sk_X509_pop_free(chain, X509_free);
	/* one */
	assert_int_equal(parse_chain(p_inter, CV_ENC_PEM, &chain, &err), 0);
	assert_int_equal(sk_X509_num(chain), 1);
	assert_same_cert(sk_X509_value(chain, 0), inter);
	sk_X509_pop_free(chain, X509_free);
	/* three, in order, with text between them */
	three = concat(p_inter2, p_inter, p_root);
	with_junk = concat("Bag Attributes\n", three, "\n-- end --\n");
	assert_int_equal(parse_chain(with_junk, CV_ENC_PEM, &chain, &err), 0);
	assert_int_equal(sk_X509_num(chain), 3);
	assert_same_cert(sk_X509_value(chain, 0), inter2);
	assert_same_cert(sk_X509_value(chain, 1), inter);
	assert_same_cert(sk_X509_value(chain, 2), root);
	sk_X509_pop_free(chain, X509_free);
	/* base64 of a PEM bundle */
	b = b64s(three);
	assert_int_equal(parse_chain(b, CV_ENC_BASE64PEM, &chain, &err), 0);
	assert_int_equal(sk_X509_num(chain), 3);
	assert_same_cert(sk_X509_value(chain, 2), root);
	sk_X509_pop_free(chain, X509_free);
	free(b);
	/* base64 of one DER certificate */
	der = cert_der(inter, &der_len);
	b = b64(der, der_len, 1);
	assert_int_equal(parse_chain(b, CV_ENC_BASE64, &chain, &err), 0);
	assert_int_equal(sk_X509_num(chain), 1);
	assert_same_cert(sk_X509_value(chain, 0), inter);
	sk_X509_pop_free(chain, X509_free);
	free(b);
	OPENSSL_free(der);
	/* 16 taken, 17 refused */
	len = strlen(p_inter);
	for (i = 1; i <= CV_X509_MAX_CHAIN + 1; i++) {
		char *grown = realloc(many, i * len + 1);

		assert_non_null(grown);
		many = grown;
		memcpy(many + (i - 1) * len, p_inter, len + 1);
		if (i == CV_X509_MAX_CHAIN) {
			assert_int_equal(parse_chain(many, CV_ENC_PEM, &chain, &err), 0);
			assert_int_equal(sk_X509_num(chain), CV_X509_MAX_CHAIN);
			sk_X509_pop_free(chain, X509_free);
		}
	}
	assert_int_equal(parse_chain(many, CV_ENC_PEM, &chain, &err), CV_ERR_BAD_CHAIN);
	assert_null(chain);
	assert_non_null(strstr(err.text, "more than 16"));
	/* garbage */
	assert_int_equal(parse_chain("not a chain", CV_ENC_PEM, &chain, &err),
			 CV_ERR_BAD_ENCODING);
	assert_null(chain);
	assert_int_equal(parse_chain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE"
				     "-----\n", CV_ENC_PEM, &chain, &err), CV_ERR_BAD_ENCODING);
	assert_int_equal(parse_chain("%%%%", CV_ENC_BASE64, &chain, &err), CV_ERR_BAD_ENCODING);
	assert_int_equal(ERR_peek_error(), 0);
	free(many);
	free(three);
	free(with_junk);
	free(p_root);
	free(p_inter);
	free(p_inter2);
	X509_free(root);
	X509_free(inter);
	X509_free(inter2);
}

/* ---- keys ---- */

static void assert_key_parses(const char *text, enum cv_encoding enc, const char *pw,
			      EVP_PKEY *want)
{
	struct cv_errmsg err;
	EVP_PKEY *pk;
	int r = parse_key(text, enc, pw, &pk, &err);

	if (r != 0)
		fail_msg("key did not parse (%d): %s", r, err.text);
	assert_non_null(pk);
	assert_int_equal(EVP_PKEY_eq(pk, want), 1);
	EVP_PKEY_free(pk);
}

static void assert_der_key_parses(EVP_PKEY *key, const char *form, const char *pw)
{
	size_t len;
	unsigned char *der = key_der(key, form, pw, &len);
	char *b = b64(der, len, 1);

	assert_key_parses(b, CV_ENC_BASE64, pw, key);
	free(b);
	free(der);
}

static void test_key_parse_every_format(void **state)
{
	static const int kinds[] = { K_RSA2048, K_P256, K_P384, K_P521, K_ED25519, K_ED448 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		EVP_PKEY *key = keys[kinds[i]];
		char *pkcs8 = tc_key_pem(key, "pkcs8", NULL);
		char *enc = tc_key_pem(key, "pkcs8enc", "s3cret pw");
		char *b;

		assert_non_null(strstr(pkcs8, "-----BEGIN PRIVATE KEY-----"));
		assert_key_parses(pkcs8, CV_ENC_PEM, NULL, key);
		assert_key_parses(pkcs8, CV_ENC_PEM, "ignored", key);
		assert_non_null(strstr(enc, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
		assert_key_parses(enc, CV_ENC_PEM, "s3cret pw", key);
		b = b64s(pkcs8);
		assert_key_parses(b, CV_ENC_BASE64PEM, NULL, key);
		free(b);
		b = b64s(enc);
		assert_key_parses(b, CV_ENC_BASE64PEM, "s3cret pw", key);
		free(b);
		assert_der_key_parses(key, "pkcs8", NULL);
		assert_der_key_parses(key, "pkcs8enc", "s3cret pw");
		if (EVP_PKEY_is_a(key, "RSA") || EVP_PKEY_is_a(key, "EC")) {
			char *trad = tc_key_pem(key, EVP_PKEY_is_a(key, "RSA") ? "pkcs1" : "sec1",
						NULL);

			assert_non_null(strstr(trad, EVP_PKEY_is_a(key, "RSA")
							     ? "-----BEGIN RSA PRIVATE KEY-----"
							     : "-----BEGIN EC PRIVATE KEY-----"));
			assert_key_parses(trad, CV_ENC_PEM, NULL, key);
			free(trad);
			assert_der_key_parses(key, "trad", NULL);
		}
		free(pkcs8);
		free(enc);
	}
}

static void test_key_parse_text_around(void **state)
{
	char *sec1 = tc_key_pem(keys[K_P256], "sec1", NULL);
	char *cert = NULL, *text, *text2;
	X509 *x = simple_cert(keys[K_P256]);

	(void)state;
	/* as `openssl ecparam -genkey` writes it: EC PARAMETERS first */
	text = concat("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS"
		      "-----\n", sec1, "trailing\n");
	assert_key_parses(text, CV_ENC_PEM, NULL, keys[K_P256]);
	/* a certificate next to the key is skipped */
	cert = tc_cert_pem(x);
	text2 = concat(cert, "\n", text);
	assert_key_parses(text2, CV_ENC_PEM, NULL, keys[K_P256]);
	free(text);
	free(text2);
	free(cert);
	free(sec1);
	X509_free(x);
}

/* Rewrites the scrypt parameters of a PBES2 algorithm in place: N, r and p as a file may
 * name them, beyond what PKCS5_pbe2_set_scrypt agrees to make. */
static void scrypt_params_set(X509_ALGOR *alg, uint64_t n, uint64_t r, uint64_t p)
{
	PBE2PARAM *pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter);
	SCRYPT_PARAMS *sp;

	assert_non_null(pbe2);
	sp = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(SCRYPT_PARAMS), pbe2->keyfunc->parameter);
	assert_non_null(sp);
	assert_int_equal(ASN1_INTEGER_set_uint64(sp->costParameter, n), 1);
	assert_int_equal(ASN1_INTEGER_set_uint64(sp->blockSize, r), 1);
	assert_int_equal(ASN1_INTEGER_set_uint64(sp->parallelizationParameter, p), 1);
	ASN1_TYPE_free(pbe2->keyfunc->parameter);
	pbe2->keyfunc->parameter = NULL;
	assert_non_null(ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(SCRYPT_PARAMS), sp,
						&pbe2->keyfunc->parameter));
	ASN1_TYPE_free(alg->parameter);
	alg->parameter = NULL;
	assert_non_null(ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(PBE2PARAM), pbe2, &alg->parameter));
	SCRYPT_PARAMS_free(sp);
	PBE2PARAM_free(pbe2);
}

/* An encrypted PKCS#8 key (PEM) under alg whose ciphertext is 48 bytes of nothing: enough
 * for a parser that judges the parameters first, undecryptable by one that does not. */
static char *pkcs8_enc_pem(X509_ALGOR *alg)
{
	static const unsigned char junk[48] = { 1, 2, 3 };
	X509_SIG *sig = X509_SIG_new();
	X509_ALGOR *a;
	ASN1_OCTET_STRING *digest;
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *pem;
	long n;

	assert_non_null(sig);
	assert_non_null(bio);
	X509_SIG_getm(sig, &a, &digest);
	assert_int_equal(X509_ALGOR_set0(a, OBJ_dup(alg->algorithm), V_ASN1_SEQUENCE,
					 ASN1_STRING_dup(alg->parameter->value.sequence)), 1);
	assert_int_equal(ASN1_OCTET_STRING_set(digest, junk, sizeof(junk)), 1);
	assert_int_equal(PEM_write_bio_PKCS8(bio, sig), 1);
	n = BIO_get_mem_data(bio, &data);
	pem = strndup(data, (size_t)n);
	assert_non_null(pem);
	BIO_free(bio);
	X509_SIG_free(sig);
	return pem;
}

static void assert_kdf_cost(X509_ALGOR *alg, int code, long cost, const char *message)
{
	struct cv_errmsg err = { "" };
	long got = -1;

	assert_non_null(alg);
	assert_int_equal(cv_x509_kdf_cost(alg, "the key", &got, &err), code);
	if (code == 0)
		assert_int_equal(got, cost);
	else
		assert_non_null(strstr(err.text, message));
	X509_ALGOR_free(alg);
}

/* The cost of a key derivation is read from its parameters: PBKDF2's iterations times its
 * blocks, scrypt's N * r * p and memory, PKCS#12's iterations times key and IV blocks; a key
 * over the limit is refused before any of it runs, whatever the password. */
static void test_kdf_cost(void **state)
{
	struct cv_errmsg err;
	X509_ALGOR *alg;
	EVP_PKEY *pk;
	char *pem;
	struct timespec t0, t1;

	(void)state;
	/* PBKDF2-HMAC-SHA256 into an AES-256 key: one block an iteration. */
	assert_kdf_cost(PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), 3000000, NULL, 0, NULL,
					  NID_hmacWithSHA256), 0, 3000000, NULL);
	assert_kdf_cost(PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), 3000001, NULL, 0, NULL,
					  NID_hmacWithSHA256), CV_ERR_LIMIT, 0,
			"PBKDF2 at a cost of 3000001 rounds; certvault takes at most 3000000");
	/* HMAC-SHA1 gives 20 bytes a block: an AES-256 key takes two runs, AES-128 one. */
	assert_kdf_cost(PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), 1500000, NULL, 0, NULL,
					  NID_hmacWithSHA1), 0, 3000000, NULL);
	assert_kdf_cost(PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), 1600000, NULL, 0, NULL,
					  NID_hmacWithSHA1), CV_ERR_LIMIT, 0, "3200000 rounds");
	assert_kdf_cost(PKCS5_pbe2_set_iv(EVP_aes_128_cbc(), 2048, NULL, 0, NULL,
					  NID_hmacWithSHA1), 0, 2048, NULL);
	/* The largest count ASN.1 can carry saturates instead of wrapping. */
	assert_kdf_cost(PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), INT_MAX, NULL, 0, NULL,
					  NID_hmacWithSHA512), CV_ERR_LIMIT, 0, "2147483647 rounds");
	/* scrypt: OpenSSL's interactive default, a parallelism over the limit, memory. */
	assert_kdf_cost(PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), NULL, 0, NULL, 16384, 8, 1), 0,
			131072, NULL);
	alg = PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), NULL, 0, NULL, 16384, 8, 1);
	assert_non_null(alg);
	scrypt_params_set(alg, 16384, 8, 1000);
	assert_kdf_cost(alg, CV_ERR_LIMIT, 0, "scrypt at a cost of 131072000 rounds");
	alg = PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), NULL, 0, NULL, 16384, 8, 1);
	assert_non_null(alg);
	scrypt_params_set(alg, (uint64_t)1 << 20, 8, 1);
	assert_kdf_cost(alg, CV_ERR_LIMIT, 0, "more than 32 MiB");
	alg = PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), NULL, 0, NULL, 16384, 8, 1);
	assert_non_null(alg);
	scrypt_params_set(alg, UINT64_MAX, UINT64_MAX, UINT64_MAX);
	assert_kdf_cost(alg, CV_ERR_LIMIT, 0, "MiB");
	/* PKCS#12's own: 3DES takes two SHA-1 blocks of key and one of IV. */
	assert_kdf_cost(PKCS5_pbe_set(NID_pbe_WithSHA1And3_Key_TripleDES_CBC, 2048, NULL, 0), 0,
			3 * 2048, NULL);
	assert_kdf_cost(PKCS5_pbe_set(NID_pbe_WithSHA1And3_Key_TripleDES_CBC, 1000001, NULL, 0),
			CV_ERR_LIMIT, 0, "PKCS#12 key derivation");

	/* An encrypted key naming 2^31 - 1 iterations (eleven minutes of one core) is refused
	 * at once, with a password, a wrong one or none; the clock would tell otherwise. */
	alg = PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), INT_MAX, NULL, 0, NULL, NID_hmacWithSHA256);
	assert_non_null(alg);
	pem = pkcs8_enc_pem(alg);
	X509_ALGOR_free(alg);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(parse_key(pem, CV_ENC_PEM, "any password", &pk, &err), CV_ERR_LIMIT);
	assert_null(pk);
	assert_non_null(strstr(err.text, "the encrypted key derives its key with PBKDF2"));
	assert_int_equal(parse_key(pem, CV_ENC_PEM, NULL, &pk, &err), CV_ERR_LIMIT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 30);
	free(pem);
	/* A key under scrypt within the limit reads as any other. */
	{
		BIO *bio = BIO_new(BIO_s_mem());
		char *data = NULL;
		long n;

		assert_non_null(bio);
		alg = PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), NULL, 0, NULL, 1024, 8, 1);
		assert_non_null(alg);
		{
			PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(keys[K_P256]);
			X509_SIG *sig = PKCS8_set0_pbe("scrypt pw", -1, p8, alg);

			assert_non_null(sig);
			assert_int_equal(PEM_write_bio_PKCS8(bio, sig), 1);
			X509_SIG_free(sig);
			PKCS8_PRIV_KEY_INFO_free(p8);
		}
		n = BIO_get_mem_data(bio, &data);
		pem = strndup(data, (size_t)n);
		BIO_free(bio);
		assert_key_parses(pem, CV_ENC_PEM, "scrypt pw", keys[K_P256]);
		assert_int_equal(parse_key(pem, CV_ENC_PEM, "wrong", &pk, &err),
				 CV_ERR_BAD_PASSWORD);
		free(pem);
	}
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_key_parse_passwords(void **state)
{
	EVP_PKEY *key = keys[K_P256], *pk;
	char *enc = tc_key_pem(key, "pkcs8enc", "correct horse"), *b, *legacy;
	unsigned char *der;
	size_t len;
	struct cv_errmsg err;
	BIO *bio;

	(void)state;
	assert_int_equal(parse_key(enc, CV_ENC_PEM, "wrong horse", &pk, &err),
			 CV_ERR_BAD_PASSWORD);
	assert_null(pk);
	assert_string_equal(err.text, "incorrect password for the encrypted key");
	/* whatever the password, the message does not repeat it */
	assert_int_equal(parse_key(enc, CV_ENC_PEM, "wrong", &pk, &err), CV_ERR_BAD_PASSWORD);
	assert_null(strstr(err.text, "wrong"));
	assert_int_equal(parse_key(enc, CV_ENC_PEM, NULL, &pk, &err), CV_ERR_BAD_PASSWORD);
	assert_string_equal(err.text, "the key is encrypted: a password is needed");
	assert_int_equal(parse_key(enc, CV_ENC_PEM, "", &pk, &err), CV_ERR_BAD_PASSWORD);
	assert_null(strstr(err.text, "horse"));
	assert_key_parses(enc, CV_ENC_PEM, "correct horse", key);
	/* DER */
	der = key_der(key, "pkcs8enc", "correct horse", &len);
	b = b64(der, len, 0);
	assert_int_equal(parse_key(b, CV_ENC_BASE64, "Correct horse", &pk, &err),
			 CV_ERR_BAD_PASSWORD);
	assert_null(strstr(err.text, "orse"));
	assert_int_equal(parse_key(b, CV_ENC_BASE64, NULL, &pk, &err), CV_ERR_BAD_PASSWORD);
	assert_key_parses(b, CV_ENC_BASE64, "correct horse", key);
	free(b);
	free(der);
	/* traditional PEM with Proc-Type: 4,ENCRYPTED */
	bio = BIO_new(BIO_s_mem());
	assert_non_null(bio);
	assert_int_equal(PEM_write_bio_PrivateKey_traditional(bio, keys[K_RSA2048],
							      EVP_aes_128_cbc(), NULL, 0, NULL,
							      (void *)"legacy pw"), 1);
	assert_true(BIO_get_mem_data(bio, &b) > 0);
	legacy = strndup(b, (size_t)BIO_get_mem_data(bio, &b));
	BIO_free(bio);
	assert_non_null(strstr(legacy, "Proc-Type: 4,ENCRYPTED"));
	assert_key_parses(legacy, CV_ENC_PEM, "legacy pw", keys[K_RSA2048]);
	assert_int_equal(parse_key(legacy, CV_ENC_PEM, "legacy pX", &pk, &err),
			 CV_ERR_BAD_PASSWORD);
	assert_int_equal(parse_key(legacy, CV_ENC_PEM, NULL, &pk, &err), CV_ERR_BAD_PASSWORD);
	assert_int_equal(ERR_peek_error(), 0);
	free(legacy);
	free(enc);
}

static void test_key_parse_refusals(void **state)
{
	char *pem = tc_key_pem(keys[K_P256], "pkcs8", NULL);
	char *pem2 = tc_key_pem(keys[K_P384], "pkcs8", NULL), *two, *cut, *b;
	X509 *x = simple_cert(keys[K_P256]);
	char *certpem = tc_cert_pem(x);
	unsigned char *der;
	size_t len;
	struct cv_errmsg err;
	EVP_PKEY *pk;
	static const char *const bad[] = {
		"",
		"\n\n",
		"not a key",
		"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		"-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n",
		"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
		"-----END ENCRYPTED PRIVATE KEY-----\n",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
		"-----BEGIN PRIVATE KEY-----\nMIIB\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse_key(bad[i], CV_ENC_PEM, "pw", &pk, &err),
				 CV_ERR_BAD_ENCODING);
		assert_null(pk);
		assert_true(strlen(err.text) > 10);
	}
	assert_int_equal(parse_key("not a key", CV_ENC_PEM, NULL, &pk, &err),
			 CV_ERR_BAD_ENCODING);
	assert_non_null(strstr(err.text, "no private key found"));
	/* a certificate alone is no key */
	assert_int_equal(parse_key(certpem, CV_ENC_PEM, NULL, &pk, &err), CV_ERR_BAD_ENCODING);
	/* two keys */
	two = concat(pem, "", pem2);
	assert_int_equal(parse_key(two, CV_ENC_PEM, NULL, &pk, &err), CV_ERR_BAD_ENCODING);
	assert_non_null(strstr(err.text, "more than one key"));
	free(two);
	cut = strdup(pem);
	assert_non_null(cut);
	cut[strlen(cut) - 30] = '\0';
	assert_int_equal(parse_key(cut, CV_ENC_PEM, NULL, &pk, &err), CV_ERR_BAD_ENCODING);
	free(cut);
	/* base64: garbage, a truncated DER key, a certificate */
	assert_int_equal(parse_key("!!", CV_ENC_BASE64, NULL, &pk, &err), CV_ERR_BAD_ENCODING);
	assert_int_equal(parse_key("", CV_ENC_BASE64, NULL, &pk, &err), CV_ERR_BAD_ENCODING);
	der = key_der(keys[K_P256], "pkcs8", NULL, &len);
	b = b64(der, len - 3, 0);
	assert_int_equal(parse_key(b, CV_ENC_BASE64, NULL, &pk, &err), CV_ERR_BAD_ENCODING);
	assert_null(pk);
	free(b);
	free(der);
	der = cert_der(x, &len);
	b = b64(der, len, 0);
	assert_int_equal(parse_key(b, CV_ENC_BASE64, NULL, &pk, &err), CV_ERR_BAD_ENCODING);
	free(b);
	OPENSSL_free(der);
	assert_int_equal(ERR_peek_error(), 0);
	free(pem);
	free(pem2);
	free(certpem);
	X509_free(x);
}

/* ---- import checks ---- */

static void test_key_match(void **state)
{
	static const int ok[] = { K_RSA2048, K_RSA3072, K_RSA4096, K_P256, K_P384, K_P521,
				  K_ED25519, K_RSA2048B, K_P256B, K_ED25519B };
	struct cv_errmsg err;
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		X509 *x = simple_cert(keys[ok[i]]);

		for (j = 0; j < sizeof(ok) / sizeof(ok[0]); j++) {
			int r = check(x, keys[ok[j]], NULL, NOW, 0, &err);

			if (i == j) {
				if (r != 0)
					fail_msg("%s: %s", key_types[ok[i]], err.text);
			} else {
				assert_int_equal(r, CV_ERR_KEY_MISMATCH);
				assert_string_equal(err.text,
						    "private key does not match the certificate");
			}
		}
		X509_free(x);
	}
}

/* An RSA key whose modulus has bits bits: enough for a size check, no keygen needed. */
static EVP_PKEY *rsa_of_bits(int bits)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	BIGNUM *n = BN_new(), *e = BN_new(), *d = BN_new();
	EVP_PKEY *pk = NULL;

	assert_non_null(bld);
	assert_non_null(ctx);
	assert_int_equal(BN_rand(n, bits, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD), 1);
	assert_int_equal(BN_set_word(e, 65537), 1);
	assert_int_equal(BN_rand(d, bits - 8, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD), 1);
	assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n), 1);
	assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e), 1);
	assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d), 1);
	params = OSSL_PARAM_BLD_to_param(bld);
	assert_non_null(params);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_KEYPAIR, params), 1);
	assert_int_equal(EVP_PKEY_get_bits(pk), bits);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_free(n);
	BN_free(e);
	BN_free(d);
	return pk;
}

/* A P-256 key with explicit curve parameters instead of the curve's name. */
static EVP_PKEY *p256_explicit(void)
{
	EVP_PKEY *pk = EVP_PKEY_dup(keys[K_P256]);

	assert_non_null(pk);
	assert_int_equal(EVP_PKEY_set_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_ENCODING,
							OSSL_PKEY_EC_ENCODING_EXPLICIT), 1);
	return pk;
}

static void test_unsupported_keys(void **state)
{
	static const struct {
		int key;
		const char *says;
	} cases[] = {
		{ K_RSA1024, "RSA key of 1024 bits: certvault takes RSA 2048 to 4096" },
		{ K_SECP256K1, "curve secp256k1 is not supported: use P-256, P-384 or P-521" },
		{ K_ED448, "ED448 keys are not supported" },
	};
	X509 *ca = make_cert_full(keys[K_RSA2048], "CA", NULL, NOW - DAY, NOW + DAY, NULL, 1,
				  NULL, NULL);
	EVP_PKEY *big = rsa_of_bits(8192), *just_over = rsa_of_bits(4097), *expl = p256_explicit();
	X509 *x, *ok = simple_cert(keys[K_P256]);
	EVP_PKEY *parsed;
	unsigned char *der;
	struct cv_errmsg err;
	size_t i, len;
	char *b;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		x = simple_cert(keys[cases[i].key]);
		assert_int_equal(check(x, keys[cases[i].key], NULL, NOW, 0, &err),
				 CV_ERR_UNSUPPORTED_KEY);
		if (strstr(err.text, cases[i].says) == NULL)
			fail_msg("%s: \"%s\"", key_types[cases[i].key], err.text);
		/* the key is judged before the dates */
		assert_int_equal(check(x, keys[cases[i].key], NULL, NOW + 1000 * DAY, 0, &err),
				 CV_ERR_UNSUPPORTED_KEY);
		X509_free(x);
	}
	/* an 8192-bit RSA key, and one just over 4096 */
	assert_int_equal(check(ok, big, NULL, NOW, 0, &err), CV_ERR_UNSUPPORTED_KEY);
	assert_string_equal(err.text, "RSA key of 8192 bits: certvault takes RSA 2048 to 4096");
	assert_int_equal(check(ok, just_over, NULL, NOW, 0, &err), CV_ERR_UNSUPPORTED_KEY);
	/* the certificate's own key is judged too */
	x = make_cert_full(big, "big", "big.example.com", NOW - DAY, NOW + DAY, NULL, 0, ca,
			   keys[K_RSA2048]);
	assert_int_equal(check(x, keys[K_P256], NULL, NOW, 0, &err), CV_ERR_UNSUPPORTED_KEY);
	assert_string_equal(err.text, "the certificate's public key: RSA key of 8192 bits: "
				      "certvault takes RSA 2048 to 4096");
	X509_free(x);
	/* explicit curve parameters */
	assert_int_equal(check(ok, expl, NULL, NOW, 0, &err), CV_ERR_UNSUPPORTED_KEY);
	assert_non_null(strstr(err.text, "explicit curve parameters"));
	/* and so it is once written out and parsed back */
	der = key_der(expl, "pkcs8", NULL, &len);
	b = b64(der, len, 0);
	assert_int_equal(parse_key(b, CV_ENC_BASE64, NULL, &parsed, &err), 0);
	assert_int_equal(check(ok, parsed, NULL, NOW, 0, &err), CV_ERR_UNSUPPORTED_KEY);
	assert_non_null(strstr(err.text, "explicit curve parameters"));
	EVP_PKEY_free(parsed);
	free(b);
	free(der);
	assert_int_equal(ERR_peek_error(), 0);
	EVP_PKEY_free(big);
	EVP_PKEY_free(just_over);
	EVP_PKEY_free(expl);
	X509_free(ok);
	X509_free(ca);
}

static void test_weak_signatures(void **state)
{
	static const struct {
		int key;
		const char *md;
		const char *says; /* NULL: accepted */
	} cases[] = {
		{ K_RSA2048, "md5", "certificate is signed with md5WithRSAEncryption (MD5), "
				    "refused" },
		{ K_RSA2048, "sha1", "certificate is signed with sha1WithRSAEncryption (SHA-1), "
				     "refused" },
		{ K_P256, "sha1", "certificate is signed with ecdsa-with-SHA1 (SHA-1), refused" },
		{ K_RSA2048, "sha256", NULL },
		{ K_RSA2048, "sha384", NULL },
		{ K_P384, "sha384", NULL },
		{ K_ED25519, NULL, NULL },
	};
	struct cv_errmsg err;
	size_t i;
	X509 *x;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		EVP_PKEY *key = keys[cases[i].key];

		x = make_cert_full(key, "w.example.com", "w.example.com", NOW - DAY, NOW + DAY,
				   cases[i].md, 0, NULL, NULL);
		if (cases[i].says == NULL) {
			assert_int_equal(check(x, key, NULL, NOW, 0, &err), 0);
		} else {
			assert_int_equal(check(x, key, NULL, NOW, 0, &err),
					 CV_ERR_WEAK_SIGNATURE);
			assert_string_equal(err.text, cases[i].says);
			assert_int_equal(check(x, key, NULL, NOW, 1, &err), 0);
			/* the dates are judged before the signature */
			assert_int_equal(check(x, key, NULL, NOW + 2 * DAY, 0, &err),
					 CV_ERR_EXPIRED);
			/* the signature before the key match */
			assert_int_equal(check(x, keys[K_RSA3072], NULL, NOW, 0, &err),
					 CV_ERR_WEAK_SIGNATURE);
		}
		X509_free(x);
	}
}

static void test_dates_checked_to_the_second(void **state)
{
	const time_t nb = NOW - 10 * DAY, na = NOW + 10 * DAY;
	X509 *x = make_cert(keys[K_P256], "d.example.com", "d.example.com", nb, na);
	struct cv_errmsg err;

	(void)state;
	assert_int_equal(check(x, keys[K_P256], NULL, nb - 1, 0, &err), CV_ERR_NOT_YET_VALID);
	assert_string_equal(err.text, "certificate is not valid before 2025-12-22T00:00:00Z "
				      "(allow_upcoming: true takes it as upcoming)");
	assert_int_equal(check(x, keys[K_P256], NULL, nb, 0, &err), 0);
	assert_int_equal(check(x, keys[K_P256], NULL, na, 0, &err), 0);
	assert_int_equal(check(x, keys[K_P256], NULL, na + 1, 0, &err), CV_ERR_EXPIRED);
	assert_string_equal(err.text, "certificate expired on 2026-01-11T00:00:00Z");
	/* dates before the key match */
	assert_int_equal(check(x, keys[K_P384], NULL, na + 1, 0, &err), CV_ERR_EXPIRED);
	assert_int_equal(check(x, keys[K_P384], NULL, nb - 1, 0, &err), CV_ERR_NOT_YET_VALID);
	X509_free(x);
}

static void test_chain_entries_must_be_ca(void **state)
{
	X509 *ca = make_cert_full(keys[K_P384], "Test CA", NULL, NOW - DAY, NOW + 900 * DAY,
				  NULL, 1, NULL, NULL);
	X509 *leaf = make_cert_full(keys[K_P256], NULL, "leaf.example.com", NOW - DAY,
				    NOW + DAY, NULL, 0, ca, keys[K_P384]);
	X509 *other = make_cert(keys[K_ED25519], "other.example.com", NULL, NOW - DAY, NOW + DAY);
	STACK_OF(X509) *chain = sk_X509_new_null();
	struct cv_errmsg err;

	(void)state;
	assert_non_null(chain);
	assert_int_equal(check(leaf, keys[K_P256], chain, NOW, 0, &err), 0);
	assert_true(sk_X509_push(chain, ca) > 0);
	assert_int_equal(check(leaf, keys[K_P256], chain, NOW, 0, &err), 0);
	assert_true(sk_X509_push(chain, other) > 0);
	assert_int_equal(check(leaf, keys[K_P256], chain, NOW, 0, &err), CV_ERR_BAD_CHAIN);
	assert_string_equal(err.text, "chain entry 2 (CN=other.example.com) is not a CA "
				      "certificate");
	/* the key match comes first */
	assert_int_equal(check(leaf, keys[K_P256B], chain, NOW, 0, &err), CV_ERR_KEY_MISMATCH);
	sk_X509_free(chain);
	X509_free(ca);
	X509_free(leaf);
	X509_free(other);
}

/* Issue 16 item 18: a chain must link to the leaf. Entries in any order are put in issuing
 * order; an unrelated CA, or a root that did not issue the leaf, is refused by position. */
static void test_chain_must_link(void **state)
{
	X509 *root = make_cert_full(keys[K_P384], "Link Root", NULL, NOW - DAY, NOW + 900 * DAY,
				    NULL, 1, NULL, NULL);
	X509 *mid = make_cert_full(keys[K_RSA2048], "Link Intermediate", NULL, NOW - DAY,
				   NOW + 800 * DAY, NULL, 1, root, keys[K_P384]);
	X509 *leaf = make_cert_full(keys[K_P256], NULL, "leaf.example.com", NOW - DAY,
				    NOW + DAY, NULL, 0, mid, keys[K_RSA2048]);
	X509 *stranger = make_cert_full(keys[K_P521], "Stranger CA", NULL, NOW - DAY,
					NOW + 900 * DAY, NULL, 1, NULL, NULL);
	/* Same name as the intermediate, another key: names alone do not link. */
	X509 *lookalike = make_cert_full(keys[K_RSA3072], "Link Intermediate", NULL, NOW - DAY,
					 NOW + 800 * DAY, NULL, 1, root, keys[K_P384]);
	STACK_OF(X509) *chain = sk_X509_new_null();
	struct cv_errmsg err;

	(void)state;
	/* root first, intermediate second: accepted, and reordered */
	assert_true(sk_X509_push(chain, root) > 0);
	assert_true(sk_X509_push(chain, mid) > 0);
	assert_int_equal(check(leaf, keys[K_P256], chain, NOW, 0, &err), 0);
	assert_ptr_equal(sk_X509_value(chain, 0), mid);
	assert_ptr_equal(sk_X509_value(chain, 1), root);
	/* an unrelated CA after a good path: named by its position */
	assert_true(sk_X509_push(chain, stranger) > 0);
	assert_int_equal(check(leaf, keys[K_P256], chain, NOW, 0, &err), CV_ERR_BAD_CHAIN);
	assert_string_equal(err.text, "chain entry 3 (CN=Stranger CA) issued neither the "
				      "certificate nor another entry of its chain");
	/* root only: the leaf's issuer is missing */
	while (sk_X509_num(chain) > 0)
		(void)sk_X509_pop(chain);
	assert_true(sk_X509_push(chain, root) > 0);
	assert_int_equal(check(leaf, keys[K_P256], chain, NOW, 0, &err), CV_ERR_BAD_CHAIN);
	assert_string_equal(err.text, "chain entry 1 (CN=Link Root) did not issue the "
				      "certificate, and no other entry did: the certificate's "
				      "issuer is CN=Link Intermediate");
	/* a look-alike intermediate (same subject, other key) does not verify */
	(void)sk_X509_pop(chain);
	assert_true(sk_X509_push(chain, lookalike) > 0);
	assert_int_equal(check(leaf, keys[K_P256], chain, NOW, 0, &err), CV_ERR_BAD_CHAIN);
	sk_X509_free(chain);
	X509_free(root);
	X509_free(mid);
	X509_free(leaf);
	X509_free(stranger);
	X509_free(lookalike);
}

/* Issue 16 items 12 and 14: a DN prints as UTF-8 with RFC 4514's escapes only; a CN counts
 * as a domain only when it is a DNS name, and as an address when it is one. */
static void test_info_names_and_cn(void **state)
{
	struct cv_x509_info *info = NULL;
	X509 *x;

	(void)state;
	x = make_cert(keys[K_P256], "F\xc5\x91tan\xc3\xbas\xc3\xadtv\xc3\xa1ny, \"A\"+B", NULL,
		      NOW - DAY, NOW + DAY);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_string_equal(info->subject,
			    "CN=F\xc5\x91tan\xc3\xbas\xc3\xadtv\xc3\xa1ny\\, \\\"A\\\"\\+B");
	assert_string_equal(info->issuer, info->subject);
	assert_int_equal(info->n_domains, 0);
	cv_x509_info_free(info);
	X509_free(x);

	x = make_cert(keys[K_P256], "Token Signer 2026", NULL, NOW - DAY, NOW + DAY);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_int_equal(info->n_domains, 0);
	assert_int_equal(info->n_ips, 0);
	cv_x509_info_free(info);
	X509_free(x);

	x = make_cert(keys[K_P256], "Legacy.Example.COM", NULL, NOW - DAY, NOW + DAY);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_int_equal(info->n_domains, 1);
	assert_string_equal(info->domains[0], "legacy.example.com");
	cv_x509_info_free(info);
	X509_free(x);

	x = make_cert(keys[K_P256], "192.0.2.10", NULL, NOW - DAY, NOW + DAY);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_int_equal(info->n_domains, 0);
	assert_int_equal(info->n_ips, 1);
	assert_string_equal(info->ips[0], "192.0.2.10");
	cv_x509_info_free(info);
	X509_free(x);
}

/* ---- status ---- */

static void test_status_boundaries(void **state)
{
	const time_t nb = 1000000, na = 2000000;
	const int64_t soon = 30 * DAY;

	(void)state;
	assert_int_equal(cv_status_at(nb, na, nb - 1, 0), CV_STATUS_UPCOMING);
	assert_int_equal(cv_status_at(nb, na, nb, 0), CV_STATUS_VALID);
	assert_int_equal(cv_status_at(nb, na, na, 0), CV_STATUS_VALID);
	assert_int_equal(cv_status_at(nb, na, na + 1, 0), CV_STATUS_EXPIRED);
	/* expires soon when strictly fewer than soon_seconds remain */
	assert_int_equal(cv_status_at(0, 100 * DAY, 100 * DAY - soon, soon), CV_STATUS_VALID);
	assert_int_equal(cv_status_at(0, 100 * DAY, 100 * DAY - soon + 1, soon),
			 CV_STATUS_EXPIRES_SOON);
	assert_int_equal(cv_status_at(0, 100 * DAY, 100 * DAY, soon), CV_STATUS_EXPIRES_SOON);
	assert_int_equal(cv_status_at(0, 100 * DAY, 100 * DAY + 1, soon), CV_STATUS_EXPIRED);
	assert_int_equal(cv_status_at(50 * DAY, 100 * DAY, 50 * DAY - 1, soon),
			 CV_STATUS_UPCOMING);
	/* a certificate shorter than the threshold is "expires soon" from its first second */
	assert_int_equal(cv_status_at(0, 10 * DAY, 0, soon), CV_STATUS_EXPIRES_SOON);
	/* far dates do not overflow */
	assert_int_equal(cv_status_at(INT64_MIN, INT64_MAX, INT64_MIN, soon), CV_STATUS_VALID);
	assert_int_equal(cv_status_at(0, INT64_MAX, INT64_MAX - 5, soon),
			 CV_STATUS_EXPIRES_SOON);
}

static void test_status_names(void **state)
{
	static const char *const names[] = { "valid", "expires_soon", "expired", "upcoming" };
	enum cv_status s;
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++) {
		assert_string_equal(cv_status_name((enum cv_status)i), names[i]);
		assert_int_equal(cv_status_parse(names[i], &s), 0);
		assert_int_equal(s, (enum cv_status)i);
	}
	assert_int_equal(cv_status_parse("Valid", &s), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_status_parse("", &s), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_status_parse(NULL, &s), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_status_parse("expires soon", &s), CV_ERR_BAD_REQUEST);
}

static void test_expires_in_days(void **state)
{
	(void)state;
	assert_int_equal(cv_expires_in_days(NOW, NOW), 0);
	assert_int_equal(cv_expires_in_days(NOW + DAY - 1, NOW), 0);
	assert_int_equal(cv_expires_in_days(NOW + DAY, NOW), 1);
	assert_int_equal(cv_expires_in_days(NOW + 90 * DAY, NOW), 90);
	assert_int_equal(cv_expires_in_days(NOW + 90 * DAY - 1, NOW), 89);
	assert_int_equal(cv_expires_in_days(NOW - 1, NOW), -1);
	assert_int_equal(cv_expires_in_days(NOW - DAY, NOW), -1);
	assert_int_equal(cv_expires_in_days(NOW - DAY - 1, NOW), -2);
	assert_int_equal(cv_expires_in_days(NOW - 365 * DAY, NOW), -365);
	assert_true(cv_expires_in_days(INT64_MAX, INT64_MIN) > 0);
	assert_true(cv_expires_in_days(INT64_MIN, INT64_MAX) < 0);
}

/* ---- details ---- */

static void fingerprint_of(X509 *x, const EVP_MD *md, char *buf)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n, i;

	assert_int_equal(X509_digest(x, md, d, &n), 1);
	for (i = 0; i < n; i++)
		sprintf(buf + 3 * i, "%02X%s", d[i], i + 1 < n ? ":" : "");
}

static void test_info_fields(void **state)
{
	X509 *ca = make_cert_full(keys[K_P384], "Test CA", NULL, NOW - DAY, NOW + 900 * DAY,
				  NULL, 1, NULL, NULL);
	X509 *x;
	struct tc_cert_spec spec = { 0 };
	struct cv_x509_info *info = NULL;
	char fp[100];

	(void)state;
	spec.cn = "Www.Example.com";
	spec.sans = "WWW.Example.COM,api.example.com,*.Wild.example.org,IP:192.0.2.7,"
		    "IP:2001:db8::1";
	spec.not_before = NOW - 3600;
	spec.not_after = NOW + 90 * DAY;
	spec.serial = 0x1234ab;
	spec.issuer = ca;
	spec.issuer_key = keys[K_P384];
	spec.md = "sha384";
	x = tc_cert_new(keys[K_P256], &spec);
	assert_non_null(x);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_string_equal(info->subject, "CN=Www.Example.com");
	assert_string_equal(info->issuer, "CN=Test CA");
	assert_string_equal(info->common_name, "Www.Example.com");
	assert_string_equal(info->serial, "12:34:AB");
	assert_string_equal(info->signature_algorithm, "ecdsa-with-SHA384");
	assert_int_equal(info->key_kind, CV_KEY_EC);
	assert_int_equal(info->key_bits, 256);
	assert_string_equal(info->key_curve, "P-256");
	assert_string_equal(info->key_description, "ECDSA P-256");
	assert_int_equal(info->not_before, NOW - 3600);
	assert_int_equal(info->not_after, NOW + 90 * DAY);
	fingerprint_of(x, EVP_sha256(), fp);
	assert_string_equal(info->sha256_fingerprint, fp);
	assert_int_equal(strlen(fp), 95);
	fingerprint_of(x, EVP_sha1(), fp);
	assert_string_equal(info->sha1_fingerprint, fp);
	assert_int_equal(info->is_ca, 0);
	assert_int_equal(info->n_domains, 3);
	assert_string_equal(info->domains[0], "www.example.com");
	assert_string_equal(info->domains[1], "api.example.com");
	assert_string_equal(info->domains[2], "*.wild.example.org");
	assert_int_equal(info->n_ips, 2);
	assert_string_equal(info->ips[0], "192.0.2.7");
	assert_string_equal(info->ips[1], "2001:db8::1");
	cv_x509_info_free(info);
	X509_free(x);
	/* the CA */
	assert_int_equal(cv_x509_info_new(ca, &info), 0);
	assert_int_equal(info->is_ca, 1);
	assert_string_equal(info->subject, info->issuer);
	assert_string_equal(info->key_description, "ECDSA P-384");
	assert_string_equal(info->signature_algorithm, "ecdsa-with-SHA256");
	/* a CN but no SAN: "Test CA" is no DNS name, so the certificate has no domain */
	assert_int_equal(info->n_domains, 0);
	assert_int_equal(info->n_ips, 0);
	cv_x509_info_free(info);
	X509_free(ca);
	cv_x509_info_free(NULL);
}

static void test_info_key_kinds(void **state)
{
	static const struct {
		int key;
		enum cv_key_kind kind;
		int bits;
		const char *curve, *desc, *sig;
	} cases[] = {
		{ K_RSA2048, CV_KEY_RSA, 2048, "", "RSA 2048", "sha256WithRSAEncryption" },
		{ K_RSA3072, CV_KEY_RSA, 3072, "", "RSA 3072", "sha256WithRSAEncryption" },
		{ K_RSA4096, CV_KEY_RSA, 4096, "", "RSA 4096", "sha256WithRSAEncryption" },
		{ K_P256, CV_KEY_EC, 256, "P-256", "ECDSA P-256", "ecdsa-with-SHA256" },
		{ K_P384, CV_KEY_EC, 384, "P-384", "ECDSA P-384", "ecdsa-with-SHA256" },
		{ K_P521, CV_KEY_EC, 521, "P-521", "ECDSA P-521", "ecdsa-with-SHA256" },
		{ K_ED25519, CV_KEY_ED25519, 256, "Ed25519", "Ed25519", "ED25519" },
	};
	struct cv_x509_info *info;
	char type[16];
	size_t i;
	int bits;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509 *x = simple_cert(keys[cases[i].key]);

		assert_int_equal(cv_x509_info_new(x, &info), 0);
		assert_int_equal(info->key_kind, cases[i].kind);
		assert_int_equal(info->key_bits, cases[i].bits);
		assert_string_equal(info->key_curve, cases[i].curve);
		assert_string_equal(info->key_description, cases[i].desc);
		assert_string_equal(info->signature_algorithm, cases[i].sig);
		/* The inventory reads type and size back from the stored description. */
		cv_x509_key_kind_of(info->key_description, type, &bits);
		assert_string_equal(type, cases[i].desc[0] == 'R' ? "RSA" :
					  cases[i].desc[0] == 'E' && cases[i].desc[1] == 'C' ?
					  "ECDSA" : "Ed25519");
		assert_int_equal(bits, cases[i].bits);
		cv_x509_info_free(info);
		X509_free(x);
	}
}

/* Descriptions of keys only a CA may have, and ones that say no size. */
static void test_key_kind_of_odd_descriptions(void **state)
{
	static const struct {
		const char *desc, *type;
		int bits;
	} cases[] = {
		{ "DSA 1024", "DSA", 1024 },
		{ "ECDSA secp256k1", "ECDSA", 256 },
		{ "ECDSA explicit", "ECDSA", 0 },
		{ "Ed448 456", "Ed448", 456 },
		{ "?", "?", 0 },
		{ "", "", 0 },
		{ "RSA 99999999", "RSA", 0 },
		{ "AVeryLongTypeNameIndeed 12", "AVeryLongTypeNa", 12 },
	};
	char type[16];
	size_t i;
	int bits;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cv_x509_key_kind_of(cases[i].desc, type, &bits);
		assert_string_equal(type, cases[i].type);
		assert_int_equal(bits, cases[i].bits);
	}
}

static void test_info_domains_cn_fallback(void **state)
{
	struct cv_x509_info *info;
	X509 *x;

	(void)state;
	/* a SAN DNS entry: the CN is not a domain */
	x = make_cert(keys[K_P256], "cn.example.com", "san.example.com", NOW - DAY, NOW + DAY);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_int_equal(info->n_domains, 1);
	assert_string_equal(info->domains[0], "san.example.com");
	assert_string_equal(info->common_name, "cn.example.com");
	cv_x509_info_free(info);
	X509_free(x);
	/* a SAN with only an IP address: the CN stands in */
	x = make_cert(keys[K_P256], "CN.Example.com", "IP:10.1.2.3", NOW - DAY, NOW + DAY);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_int_equal(info->n_domains, 1);
	assert_string_equal(info->domains[0], "cn.example.com");
	assert_int_equal(info->n_ips, 1);
	assert_string_equal(info->ips[0], "10.1.2.3");
	cv_x509_info_free(info);
	X509_free(x);
	/* neither */
	x = make_cert(keys[K_P256], NULL, NULL, NOW - DAY, NOW + DAY);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_int_equal(info->n_domains, 0);
	assert_string_equal(info->common_name, "");
	assert_string_equal(info->subject, "");
	cv_x509_info_free(info);
	X509_free(x);
}

/* A certificate whose SAN is one dNSName of len bytes (which may hold a NUL). */
static X509 *cert_with_raw_dns(const char *name, int len)
{
	X509 *x = make_cert(keys[K_P256], "ok.example.com", NULL, NOW - DAY, NOW + DAY);
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	GENERAL_NAME *g = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();

	assert_non_null(gens);
	assert_non_null(g);
	assert_non_null(s);
	assert_int_equal(ASN1_STRING_set(s, name, len), 1);
	GENERAL_NAME_set0_value(g, GEN_DNS, s);
	assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
	assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT),
			 1);
	assert_true(X509_sign(x, keys[K_P256], EVP_sha256()) > 0);
	GENERAL_NAMES_free(gens);
	return x;
}

static void test_info_refuses_nul_in_san(void **state)
{
	static const char evil[] = "www.bank.example\0.evil.example";
	struct cv_x509_info *info = NULL;
	X509 *x;

	(void)state;
	x = cert_with_raw_dns(evil, (int)sizeof(evil) - 1);
	assert_int_equal(cv_x509_info_new(x, &info), CV_ERR_BAD_ENCODING);
	assert_null(info);
	X509_free(x);
	x = cert_with_raw_dns("ctrl\n.example", 13);
	assert_int_equal(cv_x509_info_new(x, &info), CV_ERR_BAD_ENCODING);
	X509_free(x);
	x = cert_with_raw_dns("fine.example", 12);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_int_equal(info->n_domains, 1);
	assert_string_equal(info->domains[0], "fine.example");
	cv_x509_info_free(info);
	X509_free(x);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_info_caps_sans(void **state)
{
	const size_t n = CV_X509_MAX_SANS + 6;
	char *sans = malloc(n * 24), *p;
	struct cv_x509_info *info;
	X509 *x;
	size_t i;

	(void)state;
	assert_non_null(sans);
	p = sans;
	for (i = 0; i < n; i++)
		p += sprintf(p, "%sh%zu.example.com", i > 0 ? "," : "", i);
	x = make_cert(keys[K_P256], NULL, sans, NOW - DAY, NOW + DAY);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_int_equal(info->n_domains, CV_X509_MAX_SANS);
	assert_string_equal(info->domains[CV_X509_MAX_SANS - 1], "h1023.example.com");
	cv_x509_info_free(info);
	/* An import refuses what the details would cut off; the limit itself is taken. */
	{
		struct cv_errmsg err;
		X509 *y;

		assert_int_equal(check(x, keys[K_P256], NULL, NOW, 0, &err), CV_ERR_LIMIT);
		assert_non_null(strstr(err.text, "at most 1024"));
		p = sans;
		for (i = 0; i < CV_X509_MAX_SANS; i++)
			p += sprintf(p, "%sh%zu.example.com", i > 0 ? "," : "", i);
		y = make_cert(keys[K_P256], NULL, sans, NOW - DAY, NOW + DAY);
		assert_int_equal(check(y, keys[K_P256], NULL, NOW, 0, &err), 0);
		X509_free(y);
	}
	X509_free(x);
	free(sans);
}

/* ---- dates far away ---- */

static void test_dates_after_2050(void **state)
{
	const time_t nb = 2524608000;      /* 2050-01-01T00:00:00Z */
	const time_t na = 4102444800 + 59; /* 2100-01-01T00:00:59Z */
	X509 *x = make_cert(keys[K_P256], "far.example.com", NULL, nb, na);
	X509 *y, *z;
	struct cv_x509_info *info;
	struct cv_errmsg err;

	(void)state;
	assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_GENERALIZEDTIME);
	assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
	assert_int_equal(cv_x509_info_new(x, &info), 0);
	assert_int_equal(info->not_before, nb);
	assert_int_equal(info->not_after, na);
	cv_x509_info_free(info);
	assert_int_equal(check(x, keys[K_P256], NULL, nb - 1, 0, &err), CV_ERR_NOT_YET_VALID);
	assert_string_equal(err.text, "certificate is not valid before 2050-01-01T00:00:00Z "
				      "(allow_upcoming: true takes it as upcoming)");
	assert_int_equal(check(x, keys[K_P256], NULL, nb, 0, &err), 0);
	assert_int_equal(check(x, keys[K_P256], NULL, na, 0, &err), 0);
	assert_int_equal(check(x, keys[K_P256], NULL, na + 1, 0, &err), CV_ERR_EXPIRED);
	assert_string_equal(err.text, "certificate expired on 2100-01-01T00:00:59Z");
	assert_int_equal(cv_expires_in_days(na, nb), 18262);
	/* UTCTime up to 2049, GeneralizedTime after, and the 9999 "no expiry" date */
	y = make_cert(keys[K_P256], "y", NULL, nb - 1, (time_t)253402300799);
	assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(y)), V_ASN1_UTCTIME);
	assert_int_equal(cv_x509_info_new(y, &info), 0);
	assert_int_equal(info->not_before, nb - 1);
	assert_int_equal(info->not_after, (time_t)253402300799);
	cv_x509_info_free(info);
	assert_int_equal(check(y, keys[K_P256], NULL, (time_t)253402300799, 0, &err), 0);
	/* and before 1970 */
	z = make_cert(keys[K_P256], "z", NULL, -DAY - 1, NOW + DAY);
	assert_int_equal(cv_x509_info_new(z, &info), 0);
	assert_int_equal(info->not_before, -DAY - 1);
	cv_x509_info_free(info);
	X509_free(x);
	X509_free(y);
	X509_free(z);
}

/* ---- DER and PEM out ---- */

static void assert_same_info(const struct cv_x509_info *a, const struct cv_x509_info *b)
{
	size_t i;

	assert_string_equal(a->subject, b->subject);
	assert_string_equal(a->issuer, b->issuer);
	assert_string_equal(a->common_name, b->common_name);
	assert_string_equal(a->serial, b->serial);
	assert_string_equal(a->signature_algorithm, b->signature_algorithm);
	assert_int_equal(a->key_kind, b->key_kind);
	assert_int_equal(a->key_bits, b->key_bits);
	assert_string_equal(a->key_description, b->key_description);
	assert_int_equal(a->not_before, b->not_before);
	assert_int_equal(a->not_after, b->not_after);
	assert_string_equal(a->sha256_fingerprint, b->sha256_fingerprint);
	assert_string_equal(a->sha1_fingerprint, b->sha1_fingerprint);
	assert_int_equal(a->n_domains, b->n_domains);
	for (i = 0; i < a->n_domains; i++)
		assert_string_equal(a->domains[i], b->domains[i]);
	assert_int_equal(a->n_ips, b->n_ips);
	for (i = 0; i < a->n_ips; i++)
		assert_string_equal(a->ips[i], b->ips[i]);
}

/* The cache answers what parsing answers, for exactly the bytes it was given, each caller
 * with a copy of its own; a slot holds one certificate at a time. */
static void test_info_cache(void **state)
{
	struct tc_cert_spec spec = { 0 };
	struct cv_x509_info_cache *one = NULL, *many = NULL;
	struct cv_x509_info *fresh1 = NULL, *fresh2 = NULL, *got = NULL, *again = NULL;
	unsigned char *der1 = NULL, *der2 = NULL;
	size_t len1, len2;
	X509 *x1, *x2;
	int i;

	(void)state;
	spec.cn = "one.example.com";
	spec.sans = "one.example.com,www.one.example.com,IP:192.0.2.1";
	spec.not_before = NOW - DAY;
	spec.not_after = NOW + 90 * DAY;
	x1 = tc_cert_new(keys[K_P256], &spec);
	spec.cn = "two.example.org";
	spec.sans = "two.example.org";
	x2 = tc_cert_new(keys[K_RSA2048], &spec);
	assert_non_null(x1);
	assert_non_null(x2);
	assert_int_equal(cv_x509_cert_der(x1, &der1, &len1), 0);
	assert_int_equal(cv_x509_cert_der(x2, &der2, &len2), 0);
	assert_int_equal(cv_x509_info_new(x1, &fresh1), 0);
	assert_int_equal(cv_x509_info_new(x2, &fresh2), 0);

	assert_int_equal(cv_x509_info_cache_new(0, &one), CV_ERR_INTERNAL);
	assert_int_equal(cv_x509_info_cache_new(1, &one), 0);
	assert_int_equal(cv_x509_info_cache_new(64, &many), 0);
	for (i = 0; i < 3; i++) {
		/* One slot: the two certificates take turns in it. */
		assert_int_equal(cv_x509_info_cached(one, der1, len1, &got), 0);
		assert_same_info(got, fresh1);
		assert_int_equal(cv_x509_info_cached(one, der1, len1, &again), 0);
		assert_same_info(again, fresh1);
		assert_ptr_not_equal(again, got);
		assert_ptr_not_equal(again->domains, got->domains);
		cv_x509_info_free(got);
		cv_x509_info_free(again);
		assert_int_equal(cv_x509_info_cached(one, der2, len2, &got), 0);
		assert_same_info(got, fresh2);
		cv_x509_info_free(got);
		assert_int_equal(cv_x509_info_cached(many, i % 2 ? der2 : der1,
						     i % 2 ? len2 : len1, &got), 0);
		assert_same_info(got, i % 2 ? fresh2 : fresh1);
		cv_x509_info_free(got);
	}
	/* A prefix of the DER is another key, and not a certificate. */
	got = NULL;
	assert_int_equal(cv_x509_info_cached(one, der2, len2 - 1, &got), CV_ERR_BAD_ENCODING);
	assert_null(got);
	assert_int_equal(cv_x509_info_cached(one, der2, len2, &got), 0);
	assert_same_info(got, fresh2);
	cv_x509_info_free(got);

	cv_x509_info_cache_free(one);
	cv_x509_info_cache_free(many);
	cv_x509_info_cache_free(NULL);
	cv_x509_info_free(fresh1);
	cv_x509_info_free(fresh2);
	free(der1);
	free(der2);
	X509_free(x1);
	X509_free(x2);
}

/* PEM from the DER is byte for byte what OpenSSL writes, whatever the length. */
static void test_der_pem_as_openssl_writes_it(void **state)
{
	static const char *const sans[] = { "a.example.com", "a.example.com,b.example.com",
					    "a.example.com,b.example.com,c.example.com,"
					    "d.example.com,e.example.com" };
	struct tc_cert_spec spec = { 0 };
	unsigned char *der = NULL;
	char *want = NULL, *got = NULL;
	size_t der_len, want_len, got_len, i, k;
	X509 *x;

	(void)state;
	spec.not_before = NOW - DAY;
	spec.not_after = NOW + DAY;
	for (k = 0; k < 2; k++)
		for (i = 0; i < sizeof(sans) / sizeof(sans[0]); i++) {
			spec.cn = "a.example.com";
			spec.sans = sans[i];
			x = tc_cert_new(keys[k == 0 ? K_P256 : K_RSA2048], &spec);
			assert_non_null(x);
			assert_int_equal(cv_x509_cert_der(x, &der, &der_len), 0);
			assert_int_equal(cv_x509_cert_pem(x, &want, &want_len), 0);
			assert_int_equal(cv_x509_der_pem(der, der_len, &got, &got_len), 0);
			assert_int_equal(got_len, want_len);
			assert_string_equal(got, want);
			free(der);
			free(want);
			free(got);
			X509_free(x);
		}
}

static void test_pem_cert_count(void **state)
{
	X509 *x = simple_cert(keys[K_P256]);
	char *pem = NULL, *three;
	size_t len;

	(void)state;
	assert_int_equal(cv_x509_pem_cert_count(""), 0);
	assert_int_equal(cv_x509_cert_pem(x, &pem, &len), 0);
	assert_int_equal(cv_x509_pem_cert_count(pem), 1);
	three = malloc(3 * len + 1);
	assert_non_null(three);
	snprintf(three, 3 * len + 1, "%s%s%s", pem, pem, pem);
	assert_int_equal(cv_x509_pem_cert_count(three), 3);
	free(three);
	free(pem);
	X509_free(x);
}

static void test_der_and_pem_roundtrip(void **state)
{
	X509 *x = simple_cert(keys[K_RSA2048]), *y = NULL;
	unsigned char *der = NULL, *longer;
	char *pem = NULL;
	size_t len, pem_len;
	struct cv_errmsg err;
	EVP_PKEY *pub;
	BIO *bio;

	(void)state;
	assert_int_equal(cv_x509_cert_der(x, &der, &len), 0);
	assert_int_equal(len, (size_t)i2d_X509(x, NULL));
	assert_int_equal(cv_x509_cert_from_der(der, len, &y), 0);
	assert_same_cert(x, y);
	X509_free(y);
	y = NULL;
	assert_int_equal(cv_x509_cert_from_der(der, len - 1, &y), CV_ERR_BAD_ENCODING);
	assert_null(y);
	longer = malloc(len + 1);
	assert_non_null(longer);
	memcpy(longer, der, len);
	longer[len] = 0;
	assert_int_equal(cv_x509_cert_from_der(longer, len + 1, &y), CV_ERR_BAD_ENCODING);
	assert_int_equal(cv_x509_cert_from_der(der, 0, &y), CV_ERR_BAD_ENCODING);
	free(longer);
	free(der);
	assert_int_equal(cv_x509_cert_pem(x, &pem, &pem_len), 0);
	assert_int_equal(strlen(pem), pem_len);
	assert_int_equal(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28), 0);
	assert_int_equal(parse_cert(pem, CV_ENC_PEM, &y, &err), 0);
	assert_same_cert(x, y);
	X509_free(y);
	free(pem);
	assert_int_equal(cv_x509_pubkey_pem(x, &pem, &pem_len), 0);
	assert_int_equal(strlen(pem), pem_len);
	assert_int_equal(strncmp(pem, "-----BEGIN PUBLIC KEY-----\n", 27), 0);
	bio = BIO_new_mem_buf(pem, (int)pem_len);
	assert_non_null(bio);
	pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	assert_non_null(pub);
	assert_int_equal(EVP_PKEY_eq(pub, keys[K_RSA2048]), 1);
	EVP_PKEY_free(pub);
	BIO_free(bio);
	free(pem);
	X509_free(x);
	assert_int_equal(ERR_peek_error(), 0);
}

/* ---- many threads at once ---- */

struct worker {
	const char *cert_pem, *key_pem;
	int failures;
};

/* Parses and checks over and over, with a wrong password every other time: each call's
 * outcome must not depend on what other threads (or its own last call) left behind. */
static void *work(void *arg)
{
	struct worker *w = arg;
	struct cv_x509_policy policy = { NOW, 0, 0 };
	struct cv_x509_info *info;
	struct cv_errmsg err;
	EVP_PKEY *pk;
	X509 *x;
	int i, good;

	for (i = 0; i < 40; i++) {
		good = i % 2;
		pk = NULL;
		info = NULL;
		if (cv_x509_cert_parse(w->cert_pem, strlen(w->cert_pem), CV_ENC_PEM, &x,
				       &err) != 0) {
			w->failures++;
			continue;
		}
		if (cv_x509_key_parse(w->key_pem, strlen(w->key_pem), CV_ENC_PEM,
				      good ? "pw" : "bad", &pk,
				      &err) != (good ? 0 : CV_ERR_BAD_PASSWORD))
			w->failures++;
		else if (good && cv_x509_check_import(x, pk, NULL, &policy, &err) != 0)
			w->failures++;
		EVP_PKEY_free(pk);
		if (cv_x509_info_new(x, &info) != 0 ||
		    strcmp(info->domains[0], "t.example.com") != 0)
			w->failures++;
		cv_x509_info_free(info);
		X509_free(x);
		if (ERR_peek_error() != 0)
			w->failures++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	static const int kinds[] = { K_RSA2048, K_P256, K_P384, K_ED25519 };
	struct worker w[4];
	pthread_t th[4];
	X509 *x[4];
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++) {
		x[i] = make_cert(keys[kinds[i]], "t.example.com", NULL, NOW - DAY, NOW + DAY);
		w[i].cert_pem = tc_cert_pem(x[i]);
		w[i].key_pem = tc_key_pem(keys[kinds[i]], "pkcs8enc", "pw");
		w[i].failures = 0;
	}
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
		free((char *)w[i].cert_pem);
		free((char *)w[i].key_pem);
		X509_free(x[i]);
	}
}

/* The RFC 6125 coverage table: (certificate name, domain, covered). */
static void test_name_covers_table(void **state)
{
	static const struct {
		const char *cert_name, *domain;
		int covered;
	} rows[] = {
		{ "www.example.com", "www.example.com", 1 },
		{ "WWW.Example.COM", "www.example.com", 1 },   /* case */
		{ "www.example.com.", "www.example.com", 1 },  /* trailing dot, certificate side */
		{ "www.example.com", "www.example.com.", 1 },  /* trailing dot, domain side */
		{ "www.example.com", "example.com", 0 },
		{ "example.com", "www.example.com", 0 },
		{ "*.example.com", "a.example.com", 1 },
		{ "*.example.com", "A.EXAMPLE.COM", 1 },
		{ "*.example.com.", "a.example.com", 1 },
		{ "*.example.com", "example.com", 0 },         /* not the apex */
		{ "*.example.com", "a.b.example.com", 0 },     /* one label only */
		{ "*.example.com", "a.example.org", 0 },
		{ "*.example.com", "aexample.com", 0 },
		{ "*.example.com", ".example.com", 0 },
		{ "*.example.com", "xn--bcher-kva.example.com", 1 }, /* A-labels as they are */
		{ "*.example.com", "*.example.com", 1 },       /* a wildcard domain: the same */
		{ "*.example.com", "*.b.example.com", 0 },
		{ "*.b.example.com", "*.example.com", 0 },
		{ "a.example.com", "*.example.com", 0 },
		{ "a*.example.com", "ab.example.com", 0 },     /* partial wildcards: nothing */
		{ "*a.example.com", "ba.example.com", 0 },
		{ "a.*.example.com", "a.b.example.com", 0 },
		{ "*.*.example.com", "a.b.example.com", 0 },
		{ "*", "com", 0 },
		{ "*.com", "example.com", 0 },                  /* over one label: nothing */
		{ "*.", "a.", 0 },
		{ "", "", 0 },
		{ "xn--bcher-kva.example.com", "xn--bcher-kva.example.com", 1 },
		{ "bücher.example.com", "xn--bcher-kva.example.com", 0 }, /* no IDNA mapping */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (cv_x509_name_covers(rows[i].cert_name, rows[i].domain) != rows[i].covered)
			fail_msg("%s covers %s: expected %d", rows[i].cert_name, rows[i].domain,
				 rows[i].covered);
	}
}

static void test_names_cover_any(void **state)
{
	char *names[] = { "a.example.com", "*.example.org" };

	(void)state;
	assert_int_equal(cv_x509_names_cover(names, 2, "a.example.com"), 1);
	assert_int_equal(cv_x509_names_cover(names, 2, "b.example.org"), 1);
	assert_int_equal(cv_x509_names_cover(names, 2, "b.example.com"), 0);
	assert_int_equal(cv_x509_names_cover(names, 0, "a.example.com"), 0);
}

static void test_domain_normalize(void **state)
{
	static const struct {
		const char *in, *out; /* out NULL: refused */
	} rows[] = {
		{ "Shop.Example.COM.", "shop.example.com" },
		{ "a-b.example.com", "a-b.example.com" },
		{ "*.example.com", "*.example.com" },
		{ "localhost", "localhost" },
		{ "xn--bcher-kva.example.com", "xn--bcher-kva.example.com" },
		{ "", NULL },
		{ ".", NULL },
		{ "a..example.com", NULL },
		{ ".example.com", NULL },
		{ "example.com..", NULL },
		{ "-a.example.com", NULL },
		{ "a-.example.com", NULL },
		{ "a_b.example.com", NULL },
		{ "a b.example.com", NULL },
		{ "bücher.example.com", NULL },
		{ "a*.example.com", NULL },
		{ "*a.example.com", NULL },
		{ "a.*.example.com", NULL },
		{ "*", NULL },
		{ "*.com", NULL },
		{ "192.168.1.1", NULL },
		{ "10.0.0.1.", NULL },
		{ "[::1]", NULL },
	};
	char out[CV_DNS_NAME_MAX + 1], long_label[80], long_name[300];
	struct cv_errmsg err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int r = cv_x509_domain_normalize(rows[i].in, out, sizeof(out), &err);

		if (rows[i].out == NULL) {
			if (r != CV_ERR_BAD_REQUEST)
				fail_msg("%s: accepted as %s", rows[i].in, out);
		} else {
			if (r != 0)
				fail_msg("%s: refused: %s", rows[i].in, err.text);
			assert_string_equal(out, rows[i].out);
		}
	}
	/* 63-byte labels are fine, 64 are not; 253 bytes in all are fine, 254 are not. */
	memset(long_label, 'a', 63);
	strcpy(long_label + 63, ".com");
	assert_int_equal(cv_x509_domain_normalize(long_label, out, sizeof(out), &err), 0);
	memset(long_label, 'a', 64);
	strcpy(long_label + 64, ".com");
	assert_int_equal(cv_x509_domain_normalize(long_label, out, sizeof(out), &err),
			 CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "63"));
	for (i = 0; i < 253; i++)
		long_name[i] = (i % 4 == 3) ? '.' : 'a';
	long_name[253] = '\0';
	assert_int_equal(cv_x509_domain_normalize(long_name, out, sizeof(out), &err), 0);
	long_name[253] = 'a';
	long_name[254] = '\0';
	assert_int_equal(cv_x509_domain_normalize(long_name, out, sizeof(out), &err),
			 CV_ERR_BAD_REQUEST);
}

static void test_domain_wildcard(void **state)
{
	char w[CV_DNS_NAME_MAX + 1];

	(void)state;
	assert_int_equal(cv_x509_domain_wildcard("a.example.com", w, sizeof(w)), 0);
	assert_string_equal(w, "*.example.com");
	assert_int_equal(cv_x509_name_covers(w, "a.example.com"), 1);
	assert_int_equal(cv_x509_domain_wildcard("example.com", w, sizeof(w)), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_x509_domain_wildcard("localhost", w, sizeof(w)), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_x509_domain_wildcard("*.example.com", w, sizeof(w)),
			 CV_ERR_NOT_FOUND);
}

/* ---- PKCS#12 in ---- */

#define P12_PASS "Pkcs12-s3cret"

/* The DER of p12, which is freed. */
static unsigned char *p12_der(PKCS12 *p12, size_t *len)
{
	unsigned char *der = NULL;
	int n;

	assert_non_null(p12);
	n = i2d_PKCS12(p12, &der);
	assert_true(n > 0);
	*len = (size_t)n;
	PKCS12_free(p12);
	return der;
}

static STACK_OF(X509) *cert_stack(X509 *const *certs, size_t n)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	size_t i;

	assert_non_null(sk);
	for (i = 0; i < n; i++)
		assert_true(sk_X509_push(sk, certs[i]) > 0); /* borrowed */
	return sk;
}

/* PKCS12_create with the defaults of OpenSSL 3.0 (AES-256-CBC, PBKDF2, SHA-256 MAC). */
static unsigned char *p12_make(const char *pass, EVP_PKEY *key, X509 *cert, X509 *const *ca,
			       size_t n_ca, size_t *len)
{
	STACK_OF(X509) *sk = cert_stack(ca, n_ca);
	PKCS12 *p12;

	p12 = PKCS12_create(pass, "entry", key, cert, sk, 0, 0, 0, 0, 0);
	sk_X509_free(sk);
	return p12_der(p12, len);
}

/* A file assembled bag by bag: the certificates in the order given, then each key
 * (shrouded[i]: encrypted with AES, else a plain key bag), all in one safe, encrypted
 * unless keys are plain. */
static unsigned char *p12_assemble(X509 *const *certs, size_t n_certs, EVP_PKEY *const *pkeys,
				   const int *shrouded, size_t n_keys, size_t *len)
{
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	STACK_OF(PKCS7) *safes = NULL;
	PKCS12 *p12;
	size_t i;

	for (i = 0; i < n_certs; i++)
		assert_non_null(PKCS12_add_cert(&bags, certs[i]));
	for (i = 0; i < n_keys; i++)
		assert_non_null(PKCS12_add_key(&bags, pkeys[i], 0, 2048,
					       shrouded[i] ? NID_aes_256_cbc : -1, P12_PASS));
	assert_int_equal(PKCS12_add_safe(&safes, bags, NID_aes_256_cbc, 2048, P12_PASS), 1);
	p12 = PKCS12_add_safes(safes, 0);
	assert_non_null(p12);
	assert_int_equal(PKCS12_set_mac(p12, P12_PASS, -1, NULL, 0, 2048, EVP_sha256()), 1);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	return p12_der(p12, len);
}

static int parse_p12(const unsigned char *der, size_t len, const char *pw, X509 **cert,
		     EVP_PKEY **key, STACK_OF(X509) **chain, struct cv_errmsg *err)
{
	memset(err, 0, sizeof(*err));
	*cert = NULL;
	*key = NULL;
	*chain = NULL;
	return cv_x509_pkcs12_parse(der, len, pw, cert, key, chain, err);
}

/* A refusal: the code, a message that says what, nothing handed out, no secret in it. */
static void assert_p12_refused(const unsigned char *der, size_t len, const char *pw, int code,
			       const char *message)
{
	STACK_OF(X509) *chain;
	struct cv_errmsg err;
	EVP_PKEY *key;
	X509 *cert;

	assert_int_equal(parse_p12(der, len, pw, &cert, &key, &chain, &err), code);
	if (strstr(err.text, message) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.text, message);
	assert_null(strstr(err.text, P12_PASS));
	if (pw != NULL && pw[0] != '\0')
		assert_null(strstr(err.text, pw));
	assert_null(cert);
	assert_null(key);
	assert_null(chain);
	assert_int_equal(ERR_peek_error(), 0);
}

/* A root, an intermediate and a leaf under it. */
struct p12_pki {
	X509 *root, *inter, *leaf;
};

static void pki_make(struct p12_pki *pki, EVP_PKEY *leaf_key)
{
	pki->root = make_cert_full(keys[K_P256], "Root CA", NULL, NOW - DAY, NOW + 900 * DAY,
				   NULL, 1, NULL, NULL);
	pki->inter = make_cert_full(keys[K_P256B], "Issuing CA", NULL, NOW - DAY,
				    NOW + 800 * DAY, NULL, 1, pki->root, keys[K_P256]);
	pki->leaf = make_cert_full(leaf_key, "www.example.com", "www.example.com", NOW - DAY,
				   NOW + 90 * DAY, NULL, 0, pki->inter, keys[K_P256B]);
}

static void pki_free(struct p12_pki *pki)
{
	X509_free(pki->root);
	X509_free(pki->inter);
	X509_free(pki->leaf);
}

static void assert_p12_gives(const unsigned char *der, size_t len, const char *pw,
			     X509 *leaf, EVP_PKEY *leaf_key, X509 *const *chain, size_t n)
{
	STACK_OF(X509) *got_chain;
	struct cv_errmsg err;
	EVP_PKEY *got_key;
	X509 *got;
	size_t i;

	if (parse_p12(der, len, pw, &got, &got_key, &got_chain, &err) != 0)
		fail_msg("refused: %s", err.text);
	assert_same_cert(got, leaf);
	assert_int_equal(EVP_PKEY_eq(got_key, leaf_key), 1);
	assert_int_equal(sk_X509_num(got_chain), (int)n);
	for (i = 0; i < n; i++)
		assert_same_cert(sk_X509_value(got_chain, (int)i), chain[i]);
	assert_int_equal(ERR_peek_error(), 0);
	X509_free(got);
	EVP_PKEY_free(got_key);
	sk_X509_pop_free(got_chain, X509_free);
}

static void test_pkcs12_key_leaf_chain(void **state)
{
	static const int kinds[] = { K_RSA2048, K_P384, K_ED25519 };
	struct p12_pki pki;
	unsigned char *der;
	X509 *chain[2], *order[3];
	EVP_PKEY *pkeys[1];
	int shrouded[1] = { 1 };
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		pki_make(&pki, keys[kinds[i]]);
		chain[0] = pki.inter;
		chain[1] = pki.root;
		der = p12_make(P12_PASS, keys[kinds[i]], pki.leaf, chain, 2, &len);
		assert_p12_gives(der, len, P12_PASS, pki.leaf, keys[kinds[i]], chain, 2);
		OPENSSL_free(der);

		/* No chain at all. */
		der = p12_make(P12_PASS, keys[kinds[i]], pki.leaf, NULL, 0, &len);
		assert_p12_gives(der, len, P12_PASS, pki.leaf, keys[kinds[i]], NULL, 0);
		OPENSSL_free(der);

		/* The leaf is found by its key wherever it is; the others keep their order. */
		order[0] = pki.inter;
		order[1] = pki.leaf;
		order[2] = pki.root;
		pkeys[0] = keys[kinds[i]];
		der = p12_assemble(order, 3, pkeys, shrouded, 1, &len);
		assert_p12_gives(der, len, P12_PASS, pki.leaf, keys[kinds[i]], chain, 2);
		OPENSSL_free(der);
		pki_free(&pki);
	}

	/* A plain key bag, certificates unencrypted: the password still guards the MAC. */
	pki_make(&pki, keys[K_RSA2048]);
	chain[0] = pki.inter;
	chain[1] = pki.root;
	{
		STACK_OF(X509) *sk = cert_stack(chain, 2);
		PKCS12 *p12 = PKCS12_create(P12_PASS, "plain", keys[K_RSA2048], pki.leaf, sk, -1,
					    -1, 0, 0, 0);

		sk_X509_free(sk);
		der = p12_der(p12, &len);
	}
	assert_p12_gives(der, len, P12_PASS, pki.leaf, keys[K_RSA2048], chain, 2);
	assert_p12_refused(der, len, "other", CV_ERR_BAD_PASSWORD, "incorrect password");
	OPENSSL_free(der);
	pki_free(&pki);
}

static void test_pkcs12_passwords(void **state)
{
	struct p12_pki pki;
	unsigned char *der;
	size_t len;
	PKCS12 *p12;

	(void)state;
	pki_make(&pki, keys[K_P384]);
	der = p12_make(P12_PASS, keys[K_P384], pki.leaf, NULL, 0, &len);
	assert_p12_refused(der, len, "wrong-password", CV_ERR_BAD_PASSWORD,
			   "incorrect password for the PKCS#12 file");
	assert_p12_refused(der, len, "pkcs12-s3cret", CV_ERR_BAD_PASSWORD, "incorrect password");
	assert_p12_refused(der, len, NULL, CV_ERR_BAD_PASSWORD, "none was given");
	assert_p12_refused(der, len, "", CV_ERR_BAD_PASSWORD, "none was given");
	OPENSSL_free(der);

	/* Made without a password (NULL) or with the empty one: read with none given. */
	der = p12_make(NULL, keys[K_P384], pki.leaf, NULL, 0, &len);
	assert_p12_gives(der, len, NULL, pki.leaf, keys[K_P384], NULL, 0);
	assert_p12_gives(der, len, "", pki.leaf, keys[K_P384], NULL, 0);
	assert_p12_refused(der, len, "unexpected", CV_ERR_BAD_PASSWORD, "incorrect password");
	OPENSSL_free(der);
	der = p12_make("", keys[K_P384], pki.leaf, NULL, 0, &len);
	assert_p12_gives(der, len, NULL, pki.leaf, keys[K_P384], NULL, 0);
	OPENSSL_free(der);

	/* A UTF-8 password, as Java and Windows turn it into a BMPString. */
	der = p12_make("pässwörd-€", keys[K_P384], pki.leaf, NULL, 0, &len);
	assert_p12_gives(der, len, "pässwörd-€", pki.leaf, keys[K_P384], NULL, 0);
	assert_p12_refused(der, len, "passwort", CV_ERR_BAD_PASSWORD, "incorrect password");
	OPENSSL_free(der);

	/* No MAC (openssl pkcs12 -nomac): decryption judges the password. */
	p12 = PKCS12_create(P12_PASS, "nomac", keys[K_P384], pki.leaf, NULL, 0, 0, 0, -1, 0);
	der = p12_der(p12, &len);
	assert_p12_gives(der, len, P12_PASS, pki.leaf, keys[K_P384], NULL, 0);
	assert_p12_refused(der, len, "wrong-password", CV_ERR_BAD_PASSWORD, "no MAC");
	OPENSSL_free(der);
	pki_free(&pki);
}

static void test_pkcs12_refusals(void **state)
{
	struct p12_pki pki, other;
	X509 *many[CV_X509_MAX_CHAIN + 2], *chain[2];
	EVP_PKEY *pkeys[2];
	int shrouded[2];
	unsigned char *der, *longer;
	size_t i, len, cert_len;
	PKCS12 *p12;

	(void)state;
	pki_make(&pki, keys[K_RSA2048]);
	pki_make(&other, keys[K_RSA2048B]);
	chain[0] = pki.inter;
	chain[1] = pki.root;

	/* Not PKCS#12 at all, empty, cut off, followed by more bytes. */
	der = cert_der(pki.leaf, &cert_len);
	assert_p12_refused(der, cert_len, P12_PASS, CV_ERR_BAD_ENCODING, "not a PKCS#12 file");
	free(der);
	assert_p12_refused((const unsigned char *)"", 0, P12_PASS, CV_ERR_BAD_ENCODING, "empty");
	der = p12_make(P12_PASS, keys[K_RSA2048], pki.leaf, chain, 2, &len);
	assert_p12_refused(der, len / 2, P12_PASS, CV_ERR_BAD_ENCODING, "cut off");
	assert_p12_refused(der, len - 1, P12_PASS, CV_ERR_BAD_ENCODING, "cut off");
	assert_p12_refused(der, 10, P12_PASS, CV_ERR_BAD_ENCODING, "cut off");
	longer = malloc(len + 3);
	assert_non_null(longer);
	memcpy(longer, der, len);
	memcpy(longer + len, "\0\0\n", 3);
	assert_p12_refused(longer, len + 3, P12_PASS, CV_ERR_BAD_ENCODING, "followed by 3");
	free(longer);
	OPENSSL_free(der);

	/* Two keys: two shrouded key bags, or a shrouded and a plain one; refused even when
	 * the first one matches the certificate. */
	pkeys[0] = keys[K_RSA2048];
	pkeys[1] = keys[K_RSA2048B];
	shrouded[0] = shrouded[1] = 1;
	der = p12_assemble(&pki.leaf, 1, pkeys, shrouded, 2, &len);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_BAD_ENCODING, "more than one private key");
	OPENSSL_free(der);
	shrouded[1] = 0;
	der = p12_assemble(&pki.leaf, 1, pkeys, shrouded, 2, &len);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_BAD_ENCODING, "more than one private key");
	OPENSSL_free(der);
	/* The same key twice is two keys too. */
	pkeys[1] = keys[K_RSA2048];
	shrouded[1] = 1;
	der = p12_assemble(&pki.leaf, 1, pkeys, shrouded, 2, &len);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_BAD_ENCODING, "more than one private key");
	OPENSSL_free(der);

	/* No key; a key without certificates. */
	der = p12_make(P12_PASS, NULL, pki.leaf, chain, 2, &len);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_BAD_ENCODING, "no private key");
	OPENSSL_free(der);
	der = p12_make(P12_PASS, keys[K_RSA2048], NULL, NULL, 0, &len);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_BAD_ENCODING, "no certificate");
	OPENSSL_free(der);

	/* A key that none of the certificates is for. */
	der = p12_make(P12_PASS, keys[K_RSA2048B], NULL, &pki.leaf, 1, &len);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_KEY_MISMATCH,
			   "none of the 1 certificates in the PKCS#12 file matches");
	OPENSSL_free(der);
	pkeys[0] = keys[K_P384];
	shrouded[0] = 1;
	der = p12_assemble(chain, 2, pkeys, shrouded, 1, &len);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_KEY_MISMATCH, "matches its private key");
	OPENSSL_free(der);

	/* The certificate and a chain of CV_X509_MAX_CHAIN at most. */
	for (i = 0; i < CV_X509_MAX_CHAIN + 1; i++)
		many[i] = make_cert_full(keys[K_P256], "Some CA", NULL, NOW - DAY, NOW + DAY, NULL,
					 1, NULL, NULL);
	der = p12_make(P12_PASS, keys[K_RSA2048], pki.leaf, many, CV_X509_MAX_CHAIN, &len);
	assert_p12_gives(der, len, P12_PASS, pki.leaf, keys[K_RSA2048], many,
			 CV_X509_MAX_CHAIN);
	OPENSSL_free(der);
	der = p12_make(P12_PASS, keys[K_RSA2048], pki.leaf, many, CV_X509_MAX_CHAIN + 1, &len);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_BAD_ENCODING, "more than 17 certificates");
	OPENSSL_free(der);
	for (i = 0; i < CV_X509_MAX_CHAIN + 1; i++)
		X509_free(many[i]);

	/* A MAC that asks for four million iterations is refused before any is run. */
	p12 = PKCS12_create(P12_PASS, "slow", keys[K_RSA2048], pki.leaf, NULL, 0, 0, 0, 0, 0);
	assert_non_null(p12);
	assert_int_equal(PKCS12_setup_mac(p12, 4000000, NULL, 0, EVP_sha256()), 1);
	der = p12_der(p12, &len);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_LIMIT, "rounds of password hashing");
	OPENSSL_free(der);

	/* A key whose encryption key comes from scrypt: read within the budget, refused
	 * beyond it (its cost grows with its parallelism, which its memory bound does not
	 * limit). */
	for (i = 0; i < 2; i++) {
		STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
		STACK_OF(PKCS7) *safes = NULL;
		PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(keys[K_RSA2048]);
		X509_ALGOR *alg = PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), NULL, 0, NULL, 1024, 8,
							  1);

		if (i == 1)
			scrypt_params_set(alg, 1024, 8, 4096);
		X509_SIG *sig;
		PKCS12_SAFEBAG *bag;

		assert_non_null(p8);
		assert_non_null(alg);
		sig = PKCS8_set0_pbe(P12_PASS, -1, p8, alg);
		assert_non_null(sig);
		bag = PKCS12_SAFEBAG_create0_pkcs8(sig);
		assert_non_null(bag);
		assert_non_null(PKCS12_add_cert(&bags, pki.leaf));
		assert_true(sk_PKCS12_SAFEBAG_push(bags, bag) > 0);
		assert_int_equal(PKCS12_add_safe(&safes, bags, -1, 0, NULL), 1);
		p12 = PKCS12_add_safes(safes, 0);
		assert_non_null(p12);
		assert_int_equal(PKCS12_set_mac(p12, P12_PASS, -1, NULL, 0, 2048, EVP_sha256()), 1);
		der = p12_der(p12, &len);
		if (i == 0)
			assert_p12_gives(der, len, P12_PASS, pki.leaf, keys[K_RSA2048], NULL, 0);
		else
			assert_p12_refused(der, len, P12_PASS, CV_ERR_LIMIT,
					   "private key derives its key with scrypt at a cost of "
					   "33554432 rounds");
		OPENSSL_free(der);
		sk_PKCS7_pop_free(safes, PKCS7_free);
		sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
		PKCS8_PRIV_KEY_INFO_free(p8);
	}
	pki_free(&pki);
	pki_free(&other);
}

/* What `openssl pkcs12 -export -legacy`, old Java and old Windows write: certificates under
 * RC2-40, the key under 3DES, a SHA-1 MAC. */
static void test_pkcs12_legacy_algorithms(void **state)
{
	OSSL_PROVIDER *def, *legacy;
	OSSL_LIB_CTX *ctx;
	STACK_OF(X509) *sk, *ca = NULL;
	struct p12_pki pki;
	const unsigned char *q;
	unsigned char *der;
	X509 *chain[2], *x = NULL;
	EVP_PKEY *pk = NULL;
	PKCS12 *p12;
	size_t len;

	(void)state;
	ctx = OSSL_LIB_CTX_new();
	assert_non_null(ctx);
	def = OSSL_PROVIDER_load(ctx, "default");
	legacy = OSSL_PROVIDER_load(ctx, "legacy");
	if (def == NULL || legacy == NULL) {
		OSSL_PROVIDER_unload(def);
		OSSL_LIB_CTX_free(ctx);
		ERR_clear_error();
		skip();
	}
	pki_make(&pki, keys[K_RSA2048]);
	chain[0] = pki.inter;
	chain[1] = pki.root;
	sk = cert_stack(chain, 2);
	p12 = PKCS12_create_ex(P12_PASS, "legacy", keys[K_RSA2048], pki.leaf, sk,
			       NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
			       NID_pbe_WithSHA1And40BitRC2_CBC, 2048, -1, 0, ctx, NULL);
	sk_X509_free(sk);
	assert_non_null(p12);
	assert_int_equal(PKCS12_set_mac(p12, P12_PASS, -1, NULL, 0, 2048, EVP_sha1()), 1);
	der = p12_der(p12, &len);

	/* The default library context alone cannot read it. */
	q = der;
	p12 = d2i_PKCS12(NULL, &q, (long)len);
	assert_non_null(p12);
	assert_int_equal(PKCS12_parse(p12, P12_PASS, &pk, &x, &ca), 0);
	PKCS12_free(p12);
	ERR_clear_error();

	assert_p12_gives(der, len, P12_PASS, pki.leaf, keys[K_RSA2048], chain, 2);
	assert_p12_refused(der, len, "wrong-password", CV_ERR_BAD_PASSWORD, "incorrect password");

	/* Without the legacy provider on the machine the refusal says what is missing. */
	assert_int_equal(setenv("OPENSSL_MODULES", "/nonexistent", 1), 0);
	assert_p12_refused(der, len, P12_PASS, CV_ERR_BAD_ENCODING, "legacy provider");
	assert_int_equal(unsetenv("OPENSSL_MODULES"), 0);
	assert_p12_gives(der, len, P12_PASS, pki.leaf, keys[K_RSA2048], chain, 2);

	OPENSSL_free(der);
	pki_free(&pki);
	OSSL_PROVIDER_unload(legacy);
	OSSL_PROVIDER_unload(def);
	OSSL_LIB_CTX_free(ctx);
}

/* ---- PKCS#12 truststore out ---- */

#define JAVA_TRUSTED_USAGE "2.16.840.1.113894.746875.1.1"

/* Reads a truststore back bag by bag: each bag is a certificate bag with the alias as its
 * friendlyName, no localKeyID, and Java's trusted-key-usage attribute holding exactly
 * anyExtendedKeyUsage; AES-256-CBC under PBES2 with HMAC-SHA256, a SHA-256 MAC. */
static void assert_truststore(const unsigned char *der, size_t len, const char *pass,
			      X509 *const *certs, const char *const *aliases, size_t n)
{
	const X509_ALGOR *macalg;
	const ASN1_OBJECT *oid;
	const ASN1_TYPE *value;
	const STACK_OF(X509_ATTRIBUTE) *attrs;
	STACK_OF(PKCS12_SAFEBAG) *bags;
	STACK_OF(PKCS7) *safes;
	STACK_OF(X509) *ca = NULL;
	X509_ATTRIBUTE *attr;
	ASN1_OBJECT *usage;
	PBE2PARAM *pbe2;
	PBKDF2PARAM *kdf;
	EVP_PKEY *pk = NULL;
	X509 *x = NULL;
	PKCS7 *p7;
	const unsigned char *q = der;
	PKCS12 *p12;
	char *name;
	size_t i;
	int idx;

	p12 = d2i_PKCS12(NULL, &q, (long)len);
	assert_non_null(p12);
	assert_ptr_equal(q, der + len);
	assert_int_equal(PKCS12_verify_mac(p12, pass, -1), 1);
	assert_int_equal(PKCS12_verify_mac(p12, "changeit", -1), 0);
	PKCS12_get0_mac(NULL, &macalg, NULL, NULL, p12);
	X509_ALGOR_get0(&oid, NULL, NULL, macalg);
	assert_int_equal(OBJ_obj2nid(oid), NID_sha256);

	safes = PKCS12_unpack_authsafes(p12);
	assert_non_null(safes);
	assert_int_equal(sk_PKCS7_num(safes), 1);
	p7 = sk_PKCS7_value(safes, 0);
	assert_true(PKCS7_type_is_encrypted(p7));
	assert_int_equal(OBJ_obj2nid(p7->d.encrypted->enc_data->algorithm->algorithm),
			 NID_pbes2);
	pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM),
					 p7->d.encrypted->enc_data->algorithm->parameter);
	assert_non_null(pbe2);
	assert_int_equal(OBJ_obj2nid(pbe2->encryption->algorithm), NID_aes_256_cbc);
	assert_int_equal(OBJ_obj2nid(pbe2->keyfunc->algorithm), NID_id_pbkdf2);
	kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pbe2->keyfunc->parameter);
	assert_non_null(kdf);
	assert_non_null(kdf->prf);
	assert_int_equal(OBJ_obj2nid(kdf->prf->algorithm), NID_hmacWithSHA256);
	assert_int_equal(ASN1_INTEGER_get(kdf->iter), 10000);
	PBKDF2PARAM_free(kdf);
	PBE2PARAM_free(pbe2);

	bags = PKCS12_unpack_p7encdata(p7, pass, -1);
	assert_non_null(bags);
	assert_int_equal(sk_PKCS12_SAFEBAG_num(bags), (int)n);
	usage = OBJ_txt2obj(JAVA_TRUSTED_USAGE, 1);
	assert_non_null(usage);
	for (i = 0; i < n; i++) {
		const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, (int)i);

		assert_int_equal(PKCS12_SAFEBAG_get_nid(bag), NID_certBag);
		x = PKCS12_SAFEBAG_get1_cert(bag);
		assert_same_cert(x, certs[i]);
		X509_free(x);
		name = PKCS12_get_friendlyname((PKCS12_SAFEBAG *)bag);
		assert_non_null(name);
		assert_string_equal(name, aliases[i]);
		OPENSSL_free(name);
		assert_null(PKCS12_SAFEBAG_get0_attr(bag, NID_localKeyID));
		attrs = PKCS12_SAFEBAG_get0_attrs(bag);
		assert_int_equal(X509at_get_attr_count(attrs), 2);
		idx = X509at_get_attr_by_OBJ(attrs, usage, -1);
		assert_true(idx >= 0);
		attr = X509at_get_attr(attrs, idx);
		assert_int_equal(X509_ATTRIBUTE_count(attr), 1);
		value = X509_ATTRIBUTE_get0_type(attr, 0);
		assert_non_null(value);
		assert_int_equal(value->type, V_ASN1_OBJECT);
		assert_int_equal(OBJ_obj2nid(value->value.object), NID_anyExtendedKeyUsage);
	}
	ASN1_OBJECT_free(usage);
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	sk_PKCS7_pop_free(safes, PKCS7_free);

	/* OpenSSL's own reader finds the certificates and no key. */
	x = NULL;
	assert_int_equal(PKCS12_parse(p12, pass, &pk, &x, &ca), 1);
	assert_null(pk);
	assert_null(x);
	assert_int_equal(ca != NULL ? sk_X509_num(ca) : 0, (int)n);
	sk_X509_pop_free(ca, X509_free);
	PKCS12_free(p12);
	ERR_clear_error();
}

static int truststore(X509 *const *certs, const char *const *aliases, size_t n,
		      const char *pass, unsigned char **der, size_t *len, struct cv_errmsg *err)
{
	memset(err, 0, sizeof(*err));
	*der = NULL;
	*len = 0;
	return cv_x509_truststore_pkcs12(certs, aliases, n, pass, der, len, err);
}

static void test_truststore_pkcs12(void **state)
{
	static const char *const aliases[] = { "root-ca", "Issuing-CA", "zz-other", "α-ca" };
	struct p12_pki pki;
	X509 *certs[4];
	unsigned char *der, *der2;
	struct cv_errmsg err;
	size_t len, len2;

	(void)state;
	pki_make(&pki, keys[K_RSA2048]);
	certs[0] = pki.root;
	certs[1] = pki.inter;
	certs[2] = make_cert_full(keys[K_ED25519], "Other CA", NULL, NOW - DAY, NOW + DAY, NULL,
				  1, NULL, NULL);
	certs[3] = make_cert_full(keys[K_RSA3072], "Greek CA", NULL, NOW - DAY, NOW + DAY, NULL,
				  1, NULL, NULL);
	assert_int_equal(truststore(certs, aliases, 4, "trust-pw", &der, &len, &err), 0);
	assert_truststore(der, len, "trust-pw", certs, aliases, 4);

	/* The order given is the order written, whatever it is. */
	{
		X509 *rev[4] = { certs[3], certs[2], certs[1], certs[0] };
		const char *rev_aliases[4] = { aliases[3], aliases[2], aliases[1], aliases[0] };

		assert_int_equal(truststore(rev, rev_aliases, 4, "trust-pw", &der2, &len2, &err),
				 0);
		assert_truststore(der2, len2, "trust-pw", rev, rev_aliases, 4);
		free(der2);
	}
	/* One entry, and none. */
	assert_int_equal(truststore(certs, aliases, 1, "pw", &der2, &len2, &err), 0);
	assert_truststore(der2, len2, "pw", certs, aliases, 1);
	free(der2);
	assert_int_equal(truststore(certs, aliases, 0, "pw", &der2, &len2, &err), 0);
	assert_truststore(der2, len2, "pw", certs, aliases, 0);
	free(der2);

	/* Refusals. */
	assert_int_equal(truststore(certs, aliases, 2, NULL, &der2, &len2, &err),
			 CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "password"));
	assert_int_equal(truststore(certs, aliases, 2, "", &der2, &len2, &err),
			 CV_ERR_BAD_REQUEST);
	/* Only printable ASCII, 1 to 128 characters: what Java and OpenSSL read alike. */
	{
		static const char *const bad[] = { "p\xc3\xa4sswort", "tab\there", "new\nline",
						   "del\x7f" };
		char pw[CV_X509_TRUSTSTORE_PASSWORD_MAX + 2];
		size_t k;

		for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			assert_int_equal(truststore(certs, aliases, 2, bad[k], &der2, &len2, &err),
					 CV_ERR_BAD_REQUEST);
			assert_non_null(strstr(err.text, "printable ASCII"));
			assert_null(strstr(err.text, bad[k]));
		}
		memset(pw, '~', sizeof(pw) - 1);
		pw[sizeof(pw) - 1] = '\0';
		assert_int_equal(truststore(certs, aliases, 2, pw, &der2, &len2, &err),
				 CV_ERR_BAD_REQUEST);
		pw[CV_X509_TRUSTSTORE_PASSWORD_MAX] = '\0';
		pw[0] = ' ';
		assert_int_equal(truststore(certs, aliases, 2, pw, &der2, &len2, &err), 0);
		assert_truststore(der2, len2, pw, certs, aliases, 2);
		free(der2);
		der2 = NULL;
	}
	{
		const char *same[2] = { "Root-CA", "root-ca" };
		const char *empty[2] = { "root-ca", "" };
		const char *bad_utf8[2] = { "root-ca", "caf\xe9" };

		assert_int_equal(truststore(certs, same, 2, "pw", &der2, &len2, &err),
				 CV_ERR_BAD_REQUEST);
		assert_non_null(strstr(err.text, "differ only in case"));
		assert_int_equal(truststore(certs, empty, 2, "pw", &der2, &len2, &err),
				 CV_ERR_BAD_REQUEST);
		assert_non_null(strstr(err.text, "entry 2 has an empty alias"));
		assert_int_equal(truststore(certs, bad_utf8, 2, "pw", &der2, &len2, &err),
				 CV_ERR_BAD_REQUEST);
		assert_non_null(strstr(err.text, "UTF-8"));
	}
	assert_null(der2);
	assert_int_equal(ERR_peek_error(), 0);
	free(der);
	X509_free(certs[2]);
	X509_free(certs[3]);
	pki_free(&pki);
}

/* An uploaded file: what cv_x509_bundle_parse makes of it. */
static int bundle(const void *bytes, size_t len, const char *pw, X509 **cert, EVP_PKEY **key,
		  STACK_OF(X509) **chain, struct cv_errmsg *err)
{
	memset(err, 0, sizeof(*err));
	*cert = NULL;
	*chain = NULL;
	return cv_x509_bundle_parse(bytes, len, CV_ENC_FILE, pw, cert, key, chain, err);
}

static void assert_bundle_gives(const void *bytes, size_t len, const char *pw, X509 *leaf,
				EVP_PKEY *leaf_key, X509 *const *chain, size_t n)
{
	STACK_OF(X509) *got_chain;
	struct cv_errmsg err;
	EVP_PKEY *got_key;
	X509 *got;
	size_t i;

	if (bundle(bytes, len, pw, &got, &got_key, &got_chain, &err) != 0)
		fail_msg("refused: %s", err.text);
	assert_same_cert(got, leaf);
	if (leaf_key == NULL)
		assert_null(got_key);
	else
		assert_int_equal(EVP_PKEY_eq(got_key, leaf_key), 1);
	assert_int_equal(sk_X509_num(got_chain), (int)n);
	for (i = 0; i < n; i++)
		assert_same_cert(sk_X509_value(got_chain, (int)i), chain[i]);
	assert_int_equal(ERR_peek_error(), 0);
	X509_free(got);
	EVP_PKEY_free(got_key);
	sk_X509_pop_free(got_chain, X509_free);
}

static void assert_bundle_refused(const void *bytes, size_t len, const char *pw, int code,
				  const char *words)
{
	STACK_OF(X509) *chain;
	struct cv_errmsg err;
	EVP_PKEY *key = NULL;
	X509 *cert;

	assert_int_equal(bundle(bytes, len, pw, &cert, &key, &chain, &err), code);
	if (strstr(err.text, words) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.text, words);
	X509_free(cert);
	EVP_PKEY_free(key);
	sk_X509_pop_free(chain, X509_free);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_bundle_parse(void **state)
{
	struct p12_pki pki;
	char *root, *inter, *leaf, *key, *other_key, *text, *text2;
	unsigned char *der, *p12;
	size_t der_len, p12_len;
	static const unsigned char junk[] = { 0x30, 0x82, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef };

	(void)state;
	pki_make(&pki, keys[K_RSA2048]);
	root = tc_cert_pem(pki.root);
	inter = tc_cert_pem(pki.inter);
	leaf = tc_cert_pem(pki.leaf);
	key = tc_key_pem(keys[K_RSA2048], "pkcs1", NULL);
	other_key = tc_key_pem(keys[K_P384], "pkcs8", NULL);

	/* A PEM bundle in any order: the leaf is the key's certificate, the chain the others
	 * in the file's order. */
	text = concat(inter, key, leaf);
	text2 = concat(text, root, "\n");
	assert_bundle_gives(text2, strlen(text2), NULL, pki.leaf, keys[K_RSA2048],
			    (X509 *[]){ pki.inter, pki.root }, 2);
	free(text);
	free(text2);
	/* Without a key: the first certificate is the leaf. */
	text = concat(leaf, inter, "");
	assert_bundle_gives(text, strlen(text), NULL, pki.leaf, NULL, (X509 *[]){ pki.inter },
			    1);
	free(text);
	/* An encrypted key in the bundle takes the password. */
	free(key);
	key = tc_key_pem(keys[K_RSA2048], "pkcs8enc", "pw");
	text = concat(key, leaf, "");
	assert_bundle_gives(text, strlen(text), "pw", pki.leaf, keys[K_RSA2048], NULL, 0);
	assert_bundle_refused(text, strlen(text), "wrong", CV_ERR_BAD_PASSWORD, "password");
	free(text);
	/* One DER certificate. */
	der = cert_der(pki.leaf, &der_len);
	assert_bundle_gives(der, der_len, NULL, pki.leaf, NULL, NULL, 0);
	/* PKCS#12, recognised by its content, and through pkcs12_parse_text as base64. */
	p12 = p12_make(P12_PASS, keys[K_RSA2048], pki.leaf, (X509 *[]){ pki.inter }, 1,
		       &p12_len);
	assert_bundle_gives(p12, p12_len, P12_PASS, pki.leaf, keys[K_RSA2048],
			    (X509 *[]){ pki.inter }, 1);
	assert_bundle_refused(p12, p12_len, "nope", CV_ERR_BAD_PASSWORD, "password");
	{
		char *b = b64(p12, p12_len, 1);
		struct cv_errmsg err = { "" };
		STACK_OF(X509) *chain = NULL;
		EVP_PKEY *k = NULL;
		X509 *c = NULL;

		assert_int_equal(cv_x509_pkcs12_parse_text(b, strlen(b), CV_ENC_BASE64, P12_PASS,
							   &c, &k, &chain, &err), 0);
		assert_same_cert(c, pki.leaf);
		X509_free(c);
		EVP_PKEY_free(k);
		sk_X509_pop_free(chain, X509_free);
		assert_int_equal(cv_x509_pkcs12_parse_text(b, strlen(b), CV_ENC_PEM, P12_PASS,
							   &c, &k, &chain, &err),
				 CV_ERR_BAD_REQUEST);
		assert_int_equal(cv_x509_pkcs12_parse_text(leaf, strlen(leaf), CV_ENC_FILE,
							   P12_PASS, &c, &k, &chain, &err),
				 CV_ERR_BAD_ENCODING);
		assert_non_null(strstr(err.text, "PEM text"));
		free(b);
	}
	/* Refusals. */
	text = concat(leaf, key, other_key);
	assert_bundle_refused(text, strlen(text), "pw", CV_ERR_BAD_ENCODING,
			      "more than one private key");
	free(text);
	assert_bundle_refused(other_key, strlen(other_key), NULL, CV_ERR_BAD_ENCODING,
			      "no certificate");
	assert_bundle_refused(junk, sizeof(junk), NULL, CV_ERR_BAD_ENCODING,
			      "neither PEM, a DER certificate nor a PKCS#12 file");
	assert_bundle_refused(" \n", 2, NULL, CV_ERR_BAD_ENCODING, "empty");
	text = concat(leaf, "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n", "");
	assert_bundle_refused(text, strlen(text), NULL, CV_ERR_BAD_ENCODING, "PUBLIC KEY");
	free(text);
	/* The key of another certificate: taken here, refused by the import check later. */
	text = concat(leaf, other_key, "");
	assert_bundle_gives(text, strlen(text), NULL, pki.leaf, keys[K_P384], NULL, 0);
	free(text);

	free(p12);
	free(der);
	free(root);
	free(inter);
	free(leaf);
	free(key);
	free(other_key);
	pki_free(&pki);
}

/* ---- revocation: CRLs and OCSP ---- */

/* A certificate with extensions added by config text (nid, value), re-signed by signer. */
static void add_ext(X509 *cert, int nid, const char *value, EVP_PKEY *signer)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, nid, value);

	assert_non_null(ext);
	assert_int_equal(X509_add_ext(cert, ext, -1), 1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(cert, signer, EVP_sha256()) > 0);
}

static X509 *issued(EVP_PKEY *key, const char *cn, int is_ca, long serial, X509 *issuer,
		    EVP_PKEY *issuer_key)
{
	struct tc_cert_spec spec = { 0 };

	spec.cn = cn;
	spec.not_before = NOW - 30 * DAY;
	spec.not_after = NOW + 365 * DAY;
	spec.is_ca = is_ca;
	spec.serial = serial;
	spec.issuer = issuer;
	spec.issuer_key = issuer_key;
	return tc_cert_new(key, &spec);
}

/* A CRL from ca (signed with key) dated this_update..next_update (0: none) listing serials
 * with reason keyCompromise. */
static X509_CRL *make_crl(X509 *ca, EVP_PKEY *key, time_t this_update, time_t next_update,
			  const long *serials, size_t n)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t = ASN1_TIME_new();
	size_t i;

	assert_non_null(crl);
	assert_int_equal(X509_CRL_set_version(crl, X509_CRL_VERSION_2), 1);
	assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)), 1);
	assert_non_null(ASN1_TIME_set(t, this_update));
	assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
	if (next_update != 0) {
		assert_non_null(ASN1_TIME_set(t, next_update));
		assert_int_equal(X509_CRL_set1_nextUpdate(crl, t), 1);
	}
	for (i = 0; i < n; i++) {
		X509_REVOKED *rev = X509_REVOKED_new();
		ASN1_INTEGER *serial = ASN1_INTEGER_new();
		ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();

		assert_int_equal(ASN1_INTEGER_set(serial, serials[i]), 1);
		assert_int_equal(X509_REVOKED_set_serialNumber(rev, serial), 1);
		assert_non_null(ASN1_TIME_set(t, this_update - DAY));
		assert_int_equal(X509_REVOKED_set_revocationDate(rev, t), 1);
		assert_int_equal(ASN1_ENUMERATED_set(reason, 1), 1);
		assert_int_equal(X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0), 1);
		assert_int_equal(X509_CRL_add0_revoked(crl, rev), 1);
		ASN1_INTEGER_free(serial);
		ASN1_ENUMERATED_free(reason);
	}
	assert_int_equal(X509_CRL_sort(crl), 1);
	assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
	ASN1_TIME_free(t);
	return crl;
}

static void test_crl_parse_verify_judge(void **state)
{
	static const long revoked[] = { 0x1002 };
	struct cv_x509_crl_info info;
	struct cv_revocation rev;
	struct cv_errmsg err = { "" };
	X509 *ca, *other_ca, *good, *bad;
	X509_CRL *crl, *back = NULL;
	STACK_OF(X509) *trusted = sk_X509_new_null();
	unsigned char *der = NULL;
	char *b64 = NULL;
	BIO *bio;
	BUF_MEM *mem;
	int len;

	(void)state;
	ca = issued(keys[K_P256], "Test CA", 1, 1, NULL, NULL);
	other_ca = issued(keys[K_P256B], "Test CA", 1, 2, NULL, NULL); /* same name, other key */
	good = issued(keys[K_P384], "good.example", 0, 0x1001, ca, keys[K_P256]);
	bad = issued(keys[K_P384], "bad.example", 0, 0x1002, ca, keys[K_P256]);
	crl = make_crl(ca, keys[K_P256], NOW - DAY, NOW + 6 * DAY, revoked, 1);

	/* PEM with text around it, base64 of DER; two CRLs or a certificate are refused. */
	bio = BIO_new(BIO_s_mem());
	BIO_puts(bio, "# issued by Test CA\n");
	assert_int_equal(PEM_write_bio_X509_CRL(bio, crl), 1);
	BIO_get_mem_ptr(bio, &mem);
	assert_int_equal(cv_x509_crl_parse(mem->data, mem->length, CV_ENC_PEM, &back, &err), 0);
	X509_CRL_free(back);
	back = NULL;
	assert_int_equal(PEM_write_bio_X509_CRL(bio, crl), 1);
	BIO_get_mem_ptr(bio, &mem);
	assert_int_equal(cv_x509_crl_parse(mem->data, mem->length, CV_ENC_PEM, &back, &err),
			 CV_ERR_BAD_ENCODING);
	assert_non_null(strstr(err.text, "more than one"));
	BIO_free(bio);
	len = i2d_X509_CRL(crl, &der);
	assert_true(len > 0);
	b64 = calloc(1, (size_t)len * 2 + 4);
	assert_int_equal(EVP_EncodeBlock((unsigned char *)b64, der, len) > 0, 1);
	assert_int_equal(cv_x509_crl_parse(b64, strlen(b64), CV_ENC_BASE64, &back, &err), 0);
	assert_int_equal(cv_x509_crl_parse("junk", 4, CV_ENC_PEM, &back, &err),
			 CV_ERR_BAD_ENCODING);

	assert_int_equal(cv_x509_crl_info_get(back, &info), 0);
	assert_string_equal(info.issuer, "CN=Test CA");
	assert_int_equal(info.this_update, NOW - DAY);
	assert_int_equal(info.next_update, NOW + 6 * DAY);
	assert_int_equal(info.n_revoked, 1);
	assert_string_equal(info.number, "");

	/* Issued by the CA that holds the key, not by another of the same name. */
	assert_int_equal(cv_x509_crl_issued_by(back, ca), 1);
	assert_int_equal(cv_x509_crl_issued_by(back, other_ca), 0);
	assert_int_equal(cv_x509_crl_issued_by(back, good), 0);
	assert_int_equal(cv_x509_cert_issued_by(good, ca), 1);
	assert_int_equal(cv_x509_cert_issued_by(good, other_ca), 0);
	sk_X509_push(trusted, other_ca);
	sk_X509_push(trusted, ca);
	assert_ptr_equal(cv_x509_issuer_find(good, NULL, trusted), ca);
	assert_null(cv_x509_issuer_find(ca, NULL, NULL));

	cv_x509_crl_judge(good, back, NOW, 300, "crl:CN=Test CA", &rev);
	assert_int_equal(rev.status, CV_REV_GOOD);
	assert_string_equal(rev.source, "crl:CN=Test CA");
	cv_x509_crl_judge(bad, back, NOW, 300, "crl:CN=Test CA", &rev);
	assert_int_equal(rev.status, CV_REV_REVOKED);
	assert_int_equal(rev.reason, 1);
	assert_int_equal(rev.revoked_at, NOW - 2 * DAY);
	/* Past its next update (and the skew) the CRL cannot tell, but a listed serial is
	 * still revoked. */
	cv_x509_crl_judge(good, back, NOW + 6 * DAY + 299, 300, "s", &rev);
	assert_int_equal(rev.status, CV_REV_GOOD);
	cv_x509_crl_judge(good, back, NOW + 6 * DAY + 301, 300, "s", &rev);
	assert_int_equal(rev.status, CV_REV_UNKNOWN);
	assert_non_null(strstr(rev.detail, "stale"));
	cv_x509_crl_judge(bad, back, NOW + 30 * DAY, 300, "s", &rev);
	assert_int_equal(rev.status, CV_REV_REVOKED);
	cv_x509_crl_judge(good, back, NOW - 2 * DAY, 300, "s", &rev);
	assert_int_equal(rev.status, CV_REV_UNKNOWN);
	assert_string_equal(cv_revocation_status_name(CV_REV_NOT_CHECKED), "not_checked");

	sk_X509_free(trusted);
	free(b64);
	OPENSSL_free(der);
	X509_CRL_free(back);
	X509_CRL_free(crl);
	X509_free(ca);
	X509_free(other_ca);
	X509_free(good);
	X509_free(bad);
}

static void test_revocation_urls_and_ocsp_request(void **state)
{
	X509 *ca, *leaf;
	OCSP_REQUEST *req;
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	char url[64];

	(void)state;
	ca = issued(keys[K_P256], "Test CA", 1, 1, NULL, NULL);
	leaf = issued(keys[K_P384], "leaf.example", 0, 5, ca, keys[K_P256]);
	assert_int_equal(cv_x509_ocsp_url(leaf, url, sizeof(url)), 0);
	assert_int_equal(cv_x509_crl_url(leaf, url, sizeof(url)), 0);
	add_ext(leaf, NID_info_access,
		"OCSP;URI:ldap://ocsp.example/,OCSP;URI:http://ocsp.example/,"
		"caIssuers;URI:http://ca.example/ca.crt", keys[K_P256]);
	add_ext(leaf, NID_crl_distribution_points,
		"URI:ldap://crl.example/cn=ca,URI:HTTPS://crl.example/ca.crl", keys[K_P256]);
	assert_int_equal(cv_x509_ocsp_url(leaf, url, sizeof(url)), 1);
	assert_string_equal(url, "http://ocsp.example/");
	assert_int_equal(cv_x509_crl_url(leaf, url, sizeof(url)), 1);
	assert_string_equal(url, "HTTPS://crl.example/ca.crl");
	/* A URL that does not fit is none. */
	assert_int_equal(cv_x509_ocsp_url(leaf, url, 10), 0);

	assert_int_equal(cv_x509_ocsp_request(leaf, ca, 1, &der, &len), 0);
	p = der;
	req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
	assert_non_null(req);
	assert_int_equal(OCSP_request_onereq_count(req), 1);
	assert_true(OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1) >= 0);
	OCSP_REQUEST_free(req);
	OPENSSL_free(der);
	X509_free(leaf);
	X509_free(ca);
}

/* An OCSP response about cert (issued by ca) with status, signed by signer/key, dated
 * this_update..next_update (0: none), carrying signer when it is not ca. */
static unsigned char *make_ocsp(X509 *cert, X509 *ca, X509 *signer, EVP_PKEY *key, int status,
				time_t this_update, time_t next_update, size_t *ret_len)
{
	OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
	OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), cert, ca);
	ASN1_TIME *tu = ASN1_TIME_set(NULL, this_update), *nu = NULL, *rt = NULL;
	STACK_OF(X509) *certs = sk_X509_new_null();
	OCSP_RESPONSE *resp;
	unsigned char *der = NULL;
	int len;

	if (next_update != 0)
		nu = ASN1_TIME_set(NULL, next_update);
	if (status == V_OCSP_CERTSTATUS_REVOKED)
		rt = ASN1_TIME_set(NULL, this_update - DAY);
	assert_non_null(OCSP_basic_add1_status(bs, id, status,
					       status == V_OCSP_CERTSTATUS_REVOKED ? 1 : -1, rt,
					       tu, nu));
	if (signer != ca)
		sk_X509_push(certs, signer);
	assert_int_equal(OCSP_basic_sign(bs, signer, key, EVP_sha256(), certs, 0), 1);
	resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
	len = i2d_OCSP_RESPONSE(resp, &der);
	assert_true(len > 0);
	*ret_len = (size_t)len;
	OCSP_RESPONSE_free(resp);
	sk_X509_free(certs);
	ASN1_TIME_free(tu);
	ASN1_TIME_free(nu);
	ASN1_TIME_free(rt);
	OCSP_CERTID_free(id);
	OCSP_BASICRESP_free(bs);
	return der;
}

static enum cv_revocation_status judge_ocsp(unsigned char *der, size_t len, X509 *cert, X509 *ca,
					    time_t now, const char *detail)
{
	struct cv_revocation rev;

	cv_x509_ocsp_judge(der, len, cert, ca, now, 300, 3600, "ocsp:http://o.example/", &rev);
	OPENSSL_free(der);
	if (detail != NULL && strstr(rev.detail, detail) == NULL)
		fail_msg("detail \"%s\" lacks \"%s\"", rev.detail, detail);
	assert_string_equal(rev.source, "ocsp:http://o.example/");
	assert_int_equal(ERR_peek_error(), 0);
	return rev.status;
}

static void test_ocsp_judge(void **state)
{
	X509 *ca, *leaf, *other, *responder, *no_eku, *stranger;
	OCSP_RESPONSE *resp;
	unsigned char *der = NULL;
	size_t len;
	int l;

	(void)state;
	ca = issued(keys[K_P256], "Test CA", 1, 1, NULL, NULL);
	leaf = issued(keys[K_P384], "leaf.example", 0, 5, ca, keys[K_P256]);
	other = issued(keys[K_P384], "other.example", 0, 6, ca, keys[K_P256]);
	responder = issued(keys[K_P256B], "Test OCSP", 0, 7, ca, keys[K_P256]);
	add_ext(responder, NID_ext_key_usage, "OCSPSigning", keys[K_P256]);
	no_eku = issued(keys[K_P256B], "Test OCSP", 0, 8, ca, keys[K_P256]);
	stranger = issued(keys[K_P256B], "Test CA", 1, 9, NULL, NULL);

	/* Signed by the issuer, or by a responder it delegated with the OCSP signing EKU. */
	der = make_ocsp(leaf, ca, ca, keys[K_P256], V_OCSP_CERTSTATUS_GOOD, NOW - 60, NOW + DAY,
			&len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, "good"), CV_REV_GOOD);
	der = make_ocsp(leaf, ca, responder, keys[K_P256B], V_OCSP_CERTSTATUS_GOOD, NOW - 60,
			NOW + DAY, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, NULL), CV_REV_GOOD);
	der = make_ocsp(leaf, ca, ca, keys[K_P256], V_OCSP_CERTSTATUS_REVOKED, NOW - 60,
			NOW + DAY, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, "reason keyCompromise"), CV_REV_REVOKED);
	der = make_ocsp(leaf, ca, ca, keys[K_P256], V_OCSP_CERTSTATUS_UNKNOWN, NOW - 60,
			NOW + DAY, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, "does not know"), CV_REV_UNKNOWN);

	/* Who may not sign. */
	der = make_ocsp(leaf, ca, no_eku, keys[K_P256B], V_OCSP_CERTSTATUS_GOOD, NOW - 60,
			NOW + DAY, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, "OCSP signing"), CV_REV_UNKNOWN);
	der = make_ocsp(leaf, ca, stranger, keys[K_P256B], V_OCSP_CERTSTATUS_GOOD, NOW - 60,
			NOW + DAY, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, NULL), CV_REV_UNKNOWN);

	/* Freshness, with 300 s of skew; without nextUpdate, an hour. */
	der = make_ocsp(leaf, ca, ca, keys[K_P256], V_OCSP_CERTSTATUS_GOOD, NOW - 2 * DAY,
			NOW - 301, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, "stale"), CV_REV_UNKNOWN);
	der = make_ocsp(leaf, ca, ca, keys[K_P256], V_OCSP_CERTSTATUS_GOOD, NOW - 2 * DAY,
			NOW - 299, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, NULL), CV_REV_GOOD);
	der = make_ocsp(leaf, ca, ca, keys[K_P256], V_OCSP_CERTSTATUS_GOOD, NOW + 301, 0, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, "future"), CV_REV_UNKNOWN);
	der = make_ocsp(leaf, ca, ca, keys[K_P256], V_OCSP_CERTSTATUS_GOOD, NOW - 3500, 0, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, NULL), CV_REV_GOOD);
	der = make_ocsp(leaf, ca, ca, keys[K_P256], V_OCSP_CERTSTATUS_GOOD, NOW - 3700, 0, &len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, "stale"), CV_REV_UNKNOWN);

	/* About another certificate; not OCSP; a responder that says try later. */
	der = make_ocsp(other, ca, ca, keys[K_P256], V_OCSP_CERTSTATUS_GOOD, NOW - 60, NOW + DAY,
			&len);
	assert_int_equal(judge_ocsp(der, len, leaf, ca, NOW, "another"), CV_REV_UNKNOWN);
	der = OPENSSL_malloc(4);
	memcpy(der, "\x30\x02\x0a\x00", 4);
	assert_int_equal(judge_ocsp(der, 3, leaf, ca, NOW, "not an OCSP"), CV_REV_UNKNOWN);
	resp = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER, NULL);
	der = NULL;
	l = i2d_OCSP_RESPONSE(resp, &der);
	OCSP_RESPONSE_free(resp);
	assert_int_equal(judge_ocsp(der, (size_t)l, leaf, ca, NOW, "trylater"), CV_REV_UNKNOWN);

	X509_free(ca);
	X509_free(leaf);
	X509_free(other);
	X509_free(responder);
	X509_free(no_eku);
	X509_free(stranger);
}

/* The signing algorithms (issue 18 part 4): which key takes which, the data the token
 * signs, and ECDSA's two encodings, each checked by OpenSSL's own verification. */
static void test_sign_algorithms(void **state)
{
	static const struct {
		const char *alg;
		int fits[5];      /* RSA-2048, P-256, P-384, P-521, Ed25519 */
	} table[] = {
		{ "RS256", { 1, 0, 0, 0, 0 } },        { "PS512", { 1, 0, 0, 0, 0 } },
		{ "rsa-pss-sha384", { 1, 0, 0, 0, 0 } }, { "ES256", { 0, 1, 0, 0, 0 } },
		{ "ES384", { 0, 0, 1, 0, 0 } },        { "ES512", { 0, 0, 0, 1, 0 } },
		{ "ecdsa-sha256", { 0, 1, 1, 1, 0 } }, { "ecdsa-sha512", { 0, 1, 1, 1, 0 } },
		{ "EdDSA", { 0, 0, 0, 0, 1 } },        { "ed25519", { 0, 0, 0, 0, 1 } },
	};
	const int kinds[5] = { K_RSA2048, K_P256, K_P384, K_P521, K_ED25519 };
	const struct cv_sign_alg *alg;
	struct cv_errmsg err;
	unsigned char digest[64], input[CV_SIGN_INPUT_MAX], sig[600], *der = NULL;
	const unsigned char *p;
	size_t i, k, len, sig_len, der_len = 0, digest_len;
	char takes[200];
	EVP_PKEY_CTX *ctx;
	ECDSA_SIG *es;

	(void)state;
	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		assert_int_equal(cv_x509_sign_alg_find(table[i].alg, &alg, &err), 0);
		for (k = 0; k < 5; k++)
			if ((cv_x509_sign_alg_fits(alg, keys[kinds[k]], &err) == 0) !=
			    table[i].fits[k])
				fail_msg("%s on key %zu: %s", table[i].alg, k, err.text);
	}
	assert_int_equal(cv_x509_sign_alg_find("HS256", &alg, &err), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_x509_sign_alg_find("rs256", &alg, &err), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_x509_sign_alg_find(NULL, &alg, &err), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_x509_sign_alg_find("ES256", &alg, &err), 0);
	assert_int_equal(cv_x509_sign_alg_fits(alg, keys[K_P384], &err),
			 CV_ERR_ALGORITHM_MISMATCH);
	assert_non_null(strstr(err.text, "P-384"));
	assert_non_null(strstr(err.text, "ES384"));
	cv_x509_sign_algs_for(keys[K_ED25519], takes, sizeof(takes));
	assert_string_equal(takes, "EdDSA ed25519");

	/* RSASSA-PKCS1-v1_5: the DigestInfo signed raw verifies as a signature over the hash. */
	for (i = 0; i < 3; i++) {
		static const char *const names[] = { "RS256", "RS384", "RS512" };

		assert_int_equal(cv_x509_sign_alg_find(names[i], &alg, &err), 0);
		RAND_bytes(digest, (int)alg->digest_len);
		len = sizeof(input);
		assert_int_equal(cv_x509_sign_input(alg, digest, alg->digest_len - 1, input, &len,
						    &err), CV_ERR_DIGEST_LENGTH);
		assert_int_equal(cv_x509_sign_input(alg, digest, alg->digest_len, input, &len,
						    &err), 0);
		assert_int_equal(len, 19 + alg->digest_len);
		ctx = EVP_PKEY_CTX_new(keys[K_RSA2048], NULL);
		sig_len = sizeof(sig);
		assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
		assert_int_equal(EVP_PKEY_sign(ctx, sig, &sig_len, input, len), 1);
		EVP_PKEY_CTX_free(ctx);
		ctx = EVP_PKEY_CTX_new(keys[K_RSA2048], NULL);
		assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx,
							       EVP_get_digestbynid(alg->md_nid)), 1);
		assert_int_equal(EVP_PKEY_verify(ctx, sig, sig_len, digest, alg->digest_len), 1);
		EVP_PKEY_CTX_free(ctx);
	}
	/* PSS and ECDSA sign the hash itself; EdDSA takes no digest. */
	assert_int_equal(cv_x509_sign_alg_find("PS384", &alg, &err), 0);
	len = sizeof(input);
	assert_int_equal(cv_x509_sign_input(alg, digest, 48, input, &len, &err), 0);
	assert_int_equal(len, 48);
	assert_int_equal(cv_x509_sign_alg_find("EdDSA", &alg, &err), 0);
	assert_int_equal(cv_x509_sign_input(alg, digest, 32, input, &len, &err),
			 CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_x509_sign_digest(alg, digest, 1, digest, &digest_len),
			 CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_x509_sign_alg_find("ecdsa-sha384", &alg, &err), 0);
	assert_int_equal(cv_x509_sign_digest(alg, (const unsigned char *)"abc", 3, digest,
					     &digest_len), 0);
	assert_int_equal(digest_len, 48);

	/* ECDSA: r || s back to DER is the DER OpenSSL made, and verifies. */
	for (k = 1; k < 4; k++) {
		unsigned char rs[132];
		const BIGNUM *r, *s;
		size_t half = k == 1 ? 32 : k == 2 ? 48 : 66;

		ctx = EVP_PKEY_CTX_new(keys[kinds[k]], NULL);
		sig_len = sizeof(sig);
		assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
		assert_int_equal(EVP_PKEY_sign(ctx, sig, &sig_len, digest, 48), 1);
		EVP_PKEY_CTX_free(ctx);
		p = sig;
		es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
		assert_non_null(es);
		ECDSA_SIG_get0(es, &r, &s);
		assert_int_equal(BN_bn2binpad(r, rs, (int)half), (int)half);
		assert_int_equal(BN_bn2binpad(s, rs + half, (int)half), (int)half);
		ECDSA_SIG_free(es);
		assert_int_equal(cv_x509_ecdsa_der(rs, 2 * half, &der, &der_len), 0);
		assert_int_equal(der_len, sig_len);
		assert_memory_equal(der, sig, sig_len);
		OPENSSL_free(der);
		der = NULL;
		assert_int_equal(cv_x509_ecdsa_der(rs, 2 * half - 1, &der, &der_len),
				 CV_ERR_BAD_ENCODING);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encoding_names),
		cmocka_unit_test(test_cert_parse_every_encoding),
		cmocka_unit_test(test_cert_parse_refusals),
		cmocka_unit_test(test_chain_parse),
		cmocka_unit_test(test_chain_must_link),
		cmocka_unit_test(test_info_names_and_cn),
		cmocka_unit_test(test_key_parse_every_format),
		cmocka_unit_test(test_key_parse_text_around),
		cmocka_unit_test(test_key_parse_passwords),
		cmocka_unit_test(test_key_parse_refusals),
		cmocka_unit_test(test_key_match),
		cmocka_unit_test(test_unsupported_keys),
		cmocka_unit_test(test_weak_signatures),
		cmocka_unit_test(test_dates_checked_to_the_second),
		cmocka_unit_test(test_chain_entries_must_be_ca),
		cmocka_unit_test(test_status_boundaries),
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_expires_in_days),
		cmocka_unit_test(test_info_fields),
		cmocka_unit_test(test_info_cache),
		cmocka_unit_test(test_pem_cert_count),
		cmocka_unit_test(test_der_pem_as_openssl_writes_it),
		cmocka_unit_test(test_info_key_kinds),
		cmocka_unit_test(test_key_kind_of_odd_descriptions),
		cmocka_unit_test(test_info_domains_cn_fallback),
		cmocka_unit_test(test_info_refuses_nul_in_san),
		cmocka_unit_test(test_info_caps_sans),
		cmocka_unit_test(test_dates_after_2050),
		cmocka_unit_test(test_der_and_pem_roundtrip),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_name_covers_table),
		cmocka_unit_test(test_names_cover_any),
		cmocka_unit_test(test_domain_normalize),
		cmocka_unit_test(test_domain_wildcard),
		cmocka_unit_test(test_pkcs12_key_leaf_chain),
		cmocka_unit_test(test_pkcs12_passwords),
		cmocka_unit_test(test_pkcs12_refusals),
		cmocka_unit_test(test_pkcs12_legacy_algorithms),
		cmocka_unit_test(test_truststore_pkcs12),
		cmocka_unit_test(test_kdf_cost),
		cmocka_unit_test(test_bundle_parse),
		cmocka_unit_test(test_crl_parse_verify_judge),
		cmocka_unit_test(test_revocation_urls_and_ocsp_request),
		cmocka_unit_test(test_ocsp_judge),
		cmocka_unit_test(test_sign_algorithms),
	};

	return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
