/* Unit tests for the store's SQL interface (src/store/sqldb.h) on both engines (issue 15):
 * one battery, run on an SQLite file and on a private PostgreSQL server started by the test
 * (tests/support/pgserver), checking that the calls answer the same on both. A few checks
 * only PostgreSQL can be asked (the translation refusing a construct, a lost connection, the
 * password kept out of every message) run in the second group only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "../../src/store/sqldb.h"
#include "pgserver.h"
#include "softhsm.h"

static struct {
	enum cvdb_kind kind;
	char dir[64];         /* SQLite: the file's directory */
	char path[128];
	struct ts_pgserver pg;
} engine;

static cvdb *open_db(void)
{
	cvdb *db = NULL;
	int rc;

	if (engine.kind == CVDB_SQLITE) {
		rc = cvdb_open_sqlite(engine.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db);
		assert_int_equal(rc, SQLITE_OK);
		/* as the store opens its connections: extended codes, a busy timeout, foreign
		 * keys, WAL (readers beside one writer) */
		sqlite3_extended_result_codes(cvdb_sqlite(db), 1);
		sqlite3_busy_timeout(cvdb_sqlite(db), 10000);
		assert_int_equal(cvdb_exec(db, "PRAGMA foreign_keys = ON"), SQLITE_OK);
		assert_int_equal(cvdb_exec(db, "PRAGMA journal_mode = WAL"), SQLITE_OK);
	} else {
		rc = cvdb_open_pg(engine.pg.conninfo, &db);
		if (rc != SQLITE_OK)
			fail_msg("cvdb_open_pg: %s", db != NULL ? cvdb_errmsg(db) : "no memory");
	}
	return db;
}

static void exec_ok(cvdb *db, const char *sql)
{
	int rc = cvdb_exec(db, sql);

	if (rc != SQLITE_OK)
		fail_msg("%s: %s (%d)", sql, cvdb_errmsg(db), rc);
}

/* Fresh tables t and p, the same in meaning on both engines. */
static cvdb *open_fresh(void)
{
	cvdb *db = open_db();

	exec_ok(db, "DROP TABLE IF EXISTS t; DROP TABLE IF EXISTS p;");
	exec_ok(db, cvdb_pick(db,
			      "CREATE TABLE p (id INTEGER PRIMARY KEY);"
			      "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT,"
			      " name TEXT UNIQUE COLLATE NOCASE, n INTEGER, x REAL, s TEXT,"
			      " b BLOB, parent INTEGER REFERENCES p(id),"
			      " k TEXT NOT NULL DEFAULT '', CHECK (n IS NULL OR n <> 13));",
			      "CREATE EXTENSION IF NOT EXISTS citext;"
			      "CREATE TABLE p (id BIGINT PRIMARY KEY);"
			      "CREATE TABLE t (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
			      " name CITEXT UNIQUE, n BIGINT, x DOUBLE PRECISION, s TEXT,"
			      " b BYTEA, parent BIGINT REFERENCES p(id),"
			      " k TEXT NOT NULL DEFAULT '', CHECK (n IS NULL OR n <> 13));"));
	return db;
}

static cvdb_stmt *prep(cvdb *db, const char *sql, int persistent)
{
	cvdb_stmt *s = NULL;
	int rc = cvdb_prepare(db, sql, persistent, &s, NULL);

	if (rc != SQLITE_OK || s == NULL)
		fail_msg("prepare %s: %s (%d)", sql, cvdb_errmsg(db), rc);
	return s;
}

static int64_t count_rows(cvdb *db, const char *where)
{
	char sql[256];
	cvdb_stmt *s;
	int64_t n;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM t %s", where);
	s = prep(db, sql, 0);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	n = cvdb_column_int64(s, 0);
	assert_int_equal(cvdb_step(s), SQLITE_DONE);
	cvdb_finalize(s);
	return n;
}

static void test_parameter_numbering(void **state)
{
	cvdb *db = open_db();
	cvdb_stmt *s;

	(void)state;
	s = prep(db, "SELECT ?2, :a, ?1, :a, @b", 0);
	assert_int_equal(cvdb_bind_parameter_count(s), 4);
	assert_string_equal(cvdb_bind_parameter_name(s, 1), "?1");
	assert_string_equal(cvdb_bind_parameter_name(s, 2), "?2");
	assert_string_equal(cvdb_bind_parameter_name(s, 3), ":a");
	assert_string_equal(cvdb_bind_parameter_name(s, 4), "@b");
	assert_int_equal(cvdb_bind_parameter_index(s, ":a"), 3);
	assert_int_equal(cvdb_bind_parameter_index(s, "@b"), 4);
	assert_int_equal(cvdb_bind_parameter_index(s, ":nosuch"), 0);
	assert_int_equal(cvdb_bind_int64(s, 1, 10), SQLITE_OK);
	assert_int_equal(cvdb_bind_int64(s, 2, 20), SQLITE_OK);
	assert_int_equal(cvdb_bind_int64(s, cvdb_bind_parameter_index(s, ":a"), 30), SQLITE_OK);
	assert_int_equal(cvdb_bind_text(s, 4, "b", -1), SQLITE_OK);
	assert_int_equal(cvdb_bind_int64(s, 5, 1), SQLITE_RANGE);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_count(s), 5);
	assert_int_equal(cvdb_column_int64(s, 0), 20);
	assert_int_equal(cvdb_column_int64(s, 1), 30);
	assert_int_equal(cvdb_column_int64(s, 2), 10);
	assert_int_equal(cvdb_column_int64(s, 3), 30);
	assert_string_equal((const char *)cvdb_column_text(s, 4), "b");
	assert_int_equal(cvdb_step(s), SQLITE_DONE);
	cvdb_finalize(s);
	/* a number the text skips is a parameter nobody uses, on both */
	s = prep(db, "SELECT ?3", 0);
	assert_int_equal(cvdb_bind_parameter_count(s), 3);
	assert_int_equal(cvdb_bind_int64(s, 3, 7), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(s, 0), 7);
	cvdb_finalize(s);
	cvdb_close(db);
}

