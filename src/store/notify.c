/* store: notification channels, per-certificate rules, the outbox and its delivery log, and
 * the lease (issue 18 part 1).
 *
 * Every message is an outbox row written in a transaction: the change's own (next to its
 * audit record, store_notify_audit_on) or the expiry scan's. UNIQUE (channel_id, dedup_key)
 * makes each message once per (certificate version, threshold, channel) and per change,
 * however often a scan runs and on however many nodes; INSERT OR IGNORE lets the second
 * writer lose quietly. Payloads are built by SQLite's json_object from the rows themselves, in
 * the same statement, so what a message says is what the database held when it was written. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A delivery id: "dlv_" and 128 random bits. Not a secret (receivers log it), only unique. */
#define DELIVERY_ID_SQL "'dlv_' || lower(hex(randomblob(16)))"
#define RFC3339_SQL(x) "strftime('%Y-%m-%dT%H:%M:%SZ', " x ", 'unixepoch')"
/* What a message says about a certificate c (a row of certificates, or NULL columns when it
 * is gone), as of ?now. */
#define CERT_JSON_SQL(now)                                                                    \
	"json_object('name', c.name, 'version', c.version, 'subject', c.subject, 'issuer',"   \
	" c.issuer, 'serial', c.serial, 'sha256_fingerprint', c.sha256_fingerprint,"          \
	" 'not_before', " RFC3339_SQL("c.not_before") ", 'not_after', "                       \
	RFC3339_SQL("c.not_after") ", 'expires_in_days', (c.not_after - " now ") / 86400)"
#define SUBSCRIBED_SQL(event) \
	"EXISTS (SELECT 1 FROM json_each(ch.events) e WHERE e.value = " event ")"
/* PostgreSQL's forms (issue 15): json_build_object for json_object, json_array_elements_text
 * for json_each, to_char in UTC for strftime, gen_random_uuid (122 random bits) for
 * randomblob; parameters whose type nothing else tells are cast. */
#define DELIVERY_ID_SQL_PG "'dlv_' || replace(gen_random_uuid()::text, '-', '')"
#define RFC3339_SQL_PG(x) \
	"to_char(to_timestamp((" x ")::bigint) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define CERT_JSON_SQL_PG(now)                                                                 \
	"json_build_object('name', c.name, 'version', c.version, 'subject', c.subject,"       \
	" 'issuer', c.issuer, 'serial', c.serial, 'sha256_fingerprint', c.sha256_fingerprint," \
	" 'not_before', " RFC3339_SQL_PG("c.not_before") ", 'not_after', "                    \
	RFC3339_SQL_PG("c.not_after") ", 'expires_in_days', (c.not_after - " now ") / 86400)"
#define SUBSCRIBED_SQL_PG(event) \
	"EXISTS (SELECT 1 FROM json_array_elements_text(ch.events::json) e" \
	" WHERE e.value = " event ")"
#define OUTBOX_COLS \
	"delivery_id, channel_id, dedup_key, event, certificate, cert_version, threshold," \
	" payload, next_attempt_at, created_at"

#define CHANNEL_COLS \
	"id, name, kind, url, mail_from, mail_to, username, password_file, secret_sealed," \
	" events, created_at, created_by"

/* The changes that are events, by the audit trail's action. A merge is a certificate's first
 * version (imported) or a renewal's (renewed), which its version says. */
static const struct {
	const char *action;
	const char *event;
	int version;   /* the event is a new current version (else: once per audit record) */
} change_events[] = {
	{ "certificate.import", "certificate.imported", 1 },
	{ "certificate.generate", "certificate.imported", 1 }, /* self-signed: current at once */
	{ "certificate.merge", "certificate.imported", 1 },
	{ "certificate.renew", "certificate.renewed", 1 },
	{ "certificate.replace", "certificate.replaced", 1 },
	{ "certificate.delete", "certificate.deleted", 0 },
	/* Soft delete (issue 18 part 2): back in use, or gone for good (by a request or the
	 * background purge, whose actor is certvaultd). */
	{ "certificate.recover", "certificate.recovered", 0 },
	{ "certificate.purge", "certificate.purged", 0 },
};

