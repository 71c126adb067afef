/* Handlers for /v1/truststore: trusted CA certificates under an alias. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/util.h"
#include "handlers.h"

#define PEM_MAX (256 * 1024)
#define URL_MAX 300
#define FETCH_TIMEOUT_MS 10000

static json_t *trust_json(const struct cv_trust_record *t, int64_t now, int64_t soon_seconds)
{
	enum cv_status status = cv_status_at((time_t)t->not_before, (time_t)t->not_after,
					     (time_t)now, soon_seconds);

	return json_pack("{s:o, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:I, s:o, s:o}", "alias",
			 cv_text_json(t->alias), "subject", t->subject, "issuer", t->issuer, "serial_number",
			 t->serial, "sha256_fingerprint", t->sha256_fingerprint,
			 "key_description", t->key_description, "valid_from",
			 time_json(t->not_before), "valid_to", time_json(t->not_after), "status",
			 cv_status_name(status), "expires_in_days",
			 (json_int_t)cv_expires_in_days((time_t)t->not_after, (time_t)now),
			 "source", cv_text_json(t->source), "created_at", time_json(t->created_at));
}

static json_t *trust_list_json(const struct cv_trust_record *recs, size_t n, int64_t now,
			       int64_t soon_seconds)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++) {
		if (json_array_append_new(a, trust_json(&recs[i], now, soon_seconds)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int h_trust_add(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err)
{
	static const char *const allowed[] = { "alias", "aliases", "certificate", "encoding",
					       "url", "keep", NULL };
	const char *aliases[CV_X509_MAX_CHAIN + 1];
	struct cv_trust_add in = { 0 };
	struct cv_trust_record *one = NULL;
	char (*added)[65] = NULL;
	size_t n_added = 0, i, n;
	const char *encoding;
	json_t *body = NULL, *list, *item, *items = NULL;
	int r;

	r = req_json_object(req, allowed, &body, err);
	if (r < 0)
		goto out;
	if ((r = json_string_member(body, "alias", 0, CV_NAME_MAX * 4, &in.alias, NULL, err)) < 0 ||
	    (r = json_material_member(body, "certificate", 0, PEM_MAX, &in.certificate,
				      &in.certificate_len, err)) < 0 ||
	    (r = json_string_member(body, "encoding", 0, 16, &encoding, NULL, err)) < 0 ||
	    (r = json_string_member(body, "url", 0, URL_MAX, &in.url, NULL, err)) < 0 ||
	    (r = json_string_member(body, "keep", 0, 16, &in.keep, NULL, err)) < 0)
		goto out;
	if (cv_x509_encoding_parse(encoding, &in.encoding) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "\"encoding\" must be pem, base64 or base64pem");
		goto out;
	}
	if ((in.certificate == NULL) == (in.url == NULL)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "give either \"certificate\" or \"url\"");
		goto out;
	}
	if (in.keep != NULL && in.url == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"keep\" goes with \"url\"");
		goto out;
	}
	/* certvaultd opens a connection where the caller says: only an admin may aim it. */
	if (in.url != NULL && req->actor.role != CV_ROLE_ADMIN) {
		r = cv_errmsg_set(err, CV_ERR_FORBIDDEN, "fetching from a URL is for the admin role");
		goto out;
	}
	list = json_object_get(body, "aliases");
	if (list != NULL) {
		if (!json_is_array(list) || json_array_size(list) == 0 ||
		    json_array_size(list) > CV_X509_MAX_CHAIN + 1 || in.alias != NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "\"aliases\" is an array of 1 to %d names, instead of"
					  " \"alias\"",
					  CV_X509_MAX_CHAIN + 1);
			goto out;
		}
		json_array_foreach(list, i, item) {
			if (!json_is_string(item) ||
			    strlen(json_string_value(item)) != json_string_length(item)) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						  "alias %zu must be a string", i + 1);
				goto out;
			}
			aliases[i] = json_string_value(item);
		}
		in.aliases = aliases;
		in.n_aliases = json_array_size(list);
	} else if (in.alias == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"alias\" is required");
		goto out;
	}
	in.timeout_ms = FETCH_TIMEOUT_MS;
	r = cv_vault_trust_add(&app->vault, req->audit, &in, req->now, &added, &n_added, err);
	if (r < 0)
		goto out;
	items = json_array();
	for (i = 0; items != NULL && i < n_added; i++) {
		r = cv_vault_trust_get(&app->vault, added[i], &one, &n, err);
		if (r < 0)
			goto out;
		if (json_array_append_new(items, trust_json(one, req->now,
							    app->vault.soon_seconds)) < 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		cv_store_trust_free(one, n);
		one = NULL;
	}
	r = res_json(res, 201, json_pack("{s:O}", "items", items));
out:
	json_decref(items);
	cv_store_trust_free(one, 1);
	free(added);
	json_decref(body);
	return r;
}

int h_trust_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	struct cv_trust_record *recs = NULL;
	size_t n = 0;
	int r;

	r = cv_vault_trust_get(&app->vault, NULL, &recs, &n, err);
	if (r == 0)
		r = res_json(res, 200,
			     json_pack("{s:o}", "items",
				       trust_list_json(recs, n, req->now, app->vault.soon_seconds)));
	cv_store_trust_free(recs, n);
	return r;
}

