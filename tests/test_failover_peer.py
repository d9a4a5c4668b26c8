"""The real PeerProtocol between real coordinators, over in-memory mutual TLS
(TLSMemoryBIOFactory + iosim, certificates from make_certs, one shared
task.Clock): Hello both ways, the election, duplicate connections, state
and priority announcements, refusals, replication.
"""

import itertools

import attr

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.failover import certs, commands, tls
from dhcpfo.failover.commands import (PROTOCOL_VERSION, Hello, NotAllowed,
                                      PoolMismatch, VersionMismatch)
from dhcpfo.failover.coordinator import (PRIMARY, SECONDARY, Coordinator,
                                         FailoverSettings, ReplicatedStore)
from dhcpfo.failover.peer import PeerFactory
from dhcpfo.failover.policy import FailoverPolicy
from dhcpfo.failover.state import ACTIVE, PASSIVE
from dhcpfo.leases.hlc import HybridLogicalClock, stamp_seconds
from dhcpfo.leases.lease import ACTIVE as BOUND, Lease
from dhcpfo.leases.table import LeaseTable
from dhcpfo.stores.memory import MemoryLeaseStore

T0 = 1_780_000_000.0
POOLS = ["range 192.0.2.100 192.0.2.250 255.255.255.0", "lease-time 3600"]
NAMES = ["dhcp-a", "dhcp-b", "dhcp-c", "dhcp-d"]


def in_range(ip):
    return ip.startswith("192.0.2.") and 100 <= int(ip.rsplit(".", 1)[1]) <= 250


def messages(events):
    return [formatEvent(e) for e in events]


class Wall:
    """A wall clock ``offset`` seconds off the shared test clock, which it
    schedules on."""

    def __init__(self, clock, offset):
        self.clock, self.offset = clock, offset

    def seconds(self):
        return self.clock.seconds() + self.offset

    def callLater(self, *a, **kw):
        return self.clock.callLater(*a, **kw)

    def getDelayedCalls(self):
        return self.clock.getDelayedCalls()


class Connected:
    """One TLS connection between two real PeerProtocols."""

    def __init__(self, dialler, listener, pump):
        self.dialler, self.listener, self.pump = dialler, listener, pump

    @property
    def closed(self):
        return self.dialler.transport is None and self.listener.transport is None


