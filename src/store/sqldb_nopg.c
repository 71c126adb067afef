/* store: the PostgreSQL side of sqldb.h in a build without libpq: opening refuses with a
 * message saying so, and since no PostgreSQL handle can exist nothing else is reached. */
#include <stdlib.h>

#include "sqldb_internal.h"

int cvdb_open_pg(const char *conninfo, cvdb **ret)
{
	(void)conninfo;
	*ret = NULL;
	return SQLITE_CANTOPEN;
}

void *cvdb_pg(cvdb *db)
{
	(void)db;
	return NULL;
}

void sqldb_pg_close(cvdb *db) { (void)db; }
int sqldb_pg_prepare(cvdb *db, const char *sql, int persistent, cvdb_stmt **ret,
		     const char **tail)
{
	(void)db; (void)sql; (void)persistent; (void)tail;
	*ret = NULL;
	return SQLITE_MISUSE;
}
int sqldb_pg_finalize(cvdb_stmt *stmt) { free(stmt); return SQLITE_MISUSE; }
int sqldb_pg_reset(cvdb_stmt *stmt) { (void)stmt; return SQLITE_MISUSE; }
int sqldb_pg_clear_bindings(cvdb_stmt *stmt) { (void)stmt; return SQLITE_MISUSE; }
int sqldb_pg_bind_int64(cvdb_stmt *stmt, int idx, int64_t v) { (void)stmt; (void)idx; (void)v; return SQLITE_MISUSE; }
int sqldb_pg_bind_double(cvdb_stmt *stmt, int idx, double v) { (void)stmt; (void)idx; (void)v; return SQLITE_MISUSE; }
int sqldb_pg_bind_null(cvdb_stmt *stmt, int idx) { (void)stmt; (void)idx; return SQLITE_MISUSE; }
int sqldb_pg_bind_text(cvdb_stmt *stmt, int idx, const char *text, int len) { (void)stmt; (void)idx; (void)text; (void)len; return SQLITE_MISUSE; }
int sqldb_pg_bind_blob(cvdb_stmt *stmt, int idx, const void *blob, size_t len) { (void)stmt; (void)idx; (void)blob; (void)len; return SQLITE_MISUSE; }
int sqldb_pg_bind_parameter_count(cvdb_stmt *stmt) { (void)stmt; return 0; }
int sqldb_pg_bind_parameter_index(cvdb_stmt *stmt, const char *name) { (void)stmt; (void)name; return 0; }
const char *sqldb_pg_bind_parameter_name(cvdb_stmt *stmt, int idx) { (void)stmt; (void)idx; return NULL; }
int sqldb_pg_step(cvdb_stmt *stmt) { (void)stmt; return SQLITE_MISUSE; }
int sqldb_pg_column_count(cvdb_stmt *stmt) { (void)stmt; return 0; }
int sqldb_pg_column_type(cvdb_stmt *stmt, int col) { (void)stmt; (void)col; return SQLITE_NULL; }
int64_t sqldb_pg_column_int64(cvdb_stmt *stmt, int col) { (void)stmt; (void)col; return 0; }
double sqldb_pg_column_double(cvdb_stmt *stmt, int col) { (void)stmt; (void)col; return 0; }
const unsigned char *sqldb_pg_column_text(cvdb_stmt *stmt, int col) { (void)stmt; (void)col; return NULL; }
const void *sqldb_pg_column_blob(cvdb_stmt *stmt, int col) { (void)stmt; (void)col; return NULL; }
int sqldb_pg_column_bytes(cvdb_stmt *stmt, int col) { (void)stmt; (void)col; return 0; }
int sqldb_pg_exec(cvdb *db, const char *sql) { (void)db; (void)sql; return SQLITE_MISUSE; }
int sqldb_pg_changes(cvdb *db) { (void)db; return 0; }
int64_t sqldb_pg_last_insert_rowid(cvdb *db) { (void)db; return 0; }
int sqldb_pg_get_autocommit(cvdb *db) { (void)db; return 1; }
const char *sqldb_pg_errmsg(cvdb *db) { (void)db; return "this certvaultd was built without PostgreSQL (libpq)"; }
