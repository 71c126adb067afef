/* The little HTTP/1.1 client the bench's API sides share: one keep-alive connection to
 * certvaultd on 127.0.0.1, requests written whole, answers read to their end. */
#ifndef CV_BENCH_HTTP1_H
#define CV_BENCH_HTTP1_H

#include <stddef.h>

/* A connected socket (TCP_NODELAY) or -1. */
int bench_http_connect(long port);
/* 0, or -1 when the connection failed. */
int bench_http_write_all(int fd, const char *p, size_t len);
/* One answer on fd: its status, whether the server keeps the connection; the body is read
 * and dropped, except that the first answer other than `expected` in the process has its
 * body shown on stderr under `tool`'s name. 0 or -1. */
int bench_http_read_response(int fd, const char *tool, int expected, int *ret_status,
			     int *ret_keep);
/* buf = the Authorization header line (with its CRLF) for the token in the file at path.
 * 0 or -1. */
int bench_http_auth_header(const char *path, char *buf, size_t len);

#endif
