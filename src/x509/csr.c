/* x509: certificate requests and self-signed certificates whose signature a token makes.
 * This module builds the to-be-signed part, says what the token must sign, and puts the
 * signature it made in place: no private key ever reaches it. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "certvault/x509.h"
#include "internal.h"

#define SUBJECT_MAX 512
#define SUBJECT_RDNS_MAX 16
#define REQUEST_NAMES_MAX 100

static const char *const key_usages[] = {
	"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
	"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly",
};
static const char *const extended_key_usages[] = {
	"serverAuth", "clientAuth", "codeSigning", "emailProtection", "timeStamping",
	"OCSPSigning",
};

static int in_list(const char *s, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(s, list[i]) == 0)
			return 1;
	}
	return 0;
}

static void trim(char **start, char **end)
{
	while (*start < *end && (**start == ' ' || **start == '\t'))
		(*start)++;
	while (*end > *start && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
		(*end)--;
}

/* "CN=a,O=b\, Inc" into a name: attribute short names OpenSSL knows, UTF-8 values. */
static int subject_parse(const char *subject, X509_NAME **ret_name, struct cv_errmsg *err)
{
	char buf[SUBJECT_MAX + 1], value[SUBJECT_MAX + 1];
	X509_NAME *name = NULL;
	size_t len, i, n_rdns = 0;
	char *p, *eq, *end;
	int r, nid;

	if (subject == NULL || subject[0] == '\0')
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"subject\" is required");
	len = strlen(subject);
	if (len > SUBJECT_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"subject\" is longer than %d bytes",
				     SUBJECT_MAX);
	memcpy(buf, subject, len + 1);
	name = X509_NAME_new();
	if (name == NULL)
		return CV_ERR_NOMEM;
	p = buf;
	while (*p != '\0') {
		/* One attribute: up to an unescaped comma. */
		size_t v = 0;

		eq = strchr(p, '=');
		if (eq == NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"subject\": an attribute "
					  "without '=' (write it as CN=...,O=...)");
			goto out;
		}
		end = eq;
		trim(&p, &end);
		*end = '\0';
		nid = OBJ_txt2nid(p);
		if (nid == NID_undef || end == p) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"subject\": unknown attribute "
					  "%.32s", p);
			goto out;
		}
		for (i = (size_t)(eq + 1 - buf); buf[i] != '\0' && buf[i] != ','; i++) {
			if (buf[i] == '\\' && buf[i + 1] != '\0')
				i++;
			value[v++] = buf[i];
		}
		value[v] = '\0';
		p = buf + i + (buf[i] == ',' ? 1 : 0);
		{
			char *vs = value, *ve = value + v;

			trim(&vs, &ve);
			*ve = '\0';
			if (*vs == '\0') {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						  "\"subject\": %s has no value", OBJ_nid2sn(nid));
				goto out;
			}
			if (++n_rdns > SUBJECT_RDNS_MAX) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"subject\" has more "
						  "than %d attributes", SUBJECT_RDNS_MAX);
				goto out;
			}
			/* OpenSSL refuses invalid UTF-8 and values too long for the attribute. */
			if (!X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
							(const unsigned char *)vs, -1, -1, 0)) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"subject\": the value of "
						  "%s is not valid for it (UTF-8, its length)",
						  OBJ_nid2sn(nid));
				goto out;
			}
		}
	}
	if (n_rdns == 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"subject\" is required");
		goto out;
	}
	*ret_name = name;
	name = NULL;
	r = 0;
out:
	ERR_clear_error();
	X509_NAME_free(name);
	return r;
}

static int names_build(const struct cv_x509_request *req, GENERAL_NAMES **ret_names,
		       struct cv_errmsg *err)
{
	GENERAL_NAMES *names = NULL;
	GENERAL_NAME *gn = NULL;
	char canon[CV_DNS_NAME_MAX + 1];
	struct cv_errmsg why;
	ASN1_IA5STRING *ia5;
	ASN1_OCTET_STRING *ip;
	size_t i;
	int r;

