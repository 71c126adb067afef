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


if __name__ == "__main__":
    unittest.main()
