"""The failover peer channel: AMP over real in-memory mutual TLS, the lab CA,
lease encoding across skewed clocks, chunking and validation.

Connections are TLSMemoryBIOFactory pairs joined by iosim with ONE shared
task.Clock (TLS batches small writes with callLater(0), so both sides must run
on the clock the pump advances).
"""

import datetime
import math
import os
import stat

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import ssl
from twisted.internet.protocol import Factory
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.failover import certs, commands, tls
from dhcpfo.addr import NEVER
from dhcpfo.failover.commands import (
    PROTOCOL_VERSION, DatabaseChunk, Hello, InvalidLease,
    LeaseBatch, NotAllowed, PoolMismatch, VersionMismatch, decode_lease,
    encode_lease, validate_lease)
from dhcpfo.failover.coordinator import Coordinator, FailoverSettings
from dhcpfo.failover.peer import PeerFactory, PeerProtocol
from dhcpfo.failover.policy import FailoverPolicy
from dhcpfo.leases.hlc import HybridLogicalClock
from dhcpfo.leases.lease import ACTIVE, BACKUP, EXPIRED, Lease
from dhcpfo.leases.table import LeaseTable
from dhcpfo.stores.memory import MemoryLeaseStore

T0 = 1_780_000_000.0          # the shared test clock starts here (2026)
SKEW = 600.0                  # ten minutes
POOLS = ["range 192.0.2.100 192.0.2.250 255.255.255.0", "lease-time 3600"]


def in_range(ip):
    return ip.startswith("192.0.2.") and 100 <= int(ip.rsplit(".", 1)[1]) <= 250


class OffsetClock:
    """A wall clock ``offset`` seconds off the shared test clock (which it
    schedules on)."""

    def __init__(self, clock, offset):
        self.clock, self.offset = clock, offset

    def seconds(self):
        return self.clock.seconds() + self.offset

    def callLater(self, *a, **kw):
        return self.clock.callLater(*a, **kw)


def peer(name, gate, wall, pools=POOLS, initiator=False):
    """The real PeerProtocol of a real (secondary) coordinator named
    ``name``; with ``initiator=False`` it sends no Hello of its own, so a
    test can send one by hand."""
    role = "primary" if name == "dhcp1" else "secondary"
    host = Coordinator(
        FailoverSettings(name, role, peers=("dhcp1", "dhcp2"), pool_lines=pools),
        LeaseTable(), MemoryLeaseStore(), wall, hlc=HybridLogicalClock(wall),
        policy=FailoverPolicy(name, 3600.0, role == "primary"), in_ranges=in_range)
    host.start()
    proto = PeerProtocol(host, gate, initiator, allowed=gate.allowed_names)
    proto.factory = PeerFactory(host, gate.allowed_names, initiator)
    return proto


def hellos(proto):
    """The peers whose Hello ``proto``'s side accepted."""
    return sorted(proto.host.links)


def received(proto):
    return sorted(proto.host.table, key=lambda l: l.ip)


def lost(proto):
    return proto.transport is None


def hello_args(name="dhcp2", version=PROTOCOL_VERSION, pools=POOLS, hlc=0):
    return dict(version=version, name=name, role="secondary", priority=1,
                pool_digest=commands.pool_digest(pools), pools=pools, hlc=hlc)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def raw_identity(cert_path, key_path, ca_path, name):
    """An Identity built without load_identity's checks (for misconfigured peers)."""
    return tls.Identity(
        certificate=ssl.PrivateCertificate.loadPEM(read(cert_path) + read(key_path)),
        chain=[], authorities=[ssl.Certificate.loadPEM(read(ca_path))],
        names=[name])


def a_lease(n=100, start=None, expiry=None, state=ACTIVE, version=None, **kw):
    start = T0 - 30.0 if start is None else start
    fields = dict(ip="192.0.2.%d" % n, hwaddr=bytes((0x52, 0x54, 0, 0, 0, n & 255)),
                  client_id=b"\x01abc", hostname="host-%d" % n, state=state,
                  start=start, expiry=start + 3600.0 if expiry is None else expiry,
                  owner="dhcp1",
                  version=(int(T0 * 1000) << 16) + n if version is None else version)
    fields.update(kw)
    return Lease(**fields)


