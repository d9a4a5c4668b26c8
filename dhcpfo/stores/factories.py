"""Plugin factories for the built-in stores; implementations import lazily."""

from zope.interface import implementer
from twisted.plugin import IPlugin

from dhcpfo.interfaces import ILeaseStoreFactory


@implementer(IPlugin, ILeaseStoreFactory)
class SQLiteStoreFactory:
    prefix = "sqlite"
    description = "SQLite file, WAL, fsync per batch (the default)"
    parameters = {"path": "database file (default dhcpfo-leases.db)"}

    def makeStore(self, reactor, path="dhcpfo-leases.db"):
        from dhcpfo.stores.sqlite import SQLiteLeaseStore
        return SQLiteLeaseStore(reactor, path)


@implementer(IPlugin, ILeaseStoreFactory)
class MemoryStoreFactory:
    prefix = "memory"
    description = "in memory only: leases are lost when the server stops (labs)"
    parameters = {}

    def makeStore(self, reactor, **parameters):
        from dhcpfo.stores.memory import MemoryLeaseStore
        return MemoryLeaseStore()


sqlite = SQLiteStoreFactory()
memory = MemoryStoreFactory()
