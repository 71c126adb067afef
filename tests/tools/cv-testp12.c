/* cv-testp12: writes a PKCS#12 file holding any number of private keys and certificates,
 * for the tests of what certvault refuses (openssl pkcs12 -export writes one key only).
 *
 *   cv-testp12 --out f.p12 --password PW --key k1.pem --key k2.pem --cert c1.pem
 *
 * Keys and certificates are unencrypted PEM files; the file uses OpenSSL's default
 * algorithms (PBES2 with AES-256-CBC, a SHA-256 MAC). Exit 0 on success, 2 on bad
 * arguments, 1 when something else fails. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#define MAX_ITEMS 8

static const char usage[] =
	"usage: cv-testp12 --out FILE --password PW (--key FILE)... (--cert FILE)...\n";

int main(int argc, char **argv)
{
	enum { O_OUT = 1, O_PW, O_KEY, O_CERT };
	static const struct option options[] = {
		{ "out", required_argument, NULL, O_OUT },
		{ "password", required_argument, NULL, O_PW },
		{ "key", required_argument, NULL, O_KEY },
		{ "cert", required_argument, NULL, O_CERT },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL, *password = NULL, *keys[MAX_ITEMS], *certs[MAX_ITEMS];
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	STACK_OF(PKCS7) *safes = NULL;
	PKCS12 *p12 = NULL;
	size_t n_keys = 0, n_certs = 0, i;
	FILE *f = NULL;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c == O_OUT)
			out = optarg;
		else if (c == O_PW)
			password = optarg;
		else if (c == O_KEY && n_keys < MAX_ITEMS)
			keys[n_keys++] = optarg;
		else if (c == O_CERT && n_certs < MAX_ITEMS)
			certs[n_certs++] = optarg;
		else {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind != argc || out == NULL || password == NULL || n_keys + n_certs == 0) {
		fputs(usage, stderr);
		return 2;
	}
	for (i = 0; i < n_keys + n_certs; i++) {
		const char *path = i < n_keys ? keys[i] : certs[i - n_keys];
		EVP_PKEY *pk = NULL;
		X509 *x = NULL;
		int ok;

		f = fopen(path, "r");
		if (f == NULL) {
			perror(path);
			goto out;
		}
		if (i < n_keys) {
			pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
			ok = pk != NULL && PKCS12_add_key(&bags, pk, 0, PKCS12_DEFAULT_ITER,
							  NID_aes_256_cbc, password) != NULL;
		} else {
			x = PEM_read_X509(f, NULL, NULL, NULL);
			ok = x != NULL && PKCS12_add_cert(&bags, x) != NULL;
		}
		EVP_PKEY_free(pk);
		X509_free(x);
		fclose(f);
		f = NULL;
		if (!ok) {
			fprintf(stderr, "cv-testp12: cannot read or add %s\n", path);
			goto out;
		}
	}
	if (PKCS12_add_safe(&safes, bags, NID_aes_256_cbc, PKCS12_DEFAULT_ITER, password) != 1)
		goto out;
	p12 = PKCS12_add_safes(safes, 0);
	if (p12 == NULL || PKCS12_set_mac(p12, password, -1, NULL, 0, PKCS12_DEFAULT_ITER,
					  EVP_sha256()) != 1)
		goto out;
	f = fopen(out, "wb");
	if (f == NULL) {
		perror(out);
		goto out;
	}
	if (i2d_PKCS12_fp(f, p12) != 1)
		goto out;
	rc = 0;
out:
	if (f != NULL && fclose(f) != 0)
		rc = 1;
	if (rc != 0)
		ERR_print_errors_fp(stderr);
	PKCS12_free(p12);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	return rc;
}
