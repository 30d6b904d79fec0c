"""What a rep's decision led to, read from the words a workflow recorded before outcomes were kept as data (pure)."""

import re

from leadloop.domain.models import DispositionOutcome, OutcomeAction, Stage

#: the start of a rejection's recorded words, and what it led to (domain/lifecycle.py writes them)
OUTCOME_PREFIXES: tuple[tuple[str, OutcomeAction], ...] = (
    ("back to nurture", "recycled"),
    ("dormant", "dormant"),
    ("archived", "archived"),
    ("suppressed", "suppressed"),
    ("held", "held"),
    ("re-routed", "re-routed"),
)
#: the stage a lead is in once a decision with this outcome has applied
OUTCOME_STAGES: dict[OutcomeAction, Stage] = {
    "converted": "converted",
    "recycled": "nurturing",
    "dormant": "dormant",
    "archived": "archived",
    "suppressed": "suppressed",
    "held": "held",
    "re-routed": "with_sales",
}
#: "back to nurture with 'nurture-later' after a 90d cool-down, on ...": the cadence between the quotes
_RECYCLED_TO = re.compile(r"back to nurture with '([^']+)'")


def outcome_from_text(action: str, outcome: str | None) -> DispositionOutcome:
    """The outcome of a decision recorded as words only: an accept converts; a rejection's words say what it did,
    and a recycled lead's cadence when they name it. Words that say nothing known are "other"."""
    if action == "accept":
        return DispositionOutcome(action="converted", stage="converted")
    text = (outcome or "").strip()
    kind = next((kind for prefix, kind in OUTCOME_PREFIXES if text.lower().startswith(prefix)), None)
    if kind is None:
        return DispositionOutcome(action="other")
    named = _RECYCLED_TO.match(text) if kind == "recycled" else None
    return DispositionOutcome(action=kind, cadence=named.group(1) if named else None, stage=OUTCOME_STAGES[kind])
