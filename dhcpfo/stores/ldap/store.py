"""The LDAP lease store: its connection life as an automat machine.

::

    idle --open--> opening --opened--> connected --lost--> waiting
    opening --openFailed--> idle          (open() fails; writes issued meanwhile too)
    waiting --retryDue--> reconnecting --reconnected--> connected
    reconnecting --reconnectFailed--> waiting          (backoff grows)
    connected --close--> draining --drained--> unbinding --unbound--> closed
    draining --lost--> closed                          (queued writes fail)
    waiting --close--> closed                          (queued writes fail)
    opening, reconnecting --close--> abandoning --(attempt ends)--> closed
    idle --close--> closed

Writes are accepted from ``opening`` to ``reconnecting``; they wait in a
:class:`~dhcpfo.leases.groupcommit.GroupCommit` (bounded by ``maxqueue``)
while no connection is up, and the batch on the wire when a connection
breaks is sent again on the next one.  Reconnection backs off
exponentially (0.5 s doubling up to 30 s, plus up to 1 s of jitter).
``open()`` itself does not retry, so a server never starts on a partial
lease set.  All time comes from the reactor given to the constructor.
"""

from automat import MethodicalMachine
from ldaptor.protocols import pureldap
from twisted.application.internet import backoffPolicy
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from dhcpfo.interfaces import ILeaseStore
from dhcpfo.leases.groupcommit import GroupCommit
from dhcpfo.stores.ldap import connect, entry, options as _options
from dhcpfo.stores.ldap.errors import (LDAPStoreClosed, LDAPStoreError,
                                       LDAPStoreQueueFull)
from dhcpfo.stores.ldap.load import load
from dhcpfo.stores.ldap.pipeline import WritePipeline


