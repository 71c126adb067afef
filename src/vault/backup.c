/* vault: backups (a tar of a consistent database copy and its manifest), their check, and
 * the start-up check of a (restored) database against the token. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "certvault/util.h"
#include "internal.h"

#define TAR_BLOCK 512
#define MANIFEST_NAME "manifest.json"
#define DB_NAME "certvault.db"
/* A manifest names every key by id: 10,000 keys are about 1 MB. */
#define MANIFEST_MAX (64u * 1024 * 1024)

/* --- writing -------------------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A POSIX ustar header for a regular file, mode 0600, owned by nobody in particular. */
static int tar_header(int fd, const char *name, uint64_t size, int64_t mtime)
{
	unsigned char h[TAR_BLOCK];
	unsigned sum = 0;
	size_t i;

	memset(h, 0, sizeof(h));
	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", 0600);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	char num[32];

	/* ustar's size field holds 11 octal digits: 8 GiB at most. */
	if (size >= (1ull << 33))
		return -1;
	snprintf(num, sizeof(num), "%011llo", (unsigned long long)size);
	memcpy(h + 124, num, 12);
	snprintf(num, sizeof(num), "%011llo",
		 (unsigned long long)(mtime > 0 && mtime < (1ll << 33) ? mtime : 0));
	memcpy(h + 136, num, 12);
	memset(h + 148, ' ', 8);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	snprintf((char *)h + 265, 32, "certvault");
	snprintf((char *)h + 297, 32, "certvault");
	for (i = 0; i < sizeof(h); i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
	return write_all(fd, h, sizeof(h));
}

static int tar_pad(int fd, uint64_t size)
{
	static const unsigned char zeros[TAR_BLOCK];
	size_t rest = (size_t)(size % TAR_BLOCK);

	return rest == 0 ? 0 : write_all(fd, zeros, TAR_BLOCK - rest);
}

/* SHA-256 and size of a file. */
static int file_digest(const char *path, char hex[2 * CV_AUDIT_HASH_LEN + 1], uint64_t *ret_size)
{
	unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint64_t size = 0;
	ssize_t n;
	int fd, r = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			goto out;
		size += (uint64_t)n;
	}
	if (n < 0 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		goto out;
	cv_hex_encode(md, mdlen, hex);
	*ret_size = size;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(ctx);
	return r;
}

static json_t *manifest_make(const struct cv_backup_params *p,
			     const struct cv_store_backup_facts *f, const char *sha256,
			     uint64_t size)
{
	char when[CV_TIME_BUFLEN], idhex[2 * CV_TOKEN_ID_LEN + 1],
		head[2 * CV_AUDIT_HASH_LEN + 1];
	json_t *m, *keys;
	size_t i;

	if (cv_time_rfc3339(p->now, when, sizeof(when)) < 0)
		return NULL;
	keys = json_array();
	for (i = 0; keys != NULL && i < f->n_keys; i++) {
		cv_hex_encode(f->keys[i].id, CV_TOKEN_ID_LEN, idhex);
		if (json_array_append_new(keys, json_pack("{s:s, s:s, s:I, s:s}", "id", idhex,
							   "certificate", f->keys[i].name,
							   "version",
							   (json_int_t)f->keys[i].version,
							   "row", f->keys[i].row)) < 0) {
			json_decref(keys);
			return NULL;
		}
	}
	if (keys == NULL)
		return NULL;
	if (f->has_audit_head)
		cv_hex_encode(f->audit_head, CV_AUDIT_HASH_LEN, head);
	m = json_pack("{s:s, s:i, s:s, s:s, s:I, s:{s:s, s:I, s:s}, s:{s:I, s:I, s:s?, s:s},"
		      " s:{s:s}, s:o}",
		      "format", CV_BACKUP_FORMAT, "format_version", 1, "created_at", when,
		      "certvault_version", p->version, "schema_version",
		      (json_int_t)f->schema_version, "database", "file", DB_NAME, "bytes",
		      (json_int_t)size, "sha256", sha256, "audit", "records",
		      (json_int_t)f->audit_records, "last_seq", (json_int_t)f->audit_last_seq,
		      "head", f->has_audit_head ? head : NULL, "key_label", p->audit_key_label,
		      "token", "label", p->token_label, "keys", keys);
	return m;
}

/* A private file name beside dir's other files: dir/.certvault-backup-XXXXXX, locked
 * (flock) for as long as the returned descriptor is open, so that the start-up's sweep of
 * leftovers (cv_vault_backup_leftovers) never takes a copy being written for one. */
static int temp_file(const char *dir, char *path, size_t size)
{
	int fd;

	if ((size_t)snprintf(path, size, "%s/" CV_BACKUP_TEMP_PREFIX "XXXXXX", dir) >= size)
		return -1;
	fd = mkstemp(path);
	if (fd >= 0)
		(void)fchmod(fd, 0600);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
		unlink(path);
		close(fd);
		return -1;
	}
	return fd;
}

