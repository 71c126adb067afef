/* x509: the signature algorithms certvault signs with for its clients (POST .../sign), what
 * each asks of the key and of the digest, and the encodings of what comes out. Pure: the
 * signature itself is made in the token, by the vault. */
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/objects.h>

#include "certvault/x509.h"

/* JOSE names first (RFC 7518 3.1, RFC 8037 3.1), then the raw mechanisms under names that say
 * what they are. ES256/384/512 each take one curve (RFC 7518 3.4); ecdsa-sha* take any curve
 * certvault holds, with the hash the client chose. */
static const struct cv_sign_alg algs[] = {
	{ "RS256", CV_SIGN_RSA_PKCS1, NID_sha256, 32, 0, 1, 0 },
	{ "RS384", CV_SIGN_RSA_PKCS1, NID_sha384, 48, 0, 1, 0 },
	{ "RS512", CV_SIGN_RSA_PKCS1, NID_sha512, 64, 0, 1, 0 },
	{ "PS256", CV_SIGN_RSA_PSS, NID_sha256, 32, 0, 1, 0 },
	{ "PS384", CV_SIGN_RSA_PSS, NID_sha384, 48, 0, 1, 0 },
	{ "PS512", CV_SIGN_RSA_PSS, NID_sha512, 64, 0, 1, 0 },
	{ "ES256", CV_SIGN_ECDSA, NID_sha256, 32, NID_X9_62_prime256v1, 1, 0 },
	{ "ES384", CV_SIGN_ECDSA, NID_sha384, 48, NID_secp384r1, 1, 0 },
	{ "ES512", CV_SIGN_ECDSA, NID_sha512, 64, NID_secp521r1, 1, 0 },
	{ "EdDSA", CV_SIGN_EDDSA, NID_undef, 0, 0, 1, 0 },
	{ "rsa-pkcs1v15-sha256", CV_SIGN_RSA_PKCS1, NID_sha256, 32, 0, 0, 0 },
	{ "rsa-pkcs1v15-sha384", CV_SIGN_RSA_PKCS1, NID_sha384, 48, 0, 0, 0 },
	{ "rsa-pkcs1v15-sha512", CV_SIGN_RSA_PKCS1, NID_sha512, 64, 0, 0, 0 },
	{ "rsa-pss-sha256", CV_SIGN_RSA_PSS, NID_sha256, 32, 0, 0, 0 },
	{ "rsa-pss-sha384", CV_SIGN_RSA_PSS, NID_sha384, 48, 0, 0, 0 },
	{ "rsa-pss-sha512", CV_SIGN_RSA_PSS, NID_sha512, 64, 0, 0, 0 },
	{ "ecdsa-sha256", CV_SIGN_ECDSA, NID_sha256, 32, 0, 0, 1 },
	{ "ecdsa-sha384", CV_SIGN_ECDSA, NID_sha384, 48, 0, 0, 1 },
	{ "ecdsa-sha512", CV_SIGN_ECDSA, NID_sha512, 64, 0, 0, 1 },
	{ "ed25519", CV_SIGN_EDDSA, NID_undef, 0, 0, 0, 0 },
};
#define N_ALGS (sizeof(algs) / sizeof(algs[0]))

const struct cv_sign_alg *cv_x509_sign_alg_at(size_t i)
{
	return i < N_ALGS ? &algs[i] : NULL;
}

int cv_x509_sign_alg_find(const char *name, const struct cv_sign_alg **ret,
			  struct cv_errmsg *err)
{
	size_t i;

	for (i = 0; name != NULL && i < N_ALGS; i++)
		if (strcmp(algs[i].name, name) == 0) {
			*ret = &algs[i];
			return 0;
		}
	return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"algorithm\" must be one of RS256 RS384 "
			     "RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA rsa-pkcs1v15-sha256 "
			     "(-sha384, -sha512) rsa-pss-sha256 (...) ecdsa-sha256 (...) ed25519");
}

/* The key's kind as a scheme family, and its curve (NID_undef when none). */
static int key_family(EVP_PKEY *pub, int *ret_curve)
{
	char group[64];
	size_t len = 0;

	*ret_curve = NID_undef;
	switch (EVP_PKEY_get_base_id(pub)) {
	case EVP_PKEY_RSA:
		return CV_SIGN_RSA_PKCS1;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group,
						   sizeof(group), &len) == 1)
			*ret_curve = OBJ_sn2nid(group);
		return CV_SIGN_ECDSA;
	case EVP_PKEY_ED25519:
		return CV_SIGN_EDDSA;
	default:
		return 0;
	}
}

static int alg_fits(const struct cv_sign_alg *alg, int family, int curve)
{
	switch (alg->scheme) {
	case CV_SIGN_RSA_PKCS1:
	case CV_SIGN_RSA_PSS:
		return family == CV_SIGN_RSA_PKCS1;
	case CV_SIGN_ECDSA:
		return family == CV_SIGN_ECDSA && (alg->curve_nid == 0 || alg->curve_nid == curve);
	case CV_SIGN_EDDSA:
		return family == CV_SIGN_EDDSA;
	}
	return 0;
}

