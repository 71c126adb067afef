/* Unit tests for the http layer without a server: routing, limits, JSON and query checks,
 * and the error table. Only paths that fail before a use case runs are exercised here; the
 * integration tests drive the rest through a real certvaultd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "certvault/http.h"
#include "certvault/util.h"
/* Internal to the http module, tested here as a pure function. */
#include "../../src/http/multipart.h"
#include "../../src/http/stream.h"

static struct cv_config cfg;
static struct cv_app app;
/* "Bearer <token>" of an admin, an operator and an auditor, made in a real SQLite file. */
static char admin_auth[CV_API_TOKEN_LEN + 8], operator_auth[CV_API_TOKEN_LEN + 8],
	auditor_auth[CV_API_TOKEN_LEN + 8];

/* A request as the admin makes it. */
static void request(struct cv_request *req, const char *method, const char *path,
		    const char *body)
{
	memset(req, 0, sizeof(*req));
	req->method = method;
	req->path = path;
	req->body = body;
	req->body_len = body != NULL ? strlen(body) : 0;
	req->content_type = body != NULL ? "application/json" : NULL;
	req->authorization = admin_auth;
	req->now = 1800000000;
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
		  "\"certificate\" (with \"private_key\", or alone for a public certificate) or"
		  " \"pkcs12\" is required" },
		{ "{\"name\":\"a\",\"certificate\":\"x\"}", "application/json", 400,
		  "bad_encoding", "" },
		{ "{\"name\":\"a\",\"pkcs12\":\"eA==\",\"encoding\":\"pem\"}",
		  "application/json", 400, "bad_request", "\"pkcs12\" is always base64" },
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

	req.query_overflow = 0;
	req.query_nul = 1;
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_non_null(strstr(error_message(&res), "NUL"));
	cv_response_release(&res);
	req.query_nul = 0;

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

	/* Issue 16 item 16: every method, before any handler runs (an import with a body
	 * that would pass, and a write with no body at all). */
	request(&req, "POST", "/v1/certificates", "{\"name\": \"x\"}");
	req.n_query = 1;
	req.query[0].key = "dry_run";
	req.query[0].value = "true";
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_string_equal(error_message(&res),
			    "unknown query argument dry_run: this route takes none");
	cv_response_release(&res);
	request(&req, "PATCH", "/v1/certificates/www", "{\"description\": \"d\"}");
	req.n_query = 1;
	req.query[0].key = "force\n";
	req.query[0].value = NULL;
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_string_equal(error_message(&res),
			    "unknown query argument force\\x0A: this route takes none");
	cv_response_release(&res);
	/* A value that is not text, and a path segment that is not. */
	request(&req, "GET", "/v1/certificates", NULL);
	req.n_query = 1;
	req.query[0].key = "q";
	req.query[0].value = "\xff";
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_non_null(strstr(error_message(&res), "not UTF-8"));
	cv_response_release(&res);
	request(&req, "GET", "/v1/certificates/a\xc3", NULL);
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_non_null(strstr(error_message(&res), "path segment"));
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
		/* (A renewal without "private_key" of a key pair: test_model, in the vault.) */
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
		{ "PATCH", "/v1/certificates/web", "{}", NULL, 400, "bad_request",
		  "nothing to change" },
		{ "PATCH", "/v1/certificates/web", "{\"tags\":[\"a\"]}", NULL, 400, "bad_request",
		  "\"tags\"" },
		{ "PATCH", "/v1/certificates/web", "{\"environments\":\"prod\"}", NULL, 400,
		  "bad_request", "\"environments\"" },
		{ "POST", "/v1/certificates", "{\"name\":\"web\",\"url\":\"https://a.example\","
		  "\"private_key\":\"y\"}", NULL, 400, "bad_request", "\"url\" comes without" },
		{ "POST", "/v1/certificates", "{\"name\":\"web\",\"certificate\":\"x\","
		  "\"position\":1}", NULL, 400, "bad_request", "\"position\" goes with \"url\"" },
		{ "PUT", "/v1/environments/prod", "{\"display_name\":\"a\\u0007b\"}", NULL, 400,
		  "bad_request", "control characters" },
		{ "PUT", "/v1/environments/prod", "{\"colour\":\"red\"}", NULL, 400, "bad_request",
		  "unknown member" },
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

/* ---- multipart/form-data ---- */

static int multipart(const char *content_type, const char *body, size_t len,
		     struct http_part **parts, size_t *n, struct cv_errmsg *err)
{
	memset(err, 0, sizeof(*err));
	*parts = NULL;
	*n = 0;
	return http_multipart_parse(content_type, body, len, parts, n, err);
}

static void assert_part(const struct http_part *p, const char *name, const char *filename,
			const char *content_type, const char *data, size_t len)
{
	assert_string_equal(p->name, name);
	assert_int_equal(p->has_filename, filename != NULL);
	assert_string_equal(p->filename, filename != NULL ? filename : "");
	assert_string_equal(p->content_type, content_type);
	assert_int_equal(p->len, len);
	assert_memory_equal(p->data, data, len);
}

static void test_multipart_good_bodies(void **state)
{
	static const char pem[] =
		"-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\r\n";
	static const char body[] =
		"--XyZ-boundary_1.2'+\r\n"
		"Content-Disposition: form-data; name=\"name\"\r\n"
		"\r\n"
		"web\r\n"
		"--XyZ-boundary_1.2'+\r\n"
		"content-disposition: Form-Data; name=\"file\"; filename=\"web.pem\"\r\n"
		"CONTENT-TYPE: Application/X-PEM-File; charset=us-ascii\r\n"
		"X-Unknown: ignored\r\n"
		"Content-Transfer-Encoding: binary\r\n"
		"\r\n"
		"-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\r\n"
		"\r\n"
		"--XyZ-boundary_1.2'+\r\n"
		"Content-Disposition: form-data; name=empty\r\n"
		"\r\n"
		"\r\n"
		"--XyZ-boundary_1.2'+--\r\n";
	/* Binary content: NULs, CR and LF alone, "--" and the boundary not at a line start
	 * or after a bare LF are all content. */
	static const char binary[] = "\x30\x82\x00\x00\r\n\n--b o\x00\xff\r--b o\n--b o--\r\n-";
	struct http_part *parts;
	struct cv_errmsg err;
	size_t n, blen;
	char big[1024];
	int r;

	(void)state;
	r = multipart("multipart/form-data; boundary=XyZ-boundary_1.2'+", body, sizeof(body) - 1,
		      &parts, &n, &err);
	if (r != 0)
		fail_msg("refused: %s", err.text);
	assert_int_equal(n, 3);
	assert_part(&parts[0], "name", NULL, "", "web", 3);
	assert_part(&parts[1], "file", "web.pem", "application/x-pem-file", pem,
		    sizeof(pem) - 1);
	assert_part(&parts[2], "empty", NULL, "", "", 0);
	/* Borrowed from the body, not copied. */
	assert_true(parts[1].data > body && parts[1].data + parts[1].len < body + sizeof(body));
	assert_ptr_equal(http_multipart_find(parts, n, "file"), &parts[1]);
	assert_null(http_multipart_find(parts, n, "File"));
	assert_null(http_multipart_find(parts, n, "missing"));
	free(parts);

	/* A quoted boundary with a space and the characters only quotes allow; the type and
	 * parameter names in any case; other parameters around it. */
	blen = (size_t)snprintf(big, sizeof(big),
				"preamble, ignored\r\n"
				"--b o(),/:=?\t \r\n"
				"Content-Disposition: form-data; name=\"upload\"; filename=\"\"\r\n"
				"Content-Type: application/octet-stream\r\n"
				"\r\n");
	memcpy(big + blen, binary, sizeof(binary) - 1);
	blen += sizeof(binary) - 1;
	blen += (size_t)snprintf(big + blen, sizeof(big) - blen,
				 "\r\n--b o(),/:=?--  \r\nepilogue, ignored\r\n");
	r = multipart("Multipart/Form-Data ; charset=utf-8; BOUNDARY=\"b o(),/:=?\"; x=y", big,
		      blen, &parts, &n, &err);
	if (r != 0)
		fail_msg("refused: %s", err.text);
	assert_int_equal(n, 1);
	assert_part(&parts[0], "upload", "", "application/octet-stream", binary,
		    sizeof(binary) - 1);
	free(parts);

	/* The close delimiter may end the body with no CRLF after it. */
	{
		static const char last[] =
			"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--";

		r = multipart("multipart/form-data; boundary=b", last, sizeof(last) - 1, &parts,
			      &n, &err);
	}
	assert_int_equal(r, 0);
	assert_int_equal(n, 1);
	assert_part(&parts[0], "a", NULL, "", "x", 1);
	free(parts);
}

