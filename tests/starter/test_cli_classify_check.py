"""`leadloop classify-check` as anyone runs it on a labelled corpus: the numbers, the misses, and clear errors."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from leadloop import PROJECT_ROOT
from leadloop.domain.engagement_corpus import PACKAGED_CORPUS

LEADLOOP = str(Path(sys.executable).parent / "leadloop")
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
SOURCE = "https://learn.microsoft.com/en-us/defender-office-365/safe-links-about"


def leadloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEADLOOP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def hit(**fields: Any) -> str:
    base = {"label": "human", "case": "browser_click", "kind": "click", "user_agent": CHROME}
    base |= {"client_ip": "203.0.113.9", "headers": {"accept": "text/html"}, "seconds_after_send": 900}
    base |= {"url": "https://site.example/pricing", "source": SOURCE}
    return json.dumps(base | fields)


def test_the_packaged_corpus_prints_the_matrix_recall_and_misses() -> None:
    result = leadloop("classify-check", str(PACKAGED_CORPUS))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "engagement-corpus.jsonl: 805 hits (rows: labelled, columns: called)" in out
    assert "│ gateway  │     0 │     118 │" in out  # every gateway hit called a gateway
    assert "│ all      │  430 │            414 │  96.3% │" in out
    assert "human hits called machine: 0 of 375 (0.0%)" in out
    assert "misclassified: 16" in out and "paced_link_walker" in out


def test_misses_are_listed_with_line_label_verdict_and_reason(tmp_path: Path) -> None:
    corpus = tmp_path / "mine.jsonl"
    lines = [
        hit(),
        "",
        hit(label="machine", **{"class": "gateway"}, case="unlisted_gateway"),  # an address no list names
        hit(label="machine", **{"class": "gateway"}, case="safe_links", client_ip="40.93.2.2"),
    ]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = leadloop("classify-check", str(corpus))
    assert result.returncode == 0, result.stderr  # it ran: misses are its findings, not an error
    assert "│ gateway  │    2 │              1 │  50.0% │" in result.stdout
    miss = next(row for row in result.stdout.splitlines() if "unlisted_gateway" in row)
    assert "│    3 │" in miss and "machine (gateway)" in miss and "human 0.65" in miss and "browser navigation" in miss
    assert "safe_links" not in result.stdout.split("misclassified")[1]


def test_another_ranges_file_is_used_when_given(tmp_path: Path) -> None:
    corpus = tmp_path / "mine.jsonl"
    corpus.write_text(hit() + "\n", encoding="utf-8")
    ranges = tmp_path / "ranges.json"
    source = {"kind": "gateway", "provider": "Our own gateway", "url": SOURCE, "published": "2026-11-30"}
    ranges.write_text(
        json.dumps(
            {"format": 1, "version": "t", "generated": "2026-11-30", "sources": {"ours": source},
             "ranges": [["203.0.113.0/24", "ours"]]}
        ),
        encoding="utf-8",
    )  # fmt: skip
    result = leadloop("classify-check", str(corpus), "--ranges", str(ranges))
    assert result.returncode == 0, result.stderr
    assert "human hits called machine: 1 of 1 (100.0%)" in result.stdout
    assert "Our own gateway's published range (203.0.113.0/24)" in result.stdout


def test_bad_input_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([hit(), hit(), hit(label="machine")]) + "\n", encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    broken_ranges = tmp_path / "ranges.json"
    broken_ranges.write_text("{", encoding="utf-8")
    cases = [
        ((str(bad),), f"error: {bad}, line 3: class: a machine hit needs its class"),
        ((str(tmp_path / "missing.jsonl"),), f"error: {tmp_path / 'missing.jsonl'}: cannot be read"),
        ((str(empty),), f"error: {empty}: no cases"),
        ((str(empty), "--ranges", str(broken_ranges)), f"error: {broken_ranges}: not JSON"),
    ]
    for args, error in cases:
        result = leadloop("classify-check", *args)
        assert result.returncode == 1, (args, result.stdout)
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(error), result.stderr


def test_it_is_listed_with_the_other_commands() -> None:
    result = leadloop("--help")
    assert result.returncode == 0 and "classify-check" in result.stdout
