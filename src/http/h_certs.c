/* Handlers for /v1/certificates: JSON in, a use case, JSON out. */
#include <stdlib.h>
#include <string.h>

#include "certvault/util.h"
#include "handlers.h"

/* Largest certificate, chain or key text a client may paste (the body limit also holds). */
#define PEM_MAX (256 * 1024)
#define PASSWORD_MAX 1024
#define QUERY_MAX 256
#define LIST_LIMIT_DEFAULT 50
#define LIST_LIMIT_MAX 1000

static json_t *time_json(int64_t t)
{
	char buf[CV_TIME_BUFLEN];

	if (cv_time_rfc3339(t, buf, sizeof(buf)) < 0)
		return json_null();
	return json_string(buf);
}

static json_t *strings_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *string_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static const char *key_type_name(enum cv_key_kind kind)
{
	switch (kind) {
	case CV_KEY_RSA:
		return "RSA";
	case CV_KEY_EC:
		return "EC";
	case CV_KEY_ED25519:
		return "OKP";
	}
	return "unknown";
}

/* The details view of DESIGN.md. */
static json_t *view_json(const struct cv_cert_view *v)
{
	const struct cv_cert_record *rec = v->rec;
	const struct cv_x509_info *info = v->info;
	char key_id[2 * CV_TOKEN_ID_LEN + 1];

	cv_hex_encode(rec->key_id, sizeof(rec->key_id), key_id);
	return json_pack(
		"{s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:s, s:s,"
		" s:{s:s, s:i, s:o, s:s},"
		" s:o, s:o, s:I, s:s, s:{s:s, s:s},"
		" s:[], s:I, s:{s:s, s:s, s:s},"
		" s:o, s:o}",
		"name", rec->name, "description", rec->description, "common_name",
		info->common_name, "domains", strings_json(info->domains, info->n_domains),
		"ip_addresses", strings_json(info->ips, info->n_ips), "subject", info->subject,
		"issuer", info->issuer, "serial_number", info->serial, "signature_algorithm",
		info->signature_algorithm,
		"public_key", "type", key_type_name(info->key_kind), "bits", info->key_bits,
		"curve", string_or_null(info->key_curve[0] != '\0' ? info->key_curve : NULL),
		"description",
		info->key_description,
		"valid_from", time_json(info->not_before), "valid_to", time_json(info->not_after),
		"expires_in_days", (json_int_t)v->expires_in_days, "status",
		cv_status_name(v->status), "fingerprints", "sha256", info->sha256_fingerprint,
		"sha1", info->sha1_fingerprint,
		"used_by", "chain_length", (json_int_t)v->chain_length, "key", "pkcs11_uri",
		v->key_uri, "id", key_id, "label", rec->name,
		"created_at", time_json(rec->created_at), "updated_at", time_json(rec->updated_at));
}

static int view_response(struct cv_app *app, const char *name, int64_t now, int status,
			 struct cv_response *res, struct cv_errmsg *err)
{
	struct cv_cert_view *view = NULL;
	int r;

	r = cv_vault_cert_get(&app->vault, name, now, &view, err);
	if (r < 0)
		return r;
	r = res_json(res, status, view_json(view));
	cv_vault_cert_view_free(view);
	return r;
}

int h_cert_import(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	static const char *const allowed[] = { "name", "description", "certificate",
					       "private_key", "password", "chain", "encoding",
					       NULL };
	struct cv_import_request in = { 0 };
	struct cv_cert_record *rec = NULL;
	const char *encoding;
	json_t *body = NULL;
	int r;

	r = req_json_object(req, allowed, &body, err);
	if (r < 0)
		goto out;
	if ((r = json_string_member(body, "name", 1, CV_NAME_MAX * 4, &in.name, NULL, err)) < 0 ||
	    (r = json_string_member(body, "description", 0, CV_DESCRIPTION_MAX, &in.description,
				    NULL, err)) < 0 ||
	    (r = json_string_member(body, "certificate", 1, PEM_MAX, &in.certificate,
				    &in.certificate_len, err)) < 0 ||
	    (r = json_string_member(body, "private_key", 1, PEM_MAX, &in.private_key,
				    &in.private_key_len, err)) < 0 ||
	    (r = json_string_member(body, "password", 0, PASSWORD_MAX, &in.password, NULL,
				    err)) < 0 ||
	    (r = json_string_member(body, "chain", 0, PEM_MAX, &in.chain, &in.chain_len,
				    err)) < 0 ||
	    (r = json_string_member(body, "encoding", 0, 16, &encoding, NULL, err)) < 0)
		goto out;
	if (cv_x509_encoding_parse(encoding, &in.encoding) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "\"encoding\" must be pem, base64 or base64pem");
		goto out;
	}
	r = cv_vault_cert_import(&app->vault, &in, req->now, &rec, err);
	if (r < 0)
		goto out;
	r = view_response(app, rec->name, req->now, 201, res, err);
out:
	cv_store_cert_free(rec);
	json_decref(body); /* wiped on free: it held the key and the password */
	return r;
}

int h_cert_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err)
{
	static const char *const allowed[] = { NULL };
	int r;

	r = req_query_check(req, allowed, 0, err);
	if (r < 0)
		return r;
	return view_response(app, req->params[0], req->now, 200, res, err);
}

