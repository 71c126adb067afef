/* Scoped API tokens (issue 18 part 3): a scope's form, its text in the database, and the
 * checks of one object against it. The HTTP dispatch decides which check a route needs (its
 * route table says); the lists filter in the store with the same conditions. */
#include <stdio.h>
#include <string.h>

#include "certvault/util.h"
#include "internal.h"

static const char *const action_names[CV_SCOPE__COUNT] = {
	[CV_SCOPE_READ] = "read",         [CV_SCOPE_EXPORT] = "export",
	[CV_SCOPE_IMPORT] = "import",     [CV_SCOPE_GENERATE] = "generate",
	[CV_SCOPE_EDIT] = "edit",         [CV_SCOPE_RENEW] = "renew",
	[CV_SCOPE_REPLACE] = "replace",   [CV_SCOPE_DELETE] = "delete",
	[CV_SCOPE_BIND] = "bind",         [CV_SCOPE_SIGN] = "sign",
	[CV_SCOPE_JWK] = "jwk",           [CV_SCOPE_SERVICE] = "service",
	[CV_SCOPE_ENVIRONMENT] = "environment", [CV_SCOPE_TRUSTSTORE] = "truststore",
	[CV_SCOPE_AUDIT] = "audit",       [CV_SCOPE_METRICS] = "metrics",
	[CV_SCOPE_ADMIN] = "admin",       [CV_SCOPE_TOKENS] = "tokens",
};

const char *cv_scope_action_name(enum cv_scope_action action)
{
	if (action <= CV_SCOPE_ANY || action >= CV_SCOPE__COUNT)
		return "";
	return action_names[action];
}

int cv_scope_action_parse(const char *s, enum cv_scope_action *ret)
{
	int i;

	for (i = CV_SCOPE_READ; s != NULL && i < CV_SCOPE__COUNT; i++)
		if (strcmp(s, action_names[i]) == 0) {
			*ret = (enum cv_scope_action)i;
			return 0;
		}
	return CV_ERR_BAD_REQUEST;
}

int cv_scope_allows(const struct cv_scope *scope, enum cv_scope_action action)
{
	if (!scope->scoped || action == CV_SCOPE_ANY)
		return 1;
	if (action <= CV_SCOPE_ANY || action >= CV_SCOPE__COUNT)
		return 0;
	return (scope->actions & (1u << action)) != 0;
}

/* The grantable actions, for an error message: "read, export, ...". */
static void action_list(char *buf, size_t len)
{
	size_t used = 0;
	int i, n;

	buf[0] = '\0';
	for (i = CV_SCOPE_READ; i < CV_SCOPE_TOKENS && used < len; i++) {
		n = snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "", action_names[i]);
		if (n < 0)
			return;
		used += (size_t)n;
	}
}

/* One list member of a scope: strings each checked by valid, lower-cased when fold, each
 * kept once. */
static int names_member(const json_t *obj, const char *key, int (*valid)(const char *),
			int fold, const char *what, char (*out)[65], size_t *ret_n,
			struct cv_errmsg *err)
{
	const json_t *a = json_object_get(obj, key), *item;
	char one[65];
	size_t i, j, k;

	*ret_n = 0;
	if (a == NULL || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "scope \"%s\" must be an array of %s",
				     key, what);
	if (json_array_size(a) == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "scope \"%s\" is empty: leave it out "
				     "for no limit on %s", key, key);
	if (json_array_size(a) > CV_SCOPE_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "scope \"%s\" has more than %d "
				     "entries", key, CV_SCOPE_MAX);
	json_array_foreach(a, i, item) {
		const char *s = json_is_string(item) ? json_string_value(item) : NULL;

		if (s == NULL || !valid(s)) {
			/* Shown only when it is a name pattern's characters: else it may be
			 * anything. */
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "scope \"%s\" entry %zu is not "
					     "%s", key, i + 1, what);
		}
		for (k = 0; s[k] != '\0'; k++)
			one[k] = fold && s[k] >= 'A' && s[k] <= 'Z' ? (char)(s[k] - 'A' + 'a') : s[k];
		one[k] = '\0';
		for (j = 0; j < *ret_n; j++)
			if (strcasecmp(out[j], one) == 0)
				break;
		if (j < *ret_n)
			continue;
		memcpy(out[*ret_n], one, k + 1);
		(*ret_n)++;
	}
	return 0;
}

