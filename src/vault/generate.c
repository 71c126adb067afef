/* Keys born in the token: generate (a CSR, or a self-signed certificate), the CSR again,
 * merge of the issued certificate, cancel, and the expiry sweep of pending certificates.
 *
 * Crash safety as for imports: the pending row names the key before C_GenerateKeyPair; the
 * row becomes ready (with its CSR) or a certificate in one transaction each; a cancel marks
 * the row before the key is destroyed. The start-up reconciler destroys the key of any row
 * left creating or cancelling, and removes the row. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "certvault/jwk.h"

#include "certvault/fault.h"
#include "internal.h"

#define PENDING_SECONDS_DEFAULT (30 * 86400)

void cv_generate_result_release(struct cv_generate_result *res)
{
	cv_store_pending_free(res->pending);
	free(res->csr_pem);
	cv_store_cert_free(res->rec);
	memset(res, 0, sizeof(*res));
}

static void audit_action(struct cv_audit *a, const char *action)
{
	if (a != NULL)
		snprintf(a->entry.action, sizeof(a->entry.action), "%s", action);
}

static enum cv_token_sign_mechanism mechanism_of(enum cv_x509_sig_scheme scheme)
{
	switch (scheme) {
	case CV_X509_SIG_RSA_PKCS1:
		return CV_TOKEN_SIGN_RSA_PKCS1;
	case CV_X509_SIG_ECDSA:
		return CV_TOKEN_SIGN_ECDSA;
	case CV_X509_SIG_EDDSA:
		return CV_TOKEN_SIGN_EDDSA;
	}
	return 0;
}

/* Signs req (or cert) in the token with the key key_id and puts the signature in place
 * (*ret_cert: the signed certificate). */
static int sign_in_token(struct cv_vault *v, const uint8_t *key_id, X509_REQ *req, X509 *cert,
			 EVP_PKEY *pub, X509 **ret_cert, struct cv_errmsg *err)
{
	struct cv_token_sign_params params = { 0, 0, 0 };
	enum cv_x509_sig_scheme scheme;
	unsigned char *data = NULL, sig[CV_TOKEN_SIG_MAX];
	size_t data_len = 0, sig_len = sizeof(sig);
	int r;

	r = cv_x509_tbs_digest(req, cert, pub, &scheme, &data, &data_len);
	if (r < 0) {
		cv_errmsg_set(err, r, "the request cannot be encoded");
		goto out;
	}
	params.mechanism = mechanism_of(scheme);
	r = cv_token_sign(v->token, key_id, CV_TOKEN_ID_LEN, &params, data, data_len, sig,
			  &sig_len, err);
	if (r < 0)
		goto out;
	r = cv_x509_signature_set(req, cert, pub, sig, sig_len, ret_cert);
	if (r < 0)
		cv_errmsg_set(err, r, r == CV_ERR_TOKEN ? "the token's signature does not verify" :
			      "the signature cannot be set");
out:
	free(data);
	return r;
}

/* The certificate's record for a self-signed certificate or a merge: fields from cert, the
 * pending row's key. */
static int record_for(const struct cv_pending_record *p, X509 *cert, int64_t now,
		      struct cv_cert_record **ret_rec)
{
	struct cv_x509_info *info = NULL;
	struct cv_cert_record *rec;
	size_t i;
	int r;

