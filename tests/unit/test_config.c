/* Unit tests for the configuration: defaults, the INI file, environment overrides, refusals,
 * and how PINs are read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "certvault/config.h"
#include "certvault/notify.h"

static char dir[] = "/tmp/cv-config-XXXXXX";

static void clear_env(void)
{
	static const char *const vars[] = {
		"CERTVAULT_SERVER_PORT", "CERTVAULT_SERVER_LISTEN", "CERTVAULT_TOKEN_PIN",
		"CERTVAULT_TOKEN_PIN_FILE", "CERTVAULT_POLICY_ALLOW_WEAK_SIGNATURES",
		"CERTVAULT_POLICY_EXPIRES_SOON_DAYS", "CERTVAULT_TOKEN_SO_PIN",
	};
	size_t i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void test_defaults(void **state)
{
	struct cv_config cfg;
	struct cv_errmsg err;

	(void)state;
	clear_env();
	assert_int_equal(cv_config_load(NULL, &cfg, &err), 0);
	assert_string_equal(cfg.listen, "127.0.0.1");
	assert_int_equal(cfg.port, 8420);
	assert_int_equal(cfg.expires_soon_days, 30);
	assert_int_equal(cfg.allow_weak_signatures, 0);
	assert_int_equal(cfg.jwks_superseded_retention, 86400); /* 24 h */
	assert_string_equal(cfg.token_module, "/usr/lib/softhsm/libsofthsm2.so");
	assert_int_equal(cfg.max_body, 262144);
	assert_int_equal(cfg.revocation_online, 0);
	assert_int_equal(cfg.revocation_timeout_ms, 5000);
	assert_string_equal(cfg.revocation_unknown, "refuse");
	cv_config_release(&cfg);
}

static void test_file_then_environment(void **state)
{
	struct cv_config cfg;
	struct cv_errmsg err;
	const char *path;

	(void)state;
	clear_env();
	path = write_file("a.ini",
			  "; comment\n[server]\nlisten = ::1\nport = 9000\n"
			  "[policy]\nexpires_soon_days = 14\nallow_weak_signatures = yes\n",
			  0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), 0);
	assert_string_equal(cfg.listen, "::1");
	assert_int_equal(cfg.port, 9000);
	assert_int_equal(cfg.expires_soon_days, 14);
	assert_int_equal(cfg.allow_weak_signatures, 1);
	cv_config_release(&cfg);

	setenv("CERTVAULT_SERVER_PORT", "9100", 1);
	setenv("CERTVAULT_POLICY_ALLOW_WEAK_SIGNATURES", "false", 1);
	assert_int_equal(cv_config_load(path, &cfg, &err), 0);
	assert_int_equal(cfg.port, 9100);
	assert_int_equal(cfg.allow_weak_signatures, 0);
	assert_string_equal(cfg.listen, "::1");
	cv_config_release(&cfg);
	clear_env();
}

