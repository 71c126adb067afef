"""Crash safety across the token and the database (issue 6).

A write that spans the token and SQLite (import, renew, replace, delete) leaves, after a crash
at any instant and the next start, the whole change or none of it: no key object without its
row, no row without its key, an audit record for the change exactly when the change happened,
and no acknowledged change lost. Key objects certvault did not make are never touched.

- FaultPointTest kills certvaultd at every fault point of every write path that reaches it
  (the purge of a deleted certificate, issue 18, among them)
  (certvaultd --fault-points lists them; a build without CV_FAULT_INJECTION has none, and the
  test then says it skips them), starts it again and checks from outside.
- StormTest: 16 clients import and delete while certvaultd is SIGKILLed at random moments and
  started again; afterwards the token and the database agree exactly, every acknowledged
  import is there and every acknowledged delete is gone."""

import collections
import http.client
import json
import os
import random
import secrets
import signal
import threading
import time
import unittest
import urllib.parse

from harness import CERTVAULTD, SOFTHSM_MODULE, Material, VaultTestCase, run
from test_generate import LocalCA

DOMAIN = "crash.example.com"
DESTROY_OLD = {"CERTVAULT_POLICY_DESTROY_SUPERSEDED_KEYS": "true"}
KEEP_OLD = {"CERTVAULT_POLICY_DESTROY_SUPERSEDED_KEYS": "false"}
# A purge (issue 18) needs a certificate deleted with a retention, both keys kept.
RETAIN = dict(KEEP_OLD, CERTVAULT_LIFECYCLE_DELETED_RETENTION_DAYS="30")


def fault_points():
    """(name, paths) of every fault point of this build, from certvaultd itself."""
    out = run([CERTVAULTD, "--fault-points"]).stdout.decode()
    points = []
    for line in out.splitlines():
        name, paths, _where = line.split("\t")
        points.append((name, paths.split()))
    return points


def token_key_objects(vault):
    """{CKA_ID hex: sorted list of "private"/"public"} of every key object in the token."""
    objects = collections.defaultdict(list)
    kind = None
    for line in vault.token_objects().splitlines():
        if not line.startswith(" "):
            kind = ("private" if line.startswith("Private Key Object") else
                    "public" if line.startswith("Public Key Object") else None)
        elif kind is not None and line.strip().startswith("ID:"):
            objects[line.split(":", 1)[1].strip().lower()].append(kind)
    return {k: sorted(v) for k, v in objects.items()}


class CrashCase(VaultTestCase):
    """The invariants, checked from outside, and the objects certvault must leave alone."""

    foreign_label = None  # a label like certvault's: a certificate name the test uses

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.foreign = {}
        for label in ("not-ours", cls.foreign_label):
            key_id = secrets.token_hex(16)
            m = Material(cls.tmp, "foreign-" + label, san="foreign.example.com")
            run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", cls.vault.label,
                 "--login", "--pin", "env:CV_TEST_PIN", "--write-object", m.key_path,
                 "--type", "privkey", "--id", key_id, "--label", label],
                env=dict(cls.vault.env(), CV_TEST_PIN=cls.vault.pin))
            cls.foreign[key_id] = label

    def kill(self):
        """SIGKILL, as a crash would stop it."""
        self.vault.proc.kill()
        self.vault.proc.wait()
        self.vault.proc = None
        self.vault.logf.close()

    def db_rows(self, sql, args=()):
        return self.vault.sql(sql, args)

    def assertConsistent(self):
        """No write half-done: nothing unsettled is left, every key a row holds is whole in the
        token, every key object in the token is held by exactly one row (or is foreign, and
        then still there), and a destroyed version's key is gone. Returns the rows' names."""
        # A deleted certificate held for its retention (issue 18) is settled: its keys stay.
        self.assertEqual(self.db_rows("SELECT name, state FROM certificates WHERE state != 1"
                                      " AND held = 0"), [])
        # A pending certificate (a generated key waiting for its certificate) is settled
        # only when ready; it holds its key like a certificate.
        self.assertEqual(self.db_rows("SELECT name, state FROM pending_certificates"
                                      " WHERE state != 1"), [])
        self.assertEqual(self.db_rows("SELECT hex(key_id) FROM key_journal"), [])
        self.assertEqual(self.db_rows("SELECT version FROM certificate_versions"
                                      " WHERE key_state = 1"), [])
        held = collections.Counter(
            k.lower() for (k,) in self.db_rows(
                "SELECT hex(key_id) FROM certificates UNION ALL"
                " SELECT hex(key_id) FROM certificate_versions WHERE key_state = 0 UNION ALL"
                " SELECT hex(key_id) FROM pending_certificates"))
        gone = {k.lower() for (k,) in self.db_rows(
            "SELECT hex(key_id) FROM certificate_versions WHERE key_state = 2")}
        objects = token_key_objects(self.vault)
        for key_id, label in self.foreign.items():
            self.assertEqual(objects.get(key_id), ["private"],
                             "foreign key %s (label %s) was touched" % (key_id, label))
        for key_id, n in held.items():
            self.assertEqual(n, 1, "key %s is held by %d rows" % (key_id, n))
            self.assertEqual(objects.get(key_id), ["private", "public"],
                             "key %s of a row is not whole in the token" % key_id)
        for key_id, kinds in objects.items():
            if key_id not in self.foreign:
                self.assertIn(key_id, held, "key object %s %s has no row" % (key_id, kinds))
        for key_id in gone:
            self.assertNotIn(key_id, objects, "destroyed version key %s is back" % key_id)
        return {name for (name,) in self.db_rows("SELECT name FROM certificates")}

    def audit_after(self, seq):
        out = []
        while True:
            st, _, body = self.vault.request("GET", "/v1/audit?" + urllib.parse.urlencode(
                {"cursor": str(seq), "limit": "1000"}))
            self.assertEqual(st, 200, body)
            out += body["items"]
            if body["next_cursor"] is None:
                return out
            seq = int(body["next_cursor"])

    def last_audit_seq(self):
        recs = self.audit_after(0)
        return recs[-1]["seq"] if recs else 0

    def assertAuditIntact(self):
        st, _, body = self.vault.request("GET", "/v1/audit/verify")
        self.assertEqual(st, 200, body)
        self.assertTrue(body["intact"], body)


