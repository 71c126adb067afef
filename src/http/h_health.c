/* GET /v1/health: is the database answering, is the token reachable; which node answers and
 * on what store; what the start-up check of the database against the token found. */
#include <string.h>

#include "certvault/util.h"
#include "handlers.h"

int h_health(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	     struct cv_errmsg *err)
{
	struct cv_vault_health h;
	int ok;

	(void)req; /* no query: the dispatch checked */
	(void)err;
	ok = cv_vault_health_get(&app->vault, &h) == 0;
	/* keys: what the start-up check found (a restored database against its token): counts
	 * only, for anyone; GET /v1/health/keys names them to a caller with a token. */
	/* token.state "unavailable" while the token is gone (error says what failed); metadata
	 * reads keep working meanwhile, writes that need the token answer 503. */
	return res_json(res, ok ? 200 : 503,
			json_pack("{s:s, s:s, s:s, s:{s:b}, s:{s:s, s:b, s:b, s:s, s:s, s:s, s:s, s:I,"
				  " s:s*}, s:{s:I, s:I, s:b}}",
				  "status", ok ? "ok" : "degraded", "node", app->cfg->node_name,
				  "store", app->store != NULL ? cv_store_kind(app->store) : "sqlite",
				  "database", "ok",
				  h.database_ok, "token", "state",
				  h.token.reachable ? "ok" : "unavailable", "reachable",
				  h.token.reachable, "logged_in", h.token.logged_in, "label",
				  h.token.label, "manufacturer", h.token.manufacturer, "model",
				  h.token.model, "serial", h.token.serial, "keys",
				  (json_int_t)h.token.keys, "error",
				  h.token.reachable ? NULL : h.token.error, "keys", "missing",
				  (json_int_t)app->vault.keys_missing_at_start, "orphaned",
				  (json_int_t)atomic_load(&app->vault.orphan_keys_at_start),
				  "orphans_checked", atomic_load(&app->vault.orphans_checked)));
}

struct missing_list {
	json_t *items;
	size_t n;
};

static int missing_one(const struct cv_store_key_ref *ref, void *arg)
{
	struct missing_list *l = arg;
	char hex[2 * CV_TOKEN_ID_LEN + 1];

	/* The first thousand: enough to act on; the count says how many there are. */
	if (l->n++ >= 1000)
		return 0;
	cv_hex_encode(ref->id, CV_TOKEN_ID_LEN, hex);
	return json_array_append_new(l->items, json_pack("{s:o, s:I, s:b, s:s}", "certificate",
							 cv_text_json(ref->name), "version",
							 (json_int_t)ref->version, "current",
							 strcmp(ref->row, "current") == 0,
							 "key_id", hex)) < 0 ? CV_ERR_NOMEM : 0;
}

/* GET /v1/health/keys: the check of the database against the token, made now: every
 * certificate (and kept older version) whose key the token lacks. */
int h_health_keys(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		  struct cv_errmsg *err)
{
	struct missing_list l = { json_array(), 0 };
	struct cv_key_check kc;
	int r;

	(void)req;
	if (l.items == NULL)
		return CV_ERR_NOMEM;
	r = cv_vault_keys_check(&app->vault, missing_one, &l, &kc, err);
	if (r < 0) {
		json_decref(l.items);
		return r;
	}
	return res_json(res, 200, json_pack("{s:I, s:I, s:I, s:o, s:I}", "needed",
					    (json_int_t)kc.needed, "missing",
					    (json_int_t)kc.missing, "missing_current",
					    (json_int_t)kc.missing_current, "items", l.items,
					    "orphaned_at_start",
					    (json_int_t)atomic_load(&app->vault.orphan_keys_at_start)));
}
