"""Parsers of single values shared by the option families."""

import ipaddress
import re

from dhcpfo.addr import INFINITE, int_from_str
from dhcpfo.config.errors import ConfigError
from dhcpfo.config.records import MIN_LEASE_TIME

MAC = re.compile(r"^([0-9a-fA-F]{1,2})([:-][0-9a-fA-F]{1,2}){1,15}$")
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
_TIME = re.compile(r"^(\d+)([smhdw]?)$")
_DNS_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_ip(text):
    """A dotted quad -> int.

    Checked by :mod:`ipaddress` first: ``inet_aton`` (under
    :func:`dhcpfo.addr.int_from_str`) would read ``192.0.2.010`` as octal.
    """
    text = text.strip()
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise ConfigError("%r is not an IPv4 address" % text) from None
    return int_from_str(text)


def is_ip(text):
    try:
        parse_ip(text)
        return True
    except ConfigError:
        return False


def is_time(text):
    return text in ("infinite", "inf") or bool(_TIME.match(text))


def parse_lease_time(text):
    """dnsmasq's lease times (45m, 12h, 1d, infinite) -> seconds."""
    text = text.strip()
    if text in ("infinite", "inf"):
        return INFINITE
    m = _TIME.match(text)
    if not m:
        raise ConfigError("%r is not a lease time; write e.g. 45m, 1h, 12h, 1d or "
                          "infinite" % text)
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds < MIN_LEASE_TIME:
        raise ConfigError("lease time %r is below the minimum of 2m" % text)
    return min(seconds, INFINITE - 1)


def parse_mac(text):
    return bytes(int(part, 16) for part in re.split("[:-]", text))


def parse_client_id(text):
    if MAC.match(text):
        return parse_mac(text)
    return text.encode("utf-8")


def parse_port(text, what="a port number"):
    try:
        port = int(text)
    except ValueError:
        raise ConfigError("%r is not %s" % (text, what)) from None
    if not 0 < port < 65536:
        raise ConfigError("port %d is outside 1-65535" % port)
    return port


def normalize_name(text):
    """A configured DNS name: lower case, no trailing dot (dhcpfo.dns's form)."""
    name = text.strip().rstrip(".").lower()
    if not name:
        raise ConfigError("an empty name")
    if len(name) > 253:
        raise ConfigError("%r is longer than 253 characters" % text)
    for label in name.split("."):
        if not _DNS_LABEL.match(label):
            raise ConfigError("%r is not a valid domain name (label %r)"
                              % (text, label))
    return name


def any_address(text):
    """An IPv4 or IPv6 address in its canonical text form."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ConfigError("%r is not an IPv4 or IPv6 address" % text) from None
