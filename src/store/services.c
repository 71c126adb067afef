/* store: services, their domains, and the certificate each uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

#define LIST_LIMIT_MAX 1000

/* The columns a service is read from, in the order read_service expects. */
#define SERVICE_SELECT                                                                    \
	"SELECT s.id, s.name, s.environment, s.description, s.created_at, s.updated_at,"  \
	" s.bound_at, c.name, c.version, c.serial, c.sha256_fingerprint, c.not_before,"   \
	" c.not_after FROM services s LEFT JOIN certificates c ON c.id = s.cert_id"

void cv_store_service_free(struct cv_service_record *svc)
{
	if (svc == NULL)
		return;
	store_strings_free(svc->domains, svc->n_domains);
	free(svc->description);
	free(svc);
}

void cv_store_service_page_free(struct cv_service_page *page)
{
	size_t i;

	if (page == NULL)
		return;
	for (i = 0; i < page->n; i++)
		cv_store_service_free(page->items[i]);
	free(page->items);
	free(page);
}

/* Reads the current row of a SERVICE_SELECT and the service's domains (doms prepared from
 * STORE_SERVICE_DOMAINS_SQL). */
static int read_service(cvdb_stmt *stmt, cvdb_stmt *doms,
			struct cv_service_record **ret_svc)
{
	struct cv_service_record *svc;
	int r;

	svc = calloc(1, sizeof(*svc));
	if (svc == NULL)
		return CV_ERR_NOMEM;
	svc->id = cvdb_column_int64(stmt, 0);
	r = store_copy_text(stmt, 1, svc->name, sizeof(svc->name));
	if (r == 0)
		r = store_copy_text(stmt, 2, svc->environment, sizeof(svc->environment));
	if (r == 0)
		r = store_dup_text(stmt, 3, &svc->description);
	if (r < 0)
		goto out;
	svc->created_at = cvdb_column_int64(stmt, 4);
	svc->updated_at = cvdb_column_int64(stmt, 5);
	/* The certificate's columns are NULL for a service that uses none. */
	if (cvdb_column_type(stmt, 7) != SQLITE_NULL) {
		svc->bound_at = cvdb_column_int64(stmt, 6);
		r = store_copy_text(stmt, 7, svc->cert_name, sizeof(svc->cert_name));
		if (r == 0)
			r = store_copy_text(stmt, 9, svc->cert_serial, sizeof(svc->cert_serial));
		if (r == 0)
			r = store_copy_text(stmt, 10, svc->cert_sha256_fingerprint,
					    sizeof(svc->cert_sha256_fingerprint));
		if (r < 0)
			goto out;
		svc->cert_version = cvdb_column_int64(stmt, 8);
		svc->cert_not_before = cvdb_column_int64(stmt, 11);
		svc->cert_not_after = cvdb_column_int64(stmt, 12);
	}
	r = store_load_strings(doms, svc->id, &svc->domains, &svc->n_domains);
	if (r < 0)
		goto out;
	*ret_svc = svc;
	svc = NULL;
	r = 0;
out:
	cv_store_service_free(svc);
	return r;
}

/* One integer column of the single row sql gives for the text ?1 (and ?2 when it has it);
 * CV_ERR_NOT_FOUND when no row. A NULL value reads as 0 with *ret_null set. */
static int lookup_id(cvdb *db, const char *sql, const char *a, int64_t *ret, int *ret_null)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, a);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r < 0)
		goto out;
	if (ret_null != NULL)
		*ret_null = cvdb_column_type(stmt, 0) == SQLITE_NULL;
	*ret = cvdb_column_int64(stmt, 0);
	r = 0;
out:
	cvdb_finalize(stmt);
	return r;
}

/* One text column of the single row sql gives for the integer ?1. */
static int lookup_text(cvdb *db, const char *sql, int64_t id, char *ret, size_t size)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, id);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0)
		r = store_copy_text(stmt, 0, ret, size);
out:
	cvdb_finalize(stmt);
	return r;
}

/* Reads the domains of a certificate or of a service by id. */
static int domains_of(cvdb *db, const char *sql, int64_t id, char ***ret, size_t *ret_n)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc != SQLITE_OK)
		return store_err(rc);
	r = store_load_strings(stmt, id, ret, ret_n);
	cvdb_finalize(stmt);
	return r;
}

/* 0 when the certificate cert_id covers every one of domains (of the service named). */
static int check_cert_covers(cvdb *db, int64_t cert_id, char *const *domains,
			     size_t n_domains, const char *service, struct cv_conflict *c)
{
	char **names = NULL;
	size_t n = 0;
	int r;

	r = domains_of(db, STORE_CERT_DOMAINS_SQL, cert_id, &names, &n);
	if (r == 0)
		r = store_check_covered(names, n, domains, n_domains, service, c);
	store_strings_free(names, n);
	return r;
}

