/* token against a real, fresh SoftHSM2 token made in a temporary directory. */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <dlfcn.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "certvault/token.h"
#include "certvault/x509.h"
#include <openssl/x509v3.h>
#include "softhsm.h"

#include "../../src/token/internal.h"

#define LABEL "cv-test"
#define ODD_LABEL "cv tok;2/%"
#define SO_PIN "so-pin-7410"
#define USER_PIN "user-pin-8529"

static char dir[] = "/tmp/cv-token-XXXXXX";

/* Under ASan: full stacks for allocations, so that tests/lsan.supp sees SoftHSM's frames in
 * the 37 bytes it leaks per Ed25519 key pair it generates (a frame-pointer stack stops in
 * libcrypto, which keeps none). The environment's ASAN_OPTIONS still apply on top. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "fast_unwind_on_malloc=0";
}

/* Keys come from here rather than testcert, which is built by another target; the types
 * match tc_key_new's names. */
static EVP_PKEY *key_new(const char *type)
{
	if (strcmp(type, "rsa1024") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	if (strcmp(type, "rsa2048") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (strcmp(type, "rsa4096") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
	if (strcmp(type, "p256") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (strcmp(type, "p384") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	if (strcmp(type, "p521") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
	if (strcmp(type, "secp256k1") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
	if (strcmp(type, "ed25519") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (strcmp(type, "ed448") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
	return NULL;
}

/* Opened, without waiting for the listing of public key objects that follows on a thread
 * of its own. */
static struct cv_token *open_unsettled(const char *label, unsigned pool_size)
{
	struct cv_token_config cfg = { ts_softhsm_module(), label, USER_PIN, pool_size, NULL,
				       NULL, 0 };
	struct cv_errmsg err = { "" };
	struct cv_token *token = NULL;
	int r;

	r = cv_token_open(&cfg, &token, &err);
	if (r != 0)
		fprintf(stderr, "cv_token_open: %s\n", err.text);
	assert_int_equal(r, 0);
	assert_non_null(token);
	return token;
}

/* Opened and settled: the listing at open is over, so the counts a test reads are its own. */
static struct cv_token *open_label(const char *label, unsigned pool_size)
{
	struct cv_token *token = open_unsettled(label, pool_size);

	assert_int_equal(token_public_wait(token), 1);
	return token;
}

static struct cv_token *open_token(void)
{
	return open_label(LABEL, 4);
}

static void random_id(uint8_t *id, size_t len)
{
	assert_int_equal(RAND_bytes(id, (int)len), 1);
}

/* The test's own way into the token, next to cv_token's: same module instance (dlopen hands
 * back the loaded one), same login, its own session. Only while a cv_token is open. */
struct raw {
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE s;
};

static void raw_open(struct raw *raw, const char *label)
{
	CK_C_GetFunctionList get_function_list;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO info;
	char padded[32];
	int found = 0;

	memset(padded, ' ', sizeof(padded));
	memcpy(padded, label, strlen(label));
	raw->dl = dlopen(ts_softhsm_module(), RTLD_NOW | RTLD_LOCAL);
	assert_non_null(raw->dl);
	*(void **)&get_function_list = dlsym(raw->dl, "C_GetFunctionList");
	assert_non_null(get_function_list);
	assert_int_equal(get_function_list(&raw->f), CKR_OK);
	assert_int_equal(raw->f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	for (i = 0; i < n && !found; i++) {
		assert_int_equal(raw->f->C_GetTokenInfo(slots[i], &info), CKR_OK);
		if (memcmp(info.label, padded, sizeof(padded)) == 0) {
			raw->slot = slots[i];
			found = 1;
		}
	}
	assert_true(found);
	assert_int_equal(raw->f->C_OpenSession(raw->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
					       NULL, NULL, &raw->s), CKR_OK);
}

static void raw_close(struct raw *raw)
{
	assert_int_equal(raw->f->C_CloseSession(raw->s), CKR_OK);
	dlclose(raw->dl);
}

/* Objects of class cls with this CKA_ID (any class when cls is -1). */
static CK_ULONG raw_find(struct raw *raw, long cls, const uint8_t *id, size_t id_len,
			 CK_OBJECT_HANDLE *ret_first)
{
	CK_OBJECT_CLASS c = (CK_OBJECT_CLASS)cls;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_ID, (void *)id, id_len },
		{ CKA_CLASS, &c, sizeof(c) },
	};
	CK_OBJECT_HANDLE found[8];
	CK_ULONG n = 0;

	assert_int_equal(raw->f->C_FindObjectsInit(raw->s, tmpl, cls < 0 ? 1 : 2), CKR_OK);
	assert_int_equal(raw->f->C_FindObjects(raw->s, found, 8, &n), CKR_OK);
	assert_int_equal(raw->f->C_FindObjectsFinal(raw->s), CKR_OK);
	if (ret_first != NULL && n > 0)
		*ret_first = found[0];
	return n;
}

static CK_ULONG raw_count_keys(struct raw *raw)
{
	CK_OBJECT_HANDLE found[64];
	CK_ULONG n, total = 0;

	assert_int_equal(raw->f->C_FindObjectsInit(raw->s, NULL, 0), CKR_OK);
	do {
		assert_int_equal(raw->f->C_FindObjects(raw->s, found, 64, &n), CKR_OK);
		total += n;
	} while (n > 0);
	assert_int_equal(raw->f->C_FindObjectsFinal(raw->s), CKR_OK);
	return total;
}

static int group_setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	if (ts_softhsm_new(dir, LABEL, SO_PIN, USER_PIN) < 0)
		return -1;
	return ts_softhsm_init_token(ODD_LABEL, SO_PIN, USER_PIN);
}

static int group_teardown(void **state)
{
	(void)state;
	return ts_softhsm_remove(dir);
}

static void test_open(void **state)
{
	struct cv_token_health h;
	struct cv_token *token;

	(void)state;
	token = open_token();
	assert_int_equal(cv_token_health_get(token, &h), 0);
	assert_true(h.reachable);
	assert_true(h.logged_in);
	assert_string_equal(h.label, LABEL);
	assert_string_equal(h.manufacturer, "SoftHSM project");
	assert_string_equal(h.model, "SoftHSM v2");
	assert_true(strlen(h.serial) > 0);
	cv_token_free(token);
	cv_token_free(NULL);
}

static void test_open_wrong_pin(void **state)
{
	struct cv_token_config cfg = { ts_softhsm_module(), LABEL, "wrong-pin-3141", 2, NULL,
				       NULL, 0 };
	struct cv_errmsg err = { "" };
	struct cv_token *token = NULL;

	(void)state;
	assert_int_equal(cv_token_open(&cfg, &token, &err), CV_ERR_TOKEN);
	assert_null(token);
	assert_non_null(strstr(err.text, "PIN"));
	assert_non_null(strstr(err.text, "CKR_PIN_INCORRECT"));
	assert_null(strstr(err.text, "wrong-pin-3141"));
	/* The failed open left nothing behind: the right PIN still works. */
	cv_token_free(open_token());
}

static void test_open_unknown_label(void **state)
{
	struct cv_token_config cfg = { ts_softhsm_module(), "no-such-token", USER_PIN, 2, NULL,
				       NULL, 0 };
	struct cv_errmsg err = { "" };
	struct cv_token *token = NULL;

	(void)state;
	assert_int_equal(cv_token_open(&cfg, &token, &err), CV_ERR_CONFIG);
	assert_null(token);
	assert_non_null(strstr(err.text, "no-such-token"));
}

static void test_open_missing_module(void **state)
{
	struct cv_token_config cfg = { "/nonexistent/libpkcs11.so", LABEL, USER_PIN, 2, NULL,
				       NULL, 0 };
	struct cv_errmsg err = { "" };
	struct cv_token *token = NULL;

	(void)state;
	assert_int_equal(cv_token_open(&cfg, &token, &err), CV_ERR_CONFIG);
	assert_null(token);
	assert_non_null(strstr(err.text, "/nonexistent/libpkcs11.so"));
	cfg.module_path = NULL;
	assert_int_equal(cv_token_open(&cfg, &token, &err), CV_ERR_CONFIG);
	/* A library that is not a PKCS#11 module. */
	cfg.module_path = "libz.so.1";
	assert_int_equal(cv_token_open(&cfg, &token, &err), CV_ERR_CONFIG);
	assert_null(token);
}

/* Signs through PKCS#11 with the token's object and verifies with OpenSSL and the original
 * key: only the key that went in can have made the signature. */
static void sign_and_verify(struct raw *raw, CK_OBJECT_HANDLE h, EVP_PKEY *key)
{
	static const unsigned char msg[] = "certvault token test message";
	unsigned char sig[1024], digest[32], *der = NULL, *p;
	CK_MECHANISM mech = { 0, NULL, 0 };
	CK_ULONG sig_len = sizeof(sig);
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	ECDSA_SIG *esig = NULL;
	unsigned int digest_len;
	int der_len;

	if (EVP_PKEY_is_a(key, "RSA"))
		mech.mechanism = CKM_SHA256_RSA_PKCS;
	else if (EVP_PKEY_is_a(key, "EC"))
		mech.mechanism = CKM_ECDSA;
	else
		mech.mechanism = CKM_EDDSA;
	assert_int_equal(raw->f->C_SignInit(raw->s, &mech, h), CKR_OK);
	if (mech.mechanism == CKM_ECDSA) {
		assert_int_equal(EVP_Digest(msg, sizeof(msg), digest, &digest_len, EVP_sha256(),
					    NULL), 1);
		assert_int_equal(raw->f->C_Sign(raw->s, digest, sizeof(digest), sig, &sig_len),
				 CKR_OK);
		/* PKCS#11 gives r || s; OpenSSL verifies DER. */
		esig = ECDSA_SIG_new();
		assert_non_null(esig);
		assert_int_equal(ECDSA_SIG_set0(esig, BN_bin2bn(sig, (int)sig_len / 2, NULL),
						BN_bin2bn(sig + sig_len / 2, (int)sig_len / 2,
							  NULL)), 1);
		der_len = i2d_ECDSA_SIG(esig, NULL);
		assert_true(der_len > 0);
		der = malloc((size_t)der_len);
		p = der;
		assert_int_equal(i2d_ECDSA_SIG(esig, &p), der_len);
		ctx = EVP_PKEY_CTX_new(key, NULL);
		assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
		assert_int_equal(EVP_PKEY_verify(ctx, der, (size_t)der_len, digest, sizeof(digest)),
				 1);
	} else {
		assert_int_equal(raw->f->C_Sign(raw->s, (CK_BYTE_PTR)msg, sizeof(msg), sig,
						&sig_len), CKR_OK);
		md = EVP_MD_CTX_new();
		assert_int_equal(EVP_DigestVerifyInit(md, NULL, mech.mechanism == CKM_EDDSA ?
						      NULL : EVP_sha256(), NULL, key), 1);
		assert_int_equal(EVP_DigestVerify(md, sig, sig_len, msg, sizeof(msg)), 1);
	}
	EVP_MD_CTX_free(md);
	EVP_PKEY_CTX_free(ctx);
	ECDSA_SIG_free(esig);
	free(der);
}

/* The key signs and does nothing else, and cannot be changed or copied into a key that
 * would (issue 16 item 9); SoftHSM's defaults would allow more. */
static void check_usage(struct raw *raw, CK_OBJECT_HANDLE h, int is_rsa)
{
	CK_BBOOL v[7] = { CK_FALSE, CK_TRUE, CK_TRUE, CK_TRUE, CK_TRUE, CK_TRUE, CK_TRUE };
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_SIGN, &v[0], sizeof(v[0]) },
		{ CKA_DECRYPT, &v[1], sizeof(v[1]) },
		{ CKA_UNWRAP, &v[2], sizeof(v[2]) },
		{ CKA_DERIVE, &v[3], sizeof(v[3]) },
		{ CKA_SIGN_RECOVER, &v[4], sizeof(v[4]) },
		{ CKA_MODIFIABLE, &v[5], sizeof(v[5]) },
		{ CKA_COPYABLE, &v[6], sizeof(v[6]) },
	};
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE decrypt_on[] = { { CKA_DECRYPT, &yes, sizeof(yes) } };
	CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
	size_t i;

	(void)is_rsa;
	assert_int_equal(raw->f->C_GetAttributeValue(raw->s, h, tmpl, 7), CKR_OK);
	assert_int_equal(v[0], CK_TRUE);
	for (i = 1; i < 7; i++)
		assert_int_equal(v[i], CK_FALSE);
	/* And the token holds to it: no turning decrypt back on, no copy that has it. */
	assert_int_not_equal(raw->f->C_SetAttributeValue(raw->s, h, decrypt_on, 1), CKR_OK);
	assert_int_not_equal(raw->f->C_CopyObject(raw->s, h, decrypt_on, 1, &copy), CKR_OK);
}

static void test_create_each_type(void **state)
{
	static const char *const types[] = { "rsa2048", "rsa4096", "p256", "p384", "p521",
					     "ed25519" };
	struct cv_token_key_attrs a;
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
	uint8_t id[CV_TOKEN_ID_LEN];
	unsigned char secret[1024];
	struct raw raw;
	EVP_PKEY *key;
	size_t i;
	int r;

	(void)state;
	token = open_token();
	raw_open(&raw, LABEL);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		CK_ATTRIBUTE secret_attr = { CKA_VALUE, secret, sizeof(secret) };

		key = key_new(types[i]);
		assert_non_null(key);
		random_id(id, sizeof(id));
		r = cv_token_key_create(token, key, types[i], id, sizeof(id), &err);
		if (r != 0)
			fprintf(stderr, "%s: %s\n", types[i], err.text);
		assert_int_equal(r, 0);
		assert_int_equal(cv_token_key_exists(token, id, sizeof(id)), 1);

		assert_int_equal(cv_token_key_attrs_get(token, id, sizeof(id), &a, &err), 0);
		assert_int_equal(a.present, 1);
		assert_int_equal(a.sensitive, 1);
		assert_int_equal(a.extractable, 0);
		assert_int_equal(a.is_private, 1);
		assert_int_equal(a.on_token, 1);
		/* Honest about an imported key: it was once outside the token. */
		assert_int_equal(a.never_extractable, 0);
		assert_int_equal(a.always_sensitive, 0);

		assert_int_equal(raw_find(&raw, CKO_PRIVATE_KEY, id, sizeof(id), &priv), 1);
		assert_int_equal(raw_find(&raw, CKO_PUBLIC_KEY, id, sizeof(id), NULL), 1);
		if (EVP_PKEY_is_a(key, "RSA"))
			secret_attr.type = CKA_PRIVATE_EXPONENT;
		assert_int_equal(raw.f->C_GetAttributeValue(raw.s, priv, &secret_attr, 1),
				 CKR_ATTRIBUTE_SENSITIVE);
		assert_int_equal(secret_attr.ulValueLen, CK_UNAVAILABLE_INFORMATION);
		sign_and_verify(&raw, priv, key);
		check_usage(&raw, priv, EVP_PKEY_is_a(key, "RSA"));
		EVP_PKEY_free(key);
	}
	raw_close(&raw);
	cv_token_free(token);
}

static void test_duplicate_id(void **state)
{
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	uint8_t id[CV_TOKEN_ID_LEN];
	EVP_PKEY *k1 = key_new("p256"), *k2 = key_new("ed25519");
	struct raw raw;

	(void)state;
	token = open_token();
	raw_open(&raw, LABEL);
	random_id(id, sizeof(id));
	assert_int_equal(cv_token_key_create(token, k1, "dup", id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_create(token, k2, "dup", id, sizeof(id), &err),
			 CV_ERR_NAME_TAKEN);
	assert_int_equal(cv_token_key_create(token, k1, "dup", id, sizeof(id), &err),
			 CV_ERR_NAME_TAKEN);
	assert_int_equal(raw_find(&raw, -1, id, sizeof(id), NULL), 2);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	raw_close(&raw);
	cv_token_free(token);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
}

static void test_unsupported(void **state)
{
	static const char *const types[] = { "rsa1024", "secp256k1", "ed448" };
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	uint8_t id[CV_TOKEN_ID_LEN];
	CK_ULONG before;
	struct raw raw;
	EVP_PKEY *key;
	size_t i;

	(void)state;
	token = open_token();
	raw_open(&raw, LABEL);
	before = raw_count_keys(&raw);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		key = key_new(types[i]);
		assert_non_null(key);
		random_id(id, sizeof(id));
		assert_int_equal(cv_token_key_create(token, key, "weak", id, sizeof(id), &err),
				 CV_ERR_UNSUPPORTED_KEY);
		assert_true(strlen(err.text) > 0);
		assert_int_equal(cv_token_key_exists(token, id, sizeof(id)), 0);
		assert_int_equal(raw_find(&raw, -1, id, sizeof(id), NULL), 0);
		EVP_PKEY_free(key);
	}
	/* A public key alone is nothing to store. */
	for (i = 0; i < 3; i++) {
		EVP_PKEY *full = key_new(i == 0 ? "rsa2048" : i == 1 ? "p256" : "ed25519");
		unsigned char *der = NULL;
		const unsigned char *p;
		int len = i2d_PUBKEY(full, &der);

		assert_true(len > 0);
		p = der;
		key = d2i_PUBKEY(NULL, &p, len);
		assert_non_null(key);
		assert_int_equal(cv_token_key_create(token, key, "pub", id, sizeof(id), &err),
				 CV_ERR_UNSUPPORTED_KEY);
		assert_int_equal(raw_find(&raw, -1, id, sizeof(id), NULL), 0);
		OPENSSL_free(der);
		EVP_PKEY_free(key);
		EVP_PKEY_free(full);
	}
	/* The same id is free for a key that is supported: the refusal held nothing. */
	key = key_new("p256");
	assert_int_equal(cv_token_key_create(token, key, "ok", id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	assert_int_equal(raw_count_keys(&raw), before);
	EVP_PKEY_free(key);
	raw_close(&raw);
	cv_token_free(token);
}

/* Checks a signature cv_token_sign made over the SHA-256 of msg with the public half of key. */
static int verify_prehashed(EVP_PKEY *key, const struct cv_token_sign_params *params,
			    const unsigned char *digest, const unsigned char *sig, size_t sig_len)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
	unsigned char *der = NULL;
	ECDSA_SIG *ec = NULL;
	int ok, der_len;

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
	if (params->mechanism == CV_TOKEN_SIGN_RSA_PSS) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)params->pss_salt_len),
				 1);
	}
	if (params->mechanism == CV_TOKEN_SIGN_ECDSA) {
		/* PKCS#11 gives r || s; OpenSSL verifies the DER of the pair. */
		ec = ECDSA_SIG_new();
		assert_non_null(ec);
		assert_int_equal(ECDSA_SIG_set0(ec, BN_bin2bn(sig, (int)sig_len / 2, NULL),
						BN_bin2bn(sig + sig_len / 2, (int)sig_len / 2, NULL)),
				 1);
		der_len = i2d_ECDSA_SIG(ec, &der);
		assert_true(der_len > 0);
		ok = EVP_PKEY_verify(ctx, der, (size_t)der_len, digest, 32) == 1;
	} else {
		ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, 32) == 1;
	}
	OPENSSL_free(der);
	ECDSA_SIG_free(ec);
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

static void test_sign(void **state)
{
	static const unsigned char digest_info_sha256[] = {
		0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
		0x01, 0x05, 0x00, 0x04, 0x20 };
	static const struct {
		const char *type;
		struct cv_token_sign_params params;
	} cases[] = {
		{ "rsa2048", { CV_TOKEN_SIGN_RSA_PKCS1, 0, 0 } },
		{ "rsa2048", { CV_TOKEN_SIGN_RSA_PSS, CV_TOKEN_SHA256, 32 } },
		{ "rsa4096", { CV_TOKEN_SIGN_RSA_PSS, CV_TOKEN_SHA256, 32 } },
		{ "p256", { CV_TOKEN_SIGN_ECDSA, 0, 0 } },
		{ "p384", { CV_TOKEN_SIGN_ECDSA, 0, 0 } },
		{ "ed25519", { CV_TOKEN_SIGN_EDDSA, 0, 0 } },
	};
	static const unsigned char msg[] = "the handshake transcript";
	const struct cv_token_sign_params ecdsa = { CV_TOKEN_SIGN_ECDSA, 0, 0 };
	unsigned char digest[32], input[64], sig[CV_TOKEN_SIG_MAX];
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	uint8_t id[CV_TOKEN_ID_LEN];
	size_t i, input_len, sig_len;
	EVP_MD_CTX *md;
	EVP_PKEY *key;
	int r;

	(void)state;
	token = open_token();
	assert_int_equal(EVP_Digest(msg, sizeof(msg), digest, NULL, EVP_sha256(), NULL), 1);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct cv_token_sign_params *p = &cases[i].params;

		key = key_new(cases[i].type);
		assert_non_null(key);
		random_id(id, sizeof(id));
		assert_int_equal(cv_token_key_create(token, key, "signer", id, sizeof(id), &err), 0);
		if (p->mechanism == CV_TOKEN_SIGN_RSA_PKCS1) {
			memcpy(input, digest_info_sha256, sizeof(digest_info_sha256));
			memcpy(input + sizeof(digest_info_sha256), digest, sizeof(digest));
			input_len = sizeof(digest_info_sha256) + sizeof(digest);
		} else if (p->mechanism == CV_TOKEN_SIGN_EDDSA) {
			memcpy(input, msg, sizeof(msg));
			input_len = sizeof(msg);
		} else {
			memcpy(input, digest, sizeof(digest));
			input_len = sizeof(digest);
		}
		sig_len = sizeof(sig);
		r = cv_token_sign(token, id, sizeof(id), p, input, input_len, sig, &sig_len, &err);
		if (r != 0)
			fprintf(stderr, "%s: %s\n", cases[i].type, err.text);
		assert_int_equal(r, 0);
		if (p->mechanism == CV_TOKEN_SIGN_EDDSA) {
			md = EVP_MD_CTX_new();
			assert_non_null(md);
			assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, key), 1);
			assert_int_equal(EVP_DigestVerify(md, sig, sig_len, msg, sizeof(msg)), 1);
			EVP_MD_CTX_free(md);
		} else {
			assert_true(verify_prehashed(key, p, digest, sig, sig_len));
		}
		/* A mechanism the key cannot do fails (SoftHSM 2.6 takes the C_SignInit and
		 * answers C_Sign with CKR_GENERAL_ERROR, so no finer code is asserted), and
		 * leaves the session fit for the next caller: see the end of the test. */
		if (EVP_PKEY_is_a(key, "RSA")) {
			sig_len = sizeof(sig);
			assert_true(cv_token_sign(token, id, sizeof(id), &ecdsa, digest,
						  sizeof(digest), sig, &sig_len, &err) < 0);
		}
		assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
		sig_len = sizeof(sig);
		assert_int_equal(cv_token_sign(token, id, sizeof(id), p, input, input_len, sig,
					       &sig_len, &err), CV_ERR_NOT_FOUND);
		EVP_PKEY_free(key);
	}
	/* The session pool is still clean: another signature goes through. */
	key = key_new("p256");
	random_id(id, sizeof(id));
	assert_int_equal(cv_token_key_create(token, key, "after", id, sizeof(id), &err), 0);
	sig_len = sizeof(sig);
	assert_int_equal(cv_token_sign(token, id, sizeof(id), &ecdsa, digest, sizeof(digest), sig,
				       &sig_len, &err), 0);
	assert_int_equal(sig_len, 64);
	assert_true(verify_prehashed(key, &ecdsa, digest, sig, sig_len));
	EVP_PKEY_free(key);
	cv_token_free(token);
}

