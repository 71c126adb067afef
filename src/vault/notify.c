/* vault: notification channels, per-certificate rules and the notifier thread that scans
 * for thresholds crossed and sends the outbox (issue 18 part 1).
 *
 * A webhook's HMAC secret must be usable by certvaultd, so it cannot be kept only as a hash.
 * It is sealed instead: AES-256-GCM under a key derived, per channel, by an HMAC made inside
 * the token with a secret key that never leaves it (CV_NOTIFY_KEY_LABEL). The database holds
 * nonce, ciphertext and tag; someone with the database file alone learns nothing, and the
 * secret is unsealed only in the notifier, for one signature, then wiped. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>

#include "certvault/notify.h"
#include "certvault/util.h"
#include "internal.h"

const char *const cv_notify_events[] = {
	"certificate.imported", "certificate.renewed",  "certificate.replaced",
	"certificate.deleted",  "certificate.expiring", "certificate.expired",
	"certificate.revoked",  "token.unavailable",    "token.available",
	"certificate.recovered", "certificate.purged",
	NULL,
};

#define SEAL_NONCE 12
#define SEAL_TAG 16
#define SEAL_CONTEXT "certvault notification channel secret v1"

int cv_notify_thresholds_parse(const char *text, char *ret, size_t len, struct cv_errmsg *err)
{
	int64_t seen[CV_NOTIFY_THRESHOLDS_MAX];
	size_t n = 0, i, off = 0;
	const char *p = text;
	char one[16];

	off += (size_t)snprintf(ret + off, len - off, "[");
	while (*p != '\0') {
		size_t k = strcspn(p, ", ");
		int64_t v;

		if (k == 0) {
			p++;
			continue;
		}
		if (k >= sizeof(one) || n == CV_NOTIFY_THRESHOLDS_MAX)
			return cv_errmsg_set(err, CV_ERR_CONFIG, "notifications.thresholds: at most "
					     "%d whole numbers of days", CV_NOTIFY_THRESHOLDS_MAX);
		memcpy(one, p, k);
		one[k] = '\0';
		if (cv_parse_int64(one, 0, CV_NOTIFY_THRESHOLD_DAYS_MAX, &v) < 0)
			return cv_errmsg_set(err, CV_ERR_CONFIG, "notifications.thresholds: \"%s\" "
					     "is not a number of days from 0 to %d", one,
					     CV_NOTIFY_THRESHOLD_DAYS_MAX);
		for (i = 0; i < n; i++)
			if (seen[i] == v)
				return cv_errmsg_set(err, CV_ERR_CONFIG, "notifications.thresholds: "
						     "%lld twice", (long long)v);
		seen[n++] = v;
		off += (size_t)snprintf(ret + off, len - off, "%s%lld", n > 1 ? "," : "",
					(long long)v);
		if (off >= len)
			return cv_errmsg_set(err, CV_ERR_CONFIG, "notifications.thresholds: too long");
		p += k;
	}
	if (n == 0)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "notifications.thresholds: none given");
	off += (size_t)snprintf(ret + off, len - off, "]");
	return off < len ? 0 : cv_errmsg_set(err, CV_ERR_CONFIG, "notifications.thresholds: too "
					     "long");
}

int cv_notify_address_check(const char *s)
{
	const char *at = strchr(s, '@');
	size_t len = strlen(s), i;

	if (len == 0 || len > 254 || at == NULL || at == s || at[1] == '\0' ||
	    strchr(at + 1, '@') != NULL || strchr(at + 1, '.') == NULL)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || strchr("<>,;:\"()[]\\", c) != NULL)
			return -1;
	}
	return 0;
}

/* The token's sealing key, found or (once, under a lock: two makers at once would leave two
 * keys under one label) made. */
static pthread_mutex_t seal_key_lock = PTHREAD_MUTEX_INITIALIZER;

static int seal_key(struct cv_vault *v, int create, struct cv_token_secret **ret,
		    struct cv_errmsg *err)
{
	int r;

	pthread_mutex_lock(&seal_key_lock);
	r = cv_token_secret_find(v->token, CV_NOTIFY_KEY_LABEL, ret, err);
	if (r == CV_ERR_NOT_FOUND && create)
		r = cv_token_secret_generate(v->token, CV_NOTIFY_KEY_LABEL,
					     (const uint8_t *)"notify-seal", 11, ret, err);
	pthread_mutex_unlock(&seal_key_lock);
	return r;
}

/* The AES-256 key of a channel's seal: an HMAC in the token over the context and its id. */
static int channel_kek(struct cv_token_secret *key, const char *channel_id,
		       uint8_t kek[CV_TOKEN_MAC_LEN], struct cv_errmsg *err)
{
	char input[128];
	int n = snprintf(input, sizeof(input), "%s|%s", SEAL_CONTEXT, channel_id);

	return cv_token_secret_hmac(key, input, (size_t)n, kek, err);
}

static int seal(struct cv_vault *v, const char *channel_id, const char *secret,
		unsigned char *out, size_t out_max, size_t *ret_len, struct cv_errmsg *err)
{
	struct cv_token_secret *key = NULL;
	uint8_t kek[CV_TOKEN_MAC_LEN];
	EVP_CIPHER_CTX *ctx = NULL;
	size_t len = strlen(secret);
	int outl = 0, fin = 0, r;

	if (SEAL_NONCE + len + SEAL_TAG > out_max)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the secret is too long");
	r = seal_key(v, 1, &key, err);
	if (r == 0)
		r = channel_kek(key, channel_id, kek, err);
	if (r < 0)
		goto out;
	if (RAND_bytes(out, SEAL_NONCE) != 1 || (ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, kek, out) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &outl, (const unsigned char *)channel_id,
			      (int)strlen(channel_id)) != 1 ||
	    EVP_EncryptUpdate(ctx, out + SEAL_NONCE, &outl, (const unsigned char *)secret,
			      (int)len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, out + SEAL_NONCE + outl, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG,
				out + SEAL_NONCE + outl + fin) != 1) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "the secret could not be sealed");
		goto out;
	}
	*ret_len = SEAL_NONCE + (size_t)outl + (size_t)fin + SEAL_TAG;
	r = 0;
