#!/usr/bin/env python3
"""Durable lease writes per second of the lease stores (group commit).

Run from the checkout (the LDAP rows need root, slapd and ldap-utils):

    .venv/bin/python -m bench.store_bench [--leases 20000] [--burst 100]
        [--rate WRITES_PER_S] [--stores sqlite,ldap,ldap-nosync] [--json FILE]

For each store, on fresh state: open it, then issue ``--leases`` single-lease
writes as fast as the reactor allows (``--burst`` writes per reactor turn,
the way a busy server issues one write per ACK; or paced at ``--rate``
writes per second), and wait until every write's
Deferred has fired (= durable).  Reported: leases per second, the number of
batches the store made of them (group commit), the latency of one write
(issue to fire, p50/p99) and the time ``open()`` then takes to load them all
back from a new store instance.

Stores:
  sqlite       SQLite WAL, synchronous=FULL, in a temporary directory
  ldap         a private slapd (tests/slapd.py), mdb fsynced per entry,
               StartTLS, bound as a service account
  ldap-nosync  the same with mdb 'dbnosync' (not crash-safe; for comparison)

Every slapd started here is stopped by the pid in its pid file.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from twisted.internet import defer, task

from dhcpfo.leases.lease import ACTIVE, Lease


def lease(n):
    return Lease("198.18.%d.%d" % (n // 250, n % 250 + 1),
                 bytes([0x52, 0x54, 0, n >> 16 & 255, n >> 8 & 255, n & 255]),
                 b"\x01" + bytes([n & 255]) * 6 if n % 2 else b"",
                 "host-%d" % n, ACTIVE, 1_800_000_000.0 + n, 1_800_003_600.0 + n,
                 "bench", n + 1)


class SQLiteTarget:
    name = "sqlite"
    detail = "WAL, synchronous=FULL"

    def __init__(self, reactor, workdir):
        self.reactor = reactor
        self.path = os.path.join(workdir, "leases.db")

    def store(self):
        from dhcpfo.stores.sqlite import SQLiteLeaseStore
        return SQLiteLeaseStore(self.reactor, self.path)

    def stop(self):
        pass


class LDAPTarget:
    def __init__(self, reactor, workdir, sync=True):
        from tests import slapd as S
        reason = S.skipReason()
        if reason:
            raise RuntimeError(reason)
        self.S = S
        self.reactor = reactor
        self.name = "ldap" if sync else "ldap-nosync"
        self.detail = ("slapd mdb, StartTLS" if sync
                       else "slapd mdb dbnosync, StartTLS (not crash-safe)")
        self.slapd = S.Slapd(os.path.join(workdir, self.name), sync=sync).start()
        self.base = self.slapd.addBase("bench")

    def store(self):
        from dhcpfo.stores.ldap import LDAPLeaseStore
        return LDAPLeaseStore(self.reactor, self.slapd.url, self.base,
                              binddn=self.S.BINDDN,
                              passwordfile=self.slapd.passwordFile,
                              starttls=True, cafile=self.slapd.caFile)

    def stop(self):
        self.slapd.stop()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


@defer.inlineCallbacks
def run(reactor, target, count, burst, rate=0):
    store = target.store()
    yield store.open()
    latencies = []
    done = []
    issued = [0]
    finished = defer.Deferred()

    def fired(_, started):
        latencies.append(time.perf_counter() - started)
        done.append(None)
        if len(done) == count:
            finished.callback(None)

    def issue(n):
        for _ in range(min(n, count - issued[0])):
            started = time.perf_counter()
            store.write([lease(issued[0])]).addCallback(fired, started)
            issued[0] += 1

    def flat_out():
        issue(burst)
        if issued[0] < count:
            reactor.callLater(0, flat_out)

    def paced():
        # --rate: as many writes as are due since the start, every 10 ms
        due = int((time.perf_counter() - start) * rate) + 1
        issue(due - issued[0])
        if issued[0] < count:
            reactor.callLater(0.01, paced)

    start = time.perf_counter()
    (paced if rate else flat_out)()
    yield finished
    elapsed = time.perf_counter() - start
    batches = store.batches
    yield store.close()

    again = target.store()
    t = time.perf_counter()
    loaded = yield again.open()
    loadTime = time.perf_counter() - t
    yield again.close()
    assert len(loaded) == count, (len(loaded), count)
    return {"store": target.name, "detail": target.detail, "leases": count,
            "seconds": round(elapsed, 3), "leases_per_s": round(count / elapsed),
            "batches": batches,
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "load_s": round(loadTime, 2)}


def table(rows):
    head = ("store", "leases/s", "batches", "p50 ms", "p99 ms", "open() s", "detail")
    lines = [head] + [(r["store"], str(r["leases_per_s"]), str(r["batches"]),
                       str(r["p50_ms"]), str(r["p99_ms"]), str(r["load_s"]),
                       r["detail"]) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for i, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leases", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=100,
                        help="writes issued per reactor turn (default 100)")
    parser.add_argument("--rate", type=float, default=0,
                        help="offer this many writes per second instead of "
                             "issuing them as fast as possible")
    parser.add_argument("--stores", default="sqlite,ldap,ldap-nosync")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="dhcpfo-store-bench-")
    rows = []

    @defer.inlineCallbacks
    def bench(reactor):
        for name in args.stores.split(","):
            target = None
            try:
                if name == "sqlite":
                    target = SQLiteTarget(reactor, workdir)
                elif name in ("ldap", "ldap-nosync"):
                    target = LDAPTarget(reactor, workdir, sync=name == "ldap")
                else:
                    raise SystemExit("unknown store %r" % name)
                row = yield run(reactor, target, args.leases, args.burst, args.rate)
                rows.append(row)
                print("%s: %d leases/s" % (name, row["leases_per_s"]), file=sys.stderr)
            except RuntimeError as e:
                print("%s skipped: %s" % (name, e), file=sys.stderr)
            finally:
                if target is not None:
                    target.stop()

    try:
        task.react(lambda reactor: bench(reactor))
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("%d single-lease writes per store, %s\n" % (
        args.leases, "offered at %g/s" % args.rate if args.rate
        else "%d issued per reactor turn" % args.burst))
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
