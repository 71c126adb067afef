/* config: certvaultd's settings — one INI file (read with inih), every key overridable from
 * the environment as CERTVAULT_<SECTION>_<KEY>, built-in defaults for the rest. */
#ifndef CERTVAULT_CONFIG_H
#define CERTVAULT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "certvault/error.h"

struct cv_config {
	char *listen;              /* server.listen: IPv4 or IPv6 address to bind */
	int64_t port;              /* server.port */
	int64_t threads;           /* server.threads: HTTP worker threads */
	int64_t max_connections;   /* server.max_connections */
	int64_t max_connections_per_ip;
	int64_t connection_timeout;/* server.connection_timeout, seconds of idleness */
	int64_t max_body;          /* server.max_body, bytes of a request body */
	int64_t header_timeout;    /* server.header_timeout: seconds for a request's headers */
	int64_t body_timeout;      /* server.body_timeout: seconds for its body, after them */
	int64_t max_pending;       /* server.max_pending: connections still waiting for their
				      request, at most */
	int64_t max_pending_per_ip;/* server.max_pending_per_ip: the same from one address */
	int64_t slow_threads;      /* server.slow_threads: threads for slow requests */
	int64_t slow_queue;        /* server.slow_queue: slow requests waiting, at most */
	char *tls_certificate;     /* server.tls_certificate: the vault's certificate HTTPS serves;
				      "" means no HTTPS listener */
	char *tls_listen;          /* server.tls_listen: "" means server.listen */
	int64_t tls_port;          /* server.tls_port */
	char *node_name;           /* server.node_name: this process's name in health (and, with
				    * several nodes, in what they share); "" at load: the host name */
	int64_t node_lease_seconds; /* server.node_lease_seconds: a node silent this long is gone */
	char *db_path;             /* database.path */
	int db_path_set;           /* database.path came from the file or the environment */
	char *db_url;              /* database.url: PostgreSQL's conninfo ("": SQLite) */
	char *db_password_file;    /* database.password_file: PostgreSQL's password */
	char *token_module;        /* token.module: the PKCS#11 module to dlopen */
	char *token_label;         /* token.label */
	char *token_pin_file;      /* token.pin_file: file whose first line is the user PIN */
	char *token_so_pin_file;   /* token.so_pin_file: the SO PIN, for --init-token only */
	int64_t token_sessions;    /* token.sessions: PKCS#11 sessions kept open */
	char *token_sync_dir;      /* token.sync_dir: "auto", "none" or the module's storage
				      directory, made durable after each key create or destroy */
	char *token_serialize_creates; /* token.serialize_creates: "auto", "on" or "off" */
	int token_destroy_orphan_keys; /* token.destroy_orphan_keys: destroy, at start, key
					  objects with certvault's marker that no row names */
	int64_t expires_soon_days; /* policy.expires_soon_days */
	int allow_weak_signatures; /* policy.allow_weak_signatures */
	int destroy_superseded_keys; /* policy.destroy_superseded_keys */
	int64_t jwks_superseded_retention; /* jwks.superseded_retention: seconds */
	int64_t pending_expiry_seconds; /* policy.pending_expiry_seconds */
	int64_t pending_sweep_seconds;  /* policy.pending_sweep_seconds */
	char *admin_token_file;    /* auth.admin_token_file: where the first admin token goes;
				      "" means admin.token beside the database */
	int metrics_public;        /* auth.metrics_public: GET /metrics without a token */
	int64_t token_unused_days; /* auth.token_unused_days: flag tokens unused this long */
	int revocation_online;     /* revocation.online: ask OCSP responders and CRL URLs */
	int64_t revocation_timeout_ms; /* revocation.timeout_ms: each online fetch */
	char *revocation_unknown;  /* revocation.unknown: "refuse" or "warn" */
	char *revocation_allow_networks; /* revocation.allow_networks: CIDR list (net policy) */
	char *revocation_allow_ports;    /* revocation.allow_ports: ports beyond 80, 443 */
	char *truststore_allow_networks; /* truststore.allow_networks: CIDR list */
	char *truststore_allow_ports;    /* truststore.allow_ports: ports beyond 443, 636 */
	char *audit_key_label;     /* audit.key_label: the HMAC key's CKA_LABEL */
	int64_t audit_repeat_interval; /* audit.repeat_interval, seconds */
	int64_t audit_link_rotate;     /* audit.link_rotate_seconds */
	int64_t audit_sign_interval;   /* audit.sign_interval, seconds */
	int64_t audit_anonymous_per_minute; /* audit.anonymous_refusals_per_minute */
	int64_t audit_anonymous_burst; /* audit.anonymous_refusal_burst */
	int64_t audit_retention_days; /* audit.retention_days: --audit-archive's age */
	int64_t deleted_retention_days; /* lifecycle.deleted_retention_days: 0 deletes at once */
	int purge_protection;      /* lifecycle.purge_protection: no purge before retention ends */
	int64_t purge_sweep_seconds; /* lifecycle.purge_sweep_seconds */
	int64_t test_retention_seconds; /* lifecycle.test_retention_seconds: fault-injection
					   builds only */
	int64_t session_idle_timeout; /* console.session_idle_timeout, seconds without a request */
	int64_t session_lifetime;  /* console.session_lifetime, seconds at most */
	/* Notifications (issue 18 part 1): [notifications] */
	char *notify_thresholds;   /* thresholds: days before expiry, "30,14,7,1,0" */
	int64_t notify_scan_seconds;   /* scan_seconds: the expiry scan's interval */
	int64_t notify_retry_base_seconds;
	int64_t notify_retry_max_seconds;
	int64_t notify_max_attempts;
	int64_t notify_timeout_ms;
	int64_t notify_lease_seconds;
	int64_t notify_delivery_log_days; /* delivery_log_days: 0 keeps the log for ever */
	char *notify_password_dir; /* password_dir: where SMTP password files are */
	char *notify_allow_networks;
	char *notify_allow_ports;
};

