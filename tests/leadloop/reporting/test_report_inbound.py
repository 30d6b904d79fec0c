"""What came back in the report: replies, auto-replies, bounces and complaints per step and cadence, the complaint
and bounce rates against the thresholds providers publish, and the messages no send was found for."""

import html
import re
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.infra.db import InboundMessage
from leadloop.reporting.gather import gather_report
from leadloop.reporting.html import render_html
from leadloop.reporting.inbound import flags
from leadloop.reporting.models import ReportData
from starter.cli.report import summary, threshold_notes
from tests.leadloop.reporting.test_report import NOW, SINCE, at, cell, seed

Maker = async_sessionmaker[AsyncSession]


async def came_back(sessionmaker: Maker) -> None:
    """Inbound messages on the hand-computed dataset (its keys are `lead-<n>.c<cycle>.<step>`).

    welcome/welcome (8 sends): L2 replied twice (one email replied to), L3 auto-replied, L4 bounced for good
    (reported by SES's webhook and by a mailed DSN: one email), L5 soft-bounced, L6 complained, L7 was blocked by
    policy; L9 asked by reply to be removed (counted with the suppressions, not here).
    welcome/tips (2 sends): L8 complained.
    influencer/intro: L10's email bounced for good later; L11's was refused at the send, and its DSN is not
    counted again.
    Not counted in November: L1's reply to its October welcome, a reply to a rep's notification, and an unmatched
    bounce from October. Unmatched in November: a bounce and a message nobody could classify.
    """
    n = 0

    def message(kind: str | None, key: str | None, when: datetime, source: str = "imap") -> InboundMessage:
        nonlocal n
        n += 1
        lead = int(key.split(".")[0].removeprefix("lead-")) if key else None
        return InboundMessage(
            message_id=f"<in{n}@mail.example>",
            source=source,
            source_key=f"1:{n}",
            received_at=when,
            lead_id=lead,
            outbox_key=key,
            kind=kind,
            evidence={},
            raw=b"x",
            raw_size=1,
            status="signalled" if key else "unmatched",
        )

    async with sessionmaker() as session:
        session.add_all(
            [
                message("human_reply", "lead-2.c0.welcome", at(3)),
                message("human_reply", "lead-2.c0.welcome", at(4)),
                message("auto_reply", "lead-3.c0.welcome", at(2, 11)),
                message("hard_bounce", "lead-4.c0.welcome", at(3, 9, 5), source="webhook:ses"),
                message("hard_bounce", "lead-4.c0.welcome", at(3, 9, 6)),
                message("soft_bounce", "lead-5.c0.welcome", at(3, 10)),
                message("complaint", "lead-6.c0.welcome", at(5)),
                message("policy_block", "lead-7.c0.welcome", at(3, 10)),
                message("unsubscribe_request", "lead-9.c0.welcome", at(5, 11)),
                message("complaint", "lead-8.c0.tips", at(5)),
                message("hard_bounce", "lead-10.c0.intro", at(9, 10), source="webhook:postmark"),
                message("hard_bounce", "lead-11.c0.intro", at(10, 10)),
                message("human_reply", "lead-1.c0.welcome", at(21, month=10)),
                message("human_reply", "lead-2.c0.notify-a1", at(5, 12)),
                message("hard_bounce", None, at(20, month=10)),
                message("hard_bounce", None, at(6)),
                message(None, None, at(7)),
            ]
        )
        await session.commit()


@pytest.fixture
async def november(sessionmaker: Maker) -> ReportData:
    await seed(sessionmaker)
    await came_back(sessionmaker)
    return await gather_report(sessionmaker, None, SINCE, None, now=NOW)


def levels(item: object) -> dict[str, str]:
    return {flag.metric: flag.level for flag in item.flags}  # type: ignore[attr-defined]


