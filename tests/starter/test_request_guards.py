"""What the HTTP service says before it does anything: the key before the body, no 500 for text no database
can store, pages that no other site can frame, and the demo's extras off in production."""

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.starter.test_security import (
    API_KEY,
    SECRET,
    FakeTemporal,
    add_lead,
    add_reps,
    assign,
    serving,
    sign,
    snapshot,
)

KEYED = [  # every endpoint for integrations, with a body that would change something
    ("POST", "/leads", {"email": "new@example.com", "first_name": "Ana"}),
    ("POST", "/leads/{lead}/accept", {"rep": "anna@sales.example"}),
    ("POST", "/leads/{lead}/reject", {"rep": "anna@sales.example", "reason": "no_budget"}),
    ("PATCH", "/leads/{lead}", {"company": "Hijacked Ltd"}),
]
MALFORMED = [b"{not json", b"[1, 2", b"\xff\xfe", b'"just a string"', b"[]", b'{"email": 5}', b""]


@pytest.fixture
def production(make_settings: Any, database_url: str) -> Any:
    return make_settings(
        database_url=database_url,
        demo=False,
        secret_key=SECRET,
        api_keys=[API_KEY],
        public_url="http://t.test",
        relay_interval=3600,
    )


async def handed_over(sessionmaker: Any) -> tuple[int, dict[str, int], str]:
    lead = await add_lead(sessionmaker)
    reps = await add_reps(sessionmaker)
    key = await assign(sessionmaker, lead, 1, reps["anna"], "assigned", timedelta(hours=1))
    return lead, reps, key


@pytest.mark.parametrize(("method", "path", "body"), KEYED, ids=[f"{m} {p}" for m, p, _ in KEYED])
async def test_a_missing_or_wrong_key_gets_401_whatever_the_body(production, sessionmaker, method, path, body) -> None:
    lead, _, _ = await handed_over(sessionmaker)
    url = path.format(lead=lead)
    temporal = FakeTemporal()
    before = await snapshot(sessionmaker)
    json_type = {"content-type": "application/json"}
    async with serving(production, sessionmaker, temporal) as (_, http):
        for raw in [*MALFORMED, b'{"email": "a\\ud800b@example.com", "rep": "a\\ud800"}']:
            for key in ({}, {"x-api-key": "wrong"}):
                refused = await http.request(method, url, content=raw, headers={**json_type, **key})
                assert refused.status_code == 401, (raw, key, refused.text)
                assert refused.json() == {"detail": "missing or wrong X-API-Key"}
        # with the key, the same malformed body is the body's fault: 4xx, never 401, nothing changed
        for raw in MALFORMED:
            blamed = await http.request(method, url, content=raw, headers={**json_type, "x-api-key": API_KEY})
            assert blamed.status_code in (400, 422), (raw, blamed.text)
        assert await snapshot(sessionmaker) == before and temporal.changes == []
        allowed = await http.request(method, url, json=body, headers={"x-api-key": API_KEY})
        assert allowed.status_code in (200, 201), allowed.text


SURROGATE_FIELDS = {
    "POST /leads": (
        "POST",
        "/leads",
        {"email": "s@example.com"},
        ["email", "first_name", "last_name", "company", "title", "country", "cadence", "locale"],
    ),
    "reject": (
        "POST",
        "/leads/{lead}/reject",
        {"rep": "anna@sales.example", "reason": "no_budget"},
        ["rep", "note", "opportunity_id", "reason"],
    ),
    "accept": ("POST", "/leads/{lead}/accept", {"rep": "anna@sales.example"}, ["rep", "note"]),
    "PATCH": ("PATCH", "/leads/{lead}", {}, ["company", "first_name"]),
}


