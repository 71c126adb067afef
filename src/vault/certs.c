/* Certificate use cases: import, details, edit, delete, export. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "certvault/fault.h"
#include "certvault/net.h"
#include "certvault/text.h"
#include "certvault/util.h"
#include "internal.h"

/* Text shown as it is: no control characters (C0, DEL, C1). */
static int text_printable(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	for (; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
			return 0;
	return 1;
}

static void strings_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

static json_t *strings_array(char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

int vault_tags_make(const struct cv_tag *tags, size_t n, char ***ret, struct cv_errmsg *err)
{
	char **out = NULL;
	size_t i, j, klen, vlen;
	int r;

	*ret = NULL;
	if (n > CV_TAGS_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a certificate has at most %d tags",
				     CV_TAGS_MAX);
	if (n == 0)
		return 0;
	out = calloc(n, sizeof(*out));
	if (out == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; i < n; i++) {
		klen = strlen(tags[i].key);
		vlen = strlen(tags[i].value);
		if (klen == 0 || klen > CV_TAG_KEY_MAX ||
		    strspn(tags[i].key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					"0123456789._-") != klen) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "tag %zu: a key is 1 to %d letters, digits, '.', '_' or '-'",
					  i + 1, CV_TAG_KEY_MAX);
			goto out;
		}
		if (vlen > CV_TAG_VALUE_MAX || !text_printable(tags[i].value)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					  "tag %s: a value is at most %d bytes of text without control"
					  " characters", tags[i].key, CV_TAG_VALUE_MAX);
			goto out;
		}
		for (j = 0; j < i; j++)
			if (strcmp(tags[i].key, tags[j].key) == 0) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "tag %s is given twice",
						  tags[i].key);
				goto out;
			}
		out[i] = malloc(klen + vlen + 2);
		if (out[i] == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		memcpy(out[i], tags[i].key, klen);
		out[i][klen] = '=';
		memcpy(out[i] + klen + 1, tags[i].value, vlen + 1);
	}
	*ret = out;
	out = NULL;
	r = 0;
out:
	strings_free(out, n);
	return r;
}

int vault_check_name(const char *name, struct cv_errmsg *err)
{
	if (!cv_name_valid(name))
		return cv_errmsg_set(err, CV_ERR_INVALID_NAME,
				     "name must be 1 to %d letters, digits or hyphens", CV_NAME_MAX);
	return 0;
}

/* Appends the certificates of more to chain (emptying more). */
static int chain_append(STACK_OF(X509) *chain, STACK_OF(X509) *more, struct cv_errmsg *err)
{
	while (sk_X509_num(more) > 0) {
		if (sk_X509_num(chain) >= CV_X509_MAX_CHAIN)
			return cv_errmsg_set(err, CV_ERR_BAD_CHAIN, "the chain holds more than %d "
					     "certificates", CV_X509_MAX_CHAIN);
		if (sk_X509_push(chain, sk_X509_value(more, 0)) <= 0)
			return CV_ERR_NOMEM;
		(void)sk_X509_shift(more);
	}
	return 0;
}

/* The certificate at req->position of the chain the endpoint at req->url presents, and the
 * entries after it as its chain (see cv_import_request). The fetch is the truststore's: one
 * entry point, one address policy. */
static int material_from_url(struct cv_vault *v, const struct cv_import_request *req,
			     X509 **ret_cert, STACK_OF(X509) **ret_chain, struct cv_errmsg *err)
{
	STACK_OF(X509) *all = NULL, *chain = NULL;
	X509 *cert = NULL;
	int n, i, r;

	if (req->certificate != NULL || req->private_key != NULL || req->pkcs12 != NULL ||
	    req->chain != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"url\" comes alone: the "
				     "certificate and its chain are what the server presents");
	r = cv_net_fetch_chain(&v->truststore_net, req->url, req->timeout_ms, &all, err);
	if (r < 0)
		return r;
	n = sk_X509_num(all);
	if (req->position < 0 || req->position >= n) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the server presented %d certificate%s:"
				  " \"position\" is 0 to %d", n, n == 1 ? "" : "s", n - 1);
		goto out;
	}
	chain = sk_X509_new_null();
	if (chain == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = (int)req->position + 1; i < n && i <= (int)req->position + CV_X509_MAX_CHAIN;
	     i++) {
		X509 *c = sk_X509_value(all, i);

		if (X509_up_ref(c) != 1) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		if (sk_X509_push(chain, c) <= 0) {
			X509_free(c);
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	cert = sk_X509_value(all, (int)req->position);
	if (X509_up_ref(cert) != 1) {
		cert = NULL;
		r = CV_ERR_NOMEM;
		goto out;
	}
	*ret_cert = cert;
	*ret_chain = chain;
	cert = NULL;
	chain = NULL;
	r = 0;
out:
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(all, X509_free);
	return r;
}

/* Parses everything the client sent, whichever way it came (see cv_import_request).
 * *ret_chain is always set (possibly empty) on success. */
static int parse_material(struct cv_vault *v, const struct cv_import_request *req,
			  X509 **ret_cert, EVP_PKEY **ret_key, STACK_OF(X509) **ret_chain,
			  struct cv_errmsg *err)
{
	STACK_OF(X509) *more = NULL;
	int r;

	if (req->wrapped_private_key != NULL && (req->pkcs12 != NULL || req->private_key != NULL))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a wrapped key comes alone: send no "
				     "\"private_key\" or \"pkcs12\" with \"wrapped_key\"");
	if (req->token_key != NULL && (req->pkcs12 != NULL || req->private_key != NULL))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the key is in the token already: "
				     "send the certificate (and its chain) only");
	if (req->url != NULL)
		return material_from_url(v, req, ret_cert, ret_chain, err);
	if (req->pkcs12 != NULL) {
		if (req->certificate != NULL || req->private_key != NULL || req->chain != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a PKCS#12 file comes alone: "
					     "its key, certificate and chain are taken from it");
		return cv_x509_pkcs12_parse_text(req->pkcs12, req->pkcs12_len,
						 req->pkcs12_encoding, req->password, ret_cert,
						 ret_key, ret_chain, err);
	}
	if (req->certificate == NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"certificate\" is required");
	if (req->bundle)
		r = cv_x509_bundle_parse(req->certificate, req->certificate_len, req->encoding,
					 req->password, ret_cert, ret_key, ret_chain, err);
	else
		r = cv_x509_cert_parse(req->certificate, req->certificate_len, req->encoding,
				       ret_cert, err);
	if (r < 0)
		return r;
	if (*ret_key != NULL && req->token_key != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the certificate file holds a "
				     "private key: the key is in the token already");
	if (*ret_key != NULL && req->wrapped_private_key != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the certificate file holds a "
				     "private key: send it wrapped or not at all");
	if (req->token_key != NULL) {
		if (!EVP_PKEY_up_ref(req->token_key))
			return CV_ERR_INTERNAL;
		*ret_key = req->token_key;
	}
	/* A wrapped key is never decoded here: the checks see the certificate's own public
	 * key, and the token proves the unwrapped key matches it (vault_key_unwrap). */
	if (req->wrapped_private_key != NULL) {
		*ret_key = X509_get_pubkey(*ret_cert);
		if (*ret_key == NULL)
			return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY, "the certificate's public "
					     "key cannot be read");
	}
	if (*ret_key != NULL && req->private_key != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the certificate file holds a "
				     "private key already: send no other");
	/* No key at all: a public certificate. */
	if (*ret_key == NULL && req->private_key != NULL) {
		r = cv_x509_key_parse(req->private_key, req->private_key_len, req->encoding,
				      req->password, ret_key, err);
		if (r < 0)
			return r;
	}
	r = cv_x509_chain_parse(req->chain != NULL ? req->chain : "",
				req->chain != NULL ? req->chain_len : 0, req->encoding, &more,
				err);
	if (r < 0)
		return r;
	if (*ret_chain == NULL) {
		*ret_chain = more;
		return 0;
	}
	r = chain_append(*ret_chain, more, err);
	sk_X509_pop_free(more, X509_free);
	return r;
}

