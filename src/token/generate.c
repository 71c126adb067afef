/* token: key pairs born in the token (C_GenerateKeyPair). The private half never exists
 * outside it, so the token itself reports it always sensitive and never extractable; only
 * the public half is read back. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "certvault/fault.h"
#include "internal.h"

static const unsigned char oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
					  0x07 };
static const unsigned char oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const unsigned char oid_p521[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 };
static const unsigned char oid_ed25519[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
static const unsigned char rsa_f4[] = { 0x01, 0x00, 0x01 };

static const struct key_kind {
	enum cv_token_key_type type;
	const char *name;
	CK_KEY_TYPE ck_type;
	CK_MECHANISM_TYPE mechanism;
	CK_ULONG bits;                  /* RSA */
	const unsigned char *params;    /* EC and EdDSA: the curve's OID in DER */
	size_t params_len;
	const char *group;              /* EC: OpenSSL's name of the curve */
	size_t point_len;               /* EC and EdDSA: the raw public point's length */
} kinds[] = {
	{ CV_TOKEN_KEY_RSA2048, "rsa2048", CKK_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, 2048, NULL, 0,
	  NULL, 0 },
	{ CV_TOKEN_KEY_RSA3072, "rsa3072", CKK_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, 3072, NULL, 0,
	  NULL, 0 },
	{ CV_TOKEN_KEY_RSA4096, "rsa4096", CKK_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, 4096, NULL, 0,
	  NULL, 0 },
	{ CV_TOKEN_KEY_P256, "p256", CKK_EC, CKM_EC_KEY_PAIR_GEN, 0, oid_p256, sizeof(oid_p256),
	  "prime256v1", 65 },
	{ CV_TOKEN_KEY_P384, "p384", CKK_EC, CKM_EC_KEY_PAIR_GEN, 0, oid_p384, sizeof(oid_p384),
	  "secp384r1", 97 },
	{ CV_TOKEN_KEY_P521, "p521", CKK_EC, CKM_EC_KEY_PAIR_GEN, 0, oid_p521, sizeof(oid_p521),
	  "secp521r1", 133 },
	/* SoftHSM 2.6.1 generates Ed25519 with CKM_EC_EDWARDS_KEY_PAIR_GEN and the curve's OID
	 * as CKA_EC_PARAMS. */
	{ CV_TOKEN_KEY_ED25519, "ed25519", CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, 0,
	  oid_ed25519, sizeof(oid_ed25519), NULL, 32 },
};

static const struct key_kind *kind_of(enum cv_token_key_type type)
{
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (kinds[i].type == type)
			return &kinds[i];
	}
	return NULL;
}

int cv_token_key_type_parse(const char *name, enum cv_token_key_type *ret_type)
{
	size_t i;

	for (i = 0; name != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (strcmp(kinds[i].name, name) == 0) {
			*ret_type = kinds[i].type;
			return 0;
		}
	}
	return CV_ERR_UNSUPPORTED_KEY;
}

const char *cv_token_key_type_name(enum cv_token_key_type type)
{
	const struct key_kind *k = kind_of(type);

	return k != NULL ? k->name : "unknown";
}

struct generate_op {
	int wrapping;                   /* the wrapping key pair: unwrap only, no sign */
	const struct key_kind *kind;
	const char *label;
	const uint8_t *id;
	size_t id_len;
	CK_OBJECT_HANDLE priv, pub;
	/* The public key as the token gives it back. */
	unsigned char modulus[512], exponent[16], point[160];
	CK_ULONG modulus_len, exponent_len, point_len;
};

static void add(CK_ATTRIBUTE *attrs, CK_ULONG *n, CK_ATTRIBUTE_TYPE type, const void *value,
		size_t len)
{
	attrs[*n].type = type;
	attrs[*n].pValue = (void *)value;
	attrs[*n].ulValueLen = (CK_ULONG)len;
	(*n)++;
}

/* Destroys what one attempt made; the objects are new, nobody else holds their handles. */
static void destroy_made(struct cv_token *token, CK_SESSION_HANDLE session,
			 struct generate_op *op)
{
	CK_RV rv;

	if (op->pub != CK_INVALID_HANDLE) {
		rv = token->f->C_DestroyObject(session, op->pub);
		token_count(token, CV_TOKEN_OP_DESTROY_OBJECT, rv != CKR_OK);
	}
	if (op->priv != CK_INVALID_HANDLE) {
		rv = token->f->C_DestroyObject(session, op->priv);
		token_count(token, CV_TOKEN_OP_DESTROY_OBJECT, rv != CKR_OK);
	}
	op->pub = op->priv = CK_INVALID_HANDLE;
}

