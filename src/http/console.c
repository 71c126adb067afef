/* Handlers for the web console's files: / and /console go to /console/, which is index.html
 * (never cached: it names the assets of this build), and /console/<asset> (cached for a year:
 * its name holds its content's hash). Every answer carries the console's CSP. */
#include <stdlib.h>
#include <string.h>

#include "console.h"
#include "handlers.h"

static int serve(const struct console_file *f, struct cv_response *res)
{
	res->raw = malloc(f->len);
	if (res->raw == NULL)
		return CV_ERR_NOMEM;
	memcpy(res->raw, f->data, f->len);
	res->raw_len = f->len;
	res->content_type = f->type;
	res->status = 200;
	return 0;
}

static const struct console_file *find(const char *name)
{
	size_t i;

	for (i = 0; i < console_n_files; i++)
		if (strcmp(console_files[i].name, name) == 0)
			return &console_files[i];
	return NULL;
}

int h_console_redirect(struct cv_app *app, const struct cv_request *req,
		       struct cv_response *res, struct cv_errmsg *err)
{
	(void)app;
	(void)req;
	(void)err;
	res->console = 1;
	res->status = 302;
	res->location = "/console/";
	return 0;
}

int h_console_index(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err)
{
	const struct console_file *f = find("index.html");

	(void)app;
	(void)req;
	res->console = 1;
	if (f == NULL)
		return cv_errmsg_set(err, CV_ERR_INTERNAL, "the console was not built in");
	return serve(f, res);
}

int h_console_asset(struct cv_app *app, const struct cv_request *req, struct cv_response *res,
		    struct cv_errmsg *err)
{
	const struct console_file *f = find(req->params[0]);

	(void)app;
	res->console = 1;
	if (f == NULL || strcmp(f->name, "index.html") == 0)
		return cv_errmsg_set(err, CV_ERR_NOT_FOUND, "no such console file");
	res->cache_control = "public, max-age=31536000, immutable";
	return serve(f, res);
}
