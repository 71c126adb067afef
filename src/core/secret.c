/* secret: process-level protection of the PIN. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "certvault/secret.h"

int cv_secret_process_protect(struct cv_errmsg *err)
{
	const struct rlimit none = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &none) != 0)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot turn core dumps off "
				     "(setrlimit RLIMIT_CORE): %s", strerror(errno));
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "cannot make the process undumpable "
				     "(prctl PR_SET_DUMPABLE): %s", strerror(errno));
	return 0;
}

static size_t pages_for(size_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t p = page > 0 ? (size_t)page : 4096;

	return (len + p - 1) / p * p;
}

void *cv_secret_alloc(size_t len)
{
	size_t size;
	void *p;

	if (len == 0 || len > SIZE_MAX / 2)
		return NULL;
	size = pages_for(len);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Both are best effort: an unprivileged process may lock only RLIMIT_MEMLOCK bytes,
	 * and the process is undumpable anyway (cv_secret_process_protect). */
	(void)mlock(p, size);
	(void)madvise(p, size, MADV_DONTDUMP);
	return p;
}

void cv_secret_free(void *p, size_t len)
{
	size_t size;

	if (p == NULL)
		return;
	size = pages_for(len);
	OPENSSL_cleanse(p, size);
	(void)munlock(p, size);
	(void)munmap(p, size);
}

char *cv_secret_env_take(const char *name, size_t *ret_len)
{
	char *value = getenv(name), *copy;
	size_t len;

	if (value == NULL || value[0] == '\0')
		return NULL;
	len = strlen(value);
	copy = OPENSSL_malloc(len + 1);
	if (copy != NULL)
		memcpy(copy, value, len + 1);
	/* getenv points into the environment block itself (for a variable inherited at exec,
	 * the very bytes /proc/PID/environ reads): unsetenv alone would leave them there. */
	OPENSSL_cleanse(value, len);
	unsetenv(name);
	*ret_len = copy != NULL ? len : SIZE_MAX;
	return copy;
}
