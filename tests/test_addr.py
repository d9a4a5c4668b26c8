"""dhcpfo.addr: the one place addresses and "infinite" are converted."""

from twisted.trial.unittest import SynchronousTestCase

from dhcpfo import addr


class AddressTests(SynchronousTestCase):
    def test_round_trips(self):
        for text in ("0.0.0.0", "192.0.2.1", "198.51.100.255", "255.255.255.255"):
            n = addr.int_from_str(text)
            self.assertEqual(addr.ip_str(n), text)
            self.assertEqual(addr.ip_int(addr.ip_bytes(n)), n)
            self.assertEqual(addr.str_from_bytes(addr.bytes_from_str(text)), text)
        self.assertEqual(addr.int_from_str("192.0.2.1"), 0xC0000201)

    def test_only_the_canonical_dotted_quad(self):
        # inet_aton alone takes all of these, some with another meaning.
        for text in ("192.0.2.010", "0x7f.0.0.1", "1.2", "1", "192.0.2.1 ",
                     "192.0.2.256", "", "a.b.c.d"):
            with self.assertRaises((ValueError, OSError), msg=text):
                addr.int_from_str(text)


class InfiniteTests(SynchronousTestCase):
    def test_expiry_after(self):
        self.assertEqual(addr.expiry_after(1000.0, 60), 1060.0)
        self.assertEqual(addr.expiry_after(1000.0, addr.INFINITE), addr.NEVER)
        self.assertTrue(addr.is_infinite(addr.expiry_after(1e9, addr.INFINITE)))
        self.assertFalse(addr.is_infinite(addr.expiry_after(1e9, addr.INFINITE - 1)))
