"""The web console (issue 12): its files and headers, sessions and CSRF over HTTP, and every
screen and flow in a real headless Chromium (tests/browser/console.mjs, driven by
playwright-core) against a real certvaultd with a fresh SoftHSM token and SQLite file.

scripts/deps installs Debian's chromium and the pinned playwright-core; without them the
browser test fails rather than skips: the console is part of the product."""

import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading

from harness import BUILD, Material, VaultTestCase, run

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
CHROMIUM = os.environ.get("CV_CHROMIUM", "/usr/bin/chromium")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConsoleTest(VaultTestCase):
    settings = {"CERTVAULT_CONSOLE_SESSION_IDLE_TIMEOUT": "600"}

    def raw(self, method, path, body=None, headers=None):
        """A request with exactly these headers (no token unless given)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.vault.port, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        hdrs = resp.getheaders()
        conn.close()
        return resp.status, hdrs, data

    def sign_in(self, token):
        st, hdrs, data = self.raw("POST", "/v1/session", json.dumps({"token": token}),
                                  {"Content-Type": "application/json"})
        self.assertEqual(st, 201, data)
        [cookie] = [v for k, v in hdrs if k.lower() == "set-cookie"]
        return cookie, json.loads(data)

    def token(self, name, role):
        st, _, body = self.vault.request("POST", "/v1/tokens", {"name": name, "role": role})
        self.assertEqual(st, 201, body)
        return body

    def test_files_and_headers(self):
        st, hdrs, _ = self.raw("GET", "/")
        h = {k.lower(): v for k, v in hdrs}
        self.assertEqual((st, h["location"]), (302, "/console/"))
        st, hdrs, index = self.raw("GET", "/console/")
        h = {k.lower(): v for k, v in hdrs}
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/html"))
        self.assertEqual(h["cache-control"], "no-store")
        csp = h["content-security-policy"]
        self.assertIn("default-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotIn("unsafe-eval", csp)
        self.assertEqual(h["x-content-type-options"], "nosniff")
        self.assertEqual(h["referrer-policy"], "no-referrer")
        # No inline script or style, nothing from another origin.
        text = index.decode()
        self.assertNotRegex(text, r"<script>|<style|style=|\son[a-z]+=")
        self.assertNotRegex(text, r"(src|href)=\"(https?:)?//")
        assets = re.findall(r"(?:src|href)=\"([a-z]+\.[0-9a-f]{12}\.[a-z]+)\"", text)
        self.assertEqual(len(assets), 4, text)  # icon, style, app.js, deleted.js
        for a in assets:
            st, hdrs, body = self.raw("GET", "/console/" + a)
            h = {k.lower(): v for k, v in hdrs}
            self.assertEqual(st, 200, a)
            self.assertIn("immutable", h["cache-control"])
            self.assertIn("default-src 'self'", h["content-security-policy"])
            self.assertNotIn(b"eval(", body)
            self.assertNotIn(b"innerHTML", body)
        st, _, _ = self.raw("GET", "/console/app.000000000000.js")
        self.assertEqual(st, 404)
        st, _, _ = self.raw("GET", "/console/index.html")
        self.assertEqual(st, 404)

    def test_sessions_and_csrf(self):
        op = self.token("c-op", "operator")
        au = self.token("c-au", "auditor")
        cookie, s = self.sign_in(op["token"])
        self.assertRegex(cookie, r"^cv_session=cvs_[0-9a-f]{16}_[A-Za-z0-9_-]{43}; Path=/; "
                                 r"Max-Age=\d+; HttpOnly; SameSite=Strict$")
        self.assertNotIn("Secure", cookie)  # plain HTTP here; HTTPS adds it (and __Host-)
        self.assertEqual((s["name"], s["role"]), ("c-op", "operator"))
        value = cookie.split(";")[0]
        # cv_session=cvs_<id>_<secret>: the secret is base64url, "_" included.
        secret = value.split("_", 3)[3]
        self.assertEqual(len(secret), 43)
        # The secret is stored only as a hash; the token was not stored either.
        for f in ("certvault.db", "certvault.db-wal"):
            with open(os.path.join(self.tmp, f), "rb") as fh:
                data = fh.read()
            self.assertNotIn(secret.encode(), data)
            self.assertNotIn(op["token"][-43:].encode(), data)
        ck = {"Cookie": value}
        # The session reads as its token would.
        st, _, body = self.raw("GET", "/v1/certificates", headers=ck)
        self.assertEqual(st, 200, body)
        st, _, body = self.raw("GET", "/v1/session", headers=ck)
        self.assertEqual(json.loads(body)["csrf_token"], s["csrf_token"])
        # No cookie: 401 on every API route a console uses; GET /v1/session says signed out.
        for path in ("/v1/certificates", "/v1/certificates/summary", "/v1/services",
                     "/v1/truststore", "/v1/me"):
            st, _, _ = self.raw("GET", path)
            self.assertEqual(st, 401, path)
        st, _, body = self.raw("GET", "/v1/session")
        self.assertEqual((st, json.loads(body)["signed_in"]), (200, False))
        # A change without the CSRF header, or with a wrong one, is refused and changes
        # nothing: what a form or script of another site would send.
        m = Material(self.tmp, "csrf", san="csrf.example.com")
        body = json.dumps({"name": "csrf", "certificate": m.cert, "private_key": m.key})
        for extra in ({}, {"X-CSRF-Token": "x" * 43}, {"X-CSRF-Token": ""}):
            st, _, resp = self.raw("POST", "/v1/certificates", body, dict(
                ck, **extra, **{"Content-Type": "application/json",
                                "Origin": "http://evil.example"}))
            self.assertEqual(st, 403, resp)
            self.assertIn("X-CSRF-Token", json.loads(resp)["error"]["message"])
        form = ("--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ncsrf\r\n--b\r\n"
                "Content-Disposition: form-data; name=\"certificate\"; filename=\"c.pem\"\r\n\r\n"
                + m.cert + m.key + "\r\n--b--\r\n")
        st, _, _ = self.raw("POST", "/v1/certificates", form,
                            dict(ck, **{"Content-Type": "multipart/form-data; boundary=b"}))
        self.assertEqual(st, 403)
        st, _, _ = self.vault.request("GET", "/v1/certificates/csrf")
        self.assertEqual(st, 404)
        # With it: done, and recorded under the token's name.
        st, _, resp = self.raw("POST", "/v1/certificates", body, dict(
            ck, **{"Content-Type": "application/json", "X-CSRF-Token": s["csrf_token"]}))
        self.assertEqual(st, 201, resp)
        # An auditor's session changes nothing, with its CSRF token or without.
        acookie, a = self.sign_in(au["token"])
        ack = {"Cookie": acookie.split(";")[0], "X-CSRF-Token": a["csrf_token"],
               "Content-Type": "application/json"}
        for method, path, b in (("POST", "/v1/certificates", body.replace("csrf", "csrf2")),
                                ("DELETE", "/v1/certificates/csrf?confirm=delete", None),
                                ("PATCH", "/v1/certificates/csrf", '{"description":"x"}'),
                                ("PUT", "/v1/services/s", '{"environment":"e","domains":["a.b"]}'),
                                ("POST", "/v1/tokens", '{"name":"x","role":"admin"}'),
                                ("POST", "/v1/jwks", '{"certificate":"csrf"}'),
                                ("DELETE", "/v1/tokens/" + au["id"], None)):
            st, _, resp = self.raw(method, path, b, ack)
            self.assertEqual(st, 403, (method, path, resp))
        st, _, d = self.vault.request("GET", "/v1/certificates/csrf")
        self.assertEqual((st, d["description"], d["jwk_count"]), (200, "", 0))
        # Sign-out ends it on the server: the same cookie is then refused.
        st, hdrs, _ = self.raw("DELETE", "/v1/session", None,
                               dict(ck, **{"X-CSRF-Token": s["csrf_token"]}))
        self.assertEqual(st, 204)
        self.assertIn("Max-Age=0", dict((k.lower(), v) for k, v in hdrs)["set-cookie"])
        st, _, _ = self.raw("GET", "/v1/certificates", headers=ck)
        self.assertEqual(st, 401)
        # Revoking the token ends its sessions at once.
        st, _, _ = self.raw("GET", "/v1/certificates", headers={"Cookie": ack["Cookie"]})
        self.assertEqual(st, 200)
        self.vault.request("DELETE", "/v1/tokens/" + au["id"])
        st, _, resp = self.raw("GET", "/v1/certificates", headers={"Cookie": ack["Cookie"]})
        self.assertEqual(st, 401)
        self.assertIn("revoked", json.loads(resp)["error"]["message"])
        # Refused sign-ins: 401 and nothing set.
        # (Repeats from one address within audit.repeat_interval are counted into the first
        # record: the one naming the token id it claimed comes first.)
        for bad in (op["token"][:-1] + ("B" if op["token"][-1] == "A" else "A"), "nope",
                    au["token"]):
            st, hdrs, _ = self.raw("POST", "/v1/session", json.dumps({"token": bad}),
                                   {"Content-Type": "application/json"})
            self.assertEqual(st, 401)
            self.assertNotIn("set-cookie", [k.lower() for k, _ in hdrs])
        # A form cannot sign anyone in (JSON only).
        st, _, _ = self.raw("POST", "/v1/session", "token=" + op["token"],
                            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 415)
        # Sign-in, refused sign-in and sign-out are in the audit trail, never a secret.
        st, _, audit = self.vault.request("GET", "/v1/audit?action=session.sign_in&limit=100")
        outcomes = [(r["actor"]["name"], r["outcome"]) for r in audit["items"]]
        self.assertIn(("c-op", "done"), outcomes)
        self.assertIn(("anonymous", "refused"), outcomes)
        self.assertIn(op["id"], [r["target"] for r in audit["items"] if r["outcome"] == "refused"])
        st, _, audit = self.vault.request("GET", "/v1/audit?action=session.sign_out")
        self.assertEqual([r["actor"]["name"] for r in audit["items"]], ["c-op"])
        self.assertNotIn(secret, json.dumps(audit))

    def test_session_idle_timeout(self):
        """A session idle past console.session_idle_timeout is refused: here by a clock moved
        forward in the database (the idle time is checked against last_seen)."""
        cookie, _ = self.sign_in(self.vault.admin_token)
        ck = {"Cookie": cookie.split(";")[0]}
        st, _, _ = self.raw("GET", "/v1/certificates", headers=ck)
        self.assertEqual(st, 200)
        sid = cookie.split("_")[2]
        run(["sqlite3", self.vault.db, "UPDATE console_sessions SET last_seen = last_seen - 601"
             " WHERE id = '%s'" % sid])
        st, _, resp = self.raw("GET", "/v1/certificates", headers=ck)
        self.assertEqual(st, 401, resp)
        cookie, _ = self.sign_in(self.vault.admin_token)
        sid = cookie.split("_")[2]
        run(["sqlite3", self.vault.db, "UPDATE console_sessions SET expires_at = created_at"
             " WHERE id = '%s'" % sid])
        st, _, _ = self.raw("GET", "/v1/certificates", headers={"Cookie": cookie.split(";")[0]})
        self.assertEqual(st, 401)


class HttpsSessionTest(VaultTestCase):
    """Over the HTTPS listener the cookie is Secure and __Host- prefixed."""

    def test_cookie_over_https(self):
        import re
        import ssl
        m = Material(self.tmp, "console-tls", cn="localhost", san="localhost")
        st, _, body = self.vault.import_cert("console-tls", m)
        self.assertEqual(st, 201, body)
        self.vault.stop()
        self.vault.start({"CERTVAULT_SERVER_TLS_CERTIFICATE": "console-tls",
                          "CERTVAULT_SERVER_TLS_PORT": "0"})
        # The HTTPS line may follow the plain one the harness waits for.
        import time
        deadline = time.time() + 30
        while not re.search(r"listening on https://", self.vault.log()) and time.time() < deadline:
            time.sleep(0.05)
        port = int(re.search(r"listening on https://127\.0\.0\.1:(\d+)",
                             self.vault.log()).group(1))
        ctx = ssl.create_default_context(cafile=m.cert_path)

        def https(method, path, body=None, headers=None):
            conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=60)
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            conn.close()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data

        st, h, data = https("POST", "/v1/session", json.dumps({"token": self.vault.admin_token}),
                            {"Content-Type": "application/json"})
        self.assertEqual(st, 201, data)
        cookie = h["set-cookie"]
        self.assertRegex(cookie, r"^__Host-cv_session=cvs_[0-9a-f]{16}_[A-Za-z0-9_-]{43}; "
                                 r"Path=/; Max-Age=\d+; HttpOnly; SameSite=Strict; Secure$")
        value = cookie.split(";")[0]
        st, _, _ = https("GET", "/v1/certificates", headers={"Cookie": value})
        self.assertEqual(st, 200)
        st, h, _ = https("GET", "/console/")
        self.assertIn("frame-ancestors 'none'", h["content-security-policy"])
        # Plain HTTP reads only its own cookie name: a browser never sends the __Host- one
        # there, and a request that does is not signed in by it.
        conn = http.client.HTTPConnection("127.0.0.1", self.vault.port, timeout=60)
        conn.request("GET", "/v1/certificates", headers={"Cookie": value})
        r = conn.getresponse()
        r.read()
        conn.close()
        self.assertEqual(r.status, 401)


class BrowserTest(VaultTestCase):
    """Every screen and flow in headless Chromium, as each role."""

    # The truststore's fetch from the local openssl s_server: loopback must be allowed.
    # Deleted certificates are kept (issue 18): the Deleted screen has something to show.
    settings = {"CERTVAULT_TRUSTSTORE_ALLOW_NETWORKS": "127.0.0.0/8",
                "CERTVAULT_LIFECYCLE_DELETED_RETENTION_DAYS": "30"}

    def serve_tls(self, leaf, inter):
        for _ in range(5):
            port = free_port()
            proc = subprocess.Popen(
                ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-cert",
                 leaf.cert_path, "-key", leaf.key_path, "-cert_chain", inter.cert_path, "-www"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            self.addCleanup(lambda p=proc: (p.kill(), p.wait(), p.stdout.close()))
            for _ in range(10):
                line = proc.stdout.readline()
                if line.strip() in (b"ACCEPT", b""):
                    break
            if line.strip() == b"ACCEPT":
                return port
        self.fail("openssl s_server did not start")

    def serve_evil(self):
        """Another origin's page that posts a form to certvault when it loads."""
        target = "http://127.0.0.1:%d/v1/certificates" % self.vault.port
        page = ("<!doctype html><form id=f method=post enctype=multipart/form-data action=%s>"
                "<input name=name value=evil-csrf></form><script>document.getElementById('f')"
                ".submit()</script>" % target).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        return srv.server_address[1]

    def test_console_in_chromium(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node is needed (scripts/deps)")
        self.assertTrue(os.path.exists(CHROMIUM), "chromium is needed (scripts/deps)")
        self.assertTrue(os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")),
                        "playwright-core is needed: npm ci --prefix tests/browser (scripts/deps)")
        w = self.tmp
        mk = lambda name, **kw: Material(w, name, **kw)
        ok = mk("b-ok", san="ok.example.com")
        b64a = mk("b-b64a", san="b64a.example")
        b64b = mk("b-b64b", san="b64b.example", key="ed25519")
        bund = mk("b-bund", san="bundle.example", key="p384")
        derm = mk("b-der", san="der.example", key="rsa2048")
        www = mk("b-www", san="www.shop.example,shop.example", key="rsa2048")
        www2 = mk("b-www2", san="www.shop.example,shop.example")
        www3 = mk("b-www3", san="www.shop.example,shop.example")
        www4 = mk("b-www4", san="www.shop.example,shop.example")
        pub = mk("b-pub", san="partner.example")
        expired = mk("b-expired", san="old.example", not_before=-90 * 86400, not_after=-86400)
        future = mk("b-future", san="new.example", not_before=86400 * 10)
        weak = mk("b-weak", san="weak.example", md="sha1", key="rsa2048")
        small = mk("b-small", san="small.example", key="rsa1024")
        root = mk("b-root", cn="Console Root CA", ca=True, not_after=3650 * 86400)
        inter = mk("b-inter", cn="Console Intermediate CA", ca=True, issuer=root,
                   not_after=1825 * 86400)
        leaf = mk("b-leaf", cn="localhost", san="localhost", issuer=inter)
        chained = mk("b-chained", san="chained.example", issuer=inter)
        files = {}
        bundle = os.path.join(w, "bundle.pem")
        with open(bundle, "w") as f:
            f.write(bund.key + bund.cert)
        files["bundle"] = bundle
        der = os.path.join(w, "cert.der")
        with open(der, "wb") as f:
            f.write(derm.cert_der())
        files["der"] = der
        files["der_key"] = derm.key_path
        p12 = os.path.join(w, "shop.p12")
        run([os.path.join(BUILD, "tests", "cv-testp12"), "--out", p12, "--password", "s3cret",
             "--key", chained.key_path, "--cert", chained.cert_path, "--cert", inter.cert_path])
        files["p12"] = p12
        files["not_a_ca"] = ok.cert_path
        tokens = {"admin": self.vault.admin_token}
        for role in ("operator", "auditor"):
            st, _, body = self.vault.request("POST", "/v1/tokens",
                                             {"name": "b-" + role, "role": role})
            self.assertEqual(st, 201, body)
            tokens[role] = body["token"]
        shots = os.path.join(BUILD, "console-screenshots")
        shutil.rmtree(shots, ignore_errors=True)
        os.makedirs(shots)
        mat = lambda m: {"cert": m.cert, "key": m.key}
        config = {
            "base": "http://127.0.0.1:%d" % self.vault.port,
            "chromium": CHROMIUM,
            "tokens": tokens,
            "shots": shots,
            "profile": os.path.join(w, "chromium-profile"),
            "tls_url": "https://127.0.0.1:%d" % self.serve_tls(leaf, inter),
            "evil": "http://127.0.0.1:%d/" % self.serve_evil(),
            "token_dir": self.vault.token_dir,
            "m": {k: mat(v) for k, v in (("ok", ok), ("www", www), ("www2", www2),
                                          ("www3", www3), ("www4", www4), ("pub", pub), ("b64a", b64a),
                                          ("b64b", b64b),
                                          ("expired", expired), ("future", future),
                                          ("weak", weak), ("small", small),
                                          ("inter", inter), ("root", root))},
            "files": files,
        }
        cfg = os.path.join(w, "browser.json")
        with open(cfg, "w") as f:
            json.dump(config, f)
        p = subprocess.run([node, os.path.join(BROWSER_DIR, "console.mjs"), cfg],
                           capture_output=True, timeout=480, cwd=BROWSER_DIR)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        print(out)
        self.assertEqual(p.returncode, 0, out)
        self.assertRegex(out, r"\n(\d+) passed, 0 failed")
        # What the browser did is what the server has.
        st, _, body = self.vault.request("GET", "/v1/certificates/evil-csrf")
        self.assertEqual(st, 404, "a cross-site form created a certificate")
        for name in os.listdir(shots):
            self.assertGreater(os.path.getsize(os.path.join(shots, name)), 5000, name)


if __name__ == "__main__":
    import unittest
    unittest.main()
