/* x509: the encodings a client pastes, and parsing certificates, chains and private keys. */
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "certvault/x509.h"

int cv_x509_encoding_parse(const char *s, enum cv_encoding *ret_enc)
{
	if (s == NULL || strcasecmp(s, "pem") == 0)
		*ret_enc = CV_ENC_PEM;
	else if (strcasecmp(s, "base64") == 0)
		*ret_enc = CV_ENC_BASE64;
	else if (strcasecmp(s, "base64pem") == 0)
		*ret_enc = CV_ENC_BASE64PEM;
	else
		return CV_ERR_BAD_REQUEST;
	return 0;
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int only_space(const char *text, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!is_space((unsigned char)text[i]))
			return 0;
	return 1;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes standard base64 with its padding; whitespace anywhere is ignored, anything else
 * outside the alphabet is refused. The output may be key material: the caller releases it
 * with OPENSSL_clear_free(). Returns 0, CV_ERR_NOMEM or CV_ERR_BAD_ENCODING. */
static int b64_decode(const char *in, size_t len, unsigned char **ret_out, size_t *ret_len)
{
	unsigned char *out;
	size_t i, n = 0, nsym = 0, npad = 0;
	uint32_t acc = 0;
	int r;

	out = OPENSSL_malloc(len / 4 * 3 + 3);
	if (out == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		int v;

		if (is_space(c))
			continue;
		if (c == '=') {
			npad++;
			continue;
		}
		v = b64_value(c);
		if (v < 0 || npad > 0) {
			r = CV_ERR_BAD_ENCODING;
			goto out;
		}
		acc = acc << 6 | (uint32_t)v;
		if (++nsym % 4 == 0) {
			out[n++] = (unsigned char)(acc >> 16);
			out[n++] = (unsigned char)(acc >> 8);
			out[n++] = (unsigned char)acc;
			acc = 0;
		}
	}
	if (npad > 2 || (nsym + npad) % 4 != 0) {
		r = CV_ERR_BAD_ENCODING;
		goto out;
	}
	if (nsym % 4 == 3) {
		acc <<= 6;
		out[n++] = (unsigned char)(acc >> 16);
		out[n++] = (unsigned char)(acc >> 8);
	} else if (nsym % 4 == 2) {
		acc <<= 12;
		out[n++] = (unsigned char)(acc >> 16);
	}
	*ret_out = out;
	*ret_len = n;
	out = NULL;
	r = 0;
out:
	OPENSSL_cleanse(&acc, sizeof(acc));
	OPENSSL_clear_free(out, len / 4 * 3 + 3);
	return r;
}

/* Whether bytes hold the start of a PEM block ("-----BEGIN "). */
static int has_pem_start(const char *bytes, size_t len)
{
	static const char tag[] = "-----BEGIN ";
	const char *p = bytes, *end = bytes + len;

	while ((size_t)(end - p) >= sizeof(tag) - 1) {
		p = memchr(p, '-', (size_t)(end - p) - (sizeof(tag) - 2));
		if (p == NULL)
			return 0;
		if (memcmp(p, tag, sizeof(tag) - 1) == 0)
			return 1;
		p++;
	}
	return 0;
}

/* What a client's text is once the outer base64 is gone: PEM text or DER bytes. */
struct material {
	const unsigned char *bytes;
	size_t len;
	int is_pem;
	unsigned char *owned; /* decoded base64, may be key bytes */
	size_t owned_len;
};

static void material_release(struct material *m)
{
	OPENSSL_clear_free(m->owned, m->owned_len);
	memset(m, 0, sizeof(*m));
}

static int material_load(struct material *m, const char *text, size_t len, enum cv_encoding enc,
			 const char *what, struct cv_errmsg *err)
{
	int r;

	memset(m, 0, sizeof(*m));
	if (text == NULL && len > 0)
		return CV_ERR_INTERNAL;
	if (len > INT_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the %s is too large", what);
	switch (enc) {
	case CV_ENC_PEM:
		m->bytes = (const unsigned char *)text;
		m->len = len;
		m->is_pem = 1;
		return 0;
	case CV_ENC_BASE64:
	case CV_ENC_BASE64PEM:
		r = b64_decode(text, len, &m->owned, &m->owned_len);
		if (r == CV_ERR_BAD_ENCODING)
			return cv_errmsg_set(err, r, "the %s is not valid base64", what);
		if (r < 0)
			return r;
		m->bytes = m->owned;
		m->len = m->owned_len;
		m->is_pem = enc == CV_ENC_BASE64PEM;
		return 0;
	case CV_ENC_FILE:
		m->bytes = (const unsigned char *)text;
		m->len = len;
		m->is_pem = has_pem_start(text, len);
		return 0;
	}
	return CV_ERR_INTERNAL;
}

/* One block of PEM text, in buffers that are wiped when released. */
struct pem_block {
	char *name;
	char *header;
	unsigned char *data;
	long len;
};

static void pem_block_release(struct pem_block *b)
{
	OPENSSL_secure_free(b->name);
	OPENSSL_secure_free(b->header);
	OPENSSL_secure_clear_free(b->data, b->data != NULL ? (size_t)b->len : 0);
	memset(b, 0, sizeof(*b));
}

/* Reads the next PEM block, skipping text between blocks. Returns 1 with a block, 0 at the
 * end, CV_ERR_BAD_ENCODING for a block that is cut off or whose base64 is broken. */
static int pem_next(BIO *bio, struct pem_block *b)
{
	unsigned long e;

	memset(b, 0, sizeof(*b));
	if (PEM_read_bio_ex(bio, &b->name, &b->header, &b->data, &b->len,
			    PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE) == 1)
		return 1;
	e = ERR_peek_last_error();
	ERR_clear_error();
	if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
		return 0;
	return CV_ERR_BAD_ENCODING;
}

static int is_cert_block(const char *name)
{
	return strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0;
}

/* Appends the certificates of m to certs, in order; stops with an error past max. */
/* What a PEM block's name says the key is; DER gives no hint. */
enum key_form {
	FORM_ANY,        /* DER: tried as each of the below */
	FORM_PKCS8,      /* PRIVATE KEY */
	FORM_PKCS8_ENC,  /* ENCRYPTED PRIVATE KEY */
	FORM_RSA,        /* RSA PRIVATE KEY (PKCS#1) */
	FORM_EC,         /* EC PRIVATE KEY (SEC1) */
	FORM_OTHER,      /* DSA PRIVATE KEY and the like: decoded so the check can name them */
};

static int key_form_of(const char *name, enum key_form *ret_form);

static int read_certs(const struct material *m, STACK_OF(X509) *certs, int max,
		      const char *what, int *ret_keys, struct cv_errmsg *err)
{
	enum key_form form;
	struct pem_block b = { 0 };
	BIO *bio = NULL;
	X509 *x = NULL;
	const unsigned char *p = m->bytes, *end = m->bytes + m->len;
	int r;

	while (!m->is_pem && p < end) {
		x = d2i_X509(NULL, &p, (long)(end - p));
		if (x == NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "the %s is not a DER X.509 certificate", what);
			goto out;
		}
		if (sk_X509_num(certs) >= max) {
			r = CV_ERR_TOO_LARGE;
			goto out;
		}
		if (sk_X509_push(certs, x) <= 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		x = NULL;
	}
	if (!m->is_pem) {
		r = 0;
		goto out;
	}
	bio = BIO_new_mem_buf(m->bytes, (int)m->len);
	if (bio == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	while ((r = pem_next(bio, &b)) == 1) {
		if (ret_keys != NULL && key_form_of(b.name, &form)) {
			/* A bundle: the key is read on its own. */
			(*ret_keys)++;
			pem_block_release(&b);
			continue;
		}
		if (!is_cert_block(b.name)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "the %s holds a \"%.40s\" PEM block, only CERTIFICATE "
					  "blocks are taken", what, b.name);
			goto out;
		}
		p = b.data;
		x = d2i_X509(NULL, &p, b.len);
		if (x == NULL || p != b.data + b.len) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "the %s's CERTIFICATE block is not a valid X.509 "
					  "certificate", what);
			goto out;
		}
		if (sk_X509_num(certs) >= max) {
			r = CV_ERR_TOO_LARGE;
			goto out;
		}
		if (sk_X509_push(certs, x) <= 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		x = NULL;
		pem_block_release(&b);
	}
	if (r < 0)
		r = cv_errmsg_set(err, r, "the %s holds a broken PEM block (cut off, or not "
				  "base64 inside)", what);
out:
	pem_block_release(&b);
	X509_free(x);
	BIO_free(bio);
	return r;
}

int cv_x509_cert_parse(const char *text, size_t len, enum cv_encoding enc, X509 **ret_cert,
		       struct cv_errmsg *err)
{
	struct material m = { 0 };
	STACK_OF(X509) *certs = NULL;
	int r;

	r = material_load(&m, text, len, enc, "certificate", err);
	if (r < 0)
		goto out;
	if (only_space((const char *)m.bytes, m.len)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the certificate is empty");
		goto out;
	}
	certs = sk_X509_new_null();
	if (certs == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = read_certs(&m, certs, 1, "certificate", NULL, err);
	if (r == CV_ERR_TOO_LARGE)
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "the certificate field holds more than one certificate: "
				  "put the others in the chain");
	if (r < 0)
		goto out;
	if (sk_X509_num(certs) != 1) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "no certificate found: expected a -----BEGIN CERTIFICATE----- "
				  "block");
		goto out;
	}
	*ret_cert = sk_X509_pop(certs);
	r = 0;
