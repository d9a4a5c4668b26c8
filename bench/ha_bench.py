"""Failover benchmark: a dhcpfo primary/secondary pair vs a Kea 2.2 hot-standby HA pair.

Run as root from the checkout:

    .venv/bin/python -m bench.ha_bench [--pairs dhcpfo,kea-mt,kea-ca] [--seconds 5]
        [--rates 500,1000,2000,3000,4000,6000,8000] [--takeovers 3] [--json FILE]

One lab: a LAN; server hosts s1 198.18.0.1/15 (primary) and s2 198.18.0.2/15
(secondary/standby); a perfdhcp host cli 198.19.255.250/15 (a relay
unicasting to the primary); two hosts without an address, prb and udc, for
the takeover clients.

1. Throughput.  Each pair in turn (:mod:`bench.pairs`, :mod:`bench.kea_ha`),
   on fresh lease stores, is started, waited for (dhcpfo: the secondary
   ``passive`` and synced, holding its reserve; Kea: both servers in
   ``hot-standby``), and perfdhcp is stepped against the primary
   (:mod:`bench.stepping`); a pair's result is its best completed rate with
   loss <= --max-loss (1 %).
2. Takeover (dhcpfo only), after the stepping, on the same pair
   (:mod:`bench.takeover`), --takeovers times.
3. A table, the ratio dhcpfo-pair / each Kea pair, the takeover figures; --json FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import asdict

from tests.lab import LabError

from bench.common import (
    CLIENT_ADDR, PARTNER_ADDR, SERVER_ADDR, Budget, add_stepping_arguments, close_lab, fmt,
    log, missing_prerequisite, parse_choices, parse_rates, relay_lab, run_guarded,
)
from bench.kea_ha import KeaPairCA, KeaPairMT
from bench.pairs import NAMES, DhcpfoPair
from bench.stepping import Result, bench_server
from bench.takeover import Takeover, takeover_runs

PAIRS = {"dhcpfo": DhcpfoPair, "kea-mt": KeaPairMT, "kea-ca": KeaPairCA}


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def best(res: Result) -> float | None:
    return res.best.completed_per_s if res.best else None


def ratios(results: list[Result]) -> dict[str, float | None]:
    d = {r.server: best(r) for r in results}
    out = {}
    a = d.get(DhcpfoPair.name)
    for k in (KeaPairMT.name, KeaPairCA.name):
        if k in d:
            out[f"{DhcpfoPair.name}/{k}"] = round(a / d[k], 3) if a and d[k] else None
    return out


def print_report(results: list[Result], pairs_info: dict, takeovers: list[Takeover], args,
                 out=sys.stdout) -> None:
    print(f"\nFailover pairs, perfdhcp 4-way exchanges via a relay to the primary, "
          f"{args.seconds:g} s per step; best completed rate with loss <= {args.max_loss:g} %",
          file=out)
    print(f"{'pair':<12} {'offered/s':>9} {'completed/s':>12} {'loss %':>7} "
          f"{'DO ms':>7} {'RA ms':>8} {'prim CPU':>8} {'peer CPU':>8} {'ready s':>8}  status",
          file=out)
    for r in results:
        b = r.best
        ready = fmt(pairs_info.get(r.server, {}).get("ready_after_s"), ".1f")
        if b is None:
            print(f"{r.server:<12} {'-':>9} {'-':>12} {'-':>7} {'-':>7} {'-':>8} {'-':>8} "
                  f"{'-':>8} {ready:>8}  {r.status}", file=out)
            continue
        print(f"{r.server:<12} {b.rate:>9} {b.completed_per_s:>12.1f} {b.loss_pct:>7.2f} "
              f"{fmt(b.do_avg_delay_ms, '.2f'):>7} {fmt(b.ra_avg_delay_ms, '.2f'):>8} "
              f"{fmt(b.server_cpu_pct, '.0f'):>7}% {fmt(b.peer_cpu_pct, '.0f'):>7}% "
              f"{ready:>8}  {r.status}", file=out)
    print("\nAll steps (in the order run):", file=out)
    for r in results:
        for s in r.steps:
            print(f"  {r.server:<11} {s.phase:<6} offered {s.rate:>6}/s"
                  f"  completed {s.completed_per_s:>8.1f}/s  loss {s.loss_pct:6.2f} %"
                  f"  (DO {fmt(s.do_drops_pct, '.3g')} %, RA {fmt(s.ra_drops_pct, '.3g')} %)"
                  f"  delay DO {fmt(s.do_avg_delay_ms, '.2f')} RA {fmt(s.ra_avg_delay_ms, '.2f')}"
                  f" ms  CPU prim {fmt(s.server_cpu_pct, '.0f')} % peer "
                  f"{fmt(s.peer_cpu_pct, '.0f')} % perfdhcp {fmt(s.perfdhcp_cpu_pct, '.0f')} %"
                  f" other {fmt(s.other_cpu_pct, '.0f')} %"
                  + ("  [disturbed, superseded]" if s.superseded
                     else "  [disturbed]" if s.disturbed else "")
                  + (f"  {s.note}" if s.note else ""), file=out)
    rt = ratios(results)
    if rt:
        print("\nRatio of best completed rates (target >= 2):", file=out)
        for k, v in rt.items():
            print(f"  {k:<24} {fmt(v, '.2f')}", file=out)
    if takeovers:
        print(f"\nTakeover: kill -9 of the dhcpfo primary, then its restart on its database "
              f"(steady load through both: perfdhcp {args.takeover_load}/s broadcast, and a "
              f"new probe client every {args.probe_interval * 1000:g} ms)", file=out)
        print(f"  {'':2} {'--- seconds from the kill ---':^57}   "
              f"{'--- seconds from the restart ---':^36}", file=out)
        print(f"  {'#':>2} {'status':>7} {'new client':>10} {'(DISCOVER':>10} {'udhcpc':>7} "
              f"{'udhcpc':>11} {'probes':>6}   {'pair':>6} {'primary':>8} {'longest':>7} "
              f"{'probes':>6}   {'load':>10}", file=out)
        print(f"  {'':>2} {'active':>7} {'ACKed':>10} {'sent)':>10} {'bound':>7} "
              f"{'from':>11} {'lost':>6}   {'synced':>6} {'ACKs':>8} {'gap':>7} "
              f"{'lost':>6}   {'ACKed/sent':>10}", file=out)
        for t in takeovers:
            load = (f"{t.load_acks}/{t.load_discovers}" if t.load_discovers is not None
                    else "-")
            print(f"  {t.n:>2} {fmt(t.status_active_s, '.2f'):>7} {fmt(t.first_ack_s, '.2f'):>10}"
                  f" {fmt(t.first_served_sent_s, '.2f'):>10} {fmt(t.udhcpc_s, '.2f'):>7} "
                  f"{t.udhcpc_server or '-':>11} {t.probes_unanswered:>6}   "
                  f"{fmt(t.resync_s, '.1f'):>6} {fmt(t.failback_first_ack_s, '.2f'):>8} "
                  f"{fmt(t.failback_gap_s, '.2f'):>7} {t.failback_unanswered:>6}   {load:>10}"
                  + (f"  {t.note}" if t.note else ""), file=out)
        vals = [t.first_ack_s for t in takeovers if t.first_ack_s is not None]
        if vals:
            print(f"  new client served by the secondary after the kill: median "
                  f"{statistics.median(vals):.2f} s, max {max(vals):.2f} s (limit 5 s)", file=out)
        gaps = [t.failback_gap_s for t in takeovers if t.failback_gap_s is not None]
        if gaps:
            print(f"  failback (primary restarted): longest time without any ACK: median "
                  f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s", file=out)
        bad = sum(t.passive_answers for t in takeovers)
        if bad:
            print(f"  WARNING: the passive secondary ACKed {bad} probe client(s) before a kill",
                  file=out)
        for t in takeovers[:1]:
            if t.log_lines:
                print(f"  takeover {t.n}, the secondary's log:", file=out)
                for l in t.log_lines[:6]:
                    print(f"    {l}", file=out)
    ev = [(name, e) for name, info in pairs_info.items() for e in info.get("events", [])
          if e["when"] not in ("start-up", "end")]
    if ev:
        print("\nFailover/HA log lines after start-up (steps, failbacks; first 8 of each):",
              file=out)
        for name, e in ev:
            print(f"  {name} {e['when']}: {len(e['lines'])} line(s)", file=out)
            for l in e["lines"][:8]:
                print(f"    {l[:220]}", file=out)
    for name, info in pairs_info.items():
        if info.get("leases_after_steps"):
            print(f"\n{name}: leases after the steps: {info['leases_after_steps']}", file=out)
    kept = [s for r in results for s in r.steps if not s.superseded]
    disturbed = [s for s in kept if s.disturbed]
    if disturbed:
        print(f"\nWARNING: {len(disturbed)} of {len(kept)} steps ran while other processes used "
              f"more than {args.busy_warn:g} % of a CPU (up to "
              f"{max(s.other_cpu_pct for s in disturbed):.0f} %): the figures are disturbed.",
              file=out)
    for r in results:
        if r.error:
            print(f"\n{r.server} error: {r.error}", file=out)


# --------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_stepping_arguments(ap, "500,1000,2000,3000,4000,6000,8000", subject="pair",
                              quiet_budget=20.0)
    ap.add_argument("--pairs", default="dhcpfo,kea-mt,kea-ca",
                    help="comma-separated, run in this order (dhcpfo, kea-mt, kea-ca)")
    ap.add_argument("--ha-timeout", type=float, default=90.0,
                    help="max seconds for a pair to be synced / in hot-standby")
    ap.add_argument("--kea-heartbeat-delay", type=int, default=10000,
                    help="Kea HA heartbeat-delay in ms (Kea's default 10000; the pair "
                         "moves one state per heartbeat, so start-up takes ~2-3 of them)")
    ap.add_argument("--dhcpfo-arg", action="append", default=[],
                    help="extra argument for both dhcpfo servers (repeatable), e.g. "
                         "--dhcpfo-arg=--failover-dead-after --dhcpfo-arg=1.5")
    ap.add_argument("--takeovers", type=int, default=3, help="kill -9 repetitions (0: none)")
    ap.add_argument("--takeover-load", type=int, default=100,
                    help="perfdhcp rate (broadcast) running through each takeover; 0: none")
    ap.add_argument("--probe-interval", type=float, default=0.1,
                    help="seconds between the prober's new clients")
    ap.add_argument("--takeover-timeout", type=float, default=15.0,
                    help="max seconds to wait for the secondary to serve after the kill")
    ap.add_argument("--seed", type=int, default=1, help="seed for the udhcpc MACs")
    args = ap.parse_args(argv)
    args.pairs = parse_choices(ap, args.pairs, PAIRS, "pair")
    args.rates = parse_rates(ap, args.rates)
    # what dhcp_bench's machinery expects
    args.fresh_each_step = False
    args.macs = "sequential"
    args.mac_arg = []
    return args


def bench_pair(lab, name, args, results, pairs_info, takeovers) -> None:
    """Step one pair (and, for dhcpfo, measure its takeovers), adding to the tallies."""
    cls = PAIRS[name]
    res = Result(server=cls.name)
    results.append(res)
    info = pairs_info.setdefault(cls.name, {})
    holder = {}

    class Tracked(cls):  # remember the pair object for its events and figures
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            holder["pair"] = self

    Tracked.name = cls.name

    def after(server, res):
        if name == "dhcpfo":
            info["leases_after_steps"] = server.lease_counts()
            if args.takeovers:
                takeover_runs(lab, server, args, takeovers)

    try:
        bench_server(Tracked, lab, (("s1", "s2"), "cli"), args, res,
                     Budget(args.quiet_budget), after=after)
    except (LabError, OSError, ValueError) as e:
        res.status, res.error = "failed", f"{e!r}"
        log(f"{cls.name}: FAILED: {e!r}")
    finally:
        p = holder.get("pair")
        if p is not None:
            p.collect_events("end")
            info["ready_after_s"] = p.ready_after
            info["events"] = p.events


def main(argv=None) -> int:
    args = parse_args(argv)
    why = missing_prerequisite(
        "ha_bench", ("ip", "ss", "perfdhcp") + (("udhcpc",) if args.takeovers else ()))
    if why:
        print(why, file=sys.stderr)
        return 2
    results: list[Result] = []
    pairs_info: dict[str, dict] = {}
    takeovers: list[Takeover] = []
    held = {}

    def body():
        hosts = {"s1": SERVER_ADDR, "s2": PARTNER_ADDR, "cli": CLIENT_ADDR}
        if args.takeovers:
            hosts.update(prb=None, udc=None)
        lab = held["lab"] = relay_lab(f"hab{os.getpid()}", hosts, keep_dir=args.keep_workdir)
        log(f"lab {lab.prefix} up (work dir {lab.dir})")
        if "dhcpfo" in args.pairs:
            from dhcpfo.failover.certs import make_certs
            args.certdir = lab.path("certs")
            make_certs(args.certdir, list(NAMES))
        for name in args.pairs:
            bench_pair(lab, name, args, results, pairs_info, takeovers)

    interrupted = run_guarded(body, lambda: close_lab(held.get("lab")))
    print_report(results, pairs_info, takeovers, args)
    if args.json:
        doc = {
            "seconds": args.seconds, "rates": args.rates, "clients": args.clients,
            "max_loss_pct": args.max_loss, "cpus": os.cpu_count(),
            "kea_heartbeat_delay_ms": args.kea_heartbeat_delay,
            "dhcpfo_args": args.dhcpfo_arg, "interrupted": interrupted is not None,
            "results": [asdict(r) for r in results],
            "best": {r.server: best(r) for r in results},
            "ratios": ratios(results),
            "pairs": pairs_info,
            "takeover": {"load_rate": args.takeover_load, "probe_interval_s": args.probe_interval,
                         "runs": [asdict(t) for t in takeovers]},
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    if interrupted is not None:
        return interrupted
    ok = results and all(r.status == "ok" for r in results)
    ok = ok and all(t.ok for t in takeovers) and len(takeovers) == args.takeovers * (
        "dhcpfo" in args.pairs and any(r.server == DhcpfoPair.name and r.best for r in results))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
