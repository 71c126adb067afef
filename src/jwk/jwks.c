/* jwk: the public JWKS document (RFC 7517 section 5). */
#include "certvault/jwk.h"

int cv_jwks_document(const json_t *jwks, json_t **ret_doc, struct cv_errmsg *err)
{
	json_t *keys = NULL, *doc = NULL;
	size_t i;
	int r;

	if (!json_is_array(jwks)) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "the JWKs are not an array");
		goto out;
	}
	keys = json_array();
	if (keys == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < json_array_size(jwks); i++) {
		const json_t *jwk = json_array_get(jwks, i);

		/* The document is served to anyone: a private member here is a bug upstream. */
		if (!cv_jwk_is_public(jwk)) {
			r = cv_errmsg_set(err, CV_ERR_INTERNAL,
					  "JWK %zu is not a public JWK: no JWKS document is "
					  "made", i);
			goto out;
		}
		if (json_array_append_new(keys, json_deep_copy(jwk)) != 0) {
			r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	doc = json_pack("{s:O}", "keys", keys);
	if (doc == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	*ret_doc = doc;
	r = 0;
out:
	json_decref(keys);
	return r;
}
