/* net: the URL of a TLS endpoint, and the certificate chain it presents. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "certvault/net.h"
#include "certvault/util.h"
#include "certvault/x509.h"

/* What every failure to reach the endpoint or to learn its chain returns. */
#define FETCH_FAILED CV_ERR_UNREACHABLE

#define DNS_NAME_MAX 253
#define DNS_LABEL_MAX 63

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_ldh(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* A DNS name, or an IPv4 address when it is made of digits and dots only (a name's last label
 * is never all digits). */
static int check_host_name(const char *host, struct cv_errmsg *err)
{
	size_t label = 0, i;
	int digits_and_dots = 1;
	unsigned char addr[4];

	for (i = 0; host[i] != '\0'; i++) {
		if (host[i] == '.') {
			if (label == 0)
				goto bad;
			label = 0;
			continue;
		}
		if (!is_ldh(host[i]))
			goto bad;
		if (!is_digit(host[i]))
			digits_and_dots = 0;
		if (++label > DNS_LABEL_MAX)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a label of the host name in the"
					     " URL is longer than %d characters", DNS_LABEL_MAX);
	}
	if (label == 0)
		goto bad;
	if (i > DNS_NAME_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the host name in the URL is longer"
				     " than %d characters", DNS_NAME_MAX);
	if (digits_and_dots && inet_pton(AF_INET, host, addr) != 1)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is not a valid IPv4 address",
				     host);
	return 0;
bad:
	return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is not a valid host name: dot-separated"
			     " labels of letters, digits and hyphens", host);
}

/* The decimal port in [s, end): 1 to 65535. */
static int parse_port(const char *s, const char *end, int *ret_port, struct cv_errmsg *err)
{
	int port = 0;
	const char *p;

	if (end == s || end - s > 5)
		goto bad;
	for (p = s; p < end; p++) {
		if (!is_digit(*p))
			goto bad;
		port = port * 10 + (*p - '0');
	}
	if (port < 1 || port > 65535)
		goto bad;
	*ret_port = port;
	return 0;
bad:
	return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the port in the URL must be a number from 1"
			     " to 65535");
}

int cv_net_url_parse(const char *url, char *host, size_t host_len, int *ret_port,
		     int *ret_ldaps, struct cv_errmsg *err)
{
	const char *auth, *auth_end, *h, *h_end, *p;
	unsigned char addr6[16];
	int ipv6 = 0, port, ldaps;
	size_t n;

	if (url == NULL || *url == '\0')
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "no URL was given");
	for (p = url; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL contains a space, a"
					     " control character or a non-ASCII character");
	if (strncasecmp(url, "https://", 8) == 0) {
		ldaps = 0;
		port = 443;
	} else if (strncasecmp(url, "ldaps://", 8) == 0) {
		ldaps = 1;
		port = 636;
	} else {
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL must start with https:// or"
				     " ldaps://");
	}
	auth = url + 8;
	auth_end = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', (size_t)(auth_end - auth)) != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL may not contain user"
				     " information (\"user@\")");
	if (*auth_end != '\0' && strcmp(auth_end, "/") != 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "nothing may follow the host and port"
				     " in the URL but \"/\": no path, query or fragment");

	if (*auth == '[') {
		ipv6 = 1;
		h = auth + 1;
		h_end = memchr(h, ']', (size_t)(auth_end - h));
		if (h_end == NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the IPv6 address in the URL"
					     " lacks its closing \"]\"");
		p = h_end + 1;
	} else {
		h = auth;
		h_end = memchr(auth, ':', (size_t)(auth_end - auth));
		if (h_end == NULL)
			h_end = auth_end;
		else if (memchr(h_end + 1, ':', (size_t)(auth_end - h_end - 1)) != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL has more than one"
					     " \":\" after the host; an IPv6 address is written in"
					     " brackets: https://[::1]:443");
		p = h_end;
	}
	if (p < auth_end) {
		if (*p != ':')
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "only a port (\":443\") may"
					     " follow the IPv6 address in the URL");
		if (parse_port(p + 1, auth_end, &port, err) < 0)
			return CV_ERR_BAD_REQUEST;
	}

	n = (size_t)(h_end - h);
	if (n == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL names no host");
	if (n > DNS_NAME_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the host name in the URL is longer"
				     " than %d characters", DNS_NAME_MAX);
	if (n >= host_len)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the host name in the URL is too"
				     " long");
	memcpy(host, h, n);
	host[n] = '\0';
	if (ipv6) {
		if (strchr(host, '%') != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "an IPv6 zone (\"%%eth0\") is"
					     " not accepted in the URL");
		if (inet_pton(AF_INET6, host, addr6) != 1)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is not a valid IPv6"
					     " address", host);
	} else if (check_host_name(host, err) < 0) {
		return CV_ERR_BAD_REQUEST;
	}
	*ret_port = port;
	*ret_ldaps = ldaps;
	return 0;
}

