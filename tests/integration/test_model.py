"""Integration tests of issue 17's model against a real certvaultd, a fresh SoftHSM token and a
fresh SQLite file: environments as rows of their own (services in one, certificates for some),
public certificates (no key object), upcoming certificates (allow_upcoming), and the edit of a
certificate's environments."""

import calendar
import os
import subprocess
import time
import unittest

from harness import SOFTHSM_MODULE, Material, VaultTestCase, run
from test_services import ServiceHelpers
from test_truststore import FetchTest, free_port


def changes_of(vault, action, target):
    """The changes of the records of action on target, oldest first."""
    st, _, body = vault.request("GET", "/v1/audit?limit=1000&action=%s&target=%s"
                                % (action, target))
    assert st == 200, body
    return [r["changes"] for r in body["items"]]


class EnvironmentsTest(ServiceHelpers, VaultTestCase):

    def put_env(self, name, **body):
        return self.vault.request("PUT", "/v1/environments/" + name, body)

    def test_crud_and_case(self):
        st, _, body = self.put_env("Acc-EU", display_name="Acceptance EU",
                                   description="the EU acceptance stage")
        self.assertEqual(st, 201, body)
        self.assertEqual((body["name"], body["display_name"], body["services"],
                          body["certificates"]), ("Acc-EU", "Acceptance EU", 0, 0))
        # Unique ignoring case: another case changes the same one, which keeps its name.
        st, _, body = self.put_env("acc-eu", display_name="Acceptance  (EU) \u00e9")
        self.assertEqual(st, 200, body)
        self.assertEqual((body["name"], body["display_name"]),
                         ("Acc-EU", "Acceptance  (EU) \u00e9"))
        st, _, body = self.vault.request("GET", "/v1/environments/ACC-EU")
        self.assertEqual((st, body["name"], body["description"]),
                         (200, "Acc-EU", ""), body)
        # The display name defaults to the name.
        st, _, body = self.put_env("env-plain")
        self.assertEqual((st, body["display_name"]), (201, "env-plain"), body)
        st, _, body = self.vault.request("GET", "/v1/environments?limit=1000")
        self.assertEqual(st, 200, body)
        names = [e["name"] for e in body["items"]]
        self.assertIn("Acc-EU", names)
        self.assertEqual(names, sorted(names, key=str.lower))
        # Refusals.
        self.assertError(self.put_env("bad_name"), 400, "invalid_name")
        self.assertError(self.put_env("x", display_name=""), 400, "bad_request")
        self.assertError(self.put_env("x", display_name="   "), 400, "bad_request")
        self.assertError(self.put_env("x", display_name="a\nb"), 400, "bad_request")
        self.assertError(self.put_env("x", display_name="x" * 101), 400, "bad_request")
        self.assertError(self.put_env("x", colour="red"), 400, "bad_request")
        self.assertError(self.vault.request("GET", "/v1/environments/x"), 404, "not_found")
        self.assertError(self.vault.request("DELETE", "/v1/environments/x"), 404, "not_found")
        st, _, body = self.vault.request("DELETE", "/v1/environments/env-plain")
        self.assertEqual((st, body["deleted"]), (200, True), body)
        # An auditor reads, and may not change them.
        st, _, body = self.vault.request("POST", "/v1/tokens",
                                         {"name": "env-auditor", "role": "auditor"})
        self.assertEqual(st, 201, body)
        aud = body["token"]
        st, _, _ = self.vault.request("GET", "/v1/environments", token=aud)
        self.assertEqual(st, 200)
        self.assertError(self.vault.request("PUT", "/v1/environments/aud", {}, token=aud),
                         403, "forbidden")

    def test_services_and_certificates_in_environments(self):
        self.assertEqual(self.put_env("Prod-EU")[0], 201)
        self.assertEqual(self.put_env("qa-eu")[0], 201)
        # A service belongs to an existing environment, spelt its way.
        self.assertError(self.put_service("env-web", ["ew.example.com"], environment="nope"),
                         422, "unknown_environment")
        self.assertError(self.vault.request("GET", "/v1/services/env-web"), 404, "not_found")
        body = self.create_service("env-web", ["ew.example.com"], environment="prod-eu")
        self.assertEqual(body["environment"], "Prod-EU")
        self.create_service("env-qa", ["ew.example.com"], environment="qa-eu")
        # A certificate for Prod-EU only; an unknown environment refuses the import.
        m = self.material("envc", san="ew.example.com")
        before = self.vault.count_token_objects()
        st, _, body = self.vault.import_cert("envc", m, environments=["nope"])
        self.assertEqual((st, body["error"]["code"]), (422, "unknown_environment"), body)
        self.assertEqual(self.vault.count_token_objects(), before)
        self.assertError(self.vault.request("GET", "/v1/certificates/envc"), 404, "not_found")
        self.assertError(self.vault.import_cert("envc", m, environments=["a", "A"]),
                         400, "bad_request")
        self.assertError(self.vault.import_cert("envc", m, environments="Prod-EU"),
                         400, "bad_request")
        st, _, body = self.vault.import_cert("envc", m, environments=["PROD-eu"])
        self.assertEqual(st, 201, body)
        self.assertEqual((body["environments"], body["kind"]), (["Prod-EU"], "key_pair"))
        self.bound("env-web", "envc")
        msg = self.assertError(self.bind("env-qa", "envc"), 422, "environment_not_allowed")
        self.assertIn("qa-eu", msg)
        self.assertIsNone(self.get_service("env-qa")["certificate"])
        # The service cannot move to an environment its certificate is not for.
        self.assertError(self.put_service("env-web", ["ew.example.com"], environment="qa-eu"),
                         422, "environment_not_allowed")
        self.assertEqual(self.get_service("env-web")["environment"], "Prod-EU")
        # Edit: the certificate's environments, kept while a service needs one.
        st, _, body = self.vault.request("PATCH", "/v1/certificates/envc",
                                         {"environments": ["qa-eu"]})
        self.assertEqual((st, body["error"]["code"]), (422, "environment_not_allowed"), body)
        st, _, body = self.vault.request("PATCH", "/v1/certificates/envc",
                                         {"environments": ["Prod-EU", "qa-eu"]})
        self.assertEqual((st, body["environments"]), (200, ["Prod-EU", "qa-eu"]), body)
        self.bound("env-qa", "envc")
        self.assertError(self.vault.request("PATCH", "/v1/certificates/envc", {}),
                         400, "bad_request")
        self.assertError(self.vault.request("PATCH", "/v1/certificates/envc",
                                            {"environments": ["nope"]}),
                         422, "unknown_environment")
        # Empty: for any environment.
        st, _, body = self.vault.request("PATCH", "/v1/certificates/envc", {"environments": []})
        self.assertEqual((st, body["environments"]), (200, []), body)
        # An environment in use is not deleted: by services, then by a certificate.
        msg = self.assertError(self.vault.request("DELETE", "/v1/environments/qa-eu"),
                               409, "in_use")
        self.assertIn("env-qa", msg)
        self.assertEqual(self.vault.request("DELETE", "/v1/services/env-qa")[0], 200)
        st, _, body = self.vault.request("PATCH", "/v1/certificates/envc",
                                         {"environments": ["qa-eu", "Prod-EU"]})
        self.assertEqual(st, 200, body)
        msg = self.assertError(self.vault.request("DELETE", "/v1/environments/qa-eu"),
                               409, "in_use")
        self.assertIn("envc", msg)
        self.assertEqual(self.vault.request("GET", "/v1/environments/qa-eu")[2]
                         ["certificates"], 1)
        # The audit trail says what changed: environments, bind targets, service moves.
        self.assertEqual(changes_of(self.vault, "environment.put", "Prod-EU"),
                         [{"display_name": {"old": None, "new": "Prod-EU"},
                           "description": {"old": None, "new": ""}}])
        puts = changes_of(self.vault, "service.put", "env-web")
        self.assertEqual(puts[1], {"environment": {"old": None, "new": "prod-eu"},
                                   "domains": {"old": None, "new": ["ew.example.com"]}})
        # A refused attempt says what it would have changed.
        self.assertEqual(puts[2], {"environment": {"old": "Prod-EU", "new": "qa-eu"}})
        binds = changes_of(self.vault, "service.bind", "env-qa")
        self.assertEqual(binds[-1], {"certificate": {"old": None,
                                                     "new": {"name": "envc", "version": 1}}})
        edits = changes_of(self.vault, "certificate.edit", "envc")
        self.assertIn({"environments": {"old": ["Prod-EU"], "new": ["Prod-EU", "qa-eu"]}},
                      edits)
        self.assertEqual(changes_of(self.vault, "certificate.import", "envc")[-1],
                         {"kind": "key_pair", "environments": ["PROD-eu"], "tags": []})
        st, _, v = self.vault.request("GET", "/v1/audit/verify")
        self.assertTrue(v["intact"], v)

    def test_url_source_passes_the_address_policy(self):
        # This certvaultd allows no internal network: loopback is refused before any
        # connection, saying why.
        msg = self.assertError(self.vault.request("POST", "/v1/certificates",
                                                  {"name": "u-lo", "url": "https://127.0.0.1"}),
                               403, "forbidden")
        self.assertIn("loopback", msg)
        self.assertError(self.vault.request("GET", "/v1/certificates/u-lo"), 404, "not_found")

    def test_public_certificate(self):
        self.create_service("pub-web", ["pub.example.com"])
        m = self.material("pubc", san="pub.example.com")
        before = self.vault.count_token_objects()
        st, _, body = self.vault.request("POST", "/v1/certificates",
                                         {"name": "pubc", "certificate": m.cert})
        self.assertEqual(st, 201, body)
        self.assertEqual((body["kind"], body["key"]), ("public", None))
        # No key object in the token, before or after anything below.
        self.assertEqual(self.vault.count_token_objects(), before)
        st, _, page = self.vault.request("GET", "/v1/certificates?q=pubc")
        self.assertEqual([(i["name"], i["kind"]) for i in page["items"]], [("pubc", "public")])
        # Exported, and turned into a JWK.
        st, _, pem = self.vault.request("GET", "/v1/certificates/pubc/export?format=pem")
        self.assertEqual((st, pem.decode()), (200, m.cert))
        st, _, jwk = self.vault.request("POST", "/v1/jwks", {"certificate": "pubc"})
        self.assertEqual(st, 201, jwk)
        # Not bound: a service needs the key.
        msg = self.assertError(self.bind("pub-web", "pubc"), 422, "no_private_key")
        self.assertIn("public", msg)
        # Renewed and replaced with another public certificate; never with a key.
        m2 = self.material("pubc2", san="pub.example.com")
        self.assertError(self.supersede("pubc", m2, "replace"), 400, "bad_request")
        st, _, body = self.vault.request("POST", "/v1/certificates/pubc/renew",
                                         {"certificate": m2.cert, "jwk_action": "update",
                                          "confirm": "pubc"})
        self.assertEqual((st, body.get("version"), body.get("kind")), (200, 2, "public"), body)
        versions = self.versions("pubc")["versions"]
        self.assertEqual([v["key"]["in_token"] for v in versions], [False, False])
        self.assertEqual(self.vault.count_token_objects(), before)
        # A key pair's renewal still needs its key.
        km = self.material("kp", san="pub.example.com")
        self.assertEqual(self.vault.import_cert("kp", km)[0], 201)
        self.assertError(self.vault.request("POST", "/v1/certificates/kp/replace",
                                            {"certificate": m2.cert}),
                         400, "bad_request")
        # The inventory says which kind each is, and a public one has no key to read.
        st, _, inv = self.vault.request("GET", "/v1/inventory?format=json")
        self.assertEqual(st, 200)
        if isinstance(inv, bytes):
            inv = __import__("json").loads(inv)
        items = {i["name"]: i for i in inv["items"] if i["type"] == "certificate"}
        self.assertEqual((items["pubc"]["kind"], items["pubc"]["key_pkcs11_uri"],
                          items["pubc"]["key_present"]), ("public", None, False))
        self.assertEqual((items["kp"]["kind"], items["kp"]["key_present"]), ("key_pair", True))
        # Deleted without the token's help.
        st, _, body = self.vault.request(
            "DELETE", "/v1/certificates/pubc?confirm=pubc&jwk_action=delete")
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.count_token_objects(), before + 1)  # kp's only

    def test_upcoming(self):
        self.create_service("up-web", ["up.example.com"])
        future = self.material("upc", san="up.example.com", not_before=3 * 86400,
                               not_after=90 * 86400)
        st, _, body = self.vault.import_cert("upc", future)
        self.assertEqual((st, body["error"]["code"]), (422, "not_yet_valid"), body)
        self.assertIn("allow_upcoming", body["error"]["message"])
        st, _, body = self.vault.import_cert("upc", future, allow_upcoming=True)
        self.assertEqual((st, body["status"]), (201, "upcoming"), body)
        # Not bound until it starts, and the answer says when.
        msg = self.assertError(self.bind("up-web", "upc"), 422, "not_yet_valid")
        self.assertIn(body["valid_from"], msg)
        # Nor does it take over from a certificate in use.
        self.imported("up-cur", san="up.example.com")
        self.bound("up-web", "up-cur")
        snap = self.snapshot("up-cur")
        st, _, body = self.supersede("up-cur", future, "renew", allow_upcoming=True)
        self.assertEqual((st, body["error"]["code"]), (422, "not_yet_valid"), body)
        self.assertUnchanged("up-cur", snap, ["up-web"])
        st, _, body = self.supersede("up-cur", future, "replace", allow_upcoming=True)
        self.assertEqual((st, body["error"]["code"]), (422, "not_yet_valid"), body)
        # A certificate no service uses may be replaced by an upcoming one.
        self.imported("up-idle", san="up.example.com")
        st, _, body = self.supersede("up-idle", future, "replace", allow_upcoming=True)
        self.assertEqual((st, body["status"], body["version"]), (200, "upcoming", 2), body)
        st, _, body = self.vault.request("GET", "/v1/certificates?status=upcoming")
        self.assertLessEqual({"upc", "up-idle"}, {i["name"] for i in body["items"]})


