"""Interop: tools nobody here wrote see what certvault promises. pkcs11-tool and p11tool read
the key's attributes and fail to read it out; openssl signs with it through the libp11 engine
by the details' pkcs11_uri; the SQLite file, its WAL and the log hold none of its bytes."""

import base64
import json
import os
import re
import unittest

from harness import ENGINE_PKCS11, SOFTHSM_MODULE, VaultTestCase, run


def private_parts(key_path):
    """The secret numbers of a PEM private key, as big-endian bytes, read by openssl."""
    text = run(["openssl", "pkey", "-in", key_path, "-noout", "-text"]).stdout.decode()
    parts, name, hexdigits = [], None, ""
    for line in text.splitlines() + ["end:"]:
        m = re.match(r"^([A-Za-z0-9]+):", line)
        if m:
            if name in ("privateExponent", "prime1", "prime2", "priv") and hexdigits:
                parts.append(bytes.fromhex(hexdigits).lstrip(b"\0"))
            name, hexdigits = m.group(1), ""
            continue
        if name is not None and re.match(r"^\s+[0-9a-f:]+$", line):
            hexdigits += line.strip().replace(":", "")
    return parts


class InteropTest(VaultTestCase):
    # No Ed25519 key here: the libp11 0.4.12 engine fails to enumerate (and then crashes on)
    # any token that holds one, so Ed25519 gets a token of its own below.
    key_types = ("rsa2048", "p256", "p384")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from harness import Material
        cls.keys = {}
        for key in cls.key_types:
            m = Material(cls.tmp, "io-" + key, key=key, san=key + ".interop.example.com")
            st, _, body = cls.vault.import_cert("io-" + key, m)
            assert st == 201, body
            cls.keys[key] = (m, body)
        cls.openssl_conf = os.path.join(cls.tmp, "openssl-pkcs11.cnf")
        with open(cls.openssl_conf, "w") as f:
            f.write("openssl_conf = openssl_init\n[openssl_init]\nengines = engines\n"
                    "[engines]\npkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\n"
                    "dynamic_path = %s\nMODULE_PATH = %s\ninit = 0\n"
                    % (ENGINE_PKCS11, SOFTHSM_MODULE))

    def tool_env(self, **extra):
        env = self.vault.env()
        env.update(extra)
        return env

    def test_pkcs11_tool_sees_sensitive_not_extractable(self):
        out = self.vault.token_objects()
        for key, (m, body) in self.keys.items():
            with self.subTest(key=key):
                block = self.object_block(out, "Private Key Object", body["key"]["id"])
                self.assertIn("label:      io-" + key, block)
                access = re.search(r"Access:\s*(.*)", block).group(1)
                self.assertIn("sensitive", access)
                self.assertNotIn("extractable,", access.replace("never extractable", ""))
                self.assertNotIn("always sensitive", access)
                # Issue 16 item 9: the key signs and does nothing else (no decrypt, no
                # sign-recover, no unwrap or derive), and cannot be modified to.
                # (CKA_COPYABLE false is read back by test_token: neither tool shows it.)
                usage = re.search(r"Usage:\s*(.*)", block).group(1).strip()
                self.assertEqual(usage, "sign", block)
                self.assertNotIn("modifiable", access, block)
                pub = self.object_block(out, "Public Key Object", body["key"]["id"])
                self.assertEqual(re.search(r"Usage:\s*(.*)", pub).group(1).strip(), "verify",
                                 pub)

    def test_rsa_key_is_no_decryption_oracle(self):
        """Issue 16 item 9: with the PIN, pkcs11-tool cannot decrypt with an RSA key."""
        if "rsa2048" not in self.keys:
            self.skipTest("no RSA key in this class's token")
        m, body = self.keys["rsa2048"]
        secret = os.path.join(self.tmp, "oracle.txt")
        with open(secret, "wb") as f:
            f.write(b"premaster secret")
        enc = os.path.join(self.tmp, "oracle.enc")
        run(["openssl", "pkeyutl", "-encrypt", "-certin", "-inkey", m.cert_path,
             "-pkeyopt", "rsa_padding_mode:pkcs1", "-in", secret, "-out", enc])
        out = os.path.join(self.tmp, "oracle.out")
        p = run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.vault.label,
                 "--login", "--pin", "env:CV_TEST_PIN", "--decrypt", "-m", "RSA-PKCS",
                 "--id", body["key"]["id"], "--input-file", enc, "--output-file", out],
                env=self.tool_env(CV_TEST_PIN=self.vault.pin), check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(b"CKR_KEY_FUNCTION_NOT_PERMITTED", p.stdout + p.stderr)
        self.assertFalse(os.path.exists(out) and b"premaster" in open(out, "rb").read())

    @staticmethod
    def object_block(listing, kind, key_id):
        blocks = re.split(r"\n(?=\S)", listing)
        for b in blocks:
            if b.startswith(kind) and re.search(r"ID:\s*" + key_id, b):
                return b
        raise AssertionError("no %s with id %s in:\n%s" % (kind, key_id, listing))

    def test_p11tool_reads_flags_and_cannot_export(self):
        env = self.tool_env(GNUTLS_PIN=self.vault.pin)
        for key, (m, body) in self.keys.items():
            with self.subTest(key=key):
                uri = body["key"]["pkcs11_uri"]
                p = run(["p11tool", "--provider", SOFTHSM_MODULE, "--login", "--list-all",
                         "--detailed-url", uri], env=env)
                out = p.stdout.decode()
                self.assertIn("CKA_SENSITIVE", out)
                self.assertNotIn("CKA_EXTRACTABLE", out)
                # p11tool names the usage flags a key has: none but signing.
                flags = re.search(r"Flags:(.*)", out).group(1)
                self.assertNotIn("CKA_WRAP/UNWRAP", flags, out)
                self.assertNotIn("CKA_DECRYPT", flags, out)
                self.assertIn("Label: io-" + key, out)
                # Reading the key's value out of the token fails.
                p = run(["p11tool", "--provider", SOFTHSM_MODULE, "--login", "--export",
                         uri], env=env, check=False)
                self.assertNotEqual(p.returncode, 0)
                self.assertNotIn(b"PRIVATE KEY", p.stdout)

    def test_openssl_signs_through_the_engine_with_the_uri(self):
        data = os.path.join(self.tmp, "message.txt")
        with open(data, "w") as f:
            f.write("signed by a key that never left the token\n")
        env = self.tool_env(OPENSSL_CONF=self.openssl_conf)
        for key in ("rsa2048", "p256", "p384"):
            with self.subTest(key=key):
                m, body = self.keys[key]
                sig = os.path.join(self.tmp, key + ".sig")
                uri = body["key"]["pkcs11_uri"] + ";pin-value=" + self.vault.pin
                run(["openssl", "dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine",
                     "-sign", uri, "-out", sig, data], env=env)
                pub = os.path.join(self.tmp, key + ".pub")
                st, _, pem = self.vault.request(
                    "GET", "/v1/certificates/io-%s/export?format=public-key" % key)
                with open(pub, "wb") as f:
                    f.write(pem)
                p = run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", sig, data])
                self.assertIn(b"Verified OK", p.stdout)

    def sign_and_verify(self, uri, public_key_pem, name):
        """Signs through the engine with uri; returns whether public_key_pem verifies it."""
        data = os.path.join(self.tmp, name + ".txt")
        with open(data, "w") as f:
            f.write("signed by %s\n" % name)
        sig, pub = os.path.join(self.tmp, name + ".sig"), os.path.join(self.tmp, name + ".pub")
        run(["openssl", "dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine", "-sign",
             uri + ";pin-value=" + self.vault.pin, "-out", sig, data],
            env=self.tool_env(OPENSSL_CONF=self.openssl_conf))
        with open(pub, "wb") as f:
            f.write(public_key_pem)
        p = run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", sig, data],
                check=False)
        return b"Verified OK" in p.stdout

    def test_renewed_key_is_in_the_token_and_signs(self):
        from harness import Material
        old = Material(self.tmp, "rn-old", key="p256", san="rn.interop.example.com")
        st, _, v1 = self.vault.import_cert("io-renew", old)
        self.assertEqual(st, 201, v1)
        old_pub = self.vault.request("GET", "/v1/certificates/io-renew/export?format=public-key")[2]
        st, _, body = self.vault.request("PUT", "/v1/services/io-renew-svc", {
            "environment": "production", "domains": ["rn.interop.example.com"]})
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("PUT", "/v1/services/io-renew-svc/certificate",
                                         {"certificate": "io-renew"})
        self.assertEqual(st, 200, body)
        new = Material(self.tmp, "rn-new", key="rsa2048", san="rn.interop.example.com")
        st, _, v2 = self.vault.request("POST", "/v1/certificates/io-renew/renew",
                                       {"certificate": new.cert, "private_key": new.key})
        self.assertEqual(st, 200, v2)
        self.assertNotEqual(v2["key"]["id"], v1["key"]["id"])
        new_pub = self.vault.request("GET", "/v1/certificates/io-renew/export?format=public-key")[2]
        self.assertNotEqual(new_pub, old_pub)
        # The new version's key: in the token, sensitive, never readable, and it signs.
        block = self.object_block(self.vault.token_objects(), "Private Key Object",
                                  v2["key"]["id"])
        access = re.search(r"Access:\s*(.*)", block).group(1)
        self.assertIn("sensitive", access)
        self.assertNotIn("extractable,", access.replace("never extractable", ""))
        self.assertTrue(self.sign_and_verify(v2["key"]["pkcs11_uri"], new_pub, "rn-new"))
        self.assertFalse(self.sign_and_verify(v2["key"]["pkcs11_uri"], old_pub, "rn-cross"))
        # The superseded version's key stays until the certificate is deleted, and still
        # signs for whoever has not switched yet.
        st, _, versions = self.vault.request("GET", "/v1/certificates/io-renew/versions")
        self.assertEqual(st, 200, versions)
        self.assertEqual([x["version"] for x in versions["versions"]], [2, 1])
        self.assertTrue(versions["versions"][1]["key"]["in_token"])
        self.assertTrue(self.sign_and_verify(versions["versions"][1]["key"]["pkcs11_uri"],
                                             old_pub, "rn-old"))
        # Neither key's bytes reached the database.
        with open(self.vault.db, "rb") as f:
            blobs = f.read()
        if os.path.exists(self.vault.db + "-wal"):
            with open(self.vault.db + "-wal", "rb") as f:
                blobs += f.read()
        for m in (old, new):
            self.assertNotIn(m.key_der(), blobs)
            for part in private_parts(m.key_path):
                self.assertNotIn(part[:16], blobs)

    def test_database_wal_and_log_hold_no_key_bytes(self):
        files = [self.vault.db, self.vault.db + "-wal", self.vault.log_path]
        blobs = b""
        for path in files:
            if os.path.exists(path):
                with open(path, "rb") as f:
                    blobs += f.read()
        self.assertGreater(len(blobs), 0)
        for key, (m, body) in self.keys.items():
            with self.subTest(key=key):
                # The certificate is there (the search works) ...
                self.assertIn(m.cert_der()[-32:], blobs)
                # ... the key is not: not its DER, its PEM text, nor any secret number.
                self.assertNotIn(m.key_der(), blobs)
                for line in m.key.splitlines()[1:-1]:
                    self.assertNotIn(line.encode(), blobs)
                parts = private_parts(m.key_path)
                self.assertTrue(parts, "openssl showed no private numbers for " + key)
                for part in parts:
                    self.assertNotIn(part[:16], blobs)
        self.assertNotIn(self.vault.pin.encode(), blobs)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ecdsa_der_to_jose(der, size):
    """An ECDSA signature as DER (what openssl writes) to JWS's r || s of size bytes each."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    parts = []
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        parts.append(der[i + 2:i + 2 + n].lstrip(b"\0").rjust(size, b"\0"))
        i += 2 + n
    return parts[0] + parts[1]


class JwksInteropTest(VaultTestCase):
    """Debian's jose tool (latchset), which nobody here wrote, reads the public JWKS: each kid
    is the key's thumbprint as jose computes it, and a JWS signed in the token through the
    libp11 engine verifies against the document."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.openssl_conf = os.path.join(cls.tmp, "openssl-pkcs11.cnf")
        with open(cls.openssl_conf, "w") as f:
            f.write("openssl_conf = openssl_init\n[openssl_init]\nengines = engines\n"
                    "[engines]\npkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\n"
                    "dynamic_path = %s\nMODULE_PATH = %s\ninit = 0\n"
                    % (ENGINE_PKCS11, SOFTHSM_MODULE))

    def test_jose_reads_the_jwks_and_verifies_a_token_signature(self):
        from harness import Material
        made = {}
        for key in ("p256", "rsa2048", "p384"):
            name = "jw-" + key
            m = Material(self.tmp, name, key=key, san=name + ".example.com")
            st, _, cert = self.vault.import_cert(name, m)
            self.assertEqual(st, 201, cert)
            st, _, jwk = self.vault.request("POST", "/v1/jwks", {"certificate": name})
            self.assertEqual(st, 201, jwk)
            made[key] = (cert, jwk)
        st, _, raw = self.vault.request("GET", "/.well-known/jwks.json")
        self.assertEqual(st, 200)
        jwks_path = os.path.join(self.tmp, "jwks.json")
        with open(jwks_path, "wb") as f:
            f.write(raw)
        # jose's own RFC 7638 thumbprints are the kids.
        out = run(["jose", "jwk", "thp", "-i", jwks_path, "-a", "S256"]).stdout.decode()
        self.assertEqual(sorted(out.split()), sorted(j["kid"] for _, j in made.values()))
        env = dict(self.vault.env(), OPENSSL_CONF=self.openssl_conf)
        for key, size in (("p256", 32), ("rsa2048", None), ("p384", 48)):
            with self.subTest(key=key):
                cert, jwk = made[key]
                alg = jwk["jwk"]["alg"]
                header = b64url(json.dumps({"alg": alg, "kid": jwk["kid"]}).encode())
                payload = b64url(b'{"sub":"certvault","aud":"interop"}')
                signing_input = os.path.join(self.tmp, key + ".jws-in")
                with open(signing_input, "w") as f:
                    f.write(header + "." + payload)
                sig_path = os.path.join(self.tmp, key + ".jws-sig")
                md = "-sha384" if alg == "ES384" else "-sha256"
                run(["openssl", "dgst", md, "-engine", "pkcs11", "-keyform", "engine",
                     "-sign", cert["key"]["pkcs11_uri"] + ";pin-value=" + self.vault.pin,
                     "-out", sig_path, signing_input], env=env)
                with open(sig_path, "rb") as f:
                    sig = f.read()
                if size is not None:
                    sig = ecdsa_der_to_jose(sig, size)
                token = header + "." + payload + "." + b64url(sig)
                jws_path = os.path.join(self.tmp, key + ".jws")
                with open(jws_path, "w") as f:
                    f.write(token)
                p = run(["jose", "jws", "ver", "-i", jws_path, "-k", jwks_path, "-O", "-"])
                self.assertEqual(p.stdout, b'{"sub":"certvault","aud":"interop"}')
                # A changed payload does not verify.
                forged = header + "." + b64url(b'{"sub":"mallory"}') + "." + b64url(sig)
                with open(jws_path, "w") as f:
                    f.write(forged)
                p = run(["jose", "jws", "ver", "-i", jws_path, "-k", jwks_path], check=False)
                self.assertNotEqual(p.returncode, 0)