static void test_destroy(void **state)
{
	struct cv_token_key_attrs a;
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	uint8_t id[CV_TOKEN_ID_LEN];
	EVP_PKEY *key = key_new("rsa2048");
	struct raw raw;

	(void)state;
	token = open_token();
	raw_open(&raw, LABEL);
	random_id(id, sizeof(id));
	assert_int_equal(cv_token_key_create(token, key, "gone", id, sizeof(id), &err), 0);
	assert_int_equal(raw_find(&raw, -1, id, sizeof(id), NULL), 2);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_exists(token, id, sizeof(id)), 0);
	assert_int_equal(cv_token_key_attrs_get(token, id, sizeof(id), &a, &err),
			 CV_ERR_NOT_FOUND);
	assert_int_equal(a.present, 0);
	assert_int_equal(raw_find(&raw, CKO_PRIVATE_KEY, id, sizeof(id), NULL), 0);
	assert_int_equal(raw_find(&raw, CKO_PUBLIC_KEY, id, sizeof(id), NULL), 0);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), CV_ERR_NOT_FOUND);
	/* The id can be used again. */
	assert_int_equal(cv_token_key_create(token, key, "again", id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	raw_close(&raw);
	cv_token_free(token);
	EVP_PKEY_free(key);
}

/* A destroy asks the token afterwards whether the id is really gone: a second object under
 * the id, which the map never listed (what a module that brings back an object whose delete
 * was interrupted would show), is destroyed too. */
static void test_destroy_checks_gone(void **state)
{
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	uint8_t id[CV_TOKEN_ID_LEN];
	EVP_PKEY *key = key_new("p256");
	static const unsigned char p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
					      0x01, 0x07 };
	CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE pub2, priv2;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE pub_tmpl[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_EC_PARAMS, (void *)p256, sizeof(p256) },
		{ CKA_ID, id, sizeof(id) },
	};
	CK_ATTRIBUTE priv_tmpl[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_ID, id, sizeof(id) },
	};
	struct raw raw;

	(void)state;
	token = open_token();
	raw_open(&raw, LABEL);
	random_id(id, sizeof(id));
	assert_int_equal(cv_token_key_create(token, key, "twice", id, sizeof(id), &err), 0);
	assert_int_equal(raw_find(&raw, CKO_PRIVATE_KEY, id, sizeof(id), NULL), 1);
	/* certvault's keys are not copyable: a second pair is generated under the same id. */
	assert_int_equal(raw.f->C_GenerateKeyPair(raw.s, &gen, pub_tmpl, 3, priv_tmpl, 3, &pub2,
						  &priv2), CKR_OK);
	assert_int_equal(raw_find(&raw, CKO_PRIVATE_KEY, id, sizeof(id), NULL), 2);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	assert_int_equal(raw_find(&raw, -1, id, sizeof(id), NULL), 0);
	raw_close(&raw);
	cv_token_free(token);
	EVP_PKEY_free(key);
}