/* The chain as one PEM bundle, "" when empty. */
static int chain_to_pem(STACK_OF(X509) *chain, char **ret_pem)
{
	char *all = NULL, *pem = NULL, *grown;
	size_t total = 0, len;
	int i, r;

	all = strdup("");
	if (all == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; i < sk_X509_num(chain); i++) {
		r = cv_x509_cert_pem(sk_X509_value(chain, i), &pem, &len);
		if (r < 0)
			goto out;
		grown = realloc(all, total + len + 1);
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		all = grown;
		memcpy(all + total, pem, len + 1);
		total += len;
		free(pem);
		pem = NULL;
	}
	*ret_pem = all;
	all = NULL;
	r = 0;
out:
	free(pem);
	free(all);
	return r;
}

/* Fills a new record from the parsed certificate. */
static int record_from_cert(const struct cv_import_request *req, X509 *cert, EVP_PKEY *key,
			    STACK_OF(X509) *chain, const struct cv_x509_info *info, int64_t now,
			    struct cv_cert_record **ret_rec)
{
	struct cv_cert_record *rec;
	size_t i;
	int r;

	rec = calloc(1, sizeof(*rec));
	if (rec == NULL)
		return CV_ERR_NOMEM;
	snprintf(rec->name, sizeof(rec->name), "%s", req->name);
	rec->description = strdup(req->description != NULL ? req->description : "");
	if (rec->description == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = cv_x509_cert_der(cert, &rec->cert_der, &rec->cert_der_len);
	if (r < 0)
		goto out;
	r = chain_to_pem(chain, &rec->chain_pem);
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
		snprintf(rec->primary_domain, sizeof(rec->primary_domain), "%s",
			 info->domains[0]);
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
	} else if (info->n_ips > 0) {
		/* No DNS name: the certificate is for an address, and the list shows it. */
		snprintf(rec->primary_domain, sizeof(rec->primary_domain), "%s", info->ips[0]);
	}
	rec->not_before = info->not_before;
	rec->not_after = info->not_after;
	rec->is_public = key == NULL;
	snprintf(rec->key_label, sizeof(rec->key_label), "%s", req->name);
	r = vault_tags_make(req->tags, req->n_tags, &rec->tags, NULL);
	if (r < 0)
		goto out;
	rec->n_tags = req->n_tags;
	if (req->n_environments > 0) {
		rec->environments = calloc(req->n_environments, sizeof(*rec->environments));
		if (rec->environments == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		for (i = 0; i < req->n_environments; i++) {
			rec->environments[i] = strdup(req->environments[i]);
			if (rec->environments[i] == NULL) {
				r = CV_ERR_NOMEM;
				goto out;
			}
			rec->n_environments++;
		}
	}
	rec->created_at = now;
	rec->updated_at = now;
	/* The id carries certvault's marker, so that a key left behind is known as its own. */
	r = cv_token_key_id_new(rec->key_id);
	if (r < 0)
		goto out;
	*ret_rec = rec;
	rec = NULL;
	r = 0;
out:
	cv_store_cert_free(rec);
	return r;
}

int vault_material_check(struct cv_vault *v, struct cv_audit *audit,
			 const struct cv_import_request *req, int64_t now,
			 struct cv_cert_record **ret_rec, EVP_PKEY **ret_key,
			 struct cv_revocation *ret_rev, struct cv_errmsg *err)
{
	struct cv_x509_policy policy = { (time_t)now, v->allow_weak_signatures,
					 req->allow_upcoming };
	struct cv_x509_info *info = NULL;
	struct cv_cert_record *rec = NULL;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char fp[96];
	int r;

	r = parse_material(v, req, &cert, &key, &chain, err);
	/* The certificate may parse and its key or chain not: the refusal still names it. */
	if (cert != NULL && cv_x509_sha256_fingerprint(cert, fp) == 0)
		cv_audit_fingerprint(audit, fp);
	if (r < 0)
		goto out;
	r = cv_x509_check_import(cert, key, chain, &policy, err);
	if (r < 0)
		goto out;
	r = cv_x509_info_new(cert, &info);
	if (r < 0) {
		cv_errmsg_set(err, r, "the certificate's fields cannot be read");
		goto out;
	}
	/* Last: the one check that may ask the network. */
	r = vault_revocation_check(v, cert, info->issuer, chain, now, ret_rev, err);
	if (r < 0)
		goto out;
	r = record_from_cert(req, cert, key, chain, info, now, &rec);
	if (r < 0)
		goto out;
	/* The details keep who did it and what the check found, with the row it made. */
	if (audit != NULL) {
		snprintf(rec->created_by, sizeof(rec->created_by), "%s", audit->entry.actor_name);
		snprintf(rec->updated_by, sizeof(rec->updated_by), "%s", audit->entry.actor_name);
	}
	if (ret_rev != NULL) {
		snprintf(rec->revocation_status, sizeof(rec->revocation_status), "%s",
			 cv_revocation_status_name(ret_rev->status));
		snprintf(rec->revocation_source, sizeof(rec->revocation_source), "%s",
			 ret_rev->source);
		snprintf(rec->revocation_detail, sizeof(rec->revocation_detail), "%s",
			 ret_rev->detail);
		rec->revocation_checked_at = now;
	}
	*ret_rec = rec;
	*ret_key = key;
	rec = NULL;
	key = NULL;
	r = 0;
out:
	cv_store_cert_free(rec);
	cv_x509_info_free(info);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	X509_free(cert);
	return r;
}

int vault_key_destroy(struct cv_vault *v, const uint8_t *key_id, struct cv_errmsg *err)
{
	int r = cv_token_key_destroy(v->token, key_id, CV_TOKEN_ID_LEN, err);

	return r == CV_ERR_NOT_FOUND ? 0 : r;
}

int cv_vault_cert_import(struct cv_vault *v, struct cv_audit *audit,
			 const struct cv_import_request *req, int64_t now,
			 struct cv_cert_record **ret_rec, struct cv_revocation *ret_rev,
			 struct cv_errmsg *err)
{
	struct cv_revocation rev;
	struct cv_conflict conflict = { "", "", 0, 0 };
	struct cv_cert_record *rec = NULL;
	EVP_PKEY *key = NULL;
	json_t *changes;
	char **tags = NULL;
	int r, pending = 0;

