"""DHCP client runners of the lab: ISC dhclient and BusyBox udhcpc, with scripts of ours."""

import ipaddress
import os
import re
import shlex
import signal
import subprocess
import time

from tests.lab.errors import CLIENT_ENV, LabError, tail

__all__ = ["ClientRunners"]

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


class ClientRunners:
    """
    Mixin for :class:`tests.lab.Lab`: run real DHCP clients in a host.

    The clients run a script of ours that records every event in a
    directory and configures only the lab interface; it never touches /etc.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}           # (kind, host, iface) -> state dict

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