int cv_store_service_put(struct cv_store *store, const struct cv_service_record *svc,
			 int64_t now, int *ret_created, struct cv_conflict *conflict,
			 const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int64_t id = 0, cert_id = 0;
	char environment[65];
	int r, unbound = 1, created = 0;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	/* The environment as it spells itself, so that services of one environment share one
	 * spelling. */
	r = store_environment_resolve_on(db, svc->environment, environment, NULL);
	if (r == CV_ERR_UNKNOWN_ENVIRONMENT && conflict != NULL)
		snprintf(conflict->detail, sizeof(conflict->detail), "%s", svc->environment);
	if (r < 0)
		goto out;
	r = lookup_id(db, "SELECT id FROM services WHERE name = ?1", svc->name, &id, NULL);
	if (r == CV_ERR_NOT_FOUND) {
		created = 1;
		r = store_run(db,
			"INSERT INTO services (name, environment, description, created_at,"
			" updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
			"ttti", svc->name, environment, svc->description, now);
		id = cvdb_last_insert_rowid(db);
		if (r < 0)
			goto out;
	} else {
		if (r < 0)
			goto out;
		r = lookup_id(db, "SELECT cert_id FROM services WHERE name = ?1", svc->name,
			      &cert_id, &unbound);
		/* New domains must stay covered by the certificate it uses. */
		if (r == 0 && !unbound)
			r = check_cert_covers(db, cert_id, svc->domains, svc->n_domains,
					      svc->name, conflict);
		/* And the certificate must be for the new environment. */
		if (r == 0 && !unbound) {
			r = store_cert_allows_environment_on(db, cert_id, environment);
			if (r == CV_ERR_ENVIRONMENT_NOT_ALLOWED && conflict != NULL) {
				snprintf(conflict->service, sizeof(conflict->service), "%s",
					 svc->name);
				snprintf(conflict->detail, sizeof(conflict->detail), "%s",
					 environment);
			}
		}
		if (r == 0)
			r = store_run(db,
				"UPDATE services SET environment = ?1, description = ?2,"
				" updated_at = ?3 WHERE id = ?4",
				"ttii", environment, svc->description, now, id);
		if (r == 0)
			r = store_run(db, "DELETE FROM service_domains WHERE service_id = ?1", "i", id);
		if (r < 0)
			goto out;
	}
	r = store_insert_strings(db,
				 "INSERT INTO service_domains (service_id, position, domain)"
				 " VALUES (?, ?, ?)",
				 id, svc->domains, svc->n_domains);
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	r = store_finish(db, r);
	store_return(store, conn);
	if (r == 0)
		*ret_created = created;
	return r;
}

int cv_store_service_get(struct cv_store *store, const char *name,
			 struct cv_service_record **ret_svc)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL, *doms = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, SERVICE_SELECT " WHERE s.name = ?1", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, name);
	if (rc == SQLITE_OK)
		rc = cvdb_prepare(db, STORE_SERVICE_DOMAINS_SQL, 0, &doms, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0)
		r = read_service(stmt, doms, ret_svc);
