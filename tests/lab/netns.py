"""
Network-namespace labs for tests, demos and benchmarks.

A small synchronous library (blocking subprocesses, no reactor) that builds
LANs out of Linux network namespaces, starts real DHCP clients, relays and
servers on them, and tears everything down again.  It needs root and
iproute2; the client helpers need ``dhclient`` (isc-dhcp-client) and
``udhcpc`` (busybox).  See /work/shared/lab.md for the rules it follows:

- namespaces are named ``<prefix>-<name>`` with a per-run prefix
  (``dfo<pid>`` by default) and are all deleted by :meth:`Lab.close`, which
  is idempotent and also runs at interpreter exit;
- processes are stopped only by the pid recorded when this lab started them
  (SIGTERM, then SIGKILL after a timeout), never by name;
- every host namespace gets its own ``/etc/netns/<ns>/resolv.conf`` and the
  clients run scripts of ours, so nothing touches the host's /etc;
- only documentation and benchmarking addresses are meant to be used
  (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15);
  :meth:`Lab.addr` refuses anything else.

Example::

    with Lab() as lab:
        lab.lan("lan")
        lab.host("srv", "lan", "192.0.2.1/24")
        lab.host("cli", "lan")
        lab.dhcpfo("srv", ["--interface", "e0",
                           "--dhcp-range", "192.0.2.10,192.0.2.200,1h"])
        got = lab.dhclient("cli")          # {'ip': '192.0.2.10', ...}
        print(lab.leases("srv"))           # dhcpfo-ctl leases --json
"""

import atexit
import ipaddress
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

__all__ = ["Lab", "LabError", "parse_perfdhcp", "tail", "ALLOWED_NETWORKS"]

ALLOWED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
              "198.18.0.0/15")
)

#: Environment for client programs and scripts (no inherited surprises).
CLIENT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LC_ALL": "C"}

_counter = itertools.count()

_CLIENT_SCRIPT = r"""#!/bin/sh
# dhcpfo lab client script, for dhclient (-sf) and udhcpc (-s).
# It records every event in EVDIR and configures only the lab interface;
# it never touches /etc.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
EVDIR=@EVDIR@
if [ -n "$reason" ]; then kind=dhclient; event=$reason; else kind=udhcpc; event=$1; fi
rc=0
case "$kind:$event" in
  dhclient:PREINIT)
    ip link set dev "$interface" up ;;
  dhclient:BOUND|dhclient:RENEW|dhclient:REBIND|dhclient:REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      ip -4 addr del "$old_ip_address/${old_subnet_mask:-32}" dev "$interface" 2>/dev/null
    fi
    ip -4 addr replace "$new_ip_address/${new_subnet_mask:-32}" dev "$interface" || rc=1
    for r in $new_routers; do
      ip -4 route replace default via "$r" dev "$interface" 2>/dev/null; break
    done ;;
  dhclient:EXPIRE|dhclient:FAIL|dhclient:RELEASE|dhclient:STOP)
    if [ -n "$old_ip_address" ]; then
      ip -4 addr del "$old_ip_address/${old_subnet_mask:-32}" dev "$interface" 2>/dev/null
    fi ;;
  dhclient:TIMEOUT)
    # Never fall back to a remembered lease without a server's answer.
    rc=1 ;;
  udhcpc:deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up ;;
  udhcpc:bound|udhcpc:renew)
    cur=$(ip -4 -o addr show dev "$interface" | awk '{print $4}')
    for a in $cur; do
      [ "${a%/*}" = "$ip" ] || ip -4 addr del "$a" dev "$interface"
    done
    ip -4 addr replace "$ip/${subnet:-255.255.255.255}" dev "$interface" || rc=1
    for r in $router; do
      ip -4 route replace default via "$r" dev "$interface" 2>/dev/null; break
    done ;;
esac
f="$EVDIR/$(date +%s%N)-$$"
{ echo "event=$event"; echo "kind=$kind"; echo "rc=$rc"; env; } > "$f.tmp" && mv "$f.tmp" "$f.ev"
exit $rc
"""

_DHCLIENT_CONF = """\
# dhcpfo lab dhclient.conf (the system one is not read)
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
timeout {timeout};
retry {timeout};
reboot {reboot};
select-timeout 0;
initial-interval 1;
backoff-cutoff 2;
request subnet-mask, broadcast-address, time-offset, routers,
        domain-name, domain-name-servers, domain-search, host-name,
        interface-mtu, rfc3442-classless-static-routes, ntp-servers;
{extra}
"""

