"""Template sandbox escapes: a marketer's template or subject that reaches for Python's internals is refused
by `cadence check` (file and line named) and by rendering (nothing rendered), while normal templates pass."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from typer.testing import CliRunner

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import Step, load_cadence
from leadloop.domain.templates import (
    EMAIL_CONTEXT_NAMES,
    EmailRenderer,
    UnsafeTemplate,
    email_context,
    make_environment,
)
from leadloop.infra.settings import Settings, get_settings
from leadloop.services.preview import CheckResult, check_cadence, load_sample_lead
from starter.cli import app

ESCAPES = [
    "{{ lead.__class__ }}",
    "{{ lead.__class__.__mro__ }}",
    "{{ lead.__init__ }}",
    "{{ __builtins__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ self.__dict__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lead|attr('__class__') }}",
    "{{ lead|attr('__cla' ~ 'ss__') }}",
    "{{ lead|attr(lead.first_name) }}",
    "{{ lead['__class__'] }}",
    "{{ lead['__cla' + 'ss__'] }}",
    "{{ lead|map(attribute='__class__')|list }}",
    "{{ [lead]|selectattr('attributes.__class__')|list }}",
    "{{ request }}",
    "{{ request.environ }}",
    "{{ config.items() }}",
    "{{ '{0.__class__}'.format(lead) }}",
    "{{ '{0.first_name}'.format(lead) }}",
    "{{ ('{0.__class__}'|attr('format'))(lead) }}",
    "{{ '{x}'.format_map(lead) }}",
    "{{ '%s'|format(lead.__class__) }}",
    "{{ lead.first_name|format(lead) }}",
    "{% filter format(lead) %}%s{% endfilter %}",
    "{% set ns = namespace() %}{% set ns.__class__ = 1 %}",
    "{% include lead.first_name %}",
]
NORMAL = (
    "{% set ns = namespace(total=0) %}{% for key, value in lead.attributes|dictsort %}{% set ns.total = ns.total + 1 %}"
    "{{ loop.index }}. {{ key|title }}={{ value|upper }}{% endfor %} {{ '%+d'|format(ns.total) }}"
    " {{ [lead]|map(attribute='first_name')|join }} {{ lead.attributes.get('source', '-') }}"
    " {{ (lead.first_name or 'friend') ~ ', ' ~ step.number ~ '/' ~ step.total }} {{ range(3)|list|length }}"
    " {{ cadence.name }} {{ sender.name }} {{ unsubscribe_url }} {{ site_url }} {{ public_url }}"
)


@pytest.fixture
def sample() -> dict[str, Any]:
    return load_sample_lead(PROJECT_ROOT / "examples" / "lead.json")


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A template folder with one harmless step ('hello') and a layout it extends."""
    folder = tmp_path / "templates"
    (folder / "_layout").mkdir(parents=True)
    (folder / "_layout" / "base.txt.j2").write_text("{% block body %}{% endblock %}\n-- {{ sender.name }}\n")
    (folder / "_layout" / "base.html.j2").write_text("<p>{% block body %}{% endblock %}</p>\n")
    (folder / "hello").mkdir()
    for ext in ("txt", "html"):
        body = "{% block body %}\nHello {{ lead.first_name }},\n\nsee you.\n{% endblock %}\n"
        (folder / "hello" / f"en.{ext}.j2").write_text(f'{{% extends "_layout/base.{ext}.j2" %}}\n{body}')
    return folder


