/* The connection guard (guard.h): deadlines for a request to arrive, and limits on the
 * connections still waiting for theirs. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "certvault/error.h"
#include "certvault/util.h"
#include "guard.h"
#include "stream.h"

enum stage {
	WAITING,   /* for the headers: a new connection, or one between requests */
	BODY,      /* headers in, for the body */
	BUSY,      /* the request is in: handled and answered, no deadline */
};

struct guarded {
	struct guarded *prev, *next;
	int fd;
	unsigned char addr[16];    /* IPv6, or IPv4 mapped into it */
	enum stage stage;
	int64_t since_ms;          /* when this stage began */
	int closing;               /* shut down by the guard: no longer counted */
};

struct conn_guard {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct guarded *head, *tail;
	size_t pending;            /* WAITING or BODY, not closing */
	struct conn_guard_limits lim;
	struct cv_http_stats *stats;
	int64_t next_wake_ms;      /* when the reaper means to look again */
	int stopping;
	int started;
	pthread_t reaper;
	/* Since the last log line, so that an attack makes one line a second, not thousands. */
	uint64_t late, evicted;
	unsigned char last_addr[16];
	int64_t last_log_ms;
};

static int pending(const struct guarded *e)
{
	return !e->closing && e->stage != BUSY;
}

static int64_t deadline_of(const struct conn_guard *g, const struct guarded *e)
{
	return e->since_ms + (e->stage == WAITING ? g->lim.header_ms : g->lim.body_ms);
}

static void addr_key(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa != NULL && sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

static void addr_text(const unsigned char key[16], char *buf, size_t len)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (memcmp(key, mapped, sizeof(mapped)) == 0) {
		if (inet_ntop(AF_INET, key + 12, buf, (socklen_t)len) != NULL)
			return;
	} else if (inet_ntop(AF_INET6, key, buf, (socklen_t)len) != NULL) {
		return;
	}
	snprintf(buf, len, "?");
}

/* Caller holds the lock. The socket is shut down, not closed: libmicrohttpd owns it, reads
 * its end and drops the connection, and tells the guard before it closes the descriptor. */
static void close_entry(struct conn_guard *g, struct guarded *e)
{
	if (pending(e))
		g->pending--;
	e->closing = 1;
	shutdown(e->fd, SHUT_RDWR);
	memcpy(g->last_addr, e->addr, sizeof(g->last_addr));
}

/* The pending connection that has waited longest, of addr (NULL: of all). */
static struct guarded *longest_waiting(struct conn_guard *g, const unsigned char *addr,
				       size_t *ret_count)
{
	struct guarded *e, *oldest = NULL;
	size_t n = 0;

	for (e = g->head; e != NULL; e = e->next) {
		if (!pending(e) || (addr != NULL && memcmp(e->addr, addr, 16) != 0))
			continue;
		n++;
		if (oldest == NULL || e->since_ms < oldest->since_ms)
			oldest = e;
	}
	*ret_count = n;
	return oldest;
}

/* A connection of the newcomer's own address is closed to make room only once it has waited
 * this long. A client with a pool of keep-alive connections (a load balancer, wrk -c32, a
 * proxy in front) opens them in one burst and is between two requests on many of them at
 * any moment; without the grace, its own 17th connection closed its first before that one
 * had sent anything, whose reopening closed the next, and so on for ever. A slowloris
 * connection holds its place at most this long past the limit. The limit on all addresses
 * has no grace: it is what keeps the server's connections from filling up. */
#define PER_IP_GRACE_MS 500

/* Caller holds the lock: a newcomer from addr makes room for itself. */
static void make_room(struct conn_guard *g, const unsigned char *addr)
{
	int64_t now = cv_monotonic_ms();
	struct guarded *victim;
	size_t n;

	while ((victim = longest_waiting(g, addr, &n)) != NULL && n > g->lim.max_pending_per_ip &&
	       now - victim->since_ms >= PER_IP_GRACE_MS) {
		close_entry(g, victim);
		g->evicted++;
		http_stats_connections_closed(g->stats, HTTP_CLOSED_PENDING_LIMIT, 1);
	}
	while (g->pending > g->lim.max_pending &&
	       (victim = longest_waiting(g, NULL, &n)) != NULL) {
		close_entry(g, victim);
		g->evicted++;
		http_stats_connections_closed(g->stats, HTTP_CLOSED_PENDING_LIMIT, 1);
	}
}

/* Caller holds the lock: the reaper is woken when a deadline comes before its next look. */
static void deadline_set(struct conn_guard *g, struct guarded *e)
{
	if (deadline_of(g, e) < g->next_wake_ms)
		pthread_cond_signal(&g->wake);
}

static void stage_set(struct conn_guard *g, struct MHD_Connection *conn, enum stage stage)
{
	const union MHD_ConnectionInfo *info;
	struct guarded *e;

	if (g == NULL)
		return;
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	e = info != NULL ? info->socket_context : NULL;
	if (e == NULL)
		return;
	pthread_mutex_lock(&g->lock);
	if (!e->closing && e->stage != stage) {
		int was = pending(e);

		e->stage = stage;
		e->since_ms = cv_monotonic_ms();
		if (was && !pending(e))
			g->pending--;
		else if (!was && pending(e))
			g->pending++;
		if (pending(e))
			deadline_set(g, e);
	}
	pthread_mutex_unlock(&g->lock);
}

