/* Unit tests for the store, against a real SQLite file in a fresh directory (and, run as
 * "test_store --pg", the same tests against a private PostgreSQL server, a fresh database
 * for each test: issue 15; the few about SQLite's file and its old schema versions are
 * SQLite's alone and skipped there): schema and
 * migrations, the pending/active/deleting life of a row, every field round-tripped, keyset
 * paging, the status filter at its exact edges, search, counts, the pool under threads, and
 * the file's permissions; then schema v2: a v1 file migrated, services and their binding,
 * a certificate's usage, delete refused while in use, renew and replace (each refusal, the
 * versions, the race), and the key journal; last, that every write committing a client's
 * change writes its audit record in the same transaction or not at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "certvault/store.h"
#include "certvault/token.h"
#include "certvault/util.h"
#include "pgserver.h"
#include "softhsm.h"
#include "sqldb.h"

#define DAY 86400
#define SOON (30 * DAY)
#define NOW 1700000000

static char dir[] = "/tmp/cv-store-XXXXXX";
/* The SQLite file, or on PostgreSQL the test's database's connection string. */
static char path[512];
/* test_store --pg: the same tests on PostgreSQL. */
static int pg_mode;
static struct ts_pgserver pgsrv;
/* The SQLite text, or what PostgreSQL needs instead, for the tests' own SQL. */
#define PICK(lite, pg) (pg_mode ? (pg) : (lite))
/* A test about SQLite alone (its file, its pragmas, its schema versions before PostgreSQL
 * was there) is skipped on PostgreSQL. */
#define SQLITE_ONLY() do { if (pg_mode) skip(); } while (0)
#define SCHEMA_VERSION_SQL PICK("PRAGMA user_version", "SELECT version FROM schema_version")
static unsigned db_counter;
static unsigned key_counter;

/* The status the store's filter must agree with: cv_status_at, checked here against the
 * rules x509.h states, so that a slip in either is caught (values stay far from overflow). */
static enum cv_status ref_status(int64_t nb, int64_t na, int64_t now, int64_t soon)
{
	enum cv_status want = CV_STATUS_VALID;

	if (now < nb)
		want = CV_STATUS_UPCOMING;
	else if (now > na)
		want = CV_STATUS_EXPIRED;
	else if (na - now < soon)
		want = CV_STATUS_EXPIRES_SOON;
	assert_int_equal(cv_status_at((time_t)nb, (time_t)na, (time_t)now, soon), want);
	return want;
}

static int open_store(const char *target, struct cv_store **ret, struct cv_errmsg *err)
{
	return pg_mode ? cv_store_open_pg(target, NULL, ret, err) : cv_store_open(target, ret, err);
}

/* PostgreSQL: each test has a schema of its own in the server's one database (search_path
 * names it, then public, where citext is installed once): making a database costs PostgreSQL
 * a second, a schema a few milliseconds. A store makes its tables in the schema it is given,
 * so each test still starts from an empty one and migrates it; a new database of its own
 * (the extension made too) is what test_open_pg_two_nodes_at_once opens. */
static int pg_exec(const char *conninfo, const char *sql)
{
	cvdb *db = NULL;
	int rc;

	rc = cvdb_open_pg(conninfo, &db);
	if (rc == SQLITE_OK)
		rc = cvdb_exec(db, sql);
	if (rc != SQLITE_OK)
		fprintf(stderr, "%s: %s\n", sql, db != NULL ? cvdb_errmsg(db) : "no memory");
	cvdb_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

static int group_setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	if (!pg_mode)
		return 0;
	if (ts_pgserver_start(&pgsrv) != 0 || pg_exec(pgsrv.conninfo, "CREATE EXTENSION citext") != 0)
		return -1;
	return 0;
}

