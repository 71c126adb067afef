/* store: soft-deleted certificates (issue 18 part 2): the delete that keeps the row, the
 * deleted list, the recover and the purge's mark. A deleted row is state 2 with held 1 (see
 * the 10 -> 11 step in db.c): every read of active rows already leaves it out, and its name
 * stays taken by the unique index. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "certvault/fault.h"
#include "internal.h"

#define DELETED_COLS STORE_CERT_COLS_FULL ", deleted_at, purge_after, deleted_by"
#define DELETED_LIST_COLS STORE_CERT_COLS_LIST ", deleted_at, purge_after, deleted_by"
#define DELETED_LIMIT_MAX 1000

/* The kids the delete took off the certificate, in the order it kept them. */
#define KIDS_SQL                                                                         \
	"SELECT json_extract(j.value, '$.kid') FROM certificates c,"                       \
	" json_each(nullif(c.deleted_jwks, '')) j WHERE c.id = ?1"
#define KIDS_SQL_PG                                                                      \
	"SELECT j.value->>'kid' FROM certificates c,"                                      \
	" json_array_elements(nullif(c.deleted_jwks, '')::json) j WHERE c.id = ?1"
#define TAGS_SQL                                                                         \
	"SELECT key || '=' || value FROM certificate_tags WHERE cert_id = ?1 ORDER BY key"

