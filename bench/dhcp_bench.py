#!/usr/bin/env python3
"""Compare DHCPv4 throughput of dhcpfo, Kea and dnsmasq in one network-namespace lab.

Run as root from the repository root:

    .venv/bin/python bench/dhcp_bench.py [--seconds 5] [--servers dhcpfo,kea,dnsmasq]
        [--rates 500,1000,2000,4000,8000,12000] [--json FILE]

One lab (a bridge namespace, a server host 198.18.0.1/15 on e0, a client host
198.19.255.250/15 on e0) is built once.  Each server is started in turn in the
server namespace with a fresh lease store, and perfdhcp (which acts as a relay
from the client host: it unicasts to the server with giaddr set, and the server
answers to port 67) is stepped through the offered rates.  Each step counts
*completed* exchanges (ACKs received in the REQUEST-ACK statistics; perfdhcp's
"Rate:" line counts exchanges *started*) and the end-to-end loss
(1 - ACKs received / DISCOVERs sent).  A server's result is the best completed
rate among the steps whose loss is at most --max-loss (1 % by default).

Only the standard library is used.  Lab rules (/work/shared/lab.md): only
198.18.0.0/15 addresses, namespaces named with a per-run prefix, processes
stopped by recorded pid only, namespaces deleted on exit, even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SERVER_ADDR = "198.18.0.1"
CLIENT_ADDR = "198.19.255.250"
PREFIX_LEN = 15
NETMASK = "255.254.0.0"
POOL_FIRST = "198.18.0.10"
POOL_LAST = "198.19.255.200"
SUBNET = "198.18.0.0/15"
CONTROL_PORT = 8067

CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = len(os.sched_getaffinity(0))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv, timeout=10.0, check=True, **kw) -> subprocess.CompletedProcess:
    """Run a command with a timeout; capture its output as text."""
    cp = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, **kw
    )
    if check and cp.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}"
        )
    return cp


# --------------------------------------------------------------------------
# The lab: a bridge namespace and two hosts, each with e0 on the bridge.
# --------------------------------------------------------------------------


class Lab:
    """A minimal namespace lab.  Every namespace name starts with ``prefix``."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.bridge = f"{prefix}-br"
        self.namespaces: list[str] = []

    def _netns_add(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def build(self) -> None:
        self._netns_add(self.bridge)
        run(["ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.bridge, "link", "set", "br0", "up"])

    def host(self, short: str, addr: str | None) -> str:
        """A host namespace with ``e0`` on the bridge (and ``addr``/15 on it, if given)."""
        ns = f"{self.prefix}-{short}"
        self._netns_add(ns)
        port = f"p-{short}"
        run(["ip", "link", "add", "e0", "netns", ns, "type", "veth",
             "peer", "name", port, "netns", self.bridge])
        run(["ip", "-n", self.bridge, "link", "set", port, "master", "br0"])
        run(["ip", "-n", self.bridge, "link", "set", port, "up"])
        if addr:
            run(["ip", "-n", ns, "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", "e0"])
        run(["ip", "-n", ns, "link", "set", "e0", "up"])
        return ns

    def close(self) -> None:
        """Stop anything still running inside our namespaces, then delete them."""
        for ns in reversed(self.namespaces):
            try:
                pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            except Exception:
                pids = []
            for pid in pids:  # only processes inside a namespace this run created
                stop_pid(int(pid), grace=3.0)
            try:
                run(["ip", "netns", "del", ns], check=False)
            except Exception as e:  # keep deleting the others
                log(f"could not delete namespace {ns}: {e}")
        self.namespaces.clear()


def stop_pid(pid: int, grace: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM the recorded pid, SIGKILL it after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not os.path.exists(f"/proc/{pid}") or _is_zombie(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def machine_idle_seconds() -> float:
    """CPU seconds all CPUs have spent idle (or in iowait) since boot (/proc/stat).

    Busy time is then wall time x CPUs - idle: on this (tickless, virtual) machine the idle
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


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


class ServerFailed(Exception):
    pass


class Server:
    """One DHCP server under test, started in the server namespace."""

    name = "?"
    binary = ""  # checked with shutil.which before starting, if set

    def __init__(self, ns: str, workdir: str, args):
        self.ns = ns
        self.dir = workdir
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.logfile = os.path.join(workdir, f"{self.name}.out")
        self._out = None

    # subclasses fill these in
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        """Has the server finished starting?  Default: a UDP socket on port 67 exists."""
        return udp67_bound(self.ns, self.proc.pid)

    def naks(self) -> int | None:
        """NAKs sent so far, if the server's log says (perfdhcp counts a NAK as a drop)."""
        return None

    def after_step(self, st: "Step") -> None:
        """Called after each step (e.g. to note what the server logged meanwhile)."""

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for path in self.log_paths():
            try:
                with open(path, errors="replace") as f:
                    tail = f.readlines()[-lines:]
            except OSError:
                continue
            if tail:
                out.append(f"--- {os.path.basename(path)} ---\n" + "".join(tail).rstrip())
        return "\n".join(out)

    def log_paths(self) -> list[str]:
        return [self.logfile]

    def start(self, timeout: float) -> None:
        argv = ["ip", "netns", "exec", self.ns] + self.command()
        self._out = open(self.logfile, "wb")
        # `ip netns exec` execs the command, so proc.pid is the server's own pid.
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=self.env(), cwd=self.dir, start_new_session=True,
        )
        log(f"{self.name}: started pid {self.proc.pid}: {' '.join(self.command())}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"exited with status {self.proc.returncode} while starting")
            try:
                if self.ready():
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.2)
        raise ServerFailed(f"not ready after {timeout:.0f} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """The processes under test, the one perfdhcp talks to first.  CPU use is measured
        for the first (server CPU) and the others together (peer CPU, e.g. a failover
        partner), and none of them counts as "other processes"."""
        return [self.proc.pid] if self.proc is not None else []

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, grace=10.0, proc=self.proc)
            log(f"{self.name}: stopped pid {self.proc.pid} (status {self.proc.returncode})")
        if self._out is not None:
            self._out.close()
            self._out = None


def udp67_bound(ns: str, pid: int) -> bool:
    cp = run(["ip", "netns", "exec", ns, "ss", "-Hulnp", "sport = :67"], timeout=5, check=False)
    return f"pid={pid}," in cp.stdout


class Dhcpfo(Server):
    name = "dhcpfo"

    def _bin(self, tool: str) -> str:
        return os.path.join(self.args.venv, "bin", tool)

    def command(self) -> list[str]:
        return [
            self._bin("twistd"), "-n", "--pidfile=",
            f"--logfile={os.path.join(self.dir, 'dhcpfo.log')}",
            "dhcpfo", "--interface", "e0",
            "--dhcp-range", f"{POOL_FIRST},{POOL_LAST},{NETMASK},1h",
            "--lease-store", f"sqlite:path={os.path.join(self.dir, 'leases.db')}",
            "--control", f"tcp:{CONTROL_PORT}:interface=127.0.0.1",
        ]

    def log_paths(self) -> list[str]:
        return [self.logfile, os.path.join(self.dir, "dhcpfo.log")]

    def start(self, timeout: float) -> None:
        for tool in ("twistd", "dhcpfo-ctl"):
            if not os.access(self._bin(tool), os.X_OK):
                raise ServerFailed(f"{self._bin(tool)} not found (run scripts/bootstrap)")
        super().start(timeout)

    def ready(self) -> bool:
        cp = run(["ip", "netns", "exec", self.ns, self._bin("dhcpfo-ctl"), "status"],
                 timeout=5, check=False)
        return cp.returncode == 0


class Kea(Server):
    name = "kea"
    binary = "kea-dhcp4"

    def config(self) -> dict:
        return {
            "Dhcp4": {
                "interfaces-config": {
                    "interfaces": ["e0"],
                    "dhcp-socket-type": self.args.kea_socket,
                },
                "lease-database": {
                    "type": "memfile",
                    "persist": True,
                    "name": os.path.join(self.dir, "kea-leases4.csv"),
                    "lfc-interval": 0,
                },
                "multi-threading": {"enable-multi-threading": False},
                "valid-lifetime": 3600,
                "subnet4": [
                    {
                        "id": 1,
                        "subnet": SUBNET,
                        "pools": [{"pool": f"{POOL_FIRST} - {POOL_LAST}"}],
                    }
                ],
                "loggers": [
                    {
                        "name": "kea-dhcp4",
                        "output_options": [{"output": os.path.join(self.dir, "kea.log")}],
                        "severity": "INFO",
                    }
                ],
            }
        }

    def command(self) -> list[str]:
        path = os.path.join(self.dir, "kea-dhcp4.json")
        with open(path, "w") as f:
            json.dump(self.config(), f, indent=2)
        return ["kea-dhcp4", "-c", path]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KEA_PIDFILE_DIR"] = self.dir
        env["KEA_LOCKFILE_DIR"] = self.dir
        return env

    def log_paths(self) -> list[str]:
        return [self.logfile, os.path.join(self.dir, "kea.log")]


class Dnsmasq(Server):
    name = "dnsmasq"
    binary = "dnsmasq"

    def command(self) -> list[str]:
        return [
            "dnsmasq", "-d", "-C", "/dev/null", "--port=0",
            "--interface=e0", "--bind-interfaces",
            f"--dhcp-range={POOL_FIRST},{POOL_LAST},{NETMASK},1h",
            f"--dhcp-leasefile={os.path.join(self.dir, 'dnsmasq.leases')}",
            "--dhcp-lease-max=200000",
            f"--pid-file={os.path.join(self.dir, 'dnsmasq.pid')}",
            "--no-ping",
        ]

    def naks(self) -> int | None:
        try:
            with open(self.logfile, "rb") as f:
                return f.read().count(b"DHCPNAK(")
        except OSError:
            return None


SERVERS = {"dhcpfo": Dhcpfo, "kea": Kea, "dnsmasq": Dnsmasq}


# --------------------------------------------------------------------------
# perfdhcp
# --------------------------------------------------------------------------


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


_NUM = r"([0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)"


def parse_perfdhcp(text: str) -> dict:
    """Pull the rate line and the DISCOVER-OFFER / REQUEST-ACK blocks out of the report."""
    out: dict = {}
    m = re.search(rf"^Rate:\s*{_NUM}", text, re.M)
    if m:
        out["rate"] = float(m.group(1))
    for key, title in (("do", "DISCOVER-OFFER"), ("ra", "REQUEST-ACK")):
        m = re.search(rf"\*\*\*Statistics for: {title}\*\*\*(.*?)(?=\*\*\*|\Z)", text, re.S)
        if not m:
            continue
        block = m.group(1)
        d = {}
        for label, name in (("sent packets", "sent"), ("received packets", "received"),
                            ("drops ratio", "drops_ratio"), ("avg delay", "avg_delay"),
                            ("max delay", "max_delay")):
            mm = re.search(rf"^{label}:\s*{_NUM}", block, re.M)
            if mm:
                d[name] = float(mm.group(1))
        out[key] = d
    return out


def perfdhcp_argv(ns: str, rate: int, seconds: float, clients: int,
                  extra: list[str]) -> list[str]:
    # -p alone counts exchanges still in flight when the period ends as drops; -W (in
    # microseconds) lets them finish without starting new ones.  perfdhcp's "Rate:" line
    # then divides by period + wait, so completed rates are computed here instead.
    return (["ip", "netns", "exec", ns, "perfdhcp", "-4", "-l", "e0",
             "-r", str(rate), "-R", str(clients), "-p", f"{seconds:g}"]
            + extra + [SERVER_ADDR])


def probe(client_ns: str, exit_wait: list[str]) -> bool:
    """A few exchanges at 10/s for 1 s: does the server answer at all?

    (perfdhcp without -r does not do "a single exchange" as its help says: it floods;
    and -n N exits as soon as N DISCOVERs are sent, before any answer can count.)
    """
    try:
        cp = run(perfdhcp_argv(client_ns, 10, 1, 1, exit_wait), timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return False
    ra = parse_perfdhcp(cp.stdout).get("ra", {})
    return ra.get("received", 0) > 0


def write_mac_list(path: str, count: int, seed: int) -> None:
    """``count`` distinct random unicast, locally administered MACs, one a line (perfdhcp -M)."""
    import random
    rnd = random.Random(seed)
    macs: set[str] = set()
    while len(macs) < count:
        macs.add("02:" + ":".join(f"{rnd.randrange(256):02x}" for _ in range(5)))
    with open(path, "w") as f:
        f.write("\n".join(sorted(macs)) + "\n")


def exit_wait_arg(args) -> list[str]:
    return ["-W", str(int(args.exit_wait * 1e6))] if args.exit_wait > 0 else []


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


def run_step(client_ns: str, server: Server, rate: int, args) -> Step:
    st = Step(rate=rate, seconds=args.seconds)
    argv = perfdhcp_argv(client_ns, rate, args.seconds, args.clients,
                         exit_wait_arg(args) + args.mac_arg + args.perfdhcp_arg)
    pids = server.pids()
    cpu0, peer0 = cpu_seconds(pids[0]), cpu_seconds_sum(pids[1:])
    naks0 = server.naks()
    idle0, kids0 = machine_idle_seconds(), children_cpu_seconds()
    t0 = time.monotonic()
    try:
        cp = run(argv, timeout=args.seconds + 30, check=False)
    except subprocess.TimeoutExpired:
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
    if "do" not in p:
        st.note = f"unparsable perfdhcp output (exit {cp.returncode}): " + (
            cp.stderr.strip() or cp.stdout.strip())[-300:]
        return st
    do, ra = p["do"], p.get("ra", {})
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


def bench_server(cls, lab_ns: tuple, workroot: str, args, res: Result,
                 budget: Budget, after=None) -> Result:
    """Step one server through the rates, filling in ``res`` as it goes.

    ``lab_ns`` is (server namespace, client namespace); the first is passed on to
    ``cls`` as is (a server pair takes a tuple of namespaces there).  ``after``, if
    given, is called as ``after(server, res)`` once stepping is over, while the server
    still runs (unless it failed to start or died).
    """
    server_ns, client_ns = lab_ns
    res.status = "running"
    workdir = os.path.join(workroot, f"{cls.name}-{res.round}")
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
        srv = cls(server_ns, d, args)
        try:
            srv.start(args.start_timeout)
            deadline = time.monotonic() + args.start_timeout
            while not probe(client_ns, exit_wait_arg(args)):
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
            st = run_step(client_ns, server, rate, args)
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
                st = run_step(client_ns, server, rate, args)
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


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


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
    ap.add_argument("--venv", default=os.path.join(ROOT, ".venv"),
                    help="virtualenv holding dhcpfo's twistd and dhcpfo-ctl")
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


def _raise_exit(signum, frame):
    log(f"signal {signum}: cleaning up")
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("dhcp_bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    for tool in ("ip", "ss", "perfdhcp"):
        if shutil.which(tool) is None:
            print(f"dhcp_bench: {tool} not found (scripts/bootstrap installs it)", file=sys.stderr)
            return 2
    # (A shell's background job inherits SIGINT ignored; take it back explicitly.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)

    lab = Lab(prefix=f"dbn{os.getpid()}")
    workroot = tempfile.mkdtemp(prefix="dhcp_bench-")
    results: list[Result] = []
    interrupted: int | None = None
    t_start = time.monotonic()
    try:
        lab.build()
        server_ns = lab.host("srv", SERVER_ADDR)
        client_ns = lab.host("cli", CLIENT_ADDR)
        log(f"lab up: {lab.namespaces} (work dir {workroot})")
        args.mac_arg = []
        if args.macs == "random":
            path = os.path.join(workroot, "macs.txt")
            write_mac_list(path, args.clients, args.seed)
            args.mac_arg = ["-M", path]
        for round_no in range(1, args.repeat + 1):
            for name in args.servers:
                cls = SERVERS[name]
                if cls.binary and shutil.which(cls.binary) is None:
                    results.append(Result(server=name, round=round_no, status="failed",
                                          error=f"{cls.binary} not installed"))
                    continue
                res = Result(server=name, round=round_no)
                results.append(res)  # filled in as it runs: an interrupt keeps what was done
                # each server (and round) gets its own budget: fair to the later ones
                bench_server(cls, (server_ns, client_ns), workroot, args, res,
                             Budget(args.quiet_budget))
    except (KeyboardInterrupt, SystemExit) as e:
        interrupted = e.code if isinstance(e, SystemExit) else 130
        log("interrupted: the report below is partial")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        lab.close()
        if args.keep_workdir:
            log(f"kept {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log(f"lab removed; total {time.monotonic() - t_start:.0f} s")

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
