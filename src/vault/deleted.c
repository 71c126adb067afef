/* Deleted certificates (issue 18 part 2): the delete that puts a certificate aside for a
 * retention period, its recover, its purge (by an admin, or by the background purge once the
 * retention ended). Nothing is destroyed before the purge; the purge destroys in the order a
 * delete at once does, so its crash safety is the delete's. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certvault/fault.h"
#include "certvault/text.h"
#include "internal.h"

#define DAY_SECONDS 86400
/* The background purge takes at most this many a round; more wait for the next. */
#define SWEEP_BATCH 64

struct vault_purger {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int stop;
	int64_t every;
	cv_vault_purge_report_fn *report;
};

int64_t vault_retention(const struct cv_vault *v)
{
	/* The config refuses the seconds outside fault-injection builds; checked again here so
	 * that no other caller can shorten a release's retention. */
	if (v->test_retention_seconds > 0 && cv_fault_compiled_in())
		return v->test_retention_seconds;
	return v->deleted_retention_days * DAY_SECONDS;
}

static void time_text(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%lld", (long long)t);
}

int vault_name_taken(struct cv_vault *v, const char *name, struct cv_errmsg *err)
{
	struct cv_cert_record *deleted = NULL;
	char until[32];

	if (cv_store_deleted_get(v->store, name, &deleted) != 0)
		return cv_errmsg_set(err, CV_ERR_NAME_TAKEN, "a certificate named %s already exists",
				     name);
	time_text(deleted->purge_after, until, sizeof(until));
	cv_errmsg_set(err, CV_ERR_NAME_TAKEN,
		      "the deleted certificate %s holds this name until it is purged (%s): recover it"
		      " (POST /v1/deleted-certificates/%s/recover) or purge it (DELETE"
		      " /v1/deleted-certificates/%s?confirm=purge)",
		      deleted->name, until, deleted->name, deleted->name);
	cv_store_cert_free(deleted);
	return CV_ERR_NAME_TAKEN;
}

int cv_vault_deleted_hint(struct cv_vault *v, const char *name, struct cv_errmsg *err)
{
	struct cv_cert_record *deleted = NULL;

	if (cv_store_deleted_get(v->store, name, &deleted) != 0)
		return CV_ERR_NOT_FOUND;
	cv_errmsg_set(err, CV_ERR_NOT_FOUND, "certificate %s is deleted: GET "
		      "/v1/deleted-certificates lists it, POST /v1/deleted-certificates/%s/recover"
		      " brings it back", deleted->name, deleted->name);
	cv_store_cert_free(deleted);
	return CV_ERR_NOT_FOUND;
}

int vault_delete_soft(struct cv_vault *v, struct cv_audit *audit, const struct cv_cert_record *rec,
		      const struct cv_jwk_choice *jwk, int64_t *ret_purge_after,
		      struct cv_errmsg *err)
{
	struct cv_conflict conflict = { "", "", 0, 0 };
	int64_t now = audit != NULL ? audit->entry.at : (int64_t)time(NULL), until;
	char when[32];
	int r;

	if (__builtin_add_overflow(now, vault_retention(v), &until))
		until = INT64_MAX;
	time_text(until, when, sizeof(when));
	vault_audit_changes(audit, json_pack("{s:s, s:s, s:s}", "state", "deleted", "purge_after",
					     when, "jwk_action",
					     jwk->action == CV_JWK_ACTION_DELETE ? "delete" :
					     jwk->action == CV_JWK_ACTION_DISCONNECT ? "disconnect" :
					     "none"));
	r = cv_store_cert_delete_soft(v->store, rec->id, jwk->action, now, until, &conflict,
				      vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_IN_USE)
		return cv_errmsg_set(err, r, "certificate %s is used by %s: unbind it first",
				     rec->name, conflict.detail);
	if (r == CV_ERR_JWK_CHOICE_REQUIRED)
		return cv_errmsg_set(err, r,
				     "JWKs are linked to %s (%s): say jwk_action=delete or "
				     "disconnect, with confirm=%s",
				     rec->name, conflict.detail, rec->name);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no certificate named %s", rec->name);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the deletion");
	if (ret_purge_after != NULL)
		*ret_purge_after = until;
	return 0;
}

