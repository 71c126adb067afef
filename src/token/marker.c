/* token: the marker on every key id certvault creates, so that a key object left behind
 * (no row names it) can be told apart from objects other tools made in the same token. */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "internal.h"

int cv_token_key_id_new(uint8_t id[CV_TOKEN_ID_LEN])
{
	memcpy(id, CV_TOKEN_ID_MARKER, CV_TOKEN_ID_MARKER_LEN);
	if (RAND_bytes(id + CV_TOKEN_ID_MARKER_LEN, CV_TOKEN_ID_LEN - CV_TOKEN_ID_MARKER_LEN) != 1)
		return CV_ERR_INTERNAL;
	return 0;
}

int cv_token_key_id_marked(const uint8_t *id, size_t id_len)
{
	return id_len == CV_TOKEN_ID_LEN &&
	       memcmp(id, CV_TOKEN_ID_MARKER, CV_TOKEN_ID_MARKER_LEN) == 0;
}

int cv_token_marked_foreach(struct cv_token *token,
			    int (*fn)(const uint8_t *id, size_t id_len, int has_private,
				      void *arg),
			    void *arg)
{
	struct keymap_entry *copy = NULL;
	size_t n = 0, i;
	int r;

	/* A public key alone under an id is seen once the listing of public key objects at
	 * open is over. */
	if (!token_public_wait(token))
		return CV_ERR_TOKEN_UNAVAILABLE;
	/* The map holds private and public key objects only (the listing keeps no other
	 * class), so a secret key such as the audit chain's HMAC key is never seen here. fn
	 * runs on a copy, without the lock, so that it may destroy keys. */
	pthread_mutex_lock(&token->map.lock);
	copy = malloc((token->map.used > 0 ? token->map.used : 1) * sizeof(*copy));
	if (copy != NULL) {
		for (i = 0; i < token->map.capacity; i++) {
			const struct keymap_entry *e = &token->map.slots[i];

			if (e->id_len > 0 && !e->pending &&
			    (e->priv != CK_INVALID_HANDLE || e->pub != CK_INVALID_HANDLE) &&
			    cv_token_key_id_marked(e->id, e->id_len))
				copy[n++] = *e;
		}
	}
	pthread_mutex_unlock(&token->map.lock);
	if (copy == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	r = 0;
	for (i = 0; i < n && r == 0; i++)
		r = fn(copy[i].id, copy[i].id_len, copy[i].priv != CK_INVALID_HANDLE, arg);
out:
	free(copy);
	return r;
}
