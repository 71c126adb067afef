/* vault: signatures for clients (issue 18 part 4). A client that may sign sends a digest or
 * a message and gets the signature, made in the token with a certificate's key: the key is
 * used without anyone holding its PIN, and never leaves the token.
 *
 * What is checked before the token is asked: the certificate (and the version named) exists
 * and has a key, it is valid now, the algorithm fits its key, the digest is as long as the
 * algorithm's hash. Every signature is recorded before it is given out (cv_vault_audit_use:
 * the first of an interval written, its repeats counted) and every outcome counted for the
 * metrics. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rsa.h>

#include "certvault/jwk.h"
#include "certvault/util.h"
#include "internal.h"

/* The algorithms' counters, by (algorithm, outcome): index N_SIGN_ALGS is "unknown" (an
 * algorithm no one takes), outcome 0 a signature, -err a refusal. Process-wide atomics: one
 * vault per process, and counting never waits for a lock. */
#define N_SIGN_ALGS 20
#define N_OUTCOMES (-CV_ERR__LAST)
static atomic_uint_fast64_t counts[N_SIGN_ALGS + 1][N_OUTCOMES];

static void count(const struct cv_sign_alg *alg, int r)
{
	size_t i = N_SIGN_ALGS;

	if (alg != NULL)
		for (i = 0; i < N_SIGN_ALGS && cv_x509_sign_alg_at(i) != alg; i++)
			;
	if (r > 0 || -r >= N_OUTCOMES)
		r = CV_ERR_INTERNAL;
	atomic_fetch_add_explicit(&counts[i][-r], 1, memory_order_relaxed);
}

void cv_vault_sign_counts(void (*fn)(const char *alg, int outcome, uint64_t n, void *arg),
			  void *arg)
{
	const struct cv_sign_alg *alg;
	uint64_t n;
	size_t i, o;

	for (i = 0; i <= N_SIGN_ALGS; i++) {
		alg = i < N_SIGN_ALGS ? cv_x509_sign_alg_at(i) : NULL;
		if (i < N_SIGN_ALGS && alg == NULL)
			continue;
		for (o = 0; o < N_OUTCOMES; o++) {
			n = atomic_load_explicit(&counts[i][o], memory_order_relaxed);
			if (n > 0)
				fn(alg != NULL ? alg->name : "unknown", -(int)o, n, arg);
		}
	}
}

/* The certificate's row alone, with vault_lookup's messages: a signature needs neither its
 * services nor its domains. */
static int lookup_row(struct cv_vault *v, const char *name, struct cv_cert_record **ret_rec,
		      struct cv_errmsg *err)
{
	int r = vault_check_name(name, err);

	if (r < 0)
		return r;
	r = cv_store_cert_get_row(v->store, name, ret_rec);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no certificate named %s", name);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

/* The key that signs: one version of a certificate. */
struct signer {
	uint8_t key_id[CV_TOKEN_ID_LEN];
	char key_label[CV_KEY_LABEL_MAX + 1];
	int64_t version;
	char fingerprint[96];
	EVP_PKEY *pub;             /* the certificate's public key */
};

static void signer_release(struct signer *s)
{
	EVP_PKEY_free(s->pub);
	memset(s, 0, sizeof(*s));
}

/* The public key of the certificate with this fingerprint from the vault's cache (a new
 * reference), or NULL. */
static EVP_PKEY *pubkey_cached(struct cv_vault *v, const char *fingerprint)
{
	struct vault_pubkey_cache *c = v->caches != NULL ? &v->caches->pubkeys : NULL;
	EVP_PKEY *pkey = NULL;
	size_t i;

	if (c == NULL || fingerprint[0] == '\0')
		return NULL;
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < VAULT_PUBKEYS; i++)
		if (c->slots[i].pkey != NULL && strcmp(c->slots[i].fingerprint, fingerprint) == 0) {
			if (EVP_PKEY_up_ref(c->slots[i].pkey) == 1)
				pkey = c->slots[i].pkey;
			break;
		}
	pthread_mutex_unlock(&c->lock);
	return pkey;
}

static void pubkey_keep(struct cv_vault *v, const char *fingerprint, EVP_PKEY *pkey)
{
	struct vault_pubkey_cache *c = v->caches != NULL ? &v->caches->pubkeys : NULL;
	size_t i;

	if (c == NULL || fingerprint[0] == '\0' || EVP_PKEY_up_ref(pkey) != 1)
		return;
	pthread_mutex_lock(&c->lock);
	i = c->next++ % VAULT_PUBKEYS;
	EVP_PKEY_free(c->slots[i].pkey);
	snprintf(c->slots[i].fingerprint, sizeof(c->slots[i].fingerprint), "%s", fingerprint);
	c->slots[i].pkey = pkey;
	pthread_mutex_unlock(&c->lock);
}

