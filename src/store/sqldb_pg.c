/* store: the PostgreSQL side of sqldb.h, on libpq (issue 15). Same contracts as the SQLite
 * side, SQLite's result codes.
 *
 * Statements are translated from SQLite's dialect once, at prepare (pgsql.c). A persistent
 * statement is prepared on the server (PQprepare, under a name of its own on this
 * connection) on its first step; the others run with PQexecParams. The first step sends the
 * bound values and keeps the whole result, from which it and the next steps hand out rows:
 * the store steps one statement while it runs others on the same connection, which a result
 * streamed row by row (single-row mode) would forbid. Values go as text, except blobs (bytea,
 * binary); results come back as text and are converted on access.
 *
 * Errors: SQLSTATE class 23 -> SQLITE_CONSTRAINT_* (as SQLite's extended codes, which the
 * store compares), 40001/40P01/55P03 -> SQLITE_BUSY, a lost connection -> SQLITE_IOERR (and
 * the next use of the handle reconnects with PQreset), the rest SQLITE_ERROR with the
 * server's message in cvdb_errmsg. The connection string may hold a password: it is never
 * put in a message (messages name host, port and database), and any message is scrubbed of
 * the password before it is kept. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "pgsql.h"
#include "sqldb_internal.h"

/* PostgreSQL's type OIDs (catalog/pg_type.h is server-side only). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700

/* How long a writer waits for the write lock (BEGIN IMMEDIATE's advisory lock, or a row lock)
 * before SQLITE_BUSY: db.c's BUSY_TIMEOUT_MS, SQLite's busy timeout. */
#define LOCK_TIMEOUT_MS 5000

enum ptype { P_NULL = 0, P_INT, P_FLOAT, P_TEXT, P_BLOB };

struct param {
	enum ptype type;
	char num[32];           /* P_INT, P_FLOAT: the value as text */
	char *text;             /* P_TEXT: a NUL-terminated copy (libpq sends text up to NUL) */
	size_t text_len;
	const void *blob;       /* P_BLOB: borrowed, as SQLite's SQLITE_STATIC */
	size_t blob_len;
};

struct sqldb_pg_conn {
	PGconn *conn;
	char *errmsg;           /* NULL: "not an error" */
	char where[256];        /* "host=... port=... dbname=...": what messages name */
	char *password;         /* from the connection string, to scrub messages (cleared) */
	int changes;
	int64_t last_rowid;
	int rowid_stale;        /* an INSERT changed rows since last_rowid was read */
	unsigned next_name;     /* server-side statement names on this connection */
	unsigned epoch;         /* bumped at each reconnect: server-side statements are gone */
	int broken;             /* the connection was lost: PQreset at the next use */
	int read_tx;            /* the open transaction is a read snapshot (BEGIN) */
	int tx_open;            /* a transaction was open when the last statement was sent */
	int lost_prepared;      /* the server answered that a kept statement does not exist */
	int lost_tx;            /* the connection was lost inside a transaction the caller
				   has not ended yet (see execute) */
	cvdb_write_hook write_hook; /* cvdb_set_write_hook */
	void *write_arg;
};

struct sqldb_pg_stmt {
	struct sqldb_pg_sql t;
	char *written;          /* the statement as written (cvdb_sql) */
	int persistent;
	struct param *params;   /* [t.n_params] */
	char name[24];          /* server-side name; "" while not prepared there */
	unsigned epoch;
	Oid *types;             /* [t.n_params]: the types it was prepared with */
	PGresult *res;
	int executed;           /* ran since the last reset (binding now is misuse) */
	int row;                /* the row the last SQLITE_ROW handed out */
	int done;
	int last_rc;            /* the last step's failure, returned by reset as SQLite does */
	char **decoded;         /* [columns]: bytea values of the current row, decoded */
	size_t *decoded_len;
};

