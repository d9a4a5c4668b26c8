"""DNS options in the configuration, and DNSService assembled and run on
127.0.0.1 (ephemeral ports only: never port 53 outside a lab namespace)."""

import ipaddress
import socket

import attr

from twisted.internet import defer, reactor
from twisted.names import client, dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dhcpfo import config as C
from dhcpfo.config.records import FailoverConfig
from dhcpfo.dhcp.pool import InterfaceInfo
from dhcpfo.dns import upstream
from dhcpfo.dns.service import DNSService, DNSStartError
from dhcpfo.leases.lease import ACTIVE, RELEASED, Lease
from dhcpfo.leases.table import LeaseTable
from dhcpfo.service import makeService

RANGE = ("dhcp-range", "192.0.2.10,192.0.2.200,1h")


def build(*pairs):
    return C.build([RANGE] + list(pairs))


class ConfigTests(SynchronousTestCase):

    def test_defaults(self):
        c = build()
        self.assertEqual((c.dns_port, c.servers, c.host_records, c.address_rules,
                          c.addn_hosts, c.dns_allow), (53, (), (), (), (), ()))

    def test_options(self):
        c = build(("dns-port", "5353"), ("server", "203.0.113.2"),
                  ("server", "203.0.113.3#5300"), ("host-record", "nas,NAS2.lab.test,"
                                                   "192.0.2.9,2001:db8::9,600"),
                  ("address", "/ads.example/tracker.example/#"),
                  ("address", "/blocked.example/"), ("dns-allow", "198.51.100.0/24"),
                  ("local-service", None))
        self.assertEqual(c.dns_port, 5353)
        self.assertEqual(c.servers, (C.Upstream("203.0.113.2", 53),
                                     C.Upstream("203.0.113.3", 5300)))
        self.assertEqual(c.host_records, (C.HostRecord(
            ("nas", "nas2.lab.test"), ("192.0.2.9", "2001:db8::9"), 600),))
        self.assertEqual(c.address_rules, (
            C.AddressRule(("ads.example", "tracker.example"), ("0.0.0.0", "::")),
            C.AddressRule(("blocked.example",), ())))
        self.assertEqual(c.dns_allow, (ipaddress.ip_network("198.51.100.0/24"),))
        self.assertEqual(build(("dns-port", "0")).dns_port, 0)

    def test_forward_max(self):
        self.assertEqual(build().dns_forward_max, 150)
        c = build(("server", "203.0.113.2"), ("dns-forward-max", "20"))
        self.assertEqual(c.dns_forward_max, 20)
        dns_service = DNSService(c, LeaseTable(), reactor, interfaces=[
            InterfaceInfo("e0", 0xC0000201, 0xFFFFFF00)])
        dns_service.build()
        self.assertEqual(dns_service.forwarder.forward_max, 20)
        for bad in ("0", "-1", "many"):
            with self.assertRaises(C.ConfigError) as caught:
                build(("dns-forward-max", bad))
            self.assertIn("positive number", str(caught.exception))

    def test_failover_names_are_reserved(self):
        """No client may publish the name of a server of the failover group."""
        c = attr.evolve(build(("domain", "lab.test")), failover=FailoverConfig(
            name="dhcp-a", peers=("dhcp-b",)))
        table = LeaseTable()
        dns_service = DNSService(c, table, reactor, interfaces=[
            InterfaceInfo("e0", 0xC0000201, 0xFFFFFF00)])
        dns_service.build()
        authority = dns_service.authority
        table.listeners.append(authority.lease_changed)
        for ip, name in (("192.0.2.10", "dhcp-a"), ("192.0.2.11", "dhcp-b"),
                         ("192.0.2.12", "laptop")):
            table.put(Lease(ip, b"\x52\x54\x00\x00\x00" + bytes([int(ip[-2:])]),
                            b"", name, ACTIVE, 0.0, 1e12, "dhcp-a", 1))
        self.assertEqual(sorted(authority.published()), ["laptop.lab.test"])
        self.assertEqual(authority.stats["names_denied"], 2)

    def test_errors_say_what_is_wrong(self):
        cases = [
            (("server", "/lab.test/203.0.113.2"), "per-domain servers"),
            (("server", "dns.example"), "not an IPv4 or IPv6 address"),
            (("server", "203.0.113.2#0"), "not a port number"),
            (("dns-port", "65536"), "0 disables DNS"),
            (("host-record", "nas"), "expected NAME"),
            (("host-record", "192.0.2.9,nas"), "names come before"),
            (("host-record", "bad_name!,192.0.2.9"), "not a valid domain name"),
            (("address", "ads.example"), "expected /DOMAIN"),
            (("address", "/ads.example/999.1.1.1"), "not an IPv4 or IPv6"),
            (("dns-allow", "everyone"), "not a network"),
            (("addn-hosts", "/nonexistent/hosts"), "cannot read"),
        ]
        for pair, text in cases:
            e = self.assertRaises(C.ConfigError, build, pair)
            self.assertIn(text, str(e), pair)
            self.assertIn("--%s=" % pair[0], str(e))

    def test_hosts_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# comment\n192.0.2.30 files alias.example  # trailing\n\n"
                    "2001:db8::30 files\n")
        c = build(("addn-hosts", path))
        self.assertEqual(c.addn_hosts[0].entries,
                         (("192.0.2.30", ("files", "alias.example")),
                          ("2001:db8::30", ("files",))))
        with open(path, "a") as f:
            f.write("192.0.2.31\n")
        e = self.assertRaises(C.ConfigError, build, ("addn-hosts", path))
        self.assertIn("line 5: an address without a name", str(e))

    def test_make_service_adds_dns_unless_port_zero(self):
        iface = [InterfaceInfo("e0", int(ipaddress.IPv4Address("192.0.2.1")),
                               0xFFFFFF00)]
        top = makeService(build(), reactor=reactor, interfaces=iface)
        self.assertEqual(sorted(s.name for s in top), ["control", "dhcp", "dns"])
        dns_service = top.getServiceNamed("dns")
        self.assertIs(dns_service.table, top.getServiceNamed("dhcp").table)
        top = makeService(build(("dns-port", "0")), reactor=reactor, interfaces=iface)
        self.assertEqual(sorted(s.name for s in top), ["control", "dhcp"])