int cv_backup_temp_lock(int fd)
{
	return flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : -1;
}

int cv_vault_backup_leftovers(const char *dir, cv_vault_leftover_fn *fn, void *arg,
			      struct cv_errmsg *err)
{
	struct stat st, fst;
	struct dirent *e;
	DIR *d;
	int dfd, fd, n = 0;

	d = opendir(dir);
	if (d == NULL)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot read the directory %s: %s", dir,
				     strerror(errno));
	dfd = dirfd(d);
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, CV_BACKUP_TEMP_PREFIX, strlen(CV_BACKUP_TEMP_PREFIX)) != 0 &&
		    strncmp(e->d_name, CV_RESTORE_TEMP_PREFIX, strlen(CV_RESTORE_TEMP_PREFIX)) != 0)
			continue;
		/* Only a regular file of this user (never a link to follow elsewhere), and only
		 * one nobody is writing: a backup or a restore running now holds its lock. */
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
		    st.st_uid != geteuid())
			continue;
		fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue;
		if (fstat(fd, &fst) == 0 && fst.st_ino == st.st_ino && fst.st_dev == st.st_dev &&
		    flock(fd, LOCK_EX | LOCK_NB) == 0 && unlinkat(dfd, e->d_name, 0) == 0) {
			n++;
			if (fn != NULL)
				fn(e->d_name, (uint64_t)fst.st_size, arg);
		}
		close(fd);
	}
	closedir(d);
	return n;
}

int cv_vault_backup_write(const struct cv_backup_params *p, int out_fd,
			  struct cv_backup_summary *ret, struct cv_errmsg *err)
{
	struct cv_store_backup_facts f = { 0 };
	char copy[4096], sha[2 * CV_AUDIT_HASH_LEN + 1];
	char *text = NULL;
	unsigned char buf[65536];
	json_t *manifest = NULL;
	uint64_t size = 0, copied = 0;
	ssize_t n;
	int fd = -1, lock_fd, r;

