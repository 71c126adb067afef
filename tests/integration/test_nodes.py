"""Several nodes on one database (issue 15): the reconciler undoes only what is really abandoned.

Two certvaultd processes cannot share one SQLite file, so the other nodes are played by rows:
the test turns imports and journal keys of a real certvaultd into writes in flight of other
"nodes" (owner_node), gives those nodes heartbeats in the nodes table, and checks from outside
(the API, the database file, pkcs11-tool on the token) what the next start and the running
node do with them: a live node's write in flight is left alone, with its key; a write of a
node silent past server.node_lease_seconds, of a node that never registered, or of an earlier
release is undone, its key destroyed."""

import collections
import os
import sqlite3
import tempfile
import shutil
import time
import unittest

from harness import Certvaultd, Material

NODE = "node-main"


def token_key_ids(vault):
    """{CKA_ID hex: sorted kinds} of every key object in the token."""
    objects = collections.defaultdict(list)
    kind = None
    for line in vault.token_objects().splitlines():
        if not line.startswith(" "):
            kind = ("private" if line.startswith("Private Key Object") else
                    "public" if line.startswith("Public Key Object") else None)
        elif kind is not None and line.strip().startswith("ID:"):
            objects[line.split(":", 1)[1].strip().lower()].append(kind)
    return {k: sorted(v) for k, v in objects.items()}


class NodesTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cv-it-nodes-")
        self.vault = Certvaultd(self.tmp, {"CERTVAULT_SERVER_NODE_NAME": NODE})

    def tearDown(self):
        rc = self.vault.stop()
        log = self.vault.whole_log()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if rc not in (None, 0) or "ERROR: AddressSanitizer" in log or "runtime error:" in log:
            raise AssertionError("certvaultd exited %s:\n%s" % (rc, log[-4000:]))

    def db(self, sql, args=()):
        db = sqlite3.connect(self.vault.db, timeout=30)
        try:
            with db:
                return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def import_some(self, names):
        """Imports each name; returns {name: key id hex}."""
        ids = {}
        for name in names:
            m = Material(self.tmp, name, san=name + ".example.com")
            st, _, body = self.vault.import_cert(name, m)
            self.assertEqual(st, 201, body)
            ids[name] = self.db("SELECT lower(hex(key_id)) FROM certificates WHERE name = ?",
                                (name,))[0][0]
        return ids

    def in_flight(self, name, owner):
        """Turns the imported certificate name back into an import in flight of owner."""
        self.db("UPDATE certificates SET state = 0, owner_node = ? WHERE name = ?",
                (owner, name))

    def journaled(self, name, owner):
        """Turns the key of the imported certificate name into a key a renewal of owner is
        making: named in the key journal, held by no row."""
        self.db("INSERT INTO key_journal (key_id, cert_id, created_at, owner_node)"
                " SELECT key_id, id, 0, ? FROM certificates WHERE name = ?", (owner, name))
        self.db("DELETE FROM certificates WHERE name = ?", (name,))

    def heartbeat(self, node, at):
        self.db("INSERT INTO nodes (name, started_at, heartbeat_at) VALUES (?, 1, ?)"
                " ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (node, at))

    def test_start_leaves_a_live_node_alone_and_undoes_the_rest(self):
        self.vault.start()
        ids = self.import_some(["left-live", "left-stale", "left-unknown", "left-old",
                                "j-live", "j-stale", "stays"])
        self.assertEqual(self.vault.stop(), 0)
        now = int(time.time())
        # A live node: its heartbeat is fresh for the whole test. A silent one: an hour old.
        self.heartbeat("peer-live", now + 3600)
        self.heartbeat("peer-stale", now - 3600)
        self.in_flight("left-live", "peer-live")
        self.in_flight("left-stale", "peer-stale")
        self.in_flight("left-unknown", "peer-never-registered")
        self.in_flight("left-old", "")  # an earlier release's crash
        self.journaled("j-live", "peer-live")
        self.journaled("j-stale", "peer-stale")

        self.vault.start()
        log = self.vault.log()
        self.assertIn("3 import(s) undone", log)
        self.assertIn("1 new version(s) undone", log)
        # The live node's import is still in flight: its row, its name, its key.
        self.assertEqual(self.db("SELECT state, owner_node FROM certificates"
                                 " WHERE name = 'left-live'"), [(0, "peer-live")])
        self.assertEqual(self.vault.request("GET", "/v1/certificates/left-live")[0], 404)
        m = Material(self.tmp, "left-live-again", san="left-live.example.com")
        st, _, body = self.vault.import_cert("left-live", m)
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "name_taken")
        self.assertEqual(self.db("SELECT lower(hex(key_id)), owner_node FROM key_journal"),
                         [(ids["j-live"], "peer-live")])
        objects = token_key_ids(self.vault)
        for name in ("left-live", "j-live", "stays"):
            self.assertEqual(objects.get(ids[name]), ["private", "public"], name)
        # What was abandoned is undone: rows gone, keys destroyed, names free again.
        for name in ("left-stale", "left-unknown", "left-old", "j-stale"):
            self.assertNotIn(ids[name], objects, name)
            self.assertEqual(self.db("SELECT count(*) FROM certificates WHERE name = ?",
                                     (name,)), [(0,)])
        m = Material(self.tmp, "left-stale-again", san="left-stale.example.com")
        self.assertEqual(self.vault.import_cert("left-stale", m)[0], 201)
        self.assertEqual(self.vault.request("GET", "/v1/certificates/stays")[0], 200)
        # This node is registered, with a heartbeat.
        (started, beat), = self.db("SELECT started_at, heartbeat_at FROM nodes WHERE name = ?",
                                   (NODE,))
        self.assertGreaterEqual(beat, started)
        self.assertGreaterEqual(started, now)
        # A clean stop says the node left nothing in flight.
        self.assertEqual(self.vault.stop(), 0)
        self.assertEqual(self.db("SELECT heartbeat_at FROM nodes WHERE name = ?", (NODE,)),
                         [(0,)])

    def test_running_node_takes_over_from_a_node_that_falls_silent(self):
        self.vault.settings["CERTVAULT_SERVER_NODE_LEASE_SECONDS"] = "3"
        self.vault.start()
        ids = self.import_some(["peer-import", "j-peer"])
        self.assertEqual(self.vault.stop(), 0)
        self.heartbeat("peer", int(time.time()) + 3600)
        self.in_flight("peer-import", "peer")
        self.journaled("j-peer", "peer")
        self.vault.start()
        self.assertNotIn("import(s) undone", self.vault.log())
        (beat0,), = self.db("SELECT heartbeat_at FROM nodes WHERE name = ?", (NODE,))

        # The peer falls silent: within a lease or two the running node undoes its writes.
        self.heartbeat("peer", int(time.time()) - 3600)
        deadline = time.time() + 60
        while time.time() < deadline and (
                self.db("SELECT count(*) FROM certificates WHERE name = 'peer-import'")[0][0] or
                self.db("SELECT count(*) FROM key_journal")[0][0]):
            time.sleep(0.2)
        self.assertEqual(self.db("SELECT count(*) FROM certificates WHERE name = 'peer-import'"),
                         [(0,)])
        self.assertEqual(self.db("SELECT count(*) FROM key_journal"), [(0,)])
        objects = token_key_ids(self.vault)
        self.assertNotIn(ids["peer-import"], objects)
        self.assertNotIn(ids["j-peer"], objects)
        self.assertIn("took over from a node silent past its lease", self.vault.log())
        # Its own heartbeat moved meanwhile (every lease / 3 seconds).
        (beat1,), = self.db("SELECT heartbeat_at FROM nodes WHERE name = ?", (NODE,))
        self.assertGreater(beat1, beat0)

        # Another process registering under this node's name is told of at the next beat.
        self.db("UPDATE nodes SET started_at = started_at + 1 WHERE name = ?", (NODE,))
        deadline = time.time() + 30
        while time.time() < deadline and "under this node's name" not in self.vault.log():
            time.sleep(0.2)
        self.assertIn("another certvaultd started under this node's name", self.vault.log())


if __name__ == "__main__":
    unittest.main()
