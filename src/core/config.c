/* certvaultd's settings: defaults, then the INI file, then the environment.
 * One table describes every key, so parsing, overrides and --help cannot disagree. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <openssl/crypto.h>

#include "certvault/config.h"
#include "certvault/fault.h"
#include "certvault/secret.h"
#include "certvault/util.h"

enum kind { K_STR, K_INT, K_BOOL };

struct setting {
	const char *section;
	const char *key;
	enum kind kind;
	size_t offset;
	const char *def;
	int64_t min, max;
	const char *help;
};

#define OFF(f) offsetof(struct cv_config, f)

static const struct setting settings[] = {
	{ "server", "listen", K_STR, OFF(listen), "127.0.0.1", 0, 0,
	  "address to listen on (IPv4 or IPv6)" },
	{ "server", "port", K_INT, OFF(port), "8420", 0, 65535, "TCP port (0: any free port, printed at start)" },
	{ "server", "threads", K_INT, OFF(threads), "4", 1, 256, "HTTP worker threads" },
	{ "server", "max_connections", K_INT, OFF(max_connections), "512", 1, 65536,
	  "open connections at most" },
	{ "server", "max_connections_per_ip", K_INT, OFF(max_connections_per_ip), "64", 1, 65536,
	  "open connections from one address at most" },
	{ "server", "connection_timeout", K_INT, OFF(connection_timeout), "30", 1, 3600,
	  "seconds an idle or slow connection is kept" },
	{ "server", "max_body", K_INT, OFF(max_body), "262144", 1024, 16777216,
	  "largest request body in bytes (larger: 413)" },
	{ "server", "header_timeout", K_INT, OFF(header_timeout), "10", 1, 3600,
	  "seconds a connection has to send a request's headers, from its opening or the end"
	  " of its previous answer, however slowly the bytes come; then it is closed" },
	{ "server", "body_timeout", K_INT, OFF(body_timeout), "60", 1, 86400,
	  "seconds a request has to send its body once its headers are in; then its"
	  " connection is closed" },
	{ "server", "max_pending", K_INT, OFF(max_pending), "256", 1, 65536,
	  "connections whose request is not in yet (headers, body, or an idle keep-alive) at"
	  " most; one more closes the one that has waited longest" },
	{ "server", "max_pending_per_ip", K_INT, OFF(max_pending_per_ip), "16", 1, 65536,
	  "the same from one address (behind a proxy: raise to server.max_pending)" },
	{ "server", "slow_threads", K_INT, OFF(slow_threads), "4", 1, 256,
	  "threads that run slow requests (import, renew, replace, truststore add and export,"
	  " audit verify: key derivation, PKCS#12, network fetches) apart from the HTTP"
	  " threads" },
	{ "server", "slow_queue", K_INT, OFF(slow_queue), "64", 0, 65536,
	  "slow requests waiting for one of those threads at most; more: 503 busy" },
	{ "server", "tls_certificate", K_STR, OFF(tls_certificate), "", 0, 0,
	  "name of a certificate in the vault to serve HTTPS with (its key signs in the token;"
	  " a renewal is served from the next handshake on); empty: no HTTPS listener" },
	{ "server", "tls_listen", K_STR, OFF(tls_listen), "", 0, 0,
	  "address of the HTTPS listener (IPv4 or IPv6); empty: server.listen" },
	{ "server", "tls_port", K_INT, OFF(tls_port), "8443", 0, 65535,
	  "TCP port of the HTTPS listener (0: any free port, printed at start)" },
	{ "server", "node_name", K_STR, OFF(node_name), "", 0, 0,
	  "this certvaultd's name in GET /v1/health (1-63 letters, digits, '.', '_', '-');"
	  " empty: the host name" },
	{ "server", "node_lease_seconds", K_INT, OFF(node_lease_seconds), "30", 3, 3600,
	  "a node whose heartbeat in the database (written every lease / 3 seconds) is older"
	  " than this is taken for gone: another node then undoes the writes it left in flight"
	  " (its pending imports, deletes, renewals, generated keys); a live node's are never"
	  " touched" },
	{ "database", "path", K_STR, OFF(db_path), "certvault.db", 0, 0,
	  "SQLite database file, created on first start" },
	{ "database", "url", K_STR, OFF(db_url), "", 0, 0,
	  "PostgreSQL instead of SQLite, for several nodes sharing one database: a libpq"
	  " connection URI (postgresql://user@host:port/dbname?sslmode=verify-full) or"
	  " key=value string, without a password (database.password_file, or libpq's own"
	  " PGPASSFILE); empty: SQLite at database.path. Both set: refused at start" },
	{ "database", "password_file", K_STR, OFF(db_password_file), "", 0, 0,
	  "file whose first line is the PostgreSQL password (mode 0600, read once at start);"
	  " empty: libpq's own means (PGPASSFILE, ~/.pgpass, a client certificate)" },
	{ "token", "module", K_STR, OFF(token_module), "/usr/lib/softhsm/libsofthsm2.so", 0, 0,
	  "PKCS#11 module" },
	{ "token", "label", K_STR, OFF(token_label), "certvault", 0, 0,
	  "label of the token that holds the keys" },
	{ "token", "pin_file", K_STR, OFF(token_pin_file), "", 0, 0,
	  "file holding the user PIN (mode 0600); CERTVAULT_TOKEN_PIN overrides it; empty:"
	  " $CREDENTIALS_DIRECTORY/token-pin (systemd's LoadCredential=) when there is one" },
	{ "token", "so_pin_file", K_STR, OFF(token_so_pin_file), "", 0, 0,
	  "file holding the SO PIN, read only by --init-token; CERTVAULT_TOKEN_SO_PIN overrides it;"
	  " empty: $CREDENTIALS_DIRECTORY/token-so-pin when there is one" },
	{ "token", "sessions", K_INT, OFF(token_sessions), "8", 1, 256,
	  "PKCS#11 sessions kept open" },
	{ "token", "sync_dir", K_STR, OFF(token_sync_dir), "auto", 0, 0,
	  "the module's storage directory, made durable after every key create or destroy and"
	  " before the database commit that depends on it; auto: SoftHSM's directories.tokendir"
	  " (SOFTHSM2_CONF, else /etc/softhsm/softhsm2.conf) for SoftHSM, nothing for any other"
	  " module; none: nothing (a hardware or network module)" },
	{ "token", "serialize_creates", K_STR, OFF(token_serialize_creates), "auto", 0, 0,
	  "make and destroy keys one at a time: on, off, or auto (on for SoftHSM before 2.7,"
	  " whose file store fails creates that race other creates, destroys or searches;"
	  " off for any other module)" },
	{ "token", "destroy_orphan_keys", K_BOOL, OFF(token_destroy_orphan_keys), "false", 0, 0,
	  "at start, destroy key objects that carry certvault's id marker but that no row"
	  " names (else they are only reported); objects other tools made are never touched" },
	{ "policy", "expires_soon_days", K_INT, OFF(expires_soon_days), "30", 0, 3650,
	  "a certificate this close to its end is \"expires_soon\"" },
	{ "policy", "allow_weak_signatures", K_BOOL, OFF(allow_weak_signatures), "false", 0, 0,
	  "accept certificates signed with MD5 or SHA-1" },
	{ "policy", "destroy_superseded_keys", K_BOOL, OFF(destroy_superseded_keys), "false", 0, 0,
	  "destroy a version's key in the token as soon as a renewal or replace supersedes it"
	  " (else kept until the certificate is deleted)" },
	{ "jwks", "superseded_retention", K_INT, OFF(jwks_superseded_retention), "86400", 0,
	  31536000,
	  "seconds a JWK superseded by a renewal stays in the public JWKS (tokens it signed may"
	  " still be in flight); 0: it leaves at once" },
	{ "policy", "pending_expiry_seconds", K_INT, OFF(pending_expiry_seconds), "2592000", 1,
	  315360000, "a pending certificate (a key generated in the token, its CSR waiting for"
	  " the certificate) older than this is destroyed with its key, audited (30 days)" },
	{ "policy", "pending_sweep_seconds", K_INT, OFF(pending_sweep_seconds), "300", 1, 86400,
	  "how often the background sweep looks for expired pending certificates" },
	{ "auth", "admin_token_file", K_STR, OFF(admin_token_file), "", 0, 0,
	  "where the first start writes the first admin API token (mode 0600); empty: admin.token"
	  " in the database's directory" },
	{ "auth", "metrics_public", K_BOOL, OFF(metrics_public), "false", 0, 0,
	  "serve GET /metrics without a token" },
	{ "auth", "token_unused_days", K_INT, OFF(token_unused_days), "90", 0, 3650,
	  "GET /v1/tokens flags an active token not used for this many days (0: never)" },
	{ "revocation", "online", K_BOOL, OFF(revocation_online), "false", 0, 0,
	  "at import, renew and replace also ask the certificate's OCSP responder and CRL"
	  " distribution point over HTTP (the truststore's CRLs are always used)" },
	{ "revocation", "timeout_ms", K_INT, OFF(revocation_timeout_ms), "5000", 100, 60000,
	  "milliseconds each online revocation fetch may take" },
	{ "revocation", "unknown", K_STR, OFF(revocation_unknown), "refuse", 0, 0,
	  "when a revocation source exists but cannot tell (stale CRL, responder down, bad"
	  " signature): refuse (422 revocation_unknown) or warn (accept, saying so)" },
	{ "revocation", "allow_networks", K_STR, OFF(revocation_allow_networks), "", 0, 0,
	  "networks (CIDR, comma-separated) online revocation fetches may reach, on any port,"
	  " besides public addresses: loopback, private, link-local and other special"
	  " addresses are refused unless named here" },
	{ "revocation", "allow_ports", K_STR, OFF(revocation_allow_ports), "", 0, 0,
	  "ports (comma-separated) online revocation fetches may use on public addresses"
	  " besides 80 and 443" },
	{ "truststore", "allow_networks", K_STR, OFF(truststore_allow_networks), "", 0, 0,
	  "networks (CIDR, comma-separated) a truststore url fetch (or a certificate's url"
	  " import) may reach, on any port, besides public addresses: internal hosts must be"
	  " named here" },
	{ "truststore", "allow_ports", K_STR, OFF(truststore_allow_ports), "", 0, 0,
	  "ports (comma-separated) a truststore url fetch may use on public addresses besides"
	  " 443 and 636" },
	{ "audit", "key_label", K_STR, OFF(audit_key_label), "certvault-audit-hmac", 0, 0,
	  "CKA_LABEL of the token's secret key that keys the audit chain (HMAC-SHA256);"
	  " generated on the first start" },
	{ "audit", "link_rotate_seconds", K_INT, OFF(audit_link_rotate), "3600", 0, 2592000,
	  "seconds after which certvaultd keys its audit records with a new link key, which"
	  " the token's audit key derives; 0: one link key from start to stop" },
	{ "audit", "repeat_interval", K_INT, OFF(audit_repeat_interval), "60", 0, 86400,
	  "seconds in which repeats of a refusal (same address, actor, action and error) are"
	  " counted into one record; 0: a record for each" },
	{ "audit", "sign_interval", K_INT, OFF(audit_sign_interval), "60", 0, 86400,
	  "seconds in which the signatures one API token makes with one key and algorithm are"
	  " counted into one record after the first; 0: a record for each signature" },
	{ "audit", "anonymous_refusals_per_minute", K_INT, OFF(audit_anonymous_per_minute), "60",
	  0, 1000000, "refusals without a valid API token one address (IPv6: one /64) may"
	  " have a minute before it is answered 429 with Retry-After; 0: no limit" },
	{ "audit", "anonymous_refusal_burst", K_INT, OFF(audit_anonymous_burst), "30", 1, 1000000,
	  "refusals without a valid API token one address may have at once, before"
	  " audit.anonymous_refusals_per_minute applies" },
	{ "audit", "retention_days", K_INT, OFF(audit_retention_days), "0", 0, 36500,
	  "certvaultd --audit-archive FILE moves records older than this to FILE; 0: only with"
	  " --older-than-days" },
	{ "lifecycle", "deleted_retention_days", K_INT, OFF(deleted_retention_days), "30", 0, 3650,
	  "days a deleted certificate is kept (hidden, its name reserved, its keys in the token"
	  " but unusable) before it is purged; recoverable until then; 0: a delete destroys at"
	  " once" },
	{ "lifecycle", "purge_protection", K_BOOL, OFF(purge_protection), "false", 0, 0,
	  "refuse to purge a deleted certificate before its retention ends, even for an admin" },
	{ "lifecycle", "purge_sweep_seconds", K_INT, OFF(purge_sweep_seconds), "300", 1, 86400,
	  "how often the background purge looks for deleted certificates past their retention" },
	{ "lifecycle", "test_retention_seconds", K_INT, OFF(test_retention_seconds), "0", 0, 86400,
	  "tests only: a retention in seconds instead of deleted_retention_days; refused unless"
	  " certvaultd was built with CV_FAULT_INJECTION" },
	{ "console", "session_idle_timeout", K_INT, OFF(session_idle_timeout), "1800", 60, 86400,
	  "seconds a console session lasts without a request (kept to within a minute)" },
	{ "console", "session_lifetime", K_INT, OFF(session_lifetime), "43200", 300, 2592000,
	  "seconds a console session lasts at most, however busy" },
	{ "notifications", "thresholds", K_STR, OFF(notify_thresholds), "30,14,7,1,0", 0, 0,
	  "days before a certificate's end at which channels are told (0: it has expired);"
	  " a certificate's own thresholds replace these" },
	{ "notifications", "scan_seconds", K_INT, OFF(notify_scan_seconds), "300", 1, 86400,
	  "how often the expiry scan looks for thresholds crossed (also at every start)" },
	{ "notifications", "retry_base_seconds", K_INT, OFF(notify_retry_base_seconds), "30", 1,
	  86400, "the wait before a failed delivery's first retry, doubled at each retry" },
	{ "notifications", "retry_max_seconds", K_INT, OFF(notify_retry_max_seconds), "3600", 1,
	  604800, "the longest wait between two attempts of a delivery" },
	{ "notifications", "max_attempts", K_INT, OFF(notify_max_attempts), "12", 1, 1000,
	  "attempts of a delivery before it is given up (state failed)" },
	{ "notifications", "timeout_ms", K_INT, OFF(notify_timeout_ms), "10000", 100, 120000,
	  "milliseconds one delivery attempt (webhook POST, SMTP exchange) may take" },
	{ "notifications", "delivery_log_days", K_INT, OFF(notify_delivery_log_days), "90", 0,
	  36500, "days a delivered or failed delivery stays in the log of deliveries (its"
	  " attempts with it), removed by the scan after that; 0: kept for ever" },
	{ "notifications", "lease_seconds", K_INT, OFF(notify_lease_seconds), "30", 2, 3600,
	  "how long the node that sends holds its lease in the database without renewing it"
	  " (another node takes over after it)" },
	{ "notifications", "password_dir", K_STR, OFF(notify_password_dir),
	  "/etc/certvault/notify", 0, 0,
	  "the directory whose files (mode 0600) hold email channels' SMTP passwords; a"
	  " channel names a file in it, never a path elsewhere" },
	{ "notifications", "allow_networks", K_STR, OFF(notify_allow_networks), "", 0, 0,
	  "networks (CIDR, comma-separated) webhooks and SMTP servers may be reached on, on any"
	  " port, besides public addresses: internal receivers must be named here" },
	{ "notifications", "allow_ports", K_STR, OFF(notify_allow_ports), "", 0, 0,
	  "ports (comma-separated) webhooks and SMTP servers may use on public addresses besides"
	  " 80, 443 (webhooks) and 25, 465, 587 (SMTP)" },
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

struct loader {
	struct cv_config *cfg;
	struct cv_errmsg *err;
	const char *origin;
	int r;
};

static void env_name(const struct setting *s, char *buf, size_t len)
{
	size_t i = 0;
	const char *p;

	snprintf(buf, len, "CERTVAULT_%s_%s", s->section, s->key);
	for (p = buf; *p != '\0' && i < len; p++, i++)
		buf[i] = (char)toupper((unsigned char)*p);
}

static int set_value(const struct setting *s, struct cv_config *cfg, const char *value,
		     const char *origin, struct cv_errmsg *err)
{
	char *base = (char *)cfg + s->offset;
	int64_t v;

	switch (s->kind) {
	case K_STR: {
		char *copy = strdup(value);

		if (copy == NULL)
			return CV_ERR_NOMEM;
		free(*(char **)base);
		*(char **)base = copy;
		return 0;
	}
	case K_INT:
		if (cv_parse_int64(value, s->min, s->max, &v) < 0)
			return cv_errmsg_set(err, CV_ERR_CONFIG,
					     "%s: %s.%s must be a whole number from %lld to %lld",
					     origin, s->section, s->key, (long long)s->min,
					     (long long)s->max);
		*(int64_t *)base = v;
		return 0;
	case K_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 ||
		    strcmp(value, "1") == 0)
			*(int *)base = 1;
		else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
			 strcmp(value, "0") == 0)
			*(int *)base = 0;
		else
			return cv_errmsg_set(err, CV_ERR_CONFIG, "%s: %s.%s must be true or false",
					     origin, s->section, s->key);
		return 0;
	}
	return CV_ERR_INTERNAL;
}

static const struct setting *find(const char *section, const char *key)
{
	size_t i;

	for (i = 0; i < N_SETTINGS; i++)
		if (strcmp(settings[i].section, section) == 0 && strcmp(settings[i].key, key) == 0)
			return &settings[i];
	return NULL;
}

static int on_ini(void *user, const char *section, const char *key, const char *value)
{
	struct loader *l = user;
	const struct setting *s = find(section, key);

	if (s == NULL) {
		l->r = cv_errmsg_set(l->err, CV_ERR_CONFIG, "%s: unknown setting [%s] %s",
				     l->origin, section, key);
		return 0;
	}
	l->r = set_value(s, l->cfg, value, l->origin, l->err);
	if (s->offset == OFF(db_path))
		l->cfg->db_path_set = 1;
	return l->r == 0;
}

/* server.node_name, or the host name when it is empty: a short name made of characters that
 * are safe in a log line, a JSON string and a metrics label as they are. */
