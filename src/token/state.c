/* token: noticing that the token is gone, and getting it back without a restart.
 *
 * The token is up or down. A call that fails in a way a vanished token also fails (a dead
 * session, CKR_DEVICE_ERROR, CKR_GENERAL_ERROR...) asks C_GetTokenInfo whether the token is
 * still there; when it is not, the token is marked down and every call fails at once with
 * CV_ERR_TOKEN_UNAVAILABLE. The next call after that (at most one a second) tries to get it
 * back: with no other call running, it closes the sessions, finalizes and initializes the
 * module again (SoftHSM reads its token directory only at C_Initialize), finds the token by
 * its label and serial, opens a session, logs in with the kept PIN and lists the keys again,
 * since object handles do not survive a new C_Initialize. */
#include <stdio.h>
#include <string.h>

#include "certvault/util.h"
#include "internal.h"

/* Recovery attempts are at least this far apart: each one finalizes the module. */
#define RECOVER_INTERVAL_MS 1000

int token_state_init(struct cv_token *token)
{
	pthread_rwlockattr_t attr;
	int r;

	if (pthread_rwlockattr_init(&attr) != 0)
		return CV_ERR_INTERNAL;
	r = pthread_rwlock_init(&token->state_lock, &attr) == 0 ? 0 : CV_ERR_INTERNAL;
	pthread_rwlockattr_destroy(&attr);
	if (r < 0)
		return r;
	if (pthread_mutex_init(&token->recover_lock, NULL) != 0) {
		pthread_rwlock_destroy(&token->state_lock);
		return CV_ERR_INTERNAL;
	}
	if (pthread_mutex_init(&token->reason_lock, NULL) != 0) {
		pthread_mutex_destroy(&token->recover_lock);
		pthread_rwlock_destroy(&token->state_lock);
		return CV_ERR_INTERNAL;
	}
	atomic_init(&token->up, 1);
	atomic_init(&token->answered_ms, 0);
	memset(&token->last_attempt, 0, sizeof(token->last_attempt));
	token->down_reason[0] = '\0';
	return 0;
}

void token_state_release(struct cv_token *token)
{
	pthread_mutex_destroy(&token->reason_lock);
	pthread_mutex_destroy(&token->recover_lock);
	pthread_rwlock_destroy(&token->state_lock);
}

static void reason_set(struct cv_token *token, const char *text)
{
	pthread_mutex_lock(&token->reason_lock);
	snprintf(token->down_reason, sizeof(token->down_reason), "%s", text);
	pthread_mutex_unlock(&token->reason_lock);
}

static int unavailable(struct cv_token *token, struct cv_errmsg *err)
{
	char reason[sizeof(token->down_reason)];

	pthread_mutex_lock(&token->reason_lock);
	memcpy(reason, token->down_reason, sizeof(reason));
	pthread_mutex_unlock(&token->reason_lock);
	return cv_errmsg_set(err, CV_ERR_TOKEN_UNAVAILABLE, "the token is unavailable (%s)",
			     reason[0] != '\0' ? reason : "not answering");
}

int token_present(struct cv_token *token)
{
	CK_TOKEN_INFO info;
	CK_RV rv;

	rv = token->f->C_GetTokenInfo(token->slot, &info);
	token_count(token, CV_TOKEN_OP_TOKEN_INFO, rv != CKR_OK);
	return rv == CKR_OK;
}

int token_probe_gone(struct cv_token *token, const char *call, CK_RV rv)
{
	char reason[sizeof(token->down_reason)];
	CK_TOKEN_INFO info;
	CK_RV probe;

	probe = token->f->C_GetTokenInfo(token->slot, &info);
	token_count(token, CV_TOKEN_OP_TOKEN_INFO, probe != CKR_OK);
	if (probe == CKR_OK)
		return 0;
	snprintf(reason, sizeof(reason), "%s answered %s, C_GetTokenInfo %s", call,
		 token_ckr_name(rv), token_ckr_name(probe));
	/* Only the first to notice names the cause; the others saw its consequences. */
	if (atomic_exchange(&token->up, 0))
		reason_set(token, reason);
	return 1;
}

