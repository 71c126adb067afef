/* Unit tests for the net module: the URL table, and fetching a chain from a real openssl
 * s_server on 127.0.0.1 (a two-level chain, over https and ldaps, SNI switching the server's
 * certificate), then from endpoints that refuse, never answer, answer garbage or never accept. */
/* RTLD_NEXT, to reach the C library's getaddrinfo under the one this test puts in front. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/x509.h>

#include "certvault/net.h"
#include "certvault/x509.h"
#include "testcert.h"

/* How long past its timeout a fetch may take to give up: generous for sanitizer builds. */
#define MARGIN_MS 750

static char dir[] = "/tmp/cv-test-net-XXXXXX";

/* What the fetch tests run under: their servers are on loopback, which only a policy that
 * names it lets a fetch reach. */
static struct cv_net_policy loopback;

/* root -> intermediate -> leaf, which s_server presents with the intermediate; and a second
 * leaf it switches to when the client names "localhost" in SNI. */
static X509 *root_cert, *inter_cert, *leaf_cert, *sni_cert;

/* A running `openssl s_server`: its output goes to a log file in dir. */
struct s_server {
	pid_t pid;
	int port;
	int stdin_fd; /* held open: s_server ends a connection when its stdin ends */
	char log[PATH_MAX];
};

static struct s_server server4 = { .pid = -1, .stdin_fd = -1 };

static void path_in_dir(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int write_file(const char *name, char *text)
{
	char path[PATH_MAX];
	FILE *f;
	int r = -1;

	if (text == NULL)
		return -1;
	path_in_dir(path, sizeof(path), name);
	f = fopen(path, "w");
	if (f != NULL) {
		r = fputs(text, f) < 0 ? -1 : 0;
		if (fclose(f) != 0)
			r = -1;
	}
	free(text);
	return r;
}

static X509 *issue(EVP_PKEY *key, const char *cn, const char *sans, int is_ca, X509 *issuer,
		   EVP_PKEY *issuer_key)
{
	struct tc_cert_spec spec = { 0 };

	spec.cn = cn;
	spec.sans = sans;
	spec.not_before = time(NULL) - 3600;
	spec.not_after = time(NULL) + 86400;
	spec.is_ca = is_ca;
	spec.issuer = issuer;
	spec.issuer_key = issuer_key;
	return tc_cert_new(key, &spec);
}

/* The certificates and keys s_server uses, written to dir. */
static int make_certificates(void)
{
	EVP_PKEY *root_key = tc_key_new("p256"), *inter_key = tc_key_new("p256");
	EVP_PKEY *leaf_key = tc_key_new("p256"), *sni_key = tc_key_new("p256");
	int r = -1;

	if (root_key == NULL || inter_key == NULL || leaf_key == NULL || sni_key == NULL)
		goto out;
	root_cert = issue(root_key, "certvault test root", NULL, 1, NULL, NULL);
	inter_cert = issue(inter_key, "certvault test intermediate", NULL, 1, root_cert,
			   root_key);
	leaf_cert = issue(leaf_key, "leaf.example.test", "leaf.example.test", 0, inter_cert,
			  inter_key);
	sni_cert = issue(sni_key, "localhost", "localhost", 0, inter_cert, inter_key);
	if (root_cert == NULL || inter_cert == NULL || leaf_cert == NULL || sni_cert == NULL)
		goto out;
	if (write_file("inter.pem", tc_cert_pem(inter_cert)) < 0 ||
	    write_file("leaf.pem", tc_cert_pem(leaf_cert)) < 0 ||
	    write_file("leaf.key", tc_key_pem(leaf_key, "pkcs8", NULL)) < 0 ||
	    write_file("sni.pem", tc_cert_pem(sni_cert)) < 0 ||
	    write_file("sni.key", tc_key_pem(sni_key, "pkcs8", NULL)) < 0)
		goto out;
	r = 0;
out:
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(inter_key);
	EVP_PKEY_free(leaf_key);
	EVP_PKEY_free(sni_key);
	return r;
}

/* The log as text (malloc'd), or NULL. */
static char *read_log(const struct s_server *s)
{
	FILE *f = fopen(s->log, "r");
	char *text = NULL;
	size_t n = 0, cap = 0, got;

	if (f == NULL)
		return NULL;
	do {
		if (cap - n < 4096) {
			char *bigger = realloc(text, cap + 8192);

			if (bigger == NULL) {
				free(text);
				fclose(f);
				return NULL;
			}
			text = bigger;
			cap += 8192;
		}
		got = fread(text + n, 1, cap - n - 1, f);
		n += got;
	} while (got > 0);
	text[n] = '\0';
	fclose(f);
	return text;
}

static void stop_server(struct s_server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
			;
		s->pid = -1;
	}
	if (s->stdin_fd >= 0)
		close(s->stdin_fd);
	s->stdin_fd = -1;
}

/* Starts s_server listening on accept_at ("127.0.0.1:0": the kernel picks the port, which
 * s_server prints in its "ACCEPT host:port" line), presenting the leaf and the certificates in
 * the file chain_name, and waits until it listens. Returns 0, or -1 when it did not start (its
 * log says why). */
