"""Configuration: dhcpfo.config.build/read_conf_file, the twistd Options, and the
checks makeService makes against the installed plugins."""

import io
import socket

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo import config as C
from dhcpfo import service, tap
from dhcpfo.addr import int_from_str
from dhcpfo.dhcp.pool import InterfaceInfo
from dhcpfo.stores import registry

RANGE = ("dhcp-range", "192.0.2.10,192.0.2.200", "test")


def n(text):
    """A dotted quad as the int the config keeps."""
    return int_from_str(text)


LAN = InterfaceInfo("e0", n("192.0.2.1"), n("255.255.255.0"))


def build(*pairs, where="test"):
    """Build from ``(name, value)`` pairs, adding a range when none is given."""
    triples = [(name, value, where) for name, value in pairs]
    if not any(name == "dhcp-range" for name, _ in pairs):
        triples.insert(0, RANGE)
    return C.build(triples)


def assertListsInstalledStores(test, message):
    """The built-in stores are listed (third-party plugins may add more)."""
    test.assertIn("installed: ", message)
    installed = message.rsplit("installed: ", 1)[1].split(", ")
    test.assertIn("memory", installed)
    test.assertIn("sqlite", installed)
    test.assertEqual(installed, sorted(installed))


class BuildErrorMixin:

    def assertConfigError(self, pairs, *fragments, where="test"):
        error = self.assertRaises(C.ConfigError, build, *pairs, where=where)
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return str(error)


class RangeTests(BuildErrorMixin, SynchronousTestCase):

    def one(self, value):
        [r] = build(("dhcp-range", value)).ranges
        return r

    def test_start_end(self):
        r = self.one("192.0.2.10,192.0.2.200")
        self.assertEqual(r, C.DhcpRange(n("192.0.2.10"), n("192.0.2.200"), None,
                                        C.DEFAULT_LEASE_TIME, None, False))

    def test_whitespace(self):
        r = self.one(" 192.0.2.10 , 192.0.2.200 , 12h ")
        self.assertEqual((r.start, r.end, r.lease_time),
                         (n("192.0.2.10"), n("192.0.2.200"), 12 * 3600))

    def test_netmask(self):
        r = self.one("192.0.2.10,192.0.2.200,255.255.255.0")
        self.assertEqual(r.netmask, n("255.255.255.0"))

    def test_lease_times(self):
        for text, seconds in (("45m", 2700), ("1h", 3600), ("12h", 43200),
                              ("1d", 86400), ("1w", 604800), ("300", 300),
                              ("300s", 300), ("2m", 120),
                              ("infinite", C.INFINITE), ("inf", C.INFINITE)):
            r = self.one("192.0.2.10,192.0.2.200,255.255.255.0," + text)
            self.assertEqual(r.lease_time, seconds, text)

    def test_lease_time_below_minimum(self):
        for text in ("1m", "90s", "119", "0"):
            self.assertConfigError([("dhcp-range", "192.0.2.10,192.0.2.200," + text)],
                                   "below the minimum of 2m")

    def test_huge_lease_time_is_not_infinite(self):
        r = self.one("192.0.2.10,192.0.2.200,100000w")
        self.assertEqual(r.lease_time, C.INFINITE - 1)

    def test_set_tag(self):
        r = self.one("set:lab,192.0.2.10,192.0.2.200,1h")
        self.assertEqual((r.tag, r.lease_time), ("lab", 3600))

    def test_static(self):
        r = self.one("192.0.2.0,static")
        self.assertEqual((r.start, r.end, r.static), (n("192.0.2.0"), n("192.0.2.0"), True))
        r = self.one("set:fixed,192.0.2.0,static,255.255.255.0,infinite")
        self.assertEqual((r.tag, r.netmask, r.lease_time, r.static),
                         ("fixed", n("255.255.255.0"), C.INFINITE, True))

    def test_several_ranges_keep_order(self):
        config = build(("dhcp-range", "192.0.2.10,192.0.2.20"),
                       ("dhcp-range", "198.51.100.10,198.51.100.20"))
        self.assertEqual([r.start for r in config.ranges],
                         [n("192.0.2.10"), n("198.51.100.10")])

    def test_no_end(self):
        self.assertConfigError([("dhcp-range", "192.0.2.10")],
                               "needs an end address", "START,static")

    def test_no_address(self):
        self.assertConfigError([("dhcp-range", "1h")], "START,END")

    def test_backwards(self):
        self.assertConfigError([("dhcp-range", "192.0.2.200,192.0.2.10")],
                               "ends (192.0.2.10) before it starts (192.0.2.200)")

    def test_not_a_netmask(self):
        self.assertConfigError([("dhcp-range", "192.0.2.10,192.0.2.200,255.0.255.0")],
                               "255.0.255.0 is not a netmask")

    def test_across_subnets(self):
        self.assertConfigError(
            [("dhcp-range", "192.0.2.10,192.0.3.200,255.255.255.0")],
            "not in one subnet of netmask 255.255.255.0")

    def test_tag_condition_unsupported(self):
        self.assertConfigError([("dhcp-range", "tag:lab,192.0.2.10,192.0.2.200")],
                               "tag: conditions on a range are not supported",
                               "set:TAG")

    def test_garbage_item(self):
        message = self.assertConfigError(
            [("dhcp-range", "192.0.2.10,192.0.2.200,fast")],
            "'fast' is neither an address, a netmask nor a lease time")
        self.assertTrue(message.startswith(
            "test: --dhcp-range=192.0.2.10,192.0.2.200,fast: "), message)

    def test_bad_lease_time(self):
        self.assertConfigError([("dhcp-range", "192.0.2.10,192.0.2.200,1y")],
                               "'1y'", "lease time")

    def test_no_range_at_all(self):
        error = self.assertRaises(C.ConfigError, C.build, [])
        self.assertIn("no --dhcp-range given", str(error))
        self.assertIn("--dhcp-range 192.0.2.10,192.0.2.200,1h", str(error))


