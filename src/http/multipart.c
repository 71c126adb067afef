/* http: a strict multipart/form-data parser (RFC 7578 over RFC 2046 section 5.1). Parts
 * point into the body; nothing of their content is copied or quoted in a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "multipart.h"

#define BOUNDARY_MAX 70

/* A run of bytes inside the body or a header. */
struct span {
	const char *p;
	size_t len;
};

static int is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 2046's bcharsnospace; a space may also appear, but not last. */
static int is_bchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("'()+_,-./:=?", c) != NULL);
}

/* The first occurrence of needle in the n bytes at hay, or NULL (memmem is a GNU
 * extension). */
static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t nlen)
{
	const char *p = hay, *end = hay + n;

	while ((size_t)(end - p) >= nlen) {
		p = memchr(p, needle[0], (size_t)(end - p) - nlen + 1);
		if (p == NULL)
			return NULL;
		if (memcmp(p, needle, nlen) == 0)
			return p;
		p++;
	}
	return NULL;
}

static int span_is(struct span s, const char *word)
{
	return s.len == strlen(word) && strncasecmp(s.p, word, s.len) == 0;
}

static void skip_ows(struct span *s)
{
	while (s->len > 0 && is_ows((unsigned char)*s->p)) {
		s->p++;
		s->len--;
	}
}

/* Takes a token from the front of s into ret; 0 when there is none. */
static int take_token(struct span *s, struct span *ret)
{
	size_t n = 0;

	while (n < s->len && is_tchar((unsigned char)s->p[n]))
		n++;
	if (n == 0)
		return 0;
	ret->p = s->p;
	ret->len = n;
	s->p += n;
	s->len -= n;
	return 1;
}

/* Takes "type/subtype" from the front of s; 0 when it is not there. */
static int take_media_type(struct span *s, struct span *ret_type, struct span *ret_subtype)
{
	if (!take_token(s, ret_type) || s->len == 0 || *s->p != '/')
		return 0;
	s->p++;
	s->len--;
	return take_token(s, ret_subtype);
}

/* Takes "; name=value" from the front of s (value a token, or a quoted string that ends at
 * the next quote). Returns 1 with a parameter, 0 at the end of s, -1 when malformed, -2 (with
 * the name and value set) when an unquoted value is not a token. */
static int take_param(struct span *s, struct span *ret_name, struct span *ret_value,
		      int *ret_quoted)
{
	const char *q;
	size_t i, n = 0;

	skip_ows(s);
	if (s->len == 0)
		return 0;
	if (*s->p != ';')
		return -1;
	s->p++;
	s->len--;
	skip_ows(s);
	if (!take_token(s, ret_name) || s->len == 0 || *s->p != '=')
		return -1;
	s->p++;
	s->len--;
	*ret_quoted = s->len > 0 && *s->p == '"';
	if (!*ret_quoted) {
		while (n < s->len && s->p[n] != ';' && !is_ows((unsigned char)s->p[n]))
			n++;
		if (n == 0)
			return -1;
		ret_value->p = s->p;
		ret_value->len = n;
		s->p += n;
		s->len -= n;
		for (i = 0; i < n; i++)
			if (!is_tchar((unsigned char)ret_value->p[i]))
				return -2;
		return 1;
	}
	q = memchr(s->p + 1, '"', s->len - 1);
	if (q == NULL)
		return -1;
	ret_value->p = s->p + 1;
	ret_value->len = (size_t)(q - s->p - 1);
	s->len -= (size_t)(q + 1 - s->p);
	s->p = q + 1;
	return 1;
}

/* The boundary of a multipart/form-data Content-Type, into ret (NUL-terminated). */
static int boundary_of(const char *content_type, char ret[BOUNDARY_MAX + 1],
		       struct cv_errmsg *err)
{
	struct span s, type, subtype, name, value = { NULL, 0 };
	int found = 0, q, rc;
	unsigned char c;
	size_t i;