static int start_server(struct s_server *s, const char *accept_at, const char *chain_name,
			const char *log_name)
{
	char cert[PATH_MAX], key[PATH_MAX], chain[PATH_MAX], cert2[PATH_MAX], key2[PATH_MAX];
	char *text, *line, *colon, *end = NULL;
	int in[2], log_fd;
	int64_t give_up;
	long port;

	path_in_dir(cert, sizeof(cert), "leaf.pem");
	path_in_dir(key, sizeof(key), "leaf.key");
	path_in_dir(chain, sizeof(chain), chain_name);
	path_in_dir(cert2, sizeof(cert2), "sni.pem");
	path_in_dir(key2, sizeof(key2), "sni.key");
	path_in_dir(s->log, sizeof(s->log), log_name);
	log_fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (log_fd < 0)
		return -1;
	if (pipe(in) < 0) {
		close(log_fd);
		return -1;
	}
	fcntl(in[1], F_SETFD, FD_CLOEXEC);
	s->pid = fork();
	if (s->pid == 0) {
		/* Never outlive the test, even when it crashes. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(in[0], 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
			_exit(127);
		/* -servername_fatal: any name but localhost is refused, so a handshake that
		 * succeeds with the default certificate sent no SNI at all. */
		execlp("openssl", "openssl", "s_server", "-accept", accept_at, "-cert", cert, "-key",
		       key, "-cert_chain", chain, "-servername", "localhost", "-cert2", cert2,
		       "-key2", key2, "-servername_fatal", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(log_fd);
	s->stdin_fd = in[1];
	if (s->pid < 0)
		return -1;

	for (give_up = monotonic_ms() + 10000; monotonic_ms() < give_up; sleep_ms(10)) {
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			s->pid = -1;
			break;
		}
		text = read_log(s);
		line = text != NULL ? strstr(text, "ACCEPT ") : NULL;
		if (line != NULL && strchr(line, '\n') != NULL) {
			*strchr(line, '\n') = '\0';
			colon = strrchr(line, ':');
			port = colon != NULL ? strtol(colon + 1, &end, 10) : 0;
			s->port = port > 0 && port <= 65535 && *end == '\0' ? (int)port : 0;
			free(text);
			return s->port > 0 ? 0 : -1;
		}
		free(text);
	}
	stop_server(s);
	return -1;
}

static int setup(void **state)
{
	(void)state;
	struct cv_errmsg err = { "" };

	if (cv_net_policy_parse("127.0.0.0/8, ::1", NULL, &loopback, &err) < 0)
		return -1;
	if (mkdtemp(dir) == NULL || make_certificates() < 0)
		return -1;
	return start_server(&server4, "127.0.0.1:0", "inter.pem", "s_server.log");
}

static int teardown(void **state)
{
	static const char *const files[] = { "inter.pem", "leaf.pem", "leaf.key", "sni.pem",
					     "sni.key", "s_server.log", "s_server6.log",
					     "chain16.pem", "chain17.pem", "s_server_long.log" };
	char path[PATH_MAX];
	size_t i;

	(void)state;
	stop_server(&server4);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		path_in_dir(path, sizeof(path), files[i]);
		unlink(path);
	}
	rmdir(dir);
	X509_free(root_cert);
	X509_free(inter_cert);
	X509_free(leaf_cert);
	X509_free(sni_cert);
	return 0;
}

/* The subject CN, for messages that say which certificate came back. */
static const char *cn_of(X509 *cert, char *buf, int len)
{
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, len) < 0)
		snprintf(buf, (size_t)len, "(no CN)");
	return buf;
}

/* ---- the URL ---- */

static void test_url_parse_accepts(void **state)
{
	static const struct {
		const char *url;
		const char *host;
		int port;
		int ldaps;
	} good[] = {
		{ "https://example.com", "example.com", 443, 0 },
		{ "https://example.com/", "example.com", 443, 0 },
		{ "https://example.com:8443", "example.com", 8443, 0 },
		{ "HTTPS://WWW.Example.COM:8443/", "WWW.Example.COM", 8443, 0 },
		{ "ldaps://ldap.example.com", "ldap.example.com", 636, 1 },
		{ "LDAPS://ldap.example.com:3269/", "ldap.example.com", 3269, 1 },
		{ "https://localhost:1", "localhost", 1, 0 },
		{ "https://localhost:65535", "localhost", 65535, 0 },
		{ "https://a-b.c-d.example", "a-b.c-d.example", 443, 0 },
		{ "https://xn--bcher-kva.example", "xn--bcher-kva.example", 443, 0 },
		{ "https://host7", "host7", 443, 0 },
		{ "https://127.0.0.1:4433", "127.0.0.1", 4433, 0 },
		{ "ldaps://192.0.2.10", "192.0.2.10", 636, 1 },
		{ "https://[::1]", "::1", 443, 0 },
		{ "https://[2001:db8::1]:8443/", "2001:db8::1", 8443, 0 },
		{ "ldaps://[::ffff:192.0.2.1]:636", "::ffff:192.0.2.1", 636, 1 },
	};
	char host[CV_NET_HOST_MAX], long_name[300], url[400];
	struct cv_errmsg err = { { 0 } };
	int port, ldaps, r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		port = -1;
		ldaps = -1;
		r = cv_net_url_parse(good[i].url, host, sizeof(host), &port, &ldaps, &err);
		if (r != 0)
			fail_msg("%s: refused: %s", good[i].url, err.text);
		assert_string_equal(host, good[i].host);
		assert_int_equal(port, good[i].port);
		assert_int_equal(ldaps, good[i].ldaps);
	}

	/* The longest name: four labels of 63 and the dots, 255, is too long; 253 is not. */
	memset(long_name, 'a', 253);
	long_name[253] = '\0';
	long_name[63] = long_name[127] = long_name[191] = '.';
	snprintf(url, sizeof(url), "https://%s:443", long_name);
	r = cv_net_url_parse(url, host, sizeof(host), &port, &ldaps, &err);
	if (r != 0)
		fail_msg("a 253-character name: %s", err.text);
	assert_string_equal(host, long_name);
}

