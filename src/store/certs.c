/* store: certificate rows and their domains. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "certvault/fault.h"
#include "internal.h"

#define COLS_LIST STORE_CERT_COLS_LIST
#define COLS_FULL STORE_CERT_COLS_FULL

#define LIST_LIMIT_MAX 1000

static void usage_free(struct cv_cert_usage *u, size_t n)
{
	size_t i;

	for (i = 0; u != NULL && i < n; i++)
		store_strings_free(u[i].domains, u[i].n_domains);
	free(u);
}

void cv_store_cert_free(struct cv_cert_record *rec)
{
	if (rec == NULL)
		return;
	store_strings_free(rec->domains, rec->n_domains);
	store_strings_free(rec->kids, rec->n_kids);
	store_strings_free(rec->environments, rec->n_environments);
	store_strings_free(rec->tags, rec->n_tags);
	usage_free(rec->used_by, rec->n_used_by);
	free(rec->description);
	free(rec->cert_der);
	free(rec->chain_pem);
	free(rec);
}

void cv_store_cert_page_free(struct cv_cert_page *page)
{
	size_t i;

	if (page == NULL)
		return;
	for (i = 0; i < page->n; i++)
		cv_store_cert_free(page->items[i]);
	free(page->items);
	free(page);
}

/* Reads the current row (COLS_LIST, then COLS_FULL's two more when full) into a new record. */
int store_cert_read_row(cvdb_stmt *stmt, int full, struct cv_cert_record **ret_rec)
{
	struct cv_cert_record *rec;
	const void *blob;
	int64_t state;
	int n, r;

	rec = calloc(1, sizeof(*rec));
	if (rec == NULL)
		return CV_ERR_NOMEM;
	rec->id = cvdb_column_int64(stmt, 0);
	r = store_copy_text(stmt, 1, rec->name, sizeof(rec->name));
	if (r == 0)
		r = store_dup_text(stmt, 2, &rec->description);
	if (r == 0)
		r = store_copy_text(stmt, 4, rec->subject, sizeof(rec->subject));
	if (r == 0)
		r = store_copy_text(stmt, 5, rec->issuer, sizeof(rec->issuer));
	if (r == 0)
		r = store_copy_text(stmt, 6, rec->serial, sizeof(rec->serial));
	if (r == 0)
		r = store_copy_text(stmt, 7, rec->sha256_fingerprint, sizeof(rec->sha256_fingerprint));
	if (r == 0)
		r = store_copy_text(stmt, 8, rec->key_description, sizeof(rec->key_description));
	if (r == 0)
		r = store_copy_text(stmt, 9, rec->primary_domain, sizeof(rec->primary_domain));
	if (r < 0)
		goto out;
	state = cvdb_column_int64(stmt, 3);
	rec->state = (enum cv_cert_state)state;
	rec->not_before = cvdb_column_int64(stmt, 10);
	rec->not_after = cvdb_column_int64(stmt, 11);
	blob = cvdb_column_blob(stmt, 12);
	if (blob == NULL || cvdb_column_bytes(stmt, 12) != (int)sizeof(rec->key_id)) {
		r = CV_ERR_DB;
		goto out;
	}
	memcpy(rec->key_id, blob, sizeof(rec->key_id));
	rec->created_at = cvdb_column_int64(stmt, 13);
	rec->updated_at = cvdb_column_int64(stmt, 14);
	rec->version = cvdb_column_int64(stmt, 15);
	rec->current_since = cvdb_column_int64(stmt, 16);
	/* The label the key really has: key_label, or the name for rows from before it. */
	rec->key_origin = (enum cv_key_origin)cvdb_column_int64(stmt, 17);
	r = store_copy_text(stmt, 18, rec->key_label, sizeof(rec->key_label));
	if (r < 0)
		goto out;
	rec->is_public = cvdb_column_int(stmt, 19) == 0;
	if (full) {
		blob = cvdb_column_blob(stmt, 20);
		n = cvdb_column_bytes(stmt, 20);
		if (blob == NULL && n > 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		/* One byte at least, so that an empty blob is not mistaken for "not loaded". */
		rec->cert_der = malloc(n > 0 ? (size_t)n : 1);
		if (rec->cert_der == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		if (n > 0)
			memcpy(rec->cert_der, blob, (size_t)n);
		rec->cert_der_len = (size_t)n;
		r = store_dup_text(stmt, 21, &rec->chain_pem);
		if (r == 0)
			r = store_copy_text(stmt, 22, rec->created_by, sizeof(rec->created_by));
		if (r == 0)
			r = store_copy_text(stmt, 23, rec->updated_by, sizeof(rec->updated_by));
		if (r == 0)
			r = store_copy_text(stmt, 24, rec->revocation_status,
					    sizeof(rec->revocation_status));
		if (r == 0)
			r = store_copy_text(stmt, 25, rec->revocation_source,
					    sizeof(rec->revocation_source));
		if (r == 0)
			r = store_copy_text(stmt, 26, rec->revocation_detail,
					    sizeof(rec->revocation_detail));
		if (r < 0)
			goto out;
		rec->revocation_checked_at = cvdb_column_int64(stmt, 27);
	}
	*ret_rec = rec;
	rec = NULL;
	r = 0;
out:
	cv_store_cert_free(rec);
	return r;
}

#define DOMAINS_SQL STORE_CERT_DOMAINS_SQL
/* Fills rec's domains, in order, with a statement prepared from DOMAINS_SQL. */
static int load_domains(cvdb_stmt *stmt, struct cv_cert_record *rec)
{
	return store_load_strings(stmt, rec->id, &rec->domains, &rec->n_domains);
}

/* ?1 = a JSON array of certificate ids: one statement, and one SQL text, for a page of any
 * size. SQLite reads the ids into a sorted temporary index and seeks each, so the rows come
 * in cert_id order. */
#define PAGE_IDS " IN (SELECT value FROM json_each(?1))"
/* PostgreSQL: the same text made an array literal ("[1,2]" -> "{1,2}"). "= ANY(array)" is
 * planned as one index probe per id; the IN (SELECT ... json_array_elements_text) form read
 * the whole of certificate_domains for every page (EXPLAIN ANALYZE at 5,000 rows: 5.9 ms
 * against 0.13 ms). */
#define PAGE_IDS_PG " = ANY(translate(?1, '[]', '{}')::bigint[])"

/* The domains of the page's certificates, each certificate's in order: one range read of
 * the primary key per certificate. */
#define PAGE_DOMAINS_SQL(ids) \
	"SELECT cert_id, domain FROM certificate_domains WHERE cert_id" ids \
	" ORDER BY cert_id, position"
static const char page_domains_sql[] = PAGE_DOMAINS_SQL(PAGE_IDS);
static const char page_domains_sql_pg[] = PAGE_DOMAINS_SQL(PAGE_IDS_PG);

/* The services using the page's certificates, in name order, each with its domains in
 * order (a service without domains gives one row with a NULL domain): services_cert gives
 * the (cert_id, name) order, and SQLite sorts only each service's few domains. Their
 * distinct count is taken in C, where count(DISTINCT) per certificate built a temporary
 * b-tree for each. */
#define PAGE_USAGE_SQL(ids) \
	"SELECT s.cert_id, s.id, s.name, s.environment, d.domain FROM services s" \
	" LEFT JOIN service_domains d ON d.service_id = s.id" \
	" WHERE s.cert_id" ids " ORDER BY s.cert_id, s.name, d.position"
static const char page_usage_sql[] = PAGE_USAGE_SQL(PAGE_IDS);
static const char page_usage_sql_pg[] = PAGE_USAGE_SQL(PAGE_IDS_PG);

/* The kids of the JWKs linked to the page's certificates (active and superseded alike),
 * through jwks_cert. */
#define PAGE_JWKS_SQL(ids) \
	"SELECT cert_id, kid FROM jwks WHERE cert_id" ids " ORDER BY cert_id, kid"
static const char page_jwks_sql[] = PAGE_JWKS_SQL(PAGE_IDS);
static const char page_jwks_sql_pg[] = PAGE_JWKS_SQL(PAGE_IDS_PG);

/* Appends a copy of s to the array v of n strings, whose capacity n implies (4, then
 * doubling), so that records need no capacity field. */
static int push_string(char ***v, size_t *n, const char *s)
{
	char **grown;

	if (*n == 0 || (*n >= 4 && (*n & (*n - 1)) == 0)) {
		grown = realloc(*v, (*n == 0 ? 4 : 2 * *n) * sizeof(*grown));
		if (grown == NULL)
			return CV_ERR_NOMEM;
		*v = grown;
	}
	(*v)[*n] = strdup(s);
	if ((*v)[*n] == NULL)
		return CV_ERR_NOMEM;
	(*n)++;
	return 0;
}

static int push_usage(struct cv_cert_record *rec, struct cv_cert_usage **ret_item)
{
	struct cv_cert_usage *grown;
	size_t n = rec->n_used_by;

	if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
		grown = realloc(rec->used_by, (n == 0 ? 4 : 2 * n) * sizeof(*grown));
		if (grown == NULL)
			return CV_ERR_NOMEM;
		rec->used_by = grown;
	}
	*ret_item = &rec->used_by[n];
	memset(*ret_item, 0, sizeof(**ret_item));
	rec->n_used_by++;
	return 0;
}

/* A page's records by id, for the rows of the per-page queries. */
struct by_id {
	int64_t id;
	struct cv_cert_record *rec;
};

static int by_id_cmp(const void *a, const void *b)
{
	const struct by_id *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static struct cv_cert_record *find_by_id(const struct by_id *ix, size_t n, int64_t id)
{
	struct by_id key = { .id = id };
	const struct by_id *hit = bsearch(&key, ix, n, sizeof(*ix), by_id_cmp);

	return hit != NULL ? hit->rec : NULL;
}

/* Gives a certificate its custom_domains: each (service, domain) pair using it, as the
 * cloud platform counts them (a domain two services share counts twice), from the domains
 * gathered for it (which it empties). */
static void settle_custom_domains(struct cv_cert_record *rec, char ***all, size_t *n_all)
{
	if (rec != NULL)
		rec->custom_domains = *n_all;
	store_strings_free(*all, *n_all);
	*all = NULL;
	*n_all = 0;
}

/* The tags of the page's certificates as "key=value", in key order. */
#define PAGE_TAGS_SQL(ids) \
	"SELECT cert_id, key || '=' || value FROM certificate_tags WHERE cert_id" ids \
	" ORDER BY cert_id, key"
static const char page_tags_sql[] = PAGE_TAGS_SQL(PAGE_IDS);
static const char page_tags_sql_pg[] = PAGE_TAGS_SQL(PAGE_IDS_PG);

/* What page_strings fills. */
enum page_list { PAGE_DOMAINS, PAGE_KIDS, PAGE_TAGS };

/* Runs sql (?1 = the page's ids, a JSON array) and appends column 1 of each row to the
 * domains or kids of the record column 0 names. */
static int page_strings(struct store_conn *conn, const char *sql, const char *ids,
			size_t ids_len, const struct by_id *ix, size_t n, enum page_list list)
{
	struct cv_cert_record *rec;
	cvdb_stmt *stmt;
	const char *text;
	int rc, r;

	r = store_prepare(conn, sql, &stmt);
	if (r < 0)
		return r;
	rc = cvdb_bind_text(stmt, 1, ids, (int)ids_len);
	if (rc != SQLITE_OK)
		return store_err(rc);
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		rec = find_by_id(ix, n, cvdb_column_int64(stmt, 0));
		if (rec == NULL)
			continue;
		r = store_column_text(stmt, 1, &text);
		if (r == 0 && list == PAGE_KIDS)
			r = push_string(&rec->kids, &rec->n_kids, text);
		else if (r == 0 && list == PAGE_TAGS)
			r = push_string(&rec->tags, &rec->n_tags, text);
		else if (r == 0)
			r = push_string(&rec->domains, &rec->n_domains, text);
		if (r < 0)
			return r;
	}
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

/* Fills the domains, used_by (with each service's domains when with_service_domains) and
 * custom_domains of the n records, with two statements for all of them, and their linked
 * JWKs' kids with a third when with_jwks. */
static int load_extras(struct store_conn *conn, struct cv_cert_record **recs, size_t n,
		       int with_service_domains, int with_jwks)
{
	struct cv_cert_record *rec, *cur = NULL;
	struct cv_cert_usage *item = NULL;
	struct by_id *ix = NULL;
	cvdb_stmt *stmt;
	char *ids = NULL, **all = NULL;
	size_t i, used = 0, n_all = 0, ids_size;
	int64_t service = 0;
	const char *text;
	int rc, r;

	if (n == 0)
		return 0;
	/* "[" + up to 20 digits and a comma per id + "]" */
	ids_size = n * 21 + 3;
	ids = malloc(ids_size);
	ix = malloc(n * sizeof(*ix));
	if (ids == NULL || ix == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	ids[used++] = '[';
	for (i = 0; i < n; i++) {
		used += (size_t)snprintf(ids + used, ids_size - used, "%s%lld", i > 0 ? "," : "",
					 (long long)recs[i]->id);
		ix[i].id = recs[i]->id;
		ix[i].rec = recs[i];
	}
	ids[used++] = ']';
	ids[used] = '\0';
	qsort(ix, n, sizeof(*ix), by_id_cmp);

	r = page_strings(conn, cvdb_pick(conn->db, page_domains_sql, page_domains_sql_pg), ids,
			 used, ix, n, PAGE_DOMAINS);
	if (r == 0)
		r = page_strings(conn, cvdb_pick(conn->db, page_tags_sql, page_tags_sql_pg), ids,
				 used, ix, n, PAGE_TAGS);
	if (r < 0)
		goto out;

	r = store_prepare(conn, cvdb_pick(conn->db, page_usage_sql, page_usage_sql_pg), &stmt);
	if (r < 0)
		goto out;
	rc = cvdb_bind_text(stmt, 1, ids, (int)used);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		rec = find_by_id(ix, n, cvdb_column_int64(stmt, 0));
		if (rec == NULL)
			continue;
		if (rec != cur) {
			settle_custom_domains(cur, &all, &n_all);
			cur = rec;
			item = NULL;
		}
		if (item == NULL || cvdb_column_int64(stmt, 1) != service) {
			service = cvdb_column_int64(stmt, 1);
			r = push_usage(rec, &item);
			if (r == 0)
				r = store_copy_text(stmt, 2, item->service, sizeof(item->service));
			if (r == 0)
				r = store_copy_text(stmt, 3, item->environment,
						    sizeof(item->environment));
			if (r < 0)
				goto out;
		}
		if (cvdb_column_type(stmt, 4) == SQLITE_NULL)
			continue;
		r = store_column_text(stmt, 4, &text);
		if (r == 0)
			r = push_string(&all, &n_all, text);
		if (r == 0 && with_service_domains)
			r = push_string(&item->domains, &item->n_domains, text);
		if (r < 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	settle_custom_domains(cur, &all, &n_all);
	r = 0;
	if (!with_jwks)
		goto out;

	r = page_strings(conn, cvdb_pick(conn->db, page_jwks_sql, page_jwks_sql_pg), ids, used,
			 ix, n, PAGE_KIDS);
out:
	store_strings_free(all, n_all);
	free(ix);
	free(ids);
	return r;
}

/* 1 when a row of this name exists, whatever its state; 0 when not; or an error. */
int store_name_exists(cvdb *db, const char *name)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	/* A pending certificate's name is taken too: its merge makes the certificate. Names are
	 * one ignoring case. */
	rc = cvdb_prepare(db, "SELECT 1 FROM certificates WHERE name = ?1 COLLATE NOCASE"
				" UNION ALL SELECT 1 FROM pending_certificates"
				" WHERE name = ?1 COLLATE NOCASE", 0, &stmt,
				NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, name);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	rc = cvdb_step(stmt);
	if (rc == SQLITE_ROW)
		r = 1;
	else if (rc == SQLITE_DONE)
		r = 0;
	else
		r = store_err(rc);
out:
	cvdb_finalize(stmt);
	return r;
}

static int insert_domains(cvdb *db, int64_t id, const struct cv_cert_record *rec)
{
	return store_insert_strings(db,
				    "INSERT INTO certificate_domains (cert_id, position, domain)"
				    " VALUES (?, ?, ?)",
				    id, rec->domains, rec->n_domains);
}

/* A certificate's tags as "key=value", in key order. */
static int tags_on(cvdb *db, int64_t id, char ***ret, size_t *ret_n)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db,
				"SELECT key || '=' || value FROM certificate_tags WHERE cert_id = ?"
				" ORDER BY key", 0, &stmt, NULL);
	if (rc != SQLITE_OK)
		return store_err(rc);
	r = store_load_strings(stmt, id, ret, ret_n);
	cvdb_finalize(stmt);
	return r;
}

/* 1 when a row other than id has this name, whatever its state; 0 when not; or an error. */
static int name_exists_other(cvdb *db, const char *name, int64_t id)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	/* Names are one ignoring case (certificates_name_nocase). */
	rc = cvdb_prepare(db,
				"SELECT 1 FROM certificates WHERE name = ?1 COLLATE NOCASE AND id != ?2", 0,
				&stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, name);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, id);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	rc = cvdb_step(stmt);
	r = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store_err(rc);
