"""Installing and running as a service (issue 20): cmake --install into a temporary prefix,
the installed certvaultd started with the installed sample configuration (paths adjusted)
and its PIN as a systemd credential, its sd_notify messages and its reload; the sample
configuration against every setting the code knows; systemd-analyze on the unit; the Debian
package's control data and contents."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BUILD, CERTVAULTD, Material, SOFTHSM_MODULE, record_response, run

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def settings_of(certvaultd):
    """[(section, key, default)] of every setting, as certvaultd --help lists them."""
    out = run([certvaultd, "--help"]).stdout.decode()
    found = re.findall(r"^  \[(\w+)\] (\w+)\s+CERTVAULT_\w+\s+default: (.*)$", out, re.M)
    return [(s, k, "" if d == "(none)" else d) for s, k, d in found]


class InstallTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cv-it-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        run(["cmake", "--install", BUILD, "--prefix", cls.prefix])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_installed_files(self):
        for path in ("bin/certvaultd", "bin/certvault",
                     "share/bash-completion/completions/certvault",
                     "lib/systemd/system/certvaultd.service",
                     "lib/systemd/system/certvault-sync@.service",
                     "etc/certvault/certvault.ini", "etc/certvault/softhsm2.conf",
                     "share/doc/certvault/README.md"):
            with self.subTest(path=path):
                self.assertTrue(os.path.isfile(os.path.join(self.prefix, path)), path)
        self.assertTrue(os.access(os.path.join(self.prefix, "bin/certvaultd"), os.X_OK))
        unit = read(os.path.join(self.prefix, "lib/systemd/system/certvaultd.service"))
        self.assertIn("ExecStart=%s/bin/certvaultd -c %s/etc/certvault/certvault.ini"
                      % (self.prefix, self.prefix), unit)
        self.assertIn("LoadCredential=token-pin:%s/etc/certvault/token-pin" % self.prefix, unit)
        sync = read(os.path.join(self.prefix, "lib/systemd/system/certvault-sync@.service"))
        self.assertIn("ExecStart=%s/bin/certvault " % self.prefix, sync)

    def test_sample_config_has_every_setting_with_its_default(self):
        ini = read(os.path.join(self.prefix, "etc/certvault/certvault.ini"))
        self.assertLess(max(len(line) for line in ini.splitlines()), 200)
        settings = settings_of(os.path.join(self.prefix, "bin/certvaultd"))
        self.assertGreater(len(settings), 40)
        sections = re.split(r"^\[(\w+)\]$", ini, flags=re.M)
        body = dict(zip(sections[1::2], sections[2::2]))
        for section, key, default in settings:
            with self.subTest(setting=section + "." + key):
                self.assertIn(section, body)
                self.assertRegex(body[section], r"(?m)^# %s = %s$" % (
                    re.escape(key), re.escape(default)))
        # The one value a package sets, and no PIN.
        self.assertRegex(body["database"], r"(?m)^path = /var/lib/certvault/certvault\.db$")
        self.assertNotRegex(ini, r"(?m)^pin")

    def test_installed_certvaultd_runs_with_the_sample_config(self):
        """The installed binary, the installed configuration with its paths moved into a
        temporary directory, the PIN handed over as systemd hands a credential, readiness,
        reload and stop told over a NOTIFY_SOCKET as systemd would read them."""
        work = os.path.join(self.tmp, "run")
        state, creds = os.path.join(work, "state"), os.path.join(work, "credentials")
        for d in (state, os.path.join(state, "softhsm"), creds):
            os.makedirs(d, mode=0o700)
        etc = os.path.join(self.prefix, "etc", "certvault")
        ini = os.path.join(work, "certvault.ini")
        with open(os.path.join(etc, "certvault.ini")) as f:
            text = f.read().replace("/var/lib/certvault", state)
        with open(ini, "w") as f:
            f.write(text)
        conf = os.path.join(work, "softhsm2.conf")
        with open(os.path.join(etc, "softhsm2.conf")) as f:
            with open(conf, "w") as out:
                out.write(f.read().replace("/var/lib/certvault", state))
        for name, value in (("token-pin", "1234-upgrade"), ("token-so-pin", "5678-so")):
            fd = os.open(os.path.join(creds, name), os.O_WRONLY | os.O_CREAT, 0o400)
            os.write(fd, value.encode())
            os.close(fd)
        notify_path = os.path.join(work, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify_path)
        sock.settimeout(30)
        daemon = os.path.join(self.prefix, "bin", "certvaultd")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTVAULT_")}
        env.update(SOFTHSM2_CONF=conf, CREDENTIALS_DIRECTORY=creds, NOTIFY_SOCKET=notify_path,
                   CERTVAULT_SERVER_PORT="0")
        run([daemon, "-c", ini, "--init-token"], env=env)
        log_path = os.path.join(work, "certvaultd.log")
        log = open(log_path, "wb")
        proc = subprocess.Popen([daemon, "-c", ini], env=env, stdout=subprocess.DEVNULL,
                                stderr=log)
        try:
            self.assertIn(b"READY=1", sock.recv(4096))
            said = read(log_path)
            port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", said).group(1))
            self.assertIn("database %s/certvault.db" % state, said)
            with open(os.path.join(state, "admin.token")) as f:
                admin = f.read().strip()
            status, body = self.get(port, "/v1/health")
            self.assertEqual(status, 200, body)
            self.assertEqual(body["status"], "ok")
            self.assertEqual(body["token"]["label"], "certvault")
            # Reload: a certificate with 45 days left is valid at the default 30 days,
            # expires soon once the file says 60; a file that does not load changes nothing.
            m = Material(work, "soon", not_after=45 * 86400)
            status, body = self.get(port, "/v1/certificates", admin, {
                "name": "soon", "certificate": m.cert, "private_key": m.key})
            self.assertEqual(status, 201, body)
            self.assertEqual(body["status"], "valid")
            with open(ini, "w") as f:
                f.write(text_with(text, "policy", "expires_soon_days = 60"))
            proc.send_signal(signal.SIGHUP)
            self.assertIn(b"RELOADING=1", sock.recv(4096))
            self.assertIn(b"READY=1", sock.recv(4096))
            status, body = self.get(port, "/v1/certificates/soon", admin)
            self.assertEqual(body["status"], "expires_soon", read(log_path))
            with open(ini, "w") as f:
                f.write(text_with(text, "policy", "expires_soon_days = many"))
            proc.send_signal(signal.SIGHUP)
            self.assertIn(b"RELOADING=1", sock.recv(4096))
            self.assertIn(b"READY=1", sock.recv(4096))
            self.assertIn("the configuration was not reloaded, nothing changed",
                          read(log_path))
            status, body = self.get(port, "/v1/certificates/soon", admin)
            self.assertEqual(body["status"], "expires_soon", body)
            proc.send_signal(signal.SIGTERM)
            self.assertIn(b"STOPPING=1", sock.recv(4096))
            self.assertEqual(proc.wait(timeout=30), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            sock.close()
        # The PIN came from the credential: it is in no file certvaultd wrote.
        for root, _, files in os.walk(state):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    self.assertNotIn(b"1234-upgrade", f.read(), name)

    @staticmethod
    def get(port, path, token=None, body=None):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": "Bearer " + token} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request("POST" if body is not None else "GET", path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = json.loads(resp.read())
        record_response("POST" if body is not None else "GET", path, resp.status,
                        resp.getheader("Content-Type", ""), payload)
        conn.close()
        return resp.status, payload

    def test_unit_passes_systemd_analyze(self):
        """systemd-analyze verify (the unit's syntax, its commands exist) and security (the
        exposure the README states). Skipped only when systemd-analyze is not installed."""
        tool = shutil.which("systemd-analyze")
        if tool is None:
            self.skipTest("systemd-analyze is not installed (Debian's systemd package)")
        unit = os.path.join(self.prefix, "lib/systemd/system/certvaultd.service")
        p = run([tool, "verify", unit], check=False)
        self.assertEqual(p.returncode, 0, p.stderr.decode() + p.stdout.decode())
        self.assertEqual(p.stderr.decode().strip(), "")
        p = run([tool, "security", "--offline=yes", unit], check=False)
        out = p.stdout.decode()
        level = re.search(r"Overall exposure level for certvaultd\.service: ([0-9.]+)", out)
        self.assertIsNotNone(level, out + p.stderr.decode())
        self.assertLessEqual(float(level.group(1)), 1.5, out)

    def test_debian_package(self):
        """cpack -G DEB into a temporary directory; dpkg-deb reads its control data and
        contents."""
        for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
            if shutil.which(tool) is None:
                self.skipTest(tool + " is not installed (cmake, dpkg-dev)")
        out = os.path.join(self.tmp, "deb")
        run(["cpack", "-G", "DEB", "-B", out, "--config",
             os.path.join(BUILD, "CPackConfig.cmake")])
        debs = [f for f in os.listdir(out) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, os.listdir(out))
        deb = os.path.join(out, debs[0])
        info = run(["dpkg-deb", "--info", deb]).stdout.decode()
        self.assertRegex(info, r"(?m)^ Package: certvault$")
        depends = re.search(r"(?m)^ Depends: (.*)$", info).group(1)
        for lib in ("adduser", "libc6", "libssl3", "libsqlite3-0", "libmicrohttpd12",
                    "libjansson4", "libinih1", "libgnutls30", "libcurl4"):
            self.assertIn(lib, depends)
        for script in ("postinst", "prerm", "postrm", "conffiles"):
            self.assertRegex(info, r"\b%s\b" % script)
        contents = run(["dpkg-deb", "--contents", deb]).stdout.decode()
        files = set(line.split()[-1] for line in contents.splitlines())
        for path in ("./usr/bin/certvaultd", "./usr/bin/certvault",
                     "./usr/lib/systemd/system/certvaultd.service",
                     "./usr/lib/systemd/system/certvault-sync@.service",
                     "./etc/certvault/certvault.ini", "./etc/certvault/softhsm2.conf",
                     "./usr/share/bash-completion/completions/certvault"):
            self.assertIn(path, files)
        self.assertFalse([f for f in files if f.startswith("./usr/local")], files)
        ctrl = os.path.join(self.tmp, "ctrl")
        run(["dpkg-deb", "--control", deb, ctrl])
        with open(os.path.join(ctrl, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/certvault/certvault.ini",
                                                "/etc/certvault/softhsm2.conf"])
        with open(os.path.join(ctrl, "postinst")) as f:
            postinst = f.read()
        self.assertIn("adduser --system", postinst)
        self.assertIn("/var/lib/certvault", postinst)
        with open(os.path.join(ctrl, "postrm")) as f:
            self.assertNotIn("rm ", f.read())
        run(["sh", "-n", os.path.join(ctrl, "postinst")])
        unit = run(["dpkg-deb", "--fsys-tarfile", deb]).stdout
        p = subprocess.run(["tar", "-xO", "./usr/lib/systemd/system/certvaultd.service"],
                           input=unit, capture_output=True, check=True)
        self.assertIn(b"ExecStart=/usr/bin/certvaultd -c /etc/certvault/certvault.ini",
                      p.stdout)


def read(path):
    with open(path) as f:
        return f.read()


def text_with(text, section, line):
    """The INI text with line added at the top of section."""
    return text.replace("[%s]\n" % section, "[%s]\n%s\n" % (section, line), 1)


if __name__ == "__main__":
    unittest.main()
