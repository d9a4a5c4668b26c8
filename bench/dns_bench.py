#!/usr/bin/env python3
"""DNS throughput of dhcpfo against dnsmasq on local names, in one namespace lab.

Run as root from the checkout:

    .venv/bin/python -m bench.dns_bench [--rounds 5] [--seconds 10]
        [--clients 4] [--names 1000] [--json FILE]

One lab is built (tests.lab): a bridge, a server host with 192.0.2.1/24
(dhcpfo) and 192.0.2.3/24 (dnsmasq) on its e0, and a client host
192.0.2.2/24.  Both servers load the same /etc/hosts-format file of
``--names`` names (``hostN``, qualified under lab.test: dhcpfo with
--addn-hosts, dnsmasq with --addn-hosts --expand-hosts) and run side by
side; lease names go through the same precomputed answers in dhcpfo.
dnsperf (Debian package ``dnsperf``) then sends random ``hostN.lab.test A``
queries, ``dnsperf -s ADDR -d FILE -l SECONDS -c CLIENTS``, alternating
between the servers for ``--rounds`` rounds after a short warm-up, and the
script prints each run's queries per second, lost queries and the server's
CPU time per answer, then the dhcpfo/dnsmasq ratio of every round and their
median: comparing within one run cancels out how busy the machine is.  On a
shared machine the q/s ratio swings with other load; the ratio of CPU time
per answer (answers per CPU second) is printed too and is much steadier.

Lab rules (those of tests.lab): documentation addresses only, namespaces
with a per-run prefix, processes stopped by their recorded pid, everything
removed at exit, even on failure.
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys

from tests.lab import Lab, LabError, tail

from bench.common import SBIN_PATH, cpu_seconds

DHCPFO_ADDR = "192.0.2.1"
DNSMASQ_ADDR = "192.0.2.3"
CLIENT_ADDR = "192.0.2.2"


def dnsperf(lab, server, queries, seconds, clients):
    r = lab.run("cli", ["dnsperf", "-s", server, "-d", queries, "-l", str(seconds),
                        "-c", str(clients)], timeout=seconds + 30)
    out = r.stdout + r.stderr
    qps = re.search(r"Queries per second:\s+([0-9.]+)", out)
    sent = re.search(r"Queries sent:\s+(\d+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    if not qps:
        raise LabError("dnsperf against %s printed no rate:\n%s" % (server, out))
    return {"qps": float(qps.group(1)), "sent": int(sent.group(1)),
            "lost": int(lost.group(1)), "output": out}


def measure(lab, name, proc, server, queries, seconds, clients):
    before = cpu_seconds(proc.pid)
    result = dnsperf(lab, server, queries, seconds, clients)
    used = cpu_seconds(proc.pid) - before
    answered = max(1, result["sent"] - result["lost"])
    result["cpu_us_per_query"] = used / answered * 1e6
    print("  %-7s %9.0f q/s  lost %d of %d  server CPU %.1f us/query" % (
        name, result["qps"], result["lost"], result["sent"],
        result["cpu_us_per_query"]), flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("dns_bench needs root (network namespaces)")
    for program in ("dnsperf", "dnsmasq"):
        if shutil.which(program, path=SBIN_PATH) is None:
            sys.exit("%s is missing: apt-get install %s" % (
                program, {"dnsmasq": "dnsmasq-base"}.get(program, program)))

    with Lab() as lab:
        lab.lan("lan")
        lab.host("srv", "lan", ["%s/24" % DHCPFO_ADDR, "%s/24" % DNSMASQ_ADDR])
        lab.host("cli", "lan", "%s/24" % CLIENT_ADDR)
        hosts = lab.path("bench.hosts")
        with open(hosts, "w") as f:
            for i in range(args.names):
                f.write("192.0.2.%d host%d\n" % (10 + i % 190, i))
        queries = lab.path("queries.txt")
        rng = random.Random(1)
        with open(queries, "w") as f:
            for _ in range(20000):
                f.write("host%d.lab.test A\n" % rng.randrange(args.names))

        dhcpfo = lab.dhcpfo("srv", [
            "--interface", "e0", "--dhcp-range", "192.0.2.10,192.0.2.200,1h",
            "--domain", "lab.test", "--lease-store", "memory",
            "--addn-hosts", hosts, "--control", "tcp:8067:interface=127.0.0.1"])
        dnsmasq = lab.spawn("srv", [
            "dnsmasq", "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts",
            "--addn-hosts=" + hosts, "--domain=lab.test", "--expand-hosts",
            "--listen-address=" + DNSMASQ_ADDR, "--bind-interfaces", "--user=root",
            "--log-facility=-", "--pid-file=" + lab.path("dnsmasq.pid")])
        lab.wait_udp("srv", 53, 10, dnsmasq)
        # both answer the same name before anything is measured
        for server in (DHCPFO_ADDR, DNSMASQ_ADDR):
            r = lab.run("cli", ["dig", "@" + server, "+short", "+tries=2",
                                "host1.lab.test"], timeout=10)
            if r.stdout.strip() != "192.0.2.11":
                raise LabError("%s does not answer host1.lab.test: %r\n%s" % (
                    server, r.stdout, tail(dhcpfo.twistd_log)))

        print("warm-up", flush=True)
        dnsperf(lab, DHCPFO_ADDR, queries, 2, args.clients)
        dnsperf(lab, DNSMASQ_ADDR, queries, 2, args.clients)
        rounds = []
        for n in range(1, args.rounds + 1):
            print("round %d" % n, flush=True)
            order = [("dhcpfo", dhcpfo, DHCPFO_ADDR), ("dnsmasq", dnsmasq, DNSMASQ_ADDR)]
            if n % 2 == 0:
                order.reverse()
            row = {}
            for name, proc, server in order:
                row[name] = measure(lab, name, proc, server, queries, args.seconds,
                                    args.clients)
            row["ratio"] = row["dhcpfo"]["qps"] / row["dnsmasq"]["qps"]
            row["cpu_ratio"] = (row["dnsmasq"]["cpu_us_per_query"]
                                / row["dhcpfo"]["cpu_us_per_query"])
            print("  ratio dhcpfo/dnsmasq %.2f (q/s), %.2f (answers per CPU second)"
                  % (row["ratio"], row["cpu_ratio"]), flush=True)
            rounds.append(row)

    ratios = [r["ratio"] for r in rounds]
    cpu_ratios = [r["cpu_ratio"] for r in rounds]
    summary = {
        "command": "dnsperf -s ADDR -d QUERIES -l %d -c %d" % (args.seconds,
                                                             args.clients),
        "names": args.names,
        "rounds": [{"dhcpfo_qps": r["dhcpfo"]["qps"], "dnsmasq_qps": r["dnsmasq"]["qps"],
                    "dhcpfo_cpu_us": r["dhcpfo"]["cpu_us_per_query"],
                    "dnsmasq_cpu_us": r["dnsmasq"]["cpu_us_per_query"],
                    "ratio": r["ratio"]} for r in rounds],
        "median_dhcpfo_qps": statistics.median(r["dhcpfo"]["qps"] for r in rounds),
        "median_dnsmasq_qps": statistics.median(r["dnsmasq"]["qps"] for r in rounds),
        "median_ratio": statistics.median(ratios),
        "median_cpu_ratio": statistics.median(cpu_ratios),
        "load_average": os.getloadavg(),
    }
    print("dhcpfo %.0f q/s, dnsmasq %.0f q/s (medians of %d rounds); "
          "ratio dhcpfo/dnsmasq: median %.2f, range %.2f-%.2f; "
          "answers per CPU second: median %.2f, range %.2f-%.2f; "
          "load average at the end %.1f" % (
              summary["median_dhcpfo_qps"], summary["median_dnsmasq_qps"],
              len(rounds), summary["median_ratio"], min(ratios), max(ratios),
              summary["median_cpu_ratio"], min(cpu_ratios), max(cpu_ratios),
              os.getloadavg()[0]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
