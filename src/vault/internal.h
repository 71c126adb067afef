/* vault: what the files of src/vault share. Not included outside src/vault. */
#ifndef CERTVAULT_VAULT_INTERNAL_H
#define CERTVAULT_VAULT_INTERNAL_H

#include <pthread.h>

#include <jansson.h>

#include "certvault/vault.h"

/* How many certificates' details are kept (a few KiB each). */
#define VAULT_INFO_CACHE_SLOTS 1024

/* The last JWKS document served, valid while the store's JWK generation is still gen. */
struct vault_jwks_cache {
	pthread_mutex_t lock;
	int valid;
	uint64_t gen;
	int64_t until;             /* valid before this time only: a superseded JWK leaves then */
	char *text;
	size_t len;
	char tag[65];
};

/* The list's totals by filter, valid while the store's certificate generation and the
 * second (statuses move with the clock) are what they were: a poller paging through, or
 * many asking for the same first page, count once a second, not once a request. */
#define VAULT_TOTALS 16
struct vault_totals_cache {
	pthread_mutex_t lock;
	unsigned next;
	struct {
		int valid;
		uint64_t gen;
		int64_t now;
		int64_t total;
		char key[1400];
	} slots[VAULT_TOTALS];
};

/* Answers kept as the exact bytes sent, with their ETag (the list's pages, certificates'
 * details): each under its key (everything it depends on besides the data and the clock),
 * good while the certificate generation is gen, from the second it was made in (from) until
 * the first at which the clock alone could change it (until), and while the keys it shows
 * are as it judged them (key_missing). At most VAULT_ANSWER_MAX bytes each; the slots are
 * replaced in turn. */
#define VAULT_ANSWER_MAX (512 * 1024)
struct vault_answer_key {
	uint8_t id[CV_TOKEN_ID_LEN];
	int64_t named_at;
	unsigned char is_public, missing;
};
struct vault_answer {
	int valid;
	uint64_t gen;
	int64_t from, until;
	char *key;
	char *text;
	size_t len;
	char etag[64];
	struct vault_answer_key *keys;
	size_t n_keys;
};
struct vault_answers {
	pthread_mutex_t lock;
	unsigned next, n;
	struct vault_answer *slots;
};

/* The list's pages (cv_vault_list_memo_get). status_change (under answers.lock): the first
 * moment after from at which any active certificate's status changes
 * (cv_store_cert_status_change), while the certificate generation is gen. */
#define VAULT_PAGES 16
struct vault_pages_cache {
	struct vault_answers answers;
	struct vault_answer slots[VAULT_PAGES];
	struct {
		int valid;
		uint64_t gen;
		int64_t from, at;
	} status_change;
};

/* Certificates' details (cv_vault_details_memo_get): more of them, as API clients read many
 * certificates each. */
#define VAULT_DETAILS 64
struct vault_details_cache {
	struct vault_answers answers;
	struct vault_answer slots[VAULT_DETAILS];
};

/* The public keys of the certificates that sign for clients (sign.c), by the certificate's
 * SHA-256 fingerprint: content-addressed, so never stale. Parsing a certificate is most of
 * a signature's cost outside the token (OpenSSL 3 decodes its key through the providers). */
#define VAULT_PUBKEYS 64
struct vault_pubkey_cache {
	pthread_mutex_t lock;
	unsigned next;
	struct {
		char fingerprint[96];
		EVP_PKEY *pkey;
	} slots[VAULT_PUBKEYS];
};

/* The API tokens requests authenticate with, by id, as the store last gave them, valid while
 * the store's token generation is what it was when read (a revocation, on any node, moves
 * it) and within the second it was read in (what no generation sees, a row written behind
 * the process's back, is seen a second later at most). Spares the database a read per
 * request (a round trip on PostgreSQL). */
#define VAULT_TOKENS 64
struct vault_tokens_cache {
	pthread_mutex_t lock;
	unsigned next;
	struct {
		int valid;
		uint64_t gen;
		int64_t now;
		struct cv_api_token t;
	} slots[VAULT_TOKENS];
};

