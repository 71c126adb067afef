/* token: creating, destroying and inspecting key objects; listing them once at open. */
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>

#include "certvault/fault.h"
#include "internal.h"

/* The largest template, RSA's private key, has 20 attributes. */
#define TEMPLATE_MAX 32
#define TEMPLATE_BUFS 12

/* The two object templates for one key, and the buffers they point into. Every buffer is
 * released with OPENSSL_clear_free: most of them hold private key bytes, and wiping the few
 * public ones too costs nothing. */
struct key_template {
	CK_OBJECT_CLASS priv_class, pub_class;
	CK_KEY_TYPE type;
	CK_BBOOL yes, no;
	CK_ATTRIBUTE priv[TEMPLATE_MAX];
	CK_ULONG n_priv;
	CK_ATTRIBUTE pub[TEMPLATE_MAX];
	CK_ULONG n_pub;
	unsigned char *bufs[TEMPLATE_BUFS];
	size_t buf_lens[TEMPLATE_BUFS];
	unsigned n_bufs;
};

struct curve {
	int nid;
	size_t field_len;
	const unsigned char *params;  /* DER of the curve's OID, as CKA_EC_PARAMS wants it */
	size_t params_len;
};

static const unsigned char oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
					  0x07 };
static const unsigned char oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const unsigned char oid_p521[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 };
static const unsigned char oid_ed25519[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };

static const struct curve curves[] = {
	{ NID_X9_62_prime256v1, 32, oid_p256, sizeof(oid_p256) },
	{ NID_secp384r1, 48, oid_p384, sizeof(oid_p384) },
	{ NID_secp521r1, 66, oid_p521, sizeof(oid_p521) },
};

static void template_init(struct key_template *t)
{
	memset(t, 0, sizeof(*t));
	t->priv_class = CKO_PRIVATE_KEY;
	t->pub_class = CKO_PUBLIC_KEY;
	t->yes = CK_TRUE;
	t->no = CK_FALSE;
}

static void template_release(struct key_template *t)
{
	unsigned i;

	for (i = 0; i < t->n_bufs; i++)
		OPENSSL_clear_free(t->bufs[i], t->buf_lens[i]);
	t->n_bufs = 0;
}

/* The templates only point at const data: modules read them and never write. */
static void add(CK_ATTRIBUTE *attrs, CK_ULONG *n, CK_ATTRIBUTE_TYPE type, const void *value,
		size_t len)
{
	attrs[*n].type = type;
	attrs[*n].pValue = (void *)value;
	attrs[*n].ulValueLen = (CK_ULONG)len;
	(*n)++;
}

static unsigned char *buf_new(struct key_template *t, size_t len)
{
	unsigned char *p;

	if (t->n_bufs == TEMPLATE_BUFS)
		return NULL;
	p = OPENSSL_zalloc(len > 0 ? len : 1);
	if (p == NULL)
		return NULL;
	t->bufs[t->n_bufs] = p;
	t->buf_lens[t->n_bufs] = len;
	t->n_bufs++;
	return p;
}

/* A big-endian copy of the key's number name, padded to pad bytes (0: its own length).
 * Returns 0, CV_ERR_UNSUPPORTED_KEY when the key has no such number, or CV_ERR_NOMEM. */
static int bn_bytes(struct key_template *t, const EVP_PKEY *key, const char *name, size_t pad,
		    unsigned char **ret_buf, size_t *ret_len)
{
	BIGNUM *bn = NULL;
	unsigned char *buf;
	size_t len;
	int r;

	if (!EVP_PKEY_get_bn_param(key, name, &bn)) {
		r = CV_ERR_UNSUPPORTED_KEY;
		goto out;
	}
	len = pad > 0 ? pad : (size_t)BN_num_bytes(bn);
	if ((size_t)BN_num_bytes(bn) > len) {
		r = CV_ERR_UNSUPPORTED_KEY;
		goto out;
	}
	buf = buf_new(t, len);
	if (buf == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (BN_bn2binpad(bn, buf, (int)len) < 0) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	*ret_buf = buf;
	*ret_len = len;
	r = 0;
out:
	BN_clear_free(bn);
	return r;
}

/* DER OCTET STRING around data: CKA_EC_POINT holds the point that way. */
static int octet_string(struct key_template *t, const unsigned char *data, size_t len,
			unsigned char **ret_buf, size_t *ret_len)
{
	size_t header = len < 0x80 ? 2 : len < 0x100 ? 3 : 4;
	unsigned char *buf;

	if (len > 0xffff)
		return CV_ERR_INTERNAL;
	buf = buf_new(t, header + len);
	if (buf == NULL)
		return CV_ERR_NOMEM;
	buf[0] = 0x04;
	if (header == 2) {
		buf[1] = (unsigned char)len;
	} else if (header == 3) {
		buf[1] = 0x81;
		buf[2] = (unsigned char)len;
	} else {
		buf[1] = 0x82;
		buf[2] = (unsigned char)(len >> 8);
		buf[3] = (unsigned char)len;
	}
	memcpy(buf + header, data, len);
	*ret_buf = buf;
	*ret_len = header + len;
	return 0;
}

static int rsa_template(struct key_template *t, const EVP_PKEY *key, struct cv_errmsg *err)
{
	/* The CRT numbers are optional in PKCS#11; the modulus, exponents are not. */
	static const struct {
		const char *param;
		CK_ATTRIBUTE_TYPE type;
		int required;
	} numbers[] = {
		{ OSSL_PKEY_PARAM_RSA_D, CKA_PRIVATE_EXPONENT, 1 },
		{ OSSL_PKEY_PARAM_RSA_FACTOR1, CKA_PRIME_1, 0 },
		{ OSSL_PKEY_PARAM_RSA_FACTOR2, CKA_PRIME_2, 0 },
		{ OSSL_PKEY_PARAM_RSA_EXPONENT1, CKA_EXPONENT_1, 0 },
		{ OSSL_PKEY_PARAM_RSA_EXPONENT2, CKA_EXPONENT_2, 0 },
		{ OSSL_PKEY_PARAM_RSA_COEFFICIENT1, CKA_COEFFICIENT, 0 },
	};
	unsigned char *n, *e, *v;
	size_t n_len, e_len, v_len, i;
	BIGNUM *third = NULL;
	int bits, r;

	bits = EVP_PKEY_get_bits(key);
	if (bits < 2048 || bits > 4096) {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
				  "RSA keys of %d bits are not supported (2048 to 4096)", bits);
		goto out;
	}
	/* PKCS#11 has no place for a third prime. */
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_FACTOR3, &third)) {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
				  "multi-prime RSA keys are not supported");
		goto out;
	}
	t->type = CKK_RSA;
	r = bn_bytes(t, key, OSSL_PKEY_PARAM_RSA_N, 0, &n, &n_len);
	if (r == 0)
		r = bn_bytes(t, key, OSSL_PKEY_PARAM_RSA_E, 0, &e, &e_len);
	if (r < 0) {
		r = cv_errmsg_set(err, r, "cannot read the RSA public key");
		goto out;
	}
	add(t->priv, &t->n_priv, CKA_MODULUS, n, n_len);
	add(t->priv, &t->n_priv, CKA_PUBLIC_EXPONENT, e, e_len);
	add(t->pub, &t->n_pub, CKA_MODULUS, n, n_len);
	add(t->pub, &t->n_pub, CKA_PUBLIC_EXPONENT, e, e_len);
	for (i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		r = bn_bytes(t, key, numbers[i].param, 0, &v, &v_len);
		if (r == CV_ERR_UNSUPPORTED_KEY && !numbers[i].required)
			continue;
		if (r < 0) {
			r = cv_errmsg_set(err, r, r == CV_ERR_UNSUPPORTED_KEY ?
					  "the RSA key has no private part" :
					  "cannot read the RSA key");
			goto out;
		}
		add(t->priv, &t->n_priv, numbers[i].type, v, v_len);
	}
	r = 0;
