/* The audit trail's use cases around the chain: its key in the token, refusals collapsed
 * into counts, anonymous refusals rate-limited, and archiving old records to a file with a
 * checkpoint that keeps the chain verifiable.
 *
 * Refusals cost an fsync'd record each; an anonymous client could make a thousand a second.
 * So the first refusal of a source, actor, action and error opens an interval and is written
 * at once; the repeats within the interval are only counted, in memory, and written as one
 * record (count, first and last attempt) when the interval is over, when someone reads the
 * trail, or at shutdown. No record is ever rewritten: a count updated in place would be a
 * field the chain cannot protect. A crash loses at most the counts of open intervals, never
 * a first refusal.
 *
 * Uses of a key (signatures made for a client) are counted the same way in a table of their
 * own, one slot per actor, action, key and algorithm: the first of an interval is written
 * before the signature is handed out, its repeats are counted, so a client signing a thousand
 * times a second costs one record per interval, and a refusal flood never pushes signatures
 * out of their slots (nor the reverse).
 *
 * Link keys. A record's HMAC made by the token while the chain's head is held (the writer
 * lock, every node's on PostgreSQL) puts a token call inside everyone's write: through a
 * network token it waits behind the node's key creates on its one connection, and every
 * node waits on it. So at start a process picks a random link number N and has the token's
 * audit key derive the link key N: HMAC(audit key, SHA-256("certvault-audit-link-key N")),
 * once. Its records name N (link_key) and are keyed with it by an HMAC made in the process:
 * the key lives in locked, undumped memory (cv_secret_alloc), is never written anywhere, and
 * dies with the process. Rewriting a record still needs the token: a copy of the database
 * alone derives nothing, and whoever can read certvaultd's memory could use the token's key
 * through its logged-in session anyway. Verify derives every other link it meets with the
 * token (once each, a few kept). A link key is used only while the token is up, so that a
 * change is refused while the token is known to be gone, as with the token's own HMAC. */
/* pthread_setname_np */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "certvault/secret.h"
#include "certvault/util.h"
#include "internal.h"

/* Distinct (source, actor, action, error) counted at once; past that, repeats of any source
 * share one count per action and error (source "*"), so records stay bounded whatever the
 * number of addresses. */
#define REFUSAL_SLOTS 256
/* Distinct (actor, action, key, algorithm) whose uses are counted at once; past that the
 * oldest interval is closed early (its count written) to make room. */
#define USE_SLOTS 256
/* Sources the rate limit remembers; the least recently refused is forgotten first. */
#define LIMIT_SLOTS 1024
/* What the key's CKA_ID says: the first record it covers. */
#define KEY_ID_PREFIX "certvault-audit-from="
/* Other processes' link keys kept once derived (verify meets one per process start). */
#define LINK_SLOTS 64

struct refusal_slot {
	int used;
	char key[64 + CV_API_TOKEN_ID_LEN + 48 + 40 + 64 + 5];
	int64_t opened_at;        /* the interval's start: its first refusal was written */
	int64_t repeats;          /* counted since, not written yet */
	int64_t first_at, last_at;
	struct cv_audit_entry last; /* the newest repeat, for the record of the count */
};

struct limit_slot {
	char source[64];          /* "" free */
	double tokens;
	int64_t at_ms;            /* when tokens was last brought up to date */
};

struct vault_audit {
	struct cv_token_secret *key;
	struct cv_audit_settings cfg;
	char label[65];
	pthread_mutex_t lock;     /* guards slots; held while a count is written */
	struct refusal_slot slots[REFUSAL_SLOTS];
	struct refusal_slot uses[USE_SLOTS]; /* also guarded by lock */
	pthread_mutex_t limit_lock;
	struct limit_slot limits[LIMIT_SLOTS];
	struct cv_token *token;
	/* The link key new records are keyed with (guarded by links_lock): derived at init,
	 * replaced every cfg.link_rotate seconds by the rotator thread, the one before kept
	 * among link_keys for records already given its number. */
	int64_t link;
	uint8_t *link_key;
	pthread_mutex_t links_lock; /* guards link, link_key, link_ids, link_keys, links_next */
	int64_t link_ids[LINK_SLOTS]; /* 0: free */
	uint8_t *link_keys;       /* LINK_SLOTS keys of CV_TOKEN_MAC_LEN bytes, cv_secret_alloc */
	unsigned links_next;
	pthread_mutex_t rotate_lock; /* guards stopping; with rotate_cond */
	pthread_cond_t rotate_cond;
	int stopping;
	int rotating;             /* the rotator thread runs */
	pthread_t rotator;
};

static int token_mac(struct vault_audit *va, const uint8_t digest[CV_AUDIT_HASH_LEN],
		     uint8_t ret_mac[CV_AUDIT_HASH_LEN])
{
	int r = cv_token_secret_hmac(va->key, digest, CV_AUDIT_HASH_LEN, ret_mac, NULL);

	/* The key gone from a token that answers is the token's failure, not a missing
	 * resource of the request's. */
	return r == CV_ERR_NOT_FOUND ? CV_ERR_TOKEN : r;
}

/* The link key id: the token's HMAC of SHA-256("certvault-audit-link-key <id>"), an input no
 * record's digest has (those are SHA-256 of length-prefixed fields). */
static int link_derive(struct vault_audit *va, int64_t id, uint8_t key[CV_TOKEN_MAC_LEN])
{
	uint8_t digest[CV_AUDIT_HASH_LEN];
	char text[64];
	int n = snprintf(text, sizeof(text), "certvault-audit-link-key %lld", (long long)id);

	if (EVP_Digest(text, (size_t)n, digest, NULL, EVP_sha256(), NULL) != 1)
		return CV_ERR_INTERNAL;
	return token_mac(va, digest, key);
}

/* The slot that keeps link key id from now on, in place of the oldest kept: its key bytes
 * for the caller to fill. Caller holds links_lock. */
static uint8_t *link_slot_next(struct vault_audit *va, int64_t id)
{
	unsigned i = va->links_next;

	va->link_ids[i] = id;
	va->links_next = (i + 1) % LINK_SLOTS;
	return va->link_keys + i * CV_TOKEN_MAC_LEN;
}

