/* cli: where certvaultd is, the access token, and one HTTP request with libcurl. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ini.h>
#include <openssl/crypto.h>

#include "certvault/cli.h"

#define DEFAULT_URL "http://127.0.0.1:8420"
#define TOKEN_MAX 512
#define CONFIG_MAX (64 * 1024)
/* The largest answer kept in memory: an inventory of 100,000 certificates is about 48 MB. */
#define RESPONSE_MAX ((size_t)512 * 1024 * 1024)

struct config {
	char *url, *token, *token_file, *cacert;
	int bad;
	char what[160];
};

static int config_entry(void *user, const char *section, const char *name, const char *value)
{
	struct config *c = user;
	char **slot = NULL;

	if (section[0] != '\0' && strcmp(section, "certvault") != 0)
		return 1; /* other programs' sections are theirs */
	if (strcmp(name, "url") == 0)
		slot = &c->url;
	else if (strcmp(name, "token") == 0)
		slot = &c->token;
	else if (strcmp(name, "token_file") == 0)
		slot = &c->token_file;
	else if (strcmp(name, "cacert") == 0)
		slot = &c->cacert;
	if (slot == NULL) {
		snprintf(c->what, sizeof(c->what), "unknown setting \"%.64s\"", name);
		c->bad = 1;
		return 0;
	}
	if (*slot != NULL)
		OPENSSL_clear_free(*slot, strlen(*slot));
	*slot = strdup(value);
	return *slot != NULL;
}

static void config_release(struct config *c)
{
	free(c->url);
	if (c->token != NULL)
		OPENSSL_clear_free(c->token, strlen(c->token));
	free(c->token_file);
	free(c->cacert);
}

/* Refuses a file holding a secret that its group or others may read or write (as ssh refuses
 * a private key others can read). */
