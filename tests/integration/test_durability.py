"""Issue 21: an acknowledged import survives a power cut.

SoftHSM's file store never syncs, so certvault makes the token's files durable itself after
every key create or destroy, before the database commit that depends on it. A power cut cannot
be simulated here (SIGKILL keeps the page cache), so the order is proven from the system calls:
certvaultd runs under strace, and the trace must show the key's own files and the token's
directory fsynced after SoftHSM wrote (or unlinked) them and before the same thread writes its
next commit to SQLite's WAL, the commit that names (or forgets) the key (with group commit,
another thread's WAL sync may come between: it holds none of that commit's frames). The same trace with
token.sync_dir = none must fail that check, so the check can fail.

And the orphan report: key objects with certvault's id marker that no row names are reported
at start and destroyed only with token.destroy_orphan_keys; objects other tools made (another
id, or a secret key even with the marker) are never reported nor touched."""

import http.client
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from harness import CERTVAULTD, SOFTHSM_MODULE, Certvaultd, Material, run

MARKER = "63766b01a75e"  # CV_TOKEN_ID_MARKER, include/certvault/token.h
TRACED = "trace=write,pwrite64,ftruncate,unlink,unlinkat,rename,fsync,fdatasync,syncfs"
LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
FD_PATH = re.compile(r"^\d+<([^>]*)>")


def parse_trace(path, token_dir):
    """The events that matter, in the order they happened: (kind, path, thread) with kind
    one of change (SoftHSM wrote, truncated or unlinked a file of the token), sync (a file or
    the directory of the token fsynced, or a syncfs; counted when it returned) and walwrite
    (a thread wrote a commit's frames to SQLite's WAL)."""
    events = []
    pending = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid, resumed, call, rest = m.groups()
            if resumed is not None:
                call, args = pending.pop(pid, (resumed, ""))
                done = True
            else:
                args = rest
                done = "<unfinished ...>" not in rest
                if not done:
                    pending[pid] = (call, rest)
            fd = FD_PATH.match(args)
            target = fd.group(1) if fd else None
            if call in ("unlink", "unlinkat"):
                s = re.search(r'"([^"]*)"', args)
                target = s.group(1) if s else None
            under_token = target is not None and target.startswith(token_dir + "/")
            if call in ("write", "pwrite64", "ftruncate", "unlink", "unlinkat") and done:
                if under_token:
                    events.append(("change", target, pid))
                elif call in ("write", "pwrite64") and target is not None and \
                        target.endswith("certvault.db-wal"):
                    events.append(("walwrite", target, pid))
            elif call in ("fsync", "fdatasync") and done and target is not None:
                if under_token:
                    events.append(("sync", target, pid))
            elif call == "syncfs" and done:
                events.append(("sync", "syncfs", pid))
    return events


def order_problem(events, start, what):
    """None when the first token change of kind what ('object written' for a create,
    'unlinked' for a destroy) at or after index start is made durable before the commit that
    depends on it; else what is wrong. Returns (problem, index of that commit). The commit
    that depends on it is the next one the same thread writes to the WAL: with group commit
    another thread's WAL sync (an unrelated write's, or one made for several commits) may
    come between, and it holds none of this change's frames."""
    first = None
    for i in range(start, len(events)):
        kind, path, _ = events[i]
        # token.object is the token's own record (its login writes it), not a key.
        if kind == "change" and path.endswith(".object") and \
                os.path.basename(path) != "token.object":
            first = i
            break
    if first is None:
        return "no key object file of the token changed", len(events)
    commit = next((i for i in range(first, len(events))
                   if events[i][0] == "walwrite" and events[i][2] == events[first][2]), None)
    if commit is None:
        return "no database commit after the key's files changed", len(events)
    changes = [i for i in range(first, commit) if events[i][0] == "change"]
    last_change = max(changes)
    synced = {events[i][1] for i in range(last_change + 1, commit) if events[i][0] == "sync"}
    if "syncfs" in synced:
        return None, commit
    objects = {events[i][1] for i in changes if events[i][1].endswith(".object") and
               os.path.basename(events[i][1]) != "token.object"}
    dirs = {os.path.dirname(p) for p in objects}
    missing = []
    if what == "object written":
        # Each file of the new key, as it was when SoftHSM last wrote it.
        missing += sorted(p for p in objects if os.path.exists(p) and p not in synced)
    # A created or removed file is durable when its directory is.
    missing += sorted(d for d in dirs if d not in synced)
    if missing:
        return ("not synced between the token's last change (event %d) and the commit "
                "(event %d): %s" % (last_change, commit, ", ".join(missing))), commit
    return None, commit


