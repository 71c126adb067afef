/* Unit tests for the pure parts of the command line (src/cli): escaping path segments, the
 * table for people, local times, exit codes, the token's sources and their mode check, and
 * atomic writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "certvault/cli.h"

static char dir[] = "/tmp/cv-cli-XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_escape(void **state)
{
	char buf[64] = "/v1/certificates/";

	(void)state;
	assert_int_equal(cv_cli_escape("a b/c?d&e%f", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/v1/certificates/a%20b%2Fc%3Fd%26e%25f");
	buf[0] = '\0';
	assert_int_equal(cv_cli_escape("caf\xc3\xa9-._~", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "caf%C3%A9-._~");
	/* Too long: refused, never cut. */
	char small[8] = "";
	assert_int_equal(cv_cli_escape("abcdefgh", small, sizeof(small)), -1);
}

static void test_exit_codes(void **state)
{
	(void)state;
	assert_int_equal(cv_cli_exit_for_status(200), CV_CLI_OK);
	assert_int_equal(cv_cli_exit_for_status(201), CV_CLI_OK);
	assert_int_equal(cv_cli_exit_for_status(304), CV_CLI_OK);
	assert_int_equal(cv_cli_exit_for_status(404), CV_CLI_REFUSED);
	assert_int_equal(cv_cli_exit_for_status(422), CV_CLI_REFUSED);
	assert_int_equal(cv_cli_exit_for_status(500), CV_CLI_UNAVAILABLE);
	assert_int_equal(cv_cli_exit_for_status(503), CV_CLI_UNAVAILABLE);
	assert_int_equal(cv_cli_exit_for_status(302), CV_CLI_UNAVAILABLE);
}

static char *table(char *const *cells, size_t rows, int colour)
{
	static const char *const headers[] = { "NAME", "STATUS", "DOMAIN" };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cv_cli_table_print(f, headers, 3, cells, rows, 1, colour);
	fclose(f);
	return buf;
}

static void test_table(void **state)
{
	char *cells[] = { "www", "valid", "www.example.com", "a-much-longer-name", "expired", NULL,
			  "caf\xc3\xa9", "upcoming", "x\033[2Jy" };
	char *out;

	(void)state;
	out = table(cells, 3, 0);
	assert_string_equal(out,
			    "NAME                STATUS    DOMAIN\n"
			    "www                 valid     www.example.com\n"
			    "a-much-longer-name  expired   \n"
			    "caf\xc3\xa9                upcoming  x?[2Jy\n");
	free(out);
	/* Colour: the header bold, each status in its colour, reset after. */
	out = table(cells, 2, 1);
	assert_non_null(strstr(out, "\033[1mNAME\033[0m"));
	assert_non_null(strstr(out, "\033[32mvalid\033[0m"));
	assert_non_null(strstr(out, "\033[31mexpired\033[0m"));
	free(out);
}

static void test_local_time(void **state)
{
	char buf[64];

	(void)state;
	setenv("TZ", "Europe/Amsterdam", 1);
	tzset();
	cv_cli_local_time("2026-12-06T10:02:00Z", buf, sizeof(buf));
	assert_string_equal(buf, "2026-12-06 11:02 CET");
	cv_cli_local_time("2026-07-01T10:02:00+02:00", buf, sizeof(buf));
	assert_string_equal(buf, "2026-07-01 10:02 CEST");
	cv_cli_local_time("not a time", buf, sizeof(buf));
	assert_string_equal(buf, "not a time");
	setenv("TZ", "UTC", 1);
	tzset();
	cv_cli_local_time("2026-12-06T10:02:00+01:00", buf, sizeof(buf));
	assert_string_equal(buf, "2026-12-06 09:02 UTC");
}