static void test_url_parse_refuses(void **state)
{
	static const struct {
		const char *url;
		const char *says; /* a part of the message */
	} bad[] = {
		{ "", "no URL" },
		{ "example.com", "https:// or ldaps://" },
		{ "http://example.com", "https:// or ldaps://" },
		{ "ldap://example.com", "https:// or ldaps://" },
		{ "ftp://example.com", "https:// or ldaps://" },
		{ "https:/example.com", "https:// or ldaps://" },
		{ "https//example.com", "https:// or ldaps://" },
		{ "https://", "no host" },
		{ "https:///", "no host" },
		{ "https://:443", "no host" },
		{ "https://[]:443", "no host" },
		{ "https://user@example.com", "user information" },
		{ "https://user:secret@example.com:443/", "user information" },
		{ "https://@example.com", "user information" },
		{ "https://example.com/path", "nothing may follow" },
		{ "https://example.com//", "nothing may follow" },
		{ "https://example.com/?q=1", "nothing may follow" },
		{ "https://example.com?q=1", "nothing may follow" },
		{ "https://example.com#top", "nothing may follow" },
		{ "https://example.com:443/x", "nothing may follow" },
		{ "https://example.com:", "port" },
		{ "https://example.com:0", "port" },
		{ "https://example.com:65536", "port" },
		{ "https://example.com:99999999999", "port" },
		{ "https://example.com:-1", "port" },
		{ "https://example.com:+443", "port" },
		{ "https://example.com:44a", "port" },
		{ "https://example.com:443:1", "more than one" },
		{ "https://::1", "brackets" },
		{ "https://2001:db8::1:443", "brackets" },
		{ "https://[::1", "closing" },
		{ "https://[::1]x", "only a port" },
		{ "https://[::1]:", "port" },
		{ "https://[::1]:0", "port" },
		{ "https://[fe80::1%25eth0]", "zone" },
		{ "https://[not-an-address]", "not a valid IPv6" },
		{ "https://[127.0.0.1]", "not a valid IPv6" },
		{ "https://exa mple.com", "space" },
		{ "https://example.com\n", "control" },
		{ "https://example.com\t", "control" },
		{ "https://ex\xc3\xa4mple.com", "non-ASCII" },
		{ "https://ex_ample.com", "not a valid host name" },
		{ "https://example..com", "not a valid host name" },
		{ "https://.example.com", "not a valid host name" },
		{ "https://example.com.", "not a valid host name" },
		{ "https://exa%6dple.com", "not a valid host name" },
		{ "https://999.1.1.1", "not a valid IPv4" },
		{ "https://1.2.3", "not a valid IPv4" },
		{ "https://1.2.3.4.5", "not a valid IPv4" },
		{ "https://127.0.0.01", "not a valid IPv4" },
	};
	char host[CV_NET_HOST_MAX], name[300], url[400];
	struct cv_errmsg err;
	int port, ldaps;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		if (cv_net_url_parse(bad[i].url, host, sizeof(host), &port, &ldaps, &err) !=
		    CV_ERR_BAD_REQUEST)
			fail_msg("\"%s\" was not refused", bad[i].url);
		if (strstr(err.text, bad[i].says) == NULL)
			fail_msg("\"%s\": the message \"%s\" does not say \"%s\"", bad[i].url,
				 err.text, bad[i].says);
	}

	memset(&err, 0, sizeof(err));
	assert_int_equal(cv_net_url_parse(NULL, host, sizeof(host), &port, &ldaps, &err),
			 CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "no URL"));

	/* A label of 64, a name of 254. */
	memset(name, 'a', 64);
	name[64] = '\0';
	snprintf(url, sizeof(url), "https://%s.example", name);
	assert_int_equal(cv_net_url_parse(url, host, sizeof(host), &port, &ldaps, &err),
			 CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "longer than 63"));
	memset(name, 'a', 254);
	name[254] = '\0';
	name[63] = name[127] = name[191] = '.';
	snprintf(url, sizeof(url), "https://%s", name);
	assert_int_equal(cv_net_url_parse(url, host, sizeof(host), &port, &ldaps, &err),
			 CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "longer than 253"));

	/* A caller's buffer too small for the host is a refusal, never an overflow. */
	assert_int_equal(cv_net_url_parse("https://example.com", host, 5, &port, &ldaps, &err),
			 CV_ERR_BAD_REQUEST);
	assert_non_null(strstr(err.text, "too long"));
}

/* A malformed URL or timeout is refused before anything is sent. */
static void test_fetch_refuses_bad_arguments(void **state)
{
	STACK_OF(X509) *chain = NULL;
	struct cv_errmsg err = { { 0 } };
	char url[64];

	(void)state;
	assert_int_equal(cv_net_fetch_chain(&loopback, "http://127.0.0.1:1", 1000, &chain, &err),
			 CV_ERR_BAD_REQUEST);
	assert_null(chain);
	assert_int_equal(cv_net_fetch_chain(&loopback, "https://127.0.0.1:1/x", 1000, &chain, &err),
			 CV_ERR_BAD_REQUEST);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", server4.port);
	assert_int_equal(cv_net_fetch_chain(&loopback, url, 0, &chain, &err), CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_net_fetch_chain(&loopback, url, -5, &chain, &err), CV_ERR_BAD_REQUEST);
	assert_null(chain);
}

/* ---- a real TLS server ---- */

static void assert_chain(STACK_OF(X509) *chain, X509 *const *expect, int n)
{
	char got_cn[256], want_cn[256];
	int i;

	assert_non_null(chain);
	if (sk_X509_num(chain) != n)
		fail_msg("%d certificate(s) came back, not %d", sk_X509_num(chain), n);
	for (i = 0; i < n; i++) {
		X509 *got = sk_X509_value(chain, i);

		assert_string_equal(cn_of(got, got_cn, sizeof(got_cn)),
				    cn_of(expect[i], want_cn, sizeof(want_cn)));
		assert_int_equal(X509_NAME_cmp(X509_get_subject_name(got),
					       X509_get_subject_name(expect[i])), 0);
		assert_int_equal(X509_cmp(got, expect[i]), 0);
	}
}

