/* Conditional GETs: every 200 answer to a GET that the handler did not tag itself gets a
 * strong ETag made from its bytes, and an If-None-Match naming it is answered 304 with no
 * body, so that a poller of a list, a details view, a service or an export pays a header
 * for "nothing changed". */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "handlers.h"

int http_none_match_hits(const char *header, const char *etag)
{
	const char *p = header;
	size_t len = strlen(etag);

	while (*p != '\0') {
		p += strspn(p, " \t,");
		if (*p == '*')
			return 1;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (strncmp(p, etag, len) == 0 && (p[len] == '\0' || p[len] == ',' ||
						    p[len] == ' ' || p[len] == '\t'))
			return 1;
		p += strcspn(p, ",");
	}
	return 0;
}

/* The first 128 bits of the body's SHA-256 in hex. 0, or -1 when it cannot be made. */
static int body_hash(const void *body, size_t len, char tag[33])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0, i;

	if (EVP_Digest(body, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len < 16)
		return -1;
	for (i = 0; i < 16; i++) {
		tag[2 * i] = hex[md[i] >> 4];
		tag[2 * i + 1] = hex[md[i] & 15];
	}
	tag[32] = '\0';
	return 0;
}

int http_tagged_etag(const char *handler_tag, const void *body, size_t len,
		     char etag[HTTP_ETAG_SIZE])
{
	char tag[33], prefix[HTTP_ETAG_SIZE];
	size_t plen = strlen(handler_tag);

	if (body_hash(body, len, tag) < 0)
		return -1;
	/* A handler's tag (a details view's version) stays in front, so If-Match still finds
	 * the version in it; the hash after it moves with anything else in the view. */
	if (plen >= 2 && handler_tag[0] == '"' && handler_tag[plen - 1] == '"') {
		snprintf(prefix, sizeof(prefix), "%.*s", (int)(plen - 2), handler_tag + 1);
		snprintf(etag, HTTP_ETAG_SIZE, "\"%.44s.%.16s\"", prefix, tag);
	} else {
		snprintf(etag, HTTP_ETAG_SIZE, "\"%s\"", tag);
	}
	return 0;
}

int http_conditional(const struct cv_request *req, struct cv_response *res,
		     const void *body, size_t len)
{
	char etag[HTTP_ETAG_SIZE];

	if (strcmp(req->method, "GET") != 0 || res->status != 200 || res->etag_final)
		return 0;
	if (http_tagged_etag(res->etag, body, len, etag) < 0)
		return 0; /* no tag: the answer goes out whole, which is always correct */
	memcpy(res->etag, etag, sizeof(etag));
	if (req->if_none_match == NULL || !http_none_match_hits(req->if_none_match, res->etag))
		return 0;
	res->status = 304;
	return 1;
}

int http_body_etag(const void *body, size_t len, char etag[HTTP_ETAG_SIZE])
{
	return http_tagged_etag("", body, len, etag);
}
