/* Handlers for /v1/certificates: JSON in, a use case, JSON out. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certvault/util.h"
#include "handlers.h"

/* Largest certificate, chain or key text a client may paste (the body limit also holds). */
#define PEM_MAX (256 * 1024)
#define PASSWORD_MAX 1024
#define URL_MAX 300                 /* as the truststore's */
#define FETCH_TIMEOUT_MS 10000      /* a url fetch, as the truststore's */
#define QUERY_MAX 256

/* The services using a certificate: service and environment, and their domains when asked. */
/* The services using the certificate, by name. A scoped caller sees those outside its scope
 * after the others, each as {"out_of_scope": true}: that they exist (the certificate is in
 * use, its delete is refused), not what they are called, where, or where their names sort. */
static json_t *used_by_json(const struct cv_cert_record *rec, int with_domains,
			    const struct cv_scope *scope)
{
	json_t *a = json_array(), *item;
	size_t i, hidden = 0;

	for (i = 0; a != NULL && i < rec->n_used_by; i++) {
		const struct cv_cert_usage *u = &rec->used_by[i];

		if (!cv_scope_usage_in(scope, u)) {
			hidden++;
			continue;
		}
		if (with_domains)
			item = json_pack("{s:s, s:s, s:o}", "service", u->service, "environment",
					 u->environment, "domains",
					 strings_json(u->domains, u->n_domains));
		else
			item = json_pack("{s:s, s:s}", "service", u->service, "environment",
					 u->environment);
		if (json_array_append_new(a, item) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	for (; a != NULL && hidden > 0; hidden--)
		if (json_array_append_new(a, json_pack("{s:b}", "out_of_scope", 1)) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* "key_pair" (its key is in the token) or "public" (a certificate alone). */
static const char *cert_kind(const struct cv_cert_record *rec)
{
	return rec->is_public ? "public" : "key_pair";
}

/* A JSON view of tags stored as "key=value". */
json_t *tags_json(char *const *tags, size_t n)
{
	json_t *o = json_object();
	const char *eq;
	char key[CV_TAG_KEY_MAX + 1];
	size_t i;

	for (i = 0; o != NULL && i < n; i++) {
		eq = strchr(tags[i], '=');
		if (eq == NULL || (size_t)(eq - tags[i]) > CV_TAG_KEY_MAX)
			continue;
		memcpy(key, tags[i], (size_t)(eq - tags[i]));
		key[eq - tags[i]] = '\0';
		if (json_object_set_new(o, key, json_string(eq + 1)) < 0) {
			json_decref(o);
			o = NULL;
		}
	}
	return o;
}

/* The quoted ETag of a version, as the header and the views give it. */
static void etag_of(int64_t version, const char *sha256_fingerprint, char *buf, size_t len)
{
	char tag[CV_VERSION_TAG_LEN];

	cv_vault_version_tag(version, sha256_fingerprint, tag);
	snprintf(buf, len, "\"%s\"", tag);
}

/* Adds the members every details view has beyond the certificate's own fields. */
static json_t *view_extend(json_t *o, const struct cv_cert_record *rec, const char *etag,
			   const struct cv_scope *scope)
{
	if (o == NULL)
		return NULL;
	if (json_object_set_new(o, "version", json_integer(rec->version)) < 0 ||
	    json_object_set_new(o, "etag", json_string(etag)) < 0 ||
	    json_object_set_new(o, "used_by", used_by_json(rec, 1, scope)) < 0 ||
	    json_object_set_new(o, "custom_domains", json_integer((json_int_t)rec->custom_domains)) <
		    0 ||
	    json_object_set_new(o, "current_since", time_json(rec->current_since)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *jwk_state_json(const struct cv_jwk_record *j)
{
	return json_string(j->state == CV_JWK_ACTIVE ? "active" : "superseded");
}

/* The JWKs linked to the certificate: what a renew, replace or delete dialog names. */
static json_t *linked_jwks_json(const struct cv_cert_view *v)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < v->n_jwks; i++)
		if (json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:o, s:I}", "kid",
						       v->jwks[i].kid, "alg", v->jwks[i].alg,
						       "use", v->jwks[i].use, "state",
						       jwk_state_json(&v->jwks[i]), "made_from_version",
						       (json_int_t)v->jwks[i].cert_version)) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* The intermediates stored with the certificate, each with the shared certificate view. */
static json_t *chain_json(const struct cv_cert_view *v, int64_t now, int64_t soon_seconds)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < v->chain_length; i++)
		if (json_array_append_new(a, cert_info_status_json(v->chain[i], now,
								   soon_seconds)) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* The last revocation check kept with the current version; null when none was kept. */
static json_t *stored_revocation_json(const struct cv_cert_record *rec)
{
	if (rec->revocation_status[0] == '\0')
		return json_null();
	return json_pack("{s:s, s:o, s:s, s:o}", "status", rec->revocation_status, "source",
			 string_or_null(rec->revocation_source[0] != '\0' ? rec->revocation_source
									    : NULL),
			 "detail", rec->revocation_detail, "checked_at",
			 time_json(rec->revocation_checked_at));
}

/* What a delete needs and whether it can be done now, so the dialog is drawn before the
 * first attempt: the word to type (the name when JWKs are linked, as the delete itself
 * asks), and what stands in its way (the services a scoped caller may see by name; the
 * others only keep it from being allowed). */
static json_t *delete_json(const struct cv_cert_view *v, const struct cv_scope *scope)
{
	const struct cv_cert_record *rec = v->rec;
	json_t *services = json_array();
	size_t i;

	for (i = 0; services != NULL && i < rec->n_used_by; i++)
		if (cv_scope_usage_in(scope, &rec->used_by[i]) &&
		    json_array_append_new(services, json_string(rec->used_by[i].service)) < 0) {
			json_decref(services);
			services = NULL;
		}
	return json_pack("{s:b, s:s, s:b, s:o, s:b}", "allowed",
			 rec->n_used_by == 0 && !v->served, "confirmation",
			 v->n_active_jwks > 0 ? rec->name : "delete", "jwk_action_required",
			 v->n_active_jwks > 0, "blocked_by_services", services,
			 "served_over_https", v->served != 0);
}

/* A key pair whose key the token lacks (a database restored onto a token without it, or a
 * key destroyed behind certvault's back): shown as such rather than failing at first use. */
static int cert_key_missing(struct cv_app *app, const struct cv_cert_record *rec)
{
	return !rec->is_public &&
	       !cv_vault_key_exists(&app->vault, rec->key_id, CV_TOKEN_ID_LEN, rec->updated_at);
}

/* The details view of DESIGN.md: the certificate's own fields (the view every certificate
 * shares), then what the vault knows about it. */
static json_t *view_json(const struct cv_cert_view *v, const char *etag, int64_t now,
			 int64_t soon_seconds, int key_missing, const struct cv_scope *scope)
{
	const struct cv_cert_record *rec = v->rec;
	char key_id[2 * CV_TOKEN_ID_LEN + 1];
	json_t *o = cert_info_json(v->info), *extra;
	const char *key;
	json_t *value;

	cv_hex_encode(rec->key_id, sizeof(rec->key_id), key_id);
	extra = json_pack(
		"{s:s, s:o, s:I, s:s, s:I, s:{s:s, s:s, s:s, s:s}, s:o, s:o, s:o, s:o, s:o, s:o, s:I,"
		" s:o, s:s, s:b, s:b, s:o}",
		"name", rec->name, "description", cv_text_json(rec->description), "expires_in_days",
		(json_int_t)v->expires_in_days, "status", cv_status_name(v->status),
		"chain_length", (json_int_t)v->chain_length, "key", "pkcs11_uri", v->key_uri, "id",
		key_id, "label", rec->key_label, "origin", cv_key_origin_name(rec->key_origin),
		"created_at", time_json(rec->created_at),
		"updated_at", time_json(rec->updated_at), "created_by",
		string_or_null(rec->created_by[0] != '\0' ? rec->created_by : NULL), "updated_by",
		string_or_null(rec->updated_by[0] != '\0' ? rec->updated_by : NULL), "revocation",
		stored_revocation_json(rec), "jwks", linked_jwks_json(v), "jwk_count",
		(json_int_t)v->n_jwks, "chain", chain_json(v, now, soon_seconds),
		"delete_confirmation", v->n_active_jwks > 0 ? rec->name : "delete", "in_use",
		rec->n_used_by > 0, "delete_allowed", rec->n_used_by == 0 && !v->served, "delete",
		delete_json(v, scope));
	if (o == NULL || extra == NULL) {
		json_decref(o);
		json_decref(extra);
		return NULL;
	}
	json_object_foreach(extra, key, value)
		if (json_object_set(o, key, value) < 0) {
			json_decref(o);
			json_decref(extra);
			return NULL;
		}
	json_decref(extra);
	/* A public certificate has no key object: no key to show. */
	if (json_object_set_new(o, "kind", json_string(cert_kind(rec))) < 0 ||
	    json_object_set_new(o, "key_missing", json_boolean(key_missing)) < 0 ||
	    json_object_set_new(o, "environments",
				strings_json(rec->environments, rec->n_environments)) < 0 ||
	    json_object_set_new(o, "tags", tags_json(rec->tags, rec->n_tags)) < 0 ||
	    (rec->is_public && json_object_set_new(o, "key", json_null()) < 0)) {
		json_decref(o);
		return NULL;
	}
	return view_extend(o, rec, etag, scope);
}

/* The details view of view for req, with its version tag made into tag (size bytes). */
static json_t *details_json(struct cv_app *app, const struct cv_request *req,
			    const struct cv_cert_view *view, int key_missing, char *tag,
			    size_t size)
{
	etag_of(view->rec->version, view->rec->sha256_fingerprint, tag, size);
	return view_json(view, tag, req->now, app->vault.soon_seconds, key_missing,
			 &req->actor.scope);
}

/* Answers with the details view of a certificate and its ETag; *ret_view, when asked for,
 * is the caller's. */
int cert_view_response(struct cv_app *app, const struct cv_request *req, const char *name,
		       int status, struct cv_response *res, struct cv_cert_view **ret_view,
		       struct cv_errmsg *err)
{
	struct cv_cert_view *view = NULL;
	int r;

	r = cv_vault_cert_get(&app->vault, name, req->now, &view, err);
	if (r < 0)
		return r;
	r = res_json(res, status, details_json(app, req, view, cert_key_missing(app, view->rec),
					       res->etag, sizeof(res->etag)));
	if (r == 0 && ret_view != NULL) {
		*ret_view = view;
		view = NULL;
	}
	cv_vault_cert_view_free(view);
	return r;
}

/* "chain" as an array of PEM certificates (what a JSON client holds) becomes the one PEM
 * bundle the rest reads, in place in body; each entry must be one certificate, so that a
 * refusal's "chain entry N" is the array's Nth. A string is left as it is. */
static int chain_array_join(json_t *body, struct cv_errmsg *err)
{
	json_t *chain = json_object_get(body, "chain"), *v, *joined;
	const char *pem;
	char *all = NULL;
	size_t i, len, used = 0, total = 0;
	int r;

	if (!json_is_array(chain))
		return 0;
	if (json_array_size(chain) > CV_X509_MAX_CHAIN)
		return cv_errmsg_set(err, CV_ERR_BAD_CHAIN, "the chain holds more than %d "
				     "certificates", CV_X509_MAX_CHAIN);
	json_array_foreach(chain, i, v) {
		if (!json_is_string(v))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"chain\" entry %zu must be a "
					     "string (one PEM certificate)", i + 1);
		pem = json_string_value(v);
		len = json_string_length(v);
		/* Counting blocks is enough here: the parser reads each one later. */
		if (len > PEM_MAX || strlen(pem) != len || cv_x509_pem_cert_count(pem) != 1)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"chain\" entry %zu must be "
					     "one PEM certificate", i + 1);
		total += len + 1;
	}
	if (total > PEM_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"chain\" is longer than %d bytes",
				     PEM_MAX);
	all = malloc(total + 1);
	if (all == NULL)
		return CV_ERR_NOMEM;
	json_array_foreach(chain, i, v) {
		len = json_string_length(v);
		memcpy(all + used, json_string_value(v), len);
		used += len;
		all[used++] = '\n';
	}
	joined = json_stringn(all, used);
	r = joined != NULL && json_object_set_new(body, "chain", joined) == 0 ? 0 : CV_ERR_NOMEM;
	free(all);
	return r;
}

/* Reads the material of an import, renew or replace into in (strings borrowed from body):
 * certificate, private_key and chain in encoding, or a base64 pkcs12; from a form, uploaded
 * files whose form is recognised (see cv_import_request). */
static int material_members(json_t *body, int form, struct cv_import_request *in,
			    struct cv_errmsg *err)
{
	/* A file's bytes may hold NULs (DER); text never does. */
	int (*file_member)(json_t *, const char *, int, size_t, const char **, size_t *,
			   struct cv_errmsg *) = form ? json_bytes_member : json_material_member;
	const char *encoding;
	int r;

	if (json_is_array(json_object_get(body, "chain"))) {
		if (json_string_member(body, "encoding", 0, 16, &encoding, NULL, err) < 0 ||
		    (encoding != NULL && strcmp(encoding, "pem") != 0))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"chain\" as an array takes "
					     "PEM certificates: \"encoding\" must be pem");
		r = chain_array_join(body, err);
		if (r < 0)
			return r;
	}
	if ((r = file_member(body, "certificate", 0, PEM_MAX, &in->certificate,
			     &in->certificate_len, err)) < 0 ||
	    (r = file_member(body, "private_key", 0, PEM_MAX, &in->private_key,
			     &in->private_key_len, err)) < 0 ||
	    (r = json_material_member(body, "password", 0, PASSWORD_MAX, &in->password, NULL,
				      err)) < 0 ||
	    (r = file_member(body, "chain", 0, PEM_MAX, &in->chain, &in->chain_len, err)) < 0 ||
	    (r = file_member(body, "pkcs12", 0, PEM_MAX, &in->pkcs12, &in->pkcs12_len,
			     err)) < 0 ||
	    (r = json_string_member(body, "encoding", 0, 16, &encoding, NULL, err)) < 0)
		return r;
	if (in->certificate == NULL && in->pkcs12 == NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "\"certificate\" (with \"private_key\", or alone for a public "
				     "certificate) or \"pkcs12\" is required");
	if (form) {
		if (encoding != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"encoding\" is for JSON "
					     "bodies: an uploaded file's form is recognised");
		in->encoding = CV_ENC_FILE;
		in->pkcs12_encoding = CV_ENC_FILE;
		in->bundle = 1;
		return 0;
	}
	if (in->pkcs12 != NULL && encoding != NULL)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "\"pkcs12\" is always base64: \"encoding\" is not taken");
	in->pkcs12_encoding = CV_ENC_BASE64;
	/* A certificate without "private_key" is a public certificate. */
	if (cv_x509_encoding_parse(encoding, &in->encoding) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "\"encoding\" must be pem, base64 or base64pem");
	return 0;
}

