"""Every message of the labelled inbound corpus classifies as its folder says, with the fields labels.yaml names."""

from datetime import date
from pathlib import Path

import pytest
import yaml

from leadloop.domain.inbound import INBOUND_KINDS, classify

CORPUS = Path(__file__).parent / "inbound_corpus"
LABELS: dict[str, dict[str, object]] = yaml.safe_load((CORPUS / "labels.yaml").read_text())
MESSAGES = sorted(path.relative_to(CORPUS).as_posix() for path in CORPUS.glob("*/*.eml"))


def test_the_corpus_is_labelled_and_covers_every_kind() -> None:
    assert sorted(LABELS) == MESSAGES
    assert {name.split("/")[0] for name in MESSAGES} == set(INBOUND_KINDS)
    assert len(MESSAGES) >= 40


@pytest.mark.parametrize("name", MESSAGES)
def test_corpus_message(name: str) -> None:
    verdict = classify((CORPUS / name).read_bytes())
    assert verdict.kind == name.split("/")[0], verdict.evidence
    assert verdict.evidence
    for field, expected in LABELS[name].items():
        actual = getattr(verdict, field)
        if isinstance(actual, date):
            actual = actual.isoformat()
        assert actual == expected, (field, verdict.evidence)
