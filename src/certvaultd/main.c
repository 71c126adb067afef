/* certvaultd: parse the configuration, open the token and the store, serve, wait. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "certvault/config.h"
#include "certvault/fault.h"
#include "certvault/http.h"
#include "certvault/notify.h"
#include "certvault/secret.h"
#include "certvault/store.h"
#include "certvault/token.h"
#include "certvault/util.h"
#include "certvault/vault.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: certvaultd [-c FILE] [--help] [--version]\n"
		   "\n"
		   "certvault's daemon: keeps certificates in SQLite and their private keys in a\n"
		   "PKCS#11 token, and serves the HTTP/JSON API.\n"
		   "\n"
		   "  -c, --config FILE   INI configuration file (also CERTVAULT_CONFIG)\n"
		   "      --init-token    create the token token.label in the first free slot\n"
		   "                      (SO PIN from token.so_pin_file or CERTVAULT_TOKEN_SO_PIN)\n"
		   "                      unless it exists, then exit\n"
		   "      --routes        every route, who may call it, what the audit trail\n"
		   "                      calls it; then exit\n"
		   "      --fault-points  the crash tests' fault points of this build (none\n"
		   "                      unless built with CV_FAULT_INJECTION); then exit\n"
		   "      --audit-archive FILE\n"
		   "                      move audit records older than audit.retention_days\n"
		   "                      (or --older-than-days) to FILE, a new file, leaving a\n"
		   "                      checkpoint record; then exit\n"
		   "      --older-than-days N  the age for --audit-archive (0: all but this\n"
		   "                      second's)\n"
		   "      --audit-verify-archive FILE\n"
		   "                      check an archive's records with the token's audit key;\n"
		   "                      then exit (0: it holds, 1: it does not)\n"
		   "  -h, --help          this text\n"
		   "  -V, --version       the version\n"
		   "\n"
		   "Settings ([section] key, its environment override, default):\n");
	cv_config_describe(f);
}

/* --init-token: makes the token if it is missing, says what it did. */
static int init_token_once(const struct cv_config *cfg, const char *pin, struct cv_errmsg *err)
{
	char *so_pin = NULL;
	size_t so_len = 0;
	int r, created;

	r = cv_config_so_pin_read(cfg, &so_pin, &so_len, err);
	if (r < 0)
		return r;
	r = cv_token_init(cfg->token_module, cfg->token_label, so_pin, pin, &created, err);
	OPENSSL_clear_free(so_pin, so_len + 1);
	if (r == 0)
		fprintf(stderr, "certvaultd: token \"%s\" %s\n", cfg->token_label,
			created ? "created" : "already exists");
	return r;
}

/* The first start makes the first admin token and says where it is (never what it is). */
static int admin_token_once(struct cv_app *app, struct cv_errmsg *err)
{
	const struct cv_config *cfg = app->cfg;
	char path[4096];
	const char *slash;
	int r, created;

	if (cfg->admin_token_file[0] != '\0') {
		snprintf(path, sizeof(path), "%s", cfg->admin_token_file);
	} else {
		slash = strrchr(cfg->db_path, '/');
		snprintf(path, sizeof(path), "%.*s%sadmin.token",
			 slash != NULL ? (int)(slash - cfg->db_path) : 0, cfg->db_path,
			 slash != NULL ? "/" : "");
	}
	r = cv_vault_token_bootstrap(&app->vault, path, (int64_t)time(NULL), &created, err);
	if (r == 0 && created)
		fprintf(stderr, "certvaultd: the first admin API token is in %s (mode 0600): "
			"send it as Authorization: Bearer <token>\n", path);
	return r;
}

/* Destroys the pending certificates that expired, one log line when it did or failed. */
static void pending_sweep(struct cv_app *app)
{
	struct cv_errmsg err = { "" };
	unsigned n = 0;
	int r;

	r = cv_vault_pending_sweep(&app->vault, (int64_t)time(NULL), &n, &err);
	if (n > 0)
		fprintf(stderr, "certvaultd: %u expired pending certificate(s) destroyed with their "
			"keys\n", n);
	if (r < 0)
		fprintf(stderr, "certvaultd: pending certificates' sweep: %s\n",
			err.text[0] ? err.text : cv_strerror(r));
}

