"""Hostile input changes nothing: properties of signed tokens, CSV intake and the marketer's rule files."""

import base64
import copy
import csv
import functools
import io
import string
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, reject, settings
from hypothesis import strategies as st

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import load_cadence
from leadloop.domain.intake import IntakeFileError, ParsedRows, parse_csv, parse_csv_text
from leadloop.domain.recycle import load_recycle
from leadloop.domain.routing import load_roster, load_routing
from leadloop.domain.rules import RuleFileError
from leadloop.domain.scoring import load_scoring
from leadloop.domain.tokens import Signer, Token, TokenError, TokenKind

# modest and repeatable: no example database written into the project, no deadline on a shared machine
PROPERTY = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(PROPERTY, max_examples=120)  # each example parses a whole sample file in pure-Python YAML


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """One folder for the files the properties write: Hypothesis runs all examples in one test call, so a
    function-scoped tmp_path would not be fresh per example either."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


# ---------------------------------------------------------------- tokens

B64 = string.ascii_letters + string.digits + "-_"
SIGNER = Signer(["the key"])
NOW = int(time.time())

tokens = st.builds(
    Token,
    kind=st.sampled_from(["open", "click", "unsubscribe", "rep", "visitor"]),
    lead_id=st.integers(min_value=0, max_value=2**53),
    key=st.text(max_size=40),
    issued_at=st.integers(min_value=NOW - 10**7, max_value=NOW),
    url=st.text(max_size=80),
    extra=st.text(max_size=5),
)
# replacements: the token alphabet, padding, separators, and characters base64 would silently skip
replacements = st.sampled_from(B64) | st.sampled_from("=+/.~ %\n\x00é€") | st.characters()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@PROPERTY
@given(token=tokens)
def test_a_token_verifies_to_exactly_what_was_signed(token: Token) -> None:
    assert SIGNER.verify(SIGNER.sign(token), kind=token.kind, max_age=10**8) == token


@PROPERTY
@given(token=tokens, data=st.data())
def test_a_token_with_any_character_changed_is_refused(token: Token, data: st.DataObject) -> None:
    text = SIGNER.sign(token)
    position = data.draw(st.integers(min_value=0, max_value=len(text) - 1), label="position")
    new = data.draw(replacements.filter(lambda c: c != text[position]), label="new")
    changed = text[:position] + new + text[position + 1 :]
    try:
        verified = SIGNER.verify(changed)
    except TokenError:
        return
    # the one change that gets through is base64's: the last character's unused low bits (tokens.py _unb64,
    # see test_a_changed_final_character_is_refused); what it verifies to is the very token signed
    assert position == len(text) - 1 and new in B64 and verified == token


@PROPERTY
@given(token=tokens, data=st.data())
def test_a_token_with_any_byte_changed_is_refused(token: Token, data: st.DataObject) -> None:
    raw = bytearray(base64.urlsafe_b64decode(SIGNER.sign(token) + "=="))
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="position")
    raw[position] ^= data.draw(st.integers(min_value=1, max_value=255), label="xor")
    with pytest.raises(TokenError):
        SIGNER.verify(_encode(bytes(raw)))


@PROPERTY
@given(token=tokens, data=st.data())
def test_a_truncated_or_extended_token_is_refused(token: Token, data: st.DataObject) -> None:
    text = SIGNER.sign(token)
    cut = data.draw(st.integers(min_value=0, max_value=len(text) - 1), label="cut")
    with pytest.raises(TokenError):
        SIGNER.verify(text[:cut])
    suffix = data.draw(st.text(replacements, min_size=1, max_size=8), label="suffix")
    with pytest.raises(TokenError):
        SIGNER.verify(text + suffix)
    at = data.draw(st.integers(min_value=0, max_value=len(text)), label="insert at")
    with pytest.raises(TokenError):
        SIGNER.verify(text[:at] + suffix + text[at:])
    with pytest.raises(TokenError):  # the raw bytes extended and re-encoded cleanly: the tag no longer fits
        SIGNER.verify(_encode(base64.urlsafe_b64decode(text + "==") + suffix.encode("utf-8", "surrogatepass")))


@PROPERTY
@given(token=tokens, key=st.text(min_size=1, max_size=30))
def test_a_token_signed_with_another_key_is_refused(token: Token, key: str) -> None:
    assume(key != "the key")
    with pytest.raises(TokenError, match="signature"):
        SIGNER.verify(Signer([key]).sign(token))
    assert Signer([key, "the key"]).verify(SIGNER.sign(token)) == token  # rotation: old keys still verify


@PROPERTY
@given(token=tokens, age=st.integers(min_value=0, max_value=10**7), max_age=st.integers(min_value=0, max_value=10**7))
def test_expiry_is_respected(token: Token, age: int, max_age: int) -> None:
    assume(abs(age - max_age) > 60)  # clear of the seconds the test itself takes
    text = SIGNER.sign(replace(token, issued_at=int(time.time()) - age))
    if age > max_age:
        with pytest.raises(TokenError, match="expired"):
            SIGNER.verify(text, max_age=max_age)
    else:
        assert SIGNER.verify(text, max_age=max_age).kind == token.kind
    other: TokenKind = "click" if token.kind == "open" else "open"
    with pytest.raises(TokenError):
        SIGNER.verify(text, kind=other)


@PROPERTY
@given(junk=st.text() | st.text(B64, max_size=120) | st.binary(max_size=100).map(_encode))
def test_junk_is_refused_with_token_error_only(junk: str) -> None:
    with pytest.raises(TokenError):
        SIGNER.verify(junk)


def test_a_changed_final_character_is_refused() -> None:
    """Base64's last character has unused low bits: a sibling decodes to the same bytes, and is still refused."""
    text = next(t for n in range(4) if len(t := SIGNER.sign(Token("open", 1, "k" * n, NOW))) % 4 == 2)
    sibling = B64[B64.index(text[-1]) ^ 1]  # the same high bits: decodes to the same bytes
    with pytest.raises(TokenError):
        SIGNER.verify(text[:-1] + sibling)