/* The key of version (0: the current one) of rec, checked usable at now. */
static int signer_of(struct cv_vault *v, const struct cv_cert_record *rec, int64_t version,
		     int64_t now, struct signer *ret, struct cv_errmsg *err)
{
	struct cv_cert_version *versions = NULL;
	unsigned char *der = NULL;
	char *chain = NULL;
	const unsigned char *use_der = rec->cert_der;
	size_t n = 0, i, der_len = 0, use_len = rec->cert_der_len;
	int64_t not_before = rec->not_before, not_after = rec->not_after;
	X509 *cert = NULL;
	int r;

	memset(ret, 0, sizeof(*ret));
	/* Soft delete (issue 18 part 2): a deleted certificate keeps its key in the token but
	 * cannot sign. cv_store_cert_get_row reads active rows only, so a deleted one (state 2,
	 * held) is already "no certificate named"; this check keeps any other state out too. */
	if (rec->state != CV_CERT_ACTIVE)
		return cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no certificate named %s", rec->name);
	if (rec->is_public)
		return cv_errmsg_set(err, CV_ERR_NO_PRIVATE_KEY, "%s is a public certificate: "
				     "certvault holds no key of it", rec->name);
	if (version == 0 || version == rec->version) {
		memcpy(ret->key_id, rec->key_id, CV_TOKEN_ID_LEN);
		snprintf(ret->key_label, sizeof(ret->key_label), "%s", rec->key_label);
		snprintf(ret->fingerprint, sizeof(ret->fingerprint), "%s", rec->sha256_fingerprint);
		ret->version = rec->version;
	} else {
		r = version > 0 && version < rec->version ?
			    cv_store_cert_versions(v->store, rec->id, &versions, &n) :
			    CV_ERR_NOT_FOUND;
		if (r < 0 && r != CV_ERR_NOT_FOUND) {
			r = cv_errmsg_set(err, r, "the database could not be read");
			goto out;
		}
		for (i = 0; r == 0 && i < n && versions[i].version != version; i++)
			;
		if (r < 0 || i == n) {
			r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "%s has versions 1 to %lld",
					  rec->name, (long long)rec->version);
			goto out;
		}
		if (versions[i].key_state != CV_KEY_IN_TOKEN) {
			r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "version %lld of %s has no key any "
					  "more: it was destroyed when the version was superseded",
					  (long long)version, rec->name);
			goto out;
		}
		memcpy(ret->key_id, versions[i].key_id, CV_TOKEN_ID_LEN);
		snprintf(ret->key_label, sizeof(ret->key_label), "%s",
			 versions[i].key_label[0] != '\0' ? versions[i].key_label : rec->name);
		snprintf(ret->fingerprint, sizeof(ret->fingerprint), "%s",
			 versions[i].sha256_fingerprint);
		not_before = versions[i].not_before;
		not_after = versions[i].not_after;
		ret->version = version;
		r = cv_store_cert_version_material(v->store, rec->id, version, &der, &der_len,
						   &chain);
		if (r < 0) {
			r = cv_errmsg_set(err, r, "the database could not be read");
			goto out;
		}
		use_der = der;
		use_len = der_len;
	}
	/* A certificate past its end (or before its start) says its key is not to be relied
	 * on: no signature a verifier would take on its word. */
	if (now > not_after) {
		r = cv_errmsg_set(err, CV_ERR_EXPIRED, "version %lld of %s expired: its key signs "
				  "no more", (long long)ret->version, rec->name);
		goto out;
	}
	if (now < not_before) {
		r = cv_errmsg_set(err, CV_ERR_NOT_YET_VALID, "version %lld of %s is not valid yet: "
				  "its key signs from its start", (long long)ret->version,
				  rec->name);
		goto out;
	}
	ret->pub = pubkey_cached(v, ret->fingerprint);
	if (ret->pub == NULL) {
		r = cv_x509_cert_from_der(use_der, use_len, &cert);
		if (r < 0) {
			cv_errmsg_set(err, r, "the stored certificate cannot be read");
			goto out;
		}
		ret->pub = X509_get_pubkey(cert);
		if (ret->pub == NULL) {
			r = cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY, "the certificate's key cannot "
					  "be read");
			goto out;
		}
		pubkey_keep(v, ret->fingerprint, ret->pub);
	}
	r = 0;
