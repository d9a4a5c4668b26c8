"""The DHCPv4 wire codec, dhcpfo.dhcp.packet: pure bytes in, bytes out."""

import struct

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests import hypothesis_profile  # noqa: F401  (registers the profile)

from dhcpfo.addr import bytes_from_str
from dhcpfo.dhcp import options as O
from dhcpfo.dhcp import packet as P

Z = P.ZERO_IP
MAC = bytes.fromhex("525400abcdef")
# Options whose value the codec checks; random tests give them valid values.
CHECKED = {P.MESSAGE_TYPE, P.REQUESTED_ADDRESS, P.SERVER_ID, P.LEASE_TIME,
           P.MAX_MESSAGE_SIZE, P.OVERLOAD, P.CLIENT_ID}
SLOTS = ("op", "htype", "hlen", "hops", "xid", "secs", "flags", "ciaddr",
         "yiaddr", "siaddr", "giaddr", "chaddr", "sname", "file")


def ip(text):
    return bytes_from_str(text)


def raw(options=b"", op=P.BOOTREQUEST, hlen=6, magic=P.MAGIC, sname=b"",
        file=b"", chaddr=MAC, pad_to=0):
    """A datagram built by hand, so malformations the encoder refuses are possible."""
    head = P.HEADER.pack(op, 1, hlen, 0, 0x1234, 0, 0, Z, Z, Z, Z,
                         chaddr, sname, file)
    return (head + magic + options).ljust(pad_to, b"\x00")


def opt(code, value):
    return bytes((code, len(value))) + value


def discover(**options):
    opts = {P.MESSAGE_TYPE: bytes((P.DISCOVER,))}
    opts.update({int(k[1:]): v for k, v in options.items()})
    return P.Packet(xid=0xCAFE, chaddr=MAC, options=opts)


def assertSamePacket(test, a, b):
    for name in SLOTS:
        test.assertEqual(getattr(a, name), getattr(b, name), name)
    test.assertEqual(list(a.options.items()), list(b.options.items()))


# -- strategies --------------------------------------------------------------

def option_values(code):
    if code == P.MESSAGE_TYPE:
        return st.integers(1, 8).map(lambda n: bytes((n,)))
    if code in (P.REQUESTED_ADDRESS, P.SERVER_ID, P.LEASE_TIME):
        return st.binary(min_size=4, max_size=4)
    if code == P.MAX_MESSAGE_SIZE:
        return st.binary(min_size=2, max_size=2)
    if code == P.CLIENT_ID:
        return st.binary(min_size=2, max_size=64)
    # Long enough to need RFC 3396 splitting now and then.
    return st.one_of(st.binary(max_size=40), st.binary(min_size=250, max_size=700))


option_codes = st.integers(1, 254).filter(lambda c: c != P.OVERLOAD)


@st.composite
def option_dicts(draw, max_size=10):
    codes = draw(st.lists(option_codes, unique=True, max_size=max_size))
    return {code: draw(option_values(code)) for code in codes}


packets = st.builds(
    P.Packet,
    op=st.sampled_from([P.BOOTREQUEST, P.BOOTREPLY]),
    htype=st.integers(0, 255), hlen=st.integers(0, 16), hops=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1), secs=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFFFF),
    ciaddr=st.binary(min_size=4, max_size=4),
    yiaddr=st.binary(min_size=4, max_size=4),
    siaddr=st.binary(min_size=4, max_size=4),
    giaddr=st.binary(min_size=4, max_size=4),
    chaddr=st.binary(min_size=16, max_size=16),
    sname=st.binary(min_size=64, max_size=64),
    file=st.binary(min_size=128, max_size=128),
    options=option_dicts(),
)

# Plain options (no codec checks) spread over the options field, file and sname.
plain_codes = st.integers(1, 254).filter(lambda c: c not in CHECKED)


