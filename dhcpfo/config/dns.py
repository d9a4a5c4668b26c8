"""The DNS options: ``--dns-port``, ``--server``, ``--host-record``,
``--address``, ``--addn-hosts``, ``--dns-allow`` (see docs/dns.md).

:mod:`dhcpfo.dns.records` turns the parsed records into the zone's static
data; names are kept in :mod:`dhcpfo.dns.names`' form (lower case, no
trailing dot).
"""

import ipaddress

from dhcpfo.config.errors import ConfigError
from dhcpfo.config.records import AddressRule, HostRecord, HostsFile, Upstream
from dhcpfo.config.values import any_address, normalize_name

VALUED = {
    "dns-port": "UDP and TCP port of the DNS server (default 53; 0 disables DNS).",
    "server": "IP[#PORT]: forward DNS questions that are not ours to this "
              "server (repeat for several; tried in order, with failover).",
    "host-record": "NAME[,NAME...],ADDRESS[,ADDRESS][,TTL]: A/AAAA and PTR records.",
    "address": "/DOMAIN[/DOMAIN...]/[ADDRESS]: DOMAIN and all names below it "
               "answer ADDRESS (# for 0.0.0.0 and ::; empty: NXDOMAIN).",
    "addn-hosts": "Also answer the names of this /etc/hosts-format file.",
    "dns-allow": "NETWORK/PREFIX: also answer DNS from this network (by default "
                 "only our own networks and loopback are answered).",
    "dns-forward-max": "N: at most N questions forwarded upstream at once "
                       "(default 150, as dnsmasq); beyond it REFUSED.",
}


def parse_server(value):
    """``IP[#PORT]``; dnsmasq's per-domain ``/DOMAIN/IP`` form is refused."""
    value = value.strip()
    if value.startswith("/"):
        raise ConfigError("per-domain servers (/DOMAIN/IP) are not supported; "
                          "write IP or IP#PORT")
    host, hash_, port = value.partition("#")
    host = any_address(host)
    if hash_:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("%r is not a port number (1-65535)" % port)
        return Upstream(host, int(port))
    return Upstream(host)


def parse_port(value):
    value = value.strip()
    if not value.isdigit() or int(value) > 65535:
        raise ConfigError("%r is not a port number (0 disables DNS)" % value)
    return int(value)


def parse_forward_max(value):
    value = value.strip()
    if not value.isdigit() or int(value) < 1:
        raise ConfigError("%r is not a positive number of questions (dnsmasq's "
                          "default is 150)" % value)
    return int(value)


def parse_host_record(value):
    items = [i.strip() for i in value.split(",") if i.strip()]
    found_names, addresses, ttl = [], [], None
    for item in items:
        try:
            addresses.append(str(ipaddress.ip_address(item)))
            continue
        except ValueError:
            pass
        if item.isdigit():
            if not addresses or ttl is not None:
                raise ConfigError("the TTL %r must come last, after the address"
                                  % item)
            ttl = int(item)
        elif addresses:
            raise ConfigError("names come before the addresses (got %r after %s)"
                              % (item, addresses[-1]))
        else:
            found_names.append(normalize_name(item))
    if not found_names or not addresses:
        raise ConfigError("expected NAME[,NAME...],ADDRESS[,ADDRESS][,TTL]")
    return HostRecord(tuple(found_names), tuple(addresses), ttl)


def parse_address(value):
    value = value.strip()
    if not value.startswith("/") or value.count("/") < 2:
        raise ConfigError("expected /DOMAIN[/DOMAIN...]/[ADDRESS], "
                          "e.g. /printer.lab.test/192.0.2.9")
    parts = value[1:].split("/")
    target = parts.pop().strip()
    domains = tuple(normalize_name(p) for p in parts)
    if not domains:
        raise ConfigError("no domain between the slashes")
    if not target:
        addresses = ()
    elif target == "#":
        addresses = ("0.0.0.0", "::")
    else:
        addresses = (any_address(target),)
    return AddressRule(domains, addresses)


def parse_allow(value):
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ConfigError("%r is not a network like 198.51.100.0/24" % value) from None


def read_hosts_file(path):
    """Parse an /etc/hosts-format file; errors name the line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError("cannot read %s: %s" % (path, e.strerror)) from None
    entries = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            address = str(ipaddress.ip_address(words[0]))
        except ValueError:
            raise ConfigError("%s line %d: %r is not an address"
                              % (path, number, words[0])) from None
        if len(words) < 2:
            raise ConfigError("%s line %d: an address without a name" % (path, number))
        try:
            found = tuple(normalize_name(w) for w in words[1:])
        except ConfigError as e:
            raise ConfigError("%s line %d: %s" % (path, number, e)) from None
        entries.append((address, found))
    return HostsFile(path, tuple(entries))


def parse_addn_hosts(value):
    return read_hosts_file(value.strip())


#: option name -> (Config field, parser); SINGLE fields take one value.
SINGLE = ("dns_port", "dns_forward_max")
PARSERS = {
    "dns-port": ("dns_port", parse_port),
    "dns-forward-max": ("dns_forward_max", parse_forward_max),
    "server": ("servers", parse_server),
    "host-record": ("host_records", parse_host_record),
    "address": ("address_rules", parse_address),
    "addn-hosts": ("addn_hosts", parse_addn_hosts),
    "dns-allow": ("dns_allow", parse_allow),
}
