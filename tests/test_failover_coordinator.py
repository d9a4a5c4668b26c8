"""The failover coordinator with fake links and task.Clock: roles, policy,
replication gating, reserves, merge of peer records."""

from twisted.internet import defer
from zope.interface import implementer
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.dhcp import packet as P
from dhcpfo.failover.coordinator import (PRIMARY, SECONDARY, Coordinator,
                                         FailoverSettings, ReplicatedStore)
from dhcpfo.failover.policy import FailoverPolicy
from dhcpfo.failover.reserve import ServerPools
from dhcpfo.failover.seam import ILink
from dhcpfo.failover.state import ACTIVE, PASSIVE, SYNCING
from dhcpfo.leases.lease import ACTIVE as BOUND, BACKUP, Lease
from dhcpfo.stores.memory import MemoryLeaseStore
from tests.test_server import BASIC, ip, make_server, request

MAC3 = bytes.fromhex("525400000003")


@implementer(ILink)
class FakeLink:
    """A stand-in link for unit tests of the coordinator alone (the real
    PeerProtocol is tested in test_failover_peer)."""

    serials = iter(range(1, 1 << 30))

    def __init__(self, name, role, priority=0, dialled_by_me=True):
        self.name = name
        self.role = role
        self.priority = priority
        self.dialled_by_me = dialled_by_me
        self.serial = next(self.serials)
        self.peer_state = None
        self.sent = []
        self.announced = []
        self.dropped = None

    def announce(self, state, priority):
        self.announced.append((state, priority))

    def drop(self, why):
        self.dropped = why

    def sendLeases(self, leases):
        d = defer.Deferred()
        self.sent.append((list(leases), d))
        return d

    def pending(self):
        return sum(len(l) for l, d in self.sent if not d.called)

    def ackAll(self):
        for _, d in self.sent:
            if not d.called:
                d.callback(None)


def coordinator(role, name="me", priority=0, ranges=BASIC, **kw):
    server, iface, clock = make_server(
        ranges, policy=FailoverPolicy(name, kw.get("mclt", 3600.0), role == PRIMARY))
    store = MemoryLeaseStore()
    coord = Coordinator(FailoverSettings(name, role, priority, **kw), server.table,
                        store, clock, hlc=server.hlc, policy=server.policy,
                        pools=ServerPools(server))
    return coord, server, iface, clock, store


class RoleTests(SynchronousTestCase):
    def test_primary_serves_at_once_restricted_until_synced(self):
        coord, server, _, clock, _ = coordinator(PRIMARY, peers=("s",))
        coord.start()
        self.assertEqual(coord.state, ACTIVE)
        self.assertTrue(server.policy.serving)
        self.assertTrue(server.policy.restricted)
        sec = FakeLink("s", SECONDARY)
        coord.linkUp(sec)
        self.assertTrue(server.policy.restricted, "connected, but not yet exchanged")
        coord.linkSynced(sec)
        self.assertFalse(server.policy.restricted)

    def test_standalone_primary_unrestricted(self):
        coord, server, _, clock, _ = coordinator(PRIMARY)
        coord.start()
        self.assertTrue(server.policy.serving)
        self.assertFalse(server.policy.restricted)

    def test_secondary_passive_while_primary_connected(self):
        coord, server, _, clock, _ = coordinator(SECONDARY)
        coord.start()
        primary = FakeLink("p", PRIMARY)
        coord.linkUp(primary)
        self.assertEqual(coord.state, SYNCING)
        coord.linkSynced(primary)
        self.assertEqual(coord.state, PASSIVE)
        clock.advance(10)
        self.assertEqual(coord.state, PASSIVE)
        self.assertFalse(server.policy.serving)
        coord.linkDown(primary, "test")
        self.assertEqual(coord.state, ACTIVE)
        self.assertTrue(server.policy.serving)
        self.assertTrue(server.policy.restricted)
        self.assertFalse(server.policy.primary)
        # The primary comes back: exchange first, then passive again.
        again = FakeLink("p", PRIMARY)
        coord.linkUp(again)
        self.assertEqual(coord.state, SYNCING)
        self.assertFalse(server.policy.serving)
        coord.linkSynced(again)
        self.assertEqual(coord.state, PASSIVE)
        self.assertFalse(server.policy.restricted)

    def test_two_secondaries_one_takes_over(self):
        high, _, _, hclock, _ = coordinator(SECONDARY, "s-high", priority=2)
        low, _, _, lclock, _ = coordinator(SECONDARY, "s-low", priority=1)
        for coord in (high, low):
            coord.start()
        high.linkUp(FakeLink("s-low", SECONDARY, 1))
        high.linkSynced(high.links["s-low"])
        low.linkUp(FakeLink("s-high", SECONDARY, 2))
        low.linkSynced(low.links["s-high"])
        hclock.advance(3)
        lclock.advance(3)
        self.assertEqual((high.state, low.state), (ACTIVE, PASSIVE))

    def test_primary_keeps_serving_through_exchange(self):
        coord, server, _, clock, _ = coordinator(PRIMARY)
        coord.start()
        sec = FakeLink("s", SECONDARY)
        coord.linkUp(sec)
        self.assertTrue(server.policy.serving)
        self.assertTrue(server.policy.restricted)
        coord.linkSynced(sec)
        self.assertEqual(coord.state, ACTIVE)
        self.assertFalse(server.policy.restricted)
        coord.linkDown(sec, "gone")
        self.assertTrue(server.policy.restricted)
        self.assertTrue(server.policy.serving)


