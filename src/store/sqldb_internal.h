/* store: the inside of sqldb.h's handles, shared by sqldb.c (dispatch, SQLite) and the
 * PostgreSQL side (sqldb_pg.c). Nothing outside those files looks in here. */
#ifndef CERTVAULT_STORE_SQLDB_INTERNAL_H
#define CERTVAULT_STORE_SQLDB_INTERNAL_H

#include "sqldb.h"

struct sqldb_pg_conn; /* sqldb_pg.c */
struct sqldb_pg_stmt;

struct cvdb {
	enum cvdb_kind kind;
	sqlite3 *lite;              /* CVDB_SQLITE */
	struct sqldb_pg_conn *pg;   /* CVDB_PG */
};

struct cvdb_stmt {
	cvdb *db;
	sqlite3_stmt *lite;         /* CVDB_SQLITE */
	const char *sql;            /* CVDB_PG: the SQL as written (owned by pg) */
	struct sqldb_pg_stmt *pg;   /* CVDB_PG */
};

/* The PostgreSQL side of every call in sqldb.h, same contracts. Built without libpq, open
 * refuses and nothing else is reached. */
void sqldb_pg_close(cvdb *db);
int sqldb_pg_prepare(cvdb *db, const char *sql, int persistent, cvdb_stmt **ret,
		     const char **tail);
int sqldb_pg_finalize(cvdb_stmt *stmt);
int sqldb_pg_reset(cvdb_stmt *stmt);
int sqldb_pg_clear_bindings(cvdb_stmt *stmt);
int sqldb_pg_bind_int64(cvdb_stmt *stmt, int idx, int64_t v);
int sqldb_pg_bind_double(cvdb_stmt *stmt, int idx, double v);
int sqldb_pg_bind_null(cvdb_stmt *stmt, int idx);
int sqldb_pg_bind_text(cvdb_stmt *stmt, int idx, const char *text, int len);
int sqldb_pg_bind_blob(cvdb_stmt *stmt, int idx, const void *blob, size_t len);
int sqldb_pg_bind_parameter_count(cvdb_stmt *stmt);
int sqldb_pg_bind_parameter_index(cvdb_stmt *stmt, const char *name);
const char *sqldb_pg_bind_parameter_name(cvdb_stmt *stmt, int idx);
int sqldb_pg_step(cvdb_stmt *stmt);
int sqldb_pg_column_count(cvdb_stmt *stmt);
int sqldb_pg_column_type(cvdb_stmt *stmt, int col);
int64_t sqldb_pg_column_int64(cvdb_stmt *stmt, int col);
double sqldb_pg_column_double(cvdb_stmt *stmt, int col);
const unsigned char *sqldb_pg_column_text(cvdb_stmt *stmt, int col);
const void *sqldb_pg_column_blob(cvdb_stmt *stmt, int col);
int sqldb_pg_column_bytes(cvdb_stmt *stmt, int col);
int sqldb_pg_exec(cvdb *db, const char *sql);
int sqldb_pg_changes(cvdb *db);
int64_t sqldb_pg_last_insert_rowid(cvdb *db);
int sqldb_pg_get_autocommit(cvdb *db);
const char *sqldb_pg_errmsg(cvdb *db);

#endif