	if (req->n_dns_names > REQUEST_NAMES_MAX || req->n_ip_addresses > REQUEST_NAMES_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "at most %d DNS names and %d IP "
				     "addresses", REQUEST_NAMES_MAX, REQUEST_NAMES_MAX);
	*ret_names = NULL;
	if (req->n_dns_names + req->n_ip_addresses == 0)
		return 0;
	names = GENERAL_NAMES_new();
	if (names == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; i < req->n_dns_names; i++) {
		r = cv_x509_domain_normalize(req->dns_names[i], canon, sizeof(canon), &why);
		if (r < 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"dns_names\"[%zu]: %s", i,
					  why.text);
			goto out;
		}
		ia5 = ASN1_IA5STRING_new();
		if (ia5 == NULL || !ASN1_STRING_set(ia5, canon, -1)) {
			ASN1_IA5STRING_free(ia5);
			r = CV_ERR_NOMEM;
			goto out;
		}
		gn = GENERAL_NAME_new();
		if (gn == NULL) {
			ASN1_IA5STRING_free(ia5);
			r = CV_ERR_NOMEM;
			goto out;
		}
		GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
		if (!sk_GENERAL_NAME_push(names, gn)) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		gn = NULL;
	}
	for (i = 0; i < req->n_ip_addresses; i++) {
		ip = a2i_IPADDRESS(req->ip_addresses[i]);
		if (ip == NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"ip_addresses\"[%zu] is not an "
					  "IPv4 or IPv6 address", i);
			goto out;
		}
		gn = GENERAL_NAME_new();
		if (gn == NULL) {
			ASN1_OCTET_STRING_free(ip);
			r = CV_ERR_NOMEM;
			goto out;
		}
		GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
		if (!sk_GENERAL_NAME_push(names, gn)) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		gn = NULL;
	}
	*ret_names = names;
	names = NULL;
	r = 0;
out:
	ERR_clear_error();
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(names);
	return r;
}

/* "critical,a,b" from a list checked against the names allowed (so nothing of OpenSSL's
 * configuration syntax can ride in). */
static int usage_value(const char *field, const char *const *given, size_t n,
		       const char *const *dflt, size_t n_dflt, const char *const *allowed,
		       size_t n_allowed, int critical, char *buf, size_t buflen,
		       struct cv_errmsg *err)
{
	const char *const *list = n > 0 ? given : dflt;
	size_t count = n > 0 ? n : n_dflt, i, used;

	used = (size_t)snprintf(buf, buflen, "%s", critical ? "critical" : "");
	for (i = 0; i < count; i++) {
		if (!in_list(list[i], allowed, n_allowed))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\"[%zu] is not one of "
					     "the usages certvault knows", field, i);
		used += (size_t)snprintf(buf + used, buflen - used, "%s%s", used > 0 ? "," : "",
					 list[i]);
		if (used >= buflen)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is too long", field);
	}
	return 0;
}

/* The extensions asked for: SANs, key usage, extended key usage; ctx set for a
 * certificate (subject key id), NULL for a request. */
static int extensions_build(EVP_PKEY *pub, const struct cv_x509_request *req,
			    X509V3_CTX *ctx, STACK_OF(X509_EXTENSION) **ret_exts,
			    struct cv_errmsg *err)
{
	static const char *const ku_rsa[] = { "digitalSignature", "keyEncipherment" };
	static const char *const ku_other[] = { "digitalSignature" };
	static const char *const eku_dflt[] = { "serverAuth" };
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *ext = NULL;
	GENERAL_NAMES *names = NULL;
	char value[256];
	int is_rsa = EVP_PKEY_is_a(pub, "RSA"), r;