static void test_refusals(void **state)
{
	struct cv_config cfg;
	struct cv_errmsg err;
	const char *path;

	(void)state;
	clear_env();
	path = write_file("b.ini", "[server]\nport = 70000\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "server.port"));

	path = write_file("r.ini", "[revocation]\nunknown = ignore\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "revocation.unknown must be refuse or warn"));
	path = write_file("r2.ini", "[revocation]\nunknown = warn\nonline = yes\n"
			  "timeout_ms = 1500\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), 0);
	assert_string_equal(cfg.revocation_unknown, "warn");
	assert_int_equal(cfg.revocation_online, 1);
	assert_int_equal(cfg.revocation_timeout_ms, 1500);
	cv_config_release(&cfg);

	path = write_file("c.ini", "[server]\nprot = 1\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "unknown setting [server] prot"));

	path = write_file("d.ini", "[policy]\nallow_weak_signatures = maybe\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "true or false"));

	path = write_file("e.ini", "[server]\nport = 12abc\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), CV_ERR_CONFIG);

	path = write_file("f.ini", "[server\nport = 1\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), CV_ERR_CONFIG);

	assert_int_equal(cv_config_load("/nonexistent/certvault.ini", &cfg, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "cannot open"));

	setenv("CERTVAULT_SERVER_PORT", "-1", 1);
	assert_int_equal(cv_config_load(NULL, &cfg, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "CERTVAULT_SERVER_PORT"));
	clear_env();
}

static void test_pin_sources(void **state)
{
	struct cv_config cfg;
	struct cv_errmsg err;
	char *pin = NULL;
	size_t len = 0;
	const char *path, *env;

	(void)state;
	clear_env();
	assert_int_equal(cv_config_load(NULL, &cfg, &err), 0);
	assert_int_equal(cv_config_pin_read(&cfg, &pin, &len, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "no token PIN"));

	path = write_file("pin", "12345678\nsecond line\n", 0600);
	free(cfg.token_pin_file);
	cfg.token_pin_file = strdup(path);
	assert_int_equal(cv_config_pin_read(&cfg, &pin, &len, &err), 0);
	assert_int_equal(len, 8);
	assert_string_equal(pin, "12345678");
	OPENSSL_clear_free(pin, len + 1);

	/* A PIN file others can read is refused, and the message never holds the PIN. */
	write_file("pin", "12345678\n", 0644);
	assert_int_equal(cv_config_pin_read(&cfg, &pin, &len, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "chmod 600"));
	assert_null(strstr(err.text, "12345678"));

	write_file("pin", "\n", 0600);
	assert_int_equal(cv_config_pin_read(&cfg, &pin, &len, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "empty"));

	/* The environment wins over the file. */
	setenv("CERTVAULT_TOKEN_PIN", "from-env", 1);
	env = getenv("CERTVAULT_TOKEN_PIN");
	assert_int_equal(cv_config_pin_read(&cfg, &pin, &len, &err), 0);
	assert_string_equal(pin, "from-env");
	OPENSSL_clear_free(pin, len + 1);
	/* Taken out of the environment, and its bytes overwritten where they were. */
	assert_null(getenv("CERTVAULT_TOKEN_PIN"));
	assert_int_equal(memcmp(env, "\0\0\0\0\0\0\0\0", 8), 0);
	assert_int_equal(cv_config_so_pin_read(&cfg, &pin, &len, &err), CV_ERR_CONFIG);
	setenv("CERTVAULT_TOKEN_SO_PIN", "so-secret", 1);
	assert_int_equal(cv_config_so_pin_read(&cfg, &pin, &len, &err), 0);
	assert_string_equal(pin, "so-secret");
	OPENSSL_clear_free(pin, len + 1);
	cv_config_release(&cfg);
	clear_env();
}

static void test_describe_lists_every_setting(void **state)
{
	char buf[8192] = { 0 };
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");

	(void)state;
	assert_non_null(f);
	cv_config_describe(f);
	fclose(f);
	assert_non_null(strstr(buf, "CERTVAULT_SERVER_LISTEN"));
	assert_non_null(strstr(buf, "CERTVAULT_DATABASE_PATH"));
	assert_non_null(strstr(buf, "CERTVAULT_TOKEN_PIN_FILE"));
	assert_non_null(strstr(buf, "CERTVAULT_POLICY_EXPIRES_SOON_DAYS"));
	assert_non_null(strstr(buf, "CERTVAULT_TOKEN_PIN "));
}

/* notifications.thresholds: days, 0-3650, at most 16, none twice; checked before start. */
static void test_notify_thresholds(void **state)
{
	static const char *const bad[] = { "", " , ", "abc", "-1", "3651", "7,7", "1.5",
					   "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", NULL };
	struct cv_errmsg err = { "" };
	char out[128];
	size_t i;

	(void)state;
	assert_int_equal(cv_notify_thresholds_parse("30,14,7,1,0", out, sizeof(out), &err), 0);
	assert_string_equal(out, "[30,14,7,1,0]");
	assert_int_equal(cv_notify_thresholds_parse(" 60 3,0 ", out, sizeof(out), &err), 0);
	assert_string_equal(out, "[60,3,0]");
	for (i = 0; bad[i] != NULL; i++) {
		err.text[0] = '\0';
		assert_int_equal(cv_notify_thresholds_parse(bad[i], out, sizeof(out), &err),
				 CV_ERR_CONFIG);
		assert_non_null(strstr(err.text, "notifications.thresholds"));
	}
}

/* [database] (issue 15): SQLite at path by default, PostgreSQL at url; both is refused, so
 * is a password in the url; the password file is read with the PIN file's checks. */
static void test_database_settings(void **state)
{
	static const char *const with_password[] = {
		"postgresql://cv:hunter2@db.example/certvault",
		"postgres://db.example/certvault?sslmode=require&password=hunter2",
		"host=db.example dbname=certvault password=hunter2",
		"host=db.example password = 'hunter2' dbname=certvault",
	};
	struct cv_config cfg;
	struct cv_errmsg err;
	const char *path;
	char *pw = NULL;
	size_t len = 0, i;

	(void)state;
	clear_env();
	assert_int_equal(cv_config_load(NULL, &cfg, &err), 0);
	assert_string_equal(cfg.db_path, "certvault.db");
	assert_string_equal(cfg.db_url, "");
	assert_int_equal(cv_config_db_password_read(&cfg, &pw, &len, &err), 0);
	assert_null(pw);
	cv_config_release(&cfg);

	path = write_file("pg.ini", "[database]\nurl = postgresql://cv@db.example:5433/certvault"
			  "?sslmode=verify-full\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), 0);
	assert_string_equal(cfg.db_url, "postgresql://cv@db.example:5433/certvault?sslmode=verify-full");
	cv_config_release(&cfg);

	path = write_file("both.ini", "[database]\npath = /var/lib/certvault/certvault.db\n"
			  "url = postgresql://db.example/certvault\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "both set"));
	/* The environment's path counts as set too. */
	path = write_file("url.ini", "[database]\nurl = postgresql://db.example/certvault\n", 0600);
	setenv("CERTVAULT_DATABASE_PATH", "/tmp/x.db", 1);
	assert_int_equal(cv_config_load(path, &cfg, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "both set"));
	unsetenv("CERTVAULT_DATABASE_PATH");

	for (i = 0; i < sizeof(with_password) / sizeof(with_password[0]); i++) {
		setenv("CERTVAULT_DATABASE_URL", with_password[i], 1);
		assert_int_equal(cv_config_load(NULL, &cfg, &err), CV_ERR_CONFIG);
		assert_non_null(strstr(err.text, "database.password_file"));
		assert_null(strstr(err.text, "hunter2"));
	}
	/* A user without a password, and "password" as part of another word, are fine. */
	setenv("CERTVAULT_DATABASE_URL", "host=db.example user=passwordless dbname=x", 1);
	assert_int_equal(cv_config_load(NULL, &cfg, &err), 0);
	cv_config_release(&cfg);
	unsetenv("CERTVAULT_DATABASE_URL");

	path = write_file("pwonly.ini", "[database]\npassword_file = /tmp/nothing\n", 0600);
	assert_int_equal(cv_config_load(path, &cfg, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "not set"));

	/* The password file: first line, owner-only, never in a message. */
	setenv("CERTVAULT_DATABASE_URL", "postgresql://cv@db.example/certvault", 1);
	setenv("CERTVAULT_DATABASE_PASSWORD_FILE", write_file("dbpw", "s3cret-db\nmore\n", 0600), 1);
	assert_int_equal(cv_config_load(NULL, &cfg, &err), 0);
	assert_int_equal(cv_config_db_password_read(&cfg, &pw, &len, &err), 0);
	assert_int_equal(len, 9);
	assert_string_equal(pw, "s3cret-db");
	OPENSSL_clear_free(pw, len + 1);
	cv_config_release(&cfg);
	setenv("CERTVAULT_DATABASE_PASSWORD_FILE", write_file("dbpw2", "s3cret-db\n", 0644), 1);
	assert_int_equal(cv_config_load(NULL, &cfg, &err), 0);
	assert_int_equal(cv_config_db_password_read(&cfg, &pw, &len, &err), CV_ERR_CONFIG);
	assert_non_null(strstr(err.text, "readable by others"));
	assert_null(strstr(err.text, "s3cret"));
	cv_config_release(&cfg);
	unsetenv("CERTVAULT_DATABASE_PASSWORD_FILE");
	unsetenv("CERTVAULT_DATABASE_URL");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_file_then_environment),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_database_settings),
		cmocka_unit_test(test_pin_sources),
		cmocka_unit_test(test_describe_lists_every_setting),
		cmocka_unit_test(test_notify_thresholds),
	};
	int failed;

	if (mkdtemp(dir) == NULL)
		return 1;
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	return failed;
}
