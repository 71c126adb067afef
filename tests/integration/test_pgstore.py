"""certvaultd on PostgreSQL (issue 15): database.url, what stays SQLite's, and two certvaultd
processes on one database seeing each other's writes at once (lists, details, the JWKS and its
ETag: the caches' generations are the database's).

The two nodes here share the database and start from copies of one token (the audit key and
the keys made before the copy): enough for everything that is read from the database. One
token shared over the network by several nodes is p11-kit server's part, not this suite's."""

import json
import os
import shutil
import tempfile
import unittest

import pgstore
from harness import CERTVAULTD, Certvaultd, Material, run


class PgStoreTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cv-pgs-")
        cls.pg = pgstore.server()
        url = pgstore.new_schema()
        os.makedirs(os.path.join(cls.tmp, "a"))
        cls.a = Certvaultd(os.path.join(cls.tmp, "a"))
        cls.a.db_url = url
        cls.a.start()
        # Node b: the same database, a copy of a's token (its audit key, its PIN), made while
        # a is stopped so that the copy is whole.
        cls.assert_stopped(cls.a)
        b_dir = os.path.join(cls.tmp, "b")
        os.makedirs(b_dir)
        cls.b = Certvaultd(b_dir, {"CERTVAULT_SERVER_NODE_NAME": "node-b"})
        cls.b.db_url = url
        shutil.rmtree(cls.b.token_dir)
        shutil.copytree(cls.a.token_dir, cls.b.token_dir)
        cls.b.pin, cls.b.pin_file = cls.a.pin, cls.a.pin_file
        cls.b.admin_token_file = cls.a.admin_token_file
        cls.a.start()
        cls.b.start()

    @staticmethod
    def assert_stopped(vault):
        if vault.stop() != 0:
            raise AssertionError(vault.log())

    @classmethod
    def tearDownClass(cls):
        for v in (cls.a, cls.b):
            if v.proc is not None and v.stop() != 0:
                raise AssertionError(v.log())
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_health_and_log_name_the_store_not_its_secrets(self):
        for v, node in ((self.a, None), (self.b, "node-b")):
            st, _, body = v.request("GET", "/v1/health", token=None)
            self.assertEqual((st, body["store"], body["database"]["ok"]),
                             (200, "postgresql", True), body)
            if node:
                self.assertEqual(body["node"], node)
        # The start line names host (the socket's directory) and database, never the user.
        self.assertIn("database postgresql %s/certvault" % self.pg.dir, self.a.log())
        self.assertNotIn("user=postgres", self.a.log())

    def jwks(self, vault, etag=None):
        st, hdrs, raw = vault.request("GET", "/v1/jwks", token=None,
                                      headers={"If-None-Match": etag} if etag else None)
        return st, hdrs.get("etag"), json.loads(raw) if st == 200 else None

    def test_a_write_on_one_node_is_read_at_once_on_the_other(self):
        st, etag, _ = self.jwks(self.b)
        self.assertEqual(st, 200)
        self.assertTrue(etag)
        # b answers 304 to its own ETag while nothing changed.
        self.assertEqual(self.jwks(self.b, etag)[0], 304)

        m = Material(self.tmp, "pgs-cross", san="cross.example.com")
        st, _, body = self.a.import_cert("pgs-cross", m)
        self.assertEqual(st, 201, body)
        st, _, made = self.a.request("POST", "/v1/jwks", {"certificate": "pgs-cross"})
        self.assertEqual(st, 201, made)
        kid = made["jwk"]["kid"]

        # b's next requests see it: details, the list, the JWKS under a new ETag.
        st, _, got = self.b.request("GET", "/v1/certificates/pgs-cross")
        self.assertEqual(st, 200, got)
        st, _, on_a = self.a.request("GET", "/v1/certificates/pgs-cross")
        # The same view on both, but for what each node's own token answers (the key is in
        # a's token only: b's is a copy made before the import).
        differ = {k for k in set(got) | set(on_a) if got.get(k) != on_a.get(k)}
        self.assertLessEqual(differ, {"key", "key_missing"}, (got, on_a))
        st, _, page = self.b.request("GET", "/v1/certificates?q=pgs-cross")
        self.assertEqual([c["name"] for c in page["items"]], ["pgs-cross"], page)
        st, etag2, doc = self.jwks(self.b, etag)
        self.assertEqual(st, 200)
        self.assertNotEqual(etag2, etag)
        self.assertIn(kid, [k["kid"] for k in doc["keys"]])

        # A delete on a: b answers 404 and leaves the JWK out at once.
        st, _, out = self.a.request(
            "DELETE", "/v1/certificates/pgs-cross?confirm=pgs-cross&jwk_action=delete")
        self.assertIn(st, (200, 204), out)
        self.assertEqual(self.b.request("GET", "/v1/certificates/pgs-cross")[0], 404)
        st, etag3, doc = self.jwks(self.b, etag2)
        self.assertEqual(st, 200)
        self.assertNotIn(kid, [k["kid"] for k in doc["keys"]])

    def test_file_backup_is_sqlite_only(self):
        st, _, body = self.a.request("POST", "/v1/backup")
        self.assertEqual((st, body["error"]["code"]), (500, "configuration_error"), body)
        self.assertIn("pg_dump", body["error"]["message"])
        out = os.path.join(self.tmp, "x.tar")
        for args in (["--backup", out], ["--verify-backup", out],
                     ["--restore", out, "--database", out + ".db"]):
            flag = args[0]
            p = run([CERTVAULTD] + args, env=self.a.env(), check=False)
            self.assertNotEqual(p.returncode, 0, flag)
            self.assertIn(b"pg_dump", p.stderr, flag)
            self.assertFalse(os.path.exists(out))
            self.assertFalse(os.path.exists(out + ".db"))


if __name__ == "__main__":
    unittest.main()
