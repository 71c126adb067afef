/* store: what the files of src/store share. Not installed, not included outside src/store. */
#ifndef CERTVAULT_STORE_INTERNAL_H
#define CERTVAULT_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sqldb.h"

#include "certvault/store.h"

/* Enough for the HTTP thread pool's concurrent readers; writers queue on SQLite's own lock. */
#define STORE_POOL_SIZE 4

/* Prepared statements kept per connection. A borrow uses a handful; the list alone has a
 * few dozen SQL variants (one per combination of filters), of which the cache keeps the
 * ones in use. */
#define STORE_STMT_CACHE 32

struct store_cached_stmt {
	cvdb_stmt *stmt;        /* NULL: a free slot */
	uint64_t hash;             /* of its SQL text */
	uint64_t last_borrow;      /* the borrow of its connection that last used it */
};

/* A pooled connection with the statements it keeps prepared. Preparing is most of the cost
 * of a small read (parsing and planning the SQL), and a statement is bound to the
 * connection that prepared it, so each connection keeps its own. */
struct store_conn {
	cvdb *db;
	struct store_cached_stmt stmts[STORE_STMT_CACHE];
	uint64_t borrows;          /* how many times it was handed out, the current one included */
	int jwks_changed;          /* set by the update hook when a jwks row changed */
	int certs_changed;         /* ... and when a certificates row did */
	int tokens_changed;        /* ... and when an api_tokens row did */
	uint64_t commit_seq;       /* the number of its last commit not yet known durable; 0:
				      none (store_return waits for it, see wal_sync_wait) */
	struct cv_store *store;
};

struct cv_store {
	enum cvdb_kind kind;
	/* The SQLite file, or PostgreSQL's host:port/dbname (cv_store_target): what messages
	 * name, never a password. */
	char target[320];
	/* PostgreSQL: what the generations read when the database did not answer, with the top
	 * bit set, so that no cache takes a failed read for "nothing changed". */
	atomic_uint_fast64_t generation_failures;
	pthread_mutex_t lock;
	pthread_cond_t returned;
	struct store_conn conns[STORE_POOL_SIZE];
	struct store_conn *idle[STORE_POOL_SIZE]; /* a stack of n_idle connections nobody borrowed */
	unsigned n_idle;
	unsigned n_open;
	/* Bumped when a connection that changed a jwks row is returned, i.e. after its
	 * transaction ended: a reader that sees the new value then sees the change too. */
	atomic_uint_fast64_t jwks_generation;
	/* The same for rows of certificates (a current version written, a row removed). */
	atomic_uint_fast64_t certs_generation;
	/* The same for API tokens. */
	atomic_uint_fast64_t tokens_generation;
	/* The audit chain's key (cv_store_audit_key): set before the store is shared. */
	cv_store_mac_fn audit_mac;
	cv_store_link_fn audit_link;
	void *audit_mac_arg;
	int64_t audit_keyed_from;
	/* Several nodes (nodes.c, cv_store_node_set): this process's node name, written as the
	 * owner of its writes in flight ('' until set), the lease after which a silent node's
	 * rows are anyone's, and its nodes row's started_at (0: not registered). Set before the
	 * store is shared. */
	char node[64];
	int64_t node_lease;
	int64_t node_started_at;
	/* Group commit (db.c, wal_sync_wait). Connections commit with synchronous=NORMAL, so a
	 * COMMIT writes its WAL frames and releases the write lock without an fsync; the
	 * connection is given back only once an fdatasync of the WAL that began after the
	 * commit has returned. Commits are numbered in the WAL hook; one thread at a time
	 * syncs, for every commit numbered before it began, so commits that land while a sync
	 * runs share the next one. Guarded by sync_lock. */
	pthread_mutex_t sync_lock;
	pthread_cond_t synced_cond;   /* synced moved, or the syncing thread gave up its turn */
	uint64_t committed;           /* commits made (the last number handed out) */
	uint64_t synced;              /* every commit numbered up to this is on disk */
	int syncing;                  /* a thread is in the WAL's fdatasync */
	atomic_uint_fast64_t wal_syncs; /* fdatasyncs of the WAL made for commits */
	/* PostgreSQL: the listener for other nodes' changes (pgwatch.c); NULL on SQLite. */
	struct store_watch *watch;
	/* The checkpointer (db.c): a thread with its own connection that copies the WAL back
	 * into the database once writes pause (or the WAL grows past a bound), so that readers
	 * after a burst of writes read the database file instead of looking every page up in a
	 * long WAL. Woken through ckpt_cond under sync_lock. */
	pthread_cond_t ckpt_cond;
	sqlite3 *ckpt_db;            /* SQLite only */
	pthread_t ckpt_thread;
	int ckpt_started;
	int ckpt_stopping;
	int wal_frames;               /* frames in the WAL after the last commit (the WAL hook) */
	uint64_t checkpointed;        /* every commit numbered up to this is in the database file */
	atomic_uint_fast64_t checkpoints; /* complete checkpoints made */
};