	memset(&rev, 0, sizeof(rev));
	vault_audit_target(audit, req->name);
	r = vault_check_name(req->name, err);
	if (r < 0)
		goto out;
	/* GET /v1/certificates/summary is the counts: a certificate of that name could never
	 * be read back. */
	if (cv_text_name_equal(req->name, "summary")) {
		r = cv_errmsg_set(err, CV_ERR_INVALID_NAME, "the name \"summary\" is reserved");
		goto out;
	}
	if (req->description != NULL && strlen(req->description) > CV_DESCRIPTION_MAX) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "description is longer than %d bytes", CV_DESCRIPTION_MAX);
		goto out;
	}
	r = vault_check_environments(req->environments, req->n_environments, err);
	if (r == 0)
		r = vault_tags_make(req->tags, req->n_tags, &tags, err); /* checked here, kept by rec */
	if (r < 0)
		goto out;
	r = vault_material_check(v, audit, req, now, &rec, &key, &rev, err);
	if (r < 0)
		goto out;
	changes = json_pack("{s:s, s:o, s:o}", "kind", rec->is_public ? "public" : "key_pair",
			    "environments", strings_array(rec->environments, rec->n_environments),
			    "tags", strings_array(rec->tags, rec->n_tags));
	if (changes != NULL && req->url != NULL)
		json_object_set_new(changes, "source", json_string(req->url));
	vault_audit_changes(audit, changes);

	/* A token already gone refuses the import before the database sees it; a public
	 * certificate does not need it. */
	r = key != NULL ? cv_token_check(v->token, err) : 0;
	if (r < 0)
		goto out;
	/* The pending row names the key before it exists, so a crash between the two steps
	 * leaves something the reconciler can find and undo. */
	cv_key_label(rec->name, 1, rec->key_label);
	if (req->wrapped_private_key != NULL)
		rec->key_origin = CV_KEY_ORIGIN_UNWRAPPED;
	r = cv_store_cert_insert_pending(v->store, rec, &conflict);
	if (r == CV_ERR_NAME_TAKEN) {
		vault_name_taken(v, req->name, err);
		goto out;
	}
	if (r == CV_ERR_UNKNOWN_ENVIRONMENT) {
		cv_errmsg_set(err, r, "no environment named %s", conflict.detail);
		goto out;
	}
	if (r < 0) {
		vault_write_errmsg(err, r, "the database refused the certificate");
		goto out;
	}
	pending = 1;
	cv_fault_point("import.after_pending_row");
	/* A public certificate has no key: none is created. */
	if (key == NULL)
		r = 0;
	else if (req->wrapped_private_key != NULL)
		r = vault_key_unwrap(v, req, key, rec, err);
	else
		r = cv_token_key_create(v->token, key, rec->key_label, rec->key_id,
					sizeof(rec->key_id), err);
	if (r < 0)
		goto out;
	/* The import's commit: the record goes with it. */
	r = cv_store_cert_activate(v->store, rec->id, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r < 0) {
		struct cv_errmsg ignored;

		/* A key the token would not destroy keeps its pending row: the next start
		 * destroys both. */
		if (key != NULL && vault_key_destroy(v, rec->key_id, &ignored) < 0)
			pending = 0;
		vault_write_errmsg(err, r, "the database refused the certificate");
		goto out;
	}
	pending = 0;
	cv_fault_point("import.after_activate");
	rec->state = CV_CERT_ACTIVE;
	*ret_rec = rec;
	rec = NULL;
	r = 0;
out:
	if (pending)
		cv_store_cert_remove(v->store, rec->id);
	/* Refused or not: what the check found (and why a fetch failed) is the log's. */
	if (ret_rev != NULL)
		*ret_rev = rev;
	cv_store_cert_free(rec);
	EVP_PKEY_free(key);
	strings_free(tags, req->n_tags);
	return r;
}

int vault_lookup(struct cv_vault *v, const char *name, struct cv_cert_record **ret_rec,
		 struct cv_errmsg *err)
{
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	r = cv_store_cert_get(v->store, name, ret_rec);
	if (r == CV_ERR_NOT_FOUND) {
		cv_errmsg_set(err, r, "no certificate named %s", name);
		return cv_vault_deleted_hint(v, name, err);
	}
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

void cv_vault_cert_view_free(struct cv_cert_view *view)
{
	size_t i;

	if (view == NULL)
		return;

	for (i = 0; view->chain != NULL && i < view->chain_length; i++)
		cv_x509_info_free(view->chain[i]);
	free(view->chain);
	cv_store_jwks_free(view->jwks, view->n_jwks);
	cv_store_cert_free(view->rec);
	cv_x509_info_free(view->info);
	free(view);
}

uint64_t cv_vault_certs_generation(struct cv_vault *v)
{
	return cv_store_certs_generation(v->store);
}

uint64_t cv_vault_jwks_generation(struct cv_vault *v)
{
	return cv_store_jwks_generation(v->store);
}

/* The details of each intermediate stored with a certificate, into view->chain (as many as
 * view->chain_length, which is set to what was read). The vault wrote the text, so a
 * failure is the database's content gone wrong. */
/* The details of each certificate of chain into a new *ret_infos (*ret_n of them, each
 * freed with cv_x509_info_free, the array with free). */
static int infos_of(STACK_OF(X509) *chain, struct cv_x509_info ***ret_infos, size_t *ret_n)
{
	size_t i, n = chain != NULL ? (size_t)sk_X509_num(chain) : 0;
	int r;

	*ret_n = 0;
	*ret_infos = calloc(n > 0 ? n : 1, sizeof(**ret_infos));
	if (*ret_infos == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; i < n; i++) {
		r = cv_x509_info_new(sk_X509_value(chain, (int)i), &(*ret_infos)[i]);
		if (r < 0)
			return r;
		*ret_n = i + 1;
	}
	return 0;
}

static int chain_infos(const char *pem, struct cv_cert_view *view, struct cv_errmsg *err)
{
	STACK_OF(X509) *chain = NULL;
	int r;

	view->chain_length = 0;
	if (pem == NULL || pem[0] == '\0')
		return 0;
	r = cv_x509_chain_parse(pem, strlen(pem), CV_ENC_PEM, &chain, err);
	if (r < 0)
		return cv_errmsg_set(err, CV_ERR_DB, "the stored chain cannot be read");
	r = infos_of(chain, &view->chain, &view->chain_length);
	if (r < 0)
		cv_errmsg_set(err, r == CV_ERR_NOMEM ? r : CV_ERR_DB,
			      "the stored chain cannot be read");
	sk_X509_pop_free(chain, X509_free);
	return r;
}

void cv_vault_cert_preview_free(struct cv_cert_preview *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; p->chain != NULL && i < p->chain_length; i++)
		cv_x509_info_free(p->chain[i]);
	free(p->chain);
	cv_x509_info_free(p->info);
	free(p);
}

