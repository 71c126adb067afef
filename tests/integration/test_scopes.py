"""Least privilege for API clients (issue 18 part 3): scoped API tokens.

A scope names the actions a token may do and the certificates (name globs), services (name
globs) and environments it may touch; a scoped token can do what both its role and its scope
allow. The route x action x scope matrix is walked here against a real certvaultd: for every
action, a token with it and one without, on objects inside and outside the scope. Then the
two jobs the issue names (a deploy job, a technical contact), the lists, the refusals at
creation, and the last use of each token."""

import base64
import time

from harness import VaultTestCase

# Every action a scope may hold (tokens never: see test_refused_scopes), in the order
# certvault lists them. Those no route names yet (sign, admin) are refused at creation:
# a scope only narrows what the role may do. ScopeTest.actions holds those routes name.
ACTIONS = ("read", "export", "import", "generate", "edit", "renew", "replace", "delete", "bind",
           "sign", "jwk", "service", "environment", "truststore", "audit", "metrics", "admin")

# The matrix's scope: certificates and services named in-*, in production.
OBJECTS = {"certificates": ["in-*"], "services": ["in-*"], "environments": ["production"]}


class ScopeTest(VaultTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        v = cls.vault
        cls.m = {}
        # inside: in-a (production); outside by name: out-a; outside by environment: in-b.
        for name, envs, san in (("in-a", ["production"], "in.example.com"),
                                ("in-b", ["staging"], "in.example.com"),
                                ("out-a", ["production"], "out.example.com"),
                                ("shop-web", ["production"], "shop.example.com"),
                                ("shop-api", ["staging"], "api.shop.example.com"),
                                ("billing-web", ["production"], "billing.example.com"),
                                ("any-env", [], "any.example.com")):
            from harness import Material
            mat = Material(cls.tmp, name, san=san)
            cls.m[name] = mat
            st, _, body = v.import_cert(name, mat, environments=envs)
            assert st == 201, body
        for name, env, dom in (("in-svc", "production", "in.example.com"),
                               ("in-stage", "staging", "in.example.com"),
                               ("out-svc", "production", "out.example.com"),
                               ("shop-prod", "production", "shop.example.com"),
                               ("shop-stage", "staging", "api.shop.example.com"),
                               ("billing-prod", "production", "billing.example.com"),
                               ("any-prod", "production", "any.example.com")):
            st, _, body = v.request("PUT", "/v1/services/" + name,
                                    {"environment": env, "domains": [dom]})
            assert st == 201, body
        # any-env names no environment: a production service using it brings it into
        # production for a scope.
        st, _, body = v.request("PUT", "/v1/services/any-prod/certificate",
                                {"certificate": "any-env"})
        assert st == 200, body
        for cert in ("in-a", "out-a", "in-b"):
            st, _, body = v.request("POST", "/v1/jwks", {"certificate": cert, "use": "sig",
                                                         "alg": "ES256"})
            assert st == 201, body
            cls.m[cert].kid = body["kid"]
        # The actions the route table names, as /v1/me shows them route by route.
        st, _, me = v.request("GET", "/v1/me")
        assert st == 200, me
        cls.actions = [a for a in ACTIONS
                       if a in {r["scope_action"] for r in me["allowed"]}]

    n = 0

    def token(self, role="admin", **scope):
        """A new token of role with scope (none when scope is empty); its secret."""
        ScopeTest.n += 1
        body = {"name": "t%d" % ScopeTest.n, "role": role}
        if scope:
            body["scope"] = scope
        st, _, resp = self.vault.request("POST", "/v1/tokens", body)
        self.assertEqual(st, 201, resp)
        return resp["token"]

    def call(self, token, method, path, body=None):
        return self.vault.request(method, path, body, token=token)

    def assertInside(self, resp, *statuses):
        """The scope let the request through: the use case answered (statuses, when given)."""
        st, _, body = resp
        if isinstance(body, dict) and "error" in body:
            self.assertNotEqual(body["error"]["code"], "out_of_scope", body)
        if statuses:
            self.assertIn(st, statuses, body)

    def assertOutside(self, resp):
        return self.assertError(resp, 403, "out_of_scope")

    # ----- the matrix -----

    def cases(self):
        """Per action: requests on objects inside the matrix's scope (with the statuses the
        use case answers), and on objects outside it. Requests that would change something
        for good carry a body the use case refuses (its answer shows the scope let it
        through) or change what the next run does not need."""
        m = self.m
        gen = {"key": "p256", "subject": "CN=in.example.com", "dns_names": ["in.example.com"]}
        sign = {"algorithm": "ES256", "digest": base64.b64encode(bytes(32)).decode()}
        ScopeTest.n += 1
        k = ScopeTest.n
        return {
            "read": ([("GET", "/v1/certificates/in-a", None, (200,)),
                      ("GET", "/v1/certificates/in-a/versions", None, (200,)),
                      ("GET", "/v1/services/in-svc", None, (200,)),
                      ("GET", "/v1/environments/production", None, (200,)),
                      ("GET", "/v1/jwks/" + m["in-a"].kid, None, (200,))],
                     [("GET", "/v1/certificates/out-a", None),
                      ("GET", "/v1/certificates/in-b", None),
                      ("GET", "/v1/certificates/out-a/versions", None),
                      ("GET", "/v1/services/out-svc", None),
                      ("GET", "/v1/services/in-stage", None),
                      ("GET", "/v1/environments/staging", None),
                      ("GET", "/v1/jwks/" + m["in-b"].kid, None),
                      ("GET", "/v1/jwks/" + m["out-a"].kid, None)]),
            "export": ([("GET", "/v1/certificates/in-a/export?format=pem", None, (200,))],
                       [("GET", "/v1/certificates/in-b/export?format=pem", None),
                        ("GET", "/v1/certificates/out-a/export?format=pem", None)]),
            "import": ([("POST", "/v1/certificates",
                         {"name": "in-imp%d" % k, "certificate": m["in-a"].cert,
                          "private_key": m["in-a"].key, "environments": ["production"]},
                         (409, 201))],
                       [("POST", "/v1/certificates",
                         {"name": "out-imp%d" % k, "certificate": m["in-a"].cert,
                          "private_key": m["in-a"].key, "environments": ["production"]}),
                        ("POST", "/v1/certificates",
                         {"name": "in-imp%d" % k, "certificate": m["in-a"].cert,
                          "private_key": m["in-a"].key, "environments": ["staging"]}),
                        # "any environment" would take it out of the scope at once.
                        ("POST", "/v1/certificates",
                         {"name": "in-imp%d" % k, "certificate": m["in-a"].cert,
                          "private_key": m["in-a"].key})]),
            # A new certificate generated in the token has no environments until it is
            # merged and edited: a scope with environments cannot make one (renewing by
            # generate can), see test_form_upload_judged_as_json for one without.
            "generate": ([("POST", "/v1/certificates/in-a/certificate", {"certificate": "x"},
                           (400, 409, 422))],
                         [("POST", "/v1/certificates", {"name": "in-gen%d" % k,
                                                        "generate": gen}),
                          ("POST", "/v1/certificates", {"name": "out-gen%d" % k,
                                                        "generate": gen}),
                          ("POST", "/v1/certificates/out-a/certificate", {"certificate": "x"}),
                          ("POST", "/v1/certificates/in-b/certificate", {"certificate": "x"})]),
            "edit": ([("PATCH", "/v1/certificates/in-a", {"description": "edited"}, (200,))],
                     [("PATCH", "/v1/certificates/in-b", {"description": "edited"}),
                      ("PATCH", "/v1/certificates/out-a", {"description": "edited"}),
                      ("PATCH", "/v1/certificates/in-a", {"name": "out-renamed"}),
                      ("PATCH", "/v1/certificates/in-a", {"environments": ["staging"]})]),
            "renew": ([("POST", "/v1/certificates/in-a/renew", {}, (400,))],
                      [("POST", "/v1/certificates/out-a/renew", {}),
                       ("POST", "/v1/certificates/in-b/renew", {})]),
            "replace": ([("POST", "/v1/certificates/in-a/replace", {}, (400,))],
                        [("POST", "/v1/certificates/out-a/replace", {}),
                         ("POST", "/v1/certificates/in-b/replace", {})]),
            "delete": ([("DELETE", "/v1/certificates/in-a", None, (400,)),
                        ("DELETE", "/v1/services/in-nothing", None, (404,)),
                        ("DELETE", "/v1/jwks/" + m["in-a"].kid + "x", None, (400, 404))],
                       [("DELETE", "/v1/certificates/out-a", None),
                        ("DELETE", "/v1/certificates/in-b?confirm=delete", None),
                        ("DELETE", "/v1/services/out-svc", None),
                        ("DELETE", "/v1/services/in-stage", None),
                        ("DELETE", "/v1/environments/staging", None),
                        ("DELETE", "/v1/jwks/" + m["out-a"].kid, None)]),
            "bind": ([("PUT", "/v1/services/in-svc/certificate", {"certificate": "in-a"},
                       (200,)),
                      ("DELETE", "/v1/services/in-svc/certificate", None, (200, 204))],
                     [("PUT", "/v1/services/in-svc/certificate", {"certificate": "out-a"}),
                      ("PUT", "/v1/services/out-svc/certificate", {"certificate": "in-a"}),
                      ("PUT", "/v1/services/in-stage/certificate", {"certificate": "in-b"}),
                      ("DELETE", "/v1/services/out-svc/certificate", None)]),
            "jwk": ([("POST", "/v1/jwks", {"certificate": "in-a", "use": "sig",
                                           "alg": "ES256"}, (201, 409))],
                    [("POST", "/v1/jwks", {"certificate": "out-a", "use": "sig",
                                           "alg": "ES256"}),
                     ("POST", "/v1/jwks", {"certificate": "in-b", "use": "sig",
                                           "alg": "ES256"})]),
            "service": ([("PUT", "/v1/services/in-new", {"environment": "production",
                                                         "domains": ["in.example.com"]},
                          (200, 201))],
                        [("PUT", "/v1/services/out-new", {"environment": "production",
                                                          "domains": ["in.example.com"]}),
                         ("PUT", "/v1/services/in-new", {"environment": "staging",
                                                         "domains": ["in.example.com"]}),
                         ("PUT", "/v1/services/in-stage", {"environment": "production",
                                                           "domains": ["in.example.com"]})]),
            "environment": ([("PUT", "/v1/environments/production", {}, (200,))],
                            [("PUT", "/v1/environments/staging", {}),
                             ("PUT", "/v1/environments/elsewhere", {})]),
            # Global routes: the action alone decides.
            "truststore": ([("POST", "/v1/truststore", {}, (400,))], []),
            "audit": ([("GET", "/v1/audit?limit=1", None, (200,)),
                       ("GET", "/v1/audit/verify", None, (200,))], []),
            "metrics": ([("GET", "/metrics", None, (200,))], []),
            # Signatures with a certificate's key or a JWK's (issue 18 part 4).
            "sign": ([("POST", "/v1/certificates/in-a/sign", sign, (200,)),
                      ("POST", "/v1/jwks/%s/sign" % m["in-a"].kid, {"payload": "eyJ4IjoxfQ"},
                       (200,))],
                     [("POST", "/v1/certificates/out-a/sign", sign),
                      ("POST", "/v1/certificates/in-b/sign", sign),
                      ("POST", "/v1/jwks/%s/sign" % m["out-a"].kid, {"payload": "e30"}),
                      ("POST", "/v1/jwks/%s/sign" % m["in-b"].kid, {"payload": "e30"})]),
            # certvault-wide settings: the notification channels.
            "admin": ([("GET", "/v1/notifications/channels", None, (200,))], []),
        }

    def test_matrix(self):
        """For each action: a token with it reaches the objects inside its scope and is
        refused (403 out_of_scope) outside; a token with every other action is refused
        inside too."""
        for action, (inside, outside) in self.cases().items():
            with self.subTest(action=action):
                others = [a for a in self.actions if a != action]
                with_it = self.token(actions=[action], **OBJECTS)
                without = self.token(actions=others, **OBJECTS)
                for method, path, body, statuses in inside:
                    self.assertInside(self.call(with_it, method, path, body), *statuses)
                for method, path, body in outside:
                    msg = self.assertOutside(self.call(with_it, method, path, body))
                    self.assertIn("scope", msg)
                for method, path, body, _ in inside:
                    msg = self.assertOutside(self.call(without, method, path, body))
                    self.assertIn("does not allow", msg)

    def test_every_action_in_the_matrix(self):
        """The matrix walks every action a route names (a merge that brings a route with a
        new action fails this until the matrix walks it).
        A scoped token with every action sees the same routes as its role in /v1/me, but
        the tokens routes."""
        self.assertEqual(set(self.actions) - set(self.cases()), set(),
                         "actions the matrix does not walk")
        self.assertIn("read", self.actions)
        every = self.token(actions=self.actions)
        st, _, me = self.call(every, "GET", "/v1/me")
        st, _, mine = self.vault.request("GET", "/v1/me")
        self.assertEqual([r for r in mine["allowed"] if not r["path"].startswith("/v1/tokens")],
                         me["allowed"])

    def test_unscoped_token_as_before(self):
        """No scope: the role alone decides, on every object."""
        op = self.token(role="operator")
        for path in ("/v1/certificates/out-a", "/v1/certificates/in-b", "/v1/services/out-svc"):
            st, _, body = self.call(op, "GET", path)
            self.assertEqual(st, 200, body)
        st, _, page = self.call(op, "GET", "/v1/certificates?limit=1000")
        self.assertEqual(len(page["items"]), len(self.all_certs()))
        # And a scope never widens a role: an auditor's scope cannot give bind.
        self.assertError(self.vault.request("POST", "/v1/tokens", {
            "name": "aud-bind", "role": "auditor", "scope": {"actions": ["read", "bind"]}}),
            400, "bad_request")

    def all_certs(self):
        st, _, page = self.vault.request("GET", "/v1/certificates?limit=1000")
        return {i["name"] for i in page["items"]}

    # ----- the two jobs of the issue -----

    def test_deploy_job(self):
        """Reads, exports and binds the certificates of production, nothing else."""
        deploy = self.token(role="operator", actions=["read", "export", "bind"],
                            environments=["production"])
        # Certificates naming production, and any-env (a production service uses it).
        st, _, page = self.call(deploy, "GET", "/v1/certificates?limit=1000")
        self.assertEqual(st, 200, page)
        names = {i["name"] for i in page["items"]}
        self.assertIn("shop-web", names)
        self.assertIn("any-env", names)
        self.assertNotIn("shop-api", names)
        self.assertNotIn("in-b", names)
        self.assertEqual(page["total"], len(names))
        st, _, summary = self.call(deploy, "GET", "/v1/certificates/summary")
        self.assertEqual(summary["total"], len(names), summary)
        # A pending new certificate has no environments yet: not listed for this scope.
        gen = {"key": "p256", "subject": "CN=p.example.com", "dns_names": ["p.example.com"]}
        st, _, body = self.vault.request("POST", "/v1/certificates",
                                         {"name": "shop-pending", "generate": gen})
        self.assertEqual(st, 201, body)
        st, _, pend = self.call(deploy, "GET", "/v1/certificates?status=pending")
        self.assertNotIn("shop-pending", [p["name"] for p in pend["items"]])
        st, _, summary = self.call(deploy, "GET", "/v1/certificates/summary")
        self.assertEqual(summary["pending"], 0, summary)
        contact = self.token(role="operator", actions=["read"], certificates=["shop-*"])
        st, _, pend = self.call(contact, "GET", "/v1/certificates?status=pending")
        self.assertEqual([p["name"] for p in pend["items"]], ["shop-pending"])
        st, _, summary = self.call(contact, "GET", "/v1/certificates/summary")
        self.assertEqual(summary["pending"], 1, summary)
        self.vault.request("DELETE", "/v1/certificates/shop-pending/pending")
        self.assertLess(summary["total"], len(self.all_certs()))
        # Services and environments of production only.
        st, _, svcs = self.call(deploy, "GET", "/v1/services?limit=1000")
        self.assertEqual({s["environment"] for s in svcs["items"]}, {"production"})
        self.assertIn("shop-prod", {s["name"] for s in svcs["items"]})
        st, _, envs = self.call(deploy, "GET", "/v1/environments")
        self.assertEqual([e["name"] for e in envs["items"]], ["production"])
        # JWKs of its certificates only.
        st, _, jwks = self.call(deploy, "GET", "/v1/jwks/all")
        kids = {j["kid"] for j in jwks["items"]}
        self.assertIn(self.m["in-a"].kid, kids)
        self.assertNotIn(self.m["in-b"].kid, kids)
        # The job itself: bind, export.
        st, _, body = self.call(deploy, "PUT", "/v1/services/shop-prod/certificate",
                                {"certificate": "shop-web"})
        self.assertEqual(st, 200, body)
        st, _, pem = self.call(deploy, "GET", "/v1/certificates/shop-web/export?format=pem")
        self.assertEqual(st, 200)
        # Not staging, no edits, no deletes, no audit trail, no tokens.
        self.assertOutside(self.call(deploy, "PUT", "/v1/services/shop-stage/certificate",
                                     {"certificate": "shop-api"}))
        self.assertOutside(self.call(deploy, "GET", "/v1/certificates/shop-api"))
        self.assertOutside(self.call(deploy, "PATCH", "/v1/certificates/shop-web",
                                     {"description": "x"}))
        self.assertOutside(self.call(deploy, "DELETE", "/v1/services/shop-prod"))
        # The role decides first: an operator never reads the audit trail.
        self.assertError(self.call(deploy, "GET", "/v1/audit"), 403, "forbidden")
        # The refused change is in the audit trail, with why.
        st, _, audit = self.vault.request("GET", "/v1/audit?action=certificate.edit&limit=5")
        self.assertIn("out_of_scope", [r.get("error") for r in audit["items"]], audit)

    def test_technical_contact(self):
        """Binds certificates of their app to their app's services; deletes nothing."""
        contact = self.token(role="operator", actions=["read", "bind"],
                             certificates=["shop-*"], services=["shop-*"])
        st, _, body = self.call(contact, "PUT", "/v1/services/shop-stage/certificate",
                                {"certificate": "shop-api"})
        self.assertEqual(st, 200, body)
        st, _, body = self.call(contact, "DELETE", "/v1/services/shop-stage/certificate")
        self.assertIn(st, (200, 204), body)
        self.assertOutside(self.call(contact, "PUT", "/v1/services/billing-prod/certificate",
                                     {"certificate": "billing-web"}))
        self.assertOutside(self.call(contact, "PUT", "/v1/services/shop-prod/certificate",
                                     {"certificate": "billing-web"}))
        msg = self.assertOutside(self.call(contact, "DELETE",
                                           "/v1/certificates/shop-api?confirm=delete"))
        self.assertIn('"delete"', msg)
        self.assertOutside(self.call(contact, "DELETE", "/v1/services/shop-stage"))
        st, _, page = self.call(contact, "GET", "/v1/certificates?limit=1000")
        self.assertEqual({i["name"] for i in page["items"]},
                         {"shop-web", "shop-api"})
        st, _, svcs = self.call(contact, "GET", "/v1/services?limit=1000")
        self.assertEqual({s["name"] for s in svcs["items"]}, {"shop-prod", "shop-stage"})
        # A name pattern matches ignoring case, as names are unique ignoring case.
        st, _, body = self.call(contact, "GET", "/v1/certificates/SHOP-WEB")
        self.assertEqual(st, 200, body)
        # What the console draws from: the scope, and only the routes of its actions.
        st, _, me = self.call(contact, "GET", "/v1/me")
        self.assertEqual(me["scope"]["actions"], ["read", "bind"])
        self.assertEqual(me["scope"]["certificates"], ["shop-*"])
        self.assertFalse(me["can_admin"])
        self.assertFalse(any(r["method"] == "DELETE" and r["path"] == "/v1/certificates/{}"
                             for r in me["allowed"]), me["allowed"])

    def test_service_hides_a_certificate_outside_the_scope(self):
        """A service inside the scope may use a certificate outside it (bound by someone
        else): its details and the list say that it uses one, never which, and a list
        cannot be filtered by it."""
        m = self.material("hidden-cert", san="shop.example.com")
        st, _, body = self.vault.import_cert("hidden-cert", m, environments=["production"])
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("PUT", "/v1/services/shop-hidden",
                                         {"environment": "production",
                                          "domains": ["shop.example.com"]})
        self.assertEqual(st, 201, body)
        self.addCleanup(self.vault.request, "DELETE", "/v1/services/shop-hidden")
        self.addCleanup(self.vault.request, "DELETE", "/v1/services/shop-hidden/certificate")
        st, _, body = self.vault.request("PUT", "/v1/services/shop-hidden/certificate",
                                         {"certificate": "hidden-cert"})
        self.assertEqual(st, 200, body)
        contact = self.token(role="operator", actions=["read", "service"],
                             certificates=["shop-*"], services=["shop-*"])
        import json
        st, _, svc = self.call(contact, "GET", "/v1/services/shop-hidden")
        self.assertEqual(st, 200, svc)
        self.assertEqual(svc["certificate"], {"out_of_scope": True})
        self.assertNotIn("hidden-cert", json.dumps(svc))
        st, _, page = self.call(contact, "GET", "/v1/services?limit=1000")
        item = [s for s in page["items"] if s["name"] == "shop-hidden"][0]
        self.assertEqual(item["certificate"], {"out_of_scope": True})
        self.assertNotIn("hidden-cert", json.dumps(page))
        # A change of the service answers with the same view.
        st, _, svc = self.call(contact, "PUT", "/v1/services/shop-hidden",
                               {"environment": "production", "domains": ["shop.example.com"],
                                "description": "changed"})
        self.assertEqual(st, 200, svc)
        self.assertEqual(svc["certificate"], {"out_of_scope": True})
        # Which services use it is not to be learnt by a filter either; nor which
        # certificates a service outside the scope uses.
        msg = self.assertOutside(self.call(contact, "GET",
                                           "/v1/services?certificate=hidden-cert"))
        self.assertIn("hidden-cert", msg)
        self.assertOutside(self.call(contact, "GET", "/v1/certificates?service=billing-prod"))
        st, _, page = self.call(contact, "GET", "/v1/services?certificate=shop-web")
        self.assertEqual(st, 200, page)
        # A scope that reaches the certificate sees it: unscoped, and production's (the
        # certificate is in production by its own environments and by the service).
        deploy = self.token(role="operator", actions=["read"], environments=["production"])
        for tok in (None, deploy):
            st, _, svc = self.call(tok, "GET", "/v1/services/shop-hidden") if tok else \
                self.vault.request("GET", "/v1/services/shop-hidden")
            self.assertEqual(svc["certificate"]["name"], "hidden-cert", svc)

    def test_certificate_hides_services_outside_the_scope(self):
        """The other way round: a certificate inside the scope used by services outside it
        (by name, or by environment). Its details, list row, delete dialog, refusal and
        inventory row say that services use it, and name only those inside the scope."""
        import json
        m = self.material("in-shared", san="in.example.com,out.example.com")
        st, _, body = self.vault.import_cert("in-shared", m)
        self.assertEqual(st, 201, body)
        for svc, env, dom in (("in-shared-web", "production", "in.example.com"),
                              ("in-shared-stage", "staging", "in.example.com"),
                              ("out-shared-web", "production", "out.example.com")):
            st, _, body = self.vault.request("PUT", "/v1/services/" + svc,
                                             {"environment": env, "domains": [dom]})
            self.assertEqual(st, 201, body)
            self.addCleanup(self.vault.request, "DELETE", "/v1/services/" + svc)
            st, _, body = self.vault.request("PUT", "/v1/services/%s/certificate" % svc,
                                             {"certificate": "in-shared"})
            self.assertEqual(st, 200, body)
        scoped = self.token(role="admin", actions=["read", "delete"], **OBJECTS)
        hidden = ("in-shared-stage", "out-shared-web", "staging")
        inside = {"service": "in-shared-web", "environment": "production"}
        st, _, d = self.call(scoped, "GET", "/v1/certificates/in-shared")
        self.assertEqual(st, 200, d)
        self.assertEqual([{k: u[k] for k in u if k != "domains"} for u in d["used_by"]],
                         [inside, {"out_of_scope": True}, {"out_of_scope": True}])
        self.assertEqual((d["in_use"], d["delete"]["allowed"]), (True, False))
        self.assertEqual(d["delete"]["blocked_by_services"], ["in-shared-web"])
        st, _, page = self.call(scoped, "GET", "/v1/certificates?q=in-shared")
        self.assertEqual(page["items"][0]["used_by"],
                         [inside, {"out_of_scope": True}, {"out_of_scope": True}])
        st, _, err = self.call(scoped, "DELETE", "/v1/certificates/in-shared?confirm=delete")
        self.assertEqual((st, err["error"]["code"]), (409, "in_use"), err)
        st, _, inv = self.call(scoped, "GET", "/v1/inventory?format=json")
        doc = json.loads(inv) if isinstance(inv, (bytes, str)) else inv
        row = [c for c in doc["items"] if c["name"] == "in-shared"][0]
        self.assertEqual((row["services"], row["environments"]),
                         (["in-shared-web"], ["production"]))
        for text in (json.dumps(d), json.dumps(page), json.dumps(err), json.dumps(row)):
            for name in hidden:
                self.assertNotIn(name, text)
        # Unscoped, every service is named as before.
        st, _, d = self.vault.request("GET", "/v1/certificates/in-shared")
        self.assertEqual(sorted(u["service"] for u in d["used_by"]),
                         ["in-shared-stage", "in-shared-web", "out-shared-web"])
        self.assertEqual(len(d["delete"]["blocked_by_services"]), 3)
        for svc in ("in-shared-web", "in-shared-stage", "out-shared-web"):
            self.vault.request("DELETE", "/v1/services/%s/certificate" % svc)

    def test_scoped_lists_inventory(self):
        auditor = self.token(role="auditor", actions=["read"], certificates=["shop-*"])
        st, _, inv = self.call(auditor, "GET", "/v1/inventory?format=json")
        self.assertEqual(st, 200)
        import json
        doc = json.loads(inv) if isinstance(inv, (bytes, str)) else inv
        certs = [c["name"] for c in doc["items"] if c["type"] == "certificate"]
        self.assertEqual(sorted(certs), ["shop-api", "shop-web"])
        # The truststore (public CAs) is not cut to a scope.
        st, _, whole = self.vault.request("GET", "/v1/inventory?format=json")
        whole = json.loads(whole) if isinstance(whole, (bytes, str)) else whole
        self.assertEqual(len([c for c in doc["items"] if c["type"] == "truststore"]),
                         len([c for c in whole["items"] if c["type"] == "truststore"]))
        # The audit trail is whole or nothing: without "audit", refused.
        self.assertOutside(self.call(auditor, "GET", "/v1/audit"))
        with_audit = self.token(role="auditor", actions=["read", "audit"],
                                certificates=["shop-*"])
        st, _, body = self.call(with_audit, "GET", "/v1/audit?limit=1")
        self.assertEqual(st, 200, body)

    def test_scoped_admin_never_manages_tokens(self):
        admin = self.token(actions=self.actions)
        for method, path, body in (("GET", "/v1/tokens", None),
                                   ("POST", "/v1/tokens", {"name": "wider", "role": "admin"}),
                                   ("DELETE", "/v1/tokens/0123456789abcdef", None)):
            self.assertOutside(self.call(admin, method, path, body))

    def test_console_session_keeps_the_scope(self):
        contact = self.token(role="operator", actions=["read"], certificates=["shop-*"])
        st, h, body = self.vault.request("POST", "/v1/session", {"token": contact},
                                         token=None)
        self.assertIn(st, (200, 201), body)
        cookie = h["set-cookie"].split(";")[0]
        st, _, page = self.vault.request("GET", "/v1/certificates", token=None,
                                         headers={"Cookie": cookie})
        self.assertEqual(st, 200, page)
        self.assertEqual({i["name"] for i in page["items"]}, {"shop-web", "shop-api"})

    # ----- refusals at creation -----

    def test_refused_scopes(self):
        bad = [
            ({"actions": ["read", "fly"]}, 400, "not an action"),
            ({"actions": []}, 400, "non-empty"),
            ({"certificates": ["shop-*"]}, 400, "actions"),
            ({"actions": ["read"], "certificates": ["shop/*"]}, 400, "name pattern"),
            ({"actions": ["read"], "certificates": ["a b"]}, 400, "name pattern"),
            ({"actions": ["read"], "certificates": ["x" * 65]}, 400, "name pattern"),
            ({"actions": ["read"], "certificates": []}, 400, "leave it out"),
            ({"actions": ["read"], "services": [7]}, 400, "name pattern"),
            ({"actions": ["read"], "environments": ["nowhere"]}, 422, "nowhere"),
            ({"actions": ["read"], "environments": ["pro*"]}, 400, "environment name"),
            ({"actions": ["read", "tokens"]}, 400, "wider"),
            ({"actions": ["read"], "colour": ["red"]}, 400, "unknown member"),
            ({"actions": ["read"], "certificates": ["c%d" % i for i in range(17)]}, 400,
             "more than 16"),
            ("read", 400, "must be an object"),
        ]
        before = self.vault.request("GET", "/v1/tokens")[2]["items"]
        for scope, status, words in bad:
            with self.subTest(scope=scope):
                resp = self.vault.request("POST", "/v1/tokens",
                                          {"name": "bad", "role": "operator", "scope": scope})
                st, _, body = resp
                self.assertEqual(st, status, body)
                self.assertIn(words, body["error"]["message"])
        after = self.vault.request("GET", "/v1/tokens")[2]["items"]
        self.assertEqual(len(after), len(before))

    def test_scope_shown_and_kept_as_spelled(self):
        st, _, made = self.vault.request("POST", "/v1/tokens", {
            "name": "shown", "role": "operator",
            "scope": {"actions": ["bind", "read", "read"], "environments": ["PRODUCTION"],
                      "certificates": ["Shop-*"]}})
        self.assertEqual(st, 201, made)
        want = {"actions": ["read", "bind"], "environments": ["production"],
                "certificates": ["shop-*"]}
        self.assertEqual(made["scope"], want)
        st, _, tokens = self.vault.request("GET", "/v1/tokens")
        row = [t for t in tokens["items"] if t["id"] == made["id"]][0]
        self.assertEqual(row["scope"], want)
        unscoped = [t for t in tokens["items"] if t["name"] == "admin"][0]
        self.assertIsNone(unscoped["scope"])

    # ----- last use -----

    def test_last_used(self):
        tok = self.token(role="auditor", actions=["read"])
        st, _, made = self.vault.request("GET", "/v1/tokens")
        tid = tok[4:20]
        row = [t for t in made["items"] if t["id"] == tid][0]
        self.assertIsNone(row["last_used_at"])
        self.assertIsNone(row["last_used_from"])
        self.assertFalse(row["unused"])
        self.call(tok, "GET", "/v1/certificates")
        row = self.token_row(tid)
        self.assertIsNotNone(row["last_used_at"])
        self.assertEqual(row["last_used_from"], "127.0.0.1")
        # At most one write a minute per token: a use 30 s after the recorded one changes
        # nothing, one 2 minutes after it is recorded.
        # (Written behind certvaultd's back, which reads a token's row again after at most
        # a second: a write of its own it sees at once.)
        self.vault.sql("UPDATE api_tokens SET last_used_at = ?, last_used_from = 'x'"
                       " WHERE id = ?", (int(time.time()) - 30, tid))
        time.sleep(1.1)
        self.call(tok, "GET", "/v1/certificates")
        self.assertEqual(self.token_row(tid)["last_used_from"], "x")
        self.vault.sql("UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
                       (int(time.time()) - 120, tid))
        time.sleep(1.1)
        self.call(tok, "GET", "/v1/certificates")
        self.assertEqual(self.token_row(tid)["last_used_from"], "127.0.0.1")
        # Unused for longer than auth.token_unused_days (90): flagged.
        self.vault.sql("UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
                       (int(time.time()) - 91 * 86400, tid))
        self.assertTrue(self.token_row(tid)["unused"])

    def token_row(self, tid):
        st, _, tokens = self.vault.request("GET", "/v1/tokens")
        return [t for t in tokens["items"] if t["id"] == tid][0]

    def test_form_upload_judged_as_json(self):
        """A multipart import names its certificate and environments in form fields: the
        scope reads them as it reads a JSON body."""
        from test_import_sources import form
        tok = self.token(role="operator", actions=["import", "read"], **OBJECTS)
        m = self.material("form-up", san="in.example.com")
        for name, envs, ok in (("out-form", "production", False),
                               ("in-form", "staging", False),
                               ("in-form", "production,staging", False),
                               ("in-form", "production", True)):
            ctype, body = form({"name": name, "environments": envs,
                                "certificate": ("c.pem", m.cert.encode()),
                                "private_key": ("k.pem", m.key.encode())})
            resp = self.vault.request("POST", "/v1/certificates", raw=body, token=tok,
                                      headers={"Content-Type": ctype})
            if ok:
                self.assertEqual(resp[0], 201, resp[2])
            else:
                self.assertOutside(resp)
        st, _, page = self.call(tok, "GET", "/v1/certificates?limit=1000")
        self.assertIn("in-form", {i["name"] for i in page["items"]})
        # A key born in the token asked for in "generate.<member>" fields needs generate
        # (and a scope without environments: the new certificate has none yet).
        ctype, body = form({"name": "in-form-gen", "generate.key": "p256",
                            "generate.subject": "CN=in.example.com",
                            "generate.dns_names": "in.example.com"})
        msg = self.assertOutside(self.vault.request("POST", "/v1/certificates", raw=body,
                                                    token=tok, headers={"Content-Type": ctype}))
        self.assertIn('"generate"', msg)
        gen = self.token(role="operator", actions=["generate"], **OBJECTS)
        msg = self.assertOutside(self.vault.request("POST", "/v1/certificates", raw=body,
                                                    token=gen, headers={"Content-Type": ctype}))
        self.assertIn("environments", msg)
        gen = self.token(role="operator", actions=["generate"], certificates=["in-*"])
        st, _, made = self.vault.request("POST", "/v1/certificates", raw=body, token=gen,
                                         headers={"Content-Type": ctype})
        self.assertEqual(st, 201, made)
