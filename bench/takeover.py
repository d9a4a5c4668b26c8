"""Takeover and failback of a dhcpfo pair, measured under a steady load.

A steady load runs (perfdhcp broadcasting at a low rate, so the survivor hears
it too, and :mod:`bench.prober` starting a new client every interval); the
primary is ``kill -9``-ed by its recorded pid; we measure the time until the
secondary's ``dhcpfo-ctl status`` says ``active``, until a new (prober) client
has a DHCPACK from the secondary, and how long a real udhcpc, started at the
kill with a fresh MAC, takes to get its lease.  The primary is then restarted
on its database with the load still running: the time until the pair is
synced again, until the primary ACKs again, and the longest time without any
ACK (failback) are recorded.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from tests.lab import LabError, parse_perfdhcp
from tests.lab.perfdhcp import exchange

from bench.common import PARTNER_ADDR, SERVER_ADDR, fmt, log
from bench.pairs import NAMES, DhcpfoPair
from bench.prober import read_events
from bench.servers import ServerFailed


@dataclass
class Takeover:
    n: int
    ok: bool = False
    # seconds from the kill -9 of the primary:
    status_active_s: float | None = None      # the secondary's status says active (<= one
                                              # dhcpfo-ctl call, ~0.2 s, of resolution)
    first_ack_s: float | None = None          # a new (prober) client ACKed by the secondary
    first_served_sent_s: float | None = None  # ... whose DISCOVER was sent then
    probes_unanswered: int = 0                # prober clients never ACKed, sent from 1 s
                                              # before the kill to that first served one
    udhcpc_s: float | None = None             # udhcpc, started at the kill, bound
    udhcpc_server: str | None = None
    udhcpc_ip: str | None = None
    passive_answers: int = 0                  # prober ACKs from the secondary before the kill
    # failback: seconds from the restart of the primary (on its database):
    resync_s: float | None = None             # pair synced again (secondary passive)
    failback_first_ack_s: float | None = None  # a prober client ACKed by the primary again
    failback_gap_s: float | None = None       # longest time without any prober ACK, from the
                                              # restart until 1 s after the resync
    failback_unanswered: int = 0              # prober clients never ACKed in that window
    load_rate: int = 0
    load_discovers: int | None = None         # the perfdhcp load, kill to after the resync
    load_acks: int | None = None
    leases_before: dict = field(default_factory=dict)
    log_lines: list = field(default_factory=list)
    note: str = ""


def random_mac(rnd: random.Random) -> str:
    return "02:" + ":".join(f"{rnd.randrange(256):02x}" for _ in range(5))


def takeover_runs(lab, pair: DhcpfoPair, args, takeovers: list[Takeover]) -> None:
    """``args.takeovers`` times: kill -9 the primary under load, then restart it."""
    rnd = random.Random(args.seed)
    for n in range(1, args.takeovers + 1):
        tk = Takeover(n=n, load_rate=args.takeover_load)
        takeovers.append(tk)
        procs: list[subprocess.Popen] = []
        try:
            _one_takeover(lab, pair, args, tk, rnd, procs)
        except (LabError, OSError, subprocess.SubprocessError, ValueError) as e:
            tk.ok = False
            _add_note(tk, f"error: {e!r}")
        finally:
            for p in procs:
                lab.stop(p, timeout=3)
        log(f"takeover {n}: secondary status active after {fmt(tk.status_active_s, '.2f')} s, "
            f"new client ACKed by it after {fmt(tk.first_ack_s, '.2f')} s, udhcpc bound after "
            f"{fmt(tk.udhcpc_s, '.2f')} s (from {tk.udhcpc_server}); primary restarted: pair "
            f"synced after {fmt(tk.resync_s, '.1f')} s, longest gap without ACKs "
            f"{fmt(tk.failback_gap_s, '.2f')} s" + (f"  [{tk.note}]" if tk.note else ""))
        if not pair.alive() or tk.resync_s is None:
            break


def _add_note(tk: Takeover, text: str) -> None:
    tk.note = (tk.note + "; " if tk.note else "") + text


def _one_takeover(lab, pair: DhcpfoPair, args, tk: Takeover, rnd, procs):
    wd = os.path.join(pair.dir, f"takeover{tk.n}")
    os.makedirs(wd)
    tk.leases_before = pair.lease_counts()
    lasting = int(args.takeover_timeout + args.start_timeout + args.ha_timeout + 30)
    # A steady low load: perfdhcp broadcasting (both servers hear it; the passive one
    # ignores it), new clients from a MAC base of their own.
    load = None
    if args.takeover_load > 0:
        base = f"02:fa:{tk.n:02x}:00:00:00"
        load = lab.spawn("cli", ["perfdhcp", "-4", "-l", "e0", "-r", str(args.takeover_load),
                                 "-R", "100000", "-b", f"mac={base}", "-p", str(lasting)],
                         os.path.join(wd, "perfdhcp.out"))
        procs.append(load)
    probe_out = os.path.join(wd, "probe.jsonl")
    procs.append(lab.spawn("prb", [sys.executable, "-m", "bench.prober", "e0",
                                   str(args.probe_interval), str(lasting)], probe_out))
    # the udhcpc host gets a fresh MAC: a new client
    lab.ip("udc", "link", "set", "e0", "address", random_mac(rnd))

    # Steady state: the prober's clients are served by the primary.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sum(1 for e in read_events(probe_out) if e.get("ev") == "ack") >= 5:
            break
        time.sleep(0.2)
    else:
        _add_note(tk, "the prober got no ACKs from the primary before the kill")
        return
    time.sleep(1.0)
    for w in pair.watches.values():
        w.new()  # only log lines from the kill on, below

    # kill -9 the primary, by its pid; a real client starts at once
    victim = pair.primary
    os.kill(victim.proc.pid, signal.SIGKILL)
    t_kill = time.monotonic()
    udc_path = os.path.join(wd, "udhcpc.out")
    udc = lab.spawn("udc", ["udhcpc", "-f", "-q", "-n", "-i", "e0",
                            "-t", str(int(args.takeover_timeout)), "-T", "1",
                            "-s", "/bin/true"], udc_path)
    procs.append(udc)
    udc_done: dict = {}

    def wait_udhcpc():
        try:
            udc.wait(timeout=args.takeover_timeout + 5)
            udc_done["t"] = time.monotonic()
        except subprocess.TimeoutExpired:
            pass

    waiter = threading.Thread(target=wait_udhcpc, daemon=True)
    waiter.start()
    try:
        victim.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    log(f"takeover {tk.n}: killed the primary (pid {victim.proc.pid}, "
        f"status {victim.proc.returncode})")

    deadline = t_kill + args.takeover_timeout
    while time.monotonic() < deadline:
        if tk.status_active_s is None:
            s = pair.secondary.status()
            if s and (s.get("failover") or {}).get("state") == "active":
                tk.status_active_s = round(time.monotonic() - t_kill, 3)
        if tk.first_ack_s is None:
            acks = [e for e in read_events(probe_out) if e.get("ev") == "ack"
                    and e.get("server") == PARTNER_ADDR and e["t"] > t_kill]
            if acks:
                first = min(acks, key=lambda e: e["t"])
                tk.first_ack_s = round(first["t"] - t_kill, 3)
                tk.first_served_sent_s = round(first["t0"] - t_kill, 3)
        if tk.status_active_s is not None and tk.first_ack_s is not None \
                and not waiter.is_alive():
            break
        time.sleep(0.05)
    lab.stop(udc, timeout=2)
    waiter.join(timeout=5)
    with open(udc_path, errors="replace") as f:
        text = f.read()
    m = re.search(r"lease of (\S+) obtained from (\S+?),", text)
    if udc.returncode == 0 and m and "t" in udc_done:
        tk.udhcpc_s = round(udc_done["t"] - t_kill, 3)
        tk.udhcpc_ip, tk.udhcpc_server = m.group(1), m.group(2)
    else:
        _add_note(tk, f"udhcpc got no lease (exit {udc.returncode}): {text.strip()[-200:]}")
    tk.log_lines = pair.watches[NAMES[1]].new()[:20]
    tk.ok = tk.first_ack_s is not None and tk.status_active_s is not None

    # Failback: restart the primary on its database (load and prober still running);
    # the pair exchanges databases, the secondary goes back to passive.
    time.sleep(1.0)
    t_restart = time.monotonic()
    idx = pair.members.index(victim)
    victim.stop()
    new = pair.member(0)
    pair.members[idx] = new
    try:
        new.start(args.start_timeout)
        pair.wait_ready(args.ha_timeout)
    except ServerFailed as e:
        _add_note(tk, f"primary restart/resync failed: {e}")
        tk.ok = False
    else:
        tk.resync_s = round(time.monotonic() - t_restart, 2)
    time.sleep(1.0)
    t_end = time.monotonic()
    if load is not None and load.poll() is None:
        # SIGINT: perfdhcp prints its statistics and exits
        os.kill(load.pid, signal.SIGINT)
        try:
            load.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with open(os.path.join(wd, "perfdhcp.out"), errors="replace") as f:
            p = parse_perfdhcp(f.read())
        do = exchange(p, "DISCOVER-OFFER")
        if do:
            tk.load_discovers = int(do.get("sent", 0))
            tk.load_acks = int(exchange(p, "REQUEST-ACK").get("received", 0))
    for p in procs:
        lab.stop(p, timeout=3)

    ev = read_events(probe_out)
    acked = {e["n"] for e in ev if e.get("ev") == "ack"}
    tk.passive_answers = sum(1 for e in ev if e.get("ev") == "ack"
                             and e.get("server") == PARTNER_ADDR and e["t"] <= t_kill)
    if tk.first_ack_s is not None:
        t_first = t_kill + tk.first_served_sent_s
        tk.probes_unanswered = sum(1 for e in ev if e.get("ev") == "discover"
                                   and t_kill - 1.0 <= e["t"] < t_first
                                   and e["n"] not in acked)
    back = [e["t"] for e in ev if e.get("ev") == "ack" and e.get("server") == SERVER_ADDR
            and e["t"] > t_restart]
    if back:
        tk.failback_first_ack_s = round(min(back) - t_restart, 3)
    times = sorted([t_restart, t_end] + [e["t"] for e in ev if e.get("ev") == "ack"
                                          and t_restart < e["t"] < t_end])
    tk.failback_gap_s = round(max(b - a for a, b in zip(times, times[1:])), 3)
    tk.failback_unanswered = sum(1 for e in ev if e.get("ev") == "discover"
                                 and t_restart <= e["t"] < t_end - 1.0 and e["n"] not in acked)
    pair.collect_events(f"takeover {tk.n} failback")  # (the restarted primary appends)
