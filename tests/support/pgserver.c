/* Test support: a private PostgreSQL server (pgserver.h). */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "pgserver.h"
#include "softhsm.h"

/* The newest /usr/lib/postgresql/<version>/bin holding initdb, or $CV_PG_BINDIR. */
static int find_bindir(char *ret, size_t len)
{
	const char *env = getenv("CV_PG_BINDIR");
	DIR *d;
	struct dirent *e;
	long best = -1, v;
	char path[512], *end;

	if (env != NULL && env[0] != '\0') {
		snprintf(ret, len, "%s", env);
		return 0;
	}
	d = opendir("/usr/lib/postgresql");
	if (d == NULL) {
		fprintf(stderr, "ts_pgserver: no /usr/lib/postgresql (scripts/deps installs "
				"Debian's postgresql)\n");
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		errno = 0;
		v = strtol(e->d_name, &end, 10);
		if (errno != 0 || end == e->d_name || *end != '\0' || v <= best)
			continue;
		if ((size_t)snprintf(path, sizeof(path), "/usr/lib/postgresql/%s/bin/initdb",
				     e->d_name) >= sizeof(path) ||
		    access(path, X_OK) != 0)
			continue;
		if ((size_t)snprintf(ret, len, "/usr/lib/postgresql/%s/bin", e->d_name) >= len)
			continue;
		best = v;
	}
	closedir(d);
	if (best < 0) {
		fprintf(stderr, "ts_pgserver: no initdb under /usr/lib/postgresql/*/bin\n");
		return -1;
	}
	return 0;
}

/* Runs bindir/prog with args as the server's user, its output into dir/<prog>.log (shown on
 * failure). Returns 0 when it exited with 0. */
static int run(const struct ts_pgserver *pg, const char *prog, char *const args[])
{
	char path[512], log[512], line[512];
	char *argv[32];
	pid_t pid;
	int status, fd, i;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", pg->bindir, prog);
	snprintf(log, sizeof(log), "%s/%s.log", pg->dir, prog);
	argv[0] = path;
	for (i = 0; args[i] != NULL && i < 30; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	pid = fork();
	if (pid < 0) {
		perror("ts_pgserver: fork");
		return -1;
	}
	if (pid == 0) {
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0) {
			(void)fchown(fd, pg->uid, pg->gid);
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		if (getuid() != pg->uid &&
		    (setgroups(0, NULL) != 0 || setgid(pg->gid) != 0 || setuid(pg->uid) != 0)) {
			perror("ts_pgserver: dropping root");
			_exit(126);
		}
		execv(path, argv);
		perror(path);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "ts_pgserver: %s failed; its output:\n", prog);
	if ((f = fopen(log, "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			fprintf(stderr, "  %s", line);
		fclose(f);
	}
	return -1;
}

static int query(const char *conninfo, const char *sql)
{
	PGconn *conn = PQconnectdb(conninfo);
	PGresult *res = NULL;
	int r = -1;

	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "ts_pgserver: connecting: %s", PQerrorMessage(conn));
		goto out;
	}
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "ts_pgserver: %s: %s", sql, PQerrorMessage(conn));
		goto out;
	}
	r = 0;
out:
	PQclear(res);
	PQfinish(conn);
	return r;
}

/* Servers still running when the process exits (a test that failed before its teardown,
 * exit() from a setup): stopped at exit, so no cluster outlives its test. A copy, not a
 * pointer: the caller's struct may be gone by then. */
#define LIVE_MAX 8
static struct ts_pgserver live[LIVE_MAX];

static void stop_live(void)
{
	int i;

	for (i = 0; i < LIVE_MAX; i++)
		if (live[i].dir[0] != '\0')
			ts_pgserver_stop(&live[i]);
}

static void live_add(const struct ts_pgserver *pg)
{
	static int registered;
	int i;

	if (!registered && atexit(stop_live) == 0)
		registered = 1;
	for (i = 0; i < LIVE_MAX; i++) {
		if (live[i].dir[0] == '\0') {
			live[i] = *pg;
			return;
		}
	}
}