_BOUND_DHCLIENT = ("BOUND", "RENEW", "REBIND", "REBOOT")
_BOUND_UDHCPC = ("bound", "renew")


class LabError(Exception):
    """A lab command failed; the message says what ran and what it said."""


def _check_name(name):
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name or ""):
        raise ValueError("lab names are short [a-z0-9_] words, not %r" % (name,))


def tail(path, lines=40):
    """The last *lines* lines of a (log) file, or a note that it is missing."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "(no %s: %s)" % (path, e.strerror)
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def _proc_state(pid):
    """'R', 'S', 'Z', ... or None when no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def _proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def parse_perfdhcp(text):
    """
    Parse perfdhcp's report.

    Returns ``{'rate': float or None, 'exchanges': {'DISCOVER-OFFER': {...},
    'REQUEST-ACK': {...}}}`` where each exchange dict has integer counters
    such as ``sent``, ``received``, ``drops``, ``orphans``, ``rejected``
    (whatever the report printed, key = first word(s) of the line, spaces as
    underscores, ``packets`` dropped) and floats for the delays in ms
    (``avg_delay``, ``min_delay``, ``max_delay``, ``std_deviation``).
    """
    result = {"rate": None, "exchanges": {}}
    current = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"Rate:\s*([0-9.eE+-]+)", line)
        if m:
            result["rate"] = float(m.group(1))
            continue
        m = re.match(r"\*+\s*Statistics for:?\s*(\S+?)\s*\*+", line)
        if m:
            current = result["exchanges"].setdefault(m.group(1), {})
            continue
        if line.startswith("***"):
            current = None
            continue
        if current is None or ":" not in line:
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower().replace(" packets", "").replace(" ", "_")
        value = value.strip()
        m = re.match(r"([0-9.eE+-]+)\s*(ms)?", value)
        if not m:
            continue
        try:
            num = float(m.group(1))
        except ValueError:
            continue
        if m.group(2) is None and num.is_integer() and "." not in m.group(1):
            num = int(num)
        current[key] = num
    return result


