"""One validated configuration, built from dnsmasq-style ``name=value`` pairs.

The command line and ``--conf-file`` lines both arrive here as
``(name, value, where)``; every error names where it came from, the option,
the value and what is expected.
"""

import ipaddress
import re
import socket

import attr

from dhcpfo.dhcp import options as dhcp_options
from dhcpfo.failover import options as failover_options
from dhcpfo.dns import records as dns_records
from dhcpfo.stores import registry

DEFAULT_LEASE_TIME = 3600
MIN_LEASE_TIME = 120
INFINITE = 0xFFFFFFFF
DEFAULT_CONTROL = "tcp:8067:interface=127.0.0.1"


class ConfigError(ValueError):
    """A configuration value is wrong; the message says where and how to fix it."""


@attr.s(frozen=True, slots=True)
class DhcpRange:
    start = attr.ib()         # int
    end = attr.ib()           # int
    netmask = attr.ib()       # int or None: from the interface then
    lease_time = attr.ib()    # seconds
    tag = attr.ib()           # str or None (set:TAG)
    static = attr.ib(default=False)  # only reservations, no dynamic pool


@attr.s(frozen=True, slots=True)
class HostReservation:
    hwaddr = attr.ib()        # bytes or None
    client_id = attr.ib()     # bytes or None
    ip = attr.ib()            # int or None
    hostname = attr.ib()      # str
    lease_time = attr.ib()    # int or None
    tags = attr.ib()          # tuple of str (set:TAG)
    ignore = attr.ib()        # bool: never answer this client


@attr.s(frozen=True, slots=True)
class OptionSetting:
    code = attr.ib()
    value = attr.ib()         # bytes
    tags = attr.ib()          # tuple: all must match (tag:TAG)


@attr.s(slots=True)
class Config:
    interfaces = attr.ib(factory=list)
    ranges = attr.ib(factory=list)
    hosts = attr.ib(factory=list)
    options = attr.ib(factory=list)
    domain = attr.ib(default="")
    authoritative = attr.ib(default=False)
    lease_store = attr.ib(default=registry.DEFAULT)
    control = attr.ib(default=DEFAULT_CONTROL)
    server_name = attr.ib(factory=socket.gethostname)
    failover = attr.ib(default=None)  # FailoverConfig when --failover-* given
    # DNS (dhcpfo.dns): 0 disables it
    dns_port = attr.ib(default=dns_records.DEFAULT_PORT)
    servers = attr.ib(factory=list)          # dns_records.Upstream
    host_records = attr.ib(factory=list)     # dns_records.HostRecord
    address_rules = attr.ib(factory=list)    # dns_records.AddressRule
    addn_hosts = attr.ib(factory=list)       # dns_records.HostsFile
    dns_allow = attr.ib(factory=list)        # ipaddress networks


# name: help.  Options taking a value; the flags are in FLAGS.
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
                   "(default %s; 'help' lists stores)." % registry.DEFAULT,
    "control": "Endpoint of the HTTP control API (default %s)." % DEFAULT_CONTROL,
    "server-name": "This server's name in leases (default: the hostname).",
    "dns-port": "UDP and TCP port of the DNS server (default 53; 0 disables DNS).",
    "server": "IP[#PORT]: forward DNS questions that are not ours to this "
              "server (repeat for several; tried in order, with failover).",
    "host-record": "NAME[,NAME...],ADDRESS[,ADDRESS][,TTL]: A/AAAA and PTR records.",
    "address": "/DOMAIN[/DOMAIN...]/[ADDRESS]: DOMAIN and all names below it "
               "answer ADDRESS (# for 0.0.0.0 and ::; empty: NXDOMAIN).",
    "addn-hosts": "Also answer the names of this /etc/hosts-format file.",
    "dns-allow": "NETWORK/PREFIX: also answer DNS from this network (by default "
                 "only our own networks and loopback are answered).",
}
FLAGS = {
    "dhcp-authoritative": "We are the only DHCP server on these networks: NAK "
                          "unknown clients' addresses instead of staying silent.",
    "local-service": "Answer DNS only from our own networks and loopback "
                     "(the default; accepted for dnsmasq compatibility).",
}

