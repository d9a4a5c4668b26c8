"""Merging peers' lease records: newest wins, conflicts resolved identically."""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.failover.merge import merge
from dhcpfo.leases.lease import ACTIVE, RELEASED, Lease
from dhcpfo.leases.table import LeaseTable
from tests import hypothesis_profile  # noqa: F401

NOW = 1_800_000_000.0


def rec(ip, mac, version, owner="a", state=ACTIVE, expiry=NOW + 3600):
    return Lease(ip, bytes([0x52, 0, 0, 0, 0, mac]), b"", "", state, NOW - 10,
                 expiry, owner, version)


class MergeTests(SynchronousTestCase):
    def test_new_record_accepted(self):
        table = LeaseTable()
        accepted, conflicts = merge(table, [rec("192.0.2.10", 1, 5)], NOW)
        self.assertEqual(len(accepted), 1)
        self.assertEqual(conflicts, [])
        self.assertEqual(table.get("192.0.2.10").version, 5)

    def test_newer_wins_older_ignored(self):
        table = LeaseTable()
        table.put(rec("192.0.2.10", 1, 5))
        accepted, _ = merge(table, [rec("192.0.2.10", 1, 4, state=RELEASED)], NOW)
        self.assertEqual(accepted, [])
        self.assertEqual(table.get("192.0.2.10").state, ACTIVE)
        accepted, _ = merge(table, [rec("192.0.2.10", 1, 6, state=RELEASED)], NOW)
        self.assertEqual(table.get("192.0.2.10").state, RELEASED)

    def test_a_known_record_does_not_end_the_batch(self):
        """A record we already hold, first in a batch, must not hide the
        records after it (each is judged on its own)."""
        table = LeaseTable()
        table.put(rec("192.0.2.10", 1, 5))
        table.put(rec("192.0.2.11", 2, 9))
        batch = [rec("192.0.2.10", 1, 5),            # the same record again
                 rec("192.0.2.11", 2, 3),            # older than ours
                 rec("192.0.2.12", 3, 6)]            # new
        accepted, conflicts = merge(table, batch, NOW)
        self.assertEqual([l.ip for l in accepted], ["192.0.2.12"])
        self.assertEqual(conflicts, [])
        self.assertEqual(table.get("192.0.2.12").version, 6)
        self.assertEqual(table.get("192.0.2.11").version, 9)
        # Two new records: the first does not end the batch either.
        accepted, _ = merge(table, [rec("192.0.2.13", 4, 1), rec("192.0.2.14", 5, 1)],
                            NOW)
        self.assertEqual([l.ip for l in accepted], ["192.0.2.13", "192.0.2.14"])

    def test_binding_conflict_recorded_newest_wins(self):
        table = LeaseTable()
        table.put(rec("192.0.2.10", 1, 5, owner="a"))
        accepted, conflicts = merge(table, [rec("192.0.2.10", 2, 7, owner="b")], NOW)
        [c] = conflicts
        self.assertEqual((c.winner.hwaddr[-1], c.loser.hwaddr[-1]), (2, 1))
        self.assertEqual(table.get("192.0.2.10").hwaddr[-1], 2)

    def test_expired_is_no_conflict(self):
        table = LeaseTable()
        table.put(rec("192.0.2.10", 1, 5, expiry=NOW - 1))
        _, conflicts = merge(table, [rec("192.0.2.10", 2, 7)], NOW)
        self.assertEqual(conflicts, [])

    def test_tie_broken_by_owner(self):
        one, two = rec("192.0.2.10", 1, 9, owner="a"), rec("192.0.2.10", 2, 9, owner="b")
        left, right = LeaseTable(), LeaseTable()
        left.put(one)
        merge(left, [two], NOW)
        right.put(two)
        merge(right, [one], NOW)
        self.assertEqual(left.get("192.0.2.10"), right.get("192.0.2.10"))

    def test_version_first_then_larger_owner(self):
        """docs/failover.md, Reconciliation: the newest stamp wins whatever
        the owners; only on equal stamps does the larger owner name win."""
        older_b, newer_a = (rec("192.0.2.10", 1, 9, owner="b"),
                            rec("192.0.2.10", 2, 10, owner="a"))
        for first, second in ((older_b, newer_a), (newer_a, older_b)):
            table = LeaseTable()
            table.put(first)
            merge(table, [second], NOW)
            self.assertEqual(table.get("192.0.2.10"), newer_a)
        tie_a, tie_b = (rec("192.0.2.10", 1, 9, owner="a"),
                        rec("192.0.2.10", 2, 9, owner="b"))
        for first, second in ((tie_a, tie_b), (tie_b, tie_a)):
            table = LeaseTable()
            table.put(first)
            _, conflicts = merge(table, [second], NOW)
            self.assertEqual(table.get("192.0.2.10"), tie_b)
            [c] = conflicts
            self.assertEqual((c.winner, c.loser), (tie_b, tie_a))

    @given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3),
                              st.integers(1, 20), st.sampled_from("abc")),
                    max_size=30), st.randoms())
    def test_order_independent(self, records, rnd):
        """Two peers seeing the same records in any order end up equal."""
        # A server's clock never stamps two records alike: (version, owner)
        # is unique.
        unique = {(version, owner): (ip, mac) for ip, mac, version, owner in records}
        leases = [rec("192.0.2.%d" % (10 + ip), mac, version, owner)
                  for (version, owner), (ip, mac) in unique.items()]
        shuffled = list(leases)
        rnd.shuffle(shuffled)
        left, right = LeaseTable(), LeaseTable()
        merge(left, leases, NOW)
        merge(right, shuffled, NOW)
        self.assertEqual(sorted(left, key=lambda l: l.ip),
                         sorted(right, key=lambda l: l.ip))