class PeerHarness:
    """Real coordinators (``self.nodes``) joined by real PeerProtocols."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.lab = certs.make_certs(self.mktemp(), NAMES)
        self.nodes = {}
        self.identities = {}
        self.connections = []

    def node(self, name, role=SECONDARY, priority=0, peers=None, wall=None,
             pools=POOLS, mclt=3600.0):
        peers = [n for n in NAMES if n != name] if peers is None else peers
        settings = FailoverSettings(name, role, priority, mclt=mclt, peers=tuple(peers),
                                    heartbeat=1.0, dead_after=3.0, pool_lines=pools,
                                    master=None if role == PRIMARY else "dhcp-a")
        wall = wall or self.clock
        coord = Coordinator(settings, LeaseTable(), MemoryLeaseStore(), wall,
                            hlc=HybridLogicalClock(wall),
                            policy=FailoverPolicy(name, mclt, role == PRIMARY),
                            in_ranges=in_range)
        coord.start()
        self.addCleanup(coord.stop)
        self.nodes[name] = coord
        cert, key = self.lab.peers[name]
        self.identities[name] = tls.load_identity(cert, key, self.lab.ca_cert,
                                                  name=name)
        return coord

    def dial(self, a, b, initiator=True, client_options=None):
        """``a`` connects to ``b``'s listener.  With ``initiator=False`` the
        dialling protocol sends no Hello of its own (the test does)."""
        server = TLSMemoryBIOFactory(
            self.identities[b].server_options(), isClient=False,
            wrappedFactory=PeerFactory(self.nodes[b], [n for n in NAMES if n != b],
                                       initiator=False), clock=self.clock)
        client = TLSMemoryBIOFactory(
            client_options or self.identities[a].client_options(b), isClient=True,
            wrappedFactory=PeerFactory(self.nodes[a], [b], initiator=initiator),
            clock=self.clock)
        c, s, pump = iosim.connectedServerAndClient(
            lambda: server.buildProtocol(None), lambda: client.buildProtocol(None),
            greet=False, clock=self.clock)
        conn = Connected(c.wrappedProtocol, s.wrappedProtocol, pump)
        self.connections.append(conn)
        pump.flush()
        return conn

    def advance(self, seconds, step=0.1):
        for _ in range(int(round(seconds / step))):
            for conn in self.connections:
                conn.pump.flush()
            self.clock.advance(step)
        for conn in self.connections:
            conn.pump.flush()

    def kill(self, name):
        """Like ``kill -9``: every connection of ``name`` drops, it says nothing."""
        for conn in self.connections:
            for proto in (conn.dialler, conn.listener):
                if proto.host is self.nodes[name] and proto.transport is not None:
                    proto.transport.abortConnection()
        self.nodes.pop(name).stop()
        self.advance(0.5)

    def states(self):
        return {name: coord.state for name, coord in self.nodes.items()}

    def active(self):
        return sorted(n for n, c in self.nodes.items() if c.state == ACTIVE)

    def finish(self):
        """Close every connection and stop every node: nothing may be left
        on the clock."""
        for conn in self.connections:
            for proto in (conn.dialler, conn.listener):
                if proto.transport is not None:
                    proto.transport.loseConnection()
            conn.pump.flush()
        for coord in self.nodes.values():
            coord.stop()
        self.advance(0.2)
        self.assertTrue(all(c.closed for c in self.connections))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class HelloTests(PeerHarness, SynchronousTestCase):

    def test_both_ends_learn_role_and_priority(self):
        """The dialler's Hello and the listener's answer each carry name,
        role and priority: both ends register the other as it is."""
        self.node("dhcp-a", PRIMARY, priority=7)
        self.node("dhcp-b", SECONDARY, priority=3)
        conn = self.dial("dhcp-b", "dhcp-a")
        self.advance(1)
        a, b = self.nodes["dhcp-a"], self.nodes["dhcp-b"]
        self.assertEqual((a.links["dhcp-b"].role, a.links["dhcp-b"].priority),
                         (SECONDARY, 3))
        self.assertEqual((b.links["dhcp-a"].role, b.links["dhcp-a"].priority),
                         (PRIMARY, 7))
        self.assertIs(a.links["dhcp-b"], conn.listener)
        self.assertIs(b.links["dhcp-a"], conn.dialler)
        self.assertEqual((conn.listener.gate.name, conn.dialler.gate.name),
                         ("dhcp-b", "dhcp-a"))
        self.assertEqual(a.synced, {"dhcp-b"})
        self.assertEqual(b.synced, {"dhcp-a"})
        self.assertEqual(self.states(), {"dhcp-a": ACTIVE, "dhcp-b": PASSIVE})
        [peer] = [p for p in b.status()["peers"] if p["connected"]]
        self.assertEqual((peer["name"], peer["priority"], peer["state"]),
                         ("dhcp-a", 7, ACTIVE))
        self.assertEqual(b.status()["priority"], 3)
        self.finish()

    def refused(self, conn, hello, error):
        """Send ``hello`` from the dialling end; it is refused with
        ``error``, the listener registers nothing and the connection drops."""
        result = []
        with capturedLogs() as events:
            conn.dialler.callRemote(Hello, **hello).addBoth(result.append)
            self.advance(0.2)
        result[0].trap(error)
        self.assertEqual(self.nodes["dhcp-a"].links, {})
        self.assertFalse(conn.listener.registered)
        self.assertTrue(conn.closed)
        self.assertTrue(any("refused failover peer" in m for m in messages(events)))
        return str(result[0].value)

    def hello(self, **kw):
        args = dict(version=PROTOCOL_VERSION, name="dhcp-b", role=SECONDARY,
                    priority=1, pool_digest=commands.pool_digest(POOLS), pools=POOLS,
                    hlc=0)
        args.update(kw)
        return args

    def test_version_mismatch(self):
        self.node("dhcp-a", PRIMARY)
        self.node("dhcp-b")
        conn = self.dial("dhcp-b", "dhcp-a", initiator=False)
        why = self.refused(conn, self.hello(version=99), VersionMismatch)
        self.assertIn("protocol %d, the peer 99" % PROTOCOL_VERSION, why)
        self.finish()

    def test_pool_mismatch_says_what_differs(self):
        self.node("dhcp-a", PRIMARY, pools=POOLS[:1] + ["lease-time 600"])
        self.node("dhcp-b")
        conn = self.dial("dhcp-b", "dhcp-a", initiator=False)
        why = self.refused(conn, self.hello(), PoolMismatch)
        self.assertIn("dhcp-a has lease-time 600", why)
        self.assertIn("dhcp-b has lease-time 3600", why)
        self.finish()

    def test_name_must_match_certificate(self):
        self.node("dhcp-a", PRIMARY)
        self.node("dhcp-b")
        conn = self.dial("dhcp-b", "dhcp-a", initiator=False)
        why = self.refused(conn, self.hello(name="dhcp-c"), NotAllowed)
        self.assertIn("certificate proves 'dhcp-b'", why)
        self.finish()

    def test_refused_hello_slows_the_dialler(self):
        """The real dialler, refused (different pools), asks its reconnecting
        service to retry slowly."""
        self.node("dhcp-a", PRIMARY, pools=POOLS[:1])
        self.node("dhcp-b")
        with capturedLogs() as events:
            conn = self.dial("dhcp-b", "dhcp-a")
            self.advance(0.2)
        self.assertTrue(conn.dialler.factory.refused)
        self.assertTrue(conn.closed)
        self.assertTrue(any("refused us" in m for m in messages(events)))
        self.finish()


    def test_duplicate_connection_refused_as_such(self):
        """The second connection between one pair, dialled by the larger
        name, is refused as a duplicate (not as an error), and the first
        stays up on both ends."""
        self.node("dhcp-b", priority=1)
        self.node("dhcp-c", priority=2)
        first = self.dial("dhcp-b", "dhcp-c")
        self.advance(1)
        with capturedLogs() as events:
            second = self.dial("dhcp-c", "dhcp-b")
            self.advance(1)
        logged = messages(events)
        self.assertTrue(second.closed)
        self.assertTrue(second.dialler.factory.refused)
        self.assertTrue(any("dhcp-b keeps another connection with dhcp-c" in m
                            for m in logged), logged)
        self.assertFalse(any("refused" in m for m in logged), logged)
        self.assertIs(self.nodes["dhcp-b"].links["dhcp-c"], first.dialler)
        self.assertIs(self.nodes["dhcp-c"].links["dhcp-b"], first.listener)
        self.assertEqual(self.active(), ["dhcp-c"])
        self.finish()


    def test_reconnect_replaces_the_old_connection(self):
        """A dialler that connects again while the old connection still
        looks alive (a half-open TCP connection): both ends keep the new one
        and close the old, and the higher peer stays the only one active."""
        self.node("dhcp-b", priority=2)
        self.node("dhcp-c", priority=1)
        old = self.dial("dhcp-b", "dhcp-c")
        self.advance(4)
        self.assertEqual(self.active(), ["dhcp-b"])
        new = self.dial("dhcp-b", "dhcp-c")
        self.advance(1)
        self.assertTrue(old.closed)
        self.assertIs(self.nodes["dhcp-b"].links["dhcp-c"], new.dialler)
        self.assertIs(self.nodes["dhcp-c"].links["dhcp-b"], new.listener)
        self.assertEqual(self.nodes["dhcp-c"].synced, {"dhcp-b"})
        self.assertEqual(self.active(), ["dhcp-b"])
        self.finish()


class ElectionTests(PeerHarness, SynchronousTestCase):
    """A primary and two secondaries dialling the primary and each other:
    after the primary dies exactly one secondary, the higher priority, is
    active — wherever the higher priority sits and whoever dialled whom."""

    def group(self, prio_b, prio_c, dials):
        self.node("dhcp-a", PRIMARY, peers=["dhcp-b", "dhcp-c"])
        self.node("dhcp-b", priority=prio_b, peers=["dhcp-a", "dhcp-c"])
        self.node("dhcp-c", priority=prio_c, peers=["dhcp-a", "dhcp-b"])
        self.dial("dhcp-b", "dhcp-a")
        self.dial("dhcp-c", "dhcp-a")
        for a, b in dials:
            self.dial(a, b)
        self.advance(5)
        self.assertEqual(self.states(), {"dhcp-a": ACTIVE, "dhcp-b": PASSIVE,
                                         "dhcp-c": PASSIVE})

    case = ""

    def check(self, prio_b, prio_c, dials):
        self.group(prio_b, prio_c, dials)
        b, c = self.nodes["dhcp-b"], self.nodes["dhcp-c"]
        # One connection between b and c survives, the same on both ends:
        # the one the smaller name dialled, when it did.
        self.assertIs(b.links["dhcp-c"].factory.host, b)
        kept_b, kept_c = b.links["dhcp-c"], c.links["dhcp-b"]
        self.assertTrue(any({kept_b, kept_c} == {conn.dialler, conn.listener}
                            for conn in self.connections))
        if ("dhcp-b", "dhcp-c") in dials:
            self.assertTrue(kept_b.dialled_by_me)
        self.assertEqual((kept_b.priority, kept_c.priority), (prio_c, prio_b))
        self.kill("dhcp-a")
        self.advance(5)
        winner = "dhcp-b" if prio_b > prio_c else "dhcp-c"
        self.assertEqual(self.active(), [winner], self.case)
        loser = ({"dhcp-b", "dhcp-c"} - {winner}).pop()
        self.assertEqual(self.nodes[loser].state, PASSIVE)
        self.assertEqual(self.nodes[loser].links[winner].peer_state, ACTIVE)
        self.finish()

    def test_every_dial_direction_and_priority_placement(self):
        dial_sets = [[("dhcp-b", "dhcp-c")], [("dhcp-c", "dhcp-b")],
                     [("dhcp-b", "dhcp-c"), ("dhcp-c", "dhcp-b")],
                     [("dhcp-c", "dhcp-b"), ("dhcp-b", "dhcp-c")]]
        for (prio_b, prio_c), dials in itertools.product([(1, 2), (2, 1)],
                                                        dial_sets):
            self.setUp()
            self.case = "priorities b=%d c=%d, dials %r" % (prio_b, prio_c, dials)
            self.check(prio_b, prio_c, dials)

    def test_priority_change_is_announced(self):
        """A secondary whose priority rises above the active one's tells it
        at once (StateAnnounce): they swap, and never both serve."""
        self.group(1, 2, [("dhcp-b", "dhcp-c")])
        self.kill("dhcp-a")
        self.advance(5)
        self.assertEqual(self.active(), ["dhcp-c"])
        b, c = self.nodes["dhcp-b"], self.nodes["dhcp-c"]
        b.setPriority(5)
        self.advance(0.2)
        self.assertEqual(c.links["dhcp-b"].priority, 5)
        self.assertEqual(self.active(), ["dhcp-b"])
        self.assertEqual(c.state, PASSIVE)
        self.finish()

    def test_four_servers_partition(self):
        """Primary + three secondaries; the connections between {a, b} and
        {c, d} drop: each side has exactly one active server."""
        self.node("dhcp-a", PRIMARY)
        for name, prio in (("dhcp-b", 1), ("dhcp-c", 3), ("dhcp-d", 2)):
            self.node(name, priority=prio)
        for a, b in itertools.combinations(NAMES, 2):
            self.dial(b, a)
        self.advance(5)
        self.assertEqual(self.active(), ["dhcp-a"])
        for conn in self.connections:
            ends = {conn.dialler.host.settings.name, conn.listener.host.settings.name}
            if len(ends & {"dhcp-a", "dhcp-b"}) == 1 and conn.dialler.transport:
                conn.dialler.transport.abortConnection()
        self.advance(5)
        self.assertEqual(self.active(), ["dhcp-a", "dhcp-c"])
        self.finish()


class ReplicationTests(PeerHarness, SynchronousTestCase):

    def setUp(self):
        super().setUp()
        self.a = self.node("dhcp-a", PRIMARY, peers=["dhcp-b"])
        self.b = self.node("dhcp-b", peers=["dhcp-a"], wall=Wall(self.clock, 600.0))
        self.conn = self.dial("dhcp-b", "dhcp-a")
        self.advance(1)

    def lease(self, n=100):
        now = self.clock.seconds()
        return Lease("192.0.2.%d" % n, bytes([0x52, 0, 0, 0, 0, n]), b"", "h%d" % n,
                     BOUND, now - 30, now + 3600, "dhcp-a", self.a.stamp())

    def test_write_durable_on_the_peer_before_it_fires(self):
        """A ReplicatedStore write fires once the real peer stored it; times
        arrive relative to the receiver's (ten minutes fast) clock."""
        lease = self.lease()
        d = ReplicatedStore(self.a.store, self.a).write([lease])
        self.assertNoResult(d)
        self.advance(0.2)
        self.successResultOf(d)
        got = self.b.store.leases[lease.ip]
        self.assertAlmostEqual(got.expiry - self.b.clock.seconds(),
                               lease.expiry - self.clock.seconds(), places=6)
        self.assertEqual(self.a.policy.acked_expiry(lease.ip), lease.expiry)
        self.assertGreater(self.b.stamp(), lease.version)
        self.finish()

    def test_link_lost_before_ack_fails_the_write(self):
        lease = self.lease()
        d = ReplicatedStore(self.a.store, self.a).write([lease])
        self.conn.listener.transport.abortConnection()
        self.advance(0.2)
        self.failureResultOf(d)
        self.assertIsNone(self.a.policy.acked_expiry(lease.ip))
        self.finish()

    def test_writes_queued_behind_a_flush_go_together(self):
        """Group commit on the link: writes made while one LeaseBatch is in
        flight wait, then go in one flush; each fires once the peer has it."""
        link = self.a.links["dhcp-b"]
        store = ReplicatedStore(self.a.store, self.a)
        ds = [store.write([self.lease(n)]) for n in (100, 101, 102)]
        self.assertEqual(link.pending(), 3)
        for d in ds:
            self.assertNoResult(d)
        self.advance(0.2)
        for d in ds:
            self.successResultOf(d)
        self.assertEqual(link.pending(), 0)
        self.assertEqual(sorted(self.b.store.leases),
                         ["192.0.2.100", "192.0.2.101", "192.0.2.102"])
        self.finish()

    def test_link_lost_fails_queued_writes_too(self):
        """The flush in flight and the writes queued behind it all fail when
        the link drops: none waits for an acknowledgement that cannot come."""
        store = ReplicatedStore(self.a.store, self.a)
        first = store.write([self.lease(100)])
        queued = store.write([self.lease(101)])
        self.conn.listener.transport.abortConnection()
        self.advance(0.2)
        self.failureResultOf(first)
        self.failureResultOf(queued)
        self.finish()

    def test_invalid_records_counted_and_skipped_in_exchange(self):
        """Out-of-range records in a database exchange are skipped and
        counted; the rest arrive."""
        now = self.clock.seconds()
        self.b.table.put(Lease("198.51.100.7", b"\x01" * 6, b"", "", BOUND, now,
                               now + 60, "dhcp-b", self.b.stamp()))
        self.b.table.put(self.lease(101))
        self.conn.listener.transport.abortConnection()
        self.advance(0.2)
        with capturedLogs() as events:
            self.dial("dhcp-b", "dhcp-a")
            self.advance(1)
        self.assertEqual(self.a.invalid_records, 1)
        self.assertIn("192.0.2.101", self.a.store.leases)
        self.assertNotIn("198.51.100.7", self.a.store.leases)
        self.assertTrue(any("outside our ranges" in m for m in messages(events)))
        self.finish()

    def test_a_long_client_id_does_not_stop_replication_nor_the_exchange(self):
        """Issue 10 item 1: a 400-byte client id (two option-61 parts, RFC
        3396) crosses the wire; a lease past the bounds is refused before it
        could be acknowledged, alone; later writes replicate and a fresh
        database exchange completes, skipping only the unsendable record."""
        store = ReplicatedStore(self.a.store, self.a)
        now = self.clock.seconds()
        long_id = Lease("192.0.2.110", b"\x52" * 6, b"\x01" + b"x" * 399, "long",
                        BOUND, now - 1, now + 3600, "dhcp-a", self.a.stamp())
        too_long = attr.evolve(self.lease(111), client_id=b"y" * 5000,
                               version=self.a.stamp())
        d_long = store.write([long_id])
        d_bad = store.write([too_long])
        d_after = store.write([self.lease(112)])
        self.advance(0.2)
        self.successResultOf(d_long)
        self.failureResultOf(d_bad, commands.InvalidLease)
        self.successResultOf(d_after)
        self.assertEqual(self.b.store.leases["192.0.2.110"].client_id,
                         long_id.client_id)
        self.assertNotIn("192.0.2.111", self.b.store.leases)
        self.assertIn("192.0.2.112", self.b.store.leases)
        # Both records sit in a's table (the server put them there): a new
        # connection's exchange must still complete.
        for lease in (long_id, too_long, self.lease(113)):
            self.a.table.put(lease)
        self.conn.listener.transport.abortConnection()
        self.advance(0.2)
        with capturedLogs() as events:
            self.dial("dhcp-b", "dhcp-a")
            self.advance(1)
        self.assertIn("dhcp-b", self.a.synced)
        self.assertIn("dhcp-a", self.b.synced)
        self.assertIn("192.0.2.113", self.b.store.leases)
        self.assertNotIn("192.0.2.111", self.b.store.leases)
        self.assertTrue(any("cannot cross the wire" in m
                            for m in messages(events)))
        d = store.write([self.lease(114)])
        self.advance(0.2)
        self.successResultOf(d)
        self.assertIn("192.0.2.114", self.b.store.leases)
        self.finish()

    def test_an_encoder_failure_fails_only_its_own_flush(self):
        """Should encoding still raise inside a flush, the flush's writes
        fail and the queue keeps moving (GroupCommit on the link)."""
        link = self.a.links["dhcp-b"]
        store = ReplicatedStore(self.a.store, self.a)
        broken = attr.evolve(self.lease(120), ip="192.0.2.120.9")
        d_bad = link.sendLeases([broken])
        d_after = store.write([self.lease(121)])
        self.advance(0.2)
        self.failureResultOf(d_bad)
        self.successResultOf(d_after)
        self.assertIn("192.0.2.121", self.b.store.leases)
        self.finish()