	exts = sk_X509_EXTENSION_new_null();
	if (exts == NULL)
		return CV_ERR_NOMEM;
	r = names_build(req, &names, err);
	if (r < 0)
		goto out;
	if (names != NULL) {
		ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, names);
		if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		ext = NULL;
	}
	r = usage_value("key_usage", req->key_usage, req->n_key_usage,
			is_rsa ? ku_rsa : ku_other, is_rsa ? 2 : 1, key_usages,
			sizeof(key_usages) / sizeof(key_usages[0]), 1, value, sizeof(value), err);
	if (r < 0)
		goto out;
	ext = X509V3_EXT_conf_nid(NULL, ctx, NID_key_usage, value);
	if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	ext = NULL;
	r = usage_value("extended_key_usage", req->extended_key_usage,
			req->n_extended_key_usage, eku_dflt, 1, extended_key_usages,
			sizeof(extended_key_usages) / sizeof(extended_key_usages[0]), 0, value,
			sizeof(value), err);
	if (r < 0)
		goto out;
	ext = X509V3_EXT_conf_nid(NULL, ctx, NID_ext_key_usage, value);
	if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	ext = NULL;
	if (ctx != NULL) {
		ext = X509V3_EXT_conf_nid(NULL, ctx, NID_basic_constraints, "critical,CA:FALSE");
		if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		ext = X509V3_EXT_conf_nid(NULL, ctx, NID_subject_key_identifier, "hash");
		if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		ext = NULL;
	}
	*ret_exts = exts;
	exts = NULL;
	r = 0;
out:
	ERR_clear_error();
	X509_EXTENSION_free(ext);
	GENERAL_NAMES_free(names);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return r;
}

int cv_x509_request_check(const struct cv_x509_request *req, struct cv_errmsg *err)
{
	static const char *const none[] = { "digitalSignature" };
	GENERAL_NAMES *names = NULL;
	X509_NAME *name = NULL;
	char value[256];
	int r;

	r = subject_parse(req->subject, &name, err);
	if (r == 0)
		r = names_build(req, &names, err);
	if (r == 0)
		r = usage_value("key_usage", req->key_usage, req->n_key_usage, none, 1, key_usages,
				sizeof(key_usages) / sizeof(key_usages[0]), 1, value,
				sizeof(value), err);
	if (r == 0)
		r = usage_value("extended_key_usage", req->extended_key_usage,
				req->n_extended_key_usage, none, 0, extended_key_usages,
				sizeof(extended_key_usages) / sizeof(extended_key_usages[0]), 0,
				value, sizeof(value), err);
	X509_NAME_free(name);
	GENERAL_NAMES_free(names);
	return r;
}

static int key_checked(EVP_PKEY *pub, struct cv_errmsg *err)
{
	if (pub == NULL)
		return CV_ERR_INTERNAL;
	if (!EVP_PKEY_is_a(pub, "RSA") && !EVP_PKEY_is_a(pub, "EC") &&
	    !EVP_PKEY_is_a(pub, "ED25519"))
		return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY, "this key type cannot sign "
				     "a request");
	return 0;
}

int cv_x509_csr_new(EVP_PKEY *pub, const struct cv_x509_request *req, X509_REQ **ret_req,
		    struct cv_errmsg *err)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_NAME *name = NULL;
	X509_REQ *csr = NULL;
	int r;

	r = key_checked(pub, err);
	if (r < 0)
		goto out;
	r = subject_parse(req->subject, &name, err);
	if (r < 0)
		goto out;
	r = extensions_build(pub, req, NULL, &exts, err);
	if (r < 0)
		goto out;
	csr = X509_REQ_new();
	if (csr == NULL || !X509_REQ_set_version(csr, 0) || !X509_REQ_set_subject_name(csr, name) ||
	    !X509_REQ_set_pubkey(csr, pub) || !X509_REQ_add_extensions(csr, exts)) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	*ret_req = csr;
	csr = NULL;
	r = 0;
out:
	ERR_clear_error();
	X509_REQ_free(csr);
	X509_NAME_free(name);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return r;
}

