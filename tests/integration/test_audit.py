"""Integration tests of the audit trail against a real certvaultd: one "done" record for each
change, written by the request that made it (actor, action, target, request id, fingerprints);
a "refused" record for each refused attempt; never a key or a token secret in the database;
the list's filters and paging; and a row edited or deleted in the SQLite file behind
certvaultd's back, which verify then names."""

import base64
import calendar
import hashlib
import http.client
import json
import os
import subprocess
import time
import unittest
import urllib.parse

from harness import CERTVAULTD, SOFTHSM_MODULE, VaultTestCase, run


def openssl_fingerprint(material):
    """The SHA-256 fingerprint as openssl x509 -fingerprint prints it (AB:CD:...)."""
    out = run(["openssl", "x509", "-in", material.cert_path, "-noout", "-fingerprint",
               "-sha256"]).stdout.decode().strip()
    return out.split("=", 1)[1]


def token_id(token):
    """The public id inside a token: cvt_<16 hex digits>_<secret>."""
    return token[4:20]


def epoch(rfc3339):
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class AuditCase(VaultTestCase):

    def audit(self, token=True, **query):
        path = "/v1/audit"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        st, _, body = self.vault.request("GET", path, token=token)
        self.assertEqual(st, 200, body)
        return body

    def records_after(self, seq, **query):
        """Every record after seq matching query, page by page."""
        out = []
        while True:
            body = self.audit(cursor=str(seq), limit="1000", **query)
            out += body["items"]
            if body["next_cursor"] is None:
                return out
            seq = int(body["next_cursor"])

    def last_seq(self):
        recs = self.records_after(0)
        return recs[-1]["seq"] if recs else 0

    def verify(self, token=True):
        st, _, body = self.vault.request("GET", "/v1/audit/verify", token=token)
        self.assertEqual(st, 200, body)
        return body

    def change(self, method, path, body=None, token=True, want=(200, 201, 204)):
        """Makes a change; returns the response body and its X-Request-Id."""
        st, hdrs, resp = self.vault.request(method, path, body, token=token)
        self.assertIn(st, want, resp)
        self.assertTrue(hdrs.get("x-request-id"), hdrs)
        return resp, hdrs["x-request-id"]

    def make_token(self, name, role):
        body, _ = self.change("POST", "/v1/tokens", {"name": name, "role": role})
        return body["token"]


