/* Revocation use cases: CRLs in the truststore, and the "not revoked" check of import, renew
 * and replace (the truststore's CRL, then online the OCSP responder and CRL distribution
 * point the certificate names). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "certvault/net.h"
#include "certvault/util.h"
#include "internal.h"

/* Seconds of clock difference taken between certvault and a CRL or OCSP signer. */
#define REVOCATION_SKEW 300
/* An OCSP answer without nextUpdate is taken this long after its thisUpdate. */
#define OCSP_MAX_AGE 3600
#define DEFAULT_TIMEOUT_MS 5000

int cv_vault_crl_add(struct cv_vault *v, struct cv_audit *audit, const char *text, size_t len,
		     enum cv_encoding enc, int64_t now, char ret_alias[65], struct cv_errmsg *err)
{
	struct cv_conflict conflict = { "", "", 0, 0 };
	struct cv_x509_crl_info info;
	struct cv_trust_record *trust = NULL;
	struct cv_crl_record rec;
	const struct cv_trust_record *issuer = NULL;
	X509_CRL *crl = NULL;
	X509 *ca = NULL;
	unsigned char *der = NULL;
	size_t n = 0, i;
	int r, der_len;

	memset(&rec, 0, sizeof(rec));
	r = cv_x509_crl_parse(text, len, enc, &crl, err);
	if (r < 0)
		goto out;
	r = cv_x509_crl_info_get(crl, &info);
	if (r < 0) {
		cv_errmsg_set(err, r, "the CRL's issuer, dates or number cannot be read");
		goto out;
	}
	r = cv_vault_trust_get(v, NULL, &trust, &n, err);
	if (r < 0)
		goto out;
	for (i = 0; i < n && issuer == NULL; i++) {
		if (strcmp(trust[i].subject, info.issuer) != 0)
			continue;
		r = cv_x509_cert_from_der(trust[i].cert_der, trust[i].cert_der_len, &ca);
		if (r < 0)
			goto out;
		if (cv_x509_crl_issued_by(crl, ca))
			issuer = &trust[i];
		X509_free(ca);
		ca = NULL;
	}
	if (issuer == NULL) {
		vault_audit_target(audit, "crls");
		r = cv_errmsg_set(err, CV_ERR_UNKNOWN_ISSUER,
				  "no CA in the truststore issued this CRL (issuer %.200s): add the "
				  "CA first", info.issuer);
		goto out;
	}
	vault_audit_target(audit, issuer->alias);
	cv_audit_fingerprint(audit, issuer->sha256_fingerprint);
	if ((int64_t)info.this_update > now + REVOCATION_SKEW) {
		r = cv_errmsg_set(err, CV_ERR_NOT_YET_VALID, "the CRL is dated in the future");
		goto out;
	}
	der_len = i2d_X509_CRL(crl, &der);
	if (der_len <= 0) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	rec.trust_id = issuer->id;
	rec.crl_der = der;
	rec.crl_der_len = (size_t)der_len;
	snprintf(rec.issuer, sizeof(rec.issuer), "%s", info.issuer);
	rec.this_update = info.this_update;
	rec.next_update = info.next_update;
	snprintf(rec.number, sizeof(rec.number), "%s", info.number);
	rec.n_revoked = (int64_t)info.n_revoked;
	snprintf(rec.sha256, sizeof(rec.sha256), "%s", info.sha256);
	rec.created_at = now;
	r = cv_store_crl_put(v->store, &rec, &conflict, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_SAME_CERTIFICATE) {
		cv_errmsg_set(err, r, "%s already has a CRL as new or newer (this update %s)",
			      issuer->alias, conflict.detail);
		goto out;
	}
	if (r == CV_ERR_NOT_FOUND) {
		cv_errmsg_set(err, r, "the truststore entry %s was deleted meanwhile",
			      issuer->alias);
		goto out;
	}
	if (r < 0) {
		vault_write_errmsg(err, r, "the database refused the CRL");
		goto out;
	}
	snprintf(ret_alias, 65, "%s", issuer->alias);
out:
	OPENSSL_free(der);
	X509_free(ca);
	X509_CRL_free(crl);
	cv_store_trust_free(trust, n);
	return r;
}

int cv_vault_crl_list(struct cv_vault *v, struct cv_crl_record **ret_recs, size_t *ret_n,
		      struct cv_errmsg *err)
{
	int r = cv_store_crl_list(v->store, ret_recs, ret_n);

	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_crl_delete(struct cv_vault *v, struct cv_audit *audit, const char *alias,
			struct cv_errmsg *err)
{
	int r;