class Ed25519InteropTest(InteropTest):
    """The same checks for an Ed25519 key, which signs through pkcs11-tool instead."""
    key_types = ("ed25519",)

    # The libp11 0.4.12 engine cannot load Ed25519 keys (nor use any key of a token that
    # holds one): these two are not tests here; pkcs11-tool signs below instead.
    test_openssl_signs_through_the_engine_with_the_uri = None
    test_renewed_key_is_in_the_token_and_signs = None

    def test_ed25519_signs_with_pkcs11_tool(self):
        # The libp11 0.4.12 engine cannot load Ed25519 keys; pkcs11-tool can sign with one.
        m, body = self.keys["ed25519"]
        data = os.path.join(self.tmp, "ed.txt")
        sig = os.path.join(self.tmp, "ed.sig")
        with open(data, "w") as f:
            f.write("an Ed25519 message\n")
        run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.vault.label,
             "--login", "--pin", "env:CV_TEST_PIN", "--sign", "-m", "EDDSA", "--id",
             body["key"]["id"], "-i", data, "-o", sig],
            env=self.tool_env(CV_TEST_PIN=self.vault.pin))
        st, _, pem = self.vault.request("GET", "/v1/certificates/io-ed25519/export?format=public-key")
        pub = os.path.join(self.tmp, "ed.pub")
        with open(pub, "wb") as f:
            f.write(pem)
        p = run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in",
                 data, "-sigfile", sig])
        self.assertIn(b"Signature Verified Successfully", p.stdout)


if __name__ == "__main__":
    unittest.main()
