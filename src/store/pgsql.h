/* store: SQLite's SQL dialect carried over to PostgreSQL's (issue 15). Pure: no I/O.
 *
 * The store's queries are written once, in SQLite's dialect. sqldb_pg.c hands each statement
 * to sqldb_pg_translate at prepare time and runs what comes out. The translation is token
 * based (it knows string literals, quoted identifiers, comments, dollar quotes and E'' strings,
 * and never looks inside them) and deliberately small:
 *
 *   ?NNN, ?, :name, @name, $name   -> $N, numbered exactly as SQLite numbers them, so bind
 *                                     indexes and parameter names answer the same; $N (a
 *                                     PostgreSQL placeholder in a query written for it) is ?N
 *   x COLLATE NOCASE               -> x::citext (NOCASE columns are citext in the schema)
 *   x COLLATE BINARY               -> x COLLATE "C"
 *   LIKE                           -> ILIKE (SQLite's LIKE ignores ASCII case); without an
 *                                     ESCAPE clause, ESCAPE '' is added after a one-token
 *                                     pattern (PostgreSQL's LIKE escapes with '\' by default,
 *                                     SQLite's with nothing)
 *   INSERT OR IGNORE ...           -> INSERT ... ON CONFLICT DO NOTHING
 *   a IS b, a IS NOT b             -> a IS NOT DISTINCT FROM b, a IS DISTINCT FROM b
 *                                     (IS NULL, IS TRUE, IS DISTINCT FROM ... are kept)
 *   ==                             -> =
 *   INDEXED BY i, NOT INDEXED      -> dropped (SQLite's index hints; PostgreSQL plans alone)
 *   CAST(x AS INTEGER | INT)       -> CAST(x AS BIGINT) (SQLite's integers are 64-bit); AS
 *                                     REAL -> DOUBLE PRECISION, AS BLOB -> BYTEA
 *   ifnull(                        -> coalesce(
 *   X'00ff'                        -> '\x00ff'::bytea
 *   BEGIN IMMEDIATE / EXCLUSIVE    -> BEGIN ISOLATION LEVEL READ COMMITTED, then
 *                                     SELECT pg_advisory_xact_lock(SQLDB_PG_WRITER_LOCK): one
 *                                     writer at a time across every node, as SQLite has one
 *                                     per file; READ COMMITTED so that each statement after
 *                                     the lock sees every commit made before it was taken
 *   BEGIN [DEFERRED]               -> BEGIN ISOLATION LEVEL REPEATABLE READ (one snapshot for
 *                                     the whole read, as SQLite's read transaction)
 *   END / COMMIT                   -> COMMIT
 *
 * What it cannot carry faithfully is refused with an error naming the construct, so that a
 * query nobody wrote twice (cvdb_pick) fails loudly in the tests instead of quietly
 * answering differently: json_each, json_extract, json_object, json_group_array and SQLite's
 * other json_* functions, GLOB, REGEXP, strftime, unixepoch, datetime, julianday,
 * PRAGMA, scalar max()/min() with two or more arguments, rowid/_rowid_, INSERT OR
 * REPLACE (and OR ABORT/FAIL/ROLLBACK), REPLACE INTO, group_concat, iif, printf, instr, a
 * SQLite CREATE TRIGGER with a BEGIN ... END body, and a LIKE whose pattern is an expression
 * without an ESCAPE clause.
 *
 * A parameter used only as "? IS [NOT] NULL" gives PostgreSQL no type to infer: such
 * parameters are flagged (null_test_only) and a text or NULL value is sent as text.
 *
 * In text written for PostgreSQL (cvdb_pick's second query): ::casts, $$ bodies and E''
 * strings pass untouched; jsonb's ? operators cannot be used (? is a parameter): use
 * jsonb_exists() and friends. */
#ifndef CERTVAULT_STORE_PGSQL_H
#define CERTVAULT_STORE_PGSQL_H

#include <stddef.h>
#include <stdint.h>

/* The key of the advisory lock BEGIN IMMEDIATE takes: the database's one writer lock. Every
 * certvaultd sharing a database must use the same key; it is the bytes "certvlt1". */
#define SQLDB_PG_WRITER_LOCK INT64_C(0x63657274766c7431)

/* What BEGIN IMMEDIATE becomes: a READ COMMITTED transaction, then the writer lock (the
 * statement that waits for it). Two statements: sent as one simple query. */
#define SQLDB_PG_BEGIN_WRITE_SQL \
	"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(7162256626931233841)"

/* SQLite's highest parameter number (SQLITE_MAX_VARIABLE_NUMBER's default). */
#define SQLDB_PG_MAX_PARAMS 32766

enum sqldb_pg_kind {
	SQLDB_PG_OTHER = 0,
	SQLDB_PG_BEGIN_WRITE,   /* BEGIN IMMEDIATE: sql holds two statements (see above) */
	SQLDB_PG_BEGIN_READ,
	SQLDB_PG_COMMIT,
	SQLDB_PG_ROLLBACK,      /* ROLLBACK of the whole transaction (not ROLLBACK TO) */
};

struct sqldb_pg_sql {
	char *sql;              /* the PostgreSQL text, NUL-terminated; NULL when the input held
				   only whitespace and comments */
	size_t consumed;        /* bytes of the input this statement took, its ';' included
				   (the tail starts there) */
	enum sqldb_pg_kind kind;
	int n_params;           /* the highest parameter number used */
	char **names;           /* [n_params]: names[i] is parameter i+1's name with its prefix
				   (":name", "?3"), or NULL, as sqlite3_bind_parameter_name */
	int writes;             /* INSERT, UPDATE, DELETE (or WITH ... one of them): outside a
				   transaction, run as its own write transaction under the writer
				   lock, as SQLite's autocommit write takes the file's write lock */
	unsigned char *null_test_only; /* [n_params]: 1 where every use of the parameter is
				   "? IS [NOT] NULL", which gives PostgreSQL no type to infer: a
				   text or NULL value is then sent as text */
	unsigned char *used;    /* [n_params]: 1 where the text refers to the parameter (?3
				   alone leaves 1 and 2 unused: PostgreSQL must be told their
				   type, it cannot infer one) */
};

/* Translates the first statement of sql (up to its ';' or the end). Returns 0 and fills
 * *ret (release it with sqldb_pg_sql_release), or -1 with the reason in err (the construct
 * named; never the statement's literal values) and *ret empty. */
int sqldb_pg_translate(const char *sql, struct sqldb_pg_sql *ret, char *err, size_t err_len);

/* Frees what *t holds and empties it; an emptied or zeroed struct is fine. */
void sqldb_pg_sql_release(struct sqldb_pg_sql *t);

/* The index of the parameter named name (with its prefix), 0 when there is none: the answer
 * sqlite3_bind_parameter_index gives. */
int sqldb_pg_sql_param_index(const struct sqldb_pg_sql *t, const char *name);

#endif
