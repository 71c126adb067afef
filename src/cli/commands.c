/* cli: `certvault` — the commands, their options, and how each answer is shown. */
#include <getopt.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "certvault/cli.h"
#include "certvault/util.h"
#include "certvault/x509.h"

#define PATH_MAX_LEN 4096
#define ERR_LEN 512
#define MATERIAL_MAX (1024 * 1024)
#define MAX_DOMAINS 100
#define MAX_TAGS 32

/* Every option of every command, so that a global option may stand anywhere. */
enum opt_id {
	O_URL, O_TOKEN_FILE, O_CACERT, O_CONFIG, O_JSON, O_QUIET, O_YES, O_HELP,
	O_STATUS, O_SEARCH, O_IN_USE, O_DOMAIN, O_LIMIT,
	O_CERT, O_KEY, O_CHAIN, O_P12, O_PASSWORD_FILE, O_DESCRIPTION, O_JWK, O_CONFIRM,
	O_VERSION, O_FORMAT, O_OUTPUT, O_ENVIRONMENT, O_CERTIFICATE, O_USE, O_ALG, O_ROLE,
	O_EXPIRES, O_FILE, O_FROM_URL, O_KEEP, O_FROM, O_UNTIL, O_ACTOR, O_ACTION, O_TARGET,
	O_RENAME, O_TAG, O_CHECK_CHAIN, O_DISPLAY_NAME, O_SCOPE,
	O_KID, O_PREHASHED, O_BINARY, O_HEADER,
	O_COUNT
};

#define BIT(o) (UINT64_C(1) << (o))
#define GLOBAL_OPTS (BIT(O_URL) | BIT(O_TOKEN_FILE) | BIT(O_CACERT) | BIT(O_CONFIG) | \
		     BIT(O_JSON) | BIT(O_QUIET) | BIT(O_HELP))
#define SOURCE_OPTS (BIT(O_CERT) | BIT(O_KEY) | BIT(O_CHAIN) | BIT(O_P12) | \
		     BIT(O_PASSWORD_FILE) | BIT(O_CHECK_CHAIN))

/* getopt_long's values: clear of the short options and of the 1 that "-" mode returns for
 * an argument. */
#define OPT_VAL(o) ((o) + 256)

static const struct option long_options[] = {
	{ "url", required_argument, NULL, OPT_VAL(O_URL) },
	{ "token-file", required_argument, NULL, OPT_VAL(O_TOKEN_FILE) },
	{ "cacert", required_argument, NULL, OPT_VAL(O_CACERT) },
	{ "config", required_argument, NULL, OPT_VAL(O_CONFIG) },
	{ "json", no_argument, NULL, OPT_VAL(O_JSON) },
	{ "quiet", no_argument, NULL, OPT_VAL(O_QUIET) },
	{ "yes", no_argument, NULL, OPT_VAL(O_YES) },
	{ "help", no_argument, NULL, OPT_VAL(O_HELP) },
	{ "status", required_argument, NULL, OPT_VAL(O_STATUS) },
	{ "search", required_argument, NULL, OPT_VAL(O_SEARCH) },
	{ "in-use", required_argument, NULL, OPT_VAL(O_IN_USE) },
	{ "domain", required_argument, NULL, OPT_VAL(O_DOMAIN) },
	{ "limit", required_argument, NULL, OPT_VAL(O_LIMIT) },
	{ "cert", required_argument, NULL, OPT_VAL(O_CERT) },
	{ "key", required_argument, NULL, OPT_VAL(O_KEY) },
	{ "chain", required_argument, NULL, OPT_VAL(O_CHAIN) },
	{ "p12", required_argument, NULL, O_P12 },
	{ "password-file", required_argument, NULL, OPT_VAL(O_PASSWORD_FILE) },
	{ "description", required_argument, NULL, OPT_VAL(O_DESCRIPTION) },
	{ "jwk", required_argument, NULL, OPT_VAL(O_JWK) },
	{ "confirm", required_argument, NULL, OPT_VAL(O_CONFIRM) },
	{ "version", required_argument, NULL, OPT_VAL(O_VERSION) },
	{ "format", required_argument, NULL, OPT_VAL(O_FORMAT) },
	{ "output", required_argument, NULL, OPT_VAL(O_OUTPUT) },
	{ "environment", required_argument, NULL, OPT_VAL(O_ENVIRONMENT) },
	{ "certificate", required_argument, NULL, OPT_VAL(O_CERTIFICATE) },
	{ "use", required_argument, NULL, OPT_VAL(O_USE) },
	{ "alg", required_argument, NULL, OPT_VAL(O_ALG) },
	{ "role", required_argument, NULL, OPT_VAL(O_ROLE) },
	{ "expires-in-days", required_argument, NULL, OPT_VAL(O_EXPIRES) },
	{ "file", required_argument, NULL, OPT_VAL(O_FILE) },
	{ "from-url", required_argument, NULL, OPT_VAL(O_FROM_URL) },
	{ "keep", required_argument, NULL, OPT_VAL(O_KEEP) },
	{ "from", required_argument, NULL, OPT_VAL(O_FROM) },
	{ "until", required_argument, NULL, OPT_VAL(O_UNTIL) },
	{ "actor", required_argument, NULL, OPT_VAL(O_ACTOR) },
	{ "action", required_argument, NULL, OPT_VAL(O_ACTION) },
	{ "target", required_argument, NULL, OPT_VAL(O_TARGET) },
	{ "rename", required_argument, NULL, OPT_VAL(O_RENAME) },
	{ "tag", required_argument, NULL, OPT_VAL(O_TAG) },
	{ "check-chain", no_argument, NULL, OPT_VAL(O_CHECK_CHAIN) },
	{ "display-name", required_argument, NULL, OPT_VAL(O_DISPLAY_NAME) },
	{ "scope", required_argument, NULL, OPT_VAL(O_SCOPE) },
	{ "kid", required_argument, NULL, OPT_VAL(O_KID) },
	{ "prehashed", no_argument, NULL, OPT_VAL(O_PREHASHED) },
	{ "binary", no_argument, NULL, OPT_VAL(O_BINARY) },
	{ "header", required_argument, NULL, OPT_VAL(O_HEADER) },
	{ NULL, 0, NULL, 0 },
};

struct opts {
	const char *val[O_COUNT];
	uint64_t given;
	const char *domains[MAX_DOMAINS];
	size_t n_domains;
	const char *tags[MAX_TAGS];
	size_t n_tags;
	const char *scopes[4];     /* --scope KEY=V1,V2: actions, certificates, services,
				      environments */
	size_t n_scopes;
};

struct ctx {
	struct cv_cli_conn conn;
	struct opts o;
	int colour;
	char err[ERR_LEN];
};

typedef int (*cmd_fn)(struct ctx *c, int argc, char **argv);

struct command {
	const char *group;  /* "services", ... or NULL for a top-level command */
	const char *name;
	cmd_fn fn;
	int min_args, max_args;
	uint64_t options;   /* besides the global ones */
	const char *usage;
	const char *help;
};

static int has(const struct ctx *c, enum opt_id o)
{
	return (c->o.given & BIT(o)) != 0;
}

static const char *opt(const struct ctx *c, enum opt_id o)
{
	return c->o.val[o];
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("certvault: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (certvault --help)\n", stderr);
	return CV_CLI_USAGE;
}

/* Prints the API's refusal (code and message) on stderr; returns the exit code. */
static int api_error(const struct cv_cli_response *res)
{
	json_t *e = res->json != NULL ? json_object_get(res->json, "error") : NULL;
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *message = json_string_value(json_object_get(e, "message"));

	if (code != NULL)
		fprintf(stderr, "certvault: %s: %s\n", code, message != NULL ? message : "");
	else
		fprintf(stderr, "certvault: the server answered %ld\n", res->status);
	return cv_cli_exit_for_status(res->status);
}

/* Sends a request; on an answer that is not 2xx/304 prints the API's error. Returns the exit
 * code; *res is filled when an answer came (released by the caller in every case). */
static int call(struct ctx *c, const char *method, const char *path, const json_t *body,
		void *mime, const char *const *headers, struct cv_cli_response *res)
{
	int r = cv_cli_request(&c->conn, method, path, body, mime, headers, res, c->err,
			       sizeof(c->err));

	if (r != CV_CLI_OK) {
		fprintf(stderr, "certvault: cannot reach certvaultd: %s\n", c->err);
		return r;
	}
	if (cv_cli_exit_for_status(res->status) != CV_CLI_OK)
		return api_error(res);
	if (res->json == NULL && strstr(res->content_type, "json") != NULL) {
		fprintf(stderr, "certvault: the server's answer is not valid JSON\n");
		return CV_CLI_UNAVAILABLE;
	}
	return CV_CLI_OK;
}

/* Builds "/prefix/<escaped name>/suffix" into buf. */
static int make_path(char *buf, size_t len, const char *prefix, const char *name,
		     const char *suffix)
{
	size_t n;

	snprintf(buf, len, "%s", prefix);
	if (name != NULL && (cv_cli_escape(name, buf, len) < 0))
		return -1;
	n = strlen(buf);
	if (suffix != NULL && (size_t)snprintf(buf + n, len - n, "%s", suffix) >= len - n)
		return -1;
	return 0;
}

/* Appends "&key=value" (or "?key=value" first) to a path when value is set. */
static int add_query(char *buf, size_t len, const char *key, const char *value)
{
	size_t n = strlen(buf);

	if (value == NULL)
		return 0;
	if (n + strlen(key) + 2 >= len)
		return -1;
	snprintf(buf + n, len - n, "%c%s=", strchr(buf, '?') != NULL ? '&' : '?', key);
	return cv_cli_escape(value, buf, len);
}

/* --- showing answers --- */

static void print_json(const json_t *j)
{
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII);

	if (text != NULL)
		printf("%s\n", text);
	free(text);
}

/* The API's JSON as it came, for machines. */
static void print_raw(const struct cv_cli_response *res)
{
	fwrite(res->body, 1, res->len, stdout);
	if (res->len == 0 || res->body[res->len - 1] != '\n')
		fputc('\n', stdout);
}

enum col_kind { K_TEXT, K_TIME, K_LIST, K_USED_BY, K_DAYS, K_INT, K_BOOL, K_SCOPE };

struct column {
	const char *header;
	const char *path; /* dotted path into the item */
	enum col_kind kind;
};

static const json_t *json_path(const json_t *j, const char *path)
{
	char part[64];
	const char *dot;

	while (j != NULL && *path != '\0') {
		dot = strchr(path, '.');
		size_t n = dot != NULL ? (size_t)(dot - path) : strlen(path);
		if (n >= sizeof(part))
			return NULL;
		memcpy(part, path, n);
		part[n] = '\0';
		j = json_object_get(j, part);
		path += n + (dot != NULL);
	}
	return j;
}

