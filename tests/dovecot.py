"""A real IMAP server for tests: Debian's dovecot, run as a child process on free loopback ports with a temporary
config, maildir and password file. Plain IMAP (with STARTTLS offered) on one port, implicit TLS on another, both
with a self-signed certificate for 127.0.0.1 that tests trust through LEADLOOP_IMAP_CA_FILE."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from imapclient import IMAPClient

USER, PASSWORD = "inbound@leadloop.example", "imap-test-password"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
default_internal_user = {login_user}
default_internal_group = {login_group}
default_login_user = {login_user}
mail_location = maildir:{root}/mail/%n
{capability}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%n
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
  }}
}}
service anvil {{
  chroot =
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed(root: Path) -> Path:
    """A key and a certificate for 127.0.0.1 and localhost; the certificate's path (also the CA file to trust)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (root / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return root / "cert.pem"


@dataclass
class Dovecot:
    """One dovecot; `start()` it, deliver with `append`, look with `flags` / `uids`, `stop()` it."""

    idle: bool = True  # offer IDLE (off: the reader must poll)
    port: int = field(default_factory=free_port)
    ssl_port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="leadloop-dovecot-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.root / "cert.pem"

    def start(self) -> "Dovecot":
        os.chmod(self.root, 0o755)  # the mail user (nobody, when tests run as root) reaches its maildir
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        if not self.ca_file.exists():
            self_signed(self.root)
        if os.getuid() == 0:  # dovecot refuses mail access as root: the mailbox belongs to nobody
            user = pwd.getpwnam("nobody")
            uid, gid, login_user = user.pw_uid, user.pw_gid, "dovenull"
            login_group = "nogroup"
            os.chown(self.root / "mail", uid, gid)
        else:
            uid, gid = os.getuid(), os.getgid()
            login_user = pwd.getpwuid(uid).pw_name
            login_group = login_user
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        capability = "" if self.idle else "imap_capability = IMAP4rev1 LITERAL+ UIDPLUS MOVE NAMESPACE"
        (self.root / "dovecot.conf").write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                ssl_port=self.ssl_port,
                uid=uid,
                gid=gid,
                login_user=login_user,
                login_group=login_group,
                capability=capability,
            )
        )
        with (self.root / "stderr.log").open("ab") as stderr:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its own process group, so `stop` ends it with its children and nothing else
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited {self.process.returncode}: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        """Kill dovecot and its children at once (its process group: a clean shutdown takes a second)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group it leads (start_new_session)
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.root / "dovecot.log", self.root / "stderr.log")]
        return "\n".join(p for p in parts if p.strip())[-4000:]

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """Deliver a message by IMAP APPEND; its UID."""
        with self.connect() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            answer = client.append(folder, raw)
        # "[APPENDUID <uidvalidity> <uid>] Append completed"
        return int(answer.split(b"]")[0].split()[-1])

    def create(self, folder: str) -> None:
        with self.connect() as client:
            client.create_folder(folder)

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        """Each message's flags by UID."""
        with self.connect() as client:
            client.select_folder(folder, readonly=True)
            found = client.get_flags(client.search(["ALL"]))
        return {uid: {f.decode() for f in flags} for uid, flags in found.items()}

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.connect() as client:
            return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def env(self, security: str = "none") -> dict[str, str]:
        """The LEADLOOP_IMAP_* settings that read this server's INBOX."""
        port = {"none": self.port, "starttls": self.port, "ssl": self.ssl_port}[security]
        return {
            "LEADLOOP_IMAP_HOST": "127.0.0.1",
            "LEADLOOP_IMAP_PORT": str(port),
            "LEADLOOP_IMAP_SECURITY": security,
            "LEADLOOP_IMAP_USER": USER,
            "LEADLOOP_IMAP_PASSWORD": PASSWORD,
            "LEADLOOP_IMAP_CA_FILE": str(self.ca_file),
        }