out:
	OPENSSL_cleanse(kek, sizeof(kek));
	EVP_CIPHER_CTX_free(ctx);
	cv_token_secret_free(key);
	return r;
}

/* The secret of a sealed channel, in a buffer the caller releases with OPENSSL_clear_free
 * (*ret_len + 1 bytes). */
static int unseal(struct cv_vault *v, const struct cv_notify_channel *ch, char **ret,
		  size_t *ret_len, struct cv_errmsg *err)
{
	struct cv_token_secret *key = NULL;
	uint8_t kek[CV_TOKEN_MAC_LEN];
	EVP_CIPHER_CTX *ctx = NULL;
	size_t ct_len;
	char *plain = NULL;
	int outl = 0, fin = 0, r;

	if (ch->sealed_len < SEAL_NONCE + SEAL_TAG)
		return cv_errmsg_set(err, CV_ERR_DB, "the channel's sealed secret is damaged");
	ct_len = ch->sealed_len - SEAL_NONCE - SEAL_TAG;
	r = seal_key(v, 0, &key, err);
	if (r == 0)
		r = channel_kek(key, ch->id, kek, err);
	if (r < 0)
		goto out;
	plain = OPENSSL_zalloc(ct_len + 1);
	if (plain == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, kek, ch->sealed) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &outl, (const unsigned char *)ch->id,
			      (int)strlen(ch->id)) != 1 ||
	    EVP_DecryptUpdate(ctx, (unsigned char *)plain, &outl, ch->sealed + SEAL_NONCE,
			      (int)ct_len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG,
				(void *)(ch->sealed + SEAL_NONCE + ct_len)) != 1 ||
	    EVP_DecryptFinal_ex(ctx, (unsigned char *)plain + outl, &fin) != 1) {
		r = cv_errmsg_set(err, CV_ERR_DB, "the channel's sealed secret does not open (the "
				  "database or the token's key was changed)");
		goto out;
	}
	*ret = plain;
	*ret_len = ct_len;
	plain = NULL;
	r = 0;
out:
	OPENSSL_cleanse(kek, sizeof(kek));
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_clear_free(plain, ct_len + 1);
	cv_token_secret_free(key);
	return r;
}

/* Frees what json_dumps made, with jansson's own allocator (certvaultd's wipes). */
static void dump_free(char *text)
{
	json_malloc_t m;
	json_free_t f;

	if (text == NULL)
		return;
	json_get_alloc_funcs(&m, &f);
	f(text);
}

/* A JSON array of strings as text (into buf), or CV_ERR_BAD_REQUEST when it does not fit. */
static int strings_json(const char *const *v, size_t n, char *buf, size_t len)
{
	json_t *a = json_array();
	char *text;
	size_t i;
	int r = 0;

	for (i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(a, json_string(v[i])) < 0)
			r = CV_ERR_NOMEM;
	text = a != NULL && r == 0 ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	if (text == NULL)
		return CV_ERR_NOMEM;
	if (strlen(text) >= len)
		r = CV_ERR_BAD_REQUEST;
	else
		memcpy(buf, text, strlen(text) + 1);
	dump_free(text);
	return r;
}

/* Opens name inside dir for reading: a plain file name (no slash, not . or ..), a regular
 * file no one but its owner may read, not a link. Returns the descriptor or a cv_err. */
static int password_open(const char *dir, const char *name, struct cv_errmsg *err)
{
	struct stat st;
	int dfd, fd;

	if (dir == NULL || dir[0] == '\0')
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "SMTP passwords are read from files "
				     "in notifications.password_dir, which is not set");
	if (name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0 || strlen(name) > 255)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"password_file\" is a file name in "
				     "notifications.password_dir, without a slash");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "notifications.password_dir cannot "
				     "be opened: %s", strerror(errno));
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	close(dfd);
	if (fd < 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the password file %s cannot be "
				     "opened: %s", name, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
		close(fd);
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "the password file %s must be a "
				     "regular file that only its owner may read (mode 0600)", name);
	}
	return fd;
}

