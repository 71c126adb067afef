/* store: on PostgreSQL, what tells this node that another node changed certificates, JWKs or
 * API tokens (issue 15), so that the caches keyed by the generations (the list's pages and
 * totals, a certificate's details, the JWKS document, the tokens requests authenticate
 * with) need no round trip per request to stay right.
 *
 * The generations are kept in the database (store_generations, bumped by statement triggers
 * in each writer's transaction), and the triggers NOTIFY cv_generations, which PostgreSQL
 * delivers when the writer commits. A thread of this node holds one connection that LISTENs
 * for it; on each notification, and at least every WATCH_HEARTBEAT_MS, it reads the numbers,
 * and when one moved it moves this process's own generation (the numbers cv_store_*_generation
 * hand out, which this node's own writes also move as they are given back: store_return).
 *
 * A reader takes the process's number as current (store_watch_current) only while the thread
 * is listening, is not in the middle of taking a notification in, has nothing unread on its
 * socket, and made a round trip less than WATCH_FRESH_MS ago. Otherwise it reads the numbers
 * from the database itself, as every request did before. So a commit on another node is seen
 * here as soon as PostgreSQL has sent its notification to this node's listener, and never
 * later than WATCH_FRESH_MS, whatever happens to the listener. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "certvault/util.h"
#include "internal.h"

/* How often the listener makes a round trip when no notification comes, and how long after
 * its last one the process's numbers are still taken as current. */
#define WATCH_HEARTBEAT_MS 1000
#define WATCH_FRESH_MS 2000
/* How long the listener waits before connecting again after losing the server. */
#define WATCH_RETRY_MS 1000

struct store_watch {
	struct cv_store *store;
	cvdb *db;                  /* the listener's connection (raw libpq calls on it) */
	pthread_t thread;
	int started;
	int wake[2];               /* a pipe: stop */
	atomic_int stopping;
	/* What readers look at (store_watch_current). */
	atomic_int fd;             /* the listener's socket while it listens; -1: not listening */
	atomic_uint epoch;         /* moves whenever fd does */
	atomic_int busy;           /* taking input in: what it read is not counted yet */
	atomic_int_fast64_t fresh_until; /* CLOCK_MONOTONIC ms; 0: never */
	/* The database's numbers last seen (by the listener or by a reader that asked). */
	pthread_mutex_t seen_lock;
	uint64_t seen[STORE_GENERATIONS];
};

void store_watch_note(struct cv_store *store, const uint64_t numbers[STORE_GENERATIONS])
{
	struct store_watch *w = store->watch;
	int moved[STORE_GENERATIONS];
	unsigned i;

	/* The numbers only grow, so an older read that arrives late moves nothing. Without a
	 * listener (not started yet) nothing was seen: everything moves. */
	for (i = 0; i < STORE_GENERATIONS; i++)
		moved[i] = 1;
	if (w != NULL) {
		pthread_mutex_lock(&w->seen_lock);
		for (i = 0; i < STORE_GENERATIONS; i++) {
			moved[i] = numbers[i] > w->seen[i];
			if (moved[i])
				w->seen[i] = numbers[i];
		}
		pthread_mutex_unlock(&w->seen_lock);
	}
	for (i = 0; i < STORE_GENERATIONS; i++)
		if (moved[i])
			atomic_fetch_add(store_generation(store, i), 1);
}

int store_watch_listening(struct cv_store *store)
{
	struct store_watch *w = store->watch;

	return w != NULL && atomic_load(&w->fd) >= 0 && cv_monotonic_ms() < atomic_load(&w->fresh_until);
}

int store_watch_current(struct cv_store *store)
{
	struct store_watch *w = store->watch;
	unsigned epoch;
	char byte;
	ssize_t n;
	int fd;

	if (w == NULL)
		return 0;
	epoch = atomic_load(&w->epoch);
	fd = atomic_load(&w->fd);
	if (fd < 0 || atomic_load(&w->busy) || cv_monotonic_ms() >= atomic_load(&w->fresh_until))
		return 0;
	/* Bytes waiting on the socket may be a notification the listener has not taken yet. */
	n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
		return 0;
	/* The listener took them in after busy was looked at, or closed the socket (whose
	 * number may since name another) after fd was: either moved what is looked at here. */
	return !atomic_load(&w->busy) && atomic_load(&w->epoch) == epoch;
}

/* Readers stop taking the numbers as current; before the socket is closed or reset. */
static void went_deaf(struct store_watch *w)
{
	atomic_store(&w->fd, -1);
	atomic_fetch_add(&w->epoch, 1);
}

