/* The slow-request threads: a fixed set of threads and one bounded queue, in order. */
#include <pthread.h>
#include <stdlib.h>

#include "certvault/error.h"
#include "stream.h"
#include "workers.h"

struct http_workers {
	pthread_mutex_t lock;
	pthread_cond_t ready;          /* a job was queued, or the workers stop */
	struct http_job *head, *tail;  /* waiting, oldest first */
	size_t held;                   /* places reserved: running, waiting, or about to be */
	size_t queued, running;
	size_t capacity;               /* threads + queue_max */
	int stopping;
	struct cv_http_stats *stats;
	pthread_t *threads;
	unsigned n_threads;            /* started */
};

static void publish(struct http_workers *w)
{
	http_stats_slow_set(w->stats, w->running, w->queued);
}

static void *worker_main(void *arg)
{
	struct http_workers *w = arg;
	struct http_job *job;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->head == NULL && !w->stopping)
			pthread_cond_wait(&w->ready, &w->lock);
		if (w->head == NULL)
			break; /* stopping, nothing left: what waited was cancelled */
		job = w->head;
		w->head = job->next;
		if (w->head == NULL)
			w->tail = NULL;
		w->queued--;
		w->running++;
		publish(w);
		pthread_mutex_unlock(&w->lock);
		job->run(job);
		pthread_mutex_lock(&w->lock);
		w->running--;
		w->held--;
		publish(w);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int http_workers_new(unsigned threads, size_t queue_max, struct cv_http_stats *stats,
		     struct http_workers **ret_workers)
{
	struct http_workers *w;
	unsigned i;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return CV_ERR_NOMEM;
	w->threads = calloc(threads, sizeof(*w->threads));
	if (w->threads == NULL) {
		free(w);
		return CV_ERR_NOMEM;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->ready, NULL);
	w->capacity = threads + queue_max;
	w->stats = stats;
	for (i = 0; i < threads; i++) {
		if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
			http_workers_free(w);
			return CV_ERR_INTERNAL;
		}
		w->n_threads++;
	}
	*ret_workers = w;
	return 0;
}

int http_workers_reserve(struct http_workers *w)
{
	int r = 0;

	pthread_mutex_lock(&w->lock);
	if (w->stopping || w->held >= w->capacity)
		r = CV_ERR_BUSY;
	else
		w->held++;
	pthread_mutex_unlock(&w->lock);
	if (r < 0)
		http_stats_slow_refused(w->stats);
	return r;
}

void http_workers_submit(struct http_workers *w, struct http_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&w->lock);
	if (w->stopping) {
		w->held--;
		pthread_mutex_unlock(&w->lock);
		job->cancel(job);
		return;
	}
	if (w->tail != NULL)
		w->tail->next = job;
	else
		w->head = job;
	w->tail = job;
	w->queued++;
	publish(w);
	pthread_cond_signal(&w->ready);
	pthread_mutex_unlock(&w->lock);
}

void http_workers_stop(struct http_workers *w)
{
	struct http_job *waiting, *next;
	unsigned i;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	if (w->stopping) {
		pthread_mutex_unlock(&w->lock);
		return;
	}
	w->stopping = 1;
	waiting = w->head;
	w->head = w->tail = NULL;
	for (next = waiting; next != NULL; next = next->next)
		w->held--;
	w->queued = 0;
	publish(w);
	pthread_cond_broadcast(&w->ready);
	pthread_mutex_unlock(&w->lock);
	/* Cancelled outside the lock: a cancel answers its request, which takes time. */
	for (; waiting != NULL; waiting = next) {
		next = waiting->next;
		waiting->cancel(waiting);
	}
	for (i = 0; i < w->n_threads; i++)
		pthread_join(w->threads[i], NULL);
}

void http_workers_free(struct http_workers *w)
{
	if (w == NULL)
		return;
	http_workers_stop(w);
	pthread_cond_destroy(&w->ready);
	pthread_mutex_destroy(&w->lock);
	free(w->threads);
	free(w);
}
