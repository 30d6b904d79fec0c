"""`cadence check` and `cadence preview`: every step rendered before any lead receives it."""

import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError

from leadloop.domain.cadence import BIG_BANG_STEP, Cadence, Step, load_cadence_lines
from leadloop.domain.intake import LeadIn
from leadloop.domain.mail import parse_sender
from leadloop.domain.rules import Lines, RuleFileError, line_of
from leadloop.domain.templates import EmailRenderer, RenderedEmail, TemplateMissing, email_context
from leadloop.infra.settings import Settings


@dataclass
class CheckResult:
    path: Path
    cadence: Cadence | None
    problems: list[str]
    rendered: int = 0


def load_sample_lead(path: Path) -> dict[str, Any]:
    """A lead from JSON, validated like intake; raises ValueError naming what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read a lead from it: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with the lead's fields")
    lead = LeadIn.model_validate({k: v for k, v in data.items() if k != "id"})
    return {"id": data.get("id", 0), **lead.model_dump()}


def _where(exc: BaseException) -> str:
    """file:line of the template frame a render error came from, as Jinja rewrites tracebacks."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.filename}:{exc.lineno}" if exc.filename else "template"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "template"


def emails_of(cadence: Cadence) -> list[tuple[Step, tuple[Any, ...]]]:
    """Every email a cadence can send, with where it stands in the file: its steps, then the big bang."""
    emails: list[tuple[Step, tuple[Any, ...]]] = [(s, ("steps", i)) for i, s in enumerate(cadence.steps)]
    if cadence.big_bang is not None:
        big = cadence.big_bang
        emails.append(
            (Step(id=BIG_BANG_STEP, wait=big.wait, template=big.template, subject=big.subject), ("big_bang",))
        )
    return emails


def render_step(
    cadence: Cadence, index: int, lead: dict[str, Any], locale: str | None, renderer: EmailRenderer, settings: Settings
) -> RenderedEmail:
    step = emails_of(cadence)[index][0]
    name, address = (
        (cadence.sender.name, cadence.sender.address) if cadence.sender else parse_sender(settings.from_address)
    )
    postal = (cadence.sender.postal_address if cadence.sender else None) or settings.postal_address
    context = email_context(
        lead,
        step=step,
        step_number=min(index + 1, len(cadence.steps)),
        steps_total=len(cadence.steps),
        cadence=cadence.name,
        sender_name=name,
        sender_address=address,
        postal_address=postal,
        public_url=settings.public_url,
        site_url=settings.site_url,
        unsubscribe_url=f"{settings.public_url}/u/preview-only",
    )
    return renderer.render(step, locale, cadence.default_locale, context)


def _subjects(subject: str | dict[str, str]) -> list[tuple[str | None, str]]:
    return list(subject.items()) if isinstance(subject, dict) else [(None, subject)]


def unsafe_problems(path: Path, cadence: Cadence, lines: Lines, renderer: EmailRenderer) -> tuple[list[str], set[int]]:
    """What the template check refuses in every email's subjects and template files (and their layouts),
    before anything renders; and the emails (by index) that it refuses."""
    problems: list[str] = []
    refused: set[int] = set()
    for index, (step, where) in enumerate(emails_of(cadence)):
        field = f"steps[{index}]" if where[0] == "steps" else "big_bang"
        for locale, source in _subjects(step.subject):
            for unsafe in renderer.unsafe_subject(source):
                loc = (*where, "subject", locale) if locale else (*where, "subject")
                name = f"{field}.subject.{locale}" if locale else f"{field}.subject"
                problems.append(f"{path}:{line_of(lines, *loc)}: {name}: {unsafe.message}")
                refused.add(index)
        for filename, unsafe in renderer.unsafe_parts(step.template):
            problem = f"{filename}:{unsafe.lineno}: UnsafeTemplate: {unsafe.message}"
            refused.add(index)
            if problem not in problems:  # a layout serves many steps: once is enough
                problems.append(problem)
    return problems, refused


def missing_subjects(path: Path, cadence: Cadence, lines: Lines, renderer: EmailRenderer) -> list[str]:
    """Every locale an email has a body template in but no subject for: a lead in that locale would get the
    default locale's subject over a body in its own language."""
    problems: list[str] = []
    for index, (step, where) in enumerate(emails_of(cadence)):
        if not isinstance(step.subject, dict):
            continue  # one subject for every locale, written so on purpose
        field = f"steps[{index}]" if where[0] == "steps" else "big_bang"
        for locale in renderer.locales_of(step.template):
            if locale not in step.subject:
                problems.append(
                    f"{path}:{line_of(lines, *where, 'subject')}: {field}.subject: step '{step.id}' has a body "
                    f"template in '{locale}' ({step.template}/{locale}.*.j2) but no subject in '{locale}': "
                    f"add subject.{locale}"
                )
    return problems


def check_cadence(path: Path, renderer: EmailRenderer, lead: dict[str, Any], settings: Settings) -> CheckResult:
    """Validate the file, refuse templates that reach for Python's internals, then render every step in every
    locale its templates have."""
    try:
        cadence, lines = load_cadence_lines(path)
    except RuleFileError as exc:
        return CheckResult(path, None, exc.lines())
    problems, refused = unsafe_problems(path, cadence, lines, renderer)
    problems += missing_subjects(path, cadence, lines, renderer)
    result = CheckResult(path, cadence, problems)
    for index, (step, where) in enumerate(emails_of(cadence)):
        if index in refused:
            continue  # rendering would only stop at the first of the problems already listed
        locales = sorted(set(renderer.locales_of(step.template)) | {cadence.default_locale})
        for locale in locales:
            try:
                render_step(cadence, index, lead, locale, renderer, settings)
                result.rendered += 1
            except TemplateMissing as exc:
                if locale == cadence.default_locale:
                    line = line_of(lines, *where, "template")
                    field = f"steps[{index}]" if where[0] == "steps" else "big_bang"
                    result.problems.append(f"{path}:{line}: {field}.template: {exc}")
            except TemplateError as exc:
                detail = exc.message if isinstance(exc, TemplateSyntaxError) else str(exc)
                result.problems.append(f"{_where(exc)}: step '{step.id}' ({locale}): {type(exc).__name__}: {detail}")
    return result


def preview_cadence(
    cadence: Cadence, lead: dict[str, Any], renderer: EmailRenderer, settings: Settings, out: Path
) -> list[Path]:
    """Write `<nn>-<step>.subject.txt`, `.txt` and `.html` for every step, as the lead would get them."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for index, (step, _) in enumerate(emails_of(cadence)):
        rendered = render_step(cadence, index, lead, lead.get("locale"), renderer, settings)
        stem = f"{index + 1:02d}-{step.id}"
        for suffix, body in (
            (".subject.txt", rendered.subject + "\n"),
            (".txt", rendered.text),
            (".html", rendered.html),
        ):
            target = out / f"{stem}{suffix}"
            target.write_text(body, encoding="utf-8")
            written.append(target)
    return written
