/* x509: whether a certificate's chain leads to a trusted CA. */
#include <openssl/x509_vfy.h>

#include "certvault/x509.h"

int cv_x509_chain_trusted(X509 *cert, STACK_OF(X509) *chain, STACK_OF(X509) *trusted,
			  time_t now, struct cv_errmsg *why)
{
	X509_STORE_CTX *ctx = NULL;
	X509_STORE *store = NULL;
	int i, r, ok;

	store = X509_STORE_new();
	ctx = X509_STORE_CTX_new();
	if (store == NULL || ctx == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; trusted != NULL && i < sk_X509_num(trusted); i++) {
		if (X509_STORE_add_cert(store, sk_X509_value(trusted, i)) != 1) {
			r = CV_ERR_INTERNAL;
			goto out;
		}
	}
	if (X509_STORE_CTX_init(ctx, store, cert, chain) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	/* Judged at the vault's clock; a trusted intermediate ends the chain (the truststore
	 * may hold one without its root), as a TLS client configured with it would. */
	X509_STORE_CTX_set_time(ctx, 0, now);
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
	ok = X509_verify_cert(ctx);
	if (ok == 1) {
		cv_errmsg_set(why, 0, "the chain leads to a trusted CA");
		r = 1;
	} else {
		cv_errmsg_set(why, 0, "%s",
			      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		r = 0;
	}
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return r;
}
