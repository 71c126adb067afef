/* store: the only code that speaks SQL.
 *
 * One SQLite file in WAL mode, synchronous=FULL, foreign keys on, schema migrated by
 * PRAGMA user_version. A small pool of connections makes it safe for the HTTP thread pool.
 * Holds certificates, chains and metadata; never a private key, a PIN or a token secret.
 *
 * A certificate row has a state. Writes that span the token go through it so that a crash
 * leaves nothing half-done: an import inserts a 'pending' row naming the CKA_ID before the key
 * is created and activates it after; a delete marks the row 'deleting' before the key is
 * destroyed and removes it after. Only 'active' rows are seen by get, list and summary; a
 * pending or deleting row still holds its name.
 *
 * Every write that commits a client's change takes the audit record of that change
 * (const struct cv_audit_entry *audit, NULL: none) and appends it in the change's own
 * transaction: when the record cannot be written the change is rolled back and the call
 * fails with CV_ERR_DB. The record is written only when the change is. */
#ifndef CERTVAULT_STORE_H
#define CERTVAULT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "certvault/error.h"
#include "certvault/token.h"
#include "certvault/x509.h"

struct cv_store;
struct cv_audit_entry;         /* below, with the audit trail */

/* Opens (creating if needed) the database at path and migrates it to the current schema.
 * Returns 0 or CV_ERR_DB with a message naming the file and SQLite's reason. A path that
 * begins with postgresql:// or postgres:// is a PostgreSQL URI: cv_store_open_pg with no
 * password. */
int cv_store_open(const char *path, struct cv_store **ret_store, struct cv_errmsg *err);
/* Opens the PostgreSQL database conninfo names (a libpq URI or key=value string without a
 * password; password: NULL for libpq's own means such as PGPASSFILE, else the one to send,
 * copied and wiped once every connection is open), creating the schema in an empty database
 * or migrating it; several nodes may open one database at once (migrating is serialised
 * by an advisory lock). Messages name host, port and database only, never the password.
 * Returns 0 or CV_ERR_DB. */
int cv_store_open_pg(const char *conninfo, const char *password, struct cv_store **ret_store,
		     struct cv_errmsg *err);
/* "sqlite" or "postgresql". */
const char *cv_store_kind(const struct cv_store *store);
/* What the store is, for logs and health: the SQLite file, or PostgreSQL's
 * "host:port/dbname" (never a user or a password). */
const char *cv_store_target(const struct cv_store *store);
/* Writes what conninfo names ("host:port/dbname", the parts libpq would take by default
 * left as libpq's defaults say: "(default)") into buf, never its user or password. */
void cv_store_pg_describe(const char *conninfo, char *buf, size_t size);
/* Closes every connection. Accepts NULL. */
void cv_store_free(struct cv_store *store);

/* Process-wide SQLite settings: call once before any thread starts and before anything in
 * the process may use SQLite (cv_store_open calls it too, when it may be too late for them to
 * apply, which is harmless: they only save time). */
void cv_store_process_init(void);

/* A number that moves after every change to the JWKs that a call on this store commits,
 * before that call returns. What is read of the JWKs after reading the number is at least as
 * new as the number, so a copy of them made then stays current for as long as the number
 * does not move. On SQLite, changes made by other processes are not seen. On PostgreSQL the
 * database keeps a number too, bumped by a trigger in every writer's transaction, which
 * NOTIFYs the nodes: another node's commit moves this one as soon as its notification is
 * here, and within 2 s whatever happens to the listening connection (pgwatch.c); a number
 * the listener cannot vouch for is read from the database. */
uint64_t cv_store_jwks_generation(struct cv_store *store);
/* The same for the certificates' current versions: it moves after every change to a
 * certificate's row (import, renew, replace, edit, delete) that a call on this store
 * commits, before that call returns. */
uint64_t cv_store_certs_generation(struct cv_store *store);
/* The same for the API tokens (created, revoked, or their last use noted). */
uint64_t cv_store_tokens_generation(struct cv_store *store);

/* Runs a trivial query; 0 when the database answers, else CV_ERR_DB. */
int cv_store_ping(struct cv_store *store);

/* Several nodes on one database (issue 15). Every write in flight that a crash could leave
 * half-done (a pending import, a delete, a generated key being created or cancelled, a key
 * being made for a new version) carries its node's name (owner_node) until it is settled;
 * each node keeps a heartbeat in the nodes table. A node's reconciler takes over ("claims":
 * owner_node set to it, committed before it acts) only rows of its own or of a node whose
 * heartbeat is older than the lease; a write of this node whose row another node claimed
 * cannot commit any more (CV_ERR_BUSY). */
/* Names this process's node (server.node_name, at most 63 bytes) and the lease
 * (server.node_lease_seconds, >= 1). Call once after cv_store_open, before the store is
 * shared. Unset: '' and no lease, which a single process (a tool, a test) may keep. Returns 0
 * or CV_ERR_CONFIG. */
int cv_store_node_set(struct cv_store *store, const char *node, int64_t lease_seconds);
/* Writes this node's row in nodes: started_at = heartbeat_at = now (a restarted node takes
 * its row over). Call before the reconciler. 0, CV_ERR_CONFIG (no node set) or CV_ERR_DB. */
int cv_store_node_register(struct cv_store *store, int64_t now);
/* Moves this node's heartbeat to now. 0; CV_ERR_NAME_TAKEN when another process registered
 * under this node's name since (two nodes must not share a name); CV_ERR_DB. */
int cv_store_node_heartbeat(struct cv_store *store, int64_t now);
/* At a clean stop, once nothing is in flight: heartbeat 0, so the node's rows (none) are
 * anyone's at once. 0, CV_ERR_NAME_TAKEN or CV_ERR_DB. */
int cv_store_node_stopped(struct cv_store *store);

/* What the group commit and the checkpointer did since the store was opened: commits made,
 * fdatasyncs of the WAL that made them durable (fewer than commits when several shared one),
 * complete checkpoints (the whole WAL copied back into the database). */
struct cv_store_sync_stats {
	uint64_t commits;
	uint64_t wal_syncs;
	uint64_t checkpoints;
	/* PostgreSQL: 1 while the listener for other nodes' changes is listening (caches need no
	 * round trip), 0 while every request reads the generations; -1 on SQLite. */
	int listening;
};
void cv_store_sync_stats(struct cv_store *store, struct cv_store_sync_stats *ret);

enum cv_cert_state {
	CV_CERT_PENDING = 0,
	CV_CERT_ACTIVE,
	CV_CERT_DELETING,
};

/* A key's CKA_LABEL: "<name>.v<version>" (names hold no '.', so no two certificates' keys
 * share one); keys made before labels had versions carry the bare name. */
#define CV_KEY_LABEL_MAX 96
void cv_key_label(const char *name, int64_t version, char buf[CV_KEY_LABEL_MAX + 1]);

/* How a certificate's key reached the token. */
enum cv_key_origin {
	CV_KEY_ORIGIN_IMPORTED = 0,  /* parsed from what a client sent, then created in it */
	CV_KEY_ORIGIN_GENERATED = 1, /* born in it (C_GenerateKeyPair) */
	CV_KEY_ORIGIN_UNWRAPPED = 2, /* unwrapped in it (C_UnwrapKey) */
};
/* "imported", "generated", "unwrapped". */
const char *cv_key_origin_name(enum cv_key_origin origin);

/* A service using a certificate, as the certificate's views show it. */
struct cv_cert_usage {
	char service[65];
	char environment[65];
	size_t n_domains;
	char **domains;
};

