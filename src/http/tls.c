/* The HTTPS listener's identity: a certificate of the vault, served with its chain, and a
 * GnuTLS private key that is only a set of callbacks into the token. No key bytes are ever
 * in this process: every handshake signature is a C_Sign in the token. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "certvault/text.h"
#include "tls.h"

/* Intermediates served after the leaf, at most. */
#define TLS_CHAIN_MAX 16

/* One version of the certificate with its key, immutable once made. Each handshake that
 * selected it holds a reference (through the GnuTLS private key made for it), so a renewal
 * frees it only after the last such handshake's session is gone. */
struct tls_identity {
	atomic_uint refs;
	struct cv_vault *vault;        /* borrowed */
	int64_t version;
	char fingerprint[96];
	uint8_t key_id[CV_TOKEN_ID_LEN];
	gnutls_pk_algorithm_t pk;
	unsigned bits;
	unsigned n_certs;
	gnutls_datum_t certs[1 + TLS_CHAIN_MAX]; /* DER: the leaf, then the intermediates */
};

struct tls_listener {
	struct cv_app *app;            /* borrowed */
	char *name;
	pthread_mutex_t lock;          /* guards the three below */
	struct tls_identity *current;  /* never NULL */
	uint64_t generation;           /* the vault's certificate generation current was read at */
	uint64_t failed_generation;    /* the last generation a reload failed at, said once */
};

/* The listener the certificate callback serves: GnuTLS gives that callback no argument. */
static _Atomic(struct tls_listener *) active;

/* One line on stderr with one write(2), as the request log does. */
static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
	char text[512], line[512];
	va_list ap;
	ssize_t w;
	size_t n;

	va_start(ap, fmt);
	if (vsnprintf(text, sizeof(text), fmt, ap) < 0)
		text[0] = '\0';
	va_end(ap);
	/* Names and errors in it may come from a certificate: one line, ASCII. */
	n = cv_text_escape(text, strlen(text), CV_TEXT_ASCII, line, sizeof(line) - 1);
	line[n++] = '\n';
	w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

static void identity_put(struct tls_identity *id)
{
	unsigned i;

	if (id == NULL || atomic_fetch_sub(&id->refs, 1) != 1)
		return;
	for (i = 0; i < id->n_certs; i++)
		gnutls_free(id->certs[i].data);
	free(id);
}

static void identity_get(struct tls_identity *id)
{
	atomic_fetch_add(&id->refs, 1);
}

static int datum_copy(gnutls_datum_t *ret, const unsigned char *data, size_t len)
{
	ret->data = gnutls_malloc(len > 0 ? len : 1);
	if (ret->data == NULL)
		return CV_ERR_NOMEM;
	memcpy(ret->data, data, len);
	ret->size = (unsigned)len;
	return 0;
}

/* The stored chain (PEM written by the vault) as DER, after the leaf. */
static int chain_add(struct tls_identity *id, const char *name, const char *chain_pem,
		     struct cv_errmsg *err)
{
	gnutls_x509_crt_t *crts = NULL;
	unsigned n = 0, i;
	gnutls_datum_t pem;
	int r, g;

	if (chain_pem == NULL || chain_pem[0] == '\0')
		return 0;
	pem.data = (unsigned char *)chain_pem;
	pem.size = (unsigned)strlen(chain_pem);
	g = gnutls_x509_crt_list_import2(&crts, &n, &pem, GNUTLS_X509_FMT_PEM, 0);
	if (g < 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "server.tls_certificate \"%s\": its chain: %s",
				  name, gnutls_strerror(g));
		goto out;
	}
	if (n > TLS_CHAIN_MAX) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG,
				  "server.tls_certificate \"%s\": a chain of %u certificates (at most %d)",
				  name, n, TLS_CHAIN_MAX);
		goto out;
	}
	for (i = 0; i < n; i++) {
		g = gnutls_x509_crt_export2(crts[i], GNUTLS_X509_FMT_DER, &id->certs[id->n_certs]);
		if (g < 0) {
			r = cv_errmsg_set(err, CV_ERR_CONFIG,
					  "server.tls_certificate \"%s\": its chain: %s", name,
					  gnutls_strerror(g));
			goto out;
		}
		id->n_certs++;
	}
	r = 0;
out:
	for (i = 0; i < n; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	return r;
}

/* Reads the current version of the listener's certificate from the vault. */
static int identity_load(const struct tls_listener *l, struct tls_identity **ret_id,
			 struct cv_errmsg *err)
{
	struct cv_cert_view *view = NULL;
	struct tls_identity *id = NULL;
	gnutls_pcert_st pcert;
	int r, g;

