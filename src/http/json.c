/* jansson set up for secrets: every block it frees is wiped first. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "certvault/http.h"

/* Each block carries its size in front, so free can wipe it all. */
struct head {
	size_t size;
	max_align_t align;
};

static void *wiping_malloc(size_t size)
{
	unsigned char *p = malloc(offsetof(struct head, align) + size);

	if (p == NULL)
		return NULL;
	((struct head *)p)->size = size;
	return p + offsetof(struct head, align);
}

static void wiping_free(void *ptr)
{
	unsigned char *p;

	if (ptr == NULL)
		return;
	p = (unsigned char *)ptr - offsetof(struct head, align);
	OPENSSL_cleanse(p, offsetof(struct head, align) + ((struct head *)p)->size);
	free(p);
}

void cv_http_json_harden(void)
{
	json_set_alloc_funcs(wiping_malloc, wiping_free);
}
