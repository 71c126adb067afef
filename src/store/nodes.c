/* store: several nodes on one database (issue 15): this node's name on the rows of its writes
 * in flight, and its heartbeat in the nodes table, so that another node's reconciler can tell
 * an abandoned row from a live node's write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int cv_store_node_set(struct cv_store *store, const char *node, int64_t lease_seconds)
{
	size_t len = node != NULL ? strlen(node) : 0;

	if (len >= sizeof(store->node) || lease_seconds < 1)
		return CV_ERR_CONFIG;
	memcpy(store->node, node != NULL ? node : "", len + 1);
	store->node_lease = lease_seconds;
	return 0;
}

const char *store_node(const struct cv_store *store)
{
	return store->node;
}

int64_t store_node_stale_before(const struct cv_store *store, int64_t now)
{
	/* No lease set (a tool, a test): a silent node's rows are anyone's at once. */
	return store->node_lease > 0 ? now - store->node_lease : now;
}

int cv_store_node_register(struct cv_store *store, int64_t now)
{
	struct store_conn *conn;
	int r;

	if (store->node[0] == '\0')
		return CV_ERR_CONFIG;
	conn = store_borrow(store);
	/* A node that starts again takes its row over: its started_at tells its heartbeats
	 * from those of another process started under the same name since. */
	r = store_run(conn->db,
		      "INSERT INTO nodes (name, started_at, heartbeat_at) VALUES (?1, ?2, ?2)"
		      " ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at,"
		      " heartbeat_at = excluded.heartbeat_at",
		      "ti", store->node, now);
	store_return(store, conn);
	if (r == 0)
		store->node_started_at = now;
	return r;
}

/* Runs sql (?1 node, ?2 started_at, ?3 value) on this node's row; CV_ERR_NAME_TAKEN when the
 * row is another process's now. */
static int node_update(struct cv_store *store, const char *sql, int64_t value)
{
	struct store_conn *conn;
	int r;

	if (store->node[0] == '\0' || store->node_started_at == 0)
		return CV_ERR_CONFIG;
	conn = store_borrow(store);
	r = store_run(conn->db, sql, "tii", store->node, store->node_started_at, value);
	if (r == 0 && cvdb_changes(conn->db) == 0)
		r = CV_ERR_NAME_TAKEN;
	store_return(store, conn);
	return r;
}

int cv_store_node_heartbeat(struct cv_store *store, int64_t now)
{
	return node_update(store, "UPDATE nodes SET heartbeat_at = ?3 WHERE name = ?1"
			   " AND started_at = ?2", now);
}

int cv_store_node_stopped(struct cv_store *store)
{
	/* A clean stop leaves nothing in flight: its rows (none) are anyone's at once. */
	return node_update(store, "UPDATE nodes SET heartbeat_at = ?3 WHERE name = ?1"
			   " AND started_at = ?2", 0);
}

static int id_order(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

int store_claimed_ids(cvdb_stmt *stmt, int64_t **ret_ids, size_t *ret_n)
{
	int64_t *ids = NULL, *grown;
	size_t n = 0, cap = 0;
	int rc, r;

	while ((rc = cvdb_step(stmt)) == SQLITE_ROW) {
		grown = store_grow(ids, &cap, n, sizeof(*ids));
		if (grown == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
		ids = grown;
		ids[n++] = cvdb_column_int64(stmt, 0);
	}
	if (rc != SQLITE_DONE) {
		r = store_err(rc);
		goto out;
	}
	/* RETURNING gives rows in no promised order; the reconciler works oldest first. */
	if (n > 1)
		qsort(ids, n, sizeof(*ids), id_order);
	*ret_ids = ids;
	*ret_n = n;
	ids = NULL;
	r = 0;
out:
	free(ids);
	return r;
}
