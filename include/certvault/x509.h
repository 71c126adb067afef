/* x509: pure functions over OpenSSL objects — parse, inspect, validate, match.
 * No I/O, no global state; every function is safe to call from many threads at once. */
#ifndef CERTVAULT_X509_H
#define CERTVAULT_X509_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certvault/error.h"

/* How pasted text is encoded: PEM; base64 of DER ("base64"); base64 of PEM ("base64pem"). */
enum cv_encoding {
	CV_ENC_PEM = 0,
	CV_ENC_BASE64,
	CV_ENC_BASE64PEM,
	CV_ENC_FILE,       /* the bytes of an uploaded file: PEM text when it holds a
			      "-----BEGIN " line, else DER (never named by a client) */
};

/* Parses "pem", "base64" or "base64pem" (NULL means pem). Returns 0 or CV_ERR_BAD_REQUEST. */
int cv_x509_encoding_parse(const char *s, enum cv_encoding *ret_enc);

/* Limits on what a client can send. */
#define CV_X509_MAX_CHAIN 16
#define CV_X509_MAX_SANS 1024

/* Parses exactly one certificate. In PEM, text around the single CERTIFICATE block is
 * tolerated, a second certificate is CV_ERR_BAD_ENCODING. On success *ret_cert is the
 * caller's. Errors: CV_ERR_BAD_ENCODING with a message saying what was wrong. */
int cv_x509_cert_parse(const char *text, size_t len, enum cv_encoding enc, X509 **ret_cert,
		       struct cv_errmsg *err);

/* Parses zero or more certificates (a PEM bundle, or one base64 DER certificate).
 * Empty text gives an empty stack. At most CV_X509_MAX_CHAIN entries. The stack and its
 * certificates are the caller's (free with OSSL_STACK_OF_X509_free / sk_X509_pop_free). */
int cv_x509_chain_parse(const char *text, size_t len, enum cv_encoding enc,
			STACK_OF(X509) **ret_chain, struct cv_errmsg *err);

/* Parses a private key: PKCS#1 RSA, SEC1 EC, PKCS#8 (plain or encrypted with password) in
 * PEM or DER (per enc). password may be NULL. Errors: CV_ERR_BAD_ENCODING,
 * CV_ERR_BAD_PASSWORD (encrypted and no or wrong password). The message never contains key
 * bytes or the password. An encrypted PKCS#8 key whose key derivation costs more than
 * CV_X509_MAX_KDF_COST is CV_ERR_LIMIT, refused before any of it runs. *ret_key is the
 * caller's. */
int cv_x509_key_parse(const char *text, size_t len, enum cv_encoding enc, const char *password,
		      EVP_PKEY **ret_key, struct cv_errmsg *err);

/* The most key-derivation work one upload may ask for, in rounds of its hash or mix
 * function: 3,000,000 PBKDF2-HMAC-SHA256 iterations take 1.5 to 2 seconds of one core.
 * OWASP advises 600,000 for PBKDF2-HMAC-SHA256; common tools use 2,048 to 10,000. One
 * encrypted key (PKCS#8) may cost this much, one PKCS#12 file this much in all. */
#define CV_X509_MAX_KDF_COST 3000000L

/* The work that decrypting with the password-based algorithm alg (PBES2 with PBKDF2 or
 * scrypt, PKCS#12's own PBE, PBES1) asks for, read from its parameters without deriving
 * anything: PBKDF2 iterations times the hash blocks of the derived key, scrypt's N * r * p,
 * PKCS#12's iterations times the blocks of key and IV. what names the thing in messages
 * ("the encrypted key"). Returns 0 and *ret_cost (0 when alg has no parameters to read:
 * OpenSSL refuses such an algorithm itself); CV_ERR_LIMIT over CV_X509_MAX_KDF_COST or
 * scrypt asking for more than 32 MiB; CV_ERR_BAD_ENCODING for parameters that cannot be
 * read or another key derivation. */
int cv_x509_kdf_cost(const X509_ALGOR *alg, const char *what, long *ret_cost,
		     struct cv_errmsg *err);