async def test_what_came_back_is_counted_per_step_by_the_email_it_answers(november: ReportData) -> None:
    steps = {(s.cadence, s.step): s for s in november.steps}
    welcome = steps["welcome", "welcome"]
    counts = (welcome.replies, welcome.auto_replies, welcome.hard_bounces, welcome.soft_bounces)
    assert counts == (1, 1, 1, 1)  # L2's two replies answer one email; L4's bounce came twice, one email
    assert (welcome.policy_blocks, welcome.complaints) == (1, 1)
    # 1 reply of 8 sends; 1 complaint of 8; (0 refused at the send + 1 bounced later) of 8
    assert (welcome.reply_rate, welcome.complaint_rate, welcome.bounce_rate) == (0.125, 0.125, 0.125)
    assert levels(welcome) == {"complaint_rate": "crossed", "bounce_rate": "crossed"}
    tips = steps["welcome", "tips"]
    assert (tips.complaints, tips.complaint_rate, tips.replies, tips.hard_bounces) == (1, 0.5, 0, 0)
    intro = steps["influencer", "intro"]
    # L10 bounced later; L11 was refused at the send and its DSN is not counted again: (1 + 1) of (1 + 1)
    assert (intro.sends, intro.bounces, intro.hard_bounces, intro.bounce_rate) == (1, 1, 1, 1.0)
    assert (intro.complaint_rate, levels(intro)) == (0.0, {"bounce_rate": "crossed"})
    checkin = steps["nurture-later", "checkin"]
    assert (checkin.replies, checkin.complaints, checkin.bounce_rate, checkin.flags) == (0, 0, 0.0, [])


async def test_each_cadence_and_all_together_are_judged_against_the_thresholds(november: ReportData) -> None:
    cadences = {c.cadence: c for c in november.inbound.cadences}
    assert list(cadences) == ["welcome", "influencer", "nurture-later"]  # the step table's order
    welcome = cadences["welcome"]
    # 8 + 2 + 1 + 2 = 13 sends; 2 complaints (L6, L8); 1 hard bounce (L4): 1/13 = 7.7% reaches SES's 5% review
    assert (welcome.sends, welcome.replies, welcome.complaints, welcome.hard_bounces) == (13, 1, 2, 1)
    assert welcome.complaint_rate == pytest.approx(2 / 13) and welcome.bounce_rate == pytest.approx(1 / 13)
    assert levels(welcome) == {"complaint_rate": "crossed", "bounce_rate": "warning"}
    assert "Amazon SES puts the account under review" in welcome.flags[1].text
    assert levels(cadences["nurture-later"]) == {}
    total = november.inbound.total
    assert total.cadence is None
    # 15 sends + 1 refused at the send; hard bounces: L11 at the send, L4 and L10 later -> 3/16
    assert (total.sends, total.bounces, total.hard_bounces, total.bounce_rate) == (15, 1, 2, 3 / 16)
    assert (total.auto_replies, total.soft_bounces, total.policy_blocks) == (1, 1, 1)
    assert total.complaint_rate == pytest.approx(2 / 15)
    # the October bounce is outside the period; the November ones cannot be placed in a step
    assert november.inbound.unmatched == {"hard_bounce": 1, "not_classified": 1}


async def test_a_cadence_report_places_only_its_emails_and_still_shows_the_unmatched(sessionmaker: Maker) -> None:
    await seed(sessionmaker)
    await came_back(sessionmaker)
    data = await gather_report(sessionmaker, None, SINCE, "influencer", now=NOW)
    assert [c.cadence for c in data.inbound.cadences] == ["influencer"]
    assert (data.inbound.total.hard_bounces, data.inbound.total.complaints) == (1, 0)
    assert data.inbound.unmatched_total == 2
    everything = await gather_report(sessionmaker, None, None, None, now=NOW)
    # all time: L1's October welcome and its reply count; so does the unmatched October bounce
    assert everything.inbound.total.replies == 2 and everything.inbound.unmatched["hard_bounce"] == 2


