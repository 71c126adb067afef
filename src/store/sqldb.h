/* store: one SQL interface over the two engines the store runs on (issue 15).
 *
 * SQLite (a file, the default) and PostgreSQL (a server several certvaultd nodes share) are
 * reached through these calls only, so that the files of src/store hold one copy of each
 * query. The calls mirror the subset of SQLite's C interface the store uses, with SQLite's
 * result codes (SQLITE_OK, SQLITE_ROW, SQLITE_DONE, SQLITE_CONSTRAINT, SQLITE_BUSY, ...) as
 * the one set of codes for both engines: the PostgreSQL side maps SQLSTATEs onto them.
 *
 * SQL is written in SQLite's dialect. On PostgreSQL, cvdb_prepare translates it once per
 * connection and statement (sqldb_pg_translate, pgsql.c): ?N, ? and :name parameters become
 * $N (numbered as SQLite numbers them); "COLLATE NOCASE" becomes a citext cast; LIKE becomes
 * ILIKE (SQLite's LIKE ignores ASCII case); INSERT OR IGNORE becomes ON CONFLICT DO NOTHING;
 * BEGIN IMMEDIATE takes the database's write lock (an advisory transaction lock, so writers
 * are serialised across nodes as SQLite serialises them in one file). A query the
 * translation cannot carry (json_each, GLOB, scalar max/min, strftime) is written twice and
 * chosen with cvdb_pick. Not in a header outside src/store.
 *
 * Where PostgreSQL cannot behave as SQLite does, it refuses instead of differing quietly
 * (sqldb_pg.c): a statement that fails inside a transaction ends that transaction, so the
 * COMMIT after it is an error (SQLite would commit the statements that succeeded); a write
 * inside a read transaction (BEGIN) is refused (SQLite takes the write lock then, or answers
 * SQLITE_BUSY_SNAPSHOT): writes go in BEGIN IMMEDIATE or stand alone, where INSERT, UPDATE
 * and DELETE run as their own transaction under the writer lock, as SQLite's autocommit
 * write takes the file's write lock; a connection lost inside a transaction answers
 * SQLITE_IOERR until the transaction is ended (ROLLBACK), and reconnects after. */
#ifndef CERTVAULT_STORE_SQLDB_H
#define CERTVAULT_STORE_SQLDB_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h> /* result and type codes only, for both engines */

enum cvdb_kind {
	CVDB_SQLITE = 1,
	CVDB_PG = 2,
};

typedef struct cvdb cvdb;
typedef struct cvdb_stmt cvdb_stmt;

/* Opening and closing. target: a file path (SQLite) or a libpq connection string
 * (PostgreSQL). flags: SQLite's open flags (ignored for PostgreSQL). On failure *ret is
 * NULL or a handle whose cvdb_errmsg says why (close it either way). */
int cvdb_open_sqlite(const char *path, int flags, cvdb **ret);
int cvdb_open_pg(const char *conninfo, cvdb **ret);
/* SQLITE_OK, or the close's failure (the handle is released either way). */
int cvdb_close(cvdb *db);
enum cvdb_kind cvdb_kind(const cvdb *db);
/* The SQLite handle underneath (NULL on PostgreSQL), for what only SQLite has: WAL and
 * update hooks, the online backup, pragmas, file control. */
sqlite3 *cvdb_sqlite(cvdb *db);
/* The libpq handle underneath (a PGconn *; NULL on SQLite). */
void *cvdb_pg(cvdb *db);
/* PostgreSQL's stand-in for SQLite's update hook: fn(arg, sql) after each statement that
 * changed rows (INSERT, UPDATE, DELETE, MERGE; sql as written, before translation), in the
 * calling thread. Rows changed by the server on its own (foreign-key actions, triggers) are
 * not named: the caller judges the statement. Nothing on SQLite. */
typedef void (*cvdb_write_hook)(void *arg, const char *sql);
void cvdb_set_write_hook(cvdb *db, cvdb_write_hook fn, void *arg);

/* Statements. cvdb_prepare compiles one statement (tail: what follows it in sql, may be NULL;
 * *ret NULL when only whitespace or a comment was left). persistent: it will be kept and run
 * many times (SQLite's SQLITE_PREPARE_PERSISTENT; PostgreSQL prepares it server-side). */
int cvdb_prepare(cvdb *db, const char *sql, int persistent, cvdb_stmt **ret, const char **tail);
int cvdb_finalize(cvdb_stmt *stmt);   /* NULL: nothing */
int cvdb_reset(cvdb_stmt *stmt);
int cvdb_clear_bindings(cvdb_stmt *stmt);
/* The SQL as written (before any translation). */
const char *cvdb_sql(cvdb_stmt *stmt);
cvdb *cvdb_db_handle(cvdb_stmt *stmt);

int cvdb_bind_int64(cvdb_stmt *stmt, int idx, int64_t v);
int cvdb_bind_int(cvdb_stmt *stmt, int idx, int v);
int cvdb_bind_double(cvdb_stmt *stmt, int idx, double v);
int cvdb_bind_null(cvdb_stmt *stmt, int idx);
/* text and blob are borrowed until the statement is reset or rebound (SQLITE_STATIC);
 * len < 0: text up to its NUL. */
int cvdb_bind_text(cvdb_stmt *stmt, int idx, const char *text, int len);
int cvdb_bind_blob(cvdb_stmt *stmt, int idx, const void *blob, size_t len);
int cvdb_bind_parameter_count(cvdb_stmt *stmt);
/* name with its prefix (":name"); 0 when the statement has no such parameter. */
int cvdb_bind_parameter_index(cvdb_stmt *stmt, const char *name);
const char *cvdb_bind_parameter_name(cvdb_stmt *stmt, int idx);

/* SQLITE_ROW, SQLITE_DONE or an error code. */
int cvdb_step(cvdb_stmt *stmt);
int cvdb_column_count(cvdb_stmt *stmt);
/* SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB or SQLITE_NULL. */
int cvdb_column_type(cvdb_stmt *stmt, int col);
int64_t cvdb_column_int64(cvdb_stmt *stmt, int col);
int cvdb_column_int(cvdb_stmt *stmt, int col);
double cvdb_column_double(cvdb_stmt *stmt, int col);
/* Valid until the next step, reset or finalize (NULL for SQL NULL). */
const unsigned char *cvdb_column_text(cvdb_stmt *stmt, int col);
const void *cvdb_column_blob(cvdb_stmt *stmt, int col);
int cvdb_column_bytes(cvdb_stmt *stmt, int col);

/* The connection. */
int cvdb_exec(cvdb *db, const char *sql);            /* statements without parameters or rows */
int cvdb_changes(cvdb *db);                           /* rows the last statement changed */
int64_t cvdb_last_insert_rowid(cvdb *db);             /* the id the last INSERT gave */
int cvdb_get_autocommit(cvdb *db);                    /* 1: no transaction is open */
const char *cvdb_errmsg(cvdb *db);
const char *cvdb_errstr(int rc);

/* sqlite_sql on SQLite, pg_sql on PostgreSQL: for the few queries written twice. */
const char *cvdb_pick(const cvdb *db, const char *sqlite_sql, const char *pg_sql);

#endif
