/* Service use cases: create, change, delete, bind a certificate, unbind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "certvault/util.h"
#include "internal.h"

/* The messages of a NOT_FOUND from the store, which says what was missing. */
static int missing(struct cv_vault *v, int r, const struct cv_conflict *c, const char *service,
		   const char *certificate, struct cv_errmsg *err)
{
	struct cv_cert_record *deleted = NULL;

	/* A deleted certificate cannot be bound: the message says how to have it back. */
	if (strcmp(c->detail, "certificate") == 0 && certificate != NULL &&
	    cv_store_deleted_get(v->store, certificate, &deleted) == 0) {
		cv_errmsg_set(err, r, "certificate %s is deleted: recover it first (POST "
			      "/v1/deleted-certificates/%s/recover)", deleted->name, deleted->name);
		cv_store_cert_free(deleted);
		return r;
	}
	if (strcmp(c->detail, "certificate") == 0 && certificate != NULL)
		return cv_errmsg_set(err, r, "no certificate named %s", certificate);
	if (strcmp(c->detail, "certificate") == 0)
		return cv_errmsg_set(err, r, "service %s uses no certificate", service);
	return cv_errmsg_set(err, r, "no service named %s", service);
}

static int not_covered(int r, const struct cv_conflict *c, const char *certificate,
		       struct cv_errmsg *err)
{
	if (certificate != NULL)
		return cv_errmsg_set(err, r, "certificate %s does not cover %s (service %s)",
				     certificate, c->detail, c->service);
	return cv_errmsg_set(err, r,
			     "the certificate service %s uses does not cover %s: bind one that"
			     " does first",
			     c->service, c->detail);
}

/* The certificate a service uses as the record names it: name and version, or null. */
static json_t *used_cert_json(const struct cv_service_record *svc)
{
	if (svc == NULL || svc->cert_name[0] == '\0')
		return json_null();
	return json_pack("{s:s, s:I}", "name", svc->cert_name, "version",
			 (json_int_t)svc->cert_version);
}

static json_t *domains_array(char *const *v, size_t n)
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

/* What a put changes, against the service as read just before (NULL: a new one). */
static json_t *put_changes(const struct cv_service_record *old,
			   const struct cv_service_record *svc)
{
	json_t *c = json_object();
	size_t i;
	int same;

	if (c == NULL)
		return NULL;
	if (old == NULL || strcasecmp(old->environment, svc->environment) != 0)
		json_object_set_new(c, "environment",
				    vault_audit_change(old != NULL ? json_string(old->environment)
								   : NULL,
						       json_string(svc->environment)));
	if (old != NULL && strcmp(old->description, svc->description) != 0)
		json_object_set_new(c, "description",
				    vault_audit_change(vault_audit_text(old->description),
						       vault_audit_text(svc->description)));
	same = old != NULL && old->n_domains == svc->n_domains;
	for (i = 0; same && i < svc->n_domains; i++)
		same = strcmp(old->domains[i], svc->domains[i]) == 0;
	if (!same)
		json_object_set_new(c, "domains",
				    vault_audit_change(old != NULL ? domains_array(old->domains,
										   old->n_domains)
								   : NULL,
						       domains_array(svc->domains, svc->n_domains)));
	return c;
}

int cv_vault_service_put(struct cv_vault *v, struct cv_audit *audit,
			 const struct cv_service_request *req, int64_t now, int *ret_created,
			 struct cv_errmsg *err)
{
	struct cv_service_record svc = { 0 };
	struct cv_conflict conflict = { "", "", 0, 0 };
	size_t i, j;
	int r;

	r = vault_check_name(req->name, err);
	if (r < 0)
		return r;
	if (req->environment == NULL || !cv_name_valid(req->environment))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "environment must be 1 to %d letters, digits or hyphens",
				     CV_NAME_MAX);
	if (req->description != NULL && strlen(req->description) > CV_DESCRIPTION_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "description is longer than %d bytes",
				     CV_DESCRIPTION_MAX);
	if (req->n_domains == 0 || req->n_domains > CV_SERVICE_MAX_DOMAINS)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "a service has 1 to %d domains", CV_SERVICE_MAX_DOMAINS);
	snprintf(svc.name, sizeof(svc.name), "%s", req->name);
	snprintf(svc.environment, sizeof(svc.environment), "%s", req->environment);
	svc.description = (char *)(req->description != NULL ? req->description : "");
	svc.domains = calloc(req->n_domains, sizeof(*svc.domains));
	if (svc.domains == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; i < req->n_domains; i++) {
		char canonical[CV_DNS_NAME_MAX + 1];
		struct cv_errmsg why;

		r = cv_x509_domain_normalize(req->domains[i], canonical, sizeof(canonical), &why);
		if (r < 0) {
			cv_errmsg_set(err, r, "domain %zu: %s", i + 1, why.text);
			goto out;
		}
		for (j = 0; j < i; j++) {
			if (strcmp(svc.domains[j], canonical) == 0) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						  "domain %s is listed twice", canonical);
				goto out;
			}
		}
		svc.domains[i] = strdup(canonical);
		if (svc.domains[i] == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		svc.n_domains++;
	}
	/* For the record only: the old values as read just before the change. */
	if (audit != NULL) {
		struct cv_service_record *old = NULL;

		(void)cv_store_service_get(v->store, svc.name, &old);
		vault_audit_changes(audit, put_changes(old, &svc));
		cv_store_service_free(old);
	}
	r = cv_store_service_put(v->store, &svc, now, ret_created, &conflict,
				 vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_DOMAIN_NOT_COVERED)
		not_covered(r, &conflict, NULL, err);
	else if (r == CV_ERR_UNKNOWN_ENVIRONMENT)
		cv_errmsg_set(err, r, "no environment named %s: create it first with PUT "
			      "/v1/environments/%s", req->environment, req->environment);
	else if (r == CV_ERR_ENVIRONMENT_NOT_ALLOWED)
		cv_errmsg_set(err, r, "the certificate service %s uses is not for environment %s:"
			      " bind one that is first", conflict.service, conflict.detail);
	else if (r < 0)
		vault_write_errmsg(err, r, "the database refused the service");