int cv_scope_from_json(const json_t *json, struct cv_scope *ret, struct cv_errmsg *err)
{
	static const char *const members[] = { "actions", "certificates", "services",
					       "environments", NULL };
	char names[256];
	const json_t *actions, *item, *value;
	enum cv_scope_action a;
	const char *key;
	size_t i;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (json == NULL || json_is_null(json))
		return 0;
	if (!json_is_object(json))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"scope\" must be an object");
	json_object_foreach((json_t *)json, key, value) {
		for (i = 0; members[i] != NULL; i++)
			if (strcmp(members[i], key) == 0)
				break;
		if (members[i] == NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "scope: unknown member%s%s%s "
					     "(actions, certificates, services, environments)",
					     cv_name_valid(key) ? " \"" : "",
					     cv_name_valid(key) ? key : "",
					     cv_name_valid(key) ? "\"" : "");
	}
	action_list(names, sizeof(names));
	actions = json_object_get(json, "actions");
	if (actions == NULL || !json_is_array(actions) || json_array_size(actions) == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "scope \"actions\" must be a "
				     "non-empty array of: %s", names);
	json_array_foreach(actions, i, item) {
		if (!json_is_string(item) || cv_scope_action_parse(json_string_value(item), &a) < 0)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "scope \"actions\" entry %zu%s%s%s"
					     " is not an action: %s", i + 1,
					     json_is_string(item) &&
					     cv_name_valid(json_string_value(item)) ? " (" : "",
					     json_is_string(item) &&
					     cv_name_valid(json_string_value(item)) ?
					     json_string_value(item) : "",
					     json_is_string(item) &&
					     cv_name_valid(json_string_value(item)) ? ")" : "",
					     names);
		if (a == CV_SCOPE_TOKENS)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a scope cannot hold "
					     "\"tokens\": a scoped token could make a token wider "
					     "than itself; API tokens are managed by unscoped admin "
					     "tokens");
		ret->actions |= 1u << a;
	}
	r = names_member(json, "certificates", cv_glob_valid, 1,
			 "a name pattern (letters, digits, hyphens, * and ?, 64 at most)",
			 ret->objects.certificates, &ret->objects.n_certificates, err);
	if (r == 0)
		r = names_member(json, "services", cv_glob_valid, 1,
				 "a name pattern (letters, digits, hyphens, * and ?, 64 at most)",
				 ret->objects.services, &ret->objects.n_services, err);
	if (r == 0)
		r = names_member(json, "environments", cv_name_valid, 0,
				 "an environment name (letters, digits, hyphens, 64 at most)",
				 ret->objects.environments, &ret->objects.n_environments, err);
	if (r < 0) {
		memset(ret, 0, sizeof(*ret));
		return r;
	}
	ret->scoped = 1;
	return 0;
}

static json_t *names_json(const char (*v)[65], size_t n)
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

json_t *cv_scope_json(const struct cv_scope *scope)
{
	json_t *out, *actions;
	int i, ok;

	if (!scope->scoped)
		return json_null();
	out = json_object();
	actions = json_array();
	ok = out != NULL && actions != NULL;
	for (i = CV_SCOPE_READ; ok && i < CV_SCOPE__COUNT; i++)
		if ((scope->actions & (1u << i)) != 0)
			ok = json_array_append_new(actions, json_string(action_names[i])) == 0;
	ok = ok && json_object_set_new(out, "actions", actions) == 0;
	actions = NULL;
	if (ok && scope->objects.n_certificates > 0)
		ok = json_object_set_new(out, "certificates",
					 names_json((const char (*)[65])scope->objects.certificates,
						    scope->objects.n_certificates)) == 0;
	if (ok && scope->objects.n_services > 0)
		ok = json_object_set_new(out, "services",
					 names_json((const char (*)[65])scope->objects.services,
						    scope->objects.n_services)) == 0;
	if (ok && scope->objects.n_environments > 0)
		ok = json_object_set_new(out, "environments",
					 names_json((const char (*)[65])scope->objects.environments,
						    scope->objects.n_environments)) == 0;
	json_decref(actions);
	if (!ok) {
		json_decref(out);
		return NULL;
	}
	return out;
}

