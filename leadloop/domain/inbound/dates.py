"""Return dates written without a year ("14.12.", "12/08", "until the 10th"), read against the message's date.

The rule, for a message sent on day D:

- a day and a month without a year are the next such date on or after D;
- a day of the month alone ("until the 10th", "bis zum 10.") is the next such day on or after D;
- numbers written as `a.b` or `a/b` are day first in Greek, German, Spanish and Polish; month first in Hungarian
  (which writes year, month, day: "12.10-ig" is until 10 December); in English month first (the US order)
  unless the message says otherwise: Content-Language en-GB (or any English but en-US), or another date in the
  text whose first number is over 12 (`28/11`). A number over 12 always decides which one is the day;
- a time written with a dot (`8.30`, `9.00 Uhr`) is no date;
- a reading that lands further than MAX_AHEAD from D gives way to the other order when that one lands inside
  it (out-of-office notes announce short absences), and is dropped when neither does.
"""

import re
from datetime import date, timedelta
from typing import Literal

Order = Literal["dmy", "mdy"]

#: How far ahead a date without a year may be: further out, "vom 30.11." read as next year's is where an
#: absence began, not where it ends.
MAX_AHEAD = timedelta(days=183)
#: `14.12.`, `12/08`, `9/12`: a day and a month (either order) with no year after them.
NUMERIC = re.compile(r"(?<![\d./])(\d{1,2})([./])(\d{1,2})(?![\d]|[./]\d)\.?")
#: `8.30`, `9.00 Uhr`, `17.45h`: a time of day written with a dot, not a date.
_TIME = re.compile(
    r"\d{1,2}\.(?:00|15|30|45)(?!\.\d)|\d{1,2}\.\d{2}\s*(?:uhr|h\b|hrs?\b|am\b|pm\b|óra|órá|godz|ώρα)", re.I
)
#: The start of a month's name in the six languages, after which a day is no day of the month alone.
_MONTH = (
    r"(?:of\s+|de\s+)?(?:jan|feb|m[aä]r|apr|abr|ma[iyj]|jun|jul|aug|ago|sep|o[ck]t|nov|de[cz]|dic|ene|stycz|lut|"
    r"kwie|czerw|lip|sierp|wrze|pa[zź]dz|listop|grud|[aá]pr|m[aá]j|j[uú]n|j[uú]l|szept|ιαν|φεβ|μαρ|απρ|μα[ιΐ]|"
    r"ιουν|ιουλ|αυγ|σεπ|οκτ|νοε|δεκ)"
)
#: A day of the month alone: "the 10th", "bis zum 10.", "hasta el día 10", "do 10-go", "10-ig".
ORDINAL_DAY = re.compile(
    rf"\b(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)\b(?!\s+{_MONTH})"
    rf"|\b(?:zum|am|dem)\s+(\d{{1,2}})\.(?!\d)(?!\s*{_MONTH})"
    r"|\bd[ií]a\s+(\d{1,2})\b(?!\s+de\b)"
    r"|\b(\d{1,2})-?(?:go|ego)\b"
    r"|(?<![\d.])\b(\d{1,2})-(?:[aáeé]?ig)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]+(?:-ig)?")
#: a few words that only (or mostly) one of the six languages uses, to tell a message's language
_MARKERS: dict[str, frozenset[str]] = {
    "en": frozenset("the and am i'm back until office will be of my your out on leave holiday away".split()),
    "de": frozenset("ich bin und der die das im bis wieder zurück ab dem sie nicht büro urlaub".split()),
    "es": frozenset("el la de y estoy estaré hasta vuelta oficina que en los mi vacaciones".split()),
    "pl": frozenset("jestem do na w z urlopie biurem poza się od nie będę dniu".split()),
    "hu": frozenset("vagyok a az és szabadságon nem leszek irodában vissza kívül irodán".split()),
}
_GREEK = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")
_ENGLISH_BUT_US = re.compile(r"^en-(?!us\b)", re.IGNORECASE)


def language_of(text: str) -> str | None:
    """The one of the six languages the text is most likely in, by script and by marker words; None: no telling."""
    if len(_GREEK.findall(text)) > 3:
        return "el"
    words = [word.lower() for word in _WORD.findall(text)]
    scores = {lang: sum(word in markers for word in words) for lang, markers in _MARKERS.items()}
    scores["hu"] += sum(word.endswith("-ig") for word in words)
    best = max(scores.values())
    leaders = [lang for lang, score in scores.items() if score == best]
    return leaders[0] if best and len(leaders) == 1 else None


def numeric_order(text: str, content_language: str | None = None) -> Order:
    """Which of `a.b` / `a/b` is the day, for this message (the module's rule)."""
    tag = (content_language or "").strip().split(",")[0].strip().lower()
    language = tag[:2] if tag[:2] in _MARKERS or tag[:2] == "el" else language_of(text)
    if language == "hu":
        return "mdy"
    if language != "en":
        return "dmy"
    if _ENGLISH_BUT_US.match(tag):
        return "dmy"
    for first, _, second in NUMERIC.findall(text):  # a date the writer wrote unambiguously shows their order
        if int(first) > 12 >= int(second):
            return "dmy"
        if int(second) > 12 >= int(first):
            return "mdy"
    return "mdy"


def day_month(first: int, second: int, order: Order, sent: date) -> date | None:
    """The date `first`/`second` names, read in `order` (a number over 12 is the day whatever the order), the
    next one on or after `sent`; the other order when this one lands beyond MAX_AHEAD; None when none fits."""
    readings = [(first, second), (second, first)] if order == "dmy" else [(second, first), (first, second)]
    for day, month in readings:
        found = next_date(day, month, sent)
        if found is not None and found - sent <= MAX_AHEAD:
            return found
    return None


def next_date(day: int, month: int, sent: date) -> date | None:
    """The first `day`.`month` on or after `sent` (within a year and a day: 29 February waits for a leap year no
    further), or None when there is no such date."""
    for year in (sent.year, sent.year + 1):
        try:
            found = date(year, month, day)
        except ValueError:
            continue
        if found >= sent:
            return found
    return None


def next_day_of_month(day: int, sent: date) -> date | None:
    """The first `day` of a month on or after `sent` (the 31st skips the months without one)."""
    year, month = sent.year, sent.month
    for _ in range(3):
        try:
            found = date(year, month, day)
        except ValueError:
            found = None
        if found is not None and found >= sent:
            return found
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def yearless(line: str, order: Order, sent: date) -> list[date]:
    """Every date without a year in one line, read against `sent`."""
    found = [
        day_month(int(match.group(1)), int(match.group(3)), order, sent)
        for match in NUMERIC.finditer(line)
        if not _TIME.match(line, match.start())
    ]
    for match in ORDINAL_DAY.finditer(line):
        number = next(group for group in match.groups() if group)
        found.append(next_day_of_month(int(number), sent))
    return [day for day in found if day is not None and day - sent <= MAX_AHEAD]