out:
	X509_free(cert);
	free(der);
	free(chain);
	free(versions);
	if (r < 0)
		signer_release(ret);
	return r;
}

static enum cv_token_hash token_hash(int md_nid)
{
	switch (md_nid) {
	case NID_sha256:
		return CV_TOKEN_SHA256;
	case NID_sha384:
		return CV_TOKEN_SHA384;
	default:
		return CV_TOKEN_SHA512;
	}
}

/* Whether an RSA signature over data verifies with pub: a signature made wrong inside the
 * token (a fault in RSA-CRT) would reveal a factor of the modulus to whoever gets it. */
static int rsa_verifies(const struct cv_sign_alg *alg, EVP_PKEY *pub, const unsigned char *digest,
			size_t digest_len, const unsigned char *sig, size_t sig_len)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
	int ok = 0;

	if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_get_digestbynid(alg->md_nid)) != 1)
		goto out;
	if (alg->scheme == CV_SIGN_RSA_PSS &&
	    (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)alg->digest_len) != 1 ||
	     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_get_digestbynid(alg->md_nid)) != 1))
		goto out;
	if (alg->scheme == CV_SIGN_RSA_PKCS1 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1)
		goto out;
	ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1;
out:
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

/* Signs with s's key: digest (the algorithm's hash) or, for EdDSA, message. sig has room for
 * CV_TOKEN_SIG_MAX bytes. */
static int token_sign(struct cv_vault *v, const struct signer *s, const struct cv_sign_alg *alg,
		      const unsigned char *digest, size_t digest_len, const unsigned char *message,
		      size_t message_len, unsigned char *sig, size_t *sig_len,
		      struct cv_errmsg *err)
{
	struct cv_token_sign_params params = { 0, 0, 0 };
	unsigned char input[CV_SIGN_INPUT_MAX];
	size_t input_len = sizeof(input);
	int r;

	*sig_len = CV_TOKEN_SIG_MAX;
	if (alg->scheme == CV_SIGN_EDDSA) {
		params.mechanism = CV_TOKEN_SIGN_EDDSA;
		return cv_token_sign(v->token, s->key_id, CV_TOKEN_ID_LEN, &params, message,
				     message_len, sig, sig_len, err);
	}
	r = cv_x509_sign_input(alg, digest, digest_len, input, &input_len, err);
	if (r < 0)
		return r;
	switch (alg->scheme) {
	case CV_SIGN_RSA_PKCS1:
		params.mechanism = CV_TOKEN_SIGN_RSA_PKCS1;
		break;
	case CV_SIGN_RSA_PSS:
		params.mechanism = CV_TOKEN_SIGN_RSA_PSS;
		params.pss_hash = token_hash(alg->md_nid);
		/* JOSE's PS* (RFC 7518 3.5) and the usual PSS: a salt as long as the hash. */
		params.pss_salt_len = alg->digest_len;
		break;
	default:
		params.mechanism = CV_TOKEN_SIGN_ECDSA;
		break;
	}
	r = cv_token_sign(v->token, s->key_id, CV_TOKEN_ID_LEN, &params, input, input_len, sig,
			  sig_len, err);
	if (r < 0)
		return r;
	if ((alg->scheme == CV_SIGN_RSA_PKCS1 || alg->scheme == CV_SIGN_RSA_PSS) &&
	    !rsa_verifies(alg, s->pub, digest, digest_len, sig, *sig_len)) {
		OPENSSL_cleanse(sig, *sig_len);
		return cv_errmsg_set(err, CV_ERR_TOKEN, "the token's signature does not verify "
				     "with the certificate's key: it was not given out");
	}
	return 0;
}

/* The record of one signature: what signed (the algorithm, the version) in its detail. */
static int record_use(struct cv_vault *v, struct cv_audit *audit, const struct signer *s,
		      const struct cv_sign_alg *alg, struct cv_errmsg *err)
{
	int r;

	if (audit == NULL)
		return 0;
	cv_audit_fingerprint(audit, s->fingerprint);
	snprintf(audit->entry.detail, sizeof(audit->entry.detail), "algorithm=%s version=%lld",
		 alg->name, (long long)s->version);
	r = cv_vault_audit_use(v, audit);
	if (r < 0)
		return vault_write_errmsg(err, r, "the audit record of the signature could not be "
					  "written, so the signature was not given out");
	return 0;
}

