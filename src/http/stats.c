/* Request counters and latency histograms by route, counted with atomics when a request
 * completes and shown in the Prometheus text format. */
#include <stdatomic.h>
#include <stdlib.h>

#include "stream.h"

/* Prometheus's default buckets, in seconds; +Inf is the count. */
static const double bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
static const char *const bound_labels[] = { "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
					    "0.5",   "1",    "2.5",   "5",    "10" };
#define N_BOUNDS (sizeof(bounds) / sizeof(bounds[0]))

/* Every status certvaultd answers with; anything else is counted as "other". */
static const int codes[] = { 200, 201, 204, 304, 400, 401, 403, 404, 405,
			     409, 412, 413, 415, 422, 500, 502, 503 };
#define N_CODES (sizeof(codes) / sizeof(codes[0]))

struct route_stats {
	atomic_uint_fast64_t by_code[N_CODES + 1];
	/* Not cumulative: a request is counted in the first bucket it fits, the last one
	 * being +Inf; the exposition sums them, so its buckets always add up to its count. */
	atomic_uint_fast64_t buckets[N_BOUNDS + 1];
	atomic_uint_fast64_t sum_us;
};

struct cv_http_stats {
	size_t n;                  /* the routes and, at 0, requests no route matched */
	struct route_stats *routes;
	atomic_uint_fast64_t slow_running, slow_queued, slow_refused;
	atomic_uint_fast64_t closed[HTTP_CLOSED_N];
};

/* The reason label of each way a connection is closed before its request is in. */
static const char *const closed_reasons[HTTP_CLOSED_N] = {
	[HTTP_CLOSED_DEADLINE] = "request_deadline",
	[HTTP_CLOSED_PENDING_LIMIT] = "pending_limit",
};

void http_stats_slow_set(struct cv_http_stats *stats, size_t running, size_t queued)
{
	if (stats == NULL)
		return;
	atomic_store_explicit(&stats->slow_running, running, memory_order_relaxed);
	atomic_store_explicit(&stats->slow_queued, queued, memory_order_relaxed);
}

void http_stats_slow_refused(struct cv_http_stats *stats)
{
	if (stats != NULL)
		atomic_fetch_add_explicit(&stats->slow_refused, 1, memory_order_relaxed);
}

void http_stats_connections_closed(struct cv_http_stats *stats, enum http_closed reason,
				   uint64_t n)
{
	if (stats != NULL && reason < HTTP_CLOSED_N)
		atomic_fetch_add_explicit(&stats->closed[reason], n, memory_order_relaxed);
}

int cv_http_stats_new(struct cv_http_stats **ret_stats)
{
	struct cv_route_info info;
	struct cv_http_stats *s;
	size_t n = 0;

	while (cv_http_route_at(n, &info) == 0)
		n++;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return CV_ERR_NOMEM;
	s->n = n + 1;
	s->routes = calloc(s->n, sizeof(*s->routes));
	if (s->routes == NULL) {
		free(s);
		return CV_ERR_NOMEM;
	}
	*ret_stats = s;
	return 0;
}

void cv_http_stats_free(struct cv_http_stats *stats)
{
	if (stats == NULL)
		return;
	free(stats->routes);
	free(stats);
}

void cv_http_stats_observe(struct cv_http_stats *stats, int route, int status, double seconds)
{
	struct route_stats *rs;
	size_t c, b;

	if (stats == NULL || route < 0 || (size_t)route >= stats->n)
		return;
	rs = &stats->routes[route];
	for (c = 0; c < N_CODES && codes[c] != status; c++)
		;
	atomic_fetch_add_explicit(&rs->by_code[c], 1, memory_order_relaxed);
	for (b = 0; b < N_BOUNDS && seconds > bounds[b]; b++)
		;
	atomic_fetch_add_explicit(&rs->buckets[b], 1, memory_order_relaxed);
	if (seconds < 0)
		seconds = 0;
	atomic_fetch_add_explicit(&rs->sum_us, (uint_fast64_t)(seconds * 1e6 + 0.5),
				  memory_order_relaxed);
}

/* The route label: "GET /v1/certificates/{}", or "unmatched". */
static int route_label(struct text *out, size_t i)
{
	struct cv_route_info info;

	if (i == 0 || cv_http_route_at(i - 1, &info) < 0)
		return text_puts(out, "route=\"unmatched\"");
	if (text_printf(out, "route=\"%s ", info.method) < 0 ||
	    text_prom_label_value(out, info.pattern) < 0)
		return CV_ERR_NOMEM;
	return text_puts(out, "\"");
}