out:
	cvdb_finalize(stmt);
	return r;
}

/* The certificate's tags become exactly tags ("key=value"). */
static int set_tags(cvdb *db, int64_t id, char *const *tags, size_t n)
{
	size_t i;
	int r;

	r = store_run(db, "DELETE FROM certificate_tags WHERE cert_id = ?1", "i", id);
	for (i = 0; r == 0 && i < n; i++)
		r = store_run(db, cvdb_pick(db,
			      "INSERT INTO certificate_tags (cert_id, key, value) VALUES (?1,"
			      " substr(?2, 1, instr(?2, '=') - 1), substr(?2, instr(?2, '=') + 1))",
			      "INSERT INTO certificate_tags (cert_id, key, value) VALUES (?1,"
			      " split_part(?2::text, '=', 1), substr(?2::text, strpos(?2::text, '=') + 1))"),
			      "it", id, tags[i]);
	return r;
}

int store_cert_insert_on(cvdb *db, const struct cv_cert_record *rec, int state,
			 int64_t *ret_id, struct cv_conflict *conflict)
{
	static const char sql[] =
		"INSERT INTO certificates (name, description, state, cert_der, chain_pem,"
		" subject, issuer, serial, sha256_fingerprint, key_description, primary_domain,"
		" not_before, not_after, key_id, created_at, updated_at, version, current_since,"
		" key_origin, key_label, created_by, updated_by, revocation_status,"
		" revocation_source, revocation_detail, revocation_checked_at, has_key)"
		" VALUES (?1, ?2, ?16, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 1,"
		" ?14, ?17, nullif(?18, ''), ?19, ?19, ?20, ?21, ?22, ?23, ?24)";
	cvdb_stmt *stmt = NULL;
	int64_t id;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, rec->name);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 2, rec->description);
	if (rc == SQLITE_OK)
		/* A NULL pointer would bind SQL NULL, which the schema refuses: no certificate. */
		rc = cvdb_bind_blob(stmt, 3, rec->cert_der, rec->cert_der_len);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 4, rec->chain_pem);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 5, rec->subject);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 6, rec->issuer);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 7, rec->serial);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 8, rec->sha256_fingerprint);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 9, rec->key_description);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 10, rec->primary_domain);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 11, rec->not_before);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 12, rec->not_after);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(stmt, 13, rec->key_id, (int)sizeof(rec->key_id));
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 14, rec->created_at);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 15, rec->updated_at);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int(stmt, 16, state);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int(stmt, 17, (int)rec->key_origin);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 18, rec->key_label);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 19, rec->created_by);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 20, rec->revocation_status);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 21, rec->revocation_source);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 22, rec->revocation_detail);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 23, rec->revocation_checked_at);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int(stmt, 24, !rec->is_public);
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
		rc = SQLITE_OK;
	if (rc != SQLITE_OK) {
		/* The name was checked under the write lock, so a UNIQUE failure here is the
		 * key id: a caller bug or a collision, not a name the user can change. */
		r = store_err(rc);
		goto out;
	}
	id = cvdb_last_insert_rowid(db);
	r = insert_domains(db, id, rec);
	if (r == 0)
		r = store_cert_environments_set_on(db, id, rec->environments, rec->n_environments,
						   conflict);
	if (r == 0)
		r = set_tags(db, id, rec->tags, rec->n_tags);
	if (r < 0)
		goto out;
	*ret_id = id;
	r = 0;