class ReplicationTests(SynchronousTestCase):
    def setUp(self):
        self.coord, self.server, self.iface, self.clock, self.store = \
            coordinator(PRIMARY)
        self.coord.start()
        self.sec = FakeLink("s", SECONDARY)
        self.coord.linkUp(self.sec)
        self.coord.linkSynced(self.sec)
        self.sec.ackAll()  # the reserve transfer
        self.replicated = ReplicatedStore(self.store, self.coord)

    def test_write_waits_for_peer_ack(self):
        lease = Lease("192.0.2.10", b"\x01" * 6, b"", "", BOUND, 0.0, 99.0, "me", 5)
        d = self.replicated.write([lease])
        self.assertNoResult(d)
        self.sec.ackAll()
        self.successResultOf(d)
        self.assertEqual(self.server.policy.acked_expiry("192.0.2.10"), 99.0)

    def test_unreached_known_peer_keeps_acked_expiry(self):
        """MCLT rule (docs/failover.md rule 3): the acknowledged expiry that
        caps unacknowledged lease time advances only when EVERY peer we know
        of has the lease; one connected peer's ACK is not enough while another
        known peer is unreachable."""
        coord, server, _, clock, store = coordinator(PRIMARY, peers=("s", "t"))
        coord.start()
        sec = FakeLink("s", SECONDARY)
        coord.linkUp(sec)
        coord.linkSynced(sec)
        sec.ackAll()
        lease = Lease("192.0.2.10", b"\x01" * 6, b"", "", BOUND, 0.0, 99.0, "me", 5)
        d = ReplicatedStore(store, coord).write([lease])
        sec.ackAll()
        self.successResultOf(d)
        self.assertEqual(store.leases["192.0.2.10"], lease)
        self.assertIsNone(server.policy.acked_expiry("192.0.2.10"))
        # Nobody connected at all: durable locally, acknowledged by nobody.
        coord.linkDown(sec, "gone")
        d = ReplicatedStore(store, coord).write([lease])
        self.successResultOf(d)
        self.assertIsNone(server.policy.acked_expiry("192.0.2.10"))
        # t connects too: now every known peer has it.
        coord.linkUp(sec)
        third = FakeLink("t", SECONDARY)
        coord.linkUp(third)
        d = ReplicatedStore(store, coord).write([lease])
        sec.ackAll()
        self.assertNoResult(d)
        self.assertIsNone(server.policy.acked_expiry("192.0.2.10"))
        third.ackAll()
        self.successResultOf(d)
        self.assertEqual(server.policy.acked_expiry("192.0.2.10"), 99.0)

    def test_peer_lost_before_ack_fails_write(self):
        lease = Lease("192.0.2.10", b"\x01" * 6, b"", "", BOUND, 0.0, 99.0, "me", 5)
        d = self.replicated.write([lease])
        self.sec.sent[-1][1].errback(ConnectionError("lost"))
        self.failureResultOf(d)

    def test_reserve_transferred_and_not_allocated_by_primary(self):
        reserved = [l for l in self.server.table if l.state == BACKUP]
        # 3 addresses, 10 % reserve rounds to none; a bigger range gets some.
        self.assertEqual(reserved, [])
        coord, server, iface, clock, _ = coordinator(
            PRIMARY, ranges=[("dhcp-range", "192.0.2.10,192.0.2.109,1h")])
        coord.start()
        sec = FakeLink("s", SECONDARY)
        coord.linkUp(sec)
        coord.linkSynced(sec)
        reserved = {l.ip for l in server.table if l.state == BACKUP and l.owner == "s"}
        self.assertEqual(len(reserved), 10)
        [(sent, d)] = sec.sent
        self.assertEqual({l.ip for l in sent}, reserved)
        # The primary never offers a reserved address.
        offered = set()
        for n in range(90):
            mac = bytes([0x52, 0, 0, 0, 2, n])
            reply = server.handle(request(P.DISCOVER, mac), iface)
            offered.add(P.parse(reply.data).yiaddr)
        self.assertIsNone(server.handle(request(P.DISCOVER, MAC3), iface))
        self.assertFalse({ip(a) for a in reserved} & offered)

    def test_received_records_merged_and_stored(self):
        # A version ten minutes ahead of our clock (a peer's fast clock,
        # inside the HLC's bound): our later stamps stay newer.
        ahead = int((self.clock.seconds() + 600) * 1000) << 16
        theirs = Lease("192.0.2.11", b"\x02" * 6, b"", "h", BOUND, 0.0,
                       self.clock.seconds() + 100, "s", ahead)
        d = self.coord.received([theirs], self.sec)
        self.successResultOf(d)
        self.assertEqual(self.server.table.get("192.0.2.11"), theirs)
        self.assertEqual(self.store.leases["192.0.2.11"], theirs)
        self.assertGreater(self.server.hlc.now(), ahead)


