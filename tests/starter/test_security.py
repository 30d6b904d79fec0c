"""Hostile input changes nothing: published secrets refused, keys checked, oversized bodies and floods refused,
rep links bound to their hand-over and dated, tracking links that say nothing about the lead behind them."""

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner

from leadloop.domain.mail import email_hash
from leadloop.domain.models import RepActionResult
from leadloop.domain.routing import Roster
from leadloop.domain.tokens import Signer, Token
from leadloop.infra.db import Assignment, EngagementEvent, Lead, Outbox, Rep, Suppression
from leadloop.infra.settings import get_settings
from leadloop.services.roster import import_roster
from starter.api import PIXEL, InsecureSettings, RateLimiter, create_app

SECRET, API_KEY, SITE_KEY = "a-long-random-test-secret-of-32-bytes+", "crm-key-5b1f", "site-key"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
NAV = {"user-agent": CHROME, "accept": "text/html,*/*;q=0.8", "sec-fetch-mode": "navigate"}
MAIL_CLIENT = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"}


class FakeTemporal:
    """Takes starts, signals and updates, and remembers them: a refused request must leave no trace here."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def get_workflow_handle(self, workflow_id: str, **kwargs: Any) -> "FakeTemporal":
        return self

    def get_workflow_handle_for(self, run: Any, workflow_id: str, **kwargs: Any) -> "FakeTemporal":
        return self

    async def start_workflow(self, *args: Any, **kwargs: Any) -> "FakeTemporal":
        self.calls.append(("start", kwargs.get("id")))
        return self

    async def signal(self, handler: Any, arg: Any = None) -> None:
        self.calls.append(("signal", handler.__name__))

    async def execute_update(self, handler: Any, arg: Any, result_type: Any = None) -> RepActionResult:
        name = handler.__name__  # the workflow's method: leadloop reaches workflows through typed handles
        self.calls.append((name, arg))
        return RepActionResult(stage="converted" if name == "accept" else "nurturing", outcome=f"{name}ed")

    async def query(self, *args: Any, **kwargs: Any) -> Any:
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")

    @property
    def changes(self) -> list[tuple[str, Any]]:
        """What would change a lead: starts and rep decisions (signals of stored events are not changes)."""
        return [call for call in self.calls if call[0] != "signal"]


@pytest.fixture
def build(make_settings: Any, database_url: str) -> Any:
    """Production settings (not the demo) on the test's database, with `overrides`."""

    def settings(**overrides: Any) -> Any:
        return make_settings(
            **{
                "database_url": database_url,
                "demo": False,
                "secret_key": SECRET,
                "api_keys": [API_KEY],
                "site_keys": [SITE_KEY],
                "public_url": "http://t.test",
                "site_url": "https://site.example",
                "relay_interval": 3600,
                **overrides,
            }
        )

    return settings


@pytest.fixture
def settings(build: Any) -> Any:
    return build()


@asynccontextmanager
async def serving(
    settings: Any, sessionmaker: Any, temporal: FakeTemporal, ip: str = "203.0.113.7"
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings, sessionmaker=sessionmaker, client=temporal)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        async with client_at(app, ip) as http:
            yield app, http