@st.composite
def overloaded(draw):
    """``(datagram, expected options)`` for a message using option 52."""
    items = draw(st.lists(
        st.tuples(plain_codes, st.binary(max_size=30),
                  st.sampled_from(["options", "file", "sname"])),
        unique_by=lambda t: t[0], max_size=10))
    regions = {"options": [], "file": [], "sname": []}
    room = {"file": 128 - 1, "sname": 64 - 1}  # keep a byte for END
    for code, value, where in items:
        if where != "options" and room[where] >= 2 + len(value):
            room[where] -= 2 + len(value)
        else:
            where = "options"
        regions[where].append((code, value))
    overload = (1 if regions["file"] else 0) | (2 if regions["sname"] else 0)
    head = [(P.OVERLOAD, bytes((overload,)))] if overload else []
    data = raw(P.encode_options(head + regions["options"]) + b"\xff",
               file=P.encode_options(regions["file"]) + b"\xff",
               sname=P.encode_options(regions["sname"]) + b"\xff")
    # RFC 3396: options field first, then file, then sname.
    expected = dict(head + regions["options"] + regions["file"] + regions["sname"])
    return data, expected


valid_datagrams = st.one_of(packets.map(lambda p: p.encode()),
                            overloaded().map(lambda pair: pair[0]))

mutations = st.lists(st.one_of(
    st.tuples(st.just("set"), st.integers(0, 2000), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 2000)),
    st.tuples(st.just("delete"), st.integers(0, 2000), st.integers(1, 8)),
    st.tuples(st.just("insert"), st.integers(0, 2000),
              st.binary(min_size=1, max_size=8)),
), min_size=1, max_size=8)


def mutate(data, steps):
    data = bytearray(data)
    for step in steps:
        where = step[1] % (len(data) + 1)
        if step[0] == "set" and where < len(data):
            data[where] = step[2]
        elif step[0] == "truncate":
            del data[where:]
        elif step[0] == "delete":
            del data[where:where + step[2]]
        elif step[0] == "insert":
            data[where:where] = step[2]
    return bytes(data)


def check_parses_or_codec_error(test, data):
    """The one promise made about hostile bytes; returns the packet or None."""
    try:
        packet = P.parse(data)
    except P.CodecError:
        return None
    test.assertIn(packet.op, (P.BOOTREQUEST, P.BOOTREPLY))
    test.assertLessEqual(packet.hlen, 16)
    for code, length in P._FIXED_LENGTH.items():
        if code in packet.options:
            test.assertEqual(len(packet.options[code]), length)
    if packet.message_type is not None:
        test.assertIn(packet.message_type, P.MESSAGE_NAMES)
    packet.encode()  # whatever parses can be echoed back
    return packet


# -- tests --------------------------------------------------------------------