int store_notify_audit_on(cvdb *db, const struct cv_audit_entry *entry, int64_t seq)
{
	static const char sql[] =
		"INSERT OR IGNORE INTO notification_outbox (" OUTBOX_COLS ")"
		" SELECT " DELIVERY_ID_SQL ", ch.id, CASE WHEN ?7 = 1 THEN 'version:' || c.id || ':'"
		" || c.version ELSE ?1 END, ev.event, coalesce(c.name, ?3),"
		" coalesce(c.version, 0), -1,"
		" json_object('event', ev.event, 'occurred_at', " RFC3339_SQL("?4") ","
		" 'actor', ?5, 'certificate', CASE WHEN c.id IS NULL THEN json_object('name', ?3)"
		" ELSE " CERT_JSON_SQL("?4") " END, 'contacts', json(coalesce(n.contacts, '[]'))),"
		" ?4, ?4"
		" FROM (SELECT CASE WHEN ?2 = 'certificate.imported' AND coalesce((SELECT version"
		" FROM certificates WHERE name = ?3 COLLATE NOCASE), 1) > 1 AND ?6 = 1"
		" THEN 'certificate.renewed' ELSE ?2 END AS event) ev"
		" JOIN notification_channels ch ON " SUBSCRIBED_SQL("ev.event")
		" LEFT JOIN certificates c ON c.name = ?3 COLLATE NOCASE"
		" LEFT JOIN certificate_notifications n ON n.cert_id = c.id"
		/* A change that makes a version current tells of it once, and only when it did:
		 * a generated key's CSR (pending, for a new certificate: no row yet; or for a
		 * renewal, which leaves a pending row naming the certificate) is no new version;
		 * its merge, which removes the pending row, is. */
		" WHERE ?7 = 0 OR (c.state = 1 AND NOT EXISTS (SELECT 1 FROM pending_certificates p"
		" WHERE p.cert_id = c.id))";
	static const char sql_pg[] =
		"INSERT OR IGNORE INTO notification_outbox (" OUTBOX_COLS ")"
		" SELECT " DELIVERY_ID_SQL_PG ", ch.id, CASE WHEN ?7 = 1 THEN 'version:' || c.id"
		" || ':' || c.version ELSE ?1::text END, ev.event, coalesce(c.name, ?3::text),"
		" coalesce(c.version, 0), -1,"
		" json_build_object('event', ev.event, 'occurred_at', " RFC3339_SQL_PG("?4") ","
		" 'actor', ?5::text, 'certificate', CASE WHEN c.id IS NULL THEN"
		" json_build_object('name', ?3::text) ELSE " CERT_JSON_SQL_PG("?4") " END,"
		" 'contacts', coalesce(n.contacts, '[]')::json)::text, ?4, ?4"
		" FROM (SELECT CASE WHEN ?2::text = 'certificate.imported' AND coalesce((SELECT"
		" version FROM certificates WHERE name = ?3::text COLLATE NOCASE), 1) > 1"
		" AND ?6 = 1 THEN 'certificate.renewed' ELSE ?2::text END AS event) ev"
		" JOIN notification_channels ch ON " SUBSCRIBED_SQL_PG("ev.event")
		" LEFT JOIN certificates c ON c.name = ?3::text COLLATE NOCASE"
		" LEFT JOIN certificate_notifications n ON n.cert_id = c.id"
		" WHERE ?7 = 0 OR (c.state = 1 AND NOT EXISTS (SELECT 1 FROM pending_certificates p"
		" WHERE p.cert_id = c.id))";
	const char *sql_of;
	char dedup[48];
	const char *event = NULL;
	struct store_conn *conn = NULL;
	cvdb_stmt *stmt = NULL;
	size_t i;
	int rc, version = 0;

	if (entry == NULL || !entry->ok)
		return 0;
	for (i = 0; i < sizeof(change_events) / sizeof(change_events[0]); i++)
		if (strcmp(entry->action, change_events[i].action) == 0)
			event = change_events[i].event;
	if (event == NULL)
		return 0;
	for (i = 0; i < sizeof(change_events) / sizeof(change_events[0]); i++)
		if (strcmp(entry->action, change_events[i].action) == 0)
			version = change_events[i].version;
	snprintf(dedup, sizeof(dedup), "audit:%lld", (long long)seq);
	/* Every import comes here: on a pooled connection the statement stays prepared. */
	sql_of = cvdb_pick(db, sql, sql_pg);
	if (store_current_conn != NULL && store_current_conn->db == db) {
		conn = store_current_conn;
		rc = store_prepare(conn, sql_of, &stmt) == 0 ? SQLITE_OK : SQLITE_ERROR;
	} else {
		rc = cvdb_prepare(db, sql_of, 0, &stmt, NULL);
	}
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, dedup);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 2, event);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 3, entry->target);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 4, entry->at);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 5, entry->actor_name);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int(stmt, 6, strcmp(entry->action, "certificate.merge") == 0);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int(stmt, 7, version);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (conn == NULL)
		cvdb_finalize(stmt);
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

int store_notify_purge_cancel_on(cvdb *db, int64_t cert_id)
{
	/* The purge's record (and its message) is committed before the keys are destroyed; a
	 * key the token kept undoes the purge, so a message not yet sent would tell of what
	 * did not happen. One already sent cannot be called back: the audit trail's refusal
	 * after the purge's record says what happened. */
	return store_run(db,
			 "UPDATE notification_outbox SET state = 2, last_error = 'not sent: the"
			 " purge was undone (a key could not be destroyed)'"
			 " WHERE state = 0 AND attempts = 0 AND event = 'certificate.purged'"
			 " AND certificate = (SELECT name FROM certificates WHERE id = ?1)"
			 " COLLATE NOCASE",
			 "i", cert_id);
}

