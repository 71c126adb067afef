/* Unit tests for the http layer without a server: routing, limits, JSON and query checks,
 * and the error table. Only paths that fail before a use case runs are exercised here; the
 * integration tests drive the rest through a real certvaultd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "certvault/http.h"

static struct cv_config cfg;
static struct cv_app app;

static void request(struct cv_request *req, const char *method, const char *path,
		    const char *body)
{
	memset(req, 0, sizeof(*req));
	req->method = method;
	req->path = path;
	req->body = body;
	req->body_len = body != NULL ? strlen(body) : 0;
	req->content_type = body != NULL ? "application/json" : NULL;
}

static const char *error_code(const struct cv_response *res)
{
	return json_string_value(json_object_get(json_object_get(res->json, "error"), "code"));
}

static const char *error_message(const struct cv_response *res)
{
	return json_string_value(json_object_get(json_object_get(res->json, "error"), "message"));
}

static void test_unknown_path_and_method(void **state)
{
	struct cv_request req;
	struct cv_response res;

	(void)state;
	request(&req, "GET", "/v1/nothing", NULL);
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 404);
	assert_string_equal(error_code(&res), "not_found");
	cv_response_release(&res);

	request(&req, "PUT", "/v1/certificates/www", NULL);
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 405);
	assert_string_equal(error_code(&res), "method_not_allowed");
	cv_response_release(&res);

	/* A route's {} segment never spans a slash. */
	request(&req, "GET", "/v1/certificates/a/b", NULL);
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 404);
	cv_response_release(&res);
	request(&req, "GET", "/v1/certificates/", NULL);
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 404);
	cv_response_release(&res);
}

static void test_body_limits(void **state)
{
	struct cv_request req;
	struct cv_response res;

	(void)state;
	assert_int_equal(cv_http_body_limit(&app, "POST", "/v1/certificates"), 262144);
	assert_int_equal(cv_http_body_limit(&app, "PATCH", "/v1/certificates/x"), 16384);
	assert_int_equal(cv_http_body_limit(&app, "GET", "/v1/certificates"), 0);
	assert_int_equal(cv_http_body_limit(&app, "GET", "/v1/unknown"), 0);
	request(&req, "POST", "/v1/certificates", NULL);
	cv_http_dispatch(&app, &req, 1, &res);
	assert_int_equal(res.status, 413);
	assert_string_equal(error_code(&res), "body_too_large");
	assert_non_null(strstr(error_message(&res), "262144"));
	cv_response_release(&res);
}

static void test_import_body_refusals(void **state)
{
	static const struct {
		const char *body;
		const char *content_type;
		int status;
		const char *code;
		const char *message;
	} cases[] = {
		{ "{", "application/json", 400, "bad_request", "invalid JSON" },
		{ "[]", "application/json", 400, "bad_request", "JSON object" },
		{ "{\"name\":\"a\",\"name\":\"b\"}", "application/json", 400, "bad_request",
		  "invalid JSON" },
		{ "{\"name\":\"a\"}", "text/plain", 415, "unsupported_media_type", "application/json" },
		{ "{\"name\":\"a\"}", NULL, 415, "unsupported_media_type", "application/json" },
		{ "{\"colour\":\"red\"}", "application/json", 400, "bad_request",
		  "unknown member \"colour\"" },
		{ "{\"name\":1}", "application/json", 400, "bad_request", "\"name\" must be a string" },
		{ "{\"name\":\"a\"}", "application/json", 400, "bad_request",
		  "\"certificate\" is required" },
		{ "{\"name\":\"a\\u0000b\",\"certificate\":\"x\",\"private_key\":\"y\"}",
		  "application/json", 400, "bad_request", "NUL" },
		{ "{\"name\":\"a\",\"certificate\":\"x\",\"private_key\":\"y\",\"encoding\":\"hex\"}",
		  "application/json; charset=utf-8", 400, "bad_request", "encoding" },
		{ "{\"name\":\"bad name\",\"certificate\":\"x\",\"private_key\":\"y\"}",
		  "application/json", 400, "invalid_name", "letters, digits or hyphens" },
		{ "", "application/json", 400, "bad_request", "no body" },
	};
	struct cv_request req;
	struct cv_response res;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		request(&req, "POST", "/v1/certificates", cases[i].body);
		req.content_type = cases[i].content_type;
		cv_http_dispatch(&app, &req, 0, &res);
		assert_int_equal(res.status, cases[i].status);
		assert_string_equal(error_code(&res), cases[i].code);
		if (strstr(error_message(&res), cases[i].message) == NULL)
			fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, error_message(&res),
				 cases[i].message);
		cv_response_release(&res);
	}
}

