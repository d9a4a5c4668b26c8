"""A DHCP load generator that remembers every ACK.

Many simulated clients on one host, acting as a relay (``giaddr`` = this
host's address, replies come back to UDP port 67 here) and sending each
request to every server, as a relay with two servers does.  Each client does
DISCOVER/OFFER/REQUEST/ACK once, then renews (REQUEST with ``ciaddr``), or,
for a ``--churn`` share of its turns, RELEASEs and starts over; a NAK
sends it back to DISCOVER; after a silence of ``--timeout`` seconds it tries
again (a renewal while its lease lasts).  Every ACK is
recorded (address, client MAC, absolute expiry by this host's clock, the
server that sent it), so a fault test can check what the clients were told
against what each server holds afterwards.

Run it inside a lab namespace, as root (port 67)::

    python -m bench.loadgen --giaddr 192.0.2.250 --server 192.0.2.1 \\
        --server 192.0.2.2 --clients 200 --rate 300 --duration 20 --out acks.json

The JSON written has ``acks`` (every ACK, in order), ``last`` (each client's
newest ACK), and counters.  The loop stops by itself after ``--duration``.
"""

import argparse
import json
import os
import random
import select
import socket
import sys
import time

from dhcpfo.addr import bytes_from_str, str_from_bytes
from dhcpfo.dhcp import packet as P

__all__ = ["LoadGenerator", "main"]


class _Client:
    __slots__ = ("mac", "ip", "server_id", "state", "xid", "sent", "expiry")

    def __init__(self, mac):
        self.mac = mac
        self.ip = None          # bytes, once bound
        self.server_id = None
        self.state = "idle"     # idle, discovering, requesting, renewing
        self.xid = 0
        self.sent = 0.0
        self.expiry = None


