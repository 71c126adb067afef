/* x509: what a password-based decryption will cost, read from its parameters before any key
 * is derived. An encrypted PKCS#8 key or a PKCS#12 file names its own iteration count or
 * scrypt parameters; left unchecked, one upload can ask for 2^31 PBKDF2 iterations (about
 * eleven minutes of CPU) or an scrypt parallelism with no memory bound to stop it.
 *
 * The cost is counted in rounds of the underlying hash or mix function, which take about
 * the same time each (0.5 to 1 microsecond on one core of a current x86 machine):
 * - PBKDF2 (PBES2): iterations times the blocks of derived key (an AES-256 key from
 *   HMAC-SHA1 takes two 20-byte blocks, each its own run of iterations);
 * - scrypt (PBES2, RFC 7914): N * r * p, the BlockMix calls of its ROMix runs;
 * - PKCS#12's own key derivation and PBES1: iterations times the blocks of key and IV. */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "certvault/x509.h"

/* scrypt's memory, as OpenSSL bounds it for a decryption (EVP_PBE_scrypt's default): 128 * r
 * * N bytes for V, plus 128 * r * p for B. Checked here, so the client reads why. */
#define SCRYPT_MAX_MEMORY (32UL * 1024 * 1024)

static uint64_t integer_u64(const ASN1_INTEGER *a)
{
	uint64_t v;

	if (a == NULL || ASN1_INTEGER_get_uint64(&v, a) != 1)
		return UINT64_MAX; /* negative or over 64 bits: nothing that may run */
	return v;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
	if (a != 0 && b > UINT64_MAX / a)
		return UINT64_MAX;
	return a * b;
}

static uint64_t blocks(uint64_t bytes, uint64_t block)
{
	if (block == 0)
		return 1;
	return bytes == 0 ? 1 : (bytes + block - 1) / block;
}

/* The output size of a digest named by NID, or 20 (SHA-1) when unknown: an unknown one is
 * refused by OpenSSL before it derives anything. */
static uint64_t digest_size(int md_nid)
{
	EVP_MD *md = EVP_MD_fetch(NULL, OBJ_nid2sn(md_nid), NULL);
	int n = md != NULL ? EVP_MD_get_size(md) : 0;

	EVP_MD_free(md);
	return n > 0 ? (uint64_t)n : 20;
}

/* The key length of a cipher named by its algorithm, or 32 when unknown (as above). */
static void cipher_lengths(int cipher_nid, uint64_t *ret_key, uint64_t *ret_iv)
{
	EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, OBJ_nid2sn(cipher_nid), NULL);
	int k = c != NULL ? EVP_CIPHER_get_key_length(c) : 0;
	int iv = c != NULL ? EVP_CIPHER_get_iv_length(c) : 0;

	EVP_CIPHER_free(c);
	*ret_key = k > 0 ? (uint64_t)k : 32;
	*ret_iv = iv > 0 ? (uint64_t)iv : 0;
}

static int too_costly(const char *what, const char *kdf, uint64_t cost, struct cv_errmsg *err)
{
	return cv_errmsg_set(err, CV_ERR_LIMIT,
			     "%s derives its key with %s at a cost of %llu rounds; certvault "
			     "takes at most %ld (as many PBKDF2-HMAC-SHA256 iterations): protect "
			     "it again with fewer (600000 is OWASP's advice)", what, kdf,
			     (unsigned long long)cost, CV_X509_MAX_KDF_COST);
}

static int pbkdf2_cost(const PBE2PARAM *pbe2, uint64_t *ret_cost)
{
	PBKDF2PARAM *kdf;
	uint64_t keylen, ivlen, hlen;
	int prf_nid = NID_hmacWithSHA1, md_nid = NID_sha1;

	kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pbe2->keyfunc->parameter);
	if (kdf == NULL)
		return -1;
	if (kdf->prf != NULL)
		prf_nid = OBJ_obj2nid(kdf->prf->algorithm);
	if (EVP_PBE_find(EVP_PBE_TYPE_PRF, prf_nid, NULL, &md_nid, NULL) != 1)
		md_nid = NID_sha1;
	hlen = digest_size(md_nid);
	cipher_lengths(pbe2->encryption != NULL ? OBJ_obj2nid(pbe2->encryption->algorithm) :
		       NID_undef, &keylen, &ivlen);
	if (kdf->keylength != NULL)
		keylen = integer_u64(kdf->keylength);
	*ret_cost = mul_sat(integer_u64(kdf->iter), blocks(keylen, hlen));
	PBKDF2PARAM_free(kdf);
	return 0;
}

