"""Compare DHCPv4 throughput of dhcpfo, Kea and dnsmasq in one network-namespace lab.

Run as root from the checkout:

    .venv/bin/python -m bench.dhcp_bench [--seconds 5] [--servers dhcpfo,kea,dnsmasq]
        [--rates 500,1000,2000,4000,8000,12000] [--json FILE]

One lab (a LAN, a server host 198.18.0.1/15 on e0, a client host
198.19.255.250/15 on e0) is built once.  Each server is started in turn in the
server host with a fresh lease store, and perfdhcp (a relay from the client
host) is stepped through the offered rates (:mod:`bench.stepping`).  The
report gives each server's best completed rate within the loss limit and the
ratios between the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from dataclasses import asdict

from bench.common import (
    CLIENT_ADDR, SERVER_ADDR, SBIN_PATH, Budget, add_stepping_arguments, close_lab, fmt, log,
    missing_prerequisite, parse_choices, parse_rates, relay_lab, run_guarded,
)
from bench.servers import SERVERS
from bench.stepping import Result, bench_server, write_mac_list

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def summarize(results: list[Result]) -> dict[str, dict]:
    """Per server: the best completed rate of each round, and their median."""
    out: dict[str, dict] = {}
    for r in results:
        d = out.setdefault(r.server, {"rounds": [], "statuses": []})
        d["rounds"].append(r.best.completed_per_s if r.best else None)
        d["statuses"].append(r.status)
    for d in out.values():
        vals = sorted(v for v in d["rounds"] if v is not None)
        d["median"] = statistics.median(vals) if vals else None
    return out


def ratio_table(summary: dict[str, dict]) -> dict[str, float | None]:
    def ratio(a, b):
        x, y = summary[a]["median"], summary[b]["median"]
        return round(x / y, 3) if x and y else None

    out = {}
    for other in ("kea", "dnsmasq"):
        if "dhcpfo" in summary and other in summary:
            out[f"dhcpfo/{other}"] = ratio("dhcpfo", other)
    if "kea" in summary and "dnsmasq" in summary:
        out["kea/dnsmasq"] = ratio("kea", "dnsmasq")
    return out


def print_report(results: list[Result], args, out=sys.stdout) -> None:
    rounds = max((r.round for r in results), default=1)
    print(f"\nDHCPv4 4-way exchanges via perfdhcp (relay), {args.seconds:g} s per step, "
          f"{args.macs} client MACs{', fresh server per step' if args.fresh_each_step else ''}; "
          f"best completed rate with loss <= {args.max_loss:g} %", file=out)
    hdr = (f"{'server':<9} {'round':>5} {'offered/s':>9} {'completed/s':>12} {'loss %':>7} "
           f"{'DO delay ms':>11} {'RA delay ms':>11} {'srv CPU %':>9}  status")
    print(hdr, file=out)
    for r in results:
        b = r.best
        if b is None:
            print(f"{r.server:<9} {r.round:>5} {'-':>9} {'-':>12} {'-':>7} {'-':>11} {'-':>11} "
                  f"{'-':>9}  {r.status}", file=out)
            continue
        print(f"{r.server:<9} {r.round:>5} {b.rate:>9} {b.completed_per_s:>12.1f} "
              f"{b.loss_pct:>7.2f} {fmt(b.do_avg_delay_ms, '.3f'):>11} "
              f"{fmt(b.ra_avg_delay_ms, '.3f'):>11} {fmt(b.server_cpu_pct, '.0f'):>9}  {r.status}",
              file=out)
    print("\nAll steps (in the order run):", file=out)
    for r in results:
        for s in r.steps:
            print(f"  {r.server:<9} r{r.round} {s.phase:<6} offered {s.rate:>6}/s"
                  f"  started {s.started_per_s:>8.1f}/s"
                  f"  completed {s.completed_per_s:>8.1f}/s  loss {s.loss_pct:6.2f} %"
                  f"  (DO {fmt(s.do_drops_pct, '.3g')} %, RA {fmt(s.ra_drops_pct, '.3g')} %)"
                  f"  RA delay {fmt(s.ra_avg_delay_ms, '.3f')} ms"
                  f"  CPU srv {fmt(s.server_cpu_pct, '.0f')} % perfdhcp "
                  f"{fmt(s.perfdhcp_cpu_pct, '.0f')} % other {fmt(s.other_cpu_pct, '.0f')} %"
                  + (f"  NAKs {s.server_naks}" if s.server_naks else "")
                  + ("  [disturbed, superseded]" if s.superseded
                     else "  [disturbed]" if s.disturbed else "")
                  + (f"  {s.note}" if s.note else ""), file=out)
    summary = summarize(results)
    if rounds > 1:
        print(f"\nMedian over {rounds} rounds of the best completed rate:", file=out)
        for name, d in summary.items():
            print(f"  {name:<9} {fmt(d['median'], '.1f'):>9}/s   rounds: "
                  + ", ".join(fmt(v, '.0f') for v in d["rounds"]), file=out)
    ratios = ratio_table(summary)
    if ratios:
        print("\nRatios of best completed rates" + (" (medians)" if rounds > 1 else "") + ":",
              file=out)
        for k, v in ratios.items():
            print(f"  {k:<15} {fmt(v, '.3f')}", file=out)
    kept = [s for r in results for s in r.steps if not s.superseded]
    disturbed = [s for s in kept if s.disturbed]
    if disturbed:
        worst = max(s.other_cpu_pct for s in disturbed)
        bests = sum(1 for r in results if r.best is not None and r.best.disturbed)
        print(f"\nWARNING: {len(disturbed)} of {len(kept)} steps ran while other processes used "
              f"more than {args.busy_warn:g} % of a CPU (up to {worst:.0f} %), {bests} of them a "
              f"server's best step: the figures are disturbed; rerun on a quiet machine, or "
              f"with --repeat.", file=out)
    for r in results:
        if r.error:
            print(f"\n{r.server} (round {r.round}) error: {r.error}", file=out)


# --------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_stepping_arguments(ap, "500,1000,2000,4000,8000,12000")
    ap.add_argument("--servers", default="dhcpfo,kea,dnsmasq",
                    help="comma-separated, run in this order (dhcpfo, kea, dnsmasq)")
    ap.add_argument("--macs", choices=("sequential", "random"), default="sequential",
                    help="client MACs: perfdhcp's own (base + counter, -R) or a list of "
                         "--clients random MACs picked at random per exchange (-M)")
    ap.add_argument("--seed", type=int, default=1, help="seed for --macs random")
    ap.add_argument("--fresh-each-step", action="store_true",
                    help="restart the server on an empty lease store before every step "
                         "(default: one start per server, leases accumulate over the steps)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the whole server sequence this many times; ratios use medians")
    args = ap.parse_args(argv)
    args.servers = parse_choices(ap, args.servers, SERVERS, "server")
    args.rates = parse_rates(ap, args.rates)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    why = missing_prerequisite("dhcp_bench", ("ip", "ss", "perfdhcp"))
    if why:
        print(why, file=sys.stderr)
        return 2
    results: list[Result] = []
    held = {}

    def body():
        lab = held["lab"] = relay_lab(f"dbn{os.getpid()}",
                                      {"srv": SERVER_ADDR, "cli": CLIENT_ADDR},
                                      keep_dir=args.keep_workdir)
        log(f"lab {lab.prefix} up (work dir {lab.dir})")
        args.mac_arg = []
        if args.macs == "random":
            path = lab.path("macs.txt")
            write_mac_list(path, args.clients, args.seed)
            args.mac_arg = ["-M", path]
        for round_no in range(1, args.repeat + 1):
            for name in args.servers:
                cls = SERVERS[name]
                if cls.binary and shutil.which(cls.binary, path=SBIN_PATH) is None:
                    results.append(Result(server=name, round=round_no, status="failed",
                                          error=f"{cls.binary} not installed"))
                    continue
                res = Result(server=name, round=round_no)
                results.append(res)  # filled in as it runs: an interrupt keeps what was done
                # each server (and round) gets its own budget: fair to the later ones
                bench_server(cls, lab, ("srv", "cli"), args, res, Budget(args.quiet_budget))

    interrupted = run_guarded(body, lambda: close_lab(held.get("lab")))
    print_report(results, args)
    if args.json:
        doc = {
            "seconds": args.seconds, "rates": args.rates, "clients": args.clients,
            "max_loss_pct": args.max_loss, "cpus": os.cpu_count(),
            "kea_socket": args.kea_socket, "macs": args.macs, "exit_wait_s": args.exit_wait,
            "fresh_each_step": args.fresh_each_step, "repeat": args.repeat,
            "interrupted": interrupted is not None, "busy_warn_pct": args.busy_warn,
            "results": [asdict(r) for r in results],
            "summary": summarize(results),
            "ratios": ratio_table(summarize(results)),
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    if interrupted is not None:
        return interrupted
    return 0 if results and all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
