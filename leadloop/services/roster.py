"""The sales roster in the database: import teams and reps from reps.yaml, list them with their load."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.domain.routing import Roster
from leadloop.infra.db import WAITING, Assignment, Rep, Team


@dataclass
class ImportReport:
    teams: int
    added: int
    updated: int
    deactivated: int


async def import_roster(session: AsyncSession, roster: Roster) -> ImportReport:
    """Make the database hold the roster: teams and reps upserted; reps left out become inactive
    (kept, so their past assignments still name them). The caller commits."""
    added = updated = 0
    listed: set[str] = set()
    for team_in in roster.teams:
        team = await session.get(Team, team_in.name)
        values: dict[str, object] = {
            "strategy": team_in.strategy,
            "sla_seconds": int(team_in.sla.total_seconds()),
            "hours": team_in.business_hours.model_dump(mode="json"),
            "manager_name": team_in.manager.name if team_in.manager else None,
            "manager_email": team_in.manager.email if team_in.manager else None,
        }
        if team is None:
            session.add(Team(name=team_in.name, **values))
        else:
            for key, value in values.items():
                setattr(team, key, value)
        await session.flush()
        for rep_in in team_in.reps:
            address = rep_in.email.strip().lower()
            listed.add(address)
            rep = (await session.execute(select(Rep).where(func.lower(Rep.email) == address))).scalar_one_or_none()
            fields: dict[str, object] = {
                "name": rep_in.name,
                "team": team_in.name,
                "timezone": rep_in.timezone,
                "capacity": rep_in.capacity,
                "active": rep_in.active,
            }
            if rep is None:
                session.add(Rep(email=address, **fields))
                added += 1
            else:
                changed = any(getattr(rep, k) != v for k, v in fields.items())
                for name, value in fields.items():
                    setattr(rep, name, value)
                updated += int(changed)
    deactivated = 0
    for rep in (await session.execute(select(Rep).where(Rep.active.is_(True)))).scalars():
        if rep.email.lower() not in listed:
            rep.active = False
            deactivated += 1
    await session.flush()
    return ImportReport(teams=len(roster.teams), added=added, updated=updated, deactivated=deactivated)


async def roster_addresses(session: AsyncSession, addresses: set[str]) -> dict[str, str]:
    """Which of these addresses (any case) are reps on the roster, active or not: lower-cased -> as stored."""
    wanted = sorted({a.strip().lower() for a in addresses})
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):  # well under SQLite's bound-parameter limit
        rows = await session.execute(select(Rep.email).where(func.lower(Rep.email).in_(wanted[start : start + 500])))
        found |= {email.lower(): email for email in rows.scalars()}
    return found


@dataclass
class RepRow:
    id: int
    email: str
    name: str
    team: str
    timezone: str
    active: bool
    open_leads: int
    capacity: int


async def list_reps(session: AsyncSession) -> list[RepRow]:
    """Every rep with the number of leads currently waiting on them."""
    load = (
        select(Assignment.rep_id, func.count().label("n"))
        .where(Assignment.status == "assigned")
        .group_by(Assignment.rep_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(Rep, func.coalesce(load.c.n, 0)).outerjoin(load, load.c.rep_id == Rep.id).order_by(Rep.team, Rep.id)
        )
    ).all()
    return [RepRow(r.id, r.email, r.name, r.team, r.timezone, r.active, int(n), r.capacity) for r, n in rows]


async def waiting_leads(session: AsyncSession) -> list[int]:
    """Leads waiting for a rep (no one was available when they escalated)."""
    rows = await session.execute(select(Assignment.lead_id).where(Assignment.status == WAITING).distinct())
    return [int(r) for r in rows.scalars()]