class RoundTripTests(SynchronousTestCase):

    def test_defaults(self):
        data = P.Packet().encode()
        self.assertEqual(len(data), 300)
        self.assertEqual(data[236:240], P.MAGIC)
        self.assertEqual(data[240], P.END)
        self.assertEqual(data[241:], b"\x00" * 59)
        assertSamePacket(self, P.parse(data), P.Packet(
            chaddr=b"\x00" * 16, sname=b"\x00" * 64, file=b"\x00" * 128))

    def test_every_header_field(self):
        packet = P.Packet(
            op=P.BOOTREPLY, htype=6, hlen=16, hops=3, xid=0xDEADBEEF, secs=65535,
            flags=P.BROADCAST_FLAG, ciaddr=ip("192.0.2.1"), yiaddr=ip("192.0.2.2"),
            siaddr=ip("192.0.2.3"), giaddr=ip("198.51.100.1"),
            chaddr=bytes(range(16)), sname=b"srv".ljust(64, b"\x00"),
            file=b"boot/pxelinux.0".ljust(128, b"\x00"),
            options={P.MESSAGE_TYPE: b"\x05"})
        data = packet.encode()
        self.assertEqual(data[:4], b"\x02\x06\x10\x03")
        self.assertEqual(data[4:8], b"\xde\xad\xbe\xef")
        self.assertEqual(data[10:12], b"\x80\x00")
        assertSamePacket(self, P.parse(data), packet)

    def test_short_fields_are_zero_padded(self):
        parsed = P.parse(P.Packet(chaddr=MAC, sname=b"s", file=b"f").encode())
        self.assertEqual(parsed.chaddr, MAC + b"\x00" * 10)
        self.assertEqual(parsed.hwaddr, MAC)
        self.assertEqual(parsed.sname, b"s" + b"\x00" * 63)
        self.assertEqual(parsed.file, b"f" + b"\x00" * 127)

    def test_minimum_length(self):
        packet = discover()
        self.assertEqual(len(packet.encode(minimum=0)), 240 + 3 + 1)
        self.assertEqual(len(packet.encode(minimum=576)), 576)
        big = discover(o250=b"x" * 200)
        self.assertEqual(len(big.encode()), 240 + 3 + 202 + 1)

    def test_options_keep_wire_order(self):
        packet = discover(o12=b"host", o55=bytes((1, 3, 6)), o3=ip("192.0.2.1"))
        data = packet.encode(minimum=0)
        self.assertEqual(data[240:], opt(53, b"\x01") + opt(12, b"host")
                         + opt(55, b"\x01\x03\x06") + opt(3, ip("192.0.2.1"))
                         + b"\xff")
        self.assertEqual(list(P.parse(data).options), [53, 12, 55, 3])

    def test_protocol_options(self):
        """Each option the server itself reads survives a round trip."""
        packet = discover(
            o50=ip("192.0.2.50"), o51=struct.pack("!I", 3600),
            o54=ip("192.0.2.1"), o55=bytes((1, 3, 6, 15, 119)),
            o57=struct.pack("!H", 1500), o61=b"\x01" + MAC,
            o81=b"\x01\x00\x00host", o82=opt(1, b"eth0") + opt(2, b"relay"),
            o12=b"host", o60=b"MSFT 5.0")
        parsed = P.parse(packet.encode())
        self.assertEqual(parsed.options, packet.options)
        self.assertEqual(parsed.message_type, P.DISCOVER)

    def test_every_configured_kind(self):
        """Values encoded by dhcpfo.dhcp.options travel unchanged."""
        values = {
            1: O.encode_value(1, ["255.255.255.0"]),                 # ip
            3: O.encode_value(3, ["192.0.2.1", "192.0.2.2"]),        # ips
            15: O.encode_value(15, ["lab.test"]),                     # str
            23: O.encode_value(23, ["64"]),                           # u8
            26: O.encode_value(26, ["1500"]),                         # u16
            2: O.encode_value(2, ["3600"]),                           # u32
            19: O.encode_value(19, ["1"]),                            # bool
            119: O.encode_value(119, ["lab.test", "example.com"]),    # names
            121: O.encode_value(121, ["10.0.0.0/8", "192.0.2.1"]),    # routes
            43: O.encode_value(43, ["01:02:0a"]),                     # hex
            250: O.encode_value(250, ["70000"]),                      # guessed int
        }
        packet = discover(**{"o%d" % k: v for k, v in values.items()})
        parsed = P.parse(packet.encode())
        for code, value in values.items():
            self.assertEqual(parsed.options[code], value, code)

    def test_empty_option_value(self):
        parsed = P.parse(discover(o80=b"").encode())
        self.assertEqual(parsed.options[80], b"")

    def test_unknown_options_preserved(self):
        packet = discover(o224=b"\x00\xffsecret", o254=b"", o100=b"EST5EDT",
                          o199=bytes(range(256)))
        parsed = P.parse(packet.encode())
        self.assertEqual(list(parsed.options.items()), list(packet.options.items()))

    def test_properties_and_repr(self):
        packet = P.parse(discover().encode())
        self.assertEqual(packet.message_type, P.DISCOVER)
        self.assertEqual(packet.hwaddr, MAC)
        self.assertIn("DHCPDISCOVER", repr(packet))
        self.assertIn("52:54:00:ab:cd:ef", repr(packet))
        self.assertIsNone(P.Packet().message_type)
        self.assertIn("BOOTP", repr(P.Packet()))

    @settings(max_examples=200)
    @given(packets)
    def test_arbitrary_packets_round_trip(self, packet):
        data = packet.encode()
        parsed = P.parse(data)
        assertSamePacket(self, parsed, packet)
        self.assertEqual(parsed.encode(), data)


class LongOptionTests(SynchronousTestCase):
    """RFC 3396: values over 255 bytes travel as consecutive instances."""

    def test_split_on_encode(self):
        value = bytes(range(256)) * 2 + b"tail"  # 516 bytes
        encoded = P.encode_options([(119, value)])
        self.assertEqual(encoded, opt(119, value[:255]) + opt(119, value[255:510])
                         + opt(119, value[510:]))

    def test_boundaries(self):
        self.assertEqual(P.encode_options([(77, b"a" * 255)]), opt(77, b"a" * 255))
        self.assertEqual(P.encode_options([(77, b"a" * 256)]),
                         opt(77, b"a" * 255) + opt(77, b"a"))
        self.assertEqual(P.encode_options([(77, b"a" * 510)]),
                         opt(77, b"a" * 255) * 2)

    def test_rejoined_on_parse(self):
        value = bytes(range(256)) * 3
        parsed = P.parse(discover(o121=value, o12=b"after").encode())
        self.assertEqual(parsed.options[121], value)
        self.assertEqual(list(parsed.options), [53, 121, 12])

    def test_non_consecutive_instances_concatenate(self):
        data = raw(opt(53, b"\x01") + opt(12, b"ab") + opt(3, ip("192.0.2.1"))
                   + opt(12, b"cd") + b"\xff")
        parsed = P.parse(data)
        self.assertEqual(parsed.options[12], b"abcd")
        self.assertEqual(list(parsed.options), [53, 12, 3])

    def test_repeated_message_type_is_malformed(self):
        data = raw(opt(53, b"\x01") + opt(53, b"\x03") + b"\xff")
        self.assertRaises(P.CodecError, P.parse, data)


