"""Soft delete, recover and purge (issue 18 part 2), against a real certvaultd, SoftHSM token and
SQLite file.

- A delete with a retention hides the certificate (lists, summary, details, export, inventory,
  the public JWKS), keeps its name reserved (an import says which deleted certificate holds it
  and how to free it), refuses its binding, and leaves its keys in the token; the recover brings
  it back exactly as it was (versions, tags, its JWK) and usable (export, JWKS, bind).
- A JWK the delete disconnected and someone deleted meanwhile is said in the recover's answer.
- A purge is admin only, needs confirm=purge, destroys every version's key object (counted in
  the token with pkcs11-tool) and frees the name; purge protection refuses it before the
  retention ends.
- The background purge runs once the retention ended (a retention in seconds, which only
  fault-injection builds take: the plain build shows its refusal instead).
The crash safety of the purge is test_crash's ("purge" path)."""

import json
import subprocess
import time
import unittest

from harness import CERTVAULTD, Certvaultd, VaultTestCase, run

DOMAIN = "deleted.example.com"
RETAIN = {"CERTVAULT_LIFECYCLE_DELETED_RETENTION_DAYS": "30"}


def fault_injection_built():
    return bool(run([CERTVAULTD, "--fault-points"]).stdout.strip())


class DeletedCase(VaultTestCase):

    settings = RETAIN

    def token(self, name, role):
        st, _, body = self.vault.request("POST", "/v1/tokens", {"name": name, "role": role})
        self.assertEqual(st, 201, body)
        return body["token"]

    def deleted(self, token=True):
        st, _, body = self.vault.request("GET", "/v1/deleted-certificates", token=token)
        self.assertEqual(st, 200, body)
        return {item["name"]: item for item in body["items"]}

    def audit(self, action, target):
        st, _, body = self.vault.request("GET", "/v1/audit?action=%s&target=%s&limit=100"
                                         % (action, target))
        self.assertEqual(st, 200, body)
        return body["items"]

    def import_bound(self, name, service):
        """name imported and renewed (two versions, two keys), bound to service."""
        st, _, body = self.vault.import_cert(name, self.material(name + "-1", san=DOMAIN),
                                             tags={"team": "payments"})
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("PUT", "/v1/services/" + service,
                                         {"environment": "production", "domains": [DOMAIN]})
        self.assertIn(st, (200, 201), body)
        self.bind(service, name, 200)
        m2 = self.material(name + "-2", san=DOMAIN)
        st, _, body = self.vault.request("POST", "/v1/certificates/%s/renew" % name,
                                         {"certificate": m2.cert, "private_key": m2.key,
                                          "version": 1})
        self.assertEqual(st, 200, body)

    def bind(self, service, name, status):
        st, _, body = self.vault.request("PUT", "/v1/services/%s/certificate" % service,
                                         {"certificate": name})
        self.assertEqual(st, status, body)
        return body

    def jwks_kids(self):
        st, _, body = self.vault.request("GET", "/v1/jwks", token=None)
        self.assertEqual(st, 200, body)
        if isinstance(body, bytes):
            body = json.loads(body)
        return {k["kid"] for k in body["keys"]}


