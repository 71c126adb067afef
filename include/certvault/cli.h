/* The `certvault` command line and its `sync` deploy agent: a client of the HTTP API only
 * (libcurl and jansson), never of the store or the token. */
#ifndef CV_CLI_H
#define CV_CLI_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* Exit codes, as `certvault --help` documents them. */
enum cv_cli_exit {
	CV_CLI_OK = 0,
	CV_CLI_REFUSED = 1,     /* the API answered 4xx */
	CV_CLI_USAGE = 2,       /* bad arguments, an unreadable file, a config file unsafe */
	CV_CLI_UNAVAILABLE = 3, /* no connection, or the API answered 5xx */
};

/* Where and how to reach certvaultd. */
struct cv_cli_conn {
	char *url;    /* base URL, no trailing slash */
	char *token;  /* the access token (a secret: wiped when released); NULL: none */
	char *cacert; /* CA bundle for HTTPS; NULL: the system's */
	void *curl;   /* one CURL easy handle reused for every request (keep-alive) */
};

/* One answer of the API. body is NUL-terminated (binary exports may hold NULs; len counts
 * them); json is the parsed body when it was JSON, else NULL. */
struct cv_cli_response {
	long status;
	char *body;
	size_t len;
	json_t *json;
	char etag[160];
	char content_type[128];
};

/* Fills conn from, in order of precedence: the options given (any may be NULL), the
 * environment (CERTVAULT_URL, CERTVAULT_TOKEN) and the config file (config_path, or
 * $CERTVAULT_CONFIG, or $XDG_CONFIG_HOME/certvault/config, or ~/.config/certvault/config; an
 * INI file with url, token, token_file, cacert at its top or under [certvault]). A file that
 * holds a token (the config file with token=, a token file) is refused when its group or others
 * may read or write it. Returns CV_CLI_OK, or CV_CLI_USAGE with a message in err. */
int cv_cli_conn_init(struct cv_cli_conn *conn, const char *url, const char *token_file,
		     const char *cacert, const char *config_path, char *err, size_t errlen);

/* Frees what conn holds (the token wiped); conn may be zeroed or partly filled. */
void cv_cli_conn_release(struct cv_cli_conn *conn);

/* One request: method, path (already escaped, with its query), an optional JSON body or
 * multipart form (a curl_mime *), optional extra header lines (NULL-terminated). Fills res
 * (release it with cv_cli_response_release). Returns CV_CLI_OK when an answer came, whatever
 * its status, or CV_CLI_UNAVAILABLE with a message in err when none did. */
int cv_cli_request(struct cv_cli_conn *conn, const char *method, const char *path,
		   const json_t *body, void *mime, const char *const *headers,
		   struct cv_cli_response *res, char *err, size_t errlen);

void cv_cli_response_release(struct cv_cli_response *res);

/* The exit code an answer stands for: CV_CLI_OK for 2xx and 304, CV_CLI_REFUSED for 4xx,
 * CV_CLI_UNAVAILABLE for the rest. */
int cv_cli_exit_for_status(long status);

/* Appends the percent-encoding of s (RFC 3986 unreserved characters kept) to buf of size
 * len, NUL-terminated. Returns 0, or -1 when it would not fit. */
int cv_cli_escape(const char *s, char *buf, size_t len);

/* A table for people: headers and rows of cells (n_cols each, NULL cells print empty), with
 * columns aligned to their widest cell (counted in UTF-8 characters). status_col names the
 * column whose cells are statuses, coloured when colour is set (-1: none). Each cell is printed
 * with control characters replaced, so text from the server cannot move the cursor. */
void cv_cli_table_print(FILE *out, const char *const *headers, size_t n_cols,
			char *const *cells, size_t n_rows, int status_col, int colour);

/* An RFC 3339 time from the API as the reader's local time with its zone ("2026-12-06 11:02
 * CET"); when s does not parse, s itself. Writes into buf of size len. */
void cv_cli_local_time(const char *s, char *buf, size_t len);

/* Reads a whole file (at most max bytes) into a malloc'd, NUL-terminated buffer that the
 * caller releases with OPENSSL_clear_free (it may hold a key). Returns 0, or -1 with a message
 * in err. */
int cv_cli_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len, char *err,
		     size_t errlen);

/* Reads a secret: from file (one line, its line end dropped) when file is set, else at a
 * prompt on /dev/tty without echo. Returns 0 with a malloc'd string the caller releases with
 * OPENSSL_clear_free, or -1 with a message in err (no file and no terminal). */
int cv_cli_read_secret(const char *prompt, const char *file, char **ret, char *err,
		       size_t errlen);

/* Writes len bytes to path atomically (a temporary file in the same directory, fsync'd, then
 * renamed over it) with the given mode. Returns 0, or -1 with a message in err. */
int cv_cli_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
			char *err, size_t errlen);

/* The program: `certvault [global options] COMMAND [options] [arguments]`. */
int cv_cli_main(int argc, char **argv);

/* `certvault sync ...`, the deploy agent (its own options after the word sync). */
int cv_cli_sync(struct cv_cli_conn *conn, int argc, char **argv);

#endif
