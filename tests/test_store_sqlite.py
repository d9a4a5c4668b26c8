"""The SQLite and memory lease stores and the --lease-store registry.

The SQLite tests use the real reactor: the store does its I/O on a thread and
group commit is about what happens while that thread is busy.
"""

import os
import sqlite3

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from dhcpfo.interfaces import ILeaseStore, ILeaseStoreFactory
from dhcpfo.leases.lease import ACTIVE, RELEASED, Lease
from dhcpfo.stores import registry
from dhcpfo.stores import sqlite as sqlite_store
from dhcpfo.stores.memory import MemoryLeaseStore
from dhcpfo.stores.sqlite import SQLiteLeaseStore
from tests.store_conformance import storeFromDescription

# An HLC stamp of 2026: milliseconds << 16.
STAMP = 1_780_000_000_000 << 16


def lease(n, version=1, hostname=None, state=ACTIVE):
    return Lease("192.0.2.%d" % n if n < 256 else "198.51.%d.%d" % divmod(n, 256),
                 bytes((0x52, 0x54, 0, 0, n >> 8 & 255, n & 255)),
                 b"\x01" + bytes((n & 255,)) * 6 if n % 2 else b"",
                 "host-%d" % n if hostname is None else hostname,
                 state, 1_780_000_000.0 + n, 1_780_003_600.5 + n, "srv1",
                 STAMP + version)


def by_ip(leases):
    return sorted(leases, key=lambda l: l.ip)


def read_db(path):
    """The leases in the file, read around the store."""
    conn = sqlite3.connect(path)
    try:
        return by_ip(Lease(*row) for row in conn.execute(
            "SELECT ip, hwaddr, client_id, hostname, state, start, expiry, owner, "
            "version FROM leases"))
    finally:
        conn.close()


class FailingCommit:
    """Stands in for the store's connection; COMMIT fails while ``failing``.

    SQLite may leave the transaction open when COMMIT fails (SQLITE_BUSY,
    and sometimes SQLITE_FULL or SQLITE_IOERR).
    """

    def __init__(self, conn):
        self.conn = conn
        self.failing = True

    def execute(self, sql, *args):
        if sql == "COMMIT" and self.failing:
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):  # executemany, in_transaction, close, ...
        return getattr(self.conn, name)


class _NormalByDefault:
    """The sqlite3 module of a build whose WAL default is synchronous=NORMAL."""

    def connect(self, *args, **kwargs):
        conn = sqlite3.connect(*args, **kwargs)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def __getattr__(self, name):
        return getattr(sqlite3, name)


