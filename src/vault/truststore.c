/* Truststore use cases: add CA certificates (pasted, or learned from a live endpoint), read,
 * delete, export, and check a certificate's chain against them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/x509v3.h>

#include "certvault/net.h"
#include "certvault/text.h"
#include "certvault/util.h"
#include "internal.h"

static int check_alias(const char *alias, struct cv_errmsg *err)
{
	if (!cv_name_valid(alias))
		return cv_errmsg_set(err, CV_ERR_INVALID_NAME,
				     "an alias is 1 to %d letters, digits or hyphens", CV_NAME_MAX);
	/* GET /v1/truststore/export is the export, /v1/truststore/crls the CRLs. */
	if (cv_text_name_equal(alias, "export") || cv_text_name_equal(alias, "crls"))
		return cv_errmsg_set(err, CV_ERR_INVALID_NAME, "the alias \"%s\" is reserved",
				     alias);
	return 0;
}

/* Which of a fetched chain to keep, by req->keep: the positions into keep_idx. */
static int choose(const struct cv_trust_add *req, STACK_OF(X509) *chain, int *keep_idx,
		  int *ret_n, struct cv_errmsg *err)
{
	const char *keep = req->keep != NULL ? req->keep : "top";
	int n = sk_X509_num(chain), i, k = 0;
	int64_t pos;

	if (strcmp(keep, "top") == 0) {
		for (i = n - 1; i >= 0; i--)
			if (X509_check_ca(sk_X509_value(chain, i)) > 0)
				break;
		if (i < 0)
			return cv_errmsg_set(err, CV_ERR_NOT_CA,
					     "the server presented no CA certificate, only %d"
					     " certificate(s) of its own",
					     n);
		keep_idx[k++] = i;
	} else if (strcmp(keep, "all") == 0) {
		for (i = 0; i < n; i++)
			if (X509_check_ca(sk_X509_value(chain, i)) > 0)
				keep_idx[k++] = i;
		if (k == 0)
			return cv_errmsg_set(err, CV_ERR_NOT_CA,
					     "the server presented no CA certificate");
	} else {
		if (cv_parse_int64(keep, 0, n - 1, &pos) < 0)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "\"keep\" must be top, all, or a position from 0 to %d"
					     " in the chain the server presented",
					     n - 1);
		keep_idx[k++] = (int)pos;
	}
	*ret_n = k;
	return 0;
}

