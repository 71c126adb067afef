/* The route table and the dispatch around the handlers: matching, body limits, JSON and
 * query helpers, errors to JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "certvault/text.h"
#include <openssl/crypto.h>

#include "certvault/util.h"
#include "handlers.h"
#include "multipart.h"

#define LIST_LIMIT_DEFAULT 50
#define LIST_LIMIT_MAX 1000
/* Longest value of a list's search and filter arguments. */
#define QUERY_MAX 256

struct cv_route {
	const char *method;
	const char *pattern;   /* "{}" stands for one path segment, handed to the handler */
	enum cv_access access;
	size_t max_body;       /* 0: no body; SIZE_MAX: the configured server.max_body */
	cv_handler_fn handler;
	const char *action;    /* what the audit trail calls a change; NULL for a read */
	int slow;              /* SLOW: its handler may take seconds (key derivation, PKCS#12,
				  network fetches, a walk of the whole audit trail), so the
				  server runs it on its slow-request threads, never on the
				  threads that read and answer every connection */
};

#define CFG_BODY SIZE_MAX
#define SLOW 1

/* A route gives only the members that matter to it: the trailing ones (slow) are zero
 * unless named, and the compiler is told that this is meant. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct cv_route routes[] = {
	{ "GET", "/v1/health", CV_R_PUBLIC, 0, h_health, NULL },
	{ "GET", "/v1/health/keys", CV_R_READ, 0, h_health_keys, NULL },
	{ "POST", "/v1/backup", CV_R_ADMIN, 0, h_backup, "backup.create", SLOW },
	{ "GET", "/v1/me", CV_R_READ, 0, h_me, NULL },
	{ "GET", "/v1/certificates", CV_R_READ, 0, h_cert_list, NULL },
	{ "POST", "/v1/certificates", CV_R_WRITE, CFG_BODY, h_cert_import, "certificate.import",
	  SLOW },
	{ "GET", "/v1/certificates/summary", CV_R_READ, 0, h_cert_summary, NULL },
	/* A preview changes nothing, so it writes no audit record; it may what an import may,
	 * and does its slow work (key derivation, revocation fetches) on the slow threads. */
	{ "POST", "/v1/certificates/preview", CV_R_WRITE, CFG_BODY, h_cert_preview, NULL, SLOW },
	{ "GET", "/v1/certificates/{}", CV_R_READ, 0, h_cert_get, NULL },
	{ "PATCH", "/v1/certificates/{}", CV_R_WRITE, 16 * 1024, h_cert_patch, "certificate.edit" },
	{ "DELETE", "/v1/certificates/{}", CV_R_WRITE, 0, h_cert_delete, "certificate.delete" },
	{ "GET", "/v1/certificates/{}/export", CV_R_READ, 0, h_cert_export, NULL },
	{ "GET", "/v1/certificates/{}/versions", CV_R_READ, 0, h_cert_versions, NULL },
	{ "POST", "/v1/certificates/{}/renew", CV_R_WRITE, CFG_BODY, h_cert_renew,
	  "certificate.renew", SLOW },
	{ "POST", "/v1/certificates/{}/replace", CV_R_WRITE, CFG_BODY, h_cert_replace,
	  "certificate.replace", SLOW },
	{ "GET", "/v1/certificates/{}/csr", CV_R_READ, 0, h_cert_csr, NULL },
	{ "POST", "/v1/certificates/{}/certificate", CV_R_WRITE, CFG_BODY, h_cert_merge,
	  "certificate.merge", SLOW },
	{ "DELETE", "/v1/certificates/{}/pending", CV_R_WRITE, 0, h_pending_cancel,
	  "certificate.pending_cancel" },
	/* Deleted certificates (issue 18 part 2): recover is a lifecycle write; a purge
	 * destroys keys for good, so only an admin may. */
	{ "GET", "/v1/deleted-certificates", CV_R_READ, 0, h_deleted_list, NULL },
	{ "POST", "/v1/deleted-certificates/{}/recover", CV_R_WRITE, 0, h_deleted_recover,
	  "certificate.recover" },
	{ "DELETE", "/v1/deleted-certificates/{}", CV_R_ADMIN, 0, h_deleted_purge,
	  "certificate.purge" },
	{ "GET", "/v1/wrapping-key", CV_R_READ, 0, h_wrapping_key, NULL },
	/* Signing with a key (issue 18 part 4): a use of the key, not a change, but recorded
	 * like one. Operators and admins: the role that runs the keys' lifecycle may use them;
	 * an auditor only reads. Not SLOW, by measurement (README, sign section): a signature
	 * is a millisecond or a few in the token, and handing it to the slow threads cost more
	 * than it saved (health's latency under 16 connections signing with RSA-4096 was worse
	 * with SLOW, P-256 throughput no better, and a full slow queue would answer 503). */
	{ "POST", "/v1/certificates/{}/sign", CV_R_WRITE, 1024 * 1024, h_cert_sign,
	  "certificate.sign" },
	{ "GET", "/v1/services", CV_R_READ, 0, h_service_list, NULL },
	{ "GET", "/v1/services/{}", CV_R_READ, 0, h_service_get, NULL },
	{ "PUT", "/v1/services/{}", CV_R_WRITE, 64 * 1024, h_service_put, "service.put" },
	{ "DELETE", "/v1/services/{}", CV_R_WRITE, 0, h_service_delete, "service.delete" },
	{ "PUT", "/v1/services/{}/certificate", CV_R_WRITE, 4 * 1024, h_service_bind,
	  "service.bind" },
	{ "DELETE", "/v1/services/{}/certificate", CV_R_WRITE, 0, h_service_unbind,
	  "service.unbind" },
	{ "GET", "/v1/environments", CV_R_READ, 0, h_environment_list, NULL },
	{ "GET", "/v1/environments/{}", CV_R_READ, 0, h_environment_get, NULL },
	{ "PUT", "/v1/environments/{}", CV_R_WRITE, 8 * 1024, h_environment_put,
	  "environment.put" },
	{ "DELETE", "/v1/environments/{}", CV_R_WRITE, 0, h_environment_delete,
	  "environment.delete" },
	{ "POST", "/v1/jwks", CV_R_WRITE, 4 * 1024, h_jwk_create, "jwk.create" },
	{ "GET", "/v1/jwks", CV_R_PUBLIC, 0, h_jwks_document, NULL },
	{ "GET", "/.well-known/jwks.json", CV_R_PUBLIC, 0, h_jwks_document, NULL },
	/* The management listing, before {}: "all" is never a kid (43 base64url characters). */
	{ "GET", "/v1/jwks/all", CV_R_READ, 0, h_jwk_list, NULL },
	{ "GET", "/v1/jwks/{}", CV_R_READ, 0, h_jwk_get, NULL },
	{ "DELETE", "/v1/jwks/{}", CV_R_WRITE, 0, h_jwk_delete, "jwk.delete" },
	{ "POST", "/v1/jwks/{}/sign", CV_R_WRITE, 2 * 1024 * 1024, h_jwk_sign, "jwk.sign" },
	{ "POST", "/v1/truststore", CV_R_WRITE, CFG_BODY, h_trust_add, "truststore.add", SLOW },
	/* A preview does the add's slow work (a url fetched): on the slow threads too. */
	{ "POST", "/v1/truststore/preview", CV_R_WRITE, CFG_BODY, h_trust_preview, NULL, SLOW },
	{ "GET", "/v1/truststore", CV_R_READ, 0, h_trust_list, NULL },
	{ "GET", "/v1/truststore/export", CV_R_READ, 0, h_trust_export, NULL, SLOW },
	{ "POST", "/v1/truststore/crls", CV_R_WRITE, CFG_BODY, h_crl_add, "truststore.crl_add" },
	{ "GET", "/v1/truststore/crls", CV_R_READ, 0, h_crl_list, NULL },
	{ "DELETE", "/v1/truststore/crls/{}", CV_R_WRITE, 0, h_crl_delete,
	  "truststore.crl_delete" },
	{ "GET", "/v1/truststore/{}", CV_R_READ, 0, h_trust_get, NULL },
	{ "DELETE", "/v1/truststore/{}", CV_R_WRITE, 0, h_trust_delete, "truststore.delete" },
	{ "POST", "/v1/tokens", CV_R_ADMIN, 4 * 1024, h_token_create, "token.create" },
	{ "GET", "/v1/tokens", CV_R_ADMIN, 0, h_token_list, NULL },
	{ "DELETE", "/v1/tokens/{}", CV_R_ADMIN, 0, h_token_revoke, "token.revoke" },
	{ "GET", "/v1/audit", CV_R_AUDIT, 0, h_audit_list, NULL },
	{ "GET", "/v1/audit/verify", CV_R_AUDIT, 0, h_audit_verify, NULL, SLOW },
	{ "GET", "/v1/inventory", CV_R_AUDIT, 0, h_inventory, NULL },
	{ "GET", "/metrics", CV_R_METRICS, 0, h_metrics, NULL },
	/* Notifications (issue 18 part 1): channels are admin only (a webhook's secret, where
	 * messages go); the log is for who may read the audit trail. */
	{ "POST", "/v1/notifications/channels", CV_R_ADMIN, 16 * 1024, h_notify_channel_create,
	  "notification.channel_create" },
	{ "GET", "/v1/notifications/channels", CV_R_ADMIN, 0, h_notify_channel_list, NULL },
	{ "GET", "/v1/notifications/channels/{}", CV_R_ADMIN, 0, h_notify_channel_get, NULL },
	{ "DELETE", "/v1/notifications/channels/{}", CV_R_ADMIN, 0, h_notify_channel_delete,
	  "notification.channel_delete" },
	{ "GET", "/v1/notifications/deliveries", CV_R_AUDIT, 0, h_notify_deliveries, NULL },
	{ "GET", "/v1/certificates/{}/notifications", CV_R_READ, 0, h_cert_notify_get, NULL },
	{ "PUT", "/v1/certificates/{}/notifications", CV_R_WRITE, 8 * 1024, h_cert_notify_put,
	  "certificate.notifications" },
	{ "GET", "/v1/openapi.json", CV_R_PUBLIC, 0, h_openapi, NULL },
	/* The web console (issue 12): its files, and the session a browser signs in to. */
	{ "GET", "/", CV_R_PUBLIC, 0, h_console_redirect, NULL },
	{ "GET", "/console", CV_R_PUBLIC, 0, h_console_redirect, NULL },
	{ "GET", "/console/", CV_R_PUBLIC, 0, h_console_index, NULL },
	{ "GET", "/console/{}", CV_R_PUBLIC, 0, h_console_asset, NULL },
	{ "POST", "/v1/session", CV_R_PUBLIC, 4 * 1024, h_session_create, "session.sign_in" },
	{ "GET", "/v1/session", CV_R_PUBLIC, 0, h_session_get, NULL },
	{ "DELETE", "/v1/session", CV_R_READ, 0, h_session_delete, "session.sign_out" },
};
#pragma GCC diagnostic pop

