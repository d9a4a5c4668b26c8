"""Store discovery through twisted.plugin, the example plugin, SQLite crash safety."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dhcpfo.stores import registry
from tests.store_conformance import StoreConformanceMixin, storeFromDescription

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")

try:
    import dhcpfo_jsonl
except ImportError:
    dhcpfo_jsonl = None


class DiscoveryTests(SynchronousTestCase):
    def test_builtin_stores_found(self):
        found = registry.factories()
        self.assertIn("sqlite", found)
        self.assertIn("memory", found)

    def test_help_lists_stores(self):
        out = subprocess.run([TWISTD, "dhcpfo", "--lease-store", "help"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        prefixes = [line.split()[0] for line in out.stdout.splitlines()[1:]
                    if line.startswith("  ") and not line.startswith("   ")]
        expected = {"sqlite", "memory", "ldap"} | ({"jsonl"} if dhcpfo_jsonl else set())
        self.assertTrue(expected <= set(prefixes), out.stdout)

    def test_unknown_store_usage_error(self):
        out = subprocess.run([TWISTD, "dhcpfo", "--dhcp-range", "192.0.2.10,192.0.2.20",
                              "--lease-store", "nosuch:x=1"],
                             capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("no lease store named 'nosuch' is installed", out.stderr + out.stdout)
        self.assertIn("sqlite", out.stderr + out.stdout)

    def test_ldaptor_only_behind_the_ldap_store(self):
        """Only dhcpfo/stores/ldap/ imports ldaptor, and scanning the plugins
        (as twisted.plugin does for every twistd command) imports none of it."""
        import ast
        import dhcpfo
        root = os.path.dirname(dhcpfo.__file__)
        importers = []
        for folder, _, files in os.walk(root):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read(), path)
                for node in ast.walk(tree):
                    modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                               else [node.module or ""] if isinstance(node, ast.ImportFrom)
                               else [])
                    if any(m.split(".")[0] == "ldaptor" for m in modules):
                        importers.append(os.path.relpath(path, root))
        self.assertTrue(importers)
        outside = [p for p in importers if not p.startswith("stores/ldap/")]
        self.assertEqual(outside, [])
        out = subprocess.run(
            [sys.executable, "-c", "import sys, dhcpfo.plugins.builtin_stores; "
             "from dhcpfo.stores import registry; registry.factories(); "
             "print(sorted(m for m in sys.modules if m.startswith('ldaptor')))"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), "[]")

    def test_plugin_found_by_prefix(self):
        if dhcpfo_jsonl is None:
            raise self.skipTest("the example plugin is not installed (scripts/test "
                                "installs docs/examples/jsonl-store)")
        factory, params = registry.validate("jsonl:path=/tmp/x.jsonl")
        self.assertEqual((factory.prefix, params), ("jsonl", {"path": "/tmp/x.jsonl"}))


class ExamplePluginConformance(StoreConformanceMixin, TestCase):
    """The plugin of docs/writing-a-lease-store.md, installed as a third party."""

    loadCount = 100_000

    def setUp(self):
        if dhcpfo_jsonl is None:
            raise self.skipTest("the example plugin is not installed (scripts/test "
                                "installs docs/examples/jsonl-store)")
        self.path = os.path.abspath(self.mktemp())

    def makeStore(self):
        return storeFromDescription(reactor, "jsonl:path=" + self.path)

    def backendLeases(self):
        found = {}
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                lease = dhcpfo_jsonl._decode(line)
                found[lease.ip] = lease
        return list(found.values())

    def breakBackend(self, store):
        store._file.close()


_WRITER = r"""
import sys
from twisted.internet import reactor
from dhcpfo.stores.sqlite import SQLiteLeaseStore
from tests.store_conformance import lease

store = SQLiteLeaseStore(reactor, sys.argv[1])

done = 0

def acked(_, n):
    global done
    done += 1
    sys.stdout.write("%d\n" % n)
    sys.stdout.flush()

def go(_):
    n = 0
    def more():
        nonlocal n
        # Keep a bounded number of writes in flight: always some batch being
        # committed when the kill lands, never an unbounded queue.
        while n - done < 500:
            store.write([lease(n)]).addCallback(acked, n)
            n += 1
        reactor.callLater(0.001, more)
    more()

store.open().addCallback(go)
reactor.run()
"""


class CrashSafetyTests(SynchronousTestCase):
    def test_sigkill_loses_no_acknowledged_write(self):
        path = os.path.abspath(self.mktemp())
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, path],
                                stdout=subprocess.PIPE, text=True,
                                cwd=os.path.dirname(os.path.dirname(__file__)))
        acked = []
        # Never hang the suite: whatever happens, the writer dies in 60 s.
        watchdog = threading.Timer(60, proc.kill)
        watchdog.start()
        try:
            for line in proc.stdout:
                acked.append(int(line))
                if len(acked) >= 3000:
                    break
        finally:
            watchdog.cancel()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        self.assertGreaterEqual(len(acked), 3000, "the writer died early")
        conn = sqlite3.connect(path)
        try:
            self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            stored = {row[0] for row in conn.execute("SELECT ip FROM leases")}
        finally:
            conn.close()
        from tests.store_conformance import lease
        missing = [n for n in acked if lease(n).ip not in stored]
        self.assertEqual(missing, [])
        # The kill landed mid-stream: writes were still in flight.
        self.assertGreater(max(acked), 0)
