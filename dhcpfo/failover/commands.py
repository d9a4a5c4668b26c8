"""The failover protocol's AMP commands (version 2), and how leases cross the wire.

Command definitions only: no I/O, no state.  The peer protocol responds to
them; see the docstrings for who sends what.

**Times cross the wire relative to the sender's clock** (design rule 4): a
lease travels as ``started_ago`` and ``expires_in`` seconds measured against
the sender's ``now``, and the receiver rebuilds absolute times against its own
clock (L{encode_lease} / L{decode_lease}).  A peer whose wall clock is ten
minutes off therefore hands over leases that expire when they should by the
receiver's clock.  The transit time is not subtracted, which errs safe: an
address looks held a few milliseconds longer.  Infinite leases
(``expiry == dhcpfo.addr.NEVER``) travel as ``expires_in = inf``.  The commands
also carry the sender's absolute ``now``, for measuring skew only.

**Every AMP value is at most 65,535 bytes**, so lease lists are split by
encoded size (L{chunk_leases}).

**Incoming records are validated** (L{validate_lease}) before they touch the
database: address inside our ranges, known state, sane times and version
stamp, bounded strings.
"""

import hashlib
import ipaddress
import math
import struct

from twisted.protocols import amp

from dhcpfo.addr import NEVER, bytes_from_str, str_from_bytes
from dhcpfo.leases.hlc import stamp_seconds
from dhcpfo.leases.lease import (MAX_CLIENT_ID, MAX_HWADDR, STATES, Lease,
                                 fields_problem)

PROTOCOL_VERSION = 3
# 2: Hello's answer and StateAnnounce carry the priority (the election needs
#    it on both ends of every connection); TransferOwnership is gone.
# 3: a lease record's client-id length is two bytes (a client id made of
#    several option-61 parts, RFC 3396, is longer than 255 bytes).

MAX_VALUE_BYTES = amp.MAX_VALUE_LENGTH      # 65535

# Validation limits.
MAX_LEASE_AHEAD = 10 * 365 * 86400.0   # a finite expiry further ahead is absurd
MAX_START_AHEAD = 300.0                # a lease may not start in the future
MAX_STAMP_AHEAD = 86400.0              # version stamps: peer clock at most 1 day fast
MAX_VERSION = (1 << 63) - 1
# Field bounds (MAX_HWADDR, MAX_CLIENT_ID, MAX_HOSTNAME, MAX_OWNER): one
# definition, in dhcpfo.leases.lease, for the encoder and validate_lease.

ROLES = ("primary", "secondary")


# --- errors -----------------------------------------------------------------

class VersionMismatch(Exception):
    """The peers speak different protocol versions."""


class PoolMismatch(Exception):
    """The peers' pool configurations differ; the message says how."""


class NotAllowed(Exception):
    """The command is not allowed from this peer now (e.g. before Hello, or a
    name that is not a configured peer)."""


class Duplicate(Exception):
    """We already keep another connection with this peer (the election's
    rule for two connections between one pair); this one is closed."""


class InvalidLease(ValueError):
    """An incoming lease record failed validation; the message says which and why."""


# --- lease fields -----------------------------------------------------------

# Leases travel as one packed binary value per command, not as an AmpList:
# AMP's per-field boxes cost the primary more CPU per replicated lease than
# the whole DHCP exchange does.  Per lease: a fixed header, then the
# variable-length fields, all lengths explicit.
_LEASE_HEAD = struct.Struct("!4sddqBHHHB")
# ip, started_ago (sender's now - start), expires_in (expiry - sender's now;
# inf: infinite), version, then the lengths of hwaddr, client_id, hostname,
# owner, state (UTF-8 for the text fields).