/* What the checks are judged against. */
struct cv_x509_policy {
	time_t now;
	int allow_weak_signatures; /* accept MD5/SHA-1 signed certificates */
	int allow_upcoming;        /* accept one whose start is after now ("upcoming") */
};

/* Checks that chain links to leaf: every entry issued the leaf or another entry (names,
 * key identifiers and a verified signature), and puts the entries in issuing order (the
 * leaf's issuer first). Returns 0, or CV_ERR_BAD_CHAIN naming the first entry (1-based, as
 * given) that is not on the leaf's path, or CV_ERR_NOMEM. An empty chain is fine. */
int cv_x509_chain_link(X509 *leaf, STACK_OF(X509) *chain, struct cv_errmsg *err);

/* Checks a certificate and private key for import, in this order, each with its own error:
 * supported key (RSA 2048-4096, EC P-256/P-384/P-521 named curves, Ed25519) ->
 * CV_ERR_UNSUPPORTED_KEY; not before its start -> CV_ERR_NOT_YET_VALID; not after its end
 * -> CV_ERR_EXPIRED; more than CV_X509_MAX_SANS subject alternative names -> CV_ERR_LIMIT;
 * weak signature -> CV_ERR_WEAK_SIGNATURE; the private key belongs to the
 * certificate -> CV_ERR_KEY_MISMATCH; every chain entry is a CA certificate and the chain
 * links to the certificate (cv_x509_chain_link, which puts it in issuing order) ->
 * CV_ERR_BAD_CHAIN. chain may be NULL; key NULL checks a public certificate (no key: the
 * key's own checks are left out). Returns 0 when all pass. */
int cv_x509_check_import(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
			 const struct cv_x509_policy *policy, struct cv_errmsg *err);

/* The same checks as cv_x509_check_import, every one run whatever the others found (key
 * NULL: those needing the key are left out; chain may be NULL): problem is called with the
 * error and its message for each that fails, in that order. Returns how many failed, or
 * CV_ERR_INTERNAL. For a preview, which must name every problem, not the first. */
int cv_x509_check_import_all(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
			     const struct cv_x509_policy *policy,
			     void (*problem)(void *arg, int code, const char *message), void *arg);

/* Key kinds certvault holds. */
enum cv_key_kind {
	CV_KEY_RSA = 1,
	CV_KEY_EC,
	CV_KEY_ED25519,
};

/* Everything the details view shows that comes from the certificate itself. */
struct cv_x509_info {
	char subject[512];          /* RFC 2253 one-line form */
	char issuer[512];
	char common_name[256];      /* subject CN, "" when none */
	char serial[100];           /* hex, upper case, colon separated: "01:A2:..." */
	char signature_algorithm[64]; /* OpenSSL long name, e.g. "sha256WithRSAEncryption" */
	enum cv_key_kind key_kind;
	int key_bits;               /* RSA modulus bits, EC field bits, 256 for Ed25519 */
	char key_curve[32];         /* "P-256", "P-384", "P-521", "Ed25519", "" for RSA */
	char key_description[32];   /* "RSA 2048", "ECDSA P-256", "Ed25519" */
	time_t not_before;
	time_t not_after;
	char sha256_fingerprint[96]; /* hex upper case colon separated, as openssl x509 -fingerprint */
	char sha1_fingerprint[64];
	int is_ca;
	size_t n_domains;
	char **domains;             /* SAN dNSName entries in order, lower-cased; the CN when there
				       is no SAN DNS entry at all; owned by the info */
	size_t n_ips;
	char **ips;                 /* SAN iPAddress entries as text */
};

/* The key's type and size read back from a key_description this module made ("RSA 2048",
 * "ECDSA P-256", "Ed25519", "DSA 1024"): the type is the first word ("RSA", "ECDSA",
 * "Ed25519"), the size in bits RSA's modulus, the curve's size, 256 for Ed25519; 0 when the
 * description does not say (an explicit or unnamed curve). */
void cv_x509_key_kind_of(const char *description, char ret_type[16], int *ret_bits);

