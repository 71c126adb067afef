/* http: the route table, handlers, JSON in and out, errors to status codes, and the
 * libmicrohttpd server around them. Handlers never call libmicrohttpd, so tests can call
 * cv_http_dispatch directly. */
#ifndef CERTVAULT_HTTP_H
#define CERTVAULT_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "certvault/config.h"
#include "certvault/error.h"
#include "certvault/vault.h"

struct cv_http_stats;

/* What every handler is handed: the whole application, shared by all threads. */
struct cv_app {
	const struct cv_config *cfg;
	struct cv_store *store;
	struct cv_token *token;
	struct cv_vault vault;
	struct cv_http_stats *stats;      /* the request counters; NULL: none are kept */
};

#define CV_HTTP_MAX_PARAMS 4
#define CV_HTTP_MAX_QUERY 16

struct cv_query_arg {
	const char *key;
	const char *value;   /* NULL for "?flag" with no '=' */
};

/* One request, as the handlers see it. Everything is borrowed from the server. */
struct cv_request {
	const char *method;
	const char *path;                 /* without the query string, percent-decoded */
	const char *params[CV_HTTP_MAX_PARAMS]; /* the {…} segments of the route, in order */
	size_t n_query;
	struct cv_query_arg query[CV_HTTP_MAX_QUERY];
	int query_overflow;               /* more arguments than CV_HTTP_MAX_QUERY */
	int query_nul;                    /* a query key or value held a NUL byte (%00) */
	const char *content_type;         /* NULL when absent */
	const char *if_match;             /* the If-Match header, NULL when absent */
	const char *if_none_match;        /* the If-None-Match header, NULL when absent */
	const char *body;                 /* NUL-terminated; NULL when there is none */
	size_t body_len;
	int64_t now;                      /* the request's clock, seconds since the epoch */
	int64_t now_ms;                   /* the same in milliseconds; 0: only now is known */
	const char *authorization;        /* the Authorization header, NULL when absent */
	const char *cookie;               /* the Cookie header, NULL when absent */
	const char *csrf_token;           /* the X-CSRF-Token header, NULL when absent */
	int tls;                          /* it came over the HTTPS listener */
	int has_session;                  /* authenticated by a console session cookie */
	struct cv_session_view session;   /* that session, when has_session */
	char request_id[33];              /* names the request in the log and the audit trail */
	char source[48];                  /* the client's address, "" when unknown */
	struct cv_actor actor;            /* who: filled by dispatch from the bearer token */
	struct cv_audit *audit;           /* a change's audit record in the making; NULL for reads */
};

/* A body made while it is sent, for what is too large to hold at once. produce writes the
 * next bytes, at most max, into buf and returns how many (at least 1), 0 at the end, or a
 * negative cv_err with err filled when it cannot go on: the status went out with the first
 * bytes, so the connection is then cut and the client sees a body that never ended. free
 * releases arg; it is called once, whether produce ran or not. */
struct cv_producer {
	ssize_t (*produce)(void *arg, char *buf, size_t max, struct cv_errmsg *err);
	void (*free)(void *arg);
	void *arg;
};

/* A handler's answer: JSON, raw bytes, or a producer of the body. The response owns each. */
struct cv_response {
	int status;
	json_t *json;
	unsigned char *raw;
	size_t raw_len;
	struct cv_producer stream;        /* produce NULL: none */
	const char *content_type;         /* static; for raw and stream */
	char disposition[128];            /* Content-Disposition, "" for none */
	char etag[64];                    /* ETag, quoted; "" for none. A GET's 200 gets one made
					     from its bytes (after this one, when set) unless
					     etag_final */
	int etag_final;                   /* the handler's ETag is the whole tag: no 304 made */
	const char *cache_control;        /* static; NULL: "no-store" */
	int challenge;                    /* a 401: send WWW-Authenticate: Bearer */
	int64_t retry_after;              /* a 429 or a 503 busy: seconds for Retry-After; 0:
					     none */
	int console;                      /* a console page or asset: its CSP and framing rules */
	int64_t wait_seconds;             /* a long poll: hold an answer that would be 304 up to
					     this long (the server decides how long at most) */
	const char *location;             /* static; a redirect's Location, NULL for none */
	char set_cookie[200];             /* Set-Cookie (a session's secret: wiped), "" for none */
	int route;                        /* set by dispatch: the route's index in the table + 1;
					     0 when no route matched */
};
/* Frees what the response owns (the producer's arg through its free) and zeroes it. */
void cv_response_release(struct cv_response *res);

/* Finds the route for req (filling req->params), checks the body limit and runs the handler.
 * Always fills res: on error with the status and {"error":{"code","message"}}.
 * body_too_large tells it the server already cut the body off at the route's limit. */
void cv_http_dispatch(struct cv_app *app, struct cv_request *req, int body_too_large,
		      struct cv_response *res);

/* cv_http_dispatch in two halves, for a server that runs the handlers of slow routes (key
 * derivation, network fetches) on threads of their own, so that they never hold up the
 * threads that read and answer connections. The caller owns d for the request's life;
 * req->params and req->audit point into it. */