static CK_RV read_public(struct cv_token *token, CK_SESSION_HANDLE session,
			 struct generate_op *op, const char **ret_call)
{
	CK_ATTRIBUTE rsa[] = {
		{ CKA_MODULUS, op->modulus, sizeof(op->modulus) },
		{ CKA_PUBLIC_EXPONENT, op->exponent, sizeof(op->exponent) },
	};
	CK_ATTRIBUTE ec[] = { { CKA_EC_POINT, op->point, sizeof(op->point) } };
	int is_rsa = op->kind->ck_type == CKK_RSA;
	CK_RV rv;

	*ret_call = "C_GetAttributeValue (the generated public key)";
	rv = token->f->C_GetAttributeValue(session, op->pub, is_rsa ? rsa : ec, is_rsa ? 2 : 1);
	token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, rv != CKR_OK);
	if (rv != CKR_OK)
		return rv;
	if (is_rsa) {
		op->modulus_len = rsa[0].ulValueLen;
		op->exponent_len = rsa[1].ulValueLen;
	} else {
		op->point_len = ec[0].ulValueLen;
	}
	return CKR_OK;
}

static void map_handles_set(struct cv_token *token, const struct generate_op *op)
{
	struct keymap_entry *e;

	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, op->id, op->id_len);
	if (e != NULL) {
		e->priv = op->priv;
		e->pub = op->pub;
	}
	pthread_mutex_unlock(&token->map.lock);
}

/* One attempt; token_run makes a second on a fresh session when the first one's died. A
 * pair the dead session made may or may not exist: the relisting that came with the new
 * login put its handles in the map's (pending) entry, so they are destroyed first. */
static CK_RV generate_once(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			   const char **ret_call)
{
	struct generate_op *op = arg;
	const struct key_kind *k = op->kind;
	CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
	CK_KEY_TYPE type = k->ck_type;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = k->bits, n_priv = 0, n_pub = 0;
	CK_MECHANISM mechanism = { k->mechanism, NULL, 0 };
	CK_ATTRIBUTE priv[24], pub[24];
	struct keymap_entry *e;
	CK_RV rv;

	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, op->id, op->id_len);
	if (e != NULL) {
		if (op->priv == CK_INVALID_HANDLE)
			op->priv = e->priv;
		if (op->pub == CK_INVALID_HANDLE)
			op->pub = e->pub;
	}
	pthread_mutex_unlock(&token->map.lock);
	destroy_made(token, session, op);
	map_handles_set(token, op);

	/* The policy of cv_token_key_create's templates, said the same way: the key signs and
	 * does nothing else, and nobody can turn that back later. */
	add(priv, &n_priv, CKA_CLASS, &priv_class, sizeof(priv_class));
	add(priv, &n_priv, CKA_KEY_TYPE, &type, sizeof(type));
	add(priv, &n_priv, CKA_TOKEN, &yes, sizeof(yes));
	add(priv, &n_priv, CKA_PRIVATE, &yes, sizeof(yes));
	add(priv, &n_priv, CKA_SENSITIVE, &yes, sizeof(yes));
	add(priv, &n_priv, CKA_EXTRACTABLE, &no, sizeof(no));
	/* The wrapping key unwraps the clients' AES keys and does nothing else. */
	add(priv, &n_priv, CKA_SIGN, op->wrapping ? &no : &yes, sizeof(yes));
	add(priv, &n_priv, CKA_DECRYPT, &no, sizeof(no));
	add(priv, &n_priv, CKA_SIGN_RECOVER, &no, sizeof(no));
	add(priv, &n_priv, CKA_UNWRAP, op->wrapping ? &yes : &no, sizeof(no));
	add(priv, &n_priv, CKA_DERIVE, &no, sizeof(no));
	add(priv, &n_priv, CKA_MODIFIABLE, &no, sizeof(no));
	add(priv, &n_priv, CKA_COPYABLE, &no, sizeof(no));
	add(priv, &n_priv, CKA_ID, op->id, op->id_len);
	add(pub, &n_pub, CKA_CLASS, &pub_class, sizeof(pub_class));
	add(pub, &n_pub, CKA_KEY_TYPE, &type, sizeof(type));
	add(pub, &n_pub, CKA_TOKEN, &yes, sizeof(yes));
	add(pub, &n_pub, CKA_PRIVATE, &no, sizeof(no));
	add(pub, &n_pub, CKA_VERIFY, op->wrapping ? &no : &yes, sizeof(yes));
	add(pub, &n_pub, CKA_ENCRYPT, &no, sizeof(no));
	add(pub, &n_pub, CKA_VERIFY_RECOVER, &no, sizeof(no));
	add(pub, &n_pub, CKA_WRAP, op->wrapping ? &yes : &no, sizeof(no));
	add(pub, &n_pub, CKA_DERIVE, &no, sizeof(no));
	add(pub, &n_pub, CKA_ID, op->id, op->id_len);
	if (op->label != NULL) {
		add(priv, &n_priv, CKA_LABEL, op->label, strlen(op->label));
		add(pub, &n_pub, CKA_LABEL, op->label, strlen(op->label));
	}
	if (k->ck_type == CKK_RSA) {
		add(pub, &n_pub, CKA_MODULUS_BITS, &bits, sizeof(bits));
		add(pub, &n_pub, CKA_PUBLIC_EXPONENT, rsa_f4, sizeof(rsa_f4));
	} else {
		add(pub, &n_pub, CKA_EC_PARAMS, k->params, k->params_len);
	}

	*ret_call = "C_GenerateKeyPair";
	rv = token->f->C_GenerateKeyPair(session, &mechanism, pub, n_pub, priv, n_priv, &op->pub,
					 &op->priv);
	token_count(token, CV_TOKEN_OP_GENERATE_KEY_PAIR, rv != CKR_OK);
	if (rv != CKR_OK) {
		op->pub = op->priv = CK_INVALID_HANDLE;
		return rv;
	}
	/* The entry is pending, so nobody else uses the handles; a relisting after a new
	 * login replaces them with what it finds. */
	map_handles_set(token, op);
	cv_fault_point("token.generate.after_key_pair");
	rv = read_public(token, session, op, ret_call);
	if (rv != CKR_OK && !token_rv_session_dead(rv))
		destroy_made(token, session, op);
	return rv;
}

