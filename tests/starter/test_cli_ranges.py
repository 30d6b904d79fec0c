"""`leadloop ranges` as an operator runs it: update from downloaded lists, show, check; refusals that write nothing;
the HTTP service refusing a broken ranges file at start."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from leadloop.domain.ranges import PACKAGED_RANGES, load_ranges
from leadloop.infra.settings import get_settings
from starter.cli import app
from tests.leadloop.domain.test_range_sources import APPLE, AWS, AZURE, COPIES

runner = CliRunner()


@pytest.fixture
def downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder of downloaded provider lists, and settings without a ranges file of their own."""
    (tmp_path / "ip-ranges.json").write_text(json.dumps(AWS))
    (tmp_path / "ServiceTags_Public_20261130.json").write_text(json.dumps(AZURE))
    (tmp_path / "egress-ip-ranges.csv").write_bytes(APPLE)
    monkeypatch.delenv("LEADLOOP_MACHINE_RANGES_FILE", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(tmp_path)  # no .env here
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    get_settings.cache_clear()
    return runner.invoke(app, ["ranges", *args], env=env)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_update_builds_a_file_from_downloads_keeping_the_shipped_sources(downloads: Path) -> None:
    out = downloads / "ranges.json"
    lists = [str(downloads / n) for n in ("ip-ranges.json", "ServiceTags_Public_20261130.json", "egress-ip-ranges.csv")]
    done = invoke("update", *lists, "--out", str(out), "--date", "2026-12-01")
    assert done.exit_code == 0, done.output
    assert f"wrote {out}" in done.output and "aws (3)" in done.output and "azure (1)" in done.output
    written = load_ranges(out)
    shipped = load_ranges(PACKAGED_RANGES)
    # the given lists replace their sources; the shipped file's others (Microsoft 365, Google, Apple...) stay
    assert written.by_source()["aws"] == ["3.4.12.4/32", "3.5.140.0/22", "2406:daba:f000::/40"]
    assert written.by_source()["microsoft-365"] == shipped.by_source()["microsoft-365"]
    assert str(written.sources["azure"].published) == "2026-12-01" and str(written.generated) == "2026-12-01"
    assert written.lookup("40.93.0.5").kind == "gateway"  # type: ignore[union-attr]

    shown = invoke("show", "--file", str(out))
    assert shown.exit_code == 0, shown.output
    assert f"version: {written.version}" in shown.output
    assert "aws" in shown.output and "2026-08-21" in shown.output and "private_relay" in shown.output

    checked = invoke("check", "::ffff:40.92.1.1", "2a01:111:f403::1", "192.0.2.1", "--file", str(out))
    assert checked.exit_code == 0, checked.output
    lines = checked.output.splitlines()
    assert lines[0].startswith("::ffff:40.92.1.1: gateway (machine), Microsoft 365") and "40.92.0.0/15" in lines[0]
    assert lines[1].startswith("2a01:111:f403::1: gateway (machine)")
    assert lines[2] == "192.0.2.1: in no published range"


def test_update_writes_to_the_configured_file_and_refuses_without_one(downloads: Path) -> None:
    refused = invoke("update", str(downloads / "ip-ranges.json"))
    assert refused.exit_code == 1
    assert error_lines(refused.output) == [
        "error: no file to write: pass --out PATH (and set LEADLOOP_MACHINE_RANGES_FILE to it to use it)"
    ]
    configured = downloads / "configured.json"
    done = invoke("update", str(downloads / "ip-ranges.json"), env={"LEADLOOP_MACHINE_RANGES_FILE": str(configured)})
    assert done.exit_code == 0, done.output
    shown = invoke("show", env={"LEADLOOP_MACHINE_RANGES_FILE": str(configured)})
    assert f"file: {configured}" in shown.output


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("notes.txt", b"these are not ranges\n", "notes.txt: not a format leadloop reads"),
        ("ip-ranges.json", json.dumps(AWS).encode()[:-30], "ip-ranges.json: not whole JSON, cut short?"),
        ("egress-ip-ranges.csv", APPLE + b"172.224.2", "line 4: 1 fields, not Apple's 5 (network, country"),
        ("goog.json", (COPIES / "goog.json").read_bytes(), None),
    ],
)
def test_a_bad_list_changes_nothing(downloads: Path, name: str, content: bytes, says: str | None) -> None:
    out = downloads / "ranges.json"
    assert invoke("update", str(downloads / "ip-ranges.json"), "--out", str(out)).exit_code == 0
    before = out.read_bytes()
    (downloads / name).write_bytes(content)
    refused = invoke("update", str(downloads / name), "--out", str(out), "--fresh")
    assert refused.exit_code == 1
    (line,) = error_lines(refused.output)
    # goog.json alone, fresh: nothing to leave Google Cloud's ranges to
    assert (says or "give google-cloud's file too") in line, line
    assert out.read_bytes() == before
    assert sorted(p.name for p in downloads.iterdir() if p.name.startswith(".")) == []


