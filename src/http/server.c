/* The libmicrohttpd server around cv_http_dispatch: an epoll thread pool, limits on
 * connections and memory, deadlines for requests to arrive (guard.c), bodies read up to
 * their route's limit, slow routes run on their own threads (workers.c) while their
 * connection is suspended, one log line per request; plain HTTP, and HTTPS beside it when
 * server.tls_certificate names a certificate. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "certvault/text.h"
#include "certvault/http.h"
#include "guard.h"
#include "handlers.h"
#include "tls.h"
#include "workers.h"

struct cv_server {
	struct MHD_Daemon *daemon;       /* plain HTTP */
	struct MHD_Daemon *tls_daemon;   /* HTTPS; NULL without server.tls_certificate */
	struct tls_listener *tls;        /* what HTTPS serves; NULL without it */
	int tls_active;                  /* tls is the process's registered listener */
	struct cv_app *app;
	struct conn_guard *guard;        /* deadlines and pending limits, both listeners */
	struct http_workers *workers;    /* the slow routes' threads */
	struct waiters *waiters;         /* long polls held until their answer changes */
	atomic_uint_fast64_t next_request;
	uint32_t instance;   /* random, so request ids differ across restarts */
};

enum stage {
	READING,     /* headers and body coming in */
	QUEUED,      /* suspended: its handler is the slow-request threads' */
	WAITING,     /* suspended: a long poll whose answer has not changed yet */
	HANDLED,     /* res is the answer */
};

/* Per connection-request state, from the first access-handler call to completion. */
struct exchange {
	struct http_job job;  /* a slow route's handler, for the workers */
	struct cv_server *srv;
	struct MHD_Connection *conn;
	enum stage stage;
	char *body;          /* wiped on free: it can hold a private key */
	size_t len, cap, limit;
	int too_large;
	int bad_framing;
	struct timespec start;
	struct cv_request req;
	struct cv_dispatch dispatch;
	struct cv_response res;
	int answered;        /* a response was queued: count it when the request completes */
	int route;
	int status;
	/* A long poll (?wait=N): held while its answer would be 304, looked at again when the
	 * certificates' generation moves, every second, and at its deadline. */
	struct exchange *next_waiter;
	int64_t wait_until_ms, wait_looked_ms;
	uint64_t wait_generation;
	int waited;          /* its wait is over: the next answer goes out whatever it is */
};

static void exchange_free(struct exchange *x)
{
	if (x == NULL)
		return;
	cv_response_release(&x->res);
	OPENSSL_clear_free(x->body, x->cap);
	free(x);
}

static struct exchange *exchange_of(struct http_job *job)
{
	return (struct exchange *)((char *)job - offsetof(struct exchange, job));
}

/* On a slow-request thread: the handler, then the connection goes back to libmicrohttpd,
 * which calls on_request once more to send the answer. */
static void slow_run(struct http_job *job)
{
	struct exchange *x = exchange_of(job);

	cv_http_dispatch_end(x->srv->app, &x->req, &x->dispatch, 0, NULL, &x->res);
	x->stage = HANDLED;
	MHD_resume_connection(x->conn);
}

static void slow_cancel(struct http_job *job)
{
	struct exchange *x = exchange_of(job);

	cv_http_dispatch_end(x->srv->app, &x->req, &x->dispatch, CV_ERR_BUSY,
			     "certvaultd is stopping: try again shortly", &x->res);
	x->stage = HANDLED;
	MHD_resume_connection(x->conn);
}

static int body_append(struct exchange *x, const char *data, size_t size)
{
	size_t want;
	char *grown;

	if (x->too_large || size > x->limit - x->len) {
		x->too_large = 1;
		OPENSSL_clear_free(x->body, x->cap);
		x->body = NULL;
		x->len = x->cap = 0;
		return 0;
	}
	want = x->len + size + 1;
	if (want > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;

		while (cap < want)
			cap *= 2;
		if (cap > x->limit + 1)
			cap = x->limit + 1;
		/* Grow by copying, so no stale copy of a key stays behind in freed memory. */
		grown = OPENSSL_malloc(cap);
		if (grown == NULL)
			return -1;
		if (x->len > 0)
			memcpy(grown, x->body, x->len);
		OPENSSL_clear_free(x->body, x->cap);
		x->body = grown;
		x->cap = cap;
	}
	memcpy(x->body + x->len, data, size);
	x->len += size;
	x->body[x->len] = '\0';
	return 0;
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
				     size_t key_size, const char *value, size_t value_size)
{
	struct cv_request *req = cls;

	(void)kind;
	/* A %00 would cut the C string short: "pw%00x" must not pass as "pw". */
	if (strlen(key) != key_size || (value != NULL && strlen(value) != value_size)) {
		req->query_nul = 1;
		return MHD_NO;
	}
	if (req->n_query == CV_HTTP_MAX_QUERY) {
		req->query_overflow = 1;
		return MHD_NO;
	}
	req->query[req->n_query].key = key;
	req->query[req->n_query].value = value;
	req->n_query++;
	return MHD_YES;
}

