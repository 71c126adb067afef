"""GET /metrics: the Prometheus text exposition format, parsed whole by a small parser here:
certificate dates, counts by status, request counters and latency histograms by route, token
operations, label escaping, and who may read it."""

import datetime
import re
import shutil
import tempfile
import time
import unittest

from harness import Certvaultd, Material, VaultTestCase

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_labels(text):
    """Parses 'a="x",b="y"' (the part between the braces); returns (dict, rest)."""
    labels = {}
    pos = 0
    while True:
        if text[pos] == "}":
            return labels, text[pos + 1:]
        m = re.match(r"(%s)=\"" % LABEL, text[pos:])
        if not m:
            raise ValueError("bad label at %r" % text[pos:])
        key = m.group(1)
        pos += m.end()
        value = []
        while text[pos] != '"':
            if text[pos] == "\\":
                esc = text[pos:pos + 2]
                if esc not in ESCAPES:
                    raise ValueError("bad escape %r" % esc)
                value.append(ESCAPES[esc])
                pos += 2
            else:
                value.append(text[pos])
                pos += 1
        pos += 1
        if key in labels:
            raise ValueError("label %s twice" % key)
        labels[key] = "".join(value)
        if text[pos] == ",":
            pos += 1


def parse(text):
    """The whole exposition: (types {family: type}, samples [(name, labels, value)], order
    of families as their samples appear). Raises on any line that is neither."""
    types, helps, samples = {}, {}, []
    assert text.endswith("\n"), "the exposition ends with a line feed"
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            m = re.match(r"# (TYPE|HELP) (%s) (.*)$" % NAME, line)
            if not m:
                continue  # any other comment
            kind, name, rest = m.groups()
            table = types if kind == "TYPE" else helps
            if name in table:
                raise ValueError("second %s line for %s" % (kind, name))
            if kind == "TYPE":
                if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError("bad type %r" % rest)
                if any(s[0] == name or s[0].startswith(name + "_") for s in samples):
                    raise ValueError("TYPE of %s after its samples" % name)
            table[name] = rest
            continue
        m = re.match(r"(%s)(\{)?" % NAME, line)
        if not m:
            raise ValueError("bad line %r" % line)
        name = m.group(1)
        rest = line[m.end():]
        labels = {}
        if m.group(2):
            labels, rest = parse_labels(rest)
        m = re.match(r" (\S+)( -?\d+)?$", rest)
        if not m:
            raise ValueError("bad value in %r" % line)
        samples.append((name, labels, float(m.group(1))))
    return types, samples


def family_of(name, types):
    """The family a sample belongs to: itself, or a histogram's base name."""
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
            return name[:-len(suffix)]
    return None


def epoch(rfc3339):
    return int(datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())


