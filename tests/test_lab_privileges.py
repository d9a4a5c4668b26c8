"""Lab: dhcpfo started as root binds DHCP (67, per interface), DNS (53 UDP
and TCP) and its control sockets, then runs as ``--user nobody`` (dnsmasq's
``user=``): the process's ids are nobody's, the lease database is created
0600 and owned by nobody, and a real client still gets a lease whose name
DNS answers (docs/security.md).
"""

import os
import pwd
import shlex
import stat
import sys
import time

from twisted.trial import unittest

from tests.lab import Lab, LabError, tail
from tests.labskip import TWISTD, needs

NOBODY = pwd.getpwnam("nobody")


def _ids(pid):
    """``{"Uid": [...], "Gid": [...], "Groups": [...]}`` of /proc/PID/status."""
    found = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                found[key] = [int(v) for v in value.split()]
    return found


def _unreachable_for_others(path):
    """The first directory above ``path`` that a non-root user cannot enter."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(2, len(parts)):
        directory = os.sep.join(parts[:i])
        if not os.stat(directory).st_mode & stat.S_IXOTH:
            return directory
    return None


def in_private_mounts(argv, hidden, scratch):
    """``argv`` run by a shell in its own mount namespace where ``hidden``
    (a 0700 directory holding the Python installation, /root here) is
    replaced by a 0711 tmpfs with only the installation put back, so the
    server can still import modules once it is nobody.  Only the lab's
    process sees this."""
    install = os.path.realpath(sys.base_prefix)
    inner = os.path.relpath(install, hidden)
    keep = os.path.join(scratch, "install")
    script = " && ".join([
        "mkdir -p %s" % shlex.quote(keep),
        "mount --bind %s %s" % (shlex.quote(install), shlex.quote(keep)),
        "mount -t tmpfs -o mode=0711 dhcpfo-lab %s" % shlex.quote(hidden),
        "mkdir -p %s" % shlex.quote(os.path.join(hidden, inner)),
        "mount --move %s %s" % (shlex.quote(keep),
                                shlex.quote(os.path.join(hidden, inner))),
        "exec " + shlex.join(argv)])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]


@needs("dhclient", "dig", "unshare")
class PrivilegeDropTests(unittest.TestCase):

    def setUp(self):
        self.lab = Lab()
        self.addCleanup(self.lab.close)
        self.lab.lan("lan")
        self.lab.host("srv", "lan", "192.0.2.1/24")
        self.lab.host("cli", "lan")
        # nobody must reach its state directory inside the lab's 0700 one.
        os.chmod(self.lab.dir, 0o711)
        self.state = self.lab.path("state")
        os.mkdir(self.state, 0o700)
        os.chown(self.state, NOBODY.pw_uid, NOBODY.pw_gid)
        self.db = os.path.join(self.state, "leases.db")

    def start(self, args, twistd=()):
        logfile = self.lab.path("dhcpfo.log")
        argv = [TWISTD, "-n", "--pidfile=", "--logfile=" + logfile] + list(twistd) \
            + ["dhcpfo"] + args
        hidden = _unreachable_for_others(sys.base_prefix)
        if hidden is not None:
            argv = in_private_mounts(argv, hidden, self.lab.path("mnt"))
        proc = self.lab.spawn("srv", argv, self.lab.path("dhcpfo.stdout"))
        self.log = logfile
        deadline = time.monotonic() + 20
        while self.lab.ctl("srv", "status", timeout=5).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                self.fail("dhcpfo did not start:\n%s\n%s" % (
                    tail(proc.log_path), tail(logfile)))
            time.sleep(0.2)
        return proc

    def test_runs_as_nobody_and_still_serves(self):
        self.serves(["--user", "nobody"])

    def test_twistd_uid_and_gid_work_too(self):
        """twistd sheds privileges after privilegedStartService as well."""
        self.serves([], twistd=["--uid", str(NOBODY.pw_uid),
                                "--gid", str(NOBODY.pw_gid)])

    def serves(self, extra, twistd=()):
        proc = self.start([
            "--interface", "e0", "--dhcp-range", "192.0.2.10,192.0.2.200,1h",
            "--domain", "lab.test", "--lease-store", "sqlite:path=" + self.db]
            + extra, twistd)
        ids = _ids(proc.pid)
        self.assertEqual(ids["Uid"], [NOBODY.pw_uid] * 4, tail(self.log))
        self.assertEqual(ids["Gid"], [NOBODY.pw_gid] * 4)
        self.assertIn(ids["Groups"], ([NOBODY.pw_gid], []))
        self.assertNotIn(0, ids["Groups"])
        db = os.stat(self.db)
        self.assertEqual((db.st_uid, stat.S_IMODE(db.st_mode)),
                         (NOBODY.pw_uid, 0o600))
        try:
            got = self.lab.dhclient("cli", hostname="pc1", timeout=15)
        except LabError as e:
            self.fail("%s\n%s" % (e, tail(self.log)))
        self.assertTrue(got["ip"].startswith("192.0.2."), got)
        for transport in ([], ["+tcp"]):
            answer = self.lab.run("cli", ["dig", "+short", "+time=2", "+tries=2"]
                                  + transport + ["@192.0.2.1", "pc1.lab.test", "A"])
            self.assertEqual(answer.stdout.split(), [got["ip"]],
                             answer.stderr + tail(self.log))
        # The lease is on disk, written by nobody, in the 0600 file.
        self.assertEqual([l["ip"] for l in self.lab.leases("srv")], [got["ip"]])
        self.assertEqual(stat.S_IMODE(os.stat(self.db).st_mode), 0o600)
        if extra:
            self.assertIn("serving as uid %d gid %d" % (NOBODY.pw_uid, NOBODY.pw_gid),
                          open(self.log).read())

    def test_a_directory_nobody_cannot_write_is_refused(self):
        """SQLite keeps WAL files next to the database: say so at start."""
        blocked = self.lab.path("root-only")
        os.mkdir(blocked, 0o755)
        logfile = self.lab.path("refused.log")
        r = self.lab.run("srv", [
            TWISTD, "-n", "--pidfile=", "--logfile=" + logfile, "dhcpfo",
            "--interface", "e0", "--dhcp-range", "192.0.2.10,192.0.2.200,1h",
            "--dns-port", "0", "--control-socket", "@dhcpfo-refused",
            "--lease-store", "sqlite:path=" + os.path.join(blocked, "l.db"),
            "--user", "nobody"], timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("is not writable by uid %d" % NOBODY.pw_uid,
                      open(logfile).read() + r.stdout + r.stderr)
