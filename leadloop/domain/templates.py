"""The sandboxed Jinja environment for marketer-authored email templates, and rendering."""

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    nodes,
    select_autoescape,
)
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from leadloop.domain.cadence import Step
from leadloop.domain.intake import PROFILE_FIELDS
from leadloop.domain.text import CONTROL_RE


class TemplateMissing(Exception):
    """No template file for the locale nor for the cadence's default locale."""


class UnsafeTemplate(TemplateSyntaxError):
    """A template that reaches for Python's internals (`__class__`, `.format`, ...): refused before it renders."""


@dataclass(frozen=True)
class Unsafe:
    """One refused construct of a template source: its line and why."""

    lineno: int
    message: str


# filters whose string arguments name attributes (`map(attribute='a.b')` follows the dots)
_ATTRIBUTE_FILTERS = frozenset(
    {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "unique", "sum", "min", "max"}
)
_FORMAT_METHODS = frozenset({"format", "format_map"})  # str.format reaches attributes through its fields


def _constant(node: nodes.Node | None) -> object:
    """The value of a literal (strings joined by ~ or + included), or None when it is computed at render time.

    Deliberately not Jinja's as_const: that evaluates whatever it can, `'x' * 10**10` too.
    """
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Concat):
        parts = [_constant(n) for n in node.nodes]
        return "".join(str(p) for p in parts) if all(isinstance(p, str) for p in parts) else None
    if isinstance(node, nodes.Add):
        left, right = _constant(node.left), _constant(node.right)
        return left + right if isinstance(left, str) and isinstance(right, str) else None
    return None


def _private(name: object, *, dotted: bool = False) -> bool:
    """A private or dunder name (`__class__`), which templates never need; `dotted`: any part of `a._b`."""
    return isinstance(name, str) and any(part.startswith("_") for part in (name.split(".") if dotted else [name]))


