/* notify (vault layer, src/vault/notify.c): expiry and lifecycle notifications (issue 18
 * part 1). Channels (webhook, email) are resources an admin makes; messages are outbox rows
 * written with the change they tell of, or by the expiry scan; one thread per process (the
 * notifier) scans and sends while its node holds the lease in the database, never on the
 * HTTP threads. */
#ifndef CERTVAULT_NOTIFY_H
#define CERTVAULT_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "certvault/net.h"
#include "certvault/store.h"
#include "certvault/vault.h"

/* The events a channel may take. */
extern const char *const cv_notify_events[];

#define CV_NOTIFY_THRESHOLDS_MAX 16   /* thresholds in one rule */
#define CV_NOTIFY_THRESHOLD_DAYS_MAX 3650
#define CV_NOTIFY_CONTACTS_MAX 16
#define CV_NOTIFY_RECIPIENTS_MAX 16
#define CV_NOTIFY_SECRET_MIN 16       /* bytes of a webhook secret a client gives */
#define CV_NOTIFY_SECRET_MAX 128
/* The token's secret key that seals webhook secrets (made on first use). */
#define CV_NOTIFY_KEY_LABEL "certvault-notify-seal"

/* Parses a settings list of thresholds ("30,14,7,1,0": days, 0..3650, at most 16, commas
 * or spaces) into a JSON array text (ret of len bytes). 0 or CV_ERR_CONFIG. */
int cv_notify_thresholds_parse(const char *text, char *ret, size_t len, struct cv_errmsg *err);

struct cv_notify_channel_request {
	const char *name;
	const char *kind;            /* "webhook" or "email" */
	const char *url;
	const char *secret;          /* webhook: NULL to have one made (answered once) */
	const char *const *events;   /* NULL with n_events 0: every event */
	size_t n_events;
	const char *mail_from;       /* email */
	const char *const *to;
	size_t n_to;
	const char *username;        /* email: NULL or "" for no login */
	const char *password_file;   /* email with username: a file name in password_dir */
	const char *password_dir;    /* notifications.password_dir */
};

/* Makes a channel: the name rule, the URL checked (webhook: http/https; email: smtp/smtps,
 * a sender and 1-16 recipients), events among cv_notify_events, a webhook's secret given
 * (16-128 bytes) or made ("whsec_" and 32 random bytes in base64) and kept sealed under the
 * token's key, never in clear. *ret_secret (CV_NOTIFY_SECRET_MAX + 1 bytes) gets a secret it
 * made, "" otherwise: the caller shows it once and wipes it. Returns 0, CV_ERR_INVALID_NAME,
 * CV_ERR_BAD_REQUEST, CV_ERR_NAME_TAKEN, CV_ERR_TOKEN_UNAVAILABLE, CV_ERR_TOKEN, CV_ERR_DB. */
int cv_vault_notify_channel_create(struct cv_vault *v, struct cv_audit *audit,
				   const struct cv_notify_channel_request *req, int64_t now,
				   struct cv_notify_channel *ret, char *ret_secret,
				   struct cv_errmsg *err);
int cv_vault_notify_channel_get(struct cv_vault *v, const char *id,
				struct cv_notify_channel *ret, struct cv_errmsg *err);
int cv_vault_notify_channel_list(struct cv_vault *v, struct cv_notify_channel **ret,
				 size_t *ret_n, struct cv_errmsg *err);
int cv_vault_notify_channel_delete(struct cv_vault *v, struct cv_audit *audit, const char *id,
				   struct cv_errmsg *err);

/* A certificate's rules: its thresholds (days; n_thresholds -1: the default) and contacts
 * (email addresses). get answers them as JSON arrays (thresholds null for the default). */
int cv_vault_cert_notify_set(struct cv_vault *v, struct cv_audit *audit, const char *name,
			     const int64_t *thresholds, int n_thresholds,
			     const char *const *contacts, size_t n_contacts, struct cv_errmsg *err);
int cv_vault_cert_notify_get(struct cv_vault *v, const char *name, json_t **ret,
			     struct cv_errmsg *err);

/* The delivery log, newest first (cv_store_notify_deliveries), and a delivery's attempts. */
int cv_vault_notify_deliveries(struct cv_vault *v, const struct cv_notify_filter *f,
			       struct cv_notify_delivery **ret, size_t *ret_n,
			       struct cv_errmsg *err);
int cv_vault_notify_attempts(struct cv_vault *v, int64_t outbox_id,
			     struct cv_notify_attempt **ret, size_t *ret_n);

/* 0 when s is an email address certvault sends to: local@domain, printable ASCII without
 * spaces, angle brackets, commas or quotes, at most 254 bytes. */
int cv_notify_address_check(const char *s);

struct cv_notify_settings {
	char thresholds[128];        /* the default rule, a JSON array (cv_notify_thresholds_parse) */
	int64_t scan_seconds;        /* the expiry scan's interval */
	int64_t retry_base_seconds;  /* the first retry's wait, doubled each time */
	int64_t retry_max_seconds;
	int64_t max_attempts;
	int64_t lease_seconds;
	int64_t delivery_log_days;   /* a delivery that ended stays this long; 0: for ever */
	int timeout_ms;              /* one attempt */
	const char *password_dir;
	char node[65];               /* this node in the lease */
	struct cv_net_policy net;    /* where webhooks and SMTP servers may be reached */
	void (*log)(const char *line); /* certvaultd's log (a line without its end); NULL: none */
};
struct cv_notifier;
/* Starts the notifier thread: it takes the lease, marks attempts a previous run left
 * "sending" as interrupted (due again, same delivery id), scans at once and every
 * scan_seconds, tells of the token going away and coming back, and sends what is due with
 * exponential backoff. Returns 0 or CV_ERR_NOMEM/CV_ERR_INTERNAL. */
int cv_notifier_start(struct cv_vault *v, const struct cv_notify_settings *s,
		      struct cv_notifier **ret, struct cv_errmsg *err);
/* Stops and frees it (NULL: nothing); an attempt under way ends first (its timeout). */
void cv_notifier_stop(struct cv_notifier *n);

#endif