/* The query arguments a route takes, by its handler, space-separated, and the longest value of
 * any; a route not listed takes none. The dispatch refuses every other argument whatever the
 * method (query_check): a POST that ignored one it does not know (?dry_run=true) would do for
 * real what the client meant to try. */
static const struct route_query {
	cv_handler_fn handler;
	const char *args;
	size_t max;
} route_queries[] = {
	{ h_cert_list, "status q in_use domain tag limit cursor sort order environment service",
	  QUERY_MAX },
	{ h_cert_delete, "confirm jwk_action", 64 },
	{ h_deleted_list, "limit cursor", 64 },
	{ h_deleted_purge, "confirm", 16 },
	{ h_cert_export, "format version", 20 },
	{ h_jwk_list, "certificate limit cursor", 128 },
	{ h_trust_list, "q limit cursor", 256 },
	{ h_service_list, "environment certificate limit cursor", QUERY_MAX },
	{ h_environment_list, "limit cursor", QUERY_MAX },
	{ h_trust_export, "format password", CV_X509_TRUSTSTORE_PASSWORD_MAX },
	{ h_audit_list, "from until actor action target limit cursor", 200 },
	{ h_service_get, "wait", 3 },
	{ h_inventory, "format", 16 },
	{ h_notify_deliveries, "channel certificate event state limit cursor", 128 },
};

/* What each route does for a scoped API token (issue 18 part 3), by its handler: the action
 * its scope must hold, and how the dispatch finds the object it touches to hold it against
 * the scope (scope_check, the one place it is checked). A route not listed here is closed to
 * scoped tokens, and test_http fails until it is given a line. */