class AuditTrailTest(AuditCase):

    def test_every_change_is_one_done_record_in_order(self):
        m1 = self.material("au-v1", san="au.example.com")
        m2 = self.material("au-v2", san="au.example.com")
        ca = self.material("au-ca", cn="Audit Test CA", ca=True, not_after=3650 * 86400)
        fp1, fp2, fp_ca = (openssl_fingerprint(m) for m in (m1, m2, ca))
        admin_id = token_id(self.vault.admin_token)
        seq0 = self.last_seq()
        start = int(time.time())
        want = []  # (action, target, request id, fingerprints)

        body, rid = self.change("POST", "/v1/certificates", {
            "name": "au-cert", "certificate": m1.cert, "private_key": m1.key})
        self.assertEqual(body["fingerprints"]["sha256"], fp1)
        want.append(("certificate.import", "au-cert", rid, [fp1]))
        _, rid = self.change("PUT", "/v1/services/au-web", {
            "environment": "production", "domains": ["au.example.com"]})
        want.append(("service.put", "au-web", rid, []))
        _, rid = self.change("PUT", "/v1/services/au-web/certificate", {"certificate": "au-cert"})
        want.append(("service.bind", "au-web", rid, [fp1]))
        _, rid = self.change("POST", "/v1/certificates/au-cert/renew", {
            "certificate": m2.cert, "private_key": m2.key, "version": 1})
        want.append(("certificate.renew", "au-cert", rid, [fp1, fp2]))
        _, rid = self.change("PATCH", "/v1/certificates/au-cert", {"description": "audited"})
        want.append(("certificate.edit", "au-cert", rid, []))
        _, rid = self.change("DELETE", "/v1/services/au-web/certificate")
        want.append(("service.unbind", "au-web", rid, [fp2]))
        body, rid = self.change("POST", "/v1/jwks", {"certificate": "au-cert"})
        kid = body["kid"]
        want.append(("jwk.create", kid, rid, [fp2]))
        _, rid = self.change("DELETE", "/v1/jwks/" + kid)
        want.append(("jwk.delete", kid, rid, [fp2]))
        _, rid = self.change("POST", "/v1/truststore", {"alias": "au-ca",
                                                        "certificate": ca.cert})
        want.append(("truststore.add", "au-ca", rid, [fp_ca]))
        _, rid = self.change("DELETE", "/v1/truststore/au-ca")
        want.append(("truststore.delete", "au-ca", rid, [fp_ca]))
        body, rid = self.change("POST", "/v1/tokens", {"name": "au-tok", "role": "operator"})
        tok = body["id"]
        want.append(("token.create", tok, rid, []))
        _, rid = self.change("DELETE", "/v1/tokens/" + tok)
        want.append(("token.revoke", tok, rid, []))
        _, rid = self.change("DELETE", "/v1/services/au-web")
        want.append(("service.delete", "au-web", rid, []))
        _, rid = self.change("DELETE", "/v1/certificates/au-cert?confirm=delete")
        want.append(("certificate.delete", "au-cert", rid, [fp2]))
        end = int(time.time())

        got = self.records_after(seq0)
        self.assertEqual([(r["action"], r["target"], r["request_id"], r["fingerprints"])
                          for r in got], want)
        self.assertEqual([r["seq"] for r in got], list(range(seq0 + 1, seq0 + 1 + len(want))))
        for r in got:
            self.assertEqual(r["outcome"], "done", r)
            self.assertIsNone(r["error"], r)
            self.assertEqual(r["actor"], {"id": admin_id, "name": "admin"}, r)
            self.assertTrue(start <= epoch(r["at"]) <= end, r)
        self.assertEqual(self.verify()["intact"], True)

    def test_refused_attempts_are_recorded(self):
        auditor = self.make_token("au-auditor", "auditor")
        m = self.material("au-refused", san="refused.example.com")
        expired = self.material("au-expired", san="expired.example.com",
                                not_before=-90 * 86400, not_after=-86400)
        seq0 = self.last_seq()

        # A role that may not: the actor is the auditor.
        st, hdrs, body = self.vault.request("POST", "/v1/certificates", {
            "name": "au-refused", "certificate": m.cert, "private_key": m.key}, token=auditor)
        self.assertEqual((st, body["error"]["code"]), (403, "forbidden"), body)
        forbidden_rid = hdrs["x-request-id"]
        # No token at all: anonymous.
        st, hdrs, body = self.vault.request("DELETE",
                                            "/v1/certificates/au-nobody?confirm=delete",
                                            token=None)
        self.assertEqual((st, body["error"]["code"]), (401, "unauthorized"), body)
        anonymous_rid = hdrs["x-request-id"]
        # An expired certificate: refused, and the record names what was refused.
        st, hdrs, body = self.vault.import_cert("au-expired", expired)
        self.assertEqual(body["error"]["code"], "expired", body)
        expired_rid = hdrs["x-request-id"]

        got = self.records_after(seq0)
        self.assertEqual(len(got), 3, got)
        for r in got:
            self.assertEqual(r["outcome"], "refused", r)
        self.assertEqual(
            [(r["action"], r["target"], r["error"], r["actor"], r["request_id"],
              r["fingerprints"]) for r in got],
            [("certificate.import", "", "forbidden",
              {"id": token_id(auditor), "name": "au-auditor"}, forbidden_rid, []),
             ("certificate.delete", "au-nobody", "unauthorized",
              {"id": None, "name": "anonymous"}, anonymous_rid, []),
             ("certificate.import", "au-expired", "expired",
              {"id": token_id(self.vault.admin_token), "name": "admin"}, expired_rid,
              [openssl_fingerprint(expired)])])
        # Refused means nothing changed.
        st, _, _ = self.vault.request("GET", "/v1/certificates/au-expired")
        self.assertEqual(st, 404)
        st, _, _ = self.vault.request("GET", "/v1/certificates/au-refused")
        self.assertEqual(st, 404)

    def test_no_key_material_or_token_secret_in_the_database(self):
        m = self.material("au-secret", san="secret.example.com")
        self.change("POST", "/v1/certificates", {
            "name": "au-secret", "certificate": m.cert, "private_key": m.key})
        secret = self.make_token("au-secret-tok", "operator")
        # Records of refused attempts carrying the key and the token too.
        st, _, _ = self.vault.request("POST", "/v1/certificates", {
            "name": "au-secret", "certificate": m.cert, "private_key": m.key}, token=secret)
        self.assertEqual(st, 409)
        st, _, _ = self.vault.request("POST", "/v1/certificates", {
            "name": "au-secret2", "certificate": m.cert, "private_key": m.key},
            token=secret[:-1] + ("A" if secret[-1] != "A" else "B"))
        self.assertEqual(st, 401)

        body_lines = [line for line in m.key.splitlines() if line and not line.startswith("-")]
        key_b64 = "".join(body_lines)
        needles = {
            "the key's PEM body": key_b64.encode(),
            "the key's first PEM line": body_lines[0].encode(),
            "the key as PKCS#8 DER": m.key_der(),
            "the key as PKCS#8 DER in base64": base64.b64encode(m.key_der()),
            "the token": secret.encode(),
            "the token's secret part": secret[21:].encode(),
        }
        data = b""
        if self.vault.db_url:
            # PostgreSQL: everything the database holds, as pg_dump writes it (bytea as hex).
            data = run(["pg_dump", "-d", self.vault.db_url, "--data-only"]).stdout
            needles.update({k + " (hex)": v.hex().encode() for k, v in needles.items()})
        for suffix in ("", "-wal"):
            if os.path.exists(self.vault.db + suffix):
                with open(self.vault.db + suffix, "rb") as f:
                    data += f.read()
        self.assertIn(b"au-secret-tok", data)  # the file is the one written to
        for what, needle in needles.items():
            self.assertNotIn(needle, data, what)

    def test_filters_and_paging(self):
        operator = self.make_token("au-filter-op", "operator")
        seq0 = self.last_seq()
        for name in ("af-1", "af-2", "af-3"):
            self.change("PUT", "/v1/services/" + name,
                        {"environment": "staging", "domains": [name + ".example.com"]},
                        token=operator if name == "af-2" else True)
        self.change("DELETE", "/v1/services/af-2")

        def seqs(recs):
            return [r["seq"] for r in recs]

        mine = self.records_after(seq0)
        self.assertEqual(len(mine), 4, mine)
        # action, target, actor (by name and by id), each alone and together.
        deleted = self.audit(action="service.delete", target="af-2")["items"]
        self.assertEqual(seqs(deleted), [mine[3]["seq"]])
        self.assertEqual(seqs(self.audit(target="af-1")["items"]), [mine[0]["seq"]])
        self.assertEqual(seqs(self.audit(target="af-2")["items"]),
                         [mine[1]["seq"], mine[3]["seq"]])
        puts = [r for r in self.records_after(0) if r["action"] == "service.put"]
        self.assertEqual(seqs(self.audit(action="service.put", limit="1000")["items"]),
                         seqs(puts))
        self.assertEqual(seqs(self.audit(actor="au-filter-op")["items"]), [mine[1]["seq"]])
        self.assertEqual(seqs(self.audit(actor=token_id(operator))["items"]),
                         [mine[1]["seq"]])
        self.assertEqual(self.audit(actor="au-nobody")["items"], [])

        # from is inclusive, until exclusive, at one-second resolution.
        everything = self.records_after(0)
        at = epoch(mine[0]["at"])
        in_second = [r for r in everything if epoch(r["at"]) == at]
        self.assertIn(mine[0]["seq"], seqs(in_second))
        self.assertEqual(seqs(self.records_after(0, **{"from": rfc3339(at),
                                                       "until": rfc3339(at + 1)})),
                         seqs(in_second))
        self.assertEqual(self.audit(**{"from": rfc3339(at), "until": rfc3339(at)})["items"], [])
        self.assertEqual(seqs(self.records_after(0, until=rfc3339(at))),
                         seqs([r for r in everything if epoch(r["at"]) < at]))
        st, _, body = self.vault.request("GET", "/v1/audit?from=yesterday")
        self.assertEqual((st, body["error"]["code"]), (400, "bad_request"), body)

        # Pages of two walk every record once, in order, and the last says so.
        walked, cursor = [], None
        while True:
            query = {"limit": "2"}
            if cursor is not None:
                query["cursor"] = cursor
            body = self.audit(**query)
            self.assertLessEqual(len(body["items"]), 2)
            walked += seqs(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(walked, seqs(everything))
        self.assertEqual(walked, list(range(1, len(walked) + 1)))


class AuditTamperTest(AuditCase):
    """Edits the SQLite file behind certvaultd's back: a class of its own, since the trail it
    leaves is broken for good."""

    def raw(self, sql, args=()):
        return self.vault.sql(sql, args)

    def test_edit_restore_and_delete_are_caught(self):
        for i in range(4):
            self.change("PUT", "/v1/services/at-%d" % i,
                        {"environment": "production", "domains": ["at%d.example.com" % i]})
        auditor = self.make_token("at-auditor", "auditor")
        operator = self.make_token("at-operator", "operator")
        recs = self.records_after(0)
        total = len(recs)
        self.assertGreaterEqual(total, 6)
        self.assertEqual(self.verify(), {"intact": True, "records": total,
                                         "head": recs[-1]["hash"], "first_seq": 1,
                                         "keyed_from": 1, "unkeyed": 0,
                                         "archived_through": None})
        # Who may verify.
        self.assertEqual(self.verify(token=auditor)["intact"], True)
        st, _, body = self.vault.request("GET", "/v1/audit/verify", token=operator)
        self.assertEqual((st, body["error"]["code"]), (403, "forbidden"), body)
        st, _, body = self.vault.request("GET", "/v1/audit", token=operator)
        self.assertEqual((st, body["error"]["code"]), (403, "forbidden"), body)

        # An edited target: verify names that record.
        n = recs[2]["seq"]
        [(original,)] = self.raw("SELECT target FROM audit_log WHERE seq = ?", (n,))
        self.raw("UPDATE audit_log SET target = 'x' WHERE seq = ?", (n,))
        v = self.verify(token=auditor)
        self.assertEqual((v["intact"], v["first_bad"]), (False, n), v)
        self.assertIn(str(n), v["reason"])
        # Put back exactly as it was: intact again.
        self.raw("UPDATE audit_log SET target = ? WHERE seq = ?", (original, n))
        self.assertEqual(self.verify()["intact"], True)

        # A deleted record: verify names the missing number.
        m = recs[4]["seq"]
        self.raw("DELETE FROM audit_log WHERE seq = ?", (m,))
        v = self.verify()
        self.assertEqual((v["intact"], v["first_bad"]), (False, m), v)
        self.assertIn("missing", v["reason"])
        # The break stays where it is while the trail grows.
        self.change("PUT", "/v1/services/at-late",
                    {"environment": "production", "domains": ["late.example.com"]})
        v = self.verify()
        self.assertEqual((v["intact"], v["first_bad"]), (False, m), v)



def v1_hash(rec, prev):
    """The unkeyed chain's SHA-256 of a row (seq, at, actor_id, actor_name, action, target,
    ok, error, request_id, fingerprints), as anyone who can read the code can compute it."""
    h = hashlib.sha256()

    def field(b):
        h.update(len(b).to_bytes(4, "big") + b)
    field(b"certvault-audit-1")
    field(prev)
    for v in rec:
        field(str(v).encode() if isinstance(v, int) else v.encode())
    return h.digest()


V1_COLS = "seq, at, actor_id, actor_name, action, target, ok, error, request_id, fingerprints"


class AuditKeyTest(AuditCase):
    """The chain is keyed with an HMAC key in the token: rewriting a record and recomputing
    every plain SHA-256 link after it is caught, and the key cannot be read out."""

    def raw(self, sql, args=()):
        return self.vault.sql(sql, args)

    def rehash_from(self, n, keyed=None):
        """Recomputes the plain SHA-256 of every record from n on, in order, each linked to
        the one before: what someone who can write the file but not use the token can do."""
        [(prev,)] = self.raw("SELECT hash FROM audit_log WHERE seq = ?", (n - 1,))
        for row in self.raw("SELECT " + V1_COLS + " FROM audit_log WHERE seq >= ? ORDER BY seq",
                            (n,)):
            h = v1_hash(row, prev)
            self.raw("UPDATE audit_log SET prev_hash = ?, hash = ?" +
                     (", keyed = %d" % keyed if keyed is not None else "") +
                     " WHERE seq = ?", (prev, h, row[0]))
            prev = h

    def test_a_rewritten_and_rehashed_record_is_named(self):
        for i in range(5):
            self.change("PUT", "/v1/services/ak-%d" % i,
                        {"environment": "production", "domains": ["ak%d.example.com" % i]})
        recs = self.records_after(0)
        v = self.verify()
        self.assertEqual((v["intact"], v["keyed_from"], v["unkeyed"]), (True, 1, 0), v)
        self.assertTrue(all(r["keyed"] for r in recs), recs)
        n = recs[3]["seq"]
        saved = self.raw("SELECT seq, target, prev_hash, hash, keyed FROM audit_log"
                         " WHERE seq >= ?", (n,))

        # The attack of issue 16: the target rewritten, every link after it recomputed.
        self.raw("UPDATE audit_log SET target = 'someone-else' WHERE seq = ?", (n,))
        self.rehash_from(n)
        v = self.verify()
        self.assertEqual((v["intact"], v["first_bad"]), (False, n), v)
        self.assertIn("record %d" % n, v["reason"])
        # The same with the records marked as from before the key: a downgrade.
        self.rehash_from(n, keyed=0)
        v = self.verify()
        self.assertEqual((v["intact"], v["first_bad"]), (False, n), v)
        self.assertIn("not keyed", v["reason"])
        # Put back as they were: intact again, and new records chain on.
        for seq, target, prev, h, keyed in saved:
            self.raw("UPDATE audit_log SET target = ?, prev_hash = ?, hash = ?, keyed = ?"
                     " WHERE seq = ?", (target, prev, h, keyed, seq))
        self.change("PUT", "/v1/services/ak-late",
                    {"environment": "production", "domains": ["aklate.example.com"]})
        self.assertEqual(self.verify()["intact"], True)

    def test_records_are_keyed_with_a_link_key_the_token_derives(self):
        # Each process keys its records with a link key of its own, which the token's key
        # derives at start: one number for all of this process's records.
        [(start,)] = self.raw("SELECT coalesce(max(seq), 0) FROM audit_log")
        for i in range(3):
            self.change("PUT", "/v1/services/lk-%d" % i,
                        {"environment": "production", "domains": ["lk%d.example.com" % i]})
        rows = self.raw("SELECT seq, link_key FROM audit_log WHERE seq > ? ORDER BY seq",
                        (start,))
        self.assertEqual(len(rows), 3, rows)
        links = {link for _, link in rows}
        self.assertEqual(len(links), 1, rows)
        link = links.pop()
        # 53 bits: exact in any JSON reader. The API names it on each record it keyed.
        self.assertTrue(0 < link < 2 ** 53, link)
        self.assertEqual({r.get("link_key") for r in self.records_after(start)}, {link})
        n = rows[-1][0]
        # The record said to be keyed with another link, or with the token's key itself:
        # changed, whatever its links after it say.
        for other in (link ^ 1, 0):
            self.raw("UPDATE audit_log SET link_key = ? WHERE seq = ?", (other, n))
            v = self.verify()
            self.assertEqual((v["intact"], v["first_bad"]), (False, n), v)
            self.assertIn("changed", v["reason"])
        self.raw("UPDATE audit_log SET link_key = ? WHERE seq = ?", (link, n))
        self.assertEqual(self.verify()["intact"], True)
        # After a restart: another link, and the earlier one's records still verify (the
        # token derives it again).
        self.vault.stop()
        self.vault.start()
        self.change("PUT", "/v1/services/lk-after",
                    {"environment": "production", "domains": ["lkafter.example.com"]})
        [(after,)] = self.raw("SELECT link_key FROM audit_log ORDER BY seq DESC LIMIT 1")
        self.assertNotIn(after, (0, link))
        v = self.verify()
        self.assertEqual((v["intact"], v["keyed_from"], v["unkeyed"]), (True, 1, 0), v)
        # The rewrite attack on a record of the earlier link: caught as before.
        saved = self.raw("SELECT seq, target, prev_hash, hash FROM audit_log WHERE seq >= ?",
                         (n,))
        self.raw("UPDATE audit_log SET target = 'someone-else' WHERE seq = ?", (n,))
        self.rehash_from(n)
        v = self.verify()
        self.assertEqual((v["intact"], v["first_bad"]), (False, n), v)
        for seq, target, prev, h in saved:
            self.raw("UPDATE audit_log SET target = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                     (target, prev, h, seq))
        self.assertEqual(self.verify()["intact"], True)

    def test_the_key_is_sensitive_and_never_leaves_the_token(self):
        env = dict(self.vault.env(), CV_TEST_PIN=self.vault.pin)
        base = ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.vault.label,
                "--login", "--pin", "env:CV_TEST_PIN"]
        out = run(base + ["--list-objects", "--type", "secrkey"], env=env).stdout.decode()
        self.assertEqual(out.count("Secret Key Object"), 1, out)
        self.assertIn("label:      certvault-audit-hmac", out)
        access = [line for line in out.splitlines() if "Access:" in line]
        self.assertEqual(len(access), 1, out)
        self.assertIn("sensitive", access[0])
        self.assertIn("never extractable", access[0])
        self.assertNotIn(" extractable,", access[0].replace("never extractable", ""))
        usage = [line for line in out.splitlines() if "Usage:" in line]
        for use in ("encrypt", "decrypt", "wrap", "derive"):
            self.assertNotIn(use, usage[0])
        # Reading its value is refused by the token.
        p = run(base + ["--read-object", "--type", "secrkey", "--label",
                        "certvault-audit-hmac"], env=env, check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        # A restart finds the same key by its label: the chain still verifies, nothing new.
        self.vault.stop()
        self.vault.start()
        self.assertNotIn("made the audit key", self.vault.log())
        self.assertEqual(self.verify()["intact"], True)
        self.assertIn("made the audit key", self.vault.whole_log())


class AuditUpgradeTest(AuditCase):
    """A database whose chain was written before the key: the keyed chain starts at a
    checkpoint, and verify says where."""

    def test_unkeyed_chain_is_continued_from_a_checkpoint(self):
        for i in range(3):
            self.change("PUT", "/v1/services/au-up-%d" % i,
                        {"environment": "production", "domains": ["up%d.example.com" % i]})
        self.vault.stop()
        env = dict(self.vault.env(), CV_TEST_PIN=self.vault.pin)
        run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.vault.label,
             "--login", "--pin", "env:CV_TEST_PIN", "--delete-object", "--type", "secrkey",
             "--label", "certvault-audit-hmac"], env=env)
        # A keyed chain whose key is gone: no start, and no new key made in its place.
        p = subprocess.run([CERTVAULTD], env=self.vault.env(), capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"restore the token", p.stderr)
        out = run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.vault.label,
                   "--login", "--pin", "env:CV_TEST_PIN", "--list-objects", "--type",
                   "secrkey"], env=env).stdout.decode()
        self.assertNotIn("Secret Key Object", out)

        # Back to what an older certvaultd left: plain links, no key in the token.
        prev = bytes(32)
        rows = self.vault.sql("SELECT " + V1_COLS + " FROM audit_log ORDER BY seq")
        for row in rows:
            h = v1_hash(row, prev)
            # (An older certvaultd wrote no changes or link keys either.)
            self.vault.sql("UPDATE audit_log SET prev_hash = ?, hash = ?, keyed = 0, source = '',"
                           " changes = '', link_key = 0 WHERE seq = ?", (prev, h, row[0]))
            prev = h
        last = len(rows)

        self.vault.start()
        self.assertIn("keyed from record %d on" % (last + 1), self.vault.log())
        v = self.verify()
        self.assertEqual((v["intact"], v["keyed_from"], v["unkeyed"]), (True, last + 1, last), v)
        cp = self.records_after(last)[0]
        self.assertEqual((cp["action"], cp["keyed"], cp["detail"]),
                         ("audit.keyed", True, "unkeyed_through=%d" % last), cp)
        self.change("PUT", "/v1/services/au-up-late",
                    {"environment": "production", "domains": ["uplate.example.com"]})
        self.assertEqual(self.verify()["intact"], True)
        # A keyed record made to look older than the key: the token says where keys begin.
        [(n,)] = self.raw_one("SELECT max(seq) FROM audit_log")
        self.vault.sql("UPDATE audit_log SET keyed = 0, source = '' WHERE seq >= ?", (last + 1,))
        v = self.verify()
        self.assertEqual((v["intact"], v["first_bad"]), (False, last + 1), v)

    def raw_one(self, sql):
        return self.vault.sql(sql)