/* The optional "tags" member: an object of string values, pointers into body in tags (room
 * for CV_TAGS_MAX); the use case checks keys and values. */
static int tags_member(json_t *body, struct cv_tag *tags, size_t *ret_n, int *ret_present,
		       struct cv_errmsg *err)
{
	json_t *o = json_object_get(body, "tags"), *value;
	const char *key;
	size_t n = 0;

	*ret_n = 0;
	*ret_present = o != NULL && !json_is_null(o);
	if (!*ret_present)
		return 0;
	if (!json_is_object(o) || json_object_size(o) > CV_TAGS_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"tags\" must be an object of at most"
				     " %d key: \"value\" members", CV_TAGS_MAX);
	json_object_foreach(o, key, value) {
		if (!json_is_string(value) ||
		    strlen(json_string_value(value)) != json_string_length(value) ||
		    strlen(key) > CV_TAG_KEY_MAX)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "\"tags\": each value is a string; keys are at most %d"
					     " bytes", CV_TAG_KEY_MAX);
		tags[n].key = key;
		tags[n].value = json_string_value(value);
		n++;
	}
	*ret_n = n;
	return 0;
}

/* The "url" source of an import (with its "position"): certvaultd connects where the caller
 * says, so, as for the truststore, only an admin may aim it. */