struct vault_caches {
	struct vault_pubkey_cache pubkeys;
	struct vault_tokens_cache tokens;
	struct vault_totals_cache totals;
	struct vault_pages_cache pages;
	struct vault_details_cache details;
	struct cv_x509_info_cache *info;
	struct vault_jwks_cache jwks;
};

/* The message of a write the store refused (r < 0): what, unless the token made it fail,
 * since every change's audit record is keyed in the token. Returns r. */
int vault_write_errmsg(struct cv_errmsg *err, int r, const char *what);
/* The actor an API token row is (its scope read back). 0, or CV_ERR_DB (err set) when its
 * scope cannot be read: the token is refused rather than used without its limits. */
int vault_actor_of_token(const struct cv_api_token *t, struct cv_actor *ret,
			 struct cv_errmsg *err);

/* The API token row with id (cv_store_api_token_get's answers) for a request at now, from
 * the vault's copy while it holds (struct vault_tokens_cache), else from the store (and
 * kept). */
int vault_token_get(struct cv_vault *v, const char *id, int64_t now, struct cv_api_token *ret);

/* The name rule, with the one message every use case gives for it. */
int vault_check_name(const char *name, struct cv_errmsg *err);

/* The record a change writes with itself: a marked done (NULL when a is NULL). */
const struct cv_audit_entry *vault_audit_done(struct cv_audit *a);
/* After the store call that carried vault_audit_done(a): r 0 means the record was written. */
void vault_audit_written(struct cv_audit *a, int r);
/* Sets what the record says changed (entry->changes) from changes, a JSON object it steals
 * (NULL: nothing). A text too long for the record says {"truncated": true} instead. */
void vault_audit_entry_changes(struct cv_audit_entry *entry, json_t *changes);
/* The same on a request's record; a may be NULL. */
void vault_audit_changes(struct cv_audit *a, json_t *changes);
/* {"old": old, "new": new} (both stolen), or NULL when out of memory. */
json_t *vault_audit_change(json_t *old, json_t *new);
/* A text as the record keeps it: the first 150 bytes, cut on a character boundary and
 * marked with "..." when cut (the record holds what changed, not whole descriptions). */
json_t *vault_audit_text(const char *s);

/* Sets a's target when the URL did not name it (a create): a may be NULL. */
void vault_audit_target(struct cv_audit *a, const char *target);

/* The environments a certificate names, as a client sent them: each by the name rule, at
 * most CV_CERT_ENVIRONMENTS_MAX, none twice (ignoring case). 0 or CV_ERR_BAD_REQUEST. */
int vault_check_environments(const char *const *names, size_t n, struct cv_errmsg *err);

/* Tags as a client sent them (see struct cv_tag) into "key=value" strings (*ret the
 * caller's, each and the array free()d). 0, CV_ERR_BAD_REQUEST or CV_ERR_NOMEM. */
int vault_tags_make(const struct cv_tag *tags, size_t n, char ***ret, struct cv_errmsg *err);

/* Reads the active certificate of this name, with the messages every use case gives. */
int vault_lookup(struct cv_vault *v, const char *name, struct cv_cert_record **ret_rec,
		 struct cv_errmsg *err);

/* Parses and checks everything a client sent for an import, renew or replace, and makes the
 * record to store (a fresh random key id; name and description from req) with the key to
 * put in the token; audit gets the certificate's fingerprint as soon as it is parsed, before
 * the checks. Returns 0 or the first check's error with its message. */
int vault_material_check(struct cv_vault *v, struct cv_audit *audit,
			 const struct cv_import_request *req, int64_t now,
			 struct cv_cert_record **ret_rec, EVP_PKEY **ret_key,
			 struct cv_revocation *ret_rev, struct cv_errmsg *err);