def test_bad_arguments_are_refused(downloads: Path) -> None:
    bad_date = invoke("update", str(downloads / "ip-ranges.json"), "--out", "x.json", "--date", "1 Dec")
    assert bad_date.exit_code == 1 and error_lines(bad_date.output) == [
        "error: --date '1 Dec' is not a date (YYYY-MM-DD)"
    ]
    missing = invoke("update", str(downloads / "nope.json"), "--out", "x.json")
    assert missing.exit_code == 1 and "nope.json: cannot be read" in error_lines(missing.output)[0]
    assert not (downloads / "x.json").exists()
    garbage = invoke("check", "40.92.1.1", "not-an-ip")
    assert garbage.exit_code == 1 and error_lines(garbage.output) == ["error: not an IP address: not-an-ip"]
    (downloads / "broken.json").write_text('{"format": 2}')
    broken = invoke("show", "--file", str(downloads / "broken.json"))
    assert broken.exit_code == 1 and "format: 2 is not 1" in error_lines(broken.output)[0]
    # a broken file to update is left as it is, unless --fresh says to build from the given lists alone
    kept = invoke("update", str(downloads / "ip-ranges.json"), "--out", str(downloads / "broken.json"))
    assert kept.exit_code == 1 and "(--fresh builds the file from the given lists alone)" in error_lines(kept.output)[0]
    assert (downloads / "broken.json").read_text() == '{"format": 2}'
    fresh = invoke("update", str(downloads / "ip-ranges.json"), "--out", str(downloads / "broken.json"), "--fresh")
    assert fresh.exit_code == 0 and list(load_ranges(downloads / "broken.json").sources) == ["aws"]


def test_the_http_service_refuses_to_start_with_a_broken_ranges_file(
    downloads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from starter.api import create_app

    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda web, **kwargs: started.append(web))
    broken = downloads / "ranges.json"
    broken.write_text(json.dumps({**json.loads(PACKAGED_RANGES.read_text()), "generated": "yesterday"}))
    env = {"LEADLOOP_DEMO": "true", "LEADLOOP_MACHINE_RANGES_FILE": str(broken)}
    get_settings.cache_clear()
    refused = runner.invoke(app, ["api"], env=env)
    assert refused.exit_code == 1 and started == []
    assert error_lines(refused.output) == [f"error: {broken}: generated: 'yesterday' is not a date (YYYY-MM-DD)"]
    assert "Traceback" not in refused.output

    # the app itself: its start fails on the file, whoever starts it
    monkeypatch.setenv("LEADLOOP_DEMO", "true")
    monkeypatch.setenv("LEADLOOP_MACHINE_RANGES_FILE", str(broken))
    get_settings.cache_clear()
    web = create_app(get_settings())

    async def start() -> None:
        async with web.router.lifespan_context(web):
            pass

    import asyncio

    from leadloop.domain.ranges import RangesError

    with pytest.raises(RangesError, match="generated: 'yesterday' is not a date"):
        asyncio.run(start())
