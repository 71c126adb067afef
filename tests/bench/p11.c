/* Benchmarks: loading the module, logging in, and key templates as certvault builds them. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>

#include "p11.h"

const char *bp11_rv_name(CK_RV rv)
{
	static _Thread_local char buf[32];

	switch (rv) {
	case CKR_OK: return "CKR_OK";
	case CKR_HOST_MEMORY: return "CKR_HOST_MEMORY";
	case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
	case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
	case CKR_ARGUMENTS_BAD: return "CKR_ARGUMENTS_BAD";
	case CKR_ATTRIBUTE_VALUE_INVALID: return "CKR_ATTRIBUTE_VALUE_INVALID";
	case CKR_ATTRIBUTE_TYPE_INVALID: return "CKR_ATTRIBUTE_TYPE_INVALID";
	case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
	case CKR_KEY_HANDLE_INVALID: return "CKR_KEY_HANDLE_INVALID";
	case CKR_MECHANISM_INVALID: return "CKR_MECHANISM_INVALID";
	case CKR_OBJECT_HANDLE_INVALID: return "CKR_OBJECT_HANDLE_INVALID";
	case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
	case CKR_SESSION_HANDLE_INVALID: return "CKR_SESSION_HANDLE_INVALID";
	case CKR_TEMPLATE_INCOMPLETE: return "CKR_TEMPLATE_INCOMPLETE";
	case CKR_TEMPLATE_INCONSISTENT: return "CKR_TEMPLATE_INCONSISTENT";
	case CKR_USER_NOT_LOGGED_IN: return "CKR_USER_NOT_LOGGED_IN";
	case CKR_CRYPTOKI_ALREADY_INITIALIZED: return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
	default:
		snprintf(buf, sizeof(buf), "CKR 0x%lx", (unsigned long)rv);
		return buf;
	}
}

double bp11_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bp11_read_pin(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t len;

	if (f == NULL) {
		perror(path);
		return -1;
	}
	if (fgets(buf, (int)size, f) == NULL) {
		fprintf(stderr, "%s: empty\n", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	return (int)len;
}

static void trim(const CK_UTF8CHAR *field, size_t len, char *out)
{
	while (len > 0 && (field[len - 1] == ' ' || field[len - 1] == '\0'))
		len--;
	memcpy(out, field, len);
	out[len] = '\0';
}

int bp11_open(struct bp11 *p, const char *module, const char *label)
{
	CK_C_INITIALIZE_ARGS init_args = { 0 };
	CK_C_GetFunctionList get_function_list;
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO info;
	char name[33];
	CK_RV rv;

	memset(p, 0, sizeof(*p));
	p->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
	if (p->dl == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", module, dlerror());
		return -1;
	}
	*(void **)&get_function_list = dlsym(p->dl, "C_GetFunctionList");
	if (get_function_list == NULL || get_function_list(&p->f) != CKR_OK) {
		fprintf(stderr, "%s: no usable C_GetFunctionList\n", module);
		goto fail;
	}
	init_args.flags = CKF_OS_LOCKING_OK;
	rv = p->f->C_Initialize(&init_args);
	if (rv != CKR_OK) {
		fprintf(stderr, "C_Initialize: %s\n", bp11_rv_name(rv));
		goto fail;
	}
	rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
	if (rv != CKR_OK) {
		fprintf(stderr, "C_GetSlotList: %s\n", bp11_rv_name(rv));
		goto fail_init;
	}
	for (i = 0; i < n; i++) {
		if (p->f->C_GetTokenInfo(slots[i], &info) != CKR_OK ||
		    !(info.flags & CKF_TOKEN_INITIALIZED))
			continue;
		trim(info.label, sizeof(info.label), name);
		if (strcmp(name, label) == 0) {
			p->slot = slots[i];
			return 0;
		}
	}
	fprintf(stderr, "no token labelled %s\n", label);
fail_init:
	(void)p->f->C_Finalize(NULL);
fail:
	dlclose(p->dl);
	p->dl = NULL;
	return -1;
}

void bp11_close(struct bp11 *p)
{
	if (p->dl == NULL)
		return;
	(void)p->f->C_Finalize(NULL);
	dlclose(p->dl);
	p->dl = NULL;
}

int bp11_session(struct bp11 *p, const char *pin_file, CK_SESSION_HANDLE *ret_session)
{
	char pin[256];
	int len;
	CK_RV rv;

	rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
				 ret_session);
	if (rv != CKR_OK) {
		fprintf(stderr, "C_OpenSession: %s\n", bp11_rv_name(rv));
		return -1;
	}
	if (pin_file == NULL)
		return 0;
	len = bp11_read_pin(pin_file, pin, sizeof(pin));
	if (len < 0)
		return -1;
	rv = p->f->C_Login(*ret_session, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)len);
	OPENSSL_cleanse(pin, sizeof(pin));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		fprintf(stderr, "C_Login: %s\n", bp11_rv_name(rv));
		return -1;
	}
	return 0;
}

static void add(CK_ATTRIBUTE *attrs, CK_ULONG *n, CK_ATTRIBUTE_TYPE type, const void *value,
		size_t len)
{
	attrs[*n].type = type;
	attrs[*n].pValue = (void *)value;
	attrs[*n].ulValueLen = (CK_ULONG)len;
	(*n)++;
}

static unsigned char *buf_new(struct bp11_template *t, size_t len)
{
	unsigned char *b;

	if (t->n_bufs == BP11_TEMPLATE_BUFS)
		return NULL;
	b = OPENSSL_zalloc(len > 0 ? len : 1);
	if (b == NULL)
		return NULL;
	t->bufs[t->n_bufs] = b;
	t->buf_lens[t->n_bufs] = len;
	t->n_bufs++;
	return b;
}

void bp11_template_release(struct bp11_template *t)
{
	unsigned i;

	for (i = 0; i < t->n_bufs; i++)
		OPENSSL_clear_free(t->bufs[i], t->buf_lens[i]);
	t->n_bufs = 0;
}

/* A big-endian copy of the key's number name, padded to pad bytes (0: its own length). */
static int bn_bytes(struct bp11_template *t, const EVP_PKEY *key, const char *name, size_t pad,
		    unsigned char **ret, size_t *ret_len)
{
	BIGNUM *bn = NULL;
	size_t len;
	int r = -1;

	if (!EVP_PKEY_get_bn_param(key, name, &bn))
		goto out;
	len = pad > 0 ? pad : (size_t)BN_num_bytes(bn);
	*ret = buf_new(t, len);
	if (*ret == NULL || BN_bn2binpad(bn, *ret, (int)len) < 0)
		goto out;
	*ret_len = len;
	r = 0;
out:
	BN_clear_free(bn);
	return r;
}