/* One certificate as stored. Strings are owned by the record. */
struct cv_cert_record {
	int64_t id;
	char name[65];
	char *description;
	enum cv_cert_state state;
	unsigned char *cert_der;   /* NULL in list results */
	size_t cert_der_len;
	char *chain_pem;           /* PEM bundle of intermediates, "" when none; NULL in lists */
	char subject[512];
	char issuer[512];
	char serial[100];
	char sha256_fingerprint[96];
	char key_description[32];
	char primary_domain[256];  /* the first domain (or CN), "" when none */
	size_t n_domains;
	char **domains;            /* every domain, lower case */
	int64_t not_before;
	int64_t not_after;
	uint8_t key_id[CV_TOKEN_ID_LEN];
	int64_t created_at;
	int64_t updated_at;
	int64_t version;           /* 1 at import, one more at each renew or replace */
	enum cv_key_origin key_origin;
	/* The CKA_LABEL its key really has (see cv_key_label; the bare name for keys from
	 * before labels per version): made under the name it had then, a rename keeps it. */
	char key_label[CV_KEY_LABEL_MAX + 1];
	int64_t current_since;     /* when this version became current */
	/* Read by get only (details); written by import and supersede. The access token names
	 * of who made the certificate and who last changed it ("" when not recorded), and the
	 * last revocation check of its current version: status as cv_revocation_status_name
	 * ("" when never recorded), source, detail, when. */
	char created_by[65];
	char updated_by[65];
	char revocation_status[16];
	char revocation_source[320];
	char revocation_detail[256];
	int64_t revocation_checked_at;
	/* Filled by get and list: the services using it, in name order (domains by get
	 * only), and how many distinct domains those services have. */
	size_t n_used_by;
	struct cv_cert_usage *used_by;
	size_t custom_domains;
	/* Filled by list when the filter asks: the kids of the JWKs linked to it, in kid
	 * order. */
	size_t n_kids;
	char **kids;
	/* 0: a key pair (the key in the token under key_id); 1: a public certificate, with no
	 * key object (key_id names none). */
	int is_public;
	/* The environments it is for, as the environments spell them, in name order (none:
	 * any). Filled by get; given to insert. */
	size_t n_environments;
	char **environments;
	/* Its tags as "key=value" (a key holds no '='), in key order. Filled by get and list;
	 * given to insert. */
	size_t n_tags;
	char **tags;
	/* A deleted certificate (read by the deleted-certificate reads only; else 0 and ""):
	 * when it was deleted, when its retention ends, and the access token name that deleted
	 * it. The JWKs the delete took off it are in kids then. */
	int64_t deleted_at;
	int64_t purge_after;
	char deleted_by[65];
};

/* Why a write was refused, for the message: the service whose domains a certificate does
 * not cover and those domains, the services using a certificate, or a version number. */
struct cv_conflict {
	char service[65];
	char detail[480];          /* a comma-separated list, cut with "..." when too long */
	int64_t version;
	int64_t when;              /* CV_ERR_NOT_YET_VALID: the certificate's start */
};

/* Frees a record; accepts NULL. */
void cv_store_cert_free(struct cv_cert_record *rec);

/* Inserts rec as a 'pending' row (rec->state is ignored), with its domains and its
 * environments (each must exist, else CV_ERR_UNKNOWN_ENVIRONMENT with its name in
 * conflict->detail; conflict may be NULL). Sets rec->id. Returns 0, CV_ERR_NAME_TAKEN (any
 * row of that name, whatever its state), CV_ERR_UNKNOWN_ENVIRONMENT or CV_ERR_DB. */
int cv_store_cert_insert_pending(struct cv_store *store, struct cv_cert_record *rec,
				 struct cv_conflict *conflict);
/* Makes a pending row active (an import's commit: audit records it), or a deleting row active
 * again (the undo of a delete whose key the token would not destroy). Returns 0,
 * CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_cert_activate(struct cv_store *store, int64_t id,
			   const struct cv_audit_entry *audit);
/* What happens to the JWKs linked to a certificate that is renewed, replaced or deleted. */
enum cv_jwk_action {
	CV_JWK_ACTION_NONE = 0,    /* none given: refused while JWKs are linked */
	CV_JWK_ACTION_UPDATE,      /* they follow the new version (renew and replace) */
	CV_JWK_ACTION_DISCONNECT,  /* they keep their content and lose the link */
	CV_JWK_ACTION_DELETE,      /* they go with the certificate (delete) */
};

/* Marks an active row 'deleting', unless services use it (CV_ERR_IN_USE with their names in
 * conflict->detail) or JWKs are linked to it and jwk_action is NONE (CV_ERR_JWK_CHOICE_REQUIRED
 * with their kids in conflict->detail). The choice (DELETE or DISCONNECT) is kept with the
 * row and carried out by cv_store_cert_remove. The mark is the delete's point of no return:
 * audit records the delete with it. Returns 0, those errors, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_cert_mark_deleting(struct cv_store *store, int64_t id,
				enum cv_jwk_action jwk_action, struct cv_conflict *conflict,
				const struct cv_audit_entry *audit);
/* Removes the row (any state), its domains and its versions, and deletes or disconnects its
 * JWKs as the mark said (disconnects when there was no mark). Writes no audit record: the
 * mark or the import's refusal did. Returns 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_cert_remove(struct cv_store *store, int64_t id);

/* Sets the description of an active row and bumps updated_at to now, with audit. Returns 0,
 * CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_cert_set_description(struct cv_store *store, const char *name,
				  const char *description, int64_t now,
				  const struct cv_audit_entry *audit);

/* An edit of an active certificate's metadata: each member set is changed, the others
 * kept. Strings borrowed. */
struct cv_cert_edit {
	const char *name;          /* NULL: kept; else the new name, which must be free */
	const char *description;   /* NULL: kept */
	int set_tags;              /* tags replaced by these ("key=value"; n 0: none) */
	size_t n_tags;
	char *const *tags;
	int set_environments;      /* environments replaced by these (n 0: any) */
	size_t n_environments;
	char *const *environments;
};
/* Fills entry->changes from the row as it was before an edit and the edit, under the
 * edit's lock (so the old values are the ones replaced). */
typedef void cv_store_edit_describe_fn(const struct cv_cert_record *old,
				       const struct cv_cert_edit *edit,
				       struct cv_audit_entry *entry, void *arg);
/* Applies edit to the active row name and bumps updated_at to now, with audit (its changes
 * filled by describe, when not NULL), in one transaction: every environment must exist
 * (CV_ERR_UNKNOWN_ENVIRONMENT, conflict->detail its name), and every service using the certificate must stay in one of them
 * (CV_ERR_ENVIRONMENT_NOT_ALLOWED, conflict->service and ->detail its environment); a new
 * name must be free (CV_ERR_NAME_TAKEN, whatever the other row's state); the JWKs linked to
 * it take the new name. *ret_old (NULL: not wanted) gets the row as it was before (its name,
 * description, environments and tags), the caller's. Returns 0, those, CV_ERR_NOT_FOUND or
 * CV_ERR_DB. */
int cv_store_cert_edit(struct cv_store *store, const char *name, const struct cv_cert_edit *edit,
		       int64_t now, struct cv_conflict *conflict,
		       struct cv_cert_record **ret_old, const struct cv_audit_entry *audit,
		       cv_store_edit_describe_fn *describe, void *describe_arg);

/* Reads the active row with this name, every field filled. Returns 0, CV_ERR_NOT_FOUND or
 * CV_ERR_DB; *ret_rec is the caller's. */
int cv_store_cert_get(struct cv_store *store, const char *name, struct cv_cert_record **ret_rec);
/* The same row without what other tables hold (its domains, services, environments, tags):
 * for a use of the certificate's key that needs only the row (a signature). */
int cv_store_cert_get_row(struct cv_store *store, const char *name,
			  struct cv_cert_record **ret_rec);

/* Calls fn for every row that is not active (pending or deleting) and not held as deleted
 * (soft delete, below) whose owner_node is this node, '', or a node whose heartbeat is older
 * than the lease (cv_store_node_set), each claimed for this node first: for the start-up
 * reconciler, while none of this node's writes is in flight. Stops and returns fn's value
 * when non-zero. */
int cv_store_cert_foreach_unsettled(struct cv_store *store,
				    int (*fn)(const struct cv_cert_record *rec, void *arg),
				    void *arg);
/* The same, at now, for rows of other nodes only (a running node's own are in flight). */
int cv_store_cert_foreach_abandoned(struct cv_store *store, int64_t now,
				    int (*fn)(const struct cv_cert_record *rec, void *arg),
				    void *arg);

/* The objects a scoped API token may touch (issue 18 part 3), as the lists and the checks
 * filter on them. Each dimension with no entries does not restrict. Certificate and service
 * patterns are lower-case globs (* and ? over the name characters), matched ignoring case;
 * environments are names, matched ignoring case. A certificate is inside the environments
 * when it names one of them (its environments) or a service of one of them uses it; a
 * service when its environment is one of them. */
#define CV_SCOPE_MAX 16
struct cv_scope_objects {
	size_t n_certificates;
	char certificates[CV_SCOPE_MAX][65];
	size_t n_services;
	char services[CV_SCOPE_MAX][65];
	size_t n_environments;
	char environments[CV_SCOPE_MAX][65];
};
/* Whether the certificate name (any state) is inside scope: 0 and *ret_inside 1 or 0;
 * CV_ERR_NOT_FOUND when the name patterns let it in but the environments must be judged and
 * no certificate has that name; CV_ERR_DB. */
int cv_store_cert_in_scope(struct cv_store *store, const char *name,
			   const struct cv_scope_objects *scope, int *ret_inside);
/* The environment of the service name. 0, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_store_service_environment(struct cv_store *store, const char *name, char ret_env[65]);
/* Whether the JWK kid is linked to a certificate inside scope (an unlinked JWK belongs to no
 * certificate: inside only a scope that restricts no certificate). 0 and *ret_inside;
 * CV_ERR_NOT_FOUND (no such kid), CV_ERR_DB. */
