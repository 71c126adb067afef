/* x509: revocation — CRLs and OCSP answers judged against a certificate and its issuer. The
 * bytes come from the caller (the truststore, or src/net); nothing here does I/O. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "certvault/x509.h"
#include "internal.h"

const char *cv_revocation_status_name(enum cv_revocation_status s)
{
	switch (s) {
	case CV_REV_GOOD:
		return "good";
	case CV_REV_REVOKED:
		return "revoked";
	case CV_REV_UNKNOWN:
		return "unknown";
	case CV_REV_NOT_CHECKED:
		break;
	}
	return "not_checked";
}

/* Sets status, source and a formatted detail in one step. */
static void verdict(struct cv_revocation *ret, enum cv_revocation_status status,
		    const char *source, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void verdict(struct cv_revocation *ret, enum cv_revocation_status status,
		    const char *source, const char *fmt, ...)
{
	va_list ap;

	ret->status = status;
	snprintf(ret->source, sizeof(ret->source), "%s", source != NULL ? source : "");
	va_start(ap, fmt);
	vsnprintf(ret->detail, sizeof(ret->detail), fmt, ap);
	va_end(ap);
}

/* RFC 3339 UTC of t into buf[32]. */
static const char *utc_text(time_t t, char buf[32])
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, 32, "%lld", (long long)t);
	return buf;
}

int cv_x509_crl_info_get(X509_CRL *crl, struct cv_x509_crl_info *ret_info)
{
	const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
	unsigned char digest[EVP_MAX_MD_SIZE];
	static const char hex[] = "0123456789ABCDEF";
	ASN1_INTEGER *number = NULL;
	BIGNUM *bn = NULL;
	char *dec = NULL;
	unsigned int n = 0, i;
	int r, crit = 0;

	memset(ret_info, 0, sizeof(*ret_info));
	r = x509_name_text(X509_CRL_get_issuer(crl), ret_info->issuer, sizeof(ret_info->issuer));
	if (r < 0)
		goto out;
	r = x509_time_epoch(X509_CRL_get0_lastUpdate(crl), &ret_info->this_update);
	if (r == 0 && next != NULL)
		r = x509_time_epoch(next, &ret_info->next_update);
	if (r < 0)
		goto out;
	number = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
	if (number != NULL) {
		bn = ASN1_INTEGER_to_BN(number, NULL);
		dec = bn != NULL ? BN_bn2dec(bn) : NULL;
		if (dec == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		if (strlen(dec) >= sizeof(ret_info->number)) {
			r = CV_ERR_BAD_ENCODING;
			goto out;
		}
		snprintf(ret_info->number, sizeof(ret_info->number), "%s", dec);
	} else if (crit != -1) {
		r = CV_ERR_BAD_ENCODING; /* present more than once, or not an INTEGER */
		goto out;
	}
	ret_info->n_revoked = (size_t)sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));
	if (X509_CRL_digest(crl, EVP_sha256(), digest, &n) != 1 || n == 0 ||
	    3 * (size_t)n > sizeof(ret_info->sha256)) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	for (i = 0; i < n; i++) {
		ret_info->sha256[3 * i] = hex[digest[i] >> 4];
		ret_info->sha256[3 * i + 1] = hex[digest[i] & 0x0f];
		ret_info->sha256[3 * i + 2] = i + 1 < n ? ':' : '\0';
	}
	r = 0;
out:
	OPENSSL_free(dec);
	BN_free(bn);
	ASN1_INTEGER_free(number);
	ERR_clear_error();
	return r;
}

int cv_x509_crl_issued_by(X509_CRL *crl, X509 *ca)
{
	EVP_PKEY *pk = X509_get0_pubkey(ca);
	int ok;

	ok = pk != NULL && X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0 &&
	     X509_CRL_verify(crl, pk) == 1 &&
	     ((X509_get_extension_flags(ca) & EXFLAG_KUSAGE) == 0 ||
	      (X509_get_key_usage(ca) & KU_CRL_SIGN) != 0);
	ERR_clear_error();
	return ok;
}

