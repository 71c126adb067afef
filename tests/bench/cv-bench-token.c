/* cv-bench-token: the token's own limits, measured with PKCS#11 directly (no certvault), for
 * scripts/bench to set certvault's figures against.
 *
 *   cv-bench-token create --label L --pin-file F --key rsa2048|p256 --count N [--threads T]
 *                         [--serialize]
 *   cv-bench-token sign   --label L --pin-file F --key rsa2048|p256 [--threads T] [--seconds S]
 *   cv-bench-token startup   --label L --pin-file F
 *   cv-bench-token footprint --label L --pin-file F
 *
 * create: C_CreateObject of N keys (a private and a public object each, with the templates
 *   certvault uses) on T threads, one session each; keys made beforehand, not timed. With
 *   --serialize, one process-wide mutex is held around each key's two creates, as certvault
 *   holds its own when the module needs creates serialised (token.serialize_creates).
 * sign: C_SignInit + C_Sign (CKM_SHA256_RSA_PKCS, CKM_ECDSA on a SHA-256 digest) on T threads
 *   for S seconds.
 * startup: C_Initialize, C_OpenSession, C_Login, one C_FindObjects listing of every object;
 *   prints "ready" as soon as the listing is done (the driver times the process to that line,
 *   as it times certvaultd to "listening"), then the time of reading CKA_CLASS and CKA_ID of
 *   every object (what certvault does on top), for context.
 * footprint: the same, then the process's VmRSS and VmHWM.
 * Each prints one JSON line on stdout. The module is $CERTVAULT_TOKEN_MODULE or SoftHSM2's;
 * SOFTHSM2_CONF comes from the environment. Exit 0, 1 on failure, 2 on bad arguments. */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "p11.h"
#include "testcert.h"

#define DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

struct opts {
	const char *label;
	const char *pin_file;
	const char *key;
	const char *prefix;
	long count;
	long threads;
	long pool;
	double seconds;
	int serialize;
};

static struct bp11 p11;

static int bad_args(const char *what)
{
	fprintf(stderr, "cv-bench-token: %s\n"
		"usage: cv-bench-token create|sign|startup|footprint --label L --pin-file F\n"
		"       [--key rsa2048|p256] [--count N] [--threads T] [--pool K] [--seconds S]\n"
		"       [--prefix LABEL]\n", what);
	return 2;
}

static int parse_long(const char *s, long min, long max, long *ret)
{
	char *end;
	long v;

	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || v < min || v > max)
		return -1;
	*ret = v;
	return 0;
}

static const char *module_path(void)
{
	const char *m = getenv("CERTVAULT_TOKEN_MODULE");

	return m != NULL && m[0] != '\0' ? m : DEFAULT_MODULE;
}

/* Everything threads share: a start line, and for create the templates to make. */
struct shared {
	pthread_barrier_t start;
	struct bp11_template *templates;
	long count;
	long threads;
	int serialize;             /* create: one key's two creates at a time */
	/* sign */
	CK_OBJECT_HANDLE key;
	CK_MECHANISM_TYPE mech;
	double deadline;
	atomic_int failed;
};

struct worker {
	struct shared *sh;
	long index;
	long done;
	pthread_t thread;
};

static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

static void *create_worker(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	CK_SESSION_HANDLE session;
	CK_OBJECT_HANDLE made;
	long i;
	CK_RV rv;

	if (bp11_session(&p11, NULL, &session) < 0)
		sh->failed = 1;
	pthread_barrier_wait(&sh->start);
	if (sh->failed)
		return NULL;
	for (i = w->index; i < sh->count; i += sh->threads) {
		struct bp11_template *t = &sh->templates[i];

		if (sh->serialize)
			pthread_mutex_lock(&create_lock);
		rv = p11.f->C_CreateObject(session, t->priv, t->n_priv, &made);
		if (rv == CKR_OK)
			rv = p11.f->C_CreateObject(session, t->pub, t->n_pub, &made);
		if (sh->serialize)
			pthread_mutex_unlock(&create_lock);
		if (rv != CKR_OK) {
			fprintf(stderr, "C_CreateObject: %s\n", bp11_rv_name(rv));
			sh->failed = 1;
			break;
		}
		w->done++;
	}
	(void)p11.f->C_CloseSession(session);
	return NULL;
}

