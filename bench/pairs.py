"""Failover pairs under test: two servers started together, perfdhcp talking to the first.

:class:`Pair` is what the stepping (:mod:`bench.stepping`) sees of two servers:
one server whose CPU is the first member's and whose "peer CPU" is the
others'.  :class:`DhcpfoPair` is a dhcpfo primary (listening) and secondary
(dialling it) with mutual TLS; the Kea pairs are in :mod:`bench.kea_ha`.
"""

from __future__ import annotations

import os
import re
import time

from bench.common import SERVER_ADDR, log
from bench.servers import Dhcpfo, Server, ServerFailed

FAILOVER_PORT = 647
NAMES = ("dhcp-a", "dhcp-b")           # dhcpfo failover names (certificates)


class DhcpfoMember(Dhcpfo):
    """One dhcpfo failover peer: the primary (listens) or the secondary (dials it)."""

    def __init__(self, lab, host: str, workdir: str, args, role: str, certdir: str,
                 start_no=1):
        self.role = role
        self.fname = NAMES[0] if role == "primary" else NAMES[1]
        self.name = f"dhcpfo-{self.fname}"
        super().__init__(lab, host, workdir, args)
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
            argv += ["--failover-master", f"{SERVER_ADDR},{FAILOVER_PORT},{other}",
                     "--failover-peers", other]
        return argv + list(self.args.dhcpfo_arg)


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

    def __init__(self, lab, hosts, workdir: str, args):
        self.hosts = tuple(hosts)
        super().__init__(lab, self.hosts[0], workdir, args)
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

    def after_step(self, st) -> None:
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

    def __init__(self, lab, hosts, workdir: str, args):
        super().__init__(lab, hosts, workdir, args)
        self.certdir = args.certdir
        self.dirs = [os.path.join(workdir, n) for n in NAMES]
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
        self.starts = [0, 0]

    def member(self, i: int) -> DhcpfoMember:
        self.starts[i] += 1
        role = "primary" if i == 0 else "secondary"
        return DhcpfoMember(self.lab, self.hosts[i], self.dirs[i], self.args, role,
                            self.certdir, self.starts[i])

    def bin(self, tool: str) -> str:
        return os.path.join(self.args.venv, "bin", tool)

    @property
    def primary(self) -> DhcpfoMember:
        return self.members[0]

    @property
    def secondary(self) -> DhcpfoMember:
        return self.members[1]

    def start(self, timeout: float) -> None:
        for tool in ("twistd", "dhcpfo-ctl"):
            if not os.access(self.bin(tool), os.X_OK):
                raise ServerFailed(f"{self.bin(tool)} not found (run scripts/bootstrap)")
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
