/* net: notification deliveries with libcurl, a webhook POST and an SMTP message, each
 * connection checked against the address policy as the fetches' are. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/socket.h>

#include <curl/curl.h>

#include "certvault/net.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The policy as libcurl's socket callback sees it, and its first refusal. */
struct gate {
	const struct cv_net_policy *policy;
	const int *default_ports;
	int refused;
	struct cv_errmsg why;
};

static curl_socket_t gate_open(void *arg, curlsocktype purpose, struct curl_sockaddr *address)
{
	struct gate *g = arg;
	struct cv_errmsg why = { "" };
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN ||
	    cv_net_policy_check(g->policy, g->default_ports, &address->addr, &why) < 0) {
		if (!g->refused) {
			g->refused = 1;
			g->why = why;
			if (purpose != CURLSOCKTYPE_IPCXN)
				cv_errmsg_set(&g->why, CV_ERR_FORBIDDEN, "not a plain connection");
		}
		return CURL_SOCKET_BAD;
	}
	fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static const int webhook_ports[] = { 80, 443, 0 };
static const int smtp_ports[] = { 25, 465, 587, 0 };

/* The scheme and host[:port] of url, for messages: a webhook's path or query may hold its
 * own secret (a chat service's incoming-hook token), so it is never repeated. */
static void url_origin(const char *url, char *buf, size_t len)
{
	const char *p = strstr(url, "://");
	size_t n;

	if (p == NULL) {
		snprintf(buf, len, "(a URL)");
		return;
	}
	n = (size_t)(p - url) + 3;
	n += strcspn(url + n, "/?#");
	snprintf(buf, len, "%.*s", (int)(n < 200 ? n : 200), url);
}

static int url_common_check(const char *url, size_t max, const char *const *schemes,
			    const char *which, struct cv_errmsg *err, size_t *ret_skip)
{
	size_t len = strlen(url), i, skip = 0, host;

	if (len > max)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL is longer than %zu bytes",
				     max);
	for (i = 0; schemes[i] != NULL; i++)
		if (strncasecmp(url, schemes[i], strlen(schemes[i])) == 0)
			skip = strlen(schemes[i]);
	if (skip == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "%s", which);
	for (i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "the URL holds a space or a character that is not "
					     "printable ASCII");
	host = strcspn(url + skip, "/?#");
	if (host == 0 || url[skip] == ':')
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL names no host");
	if (memchr(url + skip, '@', host) != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL may not hold a user name "
				     "or password");
	*ret_skip = skip;
	return 0;
}

int cv_net_webhook_url_check(const char *url, size_t max, struct cv_errmsg *err)
{
	static const char *const schemes[] = { "http://", "https://", NULL };
	size_t skip;
	int r = url_common_check(url, max, schemes, "a webhook URL is http:// or https://", err,
				 &skip);

	if (r == 0 && strchr(url, '#') != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a webhook URL has no fragment");
	return r;
}

int cv_net_smtp_url_check(const char *url, size_t max, struct cv_errmsg *err)
{
	static const char *const schemes[] = { "smtp://", "smtps://", NULL };
	size_t skip;
	int r = url_common_check(url, max, schemes, "an SMTP URL is smtp:// or smtps://", err,
				 &skip);

	if (r == 0 && strpbrk(url + skip, "?#") != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "an SMTP URL has no query or "
				     "fragment");
	return r;
}

/* Answers are read and dropped: only the status matters, and a receiver gets no say in how
 * much memory a delivery takes. */
static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * nmemb;
}