/* The raw point inside CKA_EC_POINT: a DER OCTET STRING by the standard, bare from some
 * modules. */
static int point_raw(const struct generate_op *op, const unsigned char **ret_point)
{
	size_t want = op->kind->point_len;

	if (op->point_len == want) {
		*ret_point = op->point;
		return 0;
	}
	if (want < 0x80 && op->point_len == want + 2 && op->point[0] == 0x04 &&
	    op->point[1] == want) {
		*ret_point = op->point + 2;
		return 0;
	}
	if (want >= 0x80 && op->point_len == want + 3 && op->point[0] == 0x04 &&
	    op->point[1] == 0x81 && op->point[2] == want) {
		*ret_point = op->point + 3;
		return 0;
	}
	return CV_ERR_TOKEN;
}

static int public_key_build(const struct generate_op *op, EVP_PKEY **ret_key)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	BIGNUM *n = NULL, *e = NULL;
	const unsigned char *point;
	EVP_PKEY *key = NULL;
	int r = CV_ERR_TOKEN;

	if (op->kind->ck_type == CKK_EC_EDWARDS) {
		if (point_raw(op, &point) < 0)
			goto out;
		key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, point, 32);
		if (key == NULL)
			goto out;
		goto done;
	}
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (op->kind->ck_type == CKK_RSA) {
		n = BN_bin2bn(op->modulus, (int)op->modulus_len, NULL);
		e = BN_bin2bn(op->exponent, (int)op->exponent_len, NULL);
		if (n == NULL || e == NULL || BN_num_bits(n) != (int)op->kind->bits ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
			goto out;
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	} else {
		if (point_raw(op, &point) < 0 ||
		    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
						     op->kind->group, 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
						      op->kind->point_len))
			goto out;
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	if (ctx == NULL || params == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		goto out;
done:
	*ret_key = key;
	key = NULL;
	r = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(key);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return r;
}

/* Destroys the new pair after a later step failed. */
static CK_RV destroy_pair(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			  const char **ret_call)
{
	*ret_call = "C_DestroyObject";
	destroy_made(token, session, arg);
	return CKR_OK;
}

/* The wrapping key pair's CKA_ID: readable and without certvault's marker, since no
 * certificate's row names it (the orphan report must not count it). */
static const uint8_t wrapping_id[] = "certvault-wrap-1";
#define WRAPPING_ID_LEN (sizeof(wrapping_id) - 1)

static int key_generate(struct cv_token *token, enum cv_token_key_type type, int wrapping,
			const char *label, const uint8_t *id, size_t id_len,
			EVP_PKEY **ret_public, struct cv_errmsg *err)
{
	struct generate_op op;
	struct cv_errmsg ignored;
	struct keymap_entry *e;
	EVP_PKEY *key = NULL;
	int r, reserved = 0;

	memset(&op, 0, sizeof(op));
	op.wrapping = wrapping;
	op.kind = kind_of(type);
	op.label = label;
	op.id = id;
	op.id_len = id_len;
	op.priv = op.pub = CK_INVALID_HANDLE;
	if (op.kind == NULL) {
		r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY, "unknown key type %d", (int)type);
		goto out;
	}
	if (id_len == 0 || id_len > TOKEN_ID_MAX) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "key id of %zu bytes (1 to %d)", id_len,
				  TOKEN_ID_MAX);
		goto out;
	}
	pthread_mutex_lock(&token->map.lock);
	r = token_keymap_reserve_locked(&token->map, id, id_len);
	pthread_mutex_unlock(&token->map.lock);
	if (r < 0) {
		cv_errmsg_set(err, r, r == CV_ERR_NAME_TAKEN ?
			      "the token already holds a key with this id" : "out of memory");
		goto out;
	}
	reserved = 1;
	/* Key creation is serialised (SoftHSM's file store, see struct keymap). */
	token_writes_lock(token);
	r = token_run(token, generate_once, &op, err);
	token_writes_unlock(token);
	if (r == 0) {
		r = public_key_build(&op, &key);
		if (r < 0)
			cv_errmsg_set(err, r, "the token gave back a %s public key certvault cannot "
				      "read", op.kind->name);
	}
	/* The caller commits a row that uses this key next: it reaches the disk first. */
	if (r == 0)
		r = token_durable_sync(token, err);
	if (r < 0) {
		if (op.priv != CK_INVALID_HANDLE || op.pub != CK_INVALID_HANDLE) {
			token_writes_lock(token);
			(void)token_run(token, destroy_pair, &op, &ignored);
			token_writes_unlock(token);
		}
		(void)token_durable_sync(token, &ignored);
		goto out;
	}
	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, id, id_len);
	if (e != NULL)
		e->pending = 0;
	pthread_mutex_unlock(&token->map.lock);
	reserved = 0;
	*ret_public = key;
	key = NULL;
	r = 0;