	rec = calloc(1, sizeof(*rec));
	if (rec == NULL)
		return CV_ERR_NOMEM;
	r = cv_x509_info_new(cert, &info);
	if (r < 0)
		goto out;
	snprintf(rec->name, sizeof(rec->name), "%s", p->name);
	rec->description = strdup(p->description != NULL ? p->description : "");
	rec->chain_pem = strdup("");
	if (rec->description == NULL || rec->chain_pem == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = cv_x509_cert_der(cert, &rec->cert_der, &rec->cert_der_len);
	if (r < 0)
		goto out;
	snprintf(rec->subject, sizeof(rec->subject), "%s", info->subject);
	snprintf(rec->issuer, sizeof(rec->issuer), "%s", info->issuer);
	snprintf(rec->serial, sizeof(rec->serial), "%s", info->serial);
	snprintf(rec->sha256_fingerprint, sizeof(rec->sha256_fingerprint), "%s",
		 info->sha256_fingerprint);
	snprintf(rec->key_description, sizeof(rec->key_description), "%s",
		 info->key_description);
	if (info->n_domains > 0) {
		snprintf(rec->primary_domain, sizeof(rec->primary_domain), "%s", info->domains[0]);
		rec->domains = calloc(info->n_domains, sizeof(*rec->domains));
		if (rec->domains == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		for (i = 0; i < info->n_domains; i++) {
			rec->domains[i] = strdup(info->domains[i]);
			if (rec->domains[i] == NULL) {
				r = CV_ERR_NOMEM;
				goto out;
			}
			rec->n_domains++;
		}
	}
	rec->not_before = info->not_before;
	rec->not_after = info->not_after;
	rec->created_at = now;
	rec->updated_at = now;
	memcpy(rec->key_id, p->key_id, sizeof(rec->key_id));
	snprintf(rec->key_label, sizeof(rec->key_label), "%s", p->key_label);
	rec->key_origin = CV_KEY_ORIGIN_GENERATED;
	*ret_rec = rec;
	rec = NULL;
	r = 0;
out:
	cv_x509_info_free(info);
	cv_store_cert_free(rec);
	return r;
}

/* Destroys a pending row's key and removes the row; a key the token keeps keeps its row
 * (the reconciler tries again at the next start). */
static int pending_undo(struct cv_vault *v, const struct cv_pending_record *p,
			struct cv_errmsg *err)
{
	int r;

	r = vault_key_destroy(v, p->key_id, err);
	if (r < 0)
		return r;
	r = cv_store_pending_remove(v->store, p->id);
	if (r < 0 && r != CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "the database refused the change");
	return 0;
}

static int generate_checks(struct cv_vault *v, const struct cv_generate_request *req,
			   enum cv_token_key_type *ret_type, struct cv_errmsg *err)
{
	int r;

	(void)v;
	r = vault_check_name(req->name, err);
	if (r < 0)
		return r;
	if (strcmp(req->name, "summary") == 0)
		return cv_errmsg_set(err, CV_ERR_INVALID_NAME, "the name \"summary\" is reserved");
	if (req->description != NULL && strlen(req->description) > CV_DESCRIPTION_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "description is longer than %d bytes",
				     CV_DESCRIPTION_MAX);
	if (req->key_type == NULL || cv_token_key_type_parse(req->key_type, ret_type) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"generate\".\"key\" must be "
				     "rsa2048, rsa3072, rsa4096, p256, p384, p521 or ed25519");
	if (req->self_signed && (req->days < 1 || req->days > 3650))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"generate\".\"days\" must be 1 "
				     "to 3650");
	if (!req->self_signed && req->days != 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"generate\".\"days\" is for a "
				     "self-signed certificate only");
	return cv_x509_request_check(&req->x509, err);
}

int cv_vault_cert_generate(struct cv_vault *v, struct cv_audit *audit,
			   const struct cv_generate_request *req, int64_t now,
			   struct cv_generate_result *ret, struct cv_errmsg *err)
{
	struct cv_pending_record *p = NULL;
	struct cv_cert_record *rec = NULL, *cur = NULL;
	enum cv_token_key_type type;
	struct cv_errmsg ignored;
	X509 *unsigned_cert = NULL, *cert = NULL;
	X509_REQ *csr = NULL;
	EVP_PKEY *pub = NULL;
	size_t csr_pem_len;
	char *csr_pem = NULL;
	int r, row = 0, key = 0;