/* The generations, in the order of store_generations' columns as pgwatch.c and db.c read
 * them (certs, jwks, tokens). */
#define STORE_GENERATIONS 3
#define STORE_GENERATIONS_SQL "SELECT certs, jwks, tokens FROM store_generations"
atomic_uint_fast64_t *store_generation(struct cv_store *store, unsigned which);

/* PostgreSQL: other nodes' changes (pgwatch.c). store_watch_start opens the listener's
 * connection (conninfo as the pool's) and starts its thread; store_watch_stop ends both and is
 * a no-op on a store without one. store_watch_current: 1 when the process's generations are
 * known to hold every commit PostgreSQL has told this node of, so they can be handed out
 * without asking the database. store_watch_note: the database's numbers as a read found
 * them; moves the process's generations when they moved. */
int store_watch_start(struct cv_store *store, const char *conninfo, struct cv_errmsg *err);
void store_watch_stop(struct cv_store *store);
int store_watch_current(struct cv_store *store);
/* Whether the listener is listening and made a round trip less than 2 s ago (what the
 * metrics show; store_watch_current adds what a moment's reader must also check). */
int store_watch_listening(struct cv_store *store);
void store_watch_note(struct cv_store *store, const uint64_t numbers[STORE_GENERATIONS]);

/* The connection this thread borrowed (NULL: none): a caller never holds two at once, so
 * code handed only a cvdb * (store_audit_append_on) finds its store through it. */
extern _Thread_local struct store_conn *store_current_conn;

/* Waits for an idle connection and hands it out; store_return gives it back, resetting the
 * cached statements it used. A caller never holds two at once, so the pool cannot deadlock
 * on itself. */
struct store_conn *store_borrow(struct cv_store *store);
void store_return(struct cv_store *store, struct store_conn *conn);

/* The connection's prepared statement for sql, prepared on first use and kept: the caller
 * must not finalize it. It is handed out reset with no bindings, and is the caller's until it
 * asks for the same SQL again or returns the connection. Bound text and blobs may be
 * SQLITE_STATIC: the bindings are cleared on return. 0 or CV_ERR_DB. */
int store_prepare(struct store_conn *conn, const char *sql, cvdb_stmt **ret_stmt);

/* A read transaction with cached BEGIN and COMMIT: one snapshot for several statements.
 * store_read_end ends it whatever r is and returns r (or COMMIT's failure). */
int store_read_begin(struct store_conn *conn);
int store_read_end(struct store_conn *conn, int r);

/* A scope's conditions (scope.c), each " AND ..." (or "" when scope is NULL or does not
 * restrict that kind) into buf, naming :scN, :ssN and :seN: on the columns name and id of
 * certificates; on <alias>name and <alias>environment of services; on an environment name
 * column. store_scope_bind binds those a statement names. 0 or CV_ERR_INTERNAL (no room). */
int store_scope_cert_where(const struct cv_scope_objects *scope, char *buf, size_t len);
int store_scope_service_where(const struct cv_scope_objects *scope, const char *alias,
			      char *buf, size_t len);
int store_scope_environment_where(const struct cv_scope_objects *scope, const char *column,
				  char *buf, size_t len);
int store_scope_bind(cvdb_stmt *stmt, const struct cv_scope_objects *scope);

/* Converts a SQLite result code at the border: every failure is CV_ERR_DB. */
int store_err(int rc);

/* Runs a statement without parameters or rows (BEGIN, COMMIT, ROLLBACK). 0 or CV_ERR_DB. */
int store_exec(cvdb *db, const char *sql);

