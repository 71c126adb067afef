/* token: what the files of src/token share. Not installed, not included outside src/token. */
#ifndef CERTVAULT_TOKEN_INTERNAL_H
#define CERTVAULT_TOKEN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "certvault/error.h"
#include "certvault/token.h"

/* Longest CKA_ID the map keeps; objects other tools made with longer ids are not listed. */
#define TOKEN_ID_MAX 64

/* One CKA_ID and the objects that carry it. A pending entry is being created or destroyed by
 * one thread: the others see it as absent but cannot take its id. */
struct keymap_entry {
	uint8_t id[TOKEN_ID_MAX];
	size_t id_len;          /* 0: the slot is empty */
	CK_OBJECT_HANDLE priv;  /* CK_INVALID_HANDLE: only a public key carries this id */
	CK_OBJECT_HANDLE pub;   /* CK_INVALID_HANDLE: none */
	int pending;
};

/* Open addressing with linear probing; capacity is a power of two, at most half full.
 * Handles are only good within one login: when the token drops every session (a reset, a
 * removal) SoftHSM, like most modules, forgets them. Each listing bumps epoch, so that a call
 * that looked up handles before it can tell its handles are stale. */
struct keymap {
	pthread_mutex_t lock;
	/* Serialises C_CreateObject and C_DestroyObject (taken before lock, never inside it).
	 * SoftHSM 2.6's file store fails creates that race other sessions' creates and destroys
	 * with CKR_GENERAL_ERROR or CKR_TEMPLATE_INCONSISTENT (softhsm/SoftHSMv2#573; seen here
	 * with 16 clients importing at once). Keys are made and destroyed seldom; signing and
	 * reading attributes are not held up. */
	pthread_mutex_t writes;
	struct keymap_entry *slots;
	size_t capacity;
	size_t used;
	unsigned long epoch;   /* listings done; 0: never listed */
};

struct pool {
	pthread_mutex_t lock;
	/* Serialises logging in and relisting, so no session is handed out between a new login
	 * and the listing that refreshes the handles. */
	pthread_mutex_t login_lock;
	pthread_cond_t changed;
	CK_SESSION_HANDLE *idle;  /* open sessions nobody borrowed, a stack of size entries */
	unsigned n_idle;
	unsigned n_open;          /* idle + borrowed + being opened */
	unsigned size;
};

struct cv_token {
	struct module *module;
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	/* The PIN is kept only to log in again after the token dropped every session. */
	char *pin;
	size_t pin_len;
	/* Token info strings without their padding, for URIs. */
	char label[33];
	char manufacturer[33];
	char model[17];
	char serial[17];
	struct pool pool;
	struct keymap map;
	/* Counted where the calls are made; relaxed: they order nothing. */
	atomic_uint_fast64_t calls[CV_TOKEN_OP_COUNT];
	atomic_uint_fast64_t errors[CV_TOKEN_OP_COUNT];
};

/* Counts one call of op, and a failure when failed. */
static inline void token_count(struct cv_token *token, enum cv_token_op op, int failed)
{
	atomic_fetch_add_explicit(&token->calls[op], 1, memory_order_relaxed);
	if (failed)
		atomic_fetch_add_explicit(&token->errors[op], 1, memory_order_relaxed);
}

/* A call made on a borrowed session; returns the CK_RV of the call that failed and names it
 * in *ret_call. */
typedef CK_RV (*token_session_fn)(struct cv_token *token, CK_SESSION_HANDLE session,
				  void *arg, const char **ret_call);

/* module.c */
/* Converts rv of the PKCS#11 function call into a cv_err, with a message naming both. */
int token_rv_err(CK_RV rv, const char *call, struct cv_errmsg *err);
/* Whether rv means the session (or the login behind it) is gone, so that a fresh session
 * could succeed. */
int token_rv_session_dead(CK_RV rv);
/* Copies a space-padded token info field without its padding, NUL-terminated. */
void token_trim(const CK_UTF8CHAR *field, size_t len, char *buf);

/* pool.c */
int token_pool_init(struct pool *pool, unsigned size);
/* Closes every idle session; the caller made sure none is borrowed. */
void token_pool_release(struct cv_token *token);
/* Borrows an open, logged-in R/W session, opening one when none is idle and the pool is not
 * full, else waiting. Returns 0 or a cv_err. */
int token_pool_borrow(struct cv_token *token, CK_SESSION_HANDLE *ret_session,
		      struct cv_errmsg *err);
/* Gives a session back; a dead one is closed and its place freed for a new one. */
void token_pool_return(struct cv_token *token, CK_SESSION_HANDLE session, int dead);
/* Runs fn on a borrowed session, and once more on a fresh one when the first died.
 * Returns 0 or the cv_err of the failing call. */
int token_run(struct cv_token *token, token_session_fn fn, void *arg, struct cv_errmsg *err);

/* keymap.c */
int token_keymap_init(struct keymap *map);
void token_keymap_release(struct keymap *map);
/* Adds or completes the entry for id while listing: sets priv or pub if not set yet.
 * Caller holds the lock. Returns 0 or CV_ERR_NOMEM. */
int token_keymap_put_locked(struct keymap *map, const uint8_t *id, size_t id_len,
			    CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE handle);
/* The entry for id, or NULL. Caller holds the lock; the pointer is valid until it is released
 * or the map changes. */
struct keymap_entry *token_keymap_find_locked(struct keymap *map, const uint8_t *id,
					      size_t id_len);
/* Adds a pending entry for id. Caller holds the lock. Returns 0, CV_ERR_NAME_TAKEN or
 * CV_ERR_NOMEM. */
int token_keymap_reserve_locked(struct keymap *map, const uint8_t *id, size_t id_len);
/* Removes the entry for id if present. Caller holds the lock. */
void token_keymap_remove_locked(struct keymap *map, const uint8_t *id, size_t id_len);

/* keys.c */
/* Lists the token's key objects on session (one C_FindObjects loop) and makes the map match:
 * new handles for every id, entries of vanished objects dropped, pending ones kept. Returns
 * the CK_RV of the failing call, named in *ret_call. */
CK_RV token_keys_relist(struct cv_token *token, CK_SESSION_HANDLE session,
			const char **ret_call);
/* The listing at open, unless logging in already did it. */
int token_keys_list(struct cv_token *token, struct cv_errmsg *err);

#endif
