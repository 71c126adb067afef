/* Certificate use cases over versions: renew, replace, the version history. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "certvault/fault.h"
#include "certvault/text.h"
#include "certvault/util.h"
#include "internal.h"

/* The first 8 bytes of a fingerprint ("AB:CD:...") as 16 lower-case hex digits. */
static void fingerprint_head(const char *fp, char out[17])
{
	size_t i, j = 0;

	for (i = 0; fp[i] != '\0' && j < 16; i++) {
		if (fp[i] == ':')
			continue;
		out[j++] = (char)(fp[i] >= 'A' && fp[i] <= 'F' ? fp[i] - 'A' + 'a' : fp[i]);
	}
	out[j] = '\0';
}

void cv_vault_version_tag(int64_t version, const char *sha256_fingerprint,
			  char buf[CV_VERSION_TAG_LEN])
{
	char head[17];

	fingerprint_head(sha256_fingerprint, head);
	snprintf(buf, CV_VERSION_TAG_LEN, "%lld-%s", (long long)version, head);
}

int cv_vault_version_ref_parse(const char *tag, struct cv_version_ref *ret_ref)
{
	const char *dash = strchr(tag, '-');
	char digits[21];
	size_t n;

	if (dash == NULL || (n = (size_t)(dash - tag)) == 0 || n >= sizeof(digits))
		return CV_ERR_PRECONDITION;
	memcpy(digits, tag, n);
	digits[n] = '\0';
	if (cv_parse_int64(digits, 1, INT64_MAX, &ret_ref->version) < 0 ||
	    strlen(dash + 1) != 16 || strspn(dash + 1, "0123456789abcdef") != 16)
		return CV_ERR_PRECONDITION;
	memcpy(ret_ref->fingerprint, dash + 1, 17);
	return 0;
}

static const char *ended_word(enum cv_version_end e)
{
	return e == CV_END_RENEWED ? "renewed" : "replaced";
}

/* Which version ref names: 0 and *ret_version, or the refusal with its message. */
static int resolve_ref(struct cv_vault *v, const struct cv_cert_record *cur,
		       const struct cv_version_ref *ref, int64_t *ret_version,
		       struct cv_errmsg *err)
{
	struct cv_cert_version *versions = NULL;
	char head[17];
	size_t n = 0, i;
	int r;

	if (ref == NULL || (ref->version == 0 && ref->fingerprint[0] == '\0')) {
		*ret_version = cur->version;
		return 0;
	}
	r = cv_store_cert_versions(v->store, cur->id, &versions, &n);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	for (i = 0; i < n; i++) {
		if (versions[i].version != ref->version)
			continue;
		fingerprint_head(versions[i].sha256_fingerprint, head);
		if (ref->fingerprint[0] != '\0' && strcmp(head, ref->fingerprint) != 0)
			break;
		if (versions[i].ended_by != CV_END_NONE) {
			r = cv_errmsg_set(err, CV_ERR_ALREADY_RENEWED,
					  "version %lld of %s was already %s; the current version"
					  " is %lld",
					  (long long)ref->version, cur->name,
					  ended_word(versions[i].ended_by), (long long)versions[0].version);
			goto out;
		}
		*ret_version = ref->version;
		r = 0;
		goto out;
	}
	r = cv_errmsg_set(err, CV_ERR_PRECONDITION, "%s names no version of %s",
			  ref->fingerprint[0] != '\0' ? "If-Match" : "\"version\"", cur->name);
out:
	free(versions);
	return r;
}

