"""dhcpfo.ratelog: lines a remote party causes, a few per interval."""

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.ratelog import MAX_KINDS, RateLog


class RateLogTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.events = []
        self.log = Logger(observer=self.events.append)
        self.rate = RateLog(self.clock, interval=60.0)

    def test_one_line_per_interval_then_a_summary(self):
        for i in range(1000):
            self.rate.warn(self.log, "bad", "bad packet {n}", n=i)
        self.assertEqual([e["n"] for e in self.events], [0])
        self.assertEqual(self.rate.suppressed("bad"), 999)
        self.clock.advance(59.9)
        self.assertFalse(self.rate.warn(self.log, "bad", "bad packet {n}", n=1000))
        self.clock.advance(0.1)
        self.assertTrue(self.rate.warn(self.log, "bad", "bad packet {n}", n=1001))
        last = self.events[-1]
        self.assertEqual((len(self.events), last["n"], last["suppressed"],
                          last["log_level"]), (2, 1001, 1000, LogLevel.warn))
        self.assertIn("1000 more like this in the last 60s",
                      last["log_format"].format(**last))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_keys_are_separate(self):
        self.rate.info(self.log, "a", "a")
        self.rate.info(self.log, "b", "b")
        self.rate.info(self.log, "a", "a")
        self.assertEqual([e["log_format"] for e in self.events], ["a", "b"])

    def test_burst(self):
        rate = RateLog(self.clock, interval=10.0, burst=3)
        logged = [rate.error(self.log, "k", "x") for _ in range(5)]
        self.assertEqual(logged, [True, True, True, False, False])

    def test_failure(self):
        try:
            1 / 0
        except ZeroDivisionError:
            self.rate.failure(self.log, "bug", "handler failed")
            self.rate.failure(self.log, "bug", "handler failed")
        [event] = self.events
        self.assertEqual(event["log_failure"].type, ZeroDivisionError)

    def test_bounded_keys(self):
        for i in range(MAX_KINDS + 10):
            self.rate.info(self.log, i, "k")
        self.assertLessEqual(len(self.rate._kinds), MAX_KINDS)