int cv_store_jwk_in_scope(struct cv_store *store, const char *kid,
			  const struct cv_scope_objects *scope, int *ret_inside);

/* Soft delete (issue 18 part 2). A deleted certificate keeps its row, its versions, tags,
 * domains and keys, hidden from every read of active certificates, its name taken, until it
 * is recovered or purged. */

/* Deletes the active row id softly, with the checks of cv_store_cert_mark_deleting (services
 * using it: CV_ERR_IN_USE; linked JWKs and no choice: CV_ERR_JWK_CHOICE_REQUIRED; names in
 * conflict->detail): in one transaction with audit, the row becomes deleted at now until
 * purge_after, by audit's actor, and the JWKs linked to it (active or superseded) are deleted
 * (jwk_action DELETE) or disconnected (else), each kept as it was for a recover. Returns 0,
 * those errors, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_cert_delete_soft(struct cv_store *store, int64_t id, enum cv_jwk_action jwk_action,
			      int64_t now, int64_t purge_after, struct cv_conflict *conflict,
			      const struct cv_audit_entry *audit);

/* Reads the deleted certificate name (ignoring case), every field filled, and the kids of
 * the JWKs its delete took off it in kids. Returns 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_deleted_get(struct cv_store *store, const char *name,
			 struct cv_cert_record **ret_rec);

/* A page of deleted certificates in name order after the name after ("" or NULL: from the
 * first), limit (1-1000) at most, with their deletion fields and tags. Returns 0,
 * CV_ERR_BAD_REQUEST (limit) or CV_ERR_DB; the page is the caller's
 * (cv_store_cert_page_free). */
struct cv_cert_page;
int cv_store_deleted_list(struct cv_store *store, const char *after, unsigned limit,
			  struct cv_cert_page **ret_page);

/* The names of the deleted certificates whose retention ended at or before now, at most max,
 * in purge_after order, into a new array (*ret NULL when none). Returns 0 or CV_ERR_DB. */
int cv_store_deleted_due(struct cv_store *store, int64_t now, size_t max, char ***ret,
			 size_t *ret_n);

/* What a recover did with one JWK its delete had taken off the certificate. */
struct cv_jwk_relink {
	char kid[65];
	int relinked;              /* 1: linked to the certificate again */
	const char *reason;        /* when not: why (static text) */
};
/* Fills entry->changes from what the recover did, under its lock. */
typedef void cv_store_recover_describe_fn(const struct cv_jwk_relink *jwks, size_t n,
					  struct cv_audit_entry *entry, void *arg);
/* Recovers the deleted row id, in one transaction with audit (its changes filled by describe
 * when not NULL): the row is active again as it was, and each JWK its delete took off it is
 * put back where it still can be (a deleted one whose kid no other row took, a disconnected
 * one still unlinked). *ret_jwks (n *ret_n) says what became of each, the caller's (free()).
 * Returns 0, CV_ERR_NOT_FOUND (no such deleted row) or CV_ERR_DB. */
int cv_store_cert_recover(struct cv_store *store, int64_t id, struct cv_jwk_relink **ret_jwks,
			  size_t *ret_n, const struct cv_audit_entry *audit,
			  cv_store_recover_describe_fn *describe, void *describe_arg);

/* The purge's point of no return: the deleted row id stops being held, with audit, and is
 * from then on a delete the next start finishes (cv_store_cert_foreach_unsettled) if the
 * purge does not. Returns 0, CV_ERR_NOT_FOUND (not a deleted row) or CV_ERR_DB. */
int cv_store_cert_purge_mark(struct cv_store *store, int64_t id,
			     const struct cv_audit_entry *audit);
/* Holds the row again: the undo of a purge whose key the token would not destroy. Returns
 * 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_cert_purge_unmark(struct cv_store *store, int64_t id);

/* The orders of the list; each ends on the name, unique, which makes a keyset cursor. */
enum cv_cert_sort {
	CV_SORT_NAME = 0,
	CV_SORT_VALID_TO,        /* not_after (expires_in sorts the same way) */
	CV_SORT_UPDATED_AT,
	CV_SORT_STATUS,          /* expired, expires soon, valid (all by not_after), upcoming */
};

/* A list query. Strings are borrowed. */
struct cv_cert_filter {
	int has_status;
	enum cv_status status;   /* judged at now with soon_seconds */
	unsigned status_mask;    /* several statuses: bit (1 << status) each; 0: has_status */
	enum cv_cert_sort sort;
	int desc;                /* descending order */
	/* The keyset cursor beyond after (the name): the sort key of the last row seen
	 * (not_after or updated_at) and for CV_SORT_STATUS its rank (1: upcoming). */
	int64_t after_key;
	int64_t after_rank;
	const char *environment; /* used by a service of this environment; NULL: any */
	const char *service;     /* used by this service; NULL: any */
	int64_t now;
	int64_t soon_seconds;
	const char *q;           /* substring of the name or of any domain, case-insensitive; NULL: any */
	int in_use;              /* -1: any; 1: used by a service; 0: used by none */
	const char *domain;      /* canonical DNS name: certificates naming it, or */
	const char *domain_wildcard; /* this wildcard of it (NULL: none); domain NULL: any */
	const char *tag_key;     /* certificates with this tag; NULL: any */
	const char *tag_value;   /* and this value; NULL: any value */
	const char *after;       /* keyset cursor: names strictly after this one; NULL: from the start */
	unsigned limit;          /* 1..1000 */
	int with_jwks;           /* also load each record's kids */
	const struct cv_scope_objects *scope; /* only certificates inside it; NULL: all */
};

/* One page of active rows ordered by name (cert_der and chain_pem NULL). */
struct cv_cert_page {
	size_t n;
	struct cv_cert_record **items;
	int has_more;            /* a next page exists; its cursor is items[n-1]->name */
};
void cv_store_cert_page_free(struct cv_cert_page *page);

/* Returns 0 and a page, or CV_ERR_DB. */
int cv_store_cert_list(struct cv_store *store, const struct cv_cert_filter *filter,
		       struct cv_cert_page **ret_page);
/* How many active rows the filter matches, the cursor aside. 0 or CV_ERR_DB. */
int cv_store_cert_list_total(struct cv_store *store, const struct cv_cert_filter *filter,
			     int64_t *ret_total);
/* The first moment after now at which an active certificate's status (cv_status_at with
 * soon_seconds) changes, into *ret_at; INT64_MAX when none ever does. Until then, with no
 * row written, which rows a status filter lists and how many stays the same. 0 or
 * CV_ERR_DB. */
int cv_store_cert_status_change(struct cv_store *store, int64_t now, int64_t soon_seconds,
				int64_t *ret_at);

struct cv_cert_counts {
	int64_t total;
	int64_t in_use;
	int64_t valid;
	int64_t expires_soon;
	int64_t expired;
	int64_t upcoming;
};
/* Counts active rows by status at now. */
int cv_store_cert_count(struct cv_store *store, int64_t now, int64_t soon_seconds,
			struct cv_cert_counts *ret_counts);
/* The same over the certificates inside scope only (in_use: those of them a service uses). */
int cv_store_cert_count_scoped(struct cv_store *store, int64_t now, int64_t soon_seconds,
			       const struct cv_scope_objects *scope,
			       struct cv_cert_counts *ret_counts);

/* Versions. */
enum cv_version_end {
	CV_END_NONE = 0,           /* the current version */
	CV_END_RENEWED = 1,
	CV_END_REPLACED = 2,
};
enum cv_key_state {
	CV_KEY_IN_TOKEN = 0,
	CV_KEY_DESTROYING = 1,
	CV_KEY_DESTROYED = 2,
};
struct cv_cert_version {
	int64_t version;
	char subject[512];
	char issuer[512];
	char serial[100];
	char sha256_fingerprint[96];
	char key_description[32];
	int64_t not_before;
	int64_t not_after;
	uint8_t key_id[CV_TOKEN_ID_LEN];
	char key_label[CV_KEY_LABEL_MAX + 1]; /* the CKA_LABEL its key really has ("" for a key
					       * from before labels per version: the
					       * certificate's name, never renamed since) */
	enum cv_key_state key_state;
	int64_t current_from;
	int64_t current_until;     /* 0 for the current version */
	enum cv_version_end ended_by;
};
/* Every version of the certificate with this id (any state), newest first: the current one,
 * then the superseded ones. Returns 0 (*ret_versions the caller's, free()), CV_ERR_NOT_FOUND
 * or CV_ERR_DB. */
int cv_store_cert_versions(struct cv_store *store, int64_t id,
			   struct cv_cert_version **ret_versions, size_t *ret_n);