int cv_x509_cert_issued_by(X509 *cert, X509 *issuer)
{
	EVP_PKEY *pk = X509_get0_pubkey(issuer);
	int ok;

	ok = pk != NULL &&
	     X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(issuer)) == 0 &&
	     X509_verify(cert, pk) == 1;
	ERR_clear_error();
	return ok;
}

static X509 *issuer_in(X509 *cert, STACK_OF(X509) *stack)
{
	int i;

	for (i = 0; stack != NULL && i < sk_X509_num(stack); i++)
		if (cv_x509_cert_issued_by(cert, sk_X509_value(stack, i)))
			return sk_X509_value(stack, i);
	return NULL;
}

X509 *cv_x509_issuer_find(X509 *cert, STACK_OF(X509) *chain, STACK_OF(X509) *trusted)
{
	X509 *found = issuer_in(cert, chain);

	return found != NULL ? found : issuer_in(cert, trusted);
}

/* The CRLReason of a revoked entry, -1 when it names none. */
static int revoked_reason(X509_REVOKED *rev)
{
	ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
	long v = -1;

	if (e != NULL)
		v = ASN1_ENUMERATED_get(e);
	ASN1_ENUMERATED_free(e);
	ERR_clear_error();
	return v >= 0 && v <= 10 ? (int)v : -1;
}

void cv_x509_crl_judge(X509 *cert, X509_CRL *crl, time_t now, long skew, const char *source,
		       struct cv_revocation *ret)
{
	const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
	X509_REVOKED *rev = NULL;
	time_t this_update = 0, next_update = 0, at = 0;
	char when[32];

	memset(ret, 0, sizeof(*ret));
	ret->reason = -1;
	if (x509_time_epoch(X509_CRL_get0_lastUpdate(crl), &this_update) < 0 ||
	    (next != NULL && x509_time_epoch(next, &next_update) < 0)) {
		verdict(ret, CV_REV_UNKNOWN, source, "the CRL's dates cannot be read");
		return;
	}
	/* A listed serial is revoked whatever the CRL's age: revocation is not undone (a
	 * certificateHold that was lifted is removed from the next CRL, which replaces this). */
	if (X509_CRL_get0_by_serial(crl, &rev, (ASN1_INTEGER *)X509_get0_serialNumber(cert)) ==
		    1 &&
	    rev != NULL) {
		if (x509_time_epoch(X509_REVOKED_get0_revocationDate(rev), &at) < 0)
			at = 0;
		verdict(ret, CV_REV_REVOKED, source, "revoked on %s (reason %s)",
			utc_text(at, when), cv_x509_crl_reason_name(revoked_reason(rev)));
		ret->reason = revoked_reason(rev);
		ret->revoked_at = at;
		return;
	}
	ERR_clear_error();
	if (this_update > now + skew) {
		verdict(ret, CV_REV_UNKNOWN, source, "the CRL is not valid until %s",
			utc_text(this_update, when));
		return;
	}
	if (next_update != 0 && next_update < now - skew) {
		verdict(ret, CV_REV_UNKNOWN, source,
			"the CRL is stale: its next update was due at %s",
			utc_text(next_update, when));
		return;
	}
	verdict(ret, CV_REV_GOOD, source, "not listed in the CRL of %s", utc_text(this_update, when));
}

static int is_http_url(const char *s, size_t len)
{
	return (len > 7 && strncasecmp(s, "http://", 7) == 0) ||
	       (len > 8 && strncasecmp(s, "https://", 8) == 0);
}

/* Copies an IA5String URL into url when it is http(s), printable and fits. */
static int take_url(const ASN1_IA5STRING *s, char *url, size_t url_len)
{
	const unsigned char *p = ASN1_STRING_get0_data(s);
	size_t len = (size_t)ASN1_STRING_length(s), i;

	if (p == NULL || len >= url_len || !is_http_url((const char *)p, len))
		return 0;
	for (i = 0; i < len; i++)
		if (p[i] <= 0x20 || p[i] >= 0x7f)
			return 0;
	memcpy(url, p, len);
	url[len] = '\0';
	return 1;
}

