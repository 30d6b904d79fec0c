"""`leadloop inbox`: read the inbound mailbox, store each message, signal its lead, and only then mark or move it.

Each message goes through the same steps, in this order, so a crash anywhere loses nothing and applies nothing
twice:

1. fetch it by UID with BODY.PEEK[] (it stays unseen for people reading the mailbox);
2. store it (`ingest_message`) under the source key `<folder>:<UIDVALIDITY>:<UID>` and commit: a message read
   again after a crash, or delivered twice under two UIDs, is found by that key or by its Message-ID and kept once;
3. signal it to its lead's workflow (`signal_pending`), which applies it once by the stored row's id;
4. mark it with the keyword (or move it), so the next pass does not read it again.

Every pass also signals rows a crash or an unreachable Temporal left `pending`, and once a day drops raw bodies
older than LEADLOOP_INBOUND_RETENTION_DAYS.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from leadloop.domain.tokens import Signer
from leadloop.infra.imap import Folder, ImapAccount, ImapError, Mailbox
from leadloop.infra.settings import Settings
from leadloop.services.inbound_delivery import BATCH, ingest_message, signal_pending
from leadloop.services.inbound_retention import Retention

log = logging.getLogger("leadloop.inbox")

#: the longest wait between two attempts to reach the mail server (or the database) again
MAX_BACKOFF = 300.0


@dataclass
class PassResult:
    """What one pass over the folders did."""

    stored: int = 0  # new rows
    again: int = 0  # messages already stored (read again after a crash, or a second copy of one message)
    marked: int = 0
    signalled: int = 0
    failed: int = 0  # messages that could not be stored: left unmarked, tried again next pass


def source_key(folder: Folder, uid: int) -> str:
    """Where a message was read: its folder, the folder's UIDVALIDITY and its UID (unique together, RFC 3501)."""
    return f"{folder.name}:{folder.uidvalidity}:{uid}"