/* What a renewal's update did with a linked JWK's successor. */
enum cv_jwk_fate {
	CV_JWK_SAME = 0,           /* the same kid: updated in place */
	CV_JWK_MADE,               /* a new JWK */
	CV_JWK_REACTIVATED,        /* this certificate's superseded JWK, active again */
	CV_JWK_ADOPTED,            /* an active JWK of the same key, linked here now */
};
/* The certificate (DER) and chain (PEM) of a superseded version of the certificate cert_id
 * (the current one is the certificate's row). Returns 0 (both the caller's),
 * CV_ERR_NOT_FOUND (no such superseded version) or CV_ERR_DB. */
int cv_store_cert_version_material(struct cv_store *store, int64_t cert_id, int64_t version,
				   unsigned char **ret_der, size_t *ret_len, char **ret_chain_pem);

/* A renewal or a replace: next becomes the current version of the certificate. */
struct cv_supersede {
	enum cv_version_end kind;  /* CV_END_RENEWED or CV_END_REPLACED */
	int64_t id;                /* the certificate */
	int64_t version;           /* the version it supersedes, which must be current */
	int destroy_old_key;       /* leave the old key 'destroying' for the caller to destroy */
	const struct cv_cert_record *next; /* certificate, chain, fields, domains, key_id */
	int64_t now;
	/* The JWKs linked to the certificate as the caller read them (kids), and its choice.
	 * With UPDATE, new_jwks[i] (public JSON, kid new_kids[i]) replaces linked[i]: in place
	 * when the kid is the same, else as a new active JWK, the old one superseded. */
	enum cv_jwk_action jwk_action;
	size_t n_linked;
	char (*linked)[65];
	char (*new_kids)[65];
	char *const *new_jwks;
	/* Filled by the commit (NULL: not wanted): what became of each new kid. A new kid that
	 * is already a JWK is taken over instead of made: one of this certificate that a
	 * renewal superseded is made active again (a rollback to an earlier key), an active
	 * one of the same key linked elsewhere or to nothing is linked here (a key published
	 * ahead, from the upcoming certificate that is now this one's). Another state is
	 * CV_ERR_NAME_TAKEN. */
	enum cv_jwk_fate *outcomes;
	const struct cv_audit_entry *audit; /* written by cv_store_cert_supersede; NULL: none */
	/* next's key was named in the key journal by this node: the commit refuses
	 * (CV_ERR_BUSY) when the journal row is no longer this node's (another node's
	 * reconciler took it over and destroys the key). */
	int journaled;
};
/* The checks of a supersede, in a read transaction, in this order: the certificate is active
 * (CV_ERR_NOT_FOUND); req->version is current (CV_ERR_ALREADY_RENEWED); a renewal needs a
 * service using it (CV_ERR_NOT_IN_USE); next is not the current certificate, nor for a
 * renewal any earlier one (CV_ERR_SAME_CERTIFICATE, conflict->version); next's domains cover
 * every domain of every service using it (CV_ERR_DOMAIN_NOT_COVERED, conflict->service and
 * detail); last, the JWKs linked to it are exactly req->linked and, when there are any, a
 * choice was made (else CV_ERR_JWK_CHOICE_REQUIRED, their kids in conflict->detail).
 * Returns 0 when all pass, or CV_ERR_DB. */
int cv_store_cert_supersede_check(struct cv_store *store, const struct cv_supersede *req,
				  struct cv_conflict *conflict);
/* Makes next the current version, in one write transaction that repeats every check above:
 * the old one goes into the versions (its key 'destroying' when asked), next's domains
 * replace the old ones, every service using the certificate uses next from then on, and the
 * journal row of next's key goes, and req->audit is appended. Returns 0 or the checks'
 * errors. */
int cv_store_cert_supersede(struct cv_store *store, const struct cv_supersede *req,
			    struct cv_conflict *conflict);

/* Pending certificates: a key pair generated in the token and the CSR signed with it,
 * waiting for the certificate a CA issues; for a new certificate (cert_id 0, its name held
 * against imports and other pending ones) or for the next version of one (cert_id). */
enum cv_pending_state {
	CV_PENDING_CREATING = 0,   /* the row names the key before it exists; no CSR yet */
	CV_PENDING_READY = 1,      /* the CSR is there */
	CV_PENDING_CANCELLING = 2, /* its key is being destroyed */
};
struct cv_pending_record {
	int64_t id;
	char name[65];
	int64_t cert_id;           /* 0: a new certificate */
	char *description;
	enum cv_pending_state state;
	uint8_t key_id[CV_TOKEN_ID_LEN];
	char key_type[16];         /* "p256", "rsa2048", ... */
	char key_label[CV_KEY_LABEL_MAX + 1];
	char subject[512];
	unsigned char *csr_der;    /* NULL while creating, and in lists */
	size_t csr_der_len;
	char created_by[65];
	int64_t created_at;
	int64_t expires_at;
};
void cv_store_pending_free(struct cv_pending_record *rec);
void cv_store_pending_array_free(struct cv_pending_record *recs, size_t n);
/* Inserts rec in state CREATING (its csr ignored); sets rec->id. A new certificate's name
 * must be free (no certificate, no pending one: CV_ERR_NAME_TAKEN); a renewal's certificate
 * must be active (CV_ERR_NOT_FOUND) with no renewal pending yet (CV_ERR_NAME_TAKEN).
 * Returns 0, those, or CV_ERR_DB. */
int cv_store_pending_insert(struct cv_store *store, struct cv_pending_record *rec);
/* Stores the CSR of a CREATING row and makes it READY, with audit. Returns 0,
 * CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_pending_ready(struct cv_store *store, int64_t id, const unsigned char *csr_der,
			   size_t csr_der_len, const struct cv_audit_entry *audit);
/* The READY row named name, CSR loaded. Returns 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_pending_get(struct cv_store *store, const char *name,
			 struct cv_pending_record **ret_rec);
/* Every READY row in name order (no CSRs), into a new array. 0 or CV_ERR_DB. */
int cv_store_pending_list(struct cv_store *store, struct cv_pending_record **ret_recs,
			  size_t *ret_n);
/* The active certificates' keys by origin (indexed by enum cv_key_origin). 0 or CV_ERR_DB. */
int cv_store_key_origin_counts(struct cv_store *store, int64_t ret_counts[3]);
/* How many rows are READY. */
int cv_store_pending_count(struct cv_store *store, int64_t *ret_n);
/* Marks a READY row CANCELLING (the point of no return of a cancel: audit records it).
 * Returns 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_pending_mark_cancelling(struct cv_store *store, int64_t id,
				     const struct cv_audit_entry *audit);
/* Removes the row whatever its state (its key is gone). 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_pending_remove(struct cv_store *store, int64_t id);
/* Calls fn for every READY row that expired at now, in id order (the expiry sweep). Stops
 * and returns fn's value when non-zero. */
int cv_store_pending_foreach_expired(struct cv_store *store, int64_t now,
				     int (*fn)(const struct cv_pending_record *rec, void *arg),
				     void *arg);
/* Calls fn for every row that is not READY (being created or cancelled) whose owner_node is
 * '' or a node whose heartbeat is older than the lease at now, or this node when mine (at
 * start, while none of its writes is in flight), in id order, each claimed for this node
 * first (the reconciler). Stops and returns fn's value when non-zero. */
int cv_store_pending_foreach_claimed(struct cv_store *store, int64_t now, int mine,
				     int (*fn)(const struct cv_pending_record *rec, void *arg),
				     void *arg);
/* The merge of a new certificate: in one transaction, the READY row pending_id goes and rec
 * (its key the row's) becomes an active certificate with its domains, with audit. Sets
 * rec->id. Returns 0, CV_ERR_NOT_FOUND (no such READY row) or CV_ERR_DB. */
int cv_store_pending_merge_new(struct cv_store *store, int64_t pending_id,
			       struct cv_cert_record *rec, const struct cv_audit_entry *audit);

/* The key journal: a key about to be created for a new version, named before it exists. */
int cv_store_key_journal_add(struct cv_store *store, const uint8_t *key_id, int64_t cert_id,
			     int64_t now);
/* Removes a journal row; 0 or CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_key_journal_remove(struct cv_store *store, const uint8_t *key_id);
/* Calls fn for every key the journal names that no certificate or version holds (keys a
 * crash left behind) whose owner_node is this node, '' or a node whose heartbeat is older
 * than the lease, each claimed for this node first, then for every superseded version whose
 * key is 'destroying' (in_journal 0): for the start-up reconciler. Stops and returns fn's
 * value when non-zero. */
int cv_store_keys_unsettled_foreach(struct cv_store *store,
				    int (*fn)(const uint8_t *key_id, int in_journal, void *arg),
				    void *arg);
/* The journal keys only, at now, of other nodes whose heartbeat is older than the lease (or
 * ''), each claimed for this node first: for a running node's reconciler. */
int cv_store_keys_abandoned_foreach(struct cv_store *store, int64_t now,
				    int (*fn)(const uint8_t *key_id, int in_journal, void *arg),
				    void *arg);
