"""One validated :class:`~dhcpfo.config.records.Config` from dnsmasq-style
``name=value`` pairs.

The command line and ``--conf-file`` lines both arrive here as
``(name, value, where)``; every error names where it came from, the option,
the value and what is expected.
"""

import attr

from dhcpfo.config import dhcp, dns, failover, process
from dhcpfo.config.errors import ConfigError
from dhcpfo.config.records import Config

#: name -> help, for every option that takes a value; the flags are in FLAGS.
VALUED = dict(dhcp.VALUED, **dns.VALUED)
VALUED.update(failover.VALUED)
VALUED.update(process.VALUED)
FLAGS = dict(dhcp.FLAGS, **failover.FLAGS)


def build(pairs):
    """Build a :class:`Config` from ``(name, value[, where])`` tuples, in order.

    ``value`` is None for flags such as ``dhcp-authoritative``.  A later
    value of a single-valued option replaces an earlier one.
    """
    fields = {}
    failover_fields = None
    for item in pairs:
        name, value = item[0], item[1]
        where = item[2] if len(item) > 2 else "configuration"
        try:
            if name in failover.VALUED or name in failover.FLAGS:
                _check_arity(name, value)
                if failover_fields is None:
                    failover_fields = {}
                failover.apply(failover_fields, name, value)
            else:
                _apply(fields, name, value)
        except ConfigError as e:
            shown = "--%s" % name if value is None else "--%s=%s" % (name, value)
            raise ConfigError("%s: %s: %s" % (where, shown, e)) from None
    config = Config(**fields)
    if failover_fields is not None:
        config = attr.evolve(config, failover=failover.finish(failover_fields,
                                                              config.server_name))
    if not config.ranges:
        raise ConfigError("no --dhcp-range given: dhcpfo needs at least one, e.g. "
                          "--dhcp-range 192.0.2.10,192.0.2.200,1h")
    return config


def _check_arity(name, value):
    flag = name in FLAGS
    if flag and value not in (None, ""):
        raise ConfigError("takes no value")
    if not flag and value is None:
        raise ConfigError("needs a value")


def _apply(fields, name, value):
    if name not in VALUED and name not in FLAGS:
        raise ConfigError("unknown option; dhcpfo understands: %s"
                          % ", ".join(sorted(list(VALUED) + list(FLAGS))))
    _check_arity(name, value)
    if name == "dhcp-authoritative":
        fields["authoritative"] = True
    elif name in dhcp.PARSERS:
        field, parse, repeatable = dhcp.PARSERS[name]
        if repeatable:
            fields[field] = fields.get(field, ()) + (parse(value),)
        else:
            fields[field] = parse(value)
    elif name in dns.PARSERS:
        field, parse = dns.PARSERS[name]
        if field in dns.SINGLE:
            fields[field] = parse(value)
        else:
            fields[field] = fields.get(field, ()) + (parse(value),)
    elif name in process.PARSERS:
        field, parse = process.PARSERS[name]
        fields[field] = parse(value)


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