static int count_key(const uint8_t *id, size_t id_len, void *arg)
{
	(void)id;
	(void)id_len;
	(*(size_t *)arg)++;
	return 0;
}

struct seek {
	const uint8_t *id;
	size_t id_len;
	int seen;
};

static int seek_key(const uint8_t *id, size_t id_len, void *arg)
{
	struct seek *s = arg;

	if (id_len == s->id_len && memcmp(id, s->id, id_len) == 0)
		s->seen++;
	return 0;
}

static int stop_at_first(const uint8_t *id, size_t id_len, void *arg)
{
	(void)id;
	(void)id_len;
	(*(int *)arg)++;
	return 42;
}

/* An EC private key object made by "another tool", with whatever CKA_ID it likes (none when
 * id is NULL). */
static void raw_create_foreign(struct raw *raw, const uint8_t *id, size_t id_len)
{
	static const unsigned char p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
					      0x01, 0x07 };
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE type = CKK_EC;
	CK_BBOOL yes = CK_TRUE;
	unsigned char d[32];
	BIGNUM *bn = NULL;
	EVP_PKEY *key = key_new("p256");
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_EC_PARAMS, (void *)p256, sizeof(p256) },
		{ CKA_VALUE, d, sizeof(d) },
		{ CKA_ID, (void *)id, id_len },
	};
	CK_OBJECT_HANDLE h;

	assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &bn), 1);
	assert_int_equal(BN_bn2binpad(bn, d, sizeof(d)), 32);
	assert_int_equal(raw->f->C_CreateObject(raw->s, tmpl, id != NULL ? 7 : 6, &h), CKR_OK);
	BN_clear_free(bn);
	EVP_PKEY_free(key);
}

static void test_reopen_sees_keys(void **state)
{
	static const uint8_t short_id[1] = { 0xc7 };
	uint8_t ids[3][CV_TOKEN_ID_LEN], long_id[64], too_long[65];
	struct cv_token_key_attrs a;
	struct cv_token_health h;
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	size_t before = 0, after = 0, i;
	struct seek seek;
	EVP_PKEY *key = key_new("p384");
	struct raw raw;
	int calls = 0;

	(void)state;
	token = open_token();
	assert_int_equal(cv_token_key_foreach(token, count_key, &before), 0);
	for (i = 0; i < 3; i++) {
		random_id(ids[i], sizeof(ids[i]));
		assert_int_equal(cv_token_key_create(token, key, "kept", ids[i], sizeof(ids[i]),
						     &err), 0);
	}
	raw_open(&raw, LABEL);
	random_id(long_id, sizeof(long_id));
	random_id(too_long, sizeof(too_long));
	raw_create_foreign(&raw, short_id, sizeof(short_id));
	raw_create_foreign(&raw, long_id, sizeof(long_id));
	raw_create_foreign(&raw, too_long, sizeof(too_long));
	raw_create_foreign(&raw, NULL, 0);
	raw_close(&raw);
	cv_token_free(token);

	token = open_token();
	assert_int_equal(cv_token_key_foreach(token, count_key, &after), 0);
	/* Three of ours, and the foreign keys with ids certvault can name. */
	assert_int_equal(after, before + 3 + 2);
	assert_int_equal(cv_token_health_get(token, &h), 0);
	assert_int_equal(h.keys, after);
	for (i = 0; i < 3; i++) {
		seek = (struct seek){ ids[i], sizeof(ids[i]), 0 };
		assert_int_equal(cv_token_key_foreach(token, seek_key, &seek), 0);
		assert_int_equal(seek.seen, 1);
		assert_int_equal(cv_token_key_exists(token, ids[i], sizeof(ids[i])), 1);
		assert_int_equal(cv_token_key_attrs_get(token, ids[i], sizeof(ids[i]), &a, &err),
				 0);
		assert_int_equal(a.sensitive, 1);
		/* The public object was listed too: destroy takes both. */
		assert_int_equal(cv_token_key_destroy(token, ids[i], sizeof(ids[i]), &err), 0);
	}
	assert_int_equal(cv_token_key_exists(token, short_id, sizeof(short_id)), 1);
	assert_int_equal(cv_token_key_exists(token, long_id, sizeof(long_id)), 1);
	assert_int_equal(cv_token_key_exists(token, too_long, sizeof(too_long)), 0);
	assert_int_equal(cv_token_key_destroy(token, short_id, sizeof(short_id), &err), 0);
	assert_int_equal(cv_token_key_destroy(token, long_id, sizeof(long_id), &err), 0);
	assert_int_equal(cv_token_key_foreach(token, stop_at_first, &calls), 42);
	assert_int_equal(calls, 1);
	raw_open(&raw, LABEL);
	for (i = 0; i < 3; i++)
		assert_int_equal(raw_find(&raw, -1, ids[i], sizeof(ids[i]), NULL), 0);
	raw_close(&raw);
	cv_token_free(token);
	EVP_PKEY_free(key);
}

static void test_uri(void **state)
{
	static const uint8_t id[] = { 0x01, 0x02, 0xab, 0x3b, 0x25, 0x7f, 0x00, 0xff };
	struct cv_token_health h;
	struct cv_token *token;
	char uri[512], expected[512], small[40];

	(void)state;
	token = open_label(ODD_LABEL, 2);
	assert_int_equal(cv_token_health_get(token, &h), 0);
	assert_int_equal(cv_token_key_uri(token, id, sizeof(id), "web server;1/a%b?c#d\"é", uri,
					  sizeof(uri)), 0);
	snprintf(expected, sizeof(expected),
		 "pkcs11:model=SoftHSM%%20v2;manufacturer=SoftHSM%%20project;serial=%s;"
		 "token=cv%%20tok%%3B2%%2F%%25;id=%%01%%02%%AB%%3B%%25%%7F%%00%%FF;"
		 "object=web%%20server%%3B1%%2Fa%%25b%%3Fc%%23d%%22%%C3%%A9;type=private",
		 h.serial);
	assert_string_equal(uri, expected);
	/* Characters RFC 7512 lets through stay as they are. */
	assert_int_equal(cv_token_key_uri(token, id, 1, "a-b_c.d~e:f@g!h$i'j(k)l*m+n,o=p&q[r]",
					  uri, sizeof(uri)), 0);
	assert_non_null(strstr(uri, ";id=%01;object=a-b_c.d~e:f@g!h$i'j(k)l*m+n,o=p&q[r];"));
	assert_null(strstr(uri, "pin"));
	/* Too small: an error and a terminated (empty) string, no overflow. */
	memset(small, 'x', sizeof(small));
	assert_int_equal(cv_token_key_uri(token, id, sizeof(id), "k", small, sizeof(small)),
			 CV_ERR_INTERNAL);
	assert_string_equal(small, "");
	cv_token_free(token);
}