/* The first line of the password file, in a buffer released with OPENSSL_clear_free(p, 257). */
static int password_read(const char *dir, const char *name, char **ret, struct cv_errmsg *err)
{
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd = password_open(dir, name, err);

	if (fd < 0)
		return fd;
	buf = OPENSSL_zalloc(257);
	if (buf == NULL) {
		close(fd);
		return CV_ERR_NOMEM;
	}
	while (len < 256) {
		n = read(fd, buf + len, 256 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	len = strcspn(buf, "\r\n");
	OPENSSL_cleanse(buf + len, 257 - len);
	*ret = buf;
	return 0;
}

static int event_known(const char *e)
{
	size_t i;

	for (i = 0; cv_notify_events[i] != NULL; i++)
		if (strcmp(cv_notify_events[i], e) == 0)
			return 1;
	return 0;
}

int cv_vault_notify_channel_create(struct cv_vault *v, struct cv_audit *audit,
				   const struct cv_notify_channel_request *req, int64_t now,
				   struct cv_notify_channel *ret, char *ret_secret,
				   struct cv_errmsg *err)
{
	struct cv_notify_channel ch;
	unsigned char raw[32];
	uint8_t idb[8];
	char origin[224];
	const char *secret = req->secret;
	size_t i, j;
	json_t *changes;
	int r, fd;

	memset(&ch, 0, sizeof(ch));
	ret_secret[0] = '\0';
	r = vault_check_name(req->name, err);
	if (r < 0)
		return r;
	if (strcmp(req->kind, "webhook") != 0 && strcmp(req->kind, "email") != 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"kind\" is webhook or email");
	if (strlen(req->url) > CV_NOTIFY_URL_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"url\" is longer than %d bytes",
				     CV_NOTIFY_URL_MAX);
	r = strcmp(req->kind, "webhook") == 0 ?
		    cv_net_webhook_url_check(req->url, CV_NOTIFY_URL_MAX, err) :
		    cv_net_smtp_url_check(req->url, CV_NOTIFY_URL_MAX, err);
	if (r < 0)
		return r;
	for (i = 0; i < req->n_events; i++) {
		if (!event_known(req->events[i]))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"events\": %.60s is not an "
					     "event (GET /v1/openapi.json lists them)",
					     req->events[i]);
		for (j = 0; j < i; j++)
			if (strcmp(req->events[i], req->events[j]) == 0)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"events\": %s twice",
						     req->events[i]);
	}
	r = req->n_events > 0 ? strings_json(req->events, req->n_events, ch.events,
					     sizeof(ch.events)) :
				strings_json(cv_notify_events, sizeof(cv_notify_events) /
						 sizeof(cv_notify_events[0]) - 1, ch.events,
					     sizeof(ch.events));
	if (r < 0)
		return r;
	if (strcmp(req->kind, "webhook") == 0) {
		if (req->mail_from != NULL || req->n_to > 0 || req->username != NULL ||
		    req->password_file != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "a webhook takes no \"from\", "
					     "\"to\", \"username\" or \"password_file\"");
		if (secret != NULL && (strlen(secret) < CV_NOTIFY_SECRET_MIN ||
				       strlen(secret) > CV_NOTIFY_SECRET_MAX))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"secret\" must be %d to %d "
					     "bytes", CV_NOTIFY_SECRET_MIN, CV_NOTIFY_SECRET_MAX);
	} else {
		if (secret != NULL)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "an email channel takes no "
					     "\"secret\"");
		if (req->mail_from == NULL || cv_notify_address_check(req->mail_from) < 0)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"from\" must be an email "
					     "address (local@domain)");
		if (req->n_to == 0 || req->n_to > CV_NOTIFY_RECIPIENTS_MAX)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"to\" names 1 to %d "
					     "addresses", CV_NOTIFY_RECIPIENTS_MAX);
		for (i = 0; i < req->n_to; i++)
			if (cv_notify_address_check(req->to[i]) < 0)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"to\": %.60s is not "
						     "an email address", req->to[i]);
		snprintf(ch.mail_from, sizeof(ch.mail_from), "%s", req->mail_from);
		r = strings_json(req->to, req->n_to, ch.mail_to, sizeof(ch.mail_to));
		if (r < 0)
			return r;
		if ((req->username == NULL || req->username[0] == '\0') !=
		    (req->password_file == NULL || req->password_file[0] == '\0'))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"username\" and "
					     "\"password_file\" go together");
		if (req->username != NULL && req->username[0] != '\0') {
			if (strlen(req->username) >= sizeof(ch.username) ||
			    strpbrk(req->username, "\r\n") != NULL)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"username\" is one "
						     "line of at most 255 bytes");
			fd = password_open(req->password_dir, req->password_file, err);
			if (fd < 0)
				return fd;
			close(fd);
			snprintf(ch.username, sizeof(ch.username), "%s", req->username);
			snprintf(ch.password_file, sizeof(ch.password_file), "%s",
				 req->password_file);
		}
	}
	/* Before the token is asked to seal anything (its key is made on first use): a taken
	 * name changes nothing anywhere. The insert's unique key still decides a race. */
	r = cv_store_notify_channel_get(v->store, req->name, ret);
	if (r == 0)
		return cv_errmsg_set(err, CV_ERR_NAME_TAKEN, "a channel named %s exists",
				     req->name);
	if (r != CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "the database could not be read");
	if (RAND_bytes(idb, sizeof(idb)) != 1)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "no random bytes");
	memcpy(ch.id, "ch_", 3);
	cv_hex_encode(idb, sizeof(idb), ch.id + 3);
	snprintf(ch.name, sizeof(ch.name), "%s", req->name);
	snprintf(ch.kind, sizeof(ch.kind), "%s", req->kind);
	snprintf(ch.url, sizeof(ch.url), "%s", req->url);
	ch.created_at = now;
	if (audit != NULL)
		snprintf(ch.created_by, sizeof(ch.created_by), "%s", audit->entry.actor_name);
	if (strcmp(req->kind, "webhook") == 0) {
		if (secret == NULL) {
			/* The Standard Webhooks form: receivers' libraries take it as it is. */
			if (RAND_bytes(raw, sizeof(raw)) != 1)
				return cv_errmsg_set(err, CV_ERR_INTERNAL, "no random bytes");
			memcpy(ret_secret, "whsec_", 6);
			EVP_EncodeBlock((unsigned char *)ret_secret + 6, raw, sizeof(raw));
			OPENSSL_cleanse(raw, sizeof(raw));
			secret = ret_secret;
		}
		r = seal(v, ch.id, secret, ch.sealed, sizeof(ch.sealed), &ch.sealed_len, err);
		if (r < 0) {
			OPENSSL_cleanse(ret_secret, CV_NOTIFY_SECRET_MAX + 1);
			ret_secret[0] = '\0';
			return r;
		}
	}
	/* The record says where messages go by scheme and host only: a webhook URL's path may
	 * itself be a secret. */
	vault_audit_target(audit, ch.id);
	{
		const char *p = strstr(ch.url, "://");
		size_t n = p != NULL ? (size_t)(p - ch.url) + 3 : 0;

		n += strcspn(ch.url + n, "/?#");
		snprintf(origin, sizeof(origin), "%.*s", (int)(n < 200 ? n : 200), ch.url);
	}
	changes = json_pack("{s:s, s:s, s:s, s:o?}", "name", ch.name, "kind", ch.kind, "origin",
			    origin, "events", json_loads(ch.events, 0, NULL));
	vault_audit_changes(audit, changes);
	r = cv_store_notify_channel_insert(v->store, &ch, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r < 0) {
		OPENSSL_cleanse(ret_secret, CV_NOTIFY_SECRET_MAX + 1);
		ret_secret[0] = '\0';
		if (r == CV_ERR_NAME_TAKEN)
			return cv_errmsg_set(err, r, "a channel named %s exists", req->name);
		return vault_write_errmsg(err, r, "the database could not be written");
	}
	*ret = ch;
	return 0;
}

