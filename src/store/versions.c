/* store: versions of a certificate, renewals and replaces, and the key journal. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "certvault/fault.h"
#include "internal.h"

/* The JWKs linked to the certificate must be the ones the caller chose for, in kid order;
 * when there are any, a choice must have been made. */
static int jwk_checks(cvdb *db, const struct cv_supersede *req, struct cv_conflict *c)
{
	struct cv_jwk_record *linked = NULL;
	size_t n = 0, i;
	int r, same;

	r = store_jwk_list_on(db, req->id, &linked, &n);
	if (r < 0 || n == 0)
		goto out;
	same = req->jwk_action != CV_JWK_ACTION_NONE && n == req->n_linked;
	for (i = 0; same && i < n; i++)
		same = strcmp(linked[i].kid, req->linked[i]) == 0;
	if (!same) {
		if (c != NULL)
			c->detail[0] = '\0';
		for (i = 0; i < n; i++)
			store_conflict_append(c, linked[i].kid);
		r = CV_ERR_JWK_CHOICE_REQUIRED;
	}
out:
	cv_store_jwks_free(linked, n);
	return r;
}

/* Every check of a supersede, on db inside the caller's transaction. */
static int supersede_checks(cvdb *db, const struct cv_supersede *req, struct cv_conflict *c)
{
	int uncovered = 0;
	const struct cv_cert_record *next = req->next;
	cvdb_stmt *cur = NULL, *users = NULL, *older = NULL, *doms = NULL;
	char **domains = NULL, service[65];
	size_t n_domains = 0;
	const char *fp;
	int rc, r, in_use;

	rc = cvdb_prepare(db,
				"SELECT version, sha256_fingerprint, has_key FROM certificates"
				" WHERE id = ?1 AND state = 1", 0, &cur, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(cur, 1, req->id);
	if (rc == SQLITE_OK)
		rc = cvdb_prepare(db,
					"SELECT id, name FROM services WHERE cert_id = ?1"
					" ORDER BY name", 0, &users, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(users, 1, req->id);
	if (rc == SQLITE_OK)
		rc = cvdb_prepare(db,
					"SELECT max(version) FROM certificate_versions"
					" WHERE cert_id = ?1 AND sha256_fingerprint = ?2", 0, &older, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_prepare(db, STORE_SERVICE_DOMAINS_SQL, 0, &doms, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(cur);
	if (r < 0)
		goto out;
	if (cvdb_column_int64(cur, 0) != req->version) {
		if (c != NULL)
			c->version = cvdb_column_int64(cur, 0);
		r = CV_ERR_ALREADY_RENEWED;
		goto out;
	}
	/* Whether a service uses it. */
	rc = cvdb_step(users);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		r = store_err(rc);
		goto out;
	}
	in_use = rc == SQLITE_ROW;
	rc = cvdb_reset(users);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	/* Only a certificate in use is renewed; a public one, which no service can use, is
	 * renewed for those who hold it (its JWKs, a partner's copy). */
	if (req->kind == CV_END_RENEWED && !in_use && cvdb_column_int(cur, 2) != 0) {
		r = CV_ERR_NOT_IN_USE;
		goto out;
	}
	/* The services would serve it at once: not before its start. */
	if (in_use && next->not_before > req->now) {
		if (c != NULL)
			c->when = next->not_before;
		r = CV_ERR_NOT_YET_VALID;
		goto out;
	}
	r = store_column_text(cur, 1, &fp);
	if (r < 0)
		goto out;
	if (strcmp(fp, next->sha256_fingerprint) == 0) {
		if (c != NULL)
			c->version = req->version;
		r = CV_ERR_SAME_CERTIFICATE;
		goto out;
	}
	if (req->kind == CV_END_RENEWED) {
		/* Going back to an earlier certificate is not a renewal. */
		rc = cvdb_bind_int64(older, 1, req->id);
		if (rc == SQLITE_OK)
			rc = store_bind_text(older, 2, next->sha256_fingerprint);
		if (rc == SQLITE_OK && (rc = cvdb_step(older)) == SQLITE_ROW)
			rc = SQLITE_OK;
		if (rc != SQLITE_OK) {
			r = store_err(rc);
			goto out;
		}
		if (cvdb_column_type(older, 0) != SQLITE_NULL) {
			if (c != NULL)
				c->version = cvdb_column_int64(older, 0);
			r = CV_ERR_SAME_CERTIFICATE;
			goto out;
		}
	}
	/* Every service using it must stay covered: every one that would not be is named,
	 * each with its domains ("a.example.com, b.example.com (web); c.example.com (api)"),
	 * c->service the first. */
	while ((rc = cvdb_step(users)) == SQLITE_ROW) {
		struct cv_conflict one = { "", "", 0, 0 };

		r = store_copy_text(users, 1, service, sizeof(service));
		if (r == 0)
			r = store_load_strings(doms, cvdb_column_int64(users, 0), &domains,
					       &n_domains);
		if (r == 0)
			r = store_check_covered(next->domains, next->n_domains, domains, n_domains,
						service, &one);
		store_strings_free(domains, n_domains);
		domains = NULL;
		n_domains = 0;
		if (r == CV_ERR_DOMAIN_NOT_COVERED) {
			char item[sizeof(one.detail) + sizeof(service) + 8];

			if (!uncovered && c != NULL) {
				snprintf(c->service, sizeof(c->service), "%s", service);
				c->detail[0] = '\0';
			}
			uncovered = 1;
			snprintf(item, sizeof(item), "%s (%s)", one.detail, service);
			store_conflict_append_sep(c, item, "; ");
			continue;
		}
		if (r < 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	if (uncovered) {
		r = CV_ERR_DOMAIN_NOT_COVERED;
		goto out;
	}
	/* Last: the choice for the JWKs is asked once nothing else stands in the way. */
	r = jwk_checks(db, req, c);
out:
	cvdb_finalize(cur);
	cvdb_finalize(users);
	cvdb_finalize(older);
	cvdb_finalize(doms);
	return r;
}

int cv_store_cert_supersede_check(struct cv_store *store, const struct cv_supersede *req,
				  struct cv_conflict *conflict)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN");
	if (r == 0)
		r = supersede_checks(db, req, conflict);
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

/* Runs sql with the supersede's values bound by name (those the statement has). */
static int run_bound(cvdb *db, const char *sql, const struct cv_supersede *req)
{
	const struct cv_cert_record *next = req->next;
	cvdb_stmt *stmt = NULL;
	int rc, r, i, n;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	n = cvdb_bind_parameter_count(stmt);
	for (i = 1; rc == SQLITE_OK && i <= n; i++) {
		const char *p = cvdb_bind_parameter_name(stmt, i);

		if (p == NULL)
			rc = SQLITE_MISUSE;
		else if (strcmp(p, ":id") == 0)
			rc = cvdb_bind_int64(stmt, i, req->id);
		else if (strcmp(p, ":now") == 0)
			rc = cvdb_bind_int64(stmt, i, req->now);
		else if (strcmp(p, ":ended") == 0)
			rc = cvdb_bind_int64(stmt, i, (int64_t)req->kind);
		else if (strcmp(p, ":key_state") == 0)
			/* A public certificate's version never had a key in the token. */
			rc = cvdb_bind_int64(stmt, i, next->is_public ? CV_KEY_DESTROYED
						: req->destroy_old_key ? CV_KEY_DESTROYING
								       : CV_KEY_IN_TOKEN);
		else if (strcmp(p, ":cert_der") == 0)
			rc = cvdb_bind_blob(stmt, i, next->cert_der, next->cert_der_len);
		else if (strcmp(p, ":chain_pem") == 0)
			rc = store_bind_text(stmt, i, next->chain_pem);
		else if (strcmp(p, ":subject") == 0)
			rc = store_bind_text(stmt, i, next->subject);
		else if (strcmp(p, ":issuer") == 0)
			rc = store_bind_text(stmt, i, next->issuer);
		else if (strcmp(p, ":serial") == 0)
			rc = store_bind_text(stmt, i, next->serial);
		else if (strcmp(p, ":fp") == 0)
			rc = store_bind_text(stmt, i, next->sha256_fingerprint);
		else if (strcmp(p, ":key_desc") == 0)
			rc = store_bind_text(stmt, i, next->key_description);
		else if (strcmp(p, ":primary") == 0)
			rc = store_bind_text(stmt, i, next->primary_domain);
		else if (strcmp(p, ":not_before") == 0)
			rc = cvdb_bind_int64(stmt, i, next->not_before);
		else if (strcmp(p, ":not_after") == 0)
			rc = cvdb_bind_int64(stmt, i, next->not_after);
		else if (strcmp(p, ":updated_by") == 0)
			rc = store_bind_text(stmt, i, next->updated_by);
		else if (strcmp(p, ":rev_status") == 0)
			rc = store_bind_text(stmt, i, next->revocation_status);
		else if (strcmp(p, ":rev_source") == 0)
			rc = store_bind_text(stmt, i, next->revocation_source);
		else if (strcmp(p, ":rev_detail") == 0)
			rc = store_bind_text(stmt, i, next->revocation_detail);
		else if (strcmp(p, ":rev_at") == 0)
			rc = cvdb_bind_int64(stmt, i, next->revocation_checked_at);
		else if (strcmp(p, ":key_id") == 0)
			rc = cvdb_bind_blob(stmt, i, next->key_id, (int)sizeof(next->key_id));
		else if (strcmp(p, ":key_origin") == 0)
			rc = cvdb_bind_int64(stmt, i, (int64_t)next->key_origin);
		else if (strcmp(p, ":key_label") == 0)
			rc = store_bind_text(stmt, i, next->key_label);
		else
			rc = SQLITE_MISUSE; /* a statement below names a value not bound here */
	}
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
		rc = SQLITE_OK;
	r = rc == SQLITE_OK ? 0 : store_err(rc);
out:
	cvdb_finalize(stmt);
	return r;
}

/* Takes over the JWK new_kid that exists already, for linked JWK i: one this certificate had
 * and a renewal superseded is made active again (a rollback to an earlier key); an active
 * one linked elsewhere or to nothing (a key published ahead) is linked here. The kid holds
 * the key's thumbprint, alg and use, so it is the same key published the same way.
 * *ret_outcome says which; CV_JWK_MADE when there is no such JWK to take over. */
static int jwk_take_over(cvdb *db, const struct cv_supersede *req, size_t i,
			 enum cv_jwk_fate *ret_outcome)
{
	int r;

	*ret_outcome = CV_JWK_MADE;
	r = store_run(db,
		      "UPDATE jwks SET state = 1, superseded_by = NULL, superseded_at = 0,"
		      " jwk = ?1, cert_version = ?2, updated_at = ?3"
		      " WHERE kid = ?4 AND cert_id = ?5 AND state = 2",
		      "tiiti", req->new_jwks[i], req->version + 1, req->now, req->new_kids[i],
		      req->id);
	if (r == 0 && cvdb_changes(db) == 1) {
		*ret_outcome = CV_JWK_REACTIVATED;
		return 0;
	}
	if (r == 0)
		r = store_run(db,
			      "UPDATE jwks SET cert_id = ?1, cert_name = (SELECT name FROM"
			      " certificates WHERE id = ?1), jwk = ?2, cert_version = ?3,"
			      " updated_at = ?4 WHERE kid = ?5 AND state = 1 AND cert_id IS DISTINCT FROM ?1",
			      "itiit", req->id, req->new_jwks[i], req->version + 1, req->now,
			      req->new_kids[i]);
	if (r == 0 && cvdb_changes(db) == 1)
		*ret_outcome = CV_JWK_ADOPTED;
	return r;
}

/* A new active JWK new_kids[i], linked like linked[i] (its use). Its alg is the new JWK's
 * own: the old one's when it still fits the new key, else the new key's default (an RSA
 * key renewed with an EC key goes from RS256 to ES256), and the listing must say which. */
static int jwk_make(cvdb *db, const struct cv_supersede *req, size_t i)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, cvdb_pick(db,
				"INSERT INTO jwks (kid, cert_id, cert_name, cert_version, use,"
				" alg, jwk, state, created_at, updated_at)"
				" SELECT ?1, cert_id, cert_name, ?2, use,"
				" coalesce(json_extract(?3, '$.alg'), alg), ?3, 1, ?4, ?4"
				" FROM jwks WHERE kid = ?5",
				"INSERT INTO jwks (kid, cert_id, cert_name, cert_version, use,"
				" alg, jwk, state, created_at, updated_at)"
				" SELECT ?1, cert_id, cert_name, ?2, use,"
				" coalesce(?3::json->>'alg', alg), ?3, 1, ?4, ?4"
				" FROM jwks WHERE kid = ?5"), 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, req->new_kids[i]);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, req->version + 1);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 3, req->new_jwks[i]);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 4, req->now);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 5, req->linked[i]);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	/* The new key's kid is already a JWK that cannot be taken over (superseded, of
	 * another certificate). */
	r = rc == SQLITE_DONE ? 0 : rc == SQLITE_CONSTRAINT_PRIMARYKEY ? CV_ERR_NAME_TAKEN
								 : store_err(rc);
	cvdb_finalize(stmt);
	return r;
}

