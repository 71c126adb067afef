/* Handlers for /v1/deleted-certificates (issue 18 part 2): the certificates a delete put
 * aside for a retention period, their recover and their purge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/text.h"
#include "handlers.h"

static json_t *deleted_json(const struct cv_cert_record *rec)
{
	const struct {
		const char *key;
		json_t *value;
	} members[] = {
		{ "name", cv_text_json(rec->name) },
		{ "description", cv_text_json(rec->description) },
		{ "kind", json_string(rec->is_public ? "public" : "key_pair") },
		{ "domain", cv_text_json(rec->primary_domain) },
		{ "domains", strings_json(rec->domains, rec->n_domains) },
		{ "key_type", json_string(rec->key_description) },
		{ "valid_to", time_json(rec->not_after) },
		{ "version", json_integer((json_int_t)rec->version) },
		{ "tags", tags_json(rec->tags, rec->n_tags) },
		{ "jwks", strings_json(rec->kids, rec->n_kids) },
		{ "deleted_at", time_json(rec->deleted_at) },
		{ "deleted_by", cv_text_json(rec->deleted_by) },
		{ "purge_after", time_json(rec->purge_after) },
	};
	json_t *o = json_object();
	size_t i;

	for (i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
		if (o != NULL && members[i].value != NULL &&
		    json_object_set_new(o, members[i].key, members[i].value) == 0)
			continue;
		json_decref(members[i].value);
		json_decref(o);
		o = NULL;
	}
	return o;
}

int h_deleted_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	struct cv_cert_page *page = NULL;
	const char *after;
	json_t *items = NULL;
	int64_t limit;
	size_t i;
	int r;

	r = req_page_args(req, &limit, &after, err);
	if (r == 0)
		r = cv_vault_deleted_list(&app->vault, after, (unsigned)limit, &page, err);
	if (r < 0)
		return r;
	items = json_array();
	for (i = 0; items != NULL && i < page->n; i++) {
		if (json_array_append_new(items, deleted_json(page->items[i])) < 0) {
			json_decref(items);
			items = NULL;
		}
	}
	if (items == NULL)
		r = CV_ERR_NOMEM;
	else
		r = res_json(res, 200,
			     json_pack("{s:o, s:o, s:I}", "items", items, "next_cursor",
				       string_or_null(page->has_more ? page->items[page->n - 1]->name
								     : NULL),
				       "limit", (json_int_t)limit));
	cv_store_cert_page_free(page);
	return r;
}

int h_deleted_recover(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		      struct cv_errmsg *err)
{
	struct cv_jwk_relink *jwks = NULL;
	json_t *relinked, *lost;
	char name[65];
	size_t n = 0, i;
	int r;

	r = cv_vault_deleted_recover(&app->vault, req->audit, req->params[0], name, &jwks, &n,
				     err);
	if (r < 0)
		return r;
	relinked = json_array();
	lost = json_array();
	for (i = 0; i < n; i++) {
		if (jwks[i].relinked)
			json_array_append_new(relinked, json_string(jwks[i].kid));
		else
			json_array_append_new(lost, json_pack("{s:s, s:s}", "kid", jwks[i].kid,
							      "reason", jwks[i].reason));
	}
	free(jwks);
	/* The certificate's details as GET now answers them, and what became of its JWKs. */
	r = cert_view_response(app, req, name, 200, res, NULL, err);
	if (r < 0) {
		json_decref(relinked);
		json_decref(lost);
		return r;
	}
	json_object_set_new(res->json, "recovered", json_true());
	json_object_set_new(res->json, "jwks_relinked", relinked);
	json_object_set_new(res->json, "jwks_not_relinked", lost);
	return 0;
}

int h_deleted_purge(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err)
{
	int r;

	r = cv_vault_deleted_purge(&app->vault, req->audit, req->params[0],
				   req_query(req, "confirm"), req->now, err);
	if (r < 0)
		return r;
	return res_json(res, 200, json_pack("{s:s, s:b}", "name", req->params[0], "purged", 1));
}
