/* http: the HTTPS listener's identity. Not installed, not included outside src/http. */
#ifndef CERTVAULT_HTTP_TLS_H
#define CERTVAULT_HTTP_TLS_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

#include "certvault/http.h"

/* The certificate named by server.tls_certificate as the listener serves it: its current
 * version from the vault, with its chain, and a GnuTLS private key whose every signature is
 * made by cv_token_sign, so the key stays in the token. A renewal or replace is seen on the
 * next handshake: each handshake checks the vault's certificate generation (one atomic load)
 * and reloads the certificate when it moved. */
struct tls_listener;

/* Loads the current version of the certificate name for app. Returns 0 and a new listener,
 * or CV_ERR_CONFIG with err saying in one line why it cannot be served (no such
 * certificate, its key is not in the token, a key type GnuTLS cannot use), or the vault's
 * error. */
int tls_listener_new(struct cv_app *app, const char *name, struct tls_listener **ret_listener,
		     struct cv_errmsg *err);
/* Frees the listener; call it only after tls_listener_deactivate and after the daemon that
 * used it stopped. Accepts NULL. */
void tls_listener_free(struct tls_listener *listener);

/* GnuTLS's certificate callback has no argument of its own, so the one listener a process
 * serves is registered here. Returns 0, or CV_ERR_CONFIG when another is active. */
int tls_listener_activate(struct tls_listener *listener, struct cv_errmsg *err);
void tls_listener_deactivate(struct tls_listener *listener);

/* The certificate callback for MHD_OPTION_HTTPS_CERT_CALLBACK2: the active listener's
 * current chain and key, handed to GnuTLS to deinitialize after the handshake
 * (GNUTLS_CERT_RETR_DEINIT_ALL), so a renewal never frees what a handshake still uses. */
int tls_on_certificate(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
		       gnutls_pcert_st **ret_certs, unsigned int *ret_n_certs,
		       gnutls_ocsp_data_st **ret_ocsp, unsigned int *ret_n_ocsp,
		       gnutls_privkey_t *ret_key, unsigned int *ret_flags);

/* GnuTLS's priorities for the listener: TLS 1.3 and 1.2, no RSA key exchange (the key only
 * signs). */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-RSA"

#endif