int cv_vault_deleted_list(struct cv_vault *v, const char *cursor, unsigned limit,
			  struct cv_cert_page **ret_page, struct cv_errmsg *err)
{
	int r = cv_store_deleted_list(v->store, cursor, limit, ret_page);

	if (r == CV_ERR_BAD_REQUEST)
		return cv_errmsg_set(err, r, "limit must be from 1 to 1000");
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

/* A deleted certificate by name, with the messages every use case gives. */
static int deleted_lookup(struct cv_vault *v, const char *name, struct cv_cert_record **ret,
			  struct cv_errmsg *err)
{
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	r = cv_store_deleted_get(v->store, name, ret);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no deleted certificate named %s", name);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

static void describe_recover(const struct cv_jwk_relink *jwks, size_t n,
			     struct cv_audit_entry *entry, void *arg)
{
	json_t *relinked = json_array(), *lost = json_array();
	size_t i;

	(void)arg;
	for (i = 0; i < n; i++)
		json_array_append_new(jwks[i].relinked ? relinked : lost,
				      json_string(jwks[i].kid));
	vault_audit_entry_changes(entry, json_pack("{s:s, s:o, s:o}", "state", "active",
						   "jwks_relinked", relinked,
						   "jwks_not_relinked", lost));
}

int cv_vault_deleted_recover(struct cv_vault *v, struct cv_audit *audit, const char *name,
			     char ret_name[65], struct cv_jwk_relink **ret_jwks, size_t *ret_n,
			     struct cv_errmsg *err)
{
	struct cv_cert_record *rec = NULL;
	int r;

	r = deleted_lookup(v, name, &rec, err);
	if (r < 0)
		goto out;
	cv_audit_fingerprint(audit, rec->sha256_fingerprint);
	r = cv_store_cert_recover(v->store, rec->id, ret_jwks, ret_n, vault_audit_done(audit),
				  describe_recover, NULL);
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND) {
		/* Purged or recovered by someone else since it was read. */
		cv_errmsg_set(err, r, "no deleted certificate named %s", name);
		goto out;
	}
	if (r < 0) {
		vault_write_errmsg(err, r, "the database refused the recover");
		goto out;
	}
	snprintf(ret_name, 65, "%s", rec->name);
out:
	cv_store_cert_free(rec);
	return r;
}

/* The purge of rec, a deleted certificate, once allowed: the record first (the point of no
 * return), then the keys, then the row. */
static int purge(struct cv_vault *v, struct cv_audit *audit, const struct cv_cert_record *rec,
		 struct cv_errmsg *err)
{
	int r;

	/* The keys are destroyed below: a token already gone refuses before anything changes
	 * (a public certificate has none). */
	r = !rec->is_public ? cv_token_check(v->token, err) : 0;
	if (r < 0)
		return r;
	r = cv_store_cert_purge_mark(v->store, rec->id, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no deleted certificate named %s", rec->name);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the purge");
	cv_fault_point("purge.after_mark");
	r = vault_destroy_all_keys(v, rec, err);
	if (r < 0 && cv_token_key_exists(v->token, rec->key_id, sizeof(rec->key_id))) {
		/* The current key is still there: the certificate stays deleted (and
		 * recoverable), and the trail says so after the purge's record (the caller
		 * writes the refusal). */
		cv_store_cert_purge_unmark(v->store, rec->id);
		if (audit != NULL)
			audit->written = 0;
		return r;
	}
	if (r < 0)
		return r; /* the key is gone, not durably: the next start finishes the purge */
	cv_fault_point("purge.before_remove");
	r = cv_store_cert_remove(v->store, rec->id);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the purge");
	return 0;
}

int cv_vault_deleted_purge(struct cv_vault *v, struct cv_audit *audit, const char *name,
			   const char *confirm, int64_t now, struct cv_errmsg *err)
{
	struct cv_cert_record *rec = NULL;
	char until[32];
	int r;

	if (confirm == NULL || strcmp(confirm, "purge") != 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIRM_REQUIRED,
				  "purging destroys the keys for good: confirm=purge");
		goto out;
	}
	r = deleted_lookup(v, name, &rec, err);
	if (r < 0)
		goto out;
	cv_audit_fingerprint(audit, rec->sha256_fingerprint);
	if (v->purge_protection && now < rec->purge_after) {
		time_text(rec->purge_after, until, sizeof(until));
		r = cv_errmsg_set(err, CV_ERR_PURGE_PROTECTED,
				  "purge protection is on (lifecycle.purge_protection): %s can be "
				  "purged from %s, when its retention ends",
				  rec->name, until);
		goto out;
	}
	r = purge(v, audit, rec, err);
out:
	cv_store_cert_free(rec);
	return r;
}