/* Every session of the process dies at once (as after a token reset): the next call reopens
 * a session, logs in again and succeeds. */
static void test_sessions_recover(void **state)
{
	struct cv_token_key_attrs a;
	struct cv_token_health h;
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	uint8_t id[CV_TOKEN_ID_LEN], id2[CV_TOKEN_ID_LEN];
	EVP_PKEY *key = key_new("p256");
	struct raw raw;

	(void)state;
	token = open_token();
	random_id(id, sizeof(id));
	random_id(id2, sizeof(id2));
	assert_int_equal(cv_token_key_create(token, key, "survivor", id, sizeof(id), &err), 0);
	raw_open(&raw, LABEL);
	assert_int_equal(raw.f->C_CloseAllSessions(raw.slot), CKR_OK);
	dlclose(raw.dl);
	assert_int_equal(cv_token_key_attrs_get(token, id, sizeof(id), &a, &err), 0);
	assert_int_equal(a.sensitive, 1);
	assert_int_equal(cv_token_health_get(token, &h), 0);
	assert_int_equal(h.logged_in, 1);
	raw_open(&raw, LABEL);
	assert_int_equal(raw.f->C_CloseAllSessions(raw.slot), CKR_OK);
	dlclose(raw.dl);
	assert_int_equal(cv_token_key_create(token, key, "after", id2, sizeof(id2), &err), 0);
	raw_open(&raw, LABEL);
	assert_int_equal(raw.f->C_CloseAllSessions(raw.slot), CKR_OK);
	dlclose(raw.dl);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_destroy(token, id2, sizeof(id2), &err), 0);
	cv_token_free(token);
	EVP_PKEY_free(key);
}

#define THREADS 8
#define ROUNDS 20

struct worker {
	struct cv_token *token;
	int thread;
	int failures;
	char first_error[256];
};

static void *work(void *arg)
{
	static const char *const types[] = { "p256", "ed25519", "p384", "rsa2048" };
	struct worker *w = arg;
	struct cv_token_key_attrs a;
	struct cv_errmsg err = { "" };
	uint8_t id[CV_TOKEN_ID_LEN];
	EVP_PKEY *key = key_new(types[w->thread % 4]);
	int i;

	for (i = 0; i < ROUNDS; i++) {
		if (RAND_bytes(id, sizeof(id)) != 1 || key == NULL ||
		    cv_token_key_create(w->token, key, "concurrent", id, sizeof(id), &err) != 0 ||
		    cv_token_key_exists(w->token, id, sizeof(id)) != 1 ||
		    cv_token_key_attrs_get(w->token, id, sizeof(id), &a, &err) != 0 ||
		    !a.sensitive || cv_token_key_destroy(w->token, id, sizeof(id), &err) != 0 ||
		    cv_token_key_exists(w->token, id, sizeof(id)) != 0) {
			if (w->failures++ == 0)
				snprintf(w->first_error, sizeof(w->first_error), "%s", err.text);
		}
	}
	EVP_PKEY_free(key);
	return NULL;
}