class SoftDeleteTest(DeletedCase):

    def test_delete_hides_reserves_refuses_then_recover_brings_everything_back(self):
        name, svc = "sd-www", "sd-site"
        self.import_bound(name, svc)
        st, _, jwk = self.vault.request("POST", "/v1/jwks", {"certificate": name})
        self.assertEqual(st, 201, jwk)
        kid = jwk["kid"]
        st, _, before = self.vault.request("GET", "/v1/certificates/" + name)
        self.assertEqual(st, 200, before)
        st, _, summary_before = self.vault.request("GET", "/v1/certificates/summary")
        keys_before = self.vault.count_token_objects()

        # The same confirmations as a delete at once: the JWK choice and the name, in use.
        self.assertError(self.vault.request("DELETE", "/v1/certificates/%s?confirm=delete"
                                            % name), 409, "jwk_choice_required")
        self.assertError(self.vault.request("DELETE", "/v1/certificates/%s?confirm=delete"
                                            "&jwk_action=delete" % name), 400,
                         "confirmation_required")
        self.assertError(self.vault.request(
            "DELETE", "/v1/certificates/%s?confirm=%s&jwk_action=delete" % (name, name)), 409,
            "in_use")
        self.assertEqual(self.deleted().get(name), None)
        st, _, body = self.vault.request("DELETE", "/v1/services/%s/certificate" % svc)
        self.assertEqual(st, 200, body)
        st, _, body = self.vault.request(
            "DELETE", "/v1/certificates/%s?confirm=%s&jwk_action=delete" % (name, name))
        self.assertEqual(st, 200, body)
        self.assertTrue(body["recoverable"], body)
        self.assertTrue(body["purge_after"], body)

        # Hidden everywhere a certificate shows.
        st, _, page = self.vault.request("GET", "/v1/certificates?limit=1000")
        self.assertNotIn(name, [i["name"] for i in page["items"]])
        st, _, summary = self.vault.request("GET", "/v1/certificates/summary")
        self.assertEqual(summary["total"], summary_before["total"] - 1, summary)
        msg = self.assertError(self.vault.request("GET", "/v1/certificates/" + name), 404,
                               "not_found")
        self.assertIn("deleted", msg)
        self.assertError(self.vault.request("GET", "/v1/certificates/%s/export?format=pem"
                                            % name), 404, "not_found")
        msg = self.assertError(self.vault.request("PATCH", "/v1/certificates/" + name,
                                                  {"description": "x"}), 404, "not_found")
        self.assertIn("deleted", msg)
        self.assertNotIn(kid, self.jwks_kids())
        st, _, inv = self.vault.request("GET", "/v1/inventory?format=json")
        self.assertEqual(st, 200, inv)
        self.assertNotIn(name, [i["name"] for i in inv["items"]])
        # Its keys stay in the token.
        self.assertEqual(self.vault.count_token_objects(), keys_before)

        # Listed as deleted, by whom, until when, with what it took along.
        item = self.deleted()[name]
        self.assertEqual(item["deleted_by"], "admin", item)
        self.assertEqual(item["version"], 2, item)
        self.assertEqual(item["tags"], {"team": "payments"}, item)
        self.assertEqual(item["jwks"], [kid], item)
        self.assertEqual(item["purge_after"], body["purge_after"], item)
        self.assertGreater(item["purge_after"], item["deleted_at"], item)

        # The name stays reserved, and the refusal says how to free it.
        msg = self.assertError(self.vault.import_cert(
            name.upper(), self.material(name + "-3", san=DOMAIN)), 409, "name_taken")
        self.assertIn("recover", msg)
        self.assertIn("purge", msg)
        # Services cannot bind it.
        msg = self.assertError(self.vault.request("PUT", "/v1/services/%s/certificate" % svc,
                                                  {"certificate": name}), 404, "not_found")
        self.assertIn("deleted", msg)
        # Nor can a JWK be made from it.
        self.assertEqual(self.vault.request("POST", "/v1/jwks", {"certificate": name})[0], 404)

        # An auditor sees the list, and may neither recover nor purge.
        auditor = self.token("sd-auditor", "auditor")
        self.assertIn(name, self.deleted(token=auditor))
        self.assertError(self.vault.request("POST", "/v1/deleted-certificates/%s/recover"
                                            % name, token=auditor), 403, "forbidden")

        st, _, rec = self.vault.request("POST", "/v1/deleted-certificates/%s/recover" % name)
        self.assertEqual(st, 200, rec)
        self.assertTrue(rec["recovered"])
        self.assertEqual(rec["jwks_relinked"], [kid], rec)
        self.assertEqual(rec["jwks_not_relinked"], [], rec)
        self.assertNotIn(name, self.deleted())

        # Back exactly as it was, and usable.
        st, _, after = self.vault.request("GET", "/v1/certificates/" + name)
        self.assertEqual(st, 200, after)
        for field in ("version", "tags", "fingerprints", "key", "description", "environments",
                      "created_at", "updated_at"):
            self.assertEqual(after.get(field), before.get(field), field)
        self.assertEqual([j["kid"] for j in after["jwks"]], [kid], after)
        st, _, versions = self.vault.request("GET", "/v1/certificates/%s/versions" % name)
        self.assertEqual(len(versions["versions"]), 2, versions)
        st, _, pem = self.vault.request("GET", "/v1/certificates/%s/export?format=pem" % name)
        self.assertEqual(st, 200)
        self.assertIn(b"BEGIN CERTIFICATE", pem)
        self.assertIn(kid, self.jwks_kids())
        self.bind(svc, name, 200)
        self.assertEqual(self.vault.count_token_objects(), keys_before)

        deletes = [r for r in self.audit("certificate.delete", name) if r["outcome"] == "done"]
        self.assertEqual(len(deletes), 1, deletes)
        self.assertEqual(deletes[0]["changes"]["state"], "deleted", deletes)
        self.assertEqual(deletes[0]["changes"]["purge_after"], item["purge_after"], deletes)
        recovered = self.audit("certificate.recover", name)
        self.assertEqual([r["outcome"] for r in recovered], ["refused", "done"], recovered)
        self.assertEqual(recovered[1]["changes"]["jwks_relinked"], [kid], recovered)
        st, _, verify = self.vault.request("GET", "/v1/audit/verify")
        self.assertTrue(verify["intact"], verify)

    def test_disconnected_jwk_deleted_meanwhile_is_said_at_recover(self):
        name = "sd-jwk"
        st, _, body = self.vault.import_cert(name, self.material(name, san=DOMAIN))
        self.assertEqual(st, 201, body)
        st, _, jwk = self.vault.request("POST", "/v1/jwks", {"certificate": name})
        self.assertEqual(st, 201, jwk)
        kid = jwk["kid"]
        st, _, body = self.vault.request(
            "DELETE", "/v1/certificates/%s?confirm=%s&jwk_action=disconnect" % (name, name))
        self.assertEqual(st, 200, body)
        # Disconnected: it stays published, as a delete at once leaves it.
        self.assertIn(kid, self.jwks_kids())
        st, _, body = self.vault.request("DELETE", "/v1/jwks/" + kid)
        self.assertEqual(st, 200, body)
        st, _, rec = self.vault.request("POST", "/v1/deleted-certificates/%s/recover" % name)
        self.assertEqual(st, 200, rec)
        self.assertEqual(rec["jwks_relinked"], [], rec)
        self.assertEqual([j["kid"] for j in rec["jwks_not_relinked"]], [kid], rec)
        self.assertTrue(rec["jwks_not_relinked"][0]["reason"], rec)
        self.assertEqual(rec["jwks"], [], rec)

    def test_recover_and_purge_refusals(self):
        for method, path in (("POST", "/v1/deleted-certificates/nope/recover"),
                             ("DELETE", "/v1/deleted-certificates/nope?confirm=purge")):
            self.assertError(self.vault.request(method, path), 404, "not_found")
        # An active certificate is not a deleted one.
        st, _, body = self.vault.import_cert("sd-live", self.material("sd-live", san=DOMAIN))
        self.assertEqual(st, 201, body)
        self.assertError(self.vault.request("POST", "/v1/deleted-certificates/sd-live/recover"),
                         404, "not_found")
        self.assertError(self.vault.request("DELETE",
                                            "/v1/deleted-certificates/sd-live?confirm=purge"),
                         404, "not_found")
        self.assertError(self.vault.request("GET", "/v1/deleted-certificates?limit=0"), 400,
                         "bad_request")
        self.assertError(self.vault.request("GET", "/v1/deleted-certificates?sort=name"), 400,
                         "bad_request")
        self.assertError(self.vault.request("DELETE", "/v1/certificates/sd-live?confirm=delete"
                                            "&purge=true"), 400, "bad_request")
        st, _, body = self.vault.request("GET", "/v1/certificates/sd-live")
        self.assertEqual(st, 200, body)

    def test_environment_named_by_a_deleted_certificate_stays(self):
        st, _, body = self.vault.request("PUT", "/v1/environments/sd-env", {})
        self.assertIn(st, (200, 201), body)
        st, _, body = self.vault.import_cert("sd-envcert", self.material("sd-envcert",
                                                                         san=DOMAIN),
                                             environments=["sd-env"])
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("DELETE", "/v1/certificates/sd-envcert?confirm=delete")
        self.assertEqual(st, 200, body)
        # Its recover would need the environment: it is kept, and the refusal says why.
        msg = self.assertError(self.vault.request("DELETE", "/v1/environments/sd-env"), 409,
                               "in_use")
        self.assertIn("sd-envcert (deleted)", msg)
        st, _, rec = self.vault.request("POST",
                                        "/v1/deleted-certificates/sd-envcert/recover")
        self.assertEqual((st, rec["environments"]), (200, ["sd-env"]), rec)

    def test_paging_walks_every_deleted_certificate_once(self):
        names = ["sd-page-%d" % i for i in range(5)]
        for n in names:
            st, _, body = self.vault.import_cert(n, self.material(n, san=DOMAIN))
            self.assertEqual(st, 201, body)
            st, _, body = self.vault.request("DELETE", "/v1/certificates/%s?confirm=delete" % n)
            self.assertEqual(st, 200, body)
        seen, cursor = [], None
        while True:
            path = "/v1/deleted-certificates?limit=2"
            if cursor:
                path += "&cursor=" + cursor
            st, _, body = self.vault.request("GET", path)
            self.assertEqual(st, 200, body)
            self.assertLessEqual(len(body["items"]), 2)
            seen += [i["name"] for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(sorted(seen), seen)
        self.assertEqual([n for n in seen if n.startswith("sd-page-")], names)

    def test_purge_destroys_every_key_and_frees_the_name(self):
        name, svc = "sd-purge", "sd-purge-site"
        self.import_bound(name, svc)
        st, _, body = self.vault.request("DELETE", "/v1/services/%s/certificate" % svc)
        self.assertEqual(st, 200, body)
        st, _, body = self.vault.request("DELETE", "/v1/certificates/%s?confirm=delete" % name)
        self.assertEqual(st, 200, body)
        keys = self.vault.count_token_objects()
        publics = self.vault.count_token_objects("Public Key Object")
        operator = self.token("sd-operator", "operator")
        self.assertError(self.vault.request("DELETE", "/v1/deleted-certificates/%s?confirm=purge"
                                            % name, token=operator), 403, "forbidden")
        self.assertError(self.vault.request("DELETE", "/v1/deleted-certificates/" + name), 400,
                         "confirmation_required")
        self.assertError(self.vault.request("DELETE", "/v1/deleted-certificates/%s?confirm=%s"
                                            % (name, name)), 400, "confirmation_required")
        self.assertEqual(self.vault.count_token_objects(), keys)
        self.assertIn(name, self.deleted())

        st, _, body = self.vault.request("DELETE", "/v1/deleted-certificates/%s?confirm=purge"
                                         % name)
        self.assertEqual(st, 200, body)
        self.assertTrue(body["purged"], body)
        # Both versions' key pairs are gone from the token.
        self.assertEqual(self.vault.count_token_objects(), keys - 2)
        self.assertEqual(self.vault.count_token_objects("Public Key Object"), publics - 2)
        self.assertNotIn(name, self.deleted())
        self.assertError(self.vault.request("POST", "/v1/deleted-certificates/%s/recover"
                                            % name), 404, "not_found")
        purged = [r for r in self.audit("certificate.purge", name) if r["outcome"] == "done"]
        self.assertEqual([r["actor"]["name"] for r in purged], ["admin"], purged)
        # The name is free again.
        st, _, body = self.vault.import_cert(name, self.material(name + "-new", san=DOMAIN))
        self.assertEqual(st, 201, body)


class PurgeProtectionTest(DeletedCase):

    settings = dict(RETAIN, CERTVAULT_LIFECYCLE_PURGE_PROTECTION="true")

    def test_no_purge_before_the_retention_ends_even_by_admin(self):
        name = "pp-www"
        st, _, body = self.vault.import_cert(name, self.material(name, san=DOMAIN))
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("DELETE", "/v1/certificates/%s?confirm=delete" % name)
        self.assertEqual(st, 200, body)
        keys = self.vault.count_token_objects()
        msg = self.assertError(self.vault.request(
            "DELETE", "/v1/deleted-certificates/%s?confirm=purge" % name), 409,
            "purge_protected")
        self.assertIn(body["purge_after"][:10], msg)
        self.assertEqual(self.vault.count_token_objects(), keys)
        self.assertIn(name, self.deleted())
        refused = self.audit("certificate.purge", name)
        self.assertEqual([r["outcome"] for r in refused], ["refused"], refused)
        # Recovering stays possible.
        st, _, rec = self.vault.request("POST", "/v1/deleted-certificates/%s/recover" % name)
        self.assertEqual(st, 200, rec)


class RetentionPurgeTest(DeletedCase):
    """The background purge, with a retention of seconds and a sweep every second."""

    settings = dict(RETAIN, CERTVAULT_LIFECYCLE_TEST_RETENTION_SECONDS="3",
                    CERTVAULT_LIFECYCLE_PURGE_SWEEP_SECONDS="1",
                    CERTVAULT_LIFECYCLE_PURGE_PROTECTION="true")

    @classmethod
    def setUpClass(cls):
        if not fault_injection_built():
            raise unittest.SkipTest("a retention in seconds is taken only by builds with "
                                    "CV_FAULT_INJECTION (the Debug builds run this)")
        super().setUpClass()

    def test_retention_purge_runs_as_certvaultd(self):
        name = "rp-www"
        keys = self.vault.count_token_objects()
        st, _, body = self.vault.import_cert(name, self.material(name, san=DOMAIN))
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("DELETE", "/v1/certificates/%s?confirm=delete" % name)
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.count_token_objects(), keys + 1)
        # Protected until its retention ends: the background purge is what removes it.
        self.assertError(self.vault.request(
            "DELETE", "/v1/deleted-certificates/%s?confirm=purge" % name), 409,
            "purge_protected")
        deadline = time.time() + 60
        while name in self.deleted() and time.time() < deadline:
            time.sleep(0.25)
        self.assertNotIn(name, self.deleted())
        self.assertEqual(self.vault.count_token_objects(), keys)
        purged = self.audit("certificate.purge", name)
        purged = [r for r in purged if r["outcome"] == "done"]
        self.assertEqual([r["actor"]["name"] for r in purged], ["certvaultd"], purged)
        self.assertIn("purged with their keys", self.vault.log())
        st, _, body = self.vault.import_cert(name, self.material(name + "-2", san=DOMAIN))
        self.assertEqual(st, 201, body)


class TestRetentionSettingTest(unittest.TestCase):

    def test_release_builds_refuse_a_retention_in_seconds(self):
        if fault_injection_built():
            self.skipTest("this build takes it (RetentionPurgeTest uses it)")
        import tempfile
        import shutil
        tmp = tempfile.mkdtemp(prefix="cv-it-")
        try:
            vault = Certvaultd(tmp)
            p = subprocess.run([CERTVAULTD], env=vault.env(
                {"CERTVAULT_LIFECYCLE_TEST_RETENTION_SECONDS": "5"}), capture_output=True,
                timeout=60)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(b"lifecycle.test_retention_seconds is for tests", p.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
