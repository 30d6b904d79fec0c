"""Whether a reply asks to be unsubscribed: request words not negated, not rhetorical, not the link named."""

import re
from dataclasses import dataclass, field

from leadloop.domain.inbound import wording

#: Words before a request word searched for a negation ("I really don't want to unsubscribe"): a short window, so
#: "No time today. Please remove me" still asks.
NEGATION_WINDOW = 6
#: A reply this long (in words) whose request sentences are a small share of it is mostly about something else:
#: a human reply. A lead suppressed by mistake is lost for good; a missed request is still covered by the
#: one-click link in every email.
LONG_REPLY_WORDS = 60
REQUEST_SHARE = 0.25
_SENTENCE_END = re.compile(r"[.!?;\n]")
_CLAUSE_BREAK = re.compile(r"[,:;–—(]")
_WORDS = re.compile(r"\w+(?:['’]\w+)?")


@dataclass
class Reading:
    """The words that ask to be removed (None: the reply does not ask), and why each other mention was not taken."""

    request: str | None = None
    not_taken: list[str] = field(default_factory=list)


def read(own: str) -> Reading:
    """How the reply's own words (quote stripped) speak of unsubscribing."""
    reading = Reading()
    negated = [match.span() for match in wording.UNSUBSCRIBE_NEGATED.finditer(own)]
    noted: set[tuple[int, int]] = set()
    asks: list[tuple[int, int]] = []
    for match in wording.UNSUBSCRIBE.finditer(own):
        words = match.group(0)
        turned = [span for span in negated if span[0] < match.end() and match.start() < span[1]]
        if turned:
            noted.update(turned)
            reading.not_taken.append(f"{own[turned[0][0] : turned[0][1]]!r} negated")
            continue
        why = _not_a_request(own, match)
        if why is not None:
            reading.not_taken.append(f"{words!r} {why}")
            continue
        asks.append(_sentence(own, match.start(), match.end()))
        reading.request = reading.request or words
    # "nie wypisuj mnie": turned around, with no request words of its own
    reading.not_taken += [f"{own[start:end]!r} negated" for start, end in negated if (start, end) not in noted]
    if reading.request is not None and _mostly_else(own, asks):
        reading.not_taken.append(f"{reading.request!r} in a long reply mostly about something else")
        reading.request = None
    return reading


def _not_a_request(text: str, match: re.Match[str]) -> str | None:
    """Why one mention of the request words is not a request (negated, rhetorical, the link named), or None."""
    start, end = _sentence(text, match.start(), match.end())
    clause = _CLAUSE_BREAK.split(text[start : match.start()])[-1]
    before = _WORDS.findall(clause)
    opened = max((i + 1 for i, word in enumerate(before) if wording.CLAUSE_WORD.search(word)), default=0)
    window = " ".join(before[opened:][-NEGATION_WINDOW:])
    negation = wording.NEGATION.search(window)
    if negation is not None:
        return f"negated by {negation.group(0)!r}"
    sentence = text[start:end].strip()
    if sentence.endswith(("?", ";", "\u037e")) and wording.WHY.search(sentence):  # Greek asks with ";"
        return "in a question asking why (rhetorical)"
    after = _WORDS.findall(text[match.end() : match.end() + 40])[:2]
    if any(wording.LINK_WORD.search(word) for word in after + before[-3:]):
        return "names the link or button, asks nothing"
    if before and wording.NOUN_DETERMINER.search(before[-1]):
        return "used as a noun, asks nothing"
    return None


def _sentence(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of the sentence around text[start:end], its closing mark included."""
    opening = max((m.end() for m in _SENTENCE_END.finditer(text, 0, start)), default=0)
    closing = _SENTENCE_END.search(text, end)
    return opening, closing.end() if closing is not None else len(text)


def _mostly_else(own: str, asks: list[tuple[int, int]]) -> bool:
    total = len(_WORDS.findall(own))
    if total < LONG_REPLY_WORDS:
        return False
    asking = sum(len(_WORDS.findall(own[start:end])) for start, end in dict.fromkeys(asks))
    return asking < REQUEST_SHARE * total
