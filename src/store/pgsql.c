/* store: SQLite's dialect -> PostgreSQL's, one statement at a time (pgsql.h says what is
 * translated and what is refused, and why). Pure: no I/O, no global state.
 *
 * The statement is cut into tokens first (so nothing inside a literal, a quoted identifier,
 * a comment or a dollar-quoted body is ever looked at), then each significant token is
 * either kept, replaced or refused, looking at its neighbours where a rule needs them. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsql.h"

enum tok_type {
	T_WS,
	T_COMMENT,
	T_STRING,    /* '...', E'...', $tag$...$tag$: copied as they are */
	T_BLOB,      /* X'00ff' */
	T_QIDENT,    /* "..." */
	T_BACKTICK,  /* `...`: SQLite's other quoted identifier */
	T_IDENT,     /* a word: keyword or name */
	T_NUMBER,
	T_PARAM,
	T_PUNCT,
	T_SEMI,
};

struct tok {
	const char *s;
	size_t n;
	enum tok_type type;
	int param;            /* T_PARAM: its number, once assigned */
	const char *repl;     /* NULL: the token as written; "": dropped */
	const char *after;    /* written after the token (and after repl) */
};

struct toks {
	struct tok *v;
	size_t n, cap;
};

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	char *p;
	size_t cap;

	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 128;
		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static int fail(char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && err_len > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* SQLite's identifier characters (tokenize.c's IdChar): letters, digits, '_', '$' and every
 * byte of a multi-byte UTF-8 character. */
static int id_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

static int id_start(unsigned char c)
{
	return isalpha(c) || c == '_' || c >= 0x80;
}

