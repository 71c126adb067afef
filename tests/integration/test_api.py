"""Integration tests: every route and every refusal of the import/list/details/export/delete
slice, against a real certvaultd, a fresh SoftHSM token and a fresh SQLite file."""

import re
import socket
import subprocess
import time
import unittest

import pgstore
from harness import CERTVAULTD, VaultTestCase, b64, run

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")


class ImportTest(VaultTestCase):

    def test_import_each_key_type_shows_details(self):
        for key, desc, kty, bits, curve in [
                ("rsa2048", "RSA 2048", "RSA", 2048, None),
                ("rsa4096", "RSA 4096", "RSA", 4096, None),
                ("p256", "ECDSA P-256", "EC", 256, "P-256"),
                ("p384", "ECDSA P-384", "EC", 384, "P-384"),
                ("p521", "ECDSA P-521", "EC", 521, "P-521"),
                ("ed25519", "Ed25519", "OKP", 256, "Ed25519")]:
            with self.subTest(key=key):
                name = "kt-" + key
                m = self.material(name, key=key, cn=key + ".example.com",
                                  san="%s.example.com,*.%s.example.org" % (key, key),
                                  not_after=90 * 86400 + 3600)
                st, hdrs, body = self.vault.import_cert(name, m, description="for " + key)
                self.assertEqual(st, 201, body)
                self.assertEqual(body["name"], name)
                self.assertEqual(body["description"], "for " + key)
                self.assertEqual(body["domains"],
                                 [key + ".example.com", "*.%s.example.org" % key])
                self.assertEqual(body["public_key"]["description"], desc)
                self.assertEqual(body["public_key"]["type"], kty)
                self.assertEqual(body["public_key"]["bits"], bits)
                self.assertEqual(body["public_key"]["curve"], curve)
                self.assertEqual(body["status"], "valid")
                self.assertEqual(body["expires_in_days"], 90)
                for f in ("valid_from", "valid_to", "created_at", "updated_at"):
                    self.assertRegex(body[f], RFC3339)
                self.assertEqual(body["used_by"], [])
                uri = body["key"]["pkcs11_uri"]
                self.assertTrue(uri.startswith("pkcs11:"), uri)
                self.assertIn("object=" + name, uri)
                self.assertIn("type=private", uri)
                self.assertNotIn(self.vault.pin, uri)
                fp = run(["openssl", "x509", "-in", m.cert_path, "-noout", "-fingerprint",
                          "-sha256"]).stdout.decode().strip().split("=", 1)[1]
                self.assertEqual(body["fingerprints"]["sha256"], fp)
                serial = run(["openssl", "x509", "-in", m.cert_path, "-noout",
                              "-serial"]).stdout.decode().strip().split("=", 1)[1]
                self.assertEqual(body["serial_number"].replace(":", "").lstrip("0"),
                                 serial.lstrip("0"))
                self.assertEqual(body["subject"], "CN=%s.example.com" % key)
                self.assertEqual(body["issuer"], body["subject"])
                # No revocation source for a self-signed certificate: let in, saying so.
                rev = body.pop("revocation")
                self.assertEqual(rev["status"], "not_checked")
                self.assertRegex(rev["checked_at"], RFC3339)
                # The same view comes back from GET, which keeps the import's revocation
                # check with its time.
                st, _, again = self.vault.request("GET", "/v1/certificates/" + name)
                self.assertEqual(st, 200)
                self.assertEqual(again.pop("revocation"), rev)
                self.assertEqual(again, body)

    def test_encodings_base64_der_and_base64_pem(self):
        m = self.material("enc-der", key="p256", san="der.example.com")
        st, _, body = self.vault.import_cert(
            "enc-der", m, encoding="base64",
            certificate=b64(m.cert_der()), private_key=b64(m.key_der()))
        self.assertEqual(st, 201, body)
        self.assertEqual(body["domains"], ["der.example.com"])
        m2 = self.material("enc-b64pem", key="rsa2048", san="b64pem.example.com")
        st, _, body = self.vault.import_cert(
            "enc-b64pem", m2, encoding="base64pem",
            certificate=b64(m2.cert), private_key=b64(m2.key))
        self.assertEqual(st, 201, body)
        # Base64 with line breaks, as pasted from a terminal, is fine too.
        m3 = self.material("enc-wrapped", key="p256", san="wrapped.example.com")
        wrapped = b64(m3.cert_der())
        wrapped = "\n".join(wrapped[i:i + 64] for i in range(0, len(wrapped), 64))
        st, _, body = self.vault.import_cert("enc-wrapped", m3, encoding="base64",
                                             certificate=wrapped,
                                             private_key=b64(m3.key_der()))
        self.assertEqual(st, 201, body)

    def test_key_formats(self):
        for fmt, key in (("pkcs1", "rsa2048"), ("sec1", "p384"), ("pkcs8", "ed25519")):
            with self.subTest(fmt=fmt):
                m = self.material("fmt-" + fmt, key=key, key_format=fmt, san="f.example.com")
                st, _, body = self.vault.import_cert("fmt-" + fmt, m)
                self.assertEqual(st, 201, body)
        m = self.material("fmt-enc", key="p256", key_format="pkcs8enc", password="s3cret pw",
                          san="enc.example.com")
        self.assertIn("ENCRYPTED PRIVATE KEY", m.key)
        before = self.vault.count_token_objects()
        msg = self.assertError(self.vault.import_cert("fmt-enc", m, password="wrong"),
                               422, "bad_password")
        self.assertNotIn("wrong", msg)
        self.assertError(self.vault.import_cert("fmt-enc", m), 422, "bad_password")
        self.assertEqual(self.vault.count_token_objects(), before)
        st, _, body = self.vault.import_cert("fmt-enc", m, password="s3cret pw")
        self.assertEqual(st, 201, body)

    def test_chain(self):
        ca = self.material("chain-root", key="p384", cn="Test Root", ca=True,
                           not_after=3650 * 86400)
        inter = self.material("chain-int", key="p256", cn="Test Intermediate", ca=True,
                              issuer=ca, not_after=1000 * 86400)
        leaf = self.material("chain-leaf", key="p256", san="leaf.example.com", issuer=inter)
        st, _, body = self.vault.import_cert("chain-leaf", leaf, chain=inter.cert + ca.cert)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["chain_length"], 2)
        self.assertEqual(body["issuer"], "CN=Test Intermediate")
        st, hdrs, pem = self.vault.request("GET", "/v1/certificates/chain-leaf/export?format=chain")
        self.assertEqual(st, 200)
        text = pem.decode()
        self.assertEqual(text.count("BEGIN CERTIFICATE"), 3)
        self.assertTrue(text.startswith(leaf.cert.strip().splitlines()[0]))
        self.assertIn(inter.cert.strip(), text)
        # openssl verifies the exported chain up to the root.
        with open(self.tmp + "/exported-chain.pem", "w") as f:
            f.write(text)
        run(["openssl", "verify", "-CAfile", ca.cert_path, "-untrusted",
             self.tmp + "/exported-chain.pem", leaf.cert_path])
        # A leaf in the chain is refused.
        other = self.material("chain-notca", key="p256", san="x.example.com")
        self.assertError(self.vault.import_cert("chain-bad", leaf, chain=other.cert),
                         422, "bad_chain")


