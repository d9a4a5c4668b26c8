"""dnsmasq option names and value encoding, dhcpfo.config.dhcp_options."""

import socket

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests import hypothesis_profile  # noqa: F401  (registers the profile)

from dhcpfo.config import dhcp_options as O
from dhcpfo.config.errors import ConfigError

# ``dnsmasq --help dhcp`` (dnsmasq 2.89): the names users already write.
DNSMASQ = {
    "netmask": 1, "time-offset": 2, "router": 3, "dns-server": 6,
    "log-server": 7, "lpr-server": 9, "boot-file-size": 13, "domain-name": 15,
    "swap-server": 16, "root-path": 17, "extension-path": 18,
    "ip-forward-enable": 19, "non-local-source-routing": 20,
    "policy-filter": 21, "max-datagram-reassembly": 22, "default-ttl": 23,
    "mtu": 26, "all-subnets-local": 27, "router-discovery": 31,
    "router-solicitation": 32, "static-route": 33, "trailer-encapsulation": 34,
    "arp-timeout": 35, "ethernet-encap": 36, "tcp-ttl": 37, "tcp-keepalive": 38,
    "nis-domain": 40, "nis-server": 41, "ntp-server": 42, "netbios-ns": 44,
    "netbios-dd": 45, "netbios-nodetype": 46, "netbios-scope": 47,
    "x-windows-fs": 48, "x-windows-dm": 49, "T1": 58, "T2": 59,
    "vendor-class": 60, "nis+-domain": 64, "nis+-server": 65, "tftp-server": 66,
    "bootfile-name": 67, "mobile-ip-home": 68, "smtp-server": 69,
    "pop3-server": 70, "nntp-server": 71, "irc-server": 74, "user-class": 77,
    "rapid-commit": 80, "client-arch": 93, "client-interface-id": 94,
    "client-machine-id": 97, "posix-timezone": 100, "tzdb-timezone": 101,
    "ipv6-only": 108, "domain-search": 119, "sip-server": 120,
    "classless-static-route": 121, "vendor-id-encap": 125,
    "tftp-server-address": 150, "server-ip-address": 255,
}
# In dnsmasq's table but internal (not in --help): same codes.
DNSMASQ_INTERNAL = {"hostname": 12, "broadcast": 28, "vendor-encap": 43,
                    "message": 56}


def ip(text):
    return socket.inet_aton(text)


class LookupTests(SynchronousTestCase):

    def test_names_match_dnsmasq(self):
        known = dict(DNSMASQ, **DNSMASQ_INTERNAL)
        for name, (code, _) in O.OPTIONS.items():
            self.assertIn(name, known, "%s is not a dnsmasq name" % name)
            self.assertEqual(code, known[name], name)
            self.assertEqual(O.lookup("option:" + name), code)

    def test_names_and_kinds_are_inverse(self):
        for name, (code, kind) in O.OPTIONS.items():
            self.assertEqual(O.NAMES[code], name)
            self.assertEqual(O.KINDS[code], kind)
        self.assertEqual(len(O.NAMES), len(O.OPTIONS))

    def test_common_names(self):
        self.assertEqual(O.lookup("option:router"), 3)
        self.assertEqual(O.lookup("option:dns-server"), 6)
        self.assertEqual(O.lookup("option:domain-search"), 119)
        self.assertEqual(O.lookup("option:classless-static-route"), 121)
        self.assertEqual(O.lookup("option:T1"), 58)

    def test_numbers(self):
        self.assertEqual(O.lookup("3"), 3)
        self.assertEqual(O.lookup("1"), 1)
        self.assertEqual(O.lookup("254"), 254)
        self.assertEqual(O.lookup("250"), 250)

    def test_number_out_of_range(self):
        for spec in ("0", "255", "256", "-1"):
            error = self.assertRaises(ConfigError, O.lookup, spec)
            self.assertIn("outside 1-254", str(error))

    def test_unknown_name(self):
        error = self.assertRaises(ConfigError, O.lookup, "option:routers")
        self.assertIn("'routers'", str(error))
        self.assertIn("router", str(error))  # lists the known names
        self.assertIn("or give the number", str(error))

    def test_neither_name_nor_number(self):
        error = self.assertRaises(ConfigError, O.lookup, "router")
        self.assertIn("option:NAME", str(error))
        self.assertIn("'router'", str(error))

    def test_reserved(self):
        for code in (0, 50, 51, 52, 53, 54, 55, 57, 61, 81, 82, 255):
            self.assertIn(code, O.RESERVED)
        for code in (1, 3, 6, 15, 119, 121):
            self.assertNotIn(code, O.RESERVED)

    def test_option_value_error_is_value_error(self):
        self.assertTrue(issubclass(ConfigError, ValueError))