static int read_channel(cvdb_stmt *stmt, struct cv_notify_channel *ch)
{
	int r;

	memset(ch, 0, sizeof(*ch));
	r = store_copy_text(stmt, 0, ch->id, sizeof(ch->id));
	if (r == 0)
		r = store_copy_text(stmt, 1, ch->name, sizeof(ch->name));
	if (r == 0)
		r = store_copy_text(stmt, 2, ch->kind, sizeof(ch->kind));
	if (r == 0)
		r = store_copy_text(stmt, 3, ch->url, sizeof(ch->url));
	if (r == 0)
		r = store_copy_text(stmt, 4, ch->mail_from, sizeof(ch->mail_from));
	if (r == 0)
		r = store_copy_text(stmt, 5, ch->mail_to, sizeof(ch->mail_to));
	if (r == 0)
		r = store_copy_text(stmt, 6, ch->username, sizeof(ch->username));
	if (r == 0)
		r = store_copy_text(stmt, 7, ch->password_file, sizeof(ch->password_file));
	if (r == 0)
		r = store_copy_text(stmt, 9, ch->events, sizeof(ch->events));
	if (r == 0)
		r = store_copy_text(stmt, 11, ch->created_by, sizeof(ch->created_by));
	if (r < 0)
		return r;
	if (cvdb_column_type(stmt, 8) == SQLITE_BLOB) {
		if ((size_t)cvdb_column_bytes(stmt, 8) > sizeof(ch->sealed))
			return CV_ERR_DB;
		ch->sealed_len = (size_t)cvdb_column_bytes(stmt, 8);
		memcpy(ch->sealed, cvdb_column_blob(stmt, 8), ch->sealed_len);
	}
	ch->created_at = cvdb_column_int64(stmt, 10);
	return 0;
}

int cv_store_notify_channel_insert(struct cv_store *store, const struct cv_notify_channel *ch,
				   const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	rc = cvdb_prepare(db, "INSERT INTO notification_channels (" CHANNEL_COLS ") VALUES"
				" (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)", 0, &stmt,
				NULL);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 1, ch->id);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 2, ch->name);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 3, ch->kind);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 4, ch->url);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 5, ch->mail_from);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 6, ch->mail_to[0] != '\0' ? ch->mail_to : "[]");
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 7, ch->username);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 8, ch->password_file);
	if (rc == SQLITE_OK)
		rc = ch->sealed_len > 0 ? cvdb_bind_blob(stmt, 9, ch->sealed,
							    (int)ch->sealed_len) :
					  cvdb_bind_null(stmt, 9);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 10, ch->events);
	if (rc == SQLITE_OK)
		rc = cvdb_bind_int64(stmt, 11, ch->created_at);
	if (rc == SQLITE_OK)
		rc = store_bind_text(stmt, 12, ch->created_by);
	if (rc == SQLITE_OK)
		rc = cvdb_step(stmt);
	if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		r = CV_ERR_NAME_TAKEN;
	else if (rc != SQLITE_DONE)
		r = store_err(rc);
	else
		r = store_audit_append_on(db, audit);
	cvdb_finalize(stmt);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}

int cv_store_notify_channel_get(struct cv_store *store, const char *id_or_name,
				struct cv_notify_channel *ret)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	r = store_prepare(conn, "SELECT " CHANNEL_COLS " FROM notification_channels WHERE id = ?1"
			  " OR name = ?1", &stmt);
	if (r == 0 && store_bind_text(stmt, 1, id_or_name) != SQLITE_OK)
		r = CV_ERR_DB;
	if (r == 0)
		r = store_step_one(stmt);
	if (r == 0)
		r = read_channel(stmt, ret);
	store_return(store, conn);
	return r;
}

int cv_store_notify_channel_list(struct cv_store *store, struct cv_notify_channel **ret,
				 size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_notify_channel *all = NULL, *grown;
	size_t n = 0, cap = 0;
	cvdb_stmt *stmt;
	int rc, r;

	r = store_prepare(conn, "SELECT " CHANNEL_COLS " FROM notification_channels"
			  " ORDER BY name", &stmt);
	while (r == 0 && (rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(all, &cap, n, sizeof(*all));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			break;
		}
		all = grown;
		r = read_channel(stmt, &all[n]);
		if (r == 0)
			n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = store_err(rc);
	store_return(store, conn);
	if (r < 0) {
		free(all);
		return r;
	}
	*ret = all;
	*ret_n = n;
	return 0;
}

int cv_store_notify_channel_delete(struct cv_store *store, const char *id,
				   const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_run(db, "UPDATE notification_outbox SET state = 2, last_error = 'the channel"
		      " was deleted' WHERE channel_id = ?1 AND state = 0", "t", id);
	if (r == 0)
		r = store_run(db, "DELETE FROM notification_channels WHERE id = ?1", "t", id);
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}

int cv_store_cert_notify_get(struct cv_store *store, const char *name, char ret_name[65],
			     char *thresholds, size_t thresholds_len, char *contacts,
			     size_t contacts_len)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	r = store_prepare(conn, "SELECT c.name, coalesce(n.thresholds, ''),"
			  " coalesce(n.contacts, '[]') FROM certificates c"
			  " LEFT JOIN certificate_notifications n ON n.cert_id = c.id"
			  " WHERE c.name = ?1 COLLATE NOCASE AND c.state = 1", &stmt);
	if (r == 0 && store_bind_text(stmt, 1, name) != SQLITE_OK)
		r = CV_ERR_DB;
	if (r == 0)
		r = store_step_one(stmt);
	if (r == 0)
		r = store_copy_text(stmt, 0, ret_name, 65);
	if (r == 0)
		r = store_copy_text(stmt, 1, thresholds, thresholds_len);
	if (r == 0)
		r = store_copy_text(stmt, 2, contacts, contacts_len);
	store_return(store, conn);
	return r;
}