/* The link key id: the current one or one kept (NULL: neither). Caller holds links_lock. */
static const uint8_t *link_kept(struct vault_audit *va, int64_t id)
{
	unsigned i;

	if (id == va->link)
		return va->link_key;
	for (i = 0; i < LINK_SLOTS; i++)
		if (va->link_ids[i] == id)
			return va->link_keys + i * CV_TOKEN_MAC_LEN;
	return NULL;
}

static int link_hmac(const uint8_t *key, const uint8_t digest[CV_AUDIT_HASH_LEN],
		     uint8_t ret_mac[CV_AUDIT_HASH_LEN])
{
	unsigned int len = 0;

	if (HMAC(EVP_sha256(), key, CV_TOKEN_MAC_LEN, digest, CV_AUDIT_HASH_LEN, ret_mac,
		 &len) == NULL || len != CV_AUDIT_HASH_LEN)
		return CV_ERR_INTERNAL;
	return 0;
}

/* The store's mac (cv_store_audit_key): the token's HMAC for link 0, else the link key's. */
static int key_mac(void *arg, int64_t link, const uint8_t digest[CV_AUDIT_HASH_LEN],
		   uint8_t ret_mac[CV_AUDIT_HASH_LEN])
{
	struct vault_audit *va = arg;
	const uint8_t *key;
	int r = 0;

	if (link == 0)
		return token_mac(va, digest, ret_mac);
	/* Only while the token is up: a token seen gone is tried again (at most once a
	 * second), as a token call would. */
	if (!cv_token_up(va->token) && cv_token_check(va->token, NULL) < 0)
		return CV_ERR_TOKEN_UNAVAILABLE;
	pthread_mutex_lock(&va->links_lock);
	key = link_kept(va, link);
	if (key != NULL)
		r = link_hmac(key, digest, ret_mac);
	pthread_mutex_unlock(&va->links_lock);
	/* Another process's link, or one rotated away long ago (verify): derived by the token
	 * outside the lock, which appends take, then kept in place of the oldest. */
	if (key == NULL) {
		uint8_t *fresh = cv_secret_alloc(CV_TOKEN_MAC_LEN);

		r = fresh != NULL ? link_derive(va, link, fresh) : CV_ERR_NOMEM;
		if (r == 0) {
			pthread_mutex_lock(&va->links_lock);
			memcpy(link_slot_next(va, link), fresh, CV_TOKEN_MAC_LEN);
			pthread_mutex_unlock(&va->links_lock);
			r = link_hmac(fresh, digest, ret_mac);
		}
		cv_secret_free(fresh, CV_TOKEN_MAC_LEN);
	}
	if (r < 0)
		memset(ret_mac, 0, CV_AUDIT_HASH_LEN);
	return r;
}

/* The store's link (cv_store_audit_key): the key new records are keyed with. */
static int64_t key_link(void *arg)
{
	struct vault_audit *va = arg;
	int64_t link;

	pthread_mutex_lock(&va->links_lock);
	link = va->link;
	pthread_mutex_unlock(&va->links_lock);
	return link;
}

/* A link number: random, 53 bits (exact in any JSON reader, the archive's and the API's),
 * which another process or rotation picks again only by a chance of 2^-53. 0 or
 * CV_ERR_INTERNAL. */
static int link_number(int64_t *ret)
{
	*ret = 0;
	while (*ret <= 0) {
		if (RAND_bytes((unsigned char *)ret, sizeof(*ret)) != 1)
			return CV_ERR_INTERNAL;
		*ret &= ((int64_t)1 << 53) - 1;
	}
	return 0;
}

/* Derives a new link key (the token call outside every lock but its own), then makes it the
 * one new records are keyed with, the one before (if any: none at init) kept for records
 * already given its number. */
static int link_rotate(struct vault_audit *va)
{
	uint8_t *fresh = cv_secret_alloc(CV_TOKEN_MAC_LEN);
	int64_t id;
	int r;

	if (fresh == NULL)
		return CV_ERR_NOMEM;
	r = link_number(&id);
	if (r == 0)
		r = link_derive(va, id, fresh);
	if (r == 0) {
		pthread_mutex_lock(&va->links_lock);
		if (va->link != 0)
			memcpy(link_slot_next(va, va->link), va->link_key, CV_TOKEN_MAC_LEN);
		memcpy(va->link_key, fresh, CV_TOKEN_MAC_LEN);
		va->link = id;
		pthread_mutex_unlock(&va->links_lock);
	}
	cv_secret_free(fresh, CV_TOKEN_MAC_LEN);
	return r;
}

/* Every cfg.link_rotate seconds a new link key; one that could not be derived (the token
 * down) is tried again a minute later, or sooner with a shorter period. */
static void *link_rotator(void *arg)
{
	struct vault_audit *va = arg;
	struct timespec until;
	int64_t wait = va->cfg.link_rotate;

	pthread_mutex_lock(&va->rotate_lock);
	while (!va->stopping) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += wait;
		while (!va->stopping &&
		       pthread_cond_timedwait(&va->rotate_cond, &va->rotate_lock, &until) == 0)
			;
		if (va->stopping)
			break;
		pthread_mutex_unlock(&va->rotate_lock);
		wait = link_rotate(va) == 0 ? va->cfg.link_rotate :
		       va->cfg.link_rotate < 60 ? va->cfg.link_rotate : 60;
		pthread_mutex_lock(&va->rotate_lock);
	}
	pthread_mutex_unlock(&va->rotate_lock);
	return NULL;
}

/* rotate_lock, and rotate_cond on the monotonic clock (the rotator's deadlines). */
static int rotate_sync_init(struct vault_audit *va)
{
	if (pthread_mutex_init(&va->rotate_lock, NULL) != 0)
		return CV_ERR_INTERNAL;
	if (cv_cond_init_monotonic(&va->rotate_cond) != 0) {
		pthread_mutex_destroy(&va->rotate_lock);
		return CV_ERR_INTERNAL;
	}
	return 0;
}