	if (content_type == NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a multipart body needs a "
				     "Content-Type with its boundary");
	s.p = content_type;
	s.len = strlen(content_type);
	skip_ows(&s);
	if (!take_media_type(&s, &type, &subtype) || !span_is(type, "multipart") ||
	    !span_is(subtype, "form-data"))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "the Content-Type is not multipart/form-data");
	while ((rc = take_param(&s, &name, &value, &q)) == 1) {
		if (!span_is(name, "boundary"))
			continue;
		if (found++)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "the Content-Type gives the boundary twice");
		if (value.len < 1 || value.len > BOUNDARY_MAX)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "the multipart boundary must be 1 to %d characters",
					     BOUNDARY_MAX);
		for (i = 0; i < value.len; i++) {
			c = (unsigned char)value.p[i];
			/* Unquoted, it is a token: of the bchars, only those that are
			 * token characters too. */
			if (q ? !is_bchar(c) && !(c == ' ' && i + 1 < value.len) :
				!is_bchar(c) || !is_tchar(c))
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "the multipart boundary holds a character "
						     "RFC 2046 does not allow%s",
						     q ? "" : " (unquoted, it must be a token)");
		}
		memcpy(ret, value.p, value.len);
		ret[value.len] = '\0';
	}
	if (rc == -2 && span_is(name, "boundary"))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "the multipart boundary holds a character RFC 2046 does not "
				     "allow (unquoted, it must be a token)");
	if (rc < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "the Content-Type's parameters are malformed");
	if (!found)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "the Content-Type has no boundary parameter");
	return 0;
}

/* Copies a header parameter value into a part's field, refusing one too long for it. */
static int copy_value(struct span v, char *ret, size_t size, size_t part, const char *what,
		      struct cv_errmsg *err)
{
	if (v.len >= size)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu's %s is longer than %zu bytes", part, what, size - 1);
	memcpy(ret, v.p, v.len);
	ret[v.len] = '\0';
	return 0;
}

/* Content-Disposition: form-data; name="..."[; filename="..."]. */
static int parse_disposition(struct span v, struct http_part *part, size_t num,
			     struct cv_errmsg *err)
{
	struct span type, name, value;
	int has_name = 0, quoted, rc, r;

	if (!take_token(&v, &type) || !span_is(type, "form-data"))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu's Content-Disposition is not form-data", num);
	while ((rc = take_param(&v, &name, &value, &quoted)) == 1) {
		if (span_is(name, "name")) {
			if (has_name++)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "part %zu's Content-Disposition gives name "
						     "twice", num);
			if (value.len == 0)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "part %zu has an empty name", num);
			r = copy_value(value, part->name, sizeof(part->name), num, "name", err);
		} else if (span_is(name, "filename")) {
			if (part->has_filename++)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "part %zu's Content-Disposition gives "
						     "filename twice", num);
			r = copy_value(value, part->filename, sizeof(part->filename), num,
				       "filename", err);
		} else {
			r = 0; /* filename* (RFC 7578 forbids it) and the like carry nothing */
		}
		if (r < 0)
			return r;
	}
	if (rc < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu's Content-Disposition is malformed", num);
	if (!has_name)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu's Content-Disposition has no name", num);
	return 0;
}

/* Content-Type: type/subtype[; parameters], kept as the lower-cased media type. */
static int parse_part_type(struct span v, struct http_part *part, size_t num,
			   struct cv_errmsg *err)
{
	struct span type, subtype, name, value;
	int quoted, rc;
	size_t i;

	if (!take_media_type(&v, &type, &subtype))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu's Content-Type is not a media type", num);
	while ((rc = take_param(&v, &name, &value, &quoted)) == 1)
		;
	if (rc < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu's Content-Type is malformed", num);
	if (type.len + 1 + subtype.len >= sizeof(part->content_type))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu's Content-Type is longer than %zu bytes", num,
				     sizeof(part->content_type) - 1);
	memcpy(part->content_type, type.p, type.len);
	part->content_type[type.len] = '/';
	memcpy(part->content_type + type.len + 1, subtype.p, subtype.len);
	part->content_type[type.len + 1 + subtype.len] = '\0';
	for (i = 0; part->content_type[i] != '\0'; i++)
		if (part->content_type[i] >= 'A' && part->content_type[i] <= 'Z')
			part->content_type[i] = (char)(part->content_type[i] - 'A' + 'a');
	return 0;
}

