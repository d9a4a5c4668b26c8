"""The takeover prober: a stream of new DHCP clients, each answer time-stamped.

Run inside a lab host (by :mod:`bench.takeover`)::

    python -m bench.prober IFACE INTERVAL DURATION

A new client (random MAC) every INTERVAL seconds: DISCOVER, then REQUEST for
the first OFFER, broadcast flag set.  It prints one JSON line per event with
``time.monotonic()`` stamps: CLOCK_MONOTONIC is the same in every network
namespace, so the benchmark can compare them with the moment it killed a server.
Packets are built and read with dhcpfo's own codec.
"""

from __future__ import annotations

import json
import random
import select
import signal
import socket
import sys
import time

from dhcpfo.addr import bytes_from_str, str_from_bytes
from dhcpfo.dhcp import packet as P

_KINDS = {2: "offer", 5: "ack", 6: "nak"}     # DHCPOFFER, DHCPACK, DHCPNAK


def request_packet(msg_type: int, xid: int, mac: bytes, extra=()) -> bytes:
    """A broadcast DHCPDISCOVER (1) or DHCPREQUEST (3) from client ``mac``."""
    options = {P.MESSAGE_TYPE: bytes([msg_type]), P.CLIENT_ID: b"\x01" + mac,
               P.PARAMETER_REQUEST_LIST: bytes([1, 3, 6, 51])}
    options.update(extra)
    return P.Packet(xid=xid, flags=P.BROADCAST_FLAG, chaddr=mac, options=options).encode()


def read_answer(data: bytes) -> dict | None:
    """The parts of a server's answer the prober needs, or None for anything else."""
    try:
        pkt = P.parse(data)
    except P.CodecError:
        return None
    if pkt.op != P.BOOTREPLY:
        return None
    server = pkt.options.get(P.SERVER_ID)
    return {"xid": pkt.xid, "yiaddr": str_from_bytes(pkt.yiaddr), "mac": pkt.hwaddr,
            "kind": _KINDS.get(pkt.message_type),
            "server": str_from_bytes(server) if server else None}


def main(iface: str, interval: float, duration: float) -> int:
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
            s.sendto(request_packet(1, xid, mac), ("255.255.255.255", 67))
            emit(ev="discover", t=now, n=n)
            next_send += interval
            for x in [x for x, p in pending.items() if now - p["t0"] > 10]:
                del pending[x]
        r, _, _ = select.select([s], [], [], max(0.0, next_send - time.monotonic()))
        if not r:
            continue
        data = s.recv(4096)
        t = time.monotonic()
        m = read_answer(data)
        if not m or m["xid"] not in pending:
            continue
        p = pending[m["xid"]]
        if m["mac"] != p["mac"]:
            continue
        kind = m["kind"]
        if kind == "offer" and "offered" not in p and m["server"]:
            p["offered"] = m["server"]
            extra = {P.REQUESTED_ADDRESS: bytes_from_str(m["yiaddr"]),
                     P.SERVER_ID: bytes_from_str(m["server"])}
            s.sendto(request_packet(3, m["xid"], p["mac"], extra), ("255.255.255.255", 67))
            emit(ev="offer", t=t, n=p["n"], t0=p["t0"], server=m["server"])
        elif kind in ("ack", "nak"):
            emit(ev=kind, t=t, n=p["n"], t0=p["t0"], server=m["server"], ip=m["yiaddr"])
            del pending[m["xid"]]
    return 0


def read_events(path: str) -> list[dict]:
    """The events a prober wrote to ``path`` so far (partial lines skipped)."""
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
