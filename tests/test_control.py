"""The control API's JSON (dhcpfo.control.api): leases as an operator reads them."""

import http.client
import io
import json
import os
from types import SimpleNamespace
from unittest import SkipTest

from twisted.internet import defer, threads
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyRequest

from dhcpfo.addr import NEVER
from dhcpfo.control.api import ControlResource, lease_json
from dhcpfo.control.auth import Guard
from dhcpfo.control.cli import _UNIXConnection, change, main
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


class Coordinator:
    """Records partner-down declarations (the one collaborator, stood in)."""

    def __init__(self):
        self.declared = []

    def declarePartnerDown(self, name, reason):
        self.declared.append((name, reason))
        return NOW + 3600


def _http(connection, method, path, body=None, headers=None):
    """One blocking request (run in a thread): ``(status, parsed body)``;
    a body that is not JSON (twisted.web's own 400 page) is None."""
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, None
    finally:
        connection.close()


def _as_nobody(socket_name):
    """Fork a child that becomes uid/gid 65534 and asks for partner-down over
    the socket; ``(status, body)`` it got (blocking: run in a thread)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            result = change(socket_name, "/v1/failover/partner-down",
                            {"name": "srv2"})
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as f:
            data = f.read()
    finally:
        os.waitpid(pid, 0)
    return json.loads(data)


class RealSocketTests(TestCase):
    """The API served by a real Site on loopback TCP and on an abstract UNIX
    socket, asked with real HTTP requests: what a browser tab on this host
    could send changes nothing; root over the socket can."""

    def setUp(self):
        from twisted.internet import reactor
        from twisted.web.server import Site
        from dhcpfo.control.auth import unix_address
        self.coordinator = Coordinator()
        dhcp = SimpleNamespace(table=LeaseTable(), reactor=reactor,
                               failover=SimpleNamespace(coordinator=self.coordinator))
        site = Site(ControlResource(dhcp))
        self.tcp = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.tcp.stopListening)
        self.socket_name = "@dhcpfo-test-%d-%s" % (os.getpid(), id(self))
        self.unix = reactor.listenUNIX(unix_address(self.socket_name), site)
        self.addCleanup(self.unix.stopListening)

    def over_tcp(self, *args):
        conn = http.client.HTTPConnection("127.0.0.1", self.tcp.getHost().port,
                                          timeout=5)
        return threads.deferToThread(_http, conn, *args)

    def over_unix(self, *args):
        return threads.deferToThread(
            _http, _UNIXConnection(self.socket_name, 5), *args)

    FORM = {"Content-Type": "application/x-www-form-urlencoded",
            "Origin": "http://attacker.example"}

    @defer.inlineCallbacks
    def test_cross_site_form_post_changes_nothing(self):
        for ask in (self.over_tcp, self.over_unix):
            for path in ("/failover/partner-down?name=srv2",
                         "/v1/failover/partner-down?name=srv2"):
                status, body = yield ask("POST", path, b"name=srv2", self.FORM)
                self.assertEqual(status, 403)
                self.assertIn("Origin", body["error"])
        self.assertEqual(self.coordinator.declared, [])

    @defer.inlineCallbacks
    def test_form_content_type_without_origin_changes_nothing(self):
        for ctype in ("application/x-www-form-urlencoded", "text/plain",
                      "multipart/form-data; boundary=x"):
            status, body = yield self.over_unix(
                "POST", "/v1/failover/partner-down", b'{"name": "srv2"}',
                {"Content-Type": ctype})
            # twisted.web answers an unparsable multipart body 400 itself.
            self.assertIn(status, (415,) if "multipart" not in ctype else (400, 415))
        self.assertEqual(self.coordinator.declared, [])

    @defer.inlineCallbacks
    def test_tcp_is_read_only(self):
        status, body = yield self.over_tcp(
            "POST", "/v1/failover/partner-down", b'{"name": "srv2"}',
            {"Content-Type": "application/json"})
        self.assertEqual(status, 403)
        self.assertIn("--control-socket", body["error"])
        self.assertEqual(self.coordinator.declared, [])

    @defer.inlineCallbacks
    def test_foreign_host_is_refused(self):
        """A page that rebinds its name to 127.0.0.1 reads nothing."""
        status, _ = yield self.over_tcp("GET", "/v1/leases", None,
                                        {"Host": "attacker.example:8067"})
        self.assertEqual(status, 403)
        status, body = yield self.over_tcp("GET", "/v1/leases")
        self.assertEqual((status, body), (200, []))
        status, _ = yield self.over_unix(
            "POST", "/v1/failover/partner-down", b'{"name": "srv2"}',
            {"Content-Type": "application/json", "Host": "attacker.example"})
        self.assertEqual(status, 403)
        self.assertEqual(self.coordinator.declared, [])

    @defer.inlineCallbacks
    def test_root_over_the_socket_declares_partner_down(self):
        if os.geteuid() != 0:
            raise SkipTest("needs root: only root may change state by default")
        out = io.StringIO()
        code = yield threads.deferToThread(
            main, ["--control-socket", self.socket_name, "partner-down", "srv2"],
            out)
        self.assertEqual(code, 0)
        self.assertIn("srv2 declared down", out.getvalue())
        self.assertEqual(self.coordinator.declared, [("srv2", "operator")])

    @defer.inlineCallbacks
    def test_another_user_over_the_socket_is_refused(self):
        """The kernel's peer credentials decide, not the client's word."""
        if os.geteuid() != 0:
            raise SkipTest("needs root to run a client as nobody")
        status, body = yield threads.deferToThread(_as_nobody, self.socket_name)
        self.assertEqual(status, 403)
        self.assertIn("uid 65534", body["error"])
        self.assertEqual(self.coordinator.declared, [])


class GuardTests(SynchronousTestCase):
    def test_root_and_the_control_group_only(self):
        import grp
        gid = grp.getgrnam("nogroup").gr_gid
        self.assertTrue(Guard().allowed((1, 0, 0)))
        self.assertFalse(Guard().allowed((1, 1000, gid)))
        self.assertTrue(Guard("nogroup").allowed((2 ** 22 + 1, 1000, gid)))
        self.assertFalse(Guard("nogroup").allowed((2 ** 22 + 1, 1000, 1000)))

    def test_supplementary_groups_from_proc(self):
        """A member through a supplementary group: read from /proc/PID."""
        gids = os.getgroups()
        if not gids:
            raise SkipTest("this process has no supplementary group")
        import grp
        name = grp.getgrgid(gids[-1]).gr_name
        self.assertTrue(Guard(name).allowed((os.getpid(), 1000, 1000)))
