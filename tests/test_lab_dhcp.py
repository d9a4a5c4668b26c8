"""
Integration tests: dhcpfo against real DHCP clients, relays and perfdhcp in
network-namespace labs built with :mod:`tests.lab`.

Every test builds its own lab (prefix ``dfo<pid>...``) in setUp and removes
it in a cleanup, even when the test fails.  They need root and the Debian
packages isc-dhcp-client, udhcpc, isc-dhcp-relay and kea-admin (perfdhcp);
without them they are skipped.  Only documentation addresses are used.
"""

import calendar
import time

from twisted.trial import unittest

from tests.lab import Lab, LabError, tail
from tests.labskip import needs


RANGE = "192.0.2.10,192.0.2.200,1h"






def iso_utc(text):
    """Seconds since the epoch of an ISO-8601 UTC ``YYYY-MM-DDTHH:MM:SSZ``."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


class LabTestCase(unittest.TestCase):
    """A lab with one LAN, a server host ``srv`` (192.0.2.1/24) and a client ``cli``."""

    def setUp(self):
        self.lab = Lab()
        self.addCleanup(self.lab.close)
        self.lab.lan("lan")
        self.lab.host("srv", "lan", "192.0.2.1/24")
        self.lab.host("cli", "lan")
        self.db = self.lab.path("leases.db")
        self.server = None

    def startServer(self, *extra, ranges=(RANGE,)):
        args = ["--interface", "e0", "--domain", "lab.test",
                "--lease-store", "sqlite:path=" + self.db,
                "--control", "tcp:8067:interface=127.0.0.1",
                "--dhcp-authoritative"]
        for r in ranges:
            args += ["--dhcp-range", r]
        self.server = self.lab.dhcpfo("srv", args + list(extra))
        return self.server

    def serverLog(self):
        return "\n--- dhcpfo log (tail) ---\n" + tail(self.lab.path("dhcpfo.log"), 30)

    def leases(self):
        return self.lab.leases("srv")

    def leaseFor(self, ip):
        found = [l for l in self.leases() if l["ip"] == ip]
        self.assertEqual(len(found), 1, "lease for %s: %r%s" % (
            ip, found, self.serverLog()))
        return found[0]

    def waitLease(self, ip, state, timeout=5):
        """Poll dhcpfo-ctl until the lease for *ip* has *state*."""
        deadline = time.monotonic() + timeout
        while True:
            found = [l for l in self.leases() if l["ip"] == ip]
            if found and found[0]["state"] == state:
                return found[0]
            if time.monotonic() > deadline:
                self.fail("lease for %s not %s within %ss: %r%s" % (
                    ip, state, timeout, found, self.serverLog()))
            time.sleep(0.1)

    def assertInRange(self, ip, first, last):
        def n(a):
            return tuple(int(x) for x in a.split("."))
        self.assertTrue(n(first) <= n(ip) <= n(last),
                        "%s not in %s-%s" % (ip, first, last))

    def dhclient(self, host="cli", **kw):
        kw.setdefault("timeout", 15)
        kw.setdefault("reboot", 4)
        try:
            return self.lab.dhclient(host, **kw)
        except LabError as e:
            self.fail("%s%s" % (e, self.serverLog()))

    def udhcpc(self, host="cli", **kw):
        try:
            return self.lab.udhcpc(host, **kw)
        except LabError as e:
            self.fail("%s%s" % (e, self.serverLog()))


class ClientTests(LabTestCase):

    @needs("dhclient")
    def test_dhclient(self):
        """
        ISC dhclient gets a lease from the range with the configured options,
        its address is configured, and dhcpfo-ctl lists the lease.
        """
        self.startServer("--dhcp-option", "option:router,192.0.2.1")
        got = self.dhclient()
        self.assertInRange(got["ip"], "192.0.2.10", "192.0.2.200")
        self.assertEqual(got["reason"], "BOUND")
        self.assertEqual(got["server_id"], "192.0.2.1")
        self.assertEqual(got["mask"], "255.255.255.0")
        self.assertEqual(got["lease_time"], 3600)
        self.assertEqual(got["router"], "192.0.2.1")
        self.assertEqual(got["domain"], "lab.test")
        self.assertIn(got["ip"] + "/24", self.lab.addresses("cli"))

        lease = self.leaseFor(got["ip"])
        for field in ("ip", "mac", "client_id", "hostname", "state", "expires"):
            self.assertIn(field, lease)
        self.assertEqual(lease["mac"], self.lab.mac("cli"))
        self.assertEqual(lease["state"], "active")
        expires = iso_utc(lease["expires"])
        now = time.time()
        self.assertTrue(now + 3600 - 60 <= expires <= now + 3600 + 5,
                        "expires %s is not about an hour from now" % lease["expires"])
        table = self.lab.ctl("srv", "leases")
        self.assertEqual(table.returncode, 0, table.stderr)
        self.assertIn(got["ip"], table.stdout)

    @needs("udhcpc")
    def test_udhcpc_hostname(self):
        """
        BusyBox udhcpc sending hostname h1 (option 12) and its default
        client identifier (option 61 = 01 + MAC) gets a lease that records both.
        """
        self.startServer()
        got = self.udhcpc(hostname="h1")
        self.assertInRange(got["ip"], "192.0.2.10", "192.0.2.200")
        self.assertEqual(got["server_id"], "192.0.2.1")
        self.assertEqual(got["lease_time"], 3600)
        lease = self.leaseFor(got["ip"])
        mac = self.lab.mac("cli")
        self.assertEqual(lease["hostname"], "h1")
        self.assertEqual(lease["mac"], mac)
        self.assertEqual(lease["client_id"], "01:" + mac)
        self.assertEqual(lease["state"], "active")

    @needs("dhclient")
    def test_dhclient_reboot_and_release(self):
        """
        dhclient run again with its lease file does INIT-REBOOT and keeps its
        address; ``dhclient -r`` releases it and dhcpfo marks it released.
        """
        self.startServer()
        first = self.dhclient()
        again = self.dhclient()
        self.assertEqual(again["ip"], first["ip"])
        self.assertEqual(again["reason"], "REBOOT",
                         "the INIT-REBOOT REQUEST was not ACKed; the client had to "
                         "start over with DISCOVER" + self.serverLog())
        self.assertEqual(self.leaseFor(first["ip"])["state"], "active")
        ev = self.lab.dhclient_release("cli")
        self.assertIsNotNone(ev, "dhclient -r ran no RELEASE")
        self.waitLease(first["ip"], "released")
        self.assertEqual(self.lab.addresses("cli"), [])

    @needs("udhcpc")
    def test_udhcpc_renew_and_release(self):
        """
        A running udhcpc renews on SIGUSR1 (REQUEST from BOUND: unicast, with
        ciaddr) and keeps its address; SIGUSR2 releases it.
        """
        self.startServer()
        first = self.udhcpc(hostname="h2", keep=True)
        before = iso_utc(self.leaseFor(first["ip"])["expires"])
        time.sleep(1.1)
        renewed = self.lab.udhcpc_renew("cli")
        self.assertEqual(renewed["ip"], first["ip"])
        self.assertEqual(renewed["reason"], "renew")
        lease = self.leaseFor(first["ip"])
        self.assertEqual(lease["state"], "active")
        self.assertGreater(iso_utc(lease["expires"]), before,
                           "the renewal did not extend the lease")
        self.lab.udhcpc_release("cli")
        self.waitLease(first["ip"], "released")

    @needs("dhclient")
    def test_init_reboot_after_restart(self):
        """
        After dhcpfo is stopped (SIGTERM) and started again on the same sqlite
        file it still lists the lease, ACKs the client's INIT-REBOOT for the
        same address, and does not hand that address to another client.
        """
        self.startServer()
        first = self.dhclient()
        self.lab.stop(self.server)
        self.startServer()
        lease = self.leaseFor(first["ip"])
        self.assertEqual(lease["state"], "active")
        self.assertEqual(lease["mac"], self.lab.mac("cli"))
        again = self.dhclient()
        self.assertEqual(again["ip"], first["ip"])
        self.assertEqual(again["reason"], "REBOOT", self.serverLog())
        self.lab.host("cli2", "lan")
        other = self.dhclient("cli2")
        self.assertNotEqual(other["ip"], first["ip"])

    @needs("dhclient")
    def test_authoritative_nak(self):
        """
        An authoritative server that has no binding for the address a client
        asks for in INIT-REBOOT (here: a new lease database and a range that
        no longer includes it) NAKs it, and the client then gets a new lease.
        """
        self.startServer()
        first = self.dhclient()
        self.assertEqual(first["ip"], "192.0.2.10")
        self.lab.stop(self.server)
        self.db = self.lab.path("other.db")
        self.startServer(ranges=("192.0.2.100,192.0.2.200,1h",))
        again = self.dhclient()
        log = open(self.lab.client_log("dhclient", "cli")).read()
        self.assertIn("DHCPNAK from 192.0.2.1", log,
                      "no NAK for the INIT-REBOOT REQUEST of an unknown, "
                      "out-of-range address" + self.serverLog())
        self.assertEqual(again["reason"], "BOUND")
        self.assertInRange(again["ip"], "192.0.2.100", "192.0.2.200")

    @needs("dhclient")
    def test_reservation(self):
        """
        ``--dhcp-host MAC,IP,NAME`` gives that client that address and name;
        the reserved address (the first of the range) is not given to others.
        """
        mac = self.lab.mac("cli")
        self.lab.host("cli2", "lan")
        self.startServer("--dhcp-host", "%s,192.0.2.10,printer" % mac)
        other = self.dhclient("cli2")
        self.assertNotEqual(other["ip"], "192.0.2.10")
        got = self.dhclient()
        self.assertEqual(got["ip"], "192.0.2.10")
        self.assertEqual(got["hostname"], "printer",
                         "option 12 (requested by dhclient) should carry the "
                         "reservation's name")
        lease = self.leaseFor("192.0.2.10")
        self.assertEqual(lease["mac"], mac)
        self.assertEqual(lease["hostname"], "printer")


class RelayTests(LabTestCase):

    @needs("dhclient", "dhcrelay")
    def test_relayed_client(self):
        """
        A client on a far LAN behind ISC dhcrelay gets an address from the
        relayed range (chosen by giaddr), with the server's identifier.
        """
        lab = self.lab
        lab.lan("far")
        lab.host("relay", "lan", "192.0.2.254/24")
        lab.attach("relay", "far", "198.51.100.1/24")
        lab.forwarding("relay")
        lab.host("farcli", "far")
        lab.ip("srv", "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
        self.startServer(ranges=(RANGE, "198.51.100.10,198.51.100.100,255.255.255.0,1h"))
        lab.dhcrelay("relay", "192.0.2.1", upper="e0", lower=("e1",))
        got = self.dhclient("farcli")
        self.assertInRange(got["ip"], "198.51.100.10", "198.51.100.100")
        self.assertEqual(got["mask"], "255.255.255.0")
        self.assertEqual(got["server_id"], "192.0.2.1")
        lease = self.leaseFor(got["ip"])
        self.assertEqual(lease["mac"], lab.mac("farcli"))
        self.assertEqual(lease["state"], "active")
        # A local client still gets a local address.
        local = self.dhclient("cli")
        self.assertInRange(local["ip"], "192.0.2.10", "192.0.2.200")

    @needs("perfdhcp")
    def test_perfdhcp(self):
        """
        perfdhcp (which acts as a relay from 192.0.2.250) completes 4-way
        exchanges and dhcpfo lists the leases it made.
        """
        self.lab.host("perf", "lan", "192.0.2.250/24")
        self.startServer()
        try:
            result = self.lab.perfdhcp(
                "perf", ["-4", "-l", "e0", "-r", "10", "-R", "20", "-n", "20"],
                timeout=30)
        except LabError as e:
            self.fail("%s%s" % (e, self.serverLog()))
        ra = result["exchanges"].get("REQUEST-ACK", {})
        self.assertGreater(ra.get("received", 0), 0,
                           "no REQUEST-ACK exchange completed:\n%s%s" % (
                               result["output"], self.serverLog()))
        leases = [l for l in self.leases() if l["state"] == "active"]
        self.assertGreaterEqual(len(leases), 1, result["output"])
        self.assertLessEqual(len(leases), 20)
        for l in leases:
            self.assertInRange(l["ip"], "192.0.2.10", "192.0.2.200")
