"""The sandboxed Jinja environment for marketer-authored email templates, and rendering."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from leadloop.cadence import Step


class TemplateMissing(Exception):
    """No template file for the locale nor for the cadence's default locale."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    locale: str


def make_environment(template_dir: Path) -> ImmutableSandboxedEnvironment:
    """HTML parts autoescaped; text parts and subjects (rendered from strings) left as written."""
    return ImmutableSandboxedEnvironment(
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

    def render(self, step: Step, locale: str | None, default_locale: str, context: dict[str, Any]) -> RenderedEmail:
        chosen = self.resolve_locale(step.template, locale, default_locale)
        subject_source = step.subject_for(chosen, default_locale)
        subject = " ".join(self.env.from_string(subject_source).render(context).split())
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


LEAD_FIELDS = (
    "id", "email", "first_name", "last_name", "company", "title", "industry", "company_size",
    "country", "region", "timezone", "locale", "product_interest", "owner",
)  # fmt: skip


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
    """Everything a template may use; the same for sends, `cadence check` and `cadence preview`."""
    return {
        "lead": {**{f: lead.get(f) for f in LEAD_FIELDS}, "attributes": dict(lead.get("attributes") or {})},
        "sender": {"name": sender_name, "address": sender_address, "postal_address": postal_address},
        "step": {"id": step.id, "number": step_number, "total": steps_total},
        "cadence": {"name": cadence},
        "public_url": public_url,
        "site_url": site_url,
        "unsubscribe_url": unsubscribe_url,
    }
