/* token: a secret key that never leaves the token, for MACs (the audit chain's HMAC key).
 *
 * The key is a CKK_GENERIC_SECRET object found by its CKA_LABEL. Its handle is looked up
 * once and kept; a new login relists the key map (map.epoch moves) and handles do not
 * survive that, so the next MAC after a relisting finds the key by label again. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"

/* Longer than any label certvault gives (CKA_LABEL is free text; this bounds ours). */
#define SECRET_LABEL_MAX 64

struct cv_token_secret {
	struct cv_token *token;   /* borrowed */
	char label[SECRET_LABEL_MAX + 1];
	uint8_t id[CV_TOKEN_SECRET_ID_MAX];
	size_t id_len;
	pthread_mutex_t lock;     /* guards handle and epoch */
	CK_OBJECT_HANDLE handle;  /* CK_INVALID_HANDLE: look it up before use */
	unsigned long epoch;      /* the map's epoch when handle was found */
};

struct find_op {
	const char *label;
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n;
	uint8_t id[CV_TOKEN_SECRET_ID_MAX];
	CK_ULONG id_len;
};

/* What the last listing of the token saw of secret keys labelled op->label, when it is
 * current and nothing made a secret key since: at 10,000 keys a search costs as much as the
 * listing itself (SoftHSM looks at every object), and start-up would pay it twice. Only the
 * first find after a listing is answered so (the one at start, or after the token came
 * back); every later one asks the token, so that a second key with the label that another
 * tool made meanwhile is seen and refused. Returns 1 with op filled, or 0: ask the token. */
static int find_listed(struct cv_token *token, struct find_op *op)
{
	const struct keymap *map = &token->map;
	size_t i;
	int found = 0;

	pthread_mutex_lock(&token->map.lock);
	if (map->secrets_epoch == 0 || map->secrets_epoch != map->epoch)
		goto out;
	found = 1;
	token->map.secrets_epoch = 0;
	for (i = 0; i < map->n_secrets && op->n < 2; i++) {
		if (strcmp(map->secrets[i].label, op->label) != 0)
			continue;
		op->found[op->n] = map->secrets[i].handle;
		if (op->n == 0) {
			op->id_len = map->secrets[i].id_len <= sizeof(op->id) ?
				     map->secrets[i].id_len : 0;
			memcpy(op->id, map->secrets[i].id, op->id_len);
		}
		op->n++;
	}
out:
	pthread_mutex_unlock(&token->map.lock);
	return found;
}

/* Searches the token for secret keys labelled op->label: at most two are asked for, enough
 * to tell one from several. Reads the first one's CKA_ID. */
static CK_RV find_by_label(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			   const char **ret_call)
{
	struct find_op *op = arg;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BBOOL yes = CK_TRUE;
	/* A private object, as a listing keeps them: a secret key anyone may use without
	 * logging in is no key of certvault's. */
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)op->label, strlen(op->label) },
	};
	CK_ATTRIBUTE id = { CKA_ID, op->id, sizeof(op->id) };
	CK_RV rv, rv_final;

	op->n = 0;
	op->id_len = 0;
	if (find_listed(token, op))
		return CKR_OK;
	*ret_call = "C_FindObjectsInit";
	rv = token->f->C_FindObjectsInit(session, tmpl, 3);
	if (rv == CKR_OK) {
		*ret_call = "C_FindObjects";
		rv = token->f->C_FindObjects(session, op->found, 2, &op->n);
		rv_final = token->f->C_FindObjectsFinal(session);
		if (rv == CKR_OK && rv_final != CKR_OK) {
			*ret_call = "C_FindObjectsFinal";
			rv = rv_final;
		}
	}
	token_count(token, CV_TOKEN_OP_FIND, rv != CKR_OK);
	if (rv != CKR_OK || op->n == 0)
		return rv;
	*ret_call = "C_GetAttributeValue";
	rv = token->f->C_GetAttributeValue(session, op->found[0], &id, 1);
	/* A key without an id is found all the same; it just names no start. */
	if (rv == CKR_ATTRIBUTE_TYPE_INVALID) {
		id.ulValueLen = 0;
		rv = CKR_OK;
	}
	token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, rv != CKR_OK);
	if (rv == CKR_OK)
		op->id_len = id.ulValueLen <= sizeof(op->id) ? id.ulValueLen : 0;
	return rv;
}

static unsigned long map_epoch(struct cv_token *token)
{
	unsigned long epoch;

	pthread_mutex_lock(&token->map.lock);
	epoch = token->map.epoch;
	pthread_mutex_unlock(&token->map.lock);
	return epoch;
}

/* Finds the key by label: 0 with *ret_handle, CV_ERR_NOT_FOUND, CV_ERR_TOKEN when several
 * keys carry the label (which one signs would be a guess), or the token's error. */
static int lookup(struct cv_token_secret *s, CK_OBJECT_HANDLE *ret_handle,
		  struct cv_errmsg *err)
{
	struct find_op op;
	unsigned long epoch = map_epoch(s->token);
	int r;