class InboxReader:
    """Reads the folders LEADLOOP_IMAP_FOLDERS names, with IDLE where the server offers it, polling otherwise."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        client: Client,
        *,
        connect: Callable[[ImapAccount], Awaitable[Mailbox]] = Mailbox.connect,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.client = client
        self.account = ImapAccount.from_settings(settings)
        self.signer = Signer(settings.signing_keys())
        self._connect = connect
        self.retention = Retention(sessions, settings.inbound_retention_days)
        self._temporal_failed = False  # this pass: signals wait for the next one

    async def run(self, *, once: bool = False) -> PassResult:
        """Read until cancelled (`once`: one pass, then return what it did).

        The first connection's failure is raised as ImapError (the command says why and exits); afterwards a
        server that goes away, or a database that fails, is tried again with a growing delay. A refused login
        or a missing folder is raised at any time: no retry would help.
        """
        delay, connected = 1.0, False
        while True:
            try:
                mailbox = await self._connect(self.account)
            except ImapError as exc:
                if exc.permanent or not connected:
                    raise
                delay = await self._back_off(str(exc), delay)
                continue
            connected = True
            log.info("reading %s as %s: %s", self.account.where, self.account.user, ", ".join(self.folders))
            try:
                await self.check_folders(mailbox)
                if once:  # its failures are the caller's to report
                    return await self.read_all(mailbox)
                await self.serve(mailbox)
            except ImapError as exc:
                if exc.permanent or once:
                    raise
                delay = await self._back_off(str(exc), delay)
            except (SQLAlchemyError, OSError) as exc:
                if once:
                    raise
                delay = await self._back_off(f"the database: {exc}", delay)
            else:
                delay = 1.0
            finally:
                await mailbox.close()

    @property
    def folders(self) -> list[str]:
        return self.settings.imap_folders

    async def _back_off(self, why: str, delay: float) -> float:
        log.warning("%s; trying again in %.0f s", why, delay)
        await asyncio.sleep(delay)
        return min(delay * 2, MAX_BACKOFF)

    async def check_folders(self, mailbox: Mailbox) -> None:
        """Every folder to read, and the one to move to, must exist: a typo is said at start, not per message."""
        wanted = [*self.folders, *([self.settings.imap_move_to] if self.settings.imap_after == "move" else [])]
        for name in wanted:
            if not await mailbox.folder_exists(name):
                raise ImapError(f"the IMAP server at {self.account.where} has no folder {name!r}", permanent=True)

    async def serve(self, mailbox: Mailbox) -> None:
        """Pass after pass: between them IDLE on the first folder where the server offers it, else sleep."""
        idle = mailbox.has("IDLE")
        if not idle:
            log.info("the server offers no IDLE: reading every %.0f s", self.settings.imap_poll_seconds)
        while True:
            await self.read_all(mailbox)
            if not idle:
                await asyncio.sleep(self.settings.imap_poll_seconds)
                continue
            wait = self.settings.imap_idle_seconds
            if len(self.folders) > 1:  # IDLE watches one folder; the others are read at least this often
                wait = min(wait, self.settings.imap_poll_seconds)
            await mailbox.select(self.folders[0])
            if await mailbox.wait_for_news(wait):
                log.debug("new mail in %s", self.folders[0])

    async def read_all(self, mailbox: Mailbox) -> PassResult:
        """One pass: what is left pending is signalled, raw bodies past retention dropped, each folder read."""
        self._temporal_failed = False
        done = PassResult(signalled=await self.signal())
        await self.drop_old_bodies()
        for name in self.folders:
            await self.read_folder(mailbox, name, done)
        return done

    async def read_folder(self, mailbox: Mailbox, name: str, done: PassResult) -> None:
        folder = await mailbox.select(name)
        flag = self.settings.imap_flag if self.settings.imap_after == "flag" else None
        if flag and not folder.keeps_keywords:
            raise ImapError(
                f"the IMAP server at {self.account.where} does not keep keywords in {name!r}, so a stored message "
                "cannot be marked: set LEADLOOP_IMAP_AFTER=move and LEADLOOP_IMAP_MOVE_TO",
                permanent=True,
            )
        for uid in await mailbox.unprocessed(flag):
            raw = await mailbox.fetch(uid)
            if raw is None:  # expunged by someone else since the search
                continue
            key = source_key(folder, uid)
            try:
                row_id, new = await self.store(raw, key)
            except (OperationalError, InterfaceError, OSError):
                raise  # the database is out of reach: back off, as for the mail server
            except Exception:  # this message alone: the others are still read
                log.exception("%s could not be stored; it stays unmarked and is tried again next pass", key)
                done.failed += 1
                continue
            done.stored += new
            done.again += not new
            done.signalled += await self.signal([row_id])
            if flag:
                await mailbox.add_flag(uid, flag)
            else:
                await mailbox.move(uid, self.settings.imap_move_to)
            done.marked += 1

    async def store(self, raw: bytes, key: str) -> tuple[int, bool]:
        """Store one message and commit (nothing is marked before this returns): its row id, and whether it is new."""
        async with self.sessions() as session:
            stored = await ingest_message(
                session,
                raw,
                source="imap",
                source_key=key,
                signer=self.signer,
                bounce_domain=self.settings.bounce_domain or None,
            )
            await session.commit()
        log.info("%s: inbound message %s%s", key, stored.id, "" if stored.new else " (stored before)")
        return stored.id, stored.new

    async def signal(self, ids: list[int] | None = None) -> int:
        """Signal stored, matched messages (these ids, or every pending one); Temporal out of reach is no
        reason to stop reading: the rows stay pending and the next pass signals them (this pass stops trying,
        so a Temporal that answers slowly does not slow every message down)."""
        total = 0
        if self._temporal_failed:
            return total
        try:
            while True:
                sent = await signal_pending(self.sessions, self.client, ids=ids)
                total += sent
                if ids is not None or sent < BATCH:
                    return total
        except (ImapError, SQLAlchemyError):
            raise
        except Exception as exc:  # RPCError, an unreachable server: the row stays pending
            log.warning("could not signal inbound message(s) now (%s); the next pass tries again", exc)
            self._temporal_failed = True
            return total

    async def drop_old_bodies(self) -> None:
        """At start and then once a day: raw bodies past LEADLOOP_INBOUND_RETENTION_DAYS are dropped."""
        await self.retention.run()
