"""
DNS in the namespace lab, with real clients: BusyBox udhcpc gets a lease
with a hostname from dhcpfo and ``dig`` (dnsutils) resolves it at once; the
upstream DNS servers are small twisted.names servers that the test starts on
lab hosts of its own (never anything outside the lab).

Needs root, iproute2, udhcpc and dig; skipped otherwise.  Only
documentation addresses are used.
"""

import os
import re
import sys
import time

from twisted.trial import unittest

from tests.lab import Lab, LabError, tail
from tests.labskip import needs







#: A tiny upstream DNS server (twisted.names), run on a lab host:
#: ``python upstream.py ADDRESS ANSWER_IP LOGFILE``.  Every question it gets
#: is logged (so tests can see what reached it); names under up.example
#: answer ANSWER_IP (TTL 300), nx.up.example is NXDOMAIN with an SOA
#: (negative TTL 60), big.up.example has 80 A records (TC over UDP, whole
#: over TCP); anything else is REFUSED.
UPSTREAM = r'''
import sys
from twisted.internet import reactor
from twisted.names import dns, server

address, answer_ip, logfile = sys.argv[1:4]
log = open(logfile, "a", buffering=1)


class Upstream(server.DNSServerFactory):
    def handleQuery(self, message, proto, peer):
        q = message.queries[0]
        name = q.name.name.lower()
        log.write("%s %s %s\n" % ("udp" if peer else "tcp", name.decode(),
                                  dns.QUERY_TYPES.get(q.type, q.type)))
        r = dns.Message(id=message.id, answer=1, opCode=0, recDes=message.recDes,
                        recAv=1, auth=1, maxSize=0)
        r.queries = message.queries
        soa = dns.RRHeader(b"up.example", dns.SOA, dns.IN, 60, dns.Record_SOA(
            b"ns.up.example", b"hostmaster.up.example", 1, 60, 60, 60, 60, 60))
        if not (name == b"up.example" or name.endswith(b".up.example")):
            r.rCode = dns.EREFUSED
        elif name == b"nx.up.example":
            r.rCode = dns.ENAME
            r.authority = [soa]
        elif q.type != dns.A:
            r.authority = [soa]
        elif name == b"big.up.example":
            r.answers = [dns.RRHeader(q.name.name, dns.A, dns.IN, 300,
                                      dns.Record_A("203.0.113.%d" % (i + 100), 300))
                         for i in range(80)]
        else:
            r.answers = [dns.RRHeader(q.name.name, dns.A, dns.IN, 300,
                                      dns.Record_A(answer_ip, 300))]
        if peer is not None and len(r.toStr()) > 512:
            r.answers, r.trunc = [], 1
        if peer is None:
            proto.writeMessage(r)
        else:
            proto.writeMessage(r, peer)


factory = Upstream()
reactor.listenUDP(53, dns.DNSDatagramProtocol(factory), interface=address)
reactor.listenTCP(53, factory, interface=address)
reactor.run()
'''

_SECTION = re.compile(r"^;; (\w+) SECTION:$")


def parse_dig(text):
    """status, flags, sections (lists of (name, ttl, type, data)), EDNS."""
    out = {"status": None, "flags": set(), "answer": [], "authority": [],
           "additional": [], "edns": None, "text": text}
    section = None
    for line in text.splitlines():
        m = re.search(r"status: (\w+)", line)
        if m and out["status"] is None:
            out["status"] = m.group(1)
        m = re.match(r";; flags: ([^;]*);", line)
        if m and not out["flags"]:
            out["flags"] = set(m.group(1).split())
        m = re.match(r"; EDNS: version: (\d+), flags:([^;]*); udp: (\d+)", line)
        if m:
            out["edns"] = {"version": int(m.group(1)), "flags": m.group(2).split(),
                           "udp": int(m.group(3))}
        m = _SECTION.match(line)
        if m:
            section = m.group(1).lower()
            continue
        if not line.strip():
            section = None
            continue
        if section in ("answer", "authority", "additional") and not line.startswith(";"):
            parts = line.split(None, 4)
            if len(parts) == 5:
                out[section].append((parts[0].rstrip(".").lower(), int(parts[1]),
                                     parts[3], parts[4]))
    return out