/* Builds a body of n parts named p1..pn, each with a header block of header_len bytes (its
 * blank line included) when header_len is not 0. */
static char *many_parts(size_t n, size_t header_len, size_t *ret_len)
{
	size_t cap = 64 + n * (header_len + 128), len = 0, i, base;
	char *b = malloc(cap);

	assert_non_null(b);
	for (i = 0; i < n; i++) {
		len += (size_t)snprintf(b + len, cap - len, "--bnd\r\n");
		base = len;
		len += (size_t)snprintf(b + len, cap - len,
					"Content-Disposition: form-data; name=\"p%zu\"\r\n", i + 1);
		if (header_len != 0) {
			/* X-Pad: aaaa...\r\n to reach header_len with the blank line. */
			size_t pad = header_len - (len - base) - 2 - 9;

			len += (size_t)snprintf(b + len, cap - len, "X-Pad: ");
			memset(b + len, 'a', pad);
			len += pad;
			len += (size_t)snprintf(b + len, cap - len, "\r\n");
			assert_int_equal(len - base + 2, header_len);
		}
		len += (size_t)snprintf(b + len, cap - len, "\r\nvalue\r\n");
	}
	len += (size_t)snprintf(b + len, cap - len, "--bnd--\r\n");
	*ret_len = len;
	return b;
}

static void test_multipart_limits(void **state)
{
	struct http_part *parts;
	struct cv_errmsg err;
	size_t n, len;
	char *body;

	(void)state;
	body = many_parts(48, 0, &len);
	assert_int_equal(multipart("multipart/form-data; boundary=bnd", body, len, &parts, &n,
				   &err), 0);
	assert_int_equal(n, 48);
	assert_string_equal(parts[47].name, "p48");
	free(parts);
	free(body);
	body = many_parts(49, 0, &len);
	assert_int_equal(multipart("multipart/form-data; boundary=bnd", body, len, &parts, &n,
				   &err), CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "more than 48 parts"));
	assert_null(parts);
	free(body);

	body = many_parts(1, 4096, &len);
	assert_int_equal(multipart("multipart/form-data; boundary=bnd", body, len, &parts, &n,
				   &err), 0);
	assert_int_equal(n, 1);
	assert_part(&parts[0], "p1", NULL, "", "value", 5);
	free(parts);
	free(body);
	body = many_parts(1, 4097, &len);
	assert_int_equal(multipart("multipart/form-data; boundary=bnd", body, len, &parts, &n,
				   &err), CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "headers are longer than 4096 bytes"));
	free(body);
}

