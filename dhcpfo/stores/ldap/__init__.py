"""A lease store in an LDAP directory (OpenLDAP, ...), spoken with ldaptor.

Only the modules of this package import ldaptor; the plugin factory
(:mod:`dhcpfo.stores.factories`) imports it when an ``ldap:`` store is made.

- :mod:`.options` -- the ``ldap:`` parameters, checked once;
- :mod:`.connect` -- connect, TLS (always verified) and bind;
- :mod:`.load` -- the paged load at ``open()``;
- :mod:`.ber` -- the client protocol and its fast entry decoder;
- :mod:`.entry` -- one lease as one entry (docs/ldap/dhcpfo.schema);
- :mod:`.pipeline` -- one batch of writes, pipelined on a connection;
- :mod:`.store` -- :class:`LDAPLeaseStore`: group commit
  (:class:`~dhcpfo.leases.groupcommit.GroupCommit`) and the connection's
  life as a state machine.

A write's Deferred fires when the directory has acknowledged every one of
its leases (for OpenLDAP's mdb backend: after its commit, fsynced unless
``dbnosync``), in the order the writes were issued.  An error result for an
address fails the writes that carried it with :class:`LDAPWriteRejected`.
While the directory is unreachable writes queue, up to ``maxqueue`` leases
(beyond it a write fails at once with :class:`LDAPStoreQueueFull`); ``close()``
waits for them while connected and fails them with :class:`LDAPStoreClosed`
when the directory is unreachable.
"""

from dhcpfo.stores.ldap.errors import (LDAPStoreClosed, LDAPStoreConfigError,
                                       LDAPStoreError, LDAPStoreQueueFull,
                                       LDAPWriteRejected)
from dhcpfo.stores.ldap.store import LDAPLeaseStore

__all__ = ["LDAPLeaseStore", "LDAPStoreError", "LDAPStoreConfigError",
           "LDAPStoreQueueFull", "LDAPStoreClosed", "LDAPWriteRejected"]
