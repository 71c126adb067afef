/* The one error enum of certvault: 0 is success, negatives are failures. */
#ifndef CERTVAULT_ERROR_H
#define CERTVAULT_ERROR_H

#include <stddef.h>

enum cv_err {
	CV_OK = 0,
	CV_ERR_INTERNAL = -1,          /* a bug or an unexpected library failure */
	CV_ERR_NOMEM = -2,
	CV_ERR_BAD_REQUEST = -3,       /* malformed request: bad JSON, missing or wrong-typed field */
	CV_ERR_INVALID_NAME = -4,      /* name is not [A-Za-z0-9-]{1,64} */
	CV_ERR_NOT_FOUND = -5,
	CV_ERR_NAME_TAKEN = -6,
	CV_ERR_BAD_ENCODING = -7,      /* certificate, key or chain could not be decoded */
	CV_ERR_EXPIRED = -8,
	CV_ERR_NOT_YET_VALID = -9,
	CV_ERR_KEY_MISMATCH = -10,
	CV_ERR_UNSUPPORTED_KEY = -11,  /* key type, curve or size outside what certvault takes */
	CV_ERR_WEAK_SIGNATURE = -12,   /* MD5 or SHA-1 signature, refused by configuration */
	CV_ERR_BAD_PASSWORD = -13,     /* encrypted key: missing or wrong password */
	CV_ERR_CONFIRM_REQUIRED = -14, /* a destructive call without its confirmation keyword */
	CV_ERR_TOO_LARGE = -15,        /* request body over its limit */
	CV_ERR_METHOD_NOT_ALLOWED = -16,
	CV_ERR_TOKEN_UNAVAILABLE = -17,/* the PKCS#11 token cannot be reached */
	CV_ERR_TOKEN = -18,            /* the token refused an operation */
	CV_ERR_DB = -19,               /* the database failed */
	CV_ERR_CONFIG = -20,           /* configuration missing or invalid */
	CV_ERR_BAD_CHAIN = -21,        /* a chain entry is not a CA certificate */
	CV_ERR_UNSUPPORTED_MEDIA = -22,/* body is not application/json */
	CV_ERR_DOMAIN_NOT_COVERED = -23,/* a certificate does not cover a service's domains */
	CV_ERR_IN_USE = -24,           /* services use the certificate */
	CV_ERR_NOT_IN_USE = -25,       /* renewal of a certificate no service uses */
	CV_ERR_ALREADY_RENEWED = -26,  /* the version named is no longer the current one */
	CV_ERR_PRECONDITION = -27,     /* a version or If-Match that names no version */
	CV_ERR_SAME_CERTIFICATE = -28, /* renew/replace with a certificate the entry already had */
	CV_ERR_JWK_CHOICE_REQUIRED = -29,/* JWKs are linked: the caller must say what happens to them */
	CV_ERR_UNREACHABLE = -30,      /* a remote endpoint could not be reached or spoke no TLS */
	CV_ERR_NOT_CA = -31,           /* a truststore entry that is not a CA certificate */
	CV_ERR_UNAUTHORIZED = -32,     /* no API token, or one that is unknown, expired or revoked */
	CV_ERR_FORBIDDEN = -33,        /* the token's role may not do this */
	CV_ERR_LIMIT = -34,            /* a certificate holds more of something than is taken */
	CV_ERR_REVOKED = -35,          /* the certificate is revoked (a CRL or OCSP said so) */
	CV_ERR_REVOCATION_UNKNOWN = -36,/* a revocation source exists but could not tell */
	CV_ERR_UNKNOWN_ISSUER = -37,   /* a CRL no truststore CA issued */
	CV_ERR_RATE_LIMITED = -38,     /* a source refused too often: come back later */
	CV_ERR_BUSY = -39,             /* the slow-request queue is full, or certvaultd is stopping */
	CV_ERR_NOT_PENDING = -40,      /* a merge or a CSR asked of a certificate with no key waiting */
	CV_ERR_UNWRAP_FAILED = -41,    /* a wrapped key the token could not unwrap */
	CV_ERR_UNKNOWN_ENVIRONMENT = -42,/* a service or certificate names no existing environment */
	CV_ERR_ENVIRONMENT_NOT_ALLOWED = -43,/* the certificate is not for the service's environment */
	CV_ERR_NO_PRIVATE_KEY = -44,   /* a public certificate (no key) where a key is needed */
	CV_ERR_PURGE_PROTECTED = -45,  /* a purge before the retention ends, with purge protection on */
	CV_ERR__LAST = -46
};

/* A human message that goes with an error: safe to show a client, never holds a secret. */
struct cv_errmsg {
	char text[256];
};

/* Returns a static, human name for an error code; never NULL. */
const char *cv_strerror(int err);

/* Formats a message into ret (which may be NULL) and returns err unchanged, so that
 * `return cv_errmsg_set(m, CV_ERR_EXPIRED, "expired on %s", when);` reads as one step. */
int cv_errmsg_set(struct cv_errmsg *ret, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
