/* vault: the node keeper (issue 15). Several certvaultd nodes share one database; each moves
 * its heartbeat there every few seconds, so that the others can tell a node that crashed
 * (silent past server.node_lease_seconds: what it left in flight is anyone's to undo) from a
 * live one whose imports, deletes and renewals are in flight (left alone). The keeper also
 * undoes what crashed nodes left, without waiting for a restart. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct vault_node_keeper {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int stop;
	int64_t beat;   /* seconds between heartbeats */
	int64_t lease;  /* seconds between looks for abandoned rows */
	cv_vault_node_report_fn *report;
};

static void say(const struct vault_node_keeper *k, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void say(const struct vault_node_keeper *k, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (k->report == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	k->report(line);
}

/* One heartbeat; what went wrong is said once, and once when it is right again. */
static void heartbeat(struct cv_vault *v, struct vault_node_keeper *k, int64_t now, int *failing)
{
	int r = cv_store_node_heartbeat(v->store, now);

	if (r == 0) {
		if (*failing)
			say(k, "node heartbeat written again");
		*failing = 0;
		return;
	}
	if (*failing == r)
		return;
	*failing = r;
	if (r == CV_ERR_NAME_TAKEN)
		say(k, "another certvaultd started under this node's name (server.node_name): "
		    "two nodes must not share a name, or each undoes the other's writes in flight");
	else
		say(k, "node heartbeat: %s (past server.node_lease_seconds without one, other "
		    "nodes undo this node's writes in flight)", cv_strerror(r));
}

static void reconcile(struct cv_vault *v, struct vault_node_keeper *k, int64_t now)
{
	struct cv_reconcile_report rep;
	struct cv_errmsg err = { "" };
	int r;

	r = cv_vault_reconcile_abandoned(v, now, &rep, &err);
	if (r < 0)
		say(k, "undoing what a silent node left: %s", err.text[0] ? err.text : cv_strerror(r));
	if (rep.imports_undone > 0 || rep.deletes_finished > 0 || rep.versions_undone > 0 ||
	    rep.generates_undone > 0)
		say(k, "took over from a node silent past its lease: %u import(s) undone, %u "
		    "delete(s) finished, %u new version(s) undone, %u generated key(s) destroyed",
		    rep.imports_undone, rep.deletes_finished, rep.versions_undone,
		    rep.generates_undone);
}

static void *keeper_main(void *arg)
{
	struct cv_vault *v = arg;
	struct vault_node_keeper *k = v->node_keeper;
	struct timespec until;
	int64_t now, next_reconcile;
	int failing = 0;

	/* Registering wrote the first heartbeat, and the start runs the reconciler: the first
	 * beat is a beat later, the first look for abandoned rows a lease later. */
	next_reconcile = (int64_t)time(NULL) + k->lease;
	pthread_mutex_lock(&k->lock);
	while (!k->stop) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)k->beat;
		while (!k->stop && pthread_cond_timedwait(&k->wake, &k->lock, &until) != ETIMEDOUT)
			;
		if (k->stop)
			break;
		pthread_mutex_unlock(&k->lock);
		now = (int64_t)time(NULL);
		heartbeat(v, k, now, &failing);
		if (now >= next_reconcile) {
			reconcile(v, k, now);
			next_reconcile = now + k->lease;
		}
		pthread_mutex_lock(&k->lock);
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

int cv_vault_node_start(struct cv_vault *v, int64_t lease_seconds,
			cv_vault_node_report_fn *report, struct cv_errmsg *err)
{
	struct vault_node_keeper *k;

	k = calloc(1, sizeof(*k));
	if (k == NULL)
		return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
	k->lease = lease_seconds > 0 ? lease_seconds : 30;
	/* Three beats a lease: one late or lost write does not make the node look gone. */
	k->beat = k->lease / 3 > 0 ? k->lease / 3 : 1;
	k->report = report;
	if (pthread_mutex_init(&k->lock, NULL) != 0) {
		free(k);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start the node heartbeat");
	}
	if (pthread_cond_init(&k->wake, NULL) != 0) {
		pthread_mutex_destroy(&k->lock);
		free(k);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start the node heartbeat");
	}
	v->node_keeper = k;
	if (pthread_create(&k->thread, NULL, keeper_main, v) != 0) {
		v->node_keeper = NULL;
		pthread_cond_destroy(&k->wake);
		pthread_mutex_destroy(&k->lock);
		free(k);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start the node heartbeat");
	}
	return 0;
}

void cv_vault_node_stop(struct cv_vault *v)
{
	struct vault_node_keeper *k = v->node_keeper;

	if (k == NULL)
		return;
	pthread_mutex_lock(&k->lock);
	k->stop = 1;
	pthread_cond_signal(&k->wake);
	pthread_mutex_unlock(&k->lock);
	pthread_join(k->thread, NULL);
	v->node_keeper = NULL;
	pthread_cond_destroy(&k->wake);
	pthread_mutex_destroy(&k->lock);
	free(k);
	/* Called once the server stopped: nothing of this node is in flight any more. */
	(void)cv_store_node_stopped(v->store);
}