/* Fills a newly allocated info from cert. Returns 0, CV_ERR_NOMEM or CV_ERR_BAD_ENCODING
 * (a certificate OpenSSL parsed but whose fields cannot be read, e.g. a NUL inside a SAN). */
int cv_x509_info_new(X509 *cert, struct cv_x509_info **ret_info);
/* Frees info; accepts NULL. */
void cv_x509_info_free(struct cv_x509_info *info);
/* The certificate's SHA-256 fingerprint as cv_x509_info has it, for a certificate that may
 * still fail the checks. Returns 0 or CV_ERR_INTERNAL. */
int cv_x509_sha256_fingerprint(X509 *cert, char ret[96]);
/* The signature algorithm as a person reads it ("SHA-256 with RSA", "ECDSA with SHA-384")
 * from cv_x509_info's OpenSSL long name; the name itself when it is not one certvault
 * knows. Static. */
const char *cv_x509_signature_algorithm_readable(const char *name);
/* A deep copy of info into a new one. Returns 0 or CV_ERR_NOMEM. */
int cv_x509_info_dup(const struct cv_x509_info *info, struct cv_x509_info **ret_info);

/* A bounded, thread-safe cache of cv_x509_info by certificate DER (src/x509/infocache.c):
 * n_slots entries at most, one per slot, a newcomer replacing the one in its slot. */
struct cv_x509_info_cache;
int cv_x509_info_cache_new(size_t n_slots, struct cv_x509_info_cache **ret_cache);
/* Accepts NULL. */
void cv_x509_info_cache_free(struct cv_x509_info_cache *cache);
/* The details of the certificate der (a new info, the caller's), from the cache when it
 * holds exactly these bytes, else parsed and kept. Returns 0 or the errors of
 * cv_x509_cert_from_der and cv_x509_info_new. */
int cv_x509_info_cached(struct cv_x509_info_cache *cache, const unsigned char *der, size_t len,
			struct cv_x509_info **ret_info);

/* The certificate's DER (malloc'd, caller frees). Returns 0 or an error. */
int cv_x509_cert_der(X509 *cert, unsigned char **ret_der, size_t *ret_len);
/* A certificate from DER (as stored). */
int cv_x509_cert_from_der(const unsigned char *der, size_t len, X509 **ret_cert);
/* How many certificates PEM text holds, counting its CERTIFICATE blocks without decoding
 * them: for text this program wrote (cv_x509_cert_pem), not for a client's. */
size_t cv_x509_pem_cert_count(const char *pem);
/* PEM text of one certificate (malloc'd, NUL-terminated, caller frees). */
int cv_x509_cert_pem(X509 *cert, char **ret_pem, size_t *ret_len);
/* The same PEM text from a certificate's DER, without decoding it: for DER this program
 * stored (it is not checked). */
int cv_x509_der_pem(const unsigned char *der, size_t len, char **ret_pem, size_t *ret_len);
/* PEM text (SubjectPublicKeyInfo, "PUBLIC KEY") of the certificate's public key. */
int cv_x509_pubkey_pem(X509 *cert, char **ret_pem, size_t *ret_len);

/* Certificate status at a moment. */
enum cv_status {
	CV_STATUS_VALID = 0,
	CV_STATUS_EXPIRES_SOON,
	CV_STATUS_EXPIRED,
	CV_STATUS_UPCOMING,
};

/* The status at now, with soon_seconds the "expires soon" threshold:
 * now < not_before -> UPCOMING; now > not_after -> EXPIRED (notAfter itself is still valid,
 * RFC 5280); not_after - now < soon_seconds -> EXPIRES_SOON; else VALID. */
enum cv_status cv_status_at(time_t not_before, time_t not_after, time_t now,
			    int64_t soon_seconds);
/* "valid", "expires_soon", "expired", "upcoming". */
const char *cv_status_name(enum cv_status s);
/* Parses a status name; returns 0 or CV_ERR_BAD_REQUEST. */
int cv_status_parse(const char *s, enum cv_status *ret);
/* Whole days from now until not_after, rounded toward minus infinity (negative once expired). */
int64_t cv_expires_in_days(time_t not_after, time_t now);

