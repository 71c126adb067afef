/* vault: the caches of public material a vault keeps (see struct vault_caches). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"

int cv_vault_caches_init(struct cv_vault *v)
{
	pthread_mutex_t *locks[6];
	struct vault_caches *c;
	size_t i, n;
	int r;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return CV_ERR_NOMEM;
	r = cv_x509_info_cache_new(VAULT_INFO_CACHE_SLOTS, &c->info);
	if (r < 0) {
		free(c);
		return r;
	}
	locks[0] = &c->jwks.lock;
	locks[1] = &c->totals.lock;
	locks[2] = &c->pubkeys.lock;
	locks[3] = &c->pages.answers.lock;
	locks[4] = &c->tokens.lock;
	locks[5] = &c->details.answers.lock;
	for (n = 0; n < sizeof(locks) / sizeof(locks[0]); n++)
		if (pthread_mutex_init(locks[n], NULL) != 0)
			break;
	if (n < sizeof(locks) / sizeof(locks[0])) {
		for (i = 0; i < n; i++)
			pthread_mutex_destroy(locks[i]);
		cv_x509_info_cache_free(c->info);
		free(c);
		return CV_ERR_NOMEM;
	}
	c->pages.answers.slots = c->pages.slots;
	c->pages.answers.n = VAULT_PAGES;
	c->details.answers.slots = c->details.slots;
	c->details.answers.n = VAULT_DETAILS;
	v->caches = c;
	return 0;
}

static void answer_clear(struct vault_answer *a)
{
	free(a->key);
	free(a->text);
	free(a->keys);
	memset(a, 0, sizeof(*a));
}

/* The answer kept in answers under key at gen and now (see struct vault_answers). */
static int answer_get(struct cv_vault *v, struct vault_answers *answers, const char *key,
		      uint64_t gen, int64_t now, char **ret_text, size_t *ret_len,
		      char ret_etag[64])
{
	struct vault_answer_key *keys = NULL;
	char *text = NULL;
	size_t n_keys = 0, len = 0, k;
	unsigned i;

	pthread_mutex_lock(&answers->lock);
	for (i = 0; i < answers->n; i++)
		if (answers->slots[i].valid && answers->slots[i].gen == gen &&
		    answers->slots[i].from <= now && now < answers->slots[i].until &&
		    strcmp(answers->slots[i].key, key) == 0)
			break;
	if (i < answers->n) {
		const struct vault_answer *a = &answers->slots[i];

		len = a->len;
		n_keys = a->n_keys;
		text = malloc(len + 1);
		keys = n_keys > 0 ? malloc(n_keys * sizeof(*keys)) : NULL;
		if (text != NULL && (n_keys == 0 || keys != NULL)) {
			memcpy(text, a->text, len);
			text[len] = '\0';
			if (n_keys > 0)
				memcpy(keys, a->keys, n_keys * sizeof(*keys));
			memcpy(ret_etag, a->etag, sizeof(a->etag));
		} else {
			free(text);
			text = NULL;
		}
	}
	pthread_mutex_unlock(&answers->lock);
	/* The keys as the answer judged them, looked at again outside the lock (a key the
	 * token's map does not know costs a search). */
	for (k = 0; text != NULL && k < n_keys; k++)
		if (!keys[k].is_public &&
		    (!cv_vault_key_exists(v, keys[k].id, sizeof(keys[k].id), keys[k].named_at)) !=
			    keys[k].missing) {
			free(text);
			text = NULL;
		}
	free(keys);
	if (text == NULL)
		return 0;
	*ret_text = text;
	*ret_len = len;
	return 1;
}

/* Keeps text and etag in answers under key (see struct vault_answers); keys (n_keys, taken)
 * are the keys the answer judged. */
static void answer_put(struct vault_answers *answers, const char *key, uint64_t gen,
		       int64_t now, int64_t until, struct vault_answer_key *keys, size_t n_keys,
		       const char *text, size_t len, const char *etag)
{
	struct vault_answer *a;
	char *kept = NULL, *kept_key = NULL;

	if (len > VAULT_ANSWER_MAX || strlen(etag) >= sizeof(a->etag) || (gen >> 63) != 0 ||
	    until <= now) {
		free(keys);
		return;
	}
	kept = malloc(len > 0 ? len : 1);
	kept_key = strdup(key);
	if (kept == NULL || kept_key == NULL) {
		free(kept);
		free(kept_key);
		free(keys);
		return;
	}
	memcpy(kept, text, len);
	pthread_mutex_lock(&answers->lock);
	a = &answers->slots[answers->next++ % answers->n];
	answer_clear(a);
	a->valid = 1;
	a->gen = gen;
	a->from = now;
	a->until = until;
	a->key = kept_key;
	a->text = kept;
	a->len = len;
	snprintf(a->etag, sizeof(a->etag), "%s", etag);
	a->keys = keys;
	a->n_keys = n_keys;
	pthread_mutex_unlock(&answers->lock);
}

/* The key of rec as an answer judged it (missing: the key_missing it showed). */
static void answer_key_of(struct vault_answer_key *k, const struct cv_cert_record *rec,
			  int missing)
{
	memcpy(k->id, rec->key_id, sizeof(k->id));
	k->is_public = rec->is_public != 0;
	k->named_at = rec->updated_at;
	k->missing = missing != 0;
}

int cv_vault_list_memo_get(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			   char **ret_text, size_t *ret_len, char ret_etag[64])
{
	if (v->caches == NULL)
		return 0;
	return answer_get(v, &v->caches->pages.answers, key, gen, now, ret_text, ret_len,
			  ret_etag);
}

