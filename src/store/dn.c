/* store: distinguished names stored by an older release, printed again as this one prints
 * them (UTF-8, issue 16 item 12). Stored DN text is a lookup key as well as a label: a CRL is
 * found by its issuer's text, a truststore CA by its subject's. A CA kept as
 * "CN=F\C5\91..." and a leaf whose issuer now reads "CN=Fő..." would no longer meet, and a
 * revocation check would find no CRL. So the rows the schema step listed in dn_refresh are
 * rewritten from their DER before certvault serves anything. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "certvault/x509.h"
#include "internal.h"

/* The tables dn_refresh names rows of (its column tbl). */
enum { DN_CERTIFICATES = 1, DN_VERSIONS = 2, DN_TRUSTSTORE = 3, DN_CRLS = 4 };

/* Subject and issuer of one row's DER as this release prints them; 0, or an error when the
 * DER does not read (the row is then left as it was). */
static int dn_of(int tbl, const char *der, int len, char *subject, size_t subject_size,
		 char *issuer, size_t issuer_size)
{
	struct cv_x509_info *info = NULL;
	struct cv_x509_crl_info crl_info;
	struct cv_errmsg ignored;
	X509_CRL *crl = NULL;
	X509 *cert = NULL;
	int r;

	if (tbl == DN_CRLS) {
		r = cv_x509_crl_parse(der, (size_t)len, CV_ENC_FILE, &crl, &ignored);
		if (r == 0)
			r = cv_x509_crl_info_get(crl, &crl_info);
		if (r == 0)
			snprintf(issuer, issuer_size, "%s", crl_info.issuer);
		goto out;
	}
	r = cv_x509_cert_from_der((const unsigned char *)der, (size_t)len, &cert);
	if (r == 0)
		r = cv_x509_info_new(cert, &info);
	if (r < 0)
		goto out;
	snprintf(subject, subject_size, "%s", info->subject);
	snprintf(issuer, issuer_size, "%s", info->issuer);
out:
	cv_x509_info_free(info);
	X509_free(cert);
	X509_CRL_free(crl);
	return r;
}

int store_dn_refresh(cvdb *db)
{
	static const char *const select[] = {
		[DN_CERTIFICATES] = "SELECT cert_der FROM certificates WHERE id = ?1",
		[DN_VERSIONS] = "SELECT cert_der FROM certificate_versions WHERE id = ?1",
		[DN_TRUSTSTORE] = "SELECT cert_der FROM truststore WHERE id = ?1",
		[DN_CRLS] = "SELECT crl_der FROM crls WHERE id = ?1",
	};
	static const char *const update[DN_CRLS] = {
		[DN_CERTIFICATES] = "UPDATE certificates SET subject = ?1, issuer = ?2 WHERE id = ?3",
		[DN_VERSIONS] = "UPDATE certificate_versions SET subject = ?1, issuer = ?2"
				" WHERE id = ?3",
		[DN_TRUSTSTORE] = "UPDATE truststore SET subject = ?1, issuer = ?2 WHERE id = ?3",
	};
	char subject[512], issuer[512];
	cvdb_stmt *list = NULL, *read = NULL;
	int64_t pending = 0;
	int rc, r, tbl;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	/* Another process may have done it meanwhile: the list is read under the lock. */
	rc = cvdb_prepare(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
				" AND name = 'dn_refresh'", 0, &list, NULL);
	if (rc == SQLITE_OK && (rc = cvdb_step(list)) == SQLITE_ROW)
		pending = cvdb_column_int64(list, 0);
	if (rc != SQLITE_ROW) {
		r = store_err(rc);
		goto out;
	}
	cvdb_finalize(list);
	list = NULL;
	if (pending == 0) {
		r = 0;
		goto out;
	}
	rc = cvdb_prepare(db, "SELECT tbl, id FROM dn_refresh", 0, &list, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(list)) == SQLITE_ROW) {
		int64_t id = cvdb_column_int64(list, 1);

		tbl = cvdb_column_int(list, 0);
		if (tbl < DN_CERTIFICATES || tbl > DN_CRLS)
			continue;
		rc = cvdb_prepare(db, select[tbl], 0, &read, NULL);
		if (rc == SQLITE_OK)
			rc = cvdb_bind_int64(read, 1, id);
		if (rc != SQLITE_OK) {
			r = store_err(rc);
			goto out;
		}
		rc = cvdb_step(read);
		subject[0] = issuer[0] = '\0';
		if (rc == SQLITE_ROW &&
		    dn_of(tbl, (const char *)cvdb_column_blob(read, 0),
			  cvdb_column_bytes(read, 0), subject,
			  sizeof(subject), issuer, sizeof(issuer)) == 0) {
			if (tbl == DN_CRLS)
				r = store_run(db, "UPDATE crls SET issuer = ?1 WHERE id = ?2", "ti",
					      issuer, id);
			else
				r = store_run(db, update[tbl], "tti", subject, issuer, id);
			if (r < 0)
				goto out;
		} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
			r = store_err(rc);
			goto out;
		}
		cvdb_finalize(read);
		read = NULL;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	cvdb_finalize(list);
	list = NULL;
	r = store_exec(db, "DROP TABLE dn_refresh");
out:
	cvdb_finalize(read);
	cvdb_finalize(list);
	return store_finish(db, r);
}
