/* store: the SQL interface of sqldb.h, dispatching to SQLite or to PostgreSQL (sqldb_pg.c). */
#include <stdlib.h>
#include <string.h>

#include "sqldb.h"
#include "sqldb_internal.h"

int cvdb_open_sqlite(const char *path, int flags, cvdb **ret)
{
	cvdb *db;
	int rc;

	*ret = NULL;
	db = calloc(1, sizeof(*db));
	if (db == NULL)
		return SQLITE_NOMEM;
	db->kind = CVDB_SQLITE;
	rc = sqlite3_open_v2(path, &db->lite, flags, NULL);
	*ret = db; /* with the handle's message when it failed */
	return rc;
}

int cvdb_close(cvdb *db)
{
	int rc = SQLITE_OK;

	if (db == NULL)
		return SQLITE_OK;
	if (db->kind == CVDB_SQLITE)
		rc = sqlite3_close_v2(db->lite);
	else
		sqldb_pg_close(db);
	free(db);
	return rc;
}

enum cvdb_kind cvdb_kind(const cvdb *db)
{
	return db->kind;
}

sqlite3 *cvdb_sqlite(cvdb *db)
{
	return db->kind == CVDB_SQLITE ? db->lite : NULL;
}

int cvdb_prepare(cvdb *db, const char *sql, int persistent, cvdb_stmt **ret, const char **tail)
{
	sqlite3_stmt *s = NULL;
	cvdb_stmt *stmt;
	int rc;

	*ret = NULL;
	if (db->kind == CVDB_PG)
		return sqldb_pg_prepare(db, sql, persistent, ret, tail);
	rc = sqlite3_prepare_v3(db->lite, sql, -1, persistent ? SQLITE_PREPARE_PERSISTENT : 0,
				&s, tail);
	if (rc != SQLITE_OK || s == NULL)
		return rc;
	stmt = calloc(1, sizeof(*stmt));
	if (stmt == NULL) {
		sqlite3_finalize(s);
		return SQLITE_NOMEM;
	}
	stmt->db = db;
	stmt->lite = s;
	*ret = stmt;
	return SQLITE_OK;
}

int cvdb_finalize(cvdb_stmt *stmt)
{
	int rc;

	if (stmt == NULL)
		return SQLITE_OK;
	if (stmt->db->kind == CVDB_PG)
		return sqldb_pg_finalize(stmt);
	rc = sqlite3_finalize(stmt->lite);
	free(stmt);
	return rc;
}

#define DISPATCH(stmt, lite_call, pg_call) \
	((stmt)->db->kind == CVDB_SQLITE ? (lite_call) : (pg_call))

int cvdb_reset(cvdb_stmt *stmt)
{
	return DISPATCH(stmt, sqlite3_reset(stmt->lite), sqldb_pg_reset(stmt));
}

int cvdb_clear_bindings(cvdb_stmt *stmt)
{
	return DISPATCH(stmt, sqlite3_clear_bindings(stmt->lite), sqldb_pg_clear_bindings(stmt));
}

const char *cvdb_sql(cvdb_stmt *stmt)
{
	return DISPATCH(stmt, sqlite3_sql(stmt->lite), stmt->sql);
}

cvdb *cvdb_db_handle(cvdb_stmt *stmt)
{
	return stmt->db;
}

int cvdb_bind_int64(cvdb_stmt *stmt, int idx, int64_t v)
{
	return DISPATCH(stmt, sqlite3_bind_int64(stmt->lite, idx, v),
			sqldb_pg_bind_int64(stmt, idx, v));
}

int cvdb_bind_int(cvdb_stmt *stmt, int idx, int v)
{
	return cvdb_bind_int64(stmt, idx, v);
}

int cvdb_bind_double(cvdb_stmt *stmt, int idx, double v)
{
	return DISPATCH(stmt, sqlite3_bind_double(stmt->lite, idx, v),
			sqldb_pg_bind_double(stmt, idx, v));
}

int cvdb_bind_null(cvdb_stmt *stmt, int idx)
{
	return DISPATCH(stmt, sqlite3_bind_null(stmt->lite, idx), sqldb_pg_bind_null(stmt, idx));
}

int cvdb_bind_text(cvdb_stmt *stmt, int idx, const char *text, int len)
{
	return DISPATCH(stmt, sqlite3_bind_text(stmt->lite, idx, text, len, SQLITE_STATIC),
			sqldb_pg_bind_text(stmt, idx, text, len));
}

