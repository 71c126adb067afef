/* jansson set up for secrets: every block it frees is wiped first. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "certvault/http.h"

/* Each block carries its size in front, so free can wipe it all. */
struct head {
	size_t size;
	max_align_t align;
};

static void *wiping_malloc(size_t size)
{
	unsigned char *p = malloc(offsetof(struct head, align) + size);

	if (p == NULL)
		return NULL;
	((struct head *)p)->size = size;
	return p + offsetof(struct head, align);
}

static void wiping_free(void *ptr)
{
	unsigned char *p;

	if (ptr == NULL)
		return;
	p = (unsigned char *)ptr - offsetof(struct head, align);
	OPENSSL_cleanse(p, offsetof(struct head, align) + ((struct head *)p)->size);
	free(p);
}

void cv_http_json_harden(void)
{
	json_set_alloc_funcs(wiping_malloc, wiping_free);
}

/* The compact writer (cv_http_json_dump). jansson's json_dumpb spends most of a list answer's
 * time around the text rather than in it: a cycle check that formats every object's and
 * array's address with snprintf into a hash table, and a callback per piece. The answers are
 * trees certvault built itself (no cycles; strings already valid UTF-8, as jansson checks
 * when a string is set), so a plain walk writes the same bytes. */
struct out {
	char *buf;
	size_t len, cap;
	int failed;
	json_malloc_t m;   /* jansson's allocator (the wiping one once hardened): the text is */
	json_free_t f;     /* released as jansson's own dumps are */
};

static int out_room(struct out *o, size_t more)
{
	size_t cap;
	char *grown;

	if (o->failed)
		return -1;
	if (o->cap - o->len >= more)
		return 0;
	cap = o->cap * 2;
	if (cap - o->len < more)
		cap = o->len + more + 1024;
	/* Through jansson's allocator: once hardened, the old block is wiped as it is freed. */
	grown = o->m(cap);
	if (grown == NULL) {
		o->failed = 1;
		return -1;
	}
	memcpy(grown, o->buf, o->len);
	o->f(o->buf);
	o->buf = grown;
	o->cap = cap;
	return 0;
}

static void out_put(struct out *o, const char *s, size_t n)
{
	if (out_room(o, n) < 0)
		return;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

/* As jansson escapes without flags: '"', '\\' and the control characters, nothing else (UTF-8
 * passes through). */
static void out_string(struct out *o, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, start = 0;
	char esc[6];
	unsigned char c;

	out_put(o, "\"", 1);
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c != '"' && c != '\\' && c >= 0x20)
			continue;
		out_put(o, s + start, i - start);
		start = i + 1;
		switch (c) {
		case '"': out_put(o, "\\\"", 2); break;
		case '\\': out_put(o, "\\\\", 2); break;
		case '\b': out_put(o, "\\b", 2); break;
		case '\f': out_put(o, "\\f", 2); break;
		case '\n': out_put(o, "\\n", 2); break;
		case '\r': out_put(o, "\\r", 2); break;
		case '\t': out_put(o, "\\t", 2); break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			out_put(o, esc, 6);
		}
	}
	out_put(o, s + start, n - start);
	out_put(o, "\"", 1);
}

/* Deeper than this and the answer is left to jansson (none of certvault's is). */
#define OUT_DEPTH_MAX 32

static void out_value(struct out *o, const json_t *v, int depth)
{
	char num[32], *text;
	const char *key;
	json_t *item;
	size_t i, n;
	int first;

	if (depth > OUT_DEPTH_MAX) {
		o->failed = 1;
		return;
	}
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		out_put(o, "{", 1);
		first = 1;
		json_object_foreach((json_t *)v, key, item) {
			if (!first)
				out_put(o, ",", 1);
			first = 0;
			out_string(o, key, strlen(key));
			out_put(o, ":", 1);
			out_value(o, item, depth + 1);
		}
		out_put(o, "}", 1);
		break;
	case JSON_ARRAY:
		out_put(o, "[", 1);
		n = json_array_size(v);
		for (i = 0; i < n; i++) {
			if (i > 0)
				out_put(o, ",", 1);
			out_value(o, json_array_get(v, i), depth + 1);
		}
		out_put(o, "]", 1);
		break;
	case JSON_STRING:
		out_string(o, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		n = (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
				     json_integer_value(v));
		out_put(o, num, n);
		break;
	case JSON_REAL:
		/* jansson's own digits for a real (rare in answers). */
		text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		if (text == NULL) {
			o->failed = 1;
			return;
		}
		out_put(o, text, strlen(text));
		o->f(text);
		break;
	case JSON_TRUE:
		out_put(o, "true", 4);
		break;
	case JSON_FALSE:
		out_put(o, "false", 5);
		break;
	case JSON_NULL:
		out_put(o, "null", 4);
		break;
	}
}

size_t cv_http_json_dump(const json_t *json, char **ret_text)
{
	/* The size of this thread's last answer and a quarter: one block, seldom a copy. */
	static _Thread_local size_t guess = 4096;
	struct out o = { NULL, 0, 0, 0, NULL, NULL };

	json_get_alloc_funcs(&o.m, &o.f);
	o.buf = o.m(guess);
	if (o.buf == NULL)
		return 0;
	o.cap = guess;
	out_value(&o, json, 0);
	if (o.failed) {
		o.f(o.buf);
		return 0;
	}
	guess = o.len + o.len / 4 > 4096 ? o.len + o.len / 4 : 4096;
	*ret_text = o.buf;
	return o.len;
}
