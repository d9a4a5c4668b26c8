"""DNS for dhcpfo: the clients' names, static hosts, and forwarding with a cache.

- :mod:`dhcpfo.dns.names`: name helpers (wire form, reverse names, zones).
- :mod:`dhcpfo.dns.records`: the static records of the configuration
  (``--host-record``, ``--address``, ``--addn-hosts``, reservations).
- :mod:`dhcpfo.dns.authority`: :class:`LeaseAuthority`, the zone fed by the
  lease table, which also keeps the wire-format answers of the fast path.
- :mod:`dhcpfo.dns.cache`, :mod:`dhcpfo.dns.forward`: the upstream side.
- :mod:`dhcpfo.dns.server`: the server factory and the UDP/TCP protocols.
- :mod:`dhcpfo.dns.service`: :class:`DNSService`, which puts them together.

See docs/dns.md.
"""