/* Whether cert, with chain as untrusted intermediates (may be NULL), verifies up to one of
 * trusted at now (X509_verify_cert; a trusted intermediate may end the chain). Returns 1
 * (trusted) or 0 (not), with OpenSSL's reason in why (may be NULL); or CV_ERR_NOMEM,
 * CV_ERR_INTERNAL. */
int cv_x509_chain_trusted(X509 *cert, STACK_OF(X509) *chain, STACK_OF(X509) *trusted,
			  time_t now, struct cv_errmsg *why);

/* Domain names and coverage (RFC 6125 section 6.4). */
#define CV_DNS_NAME_MAX 253

/* Checks a DNS name a client gave (a service's custom domain, a list filter) and writes its
 * canonical form to ret (lower case, no trailing dot; ret_len > CV_DNS_NAME_MAX): labels of
 * ASCII letters, digits and hyphens, 1 to 63 bytes, no hyphen at either end, at most
 * CV_DNS_NAME_MAX bytes in all; the left-most label may be "*" when two labels or more
 * follow. Non-ASCII (U-labels), IP addresses, partial wildcards are refused. Returns 0 or
 * CV_ERR_BAD_REQUEST with a message naming what is wrong (and not the name itself). */
int cv_x509_domain_normalize(const char *in, char *ret, size_t ret_len, struct cv_errmsg *err);

/* 1 when the certificate name cert_name (a SAN dNSName, or the CN of a certificate without
 * one, as cv_x509_info_new lists them) covers domain (canonical, as above): equal ignoring
 * case and a trailing dot; or cert_name is "*." followed by two labels or more and domain is
 * exactly one label followed by the same. A wildcard covers neither the apex nor a deeper
 * name, partial wildcards ("a*.example.com") cover nothing, and a wildcard domain is covered
 * only by the same wildcard. A-labels are compared as they are. Else 0. */
int cv_x509_name_covers(const char *cert_name, const char *domain);

/* 1 when any of the n names covers domain. */
int cv_x509_names_cover(char *const *names, size_t n, const char *domain);

/* The wildcard that would cover a canonical domain ("*.example.com" for "a.example.com") into
 * ret. Returns 0, or CV_ERR_NOT_FOUND when no wildcard can cover it (fewer than three labels,
 * or a wildcard itself). */
int cv_x509_domain_wildcard(const char *domain, char *ret, size_t ret_len);

/* PKCS#12 (src/x509/pkcs12.c). */

/* Reads a PKCS#12 file (DER, the outer base64 already removed) protected by password (NULL
 * or "" when none was given: a file made without a password is then read). On success
 * *ret_key is its one private key, *ret_cert the certificate of that key and *ret_chain the
 * file's other certificates in the file's order (possibly none), all the caller's.
 * Files encrypted with RC2 and other legacy algorithms are read with OpenSSL's legacy
 * provider, loaded for that parse only (this reads the provider module from disk).
 * Errors: not PKCS#12, cut off, bytes after it, no private key, more than one private key
 * (key bags and shrouded key bags, at any depth), no certificate, more than
 * CV_X509_MAX_CHAIN + 1 certificates, a key derivation other than PBKDF2, scrypt or
 * PKCS#12's own, an algorithm that cannot be decrypted -> CV_ERR_BAD_ENCODING; key
 * derivations that cost more than CV_X509_MAX_KDF_COST in all (cv_x509_kdf_cost, retries
 * included), refused before they run -> CV_ERR_LIMIT; the MAC fails (wrong password, or none given for a protected file)
 * -> CV_ERR_BAD_PASSWORD; no certificate matches the key -> CV_ERR_KEY_MISMATCH. Messages
 * never hold the password or key bytes. */
int cv_x509_pkcs12_parse(const unsigned char *der, size_t len, const char *password,
			 X509 **ret_cert, EVP_PKEY **ret_key, STACK_OF(X509) **ret_chain,
			 struct cv_errmsg *err);