out:
	sk_X509_pop_free(certs, X509_free);
	material_release(&m);
	ERR_clear_error();
	return r;
}

int cv_x509_chain_parse(const char *text, size_t len, enum cv_encoding enc,
			STACK_OF(X509) **ret_chain, struct cv_errmsg *err)
{
	struct material m = { 0 };
	STACK_OF(X509) *certs = NULL;
	int r;

	certs = sk_X509_new_null();
	if (certs == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (text == NULL || only_space(text, len))
		goto done;
	r = material_load(&m, text, len, enc, "chain", err);
	if (r < 0)
		goto out;
	if (only_space((const char *)m.bytes, m.len))
		goto done;
	r = read_certs(&m, certs, CV_X509_MAX_CHAIN, "chain", NULL, err);
	if (r == CV_ERR_TOO_LARGE)
		r = cv_errmsg_set(err, CV_ERR_BAD_CHAIN,
				  "the chain holds more than %d certificates", CV_X509_MAX_CHAIN);
	if (r < 0)
		goto out;
	if (sk_X509_num(certs) == 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "no certificate found in the chain: expected -----BEGIN "
				  "CERTIFICATE----- blocks");
		goto out;
	}
done:
	*ret_chain = certs;
	certs = NULL;
	r = 0;
out:
	sk_X509_pop_free(certs, X509_free);
	material_release(&m);
	ERR_clear_error();
	return r;
}


