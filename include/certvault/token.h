/* token: the only code that speaks PKCS#11.
 *
 * Loads the module with dlopen, logs in once per process, keeps a pool of sessions shared by
 * the HTTP threads, and a CKA_ID -> object handle map filled by one listing at open, so a
 * request calls C_FindObjects only for a key this process has not seen: one another node
 * made (a miss searches the token once and remembers the handle), or one whose handle the
 * token no longer knows because another node destroyed it (one fresh search, then the key
 * is forgotten, or found again). Private keys are created as CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE true and CKA_EXTRACTABLE false. All functions are thread-safe.
 *
 * Token faults: a call that finds the token gone (its sessions dead, C_GetTokenInfo failing)
 * marks it down; until it is back every call answers CV_ERR_TOKEN_UNAVAILABLE at once, and
 * at most once a second a call (or health) tries to get it back: finalize and initialize the
 * module, find the token by label and serial, log in, list the keys again. Logging in again
 * needs the PIN, so the token keeps a copy for its whole life, in a buffer wiped when freed
 * (never logged, never in an error): unlike a PIN cleansed right after login, it can be read
 * from the running process's memory or a core dump. */
#ifndef CERTVAULT_TOKEN_H
#define CERTVAULT_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "certvault/error.h"

/* certvault's CKA_ID values are this long (random bytes). */
#define CV_TOKEN_ID_LEN 16

struct cv_token;

struct cv_token_config {
	const char *module_path;  /* e.g. /usr/lib/softhsm/libsofthsm2.so */
	const char *token_label;  /* the token is found by its label */
	const char *pin;          /* borrowed; the caller cleanses its copy after cv_token_open */
	unsigned pool_size;       /* sessions kept open; 0 means 8 */
	/* Where the module keeps its objects, made durable after every key create or destroy
	 * (token.sync_dir): NULL, "" or "auto" finds SoftHSM's directories.tokendir (from
	 * SOFTHSM2_CONF, else /etc/softhsm/softhsm2.conf) when the module is SoftHSM and means
	 * nothing for any other module; "none" means nothing; else that directory. */
	const char *sync_dir;
	/* Whether key creates and destroys run one at a time (token.serialize_creates): "on",
	 * "off", or NULL, "" or "auto": on for SoftHSM before 2.7 (C_GetInfo's manufacturer and
	 * library version), off for any other module. */
	const char *serialize_creates;
	/* Seconds the clocks of other nodes using the token may be off from this one's (several
	 * nodes on one database: their rows' times come from their clocks); 0 for one node.
	 * See cv_token_key_exists_since. */
	unsigned clock_skew;
};

/* Opens the module, finds the token by label, logs in as the user and lists the private
 * objects once (private keys and certvault's secret keys: everything a request uses), then
 * lists the public key objects on a thread of its own (cv_token_marked_foreach waits for
 * it; destroying a key does not need it, the destroy searches by id). Returns 0 and a new token in *ret_token, or CV_ERR_CONFIG (no module, no
 * such token), CV_ERR_TOKEN (login refused: err says "wrong PIN" and the CKR_ name),
 * CV_ERR_TOKEN_UNAVAILABLE; err holds one clear line. */
int cv_token_open(const struct cv_token_config *cfg, struct cv_token **ret_token,
		  struct cv_errmsg *err);
/* Makes sure a token labelled label exists: when none does, initialises the first
 * uninitialised slot with that label and so_pin, and sets its user PIN (C_InitToken, then
 * C_InitPIN as the SO). *ret_created says whether it did. Call it before cv_token_open.
 * Returns 0, CV_ERR_CONFIG (no module, no free slot) or the token's error. */
int cv_token_init(const char *module_path, const char *label, const char *so_pin,
		  const char *user_pin, int *ret_created, struct cv_errmsg *err);

/* What a key create or destroy does to make the token's storage durable before it returns,
 * in words for the start-up line ("fsync of the changed files under DIR (...)", "syncfs
 * under DIR (...)", "none: ..."). */
const char *cv_token_sync_describe(const struct cv_token *token);
/* Whether key creates and destroys run one at a time, and why, in words for the start-up
 * line ("one at a time: ...", "concurrently: ..."). */
const char *cv_token_serialize_describe(const struct cv_token *token);

