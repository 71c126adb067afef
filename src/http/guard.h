/* Internal to the http module: the connection guard against clients that hold connections
 * open without ever finishing a request (slowloris: a header byte now and then keeps
 * libmicrohttpd's idle timeout from firing, so 64 such connections lock their address out,
 * and 8 addresses the whole server).
 *
 * Each connection is "pending" from its opening (or the end of its previous answer) until
 * its whole request is in: the headers must be in within server.header_timeout and then the
 * body within server.body_timeout, however slowly bytes arrive; a reaper thread closes the
 * late ones. At most server.max_pending_per_ip connections from one address, and
 * server.max_pending in all, may be pending: a new connection beyond either closes the one
 * of that address (waiting for at least half a second: guard.c) or of all that has waited
 * longest, so a newcomer always gets its turn and a slow client cannot hold more than its
 * share.
 *
 * libmicrohttpd 0.9.75 cannot close a connection from outside: the guard shuts its socket
 * down (shutdown(2)), libmicrohttpd reads the end and drops it. The guard learns of every
 * connection from MHD_OPTION_NOTIFY_CONNECTION, and forgets it in the closing notification,
 * which libmicrohttpd makes before it closes the descriptor: under the guard's lock no
 * descriptor it shuts down can be another connection's. */
#ifndef CV_HTTP_GUARD_H
#define CV_HTTP_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

struct cv_http_stats;
struct conn_guard;

struct conn_guard_limits {
	int64_t header_ms;       /* headers in within this, from opening or the last answer */
	int64_t body_ms;         /* the body in within this, from the headers */
	size_t max_pending;
	size_t max_pending_per_ip;
};

/* Starts the reaper. stats (may be NULL) counts the connections closed. Returns 0,
 * CV_ERR_NOMEM or CV_ERR_INTERNAL. */
int conn_guard_new(const struct conn_guard_limits *limits, struct cv_http_stats *stats,
		   struct conn_guard **ret_guard);
/* Stops the reaper and frees; after every daemon using it has stopped. Accepts NULL. */
void conn_guard_free(struct conn_guard *g);

/* The MHD_OPTION_NOTIFY_CONNECTION callback; cls is the guard. */
void conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
		       enum MHD_ConnectionNotificationCode toe);

/* A request's way through its connection, from the access handler and the completion
 * callback: the headers are in; the whole request is in (no deadline while it is answered);
 * the answer is done (the connection waits for its next request). */
void conn_guard_headers_in(struct conn_guard *g, struct MHD_Connection *conn);
void conn_guard_request_in(struct conn_guard *g, struct MHD_Connection *conn);
void conn_guard_answered(struct conn_guard *g, struct MHD_Connection *conn);

#endif