/* The message of each refusal of a supersede. */
static int supersede_refused(int r, const struct cv_supersede *sup, const char *name,
			     const struct cv_conflict *c, struct cv_errmsg *err)
{
	switch (r) {
	case CV_ERR_NOT_FOUND:
		return cv_errmsg_set(err, r, "no certificate named %s", name);
	case CV_ERR_ALREADY_RENEWED:
		return cv_errmsg_set(err, r,
				     "version %lld of %s is no longer current: the current version"
				     " is %lld",
				     (long long)sup->version, name, (long long)c->version);
	case CV_ERR_NOT_IN_USE:
		return cv_errmsg_set(err, r,
				     "%s is used by no service: only a certificate in use is renewed;"
				     " replace it instead",
				     name);
	case CV_ERR_SAME_CERTIFICATE:
		return cv_errmsg_set(err, r, "this certificate is already version %lld of %s",
				     (long long)c->version, name);
	case CV_ERR_JWK_CHOICE_REQUIRED:
		return cv_errmsg_set(err, r,
				     "the JWKs linked to %s changed (%s): look again and choose",
				     name, c->detail);
	case CV_ERR_NAME_TAKEN:
		return cv_errmsg_set(err, r, "the new key is already a JWK of its own");
	case CV_ERR_NOT_YET_VALID: {
		char when[CV_TIME_BUFLEN] = "";

		(void)cv_time_rfc3339(c->when, when, sizeof(when));
		return cv_errmsg_set(err, r, "the new certificate is not valid before %s and services"
				     " use %s: it can take over from then on", when, name);
	}
	case CV_ERR_DOMAIN_NOT_COVERED:
		return cv_errmsg_set(err, r,
				     "the new certificate does not cover every domain of the "
				     "services using it: %s", c->detail);
	default:
		return vault_write_errmsg(err, r, "the database refused the new version");
	}
}

int cv_vault_jwk_action_parse(const char *s, enum cv_jwk_action *ret)
{
	static const char *const names[] = {
		[CV_JWK_ACTION_UPDATE] = "update",
		[CV_JWK_ACTION_DISCONNECT] = "disconnect",
		[CV_JWK_ACTION_DELETE] = "delete",
	};
	size_t i;

	*ret = CV_JWK_ACTION_NONE;
	if (s == NULL)
		return 0;
	for (i = 1; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*ret = (enum cv_jwk_action)i;
			return 0;
		}
	}
	return CV_ERR_BAD_REQUEST;
}

/* The JWKs linked to a certificate being renewed or replaced, and what becomes of them. */
struct jwk_plan {
	struct cv_jwk_record *linked;
	size_t n;
	char (*kids)[65];
	char (*new_kids)[65];
	char (*new_algs)[16];     /* a successor's alg: the old one's, unless the key differs */
	char **new_jwks;
};

static void jwk_plan_release(struct jwk_plan *p)
{
	size_t i;

	for (i = 0; p->new_jwks != NULL && i < p->n; i++)
		free(p->new_jwks[i]);
	free(p->new_jwks);
	free(p->new_algs);
	free(p->new_kids);
	free(p->kids);
	cv_store_jwks_free(p->linked, p->n);
}

/* Reads the linked JWKs and, when there are any, checks the caller's choice; for an update,
 * makes each one's successor from next (the same use, and the same alg when it still fits
 * the new key, else the new key's default). */
static int jwk_plan_make(struct cv_vault *v, const struct cv_cert_record *cur,
			 const struct cv_cert_record *next, const struct cv_jwk_choice *choice,
			 struct jwk_plan *p, struct cv_errmsg *err)
{
	json_t *jwk = NULL;
	size_t i;
	int r;

	r = cv_store_jwk_list(v->store, cur->id, &p->linked, &p->n);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	if (p->n == 0)
		return 0;
	if (choice->action != CV_JWK_ACTION_UPDATE && choice->action != CV_JWK_ACTION_DISCONNECT)
		return vault_jwk_choice_required(cur->name, p->linked, p->n, "update or disconnect",
						 err);
	if (choice->action == CV_JWK_ACTION_UPDATE &&
	    (choice->confirm == NULL || !cv_text_name_equal(choice->confirm, cur->name)))
		return cv_errmsg_set(err, CV_ERR_CONFIRM_REQUIRED,
				     "updating the JWKs linked to %s needs confirm=%s", cur->name,
				     cur->name);
	p->kids = calloc(p->n, sizeof(*p->kids));
	p->new_kids = calloc(p->n, sizeof(*p->new_kids));
	p->new_jwks = calloc(p->n, sizeof(*p->new_jwks));
	p->new_algs = calloc(p->n, sizeof(*p->new_algs));
	if (p->kids == NULL || p->new_kids == NULL || p->new_jwks == NULL || p->new_algs == NULL)
		return CV_ERR_NOMEM;
	for (i = 0; i < p->n; i++) {
		snprintf(p->kids[i], sizeof(p->kids[i]), "%s", p->linked[i].kid);
		if (choice->action != CV_JWK_ACTION_UPDATE)
			continue;
		r = vault_cert_jwk(next, p->linked[i].alg, p->linked[i].use, &jwk, err);
		if (r == CV_ERR_BAD_REQUEST)
			r = vault_cert_jwk(next, NULL, p->linked[i].use, &jwk, err);
		if (r < 0) {
			struct cv_errmsg why = *err;

			return cv_errmsg_set(err, r, "JWK %s cannot follow the new certificate: %.150s",
					     p->linked[i].kid, why.text);
		}
		snprintf(p->new_kids[i], sizeof(p->new_kids[i]), "%s",
			 json_string_value(json_object_get(jwk, "kid")));
		snprintf(p->new_algs[i], sizeof(p->new_algs[i]), "%s",
			 json_string_value(json_object_get(jwk, "alg")));
		r = cv_json_text(jwk, JSON_COMPACT, &p->new_jwks[i]);
		json_decref(jwk);
		jwk = NULL;
		if (r < 0)
			return r;
	}
	return 0;
}