class HostTests(BuildErrorMixin, SynchronousTestCase):

    def one(self, value):
        [h] = build(("dhcp-host", value)).hosts
        return h

    def test_mac_only(self):
        h = self.one("52:54:00:00:00:01")
        self.assertEqual(h, C.HostReservation(bytes.fromhex("525400000001"), None,
                                              None, "", None, (), False))

    def test_mac_with_dashes_and_short_octets(self):
        self.assertEqual(self.one("52-54-0-0-0-1").hwaddr, bytes.fromhex("525400000001"))

    def test_everything(self):
        h = self.one("52:54:00:00:00:01,id:01:52:54:00:00:00:01,set:printers,"
                     "set:floor2,192.0.2.50,Printer,45m")
        self.assertEqual(h.hwaddr, bytes.fromhex("525400000001"))
        self.assertEqual(h.client_id, bytes.fromhex("01525400000001"))
        self.assertEqual(h.tags, ("printers", "floor2"))
        self.assertEqual(h.ip, n("192.0.2.50"))
        self.assertEqual(h.hostname, "printer")
        self.assertEqual(h.lease_time, 2700)
        self.assertFalse(h.ignore)

    def test_items_in_any_order(self):
        h = self.one("printer.lab.test,infinite,192.0.2.50,52:54:00:00:00:01")
        self.assertEqual((h.hostname, h.lease_time, h.ip, h.hwaddr),
                         ("printer.lab.test", C.INFINITE, n("192.0.2.50"),
                          bytes.fromhex("525400000001")))

    def test_client_id_text(self):
        h = self.one("id:my-laptop,192.0.2.60")
        self.assertEqual((h.hwaddr, h.client_id), (None, b"my-laptop"))

    def test_ignore(self):
        self.assertTrue(self.one("52:54:00:00:00:01,ignore").ignore)

    def test_empty_items_skipped(self):
        self.assertEqual(self.one("52:54:00:00:00:01,,192.0.2.5,").ip, n("192.0.2.5"))

    def test_needs_mac_or_id(self):
        self.assertConfigError([("dhcp-host", "192.0.2.50,printer")],
                               "needs a hardware address or id:CLIENTID")

    def test_empty_client_id(self):
        """``id:`` with nothing after it can never match a client."""
        self.assertConfigError([("dhcp-host", "id:,192.0.2.50")], "id:")

    def test_garbage(self):
        self.assertConfigError([("dhcp-host", "52:54:00:00:00:01,print_er!")],
                               "'print_er!' is not a hardware address")

    def test_mistyped_address_is_not_a_name(self):
        """192.0.2.500 is a typo for an address, not the host name "192.0.2.500"."""
        self.assertConfigError([("dhcp-host", "52:54:00:00:00:01,192.0.2.500")],
                               "'192.0.2.500'")

    def test_second_mac(self):
        self.assertConfigError(
            [("dhcp-host", "52:54:00:00:00:01,52:54:00:00:00:02")],
            "'52:54:00:00:00:02'")

    def test_bad_lease_time(self):
        self.assertConfigError([("dhcp-host", "52:54:00:00:00:01,1m")],
                               "below the minimum")