/* A fresh schema, and the conninfo that works in it into path. */
static int pg_fresh_db(const char *name)
{
	char sql[96];

	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", name);
	if (pg_exec(pgsrv.conninfo, sql) != 0)
		return -1;
	if ((size_t)snprintf(path, sizeof(path), "%.400s options='-c search_path=%s,public'",
			     pgsrv.conninfo, name) >= sizeof(path))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[600];

	(void)state;
	if (pg_mode)
		ts_pgserver_stop(&pgsrv);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Each test gets a database file of its own. */
static int test_setup(void **state)
{
	struct cv_errmsg err = { "" };
	struct cv_store *store = NULL;

	static const char *const environments[] = { "production", "staging", "prod", "test" };
	size_t i;
	int created;

	char name[32];

	snprintf(path, sizeof(path), "%s/db%u.sqlite", dir, ++db_counter);
	snprintf(name, sizeof(name), "t%u", db_counter);
	if (pg_mode && pg_fresh_db(name) != 0)
		return -1;
	if (open_store(path, &store, &err) != 0) {
		fprintf(stderr, "open: %s\n", err.text);
		return -1;
	}
	/* Services belong to an existing environment: these are the ones the tests' services
	 * use. */
	for (i = 0; i < sizeof(environments) / sizeof(environments[0]); i++)
		if (cv_store_environment_put(store, environments[i], environments[i], "", NOW,
					     &created, NULL, NULL) != 0)
			return -1;
	*state = store;
	return 0;
}

static int test_teardown(void **state)
{
	cv_store_free(*state);
	return 0;
}

/* A record with every field set to something recognisable; domains are NULL-terminated. */
static struct cv_cert_record *make_rec(const char *name, int64_t nb, int64_t na,
				       const char *const *domains)
{
	struct cv_cert_record *rec = calloc(1, sizeof(*rec));
	size_t i, n = 0;
	unsigned k;

	assert_non_null(rec);
	snprintf(rec->name, sizeof(rec->name), "%s", name);
	rec->description = strdup("a description");
	rec->state = CV_CERT_ACTIVE; /* ignored by insert */
	rec->cert_der_len = 300;
	rec->cert_der = malloc(rec->cert_der_len);
	for (i = 0; i < rec->cert_der_len; i++)
		rec->cert_der[i] = (unsigned char)(i * 7); /* zero bytes included */
	rec->chain_pem = strdup("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
	snprintf(rec->subject, sizeof(rec->subject), "CN=%s,O=Example", name);
	snprintf(rec->issuer, sizeof(rec->issuer), "CN=Example CA,O=Example");
	snprintf(rec->serial, sizeof(rec->serial), "01:A2:%02X", (unsigned)strlen(name));
	snprintf(rec->sha256_fingerprint, sizeof(rec->sha256_fingerprint), "AB:CD:EF:%s", name);
	snprintf(rec->key_description, sizeof(rec->key_description), "ECDSA P-256");
	while (domains != NULL && domains[n] != NULL)
		n++;
	if (n > 0) {
		snprintf(rec->primary_domain, sizeof(rec->primary_domain), "%s", domains[0]);
		rec->domains = calloc(n, sizeof(*rec->domains));
		for (i = 0; i < n; i++)
			rec->domains[i] = strdup(domains[i]);
		rec->n_domains = n;
	}
	rec->not_before = nb;
	rec->not_after = na;
	k = ++key_counter;
	for (i = 0; i < sizeof(rec->key_id); i++)
		rec->key_id[i] = (uint8_t)(k >> (8 * (i % 4))) ^ (uint8_t)i;
	rec->created_at = NOW - 100;
	rec->updated_at = NOW - 50;
	return rec;
}

/* Inserts and activates; returns the id. */
static int64_t add(struct cv_store *store, const char *name, int64_t nb, int64_t na,
		   const char *const *domains)
{
	struct cv_cert_record *rec = make_rec(name, nb, na, domains);
	int64_t id;

	assert_int_equal(cv_store_cert_insert_pending(store, rec, NULL), 0);
	assert_int_equal(cv_store_cert_activate(store, rec->id, NULL), 0);
	id = rec->id;
	cv_store_cert_free(rec);
	return id;
}

/* A connection of the tests' own beside the store's, on the same database. */
static cvdb *raw_open(const char *db_path)
{
	cvdb *db = NULL;

	if (pg_mode)
		assert_int_equal(cvdb_open_pg(db_path, &db), SQLITE_OK);
	else
		assert_int_equal(cvdb_open_sqlite(db_path, SQLITE_OPEN_READWRITE, &db), SQLITE_OK);
	return db;
}

static int64_t raw_int(const char *db_path, const char *sql)
{
	cvdb *db = raw_open(db_path);
	cvdb_stmt *stmt = NULL;
	int64_t v;

	if (cvdb_prepare(db, sql, 0, &stmt, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, cvdb_errmsg(db));
	assert_int_equal(cvdb_step(stmt), SQLITE_ROW);
	v = cvdb_column_int64(stmt, 0);
	assert_int_equal(cvdb_finalize(stmt), SQLITE_OK);
	assert_int_equal(cvdb_close(db), SQLITE_OK);
	return v;
}

static void raw_exec(const char *db_path, const char *sql)
{
	cvdb *db = raw_open(db_path);

	if (cvdb_exec(db, sql) != SQLITE_OK)
		fail_msg("%s: %s", sql, cvdb_errmsg(db));
	assert_int_equal(cvdb_close(db), SQLITE_OK);
}

static struct cv_cert_filter filter_all(unsigned limit)
{
	struct cv_cert_filter f;

	memset(&f, 0, sizeof(f));
	f.now = NOW;
	f.soon_seconds = SOON;
	f.in_use = -1; /* 0 would mean "used by no service" */
	f.limit = limit;
	return f;
}

/* How many rows a filter lists in all, with every name checked to be in order. */
static size_t list_count(struct cv_store *store, struct cv_cert_filter f)
{
	struct cv_cert_page *page = NULL;
	char after[65] = "";
	size_t total = 0, i;

	do {
		f.after = after[0] != '\0' ? after : NULL;
		assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
		for (i = 0; i < page->n; i++) {
			if (total + i > 0)
				assert_true(strcmp(page->items[i]->name, after) > 0);
			snprintf(after, sizeof(after), "%s", page->items[i]->name);
		}
		total += page->n;
		i = (size_t)page->has_more;
		if (page->has_more)
			assert_int_equal(page->n, f.limit);
		cv_store_cert_page_free(page);
		page = NULL;
	} while (i);
	return total;
}

static void assert_same_record(const struct cv_cert_record *got,
			       const struct cv_cert_record *want, int full)
{
	size_t i;

	assert_int_equal(got->id, want->id);
	assert_string_equal(got->name, want->name);
	assert_string_equal(got->description, want->description);
	assert_string_equal(got->subject, want->subject);
	assert_string_equal(got->issuer, want->issuer);
	assert_string_equal(got->serial, want->serial);
	assert_string_equal(got->sha256_fingerprint, want->sha256_fingerprint);
	assert_string_equal(got->key_description, want->key_description);
	assert_string_equal(got->primary_domain, want->primary_domain);
	assert_int_equal(got->not_before, want->not_before);
	assert_int_equal(got->not_after, want->not_after);
	assert_memory_equal(got->key_id, want->key_id, sizeof(got->key_id));
	assert_int_equal(got->created_at, want->created_at);
	assert_int_equal(got->updated_at, want->updated_at);
	assert_int_equal(got->n_domains, want->n_domains);
	for (i = 0; i < got->n_domains; i++)
		assert_string_equal(got->domains[i], want->domains[i]);
	if (full) {
		assert_int_equal(got->cert_der_len, want->cert_der_len);
		assert_memory_equal(got->cert_der, want->cert_der, want->cert_der_len);
		assert_string_equal(got->chain_pem, want->chain_pem);
	} else {
		assert_null(got->cert_der);
		assert_null(got->chain_pem);
	}
}

static void test_open_creates_schema_owner_only(void **state)
{
	struct cv_store *store = *state;
	struct stat st;
	char side[600];
	static const char *const doms[] = { "a.example", NULL };

	assert_int_equal(raw_int(path, SCHEMA_VERSION_SQL), 18);
	assert_int_equal(raw_int(path, PICK("SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
					    " AND name IN ('certificates', 'certificate_domains')",
					    "SELECT count(*) FROM pg_tables WHERE schemaname ="
					    " current_schema() AND tablename IN ('certificates',"
					    " 'certificate_domains')")),
			 2);
	assert_int_equal(cv_store_ping(store), 0);
	assert_string_equal(cv_store_kind(store), pg_mode ? "postgresql" : "sqlite");
	if (pg_mode) {
		/* What logs and health name: never the user or a password. */
		assert_non_null(strstr(cv_store_target(store), "/t"));
		assert_null(strstr(cv_store_target(store), "user"));
		return; /* no file */
	}
	/* A write makes the -wal and -shm files; all three are the owner's only. */
	add(store, "perm", NOW - DAY, NOW + 365 * DAY, doms);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(side, sizeof(side), "%s-wal", path);
	assert_int_equal(stat(side, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(side, sizeof(side), "%s-shm", path);
	assert_int_equal(stat(side, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_journal_mode_is_wal(void **state)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;

	(void)state;
	SQLITE_ONLY();
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "wal");
	sqlite3_finalize(stmt);
	sqlite3_close(db);
}

static void test_reopen_keeps_data(void **state)
{
	static const char *const doms[] = { "keep.example", "www.keep.example", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *rec = NULL;
	struct cv_errmsg err = { "" };

	add(store, "kept", NOW - DAY, NOW + 365 * DAY, doms);
	cv_store_free(store);
	*state = NULL;
	assert_int_equal(open_store(path, &store, &err), 0);
	*state = store;
	assert_int_equal(raw_int(path, SCHEMA_VERSION_SQL), 18);
	assert_int_equal(cv_store_cert_get(store, "kept", &rec), 0);
	assert_int_equal(rec->n_domains, 2);
	assert_string_equal(rec->domains[1], "www.keep.example");
	cv_store_cert_free(rec);
}

static void test_newer_schema_refused(void **state)
{
	struct cv_store *store = *state, *again = NULL;
	struct cv_errmsg err = { "" };

	cv_store_free(store);
	*state = NULL;
	raw_exec(path, PICK("PRAGMA user_version = 99", "UPDATE schema_version SET version = 99"));
	assert_int_equal(open_store(path, &again, &err), CV_ERR_DB);
	assert_null(again);
	assert_non_null(strstr(err.text, "newer"));
	assert_non_null(strstr(err.text, "99"));
	if (pg_mode) /* host, port and database: the server's directory and the test's name */
		assert_non_null(strstr(err.text, pgsrv.dir));
	else
		assert_non_null(strstr(err.text, path));
	/* Refusing changed nothing. */
	assert_int_equal(raw_int(path, SCHEMA_VERSION_SQL), 99);
}

static void test_open_bad_path_has_message(void **state)
{
	struct cv_store *store = NULL;
	struct cv_errmsg err = { "" };

	(void)state;
	assert_int_equal(cv_store_open("/nonexistent-dir/x/db.sqlite", &store, &err), CV_ERR_DB);
	assert_null(store);
	assert_non_null(strstr(err.text, "/nonexistent-dir/x/db.sqlite"));
}

/* PostgreSQL: a server that is not there is named (host, port, database), its password
 * never, in the message; so is a password that is wrong. */
static void test_open_pg_refusals(void **state)
{
	struct cv_store *store = NULL;
	struct cv_errmsg err = { "" };
	char conninfo[600];

	(void)state;
	if (!pg_mode)
		skip();
	assert_int_equal(cv_store_open_pg("host=/nonexistent-dir port=5999 dbname=nothere",
					  "s3cret-pw", &store, &err), CV_ERR_DB);
	assert_null(store);
	assert_non_null(strstr(err.text, "/nonexistent-dir:5999/nothere"));
	assert_null(strstr(err.text, "s3cret-pw"));
	/* The URI form, its password added by the store, is described the same way. */
	assert_int_equal(cv_store_open_pg("postgresql://someone@%2Fnonexistent-dir:5999/nothere",
					  "s3cret-pw", &store, &err), CV_ERR_DB);
	assert_null(store);
	assert_null(strstr(err.text, "s3cret-pw"));
	assert_null(strstr(err.text, "someone"));
	assert_non_null(strstr(err.text, "nothere"));
	/* A database with tables but no schema_version is somebody else's: left alone. */
	assert_int_equal(ts_pgserver_createdb(&pgsrv, "foreign_db", conninfo, sizeof(conninfo)),
			 0);
	raw_exec(conninfo, "CREATE TABLE theirs (x BIGINT)");
	assert_int_equal(cv_store_open_pg(conninfo, NULL, &store, &err), CV_ERR_DB);
	assert_null(store);
	assert_non_null(strstr(err.text, "not certvault's"));
	assert_int_equal(raw_int(conninfo, "SELECT count(*) FROM pg_tables WHERE schemaname ="
				 " current_schema()"), 1);
}

/* Fails unless gen(store) moves from was within seconds: another node's write reaches this
 * store's generations when the database's notification of its commit arrives (pgwatch.c),
 * a moment after the writer's commit returned. */
static void moves_within(struct cv_store *store, uint64_t (*gen)(struct cv_store *),
			 uint64_t was, double seconds, const char *what)
{
	struct timespec t0, t1;
	double waited;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (gen(store) == was) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (waited > seconds)
			fail_msg("not seen after %.1f s: %s", waited, what);
		usleep(1000);
	}
}

/* Two stores opening one new PostgreSQL database at once (two nodes starting): one creates
 * the schema, the other waits on the migration lock and finds it made. */
struct concurrent_open {
	struct cv_store *store;
	int r;
};

static void *open_one(void *arg)
{
	struct concurrent_open *o = arg;
	struct cv_errmsg err = { "" };

	o->r = cv_store_open_pg(path, NULL, &o->store, &err);
	if (o->r != 0)
		fprintf(stderr, "open: %s\n", err.text);
	return NULL;
}

static void test_open_pg_two_nodes_at_once(void **state)
{
	struct concurrent_open o[2] = { { NULL, -1 }, { NULL, -1 } };
	pthread_t t[2];
	unsigned i;

	(void)state;
	if (!pg_mode)
		skip();
	assert_int_equal(ts_pgserver_createdb(&pgsrv, "two_nodes", path, sizeof(path)), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, open_one, &o[i]), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(o[i].r, 0);
	assert_int_equal(raw_int(path, SCHEMA_VERSION_SQL), 18);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM schema_version"), 1);
	/* One store's write moves the other's generation (the number is the database's). */
	{
		uint64_t g = cv_store_certs_generation(o[1].store);
		static const char *const doms[] = { "node.example", NULL };

		add(o[0].store, "from-node-a", NOW - DAY, NOW + 365 * DAY, doms);
		moves_within(o[1].store, cv_store_certs_generation, g, 0.5,
			     "a certificate another store added");
	}
	cv_store_free(o[0].store);
	cv_store_free(o[1].store);
}

static int collect_unsettled(const struct cv_cert_record *rec, void *arg)
{
	char *seen = arg;

	strcat(seen, rec->name);
	strcat(seen, rec->state == CV_CERT_PENDING ? ":p " : rec->state == CV_CERT_DELETING
								      ? ":d "
								      : ":a ");
	return 0;
}

static void test_lifecycle(void **state)
{
	static const char *const doms[] = { "life.example", "*.life.example", "z.example", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *rec = make_rec("life", NOW - DAY, NOW + 365 * DAY, doms);
	struct cv_cert_record *dup = make_rec("life", NOW - DAY, NOW + 365 * DAY, NULL);
	struct cv_cert_record *got = NULL;
	struct cv_cert_filter f = filter_all(10);
	struct cv_cert_page *page = NULL;
	struct cv_cert_counts c;
	char seen[256] = "";
	char sql[128];

	assert_int_equal(cv_store_cert_insert_pending(store, rec, NULL), 0);
	assert_true(rec->id > 0);
	/* Pending: invisible, but holds its name. */
	assert_int_equal(cv_store_cert_get(store, "life", &got), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_int_equal(page->n, 0);
	assert_false(page->has_more);
	cv_store_cert_page_free(page);
	page = NULL;
	assert_int_equal(cv_store_cert_count(store, NOW, SOON, &c), 0);
	assert_int_equal(c.total, 0);
	assert_int_equal(cv_store_cert_insert_pending(store, dup, NULL), CV_ERR_NAME_TAKEN);
	assert_int_equal(cv_store_cert_set_description(store, "life", "x", NOW, NULL), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_mark_deleting(store, rec->id, CV_JWK_ACTION_NONE, NULL, NULL), CV_ERR_NOT_FOUND);

	/* Active: every field comes back. */
	assert_int_equal(cv_store_cert_activate(store, rec->id, NULL), 0);
	assert_int_equal(cv_store_cert_activate(store, rec->id, NULL), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_get(store, "life", &got), 0);
	assert_int_equal(got->state, CV_CERT_ACTIVE);
	assert_same_record(got, rec, 1);
	cv_store_cert_free(got);
	got = NULL;
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_int_equal(page->n, 1);
	assert_same_record(page->items[0], rec, 0);
	cv_store_cert_page_free(page);
	page = NULL;
	assert_int_equal(cv_store_cert_count(store, NOW, SOON, &c), 0);
	assert_int_equal(c.total, 1);
	assert_int_equal(c.valid, 1);

	/* Deleting: invisible again, name still held. */
	assert_int_equal(cv_store_cert_mark_deleting(store, rec->id, CV_JWK_ACTION_NONE, NULL, NULL), 0);
	assert_int_equal(cv_store_cert_get(store, "life", &got), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_count(store, NOW, SOON, &c), 0);
	assert_int_equal(c.total, 0);
	assert_int_equal(cv_store_cert_insert_pending(store, dup, NULL), CV_ERR_NAME_TAKEN);

	/* The vault's undo of a delete the token refused brings the row back whole. */
	assert_int_equal(cv_store_cert_activate(store, rec->id, NULL), 0);
	assert_int_equal(cv_store_cert_get(store, "life", &got), 0);
	cv_store_cert_free(got);
	got = NULL;
	assert_int_equal(cv_store_cert_mark_deleting(store, rec->id, CV_JWK_ACTION_NONE, NULL, NULL), 0);

	/* Remove: the row and its domains are gone, and the name is free. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM certificate_domains WHERE cert_id = %lld",
		 (long long)rec->id);
	assert_int_equal(raw_int(path, sql), 3);
	assert_int_equal(cv_store_cert_remove(store, rec->id), 0);
	assert_int_equal(cv_store_cert_remove(store, rec->id), CV_ERR_NOT_FOUND);
	assert_int_equal(raw_int(path, sql), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM certificates"), 0);
	assert_int_equal(cv_store_cert_foreach_unsettled(store, collect_unsettled, seen), 0);
	assert_string_equal(seen, "");
	assert_int_equal(cv_store_cert_insert_pending(store, dup, NULL), 0);
	/* Ids are never reused: the vault holds them across calls. */
	assert_true(dup->id > rec->id);
	cv_store_cert_free(rec);
	cv_store_cert_free(dup);
}

/* Soft delete (issue 18): a held row is hidden and not the reconciler's, its name stays
 * taken, the recover brings it back; the purge's mark hands it to the reconciler. */
static void test_soft_delete_recover_purge(void **state)
{
	static const char *const doms[] = { "soft.test", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *dup = make_rec("Soft", NOW - DAY, NOW + DAY, doms);
	struct cv_cert_record *got = NULL;
	struct cv_cert_page *page = NULL;
	struct cv_jwk_relink *relink = NULL;
	char **due = NULL;
	char seen[256] = "";
	size_t n = 0, i;
	int64_t id, other;

	id = add(store, "soft", NOW - DAY, NOW + DAY, doms);
	other = add(store, "other", NOW - DAY, NOW + DAY, doms);
	assert_int_equal(cv_store_cert_delete_soft(store, id, CV_JWK_ACTION_NONE, NOW, NOW + 30,
						   NULL, NULL), 0);
	/* A second delete finds no active row. */
	assert_int_equal(cv_store_cert_delete_soft(store, id, CV_JWK_ACTION_NONE, NOW, NOW + 30,
						   NULL, NULL), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_get(store, "soft", &got), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_insert_pending(store, dup, NULL), CV_ERR_NAME_TAKEN);
	assert_int_equal(cv_store_cert_foreach_unsettled(store, collect_unsettled, seen), 0);
	assert_string_equal(seen, "");
	assert_int_equal(cv_store_deleted_get(store, "SOFT", &got), 0);
	assert_string_equal(got->name, "soft");
	assert_int_equal(got->deleted_at, NOW);
	assert_int_equal(got->purge_after, NOW + 30);
	assert_int_equal(got->n_domains, 1);
	cv_store_cert_free(got);
	got = NULL;
	assert_int_equal(cv_store_deleted_get(store, "other", &got), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_deleted_list(store, NULL, 10, &page), 0);
	assert_int_equal(page->n, 1);
	assert_false(page->has_more);
	cv_store_cert_page_free(page);
	/* Due only once its retention ended. */
	assert_int_equal(cv_store_deleted_due(store, NOW + 29, 10, &due, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(cv_store_deleted_due(store, NOW + 30, 10, &due, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(due[0], "soft");
	for (i = 0; i < n; i++)
		free(due[i]);
	free(due);

	/* Recover: active again, nothing held. */
	assert_int_equal(cv_store_cert_recover(store, id, &relink, &n, NULL, NULL, NULL), 0);
	assert_int_equal(n, 0);
	free(relink);
	assert_int_equal(cv_store_cert_recover(store, id, &relink, &n, NULL, NULL, NULL),
			 CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_get(store, "soft", &got), 0);
	assert_int_equal(got->id, id);
	cv_store_cert_free(got);

	/* Purge: the mark ends the hold, so the reconciler finishes it; the unmark undoes it. */
	assert_int_equal(cv_store_cert_delete_soft(store, id, CV_JWK_ACTION_NONE, NOW, NOW + 30,
						   NULL, NULL), 0);
	assert_int_equal(cv_store_cert_purge_mark(store, other, NULL), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_purge_mark(store, id, NULL), 0);
	assert_int_equal(cv_store_cert_foreach_unsettled(store, collect_unsettled, seen), 0);
	assert_string_equal(seen, "soft:d ");
	assert_int_equal(cv_store_cert_purge_unmark(store, id), 0);
	assert_int_equal(cv_store_deleted_get(store, "soft", &got), 0);
	cv_store_cert_free(got);
	assert_int_equal(cv_store_cert_purge_mark(store, id, NULL), 0);
	assert_int_equal(cv_store_cert_remove(store, id), 0);
	/* The name is free again. */
	assert_int_equal(cv_store_cert_insert_pending(store, dup, NULL), 0);
	cv_store_cert_free(dup);
}

static void test_key_id_unique_is_not_name_taken(void **state)
{
	struct cv_store *store = *state;
	struct cv_cert_record *a = make_rec("ka", NOW - DAY, NOW + DAY, NULL);
	struct cv_cert_record *b = make_rec("kb", NOW - DAY, NOW + DAY, NULL);

	memcpy(b->key_id, a->key_id, sizeof(a->key_id));
	assert_int_equal(cv_store_cert_insert_pending(store, a, NULL), 0);
	assert_int_equal(cv_store_cert_insert_pending(store, b, NULL), CV_ERR_DB);
	/* The failed insert left nothing behind. */
	assert_int_equal(raw_int(path, "SELECT count(*) FROM certificates"), 1);
	cv_store_cert_free(a);
	cv_store_cert_free(b);
}

static int stop_at_second(const struct cv_cert_record *rec, void *arg)
{
	int *calls = arg;

	(void)rec;
	return ++*calls == 2 ? 42 : 0;
}

/* The reconciler removes rows from inside its callback. */
static int remove_it(const struct cv_cert_record *rec, void *arg)
{
	return cv_store_cert_remove(arg, rec->id);
}

static void test_foreach_unsettled(void **state)
{
	struct cv_store *store = *state;
	struct cv_cert_record *p = make_rec("p-one", NOW - DAY, NOW + DAY, NULL);
	struct cv_cert_record *p2 = make_rec("p-two", NOW - DAY, NOW + DAY, NULL);
	int64_t del;
	char seen[256] = "";
	int calls = 0;

	add(store, "a-active", NOW - DAY, NOW + DAY, NULL);
	del = add(store, "d-deleting", NOW - DAY, NOW + DAY, NULL);
	assert_int_equal(cv_store_cert_mark_deleting(store, del, CV_JWK_ACTION_NONE, NULL, NULL), 0);
	assert_int_equal(cv_store_cert_insert_pending(store, p, NULL), 0);
	assert_int_equal(cv_store_cert_insert_pending(store, p2, NULL), 0);
	assert_int_equal(cv_store_cert_foreach_unsettled(store, collect_unsettled, seen), 0);
	assert_string_equal(seen, "d-deleting:d p-one:p p-two:p ");
	assert_int_equal(cv_store_cert_foreach_unsettled(store, stop_at_second, &calls), 42);
	assert_int_equal(calls, 2);
	assert_int_equal(cv_store_cert_foreach_unsettled(store, remove_it, store), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM certificates"), 1);
	cv_store_cert_free(p);
	cv_store_cert_free(p2);
}

/* Appends "name " to seen (256 bytes). */
static int collect_pending(const struct cv_pending_record *rec, void *arg)
{
	char *seen = arg;
	size_t len = strlen(seen);

	snprintf(seen + len, 256 - len, "%s ", rec->name);
	return 0;
}

static int count_key_cb(const uint8_t *key_id, int in_journal, void *arg)
{
	(void)key_id;
	(*(int *)arg) += in_journal ? 1 : 100;
	return 0;
}

/* Several nodes on one database (issue 15), two handles on one file standing for two nodes:
 * a reconciler takes its own unsettled rows and those of a node silent past its lease, never
 * a live node's; it claims each first, and the node whose write it was cannot commit it any
 * more. */
static void test_nodes_claim(void **state)
{
	struct cv_store *a = *state, *b = NULL;
	struct cv_cert_record *pa = make_rec("from-a", NOW - DAY, NOW + DAY, NULL);
	struct cv_cert_record *pb = make_rec("from-b", NOW - DAY, NOW + DAY, NULL);
	struct cv_pending_record gen;
	struct cv_errmsg err = { "" };
	int64_t t = (int64_t)time(NULL);
	unsigned char csr[4] = { 0x30, 0x02, 0x05, 0x00 };
	uint8_t journal_key[CV_TOKEN_ID_LEN];
	char seen[256] = "";
	int keys = 0;

	memset(&gen, 0, sizeof(gen));
	snprintf(gen.name, sizeof(gen.name), "gen-a");
	snprintf(gen.key_type, sizeof(gen.key_type), "p256");
	snprintf(gen.key_label, sizeof(gen.key_label), "gen-a.v1");
	snprintf(gen.subject, sizeof(gen.subject), "CN=gen-a");
	memset(gen.key_id, 0x6a, sizeof(gen.key_id));
	gen.created_at = t;
	gen.expires_at = t + DAY;
	memset(journal_key, 0x4b, sizeof(journal_key));
	assert_int_equal(open_store(path, &b, &err), 0);
	assert_int_equal(cv_store_node_set(a, "node-a", 30), 0);
	assert_int_equal(cv_store_node_set(b, "node-b", 30), 0);
	assert_int_equal(cv_store_node_set(b, "", 0), CV_ERR_CONFIG);
	assert_int_equal(cv_store_node_register(a, t), 0);
	assert_int_equal(cv_store_node_register(b, t), 0);
	assert_int_equal(cv_store_cert_insert_pending(a, pa, NULL), 0);
	assert_int_equal(cv_store_cert_insert_pending(b, pb, NULL), 0);
	assert_int_equal(cv_store_pending_insert(a, &gen), 0);
	assert_int_equal(cv_store_key_journal_add(a, journal_key, pa->id, t), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM certificates WHERE owner_node ="
				 " 'node-a' AND name = 'from-a'"), 1);

	/* B starts again while A is alive: B takes only its own row. */
	assert_int_equal(cv_store_cert_foreach_unsettled(b, collect_unsettled, seen), 0);
	assert_string_equal(seen, "from-b:p ");
	seen[0] = '\0';
	assert_int_equal(cv_store_pending_foreach_claimed(b, t, 1, collect_pending, seen), 0);
	assert_string_equal(seen, "");
	assert_int_equal(cv_store_keys_unsettled_foreach(b, count_key_cb, &keys), 0);
	assert_int_equal(keys, 0);
	/* Running, B never takes its own rows (its writes in flight), nor a live A's. */
	assert_int_equal(cv_store_cert_foreach_abandoned(b, t, collect_unsettled, seen), 0);
	assert_string_equal(seen, "");
	/* Nor may B commit A's import. */
	assert_int_equal(cv_store_cert_activate(b, pa->id, NULL), CV_ERR_BUSY);

	/* A falls silent past its lease: B takes its rows over, each claimed. */
	assert_int_equal(cv_store_node_heartbeat(a, t - 31), 0);
	assert_int_equal(cv_store_cert_foreach_abandoned(b, t, collect_unsettled, seen), 0);
	assert_string_equal(seen, "from-a:p ");
	seen[0] = '\0';
	assert_int_equal(cv_store_pending_foreach_claimed(b, t, 0, collect_pending, seen), 0);
	assert_string_equal(seen, "gen-a ");
	assert_int_equal(cv_store_keys_abandoned_foreach(b, t, count_key_cb, &keys), 0);
	assert_int_equal(keys, 1);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM certificates WHERE owner_node ="
				 " 'node-b'"), 2);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM key_journal WHERE owner_node ="
				 " 'node-b'"), 1);
	/* Taken once: a second look finds nothing more. */
	seen[0] = '\0';
	assert_int_equal(cv_store_cert_foreach_abandoned(b, t, collect_unsettled, seen), 0);
	assert_string_equal(seen, "");

	/* A comes back: what B took over is no longer A's to commit. */
	assert_int_equal(cv_store_node_heartbeat(a, t), 0);
	assert_int_equal(cv_store_cert_activate(a, pa->id, NULL), CV_ERR_BUSY);
	assert_int_equal(cv_store_pending_ready(a, gen.id, csr, sizeof(csr), NULL),
			 CV_ERR_NOT_FOUND);
	assert_int_equal(raw_int(path, "SELECT state FROM certificates WHERE name = 'from-a'"),
			 CV_CERT_PENDING);
	/* B's own import commits. */
	assert_int_equal(cv_store_cert_activate(b, pb->id, NULL), 0);

	/* A second process under A's name: A's next heartbeat says so. */
	assert_int_equal(cv_store_node_set(b, "node-a", 30), 0);
	assert_int_equal(cv_store_node_register(b, t + 1), 0);
	assert_int_equal(cv_store_node_heartbeat(a, t + 2), CV_ERR_NAME_TAKEN);
	/* A clean stop leaves the row with no heartbeat: anyone's at once. */
	assert_int_equal(cv_store_node_stopped(b), 0);
	assert_int_equal(raw_int(path, "SELECT heartbeat_at FROM nodes WHERE name = 'node-a'"),
			 0);
	cv_store_free(b);
	free(gen.description);
	free(gen.csr_der);
	cv_store_cert_free(pa);
	cv_store_cert_free(pb);
}

static void test_set_description(void **state)
{
	struct cv_store *store = *state;
	struct cv_cert_record *rec = NULL;

	add(store, "desc", NOW - DAY, NOW + DAY, NULL);
	assert_int_equal(cv_store_cert_set_description(store, "desc", "new 'text'; --", NOW + 5, NULL),
			 0);
	assert_int_equal(cv_store_cert_get(store, "desc", &rec), 0);
	assert_string_equal(rec->description, "new 'text'; --");
	assert_int_equal(rec->updated_at, NOW + 5);
	assert_int_equal(rec->created_at, NOW - 100);
	cv_store_cert_free(rec);
	assert_int_equal(cv_store_cert_set_description(store, "nope", "x", NOW, NULL), CV_ERR_NOT_FOUND);
}

static void test_list_keyset_paging(void **state)
{
	struct cv_store *store = *state;
	struct cv_cert_filter f = filter_all(100);
	struct cv_cert_page *page = NULL;
	const char *after = NULL;
	char cursor[65] = "", name[32];
	unsigned seen[250] = { 0 };
	size_t sizes[3] = { 100, 100, 50 }, i, p;
	unsigned k, n;

	/* Inserted out of name order, so the order must come from the names. */
	for (k = 0; k < 250; k++) {
		n = (k * 97) % 250;
		snprintf(name, sizeof(name), "cert-%03u", n);
		add(store, name, NOW - DAY, NOW + 365 * DAY, NULL);
	}
	for (p = 0; p < 3; p++) {
		f.after = after;
		assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
		assert_int_equal(page->n, sizes[p]);
		assert_int_equal(page->has_more, p < 2);
		for (i = 0; i < page->n; i++) {
			n = (unsigned)atoi(page->items[i]->name + 5);
			assert_int_equal(n, p * 100 + i); /* no gaps, no dupes, in order */
			seen[n]++;
		}
		snprintf(cursor, sizeof(cursor), "%s", page->items[page->n - 1]->name);
		after = cursor;
		cv_store_cert_page_free(page);
		page = NULL;
	}
	for (k = 0; k < 250; k++)
		assert_int_equal(seen[k], 1);
	/* Exactly a full last page: no next page claimed. */
	f.after = "cert-149";
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_int_equal(page->n, 100);
	assert_false(page->has_more);
	assert_string_equal(page->items[99]->name, "cert-249");
	cv_store_cert_page_free(page);
	/* A cursor that is not a row's name still pages from the right place. */
	f.after = "cert-0995";
	f.limit = 1;
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_int_equal(page->n, 1);
	assert_string_equal(page->items[0]->name, "cert-100");
	assert_true(page->has_more);
	cv_store_cert_page_free(page);
	f.limit = 0;
	assert_int_equal(cv_store_cert_list(store, &f, &page), CV_ERR_BAD_REQUEST);
	f.limit = 1001;
	assert_int_equal(cv_store_cert_list(store, &f, &page), CV_ERR_BAD_REQUEST);
}

/* Lists with a status filter and returns the names, space separated, into buf. */
static const char *names_with_status(struct cv_store *store, enum cv_status s, char *buf,
				     size_t len)
{
	struct cv_cert_filter f = filter_all(1000);
	struct cv_cert_page *page = NULL;
	size_t i;

	f.has_status = 1;
	f.status = s;
	buf[0] = '\0';
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	for (i = 0; i < page->n; i++) {
		strncat(buf, page->items[i]->name, len - strlen(buf) - 1);
		strncat(buf, " ", len - strlen(buf) - 1);
	}
	cv_store_cert_page_free(page);
	return buf;
}

static void test_status_boundaries(void **state)
{
	struct cv_store *store = *state;
	struct cv_cert_counts c;
	char buf[512];

	/* Each name says what cv_status_at answers at NOW with SOON. */
	add(store, "b01-valid-edge", NOW - DAY, NOW + SOON, NULL);          /* na - now == soon */
	add(store, "b02-soon-edge", NOW - DAY, NOW + SOON - 1, NULL);       /* one second less */
	add(store, "b03-soon-last-second", NOW - DAY, NOW, NULL);           /* na == now */
	add(store, "b04-expired", NOW - DAY, NOW - 1, NULL);                /* now = na + 1 */
	add(store, "b05-upcoming", NOW + 1, NOW + 365 * DAY, NULL);         /* nb = now + 1 */
	add(store, "b06-valid-starts-now", NOW, NOW + 365 * DAY, NULL);     /* nb == now */
	add(store, "b07-soon-starts-now", NOW, NOW + 1, NULL);
	add(store, "b08-upcoming-short", NOW + 1, NOW + 2, NULL);
	add(store, "b09-upcoming-reversed", NOW + 10, NOW - 10, NULL);      /* upcoming wins */
	add(store, "b10-one-second-cert", NOW, NOW, NULL);

	assert_string_equal(names_with_status(store, CV_STATUS_VALID, buf, sizeof(buf)),
			    "b01-valid-edge b06-valid-starts-now ");
	assert_string_equal(names_with_status(store, CV_STATUS_EXPIRES_SOON, buf, sizeof(buf)),
			    "b02-soon-edge b03-soon-last-second b07-soon-starts-now "
			    "b10-one-second-cert ");
	assert_string_equal(names_with_status(store, CV_STATUS_EXPIRED, buf, sizeof(buf)),
			    "b04-expired ");
	assert_string_equal(names_with_status(store, CV_STATUS_UPCOMING, buf, sizeof(buf)),
			    "b05-upcoming b08-upcoming-short b09-upcoming-reversed ");
	assert_int_equal(cv_store_cert_count(store, NOW, SOON, &c), 0);
	assert_int_equal(c.total, 10);
	assert_int_equal(c.valid, 2);
	assert_int_equal(c.expires_soon, 4);
	assert_int_equal(c.expired, 1);
	assert_int_equal(c.upcoming, 3);
	/* soon_seconds 0: nothing expires soon, the last second of validity is valid. */
	assert_int_equal(cv_store_cert_count(store, NOW, 0, &c), 0);
	assert_int_equal(c.valid, 6);
	assert_int_equal(c.expires_soon, 0);
}

/* now + soon_seconds past the int64 range: every row still valid at now expires soon,
 * as cv_status_at says. */
static void test_status_threshold_overflow(void **state)
{
	struct cv_store *store = *state;
	struct cv_cert_filter f = filter_all(10);
	struct cv_cert_counts c;
	const int64_t now = INT64_MAX - 10;

	/* The store binds a threshold past the range as a double (2^63): SQLite compares an
	 * integer with it exactly, PostgreSQL turns the bigint into a double first, where
	 * INT64_MAX is 2^63 too. Known and left: it takes a now within soon_seconds of the end
	 * of 64-bit time. */
	if (pg_mode)
		skip();
	add(store, "max", 0, INT64_MAX, NULL);
	add(store, "gone", 0, 5, NULL);
	add(store, "min", INT64_MIN, 0, NULL);
	assert_int_equal(cv_status_at(0, (time_t)INT64_MAX, (time_t)now, 100),
			 CV_STATUS_EXPIRES_SOON);
	assert_int_equal(cv_store_cert_count(store, now, 100, &c), 0);
	assert_int_equal(c.expires_soon, 1);
	assert_int_equal(c.valid, 0);
	assert_int_equal(c.expired, 2);
	f.now = now;
	f.soon_seconds = 100;
	f.has_status = 1;
	f.status = CV_STATUS_EXPIRES_SOON;
	assert_int_equal(list_count(store, f), 1);
	f.status = CV_STATUS_VALID;
	assert_int_equal(list_count(store, f), 0);
	/* The other way, now + soon below the range: a negative threshold never makes a row
	 * expire soon. */
	assert_int_equal(cv_status_at((time_t)INT64_MIN, 0, -10, INT64_MIN + 1), CV_STATUS_VALID);
	assert_int_equal(cv_store_cert_count(store, -10, INT64_MIN + 1, &c), 0);
	assert_int_equal(c.valid, 1);
	assert_int_equal(c.expires_soon, 0);
	assert_int_equal(c.upcoming, 2);
	f.now = -10;
	f.soon_seconds = INT64_MIN + 1;
	assert_int_equal(list_count(store, f), 1);
}

static void test_status_agrees_with_rules(void **state)
{
	static const int64_t offsets[] = {
		-400 * DAY, -SOON - 1, -SOON, -DAY, -2, -1, 0, 1, 2, DAY,
		SOON - 1, SOON, SOON + 1, 400 * DAY,
	};
	static const int64_t soons[] = { 0, 1, SOON, 90 * DAY };
	static const int64_t nows[] = { NOW - DAY, NOW, NOW + SOON };
	size_t n_off = sizeof(offsets) / sizeof(offsets[0]);
	struct cv_store *store = *state;
	struct cv_cert_filter f = filter_all(7);
	struct cv_cert_counts c;
	size_t i, j, want[4], si, ni;
	int64_t got[4];
	char name[32];
	int s;

	/* Every pair of (not_before, not_after) offsets around NOW, a few hundred rows. */
	for (i = 0; i < n_off; i++)
		for (j = 0; j < n_off; j++) {
			snprintf(name, sizeof(name), "s-%02zu-%02zu", i, j);
			add(store, name, NOW + offsets[i], NOW + offsets[j], NULL);
		}
	for (ni = 0; ni < sizeof(nows) / sizeof(nows[0]); ni++) {
		for (si = 0; si < sizeof(soons) / sizeof(soons[0]); si++) {
			memset(want, 0, sizeof(want));
			for (i = 0; i < n_off; i++)
				for (j = 0; j < n_off; j++)
					want[ref_status(NOW + offsets[i], NOW + offsets[j],
							nows[ni], soons[si])]++;
			f.now = nows[ni];
			f.soon_seconds = soons[si];
			for (s = 0; s < 4; s++) {
				f.has_status = 1;
				f.status = (enum cv_status)s;
				assert_int_equal(list_count(store, f), want[s]);
			}
			assert_int_equal(cv_store_cert_count(store, nows[ni], soons[si], &c), 0);
			got[CV_STATUS_VALID] = c.valid;
			got[CV_STATUS_EXPIRES_SOON] = c.expires_soon;
			got[CV_STATUS_EXPIRED] = c.expired;
			got[CV_STATUS_UPCOMING] = c.upcoming;
			for (s = 0; s < 4; s++)
				assert_int_equal(got[s], want[s]);
			assert_int_equal(c.total, n_off * n_off);
		}
	}
}

/* Lists with q and returns the names, space separated, into buf. */
static const char *names_matching(struct cv_store *store, const char *q, char *buf, size_t len)
{
	struct cv_cert_filter f = filter_all(1000);
	struct cv_cert_page *page = NULL;
	size_t i;

	f.q = q;
	buf[0] = '\0';
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	for (i = 0; i < page->n; i++) {
		strncat(buf, page->items[i]->name, len - strlen(buf) - 1);
		strncat(buf, " ", len - strlen(buf) - 1);
	}
	cv_store_cert_page_free(page);
	return buf;
}

static void test_search(void **state)
{
	static const char *const d1[] = { "api.example.com", "www.example.com", NULL };
	static const char *const d2[] = { "shop.test", "pay_1.shop.test", NULL };
	static const char *const d3[] = { "100%.example.org", NULL };
	static const char *const d4[] = { "back\\slash.example", NULL };
	static const char *const d5[] = { "payx1.other", NULL };
	struct cv_store *store = *state;
	struct cv_cert_filter f = filter_all(1);
	struct cv_cert_page *page = NULL;
	char buf[512];

	add(store, "Billing-API", NOW - DAY, NOW + 365 * DAY, d1);
	add(store, "shop", NOW - DAY, NOW + 365 * DAY, d2);
	add(store, "percent", NOW - DAY, NOW + 365 * DAY, d3);
	add(store, "backslash", NOW - DAY, NOW + 365 * DAY, d4);
	add(store, "other", NOW - DAY, NOW + 365 * DAY, d5);
	add(store, "expired-www", NOW - 400 * DAY, NOW - DAY, NULL);

	/* Name substrings, any case. */
	assert_string_equal(names_matching(store, "billing", buf, sizeof(buf)), "Billing-API ");
	assert_string_equal(names_matching(store, "LING-a", buf, sizeof(buf)), "Billing-API ");
	/* Any domain, not only the first, any case. */
	assert_string_equal(names_matching(store, "WWW.EXAMPLE", buf, sizeof(buf)),
			    "Billing-API ");
	assert_string_equal(names_matching(store, "www", buf, sizeof(buf)),
			    "Billing-API expired-www ");
	assert_string_equal(names_matching(store, "shop.t", buf, sizeof(buf)), "shop ");
	/* Wildcards match themselves only. */
	assert_string_equal(names_matching(store, "pay_1", buf, sizeof(buf)), "shop ");
	assert_string_equal(names_matching(store, "_", buf, sizeof(buf)), "shop ");
	assert_string_equal(names_matching(store, "%", buf, sizeof(buf)), "percent ");
	assert_string_equal(names_matching(store, "100%.", buf, sizeof(buf)), "percent ");
	assert_string_equal(names_matching(store, "\\", buf, sizeof(buf)), "backslash ");
	assert_string_equal(names_matching(store, "k\\s", buf, sizeof(buf)), "backslash ");
	assert_string_equal(names_matching(store, "' OR 1=1 --", buf, sizeof(buf)), "");
	assert_string_equal(names_matching(store, "nothing", buf, sizeof(buf)), "");
	/* q, status and paging together. */
	f.q = "www";
	f.has_status = 1;
	f.status = CV_STATUS_EXPIRED;
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_int_equal(page->n, 1);
	assert_string_equal(page->items[0]->name, "expired-www");
	assert_false(page->has_more);
	cv_store_cert_page_free(page);
	f.has_status = 0;
	/* Not "example": the issuer (CN=Example CA) is searched too and names every row. */
	/* Names sort as the engine compares them: by byte on SQLite (upper case first), ignoring
	 * case on PostgreSQL (names are citext there); the cursor pages in that order. */
	f.q = ".example";
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_string_equal(page->items[0]->name, PICK("Billing-API", "backslash"));
	assert_true(page->has_more);
	cv_store_cert_page_free(page);
	f.after = PICK("Billing-API", "backslash");
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_string_equal(page->items[0]->name, PICK("backslash", "Billing-API"));
	assert_true(page->has_more);
	cv_store_cert_page_free(page);
	f.after = PICK("backslash", "Billing-API");
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_string_equal(page->items[0]->name, "percent");
	assert_false(page->has_more);
	cv_store_cert_page_free(page);
}

struct worker {
	struct cv_store *store;
	unsigned index;
	int failures;
};

static void *insert_many(void *arg)
{
	static const char *const doms[] = { "t.example", "u.example", NULL };
	struct worker *w = arg;
	struct cv_cert_record *rec, *got;
	char name[32];
	unsigned i, k;

	for (i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "t%u-%03u", w->index, i);
		rec = calloc(1, sizeof(*rec));
		if (rec == NULL) {
			w->failures++;
			continue;
		}
		snprintf(rec->name, sizeof(rec->name), "%s", name);
		rec->cert_der = malloc(4);
		rec->cert_der_len = 4;
		memcpy(rec->cert_der, "\x30\x82\x00\x00", 4);
		rec->domains = (char **)doms; /* borrowed: the record is not freed whole below */
		rec->n_domains = 2;
		rec->not_before = NOW - DAY;
		rec->not_after = NOW + DAY;
		k = w->index * 1000 + i;
		memcpy(rec->key_id, &k, sizeof(k));
		memcpy(rec->key_id + 8, "thread!!", 8);
		if (cv_store_cert_insert_pending(w->store, rec, NULL) != 0 ||
		    cv_store_cert_activate(w->store, rec->id, NULL) != 0)
			w->failures++;
		got = NULL;
		if (cv_store_cert_get(w->store, name, &got) != 0 || got->n_domains != 2)
			w->failures++;
		cv_store_cert_free(got);
		free(rec->cert_der);
		free(rec);
	}
	return NULL;
}

static void test_threads_through_pool(void **state)
{
	struct cv_store *store = *state;
	struct worker w[8];
	pthread_t t[8];
	struct cv_cert_counts c;
	struct cv_cert_filter f = filter_all(1000);
	unsigned i;

	for (i = 0; i < 8; i++) {
		w[i].store = store;
		w[i].index = i;
		w[i].failures = 0;
		assert_int_equal(pthread_create(&t[i], NULL, insert_many, &w[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	assert_int_equal(cv_store_cert_count(store, NOW, SOON, &c), 0);
	assert_int_equal(c.total, 800);
	assert_int_equal(list_count(store, f), 800);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM certificate_domains"), 1600);
}

/* Schema v2: services, usage, versions and the key journal. */

/* The one text value sql gives ("" for NULL), as a new string. */
static char *raw_text(const char *db_path, const char *sql)
{
	cvdb *db = raw_open(db_path);
	cvdb_stmt *stmt = NULL;
	const unsigned char *s;
	char *v;

	if (cvdb_prepare(db, sql, 0, &stmt, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, cvdb_errmsg(db));
	assert_int_equal(cvdb_step(stmt), SQLITE_ROW);
	s = cvdb_column_text(stmt, 0);
	v = strdup(s != NULL ? (const char *)s : "");
	assert_non_null(v);
	assert_int_equal(cvdb_finalize(stmt), SQLITE_OK);
	assert_int_equal(cvdb_close(db), SQLITE_OK);
	return v;
}

/* Everything a supersede writes, as one string: a refused one must leave it the same. */
static char *supersede_digest(void)
{
#define SUPERSEDE_ROWS(hex)                                                                \
	" SELECT 'c' || id || ':' || version || ':' || current_since || ':'"                \
	" || sha256_fingerprint || ':' || " hex " || ':' || updated_at AS x"                \
	" FROM certificates"                                                                \
	" UNION ALL SELECT 'v' || cert_id || ':' || version || ':' || key_state"            \
	" FROM certificate_versions"                                                        \
	" UNION ALL SELECT 'd' || cert_id || ':' || position || ':' || domain"              \
	" FROM certificate_domains"                                                         \
	" UNION ALL SELECT 'j' || " hex " FROM key_journal"                                 \
	" UNION ALL SELECT 's' || name || ':' || coalesce(CAST(cert_id AS TEXT), '-') || ':'"       \
	" || coalesce(CAST(bound_at AS TEXT), '-') FROM services"
	return raw_text(path, PICK(
			"SELECT group_concat(x, ';') FROM (SELECT x FROM ("
			SUPERSEDE_ROWS("hex(key_id)") ") ORDER BY x)",
			"SELECT string_agg(x, ';' ORDER BY x COLLATE \"C\") FROM ("
			SUPERSEDE_ROWS("encode(key_id, 'hex')") ") r"));
}

/* How many rows of table hold key_id. */
static int64_t rows_with_key(const char *table, const uint8_t *key_id)
{
	char sql[160];
	size_t i;
	int n;

	n = snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE key_id = X'", table);
	for (i = 0; i < CV_TOKEN_ID_LEN; i++)
		n += snprintf(sql + n, sizeof(sql) - (size_t)n, "%02X", key_id[i]);
	snprintf(sql + n, sizeof(sql) - (size_t)n, "'");
	return raw_int(path, sql);
}

static void assert_strings(char *const *got, size_t n, const char *const *want)
{
	size_t i;

	for (i = 0; want[i] != NULL; i++) {
		assert_true(i < n);
		assert_string_equal(got[i], want[i]);
	}
	assert_int_equal(n, i);
}

/* A service as a caller fills it for put; domains are NULL-terminated. */
static struct cv_service_record *make_svc(const char *name, const char *environment,
					  const char *description, const char *const *domains)
{
	struct cv_service_record *svc = calloc(1, sizeof(*svc));
	size_t n = 0, i;

	assert_non_null(svc);
	snprintf(svc->name, sizeof(svc->name), "%s", name);
	snprintf(svc->environment, sizeof(svc->environment), "%s", environment);
	svc->description = strdup(description);
	while (domains != NULL && domains[n] != NULL)
		n++;
	if (n > 0) {
		svc->domains = calloc(n, sizeof(*svc->domains));
		assert_non_null(svc->domains);
		for (i = 0; i < n; i++)
			svc->domains[i] = strdup(domains[i]);
	}
	svc->n_domains = n;
	return svc;
}

/* Puts a service and returns *ret_created. */
static int put_svc(struct cv_store *store, const char *name, const char *environment,
		   const char *const *domains, int64_t now)
{
	struct cv_service_record *svc = make_svc(name, environment, "", domains);
	struct cv_conflict c;
	int created = -1, r;

	memset(&c, 0, sizeof(c));
	r = cv_store_service_put(store, svc, now, &created, &c, NULL);
	cv_store_service_free(svc);
	assert_int_equal(r, 0);
	return created;
}

static void bind_svc(struct cv_store *store, const char *name, const char *cert, int64_t now)
{
	struct cv_conflict c;

	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, name, cert, now, &c, NULL), 0);
}

static struct cv_service_record *get_svc(struct cv_store *store, const char *name)
{
	struct cv_service_record *svc = NULL;

	assert_int_equal(cv_store_service_get(store, name, &svc), 0);
	return svc;
}

static struct cv_cert_record *get_cert(struct cv_store *store, const char *name)
{
	struct cv_cert_record *rec = NULL;

	assert_int_equal(cv_store_cert_get(store, name, &rec), 0);
	return rec;
}

/* Inserts and activates rec, which the caller keeps. */
static int64_t add_rec(struct cv_store *store, struct cv_cert_record *rec)
{
	assert_int_equal(cv_store_cert_insert_pending(store, rec, NULL), 0);
	assert_int_equal(cv_store_cert_activate(store, rec->id, NULL), 0);
	return rec->id;
}

/* The next version of a certificate: every field new, its own key id, and a fingerprint
 * that tag names. */
static struct cv_cert_record *make_next(const char *tag, const char *const *domains)
{
	/* Valid from NOW: a version that services take over must have started. */
	struct cv_cert_record *next = make_rec(tag, NOW, NOW + 400 * DAY, domains);
	char chain[128];
	size_t i;

	for (i = 0; i < next->cert_der_len; i++)
		next->cert_der[i] = (unsigned char)(i * 13 + 1);
	next->cert_der_len = 200;
	snprintf(chain, sizeof(chain),
		 "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n", tag);
	free(next->chain_pem);
	next->chain_pem = strdup(chain);
	snprintf(next->serial, sizeof(next->serial), "7F:%s", tag);
	snprintf(next->issuer, sizeof(next->issuer), "CN=Other CA");
	snprintf(next->key_description, sizeof(next->key_description), "RSA 3072");
	return next;
}

static struct cv_supersede supersede_req(enum cv_version_end kind, int64_t id, int64_t version,
					 const struct cv_cert_record *next, int64_t now)
{
	struct cv_supersede req;

	memset(&req, 0, sizeof(req));
	req.kind = kind;
	req.id = id;
	req.version = version;
	req.next = next;
	req.now = now;
	return req;
}

/* The check and the commit both refuse req with want and the same conflict, and the commit
 * changed nothing. Returns the conflict. */
static struct cv_conflict refused(struct cv_store *store, const struct cv_supersede *req,
				  int want)
{
	struct cv_conflict checked, committed;
	char *before, *after;

	memset(&checked, 0, sizeof(checked));
	memset(&committed, 0, sizeof(committed));
	before = supersede_digest();
	assert_int_equal(cv_store_cert_supersede_check(store, req, &checked), want);
	assert_int_equal(cv_store_cert_supersede(store, req, &committed), want);
	after = supersede_digest();
	assert_string_equal(after, before);
	free(before);
	free(after);
	assert_string_equal(committed.service, checked.service);
	assert_string_equal(committed.detail, checked.detail);
	assert_int_equal(committed.version, checked.version);
	return committed;
}

/* Checks and commits req, which must pass. */
static void superseded(struct cv_store *store, const struct cv_supersede *req)
{
	struct cv_conflict c;

	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_cert_supersede_check(store, req, &c), 0);
	assert_int_equal(cv_store_cert_supersede(store, req, &c), 0);
}

/* Lists with f (every page) and returns the names, space separated, into buf. */
static const char *names_listed(struct cv_store *store, struct cv_cert_filter f, char *buf,
				size_t len)
{
	struct cv_cert_page *page = NULL;
	char after[65] = "";
	size_t i;
	int more;

	buf[0] = '\0';
	do {
		f.after = after[0] != '\0' ? after : NULL;
		assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
		for (i = 0; i < page->n; i++) {
			strncat(buf, page->items[i]->name, len - strlen(buf) - 1);
			strncat(buf, " ", len - strlen(buf) - 1);
			snprintf(after, sizeof(after), "%s", page->items[i]->name);
		}
		more = page->has_more;
		cv_store_cert_page_free(page);
		page = NULL;
	} while (more);
	return buf;
}

/* One page of services as names, space separated, into buf; *ret_more its has_more. */
static const char *svc_names(struct cv_store *store, const struct cv_service_filter *f,
			     char *buf, size_t len, int *ret_more)
{
	struct cv_service_page *page = NULL;
	size_t i;

	buf[0] = '\0';
	assert_int_equal(cv_store_service_list(store, f, &page), 0);
	for (i = 0; i < page->n; i++) {
		strncat(buf, page->items[i]->name, len - strlen(buf) - 1);
		strncat(buf, " ", len - strlen(buf) - 1);
	}
	*ret_more = page->has_more;
	cv_store_service_page_free(page);
	return buf;
}

/* Schema v1 exactly as migrations[0] creates it: the file a first release left behind. */
static const char schema_v1[] =
	"CREATE TABLE certificates ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE,"
	" description TEXT NOT NULL DEFAULT '',"
	" state INTEGER NOT NULL CHECK (state IN (0, 1, 2)),"
	" cert_der BLOB NOT NULL,"
	" chain_pem TEXT NOT NULL DEFAULT '',"
	" subject TEXT NOT NULL,"
	" issuer TEXT NOT NULL,"
	" serial TEXT NOT NULL,"
	" sha256_fingerprint TEXT NOT NULL,"
	" key_description TEXT NOT NULL,"
	" primary_domain TEXT NOT NULL,"
	" not_before INTEGER NOT NULL,"
	" not_after INTEGER NOT NULL,"
	" key_id BLOB NOT NULL UNIQUE CHECK (length(key_id) = 16),"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE certificate_domains ("
	" cert_id INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
	" position INTEGER NOT NULL,"
	" domain TEXT NOT NULL,"
	" PRIMARY KEY (cert_id, position)"
	") STRICT, WITHOUT ROWID;"
	"CREATE INDEX certificate_domains_domain ON certificate_domains(domain);"
	"CREATE INDEX certificates_state_name"
	" ON certificates(state, name, not_before, not_after);"
	"CREATE INDEX certificates_state_not_after"
	" ON certificates(state, not_after, not_before);";

static int rec_is_public(struct cv_store *store, const char *name)
{
	struct cv_cert_record *rec = NULL;
	int r;

	assert_int_equal(cv_store_cert_get(store, name, &rec), 0);
	r = rec->is_public;
	cv_store_cert_free(rec);
	return r;
}

static void test_migrate_from_v1(void **state)
{
	int created;
	static const char *const doms[] = { "old.example.com", "*.old.example.com", NULL };
	static const char *const sdoms[] = { "www.old.example.com", NULL };
	static const uint8_t key[CV_TOKEN_ID_LEN] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
						     0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
						     0xcc, 0xdd, 0xee, 0xff };
	struct cv_store *store = NULL;
	struct cv_cert_record *rec;
	struct cv_service_record *svc;
	struct cv_cert_version *versions = NULL;
	struct cv_errmsg err = { "" };
	sqlite3 *db = NULL;
	size_t n = 0;
	SQLITE_ONLY();

	snprintf(path, sizeof(path), "%s/v1-%u.sqlite", dir, ++db_counter);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
					 NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, schema_v1, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(db,
			     "INSERT INTO certificates (id, name, description, state, cert_der,"
			     " chain_pem, subject, issuer, serial, sha256_fingerprint,"
			     " key_description, primary_domain, not_before, not_after, key_id,"
			     " created_at, updated_at) VALUES (7, 'old', 'from v1', 1,"
			     " X'3082000A00', 'PEM', 'CN=old.example.com', 'CN=Old CA', '0A:0B',"
			     " 'AA:BB:CC', 'RSA 2048', 'old.example.com', 1600000000, 1900000000,"
			     " X'00112233445566778899AABBCCDDEEFF', 1650000000, 1660000000);"
			     "INSERT INTO certificate_domains (cert_id, position, domain)"
			     " VALUES (7, 0, 'old.example.com'), (7, 1, '*.old.example.com');"
			     "PRAGMA user_version = 1;",
			     NULL, NULL, NULL),
		SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);

	assert_int_equal(open_store(path, &store, &err), 0);
	*state = store; /* the teardown closes it */
	/* Every step since v1 ran: v2 (and v3 after it), the current schema. */
	assert_int_equal(raw_int(path, "PRAGMA user_version"), 18);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
				       " AND name IN ('certificate_versions', 'key_journal',"
				       " 'services', 'service_domains')"),
			 4);
	rec = get_cert(store, "old");
	assert_int_equal(rec->id, 7);
	assert_int_equal(rec->version, 1);
	assert_int_equal(rec->created_at, 1650000000);
	assert_int_equal(rec->current_since, rec->created_at);
	assert_int_equal(rec->updated_at, 1660000000);
	assert_string_equal(rec->description, "from v1");
	assert_string_equal(rec->subject, "CN=old.example.com");
	assert_string_equal(rec->sha256_fingerprint, "AA:BB:CC");
	assert_string_equal(rec->primary_domain, "old.example.com");
	assert_int_equal(rec->not_before, 1600000000);
	assert_int_equal(rec->not_after, 1900000000);
	assert_memory_equal(rec->key_id, key, sizeof(key));
	assert_int_equal(rec->cert_der_len, 5);
	assert_memory_equal(rec->cert_der, "\x30\x82\x00\x0a\x00", 5);
	assert_string_equal(rec->chain_pem, "PEM");
	assert_strings(rec->domains, rec->n_domains, doms);
	assert_int_equal(rec->n_used_by, 0);
	assert_int_equal(rec->custom_domains, 0);
	cv_store_cert_free(rec);
	/* Its history is the one version, and the new features work on the old row. */
	assert_int_equal(cv_store_cert_versions(store, 7, &versions, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(versions[0].version, 1);
	assert_int_equal(versions[0].current_from, 1650000000);
	assert_int_equal(versions[0].ended_by, CV_END_NONE);
	free(versions);
	assert_int_equal(rec_is_public(store, "old"), 0); /* rows from before are key pairs */
	assert_int_equal(cv_store_environment_put(store, "production", "production", "", NOW,
						  &created, NULL, NULL),
			 0);
	assert_int_equal(put_svc(store, "legacy", "production", sdoms, NOW), 1);
	bind_svc(store, "legacy", "old", NOW);
	svc = get_svc(store, "legacy");
	assert_string_equal(svc->cert_name, "old");
	assert_int_equal(svc->cert_version, 1);
	cv_store_service_free(svc);
	/* Opening again finds nothing more to do. */
	cv_store_free(store);
	*state = NULL;
	assert_int_equal(open_store(path, &store, &err), 0);
	*state = store;
	assert_int_equal(raw_int(path, "PRAGMA user_version"), 18);
	rec = get_cert(store, "old");
	assert_int_equal(rec->n_used_by, 1);
	cv_store_cert_free(rec);
}

static void test_service_put_get_remove(void **state)
{
	static const char *const d1[] = { "b.example.com", "a.example.com", "*.c.example.com",
					  NULL };
	static const char *const d2[] = { "z.example.org", "y.example.org", NULL };
	struct cv_store *store = *state;
	struct cv_service_record *svc, *got;
	struct cv_conflict c;
	int created = -1;

	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_get(store, "web", &got), CV_ERR_NOT_FOUND);
	svc = make_svc("web", "production", "the 'front' door; --", d1);
	/* What put ignores: a service is bound only by bind. */
	snprintf(svc->cert_name, sizeof(svc->cert_name), "somecert");
	svc->cert_version = 9;
	svc->bound_at = 5;
	svc->created_at = 1;
	svc->updated_at = 2;
	assert_int_equal(cv_store_service_put(store, svc, NOW, &created, &c, NULL), 0);
	assert_int_equal(created, 1);
	cv_store_service_free(svc);
	got = get_svc(store, "web");
	assert_true(got->id > 0);
	assert_string_equal(got->name, "web");
	assert_string_equal(got->environment, "production");
	assert_string_equal(got->description, "the 'front' door; --");
	assert_strings(got->domains, got->n_domains, d1); /* in the order given */
	assert_int_equal(got->created_at, NOW);
	assert_int_equal(got->updated_at, NOW);
	assert_string_equal(got->cert_name, "");
	assert_int_equal(got->cert_version, 0);
	assert_string_equal(got->cert_serial, "");
	assert_string_equal(got->cert_sha256_fingerprint, "");
	assert_int_equal(got->bound_at, 0);
	cv_store_service_free(got);

	/* Put again: an update that replaces environment, description and domains. */
	svc = make_svc("web", "staging", "", d2);
	created = -1;
	assert_int_equal(cv_store_service_put(store, svc, NOW + 10, &created, &c, NULL), 0);
	assert_int_equal(created, 0);
	cv_store_service_free(svc);
	got = get_svc(store, "web");
	assert_string_equal(got->environment, "staging");
	assert_string_equal(got->description, "");
	assert_strings(got->domains, got->n_domains, d2);
	assert_int_equal(got->created_at, NOW);
	assert_int_equal(got->updated_at, NOW + 10);
	cv_store_service_free(got);
	/* No domains at all is a service too. */
	svc = make_svc("web", "staging", "x", NULL);
	assert_int_equal(cv_store_service_put(store, svc, NOW + 20, &created, &c, NULL), 0);
	assert_int_equal(created, 0);
	cv_store_service_free(svc);
	got = get_svc(store, "web");
	assert_int_equal(got->n_domains, 0);
	cv_store_service_free(got);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM services"), 1);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM service_domains"), 0);

	/* Names are exact. */
	assert_int_equal(cv_store_service_get(store, "WEB", &got), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_service_remove(store, "web ", NULL), CV_ERR_NOT_FOUND);
	assert_int_equal(put_svc(store, "api", "production", d1, NOW), 1);
	assert_int_equal(cv_store_service_remove(store, "api", NULL), 0);
	assert_int_equal(cv_store_service_remove(store, "api", NULL), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_service_get(store, "api", &got), CV_ERR_NOT_FOUND);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM service_domains"), 0);
	/* The other one is untouched; a removed name can be created again. */
	got = get_svc(store, "web");
	cv_store_service_free(got);
	assert_int_equal(put_svc(store, "api", "production", d1, NOW), 1);
}

static void test_service_list(void **state)
{
	static const char *const cd[] = { "*.list.example", NULL };
	static const char *const sd[] = { "x.list.example", NULL };
	static const char *const order[] = { "svc-d", "svc-a", "svc-e", "svc-c", "svc-b" };
	static const char *const envs[] = { "prod", "prod", "staging", "prod", "staging" };
	struct cv_store *store = *state;
	struct cv_service_filter f;
	struct cv_service_page *page = NULL;
	char buf[256];
	int more;
	size_t i;

	add(store, "lc", NOW - DAY, NOW + DAY, cd);
	add(store, "other", NOW - DAY, NOW + DAY, cd);
	/* Created out of name order. */
	for (i = 0; i < 5; i++)
		assert_int_equal(put_svc(store, order[i], envs[i], sd, NOW), 1);
	bind_svc(store, "svc-c", "lc", NOW);
	bind_svc(store, "svc-e", "lc", NOW);
	bind_svc(store, "svc-a", "other", NOW);

	memset(&f, 0, sizeof(f));
	f.limit = 2;
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-a svc-b ");
	assert_true(more);
	f.after = "svc-b";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-c svc-d ");
	assert_true(more);
	f.after = "svc-d";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-e ");
	assert_false(more);
	/* Exactly a full page: no next page claimed; a cursor between names. */
	f.after = NULL;
	f.limit = 5;
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more),
			    "svc-a svc-b svc-c svc-d svc-e ");
	assert_false(more);
	f.after = "svc-bb";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-c svc-d svc-e ");
	f.after = "svc-e";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "");
	assert_false(more);

	/* Environment, paged. */
	f.after = NULL;
	f.environment = "prod";
	f.limit = 2;
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-a svc-c ");
	assert_true(more);
	f.after = "svc-c";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-d ");
	assert_false(more);
	/* Environments are matched ignoring case. */
	f.after = NULL;
	f.environment = "PROD";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-a svc-c ");
	f.environment = "nowhere";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "");

	/* Certificate, alone and with environment. */
	f.environment = NULL;
	f.certificate = "lc";
	f.limit = 10;
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-c svc-e ");
	f.environment = "staging";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-e ");
	f.environment = NULL;
	f.certificate = "other";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "svc-a ");
	f.certificate = "nope";
	assert_string_equal(svc_names(store, &f, buf, sizeof(buf), &more), "");

	/* The items are whole records. */
	f.certificate = NULL;
	f.limit = 1000;
	assert_int_equal(cv_store_service_list(store, &f, &page), 0);
	assert_int_equal(page->n, 5);
	assert_string_equal(page->items[0]->cert_name, "other");
	assert_string_equal(page->items[1]->cert_name, "");
	assert_string_equal(page->items[2]->cert_name, "lc");
	assert_int_equal(page->items[2]->cert_version, 1);
	assert_string_equal(page->items[2]->environment, "prod");
	assert_strings(page->items[3]->domains, page->items[3]->n_domains, sd);
	cv_store_service_page_free(page);
	page = NULL;

	f.limit = 0;
	assert_int_equal(cv_store_service_list(store, &f, &page), CV_ERR_BAD_REQUEST);
	f.limit = 1001;
	assert_int_equal(cv_store_service_list(store, &f, &page), CV_ERR_BAD_REQUEST);
	assert_null(page);
}

static void test_bind_unbind(void **state)
{
	static const char *const cd[] = { "example.com", "*.example.com", NULL };
	static const char *const cd2[] = { "*.example.com", "example.com", "example.org", NULL };
	static const char *const sd[] = { "www.example.com", "example.com", "api.example.com",
					  NULL };
	static const char *const bad[] = { "www.example.com", "a.b.example.com", "example.org",
					   "*.example.com", "example.com", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *pending = make_rec("pend", NOW - DAY, NOW + DAY, cd);
	struct cv_cert_record *cert = make_rec("main", NOW - DAY, NOW + 90 * DAY, cd);
	struct cv_service_record *svc;
	struct cv_conflict c;
	int64_t gone;

	add_rec(store, cert);
	add(store, "alt", NOW - DAY, NOW + DAY, cd2);
	gone = add(store, "gone", NOW - DAY, NOW + DAY, cd);
	assert_int_equal(cv_store_cert_mark_deleting(store, gone, CV_JWK_ACTION_NONE, NULL, NULL), 0);
	assert_int_equal(cv_store_cert_insert_pending(store, pending, NULL), 0);
	assert_int_equal(put_svc(store, "web", "production", sd, NOW), 1);
	assert_int_equal(put_svc(store, "odd", "production", bad, NOW), 1);

	/* What is missing, named in detail: the service first. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "nope", "main", NOW, &c, NULL), CV_ERR_NOT_FOUND);
	assert_string_equal(c.detail, "service");
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "nope", "nocert", NOW, &c, NULL), CV_ERR_NOT_FOUND);
	assert_string_equal(c.detail, "service");
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "web", "nocert", NOW, &c, NULL), CV_ERR_NOT_FOUND);
	assert_string_equal(c.detail, "certificate");
	/* Only an active certificate: not one being imported or deleted. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "web", "pend", NOW, &c, NULL), CV_ERR_NOT_FOUND);
	assert_string_equal(c.detail, "certificate");
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "web", "gone", NOW, &c, NULL), CV_ERR_NOT_FOUND);
	assert_string_equal(c.detail, "certificate");
	/* No conflict to fill is fine too. */
	assert_int_equal(cv_store_service_bind(store, "web", "gone", NOW, NULL, NULL), CV_ERR_NOT_FOUND);

	/* Not covered: every domain the certificate misses, in the service's order ("*." covers
	 * one label, and a wildcard domain only by the same wildcard). */
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "odd", "main", NOW, &c, NULL),
			 CV_ERR_DOMAIN_NOT_COVERED);
	assert_string_equal(c.service, "odd");
	assert_string_equal(c.detail, "a.b.example.com, example.org");
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "odd", "alt", NOW, &c, NULL),
			 CV_ERR_DOMAIN_NOT_COVERED);
	assert_string_equal(c.service, "odd");
	assert_string_equal(c.detail, "a.b.example.com");
	svc = get_svc(store, "odd");
	assert_string_equal(svc->cert_name, "");
	assert_int_equal(svc->bound_at, 0);
	assert_int_equal(svc->updated_at, NOW);
	cv_store_service_free(svc);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM services WHERE cert_id IS NOT NULL"),
			 0);

	/* Bound: the service shows the certificate. */
	bind_svc(store, "web", "main", NOW + 5);
	svc = get_svc(store, "web");
	assert_string_equal(svc->cert_name, "main");
	assert_int_equal(svc->cert_version, 1);
	assert_string_equal(svc->cert_serial, cert->serial);
	assert_string_equal(svc->cert_sha256_fingerprint, cert->sha256_fingerprint);
	assert_int_equal(svc->cert_not_before, cert->not_before);
	assert_int_equal(svc->cert_not_after, cert->not_after);
	assert_int_equal(svc->bound_at, NOW + 5);
	assert_int_equal(svc->updated_at, NOW + 5);
	assert_int_equal(svc->created_at, NOW);
	cv_store_service_free(svc);
	/* Again to the same certificate: nothing changes, not even the times. */
	bind_svc(store, "web", "main", NOW + 9);
	svc = get_svc(store, "web");
	assert_string_equal(svc->cert_name, "main");
	assert_int_equal(svc->bound_at, NOW + 5);
	assert_int_equal(svc->updated_at, NOW + 5);
	cv_store_service_free(svc);
	/* To another certificate: a new bound_at; a refused one leaves the old binding. */
	bind_svc(store, "web", "alt", NOW + 12);
	svc = get_svc(store, "web");
	assert_string_equal(svc->cert_name, "alt");
	assert_int_equal(svc->bound_at, NOW + 12);
	cv_store_service_free(svc);
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "web", "gone", NOW + 13, &c, NULL),
			 CV_ERR_NOT_FOUND);
	svc = get_svc(store, "web");
	assert_string_equal(svc->cert_name, "alt");
	assert_int_equal(svc->bound_at, NOW + 12);
	cv_store_service_free(svc);

	/* Unbind. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_unbind(store, "nope", NOW + 20, &c, NULL), CV_ERR_NOT_FOUND);
	assert_string_equal(c.detail, "service");
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_unbind(store, "odd", NOW + 20, &c, NULL), CV_ERR_NOT_FOUND);
	assert_string_equal(c.detail, "certificate");
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_unbind(store, "web", NOW + 20, &c, NULL), 0);
	svc = get_svc(store, "web");
	assert_string_equal(svc->cert_name, "");
	assert_int_equal(svc->cert_version, 0);
	assert_int_equal(svc->bound_at, 0);
	assert_int_equal(svc->updated_at, NOW + 20);
	assert_strings(svc->domains, svc->n_domains, sd);
	cv_store_service_free(svc);
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_unbind(store, "web", NOW + 21, &c, NULL), CV_ERR_NOT_FOUND);
	assert_string_equal(c.detail, "certificate");
	assert_int_equal(cv_store_service_unbind(store, "web", NOW + 21, NULL, NULL), CV_ERR_NOT_FOUND);
	/* Bound anew after an unbind: a fresh bound_at. */
	bind_svc(store, "web", "main", NOW + 30);
	svc = get_svc(store, "web");
	assert_int_equal(svc->bound_at, NOW + 30);
	cv_store_service_free(svc);
	/* Removing a bound service ends its use. */
	assert_int_equal(cv_store_service_remove(store, "web", NULL), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM services WHERE cert_id IS NOT NULL"),
			 0);
	cv_store_cert_free(pending);
	cv_store_cert_free(cert);
}

