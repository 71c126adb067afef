/* jwk: the public JWK of a key — its family, the algorithms and uses it may be published for,
 * and its public members. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>

#include "certvault/jwk.h"
#include "internal.h"

/* The key families a JWK is made for; each a bit, so that an algorithm lists those it fits. */
enum family {
	F_RSA = 1 << 0,
	F_P256 = 1 << 1,
	F_P384 = 1 << 2,
	F_P521 = 1 << 3,
	F_ED25519 = 1 << 4,
};
#define F_EC (F_P256 | F_P384 | F_P521)

/* RFC 7518 sections 3.1 and 4.1, RFC 8037 section 3.1. The first entry that fits a family and
 * a use is its default. RSA1_5 is left out: RFC 8725 section 3.2 steers away from it. */
static const struct alg_rule {
	const char *alg;
	const char *use;
	unsigned families;
} alg_rules[] = {
	{ "RS256", "sig", F_RSA },
	{ "RS384", "sig", F_RSA },
	{ "RS512", "sig", F_RSA },
	{ "PS256", "sig", F_RSA },
	{ "PS384", "sig", F_RSA },
	{ "PS512", "sig", F_RSA },
	{ "ES256", "sig", F_P256 },
	{ "ES384", "sig", F_P384 },
	{ "ES512", "sig", F_P521 },
	{ "EdDSA", "sig", F_ED25519 },
	{ "RSA-OAEP-256", "enc", F_RSA },
	{ "RSA-OAEP", "enc", F_RSA },
	{ "ECDH-ES", "enc", F_EC },
	{ "ECDH-ES+A128KW", "enc", F_EC },
	{ "ECDH-ES+A192KW", "enc", F_EC },
	{ "ECDH-ES+A256KW", "enc", F_EC },
};

#define N_RULES (sizeof(alg_rules) / sizeof(alg_rules[0]))

/* The curves by OpenSSL NID, with their JWK name and coordinate length (RFC 7518 6.2.1.2). */
static const struct curve {
	int nid;
	enum family family;
	const char *crv;
	size_t coord_len;
} curves[] = {
	{ NID_X9_62_prime256v1, F_P256, "P-256", 32 },
	{ NID_secp384r1, F_P384, "P-384", 48 },
	{ NID_secp521r1, F_P521, "P-521", 66 },
};

#define ED25519_LEN 32
/* RFC 7518 sections 3.3 and 4.2: "A key of size 2048 bits or larger MUST be used". */
#define RSA_MIN_BITS 2048

static const char *family_name(enum family f)
{
	switch (f) {
	case F_RSA:
		return "RSA";
	case F_P256:
		return "EC P-256";
	case F_P384:
		return "EC P-384";
	case F_P521:
		return "EC P-521";
	case F_ED25519:
		return "Ed25519";
	}
	return "?";
}

/* What kind of key pkey is; for EC, *ret_curve is its entry. Refuses what no JWK is made of. */
static int key_family(const EVP_PKEY *pkey, enum family *ret_family,
		      const struct curve **ret_curve, struct cv_errmsg *err)
{
	char group[64];
	size_t i;
	int nid;

	*ret_curve = NULL;
	if (EVP_PKEY_is_a(pkey, "RSA")) {
		if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS)
			return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
					     "an RSA key of %d bits is too small for a JWK "
					     "(RFC 7518 needs %d bits or more)",
					     EVP_PKEY_get_bits(pkey), RSA_MIN_BITS);
		*ret_family = F_RSA;
		return 0;
	}
	if (EVP_PKEY_is_a(pkey, "ED25519")) {
		*ret_family = F_ED25519;
		return 0;
	}
	if (EVP_PKEY_is_a(pkey, "EC")) {
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
						   sizeof(group), NULL) != 1) {
			ERR_clear_error();
			return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
					     "an EC key without a named curve has no JWK form");
		}
		nid = OBJ_sn2nid(group);
		for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
			if (curves[i].nid == nid) {
				*ret_family = curves[i].family;
				*ret_curve = &curves[i];
				return 0;
			}
		}
		return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
				     "EC curve %.40s has no JWK algorithm (P-256, P-384 and "
				     "P-521 do)", group);
	}
	return cv_errmsg_set(err, CV_ERR_UNSUPPORTED_KEY,
			     "%.40s keys have no JWK form here (RSA, EC P-256/P-384/P-521 and "
			     "Ed25519 do)",
			     EVP_PKEY_get0_type_name(pkey) != NULL ? EVP_PKEY_get0_type_name(pkey)
								   : "these");
}

