/* certvaultd: parse the configuration, open the token and the store, serve, wait. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "certvault/config.h"
#include "certvault/fault.h"
#include "certvault/http.h"
#include "certvault/notify.h"
#include "certvault/sdnotify.h"
#include "certvault/secret.h"
#include "certvault/store.h"
#include "certvault/text.h"
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
		   "      --backup FILE   write a backup of the database (a consistent copy taken\n"
		   "                      while certvaultd runs, and its manifest) to FILE, a new\n"
		   "                      file; needs no token; then exit\n"
		   "      --verify-backup FILE\n"
		   "                      check a backup: manifest, database, audit chain (with the\n"
		   "                      token's audit key) and which of its keys the token lacks;\n"
		   "                      then exit (0: intact and every key there, 1: not)\n"
		   "      --restore FILE --database PATH [--overwrite] [--allow-missing-keys]\n"
		   "                      put a backup's database at PATH (SQLite), certvaultd\n"
		   "                      stopped: checked first as --verify-backup checks it\n"
		   "                      (refused unless intact and every key is in the token, or\n"
		   "                      --allow-missing-keys), written beside PATH and renamed\n"
		   "                      into place; an existing database only with --overwrite;\n"
		   "                      then exit (0: restored, 1: nothing changed)\n"
		   "      --sample-config print a configuration file with every setting commented\n"
		   "                      out with its default; then exit\n"
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

static void node_report(const char *line)
{
	fprintf(stderr, "certvaultd: %s\n", line);
}

/* After the reconciler: key objects with certvault's marker that no row names, said one per
 * line (the first few) and destroyed only when token.destroy_orphan_keys says so. */
static int orphans_report(struct cv_app *app, struct cv_errmsg *err)
{
	struct cv_orphan_report rep;
	unsigned i;
	int r;

	r = cv_vault_orphans(&app->vault, app->cfg->token_destroy_orphan_keys, &rep, err);
	if (r < 0)
		return r;
	atomic_store(&app->vault.orphan_keys_at_start, rep.found - rep.destroyed);
	atomic_store(&app->vault.orphans_checked, 1);
	if (rep.found == 0)
		return 0;
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

/* The orphan key check needs the token's public key objects, which the token lists after
 * it opened, on a thread of its own (a second or so at 10,000 keys): the check waits for them
 * on a thread too, and requests are served meanwhile (health says when it is done). */
static atomic_int stopping;

static void *orphans_thread(void *arg)
{
	struct cv_app *app = arg;
	struct cv_errmsg err = { "" };

	if (orphans_report(app, &err) < 0 && !atomic_load(&stopping))
		fprintf(stderr, "certvaultd: the orphan key check did not run: %s\n", err.text);
	return NULL;
}

/* The audit chain's settings from the configuration. */
static void audit_settings(const struct cv_config *cfg, int create_key,
			   struct cv_audit_settings *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->key_label = cfg->audit_key_label;
	ret->create_key = create_key;
	ret->repeat_interval = cfg->audit_repeat_interval;
	ret->use_interval = cfg->audit_sign_interval;
	ret->link_rotate = cfg->audit_link_rotate;
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

#ifndef CV_PACKAGE_DB_PATH
#define CV_PACKAGE_DB_PATH "/var/lib/certvault/certvault.db"
#endif

/* --backup FILE: the copy is made beside FILE and FILE appears only once it is whole and
 * durable; an existing FILE is never overwritten. Returns the exit status. */
static int backup_command(const struct cv_config *cfg, const char *file, struct cv_errmsg *err)
{
	struct cv_backup_params p = { 0 };
	struct cv_backup_summary sum;
	char dirbuf[4096], tmp[4200];
	const char *dir;
	int fd = -1, r;

	snprintf(dirbuf, sizeof(dirbuf), "%s", file);
	dir = dirname(dirbuf);
	if (access(file, F_OK) == 0) {
		cv_errmsg_set(err, CV_ERR_CONFIG, "--backup %s: the file exists (a backup is "
			      "never written over one)", file);
		return CV_ERR_CONFIG;
	}
	snprintf(tmp, sizeof(tmp), "%s/.certvault-backup-tar-XXXXXX", dir);
	fd = mkstemp(tmp);
	if (fd < 0) {
		cv_errmsg_set(err, CV_ERR_CONFIG, "--backup: cannot make a file in %s: %s", dir,
			      strerror(errno));
		return CV_ERR_CONFIG;
	}
	(void)fchmod(fd, 0600);
	/* Held until the file is renamed: a certvaultd starting meanwhile leaves it alone. */
	(void)cv_backup_temp_lock(fd);
	p.db_path = cfg->db_path;
	p.tmp_dir = dir;
	p.version = CV_VERSION;
	p.token_label = cfg->token_label;
	p.audit_key_label = cfg->audit_key_label;
	p.now = (int64_t)time(NULL);
	r = cv_vault_backup_write(&p, fd, &sum, err);
	if (r == 0 && fsync(fd) != 0)
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "--backup %s: %s", file, strerror(errno));
	if (close(fd) != 0 && r == 0)
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "--backup %s: %s", file, strerror(errno));
	/* link() refuses an existing name: a backup that appeared meanwhile is kept. */
	if (r == 0 && link(tmp, file) != 0)
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "--backup %s: %s", file, strerror(errno));
	unlink(tmp);
	if (r == 0) {
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			(void)fsync(fd);
			close(fd);
		}
		fprintf(stdout, "backup %s: schema %lld, %llu bytes of database, %lld audit "
			"record(s), head %s, %zu key(s) the token must hold\n", file,
			(long long)sum.schema_version, (unsigned long long)sum.db_bytes,
			(long long)sum.audit_records, sum.head[0] ? sum.head : "(none)", sum.keys);
	}
	return r;
}