/* The background purge of deleted certificates (issue 18): one line when it did or failed. */
static void purge_report(unsigned n, int r, const char *why)
{
	if (n > 0)
		fprintf(stderr, "certvaultd: %u deleted certificate(s) purged with their keys, their "
			"retention over\n", n);
	if (r < 0)
		fprintf(stderr, "certvaultd: background purge of deleted certificates: %s\n", why);
}

/* After the reconciler: key objects with certvault's marker that no row names, said one per
 * line (the first few) and destroyed only when token.destroy_orphan_keys says so. */
static int orphans_report(struct cv_app *app, struct cv_errmsg *err)
{
	struct cv_orphan_report rep;
	unsigned i;
	int r;

	r = cv_vault_orphans(&app->vault, app->cfg->token_destroy_orphan_keys, &rep, err);
	if (r < 0 || rep.found == 0)
		return r;
	for (i = 0; i < rep.listed; i++)
		fprintf(stderr, "certvaultd: orphan key: %s key object with certvault's id %s and"
			" no row naming it: %s\n",
			rep.keys[i].has_private ? "a private (and public)" : "a public",
			rep.keys[i].id_hex,
			rep.keys[i].destroyed ? "destroyed" :
			app->cfg->token_destroy_orphan_keys ? "NOT destroyed (the token refused)" :
			"left in the token (token.destroy_orphan_keys = true destroys it)");
	fprintf(stderr, "certvaultd: %u orphan key(s) in the token (%u listed above), %u destroyed,"
		" %u could not be destroyed%s%s\n", rep.found, rep.listed, rep.destroyed,
		rep.failed, rep.failed > 0 ? ": " : "", rep.first_error);
	return 0;
}

/* The audit chain's settings from the configuration. */
static void audit_settings(const struct cv_config *cfg, int create_key,
			   struct cv_audit_settings *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->key_label = cfg->audit_key_label;
	ret->create_key = create_key;
	ret->repeat_interval = cfg->audit_repeat_interval;
	ret->anonymous_per_minute = cfg->audit_anonymous_per_minute;
	ret->anonymous_burst = cfg->audit_anonymous_burst;
}

/* --audit-archive and --audit-verify-archive, once the token and the store are open.
 * Returns the exit status. */
static int audit_archive_command(struct cv_app *app, const char *archive, const char *check,
				 int64_t older_than_days, struct cv_errmsg *err)
{
	struct cv_audit_archive_report rep;
	int64_t now = (int64_t)time(NULL), days;
	int r;

	if (check != NULL) {
		r = cv_vault_audit_archive_verify(&app->vault, check, &rep, err);
		if (r < 0)
			return r;
		if (rep.first_bad != 0) {
			fprintf(stdout, "%s: NOT intact: %s (first bad record %lld)\nsha256 %s\n",
				check, rep.reason, (long long)rep.first_bad, rep.sha256);
			return 1;
		}
		fprintf(stdout, "%s: intact: records %lld-%lld (%lld), head %s\nsha256 %s\n",
			check, (long long)rep.first, (long long)rep.through,
			(long long)rep.records, rep.head, rep.sha256);
		return 0;
	}
	days = older_than_days >= 0 ? older_than_days : app->cfg->audit_retention_days;
	if (older_than_days < 0 && days == 0) {
		cv_errmsg_set(err, CV_ERR_CONFIG, "--audit-archive needs audit.retention_days or "
			      "--older-than-days");
		return CV_ERR_CONFIG;
	}
	r = cv_vault_audit_archive(&app->vault, archive, now - days * 86400, now, &rep, err);
	if (r < 0)
		return r;
	if (rep.records == 0)
		fprintf(stdout, "no audit record is older than %lld day(s): nothing archived\n",
			(long long)days);
	else
		fprintf(stdout, "archived records %lld-%lld (%lld) to %s: head %s, sha256 %s\n",
			(long long)rep.first, (long long)rep.through, (long long)rep.records,
			archive, rep.head, rep.sha256);
	return 0;
}

/* --routes: who may call what, as the route table says. */
static void print_routes(FILE *f)
{
	struct cv_route_info info;
	size_t i;

	for (i = 0; cv_http_route_at(i, &info) == 0; i++)
		fprintf(f, "%-7s %-34s %-8s %s\n", info.method, info.pattern,
			cv_http_access_name(info.access), info.action != NULL ? info.action : "-");
}

