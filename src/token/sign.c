/* token: signing with a key object, for the HTTPS listener's handshakes. The key stays in
 * the token: only the data to sign goes in and the signature comes out. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"

struct sign_op {
	const uint8_t *id;
	size_t id_len;
	CK_MECHANISM mechanism;
	const unsigned char *data;
	size_t data_len;
	unsigned char *sig;
	CK_ULONG sig_len;   /* in: room in sig; out: the signature's length */
	CK_RV rv;           /* the last call's answer */
};

static CK_OBJECT_HANDLE private_handle(struct cv_token *token, const uint8_t *id, size_t id_len)
{
	const struct keymap_entry *e;
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;

	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, id, id_len);
	if (e != NULL && !e->pending)
		h = e->priv;
	pthread_mutex_unlock(&token->map.lock);
	return h;
}

/* A C_Sign that answered CKR_BUFFER_TOO_SMALL left the operation active on the session:
 * finishing it into a buffer of the size asked for ends it, so the session goes back to the
 * pool clean. The signature made is thrown away. */
static void sign_finish_discard(struct cv_token *token, CK_SESSION_HANDLE session,
				const struct sign_op *op, CK_ULONG needed)
{
	unsigned char *scratch = OPENSSL_malloc(needed > 0 ? needed : 1);
	CK_ULONG len = needed;

	if (scratch == NULL)
		return; /* the next C_SignInit on this session fails with OPERATION_ACTIVE */
	(void)token->f->C_Sign(session, (CK_BYTE_PTR)op->data, (CK_ULONG)op->data_len, scratch,
			       &len);
	OPENSSL_clear_free(scratch, needed > 0 ? needed : 1);
}

/* A C_Sign refused before it began (CKR_ARGUMENTS_BAD from SoftHSM) may leave the operation
 * active; a well-formed call ends it either way (made, or refused and so terminated), and
 * answers CKR_OPERATION_NOT_INITIALIZED when nothing was active. The session goes back to
 * the pool clean: a next C_SignInit on it would fail with CKR_OPERATION_ACTIVE. */
static void sign_end_failed(struct cv_token *token, CK_SESSION_HANDLE session)
{
	unsigned char one = 0, scratch[CV_TOKEN_SIG_MAX];
	CK_ULONG len = sizeof(scratch);

	(void)token->f->C_Sign(session, &one, 1, scratch, &len);
	OPENSSL_cleanse(scratch, sizeof(scratch));
}

static CK_RV sign_once(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
		       const char **ret_call)
{
	struct sign_op *op = arg;
	CK_OBJECT_HANDLE key = private_handle(token, op->id, op->id_len);
	CK_ULONG len = op->sig_len;
	CK_RV rv;

	*ret_call = "C_SignInit";
	/* Looked up on each try: a retry after a new login runs after the relisting. */
	if (key == CK_INVALID_HANDLE) {
		op->rv = CKR_KEY_HANDLE_INVALID;
		return op->rv;
	}
	rv = token->f->C_SignInit(session, &op->mechanism, key);
	if (rv != CKR_OK)
		goto out;
	*ret_call = "C_Sign";
	rv = token->f->C_Sign(session, (CK_BYTE_PTR)op->data, (CK_ULONG)op->data_len, op->sig,
			      &len);
	if (rv == CKR_BUFFER_TOO_SMALL)
		sign_finish_discard(token, session, op, len);
	else if (rv != CKR_OK)
		sign_end_failed(token, session);
	if (rv == CKR_OK)
		op->sig_len = len;
out:
	op->rv = rv;
	return rv;
}

static CK_MECHANISM_TYPE hash_mechanism(enum cv_token_hash hash, CK_RSA_PKCS_MGF_TYPE *ret_mgf)
{
	switch (hash) {
	case CV_TOKEN_SHA256:
		*ret_mgf = CKG_MGF1_SHA256;
		return CKM_SHA256;
	case CV_TOKEN_SHA384:
		*ret_mgf = CKG_MGF1_SHA384;
		return CKM_SHA384;
	case CV_TOKEN_SHA512:
		*ret_mgf = CKG_MGF1_SHA512;
		return CKM_SHA512;
	}
	return CK_UNAVAILABLE_INFORMATION;
}

int cv_token_sign(struct cv_token *token, const uint8_t *id, size_t id_len,
		  const struct cv_token_sign_params *params, const unsigned char *data,
		  size_t data_len, unsigned char *sig, size_t *sig_len, struct cv_errmsg *err)
{
	CK_RSA_PKCS_PSS_PARAMS pss;
	struct sign_op op;
	int r;

	memset(&op, 0, sizeof(op));
	memset(&pss, 0, sizeof(pss));
	op.id = id;
	op.id_len = id_len;
	/* An empty message (Ed25519 signs one) is still a buffer: never NULL to the module. */
	op.data = data != NULL ? data : (const unsigned char *)"";
	op.data_len = data_len;
	op.sig = sig;
	op.sig_len = (CK_ULONG)*sig_len;
	switch (params->mechanism) {
	case CV_TOKEN_SIGN_RSA_PKCS1:
		op.mechanism.mechanism = CKM_RSA_PKCS;
		break;
	case CV_TOKEN_SIGN_RSA_PSS:
		pss.hashAlg = hash_mechanism(params->pss_hash, &pss.mgf);
		if (pss.hashAlg == CK_UNAVAILABLE_INFORMATION)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "RSA-PSS without a hash");
		pss.sLen = (CK_ULONG)params->pss_salt_len;
		op.mechanism.mechanism = CKM_RSA_PKCS_PSS;
		op.mechanism.pParameter = &pss;
		op.mechanism.ulParameterLen = sizeof(pss);
		break;
	case CV_TOKEN_SIGN_ECDSA:
		op.mechanism.mechanism = CKM_ECDSA;
		break;
	case CV_TOKEN_SIGN_EDDSA:
		op.mechanism.mechanism = CKM_EDDSA;
		break;
	default:
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "unknown signing mechanism %d",
				     (int)params->mechanism);
	}
	if (!cv_token_key_exists(token, id, id_len)) {
		r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no key with this id in the token");
		goto out;
	}
	r = token_run(token, sign_once, &op, err);
	/* A handle the token no longer knows (another node destroyed the key): one fresh
	 * search, then one more try if the key is there, else 'no key'. */
	if (r < 0 && r != CV_ERR_TOKEN_UNAVAILABLE && token_rv_handle_stale(op.rv)) {
		r = token_key_lookup(token, id, id_len, err);
		if (r == 1) {
			op.sig_len = (CK_ULONG)*sig_len;
			r = token_run(token, sign_once, &op, err);
		} else if (r == 0) {
			r = CV_ERR_TOKEN;  /* op.rv still says the handle was stale: not found */
		} else {
			goto out;          /* the search itself failed: that is the answer */
		}
	}
	if (r == 0) {
		*sig_len = (size_t)op.sig_len;
		goto out;
	}
	/* The token is gone: whatever the last call said, that is the answer. */
	if (r == CV_ERR_TOKEN_UNAVAILABLE)
		goto out;
	switch (op.rv) {
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
		r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no key with this id in the token");
		break;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
	case CKR_DATA_LEN_RANGE:
	case CKR_DATA_INVALID:
	case CKR_BUFFER_TOO_SMALL:
		/* err already names the call and the CKR_; the request was wrong, not the token. */
		r = CV_ERR_BAD_REQUEST;
		break;
	default:
		break;
	}
out:
	return r;
}
