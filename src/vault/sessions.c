/* Console sessions: a browser signs in with an API token and then holds a cookie instead. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "certvault/util.h"
#include "internal.h"

#define COOKIE_PREFIX "cvs_"
#define SECRET_BYTES 32
#define SECRET_CHARS 43            /* base64url of 32 bytes, no padding */

/* base64url without padding of n bytes into out (room for 4 * ceil(n / 3) + 1). Returns the
 * length, or -1. */
static int b64url(const uint8_t *in, size_t n, char *out)
{
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n), i;

	if (len <= 0)
		return -1;
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return len;
}

/* The CSRF token of a cookie: base64url(SHA-256("certvault csrf\0" || cookie)). A page of
 * this origin learns it from GET /v1/session; another site can neither read that answer nor
 * compute it without the cookie, which it cannot read either (HttpOnly). */
static int csrf_of(const char *cookie, char *out)
{
	static const char label[] = "certvault csrf";
	uint8_t md[32];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(ctx, label, sizeof(label)) == 1 &&
		 EVP_DigestUpdate(ctx, cookie, strlen(cookie)) == 1 &&
		 EVP_DigestFinal_ex(ctx, md, NULL) == 1;
	char tmp[48];

	EVP_MD_CTX_free(ctx);
	if (!ok || b64url(md, sizeof(md), tmp) != CV_SESSION_CSRF_LEN)
		return CV_ERR_INTERNAL;
	memcpy(out, tmp, CV_SESSION_CSRF_LEN + 1);
	return 0;
}

static int hex_id_ok(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static void fill_view(const struct cv_session *s, const char *cookie, int64_t idle,
		      struct cv_session_view *view)
{
	int64_t idle_end = s->last_seen + idle;

	memcpy(view->id, s->id, sizeof(view->id));
	view->expires_at = s->expires_at;
	view->idle_expires_at = idle_end < s->expires_at ? idle_end : s->expires_at;
	if (csrf_of(cookie, view->csrf) < 0)
		view->csrf[0] = '\0'; /* matches nothing: changes are refused */
}

int cv_vault_session_create(struct cv_vault *v, struct cv_audit *audit, const char *api_token,
			    int64_t now, int64_t idle, int64_t lifetime, char *ret_cookie,
			    struct cv_actor *ret_actor, struct cv_session_view *ret_view,
			    struct cv_errmsg *err)
{
	uint8_t id[CV_SESSION_ID_LEN / 2], raw[SECRET_BYTES];
	char secret[48];
	struct cv_session s;
	int r;

	memset(&s, 0, sizeof(s));
	/* A refused sign-in is recorded against the token id it claimed, when it claims one. */
	if (api_token != NULL && strlen(api_token) == CV_API_TOKEN_LEN &&
	    strncmp(api_token, "cvt_", 4) == 0 && hex_id_ok(api_token + 4, CV_API_TOKEN_ID_LEN)) {
		char claimed[CV_API_TOKEN_ID_LEN + 1];

		memcpy(claimed, api_token + 4, CV_API_TOKEN_ID_LEN);
		claimed[CV_API_TOKEN_ID_LEN] = '\0';
		vault_audit_target(audit, claimed);
	}
	r = cv_vault_authenticate(v, api_token, now, ret_actor, err);
	if (r < 0)
		return r;
	if (audit != NULL) {
		snprintf(audit->entry.actor_id, sizeof(audit->entry.actor_id), "%s", ret_actor->id);
		snprintf(audit->entry.actor_name, sizeof(audit->entry.actor_name), "%s",
			 ret_actor->name);
	}
	if (RAND_bytes(id, sizeof(id)) != 1 || RAND_bytes(raw, sizeof(raw)) != 1 ||
	    b64url(raw, sizeof(raw), secret) != SECRET_CHARS) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "no random bytes for a session");
		goto out;
	}
	cv_hex_encode(id, sizeof(id), s.id);
	snprintf(ret_cookie, CV_SESSION_COOKIE_LEN + 1, COOKIE_PREFIX "%.16s_%.43s", s.id, secret);
	if (EVP_Digest(ret_cookie, strlen(ret_cookie), s.secret_hash, NULL, EVP_sha256(),
		       NULL) != 1) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "SHA-256 failed");
		goto out;
	}
	memcpy(s.token_id, ret_actor->id, sizeof(s.token_id));
	s.created_at = s.last_seen = now;
	s.expires_at = now + lifetime;
	r = cv_store_session_insert(v->store, &s, now, now - idle, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r < 0) {
		r = cv_errmsg_set(err, r, "the database could not be written");
		goto out;
	}
	fill_view(&s, ret_cookie, idle, ret_view);
	if (ret_view->csrf[0] == '\0')
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "SHA-256 failed");
out:
	if (r < 0)
		OPENSSL_cleanse(ret_cookie, CV_SESSION_COOKIE_LEN + 1);
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(s.secret_hash, sizeof(s.secret_hash));
	return r;
}