int cv_store_cert_delete_soft(struct cv_store *store, int64_t id, enum cv_jwk_action jwk_action,
			      int64_t now, int64_t purge_after, struct cv_conflict *conflict,
			      const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	/* IMMEDIATE: no service can start using it between the check and the change, and once
	 * deleted, binding no longer finds it. */
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_delete_checks_on(db, id, jwk_action, conflict);
	if (r < 0)
		goto out;
	/* Every JWK linked to it, active or superseded, as it is now: the recover puts each
	 * back. The delete's choice decides what happens to them meanwhile, as a delete at once
	 * would have done: gone (out of the public JWKS), or kept unlinked. */
	r = store_run(db, cvdb_pick(db,
		      "UPDATE certificates SET deleted_jwks = (SELECT json_group_array("
		      "json_object('kid', kid, 'action', ?2, 'cert_version', cert_version,"
		      " 'cert_name', cert_name, 'use', use, 'alg', alg, 'jwk', jwk, 'state', state,"
		      " 'superseded_by', superseded_by, 'superseded_at', superseded_at,"
		      " 'created_at', created_at, 'updated_at', updated_at))"
		      " FROM jwks WHERE cert_id = ?1) WHERE id = ?1 AND state = 1",
		      /* json_agg of no rows is NULL where json_group_array gives []. */
		      "UPDATE certificates SET deleted_jwks = coalesce((SELECT json_agg("
		      "json_build_object('kid', kid, 'action', ?2::text, 'cert_version', cert_version,"
		      " 'cert_name', cert_name, 'use', use, 'alg', alg, 'jwk', jwk, 'state', state,"
		      " 'superseded_by', superseded_by, 'superseded_at', superseded_at,"
		      " 'created_at', created_at, 'updated_at', updated_at))"
		      " FROM jwks WHERE cert_id = ?1)::text, '[]') WHERE id = ?1 AND state = 1"),
		      "it", id, jwk_action == CV_JWK_ACTION_DELETE ? "delete" : "disconnect");
	if (r == 0)
		r = store_run(db,
			      jwk_action == CV_JWK_ACTION_DELETE
				      ? "DELETE FROM jwks WHERE cert_id = ?1"
				      : "UPDATE jwks SET cert_id = NULL WHERE cert_id = ?1",
			      "i", id);
	if (r == 0)
		r = store_run(db,
			      "UPDATE certificates SET state = 2, held = 1, jwks_on_delete = 0,"
			      " deleted_at = ?2, purge_after = ?3, deleted_by = ?4"
			      " WHERE id = ?1 AND state = 1",
			      "iiit", id, now, purge_after, audit != NULL ? audit->actor_name : "");
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

/* Reads the deletion fields (columns from col on) into rec. */
static int read_deletion(cvdb_stmt *stmt, int col, struct cv_cert_record *rec)
{
	rec->deleted_at = cvdb_column_int64(stmt, col);
	rec->purge_after = cvdb_column_int64(stmt, col + 1);
	return store_copy_text(stmt, col + 2, rec->deleted_by, sizeof(rec->deleted_by));
}

/* Fills rec's domains, tags and the kids its delete took off it; with stmts prepared from
 * the three SQL texts, reset after each use. */
static int load_deleted_extras(cvdb_stmt *doms, cvdb_stmt *tags, cvdb_stmt *kids,
			       struct cv_cert_record *rec)
{
	int r;

	r = store_load_strings(doms, rec->id, &rec->domains, &rec->n_domains);
	if (r == 0)
		r = store_load_strings(tags, rec->id, &rec->tags, &rec->n_tags);
	if (r == 0)
		r = store_load_strings(kids, rec->id, &rec->kids, &rec->n_kids);
	return r;
}

static int prepare_extras(cvdb *db, cvdb_stmt **doms, cvdb_stmt **tags,
			  cvdb_stmt **kids)
{
	int rc;

	rc = cvdb_prepare(db, STORE_CERT_DOMAINS_SQL, 0, doms, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_prepare(db, TAGS_SQL, 0, tags, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_prepare(db, cvdb_pick(db, KIDS_SQL, KIDS_SQL_PG), 0, kids, NULL);
	return rc == SQLITE_OK ? 0 : store_err(rc);
}

int cv_store_deleted_get(struct cv_store *store, const char *name,
			 struct cv_cert_record **ret_rec)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_cert_record *rec = NULL;
	cvdb_stmt *stmt = NULL, *doms = NULL, *tags = NULL, *kids = NULL;
	int rc, r;

	r = store_read_begin(conn);
	if (r < 0)
		goto out;
	rc = cvdb_prepare(conn->db,
				"SELECT " DELETED_COLS " FROM certificates WHERE name = ?1"
				" COLLATE NOCASE AND state = 2 AND held = 1", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, name);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0)
		r = store_cert_read_row(stmt, 1, &rec);
	if (r == 0)
		r = read_deletion(stmt, 28, rec);
	if (r == 0)
		r = prepare_extras(conn->db, &doms, &tags, &kids);
	if (r == 0)
		r = load_deleted_extras(doms, tags, kids, rec);
	if (r == 0)
		r = store_cert_environments_on(conn->db, rec->id, &rec->environments,
					       &rec->n_environments);
out:
	cvdb_finalize(stmt);
	cvdb_finalize(doms);
	cvdb_finalize(tags);
	cvdb_finalize(kids);
	r = store_read_end(conn, r);
	store_return(store, conn);
	if (r == 0) {
		*ret_rec = rec;
		rec = NULL;
	}
	cv_store_cert_free(rec);
	return r;
}

int cv_store_deleted_list(struct cv_store *store, const char *after, unsigned limit,
			  struct cv_cert_page **ret_page)
{
	struct store_conn *conn;
	struct cv_cert_page *page;
	struct cv_cert_record **grown;
	cvdb_stmt *stmt = NULL, *doms = NULL, *tags = NULL, *kids = NULL;
	size_t cap = 0;
	int rc, r;

	if (limit < 1 || limit > DELETED_LIMIT_MAX)
		return CV_ERR_BAD_REQUEST;
	page = calloc(1, sizeof(*page));
	if (page == NULL)
		return CV_ERR_NOMEM;
	conn = store_borrow(store);
	r = store_read_begin(conn);
	if (r < 0)
		goto out;
	/* Keyset paging on the name (unique): a page costs the same at any depth. One row more
	 * than asked says whether a next page exists. */
	rc = cvdb_prepare(conn->db,
				"SELECT " DELETED_LIST_COLS " FROM certificates"
				" WHERE state = 2 AND held = 1 AND name > ?1 ORDER BY name LIMIT ?2", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, after != NULL ? after : "");
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, (int64_t)limit + 1);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = prepare_extras(conn->db, &doms, &tags, &kids);
	while (r == 0 && (rc = cvdb_step(stmt)) == SQLITE_ROW) {
		if (page->n == limit) {
			page->has_more = 1;
			break;
		}
		grown = store_grow(page->items, &cap, page->n, sizeof(*page->items));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			break;
		}
		page->items = grown;
		r = store_cert_read_row(stmt, 0, &page->items[page->n]);
		if (r < 0)
			break;
		page->n++;
		r = read_deletion(stmt, 20, page->items[page->n - 1]);
		if (r == 0)
			r = load_deleted_extras(doms, tags, kids, page->items[page->n - 1]);
	}
	if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		r = store_err(rc);
