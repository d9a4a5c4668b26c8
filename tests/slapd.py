"""A real OpenLDAP slapd for tests: private config, loopback ports, TLS.

``Slapd(workdir).start()`` writes a ``slapd.conf`` (core, cosine,
inetorgperson and ``docs/ldap/dhcpfo.schema``; an mdb database), a test CA
and a server certificate for ``127.0.0.1``/``localhost`` made with
``cryptography``, then starts ``slapd`` on two free loopback ports (``ldap://``
with StartTLS available, and ``ldaps://``), waits until it answers a bind and
loads a small tree:

    dc=example,dc=org
      cn=admin        the rootdn (password in slapd.conf)
      cn=dhcpfo       the store's service account (password in a file)
      ou=dhcpfo       the account may write below this; tests add bases here

``stop()`` sends SIGTERM to the pid in slapd's pid file (after checking that
the process is the slapd started with this config) and waits for it to exit;
``start()`` again reuses the database and the ports.  Nothing here kills by
name.  The ``ldap*`` helpers run the OpenLDAP command-line tools as the rootdn.

Needs root and the Debian packages ``slapd`` and ``ldap-utils``;
:func:`skipReason` says why not when they are missing.
"""

import base64
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(ROOT, "docs", "ldap", "dhcpfo.schema")
SYSTEM_SCHEMA = "/etc/ldap/schema"
SUFFIX = "dc=example,dc=org"
ROOTDN = "cn=admin," + SUFFIX
ROOTPW = "rootsecret"
BINDDN = "cn=dhcpfo," + SUFFIX
BINDPW = "dhcpfo-secret"
LEASES = "ou=dhcpfo," + SUFFIX


def _tool(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def skipReason():
    """Why a real slapd cannot run here, or None."""
    if os.geteuid() != 0:
        return "the slapd fixture needs root"
    missing = [t for t in ("slapd", "ldapadd", "ldapsearch", "ldapdelete")
               if _tool(t) is None]
    if missing:
        return ("%s not installed (DEBIAN_FRONTEND=noninteractive apt-get "
                "install -y slapd ldap-utils)" % ", ".join(missing))
    for name in ("core", "cosine", "inetorgperson"):
        if not os.path.exists(os.path.join(SYSTEM_SCHEMA, name + ".schema")):
            return "%s/%s.schema is missing" % (SYSTEM_SCHEMA, name)
    return None


# -- certificates -------------------------------------------------------------

class CA:
    """A throw-away certificate authority."""

    def __init__(self, name):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))

    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issueServer(self, dnsNames=("localhost",), ips=("127.0.0.1",)):
        """(certificate PEM, private key PEM) for a TLS server."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        names = [x509.DNSName(n) for n in dnsNames]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(
                NameOID.COMMON_NAME, dnsNames[0] if dnsNames else ips[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        keyPEM = key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), keyPEM


def writeFile(path, data, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the server ----------------------------------------------------------------

_CONF = """\
include {system}/core.schema
include {system}/cosine.schema
include {system}/inetorgperson.schema
include {schema}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
loglevel none
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key

database mdb
maxsize 2147483648
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db
{sync}
index objectClass eq
access to attrs=userPassword by anonymous auth by * none
access to dn.subtree="{leases}" by dn.exact="{binddn}" write by * none
access to * by * none
limits dn.exact="{binddn}" size.prtotal=unlimited
"""

_TREE = """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
dc: example
o: example

dn: {binddn}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: dhcpfo
userPassword: {bindpw}