class SQLiteStoreTests(TestCase):

    def setUp(self):
        self.path = os.path.abspath(self.mktemp())

    @defer.inlineCallbacks
    def openStore(self, path=None):
        store = SQLiteLeaseStore(reactor, path or self.path)
        leases = yield store.open()
        self.addCleanup(store.close)
        return store, leases

    def test_interface(self):
        store = SQLiteLeaseStore(reactor, self.path)
        self.assertTrue(verifyObject(ILeaseStore, store))
        self.assertTrue(store.durable)

    @defer.inlineCallbacks
    def test_open_empty(self):
        store, leases = yield self.openStore()
        self.assertEqual(list(leases), [])
        self.assertTrue(os.path.exists(self.path))
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(store.batches, 0)

    @defer.inlineCallbacks
    def test_every_commit_is_fsynced(self):
        """The store sets synchronous=FULL (2) itself, on its own connection.

        This SQLite's compiled-in default is FULL already, so reading the
        setting alone would pass without the store's PRAGMA.  Builds with
        SQLITE_DEFAULT_WAL_SYNCHRONOUS=1 (NORMAL) exist, and in WAL mode
        NORMAL acknowledges commits a power loss can undo: the test hands the
        store a connection that starts at NORMAL, as such a build would, and
        reads the setting from the connection the store commits on, on the
        store's thread (the setting is per connection).
        """
        self.patch(sqlite_store, "sqlite3", _NormalByDefault())
        store, _ = yield self.openStore()
        level = yield threads.deferToThreadPool(
            reactor, store._pool,
            lambda: store._conn.execute("PRAGMA synchronous").fetchone()[0])
        self.assertEqual(level, 2)

    @defer.inlineCallbacks
    def test_reopen_returns_same_leases(self):
        store, _ = yield self.openStore()
        written = [lease(n) for n in range(1, 6)] + [
            Lease("192.0.2.200", b"\x00" * 16, b"\xff\x00id", "h\u00f6st", RELEASED,
                  0.0, 1_780_000_000.25, "", 2 ** 62 + 5)]
        result = yield store.write(written)
        self.assertIsNone(result)
        yield store.close()
        again, loaded = yield self.openStore()
        self.assertEqual(by_ip(loaded), by_ip(written))
        for got in loaded:
            self.assertIsInstance(got.hwaddr, bytes)
            self.assertIsInstance(got.client_id, bytes)
            self.assertIsInstance(got.hostname, str)
            self.assertIsInstance(got.version, int)

    @defer.inlineCallbacks
    def test_group_commit(self):
        """Writes issued together share transactions and fire in issue order."""
        store, _ = yield self.openStore()
        calls = 100
        fired, results = [], []
        ds = []
        for n in range(calls):
            d = store.write([lease(n)])
            d.addCallback(lambda result, n=n: (fired.append(n), results.append(result)))
            ds.append(d)
        yield defer.gatherResults(ds, consumeErrors=True)
        self.assertEqual(fired, list(range(calls)))
        self.assertEqual(results, [None] * calls)
        self.assertLess(store.batches, calls)
        # The first goes out at once; the rest queue behind it as one batch.
        self.assertLessEqual(store.batches, 2)
        self.assertEqual(store.written, calls)
        self.assertEqual(len(read_db(self.path)), calls)

    @defer.inlineCallbacks
    def test_idle_write_goes_out_at_once(self):
        store, _ = yield self.openStore()
        for n in range(3):
            yield store.write([lease(n)])
            self.assertEqual(store.batches, n + 1)
            self.assertEqual(read_db(self.path), [lease(m) for m in range(n + 1)])

    @defer.inlineCallbacks
    def test_newest_wins(self):
        store, _ = yield self.openStore()
        # One write carrying two versions of an address.
        yield store.write([lease(7, 1, "a"), lease(7, 2, "b")])
        self.assertEqual([l.hostname for l in read_db(self.path)], ["b"])
        # Two writes in one batch, then one on its own.
        yield defer.gatherResults([store.write([lease(7, 3, "c")]),
                                   store.write([lease(7, 4, "d")]),
                                   store.write([lease(7, 5, "e")])])
        self.assertEqual([(l.hostname, l.version) for l in read_db(self.path)],
                         [("e", STAMP + 5)])
        yield store.write([lease(7, 6, "f", RELEASED)])
        yield store.close()
        _, loaded = yield self.openStore()
        self.assertEqual(loaded, [lease(7, 6, "f", RELEASED)])

    @defer.inlineCallbacks
    def test_read_only_database(self):
        """Writes refused by SQLite fail their Deferreds; later writes recover."""
        store, _ = yield self.openStore()
        yield store.write([lease(1)])
        store._conn.execute("PRAGMA query_only=1")  # the store is idle
        ds = [store.write([lease(n)]) for n in range(2, 6)]
        outcomes = yield defer.DeferredList(ds, consumeErrors=True)
        for ok, result in outcomes:
            self.assertFalse(ok)
            result.trap(sqlite3.OperationalError)
            self.assertIn("readonly", str(result.value))
        self.assertTrue(self.flushLoggedErrors(sqlite3.OperationalError))
        store._conn.execute("PRAGMA query_only=0")
        yield store.write([lease(9)])
        self.assertEqual(read_db(self.path), [lease(1), lease(9)])

    @defer.inlineCallbacks
    def test_connection_closed_underneath(self):
        store, _ = yield self.openStore()
        store._conn.close()
        yield self.assertFailure(store.write([lease(1)]), sqlite3.ProgrammingError)
        self.assertTrue(self.flushLoggedErrors(sqlite3.ProgrammingError))
        yield store.close()  # still closes

    @defer.inlineCallbacks
    def test_no_silent_drop(self):
        """A lease SQLite cannot store fails its batch, atomically."""
        store, _ = yield self.openStore()
        first = store.write([lease(1)])  # goes out at once; the rest queue
        good = store.write([lease(2)])
        bad = store.write([lease(3, hostname=object())])
        outcomes = yield defer.DeferredList([first, good, bad], consumeErrors=True)
        self.assertTrue(outcomes[0][0])
        self.assertFalse(outcomes[2][0])
        outcomes[2][1].trap(sqlite3.Error)
        stored = {l.ip for l in read_db(self.path)}
        self.assertNotIn(lease(3).ip, stored)
        # Whatever succeeded is stored; whatever is missing failed.
        self.assertEqual(outcomes[1][0], lease(2).ip in stored)
        self.assertTrue(self.flushLoggedErrors(sqlite3.Error))

    @defer.inlineCallbacks
    def test_failed_commit_does_not_wedge_the_store(self):
        store, _ = yield self.openStore()
        store._conn = FailingCommit(store._conn)
        yield self.assertFailure(store.write([lease(1)]), sqlite3.OperationalError)
        self.flushLoggedErrors(sqlite3.OperationalError)
        store._conn.failing = False
        yield store.write([lease(2)])
        self.assertEqual(read_db(self.path), [lease(2)])

    @defer.inlineCallbacks
    def test_close_waits_for_pending_writes(self):
        store, _ = yield self.openStore()
        ds = [store.write([lease(n)]) for n in range(20)]
        yield store.close()
        self.assertTrue(all(d.called for d in ds))
        results = yield defer.gatherResults(ds)
        self.assertEqual(results, [None] * 20)
        self.assertEqual(len(read_db(self.path)), 20)

    @defer.inlineCallbacks
    def test_close_twice(self):
        store, _ = yield self.openStore()
        first = store.close()
        second = store.close()
        yield defer.gatherResults([first, second])
        self.assertIsNone(store._conn)

    @defer.inlineCallbacks
    def test_write_after_close_fails(self):
        store, _ = yield self.openStore()
        yield store.close()
        yield self.assertFailure(store.write([lease(1)]), RuntimeError)

    @defer.inlineCallbacks
    def test_open_failure(self):
        path = os.path.join(self.mktemp(), "missing-dir", "leases.db")
        store = SQLiteLeaseStore(reactor, path)
        yield self.assertFailure(store.open(), sqlite3.OperationalError)
        yield store.close()

    @defer.inlineCallbacks
    def test_close_without_open(self):
        """A service stopped before its store opened must still stop."""
        store = SQLiteLeaseStore(reactor, self.path)
        d = store.close()
        d.addTimeout(2, reactor)
        yield d


