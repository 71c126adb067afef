/* Handlers for /v1/truststore: trusted CA certificates under an alias. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/util.h"
#include "handlers.h"

#define PEM_MAX (256 * 1024)
#define URL_MAX 300
#define FETCH_TIMEOUT_MS 10000

/* An entry: the view every certificate has (cert_info_status_json), its alias and where it
 * came from; sha256_fingerprint and key_description as the first version of this view
 * named them. */
static json_t *trust_json(struct cv_app *app, const struct cv_trust_record *t, int64_t now)
{
	struct cv_x509_info *info = NULL;
	json_t *o;

	if (cv_vault_cert_info(&app->vault, t->cert_der, t->cert_der_len, &info) < 0)
		return NULL;
	o = cert_info_status_json(info, now, app->vault.soon_seconds);
	cv_x509_info_free(info);
	if (o != NULL &&
	    (json_object_set_new(o, "alias", cv_text_json(t->alias)) < 0 ||
	     json_object_set_new(o, "sha256_fingerprint", json_string(t->sha256_fingerprint)) < 0 ||
	     json_object_set_new(o, "key_description", json_string(t->key_description)) < 0 ||
	     json_object_set_new(o, "source", cv_text_json(t->source)) < 0 ||
	     json_object_set_new(o, "created_at", time_json(t->created_at)) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *trust_list_json(struct cv_app *app, const struct cv_trust_record *recs, size_t n,
			       int64_t now)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++) {
		if (json_array_append_new(a, trust_json(app, &recs[i], now)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* Reads an add (or its preview) from a JSON body or an upload into in, its strings
 * borrowed from *ret_body (the caller's) and aliases (room for CV_X509_MAX_CHAIN + 1). */
static int trust_request(const struct cv_request *req, json_t **ret_body,
			 struct cv_trust_add *in, const char **aliases, struct cv_errmsg *err)
{
	static const char *const allowed[] = { "alias", "aliases", "certificate", "encoding",
					       "url", "keep", NULL };
	const char *encoding;
	json_t *body, *list, *item;
	size_t i;
	int r, form;

	memset(in, 0, sizeof(*in));
	r = req_body_object(req, allowed, ret_body, &form, err);
	if (r < 0)
		return r;
	body = *ret_body;
	/* An uploaded file's bytes may be DER (NULs and all); its form is recognised. */
	if ((r = json_string_member(body, "alias", 0, CV_NAME_MAX * 4, &in->alias, NULL, err)) < 0 ||
	    (r = (form ? json_bytes_member : json_material_member)(body, "certificate", 0, PEM_MAX,
								 &in->certificate,
								 &in->certificate_len, err)) < 0 ||
	    (r = json_string_member(body, "encoding", 0, 16, &encoding, NULL, err)) < 0 ||
	    (r = json_string_member(body, "url", 0, URL_MAX, &in->url, NULL, err)) < 0 ||
	    (r = json_string_member(body, "keep", 0, 16, &in->keep, NULL, err)) < 0)
		return r;
	if (form && encoding != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"encoding\" is for JSON bodies: an "
				     "uploaded file's form is recognised");
	if (form)
		in->encoding = CV_ENC_FILE;
	else if (cv_x509_encoding_parse(encoding, &in->encoding) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "\"encoding\" must be pem, base64 or base64pem");
	if ((in->certificate == NULL) == (in->url == NULL))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "give either \"certificate\" or \"url\"");
	if (in->keep != NULL && in->url == NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"keep\" goes with \"url\"");
	/* certvaultd opens a connection where the caller says: only an admin may aim it. */
	if (in->url != NULL && req->actor.role != CV_ROLE_ADMIN)
		return cv_errmsg_set(err, CV_ERR_FORBIDDEN, "fetching from a URL is for the admin role");
	list = json_object_get(body, "aliases");
	if (list != NULL) {
		if (!json_is_array(list) || json_array_size(list) == 0 ||
		    json_array_size(list) > CV_X509_MAX_CHAIN + 1 || in->alias != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "\"aliases\" is an array of 1 to %d names, instead of"
					     " \"alias\"",
					     CV_X509_MAX_CHAIN + 1);
		json_array_foreach(list, i, item) {
			if (!json_is_string(item) ||
			    strlen(json_string_value(item)) != json_string_length(item))
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "alias %zu must be a string", i + 1);
			aliases[i] = json_string_value(item);
		}
		in->aliases = aliases;
		in->n_aliases = json_array_size(list);
	} else if (in->alias == NULL) {
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"alias\" is required");
	}
	in->timeout_ms = FETCH_TIMEOUT_MS;
	return 0;
}

int h_trust_add(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err)
{
	const char *aliases[CV_X509_MAX_CHAIN + 1];
	struct cv_trust_add in;
	struct cv_trust_record *one = NULL;
	char (*added)[65] = NULL;
	size_t n_added = 0, i, n;
	json_t *body = NULL, *items = NULL;
	int r;

	r = trust_request(req, &body, &in, aliases, err);
	if (r < 0)
		goto out;
	r = cv_vault_trust_add(&app->vault, req->audit, &in, req->now, &added, &n_added, err);
	if (r < 0)
		goto out;
	items = json_array();
	for (i = 0; items != NULL && i < n_added; i++) {
		r = cv_vault_trust_get(&app->vault, added[i], &one, &n, err);
		if (r < 0)
			goto out;
		if (json_array_append_new(items, trust_json(app, one, req->now)) < 0) {
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

int h_trust_preview(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err)
{
	const char *aliases[CV_X509_MAX_CHAIN + 1];
	struct cv_trust_preview *p = NULL;
	struct cv_trust_add in;
	json_t *body = NULL, *entries = NULL, *problems = NULL, *e;
	size_t i;
	int r;

	r = trust_request(req, &body, &in, aliases, err);
	if (r < 0)
		goto out;
	r = cv_vault_trust_preview(&app->vault, &in, req->now, &p, err);
	if (r < 0)
		goto out;
	entries = json_array();
	problems = json_array();
	for (i = 0; entries != NULL && i < p->n; i++) {
		e = cert_info_status_json(p->infos[i], req->now, app->vault.soon_seconds);
		if (e == NULL || json_object_set_new(e, "alias", json_string(p->aliases[i])) < 0 ||
		    json_object_set_new(e, "source", json_string(in.url != NULL ? in.url
										   : "upload")) < 0 ||
		    json_array_append_new(entries, e) < 0) {
			json_decref(entries);
			entries = NULL;
		}
	}
	for (i = 0; problems != NULL && i < p->n_problems; i++)
		if (json_array_append_new(problems,
					  json_pack("{s:s, s:i, s:s}", "code",
						    cv_http_error_code(p->problems[i].code), "status",
						    cv_http_error_status(p->problems[i].code),
						    "message", p->problems[i].message)) < 0) {
			json_decref(problems);
			problems = NULL;
		}
	r = res_json(res, 200, json_pack("{s:b, s:b, s:o, s:o}", "ok", p->n_problems == 0,
					 "stored", 0, "problems", problems, "entries", entries));
	entries = problems = NULL;
out:
	json_decref(entries);
	json_decref(problems);
	cv_vault_trust_preview_free(p);
	json_decref(body);
	return r;
}

int h_trust_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	struct cv_trust_record *recs = NULL;
	const char *cursor, *q;
	int64_t limit, total = 0;
	size_t n = 0;
	int r, more = 0;

	r = req_page_args(req, &limit, &cursor, err);
	if (r < 0)
		return r;
	q = req_query(req, "q");
	if (q != NULL && q[0] == '\0')
		q = NULL;
	r = cv_vault_trust_list(&app->vault, q, cursor, (unsigned)limit, &recs, &n, &more, &total,
				err);
	if (r == 0)
		r = res_json(res, 200,
			     json_pack("{s:o, s:o, s:I, s:I}", "items",
				       trust_list_json(app, recs, n, req->now), "next_cursor",
				       more && n > 0 ? json_string(recs[n - 1].alias) : json_null(),
				       "limit", (json_int_t)limit, "total", (json_int_t)total));
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
		r = res_json(res, 200, trust_json(app, &recs[0], req->now));
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
