"""The embedded default lease store: SQLite in WAL mode on a thread of its own.

Group commit (:class:`~dhcpfo.leases.groupcommit.GroupCommit`): while one
transaction is being written and fsynced, new writes queue; the next
transaction takes all of them.  Under load one fsync covers many leases; when
idle a write goes out at once.  ``synchronous=FULL`` makes every commit an
fsync, so a write's Deferred fires only for leases that survive power loss.
"""

import sqlite3

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from dhcpfo.interfaces import ILeaseStore
from dhcpfo.leases.groupcommit import GroupCommit
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
        self._commits = GroupCommit(self._flush)
        self._closing = None

    @property
    def batches(self):
        """Transactions committed."""
        return self._commits.flushes

    @property
    def written(self):
        """Lease rows written by committed transactions."""
        return self._commits.flushed

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
        return self._commits.submit(leases)

    def _flush(self, batch):
        """One transaction for every lease written since the last one."""
        rows = [(l.ip, l.hwaddr, l.client_id, l.hostname, l.state, l.start,
                 l.expiry, l.owner, l.version) for l in batch]
        d = deferToThreadPool(self._reactor, self._pool, self._commit, rows)
        d.addErrback(self._failed, len(rows))
        return d

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

    def _failed(self, failure, count):
        self._log.failure("writing {count} leases to {path} failed",
                          failure, count=count, path=self.path)
        return failure

    def close(self):
        if self._closing is None:
            if not self._pool.started:
                self._closing = succeed(None)
            else:
                self._closing = self._commits.close()
                self._closing.addCallback(lambda _: deferToThreadPool(
                    self._reactor, self._pool, self._closeConnection))
                self._closing.addBoth(self._stopped)
        # Every caller gets its own Deferred firing with the one close.
        d = Deferred()
        self._closing.addBoth(lambda result: (d.callback(None), result)[1])
        return d

    def _stopped(self, result):
        self._pool.stop()
        if isinstance(result, Failure):
            self._log.failure("closing {path} failed", result, path=self.path)

    def _closeConnection(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