static void set_errmsg(struct sqldb_pg_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Replaces every occurrence of secret in s (in place, same length) with '*'. */
static void scrub(char *s, const char *secret)
{
	size_t n;
	char *p;

	if (s == NULL || secret == NULL || (n = strlen(secret)) == 0)
		return;
	while ((p = strstr(s, secret)) != NULL)
		memset(p, '*', n);
}

static void set_errmsg(struct sqldb_pg_conn *c, const char *fmt, ...)
{
	va_list ap;
	char buf[1024];
	size_t n;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* libpq's messages end in a newline */
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	scrub(buf, c->password);
	if (c->conn != NULL)
		scrub(buf, PQpass(c->conn));
	free(c->errmsg);
	c->errmsg = strdup(buf);
}

static void clear_errmsg(struct sqldb_pg_conn *c)
{
	free(c->errmsg);
	c->errmsg = NULL;
}

/* Notices (an extension that already exists, a transaction already open) are not errors,
 * and modules do not log. */
static void ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* What each connection needs, after connecting and after every reconnect. */
static int session_setup(struct sqldb_pg_conn *c)
{
	char sql[128];
	PGresult *res;
	int ok;

	PQsetNoticeProcessor(c->conn, ignore_notice, NULL);
	/* standard strings: the translation's '\x..' bytea literals and LIKE's ESCAPE '\'
	 * mean what they say whatever the server's configuration */
	snprintf(sql, sizeof(sql), "SET lock_timeout = %d; SET standard_conforming_strings = on",
		 LOCK_TIMEOUT_MS);
	res = PQexec(c->conn, sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		set_errmsg(c, "PostgreSQL %s: %s", c->where, PQerrorMessage(c->conn));
	PQclear(res);
	return ok ? 0 : -1;
}

static void set_where(struct sqldb_pg_conn *c)
{
	const char *host = PQhost(c->conn), *port = PQport(c->conn), *db = PQdb(c->conn);

	snprintf(c->where, sizeof(c->where), "host=%s port=%s dbname=%s",
		 host != NULL && *host != '\0' ? host : "(default)",
		 port != NULL && *port != '\0' ? port : "(default)",
		 db != NULL && *db != '\0' ? db : "(default)");
}

int cvdb_open_pg(const char *conninfo, cvdb **ret)
{
	/* Later keywords override earlier ones, the connection string's included (it is
	 * expanded where "dbname" stands): a connect timeout it may change (libpq's default
	 * waits for ever on a server that does not answer), UTF-8 it may not (the store's
	 * text is UTF-8). */
	static const char *const keys[] = {
		"connect_timeout", "dbname", "client_encoding", "fallback_application_name", NULL,
	};
	const char *values[] = { "10", conninfo, "UTF8", "certvaultd", NULL };
	PQconninfoOption *opts, *o;
	struct sqldb_pg_conn *c;
	char *parse_err = NULL;
	cvdb *db;

	*ret = NULL;
	db = calloc(1, sizeof(*db));
	c = calloc(1, sizeof(*c));
	if (db == NULL || c == NULL) {
		free(db);
		free(c);
		return SQLITE_NOMEM;
	}
	db->kind = CVDB_PG;
	db->pg = c;
	*ret = db;
	snprintf(c->where, sizeof(c->where), "(not connected)");
	/* libpq's parse errors quote the text around the fault, which may be the password: the
	 * message says only that the string is wrong. */
	opts = PQconninfoParse(conninfo != NULL ? conninfo : "", &parse_err);
	if (opts == NULL) {
		PQfreemem(parse_err);
		set_errmsg(c, "the PostgreSQL connection string (not shown: it may hold a "
			      "password) is not valid: see libpq's \"Connection Strings\"");
		return SQLITE_CANTOPEN;
	}
	for (o = opts; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL && *o->val != '\0' &&
		    (c->password = OPENSSL_strdup(o->val)) == NULL) {
			PQconninfoFree(opts);
			return SQLITE_NOMEM;
		}
	}
	PQconninfoFree(opts);
	c->conn = PQconnectdbParams(keys, values, 1);
	if (c->conn == NULL)
		return SQLITE_NOMEM;
	set_where(c);
	if (PQstatus(c->conn) != CONNECTION_OK) {
		set_errmsg(c, "PostgreSQL %s: %s", c->where, PQerrorMessage(c->conn));
		return SQLITE_CANTOPEN;
	}
	if (session_setup(c) < 0)
		return SQLITE_CANTOPEN;
	return SQLITE_OK;
}

void *cvdb_pg(cvdb *db)
{
	return db->kind == CVDB_PG && db->pg != NULL ? db->pg->conn : NULL;
}

void cvdb_set_write_hook(cvdb *db, cvdb_write_hook fn, void *arg)
{
	if (db->kind != CVDB_PG || db->pg == NULL)
		return;
	db->pg->write_hook = fn;
	db->pg->write_arg = arg;
}

void sqldb_pg_close(cvdb *db)
{
	struct sqldb_pg_conn *c = db->pg;

	if (c == NULL)
		return;
	if (c->conn != NULL)
		PQfinish(c->conn);
	free(c->errmsg);
	if (c->password != NULL)
		OPENSSL_clear_free(c->password, strlen(c->password));
	free(c);
	db->pg = NULL;
}

/* Before any round trip: a connection lost earlier is re-established (server-side
 * statements are then gone: epoch). Returns SQLITE_OK or SQLITE_IOERR. */
static int ensure_connected(struct sqldb_pg_conn *c)
{
	if (!c->broken && PQstatus(c->conn) == CONNECTION_OK)
		return SQLITE_OK;
	PQreset(c->conn);
	if (PQstatus(c->conn) != CONNECTION_OK) {
		c->broken = 1;
		set_errmsg(c, "PostgreSQL %s: connection lost, reconnecting failed: %s", c->where,
			   PQerrorMessage(c->conn));
		return SQLITE_IOERR;
	}
	c->broken = 0;
	c->epoch++;
	if (session_setup(c) < 0) {
		c->broken = 1;
		return SQLITE_IOERR;
	}
	return SQLITE_OK;
}

static int sqlstate_is(const char *state, const char *want)
{
	return state != NULL && strcmp(state, want) == 0;
}

/* The result code for a failed result (res may be NULL: libpq could not even make one), and
 * its message kept. */
static int fail_result(struct sqldb_pg_conn *c, const PGresult *res)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *constraint;
	size_t n;

	if (PQstatus(c->conn) != CONNECTION_OK || state == NULL ||
	    strncmp(state, "08", 2) == 0 || sqlstate_is(state, "57P01") ||
	    sqlstate_is(state, "57P02") || sqlstate_is(state, "57P03")) {
		c->broken = 1;
		if (c->tx_open)
			c->lost_tx = 1;
		set_errmsg(c, "PostgreSQL %s: connection lost: %s", c->where,
			   msg != NULL ? msg : PQerrorMessage(c->conn));
		return SQLITE_IOERR;
	}
	/* The primary message only: DETAIL repeats the row's values. */
	set_errmsg(c, "%s (SQLSTATE %s)", msg != NULL ? msg : "error", state);
	if (strncmp(state, "23", 2) == 0) {
		if (sqlstate_is(state, "23505")) {
			constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
			n = constraint != NULL ? strlen(constraint) : 0;
			/* PostgreSQL names a primary key's index <table>_pkey */
			if (n >= 5 && strcmp(constraint + n - 5, "_pkey") == 0)
				return SQLITE_CONSTRAINT_PRIMARYKEY;
			return SQLITE_CONSTRAINT_UNIQUE;
		}
		if (sqlstate_is(state, "23503"))
			return SQLITE_CONSTRAINT_FOREIGNKEY;
		if (sqlstate_is(state, "23502"))
			return SQLITE_CONSTRAINT_NOTNULL;
		if (sqlstate_is(state, "23514"))
			return SQLITE_CONSTRAINT_CHECK;
		return SQLITE_CONSTRAINT;
	}
	if (sqlstate_is(state, "40001") || sqlstate_is(state, "40P01") ||
	    sqlstate_is(state, "55P03"))
		return SQLITE_BUSY;
	if (sqlstate_is(state, "26000")) {
		/* a kept statement the server no longer has (a pooler's DISCARD ALL, say):
		 * prepared again on its next run */
		c->lost_prepared = 1;
		return SQLITE_ERROR;
	}
	if (sqlstate_is(state, "57014"))
		return SQLITE_INTERRUPT;
	if (sqlstate_is(state, "53100"))
		return SQLITE_FULL;
	if (sqlstate_is(state, "53200"))
		return SQLITE_NOMEM;
	return SQLITE_ERROR;
}