/* Loads defaults, then the file at path (NULL: none), then the environment. Returns 0, or
 * CV_ERR_CONFIG with err naming the file, line or variable and what is wrong. On failure
 * the config holds nothing to release. */
int cv_config_load(const char *path, struct cv_config *ret_cfg, struct cv_errmsg *err);
/* Frees the strings of a loaded config. */
void cv_config_release(struct cv_config *cfg);

/* Writes every setting — section.key, its environment variable, default and meaning — to f. */
void cv_config_describe(FILE *f);
/* Writes a sample INI file: every setting commented out with its help, its environment
 * variable and its default, grouped by section; db_path (may be NULL) is set uncommented as
 * database.path (a package's state directory). */
void cv_config_sample(FILE *f, const char *db_path);

/* Reads the user PIN: the environment variable CERTVAULT_TOKEN_PIN if set (which is then
 * overwritten in place and unset: cv_secret_env_take), else the first line of
 * token.pin_file, which must not be readable by group or others. Returns 0 and a
 * buffer the caller releases with OPENSSL_clear_free(pin, len + 1), or CV_ERR_CONFIG. */
int cv_config_pin_read(const struct cv_config *cfg, char **ret_pin, size_t *ret_len,
		       struct cv_errmsg *err);

/* Reads PostgreSQL's password from database.password_file (the same checks as the PIN's
 * file) when database.url and that file are set; else *ret_password is NULL (libpq's own
 * means). Release with OPENSSL_clear_free(password, len + 1). 0 or CV_ERR_CONFIG. */
int cv_config_db_password_read(const struct cv_config *cfg, char **ret_password,
			       size_t *ret_len, struct cv_errmsg *err);

/* Reads the SO PIN the same way: CERTVAULT_TOKEN_SO_PIN, else token.so_pin_file. */
int cv_config_so_pin_read(const struct cv_config *cfg, char **ret_pin, size_t *ret_len,
			  struct cv_errmsg *err);

#endif