out:
	if (reserved) {
		pthread_mutex_lock(&token->map.lock);
		token_keymap_remove_locked(&token->map, id, id_len);
		pthread_mutex_unlock(&token->map.lock);
	}
	EVP_PKEY_free(key);
	return r;
}

int cv_token_key_generate(struct cv_token *token, enum cv_token_key_type type,
			  const char *label, const uint8_t *id, size_t id_len,
			  EVP_PKEY **ret_public, struct cv_errmsg *err)
{
	if (id_len == WRAPPING_ID_LEN && memcmp(id, wrapping_id, id_len) == 0)
		return cv_errmsg_set(err, CV_ERR_NAME_TAKEN, "the wrapping key's id");
	return key_generate(token, type, 0, label, id, id_len, ret_public, err);
}

static int generate_wrapping(struct cv_token *token, struct cv_errmsg *err)
{
	EVP_PKEY *pub = NULL;
	int r;

	r = key_generate(token, CV_TOKEN_KEY_RSA3072, 1, "certvault wrapping key", wrapping_id,
			 WRAPPING_ID_LEN, &pub, err);
	EVP_PKEY_free(pub);
	return r;
}

static CK_RV read_wrapping_public(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
				  const char **ret_call)
{
	struct generate_op *op = arg;
	const struct keymap_entry *e;

	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, wrapping_id, WRAPPING_ID_LEN);
	op->pub = e != NULL && !e->pending ? e->pub : CK_INVALID_HANDLE;
	pthread_mutex_unlock(&token->map.lock);
	*ret_call = "C_GetAttributeValue (the wrapping key)";
	if (op->pub == CK_INVALID_HANDLE)
		return CKR_OBJECT_HANDLE_INVALID;
	return read_public(token, session, op, ret_call);
}