/* The certificates a request adds, in order: parsed, or fetched and chosen. */
static int certificates_of(const struct cv_vault *v, const struct cv_trust_add *req,
			   STACK_OF(X509) **ret, struct cv_errmsg *err)
{
	STACK_OF(X509) *all = NULL, *kept = NULL;
	int idx[CV_X509_MAX_CHAIN + 1], n = 0, i, r;

	if (req->url == NULL) {
		r = cv_x509_chain_parse(req->certificate, req->certificate_len, req->encoding, ret,
					err);
		if (r == 0 && sk_X509_num(*ret) == 0) {
			sk_X509_free(*ret);
			*ret = NULL;
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "no certificate was given");
		}
		return r;
	}
	r = cv_net_fetch_chain(&v->truststore_net, req->url, req->timeout_ms, &all, err);
	/* Admin only, so the reason is shown whole; internal hosts are the operator's to name. */
	if (r == CV_ERR_FORBIDDEN) {
		struct cv_errmsg why = *err;

		return cv_errmsg_set(err, CV_ERR_UNREACHABLE, "%s (truststore.allow_networks and "
				     "truststore.allow_ports name what else may be reached)",
				     why.text);
	}
	if (r < 0)
		return r;
	if (sk_X509_num(all) > CV_X509_MAX_CHAIN + 1) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "the server presented more than %d"
				  " certificates", CV_X509_MAX_CHAIN + 1);
		goto out;
	}
	r = choose(req, all, idx, &n, err);
	if (r < 0)
		goto out;
	kept = sk_X509_new_null();
	if (kept == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		X509 *c = sk_X509_value(all, idx[i]);

		if (X509_up_ref(c) != 1 || sk_X509_push(kept, c) <= 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	*ret = kept;
	kept = NULL;
	r = 0;
out:
	sk_X509_pop_free(kept, X509_free);
	sk_X509_pop_free(all, X509_free);
	return r;
}

/* Fills a record for the entry at position i of n; *rec is the caller's to release. */
static int trust_record(const struct cv_trust_add *req, X509 *cert, int i, int n, int64_t now,
			struct cv_trust_record *rec, struct cv_audit *audit,
			struct cv_errmsg *err)
{
	struct cv_x509_info *info = NULL;
	int r;

	memset(rec, 0, sizeof(*rec));
	if (req->n_aliases > 0)
		snprintf(rec->alias, sizeof(rec->alias), "%s", req->aliases[i]);
	else if (n == 1)
		snprintf(rec->alias, sizeof(rec->alias), "%s", req->alias);
	else if (snprintf(rec->alias, sizeof(rec->alias), "%s-%d", req->alias, i + 1) >=
		 (int)sizeof(rec->alias))
		return cv_errmsg_set(err, CV_ERR_INVALID_NAME,
				     "alias %s-%d is longer than %d characters", req->alias, i + 1,
				     CV_NAME_MAX);
	if (i == 0)
		vault_audit_target(audit, rec->alias);
	r = check_alias(rec->alias, err);
	if (r < 0)
		return r;
	r = cv_x509_info_new(cert, &info);
	if (r < 0)
		return cv_errmsg_set(err, r, "entry %d: the certificate's fields cannot be read",
				     i + 1);
	cv_audit_fingerprint(audit, info->sha256_fingerprint);
	if (!info->is_ca) {
		r = cv_errmsg_set(err, CV_ERR_NOT_CA,
				  "entry %d (%.200s) is not a CA certificate: a truststore holds CAs",
				  i + 1, info->subject);
		goto out;
	}
	if ((int64_t)info->not_before > now) {
		r = cv_errmsg_set(err, CV_ERR_NOT_YET_VALID, "entry %d (%.200s) is not valid yet",
				  i + 1, info->subject);
		goto out;
	}
	if ((int64_t)info->not_after < now) {
		r = cv_errmsg_set(err, CV_ERR_EXPIRED, "entry %d (%.200s) has expired", i + 1,
				  info->subject);
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
	snprintf(rec->source, sizeof(rec->source), "%s", req->url != NULL ? req->url : "upload");
	rec->not_before = info->not_before;
	rec->not_after = info->not_after;
	rec->created_at = now;
out:
	cv_x509_info_free(info);
	return r;
}

int cv_vault_trust_add(struct cv_vault *v, struct cv_audit *audit, const struct cv_trust_add *req,
		       int64_t now, char (**ret_aliases)[65], size_t *ret_n,
		       struct cv_errmsg *err)
{
	struct cv_conflict conflict = { "", "", 0, 0 };
	struct cv_trust_record *recs = NULL;
	STACK_OF(X509) *certs = NULL;
	char (*aliases)[65] = NULL;
	int n = 0, i, r;

	/* The alias as given until the entries are made (a bundle's first is alias-1). */
	vault_audit_target(audit, req->n_aliases > 0 ? req->aliases[0] : req->alias);
	if (req->n_aliases == 0) {
		r = check_alias(req->alias != NULL ? req->alias : "", err);
		if (r < 0)
			goto out;
	}
	r = certificates_of(v, req, &certs, err);
	if (r < 0)
		goto out;
	n = sk_X509_num(certs);
	if (req->n_aliases > 0 && req->n_aliases != (size_t)n) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "%zu aliases for %d certificates: give one for each", req->n_aliases,
				  n);
		goto out;
	}
	recs = calloc((size_t)n, sizeof(*recs));
	aliases = calloc((size_t)n, sizeof(*aliases));
	if (recs == NULL || aliases == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		r = trust_record(req, sk_X509_value(certs, i), i, n, now, &recs[i], audit, err);
		if (r < 0)
			goto out;
		memcpy(aliases[i], recs[i].alias, sizeof(aliases[i]));
	}
	r = cv_store_trust_insert(v->store, recs, (size_t)n, &conflict, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NAME_TAKEN) {
		cv_errmsg_set(err, r, "the alias %s is taken", conflict.detail);
		goto out;
	}
	if (r == CV_ERR_SAME_CERTIFICATE) {
		cv_errmsg_set(err, r, "a certificate given is already trusted as %s",
			      conflict.detail);
		goto out;
	}
	if (r < 0) {
		vault_write_errmsg(err, r, "the database refused the entries");
		goto out;
	}
	*ret_aliases = aliases;
	*ret_n = (size_t)n;
	aliases = NULL;
out:
	free(aliases);
	cv_store_trust_free(recs, recs != NULL ? (size_t)n : 0);
	sk_X509_pop_free(certs, X509_free);
	return r;
}