void cv_jwk_outcome_release(struct cv_jwk_outcome *o)
{
	free(o->changes);
	memset(o, 0, sizeof(*o));
}

/* The outcome of a plan that was carried out (outcomes: each new kid's fate, NULL when
 * none were linked). */
static int jwk_outcome_of(const struct jwk_plan *plan, enum cv_jwk_action action,
			  const enum cv_jwk_fate *outcomes, int64_t superseded_until,
			  struct cv_jwk_outcome *o)
{
	size_t i;

	memset(o, 0, sizeof(*o));
	o->action = plan->n > 0 ? action : CV_JWK_ACTION_NONE;
	o->superseded_until = superseded_until;
	if (plan->n == 0)
		return 0;
	o->changes = calloc(plan->n, sizeof(*o->changes));
	if (o->changes == NULL)
		return CV_ERR_NOMEM;
	o->n = plan->n;
	for (i = 0; i < plan->n; i++) {
		struct cv_jwk_change *c = &o->changes[i];

		snprintf(c->kid, sizeof(c->kid), "%s", plan->kids[i]);
		snprintf(c->alg, sizeof(c->alg), "%s", plan->linked[i].alg);
		snprintf(c->use, sizeof(c->use), "%s", plan->linked[i].use);
		if (action != CV_JWK_ACTION_UPDATE)
			continue;
		snprintf(c->new_kid, sizeof(c->new_kid), "%s", plan->new_kids[i]);
		snprintf(c->new_alg, sizeof(c->new_alg), "%s", plan->new_algs[i]);
		c->fate = outcomes != NULL ? outcomes[i] : CV_JWK_MADE;
	}
	return 0;
}

static int supersede(struct cv_vault *v, struct cv_audit *audit, enum cv_version_end kind,
		     const struct cv_import_request *req, const struct cv_version_ref *ref,
		     const struct cv_jwk_choice *jwk, int64_t now, int64_t *ret_previous,
		     struct cv_revocation *ret_rev, struct cv_jwk_outcome *ret_out,
		     struct cv_errmsg *err);

int cv_vault_cert_supersede(struct cv_vault *v, struct cv_audit *audit,
			    enum cv_version_end kind, const struct cv_import_request *req,
			    const struct cv_version_ref *ref, const struct cv_jwk_choice *jwk,
			    int64_t now, int64_t *ret_previous, struct cv_revocation *ret_rev,
			    struct cv_jwk_outcome *ret_jwks, struct cv_errmsg *err)
{
	if (ret_jwks != NULL)
		memset(ret_jwks, 0, sizeof(*ret_jwks));
	return supersede(v, audit, kind, req, ref, jwk, now, ret_previous, ret_rev, ret_jwks, err);
}

/* cv_vault_cert_supersede: the linked JWKs' account in *ret_out (NULL: not wanted). */
static int supersede(struct cv_vault *v, struct cv_audit *audit, enum cv_version_end kind,
		     const struct cv_import_request *req, const struct cv_version_ref *ref,
		     const struct cv_jwk_choice *jwk, int64_t now, int64_t *ret_previous,
		     struct cv_revocation *ret_rev, struct cv_jwk_outcome *ret_out,
		     struct cv_errmsg *err)
{
	enum cv_jwk_fate *outcomes = NULL;
	struct cv_revocation rev;
	struct jwk_plan plan = { 0 };
	struct cv_cert_record *cur = NULL, *next = NULL;
	struct cv_import_request material = *req;
	struct cv_conflict conflict = { "", "", 0, 0 };
	struct cv_supersede sup = { 0 };
	struct cv_errmsg ignored;
	EVP_PKEY *key = NULL;
	int r, journaled = 0, created = 0;