int cv_store_cert_notify_set(struct cv_store *store, const char *name, const char *thresholds,
			     const char *contacts, const struct cv_audit_entry *audit)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_run(db, "INSERT INTO certificate_notifications (cert_id, thresholds, contacts)"
		      " SELECT id, ?2, ?3 FROM certificates WHERE name = ?1 COLLATE NOCASE AND state = 1"
		      " ON CONFLICT (cert_id) DO UPDATE SET thresholds = excluded.thresholds,"
		      " contacts = excluded.contacts", "ttt", name, thresholds, contacts);
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0)
		r = store_audit_append_on(db, audit);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}

/* Adds the rows stmt inserts in its own transaction; *ret_added how many. */
static int run_insert(struct store_conn *conn, cvdb_stmt *stmt, int64_t *ret_added)
{
	cvdb *db = conn->db;
	int rc, r;

	*ret_added = 0;
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	rc = cvdb_step(stmt);
	r = rc == SQLITE_DONE ? 0 : store_err(rc);
	if (r == 0)
		*ret_added = cvdb_changes(db);
	return store_finish(db, r);
}

int cv_store_notify_scan(struct cv_store *store, const char *default_thresholds, int64_t now,
			 int64_t *ret_added)
{
	/* Only certificates within reach of the largest threshold any rule names are read:
	 * the (state, not_after) index gives them. */
	static const char sql[] =
		"INSERT OR IGNORE INTO notification_outbox (" OUTBOX_COLS ")"
		" SELECT " DELIVERY_ID_SQL ", ch.id,"
		" 'expiry:' || c.id || ':' || c.version || ':' || t.th, t.event, c.name, c.version,"
		" t.th, json_object('event', t.event, 'occurred_at', " RFC3339_SQL("?1") ","
		" 'threshold_days', t.th, 'certificate', " CERT_JSON_SQL("?1") ","
		" 'contacts', json(coalesce(n.contacts, '[]'))), ?1, ?1"
		" FROM (SELECT id, th, CASE WHEN th = 0 THEN 'certificate.expired'"
		" ELSE 'certificate.expiring' END AS event FROM (SELECT c.id AS id, (SELECT"
		" min(j.value) FROM json_each(CASE WHEN coalesce(n.thresholds, '') = '' THEN ?2"
		" ELSE n.thresholds END) j WHERE c.not_after - ?1 <= j.value * 86400) AS th"
		" FROM certificates c LEFT JOIN certificate_notifications n ON n.cert_id = c.id"
		" WHERE c.state = 1 AND c.not_after <= ?1 + 86400 * max((SELECT"
		" coalesce(max(value), 0) FROM json_each(?2)), (SELECT coalesce(max(j.value), 0)"
		" FROM certificate_notifications n2, json_each(CASE WHEN n2.thresholds = ''"
		" THEN '[]' ELSE n2.thresholds END) j))) WHERE th IS NOT NULL) t"
		" JOIN certificates c ON c.id = t.id"
		" LEFT JOIN certificate_notifications n ON n.cert_id = c.id"
		" JOIN notification_channels ch ON " SUBSCRIBED_SQL("t.event");
	static const char sql_pg[] =
		"INSERT OR IGNORE INTO notification_outbox (" OUTBOX_COLS ")"
		" SELECT " DELIVERY_ID_SQL_PG ", ch.id,"
		" 'expiry:' || c.id || ':' || c.version || ':' || t.th, t.event, c.name, c.version,"
		" t.th, json_build_object('event', t.event, 'occurred_at', " RFC3339_SQL_PG("?1") ","
		" 'threshold_days', t.th, 'certificate', " CERT_JSON_SQL_PG("?1") ","
		" 'contacts', coalesce(n.contacts, '[]')::json)::text, ?1, ?1"
		" FROM (SELECT id, th, CASE WHEN th = 0 THEN 'certificate.expired'"
		" ELSE 'certificate.expiring' END AS event FROM (SELECT c.id AS id, (SELECT"
		" min(j.value::bigint) FROM json_array_elements_text((CASE WHEN"
		" coalesce(n.thresholds, '') = '' THEN ?2::text ELSE n.thresholds END)::json) j"
		" WHERE c.not_after - ?1::bigint <= j.value::bigint * 86400) AS th"
		" FROM certificates c LEFT JOIN certificate_notifications n ON n.cert_id = c.id"
		" WHERE c.state = 1 AND c.not_after <= ?1::bigint + 86400 * GREATEST((SELECT"
		" coalesce(max(value::bigint), 0) FROM json_array_elements_text(?2::json)),"
		" (SELECT coalesce(max(j.value::bigint), 0) FROM certificate_notifications n2,"
		" json_array_elements_text((CASE WHEN n2.thresholds = '' THEN '[]'"
		" ELSE n2.thresholds END)::json) j))) x WHERE th IS NOT NULL) t"
		" JOIN certificates c ON c.id = t.id"
		" LEFT JOIN certificate_notifications n ON n.cert_id = c.id"
		" JOIN notification_channels ch ON " SUBSCRIBED_SQL_PG("t.event");
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	r = store_prepare(conn, cvdb_pick(conn->db, sql, sql_pg), &stmt);
	if (r == 0 && (cvdb_bind_int64(stmt, 1, now) != SQLITE_OK ||
		       store_bind_text(stmt, 2, default_thresholds) != SQLITE_OK))
		r = CV_ERR_DB;
	if (r == 0)
		r = run_insert(conn, stmt, ret_added);
	store_return(store, conn);
	return r;
}

