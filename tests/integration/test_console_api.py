"""Integration tests of what a console needs from the API (issue 17 items 4, 8-15, 17 and
issue 16 item 13): who am I, the details a dialog draws from, preview before saving, sorted
keyset lists with totals, any version's export, ETag/304, readable names; against a real
certvaultd with a real SoftHSM token and SQLite file."""

import datetime
import json
import random
import socket
import sqlite3
import subprocess
import time
import unittest
from urllib.parse import quote

from harness import VaultTestCase


def put_environment(vault, name):
    """Services name an existing environment (issue 17): made when missing."""
    st, _, body = vault.request("PUT", "/v1/environments/" + name, {})
    assert st in (200, 201), (st, body)


class MeTest(VaultTestCase):

    def token(self, name, role, days=None):
        body = {"name": name, "role": role}
        if days is not None:
            body["expires_in_days"] = days
        st, _, out = self.vault.request("POST", "/v1/tokens", body)
        self.assertEqual(st, 201, out)
        return out["token"]

    def test_me_by_role_matches_what_the_routes_allow(self):
        op = self.token("me-op", "operator", days=30)
        aud = self.token("me-aud", "auditor")
        st, _, admin = self.vault.request("GET", "/v1/me")
        self.assertEqual(st, 200, admin)
        self.assertEqual((admin["name"], admin["role"]), ("admin", "admin"))
        self.assertIsNone(admin["expires_at"])
        self.assertTrue(admin["can_write"] and admin["can_admin"] and admin["can_audit"])
        self.assertIn("token.create", admin["actions"])
        st, _, me = self.vault.request("GET", "/v1/me", token=op)
        self.assertEqual(st, 200, me)
        self.assertEqual((me["name"], me["role"]), ("me-op", "operator"))
        self.assertRegex(me["expires_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
        self.assertTrue(me["can_write"])
        self.assertFalse(me["can_admin"] or me["can_audit"])
        self.assertIn("certificate.import", me["actions"])
        self.assertNotIn("token.create", me["actions"])
        routes = {(r["method"], r["path"]) for r in me["allowed"]}
        self.assertIn(("POST", "/v1/certificates"), routes)
        self.assertNotIn(("GET", "/v1/audit"), routes)
        self.assertNotIn(("POST", "/v1/tokens"), routes)
        st, _, me = self.vault.request("GET", "/v1/me", token=aud)
        self.assertEqual(st, 200, me)
        self.assertEqual(me["role"], "auditor")
        # An auditor changes nothing; signing its own console session out is all it may do.
        self.assertEqual([a for a in me["actions"] if not a.startswith("session.")], [])
        self.assertFalse(me["can_write"])
        self.assertIn(("GET", "/v1/audit"), {(r["method"], r["path"]) for r in me["allowed"]})
        # What /v1/me says an auditor may not do is refused, and what it allows answers.
        for r in me["allowed"]:
            if r["path"] != "/v1/session":
                self.assertIsNone(r["action"], r)
        self.assertError(self.vault.request("POST", "/v1/tokens", {"name": "x",
                                                                   "role": "auditor"},
                                            token=aud), 403, "forbidden")
        self.assertEqual(self.vault.request("GET", "/v1/audit", token=aud)[0], 200)

    def test_me_refusals(self):
        self.assertError(self.vault.request("GET", "/v1/me", token=None), 401,
                         "unauthorized")
        self.assertError(self.vault.request("GET", "/v1/me", token="cvt_" + "0" * 16 + "_" +
                                            "A" * 43), 401, "unauthorized")
        self.assertError(self.vault.request("GET", "/v1/me?x=1"), 400, "bad_request")
        self.assertError(self.vault.request("POST", "/v1/me", {}), 405,
                         "method_not_allowed")


RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$"


class DetailsTest(VaultTestCase):
    """Item 9: what the details dialog draws without a second request or a first attempt."""

    def token(self, name, role):
        st, _, out = self.vault.request("POST", "/v1/tokens", {"name": name, "role": role})
        self.assertEqual(st, 201, out)
        return out["token"]

    def get(self, name):
        st, _, body = self.vault.request("GET", "/v1/certificates/" + name)
        self.assertEqual(st, 200, body)
        return body

    def test_details_say_who_chain_jwks_and_what_a_delete_needs(self):
        root = self.material("d-root", ca=True, cn="Details Root CA", key="p384")
        inter = self.material("d-inter", ca=True, cn="Details Issuing CA", issuer=root)
        leaf = self.material("d-leaf", san="d.example.com", issuer=inter)
        op = self.token("deployer", "operator")
        st, _, body = self.vault.request("POST", "/v1/certificates", {
            "name": "dleaf", "certificate": leaf.cert, "private_key": leaf.key,
            "chain": inter.cert + root.cert}, token=op)
        self.assertEqual(st, 201, body)
        d = self.get("dleaf")
        self.assertEqual((d["created_by"], d["updated_by"]), ("deployer", "deployer"))
        self.assertEqual(d["signature_algorithm_name"], "ECDSA with SHA-256")
        self.assertEqual(d["revocation"]["status"], "not_checked")
        self.assertRegex(d["revocation"]["checked_at"], RFC3339)
        # The chain as stored, each entry with the view every certificate has.
        self.assertEqual(d["chain_length"], 2)
        self.assertEqual([(c["subject"], c["issuer"]) for c in d["chain"]],
                         [("CN=Details Issuing CA", "CN=Details Root CA"),
                          ("CN=Details Root CA", "CN=Details Root CA")])
        for c in d["chain"]:
            self.assertRegex(c["valid_from"], RFC3339)
            self.assertRegex(c["valid_to"], RFC3339)
            self.assertTrue(c["is_ca"])
            self.assertEqual(c["status"], "valid")
        self.assertEqual(d["chain"][1]["public_key"]["curve"], "P-384")
        # Nothing stands in the way of a delete: the word is "delete".
        self.assertEqual((d["jwks"], d["jwk_count"], d["in_use"], d["delete_allowed"],
                          d["delete_confirmation"]), ([], 0, False, True, "delete"))
        # An edit by the admin: updated_by follows, created_by stays.
        st, _, d = self.vault.request("PATCH", "/v1/certificates/dleaf",
                                      {"description": "edited"})
        self.assertEqual(st, 200, d)
        self.assertEqual((d["created_by"], d["updated_by"]), ("deployer", "admin"))
        # A linked JWK: the delete needs the name typed and a jwk_action.
        st, _, jwk = self.vault.request("POST", "/v1/jwks", {"certificate": "dleaf"})
        self.assertEqual(st, 201, jwk)
        d = self.get("dleaf")
        self.assertEqual(d["jwk_count"], 1)
        self.assertEqual(d["jwks"], [{"kid": jwk["kid"], "alg": "ES256", "use": "sig",
                                      "state": "active", "made_from_version": 1}])
        self.assertEqual(d["delete_confirmation"], "dleaf")
        self.assertTrue(d["delete"]["jwk_action_required"])
        # A service using it: the delete is not allowed now, and says who blocks it.
        put_environment(self.vault, "prod")
        st, _, _ = self.vault.request("PUT", "/v1/services/dsvc", {
            "environment": "prod", "domains": ["d.example.com"]})
        self.assertEqual(st, 201)
        st, _, _ = self.vault.request("PUT", "/v1/services/dsvc/certificate",
                                      {"certificate": "dleaf"})
        self.assertEqual(st, 200)
        d = self.get("dleaf")
        self.assertTrue(d["in_use"])
        self.assertFalse(d["delete_allowed"])
        self.assertEqual(d["delete"]["blocked_by_services"], ["dsvc"])
        # ... and the delete itself agrees with what the view said.
        self.assertError(self.vault.request(
            "DELETE", "/v1/certificates/dleaf?confirm=dleaf&jwk_action=delete"), 409, "in_use")
        # Renewed by the operator: updated_by follows, the JWK superseded shows as such.
        leaf2 = self.material("d-leaf2", san="d.example.com", issuer=inter)
        st, _, body = self.vault.request("POST", "/v1/certificates/dleaf/renew", {
            "certificate": leaf2.cert, "private_key": leaf2.key, "chain": inter.cert,
            "jwk_action": "update", "confirm": "dleaf"}, token=op)
        self.assertEqual(st, 200, body)
        d = self.get("dleaf")
        self.assertEqual((d["created_by"], d["updated_by"]), ("deployer", "deployer"))
        self.assertEqual(d["chain_length"], 1)
        self.assertEqual(sorted(j["state"] for j in d["jwks"]), ["active", "superseded"])


class PreviewTest(VaultTestCase):
    """Item 4: every check of an import, every problem named, nothing stored."""

    def preview(self, body, token=True):
        return self.vault.request("POST", "/v1/certificates/preview", body, token=token)

    def state(self):
        st, _, lst = self.vault.request("GET", "/v1/certificates?limit=1000")
        self.assertEqual(st, 200)
        st, _, audit = self.vault.request("GET", "/v1/audit?limit=1000")
        return ([i["name"] for i in lst["items"]], self.vault.count_token_objects(),
                len(audit["items"]))

    def test_preview_names_every_problem_and_stores_nothing(self):
        good = self.material("p-good", san="p.example.com")
        other = self.material("p-other", san="p.example.com")
        old = self.material("p-old", san="old.example.com", not_before=-20 * 86400,
                            not_after=-86400, md="sha1")
        st, _, body = self.vault.import_cert("taken", good)
        self.assertEqual(st, 201, body)
        before = self.state()
        # A good one: the details that would be stored, no problem.
        st, _, p = self.preview({"name": "fresh", "description": "d", "certificate": good.cert,
                                 "private_key": good.key})
        self.assertEqual(st, 200, p)
        self.assertEqual((p["ok"], p["stored"], p["problems"]), (True, False, []))
        c = p["certificate"]
        self.assertEqual((c["name"], c["description"], c["domains"], c["status"]),
                         ("fresh", "d", ["p.example.com"], "valid"))
        self.assertEqual(c["fingerprints"]["sha256"], body["fingerprints"]["sha256"])
        self.assertEqual(c["signature_algorithm_name"], "ECDSA with SHA-256")
        self.assertTrue(c["has_private_key"])
        self.assertEqual(p["revocation"]["status"], "not_checked")
        # Everything wrong at once: the name is taken, the certificate expired and is
        # signed with SHA-1, the key is another one's. Each is named, in the import's order.
        st, _, p = self.preview({"name": "taken", "certificate": old.cert,
                                 "private_key": other.key})
        self.assertEqual(st, 200, p)
        self.assertFalse(p["ok"])
        self.assertEqual([x["code"] for x in p["problems"]],
                         ["expired", "weak_signature", "key_mismatch", "name_taken"])
        for x in p["problems"]:
            self.assertTrue(x["message"])
            self.assertEqual(x["status"], 409 if x["code"] == "name_taken" else 422)
        self.assertEqual(p["certificate"]["status"], "expired")
        self.assertEqual(p["certificate"]["signature_algorithm_name"], "ECDSA with SHA-1")
        # The import itself refuses the same material with the first of them.
        self.assertError(self.vault.import_cert("taken", old), 422, "expired")
        # A key that cannot be read still lets the certificate be seen.
        st, _, p = self.preview({"name": "bad name", "certificate": good.cert,
                                 "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                                "-----END PRIVATE KEY-----\n"})
        self.assertEqual(st, 200, p)
        self.assertEqual([x["code"] for x in p["problems"]], ["invalid_name", "bad_encoding"])
        self.assertEqual(p["certificate"]["domains"], ["p.example.com"])
        self.assertFalse(p["certificate"]["has_private_key"])
        # Nothing that cannot be read at all: no details, the problem named.
        st, _, p = self.preview({"name": "x", "certificate": "not a certificate",
                                 "private_key": good.key})
        self.assertEqual(st, 200, p)
        self.assertIsNone(p["certificate"])
        self.assertEqual([x["code"] for x in p["problems"]], ["bad_encoding"])
        # An upload previews like an upload imports.
        boundary = "cvprev"
        form = ("--%s\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nup\r\n"
                "--%s\r\nContent-Disposition: form-data; name=\"certificate\"; "
                "filename=\"all.pem\"\r\n\r\n%s%s\r\n--%s--\r\n" % (
                    boundary, boundary, good.cert, good.key, boundary)).encode()
        st, _, p = self.vault.request("POST", "/v1/certificates/preview", raw=form, headers={
            "Content-Type": "multipart/form-data; boundary=" + boundary})
        self.assertEqual(st, 200, p)
        self.assertEqual((p["ok"], p["certificate"]["name"]), (True, "up"))
        # Malformed requests are refused as the import refuses them.
        self.assertError(self.preview({"name": "x"}), 400, "bad_request")
        self.assertError(self.preview({"name": "x", "certificate": good.cert,
                                       "private_key": good.key, "dry": 1}), 400, "bad_request")
        # Who may import may preview; nobody else.
        st, _, aud = self.vault.request("POST", "/v1/tokens", {"name": "p-aud",
                                                               "role": "auditor"})
        self.assertError(self.preview({"name": "x", "certificate": good.cert,
                                       "private_key": good.key}, token=aud["token"]),
                         403, "forbidden")
        self.assertError(self.preview({"name": "x", "certificate": good.cert,
                                       "private_key": good.key}, token=None),
                         401, "unauthorized")
        # No row, no key object, no audit record of a change came of any of it (the two
        # refusals above are audited as refused attempts at nothing: they add no record
        # either, since a preview is not a change).
        after = self.state()
        self.assertEqual(after[0], before[0])
        self.assertEqual(after[1], before[1])
        self.assertEqual(after[2], before[2] + 2)  # the token created, the refused import


class ListTest(VaultTestCase):
    """Item 8: sorts with keyset paging, total for the filter, several statuses, description
    and serial/issuer search, environment and service filters. Rows are written straight
    into the SQLite file (as scripts/bench does) beside a few imported through the API: the
    list never reads the token, and expired or upcoming rows cannot be imported."""

    DAY = 86400

    ROWS = 2100

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rows = cls.insert_rows(cls.vault.db, cls.ROWS)

    @staticmethod
    def insert_rows(path, n):
        rng = random.Random(17)
        now = int(time.time())
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        db.execute("BEGIN IMMEDIATE")
        rows = {}
        for i in range(n):
            name = "row-%06d" % i
            kind = i % 10
            if kind == 0:      # expired
                nb, na = now - 400 * 86400, now - rng.randint(1, 300) * 86400
            elif kind == 1:    # upcoming
                nb, na = now + rng.randint(1, 60) * 86400, now + rng.randint(100, 400) * 86400
            elif kind == 2:    # expires soon
                nb, na = now - 86400, now + rng.randint(1, 20) * 86400
            else:
                nb, na = now - 86400, now + rng.randint(40, 800) * 86400
            # Several rows share a not_after and an updated_at: the name breaks the tie.
            na -= na % 3600
            upd = now - rng.randint(0, 50) * 60
            db.execute(
                "INSERT INTO certificates (name, description, state, cert_der, chain_pem,"
                " subject, issuer, serial, sha256_fingerprint, key_description,"
                " primary_domain, not_before, not_after, key_id, created_at, updated_at,"
                " version, current_since) VALUES (?, ?, 1, x'3000', '', ?, ?, ?, ?,"
                " 'ECDSA P-256', ?, ?, ?, ?, ?, ?, 1, ?)",
                (name, "team %d" % (i % 7), "CN=%s.example.net" % name,
                 "CN=Row CA %d" % (i % 3), "%016X" % i, "00", name + ".example.net", nb, na,
                 rng.randbytes(16), upd, upd, upd))
            rows[name] = (nb, na, upd)
        db.execute("COMMIT")
        db.close()
        return rows

    def list(self, query):
        st, _, body = self.vault.request("GET", "/v1/certificates?" + query)
        self.assertEqual(st, 200, body)
        return body

    def walk(self, query, limit):
        names, cursor, total = [], None, None
        while True:
            q = query + "&limit=%d" % limit + ("&cursor=" + quote(cursor) if cursor else "")
            body = self.list(q)
            if total is None:
                total = body["total"]
            self.assertEqual(body["total"], total)
            names += [i["name"] for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return names, total

    def status_of(self, name, now):
        nb, na, _ = self.rows[name]
        if nb > now:
            return "upcoming"
        if na < now:
            return "expired"
        return "expires_soon" if na - now < 30 * 86400 else "valid"

    def test_2_every_sort_and_order(self):
        now = int(time.time())
        rank = {"expired": 0, "expires_soon": 1, "valid": 2, "upcoming": 3}
        q = "q=team%206"   # 1 row in 7: every sort walked whole with small pages
        subset = [n for n in self.rows if int(n[4:]) % 7 == 6]
        keys = {
            "name": lambda n: n,
            "valid_to": lambda n: (self.rows[n][1], n),
            "expires_in": lambda n: (self.rows[n][1], n),
            "updated_at": lambda n: (self.rows[n][2], n),
            "status": lambda n: (self.rows[n][0] > now, self.rows[n][1], n),
        }
        for sort, key in keys.items():
            for order in ("asc", "desc"):
                with self.subTest(sort=sort, order=order):
                    names, total = self.walk("%s&sort=%s&order=%s" % (q, sort, order), 7)
                    want = sorted(subset, key=key, reverse=order == "desc")
                    self.assertEqual(total, len(want))
                    self.assertEqual(names, want)
        # The status order is the urgency order.
        names, _ = self.walk(q + "&sort=status", 100)
        ranks = [rank[self.status_of(n, now)] for n in names]
        self.assertEqual(ranks, sorted(ranks))

    def test_3_filters(self):
        now = int(time.time())
        # Several statuses at once.
        body = self.list("status=expired,expires_soon&limit=5")
        want = [n for n in self.rows if self.status_of(n, now) in ("expired", "expires_soon")]
        self.assertEqual(body["total"], len(want))
        for item in body["items"]:
            self.assertIn(item["status"], ("expired", "expires_soon"))
        # The description is in the items and matched by q; so are serial and issuer.
        body = self.list("q=team%203&limit=1")
        self.assertEqual(body["total"], len([n for n in self.rows if int(n[4:]) % 7 == 3]))
        self.assertEqual(body["items"][0]["description"], "team 3")
        body = self.list("q=0000000000000833")   # the serial of row 2099 (0x833)
        self.assertEqual([i["name"] for i in body["items"]], ["row-002099"])
        body = self.list("q=Row%20CA%202&limit=1")
        self.assertEqual(body["total"], len([n for n in self.rows if int(n[4:]) % 3 == 2]))
        # By environment (ignoring case) and by service: the certificates they use.
        m = self.material("l-api", san="l.example.com")
        st, _, _ = self.vault.import_cert("l-api", m)
        self.assertEqual(st, 201)
        for svc, env in (("l-svc1", "Acceptance"), ("l-svc2", "production")):
            put_environment(self.vault, env)
            st, _, _ = self.vault.request("PUT", "/v1/services/" + svc, {
                "environment": env, "domains": ["l.example.com"]})
            self.assertEqual(st, 201)
        st, _, _ = self.vault.request("PUT", "/v1/services/l-svc1/certificate",
                                      {"certificate": "l-api"})
        self.assertEqual(st, 200)
        body = self.list("environment=acceptance")
        self.assertEqual(([i["name"] for i in body["items"]], body["total"]), (["l-api"], 1))
        self.assertEqual(self.list("environment=production")["total"], 0)
        self.assertEqual([i["name"] for i in self.list("service=l-svc1")["items"]], ["l-api"])
        self.assertEqual(self.list("service=l-svc2")["total"], 0)

    def test_4_refusals(self):
        for q in ("sort=size", "order=up", "status=valid,valid", "status=valid,", "status=bad",
                  "sort=valid_to&cursor=row-000001", "cursor=va_0_5_row-000001",
                  "sort=valid_to&cursor=vd_0_5_row-000001", "sort=valid_to&cursor=va_0_x_a",
                  "environment=a%20b", "service=a_b", "limit=0", "limit=1001", "sorting=name"):
            with self.subTest(q=q):
                self.assertError(self.vault.request("GET", "/v1/certificates?" + q), 400,
                                 "bad_request")


class VersionsAndEtagTest(VaultTestCase):
    """Item 13: export of any version; ETag and 304 on details, export, services, lists."""

    def test_export_any_version(self):
        root = self.material("e-root", ca=True, cn="Export Root")
        one = self.material("e-1", san="e.example.com", issuer=root)
        two = self.material("e-2", san="e.example.com")
        st, _, body = self.vault.request("POST", "/v1/certificates", {
            "name": "exp", "certificate": one.cert, "private_key": one.key,
            "chain": root.cert})
        self.assertEqual(st, 201, body)
        st, _, jwk1 = self.vault.request("GET", "/v1/certificates/exp/export?format=jwk")
        self.assertEqual(st, 200)
        st, _, body = self.vault.request("POST", "/v1/certificates/exp/replace", {
            "certificate": two.cert, "private_key": two.key})
        self.assertEqual(st, 200, body)

        def export(q):
            return self.vault.request("GET", "/v1/certificates/exp/export?" + q)

        st, hdrs, pem = export("format=pem&version=1")
        self.assertEqual(st, 200)
        self.assertEqual(pem.decode(), one.cert)
        self.assertIn('filename="exp-v1.pem"', hdrs["content-disposition"])
        st, _, chain = export("format=chain&version=1")
        self.assertEqual(chain.decode(), one.cert + root.cert)
        st, _, der = export("format=der&version=1")
        self.assertEqual(der, one.cert_der())
        st, _, jwk = export("format=jwk&version=1")
        self.assertEqual(jwk, jwk1 if isinstance(jwk1, bytes) else jwk1)
        # The current version, by number or not.
        self.assertEqual(export("format=pem&version=2")[2].decode(), two.cert)
        self.assertEqual(export("format=pem")[2].decode(), two.cert)
        self.assertEqual(export("format=chain&version=2")[2].decode(), two.cert)
        # Refusals.
        msg = self.assertError(export("format=pem&version=3"), 404, "not_found")
        self.assertIn("1 to 2", msg)
        for q in ("format=pem&version=0", "format=pem&version=x", "format=pem&version=-1",
                  "format=pem&version=1&version=2"):
            with self.subTest(q=q):
                self.assertError(export(q), 400, "bad_request")
        self.assertError(self.vault.request(
            "GET", "/v1/certificates/nope/export?format=pem&version=1"), 404, "not_found")

    def conditional(self, path):
        """The route answers with an ETag, then 304 and no body for it; returns the tag."""
        st, hdrs, body = self.vault.request("GET", path)
        self.assertEqual(st, 200, body)
        tag = hdrs["etag"]
        self.assertRegex(tag, r'^"[^"]+"$')
        st, hdrs2, body2 = self.vault.request("GET", path, headers={"If-None-Match": tag})
        self.assertEqual((st, body2, hdrs2["etag"]), (304, b"", tag), path)
        st, _, _ = self.vault.request("GET", path, headers={"If-None-Match": '"other", ' + tag})
        self.assertEqual(st, 304, path)
        st, _, _ = self.vault.request("GET", path, headers={"If-None-Match": '"other"'})
        self.assertEqual(st, 200, path)
        return tag

    def test_etag_and_304_on_each_route(self):
        m = self.material("c-1", san="c.example.com")
        st, _, _ = self.vault.import_cert("cond", m)
        self.assertEqual(st, 201)
        put_environment(self.vault, "prod")
        st, _, _ = self.vault.request("PUT", "/v1/services/csvc", {
            "environment": "prod", "domains": ["c.example.com"]})
        self.assertEqual(st, 201)
        paths = ["/v1/certificates/cond", "/v1/certificates/cond/export?format=pem",
                 "/v1/certificates/cond/export?format=chain", "/v1/certificates/cond/versions",
                 "/v1/services/csvc", "/v1/services", "/v1/certificates",
                 "/v1/certificates?status=valid&sort=valid_to", "/v1/certificates/summary",
                 "/v1/truststore", "/v1/me"]
        tags = {p: self.conditional(p) for p in paths}
        # A change that keeps the version (a bind, an edit) moves the details' tag, and
        # the old tag then gets the whole answer.
        st, _, _ = self.vault.request("PUT", "/v1/services/csvc/certificate",
                                      {"certificate": "cond"})
        self.assertEqual(st, 200)
        st, _, _ = self.vault.request("PATCH", "/v1/certificates/cond", {"description": "x"})
        self.assertEqual(st, 200)
        for p in ("/v1/certificates/cond", "/v1/services/csvc", "/v1/services",
                  "/v1/certificates"):
            st, hdrs, body = self.vault.request("GET", p, headers={"If-None-Match": tags[p]})
            self.assertEqual(st, 200, p)
            self.assertNotEqual(hdrs["etag"], tags[p], p)
        # The export did not change, and says so.
        st, _, _ = self.vault.request("GET", "/v1/certificates/cond/export?format=pem",
                                      headers={"If-None-Match": tags[paths[1]]})
        self.assertEqual(st, 304)
        # The details' tag starts with the version tag, which If-Match takes as it is.
        st, hdrs, d = self.vault.request("GET", "/v1/certificates/cond")
        self.assertTrue(hdrs["etag"].startswith(d["etag"][:-1] + "."))
        m2 = self.material("c-2", san="c.example.com")
        st, _, body = self.vault.request("POST", "/v1/certificates/cond/renew", {
            "certificate": m2.cert, "private_key": m2.key}, headers={"If-Match": hdrs["etag"]})
        self.assertEqual(st, 200, body)
        self.assertError(self.vault.request("POST", "/v1/certificates/cond/renew", {
            "certificate": m2.cert, "private_key": m2.key}, headers={"If-Match": hdrs["etag"]}),
            409, "already_renewed")
        # Errors are never 304.
        st, _, _ = self.vault.request("GET", "/v1/certificates/nope",
                                      headers={"If-None-Match": "*"})
        self.assertEqual(st, 404)


class TrustListTest(VaultTestCase):
    """Item 12 and issue 16 item 13: truststore search and paging like certificates, a file
    upload like certificates, and the one view every certificate has."""

    def test_search_paging_upload(self):
        cas = [self.material("t-ca%d" % i, ca=True, cn="Search CA %d" % i, key=k)
               for i, k in enumerate(("p256", "rsa2048", "p384", "p256", "ed25519"))]
        for i, ca in enumerate(cas[:4]):
            st, _, body = self.vault.request("POST", "/v1/truststore", {
                "alias": "t-ca%d" % i, "certificate": ca.cert})
            self.assertEqual(st, 201, body)
        # An upload: the file's bytes (DER here), its form recognised.
        boundary = "cvtrust"
        der = cas[4].cert_der()
        form = (("--%s\r\nContent-Disposition: form-data; name=\"alias\"\r\n\r\nt-ca4\r\n"
                 "--%s\r\nContent-Disposition: form-data; name=\"certificate\"; "
                 "filename=\"ca.der\"\r\nContent-Type: application/pkix-cert\r\n\r\n" % (
                     boundary, boundary)).encode() + der + ("\r\n--%s--\r\n" % boundary).encode())
        st, _, body = self.vault.request("POST", "/v1/truststore", raw=form, headers={
            "Content-Type": "multipart/form-data; boundary=" + boundary})
        self.assertEqual(st, 201, body)
        self.assertEqual(body["items"][0]["public_key"]["type"], "OKP")
        self.assertEqual(body["items"][0]["signature_algorithm_name"], "Ed25519")
        # An upload that says "encoding" is refused as for certificates.
        form2 = form.replace(b"t-ca4", b"t-ca5").replace(
            ("--%s--" % boundary).encode(),
            ("--%s\r\nContent-Disposition: form-data; name=\"encoding\"\r\n\r\npem\r\n"
             "--%s--" % (boundary, boundary)).encode())
        self.assertError(self.vault.request("POST", "/v1/truststore", raw=form2, headers={
            "Content-Type": "multipart/form-data; boundary=" + boundary}), 400, "bad_request")
        # Paging: every entry once, in alias order, total the same on every page.
        seen, cursor = [], None
        while True:
            st, _, page = self.vault.request(
                "GET", "/v1/truststore?limit=2" + ("&cursor=" + cursor if cursor else ""))
            self.assertEqual(st, 200, page)
            self.assertEqual(page["total"], 5)
            seen += [e["alias"] for e in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(seen, ["t-ca%d" % i for i in range(5)])
        # Search: alias, subject, issuer, serial, fingerprint; any case.
        st, _, page = self.vault.request("GET", "/v1/truststore?q=search%20ca%203")
        self.assertEqual(([e["alias"] for e in page["items"]], page["total"]), (["t-ca3"], 1))
        fp = page["items"][0]["fingerprints"]["sha256"][:20]
        st, _, page = self.vault.request("GET", "/v1/truststore?q=" + fp)
        self.assertEqual([e["alias"] for e in page["items"]], ["t-ca3"])
        st, _, page = self.vault.request("GET", "/v1/truststore?q=t-ca&limit=1")
        self.assertEqual((page["total"], len(page["items"]), page["next_cursor"]),
                         (5, 1, "t-ca0"))
        st, _, page = self.vault.request("GET", "/v1/truststore?q=%25")
        self.assertEqual(page["total"], 0)   # % matches itself, not everything
        # Each entry has the details view a certificate has (issue 16 item 13).
        st, _, e = self.vault.request("GET", "/v1/truststore/t-ca1")
        self.assertEqual((e["public_key"]["type"], e["public_key"]["bits"],
                          e["public_key"]["curve"]), ("RSA", 2048, None))
        self.assertEqual(e["signature_algorithm_name"], "SHA-256 with RSA")
        self.assertRegex(e["fingerprints"]["sha1"], r"^([0-9A-F]{2}:){19}[0-9A-F]{2}$")
        for k in ("subject", "issuer", "serial_number", "valid_from", "valid_to", "domains",
                  "common_name", "status", "expires_in_days"):
            self.assertIn(k, e)
        for q in ("limit=0", "limit=1001", "cursor=a_b", "sort=name"):
            self.assertError(self.vault.request("GET", "/v1/truststore?" + q), 400,
                             "bad_request")


class JwkOutcomeTest(VaultTestCase):
    """Items 10 and 11: renew/replace answers say what became of the JWKs and of every
    service; domain_not_covered names every service and domain; the management listing."""

    def test_renew_replace_answers_and_management_listing(self):
        m1 = self.material("o-1", san="a.o.example,b.o.example")
        st, _, _ = self.vault.import_cert("ocert", m1)
        self.assertEqual(st, 201)
        for svc, dom in (("o-a", "a.o.example"), ("o-b", "b.o.example")):
            put_environment(self.vault, "prod")
            st, _, _ = self.vault.request("PUT", "/v1/services/" + svc, {
                "environment": "prod", "domains": [dom]})
            self.assertEqual(st, 201)
            st, _, _ = self.vault.request("PUT", "/v1/services/%s/certificate" % svc,
                                          {"certificate": "ocert"})
            self.assertEqual(st, 200)
        st, _, j1 = self.vault.request("POST", "/v1/jwks", {"certificate": "ocert"})
        self.assertEqual(st, 201, j1)
        # A certificate covering neither service: both named, each with its domain.
        bad = self.material("o-bad", san="c.o.example")
        msg = self.assertError(self.vault.request("POST", "/v1/certificates/ocert/renew", {
            "certificate": bad.cert, "private_key": bad.key, "jwk_action": "update",
            "confirm": "ocert"}), 422, "domain_not_covered")
        self.assertIn("a.o.example (o-a)", msg)
        self.assertIn("b.o.example (o-b)", msg)
        # Renewed with the JWK updated: the new kid, the superseded one, every service.
        # An RSA key after the P-256 one: the new JWK cannot keep ES256.
        m2 = self.material("o-2", san="a.o.example,b.o.example", key="rsa2048")
        st, _, body = self.vault.request("POST", "/v1/certificates/ocert/renew", {
            "certificate": m2.cert, "private_key": m2.key, "jwk_action": "update",
            "confirm": "ocert"})
        self.assertEqual(st, 200, body)
        ch = body["jwk_changes"]
        self.assertEqual(ch["action"], "update")
        self.assertEqual([(j["kid"], j["change"]) for j in ch["jwks"]][0],
                         (j1["kid"], "superseded"))
        [k2] = [j["kid"] for j in ch["jwks"] if j["change"] == "created"]
        self.assertNotEqual(k2, j1["kid"])
        self.assertEqual(sorted(a["service"] for a in body["applied_to"]), ["o-a", "o-b"])
        # Replaced with the JWKs disconnected.
        m3 = self.material("o-3", san="a.o.example,b.o.example")
        st, _, body = self.vault.request("POST", "/v1/certificates/ocert/replace", {
            "certificate": m3.cert, "private_key": m3.key, "jwk_action": "disconnect",
            "confirm": "ocert"})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["jwk_changes"]["action"], "disconnect")
        self.assertEqual([(j["kid"], j["change"], j["state"])
                          for j in body["jwk_changes"]["jwks"]],
                         [(k2, "disconnected", "disconnected")])
        # Without linked JWKs: nothing to say.
        m4 = self.material("o-4", san="a.o.example,b.o.example")
        st, _, body = self.vault.request("POST", "/v1/certificates/ocert/replace", {
            "certificate": m4.cert, "private_key": m4.key})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["jwk_changes"], {"action": "none", "jwks": []})
        # The management listing: every JWK with its state, link and origin.
        other = self.material("o-other", key="rsa2048", san="x.o.example")
        st, _, _ = self.vault.import_cert("oother", other)
        st, _, j3 = self.vault.request("POST", "/v1/jwks", {"certificate": "oother",
                                                           "alg": "PS256"})
        self.assertEqual(st, 201, j3)
        st, _, page = self.vault.request("GET", "/v1/jwks/all")
        self.assertEqual(st, 200, page)
        by_kid = {k["kid"]: k for k in page["items"]}
        self.assertEqual(sorted(by_kid), sorted([j1["kid"], k2, j3["kid"]]))
        self.assertEqual(by_kid[j3["kid"]]["state"], "active")
        self.assertEqual(by_kid[j3["kid"]]["link"], {"certificate": "oother"})
        self.assertEqual((by_kid[j3["kid"]]["alg"], by_kid[j3["kid"]]["kty"]), ("PS256", "RSA"))
        self.assertTrue(by_kid[j3["kid"]]["published"])
        # j1 was superseded by k2 (and stays linked, in the public document for the default
        # retention of 24 h, which the listing names); k2 was disconnected by the replace
        # (published, no link).
        old = by_kid[j1["kid"]]
        self.assertEqual((old["state"], old["superseded_by"], old["link"], old["published"]),
                         ("superseded", k2, {"certificate": "ocert"}, True))
        self.assertIn(j1["kid"], [k["kid"] for k in json.loads(
            self.vault.request("GET", "/v1/jwks")[2])["keys"]])
        at = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")
        self.assertEqual(at(old["published_until"]) - at(old["superseded_at"]),
                         datetime.timedelta(seconds=86400))
        self.assertEqual((by_kid[k2]["superseded_at"], by_kid[k2]["published_until"]),
                         (None, None))
        self.assertEqual((by_kid[k2]["state"], by_kid[k2]["link"], by_kid[k2]["published"]),
                         ("disconnected", None, True))
        self.assertEqual(by_kid[k2]["made_from"], {"certificate": "ocert", "version": 2})
        # Listed with the alg it is published with (RS256 for the RSA key), not the ES256
        # of the JWK it followed.
        self.assertEqual((by_kid[k2]["alg"], by_kid[k2]["kty"], by_kid[j1["kid"]]["alg"]),
                         ("RS256", "RSA", "ES256"))
        self.assertEqual(by_kid[j1["kid"]]["made_from"], {"certificate": "ocert",
                                                          "version": 1})
        # Distinct from the public document, which has no state, link or origin.
        st, _, doc = self.vault.request("GET", "/v1/jwks")
        for k in json.loads(doc)["keys"]:
            self.assertNotIn("state", k)
        # Paging in kid order; the certificate filter; refusals.
        kids, cursor = [], None
        while True:
            st, _, page = self.vault.request(
                "GET", "/v1/jwks/all?limit=1" + ("&cursor=" + cursor if cursor else ""))
            kids += [k["kid"] for k in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(kids, sorted(by_kid))
        st, _, page = self.vault.request("GET", "/v1/jwks/all?certificate=oother")
        self.assertEqual([k["kid"] for k in page["items"]], [j3["kid"]])
        self.assertError(self.vault.request("GET", "/v1/jwks/all?certificate=nope"), 404,
                         "not_found")
        for q in ("cursor=x", "limit=0", "limit=1000", "state=active"):
            self.assertError(self.vault.request("GET", "/v1/jwks/all?" + q), 400,
                             "bad_request")
        self.assertError(self.vault.request("GET", "/v1/jwks/all", token=None), 401,
                         "unauthorized")


class TrustPreviewTest(VaultTestCase):
    """Item 4 for the truststore: pasted bundles, uploads and url fetches previewed, every
    problem named, nothing stored."""

    # The fetch's address policy refuses loopback unless allowed (as test_truststore does).
    settings = {"CERTVAULT_TRUSTSTORE_ALLOW_NETWORKS": "127.0.0.0/8, ::1"}

    def preview(self, body, token=True):
        return self.vault.request("POST", "/v1/truststore/preview", body, token=token)

    def entries(self):
        st, _, body = self.vault.request("GET", "/v1/truststore?limit=1000")
        return [e["alias"] for e in body["items"]]

    def serve(self, leaf, inter):
        for _ in range(5):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            proc = subprocess.Popen(
                ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-cert",
                 leaf.cert_path, "-key", leaf.key_path, "-cert_chain", inter.cert_path,
                 "-www"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL)
            self.addCleanup(lambda p=proc: (p.kill(), p.wait(), p.stdout.close()))
            for _ in range(10):
                line = proc.stdout.readline()
                if line.strip() in (b"ACCEPT", b""):
                    break
            if line.strip() == b"ACCEPT":
                return port
        self.fail("openssl s_server did not start")

    def test_preview_bundle_upload_and_url(self):
        root = self.material("tp-root", ca=True, cn="Preview Root")
        inter = self.material("tp-inter", ca=True, cn="Preview Issuing", issuer=root)
        old = self.material("tp-old", ca=True, cn="Old Root", not_before=-20 * 86400,
                            not_after=-86400)
        leaf = self.material("tp-leaf", cn="localhost", san="localhost", issuer=inter)
        st, _, _ = self.vault.request("POST", "/v1/truststore", {"alias": "tp-have",
                                                                 "certificate": root.cert})
        self.assertEqual(st, 201)
        before = self.entries()
        # A clean one: what would be stored, under the alias it would get.
        st, _, p = self.preview({"alias": "tp-new", "certificate": inter.cert})
        self.assertEqual(st, 200, p)
        self.assertEqual((p["ok"], p["stored"], p["problems"]), (True, False, []))
        [e] = p["entries"]
        self.assertEqual((e["alias"], e["subject"], e["is_ca"], e["source"]),
                         ("tp-new", "CN=Preview Issuing", True, "upload"))
        self.assertEqual(e["signature_algorithm_name"], "ECDSA with SHA-256")
        # A bundle with every problem: already trusted, expired, not a CA, alias taken.
        st, _, p = self.preview({"aliases": ["tp-have", "tp-x", "tp-y"],
                                 "certificate": root.cert + old.cert + leaf.cert})
        self.assertEqual(st, 200, p)
        self.assertFalse(p["ok"])
        codes = [x["code"] for x in p["problems"]]
        self.assertEqual(codes, ["name_taken", "same_certificate", "expired", "not_a_ca"])
        self.assertEqual([e["alias"] for e in p["entries"]], ["tp-have", "tp-x", "tp-y"])
        # The add refuses the same bundle with the first of them, whole.
        self.assertError(self.vault.request("POST", "/v1/truststore", {
            "aliases": ["tp-have", "tp-x", "tp-y"],
            "certificate": root.cert + old.cert + leaf.cert}), 422, "expired")
        # Nothing readable: the problem, no entries.
        st, _, p = self.preview({"alias": "tp-z", "certificate": "nope"})
        self.assertEqual(([x["code"] for x in p["problems"]], p["entries"]),
                         (["bad_encoding"], []))
        # An upload previews like an upload adds.
        boundary = "cvtp"
        form = (("--%s\r\nContent-Disposition: form-data; name=\"alias\"\r\n\r\ntp-up\r\n"
                 "--%s\r\nContent-Disposition: form-data; name=\"certificate\"; "
                 "filename=\"ca.der\"\r\n\r\n" % (boundary, boundary)).encode() +
                inter.cert_der() + ("\r\n--%s--\r\n" % boundary).encode())
        st, _, p = self.vault.request("POST", "/v1/truststore/preview", raw=form, headers={
            "Content-Type": "multipart/form-data; boundary=" + boundary})
        self.assertEqual((st, p["ok"], p["entries"][0]["alias"]), (200, True, "tp-up"))
        # A url: fetched as the add would (admin only), the kept entry previewed.
        port = self.serve(leaf, inter)
        url = "https://127.0.0.1:%d" % port
        st, _, p = self.preview({"alias": "tp-url", "url": url})
        self.assertEqual(st, 200, p)
        self.assertEqual((p["ok"], p["entries"][0]["subject"], p["entries"][0]["source"]),
                         (True, "CN=Preview Issuing", url))
        st, _, p = self.preview({"alias": "tp-url", "url": url, "keep": "0"})
        self.assertEqual([x["code"] for x in p["problems"]], ["not_a_ca"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        st, _, p = self.preview({"alias": "tp-url", "url": "https://127.0.0.1:%d" % closed})
        self.assertEqual([x["code"] for x in p["problems"]], ["endpoint_unreachable"])
        st, _, op = self.vault.request("POST", "/v1/tokens", {"name": "tp-op",
                                                              "role": "operator"})
        self.assertError(self.preview({"alias": "tp-url", "url": url}, token=op["token"]),
                         403, "forbidden")
        st, _, aud = self.vault.request("POST", "/v1/tokens", {"name": "tp-aud",
                                                               "role": "auditor"})
        self.assertError(self.preview({"alias": "tp-a", "certificate": inter.cert},
                                      token=aud["token"]), 403, "forbidden")
        self.assertError(self.preview({"certificate": inter.cert}), 400, "bad_request")
        # None of it stored anything.
        self.assertEqual(self.entries(), before)


class BigListTest(ListTest):
    """The keyset walk at 100,000 rows (issue 17: every row exactly once, in order, total
    equal to the rows walked)."""

    ROWS = 100000

    def test_sorted_keyset_walk_at_100000_rows(self):
        # Every row exactly once, in order, and total equals the rows walked.
        names, total = self.walk("sort=valid_to&order=asc", 1000)
        self.assertEqual(total, 100000)
        self.assertEqual(len(names), 100000)
        self.assertEqual(len(set(names)), 100000)
        keys = [(self.rows[n][1], n) for n in names]
        self.assertEqual(keys, sorted(keys))
        # With a status filter, descending: the rows of that status, each once, in order.
        now = int(time.time())
        names, total = self.walk("sort=valid_to&order=desc&status=valid", 1000)
        want = sorted((n for n in self.rows if self.status_of(n, now) == "valid"),
                      key=lambda n: (self.rows[n][1], n), reverse=True)
        self.assertEqual(total, len(want))
        self.assertEqual(names, want)

    # The small class's tests are not repeated on the big data set.
    test_2_every_sort_and_order = None
    test_3_filters = None
    test_4_refusals = None


if __name__ == "__main__":
    unittest.main()