/* Reads the database's numbers on the listener's connection. 0 or -1. */
static int read_numbers(struct store_watch *w, PGconn *pc)
{
	uint64_t numbers[STORE_GENERATIONS];
	PGresult *res;
	unsigned i;
	int ok;

	res = PQexec(pc, STORE_GENERATIONS_SQL);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	     PQnfields(res) == STORE_GENERATIONS;
	for (i = 0; ok && i < STORE_GENERATIONS; i++)
		numbers[i] = strtoull(PQgetvalue(res, 0, (int)i), NULL, 10);
	PQclear(res);
	if (!ok)
		return -1;
	store_watch_note(w->store, numbers);
	atomic_store(&w->fresh_until, cv_monotonic_ms() + WATCH_FRESH_MS);
	return 0;
}

/* LISTENs, then reads the numbers (a commit between the two is in the read), then lets
 * readers trust them. 0 or -1. */
static int start_listening(struct store_watch *w, PGconn *pc)
{
	PGresult *res;
	int ok;

	res = PQexec(pc, "LISTEN cv_generations");
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	if (!ok || read_numbers(w, pc) < 0)
		return -1;
	atomic_store(&w->fd, PQsocket(pc));
	atomic_fetch_add(&w->epoch, 1);
	return 0;
}

/* Sleeps up to ms, or until stopped; 1 when stopped. */
static int pause_unless_stopped(struct store_watch *w, int ms)
{
	struct pollfd p = { .fd = w->wake[0], .events = POLLIN };

	if (atomic_load(&w->stopping))
		return 1;
	(void)poll(&p, 1, ms);
	return atomic_load(&w->stopping);
}

static void *watch_main(void *arg)
{
	struct store_watch *w = arg;
	PGconn *pc = cvdb_pg(w->db);
	int64_t heartbeat = 0;
	int listening = 0, tried = 0;

	while (!atomic_load(&w->stopping)) {
		struct pollfd p[2];
		int took = 0, timeout;
		PGnotify *note;

		if (!listening) {
			/* Anew after any failure: a LISTEN lives as long as its session. */
			if (tried++ > 0 || PQstatus(pc) != CONNECTION_OK)
				PQreset(pc);
			if (PQstatus(pc) != CONNECTION_OK || start_listening(w, pc) < 0) {
				went_deaf(w);
				if (pause_unless_stopped(w, WATCH_RETRY_MS))
					break;
				continue;
			}
			listening = 1;
			heartbeat = cv_monotonic_ms() + WATCH_HEARTBEAT_MS;
		}
		timeout = (int)(heartbeat - cv_monotonic_ms());
		p[0] = (struct pollfd){ .fd = PQsocket(pc), .events = POLLIN };
		p[1] = (struct pollfd){ .fd = w->wake[0], .events = POLLIN };
		/* A failed poll (EINTR) reports nothing: the heartbeat below still comes due. */
		(void)poll(p, 2, timeout > 0 ? timeout : 0);
		if (atomic_load(&w->stopping))
			break;
		atomic_store(&w->busy, 1);
		if ((p[0].revents & (POLLIN | POLLERR | POLLHUP)) != 0 && !PQconsumeInput(pc))
			listening = 0;
		while (listening && (note = PQnotifies(pc)) != NULL) {
			took = 1;
			PQfreemem(note);
		}
		if (listening && (took || cv_monotonic_ms() >= heartbeat)) {
			if (read_numbers(w, pc) < 0)
				listening = 0;
			heartbeat = cv_monotonic_ms() + WATCH_HEARTBEAT_MS;
		}
		if (!listening)
			went_deaf(w);
		atomic_store(&w->busy, 0);
	}
	went_deaf(w);
	return NULL;
}

int store_watch_start(struct cv_store *store, const char *conninfo, struct cv_errmsg *err)
{
	struct store_watch *w;
	int rc;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
	w->store = store;
	w->wake[0] = w->wake[1] = -1;
	atomic_init(&w->fd, -1);
	if (pthread_mutex_init(&w->seen_lock, NULL) != 0) {
		free(w);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot create a mutex");
	}
	store->watch = w;
	rc = cvdb_open_pg(conninfo, &w->db);
	if (rc != SQLITE_OK)
		return cv_errmsg_set(err, CV_ERR_DB, "database postgresql %s: %s", store->target,
				     w->db != NULL ? cvdb_errmsg(w->db) : cvdb_errstr(rc));
	if (pipe(w->wake) < 0 || fcntl(w->wake[0], F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(w->wake[1], F_SETFD, FD_CLOEXEC) < 0)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot make a pipe: %s",
				     strerror(errno));
	if (pthread_create(&w->thread, NULL, watch_main, w) != 0)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start a thread");
	w->started = 1;
	return 0;
}

void store_watch_stop(struct cv_store *store)
{
	struct store_watch *w = store->watch;

	if (w == NULL)
		return;
	if (w->started) {
		atomic_store(&w->stopping, 1);
		(void)!write(w->wake[1], "x", 1);
		pthread_join(w->thread, NULL);
	}
	if (w->wake[0] >= 0)
		close(w->wake[0]);
	if (w->wake[1] >= 0)
		close(w->wake[1]);
	cvdb_close(w->db);
	pthread_mutex_destroy(&w->seen_lock);
	free(w);
	store->watch = NULL;
}