#define CV_HTTP_PARAMS_BUFLEN 512
struct cv_route;
struct cv_dispatch {
	const struct cv_route *route;     /* NULL: no route matched */
	struct cv_audit audit;            /* a change's record in the making */
	char params[CV_HTTP_PARAMS_BUFLEN]; /* the {} segments req->params point at */
};
/* Matches, authorizes and checks the request (so no refused request is ever queued). For a
 * slow route that passes, returns 1 before running the handler: call cv_http_dispatch_end,
 * from any thread. Else does everything cv_http_dispatch does and returns 0. */
int cv_http_dispatch_begin(struct cv_app *app, struct cv_request *req, int body_too_large,
			   struct cv_dispatch *d, struct cv_response *res);
/* Runs the handler of a request cv_http_dispatch_begin left at 1, or, when refuse is a
 * negative cv_err (CV_ERR_BUSY: no room to run it), refuses it with that error and message
 * instead; either way records the audit trail as cv_http_dispatch does and fills res. */
void cv_http_dispatch_end(struct cv_app *app, struct cv_request *req, struct cv_dispatch *d,
			  int refuse, const char *message, struct cv_response *res);

/* Who may call a route. Every route names one: 0 is no rule, which a test refuses. */
enum cv_access {
	CV_R_PUBLIC = 1,   /* anyone, no token */
	CV_R_METRICS,      /* anyone when auth.metrics_public, else as CV_R_READ */
	CV_R_READ,         /* admin, operator, auditor */
	CV_R_WRITE,        /* admin, operator */
	CV_R_AUDIT,        /* admin, auditor */
	CV_R_ADMIN,        /* admin */
};
/* The console's Content-Security-Policy: its own origin only, no inline script or style, no
 * eval, never framed. */
#define CV_CONSOLE_CSP                                                                      \
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "   \
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "         \
	"form-action 'self'; frame-ancestors 'none'"

/* Whether role may call a route with access (role 0: no token). */
int cv_http_role_may(enum cv_access access, enum cv_role role, int metrics_public);
/* "public", "metrics", "read", "write", "audit", "admin". */
const char *cv_http_access_name(enum cv_access access);

/* The route table as data, for --routes and the test that walks it: route i's method,
 * pattern ("{}" for a segment), access and audit action (NULL: a read, not recorded).
 * Returns 0, or -1 past the end. */
struct cv_route_info {
	const char *method;
	const char *pattern;
	enum cv_access access;
	const char *action;
	size_t max_body; /* 0: the route reads no body */
	int slow;            /* runs on the slow-request threads */
	const char *query;   /* the query arguments it takes, space-separated; NULL: none */
	enum cv_scope_action scope_action; /* what it does, for scoped tokens; CV_SCOPE_UNSET:
					      the route table gives it none (closed to them) */
	const char *scope_object; /* how the dispatch finds what it touches ("certificate",
				     "list", "none", ...); NULL with CV_SCOPE_UNSET */
};
int cv_http_route_at(size_t i, struct cv_route_info *ret);

/* The body limit for a method and path: the route's, or the configuration's when the route
 * has none; 0 when no route matches (no body is read). */
size_t cv_http_body_limit(const struct cv_app *app, const char *method, const char *path);

/* Request counters and latency histograms by route and status, counted by the server when
 * a request completes (a streamed body included) and shown by GET /metrics. Thread-safe:
 * atomics, no lock. */
int cv_http_stats_new(struct cv_http_stats **ret_stats);
/* Accepts NULL. */
void cv_http_stats_free(struct cv_http_stats *stats);
/* Counts one request answered by route (cv_response.route) with status, taking seconds. */
void cv_http_stats_observe(struct cv_http_stats *stats, int route, int status, double seconds);

/* Status and stable JSON code of an error. */
int cv_http_error_status(int err);
const char *cv_http_error_code(int err);

/* Makes jansson wipe every block it frees: request bodies carry private keys and passwords,
 * and jansson copies them into its strings. Call once, before any thread uses jansson. */
void cv_http_json_harden(void);
/* json as compact text, byte for byte what json_dumpb(json, ..., JSON_COMPACT) writes, in a
 * block from jansson's allocator (release it with jansson's free). Returns the length; 0 when
 * out of memory or nested deeper than any answer is. */
size_t cv_http_json_dump(const json_t *json, char **ret_text);

struct cv_server;
/* Starts listening on cfg->listen:cfg->port with an epoll thread pool, and when
 * cfg->tls_certificate is set, HTTPS on cfg->tls_listen:cfg->tls_port serving that
 * certificate of the vault with its key in the token (one HTTPS server per process). Returns
 * 0, or CV_ERR_CONFIG with err in one line (an address, a port, a certificate that cannot be
 * served), or the vault's error. */
int cv_server_start(struct cv_app *app, struct cv_server **ret_server, struct cv_errmsg *err);
/* The TCP port the server listens on (useful when server.port is 0: any free port). */
int cv_server_port(const struct cv_server *server);
/* The HTTPS port, or -1 without HTTPS. */
int cv_server_tls_port(const struct cv_server *server);
/* Stops accepting, finishes requests in flight, frees. Accepts NULL. */
void cv_server_stop(struct cv_server *server);

#endif
