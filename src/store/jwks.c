/* store: JWKs made from certificates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

#define JWK_COLS                                                                         \
	"kid, coalesce(cert_id, 0), cert_name, cert_version, use, alg, jwk, state,"     \
	" coalesce(superseded_by, ''), created_at, updated_at, superseded_at"

static void jwk_release(struct cv_jwk_record *rec)
{
	free(rec->jwk);
	rec->jwk = NULL;
}

void cv_store_jwk_free(struct cv_jwk_record *rec)
{
	if (rec == NULL)
		return;
	jwk_release(rec);
	free(rec);
}

void cv_store_jwks_free(struct cv_jwk_record *recs, size_t n)
{
	size_t i;

	for (i = 0; recs != NULL && i < n; i++)
		jwk_release(&recs[i]);
	free(recs);
}

static int read_jwk(cvdb_stmt *stmt, struct cv_jwk_record *rec)
{
	int r;

	memset(rec, 0, sizeof(*rec));
	r = store_copy_text(stmt, 0, rec->kid, sizeof(rec->kid));
	if (r == 0)
		r = store_copy_text(stmt, 2, rec->cert_name, sizeof(rec->cert_name));
	if (r == 0)
		r = store_copy_text(stmt, 4, rec->use, sizeof(rec->use));
	if (r == 0)
		r = store_copy_text(stmt, 5, rec->alg, sizeof(rec->alg));
	if (r == 0)
		r = store_copy_text(stmt, 8, rec->superseded_by, sizeof(rec->superseded_by));
	if (r == 0)
		r = store_dup_text(stmt, 6, &rec->jwk);
	if (r < 0)
		return r;
	rec->cert_id = cvdb_column_int64(stmt, 1);
	rec->cert_version = cvdb_column_int64(stmt, 3);
	rec->state = (enum cv_jwk_state)cvdb_column_int64(stmt, 7);
	rec->created_at = cvdb_column_int64(stmt, 9);
	rec->updated_at = cvdb_column_int64(stmt, 10);
	rec->superseded_at = cvdb_column_int64(stmt, 11);
	return 0;
}

int store_jwk_insert_on(cvdb *db, const struct cv_jwk_record *rec)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db,
				"INSERT INTO jwks (kid, cert_id, cert_name, cert_version, use, alg,"
				" jwk, state, created_at, updated_at)"
				" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8)", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, rec->kid);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, rec->cert_id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 3, rec->cert_name);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 4, rec->cert_version);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 5, rec->use);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 6, rec->alg);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 7, rec->jwk);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 8, rec->created_at);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (rc == SQLITE_DONE)
		r = 0;
	else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		r = CV_ERR_NAME_TAKEN;
	else
		r = store_err(rc);
	cvdb_finalize(stmt);
	return r;
}

int cv_store_jwk_insert(struct cv_store *store, const struct cv_jwk_record *rec,
			const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	/* IMMEDIATE: the certificate is still at the version the JWK was made from when the
	 * row goes in. */
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, "SELECT version FROM certificates WHERE id = ?1 AND state = 1", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, rec->cert_id);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r < 0)
		goto out;
	if (cvdb_column_int64(stmt, 0) != rec->cert_version) {
		r = CV_ERR_ALREADY_RENEWED;
		goto out;
	}
	r = store_jwk_insert_on(db, rec);
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	cvdb_finalize(stmt);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int cv_store_jwk_get(struct cv_store *store, const char *kid, struct cv_jwk_record **ret_rec)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	struct cv_jwk_record *rec = NULL;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, "SELECT " JWK_COLS " FROM jwks WHERE kid = ?1", 0, &stmt,
				NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, kid);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r < 0)
		goto out;
	rec = malloc(sizeof(*rec));
	if (rec == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = read_jwk(stmt, rec);
	if (r < 0)
		goto out;
	*ret_rec = rec;
	rec = NULL;
out:
	cv_store_jwk_free(rec);
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}