/* Records that a superseded version's key is gone from the token. */
int cv_store_version_key_destroyed(struct cv_store *store, const uint8_t *key_id);
/* Every key id a row still needs in the token (a certificate's, a version's whose key is not
 * destroyed, the journal's), sorted by memcmp order without repeats, into a new array the
 * caller frees (NULL when none). For the start-up search of key objects no row names. Returns
 * 0, CV_ERR_NOMEM or CV_ERR_DB. */
int cv_store_key_ids_needed(struct cv_store *store, uint8_t (**ret_ids)[CV_TOKEN_ID_LEN],
			    size_t *ret_n);

/* Services. */
#define CV_SERVICE_MAX_DOMAINS 100

struct cv_service_record {
	int64_t id;
	char name[65];
	char environment[65];
	char *description;
	size_t n_domains;
	char **domains;            /* canonical DNS names, in the order given */
	int64_t created_at;
	int64_t updated_at;
	/* The certificate it uses, when cert_name[0] != '\0'. */
	char cert_name[65];
	int64_t cert_version;
	char cert_serial[100];
	char cert_sha256_fingerprint[96];
	int64_t cert_not_before;
	int64_t cert_not_after;
	int64_t bound_at;
};
/* Frees a service record; accepts NULL. */
void cv_store_service_free(struct cv_service_record *svc);

/* Creates the service svc->name, or changes its environment, description and domains
 * (svc's other fields are ignored). The environment must exist, matched ignoring case and
 * stored as it spells itself (CV_ERR_UNKNOWN_ENVIRONMENT). A service in use keeps its
 * certificate, which must cover the new domains (CV_ERR_DOMAIN_NOT_COVERED, conflict
 * filled) and be for the new environment (CV_ERR_ENVIRONMENT_NOT_ALLOWED). *ret_created says
 * which. With audit. Returns 0, those errors or CV_ERR_DB. */
int cv_store_service_put(struct cv_store *store, const struct cv_service_record *svc,
			 int64_t now, int *ret_created, struct cv_conflict *conflict,
			 const struct cv_audit_entry *audit);
/* Reads a service. Returns 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_service_get(struct cv_store *store, const char *name,
			 struct cv_service_record **ret_svc);
/* Removes a service (and with it, its use of a certificate), with audit. 0,
 * CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_store_service_remove(struct cv_store *store, const char *name,
			    const struct cv_audit_entry *audit);
/* The service starts using the active certificate cert_name, with audit. The certificate
 * must have a key (CV_ERR_NO_PRIVATE_KEY), be valid at now (CV_ERR_NOT_YET_VALID,
 * conflict->when its start), be for the service's environment
 * (CV_ERR_ENVIRONMENT_NOT_ALLOWED, conflict->detail the environment) and cover the
 * service's domains (CV_ERR_DOMAIN_NOT_COVERED). Returns 0,
 * CV_ERR_NOT_FOUND (conflict->detail says "service" or "certificate"), those errors or
 * CV_ERR_DB. */
int cv_store_service_bind(struct cv_store *store, const char *name, const char *cert_name,
			  int64_t now, struct cv_conflict *conflict,
			  const struct cv_audit_entry *audit);
/* The service stops using its certificate, with audit. 0, CV_ERR_NOT_FOUND (conflict->detail
 * says "service" when there is none, "certificate" when it used none), CV_ERR_DB. */
int cv_store_service_unbind(struct cv_store *store, const char *name, int64_t now,
			    struct cv_conflict *conflict, const struct cv_audit_entry *audit);

struct cv_service_filter {
	const char *environment;   /* NULL: any; matched ignoring case */
	const char *certificate;   /* services using this certificate; NULL: any */
	const char *after;         /* keyset cursor */
	unsigned limit;            /* 1..1000 */
	const struct cv_scope_objects *scope; /* only services inside it; NULL: all */
};
struct cv_service_page {
	size_t n;
	struct cv_service_record **items;
	int has_more;
};
void cv_store_service_page_free(struct cv_service_page *page);
/* One page of services in name order. Returns 0, CV_ERR_BAD_REQUEST (limit) or CV_ERR_DB. */
int cv_store_service_list(struct cv_store *store, const struct cv_service_filter *filter,
			  struct cv_service_page **ret_page);

/* Environments: where services run (production, "Acceptance EU"). A service belongs to
 * one; a certificate may name those it is for. Names follow the name rule and are unique
 * ignoring case, keeping the case they were created with. */
struct cv_environment_record {
	int64_t id;
	char name[65];
	char *display_name;
	char *description;
	int64_t n_services;        /* services in it */
	int64_t n_certificates;    /* certificates naming it */
	int64_t created_at;
	int64_t updated_at;
};
void cv_store_environment_free(struct cv_environment_record *rec);
/* Frees an array of n records (their members, then the array). */
void cv_store_environments_free(struct cv_environment_record *recs, size_t n);
/* Creates the environment name (any case of an existing name changes that one), or
 * changes its display name and description, with audit. *ret_created says which;
 * ret_name (NULL: not wanted) gets its name as stored. 0 or CV_ERR_DB. */
int cv_store_environment_put(struct cv_store *store, const char *name,
			     const char *display_name, const char *description, int64_t now,
			     int *ret_created, char ret_name[65],
			     const struct cv_audit_entry *audit);
/* Reads one environment, its name matched ignoring case. 0, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_store_environment_get(struct cv_store *store, const char *name,
			     struct cv_environment_record **ret_rec);
/* At most limit (1..1000) environments in name order (ignoring case) after the name after
 * (NULL: from the first). 0 (*ret_recs the caller's), CV_ERR_BAD_REQUEST, CV_ERR_DB. */
int cv_store_environment_list(struct cv_store *store, const char *after, unsigned limit,
			      struct cv_environment_record **ret_recs, size_t *ret_n);
/* The same, only the environments inside scope (NULL: all). */
int cv_store_environment_list_scoped(struct cv_store *store, const char *after,
				     unsigned limit, const struct cv_scope_objects *scope,
				     struct cv_environment_record **ret_recs, size_t *ret_n);
/* Removes an environment nothing uses, with audit: CV_ERR_IN_USE when services are in it
 * (conflict->detail "services: a, b") or certificates name it ("certificates: x"). 0,
 * CV_ERR_IN_USE, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_store_environment_remove(struct cv_store *store, const char *name,
				struct cv_conflict *conflict, const struct cv_audit_entry *audit);

/* JWKs. */
enum cv_jwk_state {
	CV_JWK_ACTIVE = 1,         /* in the public JWKS */
	CV_JWK_SUPERSEDED = 2,     /* replaced by superseded_by when its certificate was renewed */
};
struct cv_jwk_record {
	char kid[65];             /* CV_JWK_KID_MAX characters at most */
	int64_t cert_id;           /* the certificate it is linked to; 0 when not linked */
	char cert_name[65];        /* the certificate it was made from (kept when unlinked) */
	int64_t cert_version;      /* and that certificate's version */
	char use[8];
	char alg[16];
	char *jwk;                 /* the public JWK as JSON text, owned */
	enum cv_jwk_state state;
	char superseded_by[65];    /* "" unless superseded */
	int64_t superseded_at;     /* when it was superseded; 0 unless superseded */
	int64_t created_at;
	int64_t updated_at;
};
void cv_store_jwk_free(struct cv_jwk_record *rec);
/* Frees an array of n records (their members, then the array). */
void cv_store_jwks_free(struct cv_jwk_record *recs, size_t n);

/* Adds an active JWK linked to the active certificate rec->cert_id, which must still be at
 * rec->cert_version, with audit. Returns 0, CV_ERR_NAME_TAKEN (that kid exists),
 * CV_ERR_NOT_FOUND (no such active certificate), CV_ERR_ALREADY_RENEWED (it moved on) or
 * CV_ERR_DB. */
int cv_store_jwk_insert(struct cv_store *store, const struct cv_jwk_record *rec,
			const struct cv_audit_entry *audit);
/* Reads one JWK. 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_jwk_get(struct cv_store *store, const char *kid, struct cv_jwk_record **ret_rec);
/* Removes one JWK, with audit. 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_jwk_remove(struct cv_store *store, const char *kid,
			const struct cv_audit_entry *audit);
/* The active JWKs, oldest first, or those linked to the certificate cert_id when it is not
 * 0. Returns 0 (*ret_recs the caller's), CV_ERR_DB. */
int cv_store_jwk_list(struct cv_store *store, int64_t cert_id, struct cv_jwk_record **ret_recs,
		      size_t *ret_n);
/* The JWKs of the public JWKS document at now: the active ones, and the superseded ones
 * superseded after now - retention (they stay published while tokens signed with them may
 * still be in flight), oldest first. *ret_next_change gets the first time after now at
 * which one of them leaves (INT64_MAX: none). 0 or CV_ERR_DB. */
