"""
What every benchmark here shares: the lab, CPU accounting, logging, options, cleanup.

The lab is :class:`tests.lab.Lab` (the tests' own), so the benchmarks keep the
same rules: only 198.18.0.0/15 addresses, namespaces named with a per-run
prefix, processes stopped by the pid recorded when they were started,
everything removed at exit, even on failure.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sys
import time

from tests.lab import Lab, LabError

# One LAN on 198.18.0.0/15 (RFC 2544): the server (or primary), its partner, and
# perfdhcp's host, which acts as a relay on the same LAN.
SERVER_ADDR = "198.18.0.1"
PARTNER_ADDR = "198.18.0.2"
CLIENT_ADDR = "198.19.255.250"
PREFIX_LEN = 15
NETMASK = "255.254.0.0"
SUBNET = "198.18.0.0/15"
POOL_FIRST = "198.18.0.10"
POOL_LAST = "198.19.255.200"
CONTROL_PORT = 8067

CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = len(os.sched_getaffinity(0))
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin",
                             "/sbin"])


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


# --------------------------------------------------------------------------
# The lab, and running in it until done or interrupted
# --------------------------------------------------------------------------


def relay_lab(prefix: str, hosts: dict, keep_dir: bool = False) -> Lab:
    """A lab with one LAN and ``hosts`` (name -> address or None), each with e0 on it.

    Its private directory (``lab.dir``) holds every server's configuration,
    logs and lease files; ``keep_dir`` keeps it after the run.
    """
    lab = Lab(prefix=prefix, keep_dir=keep_dir)
    try:
        lab.lan("lan")
        for name, addr in hosts.items():
            lab.host(name, "lan", f"{addr}/{PREFIX_LEN}" if addr else None)
    except BaseException:
        close_lab(lab)
        raise
    return lab


def close_lab(lab: Lab | None) -> None:
    if lab is None:
        return
    try:
        lab.close()
    except LabError as e:
        log(f"cleanup: {e}")


def _raise_exit(signum, frame):
    log(f"signal {signum}: cleaning up")
    raise SystemExit(128 + signum)


def run_guarded(body, cleanup) -> int | None:
    """Run ``body()`` so that SIGINT, SIGTERM and SIGHUP end it in order.

    ``cleanup()`` always runs, with those signals ignored meanwhile.  Returns
    None, or the exit status an interruption asks for (the caller still prints
    its partial report).
    """
    # (A shell's background job inherits SIGINT ignored; take it back explicitly.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    interrupted = None
    t_start = time.monotonic()
    try:
        body()
    except (KeyboardInterrupt, SystemExit) as e:
        interrupted = e.code if isinstance(e, SystemExit) else 130
        log("interrupted: the report below is partial")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log(f"lab removed; total {time.monotonic() - t_start:.0f} s")
    return interrupted


def missing_prerequisite(name: str, tools) -> str | None:
    """Why benchmark ``name`` cannot run here (not root, a program missing), or None."""
    if os.geteuid() != 0:
        return f"{name}: needs root (network namespaces)"
    for tool in tools:
        if shutil.which(tool, path=SBIN_PATH) is None:
            return f"{name}: {tool} not found (scripts/bootstrap installs it)"
    return None


# --------------------------------------------------------------------------
# CPU accounting
# --------------------------------------------------------------------------


def machine_idle_seconds() -> float:
    """CPU seconds all CPUs have spent idle (or in iowait) since boot (/proc/stat).

    Busy time is then wall time x CPUs - idle: on a tickless (virtual) machine the idle
    counters are exact while the tick-sampled user/system counters undercount.
    """
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[3] + v[4]) / CLK_TCK


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (not its children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds_sum(pids) -> float | None:
    """Total CPU time of several processes (None if any of them is gone)."""
    total = 0.0
    for pid in ([pids] if isinstance(pids, int) else pids):
        c = cpu_seconds(pid)
        if c is None:
            return None
        total += c
    return total


def wait_idle(pid: int | list[int], max_wait: float) -> None:
    """Let a saturated server (or servers) drain its socket backlog before the next step."""
    deadline = time.monotonic() + max_wait
    last = cpu_seconds_sum(pid)
    while time.monotonic() < deadline and last is not None:
        time.sleep(0.3)
        now = cpu_seconds_sum(pid)
        if now is None or now - last < 0.3 * 0.05:
            return
        last = now


class Budget:
    """Seconds the run may spend waiting for a quiet machine and re-running disturbed steps."""

    def __init__(self, seconds: float):
        self.left = seconds

    def spend(self, seconds: float) -> None:
        self.left -= seconds


def other_cpu_now(server_pid: int | list[int], window: float = 0.5) -> float:
    """% of one CPU the machine spends on anything but the server(s), over ``window`` s."""
    i0, c0, t0 = machine_idle_seconds(), cpu_seconds_sum(server_pid) or 0.0, time.monotonic()
    time.sleep(window)
    i1, c1, t1 = machine_idle_seconds(), cpu_seconds_sum(server_pid) or 0.0, time.monotonic()
    busy = (t1 - t0) * NCPU - (i1 - i0)
    return 100 * (busy - (c1 - c0)) / (t1 - t0)


def wait_quiet(server_pid: int | list[int], args, budget: Budget,
               max_wait: float = 10.0) -> None:
    """Wait (within the budget) until other processes leave the CPUs to the benchmark."""
    t0 = time.monotonic()
    deadline = t0 + min(max_wait, max(budget.left, 0))
    other = other_cpu_now(server_pid)
    while other > args.busy_warn and time.monotonic() < deadline:
        other = other_cpu_now(server_pid)
    waited = time.monotonic() - t0
    budget.spend(waited)
    if other > args.busy_warn:
        log(f"machine busy ({other:.0f} % of a CPU used by other processes); going on anyway")
    elif waited > 1.5:
        log(f"waited {waited:.0f} s for other processes to leave the CPUs")


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------


def add_stepping_arguments(ap, rates, subject="server", quiet_budget=30.0):
    """The options every perfdhcp-stepping benchmark here shares."""
    ap.add_argument("--seconds", type=float, default=5.0, help="perfdhcp test period per step")
    ap.add_argument("--rates", default=rates,
                    help="offered rates (exchanges/s), stepped in this order")
    ap.add_argument("--clients", type=int, default=100000, help="perfdhcp -R")
    ap.add_argument("--max-loss", type=float, default=1.0,
                    help="end-to-end loss (%%) a step may have and still count")
    ap.add_argument("--stop-after", type=int, default=2,
                    help=f"stop stepping a {subject} after this many steps in a row over "
                         "the limit")
    ap.add_argument("--min-rate", type=int, default=100,
                    help="if the lowest rate fails, halve it down to this before giving up")
    ap.add_argument("--refine", type=int, default=2,
                    help="bisection steps between the best passing and first failing rate")
    ap.add_argument("--busy-warn", type=float, default=30.0,
                    help="warn when other CPU use (%% of one CPU) exceeds this during a step")
    ap.add_argument("--quiet-budget", type=float, default=quiet_budget,
                    help=f"seconds each {subject} may spend waiting for other processes to "
                         "leave the CPUs and re-running steps they disturbed (0: never)")
    ap.add_argument("--start-timeout", type=float, default=30.0,
                    help="max seconds for one server process to start")
    ap.add_argument("--drain-timeout", type=float, default=15.0,
                    help="max seconds to wait for the server(s) to go idle between steps")
    ap.add_argument("--exit-wait", type=float, default=1.0,
                    help="seconds perfdhcp waits for answers after the period (-W); 0 = none")
    ap.add_argument("--kea-socket", choices=("udp", "raw"), default="udp",
                    help="Kea dhcp-socket-type (relayed traffic only needs udp)")
    ap.add_argument("--perfdhcp-arg", action="append", default=[],
                    help="extra argument passed to the stepping perfdhcp (repeatable)")
    ap.add_argument("--dhcpfo-args", default="--dhcp-rate-limit 0",
                    help="extra arguments for every dhcpfo server (one string; default "
                         "%(default)r: perfdhcp is one relay for every client, so the "
                         "per-relay DISCOVER limit is off, as Kea and dnsmasq have none; "
                         "'' for a build that predates the option)")
    ap.add_argument("--venv", default=sys.prefix,
                    help="virtualenv holding dhcpfo's twistd and dhcpfo-ctl "
                         "(default: the one running this benchmark)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--keep-workdir", action="store_true",
                    help="keep configs, logs and lease files (path is printed)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print perfdhcp's full output")


def parse_choices(ap, text, known, what):
    """A comma-separated list of names from ``known``, or a usage error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in known:
            ap.error(f"unknown {what} {n!r} (choose from {', '.join(known)})")
    return names


def parse_rates(ap, text):
    rates = [int(r) for r in text.split(",") if r.strip()]
    if not rates or min(rates) <= 0:
        ap.error("--rates needs positive integers")
    return rates