	if (!cv_name_valid(alias))
		return cv_errmsg_set(err, CV_ERR_INVALID_NAME,
				     "an alias is 1 to %d letters, digits or hyphens", CV_NAME_MAX);
	r = cv_store_crl_remove(v->store, alias, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "the truststore holds no CRL from %s", alias);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the deletion");
	return 0;
}

/* The truststore's CRL from cert's issuer: 1 with *ret its verdict, 0 when it holds none. */
static int offline_check(struct cv_vault *v, X509 *cert, const char *issuer, int64_t now,
			 struct cv_revocation *ret, struct cv_errmsg *err)
{
	struct cv_crl_record *recs = NULL;
	const unsigned char *p;
	X509_CRL *crl = NULL;
	X509 *ca = NULL;
	size_t n = 0, i;
	char source[sizeof(ret->source)];
	int r, found = 0;

	r = cv_store_crl_for_issuer(v->store, issuer, &recs, &n);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	snprintf(source, sizeof(source), "crl:%s", issuer);
	/* CAs of one name may hold different keys: the CRL is the one of the CA that signed
	 * the certificate. */
	for (i = 0; i < n && !found; i++) {
		r = cv_x509_cert_from_der(recs[i].ca_der, recs[i].ca_der_len, &ca);
		if (r < 0)
			goto out;
		p = recs[i].crl_der;
		crl = d2i_X509_CRL(NULL, &p, (long)recs[i].crl_der_len);
		if (crl == NULL) {
			r = cv_errmsg_set(err, CV_ERR_DB, "a stored CRL cannot be read");
			goto out;
		}
		if (cv_x509_cert_issued_by(cert, ca)) {
			cv_x509_crl_judge(cert, crl, (time_t)now, REVOCATION_SKEW, source, ret);
			found = 1;
		}
		X509_CRL_free(crl);
		crl = NULL;
		X509_free(ca);
		ca = NULL;
	}
	r = found;
out:
	X509_CRL_free(crl);
	X509_free(ca);
	cv_store_crls_free(recs, n);
	return r;
}

int vault_revocation_offline(struct cv_vault *v, X509 *cert, const char *issuer, int64_t now,
			     struct cv_revocation *ret, struct cv_errmsg *err)
{
	memset(ret, 0, sizeof(*ret));
	return offline_check(v, cert, issuer, now, ret, err);
}

static int timeout_of(const struct cv_vault *v)
{
	return v->revocation.timeout_ms > 0 ? v->revocation.timeout_ms : DEFAULT_TIMEOUT_MS;
}

/* A fetch that failed: the client learns only that it failed, since the URL is the
 * uploader's and the reason (refused, reset, timed out, an HTTP status) would map the
 * network behind certvaultd for them; the reason goes to the log. */
static void fetch_failed(const char *what, const char *source, const struct cv_errmsg *why,
			 struct cv_revocation *ret)
{
	snprintf(ret->detail, sizeof(ret->detail), "%s could not be fetched (the reason is in "
		 "certvaultd's log)", what);
	snprintf(ret->log_detail, sizeof(ret->log_detail), "%.120s: %s", source, why->text);
}

/* Asks the OCSP responder at url about cert. */
static void ocsp_ask(struct cv_vault *v, X509 *cert, X509 *issuer, const char *url,
		     int64_t now, struct cv_revocation *ret)
{
	struct cv_errmsg why = { "" };
	unsigned char *req = NULL, *answer = NULL;
	size_t req_len = 0, answer_len = 0;
	char source[sizeof(ret->source)];
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->status = CV_REV_UNKNOWN;
	snprintf(source, sizeof(source), "ocsp:%s", url);
	snprintf(ret->source, sizeof(ret->source), "%s", source);
	r = cv_x509_ocsp_request(cert, issuer, 0, &req, &req_len);
	if (r < 0) {
		snprintf(ret->detail, sizeof(ret->detail), "the OCSP request could not be made");
		goto out;
	}
	r = cv_net_http_fetch(&v->revocation.net, url, "application/ocsp-request", req, req_len,
			      timeout_of(v), CV_X509_CRL_MAX, &answer, &answer_len, &why);
	if (r < 0) {
		fetch_failed("the OCSP answer", source, &why, ret);
		goto out;
	}
	cv_x509_ocsp_judge(answer, answer_len, cert, issuer, (time_t)now, REVOCATION_SKEW,
			   OCSP_MAX_AGE, source, ret);
out:
	free(answer);
	OPENSSL_free(req);
}

/* Downloads the CRL at url and judges cert by it. */
static void crl_download(struct cv_vault *v, X509 *cert, X509 *issuer, const char *url,
			 int64_t now, struct cv_revocation *ret)
{
	struct cv_errmsg why = { "" };
	unsigned char *answer = NULL;
	size_t answer_len = 0;
	X509_CRL *crl = NULL;
	char source[sizeof(ret->source)];
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->status = CV_REV_UNKNOWN;
	snprintf(source, sizeof(source), "crl:%s", url);
	snprintf(ret->source, sizeof(ret->source), "%s", source);
	r = cv_net_http_fetch(&v->revocation.net, url, NULL, NULL, 0, timeout_of(v),
			      CV_X509_CRL_MAX, &answer, &answer_len, &why);
	if (r < 0) {
		fetch_failed("the CRL", source, &why, ret);
		goto out;
	}
	r = cv_x509_crl_parse((const char *)answer, answer_len, CV_ENC_FILE, &crl, &why);
	if (r < 0) {
		snprintf(ret->detail, sizeof(ret->detail), "%s", why.text);
		goto out;
	}
	if (!cv_x509_crl_issued_by(crl, issuer)) {
		snprintf(ret->detail, sizeof(ret->detail),
			 "the CRL is not signed by the certificate's issuer");
		goto out;
	}
	cv_x509_crl_judge(cert, crl, (time_t)now, REVOCATION_SKEW, source, ret);
out:
	X509_CRL_free(crl);
	free(answer);
}

/* Keeps the first answer that could not tell; the log hears of every failed fetch. */
static void keep_unknown(struct cv_revocation *kept, const struct cv_revocation *r,
			 char *log, size_t log_len)
{
	size_t used = strlen(log);

	if (r->log_detail[0] != '\0' && used + 3 < log_len)
		snprintf(log + used, log_len - used, "%s%.*s", used > 0 ? "; " : "",
			 (int)(log_len - used - 3), r->log_detail);
	if (kept->status == CV_REV_NOT_CHECKED)
		*kept = *r;
}

int vault_revocation_check(struct cv_vault *v, X509 *cert, const char *issuer_name,
			   STACK_OF(X509) *chain, int64_t now, struct cv_revocation *ret,
			   struct cv_errmsg *err)
{
	struct cv_revocation found, unknown;
	STACK_OF(X509) *trusted = NULL;
	X509 *issuer = NULL;
	char url[CV_NET_URL_MAX + 1], fetch_log[sizeof(found.log_detail)] = "";
	int r, has_ocsp, has_crl;

