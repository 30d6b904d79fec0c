"""Scoped API keys: each key does only what its scopes allow (403 and nothing changed otherwise), a revoked key is
refused, LEADLOOP_API_KEYS' keys stay admin keys, and `leadloop keys` shows a key once and keeps only its hash."""

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from leadloop.domain.models import RepActionInput
from leadloop.infra.db import ApiKey
from leadloop.services.api_keys import create_key, revoke_key
from starter.api import create_app
from starter.http.callers import USED_EVERY_SECONDS, KeyRing
from starter.http.keyed import KeyedRoute, needed_scopes
from tests.starter.test_cli import leadloop
from tests.starter.test_security import API_KEY, SECRET, FakeTemporal, add_lead, add_reps, assign, serving, snapshot

#: Every keyed route, the scope it needs, and a body that would change something.
ROUTES = {
    "POST /leads": ("intake", "POST", "/leads", {"email": "new@example.com", "first_name": "Ana"}),
    "PATCH /leads/{id}": ("intake", "PATCH", "/leads/{lead}", {"company": "Hijacked Ltd"}),
    "accept": ("sales", "POST", "/leads/{lead}/accept", {"rep": "anna@sales.example"}),
    "reject": ("sales", "POST", "/leads/{lead}/reject", {"rep": "anna@sales.example", "reason": "no_budget"}),
    "dispositions": ("sales", "GET", "/leads/{lead}/dispositions", None),
}
SCOPES = ("intake", "sales", "marketing")


@pytest.fixture
def build(make_settings: Any, database_url: str) -> Any:
    """Production settings (not the demo, so only the keys given count) on the test's database."""

    def settings(**overrides: Any) -> Any:
        values = {"database_url": database_url, "demo": False, "secret_key": SECRET, "api_keys": [API_KEY]}
        return make_settings(**{**values, "public_url": "http://t.test", "relay_interval": 3600, **overrides})

    return settings


@pytest.fixture
def settings(build: Any) -> Any:
    return build()


async def make_keys(sessionmaker: Any, *scopes: str) -> dict[str, str]:
    """One stored key per scope, named crm-<scope>: scope -> the key."""
    made = {}
    async with sessionmaker() as session:
        for scope in scopes:
            made[scope] = (await create_key(session, f"crm-{scope}", [scope])).key
        await session.commit()
    return made


async def key_rows(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)


def test_every_keyed_route_names_its_scope(make_settings) -> None:
    """A new keyed route shows up here: the rule 'reps act on leads, never run campaigns' is decided per route."""

    def walk(routes: list[Any]) -> list[APIRoute]:  # FastAPI may keep an included router whole
        found = []
        for route in routes:
            included = getattr(route, "original_router", None)
            found += walk(included.routes) if included is not None else [route]
        return found

    keyed = {
        f"{sorted(route.methods)[0]} {route.path}": needed_scopes(route)
        for route in walk(create_app(make_settings()).routes)
        if isinstance(route, KeyedRoute)
    }
    assert keyed == {
        "POST /leads": ("intake",),
        "PATCH /leads/{lead_id}": ("intake",),
        "POST /leads/{lead_id}/accept": ("sales",),
        "POST /leads/{lead_id}/reject": ("sales",),
        "GET /leads/{lead_id}/dispositions": ("sales",),
        # the CRM's webhooks: admin only
        "GET /webhook-endpoints": ("admin",),
        "POST /webhook-endpoints": ("admin",),
        "DELETE /webhook-endpoints/{name}": ("admin",),
        "POST /webhook-endpoints/{name}/rotate-secret": ("admin",),
        "POST /webhook-endpoints/{name}/enable": ("admin",),
        "GET /webhook-deliveries": ("admin",),
        "POST /webhook-deliveries/{delivery_id}/replay": ("admin",),
        "GET /segments": ("marketing",),
        "POST /segments": ("marketing",),
        "GET /segments/{name}/count": ("marketing",),
        "POST /segments/{name}/actions": ("marketing",),
        "GET /leads": (("intake", "sales"),),
        "PUT /leads/{lead_id}/owner": ("sales",),
        "POST /leads/{lead_id}/goals": ("sales",),
        "POST /leads/{lead_id}/stop": ("sales",),
        "POST /leads/{lead_id}/enrolments": ("marketing",),
        "POST /leads/{lead_id}/move": ("marketing",),
        "GET /leads/{lead_id}/tags": (("intake", "marketing"),),
        "PUT /leads/{lead_id}/tags": (("intake", "marketing"),),
        "POST /leads/{lead_id}/tags": (("intake", "marketing"),),
    }