/* The first moment after now at which what an answer shows of a certificate valid from
 * not_before to not_after changes with the clock: its status (cv_status_at's boundaries) or
 * its days left (cv_expires_in_days, the floor of not_after - t in days, which drops one
 * second after not_after - t was a whole number of days). */
static int64_t changes_at(int64_t not_before, int64_t not_after, int64_t now, int64_t soon)
{
	int64_t at = INT64_MAX, d, m;

	if (!__builtin_sub_overflow(not_after, now, &d)) {
		m = d % 86400;
		at = now + (m < 0 ? m + 86400 : m) + 1;
	}
	if (not_before > now && not_before < at)
		at = not_before;
	if (soon > 0 && not_after - soon + 1 > now && not_after - soon + 1 < at)
		at = not_after - soon + 1;
	if (not_after < INT64_MAX && not_after + 1 > now && not_after + 1 < at)
		at = not_after + 1;
	return at;
}

/* cv_store_cert_status_change at now, kept while gen holds and now is before it. Returns
 * now + 1 (good for this second only) when the store cannot say. */
static int64_t status_change_at(struct cv_vault *v, struct vault_pages_cache *p, uint64_t gen,
				int64_t now)
{
	int64_t at;

	pthread_mutex_lock(&p->answers.lock);
	if (p->status_change.valid && p->status_change.gen == gen &&
	    p->status_change.from <= now && now < p->status_change.at) {
		at = p->status_change.at;
		pthread_mutex_unlock(&p->answers.lock);
		return at;
	}
	pthread_mutex_unlock(&p->answers.lock);
	if (cv_store_cert_status_change(v->store, now, v->soon_seconds, &at) < 0)
		return now + 1;
	pthread_mutex_lock(&p->answers.lock);
	p->status_change.valid = 1;
	p->status_change.gen = gen;
	p->status_change.from = now;
	p->status_change.at = at;
	pthread_mutex_unlock(&p->answers.lock);
	return at;
}

void cv_vault_list_memo_put(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			    int by_status, const struct cv_cert_page *page,
			    const unsigned char *missing, const char *text, size_t len,
			    const char *etag)
{
	struct vault_pages_cache *p = v->caches != NULL ? &v->caches->pages : NULL;
	struct vault_answer_key *keys = NULL;
	int64_t until = INT64_MAX, at;
	size_t k;

	if (p == NULL || len > VAULT_ANSWER_MAX)
		return;
	/* Which rows a status filter (or the status sort) takes, and their count, change when
	 * any certificate's status does; the rows shown, when theirs do. */
	if (by_status)
		until = status_change_at(v, p, gen, now);
	for (k = 0; k < page->n; k++) {
		at = changes_at(page->items[k]->not_before, page->items[k]->not_after, now,
				v->soon_seconds);
		if (at < until)
			until = at;
	}
	if (page->n > 0 && (keys = calloc(page->n, sizeof(*keys))) == NULL)
		return;
	for (k = 0; k < page->n; k++)
		answer_key_of(&keys[k], page->items[k], missing[k]);
	answer_put(&p->answers, key, gen, now, until, keys, page->n, text, len, etag);
}

int cv_vault_details_memo_get(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			      char **ret_text, size_t *ret_len, char ret_etag[64])
{
	if (v->caches == NULL)
		return 0;
	return answer_get(v, &v->caches->details.answers, key, gen, now, ret_text, ret_len,
			  ret_etag);
}

void cv_vault_details_memo_put(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			       const struct cv_cert_view *view, int missing, const char *text,
			       size_t len, const char *etag)
{
	struct vault_answer_key *keys;
	int64_t until, at;
	size_t k;

	if (v->caches == NULL || len > VAULT_ANSWER_MAX)
		return;
	/* The certificate's status and days left, and each stored intermediate's. */
	until = changes_at(view->rec->not_before, view->rec->not_after, now, v->soon_seconds);
	for (k = 0; k < view->chain_length; k++) {
		at = changes_at((int64_t)view->chain[k]->not_before,
				(int64_t)view->chain[k]->not_after, now, v->soon_seconds);
		if (at < until)
			until = at;
	}
	keys = calloc(1, sizeof(*keys));
	if (keys == NULL)
		return;
	answer_key_of(keys, view->rec, missing);
	answer_put(&v->caches->details.answers, key, gen, now, until, keys, 1, text, len, etag);
}

void cv_vault_caches_release(struct cv_vault *v)
{
	struct vault_caches *c = v->caches;

	if (c == NULL)
		return;
	v->caches = NULL;
	cv_x509_info_cache_free(c->info);
	for (size_t i = 0; i < VAULT_PUBKEYS; i++)
		EVP_PKEY_free(c->pubkeys.slots[i].pkey);
	for (unsigned i = 0; i < VAULT_PAGES; i++)
		answer_clear(&c->pages.slots[i]);
	for (unsigned i = 0; i < VAULT_DETAILS; i++)
		answer_clear(&c->details.slots[i]);
	pthread_mutex_destroy(&c->pages.answers.lock);
	pthread_mutex_destroy(&c->details.answers.lock);
	pthread_mutex_destroy(&c->tokens.lock);
	OPENSSL_cleanse(c->tokens.slots, sizeof(c->tokens.slots));
	pthread_mutex_destroy(&c->pubkeys.lock);
	pthread_mutex_destroy(&c->jwks.lock);
	pthread_mutex_destroy(&c->totals.lock);
	free(c->jwks.text);
	free(c);
}
