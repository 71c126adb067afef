/* vault: certvault's use cases. The only layer that uses both the token and the store, and the
 * one that orders writes spanning them so a crash leaves nothing half-done. Thread-safe. */
#ifndef CERTVAULT_VAULT_H
#define CERTVAULT_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "certvault/error.h"
#include "certvault/store.h"
#include "certvault/token.h"
#include "certvault/x509.h"

struct cv_vault {
	struct cv_store *store;   /* borrowed */
	struct cv_token *token;   /* borrowed */
	int64_t soon_seconds;     /* "expires soon" threshold */
	int allow_weak_signatures;
};

/* An import as the client sent it. Strings are borrowed; private_key and password are
 * secrets the caller wipes. */
struct cv_import_request {
	const char *name;
	const char *description;   /* NULL: "" */
	const char *certificate;
	size_t certificate_len;
	const char *private_key;
	size_t private_key_len;
	const char *password;      /* for an encrypted PKCS#8 key; NULL: none */
	const char *chain;         /* NULL: none */
	size_t chain_len;
	enum cv_encoding encoding;
};

/* Limits on metadata a client sets. */
#define CV_DESCRIPTION_MAX 1024

/* Validates and imports: every x509 check, then a pending row, the key in the token, the row
 * made active. Returns 0 and the stored record, or an error with err saying why; on failure
 * nothing is left in the store or the token. */
int cv_vault_cert_import(struct cv_vault *v, const struct cv_import_request *req, int64_t now,
			 struct cv_cert_record **ret_rec, struct cv_errmsg *err);

/* Everything the details view shows. */
struct cv_cert_view {
	struct cv_cert_record *rec;
	struct cv_x509_info *info;
	enum cv_status status;
	int64_t expires_in_days;
	size_t chain_length;      /* intermediates stored with the certificate */
	char key_uri[512];
};
void cv_vault_cert_view_free(struct cv_cert_view *view);

/* Reads one certificate with its parsed details. Returns 0, CV_ERR_INVALID_NAME,
 * CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_vault_cert_get(struct cv_vault *v, const char *name, int64_t now,
		      struct cv_cert_view **ret_view, struct cv_errmsg *err);

/* Sets the description. Returns 0, CV_ERR_INVALID_NAME, CV_ERR_BAD_REQUEST (too long),
 * CV_ERR_NOT_FOUND or CV_ERR_DB. */
int cv_vault_cert_describe(struct cv_vault *v, const char *name, const char *description,
			   int64_t now, struct cv_errmsg *err);

/* Deletes a certificate: needs confirm == "delete" (else CV_ERR_CONFIRM_REQUIRED, nothing
 * changes); marks the row, destroys the key object, removes the row. A token failure puts
 * the row back as it was and returns the token's error. */
int cv_vault_cert_delete(struct cv_vault *v, const char *name, const char *confirm,
			 struct cv_errmsg *err);

/* Export formats of public material. */
enum cv_export_format {
	CV_EXPORT_PEM = 0,
	CV_EXPORT_DER,
	CV_EXPORT_CHAIN,
	CV_EXPORT_PUBLIC_KEY,
};
/* Parses "pem", "der", "chain", "public-key". Returns 0 or CV_ERR_BAD_REQUEST. */
int cv_vault_export_format_parse(const char *s, enum cv_export_format *ret);

/* Exports one certificate's public material: *ret_body (malloc'd, caller frees),
 * *ret_content_type (static). Returns 0, CV_ERR_NOT_FOUND, CV_ERR_DB. */
int cv_vault_cert_export(struct cv_vault *v, const char *name, enum cv_export_format format,
			 unsigned char **ret_body, size_t *ret_len,
			 const char **ret_content_type, struct cv_errmsg *err);

/* One page of the list; filter->soon_seconds is set from the vault. Returns 0 or
 * CV_ERR_DB. */
int cv_vault_cert_list(struct cv_vault *v, struct cv_cert_filter *filter,
		       struct cv_cert_page **ret_page, struct cv_errmsg *err);

/* Counts by status at now. Returns 0 or CV_ERR_DB. */
int cv_vault_cert_count(struct cv_vault *v, int64_t now, struct cv_cert_counts *ret_counts,
			struct cv_errmsg *err);

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
	unsigned deletes_finished; /* deleting rows whose key was destroyed and row removed */
};
/* Finishes or undoes every write a crash interrupted. Run once at start, before serving. */
int cv_vault_reconcile(struct cv_vault *v, struct cv_reconcile_report *ret_report,
		       struct cv_errmsg *err);

#endif