class RefusalTest(VaultTestCase):
    """Every refusal: a clear code and message, and nothing created anywhere."""

    def assertNothingCreated(self, name, objects_before):
        st, _, _ = self.vault.request("GET", "/v1/certificates/" + name)
        self.assertEqual(st, 404)
        st, _, body = self.vault.request("GET", "/v1/certificates/summary")
        self.assertEqual(body["total"], self.total)
        self.assertEqual(self.vault.count_token_objects(), objects_before)
        self.assertEqual(self.vault.count_token_objects("Public Key Object"), objects_before)

    def setUp(self):
        st, _, body = self.vault.request("GET", "/v1/certificates/summary")
        self.total = body["total"]

    def test_each_refusal(self):
        good = self.material("good", key="p256", san="good.example.com")
        rsa = self.material("other", key="rsa2048", san="good.example.com")
        cases = [
            ("bad_name", {"name": "bad_name"}, 400, "invalid_name"),
            ("dots", {"name": "a.b"}, 400, "invalid_name"),
            ("long", {"name": "a" * 65}, 400, "invalid_name"),
            ("reserved", {"name": "summary"}, 400, "invalid_name"),
            ("garbage-cert", {"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n"
                              "-----END CERTIFICATE-----\n"}, 400, "bad_encoding"),
            ("not-pem", {"certificate": "hello"}, 400, "bad_encoding"),
            ("garbage-key", {"private_key": "not a key"}, 400, "bad_encoding"),
            ("bad-b64", {"encoding": "base64", "certificate": "!!!!",
                         "private_key": b64(good.key_der())}, 400, "bad_encoding"),
            ("bad-encoding-name", {"encoding": "hex"}, 400, "bad_request"),
            ("mismatch", {"private_key": rsa.key}, 422, "key_mismatch"),
        ]
        for name, override, status, code in cases:
            with self.subTest(case=name):
                before = self.vault.count_token_objects()
                body = {"name": name, "certificate": good.cert, "private_key": good.key}
                body.update(override)
                self.assertError(self.vault.request("POST", "/v1/certificates", body),
                                 status, code)
                self.assertNothingCreated(body["name"] if code != "invalid_name" else "x",
                                          before)
        dated = [
            ("expired", dict(not_before=-86400 * 10, not_after=-1), "expired"),
            ("upcoming", dict(not_before=3600, not_after=86400 * 10), "not_yet_valid"),
            ("rsa1024", dict(key="rsa1024"), "unsupported_key"),
            ("k256", dict(key="secp256k1"), "unsupported_key"),
            ("ed448", dict(key="ed448"), "unsupported_key"),
            ("sha1", dict(md="sha1", key="rsa2048"), "weak_signature"),
            ("md5", dict(md="md5", key="rsa2048"), "weak_signature"),
        ]
        for name, kw, code in dated:
            with self.subTest(case=name):
                kw.setdefault("key", "p256")
                m = self.material("r-" + name, san="r.example.com", **kw)
                before = self.vault.count_token_objects()
                msg = self.assertError(self.vault.import_cert(name, m), 422, code)
                self.assertNotIn("BEGIN", msg)
                self.assertNothingCreated(name, before)

    def test_name_taken(self):
        m = self.material("taken", key="p256", san="taken.example.com")
        st, _, body = self.vault.import_cert("taken", m)
        self.assertEqual(st, 201, body)
        self.total += 1
        before = self.vault.count_token_objects()
        m2 = self.material("taken2", key="p256", san="taken2.example.com")
        msg = self.assertError(self.vault.import_cert("taken", m2), 409, "name_taken")
        self.assertIn("taken", msg)
        self.assertEqual(self.vault.count_token_objects(), before)
        st, _, body = self.vault.request("GET", "/v1/certificates/taken")
        self.assertEqual(body["domains"], ["taken.example.com"])

    def test_malformed_requests(self):
        m = self.material("malformed", key="p256", san="m.example.com")
        v = self.vault
        self.assertError(v.request("POST", "/v1/certificates", raw=b"{",
                                   headers={"Content-Type": "application/json"}),
                         400, "bad_request")
        self.assertError(v.request("POST", "/v1/certificates", raw=b"[]",
                                   headers={"Content-Type": "application/json"}),
                         400, "bad_request")
        dup = ('{"name":"a","name":"b","certificate":%s,"private_key":%s}' % (
            __import__("json").dumps(m.cert), __import__("json").dumps(m.key))).encode()
        self.assertError(v.request("POST", "/v1/certificates", raw=dup,
                                   headers={"Content-Type": "application/json"}),
                         400, "bad_request")
        self.assertError(v.request("POST", "/v1/certificates", raw=b'{"name":"x"}',
                                   headers={"Content-Type": "text/plain"}),
                         415, "unsupported_media_type")
        # (A certificate without "private_key" is a public certificate: test_environments.)
        self.assertError(v.request("POST", "/v1/certificates",
                                   {"name": "x", "private_key": m.key}), 400, "bad_request")
        self.assertError(v.request("POST", "/v1/certificates",
                                   {"name": "x", "certificate": m.cert, "private_key": m.key,
                                    "colour": "red"}), 400, "bad_request")
        self.assertError(v.request("POST", "/v1/certificates",
                                   {"name": 7, "certificate": m.cert, "private_key": m.key}),
                         400, "bad_request")
        big = b'{"name":"x","certificate":"' + b"A" * (300 * 1024) + b'"}'
        self.assertError(v.request("POST", "/v1/certificates", raw=big,
                                   headers={"Content-Type": "application/json"}),
                         413, "body_too_large")
        self.assertError(v.request("GET", "/v1/nothing-here"), 404, "not_found")
        self.assertError(v.request("PUT", "/v1/certificates"), 405, "method_not_allowed")
        self.assertError(v.request("GET", "/v1/certificates?colour=red"), 400, "bad_request")


