/* Internal to the http module: the handlers the route table names, and the request helpers
 * they share. */
#ifndef CV_HTTP_HANDLERS_H
#define CV_HTTP_HANDLERS_H

#include "certvault/http.h"
#include "certvault/text.h"

typedef int (*cv_handler_fn)(struct cv_app *app, const struct cv_request *req,
			     struct cv_response *res, struct cv_errmsg *err);

/* The OpenAPI description (src/http/openapi.c), built once; *ret is a new reference. */
int cv_http_openapi_document(json_t **ret);
int h_openapi(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	      struct cv_errmsg *err);
int h_health(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	     struct cv_errmsg *err);
int h_health_keys(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err);
int h_backup(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	     struct cv_errmsg *err);
int h_me(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	 struct cv_errmsg *err);
int h_cert_import(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err);
int h_cert_preview(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_cert_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err);
int h_cert_summary(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_cert_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err);
int h_cert_patch(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
/* h_deleted.c: deleted certificates (issue 18 part 2). */
int h_deleted_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_deleted_recover(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		      struct cv_errmsg *err);
int h_deleted_purge(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err);
int h_cert_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err);
int h_cert_export(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err);
int h_cert_versions(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err);
int h_cert_renew(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
int h_cert_replace(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_service_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_service_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err);
int h_service_put(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err);
int h_service_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err);
int h_service_bind(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_jwk_create(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
int h_jwk_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err);
int h_jwk_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	      struct cv_errmsg *err);
int h_jwk_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
int h_cert_sign(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err);
int h_jwk_sign(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err);
int h_jwks_document(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err);
int h_trust_add(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err);
int h_trust_preview(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err);
int h_trust_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
int h_trust_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err);
int h_trust_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_trust_export(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_crl_add(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	      struct cv_errmsg *err);
int h_crl_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err);
int h_crl_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
int h_token_create(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_token_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
int h_token_revoke(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_audit_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
int h_audit_verify(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_inventory(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err);
int h_metrics(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	      struct cv_errmsg *err);
int h_service_unbind(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err);
int h_environment_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		       struct cv_errmsg *err);
int h_environment_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		      struct cv_errmsg *err);
int h_environment_put(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		      struct cv_errmsg *err);
int h_environment_delete(struct cv_app *app, const struct cv_request *req,
			 struct cv_response *res, struct cv_errmsg *err);

/* h_notify.c: notifications (issue 18 part 1). */
int h_notify_channel_create(struct cv_app *app, const struct cv_request *req,
			    struct cv_response *res, struct cv_errmsg *err);
int h_notify_channel_list(struct cv_app *app, const struct cv_request *req,
			  struct cv_response *res, struct cv_errmsg *err);
int h_notify_channel_get(struct cv_app *app, const struct cv_request *req,
			 struct cv_response *res, struct cv_errmsg *err);
int h_notify_channel_delete(struct cv_app *app, const struct cv_request *req,
			    struct cv_response *res, struct cv_errmsg *err);
int h_notify_deliveries(struct cv_app *app, const struct cv_request *req,
			struct cv_response *res, struct cv_errmsg *err);
int h_cert_notify_get(struct cv_app *app, const struct cv_request *req,
		      struct cv_response *res, struct cv_errmsg *err);
int h_cert_notify_put(struct cv_app *app, const struct cv_request *req,
		      struct cv_response *res, struct cv_errmsg *err);

/* An array member of at most max names (strings of at most CV_NAME_MAX bytes, no NUL; the
 * name rule is the use case's), pointers into obj in ret (room for max): 0 with *ret_n and
 * *ret_present (absent or null: 0), or CV_ERR_BAD_REQUEST naming the member. */
int json_names_member(json_t *obj, const char *key, size_t max, const char **ret, size_t *ret_n,
		      int *ret_present, struct cv_errmsg *err);
int h_console_redirect(struct cv_app *app, const struct cv_request *req,
		       struct cv_response *res, struct cv_errmsg *err);
int h_console_index(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err);
int h_console_asset(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err);
int h_session_create(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err);
int h_session_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err);
int h_session_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err);
/* The name of the session cookie on req's listener. */
const char *req_session_cookie_name(const struct cv_request *req);

