/* x509: PKCS#12 files — the key, certificate and chain a client uploads, and the truststore
 * certvault exports for Java.
 *
 * Legacy algorithms. OpenSSL 3 moved RC2, RC4 and single DES to its "legacy" provider, which
 * the default library context does not load; `openssl pkcs12 -export -legacy`, Java before
 * 8u301 and older Windows encrypt the certificates of a PKCS#12 file with RC2-40. Such files
 * are read: when a decryption fails in the default context, it is tried once more in a
 * library context of this parse's own that holds the default and legacy providers, freed
 * when the parse ends. Nothing else in the process ever sees the legacy algorithms, and a
 * file made with modern algorithms never loads them. Without the legacy provider on the
 * machine such a file is refused with a message that says so. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "certvault/x509.h"

/* What one file may make certvault do: at most this many safe bags, safe contents nested
 * this deep, and CV_X509_MAX_KDF_COST of key derivation in all (the MAC, each encrypted
 * safe, the key, retries included), the same rule as for an encrypted PKCS#8 key. */
#define P12_MAX_BAGS 64
#define P12_MAX_DEPTH 4

/* The truststore export: Java 17's own default iterations for PKCS#12, 128-bit salts. */
#define TRUSTSTORE_ITERATIONS 10000
#define TRUSTSTORE_SALT_LEN 16
/* Java's trusted-key-usage attribute (Oracle arc): present on a certificate bag, it makes
 * the certificate a trustedCertEntry for the listed usages. OpenSSL 3.0 has no NID for it. */
#define JAVA_TRUSTED_KEY_USAGE_OID "2.16.840.1.113894.746875.1.1"

/* One parse of one file. */
struct p12_parse {
	const char *pass;           /* the password the MAC verified (NULL: none at all) */
	int passlen;
	int mac_verified;
	long budget;                /* key-derivation rounds left (cv_x509_kdf_cost) */
	OSSL_LIB_CTX *legacy;       /* made on the first decryption that fails */
	OSSL_PROVIDER *legacy_default, *legacy_legacy;
	int legacy_unavailable;
	int n_bags;
	int n_keys;
	EVP_PKEY *key;              /* the key of a plain key bag */
	X509_SIG *shrouded;         /* or the encrypted key of a shrouded key bag */
	STACK_OF(X509) *certs;      /* every X.509 certificate bag, in the file's order */
};

static void p12_parse_release(struct p12_parse *p)
{
	OSSL_PROVIDER_unload(p->legacy_legacy);
	OSSL_PROVIDER_unload(p->legacy_default);
	OSSL_LIB_CTX_free(p->legacy);
	EVP_PKEY_free(p->key);
	X509_SIG_free(p->shrouded);
	sk_X509_pop_free(p->certs, X509_free);
	memset(p, 0, sizeof(*p));
}

/* The library context with the legacy provider, or NULL when it cannot be loaded. */
static OSSL_LIB_CTX *legacy_ctx(struct p12_parse *p)
{
	if (p->legacy != NULL || p->legacy_unavailable)
		return p->legacy;
	p->legacy = OSSL_LIB_CTX_new();
	if (p->legacy != NULL) {
		p->legacy_default = OSSL_PROVIDER_load(p->legacy, "default");
		p->legacy_legacy = OSSL_PROVIDER_load(p->legacy, "legacy");
	}
	if (p->legacy == NULL || p->legacy_default == NULL || p->legacy_legacy == NULL) {
		OSSL_PROVIDER_unload(p->legacy_legacy);
		OSSL_PROVIDER_unload(p->legacy_default);
		OSSL_LIB_CTX_free(p->legacy);
		p->legacy = NULL;
		p->legacy_default = p->legacy_legacy = NULL;
		p->legacy_unavailable = 1;
	}
	return p->legacy;
}

/* Spends cost of the file's budget, or refuses before the work is done. */
static int charge(struct p12_parse *p, long cost, struct cv_errmsg *err)
{
	if (cost > p->budget)
		return cv_errmsg_set(err, CV_ERR_LIMIT,
				     "the PKCS#12 file asks for more than %ld rounds of password "
				     "hashing in all (as many PBKDF2-HMAC-SHA256 iterations): export "
				     "it with fewer iterations", CV_X509_MAX_KDF_COST);
	p->budget -= cost;
	return 0;
}

