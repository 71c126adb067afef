/* store: opening the database, its connection pool and its schema migrations. */
/* pthread_setname_np */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "certvault/util.h"
#include "internal.h"


/* The schema CHECK below spells the key id length out. */
_Static_assert(CV_TOKEN_ID_LEN == 16, "schema v1 assumes 16-byte key ids");

/* Schema steps: migrations[i] takes a database from user_version i to i + 1. Steps are only
 * ever appended; an applied step is never edited. */
static const char *const migrations[] = {
	/* v1: certificates and their domains.
	 * AUTOINCREMENT because the vault holds ids across calls (pending -> active,
	 * deleting -> removed) and a reused id could name somebody else's row.
	 * (state, name, not_before, not_after) serves the list: it walks active rows in name
	 * order (keyset paging) and judges the status filter without touching the table.
	 * (state, not_after, not_before) serves the status counts the same way.
	 * certificate_domains is clustered on (cert_id, position), so a certificate's domains
	 * are one range read and the cascade on delete needs no other index; the domain index
	 * is for exact lookups (which certificates name this host). */
	"CREATE TABLE certificates ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE,"
	" description TEXT NOT NULL DEFAULT '',"
	" state INTEGER NOT NULL CHECK (state IN (0, 1, 2)),"
	" cert_der BLOB NOT NULL,"
	" chain_pem TEXT NOT NULL DEFAULT '',"
	" subject TEXT NOT NULL,"
	" issuer TEXT NOT NULL,"
	" serial TEXT NOT NULL,"
	" sha256_fingerprint TEXT NOT NULL,"
	" key_description TEXT NOT NULL,"
	" primary_domain TEXT NOT NULL,"
	" not_before INTEGER NOT NULL,"
	" not_after INTEGER NOT NULL,"
	" key_id BLOB NOT NULL UNIQUE CHECK (length(key_id) = 16),"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE certificate_domains ("
	" cert_id INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
	" position INTEGER NOT NULL,"
	" domain TEXT NOT NULL,"
	" PRIMARY KEY (cert_id, position)"
	") STRICT, WITHOUT ROWID;"
	"CREATE INDEX certificate_domains_domain ON certificate_domains(domain);"
	"CREATE INDEX certificates_state_name"
	" ON certificates(state, name, not_before, not_after);"
	"CREATE INDEX certificates_state_not_after"
	" ON certificates(state, not_after, not_before);",

	/* v2: versions, services and the key journal.
	 * A certificates row holds the current version; renew and replace copy it into
	 * certificate_versions (ended_by 1 renewed, 2 replaced) in the transaction that writes
	 * the next one. key_state says whether a superseded version's key is still in the token
	 * (0), being destroyed (1: the reconciler finishes) or gone (2).
	 * key_journal names a key about to be created for a new version before C_CreateObject,
	 * and loses the row in the transaction that makes the version current: a row left
	 * there after a crash is a key nothing uses, which the reconciler destroys.
	 * A service uses at most one certificate (services.cert_id, RESTRICT so a bound
	 * certificate cannot lose its row); (cert_id, name) lists a certificate's services in
	 * name order and answers "in use" from the index. */
	"ALTER TABLE certificates ADD COLUMN version INTEGER NOT NULL DEFAULT 1;"
	"ALTER TABLE certificates ADD COLUMN current_since INTEGER NOT NULL DEFAULT 0;"
	"UPDATE certificates SET current_since = created_at;"
	"CREATE TABLE certificate_versions ("
	" id INTEGER PRIMARY KEY,"
	" cert_id INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
	" version INTEGER NOT NULL,"
	" cert_der BLOB NOT NULL,"
	" chain_pem TEXT NOT NULL,"
	" subject TEXT NOT NULL,"
	" issuer TEXT NOT NULL,"
	" serial TEXT NOT NULL,"
	" sha256_fingerprint TEXT NOT NULL,"
	" key_description TEXT NOT NULL,"
	" not_before INTEGER NOT NULL,"
	" not_after INTEGER NOT NULL,"
	" key_id BLOB NOT NULL UNIQUE CHECK (length(key_id) = 16),"
	" key_state INTEGER NOT NULL CHECK (key_state IN (0, 1, 2)),"
	" current_from INTEGER NOT NULL,"
	" current_until INTEGER NOT NULL,"
	" ended_by INTEGER NOT NULL CHECK (ended_by IN (1, 2)),"
	" UNIQUE (cert_id, version)"
	") STRICT;"
	"CREATE INDEX certificate_versions_destroying ON certificate_versions(key_state)"
	" WHERE key_state = 1;"
	"CREATE TABLE key_journal ("
	" key_id BLOB PRIMARY KEY CHECK (length(key_id) = 16),"
	" cert_id INTEGER NOT NULL,"
	" created_at INTEGER NOT NULL"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE services ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE,"
	" environment TEXT NOT NULL,"
	" description TEXT NOT NULL DEFAULT '',"
	" cert_id INTEGER REFERENCES certificates(id) ON DELETE RESTRICT,"
	" bound_at INTEGER,"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE INDEX services_cert ON services(cert_id, name);"
	"CREATE INDEX services_environment ON services(environment, name);"
	"CREATE TABLE service_domains ("
	" service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
	" position INTEGER NOT NULL,"
	" domain TEXT NOT NULL,"
	" PRIMARY KEY (service_id, position)"
	") STRICT, WITHOUT ROWID;",

	/* v3: JWKs and the truststore.
	 * A JWK is linked to the certificate it was made from (cert_id) until it is
	 * disconnected; state 1 is active (in the public JWKS), 2 superseded by the JWK a
	 * renewal made (superseded_by). The JWK itself is the public JSON as served.
	 * certificates.jwks_on_delete keeps a delete's choice for its JWKs (0 disconnect,
	 * 1 delete) from the mark to the removal, which the reconciler may be the one to do.
	 * A truststore entry is one CA certificate under an alias; its fingerprint is unique so
	 * the same CA is not trusted twice under two names. */
	"ALTER TABLE certificates ADD COLUMN jwks_on_delete INTEGER NOT NULL DEFAULT 0"
	" CHECK (jwks_on_delete IN (0, 1));"
	"CREATE TABLE jwks ("
	" kid TEXT PRIMARY KEY,"
	" cert_id INTEGER REFERENCES certificates(id) ON DELETE SET NULL,"
	" cert_version INTEGER NOT NULL,"
	" cert_name TEXT NOT NULL,"
	" use TEXT NOT NULL,"
	" alg TEXT NOT NULL,"
	" jwk TEXT NOT NULL,"
	" state INTEGER NOT NULL CHECK (state IN (1, 2)),"
	" superseded_by TEXT,"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE INDEX jwks_cert ON jwks(cert_id, state);"
	"CREATE INDEX jwks_active ON jwks(state, created_at, kid);"
	"CREATE TABLE truststore ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" alias TEXT NOT NULL UNIQUE,"
	" cert_der BLOB NOT NULL,"
	" subject TEXT NOT NULL,"
	" issuer TEXT NOT NULL,"
	" serial TEXT NOT NULL,"
	" sha256_fingerprint TEXT NOT NULL UNIQUE,"
	" key_description TEXT NOT NULL,"
	" not_before INTEGER NOT NULL,"
	" not_after INTEGER NOT NULL,"
	" source TEXT NOT NULL,"
	" created_at INTEGER NOT NULL"
	") STRICT;",
	/* 3 -> 4: API tokens and the audit trail.
	 * A token's secret is never stored, only its SHA-256; a revoked token stays listed and
	 * its name is free again. The audit trail is a hash chain: each record holds the hash
	 * of the one before (zeros for the first) and its own hash over that and its fields. */
	"CREATE TABLE api_tokens ("
	" id TEXT PRIMARY KEY,"
	" name TEXT NOT NULL,"
	" role INTEGER NOT NULL CHECK (role IN (1, 2, 3)),"
	" secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),"
	" created_at INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL,"
	" revoked_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE UNIQUE INDEX api_tokens_name ON api_tokens(name) WHERE revoked_at = 0;"
	"CREATE TABLE audit_log ("
	" seq INTEGER PRIMARY KEY,"
	" at INTEGER NOT NULL,"
	" actor_id TEXT NOT NULL,"
	" actor_name TEXT NOT NULL,"
	" action TEXT NOT NULL,"
	" target TEXT NOT NULL,"
	" ok INTEGER NOT NULL,"
	" error TEXT NOT NULL,"
	" request_id TEXT NOT NULL,"
	" fingerprints TEXT NOT NULL,"
	" prev_hash BLOB NOT NULL,"
	" hash BLOB NOT NULL"
	") STRICT;"
	"CREATE INDEX audit_log_at ON audit_log(at);"
	"CREATE INDEX audit_log_target ON audit_log(target, seq);",
	/* 4 -> 5: CRLs, one per truststore CA that issued it (a newer one replaces it); it goes
	 * with its CA. next_update 0: the CRL names none. */
	"CREATE TABLE crls ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" trust_id INTEGER NOT NULL UNIQUE REFERENCES truststore(id) ON DELETE CASCADE,"
	" crl_der BLOB NOT NULL,"
	" issuer TEXT NOT NULL,"
	" this_update INTEGER NOT NULL,"
	" next_update INTEGER NOT NULL,"
	" number TEXT NOT NULL,"
	" revoked_count INTEGER NOT NULL,"
	" sha256 TEXT NOT NULL,"
	" created_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE INDEX crls_issuer ON crls(issuer);",
	/* 5 -> 6: the audit chain keyed with the token's HMAC key (keyed 0: a plain SHA-256
	 * link, from before); the client's address; a repeat's count and first and last
	 * attempt; a checkpoint's facts. */
	"ALTER TABLE audit_log ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE audit_log ADD COLUMN source TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE audit_log ADD COLUMN count INTEGER NOT NULL DEFAULT 1;"
	"ALTER TABLE audit_log ADD COLUMN first_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE audit_log ADD COLUMN last_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE audit_log ADD COLUMN detail TEXT NOT NULL DEFAULT '';",
	/* 6 -> 7: keys generated in the token, and where each key came from.
	 * A pending certificate is a key pair the token made and the CSR signed with it, waiting
	 * for the certificate a CA issues: for a new certificate (cert_id NULL, its name held
	 * against imports) or for the next version of one (cert_id, at most one at a time).
	 * state 0: the row names the key before C_GenerateKeyPair, no CSR yet; 1: ready (the
	 * CSR is there); 2: being cancelled (its key is being destroyed). The reconciler
	 * destroys the key of a row left in state 0 or 2 and removes the row. key_origin says
	 * how a key reached the token: 0 imported, 1 generated in it, 2 unwrapped in it. */
	"CREATE TABLE pending_certificates ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL,"
	" cert_id INTEGER,"
	" description TEXT NOT NULL DEFAULT '',"
	" state INTEGER NOT NULL CHECK (state IN (0, 1, 2)),"
	" key_id BLOB NOT NULL UNIQUE CHECK (length(key_id) = 16),"
	" key_type TEXT NOT NULL,"
	" subject TEXT NOT NULL,"
	" csr_der BLOB,"
	" created_by TEXT NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE UNIQUE INDEX pending_certificates_name ON pending_certificates(name COLLATE NOCASE);"
	"CREATE UNIQUE INDEX pending_certificates_cert ON pending_certificates(cert_id)"
	" WHERE cert_id IS NOT NULL;"
	"CREATE INDEX pending_certificates_expiry ON pending_certificates(expires_at);"
	"ALTER TABLE certificates ADD COLUMN key_origin INTEGER NOT NULL DEFAULT 0"
	" CHECK (key_origin IN (0, 1, 2));"
	"ALTER TABLE certificate_versions ADD COLUMN key_origin INTEGER NOT NULL DEFAULT 0"
	" CHECK (key_origin IN (0, 1, 2));"
	/* Each key's CKA_LABEL: "<name>.v<version>" since this version, so that a hand-written
	 * pkcs11:object= cannot match two versions' keys; NULL for keys made before, whose label
	 * is the certificate's name. */
	"ALTER TABLE certificates ADD COLUMN key_label TEXT;"
	"ALTER TABLE certificate_versions ADD COLUMN key_label TEXT;"
	"ALTER TABLE pending_certificates ADD COLUMN key_label TEXT NOT NULL DEFAULT '';",
	/* 7 -> 8: certificates: who made and who last changed each (the access token's name
	 * as the audit record has it: '' for rows older than this step), and the last
	 * revocation check's answer with its time (status '' = never recorded). The list sorts by
	 * valid_to and updated_at with keyset paging: (state, key, name) indexes walk a page
	 * in order without sorting, name being the unique tiebreak the cursor carries. */
	"ALTER TABLE certificates ADD COLUMN created_by TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE certificates ADD COLUMN updated_by TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE certificates ADD COLUMN revocation_status TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE certificates ADD COLUMN revocation_source TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE certificates ADD COLUMN revocation_detail TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE certificates ADD COLUMN revocation_checked_at INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX certificates_state_not_after_name"
	" ON certificates(state, not_after, name, not_before);"
	"CREATE INDEX certificates_state_updated_name"
	" ON certificates(state, updated_at, name);",
	/* 8 -> 9: console sessions (issue 12). The secret the browser holds in its cookie is
	 * never stored, only its SHA-256; a session acts as the API token it was opened with,
	 * and goes with it. */
	"CREATE TABLE console_sessions ("
	" id TEXT PRIMARY KEY,"
	" secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),"
	" token_id TEXT NOT NULL REFERENCES api_tokens(id) ON DELETE CASCADE,"
	" created_at INTEGER NOT NULL,"
	" last_seen INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE INDEX console_sessions_expires ON console_sessions(expires_at);",
	/* 9 -> 10: issue 17's model. Environments are rows of their own, unique ignoring case
	 * (names are ASCII, so NOCASE is exact), keeping the case they were created with.
	 * Services keep the environment's name, as the environment spells it: the store
	 * checks it exists under the write lock and the delete of one in use is refused, so
	 * no foreign key is needed (and SQLite cannot add one to services). The environments
	 * services named before this version become rows (one per name ignoring case, the
	 * first spelling), and those services take its spelling.
	 * A certificate may name the environments it is for (none: any); such an environment
	 * cannot be deleted (RESTRICT, and the store says which first).
	 * has_key 0 is a public certificate: its key_id is a random id no token object ever
	 * had (so the schema's uniqueness holds), and none is created, destroyed or
	 * journaled for it. */
	"CREATE TABLE environments ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE COLLATE NOCASE,"
	" display_name TEXT NOT NULL,"
	" description TEXT NOT NULL DEFAULT '',"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL"
	") STRICT;"
	"INSERT INTO environments (name, display_name, created_at, updated_at)"
	" SELECT min(environment), min(environment), min(created_at), min(created_at)"
	" FROM services GROUP BY lower(environment) ORDER BY min(id);"
	"UPDATE services SET environment = (SELECT e.name FROM environments e"
	" WHERE e.name = services.environment);"
	"CREATE TABLE certificate_environments ("
	" cert_id INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
	" env_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE RESTRICT,"
	" PRIMARY KEY (cert_id, env_id)"
	") STRICT, WITHOUT ROWID;"
	"CREATE INDEX certificate_environments_env ON certificate_environments(env_id);"
	"ALTER TABLE certificates ADD COLUMN has_key INTEGER NOT NULL DEFAULT 1"
	" CHECK (has_key IN (0, 1));"
	/* A certificate can be renamed; its keys keep the CKA_LABEL they were made with (key
	 * objects are not modified after creation), which the key's URI must name: key_label
	 * (added by step 6 -> 7) is that label; NULL (or '') for keys made before it, whose label
	 * is the certificate's name (a rename stores it first). */
	/* Tags: key/value labels (team, owner, ticket); the list filters on (key, value). */
	"CREATE TABLE certificate_tags ("
	" cert_id INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
	" key TEXT NOT NULL,"
	" value TEXT NOT NULL,"
	" PRIMARY KEY (cert_id, key)"
	") STRICT, WITHOUT ROWID;"
	"CREATE INDEX certificate_tags_key_value ON certificate_tags(key, value);"
	/* What a change changed (old and new values, the choices made), as JSON text; ''
	 * for records that say nothing more, which hash as they did before the column. */
	"ALTER TABLE audit_log ADD COLUMN changes TEXT NOT NULL DEFAULT '';"
	/* When a JWK was superseded: it stays in the public JWKS for a retention period from
	 * then. Those superseded before this version count from their last change. */
	"ALTER TABLE jwks ADD COLUMN superseded_at INTEGER NOT NULL DEFAULT 0;"
	"UPDATE jwks SET superseded_at = updated_at WHERE state = 2;",
	/* New steps are appended after this one. (While steps 7-10 were merged it sat last
	 * and was renumbered each time: see dev_build_schema. test_input now replays it on the
	 * frozen schema-10 database of tests/upgrade/, and test_upgrade opens every frozen
	 * schema with the current build.) */
	/* 10 -> 11: names unique ignoring case (issue 16 item 15): "WWW" beside "www" is one name
	 * to a reader, so certificate names, live API token names and truststore aliases are unique
	 * under COLLATE NOCASE (ASCII letters folded, as cv_text_name_equal), and looked up the
	 * same way; the case given is kept for display. A database that already holds two
	 * such names fails this step, and migrate() names them (name_clashes).
	 * And a CN that names no host is no domain (item 14): an older release listed the CN of
	 * a certificate without SAN DNS names as its domain whatever it was ("token signer
	 * 2026"). Stored domains with a character no host name has are dropped (none of them
	 * could cover a service's domain, which is always letters, digits, hyphens and dots),
	 * and the list's domain follows.
	 * And DNs print as UTF-8 (item 12): the rows whose stored DN text holds a \XX escape are
	 * listed in dn_refresh for store_dn_refresh, which rewrites them from their DER (SQL
	 * cannot) at the first open and drops the list. */
	"CREATE UNIQUE INDEX certificates_name_nocase ON certificates(name COLLATE NOCASE);"
	"CREATE UNIQUE INDEX api_tokens_name_nocase ON api_tokens(name COLLATE NOCASE)"
	" WHERE revoked_at = 0;"
	"DROP INDEX api_tokens_name;"
	"CREATE UNIQUE INDEX truststore_alias_nocase ON truststore(alias COLLATE NOCASE);"
	"DELETE FROM certificate_domains WHERE domain GLOB '*[^a-z0-9._*-]*';"
	"UPDATE certificates SET primary_domain = coalesce((SELECT domain FROM"
	" certificate_domains d WHERE d.cert_id = certificates.id ORDER BY position LIMIT 1), '')"
	" WHERE primary_domain GLOB '*[^a-z0-9._*-]*';"
	"CREATE TABLE dn_refresh (tbl INTEGER NOT NULL, id INTEGER NOT NULL,"
	" PRIMARY KEY (tbl, id)) STRICT, WITHOUT ROWID;"
	"INSERT INTO dn_refresh SELECT 1, id FROM certificates"
	" WHERE subject GLOB '*\\[0-9A-F][0-9A-F]*' OR issuer GLOB '*\\[0-9A-F][0-9A-F]*';"
	"INSERT INTO dn_refresh SELECT 2, id FROM certificate_versions"
	" WHERE subject GLOB '*\\[0-9A-F][0-9A-F]*' OR issuer GLOB '*\\[0-9A-F][0-9A-F]*';"
	"INSERT INTO dn_refresh SELECT 3, id FROM truststore"
	" WHERE subject GLOB '*\\[0-9A-F][0-9A-F]*' OR issuer GLOB '*\\[0-9A-F][0-9A-F]*';"
	"INSERT INTO dn_refresh SELECT 4, id FROM crls WHERE issuer GLOB '*\\[0-9A-F][0-9A-F]*';",
	/* 11 -> 12: soft delete (issue 18 part 2). A deleted certificate keeps its row in state 2
	 * (deleting: hidden from every read of active rows, its name still taken by the unique
	 * index) with held 1, which tells the reconciler to leave it alone: a held row is not an
	 * interrupted delete but one waiting for its retention to end (purge_after) or for a
	 * recover. A purge clears held in the transaction that records it, so from then on the
	 * row is an ordinary interrupted delete the next start finishes. deleted_jwks is the JSON
	 * array of the JWKs the delete took off the certificate (deleted, or disconnected: each
	 * with its row as it was), for the recover to put back where it still can. */
	"ALTER TABLE certificates ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1));"
	"ALTER TABLE certificates ADD COLUMN deleted_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE certificates ADD COLUMN purge_after INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE certificates ADD COLUMN deleted_by TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE certificates ADD COLUMN deleted_jwks TEXT NOT NULL DEFAULT '';"
	"CREATE INDEX certificates_held_purge ON certificates(purge_after) WHERE held = 1;",
	/* 12 -> 13: notifications (issue 18 part 1). Channels are where messages go; a webhook's
	 * HMAC secret is kept sealed (AES-256-GCM under a key derived in the token), never in
	 * clear. The outbox is written in the transaction of the change it tells of (next to
	 * its audit record) or by the expiry scan; UNIQUE (channel_id, dedup_key) makes it one
	 * message per (certificate version, threshold, channel) and per change, whoever writes
	 * it and however often. A delivery keeps its id across retries and restarts: the
	 * receiver's idempotency key. Rows outlive their channel (the log stays readable), so
	 * no foreign key ties them to it. The lease names the one node that scans and sends. */
	"CREATE TABLE notification_channels ("
	" id TEXT PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE COLLATE NOCASE,"
	" kind TEXT NOT NULL CHECK (kind IN ('webhook', 'email')),"
	" url TEXT NOT NULL,"
	" mail_from TEXT NOT NULL DEFAULT '',"
	" mail_to TEXT NOT NULL DEFAULT '[]',"
	" username TEXT NOT NULL DEFAULT '',"
	" password_file TEXT NOT NULL DEFAULT '',"
	" secret_sealed BLOB,"
	" events TEXT NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" created_by TEXT NOT NULL DEFAULT ''"
	") STRICT;"
	"CREATE TABLE certificate_notifications ("
	" cert_id INTEGER PRIMARY KEY REFERENCES certificates(id) ON DELETE CASCADE,"
	" thresholds TEXT NOT NULL DEFAULT '',"
	" contacts TEXT NOT NULL DEFAULT '[]'"
	") STRICT;"
	"CREATE TABLE notification_outbox ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" delivery_id TEXT NOT NULL UNIQUE,"
	" channel_id TEXT NOT NULL,"
	" dedup_key TEXT NOT NULL,"
	" event TEXT NOT NULL,"
	" certificate TEXT NOT NULL DEFAULT '',"
	" cert_version INTEGER NOT NULL DEFAULT 0,"
	" threshold INTEGER NOT NULL DEFAULT -1,"
	" payload TEXT NOT NULL,"
	" state INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 2)),"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_attempt_at INTEGER NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" delivered_at INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT NOT NULL DEFAULT '',"
	" UNIQUE (channel_id, dedup_key)"
	") STRICT;"
	"CREATE INDEX notification_outbox_due ON notification_outbox(state, next_attempt_at);"
	"CREATE TABLE notification_attempts ("
	" outbox_id INTEGER NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,"
	" n INTEGER NOT NULL,"
	" started_at INTEGER NOT NULL,"
	" finished_at INTEGER NOT NULL DEFAULT 0,"
	" outcome TEXT NOT NULL,"
	" detail TEXT NOT NULL DEFAULT '',"
	" PRIMARY KEY (outbox_id, n)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE leases ("
	" name TEXT PRIMARY KEY,"
	" holder TEXT NOT NULL,"
	" expires_at INTEGER NOT NULL"
	") STRICT;",
	/* 13 -> 14: least privilege for API clients (issue 18 part 3). scope: the token's scope
	 * as the canonical JSON text certvault wrote ('' : none, the role alone decides).
	 * last_used_at / last_used_from: when and from where the token was last used, written at
	 * most once a minute per token so that reads never queue on the write lock for it. */
	"ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE api_tokens ADD COLUMN last_used_from TEXT NOT NULL DEFAULT '';",
	/* Steps from 14 on are written for both engines: in steps[] below, not here. */
};
#define SQLITE_ONLY_STEPS ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* PostgreSQL (issue 15): the schema of SQLite's version SQLITE_ONLY_STEPS in one script, which
 * a new database gets in one transaction. Equal in meaning, column for column: BIGINT for
 * INTEGER, BYTEA for BLOB, identity columns where SQLite has AUTOINCREMENT (or a rowid the
 * code lets SQLite choose), so that ids are never reused; citext for every name SQLite
 * compares with NOCASE (certificate names, live API token names, truststore aliases,
 * pending names, environments, notification channels), which makes their UNIQUE ignore case
 * as the NOCASE indexes do (and orders them ignoring case: a list pages in that order);
 * the same CHECKs, UNIQUEs, foreign keys with their ON DELETE, and partial indexes.
 * dn_refresh is not there: a PostgreSQL database never held the escaped names it lists.
 * store_generations: the numbers cv_store_*_generation read, bumped by triggers in the
 * writer's own transaction, so that every node's caches see every node's commits (tokens
 * and the NOTIFY come with step 17). The trigger bodies are single-quoted (no dollar quoting)
 * so that the statement splitter and translation see one string literal. */
