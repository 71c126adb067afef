/* Handlers for keys born in the token: generate (POST /v1/certificates with "generate"), the
 * CSR, the merge of the issued certificate, the cancel of a pending certificate, and the
 * pending certificates' list. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "certvault/util.h"
#include "handlers.h"

#define PEM_MAX (256 * 1024)
#define LIST_MEMBER_MAX 100
#define SUBJECT_MAX 512

/* A member that is an array of at most LIST_MEMBER_MAX strings of at most max bytes, into
 * a new array of pointers borrowed from obj (*ret NULL when absent or empty). */
static int string_array_member(json_t *obj, const char *key, size_t max, const char ***ret,
			       size_t *ret_n, struct cv_errmsg *err)
{
	json_t *a = json_object_get(obj, key), *item;
	const char **v;
	size_t i;

	*ret = NULL;
	*ret_n = 0;
	if (a == NULL || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" must be an array of strings",
				     key);
	if (json_array_size(a) > LIST_MEMBER_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" holds more than %d entries",
				     key, LIST_MEMBER_MAX);
	if (json_array_size(a) == 0)
		return 0;
	v = calloc(json_array_size(a), sizeof(*v));
	if (v == NULL)
		return CV_ERR_NOMEM;
	json_array_foreach(a, i, item) {
		if (!json_is_string(item) || json_string_length(item) == 0 ||
		    json_string_length(item) > max ||
		    strlen(json_string_value(item)) != json_string_length(item)) {
			free(v);
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\"[%zu] must be a "
					     "string of 1 to %zu bytes", key, i, max);
		}
		v[i] = json_string_value(item);
	}
	*ret = v;
	*ret_n = json_array_size(a);
	return 0;
}

struct generate_members {
	struct cv_generate_request req;
	const char **dns, **ips, **ku, **eku;
};

static void generate_members_release(struct generate_members *m)
{
	free(m->dns);
	free(m->ips);
	free(m->ku);
	free(m->eku);
}

static int generate_members_read(json_t *body, struct generate_members *m,
				 struct cv_errmsg *err)
{
	static const char *const allowed[] = { "key", "subject", "dns_names", "ip_addresses",
					       "key_usage", "extended_key_usage", "self_signed",
					       "days", NULL };
	json_t *g = json_object_get(body, "generate"), *v;
	const char *key;
	size_t i;
	int r;

	if (!json_is_object(g))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"generate\" must be an object "
				     "(in a form: generate.<member> fields)");
	json_object_foreach(g, key, v) {
		for (i = 0; allowed[i] != NULL && strcmp(allowed[i], key) != 0; i++)
			;
		if (allowed[i] == NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"generate\" has an unknown "
					     "member (known: key, subject, dns_names, "
					     "ip_addresses, key_usage, extended_key_usage, "
					     "self_signed, days)");
	}
	if ((r = json_string_member(g, "key", 1, 16, &m->req.key_type, NULL, err)) < 0 ||
	    (r = json_string_member(g, "subject", 1, SUBJECT_MAX, &m->req.x509.subject, NULL,
				    err)) < 0 ||
	    (r = string_array_member(g, "dns_names", CV_DNS_NAME_MAX, &m->dns,
				     &m->req.x509.n_dns_names, err)) < 0 ||
	    (r = string_array_member(g, "ip_addresses", 64, &m->ips,
				     &m->req.x509.n_ip_addresses, err)) < 0 ||
	    (r = string_array_member(g, "key_usage", 32, &m->ku, &m->req.x509.n_key_usage,
				     err)) < 0 ||
	    (r = string_array_member(g, "extended_key_usage", 32, &m->eku,
				     &m->req.x509.n_extended_key_usage, err)) < 0)
		return r;
	m->req.x509.dns_names = m->dns;
	m->req.x509.ip_addresses = m->ips;
	m->req.x509.key_usage = m->ku;
	m->req.x509.extended_key_usage = m->eku;
	v = json_object_get(g, "self_signed");
	if (v != NULL && !json_is_boolean(v))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"generate\".\"self_signed\" must "
				     "be true or false");
	m->req.self_signed = v != NULL && json_is_true(v);
	v = json_object_get(g, "days");
	if (v != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 3650)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"generate\".\"days\" must "
					     "be an integer from 1 to 3650");
		m->req.days = (int)json_integer_value(v);
	} else if (m->req.self_signed) {
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"generate\".\"days\" is required "
				     "with \"self_signed\"");
	}
	return 0;
}