class LeaseRecords(amp.Argument):
    """A list of L{encode_lease} dicts as one packed value."""

    def toString(self, inObject):
        parts = []
        pack = _LEASE_HEAD.pack
        for f in inObject:
            if f["state"] not in STATES or len(f["hwaddr"]) > MAX_HWADDR \
                    or len(f["client_id"]) > MAX_CLIENT_ID:
                raise InvalidLease("lease for %r cannot be encoded" % (f["ip"],))
            hostname = f["hostname"].encode("utf-8")
            owner = f["owner"].encode("utf-8")
            state = f["state"].encode("utf-8")
            parts.append(pack(bytes_from_str(f["ip"]), f["started_ago"],
                              f["expires_in"], f["version"], len(f["hwaddr"]),
                              len(f["client_id"]), len(hostname), len(owner),
                              len(state)))
            parts += (f["hwaddr"], f["client_id"], hostname, owner, state)
        return b"".join(parts)

    def fromString(self, inString):
        records = []
        head = _LEASE_HEAD.size
        unpack = _LEASE_HEAD.unpack_from
        i, end = 0, len(inString)
        try:
            while i < end:
                (ip, started_ago, expires_in, version, n_hw, n_cid, n_host, n_owner,
                 n_state) = unpack(inString, i)
                i += head
                stop = i + n_hw + n_cid + n_host + n_owner + n_state
                if stop > end:
                    raise ValueError("truncated")
                hwaddr = inString[i:i + n_hw]
                i += n_hw
                client_id = inString[i:i + n_cid]
                i += n_cid
                hostname = inString[i:i + n_host].decode("utf-8")
                i += n_host
                owner = inString[i:i + n_owner].decode("utf-8")
                i += n_owner
                state = inString[i:i + n_state].decode("utf-8")
                i += n_state
                records.append({
                    "ip": str_from_bytes(ip), "hwaddr": hwaddr,
                    "client_id": client_id, "hostname": hostname, "state": state,
                    "started_ago": started_ago, "expires_in": expires_in,
                    "owner": owner, "version": version})
        except (struct.error, ValueError) as e:
            raise InvalidLease("a malformed lease record at byte %d: %s" % (i, e))
        return records


def wire_problem(lease):
    """Why ``lease`` cannot cross the wire (a sentence), or None if it can."""
    problem = fields_problem(lease)
    if problem is None and lease.state not in STATES:
        problem = "unknown state %r" % (lease.state,)
    if problem is None and not (isinstance(lease.version, int)
                                and 0 <= lease.version <= MAX_VERSION):
        problem = "version %r is out of range" % (lease.version,)
    return None if problem is None else "it cannot cross the wire: " + problem


def encode_lease(lease, now):
    """The wire fields of ``lease``, its times relative to ``now`` (ours).

    Total up to the bounds of :mod:`dhcpfo.leases.lease`: a lease past them
    raises L{InvalidLease} here, not a ``struct.error`` later on the wire.
    """
    problem = wire_problem(lease)
    if problem is not None:
        raise _bad(lease, problem)
    if lease.expiry >= NEVER:
        expires_in = math.inf
    else:
        expires_in = float(lease.expiry) - now
    return {
        "ip": lease.ip,
        "hwaddr": bytes(lease.hwaddr),
        "client_id": bytes(lease.client_id),
        "hostname": lease.hostname,
        "state": lease.state,
        "started_ago": now - float(lease.start),
        "expires_in": expires_in,
        "owner": lease.owner,
        "version": int(lease.version),
    }


def decode_lease(fields, now):
    """The L{Lease} a peer sent, its times made absolute against ``now`` (ours).

    Not validated: call L{validate_lease} before using it.
    """
    expires_in = fields["expires_in"]
    if expires_in == math.inf:
        expiry = NEVER
    else:
        expiry = now + expires_in
    return Lease(ip=fields["ip"], hwaddr=fields["hwaddr"],
                 client_id=fields["client_id"], hostname=fields["hostname"],
                 state=fields["state"], start=now - fields["started_ago"],
                 expiry=expiry, owner=fields["owner"], version=fields["version"])


def lease_wire_size(fields):
    """Bytes ``fields`` (from L{encode_lease}) take inside a L{LeaseRecords} value."""
    return (_LEASE_HEAD.size + len(fields["hwaddr"]) + len(fields["client_id"])
            + len(fields["hostname"].encode("utf-8"))
            + len(fields["owner"].encode("utf-8"))
            + len(fields["state"].encode("utf-8")))


