/* token: the session pool the HTTP threads share, and running a call on it with one retry. */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

int token_pool_init(struct pool *pool, unsigned size)
{
	int r;

	pool->idle = calloc(size, sizeof(*pool->idle));
	if (pool->idle == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (pthread_mutex_init(&pool->lock, NULL) != 0) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	if (pthread_mutex_init(&pool->login_lock, NULL) != 0) {
		pthread_mutex_destroy(&pool->lock);
		r = CV_ERR_INTERNAL;
		goto out;
	}
	if (pthread_cond_init(&pool->changed, NULL) != 0) {
		pthread_mutex_destroy(&pool->login_lock);
		pthread_mutex_destroy(&pool->lock);
		r = CV_ERR_INTERNAL;
		goto out;
	}
	pool->size = size;
	pool->n_idle = 0;
	pool->n_open = 0;
	r = 0;
out:
	if (r < 0) {
		free(pool->idle);
		pool->idle = NULL;
	}
	return r;
}

void token_pool_release(struct cv_token *token)
{
	struct pool *pool = &token->pool;
	unsigned i;

	for (i = 0; i < pool->n_idle; i++)
		(void)token->f->C_CloseSession(pool->idle[i]); /* nothing to do if it was dead */
	pool->n_idle = 0;
	pool->n_open = 0;
	pthread_cond_destroy(&pool->changed);
	pthread_mutex_destroy(&pool->login_lock);
	pthread_mutex_destroy(&pool->lock);
	free(pool->idle);
	pool->idle = NULL;
}

void token_pool_drain(struct cv_token *token)
{
	struct pool *pool = &token->pool;
	unsigned i;

	pthread_mutex_lock(&pool->lock);
	for (i = 0; i < pool->n_idle; i++)
		(void)token->f->C_CloseSession(pool->idle[i]); /* most likely already gone */
	pool->n_open -= pool->n_idle;
	pool->n_idle = 0;
	pthread_cond_broadcast(&pool->changed);
	pthread_mutex_unlock(&pool->lock);
}

/* Opens a R/W session and logs it in unless the token already is (login is per process, so
 * only the first session, or the first after the token dropped them all, needs it). A new
 * login is followed by a listing: the old object handles may be gone with the old login. */
static int session_open(struct cv_token *token, CK_SESSION_HANDLE *ret_session,
			struct cv_errmsg *err)
{
	CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
	const char *call = "C_OpenSession";
	CK_SESSION_INFO info;
	int locked = 0;
	CK_RV rv;
	int r;

	rv = token->f->C_OpenSession(token->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
				     &session);
	token_count(token, CV_TOKEN_OP_OPEN_SESSION, rv != CKR_OK);
	if (rv != CKR_OK) {
		/* A missing slot or token is the token being unreachable, not a refusal. */
		if (rv == CKR_SLOT_ID_INVALID || rv == CKR_TOKEN_NOT_RECOGNIZED)
			rv = CKR_TOKEN_NOT_PRESENT;
		session = CK_INVALID_HANDLE;
		goto out;
	}
	pthread_mutex_lock(&token->pool.login_lock);
	locked = 1;
	call = "C_GetSessionInfo";
	rv = token->f->C_GetSessionInfo(session, &info);
	if (rv != CKR_OK)
		goto out;
	if (info.state != CKS_RW_USER_FUNCTIONS) {
		call = "C_Login";
		rv = token->f->C_Login(session, CKU_USER, (CK_UTF8CHAR_PTR)token->pin,
				       (CK_ULONG)token->pin_len);
		if (rv == CKR_USER_ALREADY_LOGGED_IN)
			rv = CKR_OK;
		token_count(token, CV_TOKEN_OP_LOGIN, rv != CKR_OK);
		if (rv != CKR_OK)
			goto out;
		rv = token_keys_relist(token, session, &call);
		if (rv != CKR_OK)
			goto out;
	}
out:
	r = token_rv_err(rv, call, err);
	if (locked)
		pthread_mutex_unlock(&token->pool.login_lock);
	if (r == 0)
		*ret_session = session;
	else if (session != CK_INVALID_HANDLE)
		(void)token->f->C_CloseSession(session); /* already failing; keep the first error */
	return r;
}

int token_pool_borrow(struct cv_token *token, CK_SESSION_HANDLE *ret_session,
		      struct cv_errmsg *err)
{
	struct pool *pool = &token->pool;
	int r;

	pthread_mutex_lock(&pool->lock);
	while (pool->n_idle == 0 && pool->n_open >= pool->size)
		pthread_cond_wait(&pool->changed, &pool->lock);
	if (pool->n_idle > 0) {
		*ret_session = pool->idle[--pool->n_idle];
		pthread_mutex_unlock(&pool->lock);
		return 0;
	}
	/* Hold the place while opening outside the lock: C_OpenSession and C_Login are slow. */
	pool->n_open++;
	pthread_mutex_unlock(&pool->lock);
	r = session_open(token, ret_session, err);
	if (r < 0) {
		pthread_mutex_lock(&pool->lock);
		pool->n_open--;
		pthread_cond_signal(&pool->changed);
		pthread_mutex_unlock(&pool->lock);
	}
	return r;
}

void token_pool_return(struct cv_token *token, CK_SESSION_HANDLE session, int dead)
{
	struct pool *pool = &token->pool;

	unsigned i;

	if (dead)
		(void)token->f->C_CloseSession(session); /* most likely already gone */
	pthread_mutex_lock(&pool->lock);
	if (dead) {
		/* What killed one session (a token reset or removal, a logout) killed the idle
		 * ones too: drop them, so that the retry gets a freshly opened session. Rare, so
		 * closing under the lock is fine. */
		for (i = 0; i < pool->n_idle; i++)
			(void)token->f->C_CloseSession(pool->idle[i]);
		pool->n_open -= pool->n_idle + 1;
		pool->n_idle = 0;
		pthread_cond_broadcast(&pool->changed);
	} else {
		pool->idle[pool->n_idle++] = session;
		pthread_cond_signal(&pool->changed);
	}
	pthread_mutex_unlock(&pool->lock);
}

int token_run(struct cv_token *token, token_session_fn fn, void *arg, struct cv_errmsg *err)
{
	CK_SESSION_HANDLE session;
	const char *call = "PKCS#11";
	char why[sizeof(err->text)];
	enum token_rv_kind kind;
	CK_RV rv = CKR_OK;
	int r, attempt, dead;

	r = token_enter(token, err);
	if (r < 0)
		return r;
	for (attempt = 0; attempt < 2; attempt++) {
		r = token_pool_borrow(token, &session, err);
		if (r < 0) {
			/* Opening or logging in failed: a refused PIN is the token's answer, a
			 * token that no longer answers C_GetTokenInfo is gone. */
			if (r != CV_ERR_NOMEM &&
			    token_probe_gone(token, "C_OpenSession", CKR_TOKEN_NOT_PRESENT)) {
				snprintf(why, sizeof(why), "%s", err != NULL ? err->text : "");
				r = cv_errmsg_set(err, CV_ERR_TOKEN_UNAVAILABLE,
						  "the token is unavailable (%s)", why);
			}
			goto out;
		}
		rv = fn(token, session, arg, &call);
		kind = token_rv_kind(rv);
		if (kind == TOKEN_RV_ANSWER)
			token_answered(token);
		dead = kind == TOKEN_RV_SESSION_DEAD;
		token_pool_return(token, session, dead);
		/* A failure a vanished token also gives: ask whether it is still there. Gone, the
		 * token is down until recovery gets it back, and the call fails as unavailable
		 * rather than as an error of the token. */
		if (kind != TOKEN_RV_ANSWER && token_probe_gone(token, call, rv)) {
			r = cv_errmsg_set(err, CV_ERR_TOKEN_UNAVAILABLE,
					  "the token is unavailable (%s answered %s)", call,
					  token_ckr_name(rv));
			goto out;
		}
		/* A session that died (token reset, logged out behind our back) gets one more try
		 * on a fresh session; any other answer is the token's final word. */
		if (!dead)
			break;
	}
	r = token_rv_err(rv, call, err);
out:
	token_leave(token);
	return r;
}