int cv_token_wrapping_key(struct cv_token *token, EVP_PKEY **ret_public, struct cv_errmsg *err)
{
	const struct keymap_entry *e;
	struct generate_op op;
	int r, exists;

	memset(&op, 0, sizeof(op));
	op.kind = kind_of(CV_TOKEN_KEY_RSA3072);
	op.priv = op.pub = CK_INVALID_HANDLE;
	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, wrapping_id, WRAPPING_ID_LEN);
	/* Being made by another thread, or made: not a mark that a search found none. */
	exists = e != NULL && (e->pending || e->priv != CK_INVALID_HANDLE);
	pthread_mutex_unlock(&token->map.lock);
	/* Another node sharing the token may have made it since this one listed the token:
	 * asked once, or every node would make a wrapping key of its own and a key wrapped for
	 * one could not be unwrapped by the others. */
	if (!exists) {
		r = token_key_lookup(token, wrapping_id, WRAPPING_ID_LEN, err);
		if (r < 0)
			return cv_errmsg_set(err, r, "the wrapping key cannot be looked for in the "
					     "token");
		exists = r == 1;
	}
	if (!exists) {
		/* Made once, on first use. Two first uses at once: one makes it, the other's
		 * reservation fails and it reads what the first made. (Two nodes' first uses at
		 * the same instant can still make two: PKCS#11 has no unique ids.) */
		r = generate_wrapping(token, err);
		if (r < 0 && r != CV_ERR_NAME_TAKEN)
			return r;
	}
	/* Its public half is in the map once the listing of public key objects at open is
	 * over; if that listing failed, one search by id finds it. */
	if (!token_public_wait(token)) {
		r = token_key_lookup(token, wrapping_id, WRAPPING_ID_LEN, err);
		if (r < 0)
			return cv_errmsg_set(err, r, "the wrapping key cannot be looked for in the "
					     "token");
	}
	r = token_run(token, read_wrapping_public, &op, err);
	if (r == 0)
		r = public_key_build(&op, ret_public);
	if (r < 0)
		return cv_errmsg_set(err, r, "the wrapping key cannot be read from the token");
	return 0;
}

/* The public key object's template for a key the token unwrapped: from the certificate's
 * public key. Buffers in bufs (at most 3, each 600 bytes). */
struct pub_template {
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE type;
	CK_BBOOL yes, no;
	CK_ATTRIBUTE a[16];
	CK_ULONG n;
	unsigned char n_buf[600], e_buf[16], point[200];
};

static int pub_template_build(struct pub_template *t, EVP_PKEY *pub, const uint8_t *id,
			      size_t id_len, const char *label)
{
	const struct key_kind *k = NULL;
	unsigned char raw[140];
	size_t raw_len = 0, i;
	BIGNUM *n = NULL, *e = NULL;
	char group[64];
	int r = CV_ERR_UNSUPPORTED_KEY;

	memset(t, 0, sizeof(*t));
	t->cls = CKO_PUBLIC_KEY;
	t->yes = CK_TRUE;
	t->no = CK_FALSE;
	add(t->a, &t->n, CKA_CLASS, &t->cls, sizeof(t->cls));
	add(t->a, &t->n, CKA_KEY_TYPE, &t->type, sizeof(t->type));
	add(t->a, &t->n, CKA_TOKEN, &t->yes, sizeof(t->yes));
	add(t->a, &t->n, CKA_PRIVATE, &t->no, sizeof(t->no));
	add(t->a, &t->n, CKA_VERIFY, &t->yes, sizeof(t->yes));
	add(t->a, &t->n, CKA_ENCRYPT, &t->no, sizeof(t->no));
	add(t->a, &t->n, CKA_WRAP, &t->no, sizeof(t->no));
	add(t->a, &t->n, CKA_ID, id, id_len);
	add(t->a, &t->n, CKA_LABEL, label, strlen(label));
	if (EVP_PKEY_is_a(pub, "RSA")) {
		int n_len, e_len;

		t->type = CKK_RSA;
		if (!EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) ||
		    !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e) ||
		    BN_num_bits(n) < 2048 || BN_num_bits(n) > 4096)
			goto out;
		n_len = BN_bn2bin(n, t->n_buf);
		e_len = BN_bn2bin(e, t->e_buf);
		if (n_len <= 0 || e_len <= 0 || e_len > (int)sizeof(t->e_buf))
			goto out;
		add(t->a, &t->n, CKA_MODULUS, t->n_buf, (size_t)n_len);
		add(t->a, &t->n, CKA_PUBLIC_EXPONENT, t->e_buf, (size_t)e_len);
		r = 0;
		goto out;
	}
	if (EVP_PKEY_is_a(pub, "ED25519")) {
		t->type = CKK_EC_EDWARDS;
		k = kind_of(CV_TOKEN_KEY_ED25519);
		raw_len = sizeof(raw);
		if (!EVP_PKEY_get_raw_public_key(pub, raw, &raw_len) || raw_len != 32)
			goto out;
	} else if (EVP_PKEY_is_a(pub, "EC")) {
		t->type = CKK_EC;
		if (!EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group,
						    sizeof(group), NULL))
			goto out;
		for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
			if (kinds[i].group != NULL && strcmp(kinds[i].group, group) == 0)
				k = &kinds[i];
		}
		/* The point uncompressed, as PKCS#11 readers expect. */
		if (k == NULL ||
		    !EVP_PKEY_set_utf8_string_param(pub, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
						    "uncompressed") ||
		    !EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, raw,
						     sizeof(raw), &raw_len) ||
		    raw_len != k->point_len)
			goto out;
	} else {
		goto out;
	}
	/* CKA_EC_POINT: the point in a DER OCTET STRING. */
	t->point[0] = 0x04;
	if (raw_len < 0x80) {
		t->point[1] = (unsigned char)raw_len;
		memcpy(t->point + 2, raw, raw_len);
		raw_len += 2;
	} else {
		t->point[1] = 0x81;
		t->point[2] = (unsigned char)raw_len;
		memcpy(t->point + 3, raw, raw_len);
		raw_len += 3;
	}
	add(t->a, &t->n, CKA_EC_PARAMS, k->params, k->params_len);
	add(t->a, &t->n, CKA_EC_POINT, t->point, raw_len);
	r = 0;