static void preview_problem(void *arg, int code, const char *message)
{
	struct cv_cert_preview *p = arg;
	struct cv_preview_problem *pp;

	if (p->n_problems == CV_PREVIEW_PROBLEMS_MAX)
		return;
	pp = &p->problems[p->n_problems++];
	pp->code = code;
	snprintf(pp->message, sizeof(pp->message), "%s", message != NULL ? message : "");
}

/* The preview's problems with req's environments: each well formed and existing (the import
 * finds an unknown one when its row is written). Returns 0, or CV_ERR_DB in err. */
static int preview_environments(struct cv_vault *v, const struct cv_import_request *req,
				struct cv_cert_preview *p, struct cv_errmsg *err)
{
	struct cv_environment_record *env = NULL;
	struct cv_errmsg why = { "" };
	char text[128];
	size_t i;
	int r;

	r = vault_check_environments(req->environments, req->n_environments, &why);
	if (r < 0) {
		preview_problem(p, r, why.text);
		return 0;
	}
	for (i = 0; i < req->n_environments; i++) {
		r = cv_store_environment_get(v->store, req->environments[i], &env);
		cv_store_environment_free(env);
		env = NULL;
		if (r == CV_ERR_NOT_FOUND) {
			snprintf(text, sizeof(text), "no environment named %s",
				 req->environments[i]);
			preview_problem(p, CV_ERR_UNKNOWN_ENVIRONMENT, text);
		} else if (r < 0) {
			return cv_errmsg_set(err, r, "the database could not be read");
		}
	}
	return 0;
}

int cv_vault_cert_preview(struct cv_vault *v, const struct cv_import_request *req, int64_t now,
			  struct cv_cert_preview **ret_preview, struct cv_errmsg *err)
{
	struct cv_x509_policy policy = { (time_t)now, v->allow_weak_signatures,
					  req->allow_upcoming };
	struct cv_cert_preview *p;
	struct cv_cert_record *existing = NULL;
	struct cv_errmsg why = { "" };
	char **tags = NULL;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int r;

	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return CV_ERR_NOMEM;
	/* The name, as the import judges it; a name in use is a problem like any other. */
	if (vault_check_name(req->name, &why) < 0)
		preview_problem(p, CV_ERR_INVALID_NAME, why.text);
	else if (strcmp(req->name, "summary") == 0)
		preview_problem(p, CV_ERR_INVALID_NAME, "the name \"summary\" is reserved");
	if (req->description != NULL && strlen(req->description) > CV_DESCRIPTION_MAX)
		preview_problem(p, CV_ERR_BAD_REQUEST, "description is too long");
	/* The environments and tags as the import judges them, each environment looked up. */
	r = preview_environments(v, req, p, err);
	if (r < 0)
		goto out;
	r = vault_tags_make(req->tags, req->n_tags, &tags, &why);
	if (r == CV_ERR_NOMEM)
		goto out;
	if (r < 0)
		preview_problem(p, r, why.text);
	strings_free(tags, req->n_tags);
	/* What parses is shown even when the rest does not (a key with a wrong password
	 * still lets the certificate be seen). */
	r = parse_material(v, req, &cert, &key, &chain, &why);
	if (r < 0)
		preview_problem(p, r, why.text);
	p->has_key = key != NULL;
	if (cert != NULL) {
		r = cv_x509_info_new(cert, &p->info);
		if (r == 0)
			r = infos_of(chain, &p->chain, &p->chain_length);
		if (r == CV_ERR_NOMEM)
			goto out;
		if (r < 0)
			preview_problem(p, CV_ERR_BAD_ENCODING, "the certificate's fields cannot be read");
		else if (cv_x509_check_import_all(cert, key, chain, &policy, preview_problem, p) < 0) {
			r = CV_ERR_INTERNAL;
			goto out;
		}
		if (p->info != NULL) {
			r = vault_revocation_check(v, cert, p->info->issuer, chain, now, &p->rev,
						   &why);
			if (r == CV_ERR_REVOKED || r == CV_ERR_REVOCATION_UNKNOWN)
				preview_problem(p, r, why.text);
			else if (r < 0) {
				r = cv_errmsg_set(err, r, "%s", why.text);
				goto out;
			}
			p->rev_checked = 1;
		}
	}
	/* Last, as the import finds it: when its row would be written. */
	if (vault_check_name(req->name, &why) == 0) {
		r = cv_store_cert_get(v->store, req->name, &existing);
		if (r == 0)
			preview_problem(p, CV_ERR_NAME_TAKEN, "a certificate of that name exists");
		else if (r != CV_ERR_NOT_FOUND) {
			r = cv_errmsg_set(err, r, "the database could not be read");
			goto out;
		}
	}
	*ret_preview = p;
	p = NULL;
	r = 0;
out:
	cv_store_cert_free(existing);
	cv_vault_cert_preview_free(p);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	X509_free(cert);
	return r;
}

int cv_vault_cert_get(struct cv_vault *v, const char *name, int64_t now,
		      struct cv_cert_view **ret_view, struct cv_errmsg *err)
{
	struct cv_cert_view *view;
	X509 *cert = NULL;
	size_t i;
	int r;

