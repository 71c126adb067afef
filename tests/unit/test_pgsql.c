/* Unit tests for src/store/pgsql.c: SQLite's dialect carried over to PostgreSQL's (issue 15).
 * Parameter numbering is checked against SQLite itself: whatever SQLite answers for a
 * statement (count, each index's name, each name's index), the translation must answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "../../src/store/pgsql.h"

static char err[256];

/* The translation of sql, which must succeed; freed by the next call. */
static const char *pg(const char *sql)
{
	static struct sqldb_pg_sql t;

	sqldb_pg_sql_release(&t);
	if (sqldb_pg_translate(sql, &t, err, sizeof(err)) != 0)
		fail_msg("refused: %s: %s", sql, err);
	return t.sql != NULL ? t.sql : "(empty)";
}

/* sql must be refused with a message that holds want. */
static void refused(const char *sql, const char *want)
{
	struct sqldb_pg_sql t;

	if (sqldb_pg_translate(sql, &t, err, sizeof(err)) == 0)
		fail_msg("not refused: %s -> %s", sql, t.sql);
	if (strstr(err, want) == NULL)
		fail_msg("refusing %s: \"%s\" does not name \"%s\"", sql, err, want);
	assert_null(t.sql);
}

static void same_numbering_as_sqlite(const char *sql)
{
	struct sqldb_pg_sql t;
	sqlite3 *db;
	sqlite3_stmt *s;
	int i;

	assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (a, b, c)", NULL, NULL, NULL), 0);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		fail_msg("SQLite refuses %s: %s", sql, sqlite3_errmsg(db));
	assert_int_equal(sqldb_pg_translate(sql, &t, err, sizeof(err)), 0);
	if (t.n_params != sqlite3_bind_parameter_count(s))
		fail_msg("%s: %d parameters, SQLite says %d", sql, t.n_params,
			 sqlite3_bind_parameter_count(s));
	for (i = 1; i <= t.n_params; i++) {
		const char *want = sqlite3_bind_parameter_name(s, i);
		const char *got = t.names[i - 1];

		if ((want == NULL) != (got == NULL) || (want != NULL && strcmp(want, got) != 0))
			fail_msg("%s: parameter %d is named %s, SQLite says %s", sql, i,
				 got ? got : "(none)", want ? want : "(none)");
		if (want != NULL)
			assert_int_equal(sqldb_pg_sql_param_index(&t, want),
					 sqlite3_bind_parameter_index(s, want));
	}
	assert_int_equal(sqldb_pg_sql_param_index(&t, ":nosuch"), 0);
	sqldb_pg_sql_release(&t);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static void test_parameters_numbered_as_sqlite(void **state)
{
	static const char *const sqls[] = {
		"SELECT ?, ?, ?",
		"SELECT ?3, ?1",
		"SELECT ?, ?5, ?, :a, @b, $c, :a, ?2",
		"SELECT :a, ?1, ?, :b, ?2, :a",
		"SELECT ?2, :x, ?, ?1",
		"SELECT a FROM t WHERE a = :now AND b >= :now AND c < :thr LIMIT ?9",
		"SELECT :a_1, @a_1, $a_1",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++)
		same_numbering_as_sqlite(sqls[i]);
	assert_string_equal(pg("SELECT ?, ?5, ?, :a, @b, $c, :a, ?2"),
			    "SELECT $1, $5, $6, $7, $8, $9, $7, $2");
	/* $N in a query written for PostgreSQL is ?N */
	assert_string_equal(pg("SELECT $2, $1"), "SELECT $2, $1");
	refused("SELECT ?0", "1..32766");
	refused("SELECT ?32767", "1..32766");
}

static void test_literals_comments_casts_untouched(void **state)
{
	(void)state;
	assert_string_equal(pg("SELECT '?', 'it''s :a LIKE', \"a?b\", ? -- ? :x LIKE\n"),
			    "SELECT '?', 'it''s :a LIKE', \"a?b\", $1");
	assert_string_equal(pg("SELECT /* ?1 COLLATE NOCASE */ ?1"),
			    "SELECT   $1");
	assert_string_equal(pg("SELECT x::text, ?1::bigint, :a::int FROM t"),
			    "SELECT x::text, $1::bigint, $2::int FROM t");
	assert_string_equal(pg("SELECT E'\\'? LIKE', ?"), "SELECT E'\\'? LIKE', $1");
	assert_string_equal(pg("SELECT $$ ? GLOB $$, $f$ ;? $f$, ?"),
			    "SELECT $$ ? GLOB $$, $f$ ;? $f$, $1");
	/* words that merely contain a keyword */
	assert_string_equal(pg("SELECT likes, globe, rowidx, is_max FROM t"),
			    "SELECT likes, globe, rowidx, is_max FROM t");
	assert_string_equal(pg("SELECT `we\"ird` FROM t"), "SELECT \"we\"\"ird\" FROM t");
	refused("SELECT 'open", "unterminated string");
	refused("SELECT \"open", "unterminated quoted identifier");
	refused("SELECT $q$ open", "unterminated dollar-quoted");
}

static void test_rewrites(void **state)
{
	(void)state;
	assert_string_equal(pg("SELECT 1 FROM t WHERE name = ?1 COLLATE NOCASE"),
			    "SELECT 1 FROM t WHERE name = $1 ::citext");
	assert_string_equal(pg("SELECT a FROM t GROUP BY a COLLATE NOCASE HAVING count(*) > 1"),
			    "SELECT a FROM t GROUP BY a ::citext  HAVING count(*) > 1");
	assert_string_equal(pg("SELECT a FROM t ORDER BY a COLLATE BINARY"),
			    "SELECT a FROM t ORDER BY a COLLATE \"C\"");
	/* LIKE ignores ASCII case in SQLite, and has no escape character unless told */
	assert_string_equal(pg("SELECT a FROM t WHERE a LIKE :q ESCAPE '\\' OR b NOT LIKE ?"),
			    "SELECT a FROM t WHERE a ILIKE $1 ESCAPE '\\' OR b NOT ILIKE $2 ESCAPE ''");
	assert_string_equal(pg("SELECT a FROM t WHERE a LIKE 'x%' AND b LIKE t.c"),
			    "SELECT a FROM t WHERE a ILIKE 'x%' ESCAPE '' AND b ILIKE t.c ESCAPE ''");
	assert_string_equal(pg("SELECT a FROM t WHERE a LIKE '%' || ? || '%' ESCAPE '!'"),
			    "SELECT a FROM t WHERE a ILIKE '%' || $1 || '%' ESCAPE '!'");
	refused("SELECT a FROM t WHERE a LIKE '%' || ? || '%'", "ESCAPE");
	assert_string_equal(pg("INSERT OR IGNORE INTO t (a) VALUES (?1)"),
			    "INSERT   INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING");
	assert_string_equal(pg("INSERT OR IGNORE INTO t (a) VALUES (1) -- why\n"),
			    "INSERT   INTO t (a) VALUES (1) ON CONFLICT DO NOTHING");
	assert_string_equal(pg("INSERT OR IGNORE INTO t (a) SELECT b FROM u RETURNING a;"),
			    "INSERT   INTO t (a) SELECT b FROM u ON CONFLICT DO NOTHING RETURNING a");
	assert_string_equal(pg("SELECT a IS ?1, b IS NOT ?2, c IS NULL, d IS NOT NULL FROM t"),
			    "SELECT a IS NOT DISTINCT FROM $1, b IS DISTINCT FROM  $2, c IS NULL,"
			    " d IS NOT NULL FROM t");
	assert_string_equal(pg("SELECT ifnull(a, 0), max(a), min(DISTINCT b) FROM t WHERE a == 1"),
			    "SELECT coalesce(a, 0), max(a), min(DISTINCT b) FROM t WHERE a = 1");
	assert_string_equal(pg("SELECT X'00fF', x'' FROM t"),
			    "SELECT '\\x00fF'::bytea, '\\x'::bytea FROM t");
	assert_string_equal(pg("SELECT a FROM t INDEXED BY t_a WHERE a NOT IN (SELECT b FROM u"
			       " NOT INDEXED)"),
			    "SELECT a FROM t    WHERE a NOT IN (SELECT b FROM u  )");
	assert_string_equal(pg("SELECT CAST(?1 AS INTEGER), cast(x AS real), CAST(f(a, b) AS BLOB),"
			       " CAST(y AS TEXT), z::int FROM t"),
			    "SELECT CAST($1 AS BIGINT), cast(x AS DOUBLE PRECISION),"
			    " CAST(f(a, b) AS BYTEA), CAST(y AS TEXT), z::int FROM t");
	refused("SELECT X'0g'", "non-hex");
	refused("SELECT X'012'", "odd");
}

static void test_transactions(void **state)
{
	struct sqldb_pg_sql t;
	char want[128];

	(void)state;
	assert_int_equal(sqldb_pg_translate("BEGIN IMMEDIATE", &t, err, sizeof(err)), 0);
	assert_int_equal(t.kind, SQLDB_PG_BEGIN_WRITE);
	snprintf(want, sizeof(want),
		 "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(%lld)",
		 (long long)SQLDB_PG_WRITER_LOCK);
	assert_string_equal(t.sql, want);
	assert_string_equal(t.sql, SQLDB_PG_BEGIN_WRITE_SQL);
	sqldb_pg_sql_release(&t);
	assert_int_equal(sqldb_pg_translate("begin exclusive transaction;", &t, err, 256), 0);
	assert_int_equal(t.kind, SQLDB_PG_BEGIN_WRITE);
	sqldb_pg_sql_release(&t);
	assert_int_equal(sqldb_pg_translate("BEGIN", &t, err, sizeof(err)), 0);
	assert_int_equal(t.kind, SQLDB_PG_BEGIN_READ);
	assert_string_equal(t.sql, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	sqldb_pg_sql_release(&t);
	assert_int_equal(sqldb_pg_translate("BEGIN DEFERRED TRANSACTION", &t, err, 256), 0);
	assert_int_equal(t.kind, SQLDB_PG_BEGIN_READ);
	sqldb_pg_sql_release(&t);
	assert_int_equal(sqldb_pg_translate("END TRANSACTION", &t, err, sizeof(err)), 0);
	assert_int_equal(t.kind, SQLDB_PG_COMMIT);
	assert_string_equal(t.sql, "COMMIT");
	sqldb_pg_sql_release(&t);
	assert_int_equal(sqldb_pg_translate("ROLLBACK", &t, err, sizeof(err)), 0);
	assert_int_equal(t.kind, SQLDB_PG_ROLLBACK);
	sqldb_pg_sql_release(&t);
	assert_int_equal(sqldb_pg_translate("ROLLBACK TO SAVEPOINT s1", &t, err, 256), 0);
	assert_int_equal(t.kind, SQLDB_PG_OTHER);
	assert_string_equal(t.sql, "ROLLBACK TO SAVEPOINT s1");
	sqldb_pg_sql_release(&t);
	/* PostgreSQL's own BEGIN goes through as written */
	assert_string_equal(pg("BEGIN ISOLATION LEVEL SERIALIZABLE"),
			    "BEGIN ISOLATION LEVEL SERIALIZABLE");
}

static void test_writes_marked(void **state)
{
	static const struct {
		const char *sql;
		int writes;
	} cases[] = {
		{ "INSERT INTO t VALUES (1)", 1 },
		{ "update t SET a = 1", 1 },
		{ "DELETE FROM t", 1 },
		{ "WITH x AS (SELECT 1) DELETE FROM t WHERE a IN (SELECT * FROM x)", 1 },
		{ "WITH x AS (SELECT 1) SELECT * FROM x", 0 },
		{ "SELECT 'INSERT'", 0 },
		{ "CREATE TABLE u (a BIGINT)", 0 },
	};
	struct sqldb_pg_sql t;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(sqldb_pg_translate(cases[i].sql, &t, err, sizeof(err)), 0);
		if (t.writes != cases[i].writes)
			fail_msg("%s: writes %d", cases[i].sql, t.writes);
		sqldb_pg_sql_release(&t);
	}
}

static void test_null_test_only(void **state)
{
	struct sqldb_pg_sql t;

	(void)state;
	assert_int_equal(sqldb_pg_translate("SELECT a FROM t WHERE (:q IS NULL OR b = :r)"
					    " AND (:s IS NOT NULL OR c = :s) AND ?9 IS NULL",
					    &t, err, sizeof(err)), 0);
	assert_int_equal(t.n_params, 9);
	assert_int_equal(t.null_test_only[0], 1); /* :q */
	assert_int_equal(t.null_test_only[1], 0); /* :r */
	assert_int_equal(t.null_test_only[2], 0); /* :s, also compared */
	assert_int_equal(t.null_test_only[3], 0); /* unused */
	assert_int_equal(t.null_test_only[8], 1); /* ?9 */
	sqldb_pg_sql_release(&t);
}

static void test_statements_and_tails(void **state)
{
	struct sqldb_pg_sql t;
	const char *script = " ; -- nothing\n ; SELECT 1; SELECT ';' ;  /* end */ ";
	size_t at;

	(void)state;
	/* empty statements before the first one are skipped, as SQLite skips them */
	assert_int_equal(sqldb_pg_translate(script, &t, err, sizeof(err)), 0);
	assert_string_equal(t.sql, "SELECT 1");
	at = t.consumed;
	assert_string_equal(script + at, " SELECT ';' ;  /* end */ ");
	sqldb_pg_sql_release(&t);
	assert_int_equal(sqldb_pg_translate(script + at, &t, err, sizeof(err)), 0);
	assert_string_equal(t.sql, "SELECT ';'");
	at += t.consumed;
	sqldb_pg_sql_release(&t);
	assert_int_equal(sqldb_pg_translate(script + at, &t, err, sizeof(err)), 0);
	assert_null(t.sql); /* only a comment left */
	assert_int_equal(script[at + t.consumed], '\0');
	sqldb_pg_sql_release(&t);
	assert_int_equal(sqldb_pg_translate("", &t, err, sizeof(err)), 0);
	assert_null(t.sql);
	/* PostgreSQL's own DDL passes */
	assert_string_equal(pg("CREATE TABLE c (p BIGINT REFERENCES p (id) MATCH FULL"
			       " ON DELETE CASCADE)"),
			    "CREATE TABLE c (p BIGINT REFERENCES p (id) MATCH FULL"
			    " ON DELETE CASCADE)");
	/* a PostgreSQL function body keeps its semicolons */
	assert_string_equal(pg("CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN x; y; END $$"
			       " LANGUAGE plpgsql; SELECT 2"),
			    "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN x; y; END $$"
			    " LANGUAGE plpgsql");
}

static void test_refused_constructs(void **state)
{
	(void)state;
	refused("SELECT value FROM json_each(?1)", "json_each");
	refused("SELECT json_extract(?1, '$.kid')", "json_extract");
	refused("SELECT json_object('a', 1)", "json_object");
	refused("SELECT json_group_array(a) FROM t", "json_group_array");
	refused("SELECT a FROM t WHERE a GLOB '*[^a-z]*'", "GLOB");
	refused("SELECT a FROM t WHERE a REGEXP 'x'", "REGEXP");
	refused("SELECT strftime('%Y', a, 'unixepoch') FROM t", "strftime");
	refused("SELECT unixepoch()", "unixepoch");
	refused("PRAGMA user_version", "PRAGMA");
	refused("SELECT max(a, ?1) FROM t", "max");
	refused("SELECT min(a, b, c) FROM t", "LEAST");
	refused("SELECT rowid FROM t", "rowid");
	refused("SELECT t._rowid_ FROM t", "rowid");
	refused("INSERT OR REPLACE INTO t VALUES (1)", "INSERT OR REPLACE");
	refused("INSERT OR ABORT INTO t VALUES (1)", "INSERT OR ABORT");
	refused("REPLACE INTO t VALUES (1)", "REPLACE INTO");
	refused("SELECT group_concat(a) FROM t", "group_concat");
	refused("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END", "trigger");
	/* the message names the construct, never the statement's values */
	refused("SELECT json_extract('s3cret-value', '$.a')", "json_extract");
	assert_null(strstr(err, "s3cret"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parameters_numbered_as_sqlite),
		cmocka_unit_test(test_literals_comments_casts_untouched),
		cmocka_unit_test(test_rewrites),
		cmocka_unit_test(test_transactions),
		cmocka_unit_test(test_writes_marked),
		cmocka_unit_test(test_null_test_only),
		cmocka_unit_test(test_statements_and_tails),
		cmocka_unit_test(test_refused_constructs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
