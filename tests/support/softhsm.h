/* Test support: fresh SoftHSM2 tokens in a directory of their own. Not part of certvault. */
#ifndef CERTVAULT_TS_SOFTHSM_H
#define CERTVAULT_TS_SOFTHSM_H

#define TS_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"

/* The module to load: $SOFTHSM2_MODULE if set, else TS_SOFTHSM_MODULE. */
const char *ts_softhsm_module(void);

/* Writes dir/softhsm2.conf (tokens under dir/tokens, file object store, log level ERROR),
 * creates dir/tokens and points SOFTHSM2_CONF at the file in this process's environment, so
 * that the next C_Initialize of SoftHSM in this process or its children uses it.
 * Returns 0, or -1 with the reason on stderr. */
int ts_softhsm_setup(const char *dir);

/* Initialises SoftHSM's free slot as a token labelled label (at most 32 bytes) with so_pin
 * and user_pin, through PKCS#11 (C_InitToken, then C_Login as SO and C_InitPIN): no PIN on a
 * command line. SoftHSM reads its configuration at C_Initialize, so call this while nothing
 * in the process holds the module initialized (no open cv_token). Returns 0, or -1 with the
 * reason on stderr. */
int ts_softhsm_init_token(const char *label, const char *so_pin, const char *user_pin);

/* ts_softhsm_setup(dir) then ts_softhsm_init_token(label, so_pin, user_pin). */
int ts_softhsm_new(const char *dir, const char *label, const char *so_pin,
		   const char *user_pin);

/* Removes dir and everything under it (no symlinks followed). Returns 0 or -1. */
int ts_softhsm_remove(const char *dir);

#endif