int cv_store_notify_crl_candidates(struct cv_store *store, char (**ret)[65], size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	char (*all)[65] = NULL, (*grown)[65];
	size_t n = 0, cap = 0;
	cvdb_stmt *stmt;
	int rc = SQLITE_DONE, r;

	r = store_prepare(conn, cvdb_pick(conn->db,
			  "SELECT c.name FROM certificates c WHERE c.state = 1"
			  " AND EXISTS (SELECT 1 FROM crls WHERE crls.issuer = c.issuer)"
			  " AND EXISTS (SELECT 1 FROM notification_channels ch WHERE "
			  SUBSCRIBED_SQL("'certificate.revoked'") ")"
			  " AND NOT EXISTS (SELECT 1 FROM notification_outbox o WHERE o.dedup_key ="
			  " 'revoked:' || c.id || ':' || c.version) ORDER BY c.name",
			  "SELECT c.name FROM certificates c WHERE c.state = 1"
			  " AND EXISTS (SELECT 1 FROM crls WHERE crls.issuer = c.issuer)"
			  " AND EXISTS (SELECT 1 FROM notification_channels ch WHERE "
			  SUBSCRIBED_SQL_PG("'certificate.revoked'") ")"
			  " AND NOT EXISTS (SELECT 1 FROM notification_outbox o WHERE o.dedup_key ="
			  " 'revoked:' || c.id || ':' || c.version) ORDER BY c.name"), &stmt);
	while (r == 0 && (rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(all, &cap, n, sizeof(*all));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			break;
		}
		all = grown;
		r = store_copy_text(stmt, 0, all[n], sizeof(all[n]));
		if (r == 0)
			n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = store_err(rc);
	store_return(store, conn);
	if (r < 0) {
		free(all);
		return r;
	}
	*ret = all;
	*ret_n = n;
	return 0;
}

int cv_store_notify_cert_event(struct cv_store *store, const char *name, const char *event,
			       const char *dedup_key, const char *detail, int64_t now,
			       int64_t *ret_added)
{
	static const char sql[] =
		"INSERT OR IGNORE INTO notification_outbox (" OUTBOX_COLS ")"
		" SELECT " DELIVERY_ID_SQL ", ch.id, ?3, ?2, c.name, c.version, -1,"
		" json_object('event', ?2, 'occurred_at', " RFC3339_SQL("?4") ","
		" 'certificate', " CERT_JSON_SQL("?4") ", 'detail', json(CASE WHEN ?5 = ''"
		" THEN '{}' ELSE ?5 END), 'contacts', json(coalesce(n.contacts, '[]'))), ?4, ?4"
		" FROM certificates c JOIN notification_channels ch ON " SUBSCRIBED_SQL("?2")
		" LEFT JOIN certificate_notifications n ON n.cert_id = c.id"
		" WHERE c.name = ?1 AND c.state = 1";
	static const char sql_pg[] =
		"INSERT OR IGNORE INTO notification_outbox (" OUTBOX_COLS ")"
		" SELECT " DELIVERY_ID_SQL_PG ", ch.id, ?3::text, ?2::text, c.name, c.version, -1,"
		" json_build_object('event', ?2::text, 'occurred_at', " RFC3339_SQL_PG("?4") ","
		" 'certificate', " CERT_JSON_SQL_PG("?4") ", 'detail', (CASE WHEN ?5::text = ''"
		" THEN '{}' ELSE ?5::text END)::json, 'contacts', coalesce(n.contacts, '[]')::json)"
		"::text, ?4, ?4"
		" FROM certificates c JOIN notification_channels ch ON " SUBSCRIBED_SQL_PG("?2::text")
		" LEFT JOIN certificate_notifications n ON n.cert_id = c.id"
		" WHERE c.name = ?1::text AND c.state = 1";
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	r = store_prepare(conn, cvdb_pick(conn->db, sql, sql_pg), &stmt);
	if (r == 0 && (store_bind_text(stmt, 1, name) != SQLITE_OK ||
		       store_bind_text(stmt, 2, event) != SQLITE_OK ||
		       store_bind_text(stmt, 3, dedup_key) != SQLITE_OK ||
		       cvdb_bind_int64(stmt, 4, now) != SQLITE_OK ||
		       store_bind_text(stmt, 5, detail) != SQLITE_OK))
		r = CV_ERR_DB;
	if (r == 0)
		r = run_insert(conn, stmt, ret_added);
	store_return(store, conn);
	return r;
}

int cv_store_notify_event(struct cv_store *store, const char *event, const char *dedup_key,
			  const char *detail, int64_t now, int64_t *ret_added)
{
	static const char sql[] =
		"INSERT OR IGNORE INTO notification_outbox (" OUTBOX_COLS ")"
		" SELECT " DELIVERY_ID_SQL ", ch.id, ?2, ?1, '', 0, -1,"
		" json_object('event', ?1, 'occurred_at', " RFC3339_SQL("?3") ","
		" 'detail', json(CASE WHEN ?4 = '' THEN '{}' ELSE ?4 END)), ?3, ?3"
		" FROM notification_channels ch WHERE " SUBSCRIBED_SQL("?1");
	static const char sql_pg[] =
		"INSERT OR IGNORE INTO notification_outbox (" OUTBOX_COLS ")"
		" SELECT " DELIVERY_ID_SQL_PG ", ch.id, ?2::text, ?1::text, '', 0, -1,"
		" json_build_object('event', ?1::text, 'occurred_at', " RFC3339_SQL_PG("?3") ","
		" 'detail', (CASE WHEN ?4::text = '' THEN '{}' ELSE ?4::text END)::json)::text,"
		" ?3, ?3"
		" FROM notification_channels ch WHERE " SUBSCRIBED_SQL_PG("?1::text");
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	r = store_prepare(conn, cvdb_pick(conn->db, sql, sql_pg), &stmt);
	if (r == 0 && (store_bind_text(stmt, 1, event) != SQLITE_OK ||
		       store_bind_text(stmt, 2, dedup_key) != SQLITE_OK ||
		       cvdb_bind_int64(stmt, 3, now) != SQLITE_OK ||
		       store_bind_text(stmt, 4, detail) != SQLITE_OK))
		r = CV_ERR_DB;
	if (r == 0)
		r = run_insert(conn, stmt, ret_added);
	store_return(store, conn);
	return r;
}

int cv_store_lease(struct cv_store *store, const char *name, const char *holder, int64_t now,
		   int64_t ttl, int *ret_held)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	*ret_held = 0;
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_run(db, "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2,"
		      " CAST(?3 AS BIGINT) + ?4)"
		      " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
		      " expires_at = excluded.expires_at WHERE leases.holder = excluded.holder"
		      " OR leases.expires_at <= ?3", "ttii", name, holder, now, ttl);
	if (r == 0) {
		rc = cvdb_prepare(db, "SELECT CASE WHEN holder = ?2 THEN 1 ELSE 0 END FROM leases"
					" WHERE name = ?1", 0,
					&stmt, NULL);
		if (rc == SQLITE_OK)
			rc = store_bind_text(stmt, 1, name);
		if (rc == SQLITE_OK)
			rc = store_bind_text(stmt, 2, holder);
		if (rc == SQLITE_OK)
			rc = cvdb_step(stmt);
		if (rc == SQLITE_ROW)
			*ret_held = cvdb_column_int(stmt, 0) != 0;
		else
			r = store_err(rc);
		cvdb_finalize(stmt);
	}
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}