/* The text of one cell, malloc'd (NULL for an empty cell). */
static char *cell_text(const json_t *item, const struct column *col)
{
	const json_t *v = json_path(item, col->path);
	char buf[256];
	size_t i;
	json_t *e;
	char *out = NULL, *grown;
	size_t len = 0;

	if (v == NULL || json_is_null(v))
		return NULL;
	switch (col->kind) {
	case K_TIME:
		cv_cli_local_time(json_string_value(v), buf, sizeof(buf));
		return strdup(buf);
	case K_DAYS:
		if (!json_is_integer(v))
			return NULL;
		snprintf(buf, sizeof(buf), "%lld days", (long long)json_integer_value(v));
		return strdup(buf);
	case K_INT:
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		return strdup(buf);
	case K_BOOL:
		return strdup(json_is_true(v) ? "yes" : "no");
	case K_SCOPE: {
		/* "read,bind certificates=shop-* environments=production"; "" when unscoped. */
		static const char *const keys[] = { "actions", "certificates", "services",
						    "environments", NULL };

		if (!json_is_object(v))
			return NULL;
		buf[0] = '\0';
		for (i = 0; keys[i] != NULL; i++) {
			const json_t *a = json_object_get(v, keys[i]);
			size_t k;

			if (!json_is_array(a))
				continue;
			len = strlen(buf);
			snprintf(buf + len, sizeof(buf) - len, "%s%s%s", len > 0 ? " " : "",
				 i > 0 ? keys[i] : "", i > 0 ? "=" : "");
			json_array_foreach(a, k, e) {
				len = strlen(buf);
				snprintf(buf + len, sizeof(buf) - len, "%s%s", k > 0 ? "," : "",
					 json_is_string(e) ? json_string_value(e) : "?");
			}
		}
		return strdup(buf);
	}
	case K_LIST:
	case K_USED_BY:
		json_array_foreach(v, i, e) {
			const char *s = col->kind == K_LIST ?
					json_string_value(e) :
					json_string_value(json_object_get(e, "service"));
			if (s == NULL)
				continue;
			size_t n = strlen(s);
			if ((grown = realloc(out, len + n + 3)) == NULL) {
				free(out);
				return NULL;
			}
			out = grown;
			if (len > 0) {
				memcpy(out + len, ", ", 2);
				len += 2;
			}
			memcpy(out + len, s, n);
			len += n;
			out[len] = '\0';
		}
		return out;
	case K_TEXT:
	default:
		if (json_is_string(v))
			return strdup(json_string_value(v));
		if (json_is_integer(v)) {
			snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
			return strdup(buf);
		}
		if (json_is_boolean(v))
			return strdup(json_is_true(v) ? "true" : "false");
		return NULL;
	}
}

/* items as a table (people), names only (-q: the first column), or nothing for --json. */
static void print_items(struct ctx *c, const json_t *items, const struct column *cols,
			size_t n_cols, int status_col)
{
	size_t n = json_array_size(items), i, k;
	const char *headers[32];
	char **cells;

	if (has(c, O_QUIET)) {
		for (i = 0; i < n; i++) {
			char *t = cell_text(json_array_get(items, i), &cols[0]);
			if (t != NULL)
				printf("%s\n", t);
			free(t);
		}
		return;
	}
	if ((cells = calloc(n * n_cols + 1, sizeof(*cells))) == NULL)
		return;
	for (k = 0; k < n_cols; k++)
		headers[k] = cols[k].header;
	for (i = 0; i < n; i++)
		for (k = 0; k < n_cols; k++)
			cells[i * n_cols + k] = cell_text(json_array_get(items, i), &cols[k]);
	cv_cli_table_print(stdout, headers, n_cols, cells, n, status_col, c->colour);
	for (i = 0; i < n * n_cols; i++)
		free(cells[i]);
	free(cells);
}

/* One object for people: "key: value" lines, nested objects as key.sub, arrays of scalars
 * joined, arrays of objects one line each. */
static void print_fields(const json_t *obj, const char *prefix, int width)
{
	const char *key;
	json_t *v;
	char name[128], buf[256];

	json_object_foreach((json_t *)obj, key, v) {
		snprintf(name, sizeof(name), "%s%s", prefix, key);
		if (json_is_object(v)) {
			char sub[132];
			snprintf(sub, sizeof(sub), "%s.", name);
			print_fields(v, sub, width);
			continue;
		}
		printf("%-*s ", width, name);
		if (json_is_string(v)) {
			const char *s = json_string_value(v);
			size_t l = strlen(s);
			/* Times as the reader's local time, the API's own text beside. */
			if (l >= 20 && s[4] == '-' && s[10] == 'T' &&
			    (strcmp(key + (strlen(key) > 3 ? strlen(key) - 3 : 0), "_at") == 0 ||
			     strncmp(key, "valid_", 6) == 0 || strncmp(key, "current_", 8) == 0)) {
				cv_cli_local_time(s, buf, sizeof(buf));
				printf("%s\n", buf);
			} else {
				for (; *s != '\0'; s++)
					putchar((unsigned char)*s < 0x20 ? ' ' : *s);
				putchar('\n');
			}
		} else if (json_is_array(v)) {
			size_t i;
			json_t *e;
			int first = 1;
			json_array_foreach(v, i, e) {
				char *t = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
				const char *s = json_is_string(e) ? json_string_value(e) : t;
				printf("%s%s", first ? "" : ", ", s != NULL ? s : "");
				first = 0;
				free(t);
			}
			putchar('\n');
		} else {
			char *t = json_dumps(v, JSON_ENCODE_ANY);
			printf("%s\n", t != NULL ? t : "");
			free(t);
		}
	}
}

static int show_object(struct ctx *c, const struct cv_cli_response *res)
{
	if (has(c, O_JSON))
		print_raw(res);
	else if (res->json != NULL)
		print_fields(res->json, "", 24);
	return CV_CLI_OK;
}

/* GETs a list, every page (following next_cursor) unless --limit, and shows its items. */
static int list_pages(struct ctx *c, const char *base_path, const struct column *cols,
		      size_t n_cols, int status_col, int paged)
{
	char path[PATH_MAX_LEN];
	struct cv_cli_response res;
	json_t *all = json_array(), *items;
	const char *cursor = NULL;
	char *cursor_copy = NULL;
	int64_t limit = -1;
	int r;

	if (all == NULL)
		return CV_CLI_UNAVAILABLE;
	if (has(c, O_LIMIT) && cv_parse_int64(opt(c, O_LIMIT), 1, 1000, &limit) < 0) {
		json_decref(all);
		return usage_error("--limit %s: a number from 1 to 1000", opt(c, O_LIMIT));
	}
	for (;;) {
		snprintf(path, sizeof(path), "%s", base_path);
		if (paged) {
			char lim[24];
			snprintf(lim, sizeof(lim), "%lld", (long long)(limit > 0 ? limit : 1000));
			add_query(path, sizeof(path), "limit", lim);
			add_query(path, sizeof(path), "cursor", cursor);
		}
		r = call(c, "GET", path, NULL, NULL, NULL, &res);
		if (r != CV_CLI_OK) {
			cv_cli_response_release(&res);
			goto out;
		}
		items = json_object_get(res.json, "items");
		if (!json_is_array(items)) {
			/* The public JWKS document: its "keys". */
			items = json_object_get(res.json, "keys");
		}
		if (items == NULL) {
			fprintf(stderr, "certvault: the answer holds no items\n");
			cv_cli_response_release(&res);
			r = CV_CLI_UNAVAILABLE;
			goto out;
		}
		json_array_extend(all, items);
		free(cursor_copy);
		cursor_copy = NULL;
		cursor = json_string_value(json_object_get(res.json, "next_cursor"));
		if (cursor != NULL)
			cursor_copy = strdup(cursor);
		cursor = cursor_copy;
		if (has(c, O_JSON) && (!paged || limit > 0 || cursor == NULL) &&
		    json_array_size(all) == json_array_size(items)) {
			/* One page: the API's JSON as it came. */
			print_raw(&res);
			cv_cli_response_release(&res);
			r = CV_CLI_OK;
			goto out;
		}
		cv_cli_response_release(&res);
		if (!paged || limit > 0 || cursor == NULL)
			break;
	}
	if (has(c, O_JSON)) {
		json_t *doc = json_pack("{s:O, s:n}", "items", all, "next_cursor");
		print_json(doc);
		json_decref(doc);
	} else {
		print_items(c, all, cols, n_cols, status_col);
	}
	r = CV_CLI_OK;
out:
	free(cursor_copy);
	json_decref(all);
	return r;
}

/* GET path and show the object. */
static int get_and_show(struct ctx *c, const char *path)
{
	struct cv_cli_response res;
	int r = call(c, "GET", path, NULL, NULL, NULL, &res);

	if (r == CV_CLI_OK)
		r = show_object(c, &res);
	cv_cli_response_release(&res);
	return r;
}

/* Sends a change and shows its answer: the object, or with -q nothing. */
static int change(struct ctx *c, const char *method, const char *path, const json_t *body,
		  void *mime)
{
	struct cv_cli_response res;
	int r = call(c, method, path, body, mime, NULL, &res);

	if (r == CV_CLI_OK && !has(c, O_QUIET))
		r = show_object(c, &res);
	cv_cli_response_release(&res);
	return r;
}

/* Writes an answer's body to --output (atomically) or stdout. */
static int write_out(struct ctx *c, const struct cv_cli_response *res)
{
	if (has(c, O_OUTPUT)) {
		if (cv_cli_write_atomic(opt(c, O_OUTPUT), res->body, res->len, 0644, c->err,
					sizeof(c->err)) < 0) {
			fprintf(stderr, "certvault: %s\n", c->err);
			return CV_CLI_USAGE;
		}
		return CV_CLI_OK;
	}
	if (fwrite(res->body, 1, res->len, stdout) != res->len)
		return CV_CLI_USAGE;
	return CV_CLI_OK;
}

/* --- confirmation --- */

/* Asks on the terminal for exactly `word`; returns 1 when typed, 0 otherwise. */
static int ask_word(const char *question, const char *word)
{
	FILE *tty = fopen("/dev/tty", "r+");
	char line[256];
	int ok = 0;

	if (tty == NULL)
		return 0;
	fprintf(tty, "%s\nType %s to confirm: ", question, word);
	fflush(tty);
	if (fgets(line, sizeof(line), tty) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		ok = strcmp(line, word) == 0;
	}
	fclose(tty);
	return ok;
}