out:
	cvdb_finalize(stmt);
	return r;
}

int cv_store_cert_insert_pending(struct cv_store *store, struct cv_cert_record *rec,
				 struct cv_conflict *conflict)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int64_t id = 0;
	int r;

	/* IMMEDIATE takes the write lock now, so the name check below still holds at the
	 * INSERT, and the row never exists without its domains. */
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_name_exists(db, rec->name);
	if (r == 1)
		r = CV_ERR_NAME_TAKEN;
	if (r < 0)
		goto out;
	r = store_cert_insert_on(db, rec, CV_CERT_PENDING, &id, conflict);
	/* The import in flight is this node's until its commit (cv_store_cert_activate). */
	if (r == 0)
		r = store_run(db, "UPDATE certificates SET owner_node = ?2 WHERE id = ?1", "it", id,
			      store_node(store));
out:
	r = store_finish(db, r);
	store_return(store, conn);
	if (r == 0) {
		rec->id = id;
		/* As read back: a key labelled with the bare name is "". */
		if (rec->key_label[0] == '\0')
			memcpy(rec->key_label, rec->name, sizeof(rec->key_label));
		rec->state = CV_CERT_PENDING;
		rec->version = 1;
		rec->current_since = rec->created_at;
	}
	return r;
}

/* Runs one UPDATE or DELETE keyed by ?1 = id on db; CV_ERR_NOT_FOUND when it touched no
 * row. */