/* One fetch: where to, for messages, and until when. */
struct endpoint {
	char host[CV_NET_HOST_MAX];
	char service[8];                  /* the port, as getaddrinfo takes it */
	char shown[CV_NET_HOST_MAX + 10]; /* "host:port", "[2001:db8::1]:636" */
	int is_address;                   /* a literal address: no DNS, no SNI */
	int timeout_ms;
	int64_t deadline_ms;              /* CLOCK_MONOTONIC */
};

/* Milliseconds left before the deadline; 0 once it has passed. */
static int time_left(const struct endpoint *ep)
{
	int64_t left = ep->deadline_ms - cv_monotonic_ms();

	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

static int timed_out(const struct endpoint *ep, const char *what, struct cv_errmsg *err)
{
	return cv_errmsg_set(err, FETCH_FAILED, "%s %s timed out after %d ms", what, ep->shown,
			     ep->timeout_ms);
}

static const char *errno_text(int e, char *buf, size_t len)
{
	if (strerror_r(e, buf, len) != 0)
		snprintf(buf, len, "error %d", e);
	return buf;
}

/* Waits until fd is ready for events. Returns 0, -1 when the time ran out, or an errno. */
static int wait_ready(int fd, short events, const struct endpoint *ep)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int left, r;

	for (;;) {
		left = time_left(ep);
		if (left == 0)
			return -1;
		r = poll(&pfd, 1, left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return errno;
	}
}

/* getaddrinfo() cannot be given a deadline, so a name is resolved in a thread of its own that
 * the fetch stops waiting for when the time runs out. The job is freed by whichever of the two
 * lets go of it last. */
struct resolve_job {
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	int refs;
	int done;
	int gai_rc;
	int gai_errno; /* with EAI_SYSTEM */
	struct addrinfo *res;
	char host[CV_NET_HOST_MAX];
	char service[8];
};

/* Drops one reference; called with job->lock held, which it releases. */
static void resolve_job_unref(struct resolve_job *job)
{
	int last = --job->refs == 0;

	pthread_mutex_unlock(&job->lock);
	if (!last)
		return;
	if (job->res != NULL)
		freeaddrinfo(job->res);
	pthread_cond_destroy(&job->done_cond);
	pthread_mutex_destroy(&job->lock);
	free(job);
}

static void *resolve_thread(void *arg)
{
	struct resolve_job *job = arg;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int rc, sys_errno;

	rc = getaddrinfo(job->host, job->service, &hints, &res);
	sys_errno = rc == EAI_SYSTEM ? errno : 0;
	pthread_mutex_lock(&job->lock);
	job->gai_rc = rc;
	job->gai_errno = sys_errno;
	job->res = res;
	job->done = 1;
	pthread_cond_signal(&job->done_cond);
	resolve_job_unref(job);
	return NULL;
}

/* Starts job's thread. Returns 0 or an errno; on failure the job is the caller's alone. */
static int resolve_job_start(struct resolve_job *job)
{
	pthread_attr_t attr;
	pthread_t thread;
	int r;

	r = cv_cond_init_monotonic(&job->done_cond);
	if (r != 0)
		return r;
	r = pthread_mutex_init(&job->lock, NULL);
	if (r != 0) {
		pthread_cond_destroy(&job->done_cond);
		return r;
	}
	r = pthread_attr_init(&attr);
	if (r == 0) {
		r = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (r == 0) {
			job->refs = 2;
			r = pthread_create(&thread, &attr, resolve_thread, job);
		}
		pthread_attr_destroy(&attr);
	}
	if (r != 0) {
		pthread_mutex_destroy(&job->lock);
		pthread_cond_destroy(&job->done_cond);
	}
	return r;
}

/* The addresses of ep within the time left. *ret_res is the caller's (freeaddrinfo). */
static int resolve(const struct endpoint *ep, struct addrinfo **ret_res, struct cv_errmsg *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct resolve_job *job;
	struct timespec until;
	int rc, sys_errno, done;
	char why[128];

	if (ep->is_address) {
		rc = getaddrinfo(ep->host, ep->service, &hints, ret_res);
		if (rc != 0)
			return cv_errmsg_set(err, FETCH_FAILED, "cannot use the address %s: %s",
					     ep->host, gai_strerror(rc));
		return 0;
	}

	job = calloc(1, sizeof(*job));
	if (job == NULL)
		return CV_ERR_NOMEM;
	memcpy(job->host, ep->host, sizeof(job->host));
	memcpy(job->service, ep->service, sizeof(job->service));
	rc = resolve_job_start(job);
	if (rc != 0) {
		free(job);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start resolving %s: %s",
				     ep->host, errno_text(rc, why, sizeof(why)));
	}

	until.tv_sec = (time_t)(ep->deadline_ms / 1000);
	until.tv_nsec = (long)(ep->deadline_ms % 1000) * 1000000;
	pthread_mutex_lock(&job->lock);
	while (!job->done)
		if (pthread_cond_timedwait(&job->done_cond, &job->lock, &until) == ETIMEDOUT)
			break;
	done = job->done;
	rc = job->gai_rc;
	sys_errno = job->gai_errno;
	if (done && rc == 0) {
		*ret_res = job->res;
		job->res = NULL; /* transferred */
	}
	resolve_job_unref(job);

	if (!done)
		return cv_errmsg_set(err, FETCH_FAILED, "resolving %s timed out after %d ms",
				     ep->host, ep->timeout_ms);
	if (rc == EAI_SYSTEM)
		return cv_errmsg_set(err, FETCH_FAILED, "cannot resolve %s: %s", ep->host,
				     errno_text(sys_errno, why, sizeof(why)));
	if (rc != 0)
		return cv_errmsg_set(err, FETCH_FAILED, "cannot resolve %s: %s", ep->host,
				     gai_strerror(rc));
	return 0;
}