static int scrypt_cost(const PBE2PARAM *pbe2, uint64_t *ret_cost, int *ret_memory_over)
{
	SCRYPT_PARAMS *sp;
	uint64_t n, r, p;

	sp = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(SCRYPT_PARAMS), pbe2->keyfunc->parameter);
	if (sp == NULL)
		return -1;
	n = integer_u64(sp->costParameter);
	r = integer_u64(sp->blockSize);
	p = integer_u64(sp->parallelizationParameter);
	SCRYPT_PARAMS_free(sp);
	*ret_cost = mul_sat(mul_sat(n, r), p);
	*ret_memory_over = mul_sat(mul_sat(128, r), n) > SCRYPT_MAX_MEMORY ||
			   mul_sat(mul_sat(128, r), p) > SCRYPT_MAX_MEMORY;
	return 0;
}

int cv_x509_kdf_cost(const X509_ALGOR *alg, const char *what, long *ret_cost,
		     struct cv_errmsg *err)
{
	PBE2PARAM *pbe2 = NULL;
	PBEPARAM *pbe = NULL;
	const char *kdf_name = "PBKDF2";
	uint64_t cost = 0, keylen, ivlen;
	int cipher_nid, md_nid, memory_over = 0, r;

	*ret_cost = 0;
	if (alg == NULL || alg->parameter == NULL) {
		/* Nothing to derive from: OpenSSL refuses the algorithm when asked to decrypt. */
		r = 0;
		goto out;
	}
	if (OBJ_obj2nid(alg->algorithm) == NID_pbes2) {
		pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter);
		if (pbe2 == NULL || pbe2->keyfunc == NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "%s has PBES2 parameters that cannot be read", what);
			goto out;
		}
		switch (OBJ_obj2nid(pbe2->keyfunc->algorithm)) {
		case NID_id_pbkdf2:
			r = pbkdf2_cost(pbe2, &cost);
			break;
		case NID_id_scrypt:
			kdf_name = "scrypt";
			r = scrypt_cost(pbe2, &cost, &memory_over);
			break;
		default:
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "%s derives its key with neither PBKDF2 nor scrypt",
					  what);
			goto out;
		}
		if (r < 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "%s has %s parameters that cannot be read", what,
					  kdf_name);
			goto out;
		}
		if (memory_over) {
			r = cv_errmsg_set(err, CV_ERR_LIMIT,
					  "%s asks scrypt for more than %lu MiB of memory: encrypt "
					  "it again with a smaller N or r", what,
					  SCRYPT_MAX_MEMORY / (1024 * 1024));
			goto out;
		}
	} else {
		/* PKCS#12's own derivation (and PBES1): one run of iterations for the key's
		 * blocks and one for the IV's. */
		pbe = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBEPARAM), alg->parameter);
		if (pbe == NULL) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING,
					  "%s has encryption parameters that cannot be read", what);
			goto out;
		}
		kdf_name = "PKCS#12 key derivation";
		if (EVP_PBE_find(EVP_PBE_TYPE_OUTER, OBJ_obj2nid(alg->algorithm), &cipher_nid,
				 &md_nid, NULL) != 1) {
			cipher_nid = NID_undef;
			md_nid = NID_sha1;
		}
		cipher_lengths(cipher_nid, &keylen, &ivlen);
		cost = mul_sat(integer_u64(pbe->iter),
			       blocks(keylen, digest_size(md_nid)) +
			       (ivlen > 0 ? blocks(ivlen, digest_size(md_nid)) : 0));
	}
	if (cost > (uint64_t)CV_X509_MAX_KDF_COST) {
		r = too_costly(what, kdf_name, cost, err);
		goto out;
	}
	*ret_cost = (long)cost;
	r = 0;
out:
	PBEPARAM_free(pbe);
	PBE2PARAM_free(pbe2);
	return r;
}
