/* store: consistent copies of the database while certvaultd runs, and what a copy holds
 * (its schema version, its audit chain's head, the keys its rows need in the token). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "internal.h"

/* How long the copy waits for a moment when no writer holds SQLite's locks before it gives
 * up: in WAL mode a reader is not blocked by writers, so this is only ever a checkpoint or a
 * recovery of the WAL index. */
#define BACKUP_BUSY_MS 10000

/* Every key a row needs in the token, with what names it. A public certificate (has_key 0)
 * carries a random id no object ever had: none is needed. A version whose key was destroyed
 * needs none. Pending certificates and the journal name keys being made. */
static const char keys_sql[] =
	"SELECT key_id, name, version, 'current', updated_at FROM certificates WHERE has_key = 1"
	" UNION ALL SELECT v.key_id, c.name, v.version, 'version', v.current_from"
	"  FROM certificate_versions v"
	"  JOIN certificates c ON c.id = v.cert_id WHERE v.key_state <> 2"
	" UNION ALL SELECT key_id, name, 0, 'pending', NULL FROM pending_certificates"
	" UNION ALL SELECT j.key_id, coalesce(c.name, ''), 0, 'journal', NULL FROM key_journal j"
	"  LEFT JOIN certificates c ON c.id = j.cert_id"
	" ORDER BY 1";

static int keys_walk(cvdb *db, cvdb_stmt *stmt, cv_store_key_fn fn, void *arg)
{
	struct cv_store_key_ref ref;
	const unsigned char *name;
	int rc, r = 0;

	(void)db;
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		if (cvdb_column_bytes(stmt, 0) != CV_TOKEN_ID_LEN)
			return CV_ERR_DB;
		memset(&ref, 0, sizeof(ref));
		memcpy(ref.id, cvdb_column_blob(stmt, 0), CV_TOKEN_ID_LEN);
		name = cvdb_column_text(stmt, 1);
		snprintf(ref.name, sizeof(ref.name), "%s", name != NULL ? (const char *)name : "");
		ref.version = cvdb_column_int64(stmt, 2);
		snprintf(ref.row, sizeof(ref.row), "%s", (const char *)cvdb_column_text(stmt, 3));
		ref.named_at = cvdb_column_type(stmt, 4) == SQLITE_NULL ?
				       CV_TOKEN_NAMED_UNKNOWN : cvdb_column_int64(stmt, 4);
		r = fn(&ref, arg);
		if (r != 0)
			return r;
	}
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

int cv_store_keys_foreach(struct cv_store *store, cv_store_key_fn fn, void *arg)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt = NULL;
	int r;

	r = store_read_begin(conn);
	if (r < 0)
		goto out;
	r = store_prepare(conn, keys_sql, &stmt);
	if (r == 0)
		r = keys_walk(conn->db, stmt, fn, arg);
	r = store_read_end(conn, r);
out:
	store_return(store, conn);
	return r;
}

static int open_file(const char *path, int flags, cvdb **ret, struct cv_errmsg *err)
{
	cvdb *db = NULL;
	int rc;

	rc = cvdb_open_sqlite(path, flags | SQLITE_OPEN_NOMUTEX, &db);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(cvdb_sqlite(db), BACKUP_BUSY_MS);
	if (rc != SQLITE_OK) {
		cv_errmsg_set(err, CV_ERR_DB, "database %s: %s", path,
			      db != NULL ? cvdb_errmsg(db) : cvdb_errstr(rc));
		cvdb_close(db);
		return CV_ERR_DB;
	}
	*ret = db;
	return 0;
}

