/* GET /v1/openapi.json: the OpenAPI 3.1 description of the API, made from the route table
 * (paths, methods, access rules, audit actions, body limits) and src/http/openapi.json
 * (summaries, parameters, schemas and the error codes each route can answer, whose statuses
 * come from the one error table). Built once, on first use. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "certvault/error.h"
#include "handlers.h"

extern const unsigned char cv_openapi_json[];
extern const size_t cv_openapi_json_len;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static json_t *document;

/* The name of a path's {} segment, from the collection before it. */
static const char *param_name(const char *collection)
{
	static const struct {
		const char *collection, *param;
	} names[] = {
		{ "certificates", "name" }, { "services", "name" }, { "environments", "name" },
		{ "jwks", "kid" },          { "truststore", "alias" }, { "crls", "alias" },
		{ "tokens", "id" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i].collection, collection) == 0)
			return names[i].param;
	return "id";
}

/* "/v1/certificates/{}/export" -> "/v1/certificates/{name}/export", with the path
 * parameter added to params. Returns 0, or -1 when it does not fit. */
static int template_of(const char *pattern, char *buf, size_t len, json_t *params)
{
	char prev[64] = "";
	size_t o = 0;
	const char *p = pattern;

	while (*p != '\0') {
		if (p[0] == '{' && p[1] == '}') {
			const char *name = param_name(prev);
			int n = snprintf(buf + o, len - o, "{%s}", name);
			if (n < 0 || (size_t)n >= len - o)
				return -1;
			o += (size_t)n;
			p += 2;
			json_array_append_new(params,
					      json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in",
							"path", "required", 1, "schema", "type",
							"string"));
			continue;
		}
		if (*p == '/' && p[1] != '{') {
			size_t seg = strcspn(p + 1, "/");
			snprintf(prev, sizeof(prev), "%.*s", (int)seg, p + 1);
		}
		if (o + 1 >= len)
			return -1;
		buf[o++] = *p++;
	}
	buf[o] = '\0';
	return 0;
}

/* The status and error code an error's JSON code stands for, from the error table. */
static int status_of_code(const char *code)
{
	for (int e = -1; e > CV_ERR__LAST; e--)
		if (strcmp(cv_http_error_code(e), code) == 0)
			return cv_http_error_status(e);
	return 0;
}

/* Adds code to the error response of its status in responses. */
static int add_error(json_t *responses, const char *code)
{
	char status[8];
	json_t *r, *codes;
	int st = status_of_code(code);

	if (st == 0)
		return -1; /* a code the error table does not know: openapi.json is wrong */
	snprintf(status, sizeof(status), "%d", st);
	r = json_object_get(responses, status);
	if (r == NULL) {
		r = json_pack("{s:s, s:{s:{s:{s:s}}}, s:[]}", "description", "refused",
			      "content", "application/json", "schema", "$ref",
			      "#/components/schemas/Error", "x-codes");
		if (r == NULL || json_object_set_new(responses, status, r) < 0)
			return -1;
	}
	codes = json_object_get(r, "x-codes");
	for (size_t i = 0; i < json_array_size(codes); i++)
		if (strcmp(json_string_value(json_array_get(codes, i)), code) == 0)
			return 0;
	return json_array_append_new(codes, json_string(code));
}

/* After every code is in: "description" lists them, as a reader scans it. */
static void describe_errors(json_t *responses)
{
	const char *status;
	json_t *r;

	json_object_foreach(responses, status, r) {
		json_t *codes = json_object_get(r, "x-codes");
		char text[512] = "refused: ";
		size_t o = strlen(text);
		if (codes == NULL)
			continue;
		for (size_t i = 0; i < json_array_size(codes) && o < sizeof(text); i++)
			o += (size_t)snprintf(text + o, sizeof(text) - o, "%s%s", i ? ", " : "",
					      json_string_value(json_array_get(codes, i)));
		json_object_set_new(r, "description", json_string(text));
	}
}

