/* Handlers for /v1/jwks and /.well-known/jwks.json: JWKs made from certificates, and the
 * public JWKS document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/util.h"
#include "handlers.h"

/* How long a client or a cache may reuse the JWKS document before asking again. A renewal
 * that updates a JWK keeps the old one in the document for jwks.superseded_retention (24 h
 * by default), and the new one is in it from the renewal on, so a verifier with a copy this
 * old still finds the key a token names. */
#define JWKS_CACHE_CONTROL "public, max-age=300"

static json_t *jwk_view_json(const struct cv_jwk_record *rec)
{
	json_t *jwk = json_loads(rec->jwk, JSON_REJECT_DUPLICATES, NULL);

	if (jwk == NULL)
		return NULL;
	return json_pack("{s:s, s:o, s:o, s:{s:s, s:I}, s:s, s:o, s:o, s:o}", "kid", rec->kid,
			 "jwk", jwk, "certificate",
			 string_or_null(rec->cert_id != 0 ? rec->cert_name : NULL), "made_from",
			 "certificate", rec->cert_name, "version", (json_int_t)rec->cert_version,
			 "state", rec->state == CV_JWK_ACTIVE ? "active" : "superseded",
			 "superseded_by",
			 string_or_null(rec->superseded_by[0] != '\0' ? rec->superseded_by : NULL),
			 "created_at", time_json(rec->created_at), "updated_at",
			 time_json(rec->updated_at));
}

/* A JWK as the management listing shows it: its state among active (linked, published),
 * superseded (replaced by superseded_by when its certificate was renewed) and disconnected
 * (its certificate let it go: no link, published as it was), whether the public document
 * has it now, the link, and what it was made from. A superseded JWK stays in the document
 * for jwks.superseded_retention after superseded_at: published_until says when it leaves
 * (the same rule as cv_store_jwk_published), so an admin sees how long verifiers keep it. */
static json_t *jwk_managed_json(const struct cv_jwk_record *rec, int64_t now, int64_t retention)
{
	json_t *jwk = json_loads(rec->jwk, JSON_REJECT_DUPLICATES, NULL), *o;
	const char *state = rec->cert_id == 0 ? "disconnected" :
			    rec->state == CV_JWK_ACTIVE ? "active" : "superseded";
	int superseded = rec->state == CV_JWK_SUPERSEDED;
	int64_t until = 0;

	if (jwk == NULL)
		return NULL;
	if (superseded && __builtin_add_overflow(rec->superseded_at, retention, &until))
		until = INT64_MAX;
	o = json_pack("{s:s, s:s, s:s, s:O?, s:s, s:b, s:o, s:o, s:o, s:{s:s, s:I}, s:o, s:o, s:o}",
		      "kid", rec->kid, "alg", rec->alg, "use", rec->use, "kty",
		      json_object_get(jwk, "kty"), "state", state, "published",
		      rec->state == CV_JWK_ACTIVE || (superseded && until > now),
		      "superseded_at", superseded ? time_json(rec->superseded_at) : json_null(),
		      "published_until",
		      superseded && until != INT64_MAX ? time_json(until) : json_null(), "link",
		      rec->cert_id != 0 ? json_pack("{s:s}", "certificate", rec->cert_name)
					: json_null(),
		      "made_from", "certificate", rec->cert_name, "version",
		      (json_int_t)rec->cert_version, "superseded_by",
		      string_or_null(rec->superseded_by[0] != '\0' ? rec->superseded_by : NULL),
		      "created_at", time_json(rec->created_at), "updated_at",
		      time_json(rec->updated_at));
	json_decref(jwk);
	return o;
}

int h_jwk_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	       struct cv_errmsg *err)
{
	struct cv_jwk_record *recs = NULL;
	const char *s, *certificate;
	json_t *items = NULL;
	int64_t limit = 50;
	size_t n = 0, i;
	int r, more = 0;

	if ((s = req_query(req, "limit")) != NULL && cv_parse_int64(s, 1, 999, &limit) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "limit must be from 1 to 999");
	certificate = req_query(req, "certificate");
	r = cv_vault_jwk_list_scoped(&app->vault, certificate, req_query(req, "cursor"),
				     (unsigned)limit, cv_scope_list_objects(&req->actor.scope),
				     &recs, &n, &more, err);
	if (r < 0)
		return r;
	items = json_array();
	for (i = 0; items != NULL && i < n; i++)
		if (json_array_append_new(items, jwk_managed_json(&recs[i], req->now,
								   app->vault.jwks_retention)) < 0) {
			json_decref(items);
			items = NULL;
		}
	r = items == NULL ? CV_ERR_NOMEM
			  : res_json(res, 200,
				     json_pack("{s:o, s:o, s:I}", "items", items, "next_cursor",
					       more && n > 0 ? json_string(recs[n - 1].kid)
							     : json_null(),
					       "limit", (json_int_t)limit));
	cv_store_jwks_free(recs, n);
	return r;
}

int h_jwk_create(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	static const char *const allowed[] = { "certificate", "use", "alg", NULL };
	const char *certificate, *use, *alg;
	struct cv_jwk_record *rec = NULL;
	json_t *body = NULL;
	int r;

	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = json_string_member(body, "certificate", 1, CV_NAME_MAX * 4, &certificate, NULL,
				       err);
	if (r == 0)
		r = json_string_member(body, "use", 0, 16, &use, NULL, err);
	if (r == 0)
		r = json_string_member(body, "alg", 0, 32, &alg, NULL, err);
	if (r == 0)
		r = cv_vault_jwk_create(&app->vault, req->audit, certificate, alg, use, req->now,
					&rec, err);
	if (r == 0)
		r = res_json(res, 201, jwk_view_json(rec));
	cv_store_jwk_free(rec);
	json_decref(body);
	return r;
}

int h_jwk_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	      struct cv_errmsg *err)
{
	struct cv_jwk_record *rec = NULL;
	int r;

	r = cv_vault_jwk_get(&app->vault, req->params[0], &rec, err);
	if (r == 0)
		r = res_json(res, 200, jwk_view_json(rec));
	cv_store_jwk_free(rec);
	return r;
}

int h_jwk_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	int r;

	r = cv_vault_jwk_delete(&app->vault, req->audit, req->params[0], err);
	if (r == 0)
		r = res_json(res, 200,
			     json_pack("{s:s, s:b}", "kid", req->params[0], "deleted", 1));
	return r;
}

int h_jwks_document(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err)
{
	char tag[65];
	char *text = NULL;
	size_t len;
	int r;

	r = cv_vault_jwks_document(&app->vault, req->now, &text, &len, tag, err);
	if (r < 0)
		return r;
	snprintf(res->etag, sizeof(res->etag), "\"%.32s\"", tag);
	res->cache_control = JWKS_CACHE_CONTROL;
	res->etag_final = 1; /* the document's own validator, which the cache keeps */
	if (req->if_none_match != NULL && http_none_match_hits(req->if_none_match, res->etag)) {
		res->status = 304;
		free(text);
		return 0;
	}
	res->status = 200;
	res->raw = (unsigned char *)text;
	res->raw_len = len;
	res->content_type = "application/jwk-set+json";
	return 0;
}
