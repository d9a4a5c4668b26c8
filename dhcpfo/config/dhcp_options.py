"""DHCP option names (dnsmasq's spelling) and how configured values encode.

Configuration-time knowledge: the server sends the encoded bytes of
:class:`~dhcpfo.config.records.OptionSetting` as they are.

dnsmasq users write ``--dhcp-option option:router,192.0.2.1`` or
``--dhcp-option 3,192.0.2.1``; both must mean the same here.
"""

import ipaddress
import re

from dhcpfo.addr import ip_bytes
from dhcpfo.config.errors import ConfigError
from dhcpfo.config.values import is_ip, parse_ip

# name: (code, kind).  Kinds: ips, ip, str, u8, u16, u32, bool, names
# (domain search, RFC 3397), routes (classless static routes, RFC 3442), hex.
OPTIONS = {
    "netmask": (1, "ip"),
    "time-offset": (2, "u32"),
    "router": (3, "ips"),
    "dns-server": (6, "ips"),
    "log-server": (7, "ips"),
    "lpr-server": (9, "ips"),
    "hostname": (12, "str"),
    "boot-file-size": (13, "u16"),
    "domain-name": (15, "str"),
    "swap-server": (16, "ip"),
    "root-path": (17, "str"),
    "extension-path": (18, "str"),
    "ip-forward-enable": (19, "bool"),
    "non-local-source-routing": (20, "bool"),
    "max-datagram-reassembly": (22, "u16"),
    "default-ttl": (23, "u8"),
    "mtu": (26, "u16"),
    "all-subnets-local": (27, "bool"),
    "broadcast": (28, "ip"),
    "policy-filter": (21, "ips"),
    "router-discovery": (31, "bool"),
    "router-solicitation": (32, "ip"),
    "static-route": (33, "ips"),
    "trailer-encapsulation": (34, "bool"),
    "arp-timeout": (35, "u32"),
    "ethernet-encap": (36, "bool"),
    "tcp-ttl": (37, "u8"),
    "tcp-keepalive": (38, "u32"),
    "nis-domain": (40, "str"),
    "nis-server": (41, "ips"),
    "ntp-server": (42, "ips"),
    "vendor-encap": (43, "hex"),
    "netbios-ns": (44, "ips"),
    "netbios-dd": (45, "ips"),
    "netbios-nodetype": (46, "u8"),
    "netbios-scope": (47, "str"),
    "x-windows-fs": (48, "ips"),
    "x-windows-dm": (49, "ips"),
    "message": (56, "str"),
    "T1": (58, "u32"),
    "T2": (59, "u32"),
    "vendor-class": (60, "str"),
    "nis+-domain": (64, "str"),
    "nis+-server": (65, "ips"),
    "tftp-server": (66, "str"),
    "bootfile-name": (67, "str"),
    "mobile-ip-home": (68, "ips"),
    "smtp-server": (69, "ips"),
    "pop3-server": (70, "ips"),
    "nntp-server": (71, "ips"),
    "irc-server": (74, "ips"),
    "user-class": (77, "str"),
    "client-arch": (93, "u16"),
    "client-interface-id": (94, "hex"),
    "client-machine-id": (97, "hex"),
    "posix-timezone": (100, "str"),
    "tzdb-timezone": (101, "str"),
    "ipv6-only": (108, "u32"),
    "domain-search": (119, "names"),
    "sip-server": (120, "hex"),
    "classless-static-route": (121, "routes"),
    "vendor-id-encap": (125, "hex"),
    "tftp-server-address": (150, "ips"),
}
KINDS = {code: kind for code, kind in OPTIONS.values()}
NAMES = {code: name for name, (code, _) in OPTIONS.items()}

# Options the server computes itself; configuring them would lie to clients.
RESERVED = {50, 51, 52, 53, 54, 55, 57, 61, 81, 82, 255, 0}

_HEX = re.compile(r"^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2})+$")


