"""The ``--failover-*`` options, in the words of the original proposal.

A primary has ``--failover-listen PORT``; a secondary has
``--failover-master IP,PORT[,NAME]``.  Every server names itself
(``--failover-name``), lists the other servers of its group
(``--failover-peers``), and proves its name with ``--failover-cert`` /
``--failover-key`` signed by ``--failover-ca``.  Parsing collects the
values in a dict; :func:`finish` checks them together and returns the
frozen :class:`~dhcpfo.config.records.FailoverConfig`.
"""

import ipaddress
import re

from dhcpfo.config.errors import ConfigError
from dhcpfo.config.records import FailoverConfig
from dhcpfo.config.values import parse_lease_time, parse_port

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


def _name(text):
    name = text.strip().lower()
    if not _NAME.match(name):
        raise ConfigError("%r is not a valid server name (letters, digits, "
                          "'-', dots)" % text)
    return name


def _seconds(text, least):
    try:
        value = float(text)
    except ValueError:
        raise ConfigError("%r is not a number of seconds" % text) from None
    if value < least:
        raise ConfigError("must be at least %g seconds" % least)
    return value


def _address(text):
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise ConfigError("expected IP,PORT[,NAME]")
    try:
        ipaddress.ip_address(parts[0])
    except ValueError:
        raise ConfigError("%r is not an IP address" % parts[0]) from None
    name = _name(parts[2]) if len(parts) == 3 else None
    return parts[0], parse_port(parts[1]), name


def _reserve(value):
    try:
        share = float(value.strip().rstrip("%"))
    except ValueError:
        raise ConfigError("%r is not a percentage" % value) from None
    if not 0 <= share <= 50:
        raise ConfigError("a reserve of %g%% is outside 0-50%%" % share)
    return share / 100.0


def _priority(value):
    try:
        return int(value)
    except ValueError:
        raise ConfigError("%r is not a whole number" % value) from None


def _listen(value):
    host, _, port = value.rpartition(":")
    return host or "", parse_port(port)


_SINGLE = {
    "failover-name": ("name", _name),
    "failover-peers": ("peers", lambda v: tuple(_name(p) for p in v.split(",")
                                                if p.strip())),
    "failover-listen": ("listen", _listen),
    "failover-master": ("master", _address),
    "failover-priority": ("priority", _priority),
    "failover-cert": ("cert", str.strip),
    "failover-key": ("key", str.strip),
    "failover-ca": ("ca", str.strip),
    "failover-heartbeat": ("heartbeat", lambda v: _seconds(v, 0.1)),
    "failover-dead-after": ("dead_after", lambda v: _seconds(v, 0.3)),
    "failover-mclt": ("mclt", lambda v: float(parse_lease_time(v))),
    "failover-partner-down-after": ("partner_down_after", lambda v: _seconds(v, 1.0)),
    "failover-reserve": ("reserve", _reserve),
}


def apply(fields, name, value):
    """Record one --failover-* option in ``fields`` (a dict of FailoverConfig
    fields)."""
    if name == "failover-insecure":
        fields["insecure"] = True
    elif name == "failover-peer":
        fields["peer_addresses"] = fields.get("peer_addresses", ()) + (_address(value),)
    else:
        field, parse = _SINGLE[name]
        fields[field] = parse(value)


def finish(fields, server_name):
    """Check the failover options together; the frozen FailoverConfig."""
    fc = FailoverConfig(**fields)
    name = fc.name if fc.name is not None else _name(server_name)
    if fc.master is None and fc.listen is None:
        raise ConfigError(
            "a failover server needs --failover-listen PORT (primary) or "
            "--failover-master IP,PORT (secondary)")
    if not fc.peers:
        raise ConfigError(
            "--failover-peers is missing: list the other servers' names, e.g. "
            "--failover-peers dhcp-b")
    if name in fc.peers:
        raise ConfigError("--failover-peers lists this server's own name %r" % name)
    master = _named(fc.master, fc.peers, "--failover-master")
    peer_addresses = tuple(_named(a, fc.peers, "--failover-peer")
                           for a in fc.peer_addresses)
    if not fc.insecure:
        missing = [opt for opt in ("cert", "key", "ca") if getattr(fc, opt) is None]
        if missing:
            raise ConfigError(
                "mutual TLS needs %s (make them with: dhcpfo-ctl make-certs DIR %s %s), "
                "or pass --failover-insecure for a lab"
                % (", ".join("--failover-" + m for m in missing), name,
                   " ".join(fc.peers)))
    if fc.dead_after <= fc.heartbeat:
        raise ConfigError("--failover-dead-after (%gs) must exceed "
                          "--failover-heartbeat (%gs)" % (fc.dead_after, fc.heartbeat))
    return FailoverConfig(**dict(fields, name=name, master=master,
                                 peer_addresses=peer_addresses))


def _named(address, peers, option):
    if address is None:
        return None
    ip, port, name = address
    if name is None:
        if len(peers) != 1:
            raise ConfigError(
                "%s %s,%d: add the peer's name (IP,PORT,NAME): several "
                "--failover-peers are listed" % (option, ip, port))
        name = peers[0]
    if name not in peers:
        raise ConfigError("%s names %r, which is not in --failover-peers"
                          % (option, name))
    return ip, port, name
