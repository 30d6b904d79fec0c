"""The inbound mailbox over IMAP: log in, list the messages not yet stored, fetch one, mark or move it, wait for more.

imapclient speaks IMAP (blocking, on top of the standard library's imaplib); every call here runs it in the
connection's own thread, so the event loop (the database, Temporal) never waits on the mail server.
"""

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError

from leadloop.infra.settings import Settings

T = TypeVar("T")
DELETED = rb"\Deleted"


class ImapError(Exception):
    """The mailbox cannot be read. `permanent`: trying again will not help (a refused login, a missing folder)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class ImapAccount:
    """Where the mailbox is and how to log in to it."""

    host: str
    port: int
    security: Literal["ssl", "starttls", "none"]
    user: str
    password: str = field(repr=False)
    ca_file: Path | None = None
    timeout: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "ImapAccount":
        return cls(
            host=settings.imap_host,
            port=settings.imap_port_or_default(),
            security=settings.imap_security,
            user=settings.imap_user,
            password=settings.imap_password.get_secret_value() if settings.imap_password else "",
            ca_file=settings.imap_ca_file,
            timeout=settings.imap_timeout,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext:
        """Certificates checked against the system's CAs, or the given file's; the host name must match."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


@dataclass(frozen=True)
class Folder:
    """A selected folder: its UIDVALIDITY (UIDs are only unique under it) and whether it keeps keywords."""

    name: str
    uidvalidity: int
    keeps_keywords: bool


class Mailbox:
    """One logged-in IMAP connection. Use `Mailbox.connect`; `close` when done."""

    def __init__(self, account: ImapAccount, client: IMAPClient, thread: ThreadPoolExecutor) -> None:
        self.account = account
        self._client = client
        self._thread = thread
        self._busy = 0

    @classmethod
    async def connect(cls, account: ImapAccount) -> "Mailbox":
        """Connect, secure the connection as the account says, and log in."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap")
        try:
            client = await _in_thread(thread, account, lambda: _login(account))
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(account, client, thread)

    async def _call(self, work: Callable[[IMAPClient], T]) -> T:
        self._busy += 1
        try:
            return await _in_thread(self._thread, self.account, lambda: work(self._client))
        finally:
            self._busy -= 1

    def has(self, capability: str) -> bool:
        return bool(self._client.has_capability(capability))

    async def folder_exists(self, name: str) -> bool:
        return bool(await self._call(lambda c: c.folder_exists(name)))

    async def select(self, name: str) -> Folder:
        """Select a folder (read-write: marking and moving need it)."""
        answer: dict[bytes, Any] = await self._call(lambda c: c.select_folder(name))
        permanent = answer.get(b"PERMANENTFLAGS") or ()
        return Folder(name, int(answer[b"UIDVALIDITY"]), keeps_keywords=b"\\*" in permanent)

    async def unprocessed(self, flag: str | None) -> list[int]:
        """UIDs of the selected folder's messages without `flag` (all of them when None), oldest first;
        messages someone marked deleted are left alone."""
        criteria = ["UNKEYWORD", flag, "NOT", "DELETED"] if flag else ["NOT", "DELETED"]
        found: list[int] = await self._call(lambda c: c.search(criteria))
        return sorted(found)

    async def fetch(self, uid: int) -> bytes | None:
        """The whole message by UID, read with BODY.PEEK[] so it stays unseen; None when it is gone."""
        answer: dict[int, dict[bytes, Any]] = await self._call(lambda c: c.fetch([uid], ["BODY.PEEK[]"]))
        body = answer.get(uid, {}).get(b"BODY[]")
        return bytes(body) if body is not None else None

    async def add_flag(self, uid: int, flag: str) -> None:
        await self._call(lambda c: c.add_flags([uid], [flag], silent=True))

    async def move(self, uid: int, folder: str) -> None:
        """MOVE where the server offers it; else copy, mark deleted and expunge that one UID (UIDPLUS)."""
        if self.has("MOVE"):
            await self._call(lambda c: c.move([uid], folder))
            return

        def copy_then_delete(c: IMAPClient) -> None:
            c.copy([uid], folder)
            c.add_flags([uid], [DELETED], silent=True)
            if c.has_capability("UIDPLUS"):
                c.uid_expunge([uid])  # without UIDPLUS it stays, marked deleted, and is never read again

        await self._call(copy_then_delete)

    async def wait_for_news(self, seconds: float) -> bool:
        """IMAP IDLE on the selected folder until a message arrives (True) or `seconds` pass (False)."""
        return await self._call(lambda c: _idle(c, seconds))

    async def close(self) -> None:
        """Log out; when the server is gone, or a call was cancelled mid-way (an IDLE), just close the socket,
        which also ends that call in its thread."""
        try:
            if self._busy:
                raise TimeoutError
            await asyncio.wait_for(self._call(lambda c: c.logout()), 5)
        except (ImapError, TimeoutError):
            try:
                self._client.shutdown()
            except OSError:
                pass
        finally:
            self._thread.shutdown(wait=False)


def _login(account: ImapAccount) -> IMAPClient:
    client = IMAPClient(
        account.host,
        port=account.port,
        ssl=account.security == "ssl",
        ssl_context=account.tls_context() if account.security == "ssl" else None,
        timeout=account.timeout,
    )
    try:
        if account.security == "starttls":
            try:
                client.starttls(account.tls_context())
            except CapabilityError:
                raise ImapError(
                    f"the IMAP server at {account.where} does not offer STARTTLS: the password would go in clear "
                    "(set LEADLOOP_IMAP_SECURITY=ssl, or none for a server on loopback)",
                    permanent=True,
                ) from None
        try:
            client.login(account.user, account.password)
        except LoginError as exc:
            raise ImapError(
                f"the IMAP server at {account.where} refused the login of {account.user!r}: {_text(exc)}",
                permanent=True,
            ) from None
    except BaseException:
        try:
            client.shutdown()
        except OSError:
            pass
        raise
    return client


def _idle(client: IMAPClient, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    client.idle()
    news = False
    try:
        while not news and (left := deadline - time.monotonic()) > 0:
            started = time.monotonic()
            answers = client.idle_check(timeout=left)
            news = any(len(answer) > 1 and answer[1] in (b"EXISTS", b"RECENT") for answer in answers)
            if not answers and time.monotonic() - started < min(left, 1.0) * 0.5:
                # poll said readable yet nothing came: the server closed the connection
                raise ImapError(f"the IMAP server at {client.host}:{client.port} closed the connection")
    finally:
        client.idle_done()
    return news


async def _in_thread(thread: ThreadPoolExecutor, account: ImapAccount, work: Callable[[], T]) -> T:
    """Run blocking imapclient work in the connection's thread; its failures as ImapError."""
    try:
        return await asyncio.get_running_loop().run_in_executor(thread, work)
    except ImapError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise ImapError(
            f"the IMAP server at {account.where}: its certificate is not trusted ({exc.verify_message})"
        ) from exc
    except (OSError, IMAPClientError) as exc:  # refused, reset, timed out, TLS, a NO or BAD, a dropped connection
        raise ImapError(f"the IMAP server at {account.where}: {_text(exc)}") from exc


def _text(exc: BaseException) -> str:
    """An exception's words, without the bytes' b'...' wrapping imaplib leaves around the server's answer."""
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    parts = [a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in exc.args]
    text = " ".join(part for part in parts if part) or type(exc).__name__
    return text.removeprefix("b'").removesuffix("'") if text.startswith("b'") else text