/* The name confirmation a JWK choice needs: --confirm NAME, or typed at the terminal. */
static int confirm_name(struct ctx *c, const char *name, const char *question, json_t *body)
{
	if (has(c, O_CONFIRM)) {
		if (strcmp(opt(c, O_CONFIRM), name) != 0)
			return usage_error("--confirm %s: give the certificate's name again",
					   opt(c, O_CONFIRM));
	} else if (!isatty(STDIN_FILENO) || !ask_word(question, name)) {
		fprintf(stderr, "certvault: not confirmed: give --confirm %s, or type the name "
				"at the prompt\n", name);
		return CV_CLI_USAGE;
	}
	if (json_object_set_new(body, "confirm", json_string(name)) < 0)
		return CV_CLI_UNAVAILABLE;
	return CV_CLI_OK;
}

/* --- import material --- */

static int pem_is_encrypted(const char *text)
{
	return strstr(text, "ENCRYPTED PRIVATE KEY") != NULL ||
	       strstr(text, "Proc-Type: 4,ENCRYPTED") != NULL;
}

static int add_file_part(struct ctx *c, curl_mime *mime, const char *field, const char *path,
			 int *ret_encrypted)
{
	char *buf = NULL;
	size_t len = 0;
	curl_mimepart *part;
	const char *base = strrchr(path, '/');

	if (cv_cli_read_file(path, MATERIAL_MAX, &buf, &len, c->err, sizeof(c->err)) < 0) {
		fprintf(stderr, "certvault: %s\n", c->err);
		return CV_CLI_USAGE;
	}
	if (ret_encrypted != NULL)
		*ret_encrypted = pem_is_encrypted(buf);
	part = curl_mime_addpart(mime);
	/* curl copies the data: the copy is freed (not wiped) by curl_mime_free, so the
	 * process's own buffer at least is wiped here. */
	if (part == NULL || curl_mime_name(part, field) != CURLE_OK ||
	    curl_mime_filename(part, base != NULL ? base + 1 : path) != CURLE_OK ||
	    curl_mime_data(part, buf, len) != CURLE_OK) {
		OPENSSL_clear_free(buf, MATERIAL_MAX + 1);
		return CV_CLI_UNAVAILABLE;
	}
	OPENSSL_clear_free(buf, MATERIAL_MAX + 1);
	return CV_CLI_OK;
}

static int add_text_part(curl_mime *mime, const char *field, const char *value)
{
	curl_mimepart *part = curl_mime_addpart(mime);

	if (part == NULL || curl_mime_name(part, field) != CURLE_OK ||
	    curl_mime_data(part, value, CURL_ZERO_TERMINATED) != CURLE_OK)
		return CV_CLI_UNAVAILABLE;
	return CV_CLI_OK;
}

/* The form of an import, renew or replace: the files as an upload (the API recognises PEM,
 * DER and PKCS#12 by content), the password of an encrypted key or a PKCS#12 file from
 * --password-file or the terminal. */
static int material_form(struct ctx *c, curl_mime *mime)
{
	int encrypted = 0, r;
	char *password = NULL;

	if (has(c, O_P12) == has(c, O_CERT))
		return usage_error("%s", "give --cert FILE (with --key FILE) or --p12 FILE");
	if (has(c, O_P12) && (has(c, O_KEY) || has(c, O_CHAIN)))
		return usage_error("%s", "--p12 holds the key and chain: no --key or --chain");
	if (has(c, O_CERT) && !has(c, O_KEY) && !has(c, O_P12)) {
		/* A PEM bundle with the key inside is fine: the API finds it. */
	}
	if (has(c, O_P12)) {
		r = add_file_part(c, mime, "certificate", opt(c, O_P12), NULL);
		encrypted = 1;
	} else {
		r = add_file_part(c, mime, "certificate", opt(c, O_CERT), &encrypted);
		if (r == CV_CLI_OK && has(c, O_KEY))
			r = add_file_part(c, mime, "private_key", opt(c, O_KEY), &encrypted);
		if (r == CV_CLI_OK && has(c, O_CHAIN))
			r = add_file_part(c, mime, "chain", opt(c, O_CHAIN), NULL);
	}
	if (r != CV_CLI_OK)
		return r;
	if (encrypted || has(c, O_PASSWORD_FILE)) {
		if (cv_cli_read_secret(has(c, O_P12) ? "Password of the PKCS#12 file" :
						       "Password of the private key",
				       opt(c, O_PASSWORD_FILE), &password, c->err,
				       sizeof(c->err)) < 0) {
			fprintf(stderr, "certvault: %s\n", c->err);
			return CV_CLI_USAGE;
		}
		r = add_text_part(mime, "password", password);
		OPENSSL_clear_free(password, strlen(password));
		if (r != CV_CLI_OK)
			return r;
	}
	if (has(c, O_CHECK_CHAIN))
		return add_text_part(mime, "check_chain", "true");
	return CV_CLI_OK;
}

/* --- the commands --- */

static const struct column cert_cols[] = {
	{ "NAME", "name", K_TEXT },          { "DOMAIN", "domain", K_TEXT },
	{ "USED BY", "used_by", K_USED_BY }, { "STATUS", "status", K_TEXT },
	{ "EXPIRES IN", "expires_in_days", K_DAYS },
	{ "VALID TO", "valid_to", K_TIME },  { "UPDATED", "updated_at", K_TIME },
	{ "KEY", "key_type", K_TEXT },
};

static int cmd_ls(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN] = "/v1/certificates";

	(void)argc;
	(void)argv;
	if (add_query(path, sizeof(path), "status", opt(c, O_STATUS)) < 0 ||
	    add_query(path, sizeof(path), "q", opt(c, O_SEARCH)) < 0 ||
	    add_query(path, sizeof(path), "in_use", opt(c, O_IN_USE)) < 0 ||
	    add_query(path, sizeof(path), "domain", opt(c, O_DOMAIN)) < 0)
		return usage_error("%s", "filters too long");
	return list_pages(c, path, cert_cols, sizeof(cert_cols) / sizeof(cert_cols[0]), 3, 1);
}

static int cmd_show(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/certificates/", argv[0], NULL);
	return get_and_show(c, path);
}

static int cmd_summary(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return get_and_show(c, "/v1/certificates/summary");
}

static int cmd_health(struct ctx *c, int argc, char **argv)
{
	struct cv_cli_response res;
	int r;

	(void)argc;
	(void)argv;
	/* 503 still carries the health document: show it, then exit 3. */
	r = cv_cli_request(&c->conn, "GET", "/v1/health", NULL, NULL, NULL, &res, c->err,
			   sizeof(c->err));
	if (r != CV_CLI_OK) {
		fprintf(stderr, "certvault: cannot reach certvaultd: %s\n", c->err);
		return r;
	}
	if (res.json != NULL)
		show_object(c, &res);
	r = cv_cli_exit_for_status(res.status);
	cv_cli_response_release(&res);
	return r;
}

static int cmd_import(struct ctx *c, int argc, char **argv)
{
	curl_mime *mime = curl_mime_init(c->conn.curl);
	int r;

	(void)argc;
	if (mime == NULL)
		return CV_CLI_UNAVAILABLE;
	r = add_text_part(mime, "name", argv[0]);
	if (r == CV_CLI_OK && has(c, O_DESCRIPTION))
		r = add_text_part(mime, "description", opt(c, O_DESCRIPTION));
	/* Each --tag KEY=VALUE as the form's tags.KEY field; the server checks key and value. */
	for (size_t i = 0; r == CV_CLI_OK && i < c->o.n_tags; i++) {
		const char *eq = strchr(c->o.tags[i], '=');
		char field[128];

		if (eq == NULL || eq == c->o.tags[i] ||
		    (size_t)(eq - c->o.tags[i]) >= sizeof(field) - 5) {
			r = usage_error("--tag %s: KEY=VALUE", c->o.tags[i]);
			break;
		}
		snprintf(field, sizeof(field), "tags.%.*s", (int)(eq - c->o.tags[i]), c->o.tags[i]);
		r = add_text_part(mime, field, eq + 1);
	}
	if (r == CV_CLI_OK)
		r = material_form(c, mime);
	if (r == CV_CLI_OK)
		r = change(c, "POST", "/v1/certificates", NULL, mime);
	curl_mime_free(mime);
	return r;
}

/* renew and replace: the same material; a JWK choice when JWKs are linked. */
static int renew_or_replace(struct ctx *c, const char *name, const char *what)
{
	char path[PATH_MAX_LEN];
	curl_mime *mime = curl_mime_init(c->conn.curl);
	json_t *confirm = json_object();
	int r = CV_CLI_OK;

	if (mime == NULL || confirm == NULL) {
		r = CV_CLI_UNAVAILABLE;
		goto out;
	}
	if (has(c, O_JWK)) {
		const char *j = opt(c, O_JWK);
		if (strcmp(j, "update") != 0 && strcmp(j, "disconnect") != 0) {
			r = usage_error("--jwk %s: update or disconnect", j);
			goto out;
		}
		r = confirm_name(c, name,
				 strcmp(j, "update") == 0 ?
					 "The linked JWKs will follow the new key." :
					 "The linked JWKs will be disconnected from this certificate.",
				 confirm);
		if (r == CV_CLI_OK)
			r = add_text_part(mime, "jwk_action", j);
		if (r == CV_CLI_OK)
			r = add_text_part(mime, "confirm",
					  json_string_value(json_object_get(confirm, "confirm")));
	}
	if (r == CV_CLI_OK && has(c, O_VERSION))
		r = add_text_part(mime, "version", opt(c, O_VERSION));
	if (r == CV_CLI_OK)
		r = material_form(c, mime);
	if (r != CV_CLI_OK)
		goto out;
	make_path(path, sizeof(path), "/v1/certificates/", name, what);
	r = change(c, "POST", path, NULL, mime);
	if (r == CV_CLI_REFUSED && !has(c, O_JWK))
		fprintf(stderr, "certvault: if JWKs are linked, choose --jwk update or "
				"--jwk disconnect\n");
out:
	curl_mime_free(mime);
	json_decref(confirm);
	return r;
}

static int cmd_renew(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	return renew_or_replace(c, argv[0], "/renew");
}

static int cmd_replace(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	return renew_or_replace(c, argv[0], "/replace");
}