int cv_x509_ocsp_url(X509 *cert, char *url, size_t url_len)
{
	AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(cert, NID_info_access, NULL, NULL);
	int i, found = 0;

	for (i = 0; aia != NULL && !found && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
		ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);

		if (OBJ_obj2nid(ad->method) == NID_ad_OCSP &&
		    ad->location->type == GEN_URI)
			found = take_url(ad->location->d.uniformResourceIdentifier, url, url_len);
	}
	AUTHORITY_INFO_ACCESS_free(aia);
	ERR_clear_error();
	return found;
}

int cv_x509_crl_url(X509 *cert, char *url, size_t url_len)
{
	CRL_DIST_POINTS *dps = X509_get_ext_d2i(cert, NID_crl_distribution_points, NULL, NULL);
	int i, j, found = 0;

	for (i = 0; dps != NULL && !found && i < sk_DIST_POINT_num(dps); i++) {
		DIST_POINT *dp = sk_DIST_POINT_value(dps, i);

		/* A CRL for some reasons only, or from another issuer, is not the whole answer. */
		if (dp->distpoint == NULL || dp->distpoint->type != 0 || dp->reasons != NULL ||
		    dp->CRLissuer != NULL)
			continue;
		for (j = 0; !found && j < sk_GENERAL_NAME_num(dp->distpoint->name.fullname); j++) {
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, j);

			if (gn->type == GEN_URI)
				found = take_url(gn->d.uniformResourceIdentifier, url, url_len);
		}
	}
	CRL_DIST_POINTS_free(dps);
	ERR_clear_error();
	return found;
}

