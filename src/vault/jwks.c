/* JWK use cases: a JWK from a certificate, read, delete, and the public JWKS document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "certvault/jwk.h"
#include "certvault/util.h"
#include "internal.h"

int vault_jwk_choice_required(const char *name, const struct cv_jwk_record *linked, size_t n,
			      const char *choices, struct cv_errmsg *err)
{
	char kids[160] = "";
	size_t i, used = 0;

	for (i = 0; i < n && used + strlen(linked[i].kid) + 8 < sizeof(kids); i++)
		used += (size_t)snprintf(kids + used, sizeof(kids) - used, "%s%s",
					 i > 0 ? ", " : "", linked[i].kid);
	if (i < n)
		snprintf(kids + used, sizeof(kids) - used, ", ...");
	return cv_errmsg_set(err, CV_ERR_JWK_CHOICE_REQUIRED,
			     "JWKs are linked to %s (%s): say jwk_action=%s, with confirm=%s",
			     name, kids, choices, name);
}

int vault_cert_jwk(const struct cv_cert_record *rec, const char *alg, const char *use,
		   json_t **ret_jwk, struct cv_errmsg *err)
{
	STACK_OF(X509) *chain = NULL;
	X509 *cert = NULL;
	int r;

	r = cv_x509_cert_from_der(rec->cert_der, rec->cert_der_len, &cert);
	if (r == 0)
		r = cv_x509_chain_parse(rec->chain_pem, strlen(rec->chain_pem), CV_ENC_PEM, &chain,
					err);
	if (r < 0) {
		cv_errmsg_set(err, r, "the stored certificate %s cannot be read", rec->name);
		goto out;
	}
	r = cv_jwk_from_cert(cert, chain, alg, use, ret_jwk, err);
out:
	sk_X509_pop_free(chain, X509_free);
	X509_free(cert);
	return r;
}

/* A kid as this vault makes them: 43 base64url characters (an RFC 7638 thumbprint),
 * optionally followed by ".<alg>.<use>" (see cv_jwk_from_pkey). */
