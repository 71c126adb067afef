/* cli: what people read (aligned tables, local times) and what they type (secrets at a
 * prompt). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "certvault/cli.h"
#include "certvault/util.h"

#define SECRET_MAX 1024

/* Characters of a UTF-8 string as a terminal shows them (continuation bytes not counted). */
static size_t display_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return w;
}

/* Prints s with control characters (C0, DEL) shown as '?': text from the server must never
 * reach the terminal as an escape sequence. */
static void print_safe(FILE *out, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		fputc(ch < 0x20 || ch == 0x7F ? '?' : ch, out);
	}
}

static const char *status_colour(const char *status)
{
	if (strcmp(status, "valid") == 0 || strcmp(status, "active") == 0 ||
	    strcmp(status, "ok") == 0)
		return "\033[32m";
	if (strcmp(status, "expires_soon") == 0 || strcmp(status, "pending") == 0)
		return "\033[33m";
	if (strcmp(status, "expired") == 0 || strcmp(status, "revoked") == 0 ||
	    strcmp(status, "refused") == 0)
		return "\033[31m";
	if (strcmp(status, "upcoming") == 0)
		return "\033[36m";
	return NULL;
}

void cv_cli_table_print(FILE *out, const char *const *headers, size_t n_cols,
			char *const *cells, size_t n_rows, int status_col, int colour)
{
	size_t width[32] = { 0 };

	if (n_cols > 32)
		n_cols = 32;
	for (size_t c = 0; c < n_cols; c++)
		width[c] = display_width(headers[c]);
	for (size_t r = 0; r < n_rows; r++)
		for (size_t c = 0; c < n_cols; c++) {
			const char *cell = cells[r * n_cols + c];
			size_t w = cell != NULL ? display_width(cell) : 0;
			if (w > width[c])
				width[c] = w;
		}
	for (size_t c = 0; c < n_cols; c++) {
		if (colour)
			fputs("\033[1m", out);
		fputs(headers[c], out);
		if (colour)
			fputs("\033[0m", out);
		if (c + 1 < n_cols)
			fprintf(out, "%*s", (int)(width[c] - display_width(headers[c]) + 2), "");
	}
	fputc('\n', out);
	for (size_t r = 0; r < n_rows; r++) {
		for (size_t c = 0; c < n_cols; c++) {
			const char *cell = cells[r * n_cols + c];
			const char *on = NULL;
			if (cell == NULL)
				cell = "";
			if (colour && (int)c == status_col)
				on = status_colour(cell);
			if (on != NULL)
				fputs(on, out);
			print_safe(out, cell);
			if (on != NULL)
				fputs("\033[0m", out);
			if (c + 1 < n_cols)
				fprintf(out, "%*s", (int)(width[c] - display_width(cell) + 2), "");
		}
		fputc('\n', out);
	}
}

void cv_cli_local_time(const char *s, char *buf, size_t len)
{
	int64_t t;
	time_t tt;
	struct tm tm;

	if (s == NULL) {
		snprintf(buf, len, "%s", "");
		return;
	}
	if (cv_time_parse(s, &t) < 0 || (tt = (time_t)t, localtime_r(&tt, &tm) == NULL) ||
	    strftime(buf, len, "%Y-%m-%d %H:%M %Z", &tm) == 0)
		snprintf(buf, len, "%s", s);
}

int cv_cli_read_secret(const char *prompt, const char *file, char **ret, char *err,
		       size_t errlen)
{
	struct termios old, quiet;
	char *buf = NULL;
	size_t len = 0;
	int fd = -1, echo_off = 0, r = -1;
	FILE *tty = NULL;

	if (file != NULL) {
		if (cv_cli_read_file(file, SECRET_MAX, &buf, &len, err, errlen) < 0)
			return -1;
		/* One line: its line end is not part of the secret. */
		if (len > 0 && buf[len - 1] == '\n')
			buf[--len] = '\0';
		if (len > 0 && buf[len - 1] == '\r')
			buf[--len] = '\0';
		if (strlen(buf) != len || strchr(buf, '\n') != NULL) {
			snprintf(err, errlen, "%s: one line expected", file);
			OPENSSL_clear_free(buf, SECRET_MAX + 1);
			return -1;
		}
		*ret = buf;
		return 0;
	}
	if ((fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY)) < 0 ||
	    (tty = fdopen(fd, "r+")) == NULL) {
		snprintf(err, errlen, "%s: no terminal to ask at; give it in a file", prompt);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((buf = malloc(SECRET_MAX + 2)) == NULL)
		goto out;
	fprintf(tty, "%s: ", prompt);
	fflush(tty);
	if (tcgetattr(fd, &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		echo_off = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
	}
	if (fgets(buf, SECRET_MAX + 2, tty) == NULL) {
		snprintf(err, errlen, "%s: nothing read", prompt);
		goto out;
	}
	len = strlen(buf);
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	else if (len > SECRET_MAX) {
		snprintf(err, errlen, "%s: longer than %d characters", prompt, SECRET_MAX);
		goto out;
	}
	*ret = buf;
	buf = NULL;
	r = 0;
out:
	if (echo_off) {
		tcsetattr(fd, TCSAFLUSH, &old);
		fputc('\n', tty);
	}
	if (buf != NULL)
		OPENSSL_clear_free(buf, SECRET_MAX + 2);
	fclose(tty);
	return r;
}