int cvdb_bind_blob(cvdb_stmt *stmt, int idx, const void *blob, size_t len)
{
	return DISPATCH(stmt, sqlite3_bind_blob64(stmt->lite, idx, blob, len, SQLITE_STATIC),
			sqldb_pg_bind_blob(stmt, idx, blob, len));
}

int cvdb_bind_parameter_count(cvdb_stmt *stmt)
{
	return DISPATCH(stmt, sqlite3_bind_parameter_count(stmt->lite),
			sqldb_pg_bind_parameter_count(stmt));
}

int cvdb_bind_parameter_index(cvdb_stmt *stmt, const char *name)
{
	return DISPATCH(stmt, sqlite3_bind_parameter_index(stmt->lite, name),
			sqldb_pg_bind_parameter_index(stmt, name));
}

const char *cvdb_bind_parameter_name(cvdb_stmt *stmt, int idx)
{
	return DISPATCH(stmt, sqlite3_bind_parameter_name(stmt->lite, idx),
			sqldb_pg_bind_parameter_name(stmt, idx));
}

int cvdb_step(cvdb_stmt *stmt)
{
	return DISPATCH(stmt, sqlite3_step(stmt->lite), sqldb_pg_step(stmt));
}

int cvdb_column_count(cvdb_stmt *stmt)
{
	return DISPATCH(stmt, sqlite3_column_count(stmt->lite), sqldb_pg_column_count(stmt));
}

int cvdb_column_type(cvdb_stmt *stmt, int col)
{
	return DISPATCH(stmt, sqlite3_column_type(stmt->lite, col),
			sqldb_pg_column_type(stmt, col));
}

int64_t cvdb_column_int64(cvdb_stmt *stmt, int col)
{
	return DISPATCH(stmt, sqlite3_column_int64(stmt->lite, col),
			sqldb_pg_column_int64(stmt, col));
}

int cvdb_column_int(cvdb_stmt *stmt, int col)
{
	return (int)cvdb_column_int64(stmt, col);
}

double cvdb_column_double(cvdb_stmt *stmt, int col)
{
	return DISPATCH(stmt, sqlite3_column_double(stmt->lite, col),
			sqldb_pg_column_double(stmt, col));
}

const unsigned char *cvdb_column_text(cvdb_stmt *stmt, int col)
{
	return DISPATCH(stmt, sqlite3_column_text(stmt->lite, col),
			sqldb_pg_column_text(stmt, col));
}

const void *cvdb_column_blob(cvdb_stmt *stmt, int col)
{
	return DISPATCH(stmt, sqlite3_column_blob(stmt->lite, col),
			sqldb_pg_column_blob(stmt, col));
}

int cvdb_column_bytes(cvdb_stmt *stmt, int col)
{
	return DISPATCH(stmt, sqlite3_column_bytes(stmt->lite, col),
			sqldb_pg_column_bytes(stmt, col));
}

int cvdb_exec(cvdb *db, const char *sql)
{
	return db->kind == CVDB_SQLITE ? sqlite3_exec(db->lite, sql, NULL, NULL, NULL)
				       : sqldb_pg_exec(db, sql);
}

int cvdb_changes(cvdb *db)
{
	return db->kind == CVDB_SQLITE ? sqlite3_changes(db->lite) : sqldb_pg_changes(db);
}

int64_t cvdb_last_insert_rowid(cvdb *db)
{
	return db->kind == CVDB_SQLITE ? sqlite3_last_insert_rowid(db->lite)
				       : sqldb_pg_last_insert_rowid(db);
}

int cvdb_get_autocommit(cvdb *db)
{
	return db->kind == CVDB_SQLITE ? sqlite3_get_autocommit(db->lite)
				       : sqldb_pg_get_autocommit(db);
}

const char *cvdb_errmsg(cvdb *db)
{
	if (db == NULL)
		return "out of memory";
	return db->kind == CVDB_SQLITE ? sqlite3_errmsg(db->lite) : sqldb_pg_errmsg(db);
}

const char *cvdb_errstr(int rc)
{
	return sqlite3_errstr(rc);
}

const char *cvdb_pick(const cvdb *db, const char *sqlite_sql, const char *pg_sql)
{
	return db->kind == CVDB_PG ? pg_sql : sqlite_sql;
}