static void audit_free(struct vault_audit *va)
{
	if (va->rotating) {
		pthread_mutex_lock(&va->rotate_lock);
		va->stopping = 1;
		pthread_cond_signal(&va->rotate_cond);
		pthread_mutex_unlock(&va->rotate_lock);
		pthread_join(va->rotator, NULL);
	}
	cv_token_secret_free(va->key);
	cv_secret_free(va->link_key, CV_TOKEN_MAC_LEN);
	cv_secret_free(va->link_keys, LINK_SLOTS * CV_TOKEN_MAC_LEN);
	pthread_cond_destroy(&va->rotate_cond);
	pthread_mutex_destroy(&va->rotate_lock);
	pthread_mutex_destroy(&va->links_lock);
	pthread_mutex_destroy(&va->limit_lock);
	pthread_mutex_destroy(&va->lock);
	free(va);
}

/* The seq the key's CKA_ID names, 0 when it names none. */
static int64_t key_from(const struct cv_token_secret *key)
{
	uint8_t id[CV_TOKEN_SECRET_ID_MAX];
	size_t len = cv_token_secret_id(key, id), plen = strlen(KEY_ID_PREFIX);
	char num[24];
	int64_t v;

	if (len <= plen || len - plen >= sizeof(num) || memcmp(id, KEY_ID_PREFIX, plen) != 0)
		return 0;
	memcpy(num, id + plen, len - plen);
	num[len - plen] = '\0';
	return cv_parse_int64(num, 1, INT64_MAX, &v) == 0 ? v : 0;
}

int cv_vault_audit_init(struct cv_vault *v, const struct cv_audit_settings *s, int64_t now,
			struct cv_audit_key_report *ret, struct cv_errmsg *err)
{
	struct vault_audit *va;
	struct cv_audit a;
	struct cv_actor self = { .name = "certvaultd", .role = CV_ROLE_ADMIN };
	int64_t last = 0;
	int keyed = 0, r;
	char id[64];

	memset(ret, 0, sizeof(*ret));
	va = calloc(1, sizeof(*va));
	if (va == NULL)
		return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
	if (pthread_mutex_init(&va->lock, NULL) != 0) {
		free(va);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot make a lock");
	}
	if (pthread_mutex_init(&va->limit_lock, NULL) != 0) {
		pthread_mutex_destroy(&va->lock);
		free(va);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot make a lock");
	}
	if (pthread_mutex_init(&va->links_lock, NULL) != 0) {
		pthread_mutex_destroy(&va->limit_lock);
		pthread_mutex_destroy(&va->lock);
		free(va);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot make a lock");
	}
	if (rotate_sync_init(va) < 0) {
		pthread_mutex_destroy(&va->links_lock);
		pthread_mutex_destroy(&va->limit_lock);
		pthread_mutex_destroy(&va->lock);
		free(va);
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot make a lock");
	}
	va->token = v->token;
	va->cfg = *s;
	snprintf(va->label, sizeof(va->label), "%s", s->key_label);
	va->cfg.key_label = va->label;
	r = cv_store_audit_last(v->store, &last, &keyed);
	if (r < 0) {
		cv_errmsg_set(err, r, "the database could not be read");
		goto out;
	}
	r = cv_token_secret_find(v->token, va->label, &va->key, err);
	/* A keyed chain without its key is never given a new one: records keyed with a new
	 * key would verify while the old ones could not, hiding what was lost. */
	if (r == CV_ERR_NOT_FOUND && keyed) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "the audit chain is keyed, but the token "
				  "holds no secret key labelled \"%s\" (audit.key_label): restore "
				  "the token, or its key, from its backup", va->label);
		goto out;
	}
	if (r == CV_ERR_NOT_FOUND && s->create_key) {
		/* The key covers every record from the next one on; the token keeps that number
		 * where the database cannot change it. */
		snprintf(id, sizeof(id), KEY_ID_PREFIX "%lld", (long long)(last + 1));
		r = cv_token_secret_generate(v->token, va->label, (const uint8_t *)id, strlen(id),
					     &va->key, err);
		ret->created = r == 0;
	} else if (r == CV_ERR_NOT_FOUND) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "the token holds no secret key labelled "
				  "\"%s\" (audit.key_label): start certvaultd once to make it", va->label);
	}
	if (r < 0)
		goto out;
	ret->keyed_from = key_from(va->key);
	/* This process's first link key (above, and link_number). */
	va->link_key = cv_secret_alloc(CV_TOKEN_MAC_LEN);
	va->link_keys = cv_secret_alloc(LINK_SLOTS * CV_TOKEN_MAC_LEN);
	if (va->link_key == NULL || va->link_keys == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	r = link_rotate(va);
	if (r < 0) {
		cv_errmsg_set(err, r, "the audit chain's link key could not be made (a random "
			      "number, then the token's audit key derives it)");
		goto out;
	}
	cv_store_audit_key(v->store, key_mac, key_link, va, ret->keyed_from);
	v->audit = va;
	/* A chain begun before the key: its keyed part starts with a record saying so, the
	 * head of the unkeyed part being its prev_hash. */
	if (last > 0 && !keyed) {
		cv_audit_begin(&a, &self, "audit.keyed", va->label, "", now);
		snprintf(a.entry.detail, sizeof(a.entry.detail), "unkeyed_through=%lld",
			 (long long)last);
		r = cv_store_audit_append(v->store, vault_audit_done(&a));
		if (r < 0) {
			cv_errmsg_set(err, r, "the audit chain's checkpoint could not be written");
			goto out;
		}
		ret->checkpoint = last + 1;
	}
	if (s->link_rotate > 0) {
		if (pthread_create(&va->rotator, NULL, link_rotator, va) != 0) {
			r = cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot start the audit link key's "
					  "rotation");
			goto out;
		}
		va->rotating = 1;
		(void)pthread_setname_np(va->rotator, "cv-audit-link");
	}
	return 0;
out:
	if (v->audit == va) {
		v->audit = NULL;
		cv_store_audit_key(v->store, NULL, NULL, NULL, 0);
	}
	audit_free(va);
	return r;
}