out:
	ERR_clear_error();
	BN_free(n);
	BN_free(e);
	return r;
}

struct unwrap_op;
static CK_RV destroy_pair_unwrap(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
				 const char **ret_call);

struct unwrap_op {
	const uint8_t *id;
	size_t id_len;
	const char *label;
	const unsigned char *enc_aes, *wrapped;
	size_t enc_aes_len, wrapped_len;
	struct pub_template *pub_t;
	CK_OBJECT_HANDLE priv, pub;
	int oaep_sha1;
	int refused;        /* the token refused what the client sent (a step named below) */
	const char *step;
};

static CK_RV destroy_pair_unwrap(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
				 const char **ret_call)
{
	struct unwrap_op *op = arg;
	struct generate_op g;

	memset(&g, 0, sizeof(g));
	g.priv = op->priv;
	g.pub = op->pub;
	*ret_call = "C_DestroyObject";
	destroy_made(token, session, &g);
	op->priv = op->pub = CK_INVALID_HANDLE;
	return CKR_OK;
}

static CK_RV unwrap_once(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			 const char **ret_call)
{
	struct unwrap_op *op = arg;
	CK_OBJECT_CLASS secret = CKO_SECRET_KEY, priv_class = CKO_PRIVATE_KEY;
	CK_KEY_TYPE aes_type = CKK_AES, type = op->pub_t->type;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_RSA_PKCS_OAEP_PARAMS oaep = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL,
					 0 };
	CK_MECHANISM rsa_oaep = { CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) };

	if (op->oaep_sha1) {
		oaep.hashAlg = CKM_SHA_1;
		oaep.mgf = CKG_MGF1_SHA1;
	}
	CK_MECHANISM aes_wrap_pad = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_ATTRIBUTE aes_t[9], priv_t[20];
	CK_ULONG n_aes = 0, n_priv = 0, value_len = 0;
	CK_ATTRIBUTE len_attr = { CKA_VALUE_LEN, &value_len, sizeof(value_len) };
	CK_OBJECT_HANDLE wrap_key = CK_INVALID_HANDLE, aes = CK_INVALID_HANDLE;
	const struct keymap_entry *e;
	CK_RV rv, rv2;

	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, wrapping_id, WRAPPING_ID_LEN);
	if (e != NULL && !e->pending)
		wrap_key = e->priv;
	pthread_mutex_unlock(&token->map.lock);
	*ret_call = "C_UnwrapKey";
	if (wrap_key == CK_INVALID_HANDLE)
		return CKR_KEY_HANDLE_INVALID;
	/* What a previous attempt on a session that died made, if anything. */
	(void)destroy_pair_unwrap(token, session, op, ret_call);

	/* The AES key: a session object that unwraps and does nothing else. */
	add(aes_t, &n_aes, CKA_CLASS, &secret, sizeof(secret));
	add(aes_t, &n_aes, CKA_KEY_TYPE, &aes_type, sizeof(aes_type));
	add(aes_t, &n_aes, CKA_TOKEN, &no, sizeof(no));
	add(aes_t, &n_aes, CKA_PRIVATE, &yes, sizeof(yes));
	add(aes_t, &n_aes, CKA_SENSITIVE, &yes, sizeof(yes));
	add(aes_t, &n_aes, CKA_EXTRACTABLE, &no, sizeof(no));
	add(aes_t, &n_aes, CKA_UNWRAP, &yes, sizeof(yes));
	add(aes_t, &n_aes, CKA_ENCRYPT, &no, sizeof(no));
	add(aes_t, &n_aes, CKA_DECRYPT, &no, sizeof(no));
	*ret_call = "C_UnwrapKey (CKM_RSA_PKCS_OAEP: the AES key)";
	op->step = op->oaep_sha1 ? "the AES key (RSA-OAEP with SHA-1)" :
		"the AES key (RSA-OAEP with SHA-256)";
	rv = token->f->C_UnwrapKey(session, &rsa_oaep, wrap_key, (CK_BYTE_PTR)op->enc_aes,
				   (CK_ULONG)op->enc_aes_len, aes_t, n_aes, &aes);
	token_count(token, CV_TOKEN_OP_CREATE_OBJECT, rv != CKR_OK);
	if (rv != CKR_OK) {
		op->refused = !token_rv_session_dead(rv);
		return rv;
	}
	/* AES-256 and nothing weaker, where the token says the length: SoftHSM 2.6.1 leaves
	 * CKA_VALUE_LEN 0 on a key it unwrapped, which tells nothing. */
	*ret_call = "C_GetAttributeValue (the AES key's length)";
	rv = token->f->C_GetAttributeValue(session, aes, &len_attr, 1);
	token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, rv != CKR_OK);
	if (rv == CKR_OK && value_len != 32 && value_len != 0) {
		op->refused = 1;
		rv = CKR_WRAPPED_KEY_LEN_RANGE;
	}
	if (rv != CKR_OK)
		goto out;

	add(priv_t, &n_priv, CKA_CLASS, &priv_class, sizeof(priv_class));
	add(priv_t, &n_priv, CKA_KEY_TYPE, &type, sizeof(type));
	add(priv_t, &n_priv, CKA_TOKEN, &yes, sizeof(yes));
	add(priv_t, &n_priv, CKA_PRIVATE, &yes, sizeof(yes));
	add(priv_t, &n_priv, CKA_SENSITIVE, &yes, sizeof(yes));
	add(priv_t, &n_priv, CKA_EXTRACTABLE, &no, sizeof(no));
	add(priv_t, &n_priv, CKA_SIGN, &yes, sizeof(yes));
	add(priv_t, &n_priv, CKA_DECRYPT, &no, sizeof(no));
	add(priv_t, &n_priv, CKA_SIGN_RECOVER, &no, sizeof(no));
	add(priv_t, &n_priv, CKA_UNWRAP, &no, sizeof(no));
	add(priv_t, &n_priv, CKA_DERIVE, &no, sizeof(no));
	/* SoftHSM 2.6.1 refuses CKA_MODIFIABLE in an unwrap template, and in a C_CopyObject
	 * template too (CKR_ATTRIBUTE_READ_ONLY both): an unwrapped key stays modifiable there,
	 * so a PIN holder could turn its other usages on. Not copyable, at least. */
	add(priv_t, &n_priv, CKA_COPYABLE, &no, sizeof(no));
	add(priv_t, &n_priv, CKA_ID, op->id, op->id_len);
	add(priv_t, &n_priv, CKA_LABEL, op->label, strlen(op->label));
	*ret_call = "C_UnwrapKey (CKM_AES_KEY_WRAP_PAD: the private key)";
	op->step = "the private key (AES key wrap with padding, PKCS#8)";
	rv = token->f->C_UnwrapKey(session, &aes_wrap_pad, aes, (CK_BYTE_PTR)op->wrapped,
				   (CK_ULONG)op->wrapped_len, priv_t, n_priv, &op->priv);
	token_count(token, CV_TOKEN_OP_CREATE_OBJECT, rv != CKR_OK);
	if (rv != CKR_OK) {
		op->priv = CK_INVALID_HANDLE;
		op->refused = !token_rv_session_dead(rv);
		goto out;
	}
	*ret_call = "C_CreateObject (public key)";
	op->step = NULL;
	rv = token->f->C_CreateObject(session, op->pub_t->a, op->pub_t->n, &op->pub);
	token_count(token, CV_TOKEN_OP_CREATE_OBJECT, rv != CKR_OK);
	if (rv != CKR_OK)
		op->pub = CK_INVALID_HANDLE;