dn: {leases}
objectClass: organizationalUnit
ou: dhcpfo
"""


class SlapdError(Exception):
    pass


class Slapd:
    """One private slapd.  ``sync=False`` adds ``dbnosync`` (faster, not
    crash-safe): for tests that measure something other than durability.
    ``netns``: run slapd and the tools in that network namespace (on its
    loopback)."""

    def __init__(self, workdir, sync=True, netns=None):
        self.dir = os.path.abspath(workdir)
        self.sync = sync
        self._wrap = ["ip", "netns", "exec", netns] if netns else []
        self.port = None
        self.tlsPort = None
        self.pid = None
        self._prepared = False

    # where things are
    @property
    def url(self):
        return "ldap://127.0.0.1:%d" % self.port

    @property
    def ldapsURL(self):
        return "ldaps://127.0.0.1:%d" % self.tlsPort

    @property
    def caFile(self):
        return os.path.join(self.dir, "ca.pem")

    @property
    def passwordFile(self):
        return os.path.join(self.dir, "bindpw")

    @property
    def confFile(self):
        return os.path.join(self.dir, "slapd.conf")

    @property
    def pidFile(self):
        return os.path.join(self.dir, "slapd.pid")

    def _prepare(self):
        os.makedirs(os.path.join(self.dir, "db"), exist_ok=True)
        self.ca = CA("dhcpfo test CA")
        cert, key = self.ca.issueServer()
        writeFile(self.caFile, self.ca.pem(), 0o644)
        writeFile(os.path.join(self.dir, "server.pem"), cert, 0o644)
        writeFile(os.path.join(self.dir, "server.key"), key)
        writeFile(self.passwordFile, BINDPW + "\n")
        writeFile(self.confFile, _CONF.format(
            system=SYSTEM_SCHEMA, schema=SCHEMA, dir=self.dir, suffix=SUFFIX,
            rootdn=ROOTDN, rootpw=ROOTPW, binddn=BINDDN, leases=LEASES,
            sync="" if self.sync else "dbnosync"))
        self.port, self.tlsPort = freePort(), freePort()
        self._prepared = True

    def start(self, timeout=15):
        first = not self._prepared
        if first:
            self._prepare()
        if self.pid is not None:
            raise SlapdError("slapd %d is already running" % self.pid)
        urls = "ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/" % (self.port, self.tlsPort)
        argv = [_tool("slapd"), "-f", self.confFile, "-h", urls, "-u", "root",
                "-g", "root"]
        out = subprocess.run(self._wrap + argv,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise SlapdError("slapd did not start (exit %d): %s"
                             % (out.returncode, out.stderr.strip()))
        deadline = time.monotonic() + timeout
        while True:
            if self.pid is None and os.path.exists(self.pidFile):
                self.pid = self._readPid()
            if self.pid is not None and self._answers():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise SlapdError("slapd on %s did not answer within %ss"
                                 % (self.url, timeout))
            time.sleep(0.02)
        if first:
            self.ldapadd(_TREE.format(suffix=SUFFIX, binddn=BINDDN,
                                      bindpw=BINDPW, leases=LEASES))
        return self

    def _readPid(self):
        try:
            with open(self.pidFile) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if self._isOurs(pid) else None

    def _isOurs(self, pid):
        """Whether ``pid`` is a live slapd started with our config file."""
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%d/stat" % pid, "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            return False
        return state != b"Z" and self.confFile.encode() in argv

    def _answers(self):
        out = subprocess.run(self._wrap + [_tool("ldapwhoami") or "ldapwhoami", "-x",
                                           "-H", self.url, "-D", ROOTDN, "-w", ROOTPW],
                             capture_output=True, timeout=10)
        return out.returncode == 0

    def stop(self, timeout=15):
        """SIGTERM the slapd of our pid file; wait until it has exited."""
        pid = self.pid if self.pid is not None else self._readPid()
        self.pid = None
        if pid is None or not self._isOurs(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._isOurs(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.02)

    def restart(self):
        self.stop()
        return self.start()

    # -- the OpenLDAP tools, as the rootdn ---------------------------------------
    def _run(self, argv, input=None):
        out = subprocess.run(self._wrap + argv + ["-x", "-H", self.url, "-D", ROOTDN,
                                                  "-w", ROOTPW],
                             input=input, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise SlapdError("%s failed (%d): %s" % (argv[0], out.returncode,
                                                      out.stderr.strip()))
        return out.stdout

    def ldapadd(self, ldif):
        self._run([_tool("ldapadd")], input=ldif)

    def ldapdelete(self, dn, recursive=False):
        self._run([_tool("ldapdelete")] + (["-r"] if recursive else []) + [dn])

    def ldapsearch(self, base, filter="(objectClass=*)", scope="one", attrs=()):
        """Entries as a list of ``{attribute name (lowercase): [bytes values]}``
        plus ``"dn"``."""
        text = self._run([_tool("ldapsearch"), "-LLL", "-o", "ldif-wrap=no",
                          "-z", "0", "-s", scope, "-b", base, filter] + list(attrs))
        entries = []
        for block in text.strip().split("\n\n"):
            if not block.strip():
                continue
            entry = {}
            for line in block.splitlines():
                if line.startswith("#"):
                    continue
                name, _, value = line.partition(":")
                if value.startswith(":"):
                    value = base64.b64decode(value[1:].strip())
                else:
                    value = value[1:].encode("utf-8") if value.startswith(" ") \
                        else value.encode("utf-8")
                entry.setdefault(name.lower(), []).append(value)
            entry["dn"] = entry["dn"][0].decode("utf-8")
            entries.append(entry)
        return entries

    def addBase(self, name):
        """A fresh organizationalUnit below ``ou=dhcpfo``; its DN."""
        dn = "ou=%s,%s" % (name, LEASES)
        self.ldapadd("dn: %s\nobjectClass: organizationalUnit\nou: %s\n" % (dn, name))
        return dn
