"""
Network-namespace labs for the tests, the benchmarks and the demo.

Not part of the installed package: it runs ``ip netns``, real clients and
servers on the host, which no product code should ever do.  It needs root
and iproute2; the client runners need ``dhclient`` (isc-dhcp-client) and
``udhcpc`` (busybox).  The parts, by job:

- :mod:`tests.lab.netns`: namespaces, bridges, addresses, commands and
  processes run in them, cleanup (the rules the lab keeps are there);
- :mod:`tests.lab.servers`: dhcpfo (and ``dhcpfo-ctl``), dnsmasq, dhcrelay,
  perfdhcp;
- :mod:`tests.lab.clients`: ISC dhclient and BusyBox udhcpc;
- :mod:`tests.lab.perfdhcp`: the parser of perfdhcp's report.

Example::

    with Lab() as lab:
        lab.lan("lan")
        lab.host("srv", "lan", "192.0.2.1/24")
        lab.host("cli", "lan")
        lab.dhcpfo("srv", ["--interface", "e0",
                           "--dhcp-range", "192.0.2.10,192.0.2.200,1h"])
        got = lab.dhclient("cli")          # {'ip': '192.0.2.10', ...}
        print(lab.leases("srv"))           # dhcpfo-ctl leases --json
"""

from tests.lab.clients import ClientRunners
from tests.lab.errors import ALLOWED_NETWORKS, LabError, tail
from tests.lab.netns import Namespaces
from tests.lab.perfdhcp import parse_perfdhcp
from tests.lab.servers import ServerRunners

__all__ = ["Lab", "LabError", "tail", "parse_perfdhcp", "ALLOWED_NETWORKS"]


class Lab(ClientRunners, ServerRunners, Namespaces):
    """
    A set of network namespaces, the processes running in them, and the
    servers and clients a test starts there (see :class:`Namespaces` for
    the lifetime: a context manager, closed at interpreter exit too).
    """
