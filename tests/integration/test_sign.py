"""Signing with a vault key (issue 18 part 4): POST /v1/certificates/{name}/sign and
POST /v1/jwks/{kid}/sign against a real certvaultd and SoftHSM token. Every signature is
checked by tools nobody here wrote: openssl against the certificate, Debian's jose against the
public JWKS."""

import base64
import hashlib
import json
import os
import re
import unittest

from harness import VaultTestCase, b64, run

HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_int(b):
    b = b.lstrip(b"\x00") or b"\x00"
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + der_len(len(b)) + b


def der_len(n):
    if n < 0x80:
        return bytes([n])
    out = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(out)]) + out


def rs_to_der(sig):
    """JOSE's r || s as the DER openssl reads, written here (not by certvault)."""
    half = len(sig) // 2
    body = der_int(sig[:half]) + der_int(sig[half:])
    return b"\x30" + der_len(len(body)) + body


class SignTest(VaultTestCase):
    keys = {}
    # SoftHSM 2.6.1 leaks 37 bytes of OpenSSL objects per Ed25519 key pair it generates, seen
    # at its first C_SignInit: as in test_generate, this certvaultd records full stacks
    # under ASan so that tests/lsan.supp's suppression by module name sees whose leak it is.
    settings = {"ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                       "fast_unwind_on_malloc=0"])),
                # A delete is a soft delete here, as it is by default (issue 18 part 2).
                "CERTVAULT_LIFECYCLE_DELETED_RETENTION_DAYS": "30"}

    def cert(self, key):
        """A certificate with a key of this type, imported once; its files."""
        if key not in self.keys:
            name = "sg-" + key
            m = self.material(name, key=key, san=name + ".example.com")
            st, _, body = self.vault.import_cert(name, m)
            self.assertEqual(st, 201, body)
            pub = os.path.join(self.tmp, name + ".pub")
            run(["openssl", "x509", "-in", m.cert_path, "-pubkey", "-noout", "-out", pub])
            self.keys[key] = (name, m, pub)
        return self.keys[key]

    def sign(self, name, body, token=True):
        return self.vault.request("POST", "/v1/certificates/%s/sign" % name, body, token=token)

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def openssl_verifies(self, pub, alg, msg, sig):
        """openssl dgst -verify (RSA, ECDSA DER) or pkeyutl -verify -rawin (Ed25519)."""
        mpath = self.write("msg.bin", msg)
        spath = self.write("sig.bin", sig)
        if alg in ("EdDSA", "ed25519"):
            cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin",
                   "-in", mpath, "-sigfile", spath]
        else:
            bits = re.search(r"(256|384|512)$", alg).group(1)
            cmd = ["openssl", "dgst", "-sha" + bits, "-verify", pub, "-signature", spath]
            if alg.startswith(("PS", "rsa-pss")):
                cmd += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
            cmd.append(mpath)
        p = run(cmd, check=False)
        return p.returncode == 0 and b"Verified OK" in p.stdout + p.stderr or (
            p.returncode == 0 and alg in ("EdDSA", "ed25519") and
            b"Signature Verified Successfully" in p.stdout)

    def test_every_key_type_and_algorithm_verifies_with_openssl(self):
        cases = {
            "rsa2048": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "rsa-pkcs1v15-sha256", "rsa-pkcs1v15-sha384", "rsa-pkcs1v15-sha512",
                        "rsa-pss-sha256", "rsa-pss-sha384", "rsa-pss-sha512"],
            "p256": ["ES256", "ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512"],
            "p384": ["ES384", "ecdsa-sha384"],
            "p521": ["ES512", "ecdsa-sha512"],
            "ed25519": ["EdDSA", "ed25519"],
        }
        for key, algs in cases.items():
            name, _, pub = self.cert(key)
            for alg in algs:
                with self.subTest(key=key, alg=alg):
                    msg = os.urandom(100)
                    if alg in ("EdDSA", "ed25519"):
                        body = {"algorithm": alg, "message": b64(msg)}
                    else:
                        bits = re.search(r"(256|384|512)$", alg).group(1)
                        body = {"algorithm": alg, "digest": b64(HASHES[bits](msg).digest())}
                    st, _, out = self.sign(name, body)
                    self.assertEqual(st, 200, out)
                    self.assertEqual(out["algorithm"], alg)
                    self.assertEqual(out["version"], 1)
                    self.assertIn("pkcs11:", out["key"]["pkcs11_uri"])
                    sig = base64.b64decode(out["signature"])
                    if alg.startswith("ES"):
                        # JOSE's form: r || s, each as long as the curve's order.
                        self.assertEqual(out["format"], "raw")
                        self.assertEqual(len(sig), {"ES256": 64, "ES384": 96,
                                                    "ES512": 132}[alg])
                        sig = rs_to_der(sig)
                    elif alg.startswith("ecdsa"):
                        self.assertEqual(out["format"], "der")
                    self.assertTrue(self.openssl_verifies(pub, alg, msg, sig), (key, alg))
                    # Another message does not verify: the check can fail.
                    self.assertFalse(self.openssl_verifies(pub, alg, msg + b"x", sig))
        # The message form hashes here; format der on ES256, raw on ecdsa-*.
        name, _, pub = self.cert("p256")
        msg = b"signed by a key nobody holds the PIN of\n"
        st, _, out = self.sign(name, {"algorithm": "ES256", "message": b64(msg),
                                      "format": "der"})
        self.assertEqual((st, out["format"]), (200, "der"), out)
        self.assertTrue(self.openssl_verifies(pub, "ES256", msg,
                                              base64.b64decode(out["signature"])))
        st, _, out = self.sign(name, {"algorithm": "ecdsa-sha256", "message": b64(msg),
                                      "format": "raw"})
        self.assertEqual((st, out["format"]), (200, "raw"), out)
        self.assertTrue(self.openssl_verifies(pub, "ecdsa-sha256", msg,
                                              rs_to_der(base64.b64decode(out["signature"]))))
        name, _, pub = self.cert("rsa2048")
        st, _, out = self.sign(name, {"algorithm": "PS512", "message": b64(msg)})
        self.assertEqual(st, 200, out)
        self.assertTrue(self.openssl_verifies(pub, "PS512", msg,
                                              base64.b64decode(out["signature"])))

    def test_refusals_are_clear_and_sign_nothing(self):
        rsa, _, _ = self.cert("rsa2048")
        ec, _, _ = self.cert("p256")
        ed, _, _ = self.cert("ed25519")
        d32 = b64(hashlib.sha256(b"x").digest())
        msg = self.assertError(self.sign(ec, {"algorithm": "ES256", "digest": b64(b"x" * 20)}),
                               422, "digest_length_mismatch")
        self.assertIn("32-byte", msg)
        self.assertError(self.sign(rsa, {"algorithm": "RS384", "digest": d32}), 422,
                         "digest_length_mismatch")
        msg = self.assertError(self.sign(ec, {"algorithm": "RS256", "digest": d32}), 422,
                               "algorithm_mismatch")
        self.assertIn("ES256", msg)
        self.assertError(self.sign(ec, {"algorithm": "ES384",
                                        "digest": b64(hashlib.sha384(b"x").digest())}),
                         422, "algorithm_mismatch")
        self.assertError(self.sign(rsa, {"algorithm": "ES256", "digest": d32}), 422,
                         "algorithm_mismatch")
        self.assertError(self.sign(ed, {"algorithm": "RS256", "digest": d32}), 422,
                         "algorithm_mismatch")
        self.assertError(self.sign(ed, {"algorithm": "EdDSA", "digest": d32}), 400,
                         "bad_request")
        self.assertError(self.sign(ec, {"algorithm": "HS256", "digest": d32}), 400,
                         "bad_request")
        self.assertError(self.sign(rsa, {"algorithm": "RS256", "digest": d32,
                                         "format": "der"}), 400, "bad_request")
        self.assertError(self.sign(ec, {"algorithm": "ES256", "digest": "not base64!"}), 400,
                         "bad_request")
        self.assertError(self.sign(ec, {"algorithm": "ES256"}), 400, "bad_request")
        self.assertError(self.sign(ec, {"algorithm": "ES256", "digest": d32,
                                        "message": b64(b"x")}), 400, "bad_request")
        self.assertError(self.sign(ec, {"algorithm": "ES256", "digest": d32, "version": 7}),
                         404, "not_found")
        self.assertError(self.sign("no-such-cert", {"algorithm": "ES256", "digest": d32}), 404,
                         "not_found")
        self.assertError(self.sign(ec, {"algorithm": "ES256", "digest": d32, "pin": "1"}), 400,
                         "bad_request")
        # Roles: an auditor reads and never signs; no token, no signature.
        st, _, tok = self.vault.request("POST", "/v1/tokens", {"name": "sg-aud",
                                                               "role": "auditor"})
        self.assertEqual(st, 201, tok)
        self.assertError(self.sign(ec, {"algorithm": "ES256", "digest": d32},
                                   token=tok["token"]), 403, "forbidden")
        self.assertError(self.sign(ec, {"algorithm": "ES256", "digest": d32}, token=None),
                         401, "unauthorized")
        st, _, op = self.vault.request("POST", "/v1/tokens", {"name": "sg-op",
                                                              "role": "operator"})
        self.assertEqual(st, 201, op)
        st, _, out = self.sign(ec, {"algorithm": "ES256", "digest": d32}, token=op["token"])
        self.assertEqual(st, 200, out)
        # A public certificate has no key; an upcoming one signs from its start.
        m = self.material("sg-public", san="sg-public.example.com")
        st, _, body = self.vault.request("POST", "/v1/certificates",
                                         {"name": "sg-public", "certificate": m.cert})
        self.assertEqual(st, 201, body)
        self.assertError(self.sign("sg-public", {"algorithm": "ES256", "digest": d32}), 422,
                         "no_private_key")
        m = self.material("sg-soon", san="sg-soon.example.com", not_before=86400)
        st, _, body = self.vault.import_cert("sg-soon", m, allow_upcoming=True)
        self.assertEqual(st, 201, body)
        self.assertError(self.sign("sg-soon", {"algorithm": "ES256", "digest": d32}), 422,
                         "not_yet_valid")
        # A deleted certificate's key cannot sign: soft-deleted (issue 18 part 2), its key
        # still in the token, it signs again only once recovered.
        m = self.material("sg-gone", san="sg-gone.example.com")
        st, _, body = self.vault.import_cert("sg-gone", m)
        self.assertEqual(st, 201, body)
        st, _, out = self.sign("sg-gone", {"algorithm": "ES256", "digest": d32})
        self.assertEqual(st, 200, out)
        keys = self.vault.count_token_objects()
        st, _, body = self.vault.request("DELETE", "/v1/certificates/sg-gone?confirm=delete")
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.count_token_objects(), keys)
        self.assertError(self.sign("sg-gone", {"algorithm": "ES256", "digest": d32}), 404,
                         "not_found")
        st, _, body = self.vault.request("POST", "/v1/deleted-certificates/sg-gone/recover")
        self.assertEqual(st, 200, body)
        st, _, out = self.sign("sg-gone", {"algorithm": "ES256", "digest": d32})
        self.assertEqual(st, 200, out)
        # Deleted and purged: the key is gone from the token, and nothing signs.
        st, _, body = self.vault.request("DELETE", "/v1/certificates/sg-gone?confirm=delete")
        self.assertEqual(st, 200, body)
        st, _, body = self.vault.request("DELETE",
                                         "/v1/deleted-certificates/sg-gone?confirm=purge")
        self.assertEqual(st, 200, body)
        self.assertEqual(self.vault.count_token_objects(), keys - 1)
        self.assertError(self.sign("sg-gone", {"algorithm": "ES256", "digest": d32}), 404,
                         "not_found")

    def test_keys_generated_in_the_token_sign(self):
        # Keys born in the token (issue 13) are sign-only too: CKA_SIGN true, and it works.
        for key, alg in (("p384", "ES384"), ("ed25519", "EdDSA")):
            name = "sg-gen-" + key
            st, _, body = self.vault.request("POST", "/v1/certificates", {
                "name": name, "generate": {"key": key, "subject": "CN=%s.example.com" % name,
                                           "dns_names": [name + ".example.com"],
                                           "self_signed": True, "days": 30}})
            self.assertEqual(st, 201, body)
            st, _, pem = self.vault.request("GET", "/v1/certificates/%s/export?format="
                                            "public-key" % name)
            self.assertEqual(st, 200)
            pub = self.write(name + ".pub", pem)
            msg = b"born in the token"
            body = {"algorithm": alg, "message": b64(msg)}
            st, _, out = self.sign(name, body)
            self.assertEqual(st, 200, out)
            sig = base64.b64decode(out["signature"])
            if alg.startswith("ES"):
                sig = rs_to_der(sig)
            self.assertTrue(self.openssl_verifies(pub, alg, msg, sig), key)

    def test_a_superseded_version_signs_when_named(self):
        m1 = self.material("sg-ver1", san="sg-ver.example.com")
        m2 = self.material("sg-ver2", key="rsa2048", san="sg-ver.example.com")
        st, _, body = self.vault.import_cert("sg-ver", m1)
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("POST", "/v1/certificates/sg-ver/replace",
                                         {"certificate": m2.cert, "private_key": m2.key})
        self.assertEqual(st, 200, body)
        digest = b64(hashlib.sha256(b"m").digest())
        # The current version's key is RSA now; version 1's was P-256.
        st, _, out = self.sign("sg-ver", {"algorithm": "RS256", "digest": digest})
        self.assertEqual((st, out.get("version")), (200, 2), out)
        self.assertError(self.sign("sg-ver", {"algorithm": "ES256", "digest": digest}), 422,
                         "algorithm_mismatch")
        st, _, out = self.sign("sg-ver", {"algorithm": "ES256", "digest": digest,
                                          "version": 1})
        self.assertEqual((st, out.get("version")), (200, 1), out)
        pub = os.path.join(self.tmp, "sg-ver1.pub")
        run(["openssl", "x509", "-in", m1.cert_path, "-pubkey", "-noout", "-out", pub])
        self.assertTrue(self.openssl_verifies(pub, "ES256", b"m",
                                              rs_to_der(base64.b64decode(out["signature"]))))

    def test_jws_verifies_with_jose_against_the_public_jwks(self):
        made = {}
        for key in ("rsa2048", "p256", "p384", "ed25519"):
            name, _, _ = self.cert(key)
            st, _, jwk = self.vault.request("POST", "/v1/jwks", {"certificate": name})
            self.assertEqual(st, 201, jwk)
            made[key] = jwk
        # A second JWK of the RSA key, for PS256: its own kid.
        st, _, ps = self.vault.request("POST", "/v1/jwks", {"certificate": self.cert(
            "rsa2048")[0], "alg": "PS256"})
        self.assertEqual(st, 201, ps)
        made["rsa2048-ps"] = ps
        st, _, raw = self.vault.request("GET", "/.well-known/jwks.json")
        self.assertEqual(st, 200)
        jwks_path = self.write("jwks.json", raw)
        payload = b'{"sub":"certvault","aud":"jose"}'
        for key, jwk in made.items():
            with self.subTest(key=key):
                st, _, out = self.vault.request(
                    "POST", "/v1/jwks/%s/sign" % jwk["kid"],
                    {"payload": b64url(payload), "header": {"typ": "JWT", "cty": "json"}})
                self.assertEqual(st, 200, out)
                self.assertEqual(out["kid"], jwk["kid"])
                self.assertEqual(out["alg"], jwk["jwk"]["alg"])
                head = json.loads(base64.urlsafe_b64decode(out["jws"].split(".")[0] + "=="))
                self.assertEqual(head, {"alg": jwk["jwk"]["alg"], "kid": jwk["kid"],
                                        "typ": "JWT", "cty": "json"})
                h, p64, s = out["jws"].split(".")
                self.assertEqual(p64, b64url(payload))
                if key == "ed25519":
                    # Debian's jose (11) has no EdDSA: openssl checks the signing input
                    # against the certificate's key, as RFC 8037 defines it.
                    pub = self.cert(key)[2]
                    sig = base64.urlsafe_b64decode(s + "==")
                    self.assertTrue(self.openssl_verifies(pub, "EdDSA",
                                                          (h + "." + p64).encode(), sig))
                    self.assertFalse(self.openssl_verifies(pub, "EdDSA",
                                                           (h + ".e30").encode(), sig))
                    continue
                jws_path = self.write("t.jws", out["jws"].encode())
                p = run(["jose", "jws", "ver", "-i", jws_path, "-k", jwks_path, "-O", "-"])
                self.assertEqual(p.stdout, payload)
                # The same signature over another payload does not verify.
                self.write("t.jws", (h + "." + b64url(b"{}") + "." + s).encode())
                p = run(["jose", "jws", "ver", "-i", jws_path, "-k", jwks_path], check=False)
                self.assertNotEqual(p.returncode, 0)
        kid = made["p256"]["kid"]
        path = "/v1/jwks/%s/sign" % kid
        # An empty payload is a payload; the vault sets alg and kid and refuses others.
        st, _, out = self.vault.request("POST", path, {"payload": ""})
        self.assertEqual(st, 200, out)
        self.assertTrue(out["jws"].count(".") == 2 and ".." in out["jws"], out)
        st, _, out = self.vault.request("POST", path, {"payload": "e30",
                                                       "header": {"alg": "ES256", "kid": kid}})
        self.assertEqual(st, 200, out)
        for header in ({"alg": "none"}, {"alg": "HS256"}, {"kid": "another"},
                       {"jwk": made["rsa2048"]["jwk"]}, {"jku": "https://evil.example/k"},
                       {"b64": False}, {"crit": ["exp"]}, {"x5t#S256": "AAAA"}):
            with self.subTest(header=header):
                self.assertError(self.vault.request("POST", path, {"payload": "e30",
                                                                   "header": header}),
                                 400, "bad_request")
        for payload in ("e30=", "e30+", "a", "e 30"):
            with self.subTest(payload=payload):
                self.assertError(self.vault.request("POST", path, {"payload": payload}), 400,
                                 "bad_request")
        self.assertError(self.vault.request("POST", "/v1/jwks/%s/sign" % ("A" * 43),
                                            {"payload": "e30"}), 404, "not_found")

    def test_a_superseded_jwk_signs_no_more_and_its_successor_does(self):
        m1 = self.material("sg-rot1", san="sg-rot.example.com")
        m2 = self.material("sg-rot2", san="sg-rot.example.com")
        st, _, body = self.vault.import_cert("sg-rot", m1)
        self.assertEqual(st, 201, body)
        st, _, old = self.vault.request("POST", "/v1/jwks", {"certificate": "sg-rot"})
        self.assertEqual(st, 201, old)
        st, _, body = self.vault.request(
            "POST", "/v1/certificates/sg-rot/replace",
            {"certificate": m2.cert, "private_key": m2.key, "jwk_action": "update",
             "confirm": "sg-rot"})
        self.assertEqual(st, 200, body)
        msg = self.assertError(self.vault.request("POST", "/v1/jwks/%s/sign" % old["kid"],
                                                  {"payload": "e30"}), 409, "not_active")
        self.assertIn("superseded", msg)
        st, _, jwks = self.vault.request("GET", "/v1/jwks/all?certificate=sg-rot")
        new = [j["kid"] for j in jwks["items"] if j["state"] == "active"]
        self.assertEqual(len(new), 1, jwks)
        st, _, out = self.vault.request("POST", "/v1/jwks/%s/sign" % new[0], {"payload": "e30"})
        self.assertEqual(st, 200, out)
        self.assertEqual(out["version"], 2)

    def test_signatures_are_audited_collapsed_and_counted(self):
        name = "sg-audited"
        m = self.material(name, key="p384", san="sg-audited.example.com")
        st, _, body = self.vault.import_cert(name, m)
        self.assertEqual(st, 201, body)
        digest = b64(hashlib.sha384(b"audited").digest())
        for _ in range(5):
            st, _, out = self.sign(name, {"algorithm": "ES384", "digest": digest})
            self.assertEqual(st, 200, out)
        self.sign(name, {"algorithm": "ES384", "digest": b64(b"short")})
        # Reading the trail writes the open counts: the first signature's record, then one
        # record counting the four after it.
        st, _, page = self.vault.request(
            "GET", "/v1/audit?action=certificate.sign&target=%s&limit=100" % name)
        self.assertEqual(st, 200, page)
        done = [r for r in page["items"] if r["outcome"] == "done"]
        self.assertEqual(sum(r["count"] for r in done), 5, page)
        self.assertEqual(len(done), 2, page)
        self.assertTrue(all("algorithm=ES384" in (r.get("detail") or "") for r in done), done)
        refused = [r for r in page["items"] if r not in done]
        self.assertEqual(len(refused), 1, page)
        self.assertEqual(refused[0]["error"], "digest_length_mismatch")
        self.assertEqual(refused[0]["fingerprints"], done[0]["fingerprints"])
        # The trail still verifies: counts are records of their own, nothing rewritten.
        st, _, verdict = self.vault.request("GET", "/v1/audit/verify")
        self.assertEqual((st, verdict["intact"]), (200, True), verdict)
        st, _, text = self.vault.request("GET", "/metrics")
        text = text.decode()
        m = re.search(r'certvault_signatures_total\{node="[^"]+",algorithm="ES384",outcome="ok"\} (\d+)', text)
        self.assertTrue(m and int(m.group(1)) >= 5, text[-3000:])
        self.assertRegex(text, r'certvault_signatures_total\{node="[^"]+",algorithm="ES384",'
                         r'outcome="digest_length_mismatch"\}')


if __name__ == "__main__":
    unittest.main()