static void fetch_ok(const char *url, X509 *const *expect, int n)
{
	STACK_OF(X509) *chain = NULL;
	struct cv_errmsg err = { { 0 } };
	int r;

	r = cv_net_fetch_chain(&loopback, url, 5000, &chain, &err);
	if (r != 0)
		fail_msg("%s: %d %s", url, r, err.text);
	assert_chain(chain, expect, n);
	/* The stack and its certificates are the caller's: freeing them leaves ours intact. */
	sk_X509_pop_free(chain, X509_free);
}

static void test_fetch_https_chain(void **state)
{
	X509 *const expect[] = { leaf_cert, inter_cert };
	char url[64];

	(void)state;
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", server4.port);
	fetch_ok(url, expect, 2);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/", server4.port);
	fetch_ok(url, expect, 2);
	/* The root was not sent, so it does not come back. */
	assert_int_not_equal(X509_cmp(expect[1], root_cert), 0);
}

/* LDAPS is TLS from the first byte: the same server answers it. */
static void test_fetch_ldaps_chain(void **state)
{
	X509 *const expect[] = { leaf_cert, inter_cert };
	char url[64];

	(void)state;
	snprintf(url, sizeof(url), "ldaps://127.0.0.1:%d", server4.port);
	fetch_ok(url, expect, 2);
}

/* s_server switches to the "localhost" certificate only when SNI names localhost, and ends a
 * handshake that names anything else: getting that certificate proves SNI reached it; getting
 * the default one over an address proves no SNI was sent. */
static void test_fetch_sends_sni_for_names_only(void **state)
{
	X509 *const by_name[] = { sni_cert };
	X509 *const by_address[] = { leaf_cert, inter_cert };
	char url[64], *log;
	int64_t give_up;
	int seen;

	(void)state;
	snprintf(url, sizeof(url), "https://localhost:%d", server4.port);
	fetch_ok(url, by_name, 1);
	/* s_server logs the name as it handles the connection, which may be after we return. */
	for (give_up = monotonic_ms() + 5000;; sleep_ms(10)) {
		log = read_log(&server4);
		assert_non_null(log);
		seen = strstr(log, "Hostname in TLS extension: \"localhost\"") != NULL;
		free(log);
		if (seen || monotonic_ms() > give_up)
			break;
	}
	assert_true(seen);

	snprintf(url, sizeof(url), "ldaps://127.0.0.1:%d", server4.port);
	fetch_ok(url, by_address, 2);
}

/* Over IPv6, when this machine has ::1. */
static void test_fetch_ipv6_address(void **state)
{
	X509 *const expect[] = { leaf_cert, inter_cert };
	struct s_server server6 = { .pid = -1, .stdin_fd = -1 };
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	char url[64];
	int fd;

	(void)state;
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		skip();
	}
	close(fd);
	if (start_server(&server6, "[::1]:0", "inter.pem", "s_server6.log") < 0)
		fail_msg("s_server did not start on [::1]; see %s", server6.log);
	snprintf(url, sizeof(url), "https://[::1]:%d/", server6.port);
	fetch_ok(url, expect, 2);
	stop_server(&server6);
}

/* A chain longer than CV_X509_MAX_CHAIN + 1 in all is refused; one that long is taken. */
static void test_fetch_limits_chain_length(void **state)
{
	X509 *expect[CV_X509_MAX_CHAIN + 1];
	struct s_server server = { .pid = -1, .stdin_fd = -1 };
	STACK_OF(X509) *chain = NULL;
	struct cv_errmsg err = { { 0 } };
	char url[64], *one, *many;
	size_t len;
	int i, r;

	(void)state;
	one = tc_cert_pem(inter_cert);
	assert_non_null(one);
	len = strlen(one);
	many = calloc(CV_X509_MAX_CHAIN + 1, len + 1);
	assert_non_null(many);
	for (i = 0; i < CV_X509_MAX_CHAIN; i++)
		memcpy(many + (size_t)i * len, one, len);
	assert_int_equal(write_file("chain16.pem", strdup(many)), 0);
	memcpy(many + (size_t)CV_X509_MAX_CHAIN * len, one, len);
	assert_int_equal(write_file("chain17.pem", many), 0);
	free(one);

	/* The leaf and CV_X509_MAX_CHAIN more. */
	expect[0] = leaf_cert;
	for (i = 1; i <= CV_X509_MAX_CHAIN; i++)
		expect[i] = inter_cert;
	if (start_server(&server, "127.0.0.1:0", "chain16.pem", "s_server_long.log") < 0)
		fail_msg("s_server did not start; see %s", server.log);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", server.port);
	fetch_ok(url, expect, CV_X509_MAX_CHAIN + 1);
	stop_server(&server);

	/* One more. */
	if (start_server(&server, "127.0.0.1:0", "chain17.pem", "s_server_long.log") < 0)
		fail_msg("s_server did not start; see %s", server.log);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", server.port);
	r = cv_net_fetch_chain(&loopback, url, 5000, &chain, &err);
	stop_server(&server);
	assert_int_equal(r, CV_ERR_BAD_ENCODING);
	assert_null(chain);
	print_message("        %s -> %s\n", url, err.text);
	assert_non_null(strstr(err.text, "more than the 17"));
}

/* ---- endpoints that fail ---- */

/* A TCP socket on 127.0.0.1 with a kernel-chosen port; listening when backlog >= 0. */
static int local_socket(int backlog, int *ret_port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (backlog >= 0)
		assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*ret_port = ntohs(sa.sin_port);
	return fd;
}

/* Fetches url expecting CV_ERR_UNREACHABLE with a message holding each of the words;
 * returns how long it took. */
