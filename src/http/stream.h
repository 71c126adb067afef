/* Internal to the http module: bodies made while they are sent (the inventory, the metrics),
 * and the text formats they are written in. The formatters are pure and unit-tested. */
#ifndef CV_HTTP_STREAM_H
#define CV_HTTP_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "certvault/error.h"
#include "certvault/http.h"

/* A growable text buffer. The append functions return 0 or CV_ERR_NOMEM (the text is then
 * left as it was before the call). */
struct text {
	char *buf;                 /* NUL-terminated when not NULL */
	size_t len;
	size_t cap;
};
void text_release(struct text *t);
int text_append(struct text *t, const char *s, size_t n);
int text_puts(struct text *t, const char *s);
int text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends s as one CSV field (RFC 4180): as it is, or, when it holds a comma, a double
 * quote, CR or LF, between double quotes with each double quote doubled. A value that starts
 * with =, +, -, @, TAB or CR (a formula to a spreadsheet) gets a leading single quote. */
int text_csv_field(struct text *t, const char *s);

/* Appends s as a Prometheus label value, without the quotes around it: backslash, double
 * quote and line feed escaped as \\, \" and \n (the text exposition format 0.0.4). */
int text_prom_label_value(struct text *t, const char *s);

/* Makes res a streamed body: status, content_type (static), and more, which appends the
 * next piece of the body to out (a row, say; nothing is fine: it is called again until it
 * sets *ret_done) and returns 0, or a negative cv_err with err filled. state_free releases
 * state when the response is done with (or at once when this fails). Returns 0 or
 * CV_ERR_NOMEM. */
typedef int (*http_more_fn)(void *state, struct text *out, int *ret_done,
			    struct cv_errmsg *err);
int http_stream_respond(struct cv_response *res, int status, const char *content_type,
			http_more_fn more, void *state, void (*state_free)(void *state));

/* For the metrics handler (stats.c): appends the request counters and latency histograms in
 * the text exposition format. Returns 0 or CV_ERR_NOMEM. */
int http_stats_render(const struct cv_http_stats *stats, struct text *out);

/* For the server: how many slow requests run and wait (workers.c), one refused for want of
 * room, and connections closed before their request was in (guard.c), by reason. Each
 * accepts a NULL stats. */
void http_stats_slow_set(struct cv_http_stats *stats, size_t running, size_t queued);
void http_stats_slow_refused(struct cv_http_stats *stats);
enum http_closed {
	HTTP_CLOSED_DEADLINE,          /* past server.header_timeout or body_timeout */
	HTTP_CLOSED_PENDING_LIMIT,     /* the longest waiting beyond max_pending(_per_ip) */
	HTTP_CLOSED_N
};
void http_stats_connections_closed(struct cv_http_stats *stats, enum http_closed reason,
				   uint64_t n);

#endif