/* The view of a pending certificate; the CSR when csr_pem is not NULL. */
static json_t *pending_json(struct cv_app *app, const struct cv_pending_record *p,
			    const char *csr_pem)
{
	char key_id[2 * CV_TOKEN_ID_LEN + 1], uri[512];
	json_t *o;

	cv_hex_encode(p->key_id, sizeof(p->key_id), key_id);
	if (cv_vault_key_uri(&app->vault, p->key_id, p->key_label, uri, sizeof(uri)) < 0)
		uri[0] = '\0';
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:o, s:o, s:{s:o, s:s, s:s, s:s}}",
		      "name", p->name, "description", p->description, "status", "pending",
		      "key_type", p->key_type, "subject", p->subject, "renewal", p->cert_id != 0,
		      "created_by", p->created_by, "created_at", time_json(p->created_at),
		      "expires_at", time_json(p->expires_at), "key", "pkcs11_uri",
		      string_or_null(uri[0] != '\0' ? uri : NULL), "id", key_id, "label",
		      p->key_label, "origin", "generated");
	if (o != NULL && csr_pem != NULL &&
	    json_object_set_new(o, "csr", json_string(csr_pem)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int pending_view_response(struct cv_app *app, const char *name, int with_csr,
			  struct cv_response *res, struct cv_errmsg *err)
{
	struct cv_pending_record *p = NULL;
	char *csr_pem = NULL;
	int r;

	r = cv_vault_pending_get(&app->vault, name, &p, &csr_pem, err);
	/* A plain "no such certificate" for a details view that found none either way. */
	if (r == CV_ERR_NOT_PENDING && !with_csr)
		r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no certificate named %s", name);
	if (r < 0)
		return r;
	r = res_json(res, 200, pending_json(app, p, with_csr ? csr_pem : NULL));
	cv_store_pending_free(p);
	free(csr_pem);
	return r;
}

int cert_generate(struct cv_app *app, const struct cv_request *req, json_t *body, int form,
		  struct cv_response *res, struct cv_errmsg *err)
{
	static const char *const material[] = { "certificate", "private_key", "password",
						"chain", "encoding", "pkcs12", "check_chain",
						"url", "position", "wrapped_key",
						"allow_upcoming", NULL };
	/* Kept by the certificate, which a pending key does not have yet: refused rather
	 * than dropped. */
	static const char *const later[] = { "tags", "environments", NULL };
	struct generate_members m;
	struct cv_generate_result out = { NULL, NULL, NULL };
	size_t i;
	int r;

	memset(&m, 0, sizeof(m));
	(void)form; /* a form sends "generate" as generate.<member> fields: the same members */
	for (i = 0; material[i] != NULL; i++) {
		if (json_object_get(body, material[i]) != NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"generate\" makes the key in "
					  "the token: \"%s\" is not taken with it", material[i]);
			goto out;
		}
	}
	for (i = 0; later[i] != NULL; i++) {
		if (json_object_get(body, later[i]) != NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" is not taken with "
					  "\"generate\": set it with PATCH once the certificate "
					  "is merged", later[i]);
			goto out;
		}
	}
	if ((r = json_string_member(body, "name", 1, CV_NAME_MAX * 4, &m.req.name, NULL,
				    err)) < 0 ||
	    (r = json_string_member(body, "description", 0, CV_DESCRIPTION_MAX,
				    &m.req.description, NULL, err)) < 0 ||
	    (r = generate_members_read(body, &m, err)) < 0)
		goto out;
	r = cv_vault_cert_generate(&app->vault, req->audit, &m.req, req->now, &out, err);
	if (r < 0)
		goto out;
	if (out.rec != NULL)
		r = cert_view_response(app, req, out.rec->name, 201, res, NULL, err);
	else
		r = res_json(res, 201, pending_json(app, out.pending, out.csr_pem));
out:
	cv_generate_result_release(&out);
	generate_members_release(&m);
	return r;
}

int cert_renew_generate(struct cv_app *app, const struct cv_request *req, json_t *body,
			int form, struct cv_response *res, struct cv_errmsg *err)
{
	static const char *const others[] = { "certificate", "private_key", "password", "chain",
					      "encoding", "pkcs12", "version", "jwk_action",
					      "confirm", "check_chain", NULL };
	struct generate_members m;
	struct cv_generate_result out = { NULL, NULL, NULL };
	size_t i;
	int r;

	memset(&m, 0, sizeof(m));
	(void)form; /* a form sends "generate" as generate.<member> fields: the same members */
	/* The version and the JWK choice are the merge's, when the renewal happens. */
	for (i = 0; others[i] != NULL; i++) {
		if (json_object_get(body, others[i]) != NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a renewal by \"generate\" takes "
					  "no \"%s\": the merge of its certificate does",
					  others[i]);
			goto out;
		}
	}
	r = generate_members_read(body, &m, err);
	if (r < 0)
		goto out;
	m.req.name = req->params[0];
	m.req.renew = 1;
	r = cv_vault_cert_generate(&app->vault, req->audit, &m.req, req->now, &out, err);
	if (r == 0)
		r = res_json(res, 201, pending_json(app, out.pending, out.csr_pem));
