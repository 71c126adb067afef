"""The integration suites on PostgreSQL (issue 15): CV_TEST_STORE=postgresql makes every
certvaultd the harness starts use `database.url` on a private PostgreSQL server instead of an
SQLite file.

One server per test process: Debian's binaries (/usr/lib/postgresql/<newest>/bin, or
$CV_PG_BINDIR) initdb a cluster in a fresh temporary directory and pg_ctl starts it on a Unix
socket in that directory only (no TCP), as the unprivileged user `nobody` when the tests run as
root (PostgreSQL refuses root; CI runs as root). Durability is off (fsync, full-page writes,
synchronous commit): the cluster is thrown away when the process ends, so a power cut takes
nothing a test needs, and starting and writing stay quick. Each certvaultd gets a schema of its
own in the one database (search_path names it): a fresh, empty store like a fresh SQLite file,
in milliseconds where a database takes PostgreSQL a second to make. citext, which the store's
schema needs, is installed once in public."""

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading

_lock = threading.Lock()
_server = None


def enabled():
    return os.environ.get("CV_TEST_STORE", "sqlite") == "postgresql"


def _bindir():
    if os.environ.get("CV_PG_BINDIR"):
        return os.environ["CV_PG_BINDIR"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise RuntimeError("no PostgreSQL server binaries (scripts/deps installs postgresql)")
    return os.path.dirname(found[-1])


class PgServer:
    """A private PostgreSQL cluster: start(), new_schema() for each store, stop()."""

    def __init__(self):
        self.bindir = _bindir()
        self.dir = tempfile.mkdtemp(prefix="cv-pg-")
        self.data = os.path.join(self.dir, "data")
        self.user = None
        self.counter = 0
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            self.user = "nobody"
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)

    def _run(self, args, check=True):
        cmd = [os.path.join(self.bindir, args[0])] + list(args[1:])
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        p = subprocess.run(cmd, capture_output=True, timeout=120, cwd=self.dir)
        if check and p.returncode != 0:
            raise RuntimeError("%s: %s%s" % (" ".join(args[:2]), p.stdout.decode(errors="replace"),
                                             p.stderr.decode(errors="replace")))
        return p

    def start(self):
        self._run(["initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync",
                   "-E", "UTF8", "--locale=C"])
        opts = ("-k %s -c listen_addresses='' -c fsync=off -c full_page_writes=off"
                " -c synchronous_commit=off -c max_connections=200" % self.dir)
        self._run(["pg_ctl", "-D", self.data, "-o", opts, "-l",
                   os.path.join(self.dir, "server.log"), "-w", "-s", "start"])
        self.psql("CREATE EXTENSION citext")
        # The suites' own SQL (Certvaultd.sql) is SQLite's: hex() as SQLite has it.
        self.psql("CREATE FUNCTION public.hex(bytea) RETURNS text LANGUAGE sql IMMUTABLE"
                  " AS $$SELECT upper(encode($1, 'hex'))$$")
        return self

    def psql(self, sql, dbname="postgres"):
        p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.dir,
                            "-U", "postgres", "-d", dbname, "-At", "-c", sql],
                           capture_output=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("psql %s: %s" % (sql, p.stderr.decode(errors="replace")))
        return p.stdout.decode().strip()

    def new_schema(self):
        """A fresh empty schema and the database.url that works in it."""
        with _lock:
            self.counter += 1
            name = "s%d" % self.counter
        self.psql("CREATE SCHEMA %s" % name)
        return ("postgresql:///postgres?host=%s&user=postgres"
                "&options=-c%%20search_path%%3D%s%%2Cpublic" % (self.dir.replace("/", "%2F"),
                                                               name))

    def stop(self):
        if os.path.isdir(self.data):
            self._run(["pg_ctl", "-D", self.data, "-m", "immediate", "-s", "stop"], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def server():
    """The process's server, started on first use and stopped when the process ends."""
    global _server
    with _lock:
        if _server is None:
            _server = PgServer().start()
            atexit.register(_server.stop)
        return _server


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
