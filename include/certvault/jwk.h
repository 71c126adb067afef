/* jwk: pure functions that build public JSON Web Keys (RFC 7517, 7518, 8037) from certificates,
 * their RFC 7638 thumbprints and the JWKS document. No I/O, no global state; every function is
 * safe to call from many threads at once (each on its own json_t). */
#ifndef CERTVAULT_JWK_H
#define CERTVAULT_JWK_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certvault/error.h"

/* An RFC 7638 SHA-256 thumbprint in base64url without padding is 43 characters. */
#define CV_JWK_KID_LEN 43
/* The longest kid made: a thumbprint, '.', the longest alg (14) , '.', a use (3). */
#define CV_JWK_KID_MAX 64

/* What a key may be published for, and with which algorithm (RFC 7518 sections 3 and 4):
 *
 *   key      use "sig" (the default)                         use "enc"
 *   RSA      RS256 (default), RS384, RS512, PS256, PS384,    RSA-OAEP-256 (default), RSA-OAEP
 *            PS512
 *   P-256    ES256                                           ECDH-ES (default), ECDH-ES+A128KW,
 *   P-384    ES384                                             ECDH-ES+A192KW, ECDH-ES+A256KW
 *   P-521    ES512
 *   Ed25519  EdDSA                                           refused: Ed25519 only signs (RFC 8037
 *                                                            puts key agreement on X25519)
 *
 * An alg of the other use (RS256 with "enc", RSA-OAEP with "sig") does not fit. RSA keys under
 * 2048 bits are refused (RFC 7518 section 3.3 and 4.3); other key types and curves too.
 * alg values and use are case-sensitive, as in RFC 7515 and 7517. */

/* The default alg for a public key and a use (NULL means "sig"), as in the table above, into
 * *ret_alg (a static string). Returns 0; CV_ERR_BAD_REQUEST for a use other than "sig" or
 * "enc", or "enc" with an Ed25519 key; CV_ERR_UNSUPPORTED_KEY for a key outside the table. */
int cv_jwk_alg_default(const EVP_PKEY *pkey, const char *use, const char **ret_alg,
		       struct cv_errmsg *err);

/* A new public JWK of pkey (only its public half is read): kty, kid, use, alg and the key's
 * public members. kid is the RFC 7638 thumbprint for the key's default JWK (use "sig" with
 * its default alg); for another alg or use of the same key it is the thumbprint, ".", the
 * alg, ".", the use ("<thumbprint>.PS256.sig", "<thumbprint>.RSA-OAEP-256.enc"), so that a
 * key published several ways has a distinct kid for each (RFC 7517 section 4.5) and a
 * verifier that picks a key by kid is never led to another algorithm. At most
 * CV_JWK_KID_MAX characters. The members: RSA n and e (unsigned big-endian, no leading zero);
 * EC crv, x and y (each coordinate left-padded to the curve's length: 32, 48 or 66 bytes);
 * Ed25519 kty "OKP", crv "Ed25519", x (RFC 8037); all base64url without padding. alg and use
 * may be NULL for their defaults. On success *ret_jwk is a new reference, the caller's.
 * Errors, each with a message: CV_ERR_BAD_REQUEST for a use or alg that does not fit the key
 * (the message names the ones that do), CV_ERR_UNSUPPORTED_KEY, CV_ERR_NOMEM,
 * CV_ERR_INTERNAL. */
int cv_jwk_from_pkey(const EVP_PKEY *pkey, const char *alg, const char *use, json_t **ret_jwk,
		     struct cv_errmsg *err);

/* As cv_jwk_from_pkey for the certificate's public key, plus x5c (the certificate, then each
 * entry of chain, each standard base64 of DER, RFC 7517 section 4.7) and x5t#S256 (base64url
 * of the SHA-256 of the certificate's DER). chain may be NULL; when given it must be in
 * issuance order (each entry issued the one before it), else CV_ERR_BAD_CHAIN, and hold at
 * most CV_X509_MAX_CHAIN entries. When the certificate has a keyUsage extension, "sig" needs
 * digitalSignature or nonRepudiation, and "enc" needs keyEncipherment (RSA) or keyAgreement
 * (EC), else CV_ERR_BAD_REQUEST. Neither cert nor chain is changed. */
int cv_jwk_from_cert(X509 *cert, STACK_OF(X509) *chain, const char *alg, const char *use,
		     json_t **ret_jwk, struct cv_errmsg *err);

/* The RFC 7638 thumbprint of a public JWK into ret_kid (NUL-terminated): SHA-256 over the
 * required members only (RSA: e, kty, n; EC: crv, kty, x, y; OKP: crv, kty, x) in
 * lexicographic order without whitespace, in base64url without padding. Other members
 * (kid, alg, use, x5c...) do not count. Returns 0; CV_ERR_BAD_REQUEST when a required member
 * is missing, not a string, or not base64url; CV_ERR_UNSUPPORTED_KEY for another kty or crv. */
int cv_jwk_thumbprint(const json_t *jwk, char ret_kid[CV_JWK_KID_LEN + 1],
		      struct cv_errmsg *err);

/* 1 when jwk is an object without any private or secret member (d, p, q, dp, dq, qi, oth of
 * RSA, EC and OKP keys; k of symmetric keys), else 0 (also for anything not an object). */
int cv_jwk_is_public(const json_t *jwk);

/* A new JWKS document {"keys": [...]} holding a copy of each JWK of the array jwks, in its
 * order. Refuses a member that is not a public JWK (CV_ERR_INTERNAL: a bug upstream, since
 * the document is served to anyone) or a jwks that is not an array (CV_ERR_INTERNAL).
 * On success *ret_doc is a new reference, the caller's. */
int cv_jwks_document(const json_t *jwks, json_t **ret_doc, struct cv_errmsg *err);

/* Compact JWS (RFC 7515 7.1) signed for a client (src/jwk/jws.c). The longest payload taken,
 * as base64url text. */
#define CV_JWS_PAYLOAD_MAX (1024 * 1024)
/* The JWS Signing Input, BASE64URL(UTF8(protected header)) "." payload, into *ret_input
 * (malloc'd, NUL-terminated, the caller's). The protected header is alg, then kid, then
 * the members of header (an object, or NULL for none) as the client gave them. The vault sets
 * alg and kid: header naming either with another value is refused, and so are the members
 * that would name another key or change what is signed: jwk, jku, x5u and x5c; x5t and
 * x5t#S256 unless equal to jwk's own; b64 and crit (only the default encoding, no critical
 * extensions). payload must be base64url without padding (RFC 7515 2), at most
 * CV_JWS_PAYLOAD_MAX characters. Returns 0, CV_ERR_BAD_REQUEST (err says which member and
 * why) or CV_ERR_NOMEM. */
int cv_jws_signing_input(const json_t *header, const char *alg, const char *kid,
			 const json_t *jwk, const char *payload, size_t payload_len,
			 char **ret_input, size_t *ret_len, struct cv_errmsg *err);
/* The compact serialization: input "." BASE64URL(sig), into *ret_jws (malloc'd, the
 * caller's). Returns 0 or CV_ERR_NOMEM. */
int cv_jws_compact(const char *input, size_t input_len, const unsigned char *sig,
		   size_t sig_len, char **ret_jws, size_t *ret_len);

#endif
