#!/usr/bin/env python3
"""Failover benchmark: a dhcpfo primary/secondary pair vs a Kea 2.2 hot-standby HA pair.

Run as root from the repository root:

    .venv/bin/python bench/ha_bench.py [--pairs dhcpfo,kea-mt,kea-ca] [--seconds 5]
        [--rates 500,1000,2000,3000,4000,6000,8000] [--takeovers 3] [--json FILE]

One lab (rules: /work/shared/lab.md): a bridge namespace; server hosts 198.18.0.1/15
(primary) and 198.18.0.2/15 (secondary/standby); a perfdhcp host 198.19.255.250/15
(perfdhcp acts as a relay and unicasts to the primary); two client hosts without an
address for the takeover measurement (a DHCP prober of our own, and BusyBox udhcpc).
Namespaces are named ``hab<pid>-...``.

1. Throughput.  Each pair in turn, on fresh lease stores, is started, waited for
   (dhcpfo: the secondary ``passive`` and synced, holding its reserve; Kea: both
   servers in ``hot-standby``), and perfdhcp is stepped through the offered rates
   against the primary with the machinery of dhcp_bench.py: completed exchanges/s
   (ACKs received / period) and end-to-end loss; a pair's result is its best completed
   rate with loss <= --max-loss (1 %).  dhcpfo replicates every lease to the secondary
   and waits for its durable acknowledgement before the ACK; Kea's hot-standby primary
   waits for the standby's answer to ``lease4-update`` before its ACK.
   Kea pairs: ``kea-mt`` is Kea's multi-threaded HA with the peers talking to each
   other's dedicated HTTP listener (``http-dedicated-listener``, Kea >= 1.9.7);
   ``kea-ca`` is the classic single-threaded set-up where the peers talk through each
   other's ``kea-ctrl-agent`` (package kea-ctrl-agent) on port 8000.
2. Takeover (dhcpfo only), after the stepping, on the same pair: a steady low load
   (perfdhcp broadcasting, so the survivor gets it too, and our prober starting a new
   client every --probe-interval) runs; the primary is ``kill -9``-ed by its pid; we
   measure the time until the secondary's ``dhcpfo-ctl status`` says ``active``, until
   a new client (the prober) has a DHCPACK from the secondary, and how long a real
   udhcpc, started at the kill with a fresh MAC, takes to get its lease.  The primary is
   then restarted on its database, with the load still running: the time until the pair
   is synced again (secondary passive), until the primary ACKs again, and the longest
   time without any ACK (failback) are recorded.  Repeated --takeovers times.
3. A table, the ratio dhcpfo-pair / each Kea pair, the takeover figures; --json FILE.

Everything is cleaned up (try/finally; SIGINT/SIGTERM/SIGHUP): processes are stopped by
their recorded pids, anything left in our namespaces by pid, the namespaces deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dhcp_bench as db  # noqa: E402
from dhcp_bench import (  # noqa: E402
    ROOT, Budget, Dhcpfo, Kea, Lab, Result, Server, ServerFailed, Step, bench_server, fmt,
    log, run, stop_pid,
)

PRIMARY_ADDR = db.SERVER_ADDR          # 198.18.0.1: perfdhcp's target
SECONDARY_ADDR = "198.18.0.2"
CLIENT_ADDR = db.CLIENT_ADDR           # 198.19.255.250: perfdhcp, a relay
FAILOVER_PORT = 647
KEA_HA_PORT = 8000
KEA_HOOKS_DIRS = ("/usr/lib/x86_64-linux-gnu/kea/hooks", "/usr/lib/kea/hooks")
NAMES = ("dhcp-a", "dhcp-b")           # dhcpfo failover names (certificates)


# --------------------------------------------------------------------------
# dhcpfo pair
# --------------------------------------------------------------------------


def ctl_status(venv: str, ns: str, timeout: float = 5.0) -> dict | None:
    """``dhcpfo-ctl status --json`` in a namespace, parsed (None if it does not answer)."""
    try:
        cp = run(["ip", "netns", "exec", ns, os.path.join(venv, "bin", "dhcpfo-ctl"),
                  "status", "--json"], timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    if cp.returncode != 0:
        return None
    try:
        return json.loads(cp.stdout)
    except ValueError:
        return None


class DhcpfoMember(Dhcpfo):
    """One dhcpfo failover peer: the primary (listens) or the secondary (dials it)."""

    def __init__(self, ns: str, workdir: str, args, role: str, certdir: str, start_no=1):
        self.role = role
        self.fname = NAMES[0] if role == "primary" else NAMES[1]
        self.name = f"dhcpfo-{self.fname}"
        super().__init__(ns, workdir, args)
        self.certdir = certdir
        self.logfile = os.path.join(workdir, f"stdout.{start_no}")

    def command(self) -> list[str]:
        c = self.certdir
        argv = super().command() + [
            "--dns-port", "0",
            "--failover-name", self.fname,
            "--failover-cert", os.path.join(c, f"{self.fname}.pem"),
            "--failover-key", os.path.join(c, f"{self.fname}.key"),
            "--failover-ca", os.path.join(c, "ca.pem"),
        ]
        other = NAMES[1] if self.role == "primary" else NAMES[0]
        if self.role == "primary":
            argv += ["--failover-listen", str(FAILOVER_PORT), "--failover-peers", other]
        else:
            argv += ["--failover-master", f"{PRIMARY_ADDR},{FAILOVER_PORT},{other}",
                     "--failover-peers", other]
        return argv + list(self.args.dhcpfo_arg)

    def status(self) -> dict | None:
        return ctl_status(self.args.venv, self.ns)


EVENT_RE = re.compile(r"failover|partner|exchange|silent")


class LogWatch:
    """New lines of a log file that match a pattern, since the last call."""

    def __init__(self, path: str, pattern: re.Pattern, exclude: re.Pattern | None = None):
        self.path, self.pattern, self.exclude = path, pattern, exclude
        self.pos = 0

    def new(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1          # only whole lines
        self.pos += cut
        out = []
        for line in data[:cut].decode(errors="replace").splitlines():
            if self.pattern.search(line) and not (self.exclude and self.exclude.search(line)):
                out.append(line)
        return out


class Pair(Server):
    """Two servers (and helpers) started together; perfdhcp talks to the first."""

    def __init__(self, ns, workdir: str, args):
        self.nss = tuple(ns)
        super().__init__(self.nss[0], workdir, args)
        self.members: list[Server] = []
        self.watches: dict[str, LogWatch] = {}
        self.events: list[dict] = []       # {"step": rate|None, "phase": ..., "lines": [...]}
        self.ready_after: float | None = None
        self.peer_state_note = ""

    @property
    def proc(self):
        """The first member that died, else the primary (for bench_server's messages)."""
        for m in self.members:
            if m.proc is not None and m.proc.poll() is not None:
                return m.proc
        return self.members[0].proc if self.members else None

    @proc.setter
    def proc(self, value):  # Server.__init__ sets it; members hold the real ones
        pass

    def pids(self) -> list[int]:
        return [m.proc.pid for m in self.members if m.proc is not None]

    def alive(self) -> bool:
        return bool(self.members) and all(m.alive() for m in self.members)

    def stop(self) -> None:
        for m in reversed(self.members):
            m.stop()

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(f"[{m.name}]\n{m.log_tail(lines)}" for m in self.members)

    def collect_events(self, label) -> list[str]:
        lines = []
        for who, w in self.watches.items():
            lines += [f"{who}: {l}" for l in w.new()]
        if lines:
            self.events.append({"when": label, "lines": lines})
        return lines

    def after_step(self, st: Step) -> None:
        lines = self.collect_events(f"{st.phase} {st.rate}/s")
        if lines:
            st.note = (st.note + "; " if st.note else "") + (
                f"{len(lines)} failover log line(s) during the step, e.g. {lines[0][-160:]}")

    def _start_member(self, m: Server, timeout: float) -> None:
        self.members.append(m)
        try:
            m.start(timeout)
        except ServerFailed as e:
            raise ServerFailed(f"{m.name}: {e}")

    def wait_ready(self, timeout: float) -> None:
        raise NotImplementedError


class DhcpfoPair(Pair):
    name = "dhcpfo-pair"

    def __init__(self, ns, workdir: str, args):
        super().__init__(ns, workdir, args)
        self.certdir = args.certdir
        self.dirs = [os.path.join(workdir, n) for n in NAMES]
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
        self.starts = [0, 0]

    def member(self, i: int) -> DhcpfoMember:
        self.starts[i] += 1
        role = "primary" if i == 0 else "secondary"
        return DhcpfoMember(self.nss[i], self.dirs[i], self.args, role, self.certdir,
                            self.starts[i])

    @property
    def primary(self) -> DhcpfoMember:
        return self.members[0]

    @property
    def secondary(self) -> DhcpfoMember:
        return self.members[1]

    def start(self, timeout: float) -> None:
        for tool in ("twistd", "dhcpfo-ctl"):
            if not os.access(self._bin(tool), os.X_OK):
                raise ServerFailed(f"{self._bin(tool)} not found (run scripts/bootstrap)")
        t0 = time.monotonic()
        self._start_member(self.member(0), timeout)
        self._start_member(self.member(1), timeout)
        for m in self.members:
            self.watches[m.fname] = LogWatch(os.path.join(m.dir, "dhcpfo.log"), EVENT_RE,
                                             re.compile(r'"GET /'))
        self.wait_ready(self.args.ha_timeout)
        self.ready_after = round(time.monotonic() - t0, 2)
        self.collect_events("start-up")
        log(f"{self.name}: secondary passive and synced {self.ready_after:.1f} s after start")

    def _bin(self, tool: str) -> str:
        return os.path.join(self.args.venv, "bin", tool)

    def synced(self) -> tuple[bool, str]:
        """Primary active with the secondary connected and synced; secondary passive,
        synced, holding a reserve."""
        a, b = self.primary.status(), self.secondary.status()
        if not a or not b:
            return False, "no status"
        fa, fb = a.get("failover") or {}, b.get("failover") or {}
        pa = next((p for p in fa.get("peers", []) if p.get("name") == NAMES[1]), {})
        pb = next((p for p in fb.get("peers", []) if p.get("name") == NAMES[0]), {})
        reserve = sum(r.get("reserved_here", 0) for r in b.get("ranges", []))
        what = (f"primary {fa.get('state')} (peer connected={pa.get('connected')} "
                f"synced={pa.get('synced')}), secondary {fb.get('state')} "
                f"(synced={pb.get('synced')}, reserve {reserve})")
        ok = (fa.get("state") == "active" and pa.get("connected") and pa.get("synced")
              and fb.get("state") == "passive" and pb.get("synced") and reserve > 0)
        return bool(ok), what

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        what = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerFailed(f"a member exited while syncing ({what})")
            ok, what = self.synced()
            if ok:
                return
            time.sleep(0.2)
        raise ServerFailed(f"not synced after {timeout:.0f} s: {what}")

    def lease_counts(self) -> dict:
        out = {}
        for m in self.members:
            s = m.status() or {}
            out[m.fname] = {"leased": sum(r.get("leased", 0) for r in s.get("ranges", [])),
                            "reserved": sum(r.get("reserved", 0) for r in s.get("ranges", [])),
                            "state": (s.get("failover") or {}).get("state")}
        return out


# --------------------------------------------------------------------------
# Kea HA pair
# --------------------------------------------------------------------------


def kea_hooks_dir() -> str | None:
    for d in KEA_HOOKS_DIRS:
        if os.path.exists(os.path.join(d, "libdhcp_ha.so")):
            return d
    try:
        cp = run(["dpkg", "-L", "kea-dhcp4-server"], check=False)
        for line in cp.stdout.splitlines():
            if line.endswith("/libdhcp_ha.so"):
                return os.path.dirname(line)
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def kea_command(sock: str, command: str, arguments: dict | None = None,
                timeout: float = 3.0) -> dict | None:
    """Send one command to a Kea control socket (a unix socket: reachable from any
    network namespace); the parsed answer, or None."""
    msg = {"command": command}
    if arguments is not None:
        msg["arguments"] = arguments
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock)
            s.sendall(json.dumps(msg).encode())
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                try:
                    return json.loads(buf)
                except ValueError:
                    continue
            return json.loads(buf) if buf else None
    except (OSError, ValueError):
        return None