static const char pg_schema[] =
	"CREATE EXTENSION IF NOT EXISTS citext;"
	"CREATE TABLE certificates ("
	" id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" name citext NOT NULL UNIQUE,"
	" description TEXT NOT NULL DEFAULT '',"
	" state BIGINT NOT NULL CHECK (state IN (0, 1, 2)),"
	" cert_der BYTEA NOT NULL,"
	" chain_pem TEXT NOT NULL DEFAULT '',"
	" subject TEXT NOT NULL,"
	" issuer TEXT NOT NULL,"
	" serial TEXT NOT NULL,"
	" sha256_fingerprint TEXT NOT NULL,"
	" key_description TEXT NOT NULL,"
	" primary_domain TEXT NOT NULL,"
	" not_before BIGINT NOT NULL,"
	" not_after BIGINT NOT NULL,"
	" key_id BYTEA NOT NULL UNIQUE CHECK (length(key_id) = 16),"
	" created_at BIGINT NOT NULL,"
	" updated_at BIGINT NOT NULL,"
	" version BIGINT NOT NULL DEFAULT 1,"
	" current_since BIGINT NOT NULL DEFAULT 0,"
	" jwks_on_delete BIGINT NOT NULL DEFAULT 0 CHECK (jwks_on_delete IN (0, 1)),"
	" key_origin BIGINT NOT NULL DEFAULT 0 CHECK (key_origin IN (0, 1, 2)),"
	" key_label TEXT,"
	" created_by TEXT NOT NULL DEFAULT '',"
	" updated_by TEXT NOT NULL DEFAULT '',"
	" revocation_status TEXT NOT NULL DEFAULT '',"
	" revocation_source TEXT NOT NULL DEFAULT '',"
	" revocation_detail TEXT NOT NULL DEFAULT '',"
	" revocation_checked_at BIGINT NOT NULL DEFAULT 0,"
	" has_key BIGINT NOT NULL DEFAULT 1 CHECK (has_key IN (0, 1)),"
	" held BIGINT NOT NULL DEFAULT 0 CHECK (held IN (0, 1)),"
	" deleted_at BIGINT NOT NULL DEFAULT 0,"
	" purge_after BIGINT NOT NULL DEFAULT 0,"
	" deleted_by TEXT NOT NULL DEFAULT '',"
	" deleted_jwks TEXT NOT NULL DEFAULT ''"
	");"
	"CREATE TABLE certificate_domains ("
	" cert_id BIGINT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
	" position BIGINT NOT NULL,"
	" domain TEXT NOT NULL,"
	" PRIMARY KEY (cert_id, position)"
	");"
	"CREATE INDEX certificate_domains_domain ON certificate_domains(domain);"
	"CREATE INDEX certificates_state_name ON certificates(state, name, not_before, not_after);"
	"CREATE INDEX certificates_state_not_after ON certificates(state, not_after, not_before);"
	"CREATE INDEX certificates_state_not_after_name"
	" ON certificates(state, not_after, name, not_before);"
	"CREATE INDEX certificates_state_updated_name ON certificates(state, updated_at, name);"
	"CREATE INDEX certificates_held_purge ON certificates(purge_after) WHERE held = 1;"
	"CREATE TABLE certificate_versions ("
	" id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" cert_id BIGINT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
	" version BIGINT NOT NULL,"
	" cert_der BYTEA NOT NULL,"
	" chain_pem TEXT NOT NULL,"
	" subject TEXT NOT NULL,"
	" issuer TEXT NOT NULL,"
	" serial TEXT NOT NULL,"
	" sha256_fingerprint TEXT NOT NULL,"
	" key_description TEXT NOT NULL,"
	" not_before BIGINT NOT NULL,"
	" not_after BIGINT NOT NULL,"
	" key_id BYTEA NOT NULL UNIQUE CHECK (length(key_id) = 16),"
	" key_state BIGINT NOT NULL CHECK (key_state IN (0, 1, 2)),"
	" current_from BIGINT NOT NULL,"
	" current_until BIGINT NOT NULL,"
	" ended_by BIGINT NOT NULL CHECK (ended_by IN (1, 2)),"
	" key_origin BIGINT NOT NULL DEFAULT 0 CHECK (key_origin IN (0, 1, 2)),"
	" key_label TEXT,"
	" UNIQUE (cert_id, version)"
	");"
	"CREATE INDEX certificate_versions_destroying ON certificate_versions(key_state)"
	" WHERE key_state = 1;"
	"CREATE TABLE key_journal ("
	" key_id BYTEA PRIMARY KEY CHECK (length(key_id) = 16),"
	" cert_id BIGINT NOT NULL,"
	" created_at BIGINT NOT NULL"
	");"
	"CREATE TABLE services ("
	" id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE,"
	" environment TEXT NOT NULL,"
	" description TEXT NOT NULL DEFAULT '',"
	" cert_id BIGINT REFERENCES certificates(id) ON DELETE RESTRICT,"
	" bound_at BIGINT,"
	" created_at BIGINT NOT NULL,"
	" updated_at BIGINT NOT NULL"
	");"
	"CREATE INDEX services_cert ON services(cert_id, name);"
	"CREATE INDEX services_environment ON services(environment, name);"
	"CREATE TABLE service_domains ("
	" service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
	" position BIGINT NOT NULL,"
	" domain TEXT NOT NULL,"
	" PRIMARY KEY (service_id, position)"
	");"
	"CREATE TABLE jwks ("
	" kid TEXT PRIMARY KEY,"
	" cert_id BIGINT REFERENCES certificates(id) ON DELETE SET NULL,"
	" cert_version BIGINT NOT NULL,"
	" cert_name TEXT NOT NULL,"
	" use TEXT NOT NULL,"
	" alg TEXT NOT NULL,"
	" jwk TEXT NOT NULL,"
	" state BIGINT NOT NULL CHECK (state IN (1, 2)),"
	" superseded_by TEXT,"
	" created_at BIGINT NOT NULL,"
	" updated_at BIGINT NOT NULL,"
	" superseded_at BIGINT NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX jwks_cert ON jwks(cert_id, state);"
	"CREATE INDEX jwks_active ON jwks(state, created_at, kid);"
	"CREATE TABLE truststore ("
	" id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" alias citext NOT NULL UNIQUE,"
	" cert_der BYTEA NOT NULL,"
	" subject TEXT NOT NULL,"
	" issuer TEXT NOT NULL,"
	" serial TEXT NOT NULL,"
	" sha256_fingerprint TEXT NOT NULL UNIQUE,"
	" key_description TEXT NOT NULL,"
	" not_before BIGINT NOT NULL,"
	" not_after BIGINT NOT NULL,"
	" source TEXT NOT NULL,"
	" created_at BIGINT NOT NULL"
	");"
	"CREATE TABLE api_tokens ("
	" id TEXT PRIMARY KEY,"
	" name citext NOT NULL,"
	" role BIGINT NOT NULL CHECK (role IN (1, 2, 3)),"
	" secret_hash BYTEA NOT NULL CHECK (length(secret_hash) = 32),"
	" created_at BIGINT NOT NULL,"
	" expires_at BIGINT NOT NULL,"
	" revoked_at BIGINT NOT NULL,"
	" scope TEXT NOT NULL DEFAULT '',"
	" last_used_at BIGINT NOT NULL DEFAULT 0,"
	" last_used_from TEXT NOT NULL DEFAULT ''"
	");"
	"CREATE UNIQUE INDEX api_tokens_name_nocase ON api_tokens(name) WHERE revoked_at = 0;"
	/* seq is chosen by the appender (under the write lock), never by the database. */
	"CREATE TABLE audit_log ("
	" seq BIGINT PRIMARY KEY,"
	" at BIGINT NOT NULL,"
	" actor_id TEXT NOT NULL,"
	" actor_name TEXT NOT NULL,"
	" action TEXT NOT NULL,"
	" target TEXT NOT NULL,"
	" ok BIGINT NOT NULL,"
	" error TEXT NOT NULL,"
	" request_id TEXT NOT NULL,"
	" fingerprints TEXT NOT NULL,"
	" prev_hash BYTEA NOT NULL,"
	" hash BYTEA NOT NULL,"
	" keyed BIGINT NOT NULL DEFAULT 0,"
	" source TEXT NOT NULL DEFAULT '',"
	" count BIGINT NOT NULL DEFAULT 1,"
	" first_at BIGINT NOT NULL DEFAULT 0,"
	" last_at BIGINT NOT NULL DEFAULT 0,"
	" detail TEXT NOT NULL DEFAULT '',"
	" changes TEXT NOT NULL DEFAULT ''"
	");"
	"CREATE INDEX audit_log_at ON audit_log(at);"
	"CREATE INDEX audit_log_target ON audit_log(target, seq);"
	"CREATE TABLE crls ("
	" id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" trust_id BIGINT NOT NULL UNIQUE REFERENCES truststore(id) ON DELETE CASCADE,"
	" crl_der BYTEA NOT NULL,"
	" issuer TEXT NOT NULL,"
	" this_update BIGINT NOT NULL,"
	" next_update BIGINT NOT NULL,"
	" number TEXT NOT NULL,"
	" revoked_count BIGINT NOT NULL,"
	" sha256 TEXT NOT NULL,"
	" created_at BIGINT NOT NULL"
	");"
	"CREATE INDEX crls_issuer ON crls(issuer);"
	"CREATE TABLE pending_certificates ("
	" id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" name citext NOT NULL UNIQUE,"
	" cert_id BIGINT,"
	" description TEXT NOT NULL DEFAULT '',"
	" state BIGINT NOT NULL CHECK (state IN (0, 1, 2)),"
	" key_id BYTEA NOT NULL UNIQUE CHECK (length(key_id) = 16),"
	" key_type TEXT NOT NULL,"
	" subject TEXT NOT NULL,"
	" csr_der BYTEA,"
	" created_by TEXT NOT NULL,"
	" created_at BIGINT NOT NULL,"
	" expires_at BIGINT NOT NULL,"
	" key_label TEXT NOT NULL DEFAULT ''"
	");"
	"CREATE UNIQUE INDEX pending_certificates_cert ON pending_certificates(cert_id)"
	" WHERE cert_id IS NOT NULL;"
	"CREATE INDEX pending_certificates_expiry ON pending_certificates(expires_at);"
	"CREATE TABLE console_sessions ("
	" id TEXT PRIMARY KEY,"
	" secret_hash BYTEA NOT NULL CHECK (length(secret_hash) = 32),"
	" token_id TEXT NOT NULL REFERENCES api_tokens(id) ON DELETE CASCADE,"
	" created_at BIGINT NOT NULL,"
	" last_seen BIGINT NOT NULL,"
	" expires_at BIGINT NOT NULL"
	");"
	"CREATE INDEX console_sessions_expires ON console_sessions(expires_at);"
	"CREATE TABLE environments ("
	" id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" name citext NOT NULL UNIQUE,"
	" display_name TEXT NOT NULL,"
	" description TEXT NOT NULL DEFAULT '',"
	" created_at BIGINT NOT NULL,"
	" updated_at BIGINT NOT NULL"
	");"
	"CREATE TABLE certificate_environments ("
	" cert_id BIGINT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
	" env_id BIGINT NOT NULL REFERENCES environments(id) ON DELETE RESTRICT,"
	" PRIMARY KEY (cert_id, env_id)"
	");"
	"CREATE INDEX certificate_environments_env ON certificate_environments(env_id);"
	"CREATE TABLE certificate_tags ("
	" cert_id BIGINT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,"
	" key TEXT NOT NULL,"
	" value TEXT NOT NULL,"
	" PRIMARY KEY (cert_id, key)"
	");"
	"CREATE INDEX certificate_tags_key_value ON certificate_tags(key, value);"
	"CREATE TABLE notification_channels ("
	" id TEXT PRIMARY KEY,"
	" name citext NOT NULL UNIQUE,"
	" kind TEXT NOT NULL CHECK (kind IN ('webhook', 'email')),"
	" url TEXT NOT NULL,"
	" mail_from TEXT NOT NULL DEFAULT '',"
	" mail_to TEXT NOT NULL DEFAULT '[]',"
	" username TEXT NOT NULL DEFAULT '',"
	" password_file TEXT NOT NULL DEFAULT '',"
	" secret_sealed BYTEA,"
	" events TEXT NOT NULL,"
	" created_at BIGINT NOT NULL,"
	" created_by TEXT NOT NULL DEFAULT ''"
	");"
	"CREATE TABLE certificate_notifications ("
	" cert_id BIGINT PRIMARY KEY REFERENCES certificates(id) ON DELETE CASCADE,"
	" thresholds TEXT NOT NULL DEFAULT '',"
	" contacts TEXT NOT NULL DEFAULT '[]'"
	");"
	"CREATE TABLE notification_outbox ("
	" id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" delivery_id TEXT NOT NULL UNIQUE,"
	" channel_id TEXT NOT NULL,"
	" dedup_key TEXT NOT NULL,"
	" event TEXT NOT NULL,"
	" certificate TEXT NOT NULL DEFAULT '',"
	" cert_version BIGINT NOT NULL DEFAULT 0,"
	" threshold BIGINT NOT NULL DEFAULT -1,"
	" payload TEXT NOT NULL,"
	" state BIGINT NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 2)),"
	" attempts BIGINT NOT NULL DEFAULT 0,"
	" next_attempt_at BIGINT NOT NULL,"
	" created_at BIGINT NOT NULL,"
	" delivered_at BIGINT NOT NULL DEFAULT 0,"
	" last_error TEXT NOT NULL DEFAULT '',"
	" UNIQUE (channel_id, dedup_key)"
	");"
	"CREATE INDEX notification_outbox_due ON notification_outbox(state, next_attempt_at);"
	"CREATE TABLE notification_attempts ("
	" outbox_id BIGINT NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,"
	" n BIGINT NOT NULL,"
	" started_at BIGINT NOT NULL,"
	" finished_at BIGINT NOT NULL DEFAULT 0,"
	" outcome TEXT NOT NULL,"
	" detail TEXT NOT NULL DEFAULT '',"
	" PRIMARY KEY (outbox_id, n)"
	");"
	"CREATE TABLE leases ("
	" name TEXT PRIMARY KEY,"
	" holder TEXT NOT NULL,"
	" expires_at BIGINT NOT NULL"
	");"
	"CREATE TABLE store_generations ("
	" one BIGINT PRIMARY KEY CHECK (one = 1),"
	" jwks BIGINT NOT NULL,"
	" certs BIGINT NOT NULL"
	");"
	"INSERT INTO store_generations (one, jwks, certs) VALUES (1, 1, 1);"
	"CREATE FUNCTION cv_generation_jwks() RETURNS trigger LANGUAGE plpgsql AS"
	" 'BEGIN UPDATE store_generations SET jwks = jwks + 1; RETURN NULL; END';"
	"CREATE FUNCTION cv_generation_certs() RETURNS trigger LANGUAGE plpgsql AS"
	" 'BEGIN UPDATE store_generations SET certs = certs + 1; RETURN NULL; END';"
	"CREATE TRIGGER jwks_generation AFTER INSERT OR UPDATE OR DELETE ON jwks"
	" FOR EACH STATEMENT EXECUTE FUNCTION cv_generation_jwks();"
	"CREATE TRIGGER certificates_generation AFTER INSERT OR UPDATE OR DELETE ON certificates"
	" FOR EACH STATEMENT EXECUTE FUNCTION cv_generation_certs();";

