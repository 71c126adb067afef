/* Text from outside made safe: the one place that decides what bytes a client, a certificate
 * or an old database may put into storage, a response or a log line.
 *
 * The escaped form, used wherever text must be kept or shown although it is not clean:
 *   - a byte that is not part of well-formed UTF-8 (RFC 3629: no overlong forms, no
 *     surrogates, nothing above U+10FFFF) becomes "\xHH" (upper-case hex);
 *   - a control character (U+0000-U+001F, U+007F) becomes "\xHH";
 *   - a backslash becomes "\\", so the escaped form reads back to the exact bytes;
 *   - with CV_TEXT_ASCII, every byte outside ASCII becomes "\xHH" too; CV_TEXT_LOG also
 *     escapes the space, so a log line is one line of fields split by spaces whatever a
 *     client sent.
 * Clean text (well-formed UTF-8 without control characters) is left as it is by
 * cv_text_safe, so names, descriptions and DNs that were fine never change. */
#ifndef CERTVAULT_TEXT_H
#define CERTVAULT_TEXT_H

#include <stddef.h>

#include <jansson.h>

/* Escape for a field of a log line: printable ASCII only, no space. */
#define CV_TEXT_LOG 1u
/* Escape every byte outside ASCII (a message in a log line: spaces kept). */
#define CV_TEXT_ASCII 4u
/* Keep tab, line feed and carriage return as they are (multi-line free text). */
#define CV_TEXT_KEEP_NEWLINES 2u

/* 1 when len bytes at s are well-formed UTF-8 with no NUL, else 0. */
int cv_text_utf8_valid(const char *s, size_t len);

/* 1 when len bytes at s are well-formed UTF-8 without control characters (tab, line feed
 * and carriage return allowed with CV_TEXT_KEEP_NEWLINES), else 0. */
int cv_text_clean(const char *s, size_t len, unsigned flags);

/* The longest prefix of the len bytes at s that is at most max bytes and does not end inside
 * a UTF-8 character. */
size_t cv_text_cut(const char *s, size_t len, size_t max);

/* Writes the escaped form (above) of the len bytes at s into out (outsize bytes, at least 1),
 * always NUL-terminated; when it does not fit it is cut before the character or escape that
 * would not fit, never inside one. Returns the length written. */
size_t cv_text_escape(const char *s, size_t len, unsigned flags, char *out, size_t outsize);

/* As cv_text_escape, except that clean text (cv_text_clean with flags) is copied unchanged
 * (cut on a character boundary): what a refused request's path segment or a stored value
 * becomes before it is kept or shown. Returns the length written. */
size_t cv_text_safe(const char *s, size_t len, unsigned flags, char *out, size_t outsize);

/* A JSON string of s for a response: s itself when it is well-formed UTF-8, else its
 * escaped form; a stored value that is not renderable never fails a page. NULL only when
 * out of memory; s NULL gives JSON null. */
json_t *cv_text_json(const char *s);

/* 1 when two names are one name to certvault, else 0: equal with ASCII letters folded, every
 * other byte as it is. Certificate names, API token names, truststore aliases and any other
 * name kept unique ignoring case compare this way in C, and with COLLATE NOCASE (the same
 * folding) in SQL: a unique index "(name COLLATE NOCASE)" and this agree. (strcasecmp would
 * follow the locale.) */
int cv_text_name_equal(const char *a, const char *b);

#endif
