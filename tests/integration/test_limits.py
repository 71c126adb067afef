"""Limits on what a client controls (issue 6), seen from a raw socket: request smuggling
framing, a NUL in a query, huge headers, connections per address, slow clients; slowloris
(issue 16 item 3): deadlines for a request to arrive and limits on connections still waiting
for theirs; slow work (item 5): key-derivation cost capped, slow requests on their own
threads so health stays fast, a full queue answered 503 busy."""

import base64
import http.client
import json
import os
import re
import select
import socket
import statistics
import threading
import time

from harness import CERTVAULTD, VaultTestCase, run

PER_IP = 4
TIMEOUT = 2


class LimitsTest(VaultTestCase):
    settings = {"CERTVAULT_SERVER_MAX_CONNECTIONS_PER_IP": str(PER_IP),
                "CERTVAULT_SERVER_CONNECTION_TIMEOUT": str(TIMEOUT)}

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.vault.port), timeout=10)
        self.addCleanup(s.close)
        return s

    def exchange(self, raw):
        """Sends raw bytes on a new connection; the status and body of the answer, or
        (None, b"") when the server closed without one."""
        s = self.connect()
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if b"Content-Length:" in head:
                n = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
                if len(body) >= n:
                    break
        if not data:
            return None, b""
        status = int(data.split(b" ", 2)[1])
        return status, data.partition(b"\r\n\r\n")[2]

    def alive(self):
        st, _, _ = self.vault.request("GET", "/v1/health", token=None)
        self.assertEqual(st, 200)

    def test_content_length_with_transfer_encoding_is_refused(self):
        body = json.dumps({"name": "smuggled"}).encode()
        raw = (b"POST /v1/certificates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
               self.vault.admin_token.encode() + b"\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) +
               b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        st, answer = self.exchange(raw)
        self.assertEqual(st, 400, answer)
        self.assertIn(b"Transfer-Encoding", answer)
        st, _, _ = self.vault.request("GET", "/v1/certificates/smuggled")
        self.assertEqual(st, 404)
        self.alive()

    def test_nul_in_a_query_is_refused(self):
        for path in ("/v1/certificates?q=a%00b", "/v1/certificates?%00=1",
                     "/v1/truststore/export?format=pkcs12&password=pw%00tail"):
            with self.subTest(path=path):
                st, _, body = self.vault.request("GET", path)
                self.assertEqual((st, body["error"]["code"]), (400, "bad_request"), body)
                self.assertIn("NUL", body["error"]["message"])

    def test_huge_header_is_refused_and_nothing_breaks(self):
        raw = (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024) +
               b"\r\n\r\n")
        st, _ = self.exchange(raw)
        self.assertIn(st, (None, 400, 413, 431))
        self.alive()

    def test_connections_per_address(self):
        # One request on each of PER_IP connections: all are served. The earlier tests'
        # connections are closed on the client's side, but a loaded server may not have seen
        # every close yet: then one of these is the address's fifth, and the set is tried
        # again (three times at most) rather than counted as a refusal.
        for attempt in range(3):
            held = [self.connect() for _ in range(PER_IP)]
            answers = []
            for s in held:
                s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    answers.append(s.recv(65536))
                except ConnectionResetError:
                    answers.append(b"")
            if all(a.startswith(b"HTTP/1.1 200") for a in answers) or attempt == 2:
                break
            for s in held:
                s.close()
            time.sleep(0.5)
        for a in answers:
            self.assertTrue(a.startswith(b"HTTP/1.1 200"), answers)
        # One more from the same address is closed without an answer.
        extra = self.connect()
        extra.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = extra.recv(65536)
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"")
        for s in held:
            s.close()
        time.sleep(0.2)
        self.alive()

    def test_slow_client_is_dropped(self):
        s = self.connect()
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        start = time.monotonic()
        s.settimeout(TIMEOUT + 5)
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - start
        self.assertEqual(data, b"")
        self.assertLess(elapsed, TIMEOUT + 3)
        self.assertGreaterEqual(elapsed, TIMEOUT - 1)
        self.alive()


HEADER_TIMEOUT = 3
BODY_TIMEOUT = 3
PENDING_PER_IP = 8
PENDING = 12