void cv_notify_deliveries_free(struct cv_notify_delivery *d, size_t n)
{
	size_t i;

	for (i = 0; d != NULL && i < n; i++)
		free(d[i].payload);
	free(d);
}

#define DELIVERY_COLS \
	"o.id, o.delivery_id, o.channel_id, coalesce(ch.name, ''), o.event, o.certificate," \
	" o.cert_version, o.threshold, o.payload, o.state, o.attempts, o.next_attempt_at,"  \
	" o.created_at, o.delivered_at, o.last_error"

static int read_delivery(cvdb_stmt *stmt, struct cv_notify_delivery *d)
{
	int r;

	memset(d, 0, sizeof(*d));
	d->id = cvdb_column_int64(stmt, 0);
	r = store_copy_text(stmt, 1, d->delivery_id, sizeof(d->delivery_id));
	if (r == 0)
		r = store_copy_text(stmt, 2, d->channel_id, sizeof(d->channel_id));
	if (r == 0)
		r = store_copy_text(stmt, 3, d->channel_name, sizeof(d->channel_name));
	if (r == 0)
		r = store_copy_text(stmt, 4, d->event, sizeof(d->event));
	if (r == 0)
		r = store_copy_text(stmt, 5, d->certificate, sizeof(d->certificate));
	if (r == 0)
		r = store_copy_text(stmt, 14, d->last_error, sizeof(d->last_error));
	if (r == 0)
		r = store_dup_text(stmt, 8, &d->payload);
	if (r < 0)
		return r;
	d->cert_version = cvdb_column_int64(stmt, 6);
	d->threshold = cvdb_column_int64(stmt, 7);
	d->state = (enum cv_delivery_state)cvdb_column_int(stmt, 9);
	d->attempts = cvdb_column_int64(stmt, 10);
	d->next_attempt_at = cvdb_column_int64(stmt, 11);
	d->created_at = cvdb_column_int64(stmt, 12);
	d->delivered_at = cvdb_column_int64(stmt, 13);
	return 0;
}