static void test_token_sources(void **state)
{
	struct cv_cli_conn conn;
	char err[512], tok[256], cfg[256];

	(void)state;
	unsetenv("CERTVAULT_TOKEN");
	unsetenv("CERTVAULT_URL");
	snprintf(tok, sizeof(tok), "%s/tok", dir);
	snprintf(cfg, sizeof(cfg), "%s/config", dir);
	write_file(tok, "cvt_0123456789abcdef_secret\n", 0600);
	write_file(cfg, "url = https://vault.example.com:8443/\ntoken_file = ", 0600);

	/* A token file: one line, the line end dropped; the URL's slash dropped. */
	assert_int_equal(cv_cli_conn_init(&conn, "http://h:1/", tok, NULL, "/nonexistent-ok",
					  err, sizeof(err)),
			 CV_CLI_USAGE); /* a named config file must exist */
	write_file(cfg, "url = https://vault.example.com:8443/\n", 0644);
	assert_int_equal(cv_cli_conn_init(&conn, NULL, tok, NULL, cfg, err, sizeof(err)),
			 CV_CLI_OK);
	assert_string_equal(conn.url, "https://vault.example.com:8443");
	assert_string_equal(conn.token, "cvt_0123456789abcdef_secret");
	cv_cli_conn_release(&conn);

	/* Others may read the token file: refused, naming the fix. */
	chmod(tok, 0640);
	assert_int_equal(cv_cli_conn_init(&conn, NULL, tok, NULL, cfg, err, sizeof(err)),
			 CV_CLI_USAGE);
	assert_non_null(strstr(err, "chmod 600"));
	chmod(tok, 0600);

	/* A config file holding a token must be private too; the environment beats it. */
	write_file(cfg, "[certvault]\nurl = http://127.0.0.1:9\ntoken = cvt_from_config\n", 0604);
	assert_int_equal(cv_cli_conn_init(&conn, NULL, NULL, NULL, cfg, err, sizeof(err)),
			 CV_CLI_USAGE);
	chmod(cfg, 0600);
	assert_int_equal(cv_cli_conn_init(&conn, NULL, NULL, NULL, cfg, err, sizeof(err)),
			 CV_CLI_OK);
	assert_string_equal(conn.token, "cvt_from_config");
	assert_string_equal(conn.url, "http://127.0.0.1:9");
	cv_cli_conn_release(&conn);
	setenv("CERTVAULT_TOKEN", "cvt_from_env", 1);
	assert_int_equal(cv_cli_conn_init(&conn, NULL, NULL, NULL, cfg, err, sizeof(err)),
			 CV_CLI_OK);
	assert_string_equal(conn.token, "cvt_from_env");
	cv_cli_conn_release(&conn);
	unsetenv("CERTVAULT_TOKEN");

	/* Unknown settings and other schemes are refused. */
	write_file(cfg, "password = hunter2\n", 0600);
	assert_int_equal(cv_cli_conn_init(&conn, NULL, NULL, NULL, cfg, err, sizeof(err)),
			 CV_CLI_USAGE);
	assert_non_null(strstr(err, "unknown setting"));
	assert_int_equal(cv_cli_conn_init(&conn, "ftp://x", NULL, NULL, "/dev/null", err,
					  sizeof(err)),
			 CV_CLI_USAGE);
}

static void test_write_atomic(void **state)
{
	char path[256], err[512], *buf = NULL;
	size_t len = 0;
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/out.pem", dir);
	write_file(path, "old", 0600);
	assert_int_equal(cv_cli_write_atomic(path, "new content", 11, 0644, err, sizeof(err)), 0);
	assert_int_equal(cv_cli_read_file(path, 100, &buf, &len, err, sizeof(err)), 0);
	assert_string_equal(buf, "new content");
	free(buf);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	/* Larger than allowed: refused, not cut. */
	assert_int_equal(cv_cli_read_file(path, 5, &buf, &len, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "larger than"));
	snprintf(path, sizeof(path), "%s/no-such-dir/out.pem", dir);
	assert_int_equal(cv_cli_write_atomic(path, "x", 1, 0644, err, sizeof(err)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),      cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_table),       cmocka_unit_test(test_local_time),
		cmocka_unit_test(test_token_sources), cmocka_unit_test(test_write_atomic),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
