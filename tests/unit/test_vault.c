/* Unit tests of the vault's audit use cases (src/vault/audit.c) on a real SoftHSM token and a
 * real SQLite file: the audit key made once and found again, refusals counted per address
 * (an IPv6 /64 as one), and the rate of refusals without a token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "certvault/store.h"
#include "certvault/token.h"
#include "certvault/vault.h"
#include "softhsm.h"

#define LABEL "vault-test"
#define SO_PIN "1234"
#define USER_PIN "5678"
#define NOW 1800000000

static char dir[] = "/tmp/cv-vault-XXXXXX";

struct fixture {
	struct cv_token *token;
	struct cv_store *store;
	struct cv_vault v;
};

static int group_setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	return ts_softhsm_new(dir, LABEL, SO_PIN, USER_PIN);
}

static int group_teardown(void **state)
{
	(void)state;
	return ts_softhsm_remove(dir);
}

static const struct cv_audit_settings settings = {
	"vault-test-hmac", 1, 60, 60, 3, 60, 0,
};

static void open_with(struct fixture *fx, const char *db, struct cv_audit_key_report *rep,
		      const struct cv_audit_settings *s)
{
	struct cv_token_config tcfg = { ts_softhsm_module(), LABEL, USER_PIN, 2, NULL, NULL, 0 };
	struct cv_errmsg err = { "" };
	char path[256];

	memset(fx, 0, sizeof(*fx));
	snprintf(path, sizeof(path), "%s/%s", dir, db);
	assert_int_equal(cv_token_open(&tcfg, &fx->token, &err), 0);
	assert_int_equal(cv_store_open(path, &fx->store, &err), 0);
	fx->v.store = fx->store;
	fx->v.token = fx->token;
	if (cv_vault_audit_init(&fx->v, s, NOW, rep, &err) != 0)
		fail_msg("cv_vault_audit_init: %s", err.text);
}

static void open_all(struct fixture *fx, const char *db, struct cv_audit_key_report *rep)
{
	open_with(fx, db, rep, &settings);
}

static void close_all(struct fixture *fx)
{
	cv_vault_audit_release(&fx->v, NOW);
	cv_store_free(fx->store);
	cv_token_free(fx->token);
}

static void refuse(struct cv_vault *v, const char *source, const char *target, int64_t at)
{
	struct cv_audit a;

	cv_audit_begin(&a, NULL, "certificate.delete", target, "req", at);
	cv_audit_source(&a, source);
	assert_int_equal(cv_vault_audit_refused(v, &a, "unauthorized"), 0);
}

static size_t records(struct cv_store *store, struct cv_audit_record **ret)
{
	struct cv_audit_filter f;
	size_t n = 0;

	memset(&f, 0, sizeof(f));
	f.limit = 1000;
	assert_int_equal(cv_store_audit_list(store, &f, ret, &n), 0);
	return n;
}

/* Link keys: every link_rotate seconds the records are keyed with a new one, each a
 * 53-bit number; the chain verifies across them, and again after a restart (the token
 * derives the earlier ones). */
static void test_link_rotation(void **state)
{
	static const struct cv_audit_settings rotating = {
		"vault-test-hmac", 1, 60, 60, 3, 60, 1,
	};
	struct cv_audit_key_report rep;
	struct cv_audit_verdict verdict;
	struct cv_audit_record *recs = NULL;
	struct fixture fx;
	int64_t links[4] = { 0 };
	size_t n, i, k, n_links = 0;
	char source[32];

	(void)state;
	open_with(&fx, "links.db", &rep, &rotating);
	for (i = 0; i < 25; i++) {
		/* Another address each time: each refusal is the first of its own and written
		 * at once. */
		snprintf(source, sizeof(source), "192.0.2.%zu", i + 1);
		refuse(&fx.v, source, "a", NOW + (int64_t)i);
		usleep(100 * 1000);
	}
	n = records(fx.store, &recs);
	assert_int_equal(n, 25);
	for (i = 0; i < n; i++) {
		assert_true(recs[i].keyed);
		assert_true(recs[i].link > 0 && recs[i].link < ((int64_t)1 << 53));
		for (k = 0; k < n_links && links[k] != recs[i].link; k++)
			;
		if (k == n_links) {
			assert_true(n_links < 4);
			links[n_links++] = recs[i].link;
		}
	}
	free(recs);
	/* 2.5 s of records, a new link key every second. */
	assert_true(n_links >= 2);
	assert_int_equal(cv_store_audit_verify(fx.store, &verdict), 0);
	assert_int_equal(verdict.first_bad, 0);
	assert_int_equal(verdict.records, 25);
	close_all(&fx);

	open_all(&fx, "links.db", &rep);
	assert_int_equal(cv_store_audit_verify(fx.store, &verdict), 0);
	assert_int_equal(verdict.first_bad, 0);
	close_all(&fx);
}

/* The key is made on the first start, naming the first record it covers, and found on the
 * next; refusals of one address (an IPv6 /64) are one record and a count. */
