/* vault: certvault's use cases. The only layer that uses both the token and the store, and the
 * one that orders writes spanning them so a crash leaves nothing half-done. Thread-safe.
 *
 * Every use case that changes something takes the request's audit record (struct cv_audit,
 * NULL: nothing recorded): it adds the fingerprints involved as it learns them, also when it
 * then refuses, and hands the record to the store call that commits the change, so the
 * record and the change commit together or not at all (audit->written says it did). */
#ifndef CERTVAULT_VAULT_H
#define CERTVAULT_VAULT_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

#include "certvault/error.h"
#include "certvault/net.h"
#include "certvault/store.h"
#include "certvault/token.h"
#include "certvault/x509.h"

struct cv_audit;                 /* below, with the audit trail */

/* How import, renew and replace judge revocation (src/vault/revocation.c). */
struct cv_revocation_policy {
	int online;               /* also ask the certificate's OCSP responder and CRL URL */
	int timeout_ms;           /* each online fetch; 0: 5000 */
	int unknown_warn;         /* a source that could not tell: 1 accept with a warning,
				     0 refuse (CV_ERR_REVOCATION_UNKNOWN) */
	struct cv_net_policy net; /* where online fetches may connect (the URLs come from
				     uploaded certificates); zeroed: public addresses, 80/443 */
};

struct cv_vault {
	struct cv_store *store;   /* borrowed */
	struct cv_token *token;   /* borrowed */
	int64_t soon_seconds;     /* "expires soon" threshold */
	int allow_weak_signatures;
	int destroy_superseded_keys; /* destroy a version's key once superseded */
	int64_t jwks_retention;   /* seconds a superseded JWK stays in the public JWKS */
	struct vault_caches *caches; /* owned; NULL: every use case works uncached */
	const char *served;       /* the certificate HTTPS serves (server.tls_certificate); NULL:
				     none. It cannot be deleted while served. */
	struct cv_revocation_policy revocation;
	struct cv_net_policy truststore_net; /* where a truststore url fetch may connect */
	struct vault_audit *audit; /* owned (cv_vault_audit_init): the audit chain's key in the
				      token and the refusals' counts; NULL: records are unkeyed
				      and every refusal is written */
	int64_t pending_seconds;  /* a pending certificate's life (policy.pending_expiry_days);
				     0: 30 days */
	/* Soft delete (issue 18 part 2): how long a deleted certificate is kept before it is
	 * purged (days; 0: a delete destroys at once), or in seconds for tests (builds with
	 * fault injection only; 0: the days count); no purge before that ends when
	 * purge_protection is set. */
	int64_t deleted_retention_days;
	int64_t test_retention_seconds;
	int purge_protection;
	struct vault_purger *purger; /* owned (cv_vault_purger_start); NULL: not running */
	struct vault_node_keeper *node_keeper; /* owned (cv_vault_node_start); NULL: none */
	/* What the start-up check of the database against the token found (set before v is
	 * shared; health reports it): keys rows need that the token lacks, and key objects with
	 * certvault's marker that no row names. */
	unsigned keys_missing_at_start;
	/* Set by the orphan key check, which runs on a thread of its own once the token's
	 * public key objects are listed; orphans_checked: 1 once it ran. */
	atomic_uint orphan_keys_at_start;
	atomic_int orphans_checked;
};

/* Gives v its caches of public material: the details of certificates by their DER, and the
 * JWKS document by the store's JWK generation. Call once, before v is shared. Returns 0 or
 * CV_ERR_NOMEM. */
int cv_vault_caches_init(struct cv_vault *v);
/* Frees v's caches; v then works uncached. */
void cv_vault_caches_release(struct cv_vault *v);

/* An import as the client sent it (also the new material of a renew or replace, whose
 * name is the certificate's and whose description is ignored). Strings are borrowed;
 * private_key and password are secrets the caller wipes. */
/* The material comes one of three ways: certificate + private_key (+ chain) as text in
 * encoding; a PKCS#12 file (pkcs12: base64, or the bytes of an upload with CV_ENC_FILE) that
 * holds all three; or uploaded files (encoding CV_ENC_FILE, bundle set) where certificate may
 * be a PEM bundle, a DER certificate or a PKCS#12 file, and private_key and chain are needed
 * only for what it lacks. */
struct cv_import_request {
	const char *name;
	const char *description;   /* NULL: "" */
	/* The environments the certificate is for and its tags (import only; none: any). */
	size_t n_environments;
	const char *const *environments;
	size_t n_tags;
	const struct cv_tag *tags;
	const char *certificate;
	size_t certificate_len;
	const char *private_key;   /* NULL: none (only with pkcs12 or bundle) */
	size_t private_key_len;
	const char *password;      /* of an encrypted key or of the PKCS#12 file; NULL: none */
	const char *chain;         /* NULL: none */
	size_t chain_len;
	enum cv_encoding encoding;
	const char *pkcs12;        /* NULL: none; else certificate, private_key, chain NULL */
	size_t pkcs12_len;
	enum cv_encoding pkcs12_encoding;
	int bundle;
	int allow_upcoming;        /* take a certificate whose start is still ahead */
	/* Or received from a live endpoint: url (https://host[:port], ldaps://host[:port]) as
	 * the truststore's fetch reads it; the entry at position (0: the server's own) of the
	 * chain it presents becomes a public certificate, with the entries after it as its
	 * chain. certificate, private_key, pkcs12 and chain are then NULL. */
	const char *url;
	int64_t position;
	int timeout_ms;            /* with url */
	/* A merge: the key is in the token already and this is its public half. No private key
	 * (nor PKCS#12 file) is taken, and the certificate must match it (CV_ERR_KEY_MISMATCH). */
	EVP_PKEY *token_key;
	const uint8_t *token_key_id; /* with token_key: its CKA_ID (CV_TOKEN_ID_LEN bytes) */
	const char *token_key_label; /* ... and its CKA_LABEL */
	/* A wrapped import (bring your own key): the key arrives wrapped for the token's
	 * wrapping key and is unwrapped inside it; no private_key or pkcs12 then. */
	const char *wrapped_kid;
	int wrapped_oaep_sha1;     /* the AES key encrypted with RSA-OAEP SHA-1, not SHA-256 */
	const unsigned char *encrypted_aes_key;
	size_t encrypted_aes_key_len;
	const unsigned char *wrapped_private_key;
	size_t wrapped_private_key_len;
};

/* Limits on metadata a client sets. */
#define CV_DESCRIPTION_MAX 1024
#define CV_DISPLAY_NAME_MAX 100     /* characters of an environment's display name */
#define CV_CERT_ENVIRONMENTS_MAX 64 /* environments a certificate names */

/* Validates and imports: every x509 check and the revocation check (below), then a pending
 * row, the key in the token, the row made active with audit (its target the name). Without
 * a private key it imports a public certificate: the row only, no key object (a partner's
 * certificate, an mTLS peer, a signer whose JWK verifies tokens). With req->allow_upcoming a
 * certificate whose start is ahead is taken (status upcoming). Returns 0 and the stored
 * record, or an error with err saying why; on failure nothing is left in the store or the
 * token. Either way *ret_rev (NULL: not wanted) is what the revocation check found (zeroed
 * when it did not run); its log_detail, for the log only, says why fetches failed, which
 * detail and err tell the client only generically.
 *
 * The revocation check of the leaf: the truststore's CRL from the leaf's issuer (a CA entry
 * that issued the leaf); then, with v->revocation.online, the leaf's OCSP responder and its
 * CRL distribution point over HTTP. The first good or revoked answer decides: revoked is
 * CV_ERR_REVOKED. When sources exist and none could tell (a stale CRL, a responder down, a
 * bad signature), CV_ERR_REVOCATION_UNKNOWN, or with v->revocation.unknown_warn acceptance
 * with status CV_REV_UNKNOWN. No source at all: CV_REV_NOT_CHECKED, accepted. Online
 * fetches connect only where v->revocation.net allows (after resolution, on every redirect),
 * and only for a leaf whose issuer is in its chain or the truststore. */
int cv_vault_cert_import(struct cv_vault *v, struct cv_audit *audit,
			 const struct cv_import_request *req, int64_t now,
			 struct cv_cert_record **ret_rec, struct cv_revocation *ret_rev,
			 struct cv_errmsg *err);

struct cv_version_ref;          /* below, with renew and replace */
struct cv_jwk_choice;

/* Keys born in the token (issue 13). A certificate whose key is generated in the token:
 * key_type is "rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521" or "ed25519"; x509 is
 * what the CSR (or the self-signed certificate) says. Strings borrowed. */
struct cv_generate_request {
	const char *name;
	const char *description;   /* NULL: "" */
	const char *key_type;
	struct cv_x509_request x509;
	int self_signed;           /* sign a certificate in the token and make it current */
	int renew;                 /* the next version of the certificate name (its CSR waits
				      while the current version serves on) */
	int days;                  /* self_signed: its validity, 1..3650 */
};
/* What a generate made: a pending certificate and its CSR (PEM), or with self_signed the
 * certificate's record (pending NULL). The caller frees them all. */
struct cv_generate_result {
	struct cv_pending_record *pending;
	char *csr_pem;
	struct cv_cert_record *rec;
};
void cv_generate_result_release(struct cv_generate_result *res);

/* Makes a key pair of req->key_type in the token, and a CSR signed with it in the token
 * (a pending certificate, audited as certificate.generate) or a self-signed certificate
 * that becomes current at once. The name is checked and held first, and the pending row
 * names the key before C_GenerateKeyPair, so a crash leaves something the reconciler
 * undoes. Returns 0, CV_ERR_INVALID_NAME, CV_ERR_NAME_TAKEN, CV_ERR_BAD_REQUEST,
 * CV_ERR_UNSUPPORTED_KEY, CV_ERR_TOKEN, CV_ERR_TOKEN_UNAVAILABLE or CV_ERR_DB; on failure
 * nothing is left in the token or the store. */
int cv_vault_cert_generate(struct cv_vault *v, struct cv_audit *audit,
			   const struct cv_generate_request *req, int64_t now,
			   struct cv_generate_result *ret, struct cv_errmsg *err);