int h_trust_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err)
{
	struct cv_trust_record *recs = NULL;
	size_t n = 0;
	int r;

	r = cv_vault_trust_get(&app->vault, req->params[0], &recs, &n, err);
	if (r == 0)
		r = res_json(res, 200, trust_json(&recs[0], req->now, app->vault.soon_seconds));
	cv_store_trust_free(recs, n);
	return r;
}

int h_trust_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	int r;

	r = cv_vault_trust_delete(&app->vault, req->audit, req->params[0], err);
	if (r == 0)
		r = res_json(res, 200,
			     json_pack("{s:s, s:b}", "alias", req->params[0], "deleted", 1));
	return r;
}

/* format=pkcs12 takes its password from the query, like every other argument of this GET:
 * certvaultd logs paths without their query strings, and the file guards public CA
 * certificates (the password is the file's integrity check, not a secret's cover). There is
 * no default: a password everybody knows, such as Java's changeit, is the caller's choice to
 * make out loud. */
int h_trust_export(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	const char *format, *password;
	unsigned char *der = NULL;
	char *text = NULL;
	size_t len;
	int r;

	format = req_query(req, "format");
	password = req_query(req, "password");
	if (format == NULL || strcmp(format, "pem") == 0) {
		if (password != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "a PEM bundle has no password: password goes with "
					     "format=pkcs12");
		r = cv_vault_trust_export_pem(&app->vault, &text, &len, err);
		if (r < 0)
			return r;
		res->raw = (unsigned char *)text;
		res->raw_len = len;
		res->content_type = "application/x-pem-file";
		snprintf(res->disposition, sizeof(res->disposition),
			 "attachment; filename=\"truststore.pem\"");
		res->status = 200;
		return 0;
	}
	if (strcmp(format, "pkcs12") == 0) {
		if (password == NULL || password[0] == '\0')
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "format=pkcs12 needs a password for the file: "
					     "password=... (Java's default truststore password is "
					     "changeit)");
		r = cv_vault_trust_export_pkcs12(&app->vault, password, &der, &len, err);
		if (r < 0)
			return r;
		res->raw = der;
		res->raw_len = len;
		res->content_type = "application/x-pkcs12";
		snprintf(res->disposition, sizeof(res->disposition),
			 "attachment; filename=\"truststore.p12\"");
		res->status = 200;
		return 0;
	}
	return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "format must be pem or pkcs12");
}

/* CRLs: the one of each truststore CA that issued one. */

static json_t *crl_json(const struct cv_crl_record *c, int64_t now)
{
	int stale = c->next_update != 0 && c->next_update < now;

	return json_pack("{s:s, s:s, s:o, s:o, s:o, s:I, s:s, s:s, s:o}", "alias", c->alias,
			 "issuer", c->issuer, "this_update", time_json(c->this_update),
			 "next_update", c->next_update != 0 ? time_json(c->next_update) : json_null(),
			 "number", string_or_null(c->number[0] != '\0' ? c->number : NULL),
			 "revoked_count", (json_int_t)c->n_revoked, "sha256", c->sha256, "status",
			 stale ? "stale" : "current", "created_at", time_json(c->created_at));
}

int h_crl_add(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	      struct cv_errmsg *err)
{
	static const char *const allowed[] = { "crl", "encoding", NULL };
	struct cv_crl_record *recs = NULL;
	const char *text, *encoding;
	enum cv_encoding enc;
	json_t *body = NULL;
	char alias[65];
	size_t len = 0, n = 0, i;
	int r;

	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = json_material_member(body, "crl", 1, 2 * CV_X509_CRL_MAX, &text, &len, err);
	if (r == 0)
		r = json_string_member(body, "encoding", 0, 16, &encoding, NULL, err);
	if (r < 0)
		goto out;
	if (cv_x509_encoding_parse(encoding, &enc) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "\"encoding\" must be pem, base64 or base64pem");
		goto out;
	}
	r = cv_vault_crl_add(&app->vault, req->audit, text, len, enc, req->now, alias, err);
	if (r == 0)
		r = cv_vault_crl_list(&app->vault, &recs, &n, err);
	if (r < 0)
		goto out;
	for (i = 0; i < n; i++)
		if (strcmp(recs[i].alias, alias) == 0)
			break;
	if (i == n) {
		r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "the CRL was deleted meanwhile");
		goto out;
	}
	r = res_json(res, 201, crl_json(&recs[i], req->now));
out:
	cv_store_crls_free(recs, n);
	json_decref(body);
	return r;
}

int h_crl_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err)
{
	struct cv_crl_record *recs = NULL;
	json_t *items;
	size_t n = 0, i;
	int r;

	r = cv_vault_crl_list(&app->vault, &recs, &n, err);
	if (r < 0)
		return r;
	items = json_array();
	for (i = 0; items != NULL && i < n; i++) {
		if (json_array_append_new(items, crl_json(&recs[i], req->now)) < 0) {
			json_decref(items);
			items = NULL;
		}
	}
	cv_store_crls_free(recs, n);
	if (items == NULL)
		return CV_ERR_NOMEM;
	return res_json(res, 200, json_pack("{s:o}", "items", items));
}

int h_crl_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	int r;

	r = cv_vault_crl_delete(&app->vault, req->audit, req->params[0], err);
	if (r == 0)
		r = res_json(res, 200,
			     json_pack("{s:s, s:b}", "alias", req->params[0], "deleted", 1));
	return r;
}
