/* store: API tokens, their secrets as SHA-256 hashes only. */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

#define TOKEN_COLS "id, name, role, secret_hash, created_at, expires_at, revoked_at, scope," \
		   " last_used_at, last_used_from"

static int read_token(cvdb_stmt *stmt, struct cv_api_token *t)
{
	int r, role;

	memset(t, 0, sizeof(*t));
	r = store_copy_text(stmt, 0, t->id, sizeof(t->id));
	if (r == 0)
		r = store_copy_text(stmt, 1, t->name, sizeof(t->name));
	if (r < 0)
		return r;
	role = cvdb_column_int(stmt, 2);
	if (role < CV_ROLE_ADMIN || role > CV_ROLE_AUDITOR ||
	    cvdb_column_bytes(stmt, 3) != (int)sizeof(t->secret_hash))
		return CV_ERR_DB;
	t->role = (enum cv_role)role;
	memcpy(t->secret_hash, cvdb_column_blob(stmt, 3), sizeof(t->secret_hash));
	t->created_at = cvdb_column_int64(stmt, 4);
	t->expires_at = cvdb_column_int64(stmt, 5);
	t->revoked_at = cvdb_column_int64(stmt, 6);
	r = store_copy_text(stmt, 7, t->scope, sizeof(t->scope));
	if (r < 0)
		return r;
	t->last_used_at = cvdb_column_int64(stmt, 8);
	return store_copy_text(stmt, 9, t->last_used_from, sizeof(t->last_used_from));
}

int cv_store_api_token_insert(struct cv_store *store, const struct cv_api_token *t,
			      const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, "INSERT INTO api_tokens (" TOKEN_COLS ") VALUES (?1, ?2, ?3,"
				" ?4, ?5, ?6, 0, ?7, 0, '')", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, t->id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 2, t->name);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int(stmt, 3, (int)t->role);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(stmt, 4, t->secret_hash, sizeof(t->secret_hash));
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 5, t->created_at);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 6, t->expires_at);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 7, t->scope);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		r = CV_ERR_NAME_TAKEN;
	else if (rc != SQLITE_DONE)
		r = store_err(rc);
	else
		r = store_audit_append_on(db, audit);
	cvdb_finalize(stmt);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}

int cv_store_api_token_get(struct cv_store *store, const char *id, struct cv_api_token *ret)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	/* Every request with a token comes here: the statement stays prepared. */
	r = store_prepare(conn, "SELECT " TOKEN_COLS " FROM api_tokens WHERE id = ?1", &stmt);
	if (r == 0 && store_bind_text(stmt, 1, id) != SQLITE_OK)
		r = CV_ERR_DB;
	if (r == 0)
		r = store_step_one(stmt);
	if (r == 0)
		r = read_token(stmt, ret);
	store_return(store, conn);
	return r;
}

int cv_store_api_token_list(struct cv_store *store, struct cv_api_token **ret_tokens,
			    size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	struct cv_api_token *all = NULL, *grown;
	cvdb_stmt *stmt = NULL;
	size_t n = 0, cap = 0;
	int rc, r = 0;

	rc = cvdb_prepare(db, "SELECT " TOKEN_COLS " FROM api_tokens"
				" ORDER BY created_at DESC, id", 0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(all, &cap, n, sizeof(*all));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		all = grown;
		r = read_token(stmt, &all[n]);
		if (r < 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	*ret_tokens = all;
	*ret_n = n;
	all = NULL;
out:
	free(all);
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}

int cv_store_api_token_revoke(struct cv_store *store, const char *id, int64_t now,
			      const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_run(db, "UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2 AND revoked_at = 0",
		      "it", now, id);
	if (r == 0 && cvdb_changes(db) != 1)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}

int cv_store_api_token_seen(struct cv_store *store, const char *id, int64_t now,
			    const char *source, int64_t interval)
{
	struct store_conn *conn = store_borrow(store);
	int r;

	/* One statement, its own transaction: the condition makes concurrent requests of one
	 * token write once per interval whichever of them comes first. */
	r = store_run(conn->db, "UPDATE api_tokens SET last_used_at = ?1, last_used_from = ?2"
		      " WHERE id = ?3 AND last_used_at <= ?4", "itti", now,
		      source != NULL ? source : "", id, now - interval);
	store_return(store, conn);
	return r;
}

int cv_store_api_token_count(struct cv_store *store, int64_t *ret)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, "SELECT count(*) FROM api_tokens", 0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0)
		*ret = cvdb_column_int64(stmt, 0);
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}
