"""The DNS options of the configuration, parsed, and the static records they make.

Parsers raise :class:`DNSConfigError` (a ``ValueError``) with a message a
user can act on; :mod:`dhcpfo.config` adds where the value came from.
"""

import ipaddress

import attr

from dhcpfo.dns import names

DEFAULT_PORT = 53


class DNSConfigError(ValueError):
    """A DNS option's value is wrong."""


@attr.s(frozen=True, slots=True)
class Upstream:
    """``--server IP[#PORT]``: a DNS server we forward to."""
    host = attr.ib()          # str, an IPv4 or IPv6 address
    port = attr.ib(default=DEFAULT_PORT)

    def describe(self):
        return "%s#%d" % (self.host, self.port)


@attr.s(frozen=True, slots=True)
class HostRecord:
    """``--host-record NAME[,NAME...],ADDRESS[,ADDRESS][,TTL]``."""
    names = attr.ib()         # tuple of names, the first one gets the PTR
    addresses = attr.ib()     # tuple of address strs (IPv4 and/or IPv6)
    ttl = attr.ib(default=None)


@attr.s(frozen=True, slots=True)
class AddressRule:
    """``--address /DOMAIN[/DOMAIN...]/[ADDRESS]``: a domain and everything
    below it answer ADDRESS; with no address they are local only (NXDOMAIN
    for what we do not know)."""
    domains = attr.ib()       # tuple of names
    addresses = attr.ib()     # tuple of address strs; empty: local only


@attr.s(frozen=True, slots=True)
class HostsFile:
    """``--addn-hosts FILE``: /etc/hosts-format lines, read at start-up."""
    path = attr.ib()
    entries = attr.ib()       # tuple of (address str, tuple of names)


def _address(text):
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise DNSConfigError("%r is not an IPv4 or IPv6 address" % text) from None


def _name(text):
    try:
        return names.normalize(text)
    except names.InvalidName as e:
        raise DNSConfigError(str(e)) from None


def parse_server(value):
    """``IP[#PORT]``; dnsmasq's per-domain ``/DOMAIN/IP`` form is refused."""
    value = value.strip()
    if value.startswith("/"):
        raise DNSConfigError("per-domain servers (/DOMAIN/IP) are not supported; "
                             "write IP or IP#PORT")
    host, hash_, port = value.partition("#")
    host = _address(host)
    if hash_:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise DNSConfigError("%r is not a port number (1-65535)" % port)
        return Upstream(host, int(port))
    return Upstream(host)


def parse_port(value):
    value = value.strip()
    if not value.isdigit() or int(value) > 65535:
        raise DNSConfigError("%r is not a port number (0 disables DNS)" % value)
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
                raise DNSConfigError("the TTL %r must come last, after the address"
                                     % item)
            ttl = int(item)
        elif addresses:
            raise DNSConfigError("names come before the addresses (got %r after %s)"
                                 % (item, addresses[-1]))
        else:
            found_names.append(_name(item))
    if not found_names or not addresses:
        raise DNSConfigError("expected NAME[,NAME...],ADDRESS[,ADDRESS][,TTL]")
    return HostRecord(tuple(found_names), tuple(addresses), ttl)


def parse_address(value):
    value = value.strip()
    if not value.startswith("/") or value.count("/") < 2:
        raise DNSConfigError("expected /DOMAIN[/DOMAIN...]/[ADDRESS], "
                             "e.g. /printer.lab.test/192.0.2.9")
    parts = value[1:].split("/")
    target = parts.pop().strip()
    domains = tuple(_name(p) for p in parts)
    if not domains:
        raise DNSConfigError("no domain between the slashes")
    if not target:
        addresses = ()
    elif target == "#":
        addresses = ("0.0.0.0", "::")
    else:
        addresses = (_address(target),)
    return AddressRule(domains, addresses)


def parse_allow(value):
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise DNSConfigError("%r is not a network like 198.51.100.0/24" % value) from None


def read_hosts_file(path):
    """Parse an /etc/hosts-format file; errors name the line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DNSConfigError("cannot read %s: %s" % (path, e.strerror)) from None
    entries = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            address = str(ipaddress.ip_address(words[0]))
        except ValueError:
            raise DNSConfigError("%s line %d: %r is not an address"
                                 % (path, number, words[0])) from None
        if len(words) < 2:
            raise DNSConfigError("%s line %d: an address without a name" % (path, number))
        try:
            found = tuple(names.normalize(w) for w in words[1:])
        except names.InvalidName as e:
            raise DNSConfigError("%s line %d: %s" % (path, number, e)) from None
        entries.append((address, found))
    return HostsFile(path, tuple(entries))


def parse_addn_hosts(value):
    return read_hosts_file(value.strip())


class StaticData:
    """Every configured name's records, before any lease.

    ``records``: name -> {rtype: [(rdata, ttl)]} where rdata is an address
    str for A/AAAA and a name for PTR.  ``rules``: the ``--address``
    domains, longest first, as (domain, (addresses...)).
    """

    def __init__(self):
        self.records = {}
        self.rules = []

    def add(self, name, rtype, rdata, ttl):
        rrset = self.records.setdefault(name, {}).setdefault(rtype, [])
        if all(r != rdata for r, _ in rrset):
            rrset.append((rdata, ttl))

    def add_address(self, name, address, ttl, ptr=True, ptr_name=None):
        """An A or AAAA record, and the PTR for it unless one exists."""
        rtype = "AAAA" if ":" in address else "A"
        self.add(name, rtype, address, ttl)
        if ptr:
            reverse = names.reverse_name(address)
            if "PTR" not in self.records.get(reverse, {}):
                self.add(reverse, "PTR", ptr_name or name, ttl)


def _qualified(name, domain):
    """The names a configured name is known by: as written, and under our
    domain when written without one (dnsmasq's --expand-hosts)."""
    if domain and "." not in name:
        return [name, name + "." + domain]
    return [name]


def build_static(domain, host_records=(), address_rules=(), hosts_files=(),
                 reservations=(), ttl=300):
    """:class:`StaticData` from the parsed options.

    ``reservations`` are (ip str, hostname) pairs of ``--dhcp-host`` entries
    that have both.  The first name of a host record or hosts line gets the
    PTR, in its qualified form; an address keeps its first PTR.
    """
    data = StaticData()
    for record in host_records:
        first = _qualified(record.names[0], domain)[-1]
        for name in record.names:
            for qualified in _qualified(name, domain):
                for address in record.addresses:
                    data.add_address(qualified, address,
                                     record.ttl if record.ttl is not None else ttl,
                                     ptr_name=first)
    for hosts in hosts_files:
        for address, found in hosts.entries:
            first = _qualified(found[0], domain)[-1]
            for name in found:
                for qualified in _qualified(name, domain):
                    data.add_address(qualified, address, ttl, ptr_name=first)
    for ip, hostname in reservations:
        try:
            hostname = names.normalize(hostname)
        except names.InvalidName:
            continue
        data.add_address(_qualified(hostname, domain)[-1], ip, ttl)
    rules = []
    for rule in address_rules:
        for domain_ in rule.domains:
            rules.append((domain_, rule.addresses))
    rules.sort(key=lambda r: -len(r[0]))
    data.rules = rules
    return data
