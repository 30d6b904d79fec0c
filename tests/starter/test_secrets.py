"""Every process that signs or verifies links refuses, outside the demo, a secret anyone may know or guess."""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from leadloop import PROJECT_ROOT
from leadloop.infra.settings import DEFAULT_SECRET_KEY, InsecureSettings
from tests.conftest import free_port

BIN = Path(sys.executable).parent
LONG = "k" * 32
#: the commands that sign links (the worker: every link in every email) or verify them (the HTTP service), and
#: the relay that runs beside the HTTP service from its settings; `cadence preview` (fixed preview-only links) and
#: `event` sign and verify nothing
SIGNERS = {
    "python worker.py": [sys.executable, str(PROJECT_ROOT / "worker.py")],
    "leadloop worker": [str(BIN / "leadloop"), "worker"],
    "leadloop api": [str(BIN / "leadloop"), "api", "--port", "0"],
    "leadloop relay": [str(BIN / "leadloop"), "relay"],
}
SECRETS: dict[str, tuple[str | None, str]] = {  # LEADLOOP_SECRET_KEY (None: unset) -> what the refusal says
    "unset": (None, f"is the published default '{DEFAULT_SECRET_KEY}'"),
    "published": (DEFAULT_SECRET_KEY, f"is the published default '{DEFAULT_SECRET_KEY}'"),
    "empty": ("", "LEADLOOP_SECRET_KEY is empty"),
    "31 bytes": ("k" * 31, "LEADLOOP_SECRET_KEY is 31 bytes: it must be at least 32"),
    "31 bytes of text": ("κλειδί-" * 2 + "k" * 5, "LEADLOOP_SECRET_KEY is 31 bytes: it must be at least 32"),
}


def clean_env(tmp_path: Path, **values: str | None) -> dict[str, str]:
    """This machine's environment without any LEADLOOP_ setting, and nothing that would reach a real service."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADLOOP_")}
    env |= {
        "LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}",
        "LEADLOOP_TEMPORAL_ADDRESS": "127.0.0.1:9",  # nothing listens: a process that got past the check fails
        "LEADLOOP_WORKER_METRICS_ADDRESS": "",
        "LEADLOOP_API_KEYS": '["a-crm-key-of-its-own"]',  # the HTTP service's other refusal is not this test's
        "NO_COLOR": "1",
        "COLUMNS": "300",
    }
    for name, value in values.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


async def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{args} did not refuse: still running after 60 s") from None
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


@pytest.mark.parametrize("command", list(SIGNERS))
async def test_each_process_that_signs_or_verifies_refuses_an_unsafe_secret_and_exits_1(
    command: str, tmp_path: Path
) -> None:
    """Started as people start them, outside the demo, with no .env: refused before anything connects."""
    cases = list(SECRETS.items())
    results = await asyncio.gather(
        *(run(SIGNERS[command], clean_env(tmp_path, LEADLOOP_SECRET_KEY=value), tmp_path) for _, (value, _) in cases)
    )
    for (case, (_, says)), (code, output) in zip(cases, results, strict=True):
        assert code == 1, (case, output)
        assert "LEADLOOP_SECRET_KEY" in output and says in output, (case, output)
        assert "LEADLOOP_DEMO=true" in output and "Traceback" not in output, (case, output)
        assert "polling task queue" not in output and "Uvicorn running" not in output, (case, output)
    assert not list(tmp_path.glob("*.db")), "a refused process created its database"


async def test_the_worker_refuses_the_published_key_among_the_old_keys(tmp_path: Path) -> None:
    code, output = await run(
        SIGNERS["python worker.py"],
        clean_env(tmp_path, LEADLOOP_SECRET_KEY=LONG, LEADLOOP_OLD_SECRET_KEYS=f'["{DEFAULT_SECRET_KEY}"]'),
        tmp_path,
    )
    assert code == 1 and "LEADLOOP_OLD_SECRET_KEYS holds the published default" in output, output


def test_a_long_key_passes_and_the_demo_allows_the_published_one(make_settings: Any) -> None:
    for fine in (LONG, "κλειδί" * 3):  # 32 and 36 bytes of UTF-8 (18 characters)
        make_settings(demo=False, secret_key=fine).refuse_unsafe_secrets("the worker")
    # an old key shorter than 32 bytes still verifies: it keeps the unsubscribe links of sent emails working
    make_settings(demo=False, secret_key=LONG, old_secret_keys=["short-old-key"]).refuse_unsafe_secrets("the worker")
    for unsafe in (DEFAULT_SECRET_KEY, "", "k" * 31):
        make_settings(demo=True, secret_key=unsafe).refuse_unsafe_secrets("the worker")
        with pytest.raises(InsecureSettings, match="LEADLOOP_SECRET_KEY"):
            make_settings(demo=False, secret_key=unsafe).refuse_unsafe_secrets("the worker")


def test_the_worker_is_not_built_with_an_unsafe_secret(make_settings: Any) -> None:
    """build_worker, as library code (the demo runs it in-process), refuses too: outside the demo only."""
    import worker as worker_module

    with pytest.raises(InsecureSettings, match="the worker will not start"):
        worker_module.build_worker(None, make_settings(demo=False, secret_key="k" * 31))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("proxies", "says"),
    [
        ('["not-an-ip"]', "'not-an-ip' does not appear to be an IPv4 or IPv6 network"),
        ('["10.0.0.1/8"]', "10.0.0.1/8 has host bits set"),
        ('["*"]', "'*' does not appear to be an IPv4 or IPv6 network"),
        ('["10.0.0.7", ""]', "'' does not appear to be an IPv4 or IPv6 network"),
    ],
)
async def test_leadloop_api_refuses_a_trusted_proxy_that_is_not_an_address(
    proxies: str, says: str, tmp_path: Path
) -> None:
    port = free_port()
    env = clean_env(tmp_path, LEADLOOP_SECRET_KEY=LONG, LEADLOOP_TRUSTED_PROXIES=proxies)
    code, output = await run([str(BIN / "leadloop"), "api", "--port", str(port)], env, tmp_path)
    assert code == 1, output
    assert f"LEADLOOP_TRUSTED_PROXIES: {says}" in output and "Traceback" not in output, output