/* The store [database] names: SQLite at path, or PostgreSQL at url with the password from
 * database.password_file (wiped once the connections are open) or libpq's own means. */
static int store_open(const struct cv_config *cfg, struct cv_store **ret, struct cv_errmsg *err)
{
	char *password = NULL;
	size_t len = 0;
	int r;

	if (cfg->db_url[0] == '\0')
		return cv_store_open(cfg->db_path, ret, err);
	r = cv_config_db_password_read(cfg, &password, &len, err);
	if (r < 0)
		return r;
	r = cv_store_open_pg(cfg->db_url, password, ret, err);
	OPENSSL_clear_free(password, len + 1);
	return r;
}

/* The file backup and its check are SQLite's (one self-contained database file); a
 * PostgreSQL database is backed up with its own tools. 0, or CV_ERR_CONFIG saying so. */
static int backup_sqlite_only(const struct cv_config *cfg, const char *what, struct cv_errmsg *err)
{
	if (cfg->db_url[0] == '\0')
		return 0;
	return cv_errmsg_set(err, CV_ERR_CONFIG, "%s is for SQLite (database.path): this "
			     "certvaultd uses PostgreSQL (database.url), which is backed up with "
			     "pg_dump (and restored with pg_restore); back the token up as usual",
			     what);
}

static void leftover_said(const char *name, uint64_t bytes, void *arg)
{
	char shown[160];

	cv_text_safe(name, strlen(name), 0, shown, sizeof(shown));
	fprintf(stderr, "certvaultd: removed %s/%s (%llu bytes), left by a backup or restore that "
		"was cut short\n", (const char *)arg, shown, (unsigned long long)bytes);
}

/* A crash or kill during a backup (POST /v1/backup's copy of the database beside it, a
 * --backup into this directory) leaves its temporary files: a whole copy of the database
 * that nothing would ever remove. At each start, before serving, they go. */
static void backup_leftovers(const char *db_path)
{
	struct cv_errmsg err = { "" };
	char dirbuf[4096];
	const char *dir;

	snprintf(dirbuf, sizeof(dirbuf), "%s", db_path);
	dir = dirname(dirbuf);
	if (cv_vault_backup_leftovers(dir, leftover_said, (void *)dir, &err) < 0)
		fprintf(stderr, "certvaultd: leftovers of backups not looked for: %s\n", err.text);
}

/* --restore BACKUP --database PATH, once the token is open: says what it put in place, or why
 * nothing. Returns 0 or the error (said by the caller). */
static int restore_command(struct cv_app *app, const struct cv_restore_params *p,
			   struct cv_errmsg *err)
{
	struct cv_backup_verdict vd;
	size_t i;
	int r;

