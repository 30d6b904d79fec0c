"""`leadloop keys add`, `list` and `revoke`: the HTTP API's named, scoped keys, kept in the database as hashes."""

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from leadloop.domain.crm import SCOPES
from leadloop.infra.settings import get_settings
from starter.cli.connections import database
from starter.cli.terminal import console, fail, note

if TYPE_CHECKING:
    from leadloop.services.api_keys import KeyRow, NewKey

# sqlalchemy loads inside the commands that use it (connections.py says why)

SCOPE_HELP = (
    "what the key may do, repeatable: intake (create and update leads), sales (reps' decisions), "
    "marketing (cadences, segments, bulk actions), admin (everything)"
)


def _at(when: datetime | None) -> str:
    return "" if when is None else f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def keys_add(
    name: Annotated[str, typer.Argument(help="the key's name, recorded as the actor of what it changes")],
    scope: Annotated[list[str] | None, typer.Option("--scope", help=SCOPE_HELP)] = None,
) -> None:
    """Make an API key with these scopes; it is shown once (only its hash is kept)."""
    from leadloop.services.api_keys import ApiKeyError, create_key

    async def run() -> "NewKey":
        async with database(get_settings(), migrated=True) as sessions, sessions() as session:
            made = await create_key(session, name, scope or [])
            await session.commit()
            return made

    try:
        made = asyncio.run(run())
    except ApiKeyError as exc:
        raise fail(f"{exc}; no key was made") from None
    console.print(f"key '{made.name}' ({', '.join(made.scopes)}):")
    console.print(made.key)
    note("this is the only time the key is shown (leadloop keeps its hash): give it to its holder now")


def keys_list() -> None:
    """Every API key made with `keys add`: name, first characters, scopes, made, last used, revoked."""
    from leadloop.services.api_keys import list_keys

    async def run() -> "list[KeyRow]":
        async with database(get_settings(), migrated=True) as sessions, sessions() as session:
            return await list_keys(session)

    rows = asyncio.run(run())
    table = Table(title="API keys")
    for column in ("name", "key starts", "scopes", "made", "last used", "revoked"):
        table.add_column(column)
    for row in rows:
        starts = f"{row.prefix}…"
        table.add_row(
            row.name, starts, ", ".join(row.scopes), _at(row.created_at), _at(row.last_used_at), _at(row.revoked_at)
        )
    console.print(table)
    if not rows:
        console.print(f"no keys yet: `leadloop keys add NAME --scope SCOPE` (scopes: {', '.join(SCOPES)})")
    else:
        console.print("LEADLOOP_API_KEYS' keys are not listed: each is an admin key named api-key-<n>")


def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name, as `keys list` shows it")]) -> None:
    """Revoke an API key: the HTTP service refuses it (401) within LEADLOOP_API_KEY_CACHE_SECONDS."""
    from leadloop.services.api_keys import ApiKeyError, revoke_key

    async def run() -> tuple[datetime, bool]:
        async with database(get_settings(), migrated=True) as sessions, sessions() as session:
            done = await revoke_key(session, name, datetime.now(UTC))
            await session.commit()
            return done

    try:
        when, now = asyncio.run(run())
    except ApiKeyError as exc:
        raise fail(f"{exc}; nothing was revoked") from None
    if now:
        console.print(f"key '{name}' revoked at {_at(when)}")
    else:
        console.print(f"key '{name}' was already revoked at {_at(when)}; nothing changed")
