"""The IMAP reader against a real dovecot, on SQLite and PostgreSQL: stored once, marked only after, IDLE, reconnects;
signals reach a real lead workflow (time-skipping server) once."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from leadloop.domain.models import LeadState
from leadloop.infra.db import InboundMessage, Lead, make_engine, make_sessionmaker
from leadloop.infra.imap import ImapError
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.settings import Settings
from leadloop.services.enrollment import workflow_id
from leadloop.services.imap_reader import InboxReader
from leadloop.services.inbound import store_inbound
from tests.conftest import with_pydantic
from tests.dovecot import Dovecot
from tests.leadloop.services.test_inbound import add_lead, add_send
from tests.workflows.test_lead_nurture import CADENCE, RecordingSender, nurture_worker, start

STORED = "$LeadloopStored"


def message(number: int, *, in_reply_to: str | None = None, text: str = "yes, call me on Tuesday") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Anna <anna@example.com>", "hello@leadloop.example", "Re: Welcome"
    msg["Message-ID"] = f"<reply-{number}@mail.example>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(f"{text}\n\nOn Monday, Leadloop wrote:\n> Welcome aboard\n")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def imap_settings(make_settings: Any, server: Dovecot, security: str = "none", **extra: Any) -> Settings:
    values = {key.removeprefix("LEADLOOP_").lower(): value for key, value in server.env(security).items()}
    return make_settings(**(values | extra))  # type: ignore[no-any-return]


async def nowhere() -> Client:
    """A client for tests whose messages match no lead: nothing is signalled, so it never connects."""
    return await Client.connect("127.0.0.1:1", lazy=True)


async def stored_rows(sessions: async_sessionmaker[AsyncSession]) -> list[InboundMessage]:
    async with sessions() as session:
        return list((await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars())


async def wait_rows(sessions: async_sessionmaker[AsyncSession], count: int, within: float = 15) -> list[InboundMessage]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        rows = await stored_rows(sessions)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} row(s) not stored within {within} s; have {len(await stored_rows(sessions))}")


@pytest.fixture
async def sqlite_sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """One SQLite database, for the tests of the IMAP side (the store's own tests run on both databases)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}"
    await upgrade_database(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def test_each_message_is_stored_once_then_flagged_and_left_unseen(
    dovecot: Dovecot, sessionmaker: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    delivered = {dovecot.append(message(i)): message(i) for i in range(3)}
    reader = InboxReader(imap_settings(make_settings, dovecot), sessionmaker, await nowhere())
    done = await reader.run(once=True)
    assert (done.stored, done.again, done.marked) == (3, 0, 3)
    uidvalidity = dovecot.uidvalidity()
    rows = await stored_rows(sessionmaker)
    assert {row.source_key: row.raw for row in rows} == {
        f"INBOX:{uidvalidity}:{uid}": raw for uid, raw in delivered.items()
    }
    assert {row.source for row in rows} == {"imap"} and {row.status for row in rows} == {"unmatched"}
    flags = dovecot.flags()
    assert all(STORED in flags[uid] and "\\Seen" not in flags[uid] for uid in delivered)
    again = await reader.run(once=True)
    assert (again.stored, again.again, again.marked) == (0, 0, 0)
    assert len(await stored_rows(sessionmaker)) == 3


async def test_a_message_is_not_marked_when_it_could_not_be_stored(
    dovecot: Dovecot, sessionmaker: async_sessionmaker[AsyncSession], make_settings: Any, tmp_path: Path
) -> None:
    uid = dovecot.append(message(1))
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}")  # no migration: the store fails
    settings = imap_settings(make_settings, dovecot)
    try:
        with pytest.raises(SQLAlchemyError):
            await InboxReader(settings, make_sessionmaker(engine), await nowhere()).run(once=True)
    finally:
        await engine.dispose()
    assert STORED not in dovecot.flags()[uid]
    done = await InboxReader(settings, sessionmaker, await nowhere()).run(once=True)
    assert (done.stored, done.marked) == (1, 1)
    assert STORED in dovecot.flags()[uid]


async def test_one_message_delivered_twice_is_stored_once(
    dovecot: Dovecot, sessionmaker: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    first, second = dovecot.append(message(7)), dovecot.append(message(7))
    done = await InboxReader(imap_settings(make_settings, dovecot), sessionmaker, await nowhere()).run(once=True)
    assert (done.stored, done.again, done.marked) == (1, 1, 2)
    rows = await stored_rows(sessionmaker)
    assert len(rows) == 1 and rows[0].source_key == f"INBOX:{dovecot.uidvalidity()}:{first}"
    flags = dovecot.flags()
    assert STORED in flags[first] and STORED in flags[second]


async def test_huge_headerless_and_malformed_messages_are_stored_whole(
    dovecot: Dovecot, sessionmaker: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    huge = message(1) + b"x" * 998 + (b"\r\n" + b"y" * 998) * 21_000  # about 20 MB
    headerless = b"just some words, not a single header\r\n"
    malformed = (
        b'From: x@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="never"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n--wrong\r\n=?utf-8?B?broken?=\r\n\xff\xfe\x80"
    )
    uids = {dovecot.append(raw): raw for raw in (huge, headerless, malformed)}
    done = await InboxReader(imap_settings(make_settings, dovecot), sessionmaker, await nowhere()).run(once=True)
    assert (done.stored, done.marked) == (3, 3)
    rows = await stored_rows(sessionmaker)
    assert sorted(len(row.raw or b"") for row in rows) == sorted(len(raw) for raw in uids.values())
    assert {row.raw for row in rows} == set(uids.values())
    assert len(huge) > 20_000_000 and all(row.kind for row in rows)


async def test_move_mode_moves_each_stored_message_and_names_a_missing_folder(
    dovecot: Dovecot, sqlite_sessions: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    uid = dovecot.append(message(1))
    settings = imap_settings(make_settings, dovecot, imap_after="move", imap_move_to="Stored")
    with pytest.raises(ImapError, match="no folder 'Stored'") as refused:
        await InboxReader(settings, sqlite_sessions, await nowhere()).run(once=True)
    assert refused.value.permanent
    assert await stored_rows(sqlite_sessions) == [] and uid in dovecot.flags()
    dovecot.create("Stored")
    done = await InboxReader(settings, sqlite_sessions, await nowhere()).run(once=True)
    assert (done.stored, done.marked) == (1, 1)
    assert dovecot.flags() == {} and len(dovecot.flags("Stored")) == 1
    assert [row.source_key for row in await stored_rows(sqlite_sessions)] == [f"INBOX:{dovecot.uidvalidity()}:{uid}"]


async def test_every_folder_named_is_read(
    dovecot: Dovecot, sqlite_sessions: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    dovecot.append(message(1))
    dovecot.append(message(2), folder="Bounces")
    settings = imap_settings(make_settings, dovecot, imap_folders=["INBOX", "Bounces"])
    await InboxReader(settings, sqlite_sessions, await nowhere()).run(once=True)
    keys = sorted(row.source_key.split(":")[0] for row in await stored_rows(sqlite_sessions))
    assert keys == ["Bounces", "INBOX"]


async def test_idle_picks_up_a_message_delivered_while_waiting(
    dovecot: Dovecot, sqlite_sessions: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    dovecot.append(message(1))
    # an hour between polls: only IDLE can bring the second message in within seconds
    settings = imap_settings(make_settings, dovecot, imap_idle_seconds=600, imap_poll_seconds=3600)
    task = asyncio.create_task(InboxReader(settings, sqlite_sessions, await nowhere()).run())
    try:
        await wait_rows(sqlite_sessions, 1)
        await asyncio.sleep(0.5)  # the reader is in IDLE now
        started = asyncio.get_running_loop().time()
        uid = dovecot.append(message(2))
        rows = await wait_rows(sqlite_sessions, 2, within=10)
        assert asyncio.get_running_loop().time() - started < 10
        assert rows[1].source_key.endswith(f":{uid}")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_without_idle_the_folders_are_polled(
    sqlite_sessions: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    server = Dovecot(idle=False).start()
    try:
        server.append(message(1))
        settings = imap_settings(make_settings, server, imap_poll_seconds=0.5)
        task = asyncio.create_task(InboxReader(settings, sqlite_sessions, await nowhere()).run())
        try:
            await wait_rows(sqlite_sessions, 1)
            server.append(message(2))
            await wait_rows(sqlite_sessions, 2, within=10)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        server.remove()


async def test_the_reader_reconnects_when_the_server_comes_back(
    dovecot: Dovecot, sqlite_sessions: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    dovecot.append(message(1))
    settings = imap_settings(make_settings, dovecot, imap_idle_seconds=600, imap_poll_seconds=3600)
    task = asyncio.create_task(InboxReader(settings, sqlite_sessions, await nowhere()).run())
    try:
        await wait_rows(sqlite_sessions, 1)
        await asyncio.sleep(0.5)
        dovecot.stop()
        await asyncio.sleep(1.5)  # the reader sees the connection drop and starts backing off
        dovecot.start()
        dovecot.append(message(2))
        await wait_rows(sqlite_sessions, 2, within=20)
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_refused_login_is_said_and_not_retried(
    dovecot: Dovecot, sqlite_sessions: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    settings = imap_settings(make_settings, dovecot, imap_password="wrong")
    with pytest.raises(ImapError, match="refused the login") as refused:
        await InboxReader(settings, sqlite_sessions, await nowhere()).run()
    assert refused.value.permanent


async def test_old_raw_bodies_are_dropped_at_start(
    dovecot: Dovecot, sessionmaker: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    async with sessionmaker() as session:
        old = await store_inbound(
            session, source="imap", source_key="INBOX:1:1", raw=b"old", received_at=datetime.now(UTC) - timedelta(40)
        )
        await session.commit()
    await InboxReader(imap_settings(make_settings, dovecot), sessionmaker, await nowhere()).run(once=True)
    async with sessionmaker() as session:
        row = await session.get(InboundMessage, old.id)
        assert row is not None and row.raw is None


async def test_replies_reach_the_leads_workflow_once_even_when_stored_before_a_crash(
    dovecot: Dovecot, sessionmaker: async_sessionmaker[AsyncSession], make_settings: Any, time_skipping_env: Any
) -> None:
    env: WorkflowEnvironment = time_skipping_env
    client = with_pydantic(env.client)
    lead_id = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead_id, "welcome", "Welcome")
    task_queue = f"tq-{uuid.uuid4()}"
    async with nurture_worker(client, task_queue, RecordingSender()):
        await start(client, task_queue, Lead(id=lead_id, email="anna@example.com", timezone="UTC"), CADENCE)
        first = dovecot.append(message(1, in_reply_to=sent.message_id))
        dovecot.append(message(1, in_reply_to=sent.message_id))  # the same reply, delivered twice
        dovecot.append(message(2, in_reply_to=sent.message_id))
        settings = imap_settings(make_settings, dovecot)
        reader = InboxReader(settings, sessionmaker, client)
        # a crash after the store, before the signal and the mark: the row is there, pending; the message unmarked
        await reader.store(message(1, in_reply_to=sent.message_id), f"INBOX:{dovecot.uidvalidity()}:{first}")
        done = await reader.run(once=True)
        assert (done.stored, done.again, done.marked, done.signalled) == (1, 2, 3, 2)
        handle = client.get_workflow_handle(workflow_id(lead_id))
        state = await handle.query("state", result_type=LeadState)
        assert state.inbound.human_reply == 2
        rows = await stored_rows(sessionmaker)
        assert [(row.lead_id, row.status) for row in rows] == [(lead_id, "signalled")] * 2
        await reader.run(once=True)  # nothing new, nothing pending: nothing more applied
        assert (await handle.query("state", result_type=LeadState)).inbound.human_reply == 2
        await handle.terminate("test over")


async def test_with_temporal_out_of_reach_replies_are_stored_and_marked_then_signalled_on_a_later_pass(
    dovecot: Dovecot, sqlite_sessions: async_sessionmaker[AsyncSession], make_settings: Any, time_skipping_env: Any
) -> None:
    client = with_pydantic(time_skipping_env.client)
    lead_id = await add_lead(sqlite_sessions, "anna@example.com")
    sent = await add_send(sqlite_sessions, lead_id, "welcome", "Welcome")
    uids = [dovecot.append(message(i, in_reply_to=sent.message_id)) for i in range(3)]
    settings = imap_settings(make_settings, dovecot)
    down = await InboxReader(settings, sqlite_sessions, await nowhere()).run(once=True)
    assert (down.stored, down.marked, down.signalled) == (3, 3, 0)
    assert [row.status for row in await stored_rows(sqlite_sessions)] == ["pending"] * 3
    assert all(STORED in dovecot.flags()[uid] for uid in uids)
    task_queue = f"tq-{uuid.uuid4()}"
    async with nurture_worker(client, task_queue, RecordingSender()):
        await start(client, task_queue, Lead(id=lead_id, email="anna@example.com", timezone="UTC"), CADENCE)
        back = await InboxReader(settings, sqlite_sessions, client).run(once=True)
        assert (back.stored, back.marked, back.signalled) == (0, 0, 3)
        assert [row.status for row in await stored_rows(sqlite_sessions)] == ["signalled"] * 3
        handle = client.get_workflow_handle(workflow_id(lead_id))
        assert (await handle.query("state", result_type=LeadState)).inbound.human_reply == 3
        await handle.terminate("test over")


class Poisoned(InboxReader):
    """A reader whose store fails for one message, as an unforeseen bug would."""

    async def store(self, raw: bytes, key: str) -> tuple[int, bool]:
        if b"poison" in raw:
            raise ValueError("a bug")
        return await super().store(raw, key)


async def test_a_message_that_cannot_be_stored_stays_unmarked_and_the_others_are_read(
    dovecot: Dovecot, sqlite_sessions: async_sessionmaker[AsyncSession], make_settings: Any
) -> None:
    bad, good = dovecot.append(message(1, text="poison")), dovecot.append(message(2))
    settings = imap_settings(make_settings, dovecot)
    done = await Poisoned(settings, sqlite_sessions, await nowhere()).run(once=True)
    assert (done.stored, done.marked, done.failed) == (1, 1, 1)
    flags = dovecot.flags()
    assert STORED not in flags[bad] and STORED in flags[good]
    again = await InboxReader(settings, sqlite_sessions, await nowhere()).run(once=True)
    assert (again.stored, again.marked, again.failed) == (1, 1, 0)
