/* API tokens and the audit trail's use cases. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "certvault/text.h"
#include "certvault/util.h"
#include "internal.h"

#define TOKEN_PREFIX "cvt_"
#define SECRET_BYTES 32
#define SECRET_CHARS 43            /* base64url of 32 bytes, no padding */

/* Audit fields come from outside (a refused request's path segment is whatever bytes the
 * client sent): kept as valid UTF-8, escaped where they are not, cut on a character. */
static void copy_field(char *dst, size_t size, const char *src)
{
	if (src == NULL)
		src = "";
	cv_text_safe(src, strlen(src), 0, dst, size);
}

void cv_audit_begin(struct cv_audit *a, const struct cv_actor *who, const char *action,
		    const char *target, const char *request_id, int64_t now)
{
	memset(a, 0, sizeof(*a));
	a->entry.at = now;
	if (who != NULL && who->role != 0) {
		copy_field(a->entry.actor_id, sizeof(a->entry.actor_id), who->id);
		copy_field(a->entry.actor_name, sizeof(a->entry.actor_name), who->name);
		a->role = who->role;
		a->scoped = who->scope.scoped;
	} else {
		copy_field(a->entry.actor_name, sizeof(a->entry.actor_name), "anonymous");
	}
	copy_field(a->entry.action, sizeof(a->entry.action), action);
	copy_field(a->entry.target, sizeof(a->entry.target), target);
	copy_field(a->entry.request_id, sizeof(a->entry.request_id), request_id);
}

void cv_audit_fingerprint(struct cv_audit *a, const char *fp)
{
	char *list;
	size_t used, n = strlen(fp);
	const char *p;

	if (a == NULL || n == 0)
		return;
	list = a->entry.fingerprints;
	used = strlen(list);
	for (p = strstr(list, fp); p != NULL; p = strstr(p + 1, fp))
		if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
			return;
	if (used + (used > 0) + n + 1 > sizeof(a->entry.fingerprints))
		return;
	if (used > 0)
		list[used++] = ' ';
	memcpy(list + used, fp, n + 1);
}

void vault_audit_entry_changes(struct cv_audit_entry *entry, json_t *changes)
{
	size_t n;

	if (changes == NULL || json_object_size(changes) == 0) {
		json_decref(changes);
		return;
	}
	n = json_dumpb(changes, entry->changes, sizeof(entry->changes) - 1,
		       JSON_COMPACT | JSON_SORT_KEYS);
	if (n == 0 || n >= sizeof(entry->changes))
		snprintf(entry->changes, sizeof(entry->changes), "{\"truncated\":true}");
	else
		entry->changes[n] = '\0';
	json_decref(changes);
}

void vault_audit_changes(struct cv_audit *a, json_t *changes)
{
	if (a == NULL) {
		json_decref(changes);
		return;
	}
	vault_audit_entry_changes(&a->entry, changes);
}

json_t *vault_audit_change(json_t *old, json_t *new)
{
	return json_pack("{s:o?, s:o?}", "old", old != NULL ? old : json_null(), "new",
			 new != NULL ? new : json_null());
}

json_t *vault_audit_text(const char *s)
{
	char cut[160];
	size_t n = strlen(s);

	if (n <= 150)
		return json_string(s);
	n = 150;
	/* Back to the start of a character: continuation bytes are 10xxxxxx. */
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	memcpy(cut, s, n);
	memcpy(cut + n, "...", 4);
	return json_string(cut);
}

const struct cv_audit_entry *vault_audit_done(struct cv_audit *a)
{
	if (a == NULL)
		return NULL;
	a->entry.ok = 1;
	a->entry.error[0] = '\0';
	return &a->entry;
}

void vault_audit_written(struct cv_audit *a, int r)
{
	if (a != NULL && r == 0)
		a->written = 1;
}

void vault_audit_target(struct cv_audit *a, const char *target)
{
	if (a != NULL)
		copy_field(a->entry.target, sizeof(a->entry.target), target);
}

static const char *const role_names[] = {
	[CV_ROLE_ADMIN] = "admin",
	[CV_ROLE_OPERATOR] = "operator",
	[CV_ROLE_AUDITOR] = "auditor",
};

int cv_vault_audit_late(struct cv_vault *v, struct cv_audit *a)
{
	if (a == NULL || a->written)
		return 0;
	a->entry.ok = 1;
	a->entry.error[0] = '\0';
	a->written = 1;
	return cv_store_audit_append(v->store, &a->entry);
}

