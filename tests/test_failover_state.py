"""The role state machine, as a table."""

from twisted.trial.unittest import SynchronousTestCase

from dhcpfo.failover.state import ACTIVE, PASSIVE, STARTUP, SYNCING, RoleMachine

# (path of inputs from startup, expected state after each)
TABLE = [
    (["start"], [SYNCING]),
    (["start", "noLeader"], [SYNCING, ACTIVE]),
    (["start", "leaderSynced"], [SYNCING, PASSIVE]),
    (["start", "leaderConnected", "leaderSynced"], [SYNCING, SYNCING, PASSIVE]),
    (["start", "leaderSynced", "noLeader"], [SYNCING, PASSIVE, ACTIVE]),
    (["start", "leaderSynced", "leaderConnected"], [SYNCING, PASSIVE, PASSIVE]),
    (["start", "noLeader", "leaderConnected", "leaderSynced"],
     [SYNCING, ACTIVE, SYNCING, PASSIVE]),
    (["start", "noLeader", "leaderConnected", "noLeader"],
     [SYNCING, ACTIVE, SYNCING, ACTIVE]),
    (["start", "noLeader", "noLeader"], [SYNCING, ACTIVE, ACTIVE]),
    (["start", "noLeader", "leaderSynced"], [SYNCING, ACTIVE, PASSIVE]),
]


class RoleMachineTests(SynchronousTestCase):
    def test_table(self):
        for inputs, expected in TABLE:
            changes = []
            machine = RoleMachine(lambda old, new, why: changes.append((old, new)))
            self.assertEqual(machine.state, STARTUP)
            seen = []
            for name in inputs:
                getattr(machine, name)(why="test")
                seen.append(machine.state)
            self.assertEqual(seen, expected, inputs)
            # Every change, and only changes, were reported.
            states = [STARTUP] + seen
            real = [(a, b) for a, b in zip(states, states[1:]) if a != b]
            self.assertEqual(changes, real, inputs)

    def test_invalid_input_refused(self):
        machine = RoleMachine(lambda *a: None)
        with self.assertRaises(Exception):
            machine.noLeader(why="before start")
