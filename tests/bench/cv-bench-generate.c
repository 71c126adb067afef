/* cv-bench-generate: key pairs generated in the token, raw and through certvault's API, one
 * at a time, for scripts/bench's "generate through the API vs raw C_GenerateKeyPair" figure
 * (issue 13).
 *
 *   cv-bench-generate raw --label L --pin-file F --key rsa2048|p256 --count N [--prefix X]
 *   cv-bench-generate api --port P --token-file F --key rsa2048|p256 --count N [--prefix X]
 *   cv-bench-generate pair --label L --pin-file F --port P --token-file T --key K --count N
 *
 * raw: C_GenerateKeyPair N times on one thread and one session, with the templates
 *   src/token/generate.c uses (same attributes, same values; a label per key as certvault
 *   sets it), then C_GetAttributeValue of the public half as certvault reads it back. The
 *   pairs stay in the token, as certvault's do.
 * api: N POST /v1/certificates {"name", "generate": {"key", "subject", "dns_names"}} one
 *   after another on one keep-alive connection, each answered 201 (a pending certificate
 *   with its CSR signed in the token).
 * pair: both, one operation of each in turn (every other pair API first), so that a shared
 *   machine's load drifting from one second to the next weighs on both sides alike; the
 *   two tokens grow alike.
 * Prints one JSON line on stdout: the count, the seconds (for pair: each side's own), the
 * rate and the median and slowest single operation in ms (pair: "api" and "raw" objects). The module is $CERTVAULT_TOKEN_MODULE or SoftHSM2's;
 * SOFTHSM2_CONF comes from the environment. Exit 0, 1 on failure, 2 on bad arguments. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "http1.h"
#include "p11.h"

#define DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

struct opts {
	const char *label;
	const char *pin_file;
	const char *token_file;
	const char *key;
	const char *prefix;
	long port;
	long count;
};

static int bad_args(const char *what)
{
	fprintf(stderr, "cv-bench-generate: %s\n"
		"usage: cv-bench-generate raw --label L --pin-file F --key rsa2048|p256 --count N\n"
		"       cv-bench-generate api --port P --token-file F --key rsa2048|p256 --count N\n"
		"       cv-bench-generate pair (the options of both)\n"
		"       [--prefix NAME]\n", what);
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

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *side, const struct opts *o, long done, double seconds,
		   double *times)
{
	double median = 0, slowest = 0;

	if (done > 0) {
		qsort(times, (size_t)done, sizeof(*times), cmp_double);
		median = times[done / 2];
		slowest = times[done - 1];
	}
	printf("{\"op\":\"generate\",\"side\":\"%s\",\"key\":\"%s\",\"count\":%ld,"
	       "\"seconds\":%.4f,\"rate\":%.2f,\"median_ms\":%.3f,\"max_ms\":%.3f}\n",
	       side, o->key, done, seconds, seconds > 0 ? (double)done / seconds : 0.0,
	       median * 1e3, slowest * 1e3);
}

/* --- raw ----------------------------------------------------------------------------------- */

static const unsigned char oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
					  0x07 };
static const unsigned char rsa_f4[] = { 0x01, 0x00, 0x01 };

static void add(CK_ATTRIBUTE *attrs, CK_ULONG *n, CK_ATTRIBUTE_TYPE type, const void *value,
		size_t len)
{
	attrs[*n].type = type;
	attrs[*n].pValue = (void *)value;
	attrs[*n].ulValueLen = (CK_ULONG)len;
	(*n)++;
}

/* One key pair made as src/token/generate.c's generate_once makes it (keep the two in
 * step), and its public half read back. */