/* Runs a statement without parameters and drops its rows: the helpers below. */
static int run_simple(struct sqldb_pg_conn *c, const char *sql)
{
	PGresult *res;
	int rc = SQLITE_OK;

	if (PQsendQuery(c->conn, sql) == 0)
		return fail_result(c, NULL);
	/* A script answers once per statement; the first failure is the one reported. */
	while ((res = PQgetResult(c->conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);

		if (rc == SQLITE_OK && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
		    st != PGRES_EMPTY_QUERY)
			rc = fail_result(c, res);
		PQclear(res);
	}
	return rc;
}

int sqldb_pg_prepare(cvdb *db, const char *sql, int persistent, cvdb_stmt **ret,
		     const char **tail)
{
	struct sqldb_pg_conn *c = db->pg;
	struct sqldb_pg_sql t;
	struct sqldb_pg_stmt *ps = NULL;
	cvdb_stmt *stmt = NULL;
	char err[256];

	*ret = NULL;
	if (tail != NULL)
		*tail = sql;
	if (sqldb_pg_translate(sql, &t, err, sizeof(err)) < 0) {
		set_errmsg(c, "%s", err);
		return strcmp(err, "out of memory") == 0 ? SQLITE_NOMEM : SQLITE_ERROR;
	}
	if (tail != NULL)
		*tail = sql + t.consumed;
	if (t.sql == NULL) /* only blanks and comments */
		return SQLITE_OK;
	stmt = calloc(1, sizeof(*stmt));
	ps = calloc(1, sizeof(*ps));
	if (stmt == NULL || ps == NULL)
		goto oom;
	ps->t = t;
	memset(&t, 0, sizeof(t));
	if (ps->t.n_params > 0 &&
	    ((ps->params = calloc((size_t)ps->t.n_params, sizeof(*ps->params))) == NULL ||
	     (ps->types = calloc((size_t)ps->t.n_params, sizeof(*ps->types))) == NULL))
		goto oom;
	/* the statement as written, as sqlite3_sql gives it: from where the text began up to
	 * its ';' */
	if ((ps->written = strndup(sql, ps->t.consumed)) == NULL)
		goto oom;
	ps->persistent = persistent;
	ps->row = -1;
	stmt->db = db;
	stmt->sql = ps->written;
	stmt->pg = ps;
	*ret = stmt;
	clear_errmsg(c);
	return SQLITE_OK;
oom:
	sqldb_pg_sql_release(&t);
	if (ps != NULL) {
		sqldb_pg_sql_release(&ps->t);
		free(ps->params);
		free(ps->types);
		free(ps);
	}
	free(stmt);
	set_errmsg(c, "out of memory");
	return SQLITE_NOMEM;
}

static void free_row(struct sqldb_pg_stmt *ps)
{
	int i, n;

	if (ps->decoded == NULL)
		return;
	n = ps->res != NULL ? PQnfields(ps->res) : 0;
	for (i = 0; i < n; i++) {
		free(ps->decoded[i]);
		ps->decoded[i] = NULL;
	}
}

static void drop_result(struct sqldb_pg_stmt *ps)
{
	free_row(ps);
	free(ps->decoded);
	free(ps->decoded_len);
	ps->decoded = NULL;
	ps->decoded_len = NULL;
	PQclear(ps->res);
	ps->res = NULL;
	ps->row = -1;
}

static void param_clear(struct param *p)
{
	if (p->text != NULL)
		OPENSSL_clear_free(p->text, p->text_len + 1);
	memset(p, 0, sizeof(*p));
}

int sqldb_pg_finalize(cvdb_stmt *stmt)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	struct sqldb_pg_conn *c = stmt->db->pg;
	char sql[64];
	int i;

	if (ps != NULL) {
		/* A server-side statement lives as long as the connection: dropped here unless
		 * the connection was lost since (then it is gone already). Not inside a failed
		 * transaction, which refuses every command: it stays until the connection ends. */
		if (ps->name[0] != '\0' && ps->epoch == c->epoch && !c->broken &&
		    PQtransactionStatus(c->conn) != PQTRANS_INERROR) {
			snprintf(sql, sizeof(sql), "DEALLOCATE %s", ps->name);
			(void)run_simple(c, sql);
		}
		drop_result(ps);
		for (i = 0; i < ps->t.n_params; i++)
			param_clear(&ps->params[i]);
		free(ps->params);
		free(ps->types);
		free(ps->written);
		sqldb_pg_sql_release(&ps->t);
		free(ps);
	}
	free(stmt);
	return SQLITE_OK;
}