class DNSLabCase(unittest.TestCase):

    def setUp(self):
        self.lab = Lab()
        self.addCleanup(self.lab.close)

    def startServer(self, *extra):
        args = ["--interface", "e0", "--domain", "lab.test", "--lease-store", "memory",
                "--dhcp-range", "192.0.2.10,192.0.2.200,1h",
                "--control", "tcp:8067:interface=127.0.0.1"] + list(extra)
        try:
            self.server = self.lab.dhcpfo("srv", args)
        except LabError as e:
            self.fail(str(e))
        self.lab.wait_udp("srv", 53, 10, self.server)
        return self.server

    def serverLog(self):
        return "\n--- dhcpfo log (tail) ---\n" + tail(self.lab.path("dhcpfo.log"), 30)

    def dig(self, *args, host="q", server="192.0.2.1", timeout=2):
        argv = ["dig", "@" + server, "+tries=1", "+timeout=%d" % timeout] + list(args)
        started = time.monotonic()
        r = self.lab.run(host, argv, timeout=timeout * 3 + 5)
        result = parse_dig(r.stdout)
        result["elapsed"] = time.monotonic() - started
        if result["status"] is None:
            self.fail("dig %s got no answer:\n%s%s%s" % (
                " ".join(args), r.stdout, r.stderr, self.serverLog()))
        return result

    def assertAnswer(self, result, expected, rtype="A"):
        got = sorted(a[3] for a in result["answer"] if a[2] == rtype)
        self.assertEqual(got, sorted(expected), result["text"] + self.serverLog())


class LeaseNameTests(DNSLabCase):
    """A DHCP client's name in DNS, and the protocol corners, in one lab."""

    @needs("udhcpc", "dig")
    def test_lease_names_and_protocol(self):
        lab = self.lab
        lab.lan("lan")
        lab.host("srv", "lan", "192.0.2.1/24")
        lab.host("cli", "lan")
        lab.host("q", "lan", "192.0.2.5/24")
        many = lab.path("many.hosts")
        with open(many, "w") as f:
            for i in range(60):
                f.write("192.0.2.%d many\n" % (i + 201 - 60))
        self.startServer("--addn-hosts", many, "--host-record", "nas,192.0.2.9")

        got = lab.udhcpc("cli", hostname="h1", keep=True)
        bound = time.monotonic()
        ip = got["ip"]
        # The name is there as soon as the client is bound.
        r = self.dig("h1.lab.test")
        self.assertLess(time.monotonic() - bound, 1.0)
        self.assertEqual(r["status"], "NOERROR")
        self.assertIn("aa", r["flags"])
        self.assertAnswer(r, [ip])
        self.assertLessEqual(r["answer"][0][1], 60)
        self.assertEqual(r["edns"]["version"], 0)       # OPT in the answer
        # Case is echoed; PTR; static names.
        self.assertAnswer(self.dig("H1.LAB.test"), [ip])
        self.assertAnswer(self.dig("-x", ip), ["h1.lab.test."], "PTR")
        self.assertAnswer(self.dig("nas.lab.test"), ["192.0.2.9"])
        # NODATA and NXDOMAIN carry the SOA, with AA.
        r = self.dig("h1.lab.test", "AAAA")
        self.assertEqual((r["status"], r["answer"]), ("NOERROR", []))
        self.assertEqual([a[2] for a in r["authority"]], ["SOA"])
        r = self.dig("nobody.lab.test")
        self.assertEqual(r["status"], "NXDOMAIN")
        self.assertIn("aa", r["flags"])
        self.assertEqual([a[2] for a in r["authority"]], ["SOA"])

        # EDNS version 1: BADVERS (dig reports it, then retries with 0).
        r = self.dig("+edns=1", "+noednsnegotiation", "h1.lab.test")
        self.assertEqual(r["status"], "BADVERS")
        self.assertEqual(r["edns"]["version"], 0)
        # TCP.
        self.assertAnswer(self.dig("+tcp", "h1.lab.test"), [ip])
        # 60 A records do not fit in 512 bytes: TC without EDNS, the whole
        # set over TCP (dig retries by itself), and in 1232 bytes with EDNS.
        r = self.dig("+noedns", "+ignore", "many.lab.test")
        self.assertIn("tc", r["flags"])
        self.assertEqual(r["answer"], [])
        r = self.dig("+noedns", "many.lab.test")
        self.assertEqual(len(r["answer"]), 60)
        r = self.dig("+bufsize=1232", "+ignore", "many.lab.test")
        self.assertNotIn("tc", r["flags"])
        self.assertEqual(len(r["answer"]), 60)
        r = self.dig("+bufsize=600", "+ignore", "many.lab.test")
        self.assertIn("tc", r["flags"])

        # A client outside our networks is refused.
        lab.addr("q", "198.51.100.7/24")
        lab.ip("srv", "route", "add", "198.51.100.0/24", "dev", "e0")
        r = self.dig("-b", "198.51.100.7", "h1.lab.test")
        self.assertEqual(r["status"], "REFUSED")
        self.assertEqual(r["answer"], [])

        # Release: the name and the PTR go at once.
        lab.udhcpc_release("cli")
        deadline = time.monotonic() + 3
        while True:
            r = self.dig("h1.lab.test")
            if r["status"] == "NXDOMAIN" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r["status"], "NXDOMAIN", r["text"] + self.serverLog())
        self.assertEqual([a[2] for a in r["authority"]], ["SOA"])
        self.assertEqual(self.dig("-x", ip)["status"], "NXDOMAIN")


