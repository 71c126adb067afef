/* token: making the token's own storage durable before a database commit depends on it.
 *
 * SoftHSM 2.6's file store writes its object files and never calls fsync, fdatasync or
 * syncfs: after C_CreateObject returns, a new key may be only in the page cache. certvault's
 * commits are durable (SQLite, synchronous=FULL), so without this a power cut after
 * "201 Created" can leave an active row whose key is gone, and after a delete a key that
 * comes back with no row naming it. A module that keeps its objects in local files is given
 * the directory (token.sync_dir, or SoftHSM's directories.tokendir found by default); a
 * hardware or network module answers only once its write is durable and gets nothing.
 *
 * How: an inotify watch on the directory and on each of its subdirectories (SoftHSM keeps one
 * per token) records which files changed and which directories gained or lost entries; a sync
 * fsyncs exactly those, so it costs a few small fsyncs, not a flush of everything else that
 * is dirty on the filesystem. When the record cannot be trusted (the event queue overflowed,
 * a watched directory was moved, removed or replaced, a directory appeared below a
 * subdirectory, or inotify is not available) the sync is a syncfs of the whole filesystem,
 * and the watches are set up again. */
/* syncfs, sync_file_range */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* What changes a directory's entries, and what changes a file's bytes. */
#define ENTRY_EVENTS (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)
/* IN_MODIFY covers write and truncate (O_TRUNC too). Not IN_CLOSE_WRITE: SoftHSM opens
 * object files read-write to read them, and every such close would cost an fsync. */
#define DATA_EVENTS (IN_MODIFY)
/* The watched directory itself going away or moving: its fd may now be another's. */
#define SELF_EVENTS (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)
#define WATCH_MASK (ENTRY_EVENTS | DATA_EVENTS | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
/* More subdirectories than this (tokens in one SoftHSM directory) and the sync is a syncfs. */
#define WATCHES_MAX 64

struct watch {
	int wd;
	int dirfd;       /* O_RDONLY on the directory, for fsync and openat */
	int entries;     /* entries changed since the last sync: fsync the directory */
};

struct changed {
	int watch;       /* index into watches */
	int fd;          /* during a sync: open on the file, or -1 */
	char name[NAME_MAX + 1];
};

struct durable {
	pthread_mutex_t lock;  /* one sync at a time: a sync returns once every change that
				  was made before it began is on disk */
	char *dir;
	char origin[PATH_MAX + 64];
	int notify_fd;         /* -1: no inotify, every sync is a syncfs */
	struct watch watches[WATCHES_MAX];
	unsigned n_watches;
	int lost;              /* the record is incomplete: next sync is a syncfs */
	int syncfs_only;       /* the layout cannot be watched: every sync is a syncfs */
	struct changed *changed;
	size_t n_changed, cap_changed;
};

static void watches_close(struct durable *d)
{
	unsigned i;

	for (i = 0; i < d->n_watches; i++) {
		if (d->notify_fd >= 0)
			(void)inotify_rm_watch(d->notify_fd, d->watches[i].wd);
		close(d->watches[i].dirfd);
	}
	d->n_watches = 0;
	d->n_changed = 0;
}

static int watch_add(struct durable *d, int parent_fd, const char *path, const char *name)
{
	struct watch *w;
	int fd, wd;

	fd = parent_fd >= 0 ? openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC |
				     O_NOFOLLOW) :
			      open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (parent_fd >= 0) {
		char sub[PATH_MAX];

		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, name) >= sizeof(sub)) {
			close(fd);
			return -1;
		}
		/* A subdirectory was seen as a directory, not a link to one: keep it that way.
		 * The configured directory itself may be a link. */
		wd = inotify_add_watch(d->notify_fd, sub, WATCH_MASK | IN_DONT_FOLLOW);
	} else {
		wd = inotify_add_watch(d->notify_fd, path, WATCH_MASK);
	}
	if (wd < 0) {
		close(fd);
		return -1;
	}
	w = &d->watches[d->n_watches++];
	w->wd = wd;
	w->dirfd = fd;
	w->entries = 0;
	return 0;
}

