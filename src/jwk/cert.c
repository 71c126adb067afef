/* jwk: the JWK of a certificate — its key's JWK, the certificate's keyUsage honoured, and
 * the certificate itself in x5c and x5t#S256 (RFC 7517 sections 4.7 and 4.9). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "certvault/jwk.h"
#include "certvault/x509.h"
#include "internal.h"

/* When the certificate limits its key's usage (RFC 5280 section 4.2.1.3), the JWK's use must
 * be among them: signing JWSs is a digital signature; encrypting to an RSA key is key
 * encipherment, to an EC key key agreement (ECDH-ES). */
static int check_key_usage(X509 *cert, const json_t *jwk, struct cv_errmsg *err)
{
	const char *use = json_string_value(json_object_get(jwk, "use"));
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	uint32_t usage;

	if ((X509_get_extension_flags(cert) & EXFLAG_KUSAGE) == 0)
		return 0;
	usage = X509_get_key_usage(cert);
	if (strcmp(use, "sig") == 0) {
		if ((usage & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)) == 0)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "the certificate's keyUsage does not allow "
					     "digitalSignature: its key cannot have use \"sig\"");
		return 0;
	}
	if (strcmp(kty, "RSA") == 0 && (usage & KU_KEY_ENCIPHERMENT) == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "the certificate's keyUsage does not allow keyEncipherment: "
				     "its key cannot have use \"enc\"");
	if (strcmp(kty, "EC") == 0 && (usage & KU_KEY_AGREEMENT) == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "the certificate's keyUsage does not allow keyAgreement: "
				     "its key cannot have use \"enc\"");
	return 0;
}

/* RFC 7517 section 4.7: "Each subsequent certificate in the chain MUST be the one used to
 * certify the previous one." */
static int check_chain_order(X509 *cert, STACK_OF(X509) *chain, struct cv_errmsg *err)
{
	X509 *subject = cert;
	int i, n = chain != NULL ? sk_X509_num(chain) : 0;

	if (n > CV_X509_MAX_CHAIN)
		return cv_errmsg_set(err, CV_ERR_BAD_CHAIN, "a chain of %d certificates is longer "
				     "than the %d an x5c takes here", n, CV_X509_MAX_CHAIN);
	for (i = 0; i < n; i++) {
		X509 *issuer = sk_X509_value(chain, i);

		if (X509_check_issued(issuer, subject) != X509_V_OK) {
			ERR_clear_error();
			return cv_errmsg_set(err, CV_ERR_BAD_CHAIN,
					     "chain certificate %d did not issue the certificate "
					     "before it: x5c needs the chain in issuance order", i + 1);
		}
		subject = issuer;
	}
	return 0;
}

/* Appends the standard base64 of cert's DER to x5c. */
static int append_der(json_t *x5c, X509 *cert)
{
	unsigned char *der = NULL;
	size_t len;
	int r;

	r = cv_x509_cert_der(cert, &der, &len);
	if (r < 0)
		goto out;
	r = json_array_append_new(x5c, jwk_base64(der, len)) == 0 ? 0 : CV_ERR_NOMEM;
out:
	free(der);
	return r;
}

/* Sets x5c (cert, then the chain) and x5t#S256 on jwk. */
static int set_cert_members(json_t *jwk, X509 *cert, STACK_OF(X509) *chain)
{
	unsigned char digest[SHA256_DIGEST_LENGTH];
	unsigned int digest_len = 0;
	json_t *x5c = NULL;
	int i, r;

	x5c = json_array();
	if (x5c == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = append_der(x5c, cert);
	for (i = 0; r == 0 && chain != NULL && i < sk_X509_num(chain); i++)
		r = append_der(x5c, sk_X509_value(chain, i));
	if (r < 0)
		goto out;
	if (X509_digest(cert, EVP_sha256(), digest, &digest_len) != 1 ||
	    digest_len != sizeof(digest)) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	if (json_object_set(jwk, "x5c", x5c) != 0 ||
	    json_object_set_new(jwk, "x5t#S256", jwk_base64url(digest, digest_len)) != 0) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = 0;
out:
	json_decref(x5c);
	ERR_clear_error();
	return r;
}

int cv_jwk_from_cert(X509 *cert, STACK_OF(X509) *chain, const char *alg, const char *use,
		     json_t **ret_jwk, struct cv_errmsg *err)
{
	const EVP_PKEY *pkey;
	json_t *jwk = NULL;
	int r;

	if (cert == NULL) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "no certificate");
		goto out;
	}
	pkey = X509_get0_pubkey(cert);
	if (pkey == NULL) {
		ERR_clear_error();
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "the certificate's public key cannot be decoded");
		goto out;
	}
	r = cv_jwk_from_pkey(pkey, alg, use, &jwk, err);
	if (r < 0)
		goto out;
	r = check_key_usage(cert, jwk, err);
	if (r < 0)
		goto out;
	r = check_chain_order(cert, chain, err);
	if (r < 0)
		goto out;
	r = set_cert_members(jwk, cert, chain);
	if (r < 0) {
		cv_errmsg_set(err, r, "%s", r == CV_ERR_NOMEM ? "out of memory"
					    : "the certificate could not be encoded");
		goto out;
	}
	*ret_jwk = jwk;
	jwk = NULL;
	r = 0;
out:
	json_decref(jwk);
	return r;
}