/* Carries out the caller's choice for the linked JWKs (already checked to be req->linked). */
static int jwk_apply(cvdb *db, const struct cv_supersede *req)
{
	enum cv_jwk_fate outcome;
	size_t i;
	int r = 0;

	if (req->n_linked == 0)
		return 0;
	if (req->jwk_action == CV_JWK_ACTION_DISCONNECT)
		return store_run(db,
				 "UPDATE jwks SET cert_id = NULL, updated_at = ?1"
				 " WHERE cert_id = ?2 AND state = 1",
				 "ii", req->now, req->id);
	for (i = 0; r == 0 && i < req->n_linked; i++) {
		outcome = CV_JWK_SAME;
		if (strcmp(req->new_kids[i], req->linked[i]) == 0) {
			/* The same key: the JWK stays, with the new certificate in x5c. */
			r = store_run(db,
				      "UPDATE jwks SET jwk = ?1, cert_version = ?2, updated_at = ?3"
				      " WHERE kid = ?4",
				      "tiit", req->new_jwks[i], req->version + 1, req->now,
				      req->linked[i]);
		} else {
			r = jwk_take_over(db, req, i, &outcome);
			if (r == 0 && outcome == CV_JWK_MADE)
				r = jwk_make(db, req, i);
			/* The old one stays published for the retention period. */
			if (r == 0)
				r = store_run(db,
					      "UPDATE jwks SET state = 2, superseded_by = ?1,"
					      " updated_at = ?2, superseded_at = ?2 WHERE kid = ?3",
					      "tit", req->new_kids[i], req->now, req->linked[i]);
		}
		if (req->outcomes != NULL)
			req->outcomes[i] = outcome;
	}
	return r;
}