@pytest.mark.parametrize("route", ROUTES, ids=list(ROUTES))
async def test_each_scope_is_allowed_on_its_routes_and_refused_on_the_others(settings, sessionmaker, route) -> None:
    needed, method, path, body = ROUTES[route]
    lead = await add_lead(sessionmaker)
    reps = await add_reps(sessionmaker)
    await assign(sessionmaker, lead, 1, reps["anna"], "assigned", timedelta(hours=1))
    keys = await make_keys(sessionmaker, *SCOPES)
    url = path.format(lead=lead)
    temporal = FakeTemporal()
    before = await snapshot(sessionmaker)
    async with serving(settings, sessionmaker, temporal) as (_, http):
        for scope in SCOPES:
            if scope == needed:
                continue
            refused = await http.request(method, url, json=body, headers={"x-api-key": keys[scope]})
            assert refused.status_code == 403, (scope, refused.text)
            assert refused.json() == {"detail": f"the key 'crm-{scope}' lacks the '{needed}' scope; nothing changed"}
            if body is not None:  # refused before the body is read: a broken body is still the scope's 403
                broken = await http.request(
                    method, url, content=b"{not json", headers={"x-api-key": keys[scope], "content-type": "x/y"}
                )
                assert broken.status_code == 403, broken.text
        assert await snapshot(sessionmaker) == before and temporal.changes == []
        allowed = await http.request(method, url, json=body, headers={"x-api-key": keys[needed]})
        assert allowed.status_code in (200, 201), allowed.text
        # LEADLOOP_API_KEYS' key is still an admin key: every route
        admin = await http.request(method, url, json=body, headers={"x-api-key": API_KEY})
        assert admin.status_code in (200, 201), admin.text
    decisions = [arg for name, arg in temporal.changes if isinstance(arg, RepActionInput)]
    if route in ("accept", "reject"):  # the deciding key's name is the decision's actor
        assert [d.actor for d in decisions] == ["crm-sales", "api-key-1"]
    if route == "POST /leads":
        assert [name for name, _ in temporal.changes] == ["start", "start"]


async def test_a_sales_key_never_starts_a_campaign(settings, sessionmaker) -> None:
    """The CRM's key for reps' decisions gets 403 on the intake, which enrols leads into a cadence."""
    keys = await make_keys(sessionmaker, "sales")
    temporal = FakeTemporal()
    async with serving(settings, sessionmaker, temporal) as (_, http):
        for cadence in (None, "welcome"):
            lead = {"email": "ana@example.com", **({"cadence": cadence} if cadence else {})}
            refused = await http.post("/leads", json=lead, headers={"x-api-key": keys["sales"]})
            assert refused.status_code == 403
            assert refused.json()["detail"] == "the key 'crm-sales' lacks the 'intake' scope; nothing changed"
    assert temporal.changes == [] and (await snapshot(sessionmaker))["leads"] == []


async def test_an_admin_key_from_the_database_may_do_everything(settings, sessionmaker) -> None:
    keys = await make_keys(sessionmaker, "admin")
    temporal = FakeTemporal()
    async with serving(settings, sessionmaker, temporal) as (_, http):
        made = await http.post("/leads", json={"email": "ana@example.com"}, headers={"x-api-key": keys["admin"]})
        assert made.status_code == 201, made.text
        lead = made.json()["lead_id"]
        seen = await http.get(f"/leads/{lead}/dispositions", headers={"x-api-key": keys["admin"]})
        assert seen.status_code == 200 and seen.json() == []