int cv_x509_selfsigned_new(EVP_PKEY *pub, const struct cv_x509_request *req, time_t now,
			   int days, X509 **ret_cert, struct cv_errmsg *err)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	unsigned char serial_bytes[16];
	X509_NAME *name = NULL;
	BIGNUM *serial = NULL;
	X509 *cert = NULL;
	X509V3_CTX ctx;
	int r, i;

	r = key_checked(pub, err);
	if (r < 0)
		goto out;
	if (days < 1 || days > 3650) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"days\" must be 1 to 3650");
		goto out;
	}
	r = subject_parse(req->subject, &name, err);
	if (r < 0)
		goto out;
	cert = X509_new();
	if (cert == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	/* A positive serial of up to 127 bits, never zero. */
	if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	serial_bytes[0] = (unsigned char)((serial_bytes[0] & 0x7f) | 0x40);
	serial = BN_bin2bn(serial_bytes, sizeof(serial_bytes), NULL);
	/* A minute back, for the clocks of whoever checks it first. */
	if (serial == NULL || !X509_set_version(cert, 2) ||
	    BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) == NULL ||
	    !X509_set_subject_name(cert, name) || !X509_set_issuer_name(cert, name) ||
	    X509_time_adj_ex(X509_getm_notBefore(cert), 0, -60, &now) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, &now) == NULL ||
	    !X509_set_pubkey(cert, pub)) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	r = extensions_build(pub, req, &ctx, &exts, err);
	if (r < 0)
		goto out;
	for (i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
		if (!X509_add_ext(cert, sk_X509_EXTENSION_value(exts, i), -1)) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	*ret_cert = cert;
	cert = NULL;
	r = 0;
out:
	ERR_clear_error();
	OPENSSL_cleanse(serial_bytes, sizeof(serial_bytes));
	BN_free(serial);
	X509_free(cert);
	X509_NAME_free(name);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return r;
}

/* The scheme, signature algorithm and digest for pub. */
static int scheme_of(EVP_PKEY *pub, enum cv_x509_sig_scheme *ret_scheme, int *ret_alg_nid,
		     const EVP_MD **ret_md)
{
	char group[64];
	int nid;

	if (EVP_PKEY_is_a(pub, "RSA")) {
		*ret_scheme = CV_X509_SIG_RSA_PKCS1;
		*ret_alg_nid = NID_sha256WithRSAEncryption;
		*ret_md = EVP_sha256();
		return 0;
	}
	if (EVP_PKEY_is_a(pub, "ED25519")) {
		*ret_scheme = CV_X509_SIG_EDDSA;
		*ret_alg_nid = NID_ED25519;
		*ret_md = NULL;
		return 0;
	}
	if (!EVP_PKEY_is_a(pub, "EC") ||
	    !EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					    NULL))
		return CV_ERR_UNSUPPORTED_KEY;
	nid = OBJ_sn2nid(group);
	*ret_scheme = CV_X509_SIG_ECDSA;
	/* The hash as strong as the curve (RFC 5480 section 4). */
	if (nid == NID_X9_62_prime256v1) {
		*ret_alg_nid = NID_ecdsa_with_SHA256;
		*ret_md = EVP_sha256();
	} else if (nid == NID_secp384r1) {
		*ret_alg_nid = NID_ecdsa_with_SHA384;
		*ret_md = EVP_sha384();
	} else if (nid == NID_secp521r1) {
		*ret_alg_nid = NID_ecdsa_with_SHA512;
		*ret_md = EVP_sha512();
	} else {
		return CV_ERR_UNSUPPORTED_KEY;
	}
	return 0;
}