enum scope_object {
	OBJ_NONE = 0,       /* nothing the scope names: the action alone decides */
	OBJ_LIST,           /* a list: the store shows only what the scope lets in */
	OBJ_CERT,           /* the certificate the path names */
	OBJ_CERT_NEW,       /* a new certificate: the body's name and environments */
	OBJ_CERT_EDIT,      /* the path's certificate; the body's new name and environments */
	OBJ_SERVICE,        /* the path's service (its environment); the body's environment */
	OBJ_SERVICE_BIND,   /* the path's service and the body's certificate */
	OBJ_ENVIRONMENT,    /* the environment the path names */
	OBJ_JWK,            /* the JWK the path names, by its certificate */
	OBJ_JWK_NEW,        /* the body's certificate */
	OBJ_WHOLE_LIST,     /* a list the store does not cut to a scope (yet): only a scope
			       without certificate or environment limits reads it */
};
static const struct route_scope {
	cv_handler_fn handler;
	enum cv_scope_action action;
	enum scope_object object;
} route_scopes[] = {
	{ h_health, CV_SCOPE_ANY, OBJ_NONE },
	{ h_me, CV_SCOPE_ANY, OBJ_NONE },
	{ h_openapi, CV_SCOPE_ANY, OBJ_NONE },
	{ h_jwks_document, CV_SCOPE_ANY, OBJ_NONE },
	{ h_console_redirect, CV_SCOPE_ANY, OBJ_NONE },
	{ h_console_index, CV_SCOPE_ANY, OBJ_NONE },
	{ h_console_asset, CV_SCOPE_ANY, OBJ_NONE },
	{ h_session_create, CV_SCOPE_ANY, OBJ_NONE },
	{ h_session_get, CV_SCOPE_ANY, OBJ_NONE },
	{ h_session_delete, CV_SCOPE_ANY, OBJ_NONE },
	{ h_cert_list, CV_SCOPE_READ, OBJ_LIST },
	{ h_cert_summary, CV_SCOPE_READ, OBJ_LIST },
	/* A body with "generate" asks for a key born in the token: generate, not import. */
	{ h_cert_import, CV_SCOPE_IMPORT, OBJ_CERT_NEW },
	{ h_cert_preview, CV_SCOPE_IMPORT, OBJ_CERT_NEW },
	{ h_cert_get, CV_SCOPE_READ, OBJ_CERT },
	{ h_cert_patch, CV_SCOPE_EDIT, OBJ_CERT_EDIT },
	{ h_cert_delete, CV_SCOPE_DELETE, OBJ_CERT },
	{ h_cert_export, CV_SCOPE_EXPORT, OBJ_CERT },
	{ h_cert_versions, CV_SCOPE_READ, OBJ_CERT },
	/* ... and a renewal with "generate" needs generate as well. */
	{ h_cert_renew, CV_SCOPE_RENEW, OBJ_CERT },
	{ h_cert_replace, CV_SCOPE_REPLACE, OBJ_CERT },
	{ h_cert_csr, CV_SCOPE_READ, OBJ_CERT },
	{ h_cert_merge, CV_SCOPE_GENERATE, OBJ_CERT },
	{ h_pending_cancel, CV_SCOPE_DELETE, OBJ_CERT },
	{ h_wrapping_key, CV_SCOPE_READ, OBJ_NONE },
	{ h_service_list, CV_SCOPE_READ, OBJ_LIST },
	{ h_service_get, CV_SCOPE_READ, OBJ_SERVICE },
	{ h_service_put, CV_SCOPE_SERVICE, OBJ_SERVICE },
	{ h_service_delete, CV_SCOPE_DELETE, OBJ_SERVICE },
	{ h_service_bind, CV_SCOPE_BIND, OBJ_SERVICE_BIND },
	{ h_service_unbind, CV_SCOPE_BIND, OBJ_SERVICE },
	{ h_environment_list, CV_SCOPE_READ, OBJ_LIST },
	{ h_environment_get, CV_SCOPE_READ, OBJ_ENVIRONMENT },
	{ h_environment_put, CV_SCOPE_ENVIRONMENT, OBJ_ENVIRONMENT },
	{ h_environment_delete, CV_SCOPE_DELETE, OBJ_ENVIRONMENT },
	{ h_jwk_create, CV_SCOPE_JWK, OBJ_JWK_NEW },
	{ h_jwk_list, CV_SCOPE_READ, OBJ_LIST },
	{ h_jwk_get, CV_SCOPE_READ, OBJ_JWK },
	{ h_jwk_delete, CV_SCOPE_DELETE, OBJ_JWK },
	/* The truststore holds public CAs for everyone: read whole, changed whole. */
	{ h_trust_add, CV_SCOPE_TRUSTSTORE, OBJ_NONE },
	{ h_trust_preview, CV_SCOPE_TRUSTSTORE, OBJ_NONE },
	{ h_trust_list, CV_SCOPE_READ, OBJ_NONE },
	{ h_trust_get, CV_SCOPE_READ, OBJ_NONE },
	{ h_trust_export, CV_SCOPE_READ, OBJ_NONE },
	{ h_trust_delete, CV_SCOPE_TRUSTSTORE, OBJ_NONE },
	{ h_crl_add, CV_SCOPE_TRUSTSTORE, OBJ_NONE },
	{ h_crl_list, CV_SCOPE_READ, OBJ_NONE },
	{ h_crl_delete, CV_SCOPE_TRUSTSTORE, OBJ_NONE },
	{ h_token_create, CV_SCOPE_TOKENS, OBJ_NONE },
	{ h_token_list, CV_SCOPE_TOKENS, OBJ_NONE },
	{ h_token_revoke, CV_SCOPE_TOKENS, OBJ_NONE },
	/* The audit trail and the metrics cannot be cut to a scope: whole, or not at all. */
	{ h_audit_list, CV_SCOPE_AUDIT, OBJ_NONE },
	{ h_audit_verify, CV_SCOPE_AUDIT, OBJ_NONE },
	{ h_metrics, CV_SCOPE_METRICS, OBJ_NONE },
	{ h_inventory, CV_SCOPE_READ, OBJ_LIST },
	/* Soft delete (issue 18 part 2): a deleted certificate is found by its name. */
	{ h_deleted_list, CV_SCOPE_READ, OBJ_WHOLE_LIST },
	{ h_deleted_recover, CV_SCOPE_DELETE, OBJ_CERT },
	{ h_deleted_purge, CV_SCOPE_DELETE, OBJ_CERT },
	/* Signatures (issue 18 part 4) with the certificate's key, or the JWK's certificate's. */
	{ h_cert_sign, CV_SCOPE_SIGN, OBJ_CERT },
	{ h_jwk_sign, CV_SCOPE_SIGN, OBJ_JWK },
	/* Notifications (issue 18 part 1): channels are certvault-wide; the delivery log names
	 * every certificate, so only a scope without limits reads it. */
	{ h_notify_channel_create, CV_SCOPE_ADMIN, OBJ_NONE },
	{ h_notify_channel_list, CV_SCOPE_ADMIN, OBJ_NONE },
	{ h_notify_channel_get, CV_SCOPE_ADMIN, OBJ_NONE },
	{ h_notify_channel_delete, CV_SCOPE_ADMIN, OBJ_NONE },
	{ h_notify_deliveries, CV_SCOPE_AUDIT, OBJ_WHOLE_LIST },
	{ h_cert_notify_get, CV_SCOPE_READ, OBJ_CERT },
	{ h_cert_notify_put, CV_SCOPE_EDIT, OBJ_CERT },
	/* Issue 20: a backup is the whole database, and the keys' report names every
	 * certificate: only a scope without limits. */
	{ h_backup, CV_SCOPE_ADMIN, OBJ_WHOLE_LIST },
	{ h_health_keys, CV_SCOPE_READ, OBJ_WHOLE_LIST },
};

static const struct route_scope *route_scope_of(cv_handler_fn handler)
{
	size_t i;

	for (i = 0; i < sizeof(route_scopes) / sizeof(route_scopes[0]); i++)
		if (route_scopes[i].handler == handler)
			return &route_scopes[i];
	return NULL;
}

static const char *scope_object_name(enum scope_object o)
{
	static const char *const names[] = {
		[OBJ_NONE] = "none",
		[OBJ_LIST] = "list",
		[OBJ_CERT] = "certificate",
		[OBJ_CERT_NEW] = "new certificate",
		[OBJ_CERT_EDIT] = "certificate edit",
		[OBJ_SERVICE] = "service",
		[OBJ_SERVICE_BIND] = "service and certificate",
		[OBJ_ENVIRONMENT] = "environment",
		[OBJ_JWK] = "jwk",
		[OBJ_JWK_NEW] = "new jwk",
		[OBJ_WHOLE_LIST] = "whole list",
	};

	return names[o];
}

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/* The query arguments of the route whose handler this is, NULL when it takes none. */
static const struct route_query *route_query_of(cv_handler_fn handler)
{
	size_t i;

	for (i = 0; i < sizeof(route_queries) / sizeof(route_queries[0]); i++)
		if (route_queries[i].handler == handler)
			return &route_queries[i];
	return NULL;
}

int cv_http_role_may(enum cv_access access, enum cv_role role, int metrics_public)
{
	switch (access) {
	case CV_R_PUBLIC:
		return 1;
	case CV_R_METRICS:
		return metrics_public || role != 0;
	case CV_R_READ:
		return role == CV_ROLE_ADMIN || role == CV_ROLE_OPERATOR || role == CV_ROLE_AUDITOR;
	case CV_R_WRITE:
		return role == CV_ROLE_ADMIN || role == CV_ROLE_OPERATOR;
	case CV_R_AUDIT:
		return role == CV_ROLE_ADMIN || role == CV_ROLE_AUDITOR;
	case CV_R_ADMIN:
		return role == CV_ROLE_ADMIN;
	}
	return 0; /* a route without a rule is closed to everyone */
}

const char *cv_http_access_name(enum cv_access access)
{
	static const char *const names[] = {
		[CV_R_PUBLIC] = "public", [CV_R_METRICS] = "metrics", [CV_R_READ] = "read",
		[CV_R_WRITE] = "write",   [CV_R_AUDIT] = "audit",     [CV_R_ADMIN] = "admin",
	};

	if (access < CV_R_PUBLIC || access > CV_R_ADMIN)
		return "none";
	return names[access];
}

