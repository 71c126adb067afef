"""Hostile and odd input (issue 6): hundreds of certificates, keys, PKCS#12 files and request
bodies, each answered with a 4xx and a clear code or a success, never a 5xx, a crash, a
sanitizer report (the harness checks certvaultd's exit and log) or a leftover key object.

The corpus is made fresh each run (cv-testcert, openssl and byte-level mutations with a fixed
seed, so a failure names an input that can be made again), plus the committed files under
tests/corpus/ that are slow to make (an RSA-16384 key)."""

import base64
import json
import os
import random
import subprocess

from harness import BUILD, TESTCERT, VaultTestCase, b64, run

TESTP12 = os.path.join(BUILD, "tests", "cv-testp12")
CORPUS = os.path.join(os.path.dirname(__file__), "..", "corpus")
SEED = 20261201


class Case:
    """One input: a JSON body (or raw bytes with a content type) for POST /v1/certificates."""

    def __init__(self, label, body=None, raw=None, ctype="application/json"):
        self.label, self.body, self.raw, self.ctype = label, body, raw, ctype


class CorpusTest(VaultTestCase):

    def make(self, name, *args):
        cert, key = os.path.join(self.tmp, name + ".crt"), os.path.join(self.tmp, name + ".key")
        run([TESTCERT, "--cert-out", cert, "--key-out", key] + list(args))
        with open(cert, "rb") as f, open(key, "rb") as g:
            return f.read(), g.read(), cert, key

    def der(self, pem_path):
        return run(["openssl", "x509", "-in", pem_path, "-outform", "DER"]).stdout

    def pem_of(self, der):
        body = base64.encodebytes(der).decode()
        return "-----BEGIN CERTIFICATE-----\n%s-----END CERTIFICATE-----\n" % body

    def cases(self):
        rnd = random.Random(SEED)
        out = []
        n = [0]

        def add(label, cert, key, **extra):
            n[0] += 1
            body = {"name": "c%d" % n[0], "certificate": cert, "private_key": key}
            body.update(extra)
            out.append(Case(label, body))

        # Dates around the edges.
        for label, args in (("expired by one second", ["--not-after", "-1"]),
                            ("not yet valid by one second", ["--not-before", "1"]),
                            ("UTCTime end 2049-12-31", ["--not-after", "@2524607999"]),
                            ("GeneralizedTime end 2050-01-01", ["--not-after", "@2524608000"]),
                            ("GeneralizedTime start 2050", ["--not-before", "@2524608000",
                                                            "--not-after", "@2556144000"]),
                            ("end before start", ["--not-before", "-10", "--not-after", "-20"]),
                            ("year 9999", ["--not-after", "@253402300799"])):
            c, k, _, _ = self.make("d%d" % len(out), "--san", "d.example.com", *args)
            add(label, c.decode(), k.decode())
        # Keys certvault does not take, and some it does in odd forms.
        for kt in ("rsa1024", "secp256k1", "ed448", "ed25519", "p521"):
            c, k, _, _ = self.make("k" + kt, "--key", kt, "--san", "k.example.com")
            add("key " + kt, c.decode(), k.decode())
        path = os.path.join(CORPUS, "rsa16384.key")
        c16 = os.path.join(self.tmp, "rsa16384.crt")
        run(["openssl", "req", "-new", "-x509", "-key", path, "-subj", "/CN=big.example.com",
             "-days", "30", "-out", c16])
        with open(c16) as f, open(path) as g:
            add("key rsa16384", f.read(), g.read())
        ek, ec = os.path.join(self.tmp, "explicit.key"), os.path.join(self.tmp, "explicit.crt")
        run(["openssl", "ecparam", "-name", "prime256v1", "-param_enc", "explicit", "-genkey",
             "-noout", "-out", ek])
        run(["openssl", "req", "-new", "-x509", "-key", ek, "-subj", "/CN=explicit.example.com",
             "-days", "30", "-out", ec])
        with open(ec) as f, open(ek) as g:
            add("explicit EC parameters", f.read(), g.read())
        # Subjects, serials, SANs.
        c, k, _, _ = self.make("nosubj", "--san", "empty-subject.example.com")
        add("empty subject", c.decode(), k.decode())
        c, k, _, _ = self.make("nonames")
        add("no subject and no SAN", c.decode(), k.decode())
        c, k, cp, _ = self.make("nul", "--san", "nulxnul.example.com")
        der = self.der(cp)
        add("NUL inside a SAN", self.pem_of(der.replace(b"nulxnul", b"nul\x00nul")), k.decode())
        nk = os.path.join(self.tmp, "neg.key")
        nc = os.path.join(self.tmp, "neg.crt")
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", nk])
        neg = subprocess.run(["openssl", "req", "-new", "-x509", "-key", nk, "-subj",
                              "/CN=neg.example.com", "-days", "30", "-set_serial", "-5",
                              "-out", nc], capture_output=True)
        if neg.returncode == 0:
            with open(nc) as f, open(nk) as g:
                add("negative serial", f.read(), g.read())
        many = ",".join("s%d.example.com" % i for i in range(1100))
        c, k, _, _ = self.make("manysans", "--san", many)
        add("1100 SANs", c.decode(), k.decode())
        # The good pair every mutation starts from.
        good_c, good_k, good_cp, good_kp = self.make("good", "--key", "rsa2048", "--san",
                                                     "good.example.com")
        good_der = self.der(good_cp)
        add("the good pair", good_c.decode(), good_k.decode())
        add("PEM with junk around it", "junk\x01\x02 before\n" + good_c.decode() + "\nafter",
            "garbage\n" + good_k.decode() + "\x7f trailing")
        add("two certificates in certificate", (good_c + good_c).decode(), good_k.decode())
        add("key in the certificate field", good_k.decode(), good_k.decode())
        add("certificate in the key field", good_c.decode(), good_c.decode())
        add("empty strings", "", "")
        add("whitespace only", " \n\t ", "\n")
        add("base64 DER", b64(good_der), b64(self.key_der(good_kp)), encoding="base64")
        add("base64 DER called PEM", b64(good_der), b64(self.key_der(good_kp)))
        add("PEM called base64", good_c.decode(), good_k.decode(), encoding="base64")
        # PKCS#12: wrong password, no password, two keys, garbage.
        p12 = os.path.join(self.tmp, "good.p12")
        run(["openssl", "pkcs12", "-export", "-out", p12, "-inkey", good_kp, "-in", good_cp,
             "-passout", "pass:right"])
        with open(p12, "rb") as f:
            p12_bytes = f.read()
        other_c, other_k, other_cp, other_kp = self.make("other", "--san", "o.example.com")
        two = os.path.join(self.tmp, "two.p12")
        run([TESTP12, "--out", two, "--password", "pw", "--key", good_kp, "--key", other_kp,
             "--cert", good_cp])
        with open(two, "rb") as f:
            two_bytes = f.read()
        for label, data, pw in (("PKCS#12 wrong password", p12_bytes, "wrong"),
                                ("PKCS#12 no password", p12_bytes, None),
                                ("PKCS#12 two keys", two_bytes, "pw"),
                                ("PKCS#12 cut in half", p12_bytes[:len(p12_bytes) // 2], "right"),
                                ("PKCS#12 that is a certificate", good_der, "right")):
            n[0] += 1
            body = {"name": "c%d" % n[0], "pkcs12": b64(data)}
            if pw is not None:
                body["password"] = pw
            out.append(Case(label, body))
        add("key of another certificate", good_c.decode(), other_k.decode())
        # Byte-level mutations of the DER certificate and the DER key: flips and cuts.
        key_der = self.key_der(good_kp)
        for i in range(120):
            d = bytearray(good_der)
            for _ in range(rnd.randint(1, 4)):
                d[rnd.randrange(len(d))] = rnd.randrange(256)
            add("certificate with bytes changed #%d" % i, b64(bytes(d)), b64(key_der),
                encoding="base64")
        for i in range(60):
            cut = rnd.randrange(1, len(good_der))
            add("certificate cut at %d" % cut, b64(good_der[:cut]), b64(key_der),
                encoding="base64")
        for i in range(60):
            d = bytearray(key_der)
            for _ in range(rnd.randint(1, 3)):
                d[rnd.randrange(len(d))] = rnd.randrange(256)
            add("key with bytes changed #%d" % i, b64(good_der), b64(bytes(d)),
                encoding="base64")
        for i in range(30):
            cut = rnd.randrange(1, len(key_der))
            add("key cut at %d" % cut, b64(good_der), b64(key_der[:cut]), encoding="base64")
        for i in range(40):
            d = bytearray(p12_bytes)
            for _ in range(rnd.randint(1, 3)):
                d[rnd.randrange(len(d))] = rnd.randrange(256)
            n[0] += 1
            out.append(Case("PKCS#12 with bytes changed #%d" % i,
                            {"name": "c%d" % n[0], "pkcs12": b64(bytes(d)),
                             "password": "right"}))
        # Bodies that are not what the API takes.
        for label, raw in (("deep JSON", b"[" * 100000 + b"]" * 100000),
                           ("deep object", b'{"a":' * 5000 + b"1" + b"}" * 5000),
                           ("not UTF-8", b'{"name":"\xff\xfe","certificate":"x"}'),
                           ("NUL in JSON", b'{"name":"a\x00b"}'),
                           ("escaped NUL in a name", b'{"name":"a\\u0000b","certificate":"x",'
                                                     b'"private_key":"y"}'),
                           ("duplicate keys", b'{"name":"a","name":"b"}'),
                           ("array", b"[]"), ("number", b"1e999999"), ("empty", b""),
                           ("huge number", b'{"name":"a","certificate":1e400}'),
                           ("lone surrogate", b'{"name":"\\ud800"}'),
                           ("wrong types", b'{"name":["a"],"certificate":{},"private_key":null}')):
            out.append(Case(label, raw=raw))
        for i in range(40):
            body = bytearray(json.dumps({"name": "m%d" % i, "certificate": good_c.decode(),
                                         "private_key": good_k.decode()}).encode())
            for _ in range(rnd.randint(1, 6)):
                body[rnd.randrange(len(body))] = rnd.randrange(256)
            out.append(Case("JSON body with bytes changed #%d" % i, raw=bytes(body)))
        for i in range(30):
            boundary = "b%d" % i
            body = (("--%s\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nf%d\r\n"
                     "--%s\r\nContent-Disposition: form-data; name=\"certificate\"; "
                     "filename=\"x\"\r\n\r\n" % (boundary, i, boundary)).encode() +
                    p12_bytes + ("\r\n--%s--\r\n" % boundary).encode())
            b = bytearray(body)
            for _ in range(rnd.randint(1, 4)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            out.append(Case("upload with bytes changed #%d" % i, raw=bytes(b),
                            ctype="multipart/form-data; boundary=" + boundary))
        return out

    def key_der(self, path):
        return run(["openssl", "pkey", "-in", path, "-outform", "DER"]).stdout

    def test_corpus(self):
        cases = self.cases()
        self.assertGreater(len(cases), 400)
        created = 0
        outcomes = {}
        for case in cases:
            if case.body is not None:
                st, _, resp = self.vault.request("POST", "/v1/certificates", case.body)
            else:
                st, _, resp = self.vault.request("POST", "/v1/certificates",
                                                 headers={"Content-Type": case.ctype},
                                                 raw=case.raw)
            with self.subTest(case=case.label):
                self.assertLess(st, 500, "%s: %s" % (case.label, resp))
                self.assertIsInstance(resp, dict, case.label)
                if st == 201:
                    created += 1
                else:
                    self.assertGreaterEqual(st, 400)
                    self.assertRegex(resp["error"]["code"], r"^[a-z_]+$")
                    self.assertTrue(resp["error"]["message"])
                outcomes[case.label] = st if st == 201 else resp["error"]["code"]
        # The inputs the issue names get the answers a security team expects.
        want = {"expired by one second": "expired", "key rsa1024": "unsupported_key",
                "key rsa16384": "unsupported_key",
                "key secp256k1": "unsupported_key", "key ed448": "unsupported_key",
                "explicit EC parameters": "unsupported_key", "NUL inside a SAN": "bad_encoding",
                "PKCS#12 wrong password": "bad_password", "PKCS#12 two keys": "bad_encoding",
                "the good pair": 201, "PEM with junk around it": 201,
                "UTCTime end 2049-12-31": 201, "GeneralizedTime end 2050-01-01": 201,
                "GeneralizedTime start 2050": "not_yet_valid",
                "key of another certificate": "key_mismatch", "deep JSON": "bad_request",
                "1100 SANs": "limit_exceeded"}
        for label, answer in want.items():
            self.assertEqual(outcomes.get(label), answer, label)
        # Exactly one key pair in the token per import that succeeded, nothing else left.
        st, _, body = self.vault.request("GET", "/v1/certificates/summary")
        self.assertEqual(body["total"], created)
        self.assertEqual(self.vault.count_token_objects(), created)
        self.assertEqual(self.vault.count_token_objects("Public Key Object"), created)
        st, _, health = self.vault.request("GET", "/v1/health")
        self.assertEqual(st, 200, health)


if __name__ == "__main__":
    import unittest
    unittest.main()
