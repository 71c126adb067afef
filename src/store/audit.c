/* store: the audit trail, a hash chain of records. */
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "certvault/util.h"
#include "internal.h"

#define AUDIT_COLS                                                                        \
	"seq, at, actor_id, actor_name, action, target, ok, error, request_id,"           \
	" fingerprints, prev_hash, hash, keyed, source, count, first_at, last_at, detail,"  \
	" changes, link_key"

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

/* The fields both formats cover, in their order. */
static void hash_common(EVP_MD_CTX *ctx, const struct cv_audit_record *rec)
{
	const struct cv_audit_entry *e = &rec->e;

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
}

static int digest_done(EVP_MD_CTX *ctx, uint8_t ret[CV_AUDIT_HASH_LEN])
{
	unsigned int len = 0;
	int ok = EVP_DigestFinal_ex(ctx, ret, &len) == 1 && len == CV_AUDIT_HASH_LEN;

	if (!ok)
		memset(ret, 0, CV_AUDIT_HASH_LEN);
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : CV_ERR_INTERNAL;
}

void cv_store_audit_hash(const struct cv_audit_record *rec, uint8_t ret[CV_AUDIT_HASH_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	memset(ret, 0, CV_AUDIT_HASH_LEN);
	/* Without a context there is no hash: an all-zero hash never verifies. */
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return;
	}
	hash_text(ctx, "certvault-audit-1");
	hash_common(ctx, rec);
	(void)digest_done(ctx, ret);
}

/* A keyed record's digest, which its key MACs: the unkeyed fields and every field added with
 * the key, under a new format name so neither format's input is the other's. A record keyed
 * with a link key has a format name of its own and covers the link's number too, so that it
 * cannot be said to be keyed with another key than the one that made its HMAC. */
static int keyed_digest(const struct cv_audit_record *rec, uint8_t ret[CV_AUDIT_HASH_LEN])
{
	const struct cv_audit_entry *e = &rec->e;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	memset(ret, 0, CV_AUDIT_HASH_LEN);
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return CV_ERR_INTERNAL;
	}
	hash_text(ctx, rec->link != 0 ? "certvault-audit-3-link-hmac-sha256" :
					 "certvault-audit-2-hmac-sha256");
	hash_common(ctx, rec);
	hash_text(ctx, e->source);
	hash_int(ctx, e->count);
	hash_int(ctx, e->first_at);
	hash_int(ctx, e->last_at);
	hash_text(ctx, e->detail);
	if (rec->link != 0)
		hash_int(ctx, rec->link);
	return digest_done(ctx, ret);
}

void cv_store_audit_key(struct cv_store *store, cv_store_mac_fn mac, cv_store_link_fn link,
			void *arg, int64_t keyed_from)
{
	store->audit_mac = mac;
	store->audit_link = link;
	store->audit_mac_arg = arg;
	store->audit_keyed_from = keyed_from;
}

int cv_store_audit_seal(struct cv_store *store, const struct cv_audit_record *rec,
			uint8_t ret[CV_AUDIT_HASH_LEN])
{
	uint8_t digest[CV_AUDIT_HASH_LEN];
	int r;

	memset(ret, 0, CV_AUDIT_HASH_LEN);
	if (!rec->keyed) {
		cv_store_audit_hash(rec, ret);
		return 0;
	}
	if (store == NULL || store->audit_mac == NULL)
		return CV_ERR_TOKEN_UNAVAILABLE;
	if (rec->link < 0)
		return CV_ERR_BAD_ENCODING; /* no key has that number: callers check first */
	r = keyed_digest(rec, digest);
	if (r == 0)
		r = store->audit_mac(store->audit_mac_arg, rec->link, digest, ret);
	if (r < 0)
		memset(ret, 0, CV_AUDIT_HASH_LEN);
	return r;
}