out:
	/* The AES key goes at once, whatever happened. */
	if (aes != CK_INVALID_HANDLE) {
		rv2 = token->f->C_DestroyObject(session, aes);
		token_count(token, CV_TOKEN_OP_DESTROY_OBJECT, rv2 != CKR_OK);
	}
	if (rv == CKR_OK) {
		struct generate_op h;

		memset(&h, 0, sizeof(h));
		h.id = op->id;
		h.id_len = op->id_len;
		h.priv = op->priv;
		h.pub = op->pub;
		map_handles_set(token, &h);
	}
	return rv;
}

int cv_token_key_unwrap(struct cv_token *token, int oaep_sha1,
			const unsigned char *encrypted_aes_key,
			size_t encrypted_aes_key_len, const unsigned char *wrapped_key,
			size_t wrapped_key_len, EVP_PKEY *public_key, const char *label,
			const uint8_t *id, size_t id_len, struct cv_errmsg *err)
{
	struct pub_template *pt = NULL;
	struct unwrap_op op;
	struct cv_errmsg ignored, why;
	struct keymap_entry *e;
	int r, reserved = 0;

	memset(&op, 0, sizeof(op));
	op.priv = op.pub = CK_INVALID_HANDLE;
	if (id_len == 0 || id_len > TOKEN_ID_MAX || label == NULL)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "bad key id or label");
	pt = calloc(1, sizeof(*pt));
	if (pt == NULL)
		return CV_ERR_NOMEM;
	r = pub_template_build(pt, public_key, id, id_len, label);
	if (r < 0) {
		cv_errmsg_set(err, r, "the certificate's key is not one certvault can hold "
			      "(RSA 2048-4096, P-256/384/521, Ed25519)");
		goto out;
	}
	op.id = id;
	op.id_len = id_len;
	op.label = label;
	op.enc_aes = encrypted_aes_key;
	op.enc_aes_len = encrypted_aes_key_len;
	op.wrapped = wrapped_key;
	op.wrapped_len = wrapped_key_len;
	op.pub_t = pt;
	op.oaep_sha1 = oaep_sha1;
	pthread_mutex_lock(&token->map.lock);
	r = token_keymap_reserve_locked(&token->map, id, id_len);
	pthread_mutex_unlock(&token->map.lock);
	if (r < 0) {
		cv_errmsg_set(err, r, r == CV_ERR_NAME_TAKEN ?
			      "the token already holds a key with this id" : "out of memory");
		goto out;
	}
	reserved = 1;
	token_writes_lock(token);
	r = token_run(token, unwrap_once, &op, &why);
	if (r < 0 && (op.priv != CK_INVALID_HANDLE || op.pub != CK_INVALID_HANDLE))
		(void)token_run(token, destroy_pair_unwrap, &op, &ignored);
	token_writes_unlock(token);
	if (r < 0 && op.refused) {
		/* What the client sent: a wrong AES key, a corrupt wrap, another key type. */
		r = cv_errmsg_set(err, CV_ERR_UNWRAP_FAILED, "the token could not unwrap %s: %s",
				  op.step != NULL ? op.step : "the key", why.text);
		goto out;
	}
	if (r < 0) {
		*err = why;
		goto out;
	}
	r = token_durable_sync(token, err);
	if (r < 0) {
		token_writes_lock(token);
		(void)token_run(token, destroy_pair_unwrap, &op, &ignored);
		token_writes_unlock(token);
		(void)token_durable_sync(token, &ignored);
		goto out;
	}
	pthread_mutex_lock(&token->map.lock);
	e = token_keymap_find_locked(&token->map, id, id_len);
	if (e != NULL)
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
	free(pt);
	return r;
}
