"""Integration tests: services, binding with RFC 6125 coverage, renew and replace as versions,
the version history, delete refused while in use, and what the token holds after each step,
against a real certvaultd, a fresh SoftHSM token and a fresh SQLite file."""

import re
import threading
import unittest

from harness import VaultTestCase, run

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
SERVICE_FIELDS = {"name", "environment", "description", "domains", "certificate", "bound_at",
                  "created_at", "updated_at"}


def fingerprint(material):
    """The SHA-256 fingerprint as openssl prints it (AA:BB:...)."""
    out = run(["openssl", "x509", "-in", material.cert_path, "-noout", "-fingerprint",
               "-sha256"]).stdout.decode().strip()
    return out.split("=", 1)[1]


class ServiceHelpers:
    """Short calls for the routes of this slice; each asserts only what it must to go on."""

    def put_service(self, name, domains, environment="production", **extra):
        body = {"environment": environment, "domains": domains}
        body.update(extra)
        return self.vault.request("PUT", "/v1/services/" + name, body)

    def create_service(self, name, domains, environment="production", **extra):
        st, _, body = self.put_service(name, domains, environment, **extra)
        self.assertEqual(st, 201, body)
        return body

    def get_service(self, name):
        st, _, body = self.vault.request("GET", "/v1/services/" + name)
        self.assertEqual(st, 200, body)
        return body

    def bind(self, service, cert):
        return self.vault.request("PUT", "/v1/services/%s/certificate" % service,
                                  {"certificate": cert})

    def bound(self, service, cert):
        st, _, body = self.bind(service, cert)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["certificate"]["name"], cert)
        return body

    def unbind(self, service):
        return self.vault.request("DELETE", "/v1/services/%s/certificate" % service)

    def imported(self, name, material_name=None, **kw):
        """Makes a p256 certificate (unless told otherwise) and imports it as `name`."""
        kw.setdefault("key", "p256")
        m = self.material(material_name or name, **kw)
        st, hdrs, body = self.vault.import_cert(name, m)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["version"], 1)
        self.assertEqual(hdrs.get("etag"), body["etag"])
        return m, body

    def details(self, name):
        st, hdrs, body = self.vault.request("GET", "/v1/certificates/" + name)
        self.assertEqual(st, 200, body)
        # The header is the version tag, a dot and a hash of the whole view (a 304 must
        # not hide an edit that kept the version).
        self.assertRegex(hdrs.get("etag"), '^' + body["etag"][:-1] + r'\.[0-9a-f]{16}"$')
        return body

    def versions(self, name):
        st, _, body = self.vault.request("GET", "/v1/certificates/%s/versions" % name)
        self.assertEqual(st, 200, body)
        return body

    def supersede(self, name, material, action="renew", headers=None, key=None, **extra):
        body = {"certificate": material.cert,
                "private_key": material.key if key is None else key}
        body.update(extra)
        return self.vault.request("POST", "/v1/certificates/%s/%s" % (name, action), body,
                                  headers=headers)

    def snapshot(self, name):
        """What a refused renew/replace must leave exactly as it was."""
        d = self.details(name)
        return {"details": d, "versions": self.versions(name),
                "keys": self.vault.count_token_objects()}

    def assertUnchanged(self, name, snap, services=()):
        self.assertEqual(self.details(name), snap["details"])
        self.assertEqual(self.versions(name), snap["versions"])
        self.assertEqual(self.vault.count_token_objects(), snap["keys"])
        for svc in services:
            cert = self.get_service(svc)["certificate"]
            self.assertEqual(cert["version"], snap["details"]["version"], svc)
            self.assertEqual(cert["etag"], snap["details"]["etag"], svc)

    def list_all(self, path):
        st, _, body = self.vault.request("GET", path)
        self.assertEqual(st, 200, body)
        return [it["name"] for it in body["items"]], body

    def summary(self):
        st, _, body = self.vault.request("GET", "/v1/certificates/summary")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["in_use"] + body["not_in_use"], body["total"], body)
        return body