const char *cv_role_name(enum cv_role role)
{
	if (role < CV_ROLE_ADMIN || role > CV_ROLE_AUDITOR)
		return "none";
	return role_names[role];
}

int cv_role_parse(const char *s, enum cv_role *ret)
{
	int i;

	for (i = CV_ROLE_ADMIN; s != NULL && i <= CV_ROLE_AUDITOR; i++)
		if (strcmp(s, role_names[i]) == 0) {
			*ret = (enum cv_role)i;
			return 0;
		}
	return CV_ERR_BAD_REQUEST;
}

/* A new token's id and secret text, and the hash kept of it. */
static int token_mint(struct cv_api_token *t, char *secret)
{
	uint8_t id[CV_API_TOKEN_ID_LEN / 2], raw[SECRET_BYTES];
	unsigned char b64[48];
	int n, i, r;

	if (RAND_bytes(id, sizeof(id)) != 1 || RAND_bytes(raw, sizeof(raw)) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	cv_hex_encode(id, sizeof(id), t->id);
	n = EVP_EncodeBlock(b64, raw, sizeof(raw));
	if (n != SECRET_CHARS + 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	for (i = 0; i < SECRET_CHARS; i++)
		b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	snprintf(secret, CV_API_TOKEN_LEN + 1, TOKEN_PREFIX "%s_%.*s", t->id, SECRET_CHARS,
		 (const char *)b64);
	r = EVP_Digest(secret, strlen(secret), t->secret_hash, NULL, EVP_sha256(), NULL) == 1 ?
		    0 : CV_ERR_INTERNAL;
out:
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(b64, sizeof(b64));
	return r;
}

int cv_vault_token_create(struct cv_vault *v, struct cv_audit *audit, const char *name,
			  enum cv_role role, int64_t expires_at, int64_t now,
			  struct cv_api_token *ret_token, char *ret_secret, struct cv_errmsg *err)
{
	return cv_vault_token_create_scoped(v, audit, name, role, NULL, expires_at, now,
					    ret_token, ret_secret, err);
}

/* The scope's text as stored, its environments spelled as they are (each must exist). */
static int scope_text(struct cv_vault *v, const struct cv_scope *scope, char *out, size_t len,
		      struct cv_errmsg *err)
{
	struct cv_environment_record *env = NULL;
	struct cv_scope canon;
	char *text = NULL;
	json_t *json;
	size_t i;
	int r;

	out[0] = '\0';
	if (!scope->scoped)
		return 0;
	canon = *scope;
	for (i = 0; i < canon.objects.n_environments; i++) {
		r = cv_store_environment_get(v->store, canon.objects.environments[i], &env);
		if (r == CV_ERR_NOT_FOUND)
			return cv_errmsg_set(err, CV_ERR_UNKNOWN_ENVIRONMENT, "the scope names the "
					     "environment %s, which does not exist",
					     canon.objects.environments[i]);
		if (r < 0)
			return cv_errmsg_set(err, r, "the database could not be read");
		snprintf(canon.objects.environments[i], sizeof(canon.objects.environments[i]), "%s",
			 env->name);
		cv_store_environment_free(env);
		env = NULL;
	}
	json = cv_scope_json(&canon);
	if (json == NULL)
		return CV_ERR_NOMEM;
	r = cv_json_text(json, JSON_COMPACT, &text);
	json_decref(json);
	if (r < 0)
		return r;
	if (strlen(text) >= len) {
		free(text);
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the scope is too long");
	}
	memcpy(out, text, strlen(text) + 1);
	free(text);
	return 0;
}

int cv_vault_token_create_scoped(struct cv_vault *v, struct cv_audit *audit, const char *name,
				 enum cv_role role, const struct cv_scope *scope,
				 int64_t expires_at, int64_t now, struct cv_api_token *ret_token,
				 char *ret_secret, struct cv_errmsg *err)
{
	struct cv_api_token t;
	int r;

	memset(&t, 0, sizeof(t));
	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	if (role < CV_ROLE_ADMIN || role > CV_ROLE_AUDITOR)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "role must be admin, operator or auditor");
	if (expires_at != 0 && expires_at <= now)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the expiry must be in the future");
	if (scope != NULL) {
		r = scope_text(v, scope, t.scope, sizeof(t.scope), err);
		if (r < 0)
			return r;
	}
	/* What the token may do is part of what was done: the record says it. */
	if (t.scope[0] != '\0' && audit != NULL)
		vault_audit_changes(audit, json_pack("{s:o}", "scope",
						     json_loads(t.scope, 0, NULL)));
	copy_field(t.name, sizeof(t.name), name);
	t.role = role;
	t.created_at = now;
	t.expires_at = expires_at;
	r = token_mint(&t, ret_secret);
	if (r < 0)
		return cv_errmsg_set(err, r, "no random bytes for a token");
	vault_audit_target(audit, t.id);
	r = cv_store_api_token_insert(v->store, &t, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r < 0) {
		OPENSSL_cleanse(ret_secret, CV_API_TOKEN_LEN + 1);
		if (r == CV_ERR_NAME_TAKEN)
			return cv_errmsg_set(err, r, "a token named %s exists: revoke it first",
					     name);
		return vault_write_errmsg(err, r, "the database could not be written");
	}
	*ret_token = t;
	return 0;
}

int cv_vault_token_list(struct cv_vault *v, struct cv_api_token **ret, size_t *ret_n,
			struct cv_errmsg *err)
{
	int r = cv_store_api_token_list(v->store, ret, ret_n);

	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

static int check_token_id(const char *id)
{
	size_t i;

	for (i = 0; i < CV_API_TOKEN_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return -1;
	return id[i] == '\0' ? 0 : -1;
}

int cv_vault_token_revoke(struct cv_vault *v, struct cv_audit *audit, const char *id,
			  int64_t now, struct cv_errmsg *err)
{
	int r;

	if (check_token_id(id) < 0)
		return cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no token has that id");
	r = cv_store_api_token_revoke(v->store, id, now, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no token %s, or it is revoked already", id);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database could not be written");
	return 0;
}

int vault_token_get(struct cv_vault *v, const char *id, int64_t now, struct cv_api_token *ret)
{
	struct vault_tokens_cache *c;
	unsigned i, slot;
	uint64_t gen;
	int r;

	if (v->caches == NULL)
		return cv_store_api_token_get(v->store, id, ret);
	c = &v->caches->tokens;
	/* Read before the row is: a row read after it is at least as new. */
	gen = cv_store_tokens_generation(v->store);
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < VAULT_TOKENS; i++)
		if (c->slots[i].valid && c->slots[i].gen == gen && c->slots[i].now == now &&
		    strcmp(c->slots[i].t.id, id) == 0) {
			*ret = c->slots[i].t;
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
	pthread_mutex_unlock(&c->lock);
	r = cv_store_api_token_get(v->store, id, ret);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	/* The token's own slot if it has one (an older copy), else the next in turn. */
	for (slot = 0; slot < VAULT_TOKENS; slot++)
		if (c->slots[slot].valid && strcmp(c->slots[slot].t.id, id) == 0)
			break;
	if (slot == VAULT_TOKENS) {
		slot = c->next;
		c->next = (c->next + 1) % VAULT_TOKENS;
	}
	/* Not under a number that says the read of the generation failed: it matches none. */
	if ((gen >> 63) == 0) {
		c->slots[slot].t = *ret;
		c->slots[slot].gen = gen;
		c->slots[slot].now = now;
		c->slots[slot].valid = 1;
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int cv_vault_authenticate(struct cv_vault *v, const char *bearer, int64_t now,
			  struct cv_actor *ret, struct cv_errmsg *err)
{
	static const char generic[] = "the API token is not valid";
	uint8_t hash[32];
	struct cv_api_token t;
	char id[CV_API_TOKEN_ID_LEN + 1];
	size_t i, len = bearer != NULL ? strlen(bearer) : 0;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (len != CV_API_TOKEN_LEN || strncmp(bearer, TOKEN_PREFIX, 4) != 0 || bearer[20] != '_')
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, generic);
	for (i = 21; i < len; i++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
			   bearer[i]) == NULL)
			return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, generic);
	memcpy(id, bearer + 4, CV_API_TOKEN_ID_LEN);
	id[CV_API_TOKEN_ID_LEN] = '\0';
	if (check_token_id(id) < 0)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, generic);
	if (EVP_Digest(bearer, len, hash, NULL, EVP_sha256(), NULL) != 1)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "SHA-256 failed");
	r = vault_token_get(v, id, now, &t);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, generic);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	if (CRYPTO_memcmp(hash, t.secret_hash, sizeof(hash)) != 0)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, generic);
	/* The holder proved the secret: telling them why it no longer works is safe. */
	if (t.revoked_at != 0)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, "the API token was revoked");
	if (t.expires_at != 0 && t.expires_at <= now)
		return cv_errmsg_set(err, CV_ERR_UNAUTHORIZED, "the API token has expired");
	return vault_actor_of_token(&t, ret, err);
}

