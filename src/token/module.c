/* token: loading the PKCS#11 module, finding the token, logging in, and naming CK_RVs. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "certvault/secret.h"
#include "internal.h"

/* A module may be opened by several cv_tokens in one process (tests do; certvaultd does not),
 * but C_Initialize and C_Finalize act on the whole process: the first open initializes and
 * the last free finalizes. */
struct module {
	struct module *next;
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	unsigned refs;
	int finalize;   /* 0: someone outside certvault had initialized it, leave it be */
	int initialized; /* 0: a reinitialization failed at C_Initialize */
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct module *modules;

const char *token_ckr_name(CK_RV rv)
{
	switch (rv) {
	case CKR_OK: return "CKR_OK";
	case CKR_CANCEL: return "CKR_CANCEL";
	case CKR_HOST_MEMORY: return "CKR_HOST_MEMORY";
	case CKR_SLOT_ID_INVALID: return "CKR_SLOT_ID_INVALID";
	case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
	case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
	case CKR_ARGUMENTS_BAD: return "CKR_ARGUMENTS_BAD";
	case CKR_NO_EVENT: return "CKR_NO_EVENT";
	case CKR_NEED_TO_CREATE_THREADS: return "CKR_NEED_TO_CREATE_THREADS";
	case CKR_CANT_LOCK: return "CKR_CANT_LOCK";
	case CKR_ATTRIBUTE_READ_ONLY: return "CKR_ATTRIBUTE_READ_ONLY";
	case CKR_ATTRIBUTE_SENSITIVE: return "CKR_ATTRIBUTE_SENSITIVE";
	case CKR_ATTRIBUTE_TYPE_INVALID: return "CKR_ATTRIBUTE_TYPE_INVALID";
	case CKR_ATTRIBUTE_VALUE_INVALID: return "CKR_ATTRIBUTE_VALUE_INVALID";
	case CKR_ACTION_PROHIBITED: return "CKR_ACTION_PROHIBITED";
	case CKR_DATA_INVALID: return "CKR_DATA_INVALID";
	case CKR_DATA_LEN_RANGE: return "CKR_DATA_LEN_RANGE";
	case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
	case CKR_DEVICE_MEMORY: return "CKR_DEVICE_MEMORY";
	case CKR_DEVICE_REMOVED: return "CKR_DEVICE_REMOVED";
	case CKR_ENCRYPTED_DATA_INVALID: return "CKR_ENCRYPTED_DATA_INVALID";
	case CKR_ENCRYPTED_DATA_LEN_RANGE: return "CKR_ENCRYPTED_DATA_LEN_RANGE";
	case CKR_FUNCTION_CANCELED: return "CKR_FUNCTION_CANCELED";
	case CKR_FUNCTION_NOT_PARALLEL: return "CKR_FUNCTION_NOT_PARALLEL";
	case CKR_FUNCTION_NOT_SUPPORTED: return "CKR_FUNCTION_NOT_SUPPORTED";
	case CKR_KEY_HANDLE_INVALID: return "CKR_KEY_HANDLE_INVALID";
	case CKR_KEY_SIZE_RANGE: return "CKR_KEY_SIZE_RANGE";
	case CKR_KEY_TYPE_INCONSISTENT: return "CKR_KEY_TYPE_INCONSISTENT";
	case CKR_KEY_NOT_NEEDED: return "CKR_KEY_NOT_NEEDED";
	case CKR_KEY_CHANGED: return "CKR_KEY_CHANGED";
	case CKR_KEY_NEEDED: return "CKR_KEY_NEEDED";
	case CKR_KEY_INDIGESTIBLE: return "CKR_KEY_INDIGESTIBLE";
	case CKR_KEY_FUNCTION_NOT_PERMITTED: return "CKR_KEY_FUNCTION_NOT_PERMITTED";
	case CKR_KEY_NOT_WRAPPABLE: return "CKR_KEY_NOT_WRAPPABLE";
	case CKR_KEY_UNEXTRACTABLE: return "CKR_KEY_UNEXTRACTABLE";
	case CKR_MECHANISM_INVALID: return "CKR_MECHANISM_INVALID";
	case CKR_MECHANISM_PARAM_INVALID: return "CKR_MECHANISM_PARAM_INVALID";
	case CKR_OBJECT_HANDLE_INVALID: return "CKR_OBJECT_HANDLE_INVALID";
	case CKR_OPERATION_ACTIVE: return "CKR_OPERATION_ACTIVE";
	case CKR_OPERATION_NOT_INITIALIZED: return "CKR_OPERATION_NOT_INITIALIZED";
	case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
	case CKR_PIN_INVALID: return "CKR_PIN_INVALID";
	case CKR_PIN_LEN_RANGE: return "CKR_PIN_LEN_RANGE";
	case CKR_PIN_EXPIRED: return "CKR_PIN_EXPIRED";
	case CKR_PIN_LOCKED: return "CKR_PIN_LOCKED";
	case CKR_SESSION_CLOSED: return "CKR_SESSION_CLOSED";
	case CKR_SESSION_COUNT: return "CKR_SESSION_COUNT";
	case CKR_SESSION_HANDLE_INVALID: return "CKR_SESSION_HANDLE_INVALID";
	case CKR_SESSION_PARALLEL_NOT_SUPPORTED: return "CKR_SESSION_PARALLEL_NOT_SUPPORTED";
	case CKR_SESSION_READ_ONLY: return "CKR_SESSION_READ_ONLY";
	case CKR_SESSION_EXISTS: return "CKR_SESSION_EXISTS";
	case CKR_SESSION_READ_ONLY_EXISTS: return "CKR_SESSION_READ_ONLY_EXISTS";
	case CKR_SESSION_READ_WRITE_SO_EXISTS: return "CKR_SESSION_READ_WRITE_SO_EXISTS";
	case CKR_SIGNATURE_INVALID: return "CKR_SIGNATURE_INVALID";
	case CKR_SIGNATURE_LEN_RANGE: return "CKR_SIGNATURE_LEN_RANGE";
	case CKR_TEMPLATE_INCOMPLETE: return "CKR_TEMPLATE_INCOMPLETE";
	case CKR_TEMPLATE_INCONSISTENT: return "CKR_TEMPLATE_INCONSISTENT";
	case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
	case CKR_TOKEN_NOT_RECOGNIZED: return "CKR_TOKEN_NOT_RECOGNIZED";
	case CKR_TOKEN_WRITE_PROTECTED: return "CKR_TOKEN_WRITE_PROTECTED";
	case CKR_UNWRAPPING_KEY_HANDLE_INVALID: return "CKR_UNWRAPPING_KEY_HANDLE_INVALID";
	case CKR_UNWRAPPING_KEY_SIZE_RANGE: return "CKR_UNWRAPPING_KEY_SIZE_RANGE";
	case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT: return "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT";
	case CKR_USER_ALREADY_LOGGED_IN: return "CKR_USER_ALREADY_LOGGED_IN";
	case CKR_USER_NOT_LOGGED_IN: return "CKR_USER_NOT_LOGGED_IN";
	case CKR_USER_PIN_NOT_INITIALIZED: return "CKR_USER_PIN_NOT_INITIALIZED";
	case CKR_USER_TYPE_INVALID: return "CKR_USER_TYPE_INVALID";
	case CKR_USER_ANOTHER_ALREADY_LOGGED_IN: return "CKR_USER_ANOTHER_ALREADY_LOGGED_IN";
	case CKR_USER_TOO_MANY_TYPES: return "CKR_USER_TOO_MANY_TYPES";
	case CKR_WRAPPED_KEY_INVALID: return "CKR_WRAPPED_KEY_INVALID";
	case CKR_WRAPPED_KEY_LEN_RANGE: return "CKR_WRAPPED_KEY_LEN_RANGE";
	case CKR_WRAPPING_KEY_HANDLE_INVALID: return "CKR_WRAPPING_KEY_HANDLE_INVALID";
	case CKR_WRAPPING_KEY_SIZE_RANGE: return "CKR_WRAPPING_KEY_SIZE_RANGE";
	case CKR_WRAPPING_KEY_TYPE_INCONSISTENT: return "CKR_WRAPPING_KEY_TYPE_INCONSISTENT";
	case CKR_RANDOM_SEED_NOT_SUPPORTED: return "CKR_RANDOM_SEED_NOT_SUPPORTED";
	case CKR_RANDOM_NO_RNG: return "CKR_RANDOM_NO_RNG";
	case CKR_DOMAIN_PARAMS_INVALID: return "CKR_DOMAIN_PARAMS_INVALID";
	case CKR_CURVE_NOT_SUPPORTED: return "CKR_CURVE_NOT_SUPPORTED";
	case CKR_BUFFER_TOO_SMALL: return "CKR_BUFFER_TOO_SMALL";
	case CKR_SAVED_STATE_INVALID: return "CKR_SAVED_STATE_INVALID";
	case CKR_INFORMATION_SENSITIVE: return "CKR_INFORMATION_SENSITIVE";
	case CKR_STATE_UNSAVEABLE: return "CKR_STATE_UNSAVEABLE";
	case CKR_CRYPTOKI_NOT_INITIALIZED: return "CKR_CRYPTOKI_NOT_INITIALIZED";
	case CKR_CRYPTOKI_ALREADY_INITIALIZED: return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
	case CKR_MUTEX_BAD: return "CKR_MUTEX_BAD";
	case CKR_MUTEX_NOT_LOCKED: return "CKR_MUTEX_NOT_LOCKED";
	case CKR_NEW_PIN_MODE: return "CKR_NEW_PIN_MODE";
	case CKR_NEXT_OTP: return "CKR_NEXT_OTP";
	case CKR_EXCEEDED_MAX_ITERATIONS: return "CKR_EXCEEDED_MAX_ITERATIONS";
	case CKR_FIPS_SELF_TEST_FAILED: return "CKR_FIPS_SELF_TEST_FAILED";
	case CKR_LIBRARY_LOAD_FAILED: return "CKR_LIBRARY_LOAD_FAILED";
	case CKR_PIN_TOO_WEAK: return "CKR_PIN_TOO_WEAK";
	case CKR_PUBLIC_KEY_INVALID: return "CKR_PUBLIC_KEY_INVALID";
	case CKR_FUNCTION_REJECTED: return "CKR_FUNCTION_REJECTED";
	default: return rv >= CKR_VENDOR_DEFINED ? "CKR_VENDOR_DEFINED" : "CKR_(unknown)";
	}
}

enum token_rv_kind token_rv_kind(CK_RV rv)
{
	switch (rv) {
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_SLOT_ID_INVALID:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return TOKEN_RV_SESSION_DEAD;
	case CKR_GENERAL_ERROR:
	case CKR_FUNCTION_FAILED:
	case CKR_DEVICE_MEMORY:
	/* SoftHSM without its directory knows no object: "no such key" may be "no token". */
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_KEY_HANDLE_INVALID:
		return TOKEN_RV_SUSPECT;
	default:
		return TOKEN_RV_ANSWER;
	}
}

int token_rv_session_dead(CK_RV rv)
{
	return token_rv_kind(rv) == TOKEN_RV_SESSION_DEAD;
}

int token_rv_err(CK_RV rv, const char *call, struct cv_errmsg *err)
{
	switch (rv) {
	case CKR_OK:
		return 0;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_LOCKED:
		return cv_errmsg_set(err, CV_ERR_TOKEN, "wrong PIN: %s answered %s", call,
				     token_ckr_name(rv));
	case CKR_HOST_MEMORY:
		return cv_errmsg_set(err, CV_ERR_NOMEM, "%s: out of memory (%s)", call,
				     token_ckr_name(rv));
	default:
		if (token_rv_session_dead(rv))
			return cv_errmsg_set(err, CV_ERR_TOKEN_UNAVAILABLE,
					     "%s: token unavailable (%s)", call, token_ckr_name(rv));
		if (rv >= CKR_VENDOR_DEFINED)
			return cv_errmsg_set(err, CV_ERR_TOKEN, "%s failed: %s 0x%lx", call,
					     token_ckr_name(rv), (unsigned long)rv);
		return cv_errmsg_set(err, CV_ERR_TOKEN, "%s failed: %s", call, token_ckr_name(rv));
	}
}

void token_trim(const CK_UTF8CHAR *field, size_t len, char *buf)
{
	while (len > 0 && (field[len - 1] == ' ' || field[len - 1] == '\0'))
		len--;
	memcpy(buf, field, len);
	buf[len] = '\0';
}

/* Loads the module (or takes another reference to it) and initializes it once per process. */
static int module_get(const char *path, struct module **ret_module, struct cv_errmsg *err)
{
	CK_C_INITIALIZE_ARGS init_args = { 0 };
	CK_C_GetFunctionList get_function_list;
	CK_FUNCTION_LIST_PTR f = NULL;
	struct module *m = NULL;
	void *dl = NULL;
	CK_RV rv;
	int r;

	pthread_mutex_lock(&modules_lock);
	/* Never unmapped: a C++ module's static destructors after C_Finalize are a hazard, and a
	 * leak report inside a module that is gone cannot name it (tests/lsan.supp names
	 * SoftHSM's own). */
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (dl == NULL) {
		/* dlerror() starts with the path itself when the file is missing. */
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "cannot load the PKCS#11 module (token.module):"
				  " %s", dlerror());
		goto out;
	}
	/* dlopen hands back the same handle for a library already loaded. */
	for (m = modules; m != NULL; m = m->next) {
		if (m->dl == dl)
			break;
	}
	if (m != NULL) {
		m->refs++;
		dlclose(dl); /* the module holds its own reference */
		dl = NULL;
		*ret_module = m;
		m = NULL;
		r = 0;
		goto out;
	}
	*(void **)&get_function_list = dlsym(dl, "C_GetFunctionList");
	if (get_function_list == NULL) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "%s is not a PKCS#11 module: no C_GetFunctionList",
				  path);
		goto out;
	}
	rv = get_function_list(&f);
	if (rv != CKR_OK || f == NULL) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "C_GetFunctionList of %s failed: %s", path,
				  token_ckr_name(rv));
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* The HTTP threads call in at once: let the module lock with the OS's primitives. */
	init_args.flags = CKF_OS_LOCKING_OK;
	rv = f->C_Initialize(&init_args);
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		m->finalize = 0;
	} else if (rv == CKR_OK) {
		m->finalize = 1;
	} else {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "PKCS#11 module %s failed to initialize: "
				  "C_Initialize answered %s%s", path, token_ckr_name(rv),
				  getenv("SOFTHSM2_CONF") != NULL || strstr(path, "softhsm") != NULL ?
				  " (for SoftHSM2: check SOFTHSM2_CONF and its directories.tokendir)" :
				  "");
		goto out;
	}
	m->initialized = 1;
	m->dl = dl;
	m->f = f;
	m->refs = 1;
	m->next = modules;
	modules = m;
	*ret_module = m;
	dl = NULL;
	m = NULL;
	r = 0;
