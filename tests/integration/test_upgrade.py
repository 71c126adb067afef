"""Upgrades (issue 20): every earlier schema version's frozen database (tests/upgrade/, made
by the release that wrote it) opened by this build, with its keys in the token: the data,
the keys (each certificate's URI still names a key object that signs for its certificate)
and the audit chain intact; a database newer than this build is refused and left as it was."""

import json
import os
import shutil
import sqlite3
import tempfile
import unittest

import frozen
from harness import ENGINE_PKCS11, SOFTHSM_MODULE, run


def dump(path):
    """The database's schema version and every row, as SQL text."""
    with sqlite3.connect(path) as db:
        return (db.execute("PRAGMA user_version").fetchone()[0], "\n".join(db.iterdump()))


class FrozenSchemaTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cv-it-upgrade-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_every_frozen_schema_migrates_intact(self):
        self.assertEqual(frozen.VERSIONS, list(range(1, len(frozen.VERSIONS) + 1)))
        self.assertGreaterEqual(len(frozen.VERSIONS), 10)
        conf = os.path.join(self.tmp, "p11.cnf")
        with open(conf, "w") as f:
            f.write("openssl_conf = init\n[init]\nengines = engines\n[engines]\n"
                    "pkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\ndynamic_path = %s\n"
                    "MODULE_PATH = %s\ninit = 0\n" % (ENGINE_PKCS11, SOFTHSM_MODULE))
        for version in frozen.VERSIONS:
            with self.subTest(schema=version):
                work = os.path.join(self.tmp, "v%d" % version)
                os.makedirs(work)
                vault, m = frozen.load(work, version)
                vault.start()
                try:
                    self.check(vault, m, conf)
                finally:
                    self.assertEqual(vault.stop(), 0)
                log = vault.whole_log()
                self.assertNotIn("key missing", log)
                self.assertNotIn("orphan key", log)

    def check(self, vault, m, conf):
        done = m["done"]
        st, _, page = vault.request("GET", "/v1/certificates?limit=100")
        self.assertEqual(st, 200, page)
        self.assertEqual(sorted(i["name"] for i in page["items"]), m["certificates"])
        self.assertTrue(all(i["key_missing"] is False for i in page["items"]), page)
        health = vault.wait_orphans_checked()
        self.assertEqual(health["keys"], {"missing": 0, "orphaned": 0, "orphans_checked": True},
                         health)
        st, _, web = vault.request("GET", "/v1/certificates/web")
        self.assertEqual(st, 200, web)
        self.assertEqual(web["version"], 2 if done["renew web"] else 1)
        self.assertIs(web["key_missing"], False)
        if done["edit"]:
            st, _, api = vault.request("GET", "/v1/certificates/api")
            self.assertEqual(api["description"], "internal api")
        st, _, versions = vault.request("GET", "/v1/certificates/web/versions")
        self.assertEqual(st, 200, versions)
        self.assertEqual(len(versions["versions"]), 2 if done["renew web"] else 1, versions)
        if done["bind"]:
            st, _, site = vault.request("GET", "/v1/services/site")
            self.assertEqual(st, 200, site)
            self.assertEqual(site["certificate"]["name"], "web")
            self.assertEqual(site["certificate"]["version"], web["version"])
        if done["jwk"]:
            st, _, jwks = vault.request("GET", "/v1/jwks", token=None)
            self.assertEqual(len(json.loads(jwks)["keys"]), 1, jwks)
        if done["access token"]:
            st, _, tokens = vault.request("GET", "/v1/tokens")
            self.assertIn("deploy", [t["name"] for t in tokens["items"]])
        if done["truststore"]:
            st, _, entry = vault.request("GET", "/v1/truststore/frozen-root")
            self.assertEqual(st, 200, entry)
        # The audit chain the frozen release wrote, and what this one added, verify.
        st, _, verdict = vault.request("GET", "/v1/audit/verify")
        self.assertEqual(st, 200, verdict)
        self.assertTrue(verdict["intact"], verdict)
        self.assertGreaterEqual(verdict["records"], m["audit_records"])
        # Keys intact: the URI this build gives names the frozen key object, which signs
        # for the certificate (a wrong id or label would find nothing, or another key).
        data = os.path.join(vault.dir, "message")
        with open(data, "w") as f:
            f.write("signed after the upgrade\n")
        sig, pub = data + ".sig", data + ".pub"
        run(["openssl", "dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine", "-sign",
             web["key"]["pkcs11_uri"] + ";pin-value=" + vault.pin, "-out", sig, data],
            env=dict(vault.env(), OPENSSL_CONF=conf))
        st, _, pem = vault.request("GET", "/v1/certificates/web/export?format=public-key")
        with open(pub, "wb") as f:
            f.write(pem)
        p = run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", sig, data])
        self.assertIn(b"Verified OK", p.stdout)

    def test_newer_schema_refused_and_left_alone(self):
        """A database a newer certvault made (a downgrade): refused, saying so, untouched."""
        latest = frozen.VERSIONS[-1]
        vault, _ = frozen.load(self.tmp, latest)
        vault.start()
        self.assertEqual(vault.stop(), 0)
        with sqlite3.connect(vault.db) as db:
            current = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute("PRAGMA user_version = %d" % (current + 1))
        before = dump(vault.db)
        with self.assertRaises(AssertionError) as ctx:
            vault.start()
        vault.logf.close()
        self.assertIn("has schema version %d, newer than this certvault knows (%d): run a "
                      "newer certvault" % (current + 1, current), str(ctx.exception))
        self.assertEqual(dump(vault.db), before)

    def test_development_build_schema_refused_and_left_alone(self):
        """From 3de079a to 82ea025 the names step was numbered 7 to 10: a database one of
        those builds wrote says 7-10 but holds that step. Refused, never half-migrated."""
        vault, _ = frozen.load(self.tmp, 7)
        with sqlite3.connect(vault.db) as db:
            db.execute("CREATE UNIQUE INDEX certificates_name_nocase"
                       " ON certificates(name COLLATE NOCASE)")
        before = dump(vault.db)
        with self.assertRaises(AssertionError) as ctx:
            vault.start()
        vault.logf.close()
        self.assertIn("has schema version 7 as a development build numbered it",
                      str(ctx.exception))
        self.assertEqual(dump(vault.db), before)


if __name__ == "__main__":
    unittest.main()