int cv_http_route_at(size_t i, struct cv_route_info *ret)
{
	if (i >= N_ROUTES)
		return -1;
	ret->method = routes[i].method;
	ret->pattern = routes[i].pattern;
	ret->access = routes[i].access;
	ret->action = routes[i].action;
	ret->max_body = routes[i].max_body;
	ret->slow = routes[i].slow;
	ret->query = route_query_of(routes[i].handler) != NULL ?
			     route_query_of(routes[i].handler)->args : NULL;
	ret->scope_action = route_scope_of(routes[i].handler) != NULL ?
				    route_scope_of(routes[i].handler)->action : CV_SCOPE_UNSET;
	ret->scope_object = route_scope_of(routes[i].handler) != NULL ?
				    scope_object_name(route_scope_of(routes[i].handler)->object) :
				    NULL;
	return 0;
}

/* Matches path against pattern, copying the {} segments into buf and pointing params at
 * them. Returns 1 on a match. */
static int match(const char *pattern, const char *path, char *buf, size_t buflen,
		 const char **params)
{
	size_t n_params = 0, used = 0;
	const char *p = pattern, *s = path;

	while (*p != '\0' && *s != '\0') {
		if (p[0] == '{' && p[1] == '}') {
			size_t seg = strcspn(s, "/");

			if (seg == 0 || n_params == CV_HTTP_MAX_PARAMS || used + seg + 1 > buflen)
				return 0;
			memcpy(buf + used, s, seg);
			buf[used + seg] = '\0';
			params[n_params++] = buf + used;
			used += seg + 1;
			p += 2;
			s += seg;
			continue;
		}
		if (*p != *s)
			return 0;
		p++;
		s++;
	}
	return *p == '\0' && *s == '\0';
}

/* The route for method and path, its {} segments copied into buf (params point at them);
 * NULL when none matches, with *ret_path_known telling whether some route has this path
 * with another method. */
static const struct cv_route *find_route(const char *method, const char *path, char *buf,
					 size_t buflen, const char **params, int *ret_path_known)
{
	size_t i;

	*ret_path_known = 0;
	for (i = 0; i < N_ROUTES; i++) {
		const char *tmp[CV_HTTP_MAX_PARAMS] = { 0 };

		if (!match(routes[i].pattern, path, buf, buflen, tmp))
			continue;
		*ret_path_known = 1;
		if (strcmp(routes[i].method, method) == 0) {
			memcpy(params, tmp, sizeof(tmp));
			return &routes[i];
		}
	}
	return NULL;
}

size_t cv_http_body_limit(const struct cv_app *app, const char *method, const char *path)
{
	const char *params[CV_HTTP_MAX_PARAMS];
	const struct cv_route *route;
	char buf[CV_HTTP_PARAMS_BUFLEN];
	int known;

	route = find_route(method, path, buf, sizeof(buf), params, &known);
	if (route == NULL)
		return 0;
	if (route->max_body == CFG_BODY)
		return (size_t)app->cfg->max_body;
	return route->max_body;
}

void cv_response_release(struct cv_response *res)
{
	OPENSSL_cleanse(res->set_cookie, sizeof(res->set_cookie));
	json_decref(res->json);
	free(res->raw);
	if (res->stream.free != NULL)
		res->stream.free(res->stream.arg);
	memset(res, 0, sizeof(*res));
}

int res_json(struct cv_response *res, int status, json_t *body)
{
	if (body == NULL)
		return CV_ERR_NOMEM;
	json_decref(res->json);
	res->status = status;
	res->json = body;
	return 0;
}

json_t *time_json(int64_t t)
{
	char buf[CV_TIME_BUFLEN];

	if (cv_time_rfc3339(t, buf, sizeof(buf)) < 0)
		return json_null();
	return json_string(buf);
}

json_t *strings_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(a, cv_text_json(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

json_t *string_or_null(const char *s)
{
	return cv_text_json(s);
}

int req_page_args(const struct cv_request *req, int64_t *ret_limit, const char **ret_cursor,
		  struct cv_errmsg *err)
{
	const char *s;

	*ret_limit = LIST_LIMIT_DEFAULT;
	if ((s = req_query(req, "limit")) != NULL &&
	    cv_parse_int64(s, 1, LIST_LIMIT_MAX, ret_limit) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "limit must be from 1 to %d",
				     LIST_LIMIT_MAX);
	if ((s = req_query(req, "cursor")) != NULL && !cv_name_valid(s))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "cursor must be a next_cursor this API returned");
	*ret_cursor = s;
	return 0;
}

static void res_error(struct cv_response *res, int r, const char *message)
{
	/* A message may quote what a client sent (a name, a path): escaped where it is not
	 * text, so the error itself can always be shown. */
	char shown[4 * sizeof(((struct cv_errmsg *)0)->text)];
	json_t *body;

	cv_response_release(res);
	if (message == NULL || message[0] == '\0')
		message = cv_strerror(r);
	cv_text_safe(message, strlen(message), 0, shown, sizeof(shown));
	body = json_pack("{s:{s:s,s:s}}", "error", "code", cv_http_error_code(r), "message",
			 shown);
	res->status = cv_http_error_status(r);
	res->json = body; /* NULL only when out of memory: the server sends a bare status */
}

/* Whether word is one of the space-separated words of list. */
static int word_in(const char *list, const char *word)
{
	size_t n = strlen(word), k;

	while (*list != '\0') {
		k = strcspn(list, " ");
		if (k == n && strncmp(list, word, n) == 0)
			return 1;
		list += k;
		list += *list == ' ';
	}
	return 0;
}

/* The query as the route takes it (route_queries): only its arguments, each once, at most
 * its longest value, keys and values UTF-8 text. */
static int query_check(const struct cv_route *route, const struct cv_request *req,
		       struct cv_errmsg *err)
{
	const struct route_query *q = route_query_of(route->handler);
	char shown[80];
	size_t i, j;

	for (i = 0; i < req->n_query; i++) {
		const char *key = req->query[i].key, *value = req->query[i].value;

		cv_text_escape(key, strlen(key), CV_TEXT_LOG, shown, sizeof(shown));
		if (q == NULL || !word_in(q->args, key))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "unknown query argument %s%s",
					     shown, q == NULL ? ": this route takes none" : "");
		for (j = 0; j < i; j++)
			if (strcmp(req->query[j].key, key) == 0)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "query argument %s given twice", shown);
		if (value == NULL)
			continue;
		if (strlen(value) > q->max)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "query argument %s is longer than %zu bytes", shown,
					     q->max);
		if (!cv_text_clean(value, strlen(value), 0))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "query argument %s is not "
					     "UTF-8 text without control characters", shown);
	}
	return 0;
}

/* Path segments name things: UTF-8 text, nothing else reaches a handler. */
static int params_check(const struct cv_request *req, struct cv_errmsg *err)
{
	size_t i;

	for (i = 0; i < CV_HTTP_MAX_PARAMS && req->params[i] != NULL; i++)
		if (!cv_text_clean(req->params[i], strlen(req->params[i]), 0))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a path segment is not UTF-8 "
					     "text without control characters");
	return 0;
}

/* The bearer token of an Authorization header, or NULL. */
static const char *bearer_of(const char *authorization)
{
	if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
		return NULL;
	authorization += 7;
	while (*authorization == ' ')
		authorization++;
	return authorization;
}

/* The value of the cookie called name in a Cookie header, copied into buf; NULL when it is
 * absent or longer than buf holds. */
static const char *cookie_of(const char *header, const char *name, char *buf, size_t len)
{
	size_t name_len = strlen(name), n;
	const char *p = header;

	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == ';')
			p++;
		n = strcspn(p, ";");
		if (n > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
			n -= name_len + 1;
			while (n > 0 && p[name_len + 1 + n - 1] == ' ')
				n--;
			if (n + 1 > len)
				return NULL;
			memcpy(buf, p + name_len + 1, n);
			buf[n] = '\0';
			return buf;
		}
		p += n;
	}
	return NULL;
}