static int node_name_resolve(struct cv_config *cfg, struct cv_errmsg *err)
{
	char host[256];
	const char *from = "server.node_name";
	size_t i, len;

	if (cfg->node_name[0] == '\0') {
		if (gethostname(host, sizeof(host)) < 0)
			return cv_errmsg_set(err, CV_ERR_CONFIG, "server.node_name is empty and the "
					     "host name cannot be read: %s", strerror(errno));
		host[sizeof(host) - 1] = '\0';
		free(cfg->node_name);
		cfg->node_name = strdup(host);
		if (cfg->node_name == NULL)
			return CV_ERR_NOMEM;
		from = "the host name (server.node_name is empty)";
	}
	len = strlen(cfg->node_name);
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)cfg->node_name[i]) && cfg->node_name[i] != '.' &&
		    cfg->node_name[i] != '_' && cfg->node_name[i] != '-')
			break;
	if (len == 0 || len > 63 || i < len)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "%s must be 1-63 letters, digits, '.', "
				     "'_' or '-'", from);
	return 0;
}

/* A password in database.url would sit in a file that is read by more than the service, and
 * in every copy of the setting: it must come from database.password_file or libpq's own
 * means. The URI's user:password@ and the key=value or query "password" are refused. */
static int url_has_password(const char *url)
{
	const char *p, *at, *end;
	size_t n;

	if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0) {
		p = strstr(url, "://") + 3;
		end = p + strcspn(p, "/?");
		at = memchr(p, '@', (size_t)(end - p));
		if (at != NULL && memchr(p, ':', (size_t)(at - p)) != NULL)
			return 1;
		p = strchr(url, '?');
		while (p != NULL) {
			p++;
			if (strncmp(p, "password=", 9) == 0)
				return 1;
			p = strchr(p, '&');
		}
		return 0;
	}
	/* key = value pairs, separated by white space; a value may be quoted. */
	for (p = url; *p != '\0';) {
		while (isspace((unsigned char)*p))
			p++;
		n = strcspn(p, "= \t\n");
		if (n == 8 && strncmp(p, "password", 8) == 0)
			return 1;
		p += n;
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '=')
			break;
		p++;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\'') {
			for (p++; *p != '\0' && *p != '\''; p++)
				if (*p == '\\' && p[1] != '\0')
					p++;
			if (*p == '\'')
				p++;
		} else {
			while (*p != '\0' && !isspace((unsigned char)*p))
				p++;
		}
	}
	return 0;
}