/* The use, "sig" when NULL; refuses any other value and "enc" for a family that only signs. */
static int check_use(const char *use, enum family family, const char **ret_use,
		     struct cv_errmsg *err)
{
	if (use == NULL)
		use = "sig";
	if (strcmp(use, "sig") != 0 && strcmp(use, "enc") != 0)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "\"use\" must be \"sig\" or \"enc\"");
	if (strcmp(use, "enc") == 0 && family == F_ED25519)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "an Ed25519 key only signs: \"use\" must be \"sig\"");
	*ret_use = use;
	return 0;
}

/* The rule for alg (the default when NULL) with this family and use; refuses an alg that does
 * not fit, naming those that do. */
static int check_alg(const char *alg, enum family family, const char *use,
		     const struct alg_rule **ret_rule, struct cv_errmsg *err)
{
	char fits[128] = "";
	size_t i, n = 0;

	for (i = 0; i < N_RULES; i++) {
		const struct alg_rule *rule = &alg_rules[i];

		if (!(rule->families & family) || strcmp(rule->use, use) != 0)
			continue;
		if (alg == NULL || strcmp(alg, rule->alg) == 0) {
			*ret_rule = rule;
			return 0;
		}
		if (n < sizeof(fits))
			n += (size_t)snprintf(fits + n, sizeof(fits) - n, "%s%s", n > 0 ? ", " : "",
					      rule->alg);
	}
	return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
			     "alg \"%.32s\" does not fit an %s key with use \"%s\" (it takes %s)",
			     alg, family_name(family), use, fits);
}

int cv_jwk_alg_default(const EVP_PKEY *pkey, const char *use, const char **ret_alg,
		       struct cv_errmsg *err)
{
	const struct curve *curve;
	const struct alg_rule *rule;
	enum family family = F_RSA;
	int r;

	if (pkey == NULL)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "no key");
	r = key_family(pkey, &family, &curve, err);
	if (r < 0)
		return r;
	r = check_use(use, family, &use, err);
	if (r < 0)
		return r;
	r = check_alg(NULL, family, use, &rule, err);
	if (r < 0)
		return r;
	*ret_alg = rule->alg;
	return 0;
}

/* Sets member name of jwk to value (stolen, may be NULL when its making ran out of memory). */
static int set_member(json_t *jwk, const char *name, json_t *value)
{
	return json_object_set_new(jwk, name, value) == 0 ? 0 : CV_ERR_NOMEM;
}

/* Sets member name of jwk to the base64url of bn: unsigned big-endian, left-padded with
 * zeros to pad_len bytes, or without leading zeros when pad_len is 0. */