static CK_RV generate_one(struct bp11 *p11, CK_SESSION_HANDLE session, int rsa, const char *label)
{
	CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
	CK_KEY_TYPE type = rsa ? CKK_RSA : CKK_EC;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = 2048, n_priv = 0, n_pub = 0;
	CK_MECHANISM mechanism = { rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE priv_h, pub_h;
	CK_ATTRIBUTE priv[24], pub[24];
	unsigned char id[16], modulus[512], exponent[16], point[160];
	CK_ATTRIBUTE rsa_read[] = {
		{ CKA_MODULUS, modulus, sizeof(modulus) },
		{ CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent) },
	};
	CK_ATTRIBUTE ec_read[] = { { CKA_EC_POINT, point, sizeof(point) } };
	CK_RV rv;

	if (RAND_bytes(id, sizeof(id)) != 1)
		return CKR_FUNCTION_FAILED;
	add(priv, &n_priv, CKA_CLASS, &priv_class, sizeof(priv_class));
	add(priv, &n_priv, CKA_KEY_TYPE, &type, sizeof(type));
	add(priv, &n_priv, CKA_TOKEN, &yes, sizeof(yes));
	add(priv, &n_priv, CKA_PRIVATE, &yes, sizeof(yes));
	add(priv, &n_priv, CKA_SENSITIVE, &yes, sizeof(yes));
	add(priv, &n_priv, CKA_EXTRACTABLE, &no, sizeof(no));
	add(priv, &n_priv, CKA_SIGN, &yes, sizeof(yes));
	add(priv, &n_priv, CKA_DECRYPT, &no, sizeof(no));
	add(priv, &n_priv, CKA_SIGN_RECOVER, &no, sizeof(no));
	add(priv, &n_priv, CKA_UNWRAP, &no, sizeof(no));
	add(priv, &n_priv, CKA_DERIVE, &no, sizeof(no));
	add(priv, &n_priv, CKA_MODIFIABLE, &no, sizeof(no));
	add(priv, &n_priv, CKA_COPYABLE, &no, sizeof(no));
	add(priv, &n_priv, CKA_ID, id, sizeof(id));
	add(pub, &n_pub, CKA_CLASS, &pub_class, sizeof(pub_class));
	add(pub, &n_pub, CKA_KEY_TYPE, &type, sizeof(type));
	add(pub, &n_pub, CKA_TOKEN, &yes, sizeof(yes));
	add(pub, &n_pub, CKA_PRIVATE, &no, sizeof(no));
	add(pub, &n_pub, CKA_VERIFY, &yes, sizeof(yes));
	add(pub, &n_pub, CKA_ENCRYPT, &no, sizeof(no));
	add(pub, &n_pub, CKA_VERIFY_RECOVER, &no, sizeof(no));
	add(pub, &n_pub, CKA_WRAP, &no, sizeof(no));
	add(pub, &n_pub, CKA_DERIVE, &no, sizeof(no));
	add(pub, &n_pub, CKA_ID, id, sizeof(id));
	add(priv, &n_priv, CKA_LABEL, label, strlen(label));
	add(pub, &n_pub, CKA_LABEL, label, strlen(label));
	if (rsa) {
		add(pub, &n_pub, CKA_MODULUS_BITS, &bits, sizeof(bits));
		add(pub, &n_pub, CKA_PUBLIC_EXPONENT, rsa_f4, sizeof(rsa_f4));
	} else {
		add(pub, &n_pub, CKA_EC_PARAMS, oid_p256, sizeof(oid_p256));
	}
	rv = p11->f->C_GenerateKeyPair(session, &mechanism, pub, n_pub, priv, n_priv, &pub_h,
				       &priv_h);
	if (rv != CKR_OK)
		return rv;
	return p11->f->C_GetAttributeValue(session, pub_h, rsa ? rsa_read : ec_read, rsa ? 2 : 1);
}

static const char *module_path(void)
{
	const char *m = getenv("CERTVAULT_TOKEN_MODULE");

	return m != NULL && m[0] != '\0' ? m : DEFAULT_MODULE;
}

struct raw_side {
	struct bp11 p11;
	CK_SESSION_HANDLE session;
};

static int raw_open(struct raw_side *raw, const struct opts *o)
{
	if (bp11_open(&raw->p11, module_path(), o->label) < 0)
		return -1;
	if (bp11_session(&raw->p11, o->pin_file, &raw->session) < 0) {
		bp11_close(&raw->p11);
		return -1;
	}
	return 0;
}

static void raw_close(struct raw_side *raw)
{
	(void)raw->p11.f->C_CloseSession(raw->session);
	bp11_close(&raw->p11);
}

