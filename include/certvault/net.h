/* net: the only code that opens outbound connections. It learns the certificate chain a TLS
 * server presents (HTTPS, or LDAPS: TLS from the first byte) so that the truststore can offer
 * it. Nothing is verified: the chain is the thing being learned, not a thing trusted.
 * No global state; every function is safe to call from many threads at once. */
#ifndef CERTVAULT_NET_H
#define CERTVAULT_NET_H

#include <stddef.h>

#include <openssl/x509.h>

#include "certvault/error.h"

struct sockaddr;

/* The address policy (src/net/policy.c). Every outbound connection certvaultd makes is
 * checked against one, on the address it is about to connect to: after name resolution, for
 * each address tried and for every redirect, so that neither a DNS answer nor a redirect can
 * reach what the URL's text seemed not to. */

/* What an address is, from IANA's special-purpose registries. An IPv4-mapped (::ffff:a.b.c.d)
 * or NAT64 (64:ff9b::a.b.c.d) IPv6 address is the IPv4 address it reaches; a 6to4 address
 * (2002::/16) is judged by the IPv4 address it carries. */
enum cv_net_class {
	CV_NET_PUBLIC = 0,   /* global unicast */
	CV_NET_UNSPECIFIED,  /* 0.0.0.0/8, :: */
	CV_NET_LOOPBACK,     /* 127.0.0.0/8, ::1 */
	CV_NET_PRIVATE,      /* RFC 1918; fec0::/10 */
	CV_NET_SHARED,       /* 100.64.0.0/10, carrier-grade NAT */
	CV_NET_LINK_LOCAL,   /* 169.254.0.0/16 (cloud metadata services), fe80::/10 */
	CV_NET_UNIQUE_LOCAL, /* fc00::/7 */
	CV_NET_MULTICAST,    /* 224.0.0.0/4, ff00::/8 */
	CV_NET_RESERVED,     /* documentation, benchmarking, IETF, 240/4, outside 2000::/3... */
};
/* The class of an AF_INET or AF_INET6 address (others: CV_NET_RESERVED). Pure. */
enum cv_net_class cv_net_addr_classify(const struct sockaddr *sa);
/* "public", "loopback", "private", ... */
const char *cv_net_class_name(enum cv_net_class cls);

#define CV_NET_POLICY_MAX 32
struct cv_net_cidr {
	int family;              /* AF_INET or AF_INET6 */
	unsigned char net[16];
	int prefix;
};
/* Where connections may go beyond public addresses on the protocol's own ports. A zeroed
 * policy is the strictest: public addresses, default ports only. */
struct cv_net_policy {
	struct cv_net_cidr networks[CV_NET_POLICY_MAX]; /* allowed whole, on any port */
	size_t n_networks;
	int ports[CV_NET_POLICY_MAX];                   /* allowed on public addresses too */
	size_t n_ports;
};
/* Parses the settings' lists (items separated by commas or spaces; NULL or "" for none):
 * networks as "address/prefix" or a single address, IPv4 or IPv6, with no bit set past the
 * prefix; ports from 1 to 65535. Returns 0, or CV_ERR_CONFIG with err naming the item (ret
 * then zeroed). Pure. */
int cv_net_policy_parse(const char *networks, const char *ports, struct cv_net_policy *ret,
			struct cv_errmsg *err);
/* Whether a connection to sa (IPv4 or IPv6, with its port) may be made: when it lies in one
 * of policy's networks; else when it is public and its port is one of default_ports (ended
 * by 0) or of policy's ports. policy NULL is the zeroed policy. Returns 0, or
 * CV_ERR_FORBIDDEN with err saying which address and why ("127.0.0.1 is a loopback
 * address, which no setting allows"). Pure. */
int cv_net_policy_check(const struct cv_net_policy *policy, const int *default_ports,
			const struct sockaddr *sa, struct cv_errmsg *err);

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

/* Connects to the endpoint url names (as cv_net_url_parse reads it) when policy allows
 * (cv_net_policy_check, default ports 443 and 636; an address it refuses is never connected
 * to, and when it refuses all of them the fetch fails with CV_ERR_FORBIDDEN saying why),
 * completes a TLS 1.2 or
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
int cv_net_fetch_chain(const struct cv_net_policy *policy, const char *url, int timeout_ms,
		       STACK_OF(X509) **ret_chain, struct cv_errmsg *err);

/* HTTP for revocation data (src/net/http_fetch.c, libcurl): OCSP requests and CRL downloads. */