	memset(&op, 0, sizeof(op));
	op.label = s->label;
	r = token_run(s->token, find_by_label, &op, err);
	if (r < 0)
		return r;
	if (op.n == 0)
		return cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no secret key labelled \"%s\" in the "
				     "token", s->label);
	if (op.n > 1)
		return cv_errmsg_set(err, CV_ERR_TOKEN, "several secret keys are labelled \"%s\" "
				     "in the token: keep only the one certvault made", s->label);
	pthread_mutex_lock(&s->lock);
	s->handle = op.found[0];
	s->epoch = epoch;
	memcpy(s->id, op.id, op.id_len);
	s->id_len = op.id_len;
	pthread_mutex_unlock(&s->lock);
	*ret_handle = op.found[0];
	return 0;
}

static int secret_new(struct cv_token *token, const char *label,
		      struct cv_token_secret **ret, struct cv_errmsg *err)
{
	struct cv_token_secret *s;

	if (label == NULL || label[0] == '\0' || strlen(label) > SECRET_LABEL_MAX)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "a secret key's label must be 1 to %d "
				     "characters", SECRET_LABEL_MAX);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot make a lock");
	}
	s->token = token;
	memcpy(s->label, label, strlen(label) + 1);
	s->handle = CK_INVALID_HANDLE;
	*ret = s;
	return 0;
}

int cv_token_secret_find(struct cv_token *token, const char *label,
			 struct cv_token_secret **ret_secret, struct cv_errmsg *err)
{
	struct cv_token_secret *s = NULL;
	CK_OBJECT_HANDLE h;
	int r;

	r = secret_new(token, label, &s, err);
	if (r < 0)
		return r;
	r = lookup(s, &h, err);
	if (r < 0) {
		cv_token_secret_free(s);
		return r;
	}
	*ret_secret = s;
	return 0;
}

struct generate_op {
	const char *label;
	const uint8_t *id;
	size_t id_len;
	CK_OBJECT_HANDLE handle;
};

static CK_RV generate(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
		      const char **ret_call)
{
	struct generate_op *op = arg;
	CK_MECHANISM mech = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_ULONG len = CV_TOKEN_MAC_LEN;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	/* It signs and verifies MACs and nothing else; nobody reads, wraps, copies or edits
	 * it, not even a PIN holder. */
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
		{ CKA_LABEL, (void *)op->label, strlen(op->label) },
		{ CKA_ID, (void *)op->id, op->id_len },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_ENCRYPT, &no, sizeof(no) },
		{ CKA_DECRYPT, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_MODIFIABLE, &no, sizeof(no) },
		{ CKA_COPYABLE, &no, sizeof(no) },
	};
	CK_RV rv;

	*ret_call = "C_GenerateKey";
	rv = token->f->C_GenerateKey(session, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]),
				     &op->handle);
	token_count(token, CV_TOKEN_OP_CREATE_OBJECT, rv != CKR_OK);
	return rv;
}

int cv_token_secret_generate(struct cv_token *token, const char *label, const uint8_t *id,
			     size_t id_len, struct cv_token_secret **ret_secret,
			     struct cv_errmsg *err)
{
	struct cv_token_secret *s = NULL;
	struct generate_op op = { label, id, id_len, CK_INVALID_HANDLE };
	CK_OBJECT_HANDLE h;
	int r;

	if (id_len == 0 || id_len > CV_TOKEN_SECRET_ID_MAX)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "a secret key's id is 1 to %d bytes",
				     CV_TOKEN_SECRET_ID_MAX);
	r = secret_new(token, label, &s, err);
	if (r < 0)
		return r;
	/* Found (once or more), it is not made again: two keys with one label would leave the
	 * MAC a guess. Only a search that found none goes on. */
	r = lookup(s, &h, err);
	if (r == 0 || r == CV_ERR_TOKEN) {
		r = cv_errmsg_set(err, CV_ERR_NAME_TAKEN, "a secret key labelled \"%s\" is in the "
				  "token already", label);
		goto out;
	}
	if (r != CV_ERR_NOT_FOUND)
		goto out;
	/* The listing's secret keys no longer say everything: later finds ask the token. */
	pthread_mutex_lock(&token->map.lock);
	token->map.secrets_epoch = 0;
	pthread_mutex_unlock(&token->map.lock);
	r = token_run(token, generate, &op, err);
	if (r < 0)
		goto out;
	/* Audit records keyed by it are committed next: it reaches the disk first (issue 21),
	 * or a power cut leaves a chain nobody can verify. */
	r = token_durable_sync(token, err);
	if (r < 0)
		goto out;
	/* Found again by label, as every later start will: this also proves it is the only one. */
	r = lookup(s, &h, err);
out:
	if (r < 0) {
		cv_token_secret_free(s);
		return r;
	}
	*ret_secret = s;
	return 0;
}