out:
	BN_free(third);
	return r;
}

static int ec_template(struct key_template *t, const EVP_PKEY *key, struct cv_errmsg *err)
{
	const struct curve *curve = NULL;
	unsigned char *d, *x, *y, *ec_point, point[1 + 2 * 66];
	size_t d_len, x_len, y_len, ec_point_len, i;
	char group[64];
	int nid, r;

	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					    NULL)) {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
				  "EC keys with explicit curve parameters are not supported");
		goto out;
	}
	nid = OBJ_sn2nid(group);
	if (nid == NID_undef)
		nid = EC_curve_nist2nid(group);
	for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
		if (curves[i].nid == nid)
			curve = &curves[i];
	}
	if (curve == NULL) {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
				  "EC curve %.40s is not supported (P-256, P-384, P-521)", group);
		goto out;
	}
	t->type = CKK_EC;
	/* PKCS#11 wants the scalar at the field's full length, leading zeros kept. */
	r = bn_bytes(t, key, OSSL_PKEY_PARAM_PRIV_KEY, curve->field_len, &d, &d_len);
	if (r < 0) {
		r = cv_errmsg_set(err, r, r == CV_ERR_UNSUPPORTED_KEY ?
				  "the EC key has no private part" : "cannot read the EC key");
		goto out;
	}
	/* Rebuild the point from x and y: the key may carry it compressed, and CKA_EC_POINT
	 * readers (libp11, p11tool) expect it uncompressed. */
	r = bn_bytes(t, key, OSSL_PKEY_PARAM_EC_PUB_X, curve->field_len, &x, &x_len);
	if (r == 0)
		r = bn_bytes(t, key, OSSL_PKEY_PARAM_EC_PUB_Y, curve->field_len, &y, &y_len);
	if (r < 0) {
		r = cv_errmsg_set(err, r, "cannot read the EC public key");
		goto out;
	}
	point[0] = 0x04;
	memcpy(point + 1, x, x_len);
	memcpy(point + 1 + x_len, y, y_len);
	r = octet_string(t, point, 1 + x_len + y_len, &ec_point, &ec_point_len);
	if (r < 0) {
		r = cv_errmsg_set(err, r, "cannot encode the EC point");
		goto out;
	}
	add(t->priv, &t->n_priv, CKA_EC_PARAMS, curve->params, curve->params_len);
	add(t->priv, &t->n_priv, CKA_VALUE, d, d_len);
	add(t->pub, &t->n_pub, CKA_EC_PARAMS, curve->params, curve->params_len);
	add(t->pub, &t->n_pub, CKA_EC_POINT, ec_point, ec_point_len);
	r = 0;
out:
	return r;
}

static int ed25519_template(struct key_template *t, const EVP_PKEY *key,
			    struct cv_errmsg *err)
{
	unsigned char *priv, *ec_point, pub[32];
	size_t priv_len = 32, pub_len = sizeof(pub), ec_point_len;
	int r;

	t->type = CKK_EC_EDWARDS;
	priv = buf_new(t, priv_len);
	if (priv == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!EVP_PKEY_get_raw_private_key(key, priv, &priv_len) || priv_len != 32) {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY, "the Ed25519 key has no private part");
		goto out;
	}
	if (!EVP_PKEY_get_raw_public_key(key, pub, &pub_len) || pub_len != 32) {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY, "cannot read the Ed25519 public key");
		goto out;
	}
	r = octet_string(t, pub, pub_len, &ec_point, &ec_point_len);
	if (r < 0) {
		r = cv_errmsg_set(err, r, "cannot encode the Ed25519 public key");
		goto out;
	}
	add(t->priv, &t->n_priv, CKA_EC_PARAMS, oid_ed25519, sizeof(oid_ed25519));
	add(t->priv, &t->n_priv, CKA_VALUE, priv, priv_len);
	add(t->pub, &t->n_pub, CKA_EC_PARAMS, oid_ed25519, sizeof(oid_ed25519));
	add(t->pub, &t->n_pub, CKA_EC_POINT, ec_point, ec_point_len);
	r = 0;
out:
	return r;
}