# ---------------------------------------------------------------- CSV intake

# what a spreadsheet could hold: any text, quotes, separators, line breaks, NUL, BOMs, lone surrogates excluded
cells = st.text(st.characters(exclude_categories=["Cs"]) | st.sampled_from(',;"\r\n\x00\ufeff\t'), max_size=30)
HEADER_NAMES = (
    "email",
    "Email",
    " E-mail ",
    "first_name",
    "First Name",
    "company",
    "timezone",
    "locale",
    "owner",
    "",
    "source",
    "\ufeffemail",
    "x\x00y",
)
headers = st.sampled_from(HEADER_NAMES)


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    """Text shaped like a CSV: random header (duplicates too), random cells, quoting and line endings."""
    header = draw(st.lists(headers | cells, min_size=0, max_size=6))
    rows = draw(st.lists(st.lists(cells, max_size=8), max_size=6))
    out = io.StringIO()
    writer = csv.writer(
        out,
        lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])),
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONE])),
        escapechar="\\",
    )
    for row in [header, *rows]:
        try:
            writer.writerow(row)
        except csv.Error:  # a row csv will not write (one empty field unquoted): written raw, as junk
            out.write(",".join(row) + "\n")
    text = out.getvalue()
    if draw(st.booleans()):  # cut anywhere: an unclosed quote, half a line
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
    return draw(st.sampled_from(["", "\ufeff", "\ufeff\ufeff"])) + text


def _parse_or_refuse(parse: Callable[[], ParsedRows]) -> ParsedRows | None:
    try:
        parsed = parse()
    except IntakeFileError as exc:
        assert str(exc)  # a reason a person can read
        return None
    assert parsed.total_rows >= len({e.row for e in parsed.errors})
    assert all(e.row >= 2 and e.field and e.reason for e in parsed.errors)
    return parsed