/* h_certs.c: answers with the details view of a certificate (at req's time, within its
 * caller's scope) and its ETag; *ret_view, when asked for, is the caller's. */
int cert_view_response(struct cv_app *app, const struct cv_request *req, const char *name,
		       int status, struct cv_response *res, struct cv_cert_view **ret_view,
		       struct cv_errmsg *err);
/* h_certs.c: an import's revocation outcome, to the log (why fetches failed) and to the
 * answer; the optional "check_chain" member. */
void log_revocation(const struct cv_request *req, const struct cv_revocation *rev);
int add_revocation(const struct cv_revocation *rev, struct cv_response *res);
int check_chain_member(json_t *body, int *ret, struct cv_errmsg *err);
/* h_generate.c: POST /v1/certificates with "generate"; the view of a pending certificate
 * (with its CSR when with_csr); GET /v1/certificates?status=pending. */
int cert_generate(struct cv_app *app, const struct cv_request *req, json_t *body, int form,
		  struct cv_response *res, struct cv_errmsg *err);
int cert_renew_generate(struct cv_app *app, const struct cv_request *req, json_t *body,
			int form, struct cv_response *res, struct cv_errmsg *err);
/* h_certs.c: the version a renew or replace (or a renewal's merge) names. */
int version_ref(const struct cv_request *req, json_t *body, struct cv_version_ref *ref,
		struct cv_errmsg *err);
int pending_view_response(struct cv_app *app, const char *name, int with_csr,
			  struct cv_response *res, struct cv_errmsg *err);
/* Whether a scoped request's lists show the pending certificate rec: as its details would
 * be judged, except that a new certificate (no row yet, so no environments) is shown only
 * when the scope has no environment limit. 0 and *ret_inside, or the database's error. */
int pending_in_scope(struct cv_app *app, const struct cv_request *req,
		     const struct cv_pending_record *rec, int *ret_inside, struct cv_errmsg *err);
int pending_list_response(struct cv_app *app, const struct cv_request *req,
			  struct cv_response *res, struct cv_errmsg *err);
