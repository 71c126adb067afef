/* Unit tests for the store, against a real SQLite file in a fresh directory: schema and
 * migrations, the pending/active/deleting life of a row, every field round-tripped, keyset
 * paging, the status filter at its exact edges, search, counts, the pool under threads, and
 * the file's permissions. */
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

#define DAY 86400
#define SOON (30 * DAY)
#define NOW 1700000000

static char dir[] = "/tmp/cv-store-XXXXXX";
static char path[512];
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

static int group_setup(void **state)
{
	(void)state;
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
	char cmd[600];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Each test gets a database file of its own. */
static int test_setup(void **state)
{
	struct cv_errmsg err = { "" };
	struct cv_store *store = NULL;

	snprintf(path, sizeof(path), "%s/db%u.sqlite", dir, ++db_counter);
	if (cv_store_open(path, &store, &err) != 0) {
		fprintf(stderr, "open: %s\n", err.text);
		return -1;
	}
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

	assert_int_equal(cv_store_cert_insert_pending(store, rec), 0);
	assert_int_equal(cv_store_cert_activate(store, rec->id), 0);
	id = rec->id;
	cv_store_cert_free(rec);
	return id;
}

static int64_t raw_int(const char *db_path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;
	int64_t v;

	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	v = sqlite3_column_int64(stmt, 0);
	assert_int_equal(sqlite3_finalize(stmt), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return v;
}

static void raw_exec(const char *db_path, const char *sql)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static struct cv_cert_filter filter_all(unsigned limit)
{
	struct cv_cert_filter f;

	memset(&f, 0, sizeof(f));
	f.now = NOW;
	f.soon_seconds = SOON;
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

	assert_int_equal(raw_int(path, "PRAGMA user_version"), 3);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
				       " AND name IN ('certificates', 'certificate_domains')"),
			 2);
	assert_int_equal(cv_store_ping(store), 0);
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
	assert_int_equal(cv_store_open(path, &store, &err), 0);
	*state = store;
	assert_int_equal(raw_int(path, "PRAGMA user_version"), 3);
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
	raw_exec(path, "PRAGMA user_version = 99");
	assert_int_equal(cv_store_open(path, &again, &err), CV_ERR_DB);
	assert_null(again);
	assert_non_null(strstr(err.text, "newer"));
	assert_non_null(strstr(err.text, "99"));
	assert_non_null(strstr(err.text, path));
	/* Refusing changed nothing. */
	assert_int_equal(raw_int(path, "PRAGMA user_version"), 99);
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

	assert_int_equal(cv_store_cert_insert_pending(store, rec), 0);
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
	assert_int_equal(cv_store_cert_insert_pending(store, dup), CV_ERR_NAME_TAKEN);
	assert_int_equal(cv_store_cert_set_description(store, "life", "x", NOW), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_mark_deleting(store, rec->id, CV_JWK_ACTION_NONE, NULL), CV_ERR_NOT_FOUND);

	/* Active: every field comes back. */
	assert_int_equal(cv_store_cert_activate(store, rec->id), 0);
	assert_int_equal(cv_store_cert_activate(store, rec->id), CV_ERR_NOT_FOUND);
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
	assert_int_equal(cv_store_cert_mark_deleting(store, rec->id, CV_JWK_ACTION_NONE, NULL), 0);
	assert_int_equal(cv_store_cert_get(store, "life", &got), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_store_cert_count(store, NOW, SOON, &c), 0);
	assert_int_equal(c.total, 0);
	assert_int_equal(cv_store_cert_insert_pending(store, dup), CV_ERR_NAME_TAKEN);

	/* The vault's undo of a delete the token refused brings the row back whole. */
	assert_int_equal(cv_store_cert_activate(store, rec->id), 0);
	assert_int_equal(cv_store_cert_get(store, "life", &got), 0);
	cv_store_cert_free(got);
	got = NULL;
	assert_int_equal(cv_store_cert_mark_deleting(store, rec->id, CV_JWK_ACTION_NONE, NULL), 0);

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
	assert_int_equal(cv_store_cert_insert_pending(store, dup), 0);
	/* Ids are never reused: the vault holds them across calls. */
	assert_true(dup->id > rec->id);
	cv_store_cert_free(rec);
	cv_store_cert_free(dup);
}

static void test_key_id_unique_is_not_name_taken(void **state)
{
	struct cv_store *store = *state;
	struct cv_cert_record *a = make_rec("ka", NOW - DAY, NOW + DAY, NULL);
	struct cv_cert_record *b = make_rec("kb", NOW - DAY, NOW + DAY, NULL);

	memcpy(b->key_id, a->key_id, sizeof(a->key_id));
	assert_int_equal(cv_store_cert_insert_pending(store, a), 0);
	assert_int_equal(cv_store_cert_insert_pending(store, b), CV_ERR_DB);
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
	assert_int_equal(cv_store_cert_mark_deleting(store, del, CV_JWK_ACTION_NONE, NULL), 0);
	assert_int_equal(cv_store_cert_insert_pending(store, p), 0);
	assert_int_equal(cv_store_cert_insert_pending(store, p2), 0);
	assert_int_equal(cv_store_cert_foreach_unsettled(store, collect_unsettled, seen), 0);
	assert_string_equal(seen, "d-deleting:d p-one:p p-two:p ");
	assert_int_equal(cv_store_cert_foreach_unsettled(store, stop_at_second, &calls), 42);
	assert_int_equal(calls, 2);
	assert_int_equal(cv_store_cert_foreach_unsettled(store, remove_it, store), 0);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM certificates"), 1);
	cv_store_cert_free(p);
	cv_store_cert_free(p2);
}

static void test_set_description(void **state)
{
	struct cv_store *store = *state;
	struct cv_cert_record *rec = NULL;

	add(store, "desc", NOW - DAY, NOW + DAY, NULL);
	assert_int_equal(cv_store_cert_set_description(store, "desc", "new 'text'; --", NOW + 5),
			 0);
	assert_int_equal(cv_store_cert_get(store, "desc", &rec), 0);
	assert_string_equal(rec->description, "new 'text'; --");
	assert_int_equal(rec->updated_at, NOW + 5);
	assert_int_equal(rec->created_at, NOW - 100);
	cv_store_cert_free(rec);
	assert_int_equal(cv_store_cert_set_description(store, "nope", "x", NOW), CV_ERR_NOT_FOUND);
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
	f.q = "example";
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_string_equal(page->items[0]->name, "Billing-API");
	assert_true(page->has_more);
	cv_store_cert_page_free(page);
	f.after = "Billing-API";
	assert_int_equal(cv_store_cert_list(store, &f, &page), 0);
	assert_string_equal(page->items[0]->name, "backslash");
	assert_true(page->has_more);
	cv_store_cert_page_free(page);
	f.after = "backslash";
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
		if (cv_store_cert_insert_pending(w->store, rec) != 0 ||
		    cv_store_cert_activate(w->store, rec->id) != 0)
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

int main(void)
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
		cmocka_unit_test_setup_teardown(test_lifecycle, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_key_id_unique_is_not_name_taken, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_foreach_unsettled, test_setup, test_teardown),
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
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
