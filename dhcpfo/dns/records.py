"""The static records of the configuration, made into the zone's data.

The options themselves (``--host-record``, ``--address``, ``--addn-hosts``,
...) are parsed by :mod:`dhcpfo.config.dns`; the parsers re-exported here
serve tests/test_dns_server.py and test_dns_authority.py, which build
static data from option text.
"""

from dhcpfo.config import ConfigError
from dhcpfo.config.dns import parse_address, parse_host_record
from dhcpfo.config.records import HostsFile
from dhcpfo.config.values import normalize_name
from dhcpfo.dns import names

__all__ = ["StaticData", "build_static", "parse_address", "parse_host_record",
           "HostsFile"]


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
            hostname = normalize_name(hostname)
        except ConfigError:
            continue
        data.add_address(_qualified(hostname, domain)[-1], ip, ttl)
    rules = []
    for rule in address_rules:
        for domain_ in rule.domains:
            rules.append((domain_, rule.addresses))
    rules.sort(key=lambda r: -len(r[0]))
    data.rules = rules
    return data