class EditTest(ServiceHelpers, VaultTestCase):

    def patch(self, name, body):
        return self.vault.request("PATCH", "/v1/certificates/" + name, body)

    def test_rename(self):
        self.create_service("rn-web", ["rn.example.com"])
        self.imported("rn-old", san="rn.example.com")
        self.bound("rn-web", "rn-old")
        st, _, jwk = self.vault.request("POST", "/v1/jwks", {"certificate": "rn-old"})
        self.assertEqual(st, 201, jwk)
        before = self.details("rn-old")
        st, _, body = self.patch("rn-old", {"name": "rn-new", "description": "renamed"})
        self.assertEqual(st, 200, body)
        self.assertEqual((body["name"], body["description"]), ("rn-new", "renamed"))
        # The key keeps the label it was made with, and its URI names it.
        self.assertEqual(body["key"]["label"], "rn-old.v1")
        self.assertEqual(body["key"]["pkcs11_uri"], before["key"]["pkcs11_uri"])
        self.assertIn("object=rn-old", body["key"]["pkcs11_uri"])
        self.assertError(self.vault.request("GET", "/v1/certificates/rn-old"), 404,
                         "not_found")
        self.assertEqual(self.get_service("rn-web")["certificate"]["name"], "rn-new")
        st, _, got = self.vault.request("GET", "/v1/jwks/" + jwk["kid"])
        self.assertEqual(got["certificate"], "rn-new", got)
        # A renewal after the rename makes its key under the new name; the old version's
        # key keeps its own.
        m2 = self.material("rn-2", san="rn.example.com")
        st, _, body = self.supersede("rn-new", m2, "renew", jwk_action="update",
                                     confirm="rn-new")
        self.assertEqual(st, 200, body)
        self.assertIn("object=rn-new", body["key"]["pkcs11_uri"])
        uris = [v["key"]["pkcs11_uri"] for v in self.versions("rn-new")["versions"]]
        self.assertIn("object=rn-new", uris[0])
        self.assertIn("object=rn-old", uris[1])
        # The rename is in the audit trail under the old name, old and new; the renewal
        # says which version it replaced and the JWK choice.
        self.assertEqual(changes_of(self.vault, "certificate.edit", "rn-old"),
                         [{"name": {"old": "rn-old", "new": "rn-new"},
                           "description": {"old": "", "new": "renamed"}}])
        self.assertEqual(changes_of(self.vault, "certificate.renew", "rn-new"),
                         [{"version": {"old": 1, "new": 2}, "jwk_action": "update"}])
        long_text = "\u00e9" * 200
        self.assertEqual(self.patch("rn-new", {"description": long_text})[0], 200)
        cut = changes_of(self.vault, "certificate.edit", "rn-new")[-1]["description"]["new"]
        self.assertEqual(cut, "\u00e9" * 75 + "...")
        # Refusals change nothing.
        self.imported("rn-other", san="rn.example.com")
        self.assertError(self.patch("rn-new", {"name": "rn-other"}), 409, "name_taken")
        self.assertError(self.patch("rn-new", {"name": "bad_name"}), 400, "invalid_name")
        self.assertError(self.patch("rn-new", {"name": "summary"}), 400, "invalid_name")
        self.assertEqual(self.details("rn-new")["version"], 2)

    def test_tags(self):
        self.imported("tg-a", san="tg.example.com")
        self.imported("tg-b", san="tg.example.com")
        st, _, body = self.patch("tg-a", {"tags": {"team": "payments", "ticket": "OPS-1 2"}})
        self.assertEqual((st, body["tags"]), (200, {"team": "payments", "ticket": "OPS-1 2"}),
                         body)
        self.assertEqual(self.patch("tg-b", {"tags": {"team": "search"}})[0], 200)
        st, _, page = self.vault.request("GET", "/v1/certificates?tag=team:payments")
        self.assertEqual([i["name"] for i in page["items"]], ["tg-a"])
        self.assertEqual(page["items"][0]["tags"]["team"], "payments")
        st, _, page = self.vault.request("GET", "/v1/certificates?tag=team")
        self.assertEqual([i["name"] for i in page["items"]], ["tg-a", "tg-b"])
        st, _, page = self.vault.request("GET", "/v1/certificates?tag=team:nobody")
        self.assertEqual(page["items"], [])
        self.assertError(self.vault.request("GET", "/v1/certificates?tag=:x"), 400,
                         "bad_request")
        # Carried in the inventory.
        st, _, inv = self.vault.request("GET", "/v1/inventory?format=json")
        if isinstance(inv, bytes):
            inv = __import__("json").loads(inv)
        tags = {i["name"]: i["tags"] for i in inv["items"]}
        self.assertEqual(tags["tg-a"], {"team": "payments", "ticket": "OPS-1 2"})
        # Given at import too; replaced whole by an edit; {} clears them.
        m = self.material("tg-c", san="tg.example.com")
        st, _, body = self.vault.import_cert("tg-c", m, tags={"owner": "ana"})
        self.assertEqual((st, body["tags"]), (201, {"owner": "ana"}), body)
        self.assertEqual(self.patch("tg-c", {"tags": {}})[2]["tags"], {})
        # Refusals.
        for bad in ({"a b": "x"}, {"k": 7}, {"k": "a\nb"}, {"k": "x" * 257},
                    {"k%d" % i: "v" for i in range(33)}, ["team"]):
            self.assertError(self.patch("tg-a", {"tags": bad}), 400, "bad_request")
        self.assertEqual(self.details("tg-a")["tags"]["team"], "payments")


