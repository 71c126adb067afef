/* token: what the files of src/token share. Not installed, not included outside src/token. */
#ifndef CERTVAULT_TOKEN_INTERNAL_H
#define CERTVAULT_TOKEN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
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
	/* Both handles invalid and not pending: a search (token_key_lookup) found nothing
	 * under the id; until this CLOCK_MONOTONIC second nobody asks the token again. */
	time_t absent_until;
};

/* How long a search that found no key under an id is believed (see struct keymap_entry): a
 * search costs a scan of the token (SoftHSM 2.6: ~90 ms at 1,000 objects), and a reader who
 * keeps asking for a certificate whose key is missing must not keep the token busy. Keys are
 * named in a row before they are made, and read through rows made after, so a key made
 * under an id a search just missed is not a flow certvault has. */
#define TOKEN_ABSENT_SECONDS 30

/* A secret key object the last listing saw, for finding one by label without searching the
 * token again (cv_token_secret_find at start: the audit chain's key). */
#define TOKEN_SECRET_LABEL_MAX 64
struct listed_secret {
	CK_OBJECT_HANDLE handle;
	char label[TOKEN_SECRET_LABEL_MAX + 1];
	uint8_t id[TOKEN_ID_MAX];
	size_t id_len;
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
	pthread_mutex_t writes;  /* taken only when token->serialize_creates is set */
	struct keymap_entry *slots;
	size_t capacity;
	size_t used;
	unsigned long epoch;   /* listings done; 0: never listed */
	/* The wall-clock second the last complete listing began (0: none): a key a database
	 * row named well before it and the listing did not see is absent, without a search
	 * (cv_token_key_exists_since). */
	int64_t listed_at;
	int64_t clock_skew;    /* cv_token_config.clock_skew */
	/* The token's secret keys as the listing of epoch secrets_epoch saw them (few: the audit
	 * key). 0: not usable (a secret key was made since, or one could not be read whole):
	 * ask the token. */
	struct listed_secret *secrets;
	size_t n_secrets;
	unsigned long secrets_epoch;
	/* The listing at open reads the token's private objects only (private and secret keys:
	 * what requests use) and leaves the public key objects to a second listing on a thread
	 * of its own (token_keys_list), which puts their handles in while requests are served.
	 * public_epoch: the listing whose public key objects are all in the map (== epoch: every
	 * handle is there); public_listing: that thread is at it; public_done is signalled when
	 * it ends. Any later listing (a new login) reads both at once. */
	unsigned long public_epoch;
	int public_listing;
	pthread_cond_t public_done;
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

/* What a failed call's CK_RV says about the token behind it. */
enum token_rv_kind {
	TOKEN_RV_ANSWER = 0,   /* the token answered: the call's result stands */
	TOKEN_RV_SESSION_DEAD, /* the session or its login is gone: a fresh one may succeed,
				  unless the token itself is gone */
	TOKEN_RV_SUSPECT,      /* an answer that a vanished token also gives (SoftHSM, its
				  directory gone, answers CKR_GENERAL_ERROR to a create and
				  CKR_OBJECT_HANDLE_INVALID for every key): ask before believing */
};

struct cv_token {
	struct module *module;
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;          /* written only by recovery, under state_lock as writer */
	/* The PIN, kept to log in again after the token dropped every session or came back
	 * (no restart, so nobody can type it again). It lives in an OPENSSL_malloc'd buffer
	 * released with OPENSSL_clear_free, never in a log line or an error message. The
	 * price: a core dump or a debugger on the running process can read it. */
	char *pin;
	size_t pin_len;
	/* Every PKCS#11 call holds state_lock as a reader; recovery holds it as the writer while
	 * it finalizes the module and replaces the slot, the sessions and the handles, so no
	 * call runs on a session or a handle of the token as it was before. */
	pthread_rwlock_t state_lock;
	atomic_int up;            /* 0: the token stopped answering; calls fail at once */
	atomic_llong answered_ms; /* CLOCK_MONOTONIC ms of the last call it answered; 0: none */
	/* One recovery at a time, at most one a second; guards last_attempt. Taken before
	 * state_lock, never while holding it. */
	pthread_mutex_t recover_lock;
	struct timespec last_attempt;  /* CLOCK_MONOTONIC; 0: none yet */
	/* A leaf lock for down_reason: why the token is down ("" when up), for errors and
	 * health. Never holds the PIN: it names calls and CKR_s. */
	pthread_mutex_t reason_lock;
	char down_reason[160];
	/* Token info strings without their padding, for URIs. */
	char label[33];
	char manufacturer[33];
	char model[17];
	char serial[17];
	CK_VERSION firmware;      /* the token's own (SoftHSM: its version, behind any proxy) */
	struct pool pool;
	struct keymap map;
	/* The listing of public key objects at open (struct keymap); closing stops it. */
	pthread_t public_thread;
	int public_thread_started;
	atomic_int closing;
	/* Makes the token's storage durable (durable.c); NULL: nothing to do, the module's
	 * answer is durable. sync_describe says which, for the start-up line. */
	struct durable *durable;
	char sync_describe[640];
	/* Whether creates and destroys take map.writes (token.serialize_creates), and why. Set
	 * at open, read-only after. */
	int serialize_creates;
	char serialize_describe[200];
	/* Counted where the calls are made; relaxed: they order nothing. */
	atomic_uint_fast64_t calls[CV_TOKEN_OP_COUNT];
	atomic_uint_fast64_t errors[CV_TOKEN_OP_COUNT];
};

/* Around C_CreateObject, C_GenerateKeyPair, C_UnwrapKey and C_DestroyObject of keys: one at
 * a time when the module needs it (see struct keymap), else nothing. */
static inline void token_writes_lock(struct cv_token *token)
{
	if (token->serialize_creates)
		pthread_mutex_lock(&token->map.writes);
}

static inline void token_writes_unlock(struct cv_token *token)
{
	if (token->serialize_creates)
		pthread_mutex_unlock(&token->map.writes);
}

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
/* What rv says about the token (see enum token_rv_kind). CKR_OK is an answer. */
enum token_rv_kind token_rv_kind(CK_RV rv);
/* Whether rv means the session (or the login behind it) is gone, so that a fresh session
 * could succeed. */
int token_rv_session_dead(CK_RV rv);
/* The CKR_ name of rv ("CKR_VENDOR_DEFINED" or "CKR_(unknown)" for others). */
const char *token_ckr_name(CK_RV rv);
/* Finalizes and initializes the module again when this token is its only user and certvault
 * initialized it (SoftHSM reads its token directory only at C_Initialize). Returns CKR_OK,
 * CKR_OK without doing anything when others share it, or C_Initialize's answer. */
CK_RV token_module_reinit(struct cv_token *token);
/* Finds the slot holding the initialized token labelled token->label, with serial
 * token->serial. Returns 0 and sets *ret_slot, CV_ERR_TOKEN_UNAVAILABLE when none does (err
 * says what was seen), or CV_ERR_NOMEM. */
int token_slot_refind(struct cv_token *token, CK_SLOT_ID *ret_slot, struct cv_errmsg *err);
/* Copies a space-padded token info field without its padding, NUL-terminated. */
void token_trim(const CK_UTF8CHAR *field, size_t len, char *buf);

/* state.c */
/* Whether the token still answers C_GetTokenInfo: 1 yes, 0 no. Caller holds state_lock as a
 * reader. For answers such as "no such object" that mean something else when it does not. */
int token_present(struct cv_token *token);
int token_state_init(struct cv_token *token);
void token_state_release(struct cv_token *token);
/* Before PKCS#11 calls: when the token is down, tries to get it back (at most once a second)
 * first. Returns 0 holding state_lock as a reader, or CV_ERR_TOKEN_UNAVAILABLE (err says why)
 * holding nothing. */
int token_enter(struct cv_token *token, struct cv_errmsg *err);
/* The token answered a call (CKR_OK or an answer of its own, not a failure to reach it). */
void token_answered(struct cv_token *token);
/* Whether it answered a call within the last ms milliseconds. */
int token_answered_within(struct cv_token *token, int64_t ms);
/* After the calls: releases state_lock. */
void token_leave(struct cv_token *token);
/* After a failed call whose rv is not an answer (or that failed to get a session): asks the
 * token whether it is still there (C_GetTokenInfo). Returns 1 and marks the token down when
 * it is not, else 0. Caller holds state_lock as a reader. */
int token_probe_gone(struct cv_token *token, const char *call, CK_RV rv);

/* pool.c */
int token_pool_init(struct pool *pool, unsigned size);
/* Closes every idle session; the caller made sure none is borrowed. */
void token_pool_release(struct cv_token *token);
/* Forgets every idle session (closing each, in case the module still knows it); the caller
 * made sure none is borrowed. The pool stays usable. */
void token_pool_drain(struct cv_token *token);
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

/* Asks the token for the key objects carrying id (one search by CKA_ID and class) and makes
 * the map say what it found: an entry added on a miss (a key another node made), its handles
 * replaced when stale, dropped when nothing carries the id any more (a key another node
 * destroyed). An entry a create or destroy of this process holds is left alone. Takes
 * map.writes when creates are serialised: call it holding no token lock. Returns 1 when a
 * private key carries the id, 0 when none does, or a cv_err. */
int token_key_lookup(struct cv_token *token, const uint8_t *id, size_t id_len,
		     struct cv_errmsg *err);

/* Whether rv says a handle from the map no longer names an object. */
static inline int token_rv_handle_stale(CK_RV rv)
{
	return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID;
}

/* durable.c */
/* Sets up token->durable for sync_dir (NULL, "" or "auto": SoftHSM's directories.tokendir
 * when module_path is SoftHSM, else nothing; "none": nothing; else that directory). Returns
 * 0 or CV_ERR_CONFIG (err says what to set) or CV_ERR_NOMEM. */
int token_durable_init(struct cv_token *token, const char *sync_dir, const char *module_path,
		       struct cv_errmsg *err);
void token_durable_release(struct cv_token *token);
/* Returns once every change made to the token's storage before the call is on disk: 0, or
 * CV_ERR_TOKEN (err names the call and the errno). Takes no token lock. */
int token_durable_sync(struct cv_token *token, struct cv_errmsg *err);

/* keys.c */
/* Lists the token's key objects on session and makes the map match: new handles for every
 * id, entries of vanished objects dropped, pending ones kept. The first listing of all (the
 * login at open) reads the private objects only and leaves the public key objects to
 * token_keys_list's thread; every later one reads both. Returns the CK_RV of the failing
 * call, named in *ret_call. */
CK_RV token_keys_relist(struct cv_token *token, CK_SESSION_HANDLE session,
			const char **ret_call);
/* The listing at open, unless logging in already did it; then starts the listing of the
 * public key objects on a thread of its own. */
int token_keys_list(struct cv_token *token, struct cv_errmsg *err);
/* Waits for the listing of public key objects at open, if it still runs. Returns 1 when the
 * map holds every public key object's handle, 0 when it does not (that listing failed and no
 * listing since read them). */
int token_public_wait(struct cv_token *token);
/* Stops and joins that listing's thread (cv_token_free). */
void token_public_stop(struct cv_token *token);

#endif