out:
	pthread_mutex_unlock(&modules_lock);
	free(m);
	if (dl != NULL)
		dlclose(dl);
	return r;
}

static void module_put(struct module *m)
{
	struct module **p;

	if (m == NULL)
		return;
	pthread_mutex_lock(&modules_lock);
	if (--m->refs > 0) {
		pthread_mutex_unlock(&modules_lock);
		return;
	}
	for (p = &modules; *p != NULL; p = &(*p)->next) {
		if (*p == m) {
			*p = m->next;
			break;
		}
	}
	/* Nothing useful to do if finalizing fails: the process is letting go of the module. */
	if (m->finalize && m->initialized)
		(void)m->f->C_Finalize(NULL);
	dlclose(m->dl);
	pthread_mutex_unlock(&modules_lock);
	free(m);
}

CK_RV token_module_reinit(struct cv_token *token)
{
	struct module *m = token->module;
	CK_C_INITIALIZE_ARGS init_args = { 0 };
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&modules_lock);
	/* Another cv_token in this process, or whoever initialized the module before us, would
	 * lose its sessions: leave the module as it is and hope the token comes back by itself. */
	if (m->refs != 1 || !m->finalize)
		goto out;
	if (m->initialized)
		(void)m->f->C_Finalize(NULL); /* its sessions are dead anyway */
	m->initialized = 0;
	init_args.flags = CKF_OS_LOCKING_OK;
	rv = m->f->C_Initialize(&init_args);
	if (rv == CKR_OK)
		m->initialized = 1;