@PROPERTY
@given(text=st.text() | csv_texts())
@example(text="email\n" + "a" * 200_000 + "\n")  # over csv's field size limit
@example(text='email,first_name\na@example.com,"' + "x" * 200_000)  # a quote left open swallows the file
@example(text="Email,e-mail\na@example.com,b@example.com\n")  # one column twice
@example(text="email,timezone\na@example.com," + "Europe/" * 50 + "\n")  # longer than a file name may be
@example(text="email,first_name\na@example.com,Ann\x00\n")
def test_any_text_parses_or_is_refused_as_a_whole_file_only(text: str) -> None:
    _parse_or_refuse(lambda: parse_csv_text(text))


@PROPERTY
@given(
    data=st.binary(max_size=400)
    | csv_texts().flatmap(
        lambda t: st.sampled_from(["utf-8", "utf-16", "utf-8-sig", "latin-1", "cp1253", "utf-32"]).map(
            lambda encoding: t.encode(encoding, errors="replace")
        )
    )
)
@example(data=b"email\r\na@example.com\r\n\xff\xfe")
@example(data="email\nann@example.com\n".encode("utf-16"))
def test_any_file_parses_or_is_refused_as_a_whole_file_only(data: bytes, scratch: Path) -> None:
    path = scratch / "leads.csv"
    path.write_bytes(data)
    _parse_or_refuse(lambda: parse_csv(path))


one_line = st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=40).map(str.strip)
BAD_VALUES = {  # a field, and values intake must refuse in it
    "email": ["not-an-email", "a@b", "two@@example.com", "x@example.com\r\nBcc: v@evil.example"],
    "first_name": ["Eve\r\nBcc: v@evil.example", "Eve\nX", "Eve\x00", "Eve\x85X", "E" * 201],
    "company": ["Acme\rX", "Acme\u2028X", "A" * 301],
    "timezone": ["Mars/Olympus", "Europe", "Europe/" * 50, "../../etc/passwd"],
    "locale": ["english please", "e", "en-" + "x" * 20],
    "source": ["fair\r\nBcc: v@evil.example", "a\x00b"],
}


@st.composite
def lead_rows(draw: st.DrawFn) -> tuple[list[list[str]], list[bool]]:
    """Rows for the header email,first_name,company,timezone,locale,source: each valid or not, and which."""
    rows: list[list[str]] = []
    valid: list[bool] = []
    for number in range(draw(st.integers(min_value=1, max_value=12))):
        row = [f"Lead{number}@Example.com", draw(one_line), draw(one_line), "", "", draw(one_line)]
        row[3] = draw(st.sampled_from(["", "Europe/Athens", "America/Argentina/Buenos_Aires", "UTC"]))
        row[4] = draw(st.sampled_from(["", "el", "de-AT", "pt_br"]))
        good = draw(st.booleans())
        if not good:
            column = draw(st.sampled_from(list(BAD_VALUES)))
            index = ["email", "first_name", "company", "timezone", "locale", "source"].index(column)
            row[index] = draw(st.sampled_from(BAD_VALUES[column]))
            if draw(st.booleans()):
                row.append("one too many")
        rows.append(row)
        valid.append(good)
    return rows, valid


@PROPERTY
@given(rows_and_validity=lead_rows(), ending=st.sampled_from(["\r\n", "\n"]))
def test_every_valid_row_comes_out_and_every_invalid_row_is_named_by_its_line(
    rows_and_validity: tuple[list[list[str]], list[bool]], ending: str
) -> None:
    rows, valid = rows_and_validity
    out = io.StringIO()
    # a line break in a value is quoted, as spreadsheets do (csv leaves a bare CR unquoted under "\n" endings)
    writer = csv.writer(out, lineterminator=ending, quoting=csv.QUOTE_MINIMAL if ending == "\r\n" else csv.QUOTE_ALL)
    writer.writerow(["email", "first_name", "company", "timezone", "locale", "source"])
    starts: list[int] = []
    line = 2
    for row in rows:
        before = len(out.getvalue())
        writer.writerow(row)
        starts.append(line)
        written = out.getvalue()[before:]
        line += written.count("\n") + written.replace("\r\n", "").count("\r")  # every line break the row holds
    parsed = parse_csv_text(out.getvalue())
    expected = [f"lead{i}@example.com" for i, good in enumerate(valid) if good]
    assert [lead.email for lead in parsed.leads] == expected  # none lost, none invented, in file order
    assert {parsed.rows_of[email][0] for email in expected} == {
        s for s, good in zip(starts, valid, strict=True) if good
    }
    assert {e.row for e in parsed.errors} == {s for s, good in zip(starts, valid, strict=True) if not good}
    assert parsed.total_rows == len(rows)
    for lead, row in zip(parsed.leads, [r for r, good in zip(rows, valid, strict=True) if good], strict=True):
        assert (lead.first_name, lead.company) == (row[1] or None, row[2] or None)  # kept exactly as written
        assert lead.attributes == ({"source": row[5]} if row[5] else {})