int sqldb_pg_reset(cvdb_stmt *stmt)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	int rc = ps->last_rc;

	drop_result(ps);
	ps->executed = 0;
	ps->done = 0;
	ps->last_rc = SQLITE_OK;
	return rc;
}

int sqldb_pg_clear_bindings(cvdb_stmt *stmt)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	int i;

	for (i = 0; i < ps->t.n_params; i++)
		param_clear(&ps->params[i]);
	return SQLITE_OK;
}

/* The parameter idx (1-based) ready to be bound, or NULL with *rc set. */
static struct param *bindable(cvdb_stmt *stmt, int idx, int *rc)
{
	struct sqldb_pg_stmt *ps = stmt->pg;

	if (ps->executed) {
		set_errmsg(stmt->db->pg, "bad parameter or other API misuse: the statement runs "
					 "(reset it before binding)");
		*rc = SQLITE_MISUSE;
		return NULL;
	}
	if (idx < 1 || idx > ps->t.n_params) {
		set_errmsg(stmt->db->pg, "column index out of range");
		*rc = SQLITE_RANGE;
		return NULL;
	}
	param_clear(&ps->params[idx - 1]);
	*rc = SQLITE_OK;
	return &ps->params[idx - 1];
}

int sqldb_pg_bind_int64(cvdb_stmt *stmt, int idx, int64_t v)
{
	struct param *p;
	int rc;

	if ((p = bindable(stmt, idx, &rc)) == NULL)
		return rc;
	p->type = P_INT;
	snprintf(p->num, sizeof(p->num), "%" PRId64, v);
	return SQLITE_OK;
}

/* Without libm: every double of magnitude 2^52 or more is an integer. */
static int is_integral(double v)
{
	if (v >= 0x1p52 || v <= -0x1p52)
		return 1;
	return v == (double)(int64_t)v;
}

int sqldb_pg_bind_double(cvdb_stmt *stmt, int idx, double v)
{
	struct param *p;
	int rc;

	if ((p = bindable(stmt, idx, &rc)) == NULL)
		return rc;
	if (isnan(v)) {
		/* SQLite stores a NaN as NULL */
		return SQLITE_OK;
	}
	/* Sent as numeric, exactly: SQLite compares an integer with a real exactly, PostgreSQL
	 * compares bigint with double precision in double precision (INT64_MAX >= 2^63 would
	 * be true), but bigint with numeric exactly. An integral value is written with all its
	 * digits; another with 17 significant ones, which keeps every comparison with an
	 * integer as it is (an integer between the two would be a closer double). */
	p->type = P_FLOAT;
	if (isinf(v))
		snprintf(p->num, sizeof(p->num), "%s", v > 0 ? "Infinity" : "-Infinity");
	else if (is_integral(v) && v < 1e25 && v > -1e25)
		snprintf(p->num, sizeof(p->num), "%.0f", v);
	else
		snprintf(p->num, sizeof(p->num), "%.17g", v);
	return SQLITE_OK;
}

int sqldb_pg_bind_null(cvdb_stmt *stmt, int idx)
{
	int rc;

	(void)bindable(stmt, idx, &rc);
	return rc;
}

int sqldb_pg_bind_text(cvdb_stmt *stmt, int idx, const char *text, int len)
{
	struct param *p;
	size_t n;
	int rc;

	if ((p = bindable(stmt, idx, &rc)) == NULL)
		return rc;
	if (text == NULL)
		return SQLITE_OK; /* NULL, as SQLite binds it */
	n = len < 0 ? strlen(text) : (size_t)len;
	if (memchr(text, '\0', n) != NULL) {
		/* PostgreSQL's text cannot hold a NUL byte; SQLite's can, but the store never
		 * writes one (outside text is made valid UTF-8 without controls first). */
		set_errmsg(stmt->db->pg, "text with a NUL byte cannot be stored in PostgreSQL");
		return SQLITE_MISMATCH;
	}
	if ((p->text = malloc(n + 1)) == NULL)
		return SQLITE_NOMEM;
	memcpy(p->text, text, n);
	p->text[n] = '\0';
	p->text_len = n;
	p->type = P_TEXT;
	return SQLITE_OK;
}