	memset(ret, 0, sizeof(*ret));
	copy[0] = '\0';
	/* Kept open (its lock held) until the copy is gone: SQLite writes it by its name. */
	lock_fd = temp_file(p->tmp_dir, copy, sizeof(copy));
	if (lock_fd < 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "backup: cannot make a file in %s: %s",
				  p->tmp_dir, strerror(errno));
		copy[0] = '\0';
		goto out;
	}
	r = cv_store_backup_copy(p->db_path, copy, err);
	if (r < 0)
		goto out;
	r = cv_store_backup_facts(copy, &f, err);
	if (r < 0)
		goto out;
	if (file_digest(copy, sha, &size) < 0) {
		r = cv_errmsg_set(err, CV_ERR_DB, "backup: cannot read the copy %s", copy);
		goto out;
	}
	manifest = manifest_make(p, &f, sha, size);
	if (manifest == NULL || cv_json_text(manifest, JSON_INDENT(1) | JSON_SORT_KEYS, &text) < 0) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	fd = open(copy, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || tar_header(out_fd, MANIFEST_NAME, strlen(text), p->now) < 0 ||
	    write_all(out_fd, text, strlen(text)) < 0 || tar_pad(out_fd, strlen(text)) < 0 ||
	    tar_header(out_fd, DB_NAME, size, p->now) < 0)
		goto io;
	while (copied < size && (n = read(fd, buf, sizeof(buf))) > 0) {
		if (write_all(out_fd, buf, (size_t)n) < 0)
			goto io;
		copied += (uint64_t)n;
	}
	memset(buf, 0, 2 * TAR_BLOCK);
	if (copied != size || tar_pad(out_fd, size) < 0 || write_all(out_fd, buf, 2 * TAR_BLOCK) < 0)
		goto io;
	ret->schema_version = f.schema_version;
	ret->audit_records = f.audit_records;
	ret->keys = f.n_keys;
	ret->db_bytes = size;
	if (f.has_audit_head)
		cv_hex_encode(f.audit_head, CV_AUDIT_HASH_LEN, ret->head);
	r = 0;
	goto out;
io:
	r = cv_errmsg_set(err, CV_ERR_CONFIG, "backup: writing it failed: %s",
			  errno != 0 ? strerror(errno) : "short write");
out:
	if (fd >= 0)
		close(fd);
	if (copy[0] != '\0')
		unlink(copy);
	if (lock_fd >= 0)
		close(lock_fd);
	free(text);
	json_decref(manifest);
	cv_store_backup_facts_release(&f);
	return r;
}

int cv_vault_backup_audit(struct cv_vault *v, struct cv_audit *a,
			  const struct cv_backup_summary *sum)
{
	int r;

	if (a == NULL)
		return 0;
	/* What left: enough to match the record with the file the admin keeps. */
	vault_audit_changes(a, json_pack("{s:I, s:I, s:I, s:s?}", "schema_version",
					 (json_int_t)sum->schema_version, "bytes",
					 (json_int_t)sum->db_bytes, "keys", (json_int_t)sum->keys,
					 "audit_head", sum->head[0] ? sum->head : NULL));
	r = cv_store_audit_append(v->store, vault_audit_done(a));
	vault_audit_written(a, r);
	return r;
}

/* --- reading -------------------------------------------------------------------------- */

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one ustar header: 1 with the member's name and size, 0 at the end of the archive,
 * -1 when it is no tar header. */
static int tar_next(int fd, char name[101], uint64_t *ret_size)
{
	unsigned char h[TAR_BLOCK];
	char num[13];
	unsigned sum = 0, want;
	size_t i;
	char *end;

	if (read_full(fd, h, sizeof(h)) < 0)
		return -1;
	for (i = 0; i < sizeof(h) && h[i] == 0; i++)
		;
	if (i == sizeof(h))
		return 0;
	for (i = 0; i < sizeof(h); i++)
		sum += (i >= 148 && i < 156) ? ' ' : h[i];
	memcpy(num, h + 148, 8);
	num[8] = '\0';
	want = (unsigned)strtoul(num, &end, 8);
	if (end == num || want != sum || (h[156] != '0' && h[156] != '\0'))
		return -1;
	memcpy(name, h, 100);
	name[100] = '\0';
	memcpy(num, h + 124, 12);
	num[12] = '\0';
	errno = 0;
	*ret_size = strtoull(num, &end, 8);
	if (end == num || errno != 0)
		return -1;
	return 1;
}

static int skip_pad(int fd, uint64_t size)
{
	unsigned char pad[TAR_BLOCK];
	size_t rest = (size_t)(size % TAR_BLOCK);

	return rest == 0 ? 0 : read_full(fd, pad, TAR_BLOCK - rest);
}

