/* Handlers for /v1/tokens (API tokens, admin only) and /v1/audit (the audit trail). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "certvault/util.h"
#include "handlers.h"

#define TOKEN_DAYS_MAX 3650

/* A token as the API shows it: never its secret. unused: an active token that nobody has
 * used (or that was made and never used) for unused_days (0: never flagged). */
static json_t *token_json(const struct cv_api_token *t, int64_t now, int64_t unused_days)
{
	const char *state = t->revoked_at != 0                         ? "revoked" :
			    t->expires_at != 0 && t->expires_at <= now ? "expired" :
									 "active";
	int64_t since = t->last_used_at != 0 ? t->last_used_at : t->created_at;
	struct cv_scope scope;
	json_t *scope_json;

	/* A row whose scope cannot be read is shown as such: that token is refused anyway. */
	scope_json = cv_vault_token_scope(t, &scope) == 0 ? cv_scope_json(&scope)
							   : json_string("unreadable");
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:b}", "id", t->id,
			 "name", t->name, "role", cv_role_name(t->role), "state", state,
			 "created_at", time_json(t->created_at), "expires_at",
			 t->expires_at != 0 ? time_json(t->expires_at) : json_null(), "revoked_at",
			 t->revoked_at != 0 ? time_json(t->revoked_at) : json_null(), "scope",
			 scope_json, "last_used_at",
			 t->last_used_at != 0 ? time_json(t->last_used_at) : json_null(),
			 "last_used_from",
			 t->last_used_from[0] != '\0' ? cv_text_json(t->last_used_from) : json_null(),
			 "unused", strcmp(state, "active") == 0 && unused_days > 0 &&
					   now - since >= unused_days * 86400);
}

/* Whether role may do action somewhere (a route the role may call names it): a scope only
 * narrows its role, so an action the role can never do is refused rather than kept as a
 * promise nothing keeps. */
static int role_may_action(const struct cv_app *app, enum cv_role role,
			   enum cv_scope_action action)
{
	struct cv_route_info ri;
	size_t i;

	for (i = 0; cv_http_route_at(i, &ri) == 0; i++)
		if (ri.scope_action == action &&
		    cv_http_role_may(ri.access, role, app->cfg->metrics_public))
			return 1;
	return 0;
}

int h_token_create(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	static const char *const allowed[] = { "name", "role", "expires_in_days", "scope", NULL };
	char secret[CV_API_TOKEN_LEN + 1];
	struct cv_api_token t;
	struct cv_scope scope;
	int a;
	const char *name, *role_text;
	enum cv_role role;
	json_t *body = NULL, *days, *out;
	int64_t expires_at = 0;
	int r;

	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = json_string_member(body, "name", 1, CV_NAME_MAX * 4, &name, NULL, err);
	if (r == 0)
		r = json_string_member(body, "role", 1, 16, &role_text, NULL, err);
	if (r < 0)
		goto out;
	if (cv_role_parse(role_text, &role) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"role\" must be admin, operator or "
				  "auditor");
		goto out;
	}
	days = json_object_get(body, "expires_in_days");
	if (days != NULL && !json_is_null(days)) {
		if (!json_is_integer(days) || json_integer_value(days) < 1 ||
		    json_integer_value(days) > TOKEN_DAYS_MAX) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"expires_in_days\" must be an "
					  "integer from 1 to %d", TOKEN_DAYS_MAX);
			goto out;
		}
		expires_at = req->now + json_integer_value(days) * 86400;
	}
	r = cv_scope_from_json(json_object_get(body, "scope"), &scope, err);
	if (r < 0)
		goto out;
	for (a = CV_SCOPE_READ; scope.scoped && a < CV_SCOPE__COUNT; a++)
		if (cv_scope_allows(&scope, (enum cv_scope_action)a) &&
		    !role_may_action(app, role, (enum cv_scope_action)a)) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the %s role cannot \"%s\": a "
					  "scope only narrows what the role may do",
					  cv_role_name(role),
					  cv_scope_action_name((enum cv_scope_action)a));
			goto out;
		}
	r = cv_vault_token_create_scoped(&app->vault, req->audit, name, role, &scope,
					 expires_at, req->now, &t, secret, err);
	if (r < 0)
		goto out;
	/* The secret is shown this once. jansson wipes what it frees (cv_http_json_harden). */
	out = token_json(&t, req->now, 0);
	if (out != NULL && json_object_set_new(out, "token", json_string(secret)) < 0) {
		json_decref(out);
		out = NULL;
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	r = res_json(res, 201, out);
out:
	json_decref(body);
	return r;
}