int cv_x509_tbs_digest(X509_REQ *req, X509 *cert, EVP_PKEY *pub,
		       enum cv_x509_sig_scheme *ret_scheme, unsigned char **ret_data,
		       size_t *ret_len)
{
	/* DER of DigestInfo's AlgorithmIdentifier for SHA-256 and the OCTET STRING header. */
	static const unsigned char sha256_prefix[] = {
		0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
		0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
	};
	enum cv_x509_sig_scheme scheme;
	unsigned char *tbs = NULL, *data = NULL, md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	X509_ALGOR *alg = NULL;
	const EVP_MD *digest;
	int alg_nid, tbs_len, r;
	size_t len;

	if ((req == NULL) == (cert == NULL))
		return CV_ERR_INTERNAL;
	r = scheme_of(pub, &scheme, &alg_nid, &digest);
	if (r < 0)
		goto out;
	/* RSA's algorithm identifiers carry an explicit NULL; ECDSA's and EdDSA's none. */
	if (req != NULL) {
		alg = X509_ALGOR_new();
		if (alg == NULL ||
		    !X509_ALGOR_set0(alg, OBJ_nid2obj(alg_nid),
				     scheme == CV_X509_SIG_RSA_PKCS1 ? V_ASN1_NULL : V_ASN1_UNDEF,
				     NULL) ||
		    !X509_REQ_set1_signature_algo(req, alg)) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		tbs_len = i2d_re_X509_REQ_tbs(req, &tbs);
	} else {
		/* The certificate's inner algorithm is part of what is signed. OpenSSL 3.0 has
		 * no setter for it but X509_sign; the object is the caller's and not shared. */
		if (!X509_ALGOR_set0((X509_ALGOR *)X509_get0_tbs_sigalg(cert), OBJ_nid2obj(alg_nid),
				     scheme == CV_X509_SIG_RSA_PKCS1 ? V_ASN1_NULL : V_ASN1_UNDEF,
				     NULL)) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		tbs_len = i2d_re_X509_tbs(cert, &tbs);
	}
	if (tbs_len <= 0) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (scheme == CV_X509_SIG_EDDSA) {
		data = malloc((size_t)tbs_len);
		if (data == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		memcpy(data, tbs, (size_t)tbs_len);
		len = (size_t)tbs_len;
	} else {
		if (!EVP_Digest(tbs, (size_t)tbs_len, md, &md_len, digest, NULL)) {
			r = CV_ERR_INTERNAL;
			goto out;
		}
		len = (scheme == CV_X509_SIG_RSA_PKCS1 ? sizeof(sha256_prefix) : 0) + md_len;
		data = malloc(len);
		if (data == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		if (scheme == CV_X509_SIG_RSA_PKCS1) {
			memcpy(data, sha256_prefix, sizeof(sha256_prefix));
			memcpy(data + sizeof(sha256_prefix), md, md_len);
		} else {
			memcpy(data, md, md_len);
		}
	}
	*ret_scheme = scheme;
	*ret_data = data;
	*ret_len = len;
	data = NULL;
	r = 0;
out:
	ERR_clear_error();
	X509_ALGOR_free(alg);
	OPENSSL_free(tbs);
	free(data);
	return r;
}

/* r || s, each half the length, as the DER ECDSA-Sig-Value. */
static int ecdsa_der(const unsigned char *sig, size_t sig_len, unsigned char **ret_der,
		     int *ret_len)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r_bn = NULL, *s_bn = NULL;
	int len, r = CV_ERR_TOKEN;

	if (sig_len == 0 || sig_len % 2 != 0)
		goto out;
	r_bn = BN_bin2bn(sig, (int)(sig_len / 2), NULL);
	s_bn = BN_bin2bn(sig + sig_len / 2, (int)(sig_len / 2), NULL);
	es = ECDSA_SIG_new();
	if (r_bn == NULL || s_bn == NULL || es == NULL || !ECDSA_SIG_set0(es, r_bn, s_bn)) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r_bn = s_bn = NULL;
	*ret_der = NULL;
	len = i2d_ECDSA_SIG(es, ret_der);
	if (len <= 0) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	*ret_len = len;
	r = 0;
out:
	BN_free(r_bn);
	BN_free(s_bn);
	ECDSA_SIG_free(es);
	return r;
}

/* DER length octets of len into buf (at most 5); returns how many. */
static size_t der_length(size_t len, unsigned char *buf)
{
	size_t n = 0, i;

	if (len < 0x80) {
		buf[0] = (unsigned char)len;
		return 1;
	}
	for (i = len; i > 0; i >>= 8)
		n++;
	buf[0] = (unsigned char)(0x80 | n);
	for (i = 0; i < n; i++)
		buf[1 + i] = (unsigned char)(len >> (8 * (n - 1 - i)));
	return 1 + n;
}

/* SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue } parsed back. */
static int cert_assemble(X509 *cert, ASN1_BIT_STRING *bits, X509 **ret_cert)
{
	unsigned char *tbs = NULL, *alg = NULL, *bs = NULL, *der = NULL, hdr[6];
	const unsigned char *p;
	int tbs_len, alg_len, bs_len, r = CV_ERR_NOMEM;
	size_t body, hdr_len;
	X509 *out = NULL;

	tbs_len = i2d_re_X509_tbs(cert, &tbs);
	alg_len = i2d_X509_ALGOR(X509_get0_tbs_sigalg(cert), &alg);
	bs_len = i2d_ASN1_BIT_STRING(bits, &bs);
	if (tbs_len <= 0 || alg_len <= 0 || bs_len <= 0)
		goto out;
	body = (size_t)tbs_len + (size_t)alg_len + (size_t)bs_len;
	hdr[0] = 0x30;
	hdr_len = 1 + der_length(body, hdr + 1);
	der = malloc(hdr_len + body);
	if (der == NULL)
		goto out;
	memcpy(der, hdr, hdr_len);
	memcpy(der + hdr_len, tbs, (size_t)tbs_len);
	memcpy(der + hdr_len + tbs_len, alg, (size_t)alg_len);
	memcpy(der + hdr_len + tbs_len + alg_len, bs, (size_t)bs_len);
	p = der;
	out = d2i_X509(NULL, &p, (long)(hdr_len + body));
	if (out == NULL || p != der + hdr_len + body) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	*ret_cert = out;
	out = NULL;
	r = 0;
out:
	X509_free(out);
	free(der);
	OPENSSL_free(tbs);
	OPENSSL_free(alg);
	OPENSSL_free(bs);
	return r;
}

int cv_x509_signature_set(X509_REQ *req, X509 *cert, EVP_PKEY *pub, const unsigned char *sig,
			  size_t sig_len, X509 **ret_cert)
{
	enum cv_x509_sig_scheme scheme;
	unsigned char *der = NULL;
	ASN1_BIT_STRING *bits = NULL;
	const EVP_MD *digest;
	X509 *signed_cert = NULL;
	int alg_nid, der_len = 0, r;

	if ((req == NULL) == (cert == NULL) || sig == NULL || sig_len == 0)
		return CV_ERR_INTERNAL;
	r = scheme_of(pub, &scheme, &alg_nid, &digest);
	if (r < 0)
		goto out;
	if (scheme == CV_X509_SIG_ECDSA) {
		r = ecdsa_der(sig, sig_len, &der, &der_len);
		if (r < 0)
			goto out;
	}
	bits = ASN1_BIT_STRING_new();
	if (bits == NULL ||
	    !ASN1_BIT_STRING_set(bits, der != NULL ? der : (unsigned char *)sig,
				 der != NULL ? der_len : (int)sig_len)) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	/* A whole number of bytes: no unused bits. */
	bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
	bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
	if (req != NULL) {
		X509_REQ_set0_signature(req, bits);
		bits = NULL;
		if (X509_REQ_verify(req, pub) != 1) {
			r = CV_ERR_TOKEN;
			goto out;
		}
	} else {
		r = cert_assemble(cert, bits, &signed_cert);
		if (r < 0)
			goto out;
		if (X509_verify(signed_cert, pub) != 1) {
			r = CV_ERR_TOKEN;
			goto out;
		}
		*ret_cert = signed_cert;
		signed_cert = NULL;
	}
	r = 0;
out:
	ERR_clear_error();
	X509_free(signed_cert);
	ASN1_BIT_STRING_free(bits);
	OPENSSL_free(der);
	return r;
}

int cv_x509_csr_pem(X509_REQ *req, char **ret_pem, size_t *ret_len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int r;

	if (bio == NULL)
		return CV_ERR_NOMEM;
	if (!PEM_write_bio_X509_REQ(bio, req)) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = x509_bio_string(bio, ret_pem, ret_len);
out:
	ERR_clear_error();
	BIO_free(bio);
	return r;
}

int cv_x509_csr_der(X509_REQ *req, unsigned char **ret_der, size_t *ret_len)
{
	unsigned char *der = NULL, *copy;
	int len;

	len = i2d_X509_REQ(req, &der);
	if (len <= 0) {
		ERR_clear_error();
		return CV_ERR_NOMEM;
	}
	copy = malloc((size_t)len);
	if (copy == NULL) {
		OPENSSL_free(der);
		return CV_ERR_NOMEM;
	}
	memcpy(copy, der, (size_t)len);
	OPENSSL_free(der);
	*ret_der = copy;
	*ret_len = (size_t)len;
	return 0;
}

int cv_x509_csr_from_der(const unsigned char *der, size_t len, X509_REQ **ret_req)
{
	const unsigned char *p = der;
	X509_REQ *req;

	req = d2i_X509_REQ(NULL, &p, (long)len);
	if (req == NULL || p != der + len) {
		X509_REQ_free(req);
		ERR_clear_error();
		return CV_ERR_BAD_ENCODING;
	}
	*ret_req = req;
	return 0;
}