/* A key of type from der, only if der holds exactly that structure. */
static EVP_PKEY *d2i_whole(int type, const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY *pk;

	if (type == EVP_PKEY_NONE)
		pk = d2i_AutoPrivateKey(NULL, &p, (long)len);
	else
		pk = d2i_PrivateKey(type, NULL, &p, (long)len);
	if (pk != NULL && p != der + len) {
		EVP_PKEY_free(pk);
		pk = NULL;
	}
	return pk;
}

static EVP_PKEY *pkcs8_whole(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	PKCS8_PRIV_KEY_INFO *p8;
	EVP_PKEY *pk = NULL;

	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
	if (p8 != NULL && p == der + len)
		pk = EVP_PKCS82PKEY(p8);
	PKCS8_PRIV_KEY_INFO_free(p8); /* wipes the key bytes it held */
	return pk;
}

static int password_missing(const char *password)
{
	return password == NULL || password[0] == '\0';
}

static int pkcs8_decrypt(const X509_SIG *sig, const char *password, EVP_PKEY **ret_key,
			 struct cv_errmsg *err)
{
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	const X509_ALGOR *alg = NULL;
	EVP_PKEY *pk = NULL;
	size_t plen;
	long cost;
	int r;

	/* The key names its own iteration count or scrypt parameters: judged before a
	 * password is even looked at, so a costly key is refused the same fast way. */
	X509_SIG_get0(sig, &alg, NULL);
	r = cv_x509_kdf_cost(alg, "the encrypted key", &cost, err);
	if (r < 0)
		goto out;
	if (password_missing(password)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_PASSWORD, "the key is encrypted: a password is "
				  "needed");
		goto out;
	}
	plen = strlen(password);
	if (plen > INT_MAX) {
		r = cv_errmsg_set(err, CV_ERR_BAD_PASSWORD,
				  "incorrect password for the encrypted key");
		goto out;
	}
	p8 = PKCS8_decrypt(sig, password, (int)plen);
	if (p8 == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_PASSWORD,
				  "incorrect password for the encrypted key");
		goto out;
	}
	pk = EVP_PKCS82PKEY(p8);
	if (pk == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the decrypted private key's algorithm "
				  "is not recognised");
		goto out;
	}
	*ret_key = pk;
	pk = NULL;
	r = 0;