out:
	pthread_mutex_unlock(&modules_lock);
	return rv;
}

/* Every slot with a token, in *ret_slots (free it). Returns CKR_OK or the failing call's rv. */
static CK_RV slots_list(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID **ret_slots, CK_ULONG *ret_n)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0;
	CK_RV rv;

	/* The slot count can grow between the two calls (a token plugged in): ask again. */
	for (;;) {
		rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
		if (rv != CKR_OK)
			break;
		free(slots);
		slots = calloc(n > 0 ? n : 1, sizeof(*slots));
		if (slots == NULL) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		rv = f->C_GetSlotList(CK_TRUE, slots, &n);
		if (rv != CKR_BUFFER_TOO_SMALL)
			break;
	}
	if (rv == CKR_OK) {
		*ret_slots = slots;
		*ret_n = n;
		slots = NULL;
	}
	free(slots);
	return rv;
}

int token_slot_refind(struct cv_token *token, CK_SLOT_ID *ret_slot, struct cv_errmsg *err)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i;
	CK_TOKEN_INFO info;
	char trimmed[33], serial[17];
	CK_RV rv;
	int r;

	rv = slots_list(token->f, &slots, &n);
	if (rv == CKR_HOST_MEMORY) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (rv != CKR_OK) {
		r = cv_errmsg_set(err, CV_ERR_TOKEN_UNAVAILABLE, "C_GetSlotList answered %s",
				  token_ckr_name(rv));
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (token->f->C_GetTokenInfo(slots[i], &info) != CKR_OK ||
		    !(info.flags & CKF_TOKEN_INITIALIZED))
			continue;
		token_trim(info.label, sizeof(info.label), trimmed);
		if (strcmp(trimmed, token->label) != 0)
			continue;
		/* Another token under the same label holds other keys: not ours to use. */
		token_trim(info.serialNumber, sizeof(info.serialNumber), serial);
		if (strcmp(serial, token->serial) != 0) {
			r = cv_errmsg_set(err, CV_ERR_TOKEN_UNAVAILABLE, "the token labelled \"%s\" "
					  "now has serial %s, not %s", token->label, serial,
					  token->serial);
			goto out;
		}
		*ret_slot = slots[i];
		r = 0;
		goto out;
	}
	r = cv_errmsg_set(err, CV_ERR_TOKEN_UNAVAILABLE, "no token labelled \"%s\" in any slot",
			  token->label);