static void test_not_covered_detail_is_cut(void **state)
{
	static const char *const cd[] = { "only.example", NULL };
	struct cv_store *store = *state;
	const char *doms[41];
	char names[40][32], want_start[128];
	struct cv_conflict c;
	size_t len;
	int i;

	add(store, "narrow", NOW - DAY, NOW + DAY, cd);
	for (i = 0; i < 40; i++) {
		snprintf(names[i], sizeof(names[i]), "host-%02d.other.test", i);
		doms[i] = names[i];
	}
	doms[40] = NULL;
	assert_int_equal(put_svc(store, "wide", "production", doms, NOW), 1);
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "wide", "narrow", NOW, &c, NULL),
			 CV_ERR_DOMAIN_NOT_COVERED);
	snprintf(want_start, sizeof(want_start), "%s, %s, ", names[0], names[1]);
	assert_memory_equal(c.detail, want_start, strlen(want_start));
	len = strlen(c.detail);
	assert_true(len < sizeof(c.detail));
	assert_string_equal(c.detail + len - 5, ", ...");
}

static void test_put_keeps_bound_service_covered(void **state)
{
	static const char *const cd[] = { "*.shop.example", NULL };
	static const char *const sd[] = { "www.shop.example", "api.shop.example", NULL };
	static const char *const ok[] = { "pay.shop.example", NULL };
	static const char *const bad[] = { "cdn.shop.example", "shop.example", "a.b.shop.example",
					   NULL };
	struct cv_store *store = *state;
	struct cv_service_record *svc, *got;
	struct cv_conflict c;
	int created = -1;

	add(store, "shop", NOW - DAY, NOW + DAY, cd);
	assert_int_equal(put_svc(store, "front", "production", sd, NOW), 1);
	bind_svc(store, "front", "shop", NOW + 1);

	svc = make_svc("front", "staging", "changed", bad);
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_put(store, svc, NOW + 5, &created, &c, NULL),
			 CV_ERR_DOMAIN_NOT_COVERED);
	assert_string_equal(c.service, "front");
	assert_string_equal(c.detail, "shop.example, a.b.shop.example");
	cv_store_service_free(svc);
	/* Nothing of the refused put was kept. */
	got = get_svc(store, "front");
	assert_strings(got->domains, got->n_domains, sd);
	assert_string_equal(got->environment, "production");
	assert_string_equal(got->description, "");
	assert_int_equal(got->updated_at, NOW + 1);
	assert_string_equal(got->cert_name, "shop");
	cv_store_service_free(got);

	/* Covered domains: the service changes and stays bound. */
	svc = make_svc("front", "staging", "changed", ok);
	assert_int_equal(cv_store_service_put(store, svc, NOW + 6, &created, &c, NULL), 0);
	assert_int_equal(created, 0);
	cv_store_service_free(svc);
	got = get_svc(store, "front");
	assert_strings(got->domains, got->n_domains, ok);
	assert_string_equal(got->environment, "staging");
	assert_string_equal(got->cert_name, "shop");
	assert_int_equal(got->bound_at, NOW + 1);
	cv_store_service_free(got);
	/* Unbound, anything goes. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_unbind(store, "front", NOW + 7, &c, NULL), 0);
	svc = make_svc("front", "staging", "changed", bad);
	assert_int_equal(cv_store_service_put(store, svc, NOW + 8, &created, &c, NULL), 0);
	cv_store_service_free(svc);
	got = get_svc(store, "front");
	assert_strings(got->domains, got->n_domains, bad);
	cv_store_service_free(got);
}

static void test_usage_in_get_list_counts(void **state)
{
	static const char *const shared_d[] = { "*.example.com", "example.com", NULL };
	static const char *const exact_d[] = { "api.example.com", NULL };
	static const char *const idle_d[] = { "idle.test", NULL };
	static const char *const deep_d[] = { "*.a.example.com", NULL };
	static const char *const zeta_d[] = { "a.example.com", "example.com", NULL };
	static const char *const alpha_d[] = { "b.example.com", "a.example.com", NULL };
	static const char *const mid_d[] = { "api.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_cert_filter f = filter_all(1000);
	struct cv_cert_page *page = NULL;
	struct cv_cert_record *rec;
	struct cv_cert_counts counts;
	struct cv_conflict c;
	char buf[256];

	add(store, "shared", NOW - DAY, NOW + 365 * DAY, shared_d);
	add(store, "exact", NOW - DAY, NOW + 365 * DAY, exact_d);
	add(store, "idle", NOW - DAY, NOW + 365 * DAY, idle_d);
	add(store, "deep", NOW - DAY, NOW + 365 * DAY, deep_d);
	assert_int_equal(put_svc(store, "zeta", "production", zeta_d, NOW), 1);
	assert_int_equal(put_svc(store, "alpha", "staging", alpha_d, NOW), 1);
	assert_int_equal(put_svc(store, "mid", "production", mid_d, NOW), 1);
	assert_int_equal(put_svc(store, "free", "production", mid_d, NOW), 1);
	bind_svc(store, "zeta", "shared", NOW);
	bind_svc(store, "alpha", "shared", NOW);
	bind_svc(store, "mid", "exact", NOW);

	/* get: the services in name order, with environment and domains. */
	rec = get_cert(store, "shared");
	assert_int_equal(rec->n_used_by, 2);
	assert_string_equal(rec->used_by[0].service, "alpha");
	assert_string_equal(rec->used_by[0].environment, "staging");
	assert_strings(rec->used_by[0].domains, rec->used_by[0].n_domains, alpha_d);
	assert_string_equal(rec->used_by[1].service, "zeta");
	assert_string_equal(rec->used_by[1].environment, "production");
	assert_strings(rec->used_by[1].domains, rec->used_by[1].n_domains, zeta_d);
	/* Each (service, domain) pair: a.example.com is in both and counts twice. */
	assert_int_equal(rec->custom_domains, 4);
	cv_store_cert_free(rec);
	rec = get_cert(store, "exact");
	assert_int_equal(rec->n_used_by, 1);
	assert_string_equal(rec->used_by[0].service, "mid");
	assert_int_equal(rec->custom_domains, 1);
	cv_store_cert_free(rec);
	rec = get_cert(store, "idle");
	assert_int_equal(rec->n_used_by, 0);
	assert_int_equal(rec->custom_domains, 0);
	cv_store_cert_free(rec);

	/* list: the same services, without their domains. */
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_int_equal(page->n, 4);
	assert_string_equal(page->items[3]->name, "shared");
	assert_int_equal(page->items[3]->n_used_by, 2);
	assert_string_equal(page->items[3]->used_by[0].service, "alpha");
	assert_string_equal(page->items[3]->used_by[0].environment, "staging");
	assert_int_equal(page->items[3]->used_by[0].n_domains, 0);
	assert_null(page->items[3]->used_by[0].domains);
	assert_string_equal(page->items[3]->used_by[1].service, "zeta");
	assert_int_equal(page->items[3]->custom_domains, 4);
	assert_string_equal(page->items[1]->name, "exact");
	assert_int_equal(page->items[1]->n_used_by, 1);
	assert_int_equal(page->items[2]->n_used_by, 0);
	cv_store_cert_page_free(page);
	page = NULL;

	/* in_use. */
	f.in_use = 1;
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "exact shared ");
	f.in_use = 0;
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "deep idle ");
	f.in_use = 1;
	f.limit = 1;
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_int_equal(page->n, 1);
	assert_string_equal(page->items[0]->name, "exact");
	assert_true(page->has_more);
	cv_store_cert_page_free(page);
	page = NULL;

	/* domain: exact, and through the wildcard that covers it. */
	f = filter_all(1000);
	f.domain = "api.example.com";
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "exact ");
	f.domain_wildcard = "*.example.com";
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "exact shared ");
	f.limit = 1;
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "exact shared ");
	f.limit = 1000;
	f.in_use = 0;
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "");
	f.in_use = -1;
	f.domain = "example.com";
	f.domain_wildcard = NULL;
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "shared ");
	/* "*.example.com" does not cover two labels more. */
	f.domain = "x.a.example.com";
	f.domain_wildcard = "*.a.example.com";
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "deep ");
	f.domain = "nothing.test";
	f.domain_wildcard = NULL;
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "");

	/* counts: certificates in use, not services. */
	assert_int_equal(cv_store_cert_count(store, NOW, SOON, &counts), 0);
	assert_int_equal(counts.total, 4);
	assert_int_equal(counts.in_use, 2);

	/* Usage follows unbind and remove. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_unbind(store, "mid", NOW, &c, NULL), 0);
	assert_int_equal(cv_store_service_remove(store, "zeta", NULL), 0);
	rec = get_cert(store, "shared");
	assert_int_equal(rec->n_used_by, 1);
	assert_string_equal(rec->used_by[0].service, "alpha");
	assert_int_equal(rec->custom_domains, 2);
	cv_store_cert_free(rec);
	rec = get_cert(store, "exact");
	assert_int_equal(rec->n_used_by, 0);
	assert_int_equal(rec->custom_domains, 0);
	cv_store_cert_free(rec);
	assert_int_equal(cv_store_cert_count(store, NOW, SOON, &counts), 0);
	assert_int_equal(counts.in_use, 1);
	f = filter_all(1000);
	f.in_use = 0;
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "deep exact idle ");
}

static void test_delete_refused_while_in_use(void **state)
{
	static const char *const cd[] = { "*.busy.test", NULL };
	static const char *const sd[] = { "www.busy.test", NULL };
	static const char *const nd[] = { "*.busy.test", "busy.test", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *next = make_next("busy-v2", nd);
	struct cv_cert_version *versions = NULL;
	struct cv_supersede req;
	struct cv_conflict c;
	struct cv_cert_record *rec;
	char sql[128];
	size_t n = 0;
	int64_t id;

	id = add(store, "busy", NOW - DAY, NOW + DAY, cd);
	assert_int_equal(put_svc(store, "s2", "production", sd, NOW), 1);
	assert_int_equal(put_svc(store, "s1", "staging", sd, NOW), 1);
	bind_svc(store, "s2", "busy", NOW);
	bind_svc(store, "s1", "busy", NOW);

	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_cert_mark_deleting(store, id, CV_JWK_ACTION_NONE, &c, NULL),
			 CV_ERR_IN_USE);
	assert_string_equal(c.detail, "s1, s2");
	assert_int_equal(cv_store_cert_mark_deleting(store, id, CV_JWK_ACTION_DELETE, NULL, NULL),
			 CV_ERR_IN_USE);
	/* Still whole and active. */
	rec = get_cert(store, "busy");
	assert_int_equal(rec->n_used_by, 2);
	cv_store_cert_free(rec);
	/* Nor can the row go behind the services' back. */
	assert_int_equal(cv_store_cert_remove(store, id), CV_ERR_DB);
	rec = get_cert(store, "busy");
	cv_store_cert_free(rec);

	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_unbind(store, "s1", NOW, &c, NULL), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_cert_mark_deleting(store, id, CV_JWK_ACTION_NONE, &c, NULL),
			 CV_ERR_IN_USE);
	assert_string_equal(c.detail, "s2");

	/* A version in the history, then the last user goes: the delete goes through. */
	req = supersede_req(CV_END_RENEWED, id, 1, next, NOW + 10);
	superseded(store, &req);
	assert_int_equal(cv_store_service_remove(store, "s2", NULL), 0);
	assert_int_equal(cv_store_cert_mark_deleting(store, id, CV_JWK_ACTION_NONE, &c, NULL), 0);
	assert_int_equal(cv_store_cert_get(store, "busy", &rec), CV_ERR_NOT_FOUND);
	/* Marked: nothing binds to it any more. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "s1", "busy", NOW, &c, NULL), CV_ERR_NOT_FOUND);
	assert_string_equal(c.detail, "certificate");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM certificate_versions WHERE cert_id = %lld",
		 (long long)id);
	assert_int_equal(raw_int(path, sql), 1);
	assert_int_equal(cv_store_cert_remove(store, id), 0);
	assert_int_equal(raw_int(path, sql), 0);
	assert_int_equal(cv_store_cert_versions(store, id, &versions, &n), CV_ERR_NOT_FOUND);
	cv_store_cert_free(next);
}

static void test_in_use_detail_is_cut(void **state)
{
	static const char *const cd[] = { "*.many.test", NULL };
	static const char *const sd[] = { "www.many.test", NULL };
	struct cv_store *store = *state;
	struct cv_conflict c;
	char name[65];
	size_t len;
	int64_t id;
	int i;

	id = add(store, "many", NOW - DAY, NOW + DAY, cd);
	for (i = 0; i < 30; i++) {
		snprintf(name, sizeof(name), "service-with-a-long-name-%02d", i);
		assert_int_equal(put_svc(store, name, "production", sd, NOW), 1);
		bind_svc(store, name, "many", NOW);
	}
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_cert_mark_deleting(store, id, CV_JWK_ACTION_NONE, &c, NULL),
			 CV_ERR_IN_USE);
	assert_memory_equal(c.detail, "service-with-a-long-name-00, service-with-a-long-name-01",
			    strlen("service-with-a-long-name-00, service-with-a-long-name-01"));
	len = strlen(c.detail);
	assert_true(len < sizeof(c.detail));
	assert_string_equal(c.detail + len - 5, ", ...");
}

static void test_supersede_refusals(void **state)
{
	static const char *const cd[] = { "web.example.com", "*.web.example.com", NULL };
	static const char *const front_d[] = { "web.example.com", "a.web.example.com", NULL };
	static const char *const back_d[] = { "web.example.com", "b.web.example.com", NULL };
	static const char *const lone_d[] = { "lone.example.com", NULL };
	static const char *const part_d[] = { "web.example.com", "a.web.example.com", NULL };
	static const char *const none_d[] = { "other.example.com", NULL };
	static const enum cv_version_end kinds[] = { CV_END_RENEWED, CV_END_REPLACED };
	struct cv_store *store = *state;
	struct cv_cert_record *web = make_rec("web", NOW - DAY, NOW + 90 * DAY, cd);
	struct cv_cert_record *pending = make_rec("pend", NOW - DAY, NOW + DAY, cd);
	struct cv_cert_record *next = make_next("web-next", cd);
	struct cv_cert_record *lone_next = make_next("lone-next", lone_d);
	struct cv_supersede req;
	struct cv_conflict c;
	int64_t id, lone, gone;
	size_t k;

	id = add_rec(store, web);
	lone = add(store, "lone", NOW - DAY, NOW + DAY, lone_d);
	gone = add(store, "gone", NOW - DAY, NOW + DAY, cd);
	assert_int_equal(cv_store_cert_mark_deleting(store, gone, CV_JWK_ACTION_NONE, NULL, NULL), 0);
	assert_int_equal(cv_store_cert_insert_pending(store, pending, NULL), 0);
	assert_int_equal(put_svc(store, "front", "production", front_d, NOW), 1);
	assert_int_equal(put_svc(store, "back", "production", back_d, NOW), 1);
	bind_svc(store, "front", "web", NOW);
	bind_svc(store, "back", "web", NOW);
	/* The caller journals the new key first; a refused commit leaves that to the caller. */
	assert_int_equal(cv_store_key_journal_add(store, next->key_id, id, NOW), 0);

	for (k = 0; k < 2; k++) {
		/* Not an active certificate. */
		req = supersede_req(kinds[k], 999999, 1, next, NOW + 10);
		refused(store, &req, CV_ERR_NOT_FOUND);
		req = supersede_req(kinds[k], pending->id, 1, next, NOW + 10);
		refused(store, &req, CV_ERR_NOT_FOUND);
		req = supersede_req(kinds[k], gone, 1, next, NOW + 10);
		refused(store, &req, CV_ERR_NOT_FOUND);

		/* Not the current version: the conflict names the current one. */
		req = supersede_req(kinds[k], id, 0, next, NOW + 10);
		c = refused(store, &req, CV_ERR_ALREADY_RENEWED);
		assert_int_equal(c.version, 1);
		req = supersede_req(kinds[k], id, 2, next, NOW + 10);
		c = refused(store, &req, CV_ERR_ALREADY_RENEWED);
		assert_int_equal(c.version, 1);

		/* The current certificate again. */
		snprintf(next->sha256_fingerprint, sizeof(next->sha256_fingerprint), "%s",
			 web->sha256_fingerprint);
		req = supersede_req(kinds[k], id, 1, next, NOW + 10);
		c = refused(store, &req, CV_ERR_SAME_CERTIFICATE);
		assert_int_equal(c.version, 1);
		/* A stale version is told first. */
		req = supersede_req(kinds[k], id, 3, next, NOW + 10);
		c = refused(store, &req, CV_ERR_ALREADY_RENEWED);
		assert_int_equal(c.version, 1);
		/* The same certificate is told before coverage. */
		next->domains[1][0] = 'x';
		req = supersede_req(kinds[k], id, 1, next, NOW + 10);
		c = refused(store, &req, CV_ERR_SAME_CERTIFICATE);
		assert_int_equal(c.version, 1);
		next->domains[1][0] = '*';
		snprintf(next->sha256_fingerprint, sizeof(next->sha256_fingerprint),
			 "AB:CD:EF:web-next");

		/* Coverage of every service using it: every one not covered, in name order,
		 * each with every domain it misses; the first named as the service. */
		next->domains[1][0] = 'x'; /* "x.web.example.com": back and front lose one */
		req = supersede_req(kinds[k], id, 1, next, NOW + 10);
		c = refused(store, &req, CV_ERR_DOMAIN_NOT_COVERED);
		assert_string_equal(c.service, "back");
		assert_string_equal(c.detail, "b.web.example.com (back); a.web.example.com (front)");
		next->domains[1][0] = '*';
	}
	assert_int_equal(rows_with_key("key_journal", next->key_id), 1);
	cv_store_cert_free(next);
	next = NULL;

	/* Front covered and back not; then neither: both reported, in name order. */
	for (k = 0; k < 2; k++) {
		struct cv_cert_record *part = make_next("part", part_d);
		struct cv_cert_record *none = make_next("none", none_d);

		req = supersede_req(kinds[k], id, 1, part, NOW + 10);
		c = refused(store, &req, CV_ERR_DOMAIN_NOT_COVERED);
		assert_string_equal(c.service, "back");
		assert_string_equal(c.detail, "b.web.example.com (back)");
		req = supersede_req(kinds[k], id, 1, none, NOW + 10);
		c = refused(store, &req, CV_ERR_DOMAIN_NOT_COVERED);
		assert_string_equal(c.service, "back");
		assert_int_equal(strncmp(c.detail, "web.example.com, b.web.example.com (back); ", 43),
				 0);
		assert_non_null(strstr(c.detail, " (front)"));
		cv_store_cert_free(part);
		cv_store_cert_free(none);
	}

	/* A renewal needs a service using the certificate; a replace does not. */
	req = supersede_req(CV_END_RENEWED, lone, 1, lone_next, NOW + 10);
	refused(store, &req, CV_ERR_NOT_IN_USE);
	req = supersede_req(CV_END_REPLACED, lone, 1, lone_next, NOW + 10);
	superseded(store, &req);
	/* Still not in use at version 2. */
	cv_store_cert_free(lone_next);
	lone_next = make_next("lone-next-2", lone_d);
	req = supersede_req(CV_END_RENEWED, lone, 2, lone_next, NOW + 20);
	refused(store, &req, CV_ERR_NOT_IN_USE);
	/* A stale version is told before that. */
	req = supersede_req(CV_END_RENEWED, lone, 1, lone_next, NOW + 20);
	c = refused(store, &req, CV_ERR_ALREADY_RENEWED);
	assert_int_equal(c.version, 2);

	cv_store_cert_free(web);
	cv_store_cert_free(pending);
	cv_store_cert_free(lone_next);
}