static void test_multipart_refusals(void **state)
{
	static const char seventy_one[] =
		"12345678901234567890123456789012345678901234567890123456789012345678901";
	static const struct {
		const char *content_type;
		const char *body;
		const char *message;
	} cases[] = {
		/* The Content-Type and its boundary. */
		{ NULL, "--b\r\n", "needs a Content-Type" },
		{ "application/json", "--b\r\n", "not multipart/form-data" },
		{ "multipart/mixed; boundary=b", "--b\r\n", "not multipart/form-data" },
		{ "multipart/form-data", "--b\r\n", "no boundary parameter" },
		{ "multipart/form-data; charset=utf-8", "--b\r\n", "no boundary parameter" },
		{ "multipart/form-data; boundary=\"\"", "--b\r\n", "1 to 70 characters" },
		{ "multipart/form-data; boundary=", "--b\r\n", "parameters are malformed" },
		{ "multipart/form-data; boundary", "--b\r\n", "parameters are malformed" },
		{ "multipart/form-data; boundary=\"b", "--b\r\n", "parameters are malformed" },
		{ "multipart/form-data; boundary=b c", "--b\r\n", "parameters are malformed" },
		{ "multipart/form-data; boundary=b;", "--b\r\n", "parameters are malformed" },
		{ "multipart/form-data; boundary=a:b", "--a:b\r\n", "must be a token" },
		{ "multipart/form-data; boundary=a*b", "--a*b\r\n", "must be a token" },
		{ "multipart/form-data; boundary=\"a@b\"", "--a@b\r\n", "does not allow" },
		{ "multipart/form-data; boundary=\"ab \"", "--ab \r\n", "does not allow" },
		{ "multipart/form-data; boundary=b; boundary=b", "--b\r\n", "boundary twice" },
		/* The body's frame. */
		{ "multipart/form-data; boundary=b", "", "body is empty" },
		{ "multipart/form-data; boundary=b", "--c\r\n\r\n--c--\r\n", "no boundary line" },
		{ "multipart/form-data; boundary=b",
		  "--b\nContent-Disposition: form-data; name=\"a\"\n\nx\n--b--\n", "bare LF" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\n--b--\r\n",
		  "bare LF" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxyz", "cut off" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b\r\n",
		  "final boundary" },
		{ "multipart/form-data; boundary=b", "--b--\r\n", "no parts" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--bb\r\n\r\n--b--",
		  "boundary occurs inside a part" },
		{ "multipart/form-data; boundary=b", "--bx\r\n", "boundary occurs inside a part" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--junk",
		  "text follows the final boundary" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n", "blank line" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\n\nx\r\n--b--", "bare LF" },
		/* Each part's headers. */
		{ "multipart/form-data; boundary=b", "--b\r\n\r\nx\r\n--b--",
		  "part 1 has no Content-Disposition header" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
		  "part 1 has no Content-Disposition header" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--",
		  "part 1's Content-Disposition is not form-data" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
		  "part 1's Content-Disposition has no name" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; filename=\"a.pem\"\r\n\r\nx\r\n--b--",
		  "has no name" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--b--",
		  "part 1 has an empty name" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nx\r\n--b--",
		  "gives name twice" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=a; filename=x; filename=y\r\n\r\n"
		  "x\r\n--b--", "gives filename twice" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--",
		  "Content-Disposition is malformed" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\" x\r\n\r\nx\r\n--b--",
		  "Content-Disposition is malformed" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=a;\r\n\r\nx\r\n--b--",
		  "Content-Disposition is malformed" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n"
		  "Content-Disposition: form-data; name=\"c\"\r\n\r\nx\r\n--b--",
		  "two Content-Disposition headers" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain\r\n"
		  "Content-Type: text/plain\r\n\r\nx\r\n--b--", "two Content-Type headers" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: text\r\n\r\n"
		  "x\r\n--b--", "Content-Type is not a media type" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: a/b; c\r\n\r\n"
		  "x\r\n--b--", "Content-Type is malformed" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n"
		  "Content-Transfer-Encoding: base64\r\n\r\neA==\r\n--b--",
		  "Content-Transfer-Encoding other than binary" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\nx\r\n--b--",
		  "folded" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Y: a\rb\r\n\r\nx\r\n--b--",
		  "bare CR" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Y: a\nb\r\n\r\nx\r\n--b--",
		  "bare LF" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Y: a\x01\r\n\r\nx\r\n--b--",
		  "control character" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nno colon\r\n\r\nx\r\n--b--",
		  "malformed header line" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n: x\r\n\r\nx\r\n--b--",
		  "malformed header line" },
		/* Across parts. */
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n"
		  "--b\r\nContent-Disposition: form-data; name=\"c\"\r\n\r\ny\r\n"
		  "--b\r\nContent-Disposition: form-data; name=a; filename=\"a.der\"\r\n\r\nz\r\n"
		  "--b--", "two parts are named \"a\"" },
		{ "multipart/form-data; boundary=b",
		  "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n"
		  "--b\r\nContent-Disposition: form-data; name=\"c\"\r\nContent-Type: x\r\n\r\ny\r\n"
		  "--b--", "part 2's Content-Type" },
	};
	struct http_part *parts;
	struct cv_errmsg err;
	char ct[128], body[256], name[128], filename[300];
	size_t n, i;
	int r;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = multipart(cases[i].content_type, cases[i].body, strlen(cases[i].body), &parts,
			      &n, &err);
		if (r != CV_ERR_BAD_REQUEST || strstr(err.text, cases[i].message) == NULL)
			fail_msg("case %zu: %d \"%s\", expected \"%s\"", i, r, err.text,
				 cases[i].message);
		assert_null(parts);
	}

	/* A boundary of 70 characters is the longest. */
	snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%.70s", seventy_one);
	snprintf(body, sizeof(body), "--%.70s\r\nContent-Disposition: form-data; name=a\r\n\r\n"
		 "x\r\n--%.70s--\r\n", seventy_one, seventy_one);
	assert_int_equal(multipart(ct, body, strlen(body), &parts, &n, &err), 0);
	free(parts);
	snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%s", seventy_one);
	assert_int_equal(multipart(ct, body, strlen(body), &parts, &n, &err),
			 CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "1 to 70 characters"));

	/* A NUL in a header is a control character, not the end of the body. */
	memcpy(body, "--b\r\nContent-Disposition: form-data; name=\"a\0\"\r\n\r\nx\r\n--b--", 57);
	assert_int_equal(multipart("multipart/form-data; boundary=b", body, 57, &parts, &n, &err),
			 CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "control character"));

	/* Names and filenames have a length limit. */
	memset(name, 'n', 101);
	name[101] = '\0';
	snprintf(body, sizeof(body), "--b\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n"
		 "x\r\n--b--", name);
	assert_int_equal(multipart("multipart/form-data; boundary=b", body, strlen(body), &parts,
				   &n, &err), CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "part 1's name is longer than 100 bytes"));
	memset(filename, 'f', 256);
	filename[256] = '\0';
	{
		char big[512];

		snprintf(big, sizeof(big), "--b\r\nContent-Disposition: form-data; name=a; "
			 "filename=\"%s\"\r\n\r\nx\r\n--b--", filename);
		assert_int_equal(multipart("multipart/form-data; boundary=b", big, strlen(big),
					   &parts, &n, &err), CV_ERR_BAD_REQUEST);
		assert_non_null(strstr(err.text, "filename is longer than 255 bytes"));
		filename[255] = '\0';
		snprintf(big, sizeof(big), "--b\r\nContent-Disposition: form-data; name=a; "
			 "filename=\"%s\"\r\n\r\nx\r\n--b--", filename);
		assert_int_equal(multipart("multipart/form-data; boundary=b", big, strlen(big),
					   &parts, &n, &err), 0);
		assert_string_equal(parts[0].filename, filename);
		free(parts);
	}
}


/* Every route the server has, with who may call it. A route added without a line here
 * fails this test until someone decides its rule. */
static const struct {
	const char *method, *pattern;
	enum cv_access access;
} expected_routes[] = {
	{ "GET", "/v1/health", CV_R_PUBLIC },
	{ "GET", "/v1/health/keys", CV_R_READ },
	{ "POST", "/v1/backup", CV_R_ADMIN },
	{ "GET", "/v1/me", CV_R_READ },
	{ "GET", "/v1/certificates", CV_R_READ },
	{ "POST", "/v1/certificates/preview", CV_R_WRITE },
	{ "POST", "/v1/certificates", CV_R_WRITE },
	{ "GET", "/v1/certificates/summary", CV_R_READ },
	{ "GET", "/v1/certificates/{}", CV_R_READ },
	{ "PATCH", "/v1/certificates/{}", CV_R_WRITE },
	{ "DELETE", "/v1/certificates/{}", CV_R_WRITE },
	{ "GET", "/v1/certificates/{}/export", CV_R_READ },
	{ "GET", "/v1/certificates/{}/versions", CV_R_READ },
	{ "POST", "/v1/certificates/{}/renew", CV_R_WRITE },
	{ "POST", "/v1/certificates/{}/replace", CV_R_WRITE },
	{ "GET", "/v1/certificates/{}/csr", CV_R_READ },
	/* Signing uses a key: who runs the keys may (operator, admin); an auditor may not. */
	{ "POST", "/v1/certificates/{}/sign", CV_R_WRITE },
	{ "POST", "/v1/certificates/{}/certificate", CV_R_WRITE },
	{ "DELETE", "/v1/certificates/{}/pending", CV_R_WRITE },
	{ "GET", "/v1/wrapping-key", CV_R_READ },
	{ "GET", "/v1/deleted-certificates", CV_R_READ },
	{ "POST", "/v1/deleted-certificates/{}/recover", CV_R_WRITE },
	{ "DELETE", "/v1/deleted-certificates/{}", CV_R_ADMIN },
	{ "GET", "/v1/services", CV_R_READ },
	{ "GET", "/v1/services/{}", CV_R_READ },
	{ "PUT", "/v1/services/{}", CV_R_WRITE },
	{ "DELETE", "/v1/services/{}", CV_R_WRITE },
	{ "PUT", "/v1/services/{}/certificate", CV_R_WRITE },
	{ "DELETE", "/v1/services/{}/certificate", CV_R_WRITE },
	{ "POST", "/v1/jwks", CV_R_WRITE },
	{ "GET", "/v1/jwks", CV_R_PUBLIC },
	{ "GET", "/.well-known/jwks.json", CV_R_PUBLIC },
	{ "GET", "/v1/jwks/all", CV_R_READ },
	{ "GET", "/v1/openapi.json", CV_R_PUBLIC },
	{ "GET", "/v1/jwks/{}", CV_R_READ },
	{ "DELETE", "/v1/jwks/{}", CV_R_WRITE },
	{ "POST", "/v1/jwks/{}/sign", CV_R_WRITE },
	{ "GET", "/v1/environments", CV_R_READ },
	{ "GET", "/v1/environments/{}", CV_R_READ },
	{ "PUT", "/v1/environments/{}", CV_R_WRITE },
	{ "DELETE", "/v1/environments/{}", CV_R_WRITE },
	{ "POST", "/v1/truststore", CV_R_WRITE },
	{ "POST", "/v1/truststore/preview", CV_R_WRITE },
	{ "GET", "/v1/truststore", CV_R_READ },
	{ "GET", "/v1/truststore/export", CV_R_READ },
	{ "POST", "/v1/truststore/crls", CV_R_WRITE },
	{ "GET", "/v1/truststore/crls", CV_R_READ },
	{ "DELETE", "/v1/truststore/crls/{}", CV_R_WRITE },
	{ "GET", "/v1/truststore/{}", CV_R_READ },
	{ "DELETE", "/v1/truststore/{}", CV_R_WRITE },
	{ "POST", "/v1/tokens", CV_R_ADMIN },
	{ "GET", "/v1/tokens", CV_R_ADMIN },
	{ "DELETE", "/v1/tokens/{}", CV_R_ADMIN },
	{ "GET", "/v1/audit", CV_R_AUDIT },
	{ "GET", "/v1/audit/verify", CV_R_AUDIT },
	{ "GET", "/v1/inventory", CV_R_AUDIT },
	{ "GET", "/metrics", CV_R_METRICS },
	{ "GET", "/", CV_R_PUBLIC },
	{ "GET", "/console", CV_R_PUBLIC },
	{ "GET", "/console/", CV_R_PUBLIC },
	{ "GET", "/console/{}", CV_R_PUBLIC },
	{ "POST", "/v1/session", CV_R_PUBLIC },
	{ "GET", "/v1/session", CV_R_PUBLIC },
	{ "DELETE", "/v1/session", CV_R_READ },
	{ "POST", "/v1/notifications/channels", CV_R_ADMIN },
	{ "GET", "/v1/notifications/channels", CV_R_ADMIN },
	{ "GET", "/v1/notifications/channels/{}", CV_R_ADMIN },
	{ "DELETE", "/v1/notifications/channels/{}", CV_R_ADMIN },
	{ "GET", "/v1/notifications/deliveries", CV_R_AUDIT },
	{ "GET", "/v1/certificates/{}/notifications", CV_R_READ },
	{ "PUT", "/v1/certificates/{}/notifications", CV_R_WRITE },
};

