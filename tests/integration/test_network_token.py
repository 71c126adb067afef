"""The token reached over a socket (issue 15): SoftHSM behind `p11-kit server`, certvaultd using
`p11-kit-client.so` as its module, the shape of a network HSM. Keys made through the socket are
the server's token's objects with the same attributes; openssl uses them through the libp11
engine over the same socket; the server going away makes the token unavailable (503) and its
return brings certvaultd back without a restart."""

import os
import re
import signal
import subprocess
import time
import unittest

from harness import ENGINE_PKCS11, Certvaultd, Material, run
import harness

CLIENT_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"


class NetworkTokenTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.tmp = tempfile.mkdtemp(prefix="cv-net-")
        cls.socket = os.path.join(cls.tmp, "pkcs11.sock")
        cls.address = "unix:path=" + cls.socket
        # The token is initialised on the server's side (certvaultd --init-token with SoftHSM
        # itself), then served: every certvaultd request goes through the socket.
        cls.vault = Certvaultd(cls.tmp)
        cls.vault.settings.update({"CERTVAULT_TOKEN_MODULE": CLIENT_MODULE,
                                   "P11_KIT_SERVER_ADDRESS": cls.address})
        cls.server = None
        cls.start_server()
        cls.vault.start()
        cls.openssl_conf = os.path.join(cls.tmp, "openssl-pkcs11.cnf")
        with open(cls.openssl_conf, "w") as f:
            f.write("openssl_conf = openssl_init\n[openssl_init]\nengines = engines\n"
                    "[engines]\npkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\n"
                    "dynamic_path = %s\nMODULE_PATH = %s\ninit = 0\n"
                    % (ENGINE_PKCS11, CLIENT_MODULE))

    @classmethod
    def start_server(cls):
        if os.path.exists(cls.socket):
            os.unlink(cls.socket)
        env = dict(os.environ, SOFTHSM2_CONF=cls.vault.softhsm_conf)
        cls.server_log = open(os.path.join(cls.tmp, "p11-kit-server.log"), "ab")
        cls.server = subprocess.Popen(
            ["p11-kit", "server", "-f", "-n", cls.socket, "--provider", harness.SOFTHSM_MODULE,
             "pkcs11:token=" + cls.vault.label],
            env=env, stdout=cls.server_log, stderr=cls.server_log, start_new_session=True)
        deadline = time.time() + 10
        while not os.path.exists(cls.socket):
            if cls.server.poll() is not None or time.time() > deadline:
                raise AssertionError("p11-kit server did not start")
            time.sleep(0.02)

    @classmethod
    def stop_server(cls):
        # p11-kit server serves each connection from a child process: the whole group goes,
        # as the connection does when a network HSM goes away.
        if cls.server is not None:
            try:
                os.killpg(cls.server.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            cls.server.wait(timeout=10)
        cls.server = None
        cls.server_log.close()

    @classmethod
    def tearDownClass(cls):
        rc = cls.vault.stop()
        log = cls.vault.log()
        cls.stop_server()
        if rc != 0 or "ERROR: AddressSanitizer" in log or "runtime error:" in log:
            raise AssertionError("certvaultd exited %s:\n%s" % (rc, log[-4000:]))

    def client_env(self, **extra):
        return dict(os.environ, P11_KIT_SERVER_ADDRESS=self.address, CV_TEST_PIN=self.vault.pin,
                    **extra)

    def client_objects(self):
        """The token's objects as a client of the server lists them."""
        p = run(["pkcs11-tool", "--module", CLIENT_MODULE, "--token-label", self.vault.label,
                 "--login", "--pin", "env:CV_TEST_PIN", "--list-objects"], env=self.client_env())
        return p.stdout.decode()

    def key_block(self, listing, kind, key_id):
        for b in re.split(r"\n(?=\S)", listing):
            if b.startswith(kind) and re.search(r"ID:\s*" + key_id, b):
                return b
        return None

    def import_key(self, name, key):
        m = Material(self.tmp, name, key=key, san=name + ".example.com")
        st, _, body = self.vault.import_cert(name, m)
        self.assertEqual(st, 201, body)
        return m, body

    def test_0_softhsm_behind_the_server_makes_keys_one_at_a_time(self):
        # The module is p11-kit's client, but the token behind it says it is SoftHSM 2.6,
        # whose creates race: token.serialize_creates = auto orders them.
        self.assertRegex(self.vault.log(), r"keys made and destroyed in the token one at a "
                         r"time \(token.serialize_creates = auto; the module is PKCS#11 Kit "
                         r"[0-9.]+, the token SoftHSM project 2\.6, whose file store fails")

    def test_1_keys_made_over_the_socket_are_sensitive_and_sign_only(self):
        for key in ("p256", "rsa2048"):
            with self.subTest(key=key):
                m, body = self.import_key("net-" + key, key)
                # The server's token holds it (read with SoftHSM directly, not the socket)...
                self.assertIsNotNone(self.key_block(self.vault.token_objects(),
                                                    "Private Key Object", body["key"]["id"]))
                # ...and a client of the server reads back what certvaultd asked for.
                block = self.key_block(self.client_objects(), "Private Key Object",
                                       body["key"]["id"])
                self.assertIsNotNone(block)
                access = re.search(r"Access:\s*(.*)", block).group(1)
                self.assertIn("sensitive", access)
                self.assertNotIn("extractable,", access.replace("never extractable", ""))
                self.assertEqual(re.search(r"Usage:\s*(.*)", block).group(1).strip(), "sign")
                # openssl signs with it through the libp11 engine over the same socket.
                data = os.path.join(self.tmp, key + ".msg")
                with open(data, "w") as f:
                    f.write("signed over the socket\n")
                sig, pub = data + ".sig", data + ".pub"
                run(["openssl", "dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine",
                     "-sign", body["key"]["pkcs11_uri"] + ";pin-value=" + self.vault.pin,
                     "-out", sig, data], env=self.client_env(OPENSSL_CONF=self.openssl_conf))
                st, _, pem = self.vault.request(
                    "GET", "/v1/certificates/net-%s/export?format=public-key" % key)
                self.assertEqual(st, 200)
                with open(pub, "wb") as f:
                    f.write(pem)
                p = run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", sig, data])
                self.assertIn(b"Verified OK", p.stdout)

    def test_2_generate_and_delete_over_the_socket(self):
        st, _, body = self.vault.request("POST", "/v1/certificates", {
            "name": "net-generated",
            "generate": {"key": "p256", "subject": "CN=net.example.com",
                         "dns_names": ["net.example.com"], "self_signed": True, "days": 30}})
        self.assertEqual(st, 201, body)
        key_id = body["key"]["id"]
        self.assertEqual(body["key"]["origin"], "generated")
        self.assertIsNotNone(self.key_block(self.client_objects(), "Private Key Object", key_id))
        st, _, body = self.vault.request("DELETE", "/v1/certificates/net-generated?confirm=delete")
        self.assertIn(st, (200, 204), body)
        listing = self.client_objects()
        self.assertIsNone(self.key_block(listing, "Private Key Object", key_id))
        self.assertIsNone(self.key_block(listing, "Public Key Object", key_id))

    def test_3_server_gone_then_back(self):
        self.stop_server()
        try:
            m = Material(self.tmp, "net-while-down", key="p256", san="down.example.com")
            st, _, body = self.vault.import_cert("net-while-down", m)
            self.assertEqual(st, 503, body)
            self.assertEqual(body["error"]["code"], "token_unavailable")
            st, _, body = self.vault.request("GET", "/v1/health")
            self.assertEqual(st, 503, body)
            # Nothing was kept of the refused import.
            st, _, _ = self.vault.request("GET", "/v1/certificates/net-while-down")
            self.assertEqual(st, 404)
        finally:
            self.start_server()
        # Back without restarting certvaultd: its recovery opens the module again.
        deadline = time.time() + 30
        while True:
            st, _, body = self.vault.request("GET", "/v1/health")
            if st == 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(st, 200, body)
        self.import_key("net-after", "p256")
        st, _, body = self.vault.request("GET", "/v1/certificates/net-p256/export?format=jwk")
        self.assertEqual(st, 200, body)


if __name__ == "__main__":
    unittest.main()