out:
	for (i = 0; i < svc.n_domains; i++)
		free(svc.domains[i]);
	free(svc.domains);
	return r;
}

int cv_vault_service_get(struct cv_vault *v, const char *name,
			 struct cv_service_record **ret_svc, struct cv_errmsg *err)
{
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	r = cv_store_service_get(v->store, name, ret_svc);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no service named %s", name);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

/* Adds the fingerprint of the certificate service name uses now, if any, to a, and the
 * change of certificate (to new_cert, NULL: none) to its changes: the use an unbind or a
 * delete ends, or a bind replaces. Only the record needs it, so a failed read leaves it
 * out. */
static void audit_service_cert(struct cv_vault *v, struct cv_audit *a, const char *name,
			       json_t *new_cert)
{
	struct cv_service_record *svc = NULL;

	if (a == NULL || cv_store_service_get(v->store, name, &svc) < 0) {
		json_decref(new_cert);
		return;
	}
	if (svc->cert_name[0] != '\0')
		cv_audit_fingerprint(a, svc->cert_sha256_fingerprint);
	vault_audit_changes(a, json_pack("{s:o}", "certificate",
					 vault_audit_change(used_cert_json(svc), new_cert)));
	cv_store_service_free(svc);
}

int cv_vault_service_delete(struct cv_vault *v, struct cv_audit *audit, const char *name,
			    struct cv_errmsg *err)
{
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	audit_service_cert(v, audit, name, NULL);
	r = cv_store_service_remove(v->store, name, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no service named %s", name);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the deletion");
	return 0;
}

int cv_vault_service_bind(struct cv_vault *v, struct cv_audit *audit, const char *name,
			  const char *certificate, int64_t now, struct cv_errmsg *err)
{
	struct cv_conflict conflict = { "", "", 0, 0 };
	struct cv_cert_record *rec = NULL;
	int r;

	r = vault_check_name(name, err);
	if (r == 0)
		r = vault_check_name(certificate, err);
	if (r < 0)
		return r;
	/* For the record only: the store checks the certificate again, under its lock. The
	 * record names the certificate bound (name and version) and the one it replaces. */
	if (audit != NULL && cv_store_cert_get(v->store, certificate, &rec) == 0) {
		audit_service_cert(v, audit, name,
				   json_pack("{s:s, s:I}", "name", rec->name, "version",
					     (json_int_t)rec->version));
		cv_audit_fingerprint(audit, rec->sha256_fingerprint);
	}
	cv_store_cert_free(rec);
	r = cv_store_service_bind(v->store, name, certificate, now, &conflict,
				  vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return missing(v, r, &conflict, name, certificate, err);
	if (r == CV_ERR_NO_PRIVATE_KEY)
		return cv_errmsg_set(err, r, "certificate %s is a public certificate (no private "
				     "key): a service cannot serve with it", certificate);
	if (r == CV_ERR_NOT_YET_VALID) {
		char when[CV_TIME_BUFLEN] = "";

		(void)cv_time_rfc3339(conflict.when, when, sizeof(when));
		return cv_errmsg_set(err, r, "certificate %s is not valid before %s: it can be "
				     "bound from then on", certificate, when);
	}
	if (r == CV_ERR_ENVIRONMENT_NOT_ALLOWED)
		return cv_errmsg_set(err, r, "certificate %s is not for environment %s (service "
				     "%s): add the environment to the certificate's environments "
				     "first", certificate, conflict.detail, conflict.service);
	if (r == CV_ERR_DOMAIN_NOT_COVERED)
		return not_covered(r, &conflict, certificate, err);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the binding");
	return 0;
}

int cv_vault_service_unbind(struct cv_vault *v, struct cv_audit *audit, const char *name,
			    int64_t now, struct cv_errmsg *err)
{
	struct cv_conflict conflict = { "", "", 0, 0 };
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	audit_service_cert(v, audit, name, NULL);
	r = cv_store_service_unbind(v->store, name, now, &conflict, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return missing(v, r, &conflict, name, NULL, err);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the change");
	return 0;
}

int cv_vault_service_list(struct cv_vault *v, const struct cv_service_filter *filter,
			  struct cv_service_page **ret_page, struct cv_errmsg *err)
{
	int r;

	r = cv_store_service_list(v->store, filter, ret_page);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}