class MetricsTest(VaultTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        v = cls.vault
        st, _, body = v.request("POST", "/v1/tokens", {"name": "m-operator",
                                                        "role": "operator"})
        assert st == 201, body
        cls.operator = body["token"]
        st, _, body = v.request("POST", "/v1/tokens", {"name": "m-auditor", "role": "auditor"})
        assert st == 201, body
        cls.auditor = body["token"]
        # An issuer whose name needs every escape of the format in its label.
        cls.ca = Material(cls.tmp, "m-ca", cn='Escaped "CA" \\ one', ca=True)
        for name, kw in (("m-valid", {}),
                         ("m-soon", {"not_after": 10 * 86400}),
                         ("m-issued", {"issuer": cls.ca})):
            m = Material(cls.tmp, name, san=name + ".example.com", **kw)
            st, _, body = v.import_cert(name, m)
            assert st == 201, body

    def scrape(self, token=True, vault=None):
        st, headers, body = (vault or self.vault).request("GET", "/metrics", token=token)
        self.assertEqual(st, 200, body)
        self.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        text = body.decode("utf-8")
        types, samples = parse(text)
        return types, samples

    @staticmethod
    def value(samples, name, **labels):
        hits = [s[2] for s in samples if s[0] == name and
                all(s[1].get(k) == v for k, v in labels.items())]
        return sum(hits) if hits else 0.0

    def test_every_sample_has_its_type_and_families_are_together(self):
        types, samples = self.scrape()
        seen, last = [], None
        for name, labels, _ in samples:
            family = family_of(name, types)
            self.assertIsNotNone(family, "%s has no # TYPE line" % name)
            if family != last:
                self.assertNotIn(family, seen, "the samples of %s are split" % family)
                seen.append(family)
                last = family
        for family, kind in (("certvault_certificate_expiration_timestamp_seconds", "gauge"),
                             ("certvault_certificate_not_before_timestamp_seconds", "gauge"),
                             ("certvault_certificates", "gauge"),
                             ("certvault_http_requests_total", "counter"),
                             ("certvault_http_request_duration_seconds", "histogram"),
                             ("certvault_token_operations_total", "counter"),
                             ("certvault_token_errors_total", "counter")):
            self.assertEqual(types.get(family), kind, family)

    def test_every_sample_names_the_node(self):
        # Several nodes scraped into one Prometheus keep their series apart (issue 15): the
        # node label, first, is the name GET /v1/health gives.
        st, _, health = self.vault.request("GET", "/v1/health", token=None)
        self.assertEqual(st, 200)
        text = self.vault.request("GET", "/metrics")[2].decode()
        _, samples = parse(text)
        self.assertGreater(len(samples), 20)
        for name, labels, _ in samples:
            self.assertEqual(labels.get("node"), health["node"], name)
        for line in text.splitlines():
            if not line.startswith("#"):
                self.assertRegex(line, r'^\w+\{node="')

    def test_certificate_dates_are_the_certificates(self):
        _, samples = self.scrape()
        st, _, page = self.vault.request("GET", "/v1/certificates?limit=1000")
        self.assertEqual(st, 200)
        names = [c["name"] for c in page["items"]]
        self.assertTrue(names)
        expirations = {s[1]["name"]: s for s in samples
                       if s[0] == "certvault_certificate_expiration_timestamp_seconds"}
        not_befores = {s[1]["name"]: s for s in samples
                       if s[0] == "certvault_certificate_not_before_timestamp_seconds"}
        self.assertEqual(sorted(expirations), sorted(names))
        self.assertEqual(sorted(not_befores), sorted(names))
        for name in names:
            with self.subTest(name=name):
                st, _, d = self.vault.request("GET", "/v1/certificates/" + name)
                self.assertEqual(expirations[name][2], epoch(d["valid_to"]))
                self.assertEqual(not_befores[name][2], epoch(d["valid_from"]))
                # The escaped label reads back as the issuer, quotes and backslash included.
                self.assertEqual(expirations[name][1]["issuer"], d["issuer"])
        issuer = expirations["m-issued"][1]["issuer"]
        self.assertIn('"', issuer)
        self.assertIn("\\", issuer)

    def test_counts_by_status(self):
        _, samples = self.scrape()
        st, _, summary = self.vault.request("GET", "/v1/certificates/summary")
        self.assertEqual(st, 200)
        for status in ("valid", "expires_soon", "expired", "upcoming"):
            self.assertEqual(self.value(samples, "certvault_certificates", status=status),
                             summary[status], status)
        self.assertGreaterEqual(summary["expires_soon"], 1)

    def test_request_counters_increase(self):
        route = "GET /v1/certificates/{}"
        _, before = self.scrape()
        for _ in range(3):
            self.assertEqual(self.vault.request("GET", "/v1/certificates/m-valid")[0], 200)
        self.assertEqual(self.vault.request("GET", "/v1/certificates/nope")[0], 404)
        name = "certvault_http_requests_total"
        # A request is counted when libmicrohttpd reports it complete, which can come just
        # after the client has read its answer: the scrape waits for the last one (2 s at most).
        deadline = time.time() + 2
        while True:
            _, after = self.scrape()
            if (self.value(after, name, route=route, code="404") >
                    self.value(before, name, route=route, code="404") or
                    time.time() > deadline):
                break
            time.sleep(0.05)
        self.assertEqual(self.value(after, name, route=route, code="200") -
                         self.value(before, name, route=route, code="200"), 3)
        self.assertEqual(self.value(after, name, route=route, code="404") -
                         self.value(before, name, route=route, code="404"), 1)
        count = "certvault_http_request_duration_seconds_count"
        self.assertEqual(self.value(after, count, route=route) -
                         self.value(before, count, route=route), 4)
        # The scrape before this one was counted when it completed.
        self.assertGreaterEqual(self.value(after, name, route="GET /metrics", code="200"), 1)

    def test_histograms_are_cumulative(self):
        self.vault.request("GET", "/v1/certificates")
        _, samples = self.scrape()
        base = "certvault_http_request_duration_seconds"
        routes = {s[1]["route"] for s in samples if s[0] == base + "_count"}
        self.assertIn("GET /v1/certificates", routes)
        for route in routes:
            with self.subTest(route=route):
                buckets = [(s[1]["le"], s[2]) for s in samples
                           if s[0] == base + "_bucket" and s[1]["route"] == route]
                self.assertEqual(buckets[-1][0], "+Inf")
                bounds = [float(le) for le, _ in buckets]
                self.assertEqual(bounds, sorted(bounds))
                counts = [c for _, c in buckets]
                self.assertEqual(counts, sorted(counts), "buckets must not decrease")
                self.assertEqual(counts[-1], self.value(samples, base + "_count", route=route))
                self.assertGreaterEqual(self.value(samples, base + "_sum", route=route), 0)

    def test_token_operations_after_an_import_and_a_delete(self):
        ops = "certvault_token_operations_total"
        _, before = self.scrape()
        m = Material(self.tmp, "m-counted", san="m-counted.example.com")
        st, _, body = self.vault.import_cert("m-counted", m)
        self.assertEqual(st, 201, body)
        _, middle = self.scrape()
        # the private and the public key object
        self.assertEqual(self.value(middle, ops, op="create_object") -
                         self.value(before, ops, op="create_object"), 2)
        st, _, body = self.vault.request("DELETE", "/v1/certificates/m-counted?confirm=delete")
        self.assertEqual(st, 200, body)
        _, after = self.scrape()
        self.assertEqual(self.value(after, ops, op="destroy_object") -
                         self.value(middle, ops, op="destroy_object"), 2)
        errors = {s[1]["op"]: s[2] for s in after if s[0] == "certvault_token_errors_total"}
        self.assertEqual(set(errors), {s[1]["op"] for s in after if s[0] == ops})
        self.assertEqual(sum(errors.values()), 0)
        self.assertEqual(self.value(after, "certvault_token_up"), 1)

    def test_who_may_read_it(self):
        self.assertError(self.vault.request("GET", "/metrics", token=None), 401,
                         "unauthorized")
        for token in (self.operator, self.auditor):
            self.assertEqual(self.vault.request("GET", "/metrics", token=token)[0], 200)

    def test_public_when_configured(self):
        tmp = tempfile.mkdtemp(prefix="cv-it-metrics-")
        other = Certvaultd(tmp, {"CERTVAULT_AUTH_METRICS_PUBLIC": "true"}).start()
        try:
            types, _ = self.scrape(token=None, vault=other)
            self.assertIn("certvault_certificates", types)
            # Only /metrics opens: the rest still asks for a token.
            self.assertError(other.request("GET", "/v1/certificates", token=None), 401,
                             "unauthorized")
        finally:
            rc = other.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(rc, 0)


class ParserTest(unittest.TestCase):
    """The parser refuses what the format does not allow, so its passing means something."""

    def test_refusals(self):
        for bad in ('a{b="c} 1\n', 'a{b="\\t"} 1\n', "a b\n", 'a{b="1",b="2"} 1\n',
                    "# TYPE a gauge\n# TYPE a gauge\n", "a 1\n# TYPE a gauge\n", "a 1"):
            with self.subTest(bad=bad):
                with self.assertRaises((ValueError, AssertionError, IndexError)):
                    types, samples = parse(bad)
                    for s in samples:
                        if family_of(s[0], types) is None:
                            raise ValueError("untyped")

    def test_escapes(self):
        _, samples = parse('# TYPE a gauge\na{x="q\\"b\\\\n\\n"} 2\n')
        self.assertEqual(samples, [("a", {"x": 'q"b\\n\n'}, 2.0)])


if __name__ == "__main__":
    unittest.main()
