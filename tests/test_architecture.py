"""The arrows between leadloop's parts hold, and breaking one fails `make test` (import-linter contracts)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from leadloop import PROJECT_ROOT

PARTS = ("leadloop", "workflows", "activities", "starter")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The project's code and contracts, away from the checkout, to break on purpose."""
    for part in PARTS:
        shutil.copytree(PROJECT_ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_checkout_keeps_every_contract() -> None:
    checked = lint(PROJECT_ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 broken" in checked.stdout


def test_the_copy_is_checked_as_the_checkout_is(copy: Path) -> None:
    checked = lint(copy)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # a pure rule reaching for the database
        ("leadloop/domain/scoring.py", "import leadloop.infra.db", "the domain imports no other part of leadloop"),
        # the domain importing a service: also a layer broken
        ("leadloop/domain/tokens.py", "import leadloop.services.roster", "leadloop's layers"),
        # workflow code doing I/O
        ("workflows/lead_nurture.py", "import sqlalchemy", "workflows import only temporalio"),
        # the HTTP service signalling a workflow by hand instead of through leadloop.services
        ("starter/api.py", "import workflows.lead_nurture", "the CLI and the HTTP service reach workflows"),
        # an activity importing the CLI
        ("activities/leads.py", "import starter.cli", "activities, the worker's effects, never import"),
        # an activity borrowing from the services (the clients' layer)
        ("activities/email.py", "import leadloop.services.roster", "activities, the worker's effects, never import"),
        # a service reaching into the worker's effects directly
        ("leadloop/services/leads.py", "import activities.email", "leadloop's services, infrastructure and report"),
    ],
)
def test_an_import_against_the_arrows_fails_the_check(copy: Path, module: str, line: str, contract: str) -> None:
    path = copy / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # broken on purpose\n", encoding="utf-8")
    checked = lint(copy)
    assert checked.returncode != 0
    broken = [row for row in checked.stdout.splitlines() if row.endswith(" BROKEN")]
    assert any(contract in row for row in broken), checked.stdout