/* Whether the directory open at fd has a subdirectory. Returns 1, 0, or -1 on error. */
static int has_subdir(int fd)
{
	struct dirent *e;
	struct stat st;
	int probe, found = 0;
	DIR *dir;

	probe = dup(fd);
	if (probe < 0)
		return -1;
	dir = fdopendir(probe);
	if (dir == NULL) {
		close(probe);
		return -1;
	}
	while (!found && (e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
			found = 1;
	}
	closedir(dir);
	return found;
}

/* Watches the directory and each subdirectory. Returns 0; SETUP_AGAIN when a directory could
 * not be opened or watched (moved away meanwhile, out of watches: try again at the next
 * sync); SETUP_NEVER when the layout cannot be watched file by file (a third level, more
 * subdirectories than WATCHES_MAX, no inotify): every sync is then a syncfs. */
enum { SETUP_AGAIN = -1, SETUP_NEVER = -2 };
static int watches_setup(struct durable *d)
{
	struct dirent *de;
	struct stat st;
	DIR *top = NULL;
	int r = SETUP_AGAIN, topfd, deeper;

	watches_close(d);
	if (d->notify_fd < 0)
		return SETUP_NEVER;
	if (watch_add(d, -1, d->dir, NULL) < 0)
		goto out;
	topfd = dup(d->watches[0].dirfd);
	if (topfd < 0)
		goto out;
	top = fdopendir(topfd);
	if (top == NULL) {
		close(topfd);
		goto out;
	}
	while ((de = readdir(top)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(top), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			goto out;
		if (!S_ISDIR(st.st_mode))
			continue;
		if (d->n_watches == WATCHES_MAX) {
			r = SETUP_NEVER;
			goto out;
		}
		if (watch_add(d, dirfd(top), d->dir, de->d_name) < 0)
			goto out;
		/* A third level (not SoftHSM's layout) would change unseen. */
		deeper = has_subdir(d->watches[d->n_watches - 1].dirfd);
		if (deeper != 0) {
			r = deeper > 0 ? SETUP_NEVER : SETUP_AGAIN;
			goto out;
		}
	}
	r = 0;
out:
	if (top != NULL)
		closedir(top);
	if (r < 0)
		watches_close(d);
	return r;
}

static int watch_index(const struct durable *d, int wd)
{
	unsigned i;

	for (i = 0; i < d->n_watches; i++) {
		if (d->watches[i].wd == wd)
			return (int)i;
	}
	return -1;
}

static void changed_add(struct durable *d, int watch, const char *name)
{
	struct changed *grown;
	size_t i;

	for (i = 0; i < d->n_changed; i++) {
		if (d->changed[i].watch == watch && strcmp(d->changed[i].name, name) == 0)
			return;
	}
	if (d->n_changed == d->cap_changed) {
		size_t cap = d->cap_changed > 0 ? 2 * d->cap_changed : 16;

		grown = realloc(d->changed, cap * sizeof(*grown));
		if (grown == NULL) {
			d->lost = 1; /* cannot remember it: flush everything instead */
			return;
		}
		d->changed = grown;
		d->cap_changed = cap;
	}
	d->changed[d->n_changed].watch = watch;
	d->changed[d->n_changed].fd = -1;
	snprintf(d->changed[d->n_changed].name, sizeof(d->changed[0].name), "%s", name);
	d->n_changed++;
}

/* SoftHSM's *.lock files are empty and only ever flock()ed: their bytes need no fsync, and
 * their directory entries are made durable with the directory. */
static int lock_file(const char *name)
{
	size_t len = strlen(name);

	return len > 5 && strcmp(name + len - 5, ".lock") == 0;
}

/* Reads every queued event into the record. */
static void events_drain(struct durable *d)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	ssize_t got;
	char *p;
	int w;

	for (;;) {
		got = read(d->notify_fd, buf, sizeof(buf));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			if (got < 0 && errno != EAGAIN)
				d->lost = 1;
			return;
		}
		for (p = buf; p < buf + got; p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW) {
				d->lost = 1;
				continue;
			}
			w = watch_index(d, ev->wd);
			if (w < 0)
				continue;  /* a watch of an earlier setup */
			if (ev->mask & SELF_EVENTS) {
				d->lost = 1;
				continue;
			}
			if (ev->mask & ENTRY_EVENTS) {
				d->watches[w].entries = 1;
				/* A new directory: under the top, a new token whose files were
				 * written before any watch; deeper, not a layout watched. */
				if (ev->mask & IN_ISDIR)
					d->lost = 1;
			}
			if (ev->len > 0 && (ev->mask & (DATA_EVENTS | IN_CREATE | IN_MOVED_TO)) &&
			    !(ev->mask & IN_ISDIR) && !lock_file(ev->name))
				changed_add(d, w, ev->name);
		}
	}
}