class EncodeKnownTests(SynchronousTestCase):

    def assertBad(self, code, values, fragment):
        error = self.assertRaises(ConfigError, O.encode_value, code, values)
        self.assertIn(fragment, str(error))

    def test_ip(self):
        self.assertEqual(O.encode_value(1, ["255.255.255.0"]), b"\xff\xff\xff\x00")
        self.assertEqual(O.encode_value(28, [" 192.0.2.255 "]), ip("192.0.2.255"))
        self.assertBad(1, ["255.255.255.0", "255.0.0.0"], "exactly one IPv4")
        self.assertBad(1, ["255.255.255"], "'255.255.255' is not an IPv4 address")

    def test_ips(self):
        self.assertEqual(O.encode_value(3, ["192.0.2.1"]), ip("192.0.2.1"))
        self.assertEqual(O.encode_value(6, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
                         ip("192.0.2.1") + ip("192.0.2.2") + ip("192.0.2.3"))
        self.assertBad(6, [], "one or more IPv4")
        self.assertBad(6, [""], "one or more IPv4")
        self.assertBad(6, ["192.0.2.1", "dns.example"], "'dns.example'")

    def test_str(self):
        self.assertEqual(O.encode_value(15, ["lab.test"]), b"lab.test")
        self.assertEqual(O.encode_value(56, ["hello", " world"]), b"hello, world")
        self.assertEqual(O.encode_value(67, ['"pxelinux.0"']), b"pxelinux.0")
        self.assertEqual(O.encode_value(15, ["caf\u00e9"]), "caf\u00e9".encode())
        self.assertEqual(O.encode_value(15, ['"']), b'"')

    def test_integers(self):
        self.assertEqual(O.encode_value(23, ["64"]), b"\x40")
        self.assertEqual(O.encode_value(23, ["255"]), b"\xff")
        self.assertEqual(O.encode_value(26, ["1500"]), b"\x05\xdc")
        self.assertEqual(O.encode_value(26, ["0x5dc"]), b"\x05\xdc")
        self.assertEqual(O.encode_value(58, ["1800"]), b"\x00\x00\x07\x08")
        self.assertEqual(O.encode_value(2, ["4294967295"]), b"\xff\xff\xff\xff")

    def test_integer_errors(self):
        self.assertBad(23, ["256"], "256 does not fit in 1 byte")
        self.assertBad(26, ["65536"], "does not fit in 2 byte")
        self.assertBad(58, ["4294967296"], "does not fit in 4 byte")
        self.assertBad(23, ["-1"], "does not fit")
        self.assertBad(26, ["mtu"], "'mtu' is not a number")
        self.assertBad(26, ["1500", "9000"], "exactly one number")

    def test_bool(self):
        self.assertEqual(O.encode_value(19, ["1"]), b"\x01")
        self.assertEqual(O.encode_value(19, ["0"]), b"\x00")
        for bad in (["2"], ["yes"], ["1", "0"]):
            self.assertBad(19, bad, "0 or 1")

    def test_domain_search(self):
        """RFC 3397 without compression: length-prefixed labels, root byte."""
        self.assertEqual(O.encode_value(119, ["lab.test", "example.com."]),
                         b"\x03lab\x04test\x00\x07example\x03com\x00")
        self.assertEqual(O.encode_value(119, ["b\u00fccher.example"]),
                         b"\x0dxn--bcher-kva\x07example\x00")
        self.assertBad(119, ["a..b"], "'a..b' is not a valid domain name")
        self.assertBad(119, [""], "not a valid domain name")

    def test_domain_search_label_too_long(self):
        """A 64-byte label is a configuration error, not a UnicodeError."""
        name = "a" * 64 + ".test"
        self.assertBad(119, [name], repr(name))

    def test_classless_routes(self):
        """The RFC 3442 examples: significant octets only."""
        self.assertEqual(O.encode_value(121, ["0.0.0.0/0", "10.0.0.1"]),
                         b"\x00" + ip("10.0.0.1"))
        self.assertEqual(O.encode_value(121, ["10.0.0.0/8", "10.0.0.1"]),
                         b"\x08\x0a" + ip("10.0.0.1"))
        self.assertEqual(
            O.encode_value(121, ["10.17.0.0/16", "10.0.0.1",
                                 "10.229.0.128/25", "10.0.0.2",
                                 "10.27.129.0/24", "10.0.0.3"]),
            b"\x10\x0a\x11" + ip("10.0.0.1")
            + b"\x19\x0a\xe5\x00\x80" + ip("10.0.0.2")
            + b"\x18\x0a\x1b\x81" + ip("10.0.0.3"))
        self.assertEqual(O.encode_value(121, ["192.0.2.7/32", "192.0.2.1"]),
                         b"\x20" + ip("192.0.2.7") + ip("192.0.2.1"))

    def test_classless_route_errors(self):
        self.assertBad(121, ["10.0.0.0/8"], "come in pairs")
        self.assertBad(121, ["10.0.0.1/8", "10.0.0.1"], "'10.0.0.1/8' is not a network")
        self.assertBad(121, ["10.0.0.0/8", "gateway"], "'gateway' is not an IPv4")

    def test_hex(self):
        self.assertEqual(O.encode_value(43, ["01:02:0a"]), b"\x01\x02\x0a")
        self.assertEqual(O.encode_value(125, ["0:ff:A"]), b"\x00\xff\x0a")
        self.assertEqual(O.encode_value(43, ["ab"]), b"\xab")
        self.assertBad(43, ["01:zz"], "hex bytes like 01:02:0a")
        self.assertBad(43, ["0102"], "'0102'")
        self.assertBad(43, ["01", "02"], "'01,02'")

    @settings(max_examples=200)
    @given(st.sampled_from(sorted(O.KINDS)), st.lists(st.text(max_size=20), max_size=4))
    def test_only_option_value_errors(self, code, values):
        """Whatever a user types, the answer is bytes or OptionValueError."""
        try:
            encoded = O.encode_value(code, values)
        except ConfigError as e:
            self.assertTrue(str(e))
        else:
            self.assertIsInstance(encoded, bytes)


class GuessTests(SynchronousTestCase):
    """Numbered options dhcpfo does not know are typed the way dnsmasq does."""

    def test_addresses(self):
        self.assertEqual(O.encode_value(250, ["192.0.2.1"]), ip("192.0.2.1"))
        self.assertEqual(O.encode_value(250, ["192.0.2.1", "192.0.2.2"]),
                         ip("192.0.2.1") + ip("192.0.2.2"))

    def test_hex(self):
        self.assertEqual(O.encode_value(224, ["01:02:0a:ff"]), b"\x01\x02\x0a\xff")

    def test_integers_take_the_smallest_size(self):
        self.assertEqual(O.encode_value(250, ["0"]), b"\x00")
        self.assertEqual(O.encode_value(250, ["255"]), b"\xff")
        self.assertEqual(O.encode_value(250, ["256"]), b"\x01\x00")
        self.assertEqual(O.encode_value(250, ["65535"]), b"\xff\xff")
        self.assertEqual(O.encode_value(250, ["65536"]), b"\x00\x01\x00\x00")

    def test_integer_too_big(self):
        self.assertRaises(ConfigError, O.encode_value, 250, ["4294967296"])

    def test_integer_with_leading_zero(self):
        """Digits are decimal (``^\\d+$``): 010 is ten, as dnsmasq's atoi reads it."""
        self.assertEqual(O.encode_value(250, ["010"]), b"\x0a")

    def test_strings(self):
        self.assertEqual(O.encode_value(250, ["hello"]), b"hello")
        self.assertEqual(O.encode_value(250, ["1", "2"]), b"1,2")
        self.assertEqual(O.encode_value(250, ["192.0.2.1", "x"]), b"192.0.2.1,x")
        self.assertEqual(O.encode_value(250, ['"quoted text"']), b"quoted text")

    @settings(max_examples=200)
    @given(st.from_regex(r"\A[0-9]{1,11}\Z"))
    def test_guessed_integers(self, digits):
        """Any run of decimal digits: the smallest of 1, 2, 4 bytes, or too big."""
        value = int(digits, 10)
        if value >= 1 << 32:
            self.assertRaises(ConfigError, O.encode_value, 250, [digits])
        else:
            size = 1 if value < 256 else 2 if value < 65536 else 4
            self.assertEqual(O.encode_value(250, [digits]), value.to_bytes(size, "big"))

    @settings(max_examples=200)
    @given(st.lists(st.one_of(st.from_regex(r"\A[0-9]{1,11}\Z"),
                              st.text(alphabet="0123456789abcdef:.x, ", max_size=12)),
                    min_size=1, max_size=4))
    def test_guessing_never_raises_other_errors(self, values):
        try:
            encoded = O.encode_value(250, values)
        except ConfigError as e:
            self.assertTrue(str(e))
        else:
            self.assertIsInstance(encoded, bytes)
