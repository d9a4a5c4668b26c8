"""The conformance suite every lease store runs (ILeaseStore's contract).

A store's test case mixes in :class:`StoreConformanceMixin` with
``twisted.trial.unittest.TestCase`` and provides:

- ``makeStore()``: a new, unopened store on fresh backend state; calling it
  again after ``close()`` of the first must give a store on the *same* state
  (a restart);
- ``backendLeases()``: a Deferred (or value) with the leases as the backend
  holds them, read around the store (another connection, ldapsearch, ...), to
  check that a fired write really is there;
- ``breakBackend(store)``: make the next write fail (file read-only, directory
  stopped, ...).

The memory store, which by design keeps nothing across a restart, sets
``durableAcrossRestart = False``.
"""

from twisted.internet import defer
from zope.interface.verify import verifyObject

from dhcpfo import addr
from dhcpfo.interfaces import ILeaseStore
from dhcpfo.leases.lease import ACTIVE, RELEASED, Lease
from dhcpfo.stores import registry


def lease(n, version=1, state=ACTIVE, hostname=None):
    # 198.18.0.1 + n: valid addresses in the benchmark range for n < 131,070.
    return Lease(addr.ip_str(_FIRST + n),
                 bytes([0x52, 0x54, 0, n >> 16 & 255, n >> 8 & 255, n & 255]),
                 b"\x01" + bytes([n & 255]) * 6 if n % 2 else b"",
                 hostname if hostname is not None else "host-%d" % n, state,
                 1_800_000_000.0 + n, 1_800_003_600.5 + n, "srv1", version)


_FIRST = addr.int_from_str("198.18.0.1")


def storeFromDescription(reactor, text):
    """The store ``--lease-store text`` makes, as dhcpfo.service does it."""
    factory, params = registry.validate(text)
    return factory.makeStore(reactor, **params)


class StoreConformanceMixin:
    durableAcrossRestart = True
    loadCount = 100_000

    @defer.inlineCallbacks
    def openStore(self):
        store = self.makeStore()
        leases = yield store.open()
        self.addCleanup(store.close)
        return store, leases

    @defer.inlineCallbacks
    def restart(self, store):
        yield store.close()
        again, leases = yield self.openStore()
        return again, leases

    def test_interface(self):
        self.assertTrue(verifyObject(ILeaseStore, self.makeStore()))

    @defer.inlineCallbacks
    def test_empty(self):
        _, leases = yield self.openStore()
        self.assertEqual(list(leases), [])

    @defer.inlineCallbacks
    def test_write_read_back(self):
        store, _ = yield self.openStore()
        written = [lease(n) for n in range(5)]
        result = yield store.write(written)
        self.assertIsNone(result)
        backend = yield defer.maybeDeferred(self.backendLeases)
        self.assertEqual(sorted(backend, key=lambda l: l.ip),
                         sorted(written, key=lambda l: l.ip))
        if self.durableAcrossRestart:
            _, loaded = yield self.restart(store)
            self.assertEqual(sorted(loaded, key=lambda l: l.ip),
                             sorted(written, key=lambda l: l.ip))

    @defer.inlineCallbacks
    def test_fields_round_trip(self):
        """Every field survives, including empty and unusual values."""
        store, _ = yield self.openStore()
        odd = [Lease("192.0.2.9", b"\x00" * 16, b"\xff\x00abc", "", RELEASED,
                     0.0, 1_800_000_000.25, "", 2 ** 62 + 5),
               Lease("192.0.2.10", b"\x01\x02", b"", "x" * 63, ACTIVE,
                     1_800_000_000.0, addr.NEVER, "peer-b", 1)]
        yield store.write(odd)
        backend = yield defer.maybeDeferred(self.backendLeases)
        self.assertEqual(sorted(backend, key=lambda l: l.ip),
                         sorted(odd, key=lambda l: l.ip))

    @defer.inlineCallbacks
    def test_batched_writes_fire_in_order(self):
        store, _ = yield self.openStore()
        fired = []
        ds = []
        for n in range(200):
            d = store.write([lease(n)])
            d.addCallback(lambda _, n=n: fired.append(n))
            ds.append(d)
        yield defer.gatherResults(ds)
        self.assertEqual(fired, list(range(200)))
        backend = yield defer.maybeDeferred(self.backendLeases)
        self.assertEqual(len(backend), 200)

    @defer.inlineCallbacks
    def test_update_same_address_newest_wins(self):
        store, _ = yield self.openStore()
        yield defer.gatherResults([
            store.write([lease(1, version=1, hostname="old")]),
            store.write([lease(1, version=2, hostname="new")])])
        yield store.write([lease(1, version=3, state=RELEASED, hostname="newest")])
        backend = yield defer.maybeDeferred(self.backendLeases)
        self.assertEqual([(l.version, l.hostname, l.state) for l in backend],
                         [(3, "newest", RELEASED)])
        if self.durableAcrossRestart:
            _, loaded = yield self.restart(store)
            self.assertEqual([l.version for l in loaded], [3])

    @defer.inlineCallbacks
    def test_concurrent_writers(self):
        """Two writers interleaving (as two peers' replication would) lose nothing."""
        store, _ = yield self.openStore()
        ds = []
        for n in range(100):
            ds.append(store.write([lease(2 * n)]))
            ds.append(store.write([lease(2 * n + 1), lease(1000 + n)]))
        yield defer.gatherResults(ds)
        backend = yield defer.maybeDeferred(self.backendLeases)
        self.assertEqual(len(backend), 300)

    @defer.inlineCallbacks
    def test_load_many(self):
        store, _ = yield self.openStore()
        chunk = 5000
        ds = [store.write([lease(n) for n in range(i, min(i + chunk, self.loadCount))])
              for i in range(0, self.loadCount, chunk)]
        yield defer.gatherResults(ds)
        if self.durableAcrossRestart:
            _, loaded = yield self.restart(store)
        else:
            loaded = yield defer.maybeDeferred(self.backendLeases)
        self.assertEqual(len(loaded), self.loadCount)
        self.assertEqual(len({l.ip for l in loaded}), self.loadCount)

    @defer.inlineCallbacks
    def test_write_error_fails_deferred(self):
        store, _ = yield self.openStore()
        yield store.write([lease(1)])
        yield defer.maybeDeferred(self.breakBackend, store)
        d = store.write([lease(2)])
        failure = None
        try:
            yield d
        except Exception as e:
            failure = e
        self.assertIsNotNone(failure, "a failed write must fail its Deferred")
        self.flushLoggedErrors()

    @defer.inlineCallbacks
    def test_close_without_open(self):
        """A service stopped before its store opened must still stop."""
        from twisted.internet import reactor
        d = self.makeStore().close()
        yield d.addTimeout(10, reactor)

    @defer.inlineCallbacks
    def test_close_waits_for_pending_writes(self):
        store, _ = yield self.openStore()
        ds = [store.write([lease(n)]) for n in range(50)]
        yield store.close()
        self.assertTrue(all(d.called for d in ds))
        if self.durableAcrossRestart:
            _, loaded = yield self.openStore()
            self.assertEqual(len(loaded), 50)
