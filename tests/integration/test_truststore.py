"""Integration tests of the truststore: CA certificates added under an alias (pasted, as a
bundle, or learned from a live TLS endpoint: an openssl s_server on 127.0.0.1 presenting a
two-level chain, over https and as ldaps), read, deleted and exported (a PEM bundle, and a
PKCS#12 file Java's keytool lists as trusted certificate entries), and a certificate import
checking its chain against it, against a real certvaultd."""

import os
import re
import socket
import subprocess
import time
import unittest
import urllib.parse

from harness import Material, VaultTestCase, b64, run

KEYTOOL = "/usr/bin/keytool"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TruststoreTest(VaultTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = Material(cls.tmp, "ts-root", key="p256", cn="Test Root CA", ca=True,
                            not_after=3650 * 86400 + 3600)
        cls.inter = Material(cls.tmp, "ts-inter", key="p256", cn="Test Intermediate CA",
                             ca=True, issuer=cls.root, not_after=1825 * 86400)
        cls.leaf = Material(cls.tmp, "ts-leaf", key="p256", cn="localhost", san="localhost",
                            issuer=cls.inter)

    def add(self, **body):
        return self.vault.request("POST", "/v1/truststore", body)

    def test_add_read_delete_one_pem(self):
        st, _, body = self.add(alias="ts-one", certificate=self.root.cert)
        self.assertEqual(st, 201, body)
        [item] = body["items"]
        self.assertEqual(item["alias"], "ts-one")
        self.assertEqual(item["subject"], "CN=Test Root CA")
        self.assertEqual(item["status"], "valid")
        self.assertEqual(item["source"], "upload")
        fp = run(["openssl", "x509", "-in", self.root.cert_path, "-noout", "-fingerprint",
                  "-sha256"]).stdout.decode().strip().split("=", 1)[1]
        self.assertEqual(item["sha256_fingerprint"], fp)
        # Issue 16 item 13: an entry has the view every certificate has.
        self.assertEqual(item["fingerprints"]["sha256"], fp)
        self.assertRegex(item["fingerprints"]["sha1"], r"^([0-9A-F]{2}:){19}[0-9A-F]{2}$")
        self.assertEqual(item["public_key"]["type"], "EC")
        self.assertEqual(item["public_key"]["bits"], 256)
        self.assertEqual(item["public_key"]["curve"], "P-256")
        self.assertEqual(item["signature_algorithm"], "ecdsa-with-SHA256")
        self.assertEqual(item["signature_algorithm_name"], "ECDSA with SHA-256")
        self.assertTrue(item["is_ca"])
        st, _, again = self.vault.request("GET", "/v1/truststore/ts-one")
        self.assertEqual((st, again), (200, item))
        st, _, listed = self.vault.request("GET", "/v1/truststore")
        self.assertIn(item, listed["items"])
        # The same CA twice, under any alias: refused, naming the alias it has.
        msg = self.assertError(self.add(alias="ts-again", certificate=self.root.cert), 409,
                               "same_certificate")
        self.assertIn("ts-one", msg)
        st, _, body = self.vault.request("DELETE", "/v1/truststore/ts-one")
        self.assertEqual((st, body), (200, {"alias": "ts-one", "deleted": True}))
        self.assertError(self.vault.request("GET", "/v1/truststore/ts-one"), 404, "not_found")
        self.assertError(self.vault.request("DELETE", "/v1/truststore/ts-one"), 404,
                         "not_found")

    def test_bundle_encodings_and_aliases(self):
        bundle = self.inter.cert + self.root.cert
        st, _, body = self.add(alias="ts-bundle", certificate=bundle)
        self.assertEqual(st, 201, body)
        self.assertEqual([i["alias"] for i in body["items"]], ["ts-bundle-1", "ts-bundle-2"])
        self.assertEqual([i["subject"] for i in body["items"]],
                         ["CN=Test Intermediate CA", "CN=Test Root CA"])
        for a in ("ts-bundle-1", "ts-bundle-2"):
            self.vault.request("DELETE", "/v1/truststore/" + a)
        st, _, body = self.add(aliases=["ts-i", "ts-r"], certificate=bundle)
        self.assertEqual([i["alias"] for i in body["items"]], ["ts-i", "ts-r"])
        for a in ("ts-i", "ts-r"):
            self.vault.request("DELETE", "/v1/truststore/" + a)
        st, _, body = self.add(alias="ts-der", certificate=b64(self.root.cert_der()),
                               encoding="base64")
        self.assertEqual(st, 201, body)
        self.vault.request("DELETE", "/v1/truststore/ts-der")
        st, _, body = self.add(alias="ts-b64pem", certificate=b64(self.root.cert),
                               encoding="base64pem")
        self.assertEqual(st, 201, body)
        self.vault.request("DELETE", "/v1/truststore/ts-b64pem")

    def test_refusals_change_nothing(self):
        expired = Material(self.tmp, "ts-expired", cn="Old CA", ca=True, not_before=-7200,
                           not_after=-3600)
        upcoming = Material(self.tmp, "ts-upcoming", cn="Future CA", ca=True,
                            not_before=3600)
        st, _, before = self.vault.request("GET", "/v1/truststore")
        cases = [
            (dict(alias="ts-x", certificate=self.leaf.cert), 422, "not_a_ca"),
            (dict(alias="ts-x", certificate=expired.cert), 422, "expired"),
            (dict(alias="ts-x", certificate=upcoming.cert), 422, "not_yet_valid"),
            # All or none: one bad entry in a bundle refuses the whole bundle.
            (dict(alias="ts-x", certificate=self.root.cert + self.leaf.cert), 422, "not_a_ca"),
            (dict(alias="ts-x", certificate="not a certificate"), 400, "bad_encoding"),
            (dict(alias="ts-x", certificate=""), 400, "bad_encoding"),
            (dict(alias="bad alias", certificate=self.root.cert), 400, "invalid_name"),
            (dict(alias="export", certificate=self.root.cert), 400, "invalid_name"),
            (dict(certificate=self.root.cert), 400, "bad_request"),
            (dict(alias="ts-x"), 400, "bad_request"),
            (dict(alias="ts-x", certificate=self.root.cert, url="https://127.0.0.1:1"), 400,
             "bad_request"),
            (dict(alias="ts-x", certificate=self.root.cert, keep="top"), 400, "bad_request"),
            (dict(aliases=["a"], certificate=self.inter.cert + self.root.cert), 400,
             "bad_request"),
            (dict(aliases=["ts-a", "ts-a"], certificate=self.inter.cert + self.root.cert),
             409, "name_taken"),
            (dict(alias="ts-x", certificate=self.root.cert, colour="red"), 400,
             "bad_request"),
            (dict(alias="ts-x", url="ftp://127.0.0.1"), 400, "bad_request"),
            (dict(alias="ts-x", url="https://127.0.0.1:%d" % free_port()), 502,
             "endpoint_unreachable"),
        ]
        for body, status, code in cases:
            with self.subTest(body={k: v[:40] if isinstance(v, str) else v
                                    for k, v in body.items()}):
                self.assertError(self.add(**body), status, code)
        self.assertEqual(self.vault.request("GET", "/v1/truststore")[2], before)

    def test_url_fetch_refuses_internal_hosts(self):
        """Issue 16 item 7: by default a url fetch reaches public addresses only; loopback,
        by address or by a name resolving to it, is refused with no connection made (a
        listener there sees nothing), and the admin is told which setting allows it."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            port = listener.getsockname()[1]
            for url in ("https://127.0.0.1:%d" % port, "ldaps://localhost:%d" % port):
                with self.subTest(url=url):
                    msg = self.assertError(self.add(alias="ts-internal", url=url), 502,
                                           "endpoint_unreachable")
                    self.assertIn("is a loopback address", msg)
                    self.assertIn("truststore.allow_networks", msg)
            listener.settimeout(0.3)
            with self.assertRaises(socket.timeout):
                listener.accept()
        self.assertEqual(self.vault.request("GET", "/v1/truststore/ts-internal")[0], 404)

    def test_export_pem_in_alias_order(self):
        self.add(alias="ts-exp-b", certificate=self.root.cert)
        self.add(alias="ts-exp-a", certificate=self.inter.cert)
        st, hdrs, pem = self.vault.request("GET", "/v1/truststore/export?format=pem")
        self.assertEqual(st, 200)
        self.assertEqual(hdrs["content-type"], "application/x-pem-file")
        text = pem.decode()
        self.assertLess(text.index("# ts-exp-a"), text.index("# ts-exp-b"))
        path = os.path.join(self.tmp, "bundle.pem")
        with open(path, "w") as f:
            f.write(text)
        # openssl verifies the leaf against the exported bundle.
        p = run(["openssl", "verify", "-CAfile", path, self.leaf.cert_path])
        self.assertIn(b"OK", p.stdout)
        st, _, again = self.vault.request("GET", "/v1/truststore/export")
        self.assertEqual(again, pem)
        self.assertError(self.vault.request("GET", "/v1/truststore/export?format=jks"), 400,
                         "bad_request")
        for a in ("ts-exp-a", "ts-exp-b"):
            self.vault.request("DELETE", "/v1/truststore/" + a)

    def test_import_reports_chain_trusted(self):
        st, _, body = self.vault.import_cert("ts-chk", self.leaf, chain=self.inter.cert,
                                             check_chain=True)
        self.assertEqual(st, 201, body)
        self.assertIs(body["chain_trusted"], False)
        self.assertIn("issuer", body["chain_trust_detail"])
        self.add(alias="ts-chk-root", certificate=self.root.cert)
        other = Material(self.tmp, "ts-leaf2", cn="localhost", san="localhost",
                         issuer=self.inter)
        st, _, body = self.vault.import_cert("ts-chk2", other, chain=self.inter.cert,
                                             check_chain=True)
        self.assertEqual(st, 201, body)
        self.assertIs(body["chain_trusted"], True, body["chain_trust_detail"])
        # Not asked: not reported.
        third = Material(self.tmp, "ts-leaf3", cn="localhost", san="localhost",
                         issuer=self.inter)
        st, _, body = self.vault.import_cert("ts-chk3", third, chain=self.inter.cert)
        self.assertNotIn("chain_trusted", body)
        self.assertError(self.vault.import_cert("ts-chk4", third, check_chain="yes"), 400,
                         "bad_request")
        self.vault.request("DELETE", "/v1/truststore/ts-chk-root")


class Pkcs12ExportTest(VaultTestCase):
    """GET /v1/truststore/export?format=pkcs12: a file Java's keytool lists as trusted
    certificate entries. Its own certvaultd, so the truststore holds only what a test adds."""

    # Characters a query string must escape, to show the password arrives as it was sent.
    password = "Tr&st=st0re pw+%!"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = Material(cls.tmp, "p-root", key="p256", cn="P12 Root CA", ca=True,
                            not_after=3650 * 86400 + 3600)
        cls.inter = Material(cls.tmp, "p-inter", key="rsa2048", cn="P12 Intermediate CA",
                             ca=True, issuer=cls.root, not_after=1825 * 86400)

    def trust(self, alias, material):
        st, _, body = self.vault.request("POST", "/v1/truststore",
                                         {"alias": alias, "certificate": material.cert})
        self.assertEqual(st, 201, body)
        self.addCleanup(self.vault.request, "DELETE", "/v1/truststore/" + alias)

    def export(self, **query):
        return self.vault.request("GET", "/v1/truststore/export?" +
                                  urllib.parse.urlencode(query, quote_via=urllib.parse.quote))

    def save(self, data, name="truststore.p12"):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def keytool_list(self, path, password, check=True):
        # Fails (not skips) without keytool: scripts/deps installs openjdk-17-jre-headless.
        self.assertTrue(os.path.exists(KEYTOOL), "no %s: run scripts/deps" % KEYTOOL)
        return run([KEYTOOL, "-J-Duser.language=en", "-J-Duser.country=US", "-list",
                    "-keystore", path, "-storetype", "PKCS12", "-storepass", password],
                   check=check)

    @staticmethod
    def keytool_entries(text):
        """(alias, entry type, SHA-256 fingerprint) of each entry keytool -list shows."""
        return re.findall(r"^([^,\s]+), .*, (\w+), ?\n"
                          r"Certificate fingerprint \(SHA-256\): ([0-9A-F:]+)$", text, re.M)

    @staticmethod
    def fingerprint(material):
        return run(["openssl", "x509", "-in", material.cert_path, "-noout", "-fingerprint",
                    "-sha256"]).stdout.decode().strip().split("=", 1)[1]

    def test_keytool_lists_trusted_entries_in_alias_order(self):
        self.trust("p12-root", self.root)
        self.trust("p12-inter", self.inter)
        st, hdrs, data = self.export(format="pkcs12", password=self.password)
        self.assertEqual(st, 200, data)
        self.assertEqual(hdrs["content-type"], "application/x-pkcs12")
        self.assertEqual(hdrs["content-disposition"], 'attachment; filename="truststore.p12"')
        path = self.save(data)

        text = self.keytool_list(path, self.password).stdout.decode()
        self.assertIn("Your keystore contains 2 entries", text)
        self.assertEqual(self.keytool_entries(text), [
            ("p12-inter", "trustedCertEntry", self.fingerprint(self.inter)),
            ("p12-root", "trustedCertEntry", self.fingerprint(self.root)),
        ])
        # The wrong password: keytool refuses the file.
        p = self.keytool_list(path, "changeit", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"password was incorrect", p.stdout + p.stderr)

        # openssl reads the same two certificates, no key, each under its alias.
        out = run(["openssl", "pkcs12", "-in", path, "-nokeys", "-passin",
                   "pass:" + self.password]).stdout.decode()
        pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                          out, re.S)
        self.assertEqual(pems, [self.inter.cert, self.root.cert])
        self.assertEqual(re.findall(r"friendlyName: (\S+)", out), ["p12-inter", "p12-root"])
        self.assertNotIn("PRIVATE KEY", out)
        p = run(["openssl", "pkcs12", "-in", path, "-nokeys", "-passin", "pass:changeit"],
                check=False)
        self.assertNotEqual(p.returncode, 0)

        # The PEM export is as it was.
        st, hdrs, pem = self.vault.request("GET", "/v1/truststore/export?format=pem")
        self.assertEqual(st, 200)
        self.assertEqual(hdrs["content-type"], "application/x-pem-file")
        self.assertEqual(pem.decode(), "# p12-inter\n" + self.inter.cert +
                         "# p12-root\n" + self.root.cert)
        # The password, which came in a query string, is nowhere in certvaultd's log.
        log = self.vault.log()
        self.assertIn("GET /v1/truststore/export 200", log)
        for form in (self.password, urllib.parse.quote(self.password, safe="")):
            self.assertNotIn(form, log)

    def test_empty_truststore_is_a_valid_empty_file(self):
        listed = self.vault.request("GET", "/v1/truststore")[2]
        self.assertEqual((listed["items"], listed["total"], listed["next_cursor"]),
                         ([], 0, None))
        st, _, data = self.export(format="pkcs12", password="changeit")
        self.assertEqual(st, 200, data)
        text = self.keytool_list(self.save(data, "empty.p12"), "changeit").stdout.decode()
        self.assertIn("Your keystore contains 0 entries", text)

    def test_refusals(self):
        self.trust("p12-refusals", self.root)
        cases = [
            (dict(format="xml"), "pem or pkcs12"),
            (dict(format="pkcs12"), "password"),
            (dict(format="pkcs12", password=""), "password"),
            (dict(format="pkcs12", password="x" * 129), "longer than 128"),
            (dict(format="pkcs12", password="caf\u00e9-pass"), "printable ASCII"),
            (dict(format="pkcs12", password="new\nline"), "control characters"),
            (dict(format="pem", password="changeit"), "format=pkcs12"),
            (dict(password="changeit"), "format=pkcs12"),
            (dict(format="pkcs12", password="changeit", colour="red"), "colour"),
        ]
        for query, words in cases:
            with self.subTest(query={k: v[:20] for k, v in query.items()}):
                msg = self.assertError(self.export(**query), 400, "bad_request")
                self.assertIn(words, msg)
                if query.get("password"):
                    self.assertNotIn(query["password"], msg)
        # 128 printable characters are taken.
        st, _, data = self.export(format="pkcs12", password="~ " * 64)
        self.assertEqual(st, 200, data)

    def test_aliases_java_cannot_tell_apart(self):
        # Java lower-cases aliases, so two differing only in case would become one: they
        # are one alias to certvault too (issue 16 item 15), refused when added.
        self.trust("p12-CA", self.root)
        st, _, body = self.vault.request("POST", "/v1/truststore",
                                         {"alias": "p12-ca", "certificate": self.inter.cert})
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "name_taken")
        st, _, data = self.export(format="pkcs12", password="changeit")
        self.assertEqual(st, 200, data)


class FetchTest(VaultTestCase):
    """Learning a chain from a live endpoint: openssl s_server presents leaf + intermediate.
    It listens on loopback, which truststore.allow_networks must name."""

    settings = {"CERTVAULT_TRUSTSTORE_ALLOW_NETWORKS": "127.0.0.0/8, ::1"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = Material(cls.tmp, "f-root", key="p256", cn="Fetch Root CA", ca=True,
                            not_after=3650 * 86400 + 3600)
        cls.inter = Material(cls.tmp, "f-inter", key="p256", cn="Fetch Intermediate CA",
                             ca=True, issuer=cls.root, not_after=1825 * 86400)
        cls.leaf = Material(cls.tmp, "f-leaf", key="p256", cn="localhost", san="localhost",
                            issuer=cls.inter)

    def serve(self):
        """An openssl s_server on a free port presenting leaf + intermediate; its port. The
        port is free when chosen but another test may take it first: then another port."""
        for _ in range(5):
            port = free_port()
            proc = subprocess.Popen(
                ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-cert",
                 self.leaf.cert_path, "-key", self.leaf.key_path, "-cert_chain",
                 self.inter.cert_path, "-www"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            self.addCleanup(lambda p=proc: (p.kill(), p.wait(), p.stdout.close()))
            # s_server says ACCEPT once it listens (after a line or two about its
            # parameters), or exits when it cannot bind.
            for _ in range(10):
                line = proc.stdout.readline()
                if line.strip() in (b"ACCEPT", b""):
                    break
            if line.strip() == b"ACCEPT":
                return port
        self.fail("openssl s_server did not start")

    def test_fetch_over_https_and_ldaps(self):
        port = self.serve()
        for scheme, alias in (("https", "f-https"), ("ldaps", "f-ldaps")):
            with self.subTest(scheme=scheme):
                url = "%s://127.0.0.1:%d" % (scheme, port)
                # The top-most CA the server presents: the intermediate.
                st, _, body = self.vault.request("POST", "/v1/truststore",
                                                 {"alias": alias, "url": url})
                self.assertEqual(st, 201, body)
                [item] = body["items"]
                self.assertEqual(item["subject"], "CN=Fetch Intermediate CA")
                self.assertEqual(item["source"], url)
                self.vault.request("DELETE", "/v1/truststore/" + alias)
        # keep: a position in the chain; the leaf is not a CA.
        url = "https://localhost:%d" % port
        st, _, body = self.vault.request("POST", "/v1/truststore",
                                         {"alias": "f-pos", "url": url, "keep": "1"})
        self.assertEqual((st, body["items"][0]["subject"]), (201, "CN=Fetch Intermediate CA"))
        self.vault.request("DELETE", "/v1/truststore/f-pos")
        self.assertError(self.vault.request("POST", "/v1/truststore",
                                            {"alias": "f-leaf", "url": url, "keep": "0"}),
                         422, "not_a_ca")
        self.assertError(self.vault.request("POST", "/v1/truststore",
                                            {"alias": "f-far", "url": url, "keep": "5"}),
                         400, "bad_request")
        st, _, body = self.vault.request("POST", "/v1/truststore",
                                         {"alias": "f-all", "url": url, "keep": "all"})
        self.assertEqual(st, 201, body)
        self.assertEqual([i["alias"] for i in body["items"]], ["f-all"])


if __name__ == "__main__":
    unittest.main()