static int sync_err(struct cv_errmsg *err, const char *what, const char *dir, int e)
{
	return cv_errmsg_set(err, CV_ERR_TOKEN,
			     "the token's storage could not be made durable: %s %.200s: %s", what,
			     dir, strerror(e));
}

static int durable_syncfs(struct durable *d, struct cv_errmsg *err)
{
	int fd, r = 0;

	fd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return sync_err(err, "open", d->dir, errno);
	if (syncfs(fd) < 0)
		r = sync_err(err, "syncfs", d->dir, errno);
	close(fd);
	return r;
}

int token_durable_sync(struct cv_token *token, struct cv_errmsg *err)
{
	struct durable *d = token->durable;
	size_t i;
	unsigned j;
	int fd, r = 0;

	if (d == NULL)
		return 0;
	pthread_mutex_lock(&d->lock);
	if (d->syncfs_only) {
		r = durable_syncfs(d, err);
		goto out;
	}
	events_drain(d);
	if (d->lost) {
		/* Watch again first: what changes from now on is seen; what changed before is
		 * flushed by the syncfs after it. */
		r = watches_setup(d);
		d->syncfs_only = r == SETUP_NEVER;
		d->lost = r < 0;
		d->n_changed = 0;
		r = durable_syncfs(d, err);
		/* A failed syncfs may have flushed nothing: keep flushing everything until one
		 * succeeds. */
		if (r < 0)
			d->lost = 1;
		goto out;
	}
	/* Start every file's writeback first, then wait for each: the blocks are allocated in
	 * one journal transaction that the first fsync commits, instead of one commit per file
	 * (ext4's delayed allocation). */
	for (i = 0; i < d->n_changed; i++) {
		struct changed *c = &d->changed[i];

		c->fd = -1;
		if (r < 0)
			continue;
		fd = openat(d->watches[c->watch].dirfd, c->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
			    O_NONBLOCK);
		if (fd < 0) {
			/* Removed since: its directory's fsync makes that durable. */
			if (errno != ENOENT)
				r = sync_err(err, "open", c->name, errno);
			continue;
		}
		c->fd = fd;
		/* Only a hint: the fsync below is what counts. */
		(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	}
	for (i = 0; i < d->n_changed; i++) {
		struct changed *c = &d->changed[i];

		if (c->fd < 0)
			continue;
		/* fdatasync: the data and what reading it back needs (size, blocks), not the
		 * timestamps; the new name is the directory's. */
		if (r == 0 && fdatasync(c->fd) < 0)
			r = sync_err(err, "fdatasync", c->name, errno);
		close(c->fd);
		c->fd = -1;
	}
	for (j = 0; j < d->n_watches && r == 0; j++) {
		if (!d->watches[j].entries)
			continue;
		if (fsync(d->watches[j].dirfd) < 0)
			r = sync_err(err, "fsync of the directory", d->dir, errno);
		else
			d->watches[j].entries = 0;
	}
	if (r < 0)
		d->lost = 1;
	d->n_changed = 0;
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* Reads directories.tokendir from SoftHSM's configuration file. Returns 0 and a new string,
 * CV_ERR_CONFIG (err says what) or CV_ERR_NOMEM. */
static int softhsm_tokendir(const char *conf, char **ret_dir, struct cv_errmsg *err)
{
	char line[PATH_MAX + 64], *p, *end, *value;
	FILE *f;
	int r = CV_ERR_CONFIG, e;

	*ret_dir = NULL;
	f = fopen(conf, "re");
	if (f == NULL) {
		e = errno;
		return cv_errmsg_set(err, CV_ERR_CONFIG,
				     "token.sync_dir: SoftHSM's configuration %.200s cannot be read"
				     " (%s): set token.sync_dir to its token directory, or none",
				     conf, strerror(e));
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		p = line + strspn(line, " \t");
		if (strncmp(p, "directories.tokendir", 20) != 0)
			continue;
		p += 20;
		p += strspn(p, " \t");
		if (*p != '=')
			continue;
		p++;
		value = p + strspn(p, " \t");
		end = value + strlen(value);
		while (end > value && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' ||
				       end[-1] == '\t'))
			*--end = '\0';
		free(*ret_dir);
		*ret_dir = strdup(value);
		if (*ret_dir == NULL) {
			r = CV_ERR_NOMEM;
			goto out;
		}
	}
	if (*ret_dir == NULL || (*ret_dir)[0] == '\0') {
		free(*ret_dir);
		*ret_dir = NULL;
		r = cv_errmsg_set(err, CV_ERR_CONFIG,
				  "token.sync_dir: SoftHSM's configuration %.200s names no"
				  " directories.tokendir: set token.sync_dir, or none", conf);
		goto out;
	}
	r = 0;
out:
	fclose(f);
	return r;
}

/* Whether the module is SoftHSM, by its file name (libsofthsm2.so, softhsm2.so...). */
static int module_is_softhsm(const char *module_path)
{
	const char *base = strrchr(module_path, '/');

	base = base != NULL ? base + 1 : module_path;
	return strstr(base, "softhsm") != NULL;
}

int token_durable_init(struct cv_token *token, const char *sync_dir, const char *module_path,
		       struct cv_errmsg *err)
{
	struct durable *d = NULL;
	const char *conf;
	struct stat st;
	char *dir = NULL;
	int r;

	token->durable = NULL;
	if (sync_dir != NULL && strcmp(sync_dir, "none") == 0) {
		snprintf(token->sync_describe, sizeof(token->sync_describe),
			 "none (token.sync_dir = none): the module's writes are taken as durable"
			 " when it answers");
		return 0;
	}
	if (sync_dir == NULL || sync_dir[0] == '\0' || strcmp(sync_dir, "auto") == 0) {
		if (!module_is_softhsm(module_path)) {
			snprintf(token->sync_describe, sizeof(token->sync_describe),
				 "none: the module is not SoftHSM (a hardware or network module"
				 " answers once its write is durable; set token.sync_dir for one"
				 " that keeps its objects in local files)");
			return 0;
		}
		conf = getenv("SOFTHSM2_CONF");
		if (conf == NULL || conf[0] == '\0')
			conf = "/etc/softhsm/softhsm2.conf";
		r = softhsm_tokendir(conf, &dir, err);
		if (r < 0)
			goto out;
	} else {
		dir = strdup(sync_dir);
		if (dir == NULL) {
			r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
			goto out;
		}
		conf = NULL;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		r = cv_errmsg_set(err, CV_ERR_CONFIG, "token.sync_dir: %.200s%s%.200s%s is not a"
				  " directory: set token.sync_dir to the token's storage directory,"
				  " or none", dir, conf != NULL ? " (directories.tokendir of " : "",
				  conf != NULL ? conf : "", conf != NULL ? ")" : "");
		goto out;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL || pthread_mutex_init(&d->lock, NULL) != 0) {
		free(d);
		d = NULL;
		r = cv_errmsg_set(err, CV_ERR_NOMEM, "out of memory");
		goto out;
	}
	d->dir = dir;
	dir = NULL;
	d->notify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	r = watches_setup(d);
	d->syncfs_only = r == SETUP_NEVER;
	d->lost = r < 0;
	snprintf(token->sync_describe, sizeof(token->sync_describe),
		 "%s under %.200s%s%.200s%s",
		 d->syncfs_only ? "syncfs" : "fsync of the changed files",
		 d->dir, conf != NULL ? " (directories.tokendir of " : " (token.sync_dir)",
		 conf != NULL ? conf : "", conf != NULL ? ")" : "");
	token->durable = d;
	d = NULL;
	r = 0;
out:
	free(dir);
	return r;
}

void token_durable_release(struct cv_token *token)
{
	struct durable *d = token->durable;

	if (d == NULL)
		return;
	watches_close(d);
	if (d->notify_fd >= 0)
		close(d->notify_fd);
	pthread_mutex_destroy(&d->lock);
	free(d->changed);
	free(d->dir);
	free(d);
	token->durable = NULL;
}

const char *cv_token_sync_describe(const struct cv_token *token)
{
	return token->sync_describe;
}
