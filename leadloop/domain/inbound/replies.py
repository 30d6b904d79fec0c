"""A reply's own words (the quoted original stripped), its stated return date and "left the company" hint."""

import functools
import re
from datetime import date, datetime, timedelta

from leadloop.domain.inbound import dates, wording

#: A date written the ways people write them: 8.12.2026, 2026-12-08, 8 December, December 8th, 2026. december 8.
#: A lookahead, so overlapping candidates ("bis zum 08" and "08.12.2026") are all tried.
_DATE_TOKEN = re.compile(
    r"(?<!\d)(?=(\d{4}-\d{1,2}-\d{1,2}"
    r"|\d{4}\.\s?[^\W\d_]+\s\d{1,2}(?!\d)"
    r"|\d{1,2}[./]\d{1,2}(?:[./]\d{2,4})?(?!\d)"
    r"|\d{1,2}(?:st|nd|rd|th|\.|ης|η)?\s(?:de\s)?[^\W\d_]{3,}(?:\s(?:de\s)?\d{4}(?!\d))?"
    r"|[^\W\d_]{3,}\.?\s\d{1,2}(?!\d)(?:st|nd|rd|th)?(?:,?\s\d{4}(?!\d))?))",
)
_WORD = re.compile(r"[^\W\d_]{2,}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: A stated return further out than this is a misread, not a holiday; without a year, "vom 30.11." read as next
#: year's 30 November is the start of the absence, not its end.
MAX_ABSENCE = timedelta(days=400)
MAX_ABSENCE_NO_YEAR = timedelta(days=183)
_YEAR = re.compile(r"\d{4}")
LANGUAGES = ["en", "el", "de", "es", "pl", "hu"]


def strip_quote(text: str) -> str:
    """The reply above the quoted original: cut at a quote header, an Outlook block, "> " lines or a signature."""
    lines = text.splitlines()
    kept: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped == "--" or stripped.startswith("-- "):
            break
        if wording.QUOTE_HEADER.search(stripped) or _outlook_block(lines, index):
            break
        if _wrapped_quote_header(lines, index):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line.rstrip())
    return "\n".join(kept).strip()


def _outlook_block(lines: list[str], index: int) -> bool:
    if not wording.OUTLOOK_FROM.search(lines[index].strip()):
        return False
    return any(wording.OUTLOOK_SENT.search(line.strip()) for line in lines[index + 1 : index + 4])


def _wrapped_quote_header(lines: list[str], index: int) -> bool:
    """Gmail wraps a long "On ... wrote:" over two lines."""
    if index + 1 >= len(lines):
        return False
    joined = f"{lines[index].strip()} {lines[index + 1].strip()}"
    return bool(lines[index + 1].strip()) and bool(wording.QUOTE_HEADER.search(joined))


def return_date(
    text: str, sent: datetime | None, evidence: list[str], *, content_language: str | None = None
) -> date | None:
    """The date an auto-reply says its writer is back: the latest date in a line with a return cue, after `sent`.

    Dates without a year ("14.12.", "12/08", "until the 10th") are read against `sent` by the rule in
    `leadloop.domain.inbound.dates`; the rest by dateparser, which loads its language data (about a second) on
    first use, so only auto-replies import it.
    """
    base = (sent.replace(tzinfo=None) if sent is not None else datetime(2000, 1, 1)).replace(microsecond=0)
    settings: dict[str, object] = {"RELATIVE_BASE": base, "PREFER_DATES_FROM": "future", "DATE_ORDER": "DMY"}
    order = dates.numeric_order(text, content_language)
    found: date | None = None
    without_year = False
    for line in text.splitlines()[:60]:
        if not wording.RETURN_CUE.search(line):
            continue
        tokens = [token for token in _DATE_TOKEN.findall(line)[:12] if not dates.NUMERIC.fullmatch(token.strip())]
        days = _dates(tokens, settings, sent) or _dates(
            [w for w in _WORD.findall(line) if len(w) > 3][:20], settings, sent
        )
        short = dates.yearless(line, order, sent.date()) if sent is not None else []
        for day, yearless in [(day, False) for day in days] + [(day, True) for day in short]:
            if found is None or day > found:
                found, without_year = day, yearless
    if found is not None:
        if sent is None:
            caveat = " (no Date header: only dates with a year read)"
        elif without_year:
            read = {"dmy": "day first", "mdy": "month first"}[order]
            numbers = f"; numbers read {read}" if dates.NUMERIC.search(text) else ""
            caveat = f" (written without a year: the next such date from the message's Date{numbers})"
        else:
            caveat = ""
        evidence.append(f"return date {found.isoformat()} stated{caveat}")
    return found


def _dates(tokens: list[str], settings: dict[str, object], sent: datetime | None) -> list[date]:
    """The tokens dateparser reads as a date after the message was sent and within MAX_ABSENCE of it."""
    import dateparser

    days: list[date] = []
    for token in tokens:
        if not all(_is_date_word(word) for word in _WORD.findall(token) if word.lower() != "de"):
            continue  # "room 12" is not a date, whatever dateparser makes of it
        parsed = dateparser.parse(token.strip(" ."), languages=LANGUAGES, settings=settings)
        if parsed is None:
            continue
        day = parsed.date()
        if sent is None:
            if _YEAR.search(token):  # without a Date header only a date with its year says which one
                days.append(day)
            continue
        limit = MAX_ABSENCE if _YEAR.search(token) else MAX_ABSENCE_NO_YEAR
        if sent.date() < day <= sent.date() + limit:
            days.append(day)
    return days


@functools.lru_cache(maxsize=512)
def _is_date_word(word: str) -> bool:
    """Whether a word alone names a month, a weekday or a day ("December", "Dienstag", "mañana")."""
    import dateparser

    return dateparser.parse(word, languages=LANGUAGES) is not None


def left_company(text: str) -> tuple[bool, str | None]:
    """Whether the text says the person has left, and whom to contact instead (an address, else the words)."""
    match = wording.LEFT_COMPANY.search(text)
    if match is None:
        return False, None
    after = text[match.start() : match.start() + 600]
    address = _EMAIL.search(after)
    if address is not None:
        return True, address.group(0).lower().rstrip(".")
    hint = wording.CONTACT_HINT.search(after)
    if hint is None:
        return True, None
    words = after[hint.start() :].splitlines()[0].strip()
    return True, words[:200]
