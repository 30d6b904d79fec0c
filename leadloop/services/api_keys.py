"""API keys in the database: create (the key shown once, only its hash kept), list, revoke, and find by hash."""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.domain.crm import SCOPES, CrmInputError, Scope, check_actor, check_scopes
from leadloop.infra.db import ApiKey

#: Every key leadloop makes starts so: a key that does not is never looked up in the database.
KEY_PREFIX = "ll_"
#: How much of a key `keys list` shows, to tell keys apart (the prefix and 7 of its ~256 random bits).
SHOWN_CHARACTERS = 10
# the names LEADLOOP_API_KEYS' keys go by: a stored key named so would be mistaken for one of them in histories
_SETTINGS_NAME = re.compile(r"api-key-[0-9]+", re.IGNORECASE)


class ApiKeyError(ValueError):
    """A key that cannot be made or revoked; the message names what and why, and nothing was changed."""


@dataclass(frozen=True)
class NewKey:
    """A key just made: `key` is its only showing (the database keeps its hash)."""

    name: str
    scopes: tuple[Scope, ...]
    key: str
    prefix: str


@dataclass(frozen=True)
class KeyRow:
    """A stored key as `keys list` shows it (never the key itself)."""

    name: str
    prefix: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class FoundKey:
    """A key that is valid now: its row's id (to mark it used), name and scopes."""

    id: int
    name: str
    scopes: tuple[Scope, ...]


def hash_key(key: str) -> str:
    """The sha256 hex of a key, as stored: a unique-index look-up by it leaks nothing of the key through timing."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_key_name(name: str) -> str:
    """A key's name, recorded as the actor of what it changes: an actor's characters, not a settings key's name."""
    try:
        check_actor(name)
    except CrmInputError:
        raise ApiKeyError(
            f"key name {name!r} is not allowed: 1-100 letters, digits, spaces and _ . @ : + - "
            "(starting with a letter or digit)"
        ) from None
    if _SETTINGS_NAME.fullmatch(name):
        raise ApiKeyError(f"key name {name!r} is kept for LEADLOOP_API_KEYS' keys (api-key-1, ...); choose another")
    return name


def _scopes(stored: list[str]) -> tuple[Scope, ...]:
    """A row's scopes in SCOPES' order; a word no longer a scope grants nothing."""
    return tuple(scope for scope in SCOPES if scope in stored)


def _when(value: datetime | None) -> datetime | None:
    """SQLite gives back naive times (stored as UTC)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


async def create_key(session: AsyncSession, name: str, scopes: list[str]) -> NewKey:
    """Store a new key's hash under `name` with `scopes`; the caller commits. Bad name, scopes or a name taken:
    ApiKeyError, nothing stored."""
    check_key_name(name)
    try:
        granted = tuple(check_scopes(scopes))
    except CrmInputError as exc:
        raise ApiKeyError(str(exc)) from None
    taken = (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
    if taken is not None:
        state = "revoked" if taken.revoked_at is not None else "in use"
        raise ApiKeyError(f"a key named {name!r} exists already ({state}); choose another name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    prefix = key[:SHOWN_CHARACTERS]
    session.add(ApiKey(name=name, key_hash=hash_key(key), prefix=prefix, scopes=list(granted)))
    try:
        await session.flush()
    except IntegrityError:  # the same name made at the same moment elsewhere: the unique index decides
        await session.rollback()
        raise ApiKeyError(f"a key named {name!r} exists already (in use); choose another name") from None
    return NewKey(name=name, scopes=granted, key=key, prefix=prefix)


async def list_keys(session: AsyncSession) -> list[KeyRow]:
    """Every stored key, revoked ones too, oldest first."""
    rows = (await session.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))).scalars()
    return [
        KeyRow(
            name=row.name,
            prefix=row.prefix,
            scopes=_scopes(row.scopes),
            created_at=_when(row.created_at) or row.created_at,
            last_used_at=_when(row.last_used_at),
            revoked_at=_when(row.revoked_at),
        )
        for row in rows
    ]


async def revoke_key(session: AsyncSession, name: str, when: datetime) -> tuple[datetime, bool]:
    """Revoke the key named `name` from `when` on; the caller commits. Returns when it was revoked and whether
    it was already (then nothing changes). An unknown name: ApiKeyError."""
    row = (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
    if row is None:
        raise ApiKeyError(f"no key named {name!r}; `leadloop keys list` shows the keys")
    if row.revoked_at is not None:
        return _when(row.revoked_at) or when, False
    row.revoked_at = when
    return when, True


async def find_key(session: AsyncSession, key_hash: str) -> FoundKey | None:
    """The valid (not revoked) key with this hash, or None."""
    row = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)))
    ).scalar_one_or_none()
    return None if row is None else FoundKey(id=row.id, name=row.name, scopes=_scopes(row.scopes))


async def mark_used(session: AsyncSession, key_id: int, when: datetime) -> None:
    """Note that the key was used at `when`; the caller commits."""
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))