out:
	cvdb_finalize(stmt);
	cvdb_finalize(doms);
	cvdb_finalize(tags);
	cvdb_finalize(kids);
	r = store_read_end(conn, r);
	store_return(store, conn);
	if (r < 0) {
		cv_store_cert_page_free(page);
		return r;
	}
	*ret_page = page;
	return 0;
}

int cv_store_deleted_due(struct cv_store *store, int64_t now, size_t max, char ***ret,
			 size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt = NULL;
	int rc, r;

	/* certificates_held_purge: the due rows are one range of the partial index. ?1 is
	 * bound by store_load_strings, the id it reads for: here the clock. */
	rc = cvdb_prepare(conn->db,
				"SELECT name FROM certificates WHERE held = 1 AND purge_after <= ?1"
				" ORDER BY purge_after, id LIMIT ?2", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, (int64_t)max);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_load_strings(stmt, now, ret, ret_n);
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}

/* Puts back one JWK the delete took off certificate id, as kept in j (its JSON object):
 * *ret_relink says what became of it. */
static int relink_one(cvdb *db, int64_t id, const char *j, struct cv_jwk_relink *ret_relink)
{
	cvdb_stmt *stmt = NULL;
	const char *action;
	int rc, r;

	/* The kid and the action first: the JSON is ours, but a row edited by hand must not
	 * overflow the record. */
	rc = cvdb_prepare(db, cvdb_pick(db, "SELECT json_extract(?1, '$.kid'),"
					    " json_extract(?1, '$.action')",
				"SELECT ?1::json->>'kid', ?1::json->>'action'"), 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, j);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r == 0 && (cvdb_column_type(stmt, 0) != SQLITE_TEXT ||
		       cvdb_column_type(stmt, 1) != SQLITE_TEXT))
		r = CV_ERR_DB;
	if (r == 0)
		r = store_copy_text(stmt, 0, ret_relink->kid, sizeof(ret_relink->kid));
	if (r < 0)
		goto out;
	action = (const char *)cvdb_column_text(stmt, 1);
	ret_relink->relinked = 0;
	if (strcmp(action, "delete") == 0) {
		/* Deleted with the certificate: back as it was, unless its kid (the key's
		 * thumbprint) was made again meanwhile, from another certificate with the same
		 * key. A superseded_by that names a JWK gone since is dropped. */
		r = store_run(db, cvdb_pick(db,
			      "INSERT OR IGNORE INTO jwks (kid, cert_id, cert_version, cert_name,"
			      " use, alg, jwk, state, superseded_by, superseded_at, created_at,"
			      " updated_at) SELECT json_extract(?2, '$.kid'), ?1,"
			      " json_extract(?2, '$.cert_version'), json_extract(?2, '$.cert_name'),"
			      " json_extract(?2, '$.use'), json_extract(?2, '$.alg'),"
			      " json_extract(?2, '$.jwk'), json_extract(?2, '$.state'),"
			      " json_extract(?2, '$.superseded_by'),"
			      " json_extract(?2, '$.superseded_at'),"
			      " json_extract(?2, '$.created_at'), json_extract(?2, '$.updated_at')",
			      "INSERT OR IGNORE INTO jwks (kid, cert_id, cert_version, cert_name,"
			      " use, alg, jwk, state, superseded_by, superseded_at, created_at,"
			      " updated_at) SELECT j->>'kid', ?1, (j->>'cert_version')::bigint,"
			      " j->>'cert_name', j->>'use', j->>'alg', j->>'jwk',"
			      " (j->>'state')::bigint, j->>'superseded_by',"
			      " (j->>'superseded_at')::bigint, (j->>'created_at')::bigint,"
			      " (j->>'updated_at')::bigint FROM (SELECT ?2::json AS j) x"),
			      "it", id, j);
		if (r == 0 && cvdb_changes(db) == 1)
			ret_relink->relinked = 1;
		else if (r == 0)
			ret_relink->reason = "a JWK with this kid was made again meanwhile (from "
					     "another certificate with the same key)";
	} else {
		/* Disconnected by the delete: linked again if it is still there and still
		 * unlinked. */
		r = store_run(db, "UPDATE jwks SET cert_id = ?1 WHERE kid = ?2 AND cert_id IS NULL",
			      "it", id, ret_relink->kid);
		if (r == 0 && cvdb_changes(db) == 1)
			ret_relink->relinked = 1;
		else if (r == 0)
			ret_relink->reason = "it was deleted or linked to another certificate "
					     "meanwhile";
	}