void cv_vault_audit_release(struct cv_vault *v, int64_t now)
{
	struct vault_audit *va = v->audit;

	if (va == NULL)
		return;
	(void)cv_vault_audit_flush(v, now, 1);
	cv_store_audit_key(v->store, NULL, NULL, NULL, 0);
	v->audit = NULL;
	audit_free(va);
}

int vault_write_errmsg(struct cv_errmsg *err, int r, const char *what)
{
	if (r == CV_ERR_TOKEN_UNAVAILABLE)
		return cv_errmsg_set(err, r, "the token is unavailable: the audit record of this "
				     "change is keyed in the token, so nothing was changed");
	if (r == CV_ERR_TOKEN)
		return cv_errmsg_set(err, r, "the token refused the audit key: the audit record of "
				     "this change cannot be keyed, so nothing was changed");
	if (r == CV_ERR_BUSY)
		return cv_errmsg_set(err, r, "this node's heartbeat lapsed and another node took "
				     "over the change to undo it; nothing was changed: try again");
	return cv_errmsg_set(err, r, "%s", what);
}

int cv_vault_audit_key_attrs(struct cv_vault *v, struct cv_token_key_attrs *ret,
			     struct cv_errmsg *err)
{
	if (v->audit == NULL)
		return cv_errmsg_set(err, CV_ERR_NOT_FOUND, "the audit chain has no key");
	return cv_token_secret_attrs_get(v->audit->key, ret, err);
}

void cv_audit_source(struct cv_audit *a, const char *source)
{
	if (a != NULL)
		snprintf(a->entry.source, sizeof(a->entry.source), "%s", source != NULL ? source : "");
}

/* What counts as one source: an IPv4 address, or an IPv6 /64 (one subscriber's share, which
 * a single client can spread its requests over). */
static void source_key(const char *source, char *buf, size_t size)
{
	struct in6_addr a6;
	char text[INET6_ADDRSTRLEN];

	if (strchr(source, ':') != NULL && inet_pton(AF_INET6, source, &a6) == 1) {
		memset(a6.s6_addr + 8, 0, 8);
		if (inet_ntop(AF_INET6, &a6, text, sizeof(text)) != NULL) {
			snprintf(buf, size, "%s/64", text);
			return;
		}
	}
	snprintf(buf, size, "%s", source);
}

/* The record of a slot's repeats. Caller holds va->lock. */
static int slot_write(struct cv_vault *v, struct refusal_slot *s, int64_t now)
{
	struct cv_audit_entry e;
	int r;

	if (s->repeats == 0)
		return 0;
	e = s->last;
	e.at = now;
	e.count = s->repeats;
	e.first_at = s->first_at;
	e.last_at = s->last_at;
	r = cv_store_audit_append(v->store, &e);
	/* Written or not, the count restarts: a count that cannot be written now (the token is
	 * unavailable) is not kept growing for ever. */
	s->repeats = 0;
	return r;
}

/* Writes the counts of the table's intervals that ended (all: of every interval) and frees
 * the slots of those that ended. Caller holds va->lock. */
static int table_flush(struct cv_vault *v, struct refusal_slot *slots, size_t n,
		       int64_t interval, int64_t now, int all)
{
	int r = 0, w;
	size_t i;

	for (i = 0; i < n; i++) {
		struct refusal_slot *s = &slots[i];

		if (!s->used)
			continue;
		if (all || now >= s->opened_at + interval) {
			w = slot_write(v, s, now);
			if (w < 0 && r == 0)
				r = w;
		}
		if (now >= s->opened_at + interval)
			s->used = 0;
	}
	return r;
}

int cv_vault_audit_flush(struct cv_vault *v, int64_t now, int all)
{
	struct vault_audit *va = v->audit;
	int r, w;

	if (va == NULL)
		return 0;
	pthread_mutex_lock(&va->lock);
	r = table_flush(v, va->slots, REFUSAL_SLOTS, va->cfg.repeat_interval, now, all);
	w = table_flush(v, va->uses, USE_SLOTS, va->cfg.use_interval, now, all);
	pthread_mutex_unlock(&va->lock);
	return r < 0 ? r : w;
}

/* Finds the slot of key in the table, or takes a free one (opening it at now). NULL when
 * every slot is in an open interval. Caller holds va->lock. */
static struct refusal_slot *slot_for(struct refusal_slot *slots, size_t n, const char *key,
				     int64_t now, int *ret_opened)
{
	struct refusal_slot *free_slot = NULL;
	size_t i;

	*ret_opened = 0;
	for (i = 0; i < n; i++) {
		struct refusal_slot *s = &slots[i];

		if (s->used && strcmp(s->key, key) == 0)
			return s;
		if (!s->used && free_slot == NULL)
			free_slot = s;
	}
	if (free_slot != NULL) {
		memset(free_slot, 0, sizeof(*free_slot));
		free_slot->used = 1;
		snprintf(free_slot->key, sizeof(free_slot->key), "%s", key);
		free_slot->opened_at = now;
		*ret_opened = 1;
	}
	return free_slot;
}

