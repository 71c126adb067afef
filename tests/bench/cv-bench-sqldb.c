/* What one statement costs through the store's SQL interface (src/store/sqldb.h) on SQLite
 * and on PostgreSQL, side by side in one run (issue 15): the price of a round trip to the
 * server per statement, of preparing on the server once, and of the writer lock.
 *
 *   cv-bench-sqldb [N]     N operations per figure (default 20000)
 *
 * PostgreSQL is a private server started by the tool (tests/support/pgserver: Unix socket,
 * fsync off), SQLite a file in /tmp in WAL mode with synchronous=NORMAL (what the store
 * uses, without its group commit): both without waiting for the disk, so the figures compare
 * the engines and the interface, not the disk. Timings on a shared machine: no pass or fail. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/store/sqldb.h"
#include "pgserver.h"
#include "softhsm.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(cvdb *db, const char *what)
{
	fprintf(stderr, "cv-bench-sqldb: %s: %s\n", what, db != NULL ? cvdb_errmsg(db) : "");
	exit(1);
}

static void exec_or_die(cvdb *db, const char *sql)
{
	if (cvdb_exec(db, sql) != SQLITE_OK)
		die(db, sql);
}

static void step_all(cvdb *db, cvdb_stmt *s)
{
	int rc;

	while ((rc = cvdb_step(s)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE)
		die(db, cvdb_sql(s));
	cvdb_reset(s);
}

/* Microseconds per operation of each figure, for one engine. */
static void run(cvdb *db, int n, double out[4])
{
	cvdb_stmt *ins = NULL, *get = NULL, *page = NULL;
	double t0;
	int i;
	char name[32];

	exec_or_die(db, "DROP TABLE IF EXISTS bench");
	exec_or_die(db, cvdb_pick(db,
				  "CREATE TABLE bench (id INTEGER PRIMARY KEY AUTOINCREMENT,"
				  " name TEXT NOT NULL UNIQUE COLLATE NOCASE, n INTEGER NOT NULL,"
				  " body TEXT NOT NULL)",
				  "CREATE EXTENSION IF NOT EXISTS citext;"
				  "CREATE TABLE bench (id BIGINT GENERATED ALWAYS AS IDENTITY"
				  " PRIMARY KEY, name CITEXT NOT NULL UNIQUE, n BIGINT NOT NULL,"
				  " body TEXT NOT NULL)"));
	if (cvdb_prepare(db, "INSERT INTO bench (name, n, body) VALUES (?1, ?2, ?3)", 1, &ins,
			 NULL) != SQLITE_OK ||
	    cvdb_prepare(db, "SELECT id, name, n, body FROM bench WHERE name = ?1 COLLATE NOCASE",
			 1, &get, NULL) != SQLITE_OK ||
	    cvdb_prepare(db, "SELECT id, name, n, body FROM bench WHERE id > ?1 ORDER BY id"
			 " LIMIT 50", 1, &page, NULL) != SQLITE_OK)
		die(db, "prepare");

	/* 1: an insert on its own (autocommit: on PostgreSQL its own transaction under the
	 * writer lock) */
	t0 = now();
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "cert-%d", i);
		cvdb_bind_text(ins, 1, name, -1);
		cvdb_bind_int64(ins, 2, i);
		cvdb_bind_text(ins, 3, "a certificate's row, about the size of its metadata", -1);
		step_all(db, ins);
	}
	out[0] = (now() - t0) * 1e6 / n;
	/* 2: BEGIN IMMEDIATE, one insert, COMMIT: the store's write transaction */
	t0 = now();
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "tx-%d", i);
		exec_or_die(db, "BEGIN IMMEDIATE");
		cvdb_bind_text(ins, 1, name, -1);
		cvdb_bind_int64(ins, 2, i);
		cvdb_bind_text(ins, 3, "x", -1);
		step_all(db, ins);
		exec_or_die(db, "COMMIT");
	}
	out[1] = (now() - t0) * 1e6 / n;
	/* 3: a point read by name ignoring case, kept statement */
	t0 = now();
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "CERT-%d", (i * 7919) % n);
		cvdb_bind_text(get, 1, name, -1);
		if (cvdb_step(get) != SQLITE_ROW)
			die(db, "point read");
		cvdb_reset(get);
	}
	out[2] = (now() - t0) * 1e6 / n;
	/* 4: a page of 50 rows, every column read */
	t0 = now();
	for (i = 0; i < n / 10; i++) {
		int rc;

		cvdb_bind_int64(page, 1, (i * 50) % n);
		while ((rc = cvdb_step(page)) == SQLITE_ROW) {
			(void)cvdb_column_int64(page, 0);
			(void)cvdb_column_text(page, 1);
			(void)cvdb_column_int64(page, 2);
			(void)cvdb_column_text(page, 3);
		}
		if (rc != SQLITE_DONE)
			die(db, "page");
		cvdb_reset(page);
	}
	out[3] = (now() - t0) * 1e6 / (n / 10);
	cvdb_finalize(ins);
	cvdb_finalize(get);
	cvdb_finalize(page);
}

int main(int argc, char **argv)
{
	static const char *const figures[] = {
		"insert, autocommit", "BEGIN IMMEDIATE + insert + COMMIT",
		"point read (name, NOCASE)", "page of 50 rows",
	};
	struct ts_pgserver pg;
	char dir[] = "/tmp/cv-bench-sqldb-XXXXXX", path[64];
	double lite[4], post[4];
	cvdb *db = NULL;
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
	int i;

	if (n < 10 || n > 10000000) {
		fprintf(stderr, "usage: cv-bench-sqldb [N, 10..10000000]\n");
		return 2;
	}
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/bench.db", dir);
	if (cvdb_open_sqlite(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db) != SQLITE_OK)
		die(db, "open SQLite");
	exec_or_die(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL");
	run(db, (int)n, lite);
	cvdb_close(db);
	ts_softhsm_remove(dir);

	if (ts_pgserver_start(&pg) < 0)
		return 1;
	if (cvdb_open_pg(pg.conninfo, &db) != SQLITE_OK)
		die(db, "open PostgreSQL");
	run(db, (int)n, post);
	cvdb_close(db);
	ts_pgserver_stop(&pg);

	printf("%-36s %12s %12s %8s\n", "us per operation", "SQLite", "PostgreSQL", "ratio");
	for (i = 0; i < 4; i++)
		printf("%-36s %12.1f %12.1f %7.1fx\n", figures[i], lite[i], post[i],
		       post[i] / lite[i]);
	return 0;
}
