/* The one table from certvault's errors to HTTP statuses and stable JSON codes. */
#include "certvault/http.h"

struct mapping {
	int status;
	const char *code;
};

static const struct mapping table[] = {
	[-CV_OK] = { 200, "ok" },
	[-CV_ERR_INTERNAL] = { 500, "internal_error" },
	[-CV_ERR_NOMEM] = { 503, "out_of_memory" },
	[-CV_ERR_BAD_REQUEST] = { 400, "bad_request" },
	[-CV_ERR_INVALID_NAME] = { 400, "invalid_name" },
	[-CV_ERR_NOT_FOUND] = { 404, "not_found" },
	[-CV_ERR_NAME_TAKEN] = { 409, "name_taken" },
	[-CV_ERR_BAD_ENCODING] = { 400, "bad_encoding" },
	[-CV_ERR_EXPIRED] = { 422, "expired" },
	[-CV_ERR_NOT_YET_VALID] = { 422, "not_yet_valid" },
	[-CV_ERR_KEY_MISMATCH] = { 422, "key_mismatch" },
	[-CV_ERR_UNSUPPORTED_KEY] = { 422, "unsupported_key" },
	[-CV_ERR_WEAK_SIGNATURE] = { 422, "weak_signature" },
	[-CV_ERR_BAD_PASSWORD] = { 422, "bad_password" },
	[-CV_ERR_CONFIRM_REQUIRED] = { 400, "confirmation_required" },
	[-CV_ERR_TOO_LARGE] = { 413, "body_too_large" },
	[-CV_ERR_METHOD_NOT_ALLOWED] = { 405, "method_not_allowed" },
	[-CV_ERR_TOKEN_UNAVAILABLE] = { 503, "token_unavailable" },
	[-CV_ERR_TOKEN] = { 500, "token_error" },
	[-CV_ERR_DB] = { 500, "database_error" },
	[-CV_ERR_CONFIG] = { 500, "configuration_error" },
	[-CV_ERR_BAD_CHAIN] = { 422, "bad_chain" },
	[-CV_ERR_UNSUPPORTED_MEDIA] = { 415, "unsupported_media_type" },
	[-CV_ERR_DOMAIN_NOT_COVERED] = { 422, "domain_not_covered" },
	[-CV_ERR_IN_USE] = { 409, "in_use" },
	[-CV_ERR_NOT_IN_USE] = { 409, "not_in_use" },
	[-CV_ERR_ALREADY_RENEWED] = { 409, "already_renewed" },
	[-CV_ERR_PRECONDITION] = { 412, "precondition_failed" },
	[-CV_ERR_SAME_CERTIFICATE] = { 409, "same_certificate" },
	[-CV_ERR_JWK_CHOICE_REQUIRED] = { 409, "jwk_choice_required" },
	[-CV_ERR_UNREACHABLE] = { 502, "endpoint_unreachable" },
	[-CV_ERR_NOT_CA] = { 422, "not_a_ca" },
	[-CV_ERR_UNAUTHORIZED] = { 401, "unauthorized" },
	[-CV_ERR_FORBIDDEN] = { 403, "forbidden" },
	[-CV_ERR_LIMIT] = { 422, "limit_exceeded" },
	[-CV_ERR_REVOKED] = { 422, "revoked" },
	[-CV_ERR_REVOCATION_UNKNOWN] = { 422, "revocation_unknown" },
	[-CV_ERR_UNKNOWN_ISSUER] = { 422, "unknown_issuer" },
	[-CV_ERR_RATE_LIMITED] = { 429, "rate_limited" },
	[-CV_ERR_BUSY] = { 503, "busy" },
	[-CV_ERR_NOT_PENDING] = { 409, "not_pending" },
	[-CV_ERR_PURGE_PROTECTED] = { 409, "purge_protected" },
	[-CV_ERR_UNWRAP_FAILED] = { 422, "unwrap_failed" },
	[-CV_ERR_UNKNOWN_ENVIRONMENT] = { 422, "unknown_environment" },
	[-CV_ERR_ENVIRONMENT_NOT_ALLOWED] = { 422, "environment_not_allowed" },
	[-CV_ERR_NO_PRIVATE_KEY] = { 422, "no_private_key" },
};

static const struct mapping *lookup(int err)
{
	if (err > 0 || err <= CV_ERR__LAST || table[-err].code == NULL)
		return &table[-CV_ERR_INTERNAL];
	return &table[-err];
}

int cv_http_error_status(int err)
{
	return lookup(err)->status;
}

const char *cv_http_error_code(int err)
{
	return lookup(err)->code;
}