int cv_vault_audit_refused(struct cv_vault *v, struct cv_audit *a, const char *error_code)
{
	struct vault_audit *va = v->audit;
	struct refusal_slot *s;
	char src[64], key[sizeof(s->key)];
	int opened, r = 0, w;

	if (a == NULL || a->written)
		return 0;
	a->entry.ok = 0;
	snprintf(a->entry.error, sizeof(a->entry.error), "%s", error_code);
	a->written = 1;
	if (va == NULL || va->cfg.repeat_interval <= 0)
		return cv_store_audit_append(v->store, &a->entry);
	/* Intervals that ended are written first, so the trail stays in time order. */
	r = cv_vault_audit_flush(v, a->entry.at, 0);
	source_key(a->entry.source, src, sizeof(src));
	/* Anonymous repeats are one count whatever they aim at (a flood varies its targets);
	 * a token's holder, who answers for every record, keeps one count per target. */
	snprintf(key, sizeof(key), "%s|%s|%s|%s|%.*s", src, a->entry.actor_id, a->entry.action,
		 a->entry.error, a->entry.actor_id[0] != '\0' ? 64 : 0, a->entry.target);
	pthread_mutex_lock(&va->lock);
	s = slot_for(va->slots, REFUSAL_SLOTS, key, a->entry.at, &opened);
	if (s == NULL) {
		/* Every slot busy: one count per action and error for all the other sources. */
		snprintf(key, sizeof(key), "*|*|%s|%s", a->entry.action, a->entry.error);
		for (size_t i = 0; s == NULL && i < REFUSAL_SLOTS; i++)
			if (va->slots[i].used && strcmp(va->slots[i].key, key) == 0)
				s = &va->slots[i];
		if (s == NULL) {
			/* Not even that: the oldest slot gives way, its count written first. */
			struct refusal_slot *oldest = &va->slots[0];

			for (size_t i = 1; i < REFUSAL_SLOTS; i++)
				if (va->slots[i].opened_at < oldest->opened_at)
					oldest = &va->slots[i];
			w = slot_write(v, oldest, a->entry.at);
			if (w < 0 && r == 0)
				r = w;
			memset(oldest, 0, sizeof(*oldest));
			oldest->used = 1;
			snprintf(oldest->key, sizeof(oldest->key), "%s", key);
			oldest->opened_at = a->entry.at;
			s = oldest;
			opened = 1;
		}
	}
	if (opened) {
		w = cv_store_audit_append(v->store, &a->entry);
		if (w < 0 && r == 0)
			r = w;
	} else {
		if (s->repeats == 0)
			s->first_at = a->entry.at;
		s->repeats++;
		s->last_at = a->entry.at;
		s->last = a->entry;
	}
	pthread_mutex_unlock(&va->lock);
	return r;
}

int cv_vault_audit_use(struct cv_vault *v, struct cv_audit *a)
{
	struct vault_audit *va = v->audit;
	struct refusal_slot *s;
	char key[sizeof(s->key)];
	int opened, r;
	size_t i;

	if (a == NULL || a->written)
		return 0;
	a->entry.ok = 1;
	a->entry.error[0] = '\0';
	if (va == NULL || va->cfg.use_interval <= 0) {
		r = cv_store_audit_append(v->store, &a->entry);
		a->written = r == 0;
		return r;
	}
	/* Intervals that ended are written first, so the trail stays in time order; a count
	 * that cannot be written now does not stop this use (its own record decides). */
	(void)cv_vault_audit_flush(v, a->entry.at, 0);
	/* The token's holder answers for every signature: one count per actor, action, key and
	 * algorithm (the detail names it). */
	snprintf(key, sizeof(key), "%s|%s|%.64s|%.60s", a->entry.actor_id, a->entry.action,
		 a->entry.target, a->entry.detail);
	pthread_mutex_lock(&va->lock);
	s = slot_for(va->uses, USE_SLOTS, key, a->entry.at, &opened);
	if (s == NULL) {
		/* Every slot in an open interval: the oldest closes early, its count written. */
		struct refusal_slot *oldest = &va->uses[0];

		for (i = 1; i < USE_SLOTS; i++)
			if (va->uses[i].opened_at < oldest->opened_at)
				oldest = &va->uses[i];
		(void)slot_write(v, oldest, a->entry.at);
		memset(oldest, 0, sizeof(*oldest));
		oldest->used = 1;
		snprintf(oldest->key, sizeof(oldest->key), "%s", key);
		oldest->opened_at = a->entry.at;
		s = oldest;
		opened = 1;
	}
	if (opened) {
		r = cv_store_audit_append(v->store, &a->entry);
		/* Not written: no interval is open, so the next use tries to write its own first
		 * record rather than being only counted. */
		if (r < 0)
			s->used = 0;
	} else {
		if (s->repeats == 0)
			s->first_at = a->entry.at;
		s->repeats++;
		s->last_at = a->entry.at;
		s->last = a->entry;
		r = 0;
	}
	pthread_mutex_unlock(&va->lock);
	a->written = r == 0;
	return r;
}

int cv_vault_refusal_throttle(struct cv_vault *v, const char *source, int64_t now_ms,
			      int64_t *ret_retry_after)
{
	struct vault_audit *va = v->audit;
	struct limit_slot *s = NULL, *oldest = NULL;
	double rate, wait;
	char key[64];
	size_t i;
	int r = 0;

	*ret_retry_after = 0;
	if (va == NULL || va->cfg.anonymous_per_minute <= 0)
		return 0;
	source_key(source != NULL ? source : "", key, sizeof(key));
	rate = (double)va->cfg.anonymous_per_minute / 60.0; /* tokens a second */
	pthread_mutex_lock(&va->limit_lock);
	for (i = 0; i < LIMIT_SLOTS; i++) {
		struct limit_slot *l = &va->limits[i];

		if (l->source[0] != '\0' && strcmp(l->source, key) == 0) {
			s = l;
			break;
		}
		if (oldest == NULL || l->source[0] == '\0' ||
		    (oldest->source[0] != '\0' && l->at_ms < oldest->at_ms))
			oldest = l;
	}
	if (s == NULL) {
		s = oldest;
		snprintf(s->source, sizeof(s->source), "%s", key);
		s->tokens = (double)va->cfg.anonymous_burst;
		s->at_ms = now_ms;
	}
	if (now_ms > s->at_ms) {
		s->tokens += rate * (double)(now_ms - s->at_ms) / 1000.0;
		if (s->tokens > (double)va->cfg.anonymous_burst)
			s->tokens = (double)va->cfg.anonymous_burst;
		s->at_ms = now_ms;
	}
	if (s->tokens >= 1.0) {
		s->tokens -= 1.0;
	} else {
		/* Seconds until the next refusal is taken, rounded up. */
		wait = (1.0 - s->tokens) / rate;
		*ret_retry_after = (int64_t)wait;
		if ((double)*ret_retry_after < wait || *ret_retry_after < 1)
			(*ret_retry_after)++;
		r = CV_ERR_RATE_LIMITED;
	}
	pthread_mutex_unlock(&va->limit_lock);
	return r;
}