class Trickler:
    """A slowloris client: connections from source address src that send a header (or, with
    body=True, body) byte every 0.5 s and never finish. Each connection's opening and the
    moment the server closed it are kept."""

    def __init__(self, port, n, src="127.0.0.1", body=False):
        self.opened, self.closed, self.socks = [], {}, []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((src, 0))
            s.connect(("127.0.0.1", port))
            if body:
                s.sendall(b"POST /v1/certificates HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            else:
                s.sendall(b"GET /v1/health HTTP/1.1\r\n")
            self.socks.append(s)
            self.opened.append(time.monotonic())
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.trickle, daemon=True)
        self.thread.start()

    def trickle(self):
        while not self.stop.is_set() and len(self.closed) < len(self.socks):
            for i, s in enumerate(self.socks):
                if i in self.closed:
                    continue
                readable, _, _ = select.select([s], [], [], 0)
                gone = bool(readable)
                if gone:
                    try:
                        gone = s.recv(1) == b""
                    except OSError:
                        pass
                if not gone:
                    try:
                        s.send(b"a")
                    except OSError:
                        gone = True
                if gone:
                    self.closed[i] = time.monotonic()
            self.stop.wait(0.5)

    def finish(self, timeout):
        self.thread.join(timeout)
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            s.close()

    def lifetimes(self):
        return [self.closed[i] - self.opened[i] for i in sorted(self.closed)]


class SlowlorisTest(VaultTestCase):
    """Clients that trickle bytes keep libmicrohttpd's idle timeout (30 s here) from ever
    firing: only the deadlines close them, and only the pending limits keep them from
    filling their address's 64 connections or the server's 40."""

    settings = {"CERTVAULT_SERVER_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
                "CERTVAULT_SERVER_BODY_TIMEOUT": str(BODY_TIMEOUT),
                "CERTVAULT_SERVER_MAX_PENDING_PER_IP": str(PENDING_PER_IP),
                "CERTVAULT_SERVER_MAX_PENDING": str(PENDING),
                "CERTVAULT_SERVER_MAX_CONNECTIONS_PER_IP": "64",
                "CERTVAULT_SERVER_MAX_CONNECTIONS": "40"}

    def health_from(self, src):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.bind((src, 0))
            s.connect(("127.0.0.1", self.vault.port))
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        finally:
            s.close()
        return data.split(b"\r\n", 1)[0]

    def closed_metric(self, reason):
        st, _, text = self.vault.request("GET", "/metrics")
        self.assertEqual(st, 200)
        m = re.search(r'certvault_http_connections_closed_total\{node="[^"]+",reason="%s"\} (\d+)' % reason,
                      text.decode())
        self.assertIsNotNone(m, text[-2000:])
        return int(m.group(1))

    def test_slowloris_does_not_lock_out_its_address(self):
        evicted_before = self.closed_metric("pending_limit")
        late_before = self.closed_metric("request_deadline")
        attack = Trickler(self.vault.port, 64)
        try:
            # Another client of the same address (a NAT, a proxy) is served throughout.
            for _ in range(3):
                self.assertEqual(self.health_from("127.0.0.1"), b"HTTP/1.1 200 OK")
                time.sleep(0.3)
            attack.finish(HEADER_TIMEOUT + 8)
        finally:
            attack.stop.set()
        # Every trickling connection was closed: the ones beyond the pending limit as they
        # came (and as the health checks came), the rest at the deadline, not before it,
        # however many bytes they sent (never at the 30 s idle timeout).
        lifetimes = attack.lifetimes()
        self.assertEqual(len(lifetimes), 64)
        at_deadline = [t for t in lifetimes if t > HEADER_TIMEOUT - 0.5]
        self.assertGreaterEqual(len(at_deadline), PENDING_PER_IP - 3, lifetimes)
        self.assertLessEqual(len(at_deadline), PENDING_PER_IP, lifetimes)
        self.assertLess(max(lifetimes), HEADER_TIMEOUT + 4, lifetimes)
        self.assertGreaterEqual(self.closed_metric("pending_limit") - evicted_before,
                                64 - PENDING_PER_IP)
        self.assertGreaterEqual(self.closed_metric("request_deadline") - late_before,
                                PENDING_PER_IP - 3)
        self.assertIn("certvaultd: closed", self.vault.log())

    def test_many_addresses_do_not_fill_the_server(self):
        # 8 addresses x 8 connections: without a global limit on waiting connections they
        # would hold all 40 of the server's; a ninth address is served.
        attacks = [Trickler(self.vault.port, PENDING_PER_IP, src="127.0.0.%d" % (i + 2))
                   for i in range(8)]
        try:
            self.assertEqual(self.health_from("127.0.0.10"), b"HTTP/1.1 200 OK")
            self.assertEqual(self.health_from("127.0.0.1"), b"HTTP/1.1 200 OK")
        finally:
            for a in attacks:
                a.finish(HEADER_TIMEOUT + 8)
        lifetimes = [t for a in attacks for t in a.lifetimes()]
        self.assertEqual(len(lifetimes), 8 * PENDING_PER_IP)
        self.assertLessEqual(len([t for t in lifetimes if t > HEADER_TIMEOUT - 0.5]), PENDING)
        self.assertLess(max(lifetimes), HEADER_TIMEOUT + 4, lifetimes)

    def test_slow_body_is_closed_at_its_deadline(self):
        attack = Trickler(self.vault.port, 2, body=True)
        attack.finish(HEADER_TIMEOUT + BODY_TIMEOUT + 8)
        lifetimes = attack.lifetimes()
        self.assertEqual(len(lifetimes), 2)
        for t in lifetimes:
            self.assertGreater(t, BODY_TIMEOUT - 0.5, lifetimes)
            self.assertLess(t, BODY_TIMEOUT + 4, lifetimes)

    def test_keep_alive_gets_a_new_deadline_per_request(self):
        # A connection that asks every second is never closed for the deadline of its
        # first request: each answer starts a new one.
        s = socket.create_connection(("127.0.0.1", self.vault.port), timeout=10)
        self.addCleanup(s.close)
        for _ in range(HEADER_TIMEOUT + 2):
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"}" not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "closed while in use")
                data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
            time.sleep(1)
        # Left idle, it is closed at the deadline.
        start = time.monotonic()
        s.settimeout(HEADER_TIMEOUT + 10)
        try:
            self.assertEqual(s.recv(65536), b"")
        except ConnectionResetError:
            pass
        self.assertLess(time.monotonic() - start, HEADER_TIMEOUT + 4)