static int url_member(const struct cv_request *req, json_t *body, struct cv_import_request *in,
		      struct cv_errmsg *err)
{
	json_t *position = json_object_get(body, "position");
	int r;

	r = json_string_member(body, "url", 0, URL_MAX, &in->url, NULL, err);
	if (r < 0)
		return r;
	if (in->url == NULL) {
		if (position != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"position\" goes with \"url\"");
		return 0;
	}
	static const char *const material[] = { "certificate", "private_key", "password",
						"chain", "pkcs12", "encoding", "wrapped_key",
						NULL };
	size_t i;

	for (i = 0; material[i] != NULL; i++)
		if (json_object_get(body, material[i]) != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"url\" comes without \"%s\":"
					     " the certificate and its chain are what the server"
					     " presents", material[i]);
	if (req->actor.role != CV_ROLE_ADMIN)
		return cv_errmsg_set(err, CV_ERR_FORBIDDEN, "fetching from a URL is for the admin "
				     "role");
	if (position != NULL && !json_is_null(position) &&
	    (!json_is_integer(position) || json_integer_value(position) < 0 ||
	     json_integer_value(position) > CV_X509_MAX_CHAIN))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"position\" is 0 (the server's own"
				     " certificate) to %d", CV_X509_MAX_CHAIN);
	in->position = position != NULL && json_is_integer(position)
			       ? json_integer_value(position)
			       : 0;
	in->timeout_ms = FETCH_TIMEOUT_MS;
	return 0;
}

/* An optional boolean member (absent: false). */
static int bool_member(json_t *body, const char *key, int *ret, struct cv_errmsg *err)
{
	json_t *v = json_object_get(body, key);

	*ret = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" must be true or false", key);
	*ret = json_is_true(v);
	return 0;
}

/* The optional "check_chain" member: a boolean. */
int check_chain_member(json_t *body, int *ret, struct cv_errmsg *err)
{
	return bool_member(body, "check_chain", ret, err);
}

/* Why online revocation fetches failed, which the client is told only generically: one
 * line of the log, bytes outside printable ASCII escaped. */
void log_revocation(const struct cv_request *req, const struct cv_revocation *rev)
{
	char line[sizeof(rev->log_detail) * 4 + 96];
	size_t n, i;
	ssize_t w;
	int head;

	if (rev->log_detail[0] == '\0')
		return;
	head = snprintf(line, sizeof(line), "certvaultd: %s: revocation fetch: ",
			req->request_id);
	if (head < 0 || (size_t)head >= sizeof(line))
		return;
	n = (size_t)head;
	for (i = 0; rev->log_detail[i] != '\0' && n + 6 < sizeof(line); i++) {
		unsigned char c = (unsigned char)rev->log_detail[i];

		if (c < 0x20 || c >= 0x7f || c == '\\')
			n += (size_t)snprintf(line + n, sizeof(line) - n, "\\x%02x", c);
		else
			line[n++] = (char)c;
	}
	line[n++] = '\n';
	w = write(STDERR_FILENO, line, n);
	(void)w;
}

/* Adds what the revocation check found to an import, renew or replace answer, with a
 * warning when it could not tell and the policy let the certificate in. */
int add_revocation(const struct cv_revocation *rev, struct cv_response *res)
{
	json_t *o, *warnings;
	char text[700];

	o = json_pack("{s:s, s:o, s:s}", "status", cv_revocation_status_name(rev->status),
		      "source", string_or_null(rev->source[0] != '\0' ? rev->source : NULL),
		      "detail", rev->detail);
	/* The details read back after the change hold this same check with its time. */
	if (o != NULL && json_is_object(json_object_get(res->json, "revocation")))
		json_decref(o);
	else if (o == NULL || json_object_set_new(res->json, "revocation", o) < 0)
		return CV_ERR_NOMEM;
	if (rev->status != CV_REV_UNKNOWN)
		return 0;
	snprintf(text, sizeof(text), "revocation could not be checked (%s: %s); accepted because "
		 "revocation.unknown is warn", rev->source, rev->detail);
	warnings = json_pack("[s]", text);
	if (warnings == NULL || json_object_set_new(res->json, "warnings", warnings) < 0)
		return CV_ERR_NOMEM;
	return 0;
}

/* Adds chain_trusted (and why) to a details response: whether the certificate's chain
 * verifies up to the truststore now. */
static int add_chain_trust(struct cv_app *app, const char *name, int64_t now,
			   struct cv_response *res, struct cv_errmsg *err)
{
	struct cv_errmsg why = { "" };
	int r;

	r = cv_vault_cert_chain_trusted(&app->vault, name, now, &why, err);
	if (r < 0)
		return r;
	if (json_object_set_new(res->json, "chain_trusted", json_boolean(r == 1)) < 0 ||
	    json_object_set_new(res->json, "chain_trust_detail", json_string(why.text)) < 0)
		return CV_ERR_NOMEM;
	return 0;
}

int h_cert_import(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	static const char *const allowed[] = { "name", "description", "certificate",
					       "private_key", "password", "chain", "encoding",
					       "pkcs12", "check_chain", "environments",
					       "allow_upcoming", "tags", "url", "position", "generate",
					       "wrapped_key", NULL };
	const char *environments[CV_CERT_ENVIRONMENTS_MAX];
	struct cv_tag tags[CV_TAGS_MAX];
	unsigned char *wrapped[2] = { NULL, NULL };
	struct cv_import_request in = { 0 };
	struct cv_cert_record *rec = NULL;
	struct cv_revocation rev;
	json_t *body = NULL;
	int r, form, check = 0, present;

	r = req_body_object(req, allowed, &body, &form, err);
	if (r < 0)
		goto out;
	/* A key generated in the token instead of one sent (issue 13). */
	if (json_object_get(body, "generate") != NULL) {
		r = cert_generate(app, req, body, form, res, err);
		goto out;
	}
	if ((r = json_string_member(body, "name", 1, CV_NAME_MAX * 4, &in.name, NULL, err)) < 0 ||
	    (r = json_string_member(body, "description", 0, CV_DESCRIPTION_MAX, &in.description,
				    NULL, err)) < 0 ||
	    (r = url_member(req, body, &in, err)) < 0 ||
	    (r = wrapped_key_member(body, &in, wrapped, err)) < 0 ||
	    (in.url == NULL && (r = material_members(body, form, &in, err)) < 0))
		goto out;
	r = check_chain_member(body, &check, err);
	if (r == 0)
		r = bool_member(body, "allow_upcoming", &in.allow_upcoming, err);
	if (r == 0)
		r = json_names_member(body, "environments", CV_CERT_ENVIRONMENTS_MAX, environments,
				      &in.n_environments, &present, err);
	if (r == 0)
		r = tags_member(body, tags, &in.n_tags, &present, err);
	if (r < 0)
		goto out;
	in.environments = environments;
	in.tags = tags;
	r = cv_vault_cert_import(&app->vault, req->audit, &in, req->now, &rec, &rev, err);
	log_revocation(req, &rev);
	if (r < 0)
		goto out;
	r = cert_view_response(app, req, rec->name, 201, res, NULL, err);
	if (r == 0)
		r = add_revocation(&rev, res);
	if (r == 0 && check)
		r = add_chain_trust(app, rec->name, req->now, res, err);
out:
	free(wrapped[0]);
	free(wrapped[1]);
	cv_store_cert_free(rec);
	json_decref(body); /* wiped on free: it held the key and the password */
	return r;
}