	r = backup_sqlite_only(app->cfg, "--restore", err);
	if (r < 0)
		return r;
	r = cv_vault_backup_restore(&app->vault, p, &vd, err);
	for (i = 0; r == CV_ERR_TOKEN && i < vd.keys_missing && i < CV_BACKUP_MISSING_LISTED; i++)
		fprintf(stderr, "certvaultd: --restore: the token lacks the key of %s\n",
			vd.missing[i]);
	if (r < 0)
		return r;
	fprintf(stdout, "restored %s into %s: made %s, schema %lld, audit chain of %lld "
		"record(s) verified, head %s\n", p->backup, p->db_path, vd.created_at,
		(long long)vd.schema_version, (long long)vd.audit_records,
		vd.head[0] ? vd.head : "(none)");
	if (vd.keys_missing == 0)
		fprintf(stdout, "the token holds all %zu key(s) it needs\n", vd.keys);
	else
		fprintf(stdout, "the token lacks %zu of its %zu key(s) (--allow-missing-keys): "
			"their certificates start marked key_missing\n", vd.keys_missing, vd.keys);
	return 0;
}

/* --verify-backup FILE, once the token is open. Returns the exit status, or an error. */
static int verify_backup_command(struct cv_app *app, const char *file, struct cv_errmsg *err)
{
	struct cv_backup_verdict vd;
	const char *tmp = getenv("TMPDIR");
	size_t i;
	int r;

	r = backup_sqlite_only(app->cfg, "--verify-backup", err);
	if (r < 0)
		return r;

	r = cv_vault_backup_verify(&app->vault, file, tmp != NULL && tmp[0] == '/' ? tmp : "/tmp",
				   app->cfg->audit_key_label, &vd, err);
	if (r < 0)
		return r;
	if (!vd.intact) {
		fprintf(stdout, "%s: NOT intact: %s\n", file, vd.reason);
		return 1;
	}
	fprintf(stdout, "%s: intact: made %s, schema %lld, audit chain of %lld record(s) "
		"verified, head %s\n", file, vd.created_at, (long long)vd.schema_version,
		(long long)vd.audit_records, vd.head[0] ? vd.head : "(none)");
	if (vd.keys_missing == 0) {
		fprintf(stdout, "%s: the token holds all %zu key(s) it needs\n", file, vd.keys);
		return 0;
	}
	fprintf(stdout, "%s: the token lacks %zu of its %zu key(s):\n", file, vd.keys_missing,
		vd.keys);
	for (i = 0; i < vd.keys_missing && i < CV_BACKUP_MISSING_LISTED; i++)
		fprintf(stdout, "  %s\n", vd.missing[i]);
	return 1;
}

/* After the reconciler: every key a row needs is looked up in the token's map; the
 * certificates that lost theirs (a database restored onto a token without them) are said
 * here and marked key_missing in the API, instead of failing at first use. */
static int say_missing(const struct cv_store_key_ref *ref, void *arg)
{
	unsigned *listed = arg;
	char hex[2 * CV_TOKEN_ID_LEN + 1];

	if ((*listed)++ >= CV_ORPHANS_LISTED)
		return 0;
	cv_hex_encode(ref->id, CV_TOKEN_ID_LEN, hex);
	fprintf(stderr, "certvaultd: key missing: certificate %s version %lld (%s) needs the key"
		" with id %s, which is not in the token\n", ref->name, (long long)ref->version,
		ref->row, hex);
	return 0;
}

static int keys_check(struct cv_app *app, struct cv_errmsg *err)
{
	struct cv_key_check kc;
	unsigned listed = 0;
	int r;

	r = cv_vault_keys_check(&app->vault, say_missing, &listed, &kc, err);
	if (r < 0)
		return r;
	app->vault.keys_missing_at_start = kc.missing;
	if (kc.missing > 0)
		fprintf(stderr, "certvaultd: %u of the %u key(s) the database needs are not in the "
			"token (%u of them a current version's): restore the token's backup that "
			"holds them; GET /v1/health/keys names them\n", kc.missing, kc.needed,
			kc.missing_current);
	return 0;
}

/* SIGHUP: the settings read at each use are taken from the file again; the others are
 * said to need a restart. A file that does not load changes nothing. */