out:
	free(slots);
	return r;
}

/* Finds the initialized token labelled label, for open. module names the module in the
 * message when there is none (NULL: no message wanted). */
static int slot_find(struct cv_token *token, const char *label, const char *module,
		     struct cv_errmsg *err)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i;
	CK_TOKEN_INFO info;
	char trimmed[33], seen[160] = "";
	size_t seen_len = 0;
	unsigned n_seen = 0;
	CK_RV rv;
	int r;

	rv = slots_list(token->f, &slots, &n);
	if (rv != CKR_OK) {
		r = token_rv_err(rv, "C_GetSlotList", err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		rv = token->f->C_GetTokenInfo(slots[i], &info);
		/* A slot whose token went away between the calls is simply not ours. */
		if (rv != CKR_OK)
			continue;
		if (!(info.flags & CKF_TOKEN_INITIALIZED))
			continue;
		token_trim(info.label, sizeof(info.label), trimmed);
		if (strcmp(trimmed, label) != 0) {
			/* Named in the message, so a typo in token.label shows at once. */
			if (seen_len < sizeof(seen) - 40) {
				int w = snprintf(seen + seen_len, sizeof(seen) - seen_len, "%s\"%s\"",
						 n_seen > 0 ? ", " : "", trimmed);

				if (w > 0)
					seen_len += (size_t)w;
			}
			n_seen++;
			continue;
		}
		token->slot = slots[i];
		memcpy(token->label, trimmed, sizeof(token->label));
		token_trim(info.manufacturerID, sizeof(info.manufacturerID), token->manufacturer);
		token_trim(info.model, sizeof(info.model), token->model);
		token_trim(info.serialNumber, sizeof(info.serialNumber), token->serial);
		token->firmware = info.firmwareVersion;
		r = 0;
		goto out;
	}
	r = cv_errmsg_set(err, CV_ERR_CONFIG, "no PKCS#11 token labelled \"%.64s\" (token.label) "
			  "in module %s; tokens there: %s", label, module != NULL ? module : "",
			  n_seen > 0 ? seen : "none");
out:
	free(slots);
	return r;
}

