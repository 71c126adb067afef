/* store: the truststore, CA certificates under an alias. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

#define TRUST_COLS                                                                       \
	"id, alias, cert_der, subject, issuer, serial, sha256_fingerprint,"             \
	" key_description, not_before, not_after, source, created_at"

void cv_store_trust_free(struct cv_trust_record *recs, size_t n)
{
	size_t i;

	for (i = 0; recs != NULL && i < n; i++)
		free(recs[i].cert_der);
	free(recs);
}

static int read_trust(cvdb_stmt *stmt, struct cv_trust_record *rec)
{
	const void *blob;
	int n, r;

	memset(rec, 0, sizeof(*rec));
	rec->id = cvdb_column_int64(stmt, 0);
	r = store_copy_text(stmt, 1, rec->alias, sizeof(rec->alias));
	if (r == 0)
		r = store_copy_text(stmt, 3, rec->subject, sizeof(rec->subject));
	if (r == 0)
		r = store_copy_text(stmt, 4, rec->issuer, sizeof(rec->issuer));
	if (r == 0)
		r = store_copy_text(stmt, 5, rec->serial, sizeof(rec->serial));
	if (r == 0)
		r = store_copy_text(stmt, 6, rec->sha256_fingerprint,
				    sizeof(rec->sha256_fingerprint));
	if (r == 0)
		r = store_copy_text(stmt, 7, rec->key_description, sizeof(rec->key_description));
	if (r == 0)
		r = store_copy_text(stmt, 10, rec->source, sizeof(rec->source));
	if (r < 0)
		return r;
	blob = cvdb_column_blob(stmt, 2);
	n = cvdb_column_bytes(stmt, 2);
	if (blob == NULL || n <= 0)
		return CV_ERR_DB;
	rec->cert_der = malloc((size_t)n);
	if (rec->cert_der == NULL)
		return CV_ERR_NOMEM;
	memcpy(rec->cert_der, blob, (size_t)n);
	rec->cert_der_len = (size_t)n;
	rec->not_before = cvdb_column_int64(stmt, 8);
	rec->not_after = cvdb_column_int64(stmt, 9);
	rec->created_at = cvdb_column_int64(stmt, 11);
	return 0;
}

/* The alias that already holds this fingerprint, into c->detail: 1 when there is one. */
static int trusted_as(cvdb *db, const char *fingerprint, struct cv_conflict *c)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, "SELECT alias FROM truststore WHERE sha256_fingerprint = ?1", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, fingerprint);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == CV_ERR_NOT_FOUND) {
		r = 0;
		goto out;
	}
	if (r == 0 && c != NULL)
		r = store_copy_text(stmt, 0, c->detail, sizeof(c->detail));
	if (r == 0)
		r = 1;
out:
	cvdb_finalize(stmt);
	return r;
}

int cv_store_trust_insert(struct cv_store *store, const struct cv_trust_record *recs, size_t n,
			  struct cv_conflict *conflict, const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	size_t i;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db,
				"INSERT INTO truststore (alias, cert_der, subject, issuer, serial,"
				" sha256_fingerprint, key_description, not_before, not_after,"
				" source, created_at)"
				" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)", 0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	for (i = 0; i < n; i++) {
		const struct cv_trust_record *t = &recs[i];

		r = trusted_as(db, t->sha256_fingerprint, conflict);
		if (r == 1)
			r = CV_ERR_SAME_CERTIFICATE;
		if (r < 0)
			goto out;
		rc = store_bind_text(stmt, 1, t->alias);
		if (rc == SQLITE_OK)
			rc = cvdb_bind_blob(stmt, 2, t->cert_der, t->cert_der_len);
		if (rc == SQLITE_OK)
			rc = store_bind_text(stmt, 3, t->subject);
		if (rc == SQLITE_OK)
			rc = store_bind_text(stmt, 4, t->issuer);
		if (rc == SQLITE_OK)
			rc = store_bind_text(stmt, 5, t->serial);
		if (rc == SQLITE_OK)
			rc = store_bind_text(stmt, 6, t->sha256_fingerprint);
		if (rc == SQLITE_OK)
			rc = store_bind_text(stmt, 7, t->key_description);
		if (rc == SQLITE_OK)
			rc = cvdb_bind_int64(stmt, 8, t->not_before);
		if (rc == SQLITE_OK)
			rc = cvdb_bind_int64(stmt, 9, t->not_after);
		if (rc == SQLITE_OK)
			rc = store_bind_text(stmt, 10, t->source);
		if (rc == SQLITE_OK)
			rc = cvdb_bind_int64(stmt, 11, t->created_at);
		if (rc == SQLITE_OK)
			rc = cvdb_step(stmt);
		if (rc == SQLITE_CONSTRAINT_UNIQUE) {
			if (conflict != NULL)
				snprintf(conflict->detail, sizeof(conflict->detail), "%s", t->alias);
			r = CV_ERR_NAME_TAKEN;
			goto out;
		}
		if (rc != SQLITE_DONE || (rc = cvdb_reset(stmt)) != SQLITE_OK) {
			r = store_err(rc);
			goto out;
		}
	}
	r = store_audit_append_on(db, audit);
out:
	cvdb_finalize(stmt);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

/* Reads every row stmt gives. 0 (*ret_recs the caller's, NULL when none), CV_ERR_NOMEM or
 * CV_ERR_DB. */
static int read_all(cvdb_stmt *stmt, struct cv_trust_record **ret_recs, size_t *ret_n)
{
	struct cv_trust_record *recs = NULL, *grown;
	size_t n = 0, cap = 0;
	int rc, r;

	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(recs, &cap, n, sizeof(*recs));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		recs = grown;
		r = read_trust(stmt, &recs[n]);
		n++; /* its blob, if any, is freed with the others */
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
	cv_store_trust_free(recs, n);
	return r;
}

int cv_store_trust_get(struct cv_store *store, const char *alias,
		       struct cv_trust_record **ret_recs, size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	struct cv_trust_record *recs = NULL;
	cvdb_stmt *stmt = NULL;
	size_t n = 0;
	int rc, r;

	rc = cvdb_prepare(db,
				alias != NULL ? "SELECT " TRUST_COLS " FROM truststore"
						" WHERE alias = ?1 COLLATE NOCASE"
					      : "SELECT " TRUST_COLS " FROM truststore ORDER BY alias", 0, &stmt, NULL);
	if (rc == SQLITE_OK && alias != NULL)
		rc = store_bind_text(stmt, 1, alias);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = read_all(stmt, &recs, &n);
	if (r < 0)
		goto out;
	if (alias != NULL && n == 0) {
		r = CV_ERR_NOT_FOUND;
		goto out;
	}
	*ret_recs = recs;
	*ret_n = n;
	recs = NULL;
	n = 0;
	r = 0;
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	cv_store_trust_free(recs, n);
	return r;
}

int cv_store_trust_page(struct cv_store *store, const char *after, unsigned limit,
			struct cv_trust_record **ret_recs, size_t *ret_n)
{
	/* alias is UNIQUE: its index walks the keyset from the cursor. */
	static const char sql[] = "SELECT " TRUST_COLS " FROM truststore"
				  " WHERE alias > ?1 ORDER BY alias LIMIT ?2";
	struct store_conn *conn;
	cvdb_stmt *stmt;
	int rc, r;

	if (limit < 1 || limit > 1000)
		return CV_ERR_BAD_REQUEST;
	conn = store_borrow(store);
	r = store_prepare(conn, sql, &stmt);
	if (r < 0)
		goto out;
	/* Every alias is greater than "": the first page. */
	rc = store_bind_text(stmt, 1, after != NULL ? after : "");
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, (int64_t)limit);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = read_all(stmt, ret_recs, ret_n);
out:
	store_return(store, conn);
	return r;
}