async def test_settings_keys_are_named_by_their_place_in_the_list(build, sessionmaker) -> None:
    lead = await add_lead(sessionmaker)
    reps = await add_reps(sessionmaker)
    await assign(sessionmaker, lead, 1, reps["anna"], "assigned", timedelta(hours=1))
    temporal = FakeTemporal()
    async with serving(build(api_keys=[API_KEY, "second-crm-key"]), sessionmaker, temporal) as (_, http):
        body = {"rep": "anna@sales.example"}
        accepted = await http.post(f"/leads/{lead}/accept", json=body, headers={"x-api-key": "second-crm-key"})
        assert accepted.status_code == 200, accepted.text
    assert [arg.actor for _, arg in temporal.changes] == ["api-key-2"]


async def test_without_settings_keys_the_service_takes_only_stored_keys(build, sessionmaker) -> None:
    """LEADLOOP_API_KEYS='[]' outside the demo: no all-powerful key in the environment, the stored keys work."""
    keys = await make_keys(sessionmaker, "intake")
    async with serving(build(api_keys=[]), sessionmaker, FakeTemporal()) as (_, http):
        lead = {"email": "ana@example.com"}
        assert (await http.post("/leads", json=lead, headers={"x-api-key": API_KEY})).status_code == 401
        assert (await http.post("/leads", json=lead, headers={"x-api-key": keys["intake"]})).status_code == 201


async def test_a_revoked_or_unknown_key_is_refused_with_401_and_changes_nothing(build, sessionmaker) -> None:
    settings = build(api_key_cache_seconds=0)
    keys = await make_keys(sessionmaker, "intake")
    temporal = FakeTemporal()
    async with serving(settings, sessionmaker, temporal) as (_, http):
        first = await http.post("/leads", json={"email": "a@example.com"}, headers={"x-api-key": keys["intake"]})
        assert first.status_code == 201, first.text
        async with sessionmaker() as session:
            await revoke_key(session, "crm-intake", datetime.now(UTC))
            await session.commit()
        before = await snapshot(sessionmaker)
        for given in (keys["intake"], keys["intake"][:-1], keys["intake"] + "x", "ll_" + "A" * 43):
            refused = await http.post("/leads", json={"email": "b@example.com"}, headers={"x-api-key": given})
            assert refused.status_code == 401 and refused.json() == {"detail": "missing or wrong X-API-Key"}
        assert await snapshot(sessionmaker) == before and len(temporal.changes) == 1


async def test_look_ups_are_remembered_for_a_few_seconds_and_use_is_noted_once_a_minute(build, sessionmaker) -> None:
    now = [1000.0]
    ring = KeyRing(build(api_key_cache_seconds=5), sessionmaker, clock=lambda: now[0])
    key = (await make_keys(sessionmaker, "sales"))["sales"]

    async def last_used() -> datetime | None:
        async with sessionmaker() as session:
            return await session.scalar(select(ApiKey.last_used_at))

    caller = await ring.caller(key)
    assert caller is not None and (caller.name, caller.scopes) == ("crm-sales", ("sales",))
    noted = await last_used()
    assert noted is not None
    async with sessionmaker() as session:
        await revoke_key(session, "crm-sales", datetime.now(UTC))
        await session.commit()
    now[0] += 4  # within the cache's seconds: the look-up stands, and its use is not written again
    assert await ring.caller(key) is not None and await last_used() == noted
    now[0] += 2  # past them: the revocation is seen
    assert await ring.caller(key) is None