struct verify_keys {
	struct cv_vault *v;
	struct cv_backup_verdict *ret;
};

static void verdict_bad(struct cv_backup_verdict *ret, const char *why, const char *detail)
{
	if (ret->reason[0] != '\0')
		return;
	ret->intact = 0;
	snprintf(ret->reason, sizeof(ret->reason), "%s%s", why, detail);
}

int cv_vault_backup_verify(struct cv_vault *v, const char *file, const char *tmp_dir,
			   const char *audit_key_label, struct cv_backup_verdict *ret,
			   struct cv_errmsg *err)
{
	struct cv_store_backup_facts f = { 0 };
	struct cv_audit_verdict av;
	struct cv_audit_settings as;
	struct cv_audit_key_report kr;
	struct cv_vault tv;
	char name[101], copy[4096], sha[2 * CV_AUDIT_HASH_LEN + 1], hex[2 * CV_TOKEN_ID_LEN + 1],
		head[2 * CV_AUDIT_HASH_LEN + 1];
	const char *msha, *mhead, *mid;
	char *text = NULL;
	unsigned char buf[65536];
	json_t *m = NULL, *mkeys, *k;
	json_error_t jerr;
	uint64_t size, left, dbsize = 0;
	size_t i;
	int fd = -1, out = -1, r, got_db = 0;

