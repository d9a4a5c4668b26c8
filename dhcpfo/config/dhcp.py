"""The DHCP options: ``--dhcp-range``, ``--dhcp-host``, ``--dhcp-option``,
``--domain``, ``--interface``, ``--lease-store`` (see docs/configuration.md)."""

import re

from dhcpfo.addr import ip_str
from dhcpfo.config import dhcp_options
from dhcpfo.config.errors import ConfigError
from dhcpfo.config.records import (DEFAULT_CONTROL, DEFAULT_LEASE_TIME, DEFAULT_STORE,
                                   DhcpRange, HostReservation, OptionSetting)
from dhcpfo.config.values import (LABEL, MAC, is_ip, is_time, parse_client_id,
                                  parse_ip, parse_lease_time, parse_mac)

VALUED = {
    "interface": "Serve DHCP on this interface (repeat for several). "
                 "Default: every interface with an address in a --dhcp-range.",
    "dhcp-range": "[set:TAG,]START[,END][,NETMASK][,LEASETIME] or "
                  "START,static: addresses to lease (repeat for several).",
    "dhcp-host": "[HWADDR][,id:CLIENTID][,set:TAG][,IP][,NAME][,LEASETIME][,ignore]: "
                 "a reservation.",
    "dhcp-option": "[tag:TAG,]OPTION,[VALUE,...] where OPTION is option:NAME "
                   "or a number, e.g. option:router,192.0.2.1.",
    "domain": "The DNS domain of DHCP clients (also sent as option 15).",
    "lease-store": "Where leases are kept: PREFIX:key=value,... "
                   "(default %s; 'help' lists stores)." % DEFAULT_STORE,
    "control": "Endpoint of the HTTP control API (default %s)." % DEFAULT_CONTROL,
    "server-name": "This server's name in leases (default: the hostname).",
    "dhcp-rate-limit": "RATE[,BURST]: DISCOVERs answered per second from one "
                       "interface or relay (default 1000,2000); 0 turns the "
                       "limit off.",
}
FLAGS = {
    "dhcp-authoritative": "We are the only DHCP server on these networks: NAK "
                          "unknown clients' addresses instead of staying silent.",
    "local-service": "Answer DNS only from our own networks and loopback "
                     "(the default; accepted for dnsmasq compatibility).",
}


def parse_range(value):
    items = [i.strip() for i in value.split(",")]
    tag = None
    if items and items[0].startswith("set:"):
        tag = items.pop(0)[4:]
    if items and items[0].startswith("tag:"):
        raise ConfigError("tag: conditions on a range are not supported; "
                          "use set:TAG to name the range")
    ips = []
    lease_time = DEFAULT_LEASE_TIME
    static = False
    for item in items:
        if is_ip(item):
            ips.append(parse_ip(item))
        elif item == "static":
            static = True
        elif is_time(item) or re.match(r"^\d+[a-z]+$", item):
            lease_time = parse_lease_time(item)
        else:
            raise ConfigError("%r is neither an address, a netmask nor a lease time"
                              % item)
    if not ips:
        raise ConfigError("expected START,END[,NETMASK][,LEASETIME]")
    start = ips[0]
    if static:
        end = start
        rest = ips[1:]
    else:
        if len(ips) < 2:
            raise ConfigError("expected START,END: a range needs an end address "
                              "(or write START,static for reservations only)")
        end = ips[1]
        rest = ips[2:]
    netmask = None
    if rest:
        netmask = rest[0]
        if not _valid_netmask(netmask):
            raise ConfigError("%s is not a netmask" % ip_str(netmask))
    if end < start:
        raise ConfigError("the range ends (%s) before it starts (%s)"
                          % (ip_str(end), ip_str(start)))
    if netmask is not None and (start & netmask) != (end & netmask):
        raise ConfigError("start and end are not in one subnet of netmask %s"
                          % ip_str(netmask))
    return DhcpRange(start, end, netmask, lease_time, tag, static)


def _valid_netmask(mask):
    inverted = ~mask & 0xFFFFFFFF
    return (inverted & (inverted + 1)) == 0