	memset(ret, 0, sizeof(*ret));
	vault_audit_target(audit, req->name);
	if (!req->renew)
		audit_action(audit, "certificate.generate");
	r = generate_checks(v, req, &type, err);
	if (r < 0)
		goto out;
	if (req->renew) {
		r = vault_lookup(v, req->name, &cur, err);
		if (r < 0)
			goto out;
		if (req->self_signed) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a renewal waits for a CA's "
					  "certificate: \"self_signed\" is for new certificates");
			goto out;
		}
		/* As for any renewal of the served certificate: its next key is an admin's. */
		if (v->served != NULL && strcasecmp(v->served, cur->name) == 0 &&
		    (audit == NULL || audit->role != CV_ROLE_ADMIN)) {
			r = cv_errmsg_set(err, CV_ERR_FORBIDDEN, "%s is the certificate the HTTPS "
					  "listener serves (server.tls_certificate): only an "
					  "admin may renew it", cur->name);
			goto out;
		}
	}
	/* A token already gone refuses before the database sees anything. */
	r = cv_token_check(v->token, err);
	if (r < 0)
		goto out;
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	snprintf(p->name, sizeof(p->name), "%s", req->name);
	p->cert_id = cur != NULL ? cur->id : 0;
	p->description = strdup(cur != NULL ? cur->description :
				req->description != NULL ? req->description : "");
	if (p->description == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	snprintf(p->key_type, sizeof(p->key_type), "%s", cv_token_key_type_name(type));
	cv_key_label(p->name, cur != NULL ? cur->version + 1 : 1, p->key_label);
	snprintf(p->subject, sizeof(p->subject), "%s", req->x509.subject);
	snprintf(p->created_by, sizeof(p->created_by), "%s",
		 audit != NULL ? audit->entry.actor_name : "");
	p->created_at = now;
	p->expires_at = now + (v->pending_seconds > 0 ? v->pending_seconds :
			       PENDING_SECONDS_DEFAULT);
	r = cv_token_key_id_new(p->key_id);
	if (r < 0)
		goto out;
	/* The row names the key before it exists. */
	r = cv_store_pending_insert(v->store, p);
	if (r == CV_ERR_NAME_TAKEN && cur == NULL) {
		vault_name_taken(v, req->name, err);
		goto out;
	}
	if (r == CV_ERR_NAME_TAKEN) {
		cv_errmsg_set(err, r, "a renewal of %s is pending already: merge or cancel it first",
			      req->name);
		goto out;
	}
	if (r == CV_ERR_NOT_FOUND) {
		cv_errmsg_set(err, r, "no certificate named %s", req->name);
		goto out;
	}
	if (r < 0) {
		cv_errmsg_set(err, r, "the database refused the certificate");
		goto out;
	}
	row = 1;
	cv_fault_point("generate.after_pending_row");
	r = cv_token_key_generate(v->token, type, p->key_label, p->key_id, sizeof(p->key_id),
				  &pub, err);
	if (r < 0)
		goto out;
	key = 1;
	if (req->self_signed) {
		r = cv_x509_selfsigned_new(pub, &req->x509, (time_t)now, req->days,
					   &unsigned_cert, err);
		if (r == 0)
			r = sign_in_token(v, p->key_id, NULL, unsigned_cert, pub, &cert, err);
		if (r == 0)
			r = record_for(p, cert, now, &rec);
		if (r < 0)
			goto out;
		cv_audit_fingerprint(audit, rec->sha256_fingerprint);
		/* The row goes and the certificate comes in one transaction. */
		r = cv_store_pending_merge_new(v->store, p->id, rec, vault_audit_done(audit));
		vault_audit_written(audit, r);
		if (r < 0) {
			cv_errmsg_set(err, r, "the database refused the certificate");
			goto out;
		}
		row = key = 0;
		cv_fault_point("generate.after_commit");
		ret->rec = rec;
		rec = NULL;
		r = 0;
		goto out;
	}
	r = cv_x509_csr_new(pub, &req->x509, &csr, err);
	if (r == 0)
		r = sign_in_token(v, p->key_id, csr, NULL, pub, NULL, err);
	if (r == 0)
		r = cv_x509_csr_der(csr, &p->csr_der, &p->csr_der_len);
	if (r == 0)
		r = cv_x509_csr_pem(csr, &csr_pem, &csr_pem_len);
	if (r < 0)
		goto out;
	r = cv_store_pending_ready(v->store, p->id, p->csr_der, p->csr_der_len,
				   vault_audit_done(audit));
	vault_audit_written(audit, r);
	/* The row was being created by this node: gone from that state, another node's
	 * reconciler took it over (this node silent past its lease) and destroys the key. */
	if (r == CV_ERR_NOT_FOUND)
		r = CV_ERR_BUSY;
	if (r < 0) {
		vault_write_errmsg(err, r, "the database refused the certificate");
		goto out;
	}
	row = key = 0;
	cv_fault_point("generate.after_commit");
	p->state = CV_PENDING_READY;
	ret->pending = p;
	ret->csr_pem = csr_pem;
	p = NULL;
	csr_pem = NULL;
	r = 0;
out:
	/* Nothing of a refused generate stays; a key the token keeps keeps its row, for the
	 * reconciler at the next start. */
	if (row && key)
		(void)pending_undo(v, p, &ignored);
	else if (row)
		(void)cv_store_pending_remove(v->store, p->id);
	X509_REQ_free(csr);
	X509_free(unsigned_cert);
	X509_free(cert);
	EVP_PKEY_free(pub);
	free(csr_pem);
	cv_store_cert_free(rec);
	cv_store_cert_free(cur);
	cv_store_pending_free(p);
	return r;
}