static int decrypt_failed(const struct p12_parse *p, const char *what, struct cv_errmsg *err)
{
	if (!p->mac_verified)
		return cv_errmsg_set(err, CV_ERR_BAD_PASSWORD,
				     "the PKCS#12 file's %s could not be decrypted: incorrect "
				     "password (the file has no MAC to check it first)", what);
	if (p->legacy_unavailable)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				     "the PKCS#12 file's %s could not be decrypted: a legacy "
				     "algorithm (RC2, as openssl -legacy and old Java or Windows "
				     "write) needs OpenSSL's legacy provider, not installed here; "
				     "re-export with AES", what);
	return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
			     "the PKCS#12 file's %s could not be decrypted: an unsupported "
			     "algorithm, or a damaged file", what);
}

/* The bags of an encrypted safe: decrypted in the default context, else with the legacy
 * provider. */
static int decrypt_safe(struct p12_parse *p, const PKCS7 *p7,
			STACK_OF(PKCS12_SAFEBAG) **ret_bags, struct cv_errmsg *err)
{
	const PKCS7_ENC_CONTENT *enc;
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	OSSL_LIB_CTX *ctx = NULL;
	long cost;
	int attempt, r;

	if (p7->d.encrypted == NULL || p7->d.encrypted->enc_data == NULL ||
	    p7->d.encrypted->enc_data->enc_data == NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				     "the PKCS#12 file holds an encrypted safe without content");
	enc = p7->d.encrypted->enc_data;
	r = cv_x509_kdf_cost(enc->algorithm, "the PKCS#12 file's encrypted certificates", &cost,
			     err);
	if (r < 0)
		return r;
	for (attempt = 0; attempt < 2 && bags == NULL; attempt++) {
		if (attempt == 1 && (ctx = legacy_ctx(p)) == NULL)
			break;
		r = charge(p, cost, err);
		if (r < 0)
			return r;
		bags = PKCS12_item_decrypt_d2i_ex(enc->algorithm, ASN1_ITEM_rptr(PKCS12_SAFEBAGS),
						  p->pass, p->passlen, enc->enc_data, 1, ctx,
						  NULL);
	}
	if (bags == NULL)
		return decrypt_failed(p, "certificates", err);
	*ret_bags = bags;
	return 0;
}

/* Notes a key bag; a shrouded key is decrypted once the whole file has been walked, so that
 * a file with two keys is refused before either is decrypted. */
static int take_key(struct p12_parse *p, const PKCS12_SAFEBAG *bag, struct cv_errmsg *err)
{
	if (++p->n_keys > 1)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				     "the PKCS#12 file holds more than one private key: export "
				     "it with only the key of the certificate to import");
	if (PKCS12_SAFEBAG_get_nid(bag) == NID_keyBag) {
		/* Decoded at once: its bag, wiped when freed, is the only copy of the bytes. */
		if (PKCS12_SAFEBAG_get0_p8inf(bag) == NULL ||
		    (p->key = EVP_PKCS82PKEY(PKCS12_SAFEBAG_get0_p8inf(bag))) == NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					     "the PKCS#12 file's private key cannot be decoded (an "
					     "unknown key algorithm, or a damaged key)");
	} else {
		if (PKCS12_SAFEBAG_get0_pkcs8(bag) == NULL ||
		    (p->shrouded = ASN1_item_dup(ASN1_ITEM_rptr(X509_SIG),
						 PKCS12_SAFEBAG_get0_pkcs8(bag))) == NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					     "the PKCS#12 file's encrypted key bag cannot be read");
	}
	return 0;
}

static int take_cert(struct p12_parse *p, const PKCS12_SAFEBAG *bag, struct cv_errmsg *err)
{
	X509 *x;

	/* Only X.509 certificate bags count; SDSI ones are nothing certvault reads. */
	if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate)
		return 0;
	if (sk_X509_num(p->certs) > CV_X509_MAX_CHAIN)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				     "the PKCS#12 file holds more than %d certificates (the "
				     "certificate and a chain of at most %d)", CV_X509_MAX_CHAIN + 1,
				     CV_X509_MAX_CHAIN);
	x = PKCS12_SAFEBAG_get1_cert(bag);
	if (x == NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				     "a certificate in the PKCS#12 file is not a valid X.509 "
				     "certificate");
	if (sk_X509_push(p->certs, x) <= 0) {
		X509_free(x);
		return CV_ERR_NOMEM;
	}
	return 0;
}

static int walk_bags(struct p12_parse *p, const STACK_OF(PKCS12_SAFEBAG) *bags, int depth,
		     struct cv_errmsg *err)
{
	const PKCS12_SAFEBAG *bag;
	int i, r;