class SecondaryPolicyTests(SynchronousTestCase):
    """A secondary alone allocates from its reserve only, with MCLT caps."""

    def setUp(self):
        self.coord, self.server, self.iface, self.clock, _ = coordinator(
            SECONDARY, "s", mclt=600.0)
        self.coord.start()
        now = self.clock.seconds()
        self.server.table.put(Lease("192.0.2.12", b"", b"", "", BACKUP, now, now,
                                    "s", 1))
        self.server.table.put(Lease("192.0.2.10", bytes.fromhex("525400000001"),
                                    b"", "", BOUND, now - 100, now + 50, "p", 2))
        self.server.policy.acknowledged("192.0.2.10", now + 50)
        self.coord.known.add("p")
        self.clock.advance(3)
        self.assertEqual(self.coord.state, ACTIVE)

    def test_new_client_gets_reserve_address_only(self):
        offer = P.parse(self.server.handle(request(P.DISCOVER, MAC3), self.iface).data)
        self.assertEqual(offer.yiaddr, ip("192.0.2.12"))
        self.assertIsNone(self.server.handle(
            request(P.DISCOVER, bytes.fromhex("525400000009")), self.iface))

    def test_renewal_capped_by_mclt(self):
        ack = self.server.handle(request(P.REQUEST, ciaddr=ip("192.0.2.10")),
                                 self.iface)
        [lease] = ack.commit
        now = self.clock.seconds()
        self.assertEqual(lease.expiry, now + 50 - 3 + 600)
        reply = P.parse(ack.data)
        self.assertEqual(int.from_bytes(reply.options[P.LEASE_TIME], "big"), 647)


class PartnerDownTests(SynchronousTestCase):
    def setUp(self):
        self.coord, self.server, self.iface, self.clock, _ = coordinator(
            SECONDARY, "s", mclt=600.0, peers=("p",), master="p")
        self.coord.start()
        now = self.clock.seconds()
        self.server.table.put(Lease("192.0.2.12", b"", b"", "", BACKUP, now, now,
                                    "s", 1))
        self.clock.advance(3)

    def test_takeover_after_mclt(self):
        self.assertTrue(self.server.policy.restricted)
        self.assertFalse(self.server.policy.primary)
        with self.assertRaises(ValueError):
            self.coord.declarePartnerDown("nobody", "test")
        self.coord.declarePartnerDown("p", "test")
        self.clock.advance(599)
        self.assertFalse(self.server.policy.primary)
        offered = P.parse(self.server.handle(request(P.DISCOVER, MAC3),
                                             self.iface).data).yiaddr
        self.assertEqual(offered, ip("192.0.2.12"))
        self.assertIsNone(self.server.handle(
            request(P.DISCOVER, bytes.fromhex("52540000000a")), self.iface))
        self.clock.advance(1)
        self.assertTrue(self.server.policy.primary)
        self.assertIsNotNone(self.server.handle(
            request(P.DISCOVER, bytes.fromhex("52540000000a")), self.iface))
        # The primary returns: partner-down ends.
        self.coord.linkUp(FakeLink("p", PRIMARY))
        self.assertFalse(self.server.policy.primary)
        self.assertEqual(self.coord.partner_down, {})

    def test_automatic_declaration_is_opt_in(self):
        self.clock.advance(100000)
        self.assertEqual(self.coord.partner_down, {})
        coord, server, _, clock, _ = coordinator(
            SECONDARY, "s", mclt=600.0, peers=("p",), master="p",
            partner_down_after=60.0)
        coord.start()
        clock.advance(60)
        self.assertIn("p", coord.partner_down)
        clock.advance(600)
        self.assertTrue(server.policy.primary)
        coord.stop()
        self.assertEqual([c for c in clock.getDelayedCalls() if c.active()], [])


