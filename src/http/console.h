/* Internal to the http module: the console's files, compiled in (see src/console/embed.cmake,
 * which writes the table at build time). */
#ifndef CV_HTTP_CONSOLE_H
#define CV_HTTP_CONSOLE_H

#include <stddef.h>

struct console_file {
	const char *name;          /* "index.html", or an asset named by its content hash */
	const unsigned char *data;
	size_t len;
	const char *type;          /* Content-Type */
};
extern const struct console_file console_files[];
extern const size_t console_n_files;

#endif