class KeaMember(Kea):
    """kea-dhcp4 with the HA (hot-standby) and lease_cmds hooks and a control socket."""

    def __init__(self, ns: str, workdir: str, args, role: str, mode: str, hooks: str):
        self.role, self.mode, self.hooks = role, mode, hooks
        self.hname = "server1" if role == "primary" else "server2"
        self.name = f"kea-{self.hname}"
        super().__init__(ns, workdir, args)
        self.sock = os.path.join(workdir, "kea4-ctrl.sock")

    def config(self) -> dict:
        cfg = super().config()
        d4 = cfg["Dhcp4"]
        d4["control-socket"] = {"socket-type": "unix", "socket-name": self.sock}
        ha = {
            "this-server-name": self.hname,
            "mode": "hot-standby",
            "heartbeat-delay": self.args.kea_heartbeat_delay,
            "max-response-delay": 60000,
            "max-ack-delay": 5000,
            "max-unacked-clients": 5,
            "peers": [
                {"name": "server1", "url": f"http://{PRIMARY_ADDR}:{KEA_HA_PORT}/",
                 "role": "primary", "auto-failover": True},
                {"name": "server2", "url": f"http://{SECONDARY_ADDR}:{KEA_HA_PORT}/",
                 "role": "standby", "auto-failover": True},
            ],
        }
        if self.mode == "mt":
            d4["multi-threading"] = {"enable-multi-threading": True}
            ha["multi-threading"] = {"enable-multi-threading": True,
                                     "http-dedicated-listener": True,
                                     "http-listener-threads": 0, "http-client-threads": 0}
        else:
            d4["multi-threading"] = {"enable-multi-threading": False}
            ha["multi-threading"] = {"enable-multi-threading": False}
        d4["hooks-libraries"] = [
            {"library": os.path.join(self.hooks, "libdhcp_lease_cmds.so")},
            {"library": os.path.join(self.hooks, "libdhcp_ha.so"),
             "parameters": {"high-availability": [ha]}},
        ]
        return cfg

    def ha_state(self) -> str | None:
        r = kea_command(self.sock, "ha-heartbeat")
        if not r or r.get("result") != 0:
            return None
        return (r.get("arguments") or {}).get("state")