	view = calloc(1, sizeof(*view));
	if (view == NULL)
		return CV_ERR_NOMEM;
	r = vault_lookup(v, name, &view->rec, err);
	if (r < 0)
		goto out;
	if (v->caches != NULL) {
		r = cv_x509_info_cached(v->caches->info, view->rec->cert_der,
					view->rec->cert_der_len, &view->info);
	} else {
		r = cv_x509_cert_from_der(view->rec->cert_der, view->rec->cert_der_len, &cert);
		if (r == 0)
			r = cv_x509_info_new(cert, &view->info);
	}
	if (r < 0)
		goto out;
	/* The vault wrote the chain (chain_to_pem): its blocks need not be decoded to be
	 * counted. */
	view->chain_length = cv_x509_pem_cert_count(view->rec->chain_pem);
	r = chain_infos(view->rec->chain_pem, view, err);
	if (r < 0)
		goto out;
	r = cv_store_jwk_page(v->store, view->rec->id, NULL, 1000, &view->jwks, &view->n_jwks);
	if (r < 0) {
		cv_errmsg_set(err, r, "the database could not be read");
		goto out;
	}
	for (i = 0; i < view->n_jwks; i++)
		if (view->jwks[i].state == CV_JWK_ACTIVE)
			view->n_active_jwks++;
	view->served = v->served != NULL && strcmp(v->served, view->rec->name) == 0;
	view->status = cv_status_at((time_t)view->rec->not_before, (time_t)view->rec->not_after,
				    (time_t)now, v->soon_seconds);
	view->expires_in_days = cv_expires_in_days((time_t)view->rec->not_after, (time_t)now);
	r = !view->rec->is_public ? cv_token_key_uri(v->token, view->rec->key_id,
						  sizeof(view->rec->key_id), view->rec->key_label,
						  view->key_uri, sizeof(view->key_uri))
			       : 0;
	if (r < 0)
		goto out;
	*ret_view = view;
	view = NULL;
	r = 0;
out:
	X509_free(cert);
	cv_vault_cert_view_free(view);
	return r;
}

int cv_vault_cert_describe(struct cv_vault *v, struct cv_audit *audit, const char *name,
			   const char *description, int64_t now, struct cv_errmsg *err)
{
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	if (strlen(description) > CV_DESCRIPTION_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "description is longer than %d bytes", CV_DESCRIPTION_MAX);
	r = cv_store_cert_set_description(v->store, name, description, now,
					  vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no certificate named %s", name);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the change");
	return 0;
}

/* Two lists of strings hold the same strings in the same order. */
static int strings_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
	size_t i;

	if (na != nb)
		return 0;
	for (i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return 0;
	return 1;
}

/* The record of an edit says each member that changed, old and new (cv_store_edit_describe_fn). */
static void describe_edit(const struct cv_cert_record *old, const struct cv_cert_edit *edit,
			  struct cv_audit_entry *entry, void *arg)
{
	json_t *changes = json_object();

	(void)arg;
	if (changes == NULL)
		return;
	if (edit->name != NULL && strcmp(edit->name, old->name) != 0)
		json_object_set_new(changes, "name",
				    vault_audit_change(json_string(old->name),
						       json_string(edit->name)));
	if (edit->description != NULL && strcmp(edit->description, old->description) != 0)
		json_object_set_new(changes, "description",
				    vault_audit_change(vault_audit_text(old->description),
						       vault_audit_text(edit->description)));
	/* The environments and tags as the client named them against those stored. */
	if (edit->set_environments)
		json_object_set_new(changes, "environments",
				    vault_audit_change(strings_array(old->environments,
								     old->n_environments),
						       strings_array(edit->environments,
								     edit->n_environments)));
	if (edit->set_tags && !strings_equal(old->tags, old->n_tags, edit->tags, edit->n_tags))
		json_object_set_new(changes, "tags",
				    vault_audit_change(strings_array(old->tags, old->n_tags),
						       strings_array(edit->tags, edit->n_tags)));
	vault_audit_entry_changes(entry, changes);
}

/* Whether a setting names the certificate (ignoring case, as names are compared): a rename
 * would leave the setting naming nothing. */
static int named_in_settings(const struct cv_vault *v, const char *name)
{
	return v->served != NULL && strcasecmp(v->served, name) == 0;
}

int cv_vault_cert_edit(struct cv_vault *v, struct cv_audit *audit, const char *name,
		       const struct cv_cert_edit_request *req, int64_t now, char ret_name[65],
		       struct cv_errmsg *err)
{
	struct cv_conflict conflict = { "", "", 0, 0 };
	struct cv_cert_edit edit = { 0 };
	struct cv_cert_record *old = NULL;
	char **tags = NULL;
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	if (req->name != NULL) {
		r = vault_check_name(req->name, err);
		if (r == 0 && strcmp(req->name, "summary") == 0)
			r = cv_errmsg_set(err, CV_ERR_INVALID_NAME, "the name \"summary\" is reserved");
		if (r < 0)
			return r;
		/* server.tls_certificate names the certificate the HTTPS listener serves. */
		if (strcmp(req->name, name) != 0 &&
		    (named_in_settings(v, name) || named_in_settings(v, req->name)))
			return cv_errmsg_set(err, CV_ERR_IN_USE,
					     "server.tls_certificate names %s: change the setting "
					     "before renaming", v->served);
	}
	if (req->description != NULL && strlen(req->description) > CV_DESCRIPTION_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "description is longer than %d bytes", CV_DESCRIPTION_MAX);
	if (req->set_environments) {
		r = vault_check_environments(req->environments, req->n_environments, err);
		if (r < 0)
			return r;
	}
	if (req->set_tags) {
		r = vault_tags_make(req->tags, req->n_tags, &tags, err);
		if (r < 0)
			return r;
	}
	edit.name = req->name;
	edit.description = req->description;
	edit.set_environments = req->set_environments;
	edit.n_environments = req->n_environments;
	edit.environments = (char *const *)req->environments;
	edit.set_tags = req->set_tags;
	edit.n_tags = req->n_tags;
	edit.tags = tags;
	r = cv_store_cert_edit(v->store, name, &edit, now, &conflict, &old,
			       vault_audit_done(audit), describe_edit, NULL);
	vault_audit_written(audit, r);
	strings_free(tags, req->n_tags);
	if (r == 0 && ret_name != NULL)
		snprintf(ret_name, 65, "%s", req->name != NULL ? req->name : old->name);
	cv_store_cert_free(old);
	if (r == CV_ERR_NOT_FOUND) {
		cv_errmsg_set(err, r, "no certificate named %s", name);
		return cv_vault_deleted_hint(v, name, err);
	}
	if (r == CV_ERR_NAME_TAKEN)
		return vault_name_taken(v, req->name, err);
	if (r == CV_ERR_UNKNOWN_ENVIRONMENT)
		return cv_errmsg_set(err, r, "no environment named %s", conflict.detail);
	if (r == CV_ERR_ENVIRONMENT_NOT_ALLOWED)
		return cv_errmsg_set(err, r, "service %s uses %s in environment %s, which the new "
				     "environments leave out: unbind it or keep %s",
				     conflict.service, name, conflict.detail, conflict.detail);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the change");
	return 0;
}