/* --fault-points: name, the write paths that reach it, what is done when it fires. */
static void print_fault_points(FILE *f)
{
	struct cv_fault_info info;
	size_t i;

	for (i = 0; cv_fault_point_at(i, &info) == 0; i++)
		fprintf(f, "%s\t%s\t%s\n", info.name, info.paths, info.where);
}

static int fault_point_known(const char *name)
{
	struct cv_fault_info info;
	size_t i;

	for (i = 0; cv_fault_point_at(i, &info) == 0; i++) {
		if (strcmp(info.name, name) == 0)
			return 1;
	}
	return 0;
}

/* One outbound address policy from its two settings, the error naming the setting. */
static int net_policy(const char *networks, const char *ports, const char *section,
		      struct cv_net_policy *ret, struct cv_errmsg *err)
{
	struct cv_errmsg why = { "" };

	if (cv_net_policy_parse(networks, NULL, ret, &why) < 0)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "%s.allow_networks: %s", section,
				     why.text);
	if (cv_net_policy_parse(networks, ports, ret, &why) < 0)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "%s.allow_ports: %s", section, why.text);
	return 0;
}

/* The notifier's lines in the log. */
static void notify_log(const char *line)
{
	fprintf(stderr, "certvaultd: %s\n", line);
}

/* The notifier's settings from the configuration, checked before anything starts. */
static int notify_settings(const struct cv_config *cfg, struct cv_notify_settings *ret,
			   struct cv_errmsg *err)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	r = cv_notify_thresholds_parse(cfg->notify_thresholds, ret->thresholds,
				       sizeof(ret->thresholds), err);
	if (r < 0)
		return r;
	ret->scan_seconds = cfg->notify_scan_seconds;
	ret->retry_base_seconds = cfg->notify_retry_base_seconds;
	ret->retry_max_seconds = cfg->notify_retry_max_seconds;
	ret->max_attempts = cfg->notify_max_attempts;
	ret->lease_seconds = cfg->notify_lease_seconds;
	ret->timeout_ms = (int)cfg->notify_timeout_ms;
	ret->password_dir = cfg->notify_password_dir;
	ret->log = notify_log;
	/* The lease names the node as health does (server.node_name, the host name by default). */
	snprintf(ret->node, sizeof(ret->node), "%s", cfg->node_name);
	return net_policy(cfg->notify_allow_networks, cfg->notify_allow_ports, "notifications",
			  &ret->net, err);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "init-token", no_argument, NULL, 'I' },
		{ "routes", no_argument, NULL, 'R' },
		{ "fault-points", no_argument, NULL, 'F' },
		{ "audit-archive", required_argument, NULL, 'A' },
		{ "audit-verify-archive", required_argument, NULL, 'Y' },
		{ "older-than-days", required_argument, NULL, 'O' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = getenv("CERTVAULT_CONFIG");
	struct cv_token_config tcfg = { 0 };
	struct cv_reconcile_report report;
	struct cv_errmsg err = { "" };
	struct cv_server *server = NULL;
	struct cv_config cfg;
	struct cv_app app = { 0 };
	const char *tls_listen;
	char *pin = NULL;
	size_t pin_len = 0;
	sigset_t signals;
	struct cv_audit_settings audit_cfg;
	struct cv_audit_key_report keyrep;
	struct cv_notify_settings notify_cfg;
	struct cv_notifier *notifier = NULL;
	const char *archive = NULL, *check_archive = NULL;
	int64_t older_than_days = -1;
	int opt, sig, r, status = 1, init_token = 0;

	while ((opt = getopt_long(argc, argv, "c:hV", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'I':
			init_token = 1;
			break;
		case 'R':
			print_routes(stdout);
			return 0;
		case 'F':
			print_fault_points(stdout);
			return 0;
		case 'A':
			archive = optarg;
			break;
		case 'Y':
			check_archive = optarg;
			break;
		case 'O':
			if (cv_parse_int64(optarg, 0, 36500, &older_than_days) < 0) {
				fprintf(stderr, "certvaultd: --older-than-days takes 0 to 36500\n");
				return 2;
			}
			break;
		case 'V':
			printf("certvaultd 0.1.0%s\n", cv_fault_compiled_in() ?
			       " (test build: fault points compiled in)" : "");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	/* Before any secret is read: no core file, no same-user ptrace or /proc/PID/mem of a
	 * process holding the PIN and the token module's keys. */
	if (cv_secret_process_protect(&err) < 0) {
		fprintf(stderr, "certvaultd: %s\n", err.text);
		return 1;
	}
	/* Block the stop signals before any thread starts, so only sigwait sees them. */
	sigemptyset(&signals);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	cv_http_json_harden();
	/* Before the token module loads: it may use SQLite too. */
	cv_store_process_init();

	if (cv_config_load(config_path != NULL && config_path[0] != '\0' ? config_path : NULL,
			   &cfg, &err) < 0) {
		fprintf(stderr, "certvaultd: %s\n", err.text);
		return 1;
	}
	app.cfg = &cfg;
	/* A setting that cannot be read stops the start before the token is touched. */
	if (net_policy(cfg.revocation_allow_networks, cfg.revocation_allow_ports, "revocation",
		       &app.vault.revocation.net, &err) < 0 ||
	    net_policy(cfg.truststore_allow_networks, cfg.truststore_allow_ports, "truststore",
		       &app.vault.truststore_net, &err) < 0) {
		r = CV_ERR_CONFIG;
		goto out;
	}
	r = notify_settings(&cfg, &notify_cfg, &err);
	if (r < 0)
		goto out;
	if (getenv("CERTVAULT_FAULT") != NULL) {
		if (!fault_point_known(getenv("CERTVAULT_FAULT"))) {
			fprintf(stderr, "certvaultd: CERTVAULT_FAULT names no fault point of this "
				"build (certvaultd --fault-points lists them)\n");
			r = 0; /* said; status stays 1 */
			goto out;
		}
		fprintf(stderr, "certvaultd: test build: the process kills itself at fault point "
			"%s\n", getenv("CERTVAULT_FAULT"));
	}
	r = cv_config_pin_read(&cfg, &pin, &pin_len, &err);
	if (r < 0)
		goto out;
	if (init_token) {
		r = init_token_once(&cfg, pin, &err);
		status = r < 0;
		goto out;
	}
	tcfg.module_path = cfg.token_module;
	tcfg.token_label = cfg.token_label;
	tcfg.pin = pin;
	tcfg.pool_size = (unsigned)cfg.token_sessions;
	tcfg.sync_dir = cfg.token_sync_dir;
	tcfg.serialize_creates = cfg.token_serialize_creates;
	r = cv_token_open(&tcfg, &app.token, &err);
	OPENSSL_clear_free(pin, pin_len + 1);
	pin = NULL;
	if (r < 0)
		goto out;
	r = cv_store_open(cfg.db_path, &app.store, &err);
	if (r < 0)
		goto out;
	app.vault.store = app.store;
	app.vault.token = app.token;
	app.vault.soon_seconds = cfg.expires_soon_days * 86400;
	app.vault.allow_weak_signatures = cfg.allow_weak_signatures;
	app.vault.destroy_superseded_keys = cfg.destroy_superseded_keys;
	app.vault.jwks_retention = cfg.jwks_superseded_retention;
	app.vault.pending_seconds = cfg.pending_expiry_seconds;
	app.vault.deleted_retention_days = cfg.deleted_retention_days;
	app.vault.test_retention_seconds = cfg.test_retention_seconds;
	app.vault.purge_protection = cfg.purge_protection;
	app.vault.served = cfg.tls_certificate[0] != '\0' ? cfg.tls_certificate : NULL;
	app.vault.revocation.online = cfg.revocation_online;
	app.vault.revocation.timeout_ms = (int)cfg.revocation_timeout_ms;
	app.vault.revocation.unknown_warn = strcmp(cfg.revocation_unknown, "warn") == 0;
	r = cv_vault_caches_init(&app.vault);
	if (r < 0)
		goto out;
	/* Before anything appends to the audit chain: every record from here on is keyed. The
	 * archive commands use the key and never make it. */
	audit_settings(&cfg, archive == NULL && check_archive == NULL, &audit_cfg);
	r = cv_vault_audit_init(&app.vault, &audit_cfg, (int64_t)time(NULL), &keyrep, &err);
	if (r < 0)
		goto out;
	if (keyrep.created)
		fprintf(stderr, "certvaultd: made the audit key \"%s\" in the token (HMAC-SHA256, "
			"sensitive, not extractable)\n", cfg.audit_key_label);
	if (keyrep.checkpoint > 0)
		fprintf(stderr, "certvaultd: the audit chain is keyed from record %lld on; records "
			"before it keep their plain SHA-256 links\n", (long long)keyrep.checkpoint);
	if (archive != NULL || check_archive != NULL) {
		r = audit_archive_command(&app, archive, check_archive, older_than_days, &err);
		if (r < 0)
			goto out;
		status = r;
		goto out;
	}
	r = cv_vault_reconcile(&app.vault, &report, &err);
	if (r < 0)
		goto out;
	if (report.generates_undone > 0)
		fprintf(stderr, "certvaultd: recovered from an interrupted run: %u generated "
			"key(s) whose CSR or cancel never completed destroyed\n",
			report.generates_undone);
	if (report.imports_undone > 0 || report.deletes_finished > 0 ||
	    report.versions_undone > 0 || report.keys_destroyed > 0)
		fprintf(stderr,
			"certvaultd: recovered from an interrupted run: %u import(s) undone, "
			"%u delete(s) finished, %u new version(s) undone, %u superseded key(s) "
			"destroyed\n",
			report.imports_undone, report.deletes_finished, report.versions_undone,
			report.keys_destroyed);
	r = orphans_report(&app, &err);
	if (r < 0)
		goto out;
	r = admin_token_once(&app, &err);
	if (r < 0)
		goto out;
	r = cv_http_stats_new(&app.stats);
	if (r < 0)
		goto out;
	r = cv_server_start(&app, &server, &err);
	if (r < 0)
		goto out;
	/* Deleted certificates whose retention ended are purged in the background (issue 18). */
	r = cv_vault_purger_start(&app.vault, cfg.purge_sweep_seconds, purge_report, &err);
	if (r < 0)
		goto out;
	/* Expiry scans and deliveries on a thread of their own, never the HTTP threads. */
	r = cv_notifier_start(&app.vault, &notify_cfg, &notifier, &err);
	if (r < 0)
		goto out;
	/* Said once the start succeeded: a refused start says one line, why. */
	fprintf(stderr, "certvaultd: token writes made durable before each commit that depends"
		" on them: %s\n", cv_token_sync_describe(app.token));
	fprintf(stderr, "certvaultd: keys made and destroyed in the token %s\n",
		cv_token_serialize_describe(app.token));
	tls_listen = cfg.tls_listen[0] != '\0' ? cfg.tls_listen : cfg.listen;
	fprintf(stderr, "certvaultd: listening on http://%s%s%s:%d (database %s, token \"%s\")\n",
		strchr(cfg.listen, ':') ? "[" : "", cfg.listen, strchr(cfg.listen, ':') ? "]" : "",
		cv_server_port(server), cfg.db_path, cfg.token_label);
	if (cv_server_tls_port(server) >= 0)
		fprintf(stderr, "certvaultd: listening on https://%s%s%s:%d serving certificate "
			"\"%s\" (its key stays in the token)\n",
			strchr(tls_listen, ':') ? "[" : "", tls_listen,
			strchr(tls_listen, ':') ? "]" : "", cv_server_tls_port(server),
			cfg.tls_certificate);
	/* The main thread waits for a stop signal and, between, sweeps expired pending
	 * certificates: the only background work, too small for a thread of its own. */
	for (;;) {
		struct timespec every = { (time_t)cfg.pending_sweep_seconds, 0 };

		sig = sigtimedwait(&signals, NULL, &every);
		if (sig == SIGINT || sig == SIGTERM) {
			fprintf(stderr, "certvaultd: %s, stopping\n",
				sig == SIGINT ? "SIGINT" : "SIGTERM");
			break;
		}
		if (sig < 0 && errno == EAGAIN)
			pending_sweep(&app);
	}
	status = 0;
out:
	if (r < 0)
		fprintf(stderr, "certvaultd: %s\n", err.text[0] ? err.text : cv_strerror(r));
	OPENSSL_clear_free(pin, pin_len + 1);
	cv_vault_purger_stop(&app.vault);
	cv_server_stop(server);
	cv_notifier_stop(notifier);
	/* The counts of refusals not written yet, now that no request runs. */
	cv_vault_audit_release(&app.vault, (int64_t)time(NULL));
	cv_http_stats_free(app.stats);
	cv_vault_caches_release(&app.vault);
	cv_store_free(app.store);
	cv_token_free(app.token);
	cv_config_release(&cfg);
	return status;
}
