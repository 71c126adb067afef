/* net: the address policy every outbound connection passes, checked on the address a
 * connection is about to be made to (after name resolution, on every redirect), so that
 * neither a DNS answer nor a redirect can steer certvaultd to an internal service. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "certvault/net.h"
#include "certvault/util.h"

/* An address reduced to what it reaches: IPv4 (also when written as an IPv4-mapped or a
 * NAT64 well-known-prefix IPv6 address, which end up at that IPv4 address) or IPv6. */
struct addr {
	int family;               /* AF_INET or AF_INET6 */
	unsigned char a[16];      /* 4 or 16 bytes */
	int port;
};

struct range {
	unsigned char net[16];
	int prefix;
	enum cv_net_class cls;
};

#define V4(a, b, c, d) { a, b, c, d }

static const struct range v4_ranges[] = {
	{ V4(0, 0, 0, 0), 8, CV_NET_UNSPECIFIED },        /* "this network" (RFC 791) */
	{ V4(10, 0, 0, 0), 8, CV_NET_PRIVATE },           /* RFC 1918 */
	{ V4(100, 64, 0, 0), 10, CV_NET_SHARED },         /* carrier-grade NAT, RFC 6598 */
	{ V4(127, 0, 0, 0), 8, CV_NET_LOOPBACK },
	{ V4(169, 254, 0, 0), 16, CV_NET_LINK_LOCAL },    /* also cloud metadata services */
	{ V4(172, 16, 0, 0), 12, CV_NET_PRIVATE },
	{ V4(192, 0, 0, 0), 24, CV_NET_RESERVED },        /* IETF protocol assignments */
	{ V4(192, 0, 2, 0), 24, CV_NET_RESERVED },        /* documentation */
	{ V4(192, 88, 99, 0), 24, CV_NET_RESERVED },      /* 6to4 relay anycast */
	{ V4(192, 168, 0, 0), 16, CV_NET_PRIVATE },
	{ V4(198, 18, 0, 0), 15, CV_NET_RESERVED },       /* benchmarking */
	{ V4(198, 51, 100, 0), 24, CV_NET_RESERVED },     /* documentation */
	{ V4(203, 0, 113, 0), 24, CV_NET_RESERVED },      /* documentation */
	{ V4(224, 0, 0, 0), 4, CV_NET_MULTICAST },
	{ V4(240, 0, 0, 0), 4, CV_NET_RESERVED },         /* future use, and the broadcast */
};