	r = cv_vault_cert_get(&l->app->vault, l->name, (int64_t)time(NULL), &view, err);
	if (r == CV_ERR_NOT_FOUND || r == CV_ERR_INVALID_NAME) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG,
				  "server.tls_certificate \"%s\": no certificate of that name in the "
				  "vault", l->name);
		goto out;
	}
	if (r < 0)
		goto out;
	if (!cv_vault_key_exists(&l->app->vault, view->rec->key_id, sizeof(view->rec->key_id),
				 CV_TOKEN_NAMED_UNKNOWN)) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG,
				  "server.tls_certificate \"%s\": the key of its version %lld is not "
				  "in the token", l->name, (long long)view->rec->version);
		goto out;
	}
	id = calloc(1, sizeof(*id));
	if (id == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	atomic_init(&id->refs, 1);
	id->vault = &l->app->vault;
	id->version = view->rec->version;
	snprintf(id->fingerprint, sizeof(id->fingerprint), "%s",
		 view->rec->sha256_fingerprint);
	memcpy(id->key_id, view->rec->key_id, sizeof(id->key_id));
	id->bits = view->info->key_bits > 0 ? (unsigned)view->info->key_bits : 0;
	switch (view->info->key_kind) {
	case CV_KEY_RSA:
		id->pk = GNUTLS_PK_RSA;
		break;
	case CV_KEY_EC:
		id->pk = GNUTLS_PK_ECDSA;
		break;
	case CV_KEY_ED25519:
		id->pk = GNUTLS_PK_EDDSA_ED25519;
		break;
	default:
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "server.tls_certificate \"%s\": key type %s "
				  "cannot serve TLS", l->name, view->info->key_description);
		goto out;
	}
	r = datum_copy(&id->certs[0], view->rec->cert_der, view->rec->cert_der_len);
	if (r < 0)
		goto out;
	id->n_certs = 1;
	/* GnuTLS parses it again at each handshake: find out now whether it can. */
	g = gnutls_pcert_import_x509_raw(&pcert, &id->certs[0], GNUTLS_X509_FMT_DER, 0);
	if (g < 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "server.tls_certificate \"%s\": GnuTLS "
				  "cannot use it: %s", l->name, gnutls_strerror(g));
		goto out;
	}
	gnutls_pcert_deinit(&pcert);
	r = chain_add(id, l->name, view->rec->chain_pem, err);
	if (r < 0)
		goto out;
	*ret_id = id;
	id = NULL;
	r = 0;
out:
	identity_put(id);
	cv_vault_cert_view_free(view);
	return r;
}

/* The identity to serve now, referenced for the caller: reloaded first when a certificate
 * changed since it was read. A failed reload keeps the one served (said once per change). */
static struct tls_identity *identity_current(struct tls_listener *l)
{
	uint64_t gen = cv_vault_certs_generation(&l->app->vault);
	struct tls_identity *id, *fresh = NULL, *old = NULL;
	struct cv_errmsg err = { "" };
	int r;

	pthread_mutex_lock(&l->lock);
	if (gen != l->generation) {
		r = identity_load(l, &fresh, &err);
		if (r == 0) {
			l->generation = gen;
			if (fresh->version != l->current->version ||
			    memcmp(fresh->key_id, l->current->key_id, sizeof(fresh->key_id)) != 0) {
				old = l->current;
				l->current = fresh;
				fresh = NULL;
				log_line("certvaultd: https now serves \"%s\" version %lld (SHA-256 %s)",
					 l->name, (long long)l->current->version,
					 l->current->fingerprint);
			}
		} else if (l->failed_generation != gen) {
			l->failed_generation = gen;
			log_line("certvaultd: https keeps serving \"%s\" version %lld: %s", l->name,
				 (long long)l->current->version,
				 err.text[0] != '\0' ? err.text : cv_strerror(r));
		}
	}
	id = l->current;
	identity_get(id);
	pthread_mutex_unlock(&l->lock);
	identity_put(old);
	identity_put(fresh);
	return id;
}

static enum cv_token_hash token_hash(gnutls_digest_algorithm_t dig)
{
	switch (dig) {
	case GNUTLS_DIG_SHA256:
		return CV_TOKEN_SHA256;
	case GNUTLS_DIG_SHA384:
		return CV_TOKEN_SHA384;
	case GNUTLS_DIG_SHA512:
		return CV_TOKEN_SHA512;
	default:
		return 0;
	}
}

/* Whether the key can make signatures of algorithm sign: PKCS#1 v1.5 and PSS (RSAE) for
 * RSA, ECDSA with SHA-2 for EC keys, Ed25519. */
