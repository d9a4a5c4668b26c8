"""GroupCommit: the one batcher behind every store and the peer queue.

Flushes are Deferreds the test fires by hand, so every interleaving is
chosen by the test, never by timing.
"""

from hypothesis import given, settings, strategies as st
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

import tests.hypothesis_profile  # noqa: F401  (the dhcpfo profile)
from dhcpfo.leases.groupcommit import Closed, GroupCommit, QueueFull


class Backend:
    """A flush function whose flushes the test settles by hand."""

    def __init__(self):
        self.flushes = []     # [records, Deferred]

    def __call__(self, records):
        d = defer.Deferred()
        self.flushes.append((list(records), d))
        return d

    def succeed(self, index=0, result=None):
        records, d = self.flushes.pop(index)
        d.callback(result)
        return records

    def fail(self, index=0, error=None):
        records, d = self.flushes.pop(index)
        d.errback(error or RuntimeError("disk full"))
        return records


class Outcomes:
    """Records, per submit, how and in which order its Deferred fired."""

    def __init__(self):
        self.order = []
        self.results = {}

    def watch(self, name, d):
        def done(result):
            self.order.append(name)
            self.results[name] = (result.value if isinstance(result, Failure)
                                  else result)
        d.addBoth(done)
        return d


class GroupCommitTests(SynchronousTestCase):
    def setUp(self):
        self.backend = Backend()
        self.out = Outcomes()

    def submit(self, gc, name, records):
        return self.out.watch(name, gc.submit(records))

    def test_idle_submit_flushes_at_once(self):
        gc = GroupCommit(self.backend)
        self.submit(gc, "a", [1, 2])
        self.assertEqual([r for r, _ in self.backend.flushes], [[1, 2]])
        self.assertEqual(self.out.order, [])
        self.backend.succeed()
        self.assertEqual(self.out.results, {"a": None})
        self.assertEqual((gc.flushes, gc.flushed, gc.pending), (1, 2, 0))

    def test_writes_during_a_flush_share_the_next(self):
        gc = GroupCommit(self.backend)
        self.submit(gc, "a", [1])
        self.submit(gc, "b", [2])
        self.submit(gc, "c", [3, 4])
        self.assertEqual(len(self.backend.flushes), 1)
        self.assertEqual(gc.pending, 4)
        self.backend.succeed()
        self.assertEqual(self.out.order, ["a"])
        self.assertEqual([r for r, _ in self.backend.flushes], [[2, 3, 4]])
        self.backend.succeed()
        self.assertEqual(self.out.order, ["a", "b", "c"])
        self.assertEqual(gc.flushes, 2)

    def test_not_fired_before_its_flush_succeeded(self):
        gc = GroupCommit(self.backend)
        d = gc.submit([1])
        self.assertNoResult(d)

    def test_failed_flush_fails_only_its_own_waiters(self):
        gc = GroupCommit(self.backend)
        self.submit(gc, "a", [1])
        self.submit(gc, "b", [2])
        error = RuntimeError("disk full")
        self.backend.fail(error=error)
        self.assertEqual(self.out.results, {"a": error})
        # The queue kept moving: b went out in the next flush.
        self.assertEqual([r for r, _ in self.backend.flushes], [[2]])
        self.backend.succeed()
        self.assertEqual(self.out.results, {"a": error, "b": None})
        self.assertEqual((gc.flushes, gc.flushed, gc.pending), (1, 1, 0))

    def test_flush_raising_synchronously(self):
        calls = []

        def flush(records):
            calls.append(records)
            if len(calls) == 1:
                raise ValueError("cannot encode")
            return None
        gc = GroupCommit(flush)
        self.submit(gc, "a", [1])
        self.submit(gc, "b", [2])
        self.assertIsInstance(self.out.results["a"], ValueError)
        self.assertEqual(self.out.results["b"], None)
        self.assertEqual(calls, [[1], [2]])
        self.assertEqual(gc.pending, 0)

    def test_flush_raising_while_others_wait(self):
        # The bug class: a raise under a busy queue must not leave the
        # waiters behind it hanging.
        raising = [True]
        backend = self.backend

        def flush(records):
            if raising[0]:
                raise OSError("I/O error")
            return backend(records)
        gc = GroupCommit(flush, maxInFlight=2)
        self.submit(gc, "a", [1])
        self.submit(gc, "b", [2])
        self.assertEqual(sorted(self.out.results), ["a", "b"])
        raising[0] = False
        self.submit(gc, "c", [3])
        backend.succeed()
        self.assertEqual(self.out.order, ["a", "b", "c"])
        self.assertIsNone(self.out.results["c"])

    def test_synchronous_success(self):
        seen = []
        gc = GroupCommit(lambda records: seen.append(records))
        for name in "abc":
            self.submit(gc, name, [name])
        self.assertEqual(self.out.order, ["a", "b", "c"])
        self.assertEqual(seen, [["a"], ["b"], ["c"]])

    def test_many_synchronous_flushes_do_not_recurse(self):
        gc = GroupCommit(lambda records: None)
        ds = [gc.submit([n]) for n in range(5000)]
        self.assertEqual(len(ds), 5000)
        self.assertEqual(gc.flushes, 5000)

    def test_max_batch_takes_whole_writes(self):
        gc = GroupCommit(self.backend, maxBatch=3)
        self.submit(gc, "a", [0])
        self.submit(gc, "b", [1, 2])
        self.submit(gc, "c", [3])
        self.submit(gc, "d", [4, 5, 6, 7])
        self.submit(gc, "e", [8])
        batches = []
        while self.backend.flushes:
            batches.append(self.backend.succeed())
        self.assertEqual(batches, [[0], [1, 2, 3], [4, 5, 6, 7], [8]])
        self.assertEqual(self.out.order, list("abcde"))

    def test_queue_full_fails_at_once_and_queues_nothing(self):
        gc = GroupCommit(self.backend, maxPending=3)
        self.submit(gc, "a", [1, 2])
        full = gc.submit([3, 4])
        self.failureResultOf(full, QueueFull)
        self.assertEqual(gc.pending, 2)
        self.submit(gc, "b", [3])      # exactly at the bound: accepted
        self.failureResultOf(gc.submit([4]), QueueFull)
        self.backend.succeed()
        self.backend.succeed()
        self.assertEqual(self.out.order, ["a", "b"])
        self.assertEqual(gc.pending, 0)

    def test_in_flight_counts_against_the_bound(self):
        gc = GroupCommit(self.backend, maxPending=2)
        self.submit(gc, "a", [1, 2])
        self.assertEqual(len(self.backend.flushes), 1)    # in flight, not queued
        self.failureResultOf(gc.submit([3]), QueueFull)

    def test_parallel_flushes_fire_in_issue_order(self):
        gc = GroupCommit(self.backend, maxInFlight=2)
        self.submit(gc, "a", [1])
        self.submit(gc, "b", [2])
        self.submit(gc, "c", [3])
        self.assertEqual(len(self.backend.flushes), 2)
        self.backend.succeed(1)        # b's flush settles first
        self.assertEqual(self.out.order, [])
        self.assertEqual(gc.pending, 3)    # b settled but waits for a
        self.assertEqual(len(self.backend.flushes), 1)   # c waits for a slot
        self.backend.fail(0)           # a's flush fails
        self.assertEqual(self.out.order, ["a", "b"])
        self.assertIsInstance(self.out.results["a"], RuntimeError)
        self.assertIsNone(self.out.results["b"])
        self.backend.succeed()
        self.assertEqual(self.out.order, ["a", "b", "c"])

    def test_per_write_outcome(self):
        def perWrite(refused, records):
            bad = [r for r in records if r in (refused or ())]
            return ValueError(bad) if bad else None
        gc = GroupCommit(self.backend, perWrite=perWrite)
        self.submit(gc, "a", [0])
        self.submit(gc, "b", [1, 2])
        self.submit(gc, "c", [3])
        self.backend.succeed()
        self.backend.succeed(result={2})
        self.assertIsNone(self.out.results["a"])
        self.assertEqual(self.out.results["b"].args, ([2],))
        self.assertIsNone(self.out.results["c"])

    def test_per_write_raising_fails_that_write(self):
        gc = GroupCommit(self.backend, perWrite=lambda result, records: 1 / 0)
        self.submit(gc, "a", [1])
        self.backend.succeed()
        self.assertIsInstance(self.out.results["a"], ZeroDivisionError)

    def test_submit_from_a_callback_keeps_order(self):
        gc = GroupCommit(lambda records: None)
        first = gc.submit([1])   # settled already
        self.out.watch("1", first)
        self.submit(gc, "2", [2])
        d = gc.submit([3])
        self.assertEqual(self.out.order, ["1", "2"])
        self.successResultOf(d)

    def test_submit_from_callback_during_fan_out(self):
        # Waiter a submits while b (same flush) has not fired yet: b still
        # fires before the new write, even though the new flush settles
        # synchronously.
        sync = [False]
        backend = self.backend

        def flush(records):
            return None if sync[0] else backend(records)
        gc = GroupCommit(flush)
        self.submit(gc, "x", [0])
        a = self.submit(gc, "a", [1])
        self.submit(gc, "b", [2])
        a.addCallback(lambda _: self.submit(gc, "late", [3]))
        backend.succeed()
        sync[0] = True
        backend.succeed()
        self.assertEqual(self.out.order, ["x", "a", "b", "late"])

    def test_close_waits_then_refuses(self):
        gc = GroupCommit(self.backend)
        self.submit(gc, "a", [1])
        self.submit(gc, "b", [2])
        closed = gc.close()
        self.assertNoResult(closed)
        self.failureResultOf(gc.submit([3]), Closed)
        self.backend.succeed()
        self.assertNoResult(closed)
        self.backend.succeed()
        self.successResultOf(closed)
        self.assertEqual(self.out.order, ["a", "b"])
        self.successResultOf(gc.close())

    def test_close_idle(self):
        self.successResultOf(GroupCommit(self.backend).close())

    def test_fail_queued(self):
        gc = GroupCommit(self.backend)
        self.submit(gc, "a", [1])
        self.submit(gc, "b", [2])
        self.submit(gc, "c", [3])
        closed = gc.close()
        self.assertEqual(gc.failQueued(Closed("backend unreachable")), 2)
        self.assertEqual(gc.failQueued(Closed("again")), 0)
        # b and c never reach a flush, but fire only after a: issue order.
        self.assertEqual(self.out.order, [])
        self.assertEqual(gc.pending, 3)
        self.assertNoResult(closed)
        self.backend.fail()
        self.assertEqual(self.out.order, ["a", "b", "c"])
        self.assertIsInstance(self.out.results["a"], RuntimeError)
        self.assertIsInstance(self.out.results["b"], Closed)
        self.assertIsInstance(self.out.results["c"], Closed)
        self.assertEqual(self.backend.flushes, [])
        self.successResultOf(closed)
        self.assertEqual(gc.pending, 0)

    def test_cancelled_waiter_does_not_break_the_queue(self):
        gc = GroupCommit(self.backend)
        d = gc.submit([1])
        self.submit(gc, "b", [2])
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.backend.succeed()
        self.backend.succeed()
        self.assertEqual(self.out.results, {"b": None})

    def test_empty_submit_waits_for_its_flush(self):
        gc = GroupCommit(self.backend)
        self.submit(gc, "a", [1])
        self.submit(gc, "empty", [])
        self.backend.succeed()
        self.assertEqual(self.out.order, ["a"])
        self.assertEqual(self.backend.succeed(), [])
        self.assertEqual(self.out.order, ["a", "empty"])

    def test_max_in_flight_must_be_positive(self):
        self.assertRaises(ValueError, GroupCommit, self.backend, maxInFlight=0)