/* What a finished perform means, as the API's errors. */
static int perform_result(CURL *curl, CURLcode rc, const struct gate *gate, const char *url,
			  const char *errbuf, int timeout_ms, struct cv_errmsg *err)
{
	char origin[224];

	(void)curl;
	url_origin(url, origin, sizeof(origin));
	if (gate->refused && rc != CURLE_OK)
		return cv_errmsg_set(err, CV_ERR_FORBIDDEN, "%s: not connecting: %s", origin,
				     gate->why.text);
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return cv_errmsg_set(err, CV_ERR_UNREACHABLE, "%s: timed out after %d ms", origin,
				     timeout_ms);
	if (rc != CURLE_OK)
		return cv_errmsg_set(err, rc == CURLE_OUT_OF_MEMORY ? CV_ERR_NOMEM :
				     CV_ERR_UNREACHABLE, "%s: %.120s", origin,
				     errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
	return 0;
}

int cv_net_webhook_post(const struct cv_net_policy *policy, const char *url,
			const char *const *headers, const char *body, size_t body_len,
			int timeout_ms, long *ret_status, struct cv_errmsg *err)
{
	struct gate gate = { policy, webhook_ports, 0, { "" } };
	struct curl_slist *list = NULL, *grown;
	char errbuf[CURL_ERROR_SIZE] = "", origin[224];
	long status = 0;
	CURLcode rc;
	CURL *curl = NULL;
	size_t i;
	int r;

	*ret_status = 0;
	r = cv_net_webhook_url_check(url, 4096, err);
	if (r < 0)
		return r;
	if (timeout_ms <= 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the timeout must be positive");
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "libcurl could not be initialised");
	curl = curl_easy_init();
	if (curl == NULL)
		return CV_ERR_NOMEM;
	/* No "Expect: 100-continue": a receiver that does not answer it would cost a second. */
	grown = curl_slist_append(list, "Expect:");
	for (i = 0; grown != NULL && headers[i] != NULL; i++) {
		list = grown;
		grown = curl_slist_append(list, headers[i]);
	}
	if (grown == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	list = grown;
	grown = curl_slist_append(list, "Content-Type: application/json");
	if (grown == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	list = grown;
	if (curl_easy_setopt(curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_PROXY, "") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_USERAGENT, "certvaultd") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, gate_open) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &gate) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) !=
		    CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list) != CURLE_OK) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "libcurl refused an option");
		goto out;
	}
	rc = curl_easy_perform(curl);
	r = perform_result(curl, rc, &gate, url, errbuf, timeout_ms, err);
	if (r < 0)
		goto out;
	if (curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		status = 0;
	*ret_status = status;
	if (status < 200 || status > 299) {
		url_origin(url, origin, sizeof(origin));
		r = cv_errmsg_set(err, CV_ERR_UNREACHABLE, "%s answered HTTP %ld", origin, status);
		goto out;
	}
	r = 0;
out:
	curl_slist_free_all(list);
	curl_easy_cleanup(curl);
	return r;
}

struct reader {
	const char *data;
	size_t len, off;
};

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct reader *rd = arg;
	size_t n = size * nitems;

	if (n > rd->len - rd->off)
		n = rd->len - rd->off;
	memcpy(buf, rd->data + rd->off, n);
	rd->off += n;
	return n;
}

int cv_net_smtp_send(const struct cv_net_policy *policy, const char *url, const char *username,
		     const char *password, const char *mail_from, const char *const *rcpt,
		     size_t n_rcpt, const char *message, size_t message_len, int timeout_ms,
		     struct cv_errmsg *err)
{
	struct gate gate = { policy, smtp_ports, 0, { "" } };
	struct reader rd = { message, message_len, 0 };
	struct curl_slist *list = NULL, *grown;
	char errbuf[CURL_ERROR_SIZE] = "", from[300];
	CURLcode rc;
	CURL *curl = NULL;
	size_t i;
	int r;

	r = cv_net_smtp_url_check(url, 4096, err);
	if (r < 0)
		return r;
	if (timeout_ms <= 0 || n_rcpt == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "no recipient or no time");
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "libcurl could not be initialised");
	curl = curl_easy_init();
	if (curl == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; i < n_rcpt; i++) {
		char to[300];

		snprintf(to, sizeof(to), "<%s>", rcpt[i]);
		grown = curl_slist_append(list, to);
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		list = grown;
	}
	snprintf(from, sizeof(from), "<%s>", mail_from);
	if (curl_easy_setopt(curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_PROXY, "") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, gate_open) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &gate) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, list) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_READDATA, &rd) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L) != CURLE_OK ||
	    (username != NULL && username[0] != '\0' &&
	     (curl_easy_setopt(curl, CURLOPT_USERNAME, username) != CURLE_OK ||
	      curl_easy_setopt(curl, CURLOPT_PASSWORD, password != NULL ? password : "") !=
		      CURLE_OK))) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "libcurl refused an option");
		goto out;
	}
	rc = curl_easy_perform(curl);
	r = perform_result(curl, rc, &gate, url, errbuf, timeout_ms, err);
out:
	curl_slist_free_all(list);
	/* The password stays in libcurl's handle until it is cleaned up: that happens here. */
	curl_easy_cleanup(curl);
	return r;
}