/* Archive files: JSON lines, one record each in its stored form (so the chain can be
 * recomputed from the file alone), then one line describing the whole. */
#define ARCHIVE_FORMAT "certvault-audit-archive/1"

/* A stored text as JSON: the string itself, or {"hex": ...} for bytes that are not UTF-8
 * (records from before text was made UTF-8 on the way in). */
static json_t *text_json(const char *s)
{
	json_t *j = json_string(s);
	char *hex;

	if (j != NULL)
		return j;
	hex = malloc(2 * strlen(s) + 1);
	if (hex == NULL)
		return NULL;
	cv_hex_encode((const uint8_t *)s, strlen(s), hex);
	j = json_pack("{s:s}", "hex", hex);
	free(hex);
	return j;
}

static int text_from_json(const json_t *j, char *buf, size_t size)
{
	const char *hex;
	size_t n;

	if (json_is_string(j)) {
		n = json_string_length(j);
		if (n >= size || memchr(json_string_value(j), '\0', n) != NULL)
			return CV_ERR_BAD_ENCODING;
		memcpy(buf, json_string_value(j), n + 1);
		return 0;
	}
	hex = json_string_value(json_object_get(j, "hex"));
	if (hex == NULL || strlen(hex) % 2 != 0 || strlen(hex) / 2 >= size)
		return CV_ERR_BAD_ENCODING;
	n = strlen(hex) / 2;
	if (cv_hex_decode(hex, (uint8_t *)buf, n) < 0 || memchr(buf, '\0', n) != NULL)
		return CV_ERR_BAD_ENCODING;
	buf[n] = '\0';
	return 0;
}

static json_t *record_json(const struct cv_audit_record *rec)
{
	const struct cv_audit_entry *e = &rec->e;
	char prev[2 * CV_AUDIT_HASH_LEN + 1], hash[2 * CV_AUDIT_HASH_LEN + 1];

	cv_hex_encode(rec->prev_hash, CV_AUDIT_HASH_LEN, prev);
	cv_hex_encode(rec->hash, CV_AUDIT_HASH_LEN, hash);
	return json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:i, s:o, s:o, s:o, s:o, s:I, s:I, s:I,"
			 " s:o, s:o, s:b, s:I, s:s, s:s}",
			 "seq", (json_int_t)rec->seq, "at", (json_int_t)e->at,
			 "actor_id", text_json(e->actor_id), "actor_name", text_json(e->actor_name),
			 "action", text_json(e->action), "target", text_json(e->target),
			 "ok", e->ok, "error", text_json(e->error),
			 "request_id", text_json(e->request_id),
			 "fingerprints", text_json(e->fingerprints), "source", text_json(e->source),
			 "count", (json_int_t)e->count, "first_at", (json_int_t)e->first_at,
			 "last_at", (json_int_t)e->last_at, "detail", text_json(e->detail),
			 "changes", text_json(e->changes),
			 "keyed", rec->keyed, "link_key", (json_int_t)rec->link, "prev_hash", prev,
			 "hash", hash);
}

static int record_from_json(const json_t *j, struct cv_audit_record *rec)
{
	struct cv_audit_entry *e = &rec->e;
	const char *prev, *hash;
	int r;

	memset(rec, 0, sizeof(*rec));
	if (!json_is_integer(json_object_get(j, "seq")) ||
	    !json_is_integer(json_object_get(j, "at")) ||
	    !json_is_integer(json_object_get(j, "ok")) ||
	    !json_is_integer(json_object_get(j, "count")) ||
	    !json_is_integer(json_object_get(j, "first_at")) ||
	    !json_is_integer(json_object_get(j, "last_at")) ||
	    !json_is_boolean(json_object_get(j, "keyed")))
		return CV_ERR_BAD_ENCODING;
	rec->seq = json_integer_value(json_object_get(j, "seq"));
	e->at = json_integer_value(json_object_get(j, "at"));
	e->ok = (int)json_integer_value(json_object_get(j, "ok"));
	e->count = json_integer_value(json_object_get(j, "count"));
	e->first_at = json_integer_value(json_object_get(j, "first_at"));
	e->last_at = json_integer_value(json_object_get(j, "last_at"));
	rec->keyed = json_is_true(json_object_get(j, "keyed"));
	/* Archives written before link keys have none: the token's key itself. */
	if (json_object_get(j, "link_key") != NULL) {
		if (!json_is_integer(json_object_get(j, "link_key")) ||
		    json_integer_value(json_object_get(j, "link_key")) < 0)
			return CV_ERR_BAD_ENCODING;
		rec->link = json_integer_value(json_object_get(j, "link_key"));
	}
	r = text_from_json(json_object_get(j, "actor_id"), e->actor_id, sizeof(e->actor_id));
	if (r == 0)
		r = text_from_json(json_object_get(j, "actor_name"), e->actor_name,
				   sizeof(e->actor_name));
	if (r == 0)
		r = text_from_json(json_object_get(j, "action"), e->action, sizeof(e->action));
	if (r == 0)
		r = text_from_json(json_object_get(j, "target"), e->target, sizeof(e->target));
	if (r == 0)
		r = text_from_json(json_object_get(j, "error"), e->error, sizeof(e->error));
	if (r == 0)
		r = text_from_json(json_object_get(j, "request_id"), e->request_id,
				   sizeof(e->request_id));
	if (r == 0)
		r = text_from_json(json_object_get(j, "fingerprints"), e->fingerprints,
				   sizeof(e->fingerprints));
	if (r == 0)
		r = text_from_json(json_object_get(j, "source"), e->source, sizeof(e->source));
	if (r == 0)
		r = text_from_json(json_object_get(j, "detail"), e->detail, sizeof(e->detail));
	/* Archives written before records said what changed have no "changes": none. */
	if (r == 0 && json_object_get(j, "changes") != NULL)
		r = text_from_json(json_object_get(j, "changes"), e->changes, sizeof(e->changes));
	if (r < 0)
		return r;
	prev = json_string_value(json_object_get(j, "prev_hash"));
	hash = json_string_value(json_object_get(j, "hash"));
	if (prev == NULL || hash == NULL ||
	    cv_hex_decode(prev, rec->prev_hash, CV_AUDIT_HASH_LEN) < 0 ||
	    cv_hex_decode(hash, rec->hash, CV_AUDIT_HASH_LEN) < 0)
		return CV_ERR_BAD_ENCODING;
	return 0;
}