/* Schema steps from SQLITE_ONLY_STEPS on, for both engines: steps[i] takes a database from
 * version SQLITE_ONLY_STEPS + i to the next. Append one entry with both texts; an applied
 * step is never edited. The list ends with { NULL, NULL }. */
struct schema_step {
	const char *sqlite;
	const char *pg;
};
static const struct schema_step steps[] = {
	/* 14 -> 15: several nodes on one database (issue 15). owner_node names the node
	 * (server.node_name) whose write is in flight on a row that is not settled: a pending
	 * import or an interrupted delete (certificates, state 0 or 2 and not held), a generated
	 * key being created or cancelled (pending_certificates), a key being made for a new
	 * version (key_journal); '' on rows an earlier release left. nodes holds each node's
	 * heartbeat, written every few seconds: a node's reconciler takes over (claims, then
	 * undoes or finishes) only rows of its own or of a node whose heartbeat is older than
	 * server.node_lease_seconds, never a live node's write in flight (store/nodes.c). */
	{ "ALTER TABLE certificates ADD COLUMN owner_node TEXT NOT NULL DEFAULT '';"
	  "ALTER TABLE pending_certificates ADD COLUMN owner_node TEXT NOT NULL DEFAULT '';"
	  "ALTER TABLE key_journal ADD COLUMN owner_node TEXT NOT NULL DEFAULT '';"
	  "CREATE TABLE nodes ("
	  " name TEXT PRIMARY KEY,"
	  " started_at INTEGER NOT NULL,"
	  " heartbeat_at INTEGER NOT NULL"
	  ") STRICT;",
	  "ALTER TABLE certificates ADD COLUMN owner_node TEXT NOT NULL DEFAULT '';"
	  "ALTER TABLE pending_certificates ADD COLUMN owner_node TEXT NOT NULL DEFAULT '';"
	  "ALTER TABLE key_journal ADD COLUMN owner_node TEXT NOT NULL DEFAULT '';"
	  "CREATE TABLE nodes ("
	  " name TEXT PRIMARY KEY,"
	  " started_at BIGINT NOT NULL,"
	  " heartbeat_at BIGINT NOT NULL"
	  ");" },
	/* 15 -> 16: the certificate generation moves with every table a certificate's list row
	 * or details read, not only with certificates: a service bound or its domains changed
	 * (used_by, custom_domains, the in_use, service and environment filters), tags and
	 * environments edited, domains of a new version. Caches keyed by the generation (the
	 * list's pages and totals, the details) would otherwise serve what a write changed.
	 * SQLite needs no schema for it: each connection watches these tables with TEMP
	 * triggers of its own (watch_tables). */
	{ "",
	  "CREATE TRIGGER certificate_domains_generation AFTER INSERT OR UPDATE OR DELETE"
	  " ON certificate_domains FOR EACH STATEMENT EXECUTE FUNCTION cv_generation_certs();"
	  "CREATE TRIGGER certificate_environments_generation AFTER INSERT OR UPDATE OR DELETE"
	  " ON certificate_environments FOR EACH STATEMENT EXECUTE FUNCTION cv_generation_certs();"
	  "CREATE TRIGGER certificate_tags_generation AFTER INSERT OR UPDATE OR DELETE"
	  " ON certificate_tags FOR EACH STATEMENT EXECUTE FUNCTION cv_generation_certs();"
	  "CREATE TRIGGER services_generation AFTER INSERT OR UPDATE OR DELETE"
	  " ON services FOR EACH STATEMENT EXECUTE FUNCTION cv_generation_certs();"
	  "CREATE TRIGGER service_domains_generation AFTER INSERT OR UPDATE OR DELETE"
	  " ON service_domains FOR EACH STATEMENT EXECUTE FUNCTION cv_generation_certs();" },
	/* 16 -> 17: a generation that moves also tells the nodes listening (NOTIFY, which
	 * PostgreSQL delivers at the writer's commit; pgwatch.c), so that they need not read
	 * the numbers on every request; and the API tokens get one (a token revoked on one
	 * node is refused by the others' caches of tokens), moved per row changed, so that
	 * a last-use update that changed nothing moves nothing. SQLite: one process, nothing
	 * to tell, and its update hook sees api_tokens. Both: an index that finds the next
	 * certificate to become valid (cv_store_cert_status_change) without reading them all. */
	{ "CREATE INDEX IF NOT EXISTS certificates_state_not_before ON certificates(state, not_before);",
	  "CREATE INDEX IF NOT EXISTS certificates_state_not_before ON certificates(state, not_before);"
	  "ALTER TABLE store_generations ADD COLUMN tokens BIGINT NOT NULL DEFAULT 1;"
	  "CREATE FUNCTION cv_generation_tokens() RETURNS trigger LANGUAGE plpgsql AS"
	  " 'BEGIN UPDATE store_generations SET tokens = tokens + 1; NOTIFY cv_generations;"
	  " RETURN NULL; END';"
	  "CREATE TRIGGER api_tokens_generation AFTER INSERT OR UPDATE OR DELETE ON api_tokens"
	  " FOR EACH ROW EXECUTE FUNCTION cv_generation_tokens();"
	  "CREATE OR REPLACE FUNCTION cv_generation_jwks() RETURNS trigger LANGUAGE plpgsql AS"
	  " 'BEGIN UPDATE store_generations SET jwks = jwks + 1; NOTIFY cv_generations;"
	  " RETURN NULL; END';"
	  "CREATE OR REPLACE FUNCTION cv_generation_certs() RETURNS trigger LANGUAGE plpgsql AS"
	  " 'BEGIN UPDATE store_generations SET certs = certs + 1; NOTIFY cv_generations;"
	  " RETURN NULL; END';" },
	/* 17 -> 18: an audit record may be keyed with a link key, which the token's audit key
	 * derives from the link_key number, rather than by the token's key itself (0): its
	 * HMAC is then made in the process, with no token call while the writer lock is held
	 * (store/audit.c, vault/audit.c). */
	{ "ALTER TABLE audit_log ADD COLUMN link_key INTEGER NOT NULL DEFAULT 0;",
	  "ALTER TABLE audit_log ADD COLUMN link_key BIGINT NOT NULL DEFAULT 0;" },
	{ NULL, NULL },
};
#define N_STEPS ((int)(sizeof(steps) / sizeof(steps[0])) - 1)
#define SCHEMA_VERSION (SQLITE_ONLY_STEPS + N_STEPS)

