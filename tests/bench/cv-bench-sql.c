/* cv-bench-sql: the rate of the list's keyset page query on certvault's own SQLite schema,
 * straight from SQLite: the floor under GET /v1/certificates?status=valid&limit=50.
 *
 *   cv-bench-sql --db FILE [--threads T] [--seconds S] [--limit N]
 *
 * Each thread opens its own connection and runs, prepared once, the query the store builds
 * for a first page with status=valid (src/store/certs.c: the walk of certificates_state_name
 * in name order, the status as ranges on the indexed dates, LIMIT limit + 1), reading every
 * column of every row. Prints one JSON line on stdout. Exit 0, 1 on failure, 2 on bad
 * arguments. */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#define COLS_LIST                                                                        \
	"id, name, description, state, subject, issuer, serial, sha256_fingerprint, "   \
	"key_description, primary_domain, not_before, not_after, key_id, created_at, "  \
	"updated_at, version, current_since"

static const char page_sql[] =
	"SELECT " COLS_LIST " FROM certificates INDEXED BY certificates_state_name"
	" WHERE state = 1 AND not_before <= :now AND not_after >= :now AND not_after >= :thr"
	" ORDER BY name LIMIT :limit";

struct job {
	const char *db;
	long limit;
	double seconds;
	atomic_long pages;
	atomic_long rows;
	atomic_int failed;
	pthread_barrier_t start;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_long(const char *s, long min, long max, long *ret)
{
	char *end;
	long v;

	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || v < min || v > max)
		return -1;
	*ret = v;
	return 0;
}

static void *worker(void *arg)
{
	struct job *job = arg;
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;
	int64_t now = (int64_t)time(NULL);
	long pages = 0, rows = 0;
	double deadline;
	int rc, col, ncols;

	rc = sqlite3_open_v2(job->db, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	/* certvaultd may hold the file a moment (a checkpoint as it stops): wait as it would. */
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(db, 5000);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, page_sql, -1, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, sqlite3_bind_parameter_index(stmt, ":now"), now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, sqlite3_bind_parameter_index(stmt, ":thr"),
					now + 30 * 86400);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, sqlite3_bind_parameter_index(stmt, ":limit"),
					job->limit + 1);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "cv-bench-sql: %s: %s\n", job->db,
			db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		atomic_store(&job->failed, 1);
	}
	pthread_barrier_wait(&job->start);
	deadline = now_s() + job->seconds;
	while (!atomic_load(&job->failed) && now_s() < deadline) {
		/* A read transaction per page, as the store takes one. */
		if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
			fprintf(stderr, "cv-bench-sql: %s\n", sqlite3_errmsg(db));
			atomic_store(&job->failed, 1);
			break;
		}
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
			ncols = sqlite3_column_count(stmt);
			for (col = 0; col < ncols; col++) {
				if (sqlite3_column_type(stmt, col) == SQLITE_TEXT)
					(void)sqlite3_column_text(stmt, col);
				else if (sqlite3_column_type(stmt, col) == SQLITE_BLOB)
					(void)sqlite3_column_blob(stmt, col);
				else
					(void)sqlite3_column_int64(stmt, col);
			}
			rows++;
		}
		if (rc != SQLITE_DONE) {
			fprintf(stderr, "cv-bench-sql: %s\n", sqlite3_errmsg(db));
			atomic_store(&job->failed, 1);
			break;
		}
		(void)sqlite3_reset(stmt);
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			atomic_store(&job->failed, 1);
			break;
		}
		pages++;
	}
	atomic_fetch_add(&job->pages, pages);
	atomic_fetch_add(&job->rows, rows);
	sqlite3_finalize(stmt);
	sqlite3_close_v2(db);
	return NULL;
}

static int bad_args(const char *what)
{
	fprintf(stderr, "cv-bench-sql: %s\n"
		"usage: cv-bench-sql --db FILE [--threads T] [--seconds S] [--limit N]\n", what);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 's' },
		{ "limit", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	long threads = 2, seconds = 2, limit = 50, i;
	pthread_t *tids;
	struct job job;
	double start, elapsed;
	int opt;

	memset(&job, 0, sizeof(job));
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'd': job.db = optarg; break;
		case 't':
			if (parse_long(optarg, 1, 256, &threads) < 0)
				return bad_args("--threads: 1 to 256");
			break;
		case 's':
			if (parse_long(optarg, 1, 3600, &seconds) < 0)
				return bad_args("--seconds: 1 to 3600");
			break;
		case 'l':
			if (parse_long(optarg, 1, 1000, &limit) < 0)
				return bad_args("--limit: 1 to 1000");
			break;
		default:
			return bad_args("unknown option");
		}
	}
	if (optind != argc || job.db == NULL)
		return bad_args("--db is required");
	job.limit = limit;
	tids = calloc((size_t)threads, sizeof(*tids));
	if (tids == NULL || pthread_barrier_init(&job.start, NULL, (unsigned)threads + 1) != 0)
		return 1;
	job.seconds = (double)seconds;
	for (i = 0; i < threads; i++) {
		if (pthread_create(&tids[i], NULL, worker, &job) != 0)
			return 1;
	}
	pthread_barrier_wait(&job.start);
	start = now_s();
	for (i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	elapsed = now_s() - start;
	printf("{\"op\":\"sql_page\",\"threads\":%ld,\"limit\":%ld,\"pages\":%ld,\"rows\":%ld,"
	       "\"seconds\":%.4f,\"rate\":%.2f}\n",
	       threads, limit, atomic_load(&job.pages), atomic_load(&job.rows), elapsed,
	       elapsed > 0 ? (double)atomic_load(&job.pages) / elapsed : 0.0);
	pthread_barrier_destroy(&job.start);
	free(tids);
	return atomic_load(&job.failed) ? 1 : 0;
}