class ConnectionPoolTest(VaultTestCase):
    """A client with a pool of keep-alive connections (a load balancer, a proxy, wrk -c32)
    opens them in one burst from one address, more than server.max_pending_per_ip (16 by
    default): none of them is taken for a slow client and closed."""

    def test_a_burst_of_keep_alive_connections_is_kept(self):
        st, _, text = self.vault.request("GET", "/metrics")
        self.assertEqual(st, 200)
        closed = r'certvault_http_connections_closed_total\{node="[^"]+",reason="pending_limit"\} (\d+)'
        before = int(re.search(closed, text.decode()).group(1))
        socks = [socket.create_connection(("127.0.0.1", self.vault.port), timeout=10)
                 for _ in range(32)]
        try:
            for _ in range(3):
                for s in socks:
                    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                for s in socks:
                    data = b""
                    while b"}" not in data:
                        chunk = s.recv(65536)
                        self.assertTrue(chunk, "a pooled connection was closed")
                        data += chunk
                    self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
        finally:
            for s in socks:
                s.close()
        st, _, text = self.vault.request("GET", "/metrics")
        self.assertEqual(int(re.search(closed, text.decode()).group(1)), before)


# The highest key-derivation cost certvault takes (CV_X509_MAX_KDF_COST): PBKDF2-HMAC-SHA256
# into an AES-256 key, one block an iteration. Under AddressSanitizer every iteration's
# allocations in OpenSSL go through the sanitizer's allocator, ten times the time: that build
# checks the memory of the same paths with a fifth of the work, the plain build the timing.
with open(CERTVAULTD, "rb") as _f:
    SANITIZED = b"__asan_init" in _f.read()
MAX_ITER = 600000 if SANITIZED else 3000000
SLOW_THREADS = 2
SLOW_QUEUE = 6


def metric(text, name):
    m = re.search(r'^%s\{node="[^"]+"\} (\d+)$' % name, text, re.M)
    return int(m.group(1)) if m else None