out:
	cvdb_finalize(stmt);
	cvdb_finalize(doms);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int cv_store_service_remove(struct cv_store *store, const char *name,
			     const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	/* The domains go by the cascade. */
	if (r == 0)
		r = store_run(db, "DELETE FROM services WHERE name = ?1", "t", name);
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

static void not_found(struct cv_conflict *c, const char *what)
{
	if (c != NULL)
		snprintf(c->detail, sizeof(c->detail), "%s", what);
}

int cv_store_service_bind(struct cv_store *store, const char *name, const char *cert_name,
			  int64_t now, struct cv_conflict *conflict,
			  const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int64_t service_id = 0, cert_id = 0, has_key = 0, not_before = 0;
	char **domains = NULL, environment[65];
	size_t n = 0;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = lookup_id(db, "SELECT id FROM services WHERE name = ?1", name, &service_id, NULL);
	if (r == CV_ERR_NOT_FOUND)
		not_found(conflict, "service");
	if (r < 0)
		goto out;
	/* Only an active certificate: not one being imported or deleted. */
	r = lookup_id(db, "SELECT id FROM certificates WHERE name = ?1 COLLATE NOCASE"
		      " AND state = 1", cert_name, &cert_id, NULL);
	if (r == CV_ERR_NOT_FOUND)
		not_found(conflict, "certificate");
	if (r == 0)
		r = lookup_id(db, "SELECT has_key FROM certificates WHERE name = ?1 COLLATE NOCASE"
			      " AND state = 1", cert_name, &has_key, NULL);
	if (r == 0)
		r = lookup_id(db, "SELECT not_before FROM certificates WHERE name = ?1 COLLATE NOCASE"
			      " AND state = 1", cert_name, &not_before, NULL);
	if (r < 0)
		goto out;
	/* A service serves TLS with the key: a certificate without one cannot serve. */
	if (!has_key) {
		r = CV_ERR_NO_PRIVATE_KEY;
		goto out;
	}
	/* Upcoming: a client would refuse it until its start. */
	if (not_before > now) {
		if (conflict != NULL)
			conflict->when = not_before;
		r = CV_ERR_NOT_YET_VALID;
		goto out;
	}
	r = lookup_text(db, "SELECT environment FROM services WHERE id = ?1", service_id,
			environment, sizeof(environment));
	if (r == 0)
		r = store_cert_allows_environment_on(db, cert_id, environment);
	if (r == CV_ERR_ENVIRONMENT_NOT_ALLOWED && conflict != NULL) {
		snprintf(conflict->service, sizeof(conflict->service), "%s", name);
		snprintf(conflict->detail, sizeof(conflict->detail), "%s", environment);
	}
	if (r == 0)
		r = domains_of(db, STORE_SERVICE_DOMAINS_SQL, service_id, &domains, &n);
	if (r == 0)
		r = check_cert_covers(db, cert_id, domains, n, name, conflict);
	/* Binding again to the same certificate changes nothing. */
	if (r == 0)
		r = store_run(db,
			"UPDATE services SET bound_at = CASE WHEN cert_id IS NOT DISTINCT FROM ?1 THEN bound_at"
			" ELSE ?2 END, updated_at = CASE WHEN cert_id IS NOT DISTINCT FROM ?1 THEN updated_at"
			" ELSE ?2 END, cert_id = ?1 WHERE id = ?3",
			"iii", cert_id, now, service_id);
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	store_strings_free(domains, n);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int cv_store_service_unbind(struct cv_store *store, const char *name, int64_t now,
			    struct cv_conflict *conflict, const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int64_t cert_id = 0;
	int r, unbound = 1;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = lookup_id(db, "SELECT cert_id FROM services WHERE name = ?1", name, &cert_id,
		      &unbound);
	if (r == CV_ERR_NOT_FOUND)
		not_found(conflict, "service");
	if (r < 0)
		goto out;
	if (unbound) {
		not_found(conflict, "certificate");
		r = CV_ERR_NOT_FOUND;
		goto out;
	}
	r = store_run(db,
		"UPDATE services SET cert_id = NULL, bound_at = NULL, updated_at = ?1"
		" WHERE name = ?2",
		"it", now, name);
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int cv_store_service_list(struct cv_store *store, const struct cv_service_filter *filter,
			  struct cv_service_page **ret_page)
{
	char sql[3072], scope[2048];
	struct cv_service_page *page = NULL;
	cvdb_stmt *stmt = NULL, *doms = NULL;
	struct store_conn *conn = NULL;
	cvdb *db = NULL;
	int n, rc, r, idx = 0;

	if (filter->limit < 1 || filter->limit > LIST_LIMIT_MAX)
		return CV_ERR_BAD_REQUEST;
	r = store_scope_service_where(filter->scope, "s.", scope, sizeof(scope));
	if (r < 0)
		return r;
	/* Put together from constant fragments; every value is bound, in this order (a
	 * scope's by name, and the limit last). */
	n = snprintf(sql, sizeof(sql), SERVICE_SELECT " WHERE 1 = 1%s%s%s%s ORDER BY s.name LIMIT ?",
		     /* Services hold the environment's own spelling: the name given is matched
		      * ignoring case against the environments, and services_environment finds
		      * the services of the one found. */
		     filter->environment != NULL
			     ? " AND s.environment = (SELECT name FROM environments WHERE name = ?)"
			     : "",
		     filter->certificate != NULL
			     ? " AND s.cert_id = (SELECT id FROM certificates"
			       " WHERE name = ? COLLATE NOCASE AND state = 1)"
			     : "",
		     filter->after != NULL ? " AND s.name > ?" : "", scope);
	if (n < 0 || (size_t)n >= sizeof(sql))
		return CV_ERR_INTERNAL;
	page = calloc(1, sizeof(*page));
	if (page != NULL)
		page->items = calloc(filter->limit, sizeof(*page->items));
	if (page == NULL || page->items == NULL) {
		cv_store_service_page_free(page);
		return CV_ERR_NOMEM;
	}
	conn = store_borrow(store);
	db = conn->db;
	r = store_exec(db, "BEGIN");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK && filter->environment != NULL)
		rc = store_bind_text(stmt, ++idx, filter->environment);
	if (rc == SQLITE_OK && filter->certificate != NULL)
		rc = store_bind_text(stmt, ++idx, filter->certificate);
	if (rc == SQLITE_OK && filter->after != NULL)
		rc = store_bind_text(stmt, ++idx, filter->after);
	if (rc == SQLITE_OK)
		rc = store_scope_bind(stmt, filter->scope);
	/* The limit is the last parameter: the scope's named ones came before it. */
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, cvdb_bind_parameter_count(stmt),
					(int64_t)filter->limit + 1);
	if (rc == SQLITE_OK)
		rc = cvdb_prepare(db, STORE_SERVICE_DOMAINS_SQL, 0, &doms, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		if (page->n == filter->limit) {
			page->has_more = 1;
			continue;
		}
		r = read_service(stmt, doms, &page->items[page->n]);
		if (r < 0)
			goto out;
		page->n++;
	}
	r = rc == SQLITE_DONE ? 0 : store_err(rc);
out:
	cvdb_finalize(stmt);
	cvdb_finalize(doms);
	r = store_finish(db, r);
	store_return(store, conn);
	if (r == 0) {
		*ret_page = page;
		page = NULL;
	}
	cv_store_service_page_free(page);
	return r;
}