def build_cert(subject, issuer, key, signer, ca, path_length=None, san=None):
    """A certificate valid now (by the real clock, which OpenSSL checks)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                        critical=True))
    if san:
        b = (b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]),
                             critical=False)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH,
                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    return b.sign(signer, hashes.SHA256())


class ChannelMixin:
    """Lab certificates and connected peer pairs for one test."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.lab = certs.make_certs(self.mktemp(), ["dhcp1", "dhcp2", "mallory"])
        self.other = certs.make_certs(self.mktemp(), ["dhcp1", "dhcp2"])

    def identity(self, name, lab=None):
        cert, key = (lab or self.lab).peers[name]
        # Certificates are checked against the real time (OpenSSL does too),
        # leases against the test clock.
        return tls.load_identity(cert, key, (lab or self.lab).ca_cert, name=name)

    def connect(self, server_identity, client_options, *, server_allowed=("dhcp2",),
                expected="dhcp1", client_name="dhcp2", client_wall=None,
                server_pools=POOLS, initiator=False):
        clock = self.clock
        server = peer("dhcp1", tls.PeerGate(server_allowed, clock=clock), clock,
                      pools=server_pools)
        client = peer(client_name, tls.PeerGate([expected], clock=clock),
                      client_wall or clock, initiator=initiator)
        server_factory = TLSMemoryBIOFactory(
            server_identity.server_options(), isClient=False,
            wrappedFactory=Factory.forProtocol(lambda: server), clock=clock)
        client_factory = TLSMemoryBIOFactory(
            client_options, isClient=True,
            wrappedFactory=Factory.forProtocol(lambda: client), clock=clock)
        _, _, self.pump = iosim.connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            greet=False, clock=clock)
        return server, client

    def pair(self, **kw):
        """A correctly configured dhcp1 (server) and dhcp2 (client)."""
        return self.connect(self.identity("dhcp1"),
                            self.identity("dhcp2").client_options("dhcp1"), **kw)

    def finish(self, *protocols):
        """Close what is still open; nothing may be left on the clock."""
        for p in protocols:
            if not lost(p):
                p.transport.loseConnection()
        self.pump.flush()
        for p in protocols:
            self.assertTrue(lost(p))
            p.host.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


def messages(events):
    return [formatEvent(e) for e in events]


