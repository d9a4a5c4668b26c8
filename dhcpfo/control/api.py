"""The HTTP JSON control API: status and leases (reads) and partner-down
(a state change), at ``/v1/...`` and, for older clients, at ``/...``.

The same resource tree is served on loopback TCP (``--control``, read-only)
and on the UNIX control socket (``--control-socket``), where root and
``--control-group`` may change state; :mod:`dhcpfo.control.auth` holds the
rule.
"""

import json
import time

from twisted.logger import Logger
from twisted.web.resource import Resource

from dhcpfo.control.auth import Guard, Refused, check_host

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


def _answer(request, body, code=200):
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, indent=1).encode() + b"\n"


class _JSON(Resource):
    isLeaf = True

    def __init__(self, dhcp, render):
        super().__init__()
        self._dhcp = dhcp
        self._render = render

    def render_GET(self, request):
        try:
            check_host(request)
        except Refused as e:
            return _answer(request, {"error": str(e)}, e.code)
        return _answer(request, self._render(self._dhcp, self._dhcp.reactor.seconds()))


class _Change(Resource):
    """A state change: POST with a JSON object, allowed by the Guard; every
    one is logged with who asked."""

    isLeaf = True
    _log = Logger()

    def __init__(self, dhcp, guard):
        super().__init__()
        self._dhcp = dhcp
        self._guard = guard

    def render_POST(self, request):
        try:
            who = self._guard.check_change(request)
            body = request.content.read() if request.content is not None else b""
            try:
                args = json.loads(body or b"{}")
            except ValueError:
                raise Refused(400, "the body is not JSON")
            if not isinstance(args, dict):
                raise Refused(400, "the body must be a JSON object")
            code, answer = self.change(request, args, who)
        except Refused as e:
            self._log.warn("control: refused {method} {path}: {why}",
                           method=request.method.decode("ascii", "replace"),
                           path=request.path.decode("utf-8", "replace"), why=str(e))
            return _answer(request, {"error": str(e)}, e.code)
        return _answer(request, answer, code)


class _PartnerDown(_Change):
    """POST /v1/failover/partner-down {"name": NAME}: the operator says NAME
    is gone (``?name=NAME`` is accepted too)."""

    def change(self, request, args, who):
        name = args.get("name")
        if name is None:
            name = request.args.get(b"name", [b""])[0].decode("utf-8", "replace")
        if not isinstance(name, str) or not name:
            raise Refused(400, "partner-down needs the peer's name")
        node = self._dhcp.failover
        if node is None or node.coordinator is None:
            return 409, {"error": "this server has no failover peers"}
        try:
            when = node.coordinator.declarePartnerDown(name, "operator")
        except ValueError as e:
            return 409, {"error": str(e)}
        self._log.warn("control: partner-down of {partner} asked by {who}",
                       partner=name, who=who)
        return 200, {"partner": name, "takeover_at": iso_utc(when)}


class ControlResource(Resource):
    """The API's root.  ``guard`` decides state changes (default: root only)."""

    def __init__(self, dhcp, dns=None, guard=None):
        super().__init__()
        guard = guard if guard is not None else Guard()
        v1 = Resource()
        failover = Resource()
        failover.putChild(b"partner-down", _PartnerDown(dhcp, guard))
        status = _JSON(dhcp, lambda d, now: status_json(d, now, dns))
        # Free addresses reserved for failover secondaries are not leases.
        leases = _JSON(dhcp, lambda d, now: [
            lease_json(l, now) for l in sorted(
                d.table, key=lambda l: int_from_str(l.ip))
            if l.state != BACKUP])
        for parent in (self, v1):
            parent.putChild(b"failover", failover)
            parent.putChild(b"status", status)
            parent.putChild(b"leases", leases)
        self.putChild(b"v1", v1)
