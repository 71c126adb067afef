"""Two certvaultd nodes sharing one PostgreSQL database and one token (issue 15).

One private PostgreSQL (the harness's), one SoftHSM token served by `p11-kit server`, two
certvaultd processes (node_name a and b) with `database.url` on that database and
`p11-kit-client.so` as their token module, the shape of a deployment with a network HSM. What a
user of either node must see: a change made through one node is seen by the other's next
request (details, export, JWKS, inventory, services after a renewal, a delete), the renewal race
across nodes has one winner and no key left behind, and a storm of clients on both nodes while
node a is killed and started again loses no acknowledged change, leaves exactly one key object
per row, one intact audit chain, and node b answering every request throughout."""

import collections
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import Certvaultd, Material, run

CLIENT_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"
DOMAIN = "storm.two.example.com"


def fingerprint(material):
    der = material.cert_der()
    return ":".join("%02X" % b for b in hashlib.sha256(der).digest())


class TokenServer:
    """SoftHSM's token served on a Unix socket by `p11-kit server`, as in test_network_token.
    The server serves each connection from a child process of its own: it runs in a session
    of its own and its whole process group is stopped."""

    def __init__(self, workdir, softhsm_conf, label):
        self.socket = os.path.join(workdir, "pkcs11.sock")
        self.address = "unix:path=" + self.socket
        self.softhsm_conf = softhsm_conf
        self.label = label
        self.log_path = os.path.join(workdir, "p11-kit-server.log")
        self.proc = None

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["p11-kit", "server", "-f", "-n", self.socket, "--provider",
             harness.SOFTHSM_MODULE, "pkcs11:token=" + self.label],
            env=dict(os.environ, SOFTHSM2_CONF=self.softhsm_conf),
            stdout=self.logf, stderr=self.logf, start_new_session=True)
        deadline = time.time() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("p11-kit server did not start")
            time.sleep(0.02)
        return self

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None
        self.logf.close()


class Node(Certvaultd):
    """A certvaultd on the shared database and the shared token: the token's files, PIN and
    first admin token are node a's; only the log is its own. The token is made once, on the
    server's side (harness.Certvaultd.init_token with SoftHSM itself), by node a."""

    def __init__(self, workdir, name, database_url, token_address, first=None):
        self.serving = False
        if first is None:
            super().__init__(workdir)
        else:
            self.__dict__.update({k: v for k, v in first.__dict__.items()
                                  if k in ("token_dir", "softhsm_conf", "pin", "so_pin",
                                           "pin_file", "db", "db_url", "admin_token_file",
                                           "label")})
            self.dir = workdir
            os.makedirs(workdir, exist_ok=True)
            self.admin_token = None
            self.settings = {}
            self.proc = None
            self.port = None
            self.log_path = os.path.join(workdir, "certvaultd.log")
        self.name = name
        self.settings.update({
            "CERTVAULT_SERVER_NODE_NAME": name,
            "CERTVAULT_DATABASE_URL": database_url,
            "CERTVAULT_TOKEN_MODULE": CLIENT_MODULE,
            "P11_KIT_SERVER_ADDRESS": token_address,
        })

    def env(self, extra=None):
        e = super().env(extra)
        if self.serving:
            # database.path and database.url both set is refused: the nodes have only the url.
            e.pop("CERTVAULT_DATABASE_PATH", None)
        else:
            # --init-token (SoftHSM itself, on the server's side) needs no database.
            for k in ("CERTVAULT_DATABASE_URL", "P11_KIT_SERVER_ADDRESS"):
                e.pop(k, None)
            e["CERTVAULT_TOKEN_MODULE"] = harness.SOFTHSM_MODULE
        return e

    def start(self, extra_env=None, prefix=None):
        self.serving = True
        if self.admin_token is not None:
            self.environments_made = True
        return super().start(extra_env, prefix)

    def kill(self):
        """SIGKILL: the node dies mid-request, as on a power cut of its machine."""
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.logf.close()


class TwoNodesTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cv-2n-")
        cls.pg = cls.server = None
        cls.nodes = ()
        try:
            cls.pg = harness.PgServer().start()
            cls.url = cls.pg.url()
            cls.a = Node(os.path.join(cls.tmp, "a"), "a", cls.url, "")
            cls.server = TokenServer(cls.tmp, cls.a.softhsm_conf, cls.a.label).start()
            cls.a.settings["P11_KIT_SERVER_ADDRESS"] = cls.server.address
            cls.b = Node(os.path.join(cls.tmp, "b"), "b", cls.url, cls.server.address,
                         first=cls.a)
            cls.nodes = (cls.a, cls.b)
            # Node a starts first: it makes the schema, the first admin token and the audit
            # key; node b finds all three.
            cls.a.start()
            cls.b.start()
        except BaseException:
            # unittest runs no tearDownClass after a failed setUpClass: nothing may be left
            # running (the nodes, the token server's process group, PostgreSQL).
            for node in cls.nodes:
                if node.proc is not None:
                    node.kill()
            if cls.server is not None:
                cls.server.stop()
            if cls.pg is not None:
                cls.pg.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        problems = []
        for node in cls.nodes:
            rc = node.stop() if node.proc is not None else 0
            log = node.whole_log()
            if rc != 0 or "ERROR: AddressSanitizer" in log or "runtime error:" in log:
                problems.append("node %s exited %s:\n%s" % (node.name, rc, log[-4000:]))
            late = [l for l in log.splitlines() if "written after the change" in l]
            if late:
                problems.append("node %s wrote audit records after their change:\n%s" % (
                    node.name, "\n".join(late[:20])))
        cls.server.stop()
        # PostgreSQL's log (each refused statement with its text) is kept with the nodes'.
        if cls.pg.dir is not None:
            shutil.copy(os.path.join(cls.pg.dir, "server.log"), cls.tmp)
        cls.pg.stop()
        if problems:
            raise AssertionError("\n".join(problems))
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # --- what both nodes share, read from outside ---------------------------------------

    def sql(self, query):
        """Rows of a query on the shared database, through psql (text, tab-separated)."""
        out = run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                   "-d", self.url, "-c", query]).stdout.decode()
        return [tuple(line.split("\t")) for line in out.splitlines() if line]

    def token_key_objects(self):
        """{CKA_ID hex: sorted "private"/"public"} of the token's key objects, read with
        SoftHSM itself on the server's side (not through the socket the nodes use)."""
        objects = collections.defaultdict(list)
        kind = None
        for line in self.a.token_objects().splitlines():
            if not line.startswith(" "):
                kind = ("private" if line.startswith("Private Key Object") else
                        "public" if line.startswith("Public Key Object") else None)
            elif kind is not None and line.strip().startswith("ID:"):
                objects[line.split(":", 1)[1].strip().lower()].append(kind)
        return {k: sorted(v) for k, v in objects.items()}

    def assertTokenMatchesRows(self):
        """Nothing unsettled in the shared database, every key a row holds whole in the token,
        every key object held by exactly one row. Returns the certificates' names."""
        self.assertEqual(self.sql("SELECT name FROM certificates WHERE state <> 1"), [])
        self.assertEqual(self.sql("SELECT encode(key_id, 'hex') FROM key_journal"), [])
        held = collections.Counter(k for (k,) in self.sql(
            "SELECT encode(key_id, 'hex') FROM certificates UNION ALL"
            " SELECT encode(key_id, 'hex') FROM certificate_versions WHERE key_state = 0"
            " UNION ALL SELECT encode(key_id, 'hex') FROM pending_certificates"))
        objects = self.token_key_objects()
        for key_id, n in held.items():
            self.assertEqual(n, 1, "key %s is held by %d rows" % (key_id, n))
            self.assertEqual(objects.get(key_id), ["private", "public"],
                             "key %s of a row is not whole in the token" % key_id)
        for key_id, kinds in objects.items():
            self.assertIn(key_id, held, "key object %s %s has no row" % (key_id, kinds))
        return {name for (name,) in self.sql("SELECT name FROM certificates")}

    def assertAuditIntact(self, node):
        st, _, body = node.request("GET", "/v1/audit/verify")
        self.assertEqual(st, 200, body)
        self.assertTrue(body["intact"], body)
        return body

    # --- helpers ------------------------------------------------------------------------

    # What one node commits reaches the other's caches through PostgreSQL's notification
    # (README, Several nodes: caches and their staleness bound): at once in most runs, within
    # 2 s at the most whatever happens to the listener.
    STALENESS_BOUND = 2.0

    def on_other_node(self, ask, done):
        """ask() again until done(its answer) or the staleness bound has passed; the last
        answer (the caller asserts on it)."""
        deadline = time.monotonic() + self.STALENESS_BOUND + 0.5
        while True:
            answer = ask()
            if done(answer) or time.monotonic() > deadline:
                return answer
            time.sleep(0.01)

    def material(self, name, **kw):
        return Material(self.tmp, name, **kw)

    def imported(self, node, name, san):
        m = self.material(name, san=san)
        st, _, body = node.import_cert(name, m)
        self.assertEqual(st, 201, body)
        return m, body

    def service(self, node, name, domains):
        st, _, body = node.request("PUT", "/v1/services/" + name,
                                   {"environment": "production", "domains": domains})
        self.assertEqual(st, 201, body)

    def bind(self, node, service, cert):
        st, _, body = node.request("PUT", "/v1/services/%s/certificate" % service,
                                   {"certificate": cert})
        self.assertEqual(st, 200, body)

    def renew(self, node, name, material, version):
        return node.request("POST", "/v1/certificates/%s/renew" % name, {
            "certificate": material.cert, "private_key": material.key, "version": version})

    # --- the cases ----------------------------------------------------------------------

    def test_1_health_names_each_node_and_the_shared_store(self):
        for node in self.nodes:
            st, _, body = node.request("GET", "/v1/health", token=None)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["node"], node.name, body)
            self.assertEqual(body["store"], "postgresql", body)
            # Each node listens for the other's changes (its caches need no round trip).
            st, _, metrics = node.request("GET", "/metrics")
            self.assertEqual(st, 200)
            text = metrics.decode() if isinstance(metrics, bytes) else metrics
            self.assertIn('certvault_db_listening{node="%s"} 1' % node.name, text)

    def test_2_import_on_a_read_everything_on_b(self):
        st, hdrs, jwks_before = self.b.request("GET", "/.well-known/jwks.json", token=None)
        self.assertEqual(st, 200, jwks_before)
        etag_before = hdrs["etag"]
        m, made = self.imported(self.a, "two-import", "import.two.example.com")
        # Details, the list and the PEM export on b: what a made.
        st, _, d = self.on_other_node(
            lambda: self.b.request("GET", "/v1/certificates/two-import"),
            lambda answer: answer[0] == 200)
        self.assertEqual(st, 200, d)
        self.assertEqual(d["fingerprints"]["sha256"], fingerprint(m))
        self.assertEqual(d["key"]["pkcs11_uri"], made["key"]["pkcs11_uri"])
        st, _, page = self.b.request("GET", "/v1/certificates?q=two-import")
        self.assertEqual(st, 200, page)
        self.assertEqual([i["name"] for i in page["items"]], ["two-import"])
        st, _, pem = self.b.request("GET", "/v1/certificates/two-import/export?format=pem")
        self.assertEqual(st, 200)
        self.assertEqual(pem.decode().strip(), m.cert.strip())
        # b signs with the key a put in the token: its key map did not know it and found it
        # in the token.
        digest = __import__("base64").b64encode(hashlib.sha256(b"two nodes").digest()).decode()
        st, _, sig = self.b.request("POST", "/v1/certificates/two-import/sign",
                                    {"algorithm": "ES256", "digest": digest})
        self.assertEqual(st, 200, sig)
        # A JWK made on a: b's public JWKS has it at once, under a new ETag; b's old ETag no
        # longer answers 304.
        st, _, jwk = self.a.request("POST", "/v1/jwks", {"certificate": "two-import"})
        self.assertEqual(st, 201, jwk)
        st, hdrs, jwks = self.on_other_node(
            lambda: self.b.request("GET", "/.well-known/jwks.json", token=None,
                                   headers={"If-None-Match": etag_before}),
            lambda answer: answer[0] != 304)
        self.assertEqual(st, 200, jwks)
        self.assertEqual(hdrs["content-type"], "application/jwk-set+json")
        self.assertIn(jwk["kid"], [k["kid"] for k in json.loads(jwks)["keys"]])
        self.assertNotEqual(hdrs["etag"], etag_before)
        # The inventory on b: the key's attributes read back from the token by b.
        st, _, inv = self.b.request("GET", "/v1/inventory?format=json")
        self.assertEqual(st, 200, inv)
        if isinstance(inv, (bytes, bytearray)):
            inv = json.loads(inv)
        item = next(i for i in inv["items"] if i["name"] == "two-import")
        self.assertEqual(item["key_pkcs11_uri"], made["key"]["pkcs11_uri"])
        self.assertIs(item["key_present"], True, item)
        self.assertIs(item["key_sensitive"], True, item)
        self.assertIs(item["key_extractable"], False, item)

    def test_3_renew_on_b_seen_on_a(self):
        m1, _ = self.imported(self.a, "two-renew", "renew.two.example.com")
        self.service(self.a, "two-renew-svc", ["renew.two.example.com"])
        self.bind(self.a, "two-renew-svc", "two-renew")
        st, _, svc = self.a.request("GET", "/v1/services/two-renew-svc")
        self.assertEqual(svc["certificate"]["version"], 1, svc)
        m2 = self.material("two-renew-v2", san="renew.two.example.com")
        st, _, body = self.renew(self.b, "two-renew", m2, 1)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["version"], 2)
        # a's next requests: the service and the details show version 2.
        st, _, svc = self.on_other_node(
            lambda: self.a.request("GET", "/v1/services/two-renew-svc"),
            lambda answer: answer[0] == 200 and answer[2]["certificate"]["version"] == 2)
        self.assertEqual(st, 200, svc)
        self.assertEqual(svc["certificate"]["version"], 2, svc)
        self.assertEqual(svc["certificate"]["sha256_fingerprint"], fingerprint(m2))
        st, _, d = self.a.request("GET", "/v1/certificates/two-renew")
        self.assertEqual((d["version"], d["fingerprints"]["sha256"]), (2, fingerprint(m2)))
        # ... and a refuses to renew version 1 again.
        m3 = self.material("two-renew-v3", san="renew.two.example.com")
        st, _, body = self.renew(self.a, "two-renew", m3, 1)
        self.assertEqual((st, body["error"]["code"]), (409, "already_renewed"), body)

    def test_4_delete_on_a_gone_on_b_and_from_the_token(self):
        _, made = self.imported(self.a, "two-delete", "delete.two.example.com")
        key_id = made["key"]["id"].lower()
        # b has read it (and so cached what it caches) before the delete.
        st, _, _ = self.b.request("GET", "/v1/certificates/two-delete")
        self.assertEqual(st, 200)
        self.assertEqual(self.token_key_objects().get(key_id), ["private", "public"])
        st, _, body = self.a.request("DELETE", "/v1/certificates/two-delete?confirm=delete")
        self.assertEqual(st, 200, body)
        self.on_other_node(lambda: self.b.request("GET", "/v1/certificates/two-delete"),
                           lambda answer: answer[0] == 404)
        for path in ("/v1/certificates/two-delete",
                     "/v1/certificates/two-delete/export?format=pem"):
            st, _, body = self.b.request("GET", path)
            self.assertEqual((st, body["error"]["code"]), (404, "not_found"), (path, body))
        self.assertNotIn(key_id, self.token_key_objects())

    def test_4b_token_revoked_on_a_refused_on_b(self):
        # b has authenticated the token (and so keeps a copy of its row) before a revokes it.
        st, _, op = self.a.request("POST", "/v1/tokens", {"name": "two-op", "role": "operator"})
        self.assertEqual(st, 201, op)
        for _ in range(3):
            st, _, body = self.b.request("GET", "/v1/certificates?limit=1", token=op["token"])
            self.assertEqual(st, 200, body)
        st, _, _ = self.a.request("DELETE", "/v1/tokens/" + op["id"])
        self.assertEqual(st, 204)
        st, _, body = self.on_other_node(
            lambda: self.b.request("GET", "/v1/certificates?limit=1", token=op["token"]),
            lambda answer: answer[0] != 200)
        self.assertEqual((st, body["error"]["code"]), (401, "unauthorized"), body)
        self.assertIn("revoked", body["error"]["message"])

    def test_5_renewal_race_across_nodes(self):
        self.imported(self.a, "two-race", "race.two.example.com")
        self.service(self.a, "two-race-svc", ["race.two.example.com"])
        self.bind(self.a, "two-race-svc", "two-race")
        keys_before = len(self.token_key_objects())
        news = [self.material("two-race-%d" % i, san="race.two.example.com") for i in range(4)]
        barrier = threading.Barrier(len(news))
        results = [None] * len(news)

        def renew(i):
            try:
                barrier.wait(timeout=30)
                results[i] = self.renew(self.nodes[i % 2], "two-race", news[i], 1)
            except Exception as e:  # shown by the assertions below
                results[i] = e

        threads = [threading.Thread(target=renew, args=(i,)) for i in range(len(news))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for r in results:
            self.assertIsInstance(r, tuple, r)
        self.assertEqual(sorted(r[0] for r in results), [200, 409, 409, 409],
                         [r[2] for r in results])
        winner = next(i for i, r in enumerate(results) if r[0] == 200)
        for i, r in enumerate(results):
            if i != winner:
                self.assertEqual(r[2]["error"]["code"], "already_renewed", r[2])
        for node in self.nodes:
            st, _, svc = node.request("GET", "/v1/services/two-race-svc")
            self.assertEqual(svc["certificate"]["sha256_fingerprint"], fingerprint(news[winner]))
        # One key more, the winner's; no loser's key left behind on either side.
        self.assertEqual(len(self.token_key_objects()), keys_before + 1)
        self.assertTokenMatchesRows()

    def test_6_storm_while_a_is_killed_twice(self):
        """16 clients, half on each node, importing and deleting their own certificates while
        node a is SIGKILLed and started again twice. Node b must answer every request 2xx."""
        materials = [self.material("two-storm-%d" % i, san=DOMAIN) for i in range(4)]
        lock = threading.Lock()
        stop = threading.Event()
        acked_imports, acked_deletes = set(), set()
        maybe_imports, maybe_deletes = set(), set()
        unexpected, b_answers, b_bad = [], [0], []

        def send(node, method, path, body=None):
            """(status, body); None when the request never reached the node (a is down);
            raises when it did and no answer came back."""
            port = node.port
            if port is None:  # a is being killed or started
                return None
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": "Bearer " + self.a.admin_token}
            if data is not None:
                headers["Content-Type"] = "application/json"
            try:
                conn.connect()
            except OSError:
                return None
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()

        def client(i):
            node = self.nodes[i % 2]
            rng = random.Random(i)
            mine, k = [], 0
            while not stop.is_set():
                if node is self.a and node.port is None:
                    time.sleep(0.02)
                    continue
                if mine and rng.random() < 0.35:
                    method, name = "DELETE", mine.pop(rng.randrange(len(mine)))
                    path, body = "/v1/certificates/%s?confirm=delete" % name, None
                else:
                    method, name = "POST", "st%d-%d" % (i, k)
                    m = materials[rng.randrange(len(materials))]
                    path = "/v1/certificates"
                    body = {"name": name, "certificate": m.cert, "private_key": m.key}
                    k += 1
                try:
                    got = send(node, method, path, body)
                except (http.client.HTTPException, OSError) as e:
                    with lock:
                        if node is self.b:
                            b_bad.append((method, name, repr(e)))
                        (maybe_deletes if method == "DELETE" else maybe_imports).add(name)
                    continue
                if got is None:
                    if method == "DELETE":
                        mine.append(name)
                    time.sleep(0.02)
                    continue
                with lock:
                    if node is self.b:
                        b_answers[0] += 1
                        if not 200 <= got[0] < 300:
                            b_bad.append((method, name, got))
                    if method == "POST" and got[0] == 201:
                        mine.append(name)
                        acked_imports.add(name)
                    elif method == "DELETE" and got[0] == 200:
                        acked_deletes.add(name)
                    else:
                        unexpected.append((node.name, method, name, got))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        rng = random.Random()
        try:
            for _ in range(2):
                time.sleep(rng.uniform(0.8, 2.0))
                self.a.port = None  # a's clients wait from here until it listens again
                self.a.kill()
                self.a.start()
            time.sleep(1.5)
            deadline = time.time() + 20
            while True:
                with lock:
                    done = bool(acked_imports and acked_deletes)
                if done or time.time() > deadline:
                    break
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        self.assertEqual(b_bad, [], "node b failed requests while a was killed")
        self.assertGreater(b_answers[0], 0)
        self.assertEqual(unexpected, [])
        self.assertTrue(acked_imports and acked_deletes, "the storm did nothing")
        # Checked with both nodes stopped: nothing moves under the comparison; a's last
        # start has undone what its kills cut short.
        for node in self.nodes:
            self.assertEqual(node.stop(), 0, node.log())
        present = self.assertTokenMatchesRows()
        self.assertEqual(acked_imports - acked_deletes - maybe_deletes - present, set(),
                         "acknowledged imports lost")
        self.assertEqual(present & acked_deletes, set(), "acknowledged deletes undone")
        self.assertEqual(present - acked_imports - maybe_imports - {
            n for n in present if not n.startswith("st")}, set(),
            "certificates nobody imported")
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            self.assertAuditIntact(node)
        print("\nstorm: %d imports and %d deletes acknowledged, %d and %d cut by 2 kills of a;"
              " b answered %d requests" % (len(acked_imports), len(acked_deletes),
                                           len(maybe_imports), len(maybe_deletes),
                                           b_answers[0]))


if __name__ == "__main__":
    unittest.main()