class ListFollowsTheClockTest(ServiceHelpers, VaultTestCase):
    """A kept list answer lasts until the clock alone could change it, with nothing written:
    a shown row's status or days left, and, with a status filter, which rows it takes; a kept
    details answer, until its status or days left would change. Each page and each details
    view is read just before such a moment (so that it is kept) and again just after."""

    def page(self, query):
        st, _, body = self.vault.request("GET", "/v1/certificates?q=lc-&limit=100" + query)
        self.assertEqual(st, 200, body)
        return {i["name"]: i for i in body["items"]}, body["total"]

    def wait_until(self, t):
        while time.time() < t:
            time.sleep(0.05)

    def test_status_and_days_move_with_no_write(self):
        # Both expire soon: one in seconds, one a day and seconds from now.
        self.imported("lc-soon", not_after=4)
        self.imported("lc-day", not_after=86400 + 6)
        rows, _ = self.page("")
        soon_end = iso_seconds(rows["lc-soon"]["valid_to"])
        day_end = iso_seconds(rows["lc-day"]["valid_to"])
        self.assertEqual(rows["lc-soon"]["status"], "expires_soon", rows)
        self.assertEqual(rows["lc-day"]["expires_in_days"], 1, rows)
        # Just before lc-soon expires: the pages and the details are made and kept.
        self.wait_until(soon_end - 0.3)
        rows, _ = self.page("")
        self.assertEqual(rows["lc-soon"]["status"], "expires_soon", rows)
        self.assertEqual(self.details("lc-soon")["status"], "expires_soon")
        filtered, total = self.page("&status=expires_soon")
        self.assertEqual((sorted(filtered), total), (["lc-day", "lc-soon"], 2))
        expired, total = self.page("&status=expired")
        self.assertEqual((sorted(expired), total), ([], 0))
        # notAfter itself is still valid (RFC 5280): expired from the second after it.
        self.wait_until(soon_end + 1.05)
        rows, _ = self.page("")
        self.assertEqual(rows["lc-soon"]["status"], "expired", rows)
        self.assertEqual(self.details("lc-soon")["status"], "expired")
        filtered, total = self.page("&status=expires_soon")
        self.assertEqual((sorted(filtered), total), (["lc-day"], 1))
        expired, total = self.page("&status=expired")
        self.assertEqual((sorted(expired), total), (["lc-soon"], 1))
        # lc-day's days left: 1 until not_after - t is a whole day, 0 a second later.
        self.wait_until(day_end - 86400 - 0.3)
        rows, _ = self.page("")
        self.assertEqual(rows["lc-day"]["expires_in_days"], 1, rows)
        self.assertEqual(self.details("lc-day")["expires_in_days"], 1)
        self.wait_until(day_end - 86400 + 1.05)
        rows, _ = self.page("")
        self.assertEqual(rows["lc-day"]["expires_in_days"], 0, rows)
        self.assertEqual(self.details("lc-day")["expires_in_days"], 0)