int sqldb_pg_bind_blob(cvdb_stmt *stmt, int idx, const void *blob, size_t len)
{
	struct param *p;
	int rc;

	if ((p = bindable(stmt, idx, &rc)) == NULL)
		return rc;
	if (blob == NULL)
		return SQLITE_OK;
	if (len > INT32_MAX)
		return SQLITE_TOOBIG;
	p->type = P_BLOB;
	/* libpq wants a pointer even for no bytes */
	p->blob = len > 0 ? blob : "";
	p->blob_len = len;
	return SQLITE_OK;
}

int sqldb_pg_bind_parameter_count(cvdb_stmt *stmt)
{
	return stmt->pg->t.n_params;
}

int sqldb_pg_bind_parameter_index(cvdb_stmt *stmt, const char *name)
{
	return sqldb_pg_sql_param_index(&stmt->pg->t, name);
}

const char *sqldb_pg_bind_parameter_name(cvdb_stmt *stmt, int idx)
{
	struct sqldb_pg_stmt *ps = stmt->pg;

	if (idx < 1 || idx > ps->t.n_params)
		return NULL;
	return ps->t.names[idx - 1];
}

static Oid param_oid(const struct param *p)
{
	switch (p->type) {
	case P_INT:
		return OID_INT8;
	case P_FLOAT:
		return OID_NUMERIC;
	case P_BLOB:
		return OID_BYTEA;
	default:
		/* text and NULL: unknown, so that PostgreSQL takes the type the context gives
		 * (a citext or bigint column, a LIMIT) */
		return 0;
	}
}

/* BEGIN, COMMIT and ROLLBACK keep SQLite's answers where PostgreSQL only warns or quietly
 * does something else: a transaction cannot be begun inside one, nor ended without one, and
 * a COMMIT of a transaction in which a statement failed (PostgreSQL then refuses everything
 * up to its end, and its COMMIT rolls back) is an error, never a quiet rollback. */
static int run_transaction_control(struct sqldb_pg_stmt *ps, struct sqldb_pg_conn *c)
{
	PGTransactionStatusType ts = PQtransactionStatus(c->conn);
	int rc;

	switch (ps->t.kind) {
	case SQLDB_PG_BEGIN_READ:
	case SQLDB_PG_BEGIN_WRITE:
		if (ts != PQTRANS_IDLE) {
			set_errmsg(c, "cannot start a transaction within a transaction");
			return SQLITE_ERROR;
		}
		rc = run_simple(c, ps->t.sql);
		c->read_tx = rc == SQLITE_OK && ps->t.kind == SQLDB_PG_BEGIN_READ;
		/* the writer lock not taken (lock_timeout): no transaction left open */
		if (rc != SQLITE_OK && !c->broken &&
		    PQtransactionStatus(c->conn) != PQTRANS_IDLE) {
			char *keep = c->errmsg;

			c->errmsg = NULL;
			(void)run_simple(c, "ROLLBACK");
			free(c->errmsg);
			c->errmsg = keep;
		}
		return rc;
	case SQLDB_PG_COMMIT:
		if (ts == PQTRANS_IDLE) {
			set_errmsg(c, "cannot commit - no transaction is active");
			return SQLITE_ERROR;
		}
		if (ts == PQTRANS_INERROR) {
			(void)run_simple(c, "ROLLBACK");
			set_errmsg(c, "the transaction was rolled back, not committed: a statement "
				      "in it had failed (PostgreSQL ends a transaction at its "
				      "first error)");
			return SQLITE_ERROR;
		}
		return run_simple(c, ps->t.sql);
	default: /* SQLDB_PG_ROLLBACK */
		if (ts == PQTRANS_IDLE) {
			set_errmsg(c, "cannot rollback - no transaction is active");
			return SQLITE_ERROR;
		}
		return run_simple(c, ps->t.sql);
	}
}

static int execute_one(struct sqldb_pg_stmt *ps, struct sqldb_pg_conn *c);

/* Ends the implicit transaction of an autocommit write: COMMIT after success, ROLLBACK
 * after failure (keeping the failure's message). */
static int end_implicit(struct sqldb_pg_stmt *ps, struct sqldb_pg_conn *c, int rc)
{
	char *keep;

	if (rc == SQLITE_OK) {
		rc = run_simple(c, "COMMIT");
		if (rc != SQLITE_OK)
			drop_result(ps);
		return rc;
	}
	if (c->broken || PQtransactionStatus(c->conn) == PQTRANS_IDLE)
		return rc;
	keep = c->errmsg;
	c->errmsg = NULL;
	(void)run_simple(c, "ROLLBACK");
	free(c->errmsg);
	c->errmsg = keep;
	return rc;
}

/* Sends the statement with its bindings; on success ps->res holds its answer.
 *
 * SQLite's autocommit write takes the file's write lock like BEGIN IMMEDIATE does, so every
 * write waits for the writer in progress; here an INSERT, UPDATE or DELETE outside a
 * transaction becomes a transaction of its own under the same advisory lock (two more round
 * trips), so that it cannot slip between another writer's check and its change. */