/* Both templates for key; the attributes every certvault key has come first. */
static int template_build(struct key_template *t, const EVP_PKEY *key, const char *label,
			  const uint8_t *id, size_t id_len, struct cv_errmsg *err)
{
	int r;

	if (EVP_PKEY_is_a(key, "RSA")) {
		r = rsa_template(t, key, err);
	} else if (EVP_PKEY_is_a(key, "EC")) {
		r = ec_template(t, key, err);
	} else if (EVP_PKEY_is_a(key, "ED25519")) {
		r = ed25519_template(t, key, err);
	} else {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY, "%s keys are not supported",
				  EVP_PKEY_get0_type_name(key) != NULL ?
				  EVP_PKEY_get0_type_name(key) : "such");
	}
	/* Failed getters leave entries in this thread's OpenSSL error queue; they are ours. */
	ERR_clear_error();
	if (r < 0)
		goto out;
	add(t->priv, &t->n_priv, CKA_CLASS, &t->priv_class, sizeof(t->priv_class));
	add(t->priv, &t->n_priv, CKA_KEY_TYPE, &t->type, sizeof(t->type));
	add(t->priv, &t->n_priv, CKA_TOKEN, &t->yes, sizeof(t->yes));
	add(t->priv, &t->n_priv, CKA_PRIVATE, &t->yes, sizeof(t->yes));
	add(t->priv, &t->n_priv, CKA_SENSITIVE, &t->yes, sizeof(t->yes));
	add(t->priv, &t->n_priv, CKA_EXTRACTABLE, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_SIGN, &t->yes, sizeof(t->yes));
	/* Said outright, because SoftHSM defaults decrypt and unwrap to true even on EC keys:
	 * the key signs, nothing more. No decrypt even for RSA: certvault's TLS has no RSA key
	 * exchange, so C_Decrypt would only be a raw RSA decryption oracle for whoever holds the
	 * PIN; no sign-recover (raw RSA with the message recoverable from the signature). Not
	 * modifiable, not copyable: nobody can later turn these back on in this object or in a
	 * copy of it (SoftHSM 2.6.1 takes both at C_CreateObject). */
	add(t->priv, &t->n_priv, CKA_DECRYPT, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_SIGN_RECOVER, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_UNWRAP, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_DERIVE, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_MODIFIABLE, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_COPYABLE, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_ID, id, id_len);
	add(t->pub, &t->n_pub, CKA_CLASS, &t->pub_class, sizeof(t->pub_class));
	add(t->pub, &t->n_pub, CKA_KEY_TYPE, &t->type, sizeof(t->type));
	add(t->pub, &t->n_pub, CKA_TOKEN, &t->yes, sizeof(t->yes));
	add(t->pub, &t->n_pub, CKA_PRIVATE, &t->no, sizeof(t->no));
	add(t->pub, &t->n_pub, CKA_VERIFY, &t->yes, sizeof(t->yes));
	/* What nothing may decrypt, nothing needs to encrypt to. */
	add(t->pub, &t->n_pub, CKA_ENCRYPT, &t->no, sizeof(t->no));
	add(t->pub, &t->n_pub, CKA_VERIFY_RECOVER, &t->no, sizeof(t->no));
	add(t->pub, &t->n_pub, CKA_WRAP, &t->no, sizeof(t->no));
	add(t->pub, &t->n_pub, CKA_DERIVE, &t->no, sizeof(t->no));
	add(t->pub, &t->n_pub, CKA_ID, id, id_len);
	if (label != NULL) {
		add(t->priv, &t->n_priv, CKA_LABEL, label, strlen(label));
		add(t->pub, &t->n_pub, CKA_LABEL, label, strlen(label));
	}
	r = 0;
out:
	return r;
}

/* The calls below run on a session and may be retried on a fresh one after the token
 * dropped every session; a new login relists the map, and old handles are then stale. So
 * each attempt looks the handles up by id, and writes a handle back only if no listing came
 * in between (else the listing's word stands and the attempt asks for a retry). */
struct handles {
	CK_OBJECT_HANDLE priv;
	CK_OBJECT_HANDLE pub;
	unsigned long epoch;
	int found;
};

static void handles_get(struct cv_token *token, const uint8_t *id, size_t id_len,
			struct handles *ret)
{
	const struct keymap_entry *e;

	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, id, id_len);
	ret->found = e != NULL;
	ret->priv = e != NULL ? e->priv : CK_INVALID_HANDLE;
	ret->pub = e != NULL ? e->pub : CK_INVALID_HANDLE;
	ret->epoch = token->map.epoch;
	pthread_mutex_unlock(&token->map.lock);
}

/* Records a handle of the entry for id (priv when is_priv, else pub). Returns CKR_OK, or
 * CKR_SESSION_CLOSED when a listing happened since h.epoch, so the caller starts over. */
static CK_RV handle_set(struct cv_token *token, const uint8_t *id, size_t id_len,
			const struct handles *h, int is_priv, CK_OBJECT_HANDLE value)
{
	struct keymap_entry *e;
	CK_RV rv = CKR_SESSION_CLOSED;

	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, id, id_len);
	if (e != NULL && token->map.epoch == h->epoch) {
		if (is_priv)
			e->priv = value;
		else
			e->pub = value;
		rv = CKR_OK;
	}
	pthread_mutex_unlock(&token->map.lock);
	return rv;
}

struct key_op {
	const uint8_t *id;
	size_t id_len;
	struct key_template *t;         /* create only */
	struct cv_token_key_attrs *attrs; /* attrs only */
	CK_RV rv;                       /* the last call's answer, attrs only */
};

/* Makes whichever of the two objects the entry does not have yet: a private object made on
 * a session that then died is kept, only the public one is made on the fresh session. */
static CK_RV create_objects(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			    const char **ret_call)
{
	struct key_op *op = arg;
	CK_OBJECT_HANDLE made;
	struct handles h;
	CK_RV rv;

	handles_get(token, op->id, op->id_len, &h);
	if (h.priv == CK_INVALID_HANDLE) {
		*ret_call = "C_CreateObject (private key)";
		rv = token->f->C_CreateObject(session, op->t->priv, op->t->n_priv, &made);
		token_count(token, CV_TOKEN_OP_CREATE_OBJECT, rv != CKR_OK);
		if (rv != CKR_OK)
			return rv;
		rv = handle_set(token, op->id, op->id_len, &h, 1, made);
		if (rv != CKR_OK)
			return rv;
		cv_fault_point("token.create.after_private_key");
	}
	if (h.pub == CK_INVALID_HANDLE) {
		*ret_call = "C_CreateObject (public key)";
		rv = token->f->C_CreateObject(session, op->t->pub, op->t->n_pub, &made);
		token_count(token, CV_TOKEN_OP_CREATE_OBJECT, rv != CKR_OK);
		if (rv != CKR_OK)
			return rv;
		rv = handle_set(token, op->id, op->id_len, &h, 0, made);
		if (rv != CKR_OK)
			return rv;
		cv_fault_point("token.create.after_public_key");
	}
	return CKR_OK;
}

/* At most this many objects of one class under one id are looked for after a destroy. */
#define SURVIVORS_MAX 8

/* The key objects of class cls with this CKA_ID still in the token (up to SURVIVORS_MAX). */
static CK_RV find_key_objects(struct cv_token *token, CK_SESSION_HANDLE session,
			      const struct key_op *op, CK_OBJECT_CLASS cls,
			      CK_OBJECT_HANDLE *ret_found, CK_ULONG *ret_n, const char **ret_call)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, (void *)op->id, (CK_ULONG)op->id_len },
	};
	CK_RV rv, rv_final;

	*ret_n = 0;
	*ret_call = "C_FindObjectsInit";
	rv = token->f->C_FindObjectsInit(session, tmpl, 3);
	if (rv == CKR_OK) {
		*ret_call = "C_FindObjects";
		rv = token->f->C_FindObjects(session, ret_found, SURVIVORS_MAX, ret_n);
		rv_final = token->f->C_FindObjectsFinal(session);
		if (rv == CKR_OK && rv_final != CKR_OK) {
			*ret_call = "C_FindObjectsFinal";
			rv = rv_final;
		}
	}
	token_count(token, CV_TOKEN_OP_FIND, rv != CKR_OK);
	return rv;
}

/* After C_DestroyObject said yes, asks the token whether the key objects under the id are
 * really gone (a module may bring back an object whose delete was interrupted, and another
 * copy may carry the id), destroys what is still there once more, and asks again. Returns
 * CKR_OK when none is left; when some are, puts their handles in the map, so that a later
 * destroy (the reconciler's, the 'deleting' mark being kept) tries again, and fails. */
