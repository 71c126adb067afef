/* store: CRLs in the truststore, one per CA entry that issued it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

#define CRL_COLS                                                                          \
	"c.id, c.trust_id, t.alias, c.issuer, c.this_update, c.next_update, c.number,"  \
	" c.revoked_count, c.sha256, c.created_at"

void cv_store_crls_free(struct cv_crl_record *recs, size_t n)
{
	size_t i;

	for (i = 0; recs != NULL && i < n; i++) {
		free(recs[i].crl_der);
		free(recs[i].ca_der);
	}
	free(recs);
}

static int blob_dup(cvdb_stmt *stmt, int col, unsigned char **ret, size_t *ret_len)
{
	const void *blob = cvdb_column_blob(stmt, col);
	int n = cvdb_column_bytes(stmt, col);

	if (blob == NULL || n <= 0)
		return CV_ERR_DB;
	*ret = malloc((size_t)n);
	if (*ret == NULL)
		return CV_ERR_NOMEM;
	memcpy(*ret, blob, (size_t)n);
	*ret_len = (size_t)n;
	return 0;
}

/* One row of CRL_COLS, then (with_der) the CRL's DER and its CA's. */
static int read_crl(cvdb_stmt *stmt, int with_der, struct cv_crl_record *rec)
{
	int r;

	memset(rec, 0, sizeof(*rec));
	rec->id = cvdb_column_int64(stmt, 0);
	rec->trust_id = cvdb_column_int64(stmt, 1);
	r = store_copy_text(stmt, 2, rec->alias, sizeof(rec->alias));
	if (r == 0)
		r = store_copy_text(stmt, 3, rec->issuer, sizeof(rec->issuer));
	if (r == 0)
		r = store_copy_text(stmt, 6, rec->number, sizeof(rec->number));
	if (r == 0)
		r = store_copy_text(stmt, 8, rec->sha256, sizeof(rec->sha256));
	if (r < 0)
		return r;
	rec->this_update = cvdb_column_int64(stmt, 4);
	rec->next_update = cvdb_column_int64(stmt, 5);
	rec->n_revoked = cvdb_column_int64(stmt, 7);
	rec->created_at = cvdb_column_int64(stmt, 9);
	if (!with_der)
		return 0;
	r = blob_dup(stmt, 10, &rec->crl_der, &rec->crl_der_len);
	if (r == 0)
		r = blob_dup(stmt, 11, &rec->ca_der, &rec->ca_der_len);
	return r;
}

static int read_all(cvdb_stmt *stmt, int with_der, struct cv_crl_record **ret_recs,
		    size_t *ret_n)
{
	struct cv_crl_record *recs = NULL, *grown;
	size_t n = 0, cap = 0;
	int rc, r;

	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(recs, &cap, n, sizeof(*recs));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		recs = grown;
		r = read_crl(stmt, with_der, &recs[n]);
		n++; /* its blobs, if any, are freed with the others */
		if (r < 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	*ret_recs = recs;
	*ret_n = n;
	recs = NULL;
	n = 0;
	r = 0;
out:
	cv_store_crls_free(recs, n);
	return r;
}

int cv_store_crl_put(struct cv_store *store, const struct cv_crl_record *rec,
		     struct cv_conflict *conflict, const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int64_t held;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	/* Judged inside the transaction: two CRLs added at once keep the newer. */
	rc = cvdb_prepare(db, "SELECT this_update FROM crls WHERE trust_id = ?1", 0, &stmt,
				NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, rec->trust_id);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0) {
		held = cvdb_column_int64(stmt, 0);
		if (held >= rec->this_update) {
			if (conflict != NULL)
				snprintf(conflict->detail, sizeof(conflict->detail), "%" PRId64, held);
			r = CV_ERR_SAME_CERTIFICATE;
			goto out;
		}
	} else if (r != CV_ERR_NOT_FOUND) {
		goto out;
	}
	cvdb_finalize(stmt);
	stmt = NULL;
	r = store_run(db, "DELETE FROM crls WHERE trust_id = ?1", "i", rec->trust_id);
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db,
				"INSERT INTO crls (trust_id, crl_der, issuer, this_update,"
				" next_update, number, revoked_count, sha256, created_at)"
				" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, rec->trust_id);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(stmt, 2, rec->crl_der, rec->crl_der_len);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 3, rec->issuer);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 4, rec->this_update);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 5, rec->next_update);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 6, rec->number);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 7, rec->n_revoked);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 8, rec->sha256);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 9, rec->created_at);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
		r = CV_ERR_NOT_FOUND;
		goto out;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	r = store_audit_append_on(db, audit);
out:
	cvdb_finalize(stmt);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

/* Runs sql (?1 bound to text when not NULL) and reads every row. */
static int query(struct cv_store *store, const char *sql, const char *text, int with_der,
		 struct cv_crl_record **ret_recs, size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(conn->db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK && text != NULL)
		rc = store_bind_text(stmt, 1, text);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = read_all(stmt, with_der, ret_recs, ret_n);
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}

int cv_store_crl_list(struct cv_store *store, struct cv_crl_record **ret_recs, size_t *ret_n)
{
	return query(store,
		     "SELECT " CRL_COLS " FROM crls c JOIN truststore t ON t.id = c.trust_id"
		     " ORDER BY t.alias",
		     NULL, 0, ret_recs, ret_n);
}

int cv_store_crl_for_issuer(struct cv_store *store, const char *issuer,
			    struct cv_crl_record **ret_recs, size_t *ret_n)
{
	return query(store,
		     "SELECT " CRL_COLS ", c.crl_der, t.cert_der FROM crls c"
		     " JOIN truststore t ON t.id = c.trust_id WHERE c.issuer = ?1 ORDER BY c.id",
		     issuer, 1, ret_recs, ret_n);
}

int cv_store_crl_remove(struct cv_store *store, const char *alias,
			const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = store_run(db,
			      "DELETE FROM crls WHERE trust_id ="
			      " (SELECT id FROM truststore WHERE alias = ?1 COLLATE NOCASE)",
			      "t", alias);
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}