class AuditFloodTest(AuditCase):
    """A flood of refused requests from one address: a bounded number of records whose
    counts add up to every attempt, and 429 with Retry-After past the documented rate."""

    settings = {"CERTVAULT_AUDIT_REPEAT_INTERVAL": "2",
                "CERTVAULT_AUDIT_ANONYMOUS_REFUSALS_PER_MINUTE": "600",
                "CERTVAULT_AUDIT_ANONYMOUS_REFUSAL_BURST": "20"}

    def test_flood_collapses_and_is_rate_limited(self):
        seq0 = self.last_seq()
        attempts, statuses, waits = 300, [], []
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.vault.port, timeout=30)
        for i in range(attempts):
            conn.request("DELETE", "/v1/certificates/flood-%d?confirm=delete" % i)
            resp = conn.getresponse()
            body = json.loads(resp.read())
            statuses.append(resp.status)
            if resp.status == 429:
                self.assertEqual(body["error"]["code"], "rate_limited", body)
                waits.append(resp.getheader("Retry-After"))
            else:
                self.assertEqual(body["error"]["code"], "unauthorized", body)
        conn.close()
        elapsed = time.monotonic() - start
        n401 = statuses.count(401)
        # The burst, plus what 10 a second refilled meanwhile; the rest waited.
        self.assertGreaterEqual(n401, 20)
        self.assertLessEqual(n401, 20 + int(10 * elapsed) + 1, (n401, elapsed))
        self.assertEqual(n401 + statuses.count(429), attempts)
        self.assertTrue(waits and all(w is not None and 1 <= int(w) <= 60 for w in waits),
                        waits[:5])
        # The same address with a valid token is not held up, nor is health.
        st, _, _ = self.vault.request("GET", "/v1/certificates")
        self.assertEqual(st, 200)
        st, _, _ = self.vault.request("GET", "/v1/health", token=None)
        self.assertEqual(st, 200)

        # Reading the trail writes what was only counted: every attempt is in a count.
        recs = [r for r in self.records_after(seq0) if r["action"] == "certificate.delete"]
        self.assertEqual(sum(r["count"] for r in recs), attempts, recs)
        # One record when an interval opens and one with the count of its repeats, for each
        # error, in every interval the flood touched.
        intervals = int(elapsed / 2) + 2
        self.assertLessEqual(len(recs), 2 * 2 * intervals, recs)
        for r in recs:
            self.assertEqual((r["outcome"], r["actor"]["name"], r["source"]),
                             ("refused", "anonymous", "127.0.0.1"), r)
            if r["count"] > 1:
                self.assertLessEqual(epoch(r["first_at"]), epoch(r["last_at"]), r)
        self.assertEqual({r["error"] for r in recs}, {"unauthorized", "rate_limited"})
        self.assertEqual(self.verify()["intact"], True)

        # After the interval, a new refusal opens a new record at once.
        time.sleep(2.1)
        st, _, _ = self.vault.request("DELETE", "/v1/certificates/flood-late?confirm=delete",
                                      token=None)
        self.assertIn(st, (401, 429))
        late = self.records_after(recs[-1]["seq"])
        self.assertTrue(any(r["target"] == "flood-late" and r["count"] == 1 for r in late),
                        late)