/* Whether the journal row of key_id is still this node's: CV_ERR_BUSY when another node's
 * reconciler took it over (this node silent past its lease; it destroys the key), so the key
 * cannot become a version's. */
static int journal_still_mine(struct cv_store *store, cvdb *db, const uint8_t *key_id)
{
	cvdb_stmt *stmt = NULL;
	int rc, r;

	rc = cvdb_prepare(db, "SELECT count(*) FROM key_journal WHERE key_id = ?1 AND"
			  " owner_node = ?2", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(stmt, 1, key_id, CV_TOKEN_ID_LEN);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 2, store_node(store));
	r = rc == SQLITE_OK ? store_step_one(stmt) : store_err(rc);
	if (r == 0 && cvdb_column_int64(stmt, 0) == 0)
		r = CV_ERR_BUSY;
	cvdb_finalize(stmt);
	return r;
}

int cv_store_cert_supersede(struct cv_store *store, const struct cv_supersede *req,
			    struct cv_conflict *conflict)
{
	/* The old version keeps everything but its domains, which only the current version
	 * needs (for coverage, search and the list). */
	static const char *const steps[] = {
		"INSERT INTO certificate_versions (cert_id, version, cert_der, chain_pem,"
		" subject, issuer, serial, sha256_fingerprint, key_description, not_before,"
		" not_after, key_id, key_state, current_from, current_until, ended_by, key_origin,"
		" key_label)"
		" SELECT id, version, cert_der, chain_pem, subject, issuer, serial,"
		" sha256_fingerprint, key_description, not_before, not_after, key_id,"
		" :key_state, current_since, :now, :ended, key_origin,"
		" coalesce(nullif(key_label, ''), name)"
		" FROM certificates WHERE id = :id",
		"UPDATE certificates SET cert_der = :cert_der, chain_pem = :chain_pem,"
		" subject = :subject, issuer = :issuer, serial = :serial,"
		" sha256_fingerprint = :fp, key_description = :key_desc, primary_domain = :primary,"
		" not_before = :not_before, not_after = :not_after, key_id = :key_id,"
		" version = version + 1, current_since = :now, updated_at = :now,"
		" key_origin = :key_origin, key_label = nullif(:key_label, ''),"
		" updated_by = :updated_by, revocation_status = :rev_status,"
		" revocation_source = :rev_source, revocation_detail = :rev_detail,"
		" revocation_checked_at = :rev_at WHERE id = :id",
		"DELETE FROM certificate_domains WHERE cert_id = :id",
		"DELETE FROM key_journal WHERE key_id = :key_id",
		/* A renewal by generate: its key waited in a pending row, which the merge ends. */
		"DELETE FROM pending_certificates WHERE key_id = :key_id",
	};
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	size_t i;
	int r;