struct archive_out {
	int fd;
	EVP_MD_CTX *sha;
	struct cv_audit_archive_report *rep;
	uint8_t first_prev[CV_AUDIT_HASH_LEN];
	uint8_t head[CV_AUDIT_HASH_LEN];
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return CV_ERR_CONFIG;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One JSON value and a newline, into the file and its digest. */
static int archive_line(struct archive_out *o, json_t *j)
{
	char *text = NULL;
	int r;

	if (j == NULL)
		return CV_ERR_NOMEM;
	r = cv_json_text(j, JSON_COMPACT | JSON_SORT_KEYS, &text);
	json_decref(j);
	if (r < 0)
		return r;
	r = write_all(o->fd, text, strlen(text));
	if (r == 0)
		r = write_all(o->fd, "\n", 1);
	if (r == 0 && (EVP_DigestUpdate(o->sha, text, strlen(text)) != 1 ||
		       EVP_DigestUpdate(o->sha, "\n", 1) != 1))
		r = CV_ERR_INTERNAL;
	free(text);
	return r;
}

static int archive_record(const struct cv_audit_record *rec, void *arg)
{
	struct archive_out *o = arg;

	if (o->rep->records == 0) {
		o->rep->first = rec->seq;
		memcpy(o->first_prev, rec->prev_hash, CV_AUDIT_HASH_LEN);
	}
	o->rep->records++;
	o->rep->through = rec->seq;
	memcpy(o->head, rec->hash, CV_AUDIT_HASH_LEN);
	return archive_line(o, record_json(rec));
}

static json_t *trailer_json(const struct cv_audit_archive_report *rep,
			    const uint8_t first_prev[CV_AUDIT_HASH_LEN], int64_t created_at)
{
	char prev[2 * CV_AUDIT_HASH_LEN + 1];

	cv_hex_encode(first_prev, CV_AUDIT_HASH_LEN, prev);
	return json_pack("{s:{s:s, s:I, s:I, s:I, s:s, s:s, s:I}}", "archive", "format",
			 ARCHIVE_FORMAT, "first", (json_int_t)rep->first, "through",
			 (json_int_t)rep->through, "records", (json_int_t)rep->records,
			 "prev_hash", prev, "head", rep->head, "created_at",
			 (json_int_t)created_at);
}

/* Makes the file's content durable, and its name: the records are removed next. */
static int sync_file_and_dir(int fd, const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	int dfd, r = 0;

	if (fsync(fd) < 0)
		return CV_ERR_CONFIG;
	snprintf(dir, sizeof(dir), "%.*s", slash != NULL ? (int)(slash - path) + 1 : 1,
		 slash != NULL ? path : ".");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return CV_ERR_CONFIG;
	if (fsync(dfd) < 0)
		r = CV_ERR_CONFIG;
	close(dfd);
	return r;
}

int cv_vault_audit_archive(struct cv_vault *v, const char *path, int64_t before, int64_t now,
			   struct cv_audit_archive_report *ret, struct cv_errmsg *err)
{
	struct archive_out o;
	struct cv_audit a;
	struct cv_actor self = { .name = "certvaultd", .role = CV_ROLE_ADMIN };
	uint8_t sha[CV_AUDIT_HASH_LEN];
	unsigned int sha_len = 0;
	int64_t through = 0;
	int r, made = 0;

	memset(ret, 0, sizeof(*ret));
	memset(&o, 0, sizeof(o));
	o.fd = -1;
	o.rep = ret;
	if (v->audit == NULL)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "the audit chain has no key");
	r = cv_store_audit_seq_before(v->store, before, &through);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	/* An existing file may be an earlier archive: refused whether or not there is anything
	 * to archive now (and O_EXCL below closes the race). */
	if (access(path, F_OK) == 0)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot create %s: it exists", path);
	if (through == 0)
		return 0; /* nothing that old */
	o.sha = EVP_MD_CTX_new();
	if (o.sha == NULL || EVP_DigestInit_ex(o.sha, EVP_sha256(), NULL) != 1) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* Never over an existing file: it may be an earlier archive. */
	o.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (o.fd < 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "cannot create %s: %s", path,
				  errno == EEXIST ? "it exists" : strerror(errno));
		goto out;
	}
	made = 1;
	r = cv_store_audit_walk(v->store, through, archive_record, &o);
	if (r < 0) {
		cv_errmsg_set(err, r, "%s could not be written", path);
		goto out;
	}
	cv_hex_encode(o.head, CV_AUDIT_HASH_LEN, ret->head);
	r = archive_line(&o, trailer_json(ret, o.first_prev, now));
	if (r == 0 && (EVP_DigestFinal_ex(o.sha, sha, &sha_len) != 1 ||
		       sha_len != CV_AUDIT_HASH_LEN))
		r = CV_ERR_INTERNAL;
	if (r == 0)
		r = sync_file_and_dir(o.fd, path);
	if (r < 0) {
		cv_errmsg_set(err, r, "%s could not be written", path);
		goto out;
	}
	cv_hex_encode(sha, CV_AUDIT_HASH_LEN, ret->sha256);
	/* The checkpoint: what left the database, the hash that links the rest to it (a keyed
	 * record's HMAC, so it cannot be made up) and the file's digest. It is a keyed record
	 * itself. */
	cv_audit_begin(&a, &self, "audit.archive", "", "", now);
	snprintf(a.entry.target, sizeof(a.entry.target), "%lld-%lld", (long long)ret->first,
		 (long long)ret->through);
	snprintf(a.entry.detail, sizeof(a.entry.detail),
		 "first=%lld through=%lld records=%lld head=%s file_sha256=%s",
		 (long long)ret->first, (long long)ret->through, (long long)ret->records,
		 ret->head, ret->sha256);
	{
		uint8_t head[CV_AUDIT_HASH_LEN];

		memcpy(head, o.head, sizeof(head));
		r = cv_store_audit_archive_commit(v->store, ret->first, ret->through, head,
						  vault_audit_done(&a));
	}
	if (r == CV_ERR_PRECONDITION) {
		cv_errmsg_set(err, r, "the audit trail changed while it was archived: nothing "
			      "was removed");
		goto out;
	}
	if (r < 0) {
		cv_errmsg_set(err, r, "the archived records could not be removed");
		goto out;
	}
	made = 0; /* kept: it holds the only copy now */
