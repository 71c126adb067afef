/* store: the audit trail, a hash chain of records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "internal.h"

#define AUDIT_COLS                                                                        \
	"seq, at, actor_id, actor_name, action, target, ok, error, request_id,"           \
	" fingerprints, prev_hash, hash, changes"

/* Feeds one length-prefixed field into the digest: fields can never run into each other. */
static void hash_field(EVP_MD_CTX *ctx, const void *data, size_t len)
{
	unsigned char n[4] = { (unsigned char)(len >> 24), (unsigned char)(len >> 16),
			       (unsigned char)(len >> 8), (unsigned char)len };

	EVP_DigestUpdate(ctx, n, sizeof(n));
	EVP_DigestUpdate(ctx, data, len);
}

static void hash_text(EVP_MD_CTX *ctx, const char *s)
{
	hash_field(ctx, s, strlen(s));
}

static void hash_int(EVP_MD_CTX *ctx, int64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	hash_text(ctx, buf);
}

void cv_store_audit_hash(const struct cv_audit_record *rec, uint8_t ret[CV_AUDIT_HASH_LEN])
{
	const struct cv_audit_entry *e = &rec->e;
	unsigned int len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	memset(ret, 0, CV_AUDIT_HASH_LEN);
	/* Without a context there is no hash: an all-zero hash never verifies. */
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return;
	}
	hash_text(ctx, "certvault-audit-1");
	hash_field(ctx, rec->prev_hash, CV_AUDIT_HASH_LEN);
	hash_int(ctx, rec->seq);
	hash_int(ctx, e->at);
	hash_text(ctx, e->actor_id);
	hash_text(ctx, e->actor_name);
	hash_text(ctx, e->action);
	hash_text(ctx, e->target);
	hash_int(ctx, e->ok);
	hash_text(ctx, e->error);
	hash_text(ctx, e->request_id);
	hash_text(ctx, e->fingerprints);
	/* Only when there is something: a record without changes hashes as records did
	 * before they could have them, so older chains still verify. */
	if (e->changes[0] != '\0') {
		hash_text(ctx, "changes");
		hash_text(ctx, e->changes);
	}
	if (EVP_DigestFinal_ex(ctx, ret, &len) != 1 || len != CV_AUDIT_HASH_LEN)
		memset(ret, 0, CV_AUDIT_HASH_LEN);
	EVP_MD_CTX_free(ctx);
}

int store_audit_append_on(sqlite3 *db, const struct cv_audit_entry *entry)
{
	struct cv_audit_record rec;
	sqlite3_stmt *last = NULL, *ins = NULL;
	int rc, r;

	if (entry == NULL)
		return 0;
	memset(&rec, 0, sizeof(rec));
	rec.e = *entry;
	rc = sqlite3_prepare_v2(db, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
				-1, &last, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	rc = sqlite3_step(last);
	if (rc == SQLITE_ROW) {
		if (sqlite3_column_bytes(last, 1) != CV_AUDIT_HASH_LEN) {
			r = CV_ERR_DB;
			goto out;
		}
		rec.seq = sqlite3_column_int64(last, 0) + 1;
		memcpy(rec.prev_hash, sqlite3_column_blob(last, 1), CV_AUDIT_HASH_LEN);
	} else if (rc == SQLITE_DONE) {
		rec.seq = 1;
	} else {
		r = store_err(rc);
		goto out;
	}
	cv_store_audit_hash(&rec, rec.hash);
	rc = sqlite3_prepare_v2(db, "INSERT INTO audit_log (" AUDIT_COLS ") VALUES (?1, ?2, ?3,"
				" ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)", -1, &ins, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(ins, 1, rec.seq);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(ins, 2, rec.e.at);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 3, rec.e.actor_id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 4, rec.e.actor_name);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 5, rec.e.action);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 6, rec.e.target);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(ins, 7, rec.e.ok);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 8, rec.e.error);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 9, rec.e.request_id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 10, rec.e.fingerprints);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(ins, 11, rec.prev_hash, CV_AUDIT_HASH_LEN, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(ins, 12, rec.hash, CV_AUDIT_HASH_LEN, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 13, rec.e.changes);
	if (rc == SQLITE_OK && (rc = sqlite3_step(ins)) == SQLITE_DONE)
		rc = SQLITE_OK;
	r = rc == SQLITE_OK ? 0 : store_err(rc);
out:
	sqlite3_finalize(last);
	sqlite3_finalize(ins);
	return r;
}

int cv_store_audit_append(struct cv_store *store, const struct cv_audit_entry *entry)
{
	struct store_conn *conn = store_borrow(store);
	sqlite3 *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = store_finish(db, store_audit_append_on(db, entry));
	store_return(store, conn);
	return r;
}

