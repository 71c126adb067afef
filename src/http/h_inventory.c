/* GET /v1/inventory?format=json|csv: every certificate and truststore entry with its key's
 * location and attributes as the token reports them now, streamed a row at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certvault/util.h"
#include "handlers.h"
#include "stream.h"

/* Rows read from the store at once: the most the walk holds. */
#define INVENTORY_PAGE 500

/* The columns of the CSV and the members of each JSON item, in this order. Each row is
 * made once as JSON and written in either format from it, so the two always agree. */
static const char *const columns[] = {
	"type", "kind", "name", "description", "subject", "issuer", "serial", "sha256_fingerprint",
	"key_type", "key_bits", "not_before", "not_after", "status", "version", "domains",
	"services", "environments", "tags", "jwks", "key_pkcs11_uri", "key_origin", "key_present",
	"key_sensitive",
	"key_extractable", "key_always_sensitive", "key_never_extractable", NULL,
};

enum format {
	FORMAT_JSON,
	FORMAT_CSV,
};

struct inventory_stream {
	struct cv_inventory *inv;
	const struct cv_inventory_item *item; /* the next to write; NULL: none left */
	enum format format;
	int begun;                 /* the header went out */
	int64_t count;
	char generated_at[CV_TIME_BUFLEN];
	struct cv_scope scope;     /* the caller's: the walk outlives the request */
};

static void inventory_stream_free(void *state)
{
	struct inventory_stream *s = state;

	if (s == NULL)
		return;
	cv_vault_inventory_free(s->inv);
	free(s);
}

/* The environments of the n services, each once, in the order the services come; a scoped
 * caller's rows name only the services inside its scope, and their environments. */
