/* store: environments, and the environments a certificate is for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

#define LIST_LIMIT_MAX 1000

/* The columns an environment is read from, in the order read_environment expects. name is
 * declared NOCASE, so "e.name = ?" matches ignoring case. */
#define ENV_SELECT                                                                         \
	"SELECT e.id, e.name, e.display_name, e.description, e.created_at, e.updated_at,"  \
	" (SELECT count(*) FROM services s WHERE s.environment = e.name),"                 \
	" (SELECT count(*) FROM certificate_environments ce WHERE ce.env_id = e.id)"       \
	" FROM environments e"

void cv_store_environment_free(struct cv_environment_record *rec)
{
	if (rec == NULL)
		return;
	free(rec->display_name);
	free(rec->description);
	free(rec);
}

void cv_store_environments_free(struct cv_environment_record *recs, size_t n)
{
	size_t i;

	for (i = 0; recs != NULL && i < n; i++) {
		free(recs[i].display_name);
		free(recs[i].description);
	}
	free(recs);
}

static int read_environment(cvdb_stmt *stmt, struct cv_environment_record *rec)
{
	int r;

	memset(rec, 0, sizeof(*rec));
	rec->id = cvdb_column_int64(stmt, 0);
	r = store_copy_text(stmt, 1, rec->name, sizeof(rec->name));
	if (r == 0)
		r = store_dup_text(stmt, 2, &rec->display_name);
	if (r == 0)
		r = store_dup_text(stmt, 3, &rec->description);
	rec->created_at = cvdb_column_int64(stmt, 4);
	rec->updated_at = cvdb_column_int64(stmt, 5);
	rec->n_services = cvdb_column_int64(stmt, 6);
	rec->n_certificates = cvdb_column_int64(stmt, 7);
	return r;
}

int store_environment_resolve_on(cvdb *db, const char *name, char ret_name[65],
				 int64_t *ret_id)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, "SELECT id, name FROM environments WHERE name = ?1", 0,
				&stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, name);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == CV_ERR_NOT_FOUND)
		r = CV_ERR_UNKNOWN_ENVIRONMENT;
	if (r < 0)
		goto out;
	if (ret_id != NULL)
		*ret_id = cvdb_column_int64(stmt, 0);
	r = ret_name != NULL ? store_copy_text(stmt, 1, ret_name, 65) : 0;
out:
	cvdb_finalize(stmt);
	return r;
}

int store_cert_environments_set_on(cvdb *db, int64_t cert_id, char *const *names, size_t n,
				   struct cv_conflict *c)
{
	size_t i;
	int64_t env_id;
	int r;

	r = store_run(db, "DELETE FROM certificate_environments WHERE cert_id = ?1", "i",
		      cert_id);
	for (i = 0; r == 0 && i < n; i++) {
		r = store_environment_resolve_on(db, names[i], NULL, &env_id);
		if (r == CV_ERR_UNKNOWN_ENVIRONMENT && c != NULL)
			snprintf(c->detail, sizeof(c->detail), "%s", names[i]);
		/* OR IGNORE: one environment named twice (in two cases) is named once. */
		if (r == 0)
			r = store_run(db,
				      "INSERT OR IGNORE INTO certificate_environments (cert_id, env_id)"
				      " VALUES (?1, ?2)",
				      "ii", cert_id, env_id);
	}
	return r;
}

int store_cert_environments_on(cvdb *db, int64_t cert_id, char ***ret, size_t *ret_n)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db,
				"SELECT e.name FROM certificate_environments ce"
				" JOIN environments e ON e.id = ce.env_id WHERE ce.cert_id = ?1"
				" ORDER BY e.name", 0, &stmt, NULL);
	if (rc != SQLITE_OK)
		return store_err(rc);
	r = store_load_strings(stmt, cert_id, ret, ret_n);
	cvdb_finalize(stmt);
	return r;
}

int store_cert_allows_environment_on(cvdb *db, int64_t cert_id, const char *environment)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	/* e.name is NOCASE: the service's environment matches ignoring case. */
	rc = cvdb_prepare(db,
				"SELECT count(*), count(*) FILTER (WHERE e.name = ?2)"
				" FROM certificate_environments ce JOIN environments e"
				" ON e.id = ce.env_id WHERE ce.cert_id = ?1", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, cert_id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 2, environment);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r < 0)
		goto out;
	/* None named: the certificate is for any environment. */
	r = cvdb_column_int64(stmt, 0) == 0 || cvdb_column_int64(stmt, 1) > 0
		    ? 0
		    : CV_ERR_ENVIRONMENT_NOT_ALLOWED;
out:
	cvdb_finalize(stmt);
	return r;
}

int cv_store_environment_put(struct cv_store *store, const char *name,
			     const char *display_name, const char *description, int64_t now,
			     int *ret_created, char ret_name[65],
			     const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	char stored[65];
	int r, created = 0;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_environment_resolve_on(db, name, stored, NULL);
	if (r == CV_ERR_UNKNOWN_ENVIRONMENT) {
		created = 1;
		snprintf(stored, sizeof(stored), "%s", name);
		r = store_run(db,
			      "INSERT INTO environments (name, display_name, description,"
			      " created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
			      "ttti", name, display_name, description, now);
	} else if (r == 0) {
		r = store_run(db,
			      "UPDATE environments SET display_name = ?1, description = ?2,"
			      " updated_at = ?3 WHERE name = ?4",
			      "ttit", display_name, description, now, stored);
	}
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	r = store_finish(db, r);
	store_return(store, conn);
	if (r == 0) {
		*ret_created = created;
		if (ret_name != NULL)
			memcpy(ret_name, stored, sizeof(stored));
	}
	return r;
}

