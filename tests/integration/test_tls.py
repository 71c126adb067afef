"""HTTPS for the API (interop): certvaultd serves a certificate of the vault whose key stays in
the token, checked with openssl s_client and curl; a renewal is served from the next handshake
on, without a restart; TLS 1.2 and 1.3; plain HTTP still answers; a certificate name that is
not in the vault stops the start with one clear line."""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import CERTVAULTD, Certvaultd, Material, run

PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", re.S)


def fingerprint(der):
    """SHA-256 as the API writes it: upper-case hex pairs joined by colons."""
    return ":".join("%02X" % b for b in hashlib.sha256(der).digest())


class TlsTest(unittest.TestCase):
    """One token and database; certvaultd restarted over them with the TLS settings naming
    one certificate or another. Certificates for localhost: root CA -> intermediate -> leaf,
    the leaf imported with the intermediate as its chain."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cv-tls-")
        cls.vault = Certvaultd(cls.tmp).start()
        cls.root = Material(cls.tmp, "root", key="p256", cn="certvault test root", ca=True)
        cls.inter = Material(cls.tmp, "inter", key="p256", cn="certvault test intermediate",
                             ca=True, issuer=cls.root)
        cls.leaves = {}
        for key in ("rsa2048", "p256", "ed25519"):
            m = cls.leaf("web-" + key, key)
            st, _, body = cls.vault.import_cert("web-" + key, m, chain=cls.inter.cert)
            assert st == 201, body
            cls.leaves[key] = m
        cls.vault.stop()
        cls.https_port = None

    @classmethod
    def tearDownClass(cls):
        rc = cls.vault.stop()
        log = cls.vault.log()
        if rc not in (0, None) or "ERROR: AddressSanitizer" in log or "runtime error:" in log:
            raise AssertionError("certvaultd exited %s:\n%s" % (rc, log[-4000:]))
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def leaf(cls, name, key):
        return Material(cls.tmp, name, key=key, cn="localhost", san="localhost",
                        issuer=cls.inter)

    def stop_cleanly(self):
        """Stops certvaultd; it must exit 0 with no sanitizer report in its log."""
        running = self.vault.proc is not None
        rc = self.vault.stop()
        log = self.vault.log() if running else ""
        self.assertIn(rc, (0, None), log[-4000:])
        self.assertNotIn("ERROR: AddressSanitizer", log)
        self.assertNotIn("runtime error:", log)

    def start_https(self, name):
        """Restarts certvaultd serving certificate name over HTTPS (any free port)."""
        self.stop_cleanly()
        self.vault.start({"CERTVAULT_SERVER_TLS_CERTIFICATE": name,
                          "CERTVAULT_SERVER_TLS_PORT": "0"})
        # The harness returns once the HTTP listener's line is logged; the HTTPS line may
        # come just after it.
        pattern = (r"listening on https://127\.0\.0\.1:(\d+) serving certificate \"%s\""
                   % re.escape(name))
        deadline = time.time() + 10
        m = re.search(pattern, self.vault.log())
        while m is None and time.time() < deadline and self.vault.proc.poll() is None:
            time.sleep(0.05)
            m = re.search(pattern, self.vault.log())
        self.assertIsNotNone(m, self.vault.log())
        self.https_port = int(m.group(1))

    def s_client(self, *options):
        """The chain the listener serves to openssl s_client, as DER, leaf first; the
        handshake must verify up to the root for the name localhost."""
        p = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.https_port,
             "-servername", "localhost", "-showcerts", "-CAfile", self.root.cert_path,
             "-verify_return_error", "-verify_hostname", "localhost"] + list(options),
            input=b"", capture_output=True, timeout=60)
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out + p.stderr.decode(errors="replace"))
        self.assertIn("Verify return code: 0 (ok)", out)
        return out, [base64.b64decode(b) for b in PEM_CERT.findall(out)]

    def served(self, *options):
        """The SHA-256 fingerprint of the certificate served, and the chain's length."""
        _, chain = self.s_client(*options)
        return fingerprint(chain[0]), len(chain)

    def handshake(self, *options):
        """The protocol and the signature type of the server's handshake signature, as
        openssl s_client reports them."""
        out, _ = self.s_client(*options)
        protocol = re.search(r"^New, (TLSv1\.[23]), Cipher is", out, re.M)
        sigtype = re.search(r"^Peer signature type:\s*(\S+)", out, re.M)
        self.assertTrue(protocol and sigtype, out)
        return protocol.group(1), sigtype.group(1).lower()

    def curl(self, method, path, body=None):
        """An authenticated API call over HTTPS, verified against the root for localhost."""
        cmd = ["curl", "-sS", "--fail-with-body", "--cacert", self.root.cert_path,
               "--resolve", "localhost:%d:127.0.0.1" % self.https_port,
               "-H", "Authorization: Bearer " + self.vault.admin_token,
               "-X", method, "-w", "\n%{http_code}"]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        cmd.append("https://localhost:%d%s" % (self.https_port, path))
        p = subprocess.run(cmd, input=json.dumps(body).encode() if body is not None else b"",
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        text, status = p.stdout.decode().rsplit("\n", 1)
        return int(status), json.loads(text) if text else None

    def renew_over_https(self, name, key):
        """A service uses the certificate; a renewal with a new key, all over HTTPS.
        Returns the new material."""
        svc = "svc-" + name
        st, body = self.curl("PUT", "/v1/services/" + svc,
                             {"environment": "production", "domains": ["localhost"]})
        self.assertIn(st, (200, 201), body)
        st, body = self.curl("PUT", "/v1/services/%s/certificate" % svc, {"certificate": name})
        self.assertEqual(st, 200, body)
        st, body = self.curl("GET", "/v1/certificates/" + name)
        new = self.leaf(name + "-v%d" % (body["version"] + 1), key)
        st, body = self.curl("POST", "/v1/certificates/%s/renew" % name,
                             {"certificate": new.cert, "private_key": new.key,
                              "chain": self.inter.cert, "version": body["version"]})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["fingerprints"]["sha256"], fingerprint(new.cert_der()), body)
        self.leaves[key] = new
        return new

    def check_serves(self, name, key, tls_options):
        """Serves the vault's certificate with its chain on every TLS option set, answers an
        authenticated call, and after a renewal serves the new one on the next handshake."""
        self.start_https(name)
        old = self.leaves[key]
        st, body = self.curl("GET", "/v1/certificates/" + name)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["fingerprints"]["sha256"], fingerprint(old.cert_der()))
        for opts, expected in tls_options:
            with self.subTest(tls=" ".join(opts)):
                self.assertEqual(self.served(*opts), (fingerprint(old.cert_der()), 2))
                self.assertEqual(self.handshake(*opts), expected)

        new = self.renew_over_https(name, key)
        for opts, _ in tls_options:
            with self.subTest(tls=" ".join(opts), renewed=True):
                self.assertEqual(self.served(*opts), (fingerprint(new.cert_der()), 2))
        st, body = self.curl("GET", "/v1/certificates/" + name)
        self.assertEqual(body["fingerprints"]["sha256"], fingerprint(new.cert_der()))
        self.assertIn('https now serves "%s" version %d' % (name, body["version"]),
                      self.vault.log())
        # Plain HTTP on 127.0.0.1 still answers.
        st, _, health = self.vault.request("GET", "/v1/health", token=None)
        self.assertEqual(st, 200, health)
        return body

    def test_rsa_pkcs1_and_pss_on_tls12_and_tls13(self):
        self.check_serves("web-rsa2048", "rsa2048", [
            (("-tls1_3",), ("TLSv1.3", "rsa-pss")),
            (("-tls1_2", "-sigalgs", "RSA-PSS+SHA256"), ("TLSv1.2", "rsa-pss")),
            (("-tls1_2", "-sigalgs", "RSA+SHA256"), ("TLSv1.2", "rsa")),
            (("-tls1_2", "-sigalgs", "RSA+SHA512"), ("TLSv1.2", "rsa")),
        ])

    def test_p256_on_tls12_and_tls13(self):
        self.check_serves("web-p256", "p256", [
            (("-tls1_3",), ("TLSv1.3", "ecdsa")),
            (("-tls1_2", "-sigalgs", "ECDSA+SHA256"), ("TLSv1.2", "ecdsa")),
            (("-tls1_2", "-sigalgs", "ECDSA+SHA384"), ("TLSv1.2", "ecdsa")),
        ])

    def test_ed25519_on_tls12_and_tls13(self):
        self.check_serves("web-ed25519", "ed25519", [
            (("-tls1_3",), ("TLSv1.3", "ed25519")),
            (("-tls1_2", "-sigalgs", "ed25519"), ("TLSv1.2", "ed25519")),
        ])

    def test_handshakes_while_renewing(self):
        """Handshakes on other connections keep succeeding while renewals switch the
        identity under them, each serving one whole version: the old or the new."""
        self.start_https("web-p256")
        versions = {fingerprint(self.leaves["p256"].cert_der())}
        seen, failures, done = [], [], threading.Event()

        def handshakes():
            while not done.is_set():
                try:
                    seen.append(self.served("-tls1_3")[0])
                except AssertionError as e:  # reported below, from the test's thread
                    failures.append(str(e))

        workers = [threading.Thread(target=handshakes) for _ in range(3)]
        for w in workers:
            w.start()
        try:
            for _ in range(3):
                time.sleep(0.3)
                versions.add(fingerprint(self.renew_over_https("web-p256", "p256").cert_der()))
            time.sleep(0.3)
        finally:
            done.set()
            for w in workers:
                w.join()
        self.assertEqual(failures, [])
        self.assertTrue(set(seen) <= versions, (seen, versions))
        self.assertEqual(seen[-1], fingerprint(self.leaves["p256"].cert_der()))
        self.assertGreaterEqual(len(set(seen)), 3)

    def test_key_stays_in_the_token(self):
        """The served key's object is sensitive and not extractable; no key bytes anywhere
        but the token: the database holds no private key."""
        self.start_https("web-rsa2048")
        st, body = self.curl("GET", "/v1/certificates/web-rsa2048")
        key_id = body["key"]["id"]
        listing = self.vault.token_objects()
        block = None
        for b in re.split(r"\n(?=\S)", listing):
            if b.startswith("Private Key Object") and re.search(r"ID:\s*" + key_id, b):
                block = b
        self.assertIsNotNone(block, listing)
        access = re.search(r"Access:\s*(.*)", block).group(1)
        self.assertIn("sensitive", access)
        self.assertNotIn("extractable,", access.replace("never extractable", ""))
        with open(self.vault.db, "rb") as f:
            self.assertNotIn(b"PRIVATE KEY", f.read())

    def test_served_certificate_cannot_be_deleted(self):
        """No service uses it, but its key signs every handshake: delete is refused, and
        HTTPS goes on serving it."""
        self.stop_cleanly()
        self.vault.start()
        m = self.leaf("web-served", "p256")
        st, _, body = self.vault.import_cert("web-served", m, chain=self.inter.cert)
        self.assertEqual(st, 201, body)
        self.start_https("web-served")
        st, _, body = self.vault.request("DELETE", "/v1/certificates/web-served?confirm=delete")
        self.assertEqual((st, body["error"]["code"]), (409, "in_use"), body)
        self.assertIn("server.tls_certificate", body["error"]["message"])
        self.assertEqual(self.served()[0], fingerprint(m.cert_der()))
        # Served by another name, it can go.
        self.start_https("web-p256")
        st, _, body = self.vault.request("DELETE", "/v1/certificates/web-served?confirm=delete")
        self.assertEqual((st, body["deleted"]), (200, True), body)

    def test_served_certificate_changes_only_by_admin(self):
        """Issue 16 item 8: renew or replace of the certificate the listener serves decides
        which key every HTTPS client trusts, so an operator is refused (403, saying why)
        with nothing changed, while an operator may still replace any other certificate
        and an admin the served one."""
        self.stop_cleanly()
        self.vault.start()
        m = self.leaf("web-op", "p256")
        st, _, body = self.vault.import_cert("web-op", m, chain=self.inter.cert)
        self.assertEqual(st, 201, body)
        st, _, svc = self.vault.request("PUT", "/v1/services/svc-web-op", {
            "environment": "production", "domains": ["localhost"]})
        self.assertIn(st, (200, 201), svc)
        st, _, svc = self.vault.request("PUT", "/v1/services/svc-web-op/certificate",
                                        {"certificate": "web-op"})
        self.assertEqual(st, 200, svc)
        st, _, tok = self.vault.request("POST", "/v1/tokens",
                                        {"name": "deploy-op", "role": "operator"})
        self.assertEqual(st, 201, tok)
        operator = tok["token"]
        self.start_https("web-op")
        keys_before = self.vault.count_token_objects()
        for verb in ("renew", "replace"):
            with self.subTest(verb=verb):
                new = self.leaf("web-op-" + verb, "p256")
                st, _, body = self.vault.request(
                    "POST", "/v1/certificates/web-op/" + verb,
                    {"certificate": new.cert, "private_key": new.key,
                     "chain": self.inter.cert}, token=operator)
                self.assertEqual((st, body["error"]["code"]), (403, "forbidden"), body)
                self.assertIn("server.tls_certificate", body["error"]["message"])
                self.assertIn("only an admin", body["error"]["message"])
        self.assertEqual(self.vault.count_token_objects(), keys_before)
        self.assertEqual(self.served()[0], fingerprint(m.cert_der()))
        st, _, audit = self.vault.request("GET", "/v1/audit?action=certificate.replace"
                                          "&target=web-op")
        self.assertEqual(st, 200, audit)
        self.assertIn("forbidden", [i.get("error") for i in audit["items"]], audit)
        # The rule is the served certificate's, not the route's.
        other = self.leaf("web-other", "p256")
        st, _, body = self.vault.import_cert("web-other", other, chain=self.inter.cert)
        self.assertEqual(st, 201, body)
        other2 = self.leaf("web-other-2", "p256")
        st, _, body = self.vault.request("POST", "/v1/certificates/web-other/replace", {
            "certificate": other2.cert, "private_key": other2.key, "chain": self.inter.cert},
            token=operator)
        self.assertEqual(st, 200, body)
        # An admin may.
        new = self.leaf("web-op-admin", "p256")
        st, _, body = self.vault.request("POST", "/v1/certificates/web-op/replace", {
            "certificate": new.cert, "private_key": new.key, "chain": self.inter.cert})
        self.assertEqual(st, 200, body)
        self.assertEqual(self.served()[0], fingerprint(new.cert_der()))

    def test_unknown_certificate_refuses_to_start(self):
        self.stop_cleanly()
        p = subprocess.run([CERTVAULTD], env=self.vault.env({
            "CERTVAULT_SERVER_TLS_CERTIFICATE": "no-such-cert",
            "CERTVAULT_SERVER_TLS_PORT": "0"}), capture_output=True, timeout=60)
        err = p.stderr.decode()
        self.assertNotEqual(p.returncode, 0, err)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, err)
        self.assertIn("server.tls_certificate \"no-such-cert\": no certificate of that name "
                      "in the vault", lines[0])
        self.assertNotIn("listening", err)


if __name__ == "__main__":
    unittest.main()
