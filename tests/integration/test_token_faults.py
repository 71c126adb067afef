"""Token faults: the token taken away under a running certvaultd (its SoftHSM directory moved
away and back) and start-up with a wrong PIN, a missing module or a missing token."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import CERTVAULTD, Certvaultd, Material, VaultTestCase, run


class TokenAway(VaultTestCase):

    def health(self):
        return self.vault.request("GET", "/v1/health", token=None)

    def wait_health(self, status, seconds=5):
        deadline = time.time() + seconds
        while True:
            st, _, body = self.health()
            if st == status or time.time() > deadline:
                return st, body
            time.sleep(0.1)

    def metric(self, name):
        st, _, text = self.vault.request("GET", "/metrics")
        self.assertEqual(st, 200)
        for line in text.decode().splitlines():
            if line.startswith(name + "{node="):  # every sample names the node
                return line.split()[1]
        self.fail("no %s in /metrics" % name)

    def test_token_away_and_back(self):
        v = self.vault
        before = self.material("before", key="p256", san="before.example")
        st, _, body = v.import_cert("before", before)
        self.assertEqual(st, 201, body)
        self.assertEqual(self.health()[0], 200)
        self.assertEqual(self.metric("certvault_token_up"), "1")

        away = v.token_dir + ".away"
        os.rename(v.token_dir, away)
        try:
            st, body = self.wait_health(503, seconds=2)
            self.assertEqual(st, 503, body)
            self.assertEqual(body["token"]["state"], "unavailable", body)
            self.assertTrue(body["token"]["error"], body)
            self.assertTrue(body["database"]["ok"], body)
            self.assertEqual(self.metric("certvault_token_up"), "0")

            # Writes that need the token: 503 token_unavailable, and nothing changed.
            during = self.material("during", key="p256")
            self.assertError(v.import_cert("during", during), 503, "token_unavailable")
            self.assertEqual(v.request("GET", "/v1/certificates/during")[0], 404)
            renewal = self.material("before-2", key="p256", san="before.example")
            self.assertError(v.request("POST", "/v1/certificates/before/replace",
                                       {"certificate": renewal.cert,
                                        "private_key": renewal.key, "version": 1}),
                             503, "token_unavailable")
            self.assertError(v.request("DELETE", "/v1/certificates/before?confirm=delete"),
                             503, "token_unavailable")

            # Metadata reads keep working from the database.
            st, _, body = v.request("GET", "/v1/certificates")
            self.assertEqual(st, 200, body)
            self.assertEqual([c["name"] for c in body["items"]], ["before"], body)
            st, _, body = v.request("GET", "/v1/certificates/before")
            self.assertEqual(st, 200, body)
            self.assertEqual(body.get("version", 1), 1, body)
            st, _, pem = v.request("GET", "/v1/certificates/before/export?format=pem")
            self.assertEqual(st, 200, pem)
            # The inventory reports what the token says now: it cannot say, so 503.
            self.assertError(v.request("GET", "/v1/inventory"), 503, "token_unavailable")
            # Every change's audit record is keyed in the token: a change that needs no key
            # is refused too, rather than made without its record.
            msg = self.assertError(v.request("PUT", "/v1/services/during", {
                "environment": "production", "domains": ["during.example"]}),
                503, "token_unavailable")
            self.assertIn("audit record", msg)
            self.assertEqual(v.request("GET", "/v1/services/during")[0], 404)
            # The trail reads from the database; verify cannot check keyed records: 503.
            st, _, body = v.request("GET", "/v1/audit?limit=1000")
            self.assertEqual(st, 200, body)
            seen = len(body["items"])
            self.assertError(v.request("GET", "/v1/audit/verify"), 503, "token_unavailable")
        finally:
            os.rename(away, v.token_dir)

        # Back: recovery without a restart, within a few seconds.
        st, body = self.wait_health(200, seconds=5)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["token"]["state"], "ok", body)
        self.assertTrue(body["token"]["logged_in"], body)
        self.assertEqual(self.metric("certvault_token_up"), "1")

        # Refusals during the outage could not be keyed: they are in the log, not the trail,
        # and the chain verifies as it was.
        self.assertIn("could not be written", v.log())
        st, _, body = v.request("GET", "/v1/audit/verify")
        self.assertEqual((st, body["intact"], body["records"]), (200, True, seen), body)

        after = self.material("after", key="p256")
        st, _, body = v.import_cert("after", after)
        self.assertEqual(st, 201, body)
        # Its key is a real token object, and the public key certvault exports is its own.
        st, _, pub = v.request("GET", "/v1/certificates/after/export?format=public-key")
        self.assertEqual(st, 200, pub)
        want = run(["openssl", "pkey", "-in", after.key_path, "-pubout"]).stdout
        self.assertEqual(pub.strip(), want.strip())
        objects = v.token_objects()
        self.assertIn("label:      after", objects)
        self.assertNotIn("label:      during", objects)

        # The key imported before the outage is still known and usable.
        st, _, inv = v.request("GET", "/v1/inventory?format=json")
        self.assertEqual(st, 200, inv)
        items = {it["name"]: it for it in inv["items"]}
        self.assertTrue(items["before"]["key_present"], items["before"])
        self.assertTrue(items["after"]["key_present"], items["after"])
        st, _, body = v.request("POST", "/v1/certificates/before/replace",
                                {"certificate": renewal.cert, "private_key": renewal.key,
                                 "version": 1})
        self.assertEqual(st, 200, body)
        st, _, body = v.request("DELETE", "/v1/certificates/after?confirm=delete")
        self.assertIn(st, (200, 204), body)
        self.assertNotIn("label:      after", v.token_objects())


class StartupFailures(unittest.TestCase):
    """Each refusal is one line on stderr naming the problem, and a non-zero exit."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cv-it-")
        cls.vault = Certvaultd(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def refused(self, extra=None):
        p = subprocess.run([CERTVAULTD], env=self.vault.env(extra), capture_output=True,
                           timeout=30)
        err = p.stderr.decode(errors="replace")
        self.assertNotEqual(p.returncode, 0, err)
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertNotIn(self.vault.pin, err)
        self.assertNotIn("listening", err)
        return lines[0]

    def test_wrong_pin(self):
        wrong = "wrong-" + self.vault.pin[::-1]
        pin_file = os.path.join(self.tmp, "wrong.pin")
        fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, (wrong + "\n").encode())
        os.close(fd)
        line = self.refused({"CERTVAULT_TOKEN_PIN_FILE": pin_file})
        self.assertIn("PIN", line)
        self.assertIn("CKR_PIN_INCORRECT", line)
        self.assertIn('"cv-test"', line)
        self.assertNotIn(wrong, line)

    def test_missing_module(self):
        line = self.refused({"CERTVAULT_TOKEN_MODULE": "/nonexistent/libpkcs11.so"})
        self.assertIn("PKCS#11 module", line)
        self.assertIn("/nonexistent/libpkcs11.so", line)

    def test_missing_token(self):
        line = self.refused({"CERTVAULT_TOKEN_LABEL": "no-such-token"})
        self.assertIn('no PKCS#11 token labelled "no-such-token"', line)
        # The tokens that are there, so a typo shows.
        self.assertIn('"cv-test"', line)

    def test_token_directory_gone(self):
        away = self.vault.token_dir + ".gone"
        os.rename(self.vault.token_dir, away)
        try:
            line = self.refused()
        finally:
            os.rename(away, self.vault.token_dir)
        self.assertIn("PKCS#11", line)


if __name__ == "__main__":
    unittest.main()
