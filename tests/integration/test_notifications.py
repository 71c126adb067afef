"""Notifications (issue 18 part 1): channels as resources, an outbox written with each change
and by the expiry scan, deliveries to a real webhook receiver on 127.0.0.1 and a real SMTP
sink (Debian's python3-aiosmtpd), each webhook message checked against its HMAC; retries with
backoff, a SIGKILL while sending, thresholds crossed while certvaultd was down.

Time is not faked: certificates are made by cv-testcert with an end a day and a few seconds
away (the 1-day threshold is crossed seconds after the import) or a few seconds away (the
0-day one, expired), and the scan runs every second (notifications.scan_seconds = 1)."""

import base64
import hashlib
import hmac
import http.server
import json
import os
import signal
import socket
import sqlite3
import tempfile
import threading
import time
import logging
import unittest

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from harness import Certvaultd, Material, VaultTestCase
from test_revocation import Ca

# aiosmtpd 1.4 logs a warning about its own internals at each login.
logging.getLogger("mail.log").setLevel(logging.ERROR)

SECRET = "a-shared-secret-of-32-bytes-long"


class Receiver:
    """A webhook receiver: records every request; answers 500 to the first `fail` ones, holds
    the first one open until released when `hold` is set; dedups by webhook-id like a careful
    receiver, counting what it accepted."""

    def __init__(self, fail=0, hold=False):
        self.requests = []
        self.accepted = {}
        self.fail = fail
        self.hold = hold
        self.holding = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.requests.append((self.path, hdrs, body))
                    n = len(receiver.requests)
                    hold = receiver.hold and n == 1
                    fail = n <= receiver.fail
                if hold:
                    receiver.holding.set()
                    receiver.release.wait(60)
                    return
                if fail:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with receiver.lock:
                    did = hdrs.get("webhook-id")
                    receiver.accepted[did] = receiver.accepted.get(did, 0) + 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hooks/certvault?key=hidden" % self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def messages(self):
        """The accepted messages' bodies, parsed, once per delivery id."""
        seen, out = set(), []
        with self.lock:
            reqs = list(self.requests)
        for _, hdrs, body in reqs:
            did = hdrs.get("webhook-id")
            if did in self.accepted and did not in seen:
                seen.add(did)
                out.append(json.loads(body))
        return out


def verify(secret, hdrs, body):
    """The Standard Webhooks check: HMAC-SHA256 over id.timestamp.body with the secret (its
    base64 part for a whsec_ one), base64, among the space-separated v1 signatures."""
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    signed = ("%s.%s." % (hdrs["webhook-id"], hdrs["webhook-timestamp"])).encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in hdrs["webhook-signature"].split())


class Sink:
    """An SMTP server on 127.0.0.1 that keeps every message (AUTH PLAIN/LOGIN accepted
    without TLS, recording the login)."""

    def __init__(self):
        self.messages = []
        self.logins = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.messages.append((list(envelope.rcpt_tos), envelope.content))
                return "250 OK"

        def auth(server, session, envelope, mechanism, auth_data):
            sink.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=True)

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     authenticator=auth, auth_require_tls=False)
        self.controller.start()

    def close(self):
        self.controller.stop()

    def by_id(self):
        out = {}
        for rcpt, content in self.messages:
            text = content.decode()
            for line in text.split("\r\n"):
                if line.lower().startswith("x-certvault-delivery-id:"):
                    out.setdefault(line.split(":", 1)[1].strip(), []).append((rcpt, text))
        return out


def wait_for(cond, seconds=20, what="a condition"):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s" % what)


SETTINGS = {
    "CERTVAULT_NOTIFICATIONS_ALLOW_NETWORKS": "127.0.0.0/8",
    "CERTVAULT_NOTIFICATIONS_SCAN_SECONDS": "1",
    "CERTVAULT_NOTIFICATIONS_RETRY_BASE_SECONDS": "1",
    "CERTVAULT_NOTIFICATIONS_RETRY_MAX_SECONDS": "1",
    "CERTVAULT_NOTIFICATIONS_TIMEOUT_MS": "5000",
}


