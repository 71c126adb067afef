/* GET /metrics: the Prometheus text exposition format 0.0.4. The counts, request and token
 * counters come first; the series of each certificate follow, streamed a page at a time,
 * one walk of the store for each metric family (the format wants a family's samples
 * together). Every sample carries node="server.node_name" first among its labels: several
 * nodes scraped into one Prometheus keep their series apart (issue 15). */
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "stream.h"

#define METRICS_PAGE 500

enum family {
	FAMILY_EXPIRATION = 0,     /* certificates' not_after */
	FAMILY_NOT_BEFORE,         /* certificates' not_before */
	FAMILY_TRUST_EXPIRATION,   /* truststore entries' not_after */
	FAMILY_DONE,
};

static const struct {
	const char *name;
	const char *help;
	unsigned what;             /* the walk that gives its samples */
} families[] = {
	[FAMILY_EXPIRATION] = { "certvault_certificate_expiration_timestamp_seconds",
				"The date after which the certificate expires (its notAfter), "
				"in seconds since the epoch.",
				CV_INVENTORY_CERTIFICATES },
	[FAMILY_NOT_BEFORE] = { "certvault_certificate_not_before_timestamp_seconds",
				"The date before which the certificate is not valid yet (its "
				"notBefore), in seconds since the epoch.",
				CV_INVENTORY_CERTIFICATES },
	[FAMILY_TRUST_EXPIRATION] = { "certvault_truststore_certificate_expiration_timestamp_"
				      "seconds",
				      "The date after which the trusted CA certificate expires, in "
				      "seconds since the epoch.",
				      CV_INVENTORY_TRUSTSTORE },
};

struct metrics_stream {
	struct cv_vault *vault;
	const char *node;          /* server.node_name, the node label's value */
	int64_t now;
	struct text head;          /* the counters, taken when the request came */
	int head_sent;
	enum family family;
	struct cv_inventory *walk; /* the family's walk; NULL: not begun */
};

static void metrics_stream_free(void *state)
{
	struct metrics_stream *s = state;

	if (s == NULL)
		return;
	text_release(&s->head);
	cv_vault_inventory_free(s->walk);
	free(s);
}

static int family_header(struct text *out, enum family f)
{
	return text_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", families[f].name,
			   families[f].help, families[f].name);
}

static int sample(struct text *out, enum family f, const char *node,
		  const struct cv_inventory_item *it)
{
	int r;

	r = text_printf(out, "%s{node=\"", families[f].name);
	if (r == 0)
		r = text_prom_label_value(out, node);
	if (r == 0)
		r = text_printf(out, "\",%s=\"", it->trusted_ca ? "alias" : "name");
	if (r == 0)
		r = text_prom_label_value(out, it->name);
	if (r == 0)
		r = text_puts(out, "\",issuer=\"");
	if (r == 0)
		r = text_prom_label_value(out, it->issuer);
	if (r == 0)
		r = text_printf(out, "\"} %lld\n", (long long)(f == FAMILY_NOT_BEFORE ?
							      it->not_before : it->not_after));
	return r;
}

/* The head, then each family's header and one sample a call. */
static int metrics_more(void *state, struct text *out, int *ret_done, struct cv_errmsg *err)
{
	struct metrics_stream *s = state;
	const struct cv_inventory_item *it;
	int r;

	if (!s->head_sent) {
		s->head_sent = 1;
		if (text_append(out, s->head.buf, s->head.len) < 0)
			return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		text_release(&s->head);
		return 0;
	}
	if (s->family == FAMILY_DONE) {
		*ret_done = 1;
		return 0;
	}
	if (s->walk == NULL) {
		r = cv_vault_inventory_new(s->vault, s->now, families[s->family].what, METRICS_PAGE,
					   &s->walk, err);
		if (r < 0)
			return r;
		return family_header(out, s->family) < 0 ?
		       cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory") : 0;
	}
	r = cv_vault_inventory_next(s->walk, &it, err);
	if (r < 0)
		return r;
	if (r == 0) {
		cv_vault_inventory_free(s->walk);
		s->walk = NULL;
		s->family++;
		return 0;
	}
	return sample(out, s->family, s->node, it) < 0 ?
	       cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory") : 0;
}