class ListFollowsWritesTest(ServiceHelpers, VaultTestCase):
    """A list answer is kept for the second it was made in, under the certificate generation
    (the vault's memo of pages): every write that a list row or filter shows must move that
    generation, whatever table it touches. Each step reads the page first (so that it is
    kept), writes, and reads it again at once, most often in the same second."""

    def page(self, query, token=True):
        st, hdrs, body = self.vault.request(
            "GET", "/v1/certificates?q=lf-&limit=1000" + query, token=token)
        self.assertEqual(st, 200, body)
        return body

    def names(self, query, token=True):
        body = self.page(query, token)
        self.assertEqual(body["total"], len(body["items"]), body)
        return [i["name"] for i in body["items"]]

    def test_every_write_shows_at_once(self):
        self.imported("lf-a", san="a.lf.example.com,www.lf.example.com")
        self.imported("lf-b", san="b.lf.example.com")
        self.create_service("lf-web", ["a.lf.example.com"])
        self.assertEqual(self.names("&in_use=true"), [])
        self.bound("lf-web", "lf-a")
        self.assertEqual(self.names("&in_use=true"), ["lf-a"])
        self.assertEqual(self.names("&service=lf-web"), ["lf-a"])
        # A service's domains (another table than the service's row) move custom_domains.
        self.assertEqual(self.page("")["items"][0]["custom_domains"], 1)
        st, _, body = self.put_service("lf-web", ["a.lf.example.com", "www.lf.example.com"])
        self.assertEqual(st, 200, body)
        self.assertEqual(self.page("")["items"][0]["custom_domains"], 2)
        # Tags: each filter counted for itself, within one second too.
        self.assertEqual(self.names("&tag=team:x"), [])
        st, _, body = self.vault.request("PATCH", "/v1/certificates/lf-b",
                                         {"tags": {"team": "x"}})
        self.assertEqual(st, 200, body)
        self.assertEqual(self.names("&tag=team:x"), ["lf-b"])
        self.assertEqual(self.names("&tag=team:y"), [])
        self.assertEqual(self.names("&tag=team"), ["lf-b"])
        # The service moved to another environment: the environment filter follows it.
        st, _, body = self.vault.request("PUT", "/v1/environments/lf-stage",
                                         {"display_name": "LF stage"})
        self.assertEqual(st, 201, body)
        self.assertEqual(self.names("&environment=lf-stage"), [])
        st, _, body = self.put_service("lf-web", ["a.lf.example.com"], environment="lf-stage")
        self.assertEqual(st, 200, body)
        self.assertEqual(self.names("&environment=lf-stage"), ["lf-a"])
        self.assertEqual(self.page("")["items"][0]["used_by"],
                         [{"service": "lf-web", "environment": "lf-stage"}])
        self.assertEqual(self.unbind("lf-web")[0], 200)
        self.assertEqual(self.names("&in_use=true"), [])
        self.assertEqual(self.page("")["items"][0]["used_by"], [])
        # An answer kept for one scope is never given to another.
        self.assertEqual(self.names(""), ["lf-a", "lf-b"])
        st, _, tok = self.vault.request("POST", "/v1/tokens", {
            "name": "lf-reader", "role": "operator",
            "scope": {"actions": ["read"], "certificates": ["lf-b*"]}})
        self.assertEqual(st, 201, tok)
        self.assertEqual(self.names("", token=tok["token"]), ["lf-b"])
        self.assertEqual(self.names(""), ["lf-a", "lf-b"])
        # A conditional read of a kept answer: its ETag, then 304.
        st, hdrs, _ = self.vault.request("GET", "/v1/certificates?q=lf-&limit=1000")
        st2, _, _ = self.vault.request("GET", "/v1/certificates?q=lf-&limit=1000",
                                       headers={"If-None-Match": hdrs["etag"]})
        self.assertEqual((st, st2), (200, 304))