static CK_RV destroy_verify(struct cv_token *token, CK_SESSION_HANDLE session,
			    const struct key_op *op, const char **ret_call)
{
	static const CK_OBJECT_CLASS classes[] = { CKO_PUBLIC_KEY, CKO_PRIVATE_KEY };
	CK_OBJECT_HANDLE found[SURVIVORS_MAX];
	struct handles h;
	CK_ULONG n, i;
	size_t c;
	int attempt, left = 0;
	CK_RV rv;

	for (attempt = 0; attempt < 2; attempt++) {
		left = 0;
		for (c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
			rv = find_key_objects(token, session, op, classes[c], found, &n, ret_call);
			if (rv != CKR_OK)
				return rv;
			for (i = 0; i < n; i++) {
				left = 1;
				if (attempt == 1) {
					handles_get(token, op->id, op->id_len, &h);
					(void)handle_set(token, op->id, op->id_len, &h,
							 classes[c] == CKO_PRIVATE_KEY, found[i]);
					continue;
				}
				*ret_call = "C_DestroyObject (a key object still there)";
				rv = token->f->C_DestroyObject(session, found[i]);
				token_count(token, CV_TOKEN_OP_DESTROY_OBJECT,
					    rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID);
				if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
					return rv;
			}
		}
		if (!left)
			return CKR_OK;
	}
	*ret_call = "C_DestroyObject (the key objects are still in the token)";
	return CKR_FUNCTION_FAILED;
}

/* Destroying an object that is already gone (a retry after the first call went through,
 * another tool) is not an error. */
static CK_RV destroy_objects(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			     const char **ret_call)
{
	struct key_op *op = arg;
	struct handles h;
	CK_RV rv;

	handles_get(token, op->id, op->id_len, &h);
	/* The public object first: if the private one then survives, the key is still whole
	 * enough to use; the other way round would leave an orphan public key under the id. */
	if (h.pub != CK_INVALID_HANDLE) {
		*ret_call = "C_DestroyObject (public key)";
		rv = token->f->C_DestroyObject(session, h.pub);
		token_count(token, CV_TOKEN_OP_DESTROY_OBJECT,
			    rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID);
		if (rv == CKR_OBJECT_HANDLE_INVALID && !token_present(token))
			return CKR_TOKEN_NOT_PRESENT;
		if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
			return rv;
		rv = handle_set(token, op->id, op->id_len, &h, 0, CK_INVALID_HANDLE);
		if (rv != CKR_OK)
			return rv;
		cv_fault_point("token.destroy.after_public_key");
	}
	if (h.priv != CK_INVALID_HANDLE) {
		*ret_call = "C_DestroyObject (private key)";
		rv = token->f->C_DestroyObject(session, h.priv);
		token_count(token, CV_TOKEN_OP_DESTROY_OBJECT,
			    rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID);
		/* Gone already, or the whole token out of reach: only the first is done. */
		if (rv == CKR_OBJECT_HANDLE_INVALID && !token_present(token))
			return CKR_TOKEN_NOT_PRESENT;
		if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
			return rv;
		rv = handle_set(token, op->id, op->id_len, &h, 1, CK_INVALID_HANDLE);
		if (rv != CKR_OK)
			return rv;
		cv_fault_point("token.destroy.after_private_key");
	}
	return destroy_verify(token, session, op, ret_call);
}

static time_t monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Several nodes share one token: a key another node made is not in this process's map, and
 * one another node destroyed leaves a handle here that the token no longer knows. A miss, or
 * a handle the token answered CKR_OBJECT_HANDLE_INVALID for, is settled by one search by
 * CKA_ID and class, whose answer replaces the entry. */
struct lookup_op {
	const uint8_t *id;
	size_t id_len;
	int found;  /* out: a private key object carries the id */
};

static CK_RV lookup_objects(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			    const char **ret_call)
{
	struct lookup_op *op = arg;
	struct key_op kop = { op->id, op->id_len, NULL, NULL, CKR_OK };
	CK_OBJECT_HANDLE priv[SURVIVORS_MAX], pub[SURVIVORS_MAX];
	CK_ULONG n_priv = 0, n_pub = 0;
	struct keymap_entry *e;
	unsigned long epoch;
	CK_RV rv;

	pthread_mutex_lock(&token->map.lock);
	epoch = token->map.epoch;
	pthread_mutex_unlock(&token->map.lock);
	rv = find_key_objects(token, session, &kop, CKO_PRIVATE_KEY, priv, &n_priv, ret_call);
	if (rv == CKR_OK)
		rv = find_key_objects(token, session, &kop, CKO_PUBLIC_KEY, pub, &n_pub, ret_call);
	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, op->id, op->id_len);
	if (token->map.epoch != epoch || (e != NULL && e->pending)) {
		/* A listing after a new login saw the token later than this search did, or a
		 * create or destroy of this process holds the id: their word stands. */
		op->found = e != NULL && !e->pending && e->priv != CK_INVALID_HANDLE;
	} else if (n_priv == 0 && n_pub == 0) {
		/* Forgotten, and marked absent for a while (TOKEN_ABSENT_SECONDS). */
		if (e == NULL && token_keymap_reserve_locked(&token->map, op->id, op->id_len) == 0)
			e = token_keymap_find_locked(&token->map, op->id, op->id_len);
		if (e != NULL) {
			e->pending = 0;
			e->priv = CK_INVALID_HANDLE;
			e->pub = CK_INVALID_HANDLE;
			e->absent_until = monotonic_seconds() + TOKEN_ABSENT_SECONDS;
		}
		op->found = 0;
	} else {
		if (e != NULL) {
			e->priv = CK_INVALID_HANDLE;
			e->pub = CK_INVALID_HANDLE;
		}
		/* The first listed wins, as in a listing. */
		if (n_priv > 0)
			rv = token_keymap_put_locked(&token->map, op->id, op->id_len,
						     CKO_PRIVATE_KEY, priv[0]) < 0 ?
			     CKR_HOST_MEMORY : CKR_OK;
		if (rv == CKR_OK && n_pub > 0)
			rv = token_keymap_put_locked(&token->map, op->id, op->id_len,
						     CKO_PUBLIC_KEY, pub[0]) < 0 ?
			     CKR_HOST_MEMORY : CKR_OK;
		op->found = rv == CKR_OK && n_priv > 0;
	}
	pthread_mutex_unlock(&token->map.lock);
	return rv;
}

int token_key_lookup(struct cv_token *token, const uint8_t *id, size_t id_len,
		     struct cv_errmsg *err)
{
	struct lookup_op op = { id, id_len, 0 };
	int r;

	if (id_len == 0 || id_len > TOKEN_ID_MAX)
		return 0;
	/* A search races creates and destroys as they do each other (see struct keymap). */
	token_writes_lock(token);
	r = token_run(token, lookup_objects, &op, err);
	token_writes_unlock(token);
	return r < 0 ? r : op.found;
}