/* A PKCS#12 file as a client sent it: base64 of DER (CV_ENC_BASE64) or an uploaded file
 * (CV_ENC_FILE, DER). Then as cv_x509_pkcs12_parse. */
int cv_x509_pkcs12_parse_text(const char *text, size_t len, enum cv_encoding enc,
			      const char *password, X509 **ret_cert, EVP_PKEY **ret_key,
			      STACK_OF(X509) **ret_chain, struct cv_errmsg *err);

/* An uploaded file that may hold everything: a PEM bundle (CERTIFICATE blocks and at most
 * one private key, in any order), one DER certificate, or a PKCS#12 file (DER, with
 * password). The leaf is the certificate of the key when there is one, else the first; the
 * chain is the other certificates in the file's order. *ret_key is NULL when the file holds
 * no key. All the caller's. Errors as the parsers above, and CV_ERR_BAD_ENCODING for a file
 * that is none of these. */
int cv_x509_bundle_parse(const char *text, size_t len, enum cv_encoding enc,
			 const char *password, X509 **ret_cert, EVP_PKEY **ret_key,
			 STACK_OF(X509) **ret_chain, struct cv_errmsg *err);

/* Writes a PKCS#12 truststore that Java's keytool lists as one trustedCertEntry per
 * certificate, in the order given: certs[i] under aliases[i] (its friendlyName; Java shows
 * it lower-cased), with Java's trusted-key-usage attribute (2.16.840.1.113894.746875.1.1)
 * set to anyExtendedKeyUsage. Certificates encrypted with AES-256-CBC (PBES2, PBKDF2 with
 * HMAC-SHA256), a SHA-256 MAC, 10000 iterations each. n may be 0: a valid file with no
 * entry. On success *ret_der (malloc'd) is the caller's. Errors: CV_ERR_BAD_REQUEST for no
 * password, a password that is not 1 to CV_X509_TRUSTSTORE_PASSWORD_MAX printable ASCII
 * characters, an empty alias, an alias that is not UTF-8 or two that differ only in case;
 * CV_ERR_NOMEM; CV_ERR_INTERNAL. Messages never hold the password. */
#define CV_X509_TRUSTSTORE_PASSWORD_MAX 128
int cv_x509_truststore_pkcs12(X509 *const *certs, const char *const *aliases, size_t n,
			      const char *password, unsigned char **ret_der, size_t *ret_len,
			      struct cv_errmsg *err);

/* Revocation (src/x509/revocation.c): CRLs and OCSP, judged without I/O. */

/* What a revocation check found. */
enum cv_revocation_status {
	CV_REV_NOT_CHECKED = 0, /* no source: no CRL for the issuer, no OCSP or CRL URL used */
	CV_REV_GOOD,
	CV_REV_REVOKED,
	CV_REV_UNKNOWN,         /* a source exists but could not tell (stale, down, bad signature) */
};

/* "not_checked", "good", "revoked", "unknown". */
const char *cv_revocation_status_name(enum cv_revocation_status s);

/* The answer of one source, or of the whole check. */
struct cv_revocation {
	enum cv_revocation_status status;
	char source[320];  /* "crl:<issuer>", "ocsp:<url>", "crl:<url>"; "" when none */
	char detail[256];  /* why, for a person: what the client is shown */
	char log_detail[512]; /* why a fetch failed, in full (address, port, error): for
				 certvaultd's log only, never for the client, whose URL it is */
	int reason;        /* with REVOKED: the CRLReason code, -1 when none was given */
	time_t revoked_at; /* with REVOKED */
};

/* The RFC 5280 name of a CRLReason code ("keyCompromise"); "none given" for -1, "unknown"
 * for a code RFC 5280 does not name. Static. */
const char *cv_x509_crl_reason_name(int reason);

/* Limits on what a CRL or an OCSP answer may hold. */
#define CV_X509_CRL_MAX (1024 * 1024)

/* Parses exactly one CRL: PEM ("X509 CRL" block, text around it tolerated), base64 of DER,
 * base64 of PEM, or the bytes of a file (PEM or DER). *ret_crl is the caller's. Errors:
 * CV_ERR_BAD_ENCODING with what was wrong, CV_ERR_NOMEM. */
