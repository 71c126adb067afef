/* Test support: fresh SoftHSM2 tokens. softhsm2-util --init-token asks for PINs only on a
 * terminal (from a pipe it fails with "Could not get SO PIN"), so the token is initialised
 * through PKCS#11 itself: C_InitToken, C_Login as SO, C_InitPIN. */
/* nftw and its FTW_* flags are XSI. */
#define _XOPEN_SOURCE 700
#include <dlfcn.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "softhsm.h"

const char *ts_softhsm_module(void)
{
	const char *module = getenv("SOFTHSM2_MODULE");

	return module != NULL && module[0] != '\0' ? module : TS_SOFTHSM_MODULE;
}

int ts_softhsm_setup(const char *dir)
{
	char conf[4096], tokens[4096];
	FILE *f = NULL;
	int r = -1;

	if ((size_t)snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir) >= sizeof(conf) ||
	    (size_t)snprintf(tokens, sizeof(tokens), "%s/tokens", dir) >= sizeof(tokens)) {
		fprintf(stderr, "ts_softhsm_setup: path too long: %s\n", dir);
		goto out;
	}
	if (mkdir(tokens, 0700) != 0) {
		perror(tokens);
		goto out;
	}
	f = fopen(conf, "w");
	if (f == NULL) {
		perror(conf);
		goto out;
	}
	fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
		tokens);
	if (fclose(f) != 0) {
		f = NULL;
		perror(conf);
		goto out;
	}
	f = NULL;
	if (setenv("SOFTHSM2_CONF", conf, 1) != 0) {
		perror("setenv SOFTHSM2_CONF");
		goto out;
	}
	r = 0;
out:
	if (f != NULL)
		fclose(f);
	return r;
}

static int failed(const char *call, CK_RV rv)
{
	fprintf(stderr, "ts_softhsm_init_token: %s failed: 0x%lx\n", call, (unsigned long)rv);
	return -1;
}

static int free_slot(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID *ret_slot)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO info;
	CK_RV rv;

	rv = f->C_GetSlotList(CK_TRUE, slots, &n);
	if (rv != CKR_OK)
		return failed("C_GetSlotList", rv);
	for (i = 0; i < n; i++) {
		rv = f->C_GetTokenInfo(slots[i], &info);
		if (rv != CKR_OK)
			return failed("C_GetTokenInfo", rv);
		if (!(info.flags & CKF_TOKEN_INITIALIZED)) {
			*ret_slot = slots[i];
			return 0;
		}
	}
	fprintf(stderr, "ts_softhsm_init_token: no free slot\n");
	return -1;
}

int ts_softhsm_init_token(const char *label, const char *so_pin, const char *user_pin)
{
	CK_C_INITIALIZE_ARGS init_args = { 0 };
	CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
	CK_C_GetFunctionList get_function_list;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_UTF8CHAR padded[32];
	CK_SLOT_ID slot = 0;
	int r = -1, initialized = 0, logged_in = 0;
	void *dl;
	CK_RV rv;

	if (strlen(label) > sizeof(padded)) {
		fprintf(stderr, "ts_softhsm_init_token: label longer than 32 bytes\n");
		return -1;
	}
	dl = dlopen(ts_softhsm_module(), RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		fprintf(stderr, "ts_softhsm_init_token: %s\n", dlerror());
		return -1;
	}
	*(void **)&get_function_list = dlsym(dl, "C_GetFunctionList");
	if (get_function_list == NULL) {
		fprintf(stderr, "ts_softhsm_init_token: no C_GetFunctionList\n");
		goto out;
	}
	rv = get_function_list(&f);
	if (rv != CKR_OK) {
		r = failed("C_GetFunctionList", rv);
		goto out;
	}
	init_args.flags = CKF_OS_LOCKING_OK;
	rv = f->C_Initialize(&init_args);
	if (rv != CKR_OK) {
		/* CKR_CRYPTOKI_ALREADY_INITIALIZED: a cv_token is still open, and SoftHSM would
		 * not see the new SOFTHSM2_CONF anyway. */
		r = failed("C_Initialize", rv);
		goto out;
	}
	initialized = 1;
	if (free_slot(f, &slot) < 0)
		goto out;
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, label, strlen(label));
	rv = f->C_InitToken(slot, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin), padded);
	if (rv != CKR_OK) {
		r = failed("C_InitToken", rv);
		goto out;
	}
	rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &session);
	if (rv != CKR_OK) {
		session = CK_INVALID_HANDLE;
		r = failed("C_OpenSession", rv);
		goto out;
	}
	rv = f->C_Login(session, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin));
	if (rv != CKR_OK) {
		r = failed("C_Login(SO)", rv);
		goto out;
	}
	logged_in = 1;
	rv = f->C_InitPIN(session, (CK_UTF8CHAR_PTR)user_pin, strlen(user_pin));
	if (rv != CKR_OK) {
		r = failed("C_InitPIN", rv);
		goto out;
	}
	r = 0;
out:
	/* Cleanup failures cannot change the outcome: C_Finalize ends everything anyway. */
	if (logged_in)
		(void)f->C_Logout(session);
	if (session != CK_INVALID_HANDLE)
		(void)f->C_CloseSession(session);
	if (initialized)
		(void)f->C_Finalize(NULL);
	dlclose(dl);
	return r;
}

int ts_softhsm_new(const char *dir, const char *label, const char *so_pin,
		   const char *user_pin)
{
	if (ts_softhsm_setup(dir) < 0)
		return -1;
	return ts_softhsm_init_token(label, so_pin, user_pin);
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

int ts_softhsm_remove(const char *dir)
{
	return nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}
