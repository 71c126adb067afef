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
 * pending or deleting row still holds its name. */
#ifndef CERTVAULT_STORE_H
#define CERTVAULT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "certvault/error.h"
#include "certvault/token.h"
#include "certvault/x509.h"

struct cv_store;

/* Opens (creating if needed) the database at path and migrates it to the current schema.
 * Returns 0 or CV_ERR_DB with a message naming the file and SQLite's reason. */
int cv_store_open(const char *path, struct cv_store **ret_store, struct cv_errmsg *err);
/* Closes every connection. Accepts NULL. */
void cv_store_free(struct cv_store *store);

/* Runs a trivial query; 0 when the database answers, else CV_ERR_DB. */
int cv_store_ping(struct cv_store *store);

enum cv_cert_state {
	CV_CERT_PENDING = 0,
	CV_CERT_ACTIVE,
	CV_CERT_DELETING,
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
};

/* Frees a record; accepts NULL. */
void cv_store_cert_free(struct cv_cert_record *rec);

/* Inserts rec as a 'pending' row (rec->state is ignored), with its domains. Sets rec->id.
 * Returns 0, CV_ERR_NAME_TAKEN (any row of that name, whatever its state) or CV_ERR_DB. */
int cv_store_cert_insert_pending(struct cv_store *store, struct cv_cert_record *rec);
/* Makes a pending row active, or a deleting row active again (the undo of a delete whose key
 * the token would not destroy). Returns 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_cert_activate(struct cv_store *store, int64_t id);
/* Marks an active row 'deleting'. Returns 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_cert_mark_deleting(struct cv_store *store, int64_t id);
/* Removes the row (any state) and its domains. Returns 0, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_store_cert_remove(struct cv_store *store, int64_t id);

/* Sets the description of an active row and bumps updated_at to now. */
int cv_store_cert_set_description(struct cv_store *store, const char *name,
				  const char *description, int64_t now);

/* Reads the active row with this name, every field filled. Returns 0, CV_ERR_NOT_FOUND or
 * CV_ERR_DB; *ret_rec is the caller's. */
int cv_store_cert_get(struct cv_store *store, const char *name, struct cv_cert_record **ret_rec);

/* Calls fn for every row that is not active (pending or deleting), for the start-up
 * reconciler. Stops and returns fn's value when non-zero. */
int cv_store_cert_foreach_unsettled(struct cv_store *store,
				    int (*fn)(const struct cv_cert_record *rec, void *arg),
				    void *arg);

/* A list query. Strings are borrowed. */
struct cv_cert_filter {
	int has_status;
	enum cv_status status;   /* judged at now with soon_seconds */
	int64_t now;
	int64_t soon_seconds;
	const char *q;           /* substring of the name or of any domain, case-insensitive; NULL: any */
	const char *after;       /* keyset cursor: names strictly after this one; NULL: from the start */
	unsigned limit;          /* 1..1000 */
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

struct cv_cert_counts {
	int64_t total;
	int64_t valid;
	int64_t expires_soon;
	int64_t expired;
	int64_t upcoming;
};
/* Counts active rows by status at now. */
int cv_store_cert_count(struct cv_store *store, int64_t now, int64_t soon_seconds,
			struct cv_cert_counts *ret_counts);

#endif
