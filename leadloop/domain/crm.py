"""The CRM's words (pure): lifecycle event types, goal kinds, API key scopes, tags and actors, each checked once."""

import re
from typing import Literal, get_args

LifecycleType = Literal[
    "lead.enrolled",
    "lead.engaged",
    "lead.escalated",
    "lead.reassigned",
    "lead.accepted",
    "lead.rejected",
    "lead.recycled",
    "lead.dormant",
    "lead.archived",
    "lead.suppressed",
    "lead.replied",
    "lead.goal",
    "lead.stopped",
    "lead.moved",
    "lead.owner_changed",
    "lead.recontact",
]
LIFECYCLE_TYPES: tuple[LifecycleType, ...] = get_args(LifecycleType)

GoalKind = Literal["converted", "meeting_booked", "opportunity_created"]
GOAL_KINDS: tuple[GoalKind, ...] = get_args(GoalKind)

#: What an API key may do: `intake` creates and updates leads; `sales` accepts, rejects and records goals;
#: `marketing` runs cadences, segments and bulk actions; `admin` everything (webhooks, erasure, keys).
Scope = Literal["intake", "sales", "marketing", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)

TAG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,39}")
MAX_TAGS = 20
ACTOR_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.@:+-]{0,99}")


class CrmInputError(ValueError):
    """A tag, scope, actor or goal that cannot be taken; the message names what and why."""


def normalise_tag(tag: str) -> str:
    """A tag as it is kept: trimmed, lower case; letters, digits and `_.:-`, at most 40 characters."""
    cleaned = tag.strip().lower()
    if not TAG_PATTERN.fullmatch(cleaned):
        raise CrmInputError(
            f"tag {tag!r} is not allowed: 1-40 of a-z, 0-9 and _ . : - (starting with a letter or digit)"
        )
    return cleaned


def normalise_tags(tags: list[str] | tuple[str, ...]) -> list[str]:
    """Tags de-duplicated and sorted (a lead's tags are a set); at most MAX_TAGS."""
    kept = sorted({normalise_tag(tag) for tag in tags})
    if len(kept) > MAX_TAGS:
        raise CrmInputError(f"a lead has at most {MAX_TAGS} tags ({len(kept)} given)")
    return kept


def check_scopes(scopes: list[str] | tuple[str, ...]) -> list[Scope]:
    """Scopes as given by an operator: each one of SCOPES, at least one."""
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise CrmInputError(f"unknown scope {unknown[0]!r}; one of: {', '.join(SCOPES)}")
    if not scopes:
        raise CrmInputError(f"give at least one scope: {', '.join(SCOPES)}")
    return [scope for scope in SCOPES if scope in scopes]


def allows(scopes: list[str] | tuple[str, ...], needed: Scope) -> bool:
    """`admin` may do everything; any other scope only its own."""
    return "admin" in scopes or needed in scopes


def check_actor(actor: str) -> str:
    """Who asked for a change, as recorded in the lead's history: a key's name or `--actor`."""
    if not ACTOR_PATTERN.fullmatch(actor):
        raise CrmInputError(f"actor {actor!r} is not a name: 1-100 letters, digits, spaces and _ . @ : + -")
    return actor
