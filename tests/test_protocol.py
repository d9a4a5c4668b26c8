"""The UDP protocol: no reply before durability, malformed input counted and dropped."""

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.dhcp import packet as P
from dhcpfo.dhcp.protocol import DHCPProtocol
from tests.test_server import BASIC, SERVER, ip, make_server, request


class HeldStore:
    """A store whose writes become durable only when the test says so."""

    durable = True

    def __init__(self):
        self.writes = []

    def write(self, leases):
        d = Deferred()
        self.writes.append((leases, d))
        return d


class FakeTransport:
    def __init__(self):
        self.sent = []

    def getHandle(self):
        return self

    def sendto(self, data, addr):
        self.sent.append((data, addr))


class ProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.server, self.iface, _ = make_server(BASIC)
        self.store = HeldStore()
        self.proto = DHCPProtocol(self.server, self.store, self.iface)
        self.proto.transport = self.transport = FakeTransport()
        self.proto.startProtocol()

    def receive(self, pkt):
        self.proto.datagramReceived(pkt.encode(), ("0.0.0.0", 68))

    def test_offer_sent_at_once_ack_only_when_durable(self):
        self.receive(request(P.DISCOVER))
        [(offer, dest)] = self.transport.sent
        self.assertEqual(P.parse(offer).message_type, P.OFFER)
        self.receive(request(P.REQUEST, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, P.parse(offer).yiaddr))))
        self.assertEqual(len(self.transport.sent), 1, "ACK before the lease is durable")
        [(leases, d)] = self.store.writes
        d.callback(None)
        self.assertEqual(len(self.transport.sent), 2)
        self.assertEqual(P.parse(self.transport.sent[1][0]).message_type, P.ACK)

    def test_failed_write_sends_nothing(self):
        self.store.write = lambda leases: fail(IOError("disk full"))
        self.receive(request(P.REQUEST, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ip("192.0.2.10")))))
        self.assertEqual(self.transport.sent, [])
        self.assertEqual(self.server.stats["not_durable"], 1)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_malformed_counted_and_dropped(self):
        for data in (b"", b"\x01" * 10, b"\x07" + b"\x00" * 300,
                     request(P.DISCOVER).encode()[:240] + b"\x35\x05\x01"):
            self.proto.datagramReceived(data, ("192.0.2.99", 68))
        self.assertEqual(self.server.stats["malformed"], 4)
        self.assertEqual(self.transport.sent, [])

    def test_handler_bug_does_not_escape(self):
        def boom(pkt, iface):
            raise RuntimeError("bug")
        self.server.handle = boom
        self.receive(request(P.DISCOVER))
        self.assertEqual(self.server.stats["errors"], 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class NotDurableTests(SynchronousTestCase):
    """Issue 10 item 12: a lease that could not be written is not kept."""

    def setUp(self):
        self.server, self.iface, self.clock = make_server(BASIC)
        self.store = HeldStore()
        self.proto = DHCPProtocol(self.server, self.store, self.iface)
        self.proto.transport = self.transport = FakeTransport()
        self.proto.startProtocol()

    def receive(self, pkt):
        self.proto.datagramReceived(pkt.encode(), ("0.0.0.0", 68))

    def select(self, address, mac=None):
        kw = {} if mac is None else {"mac": mac}
        self.receive(request(P.REQUEST, options=(
            (P.SERVER_ID, ip(SERVER)), (P.REQUESTED_ADDRESS, ip(address))), **kw))
        return self.store.writes[-1][1]

    def test_failed_write_rolls_the_table_back(self):
        self.select("192.0.2.10").errback(IOError("disk full"))
        self.assertIsNone(self.server.table.get("192.0.2.10"))
        self.assertIsNone(self.server.table.for_client(
            b"h" + bytes.fromhex("525400000001")))
        self.assertEqual(self.server.stats["ack"], 0)
        self.assertEqual(self.server.stats["not_durable"], 1)
        self.assertEqual(self.transport.sent, [])

    def test_rolled_back_to_the_previous_record(self):
        self.select("192.0.2.10").callback(None)
        first = self.server.table.get("192.0.2.10")
        self.clock.advance(60)
        self.select("192.0.2.10").errback(IOError("disk full"))   # a renewal
        self.assertIs(self.server.table.get("192.0.2.10"), first)
        self.assertEqual(self.server.stats["ack"], 1)

    def test_move_rolled_back_restores_both_addresses(self):
        self.select("192.0.2.10").callback(None)
        first = self.server.table.get("192.0.2.10")
        self.select("192.0.2.11").errback(IOError("disk full"))
        self.assertIs(self.server.table.get("192.0.2.10"), first)
        self.assertIsNone(self.server.table.get("192.0.2.11"))
        self.assertIs(self.server.table.for_client(first.key), first)

    def test_newer_record_is_not_rolled_back(self):
        d = self.select("192.0.2.10")
        newer = self.server.table.get("192.0.2.10")
        self.clock.advance(1)
        self.select("192.0.2.10").callback(None)      # written meanwhile
        kept = self.server.table.get("192.0.2.10")
        self.assertIsNot(kept, newer)
        d.errback(IOError("disk full"))
        self.assertIs(self.server.table.get("192.0.2.10"), kept)

    def test_not_durable_logged_once_an_interval(self):
        events = []
        self.proto._log = Logger(observer=events.append)
        for n in range(3):
            self.select("192.0.2.1%d" % n, mac=bytes((2, 0, 0, 0, 0, n))).errback(
                IOError("disk full"))
        self.assertEqual(len(events), 1)
        self.assertEqual(self.server.stats["not_durable"], 3)

    def test_malformed_logged_once_an_interval(self):
        events = []
        self.proto._log = Logger(observer=events.append)
        for _ in range(100):
            self.proto.datagramReceived(b"\x01" * 10, ("192.0.2.99", 68))
        self.assertEqual(len(events), 1)
        self.assertEqual(self.server.stats["malformed"], 100)

    def test_send_errors_logged_once_an_interval_and_not_counted_as_acks(self):
        events = []
        self.proto._log = Logger(observer=events.append)

        def refuse(data, addr):
            raise OSError(101, "Network is unreachable")
        self.proto._sendto = refuse
        for n in range(2500):
            self.select("192.0.2.10").callback(None)
        self.assertEqual(self.server.stats["send_errors"], 2500)
        self.assertEqual(self.server.stats["ack"], 0)
        self.assertEqual(len(events), 1)