void cv_token_secret_free(struct cv_token_secret *s)
{
	if (s == NULL)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

size_t cv_token_secret_id(const struct cv_token_secret *s, uint8_t buf[CV_TOKEN_SECRET_ID_MAX])
{
	memcpy(buf, s->id, s->id_len);
	return s->id_len;
}

/* The kept handle, looked up again after a relisting made it stale. */
static int current_handle(struct cv_token_secret *s, CK_OBJECT_HANDLE *ret,
			  struct cv_errmsg *err)
{
	unsigned long epoch = map_epoch(s->token);
	CK_OBJECT_HANDLE h;

	pthread_mutex_lock(&s->lock);
	h = s->epoch == epoch ? s->handle : CK_INVALID_HANDLE;
	pthread_mutex_unlock(&s->lock);
	if (h != CK_INVALID_HANDLE) {
		*ret = h;
		return 0;
	}
	return lookup(s, ret, err);
}

static void forget_handle(struct cv_token_secret *s)
{
	pthread_mutex_lock(&s->lock);
	s->handle = CK_INVALID_HANDLE;
	pthread_mutex_unlock(&s->lock);
}

struct mac_op {
	CK_OBJECT_HANDLE key;
	const unsigned char *data;
	size_t len;
	unsigned char *mac;
	CK_RV rv;
};

static CK_RV mac_once(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
		      const char **ret_call)
{
	struct mac_op *op = arg;
	CK_MECHANISM mech = { CKM_SHA256_HMAC, NULL, 0 };
	CK_ULONG len = CV_TOKEN_MAC_LEN;
	CK_RV rv;

	*ret_call = "C_SignInit";
	rv = token->f->C_SignInit(session, &mech, op->key);
	if (rv == CKR_OK) {
		*ret_call = "C_Sign";
		rv = token->f->C_Sign(session, (CK_BYTE_PTR)op->data, (CK_ULONG)op->len, op->mac,
				      &len);
		if (rv == CKR_OK && len != CV_TOKEN_MAC_LEN)
			rv = CKR_FUNCTION_FAILED;
	}
	op->rv = rv;
	return rv;
}

int cv_token_secret_hmac(struct cv_token_secret *s, const void *data, size_t len,
			 uint8_t mac[CV_TOKEN_MAC_LEN], struct cv_errmsg *err)
{
	struct mac_op op;
	int r, attempt;

	memset(mac, 0, CV_TOKEN_MAC_LEN);
	for (attempt = 0; attempt < 2; attempt++) {
		memset(&op, 0, sizeof(op));
		op.data = data;
		op.len = len;
		op.mac = mac;
		r = current_handle(s, &op.key, err);
		if (r < 0)
			return r;
		r = token_run(s->token, mac_once, &op, err);
		if (r == 0 || r == CV_ERR_TOKEN_UNAVAILABLE)
			break;
		/* A handle gone stale between the look and the call (another thread's new
		 * login relisted): once more, by label. */
		if (op.rv != CKR_OBJECT_HANDLE_INVALID && op.rv != CKR_KEY_HANDLE_INVALID)
			break;
		forget_handle(s);
	}
	if (r < 0)
		memset(mac, 0, CV_TOKEN_MAC_LEN);
	return r;
}

struct attrs_op {
	CK_OBJECT_HANDLE key;
	struct cv_token_key_attrs *attrs;
	CK_RV rv;
};

static CK_RV secret_attrs_read(struct cv_token *token, CK_SESSION_HANDLE session, void *arg,
			       const char **ret_call)
{
	struct attrs_op *op = arg;
	CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, always = CK_FALSE,
		 never = CK_FALSE, priv = CK_FALSE, on_token = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_SENSITIVE, &sensitive, sizeof(sensitive) },
		{ CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
		{ CKA_ALWAYS_SENSITIVE, &always, sizeof(always) },
		{ CKA_NEVER_EXTRACTABLE, &never, sizeof(never) },
		{ CKA_PRIVATE, &priv, sizeof(priv) },
		{ CKA_TOKEN, &on_token, sizeof(on_token) },
	};
	CK_RV rv;

	*ret_call = "C_GetAttributeValue";
	rv = token->f->C_GetAttributeValue(session, op->key, tmpl, 6);
	token_count(token, CV_TOKEN_OP_GET_ATTRIBUTES, rv != CKR_OK);
	op->rv = rv;
	if (rv != CKR_OK)
		return rv;
	op->attrs->present = 1;
	op->attrs->sensitive = sensitive == CK_TRUE;
	op->attrs->extractable = extractable == CK_TRUE;
	op->attrs->always_sensitive = always == CK_TRUE;
	op->attrs->never_extractable = never == CK_TRUE;
	op->attrs->is_private = priv == CK_TRUE;
	op->attrs->on_token = on_token == CK_TRUE;
	return CKR_OK;
}

int cv_token_secret_attrs_get(struct cv_token_secret *s, struct cv_token_key_attrs *ret_attrs,
			      struct cv_errmsg *err)
{
	struct attrs_op op;
	int r;

	memset(ret_attrs, 0, sizeof(*ret_attrs));
	memset(&op, 0, sizeof(op));
	op.attrs = ret_attrs;
	r = current_handle(s, &op.key, err);
	if (r == 0)
		r = token_run(s->token, secret_attrs_read, &op, err);
	if (r < 0)
		memset(ret_attrs, 0, sizeof(*ret_attrs));
	return r;
}