int cv_vault_token_scope(const struct cv_api_token *t, struct cv_scope *ret)
{
	struct cv_errmsg err;
	json_t *json;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (t->scope[0] == '\0')
		return 0;
	json = json_loads(t->scope, JSON_REJECT_DUPLICATES, NULL);
	/* Written by certvault from a scope it checked: anything else is not trusted to mean
	 * less than it says, so the token is refused (never treated as unscoped). */
	r = json != NULL && !json_is_null(json) ? cv_scope_from_json(json, ret, &err) : CV_ERR_DB;
	json_decref(json);
	if (r < 0 || !ret->scoped) {
		memset(ret, 0, sizeof(*ret));
		return CV_ERR_DB;
	}
	return 0;
}

int cv_scope_environment_in(const struct cv_scope *scope, const char *name)
{
	size_t i;

	if (!scope->scoped || scope->objects.n_environments == 0)
		return 1;
	for (i = 0; i < scope->objects.n_environments; i++)
		if (strcasecmp(scope->objects.environments[i], name) == 0)
			return 1;
	return 0;
}

static int globs_in(const char (*globs)[65], size_t n, const char *name)
{
	size_t i;

	if (n == 0)
		return 1;
	for (i = 0; i < n; i++)
		if (cv_glob_match(globs[i], name))
			return 1;
	return 0;
}

int cv_scope_cert_name_in(const struct cv_scope *scope, const char *name)
{
	return !scope->scoped ||
	       globs_in((const char (*)[65])scope->objects.certificates,
			scope->objects.n_certificates, name);
}

int cv_scope_service_name_in(const struct cv_scope *scope, const char *name)
{
	return !scope->scoped || globs_in((const char (*)[65])scope->objects.services,
					  scope->objects.n_services, name);
}

int cv_scope_usage_in(const struct cv_scope *scope, const struct cv_cert_usage *u)
{
	return cv_scope_service_name_in(scope, u->service) &&
	       cv_scope_environment_in(scope, u->environment);
}

const struct cv_scope_objects *cv_scope_list_objects(const struct cv_scope *scope)
{
	return scope->scoped ? &scope->objects : NULL;
}

int cv_vault_scope_cert(struct cv_vault *v, const struct cv_scope *scope, const char *name,
			int *ret_inside, struct cv_errmsg *err)
{
	int r;

	*ret_inside = 1;
	if (!scope->scoped)
		return 0;
	r = cv_store_cert_in_scope(v->store, name, &scope->objects, ret_inside);
	if (r == CV_ERR_NOT_FOUND) {
		*ret_inside = 1; /* its name is: the use case says it does not exist */
		return 0;
	}
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_scope_service(struct cv_vault *v, const struct cv_scope *scope, const char *name,
			   int *ret_inside, struct cv_errmsg *err)
{
	char env[65];
	int r;

	*ret_inside = 1;
	if (!scope->scoped)
		return 0;
	*ret_inside = cv_scope_service_name_in(scope, name);
	if (!*ret_inside || scope->objects.n_environments == 0)
		return 0;
	r = cv_store_service_environment(v->store, name, env);
	if (r == CV_ERR_NOT_FOUND)
		return 0;
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	*ret_inside = cv_scope_environment_in(scope, env);
	return 0;
}

int cv_vault_scope_jwk(struct cv_vault *v, const struct cv_scope *scope, const char *kid,
		       int *ret_inside, struct cv_errmsg *err)
{
	int r;

	*ret_inside = 1;
	if (!scope->scoped)
		return 0;
	r = cv_store_jwk_in_scope(v->store, kid, &scope->objects, ret_inside);
	if (r == CV_ERR_NOT_FOUND) {
		*ret_inside = 1;
		return 0;
	}
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_token_seen(struct cv_vault *v, const struct cv_actor *actor, const char *source,
			int64_t now)
{
	/* A minute's resolution: "last used" answers "is anyone still using this token?",
	 * and a write per request would put every read behind SQLite's write lock. */
	if (actor->role == 0 || actor->id[0] == '\0' || now - actor->last_used_at < 60)
		return 0;
	return cv_store_api_token_seen(v->store, actor->id, now, source, 60);
}
