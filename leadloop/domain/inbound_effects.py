"""What a message read back from a lead does to its workflow (pure): hand over, tell the rep, pause, hold, suppress."""

from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from leadloop.domain.cadence import MAX_AUTO_REPLY_PAUSE
from leadloop.domain.lifecycle import ESCALATING_STAGES, FINAL_STAGES, LEFT_COMPANY_HOLDS, Event
from leadloop.domain.models import InboundInput, Stage
from leadloop.domain.schedule import DemoClock
from leadloop.domain.times import as_utc

Effect = Literal[
    "hand_over",  # a human reply: the drip stops, the lead goes to its rep (or through routing)
    "tell_rep",  # a human reply while with sales: the assigned rep hears it
    "pause",  # an out-of-office: the drip waits for the lead's return
    "hold",  # an out-of-office saying the lead has left: held until the data is fixed
    "suppress",  # a hard bounce or a complaint: never emailed again
    "unsubscribe",  # "remove me" by reply: as a one-click unsubscribe
    "soft_bounce",  # counted; too many within the window suppress
    "count",  # counted and shown, nothing else (a policy block; a reply to a held lead)
    "ignore",  # a challenge-response system's challenge, or a lead that has ended
]
#: The weekdays on which a returning lead is back at work (Mon-Fri).
BUSINESS_DAYS = range(5)


def effect_of(message: InboundInput, stage: Stage) -> Effect:
    """What `message` does to a lead in `stage`; leadloop never answers any of them."""
    kind = message.kind
    if stage in FINAL_STAGES:
        return "ignore"
    if kind == "human_reply":
        if stage == "with_sales":
            return "tell_rep"
        return "hand_over" if stage in ESCALATING_STAGES or stage == "paused" else "count"
    if kind == "auto_reply":
        if message.challenge:
            return "ignore"
        if message.left_company:
            return "hold" if stage in LEFT_COMPANY_HOLDS else "count"
        return "pause"
    if kind in ("hard_bounce", "complaint"):
        return "suppress"
    if kind == "unsubscribe_request":
        return "unsubscribe"
    if kind == "soft_bounce":
        return "soft_bounce"
    return "count"


def suppression(message: InboundInput) -> tuple[Event, str]:
    """The lifecycle event and the words of a suppressing hard bounce or complaint."""
    if message.kind == "complaint":
        return "complained", "suppressed: the lead marked our email as spam (complaint)"
    status = f" {message.status}" if message.status else ""
    return "hard_bounced", f"suppressed: hard bounce{status}, the address is dead"


def hold_reason(message: InboundInput) -> str:
    """Why a lead is held after an auto-reply says it left, with whom to contact instead when it says."""
    hint = f"; it says to contact {message.contact_hint}" if message.contact_hint else ""
    return f"an auto-reply says the lead has left the company{hint}"


def pause_until(return_date: date | None, now: datetime, timezone: str, default: timedelta) -> datetime:
    """When the drip may go on after an out-of-office, as UTC: midnight (the lead's zone) of the first business day
    after the stated return date, so nobody returns to a full inbox with us on top; with no date, `default` after
    `now`. Never later than MAX_AUTO_REPLY_PAUSE after `now` (a far-off date is more likely misread than meant)."""
    latest = now + MAX_AUTO_REPLY_PAUSE
    if return_date is None:
        return min(now + default, latest)
    day = return_date + timedelta(days=1)
    while day.weekday() not in BUSINESS_DAYS:
        day += timedelta(days=1)
    back = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone)).astimezone(UTC)
    return min(back, latest)


def back_at(message: InboundInput, clock: DemoClock, timezone: str, default: timedelta) -> datetime:
    """When the drip may go on after an out-of-office, in cadence time (`clock`'s).

    The lead is away from when the message came (`received_at`) until `pause_until` of its return date, a real
    calendar date; that span is laid on the cadence's clock from the moment the message came. At real speed this is
    the real date; at demo speed (a day a second) "back in 9 days" pauses nine cadence days, where the real date
    would already lie in the cadence's past.
    """
    received = as_utc(message.received_at)
    away = pause_until(message.return_date, received, timezone, default) - received
    return clock.cadence_time(received) + away