static void json_free_callback(void *p)
{
	json_malloc_t m;
	json_free_t f;

	json_get_alloc_funcs(&m, &f);
	f(p);
}

/* A streamed body as libmicrohttpd reads it: the handler's producer and what the log
 * needs should it fail. */
struct streamed {
	struct cv_producer producer;
	char request_id[33];
};

static ssize_t streamed_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct streamed *st = cls;
	struct cv_errmsg err = { "" };
	char line[512], why[400];
	const char *text;
	ssize_t n;
	int len;

	(void)pos;
	n = st->producer.produce(st->producer.arg, buf, max, &err);
	if (n > 0)
		return n;
	if (n == 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	/* The status is long gone: cutting the connection is how the client learns. The
	 * request's line was logged when it was answered; this says why it ended early. */
	text = err.text[0] != '\0' ? err.text : cv_strerror((int)n);
	cv_text_escape(text, strlen(text), CV_TEXT_ASCII, why, sizeof(why));
	len = snprintf(line, sizeof(line), "certvaultd: %s body cut short: %s\n", st->request_id,
		       why);
	if (len > 0) {
		ssize_t w = write(STDERR_FILENO, line,
				  (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
		(void)w;
	}
	return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void streamed_free(void *cls)
{
	struct streamed *st = cls;

	st->producer.free(st->producer.arg);
	free(st);
}

/* Takes the producer out of res on success. */
static struct MHD_Response *make_streamed(struct cv_response *res, const char *request_id)
{
	struct MHD_Response *resp;
	struct streamed *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	/* Chunked: the length is known only at the end. 16 KiB a read. */
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, streamed_read, st,
						 streamed_free);
	if (resp == NULL) {
		free(st);
		return NULL;
	}
	st->producer = res->stream;
	snprintf(st->request_id, sizeof(st->request_id), "%s", request_id);
	memset(&res->stream, 0, sizeof(res->stream)); /* transferred */
	return resp;
}

static struct MHD_Response *make_response(const struct cv_request *req, struct cv_response *res,
					  const char *request_id)
{
	struct MHD_Response *resp;
	char *text;
	size_t len;

	if (res->stream.produce == NULL && res->raw != NULL &&
	    http_conditional(req, res, res->raw, res->raw_len))
		return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (res->stream.produce != NULL || res->raw != NULL) {
		resp = res->stream.produce != NULL ? make_streamed(res, request_id) :
		       MHD_create_response_from_buffer(res->raw_len, res->raw,
						       MHD_RESPMEM_MUST_COPY);
		if (resp != NULL && res->content_type != NULL)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
						res->content_type);
		if (resp != NULL && res->disposition[0] != '\0')
			MHD_add_response_header(resp, "Content-Disposition", res->disposition);
		return resp;
	}
	if (res->json == NULL)
		return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	len = cv_http_json_dump(res->json, &text);
	if (len == 0)
		return NULL;
	if (http_conditional(req, res, text, len)) {
		json_free_callback(text);
		return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	resp = MHD_create_response_from_buffer_with_free_callback(len, text, json_free_callback);
	if (resp == NULL) {
		json_free_callback(text);
		return NULL;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	return resp;
}

static double elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) * 1e3 +
	       (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

static const char *error_code_of(const struct cv_response *res)
{
	json_t *code = json_object_get(json_object_get(res->json, "error"), "code");

	return json_is_string(code) ? json_string_value(code) : "-";
}

/* One line per request, written with one write(2): stderr is unbuffered, so stdio would
 * take its lock and may split the line; a line longer than the buffer is cut and still
 * ends with its newline. A failed write loses the line, nothing else. */
static void log_request(const struct cv_request *req, const struct cv_response *res, double ms)
{
	char line[1024], method[40], path[600], code[80], actor[280];
	const char *actor_name = req->actor.name[0] != '\0' ? req->actor.name : "-";
	ssize_t w;
	int n;

	/* Every field a client can shape is escaped (controls, non-ASCII, spaces): a %0A in
	 * the decoded path cannot start a forged line, nor a space a forged field. The path
	 * only: a query string may hold a password (the truststore export). */
	cv_text_escape(req->method, strlen(req->method), CV_TEXT_LOG, method, sizeof(method));
	cv_text_escape(req->path, strlen(req->path), CV_TEXT_LOG, path, sizeof(path));
	cv_text_escape(error_code_of(res), strlen(error_code_of(res)), CV_TEXT_LOG, code,
		       sizeof(code));
	cv_text_escape(actor_name, strlen(actor_name), CV_TEXT_LOG, actor, sizeof(actor));
	n = snprintf(line, sizeof(line), "certvaultd: %s %s %s %d %s %s %.1fms\n",
		     req->request_id, method, path, res->status,
		     res->status >= 400 ? code : "-", actor, ms);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

/* Wall-clock milliseconds, for rates. */
static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The peer's address as text ("" when unknown): the audit trail's source and what the rate
 * of refusals is counted by. */
static void client_address(struct MHD_Connection *conn, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = info != NULL ? info->client_addr : NULL;
	char text[INET6_ADDRSTRLEN] = "";

	buf[0] = '\0';
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, text, sizeof(text));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, text,
			  sizeof(text));
	snprintf(buf, size, "%s", text);
}

/* Long polls: connections suspended while the answer they would get is the 304 they already
 * have. One thread looks at them ten times a second; an answer is made again when the
 * certificates' generation moved (a renewal, a bind), every second whatever happened (a change
 * the generation does not count), and at the deadline, then the connection is resumed to send
 * it. A connection is held at most server.connection_timeout less five seconds. */
#define WAITERS_MAX 1024
#define WAIT_LOOK_MS 100

struct waiters {
	pthread_mutex_t lock;
	pthread_t thread;
	int started, stopping;
	struct exchange *head;
	size_t n;
	struct cv_app *app;
	int64_t max_ms;
};

/* 1 when x's answer would be a 304 (its If-None-Match names the answer's ETag). */
static int not_modified(struct exchange *x)
{
	char etag[sizeof(x->res.etag)];
	int status = x->res.status, hit = 0;
	char *text = NULL;
	size_t len;

	if (x->req.if_none_match == NULL || x->res.json == NULL || x->res.status != 200)
		return 0;
	memcpy(etag, x->res.etag, sizeof(etag));
	len = cv_http_json_dump(x->res.json, &text);
	if (len > 0) {
		hit = http_conditional(&x->req, &x->res, text, len);
		json_free_callback(text);
	}
	memcpy(x->res.etag, etag, sizeof(etag));
	x->res.status = status;
	return hit;
}

/* Holds x (its answer dropped: it is made again when looked at). Returns 0, or -1 when the
 * wait is not taken (no room, stopping): x is then answered now. */
static int waiter_park(struct waiters *w, struct exchange *x, int64_t now_ms)
{
	int64_t ms = x->res.wait_seconds * 1000;

	if (w == NULL || w->max_ms <= 0)
		return -1;
	if (ms > w->max_ms)
		ms = w->max_ms;
	pthread_mutex_lock(&w->lock);
	if (w->stopping || w->n >= WAITERS_MAX) {
		pthread_mutex_unlock(&w->lock);
		return -1;
	}
	x->wait_until_ms = now_ms + ms;
	x->wait_looked_ms = now_ms;
	x->wait_generation = cv_vault_certs_generation(&w->app->vault);
	cv_response_release(&x->res);
	memset(&x->res, 0, sizeof(x->res));
	x->stage = WAITING;
	MHD_suspend_connection(x->conn);
	x->next_waiter = w->head;
	w->head = x;
	w->n++;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

/* On the waiters' thread: x's answer made again; 1 when it is to be sent (changed, or the
 * wait is over), 0 when it is still the 304 x has. */
static int waiter_look(struct waiters *w, struct exchange *x, int64_t now_ms, int last)
{
	cv_response_release(&x->res);
	memset(&x->res, 0, sizeof(x->res));
	x->req.now = (int64_t)time(NULL);
	x->req.now_ms = now_ms;
	cv_http_dispatch(w->app, &x->req, 0, &x->res);
	if (last || x->res.wait_seconds <= 0 || !not_modified(x)) {
		x->waited = 1;
		x->stage = HANDLED;
		return 1;
	}
	return 0;
}

static void *waiters_run(void *arg)
{
	struct waiters *w = arg;
	struct timespec ts = { .tv_sec = 0, .tv_nsec = WAIT_LOOK_MS * 1000000L };

	for (;;) {
		struct exchange **pp, *x, *resume = NULL;
		uint64_t gen;
		int64_t now;
		int stopping;

		nanosleep(&ts, NULL);
		gen = cv_vault_certs_generation(&w->app->vault);
		now = now_ms();
		pthread_mutex_lock(&w->lock);
		stopping = w->stopping;
		for (pp = &w->head; (x = *pp) != NULL;) {
			int last = stopping || now >= x->wait_until_ms;

			if (!last && gen == x->wait_generation && now - x->wait_looked_ms < 1000) {
				pp = &x->next_waiter;
				continue;
			}
			x->wait_generation = gen;
			x->wait_looked_ms = now;
			if (waiter_look(w, x, now, last)) {
				*pp = x->next_waiter;
				w->n--;
				x->next_waiter = resume;
				resume = x;
			} else {
				pp = &x->next_waiter;
			}
		}
		pthread_mutex_unlock(&w->lock);
		/* Resumed outside the lock: libmicrohttpd calls on_request for each. */
		while ((x = resume) != NULL) {
			resume = x->next_waiter;
			MHD_resume_connection(x->conn);
		}
		if (stopping)
			return NULL;
	}
}

static int waiters_new(struct cv_app *app, struct waiters **ret)
{
	struct waiters *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return CV_ERR_NOMEM;
	w->app = app;
	w->max_ms = (app->cfg->connection_timeout - 5) * 1000;
	if (pthread_mutex_init(&w->lock, NULL) != 0) {
		free(w);
		return CV_ERR_INTERNAL;
	}
	if (pthread_create(&w->thread, NULL, waiters_run, w) != 0) {
		pthread_mutex_destroy(&w->lock);
		free(w);
		return CV_ERR_INTERNAL;
	}
	w->started = 1;
	*ret = w;
	return 0;
}

/* Answers every held connection and ends the thread: libmicrohttpd may not stop with a
 * connection suspended. */
static void waiters_stop(struct waiters *w)
{
	if (w == NULL || !w->started)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = 1;
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	w->started = 0;
}

static void waiters_free(struct waiters *w)
{
	if (w == NULL)
		return;
	waiters_stop(w);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct cv_server *srv = cls;
	struct exchange *x = *con_cls;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	(void)version;
	if (x == NULL) {
		x = calloc(1, sizeof(*x));
		if (x == NULL)
			return MHD_NO;
		conn_guard_headers_in(srv->guard, conn);
		x->srv = srv;
		x->conn = conn;
		x->job.run = slow_run;
		x->job.cancel = slow_cancel;
		clock_gettime(CLOCK_MONOTONIC, &x->start);
		x->limit = cv_http_body_limit(srv->app, method, url);
		/* Both framings at once is how requests are smuggled past proxies. */
		if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						MHD_HTTP_HEADER_CONTENT_LENGTH) != NULL &&
		    MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL)
			x->bad_framing = 1;
		*con_cls = x;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (!x->bad_framing && body_append(x, upload_data, *upload_data_size) < 0)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (x->stage == QUEUED || x->stage == WAITING)
		return MHD_YES; /* not called while suspended; here for safety's sake */
	if (x->stage == HANDLED)
		goto answer;

	conn_guard_request_in(srv->guard, conn);
	x->req.method = method;
	x->req.path = url;
	x->req.content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							  MHD_HTTP_HEADER_CONTENT_TYPE);
	x->req.if_match = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						      MHD_HTTP_HEADER_IF_MATCH);
	x->req.if_none_match = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							   MHD_HTTP_HEADER_IF_NONE_MATCH);
	x->req.authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							   MHD_HTTP_HEADER_AUTHORIZATION);
	x->req.cookie = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_COOKIE);
	x->req.csrf_token = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-CSRF-Token");
	/* Only a connection of the HTTPS daemon has a GnuTLS session (the daemon a connection
	 * names is its pool thread's, not the one started). */
	x->req.tls = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION) != NULL;
	x->req.body = x->body;
	x->req.body_len = x->len;
	x->req.now = (int64_t)time(NULL);
	x->req.now_ms = now_ms();
	client_address(conn, x->req.source, sizeof(x->req.source));
	snprintf(x->req.request_id, sizeof(x->req.request_id), "%08x-%llu",
		 (unsigned)srv->instance,
		 (unsigned long long)atomic_fetch_add(&srv->next_request, 1));
	MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, collect_query, &x->req);
	x->stage = HANDLED;
	if (x->bad_framing) {
		x->res.status = 400;
		x->res.json = json_pack("{s:{s:s,s:s}}", "error", "code", "bad_request", "message",
					"Content-Length and Transfer-Encoding together are refused");
	} else if (cv_http_dispatch_begin(srv->app, &x->req, x->too_large, &x->dispatch,
					  &x->res) == 1) {
		/* A slow route, allowed and checked: its handler runs on a slow-request
		 * thread while this one goes on with other connections. The place is held
		 * before the connection is suspended, so that the answer can never come
		 * before the suspension it ends. */
		if (http_workers_reserve(srv->workers) == 0) {
			x->stage = QUEUED;
			MHD_suspend_connection(conn);
			http_workers_submit(srv->workers, &x->job);
			return MHD_YES;
		}
		cv_http_dispatch_end(srv->app, &x->req, &x->dispatch, CV_ERR_BUSY,
				     "every slow-request thread is busy and the queue is full "
				     "(server.slow_threads, server.slow_queue): try again shortly",
				     &x->res);
	}

	/* A long poll whose answer has not changed: held until it does (or its time is up). */
	if (x->res.wait_seconds > 0 && !x->waited && not_modified(x) &&
	    waiter_park(srv->waiters, x, x->req.now_ms) == 0)
		return MHD_YES;

