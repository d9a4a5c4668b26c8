"""dhcpfo: a DHCPv4 + DNS server whose headline is failover."""

#: The one spelling of the version: setup.cfg reads it (``attr:``), the
#: control API reports it, ``twistd dhcpfo --version`` prints it.
__version__ = "0.1.0"
