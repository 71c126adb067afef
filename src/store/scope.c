/* store: what a scoped API token may see (issue 18 part 3), as SQL conditions the lists add
 * to their own and as the checks of one object. The conditions are put together from
 * constant fragments numbered by position; every pattern and name is bound. */
#include <stdio.h>
#include <string.h>

#include "certvault/util.h"
#include "internal.h"

/* Appends fmt's text to buf at *used; CV_ERR_INTERNAL when it does not fit. */
static int append(char *buf, size_t len, size_t *used, const char *text)
{
	size_t n = strlen(text);

	if (*used + n + 1 > len)
		return CV_ERR_INTERNAL;
	memcpy(buf + *used, text, n + 1);
	*used += n;
	return 0;
}

/* " AND (<column> LIKE <:p0 as LIKE> OR ...)" for n patterns. A pattern is letters, digits,
 * hyphens, * and ?, lower-cased (vault/scope.c), matched against the lower-cased name: so
 * '*' -> '%' and '?' -> '_' make a LIKE pattern that means what the glob means, on SQLite
 * and on PostgreSQL alike (which has no GLOB); no character of it needs escaping. */
static int globs_where(const char *column, const char *prefix, size_t n, char *buf,
		       size_t len, size_t *used)
{
	char one[160];
	size_t i;
	int r = 0;

	if (n == 0)
		return 0;
	r = append(buf, len, used, " AND (");
	for (i = 0; r == 0 && i < n; i++) {
		snprintf(one, sizeof(one), "%s%s LIKE replace(replace(:%s%zu, '*', '%%'), '?', '_') ESCAPE '\\'",
			 i > 0 ? " OR " : "", column, prefix, i);
		r = append(buf, len, used, one);
	}
	return r == 0 ? append(buf, len, used, ")") : r;
}

/* ":se0, :se1, ..." for the scope's environments. */
static int env_list(size_t n, char *buf, size_t len, size_t *used)
{
	char one[40];
	size_t i;
	int r = 0;

	for (i = 0; r == 0 && i < n; i++) {
		snprintf(one, sizeof(one), "%s:se%zu", i > 0 ? ", " : "", i);
		r = append(buf, len, used, one);
	}
	return r;
}

int store_scope_cert_where(const struct cv_scope_objects *scope, char *buf, size_t len)
{
	size_t used = 0;
	int r;

	buf[0] = '\0';
	if (scope == NULL)
		return 0;
	r = globs_where("lower(name)", "sc", scope->n_certificates, buf, len, &used);
	if (r < 0 || scope->n_environments == 0)
		return r;
	/* Inside an environment: the certificate names it, or a service of it uses the
	 * certificate (a certificate for any environment is inside none until it is used). */
	r = append(buf, len, &used, " AND (id IN (SELECT ce.cert_id FROM certificate_environments"
		   " ce JOIN environments e ON e.id = ce.env_id WHERE e.name IN (");
	if (r == 0)
		r = env_list(scope->n_environments, buf, len, &used);
	if (r == 0)
		r = append(buf, len, &used, ")) OR id IN (SELECT cert_id FROM services WHERE"
			   " cert_id IS NOT NULL AND environment COLLATE NOCASE IN (");
	if (r == 0)
		r = env_list(scope->n_environments, buf, len, &used);
	if (r == 0)
		r = append(buf, len, &used, ")))");
	return r;
}

int store_scope_service_where(const struct cv_scope_objects *scope, const char *alias,
			      char *buf, size_t len)
{
	char column[96];
	size_t used = 0;
	int r;

	buf[0] = '\0';
	if (scope == NULL)
		return 0;
	snprintf(column, sizeof(column), "lower(%sname)", alias);
	r = globs_where(column, "ss", scope->n_services, buf, len, &used);
	if (r < 0 || scope->n_environments == 0)
		return r;
	snprintf(column, sizeof(column), " AND %senvironment COLLATE NOCASE IN (", alias);
	r = append(buf, len, &used, column);
	if (r == 0)
		r = env_list(scope->n_environments, buf, len, &used);
	if (r == 0)
		r = append(buf, len, &used, ")");
	return r;
}

int store_scope_environment_where(const struct cv_scope_objects *scope, const char *column,
				  char *buf, size_t len)
{
	size_t used = 0;
	int r;

	buf[0] = '\0';
	if (scope == NULL || scope->n_environments == 0)
		return 0;
	r = append(buf, len, &used, " AND ");
	if (r == 0)
		r = append(buf, len, &used, column);
	if (r == 0)
		r = append(buf, len, &used, " COLLATE NOCASE IN (");
	if (r == 0)
		r = env_list(scope->n_environments, buf, len, &used);
	if (r == 0)
		r = append(buf, len, &used, ")");
	return r;
}