	memset(&rev, 0, sizeof(rev));
	r = vault_lookup(v, req->name, &cur, err);
	if (r < 0)
		goto out;
	cv_audit_fingerprint(audit, cur->sha256_fingerprint);
	/* Whoever renews or replaces the served certificate chooses the key every HTTPS client
	 * then trusts: an operator with a key of their own could stand in for certvault itself.
	 * Decided here, where both the target and the role are known; no actor known: refused. */
	if (v->served != NULL && strcasecmp(v->served, cur->name) == 0 &&
	    (audit == NULL || audit->role != CV_ROLE_ADMIN)) {
		r = cv_errmsg_set(err, CV_ERR_FORBIDDEN, "%s is the certificate the HTTPS listener "
				  "serves (server.tls_certificate): only an admin may %s it",
				  cur->name, kind == CV_END_RENEWED ? "renew" : "replace");
		goto out;
	}
	sup.kind = kind;
	sup.id = cur->id;
	sup.now = now;
	r = resolve_ref(v, cur, ref, &sup.version, err);
	if (r < 0)
		goto out;
	material.description = cur->description;
	r = vault_material_check(v, audit, &material, now, &next, &key, &rev, err);
	if (r < 0)
		goto out;
	/* An entry keeps its kind: a key pair is followed by a key pair, a public certificate
	 * by a public certificate. */
	if (!cur->is_public && key == NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"private_key\" is required: %s holds"
				  " a key pair", cur->name);
		goto out;
	}
	if (cur->is_public && key != NULL) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "%s is a public certificate: send the "
				  "certificate alone (a key pair is imported under a name of its "
				  "own)", cur->name);
		goto out;
	}
	sup.destroy_old_key = !cur->is_public && v->destroy_superseded_keys;
	/* The version's own label, so that no hand-written URI matches two versions' keys. */
	cv_key_label(cur->name, cur->version + 1, next->key_label);
	if (req->token_key != NULL) {
		/* The merge of a renewal by generate: the key waits in the token already, under
		 * the label it was generated with. */
		memcpy(next->key_id, req->token_key_id, sizeof(next->key_id));
		snprintf(next->key_label, sizeof(next->key_label), "%s", req->token_key_label);
		next->key_origin = CV_KEY_ORIGIN_GENERATED;
	}
	sup.next = next;
	r = jwk_plan_make(v, cur, next, jwk, &plan, err);
	if (r < 0)
		goto out;
	sup.jwk_action = jwk->action;
	/* The record says which version this replaces and what the JWKs' owner chose. */
	vault_audit_changes(audit, json_pack("{s:{s:I, s:I}, s:s?}", "version", "old",
					     (json_int_t)sup.version, "new",
					     (json_int_t)sup.version + 1, "jwk_action",
					     jwk->action == CV_JWK_ACTION_UPDATE ? "update"
					     : jwk->action == CV_JWK_ACTION_DISCONNECT ? "disconnect"
										: NULL));
	sup.n_linked = plan.n;
	sup.linked = plan.kids;
	sup.new_kids = plan.new_kids;
	sup.new_jwks = plan.new_jwks;
	if (plan.n > 0) {
		outcomes = calloc(plan.n, sizeof(*outcomes));
		if (outcomes == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		sup.outcomes = outcomes;
	}
	/* Every check before the token does any work; the commit repeats them. */
	r = cv_store_cert_supersede_check(v->store, &sup, &conflict);
	if (r < 0) {
		supersede_refused(r, &sup, cur->name, &conflict, err);
		goto out;
	}
	/* A public certificate has no key: nothing to journal or create, and no token
	 * needed. */
	if (key != NULL) {
		r = cv_token_check(v->token, err);
		if (r < 0)
			goto out;
	}
	if (req->token_key != NULL) {
		/* Its pending row names it until the commit ends the row. */
		if (!cv_token_key_exists(v->token, next->key_id, sizeof(next->key_id))) {
			r = cv_errmsg_set(err, CV_ERR_TOKEN, "the generated key of %s is not in "
					  "the token", cur->name);
			goto out;
		}
	} else if (key != NULL) {
		/* The journal names the key before it exists: a crash before the commit
		 * leaves a key the reconciler finds and destroys. */
		r = cv_store_key_journal_add(v->store, next->key_id, cur->id, now);
		if (r < 0) {
			vault_write_errmsg(err, r, "the database refused the new version");
			goto out;
		}
		journaled = 1;
		sup.journaled = 1;
		cv_fault_point("supersede.after_journal");
		r = cv_token_key_create(v->token, key, next->key_label, next->key_id,
					sizeof(next->key_id), err);
		if (r < 0)
			goto out;
		created = 1;
	}
	sup.audit = vault_audit_done(audit);
	r = cv_store_cert_supersede(v->store, &sup, &conflict);
	vault_audit_written(audit, r);
	if (r < 0) {
		supersede_refused(r, &sup, cur->name, &conflict, err);
		goto out;
	}
	journaled = created = 0; /* the commit took the journal row; the key is the version's */
	cv_fault_point("supersede.after_commit");
	if (sup.destroy_old_key && vault_key_destroy(v, cur->key_id, &ignored) == 0) {
		cv_fault_point("supersede.after_old_key_destroyed");
		(void)cv_store_version_key_destroyed(v->store, cur->key_id);
	}
	/* A failure above leaves the old key 'destroying': the next start destroys it. */
	*ret_previous = sup.version;
	/* The change is made: an outcome that cannot be told (no memory) says none. A
	 * superseded JWK leaves the public JWKS a retention after now (the commit's time). */
	if (ret_out != NULL &&
	    jwk_outcome_of(&plan, jwk->action, outcomes,
			   now > INT64_MAX - v->jwks_retention ? INT64_MAX : now + v->jwks_retention,
			   ret_out) < 0)
		cv_jwk_outcome_release(ret_out);
	r = 0;
out:
	if (created && vault_key_destroy(v, next->key_id, &ignored) < 0)
		journaled = 0; /* the key is still there: the journal row keeps naming it */
	if (journaled)
		(void)cv_store_key_journal_remove(v->store, next->key_id);
	/* Refused or not: what the check found (and why a fetch failed) is the log's. */
	if (ret_rev != NULL)
		*ret_rev = rev;
	jwk_plan_release(&plan);
	free(outcomes);
	cv_store_cert_free(cur);
	cv_store_cert_free(next);
	EVP_PKEY_free(key);
	return r;
}

