"""Lead activities the workflow needs: fresh snapshots for a new cycle, dispositions, suppression."""

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from leadloop.domain.cadence import cadence_path, load_cadence
from leadloop.domain.models import DispositionInput, LoadCycleInput, LoadCycleResult, SuppressAddressInput
from leadloop.domain.outcomes import outcome_from_text
from leadloop.domain.recycle import load_recycle
from leadloop.domain.rules import RuleFileError
from leadloop.domain.scoring import current_scoring
from leadloop.infra.db import DispositionRow, Lead, insert_new, lead_profile, suppress


class LeadActivities:
    """Holds the sessionmaker and where the marketer's files live (read afresh at each new cycle)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], cadence_dir: Path, scoring_file: Path) -> None:
        self.sessionmaker = sessionmaker
        self.cadence_dir = cadence_dir
        self.scoring_file = scoring_file

    @activity.defn(name="load_cycle")
    async def load_cycle(self, input: LoadCycleInput) -> LoadCycleResult:
        """The cadence, scoring and recycle rules as they are now, and the lead's profile; a marketer's
        edits reach running leads here, at their next cycle."""
        try:
            cadence = load_cadence(cadence_path(self.cadence_dir, input.cadence))
            scoring = current_scoring(self.scoring_file)
            recycle_file = self.cadence_dir / "recycle.yaml"
            recycle = load_recycle(recycle_file) if recycle_file.exists() else None
        except RuleFileError as exc:
            # a broken file is the marketer's to fix: retried, visibly, until it loads
            raise ApplicationError(f"cannot load the next cycle: {exc}", type="CadenceError") from None
        async with self.sessionmaker() as session:
            lead = await session.get(Lead, input.lead_id)
        if lead is None:
            raise ApplicationError(
                f"lead {input.lead_id} is not in the database", type="LeadMissing", non_retryable=True
            )
        return LoadCycleResult(
            cadence=cadence,
            scoring=scoring,
            recycle=recycle,
            profile=lead_profile(lead),
            timezone=lead.timezone or cadence.default_timezone,
        )

    @activity.defn(name="record_disposition")
    async def record_disposition(self, input: DispositionInput) -> None:
        """Record a rep's decision; the assignment key makes a retry a no-op. A workflow started before outcomes
        were data sends only the words: the outcome is read from them."""
        result = input.result or outcome_from_text(input.action, input.outcome)
        async with self.sessionmaker() as session:
            await insert_new(
                session,
                DispositionRow,
                key=input.key,
                lead_id=input.lead_id,
                cycle=input.cycle,
                rep_id=input.rep_id,
                action=input.action,
                reason=input.reason,
                note=input.note or None,
                opportunity_id=input.opportunity_id,
                outcome=input.outcome,
                outcome_action=result.action,
                outcome_cadence=result.cadence,
                outcome_stage=result.stage,
                source=input.source,
                recontact_on=input.recontact_on,
                created_at=datetime.now(UTC),
            )
            await session.commit()

    @activity.defn(name="suppress_lead")
    async def suppress_lead(self, lead_id: int) -> None:
        """Never email this lead again (the rep says not interested)."""
        async with self.sessionmaker() as session:
            lead = await session.get(Lead, lead_id)
            if lead is None:
                return
            await suppress(session, lead.email, "not_interested", "rep: not interested")
            await session.commit()

    @activity.defn(name="suppress_address")
    async def suppress_address(self, input: SuppressAddressInput) -> None:
        """Never email the lead's current address again, for the reason given (too many soft bounces); a retry
        finds it listed already."""
        async with self.sessionmaker() as session:
            lead = await session.get(Lead, input.lead_id)
            if lead is None:
                return
            await suppress(session, lead.email, input.reason, input.detail or input.reason)
            await session.commit()
