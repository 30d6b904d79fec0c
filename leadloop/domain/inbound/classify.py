"""classify(): one inbound message's kind, in the order the evidence is surest (reports, headers, wording)."""

from collections.abc import Collection
from email.message import Message

from leadloop.domain.inbound import message as mime
from leadloop.domain.inbound import replies, reports, unsubscribe, wording
from leadloop.domain.inbound.verdict import Confidence, InboundKind, InboundVerdict

#: Precedence values RFC 3834 says automatic responders use or honour.
AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})
#: Headers challenge-response services put on their challenges.
CHALLENGE_HEADERS = ("X-Boxbe-Challenge", "X-Challenge", "X-Challenge-Response", "X-Spamarrest-Challenge")


def classify(raw: bytes, *, sent_message_ids: Collection[str] | None = None) -> InboundVerdict:
    """The kind of one raw inbound message, what it answers, whom it names, and the evidence.

    Never raises. The seven kinds are all there is, so a message too broken to read, or one without
    a sender address or text of its own, is a human reply at low confidence with evidence saying
    what was missing: nothing about it is machine-made, and a reply is the kind that suppresses
    nothing (the worst it does is hand a lead to a rep who reads it). Only a report, a bounce's
    sender or subject, or flufl.bounce's detectors make a bounce; never a guess.

    Args:
        raw: the message as received (RFC 5322 bytes).
        sent_message_ids: Message-IDs leadloop sent; when given, `answers` is one of them, else any
            Message-ID of leadloop's form (`<lead-<id>.c<cycle>.<step>@domain>`).
    """
    evidence: list[str] = []
    try:
        msg = mime.parse(raw, evidence)
        text = mime.body_text(msg, evidence)
    except Exception as exc:
        return InboundVerdict(kind="human_reply", confidence="low", evidence=[f"unreadable message ({exc!r:.80})"])
    try:
        return _classify(msg, text, sent_message_ids, evidence)
    except Exception as exc:
        evidence.append(f"classification stopped on a broken part ({type(exc).__name__}); treated as a reply")
        return InboundVerdict(kind="human_reply", confidence="low", evidence=evidence)


def _classify(msg: Message, text: str, sent_ids: Collection[str] | None, evidence: list[str]) -> InboundVerdict:
    report = _report(msg, text, sent_ids)
    if report is not None:
        return InboundVerdict(
            kind=report.kind,
            confidence=report.confidence,
            answers=report.answers,
            lead_email=report.lead_email,
            status=report.status,
            evidence=report.evidence + evidence,
        )
    sender = mime.address(msg, "Reply-To") if _is_list_sender(msg) else None
    sender = sender or mime.address(msg, "From")
    references = (
        mime.message_ids(mime.header(msg, "In-Reply-To")) + mime.message_ids(mime.header(msg, "References"))[::-1]
    )
    answers = mime.pick_answered(references, sent_ids)
    if answers is not None:
        evidence.append(f"answers {answers} (In-Reply-To/References)")
    own = replies.strip_quote(text)
    kind, confidence, challenge = _reply_kind(msg, own, evidence)
    left, hint = replies.left_company(own) if kind == "auto_reply" and not challenge else (False, None)
    if left:
        evidence.append("says the person has left the company" + (f"; contact: {hint}" if hint else ""))
    back = None
    if kind == "auto_reply" and not challenge:
        language = mime.header(msg, "Content-Language") or None
        back = replies.return_date(own, mime.sent_at(msg), evidence, content_language=language)
    if sender is None:
        evidence.append("no sender address")
    if not own.strip():
        evidence.append("no text of its own")
    if kind == "human_reply" and (sender is None or not own.strip()):
        confidence = "low"
    return InboundVerdict(
        kind=kind,
        confidence=confidence,
        answers=answers,
        lead_email=sender,
        return_date=back,
        left_company=left,
        contact_hint=hint,
        challenge=challenge,
        reply_text=own,
        evidence=evidence,
    )


def _report(msg: Message, text: str, sent_ids: Collection[str] | None) -> reports.Finding | None:
    """A feedback report or a bounce, standard first."""
    for reader in (reports.read_arf, reports.read_dsn, reports.read_jmrp):
        found = reader(msg, text, sent_ids)
        if found is not None:
            return found
    return reports.read_other_bounce(msg, text, sent_ids)


def _is_list_sender(msg: Message) -> bool:
    return bool(msg.get("List-Id")) and bool(msg.get("Reply-To"))


def _auto_header(msg: Message) -> str | None:
    """The RFC 3834 (or vendor) header that marks a message as automatic, as evidence, or None."""
    auto = mime.header(msg, "Auto-Submitted").lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        if msg.get(name) is not None:
            return f"{name} header"
    precedence = mime.header(msg, "Precedence").lower().strip()
    if precedence in AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    return None


def _reply_kind(msg: Message, own: str, evidence: list[str]) -> tuple[InboundKind, Confidence, bool]:
    """Challenge, auto-reply, unsubscribe request or human reply, from headers then the reply's own words."""
    subject = mime.header(msg, "Subject")
    challenge_header = next((name for name in CHALLENGE_HEADERS if msg.get(name) is not None), None)
    challenge_words = wording.CHALLENGE.search(f"{subject}\n{own}")
    if challenge_header or challenge_words:
        why = f"{challenge_header} header" if challenge_header else f"wording {challenge_words.group(0)!r}"  # type: ignore[union-attr]
        evidence.append(f"challenge-response system ({why})")
        return "auto_reply", "high" if challenge_header else "medium", True
    header = _auto_header(msg)
    if header is not None:
        evidence.append(f"automatic by header ({header})")
        return "auto_reply", "high", False
    clue = wording.AUTO_SUBJECT.search(_unprefixed(subject))
    if clue is None and "?" not in own:
        # body wording alone, only in a text that asks nothing: "I'm away next week, can you call Tuesday?" is a person
        clue = wording.OUT_OF_OFFICE.search(own[:600]) or wording.LEFT_COMPANY.search(own)
    if clue is not None:
        evidence.append(f"automatic by wording {clue.group(0)!r}")
        return "auto_reply", "medium", False
    said = unsubscribe.read(own)
    if said.request is not None:
        evidence.append(f"asks to be removed ({said.request!r})")
        return "unsubscribe_request", "medium", False
    evidence += [f"mentions removal, not as a request: {why}" for why in said.not_taken]
    evidence.append("no report, automatic header or automatic wording: a person's reply")
    return "human_reply", "medium", False


def _unprefixed(subject: str) -> str:
    """A subject without its "Re:"/"AW:"/"RE:" prefixes (auto-reply subjects come before them or after)."""
    words = subject.strip()
    while True:
        head, sep, rest = words.partition(":")
        if sep and head.strip().lower() in ("re", "aw", "fw", "fwd", "wg", "sv", "odp", "vs", "rv", "απ"):
            words = rest.strip()
        else:
            return words
