"""Backups and restores (issue 20): certvaultd --backup and POST /v1/backup while imports
run (each backup opens, verifies and holds every import acknowledged before it began);
a tampered backup refused by --verify-backup; the backup restored onto the token it was
taken from (the keys imported after it reported as orphans, never destroyed) and onto a
token that lost one key (health, lists, details and inventory name that certificate)."""

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import threading
import unittest

from harness import CERTVAULTD, SOFTHSM_MODULE, Certvaultd, Material, run


def members(path):
    """The backup's manifest (parsed) and database bytes, and its member names in order."""
    with tarfile.open(path) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
        db = tar.extractfile("certvault.db").read()
    return names, manifest, db


def read(path):
    with open(path, "rb") as f:
        return f.read()


class BackupTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cv-it-backup-")
        cls.vault = Certvaultd(cls.tmp).start()
        try:
            cls.mats = [Material(cls.tmp, "b%02d" % i) for i in range(36)]
            for i in range(4):
                st, _, body = cls.vault.import_cert("b%02d" % i, cls.mats[i])
                assert st == 201, body
            cls.storm()
        except BaseException:
            # tearDownClass does not run after a failed setUpClass.
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.vault.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def storm(cls):
        """Two clients import the rest while a --backup and a POST /v1/backup are taken,
        each once a few imports of the storm are in; the names acknowledged before each
        began are kept."""
        acked, lock = [], threading.Lock()
        todo = list(range(4, len(cls.mats)))
        started = threading.Event()

        def client():
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                st, _, body = cls.vault.import_cert("b%02d" % i, cls.mats[i])
                assert st == 201, body
                with lock:
                    acked.append("b%02d" % i)
                    if len(acked) >= 4:
                        started.set()

        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        started.wait(60)
        with lock:
            cls.before_cli = set(acked) | {"b%02d" % i for i in range(4)}
        cls.cli_file = os.path.join(cls.tmp, "cli-backup.tar")
        cls.cli = run([CERTVAULTD, "--backup", cls.cli_file], env=cls.vault.env(
            {"CERTVAULT_TOKEN_PIN_FILE": "/nonexistent"}))
        with lock:
            cls.before_api = set(acked) | {"b%02d" % i for i in range(4)}
        cls.api_status, cls.api_headers, cls.api_body = cls.vault.request("POST", "/v1/backup")
        with lock:
            cls.during = len(todo)
        for t in threads:
            t.join()
        assert cls.api_status == 200, (cls.api_status, cls.api_body, cls.vault.log()[-3000:])
        cls.api_file = os.path.join(cls.tmp, "api-backup.tar")
        with open(cls.api_file, "wb") as f:
            f.write(cls.api_body)

    def verify(self, path, env=None):
        return run([CERTVAULTD, "--verify-backup", path], env=env or self.vault.env(),
                   check=False)

    def key_ids(self, names):
        ids = {}
        for name in names:
            st, _, body = self.vault.request("GET", "/v1/certificates/" + name)
            ids[name] = body["key"]["id"]
        return ids

    def test_backups_taken_during_imports_hold_what_was_acknowledged(self):
        self.assertGreater(self.during, 0, "the storm was over before the backups")
        self.assertEqual(self.api_status, 200, self.api_body[:300])
        self.assertEqual(self.api_headers["content-type"], "application/x-tar")
        self.assertRegex(self.api_headers["content-disposition"],
                         r'attachment; filename="certvault-backup-\d{4}-\d\d-\d\d\.tar"')
        self.assertRegex(self.cli.stdout.decode(), r"backup .*: schema \d+, \d+ bytes")
        with sqlite3.connect(self.vault.db) as db:
            schema = db.execute("PRAGMA user_version").fetchone()[0]
        for path, before in ((self.cli_file, self.before_cli), (self.api_file, self.before_api)):
            with self.subTest(backup=os.path.basename(path)):
                names, manifest, data = members(path)
                self.assertEqual(names, ["manifest.json", "certvault.db"])
                self.assertEqual(manifest["format"], "certvault-backup")
                self.assertEqual(manifest["schema_version"], schema)
                self.assertEqual(manifest["database"]["bytes"], len(data))
                self.assertRegex(manifest["created_at"], r"^\d{4}-\d\d-\d\dT")
                self.assertRegex(manifest["audit"]["head"], r"^[0-9a-f]{64}$")
                copy = os.path.join(self.tmp, "copy.db")
                with open(copy, "wb") as f:
                    f.write(data)
                with sqlite3.connect(copy) as db:
                    stored = {r[0] for r in db.execute("SELECT name FROM certificates")}
                    self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
                    head = db.execute("SELECT hex(hash) FROM audit_log ORDER BY seq DESC"
                                      " LIMIT 1").fetchone()[0].lower()
                os.remove(copy)
                self.assertTrue(before <= stored, before - stored)
                self.assertEqual(manifest["audit"]["head"], head)
                ids = {k["id"] for k in manifest["keys"]}
                for name, key_id in self.key_ids(sorted(before)).items():
                    self.assertIn(key_id, ids, name)
                    self.assertIn({"id": key_id, "certificate": name, "version": 1,
                                   "row": "current"}, manifest["keys"])
                p = self.verify(path)
                self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
                self.assertIn("intact", p.stdout.decode())
                self.assertIn("the token holds all %d key(s)" % len(manifest["keys"]),
                              p.stdout.decode())
        # The API's backup is an audited change of an admin; others may not take one.
        st, _, page = self.vault.request("GET", "/v1/audit?action=backup.create")
        self.assertEqual([(r["outcome"], r["actor"]["name"] if isinstance(r["actor"], dict)
                           else r["actor"]) for r in page["items"]], [("done", "admin")], page)
        self.assertEqual(page["items"][0]["changes"]["schema_version"], schema)
        st, _, body = self.vault.request("POST", "/v1/tokens", {"name": "op-backup",
                                                                "role": "operator"})
        st, _, body = self.vault.request("POST", "/v1/backup", token=body["token"])
        self.assertEqual(st, 403, body)

    def test_an_existing_file_is_never_overwritten(self):
        before = read(self.cli_file)
        p = run([CERTVAULTD, "--backup", self.cli_file], env=self.vault.env(), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("the file exists", p.stderr.decode())
        self.assertEqual(read(self.cli_file), before)
        self.assertEqual([f for f in os.listdir(self.tmp) if f.startswith(".certvault")], [])

    def test_a_tampered_backup_is_not_intact(self):
        names, manifest, data = members(self.cli_file)
        cases = {
            "head": (dict(manifest, audit=dict(manifest["audit"], head="0" * 64)), data,
                     "the audit chain's head is not the manifest's"),
            "database": (manifest, data[:-1] + bytes([data[-1] ^ 1]),
                         "the database's SHA-256 is not the manifest's"),
        }
        for case, (m, d, reason) in cases.items():
            with self.subTest(case=case):
                path = os.path.join(self.tmp, "tampered-%s.tar" % case)
                with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
                    for name, blob in (("manifest.json", json.dumps(m).encode()),
                                       ("certvault.db", d)):
                        info = tarfile.TarInfo(name)
                        info.size = len(blob)
                        tar.addfile(info, io.BytesIO(blob))
                p = self.verify(path)
                self.assertEqual(p.returncode, 1, p.stdout.decode() + p.stderr.decode())
                self.assertIn("NOT intact: " + reason, p.stdout.decode())
        path = os.path.join(self.tmp, "not-a-backup.tar")
        with open(path, "wb") as f:
            f.write(b"\0" * 1024)
        p = self.verify(path)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not a certvault backup", p.stderr.decode())


    def test_leftovers_of_a_backup_cut_short_go_at_start(self):
        """A crash during POST /v1/backup leaves its copy of the database beside it: the next
        start removes it (and says so), but not a backup's file still being written (held
        locked), a link, or anything else."""
        import fcntl
        d = os.path.dirname(self.vault.db)
        left = [os.path.join(d, n) for n in (".certvault-backup-Ab12Cd",
                                             ".certvault-backup-tar-Zz9yX8")]
        for path in left:
            with open(path, "wb") as f:
                f.write(read(self.vault.db)[:4096])
        busy = os.path.join(d, ".certvault-backup-Bus7yy")
        other = os.path.join(d, "notes.txt")
        link = os.path.join(d, ".certvault-backup-L1nk00")
        for path in (busy, other):
            with open(path, "wb") as f:
                f.write(b"x")
        os.symlink(other, link)
        held = open(busy, "rb")
        try:
            fcntl.flock(held, fcntl.LOCK_EX)
            self.assertEqual(self.vault.stop(), 0)
            self.vault.start()
            log = self.vault.log()
            for path in left:
                self.assertFalse(os.path.exists(path), path)
                self.assertIn("removed %s (4096 bytes), left by a backup or restore that was"
                              " cut short" % path, log)
            for path in (busy, other, link):
                self.assertTrue(os.path.lexists(path), path)
                self.assertNotIn(os.path.basename(path), log)
            st, _, body = self.vault.request("GET", "/v1/health", token=None)
            self.assertEqual(st, 200, body)
        finally:
            held.close()
            for path in (busy, other, link):
                if os.path.lexists(path):
                    os.remove(path)


class RestoreTest(unittest.TestCase):
    """A backup restored as the README says (stop, the database and its -wal and -shm
    replaced by the backup's certvault.db, start) onto the token it was taken from, which
    holds keys made after it, then onto that token with one of its keys gone."""

    def test_restore_onto_extra_and_missing_keys(self):
        tmp = tempfile.mkdtemp(prefix="cv-it-restore-")
        try:
            vault = Certvaultd(tmp).start()
            mats = {n: Material(tmp, n) for n in ("r-kept", "r-lost", "r-later")}
            for name in ("r-kept", "r-lost"):
                st, _, body = vault.import_cert(name, mats[name])
                self.assertEqual(st, 201, body)
            lost_id = vault.request("GET", "/v1/certificates/r-lost")[2]["key"]["id"]
            backup = os.path.join(tmp, "backup.tar")
            run([CERTVAULTD, "--backup", backup], env=vault.env())
            st, _, body = vault.import_cert("r-later", mats["r-later"])
            self.assertEqual(st, 201, body)
            later_id = body["key"]["id"]
            self.assertEqual(vault.stop(), 0)
            objects = vault.count_token_objects()
            self.restore(vault, backup)
            vault.start()
            health = vault.wait_orphans_checked()
            log = vault.log()
            self.assertRegex(log, r"orphan key: .* id %s .*left in the token" % later_id)
            self.assertEqual(health["keys"], {"missing": 0, "orphaned": 1,
                                              "orphans_checked": True})
            st, _, page = vault.request("GET", "/v1/certificates")
            self.assertEqual(sorted(i["name"] for i in page["items"]), ["r-kept", "r-lost"])
            st, _, verdict = vault.request("GET", "/v1/audit/verify")
            self.assertTrue(verdict["intact"], verdict)
            self.assertEqual(vault.stop(), 0)
            self.assertEqual(vault.count_token_objects(), objects)  # never destroyed
            # One key gone from the token (an older token backup restored beside it).
            run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", vault.label,
                 "--login", "--pin", "env:CV_TEST_PIN", "--delete-object", "--type",
                 "privkey", "--id", lost_id], env=dict(vault.env(), CV_TEST_PIN=vault.pin))
            p = run([CERTVAULTD, "--verify-backup", backup], env=vault.env(), check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("the token lacks 1 of its 2 key(s):\n  r-lost v1 (current)",
                          p.stdout.decode())
            self.restore(vault, backup)
            vault.start()
            self.assertIn("key missing: certificate r-lost version 1 (current)", vault.log())
            st, _, health = vault.request("GET", "/v1/health", token=None)
            self.assertEqual(st, 200, health)
            self.assertEqual(health["keys"]["missing"], 1)
            st, _, keys = vault.request("GET", "/v1/health/keys")
            self.assertEqual(st, 200, keys)
            self.assertEqual(keys["missing"], 1)
            self.assertEqual(keys["items"], [{"certificate": "r-lost", "version": 1,
                                              "current": True, "key_id": lost_id}])
            st, _, body = vault.request("GET", "/v1/health/keys", token=None)
            self.assertEqual(st, 401, body)
            st, _, page = vault.request("GET", "/v1/certificates")
            self.assertEqual({i["name"]: i["key_missing"] for i in page["items"]},
                             {"r-kept": False, "r-lost": True})
            st, _, lost = vault.request("GET", "/v1/certificates/r-lost")
            self.assertIs(lost["key_missing"], True)
            st, _, inv = vault.request("GET", "/v1/inventory?format=json")
            present = {i["name"]: i["key_present"] for i in inv["items"]}
            self.assertEqual(present, {"r-kept": True, "r-lost": False})
            self.assertEqual(vault.stop(), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def restore(vault, backup):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(vault.db + suffix):
                os.remove(vault.db + suffix)
        with tarfile.open(backup) as tar:
            data = tar.extractfile("certvault.db").read()
        fd = os.open(vault.db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)


class RestoreCommandTest(unittest.TestCase):
    """certvaultd --restore BACKUP --database PATH: refuses an existing database without
    --overwrite, one a running certvaultd has open, a backup that is not intact, and one
    whose keys the token lacks unless told; puts the backup's database in place whole (a
    new path, and over the old database), and certvaultd starts on it."""

    def test_restore_command(self):
        tmp = tempfile.mkdtemp(prefix="cv-it-restorecmd-")
        try:
            vault = Certvaultd(tmp).start()
            mats = {n: Material(tmp, n) for n in ("rc-a", "rc-b")}
            st, _, body = vault.import_cert("rc-a", mats["rc-a"])
            self.assertEqual(st, 201, body)
            a_id = body["key"]["id"]
            backup = os.path.join(tmp, "backup.tar")
            run([CERTVAULTD, "--backup", backup], env=vault.env())
            st, _, body = vault.import_cert("rc-b", mats["rc-b"])
            self.assertEqual(st, 201, body)

            def restore(*args, db=vault.db, src=backup):
                return run([CERTVAULTD, "--restore", src, "--database", db] + list(args),
                           env=vault.env(), check=False)

            def refused(p, words):
                self.assertEqual(p.returncode, 1, p.stdout.decode() + p.stderr.decode())
                self.assertIn(words, p.stderr.decode())
                self.assertEqual(p.stdout, b"")

            def leftovers():
                return [f for f in os.listdir(tmp) if f.startswith(".certvault-")]
            # Running: refused, and the live database is untouched.
            refused(restore("--overwrite"), "open in another process")
            self.assertEqual(vault.stop(), 0)
            live = read(vault.db)
            refused(restore(), "exists: nothing is restored over a database unless "
                               "--overwrite")
            # Not intact: refused, nothing changed, nothing left behind.
            names, manifest, data = members(backup)
            bad = os.path.join(tmp, "bad.tar")
            with tarfile.open(bad, "w", format=tarfile.USTAR_FORMAT) as tar:
                for name, blob in (("manifest.json", json.dumps(manifest).encode()),
                                   ("certvault.db", data[:-1] + bytes([data[-1] ^ 1]))):
                    info = tarfile.TarInfo(name)
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
            refused(restore("--overwrite", src=bad), "is not intact: the database's SHA-256")
            self.assertEqual(read(vault.db), live)
            self.assertEqual(leftovers(), [])
            # Usage: the options go together; PostgreSQL is pg_restore's.
            for args in (["--restore", backup], ["--database", vault.db],
                         ["--overwrite", "--verify-backup", backup]):
                p = run([CERTVAULTD] + args, env=vault.env(), check=False)
                self.assertEqual(p.returncode, 2, args)
            refused(restore(db="postgresql://cv@db/cv"), "pg_restore")
            # A new path: the backup's very database, mode 0600.
            fresh = os.path.join(tmp, "fresh.db")
            p = restore(db=fresh)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            self.assertRegex(p.stdout.decode(), r"restored .* into .*fresh\.db: made .*, "
                             r"schema \d+, audit chain of \d+ record\(s\) verified")
            self.assertEqual(read(fresh), data)
            self.assertEqual(os.stat(fresh).st_mode & 0o777, 0o600)
            # Over the live database (its WAL folded in first, none left for the new one);
            # certvaultd starts on it: rc-b, imported after the backup, is gone, its key
            # reported, the chain intact.
            p = restore("--overwrite")
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            self.assertFalse(os.path.exists(vault.db + "-wal"))
            self.assertEqual(leftovers(), [])
            vault.start()
            st, _, page = vault.request("GET", "/v1/certificates")
            self.assertEqual([i["name"] for i in page["items"]], ["rc-a"])
            st, _, verdict = vault.request("GET", "/v1/audit/verify")
            self.assertTrue(verdict["intact"], verdict)
            self.assertEqual(vault.stop(), 0)
            # A key the backup needs gone from the token: refused, unless told.
            run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", vault.label,
                 "--login", "--pin", "env:CV_TEST_PIN", "--delete-object", "--type",
                 "privkey", "--id", a_id], env=dict(vault.env(), CV_TEST_PIN=vault.pin))
            before = read(vault.db)
            refused(restore("--overwrite"), "the token lacks 1 of the 1 key(s)")
            self.assertIn("lacks the key of rc-a v1 (current)", restore("--overwrite")
                          .stderr.decode())
            self.assertEqual(read(vault.db), before)
            p = restore("--overwrite", "--allow-missing-keys")
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            self.assertIn("lacks 1 of its 1 key(s)", p.stdout.decode())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