int cv_vault_trust_get(struct cv_vault *v, const char *alias, struct cv_trust_record **ret_recs,
		       size_t *ret_n, struct cv_errmsg *err)
{
	int r;

	if (alias != NULL && (r = check_alias(alias, err)) < 0)
		return r;
	r = cv_store_trust_get(v->store, alias, ret_recs, ret_n);
	if (r == CV_ERR_NOT_FOUND && alias != NULL)
		return cv_errmsg_set(err, r, "no truststore entry named %s", alias);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_trust_list(struct cv_vault *v, const char *q, const char *after, unsigned limit,
			struct cv_trust_record **ret_recs, size_t *ret_n, int *ret_more,
			int64_t *ret_total, struct cv_errmsg *err)
{
	int r;

	/* One more than asked says whether a next page exists. */
	r = cv_store_trust_search(v->store, q, after, limit + 1, ret_recs, ret_n, ret_total);
	if (r == CV_ERR_BAD_REQUEST)
		return cv_errmsg_set(err, r, "limit must be from 1 to 1000");
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	*ret_more = *ret_n > limit;
	for (; *ret_n > limit; (*ret_n)--)
		free((*ret_recs)[*ret_n - 1].cert_der);
	return 0;
}

int cv_vault_cert_info(struct cv_vault *v, const unsigned char *der, size_t len,
		       struct cv_x509_info **ret_info)
{
	X509 *cert = NULL;
	int r;

	if (v->caches != NULL)
		return cv_x509_info_cached(v->caches->info, der, len, ret_info);
	r = cv_x509_cert_from_der(der, len, &cert);
	if (r == 0)
		r = cv_x509_info_new(cert, ret_info);
	X509_free(cert);
	return r;
}

int cv_vault_trust_delete(struct cv_vault *v, struct cv_audit *audit, const char *alias,
			  struct cv_errmsg *err)
{
	struct cv_trust_record *entry = NULL;
	size_t n = 0;
	int r;

	r = check_alias(alias, err);
	if (r < 0)
		return r;
	/* For the record only: a missing entry is the remove's to report. */
	if (audit != NULL && cv_store_trust_get(v->store, alias, &entry, &n) == 0 && n == 1)
		cv_audit_fingerprint(audit, entry[0].sha256_fingerprint);
	cv_store_trust_free(entry, n);
	r = cv_store_trust_remove(v->store, alias, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no truststore entry named %s", alias);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the deletion");
	return 0;
}

int cv_vault_trust_export_pem(struct cv_vault *v, char **ret_text, size_t *ret_len,
			      struct cv_errmsg *err)
{
	struct cv_trust_record *recs = NULL;
	char *all = NULL, *pem = NULL, *grown;
	size_t n = 0, i, total = 0, len, head;
	X509 *cert = NULL;
	int r;

	r = cv_vault_trust_get(v, NULL, &recs, &n, err);
	if (r < 0)
		return r;
	all = calloc(1, 1);
	if (all == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		r = cv_x509_cert_from_der(recs[i].cert_der, recs[i].cert_der_len, &cert);
		if (r == 0)
			r = cv_x509_cert_pem(cert, &pem, &len);
		if (r < 0)
			goto out;
		head = strlen(recs[i].alias) + 3;
		grown = realloc(all, total + head + len + 1);
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		all = grown;
		snprintf(all + total, head + 1, "# %s\n", recs[i].alias);
		memcpy(all + total + head, pem, len + 1);
		total += head + len;
		free(pem);
		pem = NULL;
		X509_free(cert);
		cert = NULL;
	}
	*ret_text = all;
	*ret_len = total;
	all = NULL;
	r = 0;
out:
	X509_free(cert);
	free(pem);
	free(all);
	cv_store_trust_free(recs, n);
	return r;
}

int cv_vault_trust_export_pkcs12(struct cv_vault *v, const char *password,
				 unsigned char **ret_der, size_t *ret_len, struct cv_errmsg *err)
{
	struct cv_trust_record *recs = NULL;
	const char **aliases = NULL;
	X509 **certs = NULL;
	size_t n = 0, i, j;
	int r;

	r = cv_vault_trust_get(v, NULL, &recs, &n, err);
	if (r < 0)
		return r;
	/* One more than n, so an empty truststore is not a failed allocation. */
	certs = calloc(n + 1, sizeof(*certs));
	aliases = calloc(n + 1, sizeof(*aliases));
	if (certs == NULL || aliases == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		/* Aliases are unique as stored, but Java keys its entries by the lower-cased
		 * alias. */
		for (j = 0; j < i; j++) {
			if (strcasecmp(recs[i].alias, recs[j].alias) == 0) {
				r = cv_errmsg_set(err, CV_ERR_NAME_TAKEN,
						  "the aliases %s and %s differ only in case, which "
						  "a Java keystore cannot tell apart: add one again "
						  "under another alias to export as PKCS#12",
						  recs[j].alias, recs[i].alias);
				goto out;
			}
		}
		r = cv_x509_cert_from_der(recs[i].cert_der, recs[i].cert_der_len, &certs[i]);
		if (r < 0)
			goto out;
		aliases[i] = recs[i].alias;
	}
	r = cv_x509_truststore_pkcs12(certs, aliases, n, password, ret_der, ret_len, err);
out:
	for (i = 0; certs != NULL && i < n; i++)
		X509_free(certs[i]);
	free(certs);
	free(aliases);
	cv_store_trust_free(recs, n);
	return r;
}

int vault_trusted_stack(struct cv_vault *v, STACK_OF(X509) **ret, struct cv_errmsg *err)
{
	struct cv_trust_record *recs = NULL;
	STACK_OF(X509) *stack = NULL;
	X509 *cert = NULL;
	size_t n = 0, i;
	int r;

	r = cv_vault_trust_get(v, NULL, &recs, &n, err);
	if (r < 0)
		return r;
	stack = sk_X509_new_null();
	if (stack == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		r = cv_x509_cert_from_der(recs[i].cert_der, recs[i].cert_der_len, &cert);
		if (r < 0)
			goto out;
		if (sk_X509_push(stack, cert) <= 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		cert = NULL;
	}
	*ret = stack;
	stack = NULL;
	r = 0;
out:
	X509_free(cert);
	sk_X509_pop_free(stack, X509_free);
	cv_store_trust_free(recs, n);
	return r;
}

int cv_vault_cert_chain_trusted(struct cv_vault *v, const char *name, int64_t now,
				struct cv_errmsg *why, struct cv_errmsg *err)
{
	struct cv_cert_record *rec = NULL;
	STACK_OF(X509) *trusted = NULL, *chain = NULL;
	X509 *cert = NULL;
	int r;

	r = vault_lookup(v, name, &rec, err);
	if (r == 0)
		r = vault_trusted_stack(v, &trusted, err);
	if (r == 0)
		r = cv_x509_cert_from_der(rec->cert_der, rec->cert_der_len, &cert);
	if (r == 0)
		r = cv_x509_chain_parse(rec->chain_pem, strlen(rec->chain_pem), CV_ENC_PEM, &chain,
					err);
	if (r == 0)
		r = cv_x509_chain_trusted(cert, chain, trusted, (time_t)now, why);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(trusted, X509_free);
	X509_free(cert);
	cv_store_cert_free(rec);
	return r;
}

void cv_vault_trust_preview_free(struct cv_trust_preview *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; p->infos != NULL && i < p->n; i++)
		cv_x509_info_free(p->infos[i]);
	free(p->infos);
	free(p->aliases);
	free(p);
}

static void trust_problem(struct cv_trust_preview *p, int code, const char *message)
{
	struct cv_preview_problem *pp;

	if (p->n_problems == CV_PREVIEW_PROBLEMS_MAX)
		return;
	pp = &p->problems[p->n_problems++];
	pp->code = code;
	snprintf(pp->message, sizeof(pp->message), "%s", message);
}

/* The checks of trust_record and of the insert on entry i, each on its own. */
static int trust_entry_checks(struct cv_vault *v, struct cv_trust_preview *p, size_t i,
			      int64_t now)
{
	const struct cv_x509_info *info = p->infos[i];
	struct cv_trust_record *found = NULL;
	struct cv_errmsg why = { "" };
	size_t n_found = 0;
	int64_t total = 0;
	int r;

	if (check_alias(p->aliases[i], &why) < 0)
		trust_problem(p, CV_ERR_INVALID_NAME, why.text);
	if (!info->is_ca) {
		cv_errmsg_set(&why, CV_ERR_NOT_CA, "entry %zu (%.200s) is not a CA certificate: a "
			      "truststore holds CAs", i + 1, info->subject);
		trust_problem(p, CV_ERR_NOT_CA, why.text);
	}
	if ((int64_t)info->not_before > now) {
		cv_errmsg_set(&why, CV_ERR_NOT_YET_VALID, "entry %zu (%.200s) is not valid yet",
			      i + 1, info->subject);
		trust_problem(p, CV_ERR_NOT_YET_VALID, why.text);
	}
	if ((int64_t)info->not_after < now) {
		cv_errmsg_set(&why, CV_ERR_EXPIRED, "entry %zu (%.200s) has expired", i + 1,
			      info->subject);
		trust_problem(p, CV_ERR_EXPIRED, why.text);
	}
	/* The insert's two refusals, as it would find them. */
	if (cv_name_valid(p->aliases[i])) {
		r = cv_store_trust_get(v->store, p->aliases[i], &found, &n_found);
		cv_store_trust_free(found, n_found);
		found = NULL;
		if (r == 0) {
			cv_errmsg_set(&why, CV_ERR_NAME_TAKEN, "the alias %s is taken", p->aliases[i]);
			trust_problem(p, CV_ERR_NAME_TAKEN, why.text);
		} else if (r != CV_ERR_NOT_FOUND) {
			return r;
		}
	}
	r = cv_store_trust_search(v->store, info->sha256_fingerprint, NULL, 1, &found, &n_found,
				  &total);
	if (r < 0)
		return r;
	if (n_found > 0 && strcmp(found[0].sha256_fingerprint, info->sha256_fingerprint) == 0) {
		cv_errmsg_set(&why, CV_ERR_SAME_CERTIFICATE, "entry %zu is already trusted as %s",
			      i + 1, found[0].alias);
		trust_problem(p, CV_ERR_SAME_CERTIFICATE, why.text);
	}
	cv_store_trust_free(found, n_found);
	return 0;
}

int cv_vault_trust_preview(struct cv_vault *v, const struct cv_trust_add *req, int64_t now,
			   struct cv_trust_preview **ret_preview, struct cv_errmsg *err)
{
	struct cv_trust_preview *p;
	struct cv_errmsg why = { "" };
	STACK_OF(X509) *certs = NULL;
	size_t i, n;
	int r;

	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return CV_ERR_NOMEM;
	if (req->n_aliases == 0 && check_alias(req->alias != NULL ? req->alias : "", &why) < 0)
		trust_problem(p, CV_ERR_INVALID_NAME, why.text);
	/* What cannot be read or fetched leaves nothing more to judge. */
	r = certificates_of(v, req, &certs, &why);
	if (r == CV_ERR_NOMEM)
		goto out;
	if (r < 0) {
		trust_problem(p, r, why.text);
		goto done;
	}
	n = (size_t)sk_X509_num(certs);
	if (req->n_aliases > 0 && req->n_aliases != n) {
		cv_errmsg_set(&why, CV_ERR_BAD_REQUEST,
			      "%zu aliases for %zu certificates: give one for each", req->n_aliases,
			      n);
		trust_problem(p, CV_ERR_BAD_REQUEST, why.text);
	}
	p->aliases = calloc(n > 0 ? n : 1, sizeof(*p->aliases));
	p->infos = calloc(n > 0 ? n : 1, sizeof(*p->infos));
	if (p->aliases == NULL || p->infos == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		/* The alias each entry would get, as trust_record names it. */
		if (req->n_aliases > 0)
			snprintf(p->aliases[i], sizeof(p->aliases[i]), "%s",
				 i < req->n_aliases ? req->aliases[i] : "");
		else if (n == 1)
			snprintf(p->aliases[i], sizeof(p->aliases[i]), "%s",
				 req->alias != NULL ? req->alias : "");
		else {
			/* alias-N may not fit: then the check names it too long, as the add
			 * would. */
			char longer[96];

			snprintf(longer, sizeof(longer), "%.64s-%zu",
				 req->alias != NULL ? req->alias : "", i + 1);
			snprintf(p->aliases[i], sizeof(p->aliases[i]), "%.64s", longer);
			if (strlen(longer) >= sizeof(p->aliases[i]))
				trust_problem(p, CV_ERR_INVALID_NAME, "an alias-N is longer than 64 "
					      "characters");
		}
		r = cv_x509_info_new(sk_X509_value(certs, (int)i), &p->infos[i]);
		if (r < 0) {
			cv_errmsg_set(&why, r, "entry %zu: the certificate's fields cannot be read",
				      i + 1);
			trust_problem(p, r, why.text);
			break;
		}
		p->n = i + 1;
		r = trust_entry_checks(v, p, i, now);
		if (r < 0) {
			cv_errmsg_set(err, r, "the database could not be read");
			goto out;
		}
	}
done:
	*ret_preview = p;
	p = NULL;
	r = 0;
out:
	cv_vault_trust_preview_free(p);
	sk_X509_pop_free(certs, X509_free);
	return r;
}
