/* cv-bench-client: imports certificates with their keys into a running certvaultd over HTTP
 * on several keep-alive connections at once, and says how fast that went.
 *
 *   cv-bench-client --port P --key rsa2048|p256 --count N [--threads T] [--pool K]
 *                   [--prefix NAME] [--first I] [--progress] [--token-file FILE]
 *
 * --token-file names a file holding the API token to send (an admin's or operator's).
 *
 * Certificates are named PREFIX-000000 onwards (from --first), each for its own
 * PREFIX-NNNNNN.bench.example, valid for ten years. K keys are made (default: one per
 * certificate) and reused in turn: RSA keys take long to make, and the token does not care
 * whether two objects hold the same numbers. Everything is made before the clock starts.
 * Prints one JSON line on stdout; exit 0 when every import answered 201, 1 otherwise, 2 on
 * bad arguments. Plain sockets, HTTP/1.1, no dependency beyond OpenSSL and jansson. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "http1.h"
#include "testcert.h"

struct opts {
	const char *key;
	const char *prefix;
	long port;
	long count;
	long threads;
	long pool;
	long first;
	int progress;
	char auth[128];            /* "Authorization: Bearer ...\r\n", or "" */
};

struct job {
	const struct opts *o;
	char **bodies;
	atomic_long next;
	atomic_long done;
	atomic_int failed;
	pthread_barrier_t start;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

static void *worker(void *arg)
{
	struct job *job = arg;
	const struct opts *o = job->o;
	char head[384];
	int fd, status, keep, len;
	long i;

	fd = bench_http_connect(o->port);
	if (fd < 0) {
		perror("cv-bench-client: connect");
		atomic_store(&job->failed, 1);
	}
	pthread_barrier_wait(&job->start);
	if (fd < 0)
		return NULL;
	while (!atomic_load(&job->failed) && (i = atomic_fetch_add(&job->next, 1)) < o->count) {
		const char *body = job->bodies[i];
		size_t body_len = strlen(body);

		len = snprintf(head, sizeof(head),
			       "POST /v1/certificates HTTP/1.1\r\nHost: 127.0.0.1:%ld\r\n%s"
			       "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			       o->port, o->auth, body_len);
		if (fd < 0)
			fd = bench_http_connect(o->port);
		if (fd < 0 || bench_http_write_all(fd, head, (size_t)len) < 0 ||
		    bench_http_write_all(fd, body, body_len) < 0 ||
		    bench_http_read_response(fd, "cv-bench-client", 201, &status, &keep) < 0) {
			fprintf(stderr, "cv-bench-client: the connection failed\n");
			atomic_store(&job->failed, 1);
			break;
		}
		if (status != 201) {
			atomic_store(&job->failed, 1);
			break;
		}
		if (!keep) {
			close(fd);
			fd = -1;
		}
		if (atomic_fetch_add(&job->done, 1) % 1000 == 999 && o->progress)
			fprintf(stderr, "cv-bench-client: %ld of %ld imported\n",
				atomic_load(&job->done), o->count);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* The JSON import bodies, made before the clock starts. */
static char **bodies_new(const struct opts *o)
{
	long pool = o->pool > 0 && o->pool < o->count ? o->pool : o->count;
	char **bodies = calloc((size_t)o->count, sizeof(*bodies));
	char **key_pems = calloc((size_t)pool, sizeof(*key_pems));
	EVP_PKEY **keys = calloc((size_t)pool, sizeof(*keys));
	time_t now = time(NULL);
	char name[96], san[160];
	long i;

	if (bodies == NULL || key_pems == NULL || keys == NULL)
		return NULL;
	for (i = 0; i < pool; i++) {
		keys[i] = tc_key_new(o->key);
		key_pems[i] = keys[i] != NULL ? tc_key_pem(keys[i], "pkcs8", NULL) : NULL;
		if (key_pems[i] == NULL)
			return NULL;
	}
	for (i = 0; i < o->count; i++) {
		struct tc_cert_spec spec = { 0 };
		char *cert_pem, *text;
		json_t *body;
		X509 *cert;

		snprintf(name, sizeof(name), "%s-%06ld", o->prefix, o->first + i);
		snprintf(san, sizeof(san), "%s.bench.example", name);
		spec.cn = san;
		spec.sans = san;
		spec.not_before = now - 3600;
		spec.not_after = now + 10L * 365 * 86400;
		cert = tc_cert_new(keys[i % pool], &spec);
		cert_pem = cert != NULL ? tc_cert_pem(cert) : NULL;
		X509_free(cert);
		if (cert_pem == NULL)
			return NULL;
		body = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "description",
				 "benchmark certificate", "certificate", cert_pem, "private_key",
				 key_pems[i % pool]);
		free(cert_pem);
		text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
		json_decref(body);
		if (text == NULL)
			return NULL;
		bodies[i] = text;
	}
	for (i = 0; i < pool; i++) {
		free(key_pems[i]);
		EVP_PKEY_free(keys[i]);
	}
	free(key_pems);
	free(keys);
	return bodies;
}

static int bad_args(const char *what)
{
	fprintf(stderr, "cv-bench-client: %s\n"
		"usage: cv-bench-client --port P --key rsa2048|p256 --count N [--threads T]\n"
		"       [--pool K] [--prefix NAME] [--first I] [--progress] [--token-file FILE]\n",
		what);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "key", required_argument, NULL, 'k' },
		{ "count", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "pool", required_argument, NULL, 'P' },
		{ "prefix", required_argument, NULL, 'x' },
		{ "first", required_argument, NULL, 'f' },
		{ "progress", no_argument, NULL, 'g' },
		{ "token-file", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { "p256", "bench", 0, 0, 2, 0, 0, 0, "" };
	struct job job;
	pthread_t *threads;
	double start, seconds;
	long i;
	int opt;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (parse_long(optarg, 1, 65535, &o.port) < 0)
				return bad_args("--port: 1 to 65535");
			break;
		case 'k': o.key = optarg; break;
		case 'x': o.prefix = optarg; break;
		case 'g': o.progress = 1; break;
		case 'T':
			if (bench_http_auth_header(optarg, o.auth, sizeof(o.auth)) < 0)
				return bad_args("--token-file: a file holding one API token");
			break;
		case 'n':
			if (parse_long(optarg, 1, 10000000, &o.count) < 0)
				return bad_args("--count: 1 to 10000000");
			break;
		case 't':
			if (parse_long(optarg, 1, 256, &o.threads) < 0)
				return bad_args("--threads: 1 to 256");
			break;
		case 'P':
			if (parse_long(optarg, 1, 10000000, &o.pool) < 0)
				return bad_args("--pool: 1 to 10000000");
			break;
		case 'f':
			if (parse_long(optarg, 0, 100000000, &o.first) < 0)
				return bad_args("--first: 0 to 100000000");
			break;
		default:
			return bad_args("unknown option");
		}
	}
	if (optind != argc || o.port == 0 || o.count == 0)
		return bad_args("--port and --count are required");
	if (strcmp(o.key, "rsa2048") != 0 && strcmp(o.key, "p256") != 0)
		return bad_args("--key: rsa2048 or p256");
	if (strlen(o.prefix) > 40)
		return bad_args("--prefix: at most 40 characters");

	memset(&job, 0, sizeof(job));
	job.o = &o;
	job.bodies = bodies_new(&o);
	threads = calloc((size_t)o.threads, sizeof(*threads));
	if (job.bodies == NULL || threads == NULL) {
		fprintf(stderr, "cv-bench-client: cannot make the certificates\n");
		return 1;
	}
	if (pthread_barrier_init(&job.start, NULL, (unsigned)o.threads + 1) != 0)
		return 1;
	for (i = 0; i < o.threads; i++) {
		if (pthread_create(&threads[i], NULL, worker, &job) != 0) {
			fprintf(stderr, "cv-bench-client: pthread_create failed\n");
			return 1;
		}
	}
	pthread_barrier_wait(&job.start);
	start = now_s();
	for (i = 0; i < o.threads; i++)
		pthread_join(threads[i], NULL);
	seconds = now_s() - start;
	printf("{\"op\":\"import\",\"key\":\"%s\",\"threads\":%ld,\"count\":%ld,"
	       "\"seconds\":%.4f,\"rate\":%.2f}\n",
	       o.key, o.threads, atomic_load(&job.done), seconds,
	       seconds > 0 ? (double)atomic_load(&job.done) / seconds : 0.0);
	for (i = 0; i < o.count; i++)
		free(job.bodies[i]);
	free(job.bodies);
	free(threads);
	pthread_barrier_destroy(&job.start);
	return atomic_load(&job.failed) ? 1 : 0;
}