out:
	cvdb_finalize(stmt);
	return r;
}

int cv_store_cert_recover(struct cv_store *store, int64_t id, struct cv_jwk_relink **ret_jwks,
			  size_t *ret_n, const struct cv_audit_entry *audit,
			  cv_store_recover_describe_fn *describe, void *describe_arg)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	struct cv_audit_entry *described = NULL;
	struct cv_jwk_relink *jwks = NULL, *grown;
	char **kept = NULL;
	size_t n_kept = 0, n = 0, cap = 0, i;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, cvdb_pick(db,
				"SELECT j.value FROM certificates c,"
				" json_each(nullif(c.deleted_jwks, '')) j"
				" WHERE c.id = ?1 AND c.state = 2 AND c.held = 1",
				"SELECT j.value::text FROM certificates c,"
				" json_array_elements(nullif(c.deleted_jwks, '')::json) j"
				" WHERE c.id = ?1 AND c.state = 2 AND c.held = 1"), 0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_load_strings(stmt, id, &kept, &n_kept);
	if (r < 0)
		goto out;
	r = store_run(db,
		      "UPDATE certificates SET state = 1, held = 0, deleted_at = 0, purge_after = 0,"
		      " deleted_by = '', deleted_jwks = '', jwks_on_delete = 0"
		      " WHERE id = ?1 AND state = 2 AND held = 1",
		      "i", id);
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	for (i = 0; r == 0 && i < n_kept; i++) {
		grown = store_grow(jwks, &cap, n, sizeof(*jwks));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			break;
		}
		jwks = grown;
		memset(&jwks[n], 0, sizeof(jwks[n]));
		r = relink_one(db, id, kept[i], &jwks[n]);
		if (r == 0)
			n++;
	}
	if (r == 0 && audit != NULL && describe != NULL) {
		described = malloc(sizeof(*described));
		if (described == NULL)
			r = CV_ERR_NOMEM;
		if (r == 0) {
			*described = *audit;
			describe(jwks, n, described, describe_arg);
			audit = described;
		}
	}
	if (r == 0)
		r = store_audit_append_on(db, audit);
out:
	free(described);
	cvdb_finalize(stmt);
	store_strings_free(kept, n_kept);
	r = store_finish(db, r);
	store_return(store, conn);
	if (r < 0) {
		free(jwks);
		return r;
	}
	*ret_jwks = jwks;
	*ret_n = n;
	return 0;
}

int cv_store_cert_purge_mark(struct cv_store *store, int64_t id,
			     const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		/* From here the purge is a delete in flight, this node's (owner_node). */
		r = store_run(db, "UPDATE certificates SET held = 0, owner_node = ?2 WHERE id = ?1"
			      " AND state = 2 AND held = 1", "it", id, store_node(store));
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
	if (r == 0)
		cv_fault_point("purge.in_mark");
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

int cv_store_cert_purge_unmark(struct cv_store *store, int64_t id)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = store_run(db, "UPDATE certificates SET held = 1 WHERE id = ?1 AND state = 2"
			      " AND held = 0", "i", id);
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_notify_purge_cancel_on(db, id);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}