class ServiceTests(TestCase):

    def setUp(self):
        self.table = LeaseTable()
        self.table.put(Lease("192.0.2.10", b"\x01" * 6, b"", "h1", ACTIVE,
                             reactor.seconds(), reactor.seconds() + 3600, "s", 1))
        self.config = build(("domain", "lab.test"), ("host-record", "nas,192.0.2.9"))
        self.iface = InterfaceInfo("e0", int(ipaddress.IPv4Address("192.0.2.1")),
                                   0xFFFFFF00)

    def start(self, **kw):
        kw.setdefault("listen", ["127.0.0.1"])
        kw.setdefault("port", 0)
        service = DNSService(self.config, self.table, reactor, interfaces=[self.iface],
                             **kw)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def ask(self, service, name, qtype=dns.A):
        sender = upstream.Sender(reactor)
        self.addCleanup(sender.close)
        return sender(service.address, dns.Query(name, qtype), 5)

    @defer.inlineCallbacks
    def test_udp_and_tcp_and_lease_changes(self):
        service = self.start()
        m = yield self.ask(service, b"h1.lab.test")
        self.assertTrue(m.auth)
        self.assertEqual(m.answers[0].payload.dottedQuad(), "192.0.2.10")
        m = yield self.ask(service, b"nas.lab.test")
        self.assertEqual(m.answers[0].payload.dottedQuad(), "192.0.2.9")
        resolver = client.Resolver(servers=[service.address], reactor=reactor)
        m = yield resolver.queryTCP([dns.Query(b"10.2.0.192.in-addr.arpa", dns.PTR)])
        self.assertEqual(m.answers[0].payload.name.name, b"h1.lab.test")
        for proto in resolver.connections:
            proto.transport.loseConnection()
        # a lease change shows at once
        self.table.put(Lease("192.0.2.10", b"\x01" * 6, b"", "h1", RELEASED,
                             0, reactor.seconds(), "s", 2))
        m = yield self.ask(service, b"h1.lab.test")
        self.assertEqual(m.rCode, dns.ENAME)
        counters = service.counters()
        self.assertEqual(counters["answered_fast"], 2)
        self.assertEqual(counters["nxdomain"], 1)
        yield service.stopService()
        self.assertEqual(self.table.listeners, [])

    def test_reservations(self):
        self.config = build(("domain", "lab.test"),
                            ("dhcp-host", "52:54:00:aa:bb:cc,printer"),
                            ("dhcp-host", "52:54:00:aa:bb:cd,192.0.2.50,nas2"))
        service = DNSService(self.config, LeaseTable(), reactor,
                             interfaces=[self.iface])
        service.build()
        authority = service.authority
        answer = authority.answer("nas2.lab.test", dns.A)
        self.assertEqual(answer.answers[0].payload.dottedQuad(), "192.0.2.50")
        mine = Lease("192.0.2.60", b"\x52\x54\x00\xaa\xbb\xcc", b"", "printer",
                     ACTIVE, 0, 1e12, "s", 1)
        other = Lease("192.0.2.61", b"\x52\x54\x00\xaa\xbb\xce", b"", "printer",
                      ACTIVE, 0, 1e12, "s", 1)
        self.assertTrue(authority.reserved(mine))
        self.assertFalse(authority.reserved(other))
        self.assertEqual(service.listen, ["192.0.2.1", "127.0.0.1"])

    def test_port_in_use(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        service = DNSService(self.config, self.table, reactor, interfaces=[self.iface],
                             listen=["127.0.0.1"], port=sock.getsockname()[1])
        e = self.assertRaises(DNSStartError, service.startService)
        self.assertIn("--dns-port 0 disables DNS", str(e))
        self.assertEqual(service.ports, [])
        service.stopService()