int cv_vault_notify_channel_get(struct cv_vault *v, const char *id,
				struct cv_notify_channel *ret, struct cv_errmsg *err)
{
	int r = cv_store_notify_channel_get(v->store, id, ret);

	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no channel %.64s", id);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_notify_channel_list(struct cv_vault *v, struct cv_notify_channel **ret,
				 size_t *ret_n, struct cv_errmsg *err)
{
	int r = cv_store_notify_channel_list(v->store, ret, ret_n);

	return r < 0 ? cv_errmsg_set(err, r, "the database could not be read") : 0;
}

int cv_vault_notify_channel_delete(struct cv_vault *v, struct cv_audit *audit, const char *id,
				   struct cv_errmsg *err)
{
	struct cv_notify_channel ch;
	int r;

	r = cv_vault_notify_channel_get(v, id, &ch, err);
	if (r < 0)
		return r;
	vault_audit_changes(audit, json_pack("{s:s, s:s}", "name", ch.name, "kind", ch.kind));
	r = cv_store_notify_channel_delete(v->store, ch.id, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no channel %.64s", id);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database could not be written");
	return 0;
}

int cv_vault_cert_notify_set(struct cv_vault *v, struct cv_audit *audit, const char *name,
			     const int64_t *thresholds, int n_thresholds,
			     const char *const *contacts, size_t n_contacts, struct cv_errmsg *err)
{
	char thr[256] = "", con[CV_NOTIFY_CONTACTS_MAX * 260], cur_name[65];
	char old_thr[256], old_con[sizeof(con)];
	size_t off = 0;
	int i, j, r;

	if (n_thresholds > CV_NOTIFY_THRESHOLDS_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"thresholds\" holds at most %d "
				     "numbers of days", CV_NOTIFY_THRESHOLDS_MAX);
	if (n_thresholds >= 0) {
		off += (size_t)snprintf(thr + off, sizeof(thr) - off, "[");
		for (i = 0; i < n_thresholds; i++) {
			if (thresholds[i] < 0 || thresholds[i] > CV_NOTIFY_THRESHOLD_DAYS_MAX)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"thresholds\" are "
						     "days from 0 to %d",
						     CV_NOTIFY_THRESHOLD_DAYS_MAX);
			for (j = 0; j < i; j++)
				if (thresholds[j] == thresholds[i])
					return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"thresholds\":"
							     " %lld twice", (long long)thresholds[i]);
			off += (size_t)snprintf(thr + off, sizeof(thr) - off, "%s%lld",
						i > 0 ? "," : "", (long long)thresholds[i]);
		}
		snprintf(thr + off, sizeof(thr) - off, "]");
	}
	if (n_contacts > CV_NOTIFY_CONTACTS_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"contacts\" names at most %d "
				     "addresses", CV_NOTIFY_CONTACTS_MAX);
	for (i = 0; i < (int)n_contacts; i++)
		if (cv_notify_address_check(contacts[i]) < 0)
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "\"contacts\": %.60s is not an "
					     "email address", contacts[i]);
	r = strings_json(contacts, n_contacts, con, sizeof(con));
	if (r < 0)
		return cv_errmsg_set(err, r, "the contacts could not be kept");
	r = cv_store_cert_notify_get(v->store, name, cur_name, old_thr, sizeof(old_thr), old_con,
				     sizeof(old_con));
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no certificate %.64s", name);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	vault_audit_changes(audit, json_pack("{s:o, s:o}", "thresholds",
					     vault_audit_change(old_thr[0] ? json_loads(old_thr, 0,
								NULL) : json_null(),
								thr[0] ? json_loads(thr, 0, NULL) :
								json_null()),
					     "contacts",
					     vault_audit_change(json_loads(old_con, 0, NULL),
								json_loads(con, 0, NULL))));
	r = cv_store_cert_notify_set(v->store, cur_name, thr, con, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no certificate %.64s", name);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database could not be written");
	return 0;
}

int cv_vault_cert_notify_get(struct cv_vault *v, const char *name, json_t **ret,
			     struct cv_errmsg *err)
{
	char thr[256], con[CV_NOTIFY_CONTACTS_MAX * 260], cur_name[65];
	int r;

	r = cv_store_cert_notify_get(v->store, name, cur_name, thr, sizeof(thr), con, sizeof(con));
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no certificate %.64s", name);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	*ret = json_pack("{s:s, s:o, s:o}", "certificate", cur_name, "thresholds",
			 thr[0] ? json_loads(thr, 0, NULL) : json_null(), "contacts",
			 json_loads(con, 0, NULL));
	return *ret != NULL ? 0 : CV_ERR_NOMEM;
}

int cv_vault_notify_deliveries(struct cv_vault *v, const struct cv_notify_filter *f,
			       struct cv_notify_delivery **ret, size_t *ret_n,
			       struct cv_errmsg *err)
{
	int r = cv_store_notify_deliveries(v->store, f, ret, ret_n);