	/* IMMEDIATE: the checks hold at the writes; a racing supersede of the same version
	 * waits here and then fails the version check. */
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = supersede_checks(db, req, conflict);
	if (r == 0 && req->journaled)
		r = journal_still_mine(store, db, req->next->key_id);
	for (i = 0; r == 0 && i < sizeof(steps) / sizeof(steps[0]); i++)
		r = run_bound(db, steps[i], req);
	if (r == 0)
		r = store_insert_strings(db,
					 "INSERT INTO certificate_domains (cert_id, position, domain)"
					 " VALUES (?, ?, ?)",
					 req->id, req->next->domains, req->next->n_domains);
	if (r == 0)
		r = jwk_apply(db, req);
	if (r == 0)
		r = store_audit_append_on(db, req->audit);
	if (r == 0)
		cv_fault_point("supersede.in_commit");
	r = store_finish(db, r);
	store_return(store, conn);
	return r;
}

/* The columns a version is read from: certificates for the current one, certificate_versions
 * for the others, each selecting them in this order. */
static int read_version(cvdb_stmt *stmt, struct cv_cert_version *v)
{
	const void *blob;
	int r;

	memset(v, 0, sizeof(*v));
	v->version = cvdb_column_int64(stmt, 0);
	r = store_copy_text(stmt, 1, v->subject, sizeof(v->subject));
	if (r == 0)
		r = store_copy_text(stmt, 2, v->issuer, sizeof(v->issuer));
	if (r == 0)
		r = store_copy_text(stmt, 3, v->serial, sizeof(v->serial));
	if (r == 0)
		r = store_copy_text(stmt, 4, v->sha256_fingerprint, sizeof(v->sha256_fingerprint));
	if (r == 0)
		r = store_copy_text(stmt, 5, v->key_description, sizeof(v->key_description));
	if (r < 0)
		return r;
	v->not_before = cvdb_column_int64(stmt, 6);
	v->not_after = cvdb_column_int64(stmt, 7);
	blob = cvdb_column_blob(stmt, 8);
	if (blob == NULL || cvdb_column_bytes(stmt, 8) != (int)sizeof(v->key_id))
		return CV_ERR_DB;
	memcpy(v->key_id, blob, sizeof(v->key_id));
	v->key_state = (enum cv_key_state)cvdb_column_int64(stmt, 9);
	v->current_from = cvdb_column_int64(stmt, 10);
	v->current_until = cvdb_column_int64(stmt, 11);
	v->ended_by = (enum cv_version_end)cvdb_column_int64(stmt, 12);
	return store_copy_text(stmt, 13, v->key_label, sizeof(v->key_label));
}