	memset(ret, 0, sizeof(*ret));
	memset(&tv, 0, sizeof(tv));
	ret->intact = 1;
	copy[0] = '\0';
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot read %s: %s", file, strerror(errno));
	/* The manifest first, then the database: as cv_vault_backup_write lays them out. */
	if (tar_next(fd, name, &size) != 1 || strcmp(name, MANIFEST_NAME) != 0 ||
	    size > MANIFEST_MAX) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s: not a certvault backup (a tar "
				  "whose first member is %s)", file, MANIFEST_NAME);
		goto out;
	}
	text = malloc((size_t)size + 1);
	if (text == NULL) {
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (read_full(fd, text, (size_t)size) < 0 || skip_pad(fd, size) < 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s: the manifest is cut short", file);
		goto out;
	}
	text[size] = '\0';
	m = json_loadb(text, (size_t)size, 0, &jerr);
	if (m == NULL || !json_is_object(m) ||
	    json_string_value(json_object_get(m, "format")) == NULL ||
	    strcmp(json_string_value(json_object_get(m, "format")), CV_BACKUP_FORMAT) != 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s: the manifest is not a certvault "
				  "backup's", file);
		goto out;
	}
	if (tar_next(fd, name, &size) != 1 || strcmp(name, DB_NAME) != 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s: no %s after the manifest", file,
				  DB_NAME);
		goto out;
	}
	out = temp_file(tmp_dir, copy, sizeof(copy));
	if (out < 0) {
		copy[0] = '\0';
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "cannot make a file in %s: %s", tmp_dir,
				  strerror(errno));
		goto out;
	}
	for (left = size; left > 0; left -= (uint64_t)(left < sizeof(buf) ? left : sizeof(buf))) {
		size_t chunk = left < sizeof(buf) ? (size_t)left : sizeof(buf);

		if (read_full(fd, buf, chunk) < 0 || write_all(out, buf, chunk) < 0) {
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s: the database is cut short",
					  file);
			goto out;
		}
	}
	close(out);
	out = -1;
	got_db = 1;
	if (file_digest(copy, sha, &dbsize) < 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "cannot read the copy %s", copy);
		goto out;
	}
	msha = json_string_value(json_object_get(json_object_get(m, "database"), "sha256"));
	snprintf(ret->db_sha256, sizeof(ret->db_sha256), "%s", msha != NULL ? msha : "");
	if (msha == NULL || strcmp(msha, sha) != 0)
		verdict_bad(ret, "the database's SHA-256 is not the manifest's", "");
	ret->schema_version = json_integer_value(json_object_get(m, "schema_version"));
	snprintf(ret->created_at, sizeof(ret->created_at), "%s",
		 json_string_value(json_object_get(m, "created_at")) != NULL ?
		 json_string_value(json_object_get(m, "created_at")) : "");
	r = cv_store_backup_facts(copy, &f, err);
	if (r < 0)
		goto out;
	if (f.schema_version != ret->schema_version)
		verdict_bad(ret, "the database's schema version is not the manifest's", "");
	mhead = json_string_value(json_object_get(json_object_get(m, "audit"), "head"));
	if (f.has_audit_head)
		cv_hex_encode(f.audit_head, CV_AUDIT_HASH_LEN, head);
	if ((mhead == NULL) != !f.has_audit_head || (mhead != NULL && strcmp(mhead, head) != 0))
		verdict_bad(ret, "the audit chain's head is not the manifest's", "");
	snprintf(ret->head, sizeof(ret->head), "%s", mhead != NULL ? mhead : "");
	mkeys = json_object_get(m, "keys");
	if (!json_is_array(mkeys) || json_array_size(mkeys) != f.n_keys)
		verdict_bad(ret, "the manifest's keys are not the ones the database names", "");
	json_array_foreach(mkeys, i, k) {
		mid = json_string_value(json_object_get(k, "id"));
		if (i >= f.n_keys)
			break;
		cv_hex_encode(f.keys[i].id, CV_TOKEN_ID_LEN, hex);
		if (mid == NULL || strcmp(mid, hex) != 0) {
			verdict_bad(ret, "the manifest's keys are not the ones the database "
				    "names", "");
			break;
		}
	}
	ret->keys = f.n_keys;
	for (i = 0; i < f.n_keys; i++) {
		if (v->token == NULL || cv_token_key_exists(v->token, f.keys[i].id, CV_TOKEN_ID_LEN))
			continue;
		if (ret->keys_missing < CV_BACKUP_MISSING_LISTED)
			snprintf(ret->missing[ret->keys_missing], sizeof(ret->missing[0]),
				 "%s v%lld (%s)", f.keys[i].name[0] ? f.keys[i].name : "-",
				 (long long)f.keys[i].version, f.keys[i].row);
		ret->keys_missing++;
	}
	/* The chain itself, with the token's audit key, on the copy (which the open migrates
	 * when it is of an older schema: the copy is ours to change). */
	r = cv_store_open(copy, &tv.store, err);
	if (r < 0)
		goto out;
	tv.token = v->token;
	memset(&as, 0, sizeof(as));
	as.key_label = audit_key_label;
	as.repeat_interval = 0;
	as.anonymous_burst = 1;
	r = cv_vault_audit_init(&tv, &as, 0, &kr, err);
	if (r < 0)
		goto out;
	r = cv_store_audit_verify(tv.store, &av);
	if (r < 0) {
		cv_errmsg_set(err, r, "the audit chain could not be verified");
		goto out;
	}
	ret->audit_records = av.records;
	if (av.first_bad != 0) {
		ret->audit_first_bad = av.first_bad;
		verdict_bad(ret, "the audit chain breaks: ", av.reason);
	}
	r = 0;
out:
	if (tv.store != NULL) {
		cv_vault_audit_release(&tv, 0);
		cv_store_free(tv.store);
	}
	if (fd >= 0)
		close(fd);
	if (out >= 0)
		close(out);
	if (copy[0] != '\0') {
		unlink(copy);
		if (got_db) {
			char side[4200];

			snprintf(side, sizeof(side), "%s-wal", copy);
			unlink(side);
			snprintf(side, sizeof(side), "%s-shm", copy);
			unlink(side);
		}
	}
	free(text);
	json_decref(m);
	cv_store_backup_facts_release(&f);
	return r;
}

/* --- restore ------------------------------------------------------------------------- */