class ChannelTests(ChannelMixin, SynchronousTestCase):
    """Mutual TLS between peers: who gets in, and that refused peers get nothing."""

    def test_hello(self):
        """Correctly named peers with make_certs certificates shake hands and
        exchange Hello (the real dialler sends it); each knows the other's
        proven name, role and priority."""
        server, client = self.pair(initiator=True)
        self.pump.flush()
        self.assertEqual(hellos(server), ["dhcp2"])
        self.assertEqual(hellos(client), ["dhcp1"])
        self.assertEqual((client.name, client.role, client.peer_state),
                         ("dhcp1", "primary", "active"))
        self.assertEqual((server.name, server.role), ("dhcp2", "secondary"))
        self.assertEqual(server.gate.name, "dhcp2")
        self.assertEqual(client.gate.name, "dhcp1")
        self.assertEqual(tls.peer_name(server.transport), "dhcp2")
        self.assertEqual(tls.peer_name(client.transport), "dhcp1")
        self.finish(server, client)

    def assertRefused(self, server, client, side, reason_part):
        """The connection was refused, nothing was processed, and ``side``
        logged why."""
        result = []
        with capturedLogs() as events:
            client.callRemote(Hello, **hello_args(name=client.host.settings.name)).addBoth(
                result.append)
            self.pump.flush()
        self.assertEqual(len(result), 1)
        self.assertIsInstance(result[0].value, Exception)
        self.assertEqual(hellos(server), [])
        self.assertEqual(received(server), [])
        refuser = server if side == "server" else client
        if side == "server":
            self.assertIsNone(server.gate.name)
        self.assertFalse(refuser.gate.admitted)
        self.assertIn(reason_part, refuser.gate.refused)
        logged = [m for m in messages(events) if "refused failover peer" in m]
        self.assertTrue(any(reason_part in m for m in logged), logged)
        self.finish(server, client)
        return logged

    def test_client_without_certificate(self):
        """A client that presents no certificate fails the server's handshake."""
        options = ssl.optionsForClientTLS(
            "dhcp1", trustRoot=ssl.Certificate.loadPEM(read(self.lab.ca_cert)))
        server, client = self.connect(self.identity("dhcp1"), options)
        self.assertRefused(server, client, "server", "certificate")

    def test_client_from_another_ca(self):
        """A client certificate signed by another CA is refused by the server,
        even though it names a configured peer."""
        cert, key = self.other.peers["dhcp2"]
        intruder = raw_identity(cert, key, self.lab.ca_cert, "dhcp2")
        server, client = self.connect(self.identity("dhcp1"),
                                      intruder.client_options("dhcp1"))
        self.assertRefused(server, client, "server", "TLS:")

    def test_server_from_another_ca(self):
        """A server certificate signed by another CA is refused by the client,
        which sends it nothing."""
        cert, key = self.other.peers["dhcp1"]
        impostor = raw_identity(cert, key, self.lab.ca_cert, "dhcp1")
        server, client = self.connect(impostor,
                                      self.identity("dhcp2").client_options("dhcp1"))
        self.assertRefused(server, client, "client", "TLS:")

    def test_client_wrong_name(self):
        """A client certified by our CA but for a name that is not a configured
        peer is refused after the handshake, before any command."""
        server, client = self.connect(
            self.identity("dhcp1"),
            self.identity("mallory").client_options("dhcp1"), client_name="mallory")
        logged = self.assertRefused(server, client, "server",
                                    "certificate is for mallory")
        self.assertIn("not a configured peer (dhcp2)", logged[0])

    def test_server_wrong_name(self):
        """A server certified by our CA, but not as the peer we dialled, is
        refused by the client (service-identity)."""
        server, client = self.connect(
            self.identity("mallory"), self.identity("dhcp2").client_options("dhcp1"))
        self.assertRefused(server, client, "client", "not for dhcp1")

    def test_handshake_timeout(self):
        """A connection that never completes the handshake is dropped."""
        server, client = self.pair()
        with capturedLogs() as events:
            self.clock.advance(tls.HANDSHAKE_TIMEOUT)
        self.assertIn("did not complete the TLS handshake", server.gate.refused)
        self.assertTrue(any("refused failover peer" in m for m in messages(events)))
        self.finish(server, client)
        self.assertEqual(hellos(server), [])

    def test_insecure_gate(self):
        """--failover-insecure admits at once, unauthenticated, loudly."""
        gate = tls.PeerGate(["dhcp2"], insecure=True, clock=self.clock)
        transport = iosim.FakeTransport(object(), isServer=True)
        with capturedLogs() as events:
            gate.connection_made(transport)
        self.assertTrue(gate.admitted)
        self.assertIsNone(gate.name)
        self.assertTrue(any("WITHOUT authentication" in m for m in messages(events)))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_version_mismatch_is_fatal(self):
        """A Hello refusal reaches the caller as its exception and the
        connection is dropped."""
        server, client = self.pair()
        result = []
        client.callRemote(Hello, **hello_args(version=99)).addBoth(result.append)
        self.pump.flush()
        result[0].trap(VersionMismatch)
        self.assertIn("protocol %d, the peer 99" % PROTOCOL_VERSION,
                      str(result[0].value))
        self.assertTrue(lost(server))
        self.assertTrue(lost(client))
        self.finish(server, client)

    def test_pool_mismatch_says_what_differs(self):
        server, client = self.pair(server_pools=POOLS[:1] + ["lease-time 600"])
        result = []
        client.callRemote(Hello, **hello_args()).addBoth(result.append)
        self.pump.flush()
        result[0].trap(PoolMismatch)
        message = str(result[0].value)
        # Each side named: the refused peer logs the message verbatim.
        self.assertIn("dhcp1 has lease-time 600", message)
        self.assertIn("dhcp2 has lease-time 3600", message)
        self.finish(server, client)

    def test_hello_name_must_match_certificate(self):
        server, client = self.pair()
        result = []
        client.callRemote(Hello, **hello_args(name="dhcp3")).addBoth(result.append)
        self.pump.flush()
        result[0].trap(NotAllowed)
        self.finish(server, client)

    def test_intermediate_chain(self):
        """A certificate file carrying an intermediate CA works both ways."""
        directory = self.mktemp()
        os.makedirs(directory)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
        root = build_cert(root_name, root_name, root_key, root_key, True, 1)
        mid_key = ec.generate_private_key(ec.SECP256R1())
        mid_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test mid")])
        mid = build_cert(mid_name, root_name, mid_key, root_key, True, 0)
        pem = serialization.Encoding.PEM
        ca_path = os.path.join(directory, "root.pem")
        with open(ca_path, "wb") as f:
            f.write(root.public_bytes(pem))
        identities = {}
        for name in ("dhcp1", "dhcp2"):
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
            leaf = build_cert(subject, mid_name, key, mid_key, False, san=name)
            cert_path = os.path.join(directory, name + ".pem")
            key_path = os.path.join(directory, name + ".key")
            with open(cert_path, "wb") as f:
                f.write(leaf.public_bytes(pem) + mid.public_bytes(pem))
            with open(key_path, "wb") as f:
                f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
            identities[name] = tls.load_identity(cert_path, key_path, ca_path,
                                                 name=name)
            self.assertEqual(len(identities[name].chain), 1)
        server, client = self.connect(identities["dhcp1"],
                                      identities["dhcp2"].client_options("dhcp1"))
        result = []
        client.callRemote(Hello, **hello_args()).addCallback(result.append)
        self.pump.flush()
        self.assertEqual(result[0]["name"], "dhcp1")
        self.finish(server, client)


    def test_wildcard_server_certificate_refused(self):
        """service-identity accepts *.lab.example for dhcp1.lab.example; peer
        names match exactly, so the client refuses it after the handshake and
        sends nothing."""
        ca_cert, ca_key = certs._load_ca(self.lab.ca_cert, self.lab.ca_key)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build_cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "w")]),
                          ca_cert.subject, key, ca_key, False, san="*.lab.example")
        pem = serialization.Encoding.PEM
        wildcard = tls.Identity(
            certificate=ssl.PrivateCertificate.loadPEM(
                cert.public_bytes(pem) + certs._key_pem(key)),
            chain=[], authorities=[ssl.Certificate.loadPEM(read(self.lab.ca_cert))],
            names=["*.lab.example"])
        server, client = self.connect(
            wildcard, self.identity("dhcp2").client_options("dhcp1.lab.example"),
            expected="dhcp1.lab.example")
        self.assertRefused(server, client, "client",
                           "certificate is for *.lab.example, which is not")

    def test_gate_drops_bytes_before_admission(self):
        """Whatever arrives before the peer is admitted is never parsed."""
        gate = tls.PeerGate(["dhcp2"], clock=self.clock)
        server = peer("dhcp1", gate, self.clock)
        transport = StringTransport()
        server.makeConnection(transport)
        box = Hello.makeArguments(hello_args(), None)
        box[b"_command"] = b"Hello"
        box[b"_ask"] = b"1"
        server.dataReceived(box.serialize())
        self.assertEqual(hellos(server), [])
        self.assertEqual(transport.value(), b"")
        server.connectionLost(Failure(ConnectionDone()))
        server.host.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # The same box, admitted, is answered (so the test above means something).
        admitted = peer("dhcp1", tls.PeerGate(["dhcp2"], insecure=True), self.clock)
        transport = StringTransport()
        admitted.makeConnection(transport)
        admitted.dataReceived(box.serialize())
        self.assertEqual(hellos(admitted), ["dhcp2"])
        self.assertIn(b"_answer", transport.value())
        admitted.connectionLost(Failure(ConnectionDone()))
        admitted.host.stop()
        self.clock.advance(0)  # the database exchange it had scheduled
        self.assertEqual(self.clock.getDelayedCalls(), [])