class KeaCtrlAgent(Server):
    """kea-ctrl-agent on port 8000 of a server host, forwarding to kea-dhcp4's socket."""

    binary = "kea-ctrl-agent"

    def __init__(self, ns: str, workdir: str, args, addr: str, sock: str, hname: str):
        self.name = f"kea-ca-{hname}"
        super().__init__(ns, workdir, args)
        self.addr, self.sock = addr, sock

    def command(self) -> list[str]:
        path = os.path.join(self.dir, "kea-ctrl-agent.json")
        with open(path, "w") as f:
            json.dump({"Control-agent": {
                "http-host": self.addr, "http-port": KEA_HA_PORT,
                "control-sockets": {"dhcp4": {"socket-type": "unix", "socket-name": self.sock}},
                "loggers": [{"name": "kea-ctrl-agent",
                             "output_options": [{"output": os.path.join(self.dir, "ca.log")}],
                             "severity": "INFO"}],
            }}, f, indent=2)
        return ["kea-ctrl-agent", "-c", path]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KEA_PIDFILE_DIR"] = self.dir
        env["KEA_LOCKFILE_DIR"] = self.dir
        return env

    def ready(self) -> bool:
        cp = run(["ip", "netns", "exec", self.ns, "ss", "-Htlnp", f"sport = :{KEA_HA_PORT}"],
                 timeout=5, check=False)
        return f"pid={self.proc.pid}," in cp.stdout

    def log_paths(self) -> list[str]:
        return [self.logfile, os.path.join(self.dir, "ca.log")]


