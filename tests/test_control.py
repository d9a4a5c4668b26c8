"""The control API's JSON (dhcpfo.control.api): leases as an operator reads them."""

import json
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from dhcpfo.addr import NEVER
from dhcpfo.control.api import ControlResource, lease_json
from dhcpfo.leases.lease import ACTIVE, BACKUP, Lease
from dhcpfo.leases.table import LeaseTable

NOW = 1_800_000_000


def lease(ip, state=ACTIVE, expiry=NOW + 3600, owner="srv1"):
    return Lease(ip, bytes.fromhex("525400000001"), b"\x01\x02", "laptop", state,
                 NOW, expiry, owner, 1)


class LeaseJSONTests(SynchronousTestCase):
    def test_fields(self):
        self.assertEqual(lease_json(lease("192.0.2.10"), NOW), {
            "ip": "192.0.2.10", "mac": "52:54:00:00:00:01", "client_id": "01:02",
            "hostname": "laptop", "state": "active",
            "starts": "2027-01-15T08:00:00Z", "expires": "2027-01-15T09:00:00Z",
            "owner": "srv1"})

    def test_infinite_lease_has_no_end(self):
        self.assertIsNone(lease_json(lease("192.0.2.10", expiry=NEVER), NOW)["expires"])

    def test_expired_lease_says_so(self):
        self.assertEqual(lease_json(lease("192.0.2.10"), NOW + 3600)["state"], "expired")


class LeasesResourceTests(SynchronousTestCase):
    def test_leases_in_address_order_without_reserves(self):
        table = LeaseTable()
        for ip in ("192.0.2.10", "192.0.2.9", "192.0.2.100"):
            table.put(lease(ip))
        table.put(lease("192.0.2.11", state=BACKUP, owner="srv2"))
        clock = Clock()
        clock.advance(NOW)
        dhcp = SimpleNamespace(table=table, reactor=clock)
        resource = ControlResource(dhcp).getChildWithDefault(b"leases", None)
        body = json.loads(resource.render_GET(DummyRequest([b"leases"])))
        self.assertEqual([entry["ip"] for entry in body],
                         ["192.0.2.9", "192.0.2.10", "192.0.2.100"])
