"""Every command that needs Temporal says the same thing when it cannot reach it: one error line, exit 1."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadloop.infra.settings import get_settings
from starter.cli import app
from tests.conftest import free_port

NEEDS_TEMPORAL = [
    ["setup"],
    ["retry", "7"],
    ["state", "7"],
    ["status", "7"],
    ["pause", "7"],
    ["resume", "7"],
    ["accept", "7"],
    ["reject", "7", "--reason", "no_budget"],
    ["list"],
]


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Settings whose Temporal address has nothing listening; the address is returned."""
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("LEADLOOP_TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("LEADLOOP_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}")
    get_settings.cache_clear()
    yield address
    get_settings.cache_clear()


@pytest.mark.parametrize("args", NEEDS_TEMPORAL, ids=lambda args: " ".join(args))
def test_a_command_without_temporal_says_so_in_one_line(nowhere: str, args: list[str]) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: cannot reach Temporal at {nowhere}: "), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_forget_without_temporal_changes_nothing_and_says_so(nowhere: str) -> None:
    result = CliRunner().invoke(app, ["forget", "ana@example.com", "--yes"], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: cannot reach Temporal at {nowhere}: ")
    assert result.output.rstrip().endswith("; nothing was changed")
    assert not Path("leadloop.db").exists()  # the database was not even opened