int cv_store_jwk_published(struct cv_store *store, int64_t now, int64_t retention,
			   struct cv_jwk_record **ret_recs, size_t *ret_n,
			   int64_t *ret_next_change);

/* At most limit (1..1000) JWKs in kid order after the kid after (NULL: from the first),
 * whatever their state: those linked to the certificate cert_id, or every JWK (cert_id 0),
 * linked or not. *ret_n < limit: the last page. 0 (*ret_recs the caller's),
 * CV_ERR_BAD_REQUEST (limit) or CV_ERR_DB. */
int cv_store_jwk_page(struct cv_store *store, int64_t cert_id, const char *after,
		      unsigned limit, struct cv_jwk_record **ret_recs, size_t *ret_n);
/* The same, only the JWKs linked to a certificate inside scope (NULL: all). */
int cv_store_jwk_page_scoped(struct cv_store *store, int64_t cert_id, const char *after,
			     unsigned limit, const struct cv_scope_objects *scope,
			     struct cv_jwk_record **ret_recs, size_t *ret_n);

/* CRLs in the truststore: one per CA entry that issued it. */
struct cv_crl_record {
	int64_t id;
	int64_t trust_id;          /* the truststore entry of the CA that issued it */
	char alias[65];            /* that entry's alias (read back; ignored by the put) */
	unsigned char *crl_der;
	size_t crl_der_len;
	unsigned char *ca_der;     /* that CA's certificate: read by cv_store_crl_for_issuer */
	size_t ca_der_len;
	char issuer[512];          /* RFC 2253, as cv_x509_crl_info_get gives it */
	int64_t this_update;
	int64_t next_update;       /* 0: none */
	char number[64];           /* decimal, "" when none */
	int64_t n_revoked;
	char sha256[96];
	int64_t created_at;
};
/* Frees an array of n records. */
void cv_store_crls_free(struct cv_crl_record *recs, size_t n);
/* Stores rec as the CRL of truststore entry rec->trust_id, replacing the one it had, with
 * audit, in one transaction. Returns 0; CV_ERR_SAME_CERTIFICATE when the one held is as new
 * or newer (a this_update as late), conflict->detail its this_update in seconds;
 * CV_ERR_NOT_FOUND when the entry is gone; CV_ERR_DB. */
int cv_store_crl_put(struct cv_store *store, const struct cv_crl_record *rec,
		     struct cv_conflict *conflict, const struct cv_audit_entry *audit);
/* Every CRL, in the alias order of their CAs, without DER. 0 or CV_ERR_DB. */
int cv_store_crl_list(struct cv_store *store, struct cv_crl_record **ret_recs, size_t *ret_n);
/* The CRLs whose issuer is issuer, with their DER and their CA's (0 to several: CAs of one
 * name with different keys). 0 or CV_ERR_DB. */
int cv_store_crl_for_issuer(struct cv_store *store, const char *issuer,
			    struct cv_crl_record **ret_recs, size_t *ret_n);
/* Removes the CRL of the CA under alias, with audit. 0, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_store_crl_remove(struct cv_store *store, const char *alias,
			const struct cv_audit_entry *audit);

/* The truststore: CA certificates under an alias. */
struct cv_trust_record {
	int64_t id;
	char alias[65];
	unsigned char *cert_der;
	size_t cert_der_len;
	char subject[512];
	char issuer[512];
	char serial[100];
	char sha256_fingerprint[96];
	char key_description[32];
	int64_t not_before;
	int64_t not_after;
	char source[300];          /* "upload", or the URL it was fetched from */
	int64_t created_at;
};
/* Frees an array of n records. */
void cv_store_trust_free(struct cv_trust_record *recs, size_t n);
/* Adds every entry in one transaction with audit, or none: CV_ERR_NAME_TAKEN
 * (conflict->detail the alias), CV_ERR_SAME_CERTIFICATE (already trusted: conflict->detail the
 * alias it has). Returns 0, those, or CV_ERR_DB. */
int cv_store_trust_insert(struct cv_store *store, const struct cv_trust_record *recs, size_t n,
			  struct cv_conflict *conflict, const struct cv_audit_entry *audit);
/* One entry, or every entry in alias order (alias NULL). 0 (*ret_recs the caller's),
 * CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_trust_get(struct cv_store *store, const char *alias,
		       struct cv_trust_record **ret_recs, size_t *ret_n);
/* At most limit (1..1000) entries in alias order, from the one after the alias after (NULL:
 * from the first): a keyset page. *ret_n < limit: the last page. 0 (*ret_recs the
 * caller's), CV_ERR_BAD_REQUEST (limit) or CV_ERR_DB. */
int cv_store_trust_page(struct cv_store *store, const char *after, unsigned limit,
			struct cv_trust_record **ret_recs, size_t *ret_n);
/* At most limit (1..1001) entries in alias order after the alias after (NULL: from the
 * first) whose alias, subject, issuer, serial or SHA-256 fingerprint holds q (any case;
 * NULL: all), and *ret_total how many match q in all. 0 (*ret_recs the caller's),
 * CV_ERR_BAD_REQUEST (limit) or CV_ERR_DB. */
int cv_store_trust_search(struct cv_store *store, const char *q, const char *after,
			  unsigned limit, struct cv_trust_record **ret_recs, size_t *ret_n,
			  int64_t *ret_total);
/* Removes one entry, with audit. 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_trust_remove(struct cv_store *store, const char *alias,
			  const struct cv_audit_entry *audit);

/* API tokens. The secret is never stored: only its SHA-256. */
enum cv_role {
	CV_ROLE_ADMIN = 1,
	CV_ROLE_OPERATOR = 2,
	CV_ROLE_AUDITOR = 3,
};
#define CV_API_TOKEN_ID_LEN 16     /* hex digits of the public id */
#define CV_API_TOKEN_SCOPE_MAX 4096
struct cv_api_token {
	char id[CV_API_TOKEN_ID_LEN + 1];
	char name[65];
	enum cv_role role;
	uint8_t secret_hash[32];
	int64_t created_at;
	int64_t expires_at;        /* 0: never */
	int64_t revoked_at;        /* 0: not revoked */
	char scope[CV_API_TOKEN_SCOPE_MAX]; /* the scope as JSON text the vault wrote; "": none */
	int64_t last_used_at;      /* 0: never used (to the minute: see cv_store_api_token_seen) */
	char last_used_from[48];   /* the address it was last used from, "" when unknown */
};

/* One audit record as the caller gives it; the store numbers and chains it. Holds names,
 * outcomes and fingerprints only, never a secret. */
struct cv_audit_entry {
	int64_t at;
	char actor_id[CV_API_TOKEN_ID_LEN + 1]; /* "" when there is no token */
	char actor_name[65];       /* the token's name; "anonymous", or "certvaultd" itself */
	char action[48];           /* e.g. "certificate.import" */
	char target[200];          /* the name, kid, alias or id acted on; "" for none */
	int ok;                    /* 1: done; 0: refused or failed (error says why) */
	char error[40];            /* the API's error code, "" when ok */
	char request_id[33];
	char fingerprints[400];    /* SHA-256 fingerprints involved, space-separated */
	char source[48];           /* the client's address; "" for certvaultd itself */
	int64_t count;             /* attempts the record stands for: 1, or a repeat's count */
	int64_t first_at, last_at; /* a repeat: its first and last attempt; else 0 */
	char detail[400];          /* a checkpoint's facts, "key=value" words; else "" */
	char changes[2048];        /* what changed: a JSON object as text; "" says nothing */
};
#define CV_AUDIT_HASH_LEN 32
struct cv_audit_record {
	int64_t seq;               /* 1, 2, 3, ... */
	struct cv_audit_entry e;
	int keyed;                 /* hash is an HMAC keyed by the token; 0: a plain SHA-256
				      (before the chain was keyed) */
	int64_t link;              /* a keyed record's key: 0, the token's audit key itself;
				      N > 0, the link key N, which the token's key derives */
	uint8_t prev_hash[CV_AUDIT_HASH_LEN]; /* zeros for the first record */
	uint8_t hash[CV_AUDIT_HASH_LEN];
};

/* The audit chain's key. mac computes the HMAC of a record's 32-byte digest with the key
 * link names: 0, the token's audit key itself (a token call); N > 0, the link key N, which
 * the token's key derives from N (vault/audit.c: a token call the first time, then an HMAC
 * made in the process). It returns 0 or a cv_err such as CV_ERR_TOKEN_UNAVAILABLE. link (may
 * be NULL: 0) names the key new records are keyed with; an append asks it before it takes
 * the chain's head, so that the HMAC made while the writer lock is held needs no token call.
 * From the call on, every record appended is keyed, and verify checks keyed records with
 * mac. keyed_from is the first seq the key covers, as the token says (0: unknown): verify
 * refuses unkeyed records from there on. Call once, before the store is shared. Without a
 * key the store appends plain SHA-256 links, but only while the chain has no keyed record
 * (else CV_ERR_TOKEN_UNAVAILABLE), and only the fields the plain format covers (source,
 * count, first_at, last_at and detail are left empty). */