int cv_store_environment_get(struct cv_store *store, const char *name,
			     struct cv_environment_record **ret_rec)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_environment_record *rec = NULL;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rec = calloc(1, sizeof(*rec));
	if (rec == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	rc = cvdb_prepare(conn->db, ENV_SELECT " WHERE e.name = ?1", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, name);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0)
		r = read_environment(stmt, rec);
	if (r == 0) {
		*ret_rec = rec;
		rec = NULL;
	}
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	cv_store_environment_free(rec);
	return r;
}

int cv_store_environment_list(struct cv_store *store, const char *after, unsigned limit,
			      struct cv_environment_record **ret_recs, size_t *ret_n)
{
	return cv_store_environment_list_scoped(store, after, limit, NULL, ret_recs, ret_n);
}

int cv_store_environment_list_scoped(struct cv_store *store, const char *after,
				     unsigned limit, const struct cv_scope_objects *scope,
				     struct cv_environment_record **ret_recs, size_t *ret_n)
{
	struct store_conn *conn;
	struct cv_environment_record *recs = NULL;
	cvdb_stmt *stmt = NULL;
	char sql[1536], where[1024];
	size_t n = 0;
	int rc, r;

	if (limit < 1 || limit > LIST_LIMIT_MAX)
		return CV_ERR_BAD_REQUEST;
	r = store_scope_environment_where(scope, "e.name", where, sizeof(where));
	if (r < 0)
		return r;
	/* The UNIQUE index on name is NOCASE: the walk is in that order, keyset by it (every
	 * name is after ""). */
	if (snprintf(sql, sizeof(sql), ENV_SELECT " WHERE e.name > :after%s ORDER BY e.name"
		     " LIMIT :limit", where) >= (int)sizeof(sql))
		return CV_ERR_INTERNAL;
	recs = calloc(limit, sizeof(*recs));
	if (recs == NULL)
		return CV_ERR_NOMEM;
	conn = store_borrow(store);
	rc = cvdb_prepare(conn->db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, cvdb_bind_parameter_index(stmt, ":after"),
				     after != NULL ? after : "");
	if (rc == SQLITE_OK)
		rc = store_scope_bind(stmt, scope);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, cvdb_bind_parameter_index(stmt, ":limit"), limit);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		r = read_environment(stmt, &recs[n]);
		n++;
		if (r < 0)
			goto out;
	}
	r = rc == SQLITE_DONE ? 0 : store_err(rc);
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	if (r == 0) {
		*ret_recs = recs;
		*ret_n = n;
		recs = NULL;
	}
	cv_store_environments_free(recs, n);
	return r;
}

/* Names the first few users of an environment into c->detail, after a label. */
static int list_users(cvdb *db, const char *sql, int64_t id, const char *label,
		      struct cv_conflict *c, int *ret_any)
{
	char **names = NULL;
	cvdb_stmt *stmt = NULL;
	size_t n = 0, i;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc != SQLITE_OK)
		return store_err(rc);
	r = store_load_strings(stmt, id, &names, &n);
	cvdb_finalize(stmt);
	if (r < 0)
		return r;
	if (n > 0 && c != NULL) {
		struct cv_conflict list = { "", "", 0, 0 };
		size_t len = strlen(c->detail);

		for (i = 0; i < n; i++)
			store_conflict_append(&list, names[i]);
		snprintf(c->detail + len, sizeof(c->detail) - len, "%s%s %s",
			 len > 0 ? "; " : "", label, list.detail);
	}
	*ret_any |= n > 0;
	store_strings_free(names, n);
	return 0;
}

int cv_store_environment_remove(struct cv_store *store, const char *name,
				struct cv_conflict *conflict, const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int64_t id = 0;
	int r, used = 0;

	/* IMMEDIATE: no service can move into it, nor a certificate name it, between the
	 * check and the delete. */
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = store_environment_resolve_on(db, name, NULL, &id);
	if (r == CV_ERR_UNKNOWN_ENVIRONMENT)
		r = CV_ERR_NOT_FOUND;
	if (r < 0)
		goto out;
	if (conflict != NULL)
		conflict->detail[0] = '\0';
	/* The services keep the environment's own spelling, so the id's name finds them. */
	r = list_users(db,
		       "SELECT s.name FROM services s WHERE s.environment ="
		       " (SELECT name FROM environments WHERE id = ?1) ORDER BY s.name LIMIT 10",
		       id, "services", conflict, &used);
	if (r == 0)
		r = list_users(db,
			       /* A deleted certificate (issue 18) holds it too, until purged. */
			       "SELECT c.name || CASE WHEN c.held = 1 THEN ' (deleted)' ELSE '' END"
			       " FROM certificate_environments ce JOIN certificates c"
			       " ON c.id = ce.cert_id WHERE ce.env_id = ?1 ORDER BY c.name LIMIT 10",
			       id, "certificates", conflict, &used);
	if (r == 0 && used)
		r = CV_ERR_IN_USE;
	if (r == 0)
		r = store_run(db, "DELETE FROM environments WHERE id = ?1", "i", id);
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}