class AuditStopTest(AuditCase):
    """Counts not written yet are written when certvaultd stops."""

    settings = {"CERTVAULT_AUDIT_REPEAT_INTERVAL": "3600"}

    def test_counts_are_written_at_stop(self):
        seq0 = self.last_seq()
        for i in range(3):
            st, _, _ = self.vault.request("DELETE", "/v1/services/stop-%d" % i, token=None)
            self.assertEqual(st, 401)
        self.vault.stop()
        self.vault.start()
        recs = [r for r in self.records_after(seq0) if r["action"] == "service.delete"]
        self.assertEqual([(r["count"], r["target"]) for r in recs],
                         [(1, "stop-0"), (2, "stop-2")], recs)
        self.assertEqual(self.verify()["intact"], True)


class AuditManySourcesTest(AuditCase):
    """Refusals from more addresses than certvaultd counts apart: the rest share one count,
    so the records stay bounded however many addresses a flood comes from."""

    settings = {"CERTVAULT_AUDIT_ANONYMOUS_REFUSALS_PER_MINUTE": "0"}
    SLOTS = 256  # src/vault/audit.c REFUSAL_SLOTS

    def test_many_sources_share_a_count(self):
        seq0 = self.last_seq()
        sources = ["127.1.%d.%d" % (i // 200, i % 200 + 1) for i in range(400)]
        attempts = 0
        for src in sources:
            conn = http.client.HTTPConnection("127.0.0.1", self.vault.port, timeout=30,
                                              source_address=(src, 0))
            for _ in range(2):
                conn.request("DELETE", "/v1/jwks/many-%d" % attempts)
                resp = conn.getresponse()
                resp.read()
                self.assertEqual(resp.status, 401)
                attempts += 1
            conn.close()
        recs = [r for r in self.records_after(seq0) if r["action"] == "jwk.delete"]
        self.assertEqual(sum(r["count"] for r in recs), attempts)
        # At most an opening and a count per slot, and the slot that gave way to the shared
        # count: well under one record per attempt.
        self.assertLessEqual(len(recs), 2 * (self.SLOTS + 1), len(recs))
        self.assertEqual({r["source"] for r in recs[:self.SLOTS]}, set(sources[:self.SLOTS]))
        self.assertEqual(self.verify()["intact"], True)


class AuditArchiveTest(AuditCase):
    """Records archived to a file: the file verifies on its own, the live chain still
    verifies through the checkpoint, and tampering with either is named."""

    def archive(self, path, *extra, check=True):
        return run([CERTVAULTD, "--audit-archive", path, "--older-than-days", "0"] +
                   list(extra), env=self.vault.env(), check=check)

    def check_archive(self, path, check=True):
        return run([CERTVAULTD, "--audit-verify-archive", path], env=self.vault.env(),
                   check=check)

    def test_archive_verifies_alone_and_the_live_chain_still_does(self):
        for i in range(4):
            self.change("PUT", "/v1/services/arc-%d" % i,
                        {"environment": "production", "domains": ["arc%d.example.com" % i]})
        before = self.records_after(0)
        time.sleep(1.1)  # everything above is now older than this second
        path = os.path.join(self.vault.dir, "audit-1.jsonl")
        out = self.archive(path).stdout.decode()
        through = before[-1]["seq"]
        self.assertIn("archived records 1-%d (%d)" % (through, through), out)
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(len(data.splitlines()), through + 1)
        # Never over an existing file.
        p = self.archive(path, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"exists", p.stderr)

        out = self.check_archive(path).stdout.decode()
        self.assertIn("intact: records 1-%d" % through, out)
        self.assertIn(hashlib.sha256(data).hexdigest(), out)
        # The live chain: the checkpoint names the range, its head and the file's digest.
        live = self.records_after(0)
        self.assertEqual(live[0]["seq"], through + 1, live)
        cp = live[-1]
        self.assertEqual((cp["action"], cp["target"], cp["actor"]["name"], cp["keyed"]),
                         ("audit.archive", "1-%d" % through, "certvaultd", True), cp)
        self.assertIn("head=" + before[-1]["hash"], cp["detail"])
        self.assertIn("file_sha256=" + hashlib.sha256(data).hexdigest(), cp["detail"])
        v = self.verify()
        self.assertEqual((v["intact"], v["archived_through"], v["first_seq"]),
                         (True, through, through + 1), v)

        # A second archive takes the checkpoint too; the chain still verifies.
        self.change("PUT", "/v1/services/arc-late",
                    {"environment": "production", "domains": ["arclate.example.com"]})
        time.sleep(1.1)
        path2 = os.path.join(self.vault.dir, "audit-2.jsonl")
        self.archive(path2)
        self.assertIn("intact", self.check_archive(path2).stdout.decode())
        v = self.verify()
        self.assertEqual(v["intact"], True, v)
        self.assertGreater(v["archived_through"], through)

        # An archived record edited in the file is named.
        lines = data.decode().splitlines(keepends=True)
        rec = json.loads(lines[1])
        rec["target"] = "someone-else"
        lines[1] = json.dumps(rec) + "\n"
        with open(path, "w") as f:
            f.write("".join(lines))
        p = self.check_archive(path, check=False)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn(b"record 2 was changed", p.stdout)
        # A live record removed after the checkpoint: the chain says which.
        for name in ("arc-x", "arc-y"):
            self.change("PUT", "/v1/services/" + name,
                        {"environment": "production", "domains": [name + ".example.com"]})
        first = self.records_after(0)[1]["seq"]
        self.vault.sql("DELETE FROM audit_log WHERE seq = ?", (first,))
        v = self.verify()
        self.assertEqual((v["intact"], v["first_bad"]), (False, first), v)


if __name__ == "__main__":
    unittest.main()