out:
	PKCS8_PRIV_KEY_INFO_free(p8);
	EVP_PKEY_free(pk);
	return r;
}

/* Decodes one private key from DER in the given form. */
static int key_from_der(const unsigned char *der, size_t len, enum key_form form,
			const char *password, EVP_PKEY **ret_key, struct cv_errmsg *err)
{
	const unsigned char *p = der;
	X509_SIG *sig = NULL;
	EVP_PKEY *pk = NULL;
	int r;

	if (len > LONG_MAX || len == 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the private key is empty");
		goto out;
	}
	if (form == FORM_ANY || form == FORM_PKCS8_ENC) {
		sig = d2i_X509_SIG(NULL, &p, (long)len);
		if (sig != NULL && p == der + len) {
			r = pkcs8_decrypt(sig, password, ret_key, err);
			goto out;
		}
	}
	if (form == FORM_ANY || form == FORM_PKCS8)
		pk = pkcs8_whole(der, len);
	if (pk == NULL && (form == FORM_ANY || form == FORM_RSA))
		pk = d2i_whole(EVP_PKEY_RSA, der, len);
	if (pk == NULL && (form == FORM_ANY || form == FORM_EC))
		pk = d2i_whole(EVP_PKEY_EC, der, len);
	if (pk == NULL && form == FORM_OTHER)
		pk = d2i_whole(EVP_PKEY_NONE, der, len);
	if (pk == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the private key could not be decoded "
				  "as PKCS#8, PKCS#1 (RSA) or SEC1 (EC)");
		goto out;
	}
	*ret_key = pk;
	pk = NULL;
	r = 0;
out:
	X509_SIG_free(sig);
	EVP_PKEY_free(pk);
	return r;
}

static int password_cb(char *buf, int size, int rwflag, void *u)
{
	const char *password = u;
	size_t n = strlen(password);

	(void)rwflag;
	if (size < 0 || n > (size_t)size)
		return -1;
	memcpy(buf, password, n);
	return (int)n;
}