_MAC = re.compile(r"^([0-9a-fA-F]{1,2})([:-][0-9a-fA-F]{1,2}){1,15}$")
_TIME = re.compile(r"^(\d+)([smhdw]?)$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)


def parse_ip(text):
    try:
        return int(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise ConfigError("%r is not an IPv4 address" % text) from None


def parse_lease_time(text):
    text = text.strip()
    if text in ("infinite", "inf"):
        return INFINITE
    m = _TIME.match(text)
    if not m:
        raise ConfigError("%r is not a lease time; write e.g. 45m, 1h, 12h, 1d or "
                          "infinite" % text)
    seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400,
                                 "w": 604800}[m.group(2)]
    if seconds < MIN_LEASE_TIME:
        raise ConfigError("lease time %r is below the minimum of 2m" % text)
    return min(seconds, INFINITE - 1)


def _is_ip(text):
    try:
        ipaddress.IPv4Address(text.strip())
        return True
    except ValueError:
        return False


def _is_time(text):
    return text in ("infinite", "inf") or bool(_TIME.match(text))


def parse_mac(text):
    return bytes(int(part, 16) for part in re.split("[:-]", text))


def parse_client_id(text):
    if _MAC.match(text):
        return parse_mac(text)
    return text.encode("utf-8")


def _parse_range(value):
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
        if _is_ip(item):
            ips.append(parse_ip(item))
        elif item == "static":
            static = True
        elif _is_time(item) or re.match(r"^\d+[a-z]+$", item):
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
            raise ConfigError("%s is not a netmask" % ipaddress.IPv4Address(netmask))
    if end < start:
        raise ConfigError("the range ends (%s) before it starts (%s)"
                          % (ipaddress.IPv4Address(end), ipaddress.IPv4Address(start)))
    if netmask is not None and (start & netmask) != (end & netmask):
        raise ConfigError("start and end are not in one subnet of netmask %s"
                          % ipaddress.IPv4Address(netmask))
    return DhcpRange(start, end, netmask, lease_time, tag, static)


def _valid_netmask(mask):
    inverted = ~mask & 0xFFFFFFFF
    return (inverted & (inverted + 1)) == 0


def _parse_host(value):
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
        elif _MAC.match(item) and hwaddr is None and len(item) >= 11:
            hwaddr = parse_mac(item)
        elif _is_ip(item):
            ip = parse_ip(item)
        elif _is_time(item):
            lease_time = parse_lease_time(item)
        elif re.match(r"^[\d.]+$", item):
            raise ConfigError("%r is not a valid IPv4 address" % item)
        elif _LABEL.match(item.split(".")[0]) and not hostname:
            hostname = item.lower()
        else:
            raise ConfigError("%r is not a hardware address, id:, set:, address, "
                              "name or lease time" % item)
    if hwaddr is None and client_id is None:
        raise ConfigError("a reservation needs a hardware address or id:CLIENTID")
    return HostReservation(hwaddr, client_id, ip, hostname, lease_time,
                           tuple(tags), ignore)


def _parse_option(value):
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
    try:
        code = dhcp_options.lookup(spec)
        if code in dhcp_options.RESERVED:
            raise ConfigError("option %d is set by the server itself and cannot be "
                              "configured" % code)
        values = [v.strip() for v in items[1:]]
        encoded = dhcp_options.encode_value(code, values) if any(values) else b""
    except dhcp_options.OptionValueError as e:
        raise ConfigError(str(e)) from None
    return OptionSetting(code, encoded, tuple(tags))


def _parse_domain(value):
    value = value.strip().strip(".").lower()
    if not value or not all(_LABEL.match(label) for label in value.split(".")):
        raise ConfigError("%r is not a domain name like lab.test" % value)
    return value


def _parse_interface(value):
    value = value.strip()
    if not value or len(value) > 15 or "/" in value or " " in value:
        raise ConfigError("%r is not an interface name" % value)
    return value


def _parse_store(value):
    try:
        registry.validate(value)
    except registry.StoreDescriptionError as e:
        raise ConfigError(str(e)) from None
    return value


def build(pairs):
    """Build a :class:`Config` from ``(name, value[, where])`` tuples, in order.

    ``value`` is None for flags such as ``dhcp-authoritative``.
    """
    config = Config()
    for item in pairs:
        name, value = item[0], item[1]
        where = item[2] if len(item) > 2 else "configuration"
        try:
            _apply(config, name, value)
        except ConfigError as e:
            shown = "--%s" % name if value is None else "--%s=%s" % (name, value)
            raise ConfigError("%s: %s: %s" % (where, shown, e)) from None
    if config.failover is not None:
        try:
            failover_options.finish(config.failover, config.server_name)
        except failover_options.FailoverOptionError as e:
            raise ConfigError(str(e)) from None
    if not config.ranges:
        raise ConfigError("no --dhcp-range given: dhcpfo needs at least one, e.g. "
                          "--dhcp-range 192.0.2.10,192.0.2.200,1h")
    return config


def _apply(config, name, value):
    if name.startswith("failover-") and (name in failover_options.VALUED
                                         or name in failover_options.FLAGS):
        if (name in failover_options.FLAGS) != (value is None or value == ""):
            raise ConfigError("takes no value" if name in failover_options.FLAGS
                              else "needs a value")
        if config.failover is None:
            config.failover = failover_options.FailoverConfig()
        try:
            failover_options.apply(config.failover, name, value, parse_lease_time)
        except failover_options.FailoverOptionError as e:
            raise ConfigError(str(e)) from None
        return
    if name in FLAGS:
        if value not in (None, ""):
            raise ConfigError("takes no value")
        if name == "dhcp-authoritative":
            config.authoritative = True
        return
    if name not in VALUED:
        raise ConfigError("unknown option; dhcpfo understands: %s"
                          % ", ".join(sorted(list(VALUED) + list(FLAGS)
                                             + list(failover_options.VALUED)
                                             + list(failover_options.FLAGS))))
    if value is None:
        raise ConfigError("needs a value")
    if name == "interface":
        config.interfaces.append(_parse_interface(value))
    elif name == "dhcp-range":
        config.ranges.append(_parse_range(value))
    elif name == "dhcp-host":
        config.hosts.append(_parse_host(value))
    elif name == "dhcp-option":
        config.options.append(_parse_option(value))
    elif name == "domain":
        config.domain = _parse_domain(value)
    elif name == "lease-store":
        config.lease_store = _parse_store(value)
    elif name == "control":
        config.control = value.strip()
    elif name == "server-name":
        config.server_name = value.strip()
    elif name in _DNS_OPTIONS:
        field, parse = _DNS_OPTIONS[name]
        try:
            parsed = parse(value)
        except dns_records.DNSConfigError as e:
            raise ConfigError(str(e)) from None
        if field == "dns_port":
            config.dns_port = parsed
        else:
            getattr(config, field).append(parsed)


_DNS_OPTIONS = {
    "dns-port": ("dns_port", dns_records.parse_port),
    "server": ("servers", dns_records.parse_server),
    "host-record": ("host_records", dns_records.parse_host_record),
    "address": ("address_rules", dns_records.parse_address),
    "addn-hosts": ("addn_hosts", dns_records.parse_addn_hosts),
    "dns-allow": ("dns_allow", dns_records.parse_allow),
}


def read_conf_file(path):
    """``(name, value, where)`` triples from a dnsmasq.conf-style file."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError("cannot read --conf-file %s: %s" % (path, e.strerror)) from None
    except UnicodeDecodeError as e:
        raise ConfigError("--conf-file %s is not UTF-8 text (byte %d); save it as "
                          "UTF-8" % (path, e.start)) from None
    pairs = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.partition("=")
        pairs.append((name.strip(), value.strip() if eq else None,
                      "%s line %d" % (path, number)))
    return pairs
