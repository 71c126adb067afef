#!/usr/bin/env python3
"""certvault's benchmark suite (issue 7): certvault's figures set against the limits of the
token, SQLite and nginx, measured side by side in one run, printed as a table of ratios.

Run it through scripts/bench, which installs what is missing (wrk, nginx), builds the bench
tree (build-bench/) and calls this with the binaries' directory:

    scripts/bench             the issue's sizes: 10, 1,000 and 10,000 certificates with
                              keys, 100,000 certificate rows (the first run also imports the
                              11,000 keys of the cached data sets, about 4 minutes)
    scripts/bench --quick     small sizes (10, 100, 300 keys; 5,000 rows), about a minute
    scripts/bench --rebuild   make the cached data sets again (or rm -rf build-bench/data)
    scripts/bench --keys N --rows M   other large sizes

What is cached: build-bench/data/keys-N/ (N = 1,000 and 10,000; 100 and 300 with --quick)
holds a SoftHSM token with N P-256 keys imported through certvaultd's API (k-000000 ...) and
the database certvaultd made for them, marked complete by complete.json; an interrupted build
is started again. Everything else is made afresh under build-bench/run/ on every run: the
tokens the imports are timed on, the 10-key set, and the list's database (a copy of the
10,000-key one with rows added straight into SQLite up to 100,000).

Machines here are shared and noisy: every pair is measured back to back and each short run is
repeated, every other round in the other order. For the HTTP loads the best of each side is
kept and the ratio is taken of the two bests; imports, which ride on a disk whose speed drifts
by 2x within minutes, are run as short alternating pairs and the median pair ratio is given.
Timing never fails anything: the exit status says only whether the suite could run.
Standard library only, like tests/integration."""

import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse

SOFTHSM_MODULE = os.environ.get("CV_SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")

SIZES = {
    "full": dict(import_n={"rsa2048": 60, "p256": 100}, import_rounds=8, rounds=3,
                 generate_n={"p256": 40, "rsa2048": 12}, generate_rounds=5,
                 small=10, mid=1000, large=10000,
                 rows=100000, wrk_seconds=5, sign_seconds=2, sign_runs=2, sql_seconds=2,
                 lw_sizes=(1000, 100000), lw_imports=1000, idle=60,
                 node_import_n=60, node_import_rounds=8),
    "quick": dict(import_n={"rsa2048": 20, "p256": 40}, import_rounds=2, rounds=2,
                  generate_n={"p256": 20, "rsa2048": 6}, generate_rounds=2,
                  small=10, mid=100, large=300,
                  rows=5000, wrk_seconds=1, sign_seconds=1, sign_runs=1, sql_seconds=1,
                  lw_sizes=(1000, 5000), lw_imports=300, idle=10,
                  node_import_n=20, node_import_rounds=2),
}
WRK_THREADS = 2
WRK_CONNECTIONS = 32
IMPORT_THREADS = 2
IMPORT_CONNECTIONS = (1, 2, 8)
KEY_POOL = 16


def say(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def run(cmd, env=None, timeout=3600):
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s%s" % (
            " ".join(cmd), p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace")))
    return p.stdout.decode()


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON result in:\n" + text)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Token:
    """A SoftHSM token directory with its PIN files, made by certvaultd --init-token as
    tests/integration/harness.py makes its own; and the database next to it."""

    def __init__(self, bins, path, label):
        self.bins = bins
        self.path = path
        self.label = label
        self.pin_file = os.path.join(path, "user.pin")
        self.db = os.path.join(path, "certvault.db")
        self.conf = os.path.join(path, "softhsm2.conf")
        os.makedirs(os.path.join(path, "softhsm"), exist_ok=True)
        # Written on every use, so that a data set survives the tree being moved.
        with open(self.conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\n"
                    "log.level = ERROR\n" % os.path.join(path, "softhsm"))
        for name in ("user.pin", "so.pin"):
            p = os.path.join(path, name)
            if not os.path.exists(p):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, (secrets.token_hex(8) + "\n").encode())
                os.close(fd)

    def env(self, db=None, extra=None):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("CERTVAULT_"):
                del e[k]
        e.update({
            "SOFTHSM2_CONF": self.conf,
            "CERTVAULT_SERVER_LISTEN": "127.0.0.1",
            "CERTVAULT_SERVER_PORT": "0",
            "CERTVAULT_DATABASE_PATH": db or self.db,
            "CERTVAULT_TOKEN_MODULE": SOFTHSM_MODULE,
            "CERTVAULT_TOKEN_LABEL": self.label,
            "CERTVAULT_TOKEN_PIN_FILE": self.pin_file,
            # One admin token per database: the first start of each writes its own.
            "CERTVAULT_AUTH_ADMIN_TOKEN_FILE": (db or self.db) + ".admin-token",
        })
        if extra:
            e.update(extra)
        return e

    def init(self):
        env = self.env(extra={"CERTVAULT_TOKEN_SO_PIN_FILE": os.path.join(self.path, "so.pin")})
        run([self.bins.certvaultd, "--init-token"], env=env)
        return self

    def raw(self, *args, timeout=3600):
        """Runs cv-bench-token on this token; returns its JSON result."""
        cmd = [self.bins.token, args[0], "--label", self.label, "--pin-file", self.pin_file]
        return last_json(run(cmd + list(args[1:]), env=self.env(), timeout=timeout))


class Daemon:
    """One certvaultd on a token and a database, its log in a file."""

    def __init__(self, token, db=None, log=None, extra_env=None, url=None):
        """url: PostgreSQL's (database.url) instead of SQLite at db; db then only names
        where the first admin token is kept (db + ".admin-token"), which every node on that
        database shares."""
        self.token = token
        self.extra_env = extra_env
        self.url_db = url
        self.db = db or token.db
        self.log_path = log or os.path.join(token.path, "certvaultd.log")
        self.proc = None
        self.port = None

    def start(self):
        self.logf = open(self.log_path, "ab")
        offset = self.logf.tell()
        env = self.token.env(self.db, self.extra_env)
        if self.url_db:
            # database.path and database.url both set is refused at start.
            del env["CERTVAULT_DATABASE_PATH"]
            env["CERTVAULT_DATABASE_URL"] = self.url_db
        self.proc = subprocess.Popen([self.token.bins.certvaultd], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.logf)
        deadline = time.time() + 600
        while time.time() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                self.token_file = self.db + ".admin-token"
                with open(self.token_file) as f:
                    self.auth = "Bearer " + f.read().strip()
                # wrk takes headers from a script: the token stays off command lines.
                self.wrk_script = self.db + ".wrk.lua"
                fd = os.open(self.wrk_script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.write(fd, ('wrk.headers["Authorization"] = "%s"\n' % self.auth).encode())
                os.close(fd)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("certvaultd exited %d:\n%s" % (self.proc.returncode, text))
            time.sleep(0.01)
        raise RuntimeError("certvaultd did not start:\n" + text)

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.logf.close()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": self.auth}
        if data:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        return resp.status, payload

    def cpu_seconds(self):
        """User + system CPU time certvaultd has used so far."""
        fields = proc_stat_fields(self.proc.pid)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_kib(self):
        out = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
        return out

    def import_keys(self, key, count, prefix, pool=KEY_POOL, threads=IMPORT_THREADS,
                    progress=False):
        cmd = [self.token.bins.client, "--port", str(self.port), "--key", key, "--count",
               str(count), "--threads", str(threads), "--pool", str(pool), "--prefix", prefix,
               "--token-file", self.token_file]
        if progress:
            cmd.append("--progress")
            p = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=7200)
            if p.returncode != 0:
                raise RuntimeError("%s failed" % " ".join(cmd))
            return last_json(p.stdout.decode())
        return last_json(run(cmd))