int cv_store_jwk_remove(struct cv_store *store, const char *kid,
			const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = store_run(db, "DELETE FROM jwks WHERE kid = ?1", "t", kid);
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int store_jwk_list_on(cvdb *db, int64_t cert_id, struct cv_jwk_record **ret_recs,
		      size_t *ret_n)
{
	struct cv_jwk_record *recs = NULL, *grown;
	cvdb_stmt *stmt = NULL;
	size_t n = 0, cap = 0;
	int rc, r;

	rc = cvdb_prepare(db,
				cert_id != 0 ? "SELECT " JWK_COLS " FROM jwks"
					       " WHERE cert_id = ?1 AND state = 1 ORDER BY kid"
					     : "SELECT " JWK_COLS " FROM jwks WHERE state = 1"
					       " ORDER BY created_at, kid", 0, &stmt, NULL);
	if (rc == SQLITE_OK && cert_id != 0)
		rc = cvdb_bind_int64(stmt, 1, cert_id);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(recs, &cap, n, sizeof(*recs));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		recs = grown;
		r = read_jwk(stmt, &recs[n]);
		if (r < 0)
			goto out;
		n++;
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
	cvdb_finalize(stmt);
	cv_store_jwks_free(recs, n);
	return r;
}

int cv_store_jwk_published(struct cv_store *store, int64_t now, int64_t retention,
			   struct cv_jwk_record **ret_recs, size_t *ret_n,
			   int64_t *ret_next_change)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_jwk_record *recs = NULL, *grown;
	cvdb_stmt *stmt = NULL;
	size_t n = 0, cap = 0, i;
	int64_t since, next = INT64_MAX, leaves;
	int rc, r;

	/* Superseded at or after since are still published. */
	if (__builtin_sub_overflow(now, retention, &since))
		since = INT64_MIN;
	rc = cvdb_prepare(conn->db,
				"SELECT " JWK_COLS " FROM jwks WHERE state = 1"
				" OR (state = 2 AND superseded_at > ?1) ORDER BY created_at, kid", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, since);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(recs, &cap, n, sizeof(*recs));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		recs = grown;
		r = read_jwk(stmt, &recs[n]);
		if (r < 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (recs[i].state != CV_JWK_SUPERSEDED)
			continue;
		if (__builtin_add_overflow(recs[i].superseded_at, retention, &leaves))
			leaves = INT64_MAX;
		if (leaves < next)
			next = leaves;
	}
	*ret_recs = recs;
	*ret_n = n;
	*ret_next_change = next;
	recs = NULL;
	n = 0;
	r = 0;
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	cv_store_jwks_free(recs, n);
	return r;
}

int cv_store_jwk_list(struct cv_store *store, int64_t cert_id, struct cv_jwk_record **ret_recs,
		      size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_jwk_list_on(db, cert_id, ret_recs, ret_n);
	store_return(store, conn);
	return r;
}

int cv_store_jwk_page(struct cv_store *store, int64_t cert_id, const char *after,
		      unsigned limit, struct cv_jwk_record **ret_recs, size_t *ret_n)
{
	return cv_store_jwk_page_scoped(store, cert_id, after, limit, NULL, ret_recs, ret_n);
}

int cv_store_jwk_page_scoped(struct cv_store *store, int64_t cert_id, const char *after,
			     unsigned limit, const struct cv_scope_objects *scope,
			     struct cv_jwk_record **ret_recs, size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_jwk_record *recs = NULL, *grown;
	cvdb_stmt *stmt = NULL;
	char sql[3072], where[2048];
	size_t n = 0, cap = 0;
	int rc, r;

	if (limit < 1 || limit > 1000) {
		r = CV_ERR_BAD_REQUEST;
		goto out;
	}
	r = store_scope_cert_where(scope, where, sizeof(where));
	if (r < 0)
		goto out;
	/* kid is the primary key: the page is one range of it, by cert_id's index when one
	 * certificate's are asked for. A scope that restricts certificates shows the JWKs of
	 * those inside it only; an unlinked JWK belongs to none of them. */
	if (snprintf(sql, sizeof(sql), "SELECT " JWK_COLS " FROM jwks WHERE (:cert = 0 OR"
		     " cert_id = :cert) AND kid > :after%s%s%s ORDER BY kid LIMIT :limit",
		     where[0] != '\0' ? " AND cert_id IN (SELECT id FROM certificates WHERE 1 = 1" : "",
		     where, where[0] != '\0' ? ")" : "") >= (int)sizeof(sql)) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	rc = cvdb_prepare(conn->db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, cvdb_bind_parameter_index(stmt, ":cert"), cert_id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, cvdb_bind_parameter_index(stmt, ":after"),
				     after != NULL ? after : "");
	if (rc == SQLITE_OK)
		rc = store_scope_bind(stmt, scope);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, cvdb_bind_parameter_index(stmt, ":limit"), limit);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(recs, &cap, n, sizeof(*recs));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		recs = grown;
		r = read_jwk(stmt, &recs[n]);
		if (r < 0)
			goto out;
		n++;
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
	cvdb_finalize(stmt);
	store_return(store, conn);
	cv_store_jwks_free(recs, n);
	return r;
}
