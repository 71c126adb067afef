/* Handlers for /v1/services: services, their domains, and the certificate each uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/util.h"
#include "handlers.h"

/* The certificate a service uses, as the service's view shows it; hidden: the caller's
 * scope does not reach it, so it learns that the service uses one, never which. */
static json_t *service_cert_json(const struct cv_service_record *svc, int hidden, int64_t now,
				 int64_t soon_seconds)
{
	char tag[CV_VERSION_TAG_LEN], etag[CV_VERSION_TAG_LEN + 2];
	enum cv_status status;

	if (svc->cert_name[0] == '\0')
		return json_null();
	if (hidden)
		return json_pack("{s:b}", "out_of_scope", 1);
	status = cv_status_at((time_t)svc->cert_not_before, (time_t)svc->cert_not_after,
			      (time_t)now, soon_seconds);
	cv_vault_version_tag(svc->cert_version, svc->cert_sha256_fingerprint, tag);
	snprintf(etag, sizeof(etag), "\"%s\"", tag);
	return json_pack("{s:s, s:I, s:s, s:s, s:o, s:s, s:I, s:s}", "name", svc->cert_name,
			 "version", (json_int_t)svc->cert_version, "serial_number",
			 svc->cert_serial, "sha256_fingerprint", svc->cert_sha256_fingerprint,
			 "valid_to", time_json(svc->cert_not_after), "status",
			 cv_status_name(status), "expires_in_days",
			 (json_int_t)cv_expires_in_days((time_t)svc->cert_not_after, (time_t)now),
			 "etag", etag);
}

static json_t *service_json(const struct cv_service_record *svc, int hidden, int64_t now,
			    int64_t soon_seconds)
{
	return json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "name", svc->name,
			 "environment", svc->environment, "description", cv_text_json(svc->description),
			 "domains", strings_json(svc->domains, svc->n_domains), "certificate",
			 service_cert_json(svc, hidden, now, soon_seconds), "bound_at",
			 svc->cert_name[0] != '\0' ? time_json(svc->bound_at) : json_null(),
			 "created_at", time_json(svc->created_at), "updated_at",
			 time_json(svc->updated_at));
}

/* Whether the certificate svc uses is outside the scope of req's token (*ret_hidden 1): the
 * dispatch let the service in, which says nothing of the certificate a service in the scope
 * may use (bound by someone else). Judged as the dispatch judges a certificate the path
 * names. */
static int service_cert_hidden(struct cv_app *app, const struct cv_request *req,
			       const struct cv_service_record *svc, int *ret_hidden,
			       struct cv_errmsg *err)
{
	int inside = 1, r;

	*ret_hidden = 0;
	if (!req->actor.scope.scoped || svc->cert_name[0] == '\0')
		return 0;
	r = cv_vault_scope_cert(&app->vault, &req->actor.scope, svc->cert_name, &inside, err);
	if (r < 0)
		return r;
	*ret_hidden = !inside;
	return 0;
}

static int service_response(struct cv_app *app, const struct cv_request *req, int status,
			    struct cv_response *res, struct cv_errmsg *err)
{
	struct cv_service_record *svc = NULL;
	int r, hidden = 0;

	r = cv_vault_service_get(&app->vault, req->params[0], &svc, err);
	if (r < 0)
		return r;
	r = service_cert_hidden(app, req, svc, &hidden, err);
	if (r == 0)
		r = res_json(res, status,
			     service_json(svc, hidden, req->now, app->vault.soon_seconds));
	cv_store_service_free(svc);
	return r;
}

int h_service_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	const char *wait = req_query(req, "wait");
	int64_t seconds = 0;
	int r;

	/* ?wait=N with If-None-Match: the server holds the answer while it would be 304, for up
	 * to N seconds (a deploy agent's long poll); the handler only says how long. */
	if (wait != NULL && cv_parse_int64(wait, 1, 300, &seconds) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "wait must be 1 to 300 seconds");
	r = service_response(app, req, 200, res, err);
	if (r == 0 && req->if_none_match != NULL)
		res->wait_seconds = seconds;
	return r;
}

