/* store: pending certificates, keys generated in the token waiting for their certificate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/fault.h"
#include "internal.h"

#define PENDING_COLS                                                                     \
	"id, name, coalesce(cert_id, 0), description, state, key_id, key_type, subject, "  \
	"created_by, created_at, expires_at, key_label"

void cv_key_label(const char *name, int64_t version, char buf[CV_KEY_LABEL_MAX + 1])
{
	snprintf(buf, CV_KEY_LABEL_MAX + 1, "%s.v%lld", name, (long long)version);
}

const char *cv_key_origin_name(enum cv_key_origin origin)
{
	switch (origin) {
	case CV_KEY_ORIGIN_IMPORTED:
		return "imported";
	case CV_KEY_ORIGIN_GENERATED:
		return "generated";
	case CV_KEY_ORIGIN_UNWRAPPED:
		return "unwrapped";
	}
	return "unknown";
}

static void pending_release(struct cv_pending_record *rec)
{
	free(rec->description);
	free(rec->csr_der);
	rec->description = NULL;
	rec->csr_der = NULL;
}

void cv_store_pending_free(struct cv_pending_record *rec)
{
	if (rec == NULL)
		return;
	pending_release(rec);
	free(rec);
}

void cv_store_pending_array_free(struct cv_pending_record *recs, size_t n)
{
	size_t i;

	for (i = 0; recs != NULL && i < n; i++)
		pending_release(&recs[i]);
	free(recs);
}

/* Reads PENDING_COLS (and the CSR from column 11 when with_csr) into rec. */
static int pending_read(cvdb_stmt *stmt, int with_csr, struct cv_pending_record *rec)
{
	const void *blob;
	int n, r;

	memset(rec, 0, sizeof(*rec));
	rec->id = cvdb_column_int64(stmt, 0);
	r = store_copy_text(stmt, 1, rec->name, sizeof(rec->name));
	rec->cert_id = cvdb_column_int64(stmt, 2);
	if (r == 0)
		r = store_dup_text(stmt, 3, &rec->description);
	rec->state = (enum cv_pending_state)cvdb_column_int64(stmt, 4);
	if (r == 0)
		r = store_copy_text(stmt, 6, rec->key_type, sizeof(rec->key_type));
	if (r == 0)
		r = store_copy_text(stmt, 7, rec->subject, sizeof(rec->subject));
	if (r == 0)
		r = store_copy_text(stmt, 8, rec->created_by, sizeof(rec->created_by));
	if (r < 0)
		goto out;
	blob = cvdb_column_blob(stmt, 5);
	if (blob == NULL || cvdb_column_bytes(stmt, 5) != (int)sizeof(rec->key_id)) {
		r = CV_ERR_DB;
		goto out;
	}
	memcpy(rec->key_id, blob, sizeof(rec->key_id));
	rec->created_at = cvdb_column_int64(stmt, 9);
	rec->expires_at = cvdb_column_int64(stmt, 10);
	r = store_copy_text(stmt, 11, rec->key_label, sizeof(rec->key_label));
	if (r < 0)
		goto out;
	if (with_csr) {
		blob = cvdb_column_blob(stmt, 12);
		n = cvdb_column_bytes(stmt, 12);
		if (blob == NULL || n <= 0) {
			r = CV_ERR_DB;
			goto out;
		}
		rec->csr_der = malloc((size_t)n);
		if (rec->csr_der == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		memcpy(rec->csr_der, blob, (size_t)n);
		rec->csr_der_len = (size_t)n;
	}
	r = 0;
out:
	if (r < 0)
		pending_release(rec);
	return r;
}

int cv_store_pending_insert(struct cv_store *store, struct cv_pending_record *rec)
{
	static const char sql[] =
		"INSERT INTO pending_certificates (name, cert_id, description, state, key_id,"
		" key_type, subject, created_by, created_at, expires_at, key_label, owner_node)"
		" VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	/* The write lock first, so the checks still hold at the INSERT. */
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	if (rec->cert_id == 0) {
		r = store_name_exists(db, rec->name);
		if (r == 1)
			r = CV_ERR_NAME_TAKEN;
	} else {
		rc = cvdb_prepare(db, "SELECT (SELECT count(*) FROM certificates WHERE"
					" id = ?1 AND state = 1), (SELECT count(*) FROM"
					" pending_certificates WHERE cert_id = ?1)", 0, &stmt,
					NULL);
		if (rc == SQLITE_OK)
			rc = cvdb_bind_int64(stmt, 1, rec->cert_id);
		if (rc == SQLITE_OK)
			rc = cvdb_step(stmt);
		if (rc != SQLITE_ROW)
			r = store_err(rc);
		else if (cvdb_column_int64(stmt, 0) == 0)
			r = CV_ERR_NOT_FOUND;
		else if (cvdb_column_int64(stmt, 1) > 0)
			r = CV_ERR_NAME_TAKEN;
		cvdb_finalize(stmt);
		stmt = NULL;
	}
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, rec->name);
	if (rc == SQLITE_OK)
		rc = rec->cert_id != 0 ? cvdb_bind_int64(stmt, 2, rec->cert_id) :
			cvdb_bind_null(stmt, 2);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 3, rec->description);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(stmt, 4, rec->key_id, (int)sizeof(rec->key_id));
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 5, rec->key_type);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 6, rec->subject);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 7, rec->created_by);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 8, rec->created_at);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 9, rec->expires_at);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 10, rec->key_label);
	/* Being created is this node's write in flight until the row is ready. */
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 11, store_node(store));
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
		rc = SQLITE_OK;
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	rec->id = cvdb_last_insert_rowid(db);
	rec->state = CV_PENDING_CREATING;
	r = 0;
