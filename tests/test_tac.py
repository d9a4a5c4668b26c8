"""``twistd dhcpfo`` and a ``.tac`` file build the same service through one
makeService, refuse the same configurations with the same message, and end
the same way when the server cannot start.

The lab tests run twistd for real inside a network namespace (needs root);
ServerServiceTests drive the start-up with a Memory reactor.
"""

import json
import os
import sys
import textwrap

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from dhcpfo import config as C
from dhcpfo.dhcp.pool import build_subnets
from dhcpfo.interfaces import ILeaseStore
from dhcpfo.service import DHCPService, ServerService
from tests.labskip import TWISTD, needs

TAC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "docs",
                                   "examples", "dhcpfo.tac"))

# Loads a .tac as twistd does and describes the service tree as JSON.
DESCRIBE = textwrap.dedent("""\
    import json, os, sys
    from twisted.application import service
    from twisted.persisted import sob
    os.chdir(sys.argv[2])
    application = sob.loadValueFromFile(sys.argv[1], "application")
    top = next(iter(service.IServiceCollection(application)))
    dhcp = top.getServiceNamed("dhcp")
    print(json.dumps({
        "interfaces": [i.name for i in dhcp.interfaces],
        "subnets": [s.describe() for s in dhcp.subnets],
        "authoritative": dhcp.config.authoritative,
        "lease_store": dhcp.config.lease_store,
        "hostnames": [h.hostname for h in dhcp.config.hosts],
        "services": sorted(s.name for s in top)}))
""")


# Which interfaces makeService would serve for the options given as JSON.
RESOLVE = textwrap.dedent("""\
    import json, sys
    from dhcpfo import config
    from dhcpfo.service import resolve_interfaces
    try:
        found = resolve_interfaces(config.build(json.loads(sys.argv[1])))
        print(json.dumps([[i.name, i.address_str] for i in found]))
    except config.ConfigError as e:
        print(json.dumps(str(e)))
""")


def tac_text(pairs):
    """A .tac file that runs dhcpfo with these (name, value) options."""
    return textwrap.dedent("""\
        from twisted.application import service
        from twisted.internet import reactor

        from dhcpfo import config
        from dhcpfo.service import makeService

        settings = config.build(%r)
        application = service.Application("dhcpfo")
        makeService(settings, reactor).setServiceParent(application)
    """) % (list(pairs),)


def argv_of(pairs):
    return ["--%s=%s" % (n, v) if v is not None else "--" + n for n, v in pairs]


@needs()
class LabTests(SynchronousTestCase):
    """Real twistd processes in a namespace whose ``e0`` is 192.0.2.1/24."""

    def setUp(self):
        from tests.lab import Lab
        self.lab = Lab()
        self.addCleanup(self.lab.close)
        self.lab.lan("lan")
        self.lab.host("srv", "lan", "192.0.2.1/24")

    def twistd(self, args, timeout=30):
        """Run ``twistd -n ARGS`` in the namespace until it exits (LabError
        after ``timeout`` seconds): (status, output)."""
        r = self.lab.run("srv", [TWISTD, "-n", "--pidfile=", "--logfile=-"] + args,
                         timeout=timeout)
        return r.returncode, r.stdout + r.stderr

    def both(self, pairs):
        """The same options through the plugin and through a .tac file."""
        path = self.lab.path("dhcpfo.tac")
        with open(path, "w") as f:
            f.write(tac_text(pairs))
        return (self.twistd(["dhcpfo"] + argv_of(pairs)),
                self.twistd(["-y", path]))

    def test_example_builds_service(self):
        """The documented example builds what it says, checked on a host
        that has its e0."""
        script = self.lab.path("describe.py")
        with open(script, "w") as f:
            f.write(DESCRIBE)
        r = self.lab.run("srv", [sys.executable, script, TAC, self.lab.dir],
                         timeout=30, check=True)
        found = json.loads(r.stdout)
        self.assertEqual(found, {
            "interfaces": ["e0"], "subnets": ["192.0.2.0/24"],
            "authoritative": True, "lease_store": "sqlite:path=leases.db",
            "hostnames": ["printer"],
            "services": ["control", "dhcp", "dns"]})

    def test_interfaces_from_the_ranges(self):
        """Without --interface: every interface with an address in a range;
        none is an error that says what to do."""
        script = self.lab.path("resolve.py")
        with open(script, "w") as f:
            f.write(RESOLVE)

        def resolve(*pairs):
            r = self.lab.run("srv", [sys.executable, script, json.dumps(pairs)],
                             timeout=30, check=True)
            return json.loads(r.stdout)

        self.assertEqual(resolve(["dhcp-range", "192.0.2.10,192.0.2.20"]),
                         [["e0", "192.0.2.1"]])
        self.assertEqual(resolve(["dhcp-range", "198.51.100.10,198.51.100.20"]),
                         "no interface has an address in a --dhcp-range; name one "
                         "with --interface")
        self.assertEqual(resolve(["dhcp-range", "198.51.100.10,198.51.100.20"],
                                 ["interface", "e0"]), [["e0", "192.0.2.1"]])

    def test_same_refusal(self):
        """A missing interface: both exit with status 1 and the same message."""
        pairs = [("interface", "nosuch0"), ("dhcp-range", "192.0.2.10,192.0.2.20"),
                 ("lease-store", "memory"), ("dns-port", "0")]
        (plugin_rc, plugin_out), (tac_rc, tac_out) = self.both(pairs)
        message = ("interface nosuch0: No such device (does it exist, and does it "
                   "have an IPv4 address?")
        self.assertEqual((plugin_rc, tac_rc), (1, 1), plugin_out + tac_out)
        self.assertIn("dhcpfo: cannot start: " + message, plugin_out)
        self.assertNotIn("Traceback", plugin_out)
        self.assertIn("Failed to load application: " + message, tac_out)

    def test_same_refusal_of_an_unknown_store(self):
        pairs = [("interface", "e0"), ("dhcp-range", "192.0.2.10,192.0.2.20"),
                 ("lease-store", "nosuch:x=1"), ("dns-port", "0")]
        (plugin_rc, plugin_out), (tac_rc, tac_out) = self.both(pairs)
        self.assertEqual((plugin_rc, tac_rc), (1, 1), plugin_out + tac_out)
        for out in (plugin_out, tac_out):
            self.assertIn("--lease-store=nosuch:x=1: no lease store named 'nosuch'",
                          out)

    def test_same_end_when_the_store_fails_after_start(self):
        """A store that fails to open once the reactor runs: both log it as
        critical and the process ends (instead of running without DHCP)."""
        missing = os.path.join(self.lab.dir, "no", "such", "leases.db")
        pairs = [("interface", "e0"), ("dhcp-range", "192.0.2.10,192.0.2.20"),
                 ("lease-store", "sqlite:path=" + missing), ("dns-port", "0"),
                 ("control", "unix:" + self.lab.path("control.sock"))]
        for _, out in self.both(pairs):
            self.assertIn("dhcpfo cannot start; stopping", out)
            self.assertIn("unable to open database file", out)
            self.assertIn("Main loop terminated.", out)
            self.assertNotIn("serving DHCP", out)