out:
	cv_generate_result_release(&out);
	generate_members_release(&m);
	return r;
}

int h_cert_csr(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err)
{
	return pending_view_response(app, req->params[0], 1, res, err);
}

int pending_in_scope(struct cv_app *app, const struct cv_request *req,
		     const struct cv_pending_record *rec, int *ret_inside, struct cv_errmsg *err)
{
	const struct cv_scope *scope = &req->actor.scope;

	*ret_inside = 1;
	if (!scope->scoped)
		return 0;
	if (rec->cert_id == 0 && scope->objects.n_environments > 0) {
		*ret_inside = 0;
		return 0;
	}
	return cv_vault_scope_cert(&app->vault, scope, rec->name, ret_inside, err);
}

int pending_list_response(struct cv_app *app, const struct cv_request *req,
			  struct cv_response *res, struct cv_errmsg *err)
{
	struct cv_pending_record *recs = NULL;
	json_t *items = NULL;
	size_t n = 0, i;
	int r;

	/* The pending are few and short-lived: one page, no other filter. */
	for (i = 0; i < req->n_query; i++) {
		if (strcmp(req->query[i].key, "status") != 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "status=pending takes no other "
					  "argument");
			goto out;
		}
	}
	r = cv_vault_pending_list(&app->vault, &recs, &n, err);
	if (r < 0)
		goto out;
	items = json_array();
	if (items == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		int inside = 1;

		/* A scoped token sees the pending certificates its scope lets in (few: each
		 * judged as its details would be). */
		r = pending_in_scope(app, req, &recs[i], &inside, err);
		if (r < 0)
			goto out;
		if (!inside)
			continue;
		if (json_array_append_new(items, pending_json(app, &recs[i], NULL)) < 0) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	r = res_json(res, 200, json_pack("{s:o, s:n, s:I}", "items", items, "next_cursor",
					 "limit", (json_int_t)json_array_size(items)));
	items = NULL;
out:
	json_decref(items);
	cv_store_pending_array_free(recs, n);
	return r;
}

int h_cert_merge(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	static const char *const allowed[] = { "certificate", "chain", "encoding",
					       "check_chain", "version", "jwk_action", "confirm",
					       NULL };
	struct cv_jwk_choice jwk = { CV_JWK_ACTION_NONE, NULL };
	struct cv_jwk_outcome outcome = { 0 };
	struct cv_version_ref ref;
	const char *action = NULL;
	int64_t previous = 0;
	int (*file_member)(json_t *, const char *, int, size_t, const char **, size_t *,
			   struct cv_errmsg *);
	struct cv_import_request in = { 0 };
	struct cv_revocation rev;
	const char *encoding = NULL;
	json_t *body = NULL;
	int r, form, check = 0;

	memset(&rev, 0, sizeof(rev));
	r = req_body_object(req, allowed, &body, &form, err);
	if (r < 0)
		goto out;
	file_member = form ? json_bytes_member : json_string_member;
	in.name = req->params[0];
	if ((r = file_member(body, "certificate", 1, PEM_MAX, &in.certificate,
			     &in.certificate_len, err)) < 0 ||
	    (r = file_member(body, "chain", 0, PEM_MAX, &in.chain, &in.chain_len, err)) < 0 ||
	    (r = json_string_member(body, "encoding", 0, 16, &encoding, NULL, err)) < 0 ||
	    (r = check_chain_member(body, &check, err)) < 0 ||
	    (r = version_ref(req, body, &ref, err)) < 0 ||
	    (r = json_string_member(body, "jwk_action", 0, 16, &action, NULL, err)) < 0 ||
	    (r = json_string_member(body, "confirm", 0, CV_NAME_MAX * 4, &jwk.confirm, NULL,
				    err)) < 0)
		goto out;
	if (cv_vault_jwk_action_parse(action, &jwk.action) < 0 ||
	    jwk.action == CV_JWK_ACTION_DELETE) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "\"jwk_action\" must be update or disconnect");
		goto out;
	}
	if (form) {
		if (encoding != NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"encoding\" is for JSON bodies: "
					  "an uploaded file's form is recognised");
			goto out;
		}
		in.encoding = CV_ENC_FILE;
		in.bundle = 1;
	} else if (cv_x509_encoding_parse(encoding, &in.encoding) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				  "\"encoding\" must be pem, base64 or base64pem");
		goto out;
	}
	r = cv_vault_pending_merge(&app->vault, req->audit, &in, &ref, &jwk, req->now, &previous,
				   &rev, &outcome, err);
	log_revocation(req, &rev);
	if (r < 0)
		goto out;
	r = cert_view_response(app, req, in.name, 200, res, NULL, err);
	if (r == 0)
		r = add_revocation(&rev, res);
	/* A renewal's merge is a renewal: it says what became of the JWKs as renew does. */
	if (r == 0 && previous > 0 &&
	    (json_object_set_new(res->json, "previous_version", json_integer(previous)) < 0 ||
	     json_object_set_new(res->json, "jwk_changes", jwk_changes_json(&outcome)) < 0))
		r = CV_ERR_NOMEM;