/* One header line (CRLF excluded) of part num. */
static int parse_header(struct span line, struct http_part *part, size_t num, int *seen_cd,
			int *seen_ct, struct cv_errmsg *err)
{
	struct span name, value;
	size_t i;

	for (i = 0; i < line.len; i++) {
		unsigned char c = (unsigned char)line.p[i];

		if (c == '\n' || c == '\r')
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "part %zu's headers hold a bare %s: lines end with "
					     "CRLF", num, c == '\n' ? "LF" : "CR");
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "part %zu's headers hold a control character", num);
	}
	if (!take_token(&line, &name) || line.len == 0 || *line.p != ':')
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu has a malformed header line", num);
	value.p = line.p + 1;
	value.len = line.len - 1;
	skip_ows(&value);
	while (value.len > 0 && is_ows((unsigned char)value.p[value.len - 1]))
		value.len--;
	if (span_is(name, "Content-Disposition")) {
		if ((*seen_cd)++)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "part %zu has two Content-Disposition headers", num);
		return parse_disposition(value, part, num, err);
	}
	if (span_is(name, "Content-Type")) {
		if ((*seen_ct)++)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "part %zu has two Content-Type headers", num);
		return parse_part_type(value, part, num, err);
	}
	/* RFC 7578 deprecates the header; an encoding other than the identity ones would
	 * make the bytes mean something else than what they are. */
	if (span_is(name, "Content-Transfer-Encoding") && !span_is(value, "binary") &&
	    !span_is(value, "8bit") && !span_is(value, "7bit"))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu has a Content-Transfer-Encoding other than "
				     "binary, which is not taken", num);
	return 0;
}

/* The header block of part num: from its first line to the CRLF that ends its last. */
static int parse_headers(struct span block, struct http_part *part, size_t num,
			 struct cv_errmsg *err)
{
	struct span line;
	const char *eol;
	int seen_cd = 0, seen_ct = 0, r;

	while (block.len > 0) {
		eol = find_bytes(block.p, block.len, "\r\n", 2);
		if (eol == NULL)
			return CV_ERR_INTERNAL; /* the block always ends with CRLF */
		line.p = block.p;
		line.len = (size_t)(eol - block.p);
		if (line.len == 0)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "part %zu has a malformed header line", num);
		/* A line that starts with a space or tab continues the one before. */
		if (is_ows((unsigned char)line.p[0]) ||
		    (line.len + 2 < block.len && is_ows((unsigned char)eol[2])))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "part %zu's headers are folded over lines (obsolete, "
					     "refused)", num);
		r = parse_header(line, part, num, &seen_cd, &seen_ct, err);
		if (r < 0)
			return r;
		block.len -= line.len + 2;
		block.p = eol + 2;
	}
	if (!seen_cd)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "part %zu has no Content-Disposition header", num);
	return 0;
}

static int starts_with(const char *p, size_t avail, const char *word, size_t n)
{
	return avail >= n && memcmp(p, word, n) == 0;
}

int http_multipart_parse(const char *content_type, const char *body, size_t len,
			 struct http_part **ret_parts, size_t *ret_n, struct cv_errmsg *err)
{
	char boundary[BOUNDARY_MAX + 1];
	char delim[2 + 2 + BOUNDARY_MAX + 1]; /* CRLF "--" boundary */
	struct http_part *parts = NULL, *part;
	struct span block;
	const char *at, *end, *hdr, *blank, *next;
	size_t dlen, n = 0, i, avail;
	int r, capped;

