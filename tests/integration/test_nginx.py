"""Issue 16 item 19: the README's nginx setup, run as written. A certificate imported into
certvault is served by Debian's nginx on 127.0.0.1 with `ssl_certificate_key
engine:pkcs11:<the key's whole pkcs11_uri>`, the libp11 engine configured with `init = 1`,
the PIN in a pin-source file without a trailing newline; openssl s_client and curl complete
the handshake (verified against the test CA), which only the key in the token can sign.
This is the reference setup for anything that writes nginx configuration for certvault."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import unittest

from harness import ENGINE_PKCS11, SOFTHSM_MODULE, Material, VaultTestCase, run

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What the README tells an operator to write, with the test's paths filled in.
OPENSSL_CNF = """openssl_conf = openssl_init
[openssl_init]
engines = engines
[engines]
pkcs11 = pkcs11
[pkcs11]
engine_id = pkcs11
dynamic_path = {engine}
MODULE_PATH = {module}
init = 1
"""

NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {dir}/fullchain.pem;
        ssl_certificate_key "engine:pkcs11:{uri};pin-source=file:{pin_file}";
        location / {{ return 200 "served by nginx\\n"; }}
    }}
}}
"""


@unittest.skipUnless(os.path.exists(NGINX), "nginx is not installed (scripts/deps installs it)")
class NginxTest(VaultTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = Material(cls.tmp, "ngx-root", key="p256", cn="nginx test root", ca=True)
        cls.inter = Material(cls.tmp, "ngx-inter", key="p256", cn="nginx test intermediate",
                             ca=True, issuer=cls.root)

    def serve(self, name, key, worker_user=None):
        """Imports a localhost certificate with key type key, starts nginx with its key in
        the token (its workers run as worker_user, by default the test's own user); returns
        (port, material, nginx's directory)."""
        m = Material(self.tmp, name, key=key, cn="localhost", san="localhost",
                     issuer=self.inter)
        st, _, body = self.vault.import_cert(name, m, chain=self.inter.cert)
        self.assertEqual(st, 201, body)
        uri = body["key"]["pkcs11_uri"]
        # The URI names the key by its id: copied whole, not cut down to the label.
        self.assertRegex(uri, r";id=(%[0-9A-Fa-f]{2}){16}")
        d = os.path.join(self.tmp, "nginx-" + name)
        os.makedirs(os.path.join(d, "tmp"))
        st, _, chain = self.vault.request(
            "GET", "/v1/certificates/%s/export?format=chain" % name)
        self.assertEqual(st, 200)
        with open(os.path.join(d, "fullchain.pem"), "wb") as f:
            f.write(chain)
        # libp11 reads the whole file as the PIN: no trailing newline.
        pin_file = os.path.join(d, "user.pin")
        fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, self.vault.pin.encode())
        os.close(fd)
        cnf = os.path.join(d, "openssl.cnf")
        with open(cnf, "w") as f:
            f.write(OPENSSL_CNF.format(engine=ENGINE_PKCS11, module=SOFTHSM_MODULE))
        port = free_port()
        conf = os.path.join(d, "nginx.conf")
        # Run as root, nginx hands its workers to nobody unless told otherwise; nobody
        # cannot read the test's token directory (see the pitfalls test).
        if worker_user is None and os.geteuid() == 0:
            worker_user = "root"
        user = "user %s;" % worker_user if worker_user else ""
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=d, port=port, uri=uri, pin_file=pin_file,
                                      user=user))
        env = dict(self.vault.env(), OPENSSL_CONF=cnf)
        run([NGINX, "-t", "-p", d, "-c", conf], env=env)
        proc = subprocess.Popen([NGINX, "-p", d, "-c", conf], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self.stop, proc)
        deadline = time.time() + 15
        while time.time() < deadline:
            self.assertIsNone(proc.poll(), self.read(os.path.join(d, "error.log")))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return port, m, d
            except OSError:
                time.sleep(0.05)
        self.fail("nginx did not listen:\n" + self.read(os.path.join(d, "error.log")))

    @staticmethod
    def read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @staticmethod
    def stop(proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def handshake(self, port, material):
        p = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
                 "localhost", "-CAfile", self.root.cert_path, "-verify_return_error",
                 "-verify_hostname", "localhost", "-showcerts"], input=b"", check=False)
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out + p.stderr.decode(errors="replace"))
        self.assertIn("Verify return code: 0 (ok)", out)
        served = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                           out, re.S).group(0)
        self.assertEqual(served.strip(), material.cert.strip())
        p = run(["curl", "-sS", "--cacert", self.root.cert_path, "--resolve",
                 "localhost:%d:127.0.0.1" % port, "https://localhost:%d/" % port])
        self.assertEqual(p.stdout, b"served by nginx\n")

    def test_rsa_and_p256_keys_in_the_token_serve_https(self):
        for name, key in (("ngx-rsa", "rsa2048"), ("ngx-p256", "p256")):
            with self.subTest(key=key):
                port, m, d = self.serve(name, key)
                self.handshake(port, m)
                # Twice: the worker keeps its session to the token between handshakes.
                self.handshake(port, m)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run nginx's workers as nobody")
    def test_workers_that_cannot_read_the_token_fail(self):
        """The key loads in nginx's master, but each worker opens the token again after
        fork, as the worker user: one that cannot read the token directory (and the PIN
        file) fails every handshake."""
        port, m, d = self.serve("ngx-nobody", "p256", worker_user="nobody nogroup")
        p = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port], input=b"",
                check=False)
        self.assertNotEqual(p.returncode, 0)
        log = os.path.join(d, "error.log")
        deadline = time.time() + 5
        while "SSL_do_handshake() failed" not in self.read(log) and time.time() < deadline:
            time.sleep(0.05)
        self.assertIn("SSL_do_handshake() failed", self.read(log))

    def test_what_the_readme_warns_about_fails(self):
        """Each pitfall the README names stops `nginx -t`: the engine without `init = 1`
        (nginx loads keys at start, before anything initialises the engine), and a
        pin-source file ending with a newline (libp11 takes the newline as part of the
        PIN)."""
        m = Material(self.tmp, "ngx-pit", key="p256", cn="localhost", san="localhost",
                     issuer=self.inter)
        st, _, body = self.vault.import_cert("ngx-pit", m, chain=self.inter.cert)
        self.assertEqual(st, 201, body)
        d = os.path.join(self.tmp, "nginx-pit")
        os.makedirs(os.path.join(d, "tmp"))
        shutil.copy(m.cert_path, os.path.join(d, "fullchain.pem"))
        for case, pin, init, why in (
                ("init = 0", self.vault.pin, "0", b"not initialised"),
                ("PIN newline", self.vault.pin + "\n", "1", b"ENGINE_load_private_key")):
            with self.subTest(case=case):
                pin_file = os.path.join(d, "user.pin")
                with open(pin_file, "w") as f:
                    f.write(pin)
                os.chmod(pin_file, 0o600)
                cnf = os.path.join(d, "openssl.cnf")
                with open(cnf, "w") as f:
                    f.write(OPENSSL_CNF.format(engine=ENGINE_PKCS11, module=SOFTHSM_MODULE)
                            .replace("init = 1", "init = " + init))
                conf = os.path.join(d, "nginx.conf")
                with open(conf, "w") as f:
                    f.write(NGINX_CONF.format(dir=d, port=free_port(), user="",
                                              uri=body["key"]["pkcs11_uri"],
                                              pin_file=pin_file))
                p = run([NGINX, "-t", "-p", d, "-c", conf],
                        env=dict(self.vault.env(), OPENSSL_CONF=cnf), check=False)
                self.assertNotEqual(p.returncode, 0, p.stderr)
                self.assertIn(why, p.stderr)

if __name__ == "__main__":
    unittest.main()
