/* x509: what the details view shows of a certificate, and its DER and PEM forms. */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "certvault/text.h"
#include "certvault/util.h"
#include "certvault/x509.h"
#include "internal.h"

int x509_time_epoch(const ASN1_TIME *t, time_t *ret)
{
	struct tm tm;
	int64_t days;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
		ERR_clear_error();
		return CV_ERR_BAD_ENCODING;
	}
	days = cv_days_from_civil((int64_t)tm.tm_year + 1900, (int64_t)tm.tm_mon + 1, tm.tm_mday);
	*ret = (time_t)(days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
	return 0;
}

int x509_bio_string(BIO *bio, char **ret_text, size_t *ret_len)
{
	char *data, *text;
	long n;

	n = BIO_get_mem_data(bio, &data);
	if (n < 0)
		return CV_ERR_INTERNAL;
	text = malloc((size_t)n + 1);
	if (text == NULL)
		return CV_ERR_NOMEM;
	if (n > 0)
		memcpy(text, data, (size_t)n);
	text[n] = '\0';
	*ret_text = text;
	*ret_len = (size_t)n;
	return 0;
}

int x509_name_text(const X509_NAME *name, char *buf, size_t buflen)
{
	BIO *bio = NULL;
	char *data;
	long n;
	size_t len;
	int r;

	bio = BIO_new(BIO_s_mem());
	if (bio == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	/* RFC 4514 lets a DN string hold UTF-8 as it is ("Főtanúsítvány", not
	 * "F\C5\91tan..."): every string is converted to UTF-8 and only what RFC 4514 requires
	 * is escaped (",+\"\\<>;", a leading '#' or space, a trailing space) plus control
	 * characters. A name whose strings do not convert to well-formed UTF-8 (a broken
	 * UTF8String) is printed with every byte outside ASCII escaped, as before. */
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
		r = CV_ERR_BAD_ENCODING;
		goto out;
	}
	n = BIO_get_mem_data(bio, &data);
	if (n < 0) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	if (!cv_text_utf8_valid(data, (size_t)n)) {
		if (BIO_reset(bio) != 1 ||
		    X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0) {
			r = CV_ERR_BAD_ENCODING;
			goto out;
		}
		n = BIO_get_mem_data(bio, &data);
		if (n < 0) {
			r = CV_ERR_INTERNAL;
			goto out;
		}
	}
	/* A DN longer than buf is cut before a character, never inside one. */
	len = cv_text_cut(data, (size_t)n, buflen - 1);
	if (len > 0)
		memcpy(buf, data, len);
	buf[len] = '\0';
	r = 0;
out:
	BIO_free(bio);
	return r;
}

/* Upper-case hex, colon separated: "AB:01:..". buf holds 3*len bytes at least. */
static void colon_hex(const unsigned char *bytes, size_t len, char *buf)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < len; i++) {
		buf[3 * i] = digits[bytes[i] >> 4];
		buf[3 * i + 1] = digits[bytes[i] & 0x0f];
		buf[3 * i + 2] = i + 1 < len ? ':' : '\0';
	}
}

static int fingerprint(X509 *cert, const EVP_MD *md, char *buf, size_t buflen)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (X509_digest(cert, md, digest, &n) != 1 || n == 0 || 3 * (size_t)n > buflen)
		return CV_ERR_INTERNAL;
	colon_hex(digest, n, buf);
	return 0;
}

int cv_x509_sha256_fingerprint(X509 *cert, char ret[96])
{
	return fingerprint(cert, EVP_sha256(), ret, 96);
}

static int serial_text(X509 *cert, char *buf, size_t buflen)
{
	const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
	const unsigned char *bytes;
	size_t len, neg;

	if (serial == NULL)
		return CV_ERR_BAD_ENCODING;
	bytes = ASN1_STRING_get0_data(serial);
	len = (size_t)ASN1_STRING_length(serial);
	neg = ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER;
	if (len == 0) {
		snprintf(buf, buflen, "00");
		return 0;
	}
	if (neg + 3 * len > buflen)
		return CV_ERR_BAD_ENCODING;
	buf[0] = '-';
	colon_hex(bytes, len, buf + neg);
	return 0;
}