class ServicesTest(ServiceHelpers, VaultTestCase):
    """Services: CRUD, every validation refusal, binding and the coverage table, and what the
    certificate views show about the services that use them."""

    def test_create_update_view_delete(self):
        body = self.create_service("crud-web", ["WWW.Example.COM.", "api.example.com"],
                                   description="the shop front")
        self.assertLessEqual(SERVICE_FIELDS, set(body))
        self.assertEqual(body["name"], "crud-web")
        self.assertEqual(body["environment"], "production")
        self.assertEqual(body["description"], "the shop front")
        self.assertEqual(sorted(body["domains"]), ["api.example.com", "www.example.com"])
        self.assertIsNone(body["certificate"])
        self.assertIsNone(body["bound_at"])
        self.assertRegex(body["created_at"], RFC3339)
        self.assertRegex(body["updated_at"], RFC3339)
        self.assertEqual(self.get_service("crud-web"), body)
        # Update: 200, the new values, the creation time kept.
        st, _, upd = self.put_service("crud-web", ["shop.example.com"], environment="staging",
                                      description="moved")
        self.assertEqual(st, 200, upd)
        self.assertEqual(upd["environment"], "staging")
        self.assertEqual(upd["description"], "moved")
        self.assertEqual(upd["domains"], ["shop.example.com"])
        self.assertEqual(upd["created_at"], body["created_at"])
        self.assertEqual(self.get_service("crud-web"), upd)
        # A service without a description is fine.
        self.create_service("crud-plain", ["plain.example.com"])
        # Unknown services.
        self.assertError(self.vault.request("GET", "/v1/services/crud-nope"), 404, "not_found")
        self.assertError(self.vault.request("DELETE", "/v1/services/crud-nope"),
                         404, "not_found")
        # Delete.
        st, _, gone = self.vault.request("DELETE", "/v1/services/crud-web")
        self.assertEqual(st, 200, gone)
        self.assertEqual(gone, {"name": "crud-web", "deleted": True})
        self.assertError(self.vault.request("GET", "/v1/services/crud-web"), 404, "not_found")
        self.assertError(self.vault.request("DELETE", "/v1/services/crud-web"),
                         404, "not_found")
        self.assertEqual(self.get_service("crud-plain")["domains"], ["plain.example.com"])
        # The name is free again: a new service, 201.
        self.create_service("crud-web", ["again.example.com"])

    def test_list_filters_and_paging(self):
        _, cert = self.imported("lst-cert", san="*.lst.example.com")
        for env in ("lst-prod", "lst-stage"):
            st, _, body = self.vault.request("PUT", "/v1/environments/" + env, {})
            self.assertEqual(st, 201, body)
        for name, env in (("lst-c", "lst-prod"), ("lst-a", "lst-prod"), ("lst-b", "lst-stage"),
                          ("lst-d", "lst-prod")):
            self.create_service(name, ["%s.lst.example.com" % name], environment=env)
        self.bound("lst-b", "lst-cert")
        self.bound("lst-d", "lst-cert")
        names, body = self.list_all("/v1/services?environment=lst-prod")
        self.assertEqual(names, ["lst-a", "lst-c", "lst-d"])
        self.assertTrue(all(it["environment"] == "lst-prod" for it in body["items"]))
        self.assertIsNone(body["next_cursor"])
        names, body = self.list_all("/v1/services?certificate=lst-cert")
        self.assertEqual(names, ["lst-b", "lst-d"])
        self.assertEqual([it["certificate"]["name"] for it in body["items"]],
                         ["lst-cert", "lst-cert"])
        self.assertEqual(body["items"][0]["certificate"]["etag"], cert["etag"])
        names, _ = self.list_all("/v1/services?environment=lst-prod&certificate=lst-cert")
        self.assertEqual(names, ["lst-d"])
        names, _ = self.list_all("/v1/services?environment=lst-nowhere")
        self.assertEqual(names, [])
        # Environments are matched ignoring case.
        names, _ = self.list_all("/v1/services?environment=LST-Prod")
        self.assertEqual(names, ["lst-a", "lst-c", "lst-d"])
        # The whole list is ordered by name and holds every service of the filter.
        names, _ = self.list_all("/v1/services?limit=1000")
        self.assertEqual(names, sorted(names))
        self.assertLessEqual({"lst-a", "lst-b", "lst-c", "lst-d"}, set(names))
        # limit=1 pages walk every row once; the last page says there is no more.
        seen, cursor, pages = [], None, 0
        while True:
            path = "/v1/services?environment=lst-prod&limit=1" + (
                "&cursor=" + cursor if cursor else "")
            st, _, page = self.vault.request("GET", path)
            self.assertEqual(st, 200, page)
            self.assertEqual(page["limit"], 1)
            self.assertEqual(len(page["items"]), 1, page)
            seen += [it["name"] for it in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            self.assertLess(pages, 10)
        self.assertEqual(seen, ["lst-a", "lst-c", "lst-d"])
        self.assertEqual(pages, 3)
        self.assertError(self.vault.request("GET", "/v1/services?limit=0"), 400, "bad_request")
        self.assertError(self.vault.request("GET", "/v1/services?colour=red"),
                         400, "bad_request")

    def test_domain_normalising_and_limits(self):
        body = self.create_service("dom-norm", ["A.Example.COM.", "xn--bcher-kva.example.com",
                                                "*.Wild.Example.com", "a-b.example.com"])
        self.assertEqual(sorted(body["domains"]), ["*.wild.example.com", "a-b.example.com",
                                                   "a.example.com",
                                                   "xn--bcher-kva.example.com"])
        hundred = ["h%d.many.example.com" % i for i in range(100)]
        body = self.create_service("dom-hundred", hundred)
        self.assertEqual(sorted(body["domains"]), sorted(hundred))
        label63 = "a" * 63 + ".example.com"
        self.assertEqual(self.create_service("dom-63", [label63])["domains"], [label63])
        name253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
        self.assertEqual(len(name253), 253)
        self.assertEqual(self.create_service("dom-253", [name253])["domains"], [name253])

    def test_each_validation_refusal(self):
        good = {"environment": "production", "domains": ["ok.example.com"]}
        cases = [
            ("empty-list", {"domains": []}),
            ("too-many", {"domains": ["h%d.example.com" % i for i in range(101)]}),
            ("duplicate", {"domains": ["a.example.com", "A.EXAMPLE.COM."]}),
            ("duplicate-exact", {"domains": ["a.example.com", "a.example.com"]}),
            ("bad-label", {"domains": ["a_b.example.com"]}),
            ("space", {"domains": ["a b.example.com"]}),
            ("leading-hyphen", {"domains": ["-a.example.com"]}),
            ("trailing-hyphen", {"domains": ["a-.example.com"]}),
            ("empty-label", {"domains": ["a..example.com"]}),
            ("empty-name", {"domains": [""]}),
            ("only-dot", {"domains": ["."]}),
            ("label-64", {"domains": ["a" * 64 + ".example.com"]}),
            ("name-255", {"domains": [".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 63])]}),
            ("non-ascii", {"domains": ["b\u00fccher.example.com"]}),
            ("ipv4", {"domains": ["192.168.1.1"]}),
            ("ipv4-dot", {"domains": ["10.0.0.1."]}),
            ("partial-wildcard", {"domains": ["a*.example.com"]}),
            ("wildcard-suffix", {"domains": ["*a.example.com"]}),
            ("inner-wildcard", {"domains": ["a.*.example.com"]}),
            ("not-a-string", {"domains": [7]}),
            ("not-a-list", {"domains": "a.example.com"}),
            ("no-domains", {"domains": None}),
            ("no-environment", {"environment": None}),
            ("env-space", {"environment": "prod env"}),
            ("env-dot", {"environment": "prod.eu"}),
            ("env-empty", {"environment": ""}),
            ("env-long", {"environment": "e" * 65}),
            ("env-number", {"environment": 7}),
            ("unknown-member", {"colour": "red"}),
        ]
        for case, override in cases:
            with self.subTest(case=case):
                body = dict(good)
                body.update(override)
                body = {k: v for k, v in body.items() if v is not None}
                name = "val-" + case
                self.assertError(self.vault.request("PUT", "/v1/services/" + name, body),
                                 400, "bad_request")
                self.assertError(self.vault.request("GET", "/v1/services/" + name),
                                 404, "not_found")
        for name in ("bad_name", "a" * 65, "caf%C3%A9"):
            with self.subTest(name=name):
                self.assertError(self.vault.request("PUT", "/v1/services/" + name, good),
                                 400, "invalid_name")
        # A refused update changes nothing.
        before = self.create_service("val-existing", ["keep.example.com"], description="k")
        for override in ({"domains": []}, {"domains": ["a*.example.com"]},
                         {"environment": "bad env"}, {"colour": "red"}):
            with self.subTest(update=override):
                body = dict(good)
                body.update(override)
                self.assertError(self.vault.request("PUT", "/v1/services/val-existing", body),
                                 400, "bad_request")
                self.assertEqual(self.get_service("val-existing"), before)

    def test_domain_coverage_through_bind(self):
        certs = {
            "cov-wild": dict(san="*.example.com"),
            "cov-exact": dict(san="www.example.com"),
            "cov-upper": dict(san="WWW.Upper.Example.COM"),
            "cov-dot": dict(san="dot.example.com."),
            "cov-partial": dict(san="a*.example.com,*b.example.net,x.*.example.org"),
            "cov-tld": dict(san="*.com"),
            "cov-cnonly": dict(cn="cn.example.com"),
            "cov-cnsan": dict(cn="b.example.com", san="a.example.com"),
            "cov-alabel": dict(san="*.idn.example.com,xn--bcher-kva.example.org"),
        }
        for name, kw in certs.items():
            self.imported(name, **kw)
        table = [
            # certificate, service domain, covered
            ("cov-wild", "a.example.com", True),
            ("cov-wild", "A.Example.COM", True),
            ("cov-wild", "a.example.com.", True),
            ("cov-wild", "example.com", False),                # wildcard vs apex
            ("cov-wild", "a.b.example.com", False),            # wildcard vs deeper label
            ("cov-wild", "*.example.com", True),               # identical wildcard
            ("cov-wild", "*.sub.example.com", False),
            ("cov-exact", "www.example.com", True),
            ("cov-exact", "WWW.EXAMPLE.COM.", True),
            ("cov-exact", "api.example.com", False),
            ("cov-exact", "example.com", False),
            ("cov-exact", "*.example.com", False),             # wildcard service, exact SAN
            ("cov-upper", "www.upper.example.com", True),      # case on the certificate side
            ("cov-dot", "dot.example.com", True),              # trailing dot in the SAN
            ("cov-dot", "dot.example.com.", True),             # ... and on both sides
            ("cov-partial", "ab.example.com", False),
            ("cov-partial", "a.example.com", False),
            ("cov-partial", "ab.example.net", False),
            ("cov-partial", "b.example.net", False),
            ("cov-partial", "x.y.example.org", False),
            ("cov-tld", "example.com", False),                 # *.com covers nothing
            ("cov-cnonly", "cn.example.com", True),            # CN when there is no SAN
            ("cov-cnonly", "CN.Example.com.", True),
            ("cov-cnonly", "other.example.com", False),
            ("cov-cnsan", "a.example.com", True),
            ("cov-cnsan", "b.example.com", False),             # CN ignored beside a SAN
            ("cov-alabel", "xn--bcher-kva.idn.example.com", True),
            ("cov-alabel", "xn--bcher-kva.example.org", True),
            ("cov-alabel", "XN--BCHER-KVA.example.org", True),
            ("cov-alabel", "bcher-kva.example.org", False),
        ]
        for i, (cert, domain, covered) in enumerate(table):
            with self.subTest(cert=cert, domain=domain, covered=covered):
                svc = "cov-svc-%02d" % i
                self.create_service(svc, [domain])
                st, _, body = self.bind(svc, cert)
                if covered:
                    self.assertEqual(st, 200, body)
                    self.assertEqual(body["certificate"]["name"], cert)
                    self.assertRegex(body["bound_at"], RFC3339)
                    self.assertEqual(self.get_service(svc)["certificate"]["name"], cert)
                else:
                    msg = self.assertError((st, None, body), 422, "domain_not_covered")
                    self.assertIn(domain.lower().rstrip("."), msg.lower())
                    after = self.get_service(svc)
                    self.assertIsNone(after["certificate"])
                    self.assertIsNone(after["bound_at"])
        # Every domain of the service must be covered; the message names the uncovered ones.
        self.create_service("cov-multi", ["www.example.com", "api.example.com",
                                          "mail.example.com"])
        msg = self.assertError(self.bind("cov-multi", "cov-exact"), 422, "domain_not_covered")
        self.assertIn("api.example.com", msg)
        self.assertIn("mail.example.com", msg)
        self.assertIsNone(self.get_service("cov-multi")["certificate"])
        self.assertEqual(self.bound("cov-multi", "cov-wild")["certificate"]["name"], "cov-wild")

    def test_bind_view_rebind_unbind_and_domain_changes(self):
        m, cert = self.imported("bnd-wild", san="*.bnd.example.com,bnd.example.com")
        self.imported("bnd-www", san="www.bnd.example.com")
        self.create_service("bnd-svc", ["www.bnd.example.com"], environment="production")
        self.assertError(self.bind("bnd-nope", "bnd-wild"), 404, "not_found")
        self.assertError(self.bind("bnd-svc", "bnd-nope"), 404, "not_found")
        self.assertIsNone(self.get_service("bnd-svc")["certificate"])
        self.assertError(self.unbind("bnd-svc"), 404, "not_found")
        self.assertError(self.unbind("bnd-nope"), 404, "not_found")
        body = self.bound("bnd-svc", "bnd-wild")
        self.assertEqual(body["certificate"], {
            "name": "bnd-wild", "version": 1, "serial_number": cert["serial_number"],
            "sha256_fingerprint": fingerprint(m), "valid_to": cert["valid_to"],
            "status": "valid", "expires_in_days": cert["expires_in_days"],
            "etag": cert["etag"]})
        self.assertEqual(cert["fingerprints"]["sha256"], fingerprint(m))
        self.assertRegex(body["bound_at"], RFC3339)
        self.assertEqual(self.get_service("bnd-svc"), body)
        # Rebinding to another certificate that covers the domains.
        body = self.bound("bnd-svc", "bnd-www")
        self.assertEqual(body["certificate"]["name"], "bnd-www")
        self.assertEqual(self.details("bnd-wild")["used_by"], [])
        self.assertEqual([u["service"] for u in self.details("bnd-www")["used_by"]],
                         ["bnd-svc"])
        # Back to the wildcard; updating the service keeps the binding.
        self.bound("bnd-svc", "bnd-wild")
        st, _, upd = self.put_service("bnd-svc", ["www.bnd.example.com"],
                                      environment="production", description="with text")
        self.assertEqual(st, 200, upd)
        self.assertEqual(upd["certificate"]["name"], "bnd-wild")
        # Domains the certificate does not cover: 422, nothing changes.
        before = self.get_service("bnd-svc")
        msg = self.assertError(
            self.put_service("bnd-svc", ["www.bnd.example.com", "deep.www.bnd.example.com"],
                             environment="staging", description="changed"),
            422, "domain_not_covered")
        self.assertIn("deep.www.bnd.example.com", msg)
        self.assertEqual(self.get_service("bnd-svc"), before)
        # Rebinding to a certificate that does not cover them: 422, still on the old one.
        self.create_service("bnd-two", ["api.bnd.example.com"])
        self.bound("bnd-two", "bnd-wild")
        msg = self.assertError(self.bind("bnd-two", "bnd-www"), 422, "domain_not_covered")
        self.assertIn("api.bnd.example.com", msg)
        self.assertEqual(self.get_service("bnd-two")["certificate"]["name"], "bnd-wild")
        # Covered domains: 200, still bound.
        st, _, upd = self.put_service("bnd-svc", ["bnd.example.com", "API.bnd.example.com."],
                                      environment="staging")
        self.assertEqual(st, 200, upd)
        self.assertEqual(sorted(upd["domains"]), ["api.bnd.example.com", "bnd.example.com"])
        self.assertEqual(upd["environment"], "staging")
        self.assertEqual(upd["certificate"]["name"], "bnd-wild")
        # Unbind: the view says so, a second unbind finds nothing.
        st, _, body = self.unbind("bnd-svc")
        self.assertEqual(st, 200, body)
        self.assertIsNone(body["certificate"])
        self.assertIsNone(body["bound_at"])
        self.assertIsNone(self.get_service("bnd-svc")["certificate"])
        self.assertError(self.unbind("bnd-svc"), 404, "not_found")
        # Unbound, the service may take any domains again.
        st, _, upd = self.put_service("bnd-svc", ["elsewhere.example.net"])
        self.assertEqual(st, 200, upd)

    def test_used_by_custom_domains_filters_and_summary(self):
        s0 = self.summary()
        self.imported("ub-cert", san="*.ub.example.net,ub.example.net")
        self.imported("ub-exact", san="exact.ub.example.net")
        self.imported("ub-idle", san="idle.ub.example.net")
        s1 = self.summary()
        self.assertEqual(s1["total"], s0["total"] + 3)
        self.assertEqual(s1["not_in_use"], s0["not_in_use"] + 3)
        self.assertEqual(s1["in_use"], s0["in_use"])
        self.create_service("ub-b", ["x.ub.example.net", "ub.example.net"], environment="staging")
        self.create_service("ub-a", ["x.ub.example.net", "y.ub.example.net"],
                            environment="production")
        self.create_service("ub-c", ["exact.ub.example.net"], environment="production")
        self.bound("ub-b", "ub-cert")
        self.bound("ub-a", "ub-cert")
        self.bound("ub-c", "ub-exact")
        d = self.details("ub-cert")
        self.assertEqual([(u["service"], u["environment"]) for u in d["used_by"]],
                         [("ub-a", "production"), ("ub-b", "staging")])
        self.assertEqual(sorted(d["used_by"][0]["domains"]),
                         ["x.ub.example.net", "y.ub.example.net"])
        self.assertEqual(sorted(d["used_by"][1]["domains"]),
                         ["ub.example.net", "x.ub.example.net"])
        # Each (service, domain) pair: x.ub.example.net is in both services, counted twice.
        self.assertEqual(d["custom_domains"], 4)
        self.assertEqual(d["version"], 1)
        self.assertEqual(self.details("ub-idle")["used_by"], [])
        self.assertEqual(self.details("ub-idle")["custom_domains"], 0)
        # List items.
        names, body = self.list_all("/v1/certificates?q=ub-&limit=1000")
        self.assertEqual(names, ["ub-cert", "ub-exact", "ub-idle"])
        items = {it["name"]: it for it in body["items"]}
        self.assertEqual(items["ub-cert"]["used_by"], [
            {"service": "ub-a", "environment": "production"},
            {"service": "ub-b", "environment": "staging"}])
        self.assertEqual(items["ub-cert"]["custom_domains"], 4)
        self.assertEqual(items["ub-cert"]["version"], 1)
        self.assertEqual(items["ub-exact"]["used_by"],
                         [{"service": "ub-c", "environment": "production"}])
        self.assertEqual(items["ub-exact"]["custom_domains"], 1)
        self.assertEqual(items["ub-idle"]["used_by"], [])
        self.assertEqual(items["ub-idle"]["custom_domains"], 0)
        # in_use filter.
        names, _ = self.list_all("/v1/certificates?q=ub-&in_use=true&limit=1000")
        self.assertEqual(names, ["ub-cert", "ub-exact"])
        names, _ = self.list_all("/v1/certificates?q=ub-&in_use=false&limit=1000")
        self.assertEqual(names, ["ub-idle"])
        for bad in ("yes", "1", "", "TRUEISH"):
            with self.subTest(in_use=bad):
                self.assertError(self.vault.request("GET", "/v1/certificates?in_use=" + bad),
                                 400, "bad_request")
        # domain filter: the exact name or the wildcard covering it.
        for domain, want in (("exact.ub.example.net", ["ub-cert", "ub-exact"]),
                             ("EXACT.Ub.Example.NET.", ["ub-cert", "ub-exact"]),
                             ("x.ub.example.net", ["ub-cert"]),
                             ("ub.example.net", ["ub-cert"]),
                             ("idle.ub.example.net", ["ub-cert", "ub-idle"]),
                             ("a.b.ub.example.net", []),
                             ("example.net", [])):
            with self.subTest(domain=domain):
                names, _ = self.list_all("/v1/certificates?limit=1000&domain=" + domain)
                self.assertEqual(names, want)
        names, _ = self.list_all(
            "/v1/certificates?limit=1000&in_use=false&domain=idle.ub.example.net")
        self.assertEqual(names, ["ub-idle"])
        for bad in ("bad_name.example.net", "a..ub.example.net", "-a.ub.example.net"):
            with self.subTest(domain=bad):
                self.assertError(self.vault.request("GET", "/v1/certificates?domain=" + bad),
                                 400, "bad_request")
        # Summary: one more in use per bound certificate, not per service.
        s2 = self.summary()
        self.assertEqual(s2["total"], s1["total"])
        self.assertEqual(s2["in_use"], s1["in_use"] + 2)
        self.assertEqual(s2["not_in_use"], s1["not_in_use"] - 2)
        # One service unbound: still in use through the other.
        self.assertEqual(self.unbind("ub-b")[0], 200)
        d = self.details("ub-cert")
        self.assertEqual([u["service"] for u in d["used_by"]], ["ub-a"])
        self.assertEqual(d["custom_domains"], 2)
        self.assertEqual(self.summary()["in_use"], s2["in_use"])
        # Deleting a bound service unbinds it.
        st, _, body = self.vault.request("DELETE", "/v1/services/ub-a")
        self.assertEqual(st, 200, body)
        d = self.details("ub-cert")
        self.assertEqual(d["used_by"], [])
        self.assertEqual(d["custom_domains"], 0)
        s3 = self.summary()
        self.assertEqual(s3["in_use"], s1["in_use"] + 1)
        self.assertEqual(s3["not_in_use"], s1["not_in_use"] - 1)
        names, _ = self.list_all("/v1/certificates?q=ub-&in_use=true&limit=1000")
        self.assertEqual(names, ["ub-exact"])


class RenewTest(ServiceHelpers, VaultTestCase):
    """Renew and replace as versions, the race, delete while in use, restart, and the issue's
    "done when" scenario."""

    def test_renew_applies_to_every_bound_service(self):
        m1, v1 = self.imported("rn-cert", "rn-v1", san="*.rn.example.com")
        m2 = self.material("rn-v2", san="*.rn.example.com")
        # Nobody uses it yet: nothing to renew.
        snap = self.snapshot("rn-cert")
        self.assertError(self.supersede("rn-cert", m2), 409, "not_in_use")
        self.assertUnchanged("rn-cert", snap)
        self.assertError(self.supersede("rn-nope", m2), 404, "not_found")
        self.create_service("rn-web", ["www.rn.example.com"], environment="production")
        self.create_service("rn-api", ["api.rn.example.com"], environment="staging")
        self.bound("rn-web", "rn-cert")
        self.bound("rn-api", "rn-cert")
        self.assertEqual(self.details("rn-cert")["etag"], v1["etag"])
        keys_before = self.vault.count_token_objects()
        st, hdrs, body = self.supersede("rn-cert", m2, version=1)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["name"], "rn-cert")
        self.assertEqual(body["version"], 2)
        self.assertEqual(body["previous_version"], 1)
        self.assertEqual(sorted(body["applied_to"], key=lambda a: a["service"]), [
            {"service": "rn-api", "environment": "staging"},
            {"service": "rn-web", "environment": "production"}])
        self.assertEqual(body["fingerprints"]["sha256"], fingerprint(m2))
        self.assertEqual(hdrs["etag"], body["etag"])
        self.assertNotEqual(body["etag"], v1["etag"])
        self.assertNotEqual(body["key"]["pkcs11_uri"], v1["key"]["pkcs11_uri"])
        self.assertEqual([u["service"] for u in body["used_by"]], ["rn-api", "rn-web"])
        # Right after the response every bound service shows the new version.
        for svc in ("rn-web", "rn-api"):
            cert = self.get_service(svc)["certificate"]
            self.assertEqual(cert["name"], "rn-cert")
            self.assertEqual(cert["version"], 2)
            self.assertEqual(cert["sha256_fingerprint"], fingerprint(m2))
            self.assertEqual(cert["serial_number"], body["serial_number"])
            self.assertEqual(cert["etag"], body["etag"])
        # The new version has its own key; the old one's stays.
        self.assertEqual(self.vault.count_token_objects(), keys_before + 1)
        d = self.details("rn-cert")
        self.assertEqual(d["version"], 2)
        self.assertEqual(d["fingerprints"]["sha256"], fingerprint(m2))
        # Naming the superseded version: already_renewed, by version and by If-Match.
        m3 = self.material("rn-v3", san="*.rn.example.com")
        snap = self.snapshot("rn-cert")
        self.assertError(self.supersede("rn-cert", m3, version=1), 409, "already_renewed")
        self.assertUnchanged("rn-cert", snap, ("rn-web", "rn-api"))
        self.assertError(self.supersede("rn-cert", m3, headers={"If-Match": v1["etag"]}),
                         409, "already_renewed")
        self.assertUnchanged("rn-cert", snap, ("rn-web", "rn-api"))
        # Naming no version at all: 412.
        self.assertError(self.supersede("rn-cert", m3, headers={"If-Match": '"made-up-etag"'}),
                         412, "precondition_failed")
        self.assertError(self.supersede("rn-cert", m3, version=99), 412,
                         "precondition_failed")
        self.assertUnchanged("rn-cert", snap, ("rn-web", "rn-api"))
        # The current certificate again, or an earlier version's: same_certificate.
        self.assertError(self.supersede("rn-cert", m2), 409, "same_certificate")
        self.assertError(self.supersede("rn-cert", m1), 409, "same_certificate")
        self.assertError(self.supersede("rn-cert", m1, version=2), 409, "same_certificate")
        self.assertUnchanged("rn-cert", snap, ("rn-web", "rn-api"))
        # If-Match with the current ETag: 200, version 3.
        st, hdrs, body = self.supersede("rn-cert", m3, headers={"If-Match": d["etag"]})
        self.assertEqual(st, 200, body)
        self.assertEqual((body["version"], body["previous_version"]), (3, 2))
        self.assertEqual(hdrs["etag"], body["etag"])
        self.assertEqual(self.vault.count_token_objects(), keys_before + 2)
        # The version history, newest first.
        vs = self.versions("rn-cert")
        self.assertEqual(vs["name"], "rn-cert")
        self.assertEqual(vs["current_version"], 3)
        versions = vs["versions"]
        self.assertEqual([v["version"] for v in versions], [3, 2, 1])
        self.assertEqual([v["current"] for v in versions], [True, False, False])
        self.assertEqual([v["ended_by"] for v in versions], [None, "renewed", "renewed"])
        self.assertIsNone(versions[0]["current_until"])
        self.assertEqual([v["sha256_fingerprint"] for v in versions],
                         [fingerprint(m3), fingerprint(m2), fingerprint(m1)])
        self.assertEqual(versions[0]["etag"], body["etag"])
        self.assertEqual(versions[2]["etag"], v1["etag"])
        self.assertEqual(versions[2]["serial_number"], v1["serial_number"])
        self.assertEqual(versions[2]["subject"], v1["subject"])
        self.assertEqual(versions[2]["key_description"], v1["public_key"]["description"])
        self.assertEqual(len({v["etag"] for v in versions}), 3)
        for v in versions:
            self.assertRegex(v["current_from"], RFC3339)
            self.assertRegex(v["valid_from"], RFC3339)
            self.assertRegex(v["valid_to"], RFC3339)
            self.assertEqual(v["status"], "valid")
            self.assertTrue(v["key"]["in_token"], v)
            self.assertTrue(v["key"]["pkcs11_uri"].startswith("pkcs11:"), v)
        for v in versions[1:]:
            self.assertRegex(v["current_until"], RFC3339)
            self.assertGreaterEqual(v["current_until"], v["current_from"])
        self.assertEqual(versions[2]["key"]["pkcs11_uri"], v1["key"]["pkcs11_uri"])
        self.assertEqual(len({v["key"]["pkcs11_uri"] for v in versions}), 3)
        self.assertError(self.vault.request("GET", "/v1/certificates/rn-nope/versions"),
                         404, "not_found")

    def test_renew_refusals_change_nothing(self):
        self.imported("rf-cert", "rf-v1", san="*.rf.example.com")
        self.create_service("rf-web", ["www.rf.example.com"], environment="production")
        self.create_service("rf-api", ["api.rf.example.com"], environment="staging")
        self.bound("rf-web", "rf-cert")
        self.bound("rf-api", "rf-cert")
        snap = self.snapshot("rf-cert")
        # Covers rf-web's domain but not rf-api's.
        narrow = self.material("rf-narrow", san="www.rf.example.com")
        msg = self.assertError(self.supersede("rf-cert", narrow), 422, "domain_not_covered")
        self.assertIn("api.rf.example.com", msg)
        self.assertIn("rf-api", msg)
        self.assertUnchanged("rf-cert", snap, ("rf-web", "rf-api"))
        other = self.material("rf-other", san="*.rf.example.com")
        for case, material, extra, code in (
                ("expired", self.material("rf-expired", san="*.rf.example.com",
                                          not_before=-10 * 86400, not_after=-1), {},
                 "expired"),
                ("upcoming", self.material("rf-upcoming", san="*.rf.example.com",
                                           not_before=3600, not_after=10 * 86400), {},
                 "not_yet_valid"),
                ("mismatch", self.material("rf-mismatch", san="*.rf.example.com"),
                 {"key": other.key}, "key_mismatch")):
            with self.subTest(case=case):
                self.assertError(self.supersede("rf-cert", material, **extra), 422, code)
                self.assertUnchanged("rf-cert", snap, ("rf-web", "rf-api"))
        self.assertError(self.supersede("rf-cert", other, certificate="garbage"),
                         400, "bad_encoding")
        self.assertUnchanged("rf-cert", snap, ("rf-web", "rf-api"))
        # Editing the metadata cannot touch what belongs to the certificate.
        for member in ({"certificate": other.cert}, {"private_key": other.key}):
            with self.subTest(patch=list(member)):
                self.assertError(self.vault.request("PATCH", "/v1/certificates/rf-cert",
                                                    member), 400, "bad_request")
        self.assertUnchanged("rf-cert", snap, ("rf-web", "rf-api"))

    def test_racing_renewals_one_wins_no_orphan_keys(self):
        self.imported("race-cert", "race-v1", san="race.example.com")
        self.create_service("race-svc", ["race.example.com"])
        self.bound("race-svc", "race-cert")
        news = [self.material("race-new-%d" % i, san="race.example.com") for i in range(8)]
        keys_before = self.vault.count_token_objects()
        barrier = threading.Barrier(len(news))
        results = [None] * len(news)

        def renew(i):
            try:
                barrier.wait(timeout=30)
                results[i] = self.supersede("race-cert", news[i], version=1)
            except Exception as e:  # shown by the assertions below
                results[i] = e

        threads = [threading.Thread(target=renew, args=(i,)) for i in range(len(news))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for r in results:
            self.assertIsInstance(r, tuple, r)
        statuses = sorted(r[0] for r in results)
        self.assertEqual(statuses, [200] + [409] * 7, [r[2] for r in results])
        winner = next(i for i, r in enumerate(results) if r[0] == 200)
        for i, r in enumerate(results):
            if i != winner:
                self.assertError(r, 409, "already_renewed")
        self.assertEqual(results[winner][2]["version"], 2)
        vs = self.versions("race-cert")
        self.assertEqual([v["version"] for v in vs["versions"]], [2, 1])
        self.assertEqual(vs["versions"][0]["sha256_fingerprint"], fingerprint(news[winner]))
        self.assertEqual(self.get_service("race-svc")["certificate"]["sha256_fingerprint"],
                         fingerprint(news[winner]))
        # One key more: the winner's. No loser left a key behind.
        self.assertEqual(self.vault.count_token_objects(), keys_before + 1)
        # The losers may try again against the new version.
        loser = next(i for i in range(len(news)) if i != winner)
        st, _, body = self.supersede("race-cert", news[loser], version=2)
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.count_token_objects(), keys_before + 2)

    def test_replace(self):
        # Unbound: replace works with any names, and there is no coverage rule.
        _, v1 = self.imported("rp-free", "rp-free-v1", san="free.rp.example.com")
        keys = self.vault.count_token_objects()
        m2 = self.material("rp-free-v2", san="other.rp.example.com")
        st, hdrs, body = self.supersede("rp-free", m2, action="replace")
        self.assertEqual(st, 200, body)
        self.assertEqual((body["version"], body["previous_version"]), (2, 1))
        self.assertEqual(body["applied_to"], [])
        self.assertEqual(body["domains"], ["other.rp.example.com"])
        self.assertEqual(hdrs["etag"], body["etag"])
        self.assertEqual(self.vault.count_token_objects(), keys + 1)
        self.assertError(self.supersede("rp-free", m2, action="replace"),
                         409, "same_certificate")
        vs = self.versions("rp-free")
        self.assertEqual([(v["version"], v["ended_by"]) for v in vs["versions"]],
                         [(2, None), (1, "replaced")])
        self.assertEqual(vs["versions"][1]["etag"], v1["etag"])
        # Bound: coverage and every import check.
        bm1, b1 = self.imported("rp-bound", "rp-bound-v1", san="*.rp.example.com")
        self.create_service("rp-svc", ["www.rp.example.com"], environment="production")
        self.bound("rp-svc", "rp-bound")
        snap = self.snapshot("rp-bound")
        narrow = self.material("rp-narrow", san="api.rp.example.com")
        msg = self.assertError(self.supersede("rp-bound", narrow, action="replace"),
                               422, "domain_not_covered")
        self.assertIn("www.rp.example.com", msg)
        self.assertUnchanged("rp-bound", snap, ("rp-svc",))
        other = self.material("rp-other", san="*.rp.example.com")
        expired = self.material("rp-expired", san="*.rp.example.com",
                                not_before=-10 * 86400, not_after=-1)
        new = self.material("rp-bound-v2", san="www.rp.example.com")
        for case, extra, material, status, code in (
                ("expired", {}, expired, 422, "expired"),
                ("mismatch", {"key": other.key}, new, 422, "key_mismatch"),
                ("no-version", {"version": 7}, new, 412, "precondition_failed"),
                ("made-up-etag", {"headers": {"If-Match": '"nope"'}}, new, 412,
                 "precondition_failed")):
            with self.subTest(case=case):
                self.assertError(self.supersede("rp-bound", material, action="replace", **extra),
                                 status, code)
                self.assertUnchanged("rp-bound", snap, ("rp-svc",))
        # The current certificate again: same_certificate.
        self.assertError(self.supersede("rp-bound", bm1, action="replace"),
                         409, "same_certificate")
        self.assertUnchanged("rp-bound", snap, ("rp-svc",))
        keys = self.vault.count_token_objects()
        st, hdrs, body = self.supersede("rp-bound", new, action="replace", version=1)
        self.assertEqual(st, 200, body)
        self.assertEqual((body["version"], body["previous_version"]), (2, 1))
        self.assertEqual(body["applied_to"], [{"service": "rp-svc", "environment": "production"}])
        self.assertEqual(self.get_service("rp-svc")["certificate"]["version"], 2)
        self.assertEqual(self.get_service("rp-svc")["certificate"]["sha256_fingerprint"],
                         fingerprint(new))
        self.assertEqual(self.vault.count_token_objects(), keys + 1)
        self.assertError(self.supersede("rp-bound", new, action="replace"),
                         409, "same_certificate")
        later = self.material("rp-bound-v3", san="*.rp.example.com")
        self.assertError(self.supersede("rp-bound", later, action="replace", version=1),
                         409, "already_renewed")
        self.assertError(self.supersede("rp-bound", later, action="replace",
                                        headers={"If-Match": b1["etag"]}),
                         409, "already_renewed")
        vs = self.versions("rp-bound")
        self.assertEqual([(v["version"], v["ended_by"]) for v in vs["versions"]],
                         [(2, None), (1, "replaced")])
        self.assertTrue(all(v["key"]["in_token"] for v in vs["versions"]))

    def test_delete_refused_while_in_use_then_removes_every_version(self):
        keys0 = self.vault.count_token_objects()
        pubs0 = self.vault.count_token_objects("Public Key Object")
        _, v1 = self.imported("dl-cert", "dl-v1", san="*.dl.example.com")
        self.create_service("dl-svc1", ["a.dl.example.com"], environment="production")
        self.create_service("dl-svc2", ["b.dl.example.com"], environment="staging")
        self.bound("dl-svc1", "dl-cert")
        self.bound("dl-svc2", "dl-cert")
        st, _, v2 = self.supersede("dl-cert", self.material("dl-v2", san="*.dl.example.com"))
        self.assertEqual(st, 200, v2)
        self.assertEqual(self.vault.count_token_objects(), keys0 + 2)
        snap = self.snapshot("dl-cert")
        msg = self.assertError(
            self.vault.request("DELETE", "/v1/certificates/dl-cert?confirm=delete"),
            409, "in_use")
        self.assertIn("dl-svc1", msg)
        self.assertIn("dl-svc2", msg)
        self.assertUnchanged("dl-cert", snap, ("dl-svc1", "dl-svc2"))
        st, _, body = self.unbind("dl-svc1")
        self.assertEqual(st, 200, body)
        self.assertIsNone(body["certificate"])
        msg = self.assertError(
            self.vault.request("DELETE", "/v1/certificates/dl-cert?confirm=delete"),
            409, "in_use")
        self.assertIn("dl-svc2", msg)
        self.assertEqual(self.details("dl-cert")["version"], 2)
        self.assertEqual(self.versions("dl-cert"), snap["versions"])
        self.assertEqual(self.vault.count_token_objects(), keys0 + 2)
        self.assertEqual(self.unbind("dl-svc2")[0], 200)
        # Still needs the confirmation.
        self.assertError(self.vault.request("DELETE", "/v1/certificates/dl-cert"),
                         400, "confirmation_required")
        st, _, body = self.vault.request("DELETE", "/v1/certificates/dl-cert?confirm=delete")
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.count_token_objects(), keys0)
        self.assertEqual(self.vault.count_token_objects("Public Key Object"), pubs0)
        objects = self.vault.token_objects().replace(":", "")
        self.assertNotIn(v1["key"]["id"], objects)
        self.assertNotIn(v2["key"]["id"], objects)
        self.assertError(self.vault.request("GET", "/v1/certificates/dl-cert"),
                         404, "not_found")
        self.assertError(self.vault.request("GET", "/v1/certificates/dl-cert/versions"),
                         404, "not_found")
        # The services stay, unbound.
        for svc in ("dl-svc1", "dl-svc2"):
            self.assertIsNone(self.get_service(svc)["certificate"])
        self.assertError(self.bind("dl-svc1", "dl-cert"), 404, "not_found")

    def test_restart_keeps_versions_and_bindings(self):
        m1, v1 = self.imported("rs-cert", "rs-v1", san="*.rs.example.com")
        self.create_service("rs-web", ["www.rs.example.com"], environment="production")
        self.create_service("rs-api", ["api.rs.example.com"], environment="staging")
        self.create_service("rs-idle", ["idle.rs.example.com"], environment="staging")
        self.bound("rs-web", "rs-cert")
        self.bound("rs-api", "rs-cert")
        for i in (2, 3):
            st, _, body = self.supersede("rs-cert",
                                         self.material("rs-v%d" % i, san="*.rs.example.com"))
            self.assertEqual(st, 200, body)
        details = self.details("rs-cert")
        versions = self.versions("rs-cert")
        services = {s: self.get_service(s) for s in ("rs-web", "rs-api", "rs-idle")}
        keys = self.vault.count_token_objects()
        self.assertEqual(self.vault.stop(), 0)
        self.vault.start()
        self.assertEqual(self.details("rs-cert"), details)
        self.assertEqual(self.versions("rs-cert"), versions)
        for s, view in services.items():
            self.assertEqual(self.get_service(s), view)
        self.assertEqual(self.vault.count_token_objects(), keys)
        # The history still decides: the old versions are still superseded.
        m4 = self.material("rs-v4", san="*.rs.example.com")
        self.assertError(self.supersede("rs-cert", m4, version=2), 409, "already_renewed")
        self.assertError(self.supersede("rs-cert", m4, headers={"If-Match": v1["etag"]}),
                         409, "already_renewed")
        self.assertError(self.supersede("rs-cert", m1), 409, "same_certificate")
        st, _, body = self.supersede("rs-cert", m4, headers={"If-Match": details["etag"]})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["version"], 4)
        self.assertEqual(self.get_service("rs-api")["certificate"]["version"], 4)

    def test_done_when_scenario(self):
        """Two services in two environments share one wildcard certificate; it is renewed
        once, both use the new version, the old version cannot be renewed again, delete is
        refused while they use it, and after unbinding both it is deleted with every key."""
        keys0 = self.vault.count_token_objects()
        pubs0 = self.vault.count_token_objects("Public Key Object")
        _, v1 = self.imported("dw-cert", "dw-v1", san="*.shop.example.com")
        self.create_service("dw-prod", ["www.shop.example.com"], environment="production")
        self.create_service("dw-stage", ["staging.shop.example.com"], environment="staging")
        self.bound("dw-prod", "dw-cert")
        self.bound("dw-stage", "dw-cert")
        m2 = self.material("dw-v2", san="*.shop.example.com")
        st, hdrs, v2 = self.supersede("dw-cert", m2, version=1)
        self.assertEqual(st, 200, v2)
        self.assertEqual(v2["version"], 2)
        self.assertEqual(hdrs["etag"], v2["etag"])
        self.assertEqual(sorted((a["service"], a["environment"]) for a in v2["applied_to"]),
                         [("dw-prod", "production"), ("dw-stage", "staging")])
        for svc in ("dw-prod", "dw-stage"):
            cert = self.get_service(svc)["certificate"]
            self.assertEqual((cert["name"], cert["version"], cert["sha256_fingerprint"]),
                             ("dw-cert", 2, fingerprint(m2)))
        m3 = self.material("dw-v3", san="*.shop.example.com")
        self.assertError(self.supersede("dw-cert", m3, version=1), 409, "already_renewed")
        self.assertError(self.supersede("dw-cert", m3, headers={"If-Match": v1["etag"]}),
                         409, "already_renewed")
        msg = self.assertError(
            self.vault.request("DELETE", "/v1/certificates/dw-cert?confirm=delete"),
            409, "in_use")
        self.assertIn("dw-prod", msg)
        self.assertIn("dw-stage", msg)
        self.assertEqual(self.vault.count_token_objects(), keys0 + 2)
        for svc in ("dw-prod", "dw-stage"):
            st, _, body = self.unbind(svc)
            self.assertEqual(st, 200, body)
            self.assertIsNone(body["certificate"])
        st, _, body = self.vault.request("DELETE", "/v1/certificates/dw-cert?confirm=delete")
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.count_token_objects(), keys0)
        self.assertEqual(self.vault.count_token_objects("Public Key Object"), pubs0)
        objects = self.vault.token_objects().replace(":", "")
        self.assertNotIn(v1["key"]["id"], objects)
        self.assertNotIn(v2["key"]["id"], objects)
        self.assertError(self.vault.request("GET", "/v1/certificates/dw-cert/versions"),
                         404, "not_found")