/* [database]: SQLite at path, or PostgreSQL at url, never both; no password in the url. */
static int database_check(const struct cv_config *cfg, struct cv_errmsg *err)
{
	if (cfg->db_url[0] == '\0') {
		if (cfg->db_password_file[0] != '\0')
			return cv_errmsg_set(err, CV_ERR_CONFIG, "database.password_file is for "
					     "PostgreSQL (database.url), which is not set");
		return 0;
	}
	if (cfg->db_path_set)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "database.path (SQLite) and database.url "
				     "(PostgreSQL) are both set: set one");
	if (url_has_password(cfg->db_url))
		return cv_errmsg_set(err, CV_ERR_CONFIG, "database.url holds a password: put it in "
				     "database.password_file (mode 0600) or libpq's PGPASSFILE");
	return 0;
}

int cv_config_load(const char *path, struct cv_config *ret_cfg, struct cv_errmsg *err)
{
	struct loader l = { ret_cfg, err, path, 0 };
	char name[96];
	size_t i;
	int r = 0, line;

	memset(ret_cfg, 0, sizeof(*ret_cfg));
	for (i = 0; i < N_SETTINGS; i++) {
		r = set_value(&settings[i], ret_cfg, settings[i].def, "default", err);
		if (r < 0)
			goto out;
	}
	if (path != NULL) {
		line = ini_parse(path, on_ini, &l);
		if (line == -1) {
			r = cv_errmsg_set(err, CV_ERR_CONFIG, "%s: cannot open: %s", path,
					  strerror(errno));
			goto out;
		}
		if (l.r < 0) {
			r = l.r;
			goto out;
		}
		if (line != 0) {
			r = cv_errmsg_set(err, CV_ERR_CONFIG, "%s:%d: not a valid INI line", path,
					  line);
			goto out;
		}
	}
	for (i = 0; i < N_SETTINGS; i++) {
		const char *v;

		env_name(&settings[i], name, sizeof(name));
		v = getenv(name);
		if (v == NULL)
			continue;
		r = set_value(&settings[i], ret_cfg, v, name, err);
		if (r < 0)
			goto out;
		if (settings[i].offset == OFF(db_path))
			ret_cfg->db_path_set = 1;
	}
	if (strcmp(ret_cfg->token_serialize_creates, "auto") != 0 &&
	    strcmp(ret_cfg->token_serialize_creates, "on") != 0 &&
	    strcmp(ret_cfg->token_serialize_creates, "off") != 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG,
				  "token.serialize_creates must be auto, on or off");
		goto out;
	}
	if (strcmp(ret_cfg->revocation_unknown, "refuse") != 0 &&
	    strcmp(ret_cfg->revocation_unknown, "warn") != 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "revocation.unknown must be refuse or warn");
		goto out;
	}
	/* A retention of seconds would let a slip destroy keys before anyone noticed: only the
	 * builds the crash tests use (never a release) take it. */
	if (ret_cfg->test_retention_seconds > 0 && !cv_fault_compiled_in()) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "lifecycle.test_retention_seconds is for tests:"
				  " this certvaultd was built without CV_FAULT_INJECTION");
		goto out;
	}
	r = database_check(ret_cfg, err);
	if (r < 0)
		goto out;
	r = node_name_resolve(ret_cfg, err);
