#!/usr/bin/env python3
"""Makes the frozen databases of tests/upgrade/: for each earlier schema version, the commit
that wrote it is built (certvaultd and cv-testcert only, out of tree under WORK), run through
that commit's own test harness to make a little of everything its API had, stopped, and its
database dumped as SQL text with the keys the token held listed by id and label.

    tests/upgrade/make_frozen.py [--work DIR] [VERSION ...]

Run it once when a release adds a schema step (add the release's commit to COMMITS); the
files it writes are committed and never remade: they are what that release left on disk.

Schemas 1-6 are main's own commits. Schemas 7-10 as numbered today never existed on main:
from the merge of issue 16's text work (3de079a) until 82ea025 the names step sat last and
the steps merged after it were numbered before it. Each of 7-10 is therefore made by the
commit that added that step, built with the names step taken out (the database that step
leaves, which is what a release made between the two would have written).

The audit chain of schemas 6 and later is keyed by an HMAC key in the token, which cannot
be read back: each run puts a known test key (AUDIT_KEY below, a test value) in the token
before the first start, and test_upgrade puts the same one in a fresh token."""

import argparse
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
# (schema version, commit, names step taken out)
COMMITS = [
    (1, "7fe3545^", False),
    (2, "df68db4^", False),
    (3, "81c7f05^", False),
    (4, "5fe435d^", False),
    (5, "9445921^", False),
    (6, "3de079a^", False),
    (7, "61f194d", True),
    (8, "677a7db", True),
    (9, "95f1bf3", True),
    (10, "82ea025", True),
]
AUDIT_KEY = hashlib.sha256(b"certvault frozen test audit key").hexdigest()
AUDIT_LABEL = "certvault-audit-hmac"
TEN_YEARS = 10 * 365 * 86400