static void live_remove(const char *dir)
{
	int i;

	for (i = 0; i < LIVE_MAX; i++)
		if (live[i].dir != dir && strcmp(live[i].dir, dir) == 0)
			live[i].dir[0] = '\0';
}

int ts_pgserver_createdb(struct ts_pgserver *pg, const char *name, char *ret, size_t ret_len)
{
	char admin[512], sql[128];
	size_t i;

	for (i = 0; name[i] != '\0'; i++) {
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '_') || i >= 63) {
			fprintf(stderr, "ts_pgserver_createdb: bad name\n");
			return -1;
		}
	}
	snprintf(admin, sizeof(admin), "host=%s user=postgres dbname=postgres", pg->dir);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	if (query(admin, sql) < 0)
		return -1;
	if ((size_t)snprintf(ret, ret_len, "host=%s user=postgres dbname=%s", pg->dir, name) >=
	    ret_len)
		return -1;
	return 0;
}

int ts_pgserver_start(struct ts_pgserver *pg)
{
	char data[512], log[512], opts[768];
	const struct passwd *pw;

	memset(pg, 0, sizeof(*pg));
	if (find_bindir(pg->bindir, sizeof(pg->bindir)) < 0)
		return -1;
	pg->uid = getuid();
	pg->gid = getgid();
	if (geteuid() == 0) {
		/* PostgreSQL will not run as root */
		pw = getpwnam("nobody");
		if (pw == NULL) {
			fprintf(stderr, "ts_pgserver: running as root and no user nobody\n");
			return -1;
		}
		pg->uid = pw->pw_uid;
		pg->gid = pw->pw_gid;
	}
	/* /tmp, not $TMPDIR: the server's user must reach it, and the socket's path must stay
	 * under the 107 bytes of sun_path */
	snprintf(pg->dir, sizeof(pg->dir), "/tmp/cv-pg-XXXXXX");
	if (mkdtemp(pg->dir) == NULL) {
		perror("ts_pgserver: mkdtemp");
		return -1;
	}
	if (chown(pg->dir, pg->uid, pg->gid) != 0) {
		perror("ts_pgserver: chown");
		goto fail;
	}
	snprintf(data, sizeof(data), "%s/data", pg->dir);
	snprintf(log, sizeof(log), "%s/server.log", pg->dir);
	/* -N/--no-sync: initdb's own fsyncs, a second of the start on a busy disk */
	if (run(pg, "initdb",
		(char *[]){ "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
			    "--no-locale", "--no-sync", NULL }) < 0)
		goto fail;
	snprintf(opts, sizeof(opts),
		 "-k %s -c listen_addresses= -c fsync=off -c full_page_writes=off"
		 " -c synchronous_commit=off -c shared_buffers=16MB -c max_connections=60",
		 pg->dir);
	if (run(pg, "pg_ctl",
		(char *[]){ "-D", data, "-l", log, "-w", "-s", "-o", opts, "start", NULL }) < 0)
		goto fail;
	pg->running = 1;
	live_add(pg);
	if (ts_pgserver_createdb(pg, "certvault", pg->conninfo, sizeof(pg->conninfo)) < 0)
		goto fail;
	return 0;
fail:
	ts_pgserver_stop(pg);
	return -1;
}

void ts_pgserver_stop(struct ts_pgserver *pg)
{
	char data[512];

	if (pg->dir[0] == '\0')
		return;
	live_remove(pg->dir);
	if (pg->running) {
		snprintf(data, sizeof(data), "%s/data", pg->dir);
		(void)run(pg, "pg_ctl",
			  (char *[]){ "-D", data, "-m", "immediate", "-s", "stop", NULL });
		pg->running = 0;
	}
	(void)ts_softhsm_remove(pg->dir);
	pg->dir[0] = '\0';
}
