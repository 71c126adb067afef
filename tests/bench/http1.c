/* The bench's HTTP/1.1 client (http1.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http1.h"

int bench_http_connect(long port)
{
	struct sockaddr_in sa;
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int bench_http_write_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int bench_http_read_response(int fd, const char *tool, int expected, int *ret_status,
			     int *ret_keep)
{
	static atomic_int told;
	char buf[65536], *end, *line;
	size_t have = 0, head, body_len = 0, body_have;
	ssize_t n;
	int status;

	for (;;) {
		if (have == sizeof(buf) - 1)
			return -1;
		n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end != NULL)
			break;
	}
	head = (size_t)(end - buf) + 4;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	*ret_keep = 1;
	for (line = strstr(buf, "\r\n"); line != NULL && line < end; line = strstr(line, "\r\n")) {
		line += 2;
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			body_len = (size_t)strtoul(line + 15, NULL, 10);
		else if (strncasecmp(line, "Connection:", 11) == 0) {
			const char *close_at = strstr(line, "close");

			if (close_at != NULL && close_at < strstr(line, "\r\n"))
				*ret_keep = 0;
		}
	}
	body_have = have - head;
	if (status != expected && atomic_fetch_add(&told, 1) == 0)
		fprintf(stderr, "%s: HTTP %d: %.*s\n", tool, status,
			(int)(body_have < 400 ? body_have : 400), buf + head);
	while (body_have < body_len) {
		size_t want = body_len - body_have;

		n = recv(fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		body_have += (size_t)n;
	}
	*ret_status = status;
	return 0;
}

int bench_http_auth_header(const char *path, char *buf, size_t len)
{
	char token[100];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(token, 1, sizeof(token) - 1, f);
	fclose(f);
	token[n] = '\0';
	token[strcspn(token, "\r\n")] = '\0';
	if (token[0] == '\0')
		return -1;
	return snprintf(buf, len, "Authorization: Bearer %s\r\n", token) < (int)len ? 0 : -1;
}