static int push(struct toks *t, const char *s, size_t n, enum tok_type type)
{
	struct tok *v;
	size_t cap;

	if (t->n == t->cap) {
		cap = t->cap ? t->cap * 2 : 64;
		v = realloc(t->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		t->v = v;
		t->cap = cap;
	}
	memset(&t->v[t->n], 0, sizeof(t->v[0]));
	t->v[t->n].s = s;
	t->v[t->n].n = n;
	t->v[t->n].type = type;
	t->n++;
	return 0;
}

/* Length of a quoted run starting at s[0] == q, the quote doubled inside; 0 if unterminated.
 * backslash: E'' strings, where \x escapes the next byte. */
static size_t quoted_len(const char *s, char q, int backslash)
{
	size_t i = 1;

	for (;;) {
		if (s[i] == '\0')
			return 0;
		if (backslash && s[i] == '\\' && s[i + 1] != '\0') {
			i += 2;
			continue;
		}
		if (s[i] == q) {
			if (s[i + 1] == q) {
				i += 2;
				continue;
			}
			return i + 1;
		}
		i++;
	}
}

/* A dollar-quote opener at s ("$$" or "$tag$", the tag not starting with a digit): the
 * opener's length, else 0. */
static size_t dollar_tag_len(const char *s)
{
	size_t i = 1;

	if (s[1] == '$')
		return 2;
	if (!id_start((unsigned char)s[1]))
		return 0;
	while (isalnum((unsigned char)s[i]) || s[i] == '_' || (unsigned char)s[i] >= 0x80)
		i++;
	return s[i] == '$' ? i + 1 : 0;
}

/* Cuts the first statement of sql into tokens, up to and including its ';'. Returns the
 * bytes consumed, or -1 (err set). */
static long lex(const char *sql, struct toks *t, char *err, size_t err_len)
{
	const char *p = sql;
	size_t n, tag;
	const char *end;

	while (*p != '\0') {
		unsigned char c = (unsigned char)*p;

		if (isspace(c)) {
			for (n = 1; p[n] != '\0' && isspace((unsigned char)p[n]); n++)
				;
			if (push(t, p, n, T_WS) < 0)
				goto oom;
		} else if (c == '-' && p[1] == '-') {
			end = strchr(p, '\n');
			n = end != NULL ? (size_t)(end - p) + 1 : strlen(p);
			if (push(t, p, n, T_COMMENT) < 0)
				goto oom;
		} else if (c == '/' && p[1] == '*') {
			end = strstr(p + 2, "*/");
			/* SQLite ends an unterminated comment at the end of the text. */
			n = end != NULL ? (size_t)(end - p) + 2 : strlen(p);
			if (push(t, p, n, T_COMMENT) < 0)
				goto oom;
		} else if (c == '\'') {
			if ((n = quoted_len(p, '\'', 0)) == 0)
				return fail(err, err_len, "unterminated string literal");
			if (push(t, p, n, T_STRING) < 0)
				goto oom;
		} else if (c == '"' || c == '`') {
			if ((n = quoted_len(p, (char)c, 0)) == 0)
				return fail(err, err_len, "unterminated quoted identifier");
			if (push(t, p, n, c == '"' ? T_QIDENT : T_BACKTICK) < 0)
				goto oom;
		} else if ((c == 'E' || c == 'e') && p[1] == '\'') {
			if ((n = quoted_len(p + 1, '\'', 1)) == 0)
				return fail(err, err_len, "unterminated string literal");
			if (push(t, p, n + 1, T_STRING) < 0)
				goto oom;
		} else if ((c == 'X' || c == 'x') && p[1] == '\'') {
			if ((n = quoted_len(p + 1, '\'', 0)) == 0)
				return fail(err, err_len, "unterminated blob literal");
			if (push(t, p, n + 1, T_BLOB) < 0)
				goto oom;
		} else if (c == '$' && (tag = dollar_tag_len(p)) > 0) {
			const char *close = p + tag;

			for (;;) {
				close = strchr(close, '$');
				if (close == NULL)
					return fail(err, err_len, "unterminated dollar-quoted string");
				if (strncmp(close, p, tag) == 0)
					break;
				close++;
			}
			if (push(t, p, (size_t)(close - p) + tag, T_STRING) < 0)
				goto oom;
		} else if (c == '?' || c == '$' ||
			   ((c == ':' || c == '@') && id_char((unsigned char)p[1]))) {
			n = 1;
			if (c == '?' || (c == '$' && isdigit((unsigned char)p[1]))) {
				while (isdigit((unsigned char)p[n]))
					n++;
			} else {
				while (id_char((unsigned char)p[n]))
					n++;
			}
			if (c == '$' && n == 1)
				return fail(err, err_len, "a lone '$' is not a parameter");
			if (push(t, p, n, T_PARAM) < 0)
				goto oom;
		} else if (id_start(c)) {
			for (n = 1; id_char((unsigned char)p[n]); n++)
				;
			if (push(t, p, n, T_IDENT) < 0)
				goto oom;
		} else if (isdigit(c) || (c == '.' && isdigit((unsigned char)p[1]))) {
			for (n = 1; isalnum((unsigned char)p[n]) || p[n] == '.' || p[n] == '_' ||
				    ((p[n] == '+' || p[n] == '-') &&
				     (p[n - 1] == 'e' || p[n - 1] == 'E'));
			     n++)
				;
			if (push(t, p, n, T_NUMBER) < 0)
				goto oom;
		} else if (c == ';') {
			if (push(t, p, 1, T_SEMI) < 0)
				goto oom;
			p++;
			break;
		} else {
			static const char *const multi[] = {
				"->>", "::", "==", "||", "<=", ">=", "!=", "<>", "->", "<<", ">>",
			};
			size_t i;

			n = 1;
			for (i = 0; i < sizeof(multi) / sizeof(multi[0]); i++) {
				if (strncmp(p, multi[i], strlen(multi[i])) == 0) {
					n = strlen(multi[i]);
					break;
				}
			}
			if (push(t, p, n, T_PUNCT) < 0)
				goto oom;
		}
		p += t->v[t->n - 1].n;
	}
	return (long)(p - sql);
oom:
	return fail(err, err_len, "out of memory");
}

static int is_word(const struct tok *k, const char *word)
{
	return k->type == T_IDENT && k->n == strlen(word) && strncasecmp(k->s, word, k->n) == 0;
}

static int is_punct(const struct tok *k, const char *p)
{
	return k->type == T_PUNCT && k->n == strlen(p) && strncmp(k->s, p, k->n) == 0;
}

static int significant(const struct tok *k)
{
	return k->type != T_WS && k->type != T_COMMENT && k->type != T_SEMI;
}

/* The index of the next significant token after i, or n. */
static size_t next_sig(const struct toks *t, size_t i)
{
	for (i++; i < t->n && !significant(&t->v[i]); i++)
		;
	return i;
}

/* SQLite's functions (called as f(...)) that PostgreSQL lacks or has with another meaning. */
static const struct {
	const char *name;
	const char *hint;
} refused_calls[] = {
	{ "json_each", "json_array_elements" },
	{ "json_tree", NULL },
	{ "json_extract", "->> or #>>" },
	{ "json_object", "json_build_object" },
	{ "json_array", "json_build_array" },
	{ "json_group_array", "json_agg" },
	{ "json_group_object", "json_object_agg" },
	{ "json_set", NULL },
	{ "json_insert", NULL },
	{ "json_replace", NULL },
	{ "json_remove", NULL },
	{ "json_patch", NULL },
	{ "json_valid", NULL },
	{ "json_quote", "to_json" },
	{ "json_type", "json_typeof" },
	{ "strftime", "to_char(... AT TIME ZONE 'UTC')" },
	{ "unixepoch", "extract(epoch FROM ...)" },
	{ "datetime", NULL },
	{ "julianday", NULL },
	{ "group_concat", "string_agg" },
	{ "iif", "CASE" },
	{ "printf", "format" },
	{ "instr", "strpos" },
	{ "last_insert_rowid", NULL },
	{ "total_changes", NULL },
	{ "randomblob", NULL },
};

static int refuse_call(const char *name, const char *hint, char *err, size_t err_len)
{
	if (hint != NULL)
		return fail(err, err_len,
			    "SQLite's %s() has no PostgreSQL translation (there: %s); write the "
			    "query for both engines (cvdb_pick)", name, hint);
	return fail(err, err_len,
		    "SQLite's %s() has no PostgreSQL translation; write the query for both "
		    "engines (cvdb_pick)", name);
}

/* The number of top-level arguments of the call whose '(' is token i; -1 if unclosed. */
static int call_args(const struct toks *t, size_t i)
{
	int depth = 0, args = 0, any = 0;

	for (; i < t->n; i++) {
		const struct tok *k = &t->v[i];

		if (is_punct(k, "(")) {
			if (depth++ == 0)
				continue;
		} else if (is_punct(k, ")")) {
			if (--depth == 0)
				return any ? args + 1 : 0;
		} else if (depth == 1 && is_punct(k, ",")) {
			args++;
		}
		if (depth >= 1 && significant(k))
			any = 1;
	}
	return -1;
}

/* Words that end a LIKE's pattern operand when they follow it. */
static int ends_operand(const struct tok *k)
{
	static const char *const words[] = {
		"AND", "OR", "THEN", "WHEN", "ELSE", "END", "ORDER", "GROUP", "LIMIT",
		"HAVING", "UNION", "EXCEPT", "INTERSECT", "WHERE", "FROM", "AS", "OFFSET",
		"RETURNING", "ON", "JOIN", "LEFT", "INNER", "CROSS", "IS", "NOT", "WINDOW",
	};
	size_t i;

	if (!significant(k))
		return 1; /* the end of the statement */
	if (is_punct(k, ")") || is_punct(k, ","))
		return 1;
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (is_word(k, words[i]))
			return 1;
	return 0;
}

/* LIKE at token i becomes ILIKE; PostgreSQL's LIKE escapes with '\' unless told otherwise,
 * SQLite's with nothing, so a LIKE without ESCAPE gets ESCAPE ''. That needs the end of the
 * pattern: a one-token pattern (a parameter, a literal, a possibly qualified name) is found
 * here; a longer expression must say ESCAPE itself. */
static int like(struct toks *t, size_t i, char *err, size_t err_len)
{
	size_t j, e, k;
	int depth = 0;

	t->v[i].repl = "ILIKE";
	j = next_sig(t, i);
	if (j >= t->n)
		return fail(err, err_len, "LIKE without a pattern");
	e = j;
	if (t->v[j].type == T_IDENT || t->v[j].type == T_QIDENT) {
		while ((k = next_sig(t, e)) < t->n && is_punct(&t->v[k], ".") &&
		       next_sig(t, k) < t->n)
			e = next_sig(t, k);
	}
	k = next_sig(t, e);
	if (k < t->n && is_word(&t->v[k], "ESCAPE"))
		return 0;
	if ((t->v[j].type == T_PARAM || t->v[j].type == T_STRING ||
	     t->v[j].type == T_IDENT || t->v[j].type == T_QIDENT) &&
	    (k >= t->n || ends_operand(&t->v[k]))) {
		t->v[e].after = " ESCAPE ''";
		return 0;
	}
	/* An expression: its own ESCAPE must come before the condition ends. */
	for (k = j; k < t->n; k++) {
		if (is_punct(&t->v[k], "("))
			depth++;
		else if (is_punct(&t->v[k], ")") && --depth < 0)
			break;
		else if (depth == 0 && is_word(&t->v[k], "ESCAPE"))
			return 0;
		else if (depth == 0 && (is_word(&t->v[k], "AND") || is_word(&t->v[k], "OR") ||
					is_punct(&t->v[k], ",")))
			break;
	}
	return fail(err, err_len,
		    "LIKE with an expression as its pattern needs an ESCAPE clause (SQLite's "
		    "LIKE has no escape character, PostgreSQL's has '\\')");
}

/* SQLite's numbering (expr.c, sqlite3ExprAssignVarNumber): "?" takes the highest number so
 * far plus one; "?N" takes N (and the name "?N" if N had none); a name takes the number it
 * had, else the highest so far plus one. */
static int number_params(struct toks *t, struct sqldb_pg_sql *out, char *err, size_t err_len)
{
	int nvar = 0, cap = 0, x, j;
	char **names = NULL, **grown;
	size_t i;

	for (i = 0; i < t->n; i++) {
		struct tok *k = &t->v[i];
		int add = 0;
		char name[80];

		if (k->type != T_PARAM)
			continue;
		if (k->n >= sizeof(name))
			goto too_long;
		memcpy(name, k->s, k->n);
		name[k->n] = '\0';
		if (k->n == 1) { /* "?" */
			x = ++nvar;
		} else if (name[0] == '?' || name[0] == '$') {
			long v;
			char *endp;

			if (name[0] == '$' && !isdigit((unsigned char)name[1]))
				goto named;
			v = strtol(name + 1, &endp, 10);
			if (*endp != '\0' || v < 1 || v > SQLDB_PG_MAX_PARAMS)
				goto free_fail_range;
			x = (int)v;
			name[0] = '?'; /* $N is ?N */
			if (x > nvar) {
				nvar = x;
				add = 1;
			} else if (names[x - 1] == NULL) {
				add = 1;
			}
		} else {
named:
			x = 0;
			for (j = 0; j < nvar; j++) {
				if (names[j] != NULL && strcmp(names[j], name) == 0) {
					x = j + 1;
					break;
				}
			}
			if (x == 0) {
				x = ++nvar;
				add = 1;
			}
		}
		if (nvar > SQLDB_PG_MAX_PARAMS)
			goto free_fail_range;
		if (nvar > cap) {
			int ncap = cap ? cap : 8;

			while (ncap < nvar)
				ncap *= 2;
			grown = realloc(names, (size_t)ncap * sizeof(*names));
			if (grown == NULL)
				goto free_oom;
			memset(grown + cap, 0, (size_t)(ncap - cap) * sizeof(*names));
			names = grown;
			cap = ncap;
		}
		if (add && names[x - 1] == NULL && (names[x - 1] = strdup(name)) == NULL)
			goto free_oom;
		k->param = x;
	}
	if (nvar > 0 && ((out->used = calloc((size_t)nvar, 1)) == NULL ||
			 (out->null_test_only = calloc((size_t)nvar, 1)) == NULL))
		goto free_oom;
	for (j = 0; j < nvar; j++)
		out->null_test_only[j] = 1;
	for (i = 0; i < t->n; i++) {
		size_t a, b;

		if (t->v[i].type != T_PARAM)
			continue;
		out->used[t->v[i].param - 1] = 1;
		/* followed by IS [NOT] NULL (as written: IS NOT is not rewritten before NULL) */
		a = next_sig(t, i);
		b = a < t->n && is_word(&t->v[a], "IS") ? next_sig(t, a) : t->n;
		if (b < t->n && is_word(&t->v[b], "NOT"))
			b = next_sig(t, b);
		if (!(b < t->n && is_word(&t->v[b], "NULL")))
			out->null_test_only[t->v[i].param - 1] = 0;
	}
	for (j = 0; j < nvar; j++)
		if (!out->used[j])
			out->null_test_only[j] = 0;
	out->n_params = nvar;
	out->names = names;
	return 0;
too_long:
	fail(err, err_len, "a parameter name longer than 78 bytes");
	goto free_names;
free_fail_range:
	fail(err, err_len, "a parameter number outside 1..%d", SQLDB_PG_MAX_PARAMS);
	goto free_names;
free_oom:
	fail(err, err_len, "out of memory");
free_names:
	for (j = 0; j < cap; j++)
		free(names[j]);
	free(names);
	return -1;
}

/* BEGIN/END/COMMIT/ROLLBACK/PRAGMA/REPLACE/INSERT OR at the head of the statement. Returns
 * 1 when the whole statement was written to out, 0 to go on token by token, -1 refused. */
static int statement_head(struct toks *t, size_t first, struct sqldb_pg_sql *out,
			  int *on_conflict, struct sbuf *b, char *err, size_t err_len)
{
	const struct tok *k = &t->v[first];
	size_t j = next_sig(t, first), i;

	if (is_word(k, "BEGIN")) {
		const struct tok *m = j < t->n ? &t->v[j] : NULL;

		if (m == NULL || is_word(m, "DEFERRED") || is_word(m, "TRANSACTION")) {
			sb_str(b, "BEGIN ISOLATION LEVEL REPEATABLE READ");
			out->kind = SQLDB_PG_BEGIN_READ;
			return 1;
		}
		if (is_word(m, "IMMEDIATE") || is_word(m, "EXCLUSIVE")) {
			sb_str(b, SQLDB_PG_BEGIN_WRITE_SQL);
			out->kind = SQLDB_PG_BEGIN_WRITE;
			return 1;
		}
		return 0; /* PostgreSQL's own BEGIN ISOLATION LEVEL ... */
	}
	if (is_word(k, "COMMIT") || is_word(k, "END")) {
		if (j < t->n && !is_word(&t->v[j], "TRANSACTION") && !is_word(&t->v[j], "WORK"))
			return fail(err, err_len, "COMMIT/END followed by something");
		sb_str(b, "COMMIT");
		out->kind = SQLDB_PG_COMMIT;
		return 1;
	}
	if (is_word(k, "ROLLBACK")) {
		for (i = j; i < t->n; i = next_sig(t, i))
			if (is_word(&t->v[i], "TO"))
				return 0; /* ROLLBACK TO SAVEPOINT: the same in both */
		sb_str(b, "ROLLBACK");
		out->kind = SQLDB_PG_ROLLBACK;
		return 1;
	}
	if (is_word(k, "PRAGMA"))
		return fail(err, err_len, "PRAGMA is SQLite's own; PostgreSQL has none");
	if (is_word(k, "REPLACE"))
		return fail(err, err_len,
			    "REPLACE INTO has no PostgreSQL translation; write the query for both "
			    "engines (INSERT ... ON CONFLICT DO UPDATE there)");
	if (is_word(k, "INSERT") && j < t->n && is_word(&t->v[j], "OR")) {
		size_t m = next_sig(t, j);

		if (m < t->n && is_word(&t->v[m], "IGNORE")) {
			t->v[j].repl = "";
			t->v[m].repl = "";
			*on_conflict = 1;
			return 0;
		}
		return fail(err, err_len,
			    "INSERT OR %.*s has no PostgreSQL translation; write the query for "
			    "both engines (INSERT ... ON CONFLICT DO UPDATE there)",
			    m < t->n && t->v[m].n < 16 ? (int)t->v[m].n : 0,
			    m < t->n ? t->v[m].s : "");
	}
	if (is_word(k, "INSERT") || is_word(k, "UPDATE") || is_word(k, "DELETE"))
		out->writes = 1;
	if (is_word(k, "WITH")) {
		for (i = j; i < t->n; i++)
			if (is_word(&t->v[i], "INSERT") || is_word(&t->v[i], "UPDATE") ||
			    is_word(&t->v[i], "DELETE"))
				out->writes = 1;
	}
	if (is_word(k, "CREATE")) {
		for (i = j; i < t->n && i < first + 16; i = next_sig(t, i)) {
			if (is_word(&t->v[i], "TRIGGER")) {
				for (; i < t->n; i++)
					if (is_word(&t->v[i], "BEGIN"))
						return fail(err, err_len,
							    "a SQLite trigger (BEGIN ... END "
							    "body) has no PostgreSQL "
							    "translation; write it for both "
							    "engines");
				break;
			}
		}
	}
	return 0;
}

/* One significant token in the body of the statement. */
static int body_token(struct toks *t, size_t i, int *ret_blobs, char *err, size_t err_len)
{
	struct tok *k = &t->v[i];
	size_t j = next_sig(t, i), m;
	size_t r;

	switch (k->type) {
	case T_PUNCT:
		if (is_punct(k, "=="))
			k->repl = "=";
		return 0;
	case T_BLOB:
		for (r = 2; r + 1 < k->n; r++)
			if (!isxdigit((unsigned char)k->s[r]))
				return fail(err, err_len, "a blob literal with a non-hex digit");
		if ((k->n - 3) % 2 != 0)
			return fail(err, err_len, "a blob literal with an odd number of digits");
		(*ret_blobs)++;
		return 0;
	case T_IDENT:
		break;
	default:
		return 0;
	}
	if (is_word(k, "COLLATE") && j < t->n) {
		if (is_word(&t->v[j], "NOCASE")) {
			k->repl = "::citext";
			t->v[j].repl = "";
		} else if (is_word(&t->v[j], "BINARY")) {
			t->v[j].repl = "\"C\"";
		} else if (is_word(&t->v[j], "RTRIM")) {
			return fail(err, err_len, "COLLATE RTRIM has no PostgreSQL translation");
		}
		return 0;
	}
	/* SQLite's index hints after a table name: hints only, PostgreSQL plans for itself */
	if (is_word(k, "NOT") && j < t->n && is_word(&t->v[j], "INDEXED")) {
		k->repl = "";
		t->v[j].repl = "";
		return 0;
	}
	if (is_word(k, "INDEXED") && k->repl == NULL) {
		m = j < t->n ? next_sig(t, j) : t->n;
		if (j >= t->n || !is_word(&t->v[j], "BY") || m >= t->n)
			return fail(err, err_len, "INDEXED without BY <index>");
		k->repl = "";
		t->v[j].repl = "";
		t->v[m].repl = "";
		return 0;
	}
	if (is_word(k, "LIKE"))
		return like(t, i, err, err_len);
	/* (not MATCH: SQLite's is full-text search, which the store does not use, and
	 * PostgreSQL's DDL says MATCH FULL) */
	if (is_word(k, "GLOB") || is_word(k, "REGEXP"))
		return fail(err, err_len,
			    "SQLite's %s has no PostgreSQL translation (there: LIKE with escaping, "
			    "or ~); write the query for both engines (cvdb_pick)",
			    is_word(k, "GLOB") ? "GLOB" : "REGEXP");
	if (is_word(k, "rowid") || is_word(k, "_rowid_"))
		return fail(err, err_len,
			    "SQLite's rowid has no PostgreSQL translation; name the id column");
	if (is_word(k, "IS") && j < t->n) {
		static const char *const kept[] = {
			"NULL", "TRUE", "FALSE", "UNKNOWN", "DISTINCT", "DOCUMENT", "NORMALIZED",
			"NFC", "NFD", "NFKC", "NFKD", "JSON", "OF",
		};
		int negated = is_word(&t->v[j], "NOT");
		size_t x;

		m = negated ? next_sig(t, j) : j;
		if (m >= t->n)
			return fail(err, err_len, "IS without an operand");
		for (x = 0; x < sizeof(kept) / sizeof(kept[0]); x++)
			if (is_word(&t->v[m], kept[x]))
				return 0;
		if (negated) {
			k->repl = "IS DISTINCT FROM";
			t->v[j].repl = "";
		} else {
			k->repl = "IS NOT DISTINCT FROM";
		}
		return 0;
	}
	if (j < t->n && is_punct(&t->v[j], "(")) {
		size_t x;

		/* a.max(...) cannot be a call of SQLite's; only bare names are looked at */
		for (x = 0; x < sizeof(refused_calls) / sizeof(refused_calls[0]); x++)
			if (is_word(k, refused_calls[x].name))
				return refuse_call(refused_calls[x].name, refused_calls[x].hint,
						   err, err_len);
		if (is_word(k, "CAST")) {
			/* SQLite's INTEGER and REAL are 64-bit, PostgreSQL's 32; BLOB is bytea */
			int depth = 0;
			size_t as = 0;

			for (x = j; x < t->n; x++) {
				if (is_punct(&t->v[x], "("))
					depth++;
				else if (is_punct(&t->v[x], ")") && --depth == 0)
					break;
				else if (depth == 1 && is_word(&t->v[x], "AS"))
					as = x;
			}
			if (as > 0 && (x = next_sig(t, as)) < t->n) {
				if (is_word(&t->v[x], "INTEGER") || is_word(&t->v[x], "INT"))
					t->v[x].repl = "BIGINT";
				else if (is_word(&t->v[x], "REAL"))
					t->v[x].repl = "DOUBLE PRECISION";
				else if (is_word(&t->v[x], "BLOB"))
					t->v[x].repl = "BYTEA";
			}
			return 0;
		}
		if (is_word(k, "ifnull")) {
			k->repl = "coalesce";
			return 0;
		}
		if (is_word(k, "max") || is_word(k, "min")) {
			int args = call_args(t, j);

			if (args < 0)
				return fail(err, err_len, "an unclosed '('");
			if (args >= 2)
				return fail(err, err_len,
					    "SQLite's scalar %s() of two or more values has no "
					    "PostgreSQL translation (there: %s); write the query for "
					    "both engines (cvdb_pick)",
					    is_word(k, "max") ? "max" : "min",
					    is_word(k, "max") ? "GREATEST" : "LEAST");
		}
	}
	return 0;
}

/* Writes the tokens with their replacements. */
static void emit(const struct toks *t, size_t first, struct sbuf *b, int on_conflict)
{
	size_t i, returning = t->n;
	int depth = 0;
	char num[16];

	if (on_conflict) {
		/* ON CONFLICT goes before a top-level RETURNING, else at the end. */
		for (i = 0; i < t->n; i++) {
			if (is_punct(&t->v[i], "("))
				depth++;
			else if (is_punct(&t->v[i], ")"))
				depth--;
			else if (depth == 0 && is_word(&t->v[i], "RETURNING")) {
				returning = i;
				break;
			}
		}
	}
	for (i = first; i < t->n; i++) {
		const struct tok *k = &t->v[i];

		if (k->type == T_SEMI)
			break;
		if (on_conflict && i == returning)
			sb_str(b, "ON CONFLICT DO NOTHING ");
		if (k->type == T_COMMENT) {
			/* dropped: a trailing "--" comment would swallow ON CONFLICT */
			sb_str(b, " ");
		} else if (k->type == T_PARAM) {
			snprintf(num, sizeof(num), "$%d", k->param);
			sb_str(b, num);
		} else if (k->repl != NULL) {
			sb_str(b, k->repl);
		} else if (k->type == T_BLOB) {
			sb_str(b, "'\\x");
			sb_add(b, k->s + 2, k->n - 3);
			sb_str(b, "'::bytea");
		} else if (k->type == T_BACKTICK) {
			size_t x;

			sb_str(b, "\"");
			for (x = 1; x + 1 < k->n; x++) {
				if (k->s[x] == '"')
					sb_str(b, "\"\"");
				else if (k->s[x] == '`' && k->s[x + 1] == '`')
					sb_add(b, k->s + x++, 1);
				else
					sb_add(b, k->s + x, 1);
			}
			sb_str(b, "\"");
		} else {
			sb_add(b, k->s, k->n);
		}
		if (k->after != NULL)
			sb_str(b, k->after);
	}
	while (b->len > 0 && isspace((unsigned char)b->p[b->len - 1]))
		b->p[--b->len] = '\0';
	if (on_conflict && returning == t->n)
		sb_str(b, " ON CONFLICT DO NOTHING");
}

int sqldb_pg_translate(const char *sql, struct sqldb_pg_sql *ret, char *err, size_t err_len)
{
	struct toks t = { 0 };
	struct sbuf b = { 0 };
	size_t first, i;
	long consumed = 0, used;
	int r = -1, on_conflict = 0, blobs = 0, whole;

	memset(ret, 0, sizeof(*ret));
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	/* Empty statements (";", blanks, comments) before the first real one are skipped, as
	 * SQLite's parser skips them. */
	for (;;) {
		t.n = 0;
		used = lex(sql + consumed, &t, err, err_len);
		if (used < 0)
			goto out;
		consumed += used;
		for (first = 0; first < t.n && !significant(&t.v[first]); first++)
			;
		if (first < t.n)
			break;
		if (sql[consumed] == '\0') { /* nothing but blanks and comments */
			ret->consumed = (size_t)consumed;
			r = 0;
			goto out;
		}
	}
	whole = statement_head(&t, first, ret, &on_conflict, &b, err, err_len);
	if (whole < 0)
		goto out;
	if (!whole) {
		for (i = first; i < t.n; i++)
			if (significant(&t.v[i]) && body_token(&t, i, &blobs, err, err_len) < 0)
				goto out;
		if (number_params(&t, ret, err, err_len) < 0)
			goto out;
		emit(&t, first, &b, on_conflict);
	}
	if (b.oom) {
		fail(err, err_len, "out of memory");
		goto out;
	}
	ret->sql = b.p;
	b.p = NULL;
	ret->consumed = (size_t)consumed;
	r = 0;
out:
	free(t.v);
	free(b.p);
	if (r < 0)
		sqldb_pg_sql_release(ret);
	return r;
}

void sqldb_pg_sql_release(struct sqldb_pg_sql *t)
{
	int i;

	if (t == NULL)
		return;
	for (i = 0; t->names != NULL && i < t->n_params; i++)
		free(t->names[i]);
	free(t->names);
	free(t->used);
	free(t->null_test_only);
	free(t->sql);
	memset(t, 0, sizeof(*t));
}

int sqldb_pg_sql_param_index(const struct sqldb_pg_sql *t, const char *name)
{
	int i;

	if (name == NULL)
		return 0;
	for (i = 0; i < t->n_params; i++)
		if (t->names[i] != NULL && strcmp(t->names[i], name) == 0)
			return i + 1;
	return 0;
}
