"""The one perfdhcp report parser, on a report perfdhcp 2.2 printed here."""

from twisted.trial import unittest

from tests.lab.perfdhcp import exchange, parse_perfdhcp

REPORT = """\
Running: perfdhcp -4 -l e0 -r 200 -R 100000 -p 1 -W 1000000 198.18.0.1
Scenario: basic.
Multi-thread mode enabled.
***Rate statistics***
Rate: 99.4811 4-way exchanges/second, expected rate: 200

***Malformed Packets***
Malformed packets: 0
***Statistics for: DISCOVER-OFFER***
sent packets: 199
received packets: 198
drops: 1
drops ratio: 0.5 %
orphans: 0
rejected leases: 0
non unique addresses: 0

min delay: 0.234 ms
avg delay: 5.529 ms
max delay: 82.015 ms
std deviation: 14.209 ms
collected packets: 0

***Statistics for: REQUEST-ACK***
sent packets: 198
received packets: 190
drops: 8
drops ratio: nan %
orphans: 0
rejected leases: 0
non unique addresses: 0

min delay: 0.192 ms
avg delay: 2.148 ms
max delay: 77.954 ms
std deviation: 5.721 ms
collected packets: 0
"""


class ParsePerfdhcpTests(unittest.TestCase):
    def test_rate_and_counters(self):
        """The rate line, and each exchange's counters as ints and delays as floats."""
        report = parse_perfdhcp(REPORT)
        self.assertEqual(report["rate"], 99.4811)
        do = exchange(report, "DISCOVER-OFFER")
        self.assertEqual((do["sent"], do["received"], do["drops"]), (199, 198, 1))
        self.assertEqual(do["drops_ratio"], 0.5)
        self.assertEqual((do["avg_delay"], do["max_delay"]), (5.529, 82.015))
        ra = exchange(report, "REQUEST-ACK")
        self.assertEqual((ra["sent"], ra["received"]), (198, 190))
        self.assertEqual(ra["avg_delay"], 2.148)

    def test_only_exchanges_and_numbers(self):
        """Only the two exchanges are reported; a 'nan %' ratio is left out, not guessed."""
        report = parse_perfdhcp(REPORT)
        self.assertEqual(sorted(report["exchanges"]), ["DISCOVER-OFFER", "REQUEST-ACK"])
        self.assertNotIn("drops_ratio", exchange(report, "REQUEST-ACK"))

    def test_missing_exchange(self):
        """An empty report has no rate and no exchanges."""
        report = parse_perfdhcp("perfdhcp: error\n")
        self.assertIsNone(report["rate"])
        self.assertEqual(exchange(report, "REQUEST-ACK"), {})