/* Copies the exposition in (len bytes, whole lines) to out with node="node" as the first
 * label of every sample: a line "name{labels} value" becomes "name{node=\"..\",labels} value"
 * and "name value" becomes "name{node=\"..\"} value"; comments are copied as they are. One
 * place for the label, so no series of the head can miss it. */
static int with_node(struct text *out, const char *in, size_t len, const char *node)
{
	const char *line = in, *end = in + len, *eol, *rest;
	size_t name_len;
	int r = 0, more;

	while (r == 0 && line < end) {
		eol = memchr(line, '\n', (size_t)(end - line));
		eol = eol != NULL ? eol + 1 : end;
		if (*line == '#' || *line == '\n') {
			r = text_append(out, line, (size_t)(eol - line));
			line = eol;
			continue;
		}
		name_len = strcspn(line, "{ \n");
		if (line + name_len >= eol)
			return CV_ERR_INTERNAL; /* a sample line without its value */
		/* rest: the other labels and their closing brace, or the value. */
		rest = line + name_len;
		more = 0;
		if (*rest == '{') {
			rest++;
			if (*rest == '}')
				rest++;
			else
				more = 1;
		}
		r = text_append(out, line, name_len);
		if (r == 0)
			r = text_puts(out, "{node=\"");
		if (r == 0)
			r = text_prom_label_value(out, node);
		if (r == 0)
			r = text_puts(out, more ? "\"," : "\"}");
		if (r == 0)
			r = text_append(out, rest, (size_t)(eol - rest));
		line = eol;
	}
	return r;
}

struct sign_render {
	struct text *out;
	int r;
};

static void sign_count_render(const char *alg, int outcome, uint64_t n, void *arg)
{
	struct sign_render *sr = arg;

	sr->r |= text_printf(sr->out, "certvault_signatures_total{algorithm=\"%s\",outcome=\"%s\"} "
			     "%llu\n", alg, outcome == 0 ? "ok" : cv_http_error_code(outcome),
			     (unsigned long long)n);
}