int cv_store_cert_versions(struct cv_store *store, int64_t id,
			   struct cv_cert_version **ret_versions, size_t *ret_n)
{
	static const char sql[] =
		"SELECT version, subject, issuer, serial, sha256_fingerprint, key_description,"
		" not_before, not_after, key_id, 0, current_since, 0, 0,"
		" coalesce(nullif(key_label, ''), name)"
		" FROM certificates WHERE id = ?1"
		" UNION ALL "
		"SELECT version, subject, issuer, serial, sha256_fingerprint, key_description,"
		" not_before, not_after, key_id, key_state, current_from, current_until, ended_by,"
		" coalesce(nullif(key_label, ''), (SELECT name FROM certificates WHERE id = ?1))"
		" FROM certificate_versions WHERE cert_id = ?1"
		" ORDER BY 1 DESC";
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	struct cv_cert_version *v = NULL, *grown;
	cvdb_stmt *stmt = NULL;
	size_t n = 0, cap = 0;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, id);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	/* One statement is one read snapshot: the current row and the history agree. */
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(v, &cap, n, sizeof(*v));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		v = grown;
		r = read_version(stmt, &v[n]);
		if (r < 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	/* The current row comes first (the highest version); none means no certificate. */
	if (n == 0 || v[0].ended_by != CV_END_NONE) {
		r = CV_ERR_NOT_FOUND;
		goto out;
	}
	*ret_versions = v;
	*ret_n = n;
	v = NULL;
	r = 0;
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	free(v);
	return r;
}