/* Ends a transaction: COMMIT when r is 0 (returning COMMIT's outcome), else ROLLBACK
 * (returning r unchanged). */
int store_finish(cvdb *db, int r);

/* Column readers for NOT NULL columns: a pointer into the row, a copy into a fixed field
 * (CV_ERR_DB when it does not fit), a malloc'd copy. */
int store_column_text(cvdb_stmt *stmt, int col, const char **ret);
int store_copy_text(cvdb_stmt *stmt, int col, char *dst, size_t size);
int store_dup_text(cvdb_stmt *stmt, int col, char **ret);
/* Steps a query that gives one row: 0 on the row, CV_ERR_NOT_FOUND when none, or CV_ERR_DB. */
int store_step_one(cvdb_stmt *stmt);
/* Runs one statement without rows, ?1..?n bound in order to the int64_t ('i') and text
 * ('t') arguments kinds names. 0 or CV_ERR_DB. */
int store_run(cvdb *db, const char *sql, const char *kinds, ...);
/* Binds s (NULL as ""), borrowed until the statement is reset. */
int store_bind_text(cvdb_stmt *stmt, int idx, const char *s);

/* Room for element n of the array arr (cap elements of size bytes): arr itself while it has
 * room, else arr grown (doubled, at least 8 elements), *cap updated; NULL when out of memory
 * (arr is then untouched). */
/* %q% for LIKE ... ESCAPE '\', so that %, _ and \ in q match themselves (malloc'd; NULL
 * when out of memory). */
char *store_like_pattern(const char *q);
void *store_grow(void *arr, size_t *cap, size_t n, size_t size);

/* Reads the text column 0 of every row stmt gives with ?1 = id into a new array (*ret NULL
 * when none); resets stmt for the next id. */
int store_load_strings(cvdb_stmt *stmt, int64_t id, char ***ret, size_t *ret_n);
void store_strings_free(char **v, size_t n);
/* Runs sql (?1 = id, ?2 = position, ?3 = the string) once for each of v, in order. */
int store_insert_strings(cvdb *db, const char *sql, int64_t id, char *const *v, size_t n);

/* Adds an item to c->detail's list, after sep (", " for store_conflict_append), ending it
 * with "..." when full. */
void store_conflict_append_sep(struct cv_conflict *c, const char *item, const char *sep);
void store_conflict_append(struct cv_conflict *c, const char *item);
/* 0 when names cover every one of domains; else CV_ERR_DOMAIN_NOT_COVERED with the service
 * and the domains left uncovered in c. */
int store_check_covered(char *const *names, size_t n_names, char *const *domains,
			size_t n_domains, const char *service, struct cv_conflict *c);

/* JWK rows on a connection the caller holds (inside its transaction): the insert of
 * cv_store_jwk_insert without its checks, and the list of cv_store_jwk_list. */
int store_jwk_insert_on(cvdb *db, const struct cv_jwk_record *rec);
int store_jwk_list_on(cvdb *db, int64_t cert_id, struct cv_jwk_record **ret_recs,
		      size_t *ret_n);

/* Appends an audit record inside the caller's write transaction (entry may be NULL: then
 * nothing). 0 or CV_ERR_DB: the caller then rolls its change back with it. */
int store_audit_append_on(cvdb *db, const struct cv_audit_entry *entry);
/* notify.c: the outbox rows of the change entry records (record seq), when it is one that
 * channels are told of (an import, renew, replace, delete done); on the caller's transaction.
 * 0 or CV_ERR_DB. */
int store_notify_audit_on(cvdb *db, const struct cv_audit_entry *entry, int64_t seq);
/* Marks the unsent messages of a purge of cert_id failed ("the purge was undone"), on db in
 * the caller's transaction. Returns 0 or CV_ERR_DB. */
int store_notify_purge_cancel_on(cvdb *db, int64_t cert_id);
/* Rewrites, from their DER, the distinguished names of the rows listed in the table
 * dn_refresh (an older release escaped UTF-8), then drops it; nothing when it is absent.
 * One transaction. 0 or CV_ERR_DB. */
int store_dn_refresh(cvdb *db);

