/* Test support: certificates and keys made with OpenSSL, with exact dates and key types. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "testcert.h"

EVP_PKEY *tc_key_new(const char *key_type)
{
	static const struct {
		const char *name;
		const char *alg;
		const char *curve; /* NULL: bits is the RSA size */
		size_t bits;
	} types[] = {
		{ "rsa1024", "RSA", NULL, 1024 },      { "rsa2048", "RSA", NULL, 2048 },
		{ "rsa3072", "RSA", NULL, 3072 },      { "rsa4096", "RSA", NULL, 4096 },
		{ "rsa8192", "RSA", NULL, 8192 },      { "p256", "EC", "P-256", 0 },
		{ "p384", "EC", "P-384", 0 },          { "p521", "EC", "P-521", 0 },
		{ "secp256k1", "EC", "secp256k1", 0 }, { "ed25519", "ED25519", NULL, 0 },
		{ "ed448", "ED448", NULL, 0 },
	};
	size_t i;

	if (key_type == NULL)
		return NULL;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(key_type, types[i].name) != 0)
			continue;
		if (types[i].curve != NULL)
			return EVP_PKEY_Q_keygen(NULL, NULL, types[i].alg, types[i].curve);
		if (types[i].bits != 0)
			return EVP_PKEY_Q_keygen(NULL, NULL, types[i].alg, types[i].bits);
		return EVP_PKEY_Q_keygen(NULL, NULL, types[i].alg);
	}
	return NULL;
}

/* A random positive 63-bit serial, or the one asked for. */
static int set_serial(X509 *x, long serial)
{
	unsigned char bytes[8];
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ai = NULL;
	int ok = 0;

	if (serial != 0)
		return ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1;
	if (RAND_bytes(bytes, sizeof(bytes)) != 1)
		goto out;
	bytes[0] = (unsigned char)((bytes[0] & 0x7f) | 0x01);
	bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
	if (bn == NULL)
		goto out;
	ai = BN_to_ASN1_INTEGER(bn, NULL);
	if (ai == NULL)
		goto out;
	ok = X509_set_serialNumber(x, ai) == 1;
out:
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return ok;
}

static int set_time(X509 *x, time_t t, int after)
{
	ASN1_TIME *at;
	int ok;

	at = ASN1_TIME_adj(NULL, t, 0, 0);
	if (at == NULL)
		return 0;
	ok = after ? X509_set1_notAfter(x, at) : X509_set1_notBefore(x, at);
	ASN1_TIME_free(at);
	return ok == 1;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext;
	int ok;

	ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	if (ext == NULL)
		return 0;
	ok = X509_add_ext(x, ext, -1) == 1;
	X509_EXTENSION_free(ext);
	return ok;
}

/* "a.example,IP:10.0.0.1" -> "DNS:a.example,IP:10.0.0.1": entries without a type are DNS. */
static char *san_value(const char *sans)
{
	size_t cap = strlen(sans) * 2 + 8, n = 0;
	const char *p = sans, *comma;
	char *out;

	out = malloc(cap);
	if (out == NULL)
		return NULL;
	out[0] = '\0';
	for (;;) {
		size_t len;

		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		n += (size_t)snprintf(out + n, cap - n, "%s%s%.*s", n > 0 ? "," : "",
				      memchr(p, ':', len) != NULL ? "" : "DNS:", (int)len, p);
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return out;
}

X509 *tc_cert_new(EVP_PKEY *key, const struct tc_cert_spec *spec)
{
	X509 *x = NULL;
	X509_NAME *name = NULL;
	X509V3_CTX ctx;
	EVP_PKEY *signer = spec->issuer != NULL ? spec->issuer_key : key;
	const EVP_MD *md = NULL;
	char *sans = NULL;
	int ok = 0;

	x = X509_new();
	if (x == NULL || signer == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
	    !set_serial(x, spec->serial))
		goto out;
	name = X509_NAME_new();
	if (name == NULL)
		goto out;
	if (spec->cn != NULL &&
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)spec->cn,
				       -1, -1, 0) != 1)
		goto out;
	if (X509_set_subject_name(x, name) != 1)
		goto out;
	if (X509_set_issuer_name(x, spec->issuer != NULL ? X509_get_subject_name(spec->issuer)
							  : name) != 1)
		goto out;
	if (!set_time(x, spec->not_before, 0) || !set_time(x, spec->not_after, 1) ||
	    X509_set_pubkey(x, key) != 1)
		goto out;
	X509V3_set_ctx(&ctx, spec->issuer != NULL ? spec->issuer : x, x, NULL, NULL, 0);
	if (!add_ext(x, &ctx, NID_basic_constraints,
		     spec->is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"))
		goto out;
	if (spec->is_ca && !add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign"))
		goto out;
	if (spec->sans != NULL) {
		sans = san_value(spec->sans);
		if (sans == NULL || !add_ext(x, &ctx, NID_subject_alt_name, sans))
			goto out;
	}
	/* EdDSA signs without a separate digest. */
	if (!EVP_PKEY_is_a(signer, "ED25519") && !EVP_PKEY_is_a(signer, "ED448")) {
		md = EVP_get_digestbyname(spec->md != NULL ? spec->md : "sha256");
		if (md == NULL)
			goto out;
	}
	if (X509_sign(x, signer, md) <= 0)
		goto out;
	ok = 1;
out:
	free(sans);
	X509_NAME_free(name);
	if (!ok) {
		X509_free(x);
		x = NULL;
	}
	ERR_clear_error();
	return x;
}

/* The contents of a mem BIO as a malloc'd string. */
static char *bio_string(BIO *bio)
{
	char *data, *s;
	long n;

	n = BIO_get_mem_data(bio, &data);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	return s;
}

char *tc_cert_pem(X509 *cert)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *s = NULL;

	if (bio != NULL && PEM_write_bio_X509(bio, cert) == 1)
		s = bio_string(bio);
	BIO_free(bio);
	return s;
}

char *tc_key_pem(EVP_PKEY *key, const char *key_format, const char *password)
{
	const char *fmt = key_format != NULL ? key_format : "pkcs8";
	BIO *bio = BIO_new(BIO_s_secmem());
	char *s = NULL;
	int ok = 0;

	if (bio == NULL)
		goto out;
	if (strcmp(fmt, "pkcs8") == 0)
		ok = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
	else if (strcmp(fmt, "pkcs1") == 0 && EVP_PKEY_is_a(key, "RSA"))
		ok = PEM_write_bio_PrivateKey_traditional(bio, key, NULL, NULL, 0, NULL, NULL);
	else if (strcmp(fmt, "sec1") == 0 && EVP_PKEY_is_a(key, "EC"))
		ok = PEM_write_bio_PrivateKey_traditional(bio, key, NULL, NULL, 0, NULL, NULL);
	else if (strcmp(fmt, "pkcs8enc") == 0 && password != NULL)
		ok = PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_256_cbc(), NULL, 0, NULL,
						   (void *)password);
	if (ok == 1)
		s = bio_string(bio);
out:
	BIO_free(bio);
	ERR_clear_error();
	return s;
}