typedef int (*cv_store_mac_fn)(void *arg, int64_t link,
			       const uint8_t digest[CV_AUDIT_HASH_LEN],
			       uint8_t ret_mac[CV_AUDIT_HASH_LEN]);
typedef int64_t (*cv_store_link_fn)(void *arg);
void cv_store_audit_key(struct cv_store *store, cv_store_mac_fn mac, cv_store_link_fn link,
			void *arg, int64_t keyed_from);

/* Appends entry as the next record of the chain, in its own transaction. 0, CV_ERR_DB, or
 * the key's error (the token is unavailable: nothing is written). */
int cv_store_audit_append(struct cv_store *store, const struct cv_audit_entry *entry);

/* The newest record's seq (0: none) and whether any record is keyed. 0 or CV_ERR_DB. */
int cv_store_audit_last(struct cv_store *store, int64_t *ret_seq, int *ret_keyed);

/* A page of records, oldest first, seq > after, filtered: zero/empty fields match all. */
struct cv_audit_filter {
	int64_t after;             /* the last seq of the previous page */
	int64_t from, until;       /* at >= from, at < until (0: unbounded) */
	const char *actor;         /* actor_name or actor_id */
	const char *action;
	const char *target;
	int64_t limit;
};
/* 0 (*ret_recs the caller's, free()), CV_ERR_DB. */
int cv_store_audit_list(struct cv_store *store, const struct cv_audit_filter *filter,
			struct cv_audit_record **ret_recs, size_t *ret_n);

/* What a walk of the whole chain found. */
struct cv_audit_verdict {
	int64_t records;           /* records walked */
	int64_t first_bad;         /* 0 when the chain holds; else the first record that breaks */
	char reason[160];          /* why it breaks there */
	uint8_t head[CV_AUDIT_HASH_LEN]; /* the last record's hash: anchor it elsewhere to also
					    catch records cut off the end */
	int64_t first_seq;         /* the oldest record kept (0: none) */
	int64_t archived_through;  /* records up to this seq were archived (0: none) */
	int64_t keyed_from;        /* the first keyed record (0: none) */
	int64_t unkeyed;           /* records with a plain SHA-256 link (from before the key) */
};
/* Recomputes every record's hash in seq order: a record whose content was changed, one
 * missing (a gap in seq, or a prev_hash that is not the hash before it) or one added out of
 * turn is the first break; so is an unkeyed record after a keyed one or from the token's
 * keyed_from on, and a first record that no archive checkpoint accounts for. Keyed records
 * are checked with the key's mac. 0 (with the verdict), CV_ERR_DB, or the key's error (the
 * token is unavailable: nothing is claimed). */
int cv_store_audit_verify(struct cv_store *store, struct cv_audit_verdict *ret);
/* The hash rec should carry after prev_hash: the HMAC of its digest with the key rec->link
 * names when rec->keyed (CV_ERR_TOKEN_UNAVAILABLE without a key), else the plain SHA-256 of
 * records from before the key. 0 or the key's error. */
int cv_store_audit_seal(struct cv_store *store, const struct cv_audit_record *rec,
			uint8_t ret[CV_AUDIT_HASH_LEN]);
/* The unkeyed records' hash: SHA-256 over prev_hash and every field, each length-prefixed. */
void cv_store_audit_hash(const struct cv_audit_record *rec, uint8_t ret[CV_AUDIT_HASH_LEN]);

/* Calls fn for every record with seq <= through, oldest first, in one read transaction;
 * stops at fn's first non-zero value and returns it. 0, fn's value or CV_ERR_DB. */
int cv_store_audit_walk(struct cv_store *store, int64_t through,
			int (*fn)(const struct cv_audit_record *rec, void *arg), void *arg);
/* The newest seq with at < before (0: none). 0 or CV_ERR_DB. */
int cv_store_audit_seq_before(struct cv_store *store, int64_t before, int64_t *ret_seq);
/* Removes the records first..through once archived, in one transaction with checkpoint (the
 * record saying so): only when first is still the oldest record and through still carries
 * head (else CV_ERR_PRECONDITION: the chain changed since it was read, nothing is removed).
 * 0, CV_ERR_PRECONDITION, CV_ERR_DB or the key's error. */
int cv_store_audit_archive_commit(struct cv_store *store, int64_t first, int64_t through,
				  const uint8_t head[CV_AUDIT_HASH_LEN],
				  const struct cv_audit_entry *checkpoint);

/* Adds a token, and audit (may be NULL) in the same transaction. 0, CV_ERR_NAME_TAKEN (an
 * unrevoked token has the name), CV_ERR_DB. */
int cv_store_api_token_insert(struct cv_store *store, const struct cv_api_token *token,
			      const struct cv_audit_entry *audit);
/* One token by id, revoked or not. 0, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_store_api_token_get(struct cv_store *store, const char *id, struct cv_api_token *ret);
/* Every token, newest first. 0 (*ret_tokens the caller's, free()), CV_ERR_DB. */
int cv_store_api_token_list(struct cv_store *store, struct cv_api_token **ret_tokens,
			    size_t *ret_n);
/* Revokes a token at now, with audit (may be NULL) in the same transaction. 0,
 * CV_ERR_NOT_FOUND (unknown or already revoked), CV_ERR_DB. */
int cv_store_api_token_revoke(struct cv_store *store, const char *id, int64_t now,
			      const struct cv_audit_entry *audit);
/* Records that the token id was used at now from source, unless a use at or after
 * now - interval is recorded already: at most one write per token and interval, however
 * many requests come. 0 (written or not needed) or CV_ERR_DB. */
int cv_store_api_token_seen(struct cv_store *store, const char *id, int64_t now,
			    const char *source, int64_t interval);
/* How many tokens were ever made (revoked ones too). 0 or CV_ERR_DB. */
int cv_store_api_token_count(struct cv_store *store, int64_t *ret);

/* Console sessions: a browser's sign-in with an API token. Only the SHA-256 of the cookie's
 * secret is kept. */
#define CV_SESSION_ID_LEN 16       /* hex digits of the public id */
struct cv_session {
	char id[CV_SESSION_ID_LEN + 1];
	uint8_t secret_hash[32];
	char token_id[CV_API_TOKEN_ID_LEN + 1]; /* the API token it acts as */
	int64_t created_at;
	int64_t last_seen;         /* the last request, to a resolution the vault chooses */
	int64_t expires_at;        /* the absolute end */
};
/* Adds a session with audit (may be NULL) in one transaction, first removing sessions that
 * ended: expires_at <= now or last_seen < idle_cutoff. 0, CV_ERR_NAME_TAKEN (the id exists),
 * CV_ERR_DB. */
int cv_store_session_insert(struct cv_store *store, const struct cv_session *s, int64_t now,
			    int64_t idle_cutoff, const struct cv_audit_entry *audit);
/* One session by id. 0, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_store_session_get(struct cv_store *store, const char *id, struct cv_session *ret);
/* Moves last_seen forward to now. 0 (also when the session is gone), CV_ERR_DB. */
int cv_store_session_touch(struct cv_store *store, const char *id, int64_t now);
/* Removes a session, with audit (may be NULL) in the same transaction. 0, CV_ERR_NOT_FOUND,
 * CV_ERR_DB. */
int cv_store_session_delete(struct cv_store *store, const char *id,
			    const struct cv_audit_entry *audit);

/* Notifications (issue 18 part 1): channels, per-certificate rules, the outbox and its
 * delivery log, and the lease that names the one node that scans and sends. Lists (mail_to,
 * events, thresholds, contacts) are kept as JSON arrays, text the vault built. */
#define CV_NOTIFY_URL_MAX 1024
struct cv_notify_channel {
	char id[24];               /* "ch_" and 16 hex digits */
	char name[65];
	char kind[8];              /* "webhook", "email" */
	char url[CV_NOTIFY_URL_MAX + 1];
	char mail_from[256];       /* email */
	char mail_to[4096];        /* email: a JSON array of addresses */
	char username[256];        /* email: SMTP login, "" for none */
	char password_file[1024];  /* email: where the SMTP password is read at each send */
	unsigned char sealed[256]; /* webhook: the HMAC secret, sealed (never the secret) */
	size_t sealed_len;         /* 0: none */
	char events[1024];         /* a JSON array of event names it is sent */
	int64_t created_at;
	char created_by[65];
};
/* Adds a channel, with audit. 0, CV_ERR_NAME_TAKEN, CV_ERR_DB. */
int cv_store_notify_channel_insert(struct cv_store *store, const struct cv_notify_channel *ch,
				   const struct cv_audit_entry *audit);