class SkewTests(ChannelMixin, SynchronousTestCase):
    """Times cross the wire relative to the sender's clock."""

    def test_round_trip_over_amp_with_skew(self):
        """A sender ten minutes fast: each receiver sees the same remaining and
        elapsed times by its own clock, in both directions; versions stamped
        by the fast clock are accepted."""
        fast = OffsetClock(self.clock, SKEW)
        server, client = self.pair(client_wall=fast, initiator=True)
        self.pump.flush()
        self.assertEqual((hellos(server), hellos(client)), (["dhcp2"], ["dhcp1"]))
        for sender, receiver in ((client, server), (server, client)):
            now = sender.host.clock.seconds()
            sent = [a_lease(100, start=now - 30.0, expiry=now + 3600.0,
                            version=sender.host.stamp()),
                    a_lease(101, start=now - 5.0, expiry=NEVER,
                            version=sender.host.stamp()),
                    a_lease(102, start=now - 7200.0, expiry=now - 3600.0,
                            state=EXPIRED, version=sender.host.stamp()),
                    a_lease(103, start=now, expiry=NEVER, state=BACKUP,
                            hwaddr=b"", client_id=b"", hostname="",
                            version=sender.host.stamp())]
            acked = []
            sender.callRemote(LeaseBatch, leases=[encode_lease(l, now) for l in sent],
                              hlc=sender.host.stamp(), now=now).addCallback(acked.append)
            self.pump.flush()
            self.assertEqual(acked, [{"acked": 4}])
            theirs = receiver.host.clock.seconds()
            self.assertEqual(abs(theirs - now), SKEW)
            got = {l.ip: l for l in received(receiver)}
            for lease in sent:
                g = got[lease.ip]
                self.assertAlmostEqual(g.start - theirs, lease.start - now, places=6)
                if lease.expiry == NEVER:
                    self.assertEqual(g.expiry, NEVER)
                else:
                    self.assertAlmostEqual(g.expiry - theirs, lease.expiry - now,
                                           places=6)
                self.assertEqual((g.ip, g.hwaddr, g.client_id, g.hostname, g.state,
                                  g.owner, g.version),
                                 (lease.ip, lease.hwaddr, lease.client_id,
                                  lease.hostname, lease.state, lease.owner,
                                  lease.version))
                self.assertEqual(g.holds(theirs), lease.holds(now))
        self.finish(server, client)

    def test_encode_decode_same_clock(self):
        lease = a_lease(120)
        fields = encode_lease(lease, T0)
        self.assertEqual(fields["started_ago"], 30.0)
        self.assertEqual(fields["expires_in"], 3570.0)
        self.assertEqual(decode_lease(fields, T0), lease)

    def test_infinite_travels_as_inf(self):
        fields = encode_lease(a_lease(120, expiry=NEVER), T0)
        self.assertEqual(fields["expires_in"], math.inf)
        self.assertEqual(decode_lease(fields, T0 - SKEW).expiry, NEVER)

    def test_slow_receiver_keeps_remaining_time(self):
        """The receiver's clock is ten minutes slow: absolute times shift by the
        skew, the remaining lease time does not."""
        lease = a_lease(120)
        got = decode_lease(encode_lease(lease, T0), T0 - SKEW)
        self.assertAlmostEqual(got.expiry, lease.expiry - SKEW, places=6)
        self.assertAlmostEqual(got.start, lease.start - SKEW, places=6)
        validate_lease(got, in_range, T0 - SKEW)