/* Connects to one address within the time left. Returns 0 with *ret_fd set, -1 when the time
 * ran out, or the errno of this address's failure. */
static int connect_address(const struct addrinfo *ai, const struct endpoint *ep, int *ret_fd)
{
	socklen_t len;
	int fd, r, so_error = 0;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    ai->ai_protocol);
	if (fd < 0)
		return errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
		r = 0;
		goto out;
	}
	if (errno != EINPROGRESS) {
		r = errno;
		goto out;
	}
	r = wait_ready(fd, POLLOUT, ep);
	if (r != 0)
		goto out;
	len = sizeof(so_error);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0)
		r = errno;
	else
		r = so_error;
out:
	if (r == 0)
		*ret_fd = fd;
	else
		close(fd);
	return r;
}

static const int tls_ports[] = { 443, 636, 0 };

/* A socket connected to the first of ep's addresses that policy allows and that answers. */
static int connect_endpoint(const struct cv_net_policy *policy, const struct endpoint *ep,
			    int *ret_fd, struct cv_errmsg *err)
{
	struct cv_errmsg refusal = { "" };
	struct addrinfo *res = NULL;
	const struct addrinfo *ai;
	int r, last_error = ENOTCONN, tried = 0;
	char why[128];

	r = resolve(ep, &res, err);
	if (r < 0)
		return r;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		/* Checked on what the name resolved to: the name itself proves nothing. */
		if (cv_net_policy_check(policy, tls_ports, ai->ai_addr, &refusal) < 0)
			continue;
		tried = 1;
		r = connect_address(ai, ep, ret_fd);
		if (r == 0)
			goto out;
		if (r < 0) {
			r = timed_out(ep, "connecting to", err);
			goto out;
		}
		last_error = r;
	}
	if (!tried)
		r = cv_errmsg_set(err, CV_ERR_FORBIDDEN, "not connecting to %s: %s", ep->shown,
				  refusal.text);
	else
		r = cv_errmsg_set(err, FETCH_FAILED, "cannot connect to %s: %s", ep->shown,
				  errno_text(last_error, why, sizeof(why)));