static int cv_str_ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), m = strlen(tail);

	return n >= m && strcmp(s + n - m, tail) == 0;
}

static void test_every_route_has_its_rule(void **state)
{
	struct cv_route_info info;
	size_t i, j, n = 0;

	(void)state;
	for (i = 0; cv_http_route_at(i, &info) == 0; i++, n++) {
		for (j = 0; j < sizeof(expected_routes) / sizeof(expected_routes[0]); j++)
			if (strcmp(expected_routes[j].method, info.method) == 0 &&
			    strcmp(expected_routes[j].pattern, info.pattern) == 0)
				break;
		if (j == sizeof(expected_routes) / sizeof(expected_routes[0]))
			fail_msg("%s %s has no rule in this test: decide who may call it",
				 info.method, info.pattern);
		if (info.access != expected_routes[j].access)
			fail_msg("%s %s is %s, the test expects %s", info.method, info.pattern,
				 cv_http_access_name(info.access),
				 cv_http_access_name(expected_routes[j].access));
		/* A change is recorded; a read is not. A preview is a POST that changes
		 * nothing (its path ends in /preview). */
		if ((strcmp(info.method, "GET") != 0 &&
		     !cv_str_ends_with(info.pattern, "/preview")) != (info.action != NULL))
			fail_msg("%s %s: a change has an audit action, a read none", info.method,
				 info.pattern);
	}
	assert_int_equal(n, sizeof(expected_routes) / sizeof(expected_routes[0]));
}

/* Every route names what it does for a scoped token (issue 18 part 3) and how the dispatch
 * finds what it touches: a route added without a line here fails this test until someone
 * decides its action (a route with none is closed to scoped tokens). */
static const struct {
	const char *route, *action, *object;
} expected_scopes[] = {
	{ "GET /v1/health", "", "none" },
	{ "GET /v1/me", "", "none" },
	{ "GET /v1/certificates", "read", "list" },
	{ "POST /v1/certificates", "import", "new certificate" },
	{ "GET /v1/certificates/summary", "read", "list" },
	{ "POST /v1/certificates/preview", "import", "new certificate" },
	{ "GET /v1/certificates/{}", "read", "certificate" },
	{ "PATCH /v1/certificates/{}", "edit", "certificate edit" },
	{ "DELETE /v1/certificates/{}", "delete", "certificate" },
	{ "GET /v1/certificates/{}/export", "export", "certificate" },
	{ "GET /v1/certificates/{}/versions", "read", "certificate" },
	{ "POST /v1/certificates/{}/renew", "renew", "certificate" },
	{ "POST /v1/certificates/{}/replace", "replace", "certificate" },
	{ "GET /v1/certificates/{}/csr", "read", "certificate" },
	{ "POST /v1/certificates/{}/certificate", "generate", "certificate" },
	{ "DELETE /v1/certificates/{}/pending", "delete", "certificate" },
	{ "GET /v1/wrapping-key", "read", "none" },
	{ "GET /v1/services", "read", "list" },
	{ "GET /v1/services/{}", "read", "service" },
	{ "PUT /v1/services/{}", "service", "service" },
	{ "DELETE /v1/services/{}", "delete", "service" },
	{ "PUT /v1/services/{}/certificate", "bind", "service and certificate" },
	{ "DELETE /v1/services/{}/certificate", "bind", "service" },
	{ "GET /v1/environments", "read", "list" },
	{ "GET /v1/environments/{}", "read", "environment" },
	{ "PUT /v1/environments/{}", "environment", "environment" },
	{ "DELETE /v1/environments/{}", "delete", "environment" },
	{ "POST /v1/jwks", "jwk", "new jwk" },
	{ "GET /v1/jwks", "", "none" },
	{ "GET /.well-known/jwks.json", "", "none" },
	{ "GET /v1/jwks/all", "read", "list" },
	{ "GET /v1/jwks/{}", "read", "jwk" },
	{ "DELETE /v1/jwks/{}", "delete", "jwk" },
	{ "POST /v1/truststore", "truststore", "none" },
	{ "POST /v1/truststore/preview", "truststore", "none" },
	{ "GET /v1/truststore", "read", "none" },
	{ "GET /v1/truststore/export", "read", "none" },
	{ "POST /v1/truststore/crls", "truststore", "none" },
	{ "GET /v1/truststore/crls", "read", "none" },
	{ "DELETE /v1/truststore/crls/{}", "truststore", "none" },
	{ "GET /v1/truststore/{}", "read", "none" },
	{ "DELETE /v1/truststore/{}", "truststore", "none" },
	{ "POST /v1/tokens", "tokens", "none" },
	{ "GET /v1/tokens", "tokens", "none" },
	{ "DELETE /v1/tokens/{}", "tokens", "none" },
	{ "GET /v1/audit", "audit", "none" },
	{ "GET /v1/audit/verify", "audit", "none" },
	{ "GET /v1/inventory", "read", "list" },
	{ "GET /metrics", "metrics", "none" },
	{ "GET /v1/openapi.json", "", "none" },
	{ "GET /", "", "none" },
	{ "GET /console", "", "none" },
	{ "GET /console/", "", "none" },
	{ "GET /console/{}", "", "none" },
	{ "POST /v1/session", "", "none" },
	{ "GET /v1/session", "", "none" },
	{ "DELETE /v1/session", "", "none" },
	{ "GET /v1/deleted-certificates", "read", "whole list" },
	{ "POST /v1/deleted-certificates/{}/recover", "delete", "certificate" },
	{ "DELETE /v1/deleted-certificates/{}", "delete", "certificate" },
	{ "POST /v1/certificates/{}/sign", "sign", "certificate" },
	{ "POST /v1/jwks/{}/sign", "sign", "jwk" },
	{ "POST /v1/notifications/channels", "admin", "none" },
	{ "GET /v1/notifications/channels", "admin", "none" },
	{ "GET /v1/notifications/channels/{}", "admin", "none" },
	{ "DELETE /v1/notifications/channels/{}", "admin", "none" },
	{ "GET /v1/notifications/deliveries", "audit", "whole list" },
	{ "GET /v1/certificates/{}/notifications", "read", "certificate" },
	{ "PUT /v1/certificates/{}/notifications", "edit", "certificate" },
	{ "POST /v1/backup", "admin", "whole list" },
	{ "GET /v1/health/keys", "read", "whole list" },
};