/* The pending row of name, with the errors a client is told. */
static int pending_lookup(struct cv_vault *v, const char *name,
			  struct cv_pending_record **ret_rec, struct cv_errmsg *err)
{
	struct cv_cert_record *rec = NULL;
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	r = cv_store_pending_get(v->store, name, ret_rec);
	if (r == CV_ERR_NOT_FOUND) {
		if (cv_store_cert_get(v->store, name, &rec) == 0) {
			cv_store_cert_free(rec);
			return cv_errmsg_set(err, CV_ERR_NOT_PENDING, "%s has no generated key "
					     "waiting for a certificate", name);
		}
		return cv_errmsg_set(err, r, "no certificate named %s", name);
	}
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_pending_get(struct cv_vault *v, const char *name,
			 struct cv_pending_record **ret_rec, char **ret_csr_pem,
			 struct cv_errmsg *err)
{
	struct cv_pending_record *p = NULL;
	X509_REQ *csr = NULL;
	size_t len;
	int r;

	r = pending_lookup(v, name, &p, err);
	if (r < 0)
		return r;
	r = cv_x509_csr_from_der(p->csr_der, p->csr_der_len, &csr);
	if (r == 0)
		r = cv_x509_csr_pem(csr, ret_csr_pem, &len);
	X509_REQ_free(csr);
	if (r < 0) {
		cv_store_pending_free(p);
		return cv_errmsg_set(err, CV_ERR_DB, "the stored CSR cannot be read");
	}
	*ret_rec = p;
	return 0;
}

int cv_vault_pending_list(struct cv_vault *v, struct cv_pending_record **ret_recs,
			  size_t *ret_n, struct cv_errmsg *err)
{
	int r = cv_store_pending_list(v->store, ret_recs, ret_n);

	return r < 0 ? cv_errmsg_set(err, r, "the database could not be read") : 0;
}

int cv_vault_pending_count(struct cv_vault *v, int64_t *ret_n, struct cv_errmsg *err)
{
	int r = cv_store_pending_count(v->store, ret_n);

	return r < 0 ? cv_errmsg_set(err, r, "the database could not be read") : 0;
}

int cv_vault_pending_merge(struct cv_vault *v, struct cv_audit *audit,
			   const struct cv_import_request *req, const struct cv_version_ref *ref,
			   const struct cv_jwk_choice *jwk, int64_t now, int64_t *ret_previous,
			   struct cv_revocation *ret_rev, struct cv_jwk_outcome *ret_jwks,
			   struct cv_errmsg *err)
{
	struct cv_import_request in = *req;
	struct cv_pending_record *p = NULL;
	struct cv_cert_record *rec = NULL;
	struct cv_revocation rev;
	X509_REQ *csr = NULL;
	EVP_PKEY *key = NULL;
	int r;