class FaultPointTest(CrashCase):

    foreign_label = "ci"  # every import below is named ci

    def setUp(self):
        self.points = fault_points()
        if not self.points:
            self.skipTest("this certvaultd has no fault points (built without "
                          "CV_FAULT_INJECTION, as scripts/run's and the plain scripts/test "
                          "builds are); the Debug builds run them")
        self.materials = [self.material("fp-%d" % i, san=DOMAIN) for i in range(2)]
        self.n = 0
        self.ca = LocalCA(self.tmp, "ca-%s" % self._testMethodName)

    def restart(self, extra_env):
        self.assertEqual(self.vault.stop(), 0, self.vault.log())
        self.vault.start(extra_env)

    def setup_path(self, path):
        """Makes what the write path changes; returns (name, request, fingerprint before)."""
        self.n += 1
        old, new = self.materials
        if path == "import":
            body = {"name": "ci", "certificate": old.cert, "private_key": old.key}
            return "ci", ("POST", "/v1/certificates", body), None
        name = "c%s-%d" % (path[:3], self.n)
        gen = {"key": "p256", "subject": "CN=" + DOMAIN, "dns_names": [DOMAIN]}
        if path in ("generate", "selfsigned"):
            if path == "selfsigned":
                gen.update(self_signed=True, days=90)
            return name, ("POST", "/v1/certificates", {"name": name, "generate": gen}), None
        if path in ("merge", "cancel"):
            st, _, body = self.vault.request("POST", "/v1/certificates",
                                             {"name": name, "generate": gen})
            self.assertEqual(st, 201, body)
            if path == "cancel":
                return name, ("DELETE", "/v1/certificates/%s/pending" % name, None), None
            return name, ("POST", "/v1/certificates/%s/certificate" % name,
                          {"certificate": self.ca.issue(body["csr"])}), None
        st, _, body = self.vault.import_cert(name, old)
        self.assertEqual(st, 201, body)
        fp = body["fingerprints"]["sha256"]
        if path == "renew":
            svc = "/v1/services/s-%s" % name
            st, _, body = self.vault.request("PUT", svc, {"environment": "production",
                                                          "domains": [DOMAIN]})
            self.assertEqual(st, 201, body)
            st, _, body = self.vault.request("PUT", svc + "/certificate", {"certificate": name})
            self.assertEqual(st, 200, body)
        if path in ("renew", "replace"):
            return name, ("POST", "/v1/certificates/%s/%s" % (name, path),
                          {"certificate": new.cert, "private_key": new.key}), fp
        # A delete with a superseded version whose key is still in the token: two keys.
        st, _, body = self.vault.request("POST", "/v1/certificates/%s/replace" % name,
                                         {"certificate": new.cert, "private_key": new.key})
        self.assertEqual(st, 200, body)
        st, _, body = self.vault.request("GET", "/v1/certificates/" + name)
        fp = body["fingerprints"]["sha256"]
        if path == "purge":
            # Deleted with a retention first: the purge destroys both keys.
            st, _, deleted = self.vault.request("DELETE", "/v1/certificates/%s?confirm=delete"
                                                % name)
            self.assertEqual((st, deleted["recoverable"]), (200, True), deleted)
            return name, ("DELETE", "/v1/deleted-certificates/%s?confirm=purge" % name,
                          None), fp
        return name, ("DELETE", "/v1/certificates/%s?confirm=delete" % name, None), fp

    def crash_at(self, point, request, env):
        """Starts certvaultd set to die at point, sends request, sees it die there."""
        self.restart(dict(env, CERTVAULT_FAULT=point))
        method, path, body = request
        with self.assertRaises((http.client.HTTPException, OSError),
                               msg="%s answered: it did not die at %s" % (path, point)):
            self.vault.request(method, path, body)
        rc = self.vault.proc.wait(timeout=60)
        log = self.vault.log()
        self.vault.proc = None
        self.vault.logf.close()
        self.assertEqual(rc, -signal.SIGKILL, log)
        self.assertIn("fault point %s: killing the process" % point, log)

    def check_path(self, path, name, fp_before, seq):
        """The change is whole or absent, and the audit trail says which."""
        st, _, cert = self.vault.request("GET", "/v1/certificates/" + name)
        action = "certificate." + path
        if path in ("generate", "selfsigned", "merge", "cancel"):
            self.assertIn(st, (200, 404), cert)
            pending = st == 200 and cert.get("status") == "pending"
            if path == "generate":
                done = pending
                self.assertIn(st, (200, 404), cert)
                self.assertTrue(st == 404 or pending, cert)
            elif path == "selfsigned":
                done = st == 200
                self.assertFalse(pending, cert)
                action = "certificate.generate"
            elif path == "merge":
                self.assertEqual(st, 200, cert)
                done = not pending
            else:
                done = st == 404
                self.assertTrue(done or pending, cert)
                action = "certificate.pending_cancel"
            if done and path in ("selfsigned", "merge"):
                self.assertEqual(cert["key"]["origin"], "generated", cert)
                self.assertTrue(cert["key"]["pkcs11_uri"], cert)
            records = [r for r in self.audit_after(seq)
                       if r["action"] == action and r["target"] == name]
            self.assertEqual(len(records), 1 if done else 0, records)
            self.assertAuditIntact()
            return done
        if path == "import":
            done = st == 200
            self.assertIn(st, (200, 404), cert)
        elif path == "purge":
            # Gone from the deleted list (and its keys, assertConsistent checks) or still
            # there whole, recoverable.
            self.assertEqual(st, 404, cert)
            st, _, deleted = self.vault.request("GET", "/v1/deleted-certificates?limit=1000")
            self.assertEqual(st, 200, deleted)
            item = [i for i in deleted["items"] if i["name"] == name]
            done = not item
            if not done:
                self.assertEqual(item[0]["version"], 2, item)
        elif path == "delete":
            done = st == 404
            if not done:
                self.assertEqual((st, cert["version"], cert["fingerprints"]["sha256"]),
                                 (200, 2, fp_before))
        else:
            self.assertEqual(st, 200, cert)
            done = cert["version"] == 2
            st, _, versions = self.vault.request("GET", "/v1/certificates/%s/versions" % name)
            self.assertEqual(st, 200, versions)
            if done:
                self.assertNotEqual(cert["fingerprints"]["sha256"], fp_before)
                self.assertEqual(len(versions["versions"]), 2, versions)
                # destroy_superseded_keys is on: the old key went, by the run or the
                # reconciler.
                self.assertEqual(versions["versions"][1]["key"],
                                 {"in_token": False, "pkcs11_uri": None})
            else:
                self.assertEqual(cert["fingerprints"]["sha256"], fp_before)
                self.assertEqual(len(versions["versions"]), 1, versions)
        if path not in ("delete", "purge") and done:
            self.assertTrue(cert["key"]["pkcs11_uri"], cert)
        records = [r for r in self.audit_after(seq)
                   if r["action"] == "certificate." + path and r["target"] == name]
        self.assertEqual(len(records), 1 if done else 0, records)
        if done:
            self.assertEqual(records[0]["outcome"], "done", records)
        self.assertAuditIntact()
        return done

    def test_every_fault_point_of_every_write_path(self):
        outcomes = collections.defaultdict(set)
        walked = 0
        for path in ("import", "renew", "replace", "delete", "generate", "selfsigned", "merge",
                     "cancel", "purge"):
            env = (KEEP_OLD if path == "delete" else RETAIN if path == "purge" else
                   DESTROY_OLD)
            self.restart(env)
            for point, paths in self.points:
                if path not in paths:
                    continue
                with self.subTest(path=path, point=point):
                    name, request, fp_before = self.setup_path(path)
                    seq = self.last_audit_seq()
                    self.crash_at(point, request, env)
                    self.vault.start(env)
                    done = self.check_path(path, name, fp_before, seq)
                    outcomes[path].add(done)
                    self.assertConsistent()
                    walked += 1
                    if path == "import" and done:
                        st, _, body = self.vault.request(
                            "DELETE", "/v1/certificates/ci?confirm=delete")
                        self.assertEqual(st, 200, body)
        # Every path was cut both before its commit (undone) and after (finished). A
        # cancel's first write is its point of no return: it is always finished.
        for path in ("import", "renew", "replace", "delete", "generate", "selfsigned",
                     "merge", "purge"):
            self.assertEqual(outcomes[path], {False, True}, (path, outcomes[path]))
        self.assertEqual(outcomes["cancel"], {True})
        self.assertGreaterEqual(walked, sum(len(p) for _, p in self.points))
        self.assertIn("recovered from an interrupted run", self.vault.whole_log())


