"""The --failover-* options, in the words of the original proposal.

A primary has ``--failover-listen PORT``; a secondary has
``--failover-master IP,PORT[,NAME]``.  Every server names itself
(``--failover-name``), lists the other servers of its group
(``--failover-peers``), and proves its name with ``--failover-cert`` /
``--failover-key`` signed by ``--failover-ca``.
"""

import hashlib
import ipaddress
import re

import attr

DEFAULT_PORT = 647  # the port IANA assigned to DHCP failover
_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")

VALUED = {
    "failover-name": "This server's name in the failover group (its certificate's "
                     "name). Default: --server-name.",
    "failover-peers": "NAME[,NAME...]: the other servers of the group; only they may "
                      "connect.",
    "failover-listen": "PORT (or ADDRESS:PORT): accept failover peers here (a "
                       "primary; secondaries may too).",
    "failover-master": "IP,PORT[,NAME]: this is a secondary of the primary there.",
    "failover-peer": "IP,PORT[,NAME]: also connect to this secondary (repeat).",
    "failover-priority": "N: among secondaries, the highest takes over (default 0).",
    "failover-cert": "PEM certificate naming this server (dhcpfo-ctl make-certs).",
    "failover-key": "PEM private key of --failover-cert.",
    "failover-ca": "PEM CA certificate that signed every peer's certificate.",
    "failover-heartbeat": "Seconds between heartbeats (default 1).",
    "failover-dead-after": "Seconds of silence after which a peer is down "
                           "(default 3).",
    "failover-mclt": "Maximum client lead time (default 1h): how far a lease may "
                     "run past what the peers acknowledged.",
    "failover-reserve": "PERCENT of free addresses each secondary holds in reserve "
                        "(default 10).",
    "failover-partner-down-after": "SECONDS: declare a peer gone for good after "
                                   "this long unreachable, and take over its "
                                   "addresses MCLT later (default: never; "
                                   "dhcpfo-ctl partner-down NAME does it by hand).",
}
FLAGS = {
    "failover-insecure": "Plain TCP between peers, no authentication (labs only; "
                         "logged loudly).",
}


class FailoverOptionError(ValueError):
    pass


@attr.s
class FailoverConfig:
    name = attr.ib(default=None)
    peers = attr.ib(factory=list)
    listen = attr.ib(default=None)      # (host, port)
    master = attr.ib(default=None)      # (ip, port, name)
    peer_addresses = attr.ib(factory=list)  # [(ip, port, name)]
    priority = attr.ib(default=0)
    cert = attr.ib(default=None)
    key = attr.ib(default=None)
    ca = attr.ib(default=None)
    insecure = attr.ib(default=False)
    heartbeat = attr.ib(default=1.0)
    dead_after = attr.ib(default=3.0)
    mclt = attr.ib(default=3600.0)
    reserve = attr.ib(default=0.1)
    partner_down_after = attr.ib(default=None)

    @property
    def role(self):
        return "secondary" if self.master is not None else "primary"


def _name(text):
    name = text.strip().lower()
    if not _NAME.match(name):
        raise FailoverOptionError("%r is not a valid server name (letters, digits, "
                                  "'-', dots)" % text)
    return name


def _port(text):
    try:
        port = int(text)
    except ValueError:
        raise FailoverOptionError("%r is not a port number" % text) from None
    if not 0 < port < 65536:
        raise FailoverOptionError("port %d is outside 1-65535" % port)
    return port


def _seconds(text, least):
    try:
        value = float(text)
    except ValueError:
        raise FailoverOptionError("%r is not a number of seconds" % text) from None
    if value < least:
        raise FailoverOptionError("must be at least %g seconds" % least)
    return value


def _address(text, peers):
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise FailoverOptionError("expected IP,PORT[,NAME]")
    try:
        ipaddress.ip_address(parts[0])
    except ValueError:
        raise FailoverOptionError("%r is not an IP address" % parts[0]) from None
    name = _name(parts[2]) if len(parts) == 3 else None
    return parts[0], _port(parts[1]), name


