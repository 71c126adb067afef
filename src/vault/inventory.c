/* vault: the inventory, a walk of every certificate and truststore entry a page at a time,
 * each certificate's key attributes read back from the token as the walk reaches it. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum stage {
	STAGE_CERTS = 0,
	STAGE_TRUST,
	STAGE_DONE,
};

struct cv_inventory {
	struct cv_vault *v;
	int64_t now;
	unsigned what;
	unsigned page_size;
	enum stage stage;
	int started;               /* the stage's first page was read */
	char after[65];            /* the keyset cursor: the last name of the page before */
	struct cv_cert_page *certs;
	struct cv_trust_record *trust;
	size_t n_trust;
	size_t i;                  /* the next row of the page */
	struct cv_inventory_item item;
	char key_uri[512];
	const struct cv_scope_objects *scope; /* borrowed; NULL: every certificate */
};

void cv_vault_inventory_scope(struct cv_inventory *inv, const struct cv_scope_objects *scope)
{
	inv->scope = scope;
}

int cv_vault_inventory_new(struct cv_vault *v, int64_t now, unsigned what, unsigned page_size,
			   struct cv_inventory **ret_inv, struct cv_errmsg *err)
{
	struct cv_inventory *inv;

	if (page_size < 1 || page_size > 1000)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "page size %u is not 1 to 1000",
				     page_size);
	inv = calloc(1, sizeof(*inv));
	if (inv == NULL)
		return cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
	inv->v = v;
	inv->now = now;
	inv->what = what;
	inv->page_size = page_size;
	inv->stage = (what & CV_INVENTORY_CERTIFICATES) ? STAGE_CERTS :
		     (what & CV_INVENTORY_TRUSTSTORE) ? STAGE_TRUST : STAGE_DONE;
	*ret_inv = inv;
	return 0;
}

void cv_vault_inventory_free(struct cv_inventory *inv)
{
	if (inv == NULL)
		return;
	cv_store_cert_page_free(inv->certs);
	cv_store_trust_free(inv->trust, inv->n_trust);
	free(inv);
}

static int cert_item(struct cv_inventory *inv, const struct cv_cert_record *rec,
		     struct cv_errmsg *err)
{
	struct cv_inventory_item *it = &inv->item;
	int r;

	memset(it, 0, sizeof(*it));
	it->name = rec->name;
	it->description = rec->description != NULL ? rec->description : "";
	it->subject = rec->subject;
	it->issuer = rec->issuer;
	it->serial = rec->serial;
	it->sha256_fingerprint = rec->sha256_fingerprint;
	cv_x509_key_kind_of(rec->key_description, it->key_type, &it->key_bits);
	it->not_before = rec->not_before;
	it->not_after = rec->not_after;
	it->status = cv_status_at((time_t)rec->not_before, (time_t)rec->not_after,
				  (time_t)inv->now, inv->v->soon_seconds);
	it->version = rec->version;
	it->n_domains = rec->n_domains;
	it->domains = rec->domains;
	it->n_used_by = rec->n_used_by;
	it->used_by = rec->used_by;
	it->n_tags = rec->n_tags;
	it->tags = rec->tags;
	it->is_public = rec->is_public;
	it->key_uri = "";
	if (!rec->is_public) {
		r = cv_token_key_uri(inv->v->token, rec->key_id, sizeof(rec->key_id), rec->key_label,
				     inv->key_uri, sizeof(inv->key_uri));
		if (r < 0)
			return cv_errmsg_set(err, r, "the key URI of %s does not fit", rec->name);
		it->key_uri = inv->key_uri;
	}
	it->key_origin = rec->is_public ? NULL : cv_key_origin_name(rec->key_origin);
	if (!(inv->what & CV_INVENTORY_DETAILS))
		return 0;
	it->n_kids = rec->n_kids;
	it->kids = rec->kids;
	/* A public certificate has no key to ask the token about. */
	if (rec->is_public)
		return 0;
	/* What the token says now, not what the import asked for. A key gone from the token
	 * (destroyed by another tool) is reported absent; a token that cannot answer stops
	 * the walk rather than have it report keys absent that are not. */
	r = cv_token_key_attrs_get(inv->v->token, rec->key_id, sizeof(rec->key_id), &it->key,
				   err);
	if (r == CV_ERR_NOT_FOUND)
		r = 0;
	return r;
}