out:
	if (r < 0)
		cv_config_release(ret_cfg);
	return r;
}

void cv_config_release(struct cv_config *cfg)
{
	size_t i;

	for (i = 0; i < N_SETTINGS; i++) {
		if (settings[i].kind != K_STR)
			continue;
		char **p = (char **)((char *)cfg + settings[i].offset);

		free(*p);
		*p = NULL;
	}
}

void cv_config_describe(FILE *f)
{
	char name[96];
	size_t i;

	for (i = 0; i < N_SETTINGS; i++) {
		env_name(&settings[i], name, sizeof(name));
		fprintf(f, "  [%s] %-24s %-40s default: %s\n      %s\n", settings[i].section,
			settings[i].key, name, settings[i].def[0] ? settings[i].def : "(none)",
			settings[i].help);
	}
	fprintf(f, "  %-29s %-40s\n      %s\n", "(environment only)", "CERTVAULT_TOKEN_PIN",
		"the user PIN itself, instead of token.pin_file");
	fprintf(f, "  %-29s %-40s\n      %s\n", "(environment only)", "CERTVAULT_TOKEN_SO_PIN",
		"the SO PIN itself, instead of token.so_pin_file (--init-token only)");
}

/* Writes text as comment lines of at most 88 columns: inih reads at most 200 bytes of a
 * line and takes the rest for a line of its own. */
