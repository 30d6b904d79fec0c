"""`leadloop inbound classify` as an operator runs it: a verdict with evidence, JSON, and a clear error."""

import json
import os
import subprocess
import sys
from pathlib import Path

from leadloop import PROJECT_ROOT

LEADLOOP = str(Path(sys.executable).parent / "leadloop")
CORPUS = PROJECT_ROOT / "tests" / "leadloop" / "domain" / "inbound_corpus"


def leadloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEADLOOP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def test_classify_prints_the_verdict_and_its_evidence() -> None:
    result = leadloop("inbound", "classify", str(CORPUS / "auto_reply" / "outlook_en_automatic_reply_until.eml"))
    assert result.returncode == 0, result.stderr
    assert "kind: auto_reply (high confidence)" in result.stdout
    assert "answers: <lead-51.c1.welcome@acme.example>" in result.stdout
    assert "return date: 2026-12-08" in result.stdout
    assert "  - automatic by header (Auto-Submitted: auto-generated)" in result.stdout


def test_classify_shows_a_reply_without_its_quote() -> None:
    result = leadloop("inbound", "classify", str(CORPUS / "human_reply" / "gmail_en_yes_call_me_tuesday.eml"))
    assert result.returncode == 0, result.stderr
    assert "kind: human_reply" in result.stdout
    assert "  Yes, call me on Tuesday." in result.stdout
    assert "wrote:" not in result.stdout and "Unsubscribe" not in result.stdout


def test_classify_json_is_one_object() -> None:
    result = leadloop("inbound", "classify", str(CORPUS / "hard_bounce" / "postfix_user_unknown_5_1_1.eml"), "--json")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["kind"] == "hard_bounce"
    assert verdict["answers"] == "<lead-11.c1.welcome@acme.example>"
    assert verdict["lead_email"] == "jane@example.net"
    assert verdict["return_date"] is None
    assert verdict["status"] == "5.1.1"
    assert any("RFC 3464" in reason for reason in verdict["evidence"])


def test_classify_json_return_date_is_iso() -> None:
    result = leadloop("inbound", "classify", str(CORPUS / "auto_reply" / "gmail_pl_poza_biurem.eml"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["return_date"] == "2026-12-10"


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = leadloop("inbound", "classify", str(tmp_path / "nope.eml"))
    assert result.returncode == 1
    assert f"error: cannot read {tmp_path / 'nope.eml'}: No such file or directory" in result.stderr
    assert result.stdout == ""


def test_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = leadloop("inbound", "classify", str(tmp_path), "--json")
    assert result.returncode == 1
    assert "error: cannot read" in result.stderr


def test_garbage_still_gets_a_verdict(tmp_path: Path) -> None:
    path = tmp_path / "garbage.eml"
    path.write_bytes(b"\x00\xff\xfe not a message at all \x80\x81")
    result = leadloop("inbound", "classify", str(path), "--json")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["kind"] == "human_reply" and verdict["confidence"] == "low"
    assert "no headers" in verdict["evidence"]


def stored_mailbox(tmp_path: Path) -> dict[str, str]:
    """A migrated SQLite database holding a matched reply and an unmatched bounce, as `leadloop inbox` would."""
    import asyncio
    from datetime import UTC, date, datetime

    from leadloop.domain.matching import Match
    from leadloop.infra.db import Lead, make_engine, make_sessionmaker
    from leadloop.services.inbound import store_inbound

    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env["LEADLOOP_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    upgraded = subprocess.run([LEADLOOP, "db", "upgrade"], capture_output=True, text=True, timeout=60, env=env)
    assert upgraded.returncode == 0, upgraded.stderr

    async def seed() -> None:
        engine = make_engine(env["LEADLOOP_DATABASE_URL"])
        try:
            async with make_sessionmaker(engine)() as session:
                lead = Lead(email="maria@example.gr", attributes={})
                session.add(lead)
                await session.flush()
                matched = Match(
                    reason="In-Reply-To names lead-1.c0.welcome", lead_id=lead.id, outbox_key="lead-1.c0.welcome"
                )
                await store_inbound(
                    session,
                    source="imap",
                    source_key="7:1",
                    raw=b"Subject: Re: hi\r\n\r\nyes",
                    message_id="<r1@example.gr>",
                    sender="maria@example.gr",
                    match=matched,
                    kind="human_reply",
                    evidence={"wording": "a question for a call"},
                    received_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
                )
                await store_inbound(
                    session,
                    source="imap",
                    source_key="7:2",
                    raw=None,
                    message_id="<b1@mx.example>",
                    match=Match(reason="no rule named a lead"),
                    kind="hard_bounce",
                    return_date=date(2026, 12, 8),
                    received_at=datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
                )
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(seed())
    return env


def run_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEADLOOP, *args], capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT, env=env)


def test_list_shows_what_was_received_newest_first_and_filters(tmp_path: Path) -> None:
    env = stored_mailbox(tmp_path)
    listed = run_with(env, "inbound", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.index("hard_bounce") < listed.stdout.index("human_reply")  # newest first
    assert "lead-1.c0.welcome" in listed.stdout and "unmatched" in listed.stdout
    replies = run_with(env, "inbound", "list", "--kind", "human_reply")
    assert "human_reply" in replies.stdout and "hard_bounce" not in replies.stdout
    unmatched = run_with(env, "inbound", "list", "--unmatched")
    assert "hard_bounce" in unmatched.stdout and "human_reply" not in unmatched.stdout


def test_show_says_what_was_read_and_why_it_matched(tmp_path: Path) -> None:
    env = stored_mailbox(tmp_path)
    reply = run_with(env, "inbound", "show", "1")
    assert reply.returncode == 0, reply.stderr
    assert "kind: human_reply" in reply.stdout
    assert "matched by: In-Reply-To names lead-1.c0.welcome" in reply.stdout
    assert "wording: a question for a call" in reply.stdout
    assert "maria@example.gr" not in reply.stdout  # the sender is kept as a hash only
    bounce = run_with(env, "inbound", "show", "2")
    assert "lead: unmatched" in bounce.stdout and "return date: 2026-12-08" in bounce.stdout
    assert "body dropped" in bounce.stdout


def test_list_and_show_refuse_what_is_not_there(tmp_path: Path) -> None:
    env = stored_mailbox(tmp_path)
    wrong_kind = run_with(env, "inbound", "list", "--kind", "spam")
    assert wrong_kind.returncode == 1 and "unknown kind 'spam'" in wrong_kind.stderr + wrong_kind.stdout
    missing = run_with(env, "inbound", "show", "99")
    assert missing.returncode == 1 and "no inbound message 99" in missing.stderr + missing.stdout