static int change_on(cvdb *db, const char *sql, int64_t id)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, id);
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
		rc = SQLITE_OK;
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = cvdb_changes(db) == 0 ? CV_ERR_NOT_FOUND : 0;
out:
	cvdb_finalize(stmt);
	return r;
}

/* Why a change of row id's state that needed this node's ownership touched nothing:
 * CV_ERR_BUSY when another node owns the row now (its reconciler took it over), else
 * CV_ERR_NOT_FOUND (no such row in that state) or CV_ERR_DB. */
static int claimed_elsewhere(cvdb *db, int64_t id, const char *node)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, "SELECT count(*) FROM certificates WHERE id = ?1 AND"
			  " state IN (0, 2) AND owner_node <> ?2", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 2, node);
	r = rc == SQLITE_OK ? store_step_one(stmt) : store_err(rc);
	if (r == 0)
		r = cvdb_column_int64(stmt, 0) > 0 ? CV_ERR_BUSY : CV_ERR_NOT_FOUND;
	cvdb_finalize(stmt);
	return r;
}

int cv_store_cert_activate(struct cv_store *store, int64_t id,
			   const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	/* A deleting row may come back too: the vault does that when the token refused to
	 * destroy the key, and the certificate is then whole again. */
	/* Only this node's: a row another node's reconciler claimed (this node silent past
	 * its lease) is being undone there, and must not come back here. */
	if (r == 0)
		r = store_run(db, "UPDATE certificates SET state = 1 WHERE id = ?1"
			      " AND state IN (0, 2) AND owner_node = ?2", "it", id,
			      store_node(store));
	if (r == 0 && cvdb_changes(db) == 0)
		r = claimed_elsewhere(db, id, store_node(store));
	if (r == 0)
		r = store_audit_append_on(db, audit);
	if (r == 0)
		cv_fault_point("import.in_activate");
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int store_delete_checks_on(cvdb *db, int64_t id, enum cv_jwk_action jwk_action,
			   struct cv_conflict *conflict)
{
	struct cv_jwk_record *jwks = NULL;
	size_t n_jwks = 0;
	cvdb_stmt *stmt = NULL;
	char **users = NULL;
	size_t n = 0, i;
	int rc, r;

	rc = cvdb_prepare(db, "SELECT name FROM services WHERE cert_id = ? ORDER BY name", 0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_load_strings(stmt, id, &users, &n);
	if (r < 0)
		goto out;
	if (n > 0) {
		if (conflict != NULL)
			conflict->detail[0] = '\0';
		for (i = 0; i < n; i++)
			store_conflict_append(conflict, users[i]);
		r = CV_ERR_IN_USE;
		goto out;
	}
	r = store_jwk_list_on(db, id, &jwks, &n_jwks);
	if (r < 0)
		goto out;
	if (n_jwks > 0 && jwk_action != CV_JWK_ACTION_DELETE &&
	    jwk_action != CV_JWK_ACTION_DISCONNECT) {
		if (conflict != NULL)
			conflict->detail[0] = '\0';
		for (i = 0; i < n_jwks; i++)
			store_conflict_append(conflict, jwks[i].kid);
		r = CV_ERR_JWK_CHOICE_REQUIRED;
		goto out;
	}
	r = 0;
out:
	cvdb_finalize(stmt);
	cv_store_jwks_free(jwks, n_jwks);
	store_strings_free(users, n);
	return r;
}

int cv_store_cert_mark_deleting(struct cv_store *store, int64_t id,
				enum cv_jwk_action jwk_action, struct cv_conflict *conflict,
				const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	/* IMMEDIATE: no service can start using it between the check and the mark, and once
	 * marked, binding refuses it. */
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_delete_checks_on(db, id, jwk_action, conflict);
	if (r < 0)
		goto out;
	r = change_on(db,
		      jwk_action == CV_JWK_ACTION_DELETE
			      ? "UPDATE certificates SET state = 2, jwks_on_delete = 1"
				" WHERE id = ?1 AND state = 1"
			      : "UPDATE certificates SET state = 2, jwks_on_delete = 0"
				" WHERE id = ?1 AND state = 1",
		      id);
	/* The delete in flight is this node's until it removes the row. */
	if (r == 0)
		r = store_run(db, "UPDATE certificates SET owner_node = ?2 WHERE id = ?1", "it", id,
			      store_node(store));
	if (r == 0)
		r = store_audit_append_on(db, audit);
	if (r == 0)
		cv_fault_point("delete.in_mark");
out:
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int cv_store_cert_remove(struct cv_store *store, int64_t id)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	/* The domains and versions go with the row (ON DELETE CASCADE; foreign keys are on for
	 * every connection); its JWKs as the delete chose, else they lose the link (ON DELETE
	 * SET NULL). */
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = store_run(db,
			      "DELETE FROM jwks WHERE cert_id = ?1 AND (SELECT jwks_on_delete"
			      " FROM certificates WHERE id = ?1) = 1",
			      "i", id);
	if (r == 0)
		r = change_on(db, "DELETE FROM certificates WHERE id = ?1", id);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int cv_store_cert_set_description(struct cv_store *store, const char *name,
				  const char *description, int64_t now,
				  const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db,
				"UPDATE certificates SET description = ?1, updated_at = ?2,"
				" updated_by = coalesce(?4, updated_by)"
				" WHERE name = ?3 COLLATE NOCASE AND state = 1", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, description);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, now);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 3, name);
	/* Who changed it is who the audit record names (no record: left as it was). */
	if (rc == SQLITE_OK && audit != NULL)
		rc = store_bind_text(stmt, 4, audit->actor_name);
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
		rc = SQLITE_OK;
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = cvdb_changes(db) == 0 ? CV_ERR_NOT_FOUND : 0;
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	cvdb_finalize(stmt);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

/* The services using the certificate id must all be in one of the environments it is for
 * now (any when it names none). */
static int check_users_allowed(cvdb *db, int64_t id, struct cv_conflict *c)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db,
				"SELECT name, environment FROM services WHERE cert_id = ?1"
				" ORDER BY name", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, id);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = 0;
	while (r == 0 && (rc = cvdb_step(stmt)) == SQLITE_ROW) {
		const char *service, *environment;

		r = store_column_text(stmt, 0, &service);
		if (r == 0)
			r = store_column_text(stmt, 1, &environment);
		if (r == 0)
			r = store_cert_allows_environment_on(db, id, environment);
		if (r == CV_ERR_ENVIRONMENT_NOT_ALLOWED && c != NULL) {
			snprintf(c->service, sizeof(c->service), "%s", service);
			snprintf(c->detail, sizeof(c->detail), "%s", environment);
		}
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = store_err(rc);
out:
	cvdb_finalize(stmt);
	return r;
}