/* The problems of a preview, each as the import would have answered it. */
static json_t *problems_json(const struct cv_preview_problem *problems, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(a, json_pack("{s:s, s:i, s:s}", "code",
						       cv_http_error_code(problems[i].code),
						       "status",
						       cv_http_error_status(problems[i].code),
						       "message", problems[i].message)) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* The tags of a request, as the details show stored ones. */
static json_t *tags_request_json(const struct cv_tag *tags, size_t n)
{
	json_t *o = json_object();
	size_t i;

	for (i = 0; o != NULL && i < n; i++)
		if (json_object_set_new(o, tags[i].key, json_string(tags[i].value)) < 0) {
			json_decref(o);
			return NULL;
		}
	return o;
}

static json_t *preview_json(const struct cv_import_request *in, const struct cv_cert_preview *p,
			    int64_t now, int64_t soon_seconds)
{
	json_t *cert = json_null(), *chain, *rev = json_null();
	size_t i;

	if (p->info != NULL) {
		cert = cert_info_status_json(p->info, now, soon_seconds);
		chain = json_array();
		for (i = 0; chain != NULL && i < p->chain_length; i++)
			if (json_array_append_new(chain, cert_info_status_json(p->chain[i], now,
									      soon_seconds)) < 0) {
				json_decref(chain);
				chain = NULL;
			}
		if (cert == NULL || chain == NULL ||
		    json_object_set_new(cert, "name", json_string(in->name)) < 0 ||
		    json_object_set_new(cert, "description",
					json_string(in->description != NULL ? in->description : "")) <
			    0 ||
		    json_object_set_new(cert, "has_private_key", json_boolean(p->has_key)) < 0 ||
		    json_object_set_new(cert, "environments",
					strings_json((char *const *)in->environments,
						     in->n_environments)) < 0 ||
		    json_object_set_new(cert, "tags", tags_request_json(in->tags, in->n_tags)) < 0 ||
		    json_object_set_new(cert, "chain_length", json_integer((json_int_t)p->chain_length)) <
			    0 ||
		    json_object_set_new(cert, "chain", chain) < 0) {
			json_decref(cert);
			return NULL;
		}
	}
	if (p->rev_checked)
		rev = json_pack("{s:s, s:o, s:s}", "status", cv_revocation_status_name(p->rev.status),
				"source",
				string_or_null(p->rev.source[0] != '\0' ? p->rev.source : NULL),
				"detail", p->rev.detail);
	return json_pack("{s:b, s:b, s:o, s:o, s:o}", "ok", p->n_problems == 0, "stored", 0,
			 "problems", problems_json(p->problems, p->n_problems), "certificate", cert,
			 "revocation", rev);
}

int h_cert_preview(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	/* The import's members but its other sources (url, generate, wrapped_key), which the
	 * truststore preview and the generate itself cover. */
	static const char *const allowed[] = { "name", "description", "certificate",
					       "private_key", "password", "chain", "encoding",
					       "pkcs12", "check_chain", "environments",
					       "allow_upcoming", "tags", NULL };
	const char *environments[CV_CERT_ENVIRONMENTS_MAX];
	struct cv_tag tags[CV_TAGS_MAX];
	struct cv_import_request in = { 0 };
	struct cv_cert_preview *p = NULL;
	json_t *body = NULL;
	int r, form, check = 0, present;

	r = req_body_object(req, allowed, &body, &form, err);
	if (r < 0)
		goto out;
	/* A malformed request is refused as the import refuses it; what it says is judged. */
	if ((r = json_string_member(body, "name", 1, CV_NAME_MAX * 4, &in.name, NULL, err)) < 0 ||
	    (r = json_string_member(body, "description", 0, CV_DESCRIPTION_MAX * 4,
				    &in.description, NULL, err)) < 0 ||
	    (r = material_members(body, form, &in, err)) < 0 ||
	    (r = check_chain_member(body, &check, err)) < 0 ||
	    (r = bool_member(body, "allow_upcoming", &in.allow_upcoming, err)) < 0 ||
	    (r = json_names_member(body, "environments", CV_CERT_ENVIRONMENTS_MAX, environments,
				   &in.n_environments, &present, err)) < 0 ||
	    (r = tags_member(body, tags, &in.n_tags, &present, err)) < 0)
		goto out;
	in.environments = environments;
	in.tags = tags;
	r = cv_vault_cert_preview(&app->vault, &in, req->now, &p, err);
	if (r < 0)
		goto out;
	r = res_json(res, 200, preview_json(&in, p, req->now, app->vault.soon_seconds));
out:
	cv_vault_cert_preview_free(p);
	json_decref(body); /* wiped on free: it held the key and the password */
	return r;
}

static int details_answer(struct cv_app *app, const struct cv_request *req, const char *name,
			  struct cv_response *res, struct cv_errmsg *err);

int h_cert_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err)
{
	int r;

	r = details_answer(app, req, req->params[0], res, err);
	/* A pending certificate has no certificate yet: its own view. */
	if (r == CV_ERR_NOT_FOUND)
		r = pending_view_response(app, req->params[0], 0, res, err);
	/* A deleted one is not here, and the message says where it is. */
	if (r == CV_ERR_NOT_FOUND)
		cv_vault_deleted_hint(&app->vault, req->params[0], err);
	return r;
}

int h_cert_patch(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	static const char *const allowed[] = { "name", "description", "environments", "tags",
					       NULL };
	static const char *const content[] = { "certificate", "private_key", "chain",
					       "password", "encoding", NULL };
	const char *environments[CV_CERT_ENVIRONMENTS_MAX];
	struct cv_tag tags[CV_TAGS_MAX];
	char name[65];
	struct cv_cert_edit_request edit = { 0 };
	json_t *body = NULL;
	size_t i;
	int r;

	r = req_json_object(req, allowed, &body, err);
	for (i = 0; r == CV_ERR_BAD_REQUEST && content[i] != NULL; i++) {
		char unknown[64];

		/* Say where the certificate itself is changed. */
		snprintf(unknown, sizeof(unknown), "unknown member \"%s\"", content[i]);
		if (strcmp(err->text, unknown) == 0)
			r = cv_errmsg_set(err, r,
					  "\"%s\" is not metadata: the certificate and key change"
					  " through /renew or /replace",
					  content[i]);
	}
	if (r < 0)
		goto out;
	/* An empty description clears it; a body that changes nothing is a mistake worth
	 * saying. */
	r = json_string_member(body, "description", 0, CV_DESCRIPTION_MAX, &edit.description,
			       NULL, err);
	if (r == 0)
		r = json_string_member(body, "name", 0, CV_NAME_MAX * 4, &edit.name, NULL, err);
	if (r == 0)
		r = json_names_member(body, "environments", CV_CERT_ENVIRONMENTS_MAX, environments,
				      &edit.n_environments, &edit.set_environments, err);
	if (r == 0)
		r = tags_member(body, tags, &edit.n_tags, &edit.set_tags, err);
	if (r < 0)
		goto out;
	edit.environments = environments;
	edit.tags = tags;
	if (edit.description == NULL && edit.name == NULL && !edit.set_environments &&
	    !edit.set_tags) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "nothing to change: give \"name\", "
				  "\"description\", \"environments\" or \"tags\"");
		goto out;
	}
	r = cv_vault_cert_edit(&app->vault, req->audit, req->params[0], &edit, req->now, name,
			       err);
	if (r < 0)
		goto out;
	r = cert_view_response(app, req, name, 200, res, NULL, err);
out:
	json_decref(body);
	return r;
}