static void test_query_checks(void **state)
{
	struct cv_request req;
	struct cv_response res;

	(void)state;
	request(&req, "GET", "/v1/certificates", NULL);
	req.n_query = 1;
	req.query[0].key = "colour";
	req.query[0].value = "red";
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_non_null(strstr(error_message(&res), "unknown query argument colour"));
	cv_response_release(&res);

	req.n_query = 2;
	req.query[0].key = "limit";
	req.query[0].value = "5";
	req.query[1].key = "limit";
	req.query[1].value = "6";
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_non_null(strstr(error_message(&res), "given twice"));
	cv_response_release(&res);

	req.n_query = 1;
	req.query[0].key = "limit";
	req.query[0].value = "1001";
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_non_null(strstr(error_message(&res), "limit"));
	cv_response_release(&res);

	req.n_query = 0;
	req.query_overflow = 1;
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	cv_response_release(&res);

	request(&req, "DELETE", "/v1/certificates/www", NULL);
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_string_equal(error_code(&res), "confirmation_required");
	cv_response_release(&res);

	request(&req, "GET", "/v1/certificates/www/export", NULL);
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_non_null(strstr(error_message(&res), "format must be"));
	cv_response_release(&res);
}

/* Refusals of the services and renewal routes that come before any use case runs. */
static void test_services_and_renewal_refusals(void **state)
{
	static const struct {
		const char *method, *path, *body, *if_match;
		int status;
		const char *code;
		const char *message;
	} cases[] = {
		{ "PUT", "/v1/services/shop", "{\"environment\":\"prod\"}", NULL, 400, "bad_request",
		  "\"domains\" is required" },
		{ "PUT", "/v1/services/shop", "{\"environment\":\"prod\",\"domains\":\"a.example\"}",
		  NULL, 400, "bad_request", "\"domains\" is required" },
		{ "PUT", "/v1/services/shop", "{\"environment\":\"prod\",\"domains\":[]}", NULL, 400,
		  "bad_request", "1 to 100 domains" },
		{ "PUT", "/v1/services/shop", "{\"environment\":\"prod\",\"domains\":[7]}", NULL,
		  400, "bad_request", "domain 1 must be" },
		{ "PUT", "/v1/services/shop", "{\"environment\":\"prod\",\"domains\":[\"a.example\","
		  "\"a b.example\"]}", NULL, 400, "bad_request", "domain 2: " },
		{ "PUT", "/v1/services/shop", "{\"environment\":\"prod\",\"domains\":[\"a.example\","
		  "\"A.Example.\"]}", NULL, 400, "bad_request", "listed twice" },
		{ "PUT", "/v1/services/shop", "{\"environment\":\"pr od\",\"domains\":[\"a.example\"]}",
		  NULL, 400, "bad_request", "environment" },
		{ "PUT", "/v1/services/shop", "{\"domains\":[\"a.example\"]}", NULL, 400,
		  "bad_request", "\"environment\" is required" },
		{ "PUT", "/v1/services/shop", "{\"environment\":\"p\",\"domains\":[\"a.example\"],"
		  "\"certificate\":\"web\"}", NULL, 400, "bad_request", "unknown member" },
		{ "PUT", "/v1/services/sh%op", "{\"environment\":\"p\",\"domains\":[\"a.example\"]}",
		  NULL, 400, "invalid_name", "letters, digits or hyphens" },
		{ "PUT", "/v1/services/shop/certificate", "{}", NULL, 400, "bad_request",
		  "\"certificate\" is required" },
		{ "PUT", "/v1/services/shop/certificate", "{\"certificate\":\"a/b\"}", NULL, 400,
		  "invalid_name", "letters" },
		{ "POST", "/v1/certificates/web/renew", "{\"certificate\":\"x\"}", NULL, 400,
		  "bad_request", "\"private_key\" is required" },
		{ "POST", "/v1/certificates/web/renew", "{\"name\":\"x\"}", NULL, 400, "bad_request",
		  "unknown member \"name\"" },
		{ "POST", "/v1/certificates/web/renew",
		  "{\"certificate\":\"x\",\"private_key\":\"y\",\"version\":\"1\"}", NULL, 400,
		  "bad_request", "positive integer" },
		{ "POST", "/v1/certificates/web/replace",
		  "{\"certificate\":\"x\",\"private_key\":\"y\",\"version\":0}", NULL, 400,
		  "bad_request", "positive integer" },
		{ "POST", "/v1/certificates/web/renew", "{\"certificate\":\"x\",\"private_key\":\"y\"}",
		  "*", 412, "precondition_failed", "If-Match" },
		{ "POST", "/v1/certificates/web/renew", "{\"certificate\":\"x\",\"private_key\":\"y\"}",
		  "W/\"1-0011223344556677\"", 412, "precondition_failed", "If-Match" },
		{ "POST", "/v1/certificates/web/renew", "{\"certificate\":\"x\",\"private_key\":\"y\"}",
		  "\"1-00112233\"", 412, "precondition_failed", "If-Match" },
		{ "POST", "/v1/certificates/web/renew", "{\"certificate\":\"x\",\"private_key\":\"y\"}",
		  "\"0-0011223344556677\"", 412, "precondition_failed", "If-Match" },
		{ "POST", "/v1/certificates/web/renew",
		  "{\"certificate\":\"x\",\"private_key\":\"y\",\"version\":2}",
		  "\"1-0011223344556677\"", 400, "bad_request", "different versions" },
		{ "PATCH", "/v1/certificates/web", "{\"certificate\":\"x\"}", NULL, 400,
		  "bad_request", "/renew or /replace" },
		{ "PATCH", "/v1/certificates/web", "{\"name\":\"x\"}", NULL, 400, "bad_request",
		  "the name never does" },
	};
	struct cv_request req;
	struct cv_response res;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		request(&req, cases[i].method, cases[i].path, cases[i].body);
		req.if_match = cases[i].if_match;
		cv_http_dispatch(&app, &req, 0, &res);
		if (res.status != cases[i].status || strcmp(error_code(&res), cases[i].code) != 0 ||
		    strstr(error_message(&res), cases[i].message) == NULL)
			fail_msg("case %zu: %d %s \"%s\"", i, res.status, error_code(&res),
				 error_message(&res));
		cv_response_release(&res);
	}
}

