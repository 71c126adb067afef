/* net: the only code that opens outbound connections. It learns the certificate chain a TLS
 * server presents (HTTPS, or LDAPS: TLS from the first byte) so that the truststore can offer
 * it. Nothing is verified: the chain is the thing being learned, not a thing trusted.
 * No global state; every function is safe to call from many threads at once. */
#ifndef CERTVAULT_NET_H
#define CERTVAULT_NET_H

#include <stddef.h>

#include <openssl/x509.h>

#include "certvault/error.h"

/* Room for any host cv_net_url_parse accepts: a DNS name of up to 253 characters, an IPv4
 * address or an IPv6 address (without its brackets), and the NUL. */
#define CV_NET_HOST_MAX 256

/* Parses "https://host[:port]" (default port 443) or "ldaps://host[:port]" (default 636),
 * optionally followed by a single "/". The scheme is case-insensitive. host is a DNS name
 * (letters, digits, hyphens, dot-separated labels of 1 to 63), a dotted IPv4 address, or an
 * IPv6 address in brackets. Writes the host (brackets removed) into host, which holds host_len
 * bytes (CV_NET_HOST_MAX always suffices), the port into *ret_port and 1 for ldaps, 0 for https
 * into *ret_ldaps. Returns 0, or CV_ERR_BAD_REQUEST with a message saying what is wrong (other
 * schemes, user information, a path, query or fragment, an empty or malformed host, a port
 * outside 1-65535); the outputs are then unspecified. Does no I/O. */
int cv_net_url_parse(const char *url, char *host, size_t host_len, int *ret_port,
		     int *ret_ldaps, struct cv_errmsg *err);

/* Connects to the endpoint url names (as cv_net_url_parse reads it), completes a TLS 1.2 or
 * later handshake without verifying the server (SNI is sent when the host is a DNS name) and
 * returns the chain the server presented: the leaf first, then the other certificates in the
 * order sent. On success *ret_chain is a new stack the caller owns, with its certificates
 * (free with sk_X509_pop_free(chain, X509_free)); on failure it is left untouched.
 *
 * The whole fetch (name resolution, connect, handshake) ends within timeout_ms (> 0); a
 * resolver still running then finishes on its own in the background.
 *
 * Returns 0, or: CV_ERR_BAD_REQUEST for a malformed url or a timeout_ms <= 0;
 * CV_ERR_UNREACHABLE when the name does not resolve, the connection is refused or fails, the
 * time runs out, the TLS handshake fails or the server presents no certificate;
 * CV_ERR_BAD_ENCODING when it presents more than CV_X509_MAX_CHAIN + 1 certificates;
 * CV_ERR_NOMEM, CV_ERR_INTERNAL. The message names host:port and what failed ("timed out
 * after 5000 ms", OpenSSL's reason), never more of the request than the url. The calling
 * thread's OpenSSL error queue is left empty; SIGPIPE, should the server close early, is
 * kept from the process. */
int cv_net_fetch_chain(const char *url, int timeout_ms, STACK_OF(X509) **ret_chain,
		       struct cv_errmsg *err);

/* HTTP for revocation data (src/net/http_fetch.c, libcurl): OCSP requests and CRL downloads. */

#define CV_NET_URL_MAX 300

/* Checks a URL certvaultd may fetch revocation data from, as a certificate names it:
 * "http://" or "https://" (any case) followed by a host, at most CV_NET_URL_MAX bytes of
 * printable ASCII without spaces. Returns 0 or CV_ERR_BAD_REQUEST saying why. Does no I/O. */
int cv_net_http_url_check(const char *url, struct cv_errmsg *err);

/* Fetches url (checked as above): a GET when body is NULL, else a POST of body_len bytes of
 * body with content_type. Redirects are followed, at most 3, to http and https only; proxies
 * from the environment are not used. The whole exchange ends within timeout_ms (> 0). Only a
 * 200 answer of at most max_len bytes is taken. On success *ret_data (malloc'd, the
 * caller's) holds the answer's body and *ret_len its length. Returns 0, or:
 * CV_ERR_BAD_REQUEST (url, timeout_ms); CV_ERR_UNREACHABLE (name, connection, TLS, timeout,
 * a status other than 200, an answer over max_len), with a message naming the URL and what
 * failed; CV_ERR_NOMEM; CV_ERR_INTERNAL. */
int cv_net_http_fetch(const char *url, const char *content_type, const unsigned char *body,
		      size_t body_len, int timeout_ms, size_t max_len, unsigned char **ret_data,
		      size_t *ret_len, struct cv_errmsg *err);

#endif
