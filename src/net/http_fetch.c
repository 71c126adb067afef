/* net: HTTP GET and POST with libcurl, for OCSP responders and CRL distribution points. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/socket.h>

#include <curl/curl.h>

#include "certvault/net.h"

int cv_net_http_url_check(const char *url, struct cv_errmsg *err)
{
	size_t len = strlen(url), i, skip;

	if (len > CV_NET_URL_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL is longer than %d bytes",
				     CV_NET_URL_MAX);
	if (strncasecmp(url, "http://", 7) == 0)
		skip = 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		skip = 8;
	else
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "only http:// and https:// URLs are "
				     "fetched");
	if (len == skip || url[skip] == '/' || url[skip] == ':')
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the URL names no host");
	for (i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "the URL holds a space or a character that is not "
					     "printable ASCII");
	return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct sink {
	unsigned char *data;
	size_t len, max;
	int too_large;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;
	unsigned char *grown;

	if (n > s->max - s->len) {
		s->too_large = 1;
		return 0; /* curl stops with CURLE_WRITE_ERROR */
	}
	grown = realloc(s->data, s->len + n + 1);
	if (grown == NULL)
		return 0;
	s->data = grown;
	memcpy(s->data + s->len, ptr, n);
	s->len += n;
	return n;
}

/* The policy as libcurl's socket callback sees it, and the first refusal it made. */
struct gate {
	const struct cv_net_policy *policy;
	int refused;
	struct cv_errmsg why;
};

static const int http_ports[] = { 80, 443, 0 };

/* libcurl calls this for every connection it is about to make (each address of a name, each
 * redirect), with the address resolved: the one place where what is reached is known. A
 * refusal creates no socket, so nothing is sent anywhere. */
static curl_socket_t gate_open(void *arg, curlsocktype purpose, struct curl_sockaddr *address)
{
	struct gate *g = arg;
	struct cv_errmsg why = { "" };
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN ||
	    cv_net_policy_check(g->policy, http_ports, &address->addr, &why) < 0) {
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

int cv_net_http_fetch(const struct cv_net_policy *policy, const char *url,
		      const char *content_type, const unsigned char *body, size_t body_len,
		      int timeout_ms, size_t max_len, unsigned char **ret_data, size_t *ret_len,
		      struct cv_errmsg *err)
{
	struct gate gate = { policy, 0, { "" } };
	struct sink sink = { NULL, 0, max_len, 0 };
	struct curl_slist *headers = NULL;
	char errbuf[CURL_ERROR_SIZE] = "", header[128];
	long status = 0;
	CURLcode rc;
	CURL *curl = NULL;
	int r;

	r = cv_net_http_url_check(url, err);
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
	if (body != NULL) {
		snprintf(header, sizeof(header), "Content-Type: %s", content_type);
		headers = curl_slist_append(headers, header);
		if (headers == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	/* Every option is checked: one that does not take would change what is fetched. */
	if (curl_easy_setopt(curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 3L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_PROXY, "") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_len) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_USERAGENT, "certvaultd") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, gate_open) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &gate) != CURLE_OK ||
	    (body != NULL &&
	     (curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
	      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) !=
		      CURLE_OK ||
	      curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers) != CURLE_OK))) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "libcurl refused an option");
		goto out;
	}
	rc = curl_easy_perform(curl);
	if (gate.refused && rc != CURLE_OK) {
		r = cv_errmsg_set(err, CV_ERR_FORBIDDEN, "%.200s: not connecting: %s", url,
				  gate.why.text);
		goto out;
	}
	if (sink.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		r = cv_errmsg_set(err, CV_ERR_UNREACHABLE, "%.200s: the answer is larger than %zu "
				  "bytes", url, max_len);
		goto out;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		r = cv_errmsg_set(err, CV_ERR_UNREACHABLE, "%.200s: timed out after %d ms", url,
				  timeout_ms);
		goto out;
	}
	if (rc != CURLE_OK) {
		r = cv_errmsg_set(err, rc == CURLE_OUT_OF_MEMORY ? CV_ERR_NOMEM : CV_ERR_UNREACHABLE,
				  "%.200s: %.100s", url,
				  errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	if (curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
	    status != 200) {
		r = cv_errmsg_set(err, CV_ERR_UNREACHABLE, "%.200s: answered HTTP %ld", url, status);
		goto out;
	}
	if (sink.data == NULL && (sink.data = malloc(1)) == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	*ret_data = sink.data;
	*ret_len = sink.len;
	sink.data = NULL;
	r = 0;
out:
	free(sink.data);
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return r;
}
