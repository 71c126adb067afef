/* cli: `certvault sync`, the deploy agent. It keeps a server's files in step with the
 * certificate its service uses in the vault: the chain, the key's PKCS#11 URI (never a key:
 * the key stays in the token) and, for nginx, an include snippet; each write atomic, the
 * previous files kept as .prev, the reload command run only on a change and the files put
 * back when it fails. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "certvault/cli.h"
#include "certvault/util.h"

#define ERR_LEN 512
#define PATH_LEN 4096
#define WAIT_SECONDS 60

enum format { F_PEM, F_NGINX };

struct agent {
	struct cv_cli_conn *conn;
	const char *service, *dir, *exec, *pin_source;
	enum format format;
	int64_t interval;
	int once, long_poll;
	char service_etag[160];
	char fingerprint[96]; /* the SHA-256 of the leaf now in the files */
	char err[ERR_LEN];
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void say(const struct agent *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(const struct agent *a, const char *fmt, ...)
{
	va_list ap;
	char when[32];
	time_t now = time(NULL);
	struct tm tm;

	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S%z", localtime_r(&now, &tm));
	fprintf(stderr, "%s certvault sync: service %s: ", when, a->service);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The files the agent writes, by kind. */
static void file_path(const struct agent *a, const char *suffix, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s%s", a->dir, a->service, suffix);
}

static const char *const suffixes[] = { ".crt", ".key.uri", ".nginx.conf" };
#define N_FILES(a) ((a)->format == F_NGINX ? 3 : 2)

/* The SHA-256 fingerprint (colon-separated hex, as the API gives it) of the first
 * certificate of a PEM text. */
static int leaf_fingerprint(const char *pem, size_t len, char *buf, size_t buflen)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	int r = -1;

	if (x != NULL && X509_digest(x, EVP_sha256(), md, &n) == 1 && buflen >= n * 3) {
		for (unsigned int i = 0; i < n; i++)
			snprintf(buf + i * 3, buflen - i * 3, "%02X%s", md[i], i + 1 < n ? ":" : "");
		r = 0;
	}
	X509_free(x);
	BIO_free(bio);
	return r;
}

/* Fingerprints compare ignoring case and separators. */
static int same_fingerprint(const char *x, const char *y)
{
	for (;;) {
		while (*x == ':')
			x++;
		while (*y == ':')
			y++;
		if (*x == '\0' || *y == '\0')
			return *x == *y;
		char cx = *x >= 'a' && *x <= 'f' ? (char)(*x - 32) : *x;
		char cy = *y >= 'a' && *y <= 'f' ? (char)(*y - 32) : *y;
		if (cx != cy)
			return 0;
		x++;
		y++;
	}
}

/* Runs the reload command through /bin/sh; 0 when it exited 0. */
static int run_exec(const struct agent *a)
{
	pid_t pid, w;
	int status;

	if (a->exec == NULL)
		return 0;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", a->exec, (char *)NULL);
		_exit(127);
	}
	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);
	return w == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Puts the .prev files back (after a failed reload). */
static void restore_prev(struct agent *a)
{
	char path[PATH_LEN], prev[PATH_LEN + 8];

	for (int i = 0; i < N_FILES(a); i++) {
		file_path(a, suffixes[i], path, sizeof(path));
		snprintf(prev, sizeof(prev), "%s.prev", path);
		if (access(prev, F_OK) == 0) {
			if (rename(prev, path) != 0)
				say(a, "cannot put back %s", prev);
		} else {
			unlink(path); /* there was nothing before */
		}
	}
}

/* Writes the new files: each current one first kept as .prev, then the new one renamed in. */
static int write_files(struct agent *a, const char *const *contents)
{
	char path[PATH_LEN], prev[PATH_LEN + 8];

	for (int i = 0; i < N_FILES(a); i++) {
		file_path(a, suffixes[i], path, sizeof(path));
		snprintf(prev, sizeof(prev), "%s.prev", path);
		if (access(path, F_OK) == 0) {
			unlink(prev);
			if (link(path, prev) != 0) {
				snprintf(a->err, sizeof(a->err), "%.400s: %s", prev, strerror(errno));
				return -1;
			}
		} else {
			unlink(prev);
		}
		if (cv_cli_write_atomic(path, contents[i], strlen(contents[i]), 0644, a->err,
					sizeof(a->err)) < 0)
			return -1;
	}
	return 0;
}