static int cmd_edit(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];
	json_t *body = json_object(), *tags = NULL;
	int r = CV_CLI_UNAVAILABLE;

	(void)argc;
	if (body == NULL)
		return r;
	if (has(c, O_DESCRIPTION) &&
	    json_object_set_new(body, "description", json_string(opt(c, O_DESCRIPTION))) < 0)
		goto out;
	if (has(c, O_RENAME) && json_object_set_new(body, "name", json_string(opt(c, O_RENAME))) < 0)
		goto out;
	if (c->o.n_tags > 0) {
		if ((tags = json_object()) == NULL)
			goto out;
		for (size_t i = 0; i < c->o.n_tags; i++) {
			const char *eq = strchr(c->o.tags[i], '=');
			char key[128];
			if (eq == NULL || eq == c->o.tags[i] ||
			    (size_t)(eq - c->o.tags[i]) >= sizeof(key)) {
				r = usage_error("--tag %s: KEY=VALUE", c->o.tags[i]);
				goto out;
			}
			snprintf(key, sizeof(key), "%.*s", (int)(eq - c->o.tags[i]), c->o.tags[i]);
			if (json_object_set_new(tags, key, json_string(eq + 1)) < 0)
				goto out;
		}
		json_object_set(body, "tags", tags);
	}
	if (c->o.n_domains > 0) {
		r = usage_error("%s", "edit takes no --domain");
		goto out;
	}
	if (json_object_size(body) == 0) {
		r = usage_error("%s", "nothing to change: --description, --rename or --tag");
		goto out;
	}
	make_path(path, sizeof(path), "/v1/certificates/", argv[0], NULL);
	r = change(c, "PATCH", path, body, NULL);
out:
	json_decref(tags);
	json_decref(body);
	return r;
}

static int cmd_rm(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];
	json_t *confirm = json_object();
	int r = CV_CLI_OK;

	(void)argc;
	if (confirm == NULL)
		return CV_CLI_UNAVAILABLE;
	if (!has(c, O_YES)) {
		char question[256];
		snprintf(question, sizeof(question),
			 "Delete certificate %.64s (recoverable until the retention ends, then its "
			 "keys are destroyed)?",
			 argv[0]);
		if (!isatty(STDIN_FILENO) || !ask_word(question, "delete")) {
			fprintf(stderr, "certvault: not deleted: type delete at the prompt, or give "
					"--yes\n");
			r = CV_CLI_USAGE;
			goto out;
		}
	}
	make_path(path, sizeof(path), "/v1/certificates/", argv[0], NULL);
	add_query(path, sizeof(path), "confirm", "delete");
	if (has(c, O_JWK)) {
		const char *j = opt(c, O_JWK);
		if (strcmp(j, "delete") != 0 && strcmp(j, "disconnect") != 0) {
			r = usage_error("--jwk %s: delete or disconnect", j);
			goto out;
		}
		r = confirm_name(c, argv[0],
				 strcmp(j, "delete") == 0 ? "The linked JWKs will be deleted too." :
							    "The linked JWKs will stay, disconnected.",
				 confirm);
		if (r != CV_CLI_OK)
			goto out;
		/* The API takes both confirmations in one "confirm": the name stands for both
		 * when JWKs are linked. */
		make_path(path, sizeof(path), "/v1/certificates/", argv[0], NULL);
		add_query(path, sizeof(path), "jwk_action", j);
		add_query(path, sizeof(path), "confirm", argv[0]);
	}
	r = change(c, "DELETE", path, NULL, NULL);
	if (r == CV_CLI_REFUSED && !has(c, O_JWK))
		fprintf(stderr, "certvault: if JWKs are linked, choose --jwk delete or "
				"--jwk disconnect\n");
out:
	json_decref(confirm);
	return r;
}

static const struct column deleted_cols[] = {
	{ "NAME", "name", K_TEXT },           { "DOMAIN", "domain", K_TEXT },
	{ "VERSION", "version", K_INT },      { "DELETED", "deleted_at", K_TIME },
	{ "BY", "deleted_by", K_TEXT },       { "PURGED FROM", "purge_after", K_TIME },
};

static int cmd_deleted_ls(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return list_pages(c, "/v1/deleted-certificates", deleted_cols,
			  sizeof(deleted_cols) / sizeof(deleted_cols[0]), -1, 0);
}

static int cmd_deleted_recover(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/deleted-certificates/", argv[0], "/recover");
	return change(c, "POST", path, NULL, NULL);
}

static int cmd_deleted_purge(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	/* A purge cannot be undone: the word is typed, or --yes says it was meant. */
	if (!has(c, O_YES)) {
		char question[256];
		snprintf(question, sizeof(question),
			 "Purge deleted certificate %.64s: destroy every version's key in the token"
			 " for good?", argv[0]);
		if (!isatty(STDIN_FILENO) || !ask_word(question, "purge")) {
			fprintf(stderr, "certvault: not purged: type purge at the prompt, or give "
					"--yes\n");
			return CV_CLI_USAGE;
		}
	}
	make_path(path, sizeof(path), "/v1/deleted-certificates/", argv[0], NULL);
	add_query(path, sizeof(path), "confirm", "purge");
	return change(c, "DELETE", path, NULL, NULL);
}

static int cmd_export(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];
	struct cv_cli_response res;
	int r;

	(void)argc;
	make_path(path, sizeof(path), "/v1/certificates/", argv[0], "/export");
	add_query(path, sizeof(path), "format", has(c, O_FORMAT) ? opt(c, O_FORMAT) : "pem");
	add_query(path, sizeof(path), "version", opt(c, O_VERSION));
	r = call(c, "GET", path, NULL, NULL, NULL, &res);
	if (r == CV_CLI_OK)
		r = write_out(c, &res);
	cv_cli_response_release(&res);
	return r;
}

/* --- sign --- */

#define SIGN_MANUAL                                                                            \
	"Signs FILE (standard input without --file, or with --file -) with a key certvault\n"  \
	"holds in its token, through the API (POST /v1/certificates/NAME/sign and\n"          \
	"POST /v1/jwks/KID/sign). The key and its PIN never reach this machine.\n"            \
	"\n"                                                                                   \
	"With a certificate's key (sign NAME):\n"                                             \
	"  --alg ALG      RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA, or\n"   \
	"                 rsa-pkcs1v15-sha256 rsa-pss-sha256 ecdsa-sha256 (and -sha384,\n"    \
	"                 -sha512) and ed25519; it must fit the key (ES256: P-256 only)\n"    \
	"  --prehashed    FILE is already the hash (as openssl dgst -binary makes it);\n"     \
	"                 without it the input is hashed here and only the hash is sent\n"    \
	"                 (EdDSA signs the message itself: at most 512 KiB)\n"               \
	"  --version N    the key of version N while it is still in the token\n"              \
	"  --format F     ECDSA only: raw (r||s, JOSE's) or der (what openssl reads)\n"       \
	"  --binary       the signature's bytes; without it, one line of base64\n"            \
	"\n"                                                                                   \
	"With a JWK's key (sign --kid KID): FILE is the payload of a compact JWS (at most\n"  \
	"768 KiB); --header '{\"typ\":\"JWT\"}' adds protected header members (alg and kid\n" \
	"are the JWK's). Prints the JWS.\n"                                                    \
	"\n"                                                                                   \
	"-o FILE writes the output to FILE (atomically) instead of standard output; --json\n"  \
	"prints the API's answer. Needs an operator or admin token (a scoped token: the\n"    \
	"sign action on that certificate). Every signature is in the audit trail.\n"          \
	"\n"                                                                                   \
	"Example:\n"                                                                           \
	"  certvault sign www --alg ecdsa-sha256 --file release.tar --binary -o release.sig\n"\
	"  certvault export www --format public-key -o pub.pem\n"                             \
	"  openssl dgst -sha256 -verify pub.pem -signature release.sig release.tar\n"         \
	"  (ecdsa-sha* answer DER, which openssl reads; ES* answer r||s, JOSE's form)\n"

/* The input to sign: FILE, or standard input ("-" or no --file). */
static FILE *sign_input(struct ctx *c)
{
	const char *path = opt(c, O_FILE);
	FILE *f;

	if (path == NULL || strcmp(path, "-") == 0)
		return stdin;
	f = fopen(path, "rb");
	if (f == NULL)
		usage_error("cannot read %s", path);
	return f;
}

/* Reads the whole input, at most max bytes (more is a usage error naming the limit, and
 * hint). */
static int sign_read_all(struct ctx *c, size_t max, const char *hint, unsigned char **ret,
			 size_t *ret_len)
{
	unsigned char *buf = malloc(max + 1);
	size_t len = 0, n;
	FILE *f;
	int r = CV_CLI_OK;

	*ret = NULL;
	*ret_len = 0;
	if (buf == NULL)
		return CV_CLI_UNAVAILABLE;
	f = sign_input(c);
	if (f == NULL) {
		free(buf);
		return CV_CLI_USAGE;
	}
	while (len <= max && (n = fread(buf + len, 1, max + 1 - len, f)) > 0)
		len += n;
	if (ferror(f))
		r = usage_error("%s", "the input could not be read");
	else if (len > max)
		r = usage_error("the input is longer than the %zu bytes it may have here%s", max,
				hint);
	if (f != stdin)
		fclose(f);
	if (r != CV_CLI_OK) {
		free(buf);
		return r;
	}
	*ret = buf;
	*ret_len = len;
	return CV_CLI_OK;
}

