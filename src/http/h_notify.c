/* Handlers: notification channels, a certificate's notification rules and the delivery log
 * (issue 18 part 1). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "certvault/notify.h"
#include "certvault/util.h"
#include "handlers.h"

/* A channel as the API shows it: never its secret (only whether it has one), nor its SMTP
 * password (only the file's name). */
static json_t *channel_json(const struct cv_notify_channel *ch)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s?}", "id", ch->id, "name",
			      ch->name, "kind", ch->kind, "url", cv_text_json(ch->url), "events",
			      json_loads(ch->events, 0, NULL), "created_at",
			      time_json(ch->created_at), "created_by",
			      ch->created_by[0] ? ch->created_by : NULL);

	if (o == NULL)
		return NULL;
	if (strcmp(ch->kind, "webhook") == 0) {
		if (json_object_set_new(o, "has_secret", json_boolean(ch->sealed_len > 0)) < 0)
			goto fail;
	} else if (json_object_set_new(o, "from", json_string(ch->mail_from)) < 0 ||
		   json_object_set_new(o, "to", json_loads(ch->mail_to, 0, NULL)) < 0 ||
		   json_object_set_new(o, "username", string_or_null(ch->username)) < 0 ||
		   json_object_set_new(o, "password_file", string_or_null(ch->password_file)) <
			   0) {
		goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

/* An array member of strings (each at most max_len bytes, text), pointers into obj. */
static int strings_member(json_t *obj, const char *key, size_t max, size_t max_len,
			  const char **ret, size_t *ret_n, struct cv_errmsg *err)
{
	json_t *list = json_object_get(obj, key), *item;
	size_t i;

	*ret_n = 0;
	if (list == NULL || json_is_null(list))
		return 0;
	if (!json_is_array(list) || json_array_size(list) > max)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" must be an array of at most "
				     "%zu strings", key, max);
	json_array_foreach(list, i, item) {
		if (!json_is_string(item) || json_string_length(item) > max_len ||
		    strlen(json_string_value(item)) != json_string_length(item))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"%s\" entry %zu must be a "
					     "string of at most %zu bytes", key, i + 1, max_len);
		ret[i] = json_string_value(item);
	}
	*ret_n = json_array_size(list);
	return 0;
}

int h_notify_channel_create(struct cv_app *app, const struct cv_request *req,
			    struct cv_response *res, struct cv_errmsg *err)
{
	static const char *const allowed[] = { "name", "kind", "url", "secret", "events", "from",
					       "to", "username", "password_file", NULL };
	const char *events[16], *to[CV_NOTIFY_RECIPIENTS_MAX + 1];
	struct cv_notify_channel_request in;
	struct cv_notify_channel ch;
	char secret[CV_NOTIFY_SECRET_MAX + 1] = "";
	json_t *body = NULL, *out = NULL;
	int r;

	memset(&in, 0, sizeof(in));
	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = json_string_member(body, "name", 1, CV_NAME_MAX * 4, &in.name, NULL, err);
	if (r == 0)
		r = json_string_member(body, "kind", 1, 16, &in.kind, NULL, err);
	if (r == 0)
		r = json_string_member(body, "url", 1, CV_NOTIFY_URL_MAX, &in.url, NULL, err);
	if (r == 0)
		r = json_material_member(body, "secret", 0, CV_NOTIFY_SECRET_MAX, &in.secret, NULL,
					 err);
	if (r == 0)
		r = strings_member(body, "events", 16, 40, events, &in.n_events, err);
	if (r == 0)
		r = json_string_member(body, "from", 0, 254, &in.mail_from, NULL, err);
	if (r == 0)
		r = strings_member(body, "to", CV_NOTIFY_RECIPIENTS_MAX + 1, 254, to, &in.n_to,
				   err);
	if (r == 0)
		r = json_string_member(body, "username", 0, 255, &in.username, NULL, err);
	if (r == 0)
		r = json_string_member(body, "password_file", 0, 255, &in.password_file, NULL,
				       err);
	if (r < 0)
		goto out;
	if (json_object_get(body, "events") != NULL && in.n_events == 0 &&
	    !json_is_null(json_object_get(body, "events"))) {
		r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"events\" names at least one event "
				  "(leave it out for every event)");
		goto out;
	}
	in.events = in.n_events > 0 ? events : NULL;
	in.to = to;
	in.password_dir = app->cfg->notify_password_dir;
	r = cv_vault_notify_channel_create(&app->vault, req->audit, &in, req->now, &ch, secret,
					   err);
	if (r < 0)
		goto out;
	out = channel_json(&ch);
	/* A secret certvault made is shown this once (jansson wipes what it frees). */
	if (out != NULL && secret[0] != '\0' &&
	    json_object_set_new(out, "secret", json_string(secret)) < 0) {
		json_decref(out);
		out = NULL;
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	r = res_json(res, 201, out);
out:
	json_decref(body);
	return r;
}