/* A traditional PEM key with "Proc-Type: 4,ENCRYPTED" headers: decrypts b->data in place.
 * Returns 1 when it was encrypted (and now is not), 0 when it was not, or an error. */
static int pem_legacy_decrypt(struct pem_block *b, const char *password, struct cv_errmsg *err)
{
	EVP_CIPHER_INFO cipher;

	if (b->header == NULL || b->header[0] == '\0')
		return 0;
	if (PEM_get_EVP_CIPHER_INFO(b->header, &cipher) != 1)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the private key's PEM headers "
				     "cannot be read");
	if (cipher.cipher == NULL)
		return 0;
	if (password_missing(password))
		return cv_errmsg_set(err, CV_ERR_BAD_PASSWORD, "the key is encrypted: a password "
				     "is needed");
	if (PEM_do_header(&cipher, b->data, &b->len, password_cb, (void *)password) != 1)
		return cv_errmsg_set(err, CV_ERR_BAD_PASSWORD, "incorrect password for the "
				     "encrypted key");
	return 1;
}

static int key_form_of(const char *name, enum key_form *ret_form)
{
	size_t n = strlen(name), suffix = strlen(" PRIVATE KEY");

	if (strcmp(name, PEM_STRING_PKCS8INF) == 0)
		*ret_form = FORM_PKCS8;
	else if (strcmp(name, PEM_STRING_PKCS8) == 0)
		*ret_form = FORM_PKCS8_ENC;
	else if (strcmp(name, PEM_STRING_RSA) == 0)
		*ret_form = FORM_RSA;
	else if (strcmp(name, PEM_STRING_ECPRIVATEKEY) == 0)
		*ret_form = FORM_EC;
	else if (n > suffix && strcmp(name + n - suffix, " PRIVATE KEY") == 0)
		*ret_form = FORM_OTHER;
	else
		return 0;
	return 1;
}

/* The one private key among the PEM blocks of m; other blocks (a certificate, EC PARAMETERS)
 * are skipped. */
static int key_from_pem(const struct material *m, const char *password, EVP_PKEY **ret_key,
			struct cv_errmsg *err)
{
	struct pem_block b = { 0 };
	EVP_PKEY *pk = NULL;
	BIO *bio = NULL;
	enum key_form form;
	int r, encrypted;

	bio = BIO_new_mem_buf(m->bytes, (int)m->len);
	if (bio == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	while ((r = pem_next(bio, &b)) == 1) {
		if (!key_form_of(b.name, &form)) {
			pem_block_release(&b);
			continue;
		}
		if (pk != NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "the private key field holds more than one key");
			goto out;
		}
		if (strcmp(b.name, "OPENSSH PRIVATE KEY") == 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "OpenSSH private keys are not taken: convert the key to "
					  "PKCS#8 PEM");
			goto out;
		}
		r = encrypted = pem_legacy_decrypt(&b, password, err);
		if (r < 0)
			goto out;
		r = key_from_der(b.data, (size_t)b.len, form, password, &pk, err);
		if (r == CV_ERR_BAD_ENCODING && encrypted)
			r = cv_errmsg_set(err, CV_ERR_BAD_PASSWORD,
					  "incorrect password for the encrypted key");
		if (r < 0)
			goto out;
		pem_block_release(&b);
	}
	if (r < 0) {
		r = cv_errmsg_set(err, r, "the private key holds a broken PEM block (cut off, or "
				  "not base64 inside)");
		goto out;
	}
	if (pk == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "no private key found: expected a -----BEGIN PRIVATE KEY----- "
				  "block");
		goto out;
	}
	*ret_key = pk;
	pk = NULL;
	r = 0;
out:
	pem_block_release(&b);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	return r;
}