void cv_x509_sign_algs_for(EVP_PKEY *pub, char *buf, size_t size)
{
	int curve, family = key_family(pub, &curve);
	size_t i, used = 0;
	int n;

	if (size == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < N_ALGS; i++) {
		if (!alg_fits(&algs[i], family, curve))
			continue;
		n = snprintf(buf + used, size - used, "%s%s", used > 0 ? " " : "", algs[i].name);
		if (n < 0 || (size_t)n >= size - used)
			break;
		used += (size_t)n;
	}
}

int cv_x509_sign_alg_fits(const struct cv_sign_alg *alg, EVP_PKEY *pub, struct cv_errmsg *err)
{
	char takes[200];
	const char *what;
	int curve, family = key_family(pub, &curve);

	if (alg_fits(alg, family, curve))
		return 0;
	switch (family) {
	case CV_SIGN_RSA_PKCS1:
		what = "an RSA key";
		break;
	case CV_SIGN_ECDSA:
		what = curve == NID_X9_62_prime256v1 ? "an ECDSA P-256 key" :
		       curve == NID_secp384r1 ? "an ECDSA P-384 key" :
		       curve == NID_secp521r1 ? "an ECDSA P-521 key" : "an ECDSA key";
		break;
	case CV_SIGN_EDDSA:
		what = "an Ed25519 key";
		break;
	default:
		what = "a key of another kind";
		break;
	}
	cv_x509_sign_algs_for(pub, takes, sizeof(takes));
	return cv_errmsg_set(err, CV_ERR_ALGORITHM_MISMATCH, "%s cannot sign with %s: it takes %s",
			     what, alg->name, takes[0] != '\0' ? takes : "none");
}

int cv_x509_sign_input(const struct cv_sign_alg *alg, const unsigned char *digest, size_t len,
		       unsigned char *out, size_t *out_len, struct cv_errmsg *err)
{
	/* DER of DigestInfo (RFC 8017 9.2 note 1) up to the hash's OCTET STRING header. */
	static const unsigned char sha256_prefix[] = {
		0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
		0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
	};
	static const unsigned char sha384_prefix[] = {
		0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
		0x02, 0x02, 0x05, 0x00, 0x04, 0x30,
	};
	static const unsigned char sha512_prefix[] = {
		0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
		0x02, 0x03, 0x05, 0x00, 0x04, 0x40,
	};
	const unsigned char *prefix = NULL;
	size_t prefix_len = 0;

	if (alg->scheme == CV_SIGN_EDDSA)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "%s signs the message itself: send "
				     "\"message\", not \"digest\"", alg->name);
	if (len != alg->digest_len)
		return cv_errmsg_set(err, CV_ERR_DIGEST_LENGTH, "%s takes a %zu-byte digest, "
				     "and this one has %zu bytes", alg->name, alg->digest_len, len);
	if (alg->scheme == CV_SIGN_RSA_PKCS1) {
		switch (alg->md_nid) {
		case NID_sha256:
			prefix = sha256_prefix;
			break;
		case NID_sha384:
			prefix = sha384_prefix;
			break;
		default:
			prefix = sha512_prefix;
			break;
		}
		prefix_len = sizeof(sha256_prefix);
	}
	if (prefix_len + len > *out_len)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "no room for the data to sign");
	if (prefix_len > 0)
		memcpy(out, prefix, prefix_len);
	memcpy(out + prefix_len, digest, len);
	*out_len = prefix_len + len;
	return 0;
}

int cv_x509_sign_digest(const struct cv_sign_alg *alg, const unsigned char *message, size_t len,
			unsigned char out[64], size_t *out_len)
{
	const EVP_MD *md = alg->md_nid != NID_undef ? EVP_get_digestbynid(alg->md_nid) : NULL;
	unsigned int n = 0;

	if (md == NULL)
		return CV_ERR_BAD_REQUEST;
	if (EVP_Digest(message, len, out, &n, md, NULL) != 1)
		return CV_ERR_NOMEM;
	*out_len = n;
	return 0;
}

int cv_x509_ecdsa_der(const unsigned char *rs, size_t len, unsigned char **ret_der,
		      size_t *ret_len)
{
	ECDSA_SIG *sig = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *der = NULL;
	int n, rc = CV_ERR_NOMEM;

	if (len == 0 || len % 2 != 0)
		return CV_ERR_BAD_ENCODING;
	sig = ECDSA_SIG_new();
	r = BN_bin2bn(rs, (int)(len / 2), NULL);
	s = BN_bin2bn(rs + len / 2, (int)(len / 2), NULL);
	if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1)
		goto out;
	r = s = NULL; /* the signature's now */
	n = i2d_ECDSA_SIG(sig, &der);
	if (n <= 0)
		goto out;
	*ret_der = der;
	*ret_len = (size_t)n;
	rc = 0;
out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	return rc;
}