class OptionTests(BuildErrorMixin, SynchronousTestCase):

    def one(self, value):
        [o] = build(("dhcp-option", value)).options
        return o

    def test_by_name(self):
        self.assertEqual(self.one("option:router,192.0.2.1"),
                         C.OptionSetting(3, socket.inet_aton("192.0.2.1"), ()))

    def test_by_number(self):
        self.assertEqual(self.one("3,192.0.2.1"), self.one("option:router,192.0.2.1"))

    def test_tags(self):
        o = self.one("tag:lab, tag:wifi ,option:dns-server,192.0.2.1, 192.0.2.2")
        self.assertEqual(o.tags, ("lab", "wifi"))
        self.assertEqual(o.value, socket.inet_aton("192.0.2.1")
                         + socket.inet_aton("192.0.2.2"))

    def test_unknown_number_guessed(self):
        self.assertEqual(self.one("250,hello").value, b"hello")
        self.assertEqual(self.one("250,01:02").value, b"\x01\x02")
        self.assertEqual(self.one("250,300").value, b"\x01\x2c")

    def test_guessed_integer_with_leading_zero(self):
        self.assertEqual(self.one("250,010").value, b"\x0a")

    def test_empty_value(self):
        self.assertEqual(self.one("option:domain-search").value, b"")
        self.assertEqual(self.one("option:domain-search,").value, b"")

    def test_reserved(self):
        for spec in ("53,1", "54,192.0.2.1", "61,01:02", "55,1,3"):
            self.assertConfigError([("dhcp-option", spec)],
                                   "is set by the server itself")

    def test_unknown_name(self):
        self.assertConfigError([("dhcp-option", "option:gateway,192.0.2.1")],
                               "test: --dhcp-option=option:gateway,192.0.2.1: ",
                               "unknown option name 'gateway'", "router")

    def test_bad_value(self):
        self.assertConfigError([("dhcp-option", "option:router,gw.lab.test")],
                               "--dhcp-option=option:router,gw.lab.test",
                               "'gw.lab.test' is not an IPv4 address")

    def test_bad_domain_search_label(self):
        self.assertConfigError([("dhcp-option", "option:domain-search," + "a" * 64)],
                               "not a valid domain name")

    def test_missing_option(self):
        self.assertConfigError([("dhcp-option", "tag:lab")], "[tag:TAG,]OPTION,VALUE")
        self.assertConfigError([("dhcp-option", "")], "[tag:TAG,]OPTION,VALUE")

    def test_unsupported_spaces(self):
        for spec in ("encap:175,1,1", "vi-encap:9,1,x", "vendor:PXEClient,1,0",
                     "option6:23,[::1]"):
            self.assertConfigError([("dhcp-option", spec)], "not supported yet")


