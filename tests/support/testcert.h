/* Test support: makes certificates and keys with OpenSSL for unit tests, integration tests
 * (through the cv-testcert tool) and benchmarks. Not part of certvault itself. */
#ifndef CERTVAULT_TESTCERT_H
#define CERTVAULT_TESTCERT_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* key_type: "rsa1024", "rsa2048", "rsa3072", "rsa4096", "rsa8192", "p256", "p384", "p521",
 * "secp256k1", "ed25519", "ed448". Returns a new key or NULL. */
EVP_PKEY *tc_key_new(const char *key_type);

struct tc_cert_spec {
	const char *cn;           /* subject CN; NULL: none */
	const char *sans;         /* comma-separated DNS names; NULL: no SAN extension */
	time_t not_before;        /* absolute */
	time_t not_after;
	const char *md;           /* "sha256" (default when NULL), "sha1", "md5", "sha384" */
	int is_ca;                /* basicConstraints CA:TRUE */
	long serial;              /* 0: random 64-bit */
	X509 *issuer;             /* NULL: self-signed */
	EVP_PKEY *issuer_key;     /* signs when issuer is set */
};

/* A certificate for key's public half, per spec. Returns a new X509 or NULL. */
X509 *tc_cert_new(EVP_PKEY *key, const struct tc_cert_spec *spec);

/* PEM writers; return a malloc'd NUL-terminated string or NULL.
 * key_format: "pkcs8" (default), "pkcs1" (RSA only), "sec1" (EC only), "pkcs8enc" (AES-256-CBC,
 * with password). */
char *tc_cert_pem(X509 *cert);
char *tc_key_pem(EVP_PKEY *key, const char *key_format, const char *password);

#endif