static int bind_named(cvdb_stmt *stmt, const char *prefix, size_t i, const char *value)
{
	char name[40];
	int idx;

	snprintf(name, sizeof(name), ":%s%zu", prefix, i);
	idx = cvdb_bind_parameter_index(stmt, name);
	return idx == 0 ? SQLITE_OK : cvdb_bind_text(stmt, idx, value, -1);
}

int store_scope_bind(cvdb_stmt *stmt, const struct cv_scope_objects *scope)
{
	size_t i;
	int rc = SQLITE_OK;

	if (scope == NULL)
		return SQLITE_OK;
	for (i = 0; rc == SQLITE_OK && i < scope->n_certificates; i++)
		rc = bind_named(stmt, "sc", i, scope->certificates[i]);
	for (i = 0; rc == SQLITE_OK && i < scope->n_services; i++)
		rc = bind_named(stmt, "ss", i, scope->services[i]);
	for (i = 0; rc == SQLITE_OK && i < scope->n_environments; i++)
		rc = bind_named(stmt, "se", i, scope->environments[i]);
	return rc;
}

static int names_match(const char (*globs)[65], size_t n, const char *name)
{
	size_t i;

	if (n == 0)
		return 1;
	for (i = 0; i < n; i++)
		if (cv_glob_match(globs[i], name))
			return 1;
	return 0;
}

/* Whether the certificate whose row id is id (0: none, an unlinked JWK) is inside scope's
 * environments, on conn. */
static int cert_id_in_environments(struct store_conn *conn, int64_t id,
				   const struct cv_scope_objects *scope, int *ret_inside)
{
	char where[2048], sql[2304];
	cvdb_stmt *stmt;
	int r, rc;

	r = store_scope_cert_where(scope, where, sizeof(where));
	if (r < 0)
		return r;
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM certificates WHERE id = :id%s", where);
	/* Every request of a scoped token asks this: the statement stays prepared. */
	r = store_prepare(conn, sql, &stmt);
	if (r < 0)
		return r;
	rc = cvdb_bind_int64(stmt, cvdb_bind_parameter_index(stmt, ":id"), id);
	if (rc == SQLITE_OK)
		rc = store_scope_bind(stmt, scope);
	if (rc != SQLITE_OK)
		return store_err(rc);
	r = store_step_one(stmt);
	if (r == 0)
		*ret_inside = cvdb_column_int64(stmt, 0) > 0;
	return r;
}

int cv_store_cert_in_scope(struct cv_store *store, const char *name,
			   const struct cv_scope_objects *scope, int *ret_inside)
{
	struct store_conn *conn;
	cvdb_stmt *stmt;
	int64_t id;
	int r;

	*ret_inside = 0;
	if (!names_match((const char (*)[65])scope->certificates, scope->n_certificates, name))
		return 0;
	if (scope->n_environments == 0) {
		*ret_inside = 1;
		return 0;
	}
	conn = store_borrow(store);
	r = store_prepare(conn, "SELECT id FROM certificates WHERE name = ?1 COLLATE NOCASE",
			  &stmt);
	if (r == 0 && store_bind_text(stmt, 1, name) != SQLITE_OK)
		r = CV_ERR_DB;
	if (r == 0)
		r = store_step_one(stmt);
	if (r == 0) {
		id = cvdb_column_int64(stmt, 0);
		r = cert_id_in_environments(conn, id, scope, ret_inside);
	}
	store_return(store, conn);
	return r;
}

int cv_store_service_environment(struct cv_store *store, const char *name, char ret_env[65])
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt = NULL;
	int r, rc;

	rc = cvdb_prepare(conn->db, "SELECT environment FROM services WHERE name = ?1", 0,
				&stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, name);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0)
		r = store_copy_text(stmt, 0, ret_env, 65);
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}

int cv_store_jwk_in_scope(struct cv_store *store, const char *kid,
			  const struct cv_scope_objects *scope, int *ret_inside)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt = NULL;
	const char *name = NULL;
	int r, rc;

	*ret_inside = 0;
	rc = cvdb_prepare(conn->db, "SELECT c.id, c.name FROM jwks j LEFT JOIN certificates c"
				" ON c.id = j.cert_id WHERE j.kid = ?1", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, kid);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r < 0)
		goto out;
	if (cvdb_column_type(stmt, 0) == SQLITE_NULL) {
		*ret_inside = scope->n_certificates == 0 && scope->n_environments == 0;
		goto out;
	}
	r = store_column_text(stmt, 1, &name);
	if (r < 0 || !names_match((const char (*)[65])scope->certificates,
				  scope->n_certificates, name))
		goto out;
	if (scope->n_environments == 0) {
		*ret_inside = 1;
		goto out;
	}
	r = cert_id_in_environments(conn, cvdb_column_int64(stmt, 0), scope, ret_inside);
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}