/* Copies the backup's database member into the open file out, made durable. */
static int restore_extract(const char *file, int out, struct cv_errmsg *err)
{
	unsigned char buf[65536];
	char name[101];
	uint64_t size, left;
	off_t skip;
	int fd, r = 0;

	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "cannot read %s: %s", file, strerror(errno));
	if (tar_next(fd, name, &size) != 1 || strcmp(name, MANIFEST_NAME) != 0 ||
	    size > MANIFEST_MAX) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s: not a certvault backup", file);
		goto out;
	}
	skip = (off_t)((size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK);
	if (lseek(fd, skip, SEEK_CUR) < 0 || tar_next(fd, name, &size) != 1 ||
	    strcmp(name, DB_NAME) != 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s: no %s after the manifest", file,
				  DB_NAME);
		goto out;
	}
	for (left = size; left > 0 && r == 0;) {
		size_t chunk = left < sizeof(buf) ? (size_t)left : sizeof(buf);

		if (read_full(fd, buf, chunk) < 0)
			r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s: the database is cut short",
					  file);
		else if (write_all(out, buf, chunk) < 0)
			r = cv_errmsg_set(err, CV_ERR_CONFIG, "writing the database: %s",
					  strerror(errno));
		left -= chunk;
	}
	if (r == 0 && fsync(out) != 0)
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "writing the database: %s", strerror(errno));
out:
	close(fd);
	return r;
}

int cv_vault_backup_restore(struct cv_vault *v, const struct cv_restore_params *p,
			    struct cv_backup_verdict *ret, struct cv_errmsg *err)
{
	static const char *const sides[] = { "-wal", "-shm", "-journal" };
	char dirbuf[4096], tmp[4200], side[4200], sha[2 * CV_AUDIT_HASH_LEN + 1];
	const char *dir, *slash;
	struct stat st;
	uint64_t size = 0;
	size_t i;
	int out = -1, dfd, exists, r;