def lookup(spec):
    """Return the option code for ``option:NAME`` or a number."""
    if spec.startswith("option:"):
        name = spec[len("option:"):]
        try:
            return OPTIONS[name][0]
        except KeyError:
            raise ConfigError(
                "unknown option name %r; known names: %s, or give the number"
                % (name, ", ".join(sorted(OPTIONS)))) from None
    try:
        code = int(spec)
    except ValueError:
        raise ConfigError(
            "expected option:NAME or an option number, got %r" % spec) from None
    if not 1 <= code <= 254:
        raise ConfigError("option number %d is outside 1-254" % code)
    return code


def _ip(text):
    return ip_bytes(parse_ip(text))


def _number(text):
    """dnsmasq reads decimal (leading zeros allowed) or 0x-prefixed hex."""
    text = text.strip()
    if text[:2].lower() == "0x":
        return int(text[2:], 16)
    return int(text, 10)


def _int(text, size):
    try:
        value = _number(text)
    except ValueError:
        raise ConfigError("%r is not a number" % text) from None
    if not 0 <= value < 1 << (8 * size):
        raise ConfigError("%d does not fit in %d byte(s)" % (value, size))
    return value.to_bytes(size, "big")


def _names(values):
    out = []
    for name in values:
        for label in name.strip(".").split("."):
            try:
                raw = label.encode("idna") if label else b""
            except UnicodeError:
                raise ConfigError("%r is not a valid domain name" % name) from None
            if not 0 < len(raw) < 64:
                raise ConfigError("%r is not a valid domain name" % name)
            out.append(bytes((len(raw),)) + raw)
        out.append(b"\x00")
    return b"".join(out)


def _routes(values):
    if len(values) % 2:
        raise ConfigError(
            "classless routes come in pairs: NETWORK/LEN,GATEWAY[,NETWORK/LEN,GATEWAY...]")
    out = []
    for i in range(0, len(values), 2):
        try:
            net = ipaddress.IPv4Network(values[i].strip(), strict=True)
        except ValueError:
            raise ConfigError("%r is not a network like 203.0.113.0/24"
                                   % values[i]) from None
        significant = (net.prefixlen + 7) // 8
        out.append(bytes((net.prefixlen,)) + net.network_address.packed[:significant]
                   + _ip(values[i + 1]))
    return b"".join(out)


def encode_value(code, values):
    """Encode the comma-separated ``values`` of option ``code`` to wire bytes."""
    kind = KINDS.get(code)
    if kind is None:
        kind = _guess(values)
    if kind == "ips":
        if not values or values == [""]:
            raise ConfigError("expected one or more IPv4 addresses")
        return b"".join(_ip(v) for v in values)
    if kind == "ip":
        if len(values) != 1:
            raise ConfigError("expected exactly one IPv4 address")
        return _ip(values[0])
    if kind == "str":
        text = ",".join(values)
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
        return text.encode("utf-8")
    if kind in ("u8", "u16", "u32"):
        if len(values) != 1:
            raise ConfigError("expected exactly one number")
        return _int(values[0], {"u8": 1, "u16": 2, "u32": 4}[kind])
    if kind == "bool":
        if len(values) != 1 or values[0] not in ("0", "1"):
            raise ConfigError("expected 0 or 1")
        return bytes((int(values[0]),))
    if kind == "names":
        return _names(values)
    if kind == "routes":
        return _routes(values)
    if kind == "hex":
        text = ",".join(values)
        if not _HEX.match(text) and not re.match(r"^[0-9a-fA-F]{2}$", text):
            raise ConfigError("expected hex bytes like 01:02:0a, got %r" % text)
        return bytes(int(b, 16) for b in text.split(":"))
    if kind == "int":
        value = _number(values[0])
        size = 1 if value < 256 else 2 if value < 65536 else 4
        return _int(values[0], size)
    raise AssertionError(kind)  # pragma: no cover


def _guess(values):
    """dnsmasq's rule for numbered options it does not know."""
    text = ",".join(values)
    if values and all(is_ip(v) for v in values):
        return "ips"
    if _HEX.match(text):
        return "hex"
    if len(values) == 1 and re.match(r"^(\d+|0[xX][0-9a-fA-F]+)$", values[0].strip()):
        return "int"
    return "str"
