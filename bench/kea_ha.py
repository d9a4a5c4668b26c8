"""Kea 2.2 hot-standby HA pairs: kea-dhcp4 with the HA and lease_cmds hooks.

``kea-ha-mt``: multi-threaded, the peers talking to each other's dedicated HTTP
listener (Kea >= 1.9.7).  ``kea-ha-ca``: single-threaded, the peers talking
through each other's kea-ctrl-agent.  A pair is ready when ``ha-heartbeat``
on both control sockets (unix sockets: reachable from any namespace) answers
``hot-standby``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time

from bench.common import PARTNER_ADDR, SBIN_PATH, SERVER_ADDR, log
from bench.pairs import LogWatch, Pair
from bench.servers import Kea, Server, ServerFailed, kea_env

KEA_HA_PORT = 8000
# Where Debian and Ubuntu install the hooks; otherwise dpkg is asked.
KEA_HOOKS_DIRS = ("/usr/lib/x86_64-linux-gnu/kea/hooks", "/usr/lib/kea/hooks")


def kea_hooks_dir() -> str | None:
    for d in KEA_HOOKS_DIRS:
        if os.path.exists(os.path.join(d, "libdhcp_ha.so")):
            return d
    try:
        cp = subprocess.run(["dpkg", "-L", "kea-dhcp4-server"], capture_output=True,
                            text=True, timeout=10)
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

    def __init__(self, lab, host: str, workdir: str, args, role: str, mode: str, hooks: str):
        self.role, self.mode, self.hooks = role, mode, hooks
        self.hname = "server1" if role == "primary" else "server2"
        self.name = f"kea-{self.hname}"
        super().__init__(lab, host, workdir, args)
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
                {"name": "server1", "url": f"http://{SERVER_ADDR}:{KEA_HA_PORT}/",
                 "role": "primary", "auto-failover": True},
                {"name": "server2", "url": f"http://{PARTNER_ADDR}:{KEA_HA_PORT}/",
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

    def __init__(self, lab, host: str, workdir: str, args, addr: str, sock: str, hname: str):
        self.name = f"kea-ca-{hname}"
        super().__init__(lab, host, workdir, args)
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
        return kea_env(self.dir)

    def ready(self) -> bool:
        return self.listens("-Htlnp", KEA_HA_PORT)

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
        if self.mode == "ca" and shutil.which("kea-ctrl-agent", path=SBIN_PATH) is None:
            raise ServerFailed("kea-ctrl-agent not installed (package kea-ctrl-agent)")
        t0 = time.monotonic()
        keas = []
        for i, role in enumerate(("primary", "standby")):
            d = os.path.join(self.dir, f"server{i + 1}")
            os.makedirs(d, exist_ok=True)
            k = KeaMember(self.lab, self.hosts[i], d, self.args, role, self.mode, hooks)
            self._start_member(k, timeout)
            self.watches[k.hname] = LogWatch(os.path.join(d, "kea.log"), KEA_EVENT_RE,
                                             KEA_EVENT_EXCLUDE)
            keas.append(k)
        if self.mode == "ca":
            for i, k in enumerate(keas):
                addr = SERVER_ADDR if i == 0 else PARTNER_ADDR
                ca = KeaCtrlAgent(self.lab, self.hosts[i], k.dir, self.args, addr, k.sock,
                                  k.hname)
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

    def after_step(self, st) -> None:
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