def chunk_leases(leases, max_bytes=MAX_VALUE_BYTES):
    """Split encoded leases (an iterable of L{encode_lease} dicts) into lists
    whose AmpList encoding is at most ``max_bytes``.  Lazy: pass a generator
    to encode each lease just before its chunk is sent."""
    chunk, size = [], 0
    for fields in leases:
        n = lease_wire_size(fields)
        if n > max_bytes:
            raise ValueError("lease for %s encodes to %d bytes, more than %d"
                             % (fields.get("ip"), n, max_bytes))
        if chunk and size + n > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(fields)
        size += n
    if chunk:
        yield chunk


# --- validation -------------------------------------------------------------

def _bad(lease, problem):
    ip = getattr(lease, "ip", None)
    return InvalidLease("lease for %r: %s" % (ip, problem))


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_lease(lease, ranges_check, now):
    """Raise L{InvalidLease} unless ``lease`` (from a peer, decoded against
    ``now``) may enter our database.

    ``ranges_check(ip_str) -> bool`` says whether an address is inside our
    configured ranges.  Rejects: an address that is not a canonical IPv4
    dotted quad or lies outside our ranges; an unknown state; over-long
    hwaddr, client_id, hostname or owner; non-finite or negative times, a start
    in the future, a finite expiry more than 10 years ahead; a version stamp
    that is negative, too large or more than a day ahead of ``now`` (the peer's
    clock is wrong by more than a day: replication from it stops until fixed).
    """
    ip = lease.ip
    if not isinstance(ip, str):
        raise _bad(lease, "the address is not text")
    try:
        canonical = str(ipaddress.IPv4Address(ip))
    except ValueError:
        canonical = None
    if canonical != ip:
        raise _bad(lease, "not an IPv4 address in dotted-quad form")
    if not ranges_check(ip):
        raise _bad(lease, "%s is outside our ranges (do the peers have the same "
                          "--dhcp-range configuration?)" % (ip,))
    if lease.state not in STATES:
        raise _bad(lease, "unknown state %r (known: %s)"
                   % (lease.state, ", ".join(STATES)))
    problem = fields_problem(lease)
    if problem is not None:
        raise _bad(lease, problem)
    start, expiry = lease.start, lease.expiry
    if not _is_number(start) or not math.isfinite(start) or start < 0:
        raise _bad(lease, "start %r is not a time" % (start,))
    if start > now + MAX_START_AHEAD:
        raise _bad(lease, "it starts %.0f s in the future" % (start - now,))
    if not _is_number(expiry) or math.isnan(expiry) or expiry < 0:
        raise _bad(lease, "expiry %r is not a time" % (expiry,))
    if expiry != NEVER and expiry - now > MAX_LEASE_AHEAD:
        raise _bad(lease, "it expires %.0f days from now (more than 10 years, and "
                          "not infinite)" % ((expiry - now) / 86400,))
    version = lease.version
    if not isinstance(version, int) or isinstance(version, bool):
        raise _bad(lease, "version %r is not an integer" % (version,))
    if not 0 <= version <= MAX_VERSION:
        raise _bad(lease, "version %d is out of range" % (version,))
    ahead = stamp_seconds(version) - now
    if ahead > MAX_STAMP_AHEAD:
        raise _bad(lease, "its version stamp is %.0f s ahead of our clock (more "
                          "than a day: one server's clock is wrong)" % (ahead,))


# --- pool configuration ---------------------------------------------------------

def _pool_lines(lines):
    return sorted(" ".join(line.split()) for line in lines if line.strip())


def pool_digest(lines):
    """Digest (hex) of a pool configuration given as text lines, one per range
    or setting that must agree between peers; order and spacing do not matter.

    Equal to ``dhcpfo.failover.options.pool_digest(ranges)`` when ``lines`` is
    ``options.pool_description(ranges).splitlines()``.
    """
    return hashlib.sha256("\n".join(_pool_lines(lines)).encode("utf-8")).hexdigest()