answer:
	resp = make_response(&x->req, &x->res, x->req.request_id);
	if (resp == NULL) {
		cv_response_release(&x->res);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "X-Request-Id", x->req.request_id);
	if (x->res.challenge)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"certvault\"");
	if (x->res.etag[0] != '\0')
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, x->res.etag);
	if (x->res.retry_after > 0) {
		char wait[24];

		snprintf(wait, sizeof(wait), "%lld", (long long)x->res.retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, wait);
	}
	MHD_add_response_header(resp, "Cache-Control",
				x->res.cache_control != NULL ? x->res.cache_control : "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	if (x->res.console) {
		MHD_add_response_header(resp, "Content-Security-Policy", CV_CONSOLE_CSP);
		MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	}
	if (x->res.location != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, x->res.location);
	if (x->res.set_cookie[0] != '\0')
		MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, x->res.set_cookie);
	ret = MHD_queue_response(conn, (unsigned)x->res.status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES) {
		x->answered = 1;
		x->route = x->res.route;
		x->status = x->res.status;
	}
	log_request(&x->req, &x->res, elapsed_ms(&x->start));
	cv_response_release(&x->res);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode code)
{
	struct cv_server *srv = cls;
	struct exchange *x = *con_cls;

	(void)code;
	/* The connection waits for its next request from now on, under its deadline. */
	conn_guard_answered(srv->guard, conn);
	/* Counted here, so a streamed body's time is its whole time. */
	if (x != NULL && x->answered)
		cv_http_stats_observe(srv->app->stats, x->route, x->status,
				      elapsed_ms(&x->start) / 1e3);
	exchange_free(*con_cls);
	*con_cls = NULL;
}