static int sign_supported(const struct tls_identity *id, gnutls_sign_algorithm_t sign)
{
	gnutls_pk_algorithm_t pk = gnutls_sign_get_pk_algorithm(sign);
	gnutls_digest_algorithm_t dig = gnutls_sign_get_hash_algorithm(sign);

	switch (id->pk) {
	case GNUTLS_PK_RSA:
		return (pk == GNUTLS_PK_RSA || pk == GNUTLS_PK_RSA_PSS) && token_hash(dig) != 0;
	case GNUTLS_PK_ECDSA:
		return pk == GNUTLS_PK_ECDSA && token_hash(dig) != 0;
	case GNUTLS_PK_EDDSA_ED25519:
		return sign == GNUTLS_SIGN_EDDSA_ED25519;
	default:
		return 0;
	}
}

static int on_info(gnutls_privkey_t key, unsigned int flags, void *userdata)
{
	const struct tls_identity *id = userdata;

	(void)key;
	/* Checked first: its flags carry a sign algorithm in the high bits. */
	if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO)
		return sign_supported(id, (gnutls_sign_algorithm_t)GNUTLS_FLAGS_TO_SIGN_ALGO(flags));
	if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
		return (int)id->pk;
	if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
		return (int)id->bits;
	return -1;
}

/* Signs in the token; the signature goes to GnuTLS in memory it frees (gnutls_malloc). An
 * ECDSA signature comes from PKCS#11 as r || s and goes to TLS DER-encoded. */
static int token_sign(const struct tls_identity *id, const struct cv_token_sign_params *params,
		      const gnutls_datum_t *data, gnutls_datum_t *ret_sig)
{
	unsigned char sig[CV_TOKEN_SIG_MAX];
	size_t len = sizeof(sig);
	struct cv_errmsg err = { "" };
	gnutls_datum_t r, s;
	int rc;

	rc = cv_vault_key_sign(id->vault, id->key_id, sizeof(id->key_id), params, data->data,
			       data->size, sig, &len, &err);
	if (rc < 0) {
		log_line("certvaultd: https handshake: signing with version %lld's key failed: %s",
			 (long long)id->version, err.text[0] != '\0' ? err.text : cv_strerror(rc));
		return GNUTLS_E_PK_SIGN_FAILED;
	}
	if (params->mechanism != CV_TOKEN_SIGN_ECDSA)
		return datum_copy(ret_sig, sig, len) < 0 ? GNUTLS_E_MEMORY_ERROR : 0;
	if (len == 0 || len % 2 != 0)
		return GNUTLS_E_PK_SIGN_FAILED;
	r.data = sig;
	r.size = (unsigned)(len / 2);
	s.data = sig + len / 2;
	s.size = (unsigned)(len / 2);
	return gnutls_encode_rs_value(ret_sig, &r, &s);
}

/* Pre-hashed input: a DigestInfo for RSA PKCS#1 v1.5 (GnuTLS says GNUTLS_SIGN_RSA_RAW), the
 * bare hash for RSA-PSS and ECDSA. */
static int on_sign_hash(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
			unsigned int flags, const gnutls_datum_t *hash, gnutls_datum_t *ret_sig)
{
	const struct tls_identity *id = userdata;
	struct cv_token_sign_params params = { 0 };
	gnutls_pk_algorithm_t pk;

	(void)key;
	(void)flags;
	pk = algo == GNUTLS_SIGN_RSA_RAW ? GNUTLS_PK_RSA : gnutls_sign_get_pk_algorithm(algo);
	switch (pk) {
	case GNUTLS_PK_RSA:
		if (id->pk != GNUTLS_PK_RSA)
			return GNUTLS_E_INVALID_REQUEST;
		params.mechanism = CV_TOKEN_SIGN_RSA_PKCS1;
		break;
	case GNUTLS_PK_RSA_PSS:
		if (id->pk != GNUTLS_PK_RSA)
			return GNUTLS_E_INVALID_REQUEST;
		params.mechanism = CV_TOKEN_SIGN_RSA_PSS;
		params.pss_hash = token_hash(gnutls_sign_get_hash_algorithm(algo));
		/* TLS 1.3 (RFC 8446 4.2.3) and GnuTLS use a salt as long as the hash. */
		params.pss_salt_len = hash->size;
		if (params.pss_hash == 0)
			return GNUTLS_E_INVALID_REQUEST;
		break;
	case GNUTLS_PK_ECDSA:
		if (id->pk != GNUTLS_PK_ECDSA)
			return GNUTLS_E_INVALID_REQUEST;
		params.mechanism = CV_TOKEN_SIGN_ECDSA;
		break;
	default:
		return GNUTLS_E_INVALID_REQUEST;
	}
	return token_sign(id, &params, hash, ret_sig);
}