static int read_record(sqlite3_stmt *stmt, struct cv_audit_record *rec)
{
	int r;

	memset(rec, 0, sizeof(*rec));
	rec->seq = sqlite3_column_int64(stmt, 0);
	rec->e.at = sqlite3_column_int64(stmt, 1);
	r = store_copy_text(stmt, 2, rec->e.actor_id, sizeof(rec->e.actor_id));
	if (r == 0)
		r = store_copy_text(stmt, 3, rec->e.actor_name, sizeof(rec->e.actor_name));
	if (r == 0)
		r = store_copy_text(stmt, 4, rec->e.action, sizeof(rec->e.action));
	if (r == 0)
		r = store_copy_text(stmt, 5, rec->e.target, sizeof(rec->e.target));
	if (r == 0)
		r = store_copy_text(stmt, 7, rec->e.error, sizeof(rec->e.error));
	if (r == 0)
		r = store_copy_text(stmt, 8, rec->e.request_id, sizeof(rec->e.request_id));
	if (r == 0)
		r = store_copy_text(stmt, 9, rec->e.fingerprints, sizeof(rec->e.fingerprints));
	if (r == 0)
		r = store_copy_text(stmt, 12, rec->e.changes, sizeof(rec->e.changes));
	if (r < 0)
		return r;
	rec->e.ok = sqlite3_column_int(stmt, 6);
	if (sqlite3_column_bytes(stmt, 10) != CV_AUDIT_HASH_LEN ||
	    sqlite3_column_bytes(stmt, 11) != CV_AUDIT_HASH_LEN)
		return CV_ERR_DB;
	memcpy(rec->prev_hash, sqlite3_column_blob(stmt, 10), CV_AUDIT_HASH_LEN);
	memcpy(rec->hash, sqlite3_column_blob(stmt, 11), CV_AUDIT_HASH_LEN);
	return 0;
}

int cv_store_audit_list(struct cv_store *store, const struct cv_audit_filter *f,
			struct cv_audit_record **ret_recs, size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	sqlite3 *db = conn->db;
	struct cv_audit_record *recs = NULL;
	sqlite3_stmt *stmt = NULL;
	size_t n = 0;
	int rc, r;

	if (f->limit < 1 || f->limit > 1000) {
		r = CV_ERR_BAD_REQUEST;
		goto out;
	}
	recs = calloc((size_t)f->limit, sizeof(*recs));
	if (recs == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	/* Records that failed to read as text (e.g. a tampered type) are a database error:
	 * verify names the record. */
	rc = sqlite3_prepare_v2(db,
				"SELECT " AUDIT_COLS " FROM audit_log WHERE seq > ?1"
				" AND (?2 = 0 OR at >= ?2) AND (?3 = 0 OR at < ?3)"
				" AND (?4 = '' OR actor_name = ?4 OR actor_id = ?4)"
				" AND (?5 = '' OR action = ?5) AND (?6 = '' OR target = ?6)"
				" ORDER BY seq LIMIT ?7",
				-1, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, 1, f->after);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, 2, f->from);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, 3, f->until);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 4, f->actor);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 5, f->action);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 6, f->target);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, 7, f->limit);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		r = read_record(stmt, &recs[n]);
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
	r = 0;
out:
	free(recs);
	sqlite3_finalize(stmt);
	store_return(store, conn);
	return r;
}

int cv_store_audit_verify(struct cv_store *store, struct cv_audit_verdict *ret)
{
	struct store_conn *conn = store_borrow(store);
	sqlite3 *db = conn->db;
	struct cv_audit_record rec;
	uint8_t prev[CV_AUDIT_HASH_LEN] = { 0 }, want[CV_AUDIT_HASH_LEN];
	sqlite3_stmt *stmt = NULL;
	int64_t expect = 1;
	int rc, r;

	memset(ret, 0, sizeof(*ret));
	/* One read transaction: the walk sees one state of the chain. */
	r = store_exec(db, "BEGIN");
	if (r < 0)
		goto out;
	rc = sqlite3_prepare_v2(db, "SELECT " AUDIT_COLS " FROM audit_log ORDER BY seq", -1,
				&stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto end;
	}
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(stmt, 0);

		ret->records++;
		if (read_record(stmt, &rec) < 0) {
			ret->first_bad = seq;
			snprintf(ret->reason, sizeof(ret->reason),
				 "record %lld does not have the shape of a record", (long long)seq);
			break;
		}
		if (rec.seq > expect) {
			ret->first_bad = expect;
			snprintf(ret->reason, sizeof(ret->reason),
				 "record %lld is missing (the next one is %lld)", (long long)expect,
				 (long long)rec.seq);
			break;
		}
		if (rec.seq < expect) {
			ret->first_bad = rec.seq;
			snprintf(ret->reason, sizeof(ret->reason),
				 "record %lld is numbered out of turn", (long long)rec.seq);
			break;
		}
		if (memcmp(rec.prev_hash, prev, CV_AUDIT_HASH_LEN) != 0) {
			ret->first_bad = rec.seq;
			snprintf(ret->reason, sizeof(ret->reason),
				 "record %lld does not chain to the record before it",
				 (long long)rec.seq);
			break;
		}
		cv_store_audit_hash(&rec, want);
		if (memcmp(want, rec.hash, CV_AUDIT_HASH_LEN) != 0) {
			ret->first_bad = rec.seq;
			snprintf(ret->reason, sizeof(ret->reason),
				 "record %lld was changed after it was written", (long long)rec.seq);
			break;
		}
		memcpy(prev, rec.hash, CV_AUDIT_HASH_LEN);
		expect++;
	}
	if (ret->first_bad == 0 && rc != SQLITE_DONE) {
		r = store_err(rc);
		goto end;
	}
	memcpy(ret->head, prev, CV_AUDIT_HASH_LEN);
	r = 0;
end:
	sqlite3_finalize(stmt);
	stmt = NULL;
	store_finish(db, -1); /* a read: always rolled back */
out:
	store_return(store, conn);
	return r;
}
