"""Integration tests of revocation: a CA made with `openssl ca` (a root and an issuing
intermediate) revokes a leaf; its CRL added to the truststore refuses the revoked leaf at
import, renew and replace and lets a good one in; a stale CRL cannot tell (refused by default,
accepted with a warning under revocation.unknown = warn); online, a real `openssl ocsp`
responder and a CRL served by python's http.server on 127.0.0.1 answer for leaves that name
them, and a responder that is gone cannot tell."""

import os
import socket
import subprocess
import sys
import time
import unittest

from harness import VaultTestCase, b64, run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def wait_listening(port, proc, what):
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError("%s exited %d" % (what, proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("%s did not listen on %d" % (what, port))


CNF = """
[ca]
default_ca = issuing

[issuing]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/new
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/inter.crt
private_key = $dir/inter.key
default_md = sha256
default_days = 90
default_crl_days = 7
policy = any
unique_subject = no
copy_extensions = none

[any]
commonName = supplied

[req]
distinguished_name = dn
[dn]

[root_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[inter_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[plain]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
subjectAltName = DNS:$ENV::CV_CN

[online]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
subjectAltName = DNS:$ENV::CV_CN
authorityInfoAccess = OCSP;URI:http://127.0.0.1:{ocsp_port}/
crlDistributionPoints = URI:http://127.0.0.1:{http_port}/inter.crl

[ocsp_only]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
subjectAltName = DNS:$ENV::CV_CN
authorityInfoAccess = OCSP;URI:http://127.0.0.1:{ocsp_port}/

[cdp_only]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
subjectAltName = DNS:$ENV::CV_CN
crlDistributionPoints = URI:http://127.0.0.1:{http_port}/inter.crl

[responder]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = OCSPSigning
"""


class Leaf:
    def __init__(self, name, cert, key, chain):
        self.name, self.cert, self.key, self.chain = name, cert, key, chain

    def body(self, **extra):
        b = {"certificate": self.cert, "private_key": self.key, "chain": self.chain}
        b.update(extra)
        return b


class Ca:
    """A root and an issuing intermediate run with `openssl ca` in dir."""

    def __init__(self, dir, name, ocsp_port=1, http_port=1):
        self.dir = dir
        os.makedirs(os.path.join(dir, "new"))
        open(os.path.join(dir, "index.txt"), "w").close()
        with open(os.path.join(dir, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(dir, "crlnumber"), "w") as f:
            f.write("01\n")
        self.cnf = os.path.join(dir, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CNF.format(dir=dir, ocsp_port=ocsp_port, http_port=http_port))
        self.path = lambda n: os.path.join(dir, n)
        self.openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.path("root.key"),
                     "-out", self.path("root.crt"), "-subj", "/CN=%s Root" % name,
                     "-days", "365", "-extensions", "root_ext")
        self.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", self.path("inter.key"), "-out",
                     self.path("inter.csr"), "-subj", "/CN=%s Issuing CA" % name)
        self.openssl("x509", "-req", "-in", self.path("inter.csr"), "-CA",
                     self.path("root.crt"), "-CAkey", self.path("root.key"),
                     "-set_serial", "7", "-days", "365", "-extfile", self.cnf,
                     "-extensions", "inter_ext", "-out", self.path("inter.crt"))
        self.root = self.read("root.crt")
        self.inter = self.read("inter.crt")

    def openssl(self, *args, env=None):
        extra = ["-config", self.cnf] if args[0] in ("req", "ca") else []
        e = dict(os.environ, CV_CN="unused.example")
        e.update(env or {})
        return run(["openssl", args[0]] + extra + list(args[1:]), env=e)

    def read(self, name):
        with open(self.path(name)) as f:
            return f.read()

    def leaf(self, name, ext="plain"):
        cn = name + ".example"
        self.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", self.path(name + ".key"), "-out",
                     self.path(name + ".csr"), "-subj", "/CN=" + cn)
        start = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() - 3600))
        self.openssl("ca", "-batch", "-notext", "-startdate", start, "-extensions", ext,
                     "-in", self.path(name + ".csr"), "-out", self.path(name + ".crt"),
                     env={"CV_CN": cn})
        return Leaf(name, self.read(name + ".crt"), self.read(name + ".key"), self.inter)

    def revoke(self, leaf):
        self.openssl("ca", "-revoke", self.path(leaf.name + ".crt"), "-crl_reason",
                     "keyCompromise")

    def crl(self, out="inter.crl", *dates):
        self.openssl("ca", "-gencrl", "-out", self.path(out + ".pem"), *dates)
        self.openssl("crl", "-in", self.path(out + ".pem"), "-outform", "DER", "-out",
                     self.path(out))
        return self.read(out + ".pem")