/* The text of the step from version to version + 1 on db's engine. */
static const char *schema_step(const cvdb *db, int64_t version)
{
	if (cvdb_kind(db) == CVDB_PG)
		return steps[version - SQLITE_ONLY_STEPS].pg;
	if (version < SQLITE_ONLY_STEPS)
		return migrations[version];
	return steps[version - SQLITE_ONLY_STEPS].sqlite;
}

/* How long a writer waits for another connection's write lock before giving up. */
#define BUSY_TIMEOUT_MS 5000

/* The checkpointer copies the WAL back once writes have paused this long, or at once when the
 * WAL holds this many frames (SQLite's own auto-checkpoint bound). */
#define CKPT_QUIET_MS 100
#define CKPT_FRAMES 1000

int store_err(int rc)
{
	(void)rc;
	return CV_ERR_DB;
}

/* Runs every statement of sql in turn; none may take parameters. */
static int exec_script(cvdb *db, const char *sql)
{
	cvdb_stmt *stmt = NULL;
	const char *tail = sql;
	int rc, r;

	while (*tail != '\0') {
		rc = cvdb_prepare(db, tail, 0, &stmt, &tail);
		if (rc != SQLITE_OK) {
			r = store_err(rc);
			goto out;
		}
		if (stmt == NULL) /* only whitespace or a comment was left */
			break;
		while ((rc = cvdb_step(stmt)) == SQLITE_ROW)
			;
		if (rc != SQLITE_DONE) {
			r = store_err(rc);
			goto out;
		}
		rc = cvdb_finalize(stmt);
		stmt = NULL;
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

int store_exec(cvdb *db, const char *sql)
{
	return exec_script(db, sql);
}

int store_finish(cvdb *db, int r)
{
	if (r == 0)
		return store_exec(db, "COMMIT");
	/* ROLLBACK can only fail when there is no transaction left to undo (SQLite already
	 * rolled back on a fatal error): nothing more to do either way. */
	if (cvdb_get_autocommit(db) == 0)
		(void)store_exec(db, "ROLLBACK");
	return r;
}

/* Reads the one value a query returns: an integer into *ret_int, or text into ret_text. */
static int query_one(cvdb *db, const char *sql, int64_t *ret_int, char *ret_text,
		     size_t text_len)
{
	cvdb_stmt *stmt = NULL;
	const unsigned char *text;
	int rc, r;

	rc = cvdb_prepare(db, sql, 0, &stmt, NULL);
	if (rc != SQLITE_OK) {
		r = store_err(rc);
		goto out;
	}
	rc = cvdb_step(stmt);
	if (rc != SQLITE_ROW) {
		r = store_err(rc);
		goto out;
	}
	if (ret_int != NULL)
		*ret_int = cvdb_column_int64(stmt, 0);
	if (ret_text != NULL) {
		text = cvdb_column_text(stmt, 0);
		snprintf(ret_text, text_len, "%s", text != NULL ? (const char *)text : "");
	}
	r = 0;
out:
	cvdb_finalize(stmt);
	return r;
}

/* Settings that belong to each connection rather than to the file. */
static int configure(cvdb *db, const char *path, struct cv_errmsg *err)
{
	char mode[16];
	int64_t fk = 0;
	int rc, r;

	rc = sqlite3_extended_result_codes(cvdb_sqlite(db), 1);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(cvdb_sqlite(db), BUSY_TIMEOUT_MS);
	if (rc != SQLITE_OK)
		return cv_errmsg_set(err, store_err(rc), "database %s: %s", path,
				     cvdb_errmsg(db));
	/* WAL lets readers on the other pooled connections go on while one connection writes.
	 * SQLite answers with the mode it ended up in, which is not WAL on a filesystem that
	 * cannot share memory, for one. */
	r = query_one(db, "PRAGMA journal_mode=WAL", NULL, mode, sizeof(mode));
	if (r < 0)
		return cv_errmsg_set(err, r, "database %s: cannot set WAL mode: %s", path,
				     cvdb_errmsg(db));
	if (strcmp(mode, "wal") != 0)
		return cv_errmsg_set(err, CV_ERR_DB,
				     "database %s: journal mode is %s, WAL is required", path, mode);
	/* A commit the vault acknowledged survives a power cut, not only a crash; but the WAL's
	 * fdatasync is not COMMIT's (which would hold the write lock through it and sync once
	 * per commit): NORMAL makes COMMIT only write the frames, and store_return waits for a
	 * sync of the WAL shared with the commits made meanwhile (wal_sync_wait). */
	r = store_exec(db, "PRAGMA synchronous=NORMAL");
	if (r == 0)
		r = store_exec(db, "PRAGMA foreign_keys=ON");
	if (r == 0)
		r = query_one(db, "PRAGMA foreign_keys", &fk, NULL, 0);
	if (r < 0)
		return cv_errmsg_set(err, r, "database %s: %s", path, cvdb_errmsg(db));
	/* Deleting a certificate relies on the cascade to its domains. */
	if (fk != 1)
		return cv_errmsg_set(err, CV_ERR_DB,
				     "database %s: SQLite was built without foreign keys", path);
	return 0;
}

/* When a migration failed: the names that differ only in case, which the step making names
 * unique ignoring case cannot take, as "certificate www / WWW; ..." into buf ("" for none).
 * The operator has to choose which one keeps its name, so certvault does not. */
static void name_clashes(cvdb *db, char *buf, size_t size)
{
	static const char sql[] =
		"SELECT 'certificate', group_concat(name, ' / ') FROM certificates"
		" GROUP BY name COLLATE NOCASE HAVING count(*) > 1"
		" UNION ALL SELECT 'API token', group_concat(name, ' / ') FROM api_tokens"
		" WHERE revoked_at = 0 GROUP BY name COLLATE NOCASE HAVING count(*) > 1"
		" UNION ALL SELECT 'truststore alias', group_concat(alias, ' / ') FROM truststore"
		" GROUP BY alias COLLATE NOCASE HAVING count(*) > 1";
	cvdb_stmt *stmt = NULL;
	size_t used = 0;
	int n;

	buf[0] = '\0';
	if (cvdb_prepare(db, sql, 0, &stmt, NULL) != SQLITE_OK)
		goto out;
	while (cvdb_step(stmt) == SQLITE_ROW && used + 1 < size) {
		n = snprintf(buf + used, size - used, "%s%s %s", used > 0 ? "; " : "",
			     (const char *)cvdb_column_text(stmt, 0),
			     (const char *)cvdb_column_text(stmt, 1));
		if (n < 0)
			break;
		used += (size_t)n < size - used ? (size_t)n : size - used - 1;
	}
out:
	cvdb_finalize(stmt);
}

/* Whether the database is one that development builds of 2026-12-06 wrote: the names step
 * (now 10 -> 11) was then numbered 7, 8, 9 or 10, so such a database says a version below 11
 * yet holds that step's index and lacks steps this build would skip. Migrating it would
 * apply the wrong steps: it is refused instead. 1 yes, 0 no, or CV_ERR_DB. */
static int dev_build_schema(cvdb *db, int64_t version)
{
	int64_t n = 0;
	int r;

	if (version < 7 || version > 10)
		return 0;
	r = query_one(db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND"
		      " name = 'certificates_name_nocase'", &n, NULL, 0);
	return r < 0 ? r : n > 0;
}

/* Brings the schema to SCHEMA_VERSION, one step per transaction with its version bump, so
 * that a crash mid-way leaves the database at a version that exists. */
static int migrate(cvdb *db, const char *path, struct cv_errmsg *err)
{
	char bump[64], clashes[160];
	int64_t version;
	int r;

	for (;;) {
		r = store_exec(db, "BEGIN IMMEDIATE");
		if (r < 0)
			return cv_errmsg_set(err, r, "database %s: %s", path, cvdb_errmsg(db));
		/* Read under the write lock: another process may have migrated meanwhile. */
		r = query_one(db, "PRAGMA user_version", &version, NULL, 0);
		if (r < 0) {
			cv_errmsg_set(err, r, "database %s: %s", path, cvdb_errmsg(db));
			return store_finish(db, r);
		}
		if (version > SCHEMA_VERSION) {
			r = cv_errmsg_set(err, CV_ERR_DB,
					  "database %s has schema version %lld, newer than this "
					  "certvault knows (%d): run a newer certvault",
					  path, (long long)version, SCHEMA_VERSION);
			return store_finish(db, r);
		}
		if (version < 0) {
			r = cv_errmsg_set(err, CV_ERR_DB,
					  "database %s has a negative schema version %lld", path,
					  (long long)version);
			return store_finish(db, r);
		}
		if (version == SCHEMA_VERSION)
			break;
		r = dev_build_schema(db, version);
		if (r != 0) {
			if (r > 0)
				r = cv_errmsg_set(err, CV_ERR_DB,
						  "database %s has schema version %lld as a development "
						  "build numbered it (the names step among steps 7-10): "
						  "this certvault cannot tell which steps it lacks and "
						  "changes nothing; back it up and move its data with "
						  "the build that made it", path, (long long)version);
			else
				cv_errmsg_set(err, r, "database %s: %s", path, cvdb_errmsg(db));
			return store_finish(db, r);
		}
		r = exec_script(db, schema_step(db, version));
		if (r == 0) {
			/* PRAGMA takes no parameters; the value is our own integer. */
			snprintf(bump, sizeof(bump), "PRAGMA user_version=%d", (int)version + 1);
			r = store_exec(db, bump);
		}
		if (r < 0) {
			cv_errmsg_set(err, r, "database %s: migration to schema version %d failed: %s",
				      path, (int)version + 1, cvdb_errmsg(db));
			r = store_finish(db, r);
			name_clashes(db, clashes, sizeof(clashes));
			if (clashes[0] != '\0')
				cv_errmsg_set(err, r, "database %s: names must be unique ignoring case "
					      "and these are not: %s. Delete (or re-import under "
					      "another name) all but one of each with the certvault "
					      "that made them, then start this one", path, clashes);
			return r;
		}
		r = store_finish(db, 0);
		if (r < 0)
			return cv_errmsg_set(err, r, "database %s: %s", path, cvdb_errmsg(db));
	}
	r = store_finish(db, 0);
	if (r < 0)
		return cv_errmsg_set(err, r, "database %s: %s", path, cvdb_errmsg(db));
	return 0;
}

/* PostgreSQL: the key of the session advisory lock held while one node migrates, so that
 * two nodes starting at once on an empty database do not both create the schema (the second
 * waits, then finds it made). Any 64-bit number no other lock of certvault's uses. */
#define PG_MIGRATE_LOCK "7453196427081739058"

/* The version schema_version holds (0: a new, empty database), under the migration lock.
 * A database with tables but no schema_version is not certvault's: refused. */
static int pg_schema_version(cvdb *db, const char *target, int64_t *ret_version,
			     struct cv_errmsg *err)
{
	int64_t has_version = 0, tables = 0;
	int r;

	r = query_one(db, "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname ="
		      " current_schema() AND tablename = 'schema_version'", &has_version, NULL, 0);
	if (r == 0 && has_version == 0)
		r = query_one(db, "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname ="
			      " current_schema()", &tables, NULL, 0);
	if (r < 0)
		return cv_errmsg_set(err, r, "database %s: %s", target, cvdb_errmsg(db));
	if (has_version == 0 && tables > 0)
		return cv_errmsg_set(err, CV_ERR_DB, "database %s holds %lld table(s) but no "
				     "certvault schema_version: not certvault's database, left "
				     "unchanged", target, (long long)tables);
	*ret_version = 0;
	if (has_version == 0)
		return 0;
	r = query_one(db, "SELECT coalesce((SELECT version FROM schema_version), -1)",
		      ret_version, NULL, 0);
	if (r < 0)
		return cv_errmsg_set(err, r, "database %s: %s", target, cvdb_errmsg(db));
	return 0;
}

/* Brings a PostgreSQL database to SCHEMA_VERSION: a new one gets pg_schema (the schema of
 * version SQLITE_ONLY_STEPS) and its version row in one transaction, then the steps after it,
 * one transaction each with its version bump. The whole runs under a session advisory lock:
 * another node starting at once waits, then finds the work done. A newer database is refused
 * unchanged, as on SQLite. */
static int migrate_pg(cvdb *db, const char *target, struct cv_errmsg *err)
{
	char bump[96];
	int64_t version;
	int r, r2;

	r = store_exec(db, "SELECT pg_advisory_lock(" PG_MIGRATE_LOCK ")");
	if (r < 0)
		return cv_errmsg_set(err, r, "database %s: %s", target, cvdb_errmsg(db));
	for (;;) {
		/* A write transaction (the writer lock too: no node writes rows meanwhile). */
		r = store_exec(db, "BEGIN IMMEDIATE");
		if (r < 0) {
			cv_errmsg_set(err, r, "database %s: %s", target, cvdb_errmsg(db));
			goto out;
		}
		r = pg_schema_version(db, target, &version, err);
		if (r == 0 && version > SCHEMA_VERSION)
			r = cv_errmsg_set(err, CV_ERR_DB,
					  "database %s has schema version %lld, newer than this "
					  "certvault knows (%d): run a newer certvault",
					  target, (long long)version, SCHEMA_VERSION);
		if (r == 0 && version < 0)
			r = cv_errmsg_set(err, CV_ERR_DB, "database %s has no valid schema version "
					  "(%lld)", target, (long long)version);
		if (r < 0) {
			(void)store_finish(db, r);
			goto out;
		}
		if (version == SCHEMA_VERSION) {
			r = store_finish(db, 0);
			if (r < 0)
				cv_errmsg_set(err, r, "database %s: %s", target, cvdb_errmsg(db));
			goto out;
		}
		if (version == 0) {
			r = exec_script(db, pg_schema);
			if (r == 0)
				r = exec_script(db, "CREATE TABLE schema_version (one BIGINT PRIMARY KEY"
						" CHECK (one = 1), version BIGINT NOT NULL);");
			/* Our own integer: no parameter needed. */
			snprintf(bump, sizeof(bump), "INSERT INTO schema_version (one, version)"
				 " VALUES (1, %d)", SQLITE_ONLY_STEPS);
		} else if (version < SQLITE_ONLY_STEPS) {
			/* Only a certvault that had no PostgreSQL could have written it. */
			r = cv_errmsg_set(err, CV_ERR_DB, "database %s has schema version %lld, older "
					  "than any PostgreSQL schema certvault made (%d)", target,
					  (long long)version, SQLITE_ONLY_STEPS);
			(void)store_finish(db, r);
			goto out;
		} else {
			r = exec_script(db, schema_step(db, version));
			snprintf(bump, sizeof(bump), "UPDATE schema_version SET version = %d",
				 (int)version + 1);
		}
		if (r == 0)
			r = store_exec(db, bump);
		if (r < 0) {
			cv_errmsg_set(err, r, "database %s: migration to schema version %d failed: %s",
				      target, version == 0 ? SQLITE_ONLY_STEPS : (int)version + 1,
				      cvdb_errmsg(db));
			(void)store_finish(db, r);
			goto out;
		}
		r = store_finish(db, 0);
		if (r < 0) {
			cv_errmsg_set(err, r, "database %s: %s", target, cvdb_errmsg(db));
			goto out;
		}
	}
out:
	/* On failure the connection is closed, which releases the lock too. */
	r2 = store_exec(db, "SELECT pg_advisory_unlock(" PG_MIGRATE_LOCK ")");
	if (r == 0 && r2 < 0)
		r = cv_errmsg_set(err, r2, "database %s: %s", target, cvdb_errmsg(db));
	return r;
}

/* Creates the file owner-only before SQLite sees it. SQLite gives the -wal and -shm files
 * it makes later the database file's permissions, so they are owner-only too. Setting the
 * umask instead would race with every other thread of the process. */
static int create_private(const char *path, struct cv_errmsg *err)
{
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return cv_errmsg_set(err, CV_ERR_DB, "database %s: %s", path, strerror(errno));
	if (close(fd) < 0)
		return cv_errmsg_set(err, CV_ERR_DB, "database %s: %s", path, strerror(errno));
	return 0;
}

/* Notes that a jwks or certificates row changed; the generation moves when the connection
 * is returned, after the transaction ended. Both are rowid tables, so every insert, update
 * and delete of their rows reaches the hook, those of foreign-key actions included. A
 * change rolled back moves it too: a reader then finds nothing new, which is harmless. */
static void on_update(void *arg, int op, const char *db_name, const char *table,
		      sqlite3_int64 rowid)
{
	struct store_conn *conn = arg;

	(void)op;
	(void)db_name;
	(void)rowid;
	if (strcmp(table, "jwks") == 0)
		conn->jwks_changed = 1;
	else if (strcmp(table, "certificates") == 0 || strcmp(table, "services") == 0)
		conn->certs_changed = 1;
	else if (strcmp(table, "api_tokens") == 0)
		conn->tokens_changed = 1;
}

/* The tables besides certificates and services whose rows a certificate's list row or
 * details show. They are WITHOUT ROWID tables, whose changes never reach the update hook:
 * a TEMP trigger per table and change calls cv_certs_changed(), which marks the
 * connection as the hook does. TEMP, so that nothing of it is in the database file. */
static const char *const watched_tables[] = {
	"certificate_domains", "certificate_environments", "certificate_tags", "service_domains",
};

static void certs_changed_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	struct store_conn *conn = sqlite3_user_data(ctx);

	(void)argc;
	(void)argv;
	conn->certs_changed = 1;
	sqlite3_result_null(ctx);
}

/* Sets up the watch on conn, whose database has its schema. */
static int watch_tables(struct store_conn *conn, const char *path, struct cv_errmsg *err)
{
	static const char *const ops[] = { "INSERT", "UPDATE", "DELETE" };
	sqlite3 *db = cvdb_sqlite(conn->db);
	char sql[256];
	size_t t, o;
	int rc;

	rc = sqlite3_create_function(db, "cv_certs_changed", 0, SQLITE_UTF8 | SQLITE_DIRECTONLY,
				     conn, certs_changed_fn, NULL, NULL);
	for (t = 0; rc == SQLITE_OK && t < sizeof(watched_tables) / sizeof(watched_tables[0]);
	     t++)
		for (o = 0; rc == SQLITE_OK && o < sizeof(ops) / sizeof(ops[0]); o++) {
			snprintf(sql, sizeof(sql), "CREATE TEMP TRIGGER cv_watch_%s_%c AFTER %s ON"
				 " main.%s BEGIN SELECT cv_certs_changed(); END", watched_tables[t],
				 ops[o][0], ops[o], watched_tables[t]);
			rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		}
	if (rc != SQLITE_OK)
		return cv_errmsg_set(err, store_err(rc), "database %s: %s", path,
				     sqlite3_errmsg(db));
	return 0;
}

/* Whether sql names table as a word (not as part of pending_certificates, say). */
static int names_table(const char *sql, const char *table)
{
	size_t len = strlen(table);
	const char *p;

	for (p = strstr(sql, table); p != NULL; p = strstr(p + 1, table)) {
		int before = p > sql && (isalnum((unsigned char)p[-1]) || p[-1] == '_');
		int after = isalnum((unsigned char)p[len]) || p[len] == '_';

		if (!before && !after)
			return 1;
	}
	return 0;
}

/* PostgreSQL's side of on_update and the TEMP triggers (cvdb_set_write_hook): a statement
 * changed rows; which generations move is judged from the tables it names. Rows the server
 * changes on its own follow from a certificate written (its domains, environments and tags
 * cascade; removed, its JWKs lose their link) or a service (its domains), so those count for
 * what they reach. Other nodes' changes come through the listener (pgwatch.c). */
static void on_pg_write(void *arg, const char *sql)
{
	struct store_conn *conn = arg;
	size_t t;

	while (isspace((unsigned char)*sql))
		sql++;
	if (names_table(sql, "jwks") ||
	    (strncasecmp(sql, "DELETE", 6) == 0 && names_table(sql, "certificates")))
		conn->jwks_changed = 1;
	if (names_table(sql, "certificates") || names_table(sql, "services"))
		conn->certs_changed = 1;
	if (names_table(sql, "api_tokens"))
		conn->tokens_changed = 1;
	for (t = 0; t < sizeof(watched_tables) / sizeof(watched_tables[0]); t++)
		if (names_table(sql, watched_tables[t]))
			conn->certs_changed = 1;
}

/* Group commit.
 *
 * With synchronous=FULL every COMMIT fdatasyncs the WAL while it holds SQLite's write lock,
 * so N writes in flight make N syncs one after the other. Here COMMIT only writes its frames
 * (synchronous=NORMAL) and numbers itself in the WAL hook; store_return then waits until an
 * fdatasync of the WAL that began after that commit has returned. The WAL is written in order
 * and a sync covers every frame written before it began, so one sync covers every commit
 * made while the previous one ran. No caller sees its connection back before its commits are
 * durable, and every write goes through a borrowed connection, so no promise is weaker than
 * with FULL: the pending row of an import is on disk before its key is created, an import
 * is acknowledged after its row and its key are. */

/* Tests only (CV_FAULT_INJECTION builds): while the file CERTVAULT_FAULT_WAL_SYNC names
 * exists, the WAL's sync fails as a failing disk would make it; CERTVAULT_FAULT_WAL_SYNC_DELAY_MS
 * (1 to 10000) makes every sync that long, as a slow disk would, so that a test can count on
 * commits arriving while one runs. */
static int wal_sync_fault(void)
{
#ifdef CV_FAULT_INJECTION
	const char *flag = getenv("CERTVAULT_FAULT_WAL_SYNC");
	const char *delay = getenv("CERTVAULT_FAULT_WAL_SYNC_DELAY_MS");
	struct timespec ts;
	char *end;
	long ms;

	if (delay != NULL && delay[0] != '\0') {
		errno = 0;
		ms = strtol(delay, &end, 10);
		if (errno == 0 && *end == '\0' && ms > 0 && ms <= 10000) {
			ts.tv_sec = ms / 1000;
			ts.tv_nsec = (ms % 1000) * 1000000L;
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
	}
	return flag != NULL && flag[0] != '\0' && access(flag, F_OK) == 0;
#else
	return 0;
#endif
}

/* fdatasync of the WAL through db's own handle on it (SQLite's VFS, so that its first sync
 * after creating the file also syncs the directory). Returns a SQLite result code. */
static int wal_file_sync(cvdb *db)
{
	sqlite3_file *f = NULL;
	int rc;

	if (wal_sync_fault())
		return SQLITE_IOERR_FSYNC;
	/* In WAL mode the journal pointer is the WAL file. */
	rc = sqlite3_file_control(cvdb_sqlite(db), "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
	if (rc != SQLITE_OK)
		return rc;
	if (f == NULL || f->pMethods == NULL)
		return SQLITE_IOERR_FSYNC;
	return f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
}

/* After a failed fsync the kernel may have dropped the dirty pages and marked them clean: no
 * later sync can tell whether the commit reached the disk, yet every reader already sees it.
 * Going on would acknowledge changes that a power cut can take back, and undoing them is
 * not possible either (the key of an import is already in the token). So the process stops
 * as a crash would (PostgreSQL does the same since its fsync failures of 2018), and the next
 * start's reconciler makes every write that was in flight whole or absent, which test_crash
 * proves for every point of every write path. The one place the store writes to stderr:
 * nobody is left to return an error to. */
static void wal_sync_failed(struct store_conn *conn, int rc)
{
	const char *path = sqlite3_db_filename(cvdb_sqlite(conn->db), "main");

	fprintf(stderr, "certvaultd: database %s: the fdatasync of its WAL failed (%s): stopping"
		" without answering the writes in flight; the next start recovers as after a"
		" crash\n", path != NULL ? path : "?", cvdb_errstr(rc));
	fflush(stderr);
	_exit(EXIT_FAILURE);
}

/* Returns once the last commit made on conn (if any) is on disk. */
static void wal_sync_wait(struct cv_store *store, struct store_conn *conn)
{
	uint64_t seq = conn->commit_seq, target;
	int rc;

	if (seq == 0)
		return;
	conn->commit_seq = 0;
	pthread_mutex_lock(&store->sync_lock);
	while (store->synced < seq) {
		if (store->syncing) {
			pthread_cond_wait(&store->synced_cond, &store->sync_lock);
			continue;
		}
		/* This thread syncs for every commit numbered so far: their frames are written. */
		store->syncing = 1;
		target = store->committed;
		pthread_mutex_unlock(&store->sync_lock);
		rc = wal_file_sync(conn->db);
		if (rc != SQLITE_OK)
			wal_sync_failed(conn, rc);
		atomic_fetch_add(&store->wal_syncs, 1);
		pthread_mutex_lock(&store->sync_lock);
		store->syncing = 0;
		if (target > store->synced)
			store->synced = target;
		pthread_cond_broadcast(&store->synced_cond);
	}
	pthread_mutex_unlock(&store->sync_lock);
}

/* SQLite calls this after every commit of conn, once the write lock is released. Setting it
 * replaces SQLite's auto-checkpoint, which the checkpointer does instead (off the writer's
 * path). */
static int on_wal_commit(void *arg, sqlite3 *db, const char *db_name, int frames)
{
	struct store_conn *conn = arg;
	struct cv_store *store = conn->store;

	(void)db;
	(void)db_name;
	pthread_mutex_lock(&store->sync_lock);
	conn->commit_seq = ++store->committed;
	store->wal_frames = frames;
	pthread_cond_signal(&store->ckpt_cond);
	pthread_mutex_unlock(&store->sync_lock);
	return SQLITE_OK;
}

/* The checkpointer. Readers of a WAL that has not been copied back into the database look
 * every page they read up in the WAL's index, one hash table per 4,096 frames, and read it
 * from the WAL; once a checkpoint has copied every frame back, readers leave the WAL alone
 * until the next write. SQLite's auto-checkpoint runs only in a commit (on the writer's time)
 * and gives up on frames a reader still needs: after a burst of writes the last one is often
 * incomplete and nothing runs another, so every read paid for the burst until the next
 * write. Here a thread checkpoints once writes have paused for CKPT_QUIET_MS (or the WAL
 * reached CKPT_FRAMES), and tries again until the whole WAL is in the database. PASSIVE: it
 * never waits for readers nor blocks writers. */
static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Waits on ckpt_cond (sync_lock held) until the deadline, stopping or a new commit.
 * Returns 1 when the deadline passed with no commit after seen. */
static int quiet_until(struct cv_store *store, const struct timespec *until, uint64_t seen)
{
	while (!store->ckpt_stopping && store->committed == seen) {
		if (pthread_cond_timedwait(&store->ckpt_cond, &store->sync_lock, until) ==
		    ETIMEDOUT)
			return store->committed == seen && !store->ckpt_stopping;
	}
	return 0;
}

static void *checkpointer_main(void *arg)
{
	struct cv_store *store = arg;
	struct timespec until;
	uint64_t target;
	int rc, frames_log = 0, frames_done = 0;

	pthread_mutex_lock(&store->sync_lock);
	while (!store->ckpt_stopping) {
		if (store->checkpointed >= store->committed) {
			pthread_cond_wait(&store->ckpt_cond, &store->sync_lock);
			continue;
		}
		/* Writes still coming: wait for a pause, unless the WAL is already long. */
		if (store->wal_frames < CKPT_FRAMES) {
			deadline_in(&until, CKPT_QUIET_MS);
			if (!quiet_until(store, &until, store->committed) &&
			    store->wal_frames < CKPT_FRAMES)
				continue;
			if (store->ckpt_stopping)
				break;
		}
		target = store->committed;
		pthread_mutex_unlock(&store->sync_lock);
		rc = sqlite3_wal_checkpoint_v2(store->ckpt_db, "main", SQLITE_CHECKPOINT_PASSIVE,
					       &frames_log, &frames_done);
		pthread_mutex_lock(&store->sync_lock);
		if (rc == SQLITE_OK && frames_done == frames_log) {
			if (target > store->checkpointed)
				store->checkpointed = target;
			atomic_fetch_add(&store->checkpoints, 1);
			continue;
		}
		/* A reader still on an older snapshot holds frames back (or the database was
		 * busy): try again after a pause. */
		deadline_in(&until, CKPT_QUIET_MS);
		while (!store->ckpt_stopping &&
		       pthread_cond_timedwait(&store->ckpt_cond, &store->sync_lock, &until) !=
		       ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&store->sync_lock);
	return NULL;
}

static int checkpointer_start(struct cv_store *store, const char *path, struct cv_errmsg *err)
{
	int rc;

	rc = sqlite3_open_v2(path, &store->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(store->ckpt_db, BUSY_TIMEOUT_MS);
	if (rc == SQLITE_OK)
		rc = sqlite3_wal_autocheckpoint(store->ckpt_db, 0);
	/* The checkpoint syncs the WAL before copying and the database after. */
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(store->ckpt_db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return cv_errmsg_set(err, store_err(rc), "database %s: %s", path,
				     store->ckpt_db != NULL ? sqlite3_errmsg(store->ckpt_db) :
				     cvdb_errstr(rc));
	if (pthread_create(&store->ckpt_thread, NULL, checkpointer_main, store) != 0)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start the checkpoint thread");
	store->ckpt_started = 1;
	/* Named for ps (and top -H); here, so that the name is there before the store is
	 * used. */
	(void)pthread_setname_np(store->ckpt_thread, "cv-checkpoint");
	return 0;
}

static void checkpointer_stop(struct cv_store *store)
{
	if (store->ckpt_started) {
		pthread_mutex_lock(&store->sync_lock);
		store->ckpt_stopping = 1;
		pthread_cond_signal(&store->ckpt_cond);
		pthread_mutex_unlock(&store->sync_lock);
		pthread_join(store->ckpt_thread, NULL);
		store->ckpt_started = 0;
	}
	sqlite3_close_v2(store->ckpt_db);
	store->ckpt_db = NULL;
}

void cv_store_sync_stats(struct cv_store *store, struct cv_store_sync_stats *ret)
{
	pthread_mutex_lock(&store->sync_lock);
	ret->commits = store->committed;
	pthread_mutex_unlock(&store->sync_lock);
	ret->wal_syncs = atomic_load(&store->wal_syncs);
	ret->checkpoints = atomic_load(&store->checkpoints);
	ret->listening = store->kind != CVDB_PG ? -1 : store_watch_listening(store);
}

static int open_conn(const char *path, struct store_conn *conn, struct cv_errmsg *err)
{
	cvdb *db = NULL;
	int rc, r;

	rc = cvdb_open_sqlite(path,
			      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, &db);
	if (rc != SQLITE_OK) {
		r = cv_errmsg_set(err, store_err(rc), "database %s: %s", path,
				  db != NULL ? cvdb_errmsg(db) : cvdb_errstr(rc));
		goto out;
	}
	r = configure(db, path, err);
	if (r < 0)
		goto out;
	sqlite3_update_hook(cvdb_sqlite(db), on_update, conn);
	sqlite3_wal_hook(cvdb_sqlite(db), on_wal_commit, conn);
	conn->db = db;
	db = NULL;
	r = 0;
out:
	cvdb_close(db);
	return r;
}

static void process_init_once(void)
{
	/* SQLite counts every allocation under one global mutex unless told not to; nothing
	 * here reads the counts. Refused (harmlessly) once SQLite is initialised. */
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

void cv_store_process_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, process_init_once);
}

/* The store's mutexes and condition variables; 0 or -1 (none left made). */
static int sync_init(struct cv_store *store)
{
	int ok = 1;

	if (pthread_mutex_init(&store->lock, NULL) != 0)
		ok = 0;
	else if (ok && pthread_cond_init(&store->returned, NULL) != 0) {
		pthread_mutex_destroy(&store->lock);
		ok = 0;
	} else if (ok && pthread_mutex_init(&store->sync_lock, NULL) != 0) {
		pthread_cond_destroy(&store->returned);
		pthread_mutex_destroy(&store->lock);
		ok = 0;
	} else if (ok && pthread_cond_init(&store->synced_cond, NULL) != 0) {
		pthread_mutex_destroy(&store->sync_lock);
		pthread_cond_destroy(&store->returned);
		pthread_mutex_destroy(&store->lock);
		ok = 0;
	} else if (ok && cv_cond_init_monotonic(&store->ckpt_cond) != 0) {
		/* (the checkpointer's pauses must not jump with the wall clock) */
		pthread_cond_destroy(&store->synced_cond);
		pthread_mutex_destroy(&store->sync_lock);
		pthread_cond_destroy(&store->returned);
		pthread_mutex_destroy(&store->lock);
		ok = 0;
	}
	return ok ? 0 : -1;
}

/* A new store with its locks, nothing open yet. */
static int store_new(enum cvdb_kind kind, struct cv_store **ret, struct cv_errmsg *err)
{
	struct cv_store *store;
	unsigned i;

	*ret = NULL;
	store = calloc(1, sizeof(*store));
	if (store == NULL)
		return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
	if (sync_init(store) < 0) {
		free(store);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot create a mutex");
	}
	store->kind = kind;
	for (i = 0; i < STORE_POOL_SIZE; i++)
		store->conns[i].store = store;
	*ret = store;
	return 0;
}

static int is_pg_uri(const char *s)
{
	return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

int cv_store_open(const char *path, struct cv_store **ret_store, struct cv_errmsg *err)
{
	struct cv_store *store = NULL;
	int r;

	if (is_pg_uri(path))
		return cv_store_open_pg(path, NULL, ret_store, err);
	r = store_new(CVDB_SQLITE, &store, err);
	if (r < 0)
		goto out;
	snprintf(store->target, sizeof(store->target), "%s", path);
	r = create_private(path, err);
	if (r < 0)
		goto out;
	cv_store_process_init();
	/* The first connection migrates before the others exist. */
	r = open_conn(path, &store->conns[0], err);
	if (r < 0)
		goto out;
	store->n_open = 1;
	r = migrate(store->conns[0].db, path, err);
	if (r == 0)
		r = watch_tables(&store->conns[0], path, err);
	if (r < 0)
		goto out;
	r = store_dn_refresh(store->conns[0].db);
	if (r < 0) {
		cv_errmsg_set(err, r, "database %s: rewriting stored distinguished names failed: %s",
			      path, cvdb_errmsg(store->conns[0].db));
		goto out;
	}
	/* What migrating wrote is on disk before anything runs on it. */
	wal_sync_wait(store, &store->conns[0]);
	while (store->n_open < STORE_POOL_SIZE) {
		r = open_conn(path, &store->conns[store->n_open], err);
		if (r < 0)
			goto out;
		r = watch_tables(&store->conns[store->n_open++], path, err);
		if (r < 0)
			goto out;
	}
	r = checkpointer_start(store, path, err);
	if (r < 0)
		goto out;
	for (store->n_idle = 0; store->n_idle < store->n_open; store->n_idle++)
		store->idle[store->n_idle] = &store->conns[store->n_idle];
	*ret_store = store;
	store = NULL;
	r = 0;
out:
	cv_store_free(store);
	return r;
}

/* Appends s to buf (of size, used so far *used), percent-encoding it for a URI's query when
 * uri, else quoting it as a key=value string's value. 0, or -1 when it does not fit. */
static int conninfo_put(char *buf, size_t size, size_t *used, const char *s, int uri)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = *used;
	unsigned char c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (n + 4 > size)
			return -1;
		if (uri && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~')) {
			buf[n++] = '%';
			buf[n++] = hex[c >> 4];
			buf[n++] = hex[c & 15];
			continue;
		}
		if (!uri && (c == '\\' || c == '\''))
			buf[n++] = '\\';
		buf[n++] = (char)c;
	}
	buf[n] = '\0';
	*used = n;
	return 0;
}

/* conninfo with the password added as libpq reads it (a URI's query parameter, or a quoted
 * key=value pair), in a buffer released with OPENSSL_clear_free(ret, *ret_size); conninfo
 * itself when password is NULL. 0, CV_ERR_NOMEM or CV_ERR_CONFIG (too long). */
static int pg_conninfo_with(const char *conninfo, const char *password, char **ret,
			    size_t *ret_size)
{
	size_t size = strlen(conninfo) + (password != NULL ? 3 * strlen(password) + 32 : 0) + 1;
	size_t used;
	char *buf;
	int uri = is_pg_uri(conninfo);

	buf = OPENSSL_zalloc(size);
	if (buf == NULL)
		return CV_ERR_NOMEM;
	used = (size_t)snprintf(buf, size, "%s", conninfo);
	if (password != NULL) {
		used += (size_t)snprintf(buf + used, size - used, "%s",
					 uri ? (strchr(conninfo, '?') != NULL ? "&password="
									    : "?password=")
					     : " password='");
		if (conninfo_put(buf, size, &used, password, uri) < 0 ||
		    (!uri && used + 2 > size)) {
			OPENSSL_clear_free(buf, size);
			return CV_ERR_CONFIG;
		}
		if (!uri) {
			buf[used++] = '\'';
			buf[used] = '\0';
		}
	}
	*ret = buf;
	*ret_size = size;
	return 0;
}

/* Keeps the printable ASCII of n bytes of s (a user-supplied name, shown in logs), decoding
 * a URI's %XX escapes when uri. */
static void describe_put_as(char *dst, size_t size, const char *s, size_t n, int uri)
{
	size_t i, j = strlen(dst);
	char c, pair[3] = "";
	uint8_t byte;

	for (i = 0; i < n && s[i] != '\0' && j + 1 < size; i++) {
		c = s[i];
		if (uri && c == '%' && i + 2 < n) {
			memcpy(pair, s + i + 1, 2);
			if (cv_hex_decode(pair, &byte, 1) == 0) {
				c = (char)byte;
				i += 2;
			}
		}
		dst[j++] = (c > ' ' && c < 0x7f && c != '\'' && c != '"') ? c : '?';
	}
	dst[j] = '\0';
}

static void describe_put(char *dst, size_t size, const char *s, size_t n)
{
	describe_put_as(dst, size, s, n, 0);
}

/* The value of key in a key=value conninfo (or a URI's query), as a pointer and length. */
static const char *conninfo_value(const char *s, const char *key, char sep, size_t *ret_len)
{
	size_t klen = strlen(key), n, vlen;
	const char *p = s, *v;

	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == sep)
			p++;
		n = strcspn(p, sep == '&' ? "=&" : "= \t\n");
		v = p + n;
		while (sep != '&' && (*v == ' ' || *v == '\t'))
			v++;
		if (*v != '=')
			return NULL;
		v++;
		while (sep != '&' && (*v == ' ' || *v == '\t'))
			v++;
		if (*v == '\'' && sep != '&') {
			const char *e = v + 1;

			while (*e != '\0' && *e != '\'')
				e += (*e == '\\' && e[1] != '\0') ? 2 : 1;
			if (n == klen && strncmp(p, key, klen) == 0) {
				*ret_len = (size_t)(e - v - 1);
				return v + 1;
			}
			p = *e != '\0' ? e + 1 : e;
			continue;
		}
		vlen = strcspn(v, sep == '&' ? "&" : " \t\n");
		if (n == klen && strncmp(p, key, klen) == 0) {
			*ret_len = vlen;
			return v;
		}
		p = v + vlen;
	}
	return NULL;
}

void cv_store_pg_describe(const char *conninfo, char *buf, size_t size)
{
	const char *host = NULL, *port = NULL, *db = NULL, *p, *q, *at, *end;
	size_t host_len = 0, port_len = 0, db_len = 0;
	int uri;

	buf[0] = '\0';
	if (is_pg_uri(conninfo)) {
		p = strstr(conninfo, "://") + 3;
		end = p + strcspn(p, "/?");
		at = memchr(p, '@', (size_t)(end - p));
		if (at != NULL)
			p = at + 1; /* the user (and any password) are never shown */
		host = p;
		host_len = (size_t)(end - p);
		if (*end == '/') {
			db = end + 1;
			db_len = strcspn(db, "?");
		}
		q = strchr(end, '?');
		if (q != NULL) {
			if ((p = conninfo_value(q + 1, "host", '&', &host_len)) != NULL)
				host = p;
			else if (q != NULL && host == q)
				host_len = 0;
			if ((p = conninfo_value(q + 1, "port", '&', &port_len)) != NULL)
				port = p;
			if ((p = conninfo_value(q + 1, "dbname", '&', &db_len)) != NULL)
				db = p;
		}
	} else {
		host = conninfo_value(conninfo, "host", ' ', &host_len);
		if (host == NULL)
			host = conninfo_value(conninfo, "hostaddr", ' ', &host_len);
		port = conninfo_value(conninfo, "port", ' ', &port_len);
		db = conninfo_value(conninfo, "dbname", ' ', &db_len);
	}
	uri = is_pg_uri(conninfo);
	if (host != NULL && host_len > 0)
		describe_put_as(buf, size, host, host_len, uri);
	else
		describe_put(buf, size, "(default host)", 14);
	if (port != NULL && port_len > 0) {
		describe_put(buf, size, ":", 1);
		describe_put_as(buf, size, port, port_len, uri);
	}
	describe_put(buf, size, "/", 1);
	if (db != NULL && db_len > 0)
		describe_put_as(buf, size, db, db_len, uri);
	else
		describe_put(buf, size, "(default database)", 18);
}

/* A PostgreSQL connection of the pool, with the settings each session needs. */
static int open_conn_pg(const char *conninfo, const char *target, struct store_conn *conn,
			struct cv_errmsg *err)
{
	cvdb *db = NULL;
	int rc, r;

	rc = cvdb_open_pg(conninfo, &db);
	if (rc != SQLITE_OK) {
		r = cv_errmsg_set(err, store_err(rc), "database postgresql %s: %s", target,
				  db != NULL ? cvdb_errmsg(db) : cvdb_errstr(rc));
		goto out;
	}
	/* How long a writer waits for the write lock is sqldb_pg's (lock_timeout, as SQLite's
	 * busy timeout); the name shows the nodes' sessions in pg_stat_activity. */
	r = store_exec(db, "SET application_name = 'certvaultd'");
	if (r < 0) {
		cv_errmsg_set(err, r, "database postgresql %s: %s", target, cvdb_errmsg(db));
		goto out;
	}
	cvdb_set_write_hook(db, on_pg_write, conn);
	conn->db = db;
	db = NULL;
	r = 0;
out:
	cvdb_close(db);
	return r;
}

int cv_store_open_pg(const char *conninfo, const char *password, struct cv_store **ret_store,
		     struct cv_errmsg *err)
{
	struct cv_store *store = NULL;
	char *full = NULL;
	size_t full_size = 0;
	int r;

	r = store_new(CVDB_PG, &store, err);
	if (r < 0)
		goto out;
	cv_store_pg_describe(conninfo, store->target, sizeof(store->target));
	r = pg_conninfo_with(conninfo, password, &full, &full_size);
	if (r < 0) {
		cv_errmsg_set(err, r == CV_ERR_NOMEM ? r : CV_ERR_DB, "database postgresql %s: %s",
			      store->target, r == CV_ERR_NOMEM ? "out of memory" :
			      "the connection string is too long");
		goto out;
	}
	/* The first connection migrates before the others exist. */
	r = open_conn_pg(full, store->target, &store->conns[0], err);
	if (r < 0)
		goto out;
	store->n_open = 1;
	r = migrate_pg(store->conns[0].db, store->target, err);
	if (r < 0)
		goto out;
	for (; store->n_open < STORE_POOL_SIZE; store->n_open++) {
		r = open_conn_pg(full, store->target, &store->conns[store->n_open], err);
		if (r < 0)
			goto out;
	}
	r = store_watch_start(store, full, err);
	if (r < 0)
		goto out;
	for (store->n_idle = 0; store->n_idle < store->n_open; store->n_idle++)
		store->idle[store->n_idle] = &store->conns[store->n_idle];
	*ret_store = store;
	store = NULL;
	r = 0;
out:
	OPENSSL_clear_free(full, full_size);
	cv_store_free(store);
	return r;
}

const char *cv_store_kind(const struct cv_store *store)
{
	return store->kind == CVDB_PG ? "postgresql" : "sqlite";
}

const char *cv_store_target(const struct cv_store *store)
{
	return store->target;
}

static void conn_close(struct store_conn *conn)
{
	unsigned i;

	for (i = 0; i < STORE_STMT_CACHE; i++) {
		cvdb_finalize(conn->stmts[i].stmt);
		conn->stmts[i].stmt = NULL;
	}
	cvdb_close(conn->db);
	conn->db = NULL;
}

void cv_store_free(struct cv_store *store)
{
	unsigned i;

	if (store == NULL)
		return;
	checkpointer_stop(store);
	store_watch_stop(store);
	/* The cached statements are finalized here, every other one where it was prepared, so
	 * close_v2 closes at once. */
	for (i = 0; i < store->n_open; i++)
		conn_close(&store->conns[i]);
	pthread_cond_destroy(&store->ckpt_cond);
	pthread_cond_destroy(&store->synced_cond);
	pthread_mutex_destroy(&store->sync_lock);
	pthread_cond_destroy(&store->returned);
	pthread_mutex_destroy(&store->lock);
	free(store);
}

_Thread_local struct store_conn *store_current_conn;

struct store_conn *store_borrow(struct cv_store *store)
{
	struct store_conn *conn;

	pthread_mutex_lock(&store->lock);
	while (store->n_idle == 0)
		pthread_cond_wait(&store->returned, &store->lock);
	conn = store->idle[--store->n_idle];
	pthread_mutex_unlock(&store->lock);
	conn->borrows++;
	store_current_conn = conn;
	return conn;
}

/* Resets the cached statements this borrow used (reset repeats a step's error, which their
 * user has seen), and clears their bindings when asked. */
static void reset_used(struct store_conn *conn, int clear)
{
	struct store_cached_stmt *c;
	unsigned i;

	for (i = 0; i < STORE_STMT_CACHE; i++) {
		c = &conn->stmts[i];
		if (c->stmt == NULL || c->last_borrow != conn->borrows)
			continue;
		(void)cvdb_reset(c->stmt);
		if (clear)
			(void)cvdb_clear_bindings(c->stmt);
	}
}

void store_return(struct cv_store *store, struct store_conn *conn)
{
	/* A statement left mid-way would keep its read snapshot (and the WAL from being
	 * checkpointed past it) while the connection sits idle; and the bindings may point
	 * at the caller's memory. */
	reset_used(conn, 1);
	/* The caller's commits are durable before it goes on (group commit, above). */
	wal_sync_wait(store, conn);
	if (store_current_conn == conn)
		store_current_conn = NULL;
	if (conn->jwks_changed) {
		conn->jwks_changed = 0;
		atomic_fetch_add(&store->jwks_generation, 1);
	}
	if (conn->certs_changed) {
		conn->certs_changed = 0;
		atomic_fetch_add(&store->certs_generation, 1);
	}
	if (conn->tokens_changed) {
		conn->tokens_changed = 0;
		atomic_fetch_add(&store->tokens_generation, 1);
	}
	pthread_mutex_lock(&store->lock);
	store->idle[store->n_idle++] = conn;
	pthread_cond_signal(&store->returned);
	pthread_mutex_unlock(&store->lock);
}

static uint64_t sql_hash(const char *sql)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (; *sql != '\0'; sql++)
		h = (h ^ (unsigned char)*sql) * 0x100000001b3ULL;
	return h;
}

int store_prepare(struct store_conn *conn, const char *sql, cvdb_stmt **ret_stmt)
{
	struct store_cached_stmt *c, *victim = NULL;
	uint64_t h = sql_hash(sql);
	cvdb_stmt *stmt = NULL;
	unsigned i;
	int rc;

	for (i = 0; i < STORE_STMT_CACHE; i++) {
		c = &conn->stmts[i];
		if (c->stmt == NULL) {
			if (victim == NULL || victim->stmt != NULL)
				victim = c;
			continue;
		}
		if (c->hash == h && strcmp(cvdb_sql(c->stmt), sql) == 0) {
			(void)cvdb_reset(c->stmt);
			(void)cvdb_clear_bindings(c->stmt);
			c->last_borrow = conn->borrows;
			*ret_stmt = c->stmt;
			return 0;
		}
		/* The least recently used, never one this borrow may still be using. */
		if (c->last_borrow != conn->borrows &&
		    (victim == NULL ||
		     (victim->stmt != NULL && c->last_borrow < victim->last_borrow)))
			victim = c;
	}
	if (victim == NULL)
		return CV_ERR_INTERNAL; /* one borrow asked for more statements than are kept */
	rc = cvdb_prepare(conn->db, sql, 1, &stmt, NULL);
	if (rc != SQLITE_OK) {
		cvdb_finalize(stmt);
		return store_err(rc);
	}
	cvdb_finalize(victim->stmt);
	victim->stmt = stmt;
	victim->hash = h;
	victim->last_borrow = conn->borrows;
	*ret_stmt = stmt;
	return 0;
}

/* Runs a cached statement without parameters or rows. */
static int exec_cached(struct store_conn *conn, const char *sql)
{
	cvdb_stmt *stmt;
	int rc, r;

	r = store_prepare(conn, sql, &stmt);
	if (r < 0)
		return r;
	rc = cvdb_step(stmt);
	(void)cvdb_reset(stmt);
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

int store_read_begin(struct store_conn *conn)
{
	return exec_cached(conn, "BEGIN");
}

int store_read_end(struct store_conn *conn, int r)
{
	int r2;

	if (cvdb_get_autocommit(conn->db) != 0)
		return r; /* SQLite already ended it (a fatal error), or it never began */
	/* Statements still on a row would hold the snapshot past the end. A read transaction
	 * changed nothing: COMMIT and ROLLBACK both just end it. */
	reset_used(conn, 0);
	r2 = exec_cached(conn, r == 0 ? "COMMIT" : "ROLLBACK");
	return r == 0 ? r2 : r;
}

atomic_uint_fast64_t *store_generation(struct cv_store *store, unsigned which)
{
	return which == 0 ? &store->certs_generation :
	       which == 1 ? &store->jwks_generation : &store->tokens_generation;
}

/* The process's generation which (STORE_GENERATIONS_SQL's order). On PostgreSQL, while the
 * listener vouches for it (pgwatch.c), without a round trip; else after reading the
 * database's numbers (one row, bumped by triggers in each writer's transaction) on the
 * connection this thread holds or on one borrowed for it. A failed read gives a number no
 * earlier read gave, so that no cache takes it for "no change" (the read the cache then
 * makes fails and says so). */
static uint64_t generation(struct cv_store *store, unsigned which)
{
	struct store_conn *conn = store_current_conn, *mine = NULL;
	uint64_t numbers[STORE_GENERATIONS];
	cvdb_stmt *stmt;
	unsigned i;
	int r;

	if (store->kind == CVDB_PG && !store_watch_current(store)) {
		if (conn == NULL || conn->store != store)
			conn = mine = store_borrow(store);
		r = store_prepare(conn, STORE_GENERATIONS_SQL, &stmt);
		if (r == 0)
			r = store_step_one(stmt);
		if (r == 0) {
			for (i = 0; i < STORE_GENERATIONS; i++)
				numbers[i] = (uint64_t)cvdb_column_int64(stmt, (int)i);
			(void)cvdb_reset(stmt);
		}
		if (mine != NULL)
			store_return(store, mine);
		if (r < 0)
			return (UINT64_C(1) << 63) |
			       (atomic_fetch_add(&store->generation_failures, 1) + 1);
		store_watch_note(store, numbers);
	}
	return atomic_load(store_generation(store, which));
}

uint64_t cv_store_certs_generation(struct cv_store *store)
{
	return generation(store, 0);
}

uint64_t cv_store_jwks_generation(struct cv_store *store)
{
	return generation(store, 1);
}

uint64_t cv_store_tokens_generation(struct cv_store *store)
{
	return generation(store, 2);
}

int cv_store_ping(struct cv_store *store)
{
	struct store_conn *conn = store_borrow(store);
	cvdb *db = conn->db;
	int64_t one = 0;
	int r;

	r = query_one(db, "SELECT 1", &one, NULL, 0);
	if (r == 0 && one != 1)
		r = CV_ERR_DB;
	store_return(store, conn);
	return r;
}