/* The first bytes of the CKA_ID of every key object certvault creates: its marker. A foreign
 * object with a random 16-byte id carries it by chance once in 2^48; objects other tools make
 * with short or readable ids never do. */
#define CV_TOKEN_ID_MARKER "\x63\x76\x6b\x01\xa7\x5e" /* "cvk", 1, then two fixed bytes */
#define CV_TOKEN_ID_MARKER_LEN 6
/* Fills id with a new key id: the marker, then CV_TOKEN_ID_LEN - CV_TOKEN_ID_MARKER_LEN
 * random bytes (80 bits). Returns 0 or CV_ERR_INTERNAL (no randomness). */
int cv_token_key_id_new(uint8_t id[CV_TOKEN_ID_LEN]);
/* Whether an id has certvault's form: CV_TOKEN_ID_LEN bytes starting with the marker. */
int cv_token_key_id_marked(const uint8_t *id, size_t id_len);

/* Logs out, closes every session, finalizes the module. Accepts NULL. */
void cv_token_free(struct cv_token *token);

/* Creates a private key object holding key (RSA 2048-4096, EC P-256/384/521, Ed25519) with
 * CKA_ID = id and CKA_LABEL = label, sensitive and not extractable, and a matching public
 * key object with the same CKA_ID and label (so tools that pair keys by id find it). Returns
 * once both are durable (see cv_token_sync_describe): 0, CV_ERR_UNSUPPORTED_KEY,
 * CV_ERR_NAME_TAKEN (an object with this id exists), CV_ERR_TOKEN or
 * CV_ERR_TOKEN_UNAVAILABLE; on failure nothing is left in the token. */
int cv_token_key_create(struct cv_token *token, EVP_PKEY *key, const char *label,
			const uint8_t *id, size_t id_len, struct cv_errmsg *err);

/* The key types a key pair can be generated for in the token. */
enum cv_token_key_type {
	CV_TOKEN_KEY_RSA2048 = 1,
	CV_TOKEN_KEY_RSA3072,
	CV_TOKEN_KEY_RSA4096,
	CV_TOKEN_KEY_P256,
	CV_TOKEN_KEY_P384,
	CV_TOKEN_KEY_P521,
	CV_TOKEN_KEY_ED25519,
};
/* "rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521", "ed25519" to the type; 0 and
 * *ret_type set, or CV_ERR_UNSUPPORTED_KEY. */
int cv_token_key_type_parse(const char *name, enum cv_token_key_type *ret_type);
const char *cv_token_key_type_name(enum cv_token_key_type type);

/* Generates a key pair of this type inside the token (C_GenerateKeyPair) under CKA_ID = id
 * and CKA_LABEL = label, with the attribute policy of cv_token_key_create: the private key
 * token, private, sensitive, never extractable, sign-only, unmodifiable and uncopyable, so
 * the token itself reports it always sensitive and never extractable. The private key never
 * leaves the token; *ret_public (the caller's) is its public half, read back from the public
 * object. Returns once both objects are durable: 0, CV_ERR_UNSUPPORTED_KEY,
 * CV_ERR_NAME_TAKEN (an object with this id exists), CV_ERR_TOKEN or
 * CV_ERR_TOKEN_UNAVAILABLE; on failure nothing is left in the token. */
int cv_token_key_generate(struct cv_token *token, enum cv_token_key_type type,
			  const char *label, const uint8_t *id, size_t id_len,
			  EVP_PKEY **ret_public, struct cv_errmsg *err);

/* The wrapping key for bring-your-own-key imports: an RSA-3072 key pair generated in the
 * token on first use, its private half unwrap-only, sensitive and never extractable. Returns
 * 0 and its public half in *ret_public (the caller's), or the token's error. */
int cv_token_wrapping_key(struct cv_token *token, EVP_PKEY **ret_public,
			  struct cv_errmsg *err);