int vault_actor_of_token(const struct cv_api_token *t, struct cv_actor *ret,
			 struct cv_errmsg *err)
{
	memset(ret, 0, sizeof(*ret));
	/* A scope that cannot be read refuses the token rather than drop its limits. */
	if (cv_vault_token_scope(t, &ret->scope) < 0)
		return cv_errmsg_set(err, CV_ERR_DB, "the API token's scope could not be read");
	memcpy(ret->id, t->id, sizeof(ret->id));
	memcpy(ret->name, t->name, sizeof(ret->name));
	ret->role = t->role;
	ret->expires_at = t->expires_at;
	ret->last_used_at = t->last_used_at;
	return 0;
}

/* Writes text to path as a new file only the owner can read, replacing what is there. */
static int write_private_file(const char *path, const char *text, struct cv_errmsg *err)
{
	size_t len = strlen(text), done = 0;
	ssize_t n;
	int fd;

	if (unlink(path) < 0 && errno != ENOENT)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot replace %s: %s", path,
				     strerror(errno));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot create %s: %s", path,
				     strerror(errno));
	while (done < len) {
		n = write(fd, text + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (done != len || fsync(fd) < 0) {
		close(fd);
		unlink(path);
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot write %s", path);
	}
	if (close(fd) < 0) {
		unlink(path);
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot write %s", path);
	}
	return 0;
}

int cv_vault_token_bootstrap(struct cv_vault *v, const char *path, int64_t now,
			     int *ret_created, struct cv_errmsg *err)
{
	struct cv_actor self = { .name = "certvaultd", .role = CV_ROLE_ADMIN };
	char secret[CV_API_TOKEN_LEN + 2];
	struct cv_api_token t;
	struct cv_audit audit;
	int64_t n = 0;
	int r;

	*ret_created = 0;
	r = cv_store_api_token_count(v->store, &n);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	if (n > 0)
		return 0;
	memset(&t, 0, sizeof(t));
	copy_field(t.name, sizeof(t.name), "admin");
	t.role = CV_ROLE_ADMIN;
	t.created_at = now;
	r = token_mint(&t, secret);
	if (r < 0)
		return cv_errmsg_set(err, r, "no random bytes for a token");
	/* The file first: a token in the database that nobody holds would lock everyone out. */
	secret[CV_API_TOKEN_LEN] = '\n';
	secret[CV_API_TOKEN_LEN + 1] = '\0';
	r = write_private_file(path, secret, err);
	OPENSSL_cleanse(secret, sizeof(secret));
	if (r < 0)
		return r;
	cv_audit_begin(&audit, &self, "token.create", t.id, "", now);
	r = cv_store_api_token_insert(v->store, &t, vault_audit_done(&audit));
	if (r < 0) {
		unlink(path);
		return vault_write_errmsg(err, r, "the database could not be written");
	}
	*ret_created = 1;
	return 0;
}

int cv_vault_audit_list(struct cv_vault *v, const struct cv_audit_filter *filter,
			struct cv_audit_record **ret_recs, size_t *ret_n, struct cv_errmsg *err)
{
	int r;

	/* Counts not written yet are written first: a reader sees every attempt counted. A
	 * count that cannot be written (the token is unavailable) does not keep the trail from
	 * being read. */
	(void)cv_vault_audit_flush(v, (int64_t)time(NULL), 1);
	r = cv_store_audit_list(v->store, filter, ret_recs, ret_n);

	if (r == CV_ERR_BAD_REQUEST)
		return cv_errmsg_set(err, r, "limit must be from 1 to 1000");
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_audit_verify(struct cv_vault *v, struct cv_audit_verdict *ret,
			  struct cv_errmsg *err)
{
	int r;

	(void)cv_vault_audit_flush(v, (int64_t)time(NULL), 1);
	r = cv_store_audit_verify(v->store, ret);
	/* Keyed records are checked only with the token's key: without it nothing is claimed. */
	if (r == CV_ERR_TOKEN_UNAVAILABLE || r == CV_ERR_TOKEN)
		return cv_errmsg_set(err, r,
				     "the audit chain is keyed with the token's audit key, which "
				     "cannot be used now: nothing can be verified until it can");
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}