/* Ed25519 signs the message itself. */
static int on_sign_data(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
			unsigned int flags, const gnutls_datum_t *data, gnutls_datum_t *ret_sig)
{
	const struct tls_identity *id = userdata;
	struct cv_token_sign_params params = { 0 };

	(void)key;
	(void)flags;
	if (algo != GNUTLS_SIGN_EDDSA_ED25519 || id->pk != GNUTLS_PK_EDDSA_ED25519)
		return GNUTLS_E_INVALID_REQUEST;
	params.mechanism = CV_TOKEN_SIGN_EDDSA;
	return token_sign(id, &params, data, ret_sig);
}

static void on_key_deinit(gnutls_privkey_t key, void *userdata)
{
	(void)key;
	identity_put(userdata);
}

int tls_on_certificate(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
		       gnutls_pcert_st **ret_certs, unsigned int *ret_n_certs,
		       gnutls_ocsp_data_st **ret_ocsp, unsigned int *ret_n_ocsp,
		       gnutls_privkey_t *ret_key, unsigned int *ret_flags)
{
	struct tls_listener *l = atomic_load(&active);
	struct tls_identity *id = NULL;
	gnutls_pcert_st *pcerts = NULL;
	gnutls_privkey_t key = NULL;
	unsigned n = 0, i;
	int g;

	(void)session;
	(void)info;
	if (l == NULL)
		return -1;
	id = identity_current(l);
	pcerts = gnutls_calloc(id->n_certs, sizeof(*pcerts));
	if (pcerts == NULL)
		goto fail;
	for (n = 0; n < id->n_certs; n++) {
		if (gnutls_pcert_import_x509_raw(&pcerts[n], &id->certs[n], GNUTLS_X509_FMT_DER,
						 0) < 0)
			goto fail;
	}
	if (gnutls_privkey_init(&key) < 0) {
		key = NULL;
		goto fail;
	}
	/* The key holds id's reference from here on and drops it when GnuTLS deinitializes
	 * it with the session. */
	g = gnutls_privkey_import_ext4(key, id, on_sign_data, on_sign_hash, NULL, on_key_deinit,
				       on_info, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE);
	if (g < 0)
		goto fail;
	id = NULL;
	*ret_certs = pcerts;
	*ret_n_certs = n;
	*ret_ocsp = NULL;
	*ret_n_ocsp = 0;
	*ret_key = key;
	*ret_flags = GNUTLS_CERT_RETR_DEINIT_ALL;
	return 0;
fail:
	for (i = 0; i < n; i++)
		gnutls_pcert_deinit(&pcerts[i]);
	gnutls_free(pcerts);
	gnutls_privkey_deinit(key);
	identity_put(id);
	return -1;
}

int tls_listener_new(struct cv_app *app, const char *name, struct tls_listener **ret_listener,
		     struct cv_errmsg *err)
{
	struct tls_listener *l;
	int r;

	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return CV_ERR_NOMEM;
	l->app = app;
	l->name = strdup(name);
	if (l->name == NULL) {
		free(l);
		return CV_ERR_NOMEM;
	}
	if (pthread_mutex_init(&l->lock, NULL) != 0) {
		free(l->name);
		free(l);
		return CV_ERR_INTERNAL;
	}
	/* The generation first: a change after it is then seen by the first handshake. */
	l->generation = cv_vault_certs_generation(&app->vault);
	l->failed_generation = l->generation;
	r = identity_load(l, &l->current, err);
	if (r < 0) {
		l->current = NULL;
		tls_listener_free(l);
		return r;
	}
	*ret_listener = l;
	return 0;
}

void tls_listener_free(struct tls_listener *listener)
{
	if (listener == NULL)
		return;
	identity_put(listener->current);
	pthread_mutex_destroy(&listener->lock);
	free(listener->name);
	free(listener);
}

int tls_listener_activate(struct tls_listener *listener, struct cv_errmsg *err)
{
	struct tls_listener *none = NULL;

	if (!atomic_compare_exchange_strong(&active, &none, listener))
		return cv_errmsg_set(err, CV_ERR_CONFIG,
				     "one HTTPS listener per process: another one is running");
	return 0;
}

void tls_listener_deactivate(struct tls_listener *listener)
{
	struct tls_listener *expected = listener;

	(void)atomic_compare_exchange_strong(&active, &expected, NULL);
}
