"""Integration tests of what a console needs from the API (issue 17 items 4, 8-15, 17 and
issue 16 item 13): who am I, the details a dialog draws from, preview before saving, sorted
keyset lists with totals, any version's export, ETag/304, readable names; against a real
certvaultd with a real SoftHSM token and SQLite file."""

import unittest

from harness import VaultTestCase


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
        self.assertEqual(me["actions"], [])
        self.assertFalse(me["can_write"])
        self.assertIn(("GET", "/v1/audit"), {(r["method"], r["path"]) for r in me["allowed"]})
        # What /v1/me says an auditor may not do is refused, and what it allows answers.
        for r in me["allowed"]:
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


if __name__ == "__main__":
    unittest.main()
