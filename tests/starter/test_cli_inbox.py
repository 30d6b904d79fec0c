"""`leadloop inbox` as a process against a real dovecot: TLS modes, a refused login, bad settings, and kill -9
mid-batch with a real lead workflow on the time-skipping server — every message stored once and applied once."""

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from leadloop import PROJECT_ROOT
from leadloop.domain.models import LeadState
from leadloop.infra.db import InboundMessage, Lead, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.services.enrollment import workflow_id
from tests.conftest import client_address, free_port, with_pydantic
from tests.dovecot import Dovecot
from tests.leadloop.services.test_imap_reader import STORED, message
from tests.leadloop.services.test_inbound import add_lead, add_send
from tests.workflows.test_lead_nurture import CADENCE, RecordingSender, nurture_worker, start

INBOX = [sys.executable, "-m", "starter.cli", "inbox"]


async def environment(tmp_path: Path, server: Dovecot, security: str = "none", **extra: str) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(url)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEADLOOP_")}
    return env | {
        "LEADLOOP_DATABASE_URL": url,
        "LEADLOOP_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # nobody: these messages match no lead
        "LEADLOOP_DEMO": "true",
        "COLUMNS": "200",
        **server.env(security),
        **extra,
    }


async def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *INBOX, *args, env=env, cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def count_rows(url: str) -> int:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(InboundMessage)) or 0)
    finally:
        await engine.dispose()


async def test_once_reads_over_each_tls_mode(dovecot: Dovecot, tmp_path: Path) -> None:
    for number, security in enumerate(("ssl", "starttls", "none")):
        uid = dovecot.append(message(number))
        env = await environment(tmp_path, dovecot, security)
        code, out, err = await run(env, "--once")
        assert code == 0, err
        assert "1 message(s) stored" in out
        assert STORED in dovecot.flags()[uid]
    assert await count_rows(env["LEADLOOP_DATABASE_URL"]) == 3


async def test_a_certificate_nobody_vouches_for_is_refused(dovecot: Dovecot, tmp_path: Path) -> None:
    uid = dovecot.append(message(1))
    env = await environment(tmp_path, dovecot, "ssl")
    del env["LEADLOOP_IMAP_CA_FILE"]  # the system's CAs do not know the test server's own certificate
    code, _, err = await run(env, "--once")
    assert code == 1
    assert "certificate is not trusted" in err and "Traceback" not in err
    assert await count_rows(env["LEADLOOP_DATABASE_URL"]) == 0 and STORED not in dovecot.flags()[uid]


async def test_a_wrong_password_is_a_clear_error_and_touches_nothing(dovecot: Dovecot, tmp_path: Path) -> None:
    uid = dovecot.append(message(1))
    env = await environment(tmp_path, dovecot, LEADLOOP_IMAP_PASSWORD="not-the-password")
    code, out, err = await run(env)
    assert code == 1, out
    assert err.startswith("error: the IMAP server at 127.0.0.1:") and "refused the login" in err
    assert "AUTHENTICATIONFAILED" in err and "Traceback" not in err and "not-the-password" not in err
    assert await count_rows(env["LEADLOOP_DATABASE_URL"]) == 0 and STORED not in dovecot.flags()[uid]


async def test_an_unreachable_server_at_start_is_a_clear_error(dovecot: Dovecot, tmp_path: Path) -> None:
    env = await environment(tmp_path, dovecot, LEADLOOP_IMAP_PORT=str(free_port()))
    code, _, err = await run(env)
    assert code == 1
    assert "error: the IMAP server at 127.0.0.1:" in err and "refused" in err.lower() and "Traceback" not in err


async def test_bad_settings_are_named_and_nothing_is_read(dovecot: Dovecot, tmp_path: Path) -> None:
    uid = dovecot.append(message(1))
    # each setting's every rule: tests/leadloop/infra/test_imap_settings.py; here, that the command says them
    cases = {
        "LEADLOOP_IMAP_FLAG": ("\\Seen", "LEADLOOP_IMAP_FLAG: '\\\\Seen' is not an IMAP keyword"),
        "LEADLOOP_IMAP_AFTER": ("move", "LEADLOOP_IMAP_AFTER=move needs LEADLOOP_IMAP_MOVE_TO"),
        "LEADLOOP_IMAP_HOST": ("", "LEADLOOP_IMAP_HOST is not set"),
    }
    for name, (value, said) in cases.items():
        env = await environment(tmp_path, dovecot, **{name: value})
        code, _, err = await run(env)
        assert code == 1, name
        assert said in err and "Traceback" not in err, (name, err)
    env = await environment(tmp_path, dovecot, LEADLOOP_IMAP_FOLDERS='["Nope"]')
    code, _, err = await run(env)
    assert code == 1 and "has no folder 'Nope'" in err
    assert await count_rows(env["LEADLOOP_DATABASE_URL"]) == 0 and STORED not in dovecot.flags()[uid]


async def test_kill_9_mid_batch_then_restart_stores_and_applies_every_message_once(
    dovecot: Dovecot, tmp_path: Path, time_skipping_env: Any
) -> None:
    env_t: WorkflowEnvironment = time_skipping_env
    client = with_pydantic(env_t.client)
    env = await environment(tmp_path, dovecot, LEADLOOP_TEMPORAL_ADDRESS=client_address(client))
    url = env["LEADLOOP_DATABASE_URL"]
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    total = 40
    task_queue = f"tq-{uuid.uuid4()}"
    try:
        lead_id = await add_lead(sessions, "anna@example.com")
        sent = await add_send(sessions, lead_id, "welcome", "Welcome")
        for number in range(total):
            dovecot.append(message(number, in_reply_to=sent.message_id))
        async with nurture_worker(client, task_queue, RecordingSender()):
            await start(client, task_queue, Lead(id=lead_id, email="anna@example.com", timezone="UTC"), CADENCE)
            log = (tmp_path / "inbox.log").open("ab")
            first = await asyncio.create_subprocess_exec(*INBOX, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while await count_rows(url) < 5 and loop.time() < deadline and first.returncode is None:
                await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            at_kill = await count_rows(url)
            assert 5 <= at_kill < total, f"the kill should land mid-batch: {at_kill} of {total} stored"
            second = await asyncio.create_subprocess_exec(*INBOX, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log)
            try:
                deadline = loop.time() + 60
                while loop.time() < deadline:
                    async with sessions() as session:
                        statuses = list((await session.execute(select(InboundMessage.status))).scalars())
                    if len(statuses) == total and set(statuses) == {"signalled"}:
                        break
                    await asyncio.sleep(0.1)
                assert len(statuses) == total and set(statuses) == {"signalled"}, statuses
                flags = dovecot.flags()
                deadline = loop.time() + 10
                while not all(STORED in f for f in flags.values()) and loop.time() < deadline:
                    await asyncio.sleep(0.1)
                    flags = dovecot.flags()
                assert len(flags) == total and all(STORED in f and "\\Seen" not in f for f in flags.values())
                state = await client.get_workflow_handle(workflow_id(lead_id)).query("state", result_type=LeadState)
                assert state.inbound.human_reply == total
            finally:
                second.send_signal(signal.SIGINT)
                await asyncio.wait_for(second.wait(), 30)
                log.close()
            await client.get_workflow_handle(workflow_id(lead_id)).terminate("test over")
    finally:
        await engine.dispose()
