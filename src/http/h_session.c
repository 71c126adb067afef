/* Handlers for /v1/session: the console's sign-in with an API token, the session it then
 * holds as an HttpOnly cookie, and sign-out. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "handlers.h"

static json_t *session_json(const struct cv_app *app, const struct cv_actor *who,
			    const struct cv_session_view *view)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "id", who->id, "name", who->name,
			 "role", cv_role_name(who->role), "csrf_token", view->csrf, "expires_at",
			 time_json(view->expires_at), "idle_expires_at",
			 time_json(view->idle_expires_at), "idle_timeout",
			 (json_int_t)app->cfg->session_idle_timeout);
}

/* The cookie: never readable by scripts, never sent by another site's request, Secure over
 * HTTPS; it goes when the session would end anyway. */
static int set_cookie(const struct cv_request *req, struct cv_response *res, const char *value,
		      int64_t max_age)
{
	int n = snprintf(res->set_cookie, sizeof(res->set_cookie),
			 "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s",
			 req_session_cookie_name(req), value, (long long)max_age,
			 req->tls ? "; Secure" : "");

	if (n < 0 || (size_t)n >= sizeof(res->set_cookie)) {
		OPENSSL_cleanse(res->set_cookie, sizeof(res->set_cookie));
		return CV_ERR_INTERNAL;
	}
	return 0;
}

int h_session_create(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err)
{
	static const char *const allowed[] = { "token", NULL };
	char cookie[CV_SESSION_COOKIE_LEN + 1];
	struct cv_session_view view;
	struct cv_actor who;
	const char *token;
	json_t *body = NULL;
	int r;

	/* application/json only: a form of another site cannot send it, so it cannot sign a
	 * browser in to someone else's session either. */
	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = json_string_member(body, "token", 1, 256, &token, NULL, err);
	if (r < 0)
		goto out;
	r = cv_vault_session_create(&app->vault, req->audit, token, req->now,
				    app->cfg->session_idle_timeout, app->cfg->session_lifetime,
				    cookie, &who, &view, err);
	if (r < 0)
		goto out;
	r = set_cookie(req, res, cookie, app->cfg->session_lifetime);
	OPENSSL_cleanse(cookie, sizeof(cookie));
	if (r == 0)
		r = res_json(res, 201, session_json(app, &who, &view));
out:
	json_decref(body); /* wiped on free: it held the token */
	return r;
}

static int need_session(const struct cv_request *req, struct cv_errmsg *err)
{
	int r = 0;

	if (!req->has_session)
		r = cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no console session: this request was "
				  "made with an API token");
	return r;
}

int h_session_get(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	json_t *body;

	(void)err;
	/* Public: no session (none, ended, or an API token instead) is an answer, not a 401. */
	if (!req->has_session)
		return res_json(res, 200, json_pack("{s:b}", "signed_in", 0));
	body = session_json(app, &req->actor, &req->session);
	if (body != NULL && json_object_set_new(body, "signed_in", json_true()) < 0) {
		json_decref(body);
		body = NULL;
	}
	return res_json(res, 200, body);
}

int h_session_delete(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		     struct cv_errmsg *err)
{
	int r = need_session(req, err);

	if (r == 0)
		r = cv_vault_session_end(&app->vault, req->audit, req->session.id, err);
	if (r == 0)
		r = set_cookie(req, res, "", 0);
	if (r < 0)
		return r;
	res->status = 204;
	return 0;
}