static void *sign_worker(void *arg)
{
	static const unsigned char digest[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	struct worker *w = arg;
	struct shared *sh = w->sh;
	CK_MECHANISM mech = { sh->mech, NULL, 0 };
	CK_SESSION_HANDLE session;
	unsigned char sig[1024];
	CK_ULONG sig_len;
	CK_RV rv;

	if (bp11_session(&p11, NULL, &session) < 0)
		sh->failed = 1;
	pthread_barrier_wait(&sh->start);
	if (sh->failed)
		return NULL;
	while (!sh->failed) {
		int k;

		/* Look at the clock every few signatures only. */
		for (k = 0; k < 8; k++) {
			sig_len = sizeof(sig);
			rv = p11.f->C_SignInit(session, &mech, sh->key);
			if (rv == CKR_OK)
				rv = p11.f->C_Sign(session, (CK_BYTE_PTR)digest, sizeof(digest),
						   sig, &sig_len);
			if (rv != CKR_OK) {
				fprintf(stderr, "C_Sign: %s\n", bp11_rv_name(rv));
				sh->failed = 1;
				break;
			}
			w->done++;
		}
		if (bp11_now() >= sh->deadline)
			break;
	}
	(void)p11.f->C_CloseSession(session);
	return NULL;
}

/* Runs fn on o->threads threads after the barrier; returns the operations done and the
 * seconds from the start line to the last thread's end. */
static int run_threads(struct shared *sh, void *(*fn)(void *), long *ret_done,
		       double *ret_seconds)
{
	struct worker *w;
	double start;
	long i, done = 0;

	w = calloc((size_t)sh->threads, sizeof(*w));
	if (w == NULL)
		return -1;
	if (pthread_barrier_init(&sh->start, NULL, (unsigned)sh->threads + 1) != 0) {
		free(w);
		return -1;
	}
	for (i = 0; i < sh->threads; i++) {
		w[i].sh = sh;
		w[i].index = i;
		if (pthread_create(&w[i].thread, NULL, fn, &w[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			exit(1);
		}
	}
	pthread_barrier_wait(&sh->start);
	start = bp11_now();
	for (i = 0; i < sh->threads; i++) {
		pthread_join(w[i].thread, NULL);
		done += w[i].done;
	}
	*ret_seconds = bp11_now() - start;
	*ret_done = done;
	pthread_barrier_destroy(&sh->start);
	free(w);
	return sh->failed ? -1 : 0;
}

static EVP_PKEY **keys_new(const char *type, long n)
{
	EVP_PKEY **keys = calloc((size_t)n, sizeof(*keys));
	long i;

	if (keys == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		keys[i] = tc_key_new(type);
		if (keys[i] == NULL) {
			fprintf(stderr, "cannot make a %s key\n", type);
			exit(1);
		}
	}
	return keys;
}

static int cmd_create(const struct opts *o)
{
	struct shared sh;
	EVP_PKEY **keys;
	CK_SESSION_HANDLE login;
	long i, done = 0, pool = o->pool < o->count ? o->pool : o->count;
	double seconds = 0;
	uint8_t id[16];
	char label[72];
	int r;

	memset(&sh, 0, sizeof(sh));
	keys = keys_new(o->key, pool);
	sh.templates = calloc((size_t)o->count, sizeof(*sh.templates));
	if (keys == NULL || sh.templates == NULL)
		return 1;
	for (i = 0; i < o->count; i++) {
		if (RAND_bytes(id, sizeof(id)) != 1)
			return 1;
		snprintf(label, sizeof(label), "%s-%06ld", o->prefix, i);
		if (bp11_template_build(&sh.templates[i], keys[i % pool], label, id) < 0) {
			fprintf(stderr, "cannot build the template of a %s key\n", o->key);
			return 1;
		}
	}
	if (bp11_open(&p11, module_path(), o->label) < 0 ||
	    bp11_session(&p11, o->pin_file, &login) < 0)
		return 1;
	sh.count = o->count;
	sh.threads = o->threads;
	sh.serialize = o->serialize;
	r = run_threads(&sh, create_worker, &done, &seconds);
	printf("{\"op\":\"create\",\"key\":\"%s\",\"threads\":%ld,\"count\":%ld,"
	       "\"seconds\":%.4f,\"rate\":%.2f}\n",
	       o->key, o->threads, done, seconds, seconds > 0 ? (double)done / seconds : 0.0);
	for (i = 0; i < o->count; i++)
		bp11_template_release(&sh.templates[i]);
	free(sh.templates);
	for (i = 0; i < pool; i++)
		EVP_PKEY_free(keys[i]);
	free(keys);
	(void)p11.f->C_CloseSession(login);
	bp11_close(&p11);
	return r < 0 ? 1 : 0;
}

static int cmd_sign(const struct opts *o)
{
	struct bp11_template t;
	struct shared sh;
	CK_SESSION_HANDLE login;
	EVP_PKEY *key;
	uint8_t id[16];
	long done = 0;
	double seconds = 0;
	CK_ULONG i;
	CK_RV rv;
	int r;

	memset(&sh, 0, sizeof(sh));
	key = tc_key_new(o->key);
	if (key == NULL || RAND_bytes(id, sizeof(id)) != 1 ||
	    bp11_template_build(&t, key, "bench-sign", id) < 0)
		return 1;
	/* A session object: the same signing work, and nothing left in the token. */
	for (i = 0; i < t.n_priv; i++) {
		if (t.priv[i].type == CKA_TOKEN)
			t.priv[i].pValue = &t.no;
	}
	if (bp11_open(&p11, module_path(), o->label) < 0 ||
	    bp11_session(&p11, o->pin_file, &login) < 0)
		return 1;
	rv = p11.f->C_CreateObject(login, t.priv, t.n_priv, &sh.key);
	if (rv != CKR_OK) {
		fprintf(stderr, "C_CreateObject: %s\n", bp11_rv_name(rv));
		return 1;
	}
	sh.mech = EVP_PKEY_is_a(key, "RSA") ? CKM_SHA256_RSA_PKCS : CKM_ECDSA;
	sh.threads = o->threads;
	sh.deadline = bp11_now() + o->seconds;
	r = run_threads(&sh, sign_worker, &done, &seconds);
	printf("{\"op\":\"sign\",\"key\":\"%s\",\"threads\":%ld,\"count\":%ld,"
	       "\"seconds\":%.4f,\"rate\":%.2f}\n",
	       o->key, o->threads, done, seconds, seconds > 0 ? (double)done / seconds : 0.0);
	bp11_template_release(&t);
	EVP_PKEY_free(key);
	(void)p11.f->C_CloseSession(login);
	bp11_close(&p11);
	return r < 0 ? 1 : 0;
}

/* VmRSS and VmHWM of this process, in KiB. */
static void memory_kib(long *ret_rss, long *ret_hwm)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	*ret_rss = *ret_hwm = -1;
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			*ret_rss = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "VmHWM:", 6) == 0)
			*ret_hwm = strtol(line + 6, NULL, 10);
	}
	fclose(f);
}