/* The pending certificate named name with its CSR. Returns 0, CV_ERR_NOT_FOUND (no
 * certificate of that name), CV_ERR_NOT_PENDING (a certificate with no key waiting) or
 * CV_ERR_DB. */
int cv_vault_pending_get(struct cv_vault *v, const char *name,
			 struct cv_pending_record **ret_rec, char **ret_csr_pem,
			 struct cv_errmsg *err);
/* Every pending certificate, name order. */
int cv_vault_pending_list(struct cv_vault *v, struct cv_pending_record **ret_recs,
			  size_t *ret_n, struct cv_errmsg *err);
int cv_vault_pending_count(struct cv_vault *v, int64_t *ret_n, struct cv_errmsg *err);
/* Merges the certificate a CA issued for the pending key of name: req's certificate (and
 * chain; no private key) passes every import check against the pending key's public half
 * (CV_ERR_KEY_MISMATCH for another key's certificate), then becomes the certificate's
 * current version in one transaction with its audit record (certificate.merge).
 * CV_ERR_NOT_PENDING when name has no key waiting. */
/* A renewal's merge is a renewal (cv_vault_cert_supersede with CV_END_RENEWED: in use only,
 * the version ref and JWK choice, one winner, every service switched in its transaction):
 * ref, jwk, *ret_previous (the version it superseded; 0 for a new certificate) and
 * *ret_jwks (NULL: not wanted; what became of the linked JWKs, the caller releases it;
 * zeroed for a new certificate) are for it. */
struct cv_jwk_outcome;
int cv_vault_pending_merge(struct cv_vault *v, struct cv_audit *audit,
			   const struct cv_import_request *req, const struct cv_version_ref *ref,
			   const struct cv_jwk_choice *jwk, int64_t now, int64_t *ret_previous,
			   struct cv_revocation *ret_rev, struct cv_jwk_outcome *ret_jwks,
			   struct cv_errmsg *err);
/* Cancels the pending certificate of name: marked (audited), its key destroyed, its row
 * removed. Returns 0, CV_ERR_NOT_FOUND, CV_ERR_NOT_PENDING, CV_ERR_TOKEN... */
int cv_vault_pending_cancel(struct cv_vault *v, struct cv_audit *audit, const char *name,
			    struct cv_errmsg *err);
/* The active certificates' keys by origin (indexed by enum cv_key_origin). */
int cv_vault_key_origin_counts(struct cv_vault *v, int64_t ret_counts[3],
			       struct cv_errmsg *err);
/* The wrapping key of wrapped imports (made in the token on first use): its public half as
 * PEM (*ret_pem the caller's) and its kid (the RFC 7638 thumbprint of its JWK). */
int cv_vault_wrapping_key(struct cv_vault *v, char **ret_pem, char ret_kid[64],
			  struct cv_errmsg *err);
/* The RFC 7512 URI of the key key_id labelled label (see cv_token_key_uri). */
int cv_vault_key_uri(struct cv_vault *v, const uint8_t *key_id, const char *label, char *buf,
		     size_t buflen);
/* The expiry sweep: destroys every pending certificate older than v->pending_seconds, each
 * with an audit record (certificate.pending_expired, actor certvaultd). *ret_n counts them.
 * Returns 0 or the first failure. */
int cv_vault_pending_sweep(struct cv_vault *v, int64_t now, unsigned *ret_n,
			   struct cv_errmsg *err);
/* What an import would find, without doing it (POST /v1/certificates/preview). */
struct cv_preview_problem {
	int code;                 /* the error the import would answer */
	char message[256];
};
#define CV_PREVIEW_PROBLEMS_MAX 16
struct cv_cert_preview {
	struct cv_x509_info *info;  /* NULL when no certificate could be read */
	struct cv_x509_info **chain;
	size_t chain_length;
	int has_key;                /* a private key was read */
	int rev_checked;            /* rev holds the revocation check's answer */
	struct cv_revocation rev;
	size_t n_problems;          /* every problem, in the import's order (at most the max) */
	struct cv_preview_problem problems[CV_PREVIEW_PROBLEMS_MAX];
};
/* Runs every check of cv_vault_cert_import on req (the name, the material, each x509
 * check, the revocation check) whatever the others found, and stores nothing and touches
 * no token object. Returns 0 and *ret_preview (the caller's; problems listed in it), or
 * CV_ERR_DB, CV_ERR_NOMEM, CV_ERR_INTERNAL when the preview itself could not be made. */
int cv_vault_cert_preview(struct cv_vault *v, const struct cv_import_request *req, int64_t now,
			  struct cv_cert_preview **ret_preview, struct cv_errmsg *err);
/* Accepts NULL. */
void cv_vault_cert_preview_free(struct cv_cert_preview *preview);

/* Everything the details view shows. */
struct cv_cert_view {
	struct cv_cert_record *rec;
	struct cv_x509_info *info;
	enum cv_status status;
	int64_t expires_in_days;
	size_t chain_length;      /* intermediates stored with the certificate */
	char key_uri[512];
	struct cv_x509_info **chain; /* each of them, in the stored order */
	size_t n_jwks;            /* the JWKs linked to it, any state, in kid order */
	struct cv_jwk_record *jwks;
	size_t n_active_jwks;     /* of those, the active ones (a delete must choose for them) */
	int served;               /* HTTPS serves it (server.tls_certificate): no delete */
};
void cv_vault_cert_view_free(struct cv_cert_view *view);

/* Reads one certificate with its parsed details. Returns 0, CV_ERR_INVALID_NAME,
 * CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_vault_cert_get(struct cv_vault *v, const char *name, int64_t now,
		      struct cv_cert_view **ret_view, struct cv_errmsg *err);

/* A number that moves after every change this process commits to a certificate (see
 * cv_store_certs_generation): a copy of a certificate's current version read after reading
 * it stays current for as long as it does not move. */
uint64_t cv_vault_certs_generation(struct cv_vault *v);
/* The same for JWKs (cv_store_jwks_generation): a certificate's details name its JWKs. */
uint64_t cv_vault_jwks_generation(struct cv_vault *v);

/* A version tag names one version of one certificate: "<version>-<16 hex digits of its
 * SHA-256 fingerprint>". HTTP serves it as the ETag. */
#define CV_VERSION_TAG_LEN 48
void cv_vault_version_tag(int64_t version, const char *sha256_fingerprint,
			  char buf[CV_VERSION_TAG_LEN]);

/* Which version a renew or replace supersedes: version 0 is the current one. */
struct cv_version_ref {
	int64_t version;
	char fingerprint[17];      /* from a version tag: what its fingerprint starts with; "" any */
};
/* Parses a version tag into ref. Returns 0 or CV_ERR_PRECONDITION (not a tag this vault
 * makes). */
int cv_vault_version_ref_parse(const char *tag, struct cv_version_ref *ret_ref);

/* Renews (kind CV_END_RENEWED) or replaces (CV_END_REPLACED) the certificate req->name
 * with req's material: every import check; then the version named by ref must be current
 * (CV_ERR_ALREADY_RENEWED when it was superseded, CV_ERR_PRECONDITION when it names no
 * version); a renewal needs a service using it (CV_ERR_NOT_IN_USE); the new certificate is
 * not the current one, nor for a renewal any earlier one (CV_ERR_SAME_CERTIFICATE); it
 * covers every domain of every service using it (CV_ERR_DOMAIN_NOT_COVERED). The new key is
 * created in the token under a journal row, then one transaction makes it the current version
 * of every service using it. Of racing supersedes of one version exactly one succeeds; the
 * others get CV_ERR_ALREADY_RENEWED and leave no key behind. *ret_previous is the version
 * superseded; *ret_rev (NULL: not wanted), whatever the outcome, what the revocation check
 * of cv_vault_cert_import found (zeroed when it did not run). audit names the current version's fingerprint and the new one's. The certificate
 * the HTTPS listener serves (v->served) is renewed or replaced only by an admin (audit's
 * role; CV_ERR_FORBIDDEN otherwise, before any check or key). On failure nothing changes. */
struct cv_jwk_choice {
	enum cv_jwk_action action; /* NONE when the caller said nothing */
	const char *confirm;       /* UPDATE (and, for a delete, any choice) needs the name */
};
/* What a renew, a replace (a rollback is a replace with an earlier version's material) or
 * the merge of a renewal did to the JWKs linked to the certificate, one change per linked
 * JWK: with DISCONNECT, kid lost its link (published as it was); with UPDATE, new_kid
 * followed kid: the same kid when the key is the same (kept, the new certificate in its
 * x5c), else kid was superseded (in the public JWKS until superseded_until) and new_kid
 * became active as fate says (made, reactivated: one this certificate had before, or
 * adopted: one published ahead). n 0: none were linked (action NONE). */
struct cv_jwk_change {
	char kid[65];
	char new_kid[65];         /* UPDATE only */
	char alg[16];
	char new_alg[16];         /* UPDATE only: new_kid's (another when the key's type changed) */
	char use[8];
	enum cv_jwk_fate fate;    /* UPDATE only */
};
struct cv_jwk_outcome {
	enum cv_jwk_action action;
	size_t n;
	struct cv_jwk_change *changes;
	int64_t superseded_until; /* the change's time plus jwks.superseded_retention */
};
/* Frees what an outcome holds and zeroes it. */
void cv_jwk_outcome_release(struct cv_jwk_outcome *o);
/* *ret_jwks (NULL: not wanted) says what became of the linked JWKs; the caller releases it
 * (zeroed on failure, and when the change was made but could not be told: no memory). */
int cv_vault_cert_supersede(struct cv_vault *v, struct cv_audit *audit,
			    enum cv_version_end kind, const struct cv_import_request *req,
			    const struct cv_version_ref *ref, const struct cv_jwk_choice *jwk,
			    int64_t now, int64_t *ret_previous, struct cv_revocation *ret_rev,
			    struct cv_jwk_outcome *ret_jwks, struct cv_errmsg *err);
/* Parses a jwk_action: "update", "disconnect", "delete" (NULL: NONE). 0 or
 * CV_ERR_BAD_REQUEST. */
