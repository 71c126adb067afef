/* x509: DNS names as clients give them, and which certificate names cover them (RFC 6125). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "certvault/x509.h"

#define LABEL_MAX 63

static int is_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int cv_x509_domain_normalize(const char *in, char *ret, size_t ret_len, struct cv_errmsg *err)
{
	size_t len = strlen(in), i, start = 0, n_labels = 0, label;
	int all_digits = 1;

	if (len > 0 && in[len - 1] == '.')
		len--; /* the root: "example.com." is "example.com" */
	if (len == 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a domain name is empty");
	if (len > CV_DNS_NAME_MAX || ret_len <= len)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "a domain name is longer than %d bytes", CV_DNS_NAME_MAX);
	for (i = 0; i <= len; i++) {
		if (i < len && in[i] != '.') {
			unsigned char c = (unsigned char)in[i];

			if (c >= 0x80)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "a domain name has non-ASCII characters:"
						     " give internationalised names as A-labels"
						     " (xn--...)");
			if (c == '*' && !(i == 0 && len > 1 && in[1] == '.'))
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "a wildcard must be the whole left-most label"
						     " of a domain name");
			if (c != '*' && !is_ldh(c))
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "a domain name may hold only letters, digits,"
						     " hyphens and dots");
			ret[i] = lower(in[i]);
			continue;
		}
		/* The end of a label. */
		label = i - start;
		if (label == 0)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "a domain name has an empty label");
		if (label > LABEL_MAX)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "a domain name has a label longer than %d bytes",
					     LABEL_MAX);
		if (in[start] == '-' || in[i - 1] == '-')
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "a label of a domain name begins or ends with a hyphen");
		all_digits = strspn(in + start, "0123456789") >= label;
		n_labels++;
		if (i < len)
			ret[i] = '.';
		start = i + 1;
	}
	ret[len] = '\0';
	if (all_digits)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "an IP address is not a domain name");
	if (ret[0] == '*' && n_labels < 3)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "a wildcard domain needs two labels or more after \"*.\"");
	return 0;
}

/* The length of name without one trailing dot. */
static size_t name_len(const char *name)
{
	size_t len = strlen(name);

	return len > 0 && name[len - 1] == '.' ? len - 1 : len;
}

int cv_x509_name_covers(const char *cert_name, const char *domain)
{
	size_t p_len = name_len(cert_name), d_len = name_len(domain), base_len;
	const char *base, *dot;

	if (p_len == 0 || d_len == 0)
		return 0;
	if (memchr(cert_name, '*', p_len) == NULL)
		return p_len == d_len && strncasecmp(cert_name, domain, p_len) == 0;
	/* A wildcard: "*." then two labels or more, and no other '*'. */
	if (p_len < 2 || cert_name[0] != '*' || cert_name[1] != '.')
		return 0;
	base = cert_name + 2;
	base_len = p_len - 2;
	if (memchr(base, '*', base_len) == NULL && memchr(base, '.', base_len) != NULL &&
	    base[0] != '.' && base[base_len - 1] != '.') {
		/* A wildcard domain: only the same wildcard covers it. */
		if (domain[0] == '*')
			return p_len == d_len && strncasecmp(cert_name, domain, p_len) == 0;
		dot = memchr(domain, '.', d_len);
		if (dot == NULL || dot == domain)
			return 0;
		return (size_t)(domain + d_len - (dot + 1)) == base_len &&
		       strncasecmp(dot + 1, base, base_len) == 0;
	}
	return 0;
}

int cv_x509_names_cover(char *const *names, size_t n, const char *domain)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (cv_x509_name_covers(names[i], domain))
			return 1;
	return 0;
}

int cv_x509_domain_wildcard(const char *domain, char *ret, size_t ret_len)
{
	const char *rest = strchr(domain, '.');
	int n;

	if (domain[0] == '*' || rest == NULL || strchr(rest + 1, '.') == NULL)
		return CV_ERR_NOT_FOUND;
	n = snprintf(ret, ret_len, "*%s", rest);
	if (n < 0 || (size_t)n >= ret_len)
		return CV_ERR_NOT_FOUND;
	return 0;
}