class DetailsFollowsWritesTest(ServiceHelpers, VaultTestCase):
    """A certificate's details are kept as the bytes sent (the vault's details memo) under the
    certificate generation, the JWK generation and the caller's scope, and while its
    key_missing holds: everything a details view shows is there on the next read, most often
    in the same second. Each step reads the details first (so that they are kept), changes
    something, and reads them again at once."""

    def view(self, name, token=True):
        st, hdrs, body = self.vault.request("GET", "/v1/certificates/" + name, token=token)
        self.assertEqual(st, 200, body)
        return body, hdrs["etag"]

    def patched(self, name, body):
        st, _, out = self.vault.request("PATCH", "/v1/certificates/" + name, body)
        self.assertEqual(st, 200, out)

    def test_every_change_shows_at_once(self):
        self.imported("df-a", san="a.df.example.com,www.df.example.com")
        first, etag = self.view("df-a")
        # Kept: the same bytes, the same ETag, and a conditional read answered 304.
        self.assertEqual(self.view("df-a"), (first, etag))
        st, _, _ = self.vault.request("GET", "/v1/certificates/df-a",
                                      headers={"If-None-Match": etag})
        self.assertEqual(st, 304)
        self.assertTrue(etag.startswith('"%s.' % first["etag"].strip('"')), (etag, first))
        # Its own row.
        self.patched("df-a", {"description": "edited"})
        body, etag2 = self.view("df-a")
        self.assertEqual(body["description"], "edited")
        self.assertNotEqual(etag2, etag)
        # Tags and environments (tables of their own).
        self.view("df-a")
        self.patched("df-a", {"tags": {"team": "df"}, "environments": ["staging"]})
        body, _ = self.view("df-a")
        self.assertEqual((body["tags"], body["environments"]), ({"team": "df"}, ["staging"]))
        # A service binds it: used_by, in_use, what a delete needs.
        self.create_service("df-web", ["a.df.example.com"], environment="staging")
        self.view("df-a")
        self.bound("df-web", "df-a")
        body, _ = self.view("df-a")
        self.assertEqual(body["used_by"][0]["service"], "df-web", body)
        self.assertEqual((body["in_use"], body["delete"]["allowed"]), (True, False))
        # The service's domains (its own table): custom_domains.
        self.assertEqual(body["custom_domains"], 1)
        st, _, out = self.put_service("df-web", ["a.df.example.com", "www.df.example.com"],
                                      environment="staging")
        self.assertEqual(st, 200, out)
        self.assertEqual(self.view("df-a")[0]["custom_domains"], 2)
        # A JWK made from it (the JWK generation).
        self.assertEqual(self.view("df-a")[0]["jwk_count"], 0)
        st, _, jwk = self.vault.request("POST", "/v1/jwks", {"certificate": "df-a"})
        self.assertEqual(st, 201, jwk)
        body, _ = self.view("df-a")
        self.assertEqual(([j["kid"] for j in body["jwks"]], body["jwk_count"]),
                         ([jwk["kid"]], 1))
        self.assertEqual(body["delete"]["confirmation"], "df-a")
        # An answer kept for one scope is never given to another: a token scoped away from
        # the service sees it as outside its scope, the admin still by name.
        st, _, tok = self.vault.request("POST", "/v1/tokens", {
            "name": "df-reader", "role": "operator",
            "scope": {"actions": ["read"], "certificates": ["df-*"], "services": ["x-*"],
                      "environments": ["staging"]}})
        self.assertEqual(st, 201, tok)
        self.assertEqual(self.view("df-a", token=tok["token"])[0]["used_by"],
                         [{"out_of_scope": True}])
        self.assertEqual(self.view("df-a")[0]["used_by"][0]["service"], "df-web")
        # The key destroyed behind certvault's back: once the token's map knows (a read of
        # the key's attributes finds the handle gone), the kept answer is not given again.
        self.assertIs(self.view("df-a")[0]["key_missing"], False)
        run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.vault.label,
             "--login", "--pin", "env:CV_TEST_PIN", "--delete-object", "--type", "privkey",
             "--id", first["key"]["id"]], env=dict(self.vault.env(), CV_TEST_PIN=self.vault.pin))
        st, _, _ = self.vault.request("GET", "/v1/inventory?format=json")
        self.assertEqual(st, 200)
        self.assertIs(self.view("df-a")[0]["key_missing"], True)