/* Unwraps a client's private key into the token without it ever being in this process:
 * C_UnwrapKey with CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256) and the wrapping key turns
 * encrypted_aes_key into an AES-256 session key, C_UnwrapKey with CKM_AES_KEY_WRAP_PAD (RFC
 * 5649) and that key turns wrapped_key (PKCS#8) into a private key object of the type of
 * public_key, under CKA_ID = id and CKA_LABEL = label with the policy of cv_token_key_create;
 * the AES key is destroyed at once; a public key object is made from public_key. Does not
 * check that the two halves match (sign something and see). Returns once durable: 0,
 * CV_ERR_UNWRAP_FAILED (err says which step the token refused and its CKR_),
 * CV_ERR_UNSUPPORTED_KEY, CV_ERR_NAME_TAKEN, CV_ERR_TOKEN or CV_ERR_TOKEN_UNAVAILABLE; on
 * failure nothing is left in the token. */
/* oaep_sha1: the AES key was encrypted with RSA-OAEP SHA-1 (MGF1-SHA-1) instead of SHA-256:
 * SoftHSM 2.6.1 unwraps with SHA-1 only (its OAEP parameter check refuses any other hash
 * with CKR_ARGUMENTS_BAD). */
int cv_token_key_unwrap(struct cv_token *token, int oaep_sha1,
			const unsigned char *encrypted_aes_key,
			size_t encrypted_aes_key_len, const unsigned char *wrapped_key,
			size_t wrapped_key_len, EVP_PKEY *public_key, const char *label,
			const uint8_t *id, size_t id_len, struct cv_errmsg *err);

/* Destroys the private and public key objects with this id, and returns once that is durable
 * (see cv_token_sync_describe). Returns 0, CV_ERR_NOT_FOUND (no private key with this id),
 * CV_ERR_TOKEN or CV_ERR_TOKEN_UNAVAILABLE. CV_ERR_TOKEN may come after the objects are gone
 * (their removal could not be made durable): cv_token_key_exists then says 0. */
int cv_token_key_destroy(struct cv_token *token, const uint8_t *id, size_t id_len,
			 struct cv_errmsg *err);

/* Whether a private key with this id is in the token: 1 yes, 0 no (or the token could not
 * tell). Answered from the map; a miss asks the token once (one search by CKA_ID and class)
 * and remembers what it found, so a key another node made is found. */
int cv_token_key_exists(struct cv_token *token, const uint8_t *id, size_t id_len);
/* The same for the key a database row named at named_at (seconds since the epoch; the
 * row's last change is a safe choice, CV_TOKEN_NAMED_UNKNOWN when not known): a key the
 * token's last complete listing did not see, named well before that listing, is absent
 * without a search. Keeps a database of many rows whose keys are gone (a token restored
 * from an older backup) from searching the token once per row. */
#define CV_TOKEN_NAMED_UNKNOWN INT64_MAX
int cv_token_key_exists_since(struct cv_token *token, const uint8_t *id, size_t id_len,
			      int64_t named_at);

/* Attributes read back from the token for one private key. */
struct cv_token_key_attrs {
	int present;
	int sensitive;
	int extractable;
	int always_sensitive;
	int never_extractable;
	int is_private;
	int on_token;
};
/* Reads the key's attributes from the token (one C_GetAttributeValue). Returns 0,
 * CV_ERR_NOT_FOUND, CV_ERR_TOKEN or CV_ERR_TOKEN_UNAVAILABLE. */
int cv_token_key_attrs_get(struct cv_token *token, const uint8_t *id, size_t id_len,
			   struct cv_token_key_attrs *ret_attrs, struct cv_errmsg *err);

/* Writes the RFC 7512 URI of the private key with this id and label into buf:
 * "pkcs11:model=...;manufacturer=...;serial=...;token=...;id=%..;object=...;type=private",
 * every value percent-encoded. Never contains a PIN. Returns 0 or CV_ERR_INTERNAL if buf is
 * too small (512 bytes always suffice for labels of 64 characters). */
int cv_token_key_uri(const struct cv_token *token, const uint8_t *id, size_t id_len,
		     const char *label, char *buf, size_t buflen);