	return r < 0 ? cv_errmsg_set(err, r, "the database could not be read") : 0;
}

int cv_vault_notify_attempts(struct cv_vault *v, int64_t outbox_id,
			     struct cv_notify_attempt **ret, size_t *ret_n)
{
	return cv_store_notify_attempts(v->store, outbox_id, ret, ret_n);
}

/* The notifier. */

struct cv_notifier {
	struct cv_vault *v;          /* borrowed */
	struct cv_notify_settings s;
	char node[65];               /* this node in the lease */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int stop;
	int held;                    /* the lease, as of the last tick */
	int64_t next_scan;
	int token_up;                /* -1: not looked at yet */
	char token_label[33];        /* as the token said when it was last there */
	/* Webhook secrets already unsealed, by channel: kept (in memory of a process that
	 * cannot be dumped or traced) so that "token.unavailable" can still be signed while
	 * the token is away. Touched by the notifier thread only; wiped at stop. */
	struct secret_entry {
		char id[24];
		unsigned char sealed[256];
		size_t sealed_len;
		char *secret;        /* OPENSSL_clear_free(secret, len + 1) */
		size_t len;
	} *secrets;
	size_t n_secrets;
};

/* The secret of webhook channel ch: from the cache when its sealed form is the one cached,
 * else unsealed in the token and cached. *ret is borrowed from the cache. */
static int channel_secret(struct cv_notifier *nf, const struct cv_notify_channel *ch,
			  const char **ret, size_t *ret_len, struct cv_errmsg *err)
{
	struct secret_entry *e = NULL, *grown;
	char *secret = NULL;
	size_t i, len = 0;
	int r;

	for (i = 0; i < nf->n_secrets; i++)
		if (strcmp(nf->secrets[i].id, ch->id) == 0)
			e = &nf->secrets[i];
	if (e != NULL && e->sealed_len == ch->sealed_len &&
	    CRYPTO_memcmp(e->sealed, ch->sealed, ch->sealed_len) == 0) {
		*ret = e->secret;
		*ret_len = e->len;
		return 0;
	}
	r = unseal(nf->v, ch, &secret, &len, err);
	if (r < 0)
		return r;
	if (e == NULL) {
		grown = realloc(nf->secrets, (nf->n_secrets + 1) * sizeof(*grown));
		if (grown == NULL) {
			OPENSSL_clear_free(secret, len + 1);
			return CV_ERR_NOMEM;
		}
		nf->secrets = grown;
		e = &nf->secrets[nf->n_secrets++];
		memset(e, 0, sizeof(*e));
	}
	OPENSSL_clear_free(e->secret, e->secret != NULL ? e->len + 1 : 0);
	snprintf(e->id, sizeof(e->id), "%s", ch->id);
	memcpy(e->sealed, ch->sealed, ch->sealed_len);
	e->sealed_len = ch->sealed_len;
	e->secret = secret;
	e->len = len;
	*ret = secret;
	*ret_len = len;
	return 0;
}

/* While the token is there, every webhook channel's secret is made ready for when it is
 * not. */
static void secrets_warm(struct cv_notifier *nf)
{
	struct cv_notify_channel *all = NULL;
	struct cv_errmsg err = { "" };
	const char *secret;
	size_t n = 0, i, j, len;

	if (cv_store_notify_channel_list(nf->v->store, &all, &n) < 0)
		return;
	/* A deleted channel's secret goes from memory too. */
	for (i = 0; i < nf->n_secrets;) {
		for (j = 0; j < n; j++)
			if (strcmp(all[j].id, nf->secrets[i].id) == 0)
				break;
		if (j < n) {
			i++;
			continue;
		}
		OPENSSL_clear_free(nf->secrets[i].secret, nf->secrets[i].len + 1);
		nf->secrets[i] = nf->secrets[--nf->n_secrets];
	}
	for (i = 0; i < n; i++)
		if (all[i].sealed_len > 0)
			(void)channel_secret(nf, &all[i], &secret, &len, &err);
	free(all);
}

static void secrets_wipe(struct cv_notifier *nf)
{
	size_t i;

	for (i = 0; i < nf->n_secrets; i++)
		OPENSSL_clear_free(nf->secrets[i].secret, nf->secrets[i].len + 1);
	free(nf->secrets);
	nf->secrets = NULL;
	nf->n_secrets = 0;
}

/* Tells certvaultd's log, when it gave the notifier one. */
__attribute__((format(printf, 2, 3))) static void say(struct cv_notifier *nf, const char *fmt,
						      ...)
{
	char line[512];
	va_list ap;

	if (nf->s.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	nf->s.log(line);
}

/* The webhook's HMAC key: a Standard Webhooks secret ("whsec_" and base64) is its decoded
 * bytes, any other secret its bytes as given. */
static int webhook_sign(const char *secret, size_t secret_len, const char *id, const char *ts,
			const char *body, char *ret_b64)
{
	unsigned char key[CV_NOTIFY_SECRET_MAX], mac[32];
	const unsigned char *k = (const unsigned char *)secret;
	size_t klen = secret_len;
	EVP_MAC *m = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	size_t out_len = 0;
	int n, r = CV_ERR_INTERNAL;

	if (secret_len > 6 && strncmp(secret, "whsec_", 6) == 0) {
		n = EVP_DecodeBlock(key, (const unsigned char *)secret + 6, (int)(secret_len - 6));
		if (n > 0) {
			/* EVP_DecodeBlock counts the padding's zero bytes. */
			if (secret[secret_len - 1] == '=')
				n--;
			if (secret[secret_len - 2] == '=')
				n--;
			k = key;
			klen = (size_t)n;
		}
	}
	params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (m == NULL || (ctx = EVP_MAC_CTX_new(m)) == NULL ||
	    EVP_MAC_init(ctx, k, klen, params) != 1 ||
	    EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) != 1 ||
	    EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1 ||
	    EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) != 1 ||
	    EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1 ||
	    EVP_MAC_update(ctx, (const unsigned char *)body, strlen(body)) != 1 ||
	    EVP_MAC_final(ctx, mac, &out_len, sizeof(mac)) != 1)
		goto out;
	EVP_EncodeBlock((unsigned char *)ret_b64, mac, (int)out_len);
	r = 0;
out:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(mac, sizeof(mac));
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(m);
	return r;
}

static int send_webhook(struct cv_notifier *nf, const struct cv_notify_channel *ch,
			const struct cv_notify_delivery *d, const char *body, int64_t now,
			struct cv_errmsg *err)
{
	char h_id[64], h_ts[64], h_sig[128], h_event[80], ts[24], sig[64];
	const char *headers[5] = { h_id, h_ts, h_sig, h_event, NULL };
	const char *secret = NULL;
	size_t secret_len = 0;
	long status = 0;
	int r;

	snprintf(ts, sizeof(ts), "%lld", (long long)now);
	r = channel_secret(nf, ch, &secret, &secret_len, err);
	if (r < 0)
		return r;
	r = webhook_sign(secret, secret_len, d->delivery_id, ts, body, sig);
	if (r < 0)
		return cv_errmsg_set(err, r, "the signature could not be made");
	snprintf(h_id, sizeof(h_id), "webhook-id: %s", d->delivery_id);
	snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %s", ts);
	snprintf(h_sig, sizeof(h_sig), "webhook-signature: v1,%s", sig);
	snprintf(h_event, sizeof(h_event), "x-certvault-event: %s", d->event);
	return cv_net_webhook_post(&nf->s.net, ch->url, headers, body, strlen(body),
				   nf->s.timeout_ms, &status, err);
}

/* Adds each address of the JSON array text to rcpt (deduplicated), as far as room goes. */
static void add_recipients(json_t *arr, const char **rcpt, size_t *n, size_t max)
{
	size_t i, j;
	json_t *one;

	json_array_foreach(arr, i, one) {
		const char *s = json_string_value(one);

		if (s == NULL || cv_notify_address_check(s) < 0 || *n == max)
			continue;
		for (j = 0; j < *n; j++)
			if (strcasecmp(rcpt[j], s) == 0)
				break;
		if (j == *n)
			rcpt[(*n)++] = s;
	}
}

/* A subject line: the event and the certificate, ASCII (names are ASCII). */
static void mail_subject(const struct cv_notify_delivery *d, json_t *payload, char *buf,
			 size_t len)
{
	json_t *cert = json_object_get(payload, "certificate");
	json_t *days = cert != NULL ? json_object_get(cert, "expires_in_days") : NULL;

	if (strcmp(d->event, "certificate.expiring") == 0 && json_is_integer(days))
		snprintf(buf, len, "[certvault] %.64s expires in %lld day(s)", d->certificate,
			 (long long)json_integer_value(days));
	else if (strcmp(d->event, "certificate.expired") == 0)
		snprintf(buf, len, "[certvault] %.64s has expired", d->certificate);
	else if (d->certificate[0] != '\0')
		snprintf(buf, len, "[certvault] %.64s: %s", d->certificate, d->event);
	else
		snprintf(buf, len, "[certvault] %s", d->event);
}

static int send_email(struct cv_notifier *nf, const struct cv_notify_channel *ch,
		      const struct cv_notify_delivery *d, json_t *payload, int64_t now,
		      struct cv_errmsg *err)
{
	const char *rcpt[CV_NOTIFY_RECIPIENTS_MAX + CV_NOTIFY_CONTACTS_MAX];
	size_t n_rcpt = 0, i, off = 0, cap;
	json_t *to = json_loads(ch->mail_to, 0, NULL);
	char subject[200], date[64], *msg = NULL, *password = NULL, *pretty = NULL;
	size_t lines;
	time_t t = (time_t)now;
	struct tm tm;
	int r;