/* Milliseconds from a to b. */
static long long ms_between(const struct timespec *a, const struct timespec *b)
{
	return (long long)(b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

/* The steps of getting the token back. Caller holds state_lock as the writer: no session is
 * borrowed and no handle is in use. */
static int reconnect(struct cv_token *token, struct cv_errmsg *err)
{
	CK_SESSION_HANDLE session;
	const char *call = "C_FindObjects";
	unsigned long epoch;
	CK_SLOT_ID slot;
	CK_RV rv;
	int r;

	/* Whatever the module still knows of the old sessions dies with C_Finalize. */
	token_pool_drain(token);
	rv = token_module_reinit(token);
	if (rv != CKR_OK)
		return cv_errmsg_set(err, CV_ERR_TOKEN_UNAVAILABLE, "C_Initialize answered %s",
				     token_ckr_name(rv));
	r = token_slot_refind(token, &slot, err);
	if (r < 0)
		return r;
	token->slot = slot;
	pthread_mutex_lock(&token->map.lock);
	epoch = token->map.epoch;
	pthread_mutex_unlock(&token->map.lock);
	/* A fresh session logs in and lists the keys, so the map holds the new handles. */
	r = token_pool_borrow(token, &session, err);
	if (r < 0)
		return r == CV_ERR_NOMEM ? r : CV_ERR_TOKEN_UNAVAILABLE;
	rv = CKR_OK;
	pthread_mutex_lock(&token->map.lock);
	/* Still logged in (a module shared with others was not reinitialized): list anyway,
	 * the old handles may be stale. */
	if (token->map.epoch == epoch) {
		pthread_mutex_unlock(&token->map.lock);
		rv = token_keys_relist(token, session, &call);
	} else {
		pthread_mutex_unlock(&token->map.lock);
	}
	token_pool_return(token, session, rv != CKR_OK);
	if (rv != CKR_OK) {
		token_rv_err(rv, call, err);
		return CV_ERR_TOKEN_UNAVAILABLE;
	}
	return 0;
}

/* Tries to get the token back, unless another attempt ran less than a second ago. Returns 0
 * when the token is up, else CV_ERR_TOKEN_UNAVAILABLE. Caller holds no token lock. */
static int recover(struct cv_token *token, struct cv_errmsg *err)
{
	struct cv_errmsg why = { "" };
	struct timespec now;
	int r;

	pthread_mutex_lock(&token->recover_lock);
	if (atomic_load(&token->up)) {
		r = 0; /* another thread got it back while this one waited */
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	if ((token->last_attempt.tv_sec != 0 || token->last_attempt.tv_nsec != 0) &&
	    ms_between(&token->last_attempt, &now) < RECOVER_INTERVAL_MS) {
		r = unavailable(token, err);
		goto out;
	}
	token->last_attempt = now;
	pthread_rwlock_wrlock(&token->state_lock);
	r = reconnect(token, &why);
	if (r == 0) {
		token_answered(token);
		reason_set(token, "");
		atomic_store(&token->up, 1);
	} else {
		reason_set(token, why.text);
	}
	pthread_rwlock_unlock(&token->state_lock);
	if (r < 0)
		r = unavailable(token, err);
out:
	pthread_mutex_unlock(&token->recover_lock);
	return r;
}

void token_answered(struct cv_token *token)
{
	atomic_store_explicit(&token->answered_ms, cv_monotonic_ms(), memory_order_relaxed);
}

int token_answered_within(struct cv_token *token, int64_t ms)
{
	int64_t at = atomic_load_explicit(&token->answered_ms, memory_order_relaxed);

	return at != 0 && cv_monotonic_ms() - at < ms;
}

int cv_token_up(struct cv_token *token)
{
	return atomic_load(&token->up) ? 1 : 0;
}

int token_enter(struct cv_token *token, struct cv_errmsg *err)
{
	int r;

	if (!atomic_load(&token->up)) {
		r = recover(token, err);
		if (r < 0)
			return r;
	}
	pthread_rwlock_rdlock(&token->state_lock);
	/* Went down between the look and the lock. */
	if (!atomic_load(&token->up)) {
		pthread_rwlock_unlock(&token->state_lock);
		return unavailable(token, err);
	}
	return 0;
}

void token_leave(struct cv_token *token)
{
	pthread_rwlock_unlock(&token->state_lock);
}
