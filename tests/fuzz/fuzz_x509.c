/* libFuzzer target: every parser a client's certificate material goes through. The first
 * byte picks the encoding; the rest is the input, given to the certificate, chain, key,
 * bundle and PKCS#12 parsers in turn, and a parsed certificate to the details reader and
 * the import checks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/x509.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum cv_encoding encs[] = { CV_ENC_PEM, CV_ENC_BASE64, CV_ENC_BASE64PEM,
						 CV_ENC_FILE };
	struct cv_x509_policy policy = { 1767225600, 0, 0 };
	struct cv_x509_info *info = NULL;
	STACK_OF(X509) *chain = NULL;
	struct cv_errmsg err;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	enum cv_encoding enc;
	char *text;

	if (size < 1)
		return 0;
	enc = encs[data[0] % 4];
	/* The parsers take text with a length; the HTTP layer hands them NUL-terminated
	 * buffers, so this does too. */
	text = malloc(size);
	if (text == NULL)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	if (cv_x509_cert_parse(text, size - 1, enc, &cert, &err) == 0) {
		if (cv_x509_info_new(cert, &info) == 0)
			cv_x509_info_free(info);
		X509_free(cert);
		cert = NULL;
	}
	if (cv_x509_chain_parse(text, size - 1, enc, &chain, &err) == 0)
		sk_X509_pop_free(chain, X509_free);
	chain = NULL;
	if (cv_x509_key_parse(text, size - 1, enc, "pw", &key, &err) == 0)
		EVP_PKEY_free(key);
	key = NULL;
	if (cv_x509_bundle_parse(text, size - 1, enc, "pw", &cert, &key, &chain, &err) == 0) {
		if (key != NULL)
			cv_x509_check_import(cert, key, chain, &policy, &err);
		if (cv_x509_info_new(cert, &info) == 0)
			cv_x509_info_free(info);
		X509_free(cert);
		EVP_PKEY_free(key);
		sk_X509_pop_free(chain, X509_free);
	}
	cert = NULL;
	key = NULL;
	chain = NULL;
	if (cv_x509_pkcs12_parse(data + 1, size - 1, "pw", &cert, &key, &chain, &err) == 0) {
		X509_free(cert);
		EVP_PKEY_free(key);
		sk_X509_pop_free(chain, X509_free);
	}
	free(text);
	return 0;
}
