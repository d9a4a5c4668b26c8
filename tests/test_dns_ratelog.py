"""dhcpfo.dns.ratelog: one line per key per interval, the rest counted."""

from twisted.internet import task
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.dns.ratelog import RateLog


class RateLogTests(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.events = []
        self.log = RateLog(Logger(observer=self.events.append), self.clock,
                           interval=60, keys=3)

    def lines(self):
        return [formatEvent(e) for e in self.events]

    def test_one_line_per_key_per_interval_then_the_count(self):
        for i in range(10):
            self.log.emit("warn", "a", "line {i}", i=i)
        self.log.emit("warn", "b", "other")
        self.assertEqual(self.lines(), ["line 0", "other"])
        self.clock.advance(59)
        self.assertFalse(self.log.emit("warn", "a", "line {i}", i=10))
        self.clock.advance(1)
        self.assertTrue(self.log.emit("warn", "a", "line {i}", i=11))
        self.assertEqual(self.lines()[-1],
                         "line 11 (10 more like this since the last such line)")
        self.assertEqual(self.events[-1]["held"], 10)

    def test_keys_are_bounded(self):
        for key in range(10):
            self.log.emit("info", key, "k{key}", key=key)
        self.assertLessEqual(len(self.log._seen), 3)
        self.assertEqual(len(self.events), 10)

    def test_failure(self):
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("f", "broke")
            self.log.failure("f", "broke")
        self.assertEqual(len(self.events), 1)
        self.assertTrue(self.events[0]["log_failure"].check(ZeroDivisionError))