	r = boundary_of(content_type, boundary, err);
	if (r < 0)
		goto out;
	dlen = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	if (body == NULL || len == 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the multipart body is empty");
		goto out;
	}
	end = body + len;
	/* The first boundary line opens the body, or follows a preamble and its CRLF. */
	if (starts_with(body, len, delim + 2, dlen - 2)) {
		at = body;
	} else if ((at = find_bytes(body, len, delim, dlen)) != NULL) {
		at += 2;
	} else {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "the body holds no boundary line (\"--\" and the Content-Type's "
				  "boundary)");
		goto out;
	}
	parts = calloc(HTTP_MULTIPART_MAX_PARTS, sizeof(*parts));
	if (parts == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (;;) {
		/* at: a line that starts with "--" boundary. */
		at += dlen - 2;
		avail = (size_t)(end - at);
		if (starts_with(at, avail, "--", 2))
			break;
		while (at < end && is_ows((unsigned char)*at))
			at++;
		avail = (size_t)(end - at);
		if (starts_with(at, avail, "\n", 1)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "a boundary line ends with a bare LF: lines end with "
					  "CRLF");
			goto out;
		}
		if (!starts_with(at, avail, "\r\n", 2)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "a line that starts with the boundary goes on with other "
					  "text (the boundary occurs inside a part)");
			goto out;
		}
		at += 2;
		if (n == HTTP_MULTIPART_MAX_PARTS) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "the form has more than %d parts",
					  HTTP_MULTIPART_MAX_PARTS);
			goto out;
		}
		part = &parts[n++];
		/* The header block, its blank line included, within the limit. */
		hdr = at;
		avail = (size_t)(end - hdr);
		if (avail == 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "the body ends without its final boundary "
					  "(--boundary--): it may be cut off");
			goto out;
		}
		if (starts_with(hdr, avail, "\r\n", 2)) {
			blank = hdr;
		} else {
			capped = avail > HTTP_MULTIPART_MAX_HEADER;
			if (capped)
				avail = HTTP_MULTIPART_MAX_HEADER;
			blank = find_bytes(hdr, avail, "\r\n\r\n", 4);
			if (blank == NULL) {
				r = capped ?
				    cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						  "part %zu's headers are longer than %d bytes", n,
						  HTTP_MULTIPART_MAX_HEADER) :
				    cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						  "part %zu's headers do not end with a blank line "
						  "(CRLF CRLF)%s", n,
						  find_bytes(hdr, avail, "\n\n", 2) != NULL ?
						  ": lines end with CRLF, not a bare LF" : "");
				goto out;
			}
			blank += 2;
		}
		block.p = hdr;
		block.len = (size_t)(blank - hdr);
		r = parse_headers(block, part, n, err);
		if (r < 0)
			goto out;
		for (i = 0; i + 1 < n; i++) {
			if (strcmp(parts[i].name, part->name) == 0) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						  "two parts are named \"%.100s\"", part->name);
				goto out;
			}
		}
		/* The content: up to the CRLF of the next boundary line. */
		part->data = blank + 2;
		next = find_bytes(part->data, (size_t)(end - part->data), delim, dlen);
		if (next == NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "the body ends without its final boundary "
					  "(--boundary--)%s",
					  find_bytes(part->data, (size_t)(end - part->data), delim + 1,
						 dlen - 1) != NULL ?
					  ": lines end with CRLF, not a bare LF" :
					  ": it may be cut off");
			goto out;
		}
		part->len = (size_t)(next - part->data);
		at = next + 2;
	}
	/* The close delimiter: transport padding, then the end or CRLF and an epilogue. */
	at += 2;
	while (at < end && is_ows((unsigned char)*at))
		at++;
	if (at != end && !starts_with(at, (size_t)(end - at), "\r\n", 2)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "text follows the final boundary on its line");
		goto out;
	}
	if (n == 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the form has no parts");
		goto out;
	}
	*ret_parts = parts;
	*ret_n = n;
	parts = NULL;
	r = 0;
out:
	free(parts);
	return r;
}

const struct http_part *http_multipart_find(const struct http_part *parts, size_t n,
					    const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(parts[i].name, name) == 0)
			return &parts[i];
	return NULL;
}