static const unsigned char oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
					  0x07 };
static const unsigned char oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const unsigned char oid_p521[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 };

static int rsa_template(struct bp11_template *t, const EVP_PKEY *key)
{
	static const struct {
		const char *param;
		CK_ATTRIBUTE_TYPE type;
	} numbers[] = {
		{ OSSL_PKEY_PARAM_RSA_D, CKA_PRIVATE_EXPONENT },
		{ OSSL_PKEY_PARAM_RSA_FACTOR1, CKA_PRIME_1 },
		{ OSSL_PKEY_PARAM_RSA_FACTOR2, CKA_PRIME_2 },
		{ OSSL_PKEY_PARAM_RSA_EXPONENT1, CKA_EXPONENT_1 },
		{ OSSL_PKEY_PARAM_RSA_EXPONENT2, CKA_EXPONENT_2 },
		{ OSSL_PKEY_PARAM_RSA_COEFFICIENT1, CKA_COEFFICIENT },
	};
	unsigned char *n, *e, *v;
	size_t n_len, e_len, v_len, i;

	t->type = CKK_RSA;
	if (bn_bytes(t, key, OSSL_PKEY_PARAM_RSA_N, 0, &n, &n_len) < 0 ||
	    bn_bytes(t, key, OSSL_PKEY_PARAM_RSA_E, 0, &e, &e_len) < 0)
		return -1;
	add(t->priv, &t->n_priv, CKA_MODULUS, n, n_len);
	add(t->priv, &t->n_priv, CKA_PUBLIC_EXPONENT, e, e_len);
	add(t->pub, &t->n_pub, CKA_MODULUS, n, n_len);
	add(t->pub, &t->n_pub, CKA_PUBLIC_EXPONENT, e, e_len);
	for (i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		if (bn_bytes(t, key, numbers[i].param, 0, &v, &v_len) < 0)
			return -1;
		add(t->priv, &t->n_priv, numbers[i].type, v, v_len);
	}
	return 0;
}