static void test_list_filter_refusals(void **state)
{
	static const struct {
		const char *key, *value, *message;
	} cases[] = {
		{ "in_use", "yes", "in_use must be true or false" },
		{ "in_use", "", "in_use must be true or false" },
		{ "domain", "a..example", "domain: " },
		{ "domain", "10.0.0.1", "IP address" },
		{ "limit", "0", "limit must be from 1 to 1000" },
	};
	struct cv_request req;
	struct cv_response res;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		request(&req, "GET", "/v1/certificates", NULL);
		req.n_query = 1;
		req.query[0].key = cases[i].key;
		req.query[0].value = cases[i].value;
		cv_http_dispatch(&app, &req, 0, &res);
		assert_int_equal(res.status, 400);
		if (strstr(error_message(&res), cases[i].message) == NULL)
			fail_msg("case %zu: \"%s\"", i, error_message(&res));
		cv_response_release(&res);
	}
	request(&req, "GET", "/v1/services", NULL);
	req.n_query = 1;
	req.query[0].key = "limit";
	req.query[0].value = "1001";
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	cv_response_release(&res);
}

static void test_error_table_is_complete(void **state)
{
	int e;

	(void)state;
	for (e = CV_ERR_NOMEM; e > CV_ERR__LAST; e--) {
		/* Every error but the internal one has a code of its own. */
		assert_string_not_equal(cv_http_error_code(e), "internal_error");
		assert_true(cv_http_error_status(e) >= 400 && cv_http_error_status(e) < 600);
		assert_string_not_equal(cv_strerror(e), "unknown error");
	}
	assert_int_equal(cv_http_error_status(CV_ERR_EXPIRED), 422);
	assert_int_equal(cv_http_error_status(CV_ERR_NAME_TAKEN), 409);
	assert_int_equal(cv_http_error_status(CV_ERR_TOKEN_UNAVAILABLE), 503);
	assert_string_equal(cv_http_error_code(CV_ERR_KEY_MISMATCH), "key_mismatch");
	assert_string_equal(cv_http_error_code(1), "internal_error");
	assert_string_equal(cv_http_error_code(CV_ERR__LAST), "internal_error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_path_and_method),
		cmocka_unit_test(test_body_limits),
		cmocka_unit_test(test_import_body_refusals),
		cmocka_unit_test(test_query_checks),
		cmocka_unit_test(test_error_table_is_complete),
		cmocka_unit_test(test_services_and_renewal_refusals),
		cmocka_unit_test(test_list_filter_refusals),
	};
	struct cv_errmsg err;
	int failed;

	cv_http_json_harden();
	if (cv_config_load(NULL, &cfg, &err) < 0)
		return 1;
	app.cfg = &cfg;
	app.vault.soon_seconds = 30 * 86400;
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	cv_config_release(&cfg);
	return failed;
}