/* Fetches the certificate the service uses and, when it differs from the files, writes and
 * reloads. Returns 0 (in step, or changed and reloaded), 1 when the service uses no
 * certificate, -1 on a failure worth retrying (message in a->err). */
static int apply(struct agent *a, const json_t *service)
{
	const json_t *cert = json_object_get(service, "certificate");
	const char *name = json_string_value(json_object_get(cert, "name"));
	struct cv_cli_response det = { 0 }, chain = { 0 };
	char path[PATH_LEN], abs_chain[PATH_LEN], fp[96];
	char *uri_text = NULL, *snippet = NULL;
	const char *contents[3];
	const char *uri, *want_fp;
	size_t n;
	int r = -1;

	if (name == NULL && json_is_true(json_object_get(cert, "out_of_scope"))) {
		/* Bound, but to a certificate this token's scope does not reach: worth a retry
		 * (a scope is not changed in place, but the binding may be) and a clear line. */
		snprintf(a->err, sizeof(a->err), "%s", "the service uses a certificate outside this "
			 "token's scope");
		return -1;
	}
	if (name == NULL)
		return 1;
	snprintf(path, sizeof(path), "/v1/certificates/");
	if (cv_cli_escape(name, path, sizeof(path)) < 0 ||
	    cv_cli_request(a->conn, "GET", path, NULL, NULL, NULL, &det, a->err,
			   sizeof(a->err)) != CV_CLI_OK)
		goto out;
	if (det.status != 200 || det.json == NULL) {
		snprintf(a->err, sizeof(a->err), "details of %s answered %ld", name, det.status);
		goto out;
	}
	uri = json_string_value(json_object_get(json_object_get(det.json, "key"), "pkcs11_uri"));
	want_fp = json_string_value(
		json_object_get(json_object_get(det.json, "fingerprints"), "sha256"));
	if (uri == NULL || want_fp == NULL) {
		snprintf(a->err, sizeof(a->err), "details of %s carry no key URI", name);
		goto out;
	}
	if (a->fingerprint[0] != '\0' && same_fingerprint(a->fingerprint, want_fp)) {
		r = 0; /* in step */
		goto out;
	}
	n = strlen(path);
	snprintf(path + n, sizeof(path) - n, "/export?format=chain");
	if (cv_cli_request(a->conn, "GET", path, NULL, NULL, NULL, &chain, a->err,
			   sizeof(a->err)) != CV_CLI_OK)
		goto out;
	if (chain.status != 200 || strstr(chain.body, "-----BEGIN CERTIFICATE") == NULL) {
		snprintf(a->err, sizeof(a->err), "chain of %s answered %ld", name, chain.status);
		goto out;
	}
	/* A renewal between the two reads: the next round sees it whole. */
	if (leaf_fingerprint(chain.body, chain.len, fp, sizeof(fp)) < 0 ||
	    !same_fingerprint(fp, want_fp)) {
		snprintf(a->err, sizeof(a->err), "%s changed while it was read; again", name);
		goto out;
	}
	n = strlen(uri) + (a->pin_source != NULL ? strlen(a->pin_source) + 32 : 0) + 2;
	if ((uri_text = malloc(n)) == NULL)
		goto out;
	/* libp11 reads the PIN from the file named by pin-source (RFC 7512 query attribute);
	 * the URI itself is copied whole: it carries the key's id. */
	if (a->pin_source != NULL)
		snprintf(uri_text, n, "%s?pin-source=file:%s", uri, a->pin_source);
	else
		snprintf(uri_text, n, "%s", uri);
	contents[0] = chain.body;
	contents[1] = uri_text;
	if (a->format == F_NGINX) {
		file_path(a, suffixes[0], abs_chain, sizeof(abs_chain));
		n = strlen(abs_chain) + strlen(uri_text) + 128;
		if ((snippet = malloc(n)) == NULL)
			goto out;
		snprintf(snippet, n,
			 "# written by certvault sync: certificate %s\n"
			 "ssl_certificate %s;\n"
			 "ssl_certificate_key \"engine:pkcs11:%s\";\n",
			 name, abs_chain, uri_text);
		contents[2] = snippet;
	}
	/* The URI file ends without a line break: tools read it whole. */
	if (write_files(a, contents) < 0)
		goto out;
	if (run_exec(a) < 0) {
		restore_prev(a);
		snprintf(a->err, sizeof(a->err),
			 "reload command failed for %s (%.60s); previous files put back", name, fp);
		if (run_exec(a) < 0)
			say(a, "%s", "reload with the previous files failed too");
		goto out;
	}
	snprintf(a->fingerprint, sizeof(a->fingerprint), "%s", fp);
	say(a, "certificate %.64s version %lld (sha256 %.95s) written to %.200s%s", name,
	    (long long)json_integer_value(json_object_get(det.json, "version")), fp, a->dir,
	    a->exec != NULL ? ", reloaded" : "");
	r = 0;
out:
	free(snippet);
	free(uri_text);
	cv_cli_response_release(&det);
	cv_cli_response_release(&chain);
	return r;
}