class StormTest(CrashCase):
    """16 clients importing and deleting while certvaultd is SIGKILLed and started again."""

    foreign_label = "s0-0"  # the first name client 0 imports
    CLIENTS = 16
    KILLS = 4

    def test_storm(self):
        materials = [self.material("storm-%d" % i, san=DOMAIN) for i in range(4)]
        lock = threading.Lock()
        stop = threading.Event()
        acked_imports, acked_deletes = set(), set()
        maybe_imports, maybe_deletes = set(), set()
        unexpected = []

        def send(method, path, body=None):
            """(status, body), or None when the request never reached certvaultd, or raises
            when it did and no answer came back."""
            port, token = self.vault.port, self.vault.admin_token
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": "Bearer " + token}
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
            rng = random.Random(i)
            mine, k = [], 0
            while not stop.is_set():
                if mine and rng.random() < 0.35:
                    name = mine.pop(rng.randrange(len(mine)))
                    try:
                        got = send("DELETE", "/v1/certificates/%s?confirm=delete" % name)
                    except (http.client.HTTPException, OSError):
                        with lock:
                            maybe_deletes.add(name)
                        continue
                    if got is None:
                        mine.append(name)
                        time.sleep(0.02)
                    elif got[0] == 200:
                        with lock:
                            acked_deletes.add(name)
                    else:
                        with lock:
                            unexpected.append(("DELETE", name, got))
                    continue
                name = "s%d-%d" % (i, k)
                m = materials[rng.randrange(len(materials))]
                try:
                    got = send("POST", "/v1/certificates", {
                        "name": name, "certificate": m.cert, "private_key": m.key})
                except (http.client.HTTPException, OSError):
                    with lock:
                        maybe_imports.add(name)
                    k += 1
                    continue
                if got is None:
                    time.sleep(0.02)
                    continue
                k += 1
                if got[0] == 201:
                    mine.append(name)
                    with lock:
                        acked_imports.add(name)
                else:
                    with lock:
                        unexpected.append(("POST", name, got))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(self.CLIENTS)]
        for t in threads:
            t.start()
        rng = random.Random()
        try:
            for _ in range(self.KILLS):
                time.sleep(rng.uniform(0.4, 1.5))
                self.kill()
                self.vault.start()
            # On a loaded machine the kills can come faster than any import and delete is
            # acknowledged: the storm then goes on, unkilled, until one of each was (or 30 s).
            deadline = time.time() + 30
            while True:
                time.sleep(0.5)
                with lock:
                    done = bool(acked_imports and acked_deletes)
                if done or time.time() > deadline:
                    break
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        self.assertEqual(unexpected, [])
        self.assertTrue(acked_imports and acked_deletes, "the storm did nothing")
        # Checked with certvaultd stopped: nothing moves under the comparison.
        self.assertEqual(self.vault.stop(), 0, self.vault.log())
        present = self.assertConsistent()
        self.assertEqual(acked_imports - acked_deletes - maybe_deletes - present, set(),
                         "acknowledged imports lost")
        self.assertEqual(present & acked_deletes, set(), "acknowledged deletes undone")
        self.assertEqual(present - acked_imports - maybe_imports, set(),
                         "certificates nobody imported")
        self.vault.start()
        self.assertAuditIntact()
        recovered = self.vault.whole_log().count("recovered from an interrupted run")
        print("\nstorm: %d imports and %d deletes acknowledged, %d and %d cut by %d kills, "
              "%d recoveries" % (len(acked_imports), len(acked_deletes), len(maybe_imports),
                                 len(maybe_deletes), self.KILLS, recovered))


if __name__ == "__main__":
    unittest.main()