static void test_every_route_has_a_scope_action(void **state)
{
	struct cv_route_info info;
	char route[160];
	size_t i, j, n = 0;

	(void)state;
	for (i = 0; cv_http_route_at(i, &info) == 0; i++, n++) {
		snprintf(route, sizeof(route), "%s %s", info.method, info.pattern);
		if (info.scope_action == CV_SCOPE_UNSET || info.scope_object == NULL)
			fail_msg("%s has no scope action in route_scopes (src/http/router.c): "
				 "decide what it does for a scoped token", route);
		for (j = 0; j < sizeof(expected_scopes) / sizeof(expected_scopes[0]); j++)
			if (strcmp(expected_scopes[j].route, route) == 0)
				break;
		if (j == sizeof(expected_scopes) / sizeof(expected_scopes[0]))
			fail_msg("%s has no line in expected_scopes: decide its scope action", route);
		if (strcmp(cv_scope_action_name(info.scope_action), expected_scopes[j].action) != 0 ||
		    strcmp(info.scope_object, expected_scopes[j].object) != 0)
			fail_msg("%s is %s on %s, the test expects %s on %s", route,
				 cv_scope_action_name(info.scope_action), info.scope_object,
				 expected_scopes[j].action, expected_scopes[j].object);
		/* Only what needs no token, or only says who the caller is, is open to every
		 * scope; a change always names an action. */
		if (info.scope_action == CV_SCOPE_ANY && info.access != CV_R_PUBLIC &&
		    strcmp(route, "GET /v1/me") != 0 && strcmp(route, "DELETE /v1/session") != 0)
			fail_msg("%s needs a token but no scope action", route);
	}
	assert_int_equal(n, sizeof(expected_scopes) / sizeof(expected_scopes[0]));
}

