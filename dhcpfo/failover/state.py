"""The role state machine of one failover server (automat).

::

    startup --start--> syncing
    syncing --leaderSynced--> passive      (a higher peer serves; we replicate)
    syncing --noLeader--> active           (nobody above us is reachable)
    passive --noLeader--> active           (the leader died or is cut off)
    active  --leaderConnected--> syncing   (it is back: exchange first)
    active  --leaderSynced--> passive

"Higher" is the election's rank (:mod:`dhcpfo.failover.election`): the primary,
then secondaries by --failover-priority (highest first), then name; the primary goes syncing -> active at once.  Only ``active``
answers DHCP; every state answers DNS.
"""

from automat import MethodicalMachine

STARTUP, SYNCING, PASSIVE, ACTIVE = "startup", "syncing", "passive", "active"


class RoleMachine:
    _machine = MethodicalMachine()

    def __init__(self, on_change):
        """``on_change(old, new, why)`` is called on every change of state."""
        self._on_change = on_change
        self.state = STARTUP

    def _enter(self, new, why):
        old, self.state = self.state, new
        if old != new:
            self._on_change(old, new, why)

    @_machine.state(initial=True)
    def startup(self):
        "Loading leases; not yet talking to peers."

    @_machine.state()
    def syncing(self):
        "Exchanging lease databases; DHCP is not answered."

    @_machine.state()
    def passive(self):
        "A higher peer serves DHCP; we replicate and answer DNS."

    @_machine.state()
    def active(self):
        "We serve DHCP."

    @_machine.input()
    def start(self, why):
        "Leases are loaded."

    @_machine.input()
    def leaderConnected(self, why):
        "A higher peer connected; its database must be exchanged first."

    @_machine.input()
    def leaderSynced(self, why):
        "The exchange with a connected higher peer is complete."

    @_machine.input()
    def noLeader(self, why):
        "No higher peer is reachable (or none exists)."

    @_machine.output()
    def _toSyncing(self, why):
        self._enter(SYNCING, why)

    @_machine.output()
    def _toPassive(self, why):
        self._enter(PASSIVE, why)

    @_machine.output()
    def _toActive(self, why):
        self._enter(ACTIVE, why)

    startup.upon(start, enter=syncing, outputs=[_toSyncing])
    syncing.upon(leaderConnected, enter=syncing, outputs=[])
    syncing.upon(leaderSynced, enter=passive, outputs=[_toPassive])
    syncing.upon(noLeader, enter=active, outputs=[_toActive])
    passive.upon(leaderConnected, enter=passive, outputs=[])
    passive.upon(leaderSynced, enter=passive, outputs=[])
    passive.upon(noLeader, enter=active, outputs=[_toActive])
    active.upon(leaderConnected, enter=syncing, outputs=[_toSyncing])
    active.upon(leaderSynced, enter=passive, outputs=[_toPassive])
    active.upon(noLeader, enter=active, outputs=[])