class ClockBoundTests(PeerHarness, SynchronousTestCase):
    """Issue 10 item 2: a peer's HLC value is bounded like lease versions."""

    def test_a_peer_two_days_fast_does_not_move_our_stamps(self):
        a = self.node("dhcp-a", PRIMARY, peers=["dhcp-b"])
        self.node("dhcp-b", peers=["dhcp-a"], wall=Wall(self.clock, 2 * 86400.0))
        with capturedLogs() as events:
            self.dial("dhcp-b", "dhcp-a")
            self.advance(10)
        self.assertLess(stamp_seconds(a.stamp()), self.clock.seconds() + 1)
        self.assertGreater(a.refused_stamps, 5)
        lines = [m for m in messages(events) if "clock value" in m]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("dhcp-b", lines[0])
        self.finish()

    def test_an_absurd_stamp_is_refused(self):
        a = self.node("dhcp-a", PRIMARY, peers=["dhcp-b"])
        self.node("dhcp-b", peers=["dhcp-a"])
        conn = self.dial("dhcp-b", "dhcp-a")
        self.advance(1)
        d = conn.dialler.callRemote(commands.Heartbeat, state="passive", hlc=2 ** 70)
        self.advance(0.2)
        self.successResultOf(d)
        self.assertLess(a.stamp(), commands.MAX_VERSION)
        self.assertLess(stamp_seconds(a.stamp()), self.clock.seconds() + 1)
        self.assertEqual(a.status()["refused_clock_values"], 1)
        self.finish()