# -- properties ----------------------------------------------------------------

# One step of a run: submit n records, settle a flush in flight (by index)
# with success or failure, or make the next flush raise synchronously.
_steps = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.integers(1, 4)),
    st.tuples(st.just("succeed"), st.integers(0, 3)),
    st.tuples(st.just("fail"), st.integers(0, 3)),
    st.tuples(st.just("raise"), st.just(0)),
    st.tuples(st.just("failQueued"), st.just(0)),
), max_size=40)


class GroupCommitProperties(SynchronousTestCase):
    @settings(max_examples=300)
    @given(_steps, st.integers(1, 3), st.one_of(st.none(), st.integers(1, 5)),
           st.one_of(st.none(), st.integers(1, 8)))
    def test_every_submit_settles_once_in_order_with_its_flush(
            self, steps, maxInFlight, maxBatch, maxPending):
        backend = Backend()
        raiseNext = [False]
        started = []           # every flush started: its records
        failedRecords = set()

        def flush(records):
            # A flush counts as in flight until its writers have fired.
            done = {number for number, _ in fired}
            busy = [s for s in started if not {n for n, _ in s} <= done]
            self.assertLess(len(busy), maxInFlight)
            started.append(list(records))
            if raiseNext[0]:
                raiseNext[0] = False
                failedRecords.update(records)
                raise OSError("synchronous")
            return backend(records)

        gc = GroupCommit(flush, maxPending=maxPending, maxBatch=maxBatch,
                         maxInFlight=maxInFlight)
        fired = []             # (submit number, ok) in firing order
        accepted = []          # (submit number, records)
        counter = iter(range(10**6))

        def submit(n):
            number = next(counter)
            records = [(number, i) for i in range(n)]
            before = gc.pending
            d = gc.submit(records)
            if maxPending is not None and before + n > maxPending:
                self.failureResultOf(d, QueueFull)
                return
            accepted.append((number, records))
            d.addBoth(lambda r: fired.append(
                (number, not isinstance(r, Failure))))

        for action, arg in steps:
            if action == "submit":
                submit(arg)
            elif action == "raise":
                raiseNext[0] = True
            elif action == "failQueued":
                gc.failQueued(RuntimeError("closing"))
                # those never reached a flush
            elif backend.flushes:
                index = arg % len(backend.flushes)
                if action == "succeed":
                    backend.succeed(index)
                else:
                    failedRecords.update(backend.fail(index))
            if maxPending is not None:
                self.assertLessEqual(gc.pending, maxPending)
        # Drain: nothing may hang.
        raiseNext[0] = False
        closed = gc.close()
        while backend.flushes:
            backend.succeed(0)
        self.successResultOf(closed)
        self.assertEqual(gc.pending, 0)

        # Every accepted submit fired exactly once, in issue order.
        self.assertEqual([n for n, _ in fired], [n for n, _ in accepted])
        # Each record was in at most one flush; flushes kept issue order.
        flat = [r for batch in started for r in batch]
        self.assertEqual(flat, sorted(flat))
        self.assertEqual(len(flat), len(set(flat)))
        flushedSet = set(flat)
        ok = dict(fired)
        for number, records in accepted:
            if not records:
                continue
            # A submit is never split between flushes.
            inFlush = [any(r in batch for r in records) for batch in started]
            self.assertLessEqual(sum(inFlush), 1)
            wasFlushed = records[0] in flushedSet
            succeeded = wasFlushed and not (set(records) & failedRecords)
            self.assertEqual(ok[number], succeeded, (number, records))
        if maxBatch is not None:
            for batch in started:
                owners = {number for number, _ in batch}
                if len(owners) > 1:
                    self.assertLessEqual(len(batch), maxBatch)