out:
	cvdb_finalize(stmt);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

/* Runs one UPDATE or DELETE of the row id (?1) with audit in a transaction; CV_ERR_NOT_FOUND
 * when it touched no row. ?2 is blob when there is one, ?3 this node's name. */
static int pending_change(struct cv_store *store, const char *sql, int64_t id,
			  const unsigned char *blob, size_t blob_len,
			  const struct cv_audit_entry *audit, const char *fault)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, id);
	if (rc == SQLITE_OK && blob != NULL)
		rc = cvdb_bind_blob(stmt, 2, blob, blob_len);
	if (rc == SQLITE_OK && cvdb_bind_parameter_index(stmt, "?3") > 0)
		rc = store_bind_text(stmt, 3, store_node(store));
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
		rc = SQLITE_OK;
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	if (cvdb_changes(db) == 0) {
		r = CV_ERR_NOT_FOUND;
		goto out;
	}
	r = store_audit_append_on(db, audit);
	if (r == 0 && fault != NULL)
		cv_fault_point(fault);
out:
	cvdb_finalize(stmt);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int cv_store_pending_ready(struct cv_store *store, int64_t id, const unsigned char *csr_der,
			   size_t csr_der_len, const struct cv_audit_entry *audit)
{
	if (csr_der == NULL || csr_der_len == 0)
		return CV_ERR_INTERNAL;
	/* Only while the row is still this node's: another node's reconciler that took it
	 * over (this node silent past its lease) is destroying its key. */
	return pending_change(store, "UPDATE pending_certificates SET state = 1, csr_der = ?2"
			      " WHERE id = ?1 AND state = 0 AND owner_node = ?3", id, csr_der,
			      csr_der_len, audit, "generate.in_ready");
}

int cv_store_pending_mark_cancelling(struct cv_store *store, int64_t id,
				     const struct cv_audit_entry *audit)
{
	return pending_change(store, "UPDATE pending_certificates SET state = 2, owner_node = ?3"
			      " WHERE id = ?1 AND state = 1", id, NULL, 0, audit, NULL);
}

int cv_store_pending_remove(struct cv_store *store, int64_t id)
{
	return pending_change(store, "DELETE FROM pending_certificates WHERE id = ?1", id, NULL,
			      0, NULL, NULL);
}

int cv_store_pending_get(struct cv_store *store, const char *name,
			 struct cv_pending_record **ret_rec)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_pending_record *rec = NULL;
	cvdb_stmt *stmt;
	int rc, r;

	r = store_prepare(conn, "SELECT " PENDING_COLS ", csr_der FROM pending_certificates"
			  " WHERE name = ?1 AND state = 1", &stmt);
	if (r < 0)
		goto out;
	rc = store_bind_text(stmt, 1, name);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r < 0)
		goto out;
	rec = calloc(1, sizeof(*rec));
	if (rec == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = pending_read(stmt, 1, rec);
	if (r < 0)
		goto out;
	*ret_rec = rec;
	rec = NULL;
out:
	free(rec);
	store_return(store, conn);
	return r;
}