/* One channel by id or name (any case). 0, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_store_notify_channel_get(struct cv_store *store, const char *id_or_name,
				struct cv_notify_channel *ret);
/* Every channel, name order (*ret the caller's, free()). 0, CV_ERR_DB. */
int cv_store_notify_channel_list(struct cv_store *store, struct cv_notify_channel **ret,
				 size_t *ret_n);
/* Removes a channel (by id) with audit; its deliveries still waiting end as failed ("the
 * channel was deleted"), and the log keeps them. 0, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_store_notify_channel_delete(struct cv_store *store, const char *id,
				   const struct cv_audit_entry *audit);
/* A certificate's notification rules: its thresholds (JSON array; "" for the default) and
 * contacts (JSON array). 0, CV_ERR_NOT_FOUND (no active certificate of that name), CV_ERR_DB.
 * ret_name (65 bytes) gets the name as the certificate spells it. */
int cv_store_cert_notify_get(struct cv_store *store, const char *name, char ret_name[65],
			     char *thresholds, size_t thresholds_len, char *contacts,
			     size_t contacts_len);
int cv_store_cert_notify_set(struct cv_store *store, const char *name, const char *thresholds,
			     const char *contacts, const struct cv_audit_entry *audit);
/* The expiry scan: for each active certificate whose end is near, the smallest of its
 * thresholds (days; its own, else default_thresholds, a JSON array) already crossed
 * (not_after - now <= days * 86400) gets one message per channel taking its event
 * (certificate.expired for 0, else certificate.expiring), once per (certificate version,
 * threshold, channel) however often it runs. *ret_added: messages added. 0, CV_ERR_DB. */
int cv_store_notify_scan(struct cv_store *store, const char *default_thresholds, int64_t now,
			 int64_t *ret_added);
/* The active certificates a truststore CRL could speak of (one from their issuer's name is
 * held), while a channel takes certificate.revoked and none was told of their version yet.
 * *ret the caller's (free()). 0, CV_ERR_DB. */
int cv_store_notify_crl_candidates(struct cv_store *store, char (**ret)[65], size_t *ret_n);
/* A message about the active certificate name's current version to every channel taking
 * event, once per dedup_key; detail: a JSON object as text, or "". */
int cv_store_notify_cert_event(struct cv_store *store, const char *name, const char *event,
			       const char *dedup_key, const char *detail, int64_t now,
			       int64_t *ret_added);
/* A message about something other than a certificate (token.unavailable...) to every
 * channel taking event, once per dedup_key. detail: a JSON object as text, or "". */
int cv_store_notify_event(struct cv_store *store, const char *event, const char *dedup_key,
			  const char *detail, int64_t now, int64_t *ret_added);
/* Takes or keeps the lease name for holder until now + ttl when it is free, expired or
 * already holder's. *ret_held: 1 when holder has it now. 0, CV_ERR_DB. */
int cv_store_lease(struct cv_store *store, const char *name, const char *holder, int64_t now,
		   int64_t ttl, int *ret_held);
/* One delivery (an outbox row). */
enum cv_delivery_state {
	CV_DELIVERY_PENDING = 0,
	CV_DELIVERY_DELIVERED = 1,
	CV_DELIVERY_FAILED = 2,
};
struct cv_notify_delivery {
	int64_t id;                /* the row, for paging */
	char delivery_id[40];      /* "dlv_" and 32 hex digits: the receiver's idempotency key */
	char channel_id[24];
	char channel_name[65];     /* "" once the channel was deleted */
	char event[40];
	char certificate[256];     /* "" for none */
	int64_t cert_version;
	int64_t threshold;         /* days; -1 for an event */
	char *payload;             /* JSON object as text (malloc'd) */
	enum cv_delivery_state state;
	int64_t attempts;
	int64_t next_attempt_at;
	int64_t created_at;
	int64_t delivered_at;
	char last_error[256];
};
void cv_notify_deliveries_free(struct cv_notify_delivery *d, size_t n);
struct cv_notify_filter {
	const char *channel;       /* id or name; NULL: any */
	const char *certificate;
	const char *event;
	int state;                 /* -1: any */
	int64_t before;            /* id < before (paging, newest first); 0: from the newest */
	int64_t limit;
};
int cv_store_notify_deliveries(struct cv_store *store, const struct cv_notify_filter *f,
			       struct cv_notify_delivery **ret, size_t *ret_n);
/* The deliveries due (pending, next_attempt_at <= now), oldest first, at most limit. */
int cv_store_notify_due(struct cv_store *store, int64_t now, int64_t limit,
			struct cv_notify_delivery **ret, size_t *ret_n);
/* One attempt of a delivery. */
struct cv_notify_attempt {
	int64_t n;
	int64_t started_at, finished_at;
	char outcome[16];          /* sending, delivered, failed, interrupted */
	char detail[256];
};
int cv_store_notify_attempts(struct cv_store *store, int64_t outbox_id,
			     struct cv_notify_attempt **ret, size_t *ret_n);
/* Records that an attempt of a pending delivery starts (outcome "sending"), before anything
 * is sent: a crash then leaves it to be found. *ret_n its number. CV_ERR_NOT_FOUND when the
 * delivery is no longer pending. */
int cv_store_notify_attempt_begin(struct cv_store *store, int64_t outbox_id, int64_t now,
				  int64_t *ret_n);
/* Records how attempt n ended and what follows: state DELIVERED, PENDING (again at
 * next_attempt_at) or FAILED (no more attempts). */
int cv_store_notify_attempt_end(struct cv_store *store, int64_t outbox_id, int64_t n,
				int64_t now, const char *outcome, const char *detail,
				enum cv_delivery_state state, int64_t next_attempt_at);
/* Attempts still "sending" (their sender died) become "interrupted"; their deliveries are
 * due again at once, with the same delivery id. *ret_n: how many. */
int cv_store_notify_interrupted(struct cv_store *store, int64_t now, int64_t *ret_n);
/* Prunes the log of deliveries: removes, with their attempts, at most limit delivered or
 * failed deliveries that ended before cutoff (no attempt finished since), but never one the
 * scan would write again if it were gone (an expiry or revocation message about a version
 * still in the database: its row is what makes it once). *ret_n: how many went. 0 or
 * CV_ERR_DB. */
int cv_store_notify_prune(struct cv_store *store, int64_t cutoff, int64_t limit,
			  int64_t *ret_n);
/* Backups (src/store/backup.c). A key a row needs in the token, and which row: "current"
 * (a certificate's current version), "version" (a superseded version whose key is kept),
 * "pending" (a key generated for a CSR) or "journal" (a key being created). */
struct cv_store_key_ref {
	uint8_t id[CV_TOKEN_ID_LEN];
	char name[65];                /* the certificate's ("" for a journal row without one) */
	int64_t version;              /* 0 when the row has none */
	char row[8];
	int64_t named_at;             /* when the row named the key (its last change, or when
					 the version became current); CV_TOKEN_NAMED_UNKNOWN */
};
typedef int (*cv_store_key_fn)(const struct cv_store_key_ref *ref, void *arg);
/* Calls fn for every key a row needs, in id order, in one read transaction; stops at fn's
 * first non-zero value and returns it. 0, fn's value or CV_ERR_DB. */
int cv_store_keys_foreach(struct cv_store *store, cv_store_key_fn fn, void *arg);
/* Copies the database file at path into dest (an empty file, or none) with SQLite's online
 * backup API, while other processes and connections write it: one read transaction, so the
 * copy holds every change committed before it began and nothing half-done. The copy is in
 * rollback-journal mode (one file) and made durable. 0 or CV_ERR_DB with err. */
int cv_store_backup_copy(const char *path, const char *dest, struct cv_errmsg *err);
/* Before a restore replaces the database file at path: makes it one file that no other
 * connection uses, its WAL checkpointed into it and WAL mode left (SQLite refuses that while
 * another connection, a running certvaultd's, has it open), so that no -wal of the old
 * database is left for the new file to inherit. Returns 0, CV_ERR_IN_USE (another process
 * has it open) or CV_ERR_DB (not a database, unreadable), with err. */
int cv_store_db_quiesce(const char *path, struct cv_errmsg *err);
/* What a database file holds, read without changing it (no migration). */
struct cv_store_backup_facts {
	int64_t schema_version;
	int64_t audit_records;
	int64_t audit_last_seq;
	int has_audit_head;
	uint8_t audit_head[CV_AUDIT_HASH_LEN];
	size_t n_keys;
	struct cv_store_key_ref *keys;    /* in id order */
};
/* 0 (release with cv_store_backup_facts_release) or CV_ERR_DB with err (unreadable, or not
 * of this schema). */
int cv_store_backup_facts(const char *path, struct cv_store_backup_facts *ret,
			  struct cv_errmsg *err);
void cv_store_backup_facts_release(struct cv_store_backup_facts *f);

#endif