int cv_vault_cert_sign(struct cv_vault *v, struct cv_audit *audit, const char *name,
		       const struct cv_sign_request *req, int64_t now, struct cv_sign_result *ret,
		       struct cv_errmsg *err)
{
	const struct cv_sign_alg *alg = NULL;
	struct cv_cert_record *rec = NULL;
	struct signer s;
	unsigned char md[64], *der = NULL;
	const unsigned char *digest = req->digest;
	size_t digest_len = req->digest_len, md_len = 0, der_len = 0;
	int r;

	memset(ret, 0, sizeof(*ret));
	memset(&s, 0, sizeof(s));
	r = cv_x509_sign_alg_find(req->algorithm, &alg, err);
	if (r < 0)
		goto out;
	ret->alg = alg;
	if (req->format == CV_SIGN_FORMAT_DER && alg->scheme != CV_SIGN_ECDSA) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"format\": der is for ECDSA "
				  "signatures; %s has one form only (raw)", alg->name);
		goto out;
	}
	if ((req->digest != NULL) == (req->message != NULL)) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "send either \"digest\" or \"message\"");
		goto out;
	}
	if (alg->scheme == CV_SIGN_EDDSA && req->message == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "%s signs the message itself: send "
				  "\"message\", not \"digest\"", alg->name);
		goto out;
	}
	if (req->message_len > CV_SIGN_MESSAGE_MAX) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"message\" is longer than %d bytes: "
				  "send its digest", CV_SIGN_MESSAGE_MAX);
		goto out;
	}
	r = lookup_row(v, name, &rec, err);
	if (r < 0)
		goto out;
	vault_audit_target(audit, rec->name);
	r = signer_of(v, rec, req->version, now, &s, err);
	if (r < 0)
		goto out;
	cv_audit_fingerprint(audit, s.fingerprint); /* a refusal from here on names it too */
	r = cv_x509_sign_alg_fits(alg, s.pub, err);
	if (r < 0)
		goto out;
	if (req->message != NULL && alg->scheme != CV_SIGN_EDDSA) {
		r = cv_x509_sign_digest(alg, req->message, req->message_len, md, &md_len);
		if (r < 0) {
			cv_errmsg_set(err, r, "the message could not be hashed");
			goto out;
		}
		digest = md;
		digest_len = md_len;
	}
	r = token_sign(v, &s, alg, digest, digest_len, req->message, req->message_len,
		       ret->signature, &ret->len, err);
	if (r < 0)
		goto out;
	ret->format = CV_SIGN_FORMAT_RAW;
	if (alg->scheme == CV_SIGN_ECDSA &&
	    (req->format == CV_SIGN_FORMAT_DER ||
	     (req->format == CV_SIGN_FORMAT_DEFAULT && alg->der_default))) {
		r = cv_x509_ecdsa_der(ret->signature, ret->len, &der, &der_len);
		if (r == 0 && der_len > sizeof(ret->signature))
			r = CV_ERR_INTERNAL;
		if (r < 0) {
			cv_errmsg_set(err, r, "the signature could not be encoded");
			goto out;
		}
		memcpy(ret->signature, der, der_len);
		ret->len = der_len;
		ret->format = CV_SIGN_FORMAT_DER;
	}
	ret->version = s.version;
	if (cv_token_key_uri(v->token, s.key_id, CV_TOKEN_ID_LEN, s.key_label, ret->key_uri,
			     sizeof(ret->key_uri)) < 0)
		ret->key_uri[0] = '\0';
	r = record_use(v, audit, &s, alg, err);
out:
	if (r < 0)
		OPENSSL_cleanse(ret->signature, sizeof(ret->signature));
	count(alg, r);
	OPENSSL_free(der);
	signer_release(&s);
	cv_store_cert_free(rec);
	return r;
}

/* Whether the stored JWK is the key of s (its thumbprint the key's): a JWK row and a
 * certificate row that disagree would sign with a key the JWKS does not publish. */
static int jwk_is_key(const char *jwk_text, EVP_PKEY *pub, struct cv_errmsg *err)
{
	char have[CV_JWK_KID_LEN + 1], want[CV_JWK_KID_LEN + 1];
	json_t *stored = json_loads(jwk_text, JSON_REJECT_DUPLICATES, NULL), *mine = NULL;
	int r;

	r = stored != NULL ? cv_jwk_thumbprint(stored, have, err) : CV_ERR_INTERNAL;
	if (r == 0)
		r = cv_jwk_from_pkey(pub, NULL, NULL, &mine, err);
	if (r == 0)
		r = cv_jwk_thumbprint(mine, want, err);
	if (r == 0 && strcmp(have, want) != 0)
		r = CV_ERR_INTERNAL;
	json_decref(stored);
	json_decref(mine);
	if (r < 0)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "the JWK is not its certificate's key");
	return 0;
}