static void test_key_and_counts(void **state)
{
	struct cv_audit_key_report rep;
	struct cv_audit_verdict verdict;
	struct cv_audit_record *recs = NULL;
	struct fixture fx;
	size_t n;

	(void)state;
	open_all(&fx, "counts.db", &rep);
	assert_int_equal(rep.created, 1);
	assert_int_equal(rep.keyed_from, 1);
	assert_int_equal(rep.checkpoint, 0);

	refuse(&fx.v, "2001:db8:1:2::5", "a", NOW);
	refuse(&fx.v, "2001:db8:1:2:ffff::9", "b", NOW + 1);   /* the same /64 */
	refuse(&fx.v, "2001:db8:1:2::5", "c", NOW + 2);
	refuse(&fx.v, "2001:db8:1:3::5", "d", NOW + 3);        /* another /64 */
	n = records(fx.store, &recs);
	assert_int_equal(n, 2);                                 /* the two openings */
	assert_string_equal(recs[0].e.target, "a");
	assert_string_equal(recs[1].e.target, "d");
	free(recs);
	/* The interval over: the count of the repeats, first and last attempt. */
	assert_int_equal(cv_vault_audit_flush(&fx.v, NOW + 61, 0), 0);
	n = records(fx.store, &recs);
	assert_int_equal(n, 3);
	assert_int_equal(recs[2].e.count, 2);
	assert_int_equal(recs[2].e.first_at, NOW + 1);
	assert_int_equal(recs[2].e.last_at, NOW + 2);
	assert_string_equal(recs[2].e.source, "2001:db8:1:2::5");
	assert_int_equal(recs[2].keyed, 1);
	free(recs);
	assert_int_equal(cv_store_audit_verify(fx.store, &verdict), 0);
	assert_int_equal(verdict.first_bad, 0);
	close_all(&fx);

	/* The next start finds the key: nothing made, the chain still verifies. */
	open_all(&fx, "counts.db", &rep);
	assert_int_equal(rep.created, 0);
	assert_int_equal(rep.keyed_from, 1);
	assert_int_equal(cv_store_audit_verify(fx.store, &verdict), 0);
	assert_int_equal(verdict.first_bad, 0);
	assert_int_equal(verdict.keyed_from, 1);
	close_all(&fx);
}

/* A token bucket per address: the burst, then one a second at 60 a minute, with the wait
 * said; an IPv6 /64 is one address, another /64 or an IPv4 address its own. */
static void test_throttle(void **state)
{
	struct cv_audit_key_report rep;
	struct fixture fx;
	int64_t wait = 0, t = (int64_t)NOW * 1000;
	int i;

	(void)state;
	open_all(&fx, "throttle.db", &rep);
	for (i = 0; i < 3; i++)
		assert_int_equal(cv_vault_refusal_throttle(&fx.v, "2001:db8::1", t, &wait), 0);
	assert_int_equal(cv_vault_refusal_throttle(&fx.v, "2001:db8::1", t, &wait),
			 CV_ERR_RATE_LIMITED);
	assert_int_equal(wait, 1);
	assert_int_equal(cv_vault_refusal_throttle(&fx.v, "2001:db8::ffff:2", t, &wait),
			 CV_ERR_RATE_LIMITED);
	assert_int_equal(cv_vault_refusal_throttle(&fx.v, "2001:db8:0:1::1", t, &wait), 0);
	assert_int_equal(cv_vault_refusal_throttle(&fx.v, "192.0.2.1", t, &wait), 0);
	/* A second later, one more; not two. */
	assert_int_equal(cv_vault_refusal_throttle(&fx.v, "2001:db8::1", t + 1000, &wait), 0);
	assert_int_equal(cv_vault_refusal_throttle(&fx.v, "2001:db8::1", t + 1000, &wait),
			 CV_ERR_RATE_LIMITED);
	close_all(&fx);
}

/* Signatures (uses of a key) are counted like refusals, in their own table: one record per
 * actor, action, key and algorithm at once, the repeats as one counted record when the
 * interval ends; a refusal flood beside them changes nothing of that. */
static void test_uses_counted(void **state)
{
	struct cv_actor who = { .id = "0123456789abcdef", .name = "signer", .role = CV_ROLE_OPERATOR };
	struct cv_audit_key_report rep;
	struct cv_audit_record *recs = NULL;
	struct cv_audit_verdict verdict;
	struct fixture fx;
	struct cv_audit a;
	size_t n;
	int i;

	(void)state;
	open_all(&fx, "uses.db", &rep);
	for (i = 0; i < 5; i++) {
		cv_audit_begin(&a, &who, "certificate.sign", "www", "req", NOW + i);
		snprintf(a.entry.detail, sizeof(a.entry.detail), "algorithm=%s version=1",
			 i == 4 ? "PS256" : "RS256");
		assert_int_equal(cv_vault_audit_use(&fx.v, &a), 0);
		assert_int_equal(a.written, 1);
		refuse(&fx.v, "192.0.2.7", "x", NOW + i);
	}
	n = records(fx.store, &recs);
	assert_int_equal(n, 3); /* RS256's first, the refusal's first, PS256's first */
	assert_int_equal(recs[0].e.ok, 1);
	assert_string_equal(recs[0].e.detail, "algorithm=RS256 version=1");
	assert_int_equal(recs[1].e.ok, 0);
	assert_string_equal(recs[2].e.detail, "algorithm=PS256 version=1");
	free(recs);
	assert_int_equal(cv_vault_audit_flush(&fx.v, NOW + 61, 0), 0);
	n = records(fx.store, &recs);
	assert_int_equal(n, 5); /* and the two counts: RS256's 3 repeats, the refusal's 4 */
	for (i = 3; i < 5; i++) {
		if (recs[i].e.ok) {
			assert_int_equal(recs[i].e.count, 3);
			assert_int_equal(recs[i].e.first_at, NOW + 1);
			assert_int_equal(recs[i].e.last_at, NOW + 3);
			assert_string_equal(recs[i].e.actor_name, "signer");
		} else {
			assert_int_equal(recs[i].e.count, 4);
		}
	}
	free(recs);
	assert_int_equal(cv_store_audit_verify(fx.store, &verdict), 0);
	assert_int_equal(verdict.first_bad, 0);
	close_all(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_and_counts),
		cmocka_unit_test(test_link_rotation),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_uses_counted),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