static int ec_template(struct bp11_template *t, const EVP_PKEY *key)
{
	unsigned char *d, *x, *y, *ec_point, point[1 + 2 * 66];
	const unsigned char *oid;
	size_t oid_len, field, d_len, x_len, y_len, plen, header;
	char group[64];
	int nid;

	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					    NULL))
		return -1;
	nid = OBJ_sn2nid(group);
	if (nid == NID_undef)
		nid = EC_curve_nist2nid(group);
	if (nid == NID_X9_62_prime256v1) {
		oid = oid_p256, oid_len = sizeof(oid_p256), field = 32;
	} else if (nid == NID_secp384r1) {
		oid = oid_p384, oid_len = sizeof(oid_p384), field = 48;
	} else if (nid == NID_secp521r1) {
		oid = oid_p521, oid_len = sizeof(oid_p521), field = 66;
	} else {
		return -1;
	}
	t->type = CKK_EC;
	if (bn_bytes(t, key, OSSL_PKEY_PARAM_PRIV_KEY, field, &d, &d_len) < 0 ||
	    bn_bytes(t, key, OSSL_PKEY_PARAM_EC_PUB_X, field, &x, &x_len) < 0 ||
	    bn_bytes(t, key, OSSL_PKEY_PARAM_EC_PUB_Y, field, &y, &y_len) < 0)
		return -1;
	point[0] = 0x04;
	memcpy(point + 1, x, x_len);
	memcpy(point + 1 + x_len, y, y_len);
	plen = 1 + x_len + y_len;
	header = plen < 0x80 ? 2 : 3;
	ec_point = buf_new(t, header + plen);
	if (ec_point == NULL)
		return -1;
	ec_point[0] = 0x04;
	if (header == 2) {
		ec_point[1] = (unsigned char)plen;
	} else {
		ec_point[1] = 0x81;
		ec_point[2] = (unsigned char)plen;
	}
	memcpy(ec_point + header, point, plen);
	add(t->priv, &t->n_priv, CKA_EC_PARAMS, oid, oid_len);
	add(t->priv, &t->n_priv, CKA_VALUE, d, d_len);
	add(t->pub, &t->n_pub, CKA_EC_PARAMS, oid, oid_len);
	add(t->pub, &t->n_pub, CKA_EC_POINT, ec_point, header + plen);
	return 0;
}

int bp11_template_build(struct bp11_template *t, const EVP_PKEY *key, const char *label,
			const uint8_t *id)
{
	int r;

	memset(t, 0, sizeof(*t));
	t->priv_class = CKO_PRIVATE_KEY;
	t->pub_class = CKO_PUBLIC_KEY;
	t->yes = CK_TRUE;
	t->no = CK_FALSE;
	memcpy(t->id, id, sizeof(t->id));
	snprintf(t->label, sizeof(t->label), "%s", label);
	if (EVP_PKEY_is_a(key, "RSA"))
		r = rsa_template(t, key);
	else if (EVP_PKEY_is_a(key, "EC"))
		r = ec_template(t, key);
	else
		r = -1;
	ERR_clear_error();
	if (r < 0) {
		bp11_template_release(t);
		return -1;
	}
	add(t->priv, &t->n_priv, CKA_CLASS, &t->priv_class, sizeof(t->priv_class));
	add(t->priv, &t->n_priv, CKA_KEY_TYPE, &t->type, sizeof(t->type));
	add(t->priv, &t->n_priv, CKA_TOKEN, &t->yes, sizeof(t->yes));
	add(t->priv, &t->n_priv, CKA_PRIVATE, &t->yes, sizeof(t->yes));
	add(t->priv, &t->n_priv, CKA_SENSITIVE, &t->yes, sizeof(t->yes));
	add(t->priv, &t->n_priv, CKA_EXTRACTABLE, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_SIGN, &t->yes, sizeof(t->yes));
	add(t->priv, &t->n_priv, CKA_DECRYPT, t->type == CKK_RSA ? &t->yes : &t->no,
	    sizeof(t->yes));
	add(t->priv, &t->n_priv, CKA_UNWRAP, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_DERIVE, &t->no, sizeof(t->no));
	add(t->priv, &t->n_priv, CKA_ID, t->id, sizeof(t->id));
	add(t->pub, &t->n_pub, CKA_CLASS, &t->pub_class, sizeof(t->pub_class));
	add(t->pub, &t->n_pub, CKA_KEY_TYPE, &t->type, sizeof(t->type));
	add(t->pub, &t->n_pub, CKA_TOKEN, &t->yes, sizeof(t->yes));
	add(t->pub, &t->n_pub, CKA_PRIVATE, &t->no, sizeof(t->no));
	add(t->pub, &t->n_pub, CKA_VERIFY, &t->yes, sizeof(t->yes));
	add(t->pub, &t->n_pub, CKA_ENCRYPT, t->type == CKK_RSA ? &t->yes : &t->no,
	    sizeof(t->yes));
	add(t->pub, &t->n_pub, CKA_WRAP, &t->no, sizeof(t->no));
	add(t->pub, &t->n_pub, CKA_DERIVE, &t->no, sizeof(t->no));
	add(t->pub, &t->n_pub, CKA_ID, t->id, sizeof(t->id));
	add(t->priv, &t->n_priv, CKA_LABEL, t->label, strlen(t->label));
	add(t->pub, &t->n_pub, CKA_LABEL, t->label, strlen(t->label));
	return 0;
}