/* The i-th raw key pair; its seconds in *ret_t. Returns 0 or -1. */
static int raw_one(struct raw_side *raw, const struct opts *o, long i, double *ret_t)
{
	char label[96];
	double t;
	CK_RV rv;

	/* certvault's label: the name and the version. */
	snprintf(label, sizeof(label), "%s-%06ld.v1", o->prefix, i);
	t = bp11_now();
	rv = generate_one(&raw->p11, raw->session, strcmp(o->key, "rsa2048") == 0, label);
	*ret_t = bp11_now() - t;
	if (rv != CKR_OK) {
		fprintf(stderr, "C_GenerateKeyPair: %s\n", bp11_rv_name(rv));
		return -1;
	}
	return 0;
}

static int cmd_raw(const struct opts *o)
{
	struct raw_side raw;
	double *times, start;
	long i, done = 0;
	int r = 0;

	times = calloc((size_t)o->count, sizeof(*times));
	if (times == NULL || raw_open(&raw, o) < 0)
		return 1;
	start = bp11_now();
	for (i = 0; i < o->count && r == 0; i++) {
		r = raw_one(&raw, o, i, &times[done]);
		if (r == 0)
			done++;
	}
	report("raw", o, done, bp11_now() - start, times);
	free(times);
	raw_close(&raw);
	return r == 0 ? 0 : 1;
}

/* --- api ----------------------------------------------------------------------------------- */

struct api_side {
	char auth[160];
	int fd;
};

static int api_open(struct api_side *api, const struct opts *o)
{
	api->fd = -1;
	if (bench_http_auth_header(o->token_file, api->auth, sizeof(api->auth)) < 0) {
		fprintf(stderr, "cv-bench-generate: cannot read %s\n", o->token_file);
		return -1;
	}
	return 0;
}

static void api_close(struct api_side *api)
{
	if (api->fd >= 0)
		close(api->fd);
}

/* The i-th generate through the API, answered 201; its seconds in *ret_t. Returns 0 or
 * -1. */
static int api_one(struct api_side *api, const struct opts *o, long i, double *ret_t)
{
	char body[512], head[512], name[96];
	int status = 0, keep = 1, blen, hlen;
	double t;

	snprintf(name, sizeof(name), "%s-%06ld", o->prefix, i);
	blen = snprintf(body, sizeof(body),
			"{\"name\":\"%s\",\"generate\":{\"key\":\"%s\",\"subject\":"
			"\"CN=%s.bench.example\",\"dns_names\":[\"%s.bench.example\"]}}",
			name, o->key, name, name);
	hlen = snprintf(head, sizeof(head),
			"POST /v1/certificates HTTP/1.1\r\nHost: 127.0.0.1:%ld\r\n%s"
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			o->port, api->auth, blen);
	t = bp11_now();
	if (api->fd < 0)
		api->fd = bench_http_connect(o->port);
	if (api->fd < 0 || bench_http_write_all(api->fd, head, (size_t)hlen) < 0 ||
	    bench_http_write_all(api->fd, body, (size_t)blen) < 0 ||
	    bench_http_read_response(api->fd, "cv-bench-generate", 201, &status, &keep) < 0) {
		fprintf(stderr, "cv-bench-generate: the connection failed\n");
		return -1;
	}
	*ret_t = bp11_now() - t;
	if (!keep) {
		close(api->fd);
		api->fd = -1;
	}
	return status == 201 ? 0 : -1;
}

static int cmd_api(const struct opts *o)
{
	struct api_side api;
	double *times, start;
	long i, done = 0;
	int r = 0;

	times = calloc((size_t)o->count, sizeof(*times));
	if (times == NULL || api_open(&api, o) < 0)
		return 1;
	start = bp11_now();
	for (i = 0; i < o->count && r == 0; i++) {
		r = api_one(&api, o, i, &times[done]);
		if (r == 0)
			done++;
	}
	report("api", o, done, bp11_now() - start, times);
	api_close(&api);
	free(times);
	return r == 0 ? 0 : 1;
}