class OtherSettingsTests(BuildErrorMixin, SynchronousTestCase):

    def test_defaults(self):
        config = build()
        self.assertEqual(config.interfaces, ())
        self.assertEqual(config.hosts, ())
        self.assertEqual(config.options, ())
        self.assertEqual(config.domain, "")
        self.assertFalse(config.authoritative)
        self.assertEqual(config.lease_store, registry.DEFAULT)
        self.assertEqual(C.DEFAULT_STORE, registry.DEFAULT)
        self.assertEqual(config.control, C.DEFAULT_CONTROL)
        self.assertEqual(config.server_name, socket.gethostname())

    def test_values(self):
        config = build(("interface", "e0"), ("interface", " e1 "),
                       ("domain", "Lab.Test."), ("dhcp-authoritative", None),
                       ("lease-store", "memory"), ("control", " tcp:9000 "),
                       ("server-name", "srv1"))
        self.assertEqual(config.interfaces, ("e0", "e1"))
        self.assertEqual(config.domain, "lab.test")
        self.assertTrue(config.authoritative)
        self.assertEqual(config.lease_store, "memory")
        self.assertEqual(config.control, "tcp:9000")
        self.assertEqual(config.server_name, "srv1")

    def test_flag_with_empty_value(self):
        self.assertTrue(build(("dhcp-authoritative", "")).authoritative)

    def test_flag_with_value(self):
        self.assertConfigError([("dhcp-authoritative", "yes")],
                               "--dhcp-authoritative=yes: takes no value")

    def test_missing_value(self):
        self.assertConfigError([("domain", None)], "test: --domain: needs a value")

    def test_unknown_setting(self):
        self.assertConfigError([("dhcp-rnage", "x")], "--dhcp-rnage=x",
                               "unknown option", "dhcp-range", "dhcp-authoritative")

    def test_bad_domain(self):
        self.assertConfigError([("domain", "lab_test")], "'lab_test' is not a domain")
        self.assertConfigError([("domain", ".")], "is not a domain")

    def test_bad_interface(self):
        for name in ("", "a-very-long-interface0", "e0/1", "e 0"):
            self.assertConfigError([("interface", name)], "is not an interface name")

    def test_lease_store_syntax(self):
        self.assertConfigError([("lease-store", "sqlite:path")],
                               "--lease-store=sqlite:path",
                               "parameter 'path' has no value", "key=value")
        self.assertConfigError([("lease-store", "/var/lib/leases.db")],
                               "does not start with a store name")

    def test_lease_store_escapes(self):
        config = build(("lease-store", r"ldap:url=ldap://h,base=ou=l\,dc=x"))
        self.assertEqual(config.lease_store, r"ldap:url=ldap://h,base=ou=l\,dc=x")

    def test_lease_store_unknown(self):
        """Which stores are installed is the plugins' business: makeService
        checks it, for twistd and .tac files alike."""
        config = build(("lease-store", "nosuch:x=1"))
        message = self.assertMakeServiceError(config, "--lease-store=nosuch:x=1",
                                              "'nosuch'")
        assertListsInstalledStores(self, message)

    def test_lease_store_parameter(self):
        self.assertMakeServiceError(build(("lease-store", "sqlite:file=x.db")),
                                    "no parameter file", "it takes: path")

    def test_lease_store_bad_parameter_value(self):
        """A store factory's ValueError for a parameter is a ConfigError."""
        self.assertMakeServiceError(build(("lease-store", "ldap:base=dc=x")),
                                    "--lease-store=ldap:base=dc=x", "url= is required")

    def assertMakeServiceError(self, config, *fragments):
        error = self.assertRaises(C.ConfigError, service.makeService, config,
                                  MemoryReactorClock(), interfaces=[LAN])
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return str(error)

    def test_pairs_without_where(self):
        config = C.build([("dhcp-range", "192.0.2.10,192.0.2.20"),
                          ("dhcp-authoritative", None)])
        self.assertTrue(config.authoritative)
        error = self.assertRaises(C.ConfigError, C.build, [("domain", "bad_domain")])
        self.assertTrue(str(error).startswith("configuration: --domain=bad_domain: "))

    def test_first_error_wins_with_its_where(self):
        error = self.assertRaises(C.ConfigError, C.build, [
            RANGE, ("domain", "lab.test", "a.conf line 2"),
            ("domain", "bad_domain", "a.conf line 3"),
            ("interface", "", "a.conf line 4")])
        self.assertTrue(str(error).startswith("a.conf line 3: --domain=bad_domain: "))