async def test_use_is_written_at_most_once_a_minute(build, sessionmaker) -> None:
    now = [1000.0]
    ring = KeyRing(build(api_key_cache_seconds=0), sessionmaker, clock=lambda: now[0])
    key = (await make_keys(sessionmaker, "intake"))["intake"]
    await ring.caller(key)
    async with sessionmaker() as session:
        first = await session.scalar(select(ApiKey.last_used_at))
        await session.execute(ApiKey.__table__.update().values(last_used_at=None))
        await session.commit()
    now[0] += USED_EVERY_SECONDS - 1
    await ring.caller(key)
    async with sessionmaker() as session:
        assert first is not None and await session.scalar(select(ApiKey.last_used_at)) is None
    now[0] += 1
    await ring.caller(key)
    async with sessionmaker() as session:
        assert await session.scalar(select(ApiKey.last_used_at)) is not None


# ---------------------------------------------------------------- the CLI


async def test_keys_add_shows_the_key_once_and_stores_only_its_hash(database_url, sessionmaker) -> None:
    env = {"LEADLOOP_DATABASE_URL": database_url}
    made = leadloop("keys", "add", "crm-sales", "--scope", "sales", env=env)
    assert made.returncode == 0, made.stderr
    [key] = re.findall(r"^ll_[A-Za-z0-9_-]{43}$", made.stdout, re.MULTILINE)
    assert "key 'crm-sales' (sales):" in made.stdout and "only time the key is shown" in made.stderr
    async with sessionmaker() as session:
        [row] = (await session.execute(select(ApiKey))).scalars()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest() and row.scopes == ["sales"]
    stored = json.dumps([row.name, row.key_hash, row.prefix, row.scopes], ensure_ascii=False)
    assert key not in stored and key[len(row.prefix) :] not in stored and key.startswith(row.prefix)
    listed = leadloop("keys", "list", env=env)
    assert listed.returncode == 0 and "crm-sales" in listed.stdout and f"{row.prefix}…" in listed.stdout
    assert key not in listed.stdout and key not in made.stderr
    two = leadloop("keys", "add", "crm-both", "--scope", "sales", "--scope", "intake", env=env)
    assert two.returncode == 0 and "key 'crm-both' (intake, sales):" in two.stdout
    revoked = leadloop("keys", "revoke", "crm-sales", env=env)
    assert revoked.returncode == 0 and "key 'crm-sales' revoked at" in revoked.stdout
    again = leadloop("keys", "revoke", "crm-sales", env=env)
    assert again.returncode == 0 and "already revoked" in again.stdout
    assert "revoked" in leadloop("keys", "list", env=env).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "crm", "--scope", "campaigns"], "unknown scope 'campaigns'; one of: intake, sales, marketing, admin"),
        (["add", "crm"], "give at least one scope: intake, sales, marketing, admin"),
        (["add", "crm", "--scope", "sales", "--scope", "nope"], "unknown scope 'nope'"),
        (["add", " crm", "--scope", "sales"], "key name ' crm' is not allowed"),
        (["add", "crm\nBcc", "--scope", "sales"], "is not allowed"),
        (["add", "api-key-1", "--scope", "admin"], "kept for LEADLOOP_API_KEYS' keys"),
        (["add", "taken", "--scope", "sales"], "a key named 'taken' exists already (in use); choose another name"),
        (["revoke", "ghost"], "no key named 'ghost'; `leadloop keys list` shows the keys; nothing was revoked"),
    ],
    ids=["unknown scope", "no scope", "one unknown", "space", "line break", "reserved", "duplicate", "revoke unknown"],
)
async def test_bad_key_commands_say_why_exit_1_and_change_nothing(database_url, sessionmaker, args, message) -> None:
    async with sessionmaker() as session:
        await create_key(session, "taken", ["marketing"])
        await session.commit()
    async with sessionmaker() as session:
        before = [
            (r.name, r.key_hash, r.scopes, r.revoked_at) for r in (await session.execute(select(ApiKey))).scalars()
        ]
    result = leadloop("keys", *args, env={"LEADLOOP_DATABASE_URL": database_url})
    assert result.returncode == 1, result.stdout
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr and "ll_" not in result.stdout
    async with sessionmaker() as session:
        after = [
            (r.name, r.key_hash, r.scopes, r.revoked_at) for r in (await session.execute(select(ApiKey))).scalars()
        ]
    assert after == before and await key_rows(sessionmaker) == 1