static void comment_wrapped(FILE *f, const char *text)
{
	const char *p = text, *end, *brk;

	while (*p != '\0') {
		end = p + strlen(p);
		if (end - p > 86) {
			for (brk = p + 86; brk > p && *brk != ' '; brk--)
				;
			end = brk > p ? brk : p + 86;
		}
		fprintf(f, "# %.*s\n", (int)(end - p), p);
		p = *end == ' ' ? end + 1 : end;
	}
}

void cv_config_sample(FILE *f, const char *db_path)
{
	const char *sections[N_SETTINGS];
	char name[96];
	size_t n = 0, i, j;

	fprintf(f, "# certvault: certvaultd's configuration (certvaultd -c FILE, or CERTVAULT_CONFIG).\n"
		   "# Written by certvaultd --sample-config: every setting, commented out with its\n"
		   "# default; the environment variable named beside it overrides this file.\n"
		   "# The token's user PIN is never here: token.pin_file, CERTVAULT_TOKEN_PIN, or\n"
		   "# systemd's credential \"token-pin\" ($CREDENTIALS_DIRECTORY/token-pin).\n");
	/* In order of each section's first setting. */
	for (i = 0; i < N_SETTINGS; i++) {
		for (j = 0; j < n && strcmp(sections[j], settings[i].section) != 0; j++)
			;
		if (j == n)
			sections[n++] = settings[i].section;
	}
	for (j = 0; j < n; j++) {
		fprintf(f, "\n[%s]\n", sections[j]);
		for (i = 0; i < N_SETTINGS; i++) {
			if (strcmp(settings[i].section, sections[j]) != 0)
				continue;
			env_name(&settings[i], name, sizeof(name));
			fputc('\n', f);
			comment_wrapped(f, settings[i].help);
			fprintf(f, "# (%s)\n# %s = %s\n", name, settings[i].key, settings[i].def);
			/* The one a package sets: the database in the service's state directory. */
			if (db_path != NULL && strcmp(settings[i].section, "database") == 0 &&
			    strcmp(settings[i].key, "path") == 0)
				fprintf(f, "path = %s\n", db_path);
		}
	}
}

