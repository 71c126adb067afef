"""Every import source (issue 4): a PKCS#12 file in JSON (base64, with its password), and a
multipart/form-data upload of PEM (a bundle too), DER or PKCS#12 — for import, renew and
replace. Each refusal gets its code and leaves the token and the database as they were."""

import os
import secrets
import unittest

from harness import BUILD, Material, VaultTestCase, b64, run
from test_truststore import FetchTest

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


class FormFieldsTest(VaultTestCase):
    """Issue 17: every member an import, renew, replace or truststore add takes in JSON can
    be sent in a multipart/form-data upload as a text field (objects as object.member
    fields, arrays comma-separated, booleans true/false, integers in digits), checked alike
    and refused with the same status, code and words."""

    settings = FetchTest.settings
    serve = FetchTest.serve

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = Material(cls.tmp, "ff-root", key="p256", cn="Form Root CA", ca=True,
                            not_after=3650 * 86400)
        cls.inter = Material(cls.tmp, "ff-inter", key="p256", cn="Form Intermediate CA",
                             ca=True, issuer=cls.root, not_after=1825 * 86400)
        cls.leaf = Material(cls.tmp, "ff-leaf", key="p256", cn="localhost", san="localhost",
                            issuer=cls.inter)

    def upload(self, path, fields):
        ctype, body = form(fields)
        return self.vault.request("POST", path, headers={"Content-Type": ctype}, raw=body)

    def pair(self, path, json_body, fields):
        """The same request as JSON and as a form, on an unchanged vault: both answers.
        Each must be refused; what they refuse must be the same in both."""
        before = self.vault.count_token_objects()
        a = self.vault.request("POST", path, json_body)
        b = self.upload(path, fields)
        self.assertEqual(self.vault.count_token_objects(), before)
        return a, b

    def assertSameRefusal(self, path, json_body, fields, status, code, words=None):
        (sa, _, ba), (sb, _, bb) = self.pair(path, json_body, fields)
        self.assertEqual((sa, ba["error"]["code"]), (status, code), ba)
        self.assertEqual((sb, bb["error"]["code"], bb["error"]["message"]),
                         (sa, ba["error"]["code"], ba["error"]["message"]), (ba, bb))
        if words is not None:
            self.assertIn(words, ba["error"]["message"])

    def test_import_fields(self):
        m = self.material("ff-a", san="ff-a.example.com")
        tags = {"team": "payments", "ticket": "OPS-7, a=b", "a.b_c-d": ""}
        st, _, got = self.upload("/v1/certificates", {
            "name": "ff-a", "description": "Shop, front door", "environments":
            "production, staging", "tags.team": "payments", "tags.ticket": "OPS-7, a=b",
            "tags.a.b_c-d": "", "check_chain": "true", "allow_upcoming": "false",
            "certificate": ("a.pem", m.cert.encode()), "private_key": m.key})
        self.assertEqual(st, 201, got)
        self.assertEqual((got["description"], got["environments"], got["tags"]),
                         ("Shop, front door", ["production", "staging"], tags))
        self.assertIn("chain_trusted", got)
        # Read back as stored, and in the inventory, as a JSON import would be.
        st, _, d = self.vault.request("GET", "/v1/certificates/ff-a")
        self.assertEqual((d["tags"], d["environments"]), (tags, ["production", "staging"]))

        # An upcoming certificate with allow_upcoming from a form.
        up = self.material("ff-up", san="ff-up.example.com", not_before=86400,
                           not_after=90 * 86400)
        st, _, got = self.upload("/v1/certificates", {
            "name": "ff-up", "allow_upcoming": "true",
            "certificate": ("up.pem", (up.cert + up.key).encode())})
        self.assertEqual((st, got.get("status")), (201, "upcoming"), got)

        b = self.material("ff-b", san="ff-b.example.com")
        base = {"name": "ff-b", "certificate": b.cert, "private_key": b.key}
        fbase = {"name": "ff-b", "certificate": ("b.pem", b.cert.encode()),
                 "private_key": ("b.key", b.key.encode())}
        bad = [
            # tags: a key the vault refuses, a value with a control character, too long a
            # key, an object sent as one field, an empty member name.
            ({"tags": {"bad key": "x"}}, {"tags.bad key": "x"}, 400, "bad_request", "tag"),
            ({"tags": {"team": "a\x01b"}}, {"tags.team": "a\x01b"}, 400, "bad_request",
             "tag team"),
            ({"tags": {"k" * 65: "x"}}, {"tags." + "k" * 65: "x"}, 400, "bad_request",
             "tags"),
            # environments: unknown, and an empty name among them.
            ({"environments": ["nowhere"]}, {"environments": "nowhere"}, 422,
             "unknown_environment", "nowhere"),
            # booleans and text.
            ({"allow_upcoming": "maybe"}, {"allow_upcoming": "maybe"}, 400, "bad_request",
             "true or false"),
            ({"check_chain": "1"}, {"check_chain": "1"}, 400, "bad_request",
             "true or false"),
            ({"description": "a\x07b"}, {"description": "a\x07b"}, 400, "bad_request",
             "description"),
            # position without url.
            ({"position": 1}, {"position": "1"}, 400, "bad_request", "goes with"),
        ]
        for extra, fextra, status, code, words in bad:
            with self.subTest(extra=extra):
                self.assertSameRefusal("/v1/certificates", dict(base, **extra),
                                       dict(fbase, **fextra), status, code, words)
        self.assertError(self.upload("/v1/certificates", dict(fbase, tags="team=x")), 400,
                         "bad_request")
        self.assertError(self.upload("/v1/certificates", dict(fbase, **{"tags.": "x"})),
                         400, "bad_request")
        self.assertError(self.upload("/v1/certificates", dict(fbase, **{"name.x": "y"})),
                         400, "bad_request")
        # A NUL (JSON here refuses "\\u0000" as JSON) and bytes that are not UTF-8 are
        # refused by the form, saying so.
        msg = self.assertError(self.upload("/v1/certificates", dict(fbase, description="a\x00b")),
                               400, "bad_request")
        self.assertIn('"description" contains a NUL', msg)
        ctype, raw = form(dict(fbase, description="x"))
        raw = raw.replace(b"\r\n\r\nx\r\n", b"\r\n\r\n\xff\xfe\r\n")
        msg = self.assertError(self.vault.request("POST", "/v1/certificates", raw=raw,
                                                  headers={"Content-Type": ctype}),
                               400, "bad_request")
        self.assertIn("not UTF-8", msg)
        self.assertError(self.vault.request("GET", "/v1/certificates/ff-b"), 404, "not_found")

    def test_preview_fields(self):
        """The preview takes the import's environments, tags and allow_upcoming, from JSON
        or a form, and judges them as the import would: every problem named, nothing
        stored."""
        up = self.material("ff-pv", san="ff-pv.example.com", not_before=86400,
                           not_after=90 * 86400)
        before = self.vault.count_token_objects()
        body = {"name": "ff-pv", "certificate": up.cert, "private_key": up.key,
                "environments": ["production", "nowhere"], "tags": {"bad key": "x"}}
        fields = {"name": "ff-pv", "certificate": ("pv.pem", up.cert.encode()),
                  "private_key": up.key, "environments": "production, nowhere",
                  "tags.bad key": "x"}
        answers = [self.vault.request("POST", "/v1/certificates/preview", body),
                   self.upload("/v1/certificates/preview", fields)]
        for st, _, p in answers:
            self.assertEqual(st, 200, p)
            self.assertEqual([(x["code"], x["status"]) for x in p["problems"]],
                             [("unknown_environment", 422), ("bad_request", 400),
                              ("not_yet_valid", 422)], p)
            self.assertIn("nowhere", p["problems"][0]["message"])
        self.assertEqual(answers[0][2]["problems"], answers[1][2]["problems"])
        # Allowed to be upcoming, in existing environments, with good tags: no problem,
        # and the answer shows what would be stored.
        body.update(environments=["production"], tags={"team": "ops"}, allow_upcoming=True)
        fields = dict(fields, environments="production", allow_upcoming="true")
        del fields["tags.bad key"]
        fields["tags.team"] = "ops"
        for st, _, p in (self.vault.request("POST", "/v1/certificates/preview", body),
                         self.upload("/v1/certificates/preview", fields)):
            self.assertEqual((st, p["ok"], p["problems"]), (200, True, []), p)
            c = p["certificate"]
            self.assertEqual((c["status"], c["environments"], c["tags"]),
                             ("upcoming", ["production"], {"team": "ops"}))
        self.assertError(self.upload("/v1/certificates/preview",
                                     dict(fields, allow_upcoming="soon")), 400, "bad_request")
        self.assertEqual(self.vault.count_token_objects(), before)
        self.assertError(self.vault.request("GET", "/v1/certificates/ff-pv"), 404, "not_found")

    def test_url_and_position(self):
        port = self.serve()
        url = "https://127.0.0.1:%d" % port
        st, _, got = self.upload("/v1/certificates", {"name": "ff-url", "url": url,
                                                      "position": "1"})
        self.assertEqual((st, got.get("subject")), (201, "CN=Form Intermediate CA"), got)
        for pos, words in (("2", "0 to 1"), ("x", "server's own"), ("-1", "server's own"),
                           ("99999999999999999999", "server's own")):
            with self.subTest(position=pos):
                jpos = int(pos) if pos.lstrip("-").isdigit() and len(pos) < 19 else pos
                self.assertSameRefusal("/v1/certificates",
                                       {"name": "ff-url2", "url": url, "position": jpos},
                                       {"name": "ff-url2", "url": url, "position": pos},
                                       400, "bad_request", words)

    def test_generate_fields(self):
        st, _, got = self.upload("/v1/certificates", {
            "name": "ff-gen", "description": "made in the token",
            "generate.key": "p256", "generate.subject": "CN=gen.example.com",
            "generate.dns_names": "gen.example.com, www.gen.example.com",
            "generate.ip_addresses": "127.0.0.1", "generate.self_signed": "true",
            "generate.days": "30"})
        self.assertEqual(st, 201, got)
        self.assertEqual((got["domains"], got["ip_addresses"], got["key"]["origin"],
                          got["description"]),
                         (["gen.example.com", "www.gen.example.com"], ["127.0.0.1"],
                          "generated", "made in the token"), got)
        g = {"key": "p256", "subject": "CN=g2.example.com", "self_signed": True}
        fg = {"generate.key": "p256", "generate.subject": "CN=g2.example.com",
              "generate.self_signed": "true"}
        for extra, fextra, words in (
                ({"days": "x"}, {"generate.days": "x"}, "days"),
                ({"days": 0}, {"generate.days": "0"}, "days"),
                ({"colour": "red"}, {"generate.colour": "red"}, "unknown member"),
                ({"self_signed": "yes"}, {"generate.self_signed": "yes"}, "self_signed"),
                ({"dns_names": ["a", ""]}, {"generate.dns_names": "a,"}, "dns_names")):
            with self.subTest(extra=extra):
                self.assertSameRefusal("/v1/certificates",
                                       {"name": "ff-g2", "generate": dict(g, **extra)},
                                       dict({"name": "ff-g2"}, **dict(fg, **fextra)),
                                       400, "bad_request", words)
        # What a generated certificate does not take is refused, not dropped: its tags and
        # environments are set once it is merged (PATCH).
        for extra, fextra, words in (
                ({"tags": {"team": "ops"}}, {"tags.team": "ops"}, "PATCH"),
                ({"environments": ["production"]}, {"environments": "production"}, "PATCH"),
                ({"allow_upcoming": True}, {"allow_upcoming": "true"}, "allow_upcoming"),
                ({"position": 0}, {"position": "0"}, "position")):
            with self.subTest(extra=extra):
                self.assertSameRefusal("/v1/certificates",
                                       dict({"name": "ff-g2", "generate": g}, **extra),
                                       dict({"name": "ff-g2"}, **dict(fg, **fextra)),
                                       400, "bad_request", words)
        self.assertError(self.upload("/v1/certificates", {"name": "ff-g3", "generate": "p256"}),
                         400, "bad_request")

    def test_renew_and_replace_fields(self):
        m = self.material("ff-r1", san="ff-r.example.com")
        self.assertEqual(self.vault.import_cert("ff-r", m)[0], 201)
        st, _, body = self.vault.request("PUT", "/v1/services/ff-r-web", {
            "environment": "production", "domains": ["ff-r.example.com"]})
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("PUT", "/v1/services/ff-r-web/certificate",
                                         {"certificate": "ff-r"})
        self.assertEqual(st, 200, body)
        st, _, k1 = self.vault.request("POST", "/v1/jwks", {"certificate": "ff-r"})
        self.assertEqual(st, 201, k1)
        m2 = self.material("ff-r2", san="ff-r.example.com")
        files = {"certificate": ("r2.pem", m2.cert.encode()), "private_key": m2.key}
        jbody = {"certificate": m2.cert, "private_key": m2.key}
        for extra, fextra, status, code in (
                ({}, {}, 409, "jwk_choice_required"),
                ({"jwk_action": "update"}, {"jwk_action": "update"}, 400,
                 "confirmation_required"),
                ({"jwk_action": "sideways", "confirm": "ff-r"},
                 {"jwk_action": "sideways", "confirm": "ff-r"}, 400, "bad_request"),
                ({"version": 7}, {"version": "7"}, 412, "precondition_failed"),
                ({"allow_upcoming": "no"}, {"allow_upcoming": "no"}, 400, "bad_request"),
                ({"check_chain": "no"}, {"check_chain": "no"}, 400, "bad_request")):
            with self.subTest(extra=extra):
                self.assertSameRefusal("/v1/certificates/ff-r/renew", dict(jbody, **extra),
                                       dict(files, **fextra), status, code)
        st, _, got = self.upload("/v1/certificates/ff-r/renew", dict(
            files, version="1", jwk_action="update", confirm="ff-r", check_chain="true",
            allow_upcoming="false"))
        self.assertEqual(st, 200, got)
        self.assertEqual((got["version"], got["jwk_changes"]["action"],
                          [j["change"] for j in got["jwk_changes"]["jwks"]]),
                         (2, "update", ["superseded", "created"]), got)
        m3 = self.material("ff-r3", san="ff-r.example.com")
        st, _, got = self.upload("/v1/certificates/ff-r/replace", {
            "certificate": ("r3.pem", (m3.cert + m3.key).encode()), "version": "2",
            "jwk_action": "disconnect", "confirm": "ff-r"})
        self.assertEqual(st, 200, got)
        self.assertEqual([j["change"] for j in got["jwk_changes"]["jwks"]], ["disconnected"])
        # A renewal by generate from a form: generate.<member> fields, as for a new one.
        st, _, got = self.upload("/v1/certificates/ff-r/renew", {
            "generate.key": "p256", "generate.subject": "CN=ff-r.example.com",
            "generate.dns_names": "ff-r.example.com"})
        self.assertEqual((st, got.get("status"), got.get("renewal")), (201, "pending", True),
                         got)
        self.assertError(self.upload("/v1/certificates/ff-r/renew", {
            "generate.key": "p256", "generate.subject": "CN=x", "version": "3"}),
            400, "bad_request")
        st, _, got = self.vault.request("DELETE", "/v1/certificates/ff-r/pending")
        self.assertEqual(st, 200, got)

    def test_truststore_fields(self):
        port = self.serve()
        st, _, got = self.upload("/v1/truststore", {
            "alias": "ff-fetched", "url": "https://127.0.0.1:%d" % port, "keep": "all"})
        self.assertEqual(st, 201, got)
        third = Material(self.tmp, "ff-ca3", key="p256", cn="Form CA 3", ca=True)
        bundle = (third.cert + self.root.cert).encode()
        st, _, got = self.upload("/v1/truststore", {"aliases": "ff-third, ff-root",
                                                    "certificate": ("ca.pem", bundle)})
        self.assertEqual(st, 201, got)
        self.assertEqual(sorted(i["alias"] for i in got["items"]), ["ff-root", "ff-third"])
        other = Material(self.tmp, "ff-ca2", key="p256", cn="Form CA 2", ca=True)
        ca2 = ("ca2.pem", other.cert.encode())
        for extra, fextra, words in (
                ({"aliases": []}, {"aliases": ""}, "aliases"),
                ({"aliases": ["a", "b", "c"] * 6}, {"aliases": ",".join(["a", "b", "c"] * 6)},
                 "aliases"),
                ({"alias": "ff-x", "aliases": ["ff-y"]}, {"alias": "ff-x", "aliases": "ff-y"},
                 "aliases"),
                ({"alias": "ff-x", "keep": "all"}, {"alias": "ff-x", "keep": "all"}, "keep")):
            with self.subTest(extra=extra):
                self.assertSameRefusal("/v1/truststore", dict({"certificate": other.cert},
                                                              **extra),
                                       dict({"certificate": ca2}, **fextra), 400,
                                       "bad_request", words)


if __name__ == "__main__":
    unittest.main()