class SlowWorkTest(VaultTestCase):
    """Encrypted keys name their own key-derivation cost: capped before anything runs, and
    what is allowed runs on the slow-request threads, never on the ones answering health:
    here one HTTP thread, which any import run on it would hold for seconds."""

    settings = {"CERTVAULT_SERVER_THREADS": "1",
                "CERTVAULT_SERVER_SLOW_THREADS": str(SLOW_THREADS),
                "CERTVAULT_SERVER_SLOW_QUEUE": str(SLOW_QUEUE)}

    def costly_key(self):
        """The test certificate's key under MAX_ITER iterations, as PEM, and its DER."""
        mat = self.material("kdf")
        path = os.path.join(self.tmp, "kdf-enc.der")
        run(["openssl", "pkcs8", "-topk8", "-in", mat.key_path, "-outform", "DER",
             "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-iter", str(MAX_ITER),
             "-passout", "pass:right", "-out", path])
        with open(path, "rb") as f:
            der = f.read()
        return mat, der

    @staticmethod
    def pem(der):
        b = base64.encodebytes(der).decode().replace("\n", "")
        lines = [b[i:i + 64] for i in range(0, len(b), 64)]
        return ("-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + "\n".join(lines) +
                "\n-----END ENCRYPTED PRIVATE KEY-----\n")

    def timed(self, method, path, body=None):
        t = time.monotonic()
        resp = self.vault.request(method, path, body)
        return resp, time.monotonic() - t

    def upload_timed(self, body):
        """POST /v1/certificates as the admin, waiting as long as the queue takes (the
        harness's client gives up after a minute): (status, error code), seconds."""
        t = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.vault.port, timeout=1200)
        try:
            conn.request("POST", "/v1/certificates", body=json.dumps(body).encode(),
                         headers={"Authorization": "Bearer " + self.vault.admin_token,
                                  "Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            return (resp.status, answer.get("error", {}).get("code")), time.monotonic() - t
        except (OSError, ValueError) as e:
            return (None, repr(e)), time.monotonic() - t
        finally:
            conn.close()

    def test_costly_keys_do_not_stall_health(self):
        mat, der = self.costly_key()
        key = self.pem(der)
        baseline = statistics.median(self.timed("GET", "/v1/health")[1] for _ in range(5))

        # Eight uploads at the highest cost allowed, with a wrong password: each runs every
        # iteration before it can fail (so the highest cost is taken: more is refused at
        # once, below).
        results = [None] * 8

        def upload(i):
            results[i] = self.upload_timed({
                "name": "slow-%d" % i, "certificate": mat.cert, "private_key": key,
                "password": "wrong"})
        threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()

        # Once every thread and queue place is taken, one more is refused at once.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.vault.request("GET", "/metrics")[2].decode()
            if (metric(text, "certvault_http_slow_requests_running") == SLOW_THREADS and
                    metric(text, "certvault_http_slow_requests_queued") == SLOW_QUEUE):
                break
            time.sleep(0.02)
        else:
            self.fail("the slow requests never filled the threads and the queue")
        (st, hdrs, body), took = self.timed("POST", "/v1/certificates", {
            "name": "one-too-many", "certificate": mat.cert, "private_key": key,
            "password": "right"})
        self.assertEqual((st, body["error"]["code"]), (503, "busy"), body)
        self.assertIn("server.slow_queue", body["error"]["message"])
        self.assertEqual(hdrs.get("retry-after"), "1")
        # A refused attempt at a change, recorded as any other.
        st, _, audit = self.vault.request("GET", "/v1/audit?action=certificate.import&limit=1000")
        self.assertEqual(st, 200, audit)
        self.assertEqual([(r["outcome"], r["error"]) for r in audit["items"]
                          if r["request_id"] == hdrs["x-request-id"]], [("refused", "busy")])

        # Health, meanwhile, answers as fast as it did before them.
        probes = []
        while any(t.is_alive() for t in threads):
            probes.append(self.timed("GET", "/v1/health")[1])
            time.sleep(0.1)
        for t in threads:
            t.join()
        for answer, _ in results:
            self.assertEqual(answer, (422, "bad_password"))
        slow = statistics.median(t for _, t in results)
        health = statistics.median(probes)
        self.assertGreaterEqual(len(probes), 5)
        self.assertLess(health, max(0.1, 3 * baseline),
                        "health %.3fs (baseline %.3fs) with imports taking %.2fs" %
                        (health, baseline, slow))
        self.assertLess(health * 10, slow)
        if os.environ.get("CV_TEST_FIGURES"):
            print("\nhealth median %.1f ms over %d probes (baseline %.1f ms); imports median "
                  "%.2f s" % (health * 1e3, len(probes), baseline * 1e3, slow))
        text = self.vault.request("GET", "/metrics")[2].decode()
        self.assertGreaterEqual(metric(text, "certvault_http_slow_requests_refused_total"), 1)
        self.assertEqual(metric(text, "certvault_http_slow_requests_running"), 0)
        self.assertEqual(self.vault.request("GET", "/v1/certificates/one-too-many")[0], 404)

        # One above the cap (8,388,607 iterations: the same key with its count rewritten,
        # several uploads' work if it ran) is refused before any iteration, whatever the
        # password.
        field = b"\x02\x03" + MAX_ITER.to_bytes(3, "big")
        self.assertEqual(der.count(field), 1)
        costly = self.pem(der.replace(field, b"\x02\x03\x7f\xff\xff"))
        for password in ("right", "wrong"):
            (st, _, body), took = self.timed("POST", "/v1/certificates", {
                "name": "kdf-over", "certificate": mat.cert, "private_key": costly,
                "password": password})
            self.assertEqual((st, body["error"]["code"]), (422, "limit_exceeded"), body)
            self.assertIn("8388607 rounds", body["error"]["message"])
            self.assertLess(took * 4, slow)
        self.assertEqual(self.vault.request("GET", "/v1/certificates/kdf-over")[0], 404)


if __name__ == "__main__":
    import unittest
    unittest.main()