class RebalanceTests(SynchronousTestCase):
    def test_primary_takes_back_reserve_when_dry(self):
        coord, server, iface, clock, store = coordinator(
            PRIMARY, ranges=[("dhcp-range", "192.0.2.10,192.0.2.29,1h")],
            reserve=0.5, peers=("s",))
        coord.start()
        sec = FakeLink("s", SECONDARY)
        coord.linkUp(sec)
        coord.linkSynced(sec)
        sec.ackAll()
        reserved = [l for l in server.table if l.state == BACKUP]
        self.assertEqual(len(reserved), 10)
        for n in range(10):
            mac = bytes([0x52, 0, 0, 0, 3, n])
            server.handle(request(P.DISCOVER, mac), iface)
        self.assertIsNone(server.handle(request(P.DISCOVER, MAC3), iface))
        d = coord.rebalance()
        # Not ours until the secondary acknowledged.
        self.assertEqual(len([l for l in server.table if l.state == BACKUP]), 10)
        sec.ackAll()
        self.successResultOf(d)
        self.assertEqual(len([l for l in server.table if l.state == BACKUP]), 5)
        clock.advance(31)  # offers expire
        self.assertIsNotNone(server.handle(request(P.DISCOVER, MAC3), iface))


class StrangerOwnerTests(SynchronousTestCase):
    """Issue 10 item 3: a lease owned by a name that is not a configured peer
    (written under the server's old name before failover was turned on)
    makes no phantom peer: it cannot restrict us nor be declared down."""

    def test_a_lease_under_an_old_name_makes_no_phantom_peer(self):
        coord, server, iface, clock, _ = coordinator(
            PRIMARY, peers=("s",), mclt=3600.0,
            ranges=[("dhcp-range", "192.0.2.10,192.0.2.12,12h")])
        now = clock.seconds()
        server.table.put(Lease("192.0.2.10", b"\x09" * 6, b"", "old", BOUND,
                               now - 60, now + 43000, "old-name",
                               server.hlc.now()))
        server.table.put(Lease("192.0.2.11", b"", b"", "", BACKUP, now - 60, now,
                               "old-name", server.hlc.now()))
        coord.start()
        sec = FakeLink("s", SECONDARY)
        coord.linkUp(sec)
        coord.linkSynced(sec)
        sec.ackAll()
        self.assertFalse(server.policy.restricted)
        self.assertEqual([p["name"] for p in coord.status()["peers"]], ["s"])
        self.assertRaises(ValueError, coord.declarePartnerDown, "old-name", "test")
        # The old binding is still held; the old name's reserve is the
        # primary's free pool; a 12 h range gives 12 h, not MCLT.
        reply = server.handle(request(P.DISCOVER, MAC3), iface)
        offer = P.parse(reply.data)
        self.assertEqual(offer.yiaddr, ip("192.0.2.11"))
        self.assertEqual(offer.options[P.LEASE_TIME], (43200).to_bytes(4, "big"))

    def test_a_secondary_leaves_a_strangers_reserve_alone(self):
        coord, server, iface, clock, _ = coordinator(
            SECONDARY, peers=("p",), master="p",
            ranges=[("dhcp-range", "192.0.2.10,192.0.2.10,12h")])
        now = clock.seconds()
        server.table.put(Lease("192.0.2.10", b"", b"", "", BACKUP, now - 60, now,
                               "old-name", server.hlc.now()))
        coord.start()
        clock.advance(10)
        self.assertEqual(coord.state, ACTIVE)
        self.assertIsNone(server.handle(request(P.DISCOVER, MAC3), iface))
        self.assertEqual([p["name"] for p in coord.status()["peers"]], ["p"])
