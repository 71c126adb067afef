"""Issue 16 item 10: the PIN at the process level. Given in CERTVAULT_TOKEN_PIN, it is gone
from /proc/PID/environ once certvaultd runs (and the token still logs in with it); a
certvaultd started with core dumps allowed and then killed by SIGABRT or SIGSEGV leaves no
core file, where a control process in the same place and with the same limits leaves one that
holds the PIN."""

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from harness import CERTVAULTD, Certvaultd, Material


def core_files(directory):
    return [f for f in os.listdir(directory) if f.startswith("core")]


class PinProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cv-proc-")
        cls.vault = Certvaultd(cls.tmp)
        # The PIN from the environment only: no file to fall back on.
        cls.vault.settings.update({"CERTVAULT_TOKEN_PIN": cls.vault.pin,
                                   "CERTVAULT_TOKEN_PIN_FILE": ""})
        with open("/proc/sys/kernel/core_pattern") as f:
            cls.core_pattern = f.read().strip()
        cls.old_core_limit = resource.getrlimit(resource.RLIMIT_CORE)

    @classmethod
    def tearDownClass(cls):
        cls.vault.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def start_with_cores_allowed(self, cmd, cwd, env):
        """Starts cmd in cwd with RLIMIT_CORE raised as far as the hard limit allows."""
        hard = self.old_core_limit[1]

        def allow_cores():
            resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, preexec_fn=allow_cores)

    def test_environ_holds_no_pin_and_the_token_logs_in(self):
        self.vault.start()
        try:
            with open("/proc/%d/environ" % self.vault.proc.pid, "rb") as f:
                environ = f.read()
            self.assertIn(b"SOFTHSM2_CONF=", environ)  # the rest of it is still there
        except PermissionError:
            # Not root: an undumpable process's /proc files are root's alone.
            environ = b""
        self.assertNotIn(self.vault.pin.encode(), environ)
        # What it read still logs in: an import creates its key in the token.
        m = Material(self.tmp, "env-pin", san="env-pin.example.com")
        st, _, body = self.vault.import_cert("env-pin", m)
        self.assertEqual(st, 201, body)
        with open("/proc/%d/limits" % self.vault.proc.pid) as f:
            limits = f.read()
        self.assertRegex(limits, r"Max core file size\s+0\s+0\s")
        self.vault.stop()

    def forced_dump(self, sig):
        if self.core_pattern.startswith("|") or "/" in self.core_pattern:
            self.skipTest("core_pattern %r writes cores elsewhere than the process's "
                          "directory" % self.core_pattern)
        if self.old_core_limit[1] == 0:
            self.skipTest("the hard RLIMIT_CORE is 0 here: no process can dump")
        env = self.vault.env()
        # The control: a process holding the PIN the same way, in the same conditions.
        control_dir = tempfile.mkdtemp(dir=self.tmp)
        control = self.start_with_cores_allowed(
            [sys.executable, "-c", "import os, sys, time; pin = os.environ"
             "['CERTVAULT_TOKEN_PIN'].encode(); print('ready', flush=True); time.sleep(60)"],
            control_dir, env)
        time.sleep(0.3)
        control.send_signal(sig)
        control.wait(timeout=60)
        cores = core_files(control_dir)
        if not cores:
            self.skipTest("this kernel wrote no core for the control process either")
        with open(os.path.join(control_dir, cores[0]), "rb") as f:
            self.assertIn(self.vault.pin.encode(), f.read())
        shutil.rmtree(control_dir)

        run_dir = tempfile.mkdtemp(dir=self.tmp)
        proc = self.start_with_cores_allowed([CERTVAULTD], run_dir, env)
        deadline = time.time() + 30
        line = b""
        while time.time() < deadline and b"listening on http" not in line:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
        self.assertIn(b"listening on http", line, "certvaultd did not start")
        proc.send_signal(sig)
        proc.stderr.close()
        rc = proc.wait(timeout=60)
        self.assertNotEqual(rc, 0)
        self.assertEqual(core_files(run_dir), [])

    def test_sigabrt_leaves_no_core(self):
        self.forced_dump(signal.SIGABRT)

    def test_sigsegv_leaves_no_core(self):
        self.forced_dump(signal.SIGSEGV)


if __name__ == "__main__":
    unittest.main()