static void test_integers_text_blobs_nulls(void **state)
{
	static const int64_t ints[] = { INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX };
	static const unsigned char blob[] = { 0, 1, 0, 0xff, 0 };
	static const char utf8[] = "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac";
	cvdb *db = open_fresh();
	cvdb_stmt *ins, *sel;
	size_t i;
	char name[16];

	(void)state;
	ins = prep(db, "INSERT INTO t (name, n, x, s, b) VALUES (?1, ?2, ?3, ?4, ?5)", 1);
	for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		snprintf(name, sizeof(name), "i%zu", i);
		assert_int_equal(cvdb_bind_text(ins, 1, name, -1), SQLITE_OK);
		assert_int_equal(cvdb_bind_int64(ins, 2, ints[i]), SQLITE_OK);
		assert_int_equal(cvdb_step(ins), SQLITE_DONE);
		assert_int_equal(cvdb_reset(ins), SQLITE_OK);
	}
	/* text (UTF-8, empty, a prefix of a longer buffer), a blob with NUL bytes, an empty
	 * blob, a real; then every column NULL */
	assert_int_equal(cvdb_clear_bindings(ins), SQLITE_OK);
	assert_int_equal(cvdb_bind_text(ins, 1, "utf8", -1), SQLITE_OK);
	assert_int_equal(cvdb_bind_double(ins, 3, 1.5), SQLITE_OK);
	assert_int_equal(cvdb_bind_text(ins, 4, utf8, -1), SQLITE_OK);
	assert_int_equal(cvdb_bind_blob(ins, 5, blob, sizeof(blob)), SQLITE_OK);
	assert_int_equal(cvdb_step(ins), SQLITE_DONE);
	cvdb_reset(ins);
	cvdb_clear_bindings(ins);
	assert_int_equal(cvdb_bind_text(ins, 1, "emptyXYZ", 5), SQLITE_OK);
	assert_int_equal(cvdb_bind_text(ins, 4, "", 0), SQLITE_OK);
	assert_int_equal(cvdb_bind_blob(ins, 5, "", 0), SQLITE_OK);
	assert_int_equal(cvdb_step(ins), SQLITE_DONE);
	cvdb_reset(ins);
	cvdb_clear_bindings(ins);
	assert_int_equal(cvdb_bind_null(ins, 1), SQLITE_OK);
	assert_int_equal(cvdb_step(ins), SQLITE_DONE);
	cvdb_finalize(ins);

	sel = prep(db, "SELECT n FROM t WHERE name = ?1", 1);
	for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		snprintf(name, sizeof(name), "i%zu", i);
		cvdb_reset(sel);
		assert_int_equal(cvdb_bind_text(sel, 1, name, -1), SQLITE_OK);
		assert_int_equal(cvdb_step(sel), SQLITE_ROW);
		assert_int_equal(cvdb_column_type(sel, 0), SQLITE_INTEGER);
		assert_true(cvdb_column_int64(sel, 0) == ints[i]);
		assert_int_equal(cvdb_step(sel), SQLITE_DONE);
	}
	cvdb_finalize(sel);

	/* an integer against a real: exactly, on both (2^63 is above INT64_MAX) */
	sel = prep(db, "SELECT count(*) FROM t WHERE n >= ?1", 0);
	assert_int_equal(cvdb_bind_double(sel, 1, 0x1p63), SQLITE_OK);
	assert_int_equal(cvdb_step(sel), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(sel, 0), 0);
	cvdb_reset(sel);
	assert_int_equal(cvdb_bind_double(sel, 1, 9.2233720368547748e18), SQLITE_OK);
	assert_int_equal(cvdb_step(sel), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(sel, 0), 1); /* INT64_MAX only */
	cvdb_reset(sel);
	assert_int_equal(cvdb_bind_double(sel, 1, -0.5), SQLITE_OK);
	assert_int_equal(cvdb_step(sel), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(sel, 0), 3); /* 0, 1, INT64_MAX */
	cvdb_finalize(sel);

	sel = prep(db, "SELECT x, s, b, n FROM t WHERE name = ?1", 0);
	assert_int_equal(cvdb_bind_text(sel, 1, "UTF8", -1), SQLITE_OK); /* NOCASE */
	assert_int_equal(cvdb_step(sel), SQLITE_ROW);
	assert_int_equal(cvdb_column_type(sel, 0), SQLITE_FLOAT);
	assert_true(cvdb_column_double(sel, 0) == 1.5);
	assert_int_equal(cvdb_column_type(sel, 1), SQLITE_TEXT);
	assert_string_equal((const char *)cvdb_column_text(sel, 1), utf8);
	assert_int_equal(cvdb_column_bytes(sel, 1), (int)strlen(utf8));
	assert_int_equal(cvdb_column_type(sel, 2), SQLITE_BLOB);
	assert_int_equal(cvdb_column_bytes(sel, 2), (int)sizeof(blob));
	assert_memory_equal(cvdb_column_blob(sel, 2), blob, sizeof(blob));
	assert_int_equal(cvdb_column_type(sel, 3), SQLITE_NULL);
	assert_int_equal(cvdb_column_int64(sel, 3), 0);
	assert_null(cvdb_column_text(sel, 3));
	cvdb_finalize(sel);

	sel = prep(db, "SELECT name, s, b FROM t WHERE name = 'empty'", 0);
	assert_int_equal(cvdb_step(sel), SQLITE_ROW);
	assert_int_equal(cvdb_column_type(sel, 1), SQLITE_TEXT);
	assert_string_equal((const char *)cvdb_column_text(sel, 1), "");
	assert_int_equal(cvdb_column_type(sel, 2), SQLITE_BLOB);
	assert_int_equal(cvdb_column_bytes(sel, 2), 0);
	assert_null(cvdb_column_blob(sel, 2)); /* SQLite's answer for no bytes */
	cvdb_finalize(sel);

	sel = prep(db, "SELECT name, n, x, s, b FROM t WHERE name IS NULL", 0);
	assert_int_equal(cvdb_step(sel), SQLITE_ROW);
	for (i = 0; i < 5; i++) {
		assert_int_equal(cvdb_column_type(sel, (int)i), SQLITE_NULL);
		assert_null(cvdb_column_text(sel, (int)i));
		assert_null(cvdb_column_blob(sel, (int)i));
		assert_int_equal(cvdb_column_bytes(sel, (int)i), 0);
	}
	assert_int_equal(cvdb_step(sel), SQLITE_DONE);
	cvdb_finalize(sel);
	cvdb_close(db);
}

