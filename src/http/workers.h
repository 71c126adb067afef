/* Internal to the http module: the slow-request threads. The server hands them the requests
 * whose route is marked slow (key derivation, PKCS#12, network fetches), so the threads that
 * read and answer connections are never the ones that wait. */
#ifndef CV_HTTP_WORKERS_H
#define CV_HTTP_WORKERS_H

#include <stddef.h>

struct cv_http_stats;

/* One piece of work, embedded in what it works on. run is called on a worker thread; cancel
 * instead, on the thread stopping the workers, when they stop before it started. Exactly one
 * of the two is called, once. */
struct http_job {
	void (*run)(struct http_job *job);
	void (*cancel)(struct http_job *job);
	struct http_job *next;
};

struct http_workers;

/* Starts threads workers that take jobs in order; at most queue_max wait beyond those
 * running. stats (may be NULL) is kept told how many run, wait and were refused. Returns 0,
 * CV_ERR_NOMEM or CV_ERR_INTERNAL (a thread could not start). */
int http_workers_new(unsigned threads, size_t queue_max, struct cv_http_stats *stats,
		     struct http_workers **ret_workers);

/* Holds a place for one job: 0, or CV_ERR_BUSY when every thread is busy and the queue is
 * full, or the workers are stopping. A place held must be used by http_workers_submit. */
int http_workers_reserve(struct http_workers *w);

/* Queues job in the place reserved for it. When the workers are stopping by now, job's
 * cancel runs at once, on this thread. */
void http_workers_submit(struct http_workers *w, struct http_job *job);

/* Stops taking jobs (a reserve is then CV_ERR_BUSY), cancels those that wait, lets those
 * running finish and joins the threads; w stays valid for late callers. Accepts NULL. */
void http_workers_stop(struct http_workers *w);
/* Stops if not yet stopped, and frees: when nothing can call it any more. Accepts NULL. */
void http_workers_free(struct http_workers *w);

#endif