/* Whether a manufacturer and version name SoftHSM before 2.7. */
static int softhsm_before_2_7(const char *manufacturer, CK_VERSION v)
{
	return strncmp(manufacturer, "SoftHSM", 7) == 0 &&
	       (v.major < 2 || (v.major == 2 && v.minor < 7));
}

/* Decides whether key creates and destroys run one at a time (token.serialize_creates).
 * SoftHSM's file store before 2.7 fails a create that races another session's create,
 * destroy or search with CKR_GENERAL_ERROR or CKR_TEMPLATE_INCONSISTENT, and can leave an
 * object behind that nobody tracks (softhsm/SoftHSMv2#573, fixed after 2.6.1); a module that
 * handles concurrent creates gains nothing from the lock and loses the overlap of several
 * imports. auto asks the module itself (C_GetInfo), not its file name, so that a renamed
 * SoftHSM is recognised by what it says it is, and behind a proxy (p11-kit-client.so) the
 * token (C_GetTokenInfo: SoftHSM names itself and gives its version as the firmware's). */
static int serialize_decide(struct cv_token *token, const char *setting, struct cv_errmsg *err)
{
	char manufacturer[33], behind[64] = "";
	CK_INFO info;
	CK_RV rv;

	if (setting != NULL && strcmp(setting, "on") == 0) {
		token->serialize_creates = 1;
		snprintf(token->serialize_describe, sizeof(token->serialize_describe),
			 "one at a time (token.serialize_creates = on)");
		return 0;
	}
	if (setting != NULL && strcmp(setting, "off") == 0) {
		token->serialize_creates = 0;
		snprintf(token->serialize_describe, sizeof(token->serialize_describe),
			 "concurrently (token.serialize_creates = off)");
		return 0;
	}
	if (setting != NULL && setting[0] != '\0' && strcmp(setting, "auto") != 0)
		return cv_errmsg_set(err, CV_ERR_CONFIG,
				     "token.serialize_creates must be auto, on or off");
	rv = token->f->C_GetInfo(&info);
	if (rv != CKR_OK) {
		/* Unknown: the safe side. */
		token->serialize_creates = 1;
		snprintf(token->serialize_describe, sizeof(token->serialize_describe),
			 "one at a time (token.serialize_creates = auto; C_GetInfo answered %s)",
			 token_ckr_name(rv));
		return 0;
	}
	token_trim(info.manufacturerID, sizeof(info.manufacturerID), manufacturer);
	token->serialize_creates = softhsm_before_2_7(manufacturer, info.libraryVersion);
	/* A proxy (p11-kit-client.so to a p11-kit server) in front of SoftHSM: the token says
	 * what it is, and its firmware version is SoftHSM's. The server serves this process's
	 * sessions from one SoftHSM process, whose creates race as they would here. */
	if (!token->serialize_creates && strncmp(token->manufacturer, "SoftHSM", 7) == 0) {
		token->serialize_creates = softhsm_before_2_7(token->manufacturer, token->firmware);
		snprintf(behind, sizeof(behind), ", the token %.32s %u.%u", token->manufacturer,
			 (unsigned)token->firmware.major, (unsigned)token->firmware.minor);
	}
	snprintf(token->serialize_describe, sizeof(token->serialize_describe),
		 "%s (token.serialize_creates = auto; the module is %.32s %u.%u%s%s)",
		 token->serialize_creates ? "one at a time" : "concurrently", manufacturer,
		 (unsigned)info.libraryVersion.major, (unsigned)info.libraryVersion.minor, behind,
		 token->serialize_creates ? ", whose file store fails creates that race" : "");
	return 0;
}

