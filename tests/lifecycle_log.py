"""A lifecycle announcer for workers built of test doubles: it keeps what a lead's workflow announced, in order."""

from temporalio import activity

from leadloop.domain.models import LifecycleInput, LifecycleResult

ANNOUNCED: list[LifecycleInput] = []


@activity.defn(name="announce_lifecycle")
async def announce_lifecycle(input: LifecycleInput) -> LifecycleResult:
    """Kept in ANNOUNCED (a retry with the same key is kept once), as the real one records each key once."""
    if all(seen.key != input.key for seen in ANNOUNCED):
        ANNOUNCED.append(input)
        return LifecycleResult(recorded=True)
    return LifecycleResult(recorded=False)


def announced(lead_id: int) -> list[str]:
    """The types a lead announced, in order."""
    return [event.type for event in ANNOUNCED if event.lead_id == lead_id]
