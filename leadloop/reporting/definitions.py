"""What every number of the report counts: shown in the report next to its numbers, and in the README."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    """A rate a mailbox provider or relay publishes; the report flags a rate that reaches it (>=)."""

    metric: str  # complaint_rate | bounce_rate
    level: str  # warning | crossed
    rate: float
    text: str
    label: str  # what the threshold means, in a few words (the chart's legend)


#: The thresholds the report flags, as their publishers word them (checked 2026-12-01):
#:
#: - Google, "Email sender guidelines" (https://support.google.com/mail/answer/81126), for senders to Gmail:
#:   "Keep spam rates reported in Postmaster Tools below 0.10% and avoid ever reaching a spam rate of 0.30% or
#:   higher." Yahoo's sender best practices (https://senders.yahooinc.com/best-practices/) ask bulk senders to
#:   keep their spam complaint rate below 0.3% as well.
#: - Amazon SES (Developer Guide, "Amazon SES sending review process FAQs", and the AWS knowledge-center article
#:   "Why is my Amazon SES sending account under review or paused?",
#:   https://repost.aws/knowledge-center/ses-resolve-account-review-pause): an account whose bounce rate is 5% or
#:   greater is placed under review; at a bounce rate of 10% or greater SES might pause its sending. SES counts
#:   hard bounces only, as this report's bounce rate does.
THRESHOLDS = (
    Threshold(
        "complaint_rate",
        "crossed",
        0.003,
        "at or over 0.3%: Gmail's and Yahoo's limit for bulk senders",
        "Gmail and Yahoo: never reach it",
    ),
    Threshold(
        "complaint_rate",
        "warning",
        0.001,
        "at or over 0.1%: above what Gmail asks senders to stay below",
        "Gmail: stay below it",
    ),
    Threshold(
        "bounce_rate",
        "crossed",
        0.10,
        "at or over 10%: Amazon SES may pause the account's sending",
        "Amazon SES: may pause sending",
    ),
    Threshold(
        "bounce_rate",
        "warning",
        0.05,
        "at or over 5%: Amazon SES puts the account under review",
        "Amazon SES: account under review",
    ),
)

#: What every number counts; shown in the report next to its numbers, and in the README.
DEFINITIONS: dict[str, dict[str, str]] = {
    "period": {
        "period": "from --since (00:00 UTC that day) to the moment the report was made; without --since, "
        "everything leadloop's database holds. An email belongs to the period by when it went out (sent_at; "
        "when it has none — uncertain, bounced — when it was queued); an event, a hand-over, a decision or a "
        "suppression by when it happened.",
        "scope": "every lead; with --cadence C, the leads enrolled into C (the cadence on their record) or sent "
        "at least one email of C, and in the step table only C's emails.",
    },
    "live": {
        "leads by stage now": "Temporal's visibility: per LeadStage, the leads whose current run is running, "
        "plus those whose workflow completed in that stage (converted, suppressed, archived, cadence_complete); "
        "continued-as-new runs are not counted again. With --cadence: leads whose current cycle runs it. "
        "Not limited to the period.",
    },
    "funnel": {
        "enrolled": "the cohort: leads in scope whose record was created in the period (their first "
        "enrolment; re-enrolling a known lead does not make it new).",
        "engaged": "cohort leads with at least one human open or human click of any of their emails, at any "
        "time since (a click the landing page confirmed is a person's, whatever the classifier had said). Machine "
        "opens and clicks (privacy prefetches, security scanners, link previews) never count, site visits do not "
        "either. A lead that reached sales without one counts as engaged too, so "
        "each stage holds the next.",
        "escalated": "cohort leads handed to sales at least once: their score reached the cadence's threshold "
        "(an assignment to a rep, or a wait for one).",
        "converted": "cohort leads a rep accepted. Accepting converts a lead: leadloop has no separate "
        "'accepted' stage.",
        "rate": "a stage's leads ÷ the previous stage's leads; 'of enrolled': ÷ the cohort.",
        "rejected": "cohort leads a rep rejected at least once.",
        "recycled": "cohort leads a rejection sent back to nurture (recycle.yaml's nurture action).",
        "dormant": "cohort leads a rejection made dormant, or whose big-bang email went out with no human "
        "open or click after it before their next cycle (a lead still inside its response window counts "
        "already).",
        "suppressed": "cohort leads whose address is on the suppression list (unsubscribe, hard bounce, a "
        "rep's 'not interested'), matched by the address's hash.",
        "activity in the period": "the same events for every lead in scope, whenever it was enrolled, counted "
        "when they happened in the period: enrolled = new leads; emailed = sent at least one email; engaged = "
        "a human open or click; escalated = handed to sales; converted = accepted; rejected, recycled, dormant "
        "(rejection, or a big bang sent in the period and unanswered), suppressed. Each is a number of leads.",
    },
    "steps": {
        "sends": "the step's emails handed to the SMTP relay in the period (status sent, or uncertain: "
        "possibly sent, never sent twice). Refused and suppressed attempts are not sends; bounces are apart. "
        "An email's events count whenever they happened.",
        "human open rate": "emails with at least one human open or human click ÷ sends (a click proves an "
        "open when images were blocked; a click the landing page confirmed proves its email read by a person, "
        "even where the only open was a machine's).",
        "human click rate": "emails with at least one human click ÷ sends.",
        "machine opens, machine clicks": "the share of the step's open (click) events the classifier marked "
        "machine: privacy prefetches, security gateways, link scanners and previews (by class below). They never "
        "count as engagement.",
        "unsubscribes": "emails of the step through which the lead unsubscribed; rate ÷ sends.",
        "bounces": "emails of the step the recipient's server refused for good at the send itself; the rate "
        "beside them is the step's bounce rate, with the hard bounces that came back later (below).",
    },
    "came back": {
        "replies, auto-replies, hard bounces, soft bounces, policy blocks, complaints": "sent emails of the step "
        "that got at least one inbound message of that kind, whenever it came — mailed to leadloop's mailbox (the "
        "IMAP inbox, the VERP bounce address) or reported by a relay's webhook alike; the message is matched to "
        "its email by In-Reply-To/References, the VERP address, or the sender and a 'Re:' subject. Two reports of "
        "one bounce (a webhook and a mailed DSN) count once.",
        "reply rate": "emails answered by a person ÷ sends.",
        "bounce rate": "(emails refused for good at the send + sent emails that bounced for good afterwards) ÷ "
        "(sends + emails refused at the send): hard bounces only, as Amazon SES counts them. Soft bounces and "
        "policy blocks are shown, not counted in it.",
        "complaint rate": "sent emails a recipient reported as spam (a feedback-loop report) ÷ sends.",
        "thresholds": "flagged when a rate reaches them: complaint rate 0.1% (Gmail: keep it below) and 0.3% "
        "(Gmail and Yahoo: never reach it); bounce rate 5% (Amazon SES reviews the account) and 10% (SES may "
        "pause its sending). The providers measure a sender's whole traffic over days: a step with a handful of "
        "sends crosses them with one message.",
        "not matched to a send": "inbound messages received in the period that no rule tied to one of leadloop's "
        "emails (kept, never guessed onto a lead; `leadloop inbound list --unmatched`). They cannot be placed in "
        "a step or cadence, so --cadence does not limit them.",
    },
    "truth": {
        "raw click rate": "emails with at least one click event of any kind — a person's, a security gateway's, a "
        "scanner's — ÷ sends: the click rate a tracker that believes every hit shows. Counted per email like the "
        "human and confirmed rates, so the three compare; the click events themselves are counted beside them.",
        "human click rate": "emails with at least one human click, confirmed by the landing page or not, ÷ sends.",
        "confirmed click rate": "emails with at least one click the landing page confirmed ÷ sends: its beacon "
        "reported the visitor the click sent (it runs JavaScript, which scanners rarely do). The surest figure.",
        "confirmed, unconfirmed clicks": "click events by people. Confirmed: the landing page's beacon reported the "
        "visitor (a click the classifier had called machine counts here once the page confirmed it, and no longer "
        "as a machine's). Unconfirmed: called human by the classifier and never confirmed, among them every click "
        "stored before leadloop confirmed clicks. A confirmation is the click itself confirmed, never another "
        "click; the open it proves makes its email opened by a person, never another open.",
        "raw open rate": "emails with any open or click event, a person's or a machine's, ÷ sends; beside it the "
        "human open rate, and the open events by people and by machine class.",
        "gateway": "a mail security gateway checking the pixel or the links from its vendor's published address "
        "ranges (Microsoft Defender Safe Links / Exchange Online Protection, Proofpoint, Mimecast, Barracuda, "
        "Symantec), often with a browser's user agent.",
        "cloud": "a scanner on a public cloud (AWS, Google Cloud, Azure published ranges) fetching the pixel or a "
        "link.",
        "prefetch": "a mailbox provider fetching images or links ahead of the reader (Gmail's image prefetch, "
        "Yahoo's link fetch).",
        "MPP": "Apple Mail Privacy Protection loading every image when the message arrives, read or not.",
        "scanner": "link scanners and other automated clients: honeypot links, hits seconds after the send, every "
        "link walked at an even pace, clients that name themselves or send no browser navigation.",
        "unclassified": "machine events whose verdict named no class: those stored before the classifier named "
        "classes (leadloop before migration 0010). Counted as machine, never guessed into a class.",
    },
    "sales": {
        "hand-overs": "assignments of a lead to a rep made in the period; a lapse and the hand-over to the "
        "next rep are two. Accepted, rejected, lapsed, open (still waiting for the rep) and closed (ended "
        "without a decision: the lead unsubscribed, the rep could not be notified) are their states now.",
        "waited for a rep": "escalations in the period when no rep was available (inactive or at capacity).",
        "time to decide": "from the hand-over to the rep's accept or reject, in wall-clock hours (the SLA "
        "counts business hours in the rep's time zone, so a decision inside it can take longer on the clock).",
        "SLA lapses": "hand-overs the rep let pass the team's SLA without a decision; the lead went to the "
        "next rep. Lapse rate: lapsed ÷ (accepted + rejected + lapsed).",
        "rejection reasons": "reps' rejections in the period by reason, and what recycle.yaml made of them.",
        "recycled, later converted": "leads a rejection in the period sent back to nurture, that a rep "
        "accepted afterwards (by the time of the report).",
        "suppressions": "addresses put on the suppression list in the period, by reason; 'erased' are people "
        "forgotten on request, whose lead no longer carries the address.",
    },
    "planner": {
        "planner": "works backwards from the target number of conversions: each stage needs the next stage's "
        "number ÷ the measured rate into it, rounded up to whole leads; the top is how many new leads to "
        "enrol. The rates are the cohort funnel's. A growth percentage applies to the cohort's conversions; "
        "without a target or growth the plan repeats the measured conversions.",
        "more needed": "needed − measured in the period (0 when the period already had enough).",
    },
}
