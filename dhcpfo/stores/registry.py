"""Turn ``--lease-store PREFIX:key=value,...`` into a store, via twisted.plugin."""

from twisted.plugin import getPlugins

from dhcpfo.config import ConfigError
from dhcpfo.config.dhcp import split_description
from dhcpfo.interfaces import ILeaseStoreFactory

DEFAULT = "sqlite:path=dhcpfo-leases.db"


class StoreDescriptionError(ValueError):
    """The --lease-store value names no installed store or a wrong parameter."""


def factories():
    import dhcpfo.plugins
    found = {}
    for factory in getPlugins(ILeaseStoreFactory, dhcpfo.plugins):
        found.setdefault(factory.prefix, factory)
    return found


def parse_description(text):
    """Split ``prefix:k=v,k=v`` into ``(prefix, {k: v})``; ``\\`` escapes , and =.

    The syntax is configuration's (:func:`dhcpfo.config.dhcp.split_description`);
    this module only adds what needs the installed plugins."""
    prefix, _, rest = text.partition(":")
    try:
        return prefix, split_description(rest)
    except ConfigError as e:
        raise StoreDescriptionError(str(e)) from None


def describe_stores():
    """The text of ``--lease-store help``."""
    lines = ["Installed lease stores (--lease-store PREFIX:key=value,...):"]
    for prefix, factory in sorted(factories().items()):
        lines.append("  %-8s %s" % (prefix, factory.description))
        for key, text in factory.parameters.items():
            lines.append("           %s=  %s" % (key, text))
    return "\n".join(lines)


def validate(text):
    """Check a description against the installed stores; return (factory, params)."""
    prefix, params = parse_description(text)
    found = factories()
    factory = found.get(prefix)
    if factory is None:
        raise StoreDescriptionError(
            "no lease store named %r is installed; installed: %s"
            % (prefix, ", ".join(sorted(found))))
    unknown = set(params) - set(factory.parameters)
    if unknown:
        raise StoreDescriptionError(
            "lease store %r has no parameter %s; it takes: %s"
            % (prefix, ", ".join(sorted(unknown)),
               ", ".join(factory.parameters) or "none"))
    return factory, params