int cv_vault_jwk_sign(struct cv_vault *v, struct cv_audit *audit, const char *kid,
		      const json_t *header, const char *payload, size_t payload_len, int64_t now,
		      char **ret_jws, size_t *ret_len, const struct cv_sign_alg **ret_alg,
		      char ret_cert[65], int64_t *ret_version, struct cv_errmsg *err)
{
	const struct cv_sign_alg *alg = NULL;
	struct cv_jwk_record *jrec = NULL;
	struct cv_cert_record *rec = NULL;
	struct signer s;
	json_t *jwk = NULL;
	unsigned char md[64], sig[CV_TOKEN_SIG_MAX];
	char *input = NULL;
	size_t input_len = 0, md_len = 0, sig_len = 0;
	int r;

	memset(&s, 0, sizeof(s));
	*ret_jws = NULL;
	r = cv_vault_jwk_get(v, kid, &jrec, err);
	if (r < 0)
		goto out;
	if (strcmp(jrec->use, "sig") != 0) {
		r = cv_errmsg_set(err, CV_ERR_ALGORITHM_MISMATCH, "JWK %s is published for "
				  "encryption (use %s, alg %s): only a \"sig\" JWK signs", kid,
				  jrec->use, jrec->alg);
		goto out;
	}
	if (cv_x509_sign_alg_find(jrec->alg, &alg, NULL) < 0 || !alg->jose) {
		alg = NULL;
		r = cv_errmsg_set(err, CV_ERR_ALGORITHM_MISMATCH, "JWK %s has alg %s, which "
				  "certvault does not sign with", kid, jrec->alg);
		goto out;
	}
	if (jrec->cert_id == 0) {
		r = cv_errmsg_set(err, CV_ERR_NOT_ACTIVE, "JWK %s was disconnected from %s: no key "
				  "of certvault's signs for it", kid, jrec->cert_name);
		goto out;
	}
	if (jrec->state != CV_JWK_ACTIVE) {
		r = cv_errmsg_set(err, CV_ERR_NOT_ACTIVE, "JWK %s was superseded by %s: it stays "
				  "published for verifiers, and signs no more", kid,
				  jrec->superseded_by);
		goto out;
	}
	r = lookup_row(v, jrec->cert_name, &rec, err);
	if (r < 0)
		goto out;
	r = signer_of(v, rec, jrec->cert_version, now, &s, err);
	if (r < 0)
		goto out;
	cv_audit_fingerprint(audit, s.fingerprint);
	r = cv_x509_sign_alg_fits(alg, s.pub, err);
	if (r == 0)
		r = jwk_is_key(jrec->jwk, s.pub, err);
	if (r < 0)
		goto out;
	jwk = json_loads(jrec->jwk, JSON_REJECT_DUPLICATES, NULL);
	if (jwk == NULL) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "the stored JWK cannot be read");
		goto out;
	}
	r = cv_jws_signing_input(header, jrec->alg, jrec->kid, jwk, payload, payload_len, &input,
				 &input_len, err);
	if (r < 0)
		goto out;
	if (alg->scheme != CV_SIGN_EDDSA) {
		r = cv_x509_sign_digest(alg, (const unsigned char *)input, input_len, md, &md_len);
		if (r < 0) {
			cv_errmsg_set(err, r, "the signing input could not be hashed");
			goto out;
		}
	}
	/* ES*: r || s as the token makes it is what JWS wants (RFC 7518 3.4). */
	r = token_sign(v, &s, alg, md, md_len, (const unsigned char *)input, input_len, sig,
		       &sig_len, err);
	if (r < 0)
		goto out;
	r = record_use(v, audit, &s, alg, err);
	if (r < 0)
		goto out;
	r = cv_jws_compact(input, input_len, sig, sig_len, ret_jws, ret_len);
	if (r < 0) {
		cv_errmsg_set(err, r, "out of memory");
		goto out;
	}
	*ret_alg = alg;
	snprintf(ret_cert, 65, "%s", rec->name);
	*ret_version = s.version;
out:
	count(alg, r);
	OPENSSL_cleanse(sig, sizeof(sig));
	free(input);
	json_decref(jwk);
	signer_release(&s);
	cv_store_cert_free(rec);
	cv_store_jwk_free(jrec);
	return r;
}