/* Each PKCS#11 call is counted where it is made, a failed one as an error too. */
static void test_operation_counters(void **state)
{
	struct cv_token_stats before, after;
	struct cv_token_key_attrs a;
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	uint8_t id[CV_TOKEN_ID_LEN];
	EVP_PKEY *key = key_new("p256");
	struct raw raw;
	size_t i;

	(void)state;
	token = open_token();
	random_id(id, sizeof(id));
	cv_token_stats_get(token, &before);
	assert_true(before.calls[CV_TOKEN_OP_LOGIN] >= 1);
	assert_true(before.calls[CV_TOKEN_OP_FIND] >= 1);
	assert_int_equal(cv_token_key_create(token, key, "counted", id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_attrs_get(token, id, sizeof(id), &a, &err), 0);
	cv_token_stats_get(token, &after);
	/* the private and the public object */
	assert_int_equal(after.calls[CV_TOKEN_OP_CREATE_OBJECT] -
			 before.calls[CV_TOKEN_OP_CREATE_OBJECT], 2);
	assert_int_equal(after.calls[CV_TOKEN_OP_GET_ATTRIBUTES] -
			 before.calls[CV_TOKEN_OP_GET_ATTRIBUTES], 1);
	for (i = 0; i < CV_TOKEN_OP_COUNT; i++)
		assert_int_equal(after.errors[i], before.errors[i]);

	/* Every session closed behind its back: the next call fails once, is counted as an
	 * error, and succeeds on a fresh session. */
	before = after;
	raw_open(&raw, LABEL);
	assert_int_equal(raw.f->C_CloseAllSessions(raw.slot), CKR_OK);
	dlclose(raw.dl);
	assert_int_equal(cv_token_key_attrs_get(token, id, sizeof(id), &a, &err), 0);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	cv_token_stats_get(token, &after);
	/* the failed read, the listing after the new login (a read an object), the retry */
	assert_true(after.calls[CV_TOKEN_OP_GET_ATTRIBUTES] -
		    before.calls[CV_TOKEN_OP_GET_ATTRIBUTES] >= 2);
	assert_int_equal(after.calls[CV_TOKEN_OP_LOGIN] - before.calls[CV_TOKEN_OP_LOGIN], 1);
	assert_int_equal(after.errors[CV_TOKEN_OP_GET_ATTRIBUTES] -
			 before.errors[CV_TOKEN_OP_GET_ATTRIBUTES], 1);
	assert_true(after.calls[CV_TOKEN_OP_OPEN_SESSION] > before.calls[CV_TOKEN_OP_OPEN_SESSION]);
	assert_int_equal(after.calls[CV_TOKEN_OP_DESTROY_OBJECT] -
			 before.calls[CV_TOKEN_OP_DESTROY_OBJECT], 2);
	assert_int_equal(after.errors[CV_TOKEN_OP_DESTROY_OBJECT],
			 before.errors[CV_TOKEN_OP_DESTROY_OBJECT]);
	assert_string_equal(cv_token_op_name(CV_TOKEN_OP_CREATE_OBJECT), "create_object");
	assert_string_equal(cv_token_op_name(CV_TOKEN_OP_COUNT), "unknown");
	cv_token_free(token);
	EVP_PKEY_free(key);
}

/* ECDSA P-256 over a SHA-256 digest with the key with id, through token. */
static int sign_p256(struct cv_token *token, const uint8_t *id, const unsigned char digest[32],
		     unsigned char sig[CV_TOKEN_SIG_MAX], size_t *ret_len)
{
	const struct cv_token_sign_params ecdsa = { CV_TOKEN_SIGN_ECDSA, 0, 0 };
	struct cv_errmsg err = { "" };

	*ret_len = CV_TOKEN_SIG_MAX;
	return cv_token_sign(token, id, CV_TOKEN_ID_LEN, &ecdsa, digest, 32, sig, ret_len, &err);
}

/* A key the last complete listing did not see, named by a database row older than that
 * listing, is absent without a search: it was made before its row, so it would have been
 * listed. A younger row's key (another node may have made it since) is searched for, and
 * so is any key when the nodes' clocks may be further apart than the row is old. */
static void test_listing_answers_for_old_rows(void **state)
{
	struct cv_token_config cfg = { ts_softhsm_module(), LABEL, USER_PIN, 2, NULL, NULL,
				       3600 };
	uint8_t id[CV_TOKEN_ID_LEN], never[CV_TOKEN_ID_LEN];
	struct cv_token_stats before, after;
	struct cv_errmsg err = { "" };
	struct cv_token *node_a, *node_b, *skewed = NULL;
	EVP_PKEY *key = key_new("p256");
	int64_t listed;

	(void)state;
	random_id(id, sizeof(id));
	random_id(never, sizeof(never));
	node_a = open_token();
	listed = (int64_t)time(NULL); /* A's listing began at this second or the one before */
	node_b = open_token();
	assert_int_equal(cv_token_key_create(node_b, key, "after-a-listed", id, sizeof(id), &err),
			 0);

	cv_token_stats_get(node_a, &before);
	assert_int_equal(cv_token_key_exists_since(node_a, never, sizeof(never), listed - 3600), 0);
	assert_int_equal(cv_token_key_exists_since(node_a, id, sizeof(id), listed - 3600), 0);
	cv_token_stats_get(node_a, &after);
	assert_int_equal(after.calls[CV_TOKEN_OP_FIND], before.calls[CV_TOKEN_OP_FIND]);
	/* The row is as young as the listing: B may have made its key since. */
	assert_int_equal(cv_token_key_exists_since(node_a, id, sizeof(id), listed), 1);
	cv_token_stats_get(node_a, &after);
	assert_true(after.calls[CV_TOKEN_OP_FIND] > before.calls[CV_TOKEN_OP_FIND]);
	/* Found, it is known whatever the row's time. */
	assert_int_equal(cv_token_key_exists_since(node_a, id, sizeof(id), listed - 3600), 1);
	/* A time not known always asks the token. */
	cv_token_stats_get(node_a, &before);
	assert_int_equal(cv_token_key_exists_since(node_a, never, sizeof(never),
						   CV_TOKEN_NAMED_UNKNOWN), 0);
	cv_token_stats_get(node_a, &after);
	assert_true(after.calls[CV_TOKEN_OP_FIND] > before.calls[CV_TOKEN_OP_FIND]);

	/* Clocks an hour apart: a row ten minutes older than the listing may still be a
	 * younger one, so its key is searched for and found. */
	assert_int_equal(cv_token_key_destroy(node_b, id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_open(&cfg, &skewed, &err), 0);
	assert_int_equal(cv_token_key_create(node_b, key, "after-skewed", id, sizeof(id), &err),
			 0);
	assert_int_equal(cv_token_key_exists_since(skewed, id, sizeof(id),
						   (int64_t)time(NULL) - 600), 1);
	assert_int_equal(cv_token_key_exists_since(skewed, never, sizeof(never),
						   (int64_t)time(NULL) - 7200), 0);

	assert_int_equal(cv_token_key_destroy(node_b, id, sizeof(id), &err), 0);
	cv_token_free(skewed);
	cv_token_free(node_b);
	cv_token_free(node_a);
	EVP_PKEY_free(key);
}

/* Two nodes sharing one token, each with its own cv_token (its own sessions, login and
 * map), as two certvaultd processes behind one p11-kit server would: a key made through one
 * is found by the other with one search, then remembered; a key destroyed through one is
 * forgotten by the other at its next use, which answers 'no key'; a key made anew under
 * the same id is found again. */
static void test_two_nodes_share_keys(void **state)
{
	const struct cv_token_sign_params ecdsa = { CV_TOKEN_SIGN_ECDSA, 0, 0 };
	unsigned char digest[32], sig[CV_TOKEN_SIG_MAX];
	struct cv_token_stats before, after;
	struct cv_token_key_attrs a;
	struct cv_token_health h;
	struct cv_errmsg err = { "" };
	struct cv_token *node_a, *node_b;
	uint8_t id[CV_TOKEN_ID_LEN], id2[CV_TOKEN_ID_LEN], id3[CV_TOKEN_ID_LEN], id4[CV_TOKEN_ID_LEN];
	EVP_PKEY *key = key_new("p256"), *key2 = key_new("p256"), *wrap_a = NULL, *wrap_b = NULL;
	size_t sig_len, keys_before;
	struct raw raw;

	(void)state;
	assert_int_equal(RAND_bytes(digest, sizeof(digest)), 1);
	node_a = open_token();
	node_b = open_token();
	random_id(id, sizeof(id));
	random_id(id2, sizeof(id2));
	random_id(id3, sizeof(id3));
	random_id(id4, sizeof(id4));
	assert_int_equal(cv_token_health_get(node_b, &h), 0);
	keys_before = h.keys;

	/* Made through A: B's map never listed it; its first look searches, once. */
	assert_int_equal(cv_token_key_create(node_a, key, "from-a", id, sizeof(id), &err), 0);
	cv_token_stats_get(node_b, &before);
	assert_int_equal(cv_token_key_exists(node_b, id, sizeof(id)), 1);
	assert_int_equal(cv_token_key_exists(node_b, id, sizeof(id)), 1);
	assert_int_equal(sign_p256(node_b, id, digest, sig, &sig_len), 0);
	assert_true(verify_prehashed(key, &ecdsa, digest, sig, sig_len));
	assert_int_equal(cv_token_key_attrs_get(node_b, id, sizeof(id), &a, &err), 0);
	assert_int_equal(a.sensitive, 1);
	assert_int_equal(a.extractable, 0);
	cv_token_stats_get(node_b, &after);
	/* one search for the private object, one for the public: remembered after that */
	assert_int_equal(after.calls[CV_TOKEN_OP_FIND] - before.calls[CV_TOKEN_OP_FIND], 2);
	assert_int_equal(cv_token_health_get(node_b, &h), 0);
	assert_int_equal(h.keys, keys_before + 1);

	/* Destroyed through A: B's handle is stale; its next use searches once more, finds
	 * nothing, forgets the key and says 'no key'. */
	assert_int_equal(cv_token_key_destroy(node_a, id, sizeof(id), &err), 0);
	assert_int_equal(sign_p256(node_b, id, digest, sig, &sig_len), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_token_health_get(node_b, &h), 0);
	assert_int_equal(h.keys, keys_before);
	/* What the search found is believed for a while: asking again costs no search (a
	 * reader polling a certificate whose key is gone does not keep the token busy). */
	cv_token_stats_get(node_b, &before);
	assert_int_equal(cv_token_key_exists(node_b, id, sizeof(id)), 0);
	assert_int_equal(cv_token_key_attrs_get(node_b, id, sizeof(id), &a, &err),
			 CV_ERR_NOT_FOUND);
	assert_int_equal(sign_p256(node_b, id, digest, sig, &sig_len), CV_ERR_NOT_FOUND);
	cv_token_stats_get(node_b, &after);
	assert_int_equal(after.calls[CV_TOKEN_OP_FIND], before.calls[CV_TOKEN_OP_FIND]);
	/* A destroy asks all the same, and finds nothing to destroy. */
	assert_int_equal(cv_token_key_destroy(node_b, id, sizeof(id), &err), CV_ERR_NOT_FOUND);

	/* The attributes path forgets a destroyed key the same way. */
	assert_int_equal(cv_token_key_create(node_a, key, "again", id4, sizeof(id4), &err), 0);
	assert_int_equal(cv_token_key_attrs_get(node_b, id4, sizeof(id4), &a, &err), 0);
	assert_int_equal(cv_token_key_destroy(node_a, id4, sizeof(id4), &err), 0);
	assert_int_equal(cv_token_key_attrs_get(node_b, id4, sizeof(id4), &a, &err),
			 CV_ERR_NOT_FOUND);
	assert_int_equal(a.present, 0);
	/* An id a search found empty can still be made (it is a mark, not a key). */
	assert_int_equal(cv_token_key_create(node_b, key, "reused", id4, sizeof(id4), &err), 0);
	assert_int_equal(cv_token_key_exists(node_b, id4, sizeof(id4)), 1);
	assert_int_equal(cv_token_key_destroy(node_b, id4, sizeof(id4), &err), 0);

	/* Made anew under the same id with another key while B held the old handle: B signs
	 * with the new key. */
	assert_int_equal(cv_token_key_create(node_a, key, "first", id2, sizeof(id2), &err), 0);
	assert_int_equal(sign_p256(node_b, id2, digest, sig, &sig_len), 0);
	assert_int_equal(cv_token_key_destroy(node_a, id2, sizeof(id2), &err), 0);
	assert_int_equal(cv_token_key_create(node_a, key2, "second", id2, sizeof(id2), &err), 0);
	assert_int_equal(sign_p256(node_b, id2, digest, sig, &sig_len), 0);
	assert_true(verify_prehashed(key2, &ecdsa, digest, sig, sig_len));
	assert_false(verify_prehashed(key, &ecdsa, digest, sig, sig_len));

	assert_int_equal(cv_token_key_destroy(node_a, id2, sizeof(id2), &err), 0);

	/* Made through B, destroyed through A (whose map never saw it): both objects go. B's
	 * map holds the key until its next use asks the token. */
	assert_int_equal(cv_token_key_create(node_b, key, "from-b", id3, sizeof(id3), &err), 0);
	assert_int_equal(cv_token_key_destroy(node_a, id3, sizeof(id3), &err), 0);
	raw_open(&raw, LABEL);
	assert_int_equal(raw_find(&raw, -1, id3, sizeof(id3), NULL), 0);
	assert_int_equal(raw_find(&raw, -1, id2, sizeof(id2), NULL), 0);
	assert_int_equal(raw_find(&raw, -1, id, sizeof(id), NULL), 0);
	raw_close(&raw);
	assert_int_equal(cv_token_key_exists(node_b, id3, sizeof(id3)), 1); /* held, not asked */
	assert_int_equal(sign_p256(node_b, id3, digest, sig, &sig_len), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_token_key_exists(node_b, id3, sizeof(id3)), 0);

	/* The wrapping key A made on first use is B's too: a key wrapped for the one that A
	 * hands out unwraps on B. */
	assert_int_equal(cv_token_wrapping_key(node_a, &wrap_a, &err), 0);
	assert_int_equal(cv_token_wrapping_key(node_b, &wrap_b, &err), 0);
	assert_int_equal(EVP_PKEY_eq(wrap_a, wrap_b), 1);
	EVP_PKEY_free(wrap_a);
	EVP_PKEY_free(wrap_b);
	cv_token_free(node_b);
	cv_token_free(node_a);
	EVP_PKEY_free(key);
	EVP_PKEY_free(key2);
}

static void test_concurrent(void **state)
{
	struct worker workers[THREADS];
	pthread_t threads[THREADS];
	struct cv_token *token;
	size_t before = 0, after = 0;
	CK_ULONG objects_before;
	struct raw raw;
	int i;

	(void)state;
	token = open_label(LABEL, 4);
	raw_open(&raw, LABEL);
	objects_before = raw_count_keys(&raw);
	assert_int_equal(cv_token_key_foreach(token, count_key, &before), 0);
	for (i = 0; i < THREADS; i++) {
		workers[i] = (struct worker){ token, i, 0, "" };
		assert_int_equal(pthread_create(&threads[i], NULL, work, &workers[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		if (workers[i].failures > 0)
			fprintf(stderr, "thread %d: %d failures, first: %s\n", i,
				workers[i].failures, workers[i].first_error);
		assert_int_equal(workers[i].failures, 0);
	}
	assert_int_equal(cv_token_key_foreach(token, count_key, &after), 0);
	assert_int_equal(after, before);
	assert_int_equal(raw_count_keys(&raw), objects_before);
	raw_close(&raw);
	cv_token_free(token);
}

/* token.serialize_creates: auto asks the module (SoftHSM 2.6 here: one at a time), on and off
 * are taken as said, anything else is refused; and off still makes and destroys keys. */
static void test_serialize_setting(void **state)
{
	struct cv_token_config cfg = { ts_softhsm_module(), LABEL, USER_PIN, 2, NULL, NULL, 0 };
	struct cv_errmsg err = { "" };
	struct cv_token *token = NULL;
	uint8_t id[CV_TOKEN_ID_LEN];
	EVP_PKEY *key = key_new("p256");

	(void)state;
	token = open_token();
	assert_non_null(strstr(cv_token_serialize_describe(token), "one at a time"));
	assert_non_null(strstr(cv_token_serialize_describe(token), "the module is SoftHSM 2.6"));
	cv_token_free(token);
	cfg.serialize_creates = "off";
	token = NULL;
	assert_int_equal(cv_token_open(&cfg, &token, &err), 0);
	assert_string_equal(cv_token_serialize_describe(token),
			    "concurrently (token.serialize_creates = off)");
	random_id(id, sizeof(id));
	assert_int_equal(cv_token_key_create(token, key, "unserialised", id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_exists(token, id, sizeof(id)), 1);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_exists(token, id, sizeof(id)), 0);
	cv_token_free(token);
	cfg.serialize_creates = "on";
	token = NULL;
	assert_int_equal(cv_token_open(&cfg, &token, &err), 0);
	assert_string_equal(cv_token_serialize_describe(token),
			    "one at a time (token.serialize_creates = on)");
	cv_token_free(token);
	cfg.serialize_creates = "sometimes";
	token = NULL;
	assert_int_equal(cv_token_open(&cfg, &token, &err), CV_ERR_CONFIG);
	assert_null(token);
	assert_non_null(strstr(err.text, "token.serialize_creates must be auto, on or off"));
	EVP_PKEY_free(key);
}

/* Which answers mean "the session or the token may be gone" (and so a probe and maybe a
 * reconnect), and which are the token's word on the request. */
static void test_rv_kind(void **state)
{
	static const CK_RV dead[] = {
		CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_ERROR,
		CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_TOKEN_NOT_RECOGNIZED,
		CKR_SLOT_ID_INVALID, CKR_USER_NOT_LOGGED_IN, CKR_CRYPTOKI_NOT_INITIALIZED,
	};
	static const CK_RV suspect[] = { CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED,
					 CKR_DEVICE_MEMORY, CKR_OBJECT_HANDLE_INVALID,
					 CKR_KEY_HANDLE_INVALID };
	static const CK_RV answer[] = {
		CKR_OK, CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_MECHANISM_INVALID,
		CKR_DATA_LEN_RANGE,
		CKR_ATTRIBUTE_SENSITIVE, CKR_HOST_MEMORY, CKR_TEMPLATE_INCONSISTENT,
		CKR_USER_ALREADY_LOGGED_IN, CKR_VENDOR_DEFINED + 1,
	};
	struct cv_errmsg err = { "" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(dead) / sizeof(dead[0]); i++) {
		assert_int_equal(token_rv_kind(dead[i]), TOKEN_RV_SESSION_DEAD);
		assert_int_equal(token_rv_session_dead(dead[i]), 1);
		assert_int_equal(token_rv_err(dead[i], "C_Sign", &err), CV_ERR_TOKEN_UNAVAILABLE);
		assert_non_null(strstr(err.text, token_ckr_name(dead[i])));
	}
	for (i = 0; i < sizeof(suspect) / sizeof(suspect[0]); i++) {
		assert_int_equal(token_rv_kind(suspect[i]), TOKEN_RV_SUSPECT);
		assert_int_equal(token_rv_session_dead(suspect[i]), 0);
		/* Only a probe that finds the token gone makes it unavailable. */
		assert_int_equal(token_rv_err(suspect[i], "C_Sign", &err), CV_ERR_TOKEN);
	}
	for (i = 0; i < sizeof(answer) / sizeof(answer[0]); i++) {
		assert_int_equal(token_rv_kind(answer[i]), TOKEN_RV_ANSWER);
		assert_int_equal(token_rv_session_dead(answer[i]), 0);
	}
	assert_int_equal(token_rv_err(CKR_PIN_INCORRECT, "C_Login", &err), CV_ERR_TOKEN);
	assert_non_null(strstr(err.text, "PIN"));
	assert_string_equal(token_ckr_name(CKR_GENERAL_ERROR), "CKR_GENERAL_ERROR");
}

/* Moves SoftHSM's token directory away (away != 0) or back. */
static void tokens_move(int away)
{
	char here[sizeof(dir) + 16], there[sizeof(dir) + 16];

	snprintf(here, sizeof(here), "%s/tokens", dir);
	snprintf(there, sizeof(there), "%s/tokens.away", dir);
	assert_int_equal(away ? rename(here, there) : rename(there, here), 0);
}

/* Polls health until the token answers again, for at most 5 s. */
static void wait_back(struct cv_token *token)
{
	struct timespec pause = { 0, 50 * 1000 * 1000 };
	struct cv_token_health h;
	int i;

	for (i = 0; i < 100; i++) {
		if (cv_token_health_get(token, &h) == 0)
			break;
		nanosleep(&pause, NULL);
	}
	assert_int_equal(cv_token_health_get(token, &h), 0);
	assert_int_equal(h.reachable, 1);
	assert_int_equal(h.logged_in, 1);
	assert_string_equal(h.error, "");
}

static int ecdsa_sign(struct cv_token *token, const uint8_t *id, size_t id_len,
		      struct cv_errmsg *err)
{
	struct cv_token_sign_params params = { CV_TOKEN_SIGN_ECDSA, 0, 0 };
	unsigned char hash[32] = { 1, 2, 3 }, sig[CV_TOKEN_SIG_MAX];
	size_t sig_len = sizeof(sig);

	return cv_token_sign(token, id, id_len, &params, hash, sizeof(hash), sig, &sig_len, err);
}

/* The token goes away under an open cv_token and comes back: meanwhile every call fails as
 * unavailable and the map is kept; afterwards the old key works and new ones can be made,
 * without reopening. */
static void test_token_away_and_back(void **state)
{
	struct cv_token_key_attrs a;
	struct cv_token_health h;
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	uint8_t id[CV_TOKEN_ID_LEN], id2[CV_TOKEN_ID_LEN];
	EVP_PKEY *key = key_new("p256");

	(void)state;
	token = open_token();
	random_id(id, sizeof(id));
	random_id(id2, sizeof(id2));
	assert_int_equal(cv_token_key_create(token, key, "before", id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_check(token, &err), 0);

	tokens_move(1);
	assert_int_equal(cv_token_key_attrs_get(token, id, sizeof(id), &a, &err),
			 CV_ERR_TOKEN_UNAVAILABLE);
	assert_non_null(strstr(err.text, "unavailable"));
	assert_int_equal(cv_token_key_create(token, key, "away", id2, sizeof(id2), &err),
			 CV_ERR_TOKEN_UNAVAILABLE);
	assert_int_equal(cv_token_key_exists(token, id2, sizeof(id2)), 0);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err),
			 CV_ERR_TOKEN_UNAVAILABLE);
	assert_int_equal(ecdsa_sign(token, id, sizeof(id), &err), CV_ERR_TOKEN_UNAVAILABLE);
	assert_int_equal(cv_token_check(token, &err), CV_ERR_TOKEN_UNAVAILABLE);
	/* The map outlives the outage: the key is only out of reach. */
	assert_int_equal(cv_token_key_exists(token, id, sizeof(id)), 1);
	assert_int_not_equal(cv_token_health_get(token, &h), 0);
	assert_int_equal(h.reachable, 0);
	assert_true(h.keys >= 1);
	assert_true(strlen(h.error) > 0);
	assert_null(strstr(h.error, USER_PIN));
	assert_null(strstr(err.text, USER_PIN));

	tokens_move(0);
	wait_back(token);
	assert_int_equal(cv_token_key_attrs_get(token, id, sizeof(id), &a, &err), 0);
	assert_int_equal(a.sensitive, 1);
	assert_int_equal(ecdsa_sign(token, id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_create(token, key, "after", id2, sizeof(id2), &err), 0);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_destroy(token, id2, sizeof(id2), &err), 0);
	cv_token_free(token);
	EVP_PKEY_free(key);
}

struct away_worker {
	struct cv_token *token;
	const uint8_t *ids;     /* AWAY_KEYS ids of CV_TOKEN_ID_LEN bytes */
	atomic_int *stop;
	int ok, unavailable, other;
	char first_other[300];
};

#define AWAY_KEYS 3

static void *away_work(void *arg)
{
	struct away_worker *w = arg;
	struct cv_token_key_attrs a;
	struct cv_errmsg err = { "" };
	unsigned n = 0;
	int r;

	while (!atomic_load(w->stop)) {
		const uint8_t *id = w->ids + (n++ % AWAY_KEYS) * CV_TOKEN_ID_LEN;

		r = n % 2 ? cv_token_key_attrs_get(w->token, id, CV_TOKEN_ID_LEN, &a, &err)
			  : ecdsa_sign(w->token, id, CV_TOKEN_ID_LEN, &err);
		if (r == 0 && (n % 2 == 0 || a.sensitive)) {
			w->ok++;
		} else if (r == CV_ERR_TOKEN_UNAVAILABLE) {
			w->unavailable++;
		} else if (w->other++ == 0) {
			snprintf(w->first_other, sizeof(w->first_other), "%d %s", r, err.text);
		}
	}
	return NULL;
}

/* Calls keep running on every thread while the token goes away and comes back: each one
 * succeeds or fails as unavailable, none uses a handle of the token as it was before (that
 * would answer "no such key" or another key's attributes), and nothing crashes. */
static void test_token_away_concurrent(void **state)
{
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	struct away_worker workers[THREADS];
	pthread_t threads[THREADS];
	uint8_t ids[AWAY_KEYS * CV_TOKEN_ID_LEN];
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	atomic_int stop;
	EVP_PKEY *key = key_new("p256");
	int i, ok_before = 0, ok_after = 0, unavailable = 0;

	(void)state;
	atomic_init(&stop, 0);
	token = open_label(LABEL, 4);
	for (i = 0; i < AWAY_KEYS; i++) {
		random_id(ids + i * CV_TOKEN_ID_LEN, CV_TOKEN_ID_LEN);
		assert_int_equal(cv_token_key_create(token, key, "away-concurrent",
						     ids + i * CV_TOKEN_ID_LEN, CV_TOKEN_ID_LEN,
						     &err), 0);
	}
	for (i = 0; i < THREADS; i++) {
		workers[i] = (struct away_worker){ token, ids, &stop, 0, 0, 0, "" };
		assert_int_equal(pthread_create(&threads[i], NULL, away_work, &workers[i]), 0);
	}
	nanosleep(&pause, NULL);
	for (i = 0; i < THREADS; i++)
		ok_before += workers[i].ok;
	tokens_move(1);
	nanosleep(&pause, NULL);
	nanosleep(&pause, NULL);
	tokens_move(0);
	wait_back(token);
	for (i = 0; i < THREADS; i++)
		ok_after -= workers[i].ok;
	nanosleep(&pause, NULL);
	atomic_store(&stop, 1);
	for (i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		if (workers[i].other > 0)
			fprintf(stderr, "thread %d: %d unexpected, first: %s\n", i,
				workers[i].other, workers[i].first_other);
		assert_int_equal(workers[i].other, 0);
		ok_after += workers[i].ok;
		unavailable += workers[i].unavailable;
	}
	assert_true(ok_before > 0);
	assert_true(unavailable > 0);
	assert_true(ok_after > 0);
	for (i = 0; i < AWAY_KEYS; i++)
		assert_int_equal(cv_token_key_destroy(token, ids + i * CV_TOKEN_ID_LEN,
						      CV_TOKEN_ID_LEN, &err), 0);
	cv_token_free(token);
	EVP_PKEY_free(key);
}

/* token.sync_dir: what each value does, and the refusals at open (issue 21). */
static struct cv_token *open_sync(const char *sync_dir, int expect, struct cv_errmsg *err)
{
	struct cv_token_config cfg = { ts_softhsm_module(), LABEL, USER_PIN, 2, sync_dir, NULL, 0 };
	struct cv_token *token = NULL;

	assert_int_equal(cv_token_open(&cfg, &token, err), expect);
	if (expect != 0)
		assert_null(token);
	return token;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static void test_sync_dir(void **state)
{
	char tokens[256], deep[256], conf[512], saved[512], expect[600];
	struct cv_errmsg err = { "" };
	struct cv_token *keep, *token;
	uint8_t id[CV_TOKEN_ID_LEN];
	EVP_PKEY *key = key_new("p256");
	const char *env;

	(void)state;
	snprintf(tokens, sizeof(tokens), "%s/tokens", dir);
	/* Kept open so that the module stays initialised while SOFTHSM2_CONF changes below:
	 * only certvault's own reading of it then sees the change. */
	keep = open_token();
	/* Default: SoftHSM's tokendir, from SOFTHSM2_CONF, file by file. */
	token = open_sync(NULL, 0, &err);
	snprintf(expect, sizeof(expect), "fsync of the changed files under %s (directories."
		 "tokendir of ", tokens);
	assert_non_null(strstr(cv_token_sync_describe(token), expect));
	assert_int_equal(cv_token_key_id_new(id), 0);
	assert_int_equal(cv_token_key_create(token, key, "synced", id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	cv_token_free(token);
	token = open_sync("none", 0, &err);
	assert_non_null(strstr(cv_token_sync_describe(token), "none (token.sync_dir = none)"));
	cv_token_free(token);
	/* A directory with a third level is not SoftHSM's layout: every sync is a syncfs. */
	snprintf(deep, sizeof(deep), "%s/deep", dir);
	assert_int_equal(mkdir(deep, 0700), 0);
	snprintf(conf, sizeof(conf), "%s/a", deep);
	assert_int_equal(mkdir(conf, 0700), 0);
	snprintf(conf, sizeof(conf), "%s/a/b", deep);
	assert_int_equal(mkdir(conf, 0700), 0);
	token = open_sync(deep, 0, &err);
	snprintf(expect, sizeof(expect), "syncfs under %s (token.sync_dir)", deep);
	assert_string_equal(cv_token_sync_describe(token), expect);
	assert_int_equal(cv_token_key_id_new(id), 0);
	assert_int_equal(cv_token_key_create(token, key, "syncfs", id, sizeof(id), &err), 0);
	assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
	cv_token_free(token);
	/* Refusals: each names the setting and what to do. */
	snprintf(conf, sizeof(conf), "%s/nowhere", dir);
	open_sync(conf, CV_ERR_CONFIG, &err);
	assert_non_null(strstr(err.text, "token.sync_dir"));
	assert_non_null(strstr(err.text, "is not a directory"));
	env = getenv("SOFTHSM2_CONF");
	assert_non_null(env);
	snprintf(saved, sizeof(saved), "%s", env);
	snprintf(conf, sizeof(conf), "%s/missing.conf", dir);
	assert_int_equal(setenv("SOFTHSM2_CONF", conf, 1), 0);
	open_sync("auto", CV_ERR_CONFIG, &err);
	assert_non_null(strstr(err.text, "cannot be read"));
	assert_non_null(strstr(err.text, conf));
	snprintf(conf, sizeof(conf), "%s/empty.conf", dir);
	write_file(conf, "# no tokendir\nlog.level = ERROR\n");
	assert_int_equal(setenv("SOFTHSM2_CONF", conf, 1), 0);
	open_sync("", CV_ERR_CONFIG, &err);
	assert_non_null(strstr(err.text, "names no directories.tokendir"));
	/* SoftHSM's own syntax: spaces around '=', a tokendir that is not there. */
	write_file(conf, "  directories.tokendir   =   /nonexistent/tokens  \n");
	open_sync(NULL, CV_ERR_CONFIG, &err);
	assert_non_null(strstr(err.text, "/nonexistent/tokens (directories.tokendir of"));
	assert_int_equal(setenv("SOFTHSM2_CONF", saved, 1), 0);
	cv_token_free(keep);
	EVP_PKEY_free(key);
}

/* The marker: every id certvault makes carries it, random ids and other lengths do not, and
 * the marked listing sees only marked private and public key objects. */
static int count_marked(const uint8_t *id, size_t id_len, int has_private, void *arg)
{
	int *counts = arg;

	assert_true(cv_token_key_id_marked(id, id_len));
	counts[has_private ? 0 : 1]++;
	return 0;
}

static void test_key_id_marker(void **state)
{
	uint8_t a[CV_TOKEN_ID_LEN], b[CV_TOKEN_ID_LEN], other[CV_TOKEN_ID_LEN];
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	EVP_PKEY *key = key_new("p256");
	int counts[2] = { 0, 0 };

	(void)state;
	assert_int_equal(cv_token_key_id_new(a), 0);
	assert_int_equal(cv_token_key_id_new(b), 0);
	assert_memory_equal(a, CV_TOKEN_ID_MARKER, CV_TOKEN_ID_MARKER_LEN);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_true(cv_token_key_id_marked(a, sizeof(a)));
	assert_false(cv_token_key_id_marked(a, sizeof(a) - 1));
	random_id(other, sizeof(other));
	other[0] = 0x00; /* never the marker's first byte */
	assert_false(cv_token_key_id_marked(other, sizeof(other)));
	token = open_token();
	assert_int_equal(cv_token_marked_foreach(token, count_marked, counts), 0);
	assert_int_equal(counts[0], 0);
	assert_int_equal(cv_token_key_create(token, key, "marked", a, sizeof(a), &err), 0);
	assert_int_equal(cv_token_key_create(token, key, "other", other, sizeof(other), &err), 0);
	assert_int_equal(cv_token_marked_foreach(token, count_marked, counts), 0);
	assert_int_equal(counts[0], 1);
	assert_int_equal(counts[1], 0);
	assert_int_equal(cv_token_key_destroy(token, a, sizeof(a), &err), 0);
	assert_int_equal(cv_token_key_destroy(token, other, sizeof(other), &err), 0);
	cv_token_free(token);
	EVP_PKEY_free(key);
}

struct seek_marked {
	const uint8_t *id;
	int seen, has_private;
};

static int seek_marked(const uint8_t *id, size_t id_len, int has_private, void *arg)
{
	struct seek_marked *s = arg;

	if (id_len == CV_TOKEN_ID_LEN && memcmp(id, s->id, id_len) == 0) {
		s->seen++;
		s->has_private = has_private;
	}
	return 0;
}

/* Start-up (issue 19): the listing at open reads the private objects only, and the public key
 * objects follow on a thread of their own. Whenever a call comes, it answers as if the whole
 * token had been listed: a key pair destroyed at once loses both halves, the marked listing
 * sees a public key alone under a marked id, and a token closed at once stops that listing. */
static void test_public_listed_after_open(void **state)
{
	uint8_t pair[CV_TOKEN_ID_LEN], lone[CV_TOKEN_ID_LEN];
	struct seek_marked seek = { NULL, 0, 0 };
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	EVP_PKEY *key = key_new("p256");
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
	struct raw raw;

	(void)state;
	assert_int_equal(cv_token_key_id_new(pair), 0);
	assert_int_equal(cv_token_key_id_new(lone), 0);
	token = open_token();
	assert_int_equal(cv_token_key_create(token, key, "pair", pair, sizeof(pair), &err), 0);
	assert_int_equal(cv_token_key_create(token, key, "lone", lone, sizeof(lone), &err), 0);
	/* A run that died between the two destroys: the public half alone. */
	raw_open(&raw, LABEL);
	assert_int_equal(raw_find(&raw, CKO_PRIVATE_KEY, lone, sizeof(lone), &h), 1);
	assert_int_equal(raw.f->C_DestroyObject(raw.s, h), CKR_OK);
	raw_close(&raw);
	cv_token_free(token);

	/* Closed at once: the listing stops, nothing leaks or hangs. */
	token = open_unsettled(LABEL, 4);
	cv_token_free(token);

	token = open_unsettled(LABEL, 4);
	/* The private listing is done at open: the key is there without asking again. */
	assert_int_equal(cv_token_key_exists(token, pair, sizeof(pair)), 1);
	/* Destroyed at once, whether or not its public half was listed yet: both go. */
	assert_int_equal(cv_token_key_destroy(token, pair, sizeof(pair), &err), 0);
	raw_open(&raw, LABEL);
	assert_int_equal(raw_find(&raw, -1, pair, sizeof(pair), NULL), 0);
	raw_close(&raw);
	/* The marked listing waits for the public objects: the lone one is there. */
	seek.id = lone;
	assert_int_equal(cv_token_marked_foreach(token, seek_marked, &seek), 0);
	assert_int_equal(seek.seen, 1);
	assert_int_equal(seek.has_private, 0);
	assert_int_equal(token_public_wait(token), 1);
	seek = (struct seek_marked){ pair, 0, 0 };
	assert_int_equal(cv_token_marked_foreach(token, seek_marked, &seek), 0);
	assert_int_equal(seek.seen, 0);
	assert_int_equal(cv_token_key_destroy(token, lone, sizeof(lone), &err), 0);
	raw_open(&raw, LABEL);
	assert_int_equal(raw_find(&raw, -1, lone, sizeof(lone), NULL), 0);
	raw_close(&raw);
	/* Stopping after the listing ended changes nothing. */
	cv_token_background_stop(token);
	assert_int_equal(token_public_wait(token), 1);
	cv_token_free(token);
	EVP_PKEY_free(key);
}

/* Signs what x509 says over req (or cert) with the token's key and puts the signature in
 * place, as the vault does. */
static int token_sign_tbs(struct cv_token *token, const uint8_t *id, X509_REQ *req, X509 *cert,
			  EVP_PKEY *pub, X509 **ret_cert)
{
	struct cv_token_sign_params params = { 0, 0, 0 };
	enum cv_x509_sig_scheme scheme;
	unsigned char *data = NULL, sig[CV_TOKEN_SIG_MAX];
	size_t data_len, sig_len = sizeof(sig);
	struct cv_errmsg err = { "" };
	int r;

	r = cv_x509_tbs_digest(req, cert, pub, &scheme, &data, &data_len);
	if (r < 0)
		return r;
	params.mechanism = scheme == CV_X509_SIG_RSA_PKCS1 ? CV_TOKEN_SIGN_RSA_PKCS1 :
		scheme == CV_X509_SIG_ECDSA ? CV_TOKEN_SIGN_ECDSA : CV_TOKEN_SIGN_EDDSA;
	r = cv_token_sign(token, id, CV_TOKEN_ID_LEN, &params, data, data_len, sig, &sig_len,
			  &err);
	free(data);
	if (r < 0)
		return r;
	return cv_x509_signature_set(req, cert, pub, sig, sig_len, ret_cert);
}

/* Every type born in the token: the token says always sensitive and never extractable, the
 * key signs and does nothing else, a CSR and a self-signed certificate signed in the token
 * verify with the public key read back, and a failed generate leaves nothing. */
static void test_generate_each_type(void **state)
{
	static const char *const types[] = { "rsa2048", "rsa3072", "p256", "p384", "p521",
					     "ed25519" };
	static const char *const dns[] = { "www.example.com", "example.com" };
	static const char *const ips[] = { "192.0.2.1", "2001:db8::1" };
	struct cv_x509_request req = { "CN=www.example.com,O=Example\\, Inc", dns, 2, ips, 2,
				       NULL, 0, NULL, 0 };
	enum cv_token_key_type type;
	struct cv_token_key_attrs a;
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
	uint8_t id[CV_TOKEN_ID_LEN];
	X509 *unsigned_cert, *cert;
	X509_REQ *csr;
	struct raw raw;
	EVP_PKEY *pub;
	size_t i;
	int r;

	(void)state;
	token = open_token();
	raw_open(&raw, LABEL);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		assert_int_equal(cv_token_key_type_parse(types[i], &type), 0);
		assert_string_equal(cv_token_key_type_name(type), types[i]);
		assert_int_equal(cv_token_key_id_new(id), 0);
		pub = NULL;
		r = cv_token_key_generate(token, type, types[i], id, sizeof(id), &pub, &err);
		if (r != 0)
			fprintf(stderr, "%s: %s\n", types[i], err.text);
		assert_int_equal(r, 0);
		assert_non_null(pub);
		assert_int_equal(cv_token_key_exists(token, id, sizeof(id)), 1);
		assert_int_equal(cv_token_key_attrs_get(token, id, sizeof(id), &a, &err), 0);
		assert_int_equal(a.sensitive, 1);
		assert_int_equal(a.extractable, 0);
		assert_int_equal(a.always_sensitive, 1);
		assert_int_equal(a.never_extractable, 1);
		assert_int_equal(raw_find(&raw, CKO_PRIVATE_KEY, id, sizeof(id), &priv), 1);
		assert_int_equal(raw_find(&raw, CKO_PUBLIC_KEY, id, sizeof(id), NULL), 1);
		check_usage(&raw, priv, EVP_PKEY_is_a(pub, "RSA"));

		csr = NULL;
		assert_int_equal(cv_x509_csr_new(pub, &req, &csr, &err), 0);
		assert_int_equal(token_sign_tbs(token, id, csr, NULL, pub, NULL), 0);
		assert_int_equal(X509_REQ_verify(csr, pub), 1);
		X509_REQ_free(csr);

		unsigned_cert = NULL;
		cert = NULL;
		assert_int_equal(cv_x509_selfsigned_new(pub, &req, time(NULL), 30, &unsigned_cert,
							&err), 0);
		assert_int_equal(token_sign_tbs(token, id, NULL, unsigned_cert, pub, &cert), 0);
		assert_int_equal(X509_verify(cert, pub), 1);
		assert_int_equal(X509_check_host(cert, "example.com", 0, 0, NULL), 1);
		X509_free(cert);
		X509_free(unsigned_cert);

		/* The same id twice: refused, the first pair untouched. */
		assert_int_equal(cv_token_key_generate(token, type, "again", id, sizeof(id), &pub,
						       &err), CV_ERR_NAME_TAKEN);
		assert_int_equal(cv_token_key_destroy(token, id, sizeof(id), &err), 0);
		assert_int_equal(raw_find(&raw, -1, id, sizeof(id), NULL), 0);
		EVP_PKEY_free(pub);
	}
	assert_int_equal(cv_token_key_type_parse("rsa1024", &type), CV_ERR_UNSUPPORTED_KEY);
	raw_close(&raw);
	cv_token_free(token);
}

/* Requests the x509 module refuses before any key is used. */
static void test_request_refusals(void **state)
{
	static const char *const bad_dns[] = { "not a name" };
	static const char *const bad_ip[] = { "300.1.1.1" };
	static const char *const bad_ku[] = { "digitalSignature,@section" };
	struct cv_x509_request req;
	struct cv_errmsg err = { "" };
	X509_REQ *csr = NULL;
	X509 *cert = NULL;
	EVP_PKEY *key = key_new("p256");
	static const char *const subjects[] = { "", "CN", "XX=foo", "CN=", "CN=a,O=" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
		memset(&req, 0, sizeof(req));
		req.subject = subjects[i];
		assert_int_equal(cv_x509_csr_new(key, &req, &csr, &err), CV_ERR_BAD_REQUEST);
	}
	memset(&req, 0, sizeof(req));
	req.subject = "CN=x";
	req.dns_names = bad_dns;
	req.n_dns_names = 1;
	assert_int_equal(cv_x509_csr_new(key, &req, &csr, &err), CV_ERR_BAD_REQUEST);
	req.n_dns_names = 0;
	req.ip_addresses = bad_ip;
	req.n_ip_addresses = 1;
	assert_int_equal(cv_x509_csr_new(key, &req, &csr, &err), CV_ERR_BAD_REQUEST);
	req.n_ip_addresses = 0;
	req.key_usage = bad_ku;
	req.n_key_usage = 1;
	assert_int_equal(cv_x509_csr_new(key, &req, &csr, &err), CV_ERR_BAD_REQUEST);
	req.n_key_usage = 0;
	assert_int_equal(cv_x509_selfsigned_new(key, &req, time(NULL), 0, &cert, &err),
			 CV_ERR_BAD_REQUEST);
	assert_int_equal(cv_x509_selfsigned_new(key, &req, time(NULL), 3651, &cert, &err),
			 CV_ERR_BAD_REQUEST);
	assert_null(csr);
	assert_null(cert);
	EVP_PKEY_free(key);
}

/* Secret keys labelled label, as the test sees them; the first handle in *ret_first. */
static CK_ULONG raw_find_secret(struct raw *raw, const char *label, CK_OBJECT_HANDLE *ret_first)
{
	CK_OBJECT_CLASS c = CKO_SECRET_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &c, sizeof(c) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE found[8];
	CK_ULONG n = 0;

	assert_int_equal(raw->f->C_FindObjectsInit(raw->s, tmpl, 2), CKR_OK);
	assert_int_equal(raw->f->C_FindObjects(raw->s, found, 8, &n), CKR_OK);
	assert_int_equal(raw->f->C_FindObjectsFinal(raw->s), CKR_OK);
	if (ret_first != NULL && n > 0)
		*ret_first = found[0];
	return n;
}

/* The audit chain's HMAC key: generated once with its id, found by label, never read out or
 * edited, MACs that follow the data, and found again after sessions die and after the token
 * goes away and comes back. */
static void test_secret_key(void **state)
{
	static const char label[] = "test-audit-hmac", id[] = "certvault-audit-from=7";
	struct cv_token_secret *s = NULL, *s2 = NULL;
	struct cv_token_key_attrs a;
	struct cv_errmsg err = { "" };
	struct cv_token *token;
	uint8_t mac[CV_TOKEN_MAC_LEN], mac2[CV_TOKEN_MAC_LEN], got_id[CV_TOKEN_SECRET_ID_MAX];
	unsigned char value[64];
	CK_ATTRIBUTE read_value = { CKA_VALUE, value, sizeof(value) };
	CK_ATTRIBUTE relabel = { CKA_LABEL, (void *)"renamed", 7 };
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE, extra = CK_INVALID_HANDLE;
	CK_MECHANISM gen = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
	CK_ULONG len = 32;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_LABEL, (void *)label, sizeof(label) - 1 },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
	};
	struct raw raw;

	(void)state;
	token = open_token();
	assert_int_equal(cv_token_secret_find(token, label, &s, &err), CV_ERR_NOT_FOUND);
	assert_int_equal(cv_token_secret_generate(token, label, (const uint8_t *)id,
						  strlen(id), &s, &err), 0);
	assert_int_equal(cv_token_secret_generate(token, label, (const uint8_t *)id,
						  strlen(id), &s2, &err), CV_ERR_NAME_TAKEN);
	assert_int_equal(cv_token_secret_find(token, label, &s2, &err), 0);
	assert_int_equal(cv_token_secret_id(s2, got_id), strlen(id));
	assert_memory_equal(got_id, id, strlen(id));

	assert_int_equal(cv_token_secret_hmac(s, "abc", 3, mac, &err), 0);
	assert_int_equal(cv_token_secret_hmac(s2, "abc", 3, mac2, &err), 0);
	assert_memory_equal(mac, mac2, sizeof(mac));
	assert_int_equal(cv_token_secret_hmac(s, "abd", 3, mac2, &err), 0);
	assert_memory_not_equal(mac, mac2, sizeof(mac));

	assert_int_equal(cv_token_secret_attrs_get(s, &a, &err), 0);
	assert_int_equal(a.sensitive, 1);
	assert_int_equal(a.extractable, 0);
	assert_int_equal(a.always_sensitive, 1);
	assert_int_equal(a.never_extractable, 1);
	assert_int_equal(a.is_private, 1);
	assert_int_equal(a.on_token, 1);

	/* Nobody logged in reads or edits it. */
	raw_open(&raw, LABEL);
	assert_int_equal(raw_find_secret(&raw, label, &h), 1);
	assert_int_equal(raw.f->C_GetAttributeValue(raw.s, h, &read_value, 1),
			 CKR_ATTRIBUTE_SENSITIVE);
	assert_int_not_equal(raw.f->C_SetAttributeValue(raw.s, h, &relabel, 1), CKR_OK);
	/* Every session dies: the next MAC logs in again and finds the key by its label. */
	assert_int_equal(raw.f->C_CloseAllSessions(raw.slot), CKR_OK);
	dlclose(raw.dl);
	assert_int_equal(cv_token_secret_hmac(s, "abc", 3, mac2, &err), 0);
	assert_memory_equal(mac, mac2, sizeof(mac));

	/* The token away: unavailable; back: the same key, the same MAC. */
	tokens_move(1);
	assert_int_equal(cv_token_secret_hmac(s, "abc", 3, mac2, &err), CV_ERR_TOKEN_UNAVAILABLE);
	assert_null(strstr(err.text, USER_PIN));
	tokens_move(0);
	wait_back(token);
	assert_int_equal(cv_token_secret_hmac(s, "abc", 3, mac2, &err), 0);
	assert_memory_equal(mac, mac2, sizeof(mac));

	/* A secret key anyone may use without logging in is no key of certvault's: one with
	 * the label changes nothing. */
	raw_open(&raw, LABEL);
	{
		CK_BBOOL no = CK_FALSE;
		CK_ATTRIBUTE public_tmpl[] = {
			{ CKA_LABEL, (void *)label, sizeof(label) - 1 },
			{ CKA_VALUE_LEN, &len, sizeof(len) },
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_PRIVATE, &no, sizeof(no) },
		};

		assert_int_equal(raw.f->C_GenerateKey(raw.s, &gen, public_tmpl, 4, &extra),
				 CKR_OK);
	}
	cv_token_secret_free(s2);
	s2 = NULL;
	assert_int_equal(cv_token_secret_find(token, label, &s2, &err), 0);
	assert_int_equal(cv_token_secret_hmac(s2, "abc", 3, mac2, &err), 0);
	assert_memory_equal(mac, mac2, sizeof(mac));
	assert_int_equal(raw.f->C_DestroyObject(raw.s, extra), CKR_OK);
	raw_close(&raw);

	/* A second key with the label: which one MACs would be a guess, so neither does. */
	raw_open(&raw, LABEL);
	assert_int_equal(raw.f->C_GenerateKey(raw.s, &gen, tmpl, 3, &extra), CKR_OK);
	cv_token_secret_free(s2);
	s2 = NULL;
	assert_int_equal(cv_token_secret_find(token, label, &s2, &err), CV_ERR_TOKEN);
	assert_non_null(strstr(err.text, "several"));
	assert_int_equal(raw.f->C_DestroyObject(raw.s, extra), CKR_OK);
	assert_int_equal(raw_find_secret(&raw, label, &h), 1);
	assert_int_equal(raw.f->C_DestroyObject(raw.s, h), CKR_OK);
	raw_close(&raw);
	/* Destroyed behind its back: the MAC fails, it is not made up. */
	assert_int_equal(cv_token_secret_hmac(s, "abc", 3, mac2, &err), CV_ERR_NOT_FOUND);
	cv_token_secret_free(s);
	cv_token_free(token);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_open_wrong_pin),
		cmocka_unit_test(test_open_unknown_label),
		cmocka_unit_test(test_open_missing_module),
		cmocka_unit_test(test_sync_dir),
		cmocka_unit_test(test_key_id_marker),
		cmocka_unit_test(test_create_each_type),
		cmocka_unit_test(test_generate_each_type),
		cmocka_unit_test(test_request_refusals),
		cmocka_unit_test(test_duplicate_id),
		cmocka_unit_test(test_unsupported),
		cmocka_unit_test(test_sign),
		cmocka_unit_test(test_destroy),
		cmocka_unit_test(test_reopen_sees_keys),
		cmocka_unit_test(test_public_listed_after_open),
		cmocka_unit_test(test_uri),
		cmocka_unit_test(test_sessions_recover),
		cmocka_unit_test(test_operation_counters),
		cmocka_unit_test(test_destroy_checks_gone),
		cmocka_unit_test(test_two_nodes_share_keys),
		cmocka_unit_test(test_listing_answers_for_old_rows),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_serialize_setting),
		cmocka_unit_test(test_rv_kind),
		cmocka_unit_test(test_token_away_and_back),
		cmocka_unit_test(test_token_away_concurrent),
		cmocka_unit_test(test_secret_key),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