out:
	freeaddrinfo(res);
	return r;
}

/* The message for a handshake that SSL_connect() ended with ssl_error, OpenSSL's reason
 * taken from the error queue, or sys_errno when the socket failed. */
static int handshake_failed(const struct endpoint *ep, int ssl_error, int sys_errno,
			    struct cv_errmsg *err)
{
	unsigned long e = ERR_peek_error();
	const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
	char why[128];

	if (reason != NULL)
		return cv_errmsg_set(err, FETCH_FAILED, "the TLS handshake with %s failed: %s",
				     ep->shown, reason);
	if (ssl_error == SSL_ERROR_SYSCALL && sys_errno != 0)
		return cv_errmsg_set(err, FETCH_FAILED, "the TLS handshake with %s failed: %s",
				     ep->shown, errno_text(sys_errno, why, sizeof(why)));
	if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN)
		return cv_errmsg_set(err, FETCH_FAILED, "the TLS handshake with %s failed: the"
				     " server closed the connection", ep->shown);
	return cv_errmsg_set(err, FETCH_FAILED, "the TLS handshake with %s failed", ep->shown);
}

/* Runs the client handshake on a non-blocking socket within the time left. */
static int handshake(SSL *ssl, int fd, const struct endpoint *ep, struct cv_errmsg *err)
{
	int r, ssl_error, sys_errno;
	char why[128];

	for (;;) {
		errno = 0;
		r = SSL_connect(ssl);
		sys_errno = errno;
		if (r == 1)
			return 0;
		ssl_error = SSL_get_error(ssl, r);
		if (ssl_error == SSL_ERROR_WANT_READ)
			r = wait_ready(fd, POLLIN, ep);
		else if (ssl_error == SSL_ERROR_WANT_WRITE)
			r = wait_ready(fd, POLLOUT, ep);
		else
			return handshake_failed(ep, ssl_error, sys_errno, err);
		if (r < 0)
			return timed_out(ep, "the TLS handshake with", err);
		if (r > 0)
			return cv_errmsg_set(err, FETCH_FAILED, "the TLS handshake with %s failed:"
					     " %s", ep->shown, errno_text(r, why, sizeof(why)));
	}
}

