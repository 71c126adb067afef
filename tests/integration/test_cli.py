"""Integration tests of `certvault`, the command line client, against a real certvaultd with a
fresh SoftHSM token and SQLite file: every command, the table and --json outputs, -q, each
exit code, where the token comes from (environment, file, config file with its mode checked),
passwords from files, and the confirmations."""

import base64
import json
import os
import pty
import select
import subprocess
import time
import unittest

from harness import BUILD, VaultTestCase, run

CLI = os.path.join(BUILD, "certvault")


class CliTestCase(VaultTestCase):

    def cli(self, *args, env=None, token="env", input=None):
        """Runs certvault; returns (exit code, stdout text, stderr text)."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("CERTVAULT_")}
        e["CERTVAULT_URL"] = "http://127.0.0.1:%d" % self.vault.port
        e["HOME"] = self.tmp  # no config file of the machine's user
        e.pop("XDG_CONFIG_HOME", None)
        if token == "env":
            e["CERTVAULT_TOKEN"] = self.vault.admin_token
        e.update(env or {})
        p = subprocess.run([CLI] + list(args), env=e, capture_output=True, timeout=60,
                           input=input, stdin=subprocess.DEVNULL if input is None else None)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def ok(self, *args, **kw):
        rc, out, err = self.cli(*args, **kw)
        self.assertEqual(rc, 0, "certvault %s: %s%s" % (" ".join(args), out, err))
        return out

    def write(self, name, text, mode=0o600):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def imported(self, name, **kw):
        m = self.material(name, **kw)
        self.ok("import", name, "--cert", m.cert_path, "--key", m.key_path, "-q")
        return m


class TestCommands(CliTestCase):

    def test_import_show_ls_json_and_quiet(self):
        m = self.material("cli-a", san="a.example.com")
        out = self.ok("import", "cli-a", "--cert", m.cert_path, "--key", m.key_path,
                      "--description", "first one", "--tag", "team=payments",
                      "--tag", "ticket=OPS-7, a=b", "--json")
        body = json.loads(out)
        self.assertEqual(body["name"], "cli-a")
        self.assertEqual(body["description"], "first one")
        # Tags go as the form's tags.KEY fields (issue 17).
        self.assertEqual(body["tags"], {"team": "payments", "ticket": "OPS-7, a=b"})
        rc, _, err = self.cli("import", "cli-t", "--cert", m.cert_path, "--key", m.key_path,
                              "--tag", "novalue")
        self.assertNotEqual(rc, 0)
        self.assertIn("KEY=VALUE", err)
        # The table: headers, the row, the local time with its zone.
        out = self.ok("ls")
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("NAME"), out)
        for h in ("DOMAIN", "USED BY", "STATUS", "EXPIRES IN", "UPDATED"):
            self.assertIn(h, lines[0])
        row = [l for l in lines if l.startswith("cli-a ")]
        self.assertEqual(len(row), 1, out)
        self.assertIn("a.example.com", row[0])
        self.assertIn("valid", row[0])
        self.assertNotIn("\x1b[", out)  # no colour when stdout is not a terminal
        # --json is the API's document; -q only names.
        doc = json.loads(self.ok("ls", "--json"))
        self.assertIn("cli-a", [i["name"] for i in doc["items"]])
        self.assertIn("cli-a", self.ok("ls", "-q").split())
        self.assertEqual(self.ok("ls", "-q", "--search", "zzz-none"), "")
        # show: fields for people, the API's JSON for machines.
        out = self.ok("show", "cli-a")
        self.assertRegex(out, r"(?m)^name\s+cli-a$")
        self.assertRegex(out, r"(?m)^key\.pkcs11_uri\s+pkcs11:")
        api = self.vault.request("GET", "/v1/certificates/cli-a")[2]
        self.assertEqual(json.loads(self.ok("show", "cli-a", "--json")), api)

    def test_every_page_unless_limit(self):
        for i in range(3):
            self.imported("page-%d" % i)
        # Pages of one: the CLI follows next_cursor unless --limit.
        names = self.ok("ls", "-q", "--search", "page-").split()
        self.assertEqual(sorted(names), ["page-0", "page-1", "page-2"])
        self.assertEqual(len(self.ok("ls", "-q", "--search", "page-", "--limit", "2").split()), 2)
        rc, _, err = self.cli("ls", "--limit", "0")
        self.assertEqual(rc, 2, err)

    def test_exit_codes(self):
        # 1: refused by the API, its code and message on stderr.
        rc, out, err = self.cli("show", "no-such-cert")
        self.assertEqual(rc, 1)
        self.assertIn("not_found", err)
        # 2: usage.
        for args in (["frobnicate"], ["show"], ["show", "a", "b"], ["ls", "--cert", "x"],
                     ["ls", "--bogus"], ["services", "put", "x"], []):
            rc, _, err = self.cli(*args)
            self.assertEqual(rc, 2, (args, err))
        # 3: nobody listening.
        rc, _, err = self.cli("ls", env={"CERTVAULT_URL": "http://127.0.0.1:1"})
        self.assertEqual(rc, 3, err)
        self.assertIn("cannot reach", err)
        # 1 again: no token at all is the API's 401.
        rc, _, err = self.cli("ls", token=None)
        self.assertEqual(rc, 1)
        self.assertIn("unauthorized", err)
        # --help exits 0 and names every command.
        out = self.ok("--help")
        for word in ("ls", "show", "import", "renew", "replace", "edit", "rm", "export",
                     "versions", "summary", "deleted", "services", "environments", "jwks",
                     "trust",
                     "audit", "inventory",
                     "tokens", "health", "sync"):
            self.assertRegex(out, r"(?m)^  %s\b" % word)
        self.assertIn("usage: certvault import", self.ok("import", "--help"))

    def test_token_sources_and_mode_check(self):
        token_file = self.write("tok", self.vault.admin_token + "\n", 0o600)
        self.ok("summary", "--token-file", token_file, token=None)
        os.chmod(token_file, 0o644)
        rc, _, err = self.cli("summary", "--token-file", token_file, token=None)
        self.assertEqual(rc, 2)
        self.assertIn("chmod 600", err)
        # The config file: url and token; refused while others may read it.
        cfg_dir = os.path.join(self.tmp, "cfg", "certvault")
        os.makedirs(cfg_dir, exist_ok=True)
        cfg = os.path.join(cfg_dir, "config")
        with open(cfg, "w") as f:
            f.write("url = http://127.0.0.1:%d\ntoken = %s\n" % (self.vault.port,
                                                                self.vault.admin_token))
        os.chmod(cfg, 0o640)
        env = {"XDG_CONFIG_HOME": os.path.join(self.tmp, "cfg"), "CERTVAULT_URL": ""}
        rc, _, err = self.cli("summary", env=env, token=None)
        self.assertEqual(rc, 2, err)
        self.assertIn("config file", err)
        os.chmod(cfg, 0o600)
        self.assertIn("total", self.ok("summary", env=env, token=None))
        # The environment wins over the config file; a wrong token is the API's 401.
        rc, _, err = self.cli("summary", env=dict(env, CERTVAULT_TOKEN="cvt_0000000000000000_x"),
                              token=None)
        self.assertEqual(rc, 1, err)
        # A token is never an argument.
        rc, _, err = self.cli("summary", "--token", self.vault.admin_token)
        self.assertEqual(rc, 2)

    def test_encrypted_key_and_pkcs12_passwords_from_files(self):
        m = self.material("enc", key_format="pkcs8enc", password="s3cret-pass")
        rc, _, err = self.cli("import", "enc", "--cert", m.cert_path, "--key", m.key_path)
        self.assertEqual(rc, 2, err)  # encrypted, no terminal, no file
        self.assertIn("no terminal", err)
        wrong = self.write("wrong.pw", "nope\n")
        rc, _, err = self.cli("import", "enc", "--cert", m.cert_path, "--key", m.key_path,
                              "--password-file", wrong)
        self.assertEqual(rc, 1)
        self.assertIn("bad_password", err)
        pw = self.write("enc.pw", "s3cret-pass\n")
        self.ok("import", "enc", "--cert", m.cert_path, "--key", m.key_path,
                "--password-file", pw)
        # PKCS#12 with its password from a file.
        p12 = os.path.join(self.tmp, "p12.p12")
        m2 = self.material("p12src")
        run(["openssl", "pkcs12", "-export", "-in", m2.cert_path, "-inkey", m2.key_path,
             "-out", p12, "-passout", "pass:p12pass"])
        p12pw = self.write("p12.pw", "p12pass")
        out = self.ok("import", "from-p12", "--p12", p12, "--password-file", p12pw, "--json")
        self.assertEqual(json.loads(out)["name"], "from-p12")

    def test_export_versions_renew_replace_edit(self):
        m = self.imported("ex", san="ex.example.com")
        pem = self.ok("export", "ex")
        self.assertEqual(pem.strip(), m.cert.strip())
        out_file = os.path.join(self.tmp, "ex.der")
        self.ok("export", "ex", "--format", "der", "-o", out_file)
        with open(out_file, "rb") as f:
            self.assertEqual(f.read(), m.cert_der())
        for fmt in ("chain", "public-key", "jwk"):
            self.assertTrue(self.ok("export", "ex", "--format", fmt))
        rc, _, err = self.cli("export", "ex", "--format", "p7b")
        self.assertEqual(rc, 1, err)
        # Bind to a service, renew: the service follows; versions lists both.
        self.ok("services", "put", "ex-site", "--environment", "production",
                "--domain", "ex.example.com", "-q")
        rc, _, err = self.cli("services", "bind", "ex-site", "ex")
        self.assertEqual(rc, 0, err)
        m2 = self.material("ex2", san="ex.example.com")
        out = json.loads(self.ok("renew", "ex", "--cert", m2.cert_path, "--key", m2.key_path,
                                 "--version", "1", "--json"))
        self.assertEqual(out["version"], 2)
        svc = json.loads(self.ok("services", "show", "ex-site", "--json"))
        self.assertEqual(svc["certificate"]["version"], 2)
        out = self.ok("versions", "ex")
        self.assertIn("VERSION", out.splitlines()[0])
        self.assertEqual(len(out.splitlines()), 3, out)
        # A stale version is the API's refusal.
        m3 = self.material("ex3", san="ex.example.com")
        rc, _, err = self.cli("renew", "ex", "--cert", m3.cert_path, "--key", m3.key_path,
                              "--version", "1")
        self.assertEqual(rc, 1)
        self.assertIn("already_renewed", err)
        self.ok("replace", "ex", "--cert", m3.cert_path, "--key", m3.key_path, "-q")
        self.ok("edit", "ex", "--description", "renewed twice", "-q")
        self.assertEqual(json.loads(self.ok("show", "ex", "--json"))["description"],
                         "renewed twice")
        rc, _, err = self.cli("edit", "ex")
        self.assertEqual(rc, 2, err)
        # In use: rm refused by the API; unbind, then rm --yes.
        rc, _, err = self.cli("rm", "ex", "--yes")
        self.assertEqual(rc, 1)
        self.assertIn("in_use", err)
        self.ok("services", "unbind", "ex-site", "-q")
        self.ok("rm", "ex", "--yes", "-q")
        rc, _, _ = self.cli("show", "ex")
        self.assertEqual(rc, 1)
        self.ok("services", "rm", "ex-site", "-q")
        self.assertNotIn("ex-site", self.ok("services", "ls", "-q").split())

    def test_environments(self):
        self.ok("environments", "put", "acc-eu", "--display-name", "Acceptance EU",
                "--description", "the EU acceptance cluster", "-q")
        out = self.ok("environments", "ls")
        self.assertIn("DISPLAY NAME", out.splitlines()[0])
        self.assertIn("Acceptance EU", out)
        env = json.loads(self.ok("environments", "show", "acc-eu", "--json"))
        self.assertEqual(env["display_name"], "Acceptance EU")
        self.ok("services", "put", "eu-site", "--environment", "acc-eu", "--domain",
                "eu.example.com", "-q")
        rc, _, err = self.cli("services", "put", "nowhere", "--environment", "no-such-env",
                              "--domain", "n.example.com")
        self.assertEqual(rc, 1, err)
        rc, _, err = self.cli("environments", "rm", "acc-eu")
        self.assertEqual(rc, 1, err)  # a service belongs to it
        self.ok("services", "rm", "eu-site", "-q")
        self.ok("environments", "rm", "acc-eu", "-q")
        self.assertNotIn("acc-eu", self.ok("environments", "ls", "-q").split())

    def test_rm_asks_for_the_word_delete(self):
        self.imported("ask-me")
        # No terminal, no --yes: nothing deleted, exit 2.
        rc, _, err = self.cli("rm", "ask-me")
        self.assertEqual(rc, 2, err)
        self.assertEqual(self.vault.request("GET", "/v1/certificates/ask-me")[0], 200)
        # At a terminal: a wrong word keeps it, "delete" deletes it.
        self.assertNotEqual(self.at_terminal(["rm", "ask-me"], "remove\n"), 0)
        self.assertEqual(self.vault.request("GET", "/v1/certificates/ask-me")[0], 200)
        self.assertEqual(self.at_terminal(["rm", "ask-me"], "delete\n"), 0)
        self.assertEqual(self.vault.request("GET", "/v1/certificates/ask-me")[0], 404)

    def at_terminal(self, args, answer):
        """Runs certvault with a pseudo-terminal as its terminal and types answer at the
        prompt; returns the exit code."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTVAULT_")}
        env.update(CERTVAULT_URL="http://127.0.0.1:%d" % self.vault.port,
                   CERTVAULT_TOKEN=self.vault.admin_token, HOME=self.tmp)
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(CLI, [CLI] + args, env)
        seen = b""
        deadline = time.time() + 30
        while b"to confirm" not in seen and time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 1)
            if r:
                try:
                    seen += os.read(fd, 1024)
                except OSError:
                    break
        os.write(fd, answer.encode())
        while True:
            try:
                if not os.read(fd, 1024):
                    break
            except OSError:
                break
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status)

    def test_deleted_ls_recover_purge(self):
        # This class's certvaultd deletes at once (the harness's retention 0): the recover
        # and purge commands are TestDeleted's; here they find nothing.
        rc, _, err = self.cli("deleted", "recover", "none-such")
        self.assertEqual(rc, 1, err)
        self.assertIn("not_found", err)

    def test_jwks_with_renew_choice(self):
        self.imported("jw", key="rsa2048", san="jw.example.com")
        out = json.loads(self.ok("jwks", "create", "jw", "--use", "sig", "--alg", "RS256",
                                 "--json"))
        kid = out["kid"]
        self.assertIn(kid, self.ok("jwks", "ls", "-q").split())
        self.assertEqual(json.loads(self.ok("jwks", "show", kid, "--json"))["kid"], kid)
        # A kid is base64url and may begin with "-": a word of one dash and more than one
        # letter is an argument (short options are one per word), with or without "--".
        for args in (["jwks", "show", "-q" + "A" * 41], ["jwks", "show", "-uEt5j" + "B" * 37, "-q"],
                     ["jwks", "show", "--", "-o" + "C" * 41]):
            rc, _, err = self.cli(*args)
            self.assertEqual(rc, 1, (args, err))
            self.assertIn("not_found", err)
        rc, _, err = self.cli("jwks", "show", "-x")
        self.assertEqual(rc, 2, err)
        self.assertIn("unknown option -x", err)
        # Replace with JWKs linked: the choice is required, then confirmed by the name.
        m2 = self.material("jw2", key="rsa2048", san="jw.example.com")
        rc, _, err = self.cli("replace", "jw", "--cert", m2.cert_path, "--key", m2.key_path)
        self.assertEqual(rc, 1)
        self.assertIn("jwk_choice_required", err)
        rc, _, err = self.cli("replace", "jw", "--cert", m2.cert_path, "--key", m2.key_path,
                              "--jwk", "update", "--confirm", "not-jw")
        self.assertEqual(rc, 2, err)
        rc, _, err = self.cli("replace", "jw", "--cert", m2.cert_path, "--key", m2.key_path,
                              "--jwk", "update")
        self.assertEqual(rc, 2, err)  # no terminal to confirm at
        self.ok("replace", "jw", "--cert", m2.cert_path, "--key", m2.key_path,
                "--jwk", "update", "--confirm", "jw", "-q")
        # The superseded kid stays published for jwks.superseded_retention (24 h), beside
        # the new one.
        kids = self.ok("jwks", "ls", "-q").split()
        self.assertIn(kid, kids)
        self.assertEqual(len(kids), 2, kids)
        # rm with linked JWKs: delete them too, confirmed by the name.
        rc, _, err = self.cli("rm", "jw", "--yes")
        self.assertEqual(rc, 1, err)
        self.ok("rm", "jw", "--yes", "--jwk", "delete", "--confirm", "jw", "-q")
        self.assertEqual(self.ok("jwks", "ls", "-q").split(), [])

    def test_sign_with_a_certificate_and_a_jwk(self):
        """certvault sign: a file (bigger than the API takes as a message: hashed here),
        standard input and a hash made by openssl, each verified by openssl with the
        exported public key; a JWS verified by jose against the public JWKS; every refusal
        with its exit code; the manual in --help; completion."""
        self.imported("sg", san="sg.example.com")
        pub = os.path.join(self.tmp, "sg.pub")
        self.ok("export", "sg", "--format", "public-key", "-o", pub)
        big = os.path.join(self.tmp, "big.bin")
        with open(big, "wb") as f:
            f.write(os.urandom(1024 * 1024 + 7))
        sig = os.path.join(self.tmp, "big.sig")

        def verified(message_file, sig_file):
            p = run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", sig_file,
                     message_file], check=False)
            return p.returncode == 0 and b"Verified OK" in p.stdout
        self.ok("sign", "sg", "--alg", "ecdsa-sha256", "--file", big, "--binary", "-o", sig)
        self.assertTrue(verified(big, sig))
        # Standard input, base64 out (one line).
        msg = self.write("msg.txt", "hello, vault")
        rc, out, err = self.cli("sign", "sg", "--alg", "ecdsa-sha256", input=b"hello, vault")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count("\n"), 1)
        with open(sig, "wb") as f:
            f.write(base64.b64decode(out.strip()))
        self.assertTrue(verified(msg, sig))
        # A hash made elsewhere; ES256 answers r || s (64 bytes), der on request.
        digest = os.path.join(self.tmp, "msg.sha256")
        run(["openssl", "dgst", "-sha256", "-binary", "-out", digest, msg])
        self.ok("sign", "sg", "--alg", "ES256", "--prehashed", "--file", digest, "--format",
                "der", "--binary", "-o", sig)
        self.assertTrue(verified(msg, sig))
        body = json.loads(self.ok("sign", "sg", "--alg", "ES256", "--file", msg, "--json"))
        self.assertEqual(len(base64.b64decode(body["signature"])), 64)
        self.assertEqual(body["certificate"], "sg")
        # A JWS with the JWK's key, checked by jose against the public JWKS.
        kid = json.loads(self.ok("jwks", "create", "sg", "--use", "sig", "--alg", "ES256",
                                 "--json"))["kid"]
        rc, jws, err = self.cli("sign", "--kid", kid, "--header", '{"typ":"JWT"}',
                                input=b'{"sub":"svc"}')
        self.assertEqual(rc, 0, err)
        head = json.loads(base64.urlsafe_b64decode(jws.split(".")[0] + "=="))
        self.assertEqual(head, {"alg": "ES256", "kid": kid, "typ": "JWT"})
        token, jwks = self.write("t.jws", jws.strip()), os.path.join(self.tmp, "jwks.json")
        doc = self.vault.request("GET", "/.well-known/jwks.json", token=None)[2]
        with open(jwks, "wb") as f:
            f.write(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        p = run(["jose", "jws", "ver", "-i", token, "-k", jwks, "-O", "-"])
        self.assertEqual(p.stdout, b'{"sub":"svc"}')
        # Refusals: usage (2) before anything is sent, the API's (1) with its code.
        for args, words in (
                (("sign", "sg"), "needs --alg"),
                (("sign", "sg", "--alg", "ES999"), "must be one of"),
                (("sign", "sg", "--alg", "ES256", "--prehashed", "--file", msg), "32-byte hash"),
                (("sign", "sg", "--alg", "EdDSA", "--prehashed", "--file", digest),
                 "no --prehashed"),
                (("sign", "sg", "--alg", "ES256", "--file", "/nonexistent"), "cannot read"),
                (("sign", "sg", "--alg", "ES256", "--format", "pem"), "raw or der"),
                (("sign", "sg", "--kid", kid), "not both"),
                (("sign", "--kid", kid, "--alg", "ES256"), "its own alg"),
                (("sign", "--kid", kid, "--header", "[1]"), "JSON object"),
                (("sign",), "sign NAME --alg ALG, or sign --kid KID")):
            with self.subTest(args=args):
                rc, _, err = self.cli(*args, input=b"x")
                self.assertEqual(rc, 2, err)
                self.assertIn(words, err)
        for args, code in ((("sign", "sg", "--alg", "RS256"), "algorithm_mismatch"),
                           (("sign", "nope", "--alg", "ES256"), "not_found"),
                           (("sign", "--kid", "x" * 43), "not_found")):
            with self.subTest(args=args):
                rc, _, err = self.cli(*args, input=b"x")
                self.assertEqual(rc, 1, err)
                self.assertIn(code, err)
        self.assertIn("--prehashed", self.ok("sign", "--help"))
        # Completion offers the command, its options and its algorithms.
        comp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src",
                            "cli", "certvault.bash-completion")
        script = ('_init_completion() { cur=${COMP_WORDS[COMP_CWORD]}; '
                  'prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); '
                  'cword=$COMP_CWORD; }; _filedir() { :; }; source "$1"; '
                  'for line in "certvault si" "certvault sign sg --pre" '
                  '"certvault sign sg --alg ecdsa-sha3"; do COMP_WORDS=($line); '
                  'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _certvault; echo "${COMPREPLY[*]}"; '
                  'done')
        p = run(["bash", "-c", script, "bash", os.path.abspath(comp)])
        self.assertEqual(p.stdout.decode().split("\n")[:3],
                         ["sign", "--prehashed", "ecdsa-sha384"])

    def test_trust_audit_inventory_tokens_health(self):
        ca = self.material("cli-ca", ca=True, cn="CLI Test CA")
        self.ok("trust", "add", "cli-ca", "--file", ca.cert_path, "-q")
        self.assertIn("cli-ca", self.ok("trust", "ls", "-q").split())
        self.assertIn("CLI Test CA", self.ok("trust", "show", "cli-ca"))
        pem = self.ok("trust", "export")
        self.assertIn(ca.cert.strip(), pem)
        pw = self.write("ts.pw", "changeit\n")
        p12 = os.path.join(self.tmp, "ts.p12")
        self.ok("trust", "export", "--format", "pkcs12", "--password-file", pw, "-o", p12)
        out = run(["openssl", "pkcs12", "-in", p12, "-nokeys", "-passin", "pass:changeit"])
        self.assertIn(b"CLI Test CA", out.stdout)
        self.ok("trust", "rm", "cli-ca", "-q")
        rc, _, err = self.cli("trust", "add", "x")
        self.assertEqual(rc, 2, err)
        # Audit: the CLI's own changes, and the chain intact.
        out = self.ok("audit", "ls", "--action", "truststore.add")
        self.assertIn("cli-ca", out)
        self.assertIn("intact", self.ok("audit", "verify"))
        # Inventory in both formats, to a file.
        inv = os.path.join(self.tmp, "inv.csv")
        self.ok("inventory", "--format", "csv", "-o", inv)
        with open(inv) as f:
            self.assertTrue(f.readline().startswith("type,kind,name,"))
        json.loads(self.ok("inventory"))
        # Tokens: create (shown once, -q prints only it), use it, list, revoke.
        secret = self.ok("tokens", "create", "cli-aud", "--role", "auditor", "-q").strip()
        self.assertTrue(secret.startswith("cvt_"))
        env = {"CERTVAULT_TOKEN": secret}
        self.assertIn("total", self.cli("summary", env=env, token=None)[1])
        rc, _, err = self.cli("services", "put", "nope", "--environment", "x", "--domain",
                              "x.example.com", env=env, token=None)
        self.assertEqual(rc, 1)
        self.assertIn("forbidden", err)
        tid = [t["id"] for t in json.loads(self.ok("tokens", "ls", "--json"))["items"]
               if t["name"] == "cli-aud"][0]
        self.assertIn("cli-aud", self.ok("tokens", "ls"))
        self.ok("tokens", "revoke", tid, "-q")
        rc, _, _ = self.cli("summary", env=env, token=None)
        self.assertEqual(rc, 1)
        # A scoped token (issue 18 part 3): --scope KEY=V1,V2, shown in the list; a refusal
        # of a bad scope is the API's (exit 1), a malformed option a usage error (exit 2).
        made = json.loads(self.ok("tokens", "create", "cli-deploy", "--role", "operator",
                                  "--scope", "actions=read,bind",
                                  "--scope", "environments=production",
                                  "--scope", "certificates=www-*", "--json"))
        self.assertEqual(made["scope"], {"actions": ["read", "bind"],
                                         "environments": ["production"],
                                         "certificates": ["www-*"]})
        listed = self.ok("tokens", "ls")
        self.assertIn("read,bind certificates=www-* environments=production", listed)
        rc, _, err = self.cli("tokens", "create", "cli-bad", "--role", "operator",
                              "--scope", "actions=read,fly")
        self.assertEqual(rc, 1)
        self.assertIn("not an action", err)
        rc, _, err = self.cli("tokens", "create", "cli-bad", "--role", "operator",
                              "--scope", "colour=red")
        self.assertEqual(rc, 2)
        self.assertIn("--scope colour=red", err)
        # Health needs no token.
        self.assertIn("ok", self.ok("health", token=None))


