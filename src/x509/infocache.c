/* x509: the details of certificates already read, kept by their DER.
 *
 * A stored version never changes, so what its DER says can be kept: the details view then
 * needs neither OpenSSL's decoder nor its digests (whose lookups take global locks) on each
 * request. Certificates are public; nothing from a private key comes here. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "certvault/x509.h"

struct slot {
	unsigned char *der;        /* NULL: empty */
	size_t der_len;
	uint64_t hash;
	struct cv_x509_info *info;
};

struct cv_x509_info_cache {
	pthread_mutex_t lock;
	size_t n_slots;
	struct slot *slots;
};

static uint64_t der_hash(const unsigned char *der, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ der[i]) * 0x100000001b3ULL;
	return h;
}

static void slot_clear(struct slot *s)
{
	free(s->der);
	cv_x509_info_free(s->info);
	memset(s, 0, sizeof(*s));
}

int cv_x509_info_cache_new(size_t n_slots, struct cv_x509_info_cache **ret_cache)
{
	struct cv_x509_info_cache *c;

	if (n_slots == 0)
		return CV_ERR_INTERNAL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return CV_ERR_NOMEM;
	c->slots = calloc(n_slots, sizeof(*c->slots));
	if (c->slots == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
		free(c->slots);
		free(c);
		return CV_ERR_NOMEM;
	}
	c->n_slots = n_slots;
	*ret_cache = c;
	return 0;
}

void cv_x509_info_cache_free(struct cv_x509_info_cache *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n_slots; i++)
		slot_clear(&c->slots[i]);
	pthread_mutex_destroy(&c->lock);
	free(c->slots);
	free(c);
}

/* A copy of what slot s holds for der, or NULL: the caller holds the lock. */
static int lookup(struct slot *s, const unsigned char *der, size_t len, uint64_t h,
		  struct cv_x509_info **ret_info)
{
	if (s->der == NULL || s->hash != h || s->der_len != len || memcmp(s->der, der, len) != 0)
		return CV_ERR_NOT_FOUND;
	return cv_x509_info_dup(s->info, ret_info);
}

int cv_x509_info_cached(struct cv_x509_info_cache *c, const unsigned char *der, size_t len,
			struct cv_x509_info **ret_info)
{
	struct cv_x509_info *info = NULL, *kept = NULL;
	unsigned char *der_copy = NULL;
	uint64_t h = der_hash(der, len);
	struct slot *s = &c->slots[h % c->n_slots];
	X509 *cert = NULL;
	int r;

	pthread_mutex_lock(&c->lock);
	r = lookup(s, der, len, h, ret_info);
	pthread_mutex_unlock(&c->lock);
	if (r != CV_ERR_NOT_FOUND)
		return r;

	/* Parsed outside the lock; two threads missing on one certificate both parse it. */
	r = cv_x509_cert_from_der(der, len, &cert);
	if (r == 0)
		r = cv_x509_info_new(cert, &info);
	if (r == 0)
		r = cv_x509_info_dup(info, &kept);
	if (r < 0)
		goto out;
	der_copy = malloc(len > 0 ? len : 1);
	if (der_copy == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	memcpy(der_copy, der, len);
	/* One entry per slot: a newcomer replaces what was there, which bounds the memory. */
	pthread_mutex_lock(&c->lock);
	slot_clear(s);
	s->der = der_copy;
	s->der_len = len;
	s->hash = h;
	s->info = kept;
	pthread_mutex_unlock(&c->lock);
	der_copy = NULL;
	kept = NULL;
	*ret_info = info;
	info = NULL;
	r = 0;
out:
	free(der_copy);
	cv_x509_info_free(kept);
	cv_x509_info_free(info);
	X509_free(cert);
	return r;
}
