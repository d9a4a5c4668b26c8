"""The AMP protocol between two authenticated failover peers.

One connection is one *link*: after TLS has proved the peer's name
(:class:`dhcpfo.failover.tls.PeerAuthenticationMixin`), the connecting side
sends ``Hello``; both sides then register the link with the coordinator,
stream their whole lease database to each other (``DatabaseChunk``), and from
then on replicate every change (``LeaseBatch``, group-committed: one call in
flight per link, the next carries everything queued meanwhile) and exchange
heartbeats.  Silence longer than ``dead_after`` drops the link.
"""

from twisted.internet import defer, task
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from dhcpfo.failover import commands as C
from dhcpfo.failover.tls import PeerAuthenticationMixin, PeerGate


class PeerProtocol(PeerAuthenticationMixin, amp.AMP):
    _log = Logger()

    def __init__(self, node, gate, initiator):
        super().__init__()
        self.node = node            # the FailoverNode: coordinator, settings, ...
        self.gate = gate
        self.initiator = initiator
        self.name = None            # the peer's name once Hello is done
        self.role = None
        self.priority = 0
        self.peer_state = None
        self.registered = False
        self._proved = None
        self._queue = []
        self._waiters = []
        self._inflight = 0
        self._sent_all = False
        self._received_all = False
        self._heartbeat = None
        self._stall = None          # fires if the exchange stops moving
        self._chunks_sent = 0
        self._chunks_received = 0

    # -- authentication and hello -------------------------------------------

    def peerAuthenticated(self, name):
        self._proved = name
        if self.initiator:
            node = self.node
            d = self.callRemote(
                C.Hello, version=C.PROTOCOL_VERSION, name=node.settings.name,
                role=node.settings.role, priority=node.settings.priority,
                pool_digest=node.pool_digest, pools=node.pool_lines,
                hlc=node.server.hlc.now())
            d.addCallbacks(self._helloAnswered, self._helloRefused)

    def _claimed(self, name):
        """The name a peer claims must be the one its certificate proved."""
        if self._proved is not None:
            return name == self._proved
        return name in self.node.config.peers  # --failover-insecure

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
        node = self.node
        if version != C.PROTOCOL_VERSION:
            raise C.VersionMismatch("we speak failover protocol %d, the peer %d"
                                    % (C.PROTOCOL_VERSION, version))
        if not self._claimed(name):
            raise C.NotAllowed("the peer says it is %r but its certificate proves "
                               "%r" % (name, self._proved))
        if pool_digest != node.pool_digest:
            ours, theirs = set(node.pool_lines), set(pools or [])
            raise C.PoolMismatch(
                "pool configurations differ: %s has %s; %s has %s" % (
                    node.settings.name, "; ".join(sorted(ours - theirs)) or "nothing else",
                    name, "; ".join(sorted(theirs - ours)) or "nothing else"))
        if role not in C.ROLES:
            raise C.NotAllowed("unknown role %r" % role)
        node.server.hlc.observe(hlc)
        self._register(name, role, priority)
        return {"version": C.PROTOCOL_VERSION, "name": node.settings.name,
                "role": node.settings.role, "state": node.coordinator.state,
                "hlc": node.server.hlc.now()}

    def _helloAnswered(self, answer):
        if not self._claimed(answer["name"]):
            self._log.warn("failover peer answered as {name}, not as the {proved} "
                           "its certificate proves; dropped", name=answer["name"],
                           proved=self._proved)
            self.transport.abortConnection()
            return
        self.node.server.hlc.observe(answer["hlc"])
        self.peer_state = answer["state"]
        self.factory.refused = False
        self._register(answer["name"], answer["role"], 0)

    def _helloRefused(self, failure):
        self._log.warn("failover peer {peer} refused us: {why} (retrying every "
                       "{delay:.0f}s)", peer=self._proved, why=failure.getErrorMessage(),
                       delay=REFUSED_RETRY)
        self.factory.refused = True
        self.transport.abortConnection()

    def _register(self, name, role, priority):
        node = self.node
        self.name, self.role, self.priority = name, role, priority
        existing = node.coordinator.links.get(name)
        if existing is not None and existing is not self:
            # Two connections between one pair (both dialled): keep the one
            # dialled by the smaller name, on both sides alike.
            mine_wins = self.initiator == (node.settings.name < name)
            if not mine_wins:
                self.transport.abortConnection()
                return
            existing.transport.abortConnection()
            node.coordinator.linkDown(existing, "replaced by a new connection")
        self.registered = True
        node.coordinator.linkUp(self)
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = node.clock
        self._heartbeat.start(node.settings.heartbeat, now=False)
        # Not before our Hello answer is on the wire: the peer drops anything
        # that arrives before it has registered us.
        node.clock.callLater(0, self._sendDatabase)
        self._progress()

    def _progress(self):
        """The exchange moved; a stall of EXCHANGE_STALL seconds drops the
        link, and the dialling side reconnects and starts over."""
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        if not (self._sent_all and self._received_all):
            self._stall = self.node.clock.callLater(EXCHANGE_STALL, self._stalled)

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
        node = self.node
        leases = list(node.table)
        seq = 0
        try:
            now = node.clock.seconds()
            for chunk in C.chunk_leases(C.encode_lease(l, now) for l in leases):
                yield self.callRemote(C.DatabaseChunk, leases=chunk, seq=seq,
                                      last=False, hlc=node.server.hlc.now(), now=now)
                seq += 1
                self._chunks_sent = seq
                self._progress()
            yield self.callRemote(C.DatabaseChunk, leases=[], seq=seq, last=True,
                                  hlc=node.server.hlc.now(), now=node.clock.seconds())
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

    def _maybeSynced(self):
        if self._sent_all and self._received_all:
            self.node.coordinator.linkSynced(self)

    def _incoming(self, fields_list, strict):
        node = self.node
        now = node.clock.seconds()
        leases = []
        for fields in fields_list:
            lease = C.decode_lease(fields, now)
            try:
                C.validate_lease(lease, node.in_ranges, now)
            except C.InvalidLease as e:
                if strict:
                    raise
                node.stats["invalid_records"] += 1
                self._log.warn("ignored a record from {peer}: {why}", peer=self.name,
                               why=e)
                continue
            leases.append(lease)
        return leases

    def _mustBeRegistered(self):
        if not self.registered:
            raise C.NotAllowed("Hello first")
        self.node.coordinator.heard(self.name)

    @C.DatabaseChunk.responder
    def databaseChunk(self, leases, seq, last, hlc, now):
        self._mustBeRegistered()
        self.node.server.hlc.observe(hlc)
        records = self._incoming(leases, strict=False)
        d = self.node.coordinator.received(records, self)

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
        d = defer.Deferred()
        self._queue.extend(leases)
        self._waiters.append(d)
        if not self._inflight:
            self._flush()
        return d

    def pending(self):
        return len(self._queue) + self._inflight

    def _flush(self):
        batch, waiters = self._queue, self._waiters
        self._queue, self._waiters = [], []
        self._inflight = len(batch)
        node = self.node
        now = node.clock.seconds()
        hlc = node.server.hlc.now()
        calls = [self.callRemote(C.LeaseBatch, leases=chunk, hlc=hlc, now=now)
                 for chunk in C.chunk_leases(C.encode_lease(l, now) for l in batch)]
        d = defer.gatherResults(calls, consumeErrors=True)
        d.addBoth(self._flushed, waiters)

    def _flushed(self, result, waiters):
        self._inflight = 0
        failed = isinstance(result, Failure)
        for d in waiters:
            if failed:
                d.errback(result)
            else:
                d.callback(None)
        if self._queue:
            if self.registered and self.transport is not None:
                self._flush()
        return None

    @C.LeaseBatch.responder
    def leaseBatch(self, leases, hlc, now):
        self._mustBeRegistered()
        self.node.server.hlc.observe(hlc)
        records = self._incoming(leases, strict=True)
        d = self.node.coordinator.received(records, self)
        return d.addCallback(lambda _: {"acked": len(records)})

    # -- liveness ----------------------------------------------------------------

    def _beat(self):
        node = self.node
        silent = node.clock.seconds() - node.coordinator.last_heard.get(self.name, 0)
        if silent > node.settings.dead_after:
            self._log.warn("failover peer {peer} silent for {silent:.1f}s; "
                           "dropping the link", peer=self.name, silent=silent)
            self.transport.abortConnection()
            return
        d = self.callRemote(C.Heartbeat, state=node.coordinator.state,
                            hlc=node.server.hlc.now())
        d.addCallbacks(self._beatAnswered, lambda f: None)

    def stateChanged(self, state):
        """Tell the peer at once rather than at the next heartbeat."""
        if self.registered:
            self.callRemote(C.Heartbeat, state=state,
                            hlc=self.node.server.hlc.now()).addErrback(lambda f: None)

    def _beatAnswered(self, answer):
        self.node.coordinator.heard(self.name)
        self.peer_state = answer["state"]

    @C.Heartbeat.responder
    def heartbeat(self, state, hlc):
        self._mustBeRegistered()
        self.peer_state = state
        self.node.server.hlc.observe(hlc)
        return {"state": self.node.coordinator.state,
                "hlc": self.node.server.hlc.now()}

    def connectionLost(self, reason):
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        super().connectionLost(reason)
        if self.registered:
            self.registered = False
            self.node.coordinator.linkDown(self, reason.getErrorMessage())


REFUSED_RETRY = 30.0  # seconds between tries once a peer refused our Hello
EXCHANGE_STALL = 10.0  # seconds without progress before an exchange restarts


class PeerFactory(Factory):
    """Builds peer protocols; ``allowed`` is who may prove their name here."""

    noisy = False

    def __init__(self, node, allowed, initiator):
        self.node = node
        self.allowed = allowed
        self.initiator = initiator
        self.refused = False  # our last Hello was refused: retry slowly

    def retryPolicy(self, base):
        """A ClientService retry policy: ``base``, or slow after a refusal
        (a wrong pool or certificate is not fixed by hammering the peer)."""
        def policy(attempt):
            return REFUSED_RETRY if self.refused else base(attempt)
        return policy

    def buildProtocol(self, addr):
        gate = PeerGate(self.allowed, insecure=self.node.config.insecure,
                        clock=self.node.clock)
        proto = PeerProtocol(self.node, gate, self.initiator)
        proto.factory = self
        return proto