	memset(ret, 0, sizeof(*ret));
	tmp[0] = '\0';
	if (strstr(p->db_path, "://") != NULL)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "--restore writes an SQLite file: a "
				     "PostgreSQL database is restored with pg_restore");
	if (strlen(p->db_path) >= sizeof(dirbuf) - 64)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "--database: the path is too long");
	exists = lstat(p->db_path, &st) == 0;
	if (exists && !S_ISREG(st.st_mode))
		return cv_errmsg_set(err, CV_ERR_CONFIG, "%s is not a regular file: nothing is "
				     "restored over it", p->db_path);
	if (exists && !p->overwrite)
		return cv_errmsg_set(err, CV_ERR_CONFIG, "%s exists: nothing is restored over a "
				     "database unless --overwrite says so (stop certvaultd first)",
				     p->db_path);
	/* A -wal or -shm without its database would be applied to the restored one. */
	for (i = 0; !exists && i < sizeof(sides) / sizeof(sides[0]); i++) {
		snprintf(side, sizeof(side), "%s%s", p->db_path, sides[i]);
		if (lstat(side, &st) == 0 && !p->overwrite)
			return cv_errmsg_set(err, CV_ERR_CONFIG, "%s is there without its database: "
					     "SQLite would apply it to the restored one; remove it, "
					     "or say --overwrite", side);
	}
	slash = strrchr(p->db_path, '/');
	if (slash == NULL) {
		snprintf(dirbuf, sizeof(dirbuf), ".");
	} else {
		snprintf(dirbuf, sizeof(dirbuf), "%.*s", (int)(slash - p->db_path), p->db_path);
		if (dirbuf[0] == '\0')
			snprintf(dirbuf, sizeof(dirbuf), "/");
	}
	dir = dirbuf;
	/* Beside its place, so that the rename is atomic; locked, so that a certvaultd
	 * starting meanwhile does not take it for a leftover. */
	snprintf(tmp, sizeof(tmp), "%s/" CV_RESTORE_TEMP_PREFIX "XXXXXX", dir);
	out = mkstemp(tmp);
	if (out < 0) {
		tmp[0] = '\0';
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "cannot make a file in %s: %s", dir,
				  strerror(errno));
		goto out;
	}
	if (fchmod(out, 0600) != 0 || flock(out, LOCK_EX | LOCK_NB) != 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	r = restore_extract(p->backup, out, err);
	if (r < 0)
		goto out;
	if (file_digest(tmp, sha, &size) < 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "cannot read %s", tmp);
		goto out;
	}
	/* The check of --verify-backup, on the backup; the bytes put in place are the ones it
	 * verified when their SHA-256 is the manifest's, which the check held them to. */
	r = cv_vault_backup_verify(v, p->backup, dir, p->audit_key_label, ret, err);
	if (r < 0)
		goto out;
	if (!ret->intact) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s is not intact: %s; nothing is "
				  "restored", p->backup, ret->reason);
		goto out;
	}
	if (strcmp(sha, ret->db_sha256) != 0) {
		r = cv_errmsg_set(err, CV_ERR_BAD_ENCODING, "%s changed while it was read; nothing "
				  "is restored", p->backup);
		goto out;
	}
	if (ret->keys_missing > 0 && !p->allow_missing_keys) {
		r = cv_errmsg_set(err, CV_ERR_TOKEN, "the token lacks %zu of the %zu key(s) the "
				  "backup needs (the first: %s): restore the token's backup that "
				  "holds them, or say --allow-missing-keys (those certificates are "
				  "then marked key_missing); nothing is restored",
				  ret->keys_missing, ret->keys, ret->missing[0]);
		goto out;
	}
	if (exists) {
		r = cv_store_db_quiesce(p->db_path, err);
		if (r < 0)
			goto out;
	}
	for (i = 0; i < sizeof(sides) / sizeof(sides[0]); i++) {
		snprintf(side, sizeof(side), "%s%s", p->db_path, sides[i]);
		if (unlink(side) != 0 && errno != ENOENT) {
			r = cv_errmsg_set(err, CV_ERR_CONFIG, "cannot remove %s: %s", side,
					  strerror(errno));
			goto out;
		}
	}
	if (rename(tmp, p->db_path) != 0) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "cannot put the database in place at %s: %s",
				  p->db_path, strerror(errno));
		goto out;
	}
	tmp[0] = '\0';
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	r = 0;
out:
	if (tmp[0] != '\0')
		unlink(tmp);
	if (out >= 0)
		close(out);
	return r;
}

/* --- the start-up check ----------------------------------------------------------------- */

struct check_scan {
	struct cv_vault *v;
	struct cv_key_check *ret;
	int (*fn)(const struct cv_store_key_ref *ref, void *arg);
	void *arg;
};

static int check_one(const struct cv_store_key_ref *ref, void *arg)
{
	struct check_scan *s = arg;

	/* Rows being made are the reconciler's: only keys that serve are checked. */
	if (strcmp(ref->row, "current") != 0 && strcmp(ref->row, "version") != 0)
		return 0;
	s->ret->needed++;
	if (cv_token_key_exists_since(s->v->token, ref->id, CV_TOKEN_ID_LEN, ref->named_at))
		return 0;
	if (strcmp(ref->row, "current") == 0)
		s->ret->missing_current++;
	s->ret->missing++;
	return s->fn != NULL ? s->fn(ref, s->arg) : 0;
}

int cv_vault_keys_check(struct cv_vault *v,
			int (*fn)(const struct cv_store_key_ref *ref, void *arg), void *arg,
			struct cv_key_check *ret, struct cv_errmsg *err)
{
	struct check_scan s = { v, ret, fn, arg };
	int r;

	memset(ret, 0, sizeof(*ret));
	r = cv_store_keys_foreach(v->store, check_one, &s);
	if (r < 0)
		cv_errmsg_set(err, r, "the keys the database needs could not be read");
	return r;
}