def client_at(app: Any, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://t.test")


async def add_lead(sessionmaker: Any, email: str = "maria@example.gr", erased: bool = False) -> int:
    """A lead whose welcome email went out an hour ago."""
    async with sessionmaker() as session:
        lead = Lead(
            email=email,
            first_name="Μαρία",
            company="Ακρόπολις",
            attributes={},
            erased_at=datetime.now(UTC) if erased else None,
        )
        session.add(lead)
        await session.flush()
        session.add(
            Outbox(
                key=f"lead-{lead.id}.c0.welcome",
                lead_id=lead.id,
                cycle=0,
                step_id="welcome",
                cadence="welcome",
                status="sent",
                message_id=f"<{lead.id}@x>",
                attempts=1,
                sent_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
        await session.commit()
        return lead.id


async def add_reps(sessionmaker: Any) -> dict[str, int]:
    reps = [{"email": f"{n}@sales.example", "name": n.title(), "timezone": "Europe/Athens"} for n in ("anna", "ben")]
    async with sessionmaker() as session:
        await import_roster(session, Roster.model_validate({"teams": [{"name": "south", "reps": reps}]}))
        await session.commit()
        return {rep.email.split("@")[0]: rep.id for rep in (await session.execute(select(Rep))).scalars()}


async def assign(sessionmaker: Any, lead_id: int, n: int, rep_id: int, status: str, ago: timedelta) -> str:
    key = f"lead-{lead_id}.c0.a{n}"
    async with sessionmaker() as session:
        session.add(
            Assignment(
                key=key,
                lead_id=lead_id,
                cycle=0,
                rep_id=rep_id,
                team="south",
                rule="test",
                status=status,
                score=80,
                assigned_at=datetime.now(UTC) - ago,
            )
        )
        await session.commit()
    return key


def sign(
    kind: Any,
    lead_id: int,
    key: str | None = None,
    *,
    url: str = "",
    extra: str = "",
    age: float = 0,
    secret: str = SECRET,
) -> str:
    outbox = f"lead-{lead_id}.c0.welcome" if key is None else key
    return Signer([secret]).sign(
        Token(kind=kind, lead_id=lead_id, key=outbox, issued_at=int(time.time() - age), url=url, extra=extra)
    )


async def count(sessionmaker: Any, model: Any) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def snapshot(sessionmaker: Any) -> dict[str, Any]:
    """Everything a request could change, to compare before and after."""
    async with sessionmaker() as session:
        leads = [
            (row.id, row.email, row.first_name, row.company, row.title, dict(row.attributes or {}))
            for row in (await session.execute(select(Lead).order_by(Lead.id))).scalars()
        ]
        assignments = [(a.key, a.status) for a in (await session.execute(select(Assignment))).scalars()]
    return {
        "leads": leads,
        "assignments": assignments,
        "events": await count(sessionmaker, EngagementEvent),
        "suppressions": await count(sessionmaker, Suppression),
    }


# ---------------------------------------------------------------- published secrets


GOOD = {"secret_key": SECRET, "api_keys": [API_KEY]}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"secret_key": "dev-insecure-change-me"}, "LEADLOOP_SECRET_KEY"),
        ({"api_keys": ["demo-api-key"]}, "LEADLOOP_API_KEYS"),
        ({"api_keys": [API_KEY, "demo-api-key"]}, "LEADLOOP_API_KEYS"),
        ({"api_keys": [API_KEY, ""]}, "LEADLOOP_API_KEYS"),
        ({"api_keys": [""]}, "LEADLOOP_API_KEYS"),
        ({"old_secret_keys": ["dev-insecure-change-me"]}, "LEADLOOP_OLD_SECRET_KEYS"),
    ],
)
def test_outside_the_demo_the_service_refuses_the_published_secrets(make_settings, overrides, named) -> None:
    with pytest.raises(InsecureSettings) as refused:
        create_app(make_settings(demo=False, **{**GOOD, **overrides}))
    assert named in str(refused.value) and "LEADLOOP_DEMO" in str(refused.value)
    # the same settings are fine for the demo, and real keys are fine anywhere
    create_app(make_settings(demo=True, **{**GOOD, **overrides}))
    create_app(make_settings(demo=False, **GOOD))


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """The CLI reads its settings once per process: read them again from this test's environment."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_leadloop_api_says_which_setting_to_change_and_exits_1(fresh_settings, monkeypatch, tmp_path) -> None:
    import uvicorn

    from starter.cli import app

    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda web, **kwargs: started.append((web, kwargs)))
    monkeypatch.chdir(tmp_path)  # no .env here
    defaults = {
        "LEADLOOP_DEMO": None,
        "LEADLOOP_SECRET_KEY": None,
        "LEADLOOP_API_KEYS": None,
        "LEADLOOP_OLD_SECRET_KEYS": None,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    refused = CliRunner().invoke(app, ["api"], env=defaults)
    assert refused.exit_code == 1, refused.output
    assert "LEADLOOP_SECRET_KEY" in refused.output and "LEADLOOP_API_KEYS" in refused.output
    assert "dev-insecure-change-me" in refused.output and "Traceback" not in refused.output
    assert started == []
    get_settings.cache_clear()
    demo_key_only = CliRunner().invoke(app, ["api"], env={**defaults, "LEADLOOP_SECRET_KEY": SECRET})
    assert demo_key_only.exit_code == 1 and "LEADLOOP_API_KEYS" in demo_key_only.output
    assert "LEADLOOP_SECRET_KEY" not in demo_key_only.output
    get_settings.cache_clear()
    real = {**defaults, "LEADLOOP_SECRET_KEY": SECRET, "LEADLOOP_API_KEYS": f'["{API_KEY}"]'}
    fine = CliRunner().invoke(app, ["api", "--port", "8123"], env=real)
    assert fine.exit_code == 0, fine.output
    assert len(started) == 1 and started[0][1]["port"] == 8123
    get_settings.cache_clear()
    demo = CliRunner().invoke(app, ["api"], env={**defaults, "LEADLOOP_DEMO": "true"})
    assert demo.exit_code == 0, demo.output
    assert len(started) == 2


def test_leadloop_demo_runs_in_demo_mode(fresh_settings, monkeypatch, tmp_path) -> None:
    import starter.cli
    import starter.demo

    seen: list[Any] = []

    def run_demo(settings: Any, leads: Any, cadence: str) -> Any:
        seen.append(settings)
        return asyncio.sleep(0)

    monkeypatch.setattr(starter.demo, "run_demo", run_demo)
    monkeypatch.setattr(starter.cli.processes, "asyncio", SimpleNamespace(run=lambda coroutine: coroutine.close()))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(starter.cli.app, ["demo"], env={"LEADLOOP_DEMO": None, "LEADLOOP_SECRET_KEY": None})
    assert result.exit_code == 0, result.output
    [settings] = seen
    assert settings.demo and settings.secret_key.get_secret_value() == "dev-insecure-change-me"
    create_app(settings)  # what the demo's HTTP service is built from


# ---------------------------------------------------------------- API keys


KEY_PROTECTED = [
    ("POST", "/leads", {"email": "new@example.com", "first_name": "Ana"}),
    ("POST", "/leads/{lead}/accept", {"rep": "anna@sales.example"}),
    ("POST", "/leads/{lead}/reject", {"rep": "anna@sales.example", "reason": "no_budget"}),
    ("GET", "/leads/{lead}/dispositions", None),
    ("PATCH", "/leads/{lead}", {"company": "Hijacked Ltd"}),
]


@pytest.mark.parametrize(("method", "path", "body"), KEY_PROTECTED, ids=[f"{m} {p}" for m, p, _ in KEY_PROTECTED])
async def test_key_protected_endpoints_refuse_a_missing_or_wrong_key_and_change_nothing(
    settings, sessionmaker, method, path, body
) -> None:
    lead = await add_lead(sessionmaker)
    reps = await add_reps(sessionmaker)
    await assign(sessionmaker, lead, 1, reps["anna"], "assigned", timedelta(hours=1))
    temporal = FakeTemporal()
    url = path.format(lead=lead)
    before = await snapshot(sessionmaker)
    async with serving(settings, sessionmaker, temporal) as (_, http):
        for given in (None, "", "wrong", API_KEY.upper(), API_KEY[:-1], API_KEY + "x", f" {API_KEY}x"):
            headers = {} if given is None else {"x-api-key": given}
            refused = await http.request(method, url, json=body, headers=headers)
            assert refused.status_code == 401, (given, refused.text)
            assert refused.json() == {"detail": "missing or wrong X-API-Key"}
            # a refused key is refused before the body is looked at: a bad body gets 401 too, not 422
            if body is not None:
                assert (await http.request(method, url, json={"nope": 1}, headers=headers)).status_code == 401
        assert await snapshot(sessionmaker) == before and temporal.changes == []
        # the right key does get through, so the refusals above were the key's
        allowed = await http.request(method, url, json=body, headers={"x-api-key": API_KEY})
        assert allowed.status_code in (200, 201), allowed.text


# ---------------------------------------------------------------- oversized bodies


@pytest.fixture
def small(build: Any) -> Any:
    return build(
        max_body_bytes=2048,
        codec_max_body_bytes=8192,
        codec_token="codec-token",
        encryption_keys={"k1": base64.b64encode(b"k" * 32).decode()},
    )


def padded_lead(size: int) -> dict[str, Any]:
    return {"email": "big@example.com", "attributes": {"padding": "x" * size}}


async def test_oversized_bodies_get_413_and_change_nothing(small, sessionmaker) -> None:
    lead = await add_lead(sessionmaker)
    reps = await add_reps(sessionmaker)
    handover = await assign(sessionmaker, lead, 1, reps["anna"], "assigned", timedelta(hours=1))
    key = {"x-api-key": API_KEY, "content-type": "application/json"}
    form = {"content-type": "application/x-www-form-urlencoded"}
    big = {  # every endpoint that reads a body, with a body that would do something if it were small
        "POST /leads": ("POST", "/leads", json.dumps(padded_lead(4000)).encode(), key),
        "accept": (
            "POST",
            f"/leads/{lead}/accept",
            json.dumps({"rep": "anna@sales.example", "note": "n" * 4000}).encode(),
            key,
        ),
        "reject": (
            "POST",
            f"/leads/{lead}/reject",
            json.dumps({"rep": "anna@sales.example", "reason": "no_budget", "note": "n" * 4000}).encode(),
            key,
        ),
        "PATCH": ("PATCH", f"/leads/{lead}", json.dumps({"company": "c" * 250, "title": "t" * 3800}).encode(), key),
        "/v": (
            "POST",
            "/v",
            json.dumps(
                {
                    "site_key": SITE_KEY,
                    "url": "https://site.example/" + "p" * 5000,
                    "visitor": sign("visitor", lead, ""),
                }
            ).encode(),
            {},
        ),
        "/u": ("POST", f"/u/{sign('unsubscribe', lead)}", b"List-Unsubscribe=One-Click&pad=" + b"x" * 4000, form),
        "/r": ("POST", f"/r/{sign('rep', lead, handover, extra='accept')}", b"note=" + b"x" * 4000, form),
        "codec": (
            "POST",
            "/codec/encode",
            json.dumps({"payloads": [{"data": "QQ==" * 3000}]}).encode(),
            {"authorization": "Bearer codec-token", "content-type": "application/json"},
        ),
    }
    temporal = FakeTemporal()
    before = await snapshot(sessionmaker)
    async with serving(small, sessionmaker, temporal) as (_, http):
        for name, (method, url, body, headers) in big.items():
            declared = await http.request(method, url, content=body, headers=headers)
            assert declared.status_code == 413, (name, declared.text)
            assert declared.headers["content-type"] == "application/json" and "detail" in declared.json()
            # chunked (no Content-Length): cut off once the chunks pass the limit, the rest never read
            sent = 0

            async def chunks(body: bytes = body) -> AsyncIterator[bytes]:
                nonlocal sent
                for at in range(0, len(body), 512):
                    sent += 1
                    yield body[at : at + 512]
                for _ in range(1000):  # and then far more than any limit
                    sent += 1
                    yield b" " * 512

            streamed = await http.request(method, url, content=chunks(), headers=headers)
            assert streamed.status_code == 413, (name, streamed.text)
            assert sent < 40, (name, sent)
        assert await snapshot(sessionmaker) == before and temporal.changes == []
        # the codec has its own, larger limit; the others take what fits
        fits_codec = json.dumps({"payloads": [{"data": "QQ==" * 1000}]}).encode()
        assert len(fits_codec) > small.max_body_bytes
        encoded = await http.post("/codec/encode", content=fits_codec, headers={"authorization": "Bearer codec-token"})
        assert encoded.status_code == 200 and len(encoded.json()["payloads"]) == 1
        fine = await http.patch(f"/leads/{lead}", json={"company": "c" * 250}, headers=key)
        assert fine.status_code == 200 and fine.json()["changed"] == ["company"]


async def test_a_declared_oversized_body_is_refused_without_reading_it(small, sessionmaker) -> None:
    """A Content-Length over the limit: 413 at once, the body never asked for."""
    app = create_app(small, sessionmaker=sessionmaker, client=FakeTemporal())  # type: ignore[arg-type]
    asked: list[str] = []

    async def receive() -> dict[str, Any]:
        asked.append("receive")
        return {"type": "http.request", "body": b"x" * 65536, "more_body": len(asked) < 20}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/leads",
        "raw_path": b"/leads",
        "root_path": "",
        "query_string": b"",
        "client": ("1.2.3.4", 1),
        "server": ("t.test", 80),
        "headers": [
            (b"content-length", b"1000000000"),
            (b"x-api-key", API_KEY.encode()),
            (b"content-type", b"application/json"),
        ],
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    assert sent[0]["status"] == 413 and asked == []
    assert await count(sessionmaker, Lead) == 0


# ---------------------------------------------------------------- rep links


async def test_a_rep_link_works_only_for_its_own_current_hand_over_and_only_while_fresh(settings, sessionmaker) -> None:
    lead = await add_lead(sessionmaker)
    other = await add_lead(sessionmaker, "other@example.com")
    reps = await add_reps(sessionmaker)
    lapsed = await assign(sessionmaker, lead, 1, reps["anna"], "lapsed", timedelta(hours=5))
    stale = await assign(sessionmaker, lead, 2, reps["anna"], "assigned", timedelta(hours=3))  # not yet closed
    current = await assign(sessionmaker, lead, 3, reps["ben"], "assigned", timedelta(hours=1))
    closed = await assign(sessionmaker, other, 1, reps["anna"], "closed", timedelta(hours=2))
    temporal = FakeTemporal()
    day = 86400
    async with serving(settings, sessionmaker, temporal) as (_, http):
        refused = {
            "lapsed": (sign("rep", lead, lapsed, extra="accept"), 409, "lapsed"),
            "reassigned since": (sign("rep", lead, stale, extra="accept"), 409, "superseded"),
            "closed": (sign("rep", other, closed, extra="reject"), 409, "closed"),
            "another lead's hand-over": (sign("rep", other, current, extra="accept"), 404, "no longer exists"),
            "no such hand-over": (sign("rep", lead, f"lead-{lead}.c0.a9", extra="accept"), 404, "no longer exists"),
            "expired": (sign("rep", lead, current, extra="accept", age=8 * day), 410, "expired"),
            "foreign key": (sign("rep", lead, current, extra="accept", secret="guess"), 404, "not valid"),
            "not a rep link": (sign("click", lead, current, extra="accept"), 404, "not valid"),
            "no action": (sign("rep", lead, current), 404, "not valid"),
        }
        for name, (token, status, says) in refused.items():
            page = await http.get(f"/r/{token}")
            assert (page.status_code, page.headers["content-type"]) == (status, "text/html; charset=utf-8"), name
            assert says in page.text, (name, page.text)
            assert "maria@example.gr" not in page.text and "<form" not in page.text, name
            decided = await http.post(f"/r/{token}", data={"reason": "no_budget", "note": "mine now"})
            assert decided.status_code == status, (name, decided.text)
        assert temporal.changes == []
        # the current hand-over's link, a day short of its expiry: the form, then the decision for its own rep
        fresh = sign("rep", lead, current, extra="accept", age=6 * day)
        page = await http.get(f"/r/{fresh}")
        assert page.status_code == 200 and "<form" in page.text and "maria@example.gr" in page.text
        accepted = await http.post(f"/r/{fresh}", data={"opportunity_id": "OPP-7", "note": "call\nback\x00"})
        assert accepted.status_code == 200 and "Lead accepted" in accepted.text
    [(action, request)] = temporal.changes
    assert (action, request.rep_id, request.opportunity_id, request.note) == (
        "accept",
        reps["ben"],
        "OPP-7",
        "call\nback",
    )


# ---------------------------------------------------------------- rate limiting


async def test_a_flood_from_one_address_gets_429_while_others_get_through(build, sessionmaker) -> None:
    lead = await add_lead(sessionmaker)
    limited = build(rate_limit_per_minute=60, rate_limit_burst=3)
    pixel = f"/o/{sign('open', lead)}.gif"
    async with serving(limited, sessionmaker, FakeTemporal(), ip="198.51.100.1") as (app, flood):
        # the bucket's clock stands still: on a slow machine a second between requests would refill a token
        app.state.leadloop.limiter._clock = lambda: 1000.0
        answers = [await flood.get(pixel, headers=MAIL_CLIENT) for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 3 + [429] * 7
        retry = int(answers[-1].headers["retry-after"])
        assert 1 <= retry <= 2 and answers[-1].json()["detail"].startswith("too many requests")
        async with client_at(app, "198.51.100.2") as neighbour:
            assert (await neighbour.get(pixel, headers=MAIL_CLIENT)).status_code == 200
            # a signed link is limited per address and link: another link from the flooding address (a mail
            # provider's proxy fetches many people's) still goes through, here a one-click unsubscribe
            unsubscribe = await flood.post(f"/u/{sign('unsubscribe', lead)}", data={"List-Unsubscribe": "One-Click"})
            assert unsubscribe.status_code == 200
            # links that are not validly signed share the address's bucket: a flood of forgeries is cut short
            forged = [(await flood.get(f"/o/forged{n}.gif", headers=MAIL_CLIENT)).status_code for n in range(5)]
            assert forged == [200] * 3 + [429] * 2
        assert await count(sessionmaker, EngagementEvent) == 5  # the flood's 3, the neighbour's, the unsubscribe
        assert await count(sessionmaker, Suppression) == 1
        # the intake is keyed, not limited by address: a CRM may send many leads at once
        for n in range(6):
            sent = await flood.post("/leads", json={"email": f"lead{n}@example.com"}, headers={"x-api-key": API_KEY})
            assert sent.status_code == 201, sent.text


@pytest.mark.parametrize(
    "path",
    [
        "/o/{open}.gif",
        "/c/{click}",
        "/beacon.js",
        "/u/{unsubscribe}",
        "/r/{rep}",
        "POST /v",
        "POST /u/{unsubscribe}",
        "POST /r/{rep}",
    ],
)
async def test_every_public_link_is_limited(build, sessionmaker, path) -> None:
    lead = await add_lead(sessionmaker)
    tokens = {
        "open": sign("open", lead),
        "click": sign("click", lead, url="https://site.example/"),
        "unsubscribe": sign("unsubscribe", lead),
        "rep": sign("rep", lead, f"lead-{lead}.c0.a1", extra="accept"),
    }
    method, _, url = path.rpartition(" ")
    limited = build(rate_limit_per_minute=1, rate_limit_burst=2)
    async with serving(limited, sessionmaker, FakeTemporal()) as (_, http):
        answers = [(await http.request(method or "GET", url.format(**tokens))).status_code for _ in range(3)]
    assert answers[:2] != [429, 429] and answers[2] == 429


async def test_no_limit_when_turned_off(build, sessionmaker) -> None:
    off = build(rate_limit_per_minute=0, rate_limit_burst=1)
    async with serving(off, sessionmaker, FakeTemporal()) as (_, http):
        assert {(await http.get("/beacon.js")).status_code for _ in range(50)} == {200}


def test_the_limiter_refills_and_forgets_idle_clients() -> None:
    now = [1000.0]
    limiter = RateLimiter(per_minute=60, burst=2, max_clients=100, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    now[0] += 1.0  # one token a second
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    for n in range(1000):  # a thousand addresses: memory stays bounded, the least recently seen go first
        limiter.take(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100
    assert limiter.take("a") == 0.0  # forgotten, so it starts afresh
    assert RateLimiter(per_minute=0, burst=1).take("a") == 0.0


# ---------------------------------------------------------------- what tracking links give away


def answer(reply: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return reply.status_code, [(k, v) for k, v in reply.headers.multi_items() if k != "date"], reply.content


async def test_tracking_links_answer_the_same_whoever_is_behind_them(settings, sessionmaker) -> None:
    lead = await add_lead(sessionmaker)
    erased = await add_lead(sessionmaker, "erased-2@erased.invalid", erased=True)
    missing = erased + 1000
    async with serving(settings, sessionmaker, FakeTemporal()) as (_, http):
        pixels = {
            name: answer(await http.get(f"/o/{text}.gif", headers=MAIL_CLIENT))
            for name, text in {
                "existing": sign("open", lead),
                "no such lead": sign("open", missing),
                "erased": sign("open", erased),
                "tampered": sign("open", lead)[:-4] + "AAAA",
                "foreign key": sign("open", lead, secret="guess"),
                "wrong kind": sign("unsubscribe", lead),
                "expired": sign("open", lead, age=500 * 86400),
                "not a token": "hello",
            }.items()
        }
        assert {status for status, _, _ in pixels.values()} == {200}
        assert pixels["existing"][2] == PIXEL
        assert all(reply == pixels["existing"] for reply in pixels.values()), pixels

        offsite = "https://partner.example/offer?x=1"
        clicks = {
            name: answer(await http.get(f"/c/{sign('click', who, url=offsite)}", headers=NAV))
            for name, who in (("existing", lead), ("no such lead", missing), ("erased", erased))
        }
        assert clicks["existing"][0] == 302
        assert all(reply == clicks["existing"] for reply in clicks.values()), clicks
        # on the marketer's own site each gets a visitor id of the lead in its token: the same shape for all
        onsite = {}
        for name, who in (("existing", lead), ("no such lead", missing), ("erased", erased)):
            reply = await http.get(f"/c/{sign('click', who, url='https://site.example/pricing')}", headers=NAV)
            target = urlsplit(reply.headers["location"])
            query = dict(parse_qsl(target.query))
            assert Signer([SECRET]).verify(query.pop("ll"), kind="visitor").lead_id == who
            onsite[name] = (
                reply.status_code,
                target._replace(query="").geturl(),
                query,
                sorted(k for k in reply.headers if k != "location"),
            )
        assert onsite["existing"] == onsite["no such lead"] == onsite["erased"]
    async with sessionmaker() as session:
        stored = {(e.lead_id, e.kind) for e in (await session.execute(select(EngagementEvent))).scalars()}
    assert stored == {(lead, "open"), (lead, "click")}  # nothing for the erased person, nothing for a stranger
    async with sessionmaker() as session:
        assert await session.get(Suppression, email_hash("maria@example.gr")) is None


async def test_hits_through_a_proxy_not_trusted_are_told_once_in_the_log(build, sessionmaker, caplog) -> None:
    """Behind a load balancer missing from LEADLOOP_TRUSTED_PROXIES every reader has the balancer's (cloud)
    address: the operator is told, once, instead of watching engagement vanish."""
    from starter.http import hits

    hits._warned.clear()
    lead = await add_lead(sessionmaker)
    pixel = f"/o/{sign('open', lead)}.gif"
    behind = {**MAIL_CLIENT, "x-forwarded-for": "81.2.3.4"}
    async with serving(build(), sessionmaker, FakeTemporal(), ip="3.5.140.10") as (_app, balancer):
        with caplog.at_level("WARNING", logger="leadloop.api"):
            for _ in range(3):
                assert (await balancer.get(pixel, headers=behind)).status_code == 200
            assert (await balancer.get(pixel, headers=MAIL_CLIENT)).status_code == 200
    told = [r.getMessage() for r in caplog.records if "LEADLOOP_TRUSTED_PROXIES" in r.getMessage()]
    assert len(told) == 1 and "3.5.140.10" in told[0]
