/* The project's one error enum, named. */
#include <stdarg.h>
#include <stdio.h>

#include "certvault/error.h"

static const char *const names[] = {
	[-CV_OK] = "success",
	[-CV_ERR_INTERNAL] = "internal error",
	[-CV_ERR_NOMEM] = "out of memory",
	[-CV_ERR_BAD_REQUEST] = "malformed request",
	[-CV_ERR_INVALID_NAME] = "invalid name",
	[-CV_ERR_NOT_FOUND] = "not found",
	[-CV_ERR_NAME_TAKEN] = "name already taken",
	[-CV_ERR_BAD_ENCODING] = "bad encoding",
	[-CV_ERR_EXPIRED] = "certificate expired",
	[-CV_ERR_NOT_YET_VALID] = "certificate not yet valid",
	[-CV_ERR_KEY_MISMATCH] = "private key does not match the certificate",
	[-CV_ERR_UNSUPPORTED_KEY] = "unsupported key",
	[-CV_ERR_WEAK_SIGNATURE] = "weak signature algorithm",
	[-CV_ERR_BAD_PASSWORD] = "wrong or missing password",
	[-CV_ERR_CONFIRM_REQUIRED] = "confirmation required",
	[-CV_ERR_TOO_LARGE] = "request too large",
	[-CV_ERR_METHOD_NOT_ALLOWED] = "method not allowed",
	[-CV_ERR_TOKEN_UNAVAILABLE] = "token unavailable",
	[-CV_ERR_TOKEN] = "token error",
	[-CV_ERR_DB] = "database error",
	[-CV_ERR_CONFIG] = "configuration error",
	[-CV_ERR_BAD_CHAIN] = "bad certificate chain",
	[-CV_ERR_UNSUPPORTED_MEDIA] = "unsupported media type",
	[-CV_ERR_DOMAIN_NOT_COVERED] = "domain not covered by the certificate",
	[-CV_ERR_IN_USE] = "certificate in use",
	[-CV_ERR_NOT_IN_USE] = "certificate not in use",
	[-CV_ERR_ALREADY_RENEWED] = "version already renewed",
	[-CV_ERR_PRECONDITION] = "precondition failed",
	[-CV_ERR_SAME_CERTIFICATE] = "same certificate",
	[-CV_ERR_JWK_CHOICE_REQUIRED] = "a choice for the linked JWKs is required",
	[-CV_ERR_UNREACHABLE] = "endpoint unreachable",
	[-CV_ERR_NOT_CA] = "not a CA certificate",
	[-CV_ERR_UNAUTHORIZED] = "no valid API token",
	[-CV_ERR_FORBIDDEN] = "the token's role may not do this",
	[-CV_ERR_LIMIT] = "over a limit",
	[-CV_ERR_REVOKED] = "revoked",
	[-CV_ERR_REVOCATION_UNKNOWN] = "revocation status unknown",
	[-CV_ERR_UNKNOWN_ISSUER] = "issuer not in the truststore",
	[-CV_ERR_RATE_LIMITED] = "too many refused requests from this address",
	[-CV_ERR_BUSY] = "busy: try again shortly",
	[-CV_ERR_NOT_PENDING] = "no generated key waits for a certificate",
	[-CV_ERR_PURGE_PROTECTED] = "purge protection: the retention has not ended",
	[-CV_ERR_UNWRAP_FAILED] = "the wrapped key could not be unwrapped",
	[-CV_ERR_UNKNOWN_ENVIRONMENT] = "no such environment",
	[-CV_ERR_ENVIRONMENT_NOT_ALLOWED] = "the certificate is not for that environment",
	[-CV_ERR_NO_PRIVATE_KEY] = "the certificate has no private key",
};

const char *cv_strerror(int err)
{
	if (err > 0 || err <= CV_ERR__LAST || names[-err] == NULL)
		return "unknown error";
	return names[-err];
}

int cv_errmsg_set(struct cv_errmsg *ret, int err, const char *fmt, ...)
{
	va_list ap;

	if (ret == NULL)
		return err;
	va_start(ap, fmt);
	vsnprintf(ret->text, sizeof(ret->text), fmt, ap);
	va_end(ap);
	return err;
}
