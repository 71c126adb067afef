"""Text and arguments from outside (issue 16 items 1, 4, 6, 12, 14, 15, 16, 18), against a
real certvaultd: bytes that are not UTF-8 in a refused request's path, in a form's file part
and in a stored row; forged log lines; UTF-8 distinguished names; a CN that names no host;
names that differ only in case; unknown query arguments on every method; chains that do
not link to their certificate."""

import json
import os
import sqlite3
import unittest

from harness import Certvaultd, Material, VaultTestCase, run
from test_import_sources import form

HU = "F\u0151tan\u00fas\u00edtv\u00e1ny"  # "Főtanúsítvány": two bytes for each accent


class InputTest(VaultTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = Material(cls.tmp, "in-root", key="p384", cn="Gy\u00f6k\u00e9r CA", ca=True,
                            not_after=3650 * 86400)
        cls.inter = Material(cls.tmp, "in-inter", key="p256", cn=HU + " K\u00f6ztes",
                             ca=True, issuer=cls.root, not_after=1000 * 86400)
        cls.stranger = Material(cls.tmp, "in-stranger", key="p256", cn="Stranger CA",
                                ca=True, not_after=1000 * 86400)

    def leaf(self, name, **kw):
        kw.setdefault("san", name + ".example.com")
        kw.setdefault("issuer", self.inter)
        return self.material(name, **kw)

    def names(self):
        st, _, body = self.vault.request("GET", "/v1/certificates?limit=1000")
        self.assertEqual(st, 200, body)
        return sorted(i["name"] for i in body["items"])

    def audit_page(self, query=""):
        st, _, body = self.vault.request("GET", "/v1/audit?limit=1000" + query)
        self.assertEqual(st, 200, body)
        return body["items"]

    def db(self):
        return sqlite3.connect(self.vault.db, timeout=30)

    # item 1: an anonymous refused write with bytes that are not UTF-8 in its path
    def test_refused_write_with_bad_bytes_keeps_audit_readable(self):
        st, _, body = self.vault.request("DELETE", "/v1/certificates/%FFx%C3", token=None)
        self.assertEqual(st, 401, body)
        st, _, body = self.vault.request("DELETE", "/v1/jwks/a%0Ab%5C", token=None)
        self.assertEqual(st, 401, body)
        items = self.audit_page("&action=certificate.delete")
        targets = [i["target"] for i in items if i["outcome"] == "refused"]
        # Escaped, visibly and reversibly (the backslash of a record that needed escaping
        # is doubled), and cut on a character: the page answers.
        self.assertIn("\\xFFx\\xC3", targets)
        jwk = [i["target"] for i in self.audit_page("&action=jwk.delete")]
        self.assertIn("a\\x0Ab\\\\", jwk)
        # A long target is cut on a character: 150 two-byte characters do not fit. (An
        # action no other test here refuses without a token: a repeat within the audit's
        # repeat interval would be counted into the first record.)
        st, _, body = self.vault.request("DELETE", "/v1/tokens/" + "%C5%91" * 150,
                                         token=None)
        self.assertEqual(st, 401, body)
        cut = [i["target"] for i in self.audit_page("&action=token.revoke")]
        self.assertIn("\u0151" * 99, cut)
        st, _, verdict = self.vault.request("GET", "/v1/audit/verify")
        self.assertEqual(st, 200, verdict)
        self.assertTrue(verdict["intact"], verdict)
        # The same with a token: the path segment is refused before any handler sees it,
        # with an error that can be shown.
        st, _, body = self.vault.request("GET", "/v1/certificates/%FF")
        self.assertEqual(st, 400, body)
        self.assertIn("UTF-8", body["error"]["message"])
        st, _, body = self.vault.request("GET", "/v1/nothing/%FF%0A")
        self.assertEqual(st, 404, body)
        self.assertIn("\\xFF\\x0A", body["error"]["message"])

    # item 1: a stored value that is not renderable (an older release, a hand edit) is shown
    # escaped; no page fails because of one row
    def test_stored_bytes_that_are_not_utf8_render_escaped(self):
        m = self.leaf("in-stored")
        st, _, body = self.vault.import_cert("in-stored", m, description="fine")
        self.assertEqual(st, 201, body)
        with self.db() as db:
            db.execute("UPDATE certificates SET description = CAST(X'41FF0A42' AS TEXT)"
                       " WHERE name = 'in-stored'")
            db.execute("UPDATE audit_log SET actor_name = CAST(X'FE' AS TEXT),"
                       " fingerprints = fingerprints || CAST(X'20C0' AS TEXT)"
                       " WHERE seq = (SELECT max(seq) FROM audit_log)")
        st, _, body = self.vault.request("GET", "/v1/certificates/in-stored")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["description"], "A\\xFF\\x0AB")
        st, _, inv = self.vault.request("GET", "/v1/inventory?format=json")
        self.assertEqual(st, 200, inv)
        self.assertIn("A\\xFF\\x0AB", [i["description"] for i in inv["items"]])
        st, _, csv = self.vault.request("GET", "/v1/inventory?format=csv")
        self.assertEqual(st, 200, csv)
        csv.decode("utf-8")  # the whole export is UTF-8
        self.assertIn(b"A\\xFF\\x0AB", csv)
        page = self.audit_page()
        self.assertIn("\\xFE", [i["actor"]["name"] for i in page])
        self.assertIn("\\xC0", [f for i in page for f in (i["fingerprints"] or [])])
        # The edit is caught by the chain, and said so in an answer.
        st, _, verdict = self.vault.request("GET", "/v1/audit/verify")
        self.assertEqual(st, 200, verdict)
        self.assertFalse(verdict["intact"], verdict)
        with self.db() as db:
            db.execute("UPDATE certificates SET description = 'fine' WHERE name = 'in-stored'")

    # item 4: the request log's fields are escaped
    def test_log_lines_cannot_be_forged(self):
        forged = "/v1/certificates/x%0Acertvaultd:%20forged%20GET%20health%20200"
        st, _, body = self.vault.request("GET", forged, token=None)
        self.assertEqual(st, 401, body)
        st, _, body = self.vault.request("DELETE", "/v1/services/%C5%91%1B%5B2J", token=None)
        self.assertEqual(st, 401, body)
        log = self.vault.log()
        self.assertNotIn("\ncertvaultd: forged", log)
        self.assertIn("/v1/certificates/x\\x0Acertvaultd:\\x20forged\\x20GET", log)
        self.assertIn("/v1/services/\\xC5\\x91\\x1B[2J", log)
        self.assertNotIn("\x1b", log)

    # item 6: a text field sent as a file part is checked as text
    def test_form_text_fields_checked_whatever_the_part(self):
        m = self.leaf("in-form")
        before = self.names()
        for bad in (b"\xff\xfe", b"ok\x00", b"bell\x07"):
            ctype, data = form({"name": "in-form", "description": ("d.txt", bad),
                                "certificate": ("c.pem", m.cert.encode()),
                                "private_key": ("k.pem", m.key.encode())})
            st, _, body = self.vault.request("POST", "/v1/certificates", raw=data,
                                             headers={"Content-Type": ctype})
            self.assertEqual(st, 400, body)
            self.assertIn('"description"', body["error"]["message"])
            self.assertEqual(self.names(), before)
        ctype, data = form({"name": ("n.txt", b"in-\xffform"),
                            "certificate": ("c.pem", m.cert.encode()),
                            "private_key": ("k.pem", m.key.encode())})
        st, _, body = self.vault.request("POST", "/v1/certificates", raw=data,
                                         headers={"Content-Type": ctype})
        self.assertEqual(st, 400, body)
        # UTF-8 in a file part, newlines included, is text like any other.
        text = "Tan\u00fas\u00edtv\u00e1ny\nsecond line"
        ctype, data = form({"name": "in-form", "description": ("d.txt", text.encode()),
                            "certificate": ("c.pem", m.cert.encode()),
                            "private_key": ("k.pem", m.key.encode())})
        st, _, body = self.vault.request("POST", "/v1/certificates", raw=data,
                                         headers={"Content-Type": ctype})
        self.assertEqual(st, 201, body)
        self.assertEqual(body["description"], text)
        st, _, inv = self.vault.request("GET", "/v1/inventory?format=json")
        self.assertEqual(st, 200, inv)
        # And in JSON: control characters other than tab and newlines are refused.
        st, _, body = self.vault.request("PATCH", "/v1/certificates/in-form",
                                         {"description": "a\u001b[2Jb"})
        self.assertEqual(st, 400, body)

    # item 12: UTF-8 distinguished names everywhere a DN is shown
    def test_utf8_distinguished_names(self):
        m = self.leaf("in-dn", cn=HU + ", \"Kft\"")
        st, _, body = self.vault.import_cert("in-dn", m, chain=self.inter.cert)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["subject"], "CN=" + HU + "\\, \\\"Kft\\\"")
        self.assertEqual(body["issuer"], "CN=" + HU + " K\u00f6ztes")
        self.assertNotIn("\\C5", json.dumps(body, ensure_ascii=False))
        st, _, inv = self.vault.request("GET", "/v1/inventory?format=json")
        item = [i for i in inv["items"] if i["name"] == "in-dn"][0]
        self.assertEqual(item["subject"], body["subject"])
        self.assertEqual(item["issuer"], body["issuer"])
        st, _, csv = self.vault.request("GET", "/v1/inventory?format=csv")
        self.assertIn(("CN=" + HU + " K\u00f6ztes").encode(), csv)
        # In an error too: the chain entry is named by its DN.
        other = self.leaf("in-dn2")
        st, _, body = self.vault.import_cert("in-dn2", other, chain=self.root.cert)
        self.assertEqual(st, 422, body)
        self.assertIn("CN=Gy\u00f6k\u00e9r CA", body["error"]["message"])

    # item 14: only host names count as domains
    def test_cn_that_is_not_a_host_is_no_domain(self):
        m = self.material("in-signer", cn="Token Signer 2026")
        st, _, body = self.vault.import_cert("in-signer", m)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["domains"], [])
        self.assertEqual(body["common_name"], "Token Signer 2026")
        ip = self.material("in-ip", cn="192.0.2.44")
        st, _, body = self.vault.import_cert("in-ip", ip)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["domains"], [])
        self.assertEqual(body["ip_addresses"], ["192.0.2.44"])
        legacy = self.material("in-legacy", cn="Legacy.Example.ORG")
        st, _, body = self.vault.import_cert("in-legacy", legacy)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["domains"], ["legacy.example.org"])
        st, _, page = self.vault.request("GET", "/v1/certificates?q=in-&limit=1000")
        rows = {i["name"]: i for i in page["items"]}
        self.assertEqual(rows["in-signer"]["domain"], "")
        self.assertEqual(rows["in-signer"]["domains"], [])
        self.assertEqual(rows["in-ip"]["domain"], "192.0.2.44")
        self.assertEqual(rows["in-legacy"]["domain"], "legacy.example.org")
        st, _, page = self.vault.request("GET", "/v1/certificates?domain=token%20signer%202026")
        self.assertNotIn("in-signer", [i["name"] for i in page.get("items", [])])

    # item 15: names unique ignoring case, shown as given, found whatever the case
    def test_names_unique_ignoring_case(self):
        m = self.leaf("in-case")
        st, _, body = self.vault.import_cert("In-Case", m)
        self.assertEqual(st, 201, body)
        again = self.leaf("in-case2")
        st, _, body = self.vault.import_cert("IN-CASE", again)
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "name_taken")
        st, _, body = self.vault.request("GET", "/v1/certificates/in-case")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["name"], "In-Case")
        self.assertNotIn("IN-CASE", self.names())
        st, _, body = self.vault.request("GET", "/v1/certificates/summary")
        self.assertEqual(st, 200, body)
        st, _, body = self.vault.import_cert("Summary", self.leaf("in-summary"))
        self.assertEqual(st, 400, body)
        # API tokens: a live token's name, whatever the case.
        st, _, body = self.vault.request("POST", "/v1/tokens", {"name": "Deploy-In",
                                                                "role": "operator"})
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("POST", "/v1/tokens", {"name": "deploy-in",
                                                                "role": "auditor"})
        self.assertEqual(st, 409, body)
        # Truststore aliases.
        st, _, body = self.vault.request("POST", "/v1/truststore",
                                         {"alias": "In-Root", "certificate": self.root.cert})
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("POST", "/v1/truststore",
                                         {"alias": "in-root",
                                          "certificate": self.stranger.cert})
        self.assertEqual(st, 409, body)
        st, _, body = self.vault.request("GET", "/v1/truststore/IN-ROOT")
        self.assertEqual(st, 200, body)
        st, _, body = self.vault.request("DELETE", "/v1/truststore/in-ROOT")
        self.assertEqual(st, 200, body)
        # Delete confirmed by the name typed in another case.
        st, _, body = self.vault.request("DELETE", "/v1/certificates/IN-case?confirm=delete")
        self.assertEqual(st, 200, body)
        self.assertNotIn("In-Case", self.names())

    # item 16: an unknown query argument is refused on every method, naming it
    def test_unknown_query_arguments_refused_everywhere(self):
        m = self.leaf("in-query")
        before = self.names()
        st, _, body = self.vault.request(
            "POST", "/v1/certificates?dry_run=true",
            {"name": "in-query", "certificate": m.cert, "private_key": m.key})
        self.assertEqual(st, 400, body)
        self.assertIn("dry_run", body["error"]["message"])
        self.assertEqual(self.names(), before)
        st, _, body = self.vault.import_cert("in-query", m)
        self.assertEqual(st, 201, body)
        calls = [("PATCH", "/v1/certificates/in-query?force=1", {"description": "x"}),
                 ("PUT", "/v1/services/in-q-svc?upsert=no",
                  {"environment": "test", "domains": ["in-query.example.com"]}),
                 ("POST", "/v1/tokens?dry_run=true", {"name": "in-q", "role": "auditor"}),
                 ("POST", "/v1/jwks?x=1", {"certificate": "in-query"}),
                 ("GET", "/v1/certificates/in-query?verbose=1", None),
                 ("DELETE", "/v1/certificates/in-query?confirm=delete&now=1", None)]
        for method, path, body in calls:
            st, _, ans = self.vault.request(method, path, body)
            self.assertEqual(st, 400, (method, path, ans))
            arg = path.split("?")[1].split("&")[-1].split("=")[0]
            self.assertIn(arg, ans["error"]["message"])
        st, _, body = self.vault.request("GET", "/v1/certificates/in-query")
        self.assertEqual(body["description"], "")
        st, _, body = self.vault.request("GET", "/v1/services/in-q-svc")
        self.assertEqual(st, 404, body)
        # Known arguments still work, and their values must be text.
        st, _, body = self.vault.request("GET", "/v1/certificates?q=in-query&limit=5")
        self.assertEqual(st, 200, body)
        st, _, body = self.vault.request("GET", "/v1/certificates?q=%FF")
        self.assertEqual(st, 400, body)
        st, _, body = self.vault.request("GET", "/v1/certificates?q=a&q=b")
        self.assertEqual(st, 400, body)

    # item 18: a chain as an array of PEM strings; a chain that does not link is refused
    def test_chain_must_link_to_the_leaf(self):
        m = self.leaf("in-chain")
        before = self.names()
        # Array, root first: accepted and stored in issuing order.
        st, _, body = self.vault.import_cert("in-chain", m,
                                             chain=[self.root.cert, self.inter.cert])
        self.assertEqual(st, 201, body)
        self.assertEqual(body["chain_length"], 2)
        st, _, pem = self.vault.request("GET", "/v1/certificates/in-chain/export?format=chain")
        self.assertEqual(st, 200)
        blocks = pem.decode().split("-----END CERTIFICATE-----")
        self.assertEqual(len(blocks), 4)  # leaf, intermediate, root and the tail
        self.assertIn(self.inter.cert.split("-----BEGIN CERTIFICATE-----")[1].split("-----")[0]
                      .strip()[:64], blocks[1].replace("\n", ""))
        chain_file = os.path.join(self.tmp, "in-chain.chain.pem")
        with open(chain_file, "w") as f:
            f.write(pem.decode().split("-----END CERTIFICATE-----\n", 1)[1])
        run(["openssl", "verify", "-CAfile", self.root.cert_path, "-untrusted",
             self.inter.cert_path, m.cert_path])
        before = self.names()
        bad = self.leaf("in-chain-bad")
        for chain, entry in ((self.stranger.cert, "chain entry 1"),
                             ([self.stranger.cert], "chain entry 1"),
                             (self.root.cert, "chain entry 1"),
                             ([self.inter.cert, self.stranger.cert], "chain entry 2")):
            st, _, body = self.vault.import_cert("in-chain-bad", bad, chain=chain)
            self.assertEqual(st, 422, (chain, body))
            self.assertEqual(body["error"]["code"], "bad_chain")
            self.assertIn(entry, body["error"]["message"])
            self.assertEqual(self.names(), before)
        for chain in ([1], ["not pem"], [self.root.cert + self.inter.cert]):
            st, _, body = self.vault.import_cert("in-chain-bad", bad, chain=chain)
            self.assertEqual(st, 400, body)
        # Replace and a multipart upload take the same rule.
        st, _, body = self.vault.request("POST", "/v1/certificates/in-chain/replace",
                                         {"certificate": bad.cert, "private_key": bad.key,
                                          "chain": [self.stranger.cert]})
        self.assertEqual(st, 422, body)
        self.assertEqual(body["error"]["code"], "bad_chain")
        ctype, data = form({"name": "in-chain-up",
                            "certificate": ("c.pem", bad.cert.encode()),
                            "private_key": ("k.pem", bad.key.encode()),
                            "chain": ("chain.pem", self.root.cert.encode())})
        st, _, body = self.vault.request("POST", "/v1/certificates", raw=data,
                                         headers={"Content-Type": ctype})
        self.assertEqual(st, 422, body)
        self.assertEqual(body["error"]["code"], "bad_chain")
        self.assertEqual(self.names(), before)
        st, _, body = self.vault.request("GET", "/v1/certificates/in-chain")
        self.assertEqual(body["version"], 1)