static int64_t fetch_fails(const char *url, int timeout_ms, const char *word1,
			   const char *word2)
{
	STACK_OF(X509) *chain = NULL;
	struct cv_errmsg err = { { 0 } };
	int64_t start = monotonic_ms();
	int r;

	r = cv_net_fetch_chain(&loopback, url, timeout_ms, &chain, &err);
	if (r != CV_ERR_UNREACHABLE)
		fail_msg("%s: returned %d (%s), not CV_ERR_UNREACHABLE", url, r, err.text);
	assert_null(chain);
	if (strstr(err.text, word1) == NULL || (word2 != NULL && strstr(err.text, word2) == NULL))
		fail_msg("%s: the message \"%s\" does not say \"%s\" and \"%s\"", url, err.text,
			 word1, word2 != NULL ? word2 : "");
	print_message("        %s -> %s\n", url, err.text);
	return monotonic_ms() - start;
}

/* A port bound but not listening answers with a reset: refused at once. */
static void test_fetch_connection_refused(void **state)
{
	char url[64], shown[32];
	int fd, port;

	(void)state;
	fd = local_socket(-1, &port);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
	snprintf(shown, sizeof(shown), "127.0.0.1:%d", port);
	assert_true(fetch_fails(url, 5000, shown, "refused") < 1000);
	close(fd);
}

/* The kernel completes the TCP handshake on a listening socket that nobody accepts: the
 * ClientHello goes unanswered until the time runs out. */
static void test_fetch_times_out_on_silent_server(void **state)
{
	char url[64], shown[32];
	int64_t took;
	int fd, port;

	(void)state;
	fd = local_socket(8, &port);
	snprintf(url, sizeof(url), "ldaps://127.0.0.1:%d", port);
	snprintf(shown, sizeof(shown), "127.0.0.1:%d", port);
	took = fetch_fails(url, 400, shown, "timed out after 400 ms");
	assert_in_range(took, 395, 400 + MARGIN_MS);
	close(fd);
}

/* With the accept queue full the kernel drops the SYN: the connect itself runs out of time. */
static void test_fetch_times_out_connecting(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd, port, fillers[8], n = 0, i;
	char url[64];
	int64_t took;

	(void)state;
	fd = local_socket(0, &port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	/* Fill the queue until a connection stays pending. */
	for (n = 0; n < 8; n++) {
		struct pollfd pfd;

		fillers[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(fillers[n] >= 0);
		if (connect(fillers[n], (struct sockaddr *)&sa, sizeof(sa)) == 0)
			continue;
		assert_int_equal(errno, EINPROGRESS);
		pfd.fd = fillers[n];
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, 100) == 0) {
			n++;
			break;
		}
	}
	if (n == 8)
		fail_msg("the accept queue of a listen(fd, 0) socket never filled");
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
	took = fetch_fails(url, 300, "connecting to 127.0.0.1", "timed out after 300 ms");
	assert_in_range(took, 295, 300 + MARGIN_MS);
	for (i = 0; i < n; i++)
		close(fillers[i]);
	close(fd);
}

/* Accepts one connection, reads the ClientHello, answers with plain HTTP and waits for the
 * client to hang up. */
static void *answer_garbage(void *arg)
{
	static const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
	int listen_fd = *(const int *)arg, fd;
	struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };
	char buf[4096];

	if (poll(&pfd, 1, 10000) <= 0)
		return NULL;
	fd = accept(listen_fd, NULL, NULL);
	if (fd < 0)
		return NULL;
	pfd.fd = fd;
	if (poll(&pfd, 1, 10000) > 0 && read(fd, buf, sizeof(buf)) > 0 &&
	    write(fd, reply, sizeof(reply) - 1) == (ssize_t)(sizeof(reply) - 1)) {
		while (poll(&pfd, 1, 10000) > 0 && read(fd, buf, sizeof(buf)) > 0)
			;
	}
	close(fd);
	return NULL;
}

static void test_fetch_handshake_fails_on_garbage(void **state)
{
	char url[64], shown[64];
	pthread_t thread;
	int fd, port;

	(void)state;
	fd = local_socket(8, &port);
	assert_int_equal(pthread_create(&thread, NULL, answer_garbage, &fd), 0);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
	snprintf(shown, sizeof(shown), "TLS handshake with 127.0.0.1:%d failed: ", port);
	assert_true(fetch_fails(url, 5000, shown, NULL) < 2000);
	pthread_join(thread, NULL);
	close(fd);
}

/* A server that closes the connection as soon as it has accepted it. */
static void *hang_up(void *arg)
{
	int listen_fd = *(const int *)arg, fd;
	struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };

	if (poll(&pfd, 1, 10000) <= 0)
		return NULL;
	fd = accept(listen_fd, NULL, NULL);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* The process survives the server hanging up (no SIGPIPE), and says so. */
static void test_fetch_handshake_fails_on_hang_up(void **state)
{
	char url[64], shown[64];
	pthread_t thread;
	int fd, port;

	(void)state;
	fd = local_socket(8, &port);
	assert_int_equal(pthread_create(&thread, NULL, hang_up, &fd), 0);
	snprintf(url, sizeof(url), "ldaps://127.0.0.1:%d", port);
	snprintf(shown, sizeof(shown), "TLS handshake with 127.0.0.1:%d failed", port);
	assert_true(fetch_fails(url, 5000, shown, NULL) < 2000);
	pthread_join(thread, NULL);
	close(fd);
}

/* A resolver that takes SLOW_RESOLVE_MS to answer for "slow.test": this program's getaddrinfo
 * comes before the C library's, to which it passes every other name. */
#define SLOW_RESOLVE_MS 600
static atomic_int slow_resolves_done;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	int (*next)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

	if (node != NULL && strcmp(node, "slow.test") == 0) {
		sleep_ms(SLOW_RESOLVE_MS);
		slow_resolves_done++;
		return EAI_NONAME;
	}
	*(void **)&next = dlsym(RTLD_NEXT, "getaddrinfo");
	if (next == NULL)
		return EAI_SYSTEM;
	return next(node, service, hints, res);
}

/* Name resolution counts against the timeout: the fetch stops waiting for a slow resolver,
 * which finishes on its own afterwards. */