KEA_EVENT_RE = re.compile(r"HA_(?!LEASE_UPDATES?_COMPLETE)|\b(WARN|ERROR|FATAL)\b")
KEA_EVENT_EXCLUDE = re.compile(r"DHCP4_MULTI_THREADING_INFO|RESERVATIONS_LOOKUP_FIRST|"
                               r"HA_LEASE_UPDATE_REJECTS_CAUSED_TERMINATION_DISABLED")


class KeaPair(Pair):
    name = "kea-pair"
    binary = "kea-dhcp4"
    mode = "mt"

    def start(self, timeout: float) -> None:
        hooks = kea_hooks_dir()
        if hooks is None:
            raise ServerFailed("libdhcp_ha.so not found (package kea-dhcp4-server)")
        if self.mode == "ca" and shutil.which("kea-ctrl-agent") is None:
            raise ServerFailed("kea-ctrl-agent not installed (package kea-ctrl-agent)")
        t0 = time.monotonic()
        keas = []
        for i, role in enumerate(("primary", "standby")):
            d = os.path.join(self.dir, f"server{i + 1}")
            os.makedirs(d, exist_ok=True)
            k = KeaMember(self.nss[i], d, self.args, role, self.mode, hooks)
            self._start_member(k, timeout)
            self.watches[k.hname] = LogWatch(os.path.join(d, "kea.log"), KEA_EVENT_RE,
                                             KEA_EVENT_EXCLUDE)
            keas.append(k)
        if self.mode == "ca":
            for i, k in enumerate(keas):
                addr = PRIMARY_ADDR if i == 0 else SECONDARY_ADDR
                ca = KeaCtrlAgent(self.nss[i], k.dir, self.args, addr, k.sock, k.hname)
                self._start_member(ca, timeout)
                self.watches[ca.name] = LogWatch(os.path.join(k.dir, "ca.log"),
                                                 re.compile(r"\b(WARN|ERROR|FATAL)\b"))
        self.keas = keas
        self.wait_ready(self.args.ha_timeout)
        self.ready_after = round(time.monotonic() - t0, 2)
        self.collect_events("start-up")
        log(f"{self.name}: both servers in hot-standby {self.ready_after:.1f} s after start")

    def states(self) -> list[str | None]:
        return [k.ha_state() for k in self.keas]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        states: list = []
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerFailed(f"a member exited while waiting for hot-standby ({states})")
            states = self.states()
            if states != last:
                log(f"{self.name}: HA states {states}")
                last = states
            if all(s == "hot-standby" for s in states):
                return
            time.sleep(0.5)
        raise ServerFailed(f"not in hot-standby after {timeout:.0f} s: {states}")

    def after_step(self, st: Step) -> None:
        super().after_step(st)
        states = self.states()
        if any(s != "hot-standby" for s in states):
            st.note = (st.note + "; " if st.note else "") + f"HA states after the step: {states}"