/* Runs one statement with ?1 = a key id and ?2, ?3 = two integers (those it has). */
static int key_statement(struct cv_store *store, const char *sql, const uint8_t *key_id,
			 int64_t a, int64_t b)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r, n;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(stmt, 1, key_id, CV_TOKEN_ID_LEN);
	n = rc == SQLITE_OK ? cvdb_bind_parameter_count(stmt) : 0;
	if (rc == SQLITE_OK && n >= 2)
		rc = cvdb_bind_int64(stmt, 2, a);
	if (rc == SQLITE_OK && n >= 3)
		rc = cvdb_bind_int64(stmt, 3, b);
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
		rc = SQLITE_OK;
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = cvdb_changes(db) == 0 ? CV_ERR_NOT_FOUND : 0;
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}

int cv_store_key_journal_add(struct cv_store *store, const uint8_t *key_id, int64_t cert_id,
			     int64_t now)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt = NULL;
	int rc;

	/* The key being made is this node's write in flight until the commit takes the row. */
	rc = cvdb_prepare(conn->db, "INSERT INTO key_journal (key_id, cert_id, created_at,"
			  " owner_node) VALUES (?1, ?2, ?3, ?4)", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(stmt, 1, key_id, CV_TOKEN_ID_LEN);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, cert_id);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 3, now);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 4, store_node(store));
	if (rc == SQLITE_OK && (rc = cvdb_step(stmt)) == SQLITE_DONE)
		rc = SQLITE_OK;
	cvdb_finalize(stmt);
	store_return(store, conn);
	return rc == SQLITE_OK ? 0 : store_err(rc);
}