/* The hash of the whole input with md, streamed (no size limit). */
static int sign_hash_input(struct ctx *c, const EVP_MD *md, unsigned char *out,
			   unsigned int *out_len)
{
	unsigned char buf[65536];
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	size_t n;
	FILE *f;
	int ok;

	if (mc == NULL)
		return CV_CLI_UNAVAILABLE;
	f = sign_input(c);
	if (f == NULL) {
		EVP_MD_CTX_free(mc);
		return CV_CLI_USAGE;
	}
	ok = EVP_DigestInit_ex(mc, md, NULL) == 1;
	while (ok && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		ok = EVP_DigestUpdate(mc, buf, n) == 1;
	ok = ok && !ferror(f) && EVP_DigestFinal_ex(mc, out, out_len) == 1;
	if (f != stdin)
		fclose(f);
	EVP_MD_CTX_free(mc);
	return ok ? CV_CLI_OK : usage_error("%s", "the input could not be read");
}

/* Standard base64 of len bytes, malloc'd; url: base64url without padding (JWS). */
static char *sign_base64(const unsigned char *p, size_t len, int url)
{
	char *out = malloc((len + 2) / 3 * 4 + 1);
	size_t n, i;

	if (out == NULL)
		return NULL;
	n = (size_t)EVP_EncodeBlock((unsigned char *)out, p, (int)len);
	if (url) {
		while (n > 0 && out[n - 1] == '=')
			n--;
		out[n] = '\0';
		for (i = 0; i < n; i++)
			out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	}
	return out;
}

/* Writes text (and a line end) or bytes to -o FILE or standard output. */
static int sign_write(struct ctx *c, const void *data, size_t len, int line)
{
	char *joined = NULL;
	int r = CV_CLI_OK;

	if (line) {
		if ((joined = malloc(len + 1)) == NULL)
			return CV_CLI_UNAVAILABLE;
		memcpy(joined, data, len);
		joined[len++] = '\n';
		data = joined;
	}
	if (has(c, O_OUTPUT)) {
		if (cv_cli_write_atomic(opt(c, O_OUTPUT), data, len, 0644, c->err,
					sizeof(c->err)) < 0) {
			fprintf(stderr, "certvault: %s\n", c->err);
			r = CV_CLI_USAGE;
		}
	} else if (fwrite(data, 1, len, stdout) != len) {
		r = CV_CLI_USAGE;
	}
	free(joined);
	return r;
}

static int sign_jws(struct ctx *c)
{
	struct cv_cli_response res = { 0 };
	char path[PATH_MAX_LEN], *payload = NULL;
	unsigned char *in = NULL;
	json_t *body = NULL, *header = NULL;
	const char *jws;
	size_t len = 0;
	int r;

	if (has(c, O_ALG) || has(c, O_PREHASHED) || has(c, O_VERSION) || has(c, O_FORMAT) ||
	    has(c, O_BINARY))
		return usage_error("%s", "a JWK signs with its own alg and key: --kid takes "
				   "--file, --header and -o");
	if (has(c, O_HEADER)) {
		header = json_loads(opt(c, O_HEADER), JSON_REJECT_DUPLICATES, NULL);
		if (!json_is_object(header)) {
			json_decref(header);
			return usage_error("%s", "--header must be a JSON object, such as "
					   "'{\"typ\":\"JWT\"}'");
		}
	}
	/* The API takes 1 MiB of base64url: 768 KiB of payload. */
	r = sign_read_all(c, 768 * 1024, " (a JWS payload)", &in, &len);
	if (r == CV_CLI_OK && (payload = sign_base64(in, len, 1)) == NULL)
		r = CV_CLI_UNAVAILABLE;
	if (r == CV_CLI_OK) {
		body = json_pack("{s:s}", "payload", payload);
		if (body == NULL || (header != NULL &&
				     json_object_set(body, "header", header) < 0))
			r = CV_CLI_UNAVAILABLE;
	}
	if (r == CV_CLI_OK)
		r = make_path(path, sizeof(path), "/v1/jwks/", opt(c, O_KID), "/sign") < 0 ?
			    usage_error("%s", "the kid is too long") : CV_CLI_OK;
	if (r == CV_CLI_OK)
		r = call(c, "POST", path, body, NULL, NULL, &res);
	if (r == CV_CLI_OK) {
		jws = json_string_value(json_object_get(res.json, "jws"));
		if (has(c, O_JSON))
			print_raw(&res);
		else if (jws == NULL)
			r = usage_error("%s", "the server's answer carries no jws");
		else
			r = sign_write(c, jws, strlen(jws), 1);
	}
	cv_cli_response_release(&res);
	json_decref(body);
	json_decref(header);
	free(payload);
	free(in);
	return r;
}

static int cmd_sign(struct ctx *c, int argc, char **argv)
{
	struct cv_cli_response res = { 0 };
	const struct cv_sign_alg *alg = NULL;
	struct cv_errmsg why;
	char path[PATH_MAX_LEN], *b64 = NULL;
	unsigned char digest[EVP_MAX_MD_SIZE], *in = NULL, *sig = NULL;
	unsigned int digest_len = 0;
	const char *text;
	json_t *body = NULL;
	int64_t version = 0;
	size_t len = 0;
	int r, n;

	if (has(c, O_KID))
		return argc == 0 ? sign_jws(c)
				 : usage_error("%s", "sign NAME or sign --kid KID, not both");
	if (argc != 1)
		return usage_error("%s", "sign NAME --alg ALG, or sign --kid KID");
	if (has(c, O_HEADER))
		return usage_error("%s", "--header goes with --kid (a JWS)");
	if (!has(c, O_ALG))
		return usage_error("%s", "sign NAME needs --alg (RS256, PS256, ES256, EdDSA, ...)");
	if (cv_x509_sign_alg_find(opt(c, O_ALG), &alg, &why) < 0)
		return usage_error("--alg: %s", why.text);
	if (has(c, O_VERSION) && cv_parse_int64(opt(c, O_VERSION), 1, INT32_MAX, &version) < 0)
		return usage_error("%s", "--version takes a version number");
	if (has(c, O_FORMAT) && strcmp(opt(c, O_FORMAT), "raw") != 0 &&
	    strcmp(opt(c, O_FORMAT), "der") != 0)
		return usage_error("%s", "--format takes raw or der (ECDSA only)");
	body = json_pack("{s:s}", "algorithm", alg->name);
	if (body == NULL)
		return CV_CLI_UNAVAILABLE;
	if (alg->scheme == CV_SIGN_EDDSA) {
		/* Ed25519 signs the message itself: it goes whole. */
		if (has(c, O_PREHASHED))
			r = usage_error("%s", "EdDSA signs the message itself: no --prehashed");
		else
			r = sign_read_all(c, 512 * 1024, " (EdDSA signs the message itself)", &in,
					  &len);
		if (r == CV_CLI_OK && ((b64 = sign_base64(in, len, 0)) == NULL ||
				       json_object_set_new(body, "message", json_string(b64)) < 0))
			r = CV_CLI_UNAVAILABLE;
	} else if (has(c, O_PREHASHED)) {
		r = sign_read_all(c, EVP_MAX_MD_SIZE, " (--prehashed: the hash alone)", &in, &len);
		if (r == CV_CLI_OK && len != alg->digest_len)
			r = usage_error("%s wants a %zu-byte hash; the input has %zu bytes",
					alg->name, alg->digest_len, len);
		if (r == CV_CLI_OK && ((b64 = sign_base64(in, len, 0)) == NULL ||
				       json_object_set_new(body, "digest", json_string(b64)) < 0))
			r = CV_CLI_UNAVAILABLE;
	} else {
		/* Hashed here: only the hash travels, whatever the input's size. */
		r = sign_hash_input(c, EVP_get_digestbynid(alg->md_nid), digest, &digest_len);
		if (r == CV_CLI_OK && ((b64 = sign_base64(digest, digest_len, 0)) == NULL ||
				       json_object_set_new(body, "digest", json_string(b64)) < 0))
			r = CV_CLI_UNAVAILABLE;
	}
	if (r == CV_CLI_OK && version > 0 &&
	    json_object_set_new(body, "version", json_integer(version)) < 0)
		r = CV_CLI_UNAVAILABLE;
	if (r == CV_CLI_OK && has(c, O_FORMAT) &&
	    json_object_set_new(body, "format", json_string(opt(c, O_FORMAT))) < 0)
		r = CV_CLI_UNAVAILABLE;
	if (r == CV_CLI_OK)
		r = make_path(path, sizeof(path), "/v1/certificates/", argv[0], "/sign") < 0 ?
			    usage_error("%s", "the name is too long") : CV_CLI_OK;
	if (r == CV_CLI_OK)
		r = call(c, "POST", path, body, NULL, NULL, &res);
	if (r == CV_CLI_OK) {
		text = json_string_value(json_object_get(res.json, "signature"));
		if (has(c, O_JSON)) {
			print_raw(&res);
		} else if (text == NULL) {
			r = usage_error("%s", "the server's answer carries no signature");
		} else if (!has(c, O_BINARY)) {
			r = sign_write(c, text, strlen(text), 1);
		} else if ((sig = malloc(strlen(text) / 4 * 3 + 3)) == NULL) {
			r = CV_CLI_UNAVAILABLE;
		} else {
			len = strlen(text);
			n = EVP_DecodeBlock(sig, (const unsigned char *)text, (int)len);
			/* EVP_DecodeBlock counts the padding's zero bytes: take them off. */
			while (n > 0 && len > 0 && text[len - 1] == '=') {
				n--;
				len--;
			}
			r = n < 0 ? usage_error("%s", "the server's signature is not base64")
				  : sign_write(c, sig, (size_t)n, 0);
		}
	}
	cv_cli_response_release(&res);
	json_decref(body);
	free(b64);
	free(in);
	free(sig);
	return r;
}

static const struct column version_cols[] = {
	{ "VERSION", "version", K_INT },        { "CURRENT", "current", K_BOOL },
	{ "SERIAL", "serial_number", K_TEXT },  { "STATUS", "status", K_TEXT },
	{ "VALID TO", "valid_to", K_TIME },     { "CURRENT FROM", "current_from", K_TIME },
	{ "ENDED BY", "ended_by", K_TEXT },     { "KEY IN TOKEN", "key.in_token", K_BOOL },
};

static int cmd_versions(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];
	struct cv_cli_response res;
	int r;

	(void)argc;
	make_path(path, sizeof(path), "/v1/certificates/", argv[0], "/versions");
	r = call(c, "GET", path, NULL, NULL, NULL, &res);
	if (r == CV_CLI_OK) {
		if (has(c, O_JSON))
			print_raw(&res);
		else
			print_items(c, json_object_get(res.json, "versions"), version_cols,
				    sizeof(version_cols) / sizeof(version_cols[0]), 3);
	}
	cv_cli_response_release(&res);
	return r;
}

static const struct column service_cols[] = {
	{ "NAME", "name", K_TEXT },
	{ "ENVIRONMENT", "environment", K_TEXT },
	{ "DOMAINS", "domains", K_LIST },
	{ "CERTIFICATE", "certificate.name", K_TEXT },
	{ "VERSION", "certificate.version", K_INT },
	{ "STATUS", "certificate.status", K_TEXT },
	{ "VALID TO", "certificate.valid_to", K_TIME },
};

static int cmd_services_ls(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN] = "/v1/services";

	(void)argc;
	(void)argv;
	add_query(path, sizeof(path), "environment", opt(c, O_ENVIRONMENT));
	add_query(path, sizeof(path), "certificate", opt(c, O_CERTIFICATE));
	return list_pages(c, path, service_cols, sizeof(service_cols) / sizeof(service_cols[0]),
			  5, 1);
}

static int cmd_services_show(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/services/", argv[0], NULL);
	return get_and_show(c, path);
}

static int cmd_services_put(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];
	json_t *body, *domains = json_array();
	int r;

	(void)argc;
	if (!has(c, O_ENVIRONMENT) || c->o.n_domains == 0) {
		json_decref(domains);
		return usage_error("%s", "services put NAME --environment ENV --domain DNS "
					 "[--domain DNS ...]");
	}
	for (size_t i = 0; i < c->o.n_domains; i++)
		json_array_append_new(domains, json_string(c->o.domains[i]));
	body = json_pack("{s:s, s:o}", "environment", opt(c, O_ENVIRONMENT), "domains", domains);
	if (body == NULL)
		return CV_CLI_UNAVAILABLE;
	if (has(c, O_DESCRIPTION))
		json_object_set_new(body, "description", json_string(opt(c, O_DESCRIPTION)));
	make_path(path, sizeof(path), "/v1/services/", argv[0], NULL);
	r = change(c, "PUT", path, body, NULL);
	json_decref(body);
	return r;
}