/* What the map says of id's private key. */
enum map_says {
	MAP_UNKNOWN = 0,  /* no entry, or an absence mark past its time: ask the token */
	MAP_PRESENT,
	MAP_ABSENT,       /* a search found nothing TOKEN_ABSENT_SECONDS ago at most */
	MAP_HELD,         /* a create or destroy of this process holds the id: absent */
};

/* What the map says of the private key id, which a database row named at named_at
 * (CV_TOKEN_NAMED_UNKNOWN: at a time not known). A key the last complete listing did not
 * see is absent when the row is older than the listing (by more than the nodes' clock skew):
 * the key was made before its row was written, so it was there to be listed, and a key this
 * process made since is in the map. Only a younger row's key, which another node may have
 * made after the listing, is looked for in the token. */
static enum map_says map_private(struct cv_token *token, const uint8_t *id, size_t id_len,
				 int64_t named_at)
{
	const struct keymap_entry *e;
	enum map_says says;

	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, id, id_len);
	if (e == NULL)
		says = MAP_UNKNOWN;
	else if (e->pending)
		says = MAP_HELD;
	else if (e->priv != CK_INVALID_HANDLE)
		says = MAP_PRESENT;
	else if (e->pub == CK_INVALID_HANDLE && e->absent_until > monotonic_seconds())
		says = MAP_ABSENT;
	else
		says = MAP_UNKNOWN;
	if (says == MAP_UNKNOWN && named_at != CV_TOKEN_NAMED_UNKNOWN &&
	    token->map.listed_at != 0 && named_at < token->map.listed_at - token->map.clock_skew)
		says = MAP_ABSENT;
	pthread_mutex_unlock(&token->map.lock);
	return says;
}

int cv_token_key_create(struct cv_token *token, EVP_PKEY *key, const char *label,
			const uint8_t *id, size_t id_len, struct cv_errmsg *err)
{
	struct key_op op = { id, id_len, NULL, NULL, CKR_OK };
	struct cv_errmsg ignored;
	struct keymap_entry *e;
	struct key_template t;
	int r, reserved = 0;

	template_init(&t);
	if (id_len == 0 || id_len > TOKEN_ID_MAX) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "key id of %zu bytes (1 to %d)", id_len,
				  TOKEN_ID_MAX);
		goto out;
	}
	r = template_build(&t, key, label, id, id_len, err);
	if (r < 0)
		goto out;
	/* The pending entry holds the id against a second create while the token works. */
	pthread_mutex_lock(&token->map.lock);
	r = token_keymap_reserve_locked(&token->map, id, id_len);
	pthread_mutex_unlock(&token->map.lock);
	if (r < 0) {
		cv_errmsg_set(err, r, r == CV_ERR_NAME_TAKEN ?
			      "the token already holds a key with this id" : "out of memory");
		goto out;
	}
	reserved = 1;
	op.t = &t;
	token_writes_lock(token);
	r = token_run(token, create_objects, &op, err);
	/* Nothing half-made stays behind: a private key without its public twin would also
	 * hold the id against a second try. */
	if (r < 0)
		(void)token_run(token, destroy_objects, &op, &ignored);
	token_writes_unlock(token);
	/* The caller commits a row naming this key next: the key reaches the disk first, or a
	 * power cut keeps the row and loses the key. Outside the writes lock, so one sync can
	 * cover several threads' creates. A key that cannot be made durable is not kept. */
	if (r == 0) {
		r = token_durable_sync(token, err);
		if (r < 0) {
			token_writes_lock(token);
			(void)token_run(token, destroy_objects, &op, &ignored);
			token_writes_unlock(token);
		}
	}
	if (r < 0) {
		/* Nor may a half-made object that was cleaned up come back. */
		(void)token_durable_sync(token, &ignored);
		goto out;
	}
	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, id, id_len);
	e->pending = 0;
	pthread_mutex_unlock(&token->map.lock);
	reserved = 0;
	r = 0;
out:
	if (reserved) {
		pthread_mutex_lock(&token->map.lock);
		token_keymap_remove_locked(&token->map, id, id_len);
		pthread_mutex_unlock(&token->map.lock);
	}
	template_release(&t);
	return r;
}

int cv_token_key_destroy(struct cv_token *token, const uint8_t *id, size_t id_len,
			 struct cv_errmsg *err)
{
	struct key_op op = { id, id_len, NULL, NULL, CKR_OK };
	struct keymap_entry *e;
	enum map_says says;
	int r;

	/* Not while the listing of public key objects at open runs (a second or so at 10,000
	 * keys): a public handle it found just before this destroy must not come back as an
	 * entry after it. Whether it completed does not matter here: the destroy searches. */
	(void)token_public_wait(token);
	/* A key another node made is destroyed here too: a miss asks the token, whatever an
	 * earlier search found (a destroy must not leave a key behind on a belief). */
	says = map_private(token, id, id_len, CV_TOKEN_NAMED_UNKNOWN);
	if (says == MAP_UNKNOWN || says == MAP_ABSENT) {
		r = token_key_lookup(token, id, id_len, err);
		if (r < 0)
			goto out;
	}
	/* Marking the entry pending keeps a second destroy or a create of the same id out
	 * while the token works. */
	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, id, id_len);
	/* A public object alone under the id (its private twin destroyed by a run that then
	 * died) is still certvault's to destroy. */
	if (e == NULL || e->pending ||
	    (e->priv == CK_INVALID_HANDLE && e->pub == CK_INVALID_HANDLE)) {
		pthread_mutex_unlock(&token->map.lock);
		r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no key with this id in the token");
		goto out;
	}
	e->pending = 1;
	pthread_mutex_unlock(&token->map.lock);
	token_writes_lock(token);
	r = token_run(token, destroy_objects, &op, err);
	token_writes_unlock(token);
	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, id, id_len);
	/* On failure the entry keeps whatever survived, so a later destroy can finish. */
	if (r == 0)
		token_keymap_remove_locked(&token->map, id, id_len);
	else if (e != NULL)
		e->pending = 0;
	pthread_mutex_unlock(&token->map.lock);
	/* The caller removes the row (or marks the key destroyed) next: the removal reaches
	 * the disk first, or a power cut brings the key back with no row naming it. */
	if (r == 0)
		r = token_durable_sync(token, err);
out:
	return r;
}

int cv_token_key_exists(struct cv_token *token, const uint8_t *id, size_t id_len)
{
	return cv_token_key_exists_since(token, id, id_len, CV_TOKEN_NAMED_UNKNOWN);
}

int cv_token_key_exists_since(struct cv_token *token, const uint8_t *id, size_t id_len,
			      int64_t named_at)
{
	struct cv_errmsg ignored;

	switch (map_private(token, id, id_len, named_at)) {
	case MAP_PRESENT:
		return 1;
	case MAP_ABSENT:
	case MAP_HELD:
		return 0;
	case MAP_UNKNOWN:
		break;
	}
	return token_key_lookup(token, id, id_len, &ignored) == 1;
}