def sh(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit("%s failed:\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    return p.stdout


def checkout(commit, dest, drop_names_step):
    os.makedirs(dest, exist_ok=True)
    archive = subprocess.run(["git", "-C", REPO, "archive", commit], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    if not drop_names_step:
        return
    path = os.path.join(dest, "src", "store", "db.c")
    src = open(path).read()
    start = src.index("\t/* The names step stays the last one")
    end = src.index("};\n#define SCHEMA_VERSION")
    src = src[:start] + src[end:]
    src = src.replace("r = store_dn_refresh(store->conns[0].db);", "r = 0;")
    open(path, "w").write(src)


def build(src, bld):
    sh(["cmake", "-S", src, "-B", bld, "-DCMAKE_BUILD_TYPE=Debug", "-DCV_FAULT_INJECTION=OFF",
        "-DCV_WERROR=OFF"])
    sh(["cmake", "--build", bld, "-j2", "--target", "certvaultd", "cv-testcert"])


def token_keys(vault, harness):
    """(id hex, label) of every private key object in the token."""
    out = vault.token_objects()
    keys = []
    for block in out.split("Private Key Object")[1:]:
        label = re.search(r"label:\s*(.*)", block)
        ident = re.search(r"ID:\s*([0-9a-f]+)", block)
        keys.append((ident.group(1), label.group(1).strip() if label else ""))
    return keys


def pubkey_of_cert(der):
    p = subprocess.run(["openssl", "x509", "-inform", "DER", "-pubkey", "-noout"], input=der,
                       capture_output=True, check=True)
    return p.stdout


def pubkey_of_key(path):
    return subprocess.run(["openssl", "pkey", "-in", path, "-pubout"], capture_output=True,
                          check=True).stdout


def make(version, commit, drop, work, outdir):
    src = os.path.join(work, "v%d" % version, "src")
    bld = os.path.join(work, "v%d" % version, "build")
    if not os.path.exists(os.path.join(bld, "certvaultd")):
        shutil.rmtree(os.path.join(work, "v%d" % version), ignore_errors=True)
        checkout(commit, src, drop)
        build(src, bld)
    os.environ["CV_BINARY_DIR"] = bld
    sys.path.insert(0, os.path.join(src, "tests", "integration"))
    for m in [m for m in sys.modules if m == "harness"]:
        del sys.modules[m]
    import harness
    tmp = tempfile.mkdtemp(prefix="cv-frozen-")
    vault = harness.Certvaultd(tmp)
    put = os.path.join(os.environ["CV_PUT_BUILD"], "tests", "cv-p11put")
    env = dict(os.environ, SOFTHSM2_CONF=vault.softhsm_conf)
    sh([put, harness.SOFTHSM_MODULE, vault.label, vault.pin_file, "secret", AUDIT_KEY,
        AUDIT_LABEL], env=env)
    vault.start()
    mats = {}

    def material(name, **kw):
        kw.setdefault("not_after", TEN_YEARS)
        mats[name] = harness.Material(tmp, name, **kw)
        return mats[name]

    done = {}

    def op(what, method, path, body=None, ok=(200, 201, 204)):
        st, _, answer = vault.request(method, path, body)
        done[what] = st in ok
        return answer

    web, api = material("web", key="p256", san="www.example.com"), \
        material("api", key="rsa2048", san="api.example.com")
    op("import web", "POST", "/v1/certificates", {"name": "web", "description": "public site",
                                                 "certificate": web.cert,
                                                 "private_key": web.key})
    op("import api", "POST", "/v1/certificates", {"name": "api", "certificate": api.cert,
                                                 "private_key": api.key})
    op("environment", "PUT", "/v1/environments/production", {})
    op("service", "PUT", "/v1/services/site", {"environment": "production",
                                              "domains": ["www.example.com"]})
    op("bind", "PUT", "/v1/services/site/certificate", {"certificate": "web"})
    web2 = material("web2", key="p256", san="www.example.com")
    op("renew web", "POST", "/v1/certificates/web/renew", {"certificate": web2.cert,
                                                           "private_key": web2.key})
    op("jwk", "POST", "/v1/jwks", {"certificate": "api", "use": "sig"})
    op("access token", "POST", "/v1/tokens", {"name": "deploy", "role": "operator"})
    ca = material("ca", key="p256", cn="Frozen Test Root", ca=True)
    op("truststore", "POST", "/v1/truststore", {"alias": "frozen-root", "certificate": ca.cert})
    op("edit", "PATCH", "/v1/certificates/api", {"description": "internal api"})
    keys = token_keys(vault, harness)
    if vault.stop() != 0:
        raise SystemExit("v%d: certvaultd did not stop cleanly:\n%s" % (version, vault.log()))
    db = sqlite3.connect(vault.db)
    got = db.execute("PRAGMA user_version").fetchone()[0]
    if got != version:
        raise SystemExit("v%d: %s wrote schema version %d" % (version, commit, got))
    ders = [r[0] for r in db.execute("SELECT cert_der FROM certificates")]
    try:
        ders += [r[0] for r in db.execute("SELECT cert_der FROM certificate_versions")]
    except sqlite3.OperationalError:
        pass
    by_pub = {pubkey_of_key(m.key_path): n for n, m in mats.items()}
    key_files = []
    for ident, label in keys:
        # Which fixture key is it: the certificate whose row names this id.
        name = None
        for table in ("certificates", "certificate_versions"):
            try:
                row = db.execute("SELECT cert_der FROM %s WHERE hex(key_id) = upper(?)" % table,
                                 (ident,)).fetchone()
            except sqlite3.OperationalError:
                row = None
            if row is not None:
                name = by_pub.get(pubkey_of_cert(row[0]))
                break
        if name is None:
            raise SystemExit("v%d: key %s (%s) names no fixture key" % (version, ident, label))
        with open(mats[name].key_path) as f:
            key_files.append({"id": ident, "label": label, "pem": f.read()})
    try:
        audit = [r for r in db.execute("SELECT * FROM audit_log ORDER BY 1")]
    except sqlite3.OperationalError:  # no audit trail before schema 4
        audit = []
    with open(os.path.join(outdir, "schema-%d.sql" % version), "w") as f:
        f.write("-- certvault schema %d, written by %s (%s)%s; tests/upgrade/make_frozen.py\n"
                % (version, commit, sh(["git", "-C", REPO, "rev-parse", "--short", commit])
                   .strip(), ", names step taken out" if drop else ""))
        f.write("PRAGMA user_version=%d;\n" % version)
        for line in db.iterdump():
            f.write(line + "\n")
    meta = {"version": version, "commit": commit, "names_step_dropped": drop,
            "done": done, "keys": key_files, "audit_records": len(audit),
            "audit_key": AUDIT_KEY, "audit_key_label": AUDIT_LABEL,
            "note": "test keys made for this file by cv-testcert; never used anywhere else",
            "certificates": sorted(r[0] for r in db.execute("SELECT name FROM certificates"))}
    with open(os.path.join(outdir, "schema-%d.json" % version), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    db.close()
    shutil.rmtree(tmp, ignore_errors=True)
    sys.path.pop(0)
    print("v%d: %s %s" % (version, commit, json.dumps(done)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/cv-frozen-work")
    ap.add_argument("versions", nargs="*", type=int)
    a = ap.parse_args()
    os.environ.setdefault("CV_PUT_BUILD", os.path.join(REPO, "build"))
    for version, commit, drop in COMMITS:
        if a.versions and version not in a.versions:
            continue
        make(version, commit, drop, a.work, HERE)


if __name__ == "__main__":
    main()