/* Starts one daemon on listen:port; with a TLS listener, HTTPS whose certificate and key
 * come from it on each handshake. */
static int daemon_start(struct cv_server *srv, const char *setting, const char *listen,
			int64_t port, int tls, struct MHD_Daemon **ret_daemon,
			struct cv_errmsg *err)
{
	const struct cv_config *cfg = srv->app->cfg;
	struct sockaddr_storage ss;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
			 MHD_ALLOW_SUSPEND_RESUME;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, listen, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET6, listen, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		flags |= MHD_USE_IPv6;
	} else {
		return cv_errmsg_set(err, CV_ERR_CONFIG, "%s %s is not an IPv4 or IPv6 address",
				     setting, listen);
	}
	/* The options common to both; HTTPS options are refused by a daemon without TLS. */
#define COMMON_OPTIONS                                                                       \
	MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads,       \
	MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,                          \
	MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_connections_per_ip,            \
	MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout,                     \
	MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_NOTIFY_COMPLETED,   \
	on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, conn_guard_notify, srv->guard
	if (tls)
		*ret_daemon = MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, on_request, srv,
					       COMMON_OPTIONS, MHD_OPTION_HTTPS_CERT_CALLBACK2,
					       tls_on_certificate, MHD_OPTION_HTTPS_PRIORITIES,
					       TLS_PRIORITIES, MHD_OPTION_END);
	else
		*ret_daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv,
					       COMMON_OPTIONS, MHD_OPTION_END);
