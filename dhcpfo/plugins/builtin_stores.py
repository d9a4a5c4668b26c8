"""The lease stores that ship with dhcpfo (kept tiny: scanned by twisted.plugin)."""

from dhcpfo.stores.factories import memory, sqlite

__all__ = ["memory", "sqlite"]