/* Environments on a connection the caller holds (inside its transaction). resolve: the
 * environment named (ignoring case) as it spells itself and its id (either NULL: not
 * wanted), or CV_ERR_UNKNOWN_ENVIRONMENT. environments_set: the certificate is for exactly
 * names (CV_ERR_UNKNOWN_ENVIRONMENT with the name in c->detail). environments_on: the names
 * a certificate is for. allows_environment: 0 when the certificate names no environment or
 * names environment, else CV_ERR_ENVIRONMENT_NOT_ALLOWED. */
int store_environment_resolve_on(cvdb *db, const char *name, char ret_name[65],
				 int64_t *ret_id);
int store_cert_environments_set_on(cvdb *db, int64_t cert_id, char *const *names, size_t n,
				   struct cv_conflict *c);
int store_cert_environments_on(cvdb *db, int64_t cert_id, char ***ret, size_t *ret_n);
int store_cert_allows_environment_on(cvdb *db, int64_t cert_id, const char *environment);
/* certs.c: 1 when a certificate or a pending certificate holds the name, 0 when none does,
 * or CV_ERR_DB. */
int store_name_exists(cvdb *db, const char *name);
/* Inserts rec as a row in state with its domains, environments and tags, on the caller's
 * transaction; *ret_id its id. 0, CV_ERR_UNKNOWN_ENVIRONMENT (in conflict) or CV_ERR_DB. */
int store_cert_insert_on(cvdb *db, const struct cv_cert_record *rec, int state,
			 int64_t *ret_id, struct cv_conflict *conflict);

/* nodes.c: the condition that the owner_node column of a row (alias.owner_node) lets this
 * node take it over, as SQL text naming ?me (this node), ?stale (heartbeats at or before it
 * are gone) and ?mine (1: this node's own rows too, at start; 0: only others'). */
#define STORE_CLAIMABLE(col, me, stale, mine)                                             \
	"((" col " = " me " AND " mine " = 1) OR (" col " <> " me " AND (" col " = '' OR"   \
	" NOT EXISTS (SELECT 1 FROM nodes WHERE nodes.name = " col " AND nodes.heartbeat_at"  \
	" > " stale "))))"
/* The heartbeats at or before this instant are gone (now minus the lease). */
int64_t store_node_stale_before(const struct cv_store *store, int64_t now);
/* This node's name ('' when none was set). */
const char *store_node(const struct cv_store *store);
/* Steps an UPDATE ... RETURNING id (the rows a claim took) to its end; the ids, in increasing
 * order, into a new array (NULL when none). 0, CV_ERR_NOMEM or CV_ERR_DB. */
int store_claimed_ids(cvdb_stmt *stmt, int64_t **ret_ids, size_t *ret_n);

/* The domains of a certificate and of a service, in order (?1 = its id). */
#define STORE_CERT_DOMAINS_SQL \
	"SELECT domain FROM certificate_domains WHERE cert_id = ? ORDER BY position"
#define STORE_SERVICE_DOMAINS_SQL \
	"SELECT domain FROM service_domains WHERE service_id = ? ORDER BY position"


/* The columns a certificate record is read from, in the order store_cert_read_row expects;
 * list results leave out the FULL ones, which include the large ones. */
#define STORE_CERT_COLS_LIST                                                             \
	"id, name, description, state, subject, issuer, serial, sha256_fingerprint, "   \
	"key_description, primary_domain, not_before, not_after, key_id, created_at, "  \
	"updated_at, version, current_since, key_origin,"                                 \
	" coalesce(nullif(key_label, ''), name), has_key"
#define STORE_CERT_COLS_FULL                                                             \
	STORE_CERT_COLS_LIST ", cert_der, chain_pem, created_by, updated_by, "              \
			     "revocation_status, revocation_source, revocation_detail, "     \
			     "revocation_checked_at"
/* Reads the current row (STORE_CERT_COLS_LIST, then the FULL ones when full) into a new
 * record. 0, CV_ERR_NOMEM or CV_ERR_DB. */
int store_cert_read_row(cvdb_stmt *stmt, int full, struct cv_cert_record **ret_rec);
/* The refusals a delete (soft or not) checks under its write lock: services using id
 * (CV_ERR_IN_USE), linked active JWKs without a choice (CV_ERR_JWK_CHOICE_REQUIRED); their
 * names in conflict->detail. 0 when neither. */
int store_delete_checks_on(cvdb *db, int64_t id, enum cv_jwk_action jwk_action,
			   struct cv_conflict *conflict);

#endif