static json_t *distinct_environments(const struct cv_cert_usage *u, size_t n,
				     const struct cv_scope *scope)
{
	json_t *a = json_array();
	size_t i, j;

	for (i = 0; a != NULL && i < n; i++) {
		if (!cv_scope_usage_in(scope, &u[i]))
			continue;
		for (j = 0; j < i && (!cv_scope_usage_in(scope, &u[j]) ||
				      strcmp(u[j].environment, u[i].environment) != 0); j++)
			;
		if (j < i)
			continue;
		if (json_array_append_new(a, json_string(u[i].environment)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *services_json(const struct cv_cert_usage *u, size_t n,
			     const struct cv_scope *scope)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++) {
		if (cv_scope_usage_in(scope, &u[i]) &&
		    json_array_append_new(a, json_string(u[i].service)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* A key attribute: null for a truststore entry, and for every attribute but present when
 * the token holds no such key. */
static json_t *key_flag(const struct cv_inventory_item *it, int value)
{
	if (it->trusted_ca || !it->key.present)
		return json_null();
	return json_boolean(value);
}

/* Tags stored as "key=value", as an object. */
static json_t *inventory_tags_json(char *const *tags, size_t n)
{
	json_t *o = json_object();
	size_t i, klen;
	char *key;

	for (i = 0; o != NULL && i < n; i++) {
		klen = strcspn(tags[i], "=");
		key = strndup(tags[i], klen);
		if (key == NULL || tags[i][klen] != '=' ||
		    json_object_set_new(o, key, json_string(tags[i] + klen + 1)) < 0) {
			json_decref(o);
			o = NULL;
		}
		free(key);
	}
	return o;
}

static json_t *item_json(const struct cv_inventory_item *it, const struct cv_scope *scope)
{
	return json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:o,"
			 " s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
			 "type", it->trusted_ca ? "truststore" : "certificate",
			 /* A truststore entry is a certificate alone too. */
			 "kind", it->trusted_ca || it->is_public ? "public" : "key_pair",
			 "name", it->name,
			 "description", cv_text_json(it->description),
			 "subject", it->subject,
			 "issuer", it->issuer,
			 "serial", it->serial,
			 "sha256_fingerprint", it->sha256_fingerprint,
			 "key_type", it->key_type,
			 "key_bits", it->key_bits > 0 ? json_integer(it->key_bits) : json_null(),
			 "not_before", time_json(it->not_before),
			 "not_after", time_json(it->not_after),
			 "status", cv_status_name(it->status),
			 "version", it->trusted_ca ? json_null() : json_integer(it->version),
			 "domains", strings_json(it->domains, it->n_domains),
			 "services", services_json(it->used_by, it->n_used_by, scope),
			 "environments", distinct_environments(it->used_by, it->n_used_by, scope),
			 "tags", inventory_tags_json(it->tags, it->n_tags),
			 "jwks", strings_json(it->kids, it->n_kids),
			 "key_pkcs11_uri", it->trusted_ca || it->is_public ? json_null()
								   : json_string(it->key_uri),
			 "key_origin", string_or_null(it->key_origin),
			 "key_present", it->trusted_ca ? json_null() : json_boolean(it->key.present),
			 "key_sensitive", key_flag(it, it->key.sensitive),
			 "key_extractable", key_flag(it, it->key.extractable),
			 "key_always_sensitive", key_flag(it, it->key.always_sensitive),
			 "key_never_extractable", key_flag(it, it->key.never_extractable));
}

/* One CSV field from a JSON value: text as it is, numbers in decimal, true and false,
 * nothing for null, and the strings of an array separated by spaces (names, domains and
 * kids hold none). */
static int dump_to_text(const char *buf, size_t size, void *data)
{
	return text_append(data, buf, size) < 0 ? -1 : 0;
}

static int csv_value(struct text *out, const json_t *v)
{
	struct text joined = { 0 };
	const json_t *e;
	size_t i;
	int r = 0;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return text_csv_field(out, json_string_value(v));
	case JSON_INTEGER:
		return text_printf(out, "%lld", (long long)json_integer_value(v));
	case JSON_TRUE:
		return text_puts(out, "true");
	case JSON_FALSE:
		return text_puts(out, "false");
	case JSON_ARRAY:
		if (text_puts(&joined, "") < 0)
			return CV_ERR_NOMEM;
		json_array_foreach(v, i, e) {
			if ((i > 0 && text_puts(&joined, " ") < 0) ||
			    text_puts(&joined, json_is_string(e) ? json_string_value(e) : "") < 0) {
				r = CV_ERR_NOMEM;
				break;
			}
		}
		if (r == 0)
			r = text_csv_field(out, joined.buf);
		text_release(&joined);
		return r;
	case JSON_OBJECT:
		/* Tags: one cell of compact JSON, keys sorted, so that any value reads back. */
		if (text_puts(&joined, "") < 0 ||
		    json_dump_callback(v, dump_to_text, &joined, JSON_COMPACT | JSON_SORT_KEYS) < 0)
			r = CV_ERR_NOMEM;
		if (r == 0)
			r = text_csv_field(out, joined.buf);
		text_release(&joined);
		return r;
	default:
		return 0;
	}
}


static int write_header(struct inventory_stream *s, struct text *out)
{
	size_t i;

	if (s->format == FORMAT_JSON)
		return text_printf(out, "{\"generated_at\":\"%s\",\"items\":[", s->generated_at);
	for (i = 0; columns[i] != NULL; i++)
		if (text_puts(out, i > 0 ? "," : "") < 0 || text_csv_field(out, columns[i]) < 0)
			return CV_ERR_NOMEM;
	return text_puts(out, "\r\n");
}

static int write_item(struct inventory_stream *s, struct text *out)
{
	json_t *row = item_json(s->item, &s->scope);
	size_t i;
	int r = 0;

	if (row == NULL)
		return CV_ERR_NOMEM;
	if (s->format == FORMAT_JSON) {
		if ((s->count > 0 && text_puts(out, ",") < 0) ||
		    json_dump_callback(row, dump_to_text, out, JSON_COMPACT) < 0)
			r = CV_ERR_NOMEM;
	} else {
		for (i = 0; r == 0 && columns[i] != NULL; i++) {
			if (i > 0)
				r = text_puts(out, ",");
			if (r == 0)
				r = csv_value(out, json_object_get(row, columns[i]));
		}
		if (r == 0)
			r = text_puts(out, "\r\n");
	}
	json_decref(row);
	return r;
}

/* One piece: the header, then one row a call, then the end. */
static int inventory_more(void *state, struct text *out, int *ret_done, struct cv_errmsg *err)
{
	struct inventory_stream *s = state;
	int r;

	if (!s->begun) {
		s->begun = 1;
		return write_header(s, out) < 0 ? cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory")
						: 0;
	}
	if (s->item == NULL) {
		*ret_done = 1;
		/* The count at the end also tells a reader the document is whole. */
		if (s->format == FORMAT_JSON &&
		    text_printf(out, "],\"count\":%lld}\n", (long long)s->count) < 0)
			return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		return 0;
	}
	if (write_item(s, out) < 0)
		return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
	s->count++;
	r = cv_vault_inventory_next(s->inv, &s->item, err);
	if (r < 0)
		return r;
	if (r == 0)
		s->item = NULL;
	return 0;
}

int h_inventory(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err)
{
	struct inventory_stream *s = NULL;
	const char *format;
	char stamp[32];
	struct tm tm;
	time_t now = (time_t)req->now;
	int r;

	format = req_query(req, "format");
	if (format != NULL && strcmp(format, "json") != 0 && strcmp(format, "csv") != 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "format must be json or csv");
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return CV_ERR_NOMEM;
	s->format = format != NULL && strcmp(format, "csv") == 0 ? FORMAT_CSV : FORMAT_JSON;
	if (cv_time_rfc3339(req->now, s->generated_at, sizeof(s->generated_at)) < 0 ||
	    gmtime_r(&now, &tm) == NULL ||
	    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "the time cannot be shown");
		goto out;
	}
	r = cv_vault_inventory_new(&app->vault, req->now,
				   CV_INVENTORY_CERTIFICATES | CV_INVENTORY_TRUSTSTORE |
				   CV_INVENTORY_DETAILS, INVENTORY_PAGE, &s->inv, err);
	if (r < 0)
		goto out;
	s->scope = req->actor.scope;
	if (s->scope.scoped)
		cv_vault_inventory_scope(s->inv, &s->scope.objects);
	/* The first page is read before answering, so that a database or token that cannot
	 * answer gets its own status rather than a cut connection. */
	r = cv_vault_inventory_next(s->inv, &s->item, err);
	if (r < 0)
		goto out;
	if (r == 0)
		s->item = NULL;
	snprintf(res->disposition, sizeof(res->disposition),
		 "attachment; filename=\"certvault-inventory-%s.%s\"", stamp,
		 s->format == FORMAT_CSV ? "csv" : "json");
	r = http_stream_respond(res, 200,
				s->format == FORMAT_CSV ? "text/csv; charset=utf-8; header=present"
							: "application/json",
				inventory_more, s, inventory_stream_free);
	s = NULL; /* transferred, or freed on failure */
out:
	inventory_stream_free(s);
	return r;
}