/* Name globs as scopes use them: '*' and '?', ASCII case ignored, the whole name. */
static void test_scope_globs_and_form(void **state)
{
	struct cv_errmsg err;
	struct cv_scope scope;
	json_t *j;

	(void)state;
	assert_true(cv_glob_match("shop-*", "shop-web"));
	assert_true(cv_glob_match("shop-*", "SHOP-"));
	assert_true(cv_glob_match("*-web", "a-b-web"));
	assert_true(cv_glob_match("s?op*b", "shop-web"));
	assert_true(cv_glob_match("*", "x"));
	assert_false(cv_glob_match("shop-*", "shop"));
	assert_false(cv_glob_match("shop", "shop-web"));
	assert_false(cv_glob_match("*-web", "web"));
	assert_false(cv_glob_match("a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	assert_true(cv_glob_valid("a-*?"));
	assert_false(cv_glob_valid(""));
	assert_false(cv_glob_valid("a/b"));
	assert_false(cv_glob_valid("[a]"));

	j = json_pack("{s:[s,s], s:[s]}", "actions", "bind", "read", "certificates", "Shop-*");
	assert_int_equal(cv_scope_from_json(j, &scope, &err), 0);
	json_decref(j);
	assert_true(scope.scoped);
	assert_true(cv_scope_allows(&scope, CV_SCOPE_READ));
	assert_true(cv_scope_allows(&scope, CV_SCOPE_BIND));
	assert_false(cv_scope_allows(&scope, CV_SCOPE_DELETE));
	assert_true(cv_scope_allows(&scope, CV_SCOPE_ANY));
	assert_false(cv_scope_allows(&scope, CV_SCOPE_UNSET));
	assert_string_equal(scope.objects.certificates[0], "shop-*");
	assert_true(cv_scope_cert_name_in(&scope, "shop-web"));
	assert_false(cv_scope_cert_name_in(&scope, "billing"));
	assert_true(cv_scope_service_name_in(&scope, "anything"));
	assert_true(cv_scope_environment_in(&scope, "anywhere"));
	j = json_pack("{s:[s]}", "actions", "tokens");
	assert_int_equal(cv_scope_from_json(j, &scope, &err), CV_ERR_BAD_REQUEST);
	json_decref(j);
	assert_int_equal(cv_scope_from_json(json_null(), &scope, &err), 0);
	assert_false(scope.scoped);
	assert_true(cv_scope_allows(&scope, CV_SCOPE_DELETE));
}

/* The routes whose handler may take seconds, and only they, run apart from the HTTP
 * threads; the dispatch settles who may call one before handing it over, and a request it
 * cannot take is answered 503 busy with Retry-After. */
static void test_slow_routes(void **state)
{
	static const char *const slow[] = {
		"POST /v1/certificates", "POST /v1/certificates/{}/renew",
		"POST /v1/certificates/{}/replace", "POST /v1/certificates/{}/certificate",
		"POST /v1/truststore",
		"GET /v1/truststore/export", "GET /v1/audit/verify",
		"POST /v1/certificates/preview", "POST /v1/truststore/preview",
		"POST /v1/backup",
	};
	struct cv_route_info info;
	struct cv_dispatch d;
	struct cv_request req;
	struct cv_response res;
	char name[128];
	size_t i, j, n = 0;

	(void)state;
	for (i = 0; cv_http_route_at(i, &info) == 0; i++) {
		snprintf(name, sizeof(name), "%s %s", info.method, info.pattern);
		for (j = 0; j < sizeof(slow) / sizeof(slow[0]) && strcmp(slow[j], name) != 0; j++)
			;
		if ((j < sizeof(slow) / sizeof(slow[0])) != (info.slow != 0))
			fail_msg("%s: slow is %d", name, info.slow);
		n += info.slow != 0;
	}
	assert_int_equal(n, sizeof(slow) / sizeof(slow[0]));

	/* Allowed and checked: handed over before the handler. */
	request(&req, "POST", "/v1/certificates", "{\"name\":\"x\"}");
	assert_int_equal(cv_http_dispatch_begin(&app, &req, 0, &d, &res), 1);
	assert_int_equal(res.status, 0);
	assert_non_null(req.audit);
	cv_http_dispatch_end(&app, &req, &d, CV_ERR_BUSY, "no room", &res);
	assert_int_equal(res.status, 503);
	assert_string_equal(error_code(&res), "busy");
	assert_string_equal(error_message(&res), "no room");
	assert_int_equal(res.retry_after, 1);
	assert_true(res.route > 0);
	assert_null(req.audit);
	cv_response_release(&res);
	/* Run as it would be on a worker: the handler's own answer. */
	request(&req, "POST", "/v1/certificates", "{\"name\":\"x\"}");
	assert_int_equal(cv_http_dispatch_begin(&app, &req, 0, &d, &res), 1);
	cv_http_dispatch_end(&app, &req, &d, 0, NULL, &res);
	assert_int_equal(res.status, 400);
	assert_int_equal(res.retry_after, 0);
	cv_response_release(&res);
	/* Refused before: never handed over. */
	request(&req, "POST", "/v1/certificates", "{\"name\":\"x\"}");
	req.authorization = auditor_auth;
	assert_int_equal(cv_http_dispatch_begin(&app, &req, 0, &d, &res), 0);
	assert_int_equal(res.status, 403);
	cv_response_release(&res);
	request(&req, "POST", "/v1/certificates", "{\"name\":\"x\"}");
	assert_int_equal(cv_http_dispatch_begin(&app, &req, 1, &d, &res), 0);
	assert_int_equal(res.status, 413);
	cv_response_release(&res);
	/* A route that is not slow is answered at once. */
	request(&req, "GET", "/v1/certificates", NULL);
	assert_int_equal(cv_http_dispatch_begin(&app, &req, 0, &d, &res), 0);
	assert_int_equal(res.status, 200);
	cv_response_release(&res);
}

/* The query arguments the dispatch takes for each route are the ones the API description
 * documents (src/http/openapi.json), no more, no fewer: the refusal of every other one
 * (issue 16 item 16) must not refuse what the description promises. */
static void test_route_queries_documented(void **state)
{
	struct cv_route_info info;
	json_error_t jerr;
	json_t *doc, *ops, *params, *p;
	char path[1024], key[160];
	const char *dir = getenv("CV_SOURCE_DIR"), *w;
	size_t i, j, n, documented;

	(void)state;
	assert_non_null(dir);
	snprintf(path, sizeof(path), "%s/src/http/openapi.json", dir);
	doc = json_load_file(path, 0, &jerr);
	assert_non_null(doc);
	ops = json_object_get(doc, "x-operations");
	assert_non_null(ops);
	for (i = 0; cv_http_route_at(i, &info) == 0; i++) {
		snprintf(key, sizeof(key), "%s %s", info.method, info.pattern);
		params = json_object_get(json_object_get(ops, key), "parameters");
		documented = 0;
		json_array_foreach(params, j, p) {
			const char *name = json_string_value(json_object_get(p, "name"));
			const char *in = json_string_value(json_object_get(p, "in"));
			size_t len;

			if (name == NULL || in == NULL || strcmp(in, "query") != 0)
				continue;
			len = strlen(name);
			documented++;
			for (w = info.query; w != NULL && *w != '\0'; w += n + (w[n] == ' ')) {
				n = strcspn(w, " ");
				if (n == len && strncmp(w, name, n) == 0)
					break;
			}
			if (w == NULL || *w == '\0')
				fail_msg("%s documents ?%s, which the dispatch refuses", key, name);
		}
		for (n = 0, w = info.query; w != NULL && *w != '\0'; n++)
			w += strcspn(w, " ") + (w[strcspn(w, " ")] == ' ');
		if (n != documented)
			fail_msg("%s takes %zu query arguments, its description %zu", key, n,
				 documented);
	}
	json_decref(doc);
}

/* The route's pattern with each {} as "x": a path the route matches. */
static void concrete(const char *pattern, char *buf, size_t len)
{
	size_t o = 0;

	for (; *pattern != '\0' && o + 2 < len; pattern++) {
		if (pattern[0] == '{' && pattern[1] == '}') {
			buf[o++] = 'x';
			pattern++;
		} else {
			buf[o++] = *pattern;
		}
	}
	buf[o] = '\0';
}

/* Every route x no token, a bad token, and each role that may not call it: 401 or 403
 * before any handler runs. (The roles that may are walked through a real certvaultd by
 * the integration tests.) */
static void test_route_table_refusals(void **state)
{
	static const enum cv_role roles[] = { CV_ROLE_ADMIN, CV_ROLE_OPERATOR, CV_ROLE_AUDITOR };
	const char *auths[] = { admin_auth, operator_auth, auditor_auth };
	struct cv_route_info info;
	struct cv_request req;
	struct cv_response res;
	char path[128];
	size_t i, k;

	(void)state;
	for (i = 0; cv_http_route_at(i, &info) == 0; i++) {
		if (info.access == CV_R_PUBLIC)
			continue;
		concrete(info.pattern, path, sizeof(path));
		request(&req, info.method, path, NULL);
		req.authorization = NULL;
		cv_http_dispatch(&app, &req, 0, &res);
		if (res.status != 401 || !res.challenge)
			fail_msg("%s %s without a token: %d", info.method, path, res.status);
		cv_response_release(&res);

		request(&req, info.method, path, NULL);
		req.authorization = "Bearer cvt_0123456789abcdef_"
				    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
		cv_http_dispatch(&app, &req, 0, &res);
		assert_int_equal(res.status, 401);
		cv_response_release(&res);

		request(&req, info.method, path, NULL);
		req.authorization = "Basic YWRtaW46YWRtaW4=";
		cv_http_dispatch(&app, &req, 0, &res);
		assert_int_equal(res.status, 401);
		cv_response_release(&res);

		for (k = 0; k < 3; k++) {
			if (cv_http_role_may(info.access, roles[k], 0))
				continue;
			request(&req, info.method, path, NULL);
			req.authorization = auths[k];
			cv_http_dispatch(&app, &req, 0, &res);
			if (res.status != 403)
				fail_msg("%s %s as %s: %d, not 403", info.method, path,
					 cv_role_name(roles[k]), res.status);
			cv_response_release(&res);
		}
	}
}

static void test_token_rules(void **state)
{
	struct cv_api_token t;
	struct cv_request req;
	struct cv_response res;
	struct cv_actor who;
	struct cv_errmsg err;
	char secret[CV_API_TOKEN_LEN + 1], auth[CV_API_TOKEN_LEN + 8], tampered[CV_API_TOKEN_LEN + 1];
	int64_t now = 1800000000;

	(void)state;
	assert_int_equal(cv_vault_token_create(&app.vault, NULL, "short-lived", CV_ROLE_OPERATOR,
					       now + 60, now, &t, secret, &err), 0);
	assert_int_equal(strlen(secret), CV_API_TOKEN_LEN);
	assert_int_equal(cv_vault_authenticate(&app.vault, secret, now, &who, &err), 0);
	assert_string_equal(who.name, "short-lived");
	assert_int_equal(who.role, CV_ROLE_OPERATOR);
	/* One character off: refused; the hash is what is compared. */
	memcpy(tampered, secret, sizeof(tampered));
	tampered[CV_API_TOKEN_LEN - 1] = tampered[CV_API_TOKEN_LEN - 1] == 'A' ? 'B' : 'A';
	assert_int_equal(cv_vault_authenticate(&app.vault, tampered, now, &who, &err),
			 CV_ERR_UNAUTHORIZED);
	assert_int_equal(who.role, 0);
	/* Expired at its second. */
	assert_int_equal(cv_vault_authenticate(&app.vault, secret, now + 60, &who, &err),
			 CV_ERR_UNAUTHORIZED);
	assert_non_null(strstr(err.text, "expired"));
	/* The same name again while it lives: refused; revoked: refused at once. */
	assert_int_equal(cv_vault_token_create(&app.vault, NULL, "short-lived", CV_ROLE_AUDITOR, 0,
					       now, &t, tampered, &err), CV_ERR_NAME_TAKEN);
	snprintf(auth, sizeof(auth), "Bearer %s", secret);
	request(&req, "DELETE", "/v1/tokens/x", NULL);
	req.path = "/v1/tokens/x";
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 404);
	cv_response_release(&res);
	assert_int_equal(cv_vault_token_revoke(&app.vault, NULL, t.id, now, &err), 0);
	assert_int_equal(cv_vault_authenticate(&app.vault, secret, now, &who, &err),
			 CV_ERR_UNAUTHORIZED);
	assert_non_null(strstr(err.text, "revoked"));
	assert_int_equal(cv_vault_token_revoke(&app.vault, NULL, t.id, now, &err),
			 CV_ERR_NOT_FOUND);
	/* Malformed bearers. */
	assert_int_equal(cv_vault_authenticate(&app.vault, "", now, &who, &err),
			 CV_ERR_UNAUTHORIZED);
	assert_int_equal(cv_vault_authenticate(&app.vault, "cvt_", now, &who, &err),
			 CV_ERR_UNAUTHORIZED);
	/* Creation refusals. */
	assert_int_equal(cv_vault_token_create(&app.vault, NULL, "bad name", CV_ROLE_AUDITOR, 0, now,
					       &t, tampered, &err), CV_ERR_INVALID_NAME);
	assert_int_equal(cv_vault_token_create(&app.vault, NULL, "past", CV_ROLE_AUDITOR, now, now,
					       &t, tampered, &err), CV_ERR_BAD_REQUEST);
	OPENSSL_cleanse(secret, sizeof(secret));
}

static void test_csv_fields(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "", "" },
		{ "plain text", "plain text" },
		{ "CN=a, O=b", "\"CN=a, O=b\"" },
		{ "say \"hi\"", "\"say \"\"hi\"\"\"" },
		{ "\"", "\"\"\"\"" },
		{ "two\nlines", "\"two\nlines\"" },
		{ "cr\rhere", "\"cr\rhere\"" },
		{ "all, \"of\"\r\nthem", "\"all, \"\"of\"\"\r\nthem\"" },
		/* what a spreadsheet would run as a formula starts with a single quote */
		{ "=1+1", "'=1+1" },
		{ "+1", "'+1" },
		{ "-2+3", "'-2+3" },
		{ "@SUM(A1)", "'@SUM(A1)" },
		{ "\tx", "'\tx" },
		{ "=HYPERLINK(\"http://x\",\"y\")", "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"" },
		/* a leading space, or = inside, is left as it is */
		{ " x ", " x " },
		{ "a=b", "a=b" },
	};
	struct text t = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t.len = 0;
		assert_int_equal(text_csv_field(&t, cases[i].in), 0);
		assert_non_null(t.buf);
		assert_string_equal(t.buf, cases[i].out);
	}
	text_release(&t);
}

