"""Where a command run opens leadloop's database (one engine, disposed after) and its Temporal client.

sqlalchemy and temporalio take about half a second to import, so they load when a command connects, not
for `leadloop --help`.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, TypeVar

from leadloop.infra.settings import Settings, get_settings
from starter.cli.terminal import fail

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    from temporalio.client import Client

T = TypeVar("T")


def safe_url(url: str) -> str:
    """The database URL without its password, to name it in messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@asynccontextmanager
async def database(settings: Settings, *, migrated: bool = False) -> "AsyncIterator[async_sessionmaker[AsyncSession]]":
    """Sessions on the settings' database; its engine is disposed when the block ends.

    Args:
        migrated: exit 1 with what to run, not a traceback, when leadloop's tables are not there yet.
    """
    from leadloop.infra.db import make_engine, make_sessionmaker
    from leadloop.services.schema import has_tables

    engine = make_engine(settings.database_url)
    try:
        if migrated and not await has_tables(engine):
            raise fail(f"the database at {safe_url(settings.database_url)} has no tables: run `leadloop db upgrade`")
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


def in_session(work: "Callable[[AsyncSession], Awaitable[T]]") -> T:
    """Run `work(session)` against leadloop's database, from a command's synchronous body."""

    async def run() -> T:
        async with database(get_settings()) as sessions, sessions() as session:
            return await work(session)

    return asyncio.run(run())


def unreachable(settings: Settings, exc: BaseException) -> str:
    """The one way the CLI says that Temporal could not be reached."""
    return f"cannot reach Temporal at {settings.temporal_address}: {exc}"


async def temporal(settings: Settings, *, lazy: bool = False, then: str = "") -> "Client":
    """A client on the settings' Temporal; unreachable, the command ends with the error line and exit 1.

    Args:
        lazy: connect on first use (a command that must go on, storing, while Temporal is down).
        then: what became of the command's work, after the error line's "; " (`nothing was changed`).
    """
    from leadloop.infra.temporal import connect

    try:
        return await connect(settings, lazy=lazy)
    except RuntimeError as exc:
        raise fail(unreachable(settings, exc) + (f"; {then}" if then else "")) from None


async def temporal_or_reason(settings: Settings) -> "Client | str":
    """A client, or why there is none (`unreachable`), for a command that goes on without Temporal."""
    from leadloop.infra.temporal import connect

    try:
        return await connect(settings)
    except RuntimeError as exc:
        return unreachable(settings, exc)


@contextmanager
def lead_workflow(lead_id: int) -> Iterator[None]:
    """Temporal's answer about one lead's workflow (none, ended, refused) as the error line `lead <id>: <why>`."""
    from temporalio.service import RPCError

    try:
        yield
    except RPCError as exc:
        raise fail(f"lead {lead_id}: {exc.message}") from None