class CaseMigrationTest(unittest.TestCase):
    """A database that already holds names differing only in case: the migration that makes
    names unique ignoring case stops, names them, and changes nothing."""

    def test_duplicates_named_and_nothing_changed(self):
        import shutil
        import tempfile
        tmp = tempfile.mkdtemp(prefix="cv-it-case-")
        try:
            vault = Certvaultd(tmp).start()
            st, _, body = vault.request("POST", "/v1/tokens", {"name": "deploy",
                                                               "role": "operator"})
            self.assertEqual(st, 201, body)
            self.assertEqual(vault.stop(), 0)
            # Back to the schema before the step, with a second "DEPLOY" as an older
            # certvault could have made.
            with sqlite3.connect(vault.db) as db:
                version = undo_later_steps(db)
                db.execute("DROP INDEX api_tokens_name_nocase")
                db.execute("DROP INDEX certificates_name_nocase")
                db.execute("DROP INDEX truststore_alias_nocase")
                db.execute("CREATE UNIQUE INDEX api_tokens_name ON api_tokens(name)"
                           " WHERE revoked_at = 0")
                db.execute("INSERT INTO api_tokens (id, name, role, secret_hash, created_at,"
                           " expires_at, revoked_at) SELECT 'cvt-dup', 'DEPLOY', role,"
                           " secret_hash, created_at, expires_at, revoked_at FROM api_tokens"
                           " WHERE name = 'deploy'")
                db.execute("PRAGMA user_version = %d" % (version - 1))
            with self.assertRaises(AssertionError) as ctx:
                vault.start()
            vault.logf.close()
            self.assertRegex(str(ctx.exception), r"API token (deploy / DEPLOY|DEPLOY / deploy)")
            self.assertIn("unique ignoring case", str(ctx.exception))
            with sqlite3.connect(vault.db) as db:
                self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], version - 1)
                self.assertEqual(db.execute("SELECT count(*) FROM api_tokens").fetchone()[0],
                                 3)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_cn_domains_of_older_releases_dropped(self):
        import shutil
        import tempfile
        tmp = tempfile.mkdtemp(prefix="cv-it-cn-")
        try:
            vault = Certvaultd(tmp).start()
            signer = Material(tmp, "signer", cn="Token Signer 2026")
            site = Material(tmp, "site", cn="site.example.com", san="site.example.com")
            for name, m in (("signer", signer), ("site", site)):
                st, _, body = vault.import_cert(name, m)
                self.assertEqual(st, 201, body)
            self.assertEqual(vault.stop(), 0)
            # What an older release stored: the CN, lower-cased, as the domain.
            with sqlite3.connect(vault.db) as db:
                version = undo_later_steps(db)
                db.execute("DROP INDEX api_tokens_name_nocase")
                db.execute("DROP INDEX certificates_name_nocase")
                db.execute("DROP INDEX truststore_alias_nocase")
                db.execute("CREATE UNIQUE INDEX api_tokens_name ON api_tokens(name)"
                           " WHERE revoked_at = 0")
                db.execute("UPDATE certificates SET primary_domain = 'token signer 2026'"
                           " WHERE name = 'signer'")
                db.execute("INSERT INTO certificate_domains SELECT id, 0, 'token signer 2026'"
                           " FROM certificates WHERE name = 'signer'")
                db.execute("PRAGMA user_version = %d" % (version - 1))
            vault.start()
            st, _, page = vault.request("GET", "/v1/certificates")
            rows = {i["name"]: i for i in page["items"]}
            self.assertEqual(rows["signer"]["domain"], "")
            self.assertEqual(rows["signer"]["domains"], [])
            self.assertEqual(rows["site"]["domain"], "site.example.com")
            self.assertEqual(rows["site"]["domains"], ["site.example.com"])
            self.assertEqual(vault.stop(), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def undo_later_steps(db):
    """Undoes the schema steps after the names step, so that the names step is the last
    again; returns the version it leaves, the names step's. The names step stays the last
    one (issue 17's model, 9 -> 10, runs before it), so there is none to undo today: new
    steps go before it."""
    return db.execute("PRAGMA user_version").fetchone()[0]


def escaped_dn(text):
    """A DN as an older release stored it: every byte outside ASCII as \\XX."""
    return "".join("\\%02X" % b if b >= 0x80 else chr(b) for b in text.encode())


def downgrade(db_path):
    """Back to the schema before the step this branch added (its indexes gone)."""
    with sqlite3.connect(db_path) as db:
        version = undo_later_steps(db)
        db.execute("DROP INDEX api_tokens_name_nocase")
        db.execute("DROP INDEX certificates_name_nocase")
        db.execute("DROP INDEX truststore_alias_nocase")
        db.execute("CREATE UNIQUE INDEX api_tokens_name ON api_tokens(name)"
                   " WHERE revoked_at = 0")
        db.execute("PRAGMA user_version = %d" % (version - 1))


class DnUpgradeTest(unittest.TestCase):
    """DNs an older release stored escaped are rewritten at the upgrade: they are labels and
    lookup keys (a CRL is found by its issuer's text), so a CA with a non-ASCII name keeps its
    CRL working: a revoked certificate is still refused."""

    def test_escaped_dns_rewritten_and_crl_still_found(self):
        import shutil
        import tempfile
        import test_revocation as tr
        tmp = tempfile.mkdtemp(prefix="cv-it-dn-")
        saved = tr.CNF
        try:
            tr.CNF = saved.replace("[req]\n", "[req]\nutf8 = yes\nstring_mask = utf8only\n")
            ca = tr.Ca(os.path.join(tmp, "ca"), "F\u0151")
        finally:
            tr.CNF = saved
        try:
            good, bad = ca.leaf("good"), ca.leaf("bad")
            ca.revoke(bad)
            crl = ca.crl()
            vault = Certvaultd(tmp).start()
            for alias, pem in (("u-root", ca.root), ("u-inter", ca.inter)):
                st, _, body = vault.request("POST", "/v1/truststore",
                                            {"alias": alias, "certificate": pem})
                self.assertEqual(st, 201, body)
            st, _, body = vault.request("POST", "/v1/truststore/crls", {"crl": crl})
            self.assertEqual(st, 201, body)
            issuer = "CN=F\u0151 Issuing CA"
            self.assertEqual(body["issuer"], issuer)
            st, _, body = vault.request("POST", "/v1/certificates", good.body(name="good"))
            self.assertEqual(st, 201, body)
            self.assertEqual(body["revocation"]["source"], "crl:" + issuer)
            self.assertEqual(vault.stop(), 0)
            downgrade(vault.db)
            with sqlite3.connect(vault.db) as db:
                for table, cols in (("certificates", ("subject", "issuer")),
                                    ("truststore", ("subject", "issuer")),
                                    ("crls", ("issuer",))):
                    for col in cols:
                        for rowid, text in db.execute("SELECT id, %s FROM %s" % (col, table)):
                            db.execute("UPDATE %s SET %s = ? WHERE id = ?" % (table, col),
                                       (escaped_dn(text), rowid))
                self.assertEqual(db.execute("SELECT issuer FROM crls").fetchone()[0],
                                 "CN=F\\C5\\91 Issuing CA")
            vault.start()
            st, _, crls = vault.request("GET", "/v1/truststore/crls")
            self.assertEqual([c["issuer"] for c in crls["items"]], [issuer])
            st, _, trust = vault.request("GET", "/v1/truststore/u-inter")
            self.assertEqual(trust["subject"], issuer)
            st, _, inv = vault.request("GET", "/v1/inventory?format=json")
            item = [i for i in inv["items"] if i["name"] == "good"][0]
            self.assertEqual(item["issuer"], issuer)
            st, _, metrics = vault.request("GET", "/metrics")
            self.assertIn(('issuer="%s"' % issuer).encode(), metrics)
            st, _, body = vault.request("POST", "/v1/certificates", bad.body(name="bad"))
            self.assertEqual(st, 422, body)
            self.assertEqual(body["error"]["code"], "revoked")
            self.assertEqual(vault.stop(), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