def write_cadence(folder: Path, subject: str | dict[str, str] = "Hello {{ lead.first_name }}") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "hello.yaml"
    data = {
        "name": "hello",
        "version": 1,
        "steps": [{"id": "hello", "wait": "0", "template": "hello", "subject": subject}],
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def line_of(path: Path, text: str) -> int:
    """The first line of a file holding `text`."""
    return next(number for number, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def check(cadence: Path, templates: Path, sample: dict[str, Any], make_settings: Any) -> CheckResult:
    settings: Settings = make_settings(template_dir=templates, cadence_dir=cadence.parent)
    return check_cadence(cadence, EmailRenderer(templates), sample, settings)


def context(sample: dict[str, Any]) -> dict[str, Any]:
    step = Step(id="hello", wait="0", template="hello", subject="x")
    return email_context(
        sample,
        step=step,
        step_number=1,
        steps_total=1,
        cadence="hello",
        sender_name="Demo",
        sender_address="hello@leadloop.example",
        postal_address="1 Example St",
        public_url="http://p.example",
        site_url="http://s.example",
        unsubscribe_url="http://p.example/u/x",
    )


def render(templates: Path, sample: dict[str, Any], subject: str = "Hi") -> Any:
    step = Step(id="hello", wait="0", template="hello", subject=subject)
    return EmailRenderer(templates).render(step, "en", "en", context(sample))


# ---------------------------------------------------------------- every escape, in a file and in a subject


@pytest.mark.parametrize("escape", ESCAPES)
def test_an_escape_in_a_template_file_is_reported_with_file_and_line_and_never_renders(
    escape: str, templates: Path, tmp_path: Path, sample: dict[str, Any], make_settings: Any
) -> None:
    part = templates / "hello" / "en.txt.j2"
    part.write_text('{% extends "_layout/base.txt.j2" %}\n{% block body %}\n' + escape + "\n{% endblock %}\n")
    cadence = write_cadence(tmp_path / "cadences")
    result = check(cadence, templates, sample, make_settings)
    assert result.rendered == 0
    assert result.problems and all(p.startswith(f"{part}:3: UnsafeTemplate: ") for p in result.problems), result
    with pytest.raises(TemplateError) as refused:
        render(templates, sample)
    if isinstance(refused.value, UnsafeTemplate):  # refused as the template compiles, before any output
        assert (refused.value.filename, refused.value.lineno) == (str(part), 3)
    else:  # the names a template is not given are undefined (StrictUndefined), so they fail as they render
        assert "request" in str(refused.value) or "config" in str(refused.value)


@pytest.mark.parametrize("escape", ESCAPES)
def test_an_escape_in_a_subject_is_reported_with_the_cadence_line_and_never_renders(
    escape: str, templates: Path, tmp_path: Path, sample: dict[str, Any], make_settings: Any
) -> None:
    cadence = write_cadence(tmp_path / "cadences", {"en": "Hello", "el": f"Γεια {escape}"})
    line = line_of(cadence, "el:")
    result = check(cadence, templates, sample, make_settings)
    assert result.rendered == 0
    assert result.problems and all(p.startswith(f"{cadence}:{line}: steps[0].subject.el: ") for p in result.problems)
    with pytest.raises(TemplateError) as refused:
        render(templates, sample, subject=f"Γεια {escape}")
    if isinstance(refused.value, UnsafeTemplate):
        assert refused.value.filename == "<subject of step 'hello' (en)>"


@pytest.mark.parametrize("escape", ESCAPES)
def test_cadence_check_on_the_command_line_fails_on_each_escape(
    escape: str, templates: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cadences"
    write_cadence(folder, f"Hi {escape}")
    (templates / "hello" / "en.html.j2").write_text(f"<p>{escape}</p>\n")
    monkeypatch.setenv("LEADLOOP_TEMPLATE_DIR", str(templates))
    monkeypatch.setenv("COLUMNS", "300")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["cadence", "check", str(folder)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert f"{folder / 'hello.yaml'}:{line_of(folder / 'hello.yaml', 'subject:')}: steps[0].subject: " in result.stderr
    assert f"{templates / 'hello' / 'en.html.j2'}:1: UnsafeTemplate: " in result.stderr
    assert "ok" not in result.stdout


# ---------------------------------------------------------------- what else holds


def test_a_layout_with_an_escape_is_named_once_for_every_step_that_uses_it(
    templates: Path, tmp_path: Path, sample: dict[str, Any], make_settings: Any
) -> None:
    layout = templates / "_layout" / "base.txt.j2"
    layout.write_text("{% block body %}{% endblock %}\n{{ sender.__class__ }} {{ lead.x.__dict__ }}\n")
    cadence = write_cadence(tmp_path / "cadences")
    cadence.write_text(cadence.read_text() + "- id: again\n  wait: 1d\n  template: hello\n  subject: Again\n")
    result = check(cadence, templates, sample, make_settings)
    assert result.problems == [
        f"{layout}:2: UnsafeTemplate: '.__class__' reaches into Python internals",
        f"{layout}:2: UnsafeTemplate: '.__dict__' reaches into Python internals",
    ]
    with pytest.raises(UnsafeTemplate) as refused:
        render(templates, sample)
    assert (refused.value.filename, refused.value.lineno) == (str(layout), 2)


def test_hostile_lead_data_cannot_steer_a_lookup_at_render_time(templates: Path, sample: dict[str, Any]) -> None:
    """A computed key is not known until rendering: there the sandbox refuses what a lead's data names."""
    (templates / "hello" / "en.txt.j2").write_text("{{ lead.attributes[lead.first_name] }}\n")
    with pytest.raises(SecurityError):
        render(templates, {**sample, "first_name": "__class__"})
    sample = {**sample, "first_name": "source"}
    assert render(templates, sample).text == "webinar\n"


def test_normal_templates_still_pass(
    templates: Path, tmp_path: Path, sample: dict[str, Any], make_settings: Any
) -> None:
    (templates / "hello" / "en.txt.j2").write_text(NORMAL + "\n")
    cadence = write_cadence(tmp_path / "cadences", "{{ lead.first_name|default('friend') }}, {{ '%d'|format(3) }}")
    result = check(cadence, templates, sample, make_settings)
    assert (result.problems, result.rendered) == ([], 1)
    rendered = render(templates, sample, subject="{{ lead.first_name }} {{ '%d'|format(3) }}")
    assert rendered.subject == "Μαρία 3"
    assert rendered.text.startswith("1. Source=WEBINAR +1 Μαρία webinar Μαρία, 1/1 3 hello Demo http://p.example/u/x")


def test_the_shipped_cadences_and_templates_pass(sample: dict[str, Any], make_settings: Any) -> None:
    settings = make_settings()
    renderer = EmailRenderer(settings.template_dir)
    for path in sorted((PROJECT_ROOT / "cadences").glob("*.yaml")):
        if path.name in {"scoring.yaml", "routing.yaml", "recycle.yaml"}:
            continue
        result = check_cadence(path, renderer, sample, settings)
        assert result.problems == [] and result.rendered > 0, path
    env = make_environment(settings.template_dir)
    for name in ("_rep/notify.txt.j2", "_rep/notify.html.j2"):  # the reps' email, with its own context
        env.get_template(name)


def test_the_names_the_check_allows_are_the_ones_templates_get(sample: dict[str, Any]) -> None:
    assert set(context(sample)) == EMAIL_CONTEXT_NAMES
    assert load_cadence(PROJECT_ROOT / "cadences" / "welcome.yaml").steps  # the sample files still load
