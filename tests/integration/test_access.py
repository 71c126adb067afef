"""Who may do what (issue 5): API tokens, roles on every route, the first admin token.

The route walk reads the route table from `certvaultd --routes`, so a route added later is
walked too; tests/unit/test_http.c fails when a route has no rule."""

import os
import re
import stat
import subprocess

from harness import CERTVAULTD, VaultTestCase

ROLES = ("admin", "operator", "auditor")
MAY = {
    "public": {"none", "admin", "operator", "auditor"},
    "metrics": {"admin", "operator", "auditor"},
    "read": {"admin", "operator", "auditor"},
    "write": {"admin", "operator"},
    "audit": {"admin", "auditor"},
    "admin": {"admin"},
}


def routes():
    out = subprocess.run([CERTVAULTD, "--routes"], capture_output=True, check=True,
                         timeout=30).stdout.decode()
    table = []
    for line in out.splitlines():
        method, pattern, access, action = line.split()
        table.append((method, pattern, access, action))
    return table


class AccessTest(VaultTestCase):

    # Every route is walked without a token, far past the anonymous refusals' rate limit,
    # which test_audit tests on its own.
    settings = {"CERTVAULT_AUDIT_ANONYMOUS_REFUSALS_PER_MINUTE": "0"}

    def token(self, name, role, **extra):
        body = {"name": name, "role": role}
        body.update(extra)
        st, _, resp = self.vault.request("POST", "/v1/tokens", body)
        self.assertEqual(st, 201, resp)
        return resp

    def test_first_admin_token_file(self):
        path = self.vault.admin_token_file
        mode = stat.S_IMODE(os.stat(path).st_mode)
        self.assertEqual(mode, 0o600)
        self.assertRegex(self.vault.admin_token, r"^cvt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")
        log = self.vault.log()
        self.assertIn("the first admin API token is in " + path, log)
        self.assertNotIn(self.vault.admin_token, log)
        # The secret is the last 43 characters (base64url may hold "_" itself).
        secret = self.vault.admin_token[-43:].encode()
        for f in ("certvault.db", "certvault.db-wal"):
            p = os.path.join(self.tmp, f)
            if os.path.exists(p):
                with open(p, "rb") as fh:
                    self.assertFalse(secret in fh.read(), "the token's secret is in " + f)
        st, _, body = self.vault.request("GET", "/v1/tokens")
        self.assertEqual(st, 200, body)
        first = [t for t in body["items"] if t["name"] == "admin"]
        self.assertEqual(len(first), 1)
        self.assertEqual(first[0]["role"], "admin")
        self.assertNotIn("token", first[0])

    def test_route_table_by_role(self):
        tokens = {"none": None}
        for role in ROLES:
            tokens[role] = self.token("walk-" + role, role)["token"]
        table = routes()
        self.assertGreaterEqual(len(table), 30)
        for method, pattern, access, _ in table:
            self.assertIn(access, MAY, "%s %s has no rule" % (method, pattern))
            path = pattern.replace("{}", "walk-nothing")
            body = {} if method in ("POST", "PUT", "PATCH") else None
            for who, tok in tokens.items():
                st, hdrs, resp = self.vault.request(method, path, body, token=tok)
                with self.subTest(route="%s %s" % (method, pattern), who=who):
                    if who in MAY[access]:
                        self.assertNotIn(st, (401, 403), resp)
                    elif who == "none":
                        self.assertEqual(st, 401, resp)
                        self.assertEqual(resp["error"]["code"], "unauthorized")
                        self.assertEqual(hdrs.get("www-authenticate"), 'Bearer realm="certvault"')
                    else:
                        self.assertEqual(st, 403, resp)
                        self.assertEqual(resp["error"]["code"], "forbidden")

    def test_operator_imports_auditor_is_refused(self):
        op = self.token("op1", "operator")
        au = self.token("au1", "auditor")
        self.assertEqual(op["role"], "operator")
        m = self.material("acc-www", san="acc.example.com")
        body = {"name": "acc-www", "certificate": m.cert, "private_key": m.key}
        st, _, resp = self.vault.request("POST", "/v1/certificates", body, token=au["token"])
        self.assertEqual((st, resp["error"]["code"]), (403, "forbidden"))
        st, _, resp = self.vault.request("GET", "/v1/certificates/acc-www", token=au["token"])
        self.assertEqual(st, 404)
        st, _, resp = self.vault.request("POST", "/v1/certificates", body, token=op["token"])
        self.assertEqual(st, 201, resp)
        # The auditor reads everything, writes nothing; the operator may not make tokens or
        # read the audit trail.
        st, _, _ = self.vault.request("GET", "/v1/certificates/acc-www", token=au["token"])
        self.assertEqual(st, 200)
        st, _, resp = self.vault.request("POST", "/v1/tokens", {"name": "x", "role": "admin"},
                                         token=op["token"])
        self.assertEqual(st, 403, resp)
        st, _, _ = self.vault.request("GET", "/v1/audit", token=op["token"])
        self.assertEqual(st, 403)
        st, _, _ = self.vault.request("GET", "/v1/audit", token=au["token"])
        self.assertEqual(st, 200)
        # Fetching a chain from a URL makes certvaultd connect somewhere: admin only.
        st, _, resp = self.vault.request("POST", "/v1/truststore",
                                         {"alias": "acc-url", "url": "https://127.0.0.1:1"},
                                         token=op["token"])
        self.assertEqual((st, resp["error"]["code"]), (403, "forbidden"), resp)
        st, _, resp = self.vault.request("POST", "/v1/truststore",
                                         {"alias": "acc-url", "url": "https://127.0.0.1:1"})
        self.assertEqual(st, 502, resp)

    def test_revoke_takes_effect_at_once(self):
        op = self.token("op-revoked", "operator")
        st, _, _ = self.vault.request("GET", "/v1/certificates", token=op["token"])
        self.assertEqual(st, 200)
        st, _, _ = self.vault.request("DELETE", "/v1/tokens/" + op["id"])
        self.assertEqual(st, 204)
        st, _, resp = self.vault.request("GET", "/v1/certificates", token=op["token"])
        self.assertEqual((st, resp["error"]["code"]), (401, "unauthorized"))
        self.assertIn("revoked", resp["error"]["message"])
        st, _, body = self.vault.request("GET", "/v1/tokens")
        [row] = [t for t in body["items"] if t["id"] == op["id"]]
        self.assertEqual(row["state"], "revoked")
        self.assertIsNotNone(row["revoked_at"])
        # Revoked twice, or an unknown id: 404. The name is free again.
        self.assertError(self.vault.request("DELETE", "/v1/tokens/" + op["id"]), 404,
                         "not_found")
        self.assertError(self.vault.request("DELETE", "/v1/tokens/0000000000000000"), 404,
                         "not_found")
        self.token("op-revoked", "auditor")

    def test_token_refusals(self):
        self.token("dup", "auditor")
        self.assertError(self.vault.request("POST", "/v1/tokens",
                                            {"name": "dup", "role": "auditor"}), 409,
                         "name_taken")
        for body, code in (({"name": "x"}, "bad_request"),
                           ({"name": "x", "role": "root"}, "bad_request"),
                           ({"name": "bad name", "role": "admin"}, "invalid_name"),
                           ({"name": "x", "role": "admin", "expires_in_days": 0},
                            "bad_request"),
                           ({"name": "x", "role": "admin", "expires_in_days": "7"},
                            "bad_request"),
                           ({"name": "x", "role": "admin", "secret": "mine"}, "bad_request")):
            with self.subTest(body=body):
                self.assertError(self.vault.request("POST", "/v1/tokens", body), 400, code)
        st, _, body = self.vault.request("GET", "/v1/tokens")
        self.assertNotIn("x", [t["name"] for t in body["items"]])
        # Malformed credentials: all 401, none says more than that.
        tok = self.vault.admin_token
        flipped = tok[:-1] + ("B" if tok[-1] == "A" else "A")
        for header in ("Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "bearer cvt_x",
                       "Bearer " + flipped, "Bearer " + tok + "x"):
            with self.subTest(header=header):
                st, _, resp = self.vault.request("GET", "/v1/certificates",
                                                 headers={"Authorization": header},
                                                 token=None)
                self.assertEqual(st, 401, resp)

    def test_expiry(self):
        tok = self.token("short", "auditor", expires_in_days=1)
        self.assertRegex(tok["expires_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        st, _, _ = self.vault.request("GET", "/v1/certificates", token=tok["token"])
        self.assertEqual(st, 200)

    def test_public_routes_need_no_token(self):
        for path in ("/v1/health", "/v1/jwks", "/.well-known/jwks.json"):
            st, _, _ = self.vault.request("GET", path, token=None)
            self.assertIn(st, (200, 503), path)


class RestartKeepsTokensTest(VaultTestCase):

    def test_restart_makes_no_second_admin(self):
        before = self.vault.admin_token
        self.vault.stop()
        self.vault.start()
        self.assertEqual(self.vault.admin_token, before)
        self.assertNotIn("first admin API token", self.vault.log())
        st, _, body = self.vault.request("GET", "/v1/tokens")
        self.assertEqual(st, 200)
        self.assertEqual([t["name"] for t in body["items"]].count("admin"), 1)


if __name__ == "__main__":
    import unittest
    unittest.main()