/* Every row sql gives (PENDING_COLS, ?1 bound to now) into a new array. */
static int pending_rows(struct cv_store *store, const char *sql, int64_t now,
			struct cv_pending_record **ret_recs, size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_pending_record *recs = NULL, *grown;
	size_t n = 0, cap = 0;
	cvdb_stmt *stmt;
	int rc, r;

	r = store_prepare(conn, sql, &stmt);
	if (r < 0)
		goto out;
	rc = cvdb_bind_int64(stmt, 1, now);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(recs, &cap, n, sizeof(*recs));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		recs = grown;
		r = pending_read(stmt, 0, &recs[n]);
		if (r < 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	*ret_recs = recs;
	*ret_n = n;
	recs = NULL;
	n = 0;
	r = 0;
out:
	cv_store_pending_array_free(recs, n);
	store_return(store, conn);
	return r;
}

int cv_store_pending_list(struct cv_store *store, struct cv_pending_record **ret_recs,
			  size_t *ret_n)
{
	return pending_rows(store, "SELECT " PENDING_COLS " FROM pending_certificates"
			    " WHERE state = 1 AND ?1 = ?1 ORDER BY name", 0, ret_recs, ret_n);
}

int cv_store_pending_count(struct cv_store *store, int64_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	r = store_prepare(conn, "SELECT count(*) FROM pending_certificates WHERE state = 1",
			  &stmt);
	if (r == 0)
		r = store_step_one(stmt);
	if (r == 0)
		*ret_n = cvdb_column_int64(stmt, 0);
	store_return(store, conn);
	return r;
}

int cv_store_pending_foreach_expired(struct cv_store *store, int64_t now,
				     int (*fn)(const struct cv_pending_record *rec, void *arg),
				     void *arg)
{
	struct cv_pending_record *recs = NULL;
	size_t n = 0, i;
	int r;

	/* Read first, called after: fn changes the table. A ready row is no node's write in
	 * flight: its cancel (cv_store_pending_mark_cancelling, state 1 -> 2) is the claim. */
	r = pending_rows(store, "SELECT " PENDING_COLS " FROM pending_certificates"
			 " WHERE state = 1 AND expires_at <= ?1 ORDER BY id", now, &recs, &n);
	for (i = 0; r == 0 && i < n; i++)
		r = fn(&recs[i], arg);
	cv_store_pending_array_free(recs, n);
	return r;
}

int cv_store_pending_foreach_claimed(struct cv_store *store, int64_t now, int mine,
				     int (*fn)(const struct cv_pending_record *rec, void *arg),
				     void *arg)
{
	static const char claim[] =
		"UPDATE pending_certificates SET owner_node = ?1 WHERE state != 1 AND "
		STORE_CLAIMABLE("pending_certificates.owner_node", "?1", "?2", "?3")
		" RETURNING id";
	struct store_conn *conn = store_borrow(store);
	struct cv_pending_record *recs = NULL;
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int64_t *ids = NULL;
	size_t n = 0, n_ids = 0, i;
	int rc, r, held = 1;

	/* Claimed and read in one write transaction, committed before fn acts: the node whose
	 * write it was finds the row no longer its own (cv_store_pending_ready). */
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
	rc = cvdb_prepare(db, "SELECT " PENDING_COLS " FROM pending_certificates WHERE id = ?1",
			  0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	for (i = 0; i < n_ids; i++) {
		rc = cvdb_bind_int64(stmt, 1, ids[i]);
		r = rc == SQLITE_OK ? store_step_one(stmt) : store_err(rc);
		if (r == 0)
			r = pending_read(stmt, 0, &recs[n]);
		if (r < 0)
			goto out;
		n++;
		cvdb_reset(stmt);
	}
	cvdb_finalize(stmt);
	stmt = NULL;
	r = store_finish(db, 0);
	store_return(store, conn);
	held = 0;
	for (i = 0; r == 0 && i < n; i++)
		r = fn(&recs[i], arg);
out:
	if (held) {
		cvdb_finalize(stmt);
		r = store_finish(db, r);
		store_return(store, conn);
	}
	cv_store_pending_array_free(recs, n);
	free(ids);
	return r;
}

int cv_store_pending_merge_new(struct cv_store *store, int64_t pending_id,
			       struct cv_cert_record *rec, const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int64_t id = 0;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	/* The row goes first: its name is then free for the certificate it becomes. */
	/* Ready (a merge) or still creating (a self-signed certificate, made at once). */
	/* A row still being created is this node's own (a self-signed certificate), unless
	 * another node's reconciler took it over. */
	r = store_run(db, "DELETE FROM pending_certificates WHERE id = ?1 AND (state = 1 OR"
		      " (state = 0 AND owner_node = ?2)) AND cert_id IS NULL", "it", pending_id,
		      store_node(store));
	if (r < 0)
		goto out;
	if (cvdb_changes(db) == 0) {
		r = CV_ERR_NOT_FOUND;
		goto out;
	}
	r = store_cert_insert_on(db, rec, CV_CERT_ACTIVE, &id, NULL);
	if (r < 0)
		goto out;
	r = store_audit_append_on(db, audit);
	if (r < 0)
		goto out;
	cv_fault_point("merge.in_commit");
out:
	r = store_finish(db, r);
	store_return(store, conn);
	if (r == 0) {
		rec->id = id;
		rec->state = CV_CERT_ACTIVE;
		rec->version = 1;
		rec->current_since = rec->created_at;
	}
	return r;
}

int cv_store_key_origin_counts(struct cv_store *store, int64_t ret_counts[3])
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int64_t origin;
	int rc, r;

	ret_counts[0] = ret_counts[1] = ret_counts[2] = 0;
	r = store_prepare(conn, "SELECT key_origin, count(*) FROM certificates WHERE state = 1"
			  " GROUP BY key_origin", &stmt);
	if (r < 0)
		goto out;
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		origin = cvdb_column_int64(stmt, 0);
		if (origin >= 0 && origin <= 2)
			ret_counts[origin] = cvdb_column_int64(stmt, 1);
	}
	r = rc == SQLITE_DONE ? 0 : store_err(rc);
out:
	store_return(store, conn);
	return r;
}