class WeakSignatureAllowedTest(VaultTestCase):
    settings = {"CERTVAULT_POLICY_ALLOW_WEAK_SIGNATURES": "true"}

    def test_sha1_accepted_when_configured(self):
        m = self.material("sha1ok", key="rsa2048", md="sha1", san="old.example.com")
        st, _, body = self.vault.import_cert("sha1ok", m)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["signature_algorithm"], "sha1WithRSAEncryption")


class ListTest(VaultTestCase):
    settings = {"CERTVAULT_POLICY_EXPIRES_SOON_DAYS": "20"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from harness import Material
        cls.names = []
        for i in range(7):
            name = "list-%02d" % i
            m = Material(cls.tmp, name, key="p256", san="host%d.list.example.com" % i,
                         not_after=(10 if i < 2 else 200) * 86400)
            st, _, body = cls.vault.import_cert(name, m)
            assert st == 201, body
            cls.names.append(name)
        m = Material(cls.tmp, "short", key="p256", san="short.example.net", not_after=4)
        st, _, body = cls.vault.import_cert("short-lived", m)
        assert st == 201, body
        cls.short_expiry = time.time() + 4

    def test_paging_walks_every_row_once(self):
        seen, cursor, pages = [], None, 0
        while True:
            path = "/v1/certificates?limit=3" + ("&cursor=" + cursor if cursor else "")
            st, _, body = self.vault.request("GET", path)
            self.assertEqual(st, 200, body)
            self.assertLessEqual(len(body["items"]), 3)
            seen += [it["name"] for it in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(seen, sorted(self.names + ["short-lived"]))
        self.assertEqual(pages, 3)
        item = next(it for it in body["items"] if it["name"] == "short-lived") \
            if any(it["name"] == "short-lived" for it in body["items"]) else None
        self.assertIsNotNone(item)
        self.assertEqual(item["domain"], "short.example.net")
        self.assertEqual(item["used_by"], [])
        self.assertRegex(item["updated_at"], RFC3339)

    def test_filters_and_summary(self):
        st, _, body = self.vault.request("GET", "/v1/certificates?status=expires_soon")
        names = [it["name"] for it in body["items"]]
        self.assertIn("list-00", names)
        self.assertIn("list-01", names)
        self.assertNotIn("list-05", names)
        st, _, body = self.vault.request("GET", "/v1/certificates?status=valid&limit=1000")
        self.assertEqual(sorted(it["name"] for it in body["items"]),
                         ["list-02", "list-03", "list-04", "list-05", "list-06"])
        st, _, body = self.vault.request("GET", "/v1/certificates?q=HOST3.LIST")
        self.assertEqual([it["name"] for it in body["items"]], ["list-03"])
        st, _, body = self.vault.request("GET", "/v1/certificates?q=list-0")
        self.assertEqual(len(body["items"]), 7)
        st, _, body = self.vault.request("GET", "/v1/certificates?q=%25")
        self.assertEqual(body["items"], [])
        self.assertError(self.vault.request("GET", "/v1/certificates?status=fine"),
                         400, "bad_request")
        self.assertError(self.vault.request("GET", "/v1/certificates?limit=0"),
                         400, "bad_request")
        self.assertError(self.vault.request("GET", "/v1/certificates?limit=abc"),
                         400, "bad_request")
        # Time passes: the short-lived certificate expires while stored.
        time.sleep(max(0, self.short_expiry - time.time()) + 1.5)
        st, _, body = self.vault.request("GET", "/v1/certificates?status=expired")
        self.assertEqual([it["name"] for it in body["items"]], ["short-lived"])
        self.assertEqual(body["items"][0]["status"], "expired")
        st, _, s = self.vault.request("GET", "/v1/certificates/summary")
        self.assertEqual(st, 200)
        self.assertEqual(s, {"total": 8, "in_use": 0, "not_in_use": 8, "valid": 5,
                             "expires_soon": 2, "expired": 1, "upcoming": 0, "pending": 0})
        st, _, d = self.vault.request("GET", "/v1/certificates/short-lived")
        self.assertEqual(d["status"], "expired")
        self.assertEqual(d["expires_in_days"], -1)


class ExportEditDeleteTest(VaultTestCase):

    def test_export_formats(self):
        m = self.material("exp", key="rsa2048", san="exp.example.com")
        self.assertEqual(self.vault.import_cert("exp", m)[0], 201)
        st, h, pem = self.vault.request("GET", "/v1/certificates/exp/export?format=pem")
        self.assertEqual(st, 200)
        self.assertEqual(h["content-type"], "application/x-pem-file")
        self.assertEqual(pem.decode().strip(), m.cert.strip())
        st, h, der = self.vault.request("GET", "/v1/certificates/exp/export?format=der")
        self.assertEqual(h["content-type"], "application/pkix-cert")
        self.assertEqual(der, m.cert_der())
        self.assertIn('filename="exp.der"', h["content-disposition"])
        st, h, pub = self.vault.request("GET", "/v1/certificates/exp/export?format=public-key")
        want = run(["openssl", "x509", "-in", m.cert_path, "-noout", "-pubkey"]).stdout
        self.assertEqual(pub.strip(), want.strip())
        self.assertNotIn(b"PRIVATE", pem + der + pub)
        self.assertError(self.vault.request("GET", "/v1/certificates/exp/export?format=key"),
                         400, "bad_request")
        self.assertError(self.vault.request("GET", "/v1/certificates/exp/export"),
                         400, "bad_request")
        self.assertError(self.vault.request("GET", "/v1/certificates/nope/export?format=pem"),
                         404, "not_found")

    def test_edit_description(self):
        m = self.material("edit", key="p256", san="edit.example.com")
        st, _, body = self.vault.import_cert("edit", m, description="first")
        created = body["updated_at"]
        time.sleep(1.1)
        st, _, body = self.vault.request("PATCH", "/v1/certificates/edit",
                                         {"description": "second"})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["description"], "second")
        self.assertGreater(body["updated_at"], created)
        self.assertError(self.vault.request("PATCH", "/v1/certificates/edit",
                                            {"description": "x" * 1025}), 400, "bad_request")
        # (A rename is an edit too: test_model.)
        self.assertError(self.vault.request("PATCH", "/v1/certificates/edit",
                                            {"name": "re named"}), 400, "invalid_name")
        self.assertError(self.vault.request("PATCH", "/v1/certificates/nope",
                                            {"description": "x"}), 404, "not_found")
        st, _, body = self.vault.request("GET", "/v1/certificates/edit")
        self.assertEqual(body["description"], "second")

    def test_delete_needs_confirmation_and_destroys_the_key(self):
        m = self.material("del", key="p256", san="del.example.com")
        st, _, body = self.vault.import_cert("del", m)
        key_id = body["key"]["id"]
        self.assertIn(key_id, self.vault.token_objects().replace(":", ""))
        for q in ("", "?confirm=yes", "?confirm=DELETE", "?confirm="):
            with self.subTest(q=q):
                self.assertError(self.vault.request("DELETE", "/v1/certificates/del" + q),
                                 400, "confirmation_required")
                self.assertEqual(self.vault.request("GET", "/v1/certificates/del")[0], 200)
                self.assertIn(key_id, self.vault.token_objects().replace(":", ""))
        st, _, body = self.vault.request("DELETE", "/v1/certificates/del?confirm=delete")
        self.assertEqual(st, 200, body)
        self.assertError(self.vault.request("GET", "/v1/certificates/del"), 404, "not_found")
        self.assertNotIn(key_id, self.vault.token_objects().replace(":", ""))
        self.assertError(self.vault.request("DELETE", "/v1/certificates/del?confirm=delete"),
                         404, "not_found")
        # The name is free again.
        self.assertEqual(self.vault.import_cert("del", m)[0], 201)


class HealthAndRestartTest(VaultTestCase):

    def test_health(self):
        st, _, body = self.vault.request("GET", "/v1/health")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["status"], "ok")
        self.assertTrue(body["database"]["ok"])
        self.assertTrue(body["token"]["reachable"])
        self.assertTrue(body["token"]["logged_in"])
        self.assertEqual(body["token"]["label"], "cv-test")
        self.assertEqual(body["token"]["manufacturer"], "SoftHSM project")
        # Which node answers, on which store (issue 15): the host name unless named.
        self.assertEqual(body["store"], "postgresql" if pgstore.enabled() else "sqlite")
        self.assertEqual(body["node"], socket.gethostname())

    def test_node_name(self):
        self.assertEqual(self.vault.stop(), 0)
        try:
            for bad in ("two words", "x" * 64, "n\u00e9"):
                p = subprocess.run([CERTVAULTD], env=self.vault.env(
                    {"CERTVAULT_SERVER_NODE_NAME": bad}), capture_output=True, timeout=60)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn(b"server.node_name must be 1-63 letters, digits", p.stderr)
            self.vault.start({"CERTVAULT_SERVER_NODE_NAME": "vault-a.eu_1"})
            st, _, body = self.vault.request("GET", "/v1/health")
            self.assertEqual((st, body["node"]), (200, "vault-a.eu_1"))
        finally:
            if self.vault.proc is not None:
                self.vault.stop()
            self.vault.start()

    def test_restart_keeps_everything(self):
        m = self.material("keep", key="ed25519", san="keep.example.com")
        st, _, before = self.vault.import_cert("keep", m)
        self.assertEqual(st, 201)
        self.assertEqual(self.vault.stop(), 0)
        self.vault.start()
        st, _, after = self.vault.request("GET", "/v1/certificates/keep")
        self.assertEqual(st, 200)
        self.assertEqual(after, before)
        st, _, h = self.vault.request("GET", "/v1/health")
        self.assertGreaterEqual(h["token"]["keys"], 1)
        # The key map was rebuilt: deleting finds the key without a search.
        st, _, body = self.vault.request("DELETE", "/v1/certificates/keep?confirm=delete")
        self.assertEqual(st, 200, body)
        self.assertNotIn(before["key"]["id"], self.vault.token_objects().replace(":", ""))


if __name__ == "__main__":
    unittest.main()
