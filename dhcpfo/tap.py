"""``twistd dhcpfo``: dnsmasq-style options, validated, then the service tree."""

import sys

from twisted.python import usage

from dhcpfo import config as C
from dhcpfo.dhcp import netif
from dhcpfo.failover import options as failover_options
from dhcpfo.stores import registry


class Options(usage.Options):
    synopsis = ("[options]  e.g. --interface e0 --dhcp-range "
                "192.0.2.10,192.0.2.200,1h --domain lab.test")
    longdesc = ("A DHCPv4 server with dnsmasq's option names.  Every option may "
                "also be written as a name=value line in --conf-file.")

    def __init__(self):
        super().__init__()
        self.pairs = []

    def opt_conf_file(self, path):
        """Read name=value lines (dnsmasq.conf style) from this file."""
        try:
            self.pairs.extend(C.read_conf_file(path))
        except C.ConfigError as e:
            raise usage.UsageError(str(e))

    def postOptions(self):
        if any(name == "lease-store" and value == "help"
               for name, value, _ in self.pairs):
            print(registry.describe_stores())
            sys.exit(0)
        try:
            self["config"] = C.build(self.pairs)
        except C.ConfigError as e:
            raise usage.UsageError(str(e))


def _valued(name, text):
    def opt(self, value):
        self.pairs.append((name, value, "command line"))
    opt.__doc__ = text
    return opt


def _flag(name, text):
    def opt(self):
        self.pairs.append((name, None, "command line"))
    opt.__doc__ = text
    return opt


for _name, _text in C.VALUED.items():
    setattr(Options, "opt_" + _name.replace("-", "_"), _valued(_name, _text))
for _name, _text in C.FLAGS.items():
    setattr(Options, "opt_" + _name.replace("-", "_"), _flag(_name, _text))
for _name, _text in failover_options.VALUED.items():
    setattr(Options, "opt_" + _name.replace("-", "_"), _valued(_name, _text))
for _name, _text in failover_options.FLAGS.items():
    setattr(Options, "opt_" + _name.replace("-", "_"), _flag(_name, _text))


def makeService(options, reactor=None):
    from dhcpfo.service import DHCPService, makeService as make
    config = options["config"]
    probe = DHCPService(config, reactor, store=object())
    try:
        interfaces = probe.resolveInterfaces()
        if not interfaces:
            raise C.ConfigError("no interface has an address in a --dhcp-range; "
                                "name one with --interface")
        from dhcpfo.dhcp.pool import build_subnets
        build_subnets(config.ranges, interfaces)
    except (C.ConfigError, netif.InterfaceError) as e:
        raise usage.UsageError(str(e))
    from dhcpfo.failover.tls import TLSConfigError
    try:
        return make(config, reactor, interfaces=interfaces)
    except (TLSConfigError, ValueError) as e:
        # A store or certificate parameter with a bad value: say which.
        raise usage.UsageError(str(e))