static int execute(struct sqldb_pg_stmt *ps, struct sqldb_pg_conn *c)
{
	int rc;

	/* A transaction the connection was lost in is gone (the server rolled it back), but
	 * its caller has not ended it: until it does, nothing else runs, or statements meant
	 * for that transaction would commit one by one on the new connection. */
	if (c->lost_tx) {
		if (ps->t.kind == SQLDB_PG_ROLLBACK) {
			c->lost_tx = 0;
			clear_errmsg(c);
			return SQLITE_OK;
		}
		if (ps->t.kind == SQLDB_PG_COMMIT)
			c->lost_tx = 0;
		set_errmsg(c, "PostgreSQL %s: the connection was lost inside a transaction, "
			      "which was rolled back%s", c->where,
			   ps->t.kind == SQLDB_PG_COMMIT ? "" : "; end it with ROLLBACK");
		return SQLITE_IOERR;
	}
	rc = ensure_connected(c);
	if (rc != SQLITE_OK)
		return rc;
	clear_errmsg(c);
	/* COMMIT and ROLLBACK end the transaction whatever happens to them: a connection lost
	 * in either leaves nothing for the caller to end */
	c->tx_open = PQtransactionStatus(c->conn) != PQTRANS_IDLE &&
		     ps->t.kind != SQLDB_PG_COMMIT && ps->t.kind != SQLDB_PG_ROLLBACK;
	if (ps->t.kind != SQLDB_PG_OTHER)
		return run_transaction_control(ps, c);
	if (PQtransactionStatus(c->conn) == PQTRANS_IDLE)
		c->read_tx = 0;
	if (ps->t.writes && c->read_tx) {
		/* SQLite would take the write lock here, or answer SQLITE_BUSY_SNAPSHOT when
		 * another writer committed since the snapshot; PostgreSQL's snapshot cannot tell,
		 * so the store writes only in BEGIN IMMEDIATE transactions, and this says so. */
		set_errmsg(c, "a write inside a read transaction (BEGIN): writes take the writer "
			      "lock with BEGIN IMMEDIATE");
		return SQLITE_ERROR;
	}
	if (!ps->t.writes || PQtransactionStatus(c->conn) != PQTRANS_IDLE)
		return execute_one(ps, c);
	rc = run_simple(c, SQLDB_PG_BEGIN_WRITE_SQL);
	if (rc == SQLITE_OK)
		rc = execute_one(ps, c);
	return end_implicit(ps, c, rc);
}

static int execute_one(struct sqldb_pg_stmt *ps, struct sqldb_pg_conn *c)
{
	const char *values[ps->t.n_params > 0 ? ps->t.n_params : 1];
	int lengths[ps->t.n_params > 0 ? ps->t.n_params : 1];
	int formats[ps->t.n_params > 0 ? ps->t.n_params : 1];
	Oid types[ps->t.n_params > 0 ? ps->t.n_params : 1];
	int i, n = ps->t.n_params, same, rc;
	PGresult *res;
	ExecStatusType st;
	const char *verb;

	for (i = 0; i < n; i++) {
		const struct param *p = &ps->params[i];

		if (!ps->t.used[i]) {
			/* a number the text skips (?3 alone): any type will do, it is not used */
			types[i] = OID_TEXT;
			formats[i] = 0;
			lengths[i] = 0;
			values[i] = NULL;
			continue;
		}
		types[i] = param_oid(p);
		/* only ever tested for NULL: nothing to infer a type from, text will do */
		if (types[i] == 0 && ps->t.null_test_only[i])
			types[i] = OID_TEXT;
		formats[i] = p->type == P_BLOB;
		lengths[i] = p->type == P_BLOB ? (int)p->blob_len : 0;
		values[i] = p->type == P_INT || p->type == P_FLOAT ? p->num
			    : p->type == P_TEXT				 ? p->text
			    : p->type == P_BLOB				 ? (const char *)p->blob
									 : NULL;
	}
	if (ps->persistent) {
		/* Prepared once per connection and per set of parameter types: a NULL fits any
		 * type; a value of another type than the one prepared prepares anew. */
		same = ps->name[0] != '\0' && ps->epoch == c->epoch;
		for (i = 0; same && i < n; i++)
			if (ps->t.used[i] && ps->params[i].type != P_NULL && types[i] != ps->types[i])
				same = 0;
		if (!same) {
			char old[sizeof(ps->name)];

			memcpy(old, ps->name, sizeof(old));
			if (old[0] != '\0' && ps->epoch == c->epoch) {
				char sql[64];

				snprintf(sql, sizeof(sql), "DEALLOCATE %s", old);
				if ((rc = run_simple(c, sql)) != SQLITE_OK)
					return rc;
			}
			ps->name[0] = '\0';
			snprintf(ps->name, sizeof(ps->name), "cvdb_%u", ++c->next_name);
			res = PQprepare(c->conn, ps->name, ps->t.sql, n, types);
			if (PQresultStatus(res) != PGRES_COMMAND_OK) {
				ps->name[0] = '\0';
				rc = fail_result(c, res);
				PQclear(res);
				return rc;
			}
			PQclear(res);
			ps->epoch = c->epoch;
			if (n > 0)
				memcpy(ps->types, types, (size_t)n * sizeof(types[0]));
		}
		res = PQexecPrepared(c->conn, ps->name, n, values, lengths, formats, 0);
	} else {
		res = PQexecParams(c->conn, ps->t.sql, n, types, values, lengths, formats, 0);
	}
	st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		if (st == PGRES_EMPTY_QUERY) {
			PQclear(res);
			res = NULL;
			return SQLITE_OK;
		}
		c->lost_prepared = 0;
		rc = fail_result(c, res);
		if (c->lost_prepared)
			ps->name[0] = '\0';
		PQclear(res);
		return rc;
	}
	/* sqlite3_changes counts what INSERT, UPDATE and DELETE changed; other statements
	 * leave it as it was. */
	verb = PQcmdStatus(res);
	if (strncmp(verb, "INSERT ", 7) == 0 || strncmp(verb, "UPDATE ", 7) == 0 ||
	    strncmp(verb, "DELETE ", 7) == 0 || strncmp(verb, "MERGE ", 6) == 0) {
		c->changes = (int)strtol(PQcmdTuples(res), NULL, 10);
		if (verb[0] == 'I' && c->changes > 0)
			c->rowid_stale = 1;
		if (c->changes > 0 && c->write_hook != NULL)
			c->write_hook(c->write_arg, ps->written);
	}
	ps->res = res;
	if (PQnfields(res) > 0) {
		ps->decoded = calloc((size_t)PQnfields(res), sizeof(*ps->decoded));
		ps->decoded_len = calloc((size_t)PQnfields(res), sizeof(*ps->decoded_len));
		if (ps->decoded == NULL || ps->decoded_len == NULL) {
			drop_result(ps);
			set_errmsg(c, "out of memory");
			return SQLITE_NOMEM;
		}
	}
	return SQLITE_OK;
}

