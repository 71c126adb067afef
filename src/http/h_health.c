/* GET /v1/health: is the database answering, is the token reachable. */
#include "handlers.h"

int h_health(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	     struct cv_errmsg *err)
{
	static const char *const allowed[] = { NULL };
	struct cv_token_health th;
	int r, db_ok, token_ok;

	r = req_query_check(req, allowed, 0, err);
	if (r < 0)
		return r;
	db_ok = cv_store_ping(app->store) == 0;
	token_ok = cv_token_health_get(app->token, &th) == 0;
	return res_json(res, db_ok && token_ok ? 200 : 503,
			json_pack("{s:s, s:{s:b}, s:{s:b, s:b, s:s, s:s, s:s, s:s, s:I}}",
				  "status", db_ok && token_ok ? "ok" : "degraded", "database",
				  "ok", db_ok, "token", "reachable", th.reachable, "logged_in",
				  th.logged_in, "label", th.label, "manufacturer", th.manufacturer,
				  "model", th.model, "serial", th.serial, "keys",
				  (json_int_t)th.keys));
}