# ---------------------------------------------------------------- rule files

LOADERS: dict[str, Callable[[Path], object]] = {
    "cadence": load_cadence,
    "scoring": load_scoring,
    "routing": load_routing,
    "reps": load_roster,
    "recycle": lambda path: load_recycle(path, PROJECT_ROOT / "cadences"),
}
SAMPLES = {
    "cadence": PROJECT_ROOT / "cadences" / "welcome.yaml",
    "scoring": PROJECT_ROOT / "cadences" / "scoring.yaml",
    "routing": PROJECT_ROOT / "cadences" / "routing.yaml",
    "reps": PROJECT_ROOT / "examples" / "reps.yaml",
    "recycle": PROJECT_ROOT / "cadences" / "recycle.yaml",
}
TRICKY_SCALARS = (
    "0",
    "3d",
    "-2d",
    "P3D",
    "09:00",
    "25:61",
    "mon",
    "nurture",
    "click",
    "en",
    "UTC",
    "Europe",
    "Europe/Athens",
    "a@b.example",
    "x" * 300,
    "2020-02-30",
    "*/pricing*",
    "\r\nBcc: x",
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**4000), max_value=10**4000)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(TRICKY_SCALARS)
    | st.dates()
    | st.binary(max_size=10)
)
structures = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | scalars, inner, max_size=4),
)


@functools.cache
def sample_data(kind: str) -> Any:
    return yaml.safe_load(SAMPLES[kind].read_text(encoding="utf-8"))


def load_or_refuse(kind: str, path: Path) -> None:
    """Either the file loads, or CadenceError says which file (and line and field) is wrong. Nothing else."""
    try:
        LOADERS[kind](path)
    except RuleFileError as exc:
        assert exc.lines() and all(line.startswith(str(path)) and line[len(str(path)) + 1 :] for line in exc.lines())


def dump(data: Any) -> str:
    try:
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:  # a structure PyYAML cannot write
        reject()


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> Any:
    """A sample file's data with a few fields replaced, removed or added: reaches the validators deep inside."""
    data = copy.deepcopy(sample_data(kind))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        node = data
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
            if not isinstance(node[key], (dict, list)) or not node[key]:
                break
            node = node[key]
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(list(node)))
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "replace":
                node[key] = draw(structures)
            elif action == "remove":
                del node[key]
            else:
                node[draw(st.text(max_size=8))] = draw(structures)
        elif isinstance(node, list) and node:
            node[draw(st.integers(min_value=0, max_value=len(node) - 1))] = draw(structures)
    return data


kinds = st.sampled_from(list(LOADERS))


@FEWER
@given(kind=kinds, data=st.data())
def test_a_mutated_sample_file_loads_or_says_where_it_is_wrong(kind: str, data: st.DataObject, scratch: Path) -> None:
    path = scratch / f"{kind}.yaml"
    path.write_text(dump(data.draw(mutated(kind), label="file")), encoding="utf-8")
    load_or_refuse(kind, path)


@FEWER
@given(kind=kinds, structure=structures)
def test_any_yaml_structure_loads_or_says_where_it_is_wrong(kind: str, structure: Any, scratch: Path) -> None:
    path = scratch / f"{kind}.yaml"
    path.write_text(dump(structure), encoding="utf-8")
    load_or_refuse(kind, path)