def parse_host(value):
    hwaddr = client_id = ip = None
    hostname = ""
    lease_time = None
    tags = []
    ignore = False
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        if item.startswith("id:"):
            if not item[3:]:
                raise ConfigError("id: needs a client identifier, e.g. "
                                  "id:01:52:54:00:aa:bb:cc")
            client_id = parse_client_id(item[3:])
        elif item.startswith("set:"):
            tags.append(item[4:])
        elif item == "ignore":
            ignore = True
        elif MAC.match(item) and hwaddr is None and len(item) >= 11:
            hwaddr = parse_mac(item)
        elif is_ip(item):
            ip = parse_ip(item)
        elif is_time(item):
            lease_time = parse_lease_time(item)
        elif re.match(r"^[\d.]+$", item):
            raise ConfigError("%r is not a valid IPv4 address" % item)
        elif LABEL.match(item.split(".")[0]) and not hostname:
            hostname = item.lower()
        else:
            raise ConfigError("%r is not a hardware address, id:, set:, address, "
                              "name or lease time" % item)
    if hwaddr is None and client_id is None:
        raise ConfigError("a reservation needs a hardware address or id:CLIENTID")
    return HostReservation(hwaddr, client_id, ip, hostname, lease_time,
                           tuple(tags), ignore)


def parse_option(value):
    items = value.split(",")
    tags = []
    while items and items[0].strip().startswith("tag:"):
        tags.append(items.pop(0).strip()[4:])
    if not items or not items[0].strip():
        raise ConfigError("expected [tag:TAG,]OPTION,VALUE")
    spec = items[0].strip()
    for unsupported in ("encap:", "vi-encap:", "vendor:", "option6:"):
        if spec.startswith(unsupported):
            raise ConfigError("%s options are not supported yet" % unsupported)
    code = dhcp_options.lookup(spec)
    if code in dhcp_options.RESERVED:
        raise ConfigError("option %d is set by the server itself and cannot be "
                          "configured" % code)
    values = [v.strip() for v in items[1:]]
    encoded = dhcp_options.encode_value(code, values) if any(values) else b""
    return OptionSetting(code, encoded, tuple(tags))


def parse_domain(value):
    value = value.strip().strip(".").lower()
    if not value or not all(LABEL.match(label) for label in value.split(".")):
        raise ConfigError("%r is not a domain name like lab.test" % value)
    return value


def parse_interface(value):
    value = value.strip()
    if not value or len(value) > 15 or "/" in value or " " in value:
        raise ConfigError("%r is not an interface name" % value)
    return value


def parse_store(value):
    """``PREFIX[:key=value,...]``: the syntax only.

    Whether a store plugin with that prefix is installed, and which
    parameters it takes, is checked by :func:`dhcpfo.service.makeService`
    (configuration knows no plugin)."""
    value = value.strip()
    prefix, _, rest = value.partition(":")
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9_-]*$", prefix):
        raise ConfigError("%r does not start with a store name; write "
                          "PREFIX:key=value,... e.g. %s" % (value, DEFAULT_STORE))
    split_description(rest)
    return value


def split_description(rest):
    """``k=v,k=v`` -> ``{k: v}``; ``\\`` escapes ``,`` and ``=``."""
    params = {}
    if rest:
        for item in _split(rest, ","):
            key, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(
                    "lease store parameter %r has no value; write key=value" % item)
            params[key] = value.replace("\\,", ",").replace("\\=", "=")
    return params


def _split(text, sep):
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def parse_rate_limit(value):
    """``RATE[,BURST]`` -> ``(rate, burst)``; ``0`` -> ``None`` (no limit)."""
    items = [i.strip() for i in value.split(",")]
    try:
        numbers = [int(i) for i in items]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 2 or any(n < 0 for n in numbers):
        raise ConfigError("%r is not RATE[,BURST] (whole numbers, e.g. 1000,2000; "
                          "0 turns the limit off)" % value)
    rate = numbers[0]
    if rate == 0:
        return None
    burst = numbers[1] if len(numbers) == 2 else 2 * rate
    if burst < 1:
        raise ConfigError("a burst of %d lets nothing through; give at least 1 "
                          "(default: twice the rate)" % burst)
    return (rate, burst)


#: option name -> (Config field, parser, repeatable)
PARSERS = {
    "interface": ("interfaces", parse_interface, True),
    "dhcp-range": ("ranges", parse_range, True),
    "dhcp-host": ("hosts", parse_host, True),
    "dhcp-option": ("options", parse_option, True),
    "domain": ("domain", parse_domain, False),
    "lease-store": ("lease_store", parse_store, False),
    "control": ("control", str.strip, False),
    "server-name": ("server_name", str.strip, False),
    "dhcp-rate-limit": ("dhcp_rate_limit", parse_rate_limit, False),
}