int cv_store_trust_remove(struct cv_store *store, const char *alias,
			  const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = store_run(db, "DELETE FROM truststore WHERE alias = ?1 COLLATE NOCASE", "t", alias);
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

/* Substring search over what a person knows a CA by; '\' escapes LIKE's wildcards. */
#define TRUST_Q_WHERE                                                                    \
	" AND (CAST(:q AS TEXT) IS NULL OR alias LIKE :q ESCAPE '\\'"                      \
	" OR subject LIKE :q ESCAPE '\\'"                                                   \
	" OR issuer LIKE :q ESCAPE '\\' OR serial LIKE :q ESCAPE '\\'"                      \
	" OR sha256_fingerprint LIKE :q ESCAPE '\\')"

/* Binds :q to pattern, or NULL: no search. */
static int bind_q(cvdb_stmt *stmt, const char *pattern)
{
	int idx = cvdb_bind_parameter_index(stmt, ":q");

	return pattern != NULL ? store_bind_text(stmt, idx, pattern) : cvdb_bind_null(stmt, idx);
}

int cv_store_trust_search(struct cv_store *store, const char *q, const char *after,
			  unsigned limit, struct cv_trust_record **ret_recs, size_t *ret_n,
			  int64_t *ret_total)
{
	char *pattern = NULL;
	static const char page_sql[] = "SELECT " TRUST_COLS " FROM truststore"
				       " WHERE alias > :after" TRUST_Q_WHERE
				       " ORDER BY alias LIMIT :limit";
	static const char count_sql[] = "SELECT count(*) FROM truststore WHERE 1 = 1" TRUST_Q_WHERE;
	struct store_conn *conn;
	cvdb_stmt *stmt;
	int rc, r;

	*ret_recs = NULL;
	*ret_n = 0;
	if (limit < 1 || limit > 1001)
		return CV_ERR_BAD_REQUEST;
	if (q != NULL && (pattern = store_like_pattern(q)) == NULL)
		return CV_ERR_NOMEM;
	conn = store_borrow(store);
	/* The page and its total from one snapshot. */
	r = store_read_begin(conn);
	if (r < 0)
		goto out;
	r = store_prepare(conn, page_sql, &stmt);
	if (r < 0)
		goto out;
	/* Every alias is greater than "": the first page. */
	rc = store_bind_text(stmt, cvdb_bind_parameter_index(stmt, ":after"),
			     after != NULL ? after : "");
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, cvdb_bind_parameter_index(stmt, ":limit"),
					(int64_t)limit);
	if (rc == SQLITE_OK)
		rc = bind_q(stmt, pattern);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = read_all(stmt, ret_recs, ret_n);
	if (r < 0)
		goto out;
	r = store_prepare(conn, count_sql, &stmt);
	if (r < 0)
		goto out;
	rc = bind_q(stmt, pattern);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (rc != SQLITE_ROW) {
		r = store_err(rc);
		goto out;
	}
	*ret_total = cvdb_column_int64(stmt, 0);
	r = 0;
out:
	r = store_read_end(conn, r);
	store_return(store, conn);
	free(pattern);
	if (r < 0 && *ret_recs != NULL) {
		cv_store_trust_free(*ret_recs, *ret_n);
		*ret_recs = NULL;
		*ret_n = 0;
	}
	return r;
}
