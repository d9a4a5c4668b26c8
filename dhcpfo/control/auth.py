"""Who may change state through the control API, and requests no browser
page can forge (docs/security.md).

Reads are open to anyone who reaches the API.  A state change needs all of:
the UNIX control socket (loopback TCP is read-only), a peer that is root or
in ``--control-group`` (from the kernel's SO_PEERCRED, not from anything the
client says), ``Content-Type: application/json`` (no HTML form can send it
cross-site without CORS, which we never grant), no ``Origin`` header (only
browsers send one), and, on every request, a ``Host`` that is ``localhost``
or an address literal (a DNS-rebinding page has a name).
"""

import grp
import ipaddress
import os
import socket
import struct

from twisted.internet.address import UNIXAddress

SO_PEERCRED = getattr(socket, "SO_PEERCRED", 17)
_CRED = struct.Struct("3i")


class Refused(Exception):
    """A request that must not be served: ``code`` and a message that says
    what the client should do instead."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def peer_credentials(request):
    """``(pid, uid, gid)`` of the process at the other end of a UNIX-socket
    request, from the kernel; None over TCP."""
    transport = request.channel.transport
    if not isinstance(transport.getHost(), UNIXAddress):
        return None
    raw = transport.getHandle().getsockopt(socket.SOL_SOCKET, SO_PEERCRED,
                                           _CRED.size)
    return _CRED.unpack(raw)


def _groups_of(pid, gid):
    """The groups of process ``pid`` (supplementary ones from /proc when it
    can be read), always with its primary ``gid``."""
    groups = {gid}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Groups:"):
                    groups.update(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return groups


def _header(request, name):
    value = request.getHeader(name)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value


def check_host(request):
    """Refuse a ``Host`` that is a name other than localhost: a page that
    rebinds its own name to 127.0.0.1 reads nothing."""
    host = (_header(request, b"host") or "localhost").strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host.lower() == "localhost":
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise Refused(403, "Host %r refused: use localhost or an address" % host)


class Guard:
    """The rule for state changes; ``group`` is ``--control-group``."""

    def __init__(self, group=None):
        self.gid = grp.getgrnam(group).gr_gid if group else None

    def allowed(self, credentials):
        pid, uid, gid = credentials
        if uid == 0:
            return True
        return self.gid is not None and self.gid in _groups_of(pid, gid)

    def check_change(self, request):
        """Return who asked (``"uid N pid P"``) or raise :class:`Refused`."""
        check_host(request)
        if _header(request, b"origin") is not None:
            raise Refused(403, "requests from a web page (with Origin) change "
                               "nothing; use dhcpfo-ctl")
        ctype = (_header(request, b"content-type") or "").split(";")[0]
        if ctype.strip().lower() != "application/json":
            raise Refused(415, "a state change needs Content-Type: "
                               "application/json")
        credentials = peer_credentials(request)
        if credentials is None:
            raise Refused(403, "state changes only through the control socket "
                               "(--control-socket), as root or --control-group")
        if not self.allowed(credentials):
            raise Refused(403, "uid %d may not change state: root or "
                               "--control-group only" % credentials[1])
        return "uid %d pid %d" % (credentials[1], credentials[0])


def unix_address(name):
    """The address to bind or connect for ``--control-socket``: ``@NAME`` is
    Linux's abstract namespace (per network namespace, no file)."""
    if name.startswith("@"):
        return "\0" + name[1:]
    return name


def remove_stale_socket(path):
    """A socket file left by a previous run (which may have run as another
    user and could not unlink it) would make the bind fail."""
    if path.startswith("\0"):
        return
    try:
        import stat
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