class Channels(VaultTestCase):
    settings = dict(SETTINGS)

    @classmethod
    def setUpClass(cls):
        cls.pwdir = tempfile.mkdtemp(prefix="cv-it-pw-")
        cls.settings = dict(SETTINGS, CERTVAULT_NOTIFICATIONS_PASSWORD_DIR=cls.pwdir)
        super().setUpClass()

    def test_webhook_channel_secret_shown_once_and_sealed(self):
        v = self.vault
        st, _, ch = v.request("POST", "/v1/notifications/channels",
                              {"name": "ops-hook", "kind": "webhook",
                               "url": "https://hooks.example.com/T000/B000/XXXX"})
        self.assertEqual(st, 201, ch)
        secret = ch["secret"]
        self.assertRegex(secret, r"^whsec_[A-Za-z0-9+/]{43}=$")
        self.assertTrue(ch["has_secret"])
        self.assertEqual(len(ch["events"]), 11)
        st, _, got = v.request("GET", "/v1/notifications/channels/" + ch["id"])
        self.assertEqual(st, 200, got)
        self.assertNotIn("secret", got)
        self.assertEqual(got["name"], "ops-hook")
        st, _, page = v.request("GET", "/v1/notifications/channels")
        self.assertNotIn(secret, json.dumps(page))
        self.assertIn("ops-hook", [c["name"] for c in page["items"]])
        # By name too.
        self.assertEqual(v.request("GET", "/v1/notifications/channels/ops-hook")[0], 200)
        # Neither the secret nor the URL's path is in the audit trail or the database file.
        st, _, audit = v.request("GET", "/v1/audit?action=notification.channel_create")
        text = json.dumps(audit)
        self.assertIn("https://hooks.example.com", text)
        self.assertNotIn("T000", text)
        self.assertNotIn(secret, text)
        with open(v.db, "rb") as f:
            self.assertNotIn(secret.encode(), f.read())
        self.assertNotIn(secret, v.whole_log())
        # A given secret is not echoed.
        st, _, ch2 = v.request("POST", "/v1/notifications/channels",
                               {"name": "given", "kind": "webhook", "secret": SECRET,
                                "url": "http://hooks.example.com/x",
                                "events": ["certificate.expiring"]})
        self.assertEqual(st, 201, ch2)
        self.assertNotIn("secret", ch2)
        self.assertEqual(ch2["events"], ["certificate.expiring"])
        with open(v.db, "rb") as f:
            self.assertNotIn(SECRET.encode(), f.read())
        # Delete: gone, and the name is free again.
        st, _, _ = v.request("DELETE", "/v1/notifications/channels/" + ch2["id"])
        self.assertEqual(st, 204)
        self.assertError(v.request("GET", "/v1/notifications/channels/" + ch2["id"]), 404,
                         "not_found")
        self.assertError(v.request("DELETE", "/v1/notifications/channels/" + ch2["id"]), 404,
                         "not_found")

    def test_bad_channels_refused_and_nothing_made(self):
        v = self.vault
        bad = [
            ({"name": "x", "kind": "pager", "url": "https://a.example"}, 400),
            ({"name": "x", "kind": "webhook", "url": "ftp://a.example/"}, 400),
            ({"name": "x", "kind": "webhook", "url": "file:///etc/passwd"}, 400),
            ({"name": "x", "kind": "webhook", "url": "https://user:pw@a.example/"}, 400),
            ({"name": "x", "kind": "webhook", "url": "https://a.example/ x"}, 400),
            ({"name": "x", "kind": "webhook", "url": "https://a.example/", "secret": "short"},
             400),
            ({"name": "x", "kind": "webhook", "url": "https://a.example/",
              "events": ["certificate.exploded"]}, 400),
            ({"name": "x", "kind": "webhook", "url": "https://a.example/", "events": []}, 400),
            ({"name": "x", "kind": "webhook", "url": "https://a.example/",
              "to": ["a@example.com"]}, 400),
            ({"name": "x y", "kind": "webhook", "url": "https://a.example/"}, 400),
            ({"name": "x", "kind": "email", "url": "smtp://mail.example", "from": "a@example.com"},
             400),
            ({"name": "x", "kind": "email", "url": "https://mail.example",
              "from": "a@example.com", "to": ["b@example.com"]}, 400),
            ({"name": "x", "kind": "email", "url": "smtp://mail.example",
              "from": "not an address", "to": ["b@example.com"]}, 400),
            ({"name": "x", "kind": "email", "url": "smtp://mail.example",
              "from": "a@example.com", "to": ["b@example.com\r\nBcc: c@example.com"]}, 400),
            ({"name": "x", "kind": "email", "url": "smtp://mail.example",
              "from": "a@example.com", "to": ["b@example.com"], "username": "u",
              "password_file": "../../etc/shadow"}, 400),
            ({"name": "x", "kind": "email", "url": "smtp://mail.example",
              "from": "a@example.com", "to": ["b@example.com"], "username": "u",
              "password_file": "missing"}, 400),
            ({"name": "x", "kind": "email", "url": "smtp://mail.example",
              "from": "a@example.com", "to": ["b@example.com"], "username": "u"}, 400),
            ({"name": "x", "kind": "webhook", "url": "https://a.example/", "extra": 1}, 400),
        ]
        for body, status in bad:
            st, _, out = v.request("POST", "/v1/notifications/channels", body)
            self.assertEqual(st, status, (body, out))
            self.assertTrue(out["error"]["message"], out)
        # A password file others may read is refused too.
        path = os.path.join(self.pwdir, "loose")
        with open(path, "w") as f:
            f.write("pw\n")
        os.chmod(path, 0o644)
        self.assertError(v.request("POST", "/v1/notifications/channels",
                                   {"name": "x", "kind": "email", "url": "smtp://m.example",
                                    "from": "a@example.com", "to": ["b@example.com"],
                                    "username": "u", "password_file": "loose"}), 400,
                         "bad_request")
        st, _, page = v.request("GET", "/v1/notifications/channels")
        self.assertNotIn("x", [c["name"] for c in page["items"]])
        # Name taken (ignoring case).
        body = {"name": "dup", "kind": "webhook", "url": "https://a.example/"}
        self.assertEqual(v.request("POST", "/v1/notifications/channels", body)[0], 201)
        self.assertError(v.request("POST", "/v1/notifications/channels",
                                   dict(body, name="DUP")), 409, "name_taken")

    def test_admin_only(self):
        v = self.vault
        tokens = {}
        for role in ("operator", "auditor"):
            st, _, t = v.request("POST", "/v1/tokens", {"name": "n-" + role, "role": role})
            self.assertEqual(st, 201, t)
            tokens[role] = t["token"]
        for role, tok in tokens.items():
            self.assertError(v.request("POST", "/v1/notifications/channels",
                                       {"name": "r", "kind": "webhook",
                                        "url": "https://a.example/"}, token=tok), 403,
                             "forbidden")
            self.assertError(v.request("GET", "/v1/notifications/channels", token=tok), 403,
                             "forbidden")
        # The delivery log is for who reads the audit trail.
        self.assertEqual(v.request("GET", "/v1/notifications/deliveries",
                                   token=tokens["auditor"])[0], 200)
        self.assertError(v.request("GET", "/v1/notifications/deliveries",
                                   token=tokens["operator"]), 403, "forbidden")
        self.assertError(v.request("GET", "/v1/notifications/deliveries?state=lost"), 400,
                         "bad_request")
        self.assertError(v.request("GET", "/v1/notifications/deliveries?sort=x"), 400,
                         "bad_request")

    def test_certificate_rules(self):
        v = self.vault
        m = self.material("rules", san="rules.example.com")
        self.assertEqual(v.import_cert("rules", m)[0], 201)
        st, _, got = v.request("GET", "/v1/certificates/rules/notifications")
        self.assertEqual(st, 200, got)
        self.assertEqual(got, {"certificate": "rules", "thresholds": None, "contacts": []})
        st, _, got = v.request("PUT", "/v1/certificates/RULES/notifications",
                               {"thresholds": [60, 3], "contacts": ["owner@example.com"]})
        self.assertEqual(st, 200, got)
        self.assertEqual(got["thresholds"], [60, 3])
        self.assertEqual(got["contacts"], ["owner@example.com"])
        for body in ({"thresholds": [-1]}, {"thresholds": [3651]}, {"thresholds": [3, 3]},
                     {"thresholds": ["7"]}, {"thresholds": list(range(17))},
                     {"contacts": ["nobody"]}, {"contacts": "a@example.com"},
                     {"other": 1}):
            st, _, out = v.request("PUT", "/v1/certificates/rules/notifications", body)
            self.assertEqual(st, 400, (body, out))
        self.assertEqual(v.request("GET", "/v1/certificates/rules/notifications")[2]
                         ["thresholds"], [60, 3])
        self.assertError(v.request("PUT", "/v1/certificates/nope/notifications", {}), 404,
                         "not_found")
        st, _, audit = v.request("GET", "/v1/audit?action=certificate.notifications")
        done = [i for i in audit["items"] if i["outcome"] == "done"]
        self.assertEqual(len(done), 1, audit)
        self.assertEqual(done[0]["changes"]["thresholds"], {"old": None, "new": [60, 3]})
        self.assertEqual(done[0]["changes"]["contacts"],
                         {"old": [], "new": ["owner@example.com"]})


