/* store: console sessions, their secrets as SHA-256 hashes only. */
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

#define SESSION_COLS "id, secret_hash, token_id, created_at, last_seen, expires_at"

int cv_store_session_insert(struct cv_store *store, const struct cv_session *s, int64_t now,
			    int64_t idle_cutoff, const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	/* Ended sessions go here rather than on a timer: a sign-in is rare, and the table then
	 * holds no more than the sessions that could still be used. */
	r = store_run(db, "DELETE FROM console_sessions WHERE expires_at <= ?1 OR last_seen < ?2",
		      "ii", now, idle_cutoff);
	if (r < 0)
		goto finish;
	rc = cvdb_prepare(db, "INSERT INTO console_sessions (" SESSION_COLS ") VALUES (?1,"
				" ?2, ?3, ?4, ?5, ?6)", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, s->id);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(stmt, 2, s->secret_hash, sizeof(s->secret_hash));
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 3, s->token_id);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 4, s->created_at);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 5, s->last_seen);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 6, s->expires_at);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		r = CV_ERR_NAME_TAKEN;
	else if (rc != SQLITE_DONE)
		r = store_err(rc);
	else
		r = store_audit_append_on(db, audit);
	cvdb_finalize(stmt);
finish:
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}

int cv_store_session_get(struct cv_store *store, const char *id, struct cv_session *ret)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	memset(ret, 0, sizeof(*ret));
	/* Every request from the console comes here: the statement stays prepared. */
	r = store_prepare(conn, "SELECT " SESSION_COLS " FROM console_sessions WHERE id = ?1",
			  &stmt);
	if (r == 0 && store_bind_text(stmt, 1, id) != SQLITE_OK)
		r = CV_ERR_DB;
	if (r == 0)
		r = store_step_one(stmt);
	if (r == 0)
		r = store_copy_text(stmt, 0, ret->id, sizeof(ret->id));
	if (r == 0 && cvdb_column_bytes(stmt, 1) != (int)sizeof(ret->secret_hash))
		r = CV_ERR_DB;
	if (r == 0) {
		memcpy(ret->secret_hash, cvdb_column_blob(stmt, 1), sizeof(ret->secret_hash));
		r = store_copy_text(stmt, 2, ret->token_id, sizeof(ret->token_id));
	}
	if (r == 0) {
		ret->created_at = cvdb_column_int64(stmt, 3);
		ret->last_seen = cvdb_column_int64(stmt, 4);
		ret->expires_at = cvdb_column_int64(stmt, 5);
	}
	store_return(store, conn);
	return r;
}

int cv_store_session_touch(struct cv_store *store, const char *id, int64_t now)
{
	struct store_conn *conn = store_borrow(store);
	int r;

	r = store_run(conn->db, "UPDATE console_sessions SET last_seen = ?1 WHERE id = ?2 AND"
		      " last_seen < ?1", "it", now, id);
	store_return(store, conn);
	return r;
}

int cv_store_session_delete(struct cv_store *store, const char *id,
			    const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_run(db, "DELETE FROM console_sessions WHERE id = ?1", "t", id);
	if (r == 0 && cvdb_changes(db) != 1)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}