def _called_name(node: nodes.Node) -> object:
    """The attribute a call calls: `x.format(...)`, `x['format'](...)`, `(x|attr('format'))(...)`."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem):
        return _constant(node.arg)
    if isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        return _constant(node.args[0])
    return None


def _filter_problem(node: nodes.Filter) -> str | None:
    if node.name in _ATTRIBUTE_FILTERS:
        arguments = [*node.args, *(k.value for k in node.kwargs)]
        for argument in arguments:
            value = _constant(argument)
            if _private(value, dotted=True):
                return f"{node.name}({value!r}) reaches into Python internals"
        if node.name == "attr" and (
            node.dyn_args or node.dyn_kwargs or not node.args or not isinstance(_constant(node.args[0]), str)
        ):
            return "attr() with a name computed at render time cannot be checked: write the name in the template"
    if node.name == "format" and not isinstance(_constant(node.node), str):
        return "the format filter takes its format string from the template, never from data"
    return None


def _problem(node: nodes.Node) -> str | None:
    """Why one node of a template's syntax tree is refused, or None."""
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name.startswith("_"):
        return f"{node.name!r}: names starting with '_' are Python internals, not template data"
    if isinstance(node, nodes.Getattr) and _private(node.attr):
        return f"'.{node.attr}' reaches into Python internals"
    if isinstance(node, nodes.Getitem) and _private(_constant(node.arg)):
        return f"[{_constant(node.arg)!r}] reaches into Python internals"
    if isinstance(node, nodes.NSRef) and _private(node.attr):
        return f"'{node.name}.{node.attr}' reaches into Python internals"
    if isinstance(node, nodes.Filter):
        return _filter_problem(node)
    if isinstance(node, nodes.Call) and _called_name(node.node) in _FORMAT_METHODS:
        return f"str.{_called_name(node.node)}() can read attributes through its fields: use ~ or the format filter"
    if isinstance(node, (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        names = node.template.items if isinstance(node.template, (nodes.List, nodes.Tuple)) else [node.template]
        if not all(isinstance(_constant(n), str) for n in names):
            return "a template chosen at render time cannot be checked: name it in the template"
    return None


def _walk(tree: nodes.Node) -> Iterator[nodes.Node]:
    """Every node, without recursion (Jinja's own find_all recurses)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.iter_child_nodes())


def unsafe_in(tree: nodes.Template, known_names: Collection[str] | None = None) -> list[Unsafe]:
    """Every construct of a parsed template that rendering refuses, in line order.

    Args:
        known_names: the variables the template is rendered with (and the environment's globals); a
            template that reads any other (`request`, `config`, ...) is refused too.
    """
    found = [Unsafe(node.lineno, problem) for node in _walk(tree) if (problem := _problem(node))]
    if known_names is not None:
        unknown = meta.find_undeclared_variables(tree) - set(known_names)
        reported: set[str] = set()
        for node in _walk(tree):
            if isinstance(node, nodes.Name) and node.name in unknown - reported and not node.name.startswith("_"):
                reported.add(node.name)
                offered = ", ".join(sorted(known_names))
                found.append(Unsafe(node.lineno, f"{node.name!r} is not available to templates (they get {offered})"))
    return sorted(set(found), key=lambda u: (u.lineno, u.message))


def referenced_templates(tree: nodes.Template) -> list[str]:
    """The templates a parsed template extends, includes or imports by name."""
    out: list[str] = []
    for node in _walk(tree):
        if isinstance(node, (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
            names = node.template.items if isinstance(node.template, (nodes.List, nodes.Tuple)) else [node.template]
            out += [value for n in names if isinstance(value := _constant(n), str)]
    return out


class MarketerEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, and every template checked with `unsafe_in` as it is compiled: an escape attempt never renders.

    The sandbox alone would refuse `__class__` only when the expression is evaluated, and leave a
    `{% if %}` that is never taken in place; this refuses the template as a whole, naming file and line.
    """

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        try:
            tree = super()._parse(source, name, filename)
            problems = unsafe_in(tree)
        except RecursionError:
            raise UnsafeTemplate("nested too deeply", 1, name, filename) from None
        if problems:
            raise UnsafeTemplate(problems[0].message, problems[0].lineno, name, filename)
        return tree

    def parse_unchecked(self, source: str, name: str | None = None, filename: str | None = None) -> nodes.Template:
        """The syntax tree of a source, for `unsafe_in` to report every problem rather than the first."""
        try:
            return Parser(self, source, name, filename).parse()
        except RecursionError:
            raise UnsafeTemplate("nested too deeply", 1, name, filename) from None


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    locale: str


def one_line(text: str) -> str:
    """Text for a header: every run of whitespace and control characters (CR, LF, NUL, ...) one space.

    A name or subject never adds a header line, whatever a lead typed or a template rendered.
    """
    return " ".join(CONTROL_RE.sub(" ", text).split())


def make_environment(template_dir: Path) -> MarketerEnvironment:
    """HTML parts autoescaped; text parts and subjects (rendered from strings) left as written."""
    return MarketerEnvironment(
        loader=FileSystemLoader(str(template_dir)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
        keep_trailing_newline=True,
    )


def locale_candidates(locale: str | None, default_locale: str) -> list[str]:
    """'el-GR' -> ['el-GR', 'el', <default>], without repeats."""
    out: list[str] = []
    for candidate in (locale, locale.split("-")[0] if locale else None, default_locale):
        if candidate and candidate not in out:
            out.append(candidate)
    return out


class EmailRenderer:
    """Renders a cadence step for a lead from `<template>/<locale>.{txt,html}.j2`."""

    def __init__(self, template_dir: Path) -> None:
        self.template_dir = template_dir
        self.env = make_environment(template_dir)

    def resolve_locale(self, template: str, locale: str | None, default_locale: str) -> str:
        for candidate in locale_candidates(locale, default_locale):
            if all((self.template_dir / template / f"{candidate}.{ext}.j2").is_file() for ext in ("txt", "html")):
                return candidate
        tried = ", ".join(locale_candidates(locale, default_locale))
        raise TemplateMissing(
            f"no template {template!r} for locale(s) {tried}: expected "
            f"{self.template_dir / template}/<locale>.txt.j2 and .html.j2"
        )

    def locales_of(self, template: str) -> list[str]:
        """Every locale a template folder has a text or HTML part for."""
        folder = self.template_dir / template
        return sorted({p.name.split(".")[0] for p in folder.glob("*.j2")}) if folder.is_dir() else []

    def unsafe_parts(self, template: str) -> list[tuple[str, Unsafe]]:
        """Every refused construct in a step's template files and in the layouts they use, as (file, problem).

        Files that are missing or do not parse are left to rendering, which reports them.
        """
        known = {*EMAIL_CONTEXT_NAMES, *self.env.globals}
        folder = self.template_dir / template
        pending = [f"{template}/{p.name}" for p in sorted(folder.glob("*.j2"))] if folder.is_dir() else []
        seen: set[str] = set()
        found: list[tuple[str, Unsafe]] = []
        assert self.env.loader is not None
        while pending:
            name = pending.pop(0)
            if name in seen:
                continue
            seen.add(name)
            try:
                source, filename, _ = self.env.loader.get_source(self.env, name)
                tree = self.env.parse_unchecked(source, name, filename)
            except TemplateError:
                continue
            found += [(filename or name, unsafe) for unsafe in unsafe_in(tree, known)]
            pending += referenced_templates(tree)
        return found

    def unsafe_subject(self, source: str) -> list[Unsafe]:
        """Every refused construct in a subject template (one that does not parse is left to rendering)."""
        try:
            tree = self.env.parse_unchecked(source)
        except TemplateError:
            return []
        return unsafe_in(tree, {*EMAIL_CONTEXT_NAMES, *self.env.globals})

    def render(self, step: Step, locale: str | None, default_locale: str, context: dict[str, Any]) -> RenderedEmail:
        chosen = self.resolve_locale(step.template, locale, default_locale)
        subject_source = step.subject_for(chosen, default_locale)
        try:
            subject_template = self.env.from_string(subject_source)
        except TemplateSyntaxError as exc:  # a string has no file name: say which subject it is
            exc.filename = exc.filename or f"<subject of step '{step.id}' ({chosen})>"
            raise
        subject = one_line(subject_template.render(context))
        text = self.env.get_template(f"{step.template}/{chosen}.txt.j2").render(context)
        html = self.env.get_template(f"{step.template}/{chosen}.html.j2").render(context)
        if not subject:
            raise TemplateError(f"step {step.id!r} renders an empty subject")
        return RenderedEmail(subject=subject, text=text, html=html, locale=chosen)


def template_error_text(exc: Exception) -> str:
    """A one-line account of a template failure, naming file and line where Jinja knows them."""
    if isinstance(exc, TemplateNotFound):
        return f"template not found: {exc.name}"
    filename = getattr(exc, "filename", None)
    lineno = getattr(exc, "lineno", None)
    where = f"{filename}:{lineno}: " if filename and lineno else (f"{filename}: " if filename else "")
    return f"{where}{type(exc).__name__}: {exc}"


LEAD_FIELDS = ("id", "email", *PROFILE_FIELDS)


def email_context(
    lead: Mapping[str, Any],
    *,
    step: Step,
    step_number: int,
    steps_total: int,
    cadence: str,
    sender_name: str,
    sender_address: str,
    postal_address: str,
    public_url: str,
    site_url: str,
    unsubscribe_url: str,
) -> dict[str, Any]:
    """Everything a template may use (EMAIL_CONTEXT_NAMES); the same for sends, `cadence check` and preview."""
    return {
        "lead": {**{f: lead.get(f) for f in LEAD_FIELDS}, "attributes": dict(lead.get("attributes") or {})},
        "sender": {"name": sender_name, "address": sender_address, "postal_address": postal_address},
        "step": {"id": step.id, "number": step_number, "total": steps_total},
        "cadence": {"name": cadence},
        "public_url": public_url,
        "site_url": site_url,
        "unsubscribe_url": unsubscribe_url,
    }


EMAIL_CONTEXT_NAMES = frozenset(
    {"lead", "sender", "step", "cadence", "public_url", "site_url", "unsubscribe_url"}
)  # the keys of email_context: all a marketer's template may read, besides the environment's globals