static void reload(struct cv_app *app, const char *config_path, int64_t *sweep_seconds)
{
	struct cv_errmsg err = { "" };
	struct cv_config fresh;
	struct timespec ts;
	char state[96];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
	(void)cv_sd_notify(state);
	if (cv_config_load(config_path, &fresh, &err) < 0) {
		fprintf(stderr, "certvaultd: SIGHUP: the configuration was not reloaded, nothing "
			"changed: %s\n", err.text);
		goto out;
	}
	/* Each is one aligned word that requests read as a whole: a request sees the old value
	 * or the new one. */
	__atomic_store_n(&app->vault.soon_seconds, fresh.expires_soon_days * 86400,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&app->vault.allow_weak_signatures, fresh.allow_weak_signatures,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&app->vault.destroy_superseded_keys, fresh.destroy_superseded_keys,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&app->vault.jwks_retention, fresh.jwks_superseded_retention,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&app->vault.pending_seconds, fresh.pending_expiry_seconds,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&app->vault.revocation.online, fresh.revocation_online,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&app->vault.revocation.timeout_ms, (int)fresh.revocation_timeout_ms,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&app->vault.revocation.unknown_warn,
			 strcmp(fresh.revocation_unknown, "warn") == 0, __ATOMIC_RELAXED);
	*sweep_seconds = fresh.pending_sweep_seconds;
	fprintf(stderr, "certvaultd: SIGHUP: reloaded %s: policy.*, jwks.superseded_retention "
		"and revocation.online, timeout_ms and unknown now apply; every other setting "
		"needs a restart\n", config_path != NULL ? config_path : "(no file: defaults and "
		"environment)");
	cv_config_release(&fresh);
out:
	(void)cv_sd_notify("READY=1\nSTATUS=serving");
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
	ret->delivery_log_days = cfg->notify_delivery_log_days;
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
		{ "backup", required_argument, NULL, 'B' },
		{ "verify-backup", required_argument, NULL, 'W' },
		{ "sample-config", no_argument, NULL, 'S' },
		{ "restore", required_argument, NULL, 'T' },
		{ "database", required_argument, NULL, 'D' },
		{ "overwrite", no_argument, NULL, 'o' },
		{ "allow-missing-keys", no_argument, NULL, 'M' },
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
	pthread_t orphans;
	int orphans_started = 0;
	struct cv_notify_settings notify_cfg;
	struct cv_notifier *notifier = NULL;
	const char *archive = NULL, *check_archive = NULL, *backup = NULL, *check_backup = NULL;
	struct cv_restore_params restore = { 0 };
	int64_t sweep_seconds;
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
		case 'B':
			backup = optarg;
			break;
		case 'W':
			check_backup = optarg;
			break;
		case 'T':
			restore.backup = optarg;
			break;
		case 'D':
			restore.db_path = optarg;
			break;
		case 'o':
			restore.overwrite = 1;
			break;
		case 'M':
			restore.allow_missing_keys = 1;
			break;
		case 'S':
			cv_config_sample(stdout, CV_PACKAGE_DB_PATH);
			return 0;
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
			printf("certvaultd %s%s\n", CV_VERSION, cv_fault_compiled_in() ?
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
	/* The restore's own options mean nothing without it, and it nothing without a path. */
	if ((restore.backup != NULL) != (restore.db_path != NULL) ||
	    ((restore.overwrite || restore.allow_missing_keys) && restore.backup == NULL)) {
		fprintf(stderr, "certvaultd: --restore BACKUP --database PATH go together "
			"(--overwrite and --allow-missing-keys only with them)\n");
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
	sigaddset(&signals, SIGHUP);
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
	if (backup != NULL) {
		r = backup_sqlite_only(&cfg, "--backup", &err);
		if (r == 0)
			r = backup_command(&cfg, backup, &err);
		status = r < 0;
		goto out;
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
	/* Several nodes share a PostgreSQL database: their rows carry their own clocks' times. */
	tcfg.clock_skew = cfg.db_url[0] != '\0' ? 60 : 0;
	r = cv_token_open(&tcfg, &app.token, &err);
	OPENSSL_clear_free(pin, pin_len + 1);
	pin = NULL;
	if (r < 0)
		goto out;
	if (restore.backup != NULL) {
		/* The live database is not opened: it is what gets replaced. */
		app.vault.token = app.token;
		restore.audit_key_label = cfg.audit_key_label;
		r = restore_command(&app, &restore, &err);
		status = r < 0;
		goto out;
	}
	if (check_backup != NULL) {
		/* The live database is not opened: on a machine being restored it may not exist. */
		app.vault.token = app.token;
		r = verify_backup_command(&app, check_backup, &err);
		if (r < 0)
			goto out;
		status = r;
		goto out;
	}
	r = store_open(&cfg, &app.store, &err);
	if (r < 0)
		goto out;
	if (cfg.db_url[0] == '\0')
		backup_leftovers(cfg.db_path);
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
	/* Several nodes (issue 15): this node's heartbeat is in the database before its
	 * reconciler looks at what other nodes have in flight, and is kept from then on. */
	r = cv_store_node_set(app.store, cfg.node_name, cfg.node_lease_seconds);
	if (r == 0)
		r = cv_store_node_register(app.store, (int64_t)time(NULL));
	if (r < 0) {
		cv_errmsg_set(&err, r, "cannot register node \"%s\" in the database",
			      cfg.node_name);
		goto out;
	}
	r = cv_vault_node_start(&app.vault, cfg.node_lease_seconds, node_report, &err);
	if (r < 0)
		goto out;
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
	if (pthread_create(&orphans, NULL, orphans_thread, &app) != 0) {
		r = cv_errmsg_set(&err, CV_ERR_INTERNAL, "cannot start the orphan key check");
		goto out;
	}
	orphans_started = 1;
	r = keys_check(&app, &err);
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
	/* The SQLite file, or "postgresql host:port/dbname" (never a user or a password). */
	fprintf(stderr, "certvaultd: listening on http://%s%s%s:%d (database %s%s, token"
		" \"%s\")\n",
		strchr(cfg.listen, ':') ? "[" : "", cfg.listen, strchr(cfg.listen, ':') ? "]" : "",
		cv_server_port(server), cfg.db_url[0] != '\0' ? "postgresql " : "",
		cv_store_target(app.store), cfg.token_label);
	if (cv_server_tls_port(server) >= 0)
		fprintf(stderr, "certvaultd: listening on https://%s%s%s:%d serving certificate "
			"\"%s\" (its key stays in the token)\n",
			strchr(tls_listen, ':') ? "[" : "", tls_listen,
			strchr(tls_listen, ':') ? "]" : "", cv_server_tls_port(server),
			cfg.tls_certificate);
	/* The main thread waits for a stop signal and, between, sweeps expired pending
	 * certificates: the only background work, too small for a thread of its own. */
	(void)cv_sd_notify("READY=1\nSTATUS=serving");
	sweep_seconds = cfg.pending_sweep_seconds;
	for (;;) {
		struct timespec every = { (time_t)sweep_seconds, 0 };

		sig = sigtimedwait(&signals, NULL, &every);
		if (sig == SIGINT || sig == SIGTERM) {
			fprintf(stderr, "certvaultd: %s, stopping\n",
				sig == SIGINT ? "SIGINT" : "SIGTERM");
			(void)cv_sd_notify("STOPPING=1");
			break;
		}
		if (sig == SIGHUP) {
			reload(&app, config_path != NULL && config_path[0] != '\0' ? config_path :
			       NULL, &sweep_seconds);
			continue;
		}
		if (sig < 0 && errno == EAGAIN)
			pending_sweep(&app);
	}
	status = 0;
out:
	if (r < 0)
		fprintf(stderr, "certvaultd: %s\n", err.text[0] ? err.text : cv_strerror(r));
	OPENSSL_clear_free(pin, pin_len + 1);
	if (orphans_started) {
		/* The listing it waits for stops first; a check cut short says nothing. */
		atomic_store(&stopping, 1);
		cv_token_background_stop(app.token);
		pthread_join(orphans, NULL);
	}
	cv_vault_purger_stop(&app.vault);
	cv_server_stop(server);
	cv_notifier_stop(notifier);
	/* Last of the writers: its final write says this node left nothing in flight. */
	cv_vault_node_stop(&app.vault);
	/* The counts of refusals not written yet, now that no request runs. */
	cv_vault_audit_release(&app.vault, (int64_t)time(NULL));
	cv_http_stats_free(app.stats);
	cv_vault_caches_release(&app.vault);
	cv_store_free(app.store);
	cv_token_free(app.token);
	cv_config_release(&cfg);
	return status;
}
