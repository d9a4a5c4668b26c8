"""The HTTP JSON control API (127.0.0.1:8067 by default): status and leases."""

import json
import time

from twisted.web.resource import Resource

import dhcpfo
from dhcpfo.addr import int_from_str, is_infinite
from dhcpfo.leases.lease import ACTIVE, BACKUP


def iso_utc(seconds):
    """An ISO 8601 UTC time, or None for the end of an infinite lease."""
    if is_infinite(seconds):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def lease_json(lease, now):
    return {
        "ip": lease.ip,
        "mac": lease.hwaddr.hex(":"),
        "client_id": lease.client_id.hex(":"),
        "hostname": lease.hostname,
        "state": lease.effective_state(now),
        "starts": iso_utc(lease.start),
        "expires": iso_utc(lease.expiry),
        "owner": lease.owner,
    }


def status_json(dhcp, now, dns=None):
    server = dhcp.server
    ranges = []
    if server is not None:
        active, reserved = [], {}
        for lease in dhcp.table:
            ip = int_from_str(lease.ip)
            if lease.state == ACTIVE and lease.expiry > now:
                active.append(ip)
            elif lease.state == BACKUP:
                reserved[ip] = lease.owner
        for subnet in server.subnets:
            for rng in subnet.ranges:
                leased = sum(1 for ip in active if rng.start <= ip <= rng.end)
                held = [o for ip, o in reserved.items() if rng.start <= ip <= rng.end]
                mine = sum(1 for o in held if o == server.name)
                ranges.append({"subnet": subnet.describe(), "range": rng.describe(),
                               "size": rng.size, "leased": leased,
                               "reserved": len(held), "reserved_here": mine,
                               "free": max(rng.size - leased - len(held), 0)})
    return {
        "version": getattr(dhcpfo, "__version__", "0.1.0"),
        "server": dhcp.config.server_name,
        "state": dhcp.state,
        "role": dhcp.failover.settings.role if dhcp.failover else "standalone",
        "failover": dhcp.failover.status() if dhcp.failover else None,
        "lease_store": dhcp.config.lease_store,
        "interfaces": [{"name": i.name, "address": i.address_str,
                        "subnet": i.subnet.describe() if i.subnet else None}
                       for i in (dhcp.interfaces or [])],
        "ranges": ranges,
        "leases": len(dhcp.table),
        "counters": dict(server.stats) if server is not None else {},
        "dns": dns.counters() if dns is not None else None,
    }


class _JSON(Resource):
    isLeaf = True

    def __init__(self, dhcp, render):
        super().__init__()
        self._dhcp = dhcp
        self._render = render

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        body = self._render(self._dhcp, self._dhcp.reactor.seconds())
        return json.dumps(body, indent=1).encode() + b"\n"


class _PartnerDown(Resource):
    """POST /failover/partner-down?name=NAME: the operator says NAME is gone."""

    isLeaf = True

    def __init__(self, dhcp):
        super().__init__()
        self._dhcp = dhcp

    def render_POST(self, request):
        request.setHeader(b"content-type", b"application/json")
        node = self._dhcp.failover
        name = request.args.get(b"name", [b""])[0].decode("utf-8", "replace")
        if node is None or node.coordinator is None:
            request.setResponseCode(409)
            return json.dumps({"error": "this server has no failover peers"}).encode()
        try:
            when = node.coordinator.declarePartnerDown(name, "operator")
        except ValueError as e:
            request.setResponseCode(409)
            return json.dumps({"error": str(e)}).encode()
        return json.dumps({"partner": name, "takeover_at": iso_utc(when)}).encode()


class ControlResource(Resource):
    def __init__(self, dhcp, dns=None):
        super().__init__()
        failover = Resource()
        failover.putChild(b"partner-down", _PartnerDown(dhcp))
        self.putChild(b"failover", failover)
        self.putChild(b"status", _JSON(
            dhcp, lambda d, now: status_json(d, now, dns)))
        # Free addresses reserved for failover secondaries are not leases.
        self.putChild(b"leases", _JSON(dhcp, lambda d, now: [
            lease_json(l, now) for l in sorted(
                d.table, key=lambda l: int_from_str(l.ip))
            if l.state != BACKUP]))