class MemoryStoreTests(SynchronousTestCase):

    def test_interface(self):
        store = MemoryLeaseStore()
        self.assertTrue(verifyObject(ILeaseStore, store))
        self.assertFalse(store.durable)

    def test_open_empty(self):
        self.assertEqual(list(self.successResultOf(MemoryLeaseStore().open())), [])

    def test_write_then_open(self):
        store = MemoryLeaseStore()
        self.assertIsNone(self.successResultOf(store.write([lease(1), lease(2)])))
        self.assertEqual(by_ip(self.successResultOf(store.open())),
                         [lease(1), lease(2)])

    def test_newest_wins(self):
        store = MemoryLeaseStore()
        store.write([lease(1, 1, "a"), lease(1, 2, "b")])
        store.write([lease(1, 3, "c")])
        self.assertEqual(list(self.successResultOf(store.open())), [lease(1, 3, "c")])

    def test_close(self):
        store = MemoryLeaseStore()
        store.write([lease(1)])
        self.assertIsNone(self.successResultOf(store.close()))

    def test_not_shared_between_instances(self):
        MemoryLeaseStore().write([lease(1)])
        self.assertEqual(list(self.successResultOf(MemoryLeaseStore().open())), [])


class RegistryTests(SynchronousTestCase):

    def test_parse_prefix_only(self):
        self.assertEqual(registry.parse_description("memory"), ("memory", {}))
        self.assertEqual(registry.parse_description("memory:"), ("memory", {}))

    def test_parse_parameters(self):
        self.assertEqual(registry.parse_description("sqlite:path=/var/lib/x.db"),
                         ("sqlite", {"path": "/var/lib/x.db"}))
        self.assertEqual(registry.parse_description("ldap:url=ldap://h:389,base=dc=x"),
                         ("ldap", {"url": "ldap://h:389", "base": "dc=x"}))

    def test_escapes(self):
        self.assertEqual(registry.parse_description(r"sqlite:path=/tmp/a\,b\=c.db"),
                         ("sqlite", {"path": "/tmp/a,b=c.db"}))
        self.assertEqual(registry.parse_description(r"x:a=1\,2,b=3"),
                         ("x", {"a": "1,2", "b": "3"}))

    def test_other_backslashes_are_literal(self):
        self.assertEqual(registry.parse_description(r"sqlite:path=C:\leases\x.db"),
                         ("sqlite", {"path": r"C:\leases\x.db"}))

    def test_trailing_backslash_kept(self):
        self.assertEqual(registry.parse_description("x:dir=C:\\leases\\"),
                         ("x", {"dir": "C:\\leases\\"}))

    def test_parameter_without_value(self):
        for text in ("sqlite:path", "sqlite:path=x,", "sqlite:path=x,,"):
            error = self.assertRaises(registry.StoreDescriptionError,
                                      registry.parse_description, text)
            self.assertIn("has no value; write key=value", str(error))

    def test_factories(self):
        found = registry.factories()
        self.assertIn("sqlite", found)
        self.assertIn("memory", found)
        for prefix, factory in found.items():
            self.assertTrue(ILeaseStoreFactory.providedBy(factory))
            self.assertEqual(factory.prefix, prefix)
            self.assertIsInstance(factory.description, str)
            self.assertIsInstance(dict(factory.parameters), dict)

    def test_default_is_valid(self):
        factory, params = registry.validate(registry.DEFAULT)
        self.assertEqual(factory.prefix, "sqlite")
        self.assertEqual(params, {"path": "dhcpfo-leases.db"})

    def test_validate_unknown_store(self):
        error = self.assertRaises(registry.StoreDescriptionError,
                                  registry.validate, "nosuch:x=1")
        message = str(error)
        self.assertIn("no lease store named 'nosuch' is installed", message)
        installed = message.rsplit("installed: ", 1)[1].split(", ")
        self.assertIn("memory", installed)
        self.assertIn("sqlite", installed)

    def test_validate_unknown_parameter(self):
        error = self.assertRaises(registry.StoreDescriptionError,
                                  registry.validate, "sqlite:file=x,zzz=1")
        self.assertIn("lease store 'sqlite' has no parameter file, zzz", str(error))
        self.assertIn("it takes: path", str(error))
        error = self.assertRaises(registry.StoreDescriptionError,
                                  registry.validate, "memory:path=x")
        self.assertIn("it takes: none", str(error))

    def test_describe_stores(self):
        text = registry.describe_stores()
        self.assertIn("--lease-store PREFIX:key=value", text)
        self.assertIn("sqlite", text)
        self.assertIn("memory", text)
        self.assertIn("path=", text)

    def test_make_store(self):
        self.assertIsInstance(storeFromDescription(reactor, "memory"), MemoryLeaseStore)
        store = storeFromDescription(reactor, r"sqlite:path=/tmp/a\,b.db")
        self.assertIsInstance(store, SQLiteLeaseStore)
        self.assertEqual(store.path, "/tmp/a,b.db")  # not opened: nothing to close
        self.assertRaises(registry.StoreDescriptionError,
                          storeFromDescription, reactor, "sqlite:nope=1")