/* A new stack holding, up-ref'd, the chain the server presented, leaf first. */
static int copy_peer_chain(const SSL *ssl, const struct endpoint *ep,
			   STACK_OF(X509) **ret_chain, struct cv_errmsg *err)
{
	STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl), *chain = NULL;
	int n = sent != NULL ? sk_X509_num(sent) : 0, i, r;

	if (n <= 0)
		return cv_errmsg_set(err, FETCH_FAILED, "%s presented no certificate", ep->shown);
	if (n > CV_X509_MAX_CHAIN + 1)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s presented %d certificates, more"
				     " than the %d accepted", ep->shown, n, CV_X509_MAX_CHAIN + 1);
	chain = sk_X509_new_reserve(NULL, n);
	if (chain == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; i < n; i++) {
		X509 *cert = sk_X509_value(sent, i);

		if (X509_up_ref(cert) != 1) {
			r = CV_ERR_INTERNAL;
			goto out;
		}
		if (sk_X509_push(chain, cert) <= 0) {
			X509_free(cert);
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	*ret_chain = chain;
	chain = NULL; /* transferred */
	r = 0;
out:
	sk_X509_pop_free(chain, X509_free);
	return r;
}

/* A server that closes the connection early makes the next write raise SIGPIPE, which would
 * end the process. It is held blocked in this thread during the fetch, and one that arose
 * meanwhile is discarded before the old mask returns. */
struct sigpipe_hold {
	sigset_t old_mask;
	int was_pending;
};

static void sigpipe_block(struct sigpipe_hold *hold)
{
	sigset_t pipe_set, pending;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	hold->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &pipe_set, &hold->old_mask);
}

static void sigpipe_release(const struct sigpipe_hold *hold)
{
	static const struct timespec no_wait = { 0, 0 };
	sigset_t pipe_set, pending;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	if (!hold->was_pending && sigpending(&pending) == 0 &&
	    sigismember(&pending, SIGPIPE) == 1) {
		while (sigtimedwait(&pipe_set, NULL, &no_wait) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &hold->old_mask, NULL);
}

static int endpoint_init(struct endpoint *ep, const char *url, int timeout_ms,
			 struct cv_errmsg *err)
{
	unsigned char addr[16];
	int r, port, ldaps, ipv6;

	memset(ep, 0, sizeof(*ep));
	r = cv_net_url_parse(url, ep->host, sizeof(ep->host), &port, &ldaps, err);
	if (r < 0)
		return r;
	if (timeout_ms <= 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the timeout must be positive");
	ipv6 = inet_pton(AF_INET6, ep->host, addr) == 1;
	ep->is_address = ipv6 || inet_pton(AF_INET, ep->host, addr) == 1;
	snprintf(ep->service, sizeof(ep->service), "%d", port);
	snprintf(ep->shown, sizeof(ep->shown), ipv6 ? "[%s]:%d" : "%s:%d", ep->host, port);
	ep->timeout_ms = timeout_ms;
	ep->deadline_ms = cv_monotonic_ms() + timeout_ms;
	return 0;
}

int cv_net_fetch_chain(const struct cv_net_policy *policy, const char *url, int timeout_ms,
		       STACK_OF(X509) **ret_chain, struct cv_errmsg *err)
{
	struct sigpipe_hold hold;
	struct endpoint ep;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	int fd = -1, r;

	r = endpoint_init(&ep, url, timeout_ms, err);
	if (r < 0)
		return r;
	sigpipe_block(&hold);
	ERR_clear_error();

	r = connect_endpoint(policy, &ep, &fd, err);
	if (r < 0)
		goto out;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	/* No verification: the chain is what the caller wants to learn, trusted or not. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot require TLS 1.2");
		goto out;
	}
	ssl = SSL_new(ctx);
	if (ssl == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (SSL_set_fd(ssl, fd) != 1) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	/* RFC 6066: SNI carries DNS names only, never a literal address. */
	if (!ep.is_address && SSL_set_tlsext_host_name(ssl, ep.host) != 1) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot set the server name %s", ep.host);
		goto out;
	}

	r = handshake(ssl, fd, &ep, err);
	if (r < 0)
		goto out;
	r = copy_peer_chain(ssl, &ep, ret_chain, err);
	if (r < 0)
		goto out;
	/* A courtesy close_notify; the chain is already ours whatever comes of it. */
	(void)SSL_shutdown(ssl);
	r = 0;
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	ERR_clear_error();
	sigpipe_release(&hold);
	return r;
}
