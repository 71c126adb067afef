"""The OpenAPI description (GET /v1/openapi.json) is true: it validates as OpenAPI 3.1 against
the OpenAPI Initiative's schema, it holds every route of `certvaultd --routes` with its access
rule, and real answers match its schemas and documented error codes: those this test provokes
and those every other integration test of this run saw (harness.record_response).

Needs a JSON Schema validator: Debian's python3-jsonschema (scripts/deps installs it); CMake
runs this test with the interpreter that has it."""

import glob
import json
import os
import re
import subprocess
import unittest
import warnings

import jsonschema

from harness import CERTVAULTD, Material, VaultTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
OAS_SCHEMA = os.path.join(HERE, "..", "openapi", "oas-3.1-schema.json")


def route_templates(doc):
    """(regex, template) for each path, literal segments before parameters so that
    /v1/certificates/summary wins over /v1/certificates/{name}."""
    out = []
    for tmpl in doc["paths"]:
        rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(tmpl)) + "$"
        out.append((tmpl.count("{"), re.compile(rx), tmpl))
    out.sort(key=lambda t: t[0])
    return [(rx, tmpl) for _, rx, tmpl in out]


class Checker:
    """Checks answers against the description."""

    def __init__(self, doc):
        self.doc = doc
        self.templates = route_templates(doc)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resolver = jsonschema.RefResolver("", doc)

    def operation(self, method, path):
        for rx, tmpl in self.templates:
            if rx.match(path):
                op = self.doc["paths"][tmpl].get(method.lower())
                if op is not None:
                    return tmpl, op
        return None, None

    def problems(self, method, path, status, content_type, body):
        """What is wrong with one answer, as a list of strings (empty: it matches)."""
        tmpl, op = self.operation(method, path)
        if op is None:
            if status in (404, 405):
                return []  # an unknown path or method answers so, undescribed
            return ["%s %s: no operation describes it" % (method, path)]
        resp = op["responses"].get(str(status))
        where = "%s %s -> %d" % (method, tmpl, status)
        if resp is None:
            return ["%s: status not described" % where]
        if status >= 400 and isinstance(body, dict) and "error" in body:
            code = body["error"].get("code")
            if code not in resp.get("x-codes", []):
                return ["%s: code %s not among %s" % (where, code, resp.get("x-codes"))]
        ctype = content_type.split(";")[0].strip()
        content = resp.get("content", {})
        if content and ctype not in content:
            return ["%s: content type %s not among %s" % (where, ctype, list(content))]
        if body is None or ctype not in content:
            return []
        schema = content[ctype]["schema"]
        validator = jsonschema.Draft202012Validator(schema, resolver=self.resolver)
        return ["%s: %s at %s" % (where, e.message[:300], "/".join(map(str, e.absolute_path)))
                for e in validator.iter_errors(body)][:3]


