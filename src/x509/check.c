/* x509: the checks a certificate and its private key pass before import. */
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "certvault/util.h"
#include "certvault/x509.h"
#include "internal.h"

#define SUPPORTED_KEYS "RSA 2048 to 4096, ECDSA P-256, P-384 or P-521, or Ed25519"

/* Whether pk is a key certvault holds; whose starts the message ("" for the private key). */
static int key_supported(const EVP_PKEY *pk, const char *whose, struct cv_errmsg *err)
{
	char encoding[32], group[64];
	int bits, nid;

	if (EVP_PKEY_is_a(pk, "RSA")) {
		bits = EVP_PKEY_get_bits(pk);
		if (bits < 2048 || bits > 4096)
			return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
					     "%sRSA key of %d bits: certvault takes RSA 2048 to "
					     "4096", whose, bits);
		return 0;
	}
	if (EVP_PKEY_is_a(pk, "EC")) {
		if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_ENCODING, encoding,
						   sizeof(encoding), NULL) != 1 ||
		    strcmp(encoding, OSSL_PKEY_EC_ENCODING_GROUP) != 0 ||
		    EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
						   sizeof(group), NULL) != 1)
			return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
					     "%sEC key with explicit curve parameters is not "
					     "supported: use the named curve P-256, P-384 or P-521",
					     whose);
		nid = OBJ_sn2nid(group);
		if (nid == NID_undef)
			nid = EC_curve_nist2nid(group);
		if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1 && nid != NID_secp521r1)
			return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
					     "%scurve %.40s is not supported: use P-256, P-384 or "
					     "P-521", whose, group);
		return 0;
	}
	if (EVP_PKEY_is_a(pk, "ED25519"))
		return 0;
	return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
			     "%s%.20s keys are not supported: use " SUPPORTED_KEYS, whose,
			     EVP_PKEY_get0_type_name(pk) != NULL ? EVP_PKEY_get0_type_name(pk)
								 : "this kind of");
}

static int validity(X509 *cert, time_t now, int allow_upcoming, struct cv_errmsg *err)
{
	char when[CV_TIME_BUFLEN];
	time_t not_before, not_after;
	int r;

	r = x509_time_epoch(X509_get0_notBefore(cert), &not_before);
	if (r < 0)
		return cv_errmsg_set(err, r, "the certificate's notBefore date cannot be read");
	r = x509_time_epoch(X509_get0_notAfter(cert), &not_after);
	if (r < 0)
		return cv_errmsg_set(err, r, "the certificate's notAfter date cannot be read");
	if (now < not_before && !allow_upcoming) {
		if (cv_time_rfc3339(not_before, when, sizeof(when)) < 0)
			snprintf(when, sizeof(when), "@%lld", (long long)not_before);
		return cv_errmsg_set(err, CV_ERR_NOT_YET_VALID,
				     "certificate is not valid before %s (allow_upcoming: true "
				     "takes it as upcoming)", when);
	}
	if (now > not_after) {
		if (cv_time_rfc3339(not_after, when, sizeof(when)) < 0)
			snprintf(when, sizeof(when), "@%lld", (long long)not_after);
		return cv_errmsg_set(err, CV_ERR_EXPIRED, "certificate expired on %s", when);
	}
	return 0;
}

static int is_weak_digest(int md_nid)
{
	return md_nid == NID_md5 || md_nid == NID_sha1 || md_nid == NID_md5_sha1 ||
	       md_nid == NID_md4 || md_nid == NID_md2;
}

static int signature_strong(X509 *cert, struct cv_errmsg *err)
{
	int sig_nid = X509_get_signature_nid(cert), md_nid = NID_undef, pk_nid;

	if (X509_get_signature_info(cert, &md_nid, &pk_nid, NULL, NULL) != 1 &&
	    OBJ_find_sigid_algs(sig_nid, &md_nid, &pk_nid) != 1)
		md_nid = NID_undef;
	if (!is_weak_digest(md_nid))
		return 0;
	return cv_errmsg_set(err, CV_ERR_WEAK_SIGNATURE,
			     "certificate is signed with %s (%s), refused",
			     sig_nid != NID_undef ? OBJ_nid2ln(sig_nid) : "an unknown algorithm",
			     md_nid == NID_sha1 ? "SHA-1" : md_nid == NID_md5 ? "MD5"
								: OBJ_nid2sn(md_nid));
}

static int chain_all_ca(STACK_OF(X509) *chain, struct cv_errmsg *err)
{
	char subject[128];
	int i;

	for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);

		if (X509_check_ca(x) != 0)
			continue;
		if (x509_name_text(X509_get_subject_name(x), subject, sizeof(subject)) < 0)
			subject[0] = '\0';
		return cv_errmsg_set(err, CV_ERR_BAD_CHAIN,
				     "chain entry %d (%s) is not a CA certificate", i + 1, subject);
	}
	return 0;
}

/* Whether parent issued child: names and key identifiers match (X509_check_issued) and
 * parent's key verifies child's signature. */
static int issued_by(X509 *child, X509 *parent)
{
	EVP_PKEY *pk = X509_get0_pubkey(parent);

	return X509_check_issued(parent, child) == X509_V_OK && pk != NULL &&
	       X509_verify(child, pk) == 1;
}