def pool_difference(we, ours, they, theirs):
    """A sentence saying how two pool configurations (text lines) differ,
    naming each side (``we``, ``they``: the refused peer logs it verbatim),
    or None if they agree.  For L{PoolMismatch} messages."""
    ours, theirs = set(_pool_lines(ours)), set(_pool_lines(theirs))
    if ours == theirs:
        return None
    return "pool configurations differ: %s has %s; %s has %s" % (
        we, "; ".join(sorted(ours - theirs)) or "nothing else",
        they, "; ".join(sorted(theirs - ours)) or "nothing else")


# --- commands -------------------------------------------------------------------

_REFUSALS = {NotAllowed: b"NOT_ALLOWED"}


class Hello(amp.Command):
    """First command on every connection, from the connecting peer.

    ``pool_digest`` is L{pool_digest} of the sender's pool configuration;
    ``pools`` (optional) its lines, so a responder that finds the digests
    differ can say what differs (L{pool_difference}).  ``role`` is one of
    L{ROLES}; ``priority`` orders secondaries (the highest goes active
    first, see L{dhcpfo.failover.election}).  The answer carries the same
    about the responder, so both ends rank each other alike.  Errors are
    fatal: the connection is dropped after the error is sent.
    """

    arguments = [
        (b"version", amp.Integer()),
        (b"name", amp.Unicode()),
        (b"role", amp.Unicode()),
        (b"priority", amp.Integer()),
        (b"pool_digest", amp.Unicode()),
        (b"pools", amp.ListOf(amp.Unicode(), optional=True)),
        (b"hlc", amp.Integer()),
    ]
    response = [
        (b"version", amp.Integer()),
        (b"name", amp.Unicode()),
        (b"role", amp.Unicode()),
        (b"priority", amp.Integer()),
        (b"state", amp.Unicode()),
        (b"hlc", amp.Integer()),
    ]
    fatalErrors = {
        VersionMismatch: b"VERSION_MISMATCH",
        PoolMismatch: b"POOL_MISMATCH",
        NotAllowed: b"NOT_ALLOWED",
        Duplicate: b"DUPLICATE",
    }


class LeaseBatch(amp.Command):
    """Incremental lease changes (group-committed); ``acked`` is how many the
    receiver stored durably.  ``now`` is the sender's clock (for skew
    measurement only: the lease times are relative).  Split by L{chunk_leases}.
    """

    arguments = [
        (b"leases", LeaseRecords()),
        (b"hlc", amp.Integer()),
        (b"now", amp.Float()),
    ]
    response = [(b"acked", amp.Integer())]
    errors = {InvalidLease: b"INVALID_LEASE"}
    fatalErrors = _REFUSALS


class DatabaseChunk(amp.Command):
    """One piece of the database exchange on connect, streamed in order
    (``seq`` from 0; ``last`` on the final one, which may be empty)."""

    arguments = [
        (b"leases", LeaseRecords()),
        (b"seq", amp.Integer()),
        (b"last", amp.Boolean()),
        (b"hlc", amp.Integer()),
        (b"now", amp.Float()),
    ]
    response = [(b"acked", amp.Integer())]
    errors = {InvalidLease: b"INVALID_LEASE"}
    fatalErrors = _REFUSALS


class Heartbeat(amp.Command):
    """Liveness, both ways, every heartbeat interval; carries failover states."""

    arguments = [(b"state", amp.Unicode()), (b"hlc", amp.Integer())]
    response = [(b"state", amp.Unicode()), (b"hlc", amp.Integer(optional=True))]
    fatalErrors = _REFUSALS


class StateAnnounce(amp.Command):
    """Our failover state or priority changed: sent at once on the change, so
    the peer re-runs its election without waiting for a heartbeat."""

    arguments = [
        (b"state", amp.Unicode()),
        (b"priority", amp.Integer()),
        (b"hlc", amp.Integer()),
    ]
    response = []
    fatalErrors = _REFUSALS