/* Copies an ASN1 string as UTF-8 into buf; refuses a NUL or a control character inside, and
 * a string longer than buf. */
static int utf8_copy(const ASN1_STRING *s, char *buf, size_t buflen)
{
	unsigned char *utf8 = NULL;
	int n, i, r;

	n = ASN1_STRING_to_UTF8(&utf8, s);
	if (n < 0) {
		r = CV_ERR_BAD_ENCODING;
		goto out;
	}
	if ((size_t)n >= buflen) {
		r = CV_ERR_BAD_ENCODING;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (utf8[i] < 0x20 || utf8[i] == 0x7f) {
			r = CV_ERR_BAD_ENCODING;
			goto out;
		}
	}
	memcpy(buf, utf8, (size_t)n);
	buf[n] = '\0';
	r = 0;
out:
	OPENSSL_free(utf8);
	return r;
}

/* The subject's CN; the last one when there are several (the most specific, RFC 6125). */
static int common_name(X509 *cert, char *buf, size_t buflen)
{
	const X509_NAME *name = X509_get_subject_name(cert);
	const X509_NAME_ENTRY *e;
	int i, last = -1;

	buf[0] = '\0';
	for (i = -1; (i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0;)
		last = i;
	if (last < 0)
		return 0;
	e = X509_NAME_get_entry(name, last);
	if (e == NULL)
		return CV_ERR_BAD_ENCODING;
	return utf8_copy(X509_NAME_ENTRY_get_data(e), buf, buflen);
}

static void lower_ascii(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* A dNSName as a lower-case C string: IA5 text without NUL or control characters. */
static int dns_name_text(const ASN1_IA5STRING *s, char **ret)
{
	const unsigned char *p = ASN1_STRING_get0_data(s);
	int n = ASN1_STRING_length(s), i;
	char *text;

	if (n <= 0)
		return CV_ERR_BAD_ENCODING;
	for (i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return CV_ERR_BAD_ENCODING;
	text = malloc((size_t)n + 1);
	if (text == NULL)
		return CV_ERR_NOMEM;
	memcpy(text, p, (size_t)n);
	text[n] = '\0';
	lower_ascii(text);
	*ret = text;
	return 0;
}

static int ip_text(const ASN1_OCTET_STRING *s, char **ret)
{
	char buf[INET6_ADDRSTRLEN];
	const unsigned char *p = ASN1_STRING_get0_data(s);
	int n = ASN1_STRING_length(s);

	if (n != 4 && n != 16)
		return CV_ERR_BAD_ENCODING;
	if (inet_ntop(n == 4 ? AF_INET : AF_INET6, p, buf, sizeof(buf)) == NULL)
		return CV_ERR_INTERNAL;
	*ret = strdup(buf);
	return *ret != NULL ? 0 : CV_ERR_NOMEM;
}

/* SAN DNS names and IP addresses, at most CV_X509_MAX_SANS of each (the rest ignored); the
 * CN stands in for the DNS names when the SAN has none. */
static int alt_names(X509 *cert, struct cv_x509_info *info)
{
	GENERAL_NAMES *sans = NULL;
	int i, n, crit = -1, r;

	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (sans == NULL && crit != -1) {
		r = CV_ERR_BAD_ENCODING; /* present twice, or present and undecodable */
		goto out;
	}
	n = sans != NULL ? sk_GENERAL_NAME_num(sans) : 0;
	info->domains = calloc((size_t)(n > CV_X509_MAX_SANS ? CV_X509_MAX_SANS : n) + 1,
			       sizeof(char *));
	info->ips = calloc((size_t)(n > CV_X509_MAX_SANS ? CV_X509_MAX_SANS : n) + 1,
			   sizeof(char *));
	if (info->domains == NULL || info->ips == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);

		if (g->type == GEN_DNS && info->n_domains < CV_X509_MAX_SANS) {
			r = dns_name_text(g->d.dNSName, &info->domains[info->n_domains]);
			if (r < 0)
				goto out;
			info->n_domains++;
		} else if (g->type == GEN_IPADD && info->n_ips < CV_X509_MAX_SANS) {
			r = ip_text(g->d.iPAddress, &info->ips[info->n_ips]);
			if (r < 0)
				goto out;
			info->n_ips++;
		}
	}
	/* The CN stands in for the SAN's DNS names only when it is a host's name: a DNS name
	 * (RFC 6125's fallback; a wildcard too), or an IP address, listed as one. "Token
	 * Signer 2026" names no host and is no domain. */
	if (info->n_domains == 0 && info->common_name[0] != '\0') {
		char dns[CV_DNS_NAME_MAX + 1];
		unsigned char addr[16];
		struct cv_errmsg ignored;
		char **slot = NULL;

		if (inet_pton(AF_INET, info->common_name, addr) == 1 ||
		    inet_pton(AF_INET6, info->common_name, addr) == 1) {
			if (info->n_ips == 0)
				slot = &info->ips[info->n_ips++];
			if (slot != NULL)
				*slot = strdup(info->common_name);
		} else if (cv_x509_domain_normalize(info->common_name, dns, sizeof(dns),
						    &ignored) == 0) {
			slot = &info->domains[info->n_domains++];
			*slot = strdup(dns);
		}
		if (slot != NULL && *slot == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	r = 0;
out:
	GENERAL_NAMES_free(sans);
	return r;
}

static int key_info(X509 *cert, struct cv_x509_info *info)
{
	const EVP_PKEY *pk = X509_get0_pubkey(cert);
	char group[64];
	const char *curve = NULL;
	int nid;

	if (pk == NULL)
		return CV_ERR_BAD_ENCODING;
	info->key_bits = EVP_PKEY_get_bits(pk);
	if (EVP_PKEY_is_a(pk, "RSA")) {
		info->key_kind = CV_KEY_RSA;
		snprintf(info->key_description, sizeof(info->key_description), "RSA %d",
			 info->key_bits);
	} else if (EVP_PKEY_is_a(pk, "EC")) {
		info->key_kind = CV_KEY_EC;
		if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
						   sizeof(group), NULL) != 1)
			snprintf(group, sizeof(group), "explicit");
		nid = OBJ_sn2nid(group);
		curve = nid != NID_undef ? EC_curve_nid2nist(nid) : NULL;
		snprintf(info->key_curve, sizeof(info->key_curve), "%.24s",
			 curve != NULL ? curve : group);
		snprintf(info->key_description, sizeof(info->key_description), "ECDSA %.24s",
			 info->key_curve);
	} else if (EVP_PKEY_is_a(pk, "ED25519")) {
		info->key_kind = CV_KEY_ED25519;
		info->key_bits = 256;
		snprintf(info->key_curve, sizeof(info->key_curve), "Ed25519");
		snprintf(info->key_description, sizeof(info->key_description), "Ed25519");
	} else {
		/* Not a kind certvault holds keys for (a CA's key may be anything): name it. */
		info->key_kind = 0;
		snprintf(info->key_description, sizeof(info->key_description), "%s %d",
			 EVP_PKEY_get0_type_name(pk) != NULL ? EVP_PKEY_get0_type_name(pk) : "?",
			 info->key_bits);
	}
	return 0;
}

void cv_x509_key_kind_of(const char *description, char ret_type[16], int *ret_bits)
{
	size_t type_len = strcspn(description, " ");
	const char *p = description + type_len, *digits;
	long bits = 0;

	snprintf(ret_type, 16, "%.*s", (int)(type_len < 15 ? type_len : 15), description);
	*ret_bits = 0;
	if (strcmp(ret_type, "Ed25519") == 0) {
		*ret_bits = 256;
		return;
	}
	while (*p == ' ')
		p++;
	/* "P-256", or a curve name such as "secp256k1", or the bits themselves. */
	if (p[0] == 'P' && p[1] == '-')
		p += 2;
	digits = p + strcspn(p, "0123456789");
	if (*p == '\0' || strspn(digits, "0123456789") == 0 ||
	    strspn(digits, "0123456789") > 5)
		return;
	bits = strtol(digits, NULL, 10);
	*ret_bits = (int)bits;
}

static int signature_name(X509 *cert, char *buf, size_t buflen)
{
	const X509_ALGOR *alg = NULL;
	const ASN1_OBJECT *obj = NULL;
	int nid = X509_get_signature_nid(cert);

	if (nid != NID_undef) {
		snprintf(buf, buflen, "%s", OBJ_nid2ln(nid));
		return 0;
	}
	X509_get0_signature(NULL, &alg, cert);
	if (alg == NULL)
		return CV_ERR_BAD_ENCODING;
	X509_ALGOR_get0(&obj, NULL, NULL, alg);
	if (obj == NULL || OBJ_obj2txt(buf, (int)buflen, obj, 1) <= 0)
		return CV_ERR_BAD_ENCODING;
	return 0;
}

int cv_x509_info_new(X509 *cert, struct cv_x509_info **ret_info)
{
	struct cv_x509_info *info = NULL;
	int r;

	if (cert == NULL) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	info = calloc(1, sizeof(*info));
	if (info == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = x509_name_text(X509_get_subject_name(cert), info->subject, sizeof(info->subject));
	if (r < 0)
		goto out;
	r = x509_name_text(X509_get_issuer_name(cert), info->issuer, sizeof(info->issuer));
	if (r < 0)
		goto out;
	r = common_name(cert, info->common_name, sizeof(info->common_name));
	if (r < 0)
		goto out;
	r = serial_text(cert, info->serial, sizeof(info->serial));
	if (r < 0)
		goto out;
	r = signature_name(cert, info->signature_algorithm, sizeof(info->signature_algorithm));
	if (r < 0)
		goto out;
	r = key_info(cert, info);
	if (r < 0)
		goto out;
	r = x509_time_epoch(X509_get0_notBefore(cert), &info->not_before);
	if (r < 0)
		goto out;
	r = x509_time_epoch(X509_get0_notAfter(cert), &info->not_after);
	if (r < 0)
		goto out;
	r = fingerprint(cert, EVP_sha256(), info->sha256_fingerprint,
			sizeof(info->sha256_fingerprint));
	if (r < 0)
		goto out;
	r = fingerprint(cert, EVP_sha1(), info->sha1_fingerprint, sizeof(info->sha1_fingerprint));
	if (r < 0)
		goto out;
	info->is_ca = (X509_get_extension_flags(cert) & EXFLAG_CA) != 0;
	r = alt_names(cert, info);
	if (r < 0)
		goto out;
	*ret_info = info;
	info = NULL;
	r = 0;
out:
	cv_x509_info_free(info);
	ERR_clear_error();
	return r;
}

void cv_x509_info_free(struct cv_x509_info *info)
{
	size_t i;

	if (info == NULL)
		return;
	for (i = 0; info->domains != NULL && i < info->n_domains; i++)
		free(info->domains[i]);
	for (i = 0; info->ips != NULL && i < info->n_ips; i++)
		free(info->ips[i]);
	free(info->domains);
	free(info->ips);
	free(info);
}

static int strings_dup(char *const *v, size_t n, char ***ret)
{
	char **copy;
	size_t i;

	*ret = NULL;
	if (n == 0)
		return 0;
	copy = calloc(n, sizeof(*copy));
	if (copy == NULL)
		return CV_ERR_NOMEM;
	*ret = copy;
	for (i = 0; i < n; i++) {
		copy[i] = strdup(v[i]);
		if (copy[i] == NULL)
			return CV_ERR_NOMEM; /* the caller frees the partial copy */
	}
	return 0;
}

int cv_x509_info_dup(const struct cv_x509_info *info, struct cv_x509_info **ret_info)
{
	struct cv_x509_info *copy;
	int r;

	copy = malloc(sizeof(*copy));
	if (copy == NULL)
		return CV_ERR_NOMEM;
	*copy = *info;
	copy->domains = copy->ips = NULL;
	copy->n_domains = copy->n_ips = 0;
	r = strings_dup(info->domains, info->n_domains, &copy->domains);
	copy->n_domains = info->n_domains;
	if (r == 0) {
		r = strings_dup(info->ips, info->n_ips, &copy->ips);
		copy->n_ips = info->n_ips;
	}
	if (r < 0) {
		cv_x509_info_free(copy);
		return r;
	}
	*ret_info = copy;
	return 0;
}

size_t cv_x509_pem_cert_count(const char *pem)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	size_t n = 0;

	while ((pem = strstr(pem, begin)) != NULL) {
		n++;
		pem += sizeof(begin) - 1;
	}
	return n;
}

int cv_x509_cert_der(X509 *cert, unsigned char **ret_der, size_t *ret_len)
{
	unsigned char *der = NULL, *p;
	int n, r;

	n = i2d_X509(cert, NULL);
	if (n <= 0) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	der = malloc((size_t)n);
	if (der == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	p = der;
	if (i2d_X509(cert, &p) != n) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	*ret_der = der;
	*ret_len = (size_t)n;
	der = NULL;
	r = 0;
out:
	free(der);
	ERR_clear_error();
	return r;
}

/* PEM of the certificate (pubkey_only: of its public key) as a malloc'd string. */
static int write_pem(X509 *cert, int pubkey_only, char **ret_pem, size_t *ret_len)
{
	BIO *bio = NULL;
	int r;

	bio = BIO_new(BIO_s_mem());
	if (bio == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (pubkey_only ? PEM_write_bio_PUBKEY(bio, X509_get0_pubkey(cert)) != 1
			: PEM_write_bio_X509(bio, cert) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	r = x509_bio_string(bio, ret_pem, ret_len);
out:
	BIO_free(bio);
	ERR_clear_error();
	return r;
}

int cv_x509_cert_pem(X509 *cert, char **ret_pem, size_t *ret_len)
{
	return write_pem(cert, 0, ret_pem, ret_len);
}

int cv_x509_der_pem(const unsigned char *der, size_t len, char **ret_pem, size_t *ret_len)
{
	static const char head[] = "-----BEGIN CERTIFICATE-----\n";
	static const char tail[] = "-----END CERTIFICATE-----\n";
	size_t lines = (len + 47) / 48, off, chunk, used;
	char *pem;

	if (len > INT_MAX)
		return CV_ERR_BAD_ENCODING;
	/* 64 characters and a newline for each 48 bytes, as PEM_write_X509 lays it out. */
	pem = malloc(sizeof(head) - 1 + lines * 65 + sizeof(tail));
	if (pem == NULL)
		return CV_ERR_NOMEM;
	memcpy(pem, head, sizeof(head) - 1);
	used = sizeof(head) - 1;
	for (off = 0; off < len; off += chunk) {
		chunk = len - off < 48 ? len - off : 48;
		used += (size_t)EVP_EncodeBlock((unsigned char *)pem + used, der + off, (int)chunk);
		pem[used++] = '\n';
	}
	memcpy(pem + used, tail, sizeof(tail));
	used += sizeof(tail) - 1;
	*ret_pem = pem;
	*ret_len = used;
	return 0;
}

int cv_x509_pubkey_pem(X509 *cert, char **ret_pem, size_t *ret_len)
{
	return write_pem(cert, 1, ret_pem, ret_len);
}

const char *cv_x509_signature_algorithm_readable(const char *name)
{
	/* OpenSSL's long names of the algorithms a certificate is seen signed with, as a
	 * person reads them in a browser's certificate viewer. */
	static const struct {
		const char *ln, *readable;
	} names[] = {
		{ "md5WithRSAEncryption", "MD5 with RSA" },
		{ "sha1WithRSAEncryption", "SHA-1 with RSA" },
		{ "sha224WithRSAEncryption", "SHA-224 with RSA" },
		{ "sha256WithRSAEncryption", "SHA-256 with RSA" },
		{ "sha384WithRSAEncryption", "SHA-384 with RSA" },
		{ "sha512WithRSAEncryption", "SHA-512 with RSA" },
		{ "rsassaPss", "RSA-PSS" },
		{ "ecdsa-with-SHA1", "ECDSA with SHA-1" },
		{ "ecdsa-with-SHA224", "ECDSA with SHA-224" },
		{ "ecdsa-with-SHA256", "ECDSA with SHA-256" },
		{ "ecdsa-with-SHA384", "ECDSA with SHA-384" },
		{ "ecdsa-with-SHA512", "ECDSA with SHA-512" },
		{ "ED25519", "Ed25519" },
		{ "ED448", "Ed448" },
		{ "dsaWithSHA1", "DSA with SHA-1" },
		{ "dsa_with_SHA256", "DSA with SHA-256" },
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i].ln, name) == 0)
			return names[i].readable;
	return name;
}