/* Destroys the keys of the superseded versions that are still in the token, recording each,
 * then the current one's. The current key goes last, so that on a failure the row put back
 * has its key and says truly which older keys are gone. */
int vault_destroy_all_keys(struct cv_vault *v, const struct cv_cert_record *rec,
			   struct cv_errmsg *err)
{
	struct cv_cert_version *versions = NULL;
	size_t n = 0, i;
	int r;

	r = cv_store_cert_versions(v->store, rec->id, &versions, &n);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	for (i = 0; i < n; i++) {
		if (versions[i].ended_by == CV_END_NONE ||
		    versions[i].key_state == CV_KEY_DESTROYED)
			continue;
		r = vault_key_destroy(v, versions[i].key_id, err);
		if (r < 0)
			goto out;
		cv_fault_point("delete.after_version_key");
		r = cv_store_version_key_destroyed(v->store, versions[i].key_id);
		if (r < 0) {
			vault_write_errmsg(err, r, "the database refused the deletion");
			goto out;
		}
	}
	/* A public certificate's key id names no object. */
	r = !rec->is_public ? vault_key_destroy(v, rec->key_id, err) : 0;
out:
	free(versions);
	return r;
}

int cv_vault_cert_delete(struct cv_vault *v, struct cv_audit *audit, const char *name,
			 const struct cv_jwk_choice *jwk, int64_t *ret_purge_after,
			 struct cv_errmsg *err)
{
	struct cv_cert_record *rec = NULL;
	struct cv_conflict conflict = { "", "", 0, 0 };
	struct cv_jwk_record *linked = NULL;
	struct cv_pending_record *pending = NULL;
	const char *confirm = jwk->confirm;
	size_t n_linked = 0;
	int r, by_name;

	by_name = confirm != NULL && cv_text_name_equal(confirm, name);
	if (confirm == NULL || (strcmp(confirm, "delete") != 0 && !by_name)) {
		r = cv_errmsg_set(err, CV_ERR_CONFIRM_REQUIRED,
				  "deleting needs the confirmation keyword: confirm=delete");
		goto out;
	}
	r = vault_lookup(v, name, &rec, err);
	if (r < 0)
		goto out;
	cv_audit_fingerprint(audit, rec->sha256_fingerprint);
	/* A renewal by generate waits with a key of its own: cancelled first, by choice. */
	if (cv_store_pending_get(v->store, name, &pending) == 0) {
		cv_store_pending_free(pending);
		r = cv_errmsg_set(err, CV_ERR_IN_USE, "a renewal of %s waits for its certificate: "
				  "cancel it first (DELETE /v1/certificates/%s/pending)", name,
				  name);
		goto out;
	}
	if (jwk->action != CV_JWK_ACTION_NONE)
		vault_audit_changes(audit, json_pack("{s:s}", "jwk_action",
						     jwk->action == CV_JWK_ACTION_DELETE
							     ? "delete"
							     : "disconnect"));
	/* Its key signs every HTTPS handshake: gone, the listener could not serve. Names are
	 * one ignoring case: "WWW" is the served "www". */
	if (v->served != NULL && cv_text_name_equal(v->served, name)) {
		r = cv_errmsg_set(err, CV_ERR_IN_USE, "%s is the certificate the HTTPS listener "
				  "serves (server.tls_certificate): renew or replace it instead",
				  name);
		goto out;
	}
	r = cv_store_jwk_list(v->store, rec->id, &linked, &n_linked);
	if (r < 0) {
		cv_errmsg_set(err, r, "the database could not be read");
		goto out;
	}
	/* Linked JWKs go or stay by the caller's choice, confirmed by typing the name. */
	if (n_linked > 0 && jwk->action != CV_JWK_ACTION_DELETE &&
	    jwk->action != CV_JWK_ACTION_DISCONNECT) {
		r = vault_jwk_choice_required(name, linked, n_linked, "delete or disconnect", err);
		goto out;
	}
	if (n_linked > 0 && !by_name) {
		r = cv_errmsg_set(err, CV_ERR_CONFIRM_REQUIRED,
				  "JWKs are linked to %s: confirm with the certificate's name,"
				  " confirm=%s",
				  name, name);
		goto out;
	}
	/* With a retention, the certificate is only put aside, its keys untouched: a slip can
	 * be undone until the retention ends (issue 18). */
	if (ret_purge_after != NULL)
		*ret_purge_after = 0;
	if (vault_retention(v) > 0) {
		r = vault_delete_soft(v, audit, rec, jwk, ret_purge_after, err);
		goto out;
	}
	/* The mark below already changes the row and the JWKs: a token already gone refuses
	 * the delete before it (a public certificate has no key to destroy). */
	r = !rec->is_public ? cv_token_check(v->token, err) : 0;
	if (r < 0)
		goto out;
	/* Mark first: a crash after a key is gone leaves a row the reconciler finishes. The
	 * mark is the point of no return, so the record goes with it. */
	r = cv_store_cert_mark_deleting(v->store, rec->id, jwk->action, &conflict,
					vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_IN_USE) {
		/* A scoped caller's scope may not reach them all: its details view names
		 * those it may see. */
		if (audit != NULL && audit->scoped)
			cv_errmsg_set(err, r, "certificate %s is used by one or more services: "
				      "unbind it first (its details name those in your scope)",
				      name);
		else
			cv_errmsg_set(err, r, "certificate %s is used by %s: unbind it first", name,
				      conflict.detail);
		goto out;
	}
	if (r == CV_ERR_JWK_CHOICE_REQUIRED) {
		cv_errmsg_set(err, r,
			      "JWKs are linked to %s (%s): say jwk_action=delete or disconnect,"
			      " with confirm=%s",
			      name, conflict.detail, name);
		goto out;
	}
	if (r < 0) {
		vault_write_errmsg(err, r, "the database refused the deletion");
		goto out;
	}
	cv_fault_point("delete.after_mark");
	r = vault_destroy_all_keys(v, rec, err);
	if (r < 0 && cv_token_key_exists(v->token, rec->key_id, sizeof(rec->key_id))) {
		/* The current key is still there: the certificate stays, and the trail says so
		 * after the record of the mark (the caller writes the refusal). */
		cv_store_cert_activate(v->store, rec->id, NULL);
		if (audit != NULL)
			audit->written = 0;
		goto out;
	}
	if (r < 0) {
		/* The key is gone but its removal could not be made durable: the row keeps its
		 * deleting mark (and the delete its record), and the next start finishes it. */
		goto out;
	}
	cv_fault_point("delete.before_remove");
	r = cv_store_cert_remove(v->store, rec->id);
	if (r < 0) {
		/* The keys are gone; the deleting mark lets the next start finish the job. */
		vault_write_errmsg(err, r, "the database refused the deletion");
		goto out;
	}
	r = 0;
out:
	cv_store_jwks_free(linked, n_linked);
	cv_store_cert_free(rec);
	return r;
}