int cv_x509_crl_parse(const char *text, size_t len, enum cv_encoding enc, X509_CRL **ret_crl,
		      struct cv_errmsg *err);

/* A CRL's fields as the truststore lists them. */
struct cv_x509_crl_info {
	char issuer[512];       /* RFC 2253 */
	time_t this_update;
	time_t next_update;     /* 0: the CRL names none */
	char number[64];        /* the cRLNumber extension in decimal, "" when none */
	size_t n_revoked;
	char sha256[96];        /* of the DER, hex upper case colon separated */
};
/* Reads the fields of crl. Returns 0, CV_ERR_BAD_ENCODING (a time or name that cannot be
 * read), CV_ERR_NOMEM. */
int cv_x509_crl_info_get(X509_CRL *crl, struct cv_x509_crl_info *ret_info);

/* 1 when ca issued crl: its subject is the CRL's issuer, its key verifies the CRL's
 * signature, and its keyUsage, if any, allows cRLSign; else 0. Clears the thread's OpenSSL
 * error queue. */
int cv_x509_crl_issued_by(X509_CRL *crl, X509 *ca);

/* 1 when issuer issued cert (names match, issuer's key verifies cert's signature); else 0. */
int cv_x509_cert_issued_by(X509 *cert, X509 *issuer);

/* The certificate among candidates (either may be NULL) that issued cert, borrowed from the
 * stack it is in; NULL when none did. A self-signed cert is its own issuer only when it is
 * in a stack. */
X509 *cv_x509_issuer_find(X509 *cert, STACK_OF(X509) *chain, STACK_OF(X509) *trusted);

/* Judges cert against crl, which issuer issued (the caller checked it with
 * cv_x509_crl_issued_by): REVOKED when cert's serial is listed (reason and date filled);
 * UNKNOWN when the CRL is not yet valid at now or its next update is before now - skew;
 * else GOOD. source is copied into ret->source. */
void cv_x509_crl_judge(X509 *cert, X509_CRL *crl, time_t now, long skew, const char *source,
		       struct cv_revocation *ret);

/* The first http:// or https:// URL of cert's Authority Information Access OCSP entries into
 * url. Returns 1, or 0 when there is none (or none that fits). */
int cv_x509_ocsp_url(X509 *cert, char *url, size_t url_len);
/* The first http:// or https:// URL of cert's CRL distribution points (full names). 1 or 0. */
int cv_x509_crl_url(X509 *cert, char *url, size_t url_len);

/* DER of an OCSP request for cert issued by issuer (SHA-1 CertID, as responders expect),
 * with a 16-byte nonce when nonce is set. *ret_der (OPENSSL_malloc'd) is the caller's
 * (OPENSSL_free). Returns 0, CV_ERR_NOMEM, CV_ERR_INTERNAL. */
int cv_x509_ocsp_request(X509 *cert, X509 *issuer, int nonce, unsigned char **ret_der,
			 size_t *ret_len);

/* Judges an OCSP response (DER) about cert issued by issuer: it must be "successful", a
 * basic response signed by issuer or by a responder certificate that issuer issued and that
 * has the OCSP signing extended key usage, hold a SingleResponse for cert, and be fresh:
 * thisUpdate not after now + skew, nextUpdate (when given) not before now - skew, and with no
 * nextUpdate a thisUpdate within max_age seconds. ret: GOOD, REVOKED (reason and date), or
 * UNKNOWN with why (the responder's "unknown" too). source is copied into ret->source. The
 * nonce is not required back (many responders cache). Clears the thread's OpenSSL error
 * queue. */
void cv_x509_ocsp_judge(const unsigned char *der, size_t len, X509 *cert, X509 *issuer,
			time_t now, long skew, long max_age, const char *source,
			struct cv_revocation *ret);

/* Certificate requests and self-signed certificates for keys that live in the token. x509
 * builds the to-be-signed part and takes the signature the token made over it: the private
 * key never reaches this module. */
