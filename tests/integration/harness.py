"""A real certvaultd for tests: a fresh SoftHSM2 token and a fresh SQLite file in a temporary
directory, certvaultd started on 127.0.0.1 (any free port), and a small HTTP client.

Only the standard library and tools nobody here wrote (openssl, pkcs11-tool, p11tool) are used,
plus cv-testcert (tests/tools) to make certificates with exact dates and key types."""

import atexit
import base64
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest

import pgstore

BUILD = os.environ.get("CV_BINARY_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
CERTVAULTD = os.path.join(BUILD, "certvaultd")
TESTCERT = os.path.join(BUILD, "tests", "cv-testcert")
SOFTHSM_MODULE = os.environ.get("CV_SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
ENGINE_PKCS11 = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"


def run(cmd, env=None, input=None, check=True):
    """Runs a command; returns CompletedProcess with text output."""
    p = subprocess.run(cmd, env=env, input=input, capture_output=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (
            " ".join(cmd), p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace")))
    return p


class Material:
    """A certificate and key made by cv-testcert, as PEM text (and the files)."""

    def __init__(self, workdir, name, key="p256", cn=None, san=None, not_before=-3600,
                 not_after=90 * 86400 + 3600, md=None, key_format=None, password=None, ca=False,
                 issuer=None):
        self.cert_path = os.path.join(workdir, name + ".crt")
        self.key_path = os.path.join(workdir, name + ".key")
        cmd = [TESTCERT, "--key", key, "--not-before", str(not_before),
               "--not-after", str(not_after), "--cert-out", self.cert_path,
               "--key-out", self.key_path]
        if cn is not None:
            cmd += ["--cn", cn]
        if san is not None:
            cmd += ["--san", san]
        if md is not None:
            cmd += ["--md", md]
        if key_format is not None:
            cmd += ["--key-format", key_format]
        if password is not None:
            cmd += ["--password", password]
        if ca:
            cmd += ["--ca"]
        if issuer is not None:
            cmd += ["--issuer-cert", issuer.cert_path, "--issuer-key", issuer.key_path]
        run(cmd)
        with open(self.cert_path) as f:
            self.cert = f.read()
        with open(self.key_path) as f:
            self.key = f.read()

    def cert_der(self):
        return run(["openssl", "x509", "-in", self.cert_path, "-outform", "DER"]).stdout

    def key_der(self):
        """The private key as PKCS#8 DER (unencrypted)."""
        return run(["openssl", "pkey", "-in", self.key_path, "-outform", "DER"]).stdout


def record_response(method, path, status, content_type, payload):
    """Appends one answer to $CV_RESPONSE_LOG (JSON lines), which test_openapi checks against
    the API's OpenAPI description: every answer any integration test saw. Secrets shown once
    (a new access token) are left out."""
    log = os.environ.get("CV_RESPONSE_LOG")
    if not log:
        return
    body = payload if isinstance(payload, (dict, list)) else None
    if isinstance(body, dict) and "token" in body and isinstance(body.get("token"), str):
        body = dict(body, token="cvt_0000000000000000_" + "x" * 43)
    line = json.dumps({"method": method, "path": path.split("?", 1)[0], "status": status,
                       "content_type": content_type, "body": body})
    if len(line) > 256 * 1024:
        return
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "a") as f:
        f.write(line + "\n")


class Certvaultd:
    """One certvaultd with its own token and database."""

    def __init__(self, workdir, settings=None):
        self.dir = workdir
        self.token_dir = os.path.join(workdir, "softhsm")
        os.makedirs(self.token_dir, exist_ok=True)
        self.softhsm_conf = os.path.join(workdir, "softhsm2.conf")
        with open(self.softhsm_conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\n"
                    "log.level = ERROR\n" % self.token_dir)
        self.pin = secrets.token_hex(8)
        self.so_pin = secrets.token_hex(8)
        self.pin_file = os.path.join(workdir, "user.pin")
        fd = os.open(self.pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (self.pin + "\n").encode())
        os.close(fd)
        self.db = os.path.join(workdir, "certvault.db")
        # CV_TEST_STORE=postgresql: a fresh schema on the process's private PostgreSQL instead
        # (pgstore.py); self.db then names no file.
        self.db_url = pgstore.new_schema() if pgstore.enabled() else None
        self.admin_token_file = os.path.join(workdir, "admin.token")
        self.admin_token = None
        self.label = "cv-test"
        self.settings = dict(settings or {})
        self.proc = None
        self.port = None
        self.log_path = os.path.join(workdir, "certvaultd.log")
        self.init_token()

    def env(self, extra=None):
        e = dict(os.environ)
        e.update({
            "SOFTHSM2_CONF": self.softhsm_conf,
            "CERTVAULT_SERVER_LISTEN": "127.0.0.1",
            "CERTVAULT_SERVER_PORT": "0",
            "CERTVAULT_DATABASE_PATH": self.db,
            "CERTVAULT_TOKEN_MODULE": SOFTHSM_MODULE,
            "CERTVAULT_TOKEN_LABEL": self.label,
            "CERTVAULT_TOKEN_PIN_FILE": self.pin_file,
            "CERTVAULT_AUTH_ADMIN_TOKEN_FILE": self.admin_token_file,
            # The suites written before soft delete (issue 18) test the delete at once;
            # test_deleted sets a retention of its own.
            "CERTVAULT_LIFECYCLE_DELETED_RETENTION_DAYS": "0",
        })
        e.pop("CERTVAULT_TOKEN_PIN", None)
        if self.db_url:
            del e["CERTVAULT_DATABASE_PATH"]
            e["CERTVAULT_DATABASE_URL"] = self.db_url
        e.update(self.settings)
        if extra:
            e.update(extra)
        return e

    def sql(self, sql, args=()):
        """Runs one statement of SQL (SQLite's dialect, ? parameters) on this certvaultd's
        database behind its back, whichever the engine; returns the rows."""
        if self.db_url:
            return pgstore.run_sql(self.db_url, sql, args)
        db = sqlite3.connect(self.db, timeout=30)
        try:
            rows = db.execute(sql, args).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def init_token(self):
        env = self.env({"CERTVAULT_TOKEN_SO_PIN": self.so_pin})
        run([CERTVAULTD, "--init-token"], env=env)

    def start(self, extra_env=None, prefix=None):
        """prefix: a command certvaultd runs under (strace ...)."""
        self.logf = open(self.log_path, "ab")
        self.log_offset = self.logf.tell()
        self.proc = subprocess.Popen(list(prefix or []) + [CERTVAULTD], env=self.env(extra_env),
                                     stdout=subprocess.DEVNULL, stderr=self.logf)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("certvaultd exited %d:\n%s" % (
                    self.proc.returncode, self.log()))
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                # The first start wrote the first admin token; later starts keep it.
                with open(self.admin_token_file) as f:
                    self.admin_token = f.read().strip()
                self.make_environments()
                return self
            time.sleep(0.02)
        raise AssertionError("certvaultd did not start:\n" + self.log())

    def wait_orphans_checked(self, timeout=30):
        """The health answer once the orphan key check ran: it waits for the token's public
        key objects, listed on a thread of their own after the start."""
        deadline = time.time() + timeout
        while True:
            st, _, health = self.request("GET", "/v1/health", token=None)
            if st == 200 and health["keys"]["orphans_checked"]:
                return health
            if time.time() > deadline:
                raise AssertionError("the orphan key check did not run: %s %s\n%s" % (
                    st, health, self.log()))
            time.sleep(0.02)

    # Services belong to an existing environment: the suites' services use these, made once
    # on the first start (test_environments makes and checks its own).
    ENVIRONMENTS = ("production", "staging", "test")

    def make_environments(self):
        if getattr(self, "environments_made", False):
            return
        for name in self.ENVIRONMENTS:
            st, _, body = self.request("PUT", "/v1/environments/" + name, {})
            if st not in (200, 201):
                raise AssertionError("PUT /v1/environments/%s: %s %s" % (name, st, body))
        self.environments_made = True

    def log(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def whole_log(self):
        """Everything every start of this certvaultd wrote."""
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.logf.close()
        return rc

    def request(self, method, path, body=None, headers=None, raw=None, token=True):
        """Returns (status, headers dict with lower-case names, parsed JSON or bytes).
        token: True sends the admin token, a string sends that token, None sends none."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        hdrs = dict(headers or {})
        if token is True:
            token = self.admin_token
        if token is not None:
            hdrs.setdefault("Authorization", "Bearer " + token)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        rh = {k.lower(): v for k, v in resp.getheaders()}
        conn.close()
        if rh.get("content-type", "").startswith("application/json"):
            payload = json.loads(payload)
        record_response(method, path, resp.status, rh.get("content-type", ""), payload)
        return resp.status, rh, payload

    def import_cert(self, name, material, **extra):
        body = {"name": name, "certificate": material.cert, "private_key": material.key}
        body.update(extra)
        return self.request("POST", "/v1/certificates", body)

    def token_objects(self):
        """Every object in the token as pkcs11-tool lists it after logging in."""
        p = run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.label,
                 "--login", "--pin", "env:CV_TEST_PIN", "--list-objects"],
                env=dict(self.env(), CV_TEST_PIN=self.pin))
        return p.stdout.decode()

    def count_token_objects(self, kind="Private Key Object"):
        return self.token_objects().count(kind)


class PgServer:
    """A private PostgreSQL server (issue 15), as tests/support/pgserver.c makes one for the C
    tests: Debian's newest /usr/lib/postgresql/<version>/bin (CV_PG_BINDIR overrides) initdb's
    a cluster in a fresh directory under /tmp and pg_ctl starts it on a Unix socket in that
    directory only (no TCP), as nobody when the tests run as root (PostgreSQL refuses root; CI
    runs as root). fsync, full-page writes and synchronous commit are off: the cluster is
    thrown away, so a power cut loses nothing a test needs, and starting stays quick (about a
    second). Use it as a context manager, or start() and stop():

        with PgServer() as pg:
            settings = {"CERTVAULT_DATABASE_URL": pg.url("certvault")}
    """

    def __init__(self):
        self.dir = None
        self.running = False
        self.bindir = os.environ.get("CV_PG_BINDIR") or self._newest_bindir()
        self.user = self.group = None
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("nobody")
            self.user, self.group = pw.pw_uid, pw.pw_gid

    @staticmethod
    def _newest_bindir():
        root = "/usr/lib/postgresql"
        versions = [v for v in (os.listdir(root) if os.path.isdir(root) else [])
                    if v.isdigit() and os.access(os.path.join(root, v, "bin", "initdb"),
                                                 os.X_OK)]
        if not versions:
            raise AssertionError("no initdb under /usr/lib/postgresql/*/bin "
                                 "(scripts/deps installs Debian's postgresql)")
        return os.path.join(root, max(versions, key=int), "bin")

    def _run(self, prog, *args):
        kw = {}
        if self.user is not None:
            kw = {"user": self.user, "group": self.group, "extra_groups": []}
        p = subprocess.run([os.path.join(self.bindir, prog)] + list(args),
                           capture_output=True, timeout=120, **kw)
        if p.returncode != 0:
            raise AssertionError("%s failed (%d):\n%s%s" % (
                prog, p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        return p

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="cv-pg-", dir="/tmp")
        try:
            if self.user is not None:
                os.chown(self.dir, self.user, self.group)
            data = os.path.join(self.dir, "data")
            self._run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--no-locale", "--no-sync")
            self._run("pg_ctl", "-D", data, "-l", os.path.join(self.dir, "server.log"),
                      "-w", "-s", "-o",
                      "-k %s -c listen_addresses= -c fsync=off -c full_page_writes=off"
                      " -c synchronous_commit=off -c shared_buffers=16MB"
                      " -c max_connections=60" % self.dir, "start")
            self.running = True
            # a suite that dies before its teardown leaves no cluster behind
            atexit.register(self.stop)
            self.createdb("certvault")
        except BaseException:
            self.stop()
            raise
        return self

    def conninfo(self, dbname="certvault"):
        """libpq's key=value connection string of a database of this server."""
        return "host=%s user=postgres dbname=%s" % (self.dir, dbname)

    def url(self, dbname="certvault"):
        """The same as a postgresql:// URL (the socket directory in ?host=)."""
        return "postgresql://postgres@/%s?host=%s" % (dbname, self.dir)

    def createdb(self, name):
        """Creates an empty database (name: [a-z0-9_]); returns its conninfo."""
        if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
            raise ValueError("bad database name")
        self._run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-U",
                  "postgres", "-d", "postgres", "-c", "CREATE DATABASE %s" % name)
        return self.conninfo(name)

    def psql(self, sql, dbname="certvault"):
        """Runs sql through psql; returns its output (unaligned, tuples only)."""
        return self._run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                         self.dir, "-U", "postgres", "-d", dbname,
                         "-c", sql).stdout.decode()

    def stop(self):
        """Stops the server at once (-m immediate) and removes its directory."""
        if self.dir is None:
            return
        if self.running:
            try:
                self._run("pg_ctl", "-D", os.path.join(self.dir, "data"), "-m", "immediate",
                          "-s", "stop")
            finally:
                self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class VaultTestCase(unittest.TestCase):
    """Starts one certvaultd per test class; self.vault and self.tmp are ready in each test."""

    settings = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cv-it-")
        cls.vault = Certvaultd(cls.tmp, cls.settings).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.vault.stop()
        log = cls.vault.log()
        # A sanitizer report or a crash shows in the exit status and the log.
        if rc != 0 or "ERROR: AddressSanitizer" in log or "runtime error:" in log:
            raise AssertionError("certvaultd exited %s:\n%s" % (rc, log[-4000:]))
        # Every change writes its audit record in its own transaction; the dispatch's late
        # write is a safety net that no route may need.
        late = [line for line in cls.vault.whole_log().splitlines()
                if "written after the change" in line]
        if late:
            raise AssertionError("audit records written after their change:\n" +
                                 "\n".join(late[:20]))
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def material(self, name, **kw):
        return Material(self.tmp, name, **kw)

    def assertError(self, resp, status, code):
        st, _, body = resp
        self.assertEqual(st, status, body)
        self.assertIsInstance(body, dict, body)
        self.assertEqual(body["error"]["code"], code, body)
        self.assertTrue(body["error"]["message"], body)
        return body["error"]["message"]


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()