int sqldb_pg_step(cvdb_stmt *stmt)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	struct sqldb_pg_conn *c = stmt->db->pg;
	int rc;

	if (ps->done) /* stepping past SQLITE_DONE runs the statement again, as SQLite does */
		(void)sqldb_pg_reset(stmt);
	if (!ps->executed) {
		ps->executed = 1;
		rc = execute(ps, c);
		if (rc != SQLITE_OK) {
			ps->last_rc = rc;
			ps->done = 1;
			return rc;
		}
	}
	free_row(ps);
	if (ps->res != NULL && ps->row + 1 < PQntuples(ps->res)) {
		ps->row++;
		return SQLITE_ROW;
	}
	drop_result(ps);
	ps->done = 1;
	return SQLITE_DONE;
}

int sqldb_pg_column_count(cvdb_stmt *stmt)
{
	return stmt->pg->res != NULL ? PQnfields(stmt->pg->res) : 0;
}

/* The current row's value in column col: 1 and its text, or 0 for NULL or no such value. */
static int value(struct sqldb_pg_stmt *ps, int col, const char **ret)
{
	if (ps->res == NULL || ps->row < 0 || col < 0 || col >= PQnfields(ps->res) ||
	    PQgetisnull(ps->res, ps->row, col))
		return 0;
	*ret = PQgetvalue(ps->res, ps->row, col);
	return 1;
}

/* numeric (sum() of bigints, for one) answers an integer as SQLite would when it has no
 * fraction. */
static int numeric_is_integer(const char *v)
{
	return strpbrk(v, ".eEN") == NULL;
}

int sqldb_pg_column_type(cvdb_stmt *stmt, int col)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	const char *v;

	if (!value(ps, col, &v))
		return SQLITE_NULL;
	switch (PQftype(ps->res, col)) {
	case OID_BOOL:
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID:
		return SQLITE_INTEGER;
	case OID_FLOAT4:
	case OID_FLOAT8:
		return SQLITE_FLOAT;
	case OID_NUMERIC:
		return numeric_is_integer(v) ? SQLITE_INTEGER : SQLITE_FLOAT;
	case OID_BYTEA:
		return SQLITE_BLOB;
	default:
		return SQLITE_TEXT;
	}
}

int64_t sqldb_pg_column_int64(cvdb_stmt *stmt, int col)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	const char *v;
	Oid type;
	double d;

	if (!value(ps, col, &v))
		return 0;
	type = PQftype(ps->res, col);
	if (type == OID_BOOL)
		return v[0] == 't';
	if (type == OID_FLOAT4 || type == OID_FLOAT8 ||
	    (type == OID_NUMERIC && !numeric_is_integer(v))) {
		/* SQLite's cast of a real: toward zero, saturating */
		d = strtod(v, NULL);
		if (isnan(d))
			return 0;
		if (d >= 9223372036854775807.0)
			return INT64_MAX;
		if (d <= -9223372036854775808.0)
			return INT64_MIN;
		return (int64_t)d;
	}
	return strtoll(v, NULL, 10);
}

