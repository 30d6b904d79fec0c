"""A decision recorded as words only is read back as data: what it led to, the recycled cadence, the stage after."""

import pytest

from leadloop.domain.models import DispositionOutcome
from leadloop.domain.outcomes import outcome_from_text

BACK = "back to nurture with 'nurture-later' after a 90d cool-down, on Thu 04 Feb 2027 09:00 Europe/Athens"


@pytest.mark.parametrize(
    ("action", "words", "expected"),
    [
        ("accept", "converted", DispositionOutcome(action="converted", stage="converted")),
        ("accept", "converted, opportunity OPP-7", DispositionOutcome(action="converted", stage="converted")),
        ("accept", "", DispositionOutcome(action="converted", stage="converted")),
        ("reject", BACK, DispositionOutcome(action="recycled", cadence="nurture-later", stage="nurturing")),
        ("reject", "Back to nurture", DispositionOutcome(action="recycled", stage="nurturing")),
        (
            "reject",
            "dormant; back with 'reengage' on Wed 06 May 2027",
            DispositionOutcome(action="dormant", stage="dormant"),
        ),
        ("reject", "archived (bad_fit)", DispositionOutcome(action="archived", stage="archived")),
        (
            "reject",
            "archived: retired after its dormant cycles",
            DispositionOutcome(action="archived", stage="archived"),
        ),
        ("reject", "suppressed: never emailed again", DispositionOutcome(action="suppressed", stage="suppressed")),
        (
            "reject",
            "held until the lead's data is fixed (`leadloop lead update` or PATCH /leads/{id})",
            DispositionOutcome(action="held", stage="held"),
        ),
        (
            "reject",
            "re-routed to another rep; rep-3 excluded",
            DispositionOutcome(action="re-routed", stage="with_sales"),
        ),
        ("reject", "  DORMANT; back with 'reengage' later", DispositionOutcome(action="dormant", stage="dormant")),
        ("reject", "the rep shrugged", DispositionOutcome(action="other")),
        ("reject", "", DispositionOutcome(action="other")),
        ("reject", None, DispositionOutcome(action="other")),
    ],
)
def test_the_words_a_workflow_recorded_read_as_an_outcome(
    action: str, words: str | None, expected: DispositionOutcome
) -> None:
    assert outcome_from_text(action, words) == expected