static CK_RV attrs_read(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			const char **ret_call)
{
	struct key_op *op = arg;
	CK_BBOOL v[6] = { CK_FALSE, CK_FALSE, CK_FALSE, CK_FALSE, CK_FALSE, CK_FALSE };
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_SENSITIVE, &v[0], sizeof(v[0]) },
		{ CKA_EXTRACTABLE, &v[1], sizeof(v[1]) },
		{ CKA_ALWAYS_SENSITIVE, &v[2], sizeof(v[2]) },
		{ CKA_NEVER_EXTRACTABLE, &v[3], sizeof(v[3]) },
		{ CKA_PRIVATE, &v[4], sizeof(v[4]) },
		{ CKA_TOKEN, &v[5], sizeof(v[5]) },
	};
	struct handles h;
	size_t i;
	CK_RV rv;

	handles_get(token, op->id, op->id_len, &h);
	*ret_call = "C_GetAttributeValue";
	/* Gone since the caller looked (destroyed meanwhile, or not there after a relisting). */
	if (h.priv == CK_INVALID_HANDLE) {
		rv = CKR_OBJECT_HANDLE_INVALID;
	} else {
		rv = token->f->C_GetAttributeValue(session, h.priv, tmpl, 6);
		/* A module that lacks one of them still fills the others; a missing one reads
		 * false. */
		if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE)
			rv = CKR_OK;
		token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, rv != CKR_OK);
	}
	op->rv = rv;
	if (rv != CKR_OK)
		return rv;
	for (i = 0; i < 6; i++) {
		if (tmpl[i].ulValueLen != sizeof(CK_BBOOL))
			v[i] = CK_FALSE;
	}
	op->attrs->present = 1;
	op->attrs->sensitive = v[0] == CK_TRUE;
	op->attrs->extractable = v[1] == CK_TRUE;
	op->attrs->always_sensitive = v[2] == CK_TRUE;
	op->attrs->never_extractable = v[3] == CK_TRUE;
	op->attrs->is_private = v[4] == CK_TRUE;
	op->attrs->on_token = v[5] == CK_TRUE;
	return CKR_OK;
}

int cv_token_key_attrs_get(struct cv_token *token, const uint8_t *id, size_t id_len,
			   struct cv_token_key_attrs *ret_attrs, struct cv_errmsg *err)
{
	struct key_op op = { id, id_len, NULL, ret_attrs, CKR_OK };
	int r;

	memset(ret_attrs, 0, sizeof(*ret_attrs));
	if (!cv_token_key_exists(token, id, id_len)) {
		r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no key with this id in the token");
		goto out;
	}
	r = token_run(token, attrs_read, &op, err);
	/* A handle the token no longer knows (another node destroyed the key, or made it
	 * anew): one fresh search, then one more try if the key is there. */
	if (r < 0 && r != CV_ERR_TOKEN_UNAVAILABLE && token_rv_handle_stale(op.rv)) {
		r = token_key_lookup(token, id, id_len, err);
		if (r == 1)
			r = token_run(token, attrs_read, &op, err);
		else if (r == 0)
			r = CV_ERR_NOT_FOUND;
		if (r == CV_ERR_NOT_FOUND ||
		    (r < 0 && r != CV_ERR_TOKEN_UNAVAILABLE && token_rv_handle_stale(op.rv)))
			r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no key with this id in the token");
	}
out:
	if (r < 0)
		memset(ret_attrs, 0, sizeof(*ret_attrs));
	return r;
}

int cv_token_key_foreach(struct cv_token *token,
			 int (*fn)(const uint8_t *id, size_t id_len, void *arg), void *arg)
{
	struct keymap_entry *copy = NULL;
	size_t n = 0, i;
	int r;

	/* Call fn on a copy, without the lock, so that it may create or destroy keys. */
	pthread_mutex_lock(&token->map.lock);
	copy = malloc((token->map.used > 0 ? token->map.used : 1) * sizeof(*copy));
	if (copy != NULL) {
		for (i = 0; i < token->map.capacity; i++) {
			const struct keymap_entry *e = &token->map.slots[i];

			if (e->id_len > 0 && !e->pending && e->priv != CK_INVALID_HANDLE)
				copy[n++] = *e;
		}
	}
	pthread_mutex_unlock(&token->map.lock);
	if (copy == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = 0;
	for (i = 0; i < n && r == 0; i++)
		r = fn(copy[i].id, copy[i].id_len, arg);
out:
	free(copy);
	return r;
}

/* One key object seen by a listing. */
struct listed {
	CK_OBJECT_HANDLE handle;
	CK_OBJECT_CLASS cls;
	size_t id_len;
	uint8_t id[TOKEN_ID_MAX];
};

/* The token's objects whose CKA_PRIVATE is is_private: private and secret keys (CK_TRUE),
 * public keys (CK_FALSE); certificates and data objects of other tools may be in either. */
static CK_RV find_all(struct cv_token *token, CK_SESSION_HANDLE session, CK_BBOOL is_private,
		      CK_OBJECT_HANDLE **ret_handles, CK_ULONG *ret_n, const char **ret_call)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &is_private, sizeof(is_private) },
	};
	CK_OBJECT_HANDLE *handles = NULL, *grown;
	CK_ULONG n = 0, capacity = 0, got;
	CK_RV rv, rv_final;

	*ret_call = "C_FindObjectsInit";
	rv = token->f->C_FindObjectsInit(session, tmpl, 2);
	if (rv != CKR_OK)
		goto out;
	*ret_call = "C_FindObjects";
	for (;;) {
		if (n == capacity) {
			grown = realloc(handles, (capacity + 256) * sizeof(*grown));
			if (grown == NULL) {
				rv = CKR_HOST_MEMORY;
				break;
			}
			handles = grown;
			capacity += 256;
		}
		rv = token->f->C_FindObjects(session, handles + n, capacity - n, &got);
		if (rv != CKR_OK || got == 0)
			break;
		n += got;
	}
	rv_final = token->f->C_FindObjectsFinal(session);
	if (rv == CKR_OK && rv_final != CKR_OK) {
		*ret_call = "C_FindObjectsFinal";
		rv = rv_final;
	}
out:
	token_count(token, CV_TOKEN_OP_FIND, rv != CKR_OK);
	if (rv == CKR_OK) {
		*ret_handles = handles;
		*ret_n = n;
		handles = NULL;
	}
	free(handles);
	return rv;
}

/* The secret keys a listing saw. complete: 0 when one could not be read whole, so that a
 * search by label must ask the token. */
struct secrets_seen {
	struct listed_secret *v;
	size_t n, cap;
	int complete;
};