	for (i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
		bag = sk_PKCS12_SAFEBAG_value(bags, i);
		if (++p->n_bags > P12_MAX_BAGS)
			return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					     "the PKCS#12 file holds more than %d bags",
					     P12_MAX_BAGS);
		switch (PKCS12_SAFEBAG_get_nid(bag)) {
		case NID_keyBag:
		case NID_pkcs8ShroudedKeyBag:
			r = take_key(p, bag, err);
			break;
		case NID_certBag:
			r = take_cert(p, bag, err);
			break;
		case NID_safeContentsBag:
			if (depth + 1 >= P12_MAX_DEPTH)
				return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
						     "the PKCS#12 file nests safe contents more "
						     "than %d deep", P12_MAX_DEPTH);
			r = walk_bags(p, PKCS12_SAFEBAG_get0_safes(bag), depth + 1, err);
			break;
		default:
			/* CRL and secret bags carry nothing an import uses. */
			r = 0;
			break;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* Every safe of the file: plain ones read as they are, encrypted ones decrypted. */
static int walk_safes(struct p12_parse *p, STACK_OF(PKCS7) *safes, struct cv_errmsg *err)
{
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	PKCS7 *p7;
	int i, r = 0;

	for (i = 0; i < sk_PKCS7_num(safes) && r == 0; i++) {
		p7 = sk_PKCS7_value(safes, i);
		if (PKCS7_type_is_data(p7)) {
			bags = PKCS12_unpack_p7data(p7);
			if (bags == NULL)
				r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
						  "a safe of the PKCS#12 file cannot be read");
		} else if (PKCS7_type_is_encrypted(p7)) {
			r = decrypt_safe(p, p7, &bags, err);
		} else {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "the PKCS#12 file holds a safe encrypted to a public key; "
					  "only password-protected files are read");
		}
		if (r == 0)
			r = walk_bags(p, bags, 0, err);
		sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
		bags = NULL;
	}
	return r;
}

static int password_missing(const char *password)
{
	return password == NULL || password[0] == '\0';
}

/* Checks the file's MAC and settles which password decrypts it. A file made without a
 * password has either no password at all or the empty one: both are tried. */
static int verify_mac(struct p12_parse *p, PKCS12 *p12, const char *password,
		      struct cv_errmsg *err)
{
	const X509_ALGOR *macalg = NULL;
	const ASN1_INTEGER *iter_int = NULL;
	const ASN1_OBJECT *oid = NULL;
	EVP_MD *md;
	long iter = 1;
	int r;

	if (!PKCS12_mac_present(p12)) {
		/* No integrity check (openssl pkcs12 -nomac): decryption judges the password;
		 * without one, as OpenSSL's PKCS12_parse, no password at all. */
		p->pass = password_missing(password) ? NULL : password;
		p->passlen = p->pass != NULL ? (int)strlen(p->pass) : 0;
		return 0;
	}
	PKCS12_get0_mac(NULL, &macalg, NULL, &iter_int, p12);
	if (macalg != NULL)
		X509_ALGOR_get0(&oid, NULL, NULL, macalg);
	md = oid != NULL ? EVP_MD_fetch(NULL, OBJ_nid2sn(OBJ_obj2nid(oid)), NULL) : NULL;
	if (md == NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				     "the PKCS#12 file's integrity check (MAC) uses an algorithm "
				     "certvault does not support");
	EVP_MD_free(md);
	if (iter_int != NULL) {
		iter = ASN1_INTEGER_get(iter_int);
		if (iter < 0)
			iter = LONG_MAX;
	}
	r = charge(p, iter, err);
	if (r < 0)
		return r;
	if (!password_missing(password)) {
		if (PKCS12_verify_mac(p12, password, (int)strlen(password)) != 1)
			return cv_errmsg_set(err, CV_ERR_BAD_PASSWORD,
					     "incorrect password for the PKCS#12 file");
		p->pass = password;
		p->passlen = (int)strlen(password);
	} else if (PKCS12_verify_mac(p12, NULL, 0) == 1) {
		p->pass = NULL;
		p->passlen = 0;
	} else {
		r = charge(p, iter, err);
		if (r < 0)
			return r;
		if (PKCS12_verify_mac(p12, "", 0) != 1)
			return cv_errmsg_set(err, CV_ERR_BAD_PASSWORD,
					     "the PKCS#12 file is protected by a password: none "
					     "was given");
		p->pass = "";
		p->passlen = 0;
	}
	p->mac_verified = 1;
	return 0;
}

