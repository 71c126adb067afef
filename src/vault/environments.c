/* Environment use cases: create or change, read, list, delete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "certvault/util.h"
#include "internal.h"

/* A display name is shown as it is: 1 to CV_DISPLAY_NAME_MAX characters of UTF-8 text (the
 * JSON layer made sure of UTF-8), spaces allowed, no control characters (C0, DEL, C1), and
 * not only spaces. */
static int display_name_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t chars = 0;
	int visible = 0;

	for (; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return 0;
		/* C1 controls are U+0080..U+009F: 0xC2 0x80..0x9F in UTF-8. */
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			return 0;
		if ((*p & 0xc0) != 0x80)
			chars++;
		if (*p != ' ')
			visible = 1;
	}
	return chars >= 1 && chars <= CV_DISPLAY_NAME_MAX && visible;
}

int cv_vault_environment_put(struct cv_vault *v, struct cv_audit *audit, const char *name,
			     const char *display_name, const char *description, int64_t now,
			     int *ret_created, char ret_name[65], struct cv_errmsg *err)
{
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	if (display_name == NULL)
		display_name = name;
	if (!display_name_valid(display_name))
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "display_name must be 1 to %d characters, not only spaces, and"
				     " no control characters",
				     CV_DISPLAY_NAME_MAX);
	if (description == NULL)
		description = "";
	if (strlen(description) > CV_DESCRIPTION_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST, "description is longer than %d bytes",
				     CV_DESCRIPTION_MAX);
	/* For the record only: the values replaced, as read just before. */
	if (audit != NULL) {
		struct cv_environment_record *old = NULL;
		json_t *c = json_object();

		(void)cv_store_environment_get(v->store, name, &old);
		if (c != NULL && (old == NULL || strcmp(old->display_name, display_name) != 0))
			json_object_set_new(c, "display_name",
					    vault_audit_change(old != NULL
								       ? json_string(old->display_name)
								       : NULL,
							       json_string(display_name)));
		if (c != NULL && (old == NULL || strcmp(old->description, description) != 0))
			json_object_set_new(c, "description",
					    vault_audit_change(old != NULL
								       ? vault_audit_text(old->description)
								       : NULL,
							       vault_audit_text(description)));
		vault_audit_changes(audit, c);
		cv_store_environment_free(old);
	}
	r = cv_store_environment_put(v->store, name, display_name, description, now, ret_created,
				     ret_name, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the environment");
	return 0;
}

int cv_vault_environment_get(struct cv_vault *v, const char *name,
			     struct cv_environment_record **ret_rec, struct cv_errmsg *err)
{
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	r = cv_store_environment_get(v->store, name, ret_rec);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no environment named %s", name);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_environment_list(struct cv_vault *v, const char *after, unsigned limit,
			      struct cv_environment_record **ret_recs, size_t *ret_n,
			      struct cv_errmsg *err)
{
	return cv_vault_environment_list_scoped(v, after, limit, NULL, ret_recs, ret_n, err);
}

int cv_vault_environment_list_scoped(struct cv_vault *v, const char *after, unsigned limit,
				     const struct cv_scope_objects *scope,
				     struct cv_environment_record **ret_recs, size_t *ret_n,
				     struct cv_errmsg *err)
{
	int r;

	r = cv_store_environment_list_scoped(v->store, after, limit, scope, ret_recs, ret_n);
	if (r < 0)
		return cv_errmsg_set(err, r, "the database could not be read");
	return 0;
}

int cv_vault_environment_delete(struct cv_vault *v, struct cv_audit *audit, const char *name,
				struct cv_errmsg *err)
{
	struct cv_conflict conflict = { "", "", 0, 0 };
	int r;

	r = vault_check_name(name, err);
	if (r < 0)
		return r;
	r = cv_store_environment_remove(v->store, name, &conflict, vault_audit_done(audit));
	vault_audit_written(audit, r);
	if (r == CV_ERR_NOT_FOUND)
		return cv_errmsg_set(err, r, "no environment named %s", name);
	if (r == CV_ERR_IN_USE)
		return cv_errmsg_set(err, r, "environment %s is in use (%s): move or delete those"
				     " first", name, conflict.detail);
	if (r < 0)
		return vault_write_errmsg(err, r, "the database refused the deletion");
	return 0;
}

int vault_check_environments(const char *const *names, size_t n, struct cv_errmsg *err)
{
	size_t i, j;

	if (n > CV_CERT_ENVIRONMENTS_MAX)
		return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
				     "a certificate names at most %d environments",
				     CV_CERT_ENVIRONMENTS_MAX);
	for (i = 0; i < n; i++) {
		if (!cv_name_valid(names[i]))
			return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
					     "environment %zu must be 1 to %d letters, digits or"
					     " hyphens", i + 1, CV_NAME_MAX);
		/* Names are ASCII: strcasecmp is the rule's "ignoring case". */
		for (j = 0; j < i; j++)
			if (strcasecmp(names[i], names[j]) == 0)
				return cv_errmsg_set(err, CV_ERR_BAD_REQUEST,
						     "environment %s is listed twice", names[i]);
	}
	return 0;
}
