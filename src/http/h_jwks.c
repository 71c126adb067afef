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

/* 1 when an If-None-Match list holds etag (or "*"); weak tags compare weakly (RFC 9110). */
static int none_match_hits(const char *header, const char *etag)
{
	const char *p = header;
	size_t len = strlen(etag);

	while (*p != '\0') {
		p += strspn(p, " \t,");
		if (*p == '*')
			return 1;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (strncmp(p, etag, len) == 0 && (p[len] == '\0' || p[len] == ',' ||
						    p[len] == ' ' || p[len] == '\t'))
			return 1;
		p += strcspn(p, ",");
	}
	return 0;
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
	if (req->if_none_match != NULL && none_match_hits(req->if_none_match, res->etag)) {
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
