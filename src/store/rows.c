/* store: reading columns and binding values, shared by the files of src/store. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A NOT NULL text column; NULL back from SQLite then means it ran out of memory. */
int store_column_text(cvdb_stmt *stmt, int col, const char **ret)
{
	const unsigned char *s = cvdb_column_text(stmt, col);

	if (s == NULL)
		return cvdb_column_type(stmt, col) == SQLITE_NULL ? CV_ERR_DB : CV_ERR_NOMEM;
	*ret = (const char *)s;
	return 0;
}

/* Into a fixed field of the record; a value that does not fit was not written by us. */
int store_copy_text(cvdb_stmt *stmt, int col, char *dst, size_t size)
{
	const char *s;
	int r;

	r = store_column_text(stmt, col, &s);
	if (r < 0)
		return r;
	if ((size_t)cvdb_column_bytes(stmt, col) >= size)
		return CV_ERR_DB;
	memcpy(dst, s, (size_t)cvdb_column_bytes(stmt, col) + 1);
	return 0;
}

int store_dup_text(cvdb_stmt *stmt, int col, char **ret)
{
	const char *s;
	int r;

	r = store_column_text(stmt, col, &s);
	if (r < 0)
		return r;
	*ret = strdup(s);
	return *ret == NULL ? CV_ERR_NOMEM : 0;
}

int store_step_one(cvdb_stmt *stmt)
{
	int rc = cvdb_step(stmt);

	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? CV_ERR_NOT_FOUND : store_err(rc);
}

int store_bind_text(cvdb_stmt *stmt, int idx, const char *s)
{
	return cvdb_bind_text(stmt, idx, s != NULL ? s : "", -1);
}


void store_strings_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

int store_load_strings(cvdb_stmt *stmt, int64_t id, char ***ret, size_t *ret_n)
{
	char **v = NULL, **grown;
	size_t n = 0, cap = 0;
	int rc, r;

	rc = cvdb_bind_int64(stmt, 1, id);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(v, &cap, n, sizeof(*v));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		v = grown;
		r = store_dup_text(stmt, 0, &v[n]);
		if (r < 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	*ret = v;
	*ret_n = n;
	v = NULL;
	n = 0;
	r = 0;
out:
	/* reset repeats the last step's error, already handled above. */
	(void)cvdb_reset(stmt);
	store_strings_free(v, n);
	return r;
}

int store_insert_strings(cvdb *db, const char *sql, int64_t id, char *const *v, size_t n)
{
	cvdb_stmt *stmt = NULL;
	size_t i;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	for (i = 0; i < n; i++) {
		rc = cvdb_bind_int64(stmt, 1, id);
		if (rc == SQLITE_OK)
			rc = cvdb_bind_int64(stmt, 2, (int64_t)i);
		if (rc == SQLITE_OK)
			rc = store_bind_text(stmt, 3, v[i]);
		if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
			rc = cvdb_reset(stmt);
		if (rc != SQLITE_OK) {
			r = store_err(rc);
			goto out;
		}
	}
	r = 0;
out:
	cvdb_finalize(stmt);
	return r;
}

void store_conflict_append_sep(struct cv_conflict *c, const char *item, const char *sep)
{
	static const char more[] = ", ...";
	size_t len, add;

	if (c == NULL)
		return;
	len = strlen(c->detail);
	/* Once cut, the list stays cut. */
	if (len >= strlen(more) && strcmp(c->detail + len - strlen(more), more) == 0)
		return;
	add = (len > 0 ? strlen(sep) : 0) + strlen(item);
	if (len + add + strlen(more) >= sizeof(c->detail)) {
		snprintf(c->detail + len, sizeof(c->detail) - len, "%s", len > 0 ? more : "...");
		return;
	}
	snprintf(c->detail + len, sizeof(c->detail) - len, "%s%s", len > 0 ? sep : "", item);
}

void store_conflict_append(struct cv_conflict *c, const char *item)
{
	store_conflict_append_sep(c, item, ", ");
}

int store_check_covered(char *const *names, size_t n_names, char *const *domains,
			size_t n_domains, const char *service, struct cv_conflict *c)
{
	size_t i;
	int r = 0;

	for (i = 0; i < n_domains; i++) {
		if (cv_x509_names_cover(names, n_names, domains[i]))
			continue;
		if (r == 0 && c != NULL) {
			snprintf(c->service, sizeof(c->service), "%s", service);
			c->detail[0] = '\0';
		}
		store_conflict_append(c, domains[i]);
		r = CV_ERR_DOMAIN_NOT_COVERED;
	}
	return r;
}

/* Runs sql with ?1..?n bound to the integers and texts given in order by kinds ('i' or
 * 't'). */
int store_run(cvdb *db, const char *sql, const char *kinds, ...)
{
	cvdb_stmt *stmt = NULL;
	va_list ap;
	int rc, i;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	va_start(ap, kinds);
	for (i = 0; rc == SQLITE_OK && kinds[i] != '\0'; i++) {
		if (kinds[i] == 'i')
			rc = cvdb_bind_int64(stmt, i + 1, va_arg(ap, int64_t));
		else
			rc = store_bind_text(stmt, i + 1, va_arg(ap, const char *));
	}
	va_end(ap);
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
		rc = SQLITE_OK;
	cvdb_finalize(stmt);
	return rc == SQLITE_OK ? 0 : store_err(rc);
}

void *store_grow(void *arr, size_t *cap, size_t n, size_t size)
{
	size_t want;
	void *grown;

	if (n < *cap)
		return arr;
	want = *cap == 0 ? 8 : 2 * *cap;
	if (want > SIZE_MAX / size)
		return NULL;
	grown = realloc(arr, want * size);
	if (grown != NULL)
		*cap = want;
	return grown;
}