int cv_x509_key_parse(const char *text, size_t len, enum cv_encoding enc, const char *password,
		      EVP_PKEY **ret_key, struct cv_errmsg *err)
{
	struct material m = { 0 };
	int r;

	r = material_load(&m, text, len, enc, "private key", err);
	if (r < 0)
		goto out;
	if (only_space((const char *)m.bytes, m.len)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the private key is empty");
		goto out;
	}
	if (m.is_pem)
		r = key_from_pem(&m, password, ret_key, err);
	else
		r = key_from_der(m.bytes, m.len, FORM_ANY, password, ret_key, err);
out:
	material_release(&m);
	ERR_clear_error();
	return r;
}

int cv_x509_cert_from_der(const unsigned char *der, size_t len, X509 **ret_cert)
{
	const unsigned char *p = der;
	X509 *x = NULL;
	int r;

	if (der == NULL || len == 0 || len > LONG_MAX) {
		r = CV_ERR_BAD_ENCODING;
		goto out;
	}
	x = d2i_X509(NULL, &p, (long)len);
	if (x == NULL || p != der + len) {
		r = CV_ERR_BAD_ENCODING;
		goto out;
	}
	*ret_cert = x;
	x = NULL;
	r = 0;
out:
	X509_free(x);
	ERR_clear_error();
	return r;
}

int cv_x509_pkcs12_parse_text(const char *text, size_t len, enum cv_encoding enc,
			      const char *password, X509 **ret_cert, EVP_PKEY **ret_key,
			      STACK_OF(X509) **ret_chain, struct cv_errmsg *err)
{
	struct material m = { 0 };
	int r;

	if (enc != CV_ENC_BASE64 && enc != CV_ENC_FILE)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a PKCS#12 file is sent as base64");
	r = material_load(&m, text, len, enc, "PKCS#12 file", err);
	if (r == 0 && enc == CV_ENC_FILE && m.is_pem)
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the PKCS#12 file is PEM text, not "
				  "PKCS#12");
	if (r == 0)
		r = cv_x509_pkcs12_parse(m.bytes, m.len, password, ret_cert, ret_key, ret_chain,
					 err);
	material_release(&m);
	return r;
}

/* The PEM bundle of m: its certificates, and its one key if it has any. */
static int bundle_from_pem(const struct material *m, const char *password, X509 **ret_cert,
			   EVP_PKEY **ret_key, STACK_OF(X509) **ret_chain, struct cv_errmsg *err)
{
	STACK_OF(X509) *certs = NULL;
	EVP_PKEY *pk = NULL;
	X509 *leaf = NULL;
	int r, keys = 0, i;

	certs = sk_X509_new_null();
	if (certs == NULL)
		return CV_ERR_NOMEM;
	r = read_certs(m, certs, CV_X509_MAX_CHAIN + 1, "file", &keys, err);
	if (r == CV_ERR_TOO_LARGE)
		r = cv_errmsg_set(err, CV_ERR_BAD_CHAIN, "the file holds more than %d "
				  "certificates", CV_X509_MAX_CHAIN + 1);
	if (r < 0)
		goto out;
	if (sk_X509_num(certs) == 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "no certificate found in the file: "
				  "expected a -----BEGIN CERTIFICATE----- block");
		goto out;
	}
	if (keys > 1) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the file holds more than one private "
				  "key");
		goto out;
	}
	if (keys == 1 && (r = key_from_pem(m, password, &pk, err)) < 0)
		goto out;
	/* The leaf is the certificate of the key; without a key, the first. */
	for (i = 0; pk != NULL && i < sk_X509_num(certs); i++)
		if (X509_check_private_key(sk_X509_value(certs, i), pk) == 1)
			break;
	ERR_clear_error();
	if (pk == NULL || i == sk_X509_num(certs))
		i = 0;
	leaf = sk_X509_delete(certs, i);
	*ret_cert = leaf;
	*ret_key = pk;
	*ret_chain = certs;
	pk = NULL;
	certs = NULL;
	r = 0;
out:
	EVP_PKEY_free(pk);
	sk_X509_pop_free(certs, X509_free);
	return r;
}

