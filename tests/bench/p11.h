/* Benchmarks: the token spoken to directly, without certvault, to measure the token's own
 * limits. Not part of certvault. */
#ifndef CERTVAULT_BENCH_P11_H
#define CERTVAULT_BENCH_P11_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

/* A loaded, initialized module and the slot of one token. */
struct bp11 {
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
};

/* Loads module, C_Initialize with CKF_OS_LOCKING_OK (as certvault does) and finds the
 * token labelled label. Returns 0, or -1 with the reason on stderr. */
int bp11_open(struct bp11 *p, const char *module, const char *label);
/* C_Finalize and unload. */
void bp11_close(struct bp11 *p);
/* Opens an R/W session; logs in as the user with the PIN read from pin_file when pin_file
 * is not NULL (login is per process: later sessions need none). Returns 0 or -1. */
int bp11_session(struct bp11 *p, const char *pin_file, CK_SESSION_HANDLE *ret_session);

/* The two object templates of one key, made exactly as src/token/keys.c makes them (same
 * attributes, same values, same order), so that the raw C_CreateObject rate is the rate of
 * the objects certvault creates. Keep the two in step. */
#define BP11_TEMPLATE_MAX 24
#define BP11_TEMPLATE_BUFS 12
struct bp11_template {
	CK_OBJECT_CLASS priv_class, pub_class;
	CK_KEY_TYPE type;
	CK_BBOOL yes, no;
	CK_ATTRIBUTE priv[BP11_TEMPLATE_MAX];
	CK_ULONG n_priv;
	CK_ATTRIBUTE pub[BP11_TEMPLATE_MAX];
	CK_ULONG n_pub;
	unsigned char *bufs[BP11_TEMPLATE_BUFS];
	size_t buf_lens[BP11_TEMPLATE_BUFS];
	unsigned n_bufs;
	uint8_t id[16];
	char label[72];
};

/* Fills t for key (RSA, or EC P-256/P-384/P-521) with CKA_ID id (16 bytes) and CKA_LABEL
 * label. Returns 0 or -1. */
int bp11_template_build(struct bp11_template *t, const EVP_PKEY *key, const char *label,
			const uint8_t *id);
void bp11_template_release(struct bp11_template *t);

/* The name of a CK_RV, for messages. */
const char *bp11_rv_name(CK_RV rv);

/* Reads the first line of path (the PIN) into buf. Returns its length or -1. */
int bp11_read_pin(const char *path, char *buf, size_t size);

/* Seconds on the monotonic clock. */
double bp11_now(void);

#endif
