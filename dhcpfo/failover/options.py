"""What the peers of a failover group must agree on: the pools.

The ``--failover-*`` options are parsed by :mod:`dhcpfo.config.failover`.
"""

import hashlib

from dhcpfo.addr import ip_str


def pool_description(ranges):
    """The pools as text, one line per range: what peers must agree on."""
    lines = sorted("%s-%s%s%s" % (ip_str(r.start), ip_str(r.end),
                                  "/" + ip_str(r.netmask) if r.netmask else "",
                                  " static" if r.static else "")
                   for r in ranges)
    return "\n".join(lines)


def pool_digest(ranges):
    return hashlib.sha256(pool_description(ranges).encode()).hexdigest()
