"""Every shipped cadence speaks each of the six languages in its subjects as well as in its bodies."""

from pathlib import Path
from typing import Any

import pytest

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import LOCALES, load_cadence
from leadloop.domain.templates import EmailRenderer
from leadloop.services.preview import emails_of, load_sample_lead, preview_cadence

RULE_FILES = {"scoring.yaml", "routing.yaml", "recycle.yaml"}
CADENCES = sorted(p for p in (PROJECT_ROOT / "cadences").glob("*.yaml") if p.name not in RULE_FILES)


@pytest.mark.parametrize("path", CADENCES, ids=[p.stem for p in CADENCES])
@pytest.mark.parametrize("locale", LOCALES)
def test_a_lead_gets_every_subject_in_its_own_language(
    path: Path, locale: str, make_settings: Any, tmp_path: Path
) -> None:
    """`cadence preview` for a lead in each locale: body and subject both in that locale, never English over
    a Spanish body."""
    settings = make_settings()
    renderer = EmailRenderer(settings.template_dir)
    cadence = load_cadence(path)
    lead: dict[str, Any] = {**load_sample_lead(PROJECT_ROOT / "examples" / "lead.json"), "locale": locale}
    preview_cadence(cadence, lead, renderer, settings, tmp_path)
    for index, (step, _) in enumerate(emails_of(cadence)):
        assert renderer.resolve_locale(step.template, locale, cadence.default_locale) == locale, step.id
        assert isinstance(step.subject, dict) and locale in step.subject, f"{path.name}: {step.id} has no {locale}"
        own = renderer.env.from_string(step.subject[locale]).render(lead=lead)
        written = (tmp_path / f"{index + 1:02d}-{step.id}.subject.txt").read_text(encoding="utf-8").strip()
        assert written == own, f"{path.name}: {step.id} ({locale})"
        if locale != cadence.default_locale:
            english = renderer.env.from_string(step.subject[cadence.default_locale]).render(lead=lead)
            assert written != english, f"{path.name}: {step.id} ({locale}) is the {cadence.default_locale} subject"