class TestDeleted(CliTestCase):
    """certvault deleted ls|recover|purge against a certvaultd that keeps deleted
    certificates (issue 18)."""

    settings = {"CERTVAULT_LIFECYCLE_DELETED_RETENTION_DAYS": "30"}

    def test_deleted_ls_recover_purge(self):
        self.imported("del-a", san="a.example.com")
        self.imported("del-b", san="b.example.com")
        self.ok("rm", "del-a", "--yes", "-q")
        self.ok("rm", "del-b", "--yes", "-q")
        out = self.ok("deleted", "ls")
        self.assertIn("PURGED FROM", out.splitlines()[0])
        self.assertEqual(self.ok("deleted", "ls", "-q").split(), ["del-a", "del-b"])
        rows = json.loads(self.ok("deleted", "ls", "--json"))
        self.assertEqual(rows["items"][0]["deleted_by"], "admin", rows)
        self.ok("deleted", "recover", "del-a", "-q")
        self.assertEqual(self.vault.request("GET", "/v1/certificates/del-a")[0], 200)
        # A purge asks for the word; without a terminal or --yes nothing happens.
        keys = self.vault.count_token_objects()
        rc, _, err = self.cli("deleted", "purge", "del-b")
        self.assertEqual(rc, 2, err)
        self.assertEqual(self.vault.count_token_objects(), keys)
        self.ok("deleted", "purge", "del-b", "--yes", "-q")
        self.assertEqual(self.vault.count_token_objects(), keys - 1)
        self.assertEqual(self.ok("deleted", "ls", "-q").split(), [])
        rc, _, err = self.cli("deleted", "purge", "del-b", "--yes")
        self.assertEqual(rc, 1, err)


if __name__ == "__main__":
    unittest.main()