def apply(fc, name, value, parse_time):
    """Set one --failover-* option on ``fc`` (a FailoverConfig)."""
    if name == "failover-insecure":
        fc.insecure = True
    elif name == "failover-name":
        fc.name = _name(value)
    elif name == "failover-peers":
        fc.peers = [_name(v) for v in value.split(",") if v.strip()]
    elif name == "failover-listen":
        host, _, port = value.rpartition(":")
        fc.listen = (host or "", _port(port))
    elif name == "failover-master":
        fc.master = _address(value, fc.peers)
    elif name == "failover-peer":
        fc.peer_addresses.append(_address(value, fc.peers))
    elif name == "failover-priority":
        try:
            fc.priority = int(value)
        except ValueError:
            raise FailoverOptionError("%r is not a whole number" % value) from None
    elif name in ("failover-cert", "failover-key", "failover-ca"):
        setattr(fc, name.split("-")[1], value.strip())
    elif name == "failover-heartbeat":
        fc.heartbeat = _seconds(value, 0.1)
    elif name == "failover-dead-after":
        fc.dead_after = _seconds(value, 0.3)
    elif name == "failover-mclt":
        fc.mclt = float(parse_time(value))
    elif name == "failover-partner-down-after":
        fc.partner_down_after = _seconds(value, 1.0)
    elif name == "failover-reserve":
        try:
            share = float(value.strip().rstrip("%"))
        except ValueError:
            raise FailoverOptionError("%r is not a percentage" % value) from None
        if not 0 <= share <= 50:
            raise FailoverOptionError("a reserve of %g%% is outside 0-50%%" % share)
        fc.reserve = share / 100.0


def finish(fc, server_name):
    """Check the whole failover configuration; return it, completed."""
    if fc.name is None:
        fc.name = _name(server_name)
    if fc.master is None and fc.listen is None:
        raise FailoverOptionError(
            "a failover server needs --failover-listen PORT (primary) or "
            "--failover-master IP,PORT (secondary)")
    if not fc.peers:
        raise FailoverOptionError(
            "--failover-peers is missing: list the other servers' names, e.g. "
            "--failover-peers dhcp-b")
    if fc.name in fc.peers:
        raise FailoverOptionError("--failover-peers lists this server's own name %r"
                                  % fc.name)
    fc.master = _named(fc.master, fc.peers, "--failover-master")
    fc.peer_addresses = [_named(a, fc.peers, "--failover-peer")
                         for a in fc.peer_addresses]
    if not fc.insecure:
        missing = [opt for opt in ("cert", "key", "ca") if getattr(fc, opt) is None]
        if missing:
            raise FailoverOptionError(
                "mutual TLS needs %s (make them with: dhcpfo-ctl make-certs DIR %s %s), "
                "or pass --failover-insecure for a lab"
                % (", ".join("--failover-" + m for m in missing), fc.name,
                   " ".join(fc.peers)))
    if fc.dead_after <= fc.heartbeat:
        raise FailoverOptionError("--failover-dead-after (%gs) must exceed "
                                  "--failover-heartbeat (%gs)"
                                  % (fc.dead_after, fc.heartbeat))
    return fc


def _named(address, peers, option):
    if address is None:
        return None
    ip, port, name = address
    if name is None:
        if len(peers) != 1:
            raise FailoverOptionError(
                "%s %s,%d: add the peer's name (IP,PORT,NAME): several "
                "--failover-peers are listed" % (option, ip, port))
        name = peers[0]
    if name not in peers:
        raise FailoverOptionError("%s names %r, which is not in --failover-peers"
                                  % (option, name))
    return ip, port, name


def pool_description(ranges):
    """The pools as text, one line per range: what peers must agree on."""
    def dotted(n):
        return str(ipaddress.IPv4Address(n))
    lines = sorted("%s-%s%s%s" % (dotted(r.start), dotted(r.end),
                                  "/" + dotted(r.netmask) if r.netmask else "",
                                  " static" if r.static else "")
                   for r in ranges)
    return "\n".join(lines)


def pool_digest(ranges):
    return hashlib.sha256(pool_description(ranges).encode()).hexdigest()