const char *cv_token_serialize_describe(const struct cv_token *token)
{
	return token->serialize_describe;
}

int cv_token_open(const struct cv_token_config *cfg, struct cv_token **ret_token,
		  struct cv_errmsg *err)
{
	struct cv_token *token = NULL;
	CK_SESSION_HANDLE session;
	char why[sizeof(err->text)];
	int r, pool_ready = 0, map_ready = 0, state_ready = 0;

	*ret_token = NULL;
	if (cfg->module_path == NULL || cfg->module_path[0] == '\0') {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "no PKCS#11 module configured");
		goto out;
	}
	if (cfg->token_label == NULL || cfg->token_label[0] == '\0') {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "no token label configured");
		goto out;
	}
	if (cfg->pin == NULL) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "no token PIN configured");
		goto out;
	}
	token = calloc(1, sizeof(*token));
	if (token == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	token->pin_len = strlen(cfg->pin);
	/* Kept for as long as the process runs (a token that comes back is logged in again):
	 * locked pages left out of any core dump. */
	token->pin = cv_secret_alloc(token->pin_len + 1);
	if (token->pin == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(token->pin, cfg->pin, token->pin_len + 1);
	r = token_pool_init(&token->pool, cfg->pool_size > 0 ? cfg->pool_size : 8);
	if (r < 0) {
		cv_errmsg_set(err, r, "cannot set up the session pool");
		goto out;
	}
	pool_ready = 1;
	r = token_keymap_init(&token->map);
	if (r < 0) {
		cv_errmsg_set(err, r, "cannot set up the key map");
		goto out;
	}
	map_ready = 1;
	r = token_state_init(token);
	if (r < 0) {
		cv_errmsg_set(err, r, "cannot set up the token's locks");
		goto out;
	}
	state_ready = 1;
	r = module_get(cfg->module_path, &token->module, err);
	if (r < 0)
		goto out;
	token->f = token->module->f;
	r = slot_find(token, cfg->token_label, cfg->module_path, err);
	if (r < 0)
		goto out;
	token->map.clock_skew = cfg->clock_skew;
	r = serialize_decide(token, cfg->serialize_creates, err);
	if (r < 0)
		goto out;
	/* The first session logs in; a wrong PIN shows here rather than on the first request. */
	r = token_pool_borrow(token, &session, err);
	if (r == 0) {
		token_pool_return(token, session, 0);
		r = token_keys_list(token, err);
	}
	if (r < 0) {
		/* Say which token: the message names only the call. */
		snprintf(why, sizeof(why), "%s", err != NULL ? err->text : "");
		cv_errmsg_set(err, r, "PKCS#11 token \"%s\": %s%s", token->label, why,
			      r == CV_ERR_TOKEN && strstr(why, "PIN") != NULL ?
			      "; check token.pin_file or CERTVAULT_TOKEN_PIN" : "");
		goto out;
	}
	/* A storage directory that cannot be found is a configuration error: a token whose keys
	 * might not survive a power cut is not served. Asked after the token answered, so that
	 * a token that is not there at all says so first. */
	r = token_durable_init(token, cfg->sync_dir, cfg->module_path, err);
	if (r < 0)
		goto out;
	*ret_token = token;
	token = NULL;
	r = 0;
out:
	if (token != NULL) {
		token_public_stop(token);
		if (pool_ready)
			token_pool_release(token);
		if (map_ready)
			token_keymap_release(&token->map);
		if (state_ready)
			token_state_release(token);
		token_durable_release(token);
		module_put(token->module);
		cv_secret_free(token->pin, token->pin_len + 1);
		free(token);
	}
	return r;
}

void cv_token_free(struct cv_token *token)
{
	CK_SESSION_HANDLE session;
	CK_RV rv;

	if (token == NULL)
		return;
	token_public_stop(token);
	/* Log out only when no other cv_token shares the module's login: it is per process. */
	pthread_mutex_lock(&modules_lock);
	if (token->module->refs == 1 && token->pool.n_idle > 0) {
		session = token->pool.idle[0];
		rv = token->f->C_Logout(session);
		(void)rv; /* closing the sessions below logs out anyway */
	}
	pthread_mutex_unlock(&modules_lock);
	token_pool_release(token);
	token_keymap_release(&token->map);
	token_state_release(token);
	token_durable_release(token);
	module_put(token->module);
	cv_secret_free(token->pin, token->pin_len + 1);
	free(token);
}

int cv_token_health_get(struct cv_token *token, struct cv_token_health *ret)
{
	CK_SESSION_HANDLE session;
	CK_SESSION_INFO sinfo;
	struct cv_errmsg why = { "" }, ignored;
	CK_TOKEN_INFO info;
	size_t i;
	CK_RV rv;
	int r;

	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&token->map.lock);
	for (i = 0; i < token->map.capacity; i++) {
		const struct keymap_entry *e = &token->map.slots[i];

		if (e->id_len > 0 && !e->pending && e->priv != CK_INVALID_HANDLE)
			ret->keys++;
	}
	pthread_mutex_unlock(&token->map.lock);
	/* A token that is down gets a recovery attempt here too: health is what an operator
	 * (or a load balancer) polls while waiting for it to come back. */
	r = token_enter(token, &why);
	if (r < 0) {
		snprintf(ret->error, sizeof(ret->error), "%s", why.text);
		goto out;
	}
	rv = token->f->C_GetTokenInfo(token->slot, &info);
	token_count(token, CV_TOKEN_OP_TOKEN_INFO, rv != CKR_OK);
	if (rv != CKR_OK) {
		(void)token_probe_gone(token, "C_GetTokenInfo", rv);
		token_leave(token);
		snprintf(ret->error, sizeof(ret->error), "C_GetTokenInfo answered %s",
			 token_ckr_name(rv));
		r = CV_ERR_TOKEN_UNAVAILABLE;
		goto out;
	}
	ret->reachable = 1;
	token_trim(info.label, sizeof(info.label), ret->label);
	token_trim(info.manufacturerID, sizeof(info.manufacturerID), ret->manufacturer);
	token_trim(info.model, sizeof(info.model), ret->model);
	token_trim(info.serialNumber, sizeof(info.serialNumber), ret->serial);
	r = 0;
	/* Borrowing reopens and logs in a session that died, so health also shows recovery. */
	if (token_pool_borrow(token, &session, &ignored) == 0) {
		rv = token->f->C_GetSessionInfo(session, &sinfo);
		token_pool_return(token, session, token_rv_session_dead(rv));
		if (rv == CKR_OK)
			ret->logged_in = sinfo.state == CKS_RW_USER_FUNCTIONS ||
					 sinfo.state == CKS_RO_USER_FUNCTIONS;
	}
	token_leave(token);
out:
	return r;
}