out:
	cv_jwk_outcome_release(&outcome);
	json_decref(body);
	return r;
}

int h_pending_cancel(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err)
{
	int r;

	r = cv_vault_pending_cancel(&app->vault, req->audit, req->params[0], err);
	if (r < 0)
		return r;
	return res_json(res, 200, json_pack("{s:s, s:b}", "name", req->params[0], "cancelled",
					    1));
}

int h_wrapping_key(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	char kid[64], *pem = NULL;
	int r;

	(void)req;
	r = cv_vault_wrapping_key(&app->vault, &pem, kid, err);
	if (r < 0)
		return r;
	r = res_json(res, 200, json_pack("{s:s, s:s, s:s, s:[s, s], s:s}", "kid", kid,
					 "public_key", pem, "key_type", "RSA-3072",
					 "oaep_hashes", "sha256", "sha1", "key_wrap",
					 "AES-256 key wrap with padding (RFC 5649) of PKCS#8"));
	free(pem);
	return r;
}

/* Standard base64 of at most max decoded bytes into a new buffer. */
static int base64_member(json_t *obj, const char *key, size_t max, unsigned char **ret,
			 size_t *ret_len, struct cv_errmsg *err)
{
	const char *text;
	size_t len, pad = 0;
	unsigned char *buf;
	int n, r;

	r = json_string_member(obj, key, 1, (max / 3 + 1) * 4, &text, &len, err);
	if (r < 0)
		return r;
	if (len == 0 || len % 4 != 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"wrapped_key\".\"%s\" must be "
				     "standard base64", key);
	while (pad < 2 && text[len - 1 - pad] == '=')
		pad++;
	buf = malloc(len / 4 * 3);
	if (buf == NULL)
		return CV_ERR_NOMEM;
	n = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len);
	if (n < 0 || (size_t)n < pad) {
		free(buf);
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"wrapped_key\".\"%s\" must be "
				     "standard base64", key);
	}
	*ret = buf;
	*ret_len = (size_t)n - pad;
	return 0;
}

int wrapped_key_member(json_t *body, struct cv_import_request *in, unsigned char *ret_bufs[2],
		       struct cv_errmsg *err)
{
	static const char *const known[] = { "kid", "encrypted_aes_key", "wrapped_private_key",
					     "oaep_hash", NULL };
	const char *oaep = NULL;
	json_t *w = json_object_get(body, "wrapped_key"), *v;
	const char *key;
	size_t i;
	int r;

	if (w == NULL)
		return 0;
	if (!json_is_object(w))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"wrapped_key\" must be an object "
				     "with kid, encrypted_aes_key and wrapped_private_key");
	json_object_foreach(w, key, v) {
		for (i = 0; known[i] != NULL && strcmp(known[i], key) != 0; i++)
			;
		if (known[i] == NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"wrapped_key\" has an "
					     "unknown member (known: kid, encrypted_aes_key, "
					     "wrapped_private_key, oaep_hash)");
	}
	r = json_string_member(w, "kid", 1, 64, &in->wrapped_kid, NULL, err);
	if (r == 0)
		r = json_string_member(w, "oaep_hash", 0, 16, &oaep, NULL, err);
	if (r == 0 && oaep != NULL && strcmp(oaep, "sha256") != 0 && strcmp(oaep, "sha1") != 0)
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"wrapped_key\".\"oaep_hash\" must be "
				  "sha256 (the default) or sha1");
	in->wrapped_oaep_sha1 = oaep != NULL && strcmp(oaep, "sha1") == 0;
	if (r == 0)
		r = base64_member(w, "encrypted_aes_key", 1024, &ret_bufs[0],
				  &in->encrypted_aes_key_len, err);
	if (r == 0)
		r = base64_member(w, "wrapped_private_key", 16 * 1024, &ret_bufs[1],
				  &in->wrapped_private_key_len, err);
	if (r < 0)
		return r;
	in->encrypted_aes_key = ret_bufs[0];
	in->wrapped_private_key = ret_bufs[1];
	return 0;
}