static void test_prom_label_values(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "", "" },
		{ "www", "www" },
		{ "CN=R3, O=Let's Encrypt", "CN=R3, O=Let's Encrypt" },
		{ "a\\b", "a\\\\b" },
		{ "say \"hi\"", "say \\\"hi\\\"" },
		{ "two\nlines", "two\\nlines" },
		{ "\\\"\n", "\\\\\\\"\\n" },
		/* only LF is escaped; a tab or CR goes as it is */
		{ "tab\there", "tab\there" },
	};
	struct text t = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t.len = 0;
		assert_int_equal(text_puts(&t, ""), 0);
		assert_int_equal(text_prom_label_value(&t, cases[i].in), 0);
		assert_string_equal(t.buf, cases[i].out);
	}
	text_release(&t);
}

/* The number on the line that starts with prefix, or -1. */
static double sample_value(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	while (p != NULL && *p != '\0') {
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static void test_request_histogram(void **state)
{
	struct cv_http_stats *stats;
	struct text t = { 0 };
	struct cv_route_info info;

	(void)state;
	assert_int_equal(cv_http_route_at(0, &info), 0);
	assert_string_equal(info.pattern, "/v1/health");
	assert_int_equal(cv_http_stats_new(&stats), 0);
	cv_http_stats_observe(stats, 1, 200, 0.003);
	cv_http_stats_observe(stats, 1, 200, 0.2);
	cv_http_stats_observe(stats, 1, 503, 20);
	cv_http_stats_observe(stats, 0, 404, 0.001);
	cv_http_stats_observe(stats, 1, 299, 0.001);  /* a status not in the table */
	cv_http_stats_observe(stats, 9999, 200, 1);   /* no such route: not counted */
	assert_int_equal(http_stats_render(stats, &t), 0);
#define H "certvault_http_request_duration_seconds"
#define R "route=\"GET /v1/health\""
	assert_true(sample_value(t.buf, "certvault_http_requests_total{" R ",code=\"200\"}") == 2);
	assert_true(sample_value(t.buf, "certvault_http_requests_total{" R ",code=\"503\"}") == 1);
	assert_true(sample_value(t.buf, "certvault_http_requests_total{" R ",code=\"other\"}") ==
		    1);
	assert_true(sample_value(t.buf, "certvault_http_requests_total{route=\"unmatched\","
				 "code=\"404\"}") == 1);
	/* cumulative: each bucket counts every request at most its bound */
	assert_true(sample_value(t.buf, H "_bucket{" R ",le=\"0.001\"}") == -1);
	assert_true(sample_value(t.buf, H "_bucket{" R ",le=\"0.005\"}") == 2);
	assert_true(sample_value(t.buf, H "_bucket{" R ",le=\"0.1\"}") == 2);
	assert_true(sample_value(t.buf, H "_bucket{" R ",le=\"0.25\"}") == 3);
	assert_true(sample_value(t.buf, H "_bucket{" R ",le=\"10\"}") == 3);
	assert_true(sample_value(t.buf, H "_bucket{" R ",le=\"+Inf\"}") == 4);
	assert_true(sample_value(t.buf, H "_count{" R "}") == 4);
	assert_true(sample_value(t.buf, H "_sum{" R "}") > 20.2 &&
		    sample_value(t.buf, H "_sum{" R "}") < 20.21);
	/* a route nobody called shows no series */
	assert_null(strstr(t.buf, "/v1/tokens"));
#undef H
#undef R
	text_release(&t);
	cv_http_stats_free(stats);
}

/* Reads a streamed body max bytes at a time, as the server does; NUL-terminated, malloc'd. */
static char *drain(struct cv_response *res, size_t max)
{
	struct cv_errmsg err = { "" };
	struct text t = { 0 };
	char buf[64];
	ssize_t n;

	assert_non_null(res->stream.produce);
	assert_true(max <= sizeof(buf));
	assert_int_equal(text_puts(&t, ""), 0);
	while ((n = res->stream.produce(res->stream.arg, buf, max, &err)) > 0) {
		assert_true((size_t)n <= max);
		assert_int_equal(text_append(&t, buf, (size_t)n), 0);
	}
	assert_int_equal(n, 0);
	/* the end stays the end */
	assert_int_equal(res->stream.produce(res->stream.arg, buf, max, &err), 0);
	return t.buf;
}

static void test_streamed_bodies(void **state)
{
	char line[256];
	struct cv_request req;
	struct cv_response res;
	json_error_t jerr;
	json_t *doc;
	char *body;

	(void)state;
	request(&req, "GET", "/metrics", NULL);
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 200);
	assert_string_equal(res.content_type, "text/plain; version=0.0.4; charset=utf-8");
	body = drain(&res, 7);
	/* Every sample names the node first (issue 15). */
	snprintf(line, sizeof(line), "\ncertvault_certificates{node=\"%s\",status=\"valid\"} 0\n",
		 cfg.node_name);
	assert_non_null(strstr(body, line));
	snprintf(line, sizeof(line), "\ncertvault_certificates_pending{node=\"%s\"} 0\n",
		 cfg.node_name);
	assert_non_null(strstr(body, line));
	assert_null(strstr(body, "\ncertvault_certificates_pending 0"));
	assert_non_null(strstr(body, "# TYPE certvault_certificate_expiration_timestamp_seconds "
				     "gauge\n"));
	assert_int_equal(body[strlen(body) - 1], '\n');
	free(body);
	cv_response_release(&res);

	/* an empty vault's inventory: one JSON document, and a CSV header */
	request(&req, "GET", "/v1/inventory", NULL);
	req.authorization = auditor_auth;
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 200);
	assert_non_null(strstr(res.disposition, "attachment; filename=\"certvault-inventory-"));
	body = drain(&res, 1);
	doc = json_loads(body, 0, &jerr);
	assert_non_null(doc);
	assert_int_equal(json_array_size(json_object_get(doc, "items")), 0);
	assert_int_equal(json_integer_value(json_object_get(doc, "count")), 0);
	json_decref(doc);
	free(body);
	cv_response_release(&res);

	request(&req, "GET", "/v1/inventory", NULL);
	req.n_query = 1;
	req.query[0].key = "format";
	req.query[0].value = "csv";
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 200);
	body = drain(&res, 64);
	assert_true(strncmp(body, "type,kind,name,description,", 27) == 0);
	assert_int_equal(strlen(body) - strcspn(body, "\r"), 2); /* one line, CRLF */
	free(body);
	cv_response_release(&res);

	/* released unread: the producer is freed all the same (ASan would tell) */
	request(&req, "GET", "/metrics", NULL);
	cv_http_dispatch(&app, &req, 0, &res);
	assert_non_null(res.stream.produce);
	cv_response_release(&res);

	request(&req, "GET", "/v1/inventory", NULL);
	req.n_query = 1;
	req.query[0].key = "format";
	req.query[0].value = "xml";
	cv_http_dispatch(&app, &req, 0, &res);
	assert_int_equal(res.status, 400);
	assert_null(res.stream.produce);
	cv_response_release(&res);
}