double sqldb_pg_column_double(cvdb_stmt *stmt, int col)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	const char *v;

	if (!value(ps, col, &v))
		return 0.0;
	if (PQftype(ps->res, col) == OID_BOOL)
		return v[0] == 't' ? 1.0 : 0.0;
	return strtod(v, NULL);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A bytea value of the current row decoded (NUL-terminated, kept until the next step or
 * reset), or NULL (out of memory, or a value not in bytea's text forms). */
static const char *decoded(struct sqldb_pg_stmt *ps, int col, const char *v, size_t *ret_len)
{
	size_t n = strlen(v), i, out = 0;
	unsigned char *raw;
	size_t raw_len;
	char *d;

	if (ps->decoded[col] != NULL) {
		*ret_len = ps->decoded_len[col];
		return ps->decoded[col];
	}
	if (n >= 2 && v[0] == '\\' && v[1] == 'x') { /* bytea_output = hex, the default */
		if ((d = malloc((n - 2) / 2 + 1)) == NULL)
			return NULL;
		for (i = 2; i + 1 < n; i += 2) {
			int hi = hexval(v[i]), lo = hexval(v[i + 1]);

			if (hi < 0 || lo < 0) {
				free(d);
				return NULL;
			}
			d[out++] = (char)(hi << 4 | lo);
		}
	} else { /* the escape form */
		raw = PQunescapeBytea((const unsigned char *)v, &raw_len);
		if (raw == NULL || (d = malloc(raw_len + 1)) == NULL) {
			PQfreemem(raw);
			return NULL;
		}
		memcpy(d, raw, raw_len);
		out = raw_len;
		PQfreemem(raw);
	}
	d[out] = '\0';
	ps->decoded[col] = d;
	ps->decoded_len[col] = out;
	*ret_len = out;
	return d;
}

const unsigned char *sqldb_pg_column_text(cvdb_stmt *stmt, int col)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	const char *v;
	size_t n;

	if (!value(ps, col, &v))
		return NULL;
	switch (PQftype(ps->res, col)) {
	case OID_BOOL:
		return (const unsigned char *)(v[0] == 't' ? "1" : "0");
	case OID_BYTEA:
		return (const unsigned char *)decoded(ps, col, v, &n);
	default:
		return (const unsigned char *)v;
	}
}

const void *sqldb_pg_column_blob(cvdb_stmt *stmt, int col)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	const char *v, *d;
	size_t n;

	if (!value(ps, col, &v))
		return NULL;
	if (PQftype(ps->res, col) != OID_BYTEA)
		return sqldb_pg_column_text(stmt, col);
	d = decoded(ps, col, v, &n);
	/* SQLite answers NULL for a blob of no bytes */
	return n > 0 ? d : NULL;
}

int sqldb_pg_column_bytes(cvdb_stmt *stmt, int col)
{
	struct sqldb_pg_stmt *ps = stmt->pg;
	const char *v;
	size_t n = 0;

	if (!value(ps, col, &v))
		return 0;
	switch (PQftype(ps->res, col)) {
	case OID_BOOL:
		return 1;
	case OID_BYTEA:
		return decoded(ps, col, v, &n) != NULL ? (int)n : 0;
	default:
		return PQgetlength(ps->res, ps->row, col);
	}
}

int sqldb_pg_exec(cvdb *db, const char *sql)
{
	cvdb_stmt *stmt = NULL;
	const char *tail = sql;
	int rc = SQLITE_OK;

	/* Statement by statement, each translated as cvdb_prepare translates it (so that
	 * cvdb_exec(db, "BEGIN IMMEDIATE") takes the writer lock). */
	while (tail != NULL && *tail != '\0') {
		rc = sqldb_pg_prepare(db, tail, 0, &stmt, &tail);
		if (rc != SQLITE_OK || stmt == NULL)
			break;
		while ((rc = sqldb_pg_step(stmt)) == SQLITE_ROW)
			;
		sqldb_pg_finalize(stmt);
		stmt = NULL;
		if (rc != SQLITE_DONE)
			break;
		rc = SQLITE_OK;
	}
	return rc;
}

int sqldb_pg_changes(cvdb *db)
{
	return db->pg->changes;
}

/* sqlite3_last_insert_rowid is the id the connection's last successful INSERT gave its row.
 * On PostgreSQL the store's ids are identity columns: the INSERT took the id with nextval()
 * on this session, so lastval() right after it is that id; asked for only when an INSERT
 * changed rows since the last answer, so a read costs no round trip. Unlike SQLite, an
 * INSERT that inserted nothing (ON CONFLICT DO NOTHING) may still have drawn a value, and a
 * trigger inserting into another identity table would move lastval(): the store reads the id
 * right after its INSERT, and its triggers insert into no identity table. */
int64_t sqldb_pg_last_insert_rowid(cvdb *db)
{
	struct sqldb_pg_conn *c = db->pg;
	PGresult *res;

	if (!c->rowid_stale || c->broken ||
	    PQtransactionStatus(c->conn) == PQTRANS_INERROR)
		return c->last_rowid;
	res = PQexec(c->conn, "SELECT lastval()");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    !PQgetisnull(res, 0, 0)) {
		c->last_rowid = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		c->rowid_stale = 0;
	} else {
		(void)fail_result(c, res);
	}
	PQclear(res);
	return c->last_rowid;
}

int sqldb_pg_get_autocommit(cvdb *db)
{
	struct sqldb_pg_conn *c = db->pg;

	if (c->lost_tx)
		return 0; /* still to be ended by its caller */
	switch (PQtransactionStatus(c->conn)) {
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR:
	case PQTRANS_ACTIVE:
		return 0;
	default: /* idle, or the connection gone with whatever it had open */
		return 1;
	}
}

const char *sqldb_pg_errmsg(cvdb *db)
{
	return db->pg != NULL && db->pg->errmsg != NULL ? db->pg->errmsg : "not an error";
}
