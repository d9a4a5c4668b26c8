"""``twistd dhcpfo``: dnsmasq-style options -> Config -> :func:`makeService`.

``Options`` only parses (:mod:`dhcpfo.config`); every check against this
machine and the installed plugins is :func:`dhcpfo.service.makeService`'s,
the same one a ``.tac`` file calls.
"""

import sys

from twisted.python import usage

from dhcpfo import config as C


class Options(usage.Options):
    synopsis = ("[options]  e.g. --interface e0 --dhcp-range "
                "192.0.2.10,192.0.2.200,1h --domain lab.test")
    longdesc = ("A DHCPv4 server with dnsmasq's option names.  Every option may "
                "also be written as a name=value line in --conf-file.")

    def __init__(self):
        super().__init__()
        self.pairs = []

    def opt_version(self):
        """Print dhcpfo's version and exit."""
        import dhcpfo
        print("dhcpfo %s" % dhcpfo.__version__)
        sys.exit(0)

    def opt_conf_file(self, path):
        """Read name=value lines (dnsmasq.conf style) from this file."""
        try:
            self.pairs.extend(C.read_conf_file(path))
        except C.ConfigError as e:
            raise usage.UsageError(str(e))

    def postOptions(self):
        if any(name == "lease-store" and value == "help"
               for name, value, _ in self.pairs):
            from dhcpfo.stores import registry
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


def makeService(options, reactor=None):
    """The IServiceMaker hook.  twistd lets any exception out of here end in
    a traceback; a configuration that this machine cannot serve is an
    operator's mistake, so it ends the process with the message alone
    (status 1), the way twistd reports a bad option."""
    from dhcpfo.service import makeService as make
    try:
        return make(options["config"], reactor)
    except C.ConfigError as e:
        raise SystemExit("dhcpfo: cannot start: %s" % e)