static void test_time_parse(void **state)
{
	int64_t t;

	(void)state;
	assert_int_equal(cv_time_parse("2026-11-22T20:30:00Z", &t), 0);
	assert_int_equal(t, 1795379400);
	assert_int_equal(cv_time_parse("2026-11-22T21:30:00+01:00", &t), 0);
	assert_int_equal(t, 1795379400);
	assert_int_equal(cv_time_parse("2026-11-22t20:30:00.123z", &t), 0);
	assert_int_equal(t, 1795379400);
	assert_int_equal(cv_time_parse("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(cv_time_parse("2024-02-29T00:00:00Z", &t), 0);
	assert_int_equal(cv_time_parse("2025-02-29T00:00:00Z", &t), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_time_parse("2026-11-22 20:30:00Z", &t), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_time_parse("2026-11-22T20:30:00", &t), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_time_parse("2026-11-22T24:00:00Z", &t), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_time_parse("2026-11-22T20:30:00+1:00", &t), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_time_parse("1969-12-31T23:59:59Z", &t), CV_ERR_BAD_REQUEST);
}

/* The compact writer gives json_dumpb's bytes for every kind of value, escapes included, and
 * keeps an object's members in the order they were set. */
static void check_dump_equal(json_t *v)
{
	char *mine = NULL, *theirs;
	json_malloc_t m;
	json_free_t f;
	size_t n;

	json_get_alloc_funcs(&m, &f);
	assert_non_null(v);
	theirs = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(theirs);
	n = cv_http_json_dump(v, &mine);
	assert_int_equal(n, strlen(theirs));
	assert_memory_equal(mine, theirs, n);
	f(mine);
	f(theirs);
	json_decref(v);
}

static void test_json_dump(void **state)
{
	json_t *big = json_array(), *deep = json_array(), *cur = deep;
	char *text = NULL;
	int i;

	(void)state;
	check_dump_equal(json_pack("{s:s, s:i, s:I, s:b, s:b, s:n, s:f, s:[], s:{}}", "z", "a",
				   "y", -1, "x", (json_int_t)INT64_MIN, "w", 1, "v", 0, "u",
				   "t", 0.1, "s", "r"));
	check_dump_equal(json_pack("{s:s}", "q\"\\\b\f\n\r\t\x01\x1f/\x7f", "caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x94\x91"));
	check_dump_equal(json_pack("[s, s#, i, f, f]", "", "a\0b", 3, (size_t)0, 1e300, -2.5));
	check_dump_equal(json_string("text alone"));
	check_dump_equal(json_integer(INT64_MAX));
	/* Bigger than the first block: the buffer grows. */
	for (i = 0; i < 5000; i++)
		json_array_append_new(big, json_pack("{s:i, s:s}", "n", i, "s", "some text"));
	check_dump_equal(big);
	/* Deeper than any answer: refused, not written. */
	for (i = 0; i < 40; i++) {
		json_t *next = json_array();

		json_array_append_new(cur, next);
		cur = next;
	}
	assert_int_equal(cv_http_json_dump(deep, &text), 0);
	json_decref(deep);
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
		cmocka_unit_test(test_multipart_good_bodies),
		cmocka_unit_test(test_multipart_limits),
		cmocka_unit_test(test_multipart_refusals),
		cmocka_unit_test(test_every_route_has_its_rule),
		cmocka_unit_test(test_every_route_has_a_scope_action),
		cmocka_unit_test(test_scope_globs_and_form),
		cmocka_unit_test(test_route_queries_documented),
		cmocka_unit_test(test_route_table_refusals),
		cmocka_unit_test(test_token_rules),
		cmocka_unit_test(test_time_parse),
		cmocka_unit_test(test_csv_fields),
		cmocka_unit_test(test_prom_label_values),
		cmocka_unit_test(test_request_histogram),
		cmocka_unit_test(test_streamed_bodies),
		cmocka_unit_test(test_slow_routes),
		cmocka_unit_test(test_json_dump),
	};
	char dir[] = "/tmp/cv-http-XXXXXX", path[64], secret[CV_API_TOKEN_LEN + 1];
	char *const auths[] = { admin_auth, operator_auth, auditor_auth };
	static const char *const names[] = { "t-admin", "t-operator", "t-auditor" };
	struct cv_api_token t;
	struct cv_errmsg err;
	int failed, i;

	cv_http_json_harden();
	if (cv_config_load(NULL, &cfg, &err) < 0 || mkdtemp(dir) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/http.db", dir);
	if (cv_store_open(path, &app.store, &err) < 0)
		return 1;
	app.cfg = &cfg;
	app.vault.store = app.store;
	app.vault.soon_seconds = 30 * 86400;
	for (i = 0; i < 3; i++) {
		if (cv_vault_token_create(&app.vault, NULL, names[i], (enum cv_role)(i + 1), 0,
					  1700000000, &t, secret, &err) < 0)
			return 1;
		snprintf(auths[i], CV_API_TOKEN_LEN + 8, "Bearer %s", secret);
	}
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	cv_store_free(app.store);
	cv_config_release(&cfg);
	unlink(path);
	snprintf(path, sizeof(path), "%s/http.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/http.db-shm", dir);
	unlink(path);
	rmdir(dir);
	return failed;
}