class KeaPairMT(KeaPair):
    name = "kea-ha-mt"
    mode = "mt"


class KeaPairCA(KeaPair):
    name = "kea-ha-ca"
    mode = "ca"


PAIRS = {"dhcpfo": DhcpfoPair, "kea-mt": KeaPairMT, "kea-ca": KeaPairCA}


# --------------------------------------------------------------------------
# The takeover prober: run inside a client namespace (``ha_bench.py --probe``).
# A new client (random MAC) every INTERVAL: DISCOVER, then REQUEST for the first OFFER,
# broadcast flag set; prints one JSON line per event, with time.monotonic() stamps
# (CLOCK_MONOTONIC is the same in every network namespace).
# --------------------------------------------------------------------------

MAGIC = b"\x63\x82\x53\x63"


def _dhcp_packet(msg_type: int, xid: int, mac: bytes, extra: bytes = b"") -> bytes:
    hdr = struct.pack("!BBBBIHHIIII", 1, 1, 6, 0, xid, 0, 0x8000, 0, 0, 0, 0)
    pkt = (hdr + mac.ljust(16, b"\0") + b"\0" * 192 + MAGIC
           + bytes([53, 1, msg_type]) + bytes([61, 7, 1]) + mac
           + bytes([55, 4, 1, 3, 6, 51]) + extra + b"\xff")
    return pkt.ljust(300, b"\0")