class ConfFileTests(BuildErrorMixin, SynchronousTestCase):

    def write(self, text, mode="w"):
        path = self.mktemp()
        with open(path, mode) as f:
            f.write(text)
        return path

    def test_pairs(self):
        path = self.write(
            "# dhcpfo test\n"
            "\n"
            "dhcp-range=192.0.2.10,192.0.2.200,1h\n"
            "   # indented comment\n"
            "  domain = lab.test  \n"
            "dhcp-authoritative\n"
            "lease-store=sqlite:path=/tmp/x.db\n")
        self.assertEqual(C.read_conf_file(path), [
            ("dhcp-range", "192.0.2.10,192.0.2.200,1h", "%s line 3" % path),
            ("domain", "lab.test", "%s line 5" % path),
            ("dhcp-authoritative", None, "%s line 6" % path),
            ("lease-store", "sqlite:path=/tmp/x.db", "%s line 7" % path),
        ])
        config = C.build(C.read_conf_file(path))
        self.assertEqual(config.domain, "lab.test")
        self.assertTrue(config.authoritative)
        self.assertEqual(config.lease_store, "sqlite:path=/tmp/x.db")

    def test_error_names_line(self):
        path = self.write("dhcp-range=192.0.2.10,192.0.2.200\n"
                          "# comment\n"
                          "dhcp-host=52:54:00:00:00:01,print_er!\n")
        error = self.assertRaises(C.ConfigError, C.build, C.read_conf_file(path))
        self.assertTrue(str(error).startswith(
            "%s line 3: --dhcp-host=52:54:00:00:00:01,print_er!: " % path), str(error))

    def test_missing_file(self):
        path = self.mktemp()
        error = self.assertRaises(C.ConfigError, C.read_conf_file, path)
        self.assertIn("cannot read --conf-file %s" % path, str(error))
        self.assertIn("No such file", str(error))

    def test_not_utf8(self):
        path = self.write(b"dhcp-range=192.0.2.10,192.0.2.200\n# caf\xe9\n", "wb")
        error = self.assertRaises(C.ConfigError, C.read_conf_file, path)
        self.assertIn(path, str(error))


