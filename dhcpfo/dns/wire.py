"""The DNS fast path's table: ready response bytes for the questions a zone
can answer without thinking.

:attr:`FastTable.fast` maps a question as it appears on the wire (lower-case
name + type + class) to ``(headers, body)``: eight response headers (after
the id), indexed by the query's ``RD | CD << 1 | EDNS << 2``, and the
sections after the echoed question.  :func:`dhcpfo.dns.server.fast_answer`
patches in the id and sends.  The zone (:class:`~dhcpfo.dns.authority.
LeaseAuthority`) decides what each name holds; this module only encodes.
"""

import io
import struct

from twisted.names import dns

from dhcpfo.dns import names

#: Types answered from the fast path for every name that exists.
FAST_TYPES = (dns.A, dns.AAAA, dns.PTR, dns.MX, dns.TXT, 64, 65)

_QKEY = struct.Struct("!HH")
_RR = struct.Struct("!HHIH")
_COUNTS = struct.Struct("!BBHHHH")


class FastTable:
    """Question bytes -> ready answer, kept per owner name."""

    def __init__(self, recursion=False):
        self.recursion = bool(recursion)
        self.fast = {}          # question bytes -> (headers, body)
        self._keys = {}         # name -> [question bytes]
        self._headers = {}
        self._nodata = {}

    def names(self):
        """The names that have entries now."""
        return list(self._keys)

    def __contains__(self, name):
        return name in self._keys

    def set_recursion(self, available):
        """Set the RA bit; True if it changed (every entry must be rebuilt)."""
        if bool(available) == self.recursion:
            return False
        self.recursion = bool(available)
        self._headers.clear()
        self._nodata.clear()
        return True

    def drop(self, name):
        """Forget every entry of ``name``."""
        fast = self.fast
        for key in self._keys.pop(name, ()):
            fast.pop(key, None)

    def put(self, name, found, zone, negative):
        """Entries of ``name`` from ``found`` (``{rtype: [RRHeader]}``): each
        type it has, and NODATA with ``negative`` (the zone's SOA, as a list
        of RRHeader) for the common types it lacks."""
        self.drop(name)
        wire = names.to_wire(name)
        nodata = None
        keys = []
        fast = self.fast
        for qtype in set(found).union(FAST_TYPES):
            rrset = found.get(qtype)
            if rrset:
                entry = self._entry(name, qtype, rrset)
            else:
                if nodata is None:
                    nodata = self._nodata_entry(zone, negative)
                entry = nodata
            key = wire + _QKEY.pack(qtype, dns.IN)
            fast[key] = entry
            keys.append(key)
        self._keys[name] = keys

    def header_set(self, rcode, aa, an, ns, ar):
        """The eight response headers (after the id) for these counts, indexed
        by ``RD | CD << 1 | EDNS << 2`` of the query."""
        key = (rcode, aa, an, ns, ar)
        found = self._headers.get(key)
        if found is None:
            variants = []
            for index in range(8):
                rd, cd, edns = index & 1, (index >> 1) & 1, index >> 2
                flags1 = 0x80 | (0x04 if aa else 0) | rd
                flags2 = (0x80 if self.recursion else 0) | (0x10 if cd else 0) | rcode
                variants.append(_COUNTS.pack(flags1, flags2, 1, an, ns, ar + edns))
            found = self._headers[key] = tuple(variants)
        return found

    def _entry(self, name, qtype, answers):
        """(headers, body) of a positive answer.  Owner names are pointers
        to the question (offset 12), which every response echoes."""
        parts = []
        for rr in answers:
            rtype = rr.type
            if rtype == dns.A or rtype == dns.AAAA:
                rdata = rr.payload.address
            elif rtype == dns.PTR:
                rdata = names.to_wire(names.from_wire_name(rr.payload.name.name))
            else:
                parts = None
                break
            parts.append(b"\xc0\x0c" + _RR.pack(rtype, rr.cls, rr.ttl, len(rdata))
                         + rdata)
        if parts is None:
            buf = io.BytesIO()
            compression = {}
            dns.Query(name.encode("latin-1"), qtype, dns.IN).encode(buf, compression)
            start = buf.tell()
            for rr in answers:
                rr.encode(buf, compression)
            body = buf.getvalue()[start:]
        else:
            body = b"".join(parts)
        return self.header_set(dns.OK, True, len(answers), 0, 0), body

    def _nodata_entry(self, zone, negative):
        """(headers, body) of NODATA in ``zone`` (or outside our zones):
        the same for every name, the SOA written out in full."""
        found = self._nodata.get(zone)
        if found is None:
            buf = io.BytesIO()
            for rr in negative:
                rr.encode(buf, None)
            found = (self.header_set(dns.OK, True, 0, len(negative), 0),
                     buf.getvalue())
            self._nodata[zone] = found
        return found