class Deliveries(VaultTestCase):
    """Events and thresholds reach a webhook and an SMTP sink exactly once each."""

    @classmethod
    def setUpClass(cls):
        cls.pwdir = tempfile.mkdtemp(prefix="cv-it-pw-")
        fd = os.open(os.path.join(cls.pwdir, "smtp.pw"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"smtp-pass-123\n")
        os.close(fd)
        # Deletes are soft (issue 18 part 2), so that a recover and a purge tell too.
        cls.settings = dict(SETTINGS, CERTVAULT_NOTIFICATIONS_PASSWORD_DIR=cls.pwdir,
                            CERTVAULT_LIFECYCLE_DELETED_RETENTION_DAYS="30")
        cls.receiver = Receiver()
        cls.sink = Sink()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        cls.receiver.close()
        cls.sink.close()
        super().tearDownClass()

    def test_events_and_thresholds_once_each(self):
        v, rx, sink = self.vault, self.receiver, self.sink
        st, _, hook = v.request("POST", "/v1/notifications/channels",
                                {"name": "hook", "kind": "webhook", "url": rx.url,
                                 "secret": SECRET})
        self.assertEqual(st, 201, hook)
        st, _, mail = v.request("POST", "/v1/notifications/channels",
                                {"name": "mail", "kind": "email",
                                 "url": "smtp://127.0.0.1:%d" % sink.port,
                                 "from": "certvault@example.com", "to": ["ops@example.com"],
                                 "username": "certvault", "password_file": "smtp.pw",
                                 "events": ["certificate.imported", "certificate.expiring",
                                            "certificate.expired"]})
        self.assertEqual(st, 201, mail)
        # A day and some seconds left: the 7-day threshold is crossed at once (the 30 and
        # 14 before it need no message of their own), the 1-day one seconds later.
        day = self.material("day", san="day.example.com", not_after=86400 + 6)
        self.assertEqual(v.import_cert("day", day)[0], 201)
        st, _, rules = v.request("PUT", "/v1/certificates/day/notifications",
                                 {"contacts": ["owner@example.com"]})
        self.assertEqual(st, 200, rules)
        # Seconds left: the 1-day threshold at once, then expired.
        soon = self.material("soon", san="soon.example.com", not_after=5)
        self.assertEqual(v.import_cert("soon", soon)[0], 201)
        # Far off: nothing but the import.
        far = self.material("far", san="far.example.com", not_after=200 * 86400)
        self.assertEqual(v.import_cert("far", far)[0], 201)

        def kinds():
            return sorted((m["event"], m["certificate"]["name"], m.get("threshold_days"))
                          for m in rx.messages())
        want = sorted([
            ("certificate.imported", "day", None), ("certificate.imported", "soon", None),
            ("certificate.imported", "far", None),
            ("certificate.expiring", "day", 7), ("certificate.expiring", "day", 1),
            ("certificate.expiring", "soon", 1), ("certificate.expired", "soon", 0)])
        wait_for(lambda: kinds() == want or len(kinds()) > len(want), 30, "the messages")
        time.sleep(2.5)  # a few more scans: nothing more may come
        self.assertEqual(kinds(), want)
        # Each delivery accepted once, each with a valid signature and its own id.
        with rx.lock:
            reqs = list(rx.requests)
        self.assertEqual(len(reqs), len(want))
        self.assertEqual(sorted(rx.accepted.values()), [1] * len(want))
        for path, hdrs, body in reqs:
            self.assertEqual(path, "/hooks/certvault?key=hidden")
            self.assertTrue(verify(SECRET, hdrs, body), hdrs)
            self.assertFalse(verify("another-secret-of-some-length!!", hdrs, body))
            self.assertRegex(hdrs["webhook-id"], r"^dlv_[0-9a-f]{32}$")
            self.assertLess(abs(int(hdrs["webhook-timestamp"]) - time.time()), 60)
            self.assertEqual(json.loads(body)["id"], hdrs["webhook-id"])
            self.assertEqual(hdrs["content-type"], "application/json")
            # A body changed on the way does not verify.
            self.assertFalse(verify(SECRET, hdrs, body.replace(b"day", b"dav")))
        expiring = [m for m in rx.messages() if m["event"] == "certificate.expiring" and
                    m["certificate"]["name"] == "day" and m["threshold_days"] == 1]
        self.assertEqual(expiring[0]["contacts"], ["owner@example.com"])
        self.assertEqual(expiring[0]["certificate"]["version"], 1)
        # The same through SMTP (the channel takes three events), with the login from the
        # password file and the certificate's contact among the recipients.
        mails = wait_for(lambda: len(sink.by_id()) >= len(want) and sink.by_id(), 20,
                         "the mails")
        self.assertEqual(len(mails), len(want))
        self.assertTrue(all(len(x) == 1 for x in mails.values()))
        subjects = sorted(t.split("Subject: ", 1)[1].split("\r\n", 1)[0]
                          for [(_, t)] in mails.values())
        self.assertIn("[certvault] day expires in 1 day(s)", subjects)
        self.assertIn("[certvault] soon has expired", subjects)
        self.assertIn(("certvault", "smtp-pass-123"), sink.logins)
        for [(rcpt, text)] in mails.values():
            self.assertIn("ops@example.com", rcpt)
            self.assertLess(max(len(line) for line in text.split("\r\n")), 998)
            body = text.split("\r\n\r\n", 2)[2]
            self.assertRegex(json.loads(body)["id"], r"^dlv_[0-9a-f]{32}$")
            if "day expires in 1" in text:
                self.assertIn("owner@example.com", rcpt)
        # The log: every delivery delivered at its first attempt; filters.
        st, _, log = v.request("GET", "/v1/notifications/deliveries?channel=hook&limit=500")
        self.assertEqual(st, 200, log)
        self.assertEqual(len(log["items"]), len(want))
        for d in log["items"]:
            self.assertEqual(d["state"], "delivered", d)
            self.assertEqual([a["outcome"] for a in d["attempts"]], ["delivered"])
            self.assertEqual(d["channel"]["name"], "hook")
        st, _, log = v.request("GET", "/v1/notifications/deliveries?certificate=soon"
                               "&event=certificate.expired")
        self.assertEqual(len(log["items"]), 2)  # one per channel
        st, _, page = v.request("GET", "/v1/notifications/deliveries?limit=3")
        self.assertEqual(len(page["items"]), 3)
        st, _, page2 = v.request("GET", "/v1/notifications/deliveries?limit=3&cursor=" +
                                 page["next_cursor"])
        self.assertEqual(len(page2["items"]), 3)
        self.assertFalse({d["delivery_id"] for d in page["items"]} &
                         {d["delivery_id"] for d in page2["items"]})

        # Renew, replace, delete, recover and purge are events too; a renewal is a new
        # version, whose thresholds count afresh.
        n_before = len(rx.messages())
        st, _, _ = v.request("PUT", "/v1/services/web", {"environment": "production",
                                                         "domains": ["far.example.com"]})
        self.assertEqual(st, 201)
        self.assertEqual(v.request("PUT", "/v1/services/web/certificate",
                                   {"certificate": "far"})[0], 200)
        far2 = self.material("far2", san="far.example.com", not_after=200 * 86400)
        st, _, out = v.request("POST", "/v1/certificates/far/renew",
                               {"certificate": far2.cert, "private_key": far2.key})
        self.assertEqual(st, 200, out)
        far3 = self.material("far3", san="far.example.com", not_after=200 * 86400)
        st, _, out = v.request("POST", "/v1/certificates/far/replace",
                               {"certificate": far3.cert, "private_key": far3.key})
        self.assertIn(st, (200, 201), out)
        for method, path in (("DELETE", "/v1/certificates/soon?confirm=delete"),
                             ("POST", "/v1/deleted-certificates/soon/recover"),
                             ("DELETE", "/v1/certificates/soon?confirm=delete"),
                             ("DELETE", "/v1/deleted-certificates/soon?confirm=purge")):
            st, _, out = v.request(method, path)
            self.assertEqual(st, 200, (path, out))
        # A refused change tells nobody.
        self.assertEqual(v.request("DELETE", "/v1/certificates/far?confirm=delete")[0], 409)
        self.assertEqual(v.request("DELETE", "/v1/deleted-certificates/soon?confirm=purge")[0],
                         404)
        wait_for(lambda: len(rx.messages()) >= n_before + 6, 20, "the change messages")
        time.sleep(1.5)
        new = [(m["event"], m["certificate"]["name"], m["certificate"].get("version"),
                m.get("actor")) for m in rx.messages()[n_before:]]
        self.assertEqual(sorted(new), sorted([("certificate.renewed", "far", 2, "admin"),
                                              ("certificate.replaced", "far", 3, "admin"),
                                              ("certificate.deleted", "soon", 1, "admin"),
                                              ("certificate.recovered", "soon", 1, "admin"),
                                              ("certificate.deleted", "soon", 1, "admin"),
                                              ("certificate.purged", "soon", 1, "admin")]))


    def test_generated_keys(self):
        """A self-signed certificate born in the token is an import; a renewal's CSR is no
        new version (nothing told), nor is its cancel."""
        v, rx = self.vault, self.receiver

        def gen():
            return [(m["event"], m["certificate"]["version"]) for m in rx.messages()
                    if m["certificate"]["name"] == "gen"]
        spec = {"key": "p256", "subject": "CN=gen.example.com", "dns_names": ["gen.example.com"]}
        st, _, body = v.request("POST", "/v1/certificates",
                                {"name": "gen", "generate": dict(spec, self_signed=True,
                                                                 days=90)})
        self.assertEqual(st, 201, body)
        wait_for(gen, 20, "the generated certificate's message")
        st, _, _ = v.request("PUT", "/v1/services/gensvc", {"environment": "production",
                                                            "domains": ["gen.example.com"]})
        self.assertEqual(v.request("PUT", "/v1/services/gensvc/certificate",
                                   {"certificate": "gen"})[0], 200)
        st, _, body = v.request("POST", "/v1/certificates/gen/renew", {"generate": spec})
        self.assertEqual(st, 201, body)
        self.assertEqual(v.request("DELETE", "/v1/certificates/gen/pending")[0], 200)
        time.sleep(2.5)
        self.assertEqual(gen(), [("certificate.imported", 1)])


class Retries(VaultTestCase):
    """A receiver failing three times then succeeding gets one accepted delivery; the log
    shows every attempt."""

    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver(fail=3)
        cls.settings = dict(SETTINGS)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        cls.receiver.close()
        super().tearDownClass()

    def test_three_failures_then_one_delivery(self):
        v, rx = self.vault, self.receiver
        st, _, hook = v.request("POST", "/v1/notifications/channels",
                                {"name": "flaky", "kind": "webhook", "url": rx.url,
                                 "secret": SECRET, "events": ["certificate.imported"]})
        self.assertEqual(st, 201, hook)
        self.assertEqual(v.import_cert("one", self.material("one", san="one.example"))[0], 201)
        wait_for(lambda: rx.accepted, 30, "the delivery")
        time.sleep(2.5)
        with rx.lock:
            ids = [h["webhook-id"] for _, h, _ in rx.requests]
            bodies = [b for _, _, b in rx.requests]
        self.assertEqual(len(ids), 4)
        self.assertEqual(len(set(ids)), 1, "every attempt carries the same delivery id")
        self.assertEqual(len(set(bodies)), 1)
        self.assertEqual(list(rx.accepted.values()), [1])
        st, _, log = v.request("GET", "/v1/notifications/deliveries")
        [d] = log["items"]
        self.assertEqual(d["state"], "delivered")
        self.assertEqual(d["attempt_count"], 4)
        self.assertEqual([a["outcome"] for a in d["attempts"]],
                         ["failed", "failed", "failed", "delivered"])
        self.assertIn("answered HTTP 500", d["attempts"][0]["detail"])
        # The URL's path and query (a secret, for some receivers) are never in the log.
        self.assertNotIn("hidden", json.dumps(log))
        self.assertIsNone(d["last_error"])


class Pruning(VaultTestCase):
    """The log of deliveries keeps notifications.delivery_log_days (1 here): older delivered
    deliveries go with their attempts, but not an expiry message about a version still
    there (its row is what keeps the scan from sending it again), nor a recent one."""

    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver()
        cls.settings = dict(SETTINGS, CERTVAULT_NOTIFICATIONS_DELIVERY_LOG_DAYS="1")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        cls.receiver.close()
        super().tearDownClass()

    def test_old_deliveries_leave_the_log(self):
        v, rx = self.vault, self.receiver
        st, _, hook = v.request("POST", "/v1/notifications/channels",
                                {"name": "hook", "kind": "webhook", "url": rx.url,
                                 "secret": SECRET})
        self.assertEqual(st, 201, hook)
        week = self.material("week", san="week.example.com", not_after=5 * 86400)
        self.assertEqual(v.import_cert("week", week)[0], 201)
        self.assertEqual(v.import_cert("gone", self.material("gone", san="g.example"))[0], 201)
        self.assertEqual(v.request("DELETE", "/v1/certificates/gone?confirm=delete")[0], 200)
        wait_for(lambda: len(rx.messages()) >= 4, 30, "the four messages")

        def log():
            st, _, page = v.request("GET", "/v1/notifications/deliveries?limit=100")
            self.assertEqual(st, 200, page)
            return sorted((d["event"], d["certificate"]) for d in page["items"])
        wait_for(lambda: len(log()) == 4, 20, "four deliveries in the log")
        # Two days ago, every one of them.
        old = int(time.time()) - 2 * 86400
        with sqlite3.connect(v.db, timeout=30) as db:
            db.execute("UPDATE notification_outbox SET created_at = ?, delivered_at = ?,"
                       " next_attempt_at = ?", (old, old, old))
            db.execute("UPDATE notification_attempts SET started_at = ?, finished_at = ?",
                       (old, old))
        self.assertEqual(v.import_cert("new", self.material("new", san="n.example"))[0], 201)
        wait_for(lambda: ("certificate.imported", "new") in log() and len(log()) == 2, 20,
                 "the old deliveries pruned")
        self.assertEqual(log(), [("certificate.expiring", "week"),
                                 ("certificate.imported", "new")])
        with sqlite3.connect(v.db, timeout=30) as db:
            orphans = db.execute("SELECT count(*) FROM notification_attempts WHERE outbox_id"
                                 " NOT IN (SELECT id FROM notification_outbox)").fetchone()[0]
        self.assertEqual(orphans, 0)
        # Scans go on: nothing pruned is sent again.
        time.sleep(2.5)
        self.assertEqual(len(rx.messages()), 5)
        self.assertIn("removed from the log", v.log())


class TokenEvents(VaultTestCase):
    """The token going away and coming back is told, signed, while it is away: the webhook's
    secret was made ready while the token was there."""

    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver()
        cls.settings = dict(SETTINGS)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        cls.receiver.close()
        super().tearDownClass()

    def test_token_away_and_back(self):
        v, rx = self.vault, self.receiver
        st, _, hook = v.request("POST", "/v1/notifications/channels",
                                {"name": "tok", "kind": "webhook", "url": rx.url,
                                 "events": ["token.unavailable", "token.available"]})
        self.assertEqual(st, 201, hook)
        time.sleep(1.5)  # a scan or two: the secret is ready
        away = v.token_dir + ".away"
        os.rename(v.token_dir, away)
        try:
            wait_for(lambda: [m for m in rx.messages() if m["event"] == "token.unavailable"],
                     20, "token.unavailable")
        finally:
            os.rename(away, v.token_dir)
        wait_for(lambda: [m for m in rx.messages() if m["event"] == "token.available"], 20,
                 "token.available")
        time.sleep(1.5)
        events = [m["event"] for m in rx.messages()]
        self.assertEqual(events, ["token.unavailable", "token.available"])
        with rx.lock:
            for _, hdrs, body in rx.requests:
                self.assertTrue(verify(hook["secret"], hdrs, body))
        down, back = rx.messages()
        self.assertEqual(down["detail"]["token"], v.label)
        self.assertTrue(down["detail"]["error"])
        self.assertEqual(back["detail"], {"token": v.label, "error": None})


class Policy(VaultTestCase):
    """Without notifications.allow_networks a webhook on loopback is never connected to (the
    address policy, as for fetches): each attempt fails saying why, and after
    notifications.max_attempts the delivery is given up."""

    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver()
        cls.settings = {"CERTVAULT_NOTIFICATIONS_RETRY_BASE_SECONDS": "1",
                        "CERTVAULT_NOTIFICATIONS_MAX_ATTEMPTS": "2"}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        cls.receiver.close()
        super().tearDownClass()

    def test_loopback_refused_then_given_up(self):
        v, rx = self.vault, self.receiver
        st, _, hook = v.request("POST", "/v1/notifications/channels",
                                {"name": "inside", "kind": "webhook", "url": rx.url,
                                 "events": ["certificate.imported"]})
        self.assertEqual(st, 201, hook)
        self.assertEqual(v.import_cert("p", self.material("p", san="p.example"))[0], 201)

        def failed():
            st, _, log = v.request("GET", "/v1/notifications/deliveries?state=failed")
            return log["items"]
        [d] = wait_for(failed, 20, "the delivery to be given up")
        self.assertEqual(d["attempt_count"], 2)
        self.assertEqual([a["outcome"] for a in d["attempts"]], ["failed", "failed"])
        self.assertIn("loopback", d["attempts"][0]["detail"])
        self.assertIn("loopback", d["last_error"])
        self.assertIsNone(d["next_attempt_at"])
        self.assertEqual(rx.requests, [])


class Revocations(VaultTestCase):
    """A current certificate that a CRL added to the truststore lists as revoked is told of
    once (the scan checks the truststore's CRLs, offline)."""

    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver()
        cls.settings = dict(SETTINGS)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        cls.receiver.close()
        super().tearDownClass()

    def test_revocation_found(self):
        v, rx = self.vault, self.receiver
        ca = Ca(os.path.join(self.tmp, "ca"), "Notify")
        kept, lost = ca.leaf("kept"), ca.leaf("lost")
        st, _, body = v.request("POST", "/v1/truststore", {"alias": "notify-inter",
                                                           "certificate": ca.inter})
        self.assertEqual(st, 201, body)
        for leaf in (kept, lost):
            st, _, body = v.request("POST", "/v1/certificates", leaf.body(name=leaf.name))
            self.assertEqual(st, 201, body)
        st, _, hook = v.request("POST", "/v1/notifications/channels",
                                {"name": "rev", "kind": "webhook", "url": rx.url,
                                 "events": ["certificate.revoked"]})
        self.assertEqual(st, 201, hook)
        ca.revoke(lost)
        st, _, body = v.request("POST", "/v1/truststore/crls", {"crl": ca.crl()})
        self.assertEqual(st, 201, body)
        wait_for(rx.messages, 20, "certificate.revoked")
        time.sleep(2.5)
        [m] = rx.messages()
        self.assertEqual(m["event"], "certificate.revoked")
        self.assertEqual(m["certificate"]["name"], "lost")
        self.assertEqual(m["detail"]["reason"], "keyCompromise")
        self.assertEqual(m["detail"]["source"], "crl:CN=Notify Issuing CA")
        with rx.lock:
            self.assertEqual(len(rx.requests), 1)


class Restarts(unittest.TestCase):
    """A SIGKILL while a delivery is being sent: after the restart it goes again with the
    same delivery id, which the receiver accepts once. Thresholds crossed while certvaultd
    was down are sent after its start."""

    def test_sigkill_and_downtime(self):
        import shutil
        tmp = tempfile.mkdtemp(prefix="cv-it-notify-")
        rx = Receiver(hold=True)
        vault = Certvaultd(tmp, dict(SETTINGS))
        try:
            vault.start()
            st, _, hook = vault.request("POST", "/v1/notifications/channels",
                                        {"name": "hook", "kind": "webhook", "url": rx.url,
                                         "secret": SECRET})
            self.assertEqual(st, 201, hook)
            # 1 day and 8 s left: the 7-day message now (held by the receiver), the
            # 1-day one while certvaultd is down.
            m = Material(tmp, "edge", san="edge.example.com", not_after=86400 + 8)
            self.assertEqual(vault.import_cert("edge", m)[0], 201)
            self.assertTrue(rx.holding.wait(20), "the first delivery never came")
            self.assertEqual(vault.stop(signal.SIGKILL), -signal.SIGKILL)
            rx.release.set()
            with rx.lock:
                first_id = rx.requests[0][1]["webhook-id"]
            time.sleep(8)  # the 1-day threshold is crossed while it is down
            vault.start()
            wait_for(lambda: "sent again with their delivery ids" in vault.log(), 10,
                     "the interrupted attempt to be found")

            def events():
                return sorted((m["event"], m.get("threshold_days")) for m in rx.messages())
            want = sorted([("certificate.imported", None), ("certificate.expiring", 7),
                           ("certificate.expiring", 1)])
            wait_for(lambda: events() == want, 30, "the messages after the restart")
            time.sleep(1.5)
            self.assertEqual(events(), want)
            self.assertEqual(sorted(rx.accepted.values()), [1, 1, 1])
            with rx.lock:
                ids = [h["webhook-id"] for _, h, _ in rx.requests]
            self.assertEqual(ids.count(first_id), 2, "the interrupted one went again")
            for _, hdrs, body in rx.requests:
                self.assertTrue(verify(SECRET, hdrs, body))
            st, _, log = vault.request("GET", "/v1/notifications/deliveries")
            again = [d for d in log["items"] if d["delivery_id"] == first_id][0]
            self.assertEqual([a["outcome"] for a in again["attempts"]],
                             ["interrupted", "delivered"])
            # Exactly once per (version, threshold, channel): the outbox's unique key.
            with sqlite3.connect(vault.db) as db:
                with self.assertRaises(sqlite3.IntegrityError):
                    db.execute("INSERT INTO notification_outbox (delivery_id, channel_id,"
                               " dedup_key, event, payload, next_attempt_at, created_at)"
                               " SELECT 'dlv_x', channel_id, dedup_key, event, payload, 0, 0"
                               " FROM notification_outbox WHERE threshold = 1")
            self.assertEqual(vault.stop(), 0)
        finally:
            if vault.proc is not None:
                vault.stop(signal.SIGKILL)
            rx.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
