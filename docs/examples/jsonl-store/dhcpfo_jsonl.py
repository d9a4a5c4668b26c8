"""An example dhcpfo lease store: one JSON object per line, appended, fsynced.

On open the file is replayed (the last line for an address wins).  Writes
that arrive while one is being fsynced go out together (group commit).
"""

import json
import os

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from dhcpfo.interfaces import ILeaseStore, ILeaseStoreFactory
from dhcpfo.leases.lease import Lease


def _encode(lease):
    return json.dumps({
        "ip": lease.ip, "hwaddr": lease.hwaddr.hex(),
        "client_id": lease.client_id.hex(), "hostname": lease.hostname,
        "state": lease.state, "start": lease.start, "expiry": lease.expiry,
        "owner": lease.owner, "version": lease.version}) + "\n"


def _decode(line):
    d = json.loads(line)
    return Lease(d["ip"], bytes.fromhex(d["hwaddr"]), bytes.fromhex(d["client_id"]),
                 d["hostname"], d["state"], d["start"], d["expiry"], d["owner"],
                 d["version"])


@implementer(ILeaseStore)
class JSONLinesStore:
    durable = True

    def __init__(self, reactor, path):
        self._reactor = reactor
        self.path = path
        self._pool = ThreadPool(1, 1, name="jsonl-store")
        self._file = None
        self._pending, self._waiters = [], []
        self._busy = False
        self._closed = None

    def _run(self, f, *args):
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    def open(self):
        self._pool.start()
        return self._run(self._load)

    def _load(self):
        leases = {}
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    if line.endswith("\n"):  # a torn last line was never acked
                        lease = _decode(line)
                        leases[lease.ip] = lease
        self._file = open(self.path, "a", encoding="utf-8")
        return list(leases.values())

    def write(self, leases):
        d = Deferred()
        self._pending.extend(leases)
        self._waiters.append(d)
        if not self._busy:
            self._flush()
        return d

    def _flush(self):
        text = "".join(_encode(lease) for lease in self._pending)
        waiters = self._waiters
        self._pending, self._waiters = [], []
        self._busy = True
        self._run(self._append, text).addBoth(self._done, waiters)

    def _append(self, text):
        self._file.write(text)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _done(self, result, waiters):
        self._busy = False
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)
        if self._pending:
            self._flush()

    def close(self):
        if self._closed is not None:
            return self._closed
        d = self._closed = Deferred()

        def finish():
            if self._busy:
                self._reactor.callLater(0.01, finish)
                return
            if self._file is not None:
                self._file.close()
            self._pool.stop()
            d.callback(None)
        finish()
        return d


@implementer(IPlugin, ILeaseStoreFactory)
class JSONLinesStoreFactory:
    prefix = "jsonl"
    description = "example plugin: append-only JSON lines file (docs/examples)"
    parameters = {"path": "the file (default dhcpfo-leases.jsonl)"}

    def makeStore(self, reactor, path="dhcpfo-leases.jsonl"):
        return JSONLinesStore(reactor, path)


factory = JSONLinesStoreFactory()
