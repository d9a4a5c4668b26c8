"""The UDP protocol: no reply before durability, malformed input counted and dropped."""

from twisted.internet.defer import Deferred, fail
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