#define CV_NET_URL_MAX 300

/* Checks a URL certvaultd may fetch revocation data from, as a certificate names it:
 * "http://" or "https://" (any case) followed by a host, at most CV_NET_URL_MAX bytes of
 * printable ASCII without spaces. Returns 0 or CV_ERR_BAD_REQUEST saying why. Does no I/O. */
int cv_net_http_url_check(const char *url, struct cv_errmsg *err);

/* Fetches url (checked as above): a GET when body is NULL, else a POST of body_len bytes of
 * body with content_type. Redirects are followed, at most 3, to http and https only; proxies
 * from the environment are not used. Every connection, a redirect's too, is made only when
 * policy allows its address (cv_net_policy_check, default ports 80 and 443): a refused one
 * is never opened, and the fetch fails with CV_ERR_FORBIDDEN saying which address and
 * why. The whole exchange ends within timeout_ms (> 0). Only a
 * 200 answer of at most max_len bytes is taken. On success *ret_data (malloc'd, the
 * caller's) holds the answer's body and *ret_len its length. Returns 0, or:
 * CV_ERR_BAD_REQUEST (url, timeout_ms); CV_ERR_UNREACHABLE (name, connection, TLS, timeout,
 * a status other than 200, an answer over max_len), with a message naming the URL and what
 * failed; CV_ERR_NOMEM; CV_ERR_INTERNAL. */
int cv_net_http_fetch(const struct cv_net_policy *policy, const char *url,
		      const char *content_type, const unsigned char *body,
		      size_t body_len, int timeout_ms, size_t max_len, unsigned char **ret_data,
		      size_t *ret_len, struct cv_errmsg *err);

/* Notification deliveries (src/net/deliver.c, libcurl): a webhook POST and an SMTP message.
 * Every connection, as for fetches, is made only where policy allows (default ports: 80 and
 * 443 for a webhook; 25, 465 and 587 for SMTP); a webhook's redirect is not followed (the
 * receiver was named, not wherever it points), no proxy from the environment is used, and
 * the whole exchange ends within timeout_ms (> 0). */

/* Checks a webhook URL: "http://" or "https://" and a host, at most max bytes of printable
 * ASCII, no user information. Returns 0 or CV_ERR_BAD_REQUEST saying why. No I/O. */
int cv_net_webhook_url_check(const char *url, size_t max, struct cv_errmsg *err);
/* Checks an SMTP URL: "smtp://" or "smtps://" and a host (and port), nothing after it but an
 * optional "/" and a HELO name. 0 or CV_ERR_BAD_REQUEST. No I/O. */
int cv_net_smtp_url_check(const char *url, size_t max, struct cv_errmsg *err);
/* POSTs body (application/json) with the extra headers (NULL-terminated "Name: value"
 * lines). Returns 0 when the receiver answered 2xx, else CV_ERR_FORBIDDEN (an address the
 * policy refuses), CV_ERR_UNREACHABLE (no connection, timeout, TLS failure, another status:
 * the message says which, naming the URL's host only, never its path or query, which may
 * hold a secret), CV_ERR_NOMEM or CV_ERR_INTERNAL. *ret_status: the HTTP status (0: none). */
int cv_net_webhook_post(const struct cv_net_policy *policy, const char *url,
			const char *const *headers, const char *body, size_t body_len,
			int timeout_ms, long *ret_status, struct cv_errmsg *err);
/* Sends message (a whole RFC 5322 message, CRLF line ends) from mail_from to the n_rcpt
 * addresses rcpt through the SMTP server of url (smtps://: TLS from the first byte; smtp://:
 * STARTTLS when the server offers it), logging in as username with password when username is
 * not empty. Returns 0 or the errors of cv_net_webhook_post. */
int cv_net_smtp_send(const struct cv_net_policy *policy, const char *url, const char *username,
		     const char *password, const char *mail_from, const char *const *rcpt,
		     size_t n_rcpt, const char *message, size_t message_len, int timeout_ms,
		     struct cv_errmsg *err);

#endif