static int set_bn(json_t *jwk, const char *name, const BIGNUM *bn, size_t pad_len)
{
	unsigned char *bytes = NULL;
	size_t len;
	int r;

	len = pad_len > 0 ? pad_len : (size_t)BN_num_bytes(bn);
	bytes = malloc(len > 0 ? len : 1);
	if (bytes == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	if (BN_bn2binpad(bn, bytes, (int)len) != (int)len) {
		r = CV_ERR_INTERNAL; /* a coordinate longer than its curve */
		goto out;
	}
	r = set_member(jwk, name, jwk_base64url(bytes, len));
out:
	free(bytes);
	return r;
}

static int set_rsa_members(json_t *jwk, const EVP_PKEY *pkey)
{
	BIGNUM *n = NULL, *e = NULL;
	int r;

	if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
	    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	r = set_member(jwk, "kty", json_string("RSA"));
	if (r < 0)
		goto out;
	r = set_bn(jwk, "n", n, 0);
	if (r < 0)
		goto out;
	r = set_bn(jwk, "e", e, 0);
out:
	BN_free(n);
	BN_free(e);
	return r;
}

static int set_ec_members(json_t *jwk, const EVP_PKEY *pkey, const struct curve *curve)
{
	BIGNUM *x = NULL, *y = NULL;
	int r;

	if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
	    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1) {
		r = CV_ERR_INTERNAL;
		goto out;
	}
	r = set_member(jwk, "kty", json_string("EC"));
	if (r < 0)
		goto out;
	r = set_member(jwk, "crv", json_string(curve->crv));
	if (r < 0)
		goto out;
	r = set_bn(jwk, "x", x, curve->coord_len);
	if (r < 0)
		goto out;
	r = set_bn(jwk, "y", y, curve->coord_len);
out:
	BN_free(x);
	BN_free(y);
	return r;
}

static int set_ed25519_members(json_t *jwk, const EVP_PKEY *pkey)
{
	unsigned char raw[ED25519_LEN];
	size_t len = sizeof(raw);
	int r;

	if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 || len != ED25519_LEN)
		return CV_ERR_INTERNAL;
	r = set_member(jwk, "kty", json_string("OKP"));
	if (r < 0)
		return r;
	r = set_member(jwk, "crv", json_string("Ed25519"));
	if (r < 0)
		return r;
	return set_member(jwk, "x", jwk_base64url(raw, len));
}

/* Sets the members of jwk that are the key: kty and n, e; or kty, crv, x, y; or kty, crv, x. */
static int set_key_members(json_t *jwk, const EVP_PKEY *pkey, enum family family,
			   const struct curve *curve)
{
	int r;

	if (family == F_RSA)
		r = set_rsa_members(jwk, pkey);
	else if (family == F_ED25519)
		r = set_ed25519_members(jwk, pkey);
	else
		r = set_ec_members(jwk, pkey, curve);
	ERR_clear_error();
	return r;
}

int cv_jwk_from_pkey(const EVP_PKEY *pkey, const char *alg, const char *use, json_t **ret_jwk,
		     struct cv_errmsg *err)
{
	const struct alg_rule *rule;
	const struct curve *curve;
	enum family family = F_RSA;
	json_t *key = NULL, *jwk = NULL;
	const struct alg_rule *default_rule;
	char kid[CV_JWK_KID_MAX + 1];
	size_t len;
	int r;

	if (pkey == NULL) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "no key");
		goto out;
	}
	r = key_family(pkey, &family, &curve, err);
	if (r < 0)
		goto out;
	r = check_use(use, family, &use, err);
	if (r < 0)
		goto out;
	r = check_alg(alg, family, use, &rule, err);
	if (r < 0)
		goto out;
	key = json_object();
	if (key == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	r = set_key_members(key, pkey, family, curve);
	if (r < 0) {
		cv_errmsg_set(err, r, "%s", r == CV_ERR_NOMEM ? "out of memory"
					    : "the public key could not be read");
		goto out;
	}
	r = cv_jwk_thumbprint(key, kid, err);
	if (r < 0)
		goto out;
	/* Every family signs: its first "sig" rule is the default JWK, whose kid is the
	 * thumbprint alone. */
	r = check_alg(NULL, family, "sig", &default_rule, err);
	if (r < 0)
		goto out;
	if (rule != default_rule) {
		len = strlen(kid);
		snprintf(kid + len, sizeof(kid) - len, ".%s.%s", rule->alg, use);
	}
	/* kty first, then what names the key and its purpose, then the key itself. */
	jwk = json_pack("{s:O, s:s, s:s, s:s}", "kty", json_object_get(key, "kty"), "kid", kid,
			"use", use, "alg", rule->alg);
	if (jwk == NULL || json_object_update(jwk, key) != 0) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	*ret_jwk = jwk;
	jwk = NULL;
	r = 0;
out:
	json_decref(key);
	json_decref(jwk);
	return r;
}