	memset(&unknown, 0, sizeof(unknown));
	memset(&found, 0, sizeof(found));
	r = offline_check(v, cert, issuer_name, now, &found, err);
	if (r < 0)
		goto out;
	if (r == 1 && found.status != CV_REV_UNKNOWN)
		goto decided;
	if (r == 1)
		keep_unknown(&unknown, &found, fetch_log, sizeof(fetch_log));
	has_ocsp = v->revocation.online && cv_x509_ocsp_url(cert, url, sizeof(url));
	has_crl = v->revocation.online && cv_x509_crl_url(cert, url, sizeof(url));
	if (has_ocsp || has_crl) {
		r = vault_trusted_stack(v, &trusted, err);
		if (r < 0)
			goto out;
		issuer = cv_x509_issuer_find(cert, chain, trusted);
		if (issuer == NULL) {
			memset(&found, 0, sizeof(found));
			found.status = CV_REV_UNKNOWN;
			snprintf(found.source, sizeof(found.source), "%s:%s",
				 has_ocsp ? "ocsp" : "crl", url);
			snprintf(found.detail, sizeof(found.detail),
				 "the issuer's certificate is neither in the chain nor in the "
				 "truststore: its answer cannot be verified");
			keep_unknown(&unknown, &found, fetch_log, sizeof(fetch_log));
			has_ocsp = has_crl = 0;
		}
	}
	if (has_ocsp && cv_x509_ocsp_url(cert, url, sizeof(url))) {
		ocsp_ask(v, cert, issuer, url, now, &found);
		if (found.status != CV_REV_UNKNOWN)
			goto decided;
		keep_unknown(&unknown, &found, fetch_log, sizeof(fetch_log));
	}
	if (has_crl && cv_x509_crl_url(cert, url, sizeof(url))) {
		crl_download(v, cert, issuer, url, now, &found);
		if (found.status != CV_REV_UNKNOWN)
			goto decided;
		keep_unknown(&unknown, &found, fetch_log, sizeof(fetch_log));
	}
	if (unknown.status == CV_REV_UNKNOWN) {
		found = unknown;
		goto decided;
	}
	memset(&found, 0, sizeof(found));
	found.status = CV_REV_NOT_CHECKED;
	snprintf(found.detail, sizeof(found.detail), "not checked: no source (no CRL from the "
		 "issuer in the truststore; %s)",
		 v->revocation.online ? "no OCSP or CRL URL in the certificate"
				      : "online checks are off");
decided:
	r = 0;
	if (found.status == CV_REV_REVOKED)
		r = cv_errmsg_set(err, CV_ERR_REVOKED, "the certificate is revoked: %.100s (%.120s)",
				  found.detail, found.source);
	else if (found.status == CV_REV_UNKNOWN && !v->revocation.unknown_warn)
		r = cv_errmsg_set(err, CV_ERR_REVOCATION_UNKNOWN,
				  "revocation could not be checked: %.100s: %.120s (set "
				  "revocation.unknown = warn to accept)",
				  found.source, found.detail);
	if (ret != NULL) {
		*ret = found;
		snprintf(ret->log_detail, sizeof(ret->log_detail), "%s", fetch_log);
	}
out:
	sk_X509_pop_free(trusted, X509_free);
	return r;
}