/* What cv_token_sign does with the data it is given. */
enum cv_token_sign_mechanism {
	CV_TOKEN_SIGN_RSA_PKCS1 = 1, /* CKM_RSA_PKCS: data is a DER DigestInfo, the caller hashed */
	CV_TOKEN_SIGN_RSA_PSS,       /* CKM_RSA_PKCS_PSS: data is a hash of pss_hash, MGF1 with the
					same hash, salt of salt_len bytes */
	CV_TOKEN_SIGN_ECDSA,         /* CKM_ECDSA: data is a hash; the signature is r || s, each as
					long as the curve's order */
	CV_TOKEN_SIGN_EDDSA,         /* CKM_EDDSA: data is the message itself (Ed25519) */
};
enum cv_token_hash {
	CV_TOKEN_SHA256 = 1,
	CV_TOKEN_SHA384,
	CV_TOKEN_SHA512,
};
struct cv_token_sign_params {
	enum cv_token_sign_mechanism mechanism;
	enum cv_token_hash pss_hash;   /* RSA_PSS only */
	size_t pss_salt_len;           /* RSA_PSS only */
};
/* The longest signature cv_token_sign makes: RSA 4096. */
#define CV_TOKEN_SIG_MAX 512

/* Signs data with the private key with this id, inside the token (C_SignInit, C_Sign on a
 * pooled session): the key never leaves it. sig has room for *sig_len bytes
 * (CV_TOKEN_SIG_MAX always suffice); on success *sig_len is the signature's length. Returns
 * 0, CV_ERR_NOT_FOUND (no such key), CV_ERR_BAD_REQUEST (a mechanism or data the key cannot
 * sign: CKR_KEY_TYPE_INCONSISTENT, CKR_MECHANISM_INVALID, CKR_DATA_LEN_RANGE...),
 * CV_ERR_TOKEN or CV_ERR_TOKEN_UNAVAILABLE; err names the call and the CKR_. */
int cv_token_sign(struct cv_token *token, const uint8_t *id, size_t id_len,
		  const struct cv_token_sign_params *params, const unsigned char *data,
		  size_t data_len, unsigned char *sig, size_t *sig_len, struct cv_errmsg *err);

/* A secret key kept in the token for MACs (CKO_SECRET_KEY, CKK_GENERIC_SECRET, 32 bytes),
 * found by its CKA_LABEL: the audit chain's HMAC key. It is made sensitive, not extractable,
 * not modifiable and not copyable, for signing and verifying only: nobody reads it out, a
 * PIN holder included. Its handle is found again by label after the token reconnects. */
struct cv_token_secret;
#define CV_TOKEN_MAC_LEN 32        /* HMAC-SHA256 */
#define CV_TOKEN_SECRET_ID_MAX 64  /* the longest CKA_ID a secret key keeps for its caller */
/* Finds the one secret key labelled label. Returns 0 and *ret_secret (free with
 * cv_token_secret_free), CV_ERR_NOT_FOUND when there is none, CV_ERR_TOKEN when several
 * carry the label, or CV_ERR_TOKEN_UNAVAILABLE. */
int cv_token_secret_find(struct cv_token *token, const char *label,
			 struct cv_token_secret **ret_secret, struct cv_errmsg *err);
/* Generates the secret key labelled label in the token (C_GenerateKey,
 * CKM_GENERIC_SECRET_KEY_GEN) with CKA_ID = id, which the caller reads back later with
 * cv_token_secret_id (the key cannot be modified, so neither can the id). Returns 0 and
 * *ret_secret, CV_ERR_NAME_TAKEN when a key with that label exists, or the token's error. */
int cv_token_secret_generate(struct cv_token *token, const char *label, const uint8_t *id,
			     size_t id_len, struct cv_token_secret **ret_secret,
			     struct cv_errmsg *err);
/* Copies the key's CKA_ID into buf; returns its length (0: none). */
size_t cv_token_secret_id(const struct cv_token_secret *secret,
			  uint8_t buf[CV_TOKEN_SECRET_ID_MAX]);
/* HMAC-SHA256 of data made in the token (CKM_SHA256_HMAC). Returns 0, CV_ERR_NOT_FOUND (the
 * key is gone from the token), CV_ERR_TOKEN or CV_ERR_TOKEN_UNAVAILABLE; mac is zeros on
 * failure. */
int cv_token_secret_hmac(struct cv_token_secret *secret, const void *data, size_t len,
			 uint8_t mac[CV_TOKEN_MAC_LEN], struct cv_errmsg *err);
/* Reads the key's attributes back from the token (present, sensitive, extractable, ...).
 * Returns 0, CV_ERR_NOT_FOUND, CV_ERR_TOKEN or CV_ERR_TOKEN_UNAVAILABLE. */
int cv_token_secret_attrs_get(struct cv_token_secret *secret,
			      struct cv_token_key_attrs *ret_attrs, struct cv_errmsg *err);