class ForwardingTests(DNSLabCase):
    """Upstreams on a second LAN: forwarding, caching, failover, SERVFAIL."""

    def startUpstream(self, host, address, answer):
        script = self.lab.path("upstream.py")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(UPSTREAM)
        log = self.lab.path("%s.queries" % host)
        open(log, "w").close()
        proc = self.lab.spawn(host, [sys.executable, script, address, answer, log])
        self.lab.wait_udp(host, 53, 10, proc)
        proc.queries = log
        return proc

    def asked(self, proc, name):
        with open(proc.queries) as f:
            return [line.split() for line in f if line.split()[1] == name]

    @needs("dig")
    def test_forwarding_cache_failover(self):
        lab = self.lab
        lab.lan("lan")
        lab.lan("wan")
        lab.host("srv", "lan", "192.0.2.1/24")
        lab.attach("srv", "wan", "203.0.113.1/24")
        lab.host("q", "lan", "192.0.2.5/24")
        lab.host("up1", "wan", "203.0.113.2/24")
        lab.host("up2", "wan", "203.0.113.3/24")
        up1 = self.startUpstream("up1", "203.0.113.2", "203.0.113.7")
        up2 = self.startUpstream("up2", "203.0.113.3", "203.0.113.8")
        self.startServer("--server", "203.0.113.2", "--server", "203.0.113.3#53")

        # Forwarded, then answered from the cache with a TTL counting down.
        r = self.dig("a.up.example")
        self.assertEqual(r["status"], "NOERROR")
        self.assertNotIn("aa", r["flags"])
        self.assertIn("ra", r["flags"])
        self.assertAnswer(r, ["203.0.113.7"])
        time.sleep(1.1)
        r = self.dig("A.UP.example")
        self.assertAnswer(r, ["203.0.113.7"])
        self.assertLess(r["answer"][0][1], 300)
        self.assertEqual(len(self.asked(up1, "a.up.example")), 1)
        # Negative answers are cached for the SOA's minimum.
        r = self.dig("nx.up.example")
        self.assertEqual(r["status"], "NXDOMAIN")
        self.assertEqual([a[2] for a in r["authority"]], ["SOA"])
        self.assertEqual(self.dig("nx.up.example")["status"], "NXDOMAIN")
        self.assertEqual(len(self.asked(up1, "nx.up.example")), 1)
        # Truncated upstream answer: asked again over TCP; too big for the
        # client's 1232 bytes as well, so TC to dig, which retries over TCP.
        r = self.dig("big.up.example")
        self.assertEqual(len(r["answer"]), 80, r["text"])
        self.assertEqual([a[0] for a in self.asked(up1, "big.up.example")],
                         ["udp", "tcp"])
        # Our own zones are never forwarded.
        self.assertEqual(self.dig("nobody.lab.test")["status"], "NXDOMAIN")
        self.assertEqual(self.dig("-x", "192.0.2.77")["status"], "NXDOMAIN")
        for up in (up1, up2):
            self.assertEqual(self.asked(up, "nobody.lab.test"), [])
            self.assertEqual(self.asked(up, "77.2.0.192.in-addr.arpa"), [])

        # The first upstream is cut off (silence): after one timeout, the
        # second answers; then the first is skipped.
        lab.link("up1", up=False)
        r = self.dig("b.up.example", timeout=5)
        self.assertAnswer(r, ["203.0.113.8"])
        self.assertLess(r["elapsed"], 3.5)
        r = self.dig("c.up.example", timeout=5)
        self.assertAnswer(r, ["203.0.113.8"])
        self.assertLess(r["elapsed"], 1.0)

        # Both dead (the second's port closed: ICMP says so at once):
        # SERVFAIL, and at once while both are known to be down.
        lab.stop(up2)
        r = self.dig("d.up.example", timeout=8)
        self.assertEqual(r["status"], "SERVFAIL")
        r = self.dig("e.up.example", timeout=5)
        self.assertEqual(r["status"], "SERVFAIL")
        self.assertLess(r["elapsed"], 0.5)
        # What is cached still answers.
        self.assertAnswer(self.dig("a.up.example"), ["203.0.113.7"])

        # up2 comes back: after its back-off, it is probed and used again.
        up2 = self.startUpstream("up2", "203.0.113.3", "203.0.113.8")
        deadline = time.monotonic() + 15
        while True:
            r = self.dig("f.up.example", timeout=5)
            if r["status"] == "NOERROR" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertAnswer(r, ["203.0.113.8"])