class OverloadTests(SynchronousTestCase):
    """Option 52 moves options into the file (1), sname (2) or both (3) fields."""

    def test_file(self):
        data = raw(opt(53, b"\x01") + opt(52, b"\x01") + b"\xff",
                   file=opt(12, b"fromfile") + b"\xff",
                   sname=opt(15, b"ignored") + b"\xff")
        parsed = P.parse(data)
        self.assertEqual(parsed.options[12], b"fromfile")
        self.assertNotIn(15, parsed.options)

    def test_sname(self):
        data = raw(opt(53, b"\x01") + opt(52, b"\x02") + b"\xff",
                   file=opt(12, b"ignored") + b"\xff",
                   sname=opt(15, b"fromsname") + b"\xff")
        parsed = P.parse(data)
        self.assertEqual(parsed.options[15], b"fromsname")
        self.assertNotIn(12, parsed.options)

    def test_both_in_rfc3396_order(self):
        """One option spread over all three fields joins options+file+sname."""
        data = raw(opt(52, b"\x03") + opt(119, b"opt-") + opt(53, b"\x03") + b"\xff",
                   file=opt(119, b"file-") + opt(50, ip("192.0.2.9")) + b"\xff",
                   sname=b"\x00\x00" + opt(119, b"sname") + b"\xff")
        parsed = P.parse(data)
        self.assertEqual(parsed.options[119], b"opt-file-sname")
        self.assertEqual(parsed.options[50], ip("192.0.2.9"))
        self.assertEqual(parsed.message_type, P.REQUEST)
        self.assertEqual(list(parsed.options), [52, 119, 53, 50])

    def test_fields_without_overload_are_not_options(self):
        data = raw(opt(53, b"\x01") + b"\xff", file=opt(12, b"x") + b"\xff")
        parsed = P.parse(data)
        self.assertNotIn(12, parsed.options)
        self.assertEqual(parsed.file[:3], opt(12, b"x"))

    def test_file_without_end(self):
        """A full file field needs no END: its end is the field's end."""
        filler = opt(224, b"z" * 124)  # exactly 126 bytes
        data = raw(opt(52, b"\x01") + b"\xff", file=filler + b"\x00\x00")
        self.assertEqual(P.parse(data).options[224], b"z" * 124)

    def test_truncated_option_in_file(self):
        data = raw(opt(52, b"\x01") + b"\xff", file=b"\x00" * 126 + b"\x0c\x05")
        self.assertRaises(P.CodecError, P.parse, data)

    def test_truncated_option_in_sname(self):
        data = raw(opt(52, b"\x02") + b"\xff", sname=b"\x00" * 63 + b"\x0c")
        self.assertRaises(P.CodecError, P.parse, data)

    def test_bad_overload_values(self):
        for value in (b"\x00", b"\x04", b"\xff"):
            data = raw(opt(52, value) + b"\xff")
            self.assertRaises(P.CodecError, P.parse, data)

    def test_overload_inside_file_is_malformed(self):
        data = raw(opt(52, b"\x01") + b"\xff", file=opt(52, b"\x02") + b"\xff")
        self.assertRaises(P.CodecError, P.parse, data)

    @settings(max_examples=200)
    @given(overloaded())
    def test_arbitrary_overloads(self, pair):
        data, expected = pair
        parsed = P.parse(data)
        self.assertEqual(list(parsed.options.items()), list(expected.items()))