#undef COMMON_OPTIONS
	if (*ret_daemon == NULL)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot listen%s on %s port %lld",
				     tls ? " for HTTPS" : "", listen, (long long)port);
	return 0;
}

int cv_server_start(struct cv_app *app, struct cv_server **ret_server, struct cv_errmsg *err)
{
	const struct cv_config *cfg = app->cfg;
	struct conn_guard_limits limits = {
		.header_ms = cfg->header_timeout * 1000,
		.body_ms = cfg->body_timeout * 1000,
		.max_pending = (size_t)cfg->max_pending,
		.max_pending_per_ip = (size_t)cfg->max_pending_per_ip,
	};
	struct cv_server *srv;
	int r;

	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return CV_ERR_NOMEM;
	srv->app = app;
	r = conn_guard_new(&limits, app->stats, &srv->guard);
	if (r < 0)
		goto out;
	r = http_workers_new((unsigned)cfg->slow_threads, (size_t)cfg->slow_queue, app->stats,
			     &srv->workers);
	if (r < 0)
		goto out;
	r = waiters_new(app, &srv->waiters);
	if (r < 0)
		goto out;
	if (RAND_bytes((unsigned char *)&srv->instance, sizeof(srv->instance)) != 1)
		srv->instance = (uint32_t)time(NULL);
	if (cfg->tls_certificate != NULL && cfg->tls_certificate[0] != '\0') {
		/* Before any socket: a certificate that cannot be served stops the start. */
		r = tls_listener_new(app, cfg->tls_certificate, &srv->tls, err);
		if (r < 0)
			goto out;
		r = tls_listener_activate(srv->tls, err);
		if (r < 0)
			goto out;
		srv->tls_active = 1;
	}
	r = daemon_start(srv, "server.listen", cfg->listen, cfg->port, 0, &srv->daemon, err);
	if (r < 0)
		goto out;
	if (srv->tls != NULL) {
		r = daemon_start(srv, "server.tls_listen",
				 cfg->tls_listen != NULL && cfg->tls_listen[0] != '\0' ?
				 cfg->tls_listen : cfg->listen, cfg->tls_port, 1, &srv->tls_daemon,
				 err);
		if (r < 0)
			goto out;
	}
	*ret_server = srv;
	srv = NULL;
	r = 0;
out:
	cv_server_stop(srv);
	return r;
}