int cv_store_key_journal_remove(struct cv_store *store, const uint8_t *key_id)
{
	return key_statement(store, "DELETE FROM key_journal WHERE key_id = ?1", key_id, 0, 0);
}

int cv_store_version_key_destroyed(struct cv_store *store, const uint8_t *key_id)
{
	return key_statement(store,
			     "UPDATE certificate_versions SET key_state = 2 WHERE key_id = ?1",
			     key_id, 0, 0);
}

/* Appends the key id in column 0 of every row stmt gives to ids (journal[i] = in_journal). */
static int keys_collect(cvdb_stmt *stmt, int in_journal, uint8_t (**ids)[CV_TOKEN_ID_LEN],
			int **journal, size_t *n, size_t *cap)
{
	uint8_t (*grown)[CV_TOKEN_ID_LEN];
	int *grown_j, rc;

	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		if (cvdb_column_bytes(stmt, 0) != CV_TOKEN_ID_LEN)
			return CV_ERR_DB;
		if (*n == *cap) {
			*cap = *cap == 0 ? 8 : 2 * *cap;
			grown = realloc(*ids, *cap * sizeof(*grown));
			if (grown == NULL)
				return CV_ERR_NOMEM;
			*ids = grown;
			grown_j = realloc(*journal, *cap * sizeof(*grown_j));
			if (grown_j == NULL)
				return CV_ERR_NOMEM;
			*journal = grown_j;
		}
		memcpy((*ids)[*n], cvdb_column_blob(stmt, 0), CV_TOKEN_ID_LEN);
		(*journal)[*n] = in_journal;
		(*n)++;
	}
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

/* The journal keys this node may take over (its own too when mine), claimed in the
 * transaction that reads them and committed before fn acts; when mine (at start), the
 * superseded keys being destroyed too. */
static int keys_claim_foreach(struct cv_store *store, int64_t now, int mine,
			      int (*fn)(const uint8_t *key_id, int in_journal, void *arg),
			      void *arg)
{
	/* A journal row whose key a certificate or version holds was made current; the
	 * transaction that did so removes the row, so this finds none unless the database
	 * was edited, and then the key is in use and must stay. */
	static const char forget_used[] =
		"DELETE FROM key_journal WHERE key_id IN (SELECT key_id FROM certificates"
		" UNION ALL SELECT key_id FROM certificate_versions)";
	static const char claim[] =
		"UPDATE key_journal SET owner_node = ?1 WHERE "
		STORE_CLAIMABLE("key_journal.owner_node", "?1", "?2", "?3") " RETURNING key_id";
	/* Finishing a destroy twice does no harm (a key already gone is destroyed), so these
	 * carry no owner; only a start takes them, when nothing of its own is in flight. */
	static const char destroying[] =
		"SELECT key_id FROM certificate_versions WHERE key_state = 1";
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	uint8_t (*ids)[CV_TOKEN_ID_LEN] = NULL;
	int *journal = NULL;
	size_t n = 0, cap = 0, i;
	int rc, r, held = 1;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = store_exec(db, forget_used);
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
	r = keys_collect(stmt, 1, &ids, &journal, &n, &cap);
	cvdb_finalize(stmt);
	stmt = NULL;
	if (r == 0 && mine) {
		rc = cvdb_prepare(db, destroying, 0, &stmt, NULL);
		r = rc == SQLITE_OK ? keys_collect(stmt, 0, &ids, &journal, &n, &cap) :
		    store_err(rc);
		cvdb_finalize(stmt);
		stmt = NULL;
	}
	if (r < 0)
		goto out;
	/* Give the connection back before fn: it writes through the pool. */
	r = store_finish(db, 0);
	store_return(store, conn);
	held = 0;
	for (i = 0; r == 0 && i < n; i++)
		r = fn(ids[i], journal[i], arg);
out:
	if (held) {
		cvdb_finalize(stmt);
		r = store_finish(db, r);
		store_return(store, conn);
	}
	free(ids);
	free(journal);
	return r;
}