static const struct range v6_ranges[] = {
	{ { 0 }, 128, CV_NET_UNSPECIFIED },
	{ { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 128, CV_NET_LOOPBACK },
	{ { 0 }, 96, CV_NET_RESERVED },                   /* IPv4-compatible, deprecated */
	{ { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 }, 48, CV_NET_RESERVED }, /* local NAT64 */
	{ { 0x01, 0x00 }, 64, CV_NET_RESERVED },          /* discard-only */
	{ { 0x20, 0x01, 0x0d, 0xb8 }, 32, CV_NET_RESERVED }, /* documentation */
	{ { 0x20, 0x01 }, 23, CV_NET_RESERVED },          /* IETF assignments, Teredo */
	{ { 0x3f, 0xff }, 20, CV_NET_RESERVED },          /* documentation (RFC 9637) */
	{ { 0xfc }, 7, CV_NET_UNIQUE_LOCAL },
	{ { 0xfe, 0x80 }, 10, CV_NET_LINK_LOCAL },
	{ { 0xfe, 0xc0 }, 10, CV_NET_PRIVATE },           /* site-local, deprecated */
	{ { 0xff }, 8, CV_NET_MULTICAST },
};

static const unsigned char v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
static const unsigned char nat64[12] = { 0x00, 0x64, 0xff, 0x9b };

static int prefix_match(const unsigned char *a, const unsigned char *net, int prefix)
{
	int full = prefix / 8, rest = prefix % 8;
	unsigned char mask;

	if (memcmp(a, net, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xff << (8 - rest));
	return (a[full] & mask) == (net[full] & mask);
}

/* 0, or -1 for a family other than IPv4 and IPv6. */
static int addr_from_sockaddr(const struct sockaddr *sa, struct addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		ret->family = AF_INET;
		memcpy(ret->a, &in->sin_addr, 4);
		ret->port = ntohs(in->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		const unsigned char *b = in6->sin6_addr.s6_addr;

		ret->port = ntohs(in6->sin6_port);
		if (memcmp(b, v4_mapped, 12) == 0 || memcmp(b, nat64, 12) == 0) {
			ret->family = AF_INET;
			memcpy(ret->a, b + 12, 4);
		} else {
			ret->family = AF_INET6;
			memcpy(ret->a, b, 16);
		}
		return 0;
	}
	return -1;
}

static enum cv_net_class classify(const struct addr *a)
{
	const struct range *table = a->family == AF_INET ? v4_ranges : v6_ranges;
	size_t n = a->family == AF_INET ? sizeof(v4_ranges) / sizeof(v4_ranges[0])
					: sizeof(v6_ranges) / sizeof(v6_ranges[0]);
	size_t i;

	for (i = 0; i < n; i++)
		if (prefix_match(a->a, table[i].net, table[i].prefix))
			return table[i].cls;
	if (a->family == AF_INET)
		return CV_NET_PUBLIC;
	/* 6to4 (2002::/16) reaches the IPv4 address it carries. */
	if (a->a[0] == 0x20 && a->a[1] == 0x02) {
		struct addr inner = { .family = AF_INET };

		memcpy(inner.a, a->a + 2, 4);
		return classify(&inner);
	}
	/* Global unicast is 2000::/3; the rest is unassigned. */
	return (a->a[0] & 0xe0) == 0x20 ? CV_NET_PUBLIC : CV_NET_RESERVED;
}

enum cv_net_class cv_net_addr_classify(const struct sockaddr *sa)
{
	struct addr a;

	if (addr_from_sockaddr(sa, &a) < 0)
		return CV_NET_RESERVED;
	return classify(&a);
}

const char *cv_net_class_name(enum cv_net_class cls)
{
	switch (cls) {
	case CV_NET_PUBLIC: return "public";
	case CV_NET_UNSPECIFIED: return "unspecified";
	case CV_NET_LOOPBACK: return "loopback";
	case CV_NET_PRIVATE: return "private";
	case CV_NET_SHARED: return "carrier-grade NAT";
	case CV_NET_LINK_LOCAL: return "link-local";
	case CV_NET_UNIQUE_LOCAL: return "unique local";
	case CV_NET_MULTICAST: return "multicast";
	case CV_NET_RESERVED: return "reserved";
	}
	return "reserved";
}

/* One "address[/prefix]" of a list, in [s, end). */
static int cidr_parse(const char *s, size_t len, struct cv_net_cidr *ret, struct cv_errmsg *err)
{
	char text[INET6_ADDRSTRLEN + 8], *slash;
	unsigned char masked[16];
	int max, prefix = -1;
	int64_t v;

	if (len >= sizeof(text))
		return cv_errmsg_set(err, CV_ERR_CONFIG, "\"%.*s\" is not an address or a network",
				     (int)(len > 60 ? 60 : len), s);
	memcpy(text, s, len);
	text[len] = '\0';
	slash = strchr(text, '/');
	if (slash != NULL) {
		*slash = '\0';
		if (cv_parse_int64(slash + 1, 0, 128, &v) < 0)
			return cv_errmsg_set(err, CV_ERR_CONFIG, "\"%s/%s\": the prefix length is "
					     "not a number from 0 to 128", text, slash + 1);
		prefix = (int)v;
	}
	memset(ret, 0, sizeof(*ret));
	if (inet_pton(AF_INET, text, ret->net) == 1) {
		ret->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, text, ret->net) == 1) {
		ret->family = AF_INET6;
		max = 128;
	} else {
		return cv_errmsg_set(err, CV_ERR_CONFIG, "\"%s\" is not an IPv4 or IPv6 address",
				     text);
	}
	if (prefix > max)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "\"%s/%d\": an %s prefix is at most %d",
				     text, prefix, max == 32 ? "IPv4" : "IPv6", max);
	ret->prefix = prefix < 0 ? max : prefix;
	/* Bits past the prefix say the writer meant something else: 10.1.2.3/8 is refused. */
	memset(masked, 0, sizeof(masked));
	memcpy(masked, ret->net, (size_t)(ret->prefix / 8));
	if (ret->prefix % 8 != 0)
		masked[ret->prefix / 8] = (unsigned char)(ret->net[ret->prefix / 8] &
							  (0xff << (8 - ret->prefix % 8)));
	if (memcmp(masked, ret->net, 16) != 0)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "\"%s/%d\" has bits set past its prefix: "
				     "write the network's first address", text, ret->prefix);
	return 0;
}