int cv_vault_jwk_action_parse(const char *s, enum cv_jwk_action *ret);

/* One version as the versions view shows it. */
struct cv_version_view {
	struct cv_cert_version version;
	enum cv_status status;
	int64_t expires_in_days;
	char tag[CV_VERSION_TAG_LEN];
	char key_uri[512];         /* "" when the key is no longer in the token */
};
/* Every version of a certificate, newest first. Returns 0 (*ret_views the caller's, free()),
 * CV_ERR_INVALID_NAME, CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_vault_cert_versions(struct cv_vault *v, const char *name, int64_t now,
			   struct cv_version_view **ret_views, size_t *ret_n,
			   struct cv_errmsg *err);

/* Sets the description. Returns 0, CV_ERR_INVALID_NAME, CV_ERR_BAD_REQUEST (too long),
 * CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_vault_cert_describe(struct cv_vault *v, struct cv_audit *audit, const char *name,
			   const char *description, int64_t now, struct cv_errmsg *err);

/* A tag: a key/value label on a certificate (team, owner, ticket). The key is 1 to
 * CV_TAG_KEY_MAX letters, digits, '.', '_' or '-'; the value at most CV_TAG_VALUE_MAX bytes of
 * text without control characters. */
#define CV_TAGS_MAX 32
#define CV_TAG_KEY_MAX 64
#define CV_TAG_VALUE_MAX 256
struct cv_tag {
	const char *key;
	const char *value;
};

/* An edit of a certificate's metadata as the client sent it (strings borrowed). */
struct cv_cert_edit_request {
	const char *name;          /* NULL: kept; else the new name */
	const char *description;   /* NULL: kept */
	int set_tags;              /* tags replaced by these */
	size_t n_tags;
	const struct cv_tag *tags;
	int set_environments;
	size_t n_environments;
	const char *const *environments;
};
/* Edits a certificate's metadata (see cv_store_cert_edit): a new name by the name rule, not
 * taken, and not while the name is referenced in a setting (server.tls_certificate:
 * CV_ERR_IN_USE); description at most CV_DESCRIPTION_MAX bytes; environments by the name
 * rule, existing, at most CV_CERT_ENVIRONMENTS_MAX, and still holding every service using
 * it; tags (see struct cv_tag), at most CV_TAGS_MAX, no key twice. audit's target is the
 * old name. *ret_name (NULL: not wanted) gets the name it has after. Returns 0,
 * CV_ERR_INVALID_NAME, CV_ERR_NAME_TAKEN, CV_ERR_IN_USE,
 * CV_ERR_BAD_REQUEST, CV_ERR_NOT_FOUND, CV_ERR_UNKNOWN_ENVIRONMENT,
 * CV_ERR_ENVIRONMENT_NOT_ALLOWED or CV_ERR_DB. */
int cv_vault_cert_edit(struct cv_vault *v, struct cv_audit *audit, const char *name,
		       const struct cv_cert_edit_request *req, int64_t now, char ret_name[65],
		       struct cv_errmsg *err);

/* Environments (see struct cv_environment_record). */
/* Creates or changes an environment: name by the name rule, display_name (NULL: the name)
 * 1 to CV_DISPLAY_NAME_MAX characters without control characters (spaces allowed),
 * description at most CV_DESCRIPTION_MAX bytes. 0 (*ret_created; ret_name the name as
 * stored), CV_ERR_INVALID_NAME, CV_ERR_BAD_REQUEST, CV_ERR_DB. */
int cv_vault_environment_put(struct cv_vault *v, struct cv_audit *audit, const char *name,
			     const char *display_name, const char *description, int64_t now,
			     int *ret_created, char ret_name[65], struct cv_errmsg *err);
/* 0, CV_ERR_INVALID_NAME, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_vault_environment_get(struct cv_vault *v, const char *name,
			     struct cv_environment_record **ret_rec, struct cv_errmsg *err);
/* A page in name order (see cv_store_environment_list). 0, CV_ERR_DB. */
int cv_vault_environment_list(struct cv_vault *v, const char *after, unsigned limit,
			      struct cv_environment_record **ret_recs, size_t *ret_n,
			      struct cv_errmsg *err);
/* The same, only the environments inside scope (NULL: all). */
int cv_vault_environment_list_scoped(struct cv_vault *v, const char *after, unsigned limit,
				     const struct cv_scope_objects *scope,
				     struct cv_environment_record **ret_recs, size_t *ret_n,
				     struct cv_errmsg *err);
/* Deletes an environment no service is in and no certificate names (else CV_ERR_IN_USE
 * naming them). 0, CV_ERR_INVALID_NAME, CV_ERR_NOT_FOUND, CV_ERR_IN_USE, CV_ERR_DB. */
int cv_vault_environment_delete(struct cv_vault *v, struct cv_audit *audit, const char *name,
				struct cv_errmsg *err);

/* Deletes a certificate: needs confirm == "delete" or its name (else CV_ERR_CONFIRM_REQUIRED,
 * nothing changes) and no service using it (else CV_ERR_IN_USE naming them). With JWKs linked
 * to it, jwk->action must be DELETE or DISCONNECT (else CV_ERR_JWK_CHOICE_REQUIRED naming
 * them) and confirm its name; marks the row, destroys
 * the key of every version, removes the row and its versions. A token failure puts the row
 * back (the superseded keys already destroyed are recorded as such) and returns the token's
 * error. The mark writes audit as done; when the row is put back, audit->written is cleared
 * again so that the caller records the refusal too. With a retention (v->deleted_retention_days
 * or the test seconds), the same checks, then the certificate is deleted softly instead
 * (cv_vault_deleted_*, below): nothing is destroyed, and *ret_purge_after (may be NULL) says
 * until when it can be recovered; 0 there: deleted at once. */
int cv_vault_cert_delete(struct cv_vault *v, struct cv_audit *audit, const char *name,
			 const struct cv_jwk_choice *jwk, int64_t *ret_purge_after,
			 struct cv_errmsg *err);

/* Deleted certificates (issue 18 part 2). */

/* When name is a deleted certificate, sets err to a 404 message saying so and where to find
 * it. Returns CV_ERR_NOT_FOUND either way (err untouched when it is not deleted). */
int cv_vault_deleted_hint(struct cv_vault *v, const char *name, struct cv_errmsg *err);

/* A page of deleted certificates in name order after the name cursor ("" or NULL: the first),
 * limit (1-1000) at most: each with deleted_at, purge_after, deleted_by, its tags and the kids
 * of the JWKs its delete took off it. 0, CV_ERR_BAD_REQUEST or CV_ERR_DB; the page is the
 * caller's (cv_store_cert_page_free). */
int cv_vault_deleted_list(struct cv_vault *v, const char *cursor, unsigned limit,
			  struct cv_cert_page **ret_page, struct cv_errmsg *err);

/* Recovers the deleted certificate name, with audit: active again exactly as it was
 * (versions, tags, environments, keys), the JWKs its delete took off it linked again where
 * they still can be. *ret_jwks (n *ret_n, free()) says what became of each; *ret_name the
 * name as stored. 0, CV_ERR_NOT_FOUND (no deleted certificate of that name), the token's
 * error (the record is keyed there) or CV_ERR_DB. */
int cv_vault_deleted_recover(struct cv_vault *v, struct cv_audit *audit, const char *name,
			     char ret_name[65], struct cv_jwk_relink **ret_jwks, size_t *ret_n,
			     struct cv_errmsg *err);

/* Purges the deleted certificate name now: confirm must be "purge" (else
 * CV_ERR_CONFIRM_REQUIRED); with v->purge_protection, refused before its retention ends
 * (CV_ERR_PURGE_PROTECTED, saying when). The purge is recorded (audit) before any key is
 * destroyed; then every version's key is destroyed and the row removed, ordered as the
 * delete at once is, so a crash leaves a delete the next start finishes. A token that refuses
 * the current key's destroy puts the certificate back among the deleted (audit->written
 * cleared, so the caller records the refusal). 0, those errors, CV_ERR_NOT_FOUND, the
 * token's error or CV_ERR_DB. */
int cv_vault_deleted_purge(struct cv_vault *v, struct cv_audit *audit, const char *name,
			   const char *confirm, int64_t now, struct cv_errmsg *err);

/* The background purge: purges each deleted certificate whose retention ended by now, audited
 * as certvaultd (certificate.purge). *ret_n: how many. 0 or the first failure (the others
 * are tried at the next sweep). */
int cv_vault_deleted_sweep(struct cv_vault *v, int64_t now, unsigned *ret_n,
			   struct cv_errmsg *err);

/* What a background sweep did, for the daemon to log: n purged, r its outcome (0 or the
 * first failure, why saying which and why). Called on the purger's thread. */
typedef void cv_vault_purge_report_fn(unsigned n, int r, const char *why);
/* Starts the thread that runs cv_vault_deleted_sweep every every_seconds (and once at
 * start), calling report (may be NULL) when a sweep purged something or failed;
 * cv_vault_purger_stop stops and joins it (accepts a vault without one). 0 or CV_ERR_NOMEM /
 * CV_ERR_INTERNAL. */
int cv_vault_purger_start(struct cv_vault *v, int64_t every_seconds,
			  cv_vault_purge_report_fn *report, struct cv_errmsg *err);
void cv_vault_purger_stop(struct cv_vault *v);

/* Export formats of public material. */
enum cv_export_format {
	CV_EXPORT_PEM = 0,
	CV_EXPORT_DER,
	CV_EXPORT_CHAIN,
	CV_EXPORT_PUBLIC_KEY,
	CV_EXPORT_JWK,
};
/* Parses "pem", "der", "chain", "public-key", "jwk". Returns 0 or CV_ERR_BAD_REQUEST. */
int cv_vault_export_format_parse(const char *s, enum cv_export_format *ret);

