"""Every import source (issue 4): a PKCS#12 file in JSON (base64, with its password), and a
multipart/form-data upload of PEM (a bundle too), DER or PKCS#12 — for import, renew and
replace. Each refusal gets its code and leaves the token and the database as they were."""

import os
import secrets
import unittest

from harness import BUILD, VaultTestCase, b64, run

TESTP12 = os.path.join(BUILD, "tests", "cv-testp12")


def pkcs12(path, material, password, chain=(), legacy=False):
    """A PKCS#12 file made by openssl pkcs12 -export: its bytes."""
    cmd = ["openssl", "pkcs12", "-export", "-out", path, "-inkey", material.key_path,
           "-in", material.cert_path, "-passout", "pass:" + password]
    if chain:
        bundle = path + ".chain.pem"
        with open(bundle, "w") as f:
            f.write("".join(c.cert for c in chain))
        cmd += ["-certfile", bundle]
    if legacy:
        cmd += ["-legacy"]
    run(cmd)
    with open(path, "rb") as f:
        return f.read()


def form(fields):
    """A multipart/form-data body: fields maps a name to text, or to (filename, bytes) for a
    file. Returns (content type, body)."""
    boundary = "cv-" + secrets.token_hex(12)
    out = b""
    for name, value in fields.items():
        out += b"--" + boundary.encode() + b"\r\n"
        if isinstance(value, tuple):
            filename, data = value
            out += ('Content-Disposition: form-data; name="%s"; filename="%s"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n" % (name, filename)).encode()
        else:
            data = value.encode()
            out += ('Content-Disposition: form-data; name="%s"\r\n\r\n' % name).encode()
        out += data + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return "multipart/form-data; boundary=" + boundary, out


class SourcesTest(VaultTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = cls.mat("src-root", key="p384", cn="Sources Root", ca=True,
                           not_after=3650 * 86400)
        cls.inter = cls.mat("src-inter", key="p256", cn="Sources Intermediate", ca=True,
                            issuer=cls.root, not_after=1000 * 86400)

    @classmethod
    def mat(cls, name, **kw):
        from harness import Material
        return Material(cls.tmp, name, **kw)

    def leaf(self, name, key="p256"):
        return self.material(name, key=key, cn=name + ".example.com",
                             san=name + ".example.com", issuer=self.inter)

    def upload(self, path, fields, method="POST"):
        ctype, body = form(fields)
        return self.vault.request(method, path, headers={"Content-Type": ctype}, raw=body)

    def state(self):
        """What a refusal must not change: the certificates and the token's objects."""
        st, _, body = self.vault.request("GET", "/v1/certificates?limit=1000")
        self.assertEqual(st, 200, body)
        names = sorted((i["name"], i["version"]) for i in body["items"])
        return names, self.vault.count_token_objects(), \
            self.vault.count_token_objects("Public Key Object")

    def assertRefused(self, resp, status, code):
        """resp was refused with status and code; nothing changed since self.before."""
        msg = self.assertError(resp, status, code)
        self.assertEqual(self.state(), self.before)
        return msg

    def assertImported(self, resp, name, leaf, chain_length):
        st, _, body = resp
        self.assertEqual(st, 201, body)
        self.assertEqual(body["name"], name)
        self.assertEqual(body["chain_length"], chain_length)
        fp = run(["openssl", "x509", "-in", leaf.cert_path, "-noout", "-fingerprint",
                  "-sha256"]).stdout.decode().strip().split("=", 1)[1]
        self.assertEqual(body["fingerprints"]["sha256"].replace(":", "").lower(),
                         fp.replace(":", "").lower())
        # The key went into the token: sign through it would be the interop test's job;
        # here its object is there and the certificate's public key is the leaf's.
        st, _, pub = self.vault.request("GET", "/v1/certificates/%s/export?format=public-key"
                                        % name)
        want = run(["openssl", "x509", "-in", leaf.cert_path, "-noout", "-pubkey"]).stdout
        self.assertEqual(pub.strip(), want.strip())
        return body

    def test_pkcs12_in_json(self):
        leaf = self.leaf("p12-json", key="rsa2048")
        data = pkcs12(self.tmp + "/p12-json.p12", leaf, "s3cret", chain=[self.inter])
        keys = self.vault.count_token_objects()
        self.assertImported(self.vault.request("POST", "/v1/certificates", {
            "name": "p12-json", "pkcs12": b64(data), "password": "s3cret"}),
            "p12-json", leaf, 1)
        self.assertEqual(self.vault.count_token_objects(), keys + 1)
        st, _, chain = self.vault.request(
            "GET", "/v1/certificates/p12-json/export?format=chain")
        self.assertIn(self.inter.cert.strip(), chain.decode())

    def test_pkcs12_legacy_algorithms(self):
        # RC2/3DES with a SHA-1 MAC: what older Windows and Java tools still write.
        leaf = self.leaf("p12-legacy")
        data = pkcs12(self.tmp + "/p12-legacy.p12", leaf, "old-pw", legacy=True)
        self.assertImported(self.vault.request("POST", "/v1/certificates", {
            "name": "p12-legacy", "pkcs12": b64(data), "password": "old-pw"}),
            "p12-legacy", leaf, 0)

    def test_pkcs12_refusals(self):
        leaf = self.leaf("p12-bad")
        data = pkcs12(self.tmp + "/p12-bad.p12", leaf, "right")
        other = self.leaf("p12-other")
        two = self.tmp + "/p12-two.p12"
        run([TESTP12, "--out", two, "--password", "pw", "--key", leaf.key_path,
             "--key", other.key_path, "--cert", leaf.cert_path])
        with open(two, "rb") as f:
            two_keys = f.read()
        self.before = self.state()
        post = lambda body: self.vault.request("POST", "/v1/certificates",  # noqa: E731
                                               dict({"name": "p12-bad"}, **body))
        self.assertRefused(post({"pkcs12": b64(data), "password": "wrong"}),
                           422, "bad_password")
        self.assertRefused(post({"pkcs12": b64(data)}), 422, "bad_password")
        msg = self.assertRefused(post({"pkcs12": b64(two_keys), "password": "pw"}),
                                 400, "bad_encoding")
        self.assertIn("more than one private key", msg)
        self.assertRefused(post({"pkcs12": b64(b"\x30\x03\x02\x01\x03"), "password": "x"}),
                           400, "bad_encoding")
        self.assertRefused(post({"pkcs12": "not base64!", "password": "x"}),
                           400, "bad_encoding")
        self.assertRefused(post({"pkcs12": b64(data), "password": "right",
                                 "certificate": leaf.cert}), 400, "bad_request")
        self.assertRefused(post({"pkcs12": b64(data), "password": "right",
                                 "encoding": "base64"}), 400, "bad_request")
        self.assertRefused(post({"pkcs12": b64(data), "password": "right",
                                 "name": "bad name"}), 400, "invalid_name")
        self.assertRefused(post({"password": "right"}), 400, "bad_request")
        # The password never comes back in a message.
        msg = self.assertRefused(post({"pkcs12": b64(data), "password": "hunter2-secret"}),
                                 422, "bad_password")
        self.assertNotIn("hunter2", msg)

    def test_upload_pem_bundle_with_key(self):
        # fullchain + key in one file, in any order: the leaf is the key's certificate.
        leaf = self.leaf("up-bundle")
        text = self.inter.cert + leaf.key + leaf.cert
        body = self.assertImported(self.upload("/v1/certificates", {
            "name": "up-bundle", "description": "from a file",
            "certificate": ("fullchain.pem", text.encode())}), "up-bundle", leaf, 1)
        self.assertEqual(body["description"], "from a file")

    def test_upload_der_certificate_and_der_key(self):
        leaf = self.leaf("up-der", key="rsa2048")
        self.assertImported(self.upload("/v1/certificates", {
            "name": "up-der",
            "certificate": ("cert.der", leaf.cert_der()),
            "private_key": ("key.der", leaf.key_der()),
            "chain": ("chain.pem", self.inter.cert.encode())}), "up-der", leaf, 1)

    def test_upload_pkcs12(self):
        leaf = self.leaf("up-p12")
        data = pkcs12(self.tmp + "/up.p12", leaf, "pw", chain=[self.inter])
        st, _, body = self.vault.request("POST", "/v1/truststore", {
            "alias": "up-root", "certificate": self.root.cert})
        self.assertEqual(st, 201, body)
        body = self.assertImported(self.upload("/v1/certificates", {
            "name": "up-p12", "password": "pw", "check_chain": "true",
            "certificate": ("site.p12", data)}), "up-p12", leaf, 1)
        self.assertIs(body["chain_trusted"], True, body)
        self.vault.request("DELETE", "/v1/truststore/up-root")

    def test_upload_refusals(self):
        leaf = self.leaf("up-bad")
        other = self.leaf("up-other")
        data = pkcs12(self.tmp + "/up-bad.p12", leaf, "pw")
        self.before = self.state()
        up = lambda fields: self.upload("/v1/certificates",  # noqa: E731
                                        dict({"name": "up-bad"}, **fields))
        # A key in the file and another beside it.
        self.assertRefused(up({"certificate": ("a.pem", (leaf.cert + leaf.key).encode()),
                               "private_key": ("key.pem", leaf.key.encode())}),
                           400, "bad_request")
        # A key without its certificate. (A certificate without a key is a public
        # certificate: test_model.)
        self.assertRefused(up({"private_key": ("key.pem", leaf.key.encode())}),
                           400, "bad_request")
        # Two keys in one file.
        self.assertRefused(up({"certificate": ("a.pem", (leaf.cert + leaf.key +
                                                         other.key).encode())}),
                           400, "bad_encoding")
        # The key of another certificate.
        self.assertRefused(up({"certificate": ("a.pem", (leaf.cert + other.key).encode())}),
                           422, "key_mismatch")
        # Not a certificate in any form.
        self.assertRefused(up({"certificate": ("a.bin", os.urandom(300))}),
                           400, "bad_encoding")
        self.assertRefused(up({"certificate": ("a.p12", data), "password": "nope"}),
                           422, "bad_password")
        # Form rules: unknown field, encoding, a bad boolean, no name.
        self.assertRefused(up({"certificate": ("a.p12", data), "password": "pw",
                               "colour": "blue"}), 400, "bad_request")
        self.assertRefused(up({"certificate": ("a.p12", data), "password": "pw",
                               "encoding": "pem"}), 400, "bad_request")
        self.assertRefused(up({"certificate": ("a.p12", data), "password": "pw",
                               "check_chain": "yes"}), 400, "bad_request")
        self.assertRefused(self.upload("/v1/certificates", {
            "certificate": ("a.p12", data), "password": "pw"}), 400, "bad_request")
        # Broken multipart: no boundary, bare LF line ends, no final boundary.
        self.assertRefused(self.vault.request(
            "POST", "/v1/certificates", headers={"Content-Type": "multipart/form-data"},
            raw=b"--x\r\n\r\n"), 400, "bad_request")
        ctype, body = form({"name": "up-bad", "certificate": ("a.p12", data)})
        self.assertRefused(self.vault.request(
            "POST", "/v1/certificates", headers={"Content-Type": ctype},
            raw=body.replace(b"\r\n", b"\n")), 400, "bad_request")
        self.assertRefused(self.vault.request(
            "POST", "/v1/certificates", headers={"Content-Type": ctype},
            raw=body[:body.rindex(b"--cv-")]), 400, "bad_request")
        self.assertRefused(self.vault.request(
            "POST", "/v1/certificates", headers={"Content-Type": "text/plain"}, raw=b"x"),
            415, "unsupported_media_type")


class SupersedeSourcesTest(VaultTestCase):
    """Renew and replace take the same sources."""

    def test_renew_with_pkcs12_and_replace_with_upload(self):
        first = self.material("sup-1", san="sup.example.com")
        self.assertEqual(self.vault.import_cert("sup", first)[0], 201)
        st, _, body = self.vault.request("PUT", "/v1/services/sup-web", {
            "environment": "production", "domains": ["sup.example.com"]})
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("PUT", "/v1/services/sup-web/certificate",
                                         {"certificate": "sup"})
        self.assertEqual(st, 200, body)

        second = self.material("sup-2", key="rsa2048", san="sup.example.com")
        data = pkcs12(self.tmp + "/sup-2.p12", second, "pw2")
        st, _, body = self.vault.request("POST", "/v1/certificates/sup/renew", {
            "pkcs12": b64(data), "password": "pw2", "version": 1})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["version"], 2)
        self.assertEqual([s["service"] for s in body["applied_to"]], ["sup-web"])
        self.assertEqual(body["public_key"]["type"], "RSA")

        # Replace by upload, naming the version in the form.
        third = self.material("sup-3", san="sup.example.com")
        ctype, raw = form({"version": "2",
                           "certificate": ("sup3.pem", (third.cert + third.key).encode())})
        st, _, body = self.vault.request("POST", "/v1/certificates/sup/replace",
                                         headers={"Content-Type": ctype}, raw=raw)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["version"], 3)
        st, _, svc = self.vault.request("GET", "/v1/services/sup-web")
        self.assertEqual(svc["certificate"]["version"], 3)

        # A refused upload on renew changes nothing: the old version is named.
        fourth = self.material("sup-4", san="sup.example.com")
        ctype, raw = form({"version": "2",
                           "certificate": ("sup4.pem", (fourth.cert + fourth.key).encode())})
        objects = self.vault.count_token_objects()
        self.assertError(self.vault.request("POST", "/v1/certificates/sup/renew",
                                            headers={"Content-Type": ctype}, raw=raw),
                         409, "already_renewed")
        self.assertEqual(self.vault.count_token_objects(), objects)
        ctype, raw = form({"version": "two",
                           "certificate": ("sup4.pem", (fourth.cert + fourth.key).encode())})
        self.assertError(self.vault.request("POST", "/v1/certificates/sup/renew",
                                            headers={"Content-Type": ctype}, raw=raw),
                         400, "bad_request")


if __name__ == "__main__":
    unittest.main()