static int check_private(const char *path, const char *what, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		snprintf(err, errlen,
			 "%s %s holds a token and its mode is %04o: others may read it; "
			 "chmod 600 %s",
			 what, path, (unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	return 0;
}

/* A token file: one line, the token. */
static int read_token_file(const char *path, char **ret, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;

	if (check_private(path, "token file", err, errlen) < 0)
		return -1;
	if (cv_cli_read_file(path, TOKEN_MAX, &buf, &len, err, errlen) < 0)
		return -1;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	if (len == 0 || strlen(buf) != len || strchr(buf, '\n') != NULL) {
		snprintf(err, errlen, "token file %s: one line with the token expected", path);
		OPENSSL_clear_free(buf, len);
		return -1;
	}
	*ret = buf;
	return 0;
}

static char *config_default_path(void)
{
	const char *env = getenv("CERTVAULT_CONFIG"), *base = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	char buf[4096];

	if (env != NULL && env[0] != '\0')
		return strdup(env);
	if (base != NULL && base[0] == '/')
		snprintf(buf, sizeof(buf), "%s/certvault/config", base);
	else if (home != NULL && home[0] == '/')
		snprintf(buf, sizeof(buf), "%s/.config/certvault/config", home);
	else
		return NULL;
	return strdup(buf);
}

static int load_config(const char *path, int must_exist, struct config *c, char *err,
		       size_t errlen)
{
	int line;

	if (access(path, F_OK) != 0) {
		if (!must_exist)
			return 0;
		snprintf(err, errlen, "config file %s: %s", path, strerror(errno));
		return -1;
	}
	line = ini_parse(path, config_entry, c);
	if (line != 0 || c->bad) {
		if (c->bad)
			snprintf(err, errlen, "config file %s: %s", path, c->what);
		else if (line < 0)
			snprintf(err, errlen, "config file %s: cannot read it", path);
		else
			snprintf(err, errlen, "config file %s: line %d is not `key = value`", path,
				 line);
		return -1;
	}
	if (c->token != NULL && check_private(path, "config file", err, errlen) < 0)
		return -1;
	return 0;
}

int cv_cli_conn_init(struct cv_cli_conn *conn, const char *url, const char *token_file,
		     const char *cacert, const char *config_path, char *err, size_t errlen)
{
	struct config c;
	char *path = NULL;
	const char *env_url = getenv("CERTVAULT_URL"), *env_token = getenv("CERTVAULT_TOKEN");
	const char *chosen;
	size_t n;
	int r = CV_CLI_USAGE;

	memset(conn, 0, sizeof(*conn));
	memset(&c, 0, sizeof(c));
	path = config_path != NULL ? strdup(config_path) : config_default_path();
	if (path != NULL && load_config(path, config_path != NULL, &c, err, errlen) < 0)
		goto out;

	chosen = url != NULL ? url : env_url != NULL && env_url[0] != '\0' ? env_url
				 : c.url != NULL ? c.url : DEFAULT_URL;
	if (strncmp(chosen, "http://", 7) != 0 && strncmp(chosen, "https://", 8) != 0) {
		snprintf(err, errlen, "url %.200s: http:// or https:// expected", chosen);
		goto out;
	}
	if ((conn->url = strdup(chosen)) == NULL)
		goto nomem;
	n = strlen(conn->url);
	while (n > 0 && conn->url[n - 1] == '/')
		conn->url[--n] = '\0';

	/* The token: --token-file, then CERTVAULT_TOKEN, then the config file's token or
	 * token_file. Never an argument: ps would show it. */
	if (token_file != NULL) {
		if (read_token_file(token_file, &conn->token, err, errlen) < 0)
			goto out;
	} else if (env_token != NULL && env_token[0] != '\0') {
		if ((conn->token = strdup(env_token)) == NULL)
			goto nomem;
	} else if (c.token != NULL) {
		conn->token = c.token;
		c.token = NULL;
	} else if (c.token_file != NULL) {
		if (read_token_file(c.token_file, &conn->token, err, errlen) < 0)
			goto out;
	}
	if (conn->token != NULL && strpbrk(conn->token, "\r\n") != NULL) {
		snprintf(err, errlen, "the token holds a line break");
		goto out;
	}
	chosen = cacert != NULL ? cacert : c.cacert;
	if (chosen != NULL && (conn->cacert = strdup(chosen)) == NULL)
		goto nomem;
	if ((conn->curl = curl_easy_init()) == NULL)
		goto nomem;
	r = CV_CLI_OK;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
out:
	if (r != CV_CLI_OK)
		cv_cli_conn_release(conn);
	config_release(&c);
	free(path);
	return r;
}

void cv_cli_conn_release(struct cv_cli_conn *conn)
{
	free(conn->url);
	if (conn->token != NULL)
		OPENSSL_clear_free(conn->token, strlen(conn->token));
	free(conn->cacert);
	if (conn->curl != NULL)
		curl_easy_cleanup(conn->curl);
	memset(conn, 0, sizeof(*conn));
}

struct sink {
	char *buf;
	size_t len, cap;
	int too_big;
};

static size_t sink_write(char *data, size_t size, size_t nmemb, void *user)
{
	struct sink *s = user;
	size_t n = size * nmemb, cap;
	char *p;

	if (n > RESPONSE_MAX - s->len) {
		s->too_big = 1;
		return 0;
	}
	if (s->len + n + 1 > s->cap) {
		cap = s->cap ? s->cap : 16384;
		while (cap < s->len + n + 1)
			cap *= 2;
		if ((p = realloc(s->buf, cap)) == NULL)
			return 0;
		s->buf = p;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

/* Keeps the ETag and Content-Type of the answer. */
static size_t header_seen(char *data, size_t size, size_t nmemb, void *user)
{
	struct cv_cli_response *res = user;
	size_t n = size * nmemb, v;
	char *dst = NULL;
	size_t dstlen = 0;

	if (n > 5 && strncasecmp(data, "ETag:", 5) == 0) {
		dst = res->etag;
		dstlen = sizeof(res->etag);
		v = 5;
	} else if (n > 13 && strncasecmp(data, "Content-Type:", 13) == 0) {
		dst = res->content_type;
		dstlen = sizeof(res->content_type);
		v = 13;
	} else {
		return n;
	}
	while (v < n && (data[v] == ' ' || data[v] == '\t'))
		v++;
	size_t end = n;
	while (end > v && (data[end - 1] == '\r' || data[end - 1] == '\n' || data[end - 1] == ' '))
		end--;
	if (end - v < dstlen) {
		memcpy(dst, data + v, end - v);
		dst[end - v] = '\0';
	}
	return n;
}

/* application/json, or a +json type such as the JWKS's application/jwk-set+json. */
static int is_json_type(const char *type)
{
	size_t n = strcspn(type, ";");

	while (n > 0 && type[n - 1] == ' ')
		n--;
	return (n == 16 && strncmp(type, "application/json", 16) == 0) ||
	       (n > 17 && strncmp(type, "application/", 12) == 0 &&
		strncmp(type + n - 5, "+json", 5) == 0);
}

int cv_cli_request(struct cv_cli_conn *conn, const char *method, const char *path,
		   const json_t *body, void *mime, const char *const *headers,
		   struct cv_cli_response *res, char *err, size_t errlen)
{
	CURL *curl = conn->curl;
	struct curl_slist *hdrs = NULL, *tmp;
	struct sink sink = { 0 };
	char *url = NULL, *text = NULL, *auth = NULL;
	size_t n;
	CURLcode cc;
	int r = CV_CLI_UNAVAILABLE;

	memset(res, 0, sizeof(*res));
	n = strlen(conn->url) + strlen(path) + 1;
	if ((url = malloc(n)) == NULL)
		goto nomem;
	snprintf(url, n, "%s%s", conn->url, path);
	curl_easy_reset(curl);
	if (conn->token != NULL) {
		n = strlen(conn->token) + 32;
		if ((auth = malloc(n)) == NULL)
			goto nomem;
		snprintf(auth, n, "Authorization: Bearer %s", conn->token);
		if ((tmp = curl_slist_append(hdrs, auth)) == NULL)
			goto nomem;
		hdrs = tmp;
	}
	if ((tmp = curl_slist_append(hdrs, "Accept: application/json, */*")) == NULL)
		goto nomem;
	hdrs = tmp;
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
		if ((tmp = curl_slist_append(hdrs, headers[i])) == NULL)
			goto nomem;
		hdrs = tmp;
	}
	if (body != NULL) {
		/* The body may carry a private key: dumped into one buffer wiped afterwards. */
		if ((text = json_dumps(body, JSON_COMPACT)) == NULL)
			goto nomem;
		if ((tmp = curl_slist_append(hdrs, "Content-Type: application/json")) == NULL)
			goto nomem;
		hdrs = tmp;
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
	} else if (mime != NULL) {
		curl_easy_setopt(curl, CURLOPT_MIMEPOST, (curl_mime *)mime);
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "GET") == 0 && body == NULL && mime == NULL)
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	/* No overall timeout (an inventory may take a while, the agent long-polls), but a
	 * connection that stops moving for 5 minutes is given up. */
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 300L);
	curl_easy_setopt(curl, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
	if (conn->cacert != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, conn->cacert);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, header_seen);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, res);
	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		if (sink.too_big)
			snprintf(err, errlen, "%s: the answer is larger than %zu MiB", url,
				 RESPONSE_MAX >> 20);
		else
			snprintf(err, errlen, "%s: %s", url, curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &res->status);
	if (sink.buf == NULL && (sink.buf = calloc(1, 1)) == NULL)
		goto nomem;
	res->body = sink.buf;
	res->len = sink.len;
	sink.buf = NULL;
	if (is_json_type(res->content_type))
		res->json = json_loadb(res->body, res->len, 0, NULL);
	r = CV_CLI_OK;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
out:
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	if (auth != NULL)
		OPENSSL_clear_free(auth, strlen(auth));
	if (text != NULL)
		OPENSSL_clear_free(text, strlen(text));
	free(sink.buf);
	free(url);
	return r;
}

