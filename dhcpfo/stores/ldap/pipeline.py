"""The write pipeline: one batch of leases onto one connection, pipelined.

:class:`~dhcpfo.leases.groupcommit.GroupCommit` decides what goes into a
batch and fires the writers; this module gets one batch acknowledged by the
directory.  It keeps the newest record per address and sends one add -- or
modify/replace when the entry is known to exist -- per address, ``window``
requests in flight.  Entries deleted or created behind the store's back are
handled (modify -> noSuchObject -> add; add -> entryAlreadyExists ->
modify).  A modify carries an RFC 4528 assertion ``(dhcpfoLeaseVersion<=new)``
so an older record never replaces a newer one, even a stale request the
server still held from a connection the store gave up on (dropped, with a
warning, when the server does not support the control).

A batch outlives its connection: when the connection breaks (lost, no
answer for ``timeout`` seconds, the server busy or unavailable) the batch
is sent again, whole, on the next one.  It settles with the addresses the
directory refused (``{ip: (code, message)}``), or fails only when the store
abandons it (closed, or never opened).
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhcpfo.stores.ldap import entry
from dhcpfo.stores.ldap.errors import (
    ALREADY_EXISTS, ASSERTION_FAILED, NO_SUCH_OBJECT, SUCCESS, TRANSIENT,
    UNAVAILABLE_CRITICAL_EXTENSION, LDAPWriteRejected, Transient, describeResult)


class _Batch:
    def __init__(self, records):
        latest = {}
        for lease in records:
            latest[lease.ip] = lease
        self.leases = list(latest.values())
        self.done = defer.Deferred()
        self.round = None


class _Round:
    """One send of a batch on one connection; once ``aborted`` (the
    connection was given up), its late answers are ignored."""

    def __init__(self, batch, proto, now):
        self.batch = batch
        self.proto = proto
        self.todo = iter(batch.leases)
        self.outstanding = 0
        self.errors = {}
        self.aborted = False
        self.progress = now


class WritePipeline:
    window = 512       # requests in flight on the connection
    _log = Logger()

    def __init__(self, reactor, options, onBroken):
        """``onBroken(proto, why)`` is called when the connection under a
        batch has to be given up."""
        self._reactor = reactor
        self._options = options
        self._onBroken = onBroken
        self._proto = None
        self._batch = None
        self._watchdog = None
        self._refusing = None      # the error every flush gets while abandoning
        self.known = set()         # addresses that have an entry
        self.assertVersion = True  # guard modifies with the assertion control
        self.batches = 0
        self.written = 0

    def flush(self, records):
        """GroupCommit's flush: a Deferred firing with the refused addresses."""
        if self._refusing is not None:
            return defer.fail(self._refusing)
        batch = self._batch = _Batch(records)
        if self._proto is not None:
            self._start(batch)
        return batch.done

    def attach(self, proto):
        """Write on ``proto`` from now on (a batch held back goes out)."""
        self._proto = proto
        if self._batch is not None:
            self._start(self._batch)

    def detach(self):
        """Stop using the connection; the batch stays for the next one."""
        self._proto = None
        self._stopWatchdog()
        if self._batch is not None and self._batch.round is not None:
            self._batch.round.aborted = True
            self._batch.round = None

    def abandon(self, error):
        """Fail the batch held back, and every batch GroupCommit hands over
        while it fires that one's writers, with ``error`` (in order)."""
        batch, self._batch = self._batch, None
        self._stopWatchdog()
        if batch is None:
            return
        if batch.round is not None:
            batch.round.aborted = True
        self._refusing = error
        try:
            batch.done.errback(Failure(error))
        finally:
            self._refusing = None

    @staticmethod
    def refused(errors, leases):
        """GroupCommit's perWrite: fail a write that carried a refused address."""
        mine = {l.ip: errors[l.ip] for l in leases if l.ip in errors} if errors else None
        return LDAPWriteRejected(mine) if mine else None

    # -- one round -------------------------------------------------------------

    def _start(self, batch):
        batch.round = _Round(batch, self._proto, self._reactor.seconds())
        self._startWatchdog()
        self._fill(batch.round)
        self._maybeFinished(batch.round)

    def _fill(self, round):
        while round.outstanding < self.window and not round.aborted:
            lease = next(round.todo, None)
            if lease is None:
                break
            round.outstanding += 1
            self._send(round, lease, lease.ip in self.known, True)

    def _send(self, round, lease, modify, fallback):
        controls = None
        base = self._options.base
        if modify:
            request = entry.modifyRequest(lease, base)
            if self.assertVersion:
                controls = [entry.versionAssertion(lease)]
        else:
            request = entry.addRequest(lease, base)
        try:
            d = round.proto.send(request, controls)
        except Exception:
            d = defer.fail()
        d.addCallbacks(self._answered, self._broken,
                       callbackArgs=(round, lease, modify, fallback,
                                     controls is not None),
                       errbackArgs=(round,))

    def _answered(self, response, round, lease, modify, fallback, asserted):
        if round.aborted:
            return
        round.progress = self._reactor.seconds()
        code = response.resultCode
        if code == SUCCESS:
            self.known.add(lease.ip)
        elif asserted and code == UNAVAILABLE_CRITICAL_EXTENSION:
            if self.assertVersion:
                self.assertVersion = False
                self._log.warn("{url} does not support the assertion control; "
                               "modifies are no longer guarded by version",
                               url=self._options.url)
            return self._send(round, lease, modify, fallback)
        elif code == ASSERTION_FAILED:
            round.errors[lease.ip] = (code, "the directory holds a newer version "
                                      "of this lease (another writer?)")
        elif fallback and modify and code == NO_SUCH_OBJECT:
            self.known.discard(lease.ip)   # deleted behind our back: add it
            return self._send(round, lease, False, False)
        elif fallback and not modify and code == ALREADY_EXISTS:
            return self._send(round, lease, True, False)
        elif code in TRANSIENT:
            return self._broken(Failure(Transient(
                describeResult(code, response.errorMessage))), round)
        else:
            round.errors[lease.ip] = (code, response.errorMessage)
        round.outstanding -= 1
        self._fill(round)
        self._maybeFinished(round)

    def _broken(self, failure, round):
        """The connection failed under this round: give it up."""
        if round.aborted:
            return
        self._log.warn("writing {count} leases to {url} interrupted: {why}",
                       count=len(round.batch.leases), url=self._options.url,
                       why=failure.getErrorMessage())
        self._onBroken(round.proto, failure.getErrorMessage())

    def _maybeFinished(self, round):
        # _fill sends while anything is left: nothing outstanding means done.
        if round.outstanding or round.aborted:
            return
        batch = round.batch
        self._stopWatchdog()
        self._batch = None
        self.batches += 1
        self.written += len(batch.leases) - len(round.errors)
        if round.errors:
            self._log.error("{error}", error=LDAPWriteRejected(round.errors))
        batch.done.callback(round.errors)   # GroupCommit may flush again here

    # -- no answer for ``timeout`` seconds ----------------------------------------

    def _startWatchdog(self):
        self._stopWatchdog()
        self._watchdog = self._reactor.callLater(self._options.timeout, self._check)

    def _stopWatchdog(self):
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _check(self):
        self._watchdog = None
        batch = self._batch
        if batch is None or batch.round is None:
            return
        idle = self._reactor.seconds() - batch.round.progress
        timeout = self._options.timeout
        if idle >= timeout:
            self._broken(Failure(Transient("no answer for %gs" % idle)), batch.round)
        else:
            self._watchdog = self._reactor.callLater(timeout - idle, self._check)
