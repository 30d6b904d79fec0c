"""Fixing a lead's data (CLI and PATCH /leads/{id}): validated like intake, then the workflow is told."""

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from temporalio.client import Client
from temporalio.service import RPCError

from leadloop.domain.intake import PROFILE_FIELDS, LeadIn
from leadloop.domain.mail import email_hash
from leadloop.infra.db import (
    DispositionRow,
    FormerAddress,
    Lead,
    Rep,
    Suppression,
    insert_new,
)
from leadloop.services.lead_client import LeadClient

#: what an edit may change: the address, the profile and the CRM's id, not its owner (`leadloop owner` changes that)
EDITABLE = ("email", *(f for f in PROFILE_FIELDS if f != "owner"), "external_id")


class LeadUpdateError(Exception):
    """Bad fields, an unknown lead, or an address another lead already has; nothing was changed."""


class ExternalIdTaken(LeadUpdateError):
    """The new external id is another lead's; nothing was changed."""


class AddressSuppressed(LeadUpdateError):
    """The new address is on the suppression list (erased, unsubscribed, bounced); nothing was changed."""


def validated(current: Lead, fields: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields as intake would store them; LeadUpdateError names every bad one."""
    unknown = sorted(set(fields) - set(EDITABLE))
    if unknown:
        raise LeadUpdateError(f"cannot change {', '.join(unknown)}; editable: {', '.join(EDITABLE)}")
    merged = {"email": current.email, **{k: v for k, v in fields.items() if k != "email"}}
    if "email" in fields:
        merged["email"] = fields["email"]
    try:
        checked = LeadIn.model_validate(merged, context=context)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise LeadUpdateError(problems) from None
    return {k: getattr(checked, k) for k in fields}


async def apply_update(
    session: Any, lead_id: int, fields: dict[str, Any], context: dict[str, Any] | None = None
) -> list[str]:
    """Change the lead in the session (the caller commits); returns the fields that changed. `context`: the
    installation's intake rules (`intake_context`)."""
    lead = await session.get(Lead, lead_id)
    if lead is None:
        raise LeadUpdateError(f"no lead {lead_id}")
    if lead.erased_at is not None:
        raise LeadUpdateError(f"lead {lead_id} was erased on request ({lead.erased_at:%Y-%m-%d}); it cannot be changed")
    clean = validated(lead, fields, context)
    if "email" in clean and clean["email"] != lead.email:
        other = (await session.execute(select(Lead.id).where(Lead.email == clean["email"]))).scalar()
        if other is not None:
            raise LeadUpdateError(f"lead {other} already has the address {clean['email']}")
        # an erased person's address (or one that unsubscribed or bounced) must not come back through an edit
        suppressed = await session.get(Suppression, email_hash(clean["email"]))
        if suppressed is not None:
            raise AddressSuppressed(
                f"{clean['email']} is on the suppression list ({suppressed.reason}): "
                "it is never stored or emailed again; nothing was changed"
            )
    if clean.get("external_id") and clean["external_id"] != lead.external_id:
        other = (await session.execute(select(Lead.id).where(Lead.external_id == clean["external_id"]))).scalar()
        if other is not None:
            raise ExternalIdTaken(f"external_id: {clean['external_id']} is already lead {other}'s; nothing was changed")
    changed = [k for k, v in clean.items() if getattr(lead, k) != v]
    if "email" in changed:  # so `forget` of the old address still finds this lead
        await insert_new(session, FormerAddress, email_hash=email_hash(lead.email), lead_id=lead.id)
    for name in changed:
        setattr(lead, name, clean[name])
    if "email" in changed:
        lead.bounced_at = None
    return changed


async def tell_workflow(client: Client, lead_id: int, changed: list[str]) -> bool:
    try:
        await LeadClient(client, lead_id).profile_updated(changed)
    except RPCError:
        return False
    return True


async def list_dispositions(
    session: Any, *, lead_id: int | None = None, reason: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Recorded rep decisions, newest first, with the rep's name."""
    query = select(DispositionRow, Rep.name).outerjoin(Rep, Rep.id == DispositionRow.rep_id)
    if lead_id is not None:
        query = query.where(DispositionRow.lead_id == lead_id)
    if reason is not None:
        query = query.where(DispositionRow.reason == reason)
    rows = (await session.execute(query.order_by(DispositionRow.created_at.desc()).limit(limit))).all()
    return [
        {
            "at": f"{row.created_at:%Y-%m-%d %H:%M}",
            "lead_id": row.lead_id,
            "cycle": row.cycle,
            "rep": name,
            "action": row.action,
            "reason": row.reason,
            "note": row.note,
            "opportunity_id": row.opportunity_id,
            "outcome": row.outcome,
            "source": row.source,
        }
        for row, name in rows
    ]
