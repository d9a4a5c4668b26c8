"""The one error of configuration."""


class ConfigError(ValueError):
    """A configuration value is wrong; the message says where and how to fix it.

    Every check of the configuration raises this, from the parsers of
    :mod:`dhcpfo.config` to :func:`dhcpfo.service.makeService`'s checks
    against the machine (interfaces, store plugins, certificate files).
    """