int store_audit_append_on(cvdb *db, const struct cv_audit_entry *entry)
{
	struct cv_store *store = store_current_conn != NULL && store_current_conn->db == db ?
				 store_current_conn->store : NULL;
	struct cv_audit_record rec;
	cvdb_stmt *last = NULL, *ins = NULL;
	int last_keyed = 0;
	int rc, r;

	if (entry == NULL)
		return 0;
	memset(&rec, 0, sizeof(rec));
	rec.e = *entry;
	if (rec.e.count < 1)
		rec.e.count = 1;
	/* The key first: the head is read under the writer lock, and nothing from here to the
	 * commit waits for the token while a link key is there to key the record. */
	if (store != NULL && store->audit_mac != NULL && store->audit_link != NULL)
		rec.link = store->audit_link(store->audit_mac_arg);
	rc = cvdb_prepare(db, "SELECT seq, hash, keyed FROM audit_log ORDER BY seq DESC"
				" LIMIT 1", 0, &last, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	rc = cvdb_step(last);
	if (rc == SQLITE_ROW) {
		if (cvdb_column_bytes(last, 1) != CV_AUDIT_HASH_LEN) {
			r = CV_ERR_DB;
			goto out;
		}
		rec.seq = cvdb_column_int64(last, 0) + 1;
		memcpy(rec.prev_hash, cvdb_column_blob(last, 1), CV_AUDIT_HASH_LEN);
		last_keyed = cvdb_column_int(last, 2) != 0;
	} else if (rc == SQLITE_DONE) {
		rec.seq = 1;
	} else {
		r = store_err(rc);
		goto out;
	}
	/* Once keyed, always keyed: a plain link after a keyed one would be a record anyone
	 * who can write the file could have made. Without the key, nothing is written. */
	rec.keyed = store != NULL && store->audit_mac != NULL;
	if (!rec.keyed && last_keyed) {
		r = CV_ERR_TOKEN_UNAVAILABLE;
		goto out;
	}
	/* A plain record holds only what the plain format covers: a field no hash covers
	 * would be one anyone could change. */
	if (!rec.keyed) {
		rec.link = 0;
		rec.e.source[0] = '\0';
		rec.e.count = 1;
		rec.e.first_at = rec.e.last_at = 0;
		rec.e.detail[0] = '\0';
	}
	r = cv_store_audit_seal(store, &rec, rec.hash);
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, "INSERT INTO audit_log (" AUDIT_COLS ") VALUES (?1, ?2, ?3,"
				" ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
				" ?18, ?19, ?20)", 0, &ins, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(ins, 1, rec.seq);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(ins, 2, rec.e.at);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 3, rec.e.actor_id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 4, rec.e.actor_name);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 5, rec.e.action);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 6, rec.e.target);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int(ins, 7, rec.e.ok);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 8, rec.e.error);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 9, rec.e.request_id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 10, rec.e.fingerprints);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(ins, 11, rec.prev_hash, CV_AUDIT_HASH_LEN);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(ins, 12, rec.hash, CV_AUDIT_HASH_LEN);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int(ins, 13, rec.keyed);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 14, rec.e.source);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(ins, 15, rec.e.count);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(ins, 16, rec.e.first_at);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(ins, 17, rec.e.last_at);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 18, rec.e.detail);
	if (rc == SQLITE_OK)
		rc = store_bind_text(ins, 19, rec.e.changes);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(ins, 20, rec.link);
	if (rc == SQLITE_OK && (rc = cvdb_step(ins)) == SQLITE_DONE)
		rc = SQLITE_OK;
	r = rc == SQLITE_OK ? 0 : store_err(rc);
	/* The change's notifications, in its transaction: they commit with it or not at all. */
	if (r == 0)
		r = store_notify_audit_on(db, &rec.e, rec.seq);
out:
	cvdb_finalize(last);
	cvdb_finalize(ins);
	return r;
}

int cv_store_audit_append(struct cv_store *store, const struct cv_audit_entry *entry)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r == 0)
		r = store_finish(db, store_audit_append_on(db, entry));
	store_return(store, conn);
	return r;
}

int cv_store_audit_last(struct cv_store *store, int64_t *ret_seq, int *ret_keyed)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt = NULL;
	int r;

	*ret_seq = 0;
	*ret_keyed = 0;
	r = store_prepare(conn, "SELECT coalesce(max(seq), 0), EXISTS (SELECT 1 FROM audit_log"
			  " WHERE keyed != 0) FROM audit_log", &stmt);
	if (r == 0)
		r = store_step_one(stmt);
	if (r == 0) {
		*ret_seq = cvdb_column_int64(stmt, 0);
		*ret_keyed = cvdb_column_int(stmt, 1) != 0;
	}
	store_return(store, conn);
	return r;
}

