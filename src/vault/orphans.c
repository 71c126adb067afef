/* vault: key objects with certvault's marker that no row needs, found at start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct orphan_scan {
	struct cv_vault *v;
	const uint8_t (*needed)[CV_TOKEN_ID_LEN];
	size_t n_needed;
	int destroy;
	struct cv_orphan_report *report;
};

static int id_compare(const void *a, const void *b)
{
	return memcmp(a, b, CV_TOKEN_ID_LEN);
}

static int orphan_check(const uint8_t *id, size_t id_len, int has_private, void *arg)
{
	struct orphan_scan *s = arg;
	struct cv_orphan_report *rep = s->report;
	struct cv_errmsg why = { "" };
	int destroyed = 0;
	size_t i;

	if (id_len != CV_TOKEN_ID_LEN ||
	    bsearch(id, s->needed, s->n_needed, CV_TOKEN_ID_LEN, id_compare) != NULL)
		return 0;
	rep->found++;
	if (s->destroy) {
		/* The token searches by id and class (private and public key only) and makes the
		 * destroy durable before it returns. */
		if (cv_token_key_destroy(s->v->token, id, id_len, &why) == 0) {
			rep->destroyed++;
			destroyed = 1;
		} else {
			if (rep->failed == 0)
				snprintf(rep->first_error, sizeof(rep->first_error), "%.200s", why.text);
			rep->failed++;
		}
	}
	if (rep->listed < CV_ORPHANS_LISTED) {
		for (i = 0; i < id_len; i++)
			snprintf(rep->keys[rep->listed].id_hex + 2 * i, 3, "%02x", id[i]);
		rep->keys[rep->listed].has_private = has_private;
		rep->keys[rep->listed].destroyed = destroyed;
		rep->listed++;
	}
	return 0;
}

int cv_vault_orphans(struct cv_vault *v, int destroy, struct cv_orphan_report *ret_report,
		     struct cv_errmsg *err)
{
	uint8_t (*needed)[CV_TOKEN_ID_LEN] = NULL;
	struct orphan_scan scan;
	size_t n = 0;
	int r;

	memset(ret_report, 0, sizeof(*ret_report));
	/* One read of every needed id, then one lookup in memory per marked object: start-up
	 * at 10,000 keys must not pay a query per key. */
	r = cv_store_key_ids_needed(v->store, &needed, &n);
	if (r < 0) {
		cv_errmsg_set(err, r, "orphan key search: the database could not be read");
		goto out;
	}
	scan.v = v;
	scan.needed = (const uint8_t (*)[CV_TOKEN_ID_LEN])needed;
	scan.n_needed = n;
	scan.destroy = destroy;
	scan.report = ret_report;
	r = cv_token_marked_foreach(v->token, orphan_check, &scan);
	if (r < 0)
		cv_errmsg_set(err, r, "orphan key search: out of memory");
out:
	free(needed);
	return r;
}
