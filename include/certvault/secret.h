/* secret: keeping the PIN (and what the token module holds) out of places it could leak from
 * at the process level: the environment, core dumps, swap. */
#ifndef CERTVAULT_SECRET_H
#define CERTVAULT_SECRET_H

#include <stddef.h>

#include "certvault/error.h"

/* Makes the process undumpable: RLIMIT_CORE 0 (soft and hard, so it cannot be raised again)
 * and prctl(PR_SET_DUMPABLE, 0), so that a crash or a signal writes no core file holding the
 * PIN or the token module's keys, and no process of the same user can ptrace it or read its
 * memory through /proc. Call before any secret is read. Returns 0, or CV_ERR_INTERNAL with err
 * naming the call that failed. */
int cv_secret_process_protect(struct cv_errmsg *err);

/* Memory for a secret kept for a long time (the token's PIN): its own pages, locked in RAM
 * when RLIMIT_MEMLOCK allows (else not, silently) and excluded from core dumps
 * (MADV_DONTDUMP). Returns len zeroed bytes, or NULL when out of memory. */
void *cv_secret_alloc(size_t len);
/* Wipes and releases what cv_secret_alloc(len) returned; accepts NULL. */
void cv_secret_free(void *p, size_t len);

/* Takes the value of environment variable name out of the environment: returns a copy in
 * OPENSSL_malloc'd memory (release with OPENSSL_clear_free(value, *ret_len + 1)), then
 * overwrites the value in place (the bytes /proc/PID/environ shows) and unsets it. Returns
 * NULL when name is unset or empty (nothing is touched) or when out of memory (*ret_len is
 * then SIZE_MAX and the value is wiped all the same). */
char *cv_secret_env_take(const char *name, size_t *ret_len);

#endif