int cv_store_keys_unsettled_foreach(struct cv_store *store,
				    int (*fn)(const uint8_t *key_id, int in_journal, void *arg),
				    void *arg)
{
	return keys_claim_foreach(store, (int64_t)time(NULL), 1, fn, arg);
}

int cv_store_keys_abandoned_foreach(struct cv_store *store, int64_t now,
				    int (*fn)(const uint8_t *key_id, int in_journal, void *arg),
				    void *arg)
{
	return keys_claim_foreach(store, now, 0, fn, arg);
}

int cv_store_cert_version_material(struct cv_store *store, int64_t cert_id, int64_t version,
				   unsigned char **ret_der, size_t *ret_len, char **ret_chain_pem)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt = NULL;
	unsigned char *der = NULL;
	char *chain = NULL;
	const void *blob;
	int rc, r, n;

	rc = cvdb_prepare(conn->db,
				"SELECT cert_der, chain_pem FROM certificate_versions"
				" WHERE cert_id = ?1 AND version = ?2", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, cert_id);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, version);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	r = store_step_one(stmt);
	if (r < 0)
		goto out;
	blob = cvdb_column_blob(stmt, 0);
	n = cvdb_column_bytes(stmt, 0);
	if (blob == NULL || n <= 0) {
		r = CV_ERR_DB;
		goto out;
	}
	der = malloc((size_t)n);
	if (der == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	memcpy(der, blob, (size_t)n);
	r = store_dup_text(stmt, 1, &chain);
	if (r < 0)
		goto out;
	*ret_der = der;
	*ret_len = (size_t)n;
	*ret_chain_pem = chain;
	der = NULL;
	chain = NULL;
	r = 0;
out:
	cvdb_finalize(stmt);
	store_return(store, conn);
	free(der);
	free(chain);
	return r;
}

int cv_store_key_ids_needed(struct cv_store *store, uint8_t (**ret_ids)[CV_TOKEN_ID_LEN],
			    size_t *ret_n)
{
	/* UNION sorts and drops repeats; SQLite orders blobs by memcmp. A row without a key (a
	 * certificate kept without one) needs none. A version whose key is
	 * recorded destroyed needs none: its object, if there, came back (a power cut before
	 * the destroy reached the disk, on a build that did not sync) or was never destroyed. */
	static const char sql[] =
		"SELECT key_id FROM certificates WHERE key_id IS NOT NULL"
		" UNION SELECT key_id FROM certificate_versions"
		"  WHERE key_state <> 2 AND key_id IS NOT NULL"
		" UNION SELECT key_id FROM key_journal"
		" UNION SELECT key_id FROM pending_certificates ORDER BY 1";
	struct store_conn *conn = store_borrow(store);
	uint8_t (*ids)[CV_TOKEN_ID_LEN] = NULL, (*grown)[CV_TOKEN_ID_LEN];
	cvdb_stmt *stmt = NULL;
	size_t n = 0, cap = 0;
	int rc, r;

	r = store_prepare(conn, sql, &stmt);
	if (r < 0)
		goto out;
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		/* The schema holds every key_id to 16 bytes. */
		if (cvdb_column_bytes(stmt, 0) != CV_TOKEN_ID_LEN) {
			r = CV_ERR_DB;
			goto out;
		}
		grown = store_grow(ids, &cap, n, sizeof(*ids));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		ids = grown;
		memcpy(ids[n], cvdb_column_blob(stmt, 0), CV_TOKEN_ID_LEN);
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	*ret_ids = ids;
	*ret_n = n;
	ids = NULL;
	r = 0;
out:
	store_return(store, conn);
	free(ids);
	return r;
}