	if (to == NULL)
		return cv_errmsg_set(err, CV_ERR_DB, "the channel's recipients cannot be read");
	add_recipients(to, rcpt, &n_rcpt, sizeof(rcpt) / sizeof(rcpt[0]));
	add_recipients(json_object_get(payload, "contacts"), rcpt, &n_rcpt,
		       sizeof(rcpt) / sizeof(rcpt[0]));
	mail_subject(d, payload, subject, sizeof(subject));
	/* The body as indented JSON, one member a line with CRLF ends: SMTP lines stay far
	 * below RFC 5322's 998 characters, which one compact line could pass. */
	pretty = json_dumps(payload, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (pretty == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	for (i = 0, lines = 0; pretty[i] != '\0'; i++)
		lines += pretty[i] == '\n';
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	cap = strlen(pretty) + lines + 4096;
	msg = malloc(cap);
	if (msg == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	off += (size_t)snprintf(msg + off, cap - off, "From: <%s>\r\nTo: ", ch->mail_from);
	for (i = 0; i < n_rcpt && off < cap; i++)
		off += (size_t)snprintf(msg + off, cap - off, "%s<%s>", i > 0 ? ", " : "",
					rcpt[i]);
	if (off < cap)
		off += (size_t)snprintf(msg + off, cap - off,
					"\r\nSubject: %s\r\nDate: %s\r\n"
					"Message-ID: <%s@certvault>\r\n"
					"X-Certvault-Delivery-Id: %s\r\nX-Certvault-Event: %s\r\n"
					"MIME-Version: 1.0\r\n"
					"Content-Type: text/plain; charset=utf-8\r\n"
					"Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n\r\n",
					subject, date, d->delivery_id, d->delivery_id, d->event,
					subject + strlen("[certvault] "));
	for (i = 0; pretty[i] != '\0' && off + 3 < cap; i++) {
		if (pretty[i] == '\n')
			msg[off++] = '\r';
		msg[off++] = pretty[i];
	}
	if (off + 3 < cap) {
		memcpy(msg + off, "\r\n", 3);
		off += 2;
	} else {
		off = cap;
	}
	if (off >= cap) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "the message is too long");
		goto out;
	}
	if (ch->username[0] != '\0') {
		r = password_read(nf->s.password_dir, ch->password_file, &password, err);
		if (r < 0)
			goto out;
	}
	r = cv_net_smtp_send(&nf->s.net, ch->url, ch->username, password, ch->mail_from, rcpt,
			     n_rcpt, msg, off, nf->s.timeout_ms, err);
out:
	OPENSSL_clear_free(password, password != NULL ? 257 : 0);
	dump_free(pretty);
	free(msg);
	json_decref(to);
	return r;
}

/* One attempt of d: recorded as begun before anything is sent, so that a crash leaves it
 * "sending" (then "interrupted", and sent again with the same id). */
static void deliver(struct cv_notifier *nf, const struct cv_notify_delivery *d, int64_t now)
{
	struct cv_errmsg err = { "" };
	struct cv_notify_channel ch = { .id = "" };
	enum cv_delivery_state state;
	json_t *payload = NULL;
	char *body = NULL;
	int64_t n = 0, k, wait, next = now;
	int r;

	if (cv_store_notify_attempt_begin(nf->v->store, d->id, now, &n) < 0)
		return;
	r = cv_store_notify_channel_get(nf->v->store, d->channel_id, &ch);
	if (r == CV_ERR_NOT_FOUND) {
		cv_store_notify_attempt_end(nf->v->store, d->id, n, now, "failed",
					    "the channel was deleted", CV_DELIVERY_FAILED, now);
		return;
	}
	payload = r == 0 ? json_loads(d->payload, 0, NULL) : NULL;
	if (payload != NULL && json_object_set_new(payload, "id", json_string(d->delivery_id)) == 0)
		body = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
	if (body == NULL) {
		r = cv_errmsg_set(&err, r < 0 ? r : CV_ERR_NOMEM, "the message could not be made");
	} else if (strcmp(ch.kind, "webhook") == 0) {
		r = send_webhook(nf, &ch, d, body, now, &err);
	} else {
		r = send_email(nf, &ch, d, payload, now, &err);
	}
	now = (int64_t)time(NULL);
	if (r == 0) {
		cv_store_notify_attempt_end(nf->v->store, d->id, n, now, "delivered", "",
					    CV_DELIVERY_DELIVERED, now);
	} else {
		/* Backoff: base, 2 base, 4 base... up to the maximum, for attempt n. */
		wait = nf->s.retry_base_seconds;
		for (k = 1; k < n && wait < nf->s.retry_max_seconds; k++)
			wait *= 2;
		if (wait > nf->s.retry_max_seconds)
			wait = nf->s.retry_max_seconds;
		state = n >= nf->s.max_attempts ? CV_DELIVERY_FAILED : CV_DELIVERY_PENDING;
		next = now + wait;
		say(nf, "notifications: %s to channel %s, attempt %lld failed%s: %s",
		    d->delivery_id, ch.name[0] ? ch.name : d->channel_id, (long long)n,
		    state == CV_DELIVERY_FAILED ? ", given up" : "",
		    err.text[0] ? err.text : cv_strerror(r));
		cv_store_notify_attempt_end(nf->v->store, d->id, n, now, "failed",
					    err.text[0] ? err.text : cv_strerror(r), state, next);
	}
	dump_free(body);
	json_decref(payload);
}

/* Tells of the token going away and coming back (once per change this node saw). */
static void token_watch(struct cv_notifier *nf, int64_t now)
{
	struct cv_token_health h;
	char dedup[96], detail[512];
	json_t *o;
	char *text;
	int64_t added;
	int up;

	up = cv_token_health_get(nf->v->token, &h) == 0 && h.logged_in;
	if (up)
		snprintf(nf->token_label, sizeof(nf->token_label), "%s", h.label);
	if (nf->token_up < 0 || up == nf->token_up) {
		nf->token_up = up;
		return;
	}
	nf->token_up = up;
	snprintf(dedup, sizeof(dedup), "token:%s:%s:%lld", up ? "available" : "unavailable",
		 nf->node, (long long)now);
	o = json_pack("{s:s, s:s?}", "token", nf->token_label, "error", up ? NULL : h.error);
	text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	snprintf(detail, sizeof(detail), "%s", text != NULL && strlen(text) < sizeof(detail) ?
		 text : "");
	dump_free(text);
	json_decref(o);
	cv_store_notify_event(nf->v->store, up ? "token.available" : "token.unavailable", dedup,
			      detail, now, &added);
}

/* A current version that a truststore CRL now lists as revoked is told, once per version:
 * the CRLs are checked offline, so a scan costs no network and only certificates whose
 * issuer has a CRL are read. */
/* The log of deliveries is kept notifications.delivery_log_days: without pruning, every
 * message ever sent would stay (a row and its attempts), and the log would grow for ever. */
static void log_prune(struct cv_notifier *nf, int64_t now)
{
	int64_t n = 0, total = 0;
	int r, rounds;

	if (nf->s.delivery_log_days <= 0)
		return;
	/* Batches of 500 (each its own short transaction), and at most 20 per scan: a log
	 * that grew long before catches up over a few scans, never holding the writer. */
	for (rounds = 0; rounds < 20; rounds++) {
		r = cv_store_notify_prune(nf->v->store, now - nf->s.delivery_log_days * 86400, 500,
					  &n);
		if (r < 0) {
			say(nf, "notifications: the log of deliveries could not be pruned: %s",
			    cv_strerror(r));
			break;
		}
		total += n;
		if (n < 500)
			break;
	}
	if (total > 0)
		say(nf, "notifications: %lld delivery(ies) older than %lld day(s) removed from the"
		    " log", (long long)total, (long long)nf->s.delivery_log_days);
}

static void revocation_watch(struct cv_notifier *nf, int64_t now)
{
	char (*names)[65] = NULL, detail[512], dedup[96];
	struct cv_cert_record *rec = NULL;
	struct cv_errmsg err = { "" };
	struct cv_revocation rev;
	X509 *cert = NULL;
	json_t *o;
	char *text;
	size_t n = 0, i;
	int64_t added;

	if (cv_store_notify_crl_candidates(nf->v->store, &names, &n) < 0)
		return;
	for (i = 0; i < n; i++) {
		if (cv_store_cert_get(nf->v->store, names[i], &rec) < 0)
			continue;
		if (cv_x509_cert_from_der(rec->cert_der, rec->cert_der_len, &cert) == 0 &&
		    vault_revocation_offline(nf->v, cert, rec->issuer, now, &rev, &err) == 1 &&
		    rev.status == CV_REV_REVOKED) {
			struct tm tm;
			char when[32] = "";

			if (gmtime_r(&rev.revoked_at, &tm) != NULL)
				strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
			o = json_pack("{s:s, s:s, s:s, s:s}", "source", rev.source, "reason",
				      cv_x509_crl_reason_name(rev.reason), "detail", rev.detail,
				      "revoked_at", when);
			text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
			snprintf(detail, sizeof(detail), "%s",
				 text != NULL && strlen(text) < sizeof(detail) ? text : "");
			dump_free(text);
			json_decref(o);
			snprintf(dedup, sizeof(dedup), "revoked:%lld:%lld", (long long)rec->id,
				 (long long)rec->version);
			cv_store_notify_cert_event(nf->v->store, rec->name, "certificate.revoked",
						   dedup, detail, now, &added);
		}
		X509_free(cert);
		cert = NULL;
		cv_store_cert_free(rec);
		rec = NULL;
	}
	free(names);
}

static void tick(struct cv_notifier *nf)
{
	struct cv_notify_delivery *due = NULL;
	int64_t now = (int64_t)time(NULL), added = 0, n_int = 0;
	size_t n = 0, i;
	int held = 0;

	if (cv_store_lease(nf->v->store, "notifications", nf->node, now, nf->s.lease_seconds,
			   &held) < 0 || !held) {
		nf->held = 0;
		return;
	}
	if (!nf->held) {
		/* Newly the sender: what a sender before left half-done is due again now. */
		cv_store_notify_interrupted(nf->v->store, now, &n_int);
		if (n_int > 0)
			say(nf, "notifications: %lld attempt(s) interrupted by a stop are sent again"
			    " with their delivery ids", (long long)n_int);
		nf->held = 1;
		nf->next_scan = now;
	}
	if (now >= nf->next_scan) {
		if (nf->token_up != 0)
			secrets_warm(nf);
		if (cv_store_notify_scan(nf->v->store, nf->s.thresholds, now, &added) < 0)
			say(nf, "notifications: the expiry scan could not write to the database");
		revocation_watch(nf, now);
		log_prune(nf, now);
		nf->next_scan = now + nf->s.scan_seconds;
	}
	token_watch(nf, now);
	if (cv_store_notify_due(nf->v->store, now, 16, &due, &n) < 0)
		return;
	for (i = 0; i < n; i++) {
		pthread_mutex_lock(&nf->lock);
		if (nf->stop) {
			pthread_mutex_unlock(&nf->lock);
			break;
		}
		pthread_mutex_unlock(&nf->lock);
		deliver(nf, &due[i], (int64_t)time(NULL));
	}
	cv_notify_deliveries_free(due, n);
}

static void *notifier_main(void *arg)
{
	struct cv_notifier *nf = arg;
	struct timespec until;

	for (;;) {
		tick(nf);
		pthread_mutex_lock(&nf->lock);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		if (!nf->stop)
			pthread_cond_timedwait(&nf->wake, &nf->lock, &until);
		if (nf->stop) {
			pthread_mutex_unlock(&nf->lock);
			break;
		}
		pthread_mutex_unlock(&nf->lock);
	}
	return NULL;
}

int cv_notifier_start(struct cv_vault *v, const struct cv_notify_settings *s,
		      struct cv_notifier **ret, struct cv_errmsg *err)
{
	struct cv_notifier *nf = calloc(1, sizeof(*nf));

