"""The documented .tac example builds the service it describes."""

import os

from twisted.application import service
from twisted.persisted import sob
from twisted.trial.unittest import SynchronousTestCase

TAC = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "dhcpfo.tac")


class TacTests(SynchronousTestCase):
    def test_example_builds_service(self):
        application = sob.loadValueFromFile(TAC, "application")
        top = service.IServiceCollection(application)
        dhcp = next(iter(top)).getServiceNamed("dhcp")
        self.assertEqual(dhcp.config.interfaces, ["e0"])
        self.assertTrue(dhcp.config.authoritative)
        self.assertEqual(dhcp.config.lease_store, "sqlite:path=leases.db")
        self.assertEqual([h.hostname for h in dhcp.config.hosts], ["printer"])
        named = [s.name for s in next(iter(top))]
        self.assertTrue({"control", "dhcp"} <= set(named), named)
