/* Internal to the http module: a strict multipart/form-data parser (RFC 7578, RFC 2046
 * section 5.1) for file uploads. */
#ifndef CV_HTTP_MULTIPART_H
#define CV_HTTP_MULTIPART_H

#include <stddef.h>

#include "certvault/error.h"

/* Limits on what a client can send. 48 parts: an import's files and fields with its 32
 * tags, each a field of its own (tags.<key>); a part costs its struct, the data stays in
 * the body. */
#define HTTP_MULTIPART_MAX_PARTS 48
#define HTTP_MULTIPART_MAX_HEADER 4096     /* one part's header block, its blank line included */
#define HTTP_PART_NAME_MAX 100
#define HTTP_PART_FILENAME_MAX 255
#define HTTP_PART_TYPE_MAX 127

/* One part of a form. */
struct http_part {
	char name[HTTP_PART_NAME_MAX + 1];         /* Content-Disposition name, never empty */
	char filename[HTTP_PART_FILENAME_MAX + 1]; /* Content-Disposition filename, as sent */
	int has_filename;                          /* filename="" is a file part too */
	char content_type[HTTP_PART_TYPE_MAX + 1]; /* "type/subtype" lower-cased, without
						      parameters; "" when the part has none */
	const char *data;                          /* the part's bytes, borrowed from the body */
	size_t len;
};

/* Parses body (len bytes, binary: NULs are content) as multipart/form-data with the boundary
 * of content_type ("multipart/form-data; boundary=..." with the boundary quoted or not, 1 to
 * 70 characters). On success *ret_parts is a malloc'd array of *ret_n parts (1 to
 * HTTP_MULTIPART_MAX_PARTS) that the caller releases with free(); their data points into
 * body, which must outlive them (nothing is copied: the body may hold a private key).
 * Strict: lines end with CRLF (a bare LF is refused, so that binary content can never be
 * cut at a lone "\n--boundary"), a preamble before the first boundary and an epilogue after
 * the last are ignored as RFC 2046 says; every part has a Content-Disposition of form-data
 * with a name; quoted parameter values end at the next quote (browsers percent-encode a
 * quote and send backslashes as they are; percent escapes are not decoded). Errors:
 * CV_ERR_BAD_REQUEST, with a message naming what is wrong (no boundary or a bad one, more
 * than HTTP_MULTIPART_MAX_PARTS parts, a header block over HTTP_MULTIPART_MAX_HEADER bytes,
 * folded or malformed headers, two parts with one name, a boundary inside a part, no final
 * boundary); CV_ERR_NOMEM. */
int http_multipart_parse(const char *content_type, const char *body, size_t len,
			 struct http_part **ret_parts, size_t *ret_n, struct cv_errmsg *err);

/* The part named name among the n parts, or NULL. */
const struct http_part *http_multipart_find(const struct http_part *parts, size_t n,
					    const char *name);

#endif