/* Exports one certificate's public material: *ret_body (malloc'd, caller frees),
 * *ret_content_type (static). Returns 0, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_vault_cert_export(struct cv_vault *v, const char *name, enum cv_export_format format,
			 unsigned char **ret_body, size_t *ret_len,
			 const char **ret_content_type, struct cv_errmsg *err);
/* The same for version (0: the current one) of the certificate: a superseded version's
 * certificate, chain, public key or JWK as it was. Also CV_ERR_NOT_FOUND naming the
 * versions there are when it has no such version. */
int cv_vault_cert_export_version(struct cv_vault *v, const char *name, int64_t version,
				 enum cv_export_format format, unsigned char **ret_body,
				 size_t *ret_len, const char **ret_content_type,
				 struct cv_errmsg *err);

/* One page of the list; filter->soon_seconds is set from the vault. Returns 0 or
 * CV_ERR_DB. */
int cv_vault_cert_list(struct cv_vault *v, struct cv_cert_filter *filter,
		       struct cv_cert_page **ret_page, struct cv_errmsg *err);

/* How many certificates the list's filter matches (its cursor and limit aside). Returns 0
 * or CV_ERR_DB. */
int cv_vault_cert_list_total(struct cv_vault *v, struct cv_cert_filter *filter,
			     int64_t *ret_total, struct cv_errmsg *err);

/* The list's answers as they were sent, kept so that many clients asking for the same page
 * (pollers, consoles, a first page everyone opens) make it once, not once a request. An
 * answer is kept under key, everything of the request it depends on (the caller makes it:
 * the query and the scope), with the certificate generation, the time it was made at and
 * the first moment the clock alone could change it (a shown row's status or days left;
 * with by_status, any certificate's status, which decides what a status filter or the status
 * sort lists), and the page's keys as the answer judged them (key_missing): it is given
 * again only while the generation is the same, the time before that moment and the keys as
 * judged, so that a kept answer is byte for byte the one that would be made. */
#define CV_LIST_MEMO_KEY_MAX 2048
/* The answer kept under key at gen and now, its text (malloc'd, caller frees) and ETag:
 * 1, or 0 when none is (or its keys are no longer as it said). */
int cv_vault_list_memo_get(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			   char **ret_text, size_t *ret_len, char ret_etag[64]);
/* Keeps text (len bytes, copied) and etag as the answer under key at gen and now, made from
 * page with missing[i] the key_missing it gave page->items[i]. Nothing is kept when it
 * cannot be (too large, no memory): the memo only ever saves work. */
void cv_vault_list_memo_put(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			    int by_status, const struct cv_cert_page *page,
			    const unsigned char *missing, const char *text, size_t len,
			    const char *etag);

/* Certificates' details, kept as the list's pages are (above): key is everything the
 * answer depends on besides the certificate generation and the clock (the name, the JWK
 * generation, the caller's scope); the answer lasts until the certificate's or one of its
 * stored intermediates' status or days left would change, and while its key_missing
 * (missing, as the view judged it) holds. */
int cv_vault_details_memo_get(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			      char **ret_text, size_t *ret_len, char ret_etag[64]);
void cv_vault_details_memo_put(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			       const struct cv_cert_view *view, int missing, const char *text,
			       size_t len, const char *etag);

/* Counts by status at now. Returns 0 or CV_ERR_DB. */
int cv_vault_cert_count(struct cv_vault *v, int64_t now, struct cv_cert_counts *ret_counts,
			struct cv_errmsg *err);
/* The same over the certificates inside scope (NULL: all). */
int cv_vault_cert_count_scoped(struct cv_vault *v, int64_t now,
			       const struct cv_scope_objects *scope,
			       struct cv_cert_counts *ret_counts, struct cv_errmsg *err);

/* The inventory: every certificate (its current version), then every truststore entry,
 * walked in name order a page at a time, so that what it holds is one page whatever the
 * store holds. Pages are read one after the other, not in one snapshot: a change made
 * during the walk may or may not be seen; names never change, so none is seen twice. */
struct cv_inventory;
struct cv_inventory_item {
	int trusted_ca;              /* a truststore entry: no key, services, JWKs or domains */
	int is_public;               /* a public certificate: no key (key_uri "") */
	const char *name;            /* the certificate's name, the entry's alias */
	const char *description;     /* "" for a truststore entry */
	const char *subject;
	const char *issuer;
	const char *serial;
	const char *sha256_fingerprint;
	char key_type[16];           /* "RSA", "ECDSA", "Ed25519" (cv_x509_key_kind_of) */
	int key_bits;                /* 0: unknown */
	int64_t not_before;
	int64_t not_after;
	enum cv_status status;       /* at the walk's now */
	int64_t version;             /* 0 for a truststore entry */
	size_t n_domains;
	char *const *domains;
	size_t n_used_by;            /* the services using it, in name order */
	const struct cv_cert_usage *used_by;
	size_t n_tags;               /* its tags, "key=value" */
	char *const *tags;
	size_t n_kids;               /* the JWKs linked to it */
	char *const *kids;
	const char *key_uri;         /* RFC 7512; "" for a truststore entry */
	const char *key_origin;      /* "generated", "imported", "unwrapped"; NULL for a
					truststore entry */
	/* Read from the token when the item is: present 0 (and the rest 0) when the token holds
	 * no private key with the certificate's CKA_ID. */
	struct cv_token_key_attrs key;
};
/* What a walk visits and reads. */
enum {
	CV_INVENTORY_CERTIFICATES = 1,
	CV_INVENTORY_TRUSTSTORE = 2,
	/* The linked JWKs and the key's attributes read from the token (one call a
	 * certificate); without it n_kids is 0 and key.present 0. */
	CV_INVENTORY_DETAILS = 4,
};
/* Starts a walk at now of what (CV_INVENTORY_* or'ed), page_size rows a page (1..1000).
 * Reads nothing yet. Returns 0 and *ret_inv (free with cv_vault_inventory_free),
 * CV_ERR_BAD_REQUEST or CV_ERR_NOMEM. */
int cv_vault_inventory_new(struct cv_vault *v, int64_t now, unsigned what, unsigned page_size,
			   struct cv_inventory **ret_inv, struct cv_errmsg *err);
/* The next item: 1 and *ret_item (borrowed until the next call or the free), 0 at the end,
 * or CV_ERR_DB, CV_ERR_TOKEN, CV_ERR_TOKEN_UNAVAILABLE, CV_ERR_NOMEM (the walk cannot go
 * on). */
int cv_vault_inventory_next(struct cv_inventory *inv, const struct cv_inventory_item **ret_item,
			    struct cv_errmsg *err);
/* Accepts NULL. */
void cv_vault_inventory_free(struct cv_inventory *inv);
/* Limits the walk to the certificates inside scope (NULL: all; the truststore, public CAs,
 * stays whole). Call before the first cv_vault_inventory_next; scope must outlive inv. */
void cv_vault_inventory_scope(struct cv_inventory *inv, const struct cv_scope_objects *scope);

struct cv_vault_health {
	int database_ok;
	int token_ok;
	struct cv_token_health token;
};
/* Asks the database and the token. Always fills ret; returns 0 when both answer, else
 * CV_ERR_TOKEN_UNAVAILABLE. */
int cv_vault_health_get(struct cv_vault *v, struct cv_vault_health *ret);

/* What the start-up reconciler did. */
struct cv_reconcile_report {
	unsigned imports_undone;   /* pending rows removed (and their keys, if created) */
	unsigned deletes_finished; /* deleting rows whose keys were destroyed and row removed */
	unsigned versions_undone;  /* keys made for a renew or replace that never committed */
	unsigned keys_destroyed;   /* superseded keys whose destruction was interrupted */
	unsigned generates_undone; /* generated keys whose CSR or cancel never completed */
};
/* Finishes or undoes every write a crash interrupted. Run once at start, before serving,
 * after cv_store_node_register: it takes this node's own rows and those of nodes whose
 * heartbeat is older than the lease, never a live node's write in flight. */
int cv_vault_reconcile(struct cv_vault *v, struct cv_reconcile_report *ret_report,
		       struct cv_errmsg *err);
/* The same while serving, at now, for other nodes' rows only (nodes silent past their
 * lease: crashed and not back), each claimed first. */
int cv_vault_reconcile_abandoned(struct cv_vault *v, int64_t now,
				 struct cv_reconcile_report *ret_report, struct cv_errmsg *err);

/* What the node keeper did that the daemon logs, one line (no prefix, no newline). Called
 * on the keeper's thread. */
typedef void cv_vault_node_report_fn(const char *line);
/* Starts the node keeper (nodes.c): a thread that moves this node's heartbeat in the
 * database every lease_seconds / 3 (at least every second), off the HTTP threads, and
 * every lease_seconds runs cv_vault_reconcile_abandoned, so that what a crashed node left
 * in flight is undone without waiting for a restart. The node must be registered
 * (cv_store_node_register). cv_vault_node_stop stops and joins it, then marks the node
 * stopped (cv_store_node_stopped); it accepts a vault without one. 0 or CV_ERR_INTERNAL. */
int cv_vault_node_start(struct cv_vault *v, int64_t lease_seconds,
			cv_vault_node_report_fn *report, struct cv_errmsg *err);
void cv_vault_node_stop(struct cv_vault *v);

/* Key objects in the token that carry certvault's marker (cv_token_key_id_marked) but that no
 * row needs: left behind by a crash or power cut the reconciler could not see, or by a copy
 * of the token restored beside an older database. Objects without the marker (made by other
 * tools) and objects of any class but private and public key are never looked at. */
#define CV_ORPHANS_LISTED 16
struct cv_orphan_report {
	unsigned found;            /* marked key ids no row needs */
	unsigned destroyed;        /* ...of them destroyed (token.destroy_orphan_keys) */
	unsigned failed;           /* ...of them the token would not destroy */
	unsigned listed;           /* entries filled in keys (the first CV_ORPHANS_LISTED) */
	struct {
		char id_hex[2 * CV_TOKEN_ID_LEN + 1];
		int has_private;   /* 0: only a public key object carries the id */
		int destroyed;
	} keys[CV_ORPHANS_LISTED];
	char first_error[256];     /* why the first failed destroy failed */
};
/* Finds them, after cv_vault_reconcile at start and before serving; destroys each when
 * destroy is non-zero (each destroy durable before the next). Returns 0 (destroys that fail
 * are counted, not fatal), or CV_ERR_DB / CV_ERR_NOMEM when the rows cannot be read. */