int h_service_put(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	static const char *const allowed[] = { "environment", "domains", "description", NULL };
	const char *domains[CV_SERVICE_MAX_DOMAINS];
	struct cv_service_request in = { 0 };
	json_t *body = NULL, *list, *item;
	size_t i;
	int r, created = 0;

	r = req_json_object(req, allowed, &body, err);
	if (r < 0)
		goto out;
	if ((r = json_string_member(body, "environment", 1, CV_NAME_MAX * 4, &in.environment,
				    NULL, err)) < 0 ||
	    (r = json_string_member(body, "description", 0, CV_DESCRIPTION_MAX, &in.description,
				    NULL, err)) < 0)
		goto out;
	list = json_object_get(body, "domains");
	if (list == NULL || !json_is_array(list)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "\"domains\" is required: an array of domain names");
		goto out;
	}
	if (json_array_size(list) == 0 || json_array_size(list) > CV_SERVICE_MAX_DOMAINS) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a service has 1 to %d domains",
				  CV_SERVICE_MAX_DOMAINS);
		goto out;
	}
	json_array_foreach(list, i, item) {
		if (!json_is_string(item) || json_string_length(item) > CV_DNS_NAME_MAX + 1 ||
		    strlen(json_string_value(item)) != json_string_length(item)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "domain %zu must be a domain name of at most %d bytes",
					  i + 1, CV_DNS_NAME_MAX);
			goto out;
		}
		domains[i] = json_string_value(item);
	}
	in.name = req->params[0];
	in.domains = domains;
	in.n_domains = json_array_size(list);
	r = cv_vault_service_put(&app->vault, req->audit, &in, req->now, &created, err);
	if (r < 0)
		goto out;
	r = service_response(app, req, created ? 201 : 200, res, err);
out:
	json_decref(body);
	return r;
}

int h_service_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err)
{
	int r;

	r = cv_vault_service_delete(&app->vault, req->audit, req->params[0], err);
	if (r < 0)
		return r;
	return res_json(res, 200, json_pack("{s:s, s:b}", "name", req->params[0], "deleted", 1));
}

int h_service_bind(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	static const char *const allowed[] = { "certificate", NULL };
	const char *certificate;
	json_t *body = NULL;
	int r;

	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = json_string_member(body, "certificate", 1, CV_NAME_MAX * 4, &certificate, NULL,
				       err);
	if (r == 0)
		r = cv_vault_service_bind(&app->vault, req->audit, req->params[0], certificate,
					  req->now, err);
	if (r == 0)
		r = service_response(app, req, 200, res, err);
	json_decref(body);
	return r;
}

int h_service_unbind(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err)
{
	int r;

	r = cv_vault_service_unbind(&app->vault, req->audit, req->params[0], req->now, err);
	if (r == 0)
		r = service_response(app, req, 200, res, err);
	return r;
}

int h_service_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	struct cv_service_filter filter = { 0 };
	struct cv_service_page *page = NULL;
	json_t *items = NULL;
	int64_t limit;
	size_t i;
	int r, hidden;

	r = req_page_args(req, &limit, &filter.after, err);
	if (r < 0)
		goto out;
	filter.environment = req_query(req, "environment");
	filter.certificate = req_query(req, "certificate");
	filter.limit = (unsigned)limit;
	filter.scope = cv_scope_list_objects(&req->actor.scope);
	r = cv_vault_service_list(&app->vault, &filter, &page, err);
	if (r < 0)
		goto out;
	items = json_array();
	for (i = 0; items != NULL && i < page->n; i++) {
		r = service_cert_hidden(app, req, page->items[i], &hidden, err);
		if (r < 0) {
			json_decref(items);
			goto out;
		}
		if (json_array_append_new(items, service_json(page->items[i], hidden, req->now,
							      app->vault.soon_seconds)) < 0) {
			json_decref(items);
			items = NULL;
		}
	}
	if (items == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = res_json(res, 200,
		     json_pack("{s:o, s:o, s:I}", "items", items, "next_cursor",
			       string_or_null(page->has_more && page->n > 0
						      ? page->items[page->n - 1]->name
						      : NULL),
			       "limit", (json_int_t)limit));
out:
	cv_store_service_page_free(page);
	return r;
}