class Lab:
    """
    A set of network namespaces and the processes running in them.

    Use as a context manager, or call :meth:`close` (idempotent; it also
    runs at interpreter exit).  Names given to :meth:`lan` and :meth:`host`
    are short words; the namespaces are ``<prefix>-<name>``.

    :ivar prefix: namespace prefix (``dfo<pid>`` for the first lab of a
        process, ``dfo<pid><n>`` for later ones).
    :ivar dir: a private temporary directory for logs, lease files, scripts;
        removed at close unless the environment has ``DHCPFO_LAB_KEEP=1``
        (its path is then printed to stderr).
    """

    def __init__(self, prefix=None, keep_dir=None):
        if prefix is None:
            n = next(_counter)
            prefix = "dfo%d%s" % (os.getpid(), "" if n == 0 else _b36(n))
        if not re.fullmatch(r"[a-z][a-z0-9]{0,10}", prefix):
            raise ValueError("prefix must be [a-z][a-z0-9]{0,10}, not %r" % (prefix,))
        self.prefix = prefix
        if keep_dir is None:
            keep_dir = os.environ.get("DHCPFO_LAB_KEEP", "") not in ("", "0")
        self.keep_dir = keep_dir
        self.dir = tempfile.mkdtemp(prefix="%s-" % prefix)
        self.bindir = os.path.dirname(sys.executable)
        self._namespaces = []        # full names, creation order
        self._lans = {}              # name -> ns
        self._hosts = {}             # name -> {'ns':..., 'ifaces': {iface: lan}}
        self._procs = []             # Popen objects we started and still own
        self._pids = []              # (pid, comm) of daemonized processes
        self._clients = {}           # (kind, host, iface) -> state dict
        self._controls = {}          # host -> control URL of its dhcpfo
        self._seq = itertools.count(1)
        self._closed = False
        atexit.register(self.close)

    # -- context manager / cleanup ---------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Stop every recorded process, delete every namespace and file."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for proc in reversed(list(self._procs)):
            try:
                self.stop(proc)
            except Exception as e:  # pragma: no cover - best effort
                errors.append("stop %s: %s" % (proc.args, e))
        for pid, comm in reversed(list(self._pids)):
            try:
                self._stop_pid(pid, comm)
            except Exception as e:  # pragma: no cover
                errors.append("stop pid %d: %s" % (pid, e))
        self._pids = []
        for ns in reversed(self._namespaces):
            r = subprocess.run(["ip", "netns", "delete", ns],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
            if r.returncode != 0 and os.path.exists("/run/netns/" + ns):
                errors.append("ip netns delete %s: %s" % (ns, r.stderr.strip()))
            shutil.rmtree("/etc/netns/" + ns, ignore_errors=True)
        self._namespaces = []
        try:
            os.rmdir("/etc/netns")      # only if we left it empty
        except OSError:
            pass
        if self.keep_dir:
            sys.stderr.write("lab %s: files kept in %s\n" % (self.prefix, self.dir))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:  # pragma: no cover
            pass
        if errors:
            raise LabError("lab %s cleanup: %s" % (self.prefix, "; ".join(errors)))

    # -- topology ----------------------------------------------------------

    def ns(self, name):
        """The full namespace name of lan or host *name*."""
        if name in self._hosts:
            return self._hosts[name]["ns"]
        if name in self._lans:
            return self._lans[name]
        raise KeyError("no lan or host %r in lab %s" % (name, self.prefix))

    def _add_ns(self, name):
        _check_name(name)
        if name in self._hosts or name in self._lans:
            raise ValueError("%r already exists in lab %s" % (name, self.prefix))
        ns = "%s-%s" % (self.prefix, name)
        self._cmd(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        return ns

    def lan(self, name):
        """Create a bridge namespace (bridge ``br0``, STP off) called *name*."""
        ns = self._add_ns(name)
        self._lans[name] = ns
        self._cmd(["ip", "-n", ns, "link", "add", "br0", "type", "bridge",
                   "stp_state", "0", "forward_delay", "0"])
        self._cmd(["ip", "-n", ns, "link", "set", "br0", "up"])
        return ns

    def host(self, name, lan, address=None):
        """
        Create host namespace *name* with ``lo`` up and its ``e0`` attached
        to *lan*; *address* (``'192.0.2.1/24'`` or a list) goes on ``e0``.
        """
        if lan not in self._lans:
            raise KeyError("no lan %r" % (lan,))
        if len(name) > 12:
            raise ValueError("host names are at most 12 characters: %r" % (name,))
        ns = self._add_ns(name)
        self._hosts[name] = {"ns": ns, "ifaces": {}}
        etc = "/etc/netns/" + ns
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("# dhcpfo lab %s: private resolv.conf\n" % ns)
        # IPv6 off: no router solicitations or DAD noise on the lab wires.
        self._cmd(["ip", "netns", "exec", ns, "sh", "-c",
                   "for f in all default; do echo 1 > "
                   "/proc/sys/net/ipv6/conf/$f/disable_ipv6; done 2>/dev/null; true"])
        self._cmd(["ip", "-n", ns, "link", "set", "lo", "up"])
        self.attach(name, lan, address)
        return ns

    def attach(self, host, lan, address=None):
        """Attach *host* to one more *lan*; returns the new interface (``e1``, ...)."""
        h = self._hosts[host]
        iface = "e%d" % len(h["ifaces"])
        peer = "%s-%s" % (host, iface)
        lns = self._lans[lan]
        self._cmd(["ip", "link", "add", iface, "netns", h["ns"], "type", "veth",
                   "peer", "name", peer, "netns", lns])
        self._cmd(["ip", "-n", lns, "link", "set", peer, "master", "br0"])
        self._cmd(["ip", "-n", lns, "link", "set", peer, "up"])
        self._cmd(["ip", "-n", h["ns"], "link", "set", iface, "up"])
        h["ifaces"][iface] = lan
        if address:
            for a in [address] if isinstance(address, str) else address:
                self.addr(host, a, iface)
        return iface

    def addr(self, host, address, iface="e0"):
        """Add *address* (CIDR, documentation/benchmark ranges only) to *iface*."""
        net = ipaddress.ip_interface(address).network
        if not any(net.subnet_of(a) for a in ALLOWED_NETWORKS if a.version == net.version):
            raise ValueError("%s is outside the lab's documentation/benchmark ranges"
                             % address)
        self.ip(host, "addr", "add", address, "dev", iface)

    def link(self, host, up=False, iface="e0"):
        """Cut (``up=False``) or heal (``up=True``) *host*'s bridge port."""
        lan = self._hosts[host]["ifaces"][iface]
        self._cmd(["ip", "-n", self._lans[lan], "link", "set",
                   "%s-%s" % (host, iface), "up" if up else "down"])

    def ip(self, host, *args):
        """``ip -n NS ARGS...``; raises LabError on failure; returns stdout."""
        return self._cmd(["ip", "-n", self.ns(host)] + [str(a) for a in args]).stdout

    def mac(self, host, iface="e0"):
        """The MAC address of *host*'s *iface* (lower case)."""
        out = self.ip(host, "-j", "link", "show", "dev", iface)
        return json.loads(out)[0]["address"].lower()

    def addresses(self, host, iface="e0"):
        """IPv4 addresses (CIDR strings) on *host*'s *iface*."""
        out = self.ip(host, "-j", "-4", "addr", "show", "dev", iface)
        return ["%s/%s" % (a["local"], a["prefixlen"])
                for link in json.loads(out) for a in link.get("addr_info", [])]

    def sysctl(self, host, key, value):
        """Set a (per-namespace) sysctl, e.g. ``net.ipv4.ip_forward``."""
        path = "/proc/sys/" + key.replace(".", "/")
        self._cmd(["ip", "netns", "exec", self.ns(host), "tee", path],
                  input=str(value) + "\n")

    def forwarding(self, host, on=True):
        self.sysctl(host, "net.ipv4.ip_forward", 1 if on else 0)

    # -- commands and processes -------------------------------------------

    def _cmd(self, argv, timeout=30, input=None, check=True):
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise LabError("timed out after %ss: %s" % (timeout, shlex.join(argv))) from e
        if check and r.returncode != 0:
            raise LabError("exit %d: %s\n%s%s" % (r.returncode, shlex.join(argv),
                                                   r.stdout, r.stderr))
        return r

    def run(self, host, argv, timeout=30, check=False, input=None, env=None):
        """
        Run *argv* inside *host* (``ip netns exec``) and wait at most
        *timeout* seconds (the process is killed then, and LabError raised).
        Returns a CompletedProcess with text stdout/stderr.
        """
        full = ["ip", "netns", "exec", self.ns(host)] + [str(a) for a in argv]
        try:
            r = subprocess.run(full, input=input, capture_output=True, text=True,
                               timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            raise LabError("timed out after %ss in %s: %s\n%s%s" % (
                timeout, host, shlex.join(map(str, argv)),
                _decode(e.stdout), _decode(e.stderr))) from e
        if check and r.returncode != 0:
            raise LabError("exit %d in %s: %s\n%s%s" % (
                r.returncode, host, shlex.join(map(str, argv)), r.stdout, r.stderr))
        return r

    def path(self, name):
        """A path in the lab's private directory."""
        return os.path.join(self.dir, name)

    def spawn(self, host, argv, stdout_path=None, env=None):
        """
        Start *argv* inside *host* in the background, stdout and stderr to
        *stdout_path* (default: a new ``.log`` in the lab directory, name on
        ``proc.log_path``).  The Popen is recorded and stopped at close.
        """
        if self._closed:
            raise LabError("lab %s is closed" % self.prefix)
        if stdout_path is None:
            stdout_path = self.path("%s-%s-%d.log" % (
                host, os.path.basename(str(argv[0])), next(self._seq)))
        full = ["ip", "netns", "exec", self.ns(host)] + [str(a) for a in argv]
        with open(stdout_path, "ab") as out:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        proc.log_path = stdout_path
        proc.host = host
        self._procs.append(proc)
        return proc

    def stop(self, proc, timeout=5, sig=signal.SIGTERM):
        """
        Stop a process this lab spawned: *sig* (SIGTERM) to its recorded pid,
        then SIGKILL if it has not exited within *timeout* seconds.
        Returns its exit status.
        """
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def _record_pid(self, pid, comm):
        self._pids.append((pid, comm))

    def _stop_pid(self, pid, comm, timeout=5):
        """Stop a recorded daemon pid, only if it still is *comm*."""
        def alive():
            st = _proc_state(pid)
            return st is not None and st != "Z" and _proc_comm(pid) == comm
        if alive():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive():
                os.kill(pid, signal.SIGKILL)
        if (pid, comm) in self._pids:
            self._pids.remove((pid, comm))

    def wait_udp(self, host, port, timeout=10, proc=None):
        """Wait until something listens on UDP *port* in *host*."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.run(host, ["ss", "-Hlun", "sport = :%d" % port],
                           timeout=5).stdout
            if out.strip():
                return
            if proc is not None and proc.poll() is not None:
                raise LabError("%s exited with %s before listening on UDP %d:\n%s" % (
                    proc.args[3:], proc.returncode, port, tail(proc.log_path)))
            if time.monotonic() > deadline:
                raise LabError("nothing listens on UDP %d in %s after %ss%s" % (
                    port, host, timeout,
                    ":\n" + tail(proc.log_path) if proc is not None else ""))
            time.sleep(0.1)

    # -- servers and relays --------------------------------------------------

    def dhcpfo(self, host, args, name="dhcpfo", timeout=20):
        """
        Start ``twistd -n dhcpfo ARGS`` in *host* (log in ``<dir>/NAME.log``,
        on ``proc.log_path``) and wait until ``dhcpfo-ctl status`` answers
        there.  Raises LabError with the log's tail if it exits or does not
        answer within *timeout* seconds.
        """
        args = [str(a) for a in args]
        logfile = self.path("%s.log" % name)
        argv = [os.path.join(self.bindir, "twistd"), "-n", "--pidfile=",
                "--logfile=" + logfile, "dhcpfo"] + args
        self._controls[host] = _control_url(args)
        proc = self.spawn(host, argv, self.path("%s.stdout" % name))
        proc.twistd_log = logfile
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                self.stop(proc)
                raise LabError("dhcpfo in %s exited with %s:\n%s\n%s" % (
                    host, proc.returncode, tail(proc.log_path), tail(logfile)))
            try:
                r = self.ctl(host, "status", timeout=5)
                if r.returncode == 0:
                    return proc
            except LabError:
                r = None
            if time.monotonic() > deadline:
                self.stop(proc)
                raise LabError("dhcpfo in %s did not answer dhcpfo-ctl status within "
                               "%ss (last: %s)\nstdout:\n%s\nlog:\n%s" % (
                                   host, timeout,
                                   r and (r.stdout + r.stderr).strip(),
                                   tail(proc.log_path), tail(logfile)))
            time.sleep(0.2)

    def ctl(self, host, *args, timeout=10):
        """Run ``dhcpfo-ctl [--control URL] ARGS`` in *host*; CompletedProcess."""
        argv = [os.path.join(self.bindir, "dhcpfo-ctl")]
        url = self._controls.get(host)
        if url:
            argv += ["--control", url]
        return self.run(host, argv + list(args), timeout=timeout)

    def leases(self, host, timeout=10):
        """``dhcpfo-ctl leases --json`` in *host*, parsed: a list of dicts."""
        r = self.ctl(host, "leases", "--json", timeout=timeout)
        if r.returncode != 0:
            raise LabError("dhcpfo-ctl leases --json in %s: exit %d\n%s%s" % (
                host, r.returncode, r.stdout, r.stderr))
        data = json.loads(r.stdout)
        if isinstance(data, dict) and "leases" in data:
            data = data["leases"]
        return data

    def dnsmasq(self, host, args=(), leasefile=None, name="dnsmasq", timeout=10):
        """
        Start dnsmasq (DHCP only: ``--port=0``) in the foreground in *host*
        and wait until it listens on UDP 67.  *args* are extra options such
        as ``--interface=e0``, ``--dhcp-range=...``.  ``proc.leasefile`` says
        where its leases are.
        """
        leasefile = leasefile or self.path("%s.leases" % name)
        argv = ["dnsmasq", "-d", "-C", "/dev/null", "--port=0", "--user=root",
                "--no-resolv", "--no-hosts", "--log-facility=-", "--log-dhcp",
                "--pid-file=" + self.path("%s.pid" % name),
                "--dhcp-leasefile=" + leasefile] + [str(a) for a in args]
        proc = self.spawn(host, argv, self.path("%s.log" % name))
        proc.leasefile = leasefile
        self.wait_udp(host, 67, timeout, proc)
        return proc

    def dhcrelay(self, host, server, upper="e0", lower=("e1",), timeout=10):
        """Start ``dhcrelay -d -4 -iu UPPER -id LOWER... SERVER`` in *host*."""
        argv = ["dhcrelay", "-d", "-4", "-iu", upper]
        for iface in [lower] if isinstance(lower, str) else lower:
            argv += ["-id", iface]
        argv.append(server)
        proc = self.spawn(host, argv, self.path("%s-dhcrelay.log" % host))
        self.wait_udp(host, 67, timeout, proc)
        return proc

    def perfdhcp(self, host, args, timeout=60):
        """
        Run ``perfdhcp ARGS`` in *host*; returns :func:`parse_perfdhcp` of its
        output plus ``'output'`` (the text) and ``'returncode'``.
        perfdhcp exits 3 when packets were dropped; that is not an error here.
        """
        r = self.run(host, ["perfdhcp"] + [str(a) for a in args], timeout=timeout)
        result = parse_perfdhcp(r.stdout)
        result["output"] = r.stdout + r.stderr
        result["returncode"] = r.returncode
        if r.returncode not in (0, 3) or not result["exchanges"]:
            raise LabError("perfdhcp in %s: exit %d\n%s%s" % (
                host, r.returncode, r.stdout, r.stderr))
        return result

    # -- DHCP clients -----------------------------------------------------

    def _client(self, kind, host, iface):
        key = (kind, host, iface)
        c = self._clients.get(key)
        if c is None:
            base = self.path("%s-%s-%s" % (kind, host, iface))
            c = {"base": base, "evdir": base + ".events", "proc": None,
                 "script": base + ".sh", "log": base + ".log"}
            os.makedirs(c["evdir"])
            with open(c["script"], "w") as f:
                f.write(_CLIENT_SCRIPT.replace("@EVDIR@", shlex.quote(c["evdir"])))
            os.chmod(c["script"], 0o755)
            if kind == "dhclient":
                c.update(leasefile=base + ".leases", pidfile=base + ".pid",
                         conf=base + ".conf")
            self._clients[key] = c
        return c

    @staticmethod
    def events(client):
        """All events a client script recorded, oldest first (list of dicts)."""
        out = []
        for fn in sorted(os.listdir(client["evdir"])):
            if not fn.endswith(".ev"):
                continue
            ev = {}
            with open(os.path.join(client["evdir"], fn), errors="replace") as f:
                for line in f:
                    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.rstrip("\n"))
                    if m and m.group(1) not in ev:
                        ev[m.group(1)] = m.group(2)
            out.append(ev)
        return out

    def client_log(self, kind, host, iface="e0"):
        """Path of the *kind* (dhclient/udhcpc) client's output on host/iface."""
        return self._client(kind, host, iface)["log"]

    def client_events(self, kind, host, iface="e0"):
        """Events recorded for the *kind* (dhclient/udhcpc) client on host/iface."""
        return self.events(self._client(kind, host, iface))

    def _wait_event(self, c, since, wanted, proc, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            evs = self.events(c)[since:]
            for ev in evs:
                if ev.get("event") in wanted:
                    return ev
            if proc is not None and proc.poll() is not None:
                # It may have written its event just before exiting.
                evs = self.events(c)[since:]
                for ev in evs:
                    if ev.get("event") in wanted:
                        return ev
                return None
            if time.monotonic() > deadline:
                raise LabError("%s: no %s event within %ss; events %s\n%s" % (
                    what, "/".join(wanted), timeout,
                    [e.get("event") for e in evs], tail(c["log"])))
            time.sleep(0.05)

    def dhclient(self, host, iface="e0", extra=(), timeout=20, hostname=None,
                 client_id=None, conf_extra="", reboot=10, check=True):
        """
        Run ISC dhclient once on *host*'s *iface*:
        ``dhclient -d -v -1 -cf CONF -lf LEASES -pf PID -sf SCRIPT EXTRA IFACE``.

        The lease file is kept per host/iface, so calling it again performs an
        INIT-REBOOT (same lease file).  A dhclient already running there is
        stopped first (SIGTERM; it does not release).  The new one stays
        running (recorded, stopped at close) to renew like a real client.

        Returns a dict (see :meth:`_dhclient_result`) or, when no lease was
        obtained within *timeout* seconds, raises LabError (``check=False``:
        returns None).
        """
        c = self._client("dhclient", host, iface)
        self._stop_client(c)
        body = []
        if hostname:
            body.append('send host-name "%s";' % hostname)
        if client_id:
            body.append("send dhcp-client-identifier %s;" % client_id)
        body.append(conf_extra)
        with open(c["conf"], "w") as f:
            f.write(_DHCLIENT_CONF.format(timeout=max(3, int(timeout) - 2),
                                          reboot=reboot, extra="\n".join(body)))
        since = len(self.events(c))
        argv = ["dhclient", "-d", "-v", "-1", "-cf", c["conf"], "-lf", c["leasefile"],
                "-pf", c["pidfile"], "-sf", c["script"]] + list(extra) + [iface]
        proc = self.spawn(host, argv, c["log"], env=CLIENT_ENV)
        c["proc"] = proc
        ev = self._wait_event(c, since, _BOUND_DHCLIENT, proc, timeout,
                              "dhclient in %s" % host)
        if ev is None:
            self._stop_client(c)
            if check:
                raise LabError("dhclient in %s/%s got no lease (exit %s):\n%s" % (
                    host, iface, proc.returncode, tail(c["log"])))
            return None
        return self._dhclient_result(ev)

    @staticmethod
    def _dhclient_result(ev):
        mask = ev.get("new_subnet_mask")
        routers = ev.get("new_routers", "").split()
        return {
            "client": "dhclient",
            "reason": ev.get("event"),
            "iface": ev.get("interface"),
            "ip": ev.get("new_ip_address"),
            "mask": mask,
            "prefixlen": _prefixlen(mask),
            "server_id": ev.get("new_dhcp_server_identifier"),
            "lease_time": _int(ev.get("new_dhcp_lease_time")),
            "renewal_time": _int(ev.get("new_dhcp_renewal_time")),
            "rebinding_time": _int(ev.get("new_dhcp_rebinding_time")),
            "router": routers[0] if routers else None,
            "routers": routers,
            "dns": ev.get("new_domain_name_servers", "").split(),
            "domain": ev.get("new_domain_name"),
            "hostname": ev.get("new_host_name"),
            "broadcast": ev.get("new_broadcast_address"),
            "env": ev,
        }

    def dhclient_release(self, host, iface="e0", timeout=15):
        """
        ``dhclient -r`` with the host's lease file: sends DHCPRELEASE for the
        current lease and stops the running dhclient.  Returns the RELEASE
        event's variables (``old_ip_address`` ...) or None if dhclient ran
        no RELEASE.
        """
        return self._dhclient_flag(host, iface, "-r", ("RELEASE",), timeout)

    def dhclient_stop(self, host, iface="e0", timeout=15):
        """``dhclient -x``: stop the running dhclient without releasing."""
        return self._dhclient_flag(host, iface, "-x", ("STOP",), timeout)

    def _dhclient_flag(self, host, iface, flag, wanted, timeout):
        c = self._client("dhclient", host, iface)
        since = len(self.events(c))
        argv = ["dhclient", flag, "-v", "-cf", c["conf"], "-lf", c["leasefile"],
                "-pf", c["pidfile"], "-sf", c["script"], iface]
        with open(c["log"], "ab") as log:
            log.write(("--- %s\n" % shlex.join(argv)).encode())
        r = self.run(host, argv, timeout=timeout, env=CLIENT_ENV)
        with open(c["log"], "a") as log:
            log.write(r.stdout + r.stderr)
        if r.returncode != 0:
            raise LabError("dhclient %s in %s: exit %d\n%s%s" % (
                flag, host, r.returncode, r.stdout, r.stderr))
        # dhclient flag mode kills the old instance via the pid file; reap it.
        self._stop_client(c)
        for ev in self.events(c)[since:]:
            if ev.get("event") in wanted:
                return ev
        return None

    def udhcpc(self, host, iface="e0", hostname=None, extra=(), timeout=15,
               keep=False, check=True):
        """
        Run BusyBox udhcpc on *host*'s *iface*:
        ``udhcpc -f [-q] -n -i IFACE -s SCRIPT -t N -T 1 [-x hostname:H] EXTRA``.

        With ``keep=False`` it quits once bound (``-q``).  With ``keep=True``
        it keeps running (recorded) so that :meth:`udhcpc_renew` and
        :meth:`udhcpc_release` can signal it.  Returns a dict like
        :meth:`dhclient`'s, or raises LabError (``check=False``: None).
        """
        c = self._client("udhcpc", host, iface)
        self._stop_client(c)
        tries = max(2, int(timeout) - 1)
        argv = ["udhcpc", "-f", "-n", "-i", iface, "-s", c["script"],
                "-t", str(tries), "-T", "1"]
        if not keep:
            argv.append("-q")
        if hostname:
            argv += ["-x", "hostname:%s" % hostname]
        argv += list(extra)
        since = len(self.events(c))
        proc = self.spawn(host, argv, c["log"], env=CLIENT_ENV)
        c["proc"] = proc
        ev = self._wait_event(c, since, _BOUND_UDHCPC, proc, timeout,
                              "udhcpc in %s" % host)
        if ev is None or not keep:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self._stop_client(c)
        if ev is None:
            if check:
                raise LabError("udhcpc in %s/%s got no lease (exit %s):\n%s" % (
                    host, iface, proc.returncode, tail(c["log"])))
            return None
        return self._udhcpc_result(ev)

    @staticmethod
    def _udhcpc_result(ev):
        mask = ev.get("subnet")
        routers = ev.get("router", "").split()
        return {
            "client": "udhcpc",
            "reason": ev.get("event"),
            "iface": ev.get("interface"),
            "ip": ev.get("ip"),
            "mask": mask,
            "prefixlen": _prefixlen(mask),
            "server_id": ev.get("serverid"),
            "lease_time": _int(ev.get("lease")),
            "renewal_time": None,
            "rebinding_time": None,
            "router": routers[0] if routers else None,
            "routers": routers,
            "dns": ev.get("dns", "").split(),
            "domain": ev.get("domain"),
            "hostname": ev.get("hostname"),
            "broadcast": ev.get("broadcast"),
            "env": ev,
        }

    def _running_udhcpc(self, host, iface):
        c = self._client("udhcpc", host, iface)
        if c["proc"] is None or c["proc"].poll() is not None:
            raise LabError("no udhcpc running on %s/%s (use udhcpc(keep=True))"
                           % (host, iface))
        return c

    def udhcpc_renew(self, host, iface="e0", timeout=10):
        """SIGUSR1 to the running udhcpc (renew); returns the new lease dict."""
        c = self._running_udhcpc(host, iface)
        since = len(self.events(c))
        c["proc"].send_signal(signal.SIGUSR1)
        ev = self._wait_event(c, since, _BOUND_UDHCPC, c["proc"], timeout,
                              "udhcpc renew in %s" % host)
        if ev is None:
            raise LabError("udhcpc in %s exited while renewing:\n%s" % (
                host, tail(c["log"])))
        return self._udhcpc_result(ev)

    def udhcpc_release(self, host, iface="e0", timeout=10):
        """SIGUSR2 to the running udhcpc (DHCPRELEASE + deconfig), then stop it."""
        c = self._running_udhcpc(host, iface)
        since = len(self.events(c))
        c["proc"].send_signal(signal.SIGUSR2)
        ev = self._wait_event(c, since, ("deconfig",), c["proc"], timeout,
                              "udhcpc release in %s" % host)
        self._stop_client(c)
        return ev

    def _stop_client(self, c):
        proc = c.get("proc")
        if proc is not None:
            self.stop(proc)
            c["proc"] = None


def _control_url(args):
    """The dhcpfo-ctl URL for a ``--control tcp:PORT[:interface=ADDR]`` option."""
    spec = None
    for i, a in enumerate(args):
        if a == "--control" and i + 1 < len(args):
            spec = args[i + 1]
        elif a.startswith("--control="):
            spec = a.split("=", 1)[1]
    if not spec:
        return None
    if spec.startswith(("http://", "https://")):
        return spec
    parts = spec.split(":")
    if parts[0] != "tcp" or len(parts) < 2:
        return None
    host = "127.0.0.1"
    for p in parts[2:]:
        if p.startswith("interface="):
            host = p.split("=", 1)[1] or host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = "[%s]" % host
    return "http://%s:%s" % (host, parts[1])


def _prefixlen(mask):
    if not mask:
        return None
    try:
        return ipaddress.ip_network("0.0.0.0/" + mask).prefixlen
    except ValueError:
        return None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _decode(data):
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def _b36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out