static int head_render(struct cv_app *app, const struct cv_cert_counts *counts,
		       const int64_t origins[3], int64_t pending, struct text *out)
{
	static const char *const statuses[] = { "valid", "expires_soon", "expired", "upcoming" };
	const int64_t by_status[] = { counts->valid, counts->expires_soon, counts->expired,
				      counts->upcoming };
	struct cv_vault_health health;
	struct cv_store_sync_stats ss;
	struct cv_token_stats ts;
	size_t i;
	int r = 0;

	r |= text_puts(out, "# HELP certvault_certificates Certificates by status.\n"
			    "# TYPE certvault_certificates gauge\n");
	for (i = 0; i < 4; i++)
		r |= text_printf(out, "certvault_certificates{status=\"%s\"} %lld\n", statuses[i],
				 (long long)by_status[i]);
	r |= text_printf(out, "# HELP certvault_certificates_in_use Certificates a service "
			      "uses.\n# TYPE certvault_certificates_in_use gauge\n"
			      "certvault_certificates_in_use %lld\n", (long long)counts->in_use);
	/* Where the keys came from: generated in the token, imported, unwrapped in it. */
	r |= text_puts(out, "# HELP certvault_keys Current certificates' keys by how they "
			    "reached the token.\n# TYPE certvault_keys gauge\n");
	for (i = 0; i < 3; i++)
		r |= text_printf(out, "certvault_keys{origin=\"%s\"} %lld\n",
				 cv_key_origin_name((enum cv_key_origin)i), (long long)origins[i]);
	r |= text_printf(out, "# HELP certvault_certificates_pending Keys generated in the token "
			      "waiting for their certificate.\n"
			      "# TYPE certvault_certificates_pending gauge\n"
			      "certvault_certificates_pending %lld\n", (long long)pending);
	r |= http_stats_render(app->stats, out);
	/* Group commit: syncs fewer than commits when concurrent writes shared them. */
	cv_vault_store_sync_stats(&app->vault, &ss);
	r |= text_printf(out, "# HELP certvault_db_commits_total Database transactions "
			      "committed.\n# TYPE certvault_db_commits_total counter\n"
			      "certvault_db_commits_total %llu\n"
			      "# HELP certvault_db_wal_syncs_total fdatasyncs of the database's WAL "
			      "that made commits durable (several commits may share one).\n"
			      "# TYPE certvault_db_wal_syncs_total counter\n"
			      "certvault_db_wal_syncs_total %llu\n"
			      "# HELP certvault_db_checkpoints_total Complete checkpoints (the whole "
			      "WAL copied back into the database).\n"
			      "# TYPE certvault_db_checkpoints_total counter\n"
			      "certvault_db_checkpoints_total %llu\n",
			 (unsigned long long)ss.commits, (unsigned long long)ss.wal_syncs,
			 (unsigned long long)ss.checkpoints);
	/* Several nodes: whether other nodes' changes arrive by notification right now. */
	if (ss.listening >= 0)
		r |= text_printf(out, "# HELP certvault_db_listening 1 while PostgreSQL's "
				      "notifications of other nodes' changes reach this node (its "
				      "caches need no round trip), 0 while every request reads the "
				      "generations from the database.\n"
				      "# TYPE certvault_db_listening gauge\n"
				      "certvault_db_listening %d\n", ss.listening);
	{
		/* Signatures made for clients (issue 18 part 4): only the pairs seen so far. */
		struct sign_render sr = { out, 0 };

		r |= text_puts(out, "# HELP certvault_signatures_total Signatures asked of "
				    "POST .../sign, by algorithm and outcome (ok, or the error "
				    "code of the refusal).\n"
				    "# TYPE certvault_signatures_total counter\n");
		cv_vault_sign_counts(sign_count_render, &sr);
		r |= sr.r;
	}
	if (app->vault.token != NULL) {
		cv_vault_token_stats(&app->vault, &ts);
		r |= text_puts(out, "# HELP certvault_token_operations_total PKCS#11 calls made, "
				    "by operation.\n"
				    "# TYPE certvault_token_operations_total counter\n");
		for (i = 0; i < CV_TOKEN_OP_COUNT; i++)
			r |= text_printf(out, "certvault_token_operations_total{op=\"%s\"} %llu\n",
					 cv_token_op_name((enum cv_token_op)i),
					 (unsigned long long)ts.calls[i]);
		r |= text_puts(out, "# HELP certvault_token_errors_total PKCS#11 calls that "
				    "failed, by operation.\n"
				    "# TYPE certvault_token_errors_total counter\n");
		for (i = 0; i < CV_TOKEN_OP_COUNT; i++)
			r |= text_printf(out, "certvault_token_errors_total{op=\"%s\"} %llu\n",
					 cv_token_op_name((enum cv_token_op)i),
					 (unsigned long long)ts.errors[i]);
		r |= text_printf(out, "# HELP certvault_token_up Whether the token answers (1) or "
				      "not (0).\n# TYPE certvault_token_up gauge\n"
				      "certvault_token_up %d\n",
				 (cv_vault_health_get(&app->vault, &health), health.token_ok));
	}
	return r != 0 ? CV_ERR_NOMEM : 0;
}

int h_metrics(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	      struct cv_errmsg *err)
{
	struct metrics_stream *s = NULL;
	struct text head = { NULL, 0, 0 };
	struct cv_cert_counts counts;
	int64_t origins[3], pending = 0;
	int r;

	r = cv_vault_cert_count(&app->vault, req->now, &counts, err);
	if (r == 0)
		r = cv_vault_key_origin_counts(&app->vault, origins, err);
	if (r == 0)
		r = cv_vault_pending_count(&app->vault, &pending, err);
	if (r < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return CV_ERR_NOMEM;
	s->vault = &app->vault;
	s->node = app->cfg->node_name;
	s->now = req->now;
	r = head_render(app, &counts, origins, pending, &head);
	if (r == 0)
		r = with_node(&s->head, head.buf, head.len, s->node);
	text_release(&head);
	if (r < 0) {
		metrics_stream_free(s);
		return r;
	}
	return http_stream_respond(res, 200, "text/plain; version=0.0.4; charset=utf-8",
				   metrics_more, s, metrics_stream_free);
}
