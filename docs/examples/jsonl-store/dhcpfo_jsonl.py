"""An example dhcpfo lease store: one JSON object per line, appended, fsynced.

On open the file is replayed (the last line for an address wins).  Writes
that arrive while one is being fsynced go out together: dhcpfo's
:class:`~dhcpfo.leases.groupcommit.GroupCommit` does the batching, so this
store only says how to append and fsync one batch.
"""

import json
import os

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from dhcpfo.interfaces import ILeaseStore, ILeaseStoreFactory
from dhcpfo.leases.groupcommit import GroupCommit
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
    _log = Logger()

    def __init__(self, reactor, path):
        self._reactor = reactor
        self.path = path
        self._pool = ThreadPool(1, 1, name="jsonl-store")
        self._file = None
        # GroupCommit does the batching and the durability bookkeeping:
        # write() Deferreds fire, in order, only after an _append() that
        # carried their leases returned (fsynced); a failed append fails
        # only its own writes.  The bound keeps a stuck disk from eating
        # memory: beyond it write() fails at once.
        self._commits = GroupCommit(self._append, maxPending=1_000_000)
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
        return self._commits.submit(leases)

    def _append(self, leases):
        text = "".join(_encode(lease) for lease in leases)
        return self._run(self._appendNow, text)

    def _appendNow(self, text):
        self._file.write(text)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self):
        if self._closed is None:
            self._closed = self._commits.close()   # waits for queued writes
            if self._pool.started:                  # else never opened
                self._closed.addCallback(lambda _: self._run(self._closeFile))
            self._closed.addBoth(self._stopped)
        d = Deferred()
        self._closed.addBoth(lambda result: (d.callback(None), result)[1])
        return d

    def _closeFile(self):
        if self._file is not None:
            self._file.close()

    def _stopped(self, result):
        if self._pool.started:
            self._pool.stop()
        if isinstance(result, Failure):
            self._log.failure("closing {path} failed", result, path=self.path)


@implementer(IPlugin, ILeaseStoreFactory)
class JSONLinesStoreFactory:
    prefix = "jsonl"
    description = "example plugin: append-only JSON lines file (docs/examples)"
    parameters = {"path": "the file (default dhcpfo-leases.jsonl)"}

    def makeStore(self, reactor, path="dhcpfo-leases.jsonl"):
        return JSONLinesStore(reactor, path)


factory = JSONLinesStoreFactory()