class TapOptionsTests(SynchronousTestCase):

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def assertUsageError(self, argv, *fragments):
        error = self.assertRaises(usage.UsageError, self.parse, *argv)
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return str(error)

    def test_builds_config(self):
        options = self.parse(
            "--interface", "e0", "--dhcp-range", "set:lab,192.0.2.10,192.0.2.200,1h",
            "--dhcp-host=52:54:00:00:00:01,192.0.2.50,printer",
            "--dhcp-option", "option:router,192.0.2.1", "--domain", "lab.test",
            "--dhcp-authoritative", "--lease-store", "memory",
            "--server-name", "srv1", "--control", "tcp:9067:interface=127.0.0.1")
        config = options["config"]
        self.assertIsInstance(config, C.Config)
        self.assertEqual(config.interfaces, ("e0",))
        self.assertEqual([(r.start, r.tag) for r in config.ranges],
                         [(n("192.0.2.10"), "lab")])
        self.assertEqual([h.hostname for h in config.hosts], ["printer"])
        self.assertEqual([(o.code, o.value) for o in config.options],
                         [(3, socket.inet_aton("192.0.2.1"))])
        self.assertEqual(config.domain, "lab.test")
        self.assertTrue(config.authoritative)
        self.assertEqual(config.lease_store, "memory")
        self.assertEqual(config.server_name, "srv1")
        self.assertEqual(config.control, "tcp:9067:interface=127.0.0.1")

    def test_bad_value_names_option(self):
        message = self.assertUsageError(
            ["--dhcp-range", "192.0.2.10,192.0.2.200,fast"],
            "command line", "--dhcp-range=192.0.2.10,192.0.2.200,fast", "'fast'")
        self.assertTrue(message.startswith("command line: "), message)

    def test_no_range(self):
        self.assertUsageError(["--domain", "lab.test"], "no --dhcp-range given")

    def test_unknown_flag(self):
        self.assertUsageError(["--dhcp-rnage", "x"], "dhcp-rnage")

    def test_conf_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# lab\ndhcp-range=192.0.2.10,192.0.2.200,45m\n"
                    "domain=from.file\n")
        config = self.parse("--conf-file", path, "--domain", "from.cli")["config"]
        self.assertEqual(config.ranges[0].lease_time, 2700)
        self.assertEqual(config.domain, "from.cli")  # later wins
        config = self.parse("--domain", "from.cli", "--conf-file", path)["config"]
        self.assertEqual(config.domain, "from.file")

    def test_conf_file_error(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("dhcp-range=192.0.2.10,192.0.2.200\n\nmtu=1500\n")
        self.assertUsageError(["--conf-file", path], "%s line 3" % path, "--mtu=1500",
                              "unknown option")

    def test_missing_conf_file(self):
        path = self.mktemp()
        self.assertUsageError(["--conf-file", path], "cannot read --conf-file", path)

    def assertCannotStart(self, argv, *fragments):
        """twistd's makeService hook ends the process with the message alone."""
        options = self.parse(*argv)
        error = self.assertRaises(SystemExit, tap.makeService, options,
                                  MemoryReactorClock())
        self.assertIsInstance(error.code, str)
        self.assertTrue(error.code.startswith("dhcpfo: cannot start: "), error.code)
        for fragment in fragments:
            self.assertIn(fragment, error.code)
        return error.code

    def test_lease_store_unknown_lists_installed(self):
        config = self.parse("--dhcp-range", "192.0.2.10,192.0.2.200",
                            "--lease-store", "nosuch:x=1")["config"]
        error = self.assertRaises(C.ConfigError, service.makeService, config,
                                  MemoryReactorClock(), interfaces=[LAN])
        self.assertIn("--lease-store=nosuch:x=1", str(error))
        self.assertIn("no lease store named 'nosuch'", str(error))
        assertListsInstalledStores(self, str(error))

    def test_lease_store_unknown_parameter_lists_keys(self):
        for argv, fragments in (
                (["--lease-store", "sqlite:file=x"],
                 ("--lease-store=sqlite:file=x", "no parameter file", "it takes: path")),
                (["--lease-store", "memory:x=1"], ("no parameter x", "it takes: none"))):
            config = self.parse("--dhcp-range", "192.0.2.10,192.0.2.200",
                                *argv)["config"]
            error = self.assertRaises(C.ConfigError, service.makeService, config,
                                      MemoryReactorClock(), interfaces=[LAN])
            for fragment in fragments:
                self.assertIn(fragment, str(error))

    def test_missing_interface_ends_twistd_with_the_message(self):
        self.assertCannotStart(
            ["--interface", "nosuch0", "--dhcp-range", "192.0.2.10,192.0.2.200"],
            "interface nosuch0", "No such device")

    def test_version(self):
        import dhcpfo
        out = io.StringIO()
        self.patch(tap.sys, "stdout", out)
        error = self.assertRaises(SystemExit, self.parse, "--version")
        self.assertEqual(error.code, 0)
        self.assertEqual(out.getvalue(), "dhcpfo %s\n" % dhcpfo.__version__)

    def test_lease_store_help(self):
        out = io.StringIO()
        self.patch(tap.sys, "stdout", out)
        error = self.assertRaises(SystemExit, self.parse, "--lease-store", "help")
        self.assertEqual(error.code, 0)
        self.assertIn("sqlite", out.getvalue())
        self.assertIn("memory", out.getvalue())
        self.assertIn("path=", out.getvalue())

    def test_every_setting_has_an_option(self):
        options = tap.Options()
        for name in list(C.VALUED) + list(C.FLAGS):
            self.assertTrue(hasattr(options, "opt_" + name.replace("-", "_")), name)
            self.assertTrue(getattr(options, "opt_" + name.replace("-", "_")).__doc__)


class FailoverOptionTests(BuildErrorMixin, SynchronousTestCase):
    """--failover-*: parsed into one frozen FailoverConfig, checked together."""

    SECURE = (("failover-cert", "a.pem"), ("failover-key", "a.key"),
              ("failover-ca", "ca.pem"))

    def test_primary(self):
        config = build(("server-name", "Dhcp-A"), ("failover-listen", "647"),
                       ("failover-peers", "dhcp-b, dhcp-c"), *self.SECURE)
        fc = config.failover
        self.assertEqual((fc.name, fc.peers, fc.listen, fc.role, fc.master),
                         ("dhcp-a", ("dhcp-b", "dhcp-c"), ("", 647), "primary", None))
        self.assertEqual((fc.cert, fc.key, fc.ca), ("a.pem", "a.key", "ca.pem"))
        self.assertRaises(AttributeError, setattr, fc, "priority", 9)

    def test_secondary(self):
        fc = build(("failover-name", "dhcp-b"), ("failover-peers", "dhcp-a,dhcp-c"),
                   ("failover-master", "192.0.2.1,647,dhcp-a"),
                   ("failover-peer", "192.0.2.3,647,dhcp-c"),
                   ("failover-priority", "2"), ("failover-mclt", "30m"),
                   ("failover-reserve", "20%"), ("failover-heartbeat", "0.5"),
                   ("failover-dead-after", "2"),
                   ("failover-partner-down-after", "600"),
                   ("failover-insecure", None)).failover
        self.assertEqual(fc.role, "secondary")
        self.assertEqual(fc.master, ("192.0.2.1", 647, "dhcp-a"))
        self.assertEqual(fc.peer_addresses, (("192.0.2.3", 647, "dhcp-c"),))
        self.assertEqual((fc.priority, fc.mclt, fc.reserve, fc.heartbeat,
                          fc.dead_after, fc.partner_down_after, fc.insecure),
                         (2, 1800.0, 0.2, 0.5, 2.0, 600.0, True))

    def test_master_name_from_the_only_peer(self):
        fc = build(("failover-name", "b"), ("failover-peers", "a"),
                   ("failover-master", "192.0.2.1,647"),
                   ("failover-insecure", None)).failover
        self.assertEqual(fc.master, ("192.0.2.1", 647, "a"))

    def test_without_failover(self):
        self.assertIsNone(build().failover)

    def test_errors(self):
        insecure = ("failover-insecure", None)
        for pairs, fragments in [
            ([("failover-peers", "b"), insecure],
             ("--failover-listen PORT (primary)",)),
            ([("failover-listen", "647"), insecure], ("--failover-peers is missing",)),
            ([("failover-name", "a"), ("failover-peers", "a,b"),
              ("failover-listen", "647"), insecure], ("own name 'a'",)),
            ([("failover-name", "c"), ("failover-peers", "a,b"),
              ("failover-master", "192.0.2.1,647"), insecure],
             ("add the peer's name", "several --failover-peers")),
            ([("failover-name", "c"), ("failover-peers", "a"),
              ("failover-master", "192.0.2.1,647,z"), insecure],
             ("names 'z', which is not in --failover-peers",)),
            ([("failover-name", "a"), ("failover-peers", "b"),
              ("failover-listen", "647")],
             ("mutual TLS needs --failover-cert, --failover-key, --failover-ca",
              "dhcpfo-ctl make-certs DIR a b", "--failover-insecure")),
            ([("failover-name", "a"), ("failover-peers", "b"),
              ("failover-listen", "647"), ("failover-heartbeat", "3"), insecure],
             ("--failover-dead-after (3s) must exceed --failover-heartbeat (3s)",)),
        ]:
            self.assertConfigError(pairs, *fragments)

    def test_value_errors_name_the_option(self):
        for pair, fragment in [
                (("failover-listen", "x"), "'x' is not a port number"),
                (("failover-listen", "70000"), "outside 1-65535"),
                (("failover-master", "192.0.2.1"), "expected IP,PORT[,NAME]"),
                (("failover-master", "gw,647"), "'gw' is not an IP address"),
                (("failover-peers", "b_c"), "not a valid server name"),
                (("failover-priority", "high"), "not a whole number"),
                (("failover-reserve", "60"), "outside 0-50%"),
                (("failover-heartbeat", "0.01"), "at least 0.1 seconds"),
                (("failover-mclt", "1m"), "below the minimum"),
                (("failover-insecure", "yes"), "takes no value"),
                (("failover-name", None), "needs a value")]:
            message = self.assertConfigError([pair], fragment)
            self.assertIn("--" + pair[0], message)


class ProcessOptionTests(BuildErrorMixin, SynchronousTestCase):
    """--user, --group, --control-socket, --control-group (docs/security.md)."""

    def test_defaults_keep_the_user_and_an_abstract_socket(self):
        config = build()
        self.assertEqual((config.user, config.group, config.control_socket,
                          config.control_group),
                         (None, None, "@dhcpfo-control", None))

    def test_names(self):
        config = build(("user", "nobody"), ("group", "nogroup"),
                       ("control-socket", "/run/dhcpfo/control.sock"),
                       ("control-group", "nogroup"))
        self.assertEqual((config.user, config.group, config.control_socket,
                          config.control_group),
                         ("nobody", "nogroup", "/run/dhcpfo/control.sock", "nogroup"))

    def test_unknown_names_are_refused_when_parsed(self):
        self.assertConfigError([("user", "no-such-user-dhcpfo")],
                               "--user=no-such-user-dhcpfo",
                               "no user 'no-such-user-dhcpfo'")
        self.assertConfigError([("control-group", "no-such-group-dhcpfo")],
                               "no group 'no-such-group-dhcpfo'")
        self.assertConfigError([("control-socket", "@")], "@NAME")

    def test_failover_listener_is_bound_before_the_privilege_drop(self):
        """Port 647 (below 1024) is bound in privilegedStartService, so
        --user works with the default; peers are served once attached."""
        config = build(("user", "nobody"), ("failover-listen", "647"),
                       ("failover-insecure", None), ("failover-peers", "b"),
                       ("lease-store", "memory"))
        reactor = MemoryReactorClock()
        service.makeService(config, reactor, interfaces=[LAN])  # not refused
        node = service.make_failover_node(config, reactor)
        node.privilegedStartService()
        self.assertEqual([port for port, *_ in reactor.tcpServers], [647])
        factory = reactor.tcpServers[0][1]
        early = factory.buildProtocol(None)
        transport = StringTransport()
        early.makeConnection(transport)
        self.assertTrue(transport.disconnecting, "served before the leases loaded")

    def test_store_files(self):
        self.assertEqual(service.store_files(build(("lease-store",
                                                    "sqlite:path=/var/lib/x.db"))),
                         ["/var/lib/x.db"])
        self.assertEqual(service.store_files(build(("lease-store", "memory"))), [])


class CreatePrivateTests(SynchronousTestCase):
    def test_created_0600_and_an_existing_file_is_kept(self):
        import os
        from dhcpfo.config.process import create_private
        path = self.mktemp()
        old = os.umask(0)   # 0600 whatever the umask
        try:
            create_private(path)
        finally:
            os.umask(old)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(path, "w") as f:
            f.write("kept")
        create_private(path)
        with open(path) as f:
            self.assertEqual(f.read(), "kept")
