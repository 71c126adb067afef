/* libFuzzer target: request bodies through the route table and the handlers, against a real
 * SoftHSM token and a real SQLite file made once per process. The first byte picks a route
 * that takes a body, the second the Content-Type; the rest is the body. Requests carry an
 * operator token, so nothing reaches out to the network (fetching a chain is admin only). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/http.h"
#include "softhsm.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cv_config cfg;
static struct cv_app app;
static char auth[CV_API_TOKEN_LEN + 8];
static char dir[] = "/tmp/cv-fuzz-XXXXXX";

/* The token and the database go when the run ends. */
static void cleanup(void)
{
	cv_store_free(app.store);
	cv_token_free(app.token);
	cv_config_release(&cfg);
	ts_softhsm_remove(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct cv_token_config tcfg = { 0 };
	char path[64], secret[CV_API_TOKEN_LEN + 1];
	struct cv_api_token t;
	struct cv_errmsg err = { "" };

	(void)argc;
	(void)argv;
	cv_http_json_harden();
	if (mkdtemp(dir) == NULL || ts_softhsm_new(dir, "fuzz", "fuzz-so-pin", "fuzz-user-pin") < 0)
		abort();
	tcfg.module_path = ts_softhsm_module();
	tcfg.token_label = "fuzz";
	tcfg.pin = "fuzz-user-pin";
	snprintf(path, sizeof(path), "%s/fuzz.db", dir);
	if (cv_config_load(NULL, &cfg, &err) < 0 || cv_token_open(&tcfg, &app.token, &err) < 0 ||
	    cv_store_open(path, &app.store, &err) < 0) {
		fprintf(stderr, "fuzz_request: %s\n", err.text);
		abort();
	}
	app.cfg = &cfg;
	app.vault.store = app.store;
	app.vault.token = app.token;
	app.vault.soon_seconds = 30 * 86400;
	if (cv_vault_token_create(&app.vault, NULL, "fuzz", CV_ROLE_OPERATOR, 0, 1700000000, &t,
				  secret, &err) < 0)
		abort();
	snprintf(auth, sizeof(auth), "Bearer %s", secret);
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct {
		const char *method, *path;
	} routes[] = {
		{ "POST", "/v1/certificates" },
		{ "POST", "/v1/certificates/f/renew" },
		{ "POST", "/v1/certificates/f/replace" },
		{ "PATCH", "/v1/certificates/f" },
		{ "PUT", "/v1/services/svc" },
		{ "PUT", "/v1/services/svc/certificate" },
		{ "POST", "/v1/jwks" },
		{ "POST", "/v1/truststore" },
	};
	static const char *const types[] = { "application/json", "multipart/form-data; boundary=b",
					     "application/json; charset=utf-8", "text/plain" };
	struct cv_request req;
	struct cv_response res;
	char *body;

	if (size < 2)
		return 0;
	body = malloc(size - 1);
	if (body == NULL)
		return 0;
	memcpy(body, data + 2, size - 2);
	body[size - 2] = '\0';
	memset(&req, 0, sizeof(req));
	req.method = routes[data[0] % 8].method;
	req.path = routes[data[0] % 8].path;
	req.content_type = types[data[1] % 4];
	req.body = body;
	req.body_len = size - 2;
	req.authorization = auth;
	req.now = 1800000000;
	snprintf(req.request_id, sizeof(req.request_id), "fuzz");
	cv_http_dispatch(&app, &req, 0, &res);
	/* Whatever came in, the answer is a status and, for an error, a code. */
	if (res.status < 200 || res.status > 599 || res.status >= 500)
		abort();
	cv_response_release(&res);
	free(body);
	return 0;
}