int h_cert_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	struct cv_jwk_choice jwk = { CV_JWK_ACTION_NONE, NULL };
	int64_t purge_after = 0;
	int r;

	if (cv_vault_jwk_action_parse(req_query(req, "jwk_action"), &jwk.action) < 0 ||
	    jwk.action == CV_JWK_ACTION_UPDATE)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "jwk_action must be delete or disconnect");
	jwk.confirm = req_query(req, "confirm");
	r = cv_vault_cert_delete(&app->vault, req->audit, req->params[0], &jwk, &purge_after, err);
	if (r < 0)
		return r;
	/* With a retention the certificate can be recovered until purge_after; without, it is
	 * gone with its keys. */
	return res_json(res, 200,
			json_pack("{s:s, s:b, s:b, s:o}", "name", req->params[0], "deleted", 1,
				  "recoverable", purge_after > 0, "purge_after",
				  purge_after > 0 ? time_json(purge_after) : json_null()));
}

int h_cert_export(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	static const char *const suffix[] = {
		[CV_EXPORT_PEM] = ".pem",
		[CV_EXPORT_DER] = ".der",
		[CV_EXPORT_CHAIN] = "-chain.pem",
		[CV_EXPORT_PUBLIC_KEY] = "-public-key.pem",
		[CV_EXPORT_JWK] = ".jwk.json",
	};
	enum cv_export_format format;
	const char *s;
	int64_t version = 0;
	char v[32] = "";
	int r;

	if (cv_vault_export_format_parse(req_query(req, "format"), &format) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "format must be pem, der, chain, public-key or jwk");
	if ((s = req_query(req, "version")) != NULL) {
		if (cv_parse_int64(s, 1, INT64_MAX, &version) < 0)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "version must be a positive integer");
		snprintf(v, sizeof(v), "-v%lld", (long long)version);
	}
	r = cv_vault_cert_export_version(&app->vault, req->params[0], version, format, &res->raw,
					 &res->raw_len, &res->content_type, err);
	if (r < 0)
		return r;
	res->status = 200;
	snprintf(res->disposition, sizeof(res->disposition), "attachment; filename=\"%s%s%s\"",
		 req->params[0], v, suffix[format]);
	return 0;
}

/* One row of the list. Built member by member rather than with json_pack: the list is the
 * hottest path (50 rows a page), and json_pack parses its format string for every row. */
static json_t *list_item_json(const struct cv_cert_record *rec, int64_t now,
			      int64_t soon_seconds, int key_missing, const struct cv_scope *scope)
{
	enum cv_status status = cv_status_at((time_t)rec->not_before, (time_t)rec->not_after,
					     (time_t)now, soon_seconds);
	const struct {
		const char *key;
		json_t *value;
	} members[] = {
		{ "name", cv_text_json(rec->name) },
		{ "description", cv_text_json(rec->description) },
		{ "domain", cv_text_json(rec->primary_domain) },
		{ "domains", strings_json(rec->domains, rec->n_domains) },
		{ "used_by", used_by_json(rec, 0, scope) },
		{ "custom_domains", json_integer((json_int_t)rec->custom_domains) },
		{ "updated_at", time_json(rec->updated_at) },
		{ "status", json_string(cv_status_name(status)) },
		{ "expires_in_days",
		  json_integer((json_int_t)cv_expires_in_days((time_t)rec->not_after, (time_t)now)) },
		{ "valid_to", time_json(rec->not_after) },
		{ "key_type", json_string(rec->key_description) },
		{ "kind", json_string(cert_kind(rec)) },
		{ "tags", tags_json(rec->tags, rec->n_tags) },
		{ "version", json_integer((json_int_t)rec->version) },
		{ "key_missing", json_boolean(key_missing) },
	};
	json_t *o = json_object();
	size_t i;

	/* Each value is set (and so owned by o) or freed, whatever happened before it. */
	for (i = 0; i < sizeof(members) / sizeof(members[0]); i++)
		if (o == NULL || members[i].value == NULL ||
		    json_object_set_new_nocheck(o, members[i].key, members[i].value) < 0) {
			json_decref(members[i].value);
			json_decref(o);
			o = NULL;
		}
	return o;
}

/* The sorts a list takes, by their query names, and the letter their cursor starts with. */
static const struct {
	const char *name;
	enum cv_cert_sort sort;
	char letter;
} list_sorts[] = {
	{ "name", CV_SORT_NAME, 'n' },         { "valid_to", CV_SORT_VALID_TO, 'v' },
	{ "expires_in", CV_SORT_VALID_TO, 'v' }, { "updated_at", CV_SORT_UPDATED_AT, 'u' },
	{ "status", CV_SORT_STATUS, 's' },
};

/* "valid,expires_soon": each a status, none twice. */
static int status_list_parse(const char *s, unsigned *ret_mask)
{
	char one[32];
	enum cv_status st;
	size_t len;

	*ret_mask = 0;
	for (;;) {
		len = strcspn(s, ",");
		if (len == 0 || len >= sizeof(one))
			return CV_ERR_BAD_REQUEST;
		memcpy(one, s, len);
		one[len] = '\0';
		if (cv_status_parse(one, &st) < 0 || (*ret_mask & (1u << st)) != 0)
			return CV_ERR_BAD_REQUEST;
		*ret_mask |= 1u << st;
		if (s[len] == '\0')
			return 0;
		s += len + 1;
	}
}

/* A cursor of this API: for the name order ascending, the last name (as before sorts
 * existed); else "<sort letter><a|d>_<rank>_<key>_<name>", so that a cursor of one order is
 * not taken for another's. */
static int cursor_parse(const char *s, char letter, int desc, struct cv_cert_filter *f,
			char *name, size_t name_len)
{
	const char *p, *q;
	int64_t rank, key;
	char num[24];
	size_t len;

	if (letter == 'n' && !desc) {
		if (!cv_name_valid(s))
			return CV_ERR_BAD_REQUEST;
		f->after = s;
		return 0;
	}
	if (s[0] != letter || s[1] != (desc ? 'd' : 'a') || s[2] != '_')
		return CV_ERR_BAD_REQUEST;
	p = s + 3;
	q = strchr(p, '_');
	if (q == NULL || (len = (size_t)(q - p)) == 0 || len >= sizeof(num))
		return CV_ERR_BAD_REQUEST;
	memcpy(num, p, len);
	num[len] = '\0';
	if (cv_parse_int64(num, 0, 1, &rank) < 0)
		return CV_ERR_BAD_REQUEST;
	p = q + 1;
	q = strchr(p, '_');
	if (q == NULL || (len = (size_t)(q - p)) == 0 || len >= sizeof(num))
		return CV_ERR_BAD_REQUEST;
	memcpy(num, p, len);
	num[len] = '\0';
	if (cv_parse_int64(num, INT64_MIN, INT64_MAX, &key) < 0 || !cv_name_valid(q + 1) ||
	    strlen(q + 1) >= name_len)
		return CV_ERR_BAD_REQUEST;
	snprintf(name, name_len, "%s", q + 1);
	f->after = name;
	f->after_key = key;
	f->after_rank = rank;
	return 0;
}

/* The cursor after rec in the filter's order (NULL for the plain name order). */
static json_t *cursor_json(const struct cv_cert_record *rec, char letter,
			   const struct cv_cert_filter *f)
{
	char buf[160];
	int64_t key = f->sort == CV_SORT_UPDATED_AT ? rec->updated_at : rec->not_after;

	if (letter == 'n' && !f->desc)
		return json_string(rec->name);
	snprintf(buf, sizeof(buf), "%c%c_%d_%lld_%s", letter, f->desc ? 'd' : 'a',
		 f->sort == CV_SORT_STATUS && rec->not_before > f->now ? 1 : 0,
		 (long long)(letter == 'n' ? 0 : key), rec->name);
	return json_string(buf);
}

/* Appends s, length first, to the key of size bytes (used so far *used). 0, or -1 when it
 * does not fit. */
static int memo_key_put(char *key, size_t size, size_t *used, const char *s)
{
	int w = snprintf(key + *used, size - *used, "%zu:%s", strlen(s), s);

	if (w < 0 || (size_t)w >= size - *used)
		return -1;
	*used += (size_t)w;
	return 0;
}

/* Appends the scope the caller sees within (NULL: everything). 0, or -1 when it does not
 * fit. */