def stale_dates():
    fmt = "%Y%m%d%H%M%SZ"
    return ("-crl_lastupdate", time.strftime(fmt, time.gmtime(time.time() - 3 * 86400)),
            "-crl_nextupdate", time.strftime(fmt, time.gmtime(time.time() - 86400)))


class OfflineTest(VaultTestCase):
    """CRLs in the truststore, with the default settings (online off, unknown refused)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ca = Ca(os.path.join(cls.tmp, "ca"), "Offline")
        cls.good = cls.ca.leaf("good")
        cls.bad = cls.ca.leaf("bad")
        cls.ca.revoke(cls.bad)
        cls.crl_pem = cls.ca.crl()
        cls.old = Ca(os.path.join(cls.tmp, "old"), "Stale")
        cls.old_leaf = cls.old.leaf("oldleaf")
        cls.stale_pem = cls.old.crl("stale.crl", *stale_dates())

    def trust(self, alias, pem):
        st, _, body = self.vault.request("POST", "/v1/truststore",
                                         {"alias": alias, "certificate": pem})
        self.assertEqual(st, 201, body)

    def add_crl(self, pem, **extra):
        return self.vault.request("POST", "/v1/truststore/crls", dict(crl=pem, **extra))

    def test_crl_decides_import_renew_replace(self):
        # No CA yet: a CRL nobody in the truststore issued is refused.
        self.assertError(self.add_crl(self.crl_pem), 422, "unknown_issuer")
        self.trust("off-root", self.ca.root)
        self.trust("off-inter", self.ca.inter)
        st, _, crl = self.add_crl(self.crl_pem)
        self.assertEqual(st, 201, crl)
        self.assertEqual(crl["alias"], "off-inter")
        self.assertEqual(crl["issuer"], "CN=Offline Issuing CA")
        self.assertEqual((crl["revoked_count"], crl["status"], crl["number"]), (1, "current", "1"))
        st, _, listed = self.vault.request("GET", "/v1/truststore/crls")
        self.assertEqual(listed["items"], [crl])
        # The same CRL again is not newer.
        self.assertError(self.add_crl(self.crl_pem), 409, "same_certificate")

        msg = self.assertError(self.vault.request("POST", "/v1/certificates",
                                                  self.bad.body(name="bad")), 422, "revoked")
        self.assertIn("crl:CN=Offline Issuing CA", msg)
        self.assertIn("reason keyCompromise", msg)  # RFC 5280 names, not codes
        st, _, body = self.vault.request("POST", "/v1/certificates", self.good.body(name="good"))
        self.assertEqual(st, 201, body)
        self.assertEqual(body["revocation"], {"status": "good",
                                              "source": "crl:CN=Offline Issuing CA",
                                              "detail": body["revocation"]["detail"],
                                              "checked_at": body["revocation"]["checked_at"]})
        # The details keep the check that let it in, with its time.
        st, _, details = self.vault.request("GET", "/v1/certificates/good")
        self.assertEqual(details["revocation"], body["revocation"])
        self.assertNotIn("warnings", body)
        # Replace and renew check the new certificate too.
        self.assertError(self.vault.request("POST", "/v1/certificates/good/replace",
                                            self.bad.body()), 422, "revoked")
        st, _, body = self.vault.request("PUT", "/v1/services/web",
                                         {"environment": "test", "domains": ["good.example"]})
        self.assertIn(st, (200, 201), body)
        st, _, body = self.vault.request("PUT", "/v1/services/web/certificate",
                                         {"certificate": "good"})
        self.assertEqual(st, 200, body)
        good2 = self.ca.leaf("good")  # the same name, a new key and serial
        self.assertError(self.vault.request("POST", "/v1/certificates/good/renew",
                                            self.bad.body()), 422, "revoked")
        st, _, body = self.vault.request("POST", "/v1/certificates/good/renew", good2.body())
        self.assertEqual(st, 200, body)
        self.assertEqual(body["revocation"]["status"], "good")

        # The audit trail holds the CRL's addition and the refusals.
        st, _, audit = self.vault.request("GET", "/v1/audit?action=truststore.crl_add")
        outcomes = [(r["target"], r.get("outcome"), r.get("error")) for r in audit["items"]]
        self.assertEqual(len(outcomes), 3, audit)
        st, _, audit = self.vault.request("GET", "/v1/audit?target=bad")
        self.assertTrue(any(r.get("error") == "revoked" for r in audit["items"]), audit)

        # Without the CRL nothing tells: the revoked leaf is not checked, and let in.
        st, _, body = self.vault.request("DELETE", "/v1/truststore/crls/off-inter")
        self.assertEqual(st, 200, body)
        self.assertError(self.vault.request("DELETE", "/v1/truststore/crls/off-inter"), 404,
                         "not_found")
        st, _, body = self.vault.request("POST", "/v1/certificates", self.bad.body(name="bad"))
        self.assertEqual(st, 201, body)
        self.assertEqual(body["revocation"]["status"], "not_checked")
        self.assertIsNone(body["revocation"]["source"])
        self.assertIn("no source", body["revocation"]["detail"])

    def test_stale_crl_cannot_tell(self):
        self.trust("stale-inter", self.old.inter)
        st, _, crl = self.add_crl(self.stale_pem)
        self.assertEqual(st, 201, crl)
        self.assertEqual(crl["status"], "stale")
        msg = self.assertError(self.vault.request("POST", "/v1/certificates",
                                                  self.old_leaf.body(name="old")),
                               422, "revocation_unknown")
        self.assertIn("stale", msg)
        self.assertIn("crl:CN=Stale Issuing CA", msg)

    def test_self_signed_not_checked(self):
        m = self.material("selfsigned", cn="self.example")
        st, _, body = self.vault.import_cert("selfsigned", m)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["revocation"]["status"], "not_checked")

    def test_crl_encodings_and_alias_reserved(self):
        self.assertError(self.add_crl("not a crl"), 400, "bad_encoding")
        self.assertError(self.vault.request("POST", "/v1/truststore",
                                            {"alias": "crls", "certificate": self.ca.root}),
                         400, "invalid_name")


class WarnTest(VaultTestCase):
    """revocation.unknown = warn: a stale CRL lets the certificate in, saying so."""

    settings = {"CERTVAULT_REVOCATION_UNKNOWN": "warn"}

    def test_stale_crl_warns(self):
        ca = Ca(os.path.join(self.tmp, "ca"), "Warn")
        leaf = ca.leaf("warned")
        stale = ca.crl("stale.crl", *stale_dates())
        st, _, body = self.vault.request("POST", "/v1/truststore",
                                         {"alias": "warn-inter", "certificate": ca.inter})
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("POST", "/v1/truststore/crls",
                                         {"crl": b64(read_bytes(ca.path("stale.crl"))),
                                          "encoding": "base64"})
        self.assertEqual(st, 201, body)
        self.assertTrue(stale)
        st, _, body = self.vault.request("POST", "/v1/certificates", leaf.body(name="warned"))
        self.assertEqual(st, 201, body)
        self.assertEqual(body["revocation"]["status"], "unknown")
        self.assertEqual(body["revocation"]["source"], "crl:CN=Warn Issuing CA")
        self.assertIn("stale", body["warnings"][0])


class OnlineTest(VaultTestCase):
    """revocation.online: an openssl ocsp responder and a CRL over HTTP, on 127.0.0.1."""

    @classmethod
    def setUpClass(cls):
        # The responders are on loopback, which only a named network lets a fetch reach.
        cls.settings = {"CERTVAULT_REVOCATION_ONLINE": "true",
                        "CERTVAULT_REVOCATION_TIMEOUT_MS": "2000",
                        "CERTVAULT_REVOCATION_ALLOW_NETWORKS": "127.0.0.0/8"}
        super().setUpClass()
        cls.procs = []
        # The responders' ports are written into the certificates, so a port another process
        # took between free_port() and the responder's bind means a new CA on new ports.
        for attempt in range(5):
            if cls._start_responders(attempt):
                return
        raise AssertionError("openssl ocsp / http.server did not start on 5 pairs of ports")

    @classmethod
    def _start_responders(cls, attempt):
        cls.ocsp_port = free_port()
        cls.http_port = free_port()
        cls.ca = Ca(os.path.join(cls.tmp, "ca%d" % attempt), "Online", cls.ocsp_port,
                    cls.http_port)
        ca = cls.ca
        cls.good = ca.leaf("ongood", "online")
        cls.bad = ca.leaf("onbad", "online")
        cls.cdp_good = ca.leaf("cdpgood", "cdp_only")
        cls.cdp_bad = ca.leaf("cdpbad", "cdp_only")
        cls.ocsp_only = ca.leaf("ocsponly", "ocsp_only")
        cls.renewed = ca.leaf("ongood", "online")
        cls.good2 = ca.leaf("ongood2", "online")
        ca.revoke(cls.bad)
        ca.revoke(cls.cdp_bad)
        ca.crl()
        ca.leaf("responder", "responder")
        # openssl ocsp serves one connection at a time and never gives up on one that sends
        # nothing: it is not probed, its log says when it listens.
        ocsp_log = os.path.join(cls.tmp, "ocsp%d.log" % attempt)
        with open(ocsp_log, "wb") as log:
            cls.ocsp = subprocess.Popen(
                ["openssl", "ocsp", "-index", ca.path("index.txt"), "-port",
                 str(cls.ocsp_port), "-rsigner", ca.path("responder.crt"), "-rkey",
                 ca.path("responder.key"), "-CA", ca.path("inter.crt"), "-nmin", "10"],
                stdout=log, stderr=log)
        cls.procs.append(cls.ocsp)
        cls.http = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
             ca.dir, str(cls.http_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.procs.append(cls.http)
        deadline = time.time() + 10
        while b"waiting for OCSP client connections" not in read_bytes(ocsp_log):
            if cls.ocsp.poll() is not None:
                cls.http.kill()
                return False
            if time.time() > deadline:
                raise AssertionError("openssl ocsp did not start")
            time.sleep(0.05)
        try:
            wait_listening(cls.http_port, cls.http, "http.server")
        except AssertionError:
            if cls.http.poll() is None:
                raise
            cls.ocsp.kill()
            return False
        return True

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        super().tearDownClass()

    def imp(self, name, leaf):
        return self.vault.request("POST", "/v1/certificates", leaf.body(name=name))

    def test_1_ocsp_good_and_revoked(self):
        st, _, body = self.imp("ongood", self.good)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["revocation"]["status"], "good")
        self.assertEqual(body["revocation"]["source"], "ocsp:http://127.0.0.1:%d/" % self.ocsp_port)
        msg = self.assertError(self.imp("onbad", self.bad), 422, "revoked")
        self.assertIn("ocsp:http://127.0.0.1:%d/" % self.ocsp_port, msg)

    def test_2_crl_distribution_point(self):
        st, _, body = self.imp("cdpgood", self.cdp_good)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["revocation"]["status"], "good")
        url = "http://127.0.0.1:%d/inter.crl" % self.http_port
        self.assertEqual(body["revocation"]["source"], "crl:" + url)
        msg = self.assertError(self.imp("cdpbad", self.cdp_bad), 422, "revoked")
        self.assertIn("crl:" + url, msg)

    def test_3_replace_and_renew(self):
        self.assertError(self.vault.request("POST", "/v1/certificates/cdpgood/replace",
                                            self.bad.body()), 422, "revoked")
        st, _, body = self.vault.request("PUT", "/v1/services/on",
                                         {"environment": "test", "domains": ["ongood.example"]})
        self.assertIn(st, (200, 201), body)
        st, _, body = self.vault.request("PUT", "/v1/services/on/certificate",
                                         {"certificate": "ongood"})
        self.assertEqual(st, 200, body)
        st, _, body = self.vault.request("POST", "/v1/certificates/ongood/renew",
                                         self.renewed.body())
        self.assertEqual(st, 200, body)
        self.assertEqual(body["revocation"]["status"], "good")
        self.assertTrue(body["revocation"]["source"].startswith("ocsp:"))

    def test_9_responder_down_cannot_tell(self):
        self.ocsp.kill()
        self.ocsp.wait()
        started = time.time()
        resp = self.imp("ocsponly", self.ocsp_only)
        msg = self.assertError(resp, 422, "revocation_unknown")
        self.assertIn("ocsp:http://127.0.0.1:%d/" % self.ocsp_port, msg)
        self.assertLess(time.time() - started, 10)
        # The client is told it could not be fetched, not how (refused, reset, timed out):
        # that would tell open ports from closed. The log says how.
        self.assertIn("could not be fetched", msg)
        self.assertNotIn("refused", msg.lower())
        self.assertIn("%s: revocation fetch: ocsp:http://127.0.0.1:%d/: "
                      % (resp[1]["x-request-id"], self.ocsp_port), self.vault.log())
        # With a CRL distribution point too, the CRL answers.
        st, _, body = self.imp("ongood2", self.good2)
        self.assertEqual(st, 201, body)
        self.assertEqual(body["revocation"]["source"],
                         "crl:http://127.0.0.1:%d/inter.crl" % self.http_port)


class AddressPolicyTest(VaultTestCase):
    """Issue 16 item 7: an uploaded certificate names an OCSP responder and a CRL on
    loopback. With online checks on and no network allowed, certvaultd makes no connection
    there (a listener on 127.0.0.1 sees nothing), the client learns only that the check
    could not be done, and the log says why."""

    @classmethod
    def setUpClass(cls):
        cls.listener = socket.socket()
        cls.listener.bind(("127.0.0.1", 0))
        cls.listener.listen(8)
        port = cls.listener.getsockname()[1]
        cls.settings = {"CERTVAULT_REVOCATION_ONLINE": "true",
                        "CERTVAULT_REVOCATION_TIMEOUT_MS": "2000"}
        super().setUpClass()
        cls.ca = Ca(os.path.join(cls.tmp, "ca"), "Probe", port, port)
        cls.port = port

    @classmethod
    def tearDownClass(cls):
        cls.listener.close()
        super().tearDownClass()

    def assertNoConnection(self):
        self.listener.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            conn, _ = self.listener.accept()
            conn.close()

    def test_loopback_urls_refused_without_a_connection(self):
        leaf = self.ca.leaf("probe", "online")
        st, headers, body = self.vault.request("POST", "/v1/certificates",
                                               leaf.body(name="probe"))
        msg = self.assertError((st, headers, body), 422, "revocation_unknown")
        self.assertIn("could not be fetched", msg)
        for word in ("loopback", "127.0.0.1 is", "refused", "allow_networks"):
            self.assertNotIn(word, msg)
        self.assertNoConnection()
        log = self.vault.log()
        self.assertIn("%s: revocation fetch: ocsp:http://127.0.0.1:%d/" %
                      (headers["x-request-id"], self.port), log)
        self.assertIn("127.0.0.1 is a loopback address", log)
        self.assertIn("crl:http://127.0.0.1:%d/inter.crl" % self.port, log)
        self.assertEqual(self.vault.request("GET", "/v1/certificates/probe")[0], 404)

    def test_bad_allow_settings_stop_the_start(self):
        from harness import CERTVAULTD
        for var, value, said in (
                ("CERTVAULT_REVOCATION_ALLOW_NETWORKS", "10.1.2.3/8",
                 "revocation.allow_networks: \"10.1.2.3/8\" has bits set past its prefix"),
                ("CERTVAULT_TRUSTSTORE_ALLOW_NETWORKS", "intranet",
                 "truststore.allow_networks: \"intranet\" is not an IPv4 or IPv6 address"),
                ("CERTVAULT_REVOCATION_ALLOW_PORTS", "8080-8090",
                 "revocation.allow_ports: \"8080-8090\" is not a port")):
            with self.subTest(var=var):
                p = run([CERTVAULTD], env=self.vault.env({var: value}), check=False)
                self.assertEqual(p.returncode, 1)
                self.assertIn(said, p.stderr.decode())

    def test_no_fetch_without_the_issuer(self):
        """Without the issuer in the chain or the truststore nothing could verify the
        answer: nothing is fetched at all."""
        leaf = self.ca.leaf("orphan", "online")
        body = leaf.body(name="orphan")
        del body["chain"]
        msg = self.assertError(self.vault.request("POST", "/v1/certificates", body),
                               422, "revocation_unknown")
        self.assertIn("neither in the chain nor in the truststore", msg)
        self.assertNoConnection()


if __name__ == "__main__":
    unittest.main()