static void side_json(const char *side, long done, double *times)
{
	double sum = 0, median = 0, slowest = 0;
	long i;

	for (i = 0; i < done; i++)
		sum += times[i];
	if (done > 0) {
		qsort(times, (size_t)done, sizeof(*times), cmp_double);
		median = times[done / 2];
		slowest = times[done - 1];
	}
	printf("\"%s\":{\"count\":%ld,\"seconds\":%.4f,\"rate\":%.2f,\"median_ms\":%.3f,"
	       "\"max_ms\":%.3f}", side, done, sum, sum > 0 ? (double)done / sum : 0.0,
	       median * 1e3, slowest * 1e3);
}

static int cmd_pair(const struct opts *o)
{
	struct raw_side raw;
	struct api_side api;
	double *t_api, *t_raw;
	long i, done = 0;
	int r = 0;

	t_api = calloc((size_t)o->count, sizeof(*t_api));
	t_raw = calloc((size_t)o->count, sizeof(*t_raw));
	if (t_api == NULL || t_raw == NULL || api_open(&api, o) < 0)
		return 1;
	if (raw_open(&raw, o) < 0) {
		api_close(&api);
		return 1;
	}
	for (i = 0; i < o->count && r == 0; i++) {
		if (i % 2 == 0)
			r = api_one(&api, o, i, &t_api[i]) < 0 || raw_one(&raw, o, i, &t_raw[i]) < 0;
		else
			r = raw_one(&raw, o, i, &t_raw[i]) < 0 || api_one(&api, o, i, &t_api[i]) < 0;
		if (r == 0)
			done++;
	}
	printf("{\"op\":\"generate\",\"side\":\"pair\",\"key\":\"%s\",", o->key);
	side_json("api", done, t_api);
	printf(",");
	side_json("raw", done, t_raw);
	printf("}\n");
	raw_close(&raw);
	api_close(&api);
	free(t_api);
	free(t_raw);
	return r == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "pin-file", required_argument, NULL, 'p' },
		{ "token-file", required_argument, NULL, 'T' },
		{ "port", required_argument, NULL, 'P' },
		{ "key", required_argument, NULL, 'k' },
		{ "count", required_argument, NULL, 'n' },
		{ "prefix", required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { NULL, NULL, NULL, "p256", "gen", 0, 20 };
	const char *cmd;
	int opt;

	if (argc < 2)
		return bad_args("no command");
	cmd = argv[1];
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'l': o.label = optarg; break;
		case 'p': o.pin_file = optarg; break;
		case 'T': o.token_file = optarg; break;
		case 'k': o.key = optarg; break;
		case 'x':
			/* A name certvault takes: letters, digits, hyphens. */
			if (optarg[0] == '\0' || strlen(optarg) > 40 ||
			    strspn(optarg, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(optarg))
				return bad_args("--prefix: 1 to 40 lower-case letters, digits, hyphens");
			o.prefix = optarg;
			break;
		case 'P':
			if (parse_long(optarg, 1, 65535, &o.port) < 0)
				return bad_args("--port: 1 to 65535");
			break;
		case 'n':
			if (parse_long(optarg, 1, 100000, &o.count) < 0)
				return bad_args("--count: 1 to 100000");
			break;
		default:
			return bad_args("unknown option");
		}
	}
	if (optind != argc)
		return bad_args("unexpected argument");
	if (strcmp(o.key, "rsa2048") != 0 && strcmp(o.key, "p256") != 0)
		return bad_args("--key: rsa2048 or p256");
	if (strcmp(cmd, "raw") == 0) {
		if (o.label == NULL || o.pin_file == NULL)
			return bad_args("raw needs --label and --pin-file");
		return cmd_raw(&o);
	}
	if (strcmp(cmd, "api") == 0) {
		if (o.port == 0 || o.token_file == NULL)
			return bad_args("api needs --port and --token-file");
		return cmd_api(&o);
	}
	if (strcmp(cmd, "pair") == 0) {
		if (o.label == NULL || o.pin_file == NULL || o.port == 0 || o.token_file == NULL)
			return bad_args("pair needs --label, --pin-file, --port and --token-file");
		return cmd_pair(&o);
	}
	return bad_args("unknown command");
}
