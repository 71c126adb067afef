/* vault: the caches of public material a vault keeps (see struct vault_caches). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int cv_vault_caches_init(struct cv_vault *v)
{
	struct vault_caches *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return CV_ERR_NOMEM;
	r = cv_x509_info_cache_new(VAULT_INFO_CACHE_SLOTS, &c->info);
	if (r < 0) {
		free(c);
		return r;
	}
	if (pthread_mutex_init(&c->jwks.lock, NULL) != 0) {
		cv_x509_info_cache_free(c->info);
		free(c);
		return CV_ERR_NOMEM;
	}
	if (pthread_mutex_init(&c->totals.lock, NULL) != 0) {
		pthread_mutex_destroy(&c->jwks.lock);
	pthread_mutex_destroy(&c->totals.lock);
		cv_x509_info_cache_free(c->info);
		free(c);
		return CV_ERR_NOMEM;
	}
	if (pthread_mutex_init(&c->pubkeys.lock, NULL) != 0) {
		pthread_mutex_destroy(&c->jwks.lock);
		pthread_mutex_destroy(&c->totals.lock);
		cv_x509_info_cache_free(c->info);
		free(c);
		return CV_ERR_NOMEM;
	}
	v->caches = c;
	return 0;
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
	pthread_mutex_destroy(&c->pubkeys.lock);
	pthread_mutex_destroy(&c->jwks.lock);
	free(c->jwks.text);
	free(c);
}
