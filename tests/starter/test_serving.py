"""`leadloop api` as uvicorn serves it: an access log without tokens, and client addresses that only the
proxies in LEADLOOP_TRUSTED_PROXIES may forward."""

import asyncio
import base64
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from leadloop.domain.tokens import Signer, Token
from leadloop.infra.db import EngagementEvent, Lead, Outbox
from leadloop.infra.migrate import upgrade_database
from starter.api import create_app
from starter.serving import redact_path
from tests.conftest import free_port

BIN = Path(sys.executable).parent
SECRET, API_KEY, CODEC_TOKEN = "a-serving-test-secret-of-32-bytes", "serving-crm-key", "codec-token-in-a-path"
THUNDERBIRD = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"}


def sign(kind: Any, lead_id: int = 1, *, url: str = "", extra: str = "", key: str = "lead-1.c0.welcome") -> str:
    return Signer([SECRET]).sign(
        Token(kind=kind, lead_id=lead_id, key=key, issued_at=int(time.time()), url=url, extra=extra)
    )


@asynccontextmanager
async def leadloop_api(tmp_path: Path, **settings: str) -> AsyncIterator[tuple[str, list[str]]]:
    """`leadloop api` on a free loopback port; yields its URL and, once it has stopped, its output lines."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADLOOP_")}
    env |= {
        "LEADLOOP_DATABASE_URL": db,
        "LEADLOOP_SECRET_KEY": SECRET,
        "LEADLOOP_API_KEYS": f'["{API_KEY}"]',
        "LEADLOOP_TEMPORAL_ADDRESS": "127.0.0.1:1",
        "LEADLOOP_RELAY_INTERVAL": "3600",
        "LEADLOOP_ENCRYPTION_KEYS": f'{{"k1": "{base64.b64encode(b"k" * 32).decode()}"}}',
        "LEADLOOP_CODEC_TOKEN": CODEC_TOKEN,
        "LEADLOOP_DEMO_SITE": "true",
        "NO_COLOR": "1",
        **{f"LEADLOOP_{name.upper()}" if name.islower() else name: value for name, value in settings.items()},
    }
    process = await asyncio.create_subprocess_exec(
        str(BIN / "leadloop"),
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for _ in range(300):  # until it answers
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            yield url, lines
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            out, _ = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            process.kill()
            out, _ = await process.communicate()
        lines.extend(out.decode().splitlines())


def access_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r'HTTP/1.1" \d{3}', line)]


async def test_the_access_log_keeps_no_token(tmp_path: Path) -> None:
    tokens = {
        "open": sign("open"),
        "click": sign("click", url="https://example.com/"),
        "unsubscribe": sign("unsubscribe"),
        "rep": sign("rep", key="lead-1.c0.a1", extra="accept"),
        "visitor": sign("visitor", key=""),
    }
    requests = [
        ("GET", f"/o/{tokens['open']}.gif", "/o/[redacted]"),
        ("GET", f"/c/{tokens['click']}", "/c/[redacted]"),
        ("GET", f"/u/{tokens['unsubscribe']}", "/u/[redacted]"),
        ("POST", f"/u/{tokens['unsubscribe']}", "/u/[redacted]"),
        ("GET", f"/r/{tokens['rep']}", "/r/[redacted]"),
        ("POST", f"/codec/{CODEC_TOKEN}/decode", "/codec/[redacted]/decode"),
        ("GET", f"/site/pricing?ll={tokens['visitor']}&plan=pro", "/site/pricing?ll=[redacted]&plan=pro"),
        ("GET", "/healthz", "/healthz"),
    ]
    async with leadloop_api(tmp_path) as (url, lines):
        async with httpx.AsyncClient(base_url=url) as http:
            for method, path, _ in requests:
                body = {"json": {"payloads": []}} if "codec" in path else {}
                reply = await http.request(method, path, headers=THUNDERBIRD, **body)
                assert reply.status_code < 500, (path, reply.text)
    logged = access_lines(lines)
    for method, _, shown in requests:
        assert any(f'"{method} {shown} HTTP/1.1"' in line for line in logged), (shown, logged)
    everything = "\n".join(lines)
    for name, token in [*tokens.items(), ("codec", CODEC_TOKEN)]:
        assert token not in everything, f"the {name} token is in the log"


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    """Requests come from 127.0.0.1 here: uvicorn alone would believe their X-Forwarded-For (its default
    FORWARDED_ALLOW_IPS is the loopback; here even "*"); leadloop believes LEADLOOP_TRUSTED_PROXIES only."""
    forwarded = {"x-forwarded-for": "198.51.100.23"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with leadloop_api(tmp_path / "a", FORWARDED_ALLOW_IPS="*") as (url, untrusted):
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/beacon.js?probe=address", headers=forwarded)).status_code == 200
    async with leadloop_api(tmp_path / "b", trusted_proxies='["127.0.0.1", "::1"]') as (url, trusted):
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/beacon.js?probe=address", headers=forwarded)).status_code == 200
            garbage = {"x-forwarded-for": "not-an-ip"}
            assert (await http.get("/beacon.js?probe=garbage", headers=garbage)).status_code == 200

    def client_of(lines: list[str], probe: str) -> str:
        [line] = [line for line in access_lines(lines) if f"probe={probe}" in line]
        return line.split()[1]  # "INFO:     127.0.0.1:51234 - ..."

    assert client_of(untrusted, "address").startswith("127.0.0.1:")
    assert client_of(trusted, "address").startswith("198.51.100.23:")
    assert client_of(trusted, "garbage").startswith("127.0.0.1:")


@pytest.mark.parametrize("case", ["untrusted peer", "trusted peer", "not an address", "trusted chain"])
async def test_the_rate_limit_and_stored_events_see_the_client_only_a_trusted_proxy_names(
    make_settings: Any, database_url: str, sessionmaker: Any, case: str
) -> None:
    """A flood of pixels, each request naming another X-Forwarded-For: from an untrusted peer (uvicorn's own
    default trusts the loopback) or with a value that is not an address, every request is the peer's and the
    limit holds; from a trusted proxy each named client has its own allowance."""
    async with sessionmaker() as session:
        lead = Lead(email="maria@example.gr", attributes={})
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
                message_id="<m@x>",
                attempts=1,
                sent_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
        await session.commit()
    peer, trusted, named = {
        "untrusted peer": ("127.0.0.1", [], lambda n: f"198.51.100.{n}"),
        "trusted peer": ("10.1.2.3", ["10.0.0.0/8"], lambda n: f"198.51.100.{n}"),
        "not an address": ("10.1.2.3", ["10.0.0.0/8"], lambda n: f"not-an-ip-{n}"),
        # the client's own header, then the trusted proxies' additions: the last address no proxy of ours is
        "trusted chain": ("10.1.2.3", ["10.0.0.0/8"], lambda n: f"203.0.113.9, 198.51.100.{n}, 10.9.9.9"),
    }[case]
    settings = make_settings(
        database_url=database_url,
        demo=False,
        secret_key=SECRET,
        api_keys=[API_KEY],
        trusted_proxies=trusted,
        rate_limit_per_minute=60,
        rate_limit_burst=2,
        relay_interval=3600,
    )
    app = create_app(settings, sessionmaker=sessionmaker, client=None)
    pixel = f"/o/{sign('open', lead.id, key=f'lead-{lead.id}.c0.welcome')}.gif"
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        answers = [
            (await http.get(pixel, headers={**THUNDERBIRD, "x-forwarded-for": named(n)})).status_code
            for n in range(1, 5)
        ]
    async with sessionmaker() as session:
        addresses = sorted(str(e.client_ip) for e in (await session.execute(select(EngagementEvent))).scalars())
    if case in ("untrusted peer", "not an address"):
        assert answers == [200, 200, 429, 429]
        assert set(addresses) == {peer}
    else:
        assert answers == [200] * 4
        assert addresses == [f"198.51.100.{n}" for n in range(1, 5)]


def test_redacting_leaves_other_paths_alone() -> None:
    assert redact_path("/leads/12/dispositions") == "/leads/12/dispositions"
    assert redact_path("/codec/decode") == "/codec/decode"  # the token came in the Authorization header
    assert redact_path("/beacon.js?v=2") == "/beacon.js?v=2"
    assert redact_path("/site/?x=1&ll=abc") == "/site/?x=1&ll=[redacted]"
