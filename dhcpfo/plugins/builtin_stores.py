"""The lease stores that ship with dhcpfo (kept tiny: scanned by twisted.plugin).

The factories import their stores (and ldaptor) only in ``makeStore``.
"""

from dhcpfo.stores.factories import ldap, memory, sqlite

__all__ = ["ldap", "memory", "sqlite"]