	memset(&rev, 0, sizeof(rev));
	*ret_previous = 0;
	if (ret_jwks != NULL)
		memset(ret_jwks, 0, sizeof(*ret_jwks));
	r = pending_lookup(v, req->name, &p, err);
	if (r < 0)
		goto out;
	r = cv_x509_csr_from_der(p->csr_der, p->csr_der_len, &csr);
	if (r < 0) {
		cv_errmsg_set(err, CV_ERR_DB, "the stored CSR cannot be read");
		r = CV_ERR_DB;
		goto out;
	}
	in.token_key = X509_REQ_get0_pubkey(csr);
	in.token_key_id = p->key_id;
	in.token_key_label = p->key_label;
	if (in.token_key == NULL) {
		r = cv_errmsg_set(err, CV_ERR_DB, "the stored CSR has no public key");
		goto out;
	}
	if (p->cert_id != 0) {
		/* The next version's certificate: a renewal like any other, whose commit also
		 * ends the pending row. */
		r = cv_vault_cert_supersede(v, audit, CV_END_RENEWED, &in, ref, jwk, now,
					    ret_previous, &rev, ret_jwks, err);
		goto out;
	}
	in.description = p->description;
	/* Every import check, the key match against the key waiting in the token included. */
	r = vault_material_check(v, audit, &in, now, &rec, &key, &rev, err);
	if (r < 0)
		goto out;
	memcpy(rec->key_id, p->key_id, sizeof(rec->key_id));
	snprintf(rec->key_label, sizeof(rec->key_label), "%s", p->key_label);
	rec->key_origin = CV_KEY_ORIGIN_GENERATED;
	if (!cv_token_key_exists(v->token, p->key_id, sizeof(p->key_id))) {
		r = cv_token_check(v->token, err);
		if (r == 0)
			r = cv_errmsg_set(err, CV_ERR_TOKEN, "the generated key of %s is not in "
					  "the token", req->name);
		goto out;
	}
	r = cv_store_pending_merge_new(v->store, p->id, rec, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND) {
		/* Another merge or a cancel won the race. */
		r = cv_errmsg_set(err, CV_ERR_NOT_PENDING, "%s has no generated key waiting for a "
				  "certificate any more", req->name);
		goto out;
	}
	if (r < 0) {
		cv_errmsg_set(err, r, "the database refused the certificate");
		goto out;
	}
	cv_fault_point("merge.after_commit");
	r = 0;
out:
	if (ret_rev != NULL)
		*ret_rev = rev;
	X509_REQ_free(csr);
	EVP_PKEY_free(key);
	cv_store_cert_free(rec);
	cv_store_pending_free(p);
	return r;
}

int cv_vault_pending_cancel(struct cv_vault *v, struct cv_audit *audit, const char *name,
			    struct cv_errmsg *err)
{
	struct cv_pending_record *p = NULL;
	int r;

	r = pending_lookup(v, name, &p, err);
	if (r < 0)
		goto out;
	r = cv_token_check(v->token, err);
	if (r < 0)
		goto out;
	/* The point of no return, recorded: the key goes after it whatever happens. */
	r = cv_store_pending_mark_cancelling(v->store, p->id, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND) {
		r = cv_errmsg_set(err, CV_ERR_NOT_PENDING, "%s has no generated key waiting for a "
				  "certificate any more", name);
		goto out;
	}
	if (r < 0) {
		cv_errmsg_set(err, r, "the database refused the change");
		goto out;
	}
	cv_fault_point("cancel.after_mark");
	/* A key the token would not destroy leaves the row cancelling: the next start
	 * finishes it. The cancel itself stands. */
	r = pending_undo(v, p, err);
out:
	cv_store_pending_free(p);
	return r;
}

struct sweep {
	struct cv_vault *v;
	int64_t now;
	unsigned n;
	int startup;        /* the reconciler: rows left creating or cancelling, claimed */
	unsigned undone;
	struct cv_errmsg *err;
};

static int sweep_one(const struct cv_pending_record *p, void *arg)
{
	struct sweep *s = arg;
	struct cv_actor self = { .name = "certvaultd", .role = CV_ROLE_ADMIN };
	struct cv_audit audit;
	char request_id[1] = "";
	int r;

	if (p->state != CV_PENDING_READY) {
		/* A row left creating or cancelling by a crash: only the reconciler touches it,
		 * once it claimed it (its own at start, or a silent node's). */
		if (!s->startup)
			return 0;
		r = pending_undo(s->v, p, s->err);
		if (r == 0)
			s->undone++;
		return r;
	}
	cv_audit_begin(&audit, &self, "certificate.pending_expired", p->name, request_id,
		       s->now);
	r = cv_store_pending_mark_cancelling(s->v->store, p->id, vault_audit_done(&audit));
	if (r == CV_ERR_NOT_FOUND)
		return 0; /* merged or cancelled meanwhile */
	if (r < 0)
		return cv_errmsg_set(s->err, r, "the database refused the change");
	r = pending_undo(s->v, p, s->err);
	if (r == 0)
		s->n++;
	return r;
}

int cv_vault_pending_sweep(struct cv_vault *v, int64_t now, unsigned *ret_n,
			   struct cv_errmsg *err)
{
	struct sweep s = { v, now, 0, 0, 0, err };
	int r;