void conn_guard_headers_in(struct conn_guard *g, struct MHD_Connection *conn)
{
	stage_set(g, conn, BODY);
}

void conn_guard_request_in(struct conn_guard *g, struct MHD_Connection *conn)
{
	stage_set(g, conn, BUSY);
}

void conn_guard_answered(struct conn_guard *g, struct MHD_Connection *conn)
{
	stage_set(g, conn, WAITING);
}

void conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
		       enum MHD_ConnectionNotificationCode toe)
{
	struct conn_guard *g = cls;
	const union MHD_ConnectionInfo *info;
	struct guarded *e;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		e = *socket_context;
		if (e == NULL)
			return;
		pthread_mutex_lock(&g->lock);
		if (pending(e))
			g->pending--;
		if (e->prev != NULL)
			e->prev->next = e->next;
		else
			g->head = e->next;
		if (e->next != NULL)
			e->next->prev = e->prev;
		else
			g->tail = e->prev;
		pthread_mutex_unlock(&g->lock);
		free(e);
		*socket_context = NULL;
		return;
	}
	if (toe != MHD_CONNECTION_NOTIFY_STARTED)
		return;
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (info == NULL)
		return;
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		/* A connection the guard cannot watch is not kept. */
		shutdown(info->connect_fd, SHUT_RDWR);
		return;
	}
	e->fd = info->connect_fd;
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	addr_key(info != NULL ? info->client_addr : NULL, e->addr);
	e->stage = WAITING;
	e->since_ms = cv_monotonic_ms();
	pthread_mutex_lock(&g->lock);
	e->prev = g->tail;
	if (g->tail != NULL)
		g->tail->next = e;
	else
		g->head = e;
	g->tail = e;
	g->pending++;
	make_room(g, e->addr);
	deadline_set(g, e);
	pthread_mutex_unlock(&g->lock);
	*socket_context = e;
}

/* One line for what was closed since the last one. Caller holds the lock. */
static void log_closed(struct conn_guard *g, int64_t now)
{
	char line[512], addr[INET6_ADDRSTRLEN];
	int n;

	if ((g->late == 0 && g->evicted == 0) || now - g->last_log_ms < 1000)
		return;
	addr_text(g->last_addr, addr, sizeof(addr));
	n = snprintf(line, sizeof(line),
		     "certvaultd: closed %llu connection(s) whose request was not in within "
		     "server.header_timeout (%llds) or body_timeout (%llds), and %llu waiting the "
		     "longest beyond server.max_pending_per_ip (%zu) or max_pending (%zu); the "
		     "last from %s\n", (unsigned long long)g->late,
		     (long long)(g->lim.header_ms / 1000), (long long)(g->lim.body_ms / 1000),
		     (unsigned long long)g->evicted, g->lim.max_pending_per_ip,
		     g->lim.max_pending, addr);
	if (n > 0) {
		ssize_t w = write(STDERR_FILENO, line,
				  (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
		(void)w;
	}
	g->late = g->evicted = 0;
	g->last_log_ms = now;
}

static void *reaper_main(void *arg)
{
	struct conn_guard *g = arg;
	struct guarded *e;
	struct timespec ts;
	int64_t now, next, d;

	pthread_mutex_lock(&g->lock);
	while (!g->stopping) {
		now = cv_monotonic_ms();
		/* At least once a second, for the log line of what make_room closed. */
		next = now + 1000;
		for (e = g->head; e != NULL; e = e->next) {
			if (!pending(e))
				continue;
			d = deadline_of(g, e);
			if (d <= now) {
				close_entry(g, e);
				g->late++;
				http_stats_connections_closed(g->stats, HTTP_CLOSED_DEADLINE, 1);
			} else if (d < next) {
				next = d;
			}
		}
		log_closed(g, now);
		g->next_wake_ms = next;
		ts.tv_sec = (time_t)(next / 1000);
		ts.tv_nsec = (long)(next % 1000) * 1000000;
		pthread_cond_timedwait(&g->wake, &g->lock, &ts);
	}
	log_closed(g, cv_monotonic_ms() + 1000);
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

int conn_guard_new(const struct conn_guard_limits *limits, struct cv_http_stats *stats,
		   struct conn_guard **ret_guard)
{
	struct conn_guard *g;

	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return CV_ERR_NOMEM;
	g->lim = *limits;
	g->stats = stats;
	g->next_wake_ms = INT64_MAX;
	pthread_mutex_init(&g->lock, NULL);
	(void)cv_cond_init_monotonic(&g->wake);
	if (pthread_create(&g->reaper, NULL, reaper_main, g) != 0) {
		conn_guard_free(g);
		return CV_ERR_INTERNAL;
	}
	g->started = 1;
	*ret_guard = g;
	return 0;
}

void conn_guard_free(struct conn_guard *g)
{
	struct guarded *e, *next;

	if (g == NULL)
		return;
	if (g->started) {
		pthread_mutex_lock(&g->lock);
		g->stopping = 1;
		pthread_cond_signal(&g->wake);
		pthread_mutex_unlock(&g->lock);
		pthread_join(g->reaper, NULL);
	}
	/* The daemons have stopped: each told the guard of its connections' end. */
	for (e = g->head; e != NULL; e = next) {
		next = e->next;
		free(e);
	}
	pthread_cond_destroy(&g->wake);
	pthread_mutex_destroy(&g->lock);
	free(g);
}
