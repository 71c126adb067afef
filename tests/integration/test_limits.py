"""Limits on what a client controls (issue 6), seen from a raw socket: request smuggling
framing, a NUL in a query, huge headers, connections per address, slow clients."""

import json
import socket
import time

from harness import VaultTestCase

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
        held = [self.connect() for _ in range(PER_IP)]
        # One request on each: all are served.
        for s in held:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(s.recv(65536).startswith(b"HTTP/1.1 200"))
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


if __name__ == "__main__":
    import unittest
    unittest.main()