static int daemon_port(struct MHD_Daemon *daemon)
{
	const union MHD_DaemonInfo *info;

	if (daemon == NULL)
		return -1;
	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	return info != NULL ? (int)info->port : -1;
}

/* The port actually bound (server.port may be 0: any free port). */
int cv_server_port(const struct cv_server *server)
{
	return daemon_port(server->daemon);
}

int cv_server_tls_port(const struct cv_server *server)
{
	return daemon_port(server->tls_daemon);
}

void cv_server_stop(struct cv_server *server)
{
	if (server == NULL)
		return;
	/* The slow-request threads first: libmicrohttpd may not stop with a connection
	 * suspended, and each of theirs is resumed when its handler ends or is cancelled. */
	http_workers_stop(server->workers);
	waiters_stop(server->waiters);
	/* Stopping the HTTPS daemon ends its sessions, and with them every reference to the
	 * identities they were served; only then can the listener go. */
	if (server->tls_daemon != NULL)
		MHD_stop_daemon(server->tls_daemon);
	if (server->daemon != NULL)
		MHD_stop_daemon(server->daemon);
	if (server->tls_active)
		tls_listener_deactivate(server->tls);
	tls_listener_free(server->tls);
	http_workers_free(server->workers);
	waiters_free(server->waiters);
	conn_guard_free(server->guard);
	free(server);
}