const char *req_session_cookie_name(const struct cv_request *req)
{
	/* On HTTPS the __Host- prefix makes the browser refuse the cookie unless it is Secure,
	 * Path=/ and set by this very host. */
	return req->tls ? "__Host-cv_session" : "cv_session";
}

/* Who asks, and whether they may: 0, CV_ERR_UNAUTHORIZED or CV_ERR_FORBIDDEN. An API token
 * (Authorization: Bearer) or else a console session cookie, the same roles for both; a
 * change through a session also needs its CSRF token in X-CSRF-Token, which a form or a
 * script of another site cannot send. */
static int authorize(struct cv_app *app, const struct cv_route *route, struct cv_request *req,
		     struct cv_errmsg *err)
{
	const char *bearer = bearer_of(req->authorization), *name, *cookie;
	char buf[CV_SESSION_COOKIE_LEN + 2];
	int r;

	memset(&req->actor, 0, sizeof(req->actor));
	req->has_session = 0;
	name = req_session_cookie_name(req);
	cookie = bearer == NULL && req->cookie != NULL ?
		 cookie_of(req->cookie, name, buf, sizeof(buf)) : NULL;
	if (route->access == CV_R_PUBLIC) {
		/* GET /v1/session answers "not signed in" rather than 401, so the console's first
		 * look costs no failed request; no other public route reads the cookie. */
		if (route->handler == h_session_get && cookie != NULL &&
		    cv_vault_session_authenticate(&app->vault, cookie, req->now,
						  app->cfg->session_idle_timeout, &req->actor,
						  &req->session, err) == 0)
			req->has_session = 1;
		OPENSSL_cleanse(buf, sizeof(buf));
		err->text[0] = '\0';
		return 0;
	}
	if (bearer != NULL) {
		r = cv_vault_authenticate(&app->vault, bearer, req->now, &req->actor, err);
		if (r < 0)
			return r;
	} else if (cookie != NULL) {
		r = cv_vault_session_authenticate(&app->vault, cookie, req->now,
						  app->cfg->session_idle_timeout, &req->actor,
						  &req->session, err);
		OPENSSL_cleanse(buf, sizeof(buf));
		if (r < 0)
			return r;
		req->has_session = 1;
		if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0 &&
		    !cv_vault_session_csrf_ok(&req->session, req->csrf_token))
			return cv_errmsg_set(err, CV_ERR_FORBIDDEN, "a change through a console "
					     "session needs the session's X-CSRF-Token header");
	}
	if (cv_http_role_may(route->access, req->actor.role, app->cfg->metrics_public))
		return 0;
	if (req->actor.role == 0)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, "%s", req->authorization == NULL ?
				     "an API token is needed: Authorization: Bearer <token>, "
				     "or a console session" :
				     "the Authorization header must be Bearer <token>");
	return cv_errmsg_set(err, CV_ERR_FORBIDDEN, "the %s role may not %s %s",
			     cv_role_name(req->actor.role), req->method, route->pattern);
}

static int media_type_is(const struct cv_request *req, const char *type);
static int form_value(const struct http_part *part, json_t **ret, struct cv_errmsg *err);

/* The request body as the scope check reads it: the JSON object, or the form's fields it
 * needs as the handlers read them (form_value: environments split on commas), and
 * "generate" when any "generate.<member>" field is there; an empty object when there is no
 * body. A body that cannot be read is refused here as the handler would refuse it. */
