"""Who holds an X-API-Key: a LEADLOOP_API_KEYS key (admin) or a `leadloop keys` key, looked up by hash and cached."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.crm import Scope
from leadloop.infra.settings import Settings
from leadloop.services.api_keys import KEY_PREFIX, FoundKey, find_key, hash_key, mark_used
from starter.http.keys import key_ok

log = logging.getLogger("leadloop.api")

#: last_used_at is written at most this often per key: a busy intake would otherwise write on every request.
USED_EVERY_SECONDS = 60.0
#: Look-ups remembered at most (wrong keys included, so a flood of them cannot grow the process without bound).
CACHE_SIZE = 4096


@dataclass(frozen=True)
class Caller:
    """Who called a keyed route: the key's name (recorded as the actor of what it changes) and its scopes."""

    name: str
    scopes: tuple[Scope, ...]


class KeyRing:
    """Resolves a given key to its caller: LEADLOOP_API_KEYS' keys (every scope, named api-key-<n>, compared in
    constant time), else a stored key by its hash, remembered for `api_key_cache_seconds` (found or not) so the
    intake does not pay a database round trip per request."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings_keys = [key.get_secret_value() for key in settings.api_keys]
        self._sessionmaker = sessionmaker
        self._ttl = settings.api_key_cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, FoundKey | None]] = {}
        self._used: dict[int, float] = {}

    async def caller(self, given: str | None) -> Caller | None:
        """The caller holding `given`, or None (no key, a wrong one, a revoked one)."""
        if not given:
            return None
        matched = 0
        for index, key in enumerate(self._settings_keys, start=1):  # every key compared: no early way out to time
            if key_ok(given, [key]):
                matched = matched or index
        if matched:
            return Caller(f"api-key-{matched}", ("admin",))
        if not given.startswith(KEY_PREFIX):
            return None  # no stored key looks like this: no database round trip for it
        found = await self._stored(hash_key(given))
        if found is None:
            return None
        await self._note_use(found)
        return Caller(found.name, found.scopes)

    async def _stored(self, key_hash: str) -> FoundKey | None:
        now = self._clock()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._sessionmaker() as session:
            found = await find_key(session, key_hash)
        if self._ttl > 0:
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {h: entry for h, entry in self._cache.items() if entry[0] > now}
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
            self._cache[key_hash] = (now + self._ttl, found)
        return found

    async def _note_use(self, found: FoundKey) -> None:
        now = self._clock()
        if now - self._used.get(found.id, -USED_EVERY_SECONDS) < USED_EVERY_SECONDS:
            return
        self._used[found.id] = now
        try:
            async with self._sessionmaker() as session:
                await mark_used(session, found.id, datetime.now(UTC))
                await session.commit()
        except SQLAlchemyError as exc:  # a busy database must not refuse the request the key is good for
            log.warning("could not note the use of key %r: %s", found.name, exc)