@implementer(ILeaseStore)
class OpeningStore:
    """A store whose open() the test settles (a stand-in for the one class
    under test's collaborator)."""

    durable = True

    def __init__(self, opened):
        self.opened = opened
        self.closed = False

    def open(self):
        return self.opened

    def close(self):
        self.closed = True
        return defer.succeed(None)


class ServerServiceTests(SynchronousTestCase):
    """How the service tree reports a start that fails, with no sockets:
    no interfaces, a relayed range."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.running = True  # as under twistd, once the reactor runs

    def top(self, opened):
        config = C.build([("dhcp-range", "198.51.100.10,198.51.100.20,255.255.255.0"),
                          ("lease-store", "memory")])
        self.store = OpeningStore(opened)
        dhcp = DHCPService(config, self.reactor, self.store, [],
                           build_subnets(config.ranges, []))
        top = ServerService(self.reactor, dhcp)
        dhcp.setServiceParent(top)
        return top

    def test_serves(self):
        top = self.top(defer.succeed([]))
        top.startService()
        self.assertIs(self.successResultOf(top.whenReady()), top)
        self.assertEqual(top.dhcp.state, "serving")
        self.assertFalse(self.reactor.hasStopped)
        top.stopService()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_failure_inside_startService_is_raised(self):
        """twistd (and a .tac) then exit with status 1 and the traceback; the
        reactor is not touched."""
        top = self.top(defer.fail(OSError(13, "Permission denied")))
        error = self.assertRaises(OSError, top.startService)
        self.assertEqual(error.strerror, "Permission denied")
        self.assertFalse(self.reactor.hasStopped)
        self.assertTrue(self.store.closed)
        self.failureResultOf(top.whenReady(), OSError)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_failure_after_start_stops_the_reactor_it_was_given(self):
        opened = defer.Deferred()
        top = self.top(opened)
        top.startService()
        ready = top.whenReady()
        self.assertNoResult(ready)
        self.assertFalse(self.reactor.hasStopped)
        opened.errback(OSError(2, "No such file or directory"))
        self.failureResultOf(ready, OSError)
        self.assertEqual(top.dhcp.state, "failed")
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_failure_before_the_reactor_runs(self):
        """The stop waits until the reactor runs (it is not running yet under
        twistd while the services start)."""
        self.reactor.running = False
        opened = defer.Deferred()
        top = self.top(opened)
        top.startService()
        opened.errback(OSError(2, "No such file or directory"))
        self.assertFalse(self.reactor.hasStopped)
        self.reactor.running = True
        for f, args, kwargs in self.reactor.whenRunningHooks:
            f(*args, **kwargs)
        self.assertTrue(self.reactor.hasStopped)
        self.flushLoggedErrors(OSError)
