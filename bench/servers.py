"""The DHCP servers under test, one process each: dhcpfo, Kea (memfile) and dnsmasq.

Each is started in a lab host by :meth:`tests.lab.Lab.spawn` (so the lab
records its pid and stops it at the latest when it closes), on a work
directory of its own: a fresh lease store.
"""

from __future__ import annotations

import json
import os
import shlex
import time

from tests.lab import LabError

from bench.common import CONTROL_PORT, NETMASK, POOL_FIRST, POOL_LAST, SUBNET, log


class ServerFailed(Exception):
    pass


class Server:
    """One DHCP server under test, started in a lab host."""

    name = "?"
    binary = ""  # checked with shutil.which before starting, if set

    def __init__(self, lab, host: str, workdir: str, args):
        self.lab = lab
        self.host = host
        self.dir = workdir
        self.args = args
        self.proc = None
        self.logfile = os.path.join(workdir, f"{self.name}.out")

    # subclasses fill these in
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def ready(self) -> bool:
        """Has the server finished starting?  Default: its UDP socket on port 67 exists."""
        return self.listens("-Hulnp", 67)

    def listens(self, ss_flags: str, port: int) -> bool:
        """Does this server's own pid hold a socket on ``port`` (``ss`` -u or -t flags)?"""
        r = self.lab.run(self.host, ["ss", ss_flags, f"sport = :{port}"], timeout=5)
        return f"pid={self.proc.pid}," in r.stdout

    def naks(self) -> int | None:
        """NAKs sent so far, if the server's log says (perfdhcp counts a NAK as a drop)."""
        return None

    def after_step(self, st) -> None:
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
        argv = self.command()
        # `ip netns exec` execs the command, so proc.pid is the server's own pid.
        self.proc = self.lab.spawn(self.host, argv, self.logfile, env=self.env())
        log(f"{self.name}: started pid {self.proc.pid}: {' '.join(argv)}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"exited with status {self.proc.returncode} while starting")
            try:
                if self.ready():
                    return
            except LabError:
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
            self.lab.stop(self.proc, timeout=10)
            log(f"{self.name}: stopped pid {self.proc.pid} (status {self.proc.returncode})")


class Dhcpfo(Server):
    name = "dhcpfo"

    def bin(self, tool: str) -> str:
        return os.path.join(self.args.venv, "bin", tool)

    def command(self) -> list[str]:
        return [
            self.bin("twistd"), "-n", "--pidfile=",
            f"--logfile={os.path.join(self.dir, 'dhcpfo.log')}",
            "dhcpfo", "--interface", "e0",
            "--dhcp-range", f"{POOL_FIRST},{POOL_LAST},{NETMASK},1h",
            "--lease-store", f"sqlite:path={os.path.join(self.dir, 'leases.db')}",
            "--control", f"tcp:{CONTROL_PORT}:interface=127.0.0.1",
        ] + shlex.split(self.args.dhcpfo_args)

    def log_paths(self) -> list[str]:
        return [self.logfile, os.path.join(self.dir, "dhcpfo.log")]

    def start(self, timeout: float) -> None:
        for tool in ("twistd", "dhcpfo-ctl"):
            if not os.access(self.bin(tool), os.X_OK):
                raise ServerFailed(f"{self.bin(tool)} not found (run scripts/bootstrap)")
        super().start(timeout)

    def ctl(self, *args, timeout: float = 5.0):
        """``dhcpfo-ctl ARGS`` in this server's host; a CompletedProcess."""
        return self.lab.run(self.host, [self.bin("dhcpfo-ctl")] + list(args), timeout=timeout)

    def ready(self) -> bool:
        return self.ctl("status").returncode == 0

    def status(self) -> dict | None:
        """``dhcpfo-ctl status --json``, parsed (None if it does not answer)."""
        try:
            r = self.ctl("status", "--json")
        except LabError:
            return None
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None


def kea_env(workdir: str) -> dict[str, str]:
    """Kea's pid and lock files in the work directory, not in /run."""
    env = dict(os.environ)
    env["KEA_PIDFILE_DIR"] = workdir
    env["KEA_LOCKFILE_DIR"] = workdir
    return env


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
        return kea_env(self.dir)

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
