"""Recovery at start-up: what a crash in the middle of a renew or replace leaves behind is
finished or undone by the reconciler of the next start, and keys certvault did not make are
never touched. The crash is staged by writing the database as the interrupted run would have
left it, with certvaultd stopped, and putting the key in the token with pkcs11-tool."""

import unittest

from harness import SOFTHSM_MODULE, VaultTestCase, run


class RecoveryTest(VaultTestCase):

    def pkcs11_write_key(self, material, key_id, label):
        run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.vault.label,
             "--login", "--pin", "env:CV_TEST_PIN", "--write-object", material.key_path,
             "--type", "privkey", "--id", key_id, "--label", label],
            env=dict(self.vault.env(), CV_TEST_PIN=self.vault.pin))

    def restart_with(self, *statements):
        """Stops certvaultd, runs the SQL on its database, starts it; returns the new log."""
        self.assertEqual(self.vault.stop(), 0)
        for sql, args in statements:
            self.vault.sql(sql, args)
        self.vault.start()
        return self.vault.log()

    def bound_certificate(self, name, domain):
        m = self.material(name + "-v1", san=domain)
        st, _, body = self.vault.import_cert(name, m)
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("PUT", "/v1/services/%s-svc" % name, {
            "environment": "production", "domains": [domain]})
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("PUT", "/v1/services/%s-svc/certificate" % name,
                                         {"certificate": name})
        self.assertEqual(st, 200, body)

    def test_key_of_an_uncommitted_renewal_is_destroyed_and_others_kept(self):
        self.bound_certificate("rc-journal", "journal.example.com")
        st, _, cert = self.vault.request("GET", "/v1/certificates/rc-journal")
        # The interrupted renewal: its journal row and its key in the token, no version.
        orphan = self.material("rc-orphan", san="journal.example.com")
        orphan_id = "a1" * 16
        self.pkcs11_write_key(orphan, orphan_id, "rc-journal")
        # A key somebody else put in the token, which certvault must leave alone.
        stranger = self.material("rc-stranger", san="stranger.example.com")
        stranger_id = "b2" * 16
        self.pkcs11_write_key(stranger, stranger_id, "not-ours")
        before = self.vault.count_token_objects()
        log = self.restart_with(
            ("INSERT INTO key_journal (key_id, cert_id, created_at)"
             " SELECT ?, id, 0 FROM certificates WHERE name = 'rc-journal'",
             (bytes.fromhex(orphan_id),)))
        self.assertIn("1 new version(s) undone", log)
        objects = self.vault.token_objects()
        self.assertNotIn(orphan_id, objects)
        self.assertIn(stranger_id, objects)
        self.assertEqual(self.vault.count_token_objects(), before - 1)
        # The certificate is untouched, still version 1 and still usable for a renewal.
        st, _, after = self.vault.request("GET", "/v1/certificates/rc-journal")
        self.assertEqual((st, after["version"], after["key"]), (200, 1, cert["key"]))
        new = self.material("rc-journal-v2", san="journal.example.com")
        st, _, body = self.vault.request("POST", "/v1/certificates/rc-journal/renew",
                                         {"certificate": new.cert, "private_key": new.key})
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.sql("SELECT count(*) FROM key_journal"), [(0,)])

    def test_superseded_key_being_destroyed_is_finished(self):
        self.bound_certificate("rc-destroy", "destroy.example.com")
        new = self.material("rc-destroy-v2", san="destroy.example.com")
        st, _, body = self.vault.request("POST", "/v1/certificates/rc-destroy/renew",
                                         {"certificate": new.cert, "private_key": new.key})
        self.assertEqual(st, 200, body)
        st, _, versions = self.vault.request("GET", "/v1/certificates/rc-destroy/versions")
        old_id = versions["versions"][1]["key"]["pkcs11_uri"]
        self.assertTrue(versions["versions"][1]["key"]["in_token"])
        before = self.vault.count_token_objects()
        # Interrupted between the commit that marked the old key and its destruction.
        log = self.restart_with(
            ("UPDATE certificate_versions SET key_state = 1 WHERE cert_id ="
             " (SELECT id FROM certificates WHERE name = 'rc-destroy')", ()))
        self.assertIn("1 superseded key(s) destroyed", log)
        self.assertEqual(self.vault.count_token_objects(), before - 1)
        st, _, versions = self.vault.request("GET", "/v1/certificates/rc-destroy/versions")
        self.assertEqual(versions["versions"][1]["key"], {"in_token": False, "pkcs11_uri": None})
        self.assertTrue(versions["versions"][0]["key"]["in_token"])
        self.assertNotEqual(old_id, versions["versions"][0]["key"]["pkcs11_uri"])
        # A clean restart has nothing to recover.
        log = self.restart_with()
        self.assertNotIn("recovered", log)


if __name__ == "__main__":
    unittest.main()