static int read_record(cvdb_stmt *stmt, struct cv_audit_record *rec)
{
	int r;

	memset(rec, 0, sizeof(*rec));
	rec->seq = cvdb_column_int64(stmt, 0);
	rec->e.at = cvdb_column_int64(stmt, 1);
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
		r = store_copy_text(stmt, 13, rec->e.source, sizeof(rec->e.source));
	if (r == 0)
		r = store_copy_text(stmt, 17, rec->e.detail, sizeof(rec->e.detail));
	if (r == 0)
		r = store_copy_text(stmt, 18, rec->e.changes, sizeof(rec->e.changes));
	if (r < 0)
		return r;
	rec->e.ok = cvdb_column_int(stmt, 6);
	rec->keyed = cvdb_column_int(stmt, 12);
	rec->e.count = cvdb_column_int64(stmt, 14);
	rec->e.first_at = cvdb_column_int64(stmt, 15);
	rec->e.last_at = cvdb_column_int64(stmt, 16);
	rec->link = cvdb_column_int64(stmt, 19);
	if (cvdb_column_bytes(stmt, 10) != CV_AUDIT_HASH_LEN ||
	    cvdb_column_bytes(stmt, 11) != CV_AUDIT_HASH_LEN)
		return CV_ERR_DB;
	memcpy(rec->prev_hash, cvdb_column_blob(stmt, 10), CV_AUDIT_HASH_LEN);
	memcpy(rec->hash, cvdb_column_blob(stmt, 11), CV_AUDIT_HASH_LEN);
	return 0;
}

int cv_store_audit_list(struct cv_store *store, const struct cv_audit_filter *f,
			struct cv_audit_record **ret_recs, size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	struct cv_audit_record *recs = NULL;
	cvdb_stmt *stmt = NULL;
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
	rc = cvdb_prepare(db,
				"SELECT " AUDIT_COLS " FROM audit_log WHERE seq > ?1"
				" AND (?2 = 0 OR at >= ?2) AND (?3 = 0 OR at < ?3)"
				" AND (?4 = '' OR actor_name = ?4 OR actor_id = ?4)"
				" AND (?5 = '' OR action = ?5) AND (?6 = '' OR target = ?6)"
				" ORDER BY seq LIMIT ?7", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, f->after);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, f->from);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 3, f->until);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 4, f->actor);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 5, f->action);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 6, f->target);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 7, f->limit);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
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
	cvdb_finalize(stmt);
	store_return(store, conn);
	return r;
}

/* A checkpoint's "key=value" word: the value's text after "key=", up to the next space. */
static const char *detail_word(const char *detail, const char *key, size_t *ret_len)
{
	size_t klen = strlen(key);
	const char *p = detail;

	while (*p != '\0') {
		size_t n = strcspn(p, " ");

		if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			*ret_len = n - klen - 1;
			return p + klen + 1;
		}
		p += n;
		p += *p == ' ';
	}
	*ret_len = 0;
	return NULL;
}

/* The newest archive checkpoint's facts: the last seq archived and its hash. 0 (through 0
 * when there is none), CV_ERR_DB. A checkpoint whose words do not parse is reported by the
 * walk, not here: through -1. */