static int scope_body(const struct cv_request *req, json_t **ret, struct cv_errmsg *err)
{
	static const char *const wanted[] = { "name", "environments", "environment", "certificate",
					      "generate", NULL };
	struct http_part *parts = NULL;
	json_error_t jerr;
	json_t *obj = NULL, *value;
	size_t n = 0, i;
	int r = 0;

	*ret = NULL;
	/* A body of another type names nothing here: the handler refuses it (415) unread. */
	if (req->body == NULL || req->body_len == 0 ||
	    (!media_type_is(req, "multipart/form-data") &&
	     !media_type_is(req, "application/json"))) {
		*ret = json_object();
		return *ret != NULL ? 0 : CV_ERR_NOMEM;
	}
	if (!media_type_is(req, "multipart/form-data")) {
		obj = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
		if (obj == NULL || !json_is_object(obj)) {
			json_decref(obj);
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the body must be a JSON "
					     "object");
		}
		*ret = obj;
		return 0;
	}
	r = http_multipart_parse(req->content_type, req->body, req->body_len, &parts, &n, err);
	if (r < 0)
		return r;
	obj = json_object();
	if (obj == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		size_t k;

		if (strncmp(parts[i].name, "generate.", 9) == 0) {
			/* A key born in the token, whatever its members say. */
			if (json_object_set_new(obj, "generate", json_true()) < 0) {
				r = CV_ERR_NOMEM;
				goto out;
			}
			continue;
		}
		for (k = 0; wanted[k] != NULL && strcmp(wanted[k], parts[i].name) != 0; k++)
			;
		if (wanted[k] == NULL)
			continue;
		r = form_value(&parts[i], &value, err);
		if (r < 0)
			goto out;
		if (json_object_set_new(obj, parts[i].name, value) < 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	*ret = obj;
	obj = NULL;
out:
	json_decref(obj);
	free(parts);
	return r;
}

/* The message of a refusal by the scope. */
static int out_of_scope(struct cv_errmsg *err, const char *what, const char *name)
{
	char shown[80];

	cv_text_safe(name, strlen(name), 0, shown, sizeof(shown));
	return cv_errmsg_set(err, CV_ERR_OUT_OF_SCOPE, "%s %s is outside this token's scope",
			     what, shown);
}

/* A body's environments for a certificate a scoped token makes or edits: present (when
 * required), not empty ("any environment" would take it out of the scope) and each one of
 * the scope's. */
static int scope_body_environments(const struct cv_scope *scope, json_t *body, int required,
				   struct cv_errmsg *err)
{
	json_t *envs = json_object_get(body, "environments"), *item;
	size_t i;

	if (scope->objects.n_environments == 0 || (!required && envs == NULL))
		return 0;
	if (!json_is_array(envs) || json_array_size(envs) == 0)
		return cv_errmsg_set(err, CV_ERR_OUT_OF_SCOPE, "this token's scope holds "
				     "environments: a certificate it makes or edits must name "
				     "its \"environments\", each one of the scope's");
	json_array_foreach(envs, i, item)
		if (!json_is_string(item) ||
		    !cv_scope_environment_in(scope, json_string_value(item)))
			return out_of_scope(err, "the environment",
					    json_is_string(item) ? json_string_value(item) : "?");
	return 0;
}

/* A certificate named by the path or the body: its name against the scope's patterns, its
 * environments against the scope's (one lookup). */
static int scope_cert(struct cv_app *app, const struct cv_scope *scope, const char *name,
		      struct cv_errmsg *err)
{
	int inside = 0, r;

	r = cv_vault_scope_cert(&app->vault, scope, name, &inside, err);
	if (r < 0)
		return r;
	return inside ? 0 : out_of_scope(err, "the certificate", name);
}

/* Whether the scoped actor of req may call route on what it touches: 0, or
 * CV_ERR_OUT_OF_SCOPE saying what the scope leaves out (or the body's or the database's
 * error). The one place a scope is checked: every route names its action and its object in
 * route_scopes, and no handler checks it again (the lists pass the scope to the store). */
static int scope_check(struct cv_app *app, const struct cv_route *route,
		       const struct cv_request *req, struct cv_errmsg *err)
{
	const struct cv_scope *scope = &req->actor.scope;
	const struct route_scope *rs;
	enum cv_scope_action action;
	json_t *body = NULL, *v;
	const char *name;
	int r = 0, inside = 0;

	if (!scope->scoped)
		return 0;
	rs = route_scope_of(route->handler);
	if (rs == NULL || rs->action == CV_SCOPE_UNSET)
		return cv_errmsg_set(err, CV_ERR_OUT_OF_SCOPE, "%s %s is not open to scoped "
				     "tokens", req->method, route->pattern);
	if (rs->action == CV_SCOPE_ANY)
		return 0;
	action = rs->action;
	if (rs->object == OBJ_CERT_NEW || rs->object == OBJ_CERT_EDIT ||
	    rs->object == OBJ_SERVICE || rs->object == OBJ_SERVICE_BIND ||
	    rs->object == OBJ_JWK_NEW || route->handler == h_cert_renew) {
		r = scope_body(req, &body, err);
		if (r < 0)
			return r;
	}
	v = body != NULL ? json_object_get(body, "generate") : NULL;
	if (v != NULL && !json_is_null(v)) {
		if (route->handler == h_cert_import)
			action = CV_SCOPE_GENERATE;
		else if (!cv_scope_allows(scope, CV_SCOPE_GENERATE)) {
			r = cv_errmsg_set(err, CV_ERR_OUT_OF_SCOPE, "this token's scope does not "
					  "allow \"generate\"");
			goto out;
		}
	}
	if (!cv_scope_allows(scope, action)) {
		r = cv_errmsg_set(err, CV_ERR_OUT_OF_SCOPE, "this token's scope does not allow "
				  "\"%s\"", cv_scope_action_name(action));
		goto out;
	}
	switch (rs->object) {
	case OBJ_NONE:
		break;
	case OBJ_LIST:
		/* A filter by an object the scope leaves out would tell how it is used (which
		 * services use a certificate the token cannot see): refused as its path would
		 * be. */
		name = route->handler == h_service_list ? req_query(req, "certificate") : NULL;
		if (name != NULL)
			r = scope_cert(app, scope, name, err);
		name = route->handler == h_cert_list ? req_query(req, "service") : NULL;
		if (r == 0 && name != NULL) {
			r = cv_vault_scope_service(&app->vault, scope, name, &inside, err);
			if (r == 0 && !inside)
				r = out_of_scope(err, "the service", name);
		}
		break;
	case OBJ_WHOLE_LIST:
		if (scope->objects.n_certificates > 0 || scope->objects.n_environments > 0)
			r = cv_errmsg_set(err, CV_ERR_OUT_OF_SCOPE, "%s is not cut to a scope: "
					  "only a token whose scope limits no certificate or "
					  "environment may read it", route->pattern);
		break;
	case OBJ_CERT:
		r = scope_cert(app, scope, req->params[0], err);
		break;
	case OBJ_CERT_NEW:
		v = json_object_get(body, "name");
		if (json_is_string(v) && !cv_scope_cert_name_in(scope, json_string_value(v))) {
			r = out_of_scope(err, "the certificate", json_string_value(v));
			break;
		}
		/* A new certificate generated in the token takes its environments by PATCH after
		 * the merge: until then it is in no environment, so out of this scope's reach. */
		if (action == CV_SCOPE_GENERATE && scope->objects.n_environments > 0) {
			r = cv_errmsg_set(err, CV_ERR_OUT_OF_SCOPE, "this token's scope holds "
					  "environments, and a new certificate generated in the "
					  "token has none until it is merged and edited: it would be "
					  "outside the scope (renewing by generate is not)");
			break;
		}
		/* A preview stores nothing (and takes no environments): its name is enough. */
		r = scope_body_environments(scope, body, route->handler != h_cert_preview, err);
		break;
	case OBJ_CERT_EDIT:
		r = scope_cert(app, scope, req->params[0], err);
		v = json_object_get(body, "name");
		if (r == 0 && json_is_string(v) && !cv_scope_cert_name_in(scope, json_string_value(v)))
			r = out_of_scope(err, "the certificate", json_string_value(v));
		if (r == 0)
			r = scope_body_environments(scope, body, 0, err);
		break;
	case OBJ_SERVICE:
	case OBJ_SERVICE_BIND:
		r = cv_vault_scope_service(&app->vault, scope, req->params[0], &inside, err);
		if (r == 0 && !inside)
			r = out_of_scope(err, "the service", req->params[0]);
		v = json_object_get(body, "environment");
		if (r == 0 && json_is_string(v) &&
		    !cv_scope_environment_in(scope, json_string_value(v)))
			r = out_of_scope(err, "the environment", json_string_value(v));
		v = json_object_get(body, "certificate");
		if (r == 0 && rs->object == OBJ_SERVICE_BIND && json_is_string(v))
			r = scope_cert(app, scope, json_string_value(v), err);
		break;
	case OBJ_ENVIRONMENT:
		if (!cv_scope_environment_in(scope, req->params[0]))
			r = out_of_scope(err, "the environment", req->params[0]);
		break;
	case OBJ_JWK:
		r = cv_vault_scope_jwk(&app->vault, scope, req->params[0], &inside, err);
		if (r == 0 && !inside)
			r = out_of_scope(err, "the JWK", req->params[0]);
		break;
	case OBJ_JWK_NEW:
		name = json_string_value(json_object_get(body, "certificate"));
		if (name != NULL)
			r = scope_cert(app, scope, name, err);
		break;
	}
out:
	json_decref(body);
	return r;
}

/* r, or CV_ERR_RATE_LIMITED in its place when r is an unauthorized request from an address
 * past the rate of such refusals. */
static int throttle_refusal(struct cv_app *app, const struct cv_request *req,
			    struct cv_response *res, int r, struct cv_errmsg *err)
{
	int64_t wait = 0;

	if (r != CV_ERR_UNAUTHORIZED ||
	    cv_vault_refusal_throttle(&app->vault, req->source,
				      req->now_ms != 0 ? req->now_ms : req->now * 1000,
				      &wait) != CV_ERR_RATE_LIMITED)
		return r;
	res->retry_after = wait;
	return cv_errmsg_set(err, CV_ERR_RATE_LIMITED, "too many refused requests from this "
			     "address: retry after %lld s", (long long)wait);
}

/* The end of every request: the error answer, the audit record of a change or of a refused
 * attempt at one, the route for the counters. */
static void dispatch_finish(struct cv_app *app, struct cv_request *req, struct cv_dispatch *d,
			    int r, const char *message, struct cv_response *res)
{
	if (r < 0) {
		int64_t wait = res->retry_after; /* a rate limit's, set before the error */

		res_error(res, r, message);
		res->retry_after = wait;
	}
	if (r == CV_ERR_UNAUTHORIZED)
		res->challenge = 1;
	if (r == CV_ERR_BUSY)
		res->retry_after = 1;
	if (req->audit != NULL) {
		int ar = 0;

		if (r < 0) {
			ar = cv_vault_audit_refused(&app->vault, req->audit, cv_http_error_code(r));
		} else if (!req->audit->written) {
			/* A use case must write its record in its change's transaction: one that
			 * did not is a bug (the integration tests fail on this line in the log).
			 * Recorded late rather than never. */
			fprintf(stderr, "certvaultd: %s: BUG: audit record of %s written after the "
				"change, not with it\n", req->request_id, d->route->action);
			ar = cv_vault_audit_late(&app->vault, req->audit);
		}
		if (ar < 0)
			fprintf(stderr, "certvaultd: %s: the audit record of %s %s could not be "
				"written\n", req->request_id, r < 0 ? "a refused" : "a done",
				d->route->action);
	}
	req->audit = NULL; /* it pointed into d */
	res->route = d->route != NULL ? (int)(d->route - routes) + 1 : 0;
}

int cv_http_dispatch_begin(struct cv_app *app, struct cv_request *req, int body_too_large,
			   struct cv_dispatch *d, struct cv_response *res)
{
	struct cv_errmsg err = { "" };
	int r, path_known;

	memset(res, 0, sizeof(*res));
	req->audit = NULL;
	d->route = find_route(req->method, req->path, d->params, sizeof(d->params), req->params,
			      &path_known);
	if (d->route == NULL) {
		if (path_known)
			r = cv_errmsg_set(&err, CV_ERR_METHOD_NOT_ALLOWED, "%s is not allowed on %s",
					  req->method, req->path);
		else
			r = cv_errmsg_set(&err, CV_ERR_NOT_FOUND, "no such resource: %s",
					  req->path);
		goto out;
	}
	r = authorize(app, d->route, req, &err);
	/* When and from where each token was last used: at most a write a minute per token,
	 * whose failure is not the request's. */
	if (r == 0 && req->actor.role != 0)
		(void)cv_vault_token_seen(&app->vault, &req->actor, req->source, req->now);
	/* Every change, and every refused attempt at one, is recorded. */
	if (d->route->action != NULL) {
		cv_audit_begin(&d->audit, &req->actor, d->route->action,
			       req->params[0] != NULL ? req->params[0] : "", req->request_id,
			       req->now);
		cv_audit_source(&d->audit, req->source);
		req->audit = &d->audit;
	}
	/* Refusals without a valid token are counted per address: past the rate, 429 (and no
	 * record of its own, only a count) until the address slows down. */
	r = throttle_refusal(app, req, res, r, &err);
	if (r < 0)
		goto out;
	if (body_too_large) {
		r = cv_errmsg_set(&err, CV_ERR_TOO_LARGE, "request body is over %zu bytes",
				  cv_http_body_limit(app, req->method, req->path));
		goto out;
	}
	if (req->query_nul) {
		r = cv_errmsg_set(&err, CV_ERR_BAD_REQUEST, "a query argument holds a NUL byte");
		goto out;
	}
	if (req->query_overflow) {
		r = cv_errmsg_set(&err, CV_ERR_BAD_REQUEST, "more than %d query arguments",
				  CV_HTTP_MAX_QUERY);
		goto out;
	}
	r = query_check(d->route, req, &err);
	if (r < 0)
		goto out;
	r = params_check(req, &err);
	if (r < 0)
		goto out;
	r = scope_check(app, d->route, req, &err);
	if (r < 0)
		goto out;
	/* Who may ask, and with what, has been settled here, so an anonymous flood or a bad
	 * argument never waits in the slow queue; the handler is the caller's to run through
	 * cv_http_dispatch_end. */
	if (d->route->slow)
		return 1;
	r = d->route->handler(app, req, res, &err);
	/* A refused console sign-in is one too. */
	r = throttle_refusal(app, req, res, r, &err);
out:
	dispatch_finish(app, req, d, r, err.text, res);
	return 0;
}

void cv_http_dispatch_end(struct cv_app *app, struct cv_request *req, struct cv_dispatch *d,
			  int refuse, const char *message, struct cv_response *res)
{
	struct cv_errmsg err = { "" };
	int r;

	if (refuse < 0)
		r = cv_errmsg_set(&err, refuse, "%s", message != NULL ? message : "");
	else
		r = d->route->handler(app, req, res, &err);
	dispatch_finish(app, req, d, r, err.text, res);
}

void cv_http_dispatch(struct cv_app *app, struct cv_request *req, int body_too_large,
		      struct cv_response *res)
{
	struct cv_dispatch d;

	if (cv_http_dispatch_begin(app, req, body_too_large, &d, res) == 1)
		cv_http_dispatch_end(app, req, &d, 0, NULL, res);
}

/* Whether the request's media type (parameters aside) is type. */
static int media_type_is(const struct cv_request *req, const char *type)
{
	size_t len;

	if (req->content_type == NULL)
		return 0;
	len = strcspn(req->content_type, ";");
	while (len > 0 && req->content_type[len - 1] == ' ')
		len--;
	return len == strlen(type) && strncasecmp(req->content_type, type, len) == 0;
}

int req_json_object(const struct cv_request *req, const char *const *allowed, json_t **ret,
		    struct cv_errmsg *err)
{
	json_error_t jerr;
	const char *key;
	json_t *obj, *value;
	size_t i;

	if (!media_type_is(req, "application/json"))
		return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_MEDIA,
				     "the body must be application/json");
	if (req->body == NULL || req->body_len == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the request has no body");
	obj = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (obj == NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "invalid JSON at line %d column %d: %s",
				     jerr.line, jerr.column, jerr.text);
	if (!json_is_object(obj)) {
		json_decref(obj);
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the body must be a JSON object");
	}
	json_object_foreach(obj, key, value) {
		for (i = 0; allowed[i] != NULL; i++)
			if (strcmp(allowed[i], key) == 0)
				break;
		if (allowed[i] == NULL) {
			/* Name the member only when it is short and printable. */
			int shown = strlen(key) <= 64 && strspn(key, "abcdefghijklmnopqrstuvwxyz"
								   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
								   strlen(key);

			/* The message is made before obj (and key with it) is freed. */
			cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "unknown member %s%s%s",
				      shown ? "\"" : "", shown ? key : "in the body",
				      shown ? "\"" : "");
			json_decref(obj);
			return CV_ERR_BAD_REQUEST;
		}
	}
	*ret = obj;
	return 0;
}

/* How a form field becomes the member a JSON body would hold (see req_body_object). A value
 * that does not read as its kind stays a string, so that the handler refuses it with the
 * words it has for the same mistake in JSON. */
enum form_kind { FORM_TEXT, FORM_BOOL, FORM_INT, FORM_LIST };

static const struct {
	const char *name;
	enum form_kind kind;
} form_kinds[] = {
	{ "check_chain", FORM_BOOL },
	{ "allow_upcoming", FORM_BOOL },
	{ "generate.self_signed", FORM_BOOL },
	{ "version", FORM_INT },
	{ "position", FORM_INT },
	{ "generate.days", FORM_INT },
	{ "environments", FORM_LIST },
	{ "aliases", FORM_LIST },
	{ "generate.dns_names", FORM_LIST },
	{ "generate.ip_addresses", FORM_LIST },
	{ "generate.key_usage", FORM_LIST },
	{ "generate.extended_key_usage", FORM_LIST },
};

/* The members that are objects in JSON: a form sends each of their members as a field of
 * its own, "tags.team", "generate.key", "wrapped_key.kid". */
static const char *const form_objects[] = { "tags", "generate", "wrapped_key", NULL };

static enum form_kind form_kind_of(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(form_kinds) / sizeof(form_kinds[0]); i++)
		if (strcmp(form_kinds[i].name, name) == 0)
			return form_kinds[i].kind;
	return FORM_TEXT;
}