/* A token that answered a call this recently is taken as there by cv_token_check. */
#define CHECK_FRESH_MS 1000

int cv_token_check(struct cv_token *token, struct cv_errmsg *err)
{
	CK_TOKEN_INFO info;
	CK_RV rv;
	int r;

	/* Under load the check costs nothing: behind a proxy C_GetTokenInfo is a round trip on
	 * the process's one connection, and SoftHSM 2.6 serving it costs more once another
	 * process changed the token (measured: one per import doubled the token server's CPU
	 * per import through two nodes). A token gone since its last answer fails the call the
	 * write makes next, and the write is undone as for any token failure. */
	if (atomic_load(&token->up) && token_answered_within(token, CHECK_FRESH_MS))
		return 0;
	r = token_enter(token, err);
	if (r < 0)
		return r;
	rv = token->f->C_GetTokenInfo(token->slot, &info);
	token_count(token, CV_TOKEN_OP_TOKEN_INFO, rv != CKR_OK);
	if (rv == CKR_OK)
		token_answered(token);
	if (rv != CKR_OK && token_probe_gone(token, "C_GetTokenInfo", rv))
		r = cv_errmsg_set(err, CV_ERR_TOKEN_UNAVAILABLE, "the token is unavailable "
				  "(C_GetTokenInfo: %s)", token_ckr_name(rv));
	token_leave(token);
	return r;
}

