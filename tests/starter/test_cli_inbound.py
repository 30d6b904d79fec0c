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
