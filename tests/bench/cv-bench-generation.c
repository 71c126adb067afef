/* What a cache's generation check costs (issue 15): cv_store_certs_generation on SQLite (an
 * atomic the process's own writes move) and on a private PostgreSQL (one indexed read of the
 * row the triggers bump, so that every node's writes move it), against a details read
 * (cv_store_cert_get) on the same store, N times each on one thread.
 *
 *   cv-bench-generation [N]     (default 20000)
 *
 * Prints, per engine, the microseconds per call of each. Not a test: timings on a shared
 * machine are no pass/fail matter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "certvault/store.h"
#include "pgserver.h"

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* One certificate row to read back. */
static int add_one(struct cv_store *store)
{
	struct cv_cert_record rec;
	static unsigned char der[] = { 0x30, 0x00 };
	int r;

	memset(&rec, 0, sizeof(rec));
	snprintf(rec.name, sizeof(rec.name), "bench");
	rec.description = "";
	rec.cert_der = der;
	rec.cert_der_len = sizeof(der);
	rec.chain_pem = "";
	snprintf(rec.subject, sizeof(rec.subject), "CN=bench");
	snprintf(rec.issuer, sizeof(rec.issuer), "CN=bench");
	snprintf(rec.serial, sizeof(rec.serial), "01");
	snprintf(rec.sha256_fingerprint, sizeof(rec.sha256_fingerprint), "00");
	snprintf(rec.key_description, sizeof(rec.key_description), "EC P-256");
	rec.not_before = 0;
	rec.not_after = 4000000000;
	memset(rec.key_id, 0x42, sizeof(rec.key_id));
	rec.created_at = rec.updated_at = 1700000000;
	r = cv_store_cert_insert_pending(store, &rec, NULL);
	if (r == 0)
		r = cv_store_cert_activate(store, rec.id, NULL);
	return r;
}

static int measure(const char *engine, struct cv_store *store, long n)
{
	struct cv_cert_record *rec = NULL;
	volatile uint64_t sink = 0;
	double t0, t1, t2;
	long i;

	if (add_one(store) != 0) {
		fprintf(stderr, "%s: cannot insert the row\n", engine);
		return -1;
	}
	t0 = now_us();
	for (i = 0; i < n; i++)
		sink += cv_store_certs_generation(store);
	t1 = now_us();
	for (i = 0; i < n; i++) {
		if (cv_store_cert_get(store, "bench", &rec) != 0) {
			fprintf(stderr, "%s: details read failed\n", engine);
			return -1;
		}
		cv_store_cert_free(rec);
	}
	t2 = now_us();
	(void)sink;
	printf("%-10s generation %8.2f us/call   details read %8.2f us/call   (%ld calls)\n",
	       engine, (t1 - t0) / (double)n, (t2 - t1) / (double)n, n);
	return 0;
}

int main(int argc, char **argv)
{
	struct ts_pgserver pg;
	struct cv_errmsg err = { "" };
	struct cv_store *store = NULL;
	char dir[] = "/tmp/cv-bench-gen-XXXXXX", path[600];
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
	int status = 1;

	memset(&pg, 0, sizeof(pg));
	if (n < 1 || n > 10000000 || mkdtemp(dir) == NULL)
		return 2;
	snprintf(path, sizeof(path), "%s/bench.db", dir);
	if (cv_store_open(path, &store, &err) != 0 || measure("sqlite", store, n) != 0) {
		fprintf(stderr, "sqlite: %s\n", err.text);
		goto out;
	}
	cv_store_free(store);
	store = NULL;
	if (ts_pgserver_start(&pg) != 0)
		goto out;
	if (cv_store_open_pg(pg.conninfo, NULL, &store, &err) != 0 ||
	    measure("postgresql", store, n) != 0) {
		fprintf(stderr, "postgresql: %s\n", err.text);
		goto out;
	}
	status = 0;
out:
	cv_store_free(store);
	ts_pgserver_stop(&pg);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	if (system(path) != 0)
		status = 1;
	return status;
}