/* Text from a form field as a JSON string, through the one check every text from outside
 * passes (core/text.c): a NUL or bytes that are not UTF-8 are refused with the words a
 * handler has for them in a JSON body. */
static int form_text(const char *field, const char *s, size_t len, json_t **ret,
		     struct cv_errmsg *err)
{
	*ret = NULL;
	if (memchr(s, '\0', len) != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" contains a NUL character",
				     field);
	if (!cv_text_utf8_valid(s, len))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is not UTF-8 text (or holds "
				     "control characters)", field);
	*ret = json_stringn(s, len);
	return *ret != NULL ? 0 : CV_ERR_NOMEM;
}

/* A field of comma-separated items ("production, staging"; empty: none) as the array a
 * JSON body would hold; spaces around an item are not part of it. */
static int form_list(const struct http_part *part, json_t **ret, struct cv_errmsg *err)
{
	json_t *a = json_array(), *item;
	size_t start = 0, end, i;
	int r;

	if (a == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; part->len > 0 && i <= part->len; i++) {
		if (i < part->len && part->data[i] != ',')
			continue;
		end = i;
		while (start < end && (part->data[start] == ' ' || part->data[start] == '\t'))
			start++;
		while (end > start && (part->data[end - 1] == ' ' || part->data[end - 1] == '\t'))
			end--;
		r = form_text(part->name, part->data + start, end - start, &item, err);
		if (r == 0 && json_array_append_new(a, item) < 0)
			r = CV_ERR_NOMEM;
		if (r < 0) {
			json_decref(a);
			return r;
		}
		start = i + 1;
	}
	*ret = a;
	return 0;
}