/* Accepts NULL. The key stays in the token. */
void cv_token_secret_free(struct cv_token_secret *secret);

/* The state health reports. */
struct cv_token_health {
	int reachable;          /* C_GetTokenInfo answered */
	int logged_in;
	char label[33];
	char manufacturer[33];
	char model[17];
	char serial[17];
	size_t keys;            /* private keys in the map (kept while the token is down) */
	char error[256];        /* when not reachable: why, naming calls and CKR_s */
};
/* Asks the token for its state (C_GetTokenInfo, C_GetSessionInfo); a token that is down gets
 * a recovery attempt first (at most one a second). Always fills ret. Returns 0 when
 * reachable, else CV_ERR_TOKEN_UNAVAILABLE. */
int cv_token_health_get(struct cv_token *token, struct cv_token_health *ret);

/* Whether the token is there to write to: a recovery attempt when it is down; else nothing
 * when it answered a call within the last second, or one C_GetTokenInfo. Call it before a
 * write that needs the token and changes anything else first, so that a token known gone
 * refuses the write before it starts. Returns 0 or CV_ERR_TOKEN_UNAVAILABLE (err says
 * why). */
int cv_token_check(struct cv_token *token, struct cv_errmsg *err);

/* Whether the token was up when last seen (no call): 0 once a call found it gone, until a
 * recovery got it back. */
int cv_token_up(struct cv_token *token);

/* The PKCS#11 calls the token module makes, as its counters name them. */
enum cv_token_op {
	CV_TOKEN_OP_OPEN_SESSION = 0, /* C_OpenSession */
	CV_TOKEN_OP_LOGIN,            /* C_Login as the user */
	CV_TOKEN_OP_FIND,             /* one search: C_FindObjectsInit, C_FindObjects, ...Final */
	CV_TOKEN_OP_GET_ATTRIBUTES,   /* C_GetAttributeValue */
	CV_TOKEN_OP_CREATE_OBJECT,    /* C_CreateObject */
	CV_TOKEN_OP_DESTROY_OBJECT,   /* C_DestroyObject */
	CV_TOKEN_OP_TOKEN_INFO,       /* C_GetTokenInfo */
	CV_TOKEN_OP_GENERATE_KEY_PAIR, /* C_GenerateKeyPair */
	CV_TOKEN_OP_COUNT
};
/* "open_session", "login", "find", "get_attributes", "create_object", "destroy_object",
 * "token_info", "generate_key_pair"; "unknown" past the end. */
const char *cv_token_op_name(enum cv_token_op op);

/* How many calls of each kind this token made since it was opened, and how many of them
 * failed (an answer the module treated as a failure; CKR_USER_ALREADY_LOGGED_IN, a
 * destroy of an object already gone and the like are not). */
struct cv_token_stats {
	uint64_t calls[CV_TOKEN_OP_COUNT];
	uint64_t errors[CV_TOKEN_OP_COUNT];
};
/* Copies the counters (each read atomically; the set is not one instant). No token call. */
void cv_token_stats_get(struct cv_token *token, struct cv_token_stats *ret);

/* Calls fn for each private key id certvault can see in the map (the start-up listing plus
 * what was created since). Stops and returns fn's value if it is non-zero. */
int cv_token_key_foreach(struct cv_token *token,
			 int (*fn)(const uint8_t *id, size_t id_len, void *arg), void *arg);

/* Calls fn for each id in the map that carries certvault's marker (cv_token_key_id_marked)
 * with has_private saying whether a private key object carries it (else only a public one
 * does). Only private and public key objects are ever listed: secret keys and data objects
 * never reach fn. Waits for the listing of public key objects that follows cv_token_open
 * (a second or so at 10,000 keys); CV_ERR_TOKEN_UNAVAILABLE when that listing failed or was
 * stopped. Stops and returns fn's value if it is non-zero. */
int cv_token_marked_foreach(struct cv_token *token,
			    int (*fn)(const uint8_t *id, size_t id_len, int has_private,
				      void *arg),
			    void *arg);

/* Stops the token's own work in the background (the listing of public key objects after
 * cv_token_open), for a prompt shutdown: whatever waits for it is answered at once. */
void cv_token_background_stop(struct cv_token *token);

#endif