int cv_vault_deleted_sweep(struct cv_vault *v, int64_t now, unsigned *ret_n,
			   struct cv_errmsg *err)
{
	struct cv_actor self = { "", "certvaultd", CV_ROLE_ADMIN, 0 };
	struct cv_cert_record *rec;
	struct cv_audit audit;
	char **names = NULL;
	size_t n = 0, i;
	int r, first = 0;

	*ret_n = 0;
	r = cv_store_deleted_due(v->store, now, SWEEP_BATCH, &names, &n);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	for (i = 0; i < n; i++) {
		struct cv_errmsg why = { "" };

		rec = NULL;
		/* Recovered or purged by a request meanwhile: nothing to do. */
		if (cv_store_deleted_get(v->store, names[i], &rec) != 0)
			continue;
		cv_audit_begin(&audit, &self, "certificate.purge", rec->name, "", now);
		cv_audit_fingerprint(&audit, rec->sha256_fingerprint);
		vault_audit_changes(&audit, json_pack("{s:s}", "reason", "retention ended"));
		r = rec->purge_after <= now ? purge(v, &audit, rec, &why) : 0;
		if (r == 0 && rec->purge_after <= now)
			(*ret_n)++;
		if (r < 0 && r != CV_ERR_NOT_FOUND && first == 0) {
			first = r;
			cv_errmsg_set(err, r, "%s: %s", rec->name,
				      why.text[0] ? why.text : cv_strerror(r));
		}
		cv_store_cert_free(rec);
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return first;
}

static void *purger_main(void *arg)
{
	struct cv_vault *v = arg;
	struct vault_purger *p = v->purger;
	struct timespec until;
	unsigned n;
	int r;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		struct cv_errmsg err = { "" };

		pthread_mutex_unlock(&p->lock);
		n = 0;
		r = cv_vault_deleted_sweep(v, (int64_t)time(NULL), &n, &err);
		/* The daemon logs what happened: modules do not log. */
		if ((n > 0 || r < 0) && p->report != NULL)
			p->report(n, r, err.text[0] ? err.text : cv_strerror(r));
		pthread_mutex_lock(&p->lock);
		if (p->stop)
			break;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)p->every;
		while (!p->stop && pthread_cond_timedwait(&p->wake, &p->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int cv_vault_purger_start(struct cv_vault *v, int64_t every_seconds,
			  cv_vault_purge_report_fn *report, struct cv_errmsg *err)
{
	struct vault_purger *p;

	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
	p->every = every_seconds > 0 ? every_seconds : 300;
	p->report = report;
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start the background purge");
	}
	if (pthread_cond_init(&p->wake, NULL) != 0) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start the background purge");
	}
	v->purger = p;
	if (pthread_create(&p->thread, NULL, purger_main, v) != 0) {
		v->purger = NULL;
		pthread_cond_destroy(&p->wake);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start the background purge");
	}
	return 0;
}

void cv_vault_purger_stop(struct cv_vault *v)
{
	struct vault_purger *p = v->purger;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	v->purger = NULL;
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
