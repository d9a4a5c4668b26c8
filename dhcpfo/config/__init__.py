"""Configuration: parsing (command line, dnsmasq-style conf files), the one
:class:`ConfigError`, and the validated frozen :class:`Config` records.

Every part of dhcpfo imports this package; it imports none of them
(docs/architecture.md, checked by tests/test_architecture.py).  Checks that
need the machine or the plugins (interfaces, store prefixes, certificate
files) are made by :func:`dhcpfo.service.makeService`.
"""

from dhcpfo.addr import INFINITE
from dhcpfo.config.errors import ConfigError
from dhcpfo.config.parse import FLAGS, VALUED, build, read_conf_file
from dhcpfo.config.records import (DEFAULT_CONTROL, DEFAULT_CONTROL_SOCKET,
                                   DEFAULT_DNS_PORT,
                                   DEFAULT_FAILOVER_PORT, DEFAULT_LEASE_TIME,
                                   DEFAULT_STORE, MIN_LEASE_TIME, AddressRule,
                                   Config, DhcpRange, FailoverConfig, HostRecord,
                                   HostReservation, HostsFile, OptionSetting,
                                   Upstream)
from dhcpfo.config.values import (parse_client_id, parse_ip, parse_lease_time,
                                  parse_mac)

__all__ = [
    "INFINITE", "ConfigError", "FLAGS", "VALUED", "build", "read_conf_file",
    "DEFAULT_CONTROL", "DEFAULT_CONTROL_SOCKET", "DEFAULT_DNS_PORT", "DEFAULT_FAILOVER_PORT",
    "DEFAULT_LEASE_TIME", "DEFAULT_STORE", "MIN_LEASE_TIME", "AddressRule",
    "Config", "DhcpRange", "FailoverConfig", "HostRecord", "HostReservation",
    "HostsFile", "OptionSetting", "Upstream", "parse_client_id", "parse_ip",
    "parse_lease_time", "parse_mac",
]
