"""Reconciling lease records from peers (design rule 4): newest version wins.

Versions are hybrid-logical-clock stamps, so a peer whose wall clock is off
cannot make an older change win.  Ties (two servers stamping the same value)
break on the owner's name, so every peer picks the same record.  A *binding
conflict* — one address bound to two different clients, both unexpired — is
resolved the same way, recorded, and the loser is NAKed at its next renewal
(the table now binds the address to the winner).
"""

import attr

from dhcpfo.leases.lease import ACTIVE


def precedence(lease):
    return (lease.version, lease.owner)


@attr.s(frozen=True, slots=True)
class Conflict:
    ip = attr.ib()
    winner = attr.ib()   # the Lease kept
    loser = attr.ib()    # the Lease dropped
    detected = attr.ib()  # POSIX seconds

    def as_json(self):
        return {"ip": self.ip, "winner_mac": self.winner.hwaddr.hex(":"),
                "winner_owner": self.winner.owner,
                "loser_mac": self.loser.hwaddr.hex(":"),
                "loser_owner": self.loser.owner, "detected": self.detected}


def is_binding_conflict(a, b, now):
    return (a.state == ACTIVE and b.state == ACTIVE and a.expiry > now
            and b.expiry > now and a.key != b.key)


def merge(table, incoming, now):
    """Fold ``incoming`` records into ``table``.

    Returns ``(accepted, conflicts)``: the records that replaced ours (to be
    written to the local store) and the binding conflicts found.
    """
    accepted = []
    conflicts = []
    for lease in incoming:
        mine = table.get(lease.ip)
        if mine is None:
            table.put(lease)
            accepted.append(lease)
            continue
        if precedence(lease) == precedence(mine):
            continue  # the same record again
        newer = precedence(lease) > precedence(mine)
        winner, loser = (lease, mine) if newer else (mine, lease)
        if is_binding_conflict(winner, loser, now):
            conflicts.append(Conflict(lease.ip, winner, loser, now))
        if newer:
            table.put(lease)
            accepted.append(lease)
    return accepted, conflicts