/* Room for one more in seen: the array (grown when full), or NULL when out of memory. */
static struct listed_secret *secrets_grow(struct secrets_seen *seen)
{
	struct listed_secret *grown;
	size_t cap;

	if (seen->n < seen->cap)
		return seen->v;
	cap = seen->cap > 0 ? 2 * seen->cap : 4;
	grown = realloc(seen->v, cap * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	seen->v = grown;
	seen->cap = cap;
	return grown;
}

/* Keeps a secret key object's handle, id and label. */
static CK_RV secret_seen(struct cv_token *token, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE h,
			 const uint8_t *id, size_t id_len, struct secrets_seen *seen)
{
	struct listed_secret *s, *grown;
	CK_ATTRIBUTE label;
	CK_RV rv;

	grown = secrets_grow(seen);
	if (grown == NULL)
		return CKR_HOST_MEMORY;
	s = &seen->v[seen->n];
	memset(s, 0, sizeof(*s));
	label.type = CKA_LABEL;
	label.pValue = s->label;
	label.ulValueLen = TOKEN_SECRET_LABEL_MAX;
	rv = token->f->C_GetAttributeValue(session, h, &label, 1);
	token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, 0);
	if (rv != CKR_OK || label.ulValueLen > TOKEN_SECRET_LABEL_MAX) {
		/* No label: no search by label finds it. Anything else: not known whole. */
		if (rv != CKR_ATTRIBUTE_TYPE_INVALID)
			seen->complete = 0;
		return CKR_OK;
	}
	s->label[label.ulValueLen] = '\0';
	s->handle = h;
	memcpy(s->id, id, id_len);
	s->id_len = id_len;
	seen->n++;
	return CKR_OK;
}

/* Class and id of every key object among handles, asked after the search is over: some
 * modules refuse other calls on a session in the middle of one. Secret keys go to seen, or
 * are skipped when seen is NULL (the public objects: a secret key anyone may use without
 * logging in is no key of certvault's). Stops with CKR_FUNCTION_CANCELED when the token is
 * being closed. */
static CK_RV read_listed(struct cv_token *token, CK_SESSION_HANDLE session,
			 const CK_OBJECT_HANDLE *handles, CK_ULONG n, struct listed *ret_listed,
			 size_t *ret_n, struct secrets_seen *seen, const char **ret_call)
{
	CK_ULONG i;
	size_t kept = 0;
	CK_RV rv;

	*ret_call = "C_GetAttributeValue";
	for (i = 0; i < n; i++) {
		struct listed *l = &ret_listed[kept];
		CK_ATTRIBUTE tmpl[] = {
			{ CKA_CLASS, &l->cls, sizeof(l->cls) },
			{ CKA_ID, l->id, sizeof(l->id) },
		};

		if (atomic_load_explicit(&token->closing, memory_order_relaxed))
			return CKR_FUNCTION_CANCELED;
		rv = token->f->C_GetAttributeValue(session, handles[i], tmpl, 2);
		/* A secret key (the audit key): its class was read whatever its id said. */
		if ((rv == CKR_OK || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
		     rv == CKR_BUFFER_TOO_SMALL) && tmpl[0].ulValueLen == sizeof(l->cls) &&
		    l->cls == CKO_SECRET_KEY) {
			token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, 0);
			if (seen == NULL)
				continue;
			if (rv == CKR_BUFFER_TOO_SMALL) {
				seen->complete = 0;
				continue;
			}
			rv = secret_seen(token, session, handles[i], l->id,
					 rv == CKR_OK ? tmpl[1].ulValueLen : 0, seen);
			if (rv != CKR_OK)
				return rv;
			continue;
		}
		/* Ids longer than TOKEN_ID_MAX come back as BUFFER_TOO_SMALL, objects without
		 * one as TYPE_INVALID, objects deleted since the search as HANDLE_INVALID: none
		 * is a key certvault can name, so skip it. */
		if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
		    rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_OBJECT_HANDLE_INVALID) {
			token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, 0);
			continue;
		}
		token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, rv != CKR_OK);
		if (rv != CKR_OK)
			return rv;
		if (tmpl[0].ulValueLen != sizeof(l->cls) || tmpl[1].ulValueLen == 0 ||
		    tmpl[1].ulValueLen > sizeof(l->id))
			continue;
		if (l->cls != CKO_PRIVATE_KEY && l->cls != CKO_PUBLIC_KEY)
			continue;
		l->handle = handles[i];
		l->id_len = tmpl[1].ulValueLen;
		kept++;
	}
	*ret_n = kept;
	return CKR_OK;
}

/* Makes the map say what the listing saw. Caller holds the lock. */
static CK_RV map_replace_locked(struct keymap *map, const struct listed *listed, size_t n)
{
	struct keymap_entry *e;
	size_t i;

	for (i = 0; i < map->capacity; i++) {
		map->slots[i].priv = CK_INVALID_HANDLE;
		map->slots[i].pub = CK_INVALID_HANDLE;
	}
	for (i = 0; i < n; i++) {
		if (token_keymap_put_locked(map, listed[i].id, listed[i].id_len, listed[i].cls,
					    listed[i].handle) < 0)
			return CKR_HOST_MEMORY;
	}
	/* Drop what vanished; removal shifts a later entry into slot i, so look at it again. */
	for (i = 0; i < map->capacity;) {
		e = &map->slots[i];
		if (e->id_len != 0 && !e->pending && e->priv == CK_INVALID_HANDLE &&
		    e->pub == CK_INVALID_HANDLE)
			token_keymap_remove_locked(map, e->id, e->id_len);
		else
			i++;
	}
	map->epoch++;
	return CKR_OK;
}

/* One listing of the objects whose CKA_PRIVATE is is_private: their classes and ids,
 * appended to *listed (grown to fit; *n entries). */