static int last_archive(cvdb *db, int64_t *ret_through, uint8_t ret_head[CV_AUDIT_HASH_LEN])
{
	cvdb_stmt *stmt = NULL;
	const char *detail, *w;
	size_t n;
	int rc, r;

	*ret_through = 0;
	rc = cvdb_prepare(db, "SELECT detail FROM audit_log WHERE action = 'audit.archive'"
				" ORDER BY seq DESC LIMIT 1", 0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	rc = cvdb_step(stmt);
	if (rc == SQLITE_DONE) {
		r = 0;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = store_err(rc);
		goto out;
	}
	r = 0;
	*ret_through = -1;
	detail = (const char *)cvdb_column_text(stmt, 0);
	if (detail == NULL)
		goto out;
	w = detail_word(detail, "through", &n);
	if (w == NULL || n == 0 || n > 18 || strspn(w, "0123456789") < n)
		goto out;
	{
		char num[20];

		memcpy(num, w, n);
		num[n] = '\0';
		if (cv_parse_int64(num, 1, INT64_MAX, ret_through) < 0) {
			*ret_through = -1;
			goto out;
		}
	}
	w = detail_word(detail, "head", &n);
	if (w == NULL || n != 2 * CV_AUDIT_HASH_LEN) {
		*ret_through = -1;
	} else {
		char hex[2 * CV_AUDIT_HASH_LEN + 1];

		memcpy(hex, w, n);
		hex[n] = '\0';
		if (cv_hex_decode(hex, ret_head, CV_AUDIT_HASH_LEN) < 0)
			*ret_through = -1;
	}
out:
	cvdb_finalize(stmt);
	return r;
}

/* Sets the verdict's break. */
static void broken(struct cv_audit_verdict *v, int64_t seq, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void broken(struct cv_audit_verdict *v, int64_t seq, const char *fmt, ...)
{
	va_list ap;

	v->first_bad = seq;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

static int legacy_shape(const struct cv_audit_entry *e)
{
	return e->source[0] == '\0' && e->count == 1 && e->first_at == 0 && e->last_at == 0 &&
	       e->detail[0] == '\0';
}

int cv_store_audit_verify(struct cv_store *store, struct cv_audit_verdict *ret)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	struct cv_audit_record rec;
	uint8_t prev[CV_AUDIT_HASH_LEN] = { 0 }, want[CV_AUDIT_HASH_LEN],
		archived_head[CV_AUDIT_HASH_LEN] = { 0 };
	cvdb_stmt *stmt = NULL;
	int64_t expect = 1, through = 0;
	int rc, r;

	memset(ret, 0, sizeof(*ret));
	/* One read transaction: the walk sees one state of the chain. */
	r = store_exec(db, "BEGIN");
	if (r < 0)
		goto out;
	r = last_archive(db, &through, archived_head);
	if (r < 0)
		goto end;
	rc = cvdb_prepare(db, "SELECT " AUDIT_COLS " FROM audit_log ORDER BY seq", 0,
				&stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto end;
	}
	/* Records archived away leave the chain starting after the newest checkpoint's range,
	 * linked to its head; that checkpoint is itself a record of the chain, checked below. */
	if (through > 0) {
		ret->archived_through = through;
		expect = through + 1;
		memcpy(prev, archived_head, CV_AUDIT_HASH_LEN);
	}
	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		int64_t seq = cvdb_column_int64(stmt, 0);

		ret->records++;
		if (read_record(stmt, &rec) < 0) {
			broken(ret, seq, "record %lld does not have the shape of a record",
			       (long long)seq);
			break;
		}
		if (ret->first_seq == 0)
			ret->first_seq = rec.seq;
		if (rec.seq > expect) {
			broken(ret, expect, "record %lld is missing (the next one is %lld)",
			       (long long)expect, (long long)rec.seq);
			break;
		}
		if (rec.seq < expect) {
			broken(ret, rec.seq, through > 0 && rec.seq <= through ?
			       "record %lld was archived, yet is still here" :
			       "record %lld is numbered out of turn", (long long)rec.seq);
			break;
		}
		if (through < 0 && strcmp(rec.e.action, "audit.archive") == 0) {
			broken(ret, rec.seq, "record %lld is an archive checkpoint that names no "
			       "range", (long long)rec.seq);
			break;
		}
		if (memcmp(rec.prev_hash, prev, CV_AUDIT_HASH_LEN) != 0) {
			broken(ret, rec.seq, through > 0 && rec.seq == through + 1 ?
			       "record %lld does not chain to the archived records' head" :
			       "record %lld does not chain to the record before it",
			       (long long)rec.seq);
			break;
		}
		/* Keyed from the token's start on, and keyed for good once keyed: a plain link
		 * there is a record forged or downgraded without the key. */
		if (!rec.keyed && (ret->keyed_from > 0 || (store->audit_keyed_from > 0 &&
							    rec.seq >= store->audit_keyed_from))) {
			broken(ret, rec.seq, "record %lld is not keyed with the token's audit key",
			       (long long)rec.seq);
			break;
		}
		/* A plain record never had the fields or the link the keyed format added; no
		 * key has a negative number. */
		if ((!rec.keyed && (!legacy_shape(&rec.e) || rec.link != 0)) || rec.link < 0) {
			broken(ret, rec.seq, "record %lld was changed after it was written",
			       (long long)rec.seq);
			break;
		}
		r = cv_store_audit_seal(store, &rec, want);
		if (r < 0)
			goto end;
		if (CRYPTO_memcmp(want, rec.hash, CV_AUDIT_HASH_LEN) != 0) {
			broken(ret, rec.seq, "record %lld was changed after it was written",
			       (long long)rec.seq);
			break;
		}
		if (rec.keyed && ret->keyed_from == 0)
			ret->keyed_from = rec.seq;
		if (!rec.keyed)
			ret->unkeyed++;
		memcpy(prev, rec.hash, CV_AUDIT_HASH_LEN);
		expect++;
	}
	if (ret->first_bad == 0 && rc != SQLITE_DONE) {
		r = store_err(rc);
		goto end;
	}
	if (ret->first_bad == 0 && through < 0)
		broken(ret, ret->first_seq > 0 ? ret->first_seq : 1,
		       "the newest archive checkpoint names no range");
	memcpy(ret->head, prev, CV_AUDIT_HASH_LEN);
	r = 0;
end:
	cvdb_finalize(stmt);
	stmt = NULL;
	store_finish(db, -1); /* a read: always rolled back */
out:
	store_return(store, conn);
	return r;
}

int cv_store_audit_walk(struct cv_store *store, int64_t through,
			int (*fn)(const struct cv_audit_record *rec, void *arg), void *arg)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	struct cv_audit_record rec;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, "SELECT " AUDIT_COLS " FROM audit_log WHERE seq <= ?1"
				" ORDER BY seq", 0, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, through);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto end;
	}
	r = 0;
	while (r == 0 && (rc = cvdb_step(stmt)) == SQLITE_ROW) {
		r = read_record(stmt, &rec);
		if (r == 0)
			r = fn(&rec, arg);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = store_err(rc);
end:
	cvdb_finalize(stmt);
	store_finish(db, -1);
out:
	store_return(store, conn);
	return r;
}

