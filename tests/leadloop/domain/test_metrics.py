"""leadloop's counters: one prefix, fixed labels, and every classifier verdict bucketed into a small label value."""

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.common import MetricMeter

from leadloop.domain import metrics
from leadloop.domain.classify import Hit, PriorHit, Verdict, classify
from leadloop.domain.ranges import PACKAGED_RANGES, load_ranges

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
GMAIL_PREFETCH = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 "
    "Safari/537.36 Edge/12.246 Mozilla/5.0"
)


def counters() -> list[metrics.Counter]:
    return [value for value in vars(metrics).values() if isinstance(value, metrics.Counter)]


def test_every_counter_is_prefixed_unique_and_free_of_identifying_labels() -> None:
    names = [c.name for c in counters()]
    assert len(names) == len(set(names)) >= 18
    assert all(name.startswith("leadloop_") and not name.endswith("_total") for name in names)
    labels = {label for c in counters() for label in c.labels}
    assert not labels & {"lead", "lead_id", "email", "rep", "rep_id", "url", "user_agent", "ip", "note"}


def test_a_counter_takes_exactly_its_labels() -> None:
    metrics.EMAILS_SENT.add(MetricMeter.noop, cadence="welcome", step="tips", status="sent")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.EMAILS_SENT.add(MetricMeter.noop, cadence="welcome", step="tips")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.ESCALATIONS.add(MetricMeter.noop, cadence="welcome", lead_id="7")


@pytest.mark.parametrize(
    ("hit", "rule"),
    [
        (Hit("open", CHROME, "10.0.0.1", {}, NOW, honeypot=True), "honeypot"),
        (Hit("open", CHROME, "10.0.0.1", {}, NOW, sent_at=NOW - timedelta(seconds=1)), "too_soon"),
        (Hit("open", "", "10.0.0.1", {}, NOW), "no_user_agent"),
        (Hit("open", "Mozilla/5.0 (via ggpht.com GoogleImageProxy)", "10.0.0.1", {}, NOW), "reader_proxy"),
        (Hit("open", "Mozilla/5.0", "10.0.0.1", {}, NOW), "apple_privacy_prefetch"),
        (Hit("click", "Mimecast", "10.0.0.1", NAV, NOW), "link_scanner"),
        (Hit("click", "Microsoft Office/16.0", "10.0.0.1", NAV, NOW), "link_preview"),
        (Hit("click", "curl/8.5.0", "10.0.0.1", NAV, NOW), "automated_client"),
        (Hit("open", CHROME, "40.93.1.2", {}, NOW), "machine_network"),
        (Hit("click", CHROME, "10.0.0.1", {"accept": "*/*"}, NOW), "not_navigation"),
        (Hit("click", CHROME, "10.0.0.1", {"accept": "text/html", "sec-fetch-mode": "no-cors"}, NOW), "not_navigation"),
        (
            Hit(
                "click",
                CHROME,
                "10.0.0.1",
                NAV,
                NOW,
                url="https://a.example/",
                message_hits=(PriorHit("click", NOW, "https://b.example/"),),
            ),
            "link_burst",
        ),
        (Hit("click", CHROME, "10.0.0.1", NAV, NOW), "browser"),
        (Hit("visit", CHROME, "10.0.0.1", {}, NOW), "beacon"),
        (Hit("open", CHROME, "10.0.0.1", {}, NOW), "mail_client"),
    ],
)
def test_each_classifier_rule_has_its_own_small_label(hit: Hit, rule: str) -> None:
    verdict = classify(hit, ranges=load_ranges(PACKAGED_RANGES))
    assert verdict.rule == rule and rule in metrics.ENGAGEMENT_RULES


@pytest.mark.parametrize(
    ("hit", "rule"),
    [
        (Hit("open", GMAIL_PREFETCH, "66.249.84.1", {}, NOW), "gmail_prefetch"),
        (Hit("click", "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", None, {}, NOW),
         "yahoo_link_fetch"),
        (Hit("click", "Mozilla/5.0", "10.0.0.1", NAV, NOW), "bare_user_agent"),
        (Hit("visit", CHROME, "10.0.0.1", {}, NOW, earlier_visits=(NOW, NOW, NOW)), "visit_burst"),
    ],
)  # fmt: skip
def test_the_new_evidence_has_labels_too(hit: Hit, rule: str) -> None:
    assert classify(hit).rule == rule


def test_the_label_is_the_verdicts_never_its_reason() -> None:
    """Reasons hold seconds, addresses and URLs; the label stays one of a few values whatever the reason says."""
    one = classify(Hit("open", CHROME, "10.0.0.1", {}, NOW, sent_at=NOW - timedelta(seconds=1)))
    two = classify(Hit("open", CHROME, "10.0.0.2", {}, NOW, sent_at=NOW - timedelta(seconds=3)))
    assert one.reason != two.reason and one.rule == two.rule == "too_soon"
    assert Verdict(True, "injected by an operator: https://x.example/?lead=7").rule == "other"
    assert len(metrics.ENGAGEMENT_RULES) == len(set(metrics.ENGAGEMENT_RULES)) <= 30