int cv_x509_chain_link(X509 *leaf, STACK_OF(X509) *chain, struct cv_errmsg *err)
{
	char subject[160], issuer[160];
	STACK_OF(X509) *path = NULL;
	int used[CV_X509_MAX_CHAIN] = { 0 };
	int n = chain != NULL ? sk_X509_num(chain) : 0, i, r;
	X509 *cur = leaf;

	if (n == 0)
		return 0;
	if (n > CV_X509_MAX_CHAIN)
		return cv_errmsg_set(err, CV_ERR_BAD_CHAIN, "the chain holds more than %d "
				     "certificates", CV_X509_MAX_CHAIN);
	path = sk_X509_new_reserve(NULL, n);
	if (path == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	/* Walk up from the leaf: each step takes the entry that issued the certificate below
	 * it, in whatever order the client listed them; a self-issued entry is the top. */
	while (X509_check_issued(cur, cur) != X509_V_OK || cur == leaf) {
		for (i = 0; i < n; i++)
			if (!used[i] && issued_by(cur, sk_X509_value(chain, i)))
				break;
		if (i == n)
			break;
		used[i] = 1;
		cur = sk_X509_value(chain, i);
		if (sk_X509_push(path, cur) <= 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (used[i])
			continue;
		if (x509_name_text(X509_get_subject_name(sk_X509_value(chain, i)), subject,
				   sizeof(subject)) < 0)
			subject[0] = '\0';
		if (sk_X509_num(path) == 0) {
			if (x509_name_text(X509_get_issuer_name(leaf), issuer, sizeof(issuer)) < 0)
				issuer[0] = '\0';
			r = cv_errmsg_set(err, CV_ERR_BAD_CHAIN, "chain entry %d (%s) did not issue "
					  "the certificate, and no other entry did: the "
					  "certificate's issuer is %s", i + 1, subject, issuer);
		} else {
			r = cv_errmsg_set(err, CV_ERR_BAD_CHAIN, "chain entry %d (%s) issued neither "
					  "the certificate nor another entry of its chain", i + 1,
					  subject);
		}
		goto out;
	}
	/* Every entry is on the path: keep them in issuing order (leaf's issuer first), the
	 * order a TLS server sends and the chain export serves. */
	for (i = 0; i < n; i++)
		(void)sk_X509_set(chain, i, sk_X509_value(path, i));
	r = 0;
out:
	sk_X509_free(path); /* the certificates are chain's */
	ERR_clear_error();
	return r;
}

/* Every name of the certificate is known to certvault (coverage, inventory): more SAN
 * entries than it keeps are refused rather than cut off. */
static int names_within_limit(X509 *cert, struct cv_errmsg *err)
{
	GENERAL_NAMES *sans;
	int n;

	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	n = sans != NULL ? sk_GENERAL_NAME_num(sans) : 0;
	GENERAL_NAMES_free(sans);
	if (n > CV_X509_MAX_SANS)
		return cv_errmsg_set(err, CV_ERR_LIMIT, "the certificate has %d subject "
				     "alternative names: at most %d are taken", n, CV_X509_MAX_SANS);
	return 0;
}

int cv_x509_check_import(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
			 const struct cv_x509_policy *policy, struct cv_errmsg *err)
{
	const EVP_PKEY *cert_key;
	int r;

	if (cert == NULL || policy == NULL) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	cert_key = X509_get0_pubkey(cert);
	if (cert_key == NULL) {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
				  "the certificate's public key cannot be read");
		goto out;
	}
	r = key != NULL ? key_supported(key, "", err) : 0;
	if (r < 0)
		goto out;
	r = key_supported(cert_key, "the certificate's public key: ", err);
	if (r < 0)
		goto out;
	r = validity(cert, policy->now, policy->allow_upcoming, err);
	if (r < 0)
		goto out;
	r = names_within_limit(cert, err);
	if (r < 0)
		goto out;
	if (!policy->allow_weak_signatures) {
		r = signature_strong(cert, err);
		if (r < 0)
			goto out;
	}
	if (key != NULL && EVP_PKEY_eq(cert_key, key) != 1) {
		r = cv_errmsg_set(err, CV_ERR_KEY_MISMATCH,
				  "private key does not match the certificate");
		goto out;
	}
	r = chain_all_ca(chain, err);
	if (r < 0)
		goto out;
	r = cv_x509_chain_link(cert, chain, err);
out:
	ERR_clear_error();
	return r;
}

int cv_x509_check_import_all(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
			     const struct cv_x509_policy *policy,
			     void (*problem)(void *arg, int code, const char *message), void *arg)
{
	struct cv_errmsg err = { "" };
	const EVP_PKEY *cert_key;
	int n = 0;

	if (cert == NULL || policy == NULL || problem == NULL)
		return CV_ERR_INTERNAL;
	/* Each check on its own, so that one problem does not hide the next: the same checks,
	 * in the same order, as cv_x509_check_import. */
#define CHECK(call)                                                                      \
	do {                                                                             \
		int r_ = (call);                                                         \
		if (r_ < 0) {                                                            \
			problem(arg, r_, err.text);                                      \
			n++;                                                             \
		}                                                                        \
	} while (0)
	cert_key = X509_get0_pubkey(cert);
	if (cert_key == NULL)
		CHECK(cv_errmsg_set(&err, CV_ERR_UNSUPPORTED_KEY,
				    "the certificate's public key cannot be read"));
	if (key != NULL)
		CHECK(key_supported(key, "", &err));
	if (cert_key != NULL)
		CHECK(key_supported(cert_key, "the certificate's public key: ", &err));
	CHECK(validity(cert, policy->now, policy->allow_upcoming, &err));
	CHECK(names_within_limit(cert, &err));
	if (!policy->allow_weak_signatures)
		CHECK(signature_strong(cert, &err));
	if (key != NULL && cert_key != NULL && EVP_PKEY_eq(cert_key, key) != 1)
		CHECK(cv_errmsg_set(&err, CV_ERR_KEY_MISMATCH,
				    "private key does not match the certificate"));
	CHECK(chain_all_ca(chain, &err));
#undef CHECK
	ERR_clear_error();
	return n;
}