int cv_vault_session_authenticate(struct cv_vault *v, const char *cookie, int64_t now,
				  int64_t idle, struct cv_actor *ret_actor,
				  struct cv_session_view *ret_view, struct cv_errmsg *err)
{
	static const char ended[] = "the console session has ended: sign in again";
	struct cv_api_token t;
	struct cv_session s;
	char id[CV_SESSION_ID_LEN + 1];
	uint8_t hash[32];
	size_t len = cookie != NULL ? strlen(cookie) : 0, i;
	int r;

	memset(ret_actor, 0, sizeof(*ret_actor));
	if (len != CV_SESSION_COOKIE_LEN || strncmp(cookie, COOKIE_PREFIX, 4) != 0 ||
	    cookie[4 + CV_SESSION_ID_LEN] != '_' || !hex_id_ok(cookie + 4, CV_SESSION_ID_LEN))
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, ended);
	for (i = 5 + CV_SESSION_ID_LEN; i < len; i++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
			   cookie[i]) == NULL)
			return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, ended);
	memcpy(id, cookie + 4, CV_SESSION_ID_LEN);
	id[CV_SESSION_ID_LEN] = '\0';
	if (EVP_Digest(cookie, len, hash, NULL, EVP_sha256(), NULL) != 1)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "SHA-256 failed");
	r = cv_store_session_get(v->store, id, &s);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, ended);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	if (CRYPTO_memcmp(hash, s.secret_hash, sizeof(hash)) != 0 || now >= s.expires_at ||
	    now - s.last_seen > idle)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, ended);
	r = vault_token_get(v, s.token_id, now, &t);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, ended);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	if (t.revoked_at != 0)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, "the API token of this session was "
				     "revoked: sign in again");
	if (t.expires_at != 0 && t.expires_at <= now)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, "the API token of this session has "
				     "expired: sign in again");
	/* last_seen moves at most every idle/8 seconds (and every 60 at most): a write per
	 * request would serialise every read of the console on SQLite's write lock. The idle
	 * timeout is therefore kept to within that much. */
	if (now - s.last_seen >= (idle / 8 < 60 ? idle / 8 : 60)) {
		r = cv_store_session_touch(v->store, s.id, now);
		if (r < 0)
			return cv_errmsg_set(err, r, "the database could not be written");
		s.last_seen = now;
	}
	r = vault_actor_of_token(&t, ret_actor, err);
	if (r < 0)
		return r;
	fill_view(&s, cookie, idle, ret_view);
	return 0;
}

int cv_vault_session_csrf_ok(const struct cv_session_view *view, const char *csrf)
{
	if (csrf == NULL || view->csrf[0] == '\0' || strlen(csrf) != CV_SESSION_CSRF_LEN)
		return 0;
	return CRYPTO_memcmp(csrf, view->csrf, CV_SESSION_CSRF_LEN) == 0;
}

int cv_vault_session_end(struct cv_vault *v, struct cv_audit *audit, const char *id,
			 struct cv_errmsg *err)
{
	int r;

	vault_audit_target(audit, id);
	r = cv_store_session_delete(v->store, id, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "the session has ended already");
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be written");
	return 0;
}