/* Sets the user PIN of a freshly initialised token through an SO session. */
static int init_user_pin(struct cv_token *t, const char *so_pin, const char *user_pin,
			 struct cv_errmsg *err)
{
	CK_SESSION_HANDLE session;
	CK_RV rv;
	int r;

	rv = t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
				 &session);
	if (rv != CKR_OK)
		return token_rv_err(rv, "C_OpenSession", err);
	rv = t->f->C_Login(session, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin));
	if (rv != CKR_OK) {
		r = token_rv_err(rv, "C_Login(SO)", err);
		goto out;
	}
	rv = t->f->C_InitPIN(session, (CK_UTF8CHAR_PTR)user_pin, strlen(user_pin));
	r = rv == CKR_OK ? 0 : token_rv_err(rv, "C_InitPIN", err);
	(void)t->f->C_Logout(session);
out:
	(void)t->f->C_CloseSession(session);
	return r;
}

int cv_token_init(const char *module_path, const char *label, const char *so_pin,
		  const char *user_pin, int *ret_created, struct cv_errmsg *err)
{
	struct cv_token t = { 0 };
	CK_SLOT_ID slots[256];
	CK_ULONG n = sizeof(slots) / sizeof(slots[0]), i;
	CK_TOKEN_INFO info;
	CK_UTF8CHAR padded[32];
	CK_RV rv;
	int r;

	*ret_created = 0;
	if (label == NULL || label[0] == '\0' || strlen(label) > sizeof(padded))
		return cv_errmsg_set(err, CV_ERR_CONFIG, "a token label is 1 to 32 bytes");
	r = module_get(module_path, &t.module, err);
	if (r < 0)
		return r;
	t.f = t.module->f;
	/* Already there: nothing to do, and nothing is touched. */
	if (slot_find(&t, label, NULL, NULL) == 0) {
		r = 0;
		goto out;
	}
	rv = t.f->C_GetSlotList(CK_TRUE, slots, &n);
	if (rv != CKR_OK) {
		r = token_rv_err(rv, "C_GetSlotList", err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (t.f->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    !(info.flags & CKF_TOKEN_INITIALIZED))
			break;
	}
	if (i == n) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG,
				  "no token labelled \"%s\" and no uninitialised slot to make one",
				  label);
		goto out;
	}
	t.slot = slots[i];
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, label, strlen(label));
	rv = t.f->C_InitToken(t.slot, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin), padded);
	if (rv != CKR_OK) {
		r = token_rv_err(rv, "C_InitToken", err);
		goto out;
	}
	r = init_user_pin(&t, so_pin, user_pin, err);
	if (r < 0)
		goto out;
	*ret_created = 1;
out:
	module_put(t.module);
	return r;
}

const char *cv_token_op_name(enum cv_token_op op)
{
	static const char *const names[] = {
		[CV_TOKEN_OP_OPEN_SESSION] = "open_session",
		[CV_TOKEN_OP_LOGIN] = "login",
		[CV_TOKEN_OP_FIND] = "find",
		[CV_TOKEN_OP_GET_ATTRIBUTES] = "get_attributes",
		[CV_TOKEN_OP_CREATE_OBJECT] = "create_object",
		[CV_TOKEN_OP_DESTROY_OBJECT] = "destroy_object",
		[CV_TOKEN_OP_TOKEN_INFO] = "token_info",
		[CV_TOKEN_OP_GENERATE_KEY_PAIR] = "generate_key_pair",
	};

	if ((unsigned)op >= CV_TOKEN_OP_COUNT)
		return "unknown";
	return names[op];
}

void cv_token_stats_get(struct cv_token *token, struct cv_token_stats *ret)
{
	size_t i;

	for (i = 0; i < CV_TOKEN_OP_COUNT; i++) {
		ret->calls[i] = atomic_load_explicit(&token->calls[i], memory_order_relaxed);
		ret->errors[i] = atomic_load_explicit(&token->errors[i], memory_order_relaxed);
	}
}