class PadEndTests(SynchronousTestCase):

    def test_pads_are_skipped(self):
        data = raw(b"\x00\x00" + opt(53, b"\x01") + b"\x00" + opt(12, b"h")
                   + b"\x00\x00\xff")
        self.assertEqual(P.parse(data).options, {53: b"\x01", 12: b"h"})

    def test_end_stops_parsing(self):
        data = raw(opt(53, b"\x01") + b"\xff" + opt(12, b"after") + b"\x0c\x50")
        self.assertEqual(P.parse(data).options, {53: b"\x01"})

    def test_missing_end(self):
        """Options that simply run to the end of the datagram are accepted."""
        data = raw(opt(53, b"\x01") + opt(12, b"last"))
        self.assertEqual(P.parse(data).options, {53: b"\x01", 12: b"last"})

    def test_trailing_pad_and_end(self):
        self.assertEqual(P.parse(raw(b"\x00")).options, {})
        self.assertEqual(P.parse(raw(b"\xff")).options, {})
        self.assertEqual(P.parse(raw(b"")).options, {})

    def test_encode_ends_with_end_then_zeros(self):
        data = discover().encode()
        self.assertEqual(data[240:244], opt(53, b"\x01") + b"\xff")
        self.assertEqual(set(data[244:]), {0})

    def test_bootp_without_magic(self):
        """No magic cookie: a BOOTP message, vendor area ignored."""
        data = raw(opt(53, b"\x09") + b"\x33", magic=b"\x00" * 4, pad_to=300)
        parsed = P.parse(data)
        self.assertEqual(parsed.options, {})
        self.assertIsNone(parsed.message_type)


class FqdnTests(SynchronousTestCase):
    """Option 81 (RFC 4702): flags, two obsolete rcodes, then the name."""

    def test_ascii(self):
        self.assertEqual(P.parse_fqdn(b"\x01\x00\x00host.example.com."),
                         (0x01, "host.example.com"))
        self.assertEqual(P.parse_fqdn(b"\x00\xff\xffhost"), (0, "host"))

    def test_canonical_wire_format(self):
        value = b"\x05\x00\x00\x04host\x07example\x03com\x00"
        self.assertEqual(P.parse_fqdn(value), (0x05, "host.example.com"))

    def test_wire_format_partial_name(self):
        """Without the root label the name is partial; it still decodes."""
        self.assertEqual(P.parse_fqdn(b"\x04\x00\x00\x04host"), (0x04, "host"))

    def test_empty_name(self):
        self.assertEqual(P.parse_fqdn(b"\x00\x00\x00"), (0, ""))
        self.assertEqual(P.parse_fqdn(b"\x04\x00\x00\x00"), (4, ""))

    def test_too_short(self):
        for value in (b"", b"\x01", b"\x01\x00"):
            self.assertRaises(P.CodecError, P.parse_fqdn, value)

    def test_label_past_end(self):
        self.assertRaises(P.CodecError, P.parse_fqdn, b"\x04\x00\x00\x05host")

    def test_label_too_long(self):
        value = b"\x04\x00\x00\x40" + b"a" * 64 + b"\x00"
        self.assertRaises(P.CodecError, P.parse_fqdn, value)

    def test_non_ascii_is_replaced_not_raised(self):
        flags, name = P.parse_fqdn(b"\x00\x00\x00h\xffst")
        self.assertEqual(flags, 0)
        self.assertEqual(name, "h\ufffdst")

    @settings(max_examples=200)
    @given(st.binary(max_size=80))
    def test_arbitrary_bytes(self, value):
        try:
            flags, name = P.parse_fqdn(value)
        except P.CodecError:
            self.assertTrue(len(value) < 3 or value[0] & 0x04)
        else:
            self.assertEqual(flags, value[0])
            self.assertIsInstance(name, str)


