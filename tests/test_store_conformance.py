"""The built-in stores run the conformance suite."""

import os
import sqlite3

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from dhcpfo.leases.lease import Lease
from dhcpfo.stores.memory import MemoryLeaseStore
from dhcpfo.stores.sqlite import SQLiteLeaseStore
from tests.store_conformance import StoreConformanceMixin


class SQLiteConformance(StoreConformanceMixin, TestCase):
    def setUp(self):
        self.path = os.path.abspath(self.mktemp())

    def makeStore(self):
        return SQLiteLeaseStore(reactor, self.path)

    def backendLeases(self):
        conn = sqlite3.connect(self.path)
        try:
            return [Lease(*row) for row in conn.execute(
                "SELECT ip, hwaddr, client_id, hostname, state, start, expiry, "
                "owner, version FROM leases")]
        finally:
            conn.close()

    def breakBackend(self, store):
        # Another connection holds the write lock past the busy timeout.
        self._blocker = sqlite3.connect(self.path, timeout=0)
        self._blocker.execute("BEGIN IMMEDIATE")
        self.addCleanup(self._blocker.close)
        return store._pool.callInThread(
            lambda: store._conn.execute("PRAGMA busy_timeout=0"))


class MemoryConformance(StoreConformanceMixin, TestCase):
    durableAcrossRestart = False

    def makeStore(self):
        self.store = MemoryLeaseStore()
        return self.store

    def backendLeases(self):
        return list(self.store.leases.values())

    def breakBackend(self, store):
        raise self.skipTest("the memory store cannot fail a write")