static int memo_key_scope(char *key, size_t size, size_t *used,
			  const struct cv_scope_objects *scope)
{
	char count[24];
	size_t i;
	int bad;

	snprintf(count, sizeof(count), scope == NULL ? "all" : "%zu,%zu,%zu",
		 scope == NULL ? 0 : scope->n_certificates, scope == NULL ? 0 : scope->n_services,
		 scope == NULL ? 0 : scope->n_environments);
	bad = memo_key_put(key, size, used, count) < 0;
	for (i = 0; scope != NULL && !bad && i < scope->n_certificates; i++)
		bad = memo_key_put(key, size, used, scope->certificates[i]) < 0;
	for (i = 0; scope != NULL && !bad && i < scope->n_services; i++)
		bad = memo_key_put(key, size, used, scope->services[i]) < 0;
	for (i = 0; scope != NULL && !bad && i < scope->n_environments; i++)
		bad = memo_key_put(key, size, used, scope->environments[i]) < 0;
	return bad ? -1 : 0;
}

/* Everything a list answer depends on besides the data and the clock: the query as the
 * router let it in (known arguments, once each) and the scope the caller lists within. 0,
 * or -1 when that is too long to keep (the answer is then made every time). */
static int list_memo_key(const struct cv_request *req, const struct cv_scope_objects *scope,
			 char *key, size_t size)
{
	size_t used = 0, i;
	int bad = 0;

	for (i = 0; i < req->n_query && !bad; i++)
		bad = memo_key_put(key, size, &used, req->query[i].key) < 0 ||
		      memo_key_put(key, size, &used,
				   req->query[i].value != NULL ? req->query[i].value : "\x01") < 0;
	return bad || memo_key_scope(key, size, &used, scope) < 0 ? -1 : 0;
}

/* A kept answer's text (malloc'd; taken) with its ETag, or a 304 when If-None-Match names
 * it. */
static void kept_answer(const struct cv_request *req, struct cv_response *res, char *text,
			size_t len, const char *etag)
{
	snprintf(res->etag, sizeof(res->etag), "%s", etag);
	res->etag_final = 1; /* the tag the kept answer carries, made as any GET's is */
	if (req->if_none_match != NULL && http_none_match_hits(req->if_none_match, res->etag)) {
		free(text);
		res->status = 304;
		return;
	}
	res->status = 200;
	res->raw = (unsigned char *)text;
	res->raw_len = len;
	res->content_type = "application/json";
}

/* The list answer made from page and total, as text with its ETag; kept in the vault's memo
 * under memo_key (NULL: not kept) at gen. */
/* body as the server would send it, in a malloc'd copy (*ret_text, a NUL after its
 * *ret_len bytes) that a kept answer can own. 0 or CV_ERR_NOMEM. */
static int json_text(json_t *body, char **ret_text, size_t *ret_len)
{
	char *dumped = NULL, *text = NULL;
	size_t len = cv_http_json_dump(body, &dumped);
	json_malloc_t m;
	json_free_t f;

	if (len == 0)
		return CV_ERR_NOMEM;
	text = malloc(len + 1);
	if (text != NULL) {
		memcpy(text, dumped, len);
		text[len] = '\0';
	}
	json_get_alloc_funcs(&m, &f);
	f(dumped);
	if (text == NULL)
		return CV_ERR_NOMEM;
	*ret_text = text;
	*ret_len = len;
	return 0;
}

/* The same for a body made on the spot (taken; NULL: out of memory). */
static int json_text_of(json_t *body, char **ret_text, size_t *ret_len)
{
	int r = body != NULL ? json_text(body, ret_text, ret_len) : CV_ERR_NOMEM;

	json_decref(body);
	return r;
}

/* Everything a details answer depends on besides the certificate generation and the clock:
 * the name, the JWK generation (its JWKs are in it) and the scope the caller sees within
 * (which services it names). 0, or -1 when that is too long to keep. */
static int details_memo_key(struct cv_app *app, const struct cv_request *req, const char *name,
			    char *key, size_t size)
{
	char jwks[24];
	size_t used = 0;

	snprintf(jwks, sizeof(jwks), "%llu",
		 (unsigned long long)cv_vault_jwks_generation(&app->vault));
	return memo_key_put(key, size, &used, name) < 0 ||
	       memo_key_put(key, size, &used, jwks) < 0 ||
	       memo_key_scope(key, size, &used, cv_scope_list_objects(&req->actor.scope)) < 0
		       ? -1 : 0;
}

/* GET details: the kept answer when there is one, else the view made (and kept) now. */
static int details_answer(struct cv_app *app, const struct cv_request *req, const char *name,
			  struct cv_response *res, struct cv_errmsg *err)
{
	char memo_key[CV_LIST_MEMO_KEY_MAX], tag[HTTP_ETAG_SIZE], etag[HTTP_ETAG_SIZE];
	struct cv_cert_view *view = NULL;
	char *text = NULL;
	size_t len = 0;
	uint64_t gen;
	int r, memo, missing;

	/* Read before the view, so that a view kept under them is never older than they say. */
	gen = cv_vault_certs_generation(&app->vault);
	memo = details_memo_key(app, req, name, memo_key, sizeof(memo_key)) == 0;
	if (memo && cv_vault_details_memo_get(&app->vault, memo_key, gen, req->now, &text, &len,
					      etag) == 1) {
		kept_answer(req, res, text, len, etag);
		return 0;
	}
	r = cv_vault_cert_get(&app->vault, name, req->now, &view, err);
	if (r < 0)
		return r;
	missing = cert_key_missing(app, view->rec);
	r = json_text_of(details_json(app, req, view, missing, tag, sizeof(tag)), &text, &len);
	if (r == 0 && http_tagged_etag(tag, text, len, etag) < 0)
		r = CV_ERR_NOMEM;
	if (r == 0) {
		if (memo)
			cv_vault_details_memo_put(&app->vault, memo_key, gen, req->now, view,
						  missing, text, len, etag);
		kept_answer(req, res, text, len, etag);
		text = NULL;
	}
	free(text);
	cv_vault_cert_view_free(view);
	return r;
}

static int list_make(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     const struct cv_cert_page *page, const struct cv_cert_filter *filter,
		     char letter, int64_t limit, int64_t total, const char *memo_key,
		     uint64_t gen)
{
	unsigned char *missing = NULL;
	char etag[HTTP_ETAG_SIZE], *text = NULL;
	json_t *items = json_array(), *body = NULL;
	size_t i, len = 0;
	int r = CV_ERR_NOMEM;

	if (items == NULL || (page->n > 0 && (missing = calloc(page->n, 1)) == NULL))
		goto out;
	for (i = 0; i < page->n; i++) {
		missing[i] = (unsigned char)cert_key_missing(app, page->items[i]);
		if (json_array_append_new(items, list_item_json(page->items[i], req->now,
							       app->vault.soon_seconds, missing[i],
							       &req->actor.scope)) < 0)
			goto out;
	}
	body = json_pack("{s:o, s:o, s:I, s:I}", "items", items, "next_cursor",
			 page->has_more && page->n > 0
				 ? cursor_json(page->items[page->n - 1], letter, filter)
				 : json_null(),
			 "limit", (json_int_t)limit, "total", (json_int_t)total);
	items = NULL; /* json_pack took it, even when it failed */
	if (body == NULL || json_text(body, &text, &len) < 0)
		goto out;
	if (http_body_etag(text, len, etag) < 0)
		goto out;
	if (memo_key != NULL)
		cv_vault_list_memo_put(&app->vault, memo_key, gen, req->now,
				       filter->has_status || filter->status_mask != 0 ||
					       filter->sort == CV_SORT_STATUS,
				       page, missing, text, len, etag);
	kept_answer(req, res, text, len, etag);
	text = NULL;
	r = 0;
out:
	free(text);
	json_decref(body);
	json_decref(items);
	free(missing);
	return r;
}