static void test_fetch_times_out_resolving(void **state)
{
	int64_t took, give_up;

	(void)state;
	slow_resolves_done = 0;
	took = fetch_fails("https://slow.test:8443", 200, "resolving slow.test timed out",
			   "timed out after 200 ms");
	assert_in_range(took, 195, 200 + MARGIN_MS);
	assert_int_equal(slow_resolves_done, 0);
	/* The resolver's thread ends (and frees what it shared) without anyone waiting. */
	for (give_up = monotonic_ms() + 5000; slow_resolves_done == 0; sleep_ms(10))
		assert_true(monotonic_ms() < give_up);
}

/* A name that does not resolve fails within the timeout, whatever the resolver does. */
static void test_fetch_name_does_not_resolve(void **state)
{
	int64_t took;

	(void)state;
	took = fetch_fails("https://no-such-host.invalid", 2000, "no-such-host.invalid", NULL);
	assert_true(took <= 2000 + MARGIN_MS);
}

/* ---- HTTP for revocation data ---- */

static void test_http_url_check(void **state)
{
	static const char *const good[] = { "http://ocsp.example/", "HTTPS://crl.example/a.crl",
					    "http://127.0.0.1:8080", NULL };
	static const char *const bad[] = { "ftp://x/", "ldap://crl.example/cn=x", "file:///etc/passwd",
					   "http://", "http:///x", "http://a b/", "http://\x01/",
					   "gopher://x", NULL };
	struct cv_errmsg err = { "" };
	char long_url[CV_NET_URL_MAX + 16];
	size_t i;

	(void)state;
	for (i = 0; good[i] != NULL; i++)
		assert_int_equal(cv_net_http_url_check(good[i], &err), 0);
	for (i = 0; bad[i] != NULL; i++)
		if (cv_net_http_url_check(bad[i], &err) != CV_ERR_BAD_REQUEST)
			fail_msg("%s was taken", bad[i]);
	memcpy(long_url, "http://x/", 9);
	memset(long_url + 9, 'a', sizeof(long_url) - 10);
	long_url[sizeof(long_url) - 1] = '\0';
	assert_int_equal(cv_net_http_url_check(long_url, &err), CV_ERR_BAD_REQUEST);
}