static int cmd_services_rm(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/services/", argv[0], NULL);
	return change(c, "DELETE", path, NULL, NULL);
}

static int cmd_services_bind(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];
	json_t *body = json_pack("{s:s}", "certificate", argv[1]);
	int r;

	(void)argc;
	if (body == NULL)
		return CV_CLI_UNAVAILABLE;
	make_path(path, sizeof(path), "/v1/services/", argv[0], "/certificate");
	r = change(c, "PUT", path, body, NULL);
	json_decref(body);
	return r;
}

static int cmd_services_unbind(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/services/", argv[0], "/certificate");
	return change(c, "DELETE", path, NULL, NULL);
}

static const struct column environment_cols[] = {
	{ "NAME", "name", K_TEXT },
	{ "DISPLAY NAME", "display_name", K_TEXT },
	{ "SERVICES", "services", K_INT },
	{ "DESCRIPTION", "description", K_TEXT },
};

static int cmd_environments_ls(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return list_pages(c, "/v1/environments", environment_cols,
			  sizeof(environment_cols) / sizeof(environment_cols[0]), -1, 0);
}

static int cmd_environments_show(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/environments/", argv[0], NULL);
	return get_and_show(c, path);
}

static int cmd_environments_put(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];
	json_t *body = json_object();
	int r;

	(void)argc;
	if (body == NULL)
		return CV_CLI_UNAVAILABLE;
	if (has(c, O_DISPLAY_NAME))
		json_object_set_new(body, "display_name", json_string(opt(c, O_DISPLAY_NAME)));
	if (has(c, O_DESCRIPTION))
		json_object_set_new(body, "description", json_string(opt(c, O_DESCRIPTION)));
	make_path(path, sizeof(path), "/v1/environments/", argv[0], NULL);
	r = change(c, "PUT", path, body, NULL);
	json_decref(body);
	return r;
}

static int cmd_environments_rm(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/environments/", argv[0], NULL);
	return change(c, "DELETE", path, NULL, NULL);
}

static const struct column jwk_cols[] = {
	{ "KID", "kid", K_TEXT }, { "KTY", "kty", K_TEXT }, { "ALG", "alg", K_TEXT },
	{ "USE", "use", K_TEXT }, { "CRV", "crv", K_TEXT },
};

static int cmd_jwks_ls(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return list_pages(c, "/v1/jwks", jwk_cols, sizeof(jwk_cols) / sizeof(jwk_cols[0]), -1, 0);
}

static int cmd_jwks_create(struct ctx *c, int argc, char **argv)
{
	json_t *body;
	int r;

	(void)argc;
	body = json_pack("{s:s}", "certificate", argv[0]);
	if (body == NULL)
		return CV_CLI_UNAVAILABLE;
	if (has(c, O_USE))
		json_object_set_new(body, "use", json_string(opt(c, O_USE)));
	if (has(c, O_ALG))
		json_object_set_new(body, "alg", json_string(opt(c, O_ALG)));
	r = change(c, "POST", "/v1/jwks", body, NULL);
	json_decref(body);
	return r;
}

static int cmd_jwks_show(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/jwks/", argv[0], NULL);
	return get_and_show(c, path);
}

static int cmd_jwks_rm(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/jwks/", argv[0], NULL);
	return change(c, "DELETE", path, NULL, NULL);
}

static const struct column trust_cols[] = {
	{ "ALIAS", "alias", K_TEXT },       { "SUBJECT", "subject", K_TEXT },
	{ "STATUS", "status", K_TEXT },     { "VALID TO", "valid_to", K_TIME },
	{ "KEY", "key_description", K_TEXT }, { "SOURCE", "source", K_TEXT },
};

static int cmd_trust_ls(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return list_pages(c, "/v1/truststore", trust_cols, sizeof(trust_cols) / sizeof(trust_cols[0]),
			  2, 0);
}

static int cmd_trust_show(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/truststore/", argv[0], NULL);
	return get_and_show(c, path);
}

static int cmd_trust_add(struct ctx *c, int argc, char **argv)
{
	json_t *body;
	int r;

	(void)argc;
	if (has(c, O_FILE) == has(c, O_FROM_URL))
		return usage_error("%s", "trust add ALIAS --file FILE | --from-url URL");
	body = json_pack("{s:s}", "alias", argv[0]);
	if (body == NULL)
		return CV_CLI_UNAVAILABLE;
	if (has(c, O_FILE)) {
		/* A PEM bundle (several CAs become ALIAS-1, ALIAS-2, ...) or DER, as base64 when
		 * it is not text. */
		char *buf = NULL;
		size_t len = 0;
		if (cv_cli_read_file(opt(c, O_FILE), MATERIAL_MAX, &buf, &len, c->err,
				     sizeof(c->err)) < 0) {
			json_decref(body);
			fprintf(stderr, "certvault: %s\n", c->err);
			return CV_CLI_USAGE;
		}
		if (strstr(buf, "-----BEGIN") != NULL && strlen(buf) == len) {
			json_object_set_new(body, "certificate", json_stringn(buf, len));
		} else {
			size_t b64len = 4 * ((len + 2) / 3) + 1;
			char *b64 = malloc(b64len);
			if (b64 != NULL) {
				int n = EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)buf,
							(int)len);
				json_object_set_new(body, "certificate", json_stringn(b64, (size_t)n));
				json_object_set_new(body, "encoding", json_string("base64"));
			}
			free(b64);
		}
		free(buf);
		if (json_object_get(body, "certificate") == NULL) {
			json_decref(body);
			fprintf(stderr, "certvault: %s: not a certificate file\n", opt(c, O_FILE));
			return CV_CLI_USAGE;
		}
	} else {
		json_object_set_new(body, "url", json_string(opt(c, O_FROM_URL)));
		if (has(c, O_KEEP))
			json_object_set_new(body, "keep", json_string(opt(c, O_KEEP)));
	}
	r = change(c, "POST", "/v1/truststore", body, NULL);
	json_decref(body);
	return r;
}

static int cmd_trust_rm(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/truststore/", argv[0], NULL);
	return change(c, "DELETE", path, NULL, NULL);
}

static int cmd_trust_export(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN] = "/v1/truststore/export";
	struct cv_cli_response res;
	char *password = NULL;
	const char *format = has(c, O_FORMAT) ? opt(c, O_FORMAT) : "pem";
	int r;

	(void)argc;
	(void)argv;
	add_query(path, sizeof(path), "format", format);
	if (strcmp(format, "pkcs12") == 0) {
		if (cv_cli_read_secret("Password for the PKCS#12 truststore",
				       opt(c, O_PASSWORD_FILE), &password, c->err,
				       sizeof(c->err)) < 0) {
			fprintf(stderr, "certvault: %s\n", c->err);
			return CV_CLI_USAGE;
		}
		r = add_query(path, sizeof(path), "password", password);
		OPENSSL_clear_free(password, strlen(password));
		if (r < 0)
			return usage_error("%s", "password too long");
	}
	r = call(c, "GET", path, NULL, NULL, NULL, &res);
	OPENSSL_cleanse(path, sizeof(path));
	if (r == CV_CLI_OK)
		r = write_out(c, &res);
	cv_cli_response_release(&res);
	return r;
}

static const struct column audit_cols[] = {
	{ "SEQ", "seq", K_INT },          { "AT", "at", K_TIME },
	{ "ACTOR", "actor.name", K_TEXT }, { "ACTION", "action", K_TEXT },
	{ "TARGET", "target", K_TEXT },   { "OUTCOME", "outcome", K_TEXT },
	{ "ERROR", "error", K_TEXT },
};

static int cmd_audit_ls(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN] = "/v1/audit";

	(void)argc;
	(void)argv;
	add_query(path, sizeof(path), "from", opt(c, O_FROM));
	add_query(path, sizeof(path), "until", opt(c, O_UNTIL));
	add_query(path, sizeof(path), "actor", opt(c, O_ACTOR));
	add_query(path, sizeof(path), "action", opt(c, O_ACTION));
	add_query(path, sizeof(path), "target", opt(c, O_TARGET));
	return list_pages(c, path, audit_cols, sizeof(audit_cols) / sizeof(audit_cols[0]), 5, 1);
}

static int cmd_audit_verify(struct ctx *c, int argc, char **argv)
{
	struct cv_cli_response res;
	int r;

	(void)argc;
	(void)argv;
	r = call(c, "GET", "/v1/audit/verify", NULL, NULL, NULL, &res);
	if (r == CV_CLI_OK) {
		show_object(c, &res);
		/* A broken chain is the answer's news, not a transport failure: exit 1. */
		if (!json_is_true(json_object_get(res.json, "intact")))
			r = CV_CLI_REFUSED;
	}
	cv_cli_response_release(&res);
	return r;
}

static int cmd_inventory(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN] = "/v1/inventory";
	struct cv_cli_response res;
	int r;

	(void)argc;
	(void)argv;
	add_query(path, sizeof(path), "format", has(c, O_FORMAT) ? opt(c, O_FORMAT) : "json");
	r = call(c, "GET", path, NULL, NULL, NULL, &res);
	if (r == CV_CLI_OK)
		r = write_out(c, &res);
	cv_cli_response_release(&res);
	return r;
}

static const struct column token_cols[] = {
	{ "ID", "id", K_TEXT },           { "NAME", "name", K_TEXT },
	{ "ROLE", "role", K_TEXT },       { "STATE", "state", K_TEXT },
	{ "CREATED", "created_at", K_TIME }, { "EXPIRES", "expires_at", K_TIME },
	{ "LAST USED", "last_used_at", K_TIME }, { "FROM", "last_used_from", K_TEXT },
	{ "UNUSED", "unused", K_BOOL },      { "SCOPE", "scope", K_SCOPE },
};

/* --scope KEY=V1,V2 (repeatable, one per key) as the API's scope object: the server judges
 * the values (names, globs, actions) and says what is wrong with them. */