int cv_vault_orphans(struct cv_vault *v, int destroy, struct cv_orphan_report *ret_report,
		     struct cv_errmsg *err);

/* Services. A request as the client sent it; strings borrowed, domains as given. */
struct cv_service_request {
	const char *name;
	const char *environment;
	const char *description;   /* NULL: "" */
	size_t n_domains;
	const char *const *domains;
};

/* Creates or updates a service: name and environment follow the name rule, domains are
 * 1..CV_SERVICE_MAX_DOMAINS DNS names (cv_x509_domain_normalize), none twice. A service in
 * use keeps its certificate, which must cover the new domains. Returns 0 (*ret_created),
 * CV_ERR_INVALID_NAME, CV_ERR_BAD_REQUEST, CV_ERR_DOMAIN_NOT_COVERED or CV_ERR_DB. */
int cv_vault_service_put(struct cv_vault *v, struct cv_audit *audit,
			 const struct cv_service_request *req, int64_t now, int *ret_created,
			 struct cv_errmsg *err);
/* Reads a service. 0, CV_ERR_INVALID_NAME, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_vault_service_get(struct cv_vault *v, const char *name,
			 struct cv_service_record **ret_svc, struct cv_errmsg *err);
/* Deletes a service (it stops using its certificate). 0, CV_ERR_INVALID_NAME,
 * CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_vault_service_delete(struct cv_vault *v, struct cv_audit *audit, const char *name,
			    struct cv_errmsg *err);
/* The service uses the certificate from now on, if it covers every domain of the service.
 * 0, CV_ERR_INVALID_NAME, CV_ERR_NOT_FOUND, CV_ERR_DOMAIN_NOT_COVERED, CV_ERR_DB. */
int cv_vault_service_bind(struct cv_vault *v, struct cv_audit *audit, const char *name,
			  const char *certificate, int64_t now, struct cv_errmsg *err);
/* The service stops using its certificate. 0, CV_ERR_INVALID_NAME, CV_ERR_NOT_FOUND (no such
 * service, or it uses none), CV_ERR_DB. */
int cv_vault_service_unbind(struct cv_vault *v, struct cv_audit *audit, const char *name,
			    int64_t now, struct cv_errmsg *err);
/* One page of services. 0 or CV_ERR_DB. */
int cv_vault_service_list(struct cv_vault *v, const struct cv_service_filter *filter,
			  struct cv_service_page **ret_page, struct cv_errmsg *err);

/* JWKs. A JWK is made from a certificate's public key and stays linked to it. */
/* Makes a JWK from the current version of a certificate (alg and use NULL for their
 * defaults) and stores it linked (audit's target the new kid). Returns 0 and *ret_rec (the
 * caller's), CV_ERR_INVALID_NAME,
 * CV_ERR_NOT_FOUND, CV_ERR_BAD_REQUEST (alg or use does not fit), CV_ERR_BAD_CHAIN,
 * CV_ERR_NAME_TAKEN (that key is already a JWK), CV_ERR_DB. */
int cv_vault_jwk_create(struct cv_vault *v, struct cv_audit *audit, const char *certificate,
			const char *alg, const char *use, int64_t now,
			struct cv_jwk_record **ret_rec, struct cv_errmsg *err);
/* Reads or deletes one JWK by kid. 0, CV_ERR_BAD_REQUEST (not a kid), CV_ERR_NOT_FOUND,
 * CV_ERR_DB. */
int cv_vault_jwk_get(struct cv_vault *v, const char *kid, struct cv_jwk_record **ret_rec,
		     struct cv_errmsg *err);
int cv_vault_jwk_delete(struct cv_vault *v, struct cv_audit *audit, const char *kid,
			struct cv_errmsg *err);
/* The management listing: at most limit (1..999) JWKs in kid order after the kid after
 * (NULL: from the first), every state, linked or not; only those linked to certificate
 * when it is not NULL. *ret_more says a next page exists. 0 (*ret_recs the caller's, free
 * with cv_store_jwks_free), CV_ERR_BAD_REQUEST (a kid that is not one), CV_ERR_NOT_FOUND
 * (no such certificate), CV_ERR_DB. */
int cv_vault_jwk_list(struct cv_vault *v, const char *certificate, const char *after,
		      unsigned limit, struct cv_jwk_record **ret_recs, size_t *ret_n,
		      int *ret_more, struct cv_errmsg *err);
/* The same, only the JWKs of certificates inside scope (NULL: all). */
int cv_vault_jwk_list_scoped(struct cv_vault *v, const char *certificate, const char *after,
			     unsigned limit, const struct cv_scope_objects *scope,
			     struct cv_jwk_record **ret_recs, size_t *ret_n, int *ret_more,
			     struct cv_errmsg *err);
/* The public JWKS document at now as compact JSON text (malloc'd) and a strong validator of
 * it (a hash of the text, unquoted): the active JWKs, and those superseded less than
 * v->jwks_retention seconds ago (nothing in the document tells them apart). 0, CV_ERR_DB,
 * CV_ERR_NOMEM. */
int cv_vault_jwks_document(struct cv_vault *v, int64_t now, char **ret_text, size_t *ret_len,
			   char ret_tag[65], struct cv_errmsg *err);

/* Signatures for clients (src/vault/sign.c): a key used without its PIN, the signature made
 * in the token. */
enum cv_sign_format {
	CV_SIGN_FORMAT_DEFAULT = 0,  /* DER for the ecdsa-* names, else the raw form */
	CV_SIGN_FORMAT_RAW,          /* ECDSA as r || s (JOSE); RSA and Ed25519 have only it */
	CV_SIGN_FORMAT_DER,          /* ECDSA as a DER ECDSA-Sig-Value (openssl, X.509) */
};
struct cv_sign_request {
	const char *algorithm;       /* a name cv_x509_sign_alg_find takes */
	const unsigned char *digest; /* the hash the client made ... */
	size_t digest_len;
	const unsigned char *message;/* ... or the message (hashed here; Ed25519 signs it) */
	size_t message_len;
	int64_t version;             /* whose key: 0 the current version's */
	enum cv_sign_format format;
};
#define CV_SIGN_MESSAGE_MAX (512 * 1024)
struct cv_sign_result {
	const struct cv_sign_alg *alg;
	int64_t version;             /* the version whose key signed */
	enum cv_sign_format format;  /* RAW or DER, as made */
	unsigned char signature[CV_TOKEN_SIG_MAX + 16];
	size_t len;
	char key_uri[512];           /* the key's PKCS#11 URI */
};
/* Signs req's digest (or message) with the key of the certificate name (its version
 * req->version, default the current one) inside the token, and records it (audit's target
 * the name, detail the algorithm and version; see cv_vault_audit_use: no signature is given
 * out unrecorded). The certificate must be valid now (CV_ERR_EXPIRED, CV_ERR_NOT_YET_VALID),
 * have a key (CV_ERR_NO_PRIVATE_KEY), the algorithm fit the key (CV_ERR_ALGORITHM_MISMATCH),
 * the digest the algorithm's hash (CV_ERR_DIGEST_LENGTH). RSA signatures are verified before
 * they leave (a faulty RSA-CRT signature would give the key away). Returns 0 and *ret, or
 * those errors, CV_ERR_BAD_REQUEST, CV_ERR_INVALID_NAME, CV_ERR_NOT_FOUND (no such
 * certificate or version, or its key is gone from the token), CV_ERR_TOKEN,
 * CV_ERR_TOKEN_UNAVAILABLE, CV_ERR_DB; every outcome is counted (cv_vault_sign_counts). */
int cv_vault_cert_sign(struct cv_vault *v, struct cv_audit *audit, const char *name,
		       const struct cv_sign_request *req, int64_t now, struct cv_sign_result *ret,
		       struct cv_errmsg *err);
/* A compact JWS over payload (base64url) with the key of the JWK kid: its protected header
 * as cv_jws_signing_input makes it (alg the JWK's, kid set), signed in the token with the key
 * of the certificate version the JWK was made from, which must be the JWK's key. The JWK must
 * be for signing (CV_ERR_ALGORITHM_MISMATCH) and active and linked (CV_ERR_NOT_ACTIVE), its
 * certificate valid now; recorded as cv_vault_cert_sign records (target the kid). Returns 0
 * with *ret_jws (malloc'd, the caller's), *ret_alg, *ret_cert (the certificate's name,
 * 65 bytes) and *ret_version, or the errors of cv_vault_cert_sign. */
int cv_vault_jwk_sign(struct cv_vault *v, struct cv_audit *audit, const char *kid,
		      const json_t *header, const char *payload, size_t payload_len, int64_t now,
		      char **ret_jws, size_t *ret_len, const struct cv_sign_alg **ret_alg,
		      char ret_cert[65], int64_t *ret_version, struct cv_errmsg *err);
/* Calls fn for every (algorithm, outcome) counted since the start with its count: alg is an
 * algorithm's name or "unknown", outcome 0 for a signature made or the error refused. */
void cv_vault_sign_counts(void (*fn)(const char *alg, int outcome, uint64_t n, void *arg),
			  void *arg);

/* The truststore: CA certificates trusted under an alias. */
struct cv_trust_add {
	const char *alias;         /* one entry: its alias; a bundle of n: alias-1 .. alias-n */
	size_t n_aliases;          /* or an alias for each entry, in order */
	const char *const *aliases;
	const char *certificate;   /* PEM (one or a bundle), base64 DER, base64 of PEM */
	size_t certificate_len;
	enum cv_encoding encoding;
	const char *url;           /* instead of certificate: https://host[:port], ldaps://... */
	const char *keep;          /* with url: "top" (the top-most CA, the default), "all" (every
				      CA), or the position of one in the chain ("1") */
	int timeout_ms;            /* with url */
};
/* Adds CA certificates: each must be a CA (CV_ERR_NOT_CA), valid now (CV_ERR_EXPIRED,
 * CV_ERR_NOT_YET_VALID), not already trusted (CV_ERR_SAME_CERTIFICATE naming the alias), under
 * an alias that follows the name rule, is not "export" and is free (CV_ERR_NAME_TAKEN). All
 * or none. *ret_aliases (the caller's, free()) lists the aliases added, in order; audit's
 * target is the first. Also CV_ERR_BAD_REQUEST, CV_ERR_BAD_ENCODING, CV_ERR_UNREACHABLE
 * (url), CV_ERR_DB. */