static void test_http_fetch_refused_and_silent(void **state)
{
	struct cv_errmsg err = { "" };
	unsigned char *data = NULL;
	size_t len = 0;
	char url[64];
	int fd, port;

	(void)state;
	assert_int_equal(cv_net_http_fetch(&loopback, "ftp://x/", NULL, NULL, 0, 1000, 10, &data, &len, &err),
			 CV_ERR_BAD_REQUEST);
	fd = local_socket(-1, &port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
	assert_int_equal(cv_net_http_fetch(&loopback, url, NULL, NULL, 0, 0, 10, &data, &len, &err),
			 CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_net_http_fetch(&loopback, url, NULL, NULL, 0, 2000, 10, &data, &len, &err),
			 CV_ERR_UNREACHABLE);
	assert_non_null(strstr(err.text, url));
	close(fd);
	/* Accepted by the kernel, never answered: the time runs out. */
	fd = local_socket(8, &port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ocsp", port);
	assert_int_equal(cv_net_http_fetch(&loopback, url, "application/ocsp-request",
					   (const unsigned char *)"x", 1, 300, 10, &data, &len,
					   &err),
			 CV_ERR_UNREACHABLE);
	assert_non_null(strstr(err.text, "timed out after 300 ms"));
	assert_null(data);
	close(fd);
}


/* ---- the address policy (issue 16 item 7) ---- */

static enum cv_net_class class_of(const char *text)
{
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in in = { .sin_family = AF_INET };

	if (inet_pton(AF_INET, text, &in.sin_addr) == 1)
		return cv_net_addr_classify((struct sockaddr *)&in);
	if (inet_pton(AF_INET6, text, &in6.sin6_addr) != 1)
		fail_msg("%s is no address", text);
	return cv_net_addr_classify((struct sockaddr *)&in6);
}

static void test_address_classes(void **state)
{
	static const struct {
		const char *addr;
		enum cv_net_class cls;
	} table[] = {
		{ "8.8.8.8", CV_NET_PUBLIC }, { "1.1.1.1", CV_NET_PUBLIC },
		{ "0.0.0.0", CV_NET_UNSPECIFIED }, { "0.1.2.3", CV_NET_UNSPECIFIED },
		{ "127.0.0.1", CV_NET_LOOPBACK }, { "127.255.255.254", CV_NET_LOOPBACK },
		{ "10.0.0.1", CV_NET_PRIVATE }, { "172.16.0.1", CV_NET_PRIVATE },
		{ "172.31.255.255", CV_NET_PRIVATE }, { "172.32.0.1", CV_NET_PUBLIC },
		{ "172.15.255.255", CV_NET_PUBLIC }, { "192.168.1.1", CV_NET_PRIVATE },
		{ "100.64.0.1", CV_NET_SHARED }, { "100.127.255.255", CV_NET_SHARED },
		{ "100.128.0.1", CV_NET_PUBLIC }, { "169.254.169.254", CV_NET_LINK_LOCAL },
		{ "224.0.0.1", CV_NET_MULTICAST }, { "239.255.255.250", CV_NET_MULTICAST },
		{ "255.255.255.255", CV_NET_RESERVED }, { "240.0.0.1", CV_NET_RESERVED },
		{ "192.0.2.1", CV_NET_RESERVED }, { "198.18.0.1", CV_NET_RESERVED },
		{ "198.51.100.7", CV_NET_RESERVED }, { "203.0.113.9", CV_NET_RESERVED },
		{ "192.0.0.8", CV_NET_RESERVED },
		{ "2606:4700::1111", CV_NET_PUBLIC }, { "2001:4860:4860::8888", CV_NET_PUBLIC },
		{ "::", CV_NET_UNSPECIFIED }, { "::1", CV_NET_LOOPBACK },
		{ "fe80::1", CV_NET_LINK_LOCAL }, { "febf::1", CV_NET_LINK_LOCAL },
		{ "fc00::1", CV_NET_UNIQUE_LOCAL }, { "fd12:3456::1", CV_NET_UNIQUE_LOCAL },
		{ "ff02::1", CV_NET_MULTICAST }, { "fec0::1", CV_NET_PRIVATE },
		{ "2001:db8::1", CV_NET_RESERVED }, { "2001::1", CV_NET_RESERVED },
		{ "100::1", CV_NET_RESERVED }, { "::7f00:1", CV_NET_RESERVED },
		{ "4000::1", CV_NET_RESERVED }, { "64:ff9b:1::1", CV_NET_RESERVED },
		/* IPv6 forms that reach an IPv4 address are that address. */
		{ "::ffff:127.0.0.1", CV_NET_LOOPBACK }, { "::ffff:10.1.2.3", CV_NET_PRIVATE },
		{ "::ffff:169.254.169.254", CV_NET_LINK_LOCAL }, { "::ffff:8.8.8.8", CV_NET_PUBLIC },
		{ "64:ff9b::127.0.0.1", CV_NET_LOOPBACK }, { "64:ff9b::8.8.8.8", CV_NET_PUBLIC },
		{ "2002:7f00:1::", CV_NET_LOOPBACK }, { "2002:c0a8:101::1", CV_NET_PRIVATE },
		{ "2002:808:808::1", CV_NET_PUBLIC },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (class_of(table[i].addr) != table[i].cls)
			fail_msg("%s is %s, not %s", table[i].addr,
				 cv_net_class_name(class_of(table[i].addr)),
				 cv_net_class_name(table[i].cls));
}

static int check_at(const struct cv_net_policy *p, const char *text, int port,
		    struct cv_errmsg *err)
{
	static const int ports[] = { 80, 443, 0 };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in in = { .sin_family = AF_INET };

	in.sin_port = in6.sin6_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, text, &in.sin_addr) == 1)
		return cv_net_policy_check(p, ports, (struct sockaddr *)&in, err);
	assert_int_equal(inet_pton(AF_INET6, text, &in6.sin6_addr), 1);
	return cv_net_policy_check(p, ports, (struct sockaddr *)&in6, err);
}

static void test_policy(void **state)
{
	static const char *const bad_networks[] = { "10.0.0.0/33", "10.1.2.3/8", "example.com",
						    "::1/129", "10.0.0.0/x", "10.0.0.0/", NULL };
	static const char *const bad_ports[] = { "0", "65536", "http", "80-90", NULL };
	struct cv_errmsg err = { "" };
	struct cv_net_policy p;
	size_t i;

	(void)state;
	/* Zeroed: public addresses on 80 and 443 only. */
	memset(&p, 0, sizeof(p));
	assert_int_equal(check_at(&p, "8.8.8.8", 443, &err), 0);
	assert_int_equal(check_at(&p, "2606:4700::1111", 80, &err), 0);
	assert_int_equal(check_at(&p, "8.8.8.8", 22, &err), CV_ERR_FORBIDDEN);
	assert_non_null(strstr(err.text, "port 22"));
	assert_int_equal(check_at(&p, "127.0.0.1", 80, &err), CV_ERR_FORBIDDEN);
	assert_non_null(strstr(err.text, "127.0.0.1 is a loopback address"));
	assert_int_equal(check_at(&p, "::ffff:127.0.0.1", 80, &err), CV_ERR_FORBIDDEN);
	assert_int_equal(check_at(&p, "169.254.169.254", 80, &err), CV_ERR_FORBIDDEN);
	assert_non_null(strstr(err.text, "link-local"));
	assert_int_equal(check_at(&p, "fd00::1", 443, &err), CV_ERR_FORBIDDEN);
	/* No policy and no default ports: 0.0.0.0:0 is neither. */
	assert_int_equal(check_at(NULL, "0.0.0.0", 0, &err), CV_ERR_FORBIDDEN);
	assert_non_null(strstr(err.text, "unspecified"));

	/* Named networks, whole; extra ports on public addresses. */
	assert_int_equal(cv_net_policy_parse("127.0.0.0/8, 10.20.0.0/16 fd00::/8", "8080,8443",
					     &p, &err), 0);
	assert_int_equal(p.n_networks, 3);
	assert_int_equal(check_at(&p, "127.0.0.1", 39999, &err), 0);
	assert_int_equal(check_at(&p, "::ffff:127.0.0.1", 39999, &err), 0);
	assert_int_equal(check_at(&p, "10.20.3.4", 5432, &err), 0);
	assert_int_equal(check_at(&p, "10.21.0.1", 80, &err), CV_ERR_FORBIDDEN);
	assert_int_equal(check_at(&p, "fd00::5", 636, &err), 0);
	assert_int_equal(check_at(&p, "::1", 80, &err), CV_ERR_FORBIDDEN);
	assert_int_equal(check_at(&p, "8.8.8.8", 8443, &err), 0);
	assert_int_equal(check_at(&p, "8.8.8.8", 8444, &err), CV_ERR_FORBIDDEN);
	assert_int_equal(cv_net_policy_parse("", "", &p, &err), 0);
	assert_int_equal(p.n_networks + p.n_ports, 0);

	for (i = 0; bad_networks[i] != NULL; i++)
		if (cv_net_policy_parse(bad_networks[i], NULL, &p, &err) != CV_ERR_CONFIG)
			fail_msg("network %s was taken", bad_networks[i]);
	assert_int_equal(cv_net_policy_parse("10.1.2.3/8", NULL, &p, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "past its prefix"));
	for (i = 0; bad_ports[i] != NULL; i++)
		if (cv_net_policy_parse(NULL, bad_ports[i], &p, &err) != CV_ERR_CONFIG)
			fail_msg("port %s was taken", bad_ports[i]);
}

/* A listener on loopback that must see nothing: a fetch the policy refuses makes no
 * connection at all, not one it closes at once. */
static void assert_no_connection(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&pfd, 1, 200), 0);
}