int cv_vault_export_format_parse(const char *s, enum cv_export_format *ret)
{
	static const char *const names[] = { "pem", "der", "chain", "public-key", "jwk" };
	size_t i;

	for (i = 0; s != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*ret = (enum cv_export_format)i;
			return 0;
		}
	}
	return CV_ERR_BAD_REQUEST;
}

int cv_vault_cert_export(struct cv_vault *v, const char *name, enum cv_export_format format,
			 unsigned char **ret_body, size_t *ret_len,
			 const char **ret_content_type, struct cv_errmsg *err)
{
	return cv_vault_cert_export_version(v, name, 0, format, ret_body, ret_len,
					    ret_content_type, err);
}

int cv_vault_cert_export_version(struct cv_vault *v, const char *name, int64_t version,
				 enum cv_export_format format, unsigned char **ret_body,
				 size_t *ret_len, const char **ret_content_type,
				 struct cv_errmsg *err)
{
	struct cv_cert_record *rec = NULL;
	json_t *jwk = NULL;
	X509 *cert = NULL;
	char *pem = NULL, *all = NULL;
	size_t len, chain_len;
	int r;

	r = vault_lookup(v, name, &rec, err);
	if (r < 0)
		goto out;
	/* An older version: its own certificate and chain in place of the current ones;
	 * everything below reads only those. */
	if (version != 0 && version != rec->version) {
		unsigned char *der = NULL;
		char *chain = NULL;

		r = version > 0 && version < rec->version
			    ? cv_store_cert_version_material(v->store, rec->id, version, &der,
							     &len, &chain)
			    : CV_ERR_NOT_FOUND;
		if (r == CV_ERR_NOT_FOUND) {
			cv_errmsg_set(err, r, "%s has versions 1 to %lld", name,
				      (long long)rec->version);
			goto out;
		}
		if (r < 0) {
			cv_errmsg_set(err, r, "the database could not be read");
			goto out;
		}
		free(rec->cert_der);
		free(rec->chain_pem);
		rec->cert_der = der;
		rec->cert_der_len = len;
		rec->chain_pem = chain;
	}
	if (format == CV_EXPORT_DER) {
		*ret_body = rec->cert_der;
		*ret_len = rec->cert_der_len;
		rec->cert_der = NULL;
		*ret_content_type = "application/pkix-cert";
		r = 0;
		goto out;
	}
	if (format == CV_EXPORT_JWK) {
		r = vault_cert_jwk(rec, NULL, NULL, &jwk, err);
		if (r < 0)
			goto out;
		r = cv_json_text(jwk, JSON_COMPACT, &pem);
		if (r < 0)
			goto out;
		*ret_body = (unsigned char *)pem;
		*ret_len = strlen(pem);
		*ret_content_type = "application/jwk+json";
		pem = NULL;
		r = 0;
		goto out;
	}
	*ret_content_type = "application/x-pem-file";
	/* Only the public key needs the certificate decoded: PEM is the stored DER in
	 * base64, and decoding takes OpenSSL's global locks on every request. */
	if (format == CV_EXPORT_PUBLIC_KEY) {
		r = cv_x509_cert_from_der(rec->cert_der, rec->cert_der_len, &cert);
		if (r == 0)
			r = cv_x509_pubkey_pem(cert, &pem, &len);
	} else {
		r = cv_x509_der_pem(rec->cert_der, rec->cert_der_len, &pem, &len);
	}
	if (r < 0)
		goto out;
	if (format == CV_EXPORT_CHAIN) {
		chain_len = strlen(rec->chain_pem);
		all = malloc(len + chain_len + 1);
		if (all == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		memcpy(all, pem, len);
		memcpy(all + len, rec->chain_pem, chain_len + 1);
		free(pem);
		pem = all;
		len += chain_len;
	}
	*ret_body = (unsigned char *)pem;
	*ret_len = len;
	pem = NULL;
	r = 0;
out:
	json_decref(jwk);
	free(pem);
	X509_free(cert);
	cv_store_cert_free(rec);
	return r;
}

struct reconcile {
	struct cv_vault *v;
	struct cv_reconcile_report *report;
	struct cv_errmsg *err;
};

static int reconcile_cert(const struct cv_cert_record *rec, void *arg)
{
	struct reconcile *rc = arg;
	int r;

	/* A pending import has one key; an interrupted delete may have several. */
	r = vault_destroy_all_keys(rc->v, rec, rc->err);
	if (r < 0)
		return r;
	/* No record: the import was refused, or the delete recorded when it was marked. */
	r = cv_store_cert_remove(rc->v->store, rec->id);
	if (r < 0 && r != CV_ERR_NOT_FOUND)
		return cv_errmsg_set(rc->err, r, "reconcile: cannot remove row of %s", rec->name);
	if (rec->state == CV_CERT_PENDING)
		rc->report->imports_undone++;
	else
		rc->report->deletes_finished++;
	return 0;
}

static int reconcile_key(const uint8_t *key_id, int in_journal, void *arg)
{
	struct reconcile *rc = arg;
	int r;

	r = vault_key_destroy(rc->v, key_id, rc->err);
	if (r < 0)
		return r;
	if (in_journal) {
		r = cv_store_key_journal_remove(rc->v->store, key_id);
		rc->report->versions_undone++;
	} else {
		r = cv_store_version_key_destroyed(rc->v->store, key_id);
		rc->report->keys_destroyed++;
	}
	if (r < 0 && r != CV_ERR_NOT_FOUND)
		return cv_errmsg_set(rc->err, r, "reconcile: the database refused a change");
	return 0;
}

int cv_vault_reconcile(struct cv_vault *v, struct cv_reconcile_report *ret_report,
		       struct cv_errmsg *err)
{
	struct reconcile rc = { v, ret_report, err };
	int r;

