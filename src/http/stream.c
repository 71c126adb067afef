/* Streamed bodies: a producer that drains a text buffer refilled piece by piece, and the
 * CSV and Prometheus escaping the streamed formats need. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/text.h"
#include "stream.h"

void text_release(struct text *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}

static int text_reserve(struct text *t, size_t more)
{
	size_t cap = t->cap != 0 ? t->cap : 256;
	char *grown;

	if (more > SIZE_MAX / 2 - t->len - 1)
		return CV_ERR_NOMEM;
	if (t->len + more + 1 <= t->cap)
		return 0;
	while (cap < t->len + more + 1)
		cap *= 2;
	grown = realloc(t->buf, cap);
	if (grown == NULL)
		return CV_ERR_NOMEM;
	t->buf = grown;
	t->cap = cap;
	return 0;
}

int text_append(struct text *t, const char *s, size_t n)
{
	if (text_reserve(t, n) < 0)
		return CV_ERR_NOMEM;
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
	return 0;
}

int text_puts(struct text *t, const char *s)
{
	return text_append(t, s, strlen(s));
}

int text_printf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || text_reserve(t, (size_t)n) < 0)
		return CV_ERR_NOMEM;
	va_start(ap, fmt);
	vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
	return 0;
}

int text_csv_field(struct text *t, const char *s)
{
	size_t len0 = t->len;
	const char *q;
	/* A spreadsheet runs a cell that starts like a formula: an operator's description must
	 * not run on an auditor's machine. OWASP's advice: a leading single quote. */
	const char *guard = s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL ? "'" : "";

	if (s[strcspn(s, ",\"\r\n")] == '\0')
		return text_puts(t, guard) < 0 || text_puts(t, s) < 0 ? CV_ERR_NOMEM : 0;
	if (text_append(t, "\"", 1) < 0 || text_puts(t, guard) < 0)
		goto nomem;
	while ((q = strchr(s, '"')) != NULL) {
		if (text_append(t, s, (size_t)(q - s) + 1) < 0 || text_append(t, "\"", 1) < 0)
			goto nomem;
		s = q + 1;
	}
	if (text_puts(t, s) < 0 || text_append(t, "\"", 1) < 0)
		goto nomem;
	return 0;
nomem:
	t->len = len0;
	if (t->buf != NULL)
		t->buf[len0] = '\0';
	return CV_ERR_NOMEM;
}

int text_prom_label_value(struct text *t, const char *s)
{
	size_t len0 = t->len, run;
	char shown[1024];

	/* The exposition is UTF-8: a stored value that is not is shown escaped (cut at a
	 * character when long; a label is a name or a DN). */
	if (!cv_text_utf8_valid(s, strlen(s))) {
		cv_text_escape(s, strlen(s), 0, shown, sizeof(shown));
		s = shown;
	}

	while (*s != '\0') {
		run = strcspn(s, "\\\"\n");
		if (text_append(t, s, run) < 0)
			goto nomem;
		s += run;
		if (*s == '\0')
			break;
		if (text_append(t, *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : "\\n", 2) < 0)
			goto nomem;
		s++;
	}
	return 0;
nomem:
	t->len = len0;
	if (t->buf != NULL)
		t->buf[len0] = '\0';
	return CV_ERR_NOMEM;
}

struct stream {
	struct text out;
	size_t off;                /* what of out was already handed to the server */
	int done;
	http_more_fn more;
	void *state;
	void (*state_free)(void *state);
};

static ssize_t stream_produce(void *arg, char *buf, size_t max, struct cv_errmsg *err)
{
	struct stream *s = arg;
	size_t n;
	int r;

	while (s->off == s->out.len) {
		if (s->done)
			return 0;
		/* A piece is at most a row or a page: the buffer stays that size. */
		s->out.len = 0;
		s->off = 0;
		r = s->more(s->state, &s->out, &s->done, err);
		if (r < 0)
			return r;
	}
	n = s->out.len - s->off;
	if (n > max)
		n = max;
	memcpy(buf, s->out.buf + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

static void stream_free(void *arg)
{
	struct stream *s = arg;

	if (s->state_free != NULL)
		s->state_free(s->state);
	text_release(&s->out);
	free(s);
}

int http_stream_respond(struct cv_response *res, int status, const char *content_type,
			http_more_fn more, void *state, void (*state_free)(void *state))
{
	struct stream *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		if (state_free != NULL)
			state_free(state);
		return CV_ERR_NOMEM;
	}
	s->more = more;
	s->state = state;
	s->state_free = state_free;
	res->status = status;
	res->content_type = content_type;
	res->stream.produce = stream_produce;
	res->stream.free = stream_free;
	res->stream.arg = s;
	return 0;
}