class DestroySupersededKeysTest(ServiceHelpers, VaultTestCase):
    settings = {"CERTVAULT_POLICY_DESTROY_SUPERSEDED_KEYS": "true"}

    def test_superseded_key_destroyed_at_renew_and_replace(self):
        _, v1 = self.imported("ds-cert", "ds-v1", san="*.ds.example.com")
        self.create_service("ds-svc", ["www.ds.example.com"])
        self.bound("ds-svc", "ds-cert")
        keys = self.vault.count_token_objects()
        st, _, v2 = self.supersede("ds-cert", self.material("ds-v2", san="*.ds.example.com"))
        self.assertEqual(st, 200, v2)
        # One key made, one destroyed.
        self.assertEqual(self.vault.count_token_objects(), keys)
        objects = self.vault.token_objects().replace(":", "")
        self.assertNotIn(v1["key"]["id"], objects)
        self.assertIn(v2["key"]["id"], objects)
        vs = self.versions("ds-cert")["versions"]
        self.assertEqual([v["version"] for v in vs], [2, 1])
        self.assertEqual(vs[1]["key"], {"in_token": False, "pkcs11_uri": None})
        self.assertTrue(vs[0]["key"]["in_token"])
        self.assertEqual(vs[0]["key"]["pkcs11_uri"], v2["key"]["pkcs11_uri"])
        self.assertEqual(vs[1]["ended_by"], "renewed")
        # Replace destroys the superseded key too.
        st, _, v3 = self.supersede("ds-cert", self.material("ds-v3", san="*.ds.example.com"),
                                   action="replace")
        self.assertEqual(st, 200, v3)
        self.assertEqual(self.vault.count_token_objects(), keys)
        vs = self.versions("ds-cert")["versions"]
        self.assertEqual([(v["version"], v["ended_by"], v["key"]["in_token"]) for v in vs],
                         [(3, None, True), (2, "replaced", False), (1, "renewed", False)])
        # Delete destroys the one key left.
        self.assertEqual(self.unbind("ds-svc")[0], 200)
        st, _, body = self.vault.request("DELETE", "/v1/certificates/ds-cert?confirm=delete")
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.count_token_objects(), keys - 1)
        self.assertNotIn(v3["key"]["id"], self.vault.token_objects().replace(":", ""))


if __name__ == "__main__":
    unittest.main()