int h_cert_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		struct cv_errmsg *err)
{
	char tag_key[CV_TAG_KEY_MAX + 1];
	struct cv_cert_filter filter = { 0 };
	struct cv_cert_page *page = NULL;
	char domain[CV_DNS_NAME_MAX + 1], wildcard[CV_DNS_NAME_MAX + 3];
	char after[CV_NAME_MAX + 1];
	char memo_key[CV_LIST_MEMO_KEY_MAX], *memo = memo_key, etag[HTTP_ETAG_SIZE], *text = NULL;
	const char *s;
	int64_t limit = 50, total;
	char letter = 'n';
	uint64_t gen;
	size_t i, len;
	int r;

	if ((s = req_query(req, "status")) != NULL && strcmp(s, "pending") == 0) {
		r = pending_list_response(app, req, res, err);
		goto out;
	}
	if (s != NULL && status_list_parse(s, &filter.status_mask) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "status must be valid, expires_soon, expired or upcoming, or several "
				  "of them separated by commas; or pending alone");
		goto out;
	}
	if ((s = req_query(req, "sort")) != NULL) {
		for (i = 0; i < sizeof(list_sorts) / sizeof(list_sorts[0]); i++)
			if (strcmp(s, list_sorts[i].name) == 0)
				break;
		if (i == sizeof(list_sorts) / sizeof(list_sorts[0])) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "sort must be name, valid_to, "
					  "updated_at, status or expires_in");
			goto out;
		}
		filter.sort = list_sorts[i].sort;
		letter = list_sorts[i].letter;
	}
	if ((s = req_query(req, "order")) != NULL) {
		if (strcmp(s, "asc") != 0 && strcmp(s, "desc") != 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "order must be asc or desc");
			goto out;
		}
		filter.desc = strcmp(s, "desc") == 0;
	}
	filter.in_use = -1;
	if ((s = req_query(req, "in_use")) != NULL) {
		if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "in_use must be true or false");
			goto out;
		}
		filter.in_use = strcmp(s, "true") == 0;
	}
	if ((s = req_query(req, "domain")) != NULL) {
		struct cv_errmsg why;

		if (cv_x509_domain_normalize(s, domain, sizeof(domain), &why) < 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "domain: %s", why.text);
			goto out;
		}
		filter.domain = domain;
		if (cv_x509_domain_wildcard(domain, wildcard, sizeof(wildcard)) == 0)
			filter.domain_wildcard = wildcard;
	}
	/* tag=key:value, or tag=key for any value. */
	if ((s = req_query(req, "tag")) != NULL) {
		size_t klen = strcspn(s, ":");

		if (klen == 0 || klen > CV_TAG_KEY_MAX) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "tag must be key:value or key");
			goto out;
		}
		memcpy(tag_key, s, klen);
		tag_key[klen] = '\0';
		filter.tag_key = tag_key;
		filter.tag_value = s[klen] == ':' ? s + klen + 1 : NULL;
	}
	if ((s = req_query(req, "environment")) != NULL) {
		if (!cv_name_valid(s)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "environment must be a name");
			goto out;
		}
		filter.environment = s;
	}
	if ((s = req_query(req, "service")) != NULL) {
		if (!cv_name_valid(s)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "service must be a name");
			goto out;
		}
		filter.service = s;
	}
	if ((s = req_query(req, "limit")) != NULL && cv_parse_int64(s, 1, 1000, &limit) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "limit must be from 1 to 1000");
		goto out;
	}
	if ((s = req_query(req, "cursor")) != NULL &&
	    cursor_parse(s, letter, filter.desc, &filter, after, sizeof(after)) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "cursor must be a next_cursor this API "
				  "returned for the same sort and order");
		goto out;
	}
	filter.q = req_query(req, "q");
	if (filter.q != NULL && filter.q[0] == '\0')
		filter.q = NULL;
	filter.now = req->now;
	filter.limit = (unsigned)limit;
	filter.scope = cv_scope_list_objects(&req->actor.scope);
	/* Read before the page, so that a page kept under it is never older than it says. */
	gen = cv_vault_certs_generation(&app->vault);
	if (list_memo_key(req, filter.scope, memo_key, sizeof(memo_key)) < 0)
		memo = NULL;
	if (memo != NULL &&
	    cv_vault_list_memo_get(&app->vault, memo, gen, req->now, &text, &len, etag) == 1) {
		kept_answer(req, res, text, len, etag);
		r = 0;
		goto out;
	}
	r = cv_vault_cert_list(&app->vault, &filter, &page, err);
	if (r == 0)
		r = cv_vault_cert_list_total(&app->vault, &filter, &total, err);
	if (r == 0)
		r = list_make(app, req, res, page, &filter, letter, limit, total, memo, gen);
out:
	cv_store_cert_page_free(page);
	return r;
}

/* The pending certificates a scoped token's list shows (few: each judged as its details
 * would be, as status=pending lists them). */
static int pending_count_scoped(struct cv_app *app, const struct cv_request *req,
				int64_t *ret_n, struct cv_errmsg *err)
{
	struct cv_pending_record *recs = NULL;
	size_t n = 0, i;
	int r, inside = 0;

	*ret_n = 0;
	r = cv_vault_pending_list(&app->vault, &recs, &n, err);
	for (i = 0; r == 0 && i < n; i++) {
		r = pending_in_scope(app, req, &recs[i], &inside, err);
		*ret_n += r == 0 && inside;
	}
	cv_store_pending_array_free(recs, n);
	return r;
}

int h_cert_summary(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	struct cv_cert_counts c;
	int64_t pending = 0;
	int r;

	r = cv_vault_cert_count_scoped(&app->vault, req->now,
				       cv_scope_list_objects(&req->actor.scope), &c, err);
	if (r == 0 && !req->actor.scope.scoped)
		r = cv_vault_pending_count(&app->vault, &pending, err);
	if (r == 0 && req->actor.scope.scoped)
		r = pending_count_scoped(app, req, &pending, err);
	if (r < 0)
		return r;
	return res_json(res, 200,
			json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "pending",
				  (json_int_t)pending, "total",
				  (json_int_t)c.total, "in_use", (json_int_t)c.in_use, "not_in_use",
				  (json_int_t)(c.total - c.in_use), "valid", (json_int_t)c.valid,
				  "expires_soon",
				  (json_int_t)c.expires_soon, "expired", (json_int_t)c.expired,
				  "upcoming", (json_int_t)c.upcoming));
}

/* The version a renew or replace names: "version" in the body, or If-Match (a quoted tag
 * from an ETag); both must then agree. */
int version_ref(const struct cv_request *req, json_t *body, struct cv_version_ref *ref,
		       struct cv_errmsg *err)
{
	json_t *version = json_object_get(body, "version");
	char tag[CV_VERSION_TAG_LEN];
	size_t len;

	memset(ref, 0, sizeof(*ref));
	if (req->if_match != NULL) {
		len = strlen(req->if_match);
		/* One strong ETag: "W/" tags, lists and "*" name no single version. */
		if (len < 3 || len - 2 >= sizeof(tag) || req->if_match[0] != '"' ||
		    req->if_match[len - 1] != '"')
			return cv_errmsg_set(err, CV_ERR_PRECONDITION,
					     "If-Match must be one ETag this API returned");
		memcpy(tag, req->if_match + 1, len - 2);
		tag[len - 2] = '\0';
		/* The details' ETag header is the version tag, a dot and a hash of the rest
		 * of the view: the version is what If-Match pins. */
		tag[strcspn(tag, ".")] = '\0';
		if (cv_vault_version_ref_parse(tag, ref) < 0)
			return cv_errmsg_set(err, CV_ERR_PRECONDITION,
					     "If-Match names no version of %s", req->params[0]);
	}
	if (version != NULL && !json_is_null(version)) {
		if (!json_is_integer(version) || json_integer_value(version) < 1)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "\"version\" must be a positive integer");
		if (ref->version != 0 && ref->version != json_integer_value(version))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "\"version\" and If-Match name different versions");
		ref->version = json_integer_value(version);
	}
	return 0;
}