/* The fingerprint of the files already there, so a restarted agent does not reload for
 * nothing. */
static void read_current(struct agent *a)
{
	char path[PATH_LEN], *buf = NULL;
	size_t len = 0;

	file_path(a, suffixes[0], path, sizeof(path));
	if (cv_cli_read_file(path, 1024 * 1024, &buf, &len, a->err, sizeof(a->err)) == 0) {
		if (leaf_fingerprint(buf, len, a->fingerprint, sizeof(a->fingerprint)) < 0)
			a->fingerprint[0] = '\0';
		free(buf);
	}
}

/* Sleeps up to seconds, waking early on a signal. */
static void pause_for(int64_t seconds)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };

	for (int64_t i = 0; i < seconds * 10 && !stopping; i++)
		nanosleep(&ts, NULL);
}

/* One look at the service: a conditional GET (and a long poll when the server offers it).
 * Returns 0 when the service's answer changed and was applied (or was unchanged), -1 on a
 * failure. */
static int round_once(struct agent *a)
{
	char path[PATH_LEN] = "/v1/services/", inm[200];
	const char *headers[2] = { NULL, NULL };
	struct cv_cli_response res;
	int r;

	if (cv_cli_escape(a->service, path, sizeof(path)) < 0) {
		snprintf(a->err, sizeof(a->err), "service name too long");
		return -1;
	}
	if (a->long_poll && !a->once) {
		size_t n = strlen(path);
		snprintf(path + n, sizeof(path) - n, "?wait=%d", WAIT_SECONDS);
	}
	if (a->service_etag[0] != '\0' && a->fingerprint[0] != '\0') {
		snprintf(inm, sizeof(inm), "If-None-Match: %s", a->service_etag);
		headers[0] = inm;
	}
	if (cv_cli_request(a->conn, "GET", path, NULL, NULL, headers, &res, a->err,
			   sizeof(a->err)) != CV_CLI_OK)
		return -1;
	if (res.status == 304) {
		cv_cli_response_release(&res);
		return 0;
	}
	if (res.status == 400 && a->long_poll) {
		/* A server without the long poll refuses the argument: poll by interval. */
		a->long_poll = 0;
		cv_cli_response_release(&res);
		return round_once(a);
	}
	if (res.status != 200 || res.json == NULL) {
		const char *msg = json_string_value(
			json_object_get(json_object_get(res.json, "error"), "message"));
		snprintf(a->err, sizeof(a->err), "the service answered %ld%s%s", res.status,
			 msg != NULL ? ": " : "", msg != NULL ? msg : "");
		cv_cli_response_release(&res);
		return -1;
	}
	r = apply(a, res.json);
	if (r == 1) {
		say(a, "%s", "uses no certificate: files left as they are");
		r = 0;
	}
	if (r == 0)
		snprintf(a->service_etag, sizeof(a->service_etag), "%s", res.etag);
	cv_cli_response_release(&res);
	return r;
}

static void sync_usage(FILE *out)
{
	fputs("usage: certvault sync --service NAME --dir DIR [--format nginx|pem] [--exec CMD]\n"
	      "                      [--interval 30s] [--pin-source FILE] [--once]\n"
	      "Keeps DIR/NAME.crt (leaf + intermediates), DIR/NAME.key.uri (the PKCS#11 URI of\n"
	      "the key, which stays in the token) and, for nginx, DIR/NAME.nginx.conf in step\n"
	      "with the certificate the service uses. Runs CMD (sh -c) after a change; when it\n"
	      "fails, puts the previous files (kept as .prev) back and tries again later.\n"
	      "--once: one round, exit 0 when in step. Otherwise waits for changes (a long poll\n"
	      "where the server offers it, else every --interval).\n",
	      out);
}

