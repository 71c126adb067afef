/* Handlers for signing with a vault key (issue 18 part 4): POST /v1/certificates/{name}/sign
 * answers a signature, POST /v1/jwks/{kid}/sign a compact JWS. The key never leaves the
 * token; the client never holds its PIN. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "certvault/jwk.h"
#include "handlers.h"

/* Standard base64 (padding required) of at most max decoded bytes into a new buffer, or
 * *ret NULL when the member is absent. */
static int base64_member(json_t *obj, const char *key, size_t max, unsigned char **ret,
			 size_t *ret_len, struct cv_errmsg *err)
{
	const char *text;
	size_t len, pad = 0;
	unsigned char *buf;
	int n, r;

	*ret = NULL;
	*ret_len = 0;
	r = json_material_member(obj, key, 0, (max + 2) / 3 * 4, &text, &len, err);
	if (r < 0 || text == NULL)
		return r;
	if (len % 4 != 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" must be standard base64 "
				     "with padding", key);
	while (len > 0 && pad < 2 && text[len - 1 - pad] == '=')
		pad++;
	buf = malloc(len / 4 * 3 + 1);
	if (buf == NULL)
		return CV_ERR_NOMEM;
	n = len > 0 ? EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len) : 0;
	if (n < 0 || (size_t)n < pad) {
		free(buf);
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" must be standard base64 "
				     "with padding", key);
	}
	*ret = buf;
	*ret_len = (size_t)n - pad;
	return 0;
}

static json_t *base64_json(const unsigned char *bytes, size_t len)
{
	char buf[(CV_TOKEN_SIG_MAX + 16 + 2) / 3 * 4 + 1];
	int n;

	if ((len + 2) / 3 * 4 + 1 > sizeof(buf))
		return NULL;
	n = EVP_EncodeBlock((unsigned char *)buf, bytes, (int)len);
	return n < 0 ? NULL : json_stringn(buf, (size_t)n);
}

int h_cert_sign(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err)
{
	static const char *const allowed[] = { "algorithm", "digest", "message", "version",
					       "format", NULL };
	struct cv_sign_request in;
	struct cv_sign_result *out = NULL;
	unsigned char *digest = NULL, *message = NULL;
	const char *format = NULL;
	json_t *body = NULL, *version;
	int r;

	memset(&in, 0, sizeof(in));
	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = json_string_member(body, "algorithm", 1, 32, &in.algorithm, NULL, err);
	if (r == 0)
		r = json_string_member(body, "format", 0, 8, &format, NULL, err);
	if (r == 0 && format != NULL) {
		if (strcmp(format, "raw") == 0)
			in.format = CV_SIGN_FORMAT_RAW;
		else if (strcmp(format, "der") == 0)
			in.format = CV_SIGN_FORMAT_DER;
		else
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"format\" must be raw or der");
	}
	if (r == 0 && (version = json_object_get(body, "version")) != NULL &&
	    !json_is_null(version)) {
		if (!json_is_integer(version) || json_integer_value(version) < 1)
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"version\" must be a positive "
					  "integer");
		else
			in.version = json_integer_value(version);
	}
	if (r == 0)
		/* Longer than any hash, so that a wrong length is named as one by the vault. */
		r = base64_member(body, "digest", 1024, &digest, &in.digest_len, err);
	if (r == 0)
		r = base64_member(body, "message", CV_SIGN_MESSAGE_MAX, &message, &in.message_len,
				  err);
	in.digest = digest;
	in.message = message;
	if (r == 0 && in.digest == NULL && in.message == NULL)
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"digest\" (or \"message\") is "
				  "required");
	if (r == 0) {
		out = calloc(1, sizeof(*out));
		if (out == NULL)
			r = CV_ERR_NOMEM;
	}
	if (r == 0)
		r = cv_vault_cert_sign(&app->vault, req->audit, req->params[0], &in, req->now, out,
				       err);
	if (r == 0)
		r = res_json(res, 200,
			     json_pack("{s:s, s:I, s:s, s:s, s:o, s:{s:o}}", "certificate",
				       req->audit != NULL ? req->audit->entry.target : req->params[0],
				       "version", (json_int_t)out->version, "algorithm", out->alg->name,
				       "format", out->format == CV_SIGN_FORMAT_DER ? "der" : "raw",
				       "signature", base64_json(out->signature, out->len), "key",
				       "pkcs11_uri", string_or_null(out->key_uri[0] != '\0' ?
								    out->key_uri : NULL)));
	if (out != NULL)
		OPENSSL_clear_free(out, sizeof(*out));
	free(digest);
	OPENSSL_clear_free(message, in.message_len);
	json_decref(body);
	return r;
}

int h_jwk_sign(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err)
{
	static const char *const allowed[] = { "payload", "header", NULL };
	const struct cv_sign_alg *alg = NULL;
	const char *payload = NULL;
	char cert[65] = "", *jws = NULL;
	size_t payload_len = 0, jws_len = 0;
	int64_t version = 0;
	json_t *body = NULL, *header;
	int r;

	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = json_material_member(body, "payload", 0, CV_JWS_PAYLOAD_MAX, &payload,
					 &payload_len, err);
	if (r == 0 && payload == NULL)
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"payload\" is required (base64url; "
				  "\"\" for an empty one)");
	header = body != NULL ? json_object_get(body, "header") : NULL;
	if (r == 0 && header != NULL && json_is_null(header))
		header = NULL;
	if (r == 0 && header != NULL && !json_is_object(header))
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"header\" must be a JSON object");
	if (r == 0)
		r = cv_vault_jwk_sign(&app->vault, req->audit, req->params[0], header, payload,
				      payload_len, req->now, &jws, &jws_len, &alg, cert, &version,
				      err);
	if (r == 0)
		r = res_json(res, 200,
			     json_pack("{s:s%, s:s, s:s, s:s, s:I}", "jws", jws, jws_len, "kid",
				       req->params[0], "alg", alg->name, "certificate", cert,
				       "version", (json_int_t)version));
	free(jws);
	json_decref(body);
	return r;
}