int cv_vault_cert_versions(struct cv_vault *v, const char *name, int64_t now,
			   struct cv_version_view **ret_views, size_t *ret_n,
			   struct cv_errmsg *err)
{
	struct cv_cert_record *cur = NULL;
	struct cv_cert_version *versions = NULL;
	struct cv_version_view *views = NULL;
	size_t n = 0, i;
	int r;

	r = vault_lookup(v, name, &cur, err);
	if (r < 0)
		goto out;
	r = cv_store_cert_versions(v->store, cur->id, &versions, &n);
	if (r == CV_ERR_NOT_FOUND) {
		cv_errmsg_set(err, r, "no certificate named %s", name);
		goto out;
	}
	if (r < 0) {
		cv_errmsg_set(err, r, "the database could not be read");
		goto out;
	}
	views = calloc(n, sizeof(*views));
	if (views == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct cv_version_view *vv = &views[i];

		vv->version = versions[i];
		vv->status = cv_status_at((time_t)versions[i].not_before,
					  (time_t)versions[i].not_after, (time_t)now,
					  v->soon_seconds);
		vv->expires_in_days = cv_expires_in_days((time_t)versions[i].not_after,
							 (time_t)now);
		cv_vault_version_tag(versions[i].version, versions[i].sha256_fingerprint, vv->tag);
		/* A public certificate's versions never had a key in the token. */
		if (versions[i].key_state == CV_KEY_IN_TOKEN && !cur->is_public) {
			r = cv_token_key_uri(v->token, versions[i].key_id, CV_TOKEN_ID_LEN,
					     versions[i].key_label[0] != '\0' ?
					     versions[i].key_label : cur->name,
					     vv->key_uri, sizeof(vv->key_uri));
			if (r < 0)
				goto out;
		}
	}
	*ret_views = views;
	*ret_n = n;
	views = NULL;
	r = 0;
out:
	free(views);
	free(versions);
	cv_store_cert_free(cur);
	return r;
}