/* One form field as the member a JSON body would hold. */
static int form_value(const struct http_part *part, json_t **ret, struct cv_errmsg *err)
{
	char digits[19];
	size_t i;

	if (part->has_filename) {
		/* A file: its bytes as they are (DER and PKCS#12 are binary); the handler that
		 * reads it as text checks it then. */
		*ret = json_stringn_nocheck(part->data, part->len);
		return *ret != NULL ? 0 : CV_ERR_NOMEM;
	}
	switch (form_kind_of(part->name)) {
	case FORM_BOOL:
		if (part->len == 4 && memcmp(part->data, "true", 4) == 0) {
			*ret = json_true();
			return 0;
		}
		if (part->len == 5 && memcmp(part->data, "false", 5) == 0) {
			*ret = json_false();
			return 0;
		}
		break;
	case FORM_INT:
		for (i = 0; i < part->len && i < sizeof(digits) - 1; i++)
			if (part->data[i] < '0' || part->data[i] > '9')
				break;
		if (part->len == 0 || i != part->len)
			break;
		memcpy(digits, part->data, part->len);
		digits[part->len] = '\0';
		*ret = json_integer(strtoll(digits, NULL, 10));
		return *ret != NULL ? 0 : CV_ERR_NOMEM;
	case FORM_LIST:
		return form_list(part, ret, err);
	case FORM_TEXT:
		break;
	}
	return form_text(part->name, part->data, part->len, ret, err);
}

/* Whether name is among allowed (NULL-terminated). */
static int form_allowed(const char *const *allowed, const char *name)
{
	size_t j;

	for (j = 0; allowed[j] != NULL; j++)
		if (strcmp(allowed[j], name) == 0)
			return 1;
	return 0;
}

/* Where the field named name goes in obj: *ret_into (obj, or the object member its
 * "object." prefix names, made on first use) under *ret_key. */
static int form_place(json_t *obj, const char *const *allowed, const char *name,
		      json_t **ret_into, const char **ret_key, struct cv_errmsg *err)
{
	const char *dot = strchr(name, '.');
	char head[HTTP_PART_NAME_MAX + 1];
	json_t *into;
	size_t i;
	int shown = strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") ==
		    strlen(name) && strlen(name) <= 64;

	*ret_into = obj;
	*ret_key = name;
	snprintf(head, sizeof(head), "%.*s", dot != NULL ? (int)(dot - name) : (int)strlen(name),
		 name);
	if (!form_allowed(allowed, head))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "unknown field %s%s%s",
				     shown ? "\"" : "", shown ? name : "in the form",
				     shown ? "\"" : "");
	for (i = 0; form_objects[i] != NULL && strcmp(form_objects[i], head) != 0; i++)
		;
	if (form_objects[i] == NULL) {
		if (dot != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "unknown field %s%s%s",
					     shown ? "\"" : "", shown ? name : "in the form",
					     shown ? "\"" : "");
		return 0;
	}
	if (dot == NULL || dot[1] == '\0')
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is an object: a form sends "
				     "each of its members as a field \"%s.<member>\"", head, head);
	into = json_object_get(obj, head);
	if (into == NULL) {
		into = json_object();
		if (into == NULL || json_object_set_new(obj, head, into) < 0)
			return CV_ERR_NOMEM;
	}
	*ret_into = into;
	*ret_key = dot + 1;
	return 0;
}

static int req_form_object(const struct cv_request *req, const char *const *allowed,
			   json_t **ret, struct cv_errmsg *err)
{
	struct http_part *parts = NULL;
	json_t *obj = NULL, *value = NULL, *into;
	const char *key;
	size_t n = 0, i;
	int r;

	if (req->body == NULL || req->body_len == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the request has no body");
	r = http_multipart_parse(req->content_type, req->body, req->body_len, &parts, &n, err);
	if (r < 0)
		return r;
	obj = json_object();
	if (obj == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		r = form_place(obj, allowed, parts[i].name, &into, &key, err);
		if (r < 0)
			goto out;
		r = form_value(&parts[i], &value, err);
		if (r < 0)
			goto out;
		if (json_object_set_new(into, key, value) < 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	*ret = obj;
	obj = NULL;
	r = 0;
out:
	json_decref(obj); /* wiped on free: it may hold a key */
	free(parts);
	return r;
}

int req_body_object(const struct cv_request *req, const char *const *allowed, json_t **ret,
		    int *ret_form, struct cv_errmsg *err)
{
	*ret_form = media_type_is(req, "multipart/form-data");
	if (*ret_form)
		return req_form_object(req, allowed, ret, err);
	return req_json_object(req, allowed, ret, err);
}

/* How a member is read: text (UTF-8 without control characters but tab and line breaks),
 * material for a parser (certificates, keys, CRLs, passwords: no NUL, else as sent), or bytes
 * (an uploaded file, NULs included). */
enum member_kind { MEMBER_TEXT, MEMBER_MATERIAL, MEMBER_BYTES };

static int string_member(json_t *obj, const char *key, int required, size_t max,
			 enum member_kind kind, const char **ret, size_t *ret_len,
			 struct cv_errmsg *err)
{
	json_t *v = json_object_get(obj, key);
	size_t len;

	*ret = NULL;
	if (ret_len != NULL)
		*ret_len = 0;
	if (v == NULL || json_is_null(v)) {
		if (required)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is required", key);
		return 0;
	}
	if (!json_is_string(v))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" must be a string", key);
	len = json_string_length(v);
	if (len > max)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is longer than %zu bytes",
				     key, max);
	if (kind != MEMBER_BYTES && strlen(json_string_value(v)) != len)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" contains a NUL character",
				     key);
	/* Text is checked here whatever carried it: a JSON string is UTF-8 already, a form's
	 * file part is bytes as they came (it may be DER) until a handler asks for text. */
	if (kind == MEMBER_TEXT && !cv_text_clean(json_string_value(v), len, CV_TEXT_KEEP_NEWLINES))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is not UTF-8 text (or "
				     "holds control characters)", key);
	if (required && len == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is empty", key);
	*ret = json_string_value(v);
	if (ret_len != NULL)
		*ret_len = len;
	return 0;
}

int json_string_member(json_t *obj, const char *key, int required, size_t max,
		       const char **ret, size_t *ret_len, struct cv_errmsg *err)
{
	return string_member(obj, key, required, max, MEMBER_TEXT, ret, ret_len, err);
}

int json_material_member(json_t *obj, const char *key, int required, size_t max,
			 const char **ret, size_t *ret_len, struct cv_errmsg *err)
{
	return string_member(obj, key, required, max, MEMBER_MATERIAL, ret, ret_len, err);
}

int json_bytes_member(json_t *obj, const char *key, int required, size_t max,
		      const char **ret, size_t *ret_len, struct cv_errmsg *err)
{
	return string_member(obj, key, required, max, MEMBER_BYTES, ret, ret_len, err);
}

const char *req_query(const struct cv_request *req, const char *key)
{
	size_t i;

	for (i = 0; i < req->n_query; i++)
		if (strcmp(req->query[i].key, key) == 0)
			return req->query[i].value != NULL ? req->query[i].value : "";
	return NULL;
}