static int scope_of_options(const struct ctx *c, json_t **ret)
{
	static const char *const keys[] = { "actions", "certificates", "services",
					    "environments", NULL };
	json_t *scope = json_object(), *list;
	size_t i, k, len;
	const char *p, *eq;

	*ret = NULL;
	if (scope == NULL)
		return CV_CLI_UNAVAILABLE;
	for (i = 0; i < c->o.n_scopes; i++) {
		eq = strchr(c->o.scopes[i], '=');
		for (k = 0; eq != NULL && keys[k] != NULL; k++)
			if (strlen(keys[k]) == (size_t)(eq - c->o.scopes[i]) &&
			    strncmp(keys[k], c->o.scopes[i], strlen(keys[k])) == 0)
				break;
		if (eq == NULL || keys[k] == NULL || json_object_get(scope, keys[k]) != NULL) {
			json_decref(scope);
			return usage_error("--scope %s: KEY=V1,V2 with KEY one of actions, "
					   "certificates, services, environments, each once",
					   c->o.scopes[i]);
		}
		list = json_array();
		for (p = eq + 1; list != NULL && *p != '\0'; p += len + (p[len] == ',')) {
			len = strcspn(p, ",");
			json_array_append_new(list, json_stringn(p, len));
		}
		if (list == NULL || json_object_set_new(scope, keys[k], list) < 0) {
			json_decref(scope);
			return CV_CLI_UNAVAILABLE;
		}
	}
	*ret = scope;
	return CV_CLI_OK;
}

static int cmd_tokens_ls(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return list_pages(c, "/v1/tokens", token_cols, sizeof(token_cols) / sizeof(token_cols[0]),
			  3, 0);
}

static int cmd_tokens_create(struct ctx *c, int argc, char **argv)
{
	json_t *body;
	struct cv_cli_response res;
	int64_t days;
	int r;

	(void)argc;
	if (!has(c, O_ROLE))
		return usage_error("%s", "tokens create NAME --role admin|operator|auditor");
	body = json_pack("{s:s, s:s}", "name", argv[0], "role", opt(c, O_ROLE));
	if (body == NULL)
		return CV_CLI_UNAVAILABLE;
	if (has(c, O_EXPIRES)) {
		if (cv_parse_int64(opt(c, O_EXPIRES), 1, 3650, &days) < 0) {
			json_decref(body);
			return usage_error("--expires-in-days %s: 1 to 3650", opt(c, O_EXPIRES));
		}
		json_object_set_new(body, "expires_in_days", json_integer((json_int_t)days));
	}
	if (c->o.n_scopes > 0) {
		json_t *scope;

		r = scope_of_options(c, &scope);
		if (r != CV_CLI_OK) {
			json_decref(body);
			return r;
		}
		json_object_set_new(body, "scope", scope);
	}
	r = call(c, "POST", "/v1/tokens", body, NULL, NULL, &res);
	if (r == CV_CLI_OK) {
		const char *secret = json_string_value(json_object_get(res.json, "token"));
		if (has(c, O_JSON)) {
			print_raw(&res);
		} else if (has(c, O_QUIET)) {
			printf("%s\n", secret != NULL ? secret : "");
		} else {
			show_object(c, &res);
			fprintf(stderr, "certvault: the token is shown this once: keep it now\n");
		}
		OPENSSL_cleanse(res.body, res.len);
	}
	cv_cli_response_release(&res);
	json_decref(body);
	return r;
}

static int cmd_tokens_revoke(struct ctx *c, int argc, char **argv)
{
	char path[PATH_MAX_LEN];

	(void)argc;
	make_path(path, sizeof(path), "/v1/tokens/", argv[0], NULL);
	return change(c, "DELETE", path, NULL, NULL);
}

static int cmd_sync(struct ctx *c, int argc, char **argv)
{
	return cv_cli_sync(&c->conn, argc, argv);
}

#define LS_OPTS (BIT(O_STATUS) | BIT(O_SEARCH) | BIT(O_IN_USE) | BIT(O_DOMAIN) | BIT(O_LIMIT))
#define RENEW_OPTS (SOURCE_OPTS | BIT(O_JWK) | BIT(O_CONFIRM) | BIT(O_VERSION))

