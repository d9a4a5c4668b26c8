"""Stepping perfdhcp's offered rate against one server (or pair) and keeping the score.

perfdhcp runs in the client host as a relay (it unicasts to the server with
giaddr set; the server answers to port 67).  Each step counts *completed*
exchanges (ACKs received in the REQUEST-ACK statistics; perfdhcp's "Rate:"
line counts exchanges *started*) and the end-to-end loss (1 - ACKs received /
DISCOVERs sent).  A server's result is the best completed rate among the steps
whose loss is at most --max-loss.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field

from tests.lab import LabError, parse_perfdhcp
from tests.lab.perfdhcp import exchange

from bench.common import (
    NCPU, SERVER_ADDR, Budget, children_cpu_seconds, cpu_seconds, cpu_seconds_sum, log,
    machine_idle_seconds, wait_idle, wait_quiet,
)
from bench.servers import Server, ServerFailed


@dataclass
class Step:
    rate: int
    seconds: float
    exit_status: int | None = None
    perfdhcp_rate: float | None = None     # perfdhcp's "Rate:" line, over period + -W wait
    started_per_s: float = 0.0             # DISCOVERs sent / test period
    discover_sent: int = 0
    offer_received: int = 0
    request_sent: int = 0
    ack_received: int = 0
    completed_per_s: float = 0.0           # ACKs received / test period
    loss_pct: float = 100.0                # 1 - ACKs received / DISCOVERs sent
    do_drops_pct: float | None = None      # perfdhcp's own ratios, per exchange
    ra_drops_pct: float | None = None
    do_avg_delay_ms: float | None = None
    ra_avg_delay_ms: float | None = None
    ra_max_delay_ms: float | None = None
    server_cpu_pct: float | None = None    # % of one CPU over the run minus the -W wait
    perfdhcp_cpu_pct: float | None = None  # % of one CPU, over the whole perfdhcp run
    other_cpu_pct: float | None = None     # the rest of the machine's busy CPU, same scale
    peer_cpu_pct: float | None = None      # the server's partners (Server.pids()[1:]), if any
    server_naks: int | None = None         # NAKs the server logged during the step
    ok: bool = False
    disturbed: bool = False                # other_cpu_pct over --busy-warn
    superseded: bool = False               # disturbed, and run again: ignored
    phase: str = "step"                    # step | down (halving) | refine (bisection)
    note: str = ""


def perfdhcp_argv(rate: int, seconds: float, clients: int, extra: list[str]) -> list[str]:
    # -p alone counts exchanges still in flight when the period ends as drops; -W (in
    # microseconds) lets them finish without starting new ones.  perfdhcp's "Rate:" line
    # then divides by period + wait, so completed rates are computed here instead.
    return (["perfdhcp", "-4", "-l", "e0", "-r", str(rate), "-R", str(clients),
             "-p", f"{seconds:g}"] + extra + [SERVER_ADDR])


def probe(lab, client: str, exit_wait: list[str]) -> bool:
    """A few exchanges at 10/s for 1 s: does the server answer at all?

    (perfdhcp without -r does not do "a single exchange" as its help says: it floods;
    and -n N exits as soon as N DISCOVERs are sent, before any answer can count.)
    """
    try:
        r = lab.run(client, perfdhcp_argv(10, 1, 1, exit_wait), timeout=15)
    except LabError:
        return False
    return exchange(parse_perfdhcp(r.stdout), "REQUEST-ACK").get("received", 0) > 0


def write_mac_list(path: str, count: int, seed: int) -> None:
    """``count`` distinct random unicast, locally administered MACs, one a line (perfdhcp -M)."""
    rnd = random.Random(seed)
    macs: set[str] = set()
    while len(macs) < count:
        macs.add("02:" + ":".join(f"{rnd.randrange(256):02x}" for _ in range(5)))
    with open(path, "w") as f:
        f.write("\n".join(sorted(macs)) + "\n")


def exit_wait_arg(args) -> list[str]:
    return ["-W", str(int(args.exit_wait * 1e6))] if args.exit_wait > 0 else []


def run_step(lab, client: str, server: Server, rate: int, args) -> Step:
    st = Step(rate=rate, seconds=args.seconds)
    argv = perfdhcp_argv(rate, args.seconds, args.clients,
                         exit_wait_arg(args) + args.mac_arg + args.perfdhcp_arg)
    pids = server.pids()
    cpu0, peer0 = cpu_seconds(pids[0]), cpu_seconds_sum(pids[1:])
    naks0 = server.naks()
    idle0, kids0 = machine_idle_seconds(), children_cpu_seconds()
    t0 = time.monotonic()
    try:
        cp = lab.run(client, argv, timeout=args.seconds + 30)
    except LabError:
        st.note = "perfdhcp timed out"
        return st
    elapsed = time.monotonic() - t0
    cpu1, peer1 = cpu_seconds(pids[0]), cpu_seconds_sum(pids[1:])
    idle1, kids1 = machine_idle_seconds(), children_cpu_seconds()
    busy = elapsed - args.exit_wait  # the -W tail is mostly idle (unless backlogged)
    if cpu0 is not None and cpu1 is not None and busy > 0:
        st.server_cpu_pct = round(100 * (cpu1 - cpu0) / busy, 1)
        # perfdhcp's own CPU, and what the rest of the machine (other processes, and
        # kernel softirq work not charged to either) used; both over the whole run.
        st.perfdhcp_cpu_pct = round(100 * (kids1 - kids0) / elapsed, 1)
        peer = 0.0
        if len(pids) > 1 and peer0 is not None and peer1 is not None:
            peer = peer1 - peer0
            st.peer_cpu_pct = round(100 * peer / busy, 1)
        machine_busy = elapsed * NCPU - (idle1 - idle0)
        st.other_cpu_pct = round(
            100 * (machine_busy - (cpu1 - cpu0) - peer - (kids1 - kids0)) / elapsed, 1)
    st.exit_status = cp.returncode
    naks1 = server.naks()
    if naks0 is not None and naks1 is not None:
        st.server_naks = naks1 - naks0
    if args.verbose:
        log(f"perfdhcp output:\n{cp.stdout}{cp.stderr}")
    p = parse_perfdhcp(cp.stdout)
    do, ra = exchange(p, "DISCOVER-OFFER"), exchange(p, "REQUEST-ACK")
    if not do:
        st.note = f"unparsable perfdhcp output (exit {cp.returncode}): " + (
            cp.stderr.strip() or cp.stdout.strip())[-300:]
        return st
    st.perfdhcp_rate = p.get("rate")
    st.discover_sent = int(do.get("sent", 0))
    st.offer_received = int(do.get("received", 0))
    st.request_sent = int(ra.get("sent", 0))
    st.ack_received = int(ra.get("received", 0))
    st.do_drops_pct = do.get("drops_ratio")
    st.ra_drops_pct = ra.get("drops_ratio")
    st.do_avg_delay_ms = do.get("avg_delay")
    st.ra_avg_delay_ms = ra.get("avg_delay")
    st.started_per_s = round(st.discover_sent / args.seconds, 1)
    st.completed_per_s = round(st.ack_received / args.seconds, 1)
    st.ra_max_delay_ms = ra.get("max_delay")
    if st.discover_sent:
        st.loss_pct = round(100.0 * (1 - st.ack_received / st.discover_sent), 3)
    st.ok = st.discover_sent > 0 and st.loss_pct <= args.max_loss
    st.disturbed = st.other_cpu_pct is not None and st.other_cpu_pct > args.busy_warn
    if st.discover_sent < 0.9 * rate * args.seconds:
        st.note = (f"perfdhcp sent only {st.discover_sent / args.seconds:.0f} DISCOVER/s "
                   f"of {rate} offered")
    return st


@dataclass
class Result:
    server: str
    round: int = 1
    status: str = "not run"                # ok | failed | no step within loss limit
    error: str = ""
    steps: list[Step] = field(default_factory=list)
    best: Step | None = None


def bench_server(cls, lab, hosts: tuple, args, res: Result, budget: Budget,
                 after=None) -> Result:
    """Step one server through the rates, filling in ``res`` as it goes.

    ``hosts`` is (server host, client host) in ``lab``; the first is passed on to
    ``cls`` as is (a server pair takes a tuple of hosts there).  Work directories
    go in the lab's directory.  ``after``, if given, is called as
    ``after(server, res)`` once stepping is over, while the server still runs
    (unless it failed to start or died).
    """
    server_host, client = hosts
    res.status = "running"
    workdir = lab.path(f"{cls.name}-{res.round}")
    starts = 0
    server: Server | None = None

    class Died(Exception):
        pass

    def launch() -> Server:
        """Start the server on an empty work dir (fresh lease state) and wait for answers."""
        nonlocal starts
        starts += 1
        d = os.path.join(workdir, f"start{starts}")
        os.makedirs(d)
        srv = cls(lab, server_host, d, args)
        try:
            srv.start(args.start_timeout)
            deadline = time.monotonic() + args.start_timeout
            while not probe(lab, client, exit_wait_arg(args)):
                if not srv.alive():
                    raise ServerFailed(f"exited with status {srv.proc.returncode}")
                if time.monotonic() > deadline:
                    raise ServerFailed("ready, but does not answer perfdhcp")
                time.sleep(0.5)
        except ServerFailed as e:
            res.status, res.error = "failed", f"{e}\n{srv.log_tail()}"
            log(f"{cls.name}: FAILED to start: {e}")
            srv.stop()
            raise Died()
        log(f"{cls.name}: ready, answering")
        return srv

    def valid() -> list[Step]:
        return [s for s in res.steps if not s.superseded]

    try:
        def step(rate: int, phase: str) -> Step:
            nonlocal server
            if server is None or args.fresh_each_step and res.steps:
                if server is not None:
                    server.stop()
                    server = None
                server = launch()
            wait_quiet(server.pids(), args, budget)
            st = run_step(lab, client, server, rate, args)
            st.phase = phase
            res.steps.append(st)
            if st.disturbed and budget.left >= args.seconds + args.exit_wait:
                st.superseded = True
                log(f"{cls.name}: {rate}/s step disturbed (other processes used "
                    f"{st.other_cpu_pct:.0f} % of a CPU); running it again")
                budget.spend(args.seconds + args.exit_wait)
                if args.fresh_each_step:
                    server.stop()
                    server = None
                    server = launch()
                else:
                    wait_idle(server.pids(), args.drain_timeout)
                wait_quiet(server.pids(), args, budget)
                st = run_step(lab, client, server, rate, args)
                st.phase = phase
                res.steps.append(st)
            server.after_step(st)
            delay = st.ra_avg_delay_ms if st.ra_avg_delay_ms is not None else float("nan")
            log(f"{cls.name}: offered {rate:>6}/s -> completed {st.completed_per_s:>8.1f}/s, "
                f"loss {st.loss_pct:6.2f} %, RA avg delay {delay:.3f} ms, "
                f"CPU server {st.server_cpu_pct} % "
                + (f"peer {st.peer_cpu_pct} % " if st.peer_cpu_pct is not None else "")
                + f"perfdhcp {st.perfdhcp_cpu_pct} % other {st.other_cpu_pct} %"
                + (f", {st.server_naks} NAKs" if st.server_naks else "")
                + (f"  [{st.note}]" if st.note else ""))
            if not server.alive():
                res.status = "failed"
                res.error = (f"server exited with status {server.proc.returncode} during the "
                             f"{rate}/s step\n{server.log_tail()}")
                raise Died()
            wait_idle(server.pids(), args.drain_timeout)
            return st

        try:
            # 1. The listed rates, in order, until --stop-after failures in a row.
            failures_in_a_row = 0
            for n, rate in enumerate(args.rates):
                if step(rate, "step").ok:
                    failures_in_a_row = 0
                else:
                    failures_in_a_row += 1
                    if failures_in_a_row >= args.stop_after:
                        if args.rates[n + 1:]:
                            log(f"{cls.name}: {failures_in_a_row} steps in a row over the loss "
                                f"limit; skipping {args.rates[n + 1:]}")
                        break
            # 2. Nothing passed: halve the lowest rate down to --min-rate until one does.
            rate = min(args.rates)
            while not any(s.ok for s in valid()) and rate // 2 >= args.min_rate:
                rate //= 2
                step(rate, "down")
            # 3. Bisect between the best passing rate and the next failing one above it.
            for _ in range(args.refine):
                passed = [s.rate for s in valid() if s.ok]
                if not passed:
                    break
                lo = max(passed)
                above = [s.rate for s in valid() if not s.ok and s.rate > lo]
                if not above:
                    break
                hi = min(above)
                mid = int(round((lo + hi) / 2, -2)) or (lo + hi) // 2
                if not lo < mid < hi or hi - lo < max(100, lo // 20):
                    break
                step(mid, "refine")
        except Died:
            pass
        if after is not None and server is not None and server.alive():
            after(server, res)
        good = [s for s in valid() if s.ok]
        if good:
            res.best = max(good, key=lambda s: s.completed_per_s)
            if res.status != "failed":
                res.status = "ok"
        elif res.status != "failed":
            res.status = "no step within loss limit"
        return res
    finally:
        if server is not None:
            server.stop()