/* Reads at most max bytes of the first line of fd into a fresh buffer. */
static int read_first_line(int fd, char **ret_pin, size_t *ret_len)
{
	const size_t max = 256;
	char *buf = OPENSSL_zalloc(max + 1);
	ssize_t n;
	size_t len = 0;

	if (buf == NULL)
		return CV_ERR_NOMEM;
	while (len < max) {
		n = read(fd, buf + len, max - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	len = strcspn(buf, "\r\n");
	OPENSSL_cleanse(buf + len, max + 1 - len);
	*ret_pin = buf;
	*ret_len = len;
	return 0;
}

/* A secret from the environment variable env when set, else from the first line of file. */
static int secret_read(const char *env_var, const char *file, const char *setting,
		       const char *credential, char **ret_secret, size_t *ret_len,
		       struct cv_errmsg *err)
{
	char cred_path[4096];
	struct stat st;
	char *secret = NULL;
	size_t len = 0;
	int fd = -1, r;

	/* Taken out of the environment as it is read: /proc/PID/environ would show it to
	 * anyone who may read the process's files for as long as it runs. */
	if (env_var != NULL)
		secret = cv_secret_env_take(env_var, &len);
	if (secret == NULL && len == SIZE_MAX)
		return CV_ERR_NOMEM;
	if (secret != NULL) {
		r = 0;
		goto out;
	}
	/* systemd's LoadCredential= puts it in a directory only the service may read, mode
	 * 0400, never in the environment: used when no file is named. */
	if ((file == NULL || file[0] == '\0') && getenv("CREDENTIALS_DIRECTORY") != NULL &&
	    getenv("CREDENTIALS_DIRECTORY")[0] == '/') {
		snprintf(cred_path, sizeof(cred_path), "%s/%s", getenv("CREDENTIALS_DIRECTORY"),
			 credential);
		if (access(cred_path, F_OK) == 0) {
			file = cred_path;
			setting = credential;
		}
	}
	if (file == NULL || file[0] == '\0') {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "no %s: set %s or %s, or give systemd's "
				  "credential %s",
				  strcmp(setting, "token.pin_file") == 0 ? "token PIN" : "SO PIN",
				  setting, env_var, credential);
		goto out;
	}
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "%s %s: cannot open: %s", setting, file,
				  strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "%s %s: not a regular file", setting, file);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG,
				  "%s %s: readable by others (mode %03o): chmod 600 it", setting,
				  file, (unsigned)(st.st_mode & 0777));
		goto out;
	}
	r = read_first_line(fd, &secret, &len);
	if (r < 0)
		goto out;
	if (len == 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "%s %s: empty", setting, file);
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	if (r < 0) {
		OPENSSL_clear_free(secret, len + 1);
		return r;
	}
	*ret_secret = secret;
	*ret_len = len;
	return 0;
}

int cv_config_pin_read(const struct cv_config *cfg, char **ret_pin, size_t *ret_len,
		       struct cv_errmsg *err)
{
	return secret_read("CERTVAULT_TOKEN_PIN", cfg->token_pin_file, "token.pin_file", "token-pin",
			   ret_pin, ret_len, err);
}

int cv_config_db_password_read(const struct cv_config *cfg, char **ret_password,
			       size_t *ret_len, struct cv_errmsg *err)
{
	*ret_password = NULL;
	*ret_len = 0;
	if (cfg->db_url[0] == '\0' || cfg->db_password_file[0] == '\0')
		return 0;
	return secret_read(NULL, cfg->db_password_file, "database.password_file",
			   "database-password", ret_password, ret_len, err);
}

int cv_config_so_pin_read(const struct cv_config *cfg, char **ret_pin, size_t *ret_len,
			  struct cv_errmsg *err)
{
	return secret_read("CERTVAULT_TOKEN_SO_PIN", cfg->token_so_pin_file,
			   "token.so_pin_file", "token-so-pin", ret_pin, ret_len, err);
}
