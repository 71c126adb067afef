"""The integration suites on PostgreSQL (issue 15): CV_TEST_STORE=postgresql makes every
certvaultd the harness starts use `database.url` on a private PostgreSQL server instead of an
SQLite file.

One server per test process (harness.PgServer), stopped when the process ends. Each
certvaultd gets a schema of its own in its database "certvault" (search_path names it): a
fresh, empty store like a fresh SQLite file, in milliseconds where a database takes PostgreSQL
a second to make. citext, which the store's schema needs, is installed once in public; so is
SQLite's hex() for the suites' own SQL (run_sql)."""

import atexit
import os
import subprocess
import threading

_lock = threading.Lock()
_server = None
_schemas = 0


def enabled():
    return os.environ.get("CV_TEST_STORE", "sqlite") == "postgresql"


def server():
    """The process's server, started on first use and stopped when the process ends."""
    global _server
    import harness  # harness imports this module: not at the top

    with _lock:
        if _server is None:
            pg = harness.PgServer().start()
            atexit.register(pg.stop)
            pg.psql("CREATE EXTENSION citext")
            pg.psql("CREATE FUNCTION public.hex(bytea) RETURNS text LANGUAGE sql IMMUTABLE"
                    " AS $$SELECT upper(encode($1, 'hex'))$$")
            _server = pg
        return _server


def new_schema():
    """A fresh empty schema on the process's server; the database.url that works in it."""
    global _schemas
    pg = server()
    with _lock:
        _schemas += 1
        name = "s%d" % _schemas
    pg.psql("CREATE SCHEMA %s" % name)
    return ("postgresql:///certvault?host=%s&user=postgres"
            "&options=-c%%20search_path%%3D%s%%2Cpublic" % (pg.dir.replace("/", "%2F"), name))


def _literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return "'\\x%s'::bytea" % bytes(v).hex()
    return "'%s'" % str(v).replace("'", "''")


def _value(s):
    if s == "\x1e":
        return None
    if s.startswith("\\x"):
        return bytes.fromhex(s[2:])
    if s.lstrip("-").isdigit():
        return int(s)
    return s


def run_sql(url, sql, args=()):
    """Runs one statement of a suite's own SQL (SQLite's dialect: ? parameters, hex()) on the
    store at url; rows as tuples, integers and bytes as SQLite's module gives them."""
    parts = sql.split("?")
    if len(parts) - 1 != len(args):
        raise ValueError("%d parameters for %d ?" % (len(args), len(parts) - 1))
    text = parts[0] + "".join(_literal(a) + rest for a, rest in zip(args, parts[1:]))
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\x1f",
                        "-P", "null=\x1e", "-d", url, "-c", text], capture_output=True,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError("psql %s: %s" % (text, p.stderr.decode(errors="replace")))
    out = p.stdout.decode()
    if out.endswith("\n"):
        out = out[:-1]
    if out == "":
        return []
    return [tuple(_value(f) for f in line.split("\x1f")) for line in out.split("\n")]
