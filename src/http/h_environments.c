/* Handlers for /v1/environments: where services run, and what certificates are for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/util.h"
#include "handlers.h"

int json_names_member(json_t *obj, const char *key, size_t max, const char **ret, size_t *ret_n,
		      int *ret_present, struct cv_errmsg *err)
{
	json_t *list = json_object_get(obj, key), *item;
	size_t i;

	*ret_n = 0;
	*ret_present = list != NULL && !json_is_null(list);
	if (!*ret_present)
		return 0;
	if (!json_is_array(list) || json_array_size(list) > max)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "\"%s\" must be an array of at most %zu names", key, max);
	json_array_foreach(list, i, item) {
		if (!json_is_string(item) || json_string_length(item) > CV_NAME_MAX ||
		    strlen(json_string_value(item)) != json_string_length(item))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "\"%s\" entry %zu must be a name of 1 to %d letters,"
					     " digits or hyphens", key, i + 1, CV_NAME_MAX);
		ret[i] = json_string_value(item);
	}
	*ret_n = json_array_size(list);
	return 0;
}

static json_t *environment_json(const struct cv_environment_record *e)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:o}", "name", e->name, "display_name",
			 e->display_name, "description", e->description, "services",
			 (json_int_t)e->n_services, "certificates", (json_int_t)e->n_certificates,
			 "created_at", time_json(e->created_at), "updated_at",
			 time_json(e->updated_at));
}

static int environment_response(struct cv_app *app, const char *name, int status,
				struct cv_response *res, struct cv_errmsg *err)
{
	struct cv_environment_record *e = NULL;
	int r;

	r = cv_vault_environment_get(&app->vault, name, &e, err);
	if (r < 0)
		return r;
	r = res_json(res, status, environment_json(e));
	cv_store_environment_free(e);
	return r;
}

int h_environment_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		      struct cv_errmsg *err)
{
	return environment_response(app, req->params[0], 200, res, err);
}

int h_environment_put(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		      struct cv_errmsg *err)
{
	static const char *const allowed[] = { "display_name", "description", NULL };
	const char *display_name, *description;
	char name[65];
	json_t *body = NULL;
	int r, created = 0;

	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = json_string_member(body, "display_name", 0, CV_DISPLAY_NAME_MAX * 4,
				       &display_name, NULL, err);
	if (r == 0)
		r = json_string_member(body, "description", 0, CV_DESCRIPTION_MAX, &description,
				       NULL, err);
	if (r == 0)
		r = cv_vault_environment_put(&app->vault, req->audit, req->params[0], display_name,
					     description, req->now, &created, name, err);
	if (r == 0)
		r = environment_response(app, name, created ? 201 : 200, res, err);
	json_decref(body);
	return r;
}

int h_environment_delete(struct cv_app *app, const struct cv_request *req,
			 struct cv_response *res, struct cv_errmsg *err)
{
	int r;

	r = cv_vault_environment_delete(&app->vault, req->audit, req->params[0], err);
	if (r < 0)
		return r;
	return res_json(res, 200, json_pack("{s:s, s:b}", "name", req->params[0], "deleted", 1));
}

int h_environment_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		       struct cv_errmsg *err)
{
	struct cv_environment_record *recs = NULL;
	const char *after;
	json_t *items = NULL;
	int64_t limit;
	size_t n = 0, i;
	int r;

	r = req_page_args(req, &limit, &after, err);
	if (r == 0)
		r = cv_vault_environment_list_scoped(&app->vault, after, (unsigned)limit,
						     cv_scope_list_objects(&req->actor.scope),
						     &recs, &n, err);
	if (r < 0)
		return r;
	items = json_array();
	for (i = 0; items != NULL && i < n; i++) {
		if (json_array_append_new(items, environment_json(&recs[i])) < 0) {
			json_decref(items);
			items = NULL;
		}
	}
	if (items == NULL)
		r = CV_ERR_NOMEM;
	else
		r = res_json(res, 200,
			     json_pack("{s:o, s:o, s:I}", "items", items, "next_cursor",
				       string_or_null(n == (size_t)limit && n > 0 ? recs[n - 1].name
										  : NULL),
				       "limit", (json_int_t)limit));
	cv_store_environments_free(recs, n);
	return r;
}
