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
int h_cert_import(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err);
int h_cert_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err);
int h_cert_summary(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err);
int h_cert_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err);
int h_cert_patch(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
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
int h_jwk_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	      struct cv_errmsg *err);
int h_jwk_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err);
int h_jwks_document(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err);
int h_trust_add(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
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

/* An array member of at most max names (strings of at most CV_NAME_MAX bytes, no NUL; the
 * name rule is the use case's), pointers into obj in ret (room for max): 0 with *ret_n and
 * *ret_present (absent or null: 0), or CV_ERR_BAD_REQUEST naming the member. */
int json_names_member(json_t *obj, const char *key, size_t max, const char **ret, size_t *ret_n,
		      int *ret_present, struct cv_errmsg *err);

/* Parses the body as one JSON object whose members are all among allowed (NULL-terminated).
 * Refuses a missing or non-JSON content type (CV_ERR_UNSUPPORTED_MEDIA), bad JSON, duplicate
 * keys, other top-level types and unknown members (CV_ERR_BAD_REQUEST). */
int req_json_object(const struct cv_request *req, const char *const *allowed, json_t **ret,
		    struct cv_errmsg *err);
/* As req_json_object, and also takes a multipart/form-data body (a browser's file upload):
 * each field becomes a member of the same name, a string (a file's bytes as they are, other
 * fields UTF-8), except "check_chain" ("true" or "false") and "version" (digits), which
 * become the boolean and the integer a JSON body would hold. *ret_form says which it was. */
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

/* Sets res to a JSON body with status; steals body. Returns 0 or CV_ERR_NOMEM. */
int res_json(struct cv_response *res, int status, json_t *body);

/* JSON for the views handlers share: an RFC 3339 time (null when it cannot be shown), an
 * array of strings, a string or null; strings that are not UTF-8 (a stored value from
 * before text was checked) are shown escaped (cv_text_json). NULL only when out of memory. */
json_t *time_json(int64_t t);
json_t *strings_json(char *const *v, size_t n);
json_t *string_or_null(const char *s);
/* The pagination arguments of a list: limit (default 50, 1 to 1000) and cursor (a name). */
int req_page_args(const struct cv_request *req, int64_t *ret_limit, const char **ret_cursor,
		  struct cv_errmsg *err);

#endif
