"""GET /v1/inventory: every certificate and truststore entry as CSV (RFC 4180) and JSON, the
keys' attributes as the token reports them at export time, who may download it, and that the
body is streamed."""

import csv
import io
import json
import re
import unittest

from harness import SOFTHSM_MODULE, Material, VaultTestCase, run

# What a client sees in the description of one certificate: a comma, quotes, and a new line.
AWKWARD = 'payments, "EU" edge\nsecond line'
# An operator's description that a spreadsheet would run when the auditor opens the CSV.
FORMULA = '=HYPERLINK("http://attacker.example/","click")'


class InventoryTest(VaultTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        v = cls.vault
        cls.auditor = cls.make_token("inv-auditor", "auditor")
        cls.operator = cls.make_token("inv-operator", "operator")
        cls.certs = {}
        for name, key, san, extra in (
                ("alpha", "p256", "alpha.example.com", {"description": AWKWARD}),
                ("beta", "rsa2048", "beta.example.com,www.beta.example.com", {}),
                ("gamma", "ed25519", "gamma.example.com", {"description": FORMULA})):
            m = cls.material_for(name, key=key, san=san)
            st, _, body = v.import_cert(name, m, **extra)
            assert st == 201, body
            st, _, details = v.request("GET", "/v1/certificates/" + name)
            assert st == 200, details
            cls.certs[name] = details
        st, _, body = v.request("PUT", "/v1/services/web", {
            "environment": "production", "domains": ["alpha.example.com"]})
        assert st == 201, body
        st, _, body = v.request("PUT", "/v1/services/web-staging", {
            "environment": "staging", "domains": ["alpha.example.com"]})
        assert st == 201, body
        for svc in ("web", "web-staging"):
            st, _, body = v.request("PUT", "/v1/services/%s/certificate" % svc,
                                    {"certificate": "alpha"})
            assert st == 200, body
        st, _, body = v.request("POST", "/v1/jwks", {"certificate": "beta"})
        assert st == 201, body
        cls.beta_kid = body["kid"]
        ca = cls.material_for("root", cn='Inventory Root, "Test" CA', ca=True)
        st, _, body = v.request("POST", "/v1/truststore",
                                {"alias": "inventory-root", "certificate": ca.cert})
        assert st == 201, body
        st, _, cls.trusted = v.request("GET", "/v1/truststore/inventory-root")
        assert st == 200, cls.trusted

    @classmethod
    def make_token(cls, name, role):
        st, _, body = cls.vault.request("POST", "/v1/tokens", {"name": name, "role": role})
        assert st == 201, body
        return body["token"]

    @classmethod
    def material_for(cls, name, **kw):
        return Material(cls.tmp, name, **kw)

    def download(self, fmt, token=None):
        st, headers, body = self.vault.request("GET", "/v1/inventory?format=" + fmt,
                                               token=token or self.auditor)
        self.assertEqual(st, 200, body)
        if isinstance(body, (bytes, bytearray)):
            body = body.decode("utf-8")
        return headers, body

    def json_items(self):
        _, doc = self.download("json")
        self.assertEqual(doc["count"], len(doc["items"]))
        return {item["name"]: item for item in doc["items"]}

    @staticmethod
    def as_csv_text(value):
        """What the CSV holds for a JSON value."""
        if value is None:
            return ""
        if value is True:
            return "true"
        if value is False:
            return "false"
        if isinstance(value, list):
            value = " ".join(value)
        if isinstance(value, dict):  # tags: compact JSON, keys sorted
            value = __import__("json").dumps(value, sort_keys=True, separators=(",", ":"),
                                             ensure_ascii=False)
        value = str(value)
        # A cell a spreadsheet would run as a formula starts with a single quote.
        return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value

    def test_csv_reads_the_same_rows_as_the_json(self):
        _, doc = self.download("json")
        headers, text = self.download("csv")
        self.assertTrue(headers["content-type"].startswith("text/csv"), headers)
        rows = list(csv.reader(io.StringIO(text, newline="")))
        header, data = rows[0], rows[1:]
        items = doc["items"]
        self.assertEqual(header, list(items[0].keys()))
        self.assertEqual(len(data), len(items))
        self.assertEqual(len(items), 4)  # three certificates, one trusted CA
        for row, item in zip(data, items):
            with self.subTest(name=item["name"]):
                self.assertEqual(row, [self.as_csv_text(item[k]) for k in header])
        # The awkward description survives the round trip through a CSV reader.
        by_name = {r[header.index("name")]: r for r in data}
        self.assertEqual(by_name["alpha"][header.index("description")], AWKWARD)
        # The formula arrives as text: a single quote in front, the JSON unchanged.
        self.assertEqual(by_name["gamma"][header.index("description")], "'" + FORMULA)
        self.assertEqual([i for i in items if i["name"] == "gamma"][0]["description"], FORMULA)

    def test_csv_is_rfc4180(self):
        _, text = self.download("csv")
        raw = text.encode()
        # Every line ends with CRLF; the only bare LF is the one inside the quoted field.
        self.assertTrue(raw.endswith(b"\r\n"))
        self.assertEqual(raw.count(b"\n") - raw.count(b"\r\n"), 1)
        self.assertIn(b'"payments, ""EU"" edge\nsecond line"', raw)
        # A subject with a comma and quotes is one quoted field.
        subject = self.trusted["subject"]
        self.assertIn(",", subject)
        self.assertIn(('"' + subject.replace('"', '""') + '"').encode(), raw)
        self.assertTrue(raw.startswith(b"type,kind,name,description,subject,issuer,serial,"))

    def test_every_column_of_a_certificate(self):
        items = self.json_items()
        for name, details in self.certs.items():
            with self.subTest(name=name):
                it = items[name]
                self.assertEqual(it["type"], "certificate")
                self.assertEqual(it["description"], details["description"])
                self.assertEqual(it["subject"], details["subject"])
                self.assertEqual(it["issuer"], details["issuer"])
                self.assertEqual(it["serial"], details["serial_number"])
                self.assertEqual(it["sha256_fingerprint"], details["fingerprints"]["sha256"])
                self.assertEqual(it["key_bits"], details["public_key"]["bits"])
                self.assertEqual(it["not_before"], details["valid_from"])
                self.assertEqual(it["not_after"], details["valid_to"])
                self.assertEqual(it["status"], details["status"])
                self.assertEqual(it["version"], 1)
                self.assertEqual(it["domains"], details["domains"])
                self.assertEqual(it["key_pkcs11_uri"], details["key"]["pkcs11_uri"])
        self.assertEqual(items["alpha"]["key_type"], "ECDSA")
        self.assertEqual(items["beta"]["key_type"], "RSA")
        self.assertEqual(items["gamma"]["key_type"], "Ed25519")
        self.assertEqual(items["alpha"]["services"], ["web", "web-staging"])
        self.assertEqual(items["alpha"]["environments"], ["production", "staging"])
        self.assertEqual(items["beta"]["services"], [])
        self.assertEqual(items["beta"]["jwks"], [self.beta_kid])
        self.assertEqual(items["alpha"]["jwks"], [])

    def test_a_truststore_entry_has_no_key(self):
        it = self.json_items()["inventory-root"]
        self.assertEqual(it["type"], "truststore")
        self.assertEqual(it["subject"], self.trusted["subject"])
        self.assertEqual(it["sha256_fingerprint"], self.trusted["sha256_fingerprint"])
        self.assertEqual(it["not_after"], self.trusted["valid_to"])
        self.assertEqual(it["status"], "valid")
        for col in ("key_pkcs11_uri", "key_present", "key_sensitive", "key_extractable",
                    "key_always_sensitive", "key_never_extractable", "version"):
            self.assertIsNone(it[col], col)
        self.assertEqual(it["services"], [])

    def test_key_attributes_are_what_the_token_says(self):
        items = self.json_items()
        listing = self.vault.token_objects()
        blocks = re.split(r"\n(?=\S)", listing)
        for name, details in self.certs.items():
            with self.subTest(name=name):
                it = items[name]
                # Imported keys: sensitive and not extractable, and honestly neither
                # always sensitive nor never extractable (they existed outside the token).
                self.assertIs(it["key_present"], True)
                self.assertIs(it["key_sensitive"], True)
                self.assertIs(it["key_extractable"], False)
                self.assertIs(it["key_always_sensitive"], False)
                self.assertIs(it["key_never_extractable"], False)
                # pkcs11-tool, reading the same object, agrees.
                block = [b for b in blocks if b.startswith("Private Key Object")
                         and re.search(r"ID:\s*" + details["key"]["id"], b)]
                self.assertEqual(len(block), 1, listing)
                access = re.search(r"Access:\s*(.*)", block[0]).group(1)
                self.assertIn("sensitive", access)
                self.assertNotIn("always sensitive", access)
                self.assertNotIn("never extractable", access)
                self.assertNotIn("extractable,", access + ",")

    def test_a_key_gone_from_the_token_is_reported_absent(self):
        m = self.material_for("doomed", san="doomed.example.com")
        st, _, body = self.vault.import_cert("doomed", m)
        self.assertEqual(st, 201, body)
        key_id = body["key"]["id"]
        try:
            self.assertIs(self.json_items()["doomed"]["key_present"], True)
            # Another tool destroys the key behind certvault's back.
            run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.vault.label,
                 "--login", "--pin", "env:CV_TEST_PIN", "--delete-object", "--type",
                 "privkey", "--id", key_id],
                env=dict(self.vault.env(), CV_TEST_PIN=self.vault.pin))
            it = self.json_items()["doomed"]
            self.assertIs(it["key_present"], False)
            for col in ("key_sensitive", "key_extractable", "key_always_sensitive",
                        "key_never_extractable"):
                self.assertIsNone(it[col], col)
        finally:
            self.vault.request("DELETE", "/v1/certificates/doomed?confirm=delete")

    def test_streamed_as_an_attachment(self):
        for fmt in ("csv", "json"):
            with self.subTest(fmt=fmt):
                headers, _ = self.download(fmt)
                # Chunked: the length was not known when the answer began.
                self.assertEqual(headers.get("transfer-encoding"), "chunked")
                self.assertNotIn("content-length", headers)
                self.assertRegex(headers["content-disposition"],
                                 r'^attachment; filename="certvault-inventory-'
                                 r'\d{8}T\d{6}Z\.%s"$' % fmt)
        # No format: JSON, one document.
        st, headers, doc = self.vault.request("GET", "/v1/inventory", token=self.auditor)
        self.assertEqual(st, 200)
        self.assertRegex(doc["generated_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def test_who_may_download_it(self):
        st, _, _ = self.vault.request("GET", "/v1/inventory?format=csv")  # admin
        self.assertEqual(st, 200)
        self.assertError(self.vault.request("GET", "/v1/inventory?format=csv",
                                            token=self.operator), 403, "forbidden")
        self.assertError(self.vault.request("GET", "/v1/inventory?format=csv", token=None),
                         401, "unauthorized")
        self.assertError(self.vault.request("GET", "/v1/inventory?format=xml",
                                            token=self.auditor), 400, "bad_request")
        self.assertError(self.vault.request("GET", "/v1/inventory?format=csv&limit=5",
                                            token=self.auditor), 400, "bad_request")


if __name__ == "__main__":
    unittest.main()
