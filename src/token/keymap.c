/* token: the CKA_ID -> object handle map, so no request has to search the token. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define KEYMAP_MIN_CAPACITY 64

/* FNV-1a: ids are random bytes from certvault or short ones from other tools; either way a
 * simple byte hash spreads them. */
static size_t id_hash(const uint8_t *id, size_t id_len)
{
	uint64_t h = 14695981039346656037ULL;
	size_t i;

	for (i = 0; i < id_len; i++) {
		h ^= id[i];
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

static int id_equal(const struct keymap_entry *e, const uint8_t *id, size_t id_len)
{
	return e->id_len == id_len && memcmp(e->id, id, id_len) == 0;
}

int token_keymap_init(struct keymap *map)
{
	int r;

	map->slots = calloc(KEYMAP_MIN_CAPACITY, sizeof(*map->slots));
	if (map->slots == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (pthread_mutex_init(&map->lock, NULL) != 0) {
		free(map->slots);
		map->slots = NULL;
		r = CV_ERR_INTERNAL;
		goto out;
	}
	if (pthread_mutex_init(&map->writes, NULL) != 0) {
		pthread_mutex_destroy(&map->lock);
		free(map->slots);
		map->slots = NULL;
		r = CV_ERR_INTERNAL;
		goto out;
	}
	if (pthread_cond_init(&map->public_done, NULL) != 0) {
		pthread_mutex_destroy(&map->writes);
		pthread_mutex_destroy(&map->lock);
		free(map->slots);
		map->slots = NULL;
		r = CV_ERR_INTERNAL;
		goto out;
	}
	map->capacity = KEYMAP_MIN_CAPACITY;
	map->used = 0;
	r = 0;
out:
	return r;
}

void token_keymap_release(struct keymap *map)
{
	pthread_cond_destroy(&map->public_done);
	pthread_mutex_destroy(&map->writes);
	pthread_mutex_destroy(&map->lock);
	free(map->slots);
	map->slots = NULL;
	free(map->secrets);
	map->secrets = NULL;
	map->n_secrets = 0;
	map->secrets_epoch = 0;
	map->capacity = 0;
	map->used = 0;
}

/* The slot holding id, or the empty slot where it would go. */
static struct keymap_entry *slot_for(const struct keymap *map, const uint8_t *id, size_t id_len)
{
	size_t mask = map->capacity - 1, i = id_hash(id, id_len) & mask;

	while (map->slots[i].id_len != 0 && !id_equal(&map->slots[i], id, id_len))
		i = (i + 1) & mask;
	return &map->slots[i];
}

static int grow(struct keymap *map)
{
	struct keymap_entry *old = map->slots, *fresh;
	size_t old_capacity = map->capacity, i;

	fresh = calloc(old_capacity * 2, sizeof(*fresh));
	if (fresh == NULL)
		return CV_ERR_NOMEM;
	map->slots = fresh;
	map->capacity = old_capacity * 2;
	for (i = 0; i < old_capacity; i++) {
		if (old[i].id_len != 0)
			*slot_for(map, old[i].id, old[i].id_len) = old[i];
	}
	free(old);
	return 0;
}

/* Adds an empty entry for id, growing first so that the table stays at most half full. */
static int insert(struct keymap *map, const uint8_t *id, size_t id_len,
		  struct keymap_entry **ret_entry)
{
	struct keymap_entry *e;
	int r;

	if (id_len == 0 || id_len > TOKEN_ID_MAX)
		return CV_ERR_INTERNAL;
	if ((map->used + 1) * 2 > map->capacity) {
		r = grow(map);
		if (r < 0)
			return r;
	}
	e = slot_for(map, id, id_len);
	memcpy(e->id, id, id_len);
	e->id_len = id_len;
	e->priv = CK_INVALID_HANDLE;
	e->pub = CK_INVALID_HANDLE;
	e->pending = 0;
	e->absent_until = 0;
	map->used++;
	*ret_entry = e;
	return 0;
}

struct keymap_entry *token_keymap_find_locked(struct keymap *map, const uint8_t *id,
					      size_t id_len)
{
	struct keymap_entry *e;

	if (id_len == 0 || id_len > TOKEN_ID_MAX)
		return NULL;
	e = slot_for(map, id, id_len);
	return e->id_len != 0 ? e : NULL;
}

int token_keymap_put_locked(struct keymap *map, const uint8_t *id, size_t id_len,
			    CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE handle)
{
	struct keymap_entry *e;
	int r;

	e = token_keymap_find_locked(map, id, id_len);
	if (e == NULL) {
		r = insert(map, id, id_len, &e);
		if (r < 0)
			return r;
	}
	e->absent_until = 0;
	/* Another tool may have left two keys with one id: the first listed wins, as it would
	 * for a tool searching by id. */
	if (cls == CKO_PRIVATE_KEY && e->priv == CK_INVALID_HANDLE)
		e->priv = handle;
	else if (cls == CKO_PUBLIC_KEY && e->pub == CK_INVALID_HANDLE)
		e->pub = handle;
	return 0;
}

int token_keymap_reserve_locked(struct keymap *map, const uint8_t *id, size_t id_len)
{
	struct keymap_entry *e;
	int r;

	e = token_keymap_find_locked(map, id, id_len);
	/* A search that found nothing under the id leaves a mark, not a key: the id is free. */
	if (e != NULL && !e->pending && e->priv == CK_INVALID_HANDLE &&
	    e->pub == CK_INVALID_HANDLE) {
		e->absent_until = 0;
		e->pending = 1;
		return 0;
	}
	if (e != NULL)
		return CV_ERR_NAME_TAKEN;
	r = insert(map, id, id_len, &e);
	if (r < 0)
		return r;
	e->pending = 1;
	return 0;
}

void token_keymap_remove_locked(struct keymap *map, const uint8_t *id, size_t id_len)
{
	struct keymap_entry *e = token_keymap_find_locked(map, id, id_len);
	size_t mask = map->capacity - 1, hole, i, home;

	if (e == NULL)
		return;
	/* Backward-shift deletion: move later entries of the probe run into the hole whenever
	 * their home slot does not lie between the hole and them, so lookups need no tombstones. */
	hole = (size_t)(e - map->slots);
	i = hole;
	for (;;) {
		i = (i + 1) & mask;
		if (map->slots[i].id_len == 0)
			break;
		home = id_hash(map->slots[i].id, map->slots[i].id_len) & mask;
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			map->slots[hole] = map->slots[i];
			hole = i;
		}
	}
	memset(&map->slots[hole], 0, sizeof(map->slots[hole]));
	map->used--;
}
