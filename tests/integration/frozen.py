"""The frozen databases of tests/upgrade/ (one per earlier schema version, made by the release
that wrote it: tests/upgrade/make_frozen.py) loaded into a fresh harness certvaultd: the SQL
dump into its database file, the keys the dump names into its fresh SoftHSM token under the
same CKA_ID and CKA_LABEL (as certvault makes key objects), and the known test audit key the
frozen run was given, so the frozen keyed audit chain can be verified."""

import base64
import hashlib
import json
import os
import secrets
import sqlite3
import time

from harness import BUILD, SOFTHSM_MODULE, Certvaultd, run

UPGRADE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "upgrade")
P11PUT = os.path.join(BUILD, "tests", "cv-p11put")
VERSIONS = sorted(int(n[len("schema-"):-len(".json")]) for n in os.listdir(UPGRADE_DIR)
                  if n.startswith("schema-") and n.endswith(".json"))


def meta(version):
    with open(os.path.join(UPGRADE_DIR, "schema-%d.json" % version)) as f:
        return json.load(f)


def put_keys(vault, m, skip=()):
    """The frozen run's audit key and every key object its database names, but those whose
    id is in skip."""
    env = vault.env()
    run([P11PUT, SOFTHSM_MODULE, vault.label, vault.pin_file, "secret", m["audit_key"],
         m["audit_key_label"]], env=env)
    for k in m["keys"]:
        if k["id"] in skip:
            continue
        path = os.path.join(vault.dir, "frozen-key.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, k["pem"].encode())
        os.close(fd)
        run([P11PUT, SOFTHSM_MODULE, vault.label, vault.pin_file, "key", path, k["id"],
             k["label"]], env=env)
        os.remove(path)


def load(workdir, version, skip_keys=(), settings=None):
    """A Certvaultd (not started) whose database is the frozen one of this schema version and
    whose token holds its keys (but skip_keys). An admin API token is added to a database
    that has a token table (the first start writes none then) and put where the harness
    reads it."""
    m = meta(version)
    vault = Certvaultd(workdir, settings)
    put_keys(vault, m, skip_keys)
    with open(os.path.join(UPGRADE_DIR, "schema-%d.sql" % version)) as f:
        dump = f.read()
    db = sqlite3.connect(vault.db)
    db.executescript(dump)
    has_tokens = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'api_tokens'"
                            ).fetchone()[0]
    if has_tokens:
        ident = secrets.token_hex(8)
        secret = "cvt_%s_%s" % (ident, base64.urlsafe_b64encode(
            secrets.token_bytes(32)).decode().rstrip("="))
        db.execute("INSERT INTO api_tokens (id, name, role, secret_hash, created_at,"
                   " expires_at, revoked_at) VALUES (?, 'upgrade-test', 1, ?, ?, 0, 0)",
                   (ident, hashlib.sha256(secret.encode()).digest(), int(time.time())))
        fd = os.open(vault.admin_token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secret.encode())
        os.close(fd)
    db.commit()
    db.close()
    return vault, m
