"""The process options: ``--user``, ``--group`` (dnsmasq's names for the
privilege drop), ``--control-socket`` and ``--control-group`` (who may
change state through the control API); and :class:`RunAs`, the drop they
name, which :mod:`dhcpfo.service` makes once every port is bound.  See
docs/security.md."""

import grp
import os
import pwd

from dhcpfo.config.errors import ConfigError
from dhcpfo.config.records import DEFAULT_CONTROL_SOCKET

VALUED = {
    "user": "After binding its ports as root, run as this user (dnsmasq's "
            "user=).  Default: keep the user dhcpfo was started as; twistd's "
            "--uid does the same.",
    "group": "After binding its ports as root, run with this group (dnsmasq's "
             "group=; default: the --user's primary group).",
    "control-socket": "UNIX socket of the control API, the only way to change "
                      "state (default %s: @NAME is an abstract socket, one per "
                      "network namespace; or a file path)." % DEFAULT_CONTROL_SOCKET,
    "control-group": "Besides root, members of this group may change state "
                     "through the control socket.",
}


def parse_user(value):
    value = value.strip()
    try:
        return pwd.getpwnam(value).pw_name
    except KeyError:
        raise ConfigError("no user %r on this machine" % value) from None


def parse_group(value):
    value = value.strip()
    try:
        return grp.getgrnam(value).gr_name
    except KeyError:
        raise ConfigError("no group %r on this machine" % value) from None


def parse_socket(value):
    value = value.strip()
    if value in ("", "@"):
        raise ConfigError("expected @NAME (abstract) or a file path")
    if len(value.encode()) > 107:
        raise ConfigError("a UNIX socket name is at most 107 bytes")
    return value


#: option name -> (Config field, parser); all single-valued.
PARSERS = {
    "user": ("user", parse_user),
    "group": ("group", parse_group),
    "control-socket": ("control_socket", parse_socket),
    "control-group": ("control_group", parse_group),
}


def create_private(path, uid=-1, gid=-1):
    """Create ``path`` empty and 0600 unless it exists (SQLite takes an empty
    file as an empty database and gives its WAL files the same mode), and
    give it and its WAL files to ``uid``/``gid`` (-1: unchanged)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except FileNotFoundError:
        return      # no such directory: the store reports it when it opens
    if uid != -1 or gid != -1:
        for name in (path, path + "-wal", path + "-shm", path + "-journal"):
            if os.path.exists(name):
                os.chown(name, uid, gid)


class RunAs:
    """``--user``/``--group`` resolved: whom to become after binding."""

    def __init__(self, user=None, group=None):
        self.user = user
        self.pw = pwd.getpwnam(user) if user else None
        if group:
            self.gid = grp.getgrnam(group).gr_gid
        else:
            self.gid = self.pw.pw_gid if self.pw else -1
        self.uid = self.pw.pw_uid if self.pw else -1

    def describe(self):
        return "uid %d gid %d" % (os.getuid(), os.getgid())

    def drop(self):
        """Become ``uid``/``gid`` for good (real, effective and saved ids), as
        dnsmasq does after binding; refuse if we cannot or could come back."""
        if os.geteuid() != 0:
            if self.uid not in (-1, os.geteuid()) or self.gid not in (-1, os.getegid()):
                raise ConfigError("--user/--group need dhcpfo to be started as root")
            return
        if self.gid != -1:
            if self.pw is not None:
                os.initgroups(self.pw.pw_name, self.gid)
            else:
                os.setgroups([self.gid])
            os.setresgid(self.gid, self.gid, self.gid)
        if self.uid != -1:
            os.setresuid(self.uid, self.uid, self.uid)
            try:
                os.setuid(0)
            except PermissionError:
                pass
            else:
                raise RuntimeError("dropped privileges came back")