def jwk_changes(body, change):
    """The entries of a renew's, replace's or merge's jwk_changes whose change is change."""
    return [j for j in body["jwk_changes"]["jwks"] if j["change"] == change]


def iso_seconds(text):
    """Seconds since the epoch of an RFC 3339 UTC time as the API writes it."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


class SeveralJwksTest(ServiceHelpers, VaultTestCase):
    """One key published several ways: each (alg, use) a JWK of its own."""

    def jwks_doc(self):
        st, _, body = self.vault.request("GET", "/v1/jwks", token=None)
        self.assertEqual(st, 200)
        return {k["kid"]: k for k in __import__("json").loads(body)["keys"]}

    def test_rs256_ps256_and_enc_of_one_key(self):
        self.create_service("mj-web", ["mj.example.com"])
        self.imported("mj", san="mj.example.com", key="rsa2048")
        self.bound("mj-web", "mj")
        made = {}
        for alg, use in (("RS256", "sig"), ("PS256", "sig"), ("RSA-OAEP-256", "enc")):
            st, _, body = self.vault.request("POST", "/v1/jwks", {"certificate": "mj",
                                                                 "alg": alg, "use": use})
            self.assertEqual(st, 201, body)
            made[(alg, use)] = body["kid"]
        tp = made[("RS256", "sig")]
        self.assertEqual(len(tp), 43)
        self.assertEqual(made[("PS256", "sig")], tp + ".PS256.sig")
        self.assertEqual(made[("RSA-OAEP-256", "enc")], tp + ".RSA-OAEP-256.enc")
        doc = self.jwks_doc()
        for (alg, use), kid in made.items():
            self.assertEqual((doc[kid]["alg"], doc[kid]["use"]), (alg, use))
            self.assertEqual(doc[kid]["n"], doc[tp]["n"])  # one key
        # The same (alg, use) twice is the same JWK.
        st, _, body = self.vault.request("POST", "/v1/jwks", {"certificate": "mj",
                                                             "alg": "PS256"})
        self.assertEqual((st, body["error"]["code"]), (409, "name_taken"), body)
        st, _, one = self.vault.request("GET", "/v1/jwks/" + tp + ".PS256.sig")
        self.assertEqual((st, one["jwk"]["alg"], one["certificate"]), (200, "PS256", "mj"), one)
        self.assertError(self.vault.request("GET", "/v1/jwks/" + tp + ".PS256.xyz"), 400,
                         "bad_request")
        # A renewal with jwk_action=update moves all three to the new key, each keeping its
        # alg and use.
        m2 = self.material("mj2", san="mj.example.com", key="rsa2048")
        st, _, body = self.supersede("mj", m2, "renew", jwk_action="update", confirm="mj")
        self.assertEqual(st, 200, body)
        # The answer tells each of the three apart: superseded with its alg and use, and
        # its successor created with the same.
        self.assertEqual(body["jwk_changes"]["action"], "update")
        gone = {j["kid"]: j for j in jwk_changes(body, "superseded")}
        made_now = {j["replaces"]: j for j in jwk_changes(body, "created")}
        self.assertEqual(sorted(gone), sorted(made.values()), body["jwk_changes"])
        for (alg, use), kid in made.items():
            self.assertEqual((gone[kid]["alg"], gone[kid]["use"], gone[kid]["state"]),
                             (alg, use, "superseded"))
            succ = made_now[kid]
            self.assertEqual((succ["alg"], succ["use"], succ["state"], succ["kid"]),
                             (alg, use, "active", gone[kid]["superseded_by"]))
        st, _, page = self.vault.request("GET", "/v1/certificates?q=mj&limit=10")
        doc = self.jwks_doc()
        new_tp = [k for k in doc if len(k) == 43 and k != tp]
        self.assertEqual(len(new_tp), 1, list(doc))
        for suffix in (".PS256.sig", ".RSA-OAEP-256.enc"):
            st, _, got = self.vault.request("GET", "/v1/jwks/" + new_tp[0] + suffix)
            self.assertEqual((st, got["state"]), (200, "active"), got)
            st, _, old = self.vault.request("GET", "/v1/jwks/" + tp + suffix)
            self.assertEqual((old["state"], old["superseded_by"]),
                             ("superseded", new_tp[0] + suffix), old)
        # One of them deleted alone.
        st, _, body = self.vault.request("DELETE", "/v1/jwks/" + new_tp[0] + ".PS256.sig")
        self.assertEqual(st, 200, body)
        self.assertNotIn(new_tp[0] + ".PS256.sig", self.jwks_doc())
        self.assertIn(new_tp[0], self.jwks_doc())


RETENTION = 6  # seconds a superseded JWK stays published in RotationTest


class RotationTest(ServiceHelpers, VaultTestCase):
    """JWKS rotation: a superseded key stays published for jwks.superseded_retention, a key
    can be published before it is current, and a rollback takes its old JWK back."""

    settings = {"CERTVAULT_JWKS_SUPERSEDED_RETENTION": str(RETENTION)}

    def published(self):
        st, _, body = self.vault.request("GET", "/.well-known/jwks.json", token=None)
        self.assertEqual(st, 200)
        return [k["kid"] for k in __import__("json").loads(body)["keys"]]

    def jwk(self, kid):
        st, _, body = self.vault.request("GET", "/v1/jwks/" + kid)
        self.assertEqual(st, 200, body)
        return body

    def test_superseded_stays_for_its_retention(self):
        self.imported("ro", san="ro.example.com")
        st, _, k1 = self.vault.request("POST", "/v1/jwks", {"certificate": "ro"})
        self.assertEqual(st, 201, k1)
        m2 = self.material("ro2", san="ro.example.com")
        start = time.monotonic()
        st, _, body = self.supersede("ro", m2, "replace", jwk_action="update", confirm="ro")
        self.assertEqual(st, 200, body)
        [old] = jwk_changes(body, "superseded")
        [new] = jwk_changes(body, "created")
        k2 = new["kid"]
        self.assertEqual((old["kid"], old["superseded_by"], new["replaces"]),
                         (k1["kid"], k2, k1["kid"]))
        self.assertEqual(len(body["jwk_changes"]["jwks"]), 2, body["jwk_changes"])
        # Said in the answer: when the superseded kid leaves the public JWKS (the
        # renewal's time plus the retention; a loaded machine may take a while).
        until = iso_seconds(old["published_until"])
        self.assertLessEqual(abs(until - (time.time() + RETENTION)),
                             time.monotonic() - start + 2, old)
        self.assertIsNone(new["published_until"])
        doc = self.published()
        # Only judged when this read surely came within the retention (a loaded machine
        # may take long; the leaving below holds whatever the delay).
        if time.monotonic() - start < RETENTION - 2:
            self.assertIn(k1["kid"], doc)
        self.assertIn(k2, doc)
        # Marked superseded only in the management view; the public JWK is as it was.
        self.assertEqual(self.jwk(k1["kid"])["state"], "superseded")
        listed = lambda: {k["kid"]: k for k in self.vault.request(
            "GET", "/v1/jwks/all?certificate=ro")[2]["items"]}[k1["kid"]]
        # The management listing says when it leaves, and whether it is still there.
        old = listed()
        self.assertIsNotNone(old["published_until"], old)
        if time.monotonic() - start < RETENTION - 2:
            self.assertTrue(old["published"], old)
        time.sleep(max(0.0, RETENTION + 1 - (time.monotonic() - start)))
        doc = self.published()
        self.assertNotIn(k1["kid"], doc)
        self.assertIn(k2, doc)
        self.assertFalse(listed()["published"])

    def test_published_ahead_then_adopted(self):
        # The next key, as an upcoming certificate of its own: its JWK is published now.
        ahead = self.material("pa-up", san="pa.example.com", not_before=86400,
                              not_after=90 * 86400)
        st, _, body = self.vault.import_cert("pa-up", ahead, allow_upcoming=True)
        self.assertEqual((st, body["status"]), (201, "upcoming"), body)
        st, _, up = self.vault.request("POST", "/v1/jwks", {"certificate": "pa-up"})
        self.assertEqual(st, 201, up)
        self.assertIn(up["kid"], self.published())
        # A certificate whose next key is published ahead under an entry of its own; when
        # it takes the key, the published JWK is linked to it rather than made again.
        self.imported("pa", san="pa.example.com")
        st, _, k1 = self.vault.request("POST", "/v1/jwks", {"certificate": "pa"})
        nxt = self.material("pa-next", san="pa.example.com")
        st, _, body = self.vault.import_cert("pa-next", nxt)
        self.assertEqual(st, 201, body)
        st, _, k2 = self.vault.request("POST", "/v1/jwks", {"certificate": "pa-next"})
        self.assertEqual(st, 201, k2)
        st, _, body = self.supersede("pa", nxt, "replace", jwk_action="update", confirm="pa")
        self.assertEqual(st, 200, body)
        [adopted] = jwk_changes(body, "adopted")
        self.assertEqual((adopted["kid"], adopted["replaces"], adopted["state"]),
                         (k2["kid"], k1["kid"], "active"))
        self.assertEqual([j["kid"] for j in jwk_changes(body, "superseded")], [k1["kid"]])
        self.assertEqual(self.jwk(k2["kid"])["certificate"], "pa")
        self.assertEqual(self.jwk(k1["kid"])["superseded_by"], k2["kid"])

    def test_same_key_keeps_its_jwk(self):
        """A new certificate for the same key: the JWK is kept (the same kid, active, its x5c
        the new certificate), nothing superseded."""
        m1, _ = self.imported("sk", san="sk.example.com")
        st, _, k1 = self.vault.request("POST", "/v1/jwks", {"certificate": "sk"})
        self.assertEqual(st, 201, k1)
        path = os.path.join(self.tmp, "sk-same.crt")
        subprocess.run(["openssl", "req", "-new", "-x509", "-key", m1.key_path, "-days", "30",
                        "-subj", "/CN=sk.example.com", "-addext",
                        "subjectAltName=DNS:sk.example.com", "-out", path], check=True,
                       capture_output=True)
        with open(path) as f:
            cert = f.read()
        st, _, body = self.vault.request("POST", "/v1/certificates/sk/replace", {
            "certificate": cert, "private_key": m1.key, "jwk_action": "update",
            "confirm": "sk"})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["jwk_changes"], {"action": "update", "jwks": [{
            "kid": k1["kid"], "alg": "ES256", "use": "sig", "change": "kept",
            "state": "active", "superseded_by": None, "replaces": None,
            "published_until": None}]})
        got = self.jwk(k1["kid"])
        self.assertEqual(got["state"], "active")
        self.assertNotEqual(got["jwk"]["x5c"], k1["jwk"]["x5c"])

    def test_rollback_reactivates_the_superseded_jwk(self):
        """Issue 16 item 17: replace with the previous version's certificate and
        jwk_action=update takes the superseded JWK back instead of 409 name_taken."""
        m1, _ = self.imported("rb", san="rb.example.com")
        st, _, k1 = self.vault.request("POST", "/v1/jwks", {"certificate": "rb"})
        m2 = self.material("rb2", san="rb.example.com")
        st, _, body = self.supersede("rb", m2, "replace", jwk_action="update", confirm="rb")
        self.assertEqual(st, 200, body)
        [k2] = [j["kid"] for j in jwk_changes(body, "created")]
        st, _, body = self.supersede("rb", m1, "replace", jwk_action="update", confirm="rb")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["version"], 3)
        # The rollback says it in the same field as any renew or replace.
        self.assertEqual([(j["kid"], j["replaces"]) for j in jwk_changes(body, "reactivated")],
                         [(k1["kid"], k2)])
        self.assertEqual([(j["kid"], j["superseded_by"])
                          for j in jwk_changes(body, "superseded")], [(k2, k1["kid"])])
        self.assertEqual(jwk_changes(body, "created"), [])
        got = self.jwk(k1["kid"])
        self.assertEqual((got["state"], got["superseded_by"]), ("active", None), got)
        self.assertEqual(self.jwk(k2)["state"], "superseded")
        self.assertIn(k1["kid"], self.published())
        # And forward again.
        st, _, body = self.supersede("rb", m2, "replace", jwk_action="update", confirm="rb")
        self.assertEqual(st, 200, body)
        self.assertEqual([j["kid"] for j in jwk_changes(body, "reactivated")], [k2], body)


class ReceiveFromUrlTest(VaultTestCase):
    """Source "receive via HTTPS/LDAPS connection": the chosen entry of the chain a live
    endpoint presents (openssl s_server on 127.0.0.1) becomes a public certificate. The fetch
    is the truststore's, with its address policy: loopback must be allowed."""

    settings = FetchTest.settings

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = Material(cls.tmp, "u-root", key="p256", cn="Url Root CA", ca=True,
                            not_after=3650 * 86400)
        cls.inter = Material(cls.tmp, "u-inter", key="p256", cn="Url Intermediate CA",
                             ca=True, issuer=cls.root, not_after=1825 * 86400)
        cls.leaf = Material(cls.tmp, "u-leaf", key="p256", cn="localhost", san="localhost",
                            issuer=cls.inter)

    serve = FetchTest.serve

    def test_receive_each_position_and_refusals(self):
        port = self.serve()
        before = self.vault.count_token_objects()
        for scheme, name, position, subject, chain in (
                ("https", "u-leaf", None, "CN=localhost", 1),
                ("ldaps", "u-leaf2", 0, "CN=localhost", 1),
                ("https", "u-inter", 1, "CN=Url Intermediate CA", 0)):
            body = {"name": name, "url": "%s://127.0.0.1:%d" % (scheme, port)}
            if position is not None:
                body["position"] = position
            st, _, got = self.vault.request("POST", "/v1/certificates", body)
            self.assertEqual(st, 201, got)
            self.assertEqual((got["kind"], got["subject"], got["chain_length"], got["key"]),
                             ("public", subject, chain, None))
        st, _, pem = self.vault.request("GET", "/v1/certificates/u-leaf/export?format=chain")
        self.assertEqual(pem.decode(), self.leaf.cert + self.inter.cert)
        self.assertEqual(self.vault.count_token_objects(), before)
        url = "https://127.0.0.1:%d" % port
        msg = self.assertError(self.vault.request("POST", "/v1/certificates",
                                                  {"name": "u-x", "url": url, "position": 2}),
                               400, "bad_request")
        self.assertIn("0 to 1", msg)
        self.assertError(self.vault.request("POST", "/v1/certificates",
                                            {"name": "u-x", "url": url,
                                             "private_key": self.leaf.key}),
                         400, "bad_request")
        self.assertError(self.vault.request("POST", "/v1/certificates",
                                            {"name": "u-x", "certificate": self.leaf.cert,
                                             "position": 0}),
                         400, "bad_request")
        self.assertError(self.vault.request("POST", "/v1/certificates",
                                            {"name": "u-x", "url": "ftp://127.0.0.1"}),
                         400, "bad_request")
        closed = free_port()
        self.assertError(self.vault.request("POST", "/v1/certificates",
                                            {"name": "u-x",
                                             "url": "https://127.0.0.1:%d" % closed}),
                         502, "endpoint_unreachable")
        # Only an admin aims certvaultd at an address.
        st, _, tok = self.vault.request("POST", "/v1/tokens", {"name": "u-op",
                                                               "role": "operator"})
        self.assertError(self.vault.request("POST", "/v1/certificates",
                                            {"name": "u-x", "url": url}, token=tok["token"]),
                         403, "forbidden")
        self.assertError(self.vault.request("GET", "/v1/certificates/u-x"), 404, "not_found")


class RenameServedTest(ServiceHelpers, VaultTestCase):
    """A certificate a setting names (server.tls_certificate) keeps its name."""

    def test_rename_refused_while_served(self):
        m = self.material("api", cn="localhost", san="localhost")
        self.assertEqual(self.vault.import_cert("api", m)[0], 201)
        self.vault.stop()
        self.vault.start({"CERTVAULT_SERVER_TLS_CERTIFICATE": "api",
                          "CERTVAULT_SERVER_TLS_PORT": "0"})
        msg = self.assertError(self.vault.request("PATCH", "/v1/certificates/api",
                                                  {"name": "api2"}), 409, "in_use")
        self.assertIn("server.tls_certificate", msg)
        # Other edits are fine.
        st, _, body = self.vault.request("PATCH", "/v1/certificates/api",
                                         {"description": "served"})
        self.assertEqual((st, body["name"]), (200, "api"), body)


if __name__ == "__main__":
    unittest.main()