class Nginx:
    """nginx serving files from a directory, with its stock behaviour (access log on,
    sendfile, keep-alive) and one worker per core."""

    def __init__(self, path):
        self.path = path
        self.www = os.path.join(path, "www")
        os.makedirs(self.www, exist_ok=True)
        # nginx's workers run as nobody: they must reach the files.
        for d in (path, self.www):
            os.chmod(d, 0o755)
        self.port = free_port()
        self.conf = os.path.join(path, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write("""worker_processes auto;
daemon off;
pid %(p)s/nginx.pid;
error_log %(p)s/error.log;
events { worker_connections 1024; }
http {
    access_log %(p)s/access.log;
    sendfile on;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%(port)d;
        location / { root %(www)s; default_type application/json; }
    }
}
""" % {"p": path, "port": self.port, "www": self.www})
        self.proc = None

    def put(self, name, data):
        p = os.path.join(self.www, name)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, 0o644)
        return "http://127.0.0.1:%d/%s" % (self.port, name)

    def start(self):
        self.proc = subprocess.Popen([nginx_binary(), "-c", self.conf, "-p", self.path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("nginx exited %d: see %s/error.log" % (
                        self.proc.returncode, self.path))
                time.sleep(0.02)
        raise RuntimeError("nginx did not start")

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def nginx_binary():
    for p in ("/usr/sbin/nginx", shutil.which("nginx") or ""):
        if p and os.path.exists(p):
            return p
    raise RuntimeError("nginx is not installed (scripts/bench installs it)")


def parse_duration_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        raise RuntimeError("cannot read wrk's duration " + s)
    v = float(m.group(1))
    return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def wrk(url, seconds, script=None):
    """wrk -t2 -c32 with its latency distribution: req/s, p50 and p99 in ms. script: a Lua
    file that sets the Authorization header (a Daemon's wrk_script)."""
    cmd = ["wrk", "-t%d" % WRK_THREADS, "-c%d" % WRK_CONNECTIONS, "-d%ds" % seconds, "--latency"]
    if script is not None:
        cmd += ["-s", script]
    out = run(cmd + [url], timeout=seconds + 60)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = parse_duration_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = parse_duration_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad or "Socket errors" in out:
        raise RuntimeError("wrk saw errors on %s:\n%s" % (url, out))
    return {"rps": rps, "p50": p50, "p99": p99, "requests": requests}


def wrk_cpu(daemon, path, seconds):
    """wrk on daemon's path, with the CPU time certvaultd spent per request (ms): on a
    machine whose cores others are using, throughput moves with their load, the CPU a
    request costs much less."""
    return wrk_cpu_script(daemon, path, seconds, daemon.wrk_script)


def wrk_cpu_script(daemon, path, seconds, script):
    """wrk_cpu with a script of its own (one that also sets the Authorization header)."""
    before = daemon.cpu_seconds()
    r = wrk(daemon.url(path), seconds, script)
    r["cpu_ms"] = (daemon.cpu_seconds() - before) * 1e3 / max(1, r["requests"])
    return r


def best_rate(runs, key="rate"):
    return max(r[key] for r in runs)


class Table:
    def __init__(self):
        self.rows = []
        self.notes = []

    def add(self, measure, figure, limit, ratio, target, result):
        self.rows.append((measure, figure, limit, ratio, target, result))

    def render(self):
        head = ("measure", "certvault", "raw limit (same run)", "ratio", "target", "result")
        widths = [max(len(str(r[i])) for r in self.rows + [head]) for i in range(6)]
        line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
        out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in self.rows]
        return "\n".join(out)


def verdict(ok):
    return "pass" if ok else "MISS"


def ratio_ok(value, op, bound):
    """Judges the ratio as printed (two decimals), so that the table never says 0.80 MISS."""
    v = round(value, 2)
    return verdict(v >= bound if op == ">=" else v <= bound)


def fmt_rate(v, unit="/s"):
    return "{:,.0f}{}".format(v, unit)


# --- data sets -------------------------------------------------------------------------------

def keys_dataset(bins, data_dir, n, rebuild):
    """A token with n P-256 keys imported through certvaultd (k-000000 ...), and its
    database; made once and kept under data_dir/keys-N."""
    path = os.path.join(data_dir, "keys-%d" % n)
    stamp = os.path.join(path, "complete.json")
    if rebuild and os.path.exists(path):
        shutil.rmtree(path)
    if os.path.exists(stamp):
        say("data set %s: cached (scripts/bench --rebuild makes it again)" % path)
        return Token(bins, path, "bench-keys")
    if os.path.exists(path):
        shutil.rmtree(path)  # an interrupted build
    say("data set %s: importing %d P-256 certificates with keys through the API, once"
        % (path, n))
    token = Token(bins, path, "bench-keys").init()
    d = Daemon(token).start()
    try:
        t0 = time.time()
        res = d.import_keys("p256", n, "k", pool=n, progress=n >= 1000)
        say("data set built: %d imports in %.0f s (%.0f/s)" % (n, time.time() - t0,
                                                              res["rate"]))
    finally:
        d.stop()
    with open(stamp, "w") as f:
        json.dump({"keys": n, "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)
    return token


LIST_ROW_COLUMNS = ("name", "description", "state", "cert_der", "chain_pem", "subject",
                    "issuer", "serial", "sha256_fingerprint", "key_description",
                    "primary_domain", "not_before", "not_after", "key_id", "created_at",
                    "updated_at", "version", "current_since")


def list_columns(public):
    return LIST_ROW_COLUMNS + (("has_key",) if public else ())


def list_rows(der, count, public=False):
    """count rows for the list, the same on every call: (certificate columns in
    list_columns(public)'s order, domains). Random 16-byte key ids that name no key in the
    token, 1 to 3 domains each, and a status mix of 80% valid, 8% expiring soon, 8% expired,
    4% upcoming. public: public certificates (has_key 0, issue 17), which the list does not
    look up in the token for its key_missing flag."""
    rng = random.Random(7)
    now = int(time.time())
    day = 86400
    for i in range(count):
        name = "row-%06d" % i
        x = rng.random()
        if x < 0.80:
            nb, na = now - rng.randint(1, 300) * day, now + rng.randint(31, 800) * day
        elif x < 0.88:
            nb, na = now - rng.randint(60, 300) * day, now + rng.randint(1, 29) * day
        elif x < 0.96:
            nb, na = now - rng.randint(400, 800) * day, now - rng.randint(1, 399) * day
        else:
            nb, na = now + rng.randint(1, 60) * day, now + rng.randint(100, 400) * day
        domain = "%s.example.org" % name
        row = (name, "", 1, der, "", "CN=" + domain, "CN=Bench CA",
               "%016X" % rng.getrandbits(64),
               ":".join("%02X" % rng.getrandbits(8) for _ in range(32)), "ECDSA P-256",
               domain, nb, na, rng.randbytes(16), now, now, 1, now)
        if public:
            row += (0,)
        yield row, [domain, "www." + domain, "api." + domain][:rng.randint(1, 3)]


def fill_rows(src_db, dst_db, total, public=False):
    """Copies src_db and adds rows straight into SQLite (list_rows), in one transaction, up
    to total active certificates. Returns how many rows it added."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(dst_db + suffix):
            os.remove(dst_db + suffix)
    shutil.copyfile(src_db, dst_db)
    if os.path.exists(src_db + "-wal"):
        shutil.copyfile(src_db + "-wal", dst_db + "-wal")
    # The copy holds the source's tokens, so the source's admin token works on it.
    if os.path.exists(src_db + ".admin-token"):
        shutil.copyfile(src_db + ".admin-token", dst_db + ".admin-token")
        os.chmod(dst_db + ".admin-token", 0o600)
    db = sqlite3.connect(dst_db, isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    have = db.execute("SELECT count(*) FROM certificates WHERE state = 1").fetchone()[0]
    der, = db.execute("SELECT cert_der FROM certificates LIMIT 1").fetchone()
    add = max(0, total - have)
    db.execute("BEGIN")
    cols = list_columns(public)
    for row, doms in list_rows(der, add, public):
        cur = db.execute("INSERT INTO certificates (%s) VALUES (%s)" % (
            ", ".join(cols), ", ".join("?" * len(cols))), row)
        cid = cur.lastrowid
        db.executemany("INSERT INTO certificate_domains (cert_id, position, domain)"
                       " VALUES (?, ?, ?)", [(cid, j, d) for j, d in enumerate(doms)])
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return add


# --- the measurements ------------------------------------------------------------------------

def time_to_line(cmd, env, pattern, stream):
    """Seconds from spawning cmd to the first line matching pattern on stream ("stdout" or
    "stderr"), and the process (still running)."""
    kw = {"stdout": subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
          "stderr": subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, **kw)
    pipe = p.stdout if stream == "stdout" else p.stderr
    seen = []
    for raw in pipe:
        line = raw.decode(errors="replace")
        seen.append(line)
        if re.search(pattern, line):
            return time.perf_counter() - t0, p, pipe
    p.wait()
    raise RuntimeError("%s ended (%s) before printing %r:\n%s" % (
        cmd[0], p.returncode, pattern, "".join(seen)))


def measure_sign(bins, run_dir, sz, table):
    tok = Token(bins, os.path.join(run_dir, "sign"), "bench-sign").init()
    for key, label in (("rsa2048", "RSA-2048"), ("p256", "P-256")):
        for threads in (1, 2):
            say("raw C_Sign %s, %d thread(s)" % (label, threads))
            runs = [tok.raw("sign", "--key", key, "--threads", str(threads), "--seconds",
                            str(sz["sign_seconds"])) for _ in range(sz["sign_runs"])]
            table.add("context: raw C_Sign %s, %d thread%s" % (label, threads,
                                                              "s" if threads > 1 else ""),
                      "", fmt_rate(best_rate(runs)), "", "", "")


def wrk_post(url, seconds, script, connections):
    """wrk with `connections` connections on as many threads, POSTing what script says:
    req/s, p50 and p99 in ms; any non-2xx answer fails the run."""
    cmd = ["wrk", "-t%d" % connections, "-c%d" % connections, "-d%ds" % seconds, "--latency",
           "-s", script, url]
    out = run(cmd, timeout=seconds + 60)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = parse_duration_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = parse_duration_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    if re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out) or "Socket errors" in out:
        raise RuntimeError("wrk saw errors on %s:\n%s" % (url, out))
    return {"rps": rps, "p50": p50, "p99": p99}


SIGN_CONNECTIONS = 2


def measure_sign_api(bins, run_dir, sz, table):
    """Issue 18: POST /v1/certificates/{name}/sign (RS256 and ES256 over a SHA-256 digest) on
    2 connections against raw C_Sign on 2 threads with the very same key objects of the same
    token (cv-bench-token sign --key-label: CKM_RSA_PKCS over the DigestInfo, CKM_ECDSA over
    the digest, what certvaultd asks of the token), in alternating rounds, best of each side.
    Every API signature is audited (collapsed per audit.sign_interval, the default 60 s) and
    RSA signatures are verified before they are answered, as in production."""
    tok = Token(bins, os.path.join(run_dir, "sign-api"), "bench-sign-api").init()
    d = Daemon(tok).start()
    try:
        digest = base64.b64encode(hashlib.sha256(b"certvault bench").digest()).decode()
        for key, label, alg in (("rsa2048", "RSA-2048", "RS256"), ("p256", "P-256", "ES256")):
            prefix = "sign" + key[:1]
            d.import_keys(key, 1, prefix, pool=1)
            name = "%s-%06d" % (prefix, 0)
            body = json.dumps({"algorithm": alg, "digest": digest})
            st, out = d.request("POST", "/v1/certificates/%s/sign" % name,
                                {"algorithm": alg, "digest": digest})
            if st != 200:
                raise RuntimeError("sign: %d %s" % (st, out[:300]))
            script = os.path.join(tok.path, "sign-%s.lua" % key)
            fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, ('wrk.method = "POST"\nwrk.body = \'%s\'\n'
                          'wrk.headers["Content-Type"] = "application/json"\n'
                          'wrk.headers["Authorization"] = "%s"\n' % (body, d.auth)).encode())
            os.close(fd)
            url = d.url("/v1/certificates/%s/sign" % name)
            api, raw = [], []
            for rnd in range(sz["rounds"]):
                for side in (("api", "raw") if rnd % 2 == 0 else ("raw", "api")):
                    if side == "api":
                        api.append(wrk_post(url, sz["sign_seconds"], script, SIGN_CONNECTIONS))
                    else:
                        raw.append(tok.raw("sign", "--key", key, "--key-label", name + ".v1",
                                           "--threads", str(SIGN_CONNECTIONS), "--seconds",
                                           str(sz["sign_seconds"])))
                say("sign %s round %d/%d: %.0f/s over HTTP (p99 %.2f ms), %.0f/s raw" % (
                    label, rnd + 1, sz["rounds"], api[-1]["rps"], api[-1]["p99"],
                    raw[-1]["rate"]))
            best_api = max(api, key=lambda r: r["rps"])
            best_raw = best_rate(raw)
            r = best_api["rps"] / best_raw
            table.add("sign %s %s over HTTP, %d connections (p50 %.2f ms, p99 %.2f ms)" % (
                label, alg, SIGN_CONNECTIONS, best_api["p50"], best_api["p99"]),
                fmt_rate(best_api["rps"]), "%s C_Sign same key, %d threads" % (
                    fmt_rate(best_raw), SIGN_CONNECTIONS),
                "%.2f" % r, ">= 0.80", ratio_ok(r, ">=", 0.8))
    finally:
        d.stop()


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def import_pairs(d, raw_tok, key, label, threads, rounds, sz, table, serialize):
    """Alternating pairs of n imports over HTTP on threads connections and n raw key creates
    on as many threads, the raw side serialised as certvaultd serialises its creates (one
    mutex around each key's two C_CreateObject calls) when serialize. Adds the row; returns
    the median rates (api, raw)."""
    n = sz["import_n"][key]
    api, raw, ratios = [], [], []
    for rnd in range(rounds):
        pair = {}
        for side in (("api", "raw") if rnd % 2 == 0 else ("raw", "api")):
            prefix = "%s%s%d%d" % (side[0], key[:1], threads, rnd)
            if side == "api":
                pair[side] = d.import_keys(key, n, prefix, threads=threads)["rate"]
            else:
                pair[side] = raw_tok.raw("create", "--key", key, "--count", str(n),
                                         "--threads", str(threads), "--pool", str(KEY_POOL),
                                         "--prefix", prefix,
                                         *(["--serialize"] if serialize else []))["rate"]
        api.append(pair["api"])
        raw.append(pair["raw"])
        ratios.append(pair["api"] / pair["raw"])
        say("import %s on %d connection(s), pair %d/%d, %d keys each: %.0f/s over HTTP, "
            "%.0f/s raw, %.2f" % (label, threads, rnd + 1, rounds, n, pair["api"],
                                  pair["raw"], ratios[-1]))
    r = median(ratios)
    plural = "s" if threads > 1 else ""
    table.add("import %s, cert + key over HTTP (%d connection%s; pairs %.2f-%.2f)" % (
        label, threads, plural, min(ratios), max(ratios)),
        fmt_rate(median(api)), "%s C_CreateObject priv+pub, %d thread%s%s" % (
            fmt_rate(median(raw)), threads, plural,
            " serialised" if serialize and threads > 1 else ""),
        "%.2f" % r, ">= 0.80", ratio_ok(r, ">=", 0.8))
    return median(api), median(raw)


def token_serialises(d):
    """Whether certvaultd said at start that it makes keys one at a time."""
    with open(d.log_path, errors="replace") as f:
        lines = [l for l in f if "keys made and destroyed in the token" in l]
    if not lines:
        raise RuntimeError("certvaultd did not say how it makes keys (see %s)" % d.log_path)
    return "one at a time" in lines[-1]


def measure_import(bins, run_dir, sz, table, with_sync=True):
    """Imports over HTTP against raw C_CreateObject pairs on 1, 2 and 8 connections (raw: as
    many threads), in short alternating batches on two fresh tokens that grow alike: the
    disk under SoftHSM drifts by 2x from one minute to the next here, so each ratio is taken
    within a pair and the median pair is reported. Then whether more connections import
    faster than one."""
    cv_tok = Token(bins, os.path.join(run_dir, "import-cv"), "bench-import").init()
    raw_tok = Token(bins, os.path.join(run_dir, "import-raw"), "bench-raw").init()
    d = Daemon(cv_tok).start()
    try:
        serialize = token_serialises(d)
        table.notes.append(
            "import: certvaultd makes keys %s (its start-up line), so the raw side %s" % (
                "one at a time" if serialize else "concurrently",
                "holds one mutex around each key's two C_CreateObject calls on 2 and 8 "
                "threads, as certvaultd does" if serialize else "is not serialised either"))
        # The first requests of a fresh process are slower (page faults, lazy loading).
        for key in ("rsa2048", "p256"):
            d.import_keys(key, 5, "warm" + key[:1], pool=5)
            raw_tok.raw("create", "--key", key, "--count", "5", "--pool", "5", "--prefix",
                        "warm" + key[:1])
        for key, label in (("rsa2048", "RSA-2048"), ("p256", "P-256")):
            rates = {}
            for conns in IMPORT_CONNECTIONS:
                rates[conns] = import_pairs(d, raw_tok, key, label, conns,
                                            sz["import_rounds"], sz, table, serialize)
            one_api, one_raw = rates[1]
            for conns in IMPORT_CONNECTIONS[1:]:
                api, raw = rates[conns]
                table.add("import %s on %d connections vs on 1 (median rates)" % (
                    label, conns), fmt_rate(api), "%s on 1 (raw: %.2fx on %d threads%s)" % (
                        fmt_rate(one_api), raw / one_raw, conns,
                        " serialised" if serialize else ""),
                    "%.2f" % (api / one_api), "> 1.00", verdict(round(api / one_api, 2) > 1))
    finally:
        d.stop()
    if with_sync:
        measure_import_sync(bins, run_dir, sz, table)


def measure_import_sync(bins, run_dir, sz, table):
    """What making the token's files durable before each commit costs (issue 21): the same
    imports on two certvaultds of this build, on two fresh tokens growing alike, one with
    its default token.sync_dir (SoftHSM's token directory, fsynced after each key create)
    and one with token.sync_dir = none, in alternating pairs; the median pair's ratio."""
    sync_tok = Token(bins, os.path.join(run_dir, "import-sync"), "bench-sync").init()
    nosync_tok = Token(bins, os.path.join(run_dir, "import-nosync"), "bench-nosync").init()
    daemons = {"sync": Daemon(sync_tok).start(),
               "nosync": Daemon(nosync_tok, extra_env={"CERTVAULT_TOKEN_SYNC_DIR": "none"})
               .start()}
    try:
        for side, d in daemons.items():
            d.import_keys("p256", 5, "warm" + side[0], pool=5)
        for threads in (IMPORT_THREADS, 1):
            n = sz["import_n"]["p256"]
            rates = {"sync": [], "nosync": []}
            ratios = []
            for rnd in range(sz["import_rounds"]):
                order = ("sync", "nosync") if rnd % 2 == 0 else ("nosync", "sync")
                pair = {}
                for side in order:
                    pair[side] = daemons[side].import_keys(
                        "p256", n, "%s%d%d" % (side[0], threads, rnd),
                        threads=threads)["rate"]
                    rates[side].append(pair[side])
                ratios.append(pair["sync"] / pair["nosync"])
                say("import P-256 on %d connection(s), pair %d/%d, %d keys each: %.0f/s with "
                    "the token sync, %.0f/s without, %.2f" % (
                        threads, rnd + 1, sz["import_rounds"], n, pair["sync"],
                        pair["nosync"], ratios[-1]))
            r = median(ratios)
            table.add("context: import P-256 with the token sync vs without (%d connection%s;"
                      " pairs %.2f-%.2f)" % (threads, "s" if threads > 1 else "",
                                             min(ratios), max(ratios)),
                      fmt_rate(median(rates["sync"])),
                      "%s with token.sync_dir = none" % fmt_rate(median(rates["nosync"])),
                      "%.2f" % r, "", "")
    finally:
        for d in daemons.values():
            d.stop()


def measure_generate(bins, run_dir, sz, table):
    """Keys generated in the token through the API (issue 13: POST /v1/certificates with
    "generate", answered 201 with the CSR signed in the token) against raw
    C_GenerateKeyPair with certvault's templates, one client against one thread, each side
    on a fresh token of its own growing alike. tests/bench/cv-bench-generate's pair mode
    does one of each in turn in one process: this machine's load moves by 2x within
    seconds, and op-by-op alternation lets both sides see the same load. A round's ratio is
    API rate over raw rate (each its operations' own time); the median round is given."""
    cv_tok = Token(bins, os.path.join(run_dir, "generate-cv"), "bench-gen").init()
    raw_tok = Token(bins, os.path.join(run_dir, "generate-raw"), "bench-genraw").init()
    d = Daemon(cv_tok).start()

    def pair(key, n, prefix):
        return last_json(run([bins.generate, "pair", "--port", str(d.port), "--token-file",
                              d.token_file, "--label", raw_tok.label, "--pin-file",
                              raw_tok.pin_file, "--key", key, "--count", str(n), "--prefix",
                              prefix], env=raw_tok.env()))
    try:
        for key in ("p256", "rsa2048"):
            pair(key, 2, "warm-" + key)
        for key, label in (("p256", "P-256"), ("rsa2048", "RSA-2048")):
            n = sz["generate_n"][key]
            api, raw, ratios, med_api, med_raw = [], [], [], [], []
            for rnd in range(sz["generate_rounds"]):
                res = pair(key, n, "g%d-%s" % (rnd, key))
                api.append(res["api"]["rate"])
                raw.append(res["raw"]["rate"])
                med_api.append(res["api"]["median_ms"])
                med_raw.append(res["raw"]["median_ms"])
                ratios.append(api[-1] / raw[-1])
                say("generate %s, round %d/%d, %d keys each side, one at a time in turn: "
                    "%.1f/s through the API, %.1f/s raw, %.2f" % (
                        label, rnd + 1, sz["generate_rounds"], n, api[-1], raw[-1],
                        ratios[-1]))
            r = median(ratios)
            table.add("generate %s through the API, key + CSR signed in the token (1 "
                      "connection; rounds %.2f-%.2f; median op %.1f vs %.1f ms)" % (
                          label, min(ratios), max(ratios), median(med_api),
                          median(med_raw)),
                      fmt_rate(median(api)),
                      "%s C_GenerateKeyPair, 1 thread" % fmt_rate(median(raw)),
                      "%.2f" % r, ">= 0.80", ratio_ok(r, ">=", 0.8))
    finally:
        d.stop()


def measure_scaling(sets, sz, table):
    """Details and export of one certificate at each larger size against the same at the
    smallest. sets: [(number of keys, daemon, certificate name)], smallest first."""
    for what, suffix in (("details", ""), ("export format=pem", "/export?format=pem")):
        runs = [[] for _ in sets]
        for rnd in range(sz["rounds"]):
            say("%s at %s keys, round %d/%d" % (what, " / ".join(str(n) for n, _, _ in sets),
                                                 rnd + 1, sz["rounds"]))
            # Every other round in the other order, so that no side always goes first.
            order = range(len(sets)) if rnd % 2 == 0 else reversed(range(len(sets)))
            for i in order:
                _, d, name = sets[i]
                runs[i].append(wrk(d.url("/v1/certificates/%s%s" % (name, suffix)),
                                   sz["wrk_seconds"], d.wrk_script))
        n_small = sets[0][0]
        s = best_rate(runs[0], "rps")
        for i in range(1, len(sets)):
            n, l = sets[i][0], best_rate(runs[i], "rps")
            table.add("%s at %s keys vs at %d (wrk req/s; p50 %.2f vs %.2f ms)" % (
                what, "{:,}".format(n), n_small, min(x["p50"] for x in runs[i]),
                min(x["p50"] for x in runs[0])),
                fmt_rate(l), fmt_rate(s) + " at %d keys" % n_small, "%.2f (time)" % (s / l),
                "<= 1.20", ratio_ok(s / l, "<=", 1.2))


def measure_vs_nginx(daemon, nginx, what, path, sz, table, target=True):
    """certvaultd serving path against nginx serving the same bytes; target: the issue's
    >= 0.80 applies (the JWKS), else the row is context (details, which stood in for the JWKS
    until it existed)."""
    st, body = daemon.request("GET", path)
    if st != 200:
        raise RuntimeError("GET %s: %d %s" % (path, st, body[:300]))
    static = nginx.put(re.sub(r"[^a-z0-9]+", "-", what) + ".json", body)
    cv_runs, ng_runs = [], []
    for rnd in range(sz["rounds"]):
        say("%s (%d bytes): certvaultd vs nginx, round %d/%d" % (what, len(body), rnd + 1,
                                                                 sz["rounds"]))
        if rnd % 2 == 0:
            cv_runs.append(wrk(daemon.url(path), sz["wrk_seconds"], daemon.wrk_script))
        ng_runs.append(wrk(static, sz["wrk_seconds"]))
        if rnd % 2 == 1:
            cv_runs.append(wrk(daemon.url(path), sz["wrk_seconds"], daemon.wrk_script))
    c, n = best_rate(cv_runs, "rps"), best_rate(ng_runs, "rps")
    table.add("%s%s, %d bytes, vs nginx static file (wrk req/s)" % (
                  "" if target else "context: ", what, len(body)),
              fmt_rate(c), fmt_rate(n) + " nginx", "%.2f" % (c / n),
              ">= 0.80" if target else "", ratio_ok(c / n, ">=", 0.8) if target else "")


def measure_startup(bins, token, n_keys, sz, table, rows_db=None, n_rows=None, target=True):
    cv_times, raw_times, raw_infos = [], [], []
    for rnd in range(sz["rounds"]):
        say("start-up at %d keys, round %d/%d" % (n_keys, rnd + 1, sz["rounds"]))
        t, p, pipe = time_to_line([bins.certvaultd], token.env(), r"listening on", "stderr")
        cv_times.append(t)
        p.send_signal(signal.SIGTERM)
        pipe.read()
        p.wait()
        cmd = [bins.token, "startup", "--label", token.label, "--pin-file", token.pin_file]
        t, p, pipe = time_to_line(cmd, token.env(), r"^ready", "stdout")
        raw_times.append(t)
        raw_infos.append(last_json(pipe.read().decode()))
        p.wait()
    c, r = min(cv_times), min(raw_times)
    raw_info = raw_infos[raw_times.index(r)]
    table.add("%sstart-up at %s keys (%s objects), exec to listening" % (
        "" if target else "context: ", "{:,}".format(n_keys),
        "{:,}".format(raw_info["objects"])),
        "%.0f ms" % (c * 1e3),
        "%.0f ms C_Initialize+Login+FindObjects" % (r * 1e3), "%.2f" % (c / r),
        "<= 1.50" if target else "", ratio_ok(c / r, "<=", 1.5) if target else "")
    table.notes.append(
        "start-up raw limit at %s keys (its best round), inside the process: C_Initialize "
        "%.0f ms, C_OpenSession+C_Login %.0f ms, one C_FindObjects listing %.0f ms; reading "
        "CKA_CLASS+CKA_ID of every object then took %.0f ms (certvault reads those of the "
        "private objects, half of them, before it listens, and lists the public key objects "
        "after, on a thread of its own)." % (
            "{:,}".format(n_keys), raw_info["init_ms"], raw_info["login_ms"],
            raw_info["list_ms"],
            raw_info["attrs_ms"]))
    if rows_db is not None:
        times = []
        for _ in range(sz["rounds"]):
            t, p, pipe = time_to_line([bins.certvaultd], token.env(rows_db), r"listening on",
                                      "stderr")
            times.append(t)
            p.send_signal(signal.SIGTERM)
            pipe.read()
            p.wait()
        table.add("context: start-up at %s keys and %s rows" % (
            "{:,}".format(n_keys), "{:,}".format(n_rows)), "%.0f ms" % (min(times) * 1e3),
            "%.0f ms" % (r * 1e3), "%.2f" % (min(times) / r), "", "")


def measure_list(bins, token, rows_db, n_rows, sz, table):
    d = Daemon(token, db=rows_db, log=os.path.join(os.path.dirname(rows_db),
                                                   "certvaultd-rows.log")).start()
    try:
        path = "/v1/certificates?status=valid&limit=50"
        st, body = d.request("GET", path)
        page = json.loads(body)
        if st != 200 or len(page.get("items", [])) != 50:
            raise RuntimeError("GET %s: %d %s" % (path, st, body[:300]))
        http_runs, sql_runs = [], []
        for rnd in range(sz["rounds"]):
            say("list at %d rows: wrk, then the raw SQLite page query, round %d/%d" % (
                n_rows, rnd + 1, sz["rounds"]))
            http_runs.append(wrk(d.url(path), sz["wrk_seconds"], d.wrk_script))
            sql_runs.append(last_json(run([bins.sql, "--db", rows_db, "--threads", "2",
                                           "--seconds", str(sz["sql_seconds"])])))
        rps = best_rate(http_runs, "rps")
        p99 = min(r["p99"] for r in http_runs)
        sql = best_rate(sql_runs)
        table.add("list status=valid limit=50 at %s rows, %d-byte page (wrk req/s)" % (
            "{:,}".format(n_rows), len(body)),
            fmt_rate(rps), fmt_rate(sql) + " SQLite page query, 2 threads",
            "%.2f" % (rps / sql), ">= 5,000 req/s", verdict(rps >= 5000))
        table.add("list p99 latency at %s rows (wrk -c%d)" % ("{:,}".format(n_rows),
                                                             WRK_CONNECTIONS),
                  "%.2f ms" % p99, "", "", "< 10 ms", verdict(p99 < 10))
        # The same list with every request a different page: wrk walks the cursors of the
        # first pages in turn, so that no answer the vault keeps for its second (the memo of
        # pages, which the figures above mostly read) can serve it. What a request costs
        # when it must be made.
        cursors, cursor = [], None
        while len(cursors) < 200:
            st, b = d.request("GET", path + ("&cursor=" + urllib.parse.quote(cursor)
                                             if cursor else ""))
            cursor = json.loads(b).get("next_cursor") if st == 200 else None
            if not cursor:
                break
            cursors.append(cursor)
        walk = d.wrk_script + ".walk.lua"
        fd = os.open(walk, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(d.wrk_script) as f:
            os.write(fd, f.read().encode())
        os.write(fd, ("local paths = {%s}\nlocal i = 0\n"
                      "request = function()\n"
                      "  i = i %% #paths + 1\n"
                      "  return wrk.format(nil, paths[i])\n"
                      "end\n" % ",".join(
                          '"%s&cursor=%s"' % (path, urllib.parse.quote(c))
                          for c in cursors)).encode())
        os.close(fd)
        walk_runs = []
        for rnd in range(sz["rounds"]):
            say("list at %d rows, a different page each request: wrk, round %d/%d" % (
                n_rows, rnd + 1, sz["rounds"]))
            walk_runs.append(wrk_cpu_script(d, path, sz["wrk_seconds"], walk))
        wbest = max(walk_runs, key=lambda r: r["rps"])
        table.add("context: the same list, each request another of %d pages (nothing kept "
                  "answers; %.2f ms CPU a request)" % (len(cursors), wbest["cpu_ms"]),
                  fmt_rate(wbest["rps"]), "", "", "", "")
        # Issue 17: the list sorted by valid_to with a status filter, same wrk settings.
        spath = "/v1/certificates?sort=valid_to&status=valid&limit=50"
        st, sbody = d.request("GET", spath)
        spage = json.loads(sbody)
        if st != 200 or len(spage.get("items", [])) != 50:
            raise RuntimeError("GET %s: %d %s" % (spath, st, sbody[:300]))
        sorted_runs = []
        for rnd in range(sz["rounds"]):
            say("list sorted by valid_to at %d rows: wrk, round %d/%d" % (
                n_rows, rnd + 1, sz["rounds"]))
            sorted_runs.append(wrk(d.url(spath), sz["wrk_seconds"], d.wrk_script))
        srps = best_rate(sorted_runs, "rps")
        sp99 = min(r["p99"] for r in sorted_runs)
        table.add("list sort=valid_to status=valid limit=50 at %s rows, %d-byte page "
                  "(wrk req/s)" % ("{:,}".format(n_rows), len(sbody)),
                  fmt_rate(srps), "", "", ">= 5,000 req/s", verdict(srps >= 5000))
        table.add("list sort=valid_to p99 latency at %s rows (wrk -c%d)" % (
            "{:,}".format(n_rows), WRK_CONNECTIONS),
                  "%.2f ms" % sp99, "", "", "< 10 ms", verdict(sp99 < 10))
        mem = d.memory_kib()
        foot = token.raw("footprint")
        rss, base = mem["VmRSS"] / 1024.0, foot["vmrss_kib"] / 1024.0
        table.add("certvaultd VmRSS at %s rows after the list runs (VmHWM %.0f MiB)" % (
            "{:,}".format(n_rows), mem["VmHWM"] / 1024.0),
            "%.0f MiB" % rss, "%.0f MiB SoftHSM logged in, %s objects listed" % (
                base, "{:,}".format(foot["objects"])),
            "+%.0f MiB" % (rss - base), "<= +64 MiB", verdict(rss <= base + 64))
        measure_console(d, n_rows, table)
    finally:
        d.stop()


def wal_frames(db):
    """Frames in the database's WAL file (its size over SQLite's 4,096-byte page + 24-byte
    frame header; the file keeps its length after a checkpoint until a writer starts it
    over) and whether every one is in the database file: PRAGMA wal_checkpoint(PASSIVE) on
    a connection of our own would change what is measured, so SQLite's shared-memory index
    is read instead (mxFrame, and nBackfill of the checkpoint info after both headers)."""
    size = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
    frames = max(0, (size - 32) // (4096 + 24))
    backfilled = None
    try:
        with open(db + "-shm", "rb") as f:
            head = f.read(136)
        mx = int.from_bytes(head[16:20], sys.byteorder)
        nbackfill = int.from_bytes(head[96:100], sys.byteorder)
        backfilled = (mx, nbackfill)
    except OSError:
        pass
    return frames, backfilled


def measure_list_after_writes(bins, run_dir, sz, table):
    """Issue 19: the list (50 rows, with and without a status filter) at each of
    sz["lw_sizes"] certificates, measured right after sz["lw_imports"] imports through the
    API (on two connections) and again after sz["idle"] seconds with nothing happening: the
    two within 10%, each >= 5,000 req/s. The rows beyond the imports go straight into SQLite
    first (fill_rows), then certvaultd starts on the result and the imports come last, as
    the burst of writes that reads must not pay for."""
    paths = (("list limit=50", "/v1/certificates?limit=50"),
             ("list status=valid limit=50", "/v1/certificates?status=valid&limit=50"))
    for total in sz["lw_sizes"]:
        n_imports = min(sz["lw_imports"], total)
        tok = Token(bins, os.path.join(run_dir, "lw-%d" % total), "bench-lw").init()
        seed = Daemon(tok).start()
        try:
            seed.import_keys("p256", 1, "seed", pool=1)
        finally:
            seed.stop()
        rows_db = os.path.join(tok.path, "rows.db")
        fill_rows(tok.db, rows_db, total - n_imports)
        d = Daemon(tok, db=rows_db, log=os.path.join(tok.path, "certvaultd-rows.log")).start()
        try:
            say("list after writes at %d certificates: %d imports first" % (total, n_imports))
            d.import_keys("p256", n_imports, "lw", pool=KEY_POOL)
            states = {}
            for state in ("after", "idle"):
                if state == "idle":
                    say("list after writes at %d certificates: %d s with nothing happening" % (
                        total, sz["idle"]))
                    time.sleep(sz["idle"])
                frames, shm = wal_frames(rows_db)
                runs = {}
                for rnd in range(sz["rounds"]):
                    for what, path in paths:
                        runs.setdefault(what, []).append(
                            wrk_cpu(d, path, sz["wrk_seconds"]))
                states[state] = (runs, frames, shm)
            for what, path in paths:
                after = best_rate(states["after"][0][what], "rps")
                idle = best_rate(states["idle"][0][what], "rps")
                cpu_after = min(r["cpu_ms"] for r in states["after"][0][what])
                cpu_idle = min(r["cpu_ms"] for r in states["idle"][0][what])
                ratio = after / idle
                ok = abs(round(ratio, 2) - 1) <= 0.10
                table.add("%s at %s certificates right after %s imports vs after %d s idle "
                          "(wrk req/s)" % (what, "{:,}".format(total),
                                           "{:,}".format(n_imports), sz["idle"]),
                          fmt_rate(after), fmt_rate(idle) + " after the idle wait",
                          "%.2f" % ratio, "0.90-1.10", verdict(ok))
                ok = abs(round(cpu_after / cpu_idle, 2) - 1) <= 0.10
                table.add("%s at %s certificates: certvaultd CPU per request, right after "
                          "the imports vs after the idle wait" % (what, "{:,}".format(total)),
                          "%.3f ms" % cpu_after, "%.3f ms after the idle wait" % cpu_idle,
                          "%.2f (time)" % (cpu_after / cpu_idle), "0.90-1.10", verdict(ok))
                table.add("%s at %s certificates, the slower of the two" % (
                    what, "{:,}".format(total)), fmt_rate(min(after, idle)), "", "",
                    ">= 5,000 req/s", verdict(min(after, idle) >= 5000))
            for state in ("after", "idle"):
                _, frames, shm = states[state]
                table.notes.append(
                    "list at %s certificates, %s: the WAL file held %d frames; SQLite's index"
                    " said %s" % ("{:,}".format(total),
                                  "right after the imports" if state == "after" else
                                  "after the idle wait", frames,
                                  "mxFrame %d, backfilled %d" % shm if shm else "nothing"))
        finally:
            d.stop()


# --- several nodes (issue 15) ----------------------------------------------------------------

P11_KIT_CLIENT = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"
NODE_IMPORT_CONNECTIONS = 2


def private_postgresql():
    """A private PostgreSQL server (the integration tests' harness.PgServer: a cluster under
    /tmp on a Unix socket, fsync off, run as nobody when we are root), started."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "integration"))
    from harness import PgServer
    return PgServer().start()


def psql(url, script):
    """Runs an SQL script on url in one transaction, stopping at the first error."""
    p = subprocess.run(["psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", url],
                       input=script.encode(), capture_output=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError("psql failed (%d):\n%s" % (p.returncode,
                                                      p.stderr.decode(errors="replace")))
    return p.stdout.decode()


def copy_text(v):
    """One value in COPY's text format."""
    if isinstance(v, bytes):
        return "\\\\x" + v.hex()
    if isinstance(v, int):
        return str(v)
    return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def fill_rows_pg(url, total, public=False):
    """Adds list_rows (the very rows fill_rows puts into SQLite) to the PostgreSQL database
    at url in one transaction (COPY), up to total active certificates; the domains go in
    through a staging table joined on the name, as the ids are the database's. Returns how
    many rows it added."""
    have = int(psql(url, "\\pset tuples_only on\nSELECT count(*) FROM certificates"
                    " WHERE state = 1;\n").split()[0])
    hexder = psql(url, "\\pset tuples_only on\nSELECT encode(cert_der, 'hex') FROM"
                  " certificates LIMIT 1;\n").split()[0]
    add = max(0, total - have)
    certs, doms = [], []
    for row, domains in list_rows(bytes.fromhex(hexder), add, public):
        certs.append("\t".join(copy_text(v) for v in row))
        doms += ["%s\t%d\t%s" % (row[0], j, d) for j, d in enumerate(domains)]
    script = ("COPY certificates (%s) FROM STDIN;\n%s\n\\.\n"
              "CREATE TEMP TABLE bench_domains (name text, position bigint, domain text);\n"
              "COPY bench_domains FROM STDIN;\n%s\n\\.\n"
              "INSERT INTO certificate_domains (cert_id, position, domain)"
              " SELECT c.id, b.position, b.domain FROM bench_domains b"
              " JOIN certificates c ON c.name = b.name;\n" % (
                  ", ".join(list_columns(public)), "\n".join(certs), "\n".join(doms)))
    if add:
        psql(url, script)
    psql(url, "ANALYZE;\n")
    return add


class TokenServer:
    """A token served by `p11-kit server` on a Unix socket, as several nodes reach one HSM;
    the server forks per connection, so its whole process group is stopped."""

    def __init__(self, token):
        self.token = token
        self.socket = os.path.join(token.path, "pkcs11.sock")
        self.address = "unix:path=" + self.socket
        self.proc = None

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.log = open(os.path.join(self.token.path, "p11-kit-server.log"), "ab")
        self.proc = subprocess.Popen(
            ["p11-kit", "server", "-f", "-n", self.socket, "--provider", SOFTHSM_MODULE,
             "pkcs11:token=" + self.token.label], env=self.token.env(),
            stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.time() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("p11-kit server did not start")
            time.sleep(0.02)
        return self

    def env(self, name):
        return {"CERTVAULT_TOKEN_MODULE": P11_KIT_CLIENT,
                "P11_KIT_SERVER_ADDRESS": self.address,
                "CERTVAULT_SERVER_NODE_NAME": name}

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None
        self.log.close()


def measure_nodes_list(bins, run_dir, pg, sz, table):
    """The list page at sz["rows"] certificates on PostgreSQL against the same rows on
    SQLite, each certvaultd on its own token with one key imported through the API and the
    rest inserted straight into the database (the very same rows on both), wrk in
    alternating rounds, best of each side. The inserted rows are public certificates: the
    list asks the token whether a key pair's key is there (key_missing), which for rows with
    made-up key ids would measure the token's searches, not the store."""
    n_rows = sz["rows"]
    lite = Token(bins, os.path.join(run_dir, "nodes-list-sqlite"), "bench-nl-lite").init()
    pgt = Token(bins, os.path.join(run_dir, "nodes-list-pg"), "bench-nl-pg").init()
    url = pg.createdb("list")
    seeds = (Daemon(lite), Daemon(pgt, db=os.path.join(pgt.path, "pg"), url=url))
    for d in seeds:
        d.start()
        try:
            d.import_keys("p256", 1, "seed", pool=1)
        finally:
            d.stop()
    say("list on PostgreSQL vs SQLite: %d rows into each" % n_rows)
    rows_db = os.path.join(lite.path, "rows.db")
    fill_rows(lite.db, rows_db, n_rows, public=True)
    fill_rows_pg(url, n_rows, public=True)
    daemons = {"sqlite": Daemon(lite, db=rows_db, log=os.path.join(lite.path, "rows.log")),
               "postgresql": Daemon(pgt, db=os.path.join(pgt.path, "pg"), url=url,
                                    log=os.path.join(pgt.path, "rows.log"))}
    try:
        for d in daemons.values():
            d.start()
        for what, path in (("list status=valid limit=50", "/v1/certificates?status=valid&limit=50"),
                           ("list limit=50", "/v1/certificates?limit=50")):
            bodies = {}
            for kind, d in daemons.items():
                st, body = d.request("GET", path)
                page = json.loads(body)
                if st != 200 or len(page.get("items", [])) != 50:
                    raise RuntimeError("GET %s on %s: %d %s" % (path, kind, st, body[:300]))
                bodies[kind] = [i["name"] for i in page["items"]]
            if bodies["sqlite"] != bodies["postgresql"]:
                table.notes.append("%s: the first page differs between the engines (%s... vs"
                                   " %s...)" % (what, bodies["sqlite"][:3],
                                                bodies["postgresql"][:3]))
            runs = {k: [] for k in daemons}
            for rnd in range(sz["rounds"]):
                order = ("postgresql", "sqlite") if rnd % 2 == 0 else ("sqlite", "postgresql")
                for kind in order:
                    runs[kind].append(wrk_cpu(daemons[kind], path, sz["wrk_seconds"]))
                say("%s at %d rows, round %d/%d: %.0f/s PostgreSQL, %.0f/s SQLite" % (
                    what, n_rows, rnd + 1, sz["rounds"], runs["postgresql"][-1]["rps"],
                    runs["sqlite"][-1]["rps"]))
            p, q = best_rate(runs["postgresql"], "rps"), best_rate(runs["sqlite"], "rps")
            table.add("%s at %s rows on PostgreSQL vs SQLite, public certificates (wrk req/s;"
                      " p99 %.2f vs %.2f ms;"
                      " CPU/request %.3f vs %.3f ms)" % (
                          what, "{:,}".format(n_rows),
                          min(r["p99"] for r in runs["postgresql"]),
                          min(r["p99"] for r in runs["sqlite"]),
                          min(r["cpu_ms"] for r in runs["postgresql"]),
                          min(r["cpu_ms"] for r in runs["sqlite"])),
                      fmt_rate(p), fmt_rate(q) + " SQLite, same rows", "%.2f" % (p / q),
                      ">= 0.80", ratio_ok(p / q, ">=", 0.8))
    finally:
        for d in daemons.values():
            d.stop()


def import_wall(daemons, key, n, prefix, threads):
    """n imports through each daemon at once (cv-bench-client, threads connections each);
    the rate is every import over the longest client's own clock (keys are made before
    each client's clock starts)."""
    procs = []
    for i, d in enumerate(daemons):
        cmd = [d.token.bins.client, "--port", str(d.port), "--key", key, "--count", str(n),
               "--threads", str(threads), "--pool", str(KEY_POOL), "--prefix",
               "%s%d" % (prefix, i), "--token-file", d.token_file]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError("cv-bench-client failed (%d):\n%s%s" % (
                p.returncode, out.decode(errors="replace"), err.decode(errors="replace")))
        results.append(last_json(out.decode()))
    done = sum(r["count"] for r in results)
    return done / max(r["seconds"] for r in results)


def raw_through_server(bins, tok, server, procs, n, threads):
    """cv-bench-token create of n P-256 keys in each of procs processes at once, each a
    client of the token server of its own (as each node is), threads threads each with their
    creates serialised (as each node serialises its own); the rate is every key over the
    longest process's own clock."""
    env = tok.env(extra={"CERTVAULT_TOKEN_MODULE": P11_KIT_CLIENT,
                         "P11_KIT_SERVER_ADDRESS": server.address})
    cmd = [bins.token, "create", "--label", tok.label, "--pin-file", tok.pin_file, "--key",
           "p256", "--count", str(n), "--threads", str(threads), "--serialize"]
    ps = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
          for _ in range(procs)]
    results = []
    for p in ps:
        out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError("cv-bench-token create failed (%d):\n%s" % (
                p.returncode, err.decode(errors="replace")))
        results.append(last_json(out.decode()))
    return sum(r["count"] for r in results) / max(r["seconds"] for r in results)


def measure_nodes_token_raw(bins, run_dir, sz, table):
    """What the token itself allows two nodes: raw creates through `p11-kit server` from two
    client processes at once against one, on a token of its own growing as the nodes' does."""
    tok = Token(bins, os.path.join(run_dir, "nodes-raw"), "bench-nodes-raw").init()
    server = TokenServer(tok).start()
    n, conns = sz["node_import_n"], NODE_IMPORT_CONNECTIONS
    ratios, cost = [], ServerCost(server)
    try:
        for rnd in range(sz["node_import_rounds"]):
            pair = {}
            for side in (("one", "two") if rnd % 2 == 0 else ("two", "one")):
                if side == "one":
                    run_side = lambda: raw_through_server(bins, tok, server, 1, 2 * n, 2 * conns)
                else:
                    run_side = lambda: raw_through_server(bins, tok, server, 2, n, conns)
                pair[side] = cost.measure(side, 2 * n, run_side)
            ratios.append(pair["two"] / pair["one"])
            say("raw creates through the token server, two processes vs one, pair %d/%d: "
                "%.0f/s vs %.0f/s, %.2f" % (rnd + 1, sz["node_import_rounds"], pair["two"],
                                            pair["one"], ratios[-1]))
    finally:
        server.stop()
    return ratios, cost


def proc_stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state is [0], utime [11])."""
    with open("/proc/%s/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def group_cpu_seconds(pgid):
    """User and system CPU seconds of the processes in process group pgid: those alive, and
    the children its leader has reaped (a token server's process per client connection)."""
    ticks = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = proc_stat_fields(pid)
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
        if int(pid) == pgid:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_times():
    """The machine's CPU time counters (/proc/stat's first line): (busy, total)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


class ServerCost:
    """What each side of a pair costs a token server (its processes' CPU per operation) and
    how busy the machine's cores are meanwhile: on one machine the server shares them."""

    def __init__(self, server):
        self.server = server
        self.sides = {"one": [], "two": []}

    def measure(self, side, ops, run_side):
        """Runs run_side() (which returns a rate) and notes its cost; returns the rate."""
        cpu0, (busy0, total0) = group_cpu_seconds(self.server.proc.pid), cpu_times()
        rate = run_side()
        busy1, total1 = cpu_times()
        self.sides[side].append(
            (1000.0 * (group_cpu_seconds(self.server.proc.pid) - cpu0) / ops,
             (busy1 - busy0) / max(1, total1 - total0)))
        return rate

    def cell(self, side, suffix=""):
        """The side's medians as a table cell: "14.0 ms, 73%"."""
        noted = self.sides[side]
        return "%.1f ms, %.0f%%%s" % (median([c for c, _ in noted]),
                                      100 * median([b for _, b in noted]), suffix)


def measure_nodes_token(bins, run_dir, pg, sz, table):
    """Two nodes (node_name a and b) on one PostgreSQL database and one SoftHSM token behind
    `p11-kit server`: imports through both at once against the same client load through one
    (2 x NODE_IMPORT_CONNECTIONS connections on a, vs NODE_IMPORT_CONNECTIONS on each), in
    alternating pairs, median pair ratio; then the details of one certificate with wrk on
    both nodes at once (summed) against wrk on one."""
    tok = Token(bins, os.path.join(run_dir, "nodes-token"), "bench-nodes").init()
    server = TokenServer(tok).start()
    url = pg.createdb("nodes")
    shared = os.path.join(tok.path, "pg")
    a = Daemon(tok, db=shared, url=url, extra_env=server.env("a"),
               log=os.path.join(tok.path, "node-a.log"))
    b = Daemon(tok, db=shared, url=url, extra_env=server.env("b"),
               log=os.path.join(tok.path, "node-b.log"))
    try:
        a.start()  # the first: schema, first admin token, audit key
        b.start()
        a.import_keys("p256", 5, "warma", pool=5)
        b.import_keys("p256", 5, "warmb", pool=5)
        n = sz["node_import_n"]
        conns = NODE_IMPORT_CONNECTIONS
        one, two, ratios = [], [], []
        cost = ServerCost(server)
        for rnd in range(sz["node_import_rounds"]):
            pair = {}
            for side in (("one", "two") if rnd % 2 == 0 else ("two", "one")):
                if side == "one":
                    run_side = lambda: import_wall([a], "p256", 2 * n, "n1r%d" % rnd, 2 * conns)
                else:
                    run_side = lambda: import_wall([a, b], "p256", n, "n2r%d" % rnd, conns)
                pair[side] = cost.measure(side, 2 * n, run_side)
            one.append(pair["one"])
            two.append(pair["two"])
            ratios.append(pair["two"] / pair["one"])
            say("import P-256 through two nodes vs one, pair %d/%d, %d keys each side: "
                "%.0f/s two nodes, %.0f/s one, %.2f" % (
                    rnd + 1, sz["node_import_rounds"], 2 * n, pair["two"], pair["one"],
                    ratios[-1]))
        r = median(ratios)
        raw, raw_cost = measure_nodes_token_raw(bins, run_dir, sz, table)
        table.notes.append(
            "nodes: imports: %d alternating pairs of %d P-256 certificates each side, one node"
            " on %d connections against two nodes on %d each at once, both nodes on one"
            " PostgreSQL database and one SoftHSM token behind p11-kit server (one process per"
            " node's connection), keys reused from a pool of %d; the median pair ratio" % (
                sz["node_import_rounds"], 2 * n, 2 * conns, conns, KEY_POOL))
        table.add("import P-256 through two nodes sharing one token (p11-kit server) vs one "
                  "node, %d connections in all (pairs %.2f-%.2f)" % (
                      2 * conns, min(ratios), max(ratios)),
                  fmt_rate(median(two)), fmt_rate(median(one)) + " one node",
                  "%.2f" % r, ">= 1.00", ratio_ok(r, ">=", 1.0))
        table.add("context: the token server's CPU per import (ms) and the machine's cores"
                  " busy meanwhile, two nodes vs one (medians)",
                  cost.cell("two"), cost.cell("one", " one node"), "", "", "")
        table.add("context: raw C_CreateObject through another token server, two client "
                  "processes at once vs one, the same keys, threads and token growth (pairs "
                  "%.2f-%.2f)" % (min(raw), max(raw)), "", "", "%.2f" % median(raw), "", "")
        table.add("context: that token server's CPU per key (ms) and the cores busy, two "
                  "client processes vs one (medians)",
                  raw_cost.cell("two"), raw_cost.cell("one", " one process"), "", "", "")
        path = "/v1/certificates/warma-000002"
        for d in (a, b):
            st, body = d.request("GET", path)
            if st != 200:
                raise RuntimeError("GET %s: %d %s" % (path, st, body[:300]))
        one, two, socket_errors = [], [], []
        for rnd in range(sz["rounds"]):
            for side in (("one", "two") if rnd % 2 == 0 else ("two", "one")):
                if side == "one":
                    one.append(wrk_nodes([a], path, sz["wrk_seconds"], socket_errors))
                else:
                    two.append(wrk_nodes([a, b], path, sz["wrk_seconds"], socket_errors))
            say("details through two nodes vs one, round %d/%d: %.0f/s vs %.0f/s" % (
                rnd + 1, sz["rounds"], two[-1], one[-1]))
        r = max(two) / max(one)
        table.add("context: details read through two nodes at once vs one, all sharing this "
                  "machine's %d cores (wrk -t%d -c%d on each, summed; best of %d)" % (
                      os.cpu_count(), WRK_THREADS, WRK_CONNECTIONS, sz["rounds"]),
                  fmt_rate(max(two)), fmt_rate(max(one)) + " one node", "%.2f" % r, "", "")
        # Each node on a machine of its own, as far as one machine can: each node and the
        # wrk that loads it confined to one core (taskset), the one-node side on one core
        # too; PostgreSQL and the token server are not confined.
        if os.cpu_count() >= 2:
            one, two = [], []
            try:
                pin(a, "0")
                pin(b, "1")
                for rnd in range(sz["rounds"]):
                    for side in (("one", "two") if rnd % 2 == 0 else ("two", "one")):
                        if side == "one":
                            one.append(wrk_nodes([a], path, sz["wrk_seconds"], socket_errors,
                                                 cpus=["0"]))
                        else:
                            two.append(wrk_nodes([a, b], path, sz["wrk_seconds"],
                                                 socket_errors, cpus=["0", "1"]))
                    say("details through two nodes vs one, a core each, round %d/%d: "
                        "%.0f/s vs %.0f/s" % (rnd + 1, sz["rounds"], two[-1], one[-1]))
            finally:
                all_cpus = "0-%d" % (os.cpu_count() - 1)
                pin(a, all_cpus)
                pin(b, all_cpus)
            r = max(two) / max(one)
            table.add("details read through two nodes at once vs one, each node and its wrk "
                      "on a core of its own (wrk -t%d -c%d on each, summed; best of %d)" % (
                          WRK_THREADS, WRK_CONNECTIONS, sz["rounds"]),
                      fmt_rate(max(two)), fmt_rate(max(one)) + " one node on one core",
                      "%.2f" % r, ">= 1.60", ratio_ok(r, ">=", 1.6))
            table.notes.append(
                "nodes: reads scale out with nodes on machines of their own; one machine shows"
                " it by giving each node a core of its own (taskset: the node's threads and "
                "the wrk that loads it), PostgreSQL and the token server running where they "
                "like. A details read kept by the node (its memo, good while the database's "
                "generations hold, which the node's listener learns by notification) costs "
                "PostgreSQL nothing, so each node's core is its limit.")
        if socket_errors:
            table.notes.append("details through nodes: wrk's socket errors: %s" % "; ".join(
                socket_errors))
    finally:
        for d in (b, a):
            d.stop()
        server.stop()


def pin(daemon, cpus):
    """Confines every thread of daemon's process to cpus (taskset's list form)."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(daemon.proc.pid)], check=True,
                   stdout=subprocess.DEVNULL)


def wrk_nodes(daemons, path, seconds, socket_errors, cpus=None):
    """wrk on each daemon at once (the one for daemons[i] on cpus[i], when given); the summed
    req/s. A non-2xx answer fails the run; socket errors (a connection the server closed: the
    guard's pending limit per address closes the connection of 127.0.0.1 that has waited
    longest once 16 wait, which two wrk at once on two cores can reach) are counted into
    socket_errors and shown under the table."""
    procs = []
    for i, d in enumerate(daemons):
        cmd = ["wrk", "-t%d" % WRK_THREADS, "-c%d" % WRK_CONNECTIONS, "-d%ds" % seconds,
               "-s", d.wrk_script, d.url(path)]
        if cpus is not None:
            cmd = ["taskset", "-c", cpus[i]] + cmd
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    total = 0.0
    for p in procs:
        out, err = p.communicate(timeout=seconds + 60)
        out = out.decode()
        if p.returncode != 0 or re.search(r"Non-2xx or 3xx responses", out):
            raise RuntimeError("wrk saw errors:\n%s%s" % (out, err.decode(errors="replace")))
        m = re.search(r"Socket errors: (.*)", out)
        if m:
            socket_errors.append(m.group(1).strip())
        total += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return total


def measure_nodes(bins, run_dir, sz, table):
    """Issue 15: PostgreSQL against SQLite for the list, and two nodes against one."""
    pg = private_postgresql()
    try:
        measure_nodes_list(bins, run_dir, pg, sz, table)
        measure_nodes_token(bins, run_dir, pg, sz, table)
    finally:
        pg.stop()


def measure_console(d, n_rows, table):
    """The console (issue 12) in headless chromium against the list at n_rows: what its first
    load transfers, and navigation to 50 rows drawn (tests/browser/bench.mjs)."""
    say("console: first load and the list drawn with 50 rows, in chromium")
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(here, "..", "browser", "bench.mjs")
    # The token goes through the environment: it stays off command lines.
    r = last_json(run(["node", script, d.url("")],
                      env=dict(os.environ, CV_BENCH_TOKEN=d.auth[len("Bearer "):])))
    table.add("console first load: %d files, %s bytes raw (gzip-compressed)" % (
        r["first_load_files"], "{:,}".format(r["first_load_bytes"])),
        "%.1f KB" % (r["first_load_gzip_bytes"] / 1000.0), "", "", "<= 150 KB",
        verdict(r["first_load_gzip_bytes"] <= 150000))
    table.add("console: navigation to 50 rows painted at %s rows, in the page (best warm; "
              "first load %.0f ms, warm median %.0f ms)" % (
                  "{:,}".format(n_rows), r["list_ms_first"], r["list_ms_warm_median"]),
              "%.0f ms" % r["list_ms_warm"], "", "", "<= 300 ms",
              verdict(r["list_ms_warm"] <= 300))
    table.add("context: the same read by the driver after the paint (best warm; median "
              "%.0f ms); the console's marks %s" % (
                  r["list_ms_warm_median_evaluate"],
                  ", ".join("%s %d" % (k.replace("cv:", ""), v)
                            for k, v in sorted(r.get("marks", {}).items(),
                                               key=lambda kv: kv[1]))),
              "%.0f ms" % r["list_ms_warm_evaluate"], "", "", "", "")
    table.add("console: list requests for a next page and a search (limit of each)",
              "%d (%s)" % (r["list_requests_for_next_and_search"],
                          ", ".join(r["list_limits"])), "", "", "1 page each",
              verdict(r["list_requests_for_next_and_search"] == 2 and
                      all(x == "50" for x in r["list_limits"])))


def report(bins, table, sz, started, added):
    """Prints the table with what was measured how, and keeps it in last-run.txt. added: the
    rows inserted for the list, None when only the imports ran."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rev = subprocess.run(["git", "-C", repo, "describe", "--always", "--dirty"],
                         capture_output=True)
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out = ["certvault benchmark (issue 7): %s, commit %s, %d cores (%s), took %.0f s" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), rev.stdout.decode().strip() or "?",
        os.cpu_count(), cpu, time.time() - started)]
    out.append("command: scripts/bench %s" % " ".join(sys.argv[3:]))
    if added is None:
        out.append("sizes: only part of the suite (%s)" % " ".join(sys.argv[3:]))
    else:
        out.append("sizes: %d, %s and %s certificates with keys (P-256, imported through the "
                   "API), %s rows for the list (%s of them inserted straight into SQLite with "
                   "random key ids and no key in the token: the list never reads the token)" % (
                       sz["small"], "{:,}".format(sz["mid"]), "{:,}".format(sz["large"]),
                       "{:,}".format(sz["rows"]), "{:,}".format(added)))
    out.append("wrk -t%d -c%d -d%ds --latency; each pair back to back, %d rounds, best of each "
               "side; import: %d alternating pairs of %s certificates (RSA-2048/P-256) on %s "
               "connections against raw C_CreateObject on as many threads, both on fresh "
               "tokens growing alike, keys reused from a pool of %d, median rates and median "
               "pair ratio; certvaultd with its defaults (4 HTTP threads, 4 slow-request "
               "threads), its log to a file; every request carries an admin token; an import "
               "commits its pending row, then its activation with its audit record" % (
                   WRK_THREADS, WRK_CONNECTIONS, sz["wrk_seconds"], sz["rounds"],
                   sz["import_rounds"],
                   "/".join(str(sz["import_n"][k]) for k in ("rsa2048", "p256")),
                   "/".join(str(c) for c in IMPORT_CONNECTIONS), KEY_POOL))
    out.append("")
    out.append(table.render())
    out += ["note: " + n for n in table.notes]
    text = "\n".join(out) + "\n"
    print()
    print(text, end="")
    with open(os.path.join(bins.root, "last-run.txt"), "w") as f:
        f.write(text)
    say("this table is also in %s" % os.path.join(bins.root, "last-run.txt"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the bench build tree (build-bench)")
    ap.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    ap.add_argument("--rebuild", action="store_true", help="make the cached data sets again")
    ap.add_argument("--keys", type=int, help="the large key count (default 10000)")
    ap.add_argument("--rows", type=int, help="the row count of the list (default 100000)")
    ap.add_argument("--sync-only", action="store_true",
                    help="only the imports with the token sync against without it (issue 21)")
    ap.add_argument("--console-only", action="store_true",
                    help="only the console (issue 12) against the list at --rows rows")
    ap.add_argument("--generate-only", action="store_true",
                    help="only generate through the API against raw C_GenerateKeyPair"
                         " (issue 13)")
    ap.add_argument("--sign-only", action="store_true",
                    help="only the signatures over HTTP against raw C_Sign (issue 18)")
    ap.add_argument("--import-only", action="store_true",
                    help="only the imports: against raw C_CreateObject on 1, 2 and 8"
                         " connections, and with the token sync against without it")
    ap.add_argument("--import-conns-only", action="store_true",
                    help="only the imports against raw C_CreateObject on 1, 2 and 8"
                         " connections (issue 19)")
    ap.add_argument("--list-after-writes-only", action="store_true",
                    help="only the list right after 1,000 imports and after an idle wait"
                         " (issue 19)")
    ap.add_argument("--startup-only", action="store_true",
                    help="only the start-up at 1,000 and 10,000 keys (--keys N: at N)")
    ap.add_argument("--nodes-only", action="store_true",
                    help="only several nodes (issue 15): the list at --rows rows on"
                         " PostgreSQL vs SQLite, imports and details reads through two nodes"
                         " sharing one token vs one")
    ap.add_argument("--reads-only", action="store_true",
                    help="everything but the signatures, imports and generation: details,"
                         " exports, JWKS, list, start-up and list after writes")
    ap.add_argument("--idle", type=int,
                    help="seconds of the idle wait of the list after writes (default 60;"
                         " 10 with --quick)")
    args = ap.parse_args()

    sz = dict(SIZES["quick" if args.quick else "full"])
    if args.keys:
        sz["large"] = args.keys
        sz["mid"] = min(sz["mid"], args.keys)
    if args.rows:
        sz["rows"] = args.rows
    if args.idle is not None:
        sz["idle"] = args.idle
    sz["rows"] = max(sz["rows"], sz["large"])

    class Bins:
        pass
    bins = Bins()
    bins.root = os.path.abspath(args.bin)
    bins.certvaultd = os.path.join(bins.root, "certvaultd")
    bench = os.path.join(bins.root, "tests", "bench")
    bins.token = os.path.join(bench, "cv-bench-token")
    bins.client = os.path.join(bench, "cv-bench-client")
    bins.sql = os.path.join(bench, "cv-bench-sql")
    bins.generate = os.path.join(bench, "cv-bench-generate")
    data_dir = os.path.join(bins.root, "data")
    run_dir = os.path.join(bins.root, "run")
    if os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir)
    os.makedirs(data_dir, exist_ok=True)

    started = time.time()
    table = Table()
    if args.sync_only:
        measure_import_sync(bins, run_dir, sz, table)
        report(bins, table, sz, started, None)
        return 0
    if args.import_only or args.import_conns_only:
        measure_import(bins, run_dir, sz, table, with_sync=args.import_only)
        report(bins, table, sz, started, None)
        return 0
    if args.list_after_writes_only:
        measure_list_after_writes(bins, run_dir, sz, table)
        report(bins, table, sz, started, None)
        return 0
    if args.startup_only:
        large = keys_dataset(bins, data_dir, sz["large"], args.rebuild)
        mid = keys_dataset(bins, data_dir, sz["mid"], args.rebuild)
        measure_startup(bins, mid, sz["mid"], sz, table, target=False)
        measure_startup(bins, large, sz["large"], sz, table)
        report(bins, table, sz, started, None)
        return 0
    if args.generate_only:
        measure_generate(bins, run_dir, sz, table)
        report(bins, table, sz, started, None)
        return 0
    if args.sign_only:
        measure_sign_api(bins, run_dir, sz, table)
        report(bins, table, sz, started, None)
        return 0
    if args.nodes_only:
        measure_nodes(bins, run_dir, sz, table)
        report(bins, table, sz, started, None)
        return 0
    large = keys_dataset(bins, data_dir, sz["large"], args.rebuild)
    if args.console_only:
        rows_db = os.path.join(run_dir, "rows.db")
        added = fill_rows(large.db, rows_db, sz["rows"])
        d = Daemon(large, db=rows_db, log=os.path.join(run_dir, "certvaultd-rows.log")).start()
        try:
            measure_console(d, sz["rows"], table)
        finally:
            d.stop()
        report(bins, table, sz, started, added)
        return 0
    mid = keys_dataset(bins, data_dir, sz["mid"], args.rebuild)

    if not args.reads_only:
        measure_sign(bins, run_dir, sz, table)
        measure_sign_api(bins, run_dir, sz, table)
        measure_import(bins, run_dir, sz, table)
        measure_generate(bins, run_dir, sz, table)

    small = Token(bins, os.path.join(run_dir, "keys-%d" % sz["small"]), "bench-small").init()
    daemons = []
    nginx = None
    try:
        small_d = Daemon(small).start()
        daemons.append(small_d)
        small_d.import_keys("p256", sz["small"], "k", pool=sz["small"])
        mid_d = Daemon(mid, log=os.path.join(run_dir, "certvaultd-mid.log")).start()
        daemons.append(mid_d)
        large_d = Daemon(large, log=os.path.join(run_dir, "certvaultd-large.log")).start()
        daemons.append(large_d)
        measure_scaling([(n, d, "k-%06d" % (n // 2)) for n, d in (
            (sz["small"], small_d), (sz["mid"], mid_d), (sz["large"], large_d))], sz, table)
        nginx = Nginx(os.path.join(run_dir, "nginx")).start()
        measure_vs_nginx(large_d, nginx, "details",
                         "/v1/certificates/k-%06d" % (sz["large"] // 2), sz, table,
                         target=False)
        for name in ("k-000001", "k-000002", "k-000003"):
            st, body = small_d.request("POST", "/v1/jwks", {"certificate": name})
            if st != 201:
                raise RuntimeError("POST /v1/jwks: %d %s" % (st, body[:300]))
        measure_vs_nginx(small_d, nginx, "public JWKS (3 keys)", "/.well-known/jwks.json",
                         sz, table)
    finally:
        if nginx:
            nginx.stop()
        for d in reversed(daemons):
            d.stop()

    rows_db = os.path.join(run_dir, "rows.db")
    say("list data: %s + rows inserted into SQLite up to %d" % (large.db, sz["rows"]))
    added = fill_rows(large.db, rows_db, sz["rows"])
    measure_startup(bins, mid, sz["mid"], sz, table, target=False)
    measure_startup(bins, large, sz["large"], sz, table, rows_db, sz["rows"])
    measure_list(bins, large, rows_db, sz["rows"], sz, table)
    measure_list_after_writes(bins, run_dir, sz, table)

    report(bins, table, sz, started, added)
    return 0


if __name__ == "__main__":
    sys.exit(main())
