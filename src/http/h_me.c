/* GET /v1/me: who the caller is and what the route table lets them do, so that a client (the
 * console) draws only the buttons that will work instead of learning from 403s. */
#include <string.h>

#include "handlers.h"

/* Every route the caller's role may call, as the route table says: method, pattern ("{}" is
 * one path segment) and the audit action of a change (null for a read); the change actions
 * alone, each once, in table order; and how many of the routes need the write role. */
static int allowed_json(const struct cv_app *app, enum cv_role role,
			const struct cv_scope *scope, json_t **ret_routes, json_t **ret_actions,
			size_t *ret_writes)
{
	json_t *routes = json_array(), *actions = json_array(), *item;
	struct cv_route_info ri;
	size_t i, j;
	int r = CV_ERR_NOMEM;

	*ret_writes = 0;
	if (routes == NULL || actions == NULL)
		goto out;
	for (i = 0; cv_http_route_at(i, &ri) == 0; i++) {
		/* Public routes need no token; listing them here would only add noise. */
		if (ri.access == CV_R_PUBLIC ||
		    !cv_http_role_may(ri.access, role, app->cfg->metrics_public))
			continue;
		/* A scoped token: only the routes whose action its scope holds (what it
		 * touches is judged per object, so a button may still meet a 403). */
		if (scope->scoped && (ri.scope_action == CV_SCOPE_UNSET ||
				      !cv_scope_allows(scope, ri.scope_action)))
			continue;
		item = json_pack("{s:s, s:s, s:o, s:o}", "method", ri.method, "path", ri.pattern,
				 "action", ri.action != NULL ? json_string(ri.action) : json_null(),
				 "scope_action",
				 cv_scope_action_name(ri.scope_action)[0] != '\0' ?
				 json_string(cv_scope_action_name(ri.scope_action)) : json_null());
		if (json_array_append_new(routes, item) < 0)
			goto out;
		if (ri.access == CV_R_WRITE)
			(*ret_writes)++;
		if (ri.action == NULL)
			continue;
		for (j = 0; j < json_array_size(actions); j++)
			if (strcmp(json_string_value(json_array_get(actions, j)), ri.action) == 0)
				break;
		if (j == json_array_size(actions) &&
		    json_array_append_new(actions, json_string(ri.action)) < 0)
			goto out;
	}
	*ret_routes = routes;
	*ret_actions = actions;
	routes = actions = NULL;
	r = 0;
out:
	json_decref(routes);
	json_decref(actions);
	return r;
}

int h_me(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	 struct cv_errmsg *err)
{
	const struct cv_actor *who = &req->actor;
	json_t *routes = NULL, *actions = NULL;
	size_t writes;
	int r;

	(void)err;
	r = allowed_json(app, who->role, &who->scope, &routes, &actions, &writes);
	if (r < 0)
		return r;
	/* can_*: what the console draws its buttons from, narrowed by a scope: a scoped
	 * token writes only if its scope lets it call a route that needs the write role, never
	 * manages tokens, and audits only with "audit". */
	return res_json(res, 200,
			json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:b, s:b, s:b, s:o}", "name",
				  who->name, "id", who->id, "role", cv_role_name(who->role),
				  "expires_at",
				  who->expires_at != 0 ? time_json(who->expires_at) : json_null(),
				  "allowed", routes, "actions", actions,
				  "can_write", cv_http_role_may(CV_R_WRITE, who->role, 0) && writes > 0,
				  "can_audit", cv_http_role_may(CV_R_AUDIT, who->role, 0) &&
						       cv_scope_allows(&who->scope, CV_SCOPE_AUDIT),
				  "can_admin", cv_http_role_may(CV_R_ADMIN, who->role, 0) &&
						       !who->scope.scoped,
				  "scope", cv_scope_json(&who->scope)));
}