int http_stats_render(const struct cv_http_stats *stats, struct text *out)
{
	uint64_t buckets[N_BOUNDS + 1], count, v;
	size_t i, c, b;
	int r = 0;

	r |= text_puts(out, "# HELP certvault_http_requests_total HTTP requests answered, by "
			    "route and status code.\n"
			    "# TYPE certvault_http_requests_total counter\n");
	for (i = 0; stats != NULL && i < stats->n; i++) {
		for (c = 0; c <= N_CODES; c++) {
			v = atomic_load_explicit(&stats->routes[i].by_code[c],
						 memory_order_relaxed);
			if (v == 0)
				continue;
			r |= text_puts(out, "certvault_http_requests_total{");
			r |= route_label(out, i);
			if (c < N_CODES)
				r |= text_printf(out, ",code=\"%d\"} %llu\n", codes[c],
						 (unsigned long long)v);
			else
				r |= text_printf(out, ",code=\"other\"} %llu\n",
						 (unsigned long long)v);
		}
	}
	r |= text_puts(out, "# HELP certvault_http_request_duration_seconds Time from a "
			    "request's headers to the last byte of its answer, by route.\n"
			    "# TYPE certvault_http_request_duration_seconds histogram\n");
	for (i = 0; stats != NULL && i < stats->n; i++) {
		count = 0;
		for (b = 0; b <= N_BOUNDS; b++) {
			buckets[b] = atomic_load_explicit(&stats->routes[i].buckets[b],
							  memory_order_relaxed);
			count += buckets[b];
		}
		if (count == 0)
			continue;
		v = 0;
		for (b = 0; b <= N_BOUNDS; b++) {
			v += buckets[b];
			r |= text_puts(out, "certvault_http_request_duration_seconds_bucket{");
			r |= route_label(out, i);
			r |= text_printf(out, ",le=\"%s\"} %llu\n",
					 b < N_BOUNDS ? bound_labels[b] : "+Inf",
					 (unsigned long long)v);
		}
		r |= text_puts(out, "certvault_http_request_duration_seconds_sum{");
		r |= route_label(out, i);
		r |= text_printf(out, "} %.6f\n",
				 (double)atomic_load_explicit(&stats->routes[i].sum_us,
							      memory_order_relaxed) / 1e6);
		r |= text_puts(out, "certvault_http_request_duration_seconds_count{");
		r |= route_label(out, i);
		r |= text_printf(out, "} %llu\n", (unsigned long long)count);
	}
	if (stats == NULL)
		return r != 0 ? CV_ERR_NOMEM : 0;
	r |= text_printf(out, "# HELP certvault_http_slow_requests_running Slow requests (key "
			      "derivation, PKCS#12, network fetches) running on their own "
			      "threads.\n# TYPE certvault_http_slow_requests_running gauge\n"
			      "certvault_http_slow_requests_running %llu\n",
			 (unsigned long long)atomic_load(&stats->slow_running));
	r |= text_printf(out, "# HELP certvault_http_slow_requests_queued Slow requests waiting "
			      "for one of those threads.\n"
			      "# TYPE certvault_http_slow_requests_queued gauge\n"
			      "certvault_http_slow_requests_queued %llu\n",
			 (unsigned long long)atomic_load(&stats->slow_queued));
	r |= text_printf(out, "# HELP certvault_http_slow_requests_refused_total Slow requests "
			      "answered 503 busy: the queue was full.\n"
			      "# TYPE certvault_http_slow_requests_refused_total counter\n"
			      "certvault_http_slow_requests_refused_total %llu\n",
			 (unsigned long long)atomic_load(&stats->slow_refused));
	r |= text_puts(out, "# HELP certvault_http_connections_closed_total Connections closed "
			    "before their request was in: past server.header_timeout or "
			    "body_timeout, or the longest waiting beyond server.max_pending or "
			    "max_pending_per_ip.\n"
			    "# TYPE certvault_http_connections_closed_total counter\n");
	for (i = 0; i < HTTP_CLOSED_N; i++)
		r |= text_printf(out, "certvault_http_connections_closed_total{reason=\"%s\"} "
				 "%llu\n", closed_reasons[i],
				 (unsigned long long)atomic_load(&stats->closed[i]));
	return r != 0 ? CV_ERR_NOMEM : 0;
}
