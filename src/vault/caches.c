/* vault: the caches of public material a vault keeps (see struct vault_caches). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"

int cv_vault_caches_init(struct cv_vault *v)
{
	pthread_mutex_t *locks[5];
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
	locks[3] = &c->pages.lock;
	locks[4] = &c->tokens.lock;
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
	v->caches = c;
	return 0;
}

static void page_slot_clear(struct vault_pages_cache *p, unsigned i)
{
	free(p->slots[i].key);
	free(p->slots[i].text);
	free(p->slots[i].keys);
	memset(&p->slots[i], 0, sizeof(p->slots[i]));
}

int cv_vault_list_memo_get(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			   char **ret_text, size_t *ret_len, char ret_etag[64])
{
	struct vault_pages_cache *p = v->caches != NULL ? &v->caches->pages : NULL;
	struct vault_page_key *keys = NULL;
	char *text = NULL;
	size_t n_keys = 0, len = 0, k;
	unsigned i;

	if (p == NULL)
		return 0;
	pthread_mutex_lock(&p->lock);
	for (i = 0; i < VAULT_PAGES; i++)
		if (p->slots[i].valid && p->slots[i].gen == gen && p->slots[i].from <= now &&
		    now < p->slots[i].until && strcmp(p->slots[i].key, key) == 0)
			break;
	if (i < VAULT_PAGES) {
		len = p->slots[i].len;
		n_keys = p->slots[i].n_keys;
		text = malloc(len + 1);
		keys = n_keys > 0 ? malloc(n_keys * sizeof(*keys)) : NULL;
		if (text != NULL && (n_keys == 0 || keys != NULL)) {
			memcpy(text, p->slots[i].text, len);
			text[len] = '\0';
			if (n_keys > 0)
				memcpy(keys, p->slots[i].keys, n_keys * sizeof(*keys));
			memcpy(ret_etag, p->slots[i].etag, sizeof(p->slots[i].etag));
		} else {
			free(text);
			text = NULL;
		}
	}
	pthread_mutex_unlock(&p->lock);
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

/* The first moment after now at which what the list shows of rec changes with the clock:
 * its status (cv_status_at's boundaries) or its days left (cv_expires_in_days, the floor of
 * not_after - t in days, which drops one second after not_after - t was a whole number of
 * days). */
static int64_t row_changes_at(const struct cv_cert_record *rec, int64_t now, int64_t soon)
{
	int64_t at = INT64_MAX, d, m;

	if (!__builtin_sub_overflow(rec->not_after, now, &d)) {
		m = d % 86400;
		at = now + (m < 0 ? m + 86400 : m) + 1;
	}
	if (rec->not_before > now && rec->not_before < at)
		at = rec->not_before;
	if (soon > 0 && rec->not_after - soon + 1 > now && rec->not_after - soon + 1 < at)
		at = rec->not_after - soon + 1;
	if (rec->not_after < INT64_MAX && rec->not_after + 1 > now && rec->not_after + 1 < at)
		at = rec->not_after + 1;
	return at;
}

/* cv_store_cert_status_change at now, kept while gen holds and now is before it. Returns
 * now + 1 (good for this second only) when the store cannot say. */
static int64_t status_change_at(struct cv_vault *v, struct vault_pages_cache *p, uint64_t gen,
				int64_t now)
{
	int64_t at;

	pthread_mutex_lock(&p->lock);
	if (p->status_change.valid && p->status_change.gen == gen &&
	    p->status_change.from <= now && now < p->status_change.at) {
		at = p->status_change.at;
		pthread_mutex_unlock(&p->lock);
		return at;
	}
	pthread_mutex_unlock(&p->lock);
	if (cv_store_cert_status_change(v->store, now, v->soon_seconds, &at) < 0)
		return now + 1;
	pthread_mutex_lock(&p->lock);
	p->status_change.valid = 1;
	p->status_change.gen = gen;
	p->status_change.from = now;
	p->status_change.at = at;
	pthread_mutex_unlock(&p->lock);
	return at;
}

void cv_vault_list_memo_put(struct cv_vault *v, const char *key, uint64_t gen, int64_t now,
			    int by_status, const struct cv_cert_page *page,
			    const unsigned char *missing, const char *text, size_t len,
			    const char *etag)
{
	struct vault_pages_cache *p = v->caches != NULL ? &v->caches->pages : NULL;
	struct vault_page_key *keys = NULL;
	char *kept = NULL, *kept_key = NULL;
	int64_t until = INT64_MAX, at;
	size_t k;
	unsigned i;

	if (p == NULL || len > VAULT_PAGE_MAX || strlen(etag) >= sizeof(p->slots[0].etag) ||
	    (gen >> 63) != 0)
		return;
	/* Which rows a status filter (or the status sort) takes, and their count, change when
	 * any certificate's status does; the rows shown, when theirs do. */
	if (by_status)
		until = status_change_at(v, p, gen, now);
	for (k = 0; k < page->n; k++)
		if ((at = row_changes_at(page->items[k], now, v->soon_seconds)) < until)
			until = at;
	kept = malloc(len > 0 ? len : 1);
	kept_key = strdup(key);
	if (page->n > 0)
		keys = calloc(page->n, sizeof(*keys));
	if (kept == NULL || kept_key == NULL || (page->n > 0 && keys == NULL)) {
		free(kept);
		free(kept_key);
		free(keys);
		return;
	}
	memcpy(kept, text, len);
	for (k = 0; k < page->n; k++) {
		memcpy(keys[k].id, page->items[k]->key_id, sizeof(keys[k].id));
		keys[k].is_public = page->items[k]->is_public != 0;
		keys[k].named_at = page->items[k]->updated_at;
		keys[k].missing = missing[k] != 0;
	}
	pthread_mutex_lock(&p->lock);
	i = p->next++ % VAULT_PAGES;
	page_slot_clear(p, i);
	p->slots[i].valid = 1;
	p->slots[i].gen = gen;
	p->slots[i].from = now;
	p->slots[i].until = until;
	p->slots[i].key = kept_key;
	p->slots[i].text = kept;
	p->slots[i].len = len;
	snprintf(p->slots[i].etag, sizeof(p->slots[i].etag), "%s", etag);
	p->slots[i].keys = keys;
	p->slots[i].n_keys = page->n;
	pthread_mutex_unlock(&p->lock);
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
		page_slot_clear(&c->pages, i);
	pthread_mutex_destroy(&c->pages.lock);
	pthread_mutex_destroy(&c->tokens.lock);
	OPENSSL_cleanse(c->tokens.slots, sizeof(c->tokens.slots));
	pthread_mutex_destroy(&c->pubkeys.lock);
	pthread_mutex_destroy(&c->jwks.lock);
	pthread_mutex_destroy(&c->totals.lock);
	free(c->jwks.text);
	free(c);
}