@pytest.mark.parametrize("endpoint", list(SURROGATE_FIELDS))
async def test_a_lone_surrogate_in_any_field_is_422_naming_the_field_without_echoing_it(
    production, sessionmaker, endpoint
) -> None:
    method, path, base, fields = SURROGATE_FIELDS[endpoint]
    lead, _, _ = await handed_over(sessionmaker)
    url = path.format(lead=lead)
    temporal = FakeTemporal()
    before = await snapshot(sessionmaker)
    key = {"x-api-key": API_KEY, "content-type": "application/json"}
    async with serving(production, sessionmaker, temporal) as (_, http):
        cases = {field: ({**base, field: f"echo-{field}-\ud800-x"}, ["body", field]) for field in fields}
        cases |= (
            {  # inside the free-form attributes, as a value and as a name (PATCH has none)
                "attribute value": ({**base, "attributes": {"plan": "echo-\udfff"}}, ["body", "attributes", "plan"]),
                "attribute name": ({**base, "attributes": {"echo-\ud83d": "pro"}}, ["body", "attributes"]),
            }
            if endpoint == "POST /leads"
            else {}
        )
        for name, (sent, loc) in cases.items():
            raw = json.dumps(sent).encode()  # ensure_ascii: the surrogate goes as the escape \ud800, as JSON allows
            reply = await http.request(method, url, content=raw, headers=key)
            assert reply.status_code == 422, (name, reply.text)
            [problem] = reply.json()["detail"]
            assert problem["loc"] == loc and "not valid Unicode" in problem["msg"], (name, problem)
            assert "echo" not in reply.text and "input" not in problem, (name, reply.text)
        assert await snapshot(sessionmaker) == before and temporal.changes == []
        # a surrogate pair is one character (an emoji), not a lone surrogate: it is stored as sent
        if endpoint == "POST /leads":
            emoji = await http.post(
                "/leads", content=b'{"email": "e@example.com", "first_name": "Ana \\ud83d\\ude00"}', headers=key
            )
            assert emoji.status_code == 201, emoji.text


async def test_rep_and_unsubscribe_pages_send_a_content_security_policy_and_refuse_frames(
    production, sessionmaker
) -> None:
    lead, _, handover = await handed_over(sessionmaker)
    reject = sign("rep", lead, handover, extra="reject")
    unsubscribe = sign("unsubscribe", lead)
    async with serving(production, sessionmaker, FakeTemporal()) as (_, http):
        pages = {
            "rep page": await http.get(f"/r/{reject}"),
            "rep decision": await http.post(f"/r/{reject}", data={"reason": "no_budget", "note": "later"}),
            "rep page refused": await http.get(f"/r/{sign('rep', lead, handover)}"),
            "unsubscribe page": await http.get(f"/u/{unsubscribe}"),
            "unsubscribed": await http.post(f"/u/{unsubscribe}", data={"List-Unsubscribe": "One-Click"}),
            "unsubscribe refused": await http.get("/u/forged"),
            "click refused": await http.get("/c/forged"),
        }
    assert [reply.status_code for reply in pages.values()] == [200, 200, 404, 200, 200, 404, 404]
    assert "<form" in pages["rep page"].text and "Lead given back" in pages["rep decision"].text
    for name, reply in pages.items():
        assert reply.headers["x-frame-options"] == "DENY", name
        policy = {d.split()[0]: d.split()[1:] for d in reply.headers["content-security-policy"].split("; ")}
        assert policy["frame-ancestors"] == ["'none'"] and policy["default-src"] == ["'none'"], name
        assert policy["form-action"] == ["'self'", "http://t.test"], name  # the forms post to LEADLOOP_PUBLIC_URL
        assert "script-src" not in policy, name  # the pages run no script


@pytest.mark.parametrize(
    ("overrides", "site", "docs"),
    [
        ({"demo": False}, 404, 404),
        ({"demo": False, "demo_site": True}, 200, 404),
        ({"demo": False, "api_docs": True}, 404, 200),
        ({"demo": True}, 200, 200),
        ({"demo": True, "demo_site": False, "api_docs": False}, 404, 404),
    ],
)
async def test_the_demo_site_and_the_docs_pages_are_off_outside_the_demo_unless_turned_on(
    make_settings, overrides, site, docs
) -> None:
    from starter.api import create_app

    settings = make_settings(secret_key=SECRET, api_keys=[API_KEY], relay_interval=3600, **overrides)
    app = create_app(settings, client=FakeTemporal())  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as http:
            assert (await http.get("/site/pricing")).status_code == site
            assert (await http.get("/site/")).status_code == site
            assert (await http.get("/docs")).status_code == docs
            assert (await http.get("/redoc")).status_code == docs
            # the contract itself stays: integrators' clients and the fuzz test read it
            assert (await http.get("/openapi.json")).status_code == 200


async def test_the_beacon_refuses_a_site_key_with_a_lone_surrogate(production, sessionmaker) -> None:
    """The key comparison itself once failed to encode such a key: a 500 instead of the beacon's 401."""
    async with serving(production, sessionmaker, FakeTemporal()) as (_, http):
        reply = await http.post("/v", content=b'{"site_key": "k\\ud800", "url": "https://site.example/"}')
    assert reply.status_code == 401 and reply.json() == {"detail": "missing or wrong site key"}