int h_notify_channel_list(struct cv_app *app, const struct cv_request *req,
			  struct cv_response *res, struct cv_errmsg *err)
{
	struct cv_notify_channel *all = NULL;
	json_t *items;
	size_t n = 0, i;
	int r;

	(void)req;
	r = cv_vault_notify_channel_list(&app->vault, &all, &n, err);
	if (r < 0)
		return r;
	items = json_array();
	for (i = 0; items != NULL && i < n; i++)
		if (json_array_append_new(items, channel_json(&all[i])) < 0) {
			json_decref(items);
			items = NULL;
		}
	free(all);
	return res_json(res, 200, items != NULL ? json_pack("{s:o}", "items", items) : NULL);
}

int h_notify_channel_get(struct cv_app *app, const struct cv_request *req,
			 struct cv_response *res, struct cv_errmsg *err)
{
	struct cv_notify_channel ch;
	int r;

	r = cv_vault_notify_channel_get(&app->vault, req->params[0], &ch, err);
	if (r < 0)
		return r;
	return res_json(res, 200, channel_json(&ch));
}

int h_notify_channel_delete(struct cv_app *app, const struct cv_request *req,
			    struct cv_response *res, struct cv_errmsg *err)
{
	int r;

	r = cv_vault_notify_channel_delete(&app->vault, req->audit, req->params[0], err);
	if (r < 0)
		return r;
	res->status = 204;
	return 0;
}

int h_cert_notify_get(struct cv_app *app, const struct cv_request *req,
		      struct cv_response *res, struct cv_errmsg *err)
{
	json_t *out = NULL;
	int r;

	r = cv_vault_cert_notify_get(&app->vault, req->params[0], &out, err);
	if (r < 0)
		return r;
	return res_json(res, 200, out);
}

int h_cert_notify_put(struct cv_app *app, const struct cv_request *req,
		      struct cv_response *res, struct cv_errmsg *err)
{
	static const char *const allowed[] = { "thresholds", "contacts", NULL };
	int64_t thresholds[CV_NOTIFY_THRESHOLDS_MAX];
	const char *contacts[CV_NOTIFY_CONTACTS_MAX + 1];
	json_t *body = NULL, *thr, *item, *out = NULL;
	size_t n_contacts = 0, i;
	int n_thr = -1, r;

	r = req_json_object(req, allowed, &body, err);
	if (r == 0)
		r = strings_member(body, "contacts", CV_NOTIFY_CONTACTS_MAX + 1, 254, contacts,
				   &n_contacts, err);
	if (r < 0)
		goto out;
	thr = json_object_get(body, "thresholds");
	if (thr != NULL && !json_is_null(thr)) {
		if (!json_is_array(thr) || json_array_size(thr) > CV_NOTIFY_THRESHOLDS_MAX) {
			r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"thresholds\" must be an array "
					  "of at most %d numbers of days (null: the default)",
					  CV_NOTIFY_THRESHOLDS_MAX);
			goto out;
		}
		json_array_foreach(thr, i, item) {
			if (!json_is_integer(item)) {
				r = cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"thresholds\" entry %zu "
						  "must be a whole number of days", i + 1);
				goto out;
			}
			thresholds[i] = json_integer_value(item);
		}
		n_thr = (int)json_array_size(thr);
	}
	r = cv_vault_cert_notify_set(&app->vault, req->audit, req->params[0], thresholds, n_thr,
				     contacts, n_contacts, err);
	if (r == 0)
		r = cv_vault_cert_notify_get(&app->vault, req->params[0], &out, err);
	if (r == 0)
		r = res_json(res, 200, out);
out:
	json_decref(body);
	return r;
}

static const char *const state_names[] = { "pending", "delivered", "failed" };