static int parse_interval(const char *s, int64_t *ret)
{
	char num[32];
	size_t n = strlen(s);
	int64_t mult = 1, v;

	if (n == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, s, n + 1);
	if (num[n - 1] == 's')
		num[--n] = '\0';
	else if (num[n - 1] == 'm') {
		num[--n] = '\0';
		mult = 60;
	} else if (num[n - 1] == 'h') {
		num[--n] = '\0';
		mult = 3600;
	}
	if (cv_parse_int64(num, 1, 86400, &v) < 0 || v * mult > 86400)
		return -1;
	*ret = v * mult;
	return 0;
}

int cv_cli_sync(struct cv_cli_conn *conn, int argc, char **argv)
{
	static const struct option options[] = {
		{ "service", required_argument, NULL, 's' },
		{ "dir", required_argument, NULL, 'd' },
		{ "format", required_argument, NULL, 'f' },
		{ "exec", required_argument, NULL, 'e' },
		{ "interval", required_argument, NULL, 'i' },
		{ "pin-source", required_argument, NULL, 'p' },
		{ "once", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent a;
	struct sigaction sa;
	struct stat st;
	int64_t backoff = 1;
	int ch;

	memset(&a, 0, sizeof(a));
	a.conn = conn;
	a.interval = 30;
	a.format = F_PEM;
	a.long_poll = 1;
	opterr = 0;
	optind = 0; /* glibc: a new scan (the global options were scanned before) */
	while ((ch = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (ch) {
		case 's': a.service = optarg; break;
		case 'd': a.dir = optarg; break;
		case 'e': a.exec = optarg; break;
		case 'p': a.pin_source = optarg; break;
		case 'o': a.once = 1; break;
		case 'h': sync_usage(stdout); return CV_CLI_OK;
		case 'f':
			if (strcmp(optarg, "nginx") == 0)
				a.format = F_NGINX;
			else if (strcmp(optarg, "pem") == 0)
				a.format = F_PEM;
			else if (strcmp(optarg, "haproxy") == 0) {
				fprintf(stderr, "certvault sync: --format haproxy: HAProxy cannot load "
						"a key from a PKCS#11 token (its engine support is "
						"gone since 2.6); use --format pem with a provider "
						"setup\n");
				return CV_CLI_USAGE;
			} else {
				fprintf(stderr, "certvault sync: --format %s: nginx or pem\n", optarg);
				return CV_CLI_USAGE;
			}
			break;
		case 'i':
			if (parse_interval(optarg, &a.interval) < 0) {
				fprintf(stderr, "certvault sync: --interval %s: 1s to 24h (e.g. 30s, "
						"5m)\n", optarg);
				return CV_CLI_USAGE;
			}
			break;
		default:
			fprintf(stderr, "certvault sync: unknown option %s\n", argv[optind - 1]);
			sync_usage(stderr);
			return CV_CLI_USAGE;
		}
	}
	if (a.service == NULL || a.dir == NULL || optind != argc) {
		sync_usage(stderr);
		return CV_CLI_USAGE;
	}
	if (stat(a.dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "certvault sync: --dir %s: not a directory\n", a.dir);
		return CV_CLI_USAGE;
	}
	if (a.dir[0] != '/') {
		fprintf(stderr, "certvault sync: --dir %s: an absolute path (the nginx snippet "
				"names files by it)\n", a.dir);
		return CV_CLI_USAGE;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	read_current(&a);
	while (!stopping) {
		if (round_once(&a) < 0) {
			say(&a, "%s", a.err);
			if (a.once)
				return CV_CLI_UNAVAILABLE;
			/* certvaultd restarting, a reload failing: try again, less often each time. */
			pause_for(backoff);
			backoff = backoff * 2 > a.interval ? a.interval : backoff * 2;
			continue;
		}
		backoff = 1;
		if (a.once)
			return CV_CLI_OK;
		if (!a.long_poll)
			pause_for(a.interval);
	}
	return CV_CLI_OK;
}