int cv_vault_trust_add(struct cv_vault *v, struct cv_audit *audit, const struct cv_trust_add *req,
		       int64_t now, char (**ret_aliases)[65], size_t *ret_n,
		       struct cv_errmsg *err);
/* What cv_vault_trust_add would find, without adding (POST /v1/truststore/preview): the
 * entries it would make (aliases[i], infos[i]; n of them) and every problem. */
struct cv_trust_preview {
	size_t n;
	char (*aliases)[65];
	struct cv_x509_info **infos;
	size_t n_problems;
	struct cv_preview_problem problems[CV_PREVIEW_PROBLEMS_MAX];
};
/* Runs every check of cv_vault_trust_add on req (a url is fetched, as the add would) and
 * stores nothing. 0 and *ret_preview (the caller's), or CV_ERR_DB, CV_ERR_NOMEM. */
int cv_vault_trust_preview(struct cv_vault *v, const struct cv_trust_add *req, int64_t now,
			   struct cv_trust_preview **ret_preview, struct cv_errmsg *err);
/* Accepts NULL. */
void cv_vault_trust_preview_free(struct cv_trust_preview *p);
/* One entry (alias) or all in alias order (alias NULL). 0, CV_ERR_INVALID_NAME,
 * CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_vault_trust_get(struct cv_vault *v, const char *alias, struct cv_trust_record **ret_recs,
		       size_t *ret_n, struct cv_errmsg *err);
/* A page of entries (see cv_store_trust_search): limit entries at most, *ret_more when there
 * are others after them. 0, CV_ERR_BAD_REQUEST, CV_ERR_DB. */
int cv_vault_trust_list(struct cv_vault *v, const char *q, const char *after, unsigned limit,
			struct cv_trust_record **ret_recs, size_t *ret_n, int *ret_more,
			int64_t *ret_total, struct cv_errmsg *err);
/* The details of a certificate's DER as the views show them (*ret_info the caller's), from
 * the vault's cache when it has them. 0, CV_ERR_BAD_ENCODING, CV_ERR_NOMEM. */
int cv_vault_cert_info(struct cv_vault *v, const unsigned char *der, size_t len,
		       struct cv_x509_info **ret_info);
/* Removes an entry. 0, CV_ERR_INVALID_NAME, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_vault_trust_delete(struct cv_vault *v, struct cv_audit *audit, const char *alias,
			  struct cv_errmsg *err);
/* The truststore as a PEM bundle in alias order, each certificate after a "# alias" line. */
int cv_vault_trust_export_pem(struct cv_vault *v, char **ret_text, size_t *ret_len,
			      struct cv_errmsg *err);
/* The truststore as a PKCS#12 file that Java's keytool lists as one trustedCertEntry per
 * entry, in alias order, under password (see cv_x509_truststore_pkcs12); an empty truststore
 * gives a valid file with no entry. *ret_der (malloc'd) is the caller's. 0,
 * CV_ERR_BAD_REQUEST (no password, or not 1 to CV_X509_TRUSTSTORE_PASSWORD_MAX printable
 * ASCII characters), CV_ERR_NAME_TAKEN (two aliases differ only in case: Java would make
 * them one entry), CV_ERR_DB, CV_ERR_NOMEM, CV_ERR_INTERNAL. */
int cv_vault_trust_export_pkcs12(struct cv_vault *v, const char *password,
				 unsigned char **ret_der, size_t *ret_len, struct cv_errmsg *err);
/* Whether the certificate named, with its stored chain, verifies up to the truststore now:
 * 1 or 0 with OpenSSL's reason in why; or an error. */
int cv_vault_cert_chain_trusted(struct cv_vault *v, const char *name, int64_t now,
				struct cv_errmsg *why, struct cv_errmsg *err);

/* CRLs in the truststore: one per CA entry, a newer one replacing the older. */
/* Adds a CRL (PEM, base64 DER, base64 of PEM) that a truststore CA issued (its subject is
 * the CRL's issuer and its key verifies the CRL; else CV_ERR_UNKNOWN_ISSUER), dated
 * this_update not after now (CV_ERR_NOT_YET_VALID), newer than the one that CA has
 * (CV_ERR_SAME_CERTIFICATE); a stale one is taken (it is listed as such, and a check then
 * cannot tell). audit's target is the CA's alias. ret_alias gets it. Also
 * CV_ERR_BAD_ENCODING, CV_ERR_DB. */
int cv_vault_crl_add(struct cv_vault *v, struct cv_audit *audit, const char *text, size_t len,
		     enum cv_encoding enc, int64_t now, char ret_alias[65], struct cv_errmsg *err);
/* Every CRL in the alias order of their CAs (*ret_recs the caller's). 0 or CV_ERR_DB. */
int cv_vault_crl_list(struct cv_vault *v, struct cv_crl_record **ret_recs, size_t *ret_n,
		      struct cv_errmsg *err);
/* Removes the CRL of the CA under alias. 0, CV_ERR_INVALID_NAME, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_vault_crl_delete(struct cv_vault *v, struct cv_audit *audit, const char *alias,
			struct cv_errmsg *err);

/* Scoped API tokens (issue 18 part 3): least privilege for API clients. Every route names
 * the action it does (the route table); a token's scope may name the actions it may do and
 * the objects it may touch (struct cv_scope_objects). A scoped token can do only what both
 * its role and its scope allow; an unscoped one what its role allows. */
enum cv_scope_action {
	CV_SCOPE_UNSET = 0,        /* a route that names none: the route table test fails */
	CV_SCOPE_ANY,              /* nothing to scope: public routes, /v1/me, signing out */
	CV_SCOPE_READ,             /* details, lists, versions, JWKs, truststore, inventory */
	CV_SCOPE_EXPORT,           /* a certificate's PEM, DER, chain, public key, JWK */
	CV_SCOPE_IMPORT,           /* a new certificate (or a preview of one) */
	CV_SCOPE_GENERATE,         /* a key born in the token; its CSR's merge */
	CV_SCOPE_EDIT,             /* description, environments, tags, rename */
	CV_SCOPE_RENEW,
	CV_SCOPE_REPLACE,
	CV_SCOPE_DELETE,           /* certificates, pending keys, services, environments, JWKs */
	CV_SCOPE_BIND,             /* a certificate to a service, or unbind */
	CV_SCOPE_SIGN,             /* a signature made with a certificate's key */
	CV_SCOPE_JWK,              /* a JWK made from a certificate */
	CV_SCOPE_SERVICE,          /* create or change a service */
	CV_SCOPE_ENVIRONMENT,      /* create or change an environment */
	CV_SCOPE_TRUSTSTORE,       /* add or remove trusted CAs and CRLs (the whole truststore) */
	CV_SCOPE_AUDIT,            /* the whole audit trail and its verification */
	CV_SCOPE_METRICS,          /* the whole of /metrics */
	CV_SCOPE_ADMIN,            /* certvault-wide settings (notification channels...) */
	CV_SCOPE_TOKENS,           /* API tokens: never in a scope (a scoped token could mint a
				      wider one) */
	CV_SCOPE__COUNT
};
/* The name of an action ("read", "bind"), "" for CV_SCOPE_UNSET and CV_SCOPE_ANY. */
const char *cv_scope_action_name(enum cv_scope_action action);
/* The action called s. 0 or CV_ERR_BAD_REQUEST. */
int cv_scope_action_parse(const char *s, enum cv_scope_action *ret);

struct cv_scope {
	int scoped;                /* 0: none, the role alone decides */
	uint32_t actions;          /* bit (1 << action) of each action it may do */
	struct cv_scope_objects objects;
};
/* Whether scope lets action be done (always, when it is not scoped). */
int cv_scope_allows(const struct cv_scope *scope, enum cv_scope_action action);
/* Reads a scope as the API takes it: {"actions": [...], "certificates": [globs],
 * "services": [globs], "environments": [names]}, actions required and not empty, each
 * list of at most CV_SCOPE_MAX distinct entries; JSON null: no scope. Checks the form only
 * (cv_vault_token_create_scoped checks that the environments exist). 0 or
 * CV_ERR_BAD_REQUEST with err saying what is wrong. */
int cv_scope_from_json(const json_t *json, struct cv_scope *ret, struct cv_errmsg *err);
/* The scope as the API shows it; JSON null when not scoped. NULL: out of memory. */
json_t *cv_scope_json(const struct cv_scope *scope);

/* Who asks: the API token a request came with (role 0 and empty names: nobody). */
struct cv_actor {
	char id[CV_API_TOKEN_ID_LEN + 1];
	char name[65];
	enum cv_role role;
	int64_t expires_at;        /* when the token stops working; 0: never */
	int64_t last_used_at;      /* as recorded before this request (cv_vault_token_seen) */
	struct cv_scope scope;     /* its scope (scope.scoped 0: none) */
};

/* One request's audit record in the making. The HTTP layer says who, what and on what; the
 * use case adds the fingerprints it learns and writes the record in the transaction of its
 * change (written set); a request that changed nothing is recorded as refused by
 * cv_vault_audit_refused. NULL where a use case takes one: nothing is recorded. */
struct cv_audit {
	struct cv_audit_entry entry;
	int written;
	enum cv_role role;        /* the actor's role, for use cases whose rule depends on the
				     target (the certificate HTTPS serves); 0: no token */
	int scoped;               /* the actor's token is scoped: a refusal names no object
				     the scope may not reach (the services using a
				     certificate) */
};
void cv_audit_begin(struct cv_audit *a, const struct cv_actor *who, const char *action,
		    const char *target, const char *request_id, int64_t now);
/* Adds a SHA-256 fingerprint (once; those past the record's room are left out). a may be
 * NULL: nothing. */