static json_t *delivery_json(struct cv_app *app, const struct cv_notify_delivery *d)
{
	struct cv_notify_attempt *att = NULL;
	size_t n = 0, i;
	json_t *attempts = json_array(), *o;

	if (cv_vault_notify_attempts(&app->vault, d->id, &att, &n) < 0)
		n = 0;
	for (i = 0; attempts != NULL && i < n; i++)
		if (json_array_append_new(attempts, json_pack(
			"{s:I, s:o, s:o, s:s, s:o}", "n", (json_int_t)att[i].n, "started_at",
			time_json(att[i].started_at), "finished_at",
			att[i].finished_at ? time_json(att[i].finished_at) : json_null(),
			"outcome", att[i].outcome, "detail", cv_text_json(att[i].detail))) < 0) {
			json_decref(attempts);
			attempts = NULL;
		}
	free(att);
	o = json_pack("{s:s, s:{s:s, s:o}, s:s, s:o, s:o, s:o, s:s, s:I, s:o, s:o, s:o, s:o, s:o}",
		      "delivery_id", d->delivery_id, "channel", "id", d->channel_id, "name",
		      string_or_null(d->channel_name), "event", d->event, "certificate",
		      string_or_null(d->certificate), "version",
		      d->cert_version > 0 ? json_integer(d->cert_version) : json_null(),
		      "threshold_days", d->threshold >= 0 ? json_integer(d->threshold) : json_null(),
		      "state", state_names[d->state <= CV_DELIVERY_FAILED ? d->state : 2],
		      "attempt_count", (json_int_t)d->attempts, "created_at",
		      time_json(d->created_at), "next_attempt_at",
		      d->state == CV_DELIVERY_PENDING ? time_json(d->next_attempt_at) : json_null(),
		      "delivered_at", d->delivered_at ? time_json(d->delivered_at) : json_null(),
		      "last_error", d->last_error[0] ? cv_text_json(d->last_error) : json_null(),
		      "attempts",
		      attempts != NULL ? attempts : json_array());
	if (o != NULL) {
		json_t *payload = json_loads(d->payload, 0, NULL);

		if (payload != NULL)
			json_object_set_new(payload, "id", json_string(d->delivery_id));
		json_object_set_new(o, "payload", payload != NULL ? payload : json_null());
	}
	return o;
}

int h_notify_deliveries(struct cv_app *app, const struct cv_request *req,
			struct cv_response *res, struct cv_errmsg *err)
{
	struct cv_notify_filter f = { 0 };
	struct cv_notify_delivery *all = NULL;
	const char *s;
	json_t *items, *out;
	size_t n = 0, i;
	int r;

	f.state = -1;
	f.limit = 50;
	if ((s = req_query(req, "limit")) != NULL && cv_parse_int64(s, 1, 500, &f.limit) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "limit must be from 1 to 500");
	if ((s = req_query(req, "cursor")) != NULL &&
	    cv_parse_int64(s, 1, INT64_MAX, &f.before) < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "cursor must be a next_cursor this API returned");
	if ((s = req_query(req, "state")) != NULL) {
		for (i = 0; i < 3; i++)
			if (strcmp(s, state_names[i]) == 0)
				f.state = (int)i;
		if (f.state < 0)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "state must be pending, "
					     "delivered or failed");
	}
	f.channel = req_query(req, "channel");
	f.certificate = req_query(req, "certificate");
	f.event = req_query(req, "event");
	r = cv_vault_notify_deliveries(&app->vault, &f, &all, &n, err);
	if (r < 0)
		return r;
	items = json_array();
	for (i = 0; items != NULL && i < n; i++)
		if (json_array_append_new(items, delivery_json(app, &all[i])) < 0) {
			json_decref(items);
			items = NULL;
		}
	out = items != NULL ? json_pack("{s:o, s:I}", "items", items, "limit",
					(json_int_t)f.limit) : NULL;
	if (out != NULL) {
		char cursor[24];

		snprintf(cursor, sizeof(cursor), "%lld", n > 0 ? (long long)all[n - 1].id : 0LL);
		json_object_set_new(out, "next_cursor", n == (size_t)f.limit ? json_string(cursor) :
							json_null());
	}
	cv_notify_deliveries_free(all, n);
	return res_json(res, 200, out);
}
