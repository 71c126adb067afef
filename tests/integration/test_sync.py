"""Integration test of `certvault sync`, the deploy agent, with a real nginx (Debian's) serving
HTTPS with the key in the SoftHSM token through the libp11 engine, set up as the README's
nginx guide says: the engine section with init = 1, the PIN from a file without a line break
(pin-source), the URI copied whole. The agent writes the chain and the snippet, nginx serves
the vault's certificate; a renewal through the API reaches nginx without anyone touching its
files; a reload command that fails leaves the previous files and nginx's certificate; the agent
survives certvaultd restarting."""

import os
import shutil
import socket
import subprocess
import time
import unittest

from harness import BUILD, ENGINE_PKCS11, SOFTHSM_MODULE, VaultTestCase, run

CLI = os.path.join(BUILD, "certvault")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_fingerprint(port):
    """The SHA-256 fingerprint of the certificate nginx serves, or None."""
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost"], input=b"", capture_output=True,
                       timeout=20)
    if b"BEGIN CERTIFICATE" not in p.stdout:
        return None
    f = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
                       input=p.stdout, capture_output=True, timeout=20)
    return f.stdout.decode().strip().split("=", 1)[1]


def read(path):
    with open(path) as f:
        return f.read()


def file_fingerprint(path):
    out = run(["openssl", "x509", "-in", path, "-noout", "-fingerprint", "-sha256"])
    return out.stdout.decode().strip().split("=", 1)[1]


@unittest.skipUnless(os.path.exists(NGINX) and os.path.exists(ENGINE_PKCS11),
                     "nginx and the libp11 engine are installed by scripts/deps")