def _dhcp_parse(data: bytes) -> dict | None:
    if len(data) < 240 or data[0] != 2 or data[236:240] != MAGIC:
        return None
    out = {"xid": struct.unpack("!I", data[4:8])[0],
           "yiaddr": socket.inet_ntoa(data[16:20]), "mac": data[28:34]}
    i = 240
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        ln = data[i + 1]
        val = data[i + 2:i + 2 + ln]
        if code == 53 and ln == 1:
            out["type"] = val[0]
        elif code == 54 and ln == 4:
            out["server"] = socket.inet_ntoa(val)
        i += 2 + ln
    return out


def probe_main(iface: str, interval: float, duration: float) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.bind(("", 68))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    rnd = random.Random()
    pending: dict[int, dict] = {}
    out = sys.stdout

    def emit(**kw):
        out.write(json.dumps(kw) + "\n")
        out.flush()

    emit(ev="start", t=time.monotonic())
    end = time.monotonic() + duration
    next_send = time.monotonic()
    n = 0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_send:
            n += 1
            mac = bytes([2]) + rnd.randbytes(5)
            xid = rnd.getrandbits(32)
            pending[xid] = {"mac": mac, "t0": now, "n": n}
            s.sendto(_dhcp_packet(1, xid, mac), ("255.255.255.255", 67))
            emit(ev="discover", t=now, n=n)
            next_send += interval
            for x in [x for x, p in pending.items() if now - p["t0"] > 10]:
                del pending[x]
        r, _, _ = select.select([s], [], [], max(0.0, next_send - time.monotonic()))
        if not r:
            continue
        data = s.recv(4096)
        t = time.monotonic()
        m = _dhcp_parse(data)
        if not m or m["xid"] not in pending:
            continue
        p = pending[m["xid"]]
        if m["mac"] != p["mac"]:
            continue
        kind = {2: "offer", 5: "ack", 6: "nak"}.get(m.get("type"))
        if kind == "offer" and "offered" not in p and m.get("server"):
            p["offered"] = m["server"]
            extra = (bytes([50, 4]) + socket.inet_aton(m["yiaddr"])
                     + bytes([54, 4]) + socket.inet_aton(m["server"]))
            s.sendto(_dhcp_packet(3, m["xid"], p["mac"], extra), ("255.255.255.255", 67))
            emit(ev="offer", t=t, n=p["n"], t0=p["t0"], server=m.get("server"))
        elif kind in ("ack", "nak"):
            emit(ev=kind, t=t, n=p["n"], t0=p["t0"], server=m.get("server"), ip=m["yiaddr"])
            del pending[m["xid"]]
    return 0


def read_events(path: str) -> list[dict]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------
# Takeover
# --------------------------------------------------------------------------


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