/* Calls each item of a list separated by commas and/or spaces. */
static int list_each(const char *list, int (*item)(const char *s, size_t len, void *arg,
						   struct cv_errmsg *err),
		     void *arg, struct cv_errmsg *err)
{
	const char *p = list != NULL ? list : "";
	size_t len;
	int r;

	for (;;) {
		p += strspn(p, ", \t");
		if (*p == '\0')
			return 0;
		len = strcspn(p, ", \t");
		r = item(p, len, arg, err);
		if (r < 0)
			return r;
		p += len;
	}
}

static int network_item(const char *s, size_t len, void *arg, struct cv_errmsg *err)
{
	struct cv_net_policy *p = arg;

	if (p->n_networks == CV_NET_POLICY_MAX)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "more than %d networks",
				     CV_NET_POLICY_MAX);
	return cidr_parse(s, len, &p->networks[p->n_networks++], err);
}

static int port_item(const char *s, size_t len, void *arg, struct cv_errmsg *err)
{
	struct cv_net_policy *p = arg;
	char text[8];
	int64_t v;

	if (p->n_ports == CV_NET_POLICY_MAX)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "more than %d ports", CV_NET_POLICY_MAX);
	if (len >= sizeof(text))
		goto bad;
	memcpy(text, s, len);
	text[len] = '\0';
	if (cv_parse_int64(text, 1, 65535, &v) < 0)
		goto bad;
	p->ports[p->n_ports++] = (int)v;
	return 0;
bad:
	return cv_errmsg_set(err, CV_ERR_CONFIG, "\"%.*s\" is not a port from 1 to 65535",
			     (int)(len > 20 ? 20 : len), s);
}

int cv_net_policy_parse(const char *networks, const char *ports, struct cv_net_policy *ret,
			struct cv_errmsg *err)
{
	memset(ret, 0, sizeof(*ret));
	if (list_each(networks, network_item, ret, err) < 0 ||
	    list_each(ports, port_item, ret, err) < 0) {
		memset(ret, 0, sizeof(*ret));
		return CV_ERR_CONFIG;
	}
	return 0;
}

static int in_network(const struct cv_net_cidr *c, const struct addr *a)
{
	return c->family == a->family && prefix_match(a->a, c->net, c->prefix);
}

int cv_net_policy_check(const struct cv_net_policy *policy, const int *default_ports,
			const struct sockaddr *sa, struct cv_errmsg *err)
{
	char shown[INET6_ADDRSTRLEN];
	enum cv_net_class cls;
	struct addr a;
	size_t i;

	if (addr_from_sockaddr(sa, &a) < 0)
		return cv_errmsg_set(err, CV_ERR_FORBIDDEN, "only IPv4 and IPv6 are used");
	if (inet_ntop(a.family, a.a, shown, sizeof(shown)) == NULL)
		snprintf(shown, sizeof(shown), "?");
	/* A network the operator named is theirs, every port of it. */
	for (i = 0; policy != NULL && i < policy->n_networks; i++)
		if (in_network(&policy->networks[i], &a))
			return 0;
	cls = classify(&a);
	if (cls != CV_NET_PUBLIC)
		return cv_errmsg_set(err, CV_ERR_FORBIDDEN, "%s is a %s address, which no setting "
				     "allows", shown, cv_net_class_name(cls));
	for (i = 0; default_ports != NULL && default_ports[i] != 0; i++)
		if (default_ports[i] == a.port)
			return 0;
	for (i = 0; policy != NULL && i < policy->n_ports; i++)
		if (policy->ports[i] == a.port)
			return 0;
	return cv_errmsg_set(err, CV_ERR_FORBIDDEN, "port %d of %s is not allowed", a.port,
			     shown);
}
