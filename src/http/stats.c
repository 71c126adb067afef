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
};

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
	return r != 0 ? CV_ERR_NOMEM : 0;
}