/* A parameter only ever tested for NULL, bound with text or NULL: PostgreSQL could infer
 * no type for it. */
static void test_parameter_only_tested_for_null(void **state)
{
	cvdb *db = open_fresh();
	cvdb_stmt *s;

	(void)state;
	exec_ok(db, "INSERT INTO t (name) VALUES ('a'), ('b')");
	s = prep(db, "SELECT count(*) FROM t WHERE :q IS NULL OR name = 'a'", 1);
	assert_int_equal(cvdb_bind_text(s, 1, "x", -1), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(s, 0), 1);
	cvdb_reset(s);
	assert_int_equal(cvdb_bind_null(s, 1), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(s, 0), 2);
	cvdb_reset(s);
	assert_int_equal(cvdb_bind_int64(s, 1, 7), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(s, 0), 1);
	cvdb_finalize(s);
	cvdb_close(db);
}

static void test_booleans(void **state)
{
	cvdb *db = open_fresh();
	cvdb_stmt *s;

	(void)state;
	s = prep(db, "SELECT ?1 > 5, EXISTS (SELECT 1 FROM t), ?1 = 9 AND 1 = 1", 0);
	assert_int_equal(cvdb_bind_int64(s, 1, 9), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_type(s, 0), SQLITE_INTEGER);
	assert_int_equal(cvdb_column_int64(s, 0), 1);
	assert_int_equal(cvdb_column_int64(s, 1), 0);
	assert_int_equal(cvdb_column_int(s, 2), 1);
	assert_string_equal((const char *)cvdb_column_text(s, 0), "1");
	assert_string_equal((const char *)cvdb_column_text(s, 1), "0");
	cvdb_finalize(s);
	cvdb_close(db);
}

static void test_constraints_and_changes(void **state)
{
	cvdb *db = open_fresh();
	cvdb_stmt *s;

	(void)state;
	exec_ok(db, "INSERT INTO p (id) VALUES (1)");
	exec_ok(db, "INSERT INTO t (name, n, parent) VALUES ('Web', 1, 1), ('db', 2, 1),"
		    " ('mail', 3, NULL)");
	assert_int_equal(cvdb_changes(db), 3);
	/* unique ignoring case, primary key, foreign key, not null, check */
	assert_int_equal(cvdb_exec(db, "INSERT INTO t (name) VALUES ('WEB')"),
			 SQLITE_CONSTRAINT_UNIQUE);
	assert_true(strstr(cvdb_errmsg(db), "UNIQUE") != NULL ||
		    strstr(cvdb_errmsg(db), "unique") != NULL);
	assert_int_equal(cvdb_exec(db, "INSERT INTO p (id) VALUES (1)"),
			 SQLITE_CONSTRAINT_PRIMARYKEY);
	assert_int_equal(cvdb_exec(db, "INSERT INTO t (name, parent) VALUES ('x', 99)"),
			 SQLITE_CONSTRAINT_FOREIGNKEY);
	assert_int_equal(cvdb_exec(db, "INSERT INTO t (name, k) VALUES ('x', NULL)"),
			 SQLITE_CONSTRAINT_NOTNULL);
	assert_int_equal(cvdb_exec(db, "INSERT INTO t (name, n) VALUES ('x', 13)"),
			 SQLITE_CONSTRAINT_CHECK);
	/* refusals changed nothing; OR IGNORE loses quietly */
	assert_int_equal(count_rows(db, ""), 3);
	exec_ok(db, "INSERT OR IGNORE INTO t (name) VALUES ('web')");
	assert_int_equal(cvdb_changes(db), 0);
	assert_int_equal(count_rows(db, ""), 3);

	s = prep(db, "UPDATE t SET n = n + 10 WHERE parent = ?1", 0);
	assert_int_equal(cvdb_bind_int64(s, 1, 1), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_DONE);
	assert_int_equal(cvdb_changes(db), 2);
	cvdb_finalize(s);
	/* a read leaves the count of the last change as it was */
	assert_int_equal(count_rows(db, "WHERE n > 10"), 2);
	assert_int_equal(cvdb_changes(db), 2);
	exec_ok(db, "DELETE FROM t WHERE name = 'nosuch'");
	assert_int_equal(cvdb_changes(db), 0);
	exec_ok(db, "DELETE FROM t WHERE name LIKE 'M%'"); /* LIKE ignores ASCII case */
	assert_int_equal(cvdb_changes(db), 1);
	cvdb_close(db);
}