int cv_store_cert_edit(struct cv_store *store, const char *name, const struct cv_cert_edit *edit,
		       int64_t now, struct cv_conflict *conflict,
		       struct cv_cert_record **ret_old, const struct cv_audit_entry *audit,
		       cv_store_edit_describe_fn *describe, void *describe_arg)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_audit_entry *described = NULL;
	cvdb *db = conn->db;
	struct cv_cert_record *old = NULL;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db,
				"SELECT " COLS_LIST " FROM certificates WHERE name = ?1 COLLATE NOCASE"
				" AND state = 1", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, name);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0)
		r = store_cert_read_row(stmt, 0, &old);
	if (r == 0)
		r = store_cert_environments_on(db, old->id, &old->environments,
					       &old->n_environments);
	if (r < 0)
		goto out;
	r = tags_on(db, old->id, &old->tags, &old->n_tags);
	if (r < 0)
		goto out;
	if (edit->name != NULL && strcmp(edit->name, old->name) != 0) {
		/* Another case of its own name is a rename too; any other row's name is taken. */
		r = name_exists_other(db, edit->name, old->id);
		if (r == 1)
			r = CV_ERR_NAME_TAKEN;
		/* The keys keep their labels (key_label; NULL or '' from before meant the name, which
		 * is now spelt out for the row and its versions); linked JWKs follow the name. */
		if (r == 0)
			r = store_run(db,
				      "UPDATE certificate_versions SET key_label = ?1"
				      " WHERE cert_id = ?2 AND coalesce(key_label, '') = ''",
				      "ti", old->name, old->id);
		if (r == 0)
			r = store_run(db,
				      "UPDATE certificates SET key_label ="
				      " coalesce(nullif(key_label, ''), name), name = ?1 WHERE id = ?2",
				      "ti", edit->name, old->id);
		if (r == 0)
			r = store_run(db, "UPDATE jwks SET cert_name = ?1 WHERE cert_id = ?2", "ti",
				      edit->name, old->id);
		if (r < 0)
			goto out;
	}
	if (edit->description != NULL)
		r = store_run(db, "UPDATE certificates SET description = ?1 WHERE id = ?2", "ti",
			      edit->description, old->id);
	if (r == 0 && edit->set_tags)
		r = set_tags(db, old->id, edit->tags, edit->n_tags);
	if (r == 0 && edit->set_environments)
		r = store_cert_environments_set_on(db, old->id, edit->environments,
						   edit->n_environments, conflict);
	if (r == 0 && edit->set_environments)
		r = check_users_allowed(db, old->id, conflict);
	/* Who changed it is who the audit record names (no record: left as it was). */
	if (r == 0)
		r = store_run(db,
			      "UPDATE certificates SET updated_at = ?1,"
			      " updated_by = coalesce(nullif(?3, ''), updated_by) WHERE id = ?2",
			      "iit", now, old->id, audit != NULL ? audit->actor_name : "");
	if (r == 0 && audit != NULL && describe != NULL) {
		described = malloc(sizeof(*described));
		if (described == NULL)
			r = CV_ERR_NOMEM;
		if (r == 0) {
			*described = *audit;
			describe(old, edit, described, describe_arg);
			audit = described;
		}
	}
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	free(described);
	cvdb_finalize(stmt);
	r = store_finish(db, r);
	store_return(store, conn);
	if (r == 0 && ret_old != NULL) {
		*ret_old = old;
		old = NULL;
	}
	cv_store_cert_free(old);
	return r;
}

int cv_store_cert_get(struct cv_store *store, const char *name, struct cv_cert_record **ret_rec)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_cert_record *rec = NULL;
	cvdb_stmt *stmt;
	int rc, r;

	/* One read transaction, so the domains and the services belong to the row as it was
	 * read. */
	r = store_read_begin(conn);
	if (r < 0)
		goto out;
	r = store_prepare(conn,
			  "SELECT " COLS_FULL " FROM certificates WHERE name = ?1 COLLATE NOCASE"
			  " AND state = 1",
			  &stmt);
	if (r < 0)
		goto out;
	rc = store_bind_text(stmt, 1, name);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0)
		r = store_cert_read_row(stmt, 1, &rec);
	if (r == 0)
		r = load_extras(conn, &rec, 1, 1, 0);
	if (r == 0)
		r = store_cert_environments_on(conn->db, rec->id, &rec->environments,
					       &rec->n_environments);
out:
	r = store_read_end(conn, r);
	store_return(store, conn);
	if (r == 0) {
		*ret_rec = rec;
		rec = NULL;
	}
	cv_store_cert_free(rec);
	return r;
}

int cv_store_cert_get_row(struct cv_store *store, const char *name,
			  struct cv_cert_record **ret_rec)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_cert_record *rec = NULL;
	cvdb_stmt *stmt;
	int rc, r;

	r = store_prepare(conn,
			  "SELECT " COLS_FULL " FROM certificates WHERE name = ?1 COLLATE NOCASE"
			  " AND state = 1",
			  &stmt);
	if (r < 0)
		goto out;
	rc = store_bind_text(stmt, 1, name);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0)
		r = store_cert_read_row(stmt, 1, &rec);
out:
	store_return(store, conn);
	if (r == 0) {
		*ret_rec = rec;
		rec = NULL;
	}
	cv_store_cert_free(rec);
	return r;
}

/* The unsettled rows this node may take over (its own too when mine), claimed (owner_node
 * set to this node) in the transaction that reads them, then fn on each. */