# The node heartbeat (issue 15) is a commit of its own every server.node_lease_seconds / 3:
# where a test counts commits and syncs, or traces them, a lease of an hour keeps it out.
QUIET_NODE = {"CERTVAULT_SERVER_NODE_LEASE_SECONDS": "3600"}


class SyncOrder(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cv-it-")
        self.vault = Certvaultd(self.tmp, QUIET_NODE)

    def tearDown(self):
        self.vault.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def traced_pid(self):
        with open("/proc/%d/task/%d/children" % (self.vault.proc.pid, self.vault.proc.pid)) as f:
            return int(f.read().split()[0])

    def stop_traced(self):
        """Stops certvaultd under strace: SIGTERM to certvaultd itself (strace does not pass
        it on); strace exits with certvaultd's status."""
        proc = self.vault.proc
        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
            child = int(f.read().split()[0])
        os.kill(child, signal.SIGTERM)
        rc = proc.wait(timeout=60)
        self.vault.proc = None
        self.vault.logf.close()
        return rc

    def traced_import_and_delete(self, settings):
        """Imports and deletes one certificate under strace; returns the events and
        certvaultd's log."""
        trace = os.path.join(self.tmp, "trace-%s" % secrets.token_hex(4))
        self.vault.settings.update(settings)
        # The first start makes the audit chain's key (synced too): done untraced, so that
        # the first key object file the trace sees written is the import's.
        self.vault.start()
        self.assertEqual(self.vault.stop(), 0, self.vault.log())
        # LeakSanitizer cannot run under ptrace (it aborts at exit): no leak check here, the
        # other suites make it.
        asan = os.environ.get("ASAN_OPTIONS")
        if asan is not None:
            self.vault.settings["ASAN_OPTIONS"] = asan + ":detect_leaks=0"
        self.vault.start(prefix=["strace", "-f", "-qq", "-y", "-s", "200", "-o", trace,
                                 "-e", TRACED])
        m = Material(self.tmp, "durable")
        st, _, body = self.vault.import_cert("durable", m)
        self.assertEqual(st, 201, body)
        st, _, body = self.vault.request("DELETE", "/v1/certificates/durable?confirm=delete")
        self.assertEqual(st, 200, body)
        log = self.vault.log()
        self.assertEqual(self.stop_traced(), 0, log)
        return parse_trace(trace, self.vault.token_dir), log

    def test_sync_after_create_and_destroy_before_commit(self):
        events, log = self.traced_import_and_delete({})
        mode = re.search(r"made durable before each commit that depends on them: (.*) under "
                         + re.escape(self.vault.token_dir) + " ", log)
        self.assertIsNotNone(mode, log)
        # File by file; a syncfs only when inotify is out of instances (they are per user,
        # and this machine runs many certvaultds).
        self.assertIn(mode.group(1), ("fsync of the changed files", "syncfs"))
        # Import: the pending row's commit, the key's two objects, their sync, activation.
        problem, commit = order_problem(events, 0, "object written")
        self.assertIsNone(problem)
        # Delete: the mark's commit, the objects unlinked, the directory synced, the removal.
        problem, _ = order_problem(events, commit + 1, "unlinked")
        self.assertIsNone(problem)
        if mode.group(1) == "syncfs":
            self.assertEqual([p for k, p, _ in events if k == "sync"], ["syncfs"] * 2)
            return
        synced = [p for k, p, _ in events[:commit] if k == "sync"]
        self.assertTrue(any(p.endswith(".object") for p in synced), synced)
        # One sync of the directory per dependent commit, not one per object.
        dir_syncs = [p for k, p, _ in events
                     if k == "sync" and os.path.dirname(p) == self.vault.token_dir]
        self.assertEqual(len(dir_syncs), 2, dir_syncs)

    def test_without_sync_the_check_fails(self):
        events, log = self.traced_import_and_delete({"CERTVAULT_TOKEN_SYNC_DIR": "none"})
        self.assertIn("made durable before each commit that depends on them: none "
                      "(token.sync_dir = none)", log)
        problem, commit = order_problem(events, 0, "object written")
        self.assertIsNotNone(problem)
        problem, _ = order_problem(events, commit + 1, "unlinked")
        self.assertIsNotNone(problem)


class SyncSettings(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cv-it-")
        self.vault = Certvaultd(self.tmp)

    def tearDown(self):
        self.vault.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def refused(self, env):
        p = run([CERTVAULTD], env=self.vault.env(env), check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        return p.stderr.decode()

    def test_missing_directory_refuses_to_start(self):
        err = self.refused({"CERTVAULT_TOKEN_SYNC_DIR": os.path.join(self.tmp, "nowhere")})
        self.assertIn("token.sync_dir: %s is not a directory" %
                      os.path.join(self.tmp, "nowhere"), err)

    def test_explicit_directory_and_other_modules(self):
        self.vault.settings["CERTVAULT_TOKEN_SYNC_DIR"] = self.vault.token_dir
        self.vault.start()
        self.assertIn("fsync of the changed files under %s (token.sync_dir)" %
                      self.vault.token_dir, self.vault.log())
        self.vault.stop()
        # A module that is not SoftHSM (the same library under another name, as a vendor's
        # would be) gets no sync by default: its answer is durable.
        vendor = os.path.join(self.tmp, "libvendor-hsm.so")
        os.symlink(SOFTHSM_MODULE, vendor)
        del self.vault.settings["CERTVAULT_TOKEN_SYNC_DIR"]
        self.vault.settings["CERTVAULT_TOKEN_MODULE"] = vendor
        self.vault.start()
        self.assertIn("made durable before each commit that depends on them: none: the "
                      "module is not SoftHSM", self.vault.log())


class Orphans(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cv-it-")
        self.vault = Certvaultd(self.tmp)

    def tearDown(self):
        self.vault.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def p11(self, *args):
        return run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label",
                    self.vault.label, "--login", "--pin", "env:CV_TEST_PIN"] + list(args),
                   env=dict(self.vault.env(), CV_TEST_PIN=self.vault.pin)).stdout.decode()

    def ids(self, kind):
        """The CKA_IDs (hex) of the token's objects of kind ('Private Key Object'...)."""
        found, current = [], None
        for line in self.p11("--list-objects").splitlines():
            if not line.startswith(" "):
                current = line
            m = re.match(r"\s+ID:\s+([0-9a-f]+)", line)
            if m and current is not None and current.startswith(kind):
                found.append(m.group(1))
        return sorted(found)

    def write_key(self, name, kind, key_id):
        m = Material(self.tmp, name)
        der = os.path.join(self.tmp, name + ".der")
        if kind == "privkey":
            with open(der, "wb") as f:
                f.write(m.key_der())
        else:
            run(["openssl", "pkey", "-in", m.key_path, "-pubout", "-outform", "DER",
                 "-out", der])
        self.p11("--write-object", der, "--type", kind, "--id", key_id, "--label", name)

    def test_marked_objects_reported_destroyed_only_when_allowed(self):
        self.vault.start()
        st, _, body = self.vault.import_cert("kept", Material(self.tmp, "kept"))
        self.assertEqual(st, 201, body)
        self.vault.stop()
        kept = self.ids("Private Key Object")
        self.assertEqual(len(kept), 1)
        self.assertTrue(kept[0].startswith(MARKER), kept)
        # Marked key objects no row names: a key pair's private half and a public key alone.
        orphan = MARKER + secrets.token_hex(10)
        orphan_pub = MARKER + secrets.token_hex(10)
        self.write_key("orphan", "privkey", orphan)
        self.write_key("orphan-pub", "pubkey", orphan_pub)
        # Other tools' objects: a key with an id of its own, and a secret key that carries
        # the marker (the audit chain's HMAC key is a secret key): never reported, never
        # touched.
        foreign = secrets.token_hex(16)
        self.write_key("foreign", "privkey", foreign)
        secret = MARKER + secrets.token_hex(10)
        self.p11("--keygen", "--key-type", "AES:32", "--id", secret, "--label", "hmac")
        before_secret = self.ids("Secret Key Object")
        # The audit chain's HMAC key is one too, made at the first start.
        self.assertIn(secret, before_secret)

        # Default: reported, left in place, once the check ran (after the start: it waits
        # for the public key objects, listed on a thread of their own).
        self.vault.start()
        health = self.vault.wait_orphans_checked()
        self.assertEqual(health["keys"]["orphaned"], 2, health)
        log = self.vault.log()
        self.assertIn("orphan key: a private (and public) key object with certvault's id %s "
                      "and no row naming it: left in the token" % orphan, log)
        self.assertIn("orphan key: a public key object with certvault's id %s" % orphan_pub,
                      log)
        self.assertIn("2 orphan key(s) in the token (2 listed above), 0 destroyed", log)
        for other in (foreign, secret, kept[0]):
            self.assertNotIn(other, log)
        self.vault.stop()
        self.assertEqual(self.ids("Private Key Object"), sorted(kept + [orphan, foreign]))
        self.assertIn(orphan_pub, self.ids("Public Key Object"))

        # With the setting: the two marked ones go, nothing else does.
        self.vault.start({"CERTVAULT_TOKEN_DESTROY_ORPHAN_KEYS": "true"})
        health = self.vault.wait_orphans_checked()
        self.assertEqual(health["keys"]["orphaned"], 0, health)
        log = self.vault.log()
        self.assertIn("certvault's id %s and no row naming it: destroyed" % orphan, log)
        self.assertIn("2 orphan key(s) in the token (2 listed above), 2 destroyed, 0 could "
                      "not be destroyed", log)
        st, _, body = self.vault.request("GET", "/v1/certificates/kept")
        self.assertEqual(st, 200, body)
        self.vault.stop()
        self.assertEqual(self.ids("Private Key Object"), sorted(kept + [foreign]))
        self.assertNotIn(orphan_pub, self.ids("Public Key Object"))
        self.assertNotIn(orphan, self.ids("Public Key Object"))
        self.assertEqual(self.ids("Secret Key Object"), before_secret)

        # Nothing left to say on the next start.
        self.vault.start({"CERTVAULT_TOKEN_DESTROY_ORPHAN_KEYS": "true"})
        self.assertEqual(self.vault.wait_orphans_checked()["keys"]["orphaned"], 0)
        self.assertNotIn("orphan key", self.vault.log())


if __name__ == "__main__":
    unittest.main()


def fault_points_built():
    return bool(run([CERTVAULTD, "--fault-points"]).stdout.decode().strip())


class GroupCommit(unittest.TestCase):
    """Issue 19: commits made while the WAL is being synced share the next fdatasync instead
    of each making its own under SQLite's write lock; a WAL sync that fails stops the process,
    and the next start recovers as after a crash."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cv-it-")
        self.vault = Certvaultd(self.tmp, QUIET_NODE)

    def tearDown(self):
        self.vault.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def counters(self):
        st, _, body = self.vault.request("GET", "/metrics")
        self.assertEqual(st, 200)
        text = body.decode() if isinstance(body, bytes) else body
        return {m.group(1): int(m.group(2)) for m in
                re.finditer(r'^(certvault_db_\w+_total)\{node="[^"]+"\} (\d+)$', text, re.M)}

    def test_concurrent_imports_share_wal_syncs(self):
        # Whether a commit lands while another's sync runs depends on the disk and the load;
        # a build with fault injection makes each sync take 50 ms (a slow disk), so that it
        # surely does and the sharing is asserted, not hoped for.
        shared = fault_points_built()
        if shared:
            self.vault.settings["CERTVAULT_FAULT_WAL_SYNC_DELAY_MS"] = "50"
        self.vault.start()
        n = 16
        mats = [Material(self.tmp, "group-%d" % i) for i in range(n)]
        before = self.counters()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(
                lambda i: self.vault.import_cert("group-%d" % i, mats[i])[0], range(n)))
        after = self.counters()
        self.assertEqual(answers, [201] * n)
        commits = after["certvault_db_commits_total"] - before["certvault_db_commits_total"]
        syncs = after["certvault_db_wal_syncs_total"] - before["certvault_db_wal_syncs_total"]
        # Each import commits its pending row and its activation, each durable before the
        # import goes on; on 8 connections some of them share a sync.
        self.assertGreaterEqual(commits, 2 * n)
        self.assertGreater(syncs, 0)
        self.assertLessEqual(syncs, commits)
        if shared:
            self.assertLess(syncs, commits, (syncs, commits))
        self.assertEqual(self.vault.count_token_objects(), n)
        # The checkpointer copies the WAL back once writes pause.
        deadline = time.time() + 10
        while self.counters()["certvault_db_checkpoints_total"] == 0 and \
                time.time() < deadline:
            time.sleep(0.1)
        self.assertGreater(self.counters()["certvault_db_checkpoints_total"], 0)
        # One connection: every commit waits for its own sync (nothing else is in flight).
        # A background write (the notifier's lease, a token's last use) that commits just
        # before the first read of the counters adds its sync alone: such a window is
        # measured again, and one of three must show exactly one sync per commit.
        for attempt in range(3):
            before = self.counters()
            for i in range(3):
                m = Material(self.tmp, "alone-%d-%d" % (attempt, i))
                self.assertEqual(self.vault.import_cert("alone-%d-%d" % (attempt, i), m)[0],
                                 201)
            after = self.counters()
            commits = (after["certvault_db_commits_total"] -
                       before["certvault_db_commits_total"])
            syncs = after["certvault_db_wal_syncs_total"] - before["certvault_db_wal_syncs_total"]
            self.assertGreaterEqual(commits, 6)
            if syncs == commits:
                break
        self.assertEqual(syncs, commits)

    def test_failed_wal_sync_stops_and_the_next_start_recovers(self):
        if not fault_points_built():
            self.skipTest("this certvaultd has no fault injection (built without "
                          "CV_FAULT_INJECTION)")
        flag = os.path.join(self.tmp, "fail-wal-sync")
        self.vault.settings["CERTVAULT_FAULT_WAL_SYNC"] = flag
        self.vault.start()
        self.assertEqual(self.vault.import_cert("before", Material(self.tmp, "before"))[0],
                         201)
        with open(flag, "w"):
            pass
        m = Material(self.tmp, "lost")
        # No answer: the process stops before it acknowledges anything.
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            self.vault.import_cert("lost", m)
        rc = self.vault.proc.wait(timeout=30)
        self.vault.proc = None
        self.vault.logf.close()
        self.assertEqual(rc, 1)
        log = self.vault.log()
        self.assertRegex(log, r"certvaultd: database .*certvault\.db: the fdatasync of its WAL "
                              r"failed \(disk I/O error\): stopping")
        os.remove(flag)
        self.vault.start()
        # The import in flight is undone whole; the one acknowledged before is whole.
        self.assertEqual(self.vault.request("GET", "/v1/certificates/lost")[0], 404)
        self.assertEqual(self.vault.request("GET", "/v1/certificates/before")[0], 200)
        self.assertEqual(self.vault.count_token_objects(), 1)
        self.assertEqual(self.vault.count_token_objects("Public Key Object"), 1)
        self.assertEqual(self.vault.import_cert("lost", m)[0], 201)


class SerializeSetting(unittest.TestCase):
    """token.serialize_creates: auto asks the module what it is (C_GetInfo), not its file
    name; a value other than auto, on or off refuses to start with one line."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cv-it-")
        self.vault = Certvaultd(self.tmp)

    def tearDown(self):
        self.vault.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_auto_on_off_and_refusal(self):
        # SoftHSM under another name is still SoftHSM 2.6: one at a time.
        vendor = os.path.join(self.tmp, "libvendor-hsm.so")
        os.symlink(SOFTHSM_MODULE, vendor)
        self.vault.settings["CERTVAULT_TOKEN_MODULE"] = vendor
        self.vault.settings["CERTVAULT_TOKEN_SYNC_DIR"] = self.vault.token_dir
        self.vault.start()
        self.assertRegex(self.vault.log(), r"keys made and destroyed in the token one at a "
                                           r"time \(token.serialize_creates = auto; the "
                                           r"module is SoftHSM 2\.6, whose file store fails "
                                           r"creates that race\)")
        self.vault.stop()
        self.vault.settings["CERTVAULT_TOKEN_SERIALIZE_CREATES"] = "off"
        self.vault.start()
        self.assertIn("keys made and destroyed in the token concurrently "
                      "(token.serialize_creates = off)", self.vault.log())
        self.assertEqual(self.vault.import_cert("off", Material(self.tmp, "off"))[0], 201)
        self.vault.stop()
        p = run([CERTVAULTD], env=self.vault.env({"CERTVAULT_TOKEN_SERIALIZE_CREATES": "yes"}),
                check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("token.serialize_creates must be auto, on or off", p.stderr.decode())