static void trust_item(struct cv_inventory *inv, const struct cv_trust_record *t)
{
	struct cv_inventory_item *it = &inv->item;

	memset(it, 0, sizeof(*it));
	it->trusted_ca = 1;
	it->name = t->alias;
	it->description = "";
	it->subject = t->subject;
	it->issuer = t->issuer;
	it->serial = t->serial;
	it->sha256_fingerprint = t->sha256_fingerprint;
	cv_x509_key_kind_of(t->key_description, it->key_type, &it->key_bits);
	it->not_before = t->not_before;
	it->not_after = t->not_after;
	it->status = cv_status_at((time_t)t->not_before, (time_t)t->not_after, (time_t)inv->now,
				  inv->v->soon_seconds);
	it->key_uri = "";
}

/* Reads the stage's next page; at the end of the stage's rows moves to the next stage. */
static int next_page(struct cv_inventory *inv, struct cv_errmsg *err)
{
	struct cv_cert_filter filter;
	int r;

	if (inv->stage == STAGE_CERTS) {
		if (inv->certs != NULL) {
			if (!inv->certs->has_more || inv->certs->n == 0) {
				cv_store_cert_page_free(inv->certs);
				inv->certs = NULL;
				inv->stage = (inv->what & CV_INVENTORY_TRUSTSTORE) ? STAGE_TRUST :
					     STAGE_DONE;
				inv->started = 0;
				return 0;
			}
			memcpy(inv->after, inv->certs->items[inv->certs->n - 1]->name,
			       sizeof(inv->after));
			cv_store_cert_page_free(inv->certs);
			inv->certs = NULL;
		}
		memset(&filter, 0, sizeof(filter));
		filter.now = inv->now;
		filter.in_use = -1;
		filter.after = inv->started ? inv->after : NULL;
		filter.limit = inv->page_size;
		filter.with_jwks = (inv->what & CV_INVENTORY_DETAILS) != 0;
		filter.scope = inv->scope;
		r = cv_vault_cert_list(inv->v, &filter, &inv->certs, err);
		if (r < 0)
			return r;
		inv->started = 1;
		inv->i = 0;
		return 0;
	}
	if (inv->started) {
		/* A short page was the last. */
		if (inv->n_trust < inv->page_size) {
			cv_store_trust_free(inv->trust, inv->n_trust);
			inv->trust = NULL;
			inv->n_trust = 0;
			inv->stage = STAGE_DONE;
			return 0;
		}
		memcpy(inv->after, inv->trust[inv->n_trust - 1].alias, sizeof(inv->after));
	}
	cv_store_trust_free(inv->trust, inv->n_trust);
	inv->trust = NULL;
	inv->n_trust = 0;
	r = cv_store_trust_page(inv->v->store, inv->started ? inv->after : NULL, inv->page_size,
				&inv->trust, &inv->n_trust);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	inv->started = 1;
	inv->i = 0;
	return 0;
}

int cv_vault_inventory_next(struct cv_inventory *inv, const struct cv_inventory_item **ret_item,
			    struct cv_errmsg *err)
{
	int r;

	for (;;) {
		if (inv->stage == STAGE_DONE)
			return 0;
		if (inv->stage == STAGE_CERTS && inv->certs != NULL && inv->i < inv->certs->n) {
			r = cert_item(inv, inv->certs->items[inv->i++], err);
			if (r < 0)
				return r;
			*ret_item = &inv->item;
			return 1;
		}
		if (inv->stage == STAGE_TRUST && inv->started && inv->i < inv->n_trust) {
			trust_item(inv, &inv->trust[inv->i++]);
			*ret_item = &inv->item;
			return 1;
		}
		r = next_page(inv, err);
		if (r < 0)
			return r;
	}
}