int h_cert_patch(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	static const char *const allowed[] = { "description", NULL };
	const char *description;
	json_t *body = NULL;
	int r;

	r = req_json_object(req, allowed, &body, err);
	if (r < 0)
		goto out;
	/* An empty description clears it; leaving it out is a mistake worth saying. */
	r = json_string_member(body, "description", 0, CV_DESCRIPTION_MAX, &description, NULL,
			       err);
	if (r < 0)
		goto out;
	if (description == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"description\" is required");
		goto out;
	}
	r = cv_vault_cert_describe(&app->vault, req->params[0], description, req->now, err);
	if (r < 0)
		goto out;
	r = view_response(app, req->params[0], req->now, 200, res, err);
out:
	json_decref(body);
	return r;
}

int h_cert_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	static const char *const allowed[] = { "confirm", NULL };
	int r;

	r = req_query_check(req, allowed, 64, err);
	if (r < 0)
		return r;
	r = cv_vault_cert_delete(&app->vault, req->params[0], req_query(req, "confirm"), err);
	if (r < 0)
		return r;
	return res_json(res, 200, json_pack("{s:s, s:b}", "name", req->params[0], "deleted", 1));
}

int h_cert_export(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	static const char *const allowed[] = { "format", NULL };
	static const char *const suffix[] = {
		[CV_EXPORT_PEM] = ".pem",
		[CV_EXPORT_DER] = ".der",
		[CV_EXPORT_CHAIN] = "-chain.pem",
		[CV_EXPORT_PUBLIC_KEY] = "-public-key.pem",
	};
	enum cv_export_format format;
	int r;

	r = req_query_check(req, allowed, 16, err);
	if (r < 0)
		return r;
	if (cv_vault_export_format_parse(req_query(req, "format"), &format) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "format must be pem, der, chain or public-key");
	r = cv_vault_cert_export(&app->vault, req->params[0], format, &res->raw, &res->raw_len,
				 &res->content_type, err);
	if (r < 0)
		return r;
	res->status = 200;
	snprintf(res->disposition, sizeof(res->disposition), "attachment; filename=\"%s%s\"",
		 req->params[0], suffix[format]);
	return 0;
}

static json_t *list_item_json(const struct cv_cert_record *rec, int64_t now,
			      int64_t soon_seconds)
{
	enum cv_status status = cv_status_at((time_t)rec->not_before, (time_t)rec->not_after,
					     (time_t)now, soon_seconds);

	return json_pack("{s:s, s:s, s:o, s:[], s:o, s:s, s:I, s:o, s:s}", "name", rec->name,
			 "domain", rec->primary_domain, "domains",
			 strings_json(rec->domains, rec->n_domains), "used_by", "updated_at",
			 time_json(rec->updated_at), "status", cv_status_name(status),
			 "expires_in_days",
			 (json_int_t)cv_expires_in_days((time_t)rec->not_after, (time_t)now),
			 "valid_to", time_json(rec->not_after), "key_type", rec->key_description);
}

int h_cert_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err)
{
	static const char *const allowed[] = { "status", "q", "limit", "cursor", NULL };
	struct cv_cert_filter filter = { 0 };
	struct cv_cert_page *page = NULL;
	const char *s;
	json_t *items = NULL;
	int64_t limit = LIST_LIMIT_DEFAULT;
	size_t i;
	int r;

	r = req_query_check(req, allowed, QUERY_MAX, err);
	if (r < 0)
		goto out;
	if ((s = req_query(req, "status")) != NULL) {
		if (cv_status_parse(s, &filter.status) < 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "status must be valid, expires_soon, expired or upcoming");
			goto out;
		}
		filter.has_status = 1;
	}
	if ((s = req_query(req, "limit")) != NULL &&
	    cv_parse_int64(s, 1, LIST_LIMIT_MAX, &limit) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "limit must be from 1 to %d",
				  LIST_LIMIT_MAX);
		goto out;
	}
	if ((s = req_query(req, "cursor")) != NULL && !cv_name_valid(s)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "cursor must be a next_cursor this API returned");
		goto out;
	}
	filter.after = s;
	filter.q = req_query(req, "q");
	if (filter.q != NULL && filter.q[0] == '\0')
		filter.q = NULL;
	filter.now = req->now;
	filter.limit = (unsigned)limit;
	r = cv_vault_cert_list(&app->vault, &filter, &page, err);
	if (r < 0)
		goto out;
	items = json_array();
	if (items == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < page->n; i++) {
		if (json_array_append_new(items, list_item_json(page->items[i], req->now,
							       app->vault.soon_seconds)) < 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	r = res_json(res, 200,
		     json_pack("{s:o, s:o, s:I}", "items", items, "next_cursor",
			       string_or_null(page->has_more && page->n > 0
						      ? page->items[page->n - 1]->name
						      : NULL),
			       "limit", (json_int_t)limit));
	items = NULL;
out:
	json_decref(items);
	cv_store_cert_page_free(page);
	return r;
}

int h_cert_summary(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	static const char *const allowed[] = { NULL };
	struct cv_cert_counts c;
	int r;

	r = req_query_check(req, allowed, 0, err);
	if (r < 0)
		return r;
	r = cv_vault_cert_count(&app->vault, req->now, &c, err);
	if (r < 0)
		return r;
	/* No service can use a certificate yet: every one is "not in use". */
	return res_json(res, 200,
			json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "total",
				  (json_int_t)c.total, "in_use", (json_int_t)0, "not_in_use",
				  (json_int_t)c.total, "valid", (json_int_t)c.valid, "expires_soon",
				  (json_int_t)c.expires_soon, "expired", (json_int_t)c.expired,
				  "upcoming", (json_int_t)c.upcoming));
}
