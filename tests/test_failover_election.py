"""The election rule (dhcpfo.failover.election), as a table: every order of
names, priorities and roles, every dial direction and every set of
connections among three servers, and the four-server partitions."""

import itertools

from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.failover.election import (PRIMARY, SECONDARY, Connection, Member,
                                      elect, rank)

NAMES = ("dhcp-a", "dhcp-b", "dhcp-c")
# Per pair of servers: which connections exist (dialled by the first, by the
# second, both, both made in the other order, or none).
PAIR_CASES = ((), ("fwd",), ("rev",), ("fwd", "rev"), ("rev", "fwd"))


def views(members, pairs):
    """What each server sees: its :class:`Connection`\\ s.  ``pairs`` maps
    (x, y) to the dial directions made, in order; both ends of a connection
    get the same handle and the same serial order."""
    seen = {m.name: [] for m in members}
    by_name = {m.name: m for m in members}
    serial = itertools.count(1)
    for (x, y), dials in pairs.items():
        for d in dials:
            dialler, listener = (x, y) if d == "fwd" else (y, x)
            handle = (dialler, listener, next(serial))
            s = handle[2]
            seen[dialler].append(Connection(by_name[listener], True, s, handle))
            seen[listener].append(Connection(by_name[dialler], False, s, handle))
    return seen


def components(names, edges):
    """The connected groups of an undirected graph."""
    groups, left = [], set(names)
    while left:
        group, todo = set(), [left.pop()]
        while todo:
            n = todo.pop()
            group.add(n)
            for x, y in edges:
                for a, b in ((x, y), (y, x)):
                    if a == n and b not in group:
                        todo.append(b)
                        left.discard(b)
        groups.append(group)
    return groups


class ElectTableTests(SynchronousTestCase):

    def check(self, members, pairs):
        seen = views(members, pairs)
        outcomes = {m.name: elect(m, seen[m.name]) for m in members}
        case = "members %r, connections %r" % (members, pairs)
        edges = set()
        for (x, y), dials in pairs.items():
            kx = outcomes[x].kept.get(y)
            ky = outcomes[y].kept.get(x)
            if not dials:
                self.assertEqual((kx, ky), (None, None), case)
                continue
            # Both ends keep the same connection and close the same ones.
            self.assertEqual(kx.handle, ky.handle, case)
            if len(dials) == 2:
                smaller, larger = sorted((x, y))
                self.assertEqual(kx.handle[0], smaller, case)
            drop_x = {c.handle for c in outcomes[x].dropped if c.peer.name == y}
            drop_y = {c.handle for c in outcomes[y].dropped if c.peer.name == x}
            self.assertEqual(drop_x, drop_y, case)
            self.assertEqual(len(drop_x), len(dials) - 1, case)
            edges.add((x, y))
            # Never both ends think they outrank the other.
            self.assertNotEqual(kx in outcomes[x].higher, ky in outcomes[y].higher,
                                case)
        by_name = {m.name: m for m in members}
        for group in components([m.name for m in members], edges):
            leaders = sorted(n for n in group if outcomes[n].leads)
            best = max(group, key=lambda n: by_name[n].rank())
            self.assertIn(best, leaders, case)
            clique = all((x, y) in edges or (y, x) in edges
                         for x, y in itertools.combinations(sorted(group), 2))
            if clique:
                # One server hands out leases per connected group.
                self.assertEqual(leaders, [best], case)
        return outcomes

    def test_three_servers_every_case(self):
        """Roles (no primary, or any one), priorities (all orders, and ties
        broken by name), dial directions and connection sets."""
        priority_sets = set(itertools.permutations((1, 2, 3))) | {
            (1, 1, 1), (2, 1, 1), (1, 2, 2)}
        cases = 0
        for primary in (None,) + NAMES:
            for prios in sorted(priority_sets):
                members = [Member(n, PRIMARY if n == primary else SECONDARY, p)
                           for n, p in zip(NAMES, prios)]
                for dials in itertools.product(PAIR_CASES, repeat=3):
                    pairs = dict(zip(itertools.combinations(NAMES, 2), dials))
                    self.check(members, pairs)
                    cases += 1
        self.assertEqual(cases, 4 * 9 * 125)

    def test_four_servers_partitions(self):
        """A primary and three secondaries, fully connected (every dial
        direction pattern between the two halves), then every split into
        two groups of two: one leader per side."""
        names = ("dhcp-a", "dhcp-b", "dhcp-c", "dhcp-d")
        for prios in itertools.permutations((1, 2, 3)):
            members = [Member("dhcp-a", PRIMARY, 0)] + [
                Member(n, SECONDARY, p) for n, p in zip(names[1:], prios)]
            for side in itertools.combinations(names, 2):
                pairs = {}
                for x, y in itertools.combinations(names, 2):
                    cut = (x in side) != (y in side)
                    pairs[(x, y)] = () if cut else ("fwd", "rev")
                outcomes = self.check(members, pairs)
                self.assertEqual(sum(o.leads for o in outcomes.values()), 2)

    def test_rank(self):
        """The primary first; then the highest priority; then the larger
        name (docs/failover.md, "Election")."""
        self.assertGreater(rank(PRIMARY, 0, "a"), rank(SECONDARY, 9, "z"))
        self.assertGreater(rank(SECONDARY, 2, "a"), rank(SECONDARY, 1, "z"))
        self.assertGreater(rank(SECONDARY, 1, "b"), rank(SECONDARY, 1, "a"))

    def test_same_direction_keeps_the_newer(self):
        """A dialler that reconnected before the listener noticed the old
        connection: the listener keeps the newer one."""
        me = Member("dhcp-c", SECONDARY, 1)
        peer = Member("dhcp-b", SECONDARY, 2)
        old = Connection(peer, False, 1, "old")
        new = Connection(peer, False, 2, "new")
        for order in ([old, new], [new, old]):
            outcome = elect(me, order)
            self.assertEqual(outcome.kept["dhcp-b"].handle, "new")
            self.assertEqual([c.handle for c in outcome.dropped], ["old"])
            self.assertFalse(outcome.leads)