/* The private key the walk found, decrypted if it was shrouded. */
static int key_decode(struct p12_parse *p, EVP_PKEY **ret_key, struct cv_errmsg *err)
{
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	const X509_ALGOR *alg = NULL;
	OSSL_LIB_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;
	long cost;
	int attempt, r;

	if (p->key != NULL) {
		pk = p->key;
		p->key = NULL;
		goto done;
	}
	X509_SIG_get0(p->shrouded, &alg, NULL);
	r = cv_x509_kdf_cost(alg, "the PKCS#12 file's private key", &cost, err);
	if (r < 0)
		goto out;
	for (attempt = 0; attempt < 2 && p8 == NULL; attempt++) {
		if (attempt == 1 && (ctx = legacy_ctx(p)) == NULL)
			break;
		r = charge(p, cost, err);
		if (r < 0)
			goto out;
		p8 = PKCS8_decrypt_ex(p->shrouded, p->pass, p->passlen, ctx, NULL);
	}
	if (p8 == NULL) {
		r = decrypt_failed(p, "private key", err);
		goto out;
	}
	pk = EVP_PKCS82PKEY(p8);
	if (pk == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "the PKCS#12 file's private key cannot be decoded (an unknown "
				  "key algorithm, or a damaged key)");
		goto out;
	}
done:
	*ret_key = pk;
	pk = NULL;
	r = 0;
out:
	PKCS8_PRIV_KEY_INFO_free(p8); /* wipes the key bytes */
	EVP_PKEY_free(pk);
	return r;
}

int cv_x509_pkcs12_parse(const unsigned char *der, size_t len, const char *password,
			 X509 **ret_cert, EVP_PKEY **ret_key, STACK_OF(X509) **ret_chain,
			 struct cv_errmsg *err)
{
	struct p12_parse p = { 0 };
	STACK_OF(PKCS7) *safes = NULL;
	const unsigned char *q = der;
	EVP_PKEY *pk = NULL;
	PKCS12 *p12 = NULL;
	int i, r;

	p.budget = CV_X509_MAX_KDF_COST;
	if (der == NULL || len == 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the PKCS#12 file is empty");
		goto out;
	}
	if (len > LONG_MAX) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the PKCS#12 file is too large");
		goto out;
	}
	if (password != NULL && strlen(password) > INT_MAX) {
		r = cv_errmsg_set(err, CV_ERR_BAD_PASSWORD,
				  "incorrect password for the PKCS#12 file");
		goto out;
	}
	p12 = d2i_PKCS12(NULL, &q, (long)len);
	if (p12 == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "not a PKCS#12 file, or one that is cut off");
		goto out;
	}
	if (q != der + len) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "the PKCS#12 file is followed by %zu other bytes",
				  (size_t)(der + len - q));
		goto out;
	}
	safes = PKCS12_unpack_authsafes(p12);
	if (safes == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "the PKCS#12 file's contents cannot be read (only "
				  "password-integrity files are taken)");
		goto out;
	}
	r = verify_mac(&p, p12, password, err);
	if (r < 0)
		goto out;
	p.certs = sk_X509_new_null();
	if (p.certs == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = walk_safes(&p, safes, err);
	if (r < 0)
		goto out;
	if (p.n_keys == 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "the PKCS#12 file holds no private key");
		goto out;
	}
	if (sk_X509_num(p.certs) == 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
				  "the PKCS#12 file holds a private key but no certificate");
		goto out;
	}
	r = key_decode(&p, &pk, err);
	if (r < 0)
		goto out;
	/* The leaf is the certificate of the key, not the bag the localKeyID names: the
	 * public key is what the import checks anyway. */
	for (i = 0; i < sk_X509_num(p.certs); i++)
		if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(p.certs, i)), pk) == 1)
			break;
	if (i == sk_X509_num(p.certs)) {
		r = cv_errmsg_set(err, CV_ERR_KEY_MISMATCH,
				  "none of the %d certificates in the PKCS#12 file matches its "
				  "private key", sk_X509_num(p.certs));
		goto out;
	}
	*ret_cert = sk_X509_delete(p.certs, i);
	*ret_key = pk;
	pk = NULL;
	*ret_chain = p.certs;
	p.certs = NULL;
	r = 0;
out:
	EVP_PKEY_free(pk);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	PKCS12_free(p12);
	p12_parse_release(&p);
	ERR_clear_error();
	return r;
}

/* Whether password is one every PKCS#12 reader turns into the same key: keytool decodes
 * -storepass in the platform's charset, openssl -passin takes the bytes as they are, OpenSSL
 * before 1.1.0 took each byte for one character. Printable ASCII means the same to all. */
