/* jwk: what the files of src/jwk share. Not installed, not included outside src/jwk. */
#ifndef CERTVAULT_JWK_INTERNAL_H
#define CERTVAULT_JWK_INTERNAL_H

#include <stddef.h>

#include <jansson.h>

/* base64url without padding (RFC 7515 section 2) of len bytes, as a new jansson string.
 * Returns NULL when out of memory. */
json_t *jwk_base64url(const unsigned char *bytes, size_t len);

/* Standard base64 with padding (RFC 4648 section 4, as x5c wants), as a new jansson string.
 * Returns NULL when out of memory. */
json_t *jwk_base64(const unsigned char *bytes, size_t len);

/* Writes base64url without padding of len bytes into buf, which holds at least
 * (4 * len + 2) / 3 + 1 bytes; returns the length written (NUL not counted). */
size_t jwk_base64url_into(const unsigned char *bytes, size_t len, char *buf);

#endif