static json_t *operation(const struct cv_route_info *ri, json_t *documented, json_t *params)
{
	json_t *op = documented != NULL ? json_deep_copy(documented) :
					  json_pack("{s:s, s:b, s:{}}", "summary", "undocumented",
						    "x-certvault-undocumented", 1, "responses");
	json_t *responses, *errors, *all_params;
	static const char *const always[] = { "bad_request", "internal_error", "database_error",
					      NULL };

	if (op == NULL)
		return NULL;
	responses = json_object_get(op, "responses");
	errors = json_object_get(op, "errors");
	for (size_t i = 0; always[i] != NULL; i++)
		add_error(responses, always[i]);
	if (ri->access != CV_R_PUBLIC) {
		add_error(responses, "unauthorized");
		/* An address past the rate of refusals without a valid token gets 429 instead. */
		add_error(responses, "rate_limited");
		if (ri->access != CV_R_METRICS)
			add_error(responses, "forbidden");
	}
	/* A scoped token is refused what its scope leaves out (issue 18 part 3). */
	if (ri->access != CV_R_PUBLIC && ri->scope_action != CV_SCOPE_ANY)
		add_error(responses, "out_of_scope");
	/* Every change's audit record is keyed in the token: without it, nothing changes. */
	if (ri->action != NULL)
		add_error(responses, "token_unavailable");
	if (ri->max_body > 0) {
		add_error(responses, "body_too_large");
		add_error(responses, "unsupported_media_type");
	}
	/* A slow route waits for a slow-request thread, or is told there is no room. */
	if (ri->slow)
		add_error(responses, "busy");
	for (size_t i = 0; i < json_array_size(errors); i++)
		if (add_error(responses, json_string_value(json_array_get(errors, i))) < 0) {
			json_decref(op);
			return NULL;
		}
	describe_errors(responses);
	json_object_del(op, "errors");
	/* Every GET answered 200 carries an ETag of its bytes and answers If-None-Match
	 * naming it with 304 (conditional.c). */
	if (strcmp(ri->method, "GET") == 0 && json_object_get(responses, "200") != NULL &&
	    json_object_get(responses, "304") == NULL)
		json_object_set_new(responses, "304",
				    json_pack("{s:s}", "description",
					      "not modified: If-None-Match named the answer's ETag"));

	/* Path parameters first, then the documented query parameters. */
	all_params = json_deep_copy(params);
	json_array_extend(all_params, json_object_get(op, "parameters"));
	if (json_array_size(all_params) > 0)
		json_object_set_new(op, "parameters", all_params);
	else
		json_decref(all_params);

	if (ri->access == CV_R_PUBLIC)
		json_object_set_new(op, "security", json_array());
	else if (ri->access == CV_R_METRICS)
		json_object_set_new(op, "security", json_pack("[{}, {s:[]}]", "bearer"));
	else
		json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearer"));
	json_object_set_new(op, "x-certvault-access", json_string(cv_http_access_name(ri->access)));
	if (ri->action != NULL)
		json_object_set_new(op, "x-certvault-audit-action", json_string(ri->action));
	if (cv_scope_action_name(ri->scope_action)[0] != '\0')
		json_object_set_new(op, "x-certvault-scope-action",
				    json_string(cv_scope_action_name(ri->scope_action)));
	return op;
}

static void build(void)
{
	json_t *doc = json_loadb((const char *)cv_openapi_json, cv_openapi_json_len, 0, NULL);
	json_t *documented, *paths = json_object();
	struct cv_route_info ri;
	char key[160], path[160], method[16];

	if (doc == NULL || paths == NULL)
		goto fail;
	documented = json_incref(json_object_get(doc, "x-operations"));
	json_object_del(doc, "x-operations");
	for (size_t i = 0; cv_http_route_at(i, &ri) == 0; i++) {
		json_t *params = json_array(), *item, *op;
		size_t m;

		if (params == NULL || template_of(ri.pattern, path, sizeof(path), params) < 0) {
			json_decref(params);
			goto fail_documented;
		}
		snprintf(key, sizeof(key), "%s %s", ri.method, ri.pattern);
		op = operation(&ri, json_object_get(documented, key), params);
		json_decref(params);
		if (op == NULL)
			goto fail_documented;
		for (m = 0; ri.method[m] != '\0' && m + 1 < sizeof(method); m++)
			method[m] = (char)(ri.method[m] | 0x20);
		method[m] = '\0';
		if ((item = json_object_get(paths, path)) == NULL) {
			item = json_object();
			json_object_set_new(paths, path, item);
		}
		json_object_set_new(item, method, op);
	}
	json_decref(documented);
	json_object_set_new(doc, "paths", paths);
	document = doc;
	return;
fail_documented:
	json_decref(documented);
fail:
	json_decref(paths);
	json_decref(doc);
}

int cv_http_openapi_document(json_t **ret)
{
	pthread_once(&once, build);
	if (document == NULL)
		return CV_ERR_INTERNAL;
	*ret = json_incref(document);
	return 0;
}

int h_openapi(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	      struct cv_errmsg *err)
{
	json_t *doc;

	(void)app;
	(void)req; /* no query: the dispatch checked (route_queries) */
	if (cv_http_openapi_document(&doc) < 0)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "the API description is broken");
	return res_json(res, 200, doc);
}
