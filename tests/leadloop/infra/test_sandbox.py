"""The workflow sandbox imports the workflow module afresh for each new workflow: its bytecode must exist,
or every lead the worker picks up compiles the module's source again (PYTHONDONTWRITEBYTECODE=1)."""

import os
import sys
from pathlib import Path

import pytest

from leadloop.infra.temporal import precompile_workflows, workflow_runner


def test_bytecode_is_written_when_missing_or_stale_and_left_alone_when_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "flows"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = package / "one.py"
    source.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # as PYTHONDONTWRITEBYTECODE=1 sets it
    cached = package / "__pycache__" / f"one.{sys.implementation.cache_tag}.pyc"
    assert not cached.exists()
    precompile_workflows(("flows.one",))
    assert cached.exists()
    written = cached.stat().st_mtime_ns
    precompile_workflows(("flows.one",))
    assert cached.stat().st_mtime_ns == written  # fresh: not compiled again
    os.utime(source, ns=(written + 10**9, written + 10**9))  # the source changed since
    precompile_workflows(("flows.one",))
    assert cached.stat().st_mtime_ns > written
    precompile_workflows(("flows.nothing_here",))  # unknown modules are no error


def test_the_worker_runner_leaves_the_lead_workflow_compiled() -> None:
    import workflows.lead_nurture as module

    workflow_runner()
    cached = Path(module.__file__).parent / "__pycache__" / f"lead_nurture.{sys.implementation.cache_tag}.pyc"
    assert cached.exists() and cached.stat().st_mtime >= Path(module.__file__).stat().st_mtime