class MalformedTests(SynchronousTestCase):

    def assertMalformed(self, data, fragment=""):
        error = self.assertRaises(P.CodecError, P.parse, data)
        self.assertIn(fragment, str(error))
        return error

    def test_codec_error_is_a_value_error(self):
        self.assertTrue(issubclass(P.CodecError, ValueError))

    def test_short(self):
        self.assertMalformed(b"", "shorter")
        self.assertMalformed(raw()[:239], "239")
        P.parse(raw()[:240])  # exactly the minimum is fine

    def test_bad_op(self):
        for op in (0, 3, 255):
            self.assertMalformed(raw(op=op), "op %d" % op)

    def test_hlen(self):
        self.assertMalformed(raw(hlen=17), "17")
        self.assertMalformed(raw(hlen=255), "255")
        self.assertEqual(P.parse(raw(hlen=16)).hlen, 16)

    def test_truncated_option(self):
        self.assertMalformed(raw(opt(53, b"\x01") + b"\x0c\x05abc"), "option 12")

    def test_option_without_length(self):
        self.assertMalformed(raw(opt(53, b"\x01") + b"\x0c"), "no length")

    def test_fixed_lengths(self):
        for code, good in ((53, 1), (50, 4), (54, 4), (51, 4), (57, 2), (52, 1)):
            for length in (0, good - 1, good + 1, good + 3):
                if length < 0 or length == good:
                    continue
                data = raw(opt(code, b"\x01" * length) + b"\xff")
                error = self.assertMalformed(data)
                self.assertIn(str(code), str(error))

    def test_fixed_lengths_accepted(self):
        data = raw(opt(53, b"\x03") + opt(50, ip("192.0.2.5")) + opt(54, ip("192.0.2.1"))
                   + opt(51, b"\x00\x00\x0e\x10") + opt(57, b"\x05\xdc") + b"\xff")
        self.assertEqual(len(P.parse(data).options), 5)

    def test_bad_message_type(self):
        for mtype in (0, 9, 255):
            self.assertMalformed(raw(opt(53, bytes((mtype,))) + b"\xff"),
                                 "message type %d" % mtype)
        for mtype in range(1, 9):
            self.assertEqual(P.parse(raw(opt(53, bytes((mtype,))))).message_type, mtype)

    def test_client_id_too_short(self):
        self.assertMalformed(raw(opt(61, b"\x01") + b"\xff"), "61")
        self.assertMalformed(raw(opt(61, b"") + b"\xff"), "61")
        self.assertEqual(P.parse(raw(opt(61, b"\x00x"))).options[61], b"\x00x")

    def test_every_truncation(self):
        """No prefix of a rich message raises anything but CodecError."""
        data = raw(opt(53, b"\x03") + opt(52, b"\x03") + opt(61, b"\x01" + MAC)
                   + opt(81, b"\x05\x00\x00\x04host\x00") + opt(250, b"x" * 38)
                   + b"\xff", file=opt(12, b"name") + b"\xff",
                   sname=opt(50, ip("192.0.2.7")) + b"\xff")
        outcomes = set()
        for end in range(len(data) + 1):
            outcomes.add(check_parses_or_codec_error(self, data[:end]) is None)
        self.assertEqual(outcomes, {True, False})

    def test_every_byte_flip(self):
        """Each byte of a message set to 0x00, 0x01 and 0xff, one at a time."""
        data = discover(o52=b"\x03", o61=b"\x01" + MAC, o12=b"host").encode()
        outcomes = set()
        for i in range(len(data)):
            for value in (0x00, 0x01, 0xFF):
                mutated = data[:i] + bytes((value,)) + data[i + 1:]
                outcomes.add(check_parses_or_codec_error(self, mutated) is None)
        self.assertEqual(outcomes, {True, False})

    @settings(max_examples=200)
    @given(valid_datagrams, mutations)
    def test_arbitrary_mutations(self, data, steps):
        check_parses_or_codec_error(self, mutate(data, steps))

    @settings(max_examples=200)
    @given(st.binary(min_size=236, max_size=600).map(
        lambda b: b[:236] + P.MAGIC + b[236:]))
    def test_arbitrary_bytes_after_magic(self, data):
        check_parses_or_codec_error(self, data)


class JoinedTests(SynchronousTestCase):
    """``joined`` says whether RFC 3396 instances were joined: only then can
    a value pass 255 bytes (the DHCP edge checks its bounds on that)."""

    def test_single_instances(self):
        packet = P.parse(discover(o12=b"h" * 255, o61=b"\x01" * 255).encode())
        self.assertFalse(packet.joined)

    def test_joined_in_options(self):
        self.assertTrue(P.parse(discover(o61=b"\x01" + b"x" * 399).encode()).joined)

    def test_joined_across_overload(self):
        data = raw(opt(53, b"\x01") + opt(52, b"\x01") + opt(12, b"ab") + b"\xff",
                   file=opt(12, b"cd") + b"\xff")
        packet = P.parse(data)
        self.assertEqual((packet.options[12], packet.joined), (b"abcd", True))

    def test_built_packets_are_not_known_unjoined(self):
        self.assertTrue(P.Packet().joined)