struct cv_x509_request {
	const char *subject;          /* "CN=www.example.com,O=Example": short names (CN, O, OU,
					 L, ST, C, emailAddress, ...), ',' escaped as "\," */
	const char *const *dns_names; /* subjectAltName dNSName entries */
	size_t n_dns_names;
	const char *const *ip_addresses; /* subjectAltName iPAddress entries (IPv4 or IPv6) */
	size_t n_ip_addresses;
	const char *const *key_usage; /* OpenSSL names: digitalSignature, keyEncipherment, ...;
					 n_key_usage 0: digitalSignature (and keyEncipherment for
					 RSA), as a TLS server needs */
	size_t n_key_usage;
	const char *const *extended_key_usage; /* serverAuth, clientAuth, ...; none: serverAuth */
	size_t n_extended_key_usage;
};

/* How the token must sign for a key: the data cv_x509_tbs_digest gives it is, for RSA a DER
 * DigestInfo of SHA-256 (CKM_RSA_PKCS), for ECDSA a hash (SHA-256, -384, -512 by curve;
 * CKM_ECDSA, signature r || s), for Ed25519 the message itself (CKM_EDDSA). */
enum cv_x509_sig_scheme {
	CV_X509_SIG_RSA_PKCS1 = 1,
	CV_X509_SIG_ECDSA,
	CV_X509_SIG_EDDSA,
};

/* Checks req's subject, names and usages as cv_x509_csr_new would, before any key exists.
 * Returns 0 or CV_ERR_BAD_REQUEST (err says which member). */
int cv_x509_request_check(const struct cv_x509_request *req, struct cv_errmsg *err);

/* Builds an unsigned PKCS#10 request for pub with req's subject, SANs and key usages.
 * Returns 0 and *ret_req (the caller's), CV_ERR_BAD_REQUEST (a subject, name, address or
 * usage that cannot be used: err says which), CV_ERR_UNSUPPORTED_KEY or CV_ERR_NOMEM. */
int cv_x509_csr_new(EVP_PKEY *pub, const struct cv_x509_request *req, X509_REQ **ret_req,
		    struct cv_errmsg *err);
/* Builds an unsigned self-signed certificate for pub (issuer = subject, a random 16-byte
 * serial, valid from now - 60 s for days days, CA:FALSE, subject key id). Same errors. */
int cv_x509_selfsigned_new(EVP_PKEY *pub, const struct cv_x509_request *req, time_t now,
			   int days, X509 **ret_cert, struct cv_errmsg *err);

/* The to-be-signed DER of req (or of cert: exactly one is non-NULL) with the signature
 * algorithm of pub's scheme set, and what the token must sign over it (see
 * cv_x509_sig_scheme) into *ret_data (the caller's, free()). Returns 0, CV_ERR_UNSUPPORTED_KEY
 * or CV_ERR_NOMEM. */
int cv_x509_tbs_digest(X509_REQ *req, X509 *cert, EVP_PKEY *pub,
		       enum cv_x509_sig_scheme *ret_scheme, unsigned char **ret_data,
		       size_t *ret_len);
/* Puts the token's signature (r || s for ECDSA) on req, or on cert (then *ret_cert is the
 * signed certificate, parsed again from its DER, and cert is left as it was), and checks it
 * with pub. Returns 0, CV_ERR_TOKEN (the signature does not verify) or CV_ERR_NOMEM. */
int cv_x509_signature_set(X509_REQ *req, X509 *cert, EVP_PKEY *pub, const unsigned char *sig,
			  size_t sig_len, X509 **ret_cert);

/* The request as PEM ("-----BEGIN CERTIFICATE REQUEST-----") or DER, malloc'd. */
int cv_x509_csr_pem(X509_REQ *req, char **ret_pem, size_t *ret_len);
int cv_x509_csr_der(X509_REQ *req, unsigned char **ret_der, size_t *ret_len);
/* Parses a stored request's DER. Returns 0 or CV_ERR_BAD_ENCODING. */
int cv_x509_csr_from_der(const unsigned char *der, size_t len, X509_REQ **ret_req);