/* The rows stmt gives, as deliveries. */
static int read_deliveries(cvdb_stmt *stmt, struct cv_notify_delivery **ret, size_t *ret_n)
{
	struct cv_notify_delivery *all = NULL, *grown;
	size_t n = 0, cap = 0;
	int rc, r = 0;

	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(all, &cap, n, sizeof(*all));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			break;
		}
		all = grown;
		r = read_delivery(stmt, &all[n]);
		if (r < 0)
			break;
		n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = store_err(rc);
	if (r < 0) {
		cv_notify_deliveries_free(all, n);
		return r;
	}
	*ret = all;
	*ret_n = n;
	return 0;
}

int cv_store_notify_deliveries(struct cv_store *store, const struct cv_notify_filter *f,
			       struct cv_notify_delivery **ret, size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	r = store_prepare(conn, "SELECT " DELIVERY_COLS " FROM notification_outbox o"
			  " LEFT JOIN notification_channels ch ON ch.id = o.channel_id"
			  " WHERE (?1 = '' OR o.channel_id = ?1 OR ch.name = ?1 COLLATE NOCASE)"
			  " AND (?2 = '' OR o.certificate = ?2 COLLATE NOCASE)"
			  " AND (?3 = '' OR o.event = ?3) AND (?4 < 0 OR o.state = ?4)"
			  " AND (?5 = 0 OR o.id < ?5) ORDER BY o.id DESC LIMIT ?6", &stmt);
	if (r == 0 && (store_bind_text(stmt, 1, f->channel) != SQLITE_OK ||
		       store_bind_text(stmt, 2, f->certificate) != SQLITE_OK ||
		       store_bind_text(stmt, 3, f->event) != SQLITE_OK ||
		       cvdb_bind_int(stmt, 4, f->state) != SQLITE_OK ||
		       cvdb_bind_int64(stmt, 5, f->before) != SQLITE_OK ||
		       cvdb_bind_int64(stmt, 6, f->limit) != SQLITE_OK))
		r = CV_ERR_DB;
	if (r == 0)
		r = read_deliveries(stmt, ret, ret_n);
	store_return(store, conn);
	return r;
}

int cv_store_notify_due(struct cv_store *store, int64_t now, int64_t limit,
			struct cv_notify_delivery **ret, size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	r = store_prepare(conn, "SELECT " DELIVERY_COLS " FROM notification_outbox o"
			  " LEFT JOIN notification_channels ch ON ch.id = o.channel_id"
			  " WHERE o.state = 0 AND o.next_attempt_at <= ?1"
			  " ORDER BY o.next_attempt_at, o.id LIMIT ?2", &stmt);
	if (r == 0 && (cvdb_bind_int64(stmt, 1, now) != SQLITE_OK ||
		       cvdb_bind_int64(stmt, 2, limit) != SQLITE_OK))
		r = CV_ERR_DB;
	if (r == 0)
		r = read_deliveries(stmt, ret, ret_n);
	store_return(store, conn);
	return r;
}

