"""The embedded default lease store: SQLite in WAL mode on a thread of its own.

Group commit: while one transaction is being written and fsynced, new writes
queue; the next transaction takes all of them.  Under load one fsync covers
many leases; when idle a write goes out at once.
"""

import sqlite3

from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from dhcpfo.interfaces import ILeaseStore
from dhcpfo.leases.lease import Lease

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    ip TEXT PRIMARY KEY,
    hwaddr BLOB NOT NULL,
    client_id BLOB NOT NULL,
    hostname TEXT NOT NULL,
    state TEXT NOT NULL,
    start REAL NOT NULL,
    expiry REAL NOT NULL,
    owner TEXT NOT NULL,
    version INTEGER NOT NULL
)
"""
_UPSERT = "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_COLUMNS = "ip, hwaddr, client_id, hostname, state, start, expiry, owner, version"


@implementer(ILeaseStore)
class SQLiteLeaseStore:
    durable = True
    _log = Logger()

    def __init__(self, reactor, path):
        self._reactor = reactor
        self.path = path
        self._pool = ThreadPool(1, 1, name="dhcpfo-sqlite")
        self._conn = None
        self._pending = []
        self._waiters = []
        self._busy = False
        self._closing = None
        self._closeStarted = False
        self.batches = 0
        self.written = 0

    def open(self):
        self._pool.start()
        return deferToThreadPool(self._reactor, self._pool, self._open)

    def _open(self):
        conn = sqlite3.connect(self.path, check_same_thread=False,
                               isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a WAL commit is fsynced before it returns, so "durable" means
        # it survives power loss, not only a crash of this process.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SCHEMA)
        self._conn = conn
        return [Lease(*row) for row in
                conn.execute("SELECT %s FROM leases" % _COLUMNS)]

    def write(self, leases):
        if self._closing is not None:
            return fail(RuntimeError("lease store %s is closed" % self.path))
        d = Deferred()
        self._pending.extend(leases)
        self._waiters.append(d)
        if not self._busy:
            self._flush()
        return d

    def _flush(self):
        batch, waiters = self._pending, self._waiters
        self._pending, self._waiters = [], []
        self._busy = True
        rows = [(l.ip, l.hwaddr, l.client_id, l.hostname, l.state, l.start,
                 l.expiry, l.owner, l.version) for l in batch]
        d = deferToThreadPool(self._reactor, self._pool, self._commit, rows)
        d.addBoth(self._flushed, waiters, len(rows))

    def _commit(self, rows):
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.executemany(_UPSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _flushed(self, result, waiters, count):
        self._busy = False
        if isinstance(result, Failure):
            self._log.failure("writing {count} leases to {path} failed",
                              result, count=count, path=self.path)
            for d in waiters:
                d.errback(result)
        else:
            self.batches += 1
            self.written += count
            for d in waiters:
                d.callback(None)
        if self._pending:
            self._flush()
        elif self._closing is not None:
            self._finishClose()

    def close(self):
        if self._closing is None:
            self._closing = Deferred()
            if not self._pool.started:
                self._closeStarted = True
                self._closing.callback(None)
            elif not self._busy:
                self._finishClose()
        return self._closing

    def _finishClose(self):
        if self._closeStarted:
            return
        self._closeStarted = True
        closing = self._closing
        d = deferToThreadPool(self._reactor, self._pool, self._closeConnection)

        def stopped(result):
            self._pool.stop()
            closing.callback(None)
            return result
        d.addBoth(stopped)

    def _closeConnection(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