int cv_x509_bundle_parse(const char *text, size_t len, enum cv_encoding enc,
			 const char *password, X509 **ret_cert, EVP_PKEY **ret_key,
			 STACK_OF(X509) **ret_chain, struct cv_errmsg *err)
{
	struct material m = { 0 };
	const unsigned char *p;
	X509 *x = NULL;
	int r;

	*ret_key = NULL;
	r = material_load(&m, text, len, enc, "file", err);
	if (r < 0)
		goto out;
	if (only_space((const char *)m.bytes, m.len)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the file is empty");
		goto out;
	}
	if (m.is_pem) {
		r = bundle_from_pem(&m, password, ret_cert, ret_key, ret_chain, err);
		goto out;
	}
	/* DER: one certificate, or else a PKCS#12 file. */
	p = m.bytes;
	x = m.len <= LONG_MAX ? d2i_X509(NULL, &p, (long)m.len) : NULL;
	if (x != NULL && p == m.bytes + m.len) {
		*ret_chain = sk_X509_new_null();
		if (*ret_chain == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		*ret_cert = x;
		x = NULL;
		r = 0;
		goto out;
	}
	ERR_clear_error();
	r = cv_x509_pkcs12_parse(m.bytes, m.len, password, ret_cert, ret_key, ret_chain, err);
	if (r == CV_ERR_BAD_ENCODING && strstr(err != NULL ? err->text : "", "not a PKCS#12 file"))
		r = cv_errmsg_set(err, r, "the file is neither PEM, a DER certificate nor a "
				  "PKCS#12 file");
out:
	X509_free(x);
	material_release(&m);
	ERR_clear_error();
	return r;
}

int cv_x509_crl_parse(const char *text, size_t len, enum cv_encoding enc, X509_CRL **ret_crl,
		      struct cv_errmsg *err)
{
	struct material m = { 0 };
	struct pem_block b = { 0 };
	X509_CRL *crl = NULL;
	BIO *bio = NULL;
	const unsigned char *p;
	int r;

	if (len > CV_X509_CRL_MAX * 2)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the CRL is larger than %d bytes",
				     CV_X509_CRL_MAX);
	r = material_load(&m, text, len, enc, "CRL", err);
	if (r < 0)
		goto out;
	if (only_space((const char *)m.bytes, m.len)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the CRL is empty");
		goto out;
	}
	if (!m.is_pem) {
		p = m.bytes;
		crl = d2i_X509_CRL(NULL, &p, (long)m.len);
		if (crl == NULL || p != m.bytes + m.len) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the CRL is not one DER X.509 CRL");
			goto out;
		}
		r = 0;
		goto out;
	}
	bio = BIO_new_mem_buf(m.bytes, (int)m.len);
	if (bio == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	while ((r = pem_next(bio, &b)) == 1) {
		if (strcmp(b.name, PEM_STRING_X509_CRL) != 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "the CRL holds a \"%.40s\" PEM block, only one X509 CRL "
					  "block is taken", b.name);
			goto out;
		}
		if (crl != NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "the text holds more than one CRL: add them one by one");
			goto out;
		}
		p = b.data;
		crl = d2i_X509_CRL(NULL, &p, b.len);
		if (crl == NULL || p != b.data + b.len) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "the X509 CRL block is not a valid CRL");
			goto out;
		}
		pem_block_release(&b);
	}
	if (r < 0) {
		r = cv_errmsg_set(err, r, "the CRL holds a broken PEM block (cut off, or not "
				  "base64 inside)");
		goto out;
	}
	if (crl == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "no X509 CRL PEM block was found");
		goto out;
	}
	r = 0;
out:
	if (r == 0) {
		*ret_crl = crl;
		crl = NULL;
	}
	ERR_clear_error();
	pem_block_release(&b);
	BIO_free(bio);
	X509_CRL_free(crl);
	material_release(&m);
	return r;
}