int h_token_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	struct cv_api_token *all = NULL;
	json_t *items;
	size_t n = 0, i;
	int r;

	r = cv_vault_token_list(&app->vault, &all, &n, err);
	if (r < 0)
		return r;
	items = json_array();
	for (i = 0; items != NULL && i < n; i++)
		if (json_array_append_new(items, token_json(&all[i], req->now,
							      app->cfg->token_unused_days)) < 0) {
			json_decref(items);
			items = NULL;
		}
	free(all);
	return res_json(res, 200, items != NULL ? json_pack("{s:o}", "items", items) : NULL);
}

int h_token_revoke(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	int r;

	r = cv_vault_token_revoke(&app->vault, req->audit, req->params[0], req->now, err);
	if (r < 0)
		return r;
	res->status = 204;
	return 0;
}

/* What a record says changed: its JSON object, or null when it says nothing (or, written by
 * hand behind certvault's back, is not an object: the page still renders). */
static json_t *changes_json(const char *text)
{
	json_t *o;

	if (text[0] == '\0')
		return json_null();
	o = json_loads(text, 0, NULL);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return json_null();
	}
	return o;
}

static json_t *audit_json(const struct cv_audit_record *rec)
{
	char prev[2 * CV_AUDIT_HASH_LEN + 1], hash[2 * CV_AUDIT_HASH_LEN + 1];
	const struct cv_audit_entry *e = &rec->e;
	char one[sizeof(e->fingerprints)];
	json_t *fps = json_array(), *out;
	const char *p = e->fingerprints;
	size_t n;

	while (fps != NULL && *p != '\0') {
		n = strcspn(p, " ");
		memcpy(one, p, n);
		one[n] = '\0';
		if (n > 0 && json_array_append_new(fps, cv_text_json(one)) < 0) {
			json_decref(fps);
			return NULL;
		}
		p += n;
		p += *p == ' ';
	}
	cv_hex_encode(rec->prev_hash, CV_AUDIT_HASH_LEN, prev);
	cv_hex_encode(rec->hash, CV_AUDIT_HASH_LEN, hash);
	/* Every text field is shown escaped when it is not UTF-8: a record written before
	 * targets were made safe (or edited behind certvaultd's back) still shows, and the
	 * page with it. */
	out = json_pack("{s:I, s:o, s:{s:o, s:o}, s:o, s:o, s:s, s:o, s:o, s:o, s:s, s:s, s:o,"
			" s:o, s:I, s:b}", "seq",
			(json_int_t)rec->seq, "at", time_json(e->at), "actor", "id",
			e->actor_id[0] != '\0' ? cv_text_json(e->actor_id) : json_null(), "name",
			cv_text_json(e->actor_name), "action", cv_text_json(e->action), "target",
			cv_text_json(e->target), "outcome", e->ok ? "done" : "refused", "error",
			e->error[0] != '\0' ? cv_text_json(e->error) : json_null(), "request_id",
			cv_text_json(e->request_id), "fingerprints", fps != NULL ? fps : json_null(),
			"prev_hash", prev, "hash", hash, "changes", changes_json(e->changes), "source",
			e->source[0] != '\0' ? cv_text_json(e->source) : json_null(), "count",
			(json_int_t)(e->count > 0 ? e->count : 1), "keyed", rec->keyed);
	/* A count of repeats says when they began and ended; a checkpoint says what it marks. */
	if (out != NULL && e->first_at != 0 &&
	    (json_object_set_new(out, "first_at", time_json(e->first_at)) < 0 ||
	     json_object_set_new(out, "last_at", time_json(e->last_at)) < 0)) {
		json_decref(out);
		return NULL;
	}
	/* Which key made a keyed record's HMAC: the link key this number names. */
	if (out != NULL && rec->keyed && rec->link > 0 &&
	    json_object_set_new(out, "link_key", json_integer((json_int_t)rec->link)) < 0) {
		json_decref(out);
		return NULL;
	}
	if (out != NULL && e->detail[0] != '\0' &&
	    json_object_set_new(out, "detail", cv_text_json(e->detail)) < 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* A time query argument: RFC 3339, or absent (0). */
static int time_arg(const struct cv_request *req, const char *key, int64_t *ret,
		    struct cv_errmsg *err)
{
	const char *s = req_query(req, key);

	*ret = 0;
	if (s != NULL && cv_time_parse(s, ret) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "%s must be an RFC 3339 time, like "
				     "2026-11-22T20:30:00Z", key);
	return 0;
}

int h_audit_list(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		 struct cv_errmsg *err)
{
	struct cv_audit_filter f = { 0 };
	struct cv_audit_record *recs = NULL;
	const char *s;
	json_t *items = NULL, *out;
	size_t n = 0, i;
	int r;

	r = time_arg(req, "from", &f.from, err);
	if (r == 0)
		r = time_arg(req, "until", &f.until, err);
	if (r < 0)
		return r;
	f.limit = 100;
	if ((s = req_query(req, "limit")) != NULL && cv_parse_int64(s, 1, 1000, &f.limit) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "limit must be from 1 to 1000");
	if ((s = req_query(req, "cursor")) != NULL &&
	    cv_parse_int64(s, 0, INT64_MAX, &f.after) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "cursor must be a next_cursor this API returned");
	f.actor = req_query(req, "actor");
	f.action = req_query(req, "action");
	f.target = req_query(req, "target");
	r = cv_vault_audit_list(&app->vault, &f, &recs, &n, err);
	if (r < 0)
		return r;
	items = json_array();
	for (i = 0; items != NULL && i < n; i++)
		if (json_array_append_new(items, audit_json(&recs[i])) < 0) {
			json_decref(items);
			items = NULL;
		}
	out = items != NULL ? json_pack("{s:o}", "items", items) : NULL;
	if (out != NULL && n == (size_t)f.limit) {
		char cursor[24];

		snprintf(cursor, sizeof(cursor), "%lld", (long long)recs[n - 1].seq);
		json_object_set_new(out, "next_cursor", json_string(cursor));
	} else if (out != NULL) {
		json_object_set_new(out, "next_cursor", json_null());
	}
	free(recs);
	return res_json(res, 200, out);
}

int h_audit_verify(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		   struct cv_errmsg *err)
{
	struct cv_audit_verdict v;
	char head[2 * CV_AUDIT_HASH_LEN + 1];
	json_t *out;
	int r;

	(void)req; /* the route takes no query, which the dispatch has checked */
	r = cv_vault_audit_verify(&app->vault, &v, err);
	if (r < 0)
		return r;
	cv_hex_encode(v.head, CV_AUDIT_HASH_LEN, head);
	/* What the walk proves: records from keyed_from on carry the token's HMAC (rewriting
	 * them needs the token), those before it (unkeyed) only a plain SHA-256 chain, and
	 * records up to archived_through left for an archive through a keyed checkpoint. */
	out = json_pack("{s:b, s:I, s:o, s:o, s:I, s:o}", "intact", v.first_bad == 0, "records",
			(json_int_t)v.records, "first_seq",
			v.first_seq != 0 ? json_integer(v.first_seq) : json_null(), "keyed_from",
			v.keyed_from != 0 ? json_integer(v.keyed_from) : json_null(), "unkeyed",
			(json_int_t)v.unkeyed, "archived_through",
			v.archived_through > 0 ? json_integer(v.archived_through) : json_null());
	if (out == NULL)
		return CV_ERR_NOMEM;
	if (v.first_bad == 0)
		r = json_object_set_new(out, "head", json_string(head));
	else
		r = json_object_set_new(out, "first_bad", json_integer(v.first_bad)) |
		    json_object_set_new(out, "reason", json_string(v.reason));
	if (r < 0) {
		json_decref(out);
		return CV_ERR_NOMEM;
	}
	return res_json(res, 200, out);
}