int cv_store_audit_seq_before(struct cv_store *store, int64_t before, int64_t *ret_seq)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt = NULL;
	int r;

	*ret_seq = 0;
	/* The newest record older than before, by seq: records are appended in time order
	 * (one clock), so everything up to it is older too, bar a clock stepped back. */
	r = store_prepare(conn, "SELECT coalesce(max(seq), 0) FROM audit_log WHERE at < ?1",
			  &stmt);
	if (r == 0)
		r = cvdb_bind_int64(stmt, 1, before) == SQLITE_OK ? 0 : CV_ERR_DB;
	if (r == 0)
		r = store_step_one(stmt);
	if (r == 0)
		*ret_seq = cvdb_column_int64(stmt, 0);
	store_return(store, conn);
	return r;
}

int cv_store_audit_archive_commit(struct cv_store *store, int64_t first, int64_t through,
				  const uint8_t head[CV_AUDIT_HASH_LEN],
				  const struct cv_audit_entry *checkpoint)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	/* What was archived must be what is removed: the same oldest record, the same head. */
	rc = cvdb_prepare(db, "SELECT (SELECT min(seq) FROM audit_log) = ?1 AND"
				" (SELECT hash FROM audit_log WHERE seq = ?2) = ?3", 0, &stmt,
				NULL);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 1, first);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 2, through);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_blob(stmt, 3, head, CV_AUDIT_HASH_LEN);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (rc != SQLITE_ROW) {
		r = store_err(rc);
		goto end;
	}
	if (cvdb_column_int(stmt, 0) != 1) {
		r = CV_ERR_PRECONDITION;
		goto end;
	}
	/* The checkpoint first: it takes the next seq and links to the newest record, which
	 * may be among those removed. */
	r = store_audit_append_on(db, checkpoint);
	if (r == 0)
		r = store_run(db, "DELETE FROM audit_log WHERE seq <= ?1", "i", through);
end:
	cvdb_finalize(stmt);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}
