/* store: what the files of src/store share. Not installed, not included outside src/store. */
#ifndef CERTVAULT_STORE_INTERNAL_H
#define CERTVAULT_STORE_INTERNAL_H

#include <pthread.h>

#include <sqlite3.h>

#include "certvault/store.h"

/* Enough for the HTTP thread pool's concurrent readers; writers queue on SQLite's own lock. */
#define STORE_POOL_SIZE 4

struct cv_store {
	pthread_mutex_t lock;
	pthread_cond_t returned;
	sqlite3 *conns[STORE_POOL_SIZE];
	sqlite3 *idle[STORE_POOL_SIZE]; /* a stack of n_idle connections nobody borrowed */
	unsigned n_idle;
	unsigned n_open;
};

/* Waits for an idle connection and hands it out; store_return gives it back. A caller never
 * holds two at once, so the pool cannot deadlock on itself. */
sqlite3 *store_borrow(struct cv_store *store);
void store_return(struct cv_store *store, sqlite3 *db);

/* Converts a SQLite result code at the border: every failure is CV_ERR_DB. */
int store_err(int rc);

/* Runs a statement without parameters or rows (BEGIN, COMMIT, ROLLBACK). 0 or CV_ERR_DB. */
int store_exec(sqlite3 *db, const char *sql);

/* Ends a transaction: COMMIT when r is 0 (returning COMMIT's outcome), else ROLLBACK
 * (returning r unchanged). */
int store_finish(sqlite3 *db, int r);

#endif