static CK_RV list_some(struct cv_token *token, CK_SESSION_HANDLE session, CK_BBOOL is_private,
		       struct listed **listed, size_t *n, struct secrets_seen *seen,
		       const char **ret_call)
{
	CK_OBJECT_HANDLE *handles = NULL;
	struct listed *grown;
	CK_ULONG n_handles = 0;
	size_t kept = 0;
	CK_RV rv;

	rv = find_all(token, session, is_private, &handles, &n_handles, ret_call);
	if (rv != CKR_OK)
		goto out;
	grown = realloc(*listed, (*n + n_handles + 1) * sizeof(*grown));
	if (grown == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	*listed = grown;
	rv = read_listed(token, session, handles, n_handles, *listed + *n, &kept, seen, ret_call);
	if (rv == CKR_OK)
		*n += kept;
out:
	free(handles);
	return rv;
}

/* SoftHSM, its directory gone, still lists: nothing. Believed, that would empty the map of
 * keys that are only out of reach. */
static CK_RV token_still_there(struct cv_token *token, const char **ret_call)
{
	CK_TOKEN_INFO info;
	CK_RV rv;

	*ret_call = "C_GetTokenInfo";
	rv = token->f->C_GetTokenInfo(token->slot, &info);
	token_count(token, CV_TOKEN_OP_TOKEN_INFO, rv != CKR_OK);
	return rv == CKR_OK ? CKR_OK : CKR_TOKEN_NOT_PRESENT;
}

CK_RV token_keys_relist(struct cv_token *token, CK_SESSION_HANDLE session,
			const char **ret_call)
{
	struct secrets_seen seen = { NULL, 0, 0, 1 };
	struct listed *listed = NULL;
	int64_t started;
	size_t n = 0;
	int first;
	CK_RV rv;

	pthread_mutex_lock(&token->map.lock);
	first = token->map.epoch == 0;
	pthread_mutex_unlock(&token->map.lock);
	started = (int64_t)time(NULL);
	/* Every private key certvault makes is a private object (CKA_PRIVATE true), as is the
	 * audit chain's secret key: this listing alone makes the map right for every key a
	 * row names. */
	rv = list_some(token, session, CK_TRUE, &listed, &n, &seen, ret_call);
	/* The public key objects are needed only to destroy keys (which also searches by id)
	 * and for the orphan check: at open they are listed after, on a thread of their own. */
	if (rv == CKR_OK && !first)
		rv = list_some(token, session, CK_FALSE, &listed, &n, NULL, ret_call);
	if (rv == CKR_OK)
		rv = token_still_there(token, ret_call);
	if (rv != CKR_OK)
		goto out;
	pthread_mutex_lock(&token->map.lock);
	rv = map_replace_locked(&token->map, listed, n);
	if (rv == CKR_OK) {
		token->map.listed_at = started;
		free(token->map.secrets);
		token->map.secrets = seen.v;
		token->map.n_secrets = seen.n;
		token->map.secrets_epoch = seen.complete ? token->map.epoch : 0;
		seen.v = NULL;
		if (first) {
			token->map.public_listing = 1;
		} else {
			/* Whatever the listing at open was doing, this one saw it all. */
			token->map.public_epoch = token->map.epoch;
			pthread_cond_broadcast(&token->map.public_done);
		}
	}
	pthread_mutex_unlock(&token->map.lock);
out:
	free(seen.v);
	free(listed);
	return rv;
}

static CK_RV list_keys(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
		       const char **ret_call)
{
	(void)arg;
	return token_keys_relist(token, session, ret_call);
}

/* The public key objects, put into the map made by the listing of epoch *arg: unless a
 * later listing replaced it (its word stands), or a create or destroy of this process holds
 * the id. */
static CK_RV list_public(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			 const char **ret_call)
{
	const unsigned long *epoch = arg;
	struct listed *listed = NULL;
	struct keymap_entry *e;
	size_t n = 0, i;
	CK_RV rv;

	rv = list_some(token, session, CK_FALSE, &listed, &n, NULL, ret_call);
	if (rv == CKR_OK)
		rv = token_still_there(token, ret_call);
	if (rv != CKR_OK)
		goto out;
	/* An object under an id no entry names (a public key alone, normally none) may be one a
	 * create of this process made and destroyed again, failing, since the search: asked once
	 * more. (A destroy that succeeds waits for this listing: cv_token_key_destroy.) */
	for (i = 0; i < n; i++) {
		uint8_t id[TOKEN_ID_MAX];
		CK_ATTRIBUTE a = { CKA_ID, id, sizeof(id) };

		pthread_mutex_lock(&token->map.lock);
		e = token_keymap_find_locked(&token->map, listed[i].id, listed[i].id_len);
		pthread_mutex_unlock(&token->map.lock);
		if (e != NULL)
			continue;
		*ret_call = "C_GetAttributeValue";
		rv = token->f->C_GetAttributeValue(session, listed[i].handle, &a, 1);
		token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, 0);
		if (rv != CKR_OK || a.ulValueLen != listed[i].id_len ||
		    memcmp(id, listed[i].id, a.ulValueLen) != 0)
			listed[i].handle = CK_INVALID_HANDLE;
	}
	rv = CKR_OK;
	pthread_mutex_lock(&token->map.lock);
	for (i = 0; i < n && token->map.epoch == *epoch; i++) {
		if (listed[i].handle == CK_INVALID_HANDLE)
			continue;
		e = token_keymap_find_locked(&token->map, listed[i].id, listed[i].id_len);
		if (e != NULL && e->pending)
			continue;
		if (token_keymap_put_locked(&token->map, listed[i].id, listed[i].id_len,
					    listed[i].cls, listed[i].handle) < 0) {
			rv = CKR_HOST_MEMORY;
			break;
		}
	}
	if (rv == CKR_OK && token->map.epoch == *epoch)
		token->map.public_epoch = *epoch;
	pthread_mutex_unlock(&token->map.lock);
out:
	free(listed);
	return rv;
}

static void *public_thread(void *arg)
{
	struct cv_token *token = arg;
	struct cv_errmsg err = { "" };
	unsigned long epoch;

	pthread_mutex_lock(&token->map.lock);
	epoch = token->map.epoch;
	pthread_mutex_unlock(&token->map.lock);
	(void)token_run(token, list_public, &epoch, &err);
	pthread_mutex_lock(&token->map.lock);
	token->map.public_listing = 0;
	pthread_cond_broadcast(&token->map.public_done);
	pthread_mutex_unlock(&token->map.lock);
	return NULL;
}

int token_keys_list(struct cv_token *token, struct cv_errmsg *err)
{
	unsigned long epoch;
	int listing, r = 0;

	pthread_mutex_lock(&token->map.lock);
	epoch = token->map.epoch;
	pthread_mutex_unlock(&token->map.lock);
	/* Logging in lists the keys; only a module someone else had logged in needs this. */
	if (epoch == 0)
		r = token_run(token, list_keys, NULL, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&token->map.lock);
	listing = token->map.public_listing;
	pthread_mutex_unlock(&token->map.lock);
	if (!listing)
		return 0;
	if (pthread_create(&token->public_thread, NULL, public_thread, token) == 0) {
		token->public_thread_started = 1;
		return 0;
	}
	(void)public_thread(token);
	return 0;
}

int token_public_wait(struct cv_token *token)
{
	int complete;

	pthread_mutex_lock(&token->map.lock);
	while (token->map.public_listing)
		pthread_cond_wait(&token->map.public_done, &token->map.lock);
	complete = token->map.public_epoch == token->map.epoch;
	pthread_mutex_unlock(&token->map.lock);
	return complete;
}

void cv_token_background_stop(struct cv_token *token)
{
	if (token != NULL)
		token_public_stop(token);
}

void token_public_stop(struct cv_token *token)
{
	if (!token->public_thread_started)
		return;
	atomic_store(&token->closing, 1);
	pthread_join(token->public_thread, NULL);
	token->public_thread_started = 0;
	/* Only that listing stops: a later one (a new login) reads the token whole. */
	atomic_store(&token->closing, 0);
}
