/* GET /v1/health: is the database answering, is the token reachable; which node answers and
 * on what store. */
#include "handlers.h"

int h_health(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	     struct cv_errmsg *err)
{
	struct cv_vault_health h;
	int ok;

	(void)req; /* no query: the dispatch checked */
	(void)err;
	ok = cv_vault_health_get(&app->vault, &h) == 0;
	/* token.state "unavailable" while the token is gone (error says what failed); metadata
	 * reads keep working meanwhile, writes that need the token answer 503. */
	return res_json(res, ok ? 200 : 503,
			json_pack("{s:s, s:s, s:s, s:{s:b}, s:{s:s, s:b, s:b, s:s, s:s, s:s, s:s, s:I, s:s*}}",
				  "status", ok ? "ok" : "degraded", "node", app->cfg->node_name,
				  "store", "sqlite", "database", "ok",
				  h.database_ok, "token", "state",
				  h.token.reachable ? "ok" : "unavailable", "reachable",
				  h.token.reachable, "logged_in", h.token.logged_in, "label",
				  h.token.label, "manufacturer", h.token.manufacturer, "model",
				  h.token.model, "serial", h.token.serial, "keys",
				  (json_int_t)h.token.keys, "error",
				  h.token.reachable ? NULL : h.token.error));
}
