/* Certificate use cases over versions: renew, replace, the version history. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

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
	case CV_ERR_DOMAIN_NOT_COVERED:
		return cv_errmsg_set(err, r,
				     "the new certificate does not cover %s, which service %s uses",
				     c->detail, c->service);
	default:
		return cv_errmsg_set(err, r, "the database refused the new version");
	}
}

int cv_vault_cert_supersede(struct cv_vault *v, enum cv_version_end kind,
			    const struct cv_import_request *req, const struct cv_version_ref *ref,
			    int64_t now, int64_t *ret_previous, struct cv_errmsg *err)
{
	struct cv_cert_record *cur = NULL, *next = NULL;
	struct cv_import_request material = *req;
	struct cv_conflict conflict = { "", "", 0 };
	struct cv_supersede sup = { 0 };
	struct cv_errmsg ignored;
	EVP_PKEY *key = NULL;
	int r, journaled = 0, created = 0;

	r = vault_lookup(v, req->name, &cur, err);
	if (r < 0)
		goto out;
	sup.kind = kind;
	sup.id = cur->id;
	sup.now = now;
	sup.destroy_old_key = v->destroy_superseded_keys;
	r = resolve_ref(v, cur, ref, &sup.version, err);
	if (r < 0)
		goto out;
	material.description = cur->description;
	r = vault_material_check(v, &material, now, &next, &key, err);
	if (r < 0)
		goto out;
	sup.next = next;
	/* Every check before the token does any work; the commit repeats them. */
	r = cv_store_cert_supersede_check(v->store, &sup, &conflict);
	if (r < 0) {
		supersede_refused(r, &sup, cur->name, &conflict, err);
		goto out;
	}
	/* The journal names the key before it exists: a crash before the commit leaves a key
	 * the reconciler finds and destroys. */
	r = cv_store_key_journal_add(v->store, next->key_id, cur->id, now);
	if (r < 0) {
		cv_errmsg_set(err, r, "the database refused the new version");
		goto out;
	}
	journaled = 1;
	r = cv_token_key_create(v->token, key, cur->name, next->key_id, sizeof(next->key_id),
				err);
	if (r < 0)
		goto out;
	created = 1;
	r = cv_store_cert_supersede(v->store, &sup, &conflict);
	if (r < 0) {
		supersede_refused(r, &sup, cur->name, &conflict, err);
		goto out;
	}
	journaled = created = 0; /* the commit took the journal row; the key is the version's */
	if (sup.destroy_old_key &&
	    vault_key_destroy(v, cur->key_id, &ignored) == 0)
		(void)cv_store_version_key_destroyed(v->store, cur->key_id);
	/* A failure above leaves the old key 'destroying': the next start destroys it. */
	*ret_previous = sup.version;
	r = 0;
out:
	if (created && vault_key_destroy(v, next->key_id, &ignored) < 0)
		journaled = 0; /* the key is still there: the journal row keeps naming it */
	if (journaled)
		(void)cv_store_key_journal_remove(v->store, next->key_id);
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
		if (versions[i].key_state == CV_KEY_IN_TOKEN) {
			r = cv_token_key_uri(v->token, versions[i].key_id, CV_TOKEN_ID_LEN,
					     cur->name, vv->key_uri, sizeof(vv->key_uri));
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