static int truststore_password_valid(const char *password)
{
	size_t i;

	for (i = 0; password[i] != '\0'; i++)
		if (i == CV_X509_TRUSTSTORE_PASSWORD_MAX || (unsigned char)password[i] < 0x20 ||
		    (unsigned char)password[i] > 0x7e)
			return 0;
	return i > 0;
}

/* A certificate bag Java lists as a trustedCertEntry named alias. */
static int trusted_bag(X509 *cert, const char *alias, PKCS12_SAFEBAG **ret_bag,
		       struct cv_errmsg *err)
{
	PKCS12_SAFEBAG *bag = NULL;
	int r;

	bag = PKCS12_SAFEBAG_create_cert(cert);
	if (bag == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (PKCS12_add_friendlyname_utf8(bag, alias, -1) != 1) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "the alias \"%.64s\" is not valid UTF-8", alias);
		goto out;
	}
	/* A SET holding one OBJECT IDENTIFIER: with len -1 the data is the ASN1_OBJECT. */
	if (PKCS12_add1_attr_by_txt(bag, JAVA_TRUSTED_KEY_USAGE_OID, V_ASN1_OBJECT,
				    (const unsigned char *)OBJ_nid2obj(NID_anyExtendedKeyUsage),
				    -1) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	*ret_bag = bag;
	bag = NULL;
	r = 0;
out:
	PKCS12_SAFEBAG_free(bag);
	return r;
}

int cv_x509_truststore_pkcs12(X509 *const *certs, const char *const *aliases, size_t n,
			      const char *password, unsigned char **ret_der, size_t *ret_len,
			      struct cv_errmsg *err)
{
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	STACK_OF(PKCS7) *safes = NULL;
	PKCS12_SAFEBAG *bag = NULL;
	PKCS7 *p7 = NULL;
	PKCS12 *p12 = NULL;
	unsigned char *der = NULL, *q;
	size_t i, j, passlen;
	int len, r;

	if (password_missing(password)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "a PKCS#12 truststore needs a password");
		goto out;
	}
	if (!truststore_password_valid(password)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "the PKCS#12 password must be 1 to %d printable ASCII characters "
				  "(Java and OpenSSL read other characters differently)",
				  CV_X509_TRUSTSTORE_PASSWORD_MAX);
		goto out;
	}
	passlen = strlen(password);
	if (passlen > INT_MAX || n > INT_MAX) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the truststore is too large");
		goto out;
	}
	bags = sk_PKCS12_SAFEBAG_new_null();
	if (bags == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (certs[i] == NULL || aliases[i] == NULL) {
			r = CV_ERR_INTERNAL;
			goto out;
		}
		if (aliases[i][0] == '\0') {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "truststore entry %zu has an empty alias", i + 1);
			goto out;
		}
		/* Java keys its entries by the lower-cased alias: two aliases that differ only
		 * in case would become one entry. */
		for (j = 0; j < i; j++) {
			if (strcasecmp(aliases[i], aliases[j]) == 0) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						  "the aliases \"%.64s\" and \"%.64s\" differ only "
						  "in case: Java would merge them", aliases[j],
						  aliases[i]);
				goto out;
			}
		}
		r = trusted_bag(certs[i], aliases[i], &bag, err);
		if (r < 0)
			goto out;
		if (sk_PKCS12_SAFEBAG_push(bags, bag) <= 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		bag = NULL;
	}
	/* A cipher NID (not a PBE one) makes PBES2: PBKDF2 with HMAC-SHA256, AES-256-CBC. */
	safes = sk_PKCS7_new_null();
	if (safes == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	p7 = PKCS12_pack_p7encdata_ex(NID_aes_256_cbc, password, (int)passlen, NULL,
				      TRUSTSTORE_SALT_LEN, TRUSTSTORE_ITERATIONS, bags, NULL, NULL);
	if (p7 == NULL) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	if (sk_PKCS7_push(safes, p7) <= 0) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	p7 = NULL;
	p12 = PKCS12_add_safes(safes, 0);
	if (p12 == NULL) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	if (PKCS12_set_mac(p12, password, (int)passlen, NULL, TRUSTSTORE_SALT_LEN,
			   TRUSTSTORE_ITERATIONS, EVP_sha256()) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	len = i2d_PKCS12(p12, NULL);
	if (len <= 0) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	der = malloc((size_t)len);
	if (der == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	q = der;
	if (i2d_PKCS12(p12, &q) != len) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	*ret_der = der;
	*ret_len = (size_t)len;
	der = NULL;
	r = 0;
out:
	free(der);
	PKCS12_free(p12);
	PKCS7_free(p7);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	PKCS12_SAFEBAG_free(bag);
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	ERR_clear_error();
	return r;
}