/* The order the header gives: a renewal of a certificate no service uses is NOT_IN_USE,
 * before the same-certificate check. */
static void test_supersede_not_in_use_before_same_certificate(void **state)
{
	static const char *const d[] = { "solo.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *solo = make_rec("solo", NOW - DAY, NOW + DAY, d);
	struct cv_cert_record *next = make_next("solo-next", d);
	struct cv_supersede req;
	int64_t id;

	id = add_rec(store, solo);
	/* The current certificate, renewed while unused. */
	snprintf(next->sha256_fingerprint, sizeof(next->sha256_fingerprint), "%s",
		 solo->sha256_fingerprint);
	req = supersede_req(CV_END_RENEWED, id, 1, next, NOW + 10);
	refused(store, &req, CV_ERR_NOT_IN_USE);
	/* An earlier version's certificate (v1's once a replace made v2), renewed while unused. */
	snprintf(next->sha256_fingerprint, sizeof(next->sha256_fingerprint), "AB:CD:EF:solo-next");
	req = supersede_req(CV_END_REPLACED, id, 1, next, NOW + 10);
	superseded(store, &req);
	cv_store_cert_free(next);
	next = make_next("solo-next-2", d);
	snprintf(next->sha256_fingerprint, sizeof(next->sha256_fingerprint), "%s",
		 solo->sha256_fingerprint);
	req = supersede_req(CV_END_RENEWED, id, 2, next, NOW + 20);
	refused(store, &req, CV_ERR_NOT_IN_USE);
	cv_store_cert_free(solo);
	cv_store_cert_free(next);
}

static void test_supersede_makes_next_current(void **state)
{
	static const char *const d1[] = { "web.example.com", "*.web.example.com", NULL };
	static const char *const d2[] = { "new.example.com", "web.example.com",
					  "a.web.example.com", "b.web.example.com", NULL };
	static const char *const d3[] = { "web.example.com", "*.web.example.com", NULL };
	static const char *const front_d[] = { "web.example.com", "a.web.example.com", NULL };
	static const char *const back_d[] = { "b.web.example.com", NULL };
	static const uint8_t other_key[CV_TOKEN_ID_LEN] = "another-key-0001";
	struct cv_store *store = *state;
	struct cv_cert_record *v1 = make_rec("web", NOW - DAY, NOW + 90 * DAY, d1);
	struct cv_cert_record *v2 = make_next("web-v2", d2);
	struct cv_cert_record *v3 = make_next("web-v3", d3);
	struct cv_cert_record *late = make_next("web-late", d3);
	struct cv_cert_record *rec;
	struct cv_service_record *svc;
	struct cv_cert_version *versions = NULL;
	struct cv_cert_filter f = filter_all(1000);
	struct cv_supersede req;
	struct cv_conflict c;
	char buf[128];
	size_t n = 0;
	int64_t id;

	id = add_rec(store, v1);
	assert_int_equal(put_svc(store, "front", "production", front_d, NOW), 1);
	assert_int_equal(put_svc(store, "back", "staging", back_d, NOW), 1);
	bind_svc(store, "front", "web", NOW + 1);
	bind_svc(store, "back", "web", NOW + 2);
	assert_int_equal(cv_store_key_journal_add(store, v2->key_id, id, NOW + 5), 0);
	assert_int_equal(cv_store_key_journal_add(store, other_key, id, NOW + 5), 0);

	req = supersede_req(CV_END_RENEWED, id, 1, v2, NOW + 10);
	superseded(store, &req);

	/* The certificate is v2's, under the same name, id, description and creation time. */
	rec = get_cert(store, "web");
	assert_int_equal(rec->id, id);
	assert_int_equal(rec->version, 2);
	assert_int_equal(rec->current_since, NOW + 10);
	assert_int_equal(rec->updated_at, NOW + 10);
	assert_int_equal(rec->created_at, v1->created_at);
	assert_string_equal(rec->description, v1->description);
	assert_string_equal(rec->subject, v2->subject);
	assert_string_equal(rec->issuer, v2->issuer);
	assert_string_equal(rec->serial, v2->serial);
	assert_string_equal(rec->sha256_fingerprint, v2->sha256_fingerprint);
	assert_string_equal(rec->key_description, v2->key_description);
	assert_string_equal(rec->primary_domain, "new.example.com");
	assert_int_equal(rec->not_before, v2->not_before);
	assert_int_equal(rec->not_after, v2->not_after);
	assert_memory_equal(rec->key_id, v2->key_id, sizeof(rec->key_id));
	assert_int_equal(rec->cert_der_len, v2->cert_der_len);
	assert_memory_equal(rec->cert_der, v2->cert_der, v2->cert_der_len);
	assert_string_equal(rec->chain_pem, v2->chain_pem);
	assert_strings(rec->domains, rec->n_domains, d2);
	assert_int_equal(rec->n_used_by, 2);
	cv_store_cert_free(rec);

	/* Every service using it uses v2 from the same moment, bound as before. */
	svc = get_svc(store, "front");
	assert_string_equal(svc->cert_name, "web");
	assert_int_equal(svc->cert_version, 2);
	assert_string_equal(svc->cert_serial, v2->serial);
	assert_string_equal(svc->cert_sha256_fingerprint, v2->sha256_fingerprint);
	assert_int_equal(svc->cert_not_before, v2->not_before);
	assert_int_equal(svc->cert_not_after, v2->not_after);
	assert_int_equal(svc->bound_at, NOW + 1);
	cv_store_service_free(svc);
	svc = get_svc(store, "back");
	assert_int_equal(svc->cert_version, 2);
	assert_string_equal(svc->cert_sha256_fingerprint, v2->sha256_fingerprint);
	assert_int_equal(svc->bound_at, NOW + 2);
	cv_store_service_free(svc);

	/* The old version is history, newest first. */
	assert_int_equal(cv_store_cert_versions(store, id, &versions, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(versions[0].version, 2);
	assert_int_equal(versions[0].ended_by, CV_END_NONE);
	assert_int_equal(versions[0].current_from, NOW + 10);
	assert_int_equal(versions[0].current_until, 0);
	assert_int_equal(versions[0].key_state, CV_KEY_IN_TOKEN);
	assert_string_equal(versions[0].sha256_fingerprint, v2->sha256_fingerprint);
	assert_memory_equal(versions[0].key_id, v2->key_id, CV_TOKEN_ID_LEN);
	assert_int_equal(versions[1].version, 1);
	assert_int_equal(versions[1].ended_by, CV_END_RENEWED);
	assert_int_equal(versions[1].current_from, v1->created_at);
	assert_int_equal(versions[1].current_until, NOW + 10);
	assert_int_equal(versions[1].key_state, CV_KEY_IN_TOKEN);
	assert_string_equal(versions[1].subject, v1->subject);
	assert_string_equal(versions[1].issuer, v1->issuer);
	assert_string_equal(versions[1].serial, v1->serial);
	assert_string_equal(versions[1].sha256_fingerprint, v1->sha256_fingerprint);
	assert_string_equal(versions[1].key_description, v1->key_description);
	assert_int_equal(versions[1].not_before, v1->not_before);
	assert_int_equal(versions[1].not_after, v1->not_after);
	assert_memory_equal(versions[1].key_id, v1->key_id, CV_TOKEN_ID_LEN);
	free(versions);
	versions = NULL;

	/* The journal row of the new key went with the commit; no other. */
	assert_int_equal(rows_with_key("key_journal", v2->key_id), 0);
	assert_int_equal(rows_with_key("key_journal", other_key), 1);

	/* Search and the domain filter see the new domains only. */
	f.domain = "new.example.com";
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "web ");
	f.domain = "x.web.example.com";
	f.domain_wildcard = "*.web.example.com";
	assert_string_equal(names_listed(store, f, buf, sizeof(buf)), "");
	assert_int_equal(raw_int(path, "SELECT count(*) FROM certificate_domains"), 4);

	/* The superseded version cannot be superseded again. */
	req = supersede_req(CV_END_RENEWED, id, 1, late, NOW + 11);
	c = refused(store, &req, CV_ERR_ALREADY_RENEWED);
	assert_int_equal(c.version, 2);
	req = supersede_req(CV_END_REPLACED, id, 1, late, NOW + 11);
	c = refused(store, &req, CV_ERR_ALREADY_RENEWED);
	assert_int_equal(c.version, 2);

	/* A replace that leaves the old key to be destroyed. */
	req = supersede_req(CV_END_REPLACED, id, 2, v3, NOW + 20);
	req.destroy_old_key = 1;
	superseded(store, &req);
	assert_int_equal(cv_store_cert_versions(store, id, &versions, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(versions[0].version, 3);
	assert_int_equal(versions[0].current_from, NOW + 20);
	assert_int_equal(versions[0].key_state, CV_KEY_IN_TOKEN);
	assert_int_equal(versions[1].version, 2);
	assert_int_equal(versions[1].ended_by, CV_END_REPLACED);
	assert_int_equal(versions[1].current_from, NOW + 10);
	assert_int_equal(versions[1].current_until, NOW + 20);
	assert_int_equal(versions[1].key_state, CV_KEY_DESTROYING);
	assert_memory_equal(versions[1].key_id, v2->key_id, CV_TOKEN_ID_LEN);
	assert_int_equal(versions[2].version, 1);
	assert_int_equal(versions[2].ended_by, CV_END_RENEWED);
	assert_int_equal(versions[2].key_state, CV_KEY_IN_TOKEN);
	free(versions);
	svc = get_svc(store, "back");
	assert_int_equal(svc->cert_version, 3);
	assert_string_equal(svc->cert_serial, v3->serial);
	cv_store_service_free(svc);
	/* The history is the certificate's, by id. */
	assert_int_equal(cv_store_cert_versions(store, id + 1000, &versions, &n), CV_ERR_NOT_FOUND);

	cv_store_cert_free(v1);
	cv_store_cert_free(v2);
	cv_store_cert_free(v3);
	cv_store_cert_free(late);
}

/* Same certificate: the current one for both kinds; for a renewal any earlier one too
 * (naming the latest version that had it), which a replace may go back to. */
static void test_supersede_same_certificate_history(void **state)
{
	static const char *const d[] = { "*.hist.example", NULL };
	static const char *const sd[] = { "www.hist.example", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *v1 = make_rec("hist", NOW - DAY, NOW + DAY, d);
	struct cv_cert_record *b = make_next("hist-b", d);
	struct cv_cert_record *again = make_next("hist-again", d);
	struct cv_cert_record *cur, *peer, *peer_next;
	struct cv_supersede req;
	struct cv_conflict c;
	int64_t id, peer_id;

	id = add_rec(store, v1);
	assert_int_equal(put_svc(store, "www", "production", sd, NOW), 1);
	bind_svc(store, "www", "hist", NOW);
	req = supersede_req(CV_END_RENEWED, id, 1, b, NOW + 10); /* v2 = b */
	superseded(store, &req);

	/* v1's certificate again, with a new key. */
	snprintf(again->sha256_fingerprint, sizeof(again->sha256_fingerprint), "%s",
		 v1->sha256_fingerprint);
	req = supersede_req(CV_END_RENEWED, id, 2, again, NOW + 20);
	c = refused(store, &req, CV_ERR_SAME_CERTIFICATE);
	assert_int_equal(c.version, 1);
	/* b's, the current one: both kinds refuse. */
	snprintf(again->sha256_fingerprint, sizeof(again->sha256_fingerprint), "%s",
		 b->sha256_fingerprint);
	c = refused(store, &req, CV_ERR_SAME_CERTIFICATE);
	assert_int_equal(c.version, 2);
	req.kind = CV_END_REPLACED;
	c = refused(store, &req, CV_ERR_SAME_CERTIFICATE);
	assert_int_equal(c.version, 2);
	/* A replace goes back to v1's certificate: v3. */
	snprintf(again->sha256_fingerprint, sizeof(again->sha256_fingerprint), "%s",
		 v1->sha256_fingerprint);
	superseded(store, &req);
	cur = get_cert(store, "hist");
	assert_int_equal(cur->version, 3);
	assert_string_equal(cur->sha256_fingerprint, v1->sha256_fingerprint);
	cv_store_cert_free(cur);
	/* Now that is the current one; b's is v2's. */
	cv_store_cert_free(again);
	again = make_next("hist-again-2", d);
	snprintf(again->sha256_fingerprint, sizeof(again->sha256_fingerprint), "%s",
		 v1->sha256_fingerprint);
	req = supersede_req(CV_END_RENEWED, id, 3, again, NOW + 30);
	c = refused(store, &req, CV_ERR_SAME_CERTIFICATE);
	assert_int_equal(c.version, 3);
	snprintf(again->sha256_fingerprint, sizeof(again->sha256_fingerprint), "%s",
		 b->sha256_fingerprint);
	c = refused(store, &req, CV_ERR_SAME_CERTIFICATE);
	assert_int_equal(c.version, 2);
	/* A fresh one renews (v4); then v1's certificate is named by its latest version, 3. */
	snprintf(again->sha256_fingerprint, sizeof(again->sha256_fingerprint), "FRESH");
	superseded(store, &req);
	cv_store_cert_free(again);
	again = make_next("hist-again-3", d);
	snprintf(again->sha256_fingerprint, sizeof(again->sha256_fingerprint), "%s",
		 v1->sha256_fingerprint);
	req = supersede_req(CV_END_RENEWED, id, 4, again, NOW + 40);
	c = refused(store, &req, CV_ERR_SAME_CERTIFICATE);
	assert_int_equal(c.version, 3);
	/* Another certificate's earlier fingerprint is no concern of this one. */
	peer = make_rec("peer", NOW - DAY, NOW + DAY, d);
	peer_next = make_next("peer-next", d);
	peer_id = add_rec(store, peer);
	req = supersede_req(CV_END_REPLACED, peer_id, 1, peer_next, NOW + 40);
	superseded(store, &req);
	snprintf(again->sha256_fingerprint, sizeof(again->sha256_fingerprint), "%s",
		 peer->sha256_fingerprint);
	req = supersede_req(CV_END_RENEWED, id, 4, again, NOW + 50);
	superseded(store, &req);
	cur = get_cert(store, "hist");
	assert_int_equal(cur->version, 5);
	cv_store_cert_free(cur);
	cv_store_cert_free(peer);
	cv_store_cert_free(peer_next);
	cv_store_cert_free(v1);
	cv_store_cert_free(b);
	cv_store_cert_free(again);
}

struct seen_keys {
	size_t n;
	uint8_t ids[8][CV_TOKEN_ID_LEN];
	int in_journal[8];
};

static int collect_keys(const uint8_t *key_id, int in_journal, void *arg)
{
	struct seen_keys *s = arg;

	if (s->n >= 8)
		return -1;
	memcpy(s->ids[s->n], key_id, CV_TOKEN_ID_LEN);
	s->in_journal[s->n] = in_journal;
	s->n++;
	return 0;
}

static struct seen_keys unsettled(struct cv_store *store)
{
	struct seen_keys s;

	memset(&s, 0, sizeof(s));
	assert_int_equal(cv_store_keys_unsettled_foreach(store, collect_keys, &s), 0);
	return s;
}

/* What the reconciler does, writing through the pool from inside the callback. */
static int settle_key(const uint8_t *key_id, int in_journal, void *arg)
{
	struct cv_store *store = arg;

	return in_journal ? cv_store_key_journal_remove(store, key_id)
			  : cv_store_version_key_destroyed(store, key_id);
}

static int stop_with_seven(const uint8_t *key_id, int in_journal, void *arg)
{
	int *calls = arg;

	(void)key_id;
	(void)in_journal;
	++*calls;
	return 7;
}

static void test_key_journal_and_unsettled_keys(void **state)
{
	static const char *const d[] = { "*.keys.example", NULL };
	static const uint8_t orphan[CV_TOKEN_ID_LEN] = "orphan-key-00001";
	static const uint8_t unknown[CV_TOKEN_ID_LEN] = "never-seen-key-1";
	struct cv_store *store = *state;
	struct cv_cert_record *v1 = make_rec("keys", NOW - DAY, NOW + DAY, d);
	struct cv_cert_record *v2 = make_next("keys-v2", d);
	struct cv_cert_record *v3 = make_next("keys-v3", d);
	struct cv_cert_version *versions = NULL;
	struct cv_supersede req;
	struct seen_keys s;
	size_t n = 0;
	int64_t id;
	int calls = 0;

	id = add_rec(store, v1);
	s = unsettled(store);
	assert_int_equal(s.n, 0);

	/* A journalled key that nothing holds: a crash left it. */
	assert_int_equal(cv_store_key_journal_add(store, orphan, id, NOW), 0);
	assert_true(cv_store_key_journal_add(store, orphan, id, NOW) < 0);
	assert_int_equal(rows_with_key("key_journal", orphan), 1);
	s = unsettled(store);
	assert_int_equal(s.n, 1);
	assert_memory_equal(s.ids[0], orphan, CV_TOKEN_ID_LEN);
	assert_int_equal(s.in_journal[0], 1);

	/* A journal row naming a key a certificate holds is dropped, not reported. */
	assert_int_equal(cv_store_key_journal_add(store, v1->key_id, id, NOW), 0);
	s = unsettled(store);
	assert_int_equal(s.n, 1);
	assert_memory_equal(s.ids[0], orphan, CV_TOKEN_ID_LEN);
	assert_int_equal(rows_with_key("key_journal", v1->key_id), 0);

	/* A superseded version kept in the token is not unsettled. */
	req = supersede_req(CV_END_REPLACED, id, 1, v2, NOW + 10);
	superseded(store, &req);
	s = unsettled(store);
	assert_int_equal(s.n, 1);
	/* One left 'destroying' is, after the journal's keys. */
	req = supersede_req(CV_END_REPLACED, id, 2, v3, NOW + 20);
	req.destroy_old_key = 1;
	superseded(store, &req);
	s = unsettled(store);
	assert_int_equal(s.n, 2);
	assert_memory_equal(s.ids[0], orphan, CV_TOKEN_ID_LEN);
	assert_int_equal(s.in_journal[0], 1);
	assert_memory_equal(s.ids[1], v2->key_id, CV_TOKEN_ID_LEN);
	assert_int_equal(s.in_journal[1], 0);
	/* A journal row naming a version's key is dropped too: reported once, as the version's. */
	assert_int_equal(cv_store_key_journal_add(store, v2->key_id, id, NOW), 0);
	assert_int_equal(cv_store_key_journal_add(store, v1->key_id, id, NOW), 0);
	s = unsettled(store);
	assert_int_equal(s.n, 2);
	assert_memory_equal(s.ids[1], v2->key_id, CV_TOKEN_ID_LEN);
	assert_int_equal(s.in_journal[1], 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM key_journal"), 1);

	/* fn's non-zero stops the walk and comes back. */
	assert_int_equal(cv_store_keys_unsettled_foreach(store, stop_with_seven, &calls), 7);
	assert_int_equal(calls, 1);

	/* The reconciler settles both through the pool; then nothing is left. */
	assert_int_equal(cv_store_keys_unsettled_foreach(store, settle_key, store), 0);
	s = unsettled(store);
	assert_int_equal(s.n, 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM key_journal"), 0);
	assert_int_equal(cv_store_cert_versions(store, id, &versions, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(versions[1].key_state, CV_KEY_DESTROYED);
	assert_int_equal(versions[2].key_state, CV_KEY_IN_TOKEN);
	free(versions);

	/* Unknown keys. */
	assert_int_equal(cv_store_key_journal_remove(store, orphan), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_key_journal_remove(store, unknown), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_version_key_destroyed(store, unknown), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_version_key_destroyed(store, v3->key_id), CV_ERR_NOT_FOUND);
	cv_store_cert_free(v1);
	cv_store_cert_free(v2);
	cv_store_cert_free(v3);
}

/* The ids a row still needs, for the start-up search of orphan keys: sorted, no repeats, a
 * version's key only until it is recorded destroyed, the journal's too. */
static void assert_needed(struct cv_store *store, const uint8_t *const *want, size_t n_want)
{
	uint8_t (*ids)[CV_TOKEN_ID_LEN] = NULL;
	size_t n = 99, i, j;

	assert_int_equal(cv_store_key_ids_needed(store, &ids, &n), 0);
	assert_int_equal(n, n_want);
	for (i = 0; i + 1 < n; i++)
		assert_true(memcmp(ids[i], ids[i + 1], CV_TOKEN_ID_LEN) < 0);
	for (j = 0; j < n_want; j++) {
		for (i = 0; i < n && memcmp(ids[i], want[j], CV_TOKEN_ID_LEN) != 0; i++)
			;
		assert_true(i < n);
	}
	free(ids);
}

static void test_key_ids_needed(void **state)
{
	static const char *const d[] = { "*.needed.example", NULL };
	static const uint8_t journal[CV_TOKEN_ID_LEN] = "journal-key-0001";
	struct cv_store *store = *state;
	struct cv_cert_record *v1 = make_rec("needed", NOW - DAY, NOW + DAY, d);
	struct cv_cert_record *v2 = make_next("needed-v2", d);
	struct cv_cert_record *v3 = make_next("needed-v3", d);
	struct cv_supersede req;
	int64_t id;

	assert_needed(store, NULL, 0);
	id = add_rec(store, v1);
	assert_needed(store, (const uint8_t *const[]){ v1->key_id }, 1);
	assert_int_equal(cv_store_key_journal_add(store, journal, id, NOW), 0);
	assert_needed(store, (const uint8_t *const[]){ v1->key_id, journal }, 2);
	/* Superseded and kept, then superseded and being destroyed: both still needed. */
	req = supersede_req(CV_END_REPLACED, id, 1, v2, NOW + 10);
	superseded(store, &req);
	req = supersede_req(CV_END_REPLACED, id, 2, v3, NOW + 20);
	req.destroy_old_key = 1;
	superseded(store, &req);
	assert_needed(store, (const uint8_t *const[]){ v1->key_id, v2->key_id, v3->key_id,
						       journal }, 4);
	/* Recorded destroyed: a key object with that id would be an orphan. */
	assert_int_equal(cv_store_version_key_destroyed(store, v2->key_id), 0);
	assert_needed(store, (const uint8_t *const[]){ v1->key_id, v3->key_id, journal }, 3);
	cv_store_cert_free(v1);
	cv_store_cert_free(v2);
	cv_store_cert_free(v3);
}

struct racer {
	struct cv_store *store;
	pthread_barrier_t *start;
	struct cv_supersede req;
	struct cv_conflict conflict;
	int r;
};

static void *supersede_racer(void *arg)
{
	struct racer *x = arg;

	pthread_barrier_wait(x->start);
	x->r = cv_store_cert_supersede(x->store, &x->req, &x->conflict);
	return NULL;
}

static void test_supersede_race(void **state)
{
	static const char *const d[] = { "*.race.example", NULL };
	static const char *const sd[] = { "www.race.example", NULL };
	enum { ROUNDS = 25 };
	struct cv_store *store = *state;
	struct cv_cert_record *next[2] = { NULL, NULL }, *cur;
	struct cv_cert_version *versions = NULL;
	enum cv_version_end winner_kind[ROUNDS + 1];
	pthread_barrier_t start;
	struct racer x[2];
	pthread_t t[2];
	char tag[32];
	size_t n = 0, i;
	int64_t id, version;
	int round, w;

	id = add(store, "race", NOW - DAY, NOW + DAY, d);
	assert_int_equal(put_svc(store, "www", "production", sd, NOW), 1);
	bind_svc(store, "www", "race", NOW);
	assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
	for (round = 0; round < ROUNDS; round++) {
		version = round + 1;
		for (i = 0; i < 2; i++) {
			snprintf(tag, sizeof(tag), "race-%d-%zu", round, i);
			next[i] = make_next(tag, d);
			memset(&x[i], 0, sizeof(x[i]));
			x[i].store = store;
			x[i].start = &start;
			/* One renews, the other replaces, the same version. */
			x[i].req = supersede_req(i == 0 ? CV_END_RENEWED : CV_END_REPLACED, id,
						 version, next[i], NOW + version);
		}
		for (i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&t[i], NULL, supersede_racer, &x[i]), 0);
		for (i = 0; i < 2; i++)
			assert_int_equal(pthread_join(t[i], NULL), 0);
		/* Exactly one wins; the other is told the version moved on. */
		assert_true((x[0].r == 0) != (x[1].r == 0));
		w = x[0].r == 0 ? 0 : 1;
		assert_int_equal(x[1 - w].r, CV_ERR_ALREADY_RENEWED);
		assert_int_equal(x[1 - w].conflict.version, version + 1);
		winner_kind[version] = x[w].req.kind;
		cur = get_cert(store, "race");
		assert_int_equal(cur->version, version + 1);
		assert_string_equal(cur->sha256_fingerprint, next[w]->sha256_fingerprint);
		assert_memory_equal(cur->key_id, next[w]->key_id, CV_TOKEN_ID_LEN);
		cv_store_cert_free(cur);
		for (i = 0; i < 2; i++) {
			cv_store_cert_free(next[i]);
			next[i] = NULL;
		}
	}
	assert_int_equal(pthread_barrier_destroy(&start), 0);
	/* One version per round, each ended the way its winner asked. */
	assert_int_equal(cv_store_cert_versions(store, id, &versions, &n), 0);
	assert_int_equal(n, ROUNDS + 1);
	for (i = 1; i < n; i++) {
		assert_int_equal(versions[i].version, (int64_t)(n - i));
		assert_int_equal(versions[i].ended_by, winner_kind[n - i]);
	}
	free(versions);
}

/* Every combination of the list's filters is its own SQL text, more of them than a
 * connection keeps prepared: going round them twice, each gives what it gave the first time
 * (statements evicted and prepared again, cached ones reset with no stale binding). */
static void test_statement_cache_many_texts(void **state)
{
	static const char *const d1[] = { "one.example.com", NULL };
	static const char *const d2[] = { "two.example.org", "www.two.example.org", NULL };
	struct cv_store *store = *state;
	struct cv_cert_filter f;
	struct cv_cert_page *page = NULL;
	size_t first[2 * 5 * 3 * 2], n = 0, i;
	int round, status, in_use, q, after;

	add(store, "alpha", NOW - DAY, NOW + 365 * DAY, d1);
	add(store, "beta", NOW - DAY, NOW + 10 * DAY, d2);
	add(store, "gamma", NOW - 2 * DAY, NOW - DAY, d1);
	add(store, "delta", NOW + DAY, NOW + 365 * DAY, d2);
	assert_int_equal(put_svc(store, "web", "production", d1, NOW), 1);
	bind_svc(store, "web", "alpha", NOW);
	for (round = 0; round < 2; round++) {
		n = 0;
		for (after = 0; after < 2; after++)
			for (status = -1; status < 4; status++)
				for (in_use = -1; in_use < 2; in_use++)
					for (q = 0; q < 2; q++) {
						f = filter_all(10);
						f.after = after ? "alpha" : NULL;
						f.has_status = status >= 0;
						f.status = status >= 0 ? (enum cv_status)status
								       : CV_STATUS_VALID;
						f.in_use = in_use;
						f.q = q ? "two" : NULL;
						assert_int_equal(cv_store_cert_list(store, &f, &page),
								 0);
						if (round == 0)
							first[n] = page->n;
						else
							assert_int_equal(page->n, first[n]);
						for (i = 0; i < page->n; i++)
							if (strcmp(page->items[i]->name, "alpha") == 0)
								assert_int_equal(
									page->items[i]->n_used_by, 1);
						n++;
						cv_store_cert_page_free(page);
						page = NULL;
					}
	}
	assert_true(n > 32);
	/* Spot checks of what the first round found. */
	f = filter_all(10);
	assert_int_equal(list_count(store, f), 4);
	f.in_use = 1;
	assert_int_equal(list_count(store, f), 1);
	f = filter_all(10);
	f.q = "two";
	assert_int_equal(list_count(store, f), 2);
}

static struct cv_jwk_record make_jwk(const char *kid, int64_t cert_id, const char *cert_name)
{
	struct cv_jwk_record rec;

	memset(&rec, 0, sizeof(rec));
	snprintf(rec.kid, sizeof(rec.kid), "%s", kid);
	rec.cert_id = cert_id;
	snprintf(rec.cert_name, sizeof(rec.cert_name), "%s", cert_name);
	rec.cert_version = 1;
	snprintf(rec.use, sizeof(rec.use), "sig");
	snprintf(rec.alg, sizeof(rec.alg), "ES256");
	rec.jwk = (char *)"{\"kty\":\"EC\"}";
	rec.state = CV_JWK_ACTIVE;
	rec.created_at = rec.updated_at = NOW;
	return rec;
}

/* A generation once nothing is moving it any more. On PostgreSQL a write of this process
 * moves it as the write returns and again when the database's notification of that commit
 * arrives (pgwatch.c), which is later: before asserting that some other write leaves it
 * alone, that second move must have happened. */
static uint64_t settled(struct cv_store *store, uint64_t (*gen)(struct cv_store *))
{
	uint64_t was = gen(store), now;
	int i;

	for (i = 0; i < 40; i++) {
		usleep(50 * 1000);
		now = gen(store);
		if (now == was)
			return now;
		was = now;
	}
	fail_msg("the generation kept moving for 2 s with nothing written");
	return 0;
}

/* The JWK generation moves by the time a write that changed a JWK returns, and only then:
 * what the JWKS cache of the vault relies on. */
static void test_jwks_generation(void **state)
{
	static const char *const d[] = { "jwk.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_jwk_record a, b, *recs = NULL;
	struct cv_cert_record *rec;
	struct cv_conflict c;
	size_t n = 0;
	uint64_t g;
	int64_t id;

	id = add(store, "signer", NOW - DAY, NOW + 365 * DAY, d);
	g = cv_store_jwks_generation(store);
	a = make_jwk("kid-a", id, "signer");
	b = make_jwk("kid-b", id, "signer");
	assert_int_equal(cv_store_jwk_insert(store, &a, NULL), 0);
	assert_true(cv_store_jwks_generation(store) > g);
	g = cv_store_jwks_generation(store);
	assert_int_equal(cv_store_jwk_insert(store, &b, NULL), 0);
	assert_true(cv_store_jwks_generation(store) > g);

	/* Reads, and writes that touch no JWK, leave it. */
	g = settled(store, cv_store_jwks_generation);
	assert_int_equal(cv_store_jwk_list(store, 0, &recs, &n), 0);
	assert_int_equal(n, 2);
	cv_store_jwks_free(recs, n);
	rec = get_cert(store, "signer");
	cv_store_cert_free(rec);
	assert_int_equal(cv_store_cert_set_description(store, "signer", "d", NOW, NULL), 0);
	add(store, "other", NOW - DAY, NOW + 365 * DAY, d);
	assert_int_equal(cv_store_jwks_generation(store), g);
	/* A refused insert changed nothing, and need not move it. */
	assert_int_equal(cv_store_jwk_insert(store, &a, NULL), CV_ERR_NAME_TAKEN);

	g = cv_store_jwks_generation(store);
	assert_int_equal(cv_store_jwk_remove(store, "kid-a", NULL), 0);
	assert_true(cv_store_jwks_generation(store) > g);

	/* Deleting the certificate with its JWKs removes them: it moves. */
	g = cv_store_jwks_generation(store);
	assert_int_equal(cv_store_cert_mark_deleting(store, id, CV_JWK_ACTION_DELETE, &c, NULL), 0);
	assert_int_equal(cv_store_cert_remove(store, id), 0);
	assert_true(cv_store_jwks_generation(store) > g);
	assert_int_equal(cv_store_jwk_list(store, 0, &recs, &n), 0);
	assert_int_equal(n, 0);
	cv_store_jwks_free(recs, n);
}

/* The token generation moves with each token written by this store (made, revoked, its use
 * noted), and only then: what the vault's copies of tokens rely on to see a revocation. */
static void test_tokens_generation(void **state)
{
	struct cv_store *store = *state;
	struct cv_api_token t;
	uint64_t g;

	memset(&t, 0, sizeof(t));
	snprintf(t.id, sizeof(t.id), "0123456789abcdef");
	snprintf(t.name, sizeof(t.name), "gen");
	t.role = CV_ROLE_OPERATOR;
	t.created_at = NOW;
	g = settled(store, cv_store_tokens_generation);
	assert_int_equal(cv_store_api_token_insert(store, &t, NULL), 0);
	assert_true(cv_store_tokens_generation(store) > g);
	g = settled(store, cv_store_tokens_generation);
	assert_int_equal(cv_store_api_token_get(store, t.id, &t), 0);
	add(store, "not-a-token", NOW - DAY, NOW + 365 * DAY, NULL);
	assert_int_equal(cv_store_tokens_generation(store), g);
	assert_int_equal(cv_store_api_token_seen(store, t.id, NOW, "192.0.2.1", 60), 0);
	assert_true(cv_store_tokens_generation(store) > g);
	/* Seen again within the minute: no row changes, nothing moves. */
	g = settled(store, cv_store_tokens_generation);
	assert_int_equal(cv_store_api_token_seen(store, t.id, NOW + 1, "192.0.2.1", 60), 0);
	assert_int_equal(settled(store, cv_store_tokens_generation), g);
	assert_int_equal(cv_store_api_token_revoke(store, t.id, NOW + 2, NULL), 0);
	assert_true(cv_store_tokens_generation(store) > g);
}

/* Runs sql as another node would (another connection) and fails unless gen moves within
 * half a second. */
static void other_writer_moves(struct cv_store *store, uint64_t (*gen)(struct cv_store *),
			       const char *sql)
{
	uint64_t was = settled(store, gen);

	raw_exec(path, sql);
	moves_within(store, gen, was, 0.5, sql);
}

/* What another node writes moves this one's generations: the one of certificates on any
 * row a list or details show, the JWKs' on a JWK, the tokens' on a token; on PostgreSQL through the notification the
 * commit sends, so at once (the listener's own round trip every second would be up to 1 s
 * late: half a second fails). Here "another node" is another connection writing straight to
 * the database. */
static void test_generations_follow_other_writers(void **state)
{
	static const char *const d[] = { "other.example.com", NULL };
	struct cv_store *store = *state;
	uint64_t jwks;
	int64_t id;
	char sql[160];

	/* SQLite: one process per file, which sees its own writes (test_jwks_generation). */
	if (!pg_mode)
		skip();
	id = add(store, "elsewhere", NOW - DAY, NOW + 365 * DAY, d);
	jwks = settled(store, cv_store_jwks_generation);
	snprintf(sql, sizeof(sql), "UPDATE certificates SET description = 'moved' WHERE id = %lld",
		 (long long)id);
	other_writer_moves(store, cv_store_certs_generation, sql);
	assert_int_equal(cv_store_jwks_generation(store), jwks);
	/* Tags are a table of their own: the trigger on it tells too. */
	snprintf(sql, sizeof(sql), "INSERT INTO certificate_tags (cert_id, key, value)"
		 " VALUES (%lld, 'team', 'x')", (long long)id);
	other_writer_moves(store, cv_store_certs_generation, sql);
	other_writer_moves(store, cv_store_tokens_generation,
			   "INSERT INTO api_tokens (id, name, role, secret_hash, created_at,"
			   " expires_at, revoked_at) VALUES ('00000000000000aa', 'elsewhere', 1,"
			   " x'0000000000000000000000000000000000000000000000000000000000000000',"
			   " 1, 0, 0)");
	other_writer_moves(store, cv_store_jwks_generation, "UPDATE jwks SET alg = alg");
}

/* A rename keeps the labels the keys were made with: the current key's, and a superseded
 * version's from before key_label was kept (''), which meant the name it had then. */
static void test_rename_keeps_key_labels(void **state)
{
	static const char *const d[] = { "rn.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_cert_edit edit = { 0 };
	struct cv_cert_version *versions = NULL;
	struct cv_cert_record *rec;
	struct cv_conflict c;
	size_t n = 0;
	int64_t id;

	id = add(store, "before", NOW - DAY, NOW + 365 * DAY, d);
	raw_exec(path, "INSERT INTO certificate_versions (cert_id, version, cert_der, chain_pem,"
		       " subject, issuer, serial, sha256_fingerprint, key_description, not_before,"
		       " not_after, key_id, key_state, current_from, current_until, ended_by)"
		       " SELECT id, 0, cert_der, '', subject, issuer, serial, 'OLD', key_description,"
		       " not_before, not_after, X'0102030405060708090A0B0C0D0E0F10', 0, 1, 2, 1"
		       " FROM certificates WHERE name = 'before'");
	raw_exec(path, "UPDATE certificates SET key_label = '' WHERE name = 'before'");
	edit.name = "after";
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_cert_edit(store, "before", &edit, NOW, &c, NULL, NULL, NULL,
					    NULL),
			 0);
	rec = get_cert(store, "after");
	assert_string_equal(rec->key_label, "before");
	cv_store_cert_free(rec);
	assert_int_equal(cv_store_cert_versions(store, id, &versions, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(versions[0].key_label, "before");
	assert_string_equal(versions[1].key_label, "before");
	free(versions);
	/* A name in use, in any state, is refused and changes nothing. */
	add(store, "taken", NOW - DAY, NOW + 365 * DAY, d);
	edit.name = "taken";
	assert_int_equal(cv_store_cert_edit(store, "after", &edit, NOW, &c, NULL, NULL, NULL, NULL),
			 CV_ERR_NAME_TAKEN);
	rec = get_cert(store, "after");
	cv_store_cert_free(rec);
}

/* The public JWKS: the active JWKs and those superseded within the retention, judged at the
 * now given; the document says when the next one leaves. */
static void test_jwks_published_retention(void **state)
{
	static const char *const d[] = { "ret.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_jwk_record a, b, *recs = NULL;
	size_t n = 0;
	int64_t id, next = 0;

	id = add(store, "ret", NOW - DAY, NOW + 365 * DAY, d);
	a = make_jwk("kid-old", id, "ret");
	b = make_jwk("kid-new", id, "ret");
	assert_int_equal(cv_store_jwk_insert(store, &a, NULL), 0);
	assert_int_equal(cv_store_jwk_insert(store, &b, NULL), 0);
	raw_exec(path, "UPDATE jwks SET state = 2, superseded_by = 'kid-new', superseded_at = "
		       "1700000100 WHERE kid = 'kid-old'");
	/* Within the day after: both, and the old one leaves at 1700000100 + 86400. */
	assert_int_equal(cv_store_jwk_published(store, NOW + 200, DAY, &recs, &n, &next), 0);
	assert_int_equal(n, 2);
	assert_int_equal(next, 1700000100 + DAY);
	cv_store_jwks_free(recs, n);
	assert_int_equal(cv_store_jwk_published(store, 1700000100 + DAY - 1, DAY, &recs, &n,
						&next),
			 0);
	assert_int_equal(n, 2);
	cv_store_jwks_free(recs, n);
	/* From then on: the active one alone, and nothing else leaves. */
	assert_int_equal(cv_store_jwk_published(store, 1700000100 + DAY, DAY, &recs, &n, &next),
			 0);
	assert_int_equal(n, 1);
	assert_string_equal(recs[0].kid, "kid-new");
	assert_int_equal(next, INT64_MAX);
	cv_store_jwks_free(recs, n);
	/* Retention 0: it left at once. */
	assert_int_equal(cv_store_jwk_published(store, 1700000100, 0, &recs, &n, &next), 0);
	assert_int_equal(n, 1);
	cv_store_jwks_free(recs, n);
}

/* The audit record goes with its change: each write that commits a client's change appends
 * the record in the change's own transaction, so when the record cannot be written the
 * change does not happen. A trigger on audit_log, made behind the store's back, plays the
 * disk that refuses the record. */

/* Every table a client's change writes, as one string (the audit trail apart). */
static char *state_digest(void)
{
#define STATE_ROWS                                                                         \
	" SELECT 'c' || id || ':' || name || ':' || state || ':' || version || ':'"         \
	" || sha256_fingerprint || ':' || description || ':' || updated_at"                 \
	" || ':' || jwks_on_delete AS x FROM certificates"                                  \
	" UNION ALL SELECT 'v' || cert_id || ':' || version || ':' || key_state"            \
	" FROM certificate_versions"                                                        \
	" UNION ALL SELECT 'd' || cert_id || ':' || position || ':' || domain"              \
	" FROM certificate_domains"                                                         \
	" UNION ALL SELECT 's' || name || ':' || environment || ':' || description"         \
	" || ':' || coalesce(CAST(cert_id AS TEXT), '-') || ':'"                             \
	" || coalesce(CAST(bound_at AS TEXT), '-')"                                          \
	" FROM services"                                                                    \
	" UNION ALL SELECT 'sd' || service_id || ':' || position || ':' || domain"          \
	" FROM service_domains"                                                             \
	" UNION ALL SELECT 'j' || kid || ':' || coalesce(CAST(cert_id AS TEXT), '-') || ':' || state" \
	" FROM jwks"                                                                        \
	" UNION ALL SELECT 't' || alias || ':' || sha256_fingerprint FROM truststore"
	return raw_text(path, PICK(
			"SELECT ifnull(group_concat(x, ';'), '') FROM (SELECT x FROM ("
			STATE_ROWS ") ORDER BY x)",
			"SELECT coalesce(string_agg(x, ';' ORDER BY x COLLATE \"C\"), '') FROM ("
			STATE_ROWS ") r"));
}

static struct cv_audit_entry audit_entry(const char *action, const char *target,
					 const char *fingerprints)
{
	struct cv_audit_entry e;

	memset(&e, 0, sizeof(e));
	e.at = NOW;
	snprintf(e.actor_id, sizeof(e.actor_id), "0123456789abcdef");
	snprintf(e.actor_name, sizeof(e.actor_name), "tester");
	snprintf(e.action, sizeof(e.action), "%s", action);
	snprintf(e.target, sizeof(e.target), "%s", target);
	e.ok = 1;
	snprintf(e.request_id, sizeof(e.request_id), "req-%s", target);
	snprintf(e.fingerprints, sizeof(e.fingerprints), "%s", fingerprints);
	return e;
}

/* The trail holds n records and verifies intact; the last one is want (unless NULL). */
static void assert_trail(struct cv_store *store, size_t n, const struct cv_audit_entry *want)
{
	struct cv_audit_filter f;
	struct cv_audit_record *recs = NULL;
	struct cv_audit_verdict verdict;
	const struct cv_audit_entry *got;
	size_t got_n = 0;

	memset(&f, 0, sizeof(f));
	f.limit = 1000;
	assert_int_equal(cv_store_audit_list(store, &f, &recs, &got_n), 0);
	assert_int_equal(got_n, n);
	if (want != NULL) {
		assert_true(n > 0);
		got = &recs[n - 1].e;
		assert_int_equal(recs[n - 1].seq, (int64_t)n);
		assert_int_equal(got->at, want->at);
		assert_string_equal(got->actor_id, want->actor_id);
		assert_string_equal(got->actor_name, want->actor_name);
		assert_string_equal(got->action, want->action);
		assert_string_equal(got->target, want->target);
		assert_int_equal(got->ok, want->ok);
		assert_string_equal(got->error, want->error);
		assert_string_equal(got->request_id, want->request_id);
		assert_string_equal(got->fingerprints, want->fingerprints);
	}
	free(recs);
	assert_int_equal(cv_store_audit_verify(store, &verdict), 0);
	assert_int_equal(verdict.records, (int64_t)n);
	assert_int_equal(verdict.first_bad, 0);
}

/* A change under test: calls the store with e and returns what it returned. */
typedef int (*audited_change_fn)(struct cv_store *store, const struct cv_audit_entry *e,
				 void *arg);

/* With audit inserts failing, change must fail with CV_ERR_DB and leave every table and the
 * trail as they were; with them working again, it must succeed, change something, and leave
 * e as the next record of an intact trail. */
static void assert_change_goes_with_record(struct cv_store *store, audited_change_fn change,
					   void *arg, const struct cv_audit_entry *e)
{
	size_t n = (size_t)raw_int(path, "SELECT count(*) FROM audit_log");
	char *before, *after;

	before = state_digest();
	raw_exec(path, PICK("CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log"
			    " BEGIN SELECT RAISE(ABORT, 'no room for the record'); END",
			    "CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS"
			    " $$BEGIN RAISE EXCEPTION 'no room for the record'; END$$;"
			    " CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log"
			    " FOR EACH ROW EXECUTE FUNCTION audit_fail()"));
	assert_int_equal(change(store, e, arg), CV_ERR_DB);
	after = state_digest();
	assert_string_equal(after, before);
	free(after);
	raw_exec(path, PICK("DROP TRIGGER audit_fail",
			    "DROP TRIGGER audit_fail ON audit_log; DROP FUNCTION audit_fail()"));
	assert_trail(store, n, NULL);

	assert_int_equal(change(store, e, arg), 0);
	after = state_digest();
	assert_string_not_equal(after, before);
	free(after);
	free(before);
	assert_trail(store, n + 1, e);
}

static int change_activate(struct cv_store *store, const struct cv_audit_entry *e, void *arg)
{
	return cv_store_cert_activate(store, *(const int64_t *)arg, e);
}

static void test_audit_import_activate(void **state)
{
	static const char *const d[] = { "imp.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *rec = make_rec("imp", NOW - DAY, NOW + 90 * DAY, d), *got = NULL;
	struct cv_audit_entry e;

	assert_int_equal(cv_store_cert_insert_pending(store, rec, NULL), 0);
	/* The pending row is no commit point: nothing recorded yet. */
	assert_trail(store, 0, NULL);
	e = audit_entry("certificate.import", "imp", rec->sha256_fingerprint);
	assert_change_goes_with_record(store, change_activate, &rec->id, &e);
	assert_int_equal(cv_store_cert_get(store, "imp", &got), 0);
	assert_int_equal(got->state, CV_CERT_ACTIVE);
	cv_store_cert_free(got);
	cv_store_cert_free(rec);
}

static int change_supersede(struct cv_store *store, const struct cv_audit_entry *e, void *arg)
{
	struct cv_supersede *req = arg;
	struct cv_conflict c;

	memset(&c, 0, sizeof(c));
	req->audit = e;
	return cv_store_cert_supersede(store, req, &c);
}

static void test_audit_supersede(void **state)
{
	static const char *const d[] = { "ren.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *next = make_next("ren-v2", d), *cur;
	struct cv_supersede req;
	struct cv_audit_entry e;
	char fps[200];
	int64_t id;

	id = add(store, "ren", NOW - DAY, NOW + 90 * DAY, d);
	put_svc(store, "web", "production", d, NOW);
	bind_svc(store, "web", "ren", NOW);
	cur = get_cert(store, "ren");
	snprintf(fps, sizeof(fps), "%s %s", cur->sha256_fingerprint, next->sha256_fingerprint);
	cv_store_cert_free(cur);
	req = supersede_req(CV_END_RENEWED, id, 1, next, NOW + 10);
	e = audit_entry("certificate.renew", "ren", fps);
	assert_change_goes_with_record(store, change_supersede, &req, &e);
	cur = get_cert(store, "ren");
	assert_int_equal(cur->version, 2);
	assert_string_equal(cur->sha256_fingerprint, next->sha256_fingerprint);
	cv_store_cert_free(cur);
	cv_store_cert_free(next);
}

static int change_mark_deleting(struct cv_store *store, const struct cv_audit_entry *e,
				void *arg)
{
	struct cv_conflict c;

	memset(&c, 0, sizeof(c));
	return cv_store_cert_mark_deleting(store, *(const int64_t *)arg, CV_JWK_ACTION_NONE, &c,
					   e);
}

static void test_audit_delete_mark(void **state)
{
	static const char *const d[] = { "del.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *rec = NULL;
	struct cv_audit_entry e;
	char fp[96];
	int64_t id;

	id = add(store, "del", NOW - DAY, NOW + 90 * DAY, d);
	rec = get_cert(store, "del");
	snprintf(fp, sizeof(fp), "%s", rec->sha256_fingerprint);
	cv_store_cert_free(rec);
	e = audit_entry("certificate.delete", "del", fp);
	assert_change_goes_with_record(store, change_mark_deleting, &id, &e);
	assert_int_equal(raw_int(path, "SELECT state FROM certificates WHERE name = 'del'"),
			 CV_CERT_DELETING);
	/* Finishing the delete (the vault, or the reconciler after a crash) adds no record. */
	assert_int_equal(cv_store_cert_remove(store, id), 0);
	assert_trail(store, 1, &e);
}

static int change_bind(struct cv_store *store, const struct cv_audit_entry *e, void *arg)
{
	struct cv_conflict c;

	(void)arg;
	memset(&c, 0, sizeof(c));
	return cv_store_service_bind(store, "shop", "shopcert", NOW + 5, &c, e);
}

static void test_audit_service_bind(void **state)
{
	static const char *const d[] = { "shop.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_service_record *svc;
	struct cv_audit_entry e;

	add(store, "shopcert", NOW - DAY, NOW + 90 * DAY, d);
	put_svc(store, "shop", "production", d, NOW);
	e = audit_entry("service.bind", "shop", "AB:CD:EF:shopcert");
	assert_change_goes_with_record(store, change_bind, NULL, &e);
	svc = get_svc(store, "shop");
	assert_string_equal(svc->cert_name, "shopcert");
	cv_store_service_free(svc);
}

static int change_trust_insert(struct cv_store *store, const struct cv_audit_entry *e,
			       void *arg)
{
	struct cv_conflict c;

	memset(&c, 0, sizeof(c));
	return cv_store_trust_insert(store, arg, 2, &c, e);
}

static void test_audit_trust_insert(void **state)
{
	struct cv_store *store = *state;
	struct cv_trust_record recs[2];
	struct cv_trust_record *got = NULL;
	struct cv_audit_entry e;
	unsigned char der[2][64];
	size_t n = 0, i;

	memset(recs, 0, sizeof(recs));
	for (i = 0; i < 2; i++) {
		memset(der[i], (int)(0x30 + i), sizeof(der[i]));
		recs[i].cert_der = der[i];
		recs[i].cert_der_len = sizeof(der[i]);
		snprintf(recs[i].alias, sizeof(recs[i].alias), "root-%zu", i + 1);
		snprintf(recs[i].subject, sizeof(recs[i].subject), "CN=Root %zu", i + 1);
		snprintf(recs[i].issuer, sizeof(recs[i].issuer), "CN=Root %zu", i + 1);
		snprintf(recs[i].serial, sizeof(recs[i].serial), "0%zu", i + 1);
		snprintf(recs[i].sha256_fingerprint, sizeof(recs[i].sha256_fingerprint),
			 "0%zu:AA:BB", i + 1);
		snprintf(recs[i].key_description, sizeof(recs[i].key_description), "RSA 4096");
		snprintf(recs[i].source, sizeof(recs[i].source), "upload");
		recs[i].not_before = NOW - DAY;
		recs[i].not_after = NOW + 3650 * DAY;
		recs[i].created_at = NOW;
	}
	e = audit_entry("truststore.add", "root-1", "01:AA:BB 02:AA:BB");
	assert_change_goes_with_record(store, change_trust_insert, recs, &e);
	assert_int_equal(cv_store_trust_get(store, NULL, &got, &n), 0);
	assert_int_equal(n, 2);
	cv_store_trust_free(got, n);
}

/* The other writes, each in turn on one database: the trail grows by one per change. */
struct other_change {
	const char *action;
	const char *target;
	audited_change_fn change;
};

static int change_describe(struct cv_store *store, const struct cv_audit_entry *e, void *arg)
{
	(void)arg;
	return cv_store_cert_set_description(store, "misc", "edited", NOW + 1, e);
}

static int change_service_put(struct cv_store *store, const struct cv_audit_entry *e,
			      void *arg)
{
	static const char *const d[] = { "misc.example.com", NULL };
	struct cv_service_record *svc = make_svc("api", "staging", "", d);
	struct cv_conflict c;
	int created = -1, r;

	(void)arg;
	memset(&c, 0, sizeof(c));
	r = cv_store_service_put(store, svc, NOW + 2, &created, &c, e);
	cv_store_service_free(svc);
	return r;
}

static int change_unbind(struct cv_store *store, const struct cv_audit_entry *e, void *arg)
{
	struct cv_conflict c;

	(void)arg;
	memset(&c, 0, sizeof(c));
	return cv_store_service_unbind(store, "api", NOW + 4, &c, e);
}

static int change_bind_api(struct cv_store *store, const struct cv_audit_entry *e, void *arg)
{
	struct cv_conflict c;

	(void)arg;
	memset(&c, 0, sizeof(c));
	return cv_store_service_bind(store, "api", "misc", NOW + 3, &c, e);
}

static int change_service_remove(struct cv_store *store, const struct cv_audit_entry *e,
				 void *arg)
{
	(void)arg;
	return cv_store_service_remove(store, "api", e);
}

static int change_jwk_insert(struct cv_store *store, const struct cv_audit_entry *e,
			     void *arg)
{
	struct cv_jwk_record rec = make_jwk("kid-misc", *(const int64_t *)arg, "misc");

	return cv_store_jwk_insert(store, &rec, e);
}

static int change_jwk_remove(struct cv_store *store, const struct cv_audit_entry *e,
			     void *arg)
{
	(void)arg;
	return cv_store_jwk_remove(store, "kid-misc", e);
}

static int change_trust_remove(struct cv_store *store, const struct cv_audit_entry *e,
			       void *arg)
{
	(void)arg;
	return cv_store_trust_remove(store, "ca", e);
}

static void test_audit_other_changes(void **state)
{
	static const char *const d[] = { "misc.example.com", NULL };
	static const struct other_change changes[] = {
		{ "certificate.edit", "misc", change_describe },
		{ "service.put", "api", change_service_put },
		{ "service.bind", "api", change_bind_api },
		{ "service.unbind", "api", change_unbind },
		{ "service.delete", "api", change_service_remove },
		{ "jwk.create", "kid-misc", change_jwk_insert },
		{ "jwk.delete", "kid-misc", change_jwk_remove },
		{ "truststore.delete", "ca", change_trust_remove },
	};
	struct cv_store *store = *state;
	struct cv_trust_record ca;
	struct cv_conflict c;
	struct cv_audit_entry e;
	unsigned char der[32] = { 0x30 };
	size_t i;
	int64_t id;

	id = add(store, "misc", NOW - DAY, NOW + 90 * DAY, d);
	memset(&ca, 0, sizeof(ca));
	snprintf(ca.alias, sizeof(ca.alias), "ca");
	ca.cert_der = der;
	ca.cert_der_len = sizeof(der);
	snprintf(ca.sha256_fingerprint, sizeof(ca.sha256_fingerprint), "CA:FE");
	snprintf(ca.source, sizeof(ca.source), "upload");
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_trust_insert(store, &ca, 1, &c, NULL), 0);
	for (i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		e = audit_entry(changes[i].action, changes[i].target, "");
		assert_change_goes_with_record(store, changes[i].change, &id, &e);
	}
}

/* A database from before environments were rows: its services named free-text
 * environments, two of them differing only in case. The migration makes one environment per
 * name ignoring case (the first spelling) and moves the services to its spelling. */
static void test_migrate_environments_from_v9(void **state)
{
	static const char *const d[] = { "m.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_environment_record *recs = NULL, *e = NULL;
	struct cv_service_record *svc;
	struct cv_errmsg err = { "" };
	size_t n = 0;
	SQLITE_ONLY();

	assert_int_equal(put_svc(store, "one", "production", d, NOW), 1);
	assert_int_equal(put_svc(store, "two", "staging", d, NOW), 1);
	assert_int_equal(put_svc(store, "three", "staging", d, NOW), 1);
	cv_store_free(store);
	*state = NULL;
	/* Back to schema 9 as it was: free text, no environment rows (the names step after it
	 * undone too, so that it runs again as the last). */
	raw_exec(path, "DROP INDEX api_tokens_name_nocase; DROP INDEX certificates_name_nocase;"
		       " DROP INDEX truststore_alias_nocase;"
		       " CREATE UNIQUE INDEX api_tokens_name ON api_tokens(name)"
		       " WHERE revoked_at = 0;"
		       " DROP TABLE certificate_environments; DROP TABLE environments;"
		       " ALTER TABLE certificates DROP COLUMN has_key;"
		       " DROP TABLE certificate_tags; ALTER TABLE audit_log DROP COLUMN changes;"
		       " ALTER TABLE jwks DROP COLUMN superseded_at;"
		       " DROP INDEX certificates_held_purge;"
		       " ALTER TABLE certificates DROP COLUMN held;"
		       " ALTER TABLE certificates DROP COLUMN deleted_at;"
		       " ALTER TABLE certificates DROP COLUMN purge_after;"
		       " ALTER TABLE certificates DROP COLUMN deleted_by;"
		       " ALTER TABLE certificates DROP COLUMN deleted_jwks;"
		       " DROP TABLE notification_attempts; DROP TABLE notification_outbox;"
		       " DROP TABLE certificate_notifications; DROP TABLE notification_channels;"
		       " DROP TABLE leases;"
		       " ALTER TABLE api_tokens DROP COLUMN scope;"
		       " ALTER TABLE api_tokens DROP COLUMN last_used_at;"
		       " ALTER TABLE api_tokens DROP COLUMN last_used_from;"
		       " ALTER TABLE certificates DROP COLUMN owner_node;"
		       " ALTER TABLE pending_certificates DROP COLUMN owner_node;"
		       " ALTER TABLE key_journal DROP COLUMN owner_node; DROP TABLE nodes;"
		       " ALTER TABLE audit_log DROP COLUMN link_key;"
		       " UPDATE services SET environment = 'Prod-EU' WHERE name = 'one';"
		       " UPDATE services SET environment = 'prod-eu' WHERE name = 'two';"
		       " UPDATE services SET environment = 'qa' WHERE name = 'three';"
		       " PRAGMA user_version = 9;");
	assert_int_equal(open_store(path, &store, &err), 0);
	*state = store;
	assert_int_equal(raw_int(path, "PRAGMA user_version"), 18);
	assert_int_equal(cv_store_environment_list(store, NULL, 100, &recs, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].name, "Prod-EU");
	assert_string_equal(recs[0].display_name, "Prod-EU");
	assert_int_equal(recs[0].n_services, 2);
	assert_string_equal(recs[1].name, "qa");
	assert_int_equal(recs[1].n_services, 1);
	cv_store_environments_free(recs, n);
	svc = get_svc(store, "two");
	assert_string_equal(svc->environment, "Prod-EU");
	cv_store_service_free(svc);
	assert_int_equal(cv_store_environment_get(store, "PROD-eu", &e), 0);
	assert_string_equal(e->name, "Prod-EU");
	cv_store_environment_free(e);
}

static void test_environments(void **state)
{
	static const char *const d[] = { "env.example.com", NULL };
	static char *const only_prod[] = { "PRODUCTION" };
	static char *const nowhere[] = { "nowhere" };
	struct cv_store *store = *state;
	struct cv_cert_record *rec = make_rec("envcert", NOW - DAY, NOW + 90 * DAY, d);
	struct cv_cert_record *pub = make_rec("pubcert", NOW - DAY, NOW + 90 * DAY, d);
	struct cv_cert_record *soon = make_rec("soon", NOW + DAY, NOW + 90 * DAY, d);
	struct cv_service_record *svc;
	struct cv_environment_record *e = NULL;
	struct cv_cert_edit edit = { 0 };
	struct cv_conflict c;
	char name[65];
	int created = -1;

	/* Names are unique ignoring case and keep the case they were made with. */
	assert_int_equal(cv_store_environment_put(store, "Acc-EU", "Acceptance EU", "eu", NOW,
						  &created, name, NULL),
			 0);
	assert_int_equal(created, 1);
	assert_int_equal(cv_store_environment_put(store, "acc-eu", "Acceptance (EU)", "", NOW + 1,
						  &created, name, NULL),
			 0);
	assert_int_equal(created, 0);
	assert_string_equal(name, "Acc-EU");
	assert_int_equal(cv_store_environment_get(store, "ACC-EU", &e), 0);
	assert_string_equal(e->display_name, "Acceptance (EU)");
	assert_int_equal(e->updated_at, NOW + 1);
	cv_store_environment_free(e);

	/* A service in an unknown environment is refused; a known one is spelt its way. */
	svc = make_svc("envsvc", "nowhere", "", d);
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_put(store, svc, NOW, &created, &c, NULL),
			 CV_ERR_UNKNOWN_ENVIRONMENT);
	snprintf(svc->environment, sizeof(svc->environment), "acc-eu");
	assert_int_equal(cv_store_service_put(store, svc, NOW, &created, &c, NULL), 0);
	cv_store_service_free(svc);
	svc = get_svc(store, "envsvc");
	assert_string_equal(svc->environment, "Acc-EU");
	cv_store_service_free(svc);

	/* A certificate for production only cannot serve in Acc-EU. */
	rec->n_environments = 1;
	rec->environments = calloc(1, sizeof(char *));
	rec->environments[0] = strdup("production");
	add_rec(store, rec);
	assert_int_equal(cv_store_service_bind(store, "envsvc", "envcert", NOW, &c, NULL),
			 CV_ERR_ENVIRONMENT_NOT_ALLOWED);
	assert_string_equal(c.detail, "Acc-EU");
	/* Allowed once the certificate names it (any case); then it cannot leave it. */
	edit.set_environments = 1;
	edit.n_environments = 1;
	edit.environments = (char *const[]){ "ACC-eu" };
	assert_int_equal(cv_store_cert_edit(store, "envcert", &edit, NOW, &c, NULL, NULL, NULL, NULL), 0);
	assert_int_equal(cv_store_service_bind(store, "envsvc", "envcert", NOW, &c, NULL), 0);
	edit.environments = only_prod;
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_cert_edit(store, "envcert", &edit, NOW, &c, NULL, NULL, NULL, NULL),
			 CV_ERR_ENVIRONMENT_NOT_ALLOWED);
	assert_string_equal(c.service, "envsvc");
	edit.environments = nowhere;
	assert_int_equal(cv_store_cert_edit(store, "envcert", &edit, NOW, &c, NULL, NULL, NULL, NULL),
			 CV_ERR_UNKNOWN_ENVIRONMENT);
	assert_string_equal(c.detail, "nowhere");
	/* Nor can the service move to an environment the certificate is not for. */
	svc = make_svc("envsvc", "staging", "", d);
	assert_int_equal(cv_store_service_put(store, svc, NOW, &created, &c, NULL),
			 CV_ERR_ENVIRONMENT_NOT_ALLOWED);
	cv_store_service_free(svc);

	/* In use: by the service and by the certificate naming it. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_environment_remove(store, "acc-eu", &c, NULL), CV_ERR_IN_USE);
	assert_string_equal(c.detail, "services envsvc; certificates envcert");
	assert_int_equal(cv_store_environment_remove(store, "test", &c, NULL), 0);
	assert_int_equal(cv_store_environment_remove(store, "test", &c, NULL), CV_ERR_NOT_FOUND);

	/* A public certificate and an upcoming one cannot be bound. */
	pub->is_public = 1;
	add_rec(store, pub);
	assert_int_equal(cv_store_service_bind(store, "envsvc", "pubcert", NOW, &c, NULL),
			 CV_ERR_NO_PRIVATE_KEY);
	add_rec(store, soon);
	memset(&c, 0, sizeof(c));
	assert_int_equal(cv_store_service_bind(store, "envsvc", "soon", NOW, &c, NULL),
			 CV_ERR_NOT_YET_VALID);
	assert_int_equal(c.when, NOW + DAY);
	assert_int_equal(cv_store_service_bind(store, "envsvc", "soon", NOW + DAY, &c, NULL), 0);
	assert_int_equal(rec_is_public(store, "pubcert"), 1);
	assert_int_equal(rec_is_public(store, "soon"), 0);
	cv_store_cert_free(rec);
	cv_store_cert_free(pub);
	cv_store_cert_free(soon);
}

/* The store's chain keyed with a real HMAC key in a real SoftHSM token. */
/* The token's HMAC of the digest; for a link N, of the digest with N folded into it (as a key
 * of its own would give another HMAC). */
static int token_mac(void *arg, int64_t link, const uint8_t digest[CV_AUDIT_HASH_LEN],
		     uint8_t ret_mac[CV_AUDIT_HASH_LEN])
{
	uint8_t d[CV_AUDIT_HASH_LEN];

	memcpy(d, digest, sizeof(d));
	for (int i = 0; i < 8; i++)
		d[i] ^= (uint8_t)((uint64_t)link >> (8 * i));
	return cv_token_secret_hmac(arg, d, CV_AUDIT_HASH_LEN, ret_mac, NULL);
}

static int64_t link_now;

static int64_t test_link(void *arg)
{
	(void)arg;
	return link_now;
}

static void append_n(struct cv_store *store, int n, const char *prefix)
{
	struct cv_audit_entry e;
	char target[32];
	int i;

	for (i = 0; i < n; i++) {
		snprintf(target, sizeof(target), "%s-%d", prefix, i);
		e = audit_entry("service.put", target, "");
		snprintf(e.source, sizeof(e.source), "192.0.2.7");
		assert_int_equal(cv_store_audit_append(store, &e), 0);
	}
}

/* A SoftHSM token in tdir (a mkdtemp template) with an audit HMAC key. */
static void audit_token_open(char *tdir, struct cv_token **ret_token,
			     struct cv_token_secret **ret_key)
{
	struct cv_token_config tcfg = { NULL, "audit", "5678", 2, NULL, NULL, 0 };
	struct cv_errmsg err = { "" };

	assert_non_null(mkdtemp(tdir));
	assert_int_equal(ts_softhsm_new(tdir, "audit", "1234", "5678"), 0);
	tcfg.module_path = ts_softhsm_module();
	assert_int_equal(cv_token_open(&tcfg, ret_token, &err), 0);
	assert_int_equal(cv_token_secret_generate(*ret_token, "audit-hmac", (const uint8_t *)"x",
						  1, ret_key, &err), 0);
}

static void audit_token_close(const char *tdir, struct cv_token *token,
			      struct cv_token_secret *key)
{
	cv_token_secret_free(key);
	cv_token_free(token);
	assert_int_equal(ts_softhsm_remove(tdir), 0);
}

/* A chain begun unkeyed, then keyed: verify says where the key starts, a record without the
 * key after that is refused, and an archive's removal goes through only when what was
 * archived is still what would be removed. */
static void test_audit_keyed_and_archived(void **state)
{
	char tdir[] = "/tmp/cv-store-token-XXXXXX";
	struct cv_token *token = NULL;
	struct cv_token_secret *key = NULL;
	struct cv_store *store = *state, *other = NULL;
	struct cv_errmsg err = { "" };
	struct cv_audit_verdict v;
	struct cv_audit_entry e, cp;
	struct cv_audit_filter f;
	struct cv_audit_record *recs = NULL;
	uint8_t head[CV_AUDIT_HASH_LEN], wrong[CV_AUDIT_HASH_LEN];
	size_t n = 0;
	char hex[2 * CV_AUDIT_HASH_LEN + 1];

	audit_token_open(tdir, &token, &key);

	/* Three plain records, as a certvault before the key wrote them: source and the other
	 * fields the plain format does not cover are not kept. */
	append_n(store, 3, "plain");
	cv_store_audit_key(store, token_mac, NULL, key, 4);
	append_n(store, 3, "keyed");
	assert_int_equal(cv_store_audit_verify(store, &v), 0);
	assert_int_equal(v.first_bad, 0);
	assert_int_equal(v.records, 6);
	assert_int_equal(v.keyed_from, 4);
	assert_int_equal(v.unkeyed, 3);
	memset(&f, 0, sizeof(f));
	f.limit = 10;
	assert_int_equal(cv_store_audit_list(store, &f, &recs, &n), 0);
	assert_int_equal(n, 6);
	assert_string_equal(recs[0].e.source, "");
	assert_int_equal(recs[0].keyed, 0);
	assert_string_equal(recs[3].e.source, "192.0.2.7");
	assert_int_equal(recs[3].keyed, 1);
	memcpy(head, recs[3].hash, sizeof(head));
	free(recs);

	/* Another handle on the file without the key: it may not add a plain link. */
	assert_int_equal(open_store(path, &other, &err), 0);
	e = audit_entry("service.put", "nokey", "");
	assert_int_equal(cv_store_audit_append(other, &e), CV_ERR_TOKEN_UNAVAILABLE);
	assert_int_equal(cv_store_audit_verify(other, &v), CV_ERR_TOKEN_UNAVAILABLE);
	cv_store_free(other);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM audit_log"), 6);

	/* Archive 1..4: refused when the oldest record or the head is not what was read. */
	cv_hex_encode(head, CV_AUDIT_HASH_LEN, hex);
	cp = audit_entry("audit.archive", "1-4", "");
	snprintf(cp.detail, sizeof(cp.detail), "first=1 through=4 records=4 head=%s", hex);
	memcpy(wrong, head, sizeof(wrong));
	wrong[0] ^= 1;
	assert_int_equal(cv_store_audit_archive_commit(store, 1, 4, wrong, &cp),
			 CV_ERR_PRECONDITION);
	assert_int_equal(cv_store_audit_archive_commit(store, 2, 4, head, &cp),
			 CV_ERR_PRECONDITION);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM audit_log"), 6);
	assert_int_equal(cv_store_audit_archive_commit(store, 1, 4, head, &cp), 0);
	assert_int_equal(raw_int(path, "SELECT min(seq) FROM audit_log"), 5);
	assert_int_equal(raw_int(path, "SELECT max(seq) FROM audit_log"), 7);
	assert_int_equal(cv_store_audit_verify(store, &v), 0);
	assert_int_equal(v.first_bad, 0);
	assert_int_equal(v.archived_through, 4);
	assert_int_equal(v.first_seq, 5);
	assert_int_equal(v.records, 3);
	/* Record 5 removed too: the chain no longer starts where the checkpoint says. */
	raw_exec(path, "DELETE FROM audit_log WHERE seq = 5");
	assert_int_equal(cv_store_audit_verify(store, &v), 0);
	assert_int_equal(v.first_bad, 5);

	cv_store_audit_key(store, NULL, NULL, NULL, 0);
	audit_token_close(tdir, token, key);
}

/* Runs sql on the file, then verify: the chain must break at seq. */
static void verify_breaks_at(struct cv_store *store, const char *sql, int64_t seq)
{
	struct cv_audit_verdict v;

	raw_exec(path, sql);
	assert_int_equal(cv_store_audit_verify(store, &v), 0);
	assert_int_equal(v.first_bad, seq);
	if (seq != 0)
		assert_non_null(strstr(v.reason, "changed"));
}

/* Records keyed with link keys: each names its link, which the digest covers, so a record
 * cannot be moved to another key; records of several links verify in one chain. */
static void test_audit_link_keys(void **state)
{
	char tdir[] = "/tmp/cv-store-token-XXXXXX";
	struct cv_token *token = NULL;
	struct cv_token_secret *key = NULL;
	struct cv_store *store = *state;
	struct cv_audit_verdict v;
	struct cv_audit_filter f;
	struct cv_audit_record *recs = NULL;
	size_t n = 0;

	audit_token_open(tdir, &token, &key);
	cv_store_audit_key(store, token_mac, test_link, key, 1);
	link_now = 0;
	append_n(store, 2, "direct");
	link_now = 7;
	append_n(store, 2, "seven");
	link_now = (int64_t)1 << 62;
	append_n(store, 2, "big");
	memset(&f, 0, sizeof(f));
	f.limit = 10;
	assert_int_equal(cv_store_audit_list(store, &f, &recs, &n), 0);
	assert_int_equal(n, 6);
	assert_int_equal(recs[0].link, 0);
	assert_int_equal(recs[2].link, 7);
	assert_int_equal(recs[5].link, (int64_t)1 << 62);
	free(recs);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM audit_log WHERE link_key = 7"), 2);
	assert_int_equal(cv_store_audit_verify(store, &v), 0);
	assert_int_equal(v.first_bad, 0);
	assert_int_equal(v.records, 6);
	assert_int_equal(v.keyed_from, 1);

	/* A record said to be keyed with another link, or with the token's key itself, or
	 * with no key there can be: changed. */
	verify_breaks_at(store, "UPDATE audit_log SET link_key = 8 WHERE seq = 3", 3);
	verify_breaks_at(store, "UPDATE audit_log SET link_key = 0 WHERE seq = 3", 3);
	verify_breaks_at(store, "UPDATE audit_log SET link_key = -7 WHERE seq = 3", 3);
	verify_breaks_at(store, "UPDATE audit_log SET link_key = 7 WHERE seq = 3", 0);
	/* A record of the direct key given a link: changed too. */
	verify_breaks_at(store, "UPDATE audit_log SET link_key = 7 WHERE seq = 1", 1);
	verify_breaks_at(store, "UPDATE audit_log SET link_key = 0 WHERE seq = 1", 0);

	/* A plain record never carries a link: without a key, the store writes none. */
	cv_store_audit_key(store, NULL, NULL, NULL, 0);
	raw_exec(path, "DELETE FROM audit_log");
	append_n(store, 1, "plain");
	assert_int_equal(raw_int(path, "SELECT link_key FROM audit_log"), 0);
	verify_breaks_at(store, "UPDATE audit_log SET link_key = 7", 1);

	link_now = 0;
	audit_token_close(tdir, token, key);
}

/* Notifications (issue 18 part 1). */

static void add_channel(struct cv_store *store, const char *id, const char *events)
{
	struct cv_notify_channel ch;

	memset(&ch, 0, sizeof(ch));
	snprintf(ch.id, sizeof(ch.id), "%s", id);
	snprintf(ch.name, sizeof(ch.name), "n-%s", id);
	snprintf(ch.kind, sizeof(ch.kind), "webhook");
	snprintf(ch.url, sizeof(ch.url), "https://hooks.example.com/x");
	snprintf(ch.events, sizeof(ch.events), "%s", events);
	ch.created_at = NOW;
	assert_int_equal(cv_store_notify_channel_insert(store, &ch, NULL), 0);
}

/* The outbox row of a change is written in its transaction: an import tells the channels that
 * take the event, and a failing outbox write undoes the import. */
static void test_notify_outbox_goes_with_change(void **state)
{
	static const char *const d[] = { "out.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_cert_record *rec = make_rec("out", NOW - DAY, NOW + 90 * DAY, d);
	struct cv_audit_entry e = audit_entry("certificate.import", "out", "");

	add_channel(store, "ch_all", "[\"certificate.imported\",\"certificate.deleted\"]");
	add_channel(store, "ch_exp", "[\"certificate.expiring\"]");
	assert_int_equal(cv_store_cert_insert_pending(store, rec, NULL), 0);
	raw_exec(path, PICK("CREATE TRIGGER outbox_fail BEFORE INSERT ON notification_outbox"
			    " BEGIN SELECT RAISE(ABORT, 'no room'); END",
			    "CREATE FUNCTION outbox_fail() RETURNS trigger LANGUAGE plpgsql AS"
			    " $$BEGIN RAISE EXCEPTION 'no room'; END$$;"
			    " CREATE TRIGGER outbox_fail BEFORE INSERT ON notification_outbox"
			    " FOR EACH ROW EXECUTE FUNCTION outbox_fail()"));
	assert_int_equal(cv_store_cert_activate(store, rec->id, &e), CV_ERR_DB);
	assert_int_equal(raw_int(path, "SELECT state FROM certificates WHERE name = 'out'"),
			 CV_CERT_PENDING);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM audit_log"), 0);
	raw_exec(path, PICK("DROP TRIGGER outbox_fail",
			    "DROP TRIGGER outbox_fail ON notification_outbox;"
			    " DROP FUNCTION outbox_fail()"));
	assert_int_equal(cv_store_cert_activate(store, rec->id, &e), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox"), 1);
#define ACTOR_SQL(field) "SELECT count(*) FROM notification_outbox WHERE channel_id ="      \
	" 'ch_all' AND event = 'certificate.imported' AND certificate = 'out' AND"        \
	" cert_version = 1 AND " field " = 'tester'"
	assert_int_equal(raw_int(path, PICK(ACTOR_SQL("json_extract(payload, '$.actor')"),
					    ACTOR_SQL("payload::json->>'actor'"))), 1);
	/* A refused attempt tells nobody. */
	e = audit_entry("certificate.delete", "out", "");
	e.ok = 0;
	assert_int_equal(cv_store_audit_append(store, &e), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox"), 1);
	cv_store_cert_free(rec);
}

/* Soft delete's recover and purge tell the channels that take them (issue 18); a purge
 * undone because the token kept a key does not send its message. */
static void test_notify_recover_purge(void **state)
{
	static const char *const d[] = { "rp.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_audit_entry e = audit_entry("certificate.recover", "rp", "");
	struct cv_jwk_relink *relink = NULL;
	size_t n = 0;
	int64_t id;

	add_channel(store, "ch_rp", "[\"certificate.recovered\",\"certificate.purged\"]");
	id = add(store, "rp", NOW - DAY, NOW + DAY, d);
	assert_int_equal(cv_store_cert_delete_soft(store, id, CV_JWK_ACTION_NONE, NOW, NOW + 30,
						   NULL, NULL), 0);
	assert_int_equal(cv_store_cert_recover(store, id, &relink, &n, &e, NULL, NULL), 0);
	free(relink);
#define RECOVERED_SQL(version) "SELECT count(*) FROM notification_outbox WHERE"            \
	" event = 'certificate.recovered' AND certificate = 'rp' AND " version " = 1"
	assert_int_equal(raw_int(path, PICK(RECOVERED_SQL("json_extract(payload,"
							  " '$.certificate.version')"),
					    RECOVERED_SQL("(payload::json->'certificate'->>'version')"
							  "::bigint"))), 1);
	assert_int_equal(cv_store_cert_delete_soft(store, id, CV_JWK_ACTION_NONE, NOW, NOW + 30,
						   NULL, NULL), 0);
	e = audit_entry("certificate.purge", "rp", "");
	assert_int_equal(cv_store_cert_purge_mark(store, id, &e), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox WHERE"
				       " event = 'certificate.purged' AND state = 0"), 1);
	/* Undone: its message is not sent, and says why in the log of deliveries. */
	assert_int_equal(cv_store_cert_purge_unmark(store, id), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox WHERE"
				       " event = 'certificate.purged' AND state = 2 AND"
				       " last_error LIKE 'not sent: the purge was undone%'"), 1);
	/* Done: the second purge's message stays to be sent. */
	assert_int_equal(cv_store_cert_purge_mark(store, id, &e), 0);
	assert_int_equal(cv_store_cert_remove(store, id), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox WHERE"
				       " event = 'certificate.purged' AND state = 0"), 1);
}

static int64_t scan(struct cv_store *store, int64_t now)
{
	int64_t added = -1;

	assert_int_equal(cv_store_notify_scan(store, "[30,14,7,1,0]", now, &added), 0);
	return added;
}

/* The smallest threshold crossed, once per (version, threshold, channel) however often the
 * scan runs; a certificate's own thresholds replace the default. */
static void test_notify_scan_once_per_threshold(void **state)
{
	static const char *const d[] = { "s.example.com", NULL };
	struct cv_store *store = *state;
	struct cv_audit_entry e = audit_entry("certificate.notifications", "own", "");

	add_channel(store, "ch_a", "[\"certificate.expiring\",\"certificate.expired\"]");
	add_channel(store, "ch_b", "[\"certificate.expired\"]");
	add(store, "edge", NOW - DAY, NOW + DAY + 10, d);     /* 7 now, 1 in 10 s */
	add(store, "gone", NOW - 2 * DAY, NOW - 5, d);        /* expired */
	add(store, "own", NOW - DAY, NOW + 10 * DAY, d);      /* 14, or its own 20 */
	add(store, "far", NOW - DAY, NOW + 90 * DAY, d);      /* nothing */
	assert_int_equal(cv_store_cert_notify_set(store, "OWN", "[20]", "[\"o@example.com\"]", &e),
			 0);
	assert_int_equal(scan(store, NOW), 4); /* edge 7, gone 0 twice, own 20 */
	assert_int_equal(scan(store, NOW), 0);
	assert_int_equal(scan(store, NOW + 5), 0);
	assert_int_equal(scan(store, NOW + 11), 1); /* edge 1 */
	assert_int_equal(scan(store, NOW + 11), 0);
#define CONTACT_SQL(field) "SELECT count(*) FROM notification_outbox WHERE"                 \
	" certificate = 'own' AND threshold = 20 AND " field " = 'o@example.com'"
	assert_int_equal(raw_int(path, PICK(CONTACT_SQL("json_extract(payload, '$.contacts[0]')"),
					    CONTACT_SQL("payload::json->'contacts'->>0"))), 1);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox WHERE"
				       " certificate = 'gone' AND event = 'certificate.expired'"), 2);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox WHERE"
				       " certificate = 'far'"), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox WHERE"
				       " certificate = 'edge'"), 2);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox WHERE"
				       " certificate = 'edge' AND threshold IN (7, 1) AND"
				       " event = 'certificate.expiring'"), 2);
}

static void test_notify_lease(void **state)
{
	struct cv_store *store = *state;
	int held = -1;

	assert_int_equal(cv_store_lease(store, "notifications", "a", NOW, 30, &held), 0);
	assert_int_equal(held, 1);
	assert_int_equal(cv_store_lease(store, "notifications", "b", NOW + 10, 30, &held), 0);
	assert_int_equal(held, 0);
	assert_int_equal(cv_store_lease(store, "notifications", "a", NOW + 20, 30, &held), 0);
	assert_int_equal(held, 1); /* renewed until NOW + 50 */
	assert_int_equal(cv_store_lease(store, "notifications", "b", NOW + 45, 30, &held), 0);
	assert_int_equal(held, 0);
	assert_int_equal(cv_store_lease(store, "notifications", "b", NOW + 50, 30, &held), 0);
	assert_int_equal(held, 1);
	assert_int_equal(cv_store_lease(store, "notifications", "a", NOW + 51, 30, &held), 0);
	assert_int_equal(held, 0);
}

/* An event once per key; an attempt left "sending" is found interrupted and due again with
 * the same delivery id. */
static void test_notify_attempts(void **state)
{
	struct cv_store *store = *state;
	struct cv_notify_delivery *due = NULL;
	struct cv_notify_attempt *att = NULL;
	char id[40];
	size_t n = 0;
	int64_t added = 0, k = 0;

	add_channel(store, "ch_t", "[\"token.unavailable\"]");
	assert_int_equal(cv_store_notify_event(store, "token.unavailable", "token:x:1", "",
					       NOW, &added), 0);
	assert_int_equal(added, 1);
	assert_int_equal(cv_store_notify_event(store, "token.unavailable", "token:x:1", "",
					       NOW, &added), 0);
	assert_int_equal(added, 0);
	assert_int_equal(cv_store_notify_event(store, "token.available", "token:x:2", "", NOW,
					       &added), 0);
	assert_int_equal(added, 0); /* no channel takes it */
	assert_int_equal(cv_store_notify_due(store, NOW, 10, &due, &n), 0);
	assert_int_equal(n, 1);
	snprintf(id, sizeof(id), "%s", due[0].delivery_id);
	assert_int_equal(cv_store_notify_attempt_begin(store, due[0].id, NOW, &k), 0);
	assert_int_equal(k, 1);
	/* the process dies here; the next sender finds it */
	assert_int_equal(cv_store_notify_interrupted(store, NOW + 60, &added), 0);
	assert_int_equal(added, 1);
	cv_notify_deliveries_free(due, n);
	assert_int_equal(cv_store_notify_due(store, NOW + 60, 10, &due, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(due[0].delivery_id, id);
	assert_int_equal(cv_store_notify_attempt_begin(store, due[0].id, NOW + 60, &k), 0);
	assert_int_equal(k, 2);
	assert_int_equal(cv_store_notify_attempt_end(store, due[0].id, k, NOW + 61, "delivered",
						     "", CV_DELIVERY_DELIVERED, NOW + 61), 0);
	assert_int_equal(cv_store_notify_attempts(store, due[0].id, &att, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(att[0].outcome, "interrupted");
	assert_string_equal(att[1].outcome, "delivered");
	free(att);
	assert_int_equal(cv_store_notify_attempt_begin(store, due[0].id, NOW + 62, &k),
			 CV_ERR_NOT_FOUND);
	cv_notify_deliveries_free(due, 1);
	assert_int_equal(cv_store_notify_due(store, NOW + 999, 10, &due, &n), 0);
	assert_int_equal(n, 0);
	free(due);
	/* A channel deleted while a delivery waits: it ends failed, and the log keeps it. */
	assert_int_equal(cv_store_notify_event(store, "token.unavailable", "token:x:3", "",
					       NOW, &added), 0);
	assert_int_equal(added, 1);
	assert_int_equal(cv_store_notify_channel_delete(store, "ch_t", NULL), 0);
	assert_int_equal(cv_store_notify_channel_delete(store, "ch_t", NULL), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_notify_due(store, NOW + 999, 10, &due, &n), 0);
	assert_int_equal(n, 0);
	free(due);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox WHERE state = 2"
				       " AND last_error = 'the channel was deleted'"), 1);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM notification_outbox"), 2);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_creates_schema_owner_only, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_journal_mode_is_wal, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_data, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_refused, test_setup,
						test_teardown),
		cmocka_unit_test(test_open_bad_path_has_message),
		cmocka_unit_test(test_open_pg_refusals),
		cmocka_unit_test(test_open_pg_two_nodes_at_once),
		cmocka_unit_test_setup_teardown(test_lifecycle, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_key_id_unique_is_not_name_taken, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_foreach_unsettled, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_nodes_claim, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_soft_delete_recover_purge, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_set_description, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_list_keyset_paging, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_status_boundaries, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_status_threshold_overflow, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_status_agrees_with_rules, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_search, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_threads_through_pool, test_setup,
						test_teardown),
		cmocka_unit_test_teardown(test_migrate_from_v1, test_teardown),
		cmocka_unit_test_setup_teardown(test_notify_outbox_goes_with_change, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_notify_scan_once_per_threshold, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_notify_lease, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_notify_attempts, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_notify_recover_purge, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_migrate_environments_from_v9, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_environments, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_jwks_published_retention, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_rename_keeps_key_labels, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_service_put_get_remove, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_service_list, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_bind_unbind, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_not_covered_detail_is_cut, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_put_keeps_bound_service_covered, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_usage_in_get_list_counts, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_delete_refused_while_in_use, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_in_use_detail_is_cut, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_supersede_refusals, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_supersede_not_in_use_before_same_certificate,
						test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_supersede_makes_next_current, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_supersede_same_certificate_history, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_key_ids_needed, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_key_journal_and_unsettled_keys, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_supersede_race, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_statement_cache_many_texts, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_jwks_generation, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_generations_follow_other_writers, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_tokens_generation, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_audit_keyed_and_archived, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_audit_link_keys, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_audit_import_activate, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_audit_supersede, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_audit_delete_mark, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_audit_service_bind, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_audit_trust_insert, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_audit_other_changes, test_setup,
						test_teardown),
	};

	pg_mode = argc > 1 && strcmp(argv[1], "--pg") == 0;
	return cmocka_run_group_tests_name(pg_mode ? "store on PostgreSQL" : "store on SQLite",
					   tests, group_setup, group_teardown);
}