int h_cert_csr(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err);
int h_cert_merge(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
int h_wrapping_key(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
/* The "wrapped_key" member of an import into in (decoded buffers the caller frees with
 * free(): *ret_bufs[0..1]). */
int wrapped_key_member(json_t *body, struct cv_import_request *in, unsigned char *ret_bufs[2],
		       struct cv_errmsg *err);
int h_pending_cancel(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err);

/* Parses the body as one JSON object whose members are all among allowed (NULL-terminated).
 * Refuses a missing or non-JSON content type (CV_ERR_UNSUPPORTED_MEDIA), bad JSON, duplicate
 * keys, other top-level types and unknown members (CV_ERR_BAD_REQUEST). */
int req_json_object(const struct cv_request *req, const char *const *allowed, json_t **ret,
		    struct cv_errmsg *err);
/* As req_json_object, and also takes a multipart/form-data body (a browser's file upload):
 * each field becomes the member a JSON body would hold: a file's bytes as they are; text
 * as UTF-8 without NUL (core/text.c); booleans ("true", "false"), integers (digits) and
 * arrays (comma-separated) by the field's name; "object.member" fields as members of the
 * object member ("tags", "generate", "wrapped_key"). A value that does not read as its kind
 * stays a string for the handler to refuse as it refuses it in JSON. *ret_form says which
 * it was. */
int req_body_object(const struct cv_request *req, const char *const *allowed, json_t **ret,
		    int *ret_form, struct cv_errmsg *err);
/* A text member of at most max bytes: 0 and *ret (borrowed from obj, or NULL when absent and
 * not required), or CV_ERR_BAD_REQUEST naming the member. Text is UTF-8 without control
 * characters other than tab, CR and LF, whether it came as a JSON string or as a form's field
 * or file part: the one check every stored text field passes. */
int json_string_member(json_t *obj, const char *key, int required, size_t max,
		       const char **ret, size_t *ret_len, struct cv_errmsg *err);
/* As json_string_member for what a parser reads and nothing stores as text (PEM or base64
 * certificates, keys and CRLs, passwords): no NUL, otherwise as sent. */
int json_material_member(json_t *obj, const char *key, int required, size_t max,
			 const char **ret, size_t *ret_len, struct cv_errmsg *err);
/* As json_string_member, and NUL bytes are content (an uploaded file's bytes). */
int json_bytes_member(json_t *obj, const char *key, int required, size_t max,
		      const char **ret, size_t *ret_len, struct cv_errmsg *err);
/* The value of a query argument, NULL when absent. The dispatch has checked the query
 * against the route table's list (known arguments, once each, UTF-8, not too long). */
const char *req_query(const struct cv_request *req, const char *key);

/* 1 when an If-None-Match header lists etag (or "*"); weak tags compare weakly. */
int http_none_match_hits(const char *header, const char *etag);
/* The ETag a GET's 200 with this body and no tag of the handler's gets (quoted), for a
 * handler that keeps its answer with its tag. 0, or -1 when none can be made. */
#define HTTP_ETAG_SIZE sizeof(((struct cv_response *)0)->etag)
int http_body_etag(const void *body, size_t len, char etag[HTTP_ETAG_SIZE]);
/* The same after handler_tag (a quoted tag the handler put in res->etag, or "": then the
 * same as http_body_etag), for a handler that keeps a tagged answer. 0, or -1. */
int http_tagged_etag(const char *handler_tag, const void *body, size_t len,
		     char etag[HTTP_ETAG_SIZE]);
/* For a GET answered 200 without etag_final: sets res->etag from the body's bytes (after
 * the handler's tag, when it set one) and, when If-None-Match names it, res->status 304
 * and returns 1 (send no body). Else 0. */
int http_conditional(const struct cv_request *req, struct cv_response *res,
		     const void *body, size_t len);
/* Sets res to a JSON body with status; steals body. Returns 0 or CV_ERR_NOMEM. */
int res_json(struct cv_response *res, int status, json_t *body);

/* JSON for the views handlers share: an RFC 3339 time (null when it cannot be shown), an
 * array of strings, a string or null; strings that are not UTF-8 (a stored value from
 * before text was checked) are shown escaped (cv_text_json). NULL only when out of memory. */
json_t *time_json(int64_t t);
/* Tags stored as "key=value" as the object {"key": "value", ...} (h_certs.c). */
json_t *tags_json(char *const *tags, size_t n);
json_t *strings_json(char *const *v, size_t n);
json_t *string_or_null(const char *s);
/* A renew's, replace's (a rollback's) or renewal merge's jwk_changes: {action, jwks: [{kid,
 * alg, use, change (kept, superseded, created, reactivated, adopted, disconnected), state
 * after it, superseded_by, replaces, published_until}]}. NULL only when out of memory. */
json_t *jwk_changes_json(const struct cv_jwk_outcome *o);
/* The view of a certificate's own fields every answer showing one shares (certview.c):
 * common_name, domains, ip_addresses, subject, issuer, serial_number, signature_algorithm
 * and its readable signature_algorithm_name, public_key {type, bits, curve, description},
 * valid_from, valid_to, fingerprints {sha256, sha1}, is_ca; with status and
 * expires_in_days at now in the second. NULL only when out of memory. */
json_t *cert_info_json(const struct cv_x509_info *info);
json_t *cert_info_status_json(const struct cv_x509_info *info, int64_t now,
			      int64_t soon_seconds);
/* The pagination arguments of a list: limit (default 50, 1 to 1000) and cursor (a name). */
int req_page_args(const struct cv_request *req, int64_t *ret_limit, const char **ret_cursor,
		  struct cv_errmsg *err);

#endif