static void test_policy_refuses_before_connecting(void **state)
{
	struct cv_net_policy strict, other;
	struct cv_errmsg err = { "" };
	STACK_OF(X509) *chain = NULL;
	unsigned char *data = NULL;
	size_t len = 0;
	char url[96];
	int fd, port;

	(void)state;
	memset(&strict, 0, sizeof(strict));
	/* A policy naming other networks refuses loopback all the same. */
	assert_int_equal(cv_net_policy_parse("10.0.0.0/8", NULL, &other, &err), 0);
	fd = local_socket(8, &port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ocsp", port);
	assert_int_equal(cv_net_http_fetch(&strict, url, "application/ocsp-request",
					   (const unsigned char *)"x", 1, 2000, 10, &data, &len,
					   &err), CV_ERR_FORBIDDEN);
	assert_non_null(strstr(err.text, "127.0.0.1 is a loopback address"));
	assert_int_equal(cv_net_http_fetch(&other, url, NULL, NULL, 0, 2000, 10, &data, &len,
					   &err), CV_ERR_FORBIDDEN);
	/* A name resolves first: localhost is refused for what it resolves to. */
	snprintf(url, sizeof(url), "http://localhost:%d/crl", port);
	assert_int_equal(cv_net_http_fetch(&strict, url, NULL, NULL, 0, 2000, 10, &data, &len,
					   &err), CV_ERR_FORBIDDEN);
	assert_null(data);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
	assert_int_equal(cv_net_fetch_chain(&strict, url, 2000, &chain, &err), CV_ERR_FORBIDDEN);
	assert_non_null(strstr(err.text, "loopback"));
	snprintf(url, sizeof(url), "ldaps://localhost:%d", port);
	assert_int_equal(cv_net_fetch_chain(&strict, url, 2000, &chain, &err), CV_ERR_FORBIDDEN);
	assert_null(chain);
	assert_no_connection(fd);
	close(fd);
}

/* An allowed server that redirects to a refused one: the redirect's connection is refused
 * too, and the refused listener sees nothing. */
struct redirector {
	int listen_fd;
	int target_port;
};

static void *redirect_once(void *arg)
{
	const struct redirector *rd = arg;
	struct pollfd pfd = { .fd = rd->listen_fd, .events = POLLIN };
	char buf[4096], reply[256];
	int fd, n;

	if (poll(&pfd, 1, 10000) <= 0)
		return NULL;
	fd = accept(rd->listen_fd, NULL, NULL);
	if (fd < 0)
		return NULL;
	pfd.fd = fd;
	if (poll(&pfd, 1, 10000) > 0 && read(fd, buf, sizeof(buf)) > 0) {
		n = snprintf(reply, sizeof(reply), "HTTP/1.1 302 Found\r\nLocation: "
			     "http://127.0.0.2:%d/next\r\nContent-Length: 0\r\n"
			     "Connection: close\r\n\r\n", rd->target_port);
		if (write(fd, reply, (size_t)n) != n)
			n = 0;
	}
	close(fd);
	return NULL;
}

static void test_policy_applies_to_redirects(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct cv_errmsg err = { "" };
	struct cv_net_policy only_first;
	struct redirector rd;
	unsigned char *data = NULL;
	socklen_t sl = sizeof(sa);
	pthread_t thread;
	size_t len = 0;
	char url[96];
	int target, port;

	(void)state;
	/* The target listens on 127.0.0.2, which the policy does not name. */
	target = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(target >= 0);
	inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
	assert_int_equal(bind(target, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(target, 8), 0);
	assert_int_equal(getsockname(target, (struct sockaddr *)&sa, &sl), 0);
	rd.target_port = ntohs(sa.sin_port);
	rd.listen_fd = local_socket(8, &port);
	assert_int_equal(cv_net_policy_parse("127.0.0.1", NULL, &only_first, &err), 0);
	assert_int_equal(pthread_create(&thread, NULL, redirect_once, &rd), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/crl", port);
	assert_int_equal(cv_net_http_fetch(&only_first, url, NULL, NULL, 0, 5000, 100, &data,
					   &len, &err), CV_ERR_FORBIDDEN);
	assert_non_null(strstr(err.text, "127.0.0.2 is a loopback address"));
	pthread_join(thread, NULL);
	assert_no_connection(target);
	close(target);
	close(rd.listen_fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_parse_accepts),
		cmocka_unit_test(test_url_parse_refuses),
		cmocka_unit_test(test_http_url_check),
		cmocka_unit_test(test_http_fetch_refused_and_silent),
		cmocka_unit_test(test_fetch_refuses_bad_arguments),
		cmocka_unit_test(test_fetch_https_chain),
		cmocka_unit_test(test_fetch_ldaps_chain),
		cmocka_unit_test(test_fetch_sends_sni_for_names_only),
		cmocka_unit_test(test_fetch_ipv6_address),
		cmocka_unit_test(test_fetch_limits_chain_length),
		cmocka_unit_test(test_fetch_connection_refused),
		cmocka_unit_test(test_fetch_times_out_on_silent_server),
		cmocka_unit_test(test_fetch_times_out_connecting),
		cmocka_unit_test(test_fetch_handshake_fails_on_garbage),
		cmocka_unit_test(test_fetch_handshake_fails_on_hang_up),
		cmocka_unit_test(test_fetch_name_does_not_resolve),
		cmocka_unit_test(test_fetch_times_out_resolving),
		cmocka_unit_test(test_address_classes),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_policy_refuses_before_connecting),
		cmocka_unit_test(test_policy_applies_to_redirects),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