	memset(ret_report, 0, sizeof(*ret_report));
	/* Neither a pending import nor an interrupted delete was ever acknowledged as done
	 * the way it stands, so undoing the one and finishing the other loses nothing; the
	 * same holds for a new version's key whose transaction never committed, and for a
	 * superseded key being destroyed. With several nodes, only this node's own rows (its
	 * crash: none of its writes is in flight yet) and those of nodes silent past their
	 * lease are taken, each claimed first; a live node's write in flight is left alone.
	 * Expired pending certificates are left to the first sweep. */
	r = cv_store_cert_foreach_unsettled(v->store, reconcile_cert, &rc);
	if (r == 0)
		r = cv_store_keys_unsettled_foreach(v->store, reconcile_key, &rc);
	if (r == 0)
		r = vault_pending_reconcile(v, (int64_t)time(NULL), 1,
					    &ret_report->generates_undone, err);
	return r;
}

int cv_vault_reconcile_abandoned(struct cv_vault *v, int64_t now,
				 struct cv_reconcile_report *ret_report, struct cv_errmsg *err)
{
	struct reconcile rc = { v, ret_report, err };
	int r;

	memset(ret_report, 0, sizeof(*ret_report));
	/* While this node runs its own rows are its writes in flight: only other nodes'
	 * (silent past their lease) are taken. */
	r = cv_store_cert_foreach_abandoned(v->store, now, reconcile_cert, &rc);
	if (r == 0)
		r = cv_store_keys_abandoned_foreach(v->store, now, reconcile_key, &rc);
	if (r == 0)
		r = vault_pending_reconcile(v, now, 0, &ret_report->generates_undone, err);
	return r;
}

int cv_vault_cert_list(struct cv_vault *v, struct cv_cert_filter *filter,
		       struct cv_cert_page **ret_page, struct cv_errmsg *err)
{
	int r;

	filter->soon_seconds = v->soon_seconds;
	r = cv_store_cert_list(v->store, filter, ret_page);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_cert_list_total(struct cv_vault *v, struct cv_cert_filter *filter,
			     int64_t *ret_total, struct cv_errmsg *err)
{
	struct vault_totals_cache *c = v->caches != NULL ? &v->caches->totals : NULL;
	char key[sizeof(c->slots[0].key)];
	uint64_t gen;
	unsigned i;
	int n, r;

	filter->soon_seconds = v->soon_seconds;
	/* Everything the count depends on but the clock and the data, which the slot keeps
	 * beside it; the generation is read before the count, so a change committed during it
	 * only makes the slot older than it could be. */
	n = snprintf(key, sizeof(key), "%u|%d|%d|%d|%s|%s|%s|%s|%s|%s|%s", filter->status_mask,
		     filter->has_status, (int)filter->status, filter->in_use,
		     filter->q != NULL ? filter->q : "\x01",
		     filter->domain != NULL ? filter->domain : "\x01",
		     filter->domain_wildcard != NULL ? filter->domain_wildcard : "\x01",
		     filter->environment != NULL ? filter->environment : "\x01",
		     filter->service != NULL ? filter->service : "\x01",
		     filter->tag_key != NULL ? filter->tag_key : "\x01",
		     filter->tag_value != NULL ? filter->tag_value : "\x01");
	/* A scoped token's count is kept under its scope's certificate patterns and
	 * environments too (the two things the count's scope conditions read). */
	for (i = 0; filter->scope != NULL && n >= 0 && (size_t)n < sizeof(key) &&
		    i < filter->scope->n_certificates + filter->scope->n_environments; i++)
		n += snprintf(key + n, sizeof(key) - (size_t)n, "|%c%s",
			      i < filter->scope->n_certificates ? 'c' : 'e',
			      i < filter->scope->n_certificates ?
				      filter->scope->certificates[i] :
				      filter->scope->environments[i - filter->scope->n_certificates]);
	if (n < 0 || (size_t)n >= sizeof(key))
		c = NULL; /* too long to keep: counted every time */
	gen = cv_store_certs_generation(v->store);
	if (c != NULL) {
		pthread_mutex_lock(&c->lock);
		for (i = 0; i < VAULT_TOTALS; i++)
			if (c->slots[i].valid && c->slots[i].gen == gen &&
			    c->slots[i].now == filter->now && strcmp(c->slots[i].key, key) == 0) {
				*ret_total = c->slots[i].total;
				pthread_mutex_unlock(&c->lock);
				return 0;
			}
		pthread_mutex_unlock(&c->lock);
	}
	r = cv_store_cert_list_total(v->store, filter, ret_total);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	if (c != NULL) {
		pthread_mutex_lock(&c->lock);
		i = c->next++ % VAULT_TOTALS;
		c->slots[i].valid = 1;
		c->slots[i].gen = gen;
		c->slots[i].now = filter->now;
		c->slots[i].total = *ret_total;
		memcpy(c->slots[i].key, key, (size_t)n + 1);
		pthread_mutex_unlock(&c->lock);
	}
	return 0;
}

int cv_vault_cert_count(struct cv_vault *v, int64_t now, struct cv_cert_counts *ret_counts,
			struct cv_errmsg *err)
{
	int r;

	r = cv_store_cert_count(v->store, now, v->soon_seconds, ret_counts);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_cert_count_scoped(struct cv_vault *v, int64_t now,
			       const struct cv_scope_objects *scope,
			       struct cv_cert_counts *ret_counts, struct cv_errmsg *err)
{
	int r;

	if (scope == NULL)
		return cv_vault_cert_count(v, now, ret_counts, err);
	r = cv_store_cert_count_scoped(v->store, now, v->soon_seconds, scope, ret_counts);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

/* The token as the HTTPS listener and the metrics use it. */
void cv_vault_token_stats(struct cv_vault *v, struct cv_token_stats *ret)
{
	cv_token_stats_get(v->token, ret);
}

void cv_vault_store_sync_stats(struct cv_vault *v, struct cv_store_sync_stats *ret)
{
	cv_store_sync_stats(v->store, ret);
}

int cv_vault_key_exists(struct cv_vault *v, const uint8_t *key_id, size_t id_len,
			int64_t named_at)
{
	return cv_token_key_exists_since(v->token, key_id, id_len, named_at);
}

int cv_vault_key_sign(struct cv_vault *v, const uint8_t *key_id, size_t id_len,
		      const struct cv_token_sign_params *params, const unsigned char *data,
		      size_t data_len, unsigned char *sig, size_t *sig_len,
		      struct cv_errmsg *err)
{
	return cv_token_sign(v->token, key_id, id_len, params, data, data_len, sig, sig_len,
			     err);
}

int cv_vault_health_get(struct cv_vault *v, struct cv_vault_health *ret)
{
	ret->database_ok = cv_store_ping(v->store) == 0;
	ret->token_ok = cv_token_health_get(v->token, &ret->token) == 0;
	return ret->database_ok && ret->token_ok ? 0 : CV_ERR_TOKEN_UNAVAILABLE;
}