def takeover_runs(pair: DhcpfoPair, args, lab_ns: dict, takeovers: list[Takeover]) -> None:
    rnd = random.Random(args.seed)
    for n in range(1, args.takeovers + 1):
        tk = Takeover(n=n, load_rate=args.takeover_load)
        takeovers.append(tk)
        procs: list[subprocess.Popen] = []
        outs = []
        try:
            _one_takeover(pair, args, lab_ns, tk, rnd, procs, outs)
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
            tk.ok = False
            _add_note(tk, f"error: {e!r}")
        finally:
            for p in procs:
                if p.poll() is None:
                    stop_pid(p.pid, grace=3.0, proc=p)
            for f in outs:
                f.close()
        log(f"takeover {n}: secondary status active after {fmt(tk.status_active_s, '.2f')} s, "
            f"new client ACKed by it after {fmt(tk.first_ack_s, '.2f')} s, udhcpc bound after "
            f"{fmt(tk.udhcpc_s, '.2f')} s (from {tk.udhcpc_server}); primary restarted: pair "
            f"synced after {fmt(tk.resync_s, '.1f')} s, longest gap without ACKs "
            f"{fmt(tk.failback_gap_s, '.2f')} s" + (f"  [{tk.note}]" if tk.note else ""))
        if not pair.alive() or tk.resync_s is None:
            break


def _add_note(tk: Takeover, text: str) -> None:
    tk.note = (tk.note + "; " if tk.note else "") + text