YAML_PIECES = (
    "a",
    ": ",
    "- ",
    "\n",
    "  ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&x ",
    "*x",
    "!!int ",
    "!!float ",
    "? ",
    "'",
    '"',
    "#",
    "|",
    ">",
    "---\n",
    "...\n",
    "<<: ",
    "2020-02-30",
    "0x",
    "9" * 5000,
    "\t",
    "%YAML 1.1\n",
    "!!binary ",
    "!!set ",
    "!!omap ",
    "!!python/object:os.system ",
    "\x00",
    "\ufeff",
    "é",
    "\r",
)
yaml_soup = st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=5), max_size=40).map("".join)


@PROPERTY
@given(kind=kinds, text=st.text() | yaml_soup)
@example(kind="cadence", text="a: &a [*a]\n")  # an alias that holds itself
@example(kind="cadence", text="[" * 5000)  # nested past any reason
@example(kind="cadence", text="a: 2020-02-30\n")  # a date that does not exist
@example(kind="cadence", text="a: !!int nine\n")
def test_any_text_loads_or_says_where_it_is_wrong(kind: str, text: str, scratch: Path) -> None:
    path = scratch / f"{kind}.yaml"
    path.write_text(text, encoding="utf-8")
    load_or_refuse(kind, path)


@PROPERTY
@given(kind=kinds, data=st.binary(max_size=200))
@example(kind="cadence", data=b"name: \xff\xfe\n")
def test_any_bytes_load_or_say_where_they_are_wrong(kind: str, data: bytes, scratch: Path) -> None:
    path = scratch / f"{kind}.yaml"
    path.write_bytes(data)
    load_or_refuse(kind, path)


def test_a_tower_of_aliases_costs_no_more_than_its_text(scratch: Path) -> None:
    """Nine levels of nine aliases each (a billion laughs) load in the time the few lines take to read."""
    text = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
    )
    path = scratch / "laughs.yaml"
    path.write_text(text + "steps: *a9\n")
    started = time.monotonic()
    with pytest.raises(RuleFileError):
        load_cadence(path)
    assert time.monotonic() - started < 2


def test_a_zone_name_the_file_system_refuses_is_just_an_unknown_zone(scratch: Path) -> None:
    """ZoneInfo raises OSError (not ValueError) for a name longer than a file name may be."""
    long_zone = "Europe/" + "x" * 300
    cadence = scratch / "zone.yaml"
    cadence.write_text(
        f"name: z\nversion: 1\ndefault_timezone: {long_zone}\nsteps: [{{id: a, wait: 0, template: a, subject: s}}]\n"
    )
    with pytest.raises(RuleFileError, match="unknown time zone"):
        load_cadence(cadence)
    reps = scratch / "reps.yaml"
    reps.write_text(f"teams: [{{name: a, reps: [{{email: a@b.example, name: A, timezone: {long_zone}}}]}}]\n")
    with pytest.raises(RuleFileError, match=r"teams\[0\]\.reps\[0\]: unknown time zone"):
        load_roster(reps)


def test_anchors_and_merge_keys_still_load_with_their_lines(scratch: Path) -> None:
    path = scratch / "anchors.yaml"
    path.write_text(
        "name: anchors\nversion: 1\nsteps:\n"
        "  - &first {id: one, wait: 0, template: welcome, subject: &subject {en: Hello}}\n"
        "  - <<: *first\n    id: two\n    subject: *subject\n"
        "  - {id: three, wait: 1d, template: tips, subject: Hi, id: again}\n"
    )
    with pytest.raises(RuleFileError) as refused:
        load_cadence(path)
    assert refused.value.lines() == [f"{path}:8: steps[2].id: duplicate key"]  # the merge is no duplicate
    path.write_text(path.read_text().replace(", id: again", ""))
    assert [step.id for step in load_cadence(path).steps] == ["one", "two", "three"]