class LoadGenerator:
    """``clients`` simulated clients starting about ``rate`` exchanges a
    second in total; see the module docstring."""

    def __init__(self, giaddr, servers, clients=200, rate=300.0, timeout=1.0,
                 seed=1, churn=0.0, clock=time.time):
        self.giaddr = bytes_from_str(giaddr)
        self.servers = list(servers)
        self.rate = rate
        self.timeout = timeout
        self.clock = clock
        self.churn = churn      # share of exchanges that release and rejoin
        self._rnd = rnd = random.Random(seed)
        prefix = bytes((0x02, rnd.randrange(256)))
        self.clients = [_Client(prefix + i.to_bytes(4, "big"))
                        for i in range(clients)]
        self._by_xid = {}
        self._xids = rnd.randrange(1 << 24) << 8
        self.acks = []          # every ACK: dict(t, ip, mac, expiry, server)
        self.releases = []      # every RELEASE sent: dict(t, ip, mac)
        self.counts = {"discover": 0, "request": 0, "renew": 0, "offer": 0,
                       "ack": 0, "nak": 0, "timeout": 0, "release": 0}
        self.sock = None

    def open(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((str_from_bytes(self.giaddr), 67))
        s.setblocking(False)
        self.sock = s

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- sending ---------------------------------------------------------------

    def _send(self, c, mtype, options=(), ciaddr=P.ZERO_IP):
        self._by_xid.pop(c.xid, None)
        self._xids = (self._xids + 1) & 0xFFFFFFFF
        c.xid = self._xids
        self._by_xid[c.xid] = c
        c.sent = self.clock()
        opts = {P.MESSAGE_TYPE: bytes((mtype,))}
        opts.update(options)
        data = P.Packet(xid=c.xid, chaddr=c.mac, hops=1, ciaddr=ciaddr,
                        giaddr=self.giaddr, options=opts).encode()
        for server in self.servers:
            try:
                self.sock.sendto(data, (server, 67))
            except OSError:
                pass  # e.g. no route for a moment: a timeout retries

    def _start(self, c):
        if (c.ip is not None and self.churn
                and self._rnd.random() < self.churn):
            # Give the lease back and start over, as a client that leaves
            # and comes back does: DISCOVER/REQUEST under load, not renewals only.
            self.counts["release"] += 1
            self.releases.append({"t": self.clock(), "ip": str_from_bytes(c.ip),
                                  "mac": c.mac.hex(":")})
            options = {P.SERVER_ID: c.server_id} if c.server_id else {}
            self._send(c, P.RELEASE, options, ciaddr=c.ip)
            c.ip = c.expiry = None
        if c.ip is not None and c.expiry is not None and c.expiry > self.clock():
            c.state = "renewing"
            self.counts["renew"] += 1
            self._send(c, P.REQUEST, ciaddr=c.ip)
        else:
            c.state = "discovering"
            self.counts["discover"] += 1
            self._send(c, P.DISCOVER)

    # -- receiving -------------------------------------------------------------

    def _received(self, data, source):
        try:
            pkt = P.parse(data)
        except Exception:
            return
        c = self._by_xid.get(pkt.xid)
        if c is None or pkt.chaddr[:6] != c.mac:
            return
        mtype = pkt.message_type
        server_id = pkt.options.get(P.SERVER_ID)
        if mtype == P.OFFER and c.state == "discovering":
            self.counts["offer"] += 1
            c.state = "requesting"
            c.server_id = server_id
            self.counts["request"] += 1
            self._send(c, P.REQUEST, {P.REQUESTED_ADDRESS: pkt.yiaddr,
                                      P.SERVER_ID: server_id})
        elif mtype == P.ACK and c.state in ("requesting", "renewing"):
            now = self.clock()
            seconds = int.from_bytes(pkt.options.get(P.LEASE_TIME, b"\0\0\0\0"),
                                     "big")
            c.ip, c.expiry, c.server_id = pkt.yiaddr, now + seconds, server_id
            c.state = "idle"
            self._by_xid.pop(c.xid, None)
            self.counts["ack"] += 1
            self.acks.append({"t": now, "ip": str_from_bytes(pkt.yiaddr),
                              "mac": c.mac.hex(":"), "expiry": c.expiry,
                              "lease_time": seconds,
                              "server": str_from_bytes(server_id)
                              if server_id else source[0]})
        elif mtype == P.NAK and c.state in ("requesting", "renewing"):
            self.counts["nak"] += 1
            c.ip = c.expiry = None
            c.state = "idle"
            self._by_xid.pop(c.xid, None)

    # -- the loop --------------------------------------------------------------

    def run(self, duration):
        """Run for ``duration`` seconds; returns :meth:`result`."""
        start = self.clock()
        end = start + duration
        started = 0
        idle = list(self.clients)
        busy = []
        while True:
            now = self.clock()
            if now >= end:
                break
            # Timeouts: back to DISCOVER (the server may be gone).
            still = []
            for c in busy:
                if c.state == "idle":
                    idle.append(c)
                elif now - c.sent > self.timeout:
                    # Keep the lease: like a real client, renew (rebind) it
                    # while it lasts, DISCOVER only once it is gone.
                    self.counts["timeout"] += 1
                    c.state = "idle"
                    self._by_xid.pop(c.xid, None)
                    idle.append(c)
                else:
                    still.append(c)
            busy = still
            due = int((now - start) * self.rate) - started
            while due > 0 and idle:
                c = idle.pop(0)
                self._start(c)
                busy.append(c)
                started += 1
                due -= 1
            ready, _, _ = select.select([self.sock], [], [], 0.002)
            if ready:
                for _ in range(256):
                    try:
                        data, source = self.sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    self._received(data, source)
        return self.result(self.clock() - start)

    def result(self, elapsed):
        """``last``: each client's newest ACK, unless it released that lease
        afterwards (then the client holds nothing it was told)."""
        events = sorted([(a["t"], 1, a) for a in self.acks]
                        + [(r["t"], 0, r) for r in self.releases],
                        key=lambda e: (e[0], e[1]))
        last = {}
        for _, is_ack, event in events:
            if is_ack:
                last[event["mac"]] = event
            else:
                last.pop(event["mac"], None)
        return {"elapsed": elapsed, "counts": dict(self.counts),
                "acks_per_second": len(self.acks) / elapsed if elapsed else 0.0,
                "acks": self.acks, "releases": self.releases, "last": last}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--giaddr", required=True, help="this host's address")
    ap.add_argument("--server", action="append", required=True,
                    help="a server address (repeat for each)")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rate", type=float, default=300.0,
                    help="exchanges started per second")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--churn", type=float, default=0.0,
                    help="share of exchanges that RELEASE and DISCOVER again")
    ap.add_argument("--out", required=True, help="JSON file written at the end")
    args = ap.parse_args(argv)
    gen = LoadGenerator(args.giaddr, args.server, clients=args.clients,
                        rate=args.rate, timeout=args.timeout, seed=args.seed,
                        churn=args.churn)
    gen.open()
    try:
        result = gen.run(args.duration)
    finally:
        gen.close()
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, args.out)
    print(json.dumps({"counts": result["counts"], "elapsed": result["elapsed"],
                      "acks_per_second": result["acks_per_second"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