	r = cv_store_pending_foreach_expired(v->store, now, sweep_one, &s);
	*ret_n = s.n;
	return r;
}

int vault_pending_reconcile(struct cv_vault *v, int64_t now, int mine, unsigned *ret_undone,
			    struct cv_errmsg *err)
{
	struct sweep s = { v, now, 0, 1, 0, err };
	int r;

	/* Only rows being created or cancelled, each claimed first: this node's own (at
	 * start), or those of a node silent past its lease. */
	r = cv_store_pending_foreach_claimed(v->store, now, mine, sweep_one, &s);
	*ret_undone = s.undone;
	return r;
}

int cv_vault_key_uri(struct cv_vault *v, const uint8_t *key_id, const char *label, char *buf,
		     size_t buflen)
{
	return cv_token_key_uri(v->token, key_id, CV_TOKEN_ID_LEN, label, buf, buflen);
}

int cv_vault_key_origin_counts(struct cv_vault *v, int64_t ret_counts[3],
			       struct cv_errmsg *err)
{
	int r = cv_store_key_origin_counts(v->store, ret_counts);

	return r < 0 ? cv_errmsg_set(err, r, "the database could not be read") : 0;
}

int cv_vault_wrapping_key(struct cv_vault *v, char **ret_pem, char ret_kid[64],
			  struct cv_errmsg *err)
{
	char kid[CV_JWK_KID_LEN + 1];
	EVP_PKEY *pub = NULL;
	json_t *jwk = NULL;
	BIO *bio = NULL;
	char *data;
	long len;
	int r;

	r = cv_token_wrapping_key(v->token, &pub, err);
	if (r < 0)
		goto out;
	r = cv_jwk_from_pkey(pub, "RSA-OAEP-256", "enc", &jwk, err);
	if (r == 0)
		r = cv_jwk_thumbprint(jwk, kid, err);
	if (r < 0)
		goto out;
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || !PEM_write_bio_PUBKEY(bio, pub)) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	len = BIO_get_mem_data(bio, &data);
	*ret_pem = malloc((size_t)len + 1);
	if (*ret_pem == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	memcpy(*ret_pem, data, (size_t)len);
	(*ret_pem)[len] = '\0';
	snprintf(ret_kid, 64, "%s", kid);
	r = 0;
out:
	BIO_free(bio);
	json_decref(jwk);
	EVP_PKEY_free(pub);
	return r;
}

int vault_key_unwrap(struct cv_vault *v, const struct cv_import_request *req,
		     EVP_PKEY *cert_key, struct cv_cert_record *rec, struct cv_errmsg *err)
{
	struct cv_x509_request check = { "CN=certvault unwrap check", NULL, 0, NULL, 0, NULL, 0,
					 NULL, 0 };
	struct cv_errmsg ignored;
	char kid[64], *pem = NULL;
	X509_REQ *csr = NULL;
	int r;

	r = cv_vault_wrapping_key(v, &pem, kid, err);
	free(pem);
	if (r < 0)
		return r;
	if (req->wrapped_kid == NULL || strcmp(req->wrapped_kid, kid) != 0)
		return cv_errmsg_set(err, CV_ERR_UNWRAP_FAILED, "\"wrapped_key\".\"kid\" names no "
				     "wrapping key of this vault (GET /v1/wrapping-key)");
	r = cv_token_key_unwrap(v->token, req->wrapped_oaep_sha1, req->encrypted_aes_key,
				req->encrypted_aes_key_len,
				req->wrapped_private_key, req->wrapped_private_key_len, cert_key,
				rec->key_label, rec->key_id, sizeof(rec->key_id), err);
	if (r < 0)
		return r;
	/* The token holds a key now; that it is the certificate's is proven by a signature
	 * made with it that the certificate's key verifies. */
	r = cv_x509_csr_new(cert_key, &check, &csr, err);
	if (r == 0)
		r = sign_in_token(v, rec->key_id, csr, NULL, cert_key, NULL, err);
	X509_REQ_free(csr);
	if (r < 0) {
		(void)vault_key_destroy(v, rec->key_id, &ignored);
		if (r == CV_ERR_TOKEN)
			r = cv_errmsg_set(err, CV_ERR_KEY_MISMATCH, "the unwrapped key does not "
					  "match the certificate");
		return r;
	}
	rec->key_origin = CV_KEY_ORIGIN_UNWRAPPED;
	return 0;
}