static const struct command commands[] = {
	{ NULL, "ls", cmd_ls, 0, 0, LS_OPTS,
	  "ls [--status S[,S]] [--search TEXT] [--in-use true|false] [--domain DNS] [--limit N]",
	  "list certificates (every page unless --limit)" },
	{ NULL, "show", cmd_show, 1, 1, 0, "show NAME", "a certificate's details" },
	{ NULL, "summary", cmd_summary, 0, 0, 0, "summary", "counts by status and use" },
	{ NULL, "import", cmd_import, 1, 1, SOURCE_OPTS | BIT(O_DESCRIPTION) | BIT(O_TAG),
	  "import NAME --cert FILE [--key FILE] [--chain FILE] | --p12 FILE "
	  "[--password-file FILE] [--description TEXT] [--tag KEY=VALUE]... [--check-chain]",
	  "import a certificate and its private key into the token" },
	{ NULL, "renew", cmd_renew, 1, 1, RENEW_OPTS,
	  "renew NAME --cert FILE --key FILE | --p12 FILE [--version N] "
	  "[--jwk update|disconnect [--confirm NAME]]",
	  "renew a certificate in use; every service using it switches at once" },
	{ NULL, "replace", cmd_replace, 1, 1, RENEW_OPTS,
	  "replace NAME --cert FILE --key FILE | --p12 FILE [--version N] "
	  "[--jwk update|disconnect [--confirm NAME]]",
	  "replace a certificate's content, in use or not" },
	{ NULL, "edit", cmd_edit, 1, 1, BIT(O_DESCRIPTION) | BIT(O_RENAME) | BIT(O_TAG),
	  "edit NAME [--description TEXT] [--rename NEW] [--tag KEY=VALUE ...]",
	  "change a certificate's metadata" },
	{ NULL, "rm", cmd_rm, 1, 1, BIT(O_YES) | BIT(O_JWK) | BIT(O_CONFIRM),
	  "rm NAME [--yes] [--jwk delete|disconnect [--confirm NAME]]",
	  "delete a certificate (kept for the retention, then purged with its keys; asks for"
	  " the word delete)" },
	{ NULL, "export", cmd_export, 1, 1, BIT(O_FORMAT) | BIT(O_OUTPUT) | BIT(O_VERSION),
	  "export NAME [--format pem|der|chain|public-key|jwk] [--version N] [-o FILE]",
	  "public material of a certificate" },
	{ NULL, "versions", cmd_versions, 1, 1, 0, "versions NAME", "a certificate's versions" },
	{ NULL, "sign", cmd_sign, 0, 1,
	  BIT(O_ALG) | BIT(O_KID) | BIT(O_FILE) | BIT(O_PREHASHED) | BIT(O_VERSION) |
		  BIT(O_FORMAT) | BIT(O_BINARY) | BIT(O_HEADER) | BIT(O_OUTPUT),
	  "sign NAME --alg ALG [--file FILE] [--prehashed] [--version N] [--format raw|der] "
	  "[--binary] [-o FILE] | sign --kid KID [--file FILE] [--header JSON] [-o FILE]",
	  "sign with a certificate's key or a JWK's, in the token (the key never leaves it)" },
	{ "deleted", "ls", cmd_deleted_ls, 0, 0, 0, "deleted ls",
	  "deleted certificates: when, by whom, when they are purged" },
	{ "deleted", "recover", cmd_deleted_recover, 1, 1, 0, "deleted recover NAME",
	  "bring a deleted certificate back as it was" },
	{ "deleted", "purge", cmd_deleted_purge, 1, 1, BIT(O_YES), "deleted purge NAME [--yes]",
	  "destroy a deleted certificate's keys now (admin; asks for the word purge)" },
	{ "services", "ls", cmd_services_ls, 0, 0,
	  BIT(O_ENVIRONMENT) | BIT(O_CERTIFICATE) | BIT(O_LIMIT),
	  "services ls [--environment ENV] [--certificate NAME]", "list services" },
	{ "services", "show", cmd_services_show, 1, 1, 0, "services show NAME", "one service" },
	{ "services", "put", cmd_services_put, 1, 1,
	  BIT(O_ENVIRONMENT) | BIT(O_DOMAIN) | BIT(O_DESCRIPTION),
	  "services put NAME --environment ENV --domain DNS [--domain DNS ...] "
	  "[--description TEXT]",
	  "create or change a service" },
	{ "services", "rm", cmd_services_rm, 1, 1, 0, "services rm NAME", "delete a service" },
	{ "services", "bind", cmd_services_bind, 2, 2, 0, "services bind NAME CERTIFICATE",
	  "the service uses the certificate (it must cover every domain)" },
	{ "services", "unbind", cmd_services_unbind, 1, 1, 0, "services unbind NAME",
	  "the service uses no certificate" },
	{ "environments", "ls", cmd_environments_ls, 0, 0, 0, "environments ls",
	  "environments (a service belongs to one)" },
	{ "environments", "show", cmd_environments_show, 1, 1, 0, "environments show NAME",
	  "one environment" },
	{ "environments", "put", cmd_environments_put, 1, 1,
	  BIT(O_DISPLAY_NAME) | BIT(O_DESCRIPTION),
	  "environments put NAME [--display-name TEXT] [--description TEXT]",
	  "create or change an environment" },
	{ "environments", "rm", cmd_environments_rm, 1, 1, 0, "environments rm NAME",
	  "delete an environment no service uses" },
	{ "jwks", "ls", cmd_jwks_ls, 0, 0, 0, "jwks ls", "the public JWKS" },
	{ "jwks", "create", cmd_jwks_create, 1, 1, BIT(O_USE) | BIT(O_ALG),
	  "jwks create CERTIFICATE [--use sig|enc] [--alg ALG]", "a JWK from a certificate" },
	{ "jwks", "show", cmd_jwks_show, 1, 1, 0, "jwks show KID", "one JWK with its link" },
	{ "jwks", "rm", cmd_jwks_rm, 1, 1, 0, "jwks rm KID", "delete a JWK" },
	{ "trust", "ls", cmd_trust_ls, 0, 0, 0, "trust ls", "the truststore" },
	{ "trust", "show", cmd_trust_show, 1, 1, 0, "trust show ALIAS", "one trusted CA" },
	{ "trust", "add", cmd_trust_add, 1, 1, BIT(O_FILE) | BIT(O_FROM_URL) | BIT(O_KEEP),
	  "trust add ALIAS --file FILE | --from-url https://HOST:PORT [--keep top|all|N]",
	  "trust CA certificates (a bundle becomes ALIAS-1, ALIAS-2, ...)" },
	{ "trust", "rm", cmd_trust_rm, 1, 1, 0, "trust rm ALIAS", "remove a trusted CA" },
	{ "trust", "export", cmd_trust_export, 0, 0,
	  BIT(O_FORMAT) | BIT(O_OUTPUT) | BIT(O_PASSWORD_FILE),
	  "trust export [--format pem|pkcs12] [--password-file FILE] [-o FILE]",
	  "the truststore as a PEM bundle or a PKCS#12 file" },
	{ "audit", "ls", cmd_audit_ls, 0, 0,
	  BIT(O_FROM) | BIT(O_UNTIL) | BIT(O_ACTOR) | BIT(O_ACTION) | BIT(O_TARGET) | BIT(O_LIMIT),
	  "audit ls [--from TIME] [--until TIME] [--actor NAME] [--action A] [--target T] "
	  "[--limit N]",
	  "the audit trail" },
	{ "audit", "verify", cmd_audit_verify, 0, 0, 0, "audit verify",
	  "walk the audit chain (exit 1 when it is broken)" },
	{ NULL, "inventory", cmd_inventory, 0, 0, BIT(O_FORMAT) | BIT(O_OUTPUT),
	  "inventory [--format json|csv] [-o FILE]", "the compliance inventory" },
	{ "tokens", "ls", cmd_tokens_ls, 0, 0, 0, "tokens ls", "API access tokens" },
	{ "tokens", "create", cmd_tokens_create, 1, 1, BIT(O_ROLE) | BIT(O_EXPIRES) | BIT(O_SCOPE),
	  "tokens create NAME --role admin|operator|auditor [--expires-in-days N] "
	  "[--scope actions=read,bind] [--scope certificates=GLOB,..] [--scope services=GLOB,..] "
	  "[--scope environments=NAME,..]",
	  "a new access token (shown once; -q prints only the token)" },
	{ "tokens", "revoke", cmd_tokens_revoke, 1, 1, 0, "tokens revoke ID", "revoke a token" },
	{ NULL, "health", cmd_health, 0, 0, 0, "health", "database and token state" },
	{ NULL, "sync", cmd_sync, 0, -1, 0,
	  "sync --service NAME --dir DIR [--format nginx|haproxy|pem] [--exec CMD] "
	  "[--interval 30s] [--once]",
	  "keep a server's files in step with its service's certificate (certvault sync --help)" },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* What `certvault COMMAND --help` prints after the usage line, for the commands that need
 * more than a line (the manual page of each). */
static const struct {
	cmd_fn fn;
	const char *text;
} manuals[] = {
	{ cmd_sign, SIGN_MANUAL },
};

static void print_help(FILE *out)
{
	fputs("usage: certvault [--url URL] [--token-file FILE] [--cacert FILE] [--config FILE]\n"
	      "                 [--json | -q] COMMAND [options] [arguments]\n\n"
	      "Commands:\n",
	      out);
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-60s %s\n", commands[i].usage, commands[i].help);
	fputs("\nConnection: --url or CERTVAULT_URL (default http://127.0.0.1:8420); the access\n"
	      "token from --token-file, CERTVAULT_TOKEN, or the config file\n"
	      "(~/.config/certvault/config: url, token or token_file, cacert), never from an\n"
	      "argument. A file holding a token must not be readable by group or others.\n"
	      "Passwords come from --password-file or a prompt.\n\n"
	      "Output: a table on a terminal, --json for the API's JSON, -q for names only.\n"
	      "Short options go one per word (-q -y, -o FILE): a word such as -uEt5j is an\n"
	      "argument, as JWK ids may begin with \"-\"; \"--\" ends the options.\n\n"
	      "Exit codes: 0 done; 1 refused by the API (4xx, printed as code: message);\n"
	      "2 usage (bad arguments, unreadable file, unsafe config); 3 cannot connect, or the\n"
	      "server failed (5xx).\n",
	      out);
}

/* A word of one dash and more than one letter: an argument (see cv_cli_main). */
static bool dash_word(const char *w)
{
	return w[0] == '-' && w[1] != '-' && w[1] != '\0' && w[2] != '\0';
}

/* The word as given for the one getopt saw (dash_word's without their dash). */
static char *as_given(char *seen, char **scan, char **given, int n)
{
	for (int i = 0; seen != NULL && i < n; i++)
		if (seen == scan[i])
			return given[i];
	return seen;
}

static const struct command *find_command(int argc, char **argv, int *ret_used)
{
	for (size_t i = 0; i < N_COMMANDS; i++) {
		const struct command *cmd = &commands[i];
		if (cmd->group == NULL) {
			if (argc >= 1 && strcmp(argv[0], cmd->name) == 0) {
				*ret_used = 1;
				return cmd;
			}
		} else if (argc >= 2 && strcmp(argv[0], cmd->group) == 0 &&
			   strcmp(argv[1], cmd->name) == 0) {
			*ret_used = 2;
			return cmd;
		}
	}
	return NULL;
}

int cv_cli_main(int argc, char **argv)
{
	struct ctx c;
	const struct command *cmd;
	char **words = NULL, **scan = NULL;
	int n_words = 0, used = 0, r, i;

	memset(&c, 0, sizeof(c));
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		fprintf(stderr, "certvault: libcurl cannot start\n");
		return CV_CLI_UNAVAILABLE;
	}
	/* Global options come before the command; the command's own options after it. "sync"
	 * parses its own. */
	if ((words = calloc((size_t)argc + 1, sizeof(*words))) == NULL) {
		r = CV_CLI_UNAVAILABLE;
		goto out;
	}
	/* First the global options before the command word. */
	opterr = 0;
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, "+qo:y", long_options, NULL)) != -1) {
		if (ch == 'q')
			ch = OPT_VAL(O_QUIET);
		if (ch == '?' || ch < 256) {
			r = usage_error("unknown option %s", argv[optind - 1]);
			goto out;
		}
		ch -= 256;
		if ((BIT(ch) & GLOBAL_OPTS) == 0) {
			r = usage_error("%s goes after the command", argv[optind - 1]);
			goto out;
		}
		c.o.val[ch] = optarg;
		c.o.given |= BIT(ch);
	}
	if (optind >= argc) {
		print_help(has(&c, O_HELP) ? stdout : stderr);
		r = has(&c, O_HELP) ? CV_CLI_OK : CV_CLI_USAGE;
		goto out;
	}
	cmd = find_command(argc - optind, argv + optind, &used);
	if (cmd == NULL) {
		r = usage_error("unknown command %s", argv[optind]);
		goto out;
	}
	int first = optind + used;
	if (cmd->fn == cmd_sync) {
		r = cv_cli_conn_init(&c.conn, opt(&c, O_URL), opt(&c, O_TOKEN_FILE),
				     opt(&c, O_CACERT), opt(&c, O_CONFIG), c.err, sizeof(c.err));
		if (r != CV_CLI_OK) {
			fprintf(stderr, "certvault: %s\n", c.err);
			goto out;
		}
		/* argv[first - 1] is "sync": the agent's getopt starts after it. */
		r = cv_cli_sync(&c.conn, argc - first + 1, argv + first - 1);
		goto out;
	}
	/* The command's own options and arguments, in any order. Short options are one per word
	 * (-q, -y, -o FILE): a word of one dash and more than one letter is an argument, since
	 * names and JWK ids (base64url) may begin with "-". getopt sees such a word without its
	 * dash and as_given() gives it back whole. */
	{
		int sub_argc = argc - first + 1;
		char **sub_argv = argv + first - 1;
		if ((scan = calloc((size_t)sub_argc + 1, sizeof(*scan))) == NULL) {
			r = CV_CLI_UNAVAILABLE;
			goto out;
		}
		for (i = 0; i < sub_argc; i++)
			scan[i] = dash_word(sub_argv[i]) ? sub_argv[i] + 1 : sub_argv[i];
		opterr = 0;
		optind = 0; /* glibc: 0 starts a new scan, with this optstring's "-" */
		while ((ch = getopt_long(sub_argc, scan, "-qo:y", long_options, NULL)) != -1) {
			optarg = as_given(optarg, scan, sub_argv, sub_argc);
			if (ch == 1) { /* an argument */
				words[n_words++] = optarg;
				continue;
			}
			if (ch >= 256)
				ch -= 256;
			else if (ch == 'q')
				ch = O_QUIET;
			else if (ch == 'o')
				ch = O_OUTPUT;
			else if (ch == 'y')
				ch = O_YES;
			else if (ch == '?') {
				r = usage_error("unknown option %s", sub_argv[optind - 1]);
				goto out;
			} else if (ch == ':') {
				r = usage_error("option %s needs a value", sub_argv[optind - 1]);
				goto out;
			}
			if (((GLOBAL_OPTS | cmd->options) & BIT(ch)) == 0) {
				r = usage_error("option %s does not go with this command",
						sub_argv[optind - 1]);
				goto out;
			}
			if (ch == O_DOMAIN) {
				if (c.o.n_domains == MAX_DOMAINS) {
					r = usage_error("%s", "at most 100 --domain");
					goto out;
				}
				c.o.domains[c.o.n_domains++] = optarg;
			}
			if (ch == O_SCOPE) {
				if (c.o.n_scopes == 4) {
					r = usage_error("%s", "at most 4 --scope (actions, "
							"certificates, services, environments)");
					goto out;
				}
				c.o.scopes[c.o.n_scopes++] = optarg;
			}
			if (ch == O_TAG) {
				if (c.o.n_tags == MAX_TAGS) {
					r = usage_error("%s", "at most 32 --tag");
					goto out;
				}
				c.o.tags[c.o.n_tags++] = optarg;
			}
			c.o.val[ch] = optarg;
			c.o.given |= BIT(ch);
		}
		for (i = optind; i < sub_argc; i++) /* after "--" */
			words[n_words++] = as_given(scan[i], scan, sub_argv, sub_argc);
	}
	if (has(&c, O_HELP)) {
		printf("usage: certvault %s\n  %s\n", cmd->usage, cmd->help);
		for (i = 0; i < (int)(sizeof(manuals) / sizeof(manuals[0])); i++)
			if (manuals[i].fn == cmd->fn)
				printf("\n%s", manuals[i].text);
		r = CV_CLI_OK;
		goto out;
	}
	if (n_words < cmd->min_args || (cmd->max_args >= 0 && n_words > cmd->max_args)) {
		r = usage_error("usage: certvault %s", cmd->usage);
		goto out;
	}
	if (has(&c, O_JSON) && has(&c, O_QUIET)) {
		r = usage_error("%s", "--json or -q, not both");
		goto out;
	}
	r = cv_cli_conn_init(&c.conn, opt(&c, O_URL), opt(&c, O_TOKEN_FILE), opt(&c, O_CACERT),
			     opt(&c, O_CONFIG), c.err, sizeof(c.err));
	if (r != CV_CLI_OK) {
		fprintf(stderr, "certvault: %s\n", c.err);
		goto out;
	}
	c.colour = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
	r = cmd->fn(&c, n_words, words);
	fflush(stdout);
out:
	cv_cli_conn_release(&c.conn);
	free(scan);
	free(words);
	curl_global_cleanup();
	return r;
}