/* Logs in and lists every object, as a process starting on the token must. */
static int cmd_startup(const struct opts *o, int footprint)
{
	CK_OBJECT_HANDLE *handles = NULL, *grown;
	CK_ULONG n = 0, cap = 0, got, i;
	CK_SESSION_HANDLE session;
	double t0, t_init, t_login, t_list, t_attrs;
	long rss, hwm, keys = 0;
	CK_RV rv;

	t0 = bp11_now();
	if (bp11_open(&p11, module_path(), o->label) < 0)
		return 1;
	t_init = bp11_now();
	if (bp11_session(&p11, o->pin_file, &session) < 0)
		return 1;
	t_login = bp11_now();
	rv = p11.f->C_FindObjectsInit(session, NULL, 0);
	while (rv == CKR_OK) {
		if (n == cap) {
			grown = realloc(handles, (cap + 1024) * sizeof(*grown));
			if (grown == NULL)
				return 1;
			handles = grown;
			cap += 1024;
		}
		rv = p11.f->C_FindObjects(session, handles + n, cap - n, &got);
		if (rv != CKR_OK || got == 0)
			break;
		n += got;
	}
	if (rv == CKR_OK)
		rv = p11.f->C_FindObjectsFinal(session);
	if (rv != CKR_OK) {
		fprintf(stderr, "C_FindObjects: %s\n", bp11_rv_name(rv));
		return 1;
	}
	t_list = bp11_now();
	if (!footprint) {
		printf("ready\n");
		fflush(stdout);
	}
	for (i = 0; i < n; i++) {
		CK_OBJECT_CLASS cls;
		uint8_t id[64];
		CK_ATTRIBUTE tmpl[] = {
			{ CKA_CLASS, &cls, sizeof(cls) },
			{ CKA_ID, id, sizeof(id) },
		};

		rv = p11.f->C_GetAttributeValue(session, handles[i], tmpl, 2);
		if (rv == CKR_OK && cls == CKO_PRIVATE_KEY)
			keys++;
	}
	t_attrs = bp11_now();
	memory_kib(&rss, &hwm);
	printf("{\"op\":\"%s\",\"objects\":%lu,\"private_keys\":%ld,\"init_ms\":%.2f,"
	       "\"login_ms\":%.2f,\"list_ms\":%.2f,\"attrs_ms\":%.2f,\"vmrss_kib\":%ld,"
	       "\"vmhwm_kib\":%ld}\n",
	       footprint ? "footprint" : "startup", (unsigned long)n, keys, (t_init - t0) * 1e3,
	       (t_login - t_init) * 1e3, (t_list - t_login) * 1e3, (t_attrs - t_list) * 1e3, rss,
	       hwm);
	fflush(stdout);
	free(handles);
	(void)p11.f->C_CloseSession(session);
	bp11_close(&p11);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "pin-file", required_argument, NULL, 'p' },
		{ "key", required_argument, NULL, 'k' },
		{ "count", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "pool", required_argument, NULL, 'P' },
		{ "seconds", required_argument, NULL, 's' },
		{ "prefix", required_argument, NULL, 'x' },
		{ "serialize", no_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { NULL, NULL, "p256", "raw", 100, 1, 16, 2.0, 0 };
	const char *cmd;
	long v;
	int opt;

	if (argc < 2)
		return bad_args("no command");
	cmd = argv[1];
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'l': o.label = optarg; break;
		case 'p': o.pin_file = optarg; break;
		case 'k': o.key = optarg; break;
		case 'x': o.prefix = optarg; break;
		case 'S': o.serialize = 1; break;
		case 'n':
			if (parse_long(optarg, 1, 10000000, &o.count) < 0)
				return bad_args("--count: 1 to 10000000");
			break;
		case 't':
			if (parse_long(optarg, 1, 256, &o.threads) < 0)
				return bad_args("--threads: 1 to 256");
			break;
		case 'P':
			if (parse_long(optarg, 1, 100000, &o.pool) < 0)
				return bad_args("--pool: 1 to 100000");
			break;
		case 's':
			if (parse_long(optarg, 1, 3600, &v) < 0)
				return bad_args("--seconds: 1 to 3600");
			o.seconds = (double)v;
			break;
		default:
			return bad_args("unknown option");
		}
	}
	if (optind != argc)
		return bad_args("unexpected argument");
	if (o.label == NULL || o.pin_file == NULL)
		return bad_args("--label and --pin-file are required");
	if (strcmp(o.key, "rsa2048") != 0 && strcmp(o.key, "p256") != 0)
		return bad_args("--key: rsa2048 or p256");
	if (strcmp(cmd, "create") == 0)
		return cmd_create(&o);
	if (strcmp(cmd, "sign") == 0)
		return cmd_sign(&o);
	if (strcmp(cmd, "startup") == 0)
		return cmd_startup(&o, 0);
	if (strcmp(cmd, "footprint") == 0)
		return cmd_startup(&o, 1);
	return bad_args("unknown command");
}
