/* cv-p11put: puts key objects with a given CKA_ID and CKA_LABEL into a token, made as
 * certvault makes them (tests/bench/p11.c's templates), and the audit chain's HMAC key with
 * a known value. The upgrade tests rebuild, in a fresh token, the keys a frozen database
 * names; the frozen databases are made with a known audit key so their keyed chains can be
 * verified later. A test tool: the values it is given are test keys, never real ones.
 *
 *   cv-p11put MODULE TOKEN_LABEL PIN_FILE key KEY.pem ID_HEX LABEL
 *   cv-p11put MODULE TOKEN_LABEL PIN_FILE secret VALUE_HEX LABEL */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>

#include "p11.h"

static int hex_decode(const char *hex, unsigned char *out, size_t size, size_t *ret_len)
{
	long len = 0;
	unsigned char *buf = OPENSSL_hexstr2buf(hex, &len);

	if (buf == NULL || (size_t)len > size) {
		OPENSSL_free(buf);
		return -1;
	}
	memcpy(out, buf, (size_t)len);
	*ret_len = (size_t)len;
	OPENSSL_free(buf);
	return 0;
}

static int put_key(struct bp11 *p, CK_SESSION_HANDLE s, const char *pem, const char *id_hex,
		   const char *label)
{
	struct bp11_template t;
	unsigned char id[16];
	size_t id_len = 0;
	CK_OBJECT_HANDLE h;
	EVP_PKEY *key = NULL;
	FILE *f;
	CK_RV rv;
	int r = -1;

	memset(&t, 0, sizeof(t));
	if (hex_decode(id_hex, id, sizeof(id), &id_len) < 0 || id_len != sizeof(id)) {
		fprintf(stderr, "cv-p11put: the id must be 16 bytes in hex\n");
		return -1;
	}
	f = fopen(pem, "r");
	if (f == NULL) {
		perror(pem);
		return -1;
	}
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (key == NULL) {
		fprintf(stderr, "cv-p11put: %s: not a PEM private key\n", pem);
		return -1;
	}
	if (bp11_template_build(&t, key, label, id) < 0)
		goto out;
	rv = p->f->C_CreateObject(s, t.priv, t.n_priv, &h);
	if (rv == CKR_OK)
		rv = p->f->C_CreateObject(s, t.pub, t.n_pub, &h);
	if (rv != CKR_OK) {
		fprintf(stderr, "cv-p11put: C_CreateObject: %s\n", bp11_rv_name(rv));
		goto out;
	}
	r = 0;
out:
	bp11_template_release(&t);
	EVP_PKEY_free(key);
	return r;
}

/* The attributes src/token/secret.c generates its HMAC key with, and the value given. */
static int put_secret(struct bp11 *p, CK_SESSION_HANDLE s, const char *value_hex,
		      const char *label)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	unsigned char value[64], id[16] = { 0 };
	size_t len = 0;
	CK_OBJECT_HANDLE h;
	CK_RV rv;

	if (hex_decode(value_hex, value, sizeof(value), &len) < 0 || len < 32) {
		fprintf(stderr, "cv-p11put: the secret must be 32 to 64 bytes in hex\n");
		return -1;
	}
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_VALUE, value, len },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, id, sizeof(id) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
	};
	rv = p->f->C_CreateObject(s, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
	OPENSSL_cleanse(value, sizeof(value));
	if (rv != CKR_OK) {
		fprintf(stderr, "cv-p11put: C_CreateObject (secret): %s\n", bp11_rv_name(rv));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bp11 p;
	CK_SESSION_HANDLE s;
	int r = -1;

	if (argc < 5 || (strcmp(argv[4], "key") == 0 && argc != 8) ||
	    (strcmp(argv[4], "secret") == 0 && argc != 7)) {
		fprintf(stderr, "usage: cv-p11put MODULE TOKEN PIN_FILE key KEY.pem ID_HEX LABEL\n"
				"       cv-p11put MODULE TOKEN PIN_FILE secret VALUE_HEX LABEL\n");
		return 2;
	}
	if (bp11_open(&p, argv[1], argv[2]) < 0)
		return 1;
	if (bp11_session(&p, argv[3], &s) == 0) {
		if (strcmp(argv[4], "key") == 0)
			r = put_key(&p, s, argv[5], argv[6], argv[7]);
		else if (strcmp(argv[4], "secret") == 0)
			r = put_secret(&p, s, argv[5], argv[6]);
		p.f->C_CloseSession(s);
	}
	bp11_close(&p);
	return r == 0 ? 0 : 1;
}
