"""Integration tests of JWKs: made from a certificate, the public JWKS document and its
caching, and what becomes of linked JWKs when their certificate is renewed, replaced or
deleted (the update / disconnect / cancel choice), against a real certvaultd."""

import json
import unittest

from harness import VaultTestCase, run

KID = r"^[A-Za-z0-9_-]{43}$"


class JwkTest(VaultTestCase):
    # A superseded JWK leaves the public JWKS at once here (the retention of rotation is
    # test_model's RotationTest).
    settings = {"CERTVAULT_JWKS_SUPERSEDED_RETENTION": "0"}

    def imported(self, name, key="p256", san=None):
        m = self.material(name, key=key, san=san or name + ".example.com")
        st, _, body = self.vault.import_cert(name, m)
        self.assertEqual(st, 201, body)
        return m

    def bind(self, cert, domain):
        svc = cert + "-svc"
        st, _, body = self.vault.request("PUT", "/v1/services/" + svc, {
            "environment": "production", "domains": [domain]})
        self.assertIn(st, (200, 201), body)
        st, _, body = self.vault.request("PUT", "/v1/services/%s/certificate" % svc,
                                         {"certificate": cert})
        self.assertEqual(st, 200, body)

    def create(self, cert, **extra):
        body = {"certificate": cert}
        body.update(extra)
        return self.vault.request("POST", "/v1/jwks", body)

    def jwks(self, path="/v1/jwks", headers=None):
        return self.vault.request("GET", path, headers=headers)

    def document(self):
        st, hdrs, raw = self.jwks()
        self.assertEqual(st, 200)
        return json.loads(raw)

    def test_create_each_key_type_and_read_back(self):
        for key, kty, alg in [("rsa2048", "RSA", "RS256"), ("p256", "EC", "ES256"),
                              ("p384", "EC", "ES384"), ("ed25519", "OKP", "EdDSA")]:
            with self.subTest(key=key):
                name = "jk-" + key
                self.imported(name, key=key)
                st, _, body = self.create(name)
                self.assertEqual(st, 201, body)
                jwk = body["jwk"]
                self.assertRegex(body["kid"], KID)
                self.assertEqual(jwk["kid"], body["kid"])
                self.assertEqual((jwk["kty"], jwk["alg"], jwk["use"]), (kty, alg, "sig"))
                self.assertEqual(body["certificate"], name)
                self.assertEqual(body["made_from"], {"certificate": name, "version": 1})
                self.assertEqual(body["state"], "active")
                for private in ("d", "p", "q", "dp", "dq", "qi", "k"):
                    self.assertNotIn(private, jwk)
                # x5c[0] is the certificate the vault exports, in standard base64 DER.
                st, _, der = self.vault.request(
                    "GET", "/v1/certificates/%s/export?format=der" % name)
                import base64
                self.assertEqual(base64.b64decode(jwk["x5c"][0]), der)
                st, _, again = self.vault.request("GET", "/v1/jwks/" + body["kid"])
                self.assertEqual((st, again), (200, body))
                # export format=jwk gives the same public key, with the same kid.
                st, hdrs, exported = self.vault.request(
                    "GET", "/v1/certificates/%s/export?format=jwk" % name)
                self.assertEqual(st, 200)
                self.assertEqual(hdrs["content-type"], "application/jwk+json")
                self.assertEqual(json.loads(exported)["kid"], body["kid"])

    def test_alg_and_use_rules_and_refusals(self):
        self.imported("jk-rules-rsa", key="rsa2048")
        self.imported("jk-rules-ec", key="p256")
        st, _, body = self.create("jk-rules-rsa", alg="PS256")
        self.assertEqual((st, body["jwk"]["alg"]), (201, "PS256"))
        self.vault.request("DELETE", "/v1/jwks/" + body["kid"])
        for cert, extra, code in [
                ("jk-rules-rsa", {"alg": "ES256"}, "bad_request"),
                ("jk-rules-ec", {"alg": "RS256"}, "bad_request"),
                ("jk-rules-ec", {"alg": "ES384"}, "bad_request"),
                ("jk-rules-ec", {"use": "both"}, "bad_request"),
                ("jk-rules-ec", {"alg": 256}, "bad_request"),
                ("jk-nothing", {}, "not_found"),
                ("bad name", {}, "invalid_name")]:
            with self.subTest(cert=cert, extra=extra):
                self.assertError(self.create(cert, **extra),
                                 404 if code == "not_found" else 400, code)
        self.assertError(self.vault.request("POST", "/v1/jwks", {"certificate": "jk-rules-ec",
                                                                  "colour": "red"}),
                         400, "bad_request")
        # One JWK per key: the same key again is a conflict.
        st, _, body = self.create("jk-rules-ec")
        self.assertEqual(st, 201, body)
        self.assertError(self.create("jk-rules-ec"), 409, "name_taken")
        # Unknown and malformed kids.
        self.assertError(self.vault.request("GET", "/v1/jwks/" + "A" * 43), 404, "not_found")
        self.assertError(self.vault.request("GET", "/v1/jwks/short"), 400, "bad_request")
        self.assertError(self.vault.request("DELETE", "/v1/jwks/" + "A" * 43), 404,
                         "not_found")

    def test_public_document_caching(self):
        self.imported("jk-doc")
        st, _, made = self.create("jk-doc")
        self.assertEqual(st, 201, made)
        st, hdrs, raw = self.jwks()
        self.assertEqual(st, 200)
        self.assertEqual(hdrs["content-type"], "application/jwk-set+json")
        self.assertIn("max-age", hdrs["cache-control"])
        etag = hdrs["etag"]
        doc = json.loads(raw)
        self.assertIn(made["jwk"], doc["keys"])
        for k in doc["keys"]:
            for private in ("d", "p", "q", "dp", "dq", "qi", "k"):
                self.assertNotIn(private, k)
        # The well-known path serves the same bytes.
        st, hdrs2, raw2 = self.jwks("/.well-known/jwks.json")
        self.assertEqual((st, raw2, hdrs2["etag"]), (200, raw, etag))
        # 304 for the current tag (also in a list and as a weak tag), 200 for another.
        for inm in (etag, '"x", ' + etag, "W/" + etag, "*"):
            st, hdrs3, raw3 = self.jwks(headers={"If-None-Match": inm})
            self.assertEqual((st, raw3), (304, b""), inm)
            self.assertEqual(hdrs3["etag"], etag)
        st, _, _ = self.jwks(headers={"If-None-Match": '"stale"'})
        self.assertEqual(st, 200)
        # A change to the set changes the tag; deleting the JWK takes it out.
        self.assertEqual(self.vault.request("DELETE", "/v1/jwks/" + made["kid"])[0], 200)
        st, hdrs4, raw4 = self.jwks()
        self.assertNotEqual(hdrs4["etag"], etag)
        self.assertNotIn(made["kid"], [k["kid"] for k in json.loads(raw4)["keys"]])
        self.assertError(self.vault.request("GET", "/v1/jwks/" + made["kid"]), 404,
                         "not_found")

    def test_renew_needs_a_choice_then_update_follows_the_key(self):
        self.imported("jk-ren", san="ren.example.com")
        self.bind("jk-ren", "ren.example.com")
        st, _, made = self.create("jk-ren")
        old_kid = made["kid"]
        new = self.material("jk-ren-v2", key="rsa2048", san="ren.example.com")
        body = {"certificate": new.cert, "private_key": new.key}
        before = self.vault.count_token_objects()
        # No choice: 409 naming the kid, and nothing changes (the Cancel of the dialog).
        msg = self.assertError(self.vault.request(
            "POST", "/v1/certificates/jk-ren/renew", body), 409, "jwk_choice_required")
        self.assertIn(old_kid, msg)
        # update without the name typed: refused too.
        self.assertError(self.vault.request("POST", "/v1/certificates/jk-ren/renew",
                                            dict(body, jwk_action="update")),
                         400, "confirmation_required")
        self.assertError(self.vault.request("POST", "/v1/certificates/jk-ren/renew",
                                            dict(body, jwk_action="update", confirm="jk")),
                         400, "confirmation_required")
        self.assertError(self.vault.request("POST", "/v1/certificates/jk-ren/renew",
                                            dict(body, jwk_action="maybe")),
                         400, "bad_request")
        self.assertEqual(self.vault.request("GET", "/v1/certificates/jk-ren")[2]["version"], 1)
        self.assertEqual(self.vault.count_token_objects(), before)
        st, _, still = self.vault.request("GET", "/v1/jwks/" + old_kid)
        self.assertEqual(still, made)
        # update, confirmed: the JWK follows the new (RSA) key with a new kid and alg.
        st, _, renewed = self.vault.request("POST", "/v1/certificates/jk-ren/renew",
                                            dict(body, jwk_action="update", confirm="jk-ren"))
        self.assertEqual(st, 200, renewed)
        st, _, exported = self.vault.request("GET",
                                             "/v1/certificates/jk-ren/export?format=jwk")
        new_kid = json.loads(exported)["kid"]
        self.assertNotEqual(new_kid, old_kid)
        st, _, new_jwk = self.vault.request("GET", "/v1/jwks/" + new_kid)
        self.assertEqual(st, 200, new_jwk)
        self.assertEqual((new_jwk["jwk"]["kty"], new_jwk["jwk"]["alg"]), ("RSA", "RS256"))
        self.assertEqual(new_jwk["certificate"], "jk-ren")
        self.assertEqual(new_jwk["made_from"]["version"], 2)
        st, _, old = self.vault.request("GET", "/v1/jwks/" + old_kid)
        self.assertEqual((old["state"], old["superseded_by"]), ("superseded", new_kid))
        self.assertEqual(old["jwk"], made["jwk"])
        kids = [k["kid"] for k in self.document()["keys"]]
        self.assertIn(new_kid, kids)
        self.assertNotIn(old_kid, kids)

    def test_replace_disconnect_keeps_the_old_jwk_unlinked(self):
        self.imported("jk-disc", san="disc.example.com")
        st, _, made = self.create("jk-disc")
        new = self.material("jk-disc-v2", san="disc.example.com")
        st, _, body = self.vault.request("POST", "/v1/certificates/jk-disc/replace", {
            "certificate": new.cert, "private_key": new.key, "jwk_action": "disconnect"})
        self.assertEqual(st, 200, body)
        st, _, jwk = self.vault.request("GET", "/v1/jwks/" + made["kid"])
        self.assertEqual((jwk["certificate"], jwk["state"], jwk["jwk"]),
                         (None, "active", made["jwk"]))
        self.assertIn(made["kid"], [k["kid"] for k in self.document()["keys"]])
        # No longer linked: the next replace needs no choice.
        newer = self.material("jk-disc-v3", san="disc.example.com")
        st, _, body = self.vault.request("POST", "/v1/certificates/jk-disc/replace", {
            "certificate": newer.cert, "private_key": newer.key})
        self.assertEqual(st, 200, body)

    def test_delete_with_linked_jwks(self):
        for name in ("jk-del", "jk-keep"):
            self.imported(name)
        st, _, gone = self.create("jk-del")
        st, _, kept = self.create("jk-keep")
        before = self.vault.count_token_objects()
        for path, status, code in [
                ("/v1/certificates/jk-del?confirm=delete", 409, "jwk_choice_required"),
                ("/v1/certificates/jk-del?confirm=delete&jwk_action=delete", 400,
                 "confirmation_required"),
                ("/v1/certificates/jk-del?confirm=jk-del&jwk_action=update", 400,
                 "bad_request"),
                ("/v1/certificates/jk-del?confirm=jk-del", 409, "jwk_choice_required")]:
            with self.subTest(path=path):
                self.assertError(self.vault.request("DELETE", path), status, code)
        self.assertEqual(self.vault.count_token_objects(), before)
        self.assertEqual(self.vault.request("GET", "/v1/jwks/" + gone["kid"])[0], 200)
        st, _, body = self.vault.request("DELETE",
                                         "/v1/certificates/jk-del?confirm=jk-del&jwk_action=delete")
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.request("GET", "/v1/jwks/" + gone["kid"])[0], 404)
        st, _, body = self.vault.request(
            "DELETE", "/v1/certificates/jk-keep?confirm=jk-keep&jwk_action=disconnect")
        self.assertEqual(st, 200, body)
        st, _, still = self.vault.request("GET", "/v1/jwks/" + kept["kid"])
        self.assertEqual((st, still["certificate"], still["jwk"]), (200, None, kept["jwk"]))
        self.assertEqual(self.vault.count_token_objects(), before - 2)
        kids = [k["kid"] for k in self.document()["keys"]]
        self.assertIn(kept["kid"], kids)
        self.assertNotIn(gone["kid"], kids)

    def test_document_follows_every_write_at_once(self):
        """certvaultd keeps the document between writes: each write that changes the set
        must show in the very next GET, with a new tag, on either path."""
        def kids():
            st, hdrs, raw = self.jwks()
            st2, hdrs2, raw2 = self.jwks("/.well-known/jwks.json")
            self.assertEqual((st, st2, raw2, hdrs2["etag"]), (200, 200, raw, hdrs["etag"]))
            return [k["kid"] for k in json.loads(raw)["keys"]], hdrs["etag"]

        self.imported("jk-at-once", san="once.example.com")
        self.bind("jk-at-once", "once.example.com")
        self.imported("jk-at-once-b")
        before, tag0 = kids()
        self.assertEqual(kids(), (before, tag0))  # served again, unchanged
        st, _, a = self.create("jk-at-once")
        self.assertEqual(st, 201, a)
        # (Oldest first; those made within one second in kid order.)
        now, tag1 = kids()
        self.assertEqual(sorted(now), sorted(before + [a["kid"]]))
        self.assertNotEqual(tag1, tag0)
        st, _, b = self.create("jk-at-once-b")
        self.assertEqual(st, 201, b)
        now, tag2 = kids()
        self.assertEqual(sorted(now), sorted(before + [a["kid"], b["kid"]]))
        # A renewal that updates the JWK swaps the kid.
        new = self.material("jk-at-once-v2", key="rsa2048", san="once.example.com")
        st, _, body = self.vault.request("POST", "/v1/certificates/jk-at-once/renew", {
            "certificate": new.cert, "private_key": new.key, "jwk_action": "update",
            "confirm": "jk-at-once"})
        self.assertEqual(st, 200, body)
        st, _, exported = self.vault.request(
            "GET", "/v1/certificates/jk-at-once/export?format=jwk")
        a2 = json.loads(exported)["kid"]
        now, tag3 = kids()
        self.assertEqual(sorted(now), sorted(before + [a2, b["kid"]]))
        self.assertNotEqual(tag3, tag2)
        # Deleting a certificate with its JWKs takes them out.
        st, _, body = self.vault.request(
            "DELETE", "/v1/certificates/jk-at-once-b?confirm=jk-at-once-b&jwk_action=delete")
        self.assertEqual(st, 200, body)
        now, tag4 = kids()
        self.assertEqual(sorted(now), sorted(before + [a2]))
        self.assertNotEqual(tag4, tag3)
        # And deleting a JWK.
        self.assertEqual(self.vault.request("DELETE", "/v1/jwks/" + a2)[0], 200)
        self.assertEqual(sorted(kids()[0]), sorted(before))


if __name__ == "__main__":
    unittest.main()
