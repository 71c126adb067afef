/* POST /v1/backup: the same backup as certvaultd --backup, streamed (admin, audited). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certvault/util.h"
#include "handlers.h"


struct file_stream {
	int fd;
};

static ssize_t file_produce(void *arg, char *buf, size_t max, struct cv_errmsg *err)
{
	struct file_stream *s = arg;
	ssize_t n;

	do
		n = read(s->fd, buf, max);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "reading the backup: %s",
				     strerror(errno));
	return n;
}

static void file_free(void *arg)
{
	struct file_stream *s = arg;

	if (s == NULL)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

int h_backup(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
	     struct cv_errmsg *err)
{
	struct cv_backup_params p = { 0 };
	struct cv_backup_summary sum;
	struct file_stream *s = NULL;
	char dirbuf[4096], tmp[4200], when[CV_TIME_BUFLEN];
	const char *dir;
	int fd = -1, r;

	/* A file backup is SQLite's; a PostgreSQL database has its own tools. */
	if (app->cfg->db_url[0] != '\0')
		return cv_errmsg_set(err, CV_ERR_CONFIG, "backup: the database is PostgreSQL "
				     "(database.url): back it up with pg_dump; POST /v1/backup copies "
				     "an SQLite database only");
	/* Made in the database's directory (the service's own, private, and with room for a
	 * copy of the database), unlinked at once: nothing is left behind, whatever happens. */
	snprintf(dirbuf, sizeof(dirbuf), "%s", app->cfg->db_path);
	dir = dirname(dirbuf);
	snprintf(tmp, sizeof(tmp), "%s/.certvault-backup-tar-XXXXXX", dir);
	fd = mkstemp(tmp);
	if (fd < 0)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "backup: cannot make a file in the "
				     "database's directory: %s", strerror(errno));
	/* Locked before its name goes, so the start-up's sweep of leftovers never takes it. */
	(void)cv_backup_temp_lock(fd);
	unlink(tmp);
	p.db_path = app->cfg->db_path;
	p.tmp_dir = dir;
	p.version = CV_VERSION;
	p.token_label = app->cfg->token_label;
	p.audit_key_label = app->cfg->audit_key_label;
	p.now = req->now;
	r = cv_vault_backup_write(&p, fd, &sum, err);
	if (r < 0)
		goto out;
	/* The record says a copy of everything left: written before a byte of it goes. */
	r = cv_vault_backup_audit(&app->vault, req->audit, &sum);
	if (r < 0) {
		cv_errmsg_set(err, r, "the backup's audit record could not be written");
		goto out;
	}
	if (lseek(fd, 0, SEEK_SET) != 0) {
		r = cv_errmsg_set(err, CV_ERR_INTERNAL, "backup: %s", strerror(errno));
		goto out;
	}
	s = malloc(sizeof(*s));
	if (s == NULL) {
		r = CV_ERR_NOMEM;
		goto out;
	}
	s->fd = fd;
	fd = -1;
	res->status = 200;
	res->content_type = "application/x-tar";
	res->stream.produce = file_produce;
	res->stream.free = file_free;
	res->stream.arg = s;
	s = NULL;
	if (cv_time_rfc3339(req->now, when, sizeof(when)) == 0) {
		when[10] = '\0'; /* the date */
		snprintf(res->disposition, sizeof(res->disposition),
			 "attachment; filename=\"certvault-backup-%s.tar\"", when);
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	file_free(s);
	return r;
}