static int cert_claim_foreach(struct cv_store *store, int64_t now, int mine,
			      int (*fn)(const struct cv_cert_record *rec, void *arg), void *arg)
{
	static const char claim[] =
		"UPDATE certificates SET owner_node = ?1 WHERE state != 1 AND held = 0 AND "
		STORE_CLAIMABLE("certificates.owner_node", "?1", "?2", "?3") " RETURNING id";
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL, *doms = NULL;
	struct cv_cert_record **recs = NULL;
	int64_t *ids = NULL;
	size_t n = 0, n_ids = 0, i;
	int rc, r, held = 1;

	/* Claimed and read first, the connection given back before fn: fn removes rows
	 * through the pool, and there are only ever a few unsettled rows. The claim commits
	 * before fn acts, so a node whose write it was (silent past its lease, then back)
	 * finds its row no longer its own and cannot commit over what fn undoes. */
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, claim, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, store_node(store));
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, store_node_stale_before(store, now));
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int(stmt, 3, mine != 0);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_claimed_ids(stmt, &ids, &n_ids);
	cvdb_finalize(stmt);
	stmt = NULL;
	if (r < 0)
		goto out;
	recs = calloc(n_ids > 0 ? n_ids : 1, sizeof(*recs));
	if (recs == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	rc = cvdb_prepare(db, "SELECT " COLS_FULL " FROM certificates WHERE id = ?1", 0, &stmt,
			  NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_prepare(db, DOMAINS_SQL, 0, &doms, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	for (i = 0; i < n_ids; i++) {
		rc = cvdb_bind_int64(stmt, 1, ids[i]);
		if (rc != SQLITE_OK) {
			r = store_err(rc);
			goto out;
		}
		r = store_step_one(stmt);
		if (r == 0)
			r = store_cert_read_row(stmt, 1, &recs[n]);
		if (r < 0)
			goto out;
		n++;
		cvdb_reset(stmt);
		r = load_domains(doms, recs[n - 1]);
		if (r < 0)
			goto out;
	}
	cvdb_finalize(stmt);
	cvdb_finalize(doms);
	stmt = doms = NULL;
	r = store_finish(db, 0);
	store_return(store, conn);
	held = 0;
	if (r < 0)
		goto out;
	for (i = 0; i < n; i++) {
		r = fn(recs[i], arg);
		if (r != 0)
			goto out;
	}
	r = 0;
out:
	if (held) {
		cvdb_finalize(stmt);
		cvdb_finalize(doms);
		r = store_finish(db, r);
		store_return(store, conn);
	}
	for (i = 0; i < n; i++)
		cv_store_cert_free(recs[i]);
	free(recs);
	free(ids);
	return r;
}

int cv_store_cert_foreach_unsettled(struct cv_store *store,
				    int (*fn)(const struct cv_cert_record *rec, void *arg),
				    void *arg)
{
	return cert_claim_foreach(store, (int64_t)time(NULL), 1, fn, arg);
}

int cv_store_cert_foreach_abandoned(struct cv_store *store, int64_t now,
				    int (*fn)(const struct cv_cert_record *rec, void *arg),
				    void *arg)
{
	return cert_claim_foreach(store, now, 0, fn, arg);
}

/* Binds :thr = now + soon_seconds, if the statement has it. Past the int64 range it is bound
 * as a real just outside that range, which SQLite compares exactly with integers, so the
 * ranges still agree with cv_status_at's (which cannot overflow) at the extremes. */
static int bind_threshold(cvdb_stmt *stmt, int64_t now, int64_t soon_seconds)
{
	int idx = cvdb_bind_parameter_index(stmt, ":thr");
	int64_t thr;

	if (idx == 0)
		return SQLITE_OK;
	if (!__builtin_add_overflow(now, soon_seconds, &thr))
		return cvdb_bind_int64(stmt, idx, thr);
	return cvdb_bind_double(stmt, idx, soon_seconds > 0 ? 0x1p63 : -0x1p64);
}

/* Each status of cv_status_at as ranges on the indexed columns, with :now and
 * :thr = now + soon_seconds: not_after - now < soon  <=>  not_after < thr. Upcoming wins over
 * expired, as in cv_status_at, for a row whose dates are the wrong way round. */
static const char *const status_where[] = {
	/* One lower bound, not two (a CASE, not SQLite's scalar max, which PostgreSQL lacks):
	 * SQLite ranges an index on one of two and filters by the other, which for the list
	 * sorted by not_after walked every row expiring soon first (10,000 of 100,000 in the
	 * bench) to reach the first valid one. */
	[CV_STATUS_VALID] = (" AND not_before <= :now AND not_after >="
			     " CASE WHEN :now > :thr THEN :now ELSE :thr END"),
	[CV_STATUS_EXPIRES_SOON] =
		" AND not_before <= :now AND not_after >= :now AND not_after < :thr",
	[CV_STATUS_EXPIRED] = " AND not_before <= :now AND not_after < :now",
	[CV_STATUS_UPCOMING] = " AND not_before > :now",
};

/* Substring search on the name, the description, the serial, the issuer or any domain. The
 * domain subquery is not correlated, so SQLite runs it once into a temporary index: 30 ms
 * for a page that has to scan 100,000 rows, against 360 ms for an EXISTS per row. */
static const char q_where[] =
	" AND (name LIKE :q ESCAPE '\\' OR description LIKE :q ESCAPE '\\'"
	" OR serial LIKE :q ESCAPE '\\' OR issuer LIKE :q ESCAPE '\\'"
	" OR id IN (SELECT cert_id FROM certificate_domains WHERE domain LIKE :q ESCAPE '\\'))";

/* In use: a service names the certificate. Not correlated, so SQLite reads services_cert
 * once into a temporary index rather than once per row walked. */
static const char in_use_where[] =
	" AND id IN (SELECT cert_id FROM services WHERE cert_id IS NOT NULL)";
static const char not_in_use_where[] =
	" AND id NOT IN (SELECT cert_id FROM services WHERE cert_id IS NOT NULL)";
/* A domain: the certificates naming it or the wildcard that covers it, looked up once in
 * certificate_domains_domain. */
static const char domain_where[] =
	" AND id IN (SELECT cert_id FROM certificate_domains"
	" WHERE domain IN (:domain, :wildcard))";
/* Used in an environment (services_environment) or by one service (its unique name). The
 * environment is compared ignoring case, as names are. */
static const char environment_where[] =
	" AND id IN (SELECT cert_id FROM services WHERE environment = :env COLLATE NOCASE"
	" AND cert_id IS NOT NULL)";
static const char service_where[] =
	" AND id IN (SELECT cert_id FROM services WHERE name = :svc AND cert_id IS NOT NULL)";

/* A tag: certificates with the key, and the value when one is given, looked up once in
 * certificate_tags_key_value. */
static const char tag_where[] =
	" AND id IN (SELECT cert_id FROM certificate_tags WHERE key = :tag_key)";
static const char tag_value_where[] =
	" AND id IN (SELECT cert_id FROM certificate_tags WHERE key = :tag_key"
	" AND value = :tag_value)";

/* %q% for LIKE with '\' as the escape, so that % and _ in q match themselves. */
char *store_like_pattern(const char *q)
{
	size_t len = strlen(q), i, j = 0;
	char *p;

	p = malloc(2 * len + 3);
	if (p == NULL)
		return NULL;
	p[j++] = '%';
	for (i = 0; i < len; i++) {
		if (q[i] == '%' || q[i] == '_' || q[i] == '\\')
			p[j++] = '\\';
		p[j++] = q[i];
	}
	p[j++] = '%';
	p[j] = '\0';
	return p;
}

static int bind_named_int64(cvdb_stmt *stmt, const char *name, int64_t v)
{
	int idx = cvdb_bind_parameter_index(stmt, name);

	return idx == 0 ? SQLITE_OK : cvdb_bind_int64(stmt, idx, v);
}

static int bind_named_text(cvdb_stmt *stmt, const char *name, const char *s)
{
	int idx = cvdb_bind_parameter_index(stmt, name);

	return idx == 0 ? SQLITE_OK : cvdb_bind_text(stmt, idx, s, -1);
}

/* The statuses asked for: one, several (ORed ranges), or none. */
static int status_mask_of(const struct cv_cert_filter *filter, unsigned *ret)
{
	unsigned all = (1u << (sizeof(status_where) / sizeof(status_where[0]))) - 1;

	*ret = filter->status_mask;
	if (*ret == 0 && filter->has_status) {
		if ((unsigned)filter->status >= sizeof(status_where) / sizeof(status_where[0]))
			return CV_ERR_BAD_REQUEST;
		*ret = 1u << filter->status;
	}
	if ((*ret & ~all) != 0)
		return CV_ERR_BAD_REQUEST;
	if (*ret == all)
		*ret = 0; /* every status: no condition */
	return 0;
}

/* The WHERE conditions of a filter after "state = 1" (the cursor aside) into buf. */
static int where_of(const struct cv_cert_filter *filter, char *buf, size_t len)
{
	unsigned mask, i, first = 1;
	char scope[2048];
	size_t used;
	int r, n;

	r = status_mask_of(filter, &mask);
	if (r == 0)
		r = store_scope_cert_where(filter->scope, scope, sizeof(scope));
	if (r < 0)
		return r;
	buf[0] = '\0';
	if (mask != 0 && (mask & (mask - 1)) == 0) {
		for (i = 0; (mask & (1u << i)) == 0; i++)
			;
		n = snprintf(buf, len, "%s", status_where[i]);
	} else if (mask != 0) {
		/* Several statuses: each range (less its leading " AND") ORed. */
		n = snprintf(buf, len, " AND (");
		for (i = 0; n >= 0 && (size_t)n < len &&
			    i < sizeof(status_where) / sizeof(status_where[0]); i++) {
			if ((mask & (1u << i)) == 0)
				continue;
			used = (size_t)n;
			n += snprintf(buf + used, len - used, "%s(%s)", first ? "" : " OR ",
				      status_where[i] + 5);
			first = 0;
		}
		if (n >= 0 && (size_t)n < len)
			n += snprintf(buf + n, len - (size_t)n, ")");
	} else {
		n = 0;
	}
	if (n < 0 || (size_t)n >= len)
		return CV_ERR_INTERNAL;
	used = (size_t)n;
	n = snprintf(buf + used, len - used, "%s%s%s%s%s%s%s", scope,
		     filter->q != NULL ? q_where : "",
		     filter->in_use == 1 ? in_use_where :
		     filter->in_use == 0 ? not_in_use_where : "",
		     filter->domain != NULL ? domain_where : "",
		     filter->environment != NULL ? environment_where : "",
		     filter->service != NULL ? service_where : "",
		     filter->tag_key == NULL ? "" :
		     filter->tag_value != NULL ? tag_value_where :
						 tag_where);
	if (n < 0 || (size_t)n >= len - used)
		return CV_ERR_INTERNAL;
	return 0;
}

/* Binds every value a statement of where_of (and the cursor) may name. */
static int bind_filter(cvdb_stmt *stmt, const struct cv_cert_filter *filter,
		       const char *pattern)
{
	int rc;

	rc = bind_named_text(stmt, ":after", filter->after);
	if (rc == SQLITE_OK)
		rc = store_scope_bind(stmt, filter->scope);
	if (rc == SQLITE_OK)
		rc = bind_named_int64(stmt, ":akey", filter->after_key);
	if (rc == SQLITE_OK)
		rc = bind_named_int64(stmt, ":arank", filter->after_rank);
	if (rc == SQLITE_OK)
		rc = bind_named_int64(stmt, ":now", filter->now);
	if (rc == SQLITE_OK)
		rc = bind_threshold(stmt, filter->now, filter->soon_seconds);
	if (rc == SQLITE_OK)
		rc = bind_named_text(stmt, ":q", pattern);
	if (rc == SQLITE_OK)
		rc = bind_named_text(stmt, ":domain", filter->domain);
	/* No wildcard can cover the domain: match it alone. */
	if (rc == SQLITE_OK)
		rc = bind_named_text(stmt, ":wildcard",
				     filter->domain_wildcard != NULL ? filter->domain_wildcard
								     : filter->domain);
	if (rc == SQLITE_OK)
		rc = bind_named_text(stmt, ":env", filter->environment);
	if (rc == SQLITE_OK)
		rc = bind_named_text(stmt, ":svc", filter->service);
	if (rc == SQLITE_OK)
		rc = bind_named_text(stmt, ":tag_key", filter->tag_key);
	if (rc == SQLITE_OK)
		rc = bind_named_text(stmt, ":tag_value", filter->tag_value);
	/* One row more than asked tells whether a next page exists. */
	if (rc == SQLITE_OK)
		rc = bind_named_int64(stmt, ":limit", (int64_t)filter->limit + 1);
	return rc;
}

/* The order and the keyset condition of each sort, ascending and descending. Each sort has
 * an index of (state, key, name) that a page walks in order and stops after limit + 1
 * matches; the status sort is the upcoming flag then not_after, which no index holds (its
 * rank depends on now), so SQLite sorts the rows that match. */
static const struct {
	const char *index;
	const char *order[2];
	const char *after[2];
} sorts[] = {
	[CV_SORT_NAME] = { "INDEXED BY certificates_state_name",
			   { "name", "name DESC" },
			   { " AND name > :after", " AND name < :after" } },
	[CV_SORT_VALID_TO] = { "INDEXED BY certificates_state_not_after_name",
			       { "not_after, name", "not_after DESC, name DESC" },
			       { " AND (not_after, name) > (:akey, :after)",
				 " AND (not_after, name) < (:akey, :after)" } },
	[CV_SORT_UPDATED_AT] = { "INDEXED BY certificates_state_updated_name",
				 { "updated_at, name", "updated_at DESC, name DESC" },
				 { " AND (updated_at, name) > (:akey, :after)",
				   " AND (updated_at, name) < (:akey, :after)" } },
	[CV_SORT_STATUS] = { "",
			     { "(not_before > :now), not_after, name",
			       "(not_before > :now) DESC, not_after DESC, name DESC" },
			     { " AND ((not_before > :now), not_after, name) > (:arank, :akey, :after)",
			       " AND ((not_before > :now), not_after, name) < (:arank, :akey, :after)" } },
};

int cv_store_cert_list(struct cv_store *store, const struct cv_cert_filter *filter,
		       struct cv_cert_page **ret_page)
{
	/* The SQL is put together from the constant fragments only; every value is bound.
	 * INDEXED BY keeps the walk in the sort's order whatever the filter: left to itself
	 * the planner takes the not_after range for "expired" and sorts half the table (150 ms
	 * at 100,000 rows), where walking the index stops after limit + 1 matches and costs
	 * at worst one pass over the index. A domain names few certificates: NOT INDEXED makes
	 * SQLite look them up by rowid from certificate_domains_domain and sort those
	 * (0.05 ms at 100,000 rows), where the walk would take 16 ms. */
	char sql[6144], where[4096];
	struct cv_cert_page *page = NULL;
	struct store_conn *conn;
	cvdb_stmt *stmt;
	char *pattern = NULL;
	int n, rc, r, d = filter->desc != 0;

	if (filter->limit < 1 || filter->limit > LIST_LIMIT_MAX ||
	    (unsigned)filter->sort >= sizeof(sorts) / sizeof(sorts[0]))
		return CV_ERR_BAD_REQUEST;
	r = where_of(filter, where, sizeof(where));
	if (r < 0)
		return r;
	n = snprintf(sql, sizeof(sql),
		 "SELECT " COLS_LIST " FROM certificates %s WHERE state = 1%s%s ORDER BY %s"
		 " LIMIT :limit",
		 /* SQLite's hints: PostgreSQL has none (its planner picks the index). */
		 store->kind == CVDB_PG ? "" :
		 filter->domain != NULL ? "NOT INDEXED" : sorts[filter->sort].index,
		 filter->after != NULL ? sorts[filter->sort].after[d] : "", where,
		 sorts[filter->sort].order[d]);
	if (n < 0 || (size_t)n >= sizeof(sql))
		return CV_ERR_INTERNAL;
	if (filter->q != NULL && (pattern = store_like_pattern(filter->q)) == NULL)
		return CV_ERR_NOMEM;
	page = calloc(1, sizeof(*page));
	if (page != NULL)
		page->items = calloc(filter->limit, sizeof(*page->items));
	if (page == NULL || page->items == NULL) {
		cv_store_cert_page_free(page);
		free(pattern);
		return CV_ERR_NOMEM;
	}

	conn = store_borrow(store);
	/* One read transaction, so the domains belong to the rows as they were read. */
	r = store_read_begin(conn);
	if (r < 0)
		goto out;
	/* The filters make a few dozen SQL texts; each connection keeps the ones in use. */
	r = store_prepare(conn, sql, &stmt);
	if (r < 0)
		goto out;
	rc = bind_filter(stmt, filter, pattern);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		if (page->n == filter->limit) {
			page->has_more = 1;
			continue;
		}
		r = store_cert_read_row(stmt, 0, &page->items[page->n]);
		if (r < 0)
			goto out;
		page->n++;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	r = load_extras(conn, page->items, page->n, 0, filter->with_jwks);
out:
	r = store_read_end(conn, r);
	store_return(store, conn);
	free(pattern);
	if (r == 0) {
		*ret_page = page;
		page = NULL;
	}
	cv_store_cert_page_free(page);
	return r;
}

int cv_store_cert_list_total(struct cv_store *store, const struct cv_cert_filter *filter,
			     int64_t *ret_total)
{
	/* The same conditions, counted on the index whose columns judge the status (no table
	 * read unless q, a domain or a service asks for it). */
	char sql[6144], where[4096];
	struct store_conn *conn;
	cvdb_stmt *stmt;
	char *pattern = NULL;
	int n, rc, r;

	r = where_of(filter, where, sizeof(where));
	if (r < 0)
		return r;
	n = snprintf(sql, sizeof(sql), "SELECT count(*) FROM certificates WHERE state = 1%s",
		     where);
	if (n < 0 || (size_t)n >= sizeof(sql))
		return CV_ERR_INTERNAL;
	if (filter->q != NULL && (pattern = store_like_pattern(filter->q)) == NULL)
		return CV_ERR_NOMEM;
	conn = store_borrow(store);
	r = store_prepare(conn, sql, &stmt);
	if (r < 0)
		goto out;
	rc = bind_filter(stmt, filter, pattern);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (rc != SQLITE_ROW) {
		r = store_err(rc);
		goto out;
	}
	*ret_total = cvdb_column_int64(stmt, 0);
	r = 0;
out:
	store_return(store, conn);
	free(pattern);
	return r;
}

int cv_store_cert_status_change(struct cv_store *store, int64_t now, int64_t soon_seconds,
				int64_t *ret_at)
{
	/* cv_status_at's boundaries: upcoming until not_before, expires soon from
	 * not_after - soon + 1, expired from not_after + 1. Each the first after now, on the
	 * indexes that lead with (state, not_after) and (state, not_before). */
	static const char sql[] =
		"SELECT (SELECT min(not_after) FROM certificates WHERE state = 1 AND"
		" not_after >= ?1),"
		" (SELECT min(not_after) FROM certificates WHERE state = 1 AND not_after >= ?2),"
		" (SELECT min(not_before) FROM certificates WHERE state = 1 AND not_before > ?1)";
	struct store_conn *conn;
	cvdb_stmt *stmt;
	int64_t soon = soon_seconds > 0 ? soon_seconds : 0, at = INT64_MAX, v;
	int rc, r;

	*ret_at = INT64_MAX;
	if (now >= INT64_MAX - soon - 1)
		return 0; /* nothing comes after the end of time */
	conn = store_borrow(store);
	r = store_prepare(conn, sql, &stmt);
	if (r < 0)
		goto out;
	rc = cvdb_bind_int64(stmt, 1, now);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, now + soon);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (rc != SQLITE_ROW) {
		r = store_err(rc);
		goto out;
	}
	if (cvdb_column_type(stmt, 0) != SQLITE_NULL &&
	    (v = cvdb_column_int64(stmt, 0)) < INT64_MAX && v + 1 < at)
		at = v + 1;
	if (soon > 0 && cvdb_column_type(stmt, 1) != SQLITE_NULL &&
	    (v = cvdb_column_int64(stmt, 1)) - soon + 1 < at)
		at = v - soon + 1;
	if (cvdb_column_type(stmt, 2) != SQLITE_NULL && (v = cvdb_column_int64(stmt, 2)) < at)
		at = v;
	*ret_at = at;
	r = 0;
out:
	store_return(store, conn);
	return r;
}

int cv_store_cert_count(struct cv_store *store, int64_t now, int64_t soon_seconds,
			struct cv_cert_counts *ret_counts)
{
	/* One pass over the active entries of (state, not_after, not_before), judged without
	 * reading the table; the filters are the list's status ranges, so the counts match the
	 * filtered lists. count(*) FILTER is 8 ms at 100,000 rows where sum(<condition>) is 20. */
	static const char sql[] =
		"SELECT count(*),"
		" count(*) FILTER (WHERE not_before <= :now AND not_after >= :now"
		" AND not_after >= :thr),"
		" count(*) FILTER (WHERE not_before <= :now AND not_after >= :now"
		" AND not_after < :thr),"
		" count(*) FILTER (WHERE not_before <= :now AND not_after < :now),"
		" count(*) FILTER (WHERE not_before > :now),"
		/* Only an active certificate can be bound, so the distinct certificates of
		 * services_cert are the ones in use: a cost of the services, not of every row. */
		" (SELECT count(DISTINCT cert_id) FROM services WHERE cert_id IS NOT NULL)"
		" FROM certificates WHERE state = 1";
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = bind_named_int64(stmt, ":now", now);
	if (rc == SQLITE_OK)
		rc = bind_threshold(stmt, now, soon_seconds);
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_ROW)
		rc = SQLITE_OK;
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	ret_counts->total = cvdb_column_int64(stmt, 0);
	ret_counts->valid = cvdb_column_int64(stmt, 1);
	ret_counts->expires_soon = cvdb_column_int64(stmt, 2);
	ret_counts->expired = cvdb_column_int64(stmt, 3);
	ret_counts->upcoming = cvdb_column_int64(stmt, 4);
	ret_counts->in_use = cvdb_column_int64(stmt, 5);
	r = 0;
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}