class TestOpenApi(VaultTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        st, h, cls.doc = cls.vault.request("GET", "/v1/openapi.json", token=None)
        assert st == 200, cls.doc
        cls.checker = Checker(cls.doc)

    def test_document_is_openapi_31(self):
        with open(OAS_SCHEMA) as f:
            oas = json.load(f)
        errors = list(jsonschema.Draft202012Validator(oas).iter_errors(self.doc))
        self.assertEqual([], [e.message[:200] for e in errors[:5]])
        self.assertEqual(self.doc["openapi"], "3.1.0")
        # Every schema the document names exists.
        text = json.dumps(self.doc)
        for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
            self.assertIn(ref, self.doc["components"]["schemas"])

    def test_every_route_is_described(self):
        out = subprocess.run([CERTVAULTD, "--routes"], capture_output=True, check=True,
                             timeout=30).stdout.decode()
        seen = 0
        for line in out.splitlines():
            method, pattern, access, action = line.split()
            tmpl, op = self.checker.operation(method, pattern.replace("{}", "x"))
            self.assertIsNotNone(op, line)
            self.assertNotIn("x-certvault-undocumented", op, line)
            self.assertEqual(op["x-certvault-access"], access, line)
            self.assertEqual(op.get("x-certvault-audit-action", "-"), action, line)
            self.assertTrue(any(s[0] in "23" for s in op["responses"]), line)  # a redirect too
            if access == "public":
                self.assertEqual(op["security"], [], line)
            else:
                self.assertIn("401", op["responses"], line)
            seen += 1
        self.assertEqual(seen, sum(len(item) for item in self.doc["paths"].values()))

    def check(self, method, path, body=None, token=True, status=None):
        st, h, payload = self.vault.request(method, path, body, token=token)
        if status is not None:
            self.assertEqual(st, status, payload)
        problems = self.checker.problems(method, path.split("?")[0], st,
                                         h.get("content-type", ""),
                                         payload if isinstance(payload, (dict, list)) else None)
        self.assertEqual(problems, [])
        return payload

    def test_answers_match_their_schemas(self):
        m = Material(self.tmp, "oa", key="rsa2048", san="oa.example.com")
        ca = Material(self.tmp, "oa-ca", ca=True, cn="OpenAPI CA")
        c = self.check
        c("GET", "/v1/health", token=None, status=200)
        c("POST", "/v1/certificates", {"name": "oa", "certificate": m.cert, "private_key": m.key},
          status=201)
        c("POST", "/v1/certificates", {"name": "oa", "certificate": m.cert, "private_key": m.key},
          status=409)
        c("POST", "/v1/certificates", {"name": "bad name", "certificate": m.cert}, status=400)
        c("GET", "/v1/certificates", status=200)
        c("GET", "/v1/certificates?bogus=1", status=400)
        c("GET", "/v1/certificates/summary", status=200)
        c("GET", "/v1/certificates/oa", status=200)
        c("GET", "/v1/certificates/oa", token=None, status=401)
        c("GET", "/v1/certificates/nope", status=404)
        c("PATCH", "/v1/certificates/oa", {"description": "described"}, status=200)
        c("GET", "/v1/certificates/oa/versions", status=200)
        c("GET", "/v1/certificates/oa/export?format=jwk", status=200)
        c("PUT", "/v1/services/oa-site", {"environment": "production",
                                          "domains": ["oa.example.com"]}, status=201)
        c("PUT", "/v1/services/oa-site/certificate", {"certificate": "oa"}, status=200)
        c("GET", "/v1/services", status=200)
        c("GET", "/v1/services/oa-site", status=200)
        jwk = c("POST", "/v1/jwks", {"certificate": "oa"}, status=201)
        c("GET", "/v1/jwks", token=None, status=200)
        c("GET", "/.well-known/jwks.json", token=None, status=200)
        c("GET", "/v1/jwks/" + jwk["kid"], status=200)
        m2 = Material(self.tmp, "oa2", key="rsa2048", san="oa.example.com")
        c("POST", "/v1/certificates/oa/renew", {"certificate": m2.cert, "private_key": m2.key},
          status=409)  # JWKs linked: the choice is needed
        c("POST", "/v1/certificates/oa/renew", {"certificate": m2.cert, "private_key": m2.key,
                                                "jwk_action": "update", "confirm": "oa"},
          status=200)
        c("DELETE", "/v1/certificates/oa?confirm=delete", status=409)  # in use
        c("DELETE", "/v1/services/oa-site/certificate", status=200)
        c("DELETE", "/v1/services/oa-site", status=200)
        c("POST", "/v1/truststore", {"alias": "oa-ca", "certificate": ca.cert}, status=201)
        c("GET", "/v1/truststore", status=200)
        c("GET", "/v1/truststore/oa-ca", status=200)
        c("GET", "/v1/truststore/crls", status=200)
        c("DELETE", "/v1/truststore/oa-ca", status=200)
        tok = c("POST", "/v1/tokens", {"name": "oa-aud", "role": "auditor"}, status=201)
        c("GET", "/v1/tokens", status=200)
        c("PUT", "/v1/services/x", {"environment": "e", "domains": ["x.example.com"]},
          token=tok["token"], status=403)
        c("DELETE", "/v1/tokens/" + tok["id"], status=204)
        c("GET", "/v1/audit?limit=5", status=200)
        c("GET", "/v1/audit/verify", status=200)
        c("GET", "/v1/inventory", status=200)
        c("DELETE", "/v1/certificates/oa?confirm=oa&jwk_action=delete", status=200)
        c("GET", "/v1/openapi.json", token=None, status=200)

    def test_answers_the_other_suites_saw(self):
        """Every answer recorded by the integration tests that ran before this one."""
        log_dir = os.environ.get("CV_RESPONSE_LOG_DIR")
        if not log_dir:
            self.skipTest("run through ctest, which records the other suites' answers")
        problems, n = {}, 0
        for path in sorted(glob.glob(os.path.join(log_dir, "*.jsonl"))):
            with open(path) as f:
                for line in f:
                    r = json.loads(line)
                    n += 1
                    for p in self.checker.problems(r["method"], r["path"], r["status"],
                                                   r["content_type"], r["body"]):
                        problems.setdefault(p, os.path.basename(path))
        self.maxDiff = None
        self.assertEqual(sorted("%s (%s)" % (p, s) for p, s in problems.items())[:40], [],
                         "%d answers checked" % n)


if __name__ == "__main__":
    unittest.main()