int cv_store_backup_copy(const char *path, const char *dest, struct cv_errmsg *err)
{
	cvdb *src = NULL, *dst = NULL;
	sqlite3_backup *b = NULL;
	char *mode = NULL;
	int rc, r, fd = -1;

	/* Read-write without create: a missing database is an error, not an empty copy, and a
	 * reader of a WAL database may have to make the -shm index. Nothing is written. */
	r = open_file(path, SQLITE_OPEN_READWRITE, &src, err);
	if (r < 0)
		goto out;
	r = open_file(dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &dst, err);
	if (r < 0)
		goto out;
	b = sqlite3_backup_init(cvdb_sqlite(dst), "main", cvdb_sqlite(src), "main");
	if (b == NULL) {
		r = cv_errmsg_set(err, CV_ERR_DB, "backup of %s: %s", path, cvdb_errmsg(dst));
		goto out;
	}
	/* One step copies every page under one read transaction of the source: the copy is the
	 * database as of one commit, holding every change committed before the step began,
	 * while writers go on (WAL). Busy only while a checkpoint or recovery holds a lock. */
	rc = sqlite3_backup_step(b, -1);
	for (int tries = 0; (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && tries < 100; tries++) {
		sqlite3_sleep(100);
		rc = sqlite3_backup_step(b, -1);
	}
	if (rc != SQLITE_DONE) {
		r = cv_errmsg_set(err, CV_ERR_DB, "backup of %s: %s", path, cvdb_errstr(rc));
		goto out;
	}
	rc = sqlite3_backup_finish(b);
	b = NULL;
	if (rc != SQLITE_OK) {
		r = cv_errmsg_set(err, CV_ERR_DB, "backup of %s: %s", path, cvdb_errmsg(dst));
		goto out;
	}
	/* The copy is one self-contained file: no WAL beside it to lose on the way. */
	rc = sqlite3_exec(cvdb_sqlite(dst), "PRAGMA journal_mode=DELETE", NULL, NULL, &mode);
	if (rc != SQLITE_OK) {
		r = cv_errmsg_set(err, CV_ERR_DB, "backup copy %s: %s", dest,
				  mode != NULL ? mode : cvdb_errstr(rc));
		goto out;
	}
	rc = cvdb_close(dst);
	dst = NULL;
	if (rc != SQLITE_OK) {
		r = cv_errmsg_set(err, CV_ERR_DB, "backup copy %s: %s", dest, cvdb_errstr(rc));
		goto out;
	}
	fd = open(dest, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0) {
		r = cv_errmsg_set(err, CV_ERR_DB, "backup copy %s: %s", dest, strerror(errno));
		goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	sqlite3_free(mode);
	if (b != NULL)
		sqlite3_backup_finish(b);
	cvdb_close(dst);
	cvdb_close(src);
	return r;
}

/* The journal mode a PRAGMA journal_mode answered. */
static int mode_row(void *arg, int n, char **values, char **names)
{
	(void)names;
	if (n > 0 && values[0] != NULL)
		snprintf(arg, 16, "%s", values[0]);
	return 0;
}

int cv_store_db_quiesce(const char *path, struct cv_errmsg *err)
{
	cvdb *db = NULL;
	char *msg = NULL, mode[16] = "";
	int rc, r;

	r = open_file(path, SQLITE_OPEN_READWRITE, &db, err);
	if (r < 0)
		return r;
	/* Not waiting: a connection that holds it open now is a running certvaultd. */
	(void)sqlite3_busy_timeout(cvdb_sqlite(db), 0);
	rc = sqlite3_exec(cvdb_sqlite(db), "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, &msg);
	sqlite3_free(msg);
	msg = NULL;
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(cvdb_sqlite(db), "PRAGMA journal_mode=DELETE", mode_row, mode,
				  &msg);
	/* SQLite answers the mode it kept when it could not change it. */
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED ||
	    (rc == SQLITE_OK && strcmp(mode, "delete") != 0))
		r = cv_errmsg_set(err, CV_ERR_IN_USE, "database %s is open in another process (a "
				  "certvaultd running on it?): stop it first", path);
	else if (rc != SQLITE_OK)
		r = cv_errmsg_set(err, CV_ERR_DB, "database %s: %s", path,
				  msg != NULL ? msg : cvdb_errstr(rc));
	sqlite3_free(msg);
	rc = cvdb_close(db);
	if (r == 0 && rc != SQLITE_OK)
		r = cv_errmsg_set(err, CV_ERR_DB, "database %s: %s", path, cvdb_errstr(rc));
	return r;
}

struct facts_keys {
	struct cv_store_backup_facts *f;
	size_t cap;
};

static int facts_key(const struct cv_store_key_ref *ref, void *arg)
{
	struct facts_keys *k = arg;
	struct cv_store_key_ref *grown;

	grown = store_grow(k->f->keys, &k->cap, k->f->n_keys, sizeof(*grown));
	if (grown == NULL)
		return CV_ERR_NOMEM;
	k->f->keys = grown;
	k->f->keys[k->f->n_keys++] = *ref;
	return 0;
}

int cv_store_backup_facts(const char *path, struct cv_store_backup_facts *ret,
			  struct cv_errmsg *err)
{
	struct facts_keys k = { ret, 0 };
	cvdb *db = NULL;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	memset(ret, 0, sizeof(*ret));
	r = open_file(path, SQLITE_OPEN_READONLY, &db, err);
	if (r < 0)
		return r;
	rc = cvdb_exec(db, "BEGIN");
	if (rc != SQLITE_OK)
		goto fail;
	rc = cvdb_prepare(db, "PRAGMA user_version", 0, &stmt, NULL);
	if (rc != SQLITE_OK || (rc = cvdb_step(stmt)) != SQLITE_ROW)
		goto fail;
	ret->schema_version = cvdb_column_int64(stmt, 0);
	cvdb_finalize(stmt);
	stmt = NULL;
	rc = cvdb_prepare(db, "SELECT count(*), max(seq),"
				" (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1)"
				" FROM audit_log", 0, &stmt, NULL);
	if (rc != SQLITE_OK || (rc = cvdb_step(stmt)) != SQLITE_ROW)
		goto fail;
	ret->audit_records = cvdb_column_int64(stmt, 0);
	ret->audit_last_seq = cvdb_column_int64(stmt, 1);
	if (cvdb_column_bytes(stmt, 2) == CV_AUDIT_HASH_LEN) {
		memcpy(ret->audit_head, cvdb_column_blob(stmt, 2), CV_AUDIT_HASH_LEN);
		ret->has_audit_head = 1;
	}
	cvdb_finalize(stmt);
	stmt = NULL;
	rc = cvdb_prepare(db, keys_sql, 0, &stmt, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	r = keys_walk(db, stmt, facts_key, &k);
	if (r < 0) {
		cv_errmsg_set(err, r, "database %s: its keys could not be read: %s", path,
			      cvdb_errmsg(db));
		goto out;
	}
	r = 0;
	goto out;
fail:
	/* A database of another schema (older, or not certvault's) lacks a table or column. */
	r = cv_errmsg_set(err, CV_ERR_DB, "database %s: %s", path,
			  rc == SQLITE_ROW || rc == SQLITE_DONE ? "no answer" : cvdb_errmsg(db));
out:
	cvdb_finalize(stmt);
	cvdb_close(db);
	if (r < 0)
		cv_store_backup_facts_release(ret);
	return r;
}

void cv_store_backup_facts_release(struct cv_store_backup_facts *f)
{
	free(f->keys);
	f->keys = NULL;
	f->n_keys = 0;
}