static void test_last_insert_rowid(void **state)
{
	cvdb *db = open_fresh();
	cvdb_stmt *s;
	int64_t first, second;

	(void)state;
	exec_ok(db, "INSERT INTO t (name) VALUES ('a')");
	first = cvdb_last_insert_rowid(db);
	exec_ok(db, "INSERT INTO t (name) VALUES ('b')");
	second = cvdb_last_insert_rowid(db);
	assert_true(second > first);
	/* asked twice, the same answer; a read does not move it */
	assert_true(cvdb_last_insert_rowid(db) == second);
	s = prep(db, "SELECT id FROM t WHERE name = ?1", 0);
	assert_int_equal(cvdb_bind_text(s, 1, "b", -1), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_true(cvdb_column_int64(s, 0) == second);
	cvdb_finalize(s);
	assert_true(cvdb_last_insert_rowid(db) == second);
	/* in a transaction too */
	exec_ok(db, "BEGIN IMMEDIATE");
	exec_ok(db, "INSERT INTO t (name) VALUES ('c')");
	assert_true(cvdb_last_insert_rowid(db) > second);
	exec_ok(db, "COMMIT");
	cvdb_close(db);
}

static void test_reset_rebind_restep(void **state)
{
	cvdb *db = open_fresh();
	cvdb_stmt *s;
	int round;

	(void)state;
	exec_ok(db, "INSERT INTO t (name, n) VALUES ('a', 1), ('b', 2), ('c', 3)");
	s = prep(db, "SELECT n FROM t WHERE n >= ?1 ORDER BY n", 1);
	for (round = 0; round < 2; round++) {
		assert_int_equal(cvdb_bind_int64(s, 1, 2), SQLITE_OK);
		assert_int_equal(cvdb_step(s), SQLITE_ROW);
		assert_int_equal(cvdb_column_int64(s, 0), 2);
		/* binding while the statement runs is misuse, on both */
		assert_int_equal(cvdb_bind_int64(s, 1, 1), SQLITE_MISUSE);
		assert_int_equal(cvdb_step(s), SQLITE_ROW);
		assert_int_equal(cvdb_column_int64(s, 0), 3);
		assert_int_equal(cvdb_step(s), SQLITE_DONE);
		assert_int_equal(cvdb_reset(s), SQLITE_OK);
		/* bindings survive a reset */
		assert_int_equal(cvdb_step(s), SQLITE_ROW);
		assert_int_equal(cvdb_column_int64(s, 0), 2);
		assert_int_equal(cvdb_reset(s), SQLITE_OK);
		assert_int_equal(cvdb_bind_int64(s, 1, 3), SQLITE_OK);
		assert_int_equal(cvdb_step(s), SQLITE_ROW);
		assert_int_equal(cvdb_column_int64(s, 0), 3);
		assert_int_equal(cvdb_step(s), SQLITE_DONE);
		/* stepping past the end runs it again */
		assert_int_equal(cvdb_step(s), SQLITE_ROW);
		assert_int_equal(cvdb_column_int64(s, 0), 3);
		assert_int_equal(cvdb_reset(s), SQLITE_OK);
		/* cleared bindings are NULL: nothing is >= NULL */
		assert_int_equal(cvdb_clear_bindings(s), SQLITE_OK);
		assert_int_equal(cvdb_step(s), SQLITE_DONE);
		assert_int_equal(cvdb_reset(s), SQLITE_OK);
	}
	cvdb_finalize(s);
	/* one kept statement, a parameter bound with an integer then with text */
	s = prep(db, "SELECT ?1", 1);
	assert_int_equal(cvdb_bind_int64(s, 1, 42), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_type(s, 0), SQLITE_INTEGER);
	assert_int_equal(cvdb_column_int64(s, 0), 42);
	cvdb_reset(s);
	assert_int_equal(cvdb_bind_text(s, 1, "forty-two", -1), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_type(s, 0), SQLITE_TEXT);
	assert_string_equal((const char *)cvdb_column_text(s, 0), "forty-two");
	cvdb_finalize(s);
	/* the original text, and a multi-statement text prepared one at a time */
	{
		const char *script = "SELECT 1; SELECT 2", *tail = NULL;

		assert_int_equal(cvdb_prepare(db, script, 0, &s, &tail), SQLITE_OK);
		assert_string_equal(cvdb_sql(s), "SELECT 1;");
		assert_ptr_equal(cvdb_db_handle(s), db);
		assert_string_equal(tail, " SELECT 2");
		cvdb_finalize(s);
		assert_int_equal(cvdb_prepare(db, "  -- nothing\n", 0, &s, &tail), SQLITE_OK);
		assert_null(s);
	}
	cvdb_close(db);
}

static void test_transactions_and_autocommit(void **state)
{
	cvdb *db = open_fresh(), *other = open_db();
	cvdb_stmt *s;

	(void)state;
	assert_int_equal(cvdb_get_autocommit(db), 1);
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(cvdb_get_autocommit(db), 0);
	exec_ok(db, "INSERT INTO t (name) VALUES ('gone')");
	/* nested BEGIN refused, the transaction still open */
	assert_int_not_equal(cvdb_exec(db, "BEGIN"), SQLITE_OK);
	assert_int_equal(cvdb_get_autocommit(db), 0);
	exec_ok(db, "ROLLBACK");
	assert_int_equal(cvdb_get_autocommit(db), 1);
	assert_int_equal(count_rows(db, ""), 0);
	/* ending a transaction there is none of is an error */
	assert_int_not_equal(cvdb_exec(db, "COMMIT"), SQLITE_OK);
	assert_int_not_equal(cvdb_exec(db, "ROLLBACK"), SQLITE_OK);
	exec_ok(db, "BEGIN IMMEDIATE; INSERT INTO t (name) VALUES ('kept'); COMMIT");
	assert_int_equal(count_rows(db, ""), 1);

	/* BEGIN is a read snapshot: another connection's commit is not seen until it ends */
	exec_ok(db, "BEGIN");
	assert_int_equal(count_rows(db, ""), 1);
	exec_ok(other, "INSERT INTO t (name) VALUES ('later')");
	assert_int_equal(count_rows(db, ""), 1);
	exec_ok(db, "COMMIT");
	assert_int_equal(count_rows(db, ""), 2);

	/* a statement running while others run on the same connection */
	s = prep(db, "SELECT name FROM t ORDER BY name", 0);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_string_equal((const char *)cvdb_column_text(s, 0), "kept");
	exec_ok(db, "UPDATE t SET n = 1");
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_string_equal((const char *)cvdb_column_text(s, 0), "later");
	assert_int_equal(cvdb_step(s), SQLITE_DONE);
	cvdb_finalize(s);
	cvdb_close(other);
	cvdb_close(db);
}

struct writer {
	cvdb *db;
	int rc;
	int64_t seen;         /* rows it counted once it held the lock */
	volatile int done;
	pthread_mutex_t lock;
};

static void *second_writer(void *arg)
{
	struct writer *w = arg;
	int rc;

	rc = cvdb_exec(w->db, "BEGIN IMMEDIATE");
	if (rc == SQLITE_OK)
		w->seen = count_rows(w->db, "");
	pthread_mutex_lock(&w->lock);
	w->rc = rc;
	w->done = 1;
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* A write outside any transaction: SQLite takes the write lock for it too. */
static void *autocommit_writer(void *arg)
{
	struct writer *w = arg;
	int rc;

	rc = cvdb_exec(w->db, "UPDATE t SET n = (SELECT count(*) FROM t)");
	pthread_mutex_lock(&w->lock);
	w->rc = rc;
	w->done = 1;
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void test_one_writer_at_a_time(void **state)
{
	cvdb *db = open_fresh();
	struct writer w = { .db = open_db(), .rc = -1 };
	struct timespec pause = { 0, 300 * 1000 * 1000 };
	pthread_t thread;
	int done;

	(void)state;
	pthread_mutex_init(&w.lock, NULL);
	exec_ok(db, "BEGIN IMMEDIATE");
	exec_ok(db, "INSERT INTO t (name) VALUES ('first')");
	assert_int_equal(pthread_create(&thread, NULL, second_writer, &w), 0);
	/* However long this takes, the second writer cannot be in while the first is: a
	 * correct store never gets past this, a broken one may (no bound on how fast) */
	nanosleep(&pause, NULL);
	pthread_mutex_lock(&w.lock);
	done = w.done;
	pthread_mutex_unlock(&w.lock);
	assert_int_equal(done, 0);
	exec_ok(db, "INSERT INTO t (name) VALUES ('second')");
	exec_ok(db, "COMMIT");
	assert_int_equal(pthread_join(thread, NULL), 0);
	assert_int_equal(w.rc, SQLITE_OK);
	/* once it holds the lock it sees every commit made before */
	assert_int_equal(w.seen, 2);
	exec_ok(w.db, "INSERT INTO t (name) VALUES ('third')");
	exec_ok(w.db, "COMMIT");
	assert_int_equal(count_rows(db, ""), 3);
	pthread_mutex_destroy(&w.lock);
	cvdb_close(w.db);
	cvdb_close(db);
}

static void test_autocommit_write_waits_for_writer(void **state)
{
	cvdb *db = open_fresh();
	struct writer w = { .db = open_db(), .rc = -1 };
	struct timespec pause = { 0, 300 * 1000 * 1000 };
	pthread_t thread;
	int done;

	(void)state;
	pthread_mutex_init(&w.lock, NULL);
	exec_ok(db, "INSERT INTO t (name) VALUES ('a')");
	exec_ok(db, "BEGIN IMMEDIATE");
	exec_ok(db, "INSERT INTO t (name) VALUES ('b')");
	assert_int_equal(pthread_create(&thread, NULL, autocommit_writer, &w), 0);
	nanosleep(&pause, NULL);
	pthread_mutex_lock(&w.lock);
	done = w.done;
	pthread_mutex_unlock(&w.lock);
	assert_int_equal(done, 0);
	exec_ok(db, "COMMIT");
	assert_int_equal(pthread_join(thread, NULL), 0);
	assert_int_equal(w.rc, SQLITE_OK);
	/* it ran after the commit, and saw it */
	assert_int_equal(count_rows(db, "WHERE n = 2"), 2);
	assert_int_equal(cvdb_get_autocommit(w.db), 1);
	pthread_mutex_destroy(&w.lock);
	cvdb_close(w.db);
	cvdb_close(db);
}

/* A query written twice: cvdb_pick runs the right one; on PostgreSQL the SQLite text that
 * nobody wrote twice is refused, naming what it cannot carry. */
static void test_written_twice_and_refused(void **state)
{
	static const char lite[] = "SELECT json_extract(?1, '$.kid')";
	cvdb *db = open_db();
	cvdb_stmt *s = NULL;

	(void)state;
	s = prep(db, cvdb_pick(db, lite, "SELECT (?1::json)->>'kid'"), 0);
	assert_int_equal(cvdb_bind_text(s, 1, "{\"kid\":\"k1\"}", -1), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_string_equal((const char *)cvdb_column_text(s, 0), "k1");
	cvdb_finalize(s);
	s = NULL;
	if (cvdb_kind(db) == CVDB_PG) {
		assert_int_equal(cvdb_prepare(db, lite, 0, &s, NULL), SQLITE_ERROR);
		assert_null(s);
		assert_non_null(strstr(cvdb_errmsg(db), "json_extract"));
		assert_int_equal(cvdb_prepare(db, "SELECT 1 FROM t WHERE name GLOB 'a*'", 0, &s,
					      NULL),
				 SQLITE_ERROR);
		assert_non_null(strstr(cvdb_errmsg(db), "GLOB"));
	}
	cvdb_close(db);
}

/* PostgreSQL only: a statement failing inside a transaction ends it there (SQLite's keeps
 * going): COMMIT then says so instead of quietly rolling back. */
static void test_pg_commit_after_failure(void **state)
{
	cvdb *db = open_fresh();

	(void)state;
	exec_ok(db, "BEGIN IMMEDIATE");
	exec_ok(db, "INSERT INTO t (name) VALUES ('a')");
	assert_int_equal(cvdb_exec(db, "INSERT INTO t (name) VALUES ('A')"),
			 SQLITE_CONSTRAINT_UNIQUE);
	assert_int_equal(cvdb_exec(db, "COMMIT"), SQLITE_ERROR);
	assert_non_null(strstr(cvdb_errmsg(db), "rolled back"));
	assert_int_equal(cvdb_get_autocommit(db), 1);
	assert_int_equal(count_rows(db, ""), 0);
	cvdb_close(db);
}

/* PostgreSQL only: a script written for PostgreSQL (a function body in dollar quotes, a
 * trigger) runs through cvdb_exec as written; a write with RETURNING outside a transaction
 * hands out its rows after its own transaction committed. */
static void test_pg_native_script(void **state)
{
	cvdb *db = open_fresh();
	cvdb_stmt *s;

	(void)state;
	exec_ok(db, "CREATE TABLE gen (one BIGINT PRIMARY KEY, n BIGINT NOT NULL);"
		    "INSERT INTO gen VALUES (1, 0);"
		    "CREATE FUNCTION gen_bump() RETURNS trigger LANGUAGE plpgsql AS $$"
		    " BEGIN UPDATE gen SET n = n + 1; RETURN NULL; END; $$;"
		    "CREATE TRIGGER t_gen AFTER INSERT OR UPDATE OR DELETE ON t"
		    " FOR EACH STATEMENT EXECUTE FUNCTION gen_bump();");
	s = prep(db, "INSERT INTO t (name) VALUES (?1), (?2) RETURNING id", 0);
	assert_int_equal(cvdb_bind_text(s, 1, "a", -1), SQLITE_OK);
	assert_int_equal(cvdb_bind_text(s, 2, "b", -1), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_true(cvdb_column_int64(s, 0) > 0);
	assert_int_equal(cvdb_get_autocommit(db), 1);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_step(s), SQLITE_DONE);
	assert_int_equal(cvdb_changes(db), 2);
	cvdb_finalize(s);
	s = prep(db, "SELECT n FROM gen", 0);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(s, 0), 1);
	cvdb_finalize(s);
	exec_ok(db, "DROP TABLE gen; DROP TRIGGER t_gen ON t; DROP FUNCTION gen_bump()");
	/* a kept statement the server forgot (as a pooler's DISCARD ALL would): one error,
	 * then prepared again */
	s = prep(db, "SELECT count(*) FROM t", 1);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	cvdb_reset(s);
	exec_ok(db, "DEALLOCATE ALL");
	assert_int_equal(cvdb_step(s), SQLITE_ERROR);
	assert_non_null(strstr(cvdb_errmsg(db), "does not exist"));
	cvdb_reset(s);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(s, 0), 2);
	cvdb_finalize(s);
	cvdb_close(db);
}

/* PostgreSQL only: the writer lock not had in time, and a serialization failure, are
 * SQLITE_BUSY, leaving no transaction open. */
static void test_pg_busy(void **state)
{
	cvdb *db = open_fresh(), *other = open_db();

	(void)state;
	exec_ok(db, "INSERT INTO t (name, n) VALUES ('a', 1)");
	exec_ok(db, "BEGIN IMMEDIATE");
	exec_ok(other, "SET lock_timeout = 100");
	assert_int_equal(cvdb_exec(other, "BEGIN IMMEDIATE"), SQLITE_BUSY);
	assert_non_null(strstr(cvdb_errmsg(other), "lock timeout"));
	assert_int_equal(cvdb_get_autocommit(other), 1);
	assert_int_equal(cvdb_exec(other, "UPDATE t SET n = 2"), SQLITE_BUSY);
	assert_int_equal(cvdb_get_autocommit(other), 1);
	exec_ok(db, "COMMIT");
	/* a snapshot of PostgreSQL's own (passed through as written), then a row changed
	 * under it */
	exec_ok(other, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	assert_int_equal(count_rows(other, "WHERE n = 1"), 1);
	exec_ok(db, "UPDATE t SET n = 3");
	assert_int_equal(cvdb_exec(other, "UPDATE t SET n = 4"), SQLITE_BUSY);
	exec_ok(other, "ROLLBACK");
	assert_int_equal(count_rows(db, "WHERE n = 3"), 1);
	cvdb_close(other);
	cvdb_close(db);
}

/* PostgreSQL only: a write in a read transaction (BEGIN) is refused before it is sent (the
 * snapshot cannot tell whether another writer committed since, which SQLite answers with
 * SQLITE_BUSY_SNAPSHOT); the transaction goes on, and writes under BEGIN IMMEDIATE. */
static void test_pg_write_in_read_transaction(void **state)
{
	cvdb *db = open_fresh();

	(void)state;
	exec_ok(db, "BEGIN");
	assert_int_equal(count_rows(db, ""), 0);
	assert_int_equal(cvdb_exec(db, "INSERT INTO t (name) VALUES ('a')"), SQLITE_ERROR);
	assert_non_null(strstr(cvdb_errmsg(db), "BEGIN IMMEDIATE"));
	assert_int_equal(count_rows(db, ""), 0);
	exec_ok(db, "COMMIT");
	exec_ok(db, "BEGIN IMMEDIATE; INSERT INTO t (name) VALUES ('a'); COMMIT");
	assert_int_equal(count_rows(db, ""), 1);
	cvdb_close(db);
}

/* PostgreSQL only: a connection the server dropped answers SQLITE_IOERR once, then the
 * handle reconnects by itself, its kept statements prepared again. */
static void test_pg_lost_connection(void **state)
{
	cvdb *db = open_fresh(), *admin = open_db();
	cvdb_stmt *s, *kill;
	int64_t pid;

	(void)state;
	s = prep(db, "SELECT pg_backend_pid()", 1);
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	pid = cvdb_column_int64(s, 0);
	cvdb_reset(s);
	kill = prep(admin, "SELECT pg_terminate_backend(?1::int4)", 0);
	assert_int_equal(cvdb_bind_int64(kill, 1, pid), SQLITE_OK);
	assert_int_equal(cvdb_step(kill), SQLITE_ROW);
	assert_int_equal(cvdb_column_int64(kill, 0), 1);
	cvdb_finalize(kill);
	/* the server needs a moment to close the socket: the first use after may or may not
	 * see it; one of the next few must, and after that the handle works again */
	{
		int i, lost = 0, rc;

		for (i = 0; i < 50 && !lost; i++) {
			rc = cvdb_step(s);
			cvdb_reset(s);
			if (rc == SQLITE_IOERR)
				lost = 1;
			else
				usleep(20 * 1000);
		}
		assert_int_equal(lost, 1);
		assert_non_null(strstr(cvdb_errmsg(db), "connection"));
	}
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	assert_true(cvdb_column_int64(s, 0) != pid);
	pid = cvdb_column_int64(s, 0);
	cvdb_reset(s);
	assert_int_equal(count_rows(db, ""), 0);

	/* lost inside a transaction: the statements after it must not commit one by one on
	 * the new connection; the transaction stays open for its caller to end, then nothing
	 * of it is left */
	exec_ok(db, "BEGIN IMMEDIATE");
	exec_ok(db, "INSERT INTO t (name) VALUES ('in-tx')");
	kill = prep(admin, "SELECT pg_terminate_backend(?1::int4)", 0);
	assert_int_equal(cvdb_bind_int64(kill, 1, pid), SQLITE_OK);
	assert_int_equal(cvdb_step(kill), SQLITE_ROW);
	cvdb_finalize(kill);
	{
		int i, rc = SQLITE_OK;
		char sql[64];

		for (i = 0; i < 50; i++) {
			snprintf(sql, sizeof(sql), "INSERT INTO t (name) VALUES ('n%d')", i);
			if ((rc = cvdb_exec(db, sql)) != SQLITE_OK)
				break;
			usleep(20 * 1000);
		}
		assert_int_equal(rc, SQLITE_IOERR);
	}
	assert_int_equal(cvdb_get_autocommit(db), 0);
	assert_int_equal(cvdb_exec(db, "INSERT INTO t (name) VALUES ('after')"), SQLITE_IOERR);
	assert_non_null(strstr(cvdb_errmsg(db), "ROLLBACK"));
	exec_ok(db, "ROLLBACK");
	assert_int_equal(cvdb_get_autocommit(db), 1);
	assert_int_equal(count_rows(db, ""), 0);
	assert_int_equal(count_rows(admin, ""), 0);

	/* lost before its COMMIT: the COMMIT fails, and ends the transaction all the same (the
	 * connection is not left waiting for a ROLLBACK nobody will send) */
	assert_int_equal(cvdb_step(s), SQLITE_ROW);
	pid = cvdb_column_int64(s, 0);
	cvdb_reset(s);
	exec_ok(db, "BEGIN IMMEDIATE");
	exec_ok(db, "INSERT INTO t (name) VALUES ('in-tx')");
	kill = prep(admin, "SELECT pg_terminate_backend(?1::int4)", 0);
	assert_int_equal(cvdb_bind_int64(kill, 1, pid), SQLITE_OK);
	assert_int_equal(cvdb_step(kill), SQLITE_ROW);
	cvdb_finalize(kill);
	kill = prep(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = ?1::int4", 0);
	for (;;) { /* until the backend is gone; no bound on how long that takes */
		assert_int_equal(cvdb_bind_int64(kill, 1, pid), SQLITE_OK);
		assert_int_equal(cvdb_step(kill), SQLITE_ROW);
		if (cvdb_column_int64(kill, 0) == 0)
			break;
		cvdb_reset(kill);
		usleep(10 * 1000);
	}
	cvdb_finalize(kill);
	assert_int_equal(cvdb_exec(db, "COMMIT"), SQLITE_IOERR);
	assert_int_equal(cvdb_get_autocommit(db), 1);
	assert_int_equal(count_rows(db, ""), 0);
	cvdb_finalize(s);
	cvdb_close(admin);
	cvdb_close(db);
}

/* PostgreSQL only: a password in the connection string appears in no message: not when the
 * string cannot be parsed, not when the connection fails, not when the server quotes it. */
static void test_pg_password_never_in_messages(void **state)
{
	static const char pw[] = "S3cretPw-7781";
	char conninfo[4][1024];
	cvdb *db = NULL;
	cvdb_stmt *s;
	size_t i;

	(void)state;
	snprintf(conninfo[0], sizeof(conninfo[0]), "host=%s user=postgres dbname=nosuchdb "
		 "password=%s", engine.pg.dir, pw);
	snprintf(conninfo[1], sizeof(conninfo[1]),
		 "postgresql://postgres:%s@/nosuchdb?host=%s", pw, engine.pg.dir);
	snprintf(conninfo[2], sizeof(conninfo[2]), "host=%s password=%s dbname", engine.pg.dir,
		 pw);
	snprintf(conninfo[3], sizeof(conninfo[3]), "host=/nonexistent password=%s", pw);
	for (i = 0; i < 4; i++) {
		assert_int_not_equal(cvdb_open_pg(conninfo[i], &db), SQLITE_OK);
		assert_non_null(db);
		if (strstr(cvdb_errmsg(db), pw) != NULL || strstr(cvdb_errmsg(db), "S3cret"))
			fail_msg("the password is in: %s", cvdb_errmsg(db));
		if (i < 2)
			assert_non_null(strstr(cvdb_errmsg(db), "nosuchdb"));
		cvdb_close(db);
		db = NULL;
	}
	/* connected (trust: the password is not asked for), the server quotes a value equal
	 * to it */
	snprintf(conninfo[0], sizeof(conninfo[0]), "%s password=%s", engine.pg.conninfo, pw);
	assert_int_equal(cvdb_open_pg(conninfo[0], &db), SQLITE_OK);
	s = prep(db, "SELECT CAST(?1 AS integer)", 0);
	assert_int_equal(cvdb_bind_text(s, 1, pw, -1), SQLITE_OK);
	assert_int_equal(cvdb_step(s), SQLITE_ERROR);
	assert_non_null(strstr(cvdb_errmsg(db), "invalid input syntax"));
	assert_null(strstr(cvdb_errmsg(db), "S3cret"));
	cvdb_finalize(s);
	cvdb_close(db);
}

static int setup_sqlite(void **state)
{
	(void)state;
	engine.kind = CVDB_SQLITE;
	snprintf(engine.dir, sizeof(engine.dir), "/tmp/cv-sqldb-XXXXXX");
	if (mkdtemp(engine.dir) == NULL)
		return -1;
	snprintf(engine.path, sizeof(engine.path), "%s/test.db", engine.dir);
	return 0;
}

static int teardown_sqlite(void **state)
{
	(void)state;
	return ts_softhsm_remove(engine.dir);
}

static int setup_pg(void **state)
{
	(void)state;
	engine.kind = CVDB_PG;
	return ts_pgserver_start(&engine.pg);
}

static int teardown_pg(void **state)
{
	(void)state;
	ts_pgserver_stop(&engine.pg);
	return 0;
}

#define BATTERY                                                  \
	cmocka_unit_test(test_parameter_numbering),              \
	cmocka_unit_test(test_integers_text_blobs_nulls),        \
	cmocka_unit_test(test_parameter_only_tested_for_null),   \
	cmocka_unit_test(test_booleans),                         \
	cmocka_unit_test(test_constraints_and_changes),          \
	cmocka_unit_test(test_last_insert_rowid),                \
	cmocka_unit_test(test_reset_rebind_restep),              \
	cmocka_unit_test(test_transactions_and_autocommit),      \
	cmocka_unit_test(test_one_writer_at_a_time),             \
	cmocka_unit_test(test_autocommit_write_waits_for_writer), \
	cmocka_unit_test(test_written_twice_and_refused)

int main(void)
{
	const struct CMUnitTest lite[] = { BATTERY };
	const struct CMUnitTest pg[] = {
		BATTERY,
		cmocka_unit_test(test_pg_commit_after_failure),
		cmocka_unit_test(test_pg_native_script),
		cmocka_unit_test(test_pg_busy),
		cmocka_unit_test(test_pg_write_in_read_transaction),
		cmocka_unit_test(test_pg_lost_connection),
		cmocka_unit_test(test_pg_password_never_in_messages),
	};
	int failed;

	failed = cmocka_run_group_tests_name("sqlite", lite, setup_sqlite, teardown_sqlite);
	failed += cmocka_run_group_tests_name("postgresql", pg, setup_pg, teardown_pg);
	return failed;
}