int cv_store_notify_attempts(struct cv_store *store, int64_t outbox_id,
			     struct cv_notify_attempt **ret, size_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	struct cv_notify_attempt *all = NULL, *grown;
	size_t n = 0, cap = 0;
	cvdb_stmt *stmt;
	int rc = SQLITE_DONE, r;

	r = store_prepare(conn, "SELECT n, started_at, finished_at, outcome, detail"
			  " FROM notification_attempts WHERE outbox_id = ?1 ORDER BY n", &stmt);
	if (r == 0 && cvdb_bind_int64(stmt, 1, outbox_id) != SQLITE_OK)
		r = CV_ERR_DB;
	while (r == 0 && (rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(all, &cap, n, sizeof(*all));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			break;
		}
		all = grown;
		memset(&all[n], 0, sizeof(all[n]));
		all[n].n = cvdb_column_int64(stmt, 0);
		all[n].started_at = cvdb_column_int64(stmt, 1);
		all[n].finished_at = cvdb_column_int64(stmt, 2);
		r = store_copy_text(stmt, 3, all[n].outcome, sizeof(all[n].outcome));
		if (r == 0)
			r = store_copy_text(stmt, 4, all[n].detail, sizeof(all[n].detail));
		if (r == 0)
			n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = store_err(rc);
	store_return(store, conn);
	if (r < 0) {
		free(all);
		return r;
	}
	*ret = all;
	*ret_n = n;
	return 0;
}

int cv_store_notify_attempt_begin(struct cv_store *store, int64_t outbox_id, int64_t now,
				  int64_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	cvdb_stmt *stmt = NULL;
	int rc, r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_run(db, "UPDATE notification_outbox SET attempts = attempts + 1"
		      " WHERE id = ?1 AND state = 0", "i", outbox_id);
	if (r == 0 && cvdb_changes(db) == 0)
		r = CV_ERR_NOT_FOUND;
	if (r == 0) {
		rc = cvdb_prepare(db, "SELECT attempts FROM notification_outbox WHERE id = ?1", 0, &stmt, NULL);
		if (rc == SQLITE_OK)
			rc = cvdb_bind_int64(stmt, 1, outbox_id);
		if (rc == SQLITE_OK)
			rc = cvdb_step(stmt);
		if (rc == SQLITE_ROW)
			*ret_n = cvdb_column_int64(stmt, 0);
		else
			r = store_err(rc);
		cvdb_finalize(stmt);
	}
	if (r == 0)
		r = store_run(db, "INSERT INTO notification_attempts (outbox_id, n, started_at,"
			      " outcome) VALUES (?1, ?2, ?3, 'sending')", "iii", outbox_id, *ret_n,
			      now);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}

int cv_store_notify_attempt_end(struct cv_store *store, int64_t outbox_id, int64_t n,
				int64_t now, const char *outcome, const char *detail,
				enum cv_delivery_state state, int64_t next_attempt_at)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_run(db, "UPDATE notification_attempts SET finished_at = ?3, outcome = ?4,"
		      " detail = ?5 WHERE outbox_id = ?1 AND n = ?2", "iiitt", outbox_id, n, now,
		      outcome, detail);
	if (r == 0)
		r = store_run(db, "UPDATE notification_outbox SET state = ?2, next_attempt_at = ?3,"
			      " delivered_at = CASE WHEN ?2 = 1 THEN ?4 ELSE delivered_at END,"
			      " last_error = CASE WHEN ?2 = 1 THEN '' ELSE ?5 END WHERE id = ?1",
			      "iiiit", outbox_id, (int64_t)state, next_attempt_at, now, detail);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}

int cv_store_notify_prune(struct cv_store *store, int64_t cutoff, int64_t limit,
			  int64_t *ret_n)
{
	/* A batch at a time: the write lock is held for a bounded delete, never for a whole
	 * log's worth. The attempts go by their foreign key (ON DELETE CASCADE). */
	static const char sql[] =
		"DELETE FROM notification_outbox WHERE id IN (SELECT o.id FROM notification_outbox o"
		" WHERE o.state IN (1, 2) AND o.created_at < ?1"
		" AND (CASE WHEN o.state = 1 THEN o.delivered_at ELSE o.next_attempt_at END) < ?1"
		" AND NOT EXISTS (SELECT 1 FROM notification_attempts a WHERE a.outbox_id = o.id"
		" AND (a.finished_at >= ?1 OR a.started_at >= ?1))"
		" AND NOT ((o.dedup_key LIKE 'expiry:%' OR o.dedup_key LIKE 'revoked:%')"
		" AND EXISTS (SELECT 1 FROM certificates c WHERE c.name = o.certificate"
		" COLLATE NOCASE AND c.version = o.cert_version))"
		" ORDER BY o.id LIMIT ?2)";
	struct store_conn *conn = store_borrow(store);
	cvdb_stmt *stmt;
	int r;

	*ret_n = 0;
	r = store_prepare(conn, sql, &stmt);
	if (r == 0 && (cvdb_bind_int64(stmt, 1, cutoff) != SQLITE_OK ||
		       cvdb_bind_int64(stmt, 2, limit) != SQLITE_OK))
		r = CV_ERR_DB;
	if (r == 0)
		r = run_insert(conn, stmt, ret_n);
	store_return(store, conn);
	return r;
}

int cv_store_notify_interrupted(struct cv_store *store, int64_t now, int64_t *ret_n)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int r;

	*ret_n = 0;
	r = store_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		goto out;
	r = store_run(db, "UPDATE notification_outbox SET next_attempt_at = ?1 WHERE state = 0"
		      " AND id IN (SELECT outbox_id FROM notification_attempts"
		      " WHERE outcome = 'sending')", "i", now);
	if (r == 0)
		r = store_run(db, "UPDATE notification_attempts SET outcome = 'interrupted',"
			      " finished_at = ?1, detail = 'certvaultd stopped during the attempt:"
			      " sent again with the same delivery id' WHERE outcome = 'sending'",
			      "i", now);
	if (r == 0)
		*ret_n = cvdb_changes(db);
	r = store_finish(db, r);
out:
	store_return(store, conn);
	return r;
}