class ChunkTests(ChannelMixin, SynchronousTestCase):

    def many(self, count):
        leases = []
        for n in range(count):
            leases.append(Lease(
                "192.0.%d.%d" % (2 + n // 250, n % 250), bytes(16) if n % 3 else
                b"\x52\x54\x00" + n.to_bytes(3, "big"), b"\x01" + bytes(100) * (n % 2),
                "h" * (255 if n % 7 == 0 else n % 40), ACTIVE, T0 - n,
                T0 + 86400.0 * 365 + n / 7.0, "dhcp1.example.org",
                (int(T0 * 1000) << 16) + n))
        return leases

    def test_every_value_fits_for_20000_leases(self):
        """Chunks of 20,000 leases (some with maximal fields) each encode to an
        AmpList value of at most 65,535 bytes, and are well filled."""
        leases = self.many(20000)
        chunks = list(commands.chunk_leases(encode_lease(l, T0) for l in leases))
        self.assertEqual(sum(len(c) for c in chunks), 20000)
        for seq, chunk in enumerate(chunks):
            box = DatabaseChunk.makeArguments(
                {"leases": chunk, "seq": seq, "last": seq == len(chunks) - 1,
                 "hlc": 1, "now": T0}, None)
            box.serialize()  # raises TooLong past 65,535 bytes
            self.assertLessEqual(len(box[b"leases"]), commands.MAX_VALUE_BYTES)
            self.assertEqual(len(box[b"leases"]),
                             sum(commands.lease_wire_size(f) for f in chunk))
            if seq < len(chunks) - 1:
                self.assertGreater(len(box[b"leases"]),
                                   commands.MAX_VALUE_BYTES - 1000)

    def test_stream_database_over_tls(self):
        """The dialler's whole database (several chunks) streams to the
        listener over mutual TLS on connect and arrives whole; the exchange
        completes on both ends."""
        server, client = self.pair(initiator=True)
        leases = [l for l in self.many(20000) if in_range(l.ip)]
        leases += [a_lease(n, hostname="h" * 255, client_id=bytes(255), version=n,
                           start=T0 - 10 * n) for n in range(100, 251) if n % 7]
        for lease in leases:
            client.host.table.put(lease)
        chunks = list(commands.chunk_leases(encode_lease(l, T0) for l in
                                            client.host.snapshot()))
        self.assertGreater(len(chunks), 1)
        self.pump.flush()
        want = sorted(client.host.table, key=lambda l: l.ip)
        self.assertEqual(received(server), want)
        self.assertEqual(sorted(server.host.store.leases.values(),
                                key=lambda l: l.ip), want)
        self.assertEqual(client._chunks_sent, len(chunks) + 1)  # + the empty last
        self.assertEqual(server._chunks_received, len(chunks) + 1)
        self.assertEqual((server.host.synced, client.host.synced),
                         ({"dhcp2"}, {"dhcp1"}))
        self.finish(server, client)

    def test_oversized_lease_refused(self):
        """Past the field bounds, encoding refuses (no struct.error on the
        wire); a record larger than a chunk is refused by the chunker."""
        e = self.assertRaises(InvalidLease, encode_lease,
                              a_lease(100, hostname="x" * 70000), T0)
        self.assertIn("cannot cross the wire: hostname is 70000 bytes", str(e))
        fields = encode_lease(a_lease(100, hostname="x" * 200), T0)
        self.assertRaises(ValueError, list,
                          commands.chunk_leases([fields], max_bytes=100))

    def test_the_decoder_is_total(self):
        """Any bytes a peer sends decode to records or raise InvalidLease,
        nothing else: every truncation of a real value, and random values
        (seeded, so the run is the same every time)."""
        import random
        arg = commands.LeaseRecords()
        wire = arg.toString([encode_lease(a_lease(n, client_id=bytes(300)), T0)
                             for n in (100, 101)])
        rnd = random.Random(10)
        samples = [wire[:i] for i in range(len(wire))]
        samples += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(200)))
                    for _ in range(500)]
        samples += [wire[:i] + bytes([rnd.randrange(256)]) + wire[i + 1:]
                    for i in rnd.sample(range(len(wire)), 100)]
        for data in samples:
            try:
                records = arg.fromString(data)
            except InvalidLease:
                continue
            for fields in records:
                lease = commands.decode_lease(fields, T0)
                try:
                    validate_lease(lease, in_range, T0)
                except InvalidLease:
                    pass
        self.assertEqual(len(arg.fromString(wire)), 2)

    def test_longest_fields_cross_the_wire(self):
        """Every field at its bound (a 1024-byte client id: several option-61
        parts, RFC 3396) encodes and decodes to the same lease."""
        from dhcpfo.leases import lease as L
        lease = a_lease(100, hwaddr=b"\x01" * L.MAX_HWADDR,
                        client_id=b"\x02" * L.MAX_CLIENT_ID,
                        hostname="é" * (L.MAX_HOSTNAME // 2),
                        owner="o" * L.MAX_OWNER)
        arg = commands.LeaseRecords()
        wire = arg.toString([encode_lease(lease, T0)])
        [back] = arg.fromString(wire)
        self.assertEqual(commands.decode_lease(back, T0), lease)


class ValidationTests(SynchronousTestCase):

    def assertInvalid(self, lease, part, now=T0):
        e = self.assertRaises(InvalidLease, validate_lease, lease, in_range, now)
        self.assertIn(part, str(e))
        return e

    def test_valid(self):
        validate_lease(a_lease(100), in_range, T0)
        validate_lease(a_lease(250, expiry=NEVER, state=BACKUP, hwaddr=b"",
                               client_id=b""), in_range, T0)

    def test_outside_ranges(self):
        e = self.assertInvalid(a_lease(99), "192.0.2.99 is outside our ranges")
        self.assertIn("'192.0.2.99'", str(e))

    def test_not_an_address(self):
        for ip in ("192.0.2.300", "192.0.2.0100", "2001:db8::1", "", "host"):
            self.assertInvalid(a_lease(100, ip=ip), "not an IPv4 address")

    def test_unknown_state(self):
        self.assertInvalid(a_lease(100, state="stolen"), "unknown state 'stolen'")

    def test_absurd_times(self):
        self.assertInvalid(a_lease(100, expiry=T0 + 11 * 365 * 86400.0),
                           "more than 10 years")
        self.assertInvalid(a_lease(100, expiry=math.nan), "not a time")
        self.assertInvalid(a_lease(100, start=math.inf), "not a time")
        self.assertInvalid(a_lease(100, start=-5.0), "not a time")
        self.assertInvalid(a_lease(100, start=T0 + 3600.0), "in the future")
        self.assertInvalid(a_lease(100, expiry=-math.inf), "not a time")

    def test_over_long_strings(self):
        self.assertInvalid(a_lease(100, hostname="h" * 256), "hostname is 256 bytes")
        self.assertInvalid(a_lease(100, hostname="é" * 128), "hostname is 256 bytes")
        self.assertInvalid(a_lease(100, hwaddr=bytes(17)), "hwaddr is 17 bytes")
        self.assertInvalid(a_lease(100, client_id=bytes(1025)), "client_id is 1025")
        validate_lease(a_lease(100, client_id=bytes(1024)), in_range, T0)
        self.assertInvalid(a_lease(100, owner="o" * 254), "owner is 254 bytes")
        self.assertInvalid(a_lease(100, hostname=b"bytes"), "hostname is bytes")

    def test_versions(self):
        self.assertInvalid(a_lease(100, version=-1), "out of range")
        self.assertInvalid(a_lease(100, version=1 << 64), "out of range")
        self.assertInvalid(a_lease(100, version=1.5), "not an integer")
        ahead = int((T0 + 2 * 86400) * 1000) << 16
        self.assertInvalid(a_lease(100, version=ahead), "ahead of our clock")
        ten_minutes = int((T0 + SKEW) * 1000) << 16
        validate_lease(a_lease(100, version=ten_minutes), in_range, T0)

    def test_pool_difference(self):
        self.assertIsNone(commands.pool_difference("x", ["a  b", "c"],
                                                   "y", ["c", "a b"]))
        self.assertEqual(commands.pool_difference("x", ["a", "c"], "y", ["c"]),
                         "pool configurations differ: x has a; y has nothing else")
        self.assertEqual(commands.pool_digest(["a  b", "c"]),
                         commands.pool_digest(["c", "a b"]))
        self.assertNotEqual(commands.pool_digest(["a"]), commands.pool_digest(["b"]))

    def test_pool_digest_matches_options(self):
        """Hello's digest of the description lines is the --failover digest."""
        from dhcpfo.config import DhcpRange
        from dhcpfo.failover import options
        ranges = [DhcpRange(0xC0000264, 0xC00002C8, 0xFFFFFF00, 3600, None),
                  DhcpRange(0xC6336401, 0xC6336410, None, 600, None, True)]
        lines = options.pool_description(ranges).splitlines()
        self.assertEqual(commands.pool_digest(lines), options.pool_digest(ranges))
        self.assertEqual(commands.pool_digest(lines[::-1]),
                         options.pool_digest(ranges))


class LoadIdentityTests(SynchronousTestCase):
    """--failover-cert/--failover-key/--failover-ca problems name the file and
    the fix."""

    def setUp(self):
        self.lab = certs.make_certs(self.mktemp(), ["dhcp1", "dhcp2"])
        self.other = certs.make_certs(self.mktemp(), ["dhcp1"])
        self.cert, self.key = self.lab.peers["dhcp1"]

    def assertConfigError(self, *parts, cert=None, key=None, ca=None, name=None,
                          now=None):
        e = self.assertRaises(tls.TLSConfigError, tls.load_identity,
                              cert or self.cert, key or self.key,
                              ca or self.lab.ca_cert, name=name, now=now)
        for part in parts:
            self.assertIn(part, str(e))
        return e

    def write(self, data, mode=0o600):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def test_loads(self):
        identity = tls.load_identity(self.cert, self.key, self.lab.ca_cert,
                                     name="DHCP1")
        self.assertEqual(identity.name, "dhcp1")
        self.assertEqual(identity.chain, [])
        self.assertEqual(len(identity.authorities), 1)

    def test_combined_file(self):
        both = self.write(read(self.cert) + read(self.key))
        tls.load_identity(both, both, self.lab.ca_cert)

    def test_missing(self):
        missing = os.path.join(self.mktemp(), "nope.pem")
        self.assertConfigError("--failover-cert", missing, "does not exist",
                               "make-certs", cert=missing)
        self.assertConfigError("--failover-key", missing, key=missing)
        self.assertConfigError("--failover-ca", missing, ca=missing)

    def test_directory(self):
        self.assertConfigError("--failover-ca", "is a directory",
                               ca=os.path.dirname(self.cert))

    def test_unreadable(self):
        if os.geteuid() == 0:
            raise self.skipTest("root reads every file")
        locked = self.write(read(self.key), 0)
        self.assertConfigError("--failover-key", locked, "permission denied",
                               key=locked)

    def test_not_pem(self):
        junk = self.write(b"hello\n")
        self.assertConfigError("--failover-cert", junk, "no PEM certificate",
                               cert=junk)
        self.assertConfigError("--failover-key", junk, "no PEM private key", key=junk)
        self.assertConfigError("--failover-key", "no PEM private key", key=self.cert)

    def test_key_mismatch(self):
        self.assertConfigError("does not belong to the certificate", self.cert,
                               self.lab.peers["dhcp2"][1],
                               key=self.lab.peers["dhcp2"][1])

    def test_encrypted_key(self):
        key = serialization.load_pem_private_key(read(self.key), None)
        locked = self.write(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")))
        self.assertConfigError("passphrase", "openssl pkey", key=locked)

    def test_other_ca(self):
        self.assertConfigError("not signed by the CA", self.other.ca_cert,
                               ca=self.other.ca_cert)

    def test_ca_is_a_peer_certificate(self):
        self.assertConfigError("--failover-ca", "not a CA", ca=self.cert)

    def test_wrong_name(self):
        self.assertConfigError("is for dhcp1", "--failover-name dhcp2", name="dhcp2")

    def test_expired(self):
        ca_cert, ca_key = certs._load_ca(self.lab.ca_cert, self.lab.ca_key)
        old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
        cert, key = certs.issue_peer(ca_cert, ca_key, "dhcp1", days=30, now=old)
        cert_path = self.write(cert.public_bytes(serialization.Encoding.PEM), 0o644)
        key_path = self.write(certs._key_pem(key))
        self.assertConfigError("expired on 2020-01-31", cert=cert_path, key=key_path)
        self.assertConfigError("not valid before", cert=cert_path, key=key_path,
                               now=old.timestamp() - 86400 * 2)

    def test_missing_client_auth(self):
        ca_cert, ca_key = certs._load_ca(self.lab.ca_cert, self.lab.ca_key)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                            "dhcp1")]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_path = self.write(cert.public_bytes(serialization.Encoding.PEM), 0o644)
        key_path = self.write(certs._key_pem(key))
        e = self.assertConfigError("lacks the clientAuth", cert=cert_path,
                                   key=key_path)
        self.assertNotIn("serverAuth and clientAuth extended", str(e))

    def test_cn_fallback(self):
        """Without a subjectAltName the commonName is the certificate's name."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old-Peer")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(1)
                .not_valid_before(now).not_valid_after(now)
                .sign(key, hashes.SHA256()))
        self.assertEqual(tls.certificate_names(cert), ["old-peer"])


class MakeCertsTests(SynchronousTestCase):

    def test_files(self):
        directory = self.mktemp()
        files = certs.make_certs(directory, ["dhcp1", "Dhcp2.Example.org"])
        self.assertTrue(files.ca_created)
        self.assertEqual(list(files.peers), ["dhcp1", "dhcp2.example.org"])
        self.assertEqual(sorted(os.listdir(directory)),
                         ["ca.key", "ca.pem", "dhcp1.key", "dhcp1.pem",
                          "dhcp2.example.org.key", "dhcp2.example.org.pem"])
        for path in (files.ca_key, files.peers["dhcp1"][1]):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(files.ca_cert).st_mode), 0o644)
        ca = x509.load_pem_x509_certificate(read(files.ca_cert))
        cert = x509.load_pem_x509_certificate(read(files.peers["dhcp1"][0]))
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertEqual(san.value.get_values_for_type(x509.DNSName), ["dhcp1"])
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(set(eku), {ExtendedKeyUsageOID.SERVER_AUTH,
                                    ExtendedKeyUsageOID.CLIENT_AUTH})
        days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
        self.assertEqual(days, 825)  # 825 days and the hour of backdating
        for name, (cert_path, key_path) in files.peers.items():
            tls.load_identity(cert_path, key_path, files.ca_cert, name=name)

    def test_reuse_ca_and_refuse_overwrite(self):
        directory = self.mktemp()
        first = certs.make_certs(directory, ["dhcp1"])
        ca = read(first.ca_cert)
        second = certs.make_certs(directory, ["dhcp2"])
        self.assertFalse(second.ca_created)
        self.assertEqual(read(second.ca_cert), ca)
        tls.load_identity(*second.peers["dhcp2"], second.ca_cert)
        e = self.assertRaises(certs.CertError, certs.make_certs, directory,
                              ["dhcp3", "dhcp1"])
        self.assertIn("dhcp1.pem already exists", str(e))
        self.assertFalse(os.path.exists(os.path.join(directory, "dhcp3.pem")))
        old = read(first.peers["dhcp1"][0])
        certs.make_certs(directory, ["dhcp1"], overwrite=True)
        self.assertNotEqual(read(first.peers["dhcp1"][0]), old)

    def test_half_a_ca(self):
        directory = self.mktemp()
        files = certs.make_certs(directory, ["dhcp1"])
        os.unlink(files.ca_key)
        e = self.assertRaises(certs.CertError, certs.make_certs, directory, ["dhcp2"])
        self.assertIn("ca.key does not", str(e))

    def test_bad_names(self):
        for names, part in ((["dhcp_1"], "not a valid peer name"),
                            (["-x"], "not a valid peer name"),
                            (["192.0.2.1"], "looks like an IP address"),
                            (["ca"], "cannot be a peer name"),
                            (["a", "A"], "given twice"),
                            ([], "at least one")):
            e = self.assertRaises(certs.CertError, certs.make_certs, self.mktemp(),
                                  names)
            self.assertIn(part, str(e))

    def test_main(self):
        import argparse
        import io
        parser = certs.add_make_certs_arguments(argparse.ArgumentParser())
        directory = self.mktemp()
        out, err = io.StringIO(), io.StringIO()
        args = parser.parse_args([directory, "dhcp1", "dhcp2", "--days", "30"])
        self.assertEqual(certs.main_make_certs(args, out, err), 0)
        self.assertIn("--failover-name dhcp2 --failover-cert", out.getvalue())
        self.assertEqual(certs.main_make_certs(args, out, err), 2)
        self.assertIn("already exists", err.getvalue())


class LeaseRecordsTests(SynchronousTestCase):
    """The packed lease encoding used by LeaseBatch and DatabaseChunk."""

    def test_round_trip(self):
        lease = a_lease(7, hostname="h\u00e9", expiry=NEVER)
        fields = encode_lease(lease, T0)
        wire = commands.LeaseRecords().toString([fields, fields])
        self.assertEqual(len(wire), 2 * commands.lease_wire_size(fields))
        back = commands.LeaseRecords().fromString(wire)
        self.assertEqual([decode_lease(f, T0) for f in back], [lease, lease])

    def test_malformed_is_invalid_lease(self):
        wire = commands.LeaseRecords().toString([encode_lease(a_lease(1), T0)])
        for broken in (wire[:-1], wire[:10], wire + b"\x00"):
            self.assertRaises(commands.InvalidLease,
                              commands.LeaseRecords().fromString, broken)