def _one_takeover(pair: DhcpfoPair, args, lab_ns: dict, tk: Takeover, rnd, procs, outs):
    wd = os.path.join(pair.dir, f"takeover{tk.n}")
    os.makedirs(wd)
    tk.leases_before = pair.lease_counts()
    lasting = int(args.takeover_timeout + args.start_timeout + args.ha_timeout + 30)
    # A steady low load: perfdhcp broadcasting (both servers hear it; the passive one
    # ignores it), new clients from a MAC base of their own.
    load = None
    if args.takeover_load > 0:
        f = open(os.path.join(wd, "perfdhcp.out"), "w")
        outs.append(f)
        base = f"02:fa:{tk.n:02x}:00:00:00"
        load = subprocess.Popen(
            ["ip", "netns", "exec", lab_ns["cli"], "perfdhcp", "-4", "-l", "e0",
             "-r", str(args.takeover_load), "-R", "100000", "-b", f"mac={base}",
             "-p", str(lasting)],
            stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True)
        procs.append(load)
    probe_out = os.path.join(wd, "probe.jsonl")
    f = open(probe_out, "w")
    outs.append(f)
    procs.append(subprocess.Popen(
        ["ip", "netns", "exec", lab_ns["prb"], sys.executable, os.path.abspath(__file__),
         "--probe", "e0", str(args.probe_interval), str(lasting)],
        stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, start_new_session=True))
    # the udhcpc host gets a fresh MAC: a new client
    run(["ip", "-n", lab_ns["udc"], "link", "set", "e0", "address", random_mac(rnd)])

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
    udc_out = open(udc_path, "w")
    outs.append(udc_out)
    udc = subprocess.Popen(
        ["ip", "netns", "exec", lab_ns["udc"], "udhcpc", "-f", "-q", "-n", "-i", "e0",
         "-t", str(int(args.takeover_timeout)), "-T", "1", "-s", "/bin/true"],
        stdin=subprocess.DEVNULL, stdout=udc_out, stderr=subprocess.STDOUT,
        start_new_session=True)
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
                    and e.get("server") == SECONDARY_ADDR and e["t"] > t_kill]
            if acks:
                first = min(acks, key=lambda e: e["t"])
                tk.first_ack_s = round(first["t"] - t_kill, 3)
                tk.first_served_sent_s = round(first["t0"] - t_kill, 3)
        if tk.status_active_s is not None and tk.first_ack_s is not None \
                and not waiter.is_alive():
            break
        time.sleep(0.05)
    if udc.poll() is None:
        stop_pid(udc.pid, grace=2.0, proc=udc)
    waiter.join(timeout=5)
    udc_out.flush()
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
            p = db.parse_perfdhcp(f.read())
        if "do" in p:
            tk.load_discovers = int(p["do"].get("sent", 0))
            tk.load_acks = int(p.get("ra", {}).get("received", 0))
    for p in procs:
        if p.poll() is None:
            stop_pid(p.pid, grace=3.0, proc=p)

    ev = read_events(probe_out)
    acked = {e["n"] for e in ev if e.get("ev") == "ack"}
    tk.passive_answers = sum(1 for e in ev if e.get("ev") == "ack"
                             and e.get("server") == SECONDARY_ADDR and e["t"] <= t_kill)
    if tk.first_ack_s is not None:
        t_first = t_kill + tk.first_served_sent_s
        tk.probes_unanswered = sum(1 for e in ev if e.get("ev") == "discover"
                                   and t_kill - 1.0 <= e["t"] < t_first
                                   and e["n"] not in acked)
    back = [e["t"] for e in ev if e.get("ev") == "ack" and e.get("server") == PRIMARY_ADDR
            and e["t"] > t_restart]
    if back:
        tk.failback_first_ack_s = round(min(back) - t_restart, 3)
    times = sorted([t_restart, t_end] + [e["t"] for e in ev if e.get("ev") == "ack"
                                          and t_restart < e["t"] < t_end])
    tk.failback_gap_s = round(max(b - a for a, b in zip(times, times[1:])), 3)
    tk.failback_unanswered = sum(1 for e in ev if e.get("ev") == "discover"
                                 and t_restart <= e["t"] < t_end - 1.0 and e["n"] not in acked)
    pair.collect_events(f"takeover {tk.n} failback")  # (the restarted primary appends)


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
    db.add_stepping_arguments(ap, "500,1000,2000,3000,4000,6000,8000", subject="pair",
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
    args.pairs = db.parse_choices(ap, args.pairs, PAIRS, "pair")
    args.rates = db.parse_rates(ap, args.rates)
    # what dhcp_bench's machinery expects
    args.fresh_each_step = False
    args.macs = "sequential"
    args.mac_arg = []
    return args


def _raise_exit(signum, frame):
    log(f"signal {signum}: cleaning up")
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe"]:
        return probe_main(argv[1], float(argv[2]), float(argv[3]))
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("ha_bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    for tool in ("ip", "ss", "perfdhcp") + (("udhcpc",) if args.takeovers else ()):
        if shutil.which(tool) is None:
            print(f"ha_bench: {tool} not found (scripts/bootstrap installs it)", file=sys.stderr)
            return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)

    lab = Lab(prefix=f"hab{os.getpid()}")
    workroot = tempfile.mkdtemp(prefix="ha_bench-")
    results: list[Result] = []
    pairs_info: dict[str, dict] = {}
    takeovers: list[Takeover] = []
    interrupted: int | None = None
    t_start = time.monotonic()
    try:
        lab.build()
        ns = {"s1": lab.host("s1", PRIMARY_ADDR), "s2": lab.host("s2", SECONDARY_ADDR),
              "cli": lab.host("cli", CLIENT_ADDR)}
        if args.takeovers:
            ns["prb"] = lab.host("prb", None)
            ns["udc"] = lab.host("udc", None)
        log(f"lab up: {lab.namespaces} (work dir {workroot})")
        if "dhcpfo" in args.pairs:
            sys.path.insert(0, ROOT)
            from dhcpfo.failover.certs import make_certs
            args.certdir = os.path.join(workroot, "certs")
            make_certs(args.certdir, list(NAMES))
        for name in args.pairs:
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

            def after(server, res, name=name):
                if name == "dhcpfo":
                    info["leases_after_steps"] = server.lease_counts()
                    if args.takeovers:
                        takeover_runs(server, args, ns, takeovers)

            try:
                bench_server(Tracked, ((ns["s1"], ns["s2"]), ns["cli"]), workroot, args, res,
                             Budget(args.quiet_budget), after=after)
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                res.status, res.error = "failed", f"{e!r}"
                log(f"{cls.name}: FAILED: {e!r}")
            finally:
                p = holder.get("pair")
                if p is not None:
                    p.collect_events("end")
                    info["ready_after_s"] = p.ready_after
                    info["events"] = p.events
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