int cv_store_cert_count_scoped(struct cv_store *store, int64_t now, int64_t soon_seconds,
			       const struct cv_scope_objects *scope,
			       struct cv_cert_counts *ret_counts)
{
	/* The summary's counts over the certificates the scope lets in: the same ranges, the
	 * scope's conditions added (a scoped summary is a smaller, rarer query). */
	char sql[3072], where[2048];
	struct store_conn *conn;
	cvdb_stmt *stmt = NULL;
	int n, rc, r;

	r = store_scope_cert_where(scope, where, sizeof(where));
	if (r < 0)
		return r;
	n = snprintf(sql, sizeof(sql), "SELECT count(*),"
		     " count(*) FILTER (WHERE not_before <= :now AND not_after >= :now"
		     " AND not_after >= :thr),"
		     " count(*) FILTER (WHERE not_before <= :now AND not_after >= :now"
		     " AND not_after < :thr),"
		     " count(*) FILTER (WHERE not_before <= :now AND not_after < :now),"
		     " count(*) FILTER (WHERE not_before > :now),"
		     " count(*) FILTER (WHERE id IN (SELECT cert_id FROM services"
		     " WHERE cert_id IS NOT NULL))"
		     " FROM certificates WHERE state = 1%s", where);
	if (n < 0 || (size_t)n >= sizeof(sql))
		return CV_ERR_INTERNAL;
	conn = store_borrow(store);
	rc = cvdb_prepare(conn->db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = bind_named_int64(stmt, ":now", now);
	if (rc == SQLITE_OK)
		rc = bind_threshold(stmt, now, soon_seconds);
	if (rc == SQLITE_OK)
		rc = store_scope_bind(stmt, scope);
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_ROW)
		rc = SQLITE_OK;
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	ret_counts->total = cvdb_column_int64(stmt, 0);
	ret_counts->valid = cvdb_column_int64(stmt, 1);
	ret_counts->expires_soon = cvdb_column_int64(stmt, 2);
	ret_counts->expired = cvdb_column_int64(stmt, 3);
	ret_counts->upcoming = cvdb_column_int64(stmt, 4);
	ret_counts->in_use = cvdb_column_int64(stmt, 5);
	r = 0;
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}
