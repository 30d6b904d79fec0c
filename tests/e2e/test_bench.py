"""`make bench` in small: the real dev server, worker, sales worker, HTTP service and SMTP sink as their own
processes; the figures it writes are the ones a reader of the README's table looks at. Its refusals of
options it cannot measure are argparse's exit 2, before anything starts or is written."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from leadloop import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    """bench/run.py in its own process group, so a run that hangs takes its servers and workers with it."""
    process = subprocess.Popen(
        [sys.executable, "bench/run.py", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the bench did not finish in 540 s:\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_small_run_writes_every_figure_of_the_table(tmp_path: Path) -> None:
    run = bench(
        "--leads",
        "20",
        "--steps",
        "2",
        "--hot",
        "3",
        "--mem-leads",
        "30",
        "--inbound",
        "20",
        "--range-hits",
        "300",
        "--configs",
        "sqlite-wal/sqlite",
        "--out",
        str(tmp_path),
        "--name",
        "smoke",
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (json_file,) = tmp_path.glob("*-smoke.json")
    report = json.loads(json_file.read_text())
    (config,) = report["configs"]
    assert "error" not in config, config
    assert config["database_per_lead"]["outbox_status"] == {"sent": 40}  # every email once, none uncertain
    assert config["database_per_lead"]["rows"]["leads"] == 20
    assert config["floor"]["starts_per_s"] > 0 and config["floor"]["steps_per_s"] > 0
    assert config["leadloop"]["enrolments_per_s"] > 0 and config["leadloop"]["emails_per_s"] > 0
    assert config["smtp_floor"]["emails_per_s"] > 0
    assert 0 < config["ratios"]["emails_vs_orchestration_floor"] and 0 < config["ratios"]["enrolments_vs_bare_starts"]
    assert config["latency"]["samples"] == 3 and 0 < config["latency"]["p50_s"] <= config["latency"]["p99_s"]
    assert 0 < config["leadloop"]["history_events_per_lead_cycle"] <= 200
    assert config["mid_cadence"]["leads"] == 30
    reply = config["reply_latency"]  # a reply handed over to the rep, each within the bound
    assert reply["samples"] == 3 and reply["over_60_s"] == 0 and 0 < reply["p50_s"] <= reply["p99_s"] < 60
    inbound = config["inbound"]  # the mix of 20: every message stored and signalled to its waiting lead
    assert inbound["messages"] == inbound["signalled"] == 20 and inbound["statuses"]["human_reply/signalled"] == 2
    assert inbound["classify_per_s"] > 0 and 0 < inbound["end_to_end_per_s"] <= inbound["store_per_s"]
    for process in ("worker", "sales worker", "http", "dev server"):
        assert config["memory_kib"][process]["VmHWM"] > 0
        assert config["mid_cadence"]["memory_kib"][process]["VmRSS"] > 0
    markdown = json_file.with_suffix(".md").read_text()
    assert "| sqlite-wal / sqlite |" in markdown and "Targets:" in markdown and "p99 open-to-escalation" in markdown
    assert "reply-to-rep p50 / p95 / p99" in markdown
    ranges = report["ranges"]  # every sort of address looked up, agreeing with a linear scan
    assert ranges["hits_per_sort"] == 300 and ranges["disagreements"] == [] and ranges["networks"] > 10_000
    assert 0 < ranges["lookup_us_worst"] < ranges["linear_scan_us"]
    assert "Range lookup in the shipped ranges file" in markdown and "range lookup < 20 µs" in markdown


def test_the_range_lookup_agrees_with_a_linear_scan_and_is_far_faster() -> None:
    from bench.ranges import range_lookups

    figures = range_lookups(200, naive_hits=40)
    assert figures["disagreements"] == [] and figures["linear_scan_hits"] == 40
    assert set(figures["lookup_us"]) == {"in_v4", "in_v6", "in_v4_mapped", "out_v4", "out_v6"}
    # the scan tries ~21,000 networks a hit; a hit's binary search is two orders of magnitude quicker at least
    assert figures["lookup_us_worst"] * 100 < figures["linear_scan_us"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--configs", "sqlite-wal/mysql"], "'sqlite-wal/mysql' is not DEV/DB"),
        (["--configs", "sqlite-wal"], "'sqlite-wal' is not DEV/DB"),
        (["--leads", "0"], "--leads must be at least 1"),
        (["--hot", "0"], "--hot must be at least 1"),
        (["--activities", "0"], "--activities must be at least 1"),
        (["--inbound", "-1"], "--inbound must be at least 0"),
        (["--range-hits", "-1"], "--range-hits must be at least 0"),
        (["--leads", "many"], "invalid int value"),
    ],
)
def test_options_it_cannot_measure_are_refused_before_anything_runs(tmp_path: Path, args: list[str], says: str) -> None:
    run = bench(*args, "--out", str(tmp_path / "results"))
    assert run.returncode == 2 and says in run.stderr, run.stderr
    assert not (tmp_path / "results").exists() and run.stdout == ""
