"""The DNS server factory and protocols: fast path, slow path, EDNS, TC,
FORMERR, REFUSED, TCP; driven in memory with task.Clock."""

import ipaddress
import struct

from hypothesis import given, settings, strategies as st
from twisted.internet import defer, reactor, task
from twisted.internet import protocol as protocol_
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import hypothesis_profile  # noqa: F401  (loads the profile)
from dhcpfo.dns import records, server
from dhcpfo.dns.authority import LeaseAuthority
from dhcpfo.dns.cache import DNSCache
from dhcpfo.dns.forward import Forwarder
from dhcpfo.leases.lease import ACTIVE, Lease

NET = ipaddress.ip_network("192.0.2.0/24")
CLIENT = ("192.0.2.55", 40000)
STRANGER = ("198.51.100.7", 40000)


def query(name, qtype=dns.A, id=4321, rd=1, edns=None, do=False, opcode=0,
          cd=0, options=b""):
    """Wire bytes of a query; ``edns`` = (version, udp size) adds an OPT."""
    m = dns.Message(id=id, recDes=rd, opCode=opcode, checkingDisabled=cd)
    m.queries = [dns.Query(name, qtype, dns.IN)]
    data = m.toStr()
    if edns is not None:
        version, size = edns
        opt = (b"\x00" + struct.pack("!HHBBH", dns.OPT, size, 0, version,
                                     0x8000 if do else 0)
               + struct.pack("!H", len(options)) + options)
        data = data[:10] + b"\x00\x01" + data[12:] + opt
    return data


def decode(data):
    m = dns.Message()
    m.fromStr(data)
    opts = [rr for rr in m.additional if rr.type == dns.OPT]
    m.additional = [rr for rr in m.additional if rr.type != dns.OPT]
    m.opt = opts[0] if opts else None
    return m


def summary(m):
    """What a client sees, comparable between fast and slow answers."""
    def rrs(section):
        return [(rr.name.name.lower(), rr.type, rr.ttl, repr(rr.payload))
                for rr in section]
    return (m.id, m.answer, m.auth, m.trunc, m.recDes, m.recAv, m.rCode,
            m.checkingDisabled, [(q.name.name, q.type, q.cls) for q in m.queries],
            rrs(m.answers), rrs(m.authority), rrs(m.additional),
            None if m.opt is None else (m.opt.cls, m.opt.ttl))


class FakeSocket:
    def __init__(self):
        self.sent = []

    def sendto(self, data, address):
        self.sent.append((data, address))


class FakeUDPTransport:
    def __init__(self):
        self.socket = FakeSocket()

    def getHandle(self):
        return self.socket


