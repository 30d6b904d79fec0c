"""`leadloop cadence check` and `preview`: marketers' cadence and rule files validated and rendered."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from jinja2 import TemplateError

from leadloop import DATA_DIR
from leadloop.domain.cadence import cadence_path, load_cadence
from leadloop.domain.recycle import load_recycle
from leadloop.domain.routing import load_routing
from leadloop.domain.rules import RuleFileError
from leadloop.domain.scoring import load_scoring
from leadloop.domain.templates import EmailRenderer, TemplateMissing
from leadloop.infra.settings import get_settings
from leadloop.services.preview import CheckResult, check_cadence, load_sample_lead, preview_cadence
from starter.cli.terminal import console, err, fail
from starter.output import styled


def _recycle(path: Path) -> object:
    return load_recycle(path, path.parent)  # every cadence it names must load, here and now


#: The rule files a cadence folder may hold beside its cadences, and how each is checked.
RULE_FILES: dict[str, Callable[[Path], object]] = {
    "scoring.yaml": load_scoring,
    "routing.yaml": load_routing,
    "recycle.yaml": _recycle,
}


def cadence_files(paths: list[Path]) -> list[Path]:
    """The files given, with each folder's YAML files in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.glob("*.y*ml"))
        else:
            files.append(path)
    return files


def check_rules(file: Path) -> bool:
    """Load a rule file, printing its problems or `ok`; True when it loads."""
    try:
        RULE_FILES[file.name](file)
    except RuleFileError as exc:
        for problem in exc.lines():
            err.print(problem, highlight=False, markup=False)
        return False
    console.print(styled("ok", "green", f" {file}: {file.stem} rules"))
    return True


def report_check(file: Path, result: CheckResult) -> bool:
    """Print a cadence's problems or `ok` with what was rendered; True when it has none."""
    if result.problems:
        for problem in result.problems:
            err.print(problem, highlight=False, markup=False)
        return False
    assert result.cadence
    summary = f"'{result.cadence.name}' v{result.cadence.version}, {len(result.cadence.steps)} steps"
    console.print(styled("ok", "green", f" {file}: {summary}, {result.rendered} renders"))
    return True


def cadence_check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="cadence files or folders (default LEADLOOP_CADENCE_DIR)")
    ] = None,
    lead: Annotated[Path | None, typer.Option(help="sample lead JSON to render with")] = None,
) -> None:
    """Validate cadence files and render every step; errors name file, line and field."""
    settings = get_settings()
    files = cadence_files(paths or [settings.cadence_dir])
    if not files:
        raise fail("no cadence files to check")
    try:
        sample = load_sample_lead(lead or DATA_DIR / "examples" / "lead.json")
    except ValueError as exc:
        raise fail(str(exc)) from None
    renderer = EmailRenderer(settings.template_dir)
    failed = 0
    for file in files:
        if file.name in RULE_FILES:
            passed = check_rules(file)
        else:
            passed = report_check(file, check_cadence(file, renderer, sample, settings))
        failed += not passed
    if failed:
        raise typer.Exit(1)


def cadence_preview(
    name: Annotated[str, typer.Argument(help="cadence name or file")],
    lead: Annotated[Path, typer.Option(help="lead JSON (fields as in the CSV)")],
    out: Annotated[Path, typer.Option(help="folder to write the emails into")],
) -> None:
    """Write every step's subject, text and HTML as this lead would receive them."""
    settings = get_settings()
    try:
        cadence = load_cadence(cadence_path(settings.cadence_dir, name))
        sample = load_sample_lead(lead)
        written = preview_cadence(cadence, sample, EmailRenderer(settings.template_dir), settings, out)
    except RuleFileError as exc:
        raise fail("\n".join(exc.lines())) from None
    except (ValueError, TemplateError, TemplateMissing) as exc:
        raise fail(str(exc)) from None
    for path in written:
        console.print(str(path), highlight=False)