void cv_cli_response_release(struct cv_cli_response *res)
{
	json_decref(res->json);
	free(res->body);
	memset(res, 0, sizeof(*res));
}

int cv_cli_exit_for_status(long status)
{
	if ((status >= 200 && status < 300) || status == 304)
		return CV_CLI_OK;
	if (status >= 400 && status < 500)
		return CV_CLI_REFUSED;
	return CV_CLI_UNAVAILABLE;
}

int cv_cli_escape(const char *s, char *buf, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = strlen(buf);

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		int plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
			    ch == '~';
		if (o + (plain ? 1 : 3) >= len)
			return -1;
		if (plain) {
			buf[o++] = (char)ch;
		} else {
			buf[o++] = '%';
			buf[o++] = hex[ch >> 4];
			buf[o++] = hex[ch & 15];
		}
	}
	buf[o] = '\0';
	return 0;
}

int cv_cli_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len, char *err,
		     size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((buf = malloc(max + 1)) == NULL) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (;;) {
		n = read(fd, buf + len, max + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
			goto fail;
		}
	}
	close(fd);
	buf[len] = '\0';
	*ret_buf = buf;
	*ret_len = len;
	return 0;
fail:
	close(fd);
	OPENSSL_clear_free(buf, max + 1);
	return -1;
}

int cv_cli_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
			char *err, size_t errlen)
{
	char tmp[4096];
	const char *p = data;
	size_t done = 0;
	ssize_t n;
	int fd, dfd;
	const char *slash;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	if ((fd = mkstemp(tmp)) < 0) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	if (fchmod(fd, (mode_t)mode) != 0)
		goto fail;
	while (done < len) {
		n = write(fd, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		done += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	/* The rename itself is durable once the directory is. */
	slash = strrchr(path, '/');
	if (slash != NULL) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path == 0 ? 1 : slash - path),
			 path);
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}