static int check_kid(const char *kid, struct cv_errmsg *err)
{
	static const char b64url[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const char *rest = kid + CV_JWK_KID_LEN, *dot;

	if (strlen(kid) < CV_JWK_KID_LEN || strlen(kid) > CV_JWK_KID_MAX ||
	    strspn(kid, b64url) != CV_JWK_KID_LEN)
		goto bad;
	if (*rest == '\0')
		return 0;
	/* ".ALG.use": an alg of letters, digits, '-' and '+', then sig or enc. */
	dot = strchr(rest + 1, '.');
	if (rest[0] != '.' || dot == NULL || dot == rest + 1 ||
	    strspn(rest + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+") !=
		    (size_t)(dot - rest - 1) ||
	    (strcmp(dot + 1, "sig") != 0 && strcmp(dot + 1, "enc") != 0))
		goto bad;
	return 0;
bad:
	return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
			     "a kid is %d base64url characters (an RFC 7638 thumbprint), for a "
			     "key's other JWKs followed by .<alg>.<use>",
			     CV_JWK_KID_LEN);
}

int cv_vault_jwk_create(struct cv_vault *v, struct cv_audit *audit, const char *certificate,
			const char *alg, const char *use, int64_t now,
			struct cv_jwk_record **ret_rec, struct cv_errmsg *err)
{
	struct cv_cert_record *cert = NULL;
	struct cv_jwk_record *rec = NULL;
	json_t *jwk = NULL;
	int r;

	r = vault_lookup(v, certificate, &cert, err);
	if (r < 0)
		goto out;
	cv_audit_fingerprint(audit, cert->sha256_fingerprint);
	r = vault_cert_jwk(cert, alg, use, &jwk, err);
	if (r < 0)
		goto out;
	rec = calloc(1, sizeof(*rec));
	if (rec == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	snprintf(rec->kid, sizeof(rec->kid), "%s", json_string_value(json_object_get(jwk, "kid")));
	snprintf(rec->use, sizeof(rec->use), "%s", json_string_value(json_object_get(jwk, "use")));
	snprintf(rec->alg, sizeof(rec->alg), "%s", json_string_value(json_object_get(jwk, "alg")));
	snprintf(rec->cert_name, sizeof(rec->cert_name), "%s", cert->name);
	rec->cert_id = cert->id;
	rec->cert_version = cert->version;
	rec->state = CV_JWK_ACTIVE;
	rec->created_at = rec->updated_at = now;
	r = cv_json_text(jwk, JSON_COMPACT, &rec->jwk);
	if (r < 0)
		goto out;
	vault_audit_target(audit, rec->kid);
	r = cv_store_jwk_insert(v->store, rec, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NAME_TAKEN) {
		cv_errmsg_set(err, r, "this key is already the JWK %s", rec->kid);
		goto out;
	}
	if (r == CV_ERR_NOT_FOUND || r == CV_ERR_ALREADY_RENEWED) {
		/* Renewed, replaced or deleted meanwhile: the JWK would be of an old key. */
		r = cv_errmsg_set(err, CV_ERR_ALREADY_RENEWED,
				  "certificate %s changed while the JWK was made: try again",
				  certificate);
		goto out;
	}
	if (r < 0) {
		vault_write_errmsg(err, r, "the database refused the JWK");
		goto out;
	}
	*ret_rec = rec;
	rec = NULL;
out:
	cv_store_jwk_free(rec);
	json_decref(jwk);
	cv_store_cert_free(cert);
	return r;
}

int cv_vault_jwk_list(struct cv_vault *v, const char *certificate, const char *after,
		      unsigned limit, struct cv_jwk_record **ret_recs, size_t *ret_n,
		      int *ret_more, struct cv_errmsg *err)
{
	return cv_vault_jwk_list_scoped(v, certificate, after, limit, NULL, ret_recs, ret_n,
					ret_more, err);
}

int cv_vault_jwk_list_scoped(struct cv_vault *v, const char *certificate, const char *after,
			     unsigned limit, const struct cv_scope_objects *scope,
			     struct cv_jwk_record **ret_recs, size_t *ret_n, int *ret_more,
			     struct cv_errmsg *err)
{
	struct cv_cert_record *rec = NULL;
	int64_t cert_id = 0;
	int r;

	*ret_recs = NULL;
	*ret_n = 0;
	if (after != NULL && (r = check_kid(after, err)) < 0)
		return r;
	if (certificate != NULL) {
		r = vault_lookup(v, certificate, &rec, err);
		if (r < 0)
			return r;
		cert_id = rec->id;
		cv_store_cert_free(rec);
	}
	/* One more than asked says whether a next page exists. */
	r = cv_store_jwk_page_scoped(v->store, cert_id, after, limit + 1, scope, ret_recs, ret_n);
	if (r == CV_ERR_BAD_REQUEST)
		return cv_errmsg_set(err, r, "limit must be from 1 to 999");
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	*ret_more = *ret_n > limit;
	if (*ret_more) {
		free((*ret_recs)[limit].jwk); /* the one record past the page; the array stays */
		*ret_n = limit;
	}
	return 0;
}

int cv_vault_jwk_get(struct cv_vault *v, const char *kid, struct cv_jwk_record **ret_rec,
		     struct cv_errmsg *err)
{
	int r;

	r = check_kid(kid, err);
	if (r < 0)
		return r;
	r = cv_store_jwk_get(v->store, kid, ret_rec);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no JWK with kid %s", kid);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

/* Adds the fingerprint of the certificate version the JWK kid was made from, when it is still
 * linked to it. Only the record needs it, so a failed read leaves it out. */
static void audit_jwk_cert(struct cv_vault *v, struct cv_audit *a, const char *kid)
{
	struct cv_jwk_record *rec = NULL;
	struct cv_cert_version *versions = NULL;
	size_t n = 0, i;

	if (a == NULL || cv_store_jwk_get(v->store, kid, &rec) < 0)
		return;
	if (rec->cert_id != 0 && cv_store_cert_versions(v->store, rec->cert_id, &versions, &n) == 0)
		for (i = 0; i < n; i++)
			if (versions[i].version == rec->cert_version)
				cv_audit_fingerprint(a, versions[i].sha256_fingerprint);
	free(versions);
	cv_store_jwk_free(rec);
}

int cv_vault_jwk_delete(struct cv_vault *v, struct cv_audit *audit, const char *kid,
			struct cv_errmsg *err)
{
	int r;

	r = check_kid(kid, err);
	if (r < 0)
		return r;
	audit_jwk_cert(v, audit, kid);
	r = cv_store_jwk_remove(v->store, kid, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no JWK with kid %s", kid);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the deletion");
	return 0;
}

/* The document as the store's JWKs make it now. */
static int jwks_build(struct cv_vault *v, int64_t now, char **ret_text, size_t *ret_len,
		      char ret_tag[65], int64_t *ret_until, struct cv_errmsg *err)
{
	struct cv_jwk_record *recs = NULL;
	unsigned char digest[32];
	json_t *keys = NULL, *doc = NULL, *one;
	char *text = NULL;
	size_t n = 0, i;
	int r;

	r = cv_store_jwk_published(v->store, now, v->jwks_retention, &recs, &n, ret_until);
	if (r < 0) {
		cv_errmsg_set(err, r, "the database could not be read");
		goto out;
	}
	keys = json_array();
	if (keys == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		one = json_loads(recs[i].jwk, JSON_REJECT_DUPLICATES, NULL);
		if (one == NULL || json_array_append_new(keys, one) < 0) {
			r = cv_errmsg_set(err, CV_ERR_DB, "the stored JWK %s cannot be read",
					  recs[i].kid);
			goto out;
		}
	}
	/* cv_jwks_document refuses any private member: the document is served to anyone. */
	r = cv_jwks_document(keys, &doc, err);
	if (r < 0)
		goto out;
	r = cv_json_text(doc, JSON_COMPACT, &text);
	if (r < 0)
		goto out;
	if (EVP_Digest(text, strlen(text), digest, NULL, EVP_sha256(), NULL) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	cv_hex_encode(digest, 16, ret_tag);
	*ret_len = strlen(text);
	*ret_text = text;
	text = NULL;
	r = 0;
out:
	free(text);
	json_decref(doc);
	json_decref(keys);
	cv_store_jwks_free(recs, n);
	return r;
}

static char *memdup_text(const char *text, size_t len)
{
	char *copy = malloc(len + 1);

	if (copy != NULL)
		memcpy(copy, text, len + 1);
	return copy;
}

int cv_vault_jwks_document(struct cv_vault *v, int64_t now, char **ret_text, size_t *ret_len,
			   char ret_tag[65], struct cv_errmsg *err)
{
	struct vault_jwks_cache *c;
	char *text = NULL, *kept;
	char tag[65] = "";
	int64_t until;
	uint64_t gen;
	size_t len;
	int r;

	if (v->caches == NULL)
		return jwks_build(v, now, ret_text, ret_len, ret_tag, &until, err);
	c = &v->caches->jwks;
	/* Read before the JWKs are: the store moves it only after a change is committed, so a
	 * document built after reading gen holds every change made before gen was reached,
	 * and a write that returned has moved it past any document built before the write. */
	gen = cv_store_jwks_generation(v->store);
	pthread_mutex_lock(&c->lock);
	/* Time changes it too: a superseded JWK leaves when its retention ends. */
	if (c->valid && c->gen == gen && now < c->until) {
		text = memdup_text(c->text, c->len);
		len = c->len;
		memcpy(ret_tag, c->tag, sizeof(c->tag));
	}
	pthread_mutex_unlock(&c->lock);
	if (text != NULL) {
		*ret_text = text;
		*ret_len = len;
		return 0;
	}

	r = jwks_build(v, now, &text, &len, tag, &until, err);
	if (r < 0)
		return r;
	/* Kept unless a newer one is there already (a copy: the caller frees its own). */
	kept = memdup_text(text, len);
	pthread_mutex_lock(&c->lock);
	if (kept != NULL && (!c->valid || c->gen <= gen)) {
		free(c->text);
		c->text = kept;
		c->len = len;
		c->gen = gen;
		c->until = until;
		memcpy(c->tag, tag, sizeof(tag));
		c->valid = 1;
		kept = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	free(kept);
	memcpy(ret_tag, tag, sizeof(tag));
	*ret_text = text;
	*ret_len = len;
	return 0;
}
