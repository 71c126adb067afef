/* Test support: a private PostgreSQL server for one test process (issue 15). Not part of
 * certvault.
 *
 * Debian's server binaries (/usr/lib/postgresql/<version>/bin, the newest; $CV_PG_BINDIR
 * overrides) initdb a cluster in a fresh temporary directory, and pg_ctl starts it listening
 * on a Unix socket in that directory only (no TCP), as an unprivileged user when the test
 * runs as root (PostgreSQL refuses to run as root; CI runs as root). Durability is switched
 * off (fsync, full-page writes, synchronous commit): the cluster is thrown away at the end,
 * so a power cut loses nothing a test needs, and starting and writing stay quick. */
#ifndef CERTVAULT_TS_PGSERVER_H
#define CERTVAULT_TS_PGSERVER_H

#include <stddef.h>
#include <sys/types.h>

struct ts_pgserver {
	char dir[256];       /* the temporary directory: data/, the socket, server.log */
	char bindir[256];
	char conninfo[512];  /* libpq connection string of the database "certvault" */
	uid_t uid;           /* the user the server runs as */
	gid_t gid;
	int running;
};

/* Makes the cluster, starts it, creates the database "certvault" (empty: no extension).
 * Returns 0, or -1 with the reason on stderr (and nothing left behind). Takes about a
 * second. */
int ts_pgserver_start(struct ts_pgserver *pg);

/* Creates one more empty database, name of [a-z0-9_] (at most 63 bytes), and writes its
 * connection string into ret (ret_len bytes). Returns 0 or -1 (reason on stderr). */
int ts_pgserver_createdb(struct ts_pgserver *pg, const char *name, char *ret, size_t ret_len);

/* Stops the server at once (pg_ctl stop -m immediate) and removes the directory. Fine on a
 * server that was never started or is already stopped. */
void ts_pgserver_stop(struct ts_pgserver *pg);

#endif