void cv_audit_fingerprint(struct cv_audit *a, const char *fingerprint);
/* The client's address, for the record (and for counting its refusals). */
void cv_audit_source(struct cv_audit *a, const char *source);
/* Records a as refused with the API's error code, unless the change wrote it. The first
 * refusal of a source, actor, action and error is written at once; its repeats within
 * audit.repeat_interval are counted and written as one record with the count when the
 * interval ends (or the trail is read, or certvaultd stops). 0, CV_ERR_DB or the audit key's
 * error. */
int cv_vault_audit_refused(struct cv_vault *v, struct cv_audit *a, const char *error_code);
/* Records a as a done use of a key (a signature), which changes nothing and may come a
 * thousand times a second: the first use of an actor, action, target and detail (the
 * algorithm) is written at once, its repeats within audit.sign_interval are counted as
 * refusals are and written as one record with the count. 0 when the first record is written
 * or the use counted; CV_ERR_DB or the audit key's error when the first record could not be
 * written (the caller then refuses: no use goes unrecorded). */
int cv_vault_audit_use(struct cv_vault *v, struct cv_audit *a);

/* "admin", "operator", "auditor". */
const char *cv_role_name(enum cv_role role);
/* 0 or CV_ERR_BAD_REQUEST. */
int cv_role_parse(const char *s, enum cv_role *ret);

/* An API token as the client holds it: "cvt_", the 16 hex digits of its id, "_", and 43
 * base64url characters of a 256-bit random secret. Only its SHA-256 is kept. */
#define CV_API_TOKEN_LEN 64
/* Makes a token under name (the name rule) with role, expiring at expires_at (0: never; else
 * after now). *ret_secret (CV_API_TOKEN_LEN + 1 bytes) is the token, shown once: the caller
 * wipes it. 0, CV_ERR_INVALID_NAME, CV_ERR_BAD_REQUEST, CV_ERR_NAME_TAKEN, CV_ERR_DB. */
int cv_vault_token_create(struct cv_vault *v, struct cv_audit *audit, const char *name,
			  enum cv_role role, int64_t expires_at, int64_t now,
			  struct cv_api_token *ret_token, char *ret_secret, struct cv_errmsg *err);
/* The same with a scope (NULL or not scoped: none). The scope's environments must exist
 * (CV_ERR_UNKNOWN_ENVIRONMENT naming the first that does not); they are kept as the
 * environments spell them. */
int cv_vault_token_create_scoped(struct cv_vault *v, struct cv_audit *audit, const char *name,
				 enum cv_role role, const struct cv_scope *scope,
				 int64_t expires_at, int64_t now, struct cv_api_token *ret_token,
				 char *ret_secret, struct cv_errmsg *err);
/* The scope a token row holds into *ret (not scoped when it holds none). 0, or CV_ERR_DB
 * when the stored text is not a scope certvault wrote. */
int cv_vault_token_scope(const struct cv_api_token *t, struct cv_scope *ret);
/* Records that actor's token was used at now from source, at most once a minute per token
 * (from actor->last_used_at, as authentication read it): a failure to record is not the
 * request's, and is only returned. 0 or CV_ERR_DB. */
int cv_vault_token_seen(struct cv_vault *v, const struct cv_actor *actor, const char *source,
			int64_t now);
/* Whether scope lets in the certificate name, the service name (its environment looked up
 * once) or the JWK kid (its certificate's): 0 with *ret_inside 1 or 0, CV_ERR_DB. An object
 * that does not exist is inside when its name alone could be: the use case answers that it
 * does not exist. */
int cv_vault_scope_cert(struct cv_vault *v, const struct cv_scope *scope, const char *name,
			int *ret_inside, struct cv_errmsg *err);
int cv_vault_scope_service(struct cv_vault *v, const struct cv_scope *scope, const char *name,
			   int *ret_inside, struct cv_errmsg *err);
int cv_vault_scope_jwk(struct cv_vault *v, const struct cv_scope *scope, const char *kid,
		       int *ret_inside, struct cv_errmsg *err);
/* Whether scope's environments let in the environment name (1 or 0; 1 when it names none),
 * and its certificate and service patterns the name (1 or 0). */
int cv_scope_environment_in(const struct cv_scope *scope, const char *name);
int cv_scope_cert_name_in(const struct cv_scope *scope, const char *name);
int cv_scope_service_name_in(const struct cv_scope *scope, const char *name);
/* Whether scope lets in the service a certificate's usage names (its name and its
 * environment): what may be named to the caller of a certificate's view, list row or
 * inventory row (1 or 0; 1 when not scoped). */
int cv_scope_usage_in(const struct cv_scope *scope, const struct cv_cert_usage *u);
/* The objects a scoped list shows: NULL when scope is not scoped (everything). */
const struct cv_scope_objects *cv_scope_list_objects(const struct cv_scope *scope);
/* Every token, newest first, never a secret. 0 (*ret the caller's, free()), CV_ERR_DB. */
int cv_vault_token_list(struct cv_vault *v, struct cv_api_token **ret, size_t *ret_n,
			struct cv_errmsg *err);
/* Revokes at once: the next request with it is refused. 0, CV_ERR_NOT_FOUND (unknown or
 * already revoked), CV_ERR_DB. */
int cv_vault_token_revoke(struct cv_vault *v, struct cv_audit *audit, const char *id,
			  int64_t now, struct cv_errmsg *err);
/* Who the bearer token is: 0 with *ret filled, CV_ERR_UNAUTHORIZED (malformed, unknown,
 * revoked or expired: the secret's hash is compared in constant time), CV_ERR_DB. */
int cv_vault_authenticate(struct cv_vault *v, const char *bearer, int64_t now,
			  struct cv_actor *ret, struct cv_errmsg *err);
/* On a database that never had a token: makes an admin token named "admin" and writes it to
 * path (created mode 0600, owner only; a file left by an attempt that did not finish is
 * replaced), *ret_created 1. Else nothing, *ret_created 0. The token is never logged. 0,
 * CV_ERR_CONFIG (the file cannot be written), CV_ERR_DB. */
int cv_vault_token_bootstrap(struct cv_vault *v, const char *path, int64_t now,
			     int *ret_created, struct cv_errmsg *err);

/* Console sessions (issue 12). The browser holds a cookie "cvs_<id>_<secret>" (same shape
 * and strength as an API token); only the secret's SHA-256 is stored. A session acts as the
 * API token it was opened with (its name, id and role) and ends with it. Its CSRF token is
 * derived from the cookie, so it is never stored and a database read cannot forge it. */
#define CV_SESSION_COOKIE_LEN 64
#define CV_SESSION_CSRF_LEN 43
struct cv_session_view {
	char id[CV_SESSION_ID_LEN + 1];
	char csrf[CV_SESSION_CSRF_LEN + 1];
	int64_t expires_at;        /* the absolute end */
	int64_t idle_expires_at;   /* the end if no request comes before it */
};
/* Signs in with an API token: checks it as cv_vault_authenticate does, makes a session that
 * ends lifetime seconds from now (or idle seconds after its last request), and writes audit
 * (may be NULL) with the token as actor in the same transaction. ret_cookie
 * (CV_SESSION_COOKIE_LEN + 1 bytes) is the cookie's value: the caller wipes it. 0,
 * CV_ERR_UNAUTHORIZED, CV_ERR_DB, CV_ERR_INTERNAL. */
int cv_vault_session_create(struct cv_vault *v, struct cv_audit *audit, const char *api_token,
			    int64_t now, int64_t idle, int64_t lifetime, char *ret_cookie,
			    struct cv_actor *ret_actor, struct cv_session_view *ret_view,
			    struct cv_errmsg *err);
/* Who a session cookie is: its token's actor and the session's view. A session past its end,
 * idle too long, or whose token was revoked or expired is refused. 0, CV_ERR_UNAUTHORIZED,
 * CV_ERR_DB. */
int cv_vault_session_authenticate(struct cv_vault *v, const char *cookie, int64_t now,
				  int64_t idle, struct cv_actor *ret_actor,
				  struct cv_session_view *ret_view, struct cv_errmsg *err);
/* Whether csrf is the session's CSRF token (constant time): 1 or 0. */
int cv_vault_session_csrf_ok(const struct cv_session_view *view, const char *csrf);
/* Signs out: removes the session, with audit in the same transaction. 0, CV_ERR_NOT_FOUND,
 * CV_ERR_DB. */
int cv_vault_session_end(struct cv_vault *v, struct cv_audit *audit, const char *id,
			 struct cv_errmsg *err);

/* The key of key_id in the token, for what serves with it (the HTTPS listener): whether it
 * is there, and a signature made inside the token (see cv_token_sign). */
int cv_vault_key_exists(struct cv_vault *v, const uint8_t *key_id, size_t id_len,
			int64_t named_at);
int cv_vault_key_sign(struct cv_vault *v, const uint8_t *key_id, size_t id_len,
		      const struct cv_token_sign_params *params, const unsigned char *data,
		      size_t data_len, unsigned char *sig, size_t *sig_len,
		      struct cv_errmsg *err);

/* A snapshot of the token's operation counters (metrics). */
void cv_vault_token_stats(struct cv_vault *v, struct cv_token_stats *ret);
/* The database's commits, WAL syncs and checkpoints so far (metrics). */
void cv_vault_store_sync_stats(struct cv_vault *v, struct cv_store_sync_stats *ret);

/* Appends a record of a change whose use case did not write it with the change (a bug the
 * HTTP layer reports): late, in its own transaction. 0 or CV_ERR_DB. */
int cv_vault_audit_late(struct cv_vault *v, struct cv_audit *a);

/* The audit trail: a page (see cv_store_audit_list) and the whole chain's check. */
int cv_vault_audit_list(struct cv_vault *v, const struct cv_audit_filter *filter,
			struct cv_audit_record **ret_recs, size_t *ret_n, struct cv_errmsg *err);
int cv_vault_audit_verify(struct cv_vault *v, struct cv_audit_verdict *ret,
			  struct cv_errmsg *err);