out:
	if (o.fd >= 0)
		close(o.fd);
	if (made)
		unlink(path);
	EVP_MD_CTX_free(o.sha);
	if (r < 0)
		memset(ret, 0, sizeof(*ret));
	return r;
}

int cv_vault_audit_archive_verify(struct cv_vault *v, const char *path,
				  struct cv_audit_archive_report *ret, struct cv_errmsg *err)
{
	FILE *f = NULL;
	EVP_MD_CTX *sha = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	json_t *j = NULL, *t;
	json_error_t jerr;
	struct cv_audit_record rec;
	uint8_t prev[CV_AUDIT_HASH_LEN] = { 0 }, want[CV_AUDIT_HASH_LEN],
		digest[CV_AUDIT_HASH_LEN], first_prev[CV_AUDIT_HASH_LEN];
	unsigned int dlen = 0;
	int r = 0, trailer = 0, lineno = 0;

	memset(ret, 0, sizeof(*ret));
	f = fopen(path, "re");
	if (f == NULL)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot read %s: %s", path,
				     strerror(errno));
	sha = EVP_MD_CTX_new();
	if (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		EVP_DigestUpdate(sha, line, (size_t)n);
		if (trailer) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "line %d: after the archive's "
					  "last line", lineno);
			goto out;
		}
		json_decref(j);
		j = json_loadb(line, (size_t)n, 0, &jerr);
		if (j == NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "line %d: not JSON", lineno);
			goto out;
		}
		if ((t = json_object_get(j, "archive")) != NULL) {
			const char *fmt = json_string_value(json_object_get(t, "format"));
			const char *head = json_string_value(json_object_get(t, "head"));
			const char *fp = json_string_value(json_object_get(t, "prev_hash"));
			char hex[2 * CV_AUDIT_HASH_LEN + 1];

			trailer = 1;
			cv_hex_encode(prev, CV_AUDIT_HASH_LEN, hex);
			if (fmt == NULL || strcmp(fmt, ARCHIVE_FORMAT) != 0 ||
			    json_integer_value(json_object_get(t, "first")) != ret->first ||
			    json_integer_value(json_object_get(t, "through")) != ret->through ||
			    json_integer_value(json_object_get(t, "records")) != ret->records ||
			    head == NULL || strcmp(head, hex) != 0 || fp == NULL ||
			    cv_hex_decode(fp, want, CV_AUDIT_HASH_LEN) < 0 ||
			    (ret->records > 0 && memcmp(want, first_prev, CV_AUDIT_HASH_LEN) != 0)) {
				ret->first_bad = ret->through + 1;
				snprintf(ret->reason, sizeof(ret->reason), "the archive's last line "
					 "does not describe its records");
				goto done;
			}
			continue;
		}
		r = record_from_json(j, &rec);
		if (r < 0) {
			r = cv_errmsg_set(err, r, "line %d: not an audit record", lineno);
			goto out;
		}
		if (ret->records == 0) {
			ret->first = rec.seq;
			memcpy(first_prev, rec.prev_hash, CV_AUDIT_HASH_LEN);
			/* The first record links to what came before the archive (zeros for the
			 * chain's start): that link is checked against the previous archive's
			 * head, or the checkpoint, by whoever holds both. */
			memcpy(prev, rec.prev_hash, CV_AUDIT_HASH_LEN);
		} else if (rec.seq != ret->through + 1) {
			ret->first_bad = ret->through + 1;
			snprintf(ret->reason, sizeof(ret->reason), "record %lld is missing",
				 (long long)ret->through + 1);
			goto done;
		}
		ret->records++;
		ret->through = rec.seq;
		if (memcmp(rec.prev_hash, prev, CV_AUDIT_HASH_LEN) != 0) {
			ret->first_bad = rec.seq;
			snprintf(ret->reason, sizeof(ret->reason), "record %lld does not chain to "
				 "the record before it", (long long)rec.seq);
			goto done;
		}
		r = cv_store_audit_seal(v->store, &rec, want);
		if (r < 0) {
			cv_errmsg_set(err, r, "record %lld cannot be checked without the token's "
				      "audit key", (long long)rec.seq);
			goto out;
		}
		if (CRYPTO_memcmp(want, rec.hash, CV_AUDIT_HASH_LEN) != 0) {
			ret->first_bad = rec.seq;
			snprintf(ret->reason, sizeof(ret->reason), "record %lld was changed after "
				 "it was written", (long long)rec.seq);
			goto done;
		}
		memcpy(prev, rec.hash, CV_AUDIT_HASH_LEN);
	}
	if (!trailer) {
		ret->first_bad = ret->through + 1;
		snprintf(ret->reason, sizeof(ret->reason), "the archive ends without its last "
			 "line: it was cut short");
	}
done:
	cv_hex_encode(prev, CV_AUDIT_HASH_LEN, ret->head);
	/* The digest of the whole file, as the checkpoint names it. */
	while (ret->first_bad != 0 && (n = getline(&line, &cap, f)) > 0)
		EVP_DigestUpdate(sha, line, (size_t)n);
	if (EVP_DigestFinal_ex(sha, digest, &dlen) == 1 && dlen == CV_AUDIT_HASH_LEN)
		cv_hex_encode(digest, CV_AUDIT_HASH_LEN, ret->sha256);
	r = 0;
out:
	json_decref(j);
	free(line);
	EVP_MD_CTX_free(sha);
	fclose(f);
	return r;
}