@implementer(ILeaseStore)
class LDAPLeaseStore:
    """Leases as entries below ``base`` in the directory at ``url``."""

    durable = True
    batchLimit = 1000  # leases per batch (a single larger write is one batch)
    pageSize = 1000    # entries per page when loading
    _log = Logger()
    _machine = MethodicalMachine()

    def __init__(self, reactor, url, base, binddn=None, passwordfile=None,
                 starttls=False, cafile=None, maxqueue=100_000, timeout=30.0,
                 retryPolicy=None):
        self._reactor = reactor
        self.options = _options.parse(
            url, base, binddn=binddn, passwordfile=passwordfile, starttls=starttls,
            cafile=cafile, maxqueue=maxqueue, timeout=timeout)
        self.url, self.base = self.options.url, self.options.base
        self._retryPolicy = retryPolicy or backoffPolicy(
            initialDelay=0.5, maxDelay=30.0, factor=2.0)
        self._pipeline = WritePipeline(reactor, self.options, self._broken)
        # A batch's writers are fired together when its last entry is
        # acknowledged: batchLimit keeps overload from holding early ACKs.
        self._commits = GroupCommit(
            self._pipeline.flush, maxPending=self.options.maxqueue,
            maxBatch=self.batchLimit, perWrite=WritePipeline.refused)
        self._proto = None          # the bound connection writes go to
        self._abort = None          # gives up the connection attempt under way
        self._retry = None          # the delayed reconnection (state waiting)
        self._failures = 0          # attempts since the last success
        self._closeWaiters = []

    def __repr__(self):
        return "<LDAPLeaseStore %s %s>" % (self.url, self.base)

    @property
    def connected(self):
        return self._proto is not None

    @property
    def batches(self):
        return self._pipeline.batches

    @property
    def written(self):
        return self._pipeline.written

    def _endpoint(self):
        return connect.endpoint(self._reactor, self.options)

    # -- ILeaseStore ------------------------------------------------------------
    def open(self):
        [d] = self._openRequested()
        return d

    def write(self, leases):
        [d] = self._writeRequested(list(leases))
        return d

    def close(self):
        d = defer.Deferred()
        self._closeWaiters.append(d)
        self._closeRequested()
        return d

    # -- states -------------------------------------------------------------------
    @_machine.state(initial=True)
    def idle(self):
        "Not opened (or the last open failed): no writes."

    @_machine.state()
    def opening(self):
        "Connecting and loading every lease; writes queue."

    @_machine.state()
    def connected_(self):
        "A bound connection carries the writes."

    @_machine.state()
    def waiting(self):
        "The directory is unreachable; a reconnection is scheduled."

    @_machine.state()
    def reconnecting(self):
        "A reconnection attempt is under way; writes queue."

    @_machine.state()
    def draining(self):
        "Closing: the queued writes still go out; no new ones."

    @_machine.state()
    def unbinding(self):
        "Closing: unbound, waiting for the connection to end."

    @_machine.state()
    def abandoning(self):
        "Closing: a connection attempt is being given up."

    @_machine.state()
    def closed(self):
        "Closed for good."

    # -- inputs -------------------------------------------------------------------
    @_machine.input()
    def _openRequested(self):
        "open() was called."

    @_machine.input()
    def _writeRequested(self, leases):
        "write() was called."

    @_machine.input()
    def _closeRequested(self):
        "close() was called."

    @_machine.input()
    def _opened(self, proto):
        "The first connection is bound and every lease loaded."

    @_machine.input()
    def _openFailed(self, error):
        "The first connection or the load failed."

    @_machine.input()
    def _lost(self, proto, why):
        "The connection in use ended or had to be given up."

    @_machine.input()
    def _retryDue(self):
        "The backoff delay is over."

    @_machine.input()
    def _reconnected(self, proto):
        "A reconnection is bound."

    @_machine.input()
    def _reconnectFailed(self, error):
        "A reconnection attempt failed."

    @_machine.input()
    def _drained(self):
        "Every accepted write has settled."

    @_machine.input()
    def _unbound(self):
        "The connection ended after the unbind."

    # -- outputs: requests --------------------------------------------------------
    @_machine.output()
    def _startOpen(self):
        return self._openAndLoad()

    @_machine.output()
    def _alreadyOpen(self):
        return defer.fail(LDAPStoreError("%r is already open" % self))

    @_machine.output()
    def _refuseNotOpen(self):
        return defer.fail(LDAPStoreError("%r is not open" % self))

    @_machine.output()
    def _refuseClosed(self):
        return defer.fail(LDAPStoreClosed("%r is closed" % self))

    @_machine.output()
    def _submit(self, leases):
        for lease in leases:
            try:
                entry.values(lease)
            except Exception as e:
                return defer.fail(LDAPStoreError(
                    "lease %r cannot be stored: %s" % (lease, e)))
        waiting, limit = self._commits.pending, self.options.maxqueue
        if waiting + len(leases) > limit:
            return defer.fail(LDAPStoreQueueFull(
                "%s: %d leases are already waiting to be written (maxqueue=%d); "
                "%s" % (self.url, waiting, limit,
                        "the directory is unreachable" if self._proto is None
                        else "the directory is not keeping up")))
        return self._commits.submit(leases)

    # -- outputs: the connection ----------------------------------------------------
    @_machine.output()
    def _use(self, proto):
        self._proto = proto
        self._failures = 0
        proto.onLost = self._connectionLost
        self._pipeline.attach(proto)

    @_machine.output()
    def _announceReconnected(self):
        self._log.info("connected to {url}; writing {count} queued leases",
                       url=self.url, count=self._commits.pending)

    @_machine.output()
    def _detach(self, proto, why):
        self._proto = None
        self._pipeline.detach()
        if proto.connected:
            proto.transport.abortConnection()

    @_machine.output()
    def _announceLost(self, why):
        self._log.warn("lost the connection to {url}: {why}; {count} leases "
                       "queued", url=self.url, why=why, count=self._commits.pending)

    @_machine.output()
    def _scheduleRetry(self):
        delay = self._retryPolicy(self._failures)
        self._failures += 1
        self._retry = self._reactor.callLater(delay, self._retryDue)

    @_machine.output()
    def _announceRetry(self, error):
        self._log.error("{error}; retrying", error=error.getErrorMessage())

    @_machine.output()
    def _reconnect(self):
        self._retry = None
        attempt = connect.Attempt(self._reactor, self.options, self._endpoint())
        self._abort = attempt.abort
        d = attempt.start()

        def done(result, event):
            self._abort = None
            event(result)
        d.addCallbacks(done, done, callbackArgs=(self._reconnected,),
                       errbackArgs=(self._reconnectFailed,))

    @_machine.output()
    def _cancelRetry(self):
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    @_machine.output()
    def _abortAttempt(self):
        self._abort()     # the attempt then fails: openFailed/reconnectFailed

    @_machine.output()
    def _hangUp(self, proto):
        if proto.connected:
            proto.transport.abortConnection()
        return LDAPStoreClosed("%r was closed while opening" % self)

    # -- outputs: closing ------------------------------------------------------------
    @_machine.output()
    def _drain(self):
        self._commits.close().addCallback(lambda _: self._drained())

    @_machine.output()
    def _unbind(self):
        proto, self._proto = self._proto, None
        self._pipeline.detach()
        if proto is None or not proto.connected:
            return self._unbound()
        proto.onLost = lambda proto, reason: self._unbound()
        try:
            proto.send_noResponse(pureldap.LDAPUnbindRequest())
        except Exception:
            pass
        proto.transport.loseConnection()

    @_machine.output()
    def _failNotOpened(self, error):
        self._failWrites(LDAPStoreError("%r did not open: %s" % (self, error)))

    @_machine.output()
    def _failUnreachable(self):
        self._failWrites(LDAPStoreClosed(
            "%r closed while %s was unreachable; %d leases not written"
            % (self, self.url, self._commits.pending)))

    def _failWrites(self, error):
        # The batch held back first, then the queue: writers fire in order.
        self._pipeline.abandon(error)
        self._commits.failQueued(error)

    @_machine.output()
    def _closedNow(self):
        waiters, self._closeWaiters = self._closeWaiters, []
        for d in waiters:
            d.callback(None)

    # -- transitions -------------------------------------------------------------------
    for _s in (opening, connected_, waiting, reconnecting):
        _s.upon(_openRequested, enter=_s, outputs=[_alreadyOpen])
        _s.upon(_writeRequested, enter=_s, outputs=[_submit])
    for _s in (draining, unbinding, abandoning, closed):
        _s.upon(_openRequested, enter=_s, outputs=[_refuseClosed])
        _s.upon(_writeRequested, enter=_s, outputs=[_refuseClosed])
    for _s in (draining, unbinding, abandoning):
        _s.upon(_closeRequested, enter=_s, outputs=[])   # already closing
    del _s

    idle.upon(_openRequested, enter=opening, outputs=[_startOpen])
    idle.upon(_writeRequested, enter=idle, outputs=[_refuseNotOpen])
    idle.upon(_closeRequested, enter=closed, outputs=[_closedNow])

    opening.upon(_opened, enter=connected_, outputs=[_use])
    opening.upon(_openFailed, enter=idle, outputs=[_failNotOpened])
    opening.upon(_closeRequested, enter=abandoning, outputs=[_abortAttempt])

    connected_.upon(_lost, enter=waiting,
                    outputs=[_detach, _announceLost, _scheduleRetry])
    connected_.upon(_closeRequested, enter=draining, outputs=[_drain])

    waiting.upon(_retryDue, enter=reconnecting, outputs=[_reconnect])
    waiting.upon(_closeRequested, enter=closed,
                 outputs=[_cancelRetry, _failUnreachable, _closedNow])

    reconnecting.upon(_reconnected, enter=connected_,
                      outputs=[_use, _announceReconnected])
    reconnecting.upon(_reconnectFailed, enter=waiting,
                      outputs=[_announceRetry, _scheduleRetry])
    reconnecting.upon(_closeRequested, enter=abandoning, outputs=[_abortAttempt])

    draining.upon(_drained, enter=unbinding, outputs=[_unbind])
    draining.upon(_lost, enter=closed,
                  outputs=[_detach, _failUnreachable, _closedNow])

    unbinding.upon(_unbound, enter=closed, outputs=[_closedNow])

    # The attempt ends on its own after the abort; one that still succeeds
    # is hung up (open() then fails with LDAPStoreClosed).
    abandoning.upon(_openFailed, enter=closed, outputs=[_failUnreachable, _closedNow])
    abandoning.upon(_reconnectFailed, enter=closed,
                    outputs=[_failUnreachable, _closedNow])
    abandoning.upon(_opened, enter=closed,
                    outputs=[_hangUp, _failUnreachable, _closedNow])
    abandoning.upon(_reconnected, enter=closed,
                    outputs=[_hangUp, _failUnreachable, _closedNow])

    closed.upon(_closeRequested, enter=closed, outputs=[_closedNow])
    closed.upon(_drained, enter=closed, outputs=[])
    closed.upon(_unbound, enter=closed, outputs=[])

    # -- the connection's own events --------------------------------------------------
    def _connectionLost(self, proto, reason):
        if proto is self._proto:
            self._lost(proto, reason.getErrorMessage())

    def _broken(self, proto, why):
        """The write pipeline gave up on ``proto``."""
        if proto is self._proto:
            self._lost(proto, why)

    @defer.inlineCallbacks
    def _openAndLoad(self):
        attempt = connect.Attempt(self._reactor, self.options, self._endpoint())
        self._abort = attempt.abort
        try:
            proto = yield attempt.start()
            self._abort = lambda: proto.transport.abortConnection()
            try:
                leases = yield load(self._reactor, proto, self.options, self.pageSize)
            except Exception:
                if proto.connected:
                    proto.transport.abortConnection()
                raise
        except Exception as e:
            self._abort = None
            self._openFailed(e)
            raise
        self._abort = None
        self._pipeline.known = {lease.ip for lease in leases}
        [refused] = self._opened(proto)[:1]
        if refused is not None:
            raise refused
        return leases