/* Signatures made for clients (POST .../sign; src/x509/sigalg.c): the algorithms taken, by
 * their JOSE names (RFC 7518 3.1, RFC 8037) and by the names of the raw mechanisms. */
enum cv_sign_scheme {
	CV_SIGN_RSA_PKCS1 = 1,     /* RSASSA-PKCS1-v1_5: the token signs a DER DigestInfo */
	CV_SIGN_RSA_PSS,           /* RSASSA-PSS, MGF1 with the same hash, salt as long as it */
	CV_SIGN_ECDSA,             /* the token signs the hash; r || s comes out */
	CV_SIGN_EDDSA,             /* Ed25519 over the message itself (no digest) */
};
struct cv_sign_alg {
	const char *name;          /* "RS256", "rsa-pss-sha384", "ES256", "EdDSA"... */
	enum cv_sign_scheme scheme;
	int md_nid;                /* NID_sha256, NID_sha384, NID_sha512; NID_undef for EdDSA */
	size_t digest_len;         /* the hash's length; 0 for EdDSA */
	int curve_nid;             /* the only curve it takes (JOSE's ES256 is P-256...); 0: any */
	int jose;                  /* a JOSE alg name, usable in a JWS header */
	int der_default;           /* an ECDSA signature is answered as DER unless asked raw
				      (the raw mechanisms: what openssl and X.509 read); the JOSE
				      names answer r || s (RFC 7518 3.4) */
};
/* The algorithms in a fixed order (metrics label them by it): i from 0 up; NULL past the
 * last. */
const struct cv_sign_alg *cv_x509_sign_alg_at(size_t i);
/* The algorithm called name (exact case). Returns 0 and *ret, or CV_ERR_BAD_REQUEST (err
 * names every algorithm there is). */
int cv_x509_sign_alg_find(const char *name, const struct cv_sign_alg **ret,
			  struct cv_errmsg *err);
/* Whether the public key pub can make alg's signatures: RSA for RS and PS and the rsa-*
 * names, EC for ES (on its own curve) and ecdsa-*, Ed25519 for EdDSA. Returns 0, or
 * CV_ERR_ALGORITHM_MISMATCH saying what the key is and which algorithms it takes. */
int cv_x509_sign_alg_fits(const struct cv_sign_alg *alg, EVP_PKEY *pub,
			  struct cv_errmsg *err);
/* The algorithms pub takes, space separated, into buf. */
void cv_x509_sign_algs_for(EVP_PKEY *pub, char *buf, size_t size);
/* What the token signs for alg over a digest (the client hashed): the DigestInfo of the
 * digest for RSASSA-PKCS1-v1_5, the digest itself for PSS and ECDSA, into out (room for
 * *out_len bytes; 19 + 64 always suffice; *out_len is then its length). Returns 0,
 * CV_ERR_DIGEST_LENGTH (not the hash's length: err says both) or CV_ERR_BAD_REQUEST (EdDSA
 * signs a message, never a digest). */
#define CV_SIGN_INPUT_MAX (19 + 64)
int cv_x509_sign_input(const struct cv_sign_alg *alg, const unsigned char *digest, size_t len,
		       unsigned char *out, size_t *out_len, struct cv_errmsg *err);
/* The digest of message with alg's hash into out (64 bytes always suffice); *out_len its
 * length. Returns 0, CV_ERR_BAD_REQUEST for EdDSA or CV_ERR_NOMEM. */
int cv_x509_sign_digest(const struct cv_sign_alg *alg, const unsigned char *message, size_t len,
			unsigned char out[64], size_t *out_len);
/* An ECDSA signature r || s (each half as long) as the DER ECDSA-Sig-Value of RFC 3279
 * (what openssl and X.509 write): *ret_der is the caller's (OPENSSL_free). Returns 0,
 * CV_ERR_BAD_ENCODING (an odd length) or CV_ERR_NOMEM. */
int cv_x509_ecdsa_der(const unsigned char *rs, size_t len, unsigned char **ret_der,
		      size_t *ret_len);

#endif