@pytest.mark.parametrize(
    ("complaint_rate", "bounce_rate", "want"),
    [
        (0.0009, 0.049, {}),
        (0.001, 0.05, {"complaint_rate": "warning", "bounce_rate": "warning"}),  # reaching it is enough
        (0.0029, 0.0999, {"complaint_rate": "warning", "bounce_rate": "warning"}),
        (0.003, 0.10, {"complaint_rate": "crossed", "bounce_rate": "crossed"}),
        (None, None, {}),  # nothing sent: no rate, nothing to flag
    ],
)
def test_rates_are_flagged_at_the_published_thresholds(
    complaint_rate: float | None, bounce_rate: float | None, want: dict[str, str]
) -> None:
    found = flags(complaint_rate=complaint_rate, bounce_rate=bounce_rate)
    assert {f.metric: f.level for f in found} == want
    assert all(f.threshold <= (complaint_rate if f.metric == "complaint_rate" else bounce_rate) for f in found)


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


async def test_the_page_and_the_summary_show_what_came_back(november: ReportData, tmp_path: Path) -> None:
    page = render_html(november, tmp_path / "files")
    step = [text_of(c) for c in cell(page, "data-came-back", "welcome/welcome")]
    assert step == ["welcome", "welcome", "8", "1 (12.5%)", "1", "1", "1", "1", "1", "12.5% ⚑", "12.50% ⚑"]
    assert [text_of(c) for c in cell(page, "data-came-back", "influencer/intro")][5] == "1 + 1 at the send"
    welcome = [text_of(c) for c in cell(page, "data-cadence-came-back", "welcome")]
    assert welcome[:10] == ["welcome", "13", "1 (7.7%)", "1", "1", "1", "1", "2", "7.7% ⚑", "15.38% ⚑"]
    assert "bounce rate at or over 5%: Amazon SES puts the account under review" in welcome[10]
    assert "complaint rate at or over 0.3%: Gmail's and Yahoo's limit for bulk senders" in welcome[10]
    assert 'data-flag="complaint_rate:crossed"' in page and 'data-flag="bounce_rate:warning"' in page
    assert [text_of(c) for c in cell(page, "data-cadence-came-back", "nurture-later")][-1] == "none"
    assert text_of(cell(page, "data-cadence-came-back", "all")[0]) == "all cadences"
    unmatched = re.search(r'<p id="inbound-unmatched">(.*?)</p>', page, re.S)
    assert unmatched and "2 (hard bounce 1, not classified 1)" in text_of(unmatched.group(1))
    assert (tmp_path / "files" / "inbound.png").stat().st_size > 10_000

    columns = [column._cells for column in summary(november).columns]
    table = {str(row[0]): [str(c) for c in row[1:]] for row in zip(*columns, strict=True)}
    assert table["replies / auto-replies"] == ["1 / 1", "6.7%"]
    assert table["hard bounces (at the send + later), soft, policy blocks"][0] == "3, 1, 1"
    assert table["hard bounces (at the send + later), soft, policy blocks"][1].startswith("18.8% ⚑ crossed")
    assert table["complaints"] == ["2", "13.33% ⚑ crossed: at or over 0.3%: Gmail's and Yahoo's limit for bulk senders"]
    assert table["inbound not matched to a send"] == ["2", ""]
    notes = threshold_notes(november)
    assert "cadence welcome: complaint rate 15.38% is at or over 0.3%: Gmail's and Yahoo's limit for bulk senders" in (
        notes
    )
    assert not any("nurture-later" in line for line in notes)


async def test_without_inbound_messages_nothing_is_flagged_or_unmatched(sessionmaker: Maker, tmp_path: Path) -> None:
    data = await gather_report(sessionmaker, None, None, None, now=NOW)
    assert data.inbound.cadences == [] and data.inbound.total.flags == [] and data.inbound.unmatched == {}
    page = render_html(data, tmp_path / "files")
    unmatched = re.search(r'<p id="inbound-unmatched">(.*?)</p>', page, re.S)
    assert unmatched and text_of(unmatched.group(1)).endswith(": 0 .")
    assert threshold_notes(data) == []
