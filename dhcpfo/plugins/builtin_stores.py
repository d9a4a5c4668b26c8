"""The lease stores that ship with dhcpfo (kept tiny: scanned by twisted.plugin)."""

from dhcpfo.stores.factories import memory, sqlite

__all__ = ["memory", "sqlite"]

from dhcpfo.stores.factories import ldap  # noqa: E402  (ldaptor loads in makeStore)

__all__.append("ldap")