class ServerCase(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        many = records.HostsFile("many", tuple(("192.0.2.%d" % (100 + i), ("many",))
                                              for i in range(60)))
        static = records.build_static(
            "lab.test", [records.parse_host_record("nas,192.0.2.9")], (), [many])
        self.authority = LeaseAuthority(self.clock, domain="lab.test",
                                        networks=[NET], static=static)
        self.authority.lease_changed(
            Lease("192.0.2.10", b"\x01" * 6, b"", "h1", ACTIVE, 0, 3600, "s", 1), None)
        self.make(None)

    def make(self, forwarder):
        self.factory = server.DNSServerFactory(
            self.authority, forwarder, server.AccessList([NET]), self.clock)
        self.udp = server.DNSDatagramProtocol(self.factory)
        self.udp.transport = FakeUDPTransport()
        self.udp.startProtocol()

    def send(self, data, source=CLIENT):
        sent = self.udp.transport.socket.sent
        before = len(sent)
        self.udp.datagramReceived(data, source)
        out = sent[before:]
        for _, address in out:
            self.assertEqual(address, source)
        return [decode(d) for d, _ in out]

    def one(self, data, source=CLIENT):
        replies = self.send(data, source)
        self.assertEqual(len(replies), 1)
        return replies[0]

    def slow(self, data, source=CLIENT):
        """The same query with the fast table emptied."""
        saved = dict(self.authority.fast)
        self.authority.fast.clear()
        try:
            return self.one(data, source)
        finally:
            self.authority.fast.update(saved)


class FastPathTests(ServerCase):

    def test_fast_answers_equal_slow_answers(self):
        cases = [("h1.lab.test", dns.A), ("H1.lab.TEST", dns.A),
                 ("h1.lab.test", dns.AAAA), ("nas.lab.test", dns.A),
                 ("nas", dns.A), ("10.2.0.192.in-addr.arpa", dns.PTR),
                 ("lab.test", dns.SOA), ("lab.test", dns.NS), ("h1.lab.test", 65)]
        for name, qtype in cases:
            for edns in (None, (0, 1232), (0, 4096), (0, 100)):
                for rd, cd, do in ((1, 0, False), (0, 1, True)):
                    data = query(name, qtype, rd=rd, cd=cd, edns=edns, do=do,
                                 options=b"\x00\x0a\x00\x08abcdefgh" if do else b"")
                    before = self.udp.answered_fast
                    fast = self.one(data)
                    self.assertEqual(self.udp.answered_fast, before + 1,
                                     (name, qtype, edns))
                    self.assertEqual(summary(fast), summary(self.slow(data)),
                                     (name, qtype, edns, rd, cd, do))

    def test_fast_answer_details(self):
        m = self.one(query("H1.Lab.Test", edns=(0, 4096), do=True))
        self.assertEqual(m.queries[0].name.name, b"H1.Lab.Test")   # case echoed
        self.assertTrue(m.auth)
        self.assertFalse(m.recAv)
        self.assertEqual(m.answers[0].payload.dottedQuad(), "192.0.2.10")
        self.assertEqual(m.opt.cls, 1232)                 # our UDP size
        self.assertEqual(m.opt.ttl, 0x8000)               # version 0, DO echoed

    def test_nxdomain_in_zone_has_soa_and_aa(self):
        m = self.one(query("nobody.lab.test"))
        self.assertEqual(m.rCode, dns.ENAME)
        self.assertTrue(m.auth)
        self.assertEqual([rr.type for rr in m.authority], [dns.SOA])
        self.assertIsNone(m.opt)
        m = self.one(query("nobody.lab.test", edns=(0, 1232)))
        self.assertEqual(m.opt.cls, 1232)

    def test_fast_table_follows_leases(self):
        self.authority.lease_changed(
            Lease("192.0.2.11", b"\x02" * 6, b"", "h2", ACTIVE, 0, 3600, "s", 2), None)
        before = self.udp.answered_fast
        m = self.one(query("h2.lab.test"))
        self.assertEqual(self.udp.answered_fast, before + 1)
        self.assertEqual(m.answers[0].payload.dottedQuad(), "192.0.2.11")


class DrainTests(ServerCase):
    """The UDP read loop of DNSPort."""

    class Socket(FakeSocket):
        def __init__(self, datagrams):
            super().__init__()
            self.queue = list(datagrams)

        def recvfrom(self, size):
            if not self.queue:
                raise BlockingIOError(11, "again")
            item = self.queue.pop(0)
            if isinstance(item, Exception):
                raise item
            return item

    def test_drain_answers_everything_queued(self):
        self.factory.acl(CLIENT[0])     # a known client: fast path in the loop
        sock = self.Socket([(query("h1.lab.test"), CLIENT),
                            (query("nobody.lab.test"), CLIENT),
                            (query("h1.lab.test"), STRANGER),
                            (b"junk", CLIENT),
                            (query("nas.lab.test"), CLIENT)])
        self.udp.drain(sock)
        slow = [decode(d) for d, _ in self.udp.transport.socket.sent]
        fast = [decode(d) for d, _ in sock.sent]
        self.assertEqual([m.answers[0].payload.dottedQuad() for m in fast],
                         ["192.0.2.10", "192.0.2.9"])
        self.assertEqual([m.rCode for m in slow], [dns.ENAME, dns.EREFUSED])
        self.assertEqual(self.udp.answered_fast, 2)
        self.assertEqual(self.factory.stats["dropped"], 1)

    def test_batch_limit_and_errors(self):
        sock = self.Socket([(query("h1.lab.test"), CLIENT)] * 5)
        self.udp.drain(sock, batch=3)
        self.assertEqual(len(sock.queue), 2)
        sock = self.Socket([OSError(99, "odd")])
        self.udp.drain(sock)                      # logged, not raised
        self.flushLoggedErrors(OSError)


class EDNSAndTruncationTests(ServerCase):

    def test_badvers(self):
        m = self.one(query("h1.lab.test", edns=(1, 1232)))
        self.assertEqual(m.rCode, 0)
        self.assertEqual(m.opt.ttl >> 24, 1)      # extended RCODE 16 = BADVERS
        self.assertEqual((m.opt.ttl >> 16) & 0xFF, 0)
        self.assertEqual(m.answers, [])
        self.assertEqual(self.factory.stats["badvers"], 1)

    def test_truncation_without_edns(self):
        m = self.one(query("many.lab.test"))
        self.assertTrue(m.trunc)
        self.assertEqual((m.answers, m.authority), ([], []))
        self.assertEqual(m.queries[0].name.name, b"many.lab.test")
        self.assertEqual(self.factory.stats["truncated"], 1)

    def test_client_udp_size_honoured(self):
        m = self.one(query("many.lab.test", edns=(0, 4096)))
        self.assertFalse(m.trunc)
        self.assertEqual(len(m.answers), 60)
        m = self.one(query("many.lab.test", edns=(0, 600)))
        self.assertTrue(m.trunc)
        self.assertEqual(m.answers, [])
        self.assertIsNotNone(m.opt)
        # a size below 512 counts as 512
        m = self.one(query("h1.lab.test", edns=(0, 1)))
        self.assertEqual(len(m.answers), 1)

    def test_additional_records_go_first(self):
        answers = [dns.RRHeader(b"x", dns.A, dns.IN, 5, dns.Record_A("192.0.2.1"))]
        extra = [dns.RRHeader(b"y%d" % i, dns.A, dns.IN, 5, dns.Record_A("192.0.2.1"))
                 for i in range(40)]
        q = server.decode_query(query("x"))
        data, truncated = server.encode_response(q, 0, answers, [], extra)
        self.assertFalse(truncated)
        m = decode(data)
        self.assertEqual((len(m.answers), m.additional, m.trunc), (1, [], 0))


class MalformedTests(ServerCase):

    def test_garbage_is_formerr_or_dropped(self):
        self.assertEqual(self.send(b"\x01\x02\x03"), [])            # < header
        self.assertEqual(self.factory.stats["dropped"], 1)
        response = query("h1.lab.test")
        response = response[:2] + bytes([response[2] | 0x80]) + response[3:]
        self.assertEqual(self.send(response), [])                   # QR set
        m = self.one(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07trunc")
        self.assertEqual((m.id, m.rCode, m.queries), (0x1234, dns.EFORMAT, []))
        self.assertEqual(self.factory.stats["formerr"], 1)

    def test_two_opt_records_are_formerr(self):
        data = query("h1.lab.test", edns=(0, 1232))
        opt = data[-11:]
        data = data[:10] + b"\x00\x02" + data[12:] + opt
        self.assertEqual(self.one(data).rCode, dns.EFORMAT)

    def test_two_questions_are_formerr(self):
        m = dns.Message(id=7)
        m.queries = [dns.Query(b"h1.lab.test"), dns.Query(b"nas.lab.test")]
        self.assertEqual(self.one(m.toStr()).rCode, dns.EFORMAT)

    def test_other_opcodes_notimp(self):
        m = self.one(query("h1.lab.test", opcode=dns.OP_STATUS))
        self.assertEqual(m.rCode, dns.ENOTIMP)

    def test_zone_transfer_refused(self):
        self.assertEqual(self.one(query("lab.test", dns.AXFR)).rCode, dns.EREFUSED)

    @given(st.binary(max_size=80))
    @settings(max_examples=300)
    def test_random_bytes_never_crash(self, data):
        self.send(data)
        self.send(b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01" + data)
        self.assertEqual(self.factory.stats["errors"], 0)

    @given(st.integers(0, 60), st.integers(0, 255))
    @settings(max_examples=300)
    def test_mutated_queries_never_crash(self, position, value):
        data = bytearray(query("h1.lab.test", edns=(0, 1232)))
        data[position % len(data)] = value
        self.send(bytes(data))
        self.send(bytes(data[:position % len(data)]))
        self.assertEqual(self.factory.stats["errors"], 0)


class AccessTests(ServerCase):

    def test_stranger_refused_loopback_answered(self):
        m = self.one(query("h1.lab.test", edns=(0, 1232)), STRANGER)
        self.assertEqual(m.rCode, dns.EREFUSED)
        self.assertEqual(m.answers, [])
        self.assertIsNotNone(m.opt)
        self.assertEqual(self.factory.stats["refused"], 1)
        m = self.one(query("h1.lab.test"), ("127.0.0.1", 5353))
        self.assertEqual(m.answers[0].payload.dottedQuad(), "192.0.2.10")

    def test_not_ours_and_no_upstream_is_refused(self):
        m = self.one(query("example.org"))
        self.assertEqual(m.rCode, dns.EREFUSED)
        self.assertFalse(m.recAv)

    def test_access_list(self):
        acl = server.AccessList([NET, ipaddress.ip_network("2001:db8::/32")])
        self.assertTrue(acl("192.0.2.200"))
        self.assertTrue(acl("127.0.0.53"))
        self.assertTrue(acl("::1"))
        self.assertTrue(acl("2001:db8::1%eth0"))
        self.assertTrue(acl("::ffff:192.0.2.3"))
        self.assertFalse(acl("203.0.113.1"))
        self.assertFalse(acl("not an address"))


class ForwardedTests(ServerCase):
    """The factory's chain: authority first, then the caching forwarder."""

    def setUp(self):
        super().setUp()
        self.asked = []

        def send(address, q, timeout):
            self.asked.append(q.name.name)
            m = dns.Message(id=1, answer=1, auth=1)
            m.queries = [q]
            if q.name.name == b"nx.example":
                m.rCode = dns.ENAME
                m.authority = [dns.RRHeader(b"example", dns.SOA, dns.IN, 30,
                                            dns.Record_SOA(b"ns", b"h", minimum=30),
                                            auth=True)]
            else:
                m.answers = [dns.RRHeader(q.name.name, dns.A, dns.IN, 100,
                                          dns.Record_A("203.0.113.7"), auth=True)]
            return defer.succeed(m)
        self.forwarder = Forwarder([("203.0.113.2", 53)], self.clock,
                                   cache=DNSCache(self.clock), send=send)
        self.make(self.forwarder)

    def test_forwarded_answer(self):
        m = self.one(query("www.example", edns=(0, 1232)))
        self.assertEqual(m.rCode, dns.OK)
        self.assertFalse(m.auth)
        self.assertTrue(m.recAv)
        self.assertEqual(m.answers[0].payload.dottedQuad(), "203.0.113.7")
        self.clock.advance(40)
        m = self.one(query("WWW.example"))
        self.assertEqual(m.answers[0].ttl, 60)
        self.assertEqual(self.asked, [b"www.example"])

    def test_forwarded_nxdomain_keeps_soa(self):
        m = self.one(query("nx.example"))
        self.assertEqual(m.rCode, dns.ENAME)
        self.assertFalse(m.auth)
        self.assertEqual([rr.type for rr in m.authority], [dns.SOA])

    def test_local_names_are_not_forwarded(self):
        self.assertEqual(self.one(query("nobody.lab.test")).rCode, dns.ENAME)
        self.assertEqual(self.one(query("5.2.0.192.in-addr.arpa", dns.PTR)).rCode,
                         dns.ENAME)
        self.assertEqual(self.asked, [])
        m = self.one(query("h1.lab.test"))
        self.assertTrue(m.recAv)         # the fast path knows we recurse, too

    def test_all_upstreams_down_is_servfail(self):
        self.forwarder.upstreams[0].up = False
        self.forwarder.upstreams[0].down_until = self.clock.seconds() + 10
        m = self.one(query("www.example"))
        self.assertEqual(m.rCode, dns.ESERVER)
        self.assertEqual(self.asked, [])


class TCPTests(ServerCase):

    def connect(self, peer="192.0.2.55"):
        proto = self.factory.buildProtocol(IPv4Address("TCP", peer, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        proto.makeConnection(transport)
        return proto, transport

    def replies(self, transport):
        data = transport.value()
        out = []
        while data:
            (length,) = struct.unpack("!H", data[:2])
            out.append(decode(data[2:2 + length]))
            data = data[2 + length:]
        transport.clear()
        return out

    def test_tcp_answers_whole(self):
        proto, transport = self.connect()
        for name in (b"h1.lab.test", b"many.lab.test", b"nobody.lab.test"):
            data = query(name)
            proto.dataReceived(struct.pack("!H", len(data)) + data)
        h1, many, nobody = self.replies(transport)
        self.assertEqual(h1.answers[0].payload.dottedQuad(), "192.0.2.10")
        self.assertEqual((len(many.answers), many.trunc), (60, 0))
        self.assertEqual(nobody.rCode, dns.ENAME)
        proto.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_tcp_stranger_closed_at_accept(self):
        # no protocol: the connection is closed unanswered, and counted
        self.assertIsNone(self.factory.buildProtocol(
            IPv4Address("TCP", "203.0.113.9", 40000)))
        self.assertEqual(self.factory.stats["tcp_rejected"], 1)
        self.assertEqual(self.factory.stats["tcp_connections"], 0)

    def test_idle_connection_closed(self):
        proto, transport = self.connect()
        self.clock.advance(server.TCP_IDLE - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connection_limit(self):
        conns = [self.connect("192.0.2.%d" % (i + 1))
                 for i in range(server.TCP_MAX_CONNECTIONS)]
        self.assertIsNone(self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.205", 1)))
        for proto, _ in conns:
            proto.connectionLost(None)

    def test_one_host_cannot_hold_every_slot(self):
        conns = [self.connect() for _ in range(server.TCP_PER_HOST)]
        self.assertIsNone(self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.55", 1)))
        self.assertEqual(self.factory.stats["tcp_rejected"], 1)
        conns.append(self.connect("192.0.2.56"))
        # one closes: that host may connect again
        proto, _ = conns.pop(0)
        proto.connectionLost(None)
        conns.append(self.connect())
        for proto, _ in conns:
            proto.connectionLost(None)
        self.assertEqual(self.factory.connections, [])
        self.assertEqual(dict(self.factory.tcp_hosts), {})


class _Closed(protocol_.Protocol):
    """A TCP client that records whether the server closed it, and what it got."""

    def __init__(self):
        self.lost = defer.Deferred()
        self.received = b""

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(self.received)


class TCPLoopbackTests(TestCase):
    """Real TCP connections on loopback: strangers are closed at accept, so
    they never hold a slot (issue 10 item 10).  127.0.0.1 plays the stranger
    and 127.0.0.2 the client (the access list is a callable)."""

    def setUp(self):
        self.clock = task.Clock()      # no idle timeout fires on its own
        authority = LeaseAuthority(self.clock, domain="lab.test", networks=[NET])
        authority.lease_changed(
            Lease("192.0.2.10", b"\x01" * 6, b"", "h1", ACTIVE, 0, 3600, "s", 1), None)
        self.factory = server.DNSServerFactory(
            authority, None, lambda host: host == "127.0.0.2", self.clock)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.address = self.port.getHost().port

    def dial(self, source):
        client = _Closed()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.address,
                                      bindAddress=(source, 0))
        return endpoint.connect(protocol_.Factory.forProtocol(lambda: client))

    @defer.inlineCallbacks
    def test_strangers_closed_at_once_and_never_hold_a_slot(self):
        strangers = []
        for _ in range(server.TCP_MAX_CONNECTIONS + 20):
            strangers.append((yield self.dial("127.0.0.1")))
        # every stranger's connection is closed by the server, unanswered
        got = yield defer.gatherResults([p.lost for p in strangers]).addTimeout(
            10, reactor)
        self.assertEqual(got, [b""] * len(strangers))
        self.assertEqual(self.factory.stats["tcp_rejected"], len(strangers))
        self.assertEqual(self.factory.connections, [])
        # and a client is answered
        client = yield self.dial("127.0.0.2")
        data = query(b"h1.lab.test")
        client.transport.write(struct.pack("!H", len(data)) + data)
        for _ in range(100):
            if len(client.received) >= 2 + struct.unpack("!H", client.received[:2])[0] \
                    if len(client.received) >= 2 else False:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        answer = decode(client.received[2:])
        self.assertEqual(answer.answers[0].payload.dottedQuad(), "192.0.2.10")
        client.transport.loseConnection()
        yield client.lost


class LogFloodTests(ServerCase):
    """A packet that makes us fail is counted every time, logged once a
    minute (issue 10 item 9, the DNS side)."""

    def test_errors_are_counted_and_logged_once_a_minute(self):
        from twisted.logger import formatEvent, globalLogPublisher
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def broken(*args):
            raise ZeroDivisionError("a bug that one packet hits")
        self.factory.handle = broken
        for _ in range(50):
            self.udp.datagramReceived(b"\x00" * 20, CLIENT)
        self.assertEqual(self.factory.stats["errors"], 50)
        lines = [formatEvent(e) for e in events if "log_failure" in e]
        self.assertEqual(len(lines), 1)
        self.clock.advance(60)
        self.udp.datagramReceived(b"\x00" * 20, CLIENT)
        lines = [formatEvent(e) for e in events if "log_failure" in e]
        self.assertEqual(len(lines), 2)
        self.assertIn("49 more", lines[1])
        self.flushLoggedErrors(ZeroDivisionError)

    def test_formerr_lines_are_rate_limited(self):
        from twisted.logger import globalLogPublisher
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for i in range(30):
            self.send(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07broken")
        self.assertEqual(self.factory.stats["formerr"], 30)
        self.assertEqual(len([e for e in events if "FORMERR" in e.get("log_format", "")]),
                         1)