int cv_x509_ocsp_request(X509 *cert, X509 *issuer, int nonce, unsigned char **ret_der,
			 size_t *ret_len)
{
	OCSP_REQUEST *req = NULL;
	OCSP_CERTID *id = NULL;
	unsigned char *der = NULL;
	int len, r;

	req = OCSP_REQUEST_new();
	id = OCSP_cert_to_id(EVP_sha1(), cert, issuer);
	if (req == NULL || id == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (OCSP_request_add0_id(req, id) == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	id = NULL; /* the request's */
	if (nonce && OCSP_request_add1_nonce(req, NULL, 16) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	len = i2d_OCSP_REQUEST(req, &der);
	if (len <= 0) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	*ret_der = der;
	*ret_len = (size_t)len;
	r = 0;
out:
	ERR_clear_error();
	OCSP_CERTID_free(id);
	OCSP_REQUEST_free(req);
	return r;
}

/* Whether signer may sign OCSP answers about issuer's certificates (RFC 6960 4.2.2.2): the
 * issuer itself, or a certificate it issued for OCSP signing, valid at now. */
static int responder_authorized(X509 *signer, X509 *issuer, time_t now, const char **why)
{
	time_t nb, na;

	if (X509_cmp(signer, issuer) == 0)
		return 1;
	if (!cv_x509_cert_issued_by(signer, issuer)) {
		*why = "the answer is signed by neither the issuer nor a responder it delegated";
		return 0;
	}
	if ((X509_get_extension_flags(signer) & EXFLAG_XKUSAGE) == 0 ||
	    (X509_get_extended_key_usage(signer) & XKU_OCSP_SIGN) == 0) {
		*why = "the responder's certificate lacks the OCSP signing extended key usage";
		return 0;
	}
	if (x509_time_epoch(X509_get0_notBefore(signer), &nb) < 0 ||
	    x509_time_epoch(X509_get0_notAfter(signer), &na) < 0 || now < nb || now > na) {
		*why = "the responder's certificate is not valid now";
		return 0;
	}
	return 1;
}

void cv_x509_ocsp_judge(const unsigned char *der, size_t len, X509 *cert, X509 *issuer,
			time_t now, long skew, long max_age, const char *source,
			struct cv_revocation *ret)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *resp = NULL;
	OCSP_BASICRESP *bs = NULL;
	OCSP_CERTID *id = NULL;
	STACK_OF(X509) *extra = NULL;
	ASN1_GENERALIZEDTIME *revtime = NULL, *thisupd = NULL, *nextupd = NULL;
	X509 *signer = NULL;
	time_t t_this = 0, t_next = 0, t_rev = 0;
	const char *why = NULL;
	int status = -1, reason = -1, rs;
	char when[32];

	memset(ret, 0, sizeof(*ret));
	ret->reason = -1;
	if (len == 0 || len > CV_X509_CRL_MAX ||
	    (resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len)) == NULL || p != der + len) {
		verdict(ret, CV_REV_UNKNOWN, source, "the answer is not an OCSP response");
		goto out;
	}
	rs = OCSP_response_status(resp);
	if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		verdict(ret, CV_REV_UNKNOWN, source, "the responder answered \"%s\"",
			OCSP_response_status_str(rs));
		goto out;
	}
	bs = OCSP_response_get1_basic(resp);
	extra = sk_X509_new_null();
	if (bs == NULL || extra == NULL || sk_X509_push(extra, issuer) <= 0) {
		verdict(ret, CV_REV_UNKNOWN, source, "the answer is not a basic OCSP response");
		goto out;
	}
	if (OCSP_resp_get0_signer(bs, &signer, extra) != 1 || signer == NULL) {
		verdict(ret, CV_REV_UNKNOWN, source,
			"the answer's signer is neither the issuer nor a certificate it carries");
		goto out;
	}
	if (!responder_authorized(signer, issuer, now, &why)) {
		verdict(ret, CV_REV_UNKNOWN, source, "%s", why);
		goto out;
	}
	/* The signature with the signer's key; its authority was judged above. */
	if (OCSP_basic_verify(bs, extra, NULL, OCSP_NOVERIFY | OCSP_NOCHECKS) != 1) {
		verdict(ret, CV_REV_UNKNOWN, source, "the answer's signature does not verify");
		goto out;
	}
	id = OCSP_cert_to_id(EVP_sha1(), cert, issuer);
	if (id == NULL ||
	    OCSP_resp_find_status(bs, id, &status, &reason, &revtime, &thisupd, &nextupd) != 1) {
		verdict(ret, CV_REV_UNKNOWN, source, "the answer is about another certificate");
		goto out;
	}
	if (thisupd == NULL || x509_time_epoch(thisupd, &t_this) < 0 ||
	    (nextupd != NULL && x509_time_epoch(nextupd, &t_next) < 0)) {
		verdict(ret, CV_REV_UNKNOWN, source, "the answer's dates cannot be read");
		goto out;
	}
	if (t_this > now + skew) {
		verdict(ret, CV_REV_UNKNOWN, source, "the answer is dated in the future (%s)",
			utc_text(t_this, when));
		goto out;
	}
	if (nextupd != NULL ? t_next < now - skew : t_this < now - max_age) {
		verdict(ret, CV_REV_UNKNOWN, source, "the answer is stale (produced for %s)",
			utc_text(t_this, when));
		goto out;
	}
	switch (status) {
	case V_OCSP_CERTSTATUS_GOOD:
		verdict(ret, CV_REV_GOOD, source, "the responder says good (as of %s)",
			utc_text(t_this, when));
		break;
	case V_OCSP_CERTSTATUS_REVOKED:
		if (revtime == NULL || x509_time_epoch(revtime, &t_rev) < 0)
			t_rev = 0;
		verdict(ret, CV_REV_REVOKED, source, "revoked on %s (reason %s)",
			utc_text(t_rev, when), cv_x509_crl_reason_name(reason));
		ret->reason = reason;
		ret->revoked_at = t_rev;
		break;
	default:
		verdict(ret, CV_REV_UNKNOWN, source, "the responder does not know the certificate");
		break;
	}
out:
	ERR_clear_error();
	OCSP_CERTID_free(id);
	sk_X509_free(extra);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
}

const char *cv_x509_crl_reason_name(int reason)
{
	/* RFC 5280 5.3.1's names; 7 is not used. */
	static const char *const names[] = {
		"unspecified",	    "keyCompromise",	  "cACompromise",
		"affiliationChanged", "superseded",	   "cessationOfOperation",
		"certificateHold",    NULL,		   "removeFromCRL",
		"privilegeWithdrawn", "aACompromise",
	};

	if (reason < 0)
		return "none given";
	if ((size_t)reason >= sizeof(names) / sizeof(names[0]) || names[reason] == NULL)
		return "unknown";
	return names[reason];
}