/* The audit chain's settings. */
struct cv_audit_settings {
	const char *key_label;          /* the HMAC key's CKA_LABEL */
	int create_key;                 /* generate the key when the token has none */
	int64_t repeat_interval;        /* seconds one refusal's repeats are counted (0: each
					   refusal is its own record) */
	int64_t anonymous_per_minute;   /* refusals without a valid token a source may have a
					   minute (0: no limit) ... */
	int64_t anonymous_burst;        /* ... and at once, before it is answered 429 */
	int64_t use_interval;           /* seconds the signatures of one token, key and algorithm
					   are counted after the first (0: each is its own
					   record) */
	int64_t link_rotate;            /* seconds a link key keys new records before the next
					   one is derived (0: one per start) */
};
struct cv_audit_key_report {
	int created;                    /* the key was generated now */
	int64_t keyed_from;             /* the first record the key covers (0: unknown) */
	int64_t checkpoint;             /* the seq of the checkpoint that starts the keyed part of
					   a chain begun without a key (0: none written) */
};
/* Finds the audit key in the token by label (or generates it, its CKA_ID naming the next
 * seq, when create_key and the token has none), keys the store's chain with it, and writes
 * the "audit.keyed" checkpoint when the chain so far is unkeyed. Call once at start, before
 * anything appends. 0, CV_ERR_CONFIG (a keyed chain and no key), the token's or the
 * database's error. */
int cv_vault_audit_init(struct cv_vault *v, const struct cv_audit_settings *settings,
			int64_t now, struct cv_audit_key_report *ret, struct cv_errmsg *err);
/* Writes the counts not written yet, then forgets the key (the key stays in the token). */
void cv_vault_audit_release(struct cv_vault *v, int64_t now);
/* Writes the counts of refusals whose interval is over (all of them when all is set). 0 or
 * the first write's error. */
int cv_vault_audit_flush(struct cv_vault *v, int64_t now, int all);
/* Counts one refusal of a request without a valid token from source against the rate limit
 * (a token bucket per address, per /64 for IPv6): 0, or CV_ERR_RATE_LIMITED with the seconds
 * to wait in *ret_retry_after. */
int cv_vault_refusal_throttle(struct cv_vault *v, const char *source, int64_t now_ms,
			      int64_t *ret_retry_after);
/* The audit key's attributes as the token reports them. */
int cv_vault_audit_key_attrs(struct cv_vault *v, struct cv_token_key_attrs *ret,
			     struct cv_errmsg *err);

/* What an archive holds (and, for a check, what was found). */
struct cv_audit_archive_report {
	int64_t first, through, records;      /* records == 0: nothing was archived */
	char head[2 * CV_AUDIT_HASH_LEN + 1]; /* the hash of its last record */
	char sha256[2 * CV_AUDIT_HASH_LEN + 1]; /* of the whole file */
	int64_t first_bad;                    /* a check: 0 when every record holds */
	char reason[160];
};
/* Moves every record older than before into a new file at path (JSON lines, each record as
 * stored, then a line describing the whole), made durable before the records are removed;
 * the removal and a keyed "audit.archive" checkpoint naming the range, its head hash and the
 * file's SHA-256 are one transaction, so the live chain still verifies. Nothing older:
 * records 0 and no file. 0, CV_ERR_CONFIG (the file), CV_ERR_PRECONDITION (the trail changed
 * meanwhile: nothing removed, no file), the database's or the token's error. */
int cv_vault_audit_archive(struct cv_vault *v, const char *path, int64_t before, int64_t now,
			   struct cv_audit_archive_report *ret, struct cv_errmsg *err);
/* Checks an archive file on its own: every record's hash (keyed ones with the token's key)
 * and link, and the last line's description. 0 with first_bad 0 when it holds, or first_bad
 * and reason; CV_ERR_CONFIG (unreadable), CV_ERR_BAD_ENCODING (not an archive), or the
 * token's error. */
int cv_vault_audit_archive_verify(struct cv_vault *v, const char *path,
				  struct cv_audit_archive_report *ret, struct cv_errmsg *err);

/* Backups (src/vault/backup.c). A backup is a POSIX tar of two members: manifest.json (what
 * the copy holds: time, schema version, the audit chain's head, every key id it needs) and
 * certvault.db (a consistent copy of the database, one file). */
#define CV_BACKUP_FORMAT "certvault-backup"
struct cv_backup_params {
	const char *db_path;        /* the live database */
	const char *tmp_dir;        /* a private directory for the copy while it is made */
	const char *version;        /* certvault's, for the manifest */
	const char *token_label;
	const char *audit_key_label;
	int64_t now;
};
struct cv_backup_summary {
	int64_t schema_version;
	int64_t audit_records;
	size_t keys;
	uint64_t db_bytes;
	char head[2 * CV_AUDIT_HASH_LEN + 1]; /* "" when the trail is empty */
};
/* Writes a backup of p->db_path to out_fd (a file, or the HTTP layer's temporary file): the
 * database copied with SQLite's online backup API while certvaultd may be writing it (every
 * change committed before the copy began is in it), then its manifest. Needs neither the
 * token nor the PIN. 0, CV_ERR_DB (the database), CV_ERR_CONFIG (a file) or CV_ERR_NOMEM. */
int cv_vault_backup_write(const struct cv_backup_params *p, int out_fd,
			  struct cv_backup_summary *ret, struct cv_errmsg *err);
/* Appends a's record (a backup taken through the API, what sum says it holds) in its own
 * transaction. 0 or the store's or the audit key's error. */
int cv_vault_backup_audit(struct cv_vault *v, struct cv_audit *a,
			  const struct cv_backup_summary *sum);
/* The temporary files of a backup (the database's copy, the tar of --backup and of POST
 * /v1/backup) and of a restore start with these, in the directory they are made in. */
#define CV_BACKUP_TEMP_PREFIX ".certvault-backup-"
#define CV_RESTORE_TEMP_PREFIX ".certvault-restore-"
/* Locks a temporary file made with those prefixes (fd open on it) as being written: the
 * lock lasts while fd is open. 0, or -1 with errno. */
int cv_backup_temp_lock(int fd);
typedef void cv_vault_leftover_fn(const char *name, uint64_t bytes, void *arg);
/* Removes from dir the temporary files a backup or restore cut short left (a crash, a
 * kill): regular files of this user named with the prefixes above that no running backup
 * or restore holds locked. fn (may be NULL) is told each one removed. Returns how many, or
 * CV_ERR_CONFIG when dir cannot be read. */
int cv_vault_backup_leftovers(const char *dir, cv_vault_leftover_fn *fn, void *arg,
			      struct cv_errmsg *err);
#define CV_BACKUP_MISSING_LISTED 20
struct cv_backup_verdict {
	int intact;                 /* the manifest, the database and its audit chain agree */
	char reason[200];           /* the first thing that did not, when !intact */
	int64_t schema_version;
	char created_at[32];
	char head[2 * CV_AUDIT_HASH_LEN + 1];
	int64_t audit_records;      /* records the walk checked */
	int64_t audit_first_bad;
	size_t keys;                /* keys the copy needs */
	size_t keys_missing;        /* ...that this token lacks */
	char db_sha256[2 * CV_AUDIT_HASH_LEN + 1]; /* the manifest's, of the database it holds */
	char missing[CV_BACKUP_MISSING_LISTED][96]; /* "name vN (row)" of the first ones */
};
/* Checks a backup file: its manifest against the database it carries (SHA-256, schema
 * version, audit head, key ids), the copy's audit chain with the token's key labelled
 * audit_key_label, and which of its keys v's token lacks. The copy is made in tmp_dir and
 * removed. 0 with the verdict, or CV_ERR_CONFIG (unreadable), CV_ERR_BAD_ENCODING (not a
 * backup), the database's or the token's error. */
int cv_vault_backup_verify(struct cv_vault *v, const char *file, const char *tmp_dir,
			   const char *audit_key_label, struct cv_backup_verdict *ret,
			   struct cv_errmsg *err);

/* certvaultd --restore: a backup's database put in place of (or where there is no) database
 * file. SQLite only. */
struct cv_restore_params {
	const char *backup;         /* the backup file (a tar from --backup or POST /v1/backup) */
	const char *db_path;        /* where the database goes */
	int overwrite;              /* an existing database there may be replaced */
	int allow_missing_keys;     /* restore although the token lacks keys the copy needs */
	const char *audit_key_label;
};
/* Restores p->backup's database at p->db_path: checks the backup as cv_vault_backup_verify
 * does (refused unless intact, and unless every key it needs is in v's token or
 * p->allow_missing_keys), writes its database beside p->db_path (a locked temporary file,
 * made durable, the very bytes the check verified), and renames it into place, so that the
 * path holds the old database or the whole new one and nothing between. An existing database
 * is refused unless p->overwrite, and while another process has it open; its WAL is folded
 * into it first, so none is left to apply to the new file. *ret: the backup's verdict.
 * Returns 0, or CV_ERR_CONFIG (refused, or a file error), CV_ERR_IN_USE, CV_ERR_BAD_ENCODING
 * (not a backup, not intact), CV_ERR_TOKEN (keys missing), the store's or token's error;
 * err says why. Nothing is changed unless it returns 0. */
int cv_vault_backup_restore(struct cv_vault *v, const struct cv_restore_params *p,
			    struct cv_backup_verdict *ret, struct cv_errmsg *err);

/* What the check of the database against the token found: the keys rows need to serve (a
 * certificate's current version's, a kept version's) and those the token lacks (a database
 * restored onto a token that lost keys, or keys destroyed behind certvault's back). */
struct cv_key_check {
	unsigned needed;
	unsigned missing;
	unsigned missing_current;   /* ...of them a current version's: its certificate cannot sign */
};
/* Calls fn (may be NULL) for each missing key; stops at fn's first non-zero value. 0, fn's
 * value or CV_ERR_DB. No token call: the token's map of keys is consulted. */
int cv_vault_keys_check(struct cv_vault *v,
			int (*fn)(const struct cv_store_key_ref *ref, void *arg), void *arg,
			struct cv_key_check *ret, struct cv_errmsg *err);

#endif
