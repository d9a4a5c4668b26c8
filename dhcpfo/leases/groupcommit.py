"""Group commit, written once: many small writes, few durable flushes.

A lease must be durable before its client hears ACK (design rule 3), and one
fsync (or one directory round trip, or one peer acknowledgement) per lease is
too slow.  :class:`GroupCommit` is the batcher every store and the peer
replication queue share, so none of them gets these rules wrong on its own:

- ``submit(records)`` returns a Deferred that fires with ``None`` only when a
  flush containing those records succeeded, and fails with that flush's
  failure otherwise.  A caller answers its client only on success.
- At most ``maxInFlight`` flushes run at once (default 1: the next flush
  starts when the previous one settled).  Records submitted meanwhile wait
  and go out together in the next flush, whole submits up to ``maxBatch``
  records (a single larger submit is one flush of its own).
- Deferreds fire in the order the records were submitted, even when flushes
  run in parallel and settle out of order.
- A flush that raises, returns a failed Deferred or fails later fails exactly
  the submits it carried; the records queued behind it go out in the next
  flush.  Nothing waits for a flush that will never come.
- The queue is bounded by ``maxPending`` records, queued or in flight: a
  submit that would pass it fails at once with :class:`QueueFull` and is not
  queued (a DHCP server then sends no ACK; the client retries).
- ``close()`` refuses new submits with :class:`Closed` and fires once every
  accepted submit has settled; ``failQueued(error)`` fails the submits that
  no flush has taken yet (a store closing while its backend is unreachable),
  still in issue order: after the flushes in flight have settled.

``flush(records)`` gets the records of the submits it carries, in order,
and returns a Deferred (or a plain value).  It may fire with a result that
``perWrite(result, records)`` turns into the outcome of each submit: ``None``
for success or an exception to fail that submit alone (the LDAP directory
refusing one address fails only the writes that carried it).

Everything runs on the reactor thread; the helper itself never reads the
clock or schedules a call, so it is tested with Deferreds fired by hand.
"""

from collections import deque

from twisted.internet import defer
from twisted.python.failure import Failure

__all__ = ["GroupCommit", "QueueFull", "Closed"]


class QueueFull(Exception):
    """The submit would make more than ``maxPending`` records wait."""


class Closed(Exception):
    """The group commit was closed before this submit."""


class _Flush:
    """One flush in flight: its submits, and its result once settled."""

    __slots__ = ("writes", "count", "result", "settled")

    def __init__(self, writes, count):
        self.writes = writes
        self.count = count
        self.result = None
        self.settled = False


class GroupCommit:
    """Batch ``submit(records)`` calls into calls of ``flush(records)``."""

    def __init__(self, flush, maxPending=None, maxBatch=None, maxInFlight=1,
                 perWrite=None):
        if maxInFlight < 1:
            raise ValueError("maxInFlight must be at least 1")
        self._flush = flush
        self.maxPending = maxPending
        self.maxBatch = maxBatch
        self.maxInFlight = maxInFlight
        self._perWrite = perWrite
        self._queue = deque()      # (records, Deferred) not yet flushed
        self._flights = deque()    # _Flush, in the order they started
        self._queued = 0
        self._inFlight = 0
        self._pumping = False
        self._closing = None       # list of close() Deferreds once closing
        self.flushes = 0           # flushes that succeeded
        self.flushed = 0           # records carried by them

    @property
    def pending(self):
        """Records accepted and not yet settled (queued or in flight)."""
        return self._queued + self._inFlight

    def submit(self, records):
        """Queue ``records``; a Deferred that fires once they are flushed."""
        if self._closing is not None:
            return defer.fail(Closed("no more writes: closing"))
        records = list(records)
        if (self.maxPending is not None
                and self.pending + len(records) > self.maxPending):
            return defer.fail(QueueFull(
                "%d records already waiting; %d more would pass the bound of %d"
                % (self.pending, len(records), self.maxPending)))
        d = defer.Deferred()
        self._queue.append((records, d))
        self._queued += len(records)
        self._pump()
        return d

    def failQueued(self, error):
        """Fail every submit no flush has taken yet with ``error``; how many.

        They fire after the flushes in flight settle, keeping issue order.
        """
        if not self._queue:
            return 0
        taken, self._queue = list(self._queue), deque()
        failed = _Flush(taken, sum(len(records) for records, _ in taken))
        failed.result, failed.settled = Failure(error), True
        self._queued -= failed.count
        self._inFlight += failed.count
        self._flights.append(failed)
        self._pump()
        return len(taken)

    def close(self):
        """Refuse further submits; a Deferred that fires when all settled."""
        d = defer.Deferred()
        if self._closing is None:
            self._closing = []
        self._closing.append(d)
        self._pump()
        return d

    # -- the engine ------------------------------------------------------------

    def _pump(self):
        """Fire what has settled, in order, and start flushes while allowed.

        A loop, not recursion: a flush that settles synchronously, or a
        waiter that submits again from its callback, lands back here and is
        picked up by the next turn of the loop.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._fireSettled() or self._start():
                pass
        finally:
            self._pumping = False
        if (self._closing and not self._queue and not self._flights):
            waiters, self._closing = self._closing, []
            for d in waiters:
                d.callback(None)

    def _start(self):
        if not self._queue or len(self._flights) >= self.maxInFlight:
            return False
        writes, records = [], []
        while self._queue:
            head = self._queue[0][0]
            if (writes and self.maxBatch is not None
                    and len(records) + len(head) > self.maxBatch):
                break
            writes.append(self._queue.popleft())
            records.extend(head)
        flight = _Flush(writes, len(records))
        self._queued -= flight.count
        self._inFlight += flight.count
        self._flights.append(flight)
        d = defer.maybeDeferred(self._flush, records)
        d.addBoth(self._settled, flight)
        return True

    def _settled(self, result, flight):
        flight.result = result
        flight.settled = True
        self._pump()
        return None   # a failure went to the waiters: not unhandled here

    def _fireSettled(self):
        fired = False
        while self._flights and self._flights[0].settled:
            flight = self._flights.popleft()
            self._inFlight -= flight.count
            result = flight.result
            if not isinstance(result, Failure):
                self.flushes += 1
                self.flushed += flight.count
            for records, d in flight.writes:
                self._fire(d, result, records)
            fired = True
        return fired

    def _fire(self, d, result, records):
        if isinstance(result, Failure):
            d.errback(result)
            return
        outcome = None
        if self._perWrite is not None:
            try:
                outcome = self._perWrite(result, records)
            except Exception:
                outcome = Failure()
        if outcome is None:
            d.callback(None)
        else:
            d.errback(outcome if isinstance(outcome, Failure) else Failure(outcome))