	if (nf == NULL)
		return CV_ERR_NOMEM;
	nf->v = v;
	nf->s = *s;
	nf->token_up = -1;
	snprintf(nf->node, sizeof(nf->node), "%s", s->node[0] ? s->node : "certvaultd");
	pthread_mutex_init(&nf->lock, NULL);
	pthread_cond_init(&nf->wake, NULL);
	if (pthread_create(&nf->thread, NULL, notifier_main, nf) != 0) {
		pthread_cond_destroy(&nf->wake);
		pthread_mutex_destroy(&nf->lock);
		free(nf);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "the notifier thread could not start");
	}
	*ret = nf;
	return 0;
}

void cv_notifier_stop(struct cv_notifier *nf)
{
	int held;

	if (nf == NULL)
		return;
	pthread_mutex_lock(&nf->lock);
	nf->stop = 1;
	pthread_cond_signal(&nf->wake);
	pthread_mutex_unlock(&nf->lock);
	pthread_join(nf->thread, NULL);
	/* Another node may take over at once. */
	if (nf->held)
		cv_store_lease(nf->v->store, "notifications", nf->node, (int64_t)time(NULL), -1,
			       &held);
	secrets_wipe(nf);
	pthread_cond_destroy(&nf->wake);
	pthread_mutex_destroy(&nf->lock);
	free(nf);
}
