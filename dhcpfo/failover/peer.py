"""The AMP protocol between two authenticated failover peers.

One connection is one *link*: after TLS has proved the peer's name
(:class:`dhcpfo.failover.tls.PeerAuthenticationMixin`), the connecting side
sends ``Hello`` and the other answers, each with its name, role and priority;
both then offer the link to their coordinator (which may refuse a duplicate,
see :mod:`dhcpfo.failover.election`), stream their whole lease database to
each other (``DatabaseChunk``), and from then on replicate every change
(``LeaseBatch``, group-committed: one call in flight per link, the next
carries everything queued meanwhile), exchange heartbeats, and announce
state or priority changes at once (``StateAnnounce``).  Silence longer than
``dead_after`` drops the link.

The protocol is thin: it decodes, validates and calls its host through
:class:`dhcpfo.failover.seam.IPeerHost`, nothing else.
"""

import itertools

from twisted.internet import defer, task
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from zope.interface import implementer

from dhcpfo.failover import commands as C
from dhcpfo.failover.seam import ILink
from dhcpfo.failover.tls import PeerAuthenticationMixin, PeerGate
from dhcpfo.leases.groupcommit import GroupCommit

_serials = itertools.count(1)


@implementer(ILink)
class PeerProtocol(PeerAuthenticationMixin, amp.AMP):
    """One peer connection: decodes and validates, then asks ``host`` (an
    :class:`~dhcpfo.failover.seam.IPeerHost`, the coordinator)."""

    _log = Logger()

    def __init__(self, host, gate, initiator, allowed=()):
        super().__init__()
        self.host = host
        self.gate = gate
        self.initiator = self.dialled_by_me = initiator
        self.allowed = list(allowed)  # names a peer may claim (insecure mode)
        self.serial = next(_serials)
        self.name = None            # the peer's name once Hello is done
        self.role = None
        self.priority = 0
        self.peer_state = None
        self.registered = False
        self._proved = None
        self._replication = GroupCommit(self._sendBatch)
        self._sent_all = False
        self._received_all = False
        self._heartbeat = None
        self._stall = None          # fires if the exchange stops moving
        self._chunks_sent = 0
        self._chunks_received = 0
        self.unsendable = 0         # records refused before the wire

    # -- authentication and hello -------------------------------------------

    def peerAuthenticated(self, name):
        self._proved = name
        if self.initiator:
            host = self.host
            me = host.settings
            d = self.callRemote(
                C.Hello, version=C.PROTOCOL_VERSION, name=me.name, role=me.role,
                priority=me.priority, pool_digest=host.pool_digest,
                pools=list(me.pool_lines), hlc=host.stamp())
            d.addCallbacks(self._helloAnswered, self._helloRefused)

    def _claimed(self, name):
        """The name a peer claims must be the one its certificate proved."""
        if self._proved is not None:
            return name == self._proved
        return name in self.allowed  # --failover-insecure

    @C.Hello.responder
    def hello(self, version, name, role, priority, pool_digest, hlc, pools=None):
        try:
            return self._hello(version, name, role, priority, pool_digest, hlc,
                               pools)
        except (C.VersionMismatch, C.NotAllowed, C.PoolMismatch) as e:
            self._log.warn("refused failover peer {peer}: {why}",
                           peer=self._proved or name, why=e)
            raise

    def _hello(self, version, name, role, priority, pool_digest, hlc, pools):
        host = self.host
        me = host.settings
        if version != C.PROTOCOL_VERSION:
            raise C.VersionMismatch("we speak failover protocol %d, the peer %d"
                                    % (C.PROTOCOL_VERSION, version))
        if not self._claimed(name):
            raise C.NotAllowed("the peer says it is %r but its certificate proves "
                               "%r" % (name, self._proved))
        if pool_digest != host.pool_digest:
            raise C.PoolMismatch(
                C.pool_difference(me.name, me.pool_lines, name, pools or [])
                or "pool digests differ, and the peer did not say how")
        if role not in C.ROLES:
            raise C.NotAllowed("unknown role %r" % role)
        host.observe(hlc, name)
        if not self._register(name, role, priority):
            raise C.Duplicate("%s keeps another connection with %s"
                              % (me.name, name))
        return {"version": C.PROTOCOL_VERSION, "name": me.name, "role": me.role,
                "priority": me.priority, "state": host.state,
                "hlc": host.stamp()}

    def _helloAnswered(self, answer):
        if not self._claimed(answer["name"]) or answer["role"] not in C.ROLES:
            self._log.warn("failover peer answered as {name} ({role}), not as the "
                           "{proved} its certificate proves; dropped",
                           name=answer["name"], role=answer["role"],
                           proved=self._proved)
            self.transport.abortConnection()
            return
        self.host.observe(answer["hlc"], answer["name"])
        self.peer_state = answer["state"]
        self.factory.refused = False
        if not self._register(answer["name"], answer["role"], answer["priority"]):
            self._log.info("keeping the other connection with {peer}; this one "
                           "is closed", peer=answer["name"])
            self.transport.abortConnection()

    def _helloRefused(self, failure):
        self.factory.refused = True
        if failure.check(C.Duplicate):
            self._log.info("{why}: this connection is closed (retrying every "
                           "{delay:.0f}s)", why=failure.getErrorMessage(),
                           delay=REFUSED_RETRY)
            self.transport.abortConnection()
            return
        self._log.warn("failover peer {peer} refused us: {why} (retrying every "
                       "{delay:.0f}s)", peer=self._proved, why=failure.getErrorMessage(),
                       delay=REFUSED_RETRY)
        self.transport.abortConnection()

    def _register(self, name, role, priority):
        self.name, self.role, self.priority = name, role, priority
        """Offer this link to the host; False if it keeps another one."""
        host = self.host
        if not host.linkUp(self):
            return False
        self.registered = True
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = host.clock
        self._heartbeat.start(host.settings.heartbeat, now=False)
        # Not before our Hello answer is on the wire: the peer drops anything
        # that arrives before it has registered us.
        host.clock.callLater(0, self._sendDatabase)
        self._progress()
        return True

    def drop(self, why):
        self._log.info("closing the connection to {peer}: {why}", peer=self.name,
                       why=why)
        self.registered = False
        if self.transport is not None:
            self.transport.abortConnection()

    def _progress(self):
        """The exchange moved; a stall of EXCHANGE_STALL seconds drops the
        link, and the dialling side reconnects and starts over."""
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        if not (self._sent_all and self._received_all):
            self._stall = self.host.clock.callLater(EXCHANGE_STALL, self._stalled)

    def _stalled(self):
        self._log.warn("database exchange with {peer} stalled ({sent} chunks sent, "
                       "all sent: {all_sent}; {received} received, all received: "
                       "{all_received}); dropping the link to start over",
                       peer=self.name, sent=self._chunks_sent,
                       all_sent=self._sent_all, received=self._chunks_received,
                       all_received=self._received_all)
        self.transport.abortConnection()

    # -- database exchange --------------------------------------------------

    @defer.inlineCallbacks
    def _sendDatabase(self):
        host = self.host
        leases = host.snapshot()
        seq = 0
        try:
            now = host.clock.seconds()
            for chunk in C.chunk_leases(self._sendable(leases, now)):
                yield self.callRemote(C.DatabaseChunk, leases=chunk, seq=seq,
                                      last=False, hlc=host.stamp(), now=now)
                seq += 1
                self._chunks_sent = seq
                self._progress()
            yield self.callRemote(C.DatabaseChunk, leases=[], seq=seq, last=True,
                                  hlc=host.stamp(), now=host.clock.seconds())
        except Exception as e:
            self._log.warn("database exchange with {peer} failed: {why}",
                           peer=self.name, why=e)
            return
        self._sent_all = True
        self._chunks_sent = seq + 1
        self._log.info("sent {count} lease records to {peer}", count=len(leases),
                       peer=self.name)
        self._progress()
        self._maybeSynced()

    def _sendable(self, leases, now):
        """Encoded ``leases``, skipping (and logging once per exchange) any
        that cannot cross the wire: one such record must not fail the whole
        exchange, again at every reconnect."""
        skipped, first = 0, None
        for lease in leases:
            problem = C.wire_problem(lease)
            if problem is not None:
                skipped += 1
                first = first or "%s: %s" % (lease.ip, problem)
                continue
            yield C.encode_lease(lease, now)
        if skipped:
            self.unsendable += skipped
            self._log.warn("database exchange with {peer}: skipped {count} "
                           "records that cannot cross the wire (first: {first})",
                           peer=self.name, count=skipped, first=first)

    def _maybeSynced(self):
        if self._sent_all and self._received_all:
            self.host.linkSynced(self)

    def _incoming(self, fields_list, strict):
        host = self.host
        now = host.clock.seconds()
        leases = []
        for fields in fields_list:
            lease = C.decode_lease(fields, now)
            try:
                host.check(lease, now)
            except C.InvalidLease as e:
                if strict:
                    raise
                host.rejected(self.name, e)
                continue
            leases.append(lease)
        return leases

    def _mustBeRegistered(self):
        if not self.registered:
            raise C.NotAllowed("Hello first")
        self.host.heard(self.name)

    @C.DatabaseChunk.responder
    def databaseChunk(self, leases, seq, last, hlc, now):
        self._mustBeRegistered()
        self.host.observe(hlc, self.name)
        records = self._incoming(leases, strict=False)
        d = self.host.received(records, self)

        def done(_):
            self._chunks_received += 1
            if last:
                self._received_all = True
                self._maybeSynced()
            self._progress()
            return {"acked": len(records)}
        return d.addCallback(done)

    # -- replication ---------------------------------------------------------

    def sendLeases(self, leases):
        """Replicate ``leases`` (group-committed: one LeaseBatch flush in
        flight, the next carries everything queued meanwhile); fires once
        the peer stored them, fails with the flush that carried them.

        A lease that cannot cross the wire fails its write at once with
        L{C.InvalidLease}, before any flush: it is never acknowledged."""
        for lease in leases:
            problem = C.wire_problem(lease)
            if problem is not None:
                self.unsendable += 1
                return defer.fail(C.InvalidLease("lease for %s: %s"
                                                 % (lease.ip, problem)))
        return self._replication.submit(leases)

    def pending(self):
        return self._replication.pending

    def _sendBatch(self, batch):
        if not self.registered:
            return defer.fail(ConnectionLost("the link to %s is down" % self.name))
        now = self.host.clock.seconds()
        hlc = self.host.stamp()
        calls = [self.callRemote(C.LeaseBatch, leases=chunk, hlc=hlc, now=now)
                 for chunk in C.chunk_leases(C.encode_lease(l, now) for l in batch)]
        return defer.gatherResults(calls, consumeErrors=True)

    @C.LeaseBatch.responder
    def leaseBatch(self, leases, hlc, now):
        self._mustBeRegistered()
        self.host.observe(hlc, self.name)
        records = self._incoming(leases, strict=True)
        d = self.host.received(records, self)
        return d.addCallback(lambda _: {"acked": len(records)})

    # -- liveness and announcements ------------------------------------------

    def _beat(self):
        host = self.host
        silent = host.silence(self.name)
        if silent > host.settings.dead_after:
            self._log.warn("failover peer {peer} silent for {silent:.1f}s; "
                           "dropping the link", peer=self.name, silent=silent)
            self.transport.abortConnection()
            return
        d = self.callRemote(C.Heartbeat, state=host.state, hlc=host.stamp())
        d.addCallbacks(self._beatAnswered, lambda f: None)

    def _beatAnswered(self, answer):
        self.host.heard(self.name)
        if answer.get("hlc") is not None:
            self.host.observe(answer["hlc"], self.name)
        self.peer_state = answer["state"]

    @C.Heartbeat.responder
    def heartbeat(self, state, hlc):
        self._mustBeRegistered()
        self.peer_state = state
        self.host.observe(hlc, self.name)
        return {"state": self.host.state, "hlc": self.host.stamp()}

    def announce(self, state, priority):
        """Tell the peer at once rather than at the next heartbeat."""
        if self.registered:
            self.callRemote(C.StateAnnounce, state=state, priority=priority,
                            hlc=self.host.stamp()).addErrback(lambda f: None)

    @C.StateAnnounce.responder
    def stateAnnounce(self, state, priority, hlc):
        self._mustBeRegistered()
        self.host.observe(hlc, self.name)
        self.peer_state, self.priority = state, priority
        self.host.peerChanged(self)
        return {}

    def connectionLost(self, reason):
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        super().connectionLost(reason)
        if self.registered:
            self.registered = False
            self.host.linkDown(self, reason.getErrorMessage())


REFUSED_RETRY = 30.0  # seconds between tries once a peer refused our Hello
EXCHANGE_STALL = 10.0  # seconds without progress before an exchange restarts


class PeerFactory(Factory):
    """Builds peer protocols for ``host`` (an IPeerHost); ``allowed`` is who
    may prove their name here (who may merely claim it, with ``insecure``)."""

    noisy = False

    def __init__(self, host, allowed, initiator, insecure=False):
        self.host = host
        self.allowed = list(allowed)
        self.initiator = initiator
        self.insecure = insecure
        self.refused = False  # our last Hello was refused: retry slowly

    def retryPolicy(self, base):
        """A ClientService retry policy: ``base``, or slow after a refusal
        (a wrong pool or certificate is not fixed by hammering the peer)."""
        def policy(attempt):
            return REFUSED_RETRY if self.refused else base(attempt)
        return policy

    def buildProtocol(self, addr):
        gate = PeerGate(self.allowed, insecure=self.insecure, clock=self.host.clock)
        proto = PeerProtocol(self.host, gate, self.initiator, self.allowed)
        proto.factory = self
        return proto
