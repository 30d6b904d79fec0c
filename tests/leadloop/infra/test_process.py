"""run_and_exit: a command's exit code and every line of its output survive leaving past Python's teardown."""

import subprocess
import sys

import pytest

from leadloop import PROJECT_ROOT


def run(body: str) -> subprocess.CompletedProcess[str]:
    code = "\n".join(("from leadloop.infra.process import run_and_exit", "def main():", body, "run_and_exit(main)"))
    code += "\nprint('not reached')\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)


@pytest.mark.parametrize(
    ("body", "exit_code", "stderr_has"),
    [
        ("    return 3", 3, ""),
        ("    return None", 0, ""),
        ("    raise SystemExit(2)", 2, ""),
        ("    raise SystemExit('bench: it failed')", 1, "bench: it failed"),
        ("    raise ValueError('nobody caught me')", 1, "ValueError: nobody caught me"),
        ("    raise KeyboardInterrupt", 1, "KeyboardInterrupt"),
    ],
)
def test_the_exit_code_is_the_commands(body: str, exit_code: int, stderr_has: str) -> None:
    result = run(body)
    assert result.returncode == exit_code, result.stderr
    assert stderr_has in result.stderr and "not reached" not in result.stdout


def test_buffered_output_is_flushed_before_leaving() -> None:
    result = run(
        "    import logging\n    logging.basicConfig()\n    logging.getLogger('x').warning('logged')\n"
        "    print('line\\n' * 20000, end='')\n    print('partial', end='')"
    )
    assert result.returncode == 0
    assert result.stdout == "line\n" * 20000 + "partial"
    assert "WARNING:x:logged" in result.stderr