/* One entry of jwk_changes: a JWK, what happened to it and the state it is left in. */
static json_t *jwk_change_json(const char *kid, const char *alg, const char *use,
			       const char *change, const char *state, const char *superseded_by,
			       const char *replaces, int64_t published_until)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "kid", kid, "alg", alg,
			 "use", use, "change", change, "state", state, "superseded_by",
			 string_or_null(superseded_by), "replaces", string_or_null(replaces),
			 "published_until",
			 published_until != 0 ? time_json(published_until) : json_null());
}

json_t *jwk_changes_json(const struct cv_jwk_outcome *o)
{
	static const char *const actions[] = { [CV_JWK_ACTION_NONE] = "none",
					       [CV_JWK_ACTION_UPDATE] = "update",
					       [CV_JWK_ACTION_DISCONNECT] = "disconnect",
					       [CV_JWK_ACTION_DELETE] = "delete" };
	static const char *const made[] = { [CV_JWK_SAME] = "kept", [CV_JWK_MADE] = "created",
					    [CV_JWK_REACTIVATED] = "reactivated",
					    [CV_JWK_ADOPTED] = "adopted" };
	json_t *list = json_array();
	size_t i;
	int bad = list == NULL;

	for (i = 0; !bad && i < o->n; i++) {
		const struct cv_jwk_change *c = &o->changes[i];

		if (o->action == CV_JWK_ACTION_DISCONNECT)
			bad = json_array_append_new(list, jwk_change_json(
				c->kid, c->alg, c->use, "disconnected", "disconnected", NULL, NULL,
				0)) < 0;
		else if (strcmp(c->kid, c->new_kid) == 0)
			bad = json_array_append_new(list, jwk_change_json(
				c->kid, c->alg, c->use, "kept", "active", NULL, NULL, 0)) < 0;
		else
			/* Re-keyed: the old kid stays published for the retention, the new
			 * one is active from now on. */
			bad = json_array_append_new(list, jwk_change_json(
				c->kid, c->alg, c->use, "superseded", "superseded", c->new_kid,
				NULL, o->superseded_until)) < 0 ||
			      json_array_append_new(list, jwk_change_json(
				c->new_kid, c->new_alg, c->use, made[c->fate], "active", NULL, c->kid,
				0)) < 0;
	}
	if (bad) {
		json_decref(list);
		return NULL;
	}
	return json_pack("{s:s, s:o}", "action", actions[o->action], "jwks", list);
}

static int supersede(struct cv_app *app, enum cv_version_end kind,
		     const struct cv_request *req, struct cv_response *res, struct cv_errmsg *err)
{
	static const char *const allowed[] = { "certificate", "private_key", "password", "chain",
					       "encoding", "pkcs12", "version", "jwk_action",
					       "confirm", "check_chain", "allow_upcoming", "generate",
					       NULL };
	struct cv_jwk_choice jwk = { CV_JWK_ACTION_NONE, NULL };
	struct cv_jwk_outcome outcome = { 0 };
	struct cv_import_request in = { 0 };
	const char *action;
	int form, check = 0;
	struct cv_version_ref ref;
	struct cv_cert_view *view = NULL;
	struct cv_revocation rev;
	json_t *body = NULL;
	int64_t previous;
	int r;

	r = req_body_object(req, allowed, &body, &form, err);
	/* A renewal whose key is generated in the token: a CSR now, the merge later. */
	if (r == 0 && kind == CV_END_RENEWED && json_object_get(body, "generate") != NULL) {
		r = cert_renew_generate(app, req, body, form, res, err);
		goto out;
	}
	if (r == 0)
		r = material_members(body, form, &in, err);
	if (r == 0)
		r = version_ref(req, body, &ref, err);
	if (r == 0)
		r = json_string_member(body, "jwk_action", 0, 16, &action, NULL, err);
	if (r == 0)
		r = json_string_member(body, "confirm", 0, CV_NAME_MAX * 4, &jwk.confirm, NULL, err);
	if (r == 0)
		r = check_chain_member(body, &check, err);
	if (r == 0)
		r = bool_member(body, "allow_upcoming", &in.allow_upcoming, err);
	if (r < 0)
		goto out;
	if (cv_vault_jwk_action_parse(action, &jwk.action) < 0 ||
	    jwk.action == CV_JWK_ACTION_DELETE) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "\"jwk_action\" must be update or disconnect");
		goto out;
	}
	in.name = req->params[0];
	r = cv_vault_cert_supersede(&app->vault, req->audit, kind, &in, &ref, &jwk, req->now,
				    &previous, &rev, &outcome, err);
	log_revocation(req, &rev);
	if (r < 0)
		goto out;
	r = cert_view_response(app, req, req->params[0], 200, res, &view, err);
	if (r == 0)
		r = add_revocation(&rev, res);
	if (r < 0)
		goto out;
	/* Every service the new version reached, as the view read it after the commit; what
	 * became of the JWKs. */
	if (json_object_set_new(res->json, "previous_version", json_integer(previous)) < 0 ||
	    json_object_set_new(res->json, "applied_to", used_by_json(view->rec, 0, &req->actor.scope)) < 0 ||
	    json_object_set_new(res->json, "jwk_changes", jwk_changes_json(&outcome)) < 0)
		r = CV_ERR_NOMEM;
	if (r == 0 && check)
		r = add_chain_trust(app, req->params[0], req->now, res, err);
out:
	cv_jwk_outcome_release(&outcome);
	cv_vault_cert_view_free(view);
	json_decref(body); /* wiped on free: it held the key and the password */
	return r;
}

int h_cert_renew(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	return supersede(app, CV_END_RENEWED, req, res, err);
}

int h_cert_replace(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	return supersede(app, CV_END_REPLACED, req, res, err);
}

static json_t *version_json(const struct cv_version_view *vv)
{
	const struct cv_cert_version *v = &vv->version;
	static const char *const ended[] = { [CV_END_RENEWED] = "renewed",
					     [CV_END_REPLACED] = "replaced" };
	char etag[CV_VERSION_TAG_LEN + 2];

	snprintf(etag, sizeof(etag), "\"%s\"", vv->tag);
	return json_pack("{s:I, s:b, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:I, s:o, s:o,"
			 " s:o, s:{s:b, s:o}}",
			 "version", (json_int_t)v->version, "current", v->ended_by == CV_END_NONE,
			 "etag", etag, "serial_number", v->serial, "sha256_fingerprint",
			 v->sha256_fingerprint, "subject", v->subject, "issuer", v->issuer,
			 "key_description", v->key_description, "valid_from",
			 time_json(v->not_before), "valid_to", time_json(v->not_after), "status",
			 cv_status_name(vv->status), "expires_in_days",
			 (json_int_t)vv->expires_in_days, "current_from",
			 time_json(v->current_from), "current_until",
			 v->ended_by == CV_END_NONE ? json_null() : time_json(v->current_until),
			 "ended_by",
			 string_or_null(v->ended_by == CV_END_NONE ? NULL : ended[v->ended_by]),
			 "key", "in_token", vv->key_uri[0] != '\0', "pkcs11_uri",
			 string_or_null(vv->key_uri[0] != '\0' ? vv->key_uri : NULL));
}

int h_cert_versions(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err)
{
	struct cv_version_view *views = NULL;
	json_t *items = NULL;
	size_t n = 0, i;
	int r;

	r = cv_vault_cert_versions(&app->vault, req->params[0], req->now, &views, &n, err);
	if (r < 0)
		return r;
	items = json_array();
	for (i = 0; items != NULL && i < n; i++) {
		if (json_array_append_new(items, version_json(&views[i])) < 0) {
			json_decref(items);
			items = NULL;
		}
	}
	if (items == NULL)
		r = CV_ERR_NOMEM;
	else
		r = res_json(res, 200,
			     json_pack("{s:s, s:I, s:o}", "name", req->params[0], "current_version",
				       (json_int_t)views[0].version.version, "versions", items));
	free(views);
	return r;
}