class TestSyncWithNginx(VaultTestCase):

    settings = {"CERTVAULT_SERVER_PORT": str(free_port())}

    def setUp(self):
        self.dir = os.path.join(self.tmp, "deploy")
        self.ngx = os.path.join(self.tmp, "nginx")
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(os.path.join(self.ngx, "logs"), exist_ok=True)
        # libp11's pin-source reads the whole file: no line break at its end.
        self.pin_source = os.path.join(self.tmp, "engine.pin")
        fd = os.open(self.pin_source, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, self.vault.pin.encode())
        os.close(fd)
        self.openssl_conf = os.path.join(self.tmp, "engine.cnf")
        with open(self.openssl_conf, "w") as f:
            f.write("openssl_conf = init\n[init]\nengines = engines\n[engines]\n"
                    "pkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\n"
                    "dynamic_path = %s\nMODULE_PATH = %s\ninit = 1\n"
                    % (ENGINE_PKCS11, SOFTHSM_MODULE))
        self.port = free_port()
        self.conf = os.path.join(self.ngx, "nginx.conf")
        # Run as root here (the test's user): the worker user must be able to read the
        # token's directory, which this test's temporary directory only lets root do.
        user = "user root;\n" if os.geteuid() == 0 else ""
        with open(self.conf, "w") as f:
            f.write(user + "worker_processes 1;\npid %s/nginx.pid;\n"
                    "error_log %s/logs/error.log;\nenv SOFTHSM2_CONF;\nenv OPENSSL_CONF;\n"
                    "events { worker_connections 64; }\n"
                    "http {\n access_log off;\n"
                    " client_body_temp_path %s/tmp; proxy_temp_path %s/tmp;\n"
                    " fastcgi_temp_path %s/tmp; uwsgi_temp_path %s/tmp;"
                    " scgi_temp_path %s/tmp;\n"
                    " server {\n  listen 127.0.0.1:%d ssl;\n  server_name localhost;\n"
                    "  include %s/site.nginx.conf;\n  location / { return 200 \"ok\\n\"; }\n"
                    " }\n}\n" % ((self.ngx,) * 7 + (self.port, self.dir)))
        os.makedirs(os.path.join(self.ngx, "tmp"), exist_ok=True)
        self.env = dict(os.environ, SOFTHSM2_CONF=self.vault.softhsm_conf,
                        OPENSSL_CONF=self.openssl_conf,
                        CERTVAULT_URL="http://127.0.0.1:%d" % self.vault.port,
                        CERTVAULT_TOKEN=self.vault.admin_token)
        # The command line and agent never load the engine: only nginx (and the reload command,
        # which parses nginx's configuration) gets OPENSSL_CONF.
        self.cli_env = {k: v for k, v in self.env.items() if k != "OPENSSL_CONF"}
        self.agent = None
        self.nginx_started = False

    def tearDown(self):
        self.stop_agent()
        if self.nginx_started:
            subprocess.run([NGINX, "-p", self.ngx, "-c", self.conf, "-s", "stop"],
                           env=self.env, capture_output=True, timeout=30)

    def reload_cmd(self):
        return "OPENSSL_CONF=%s %s -p %s -c %s -s reload" % (self.openssl_conf, NGINX, self.ngx,
                                                            self.conf)

    def sync(self, *args, check=True):
        p = subprocess.run([CLI, "sync", "--service", "site", "--dir", self.dir,
                            "--format", "nginx", "--pin-source", self.pin_source] + list(args),
                           env=self.cli_env, capture_output=True, timeout=60)
        if check:
            self.assertEqual(p.returncode, 0, p.stderr.decode())
        return p

    def start_agent(self, exec_cmd):
        self.agent_log = open(os.path.join(self.tmp, "agent.log"), "ab")
        self.agent = subprocess.Popen(
            [CLI, "sync", "--service", "site", "--dir", self.dir, "--format", "nginx",
             "--pin-source", self.pin_source, "--exec", exec_cmd],
            env=self.cli_env, stdout=self.agent_log, stderr=self.agent_log)

    def stop_agent(self):
        if self.agent is not None:
            self.agent.terminate()
            self.assertEqual(self.agent.wait(timeout=30), 0)
            self.agent = None
            self.agent_log.close()

    def agent_output(self):
        with open(os.path.join(self.tmp, "agent.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def renew(self, name, version):
        m = self.material("%s-v%d" % (name, version + 1), san="localhost")
        st, _, body = self.vault.request("POST", "/v1/certificates/%s/renew" % name,
                                         {"certificate": m.cert, "private_key": m.key,
                                          "version": version})
        self.assertEqual(st, 200, body)
        return body["fingerprints"]["sha256"]

    def wait_served(self, fingerprint, seconds):
        deadline = time.time() + seconds
        seen = None
        while time.time() < deadline:
            seen = served_fingerprint(self.port)
            if seen == fingerprint:
                return time.time()
            time.sleep(0.1)
        self.fail("nginx serves %s, not %s, after %d s; agent said:\n%s\nnginx said:\n%s" % (
            seen, fingerprint, seconds, self.agent_output(), self.nginx_errors()))

    def nginx_errors(self):
        try:
            with open(os.path.join(self.ngx, "logs", "error.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def test_agent_keeps_nginx_in_step(self):
        m = self.material("web", san="localhost")
        st, _, body = self.vault.import_cert("web", m)
        self.assertEqual(st, 201, body)
        v1 = body["fingerprints"]["sha256"]
        st, _, body = self.vault.request("PUT", "/v1/services/site",
                                         {"environment": "production", "domains": ["localhost"]})
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("PUT", "/v1/services/site/certificate",
                                         {"certificate": "web"})
        self.assertEqual(st, 200, body)

        # First round before nginx runs: --once writes the files, with no reload.
        self.sync("--once")
        uri = read(os.path.join(self.dir, "site.key.uri"))
        details = self.vault.request("GET", "/v1/certificates/web")[2]
        self.assertTrue(uri.startswith(details["key"]["pkcs11_uri"]), uri)
        self.assertEqual(file_fingerprint(os.path.join(self.dir, "site.crt")), v1)
        snippet = read(os.path.join(self.dir, "site.nginx.conf"))
        self.assertIn('ssl_certificate_key "engine:pkcs11:%s' % details["key"]["pkcs11_uri"],
                      snippet)
        for name in os.listdir(self.dir):  # never a private key
            with open(os.path.join(self.dir, name), "rb") as f:
                self.assertNotIn(b"PRIVATE KEY", f.read(), name)

        p = subprocess.run([NGINX, "-p", self.ngx, "-c", self.conf], env=self.env,
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode() + self.nginx_errors())
        self.nginx_started = True
        self.wait_served(v1, 10)

        # The agent runs; a renewal in the vault reaches nginx by itself.
        self.start_agent(self.reload_cmd())
        time.sleep(1.5)
        self.assertNotIn("reloaded", self.agent_output())  # in step: nothing to do
        renewed_at = time.time()
        v2 = self.renew("web", 1)
        served_at = self.wait_served(v2, 10)
        # The agent long-polls the service (its --interval is the default 30 s): the renewal
        # reaches nginx in about a second, not an interval.
        self.assertLess(served_at - renewed_at, 5.0, self.agent_output())
        self.assertTrue(os.path.exists(os.path.join(self.dir, "site.crt.prev")))
        self.assertEqual(file_fingerprint(os.path.join(self.dir, "site.crt.prev")), v1)

        # certvaultd restarts under the agent: it keeps going and follows the next renewal.
        self.vault.stop()
        time.sleep(1.5)
        self.vault.start()
        self.cli_env["CERTVAULT_TOKEN"] = self.vault.admin_token
        self.assertIsNone(self.agent.poll(), self.agent_output())
        v3 = self.renew("web", 2)
        self.wait_served(v3, 15)
        self.stop_agent()

        # A reload command that fails: the files go back to the previous ones and nginx keeps
        # serving the previous certificate.
        self.start_agent("exit 7")
        v4 = self.renew("web", 3)
        deadline = time.time() + 15
        while "reload command failed" not in self.agent_output() and time.time() < deadline:
            time.sleep(0.2)
        self.assertIn("reload command failed", self.agent_output())
        self.stop_agent()
        self.assertEqual(file_fingerprint(os.path.join(self.dir, "site.crt")), v3)
        self.assertEqual(served_fingerprint(self.port), v3)
        self.assertNotEqual(v3, v4)
        # With a working reload the next agent catches up.
        p = self.sync("--once", "--exec", self.reload_cmd())
        self.assertIn("reloaded", p.stderr.decode())
        self.wait_served(v4, 10)

    def test_long_poll(self):
        """GET /v1/services/{name}?wait=N with If-None-Match: held while unchanged, answered
        304 when the wait is over, 200 at once when the service's certificate changes."""
        import threading
        m = self.material("lp", san="lp.example.com")
        self.assertEqual(self.vault.import_cert("lp", m)[0], 201)
        self.assertEqual(self.vault.request("PUT", "/v1/services/lp-site", {
            "environment": "production", "domains": ["lp.example.com"]})[0], 201)
        self.assertEqual(self.vault.request("PUT", "/v1/services/lp-site/certificate",
                                            {"certificate": "lp"})[0], 200)
        st, h, _ = self.vault.request("GET", "/v1/services/lp-site")
        etag = h["etag"]
        started = time.time()
        st, _, _ = self.vault.request("GET", "/v1/services/lp-site?wait=2",
                                      headers={"If-None-Match": etag})
        self.assertEqual(st, 304)
        self.assertGreaterEqual(time.time() - started, 1.9)
        # Without If-None-Match (or with another tag) the answer is at once.
        started = time.time()
        st, _, _ = self.vault.request("GET", "/v1/services/lp-site?wait=20")
        self.assertEqual(st, 200)
        self.assertLess(time.time() - started, 5)
        st, _, body = self.vault.request("GET", "/v1/services/lp-site?wait=0",
                                         headers={"If-None-Match": etag})
        self.assertEqual(st, 400, body)
        # A renewal while a poll waits: answered 200 with the new version long before its end.
        m2 = self.material("lp2", san="lp.example.com")
        threading.Timer(1.0, lambda: self.vault.request(
            "POST", "/v1/certificates/lp/renew",
            {"certificate": m2.cert, "private_key": m2.key})).start()
        started = time.time()
        st, _, body = self.vault.request("GET", "/v1/services/lp-site?wait=20",
                                         headers={"If-None-Match": etag})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["certificate"]["version"], 2)
        self.assertLess(time.time() - started, 10)

    def test_usage(self):
        for args in ([], ["--service", "site"], ["--service", "site", "--dir", "relative"],
                     ["--service", "site", "--dir", self.dir, "--format", "apache"],
                     ["--service", "site", "--dir", self.dir, "--interval", "0s"]):
            p = subprocess.run([CLI, "sync"] + args, env=self.cli_env, capture_output=True,
                               timeout=30)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
        # An unknown service: --once exits 3 after saying what the API said.
        p = subprocess.run([CLI, "sync", "--service", "nope", "--dir", self.dir, "--once"],
                           env=self.cli_env, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("404", p.stderr.decode())


if __name__ == "__main__":
    unittest.main()