/* The truststore's CRL from cert's issuer alone (no network): 1 with *ret its verdict, 0
 * when none is held, or CV_ERR_DB. For the notifier's periodic check. */
int vault_revocation_offline(struct cv_vault *v, X509 *cert, const char *issuer, int64_t now,
			     struct cv_revocation *ret, struct cv_errmsg *err);
/* The revocation check of cv_vault_cert_import for cert (issued by the CA named issuer, with
 * chain as the client sent it): 0 with *ret filled (GOOD, NOT_CHECKED, or UNKNOWN under the
 * warn policy), or CV_ERR_REVOKED / CV_ERR_REVOCATION_UNKNOWN with err naming the source and
 * why; CV_ERR_DB, CV_ERR_NOMEM. Network I/O with online checks: call outside transactions. */
int vault_revocation_check(struct cv_vault *v, X509 *cert, const char *issuer,
			   STACK_OF(X509) *chain, int64_t now, struct cv_revocation *ret,
			   struct cv_errmsg *err);

/* Every truststore certificate as a stack the caller frees. */
int vault_trusted_stack(struct cv_vault *v, STACK_OF(X509) **ret, struct cv_errmsg *err);

/* Destroys a key, a missing one counting as destroyed. */
int vault_key_destroy(struct cv_vault *v, const uint8_t *key_id, struct cv_errmsg *err);

/* The refusal when JWKs are linked and the caller made no choice: names them and the
 * choices. Returns CV_ERR_JWK_CHOICE_REQUIRED. */
int vault_jwk_choice_required(const char *name, const struct cv_jwk_record *linked, size_t n,
			      const char *choices, struct cv_errmsg *err);

/* The JWK of a stored certificate (x5c with its chain), alg and use NULL for the defaults. */
int vault_cert_jwk(const struct cv_cert_record *rec, const char *alg, const char *use,
		   json_t **ret_jwk, struct cv_errmsg *err);

/* The key of a wrapped import into the token under rec's id and label: req's kid must name
 * the wrapping key (else CV_ERR_UNWRAP_FAILED), the token unwraps, and a signature made with
 * the new key must verify with cert_key (else CV_ERR_KEY_MISMATCH, the key destroyed).
 * Sets rec->key_origin. On failure nothing is left in the token. */
int vault_key_unwrap(struct cv_vault *v, const struct cv_import_request *req,
		     EVP_PKEY *cert_key, struct cv_cert_record *rec, struct cv_errmsg *err);

/* The reconciler's part of the pending certificates (generate.c): rows left creating or
 * cancelling (their key destroyed, the row removed), claimed first: this node's own too when
 * mine (at start, while none of its writes is in flight), else only those of nodes whose
 * heartbeat is older than the lease at now. */
int vault_pending_reconcile(struct cv_vault *v, int64_t now, int mine, unsigned *ret_undone,
			    struct cv_errmsg *err);


/* Destroys the keys of every version of rec still in the token, recording each superseded
 * one's, then the current one's (the delete's and the purge's work). 0 or the token's or the
 * store's error. */
int vault_destroy_all_keys(struct cv_vault *v, const struct cv_cert_record *rec,
			   struct cv_errmsg *err);
/* Seconds a deleted certificate is kept (lifecycle settings); 0: a delete destroys at once. */
int64_t vault_retention(const struct cv_vault *v);
/* The delete with a retention, once cv_vault_cert_delete's checks passed: rec is put aside
 * with audit. *ret_purge_after (may be NULL) is when its retention ends. */
int vault_delete_soft(struct cv_vault *v, struct cv_audit *audit, const struct cv_cert_record *rec,
		      const struct cv_jwk_choice *jwk, int64_t *ret_purge_after,
		      struct cv_errmsg *err);
/* The message of an import, rename or generate refused because name is taken: when a deleted
 * certificate holds it, says so and how to free it. Returns CV_ERR_NAME_TAKEN. */
int vault_name_taken(struct cv_vault *v, const char *name, struct cv_errmsg *err);

#endif
