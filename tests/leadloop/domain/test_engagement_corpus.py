"""The labelled engagement corpus: the classifier's numbers on it, both sides of every class, and the schema's
errors for bad lines."""

import json
from pathlib import Path
from typing import Any

import pytest

from leadloop.domain.engagement_corpus import (
    ACTUALS,
    MACHINE_CLASSES,
    PACKAGED_CORPUS,
    CorpusError,
    check_corpus,
    load_corpus,
    parse_corpus,
)
from leadloop.domain.ranges import PACKAGED_RANGES, load_ranges
from scripts.engagement_corpus import corpus

CASES = load_corpus(PACKAGED_CORPUS)
GOOD = {
    "label": "human",
    "case": "browser_click",
    "kind": "click",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "client_ip": "203.0.113.9",
    "headers": {"Accept": "text/html"},
    "seconds_after_send": 600,
    "url": "https://site.example/pricing",
    "source": "https://developer.mozilla.org/docs/Web/HTTP/Headers/Sec-Fetch-User",
}


def test_the_classifier_on_the_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    result = check_corpus(CASES, load_ranges(PACKAGED_RANGES))
    with capsys.disabled():
        width = max(len(a) for a in ACTUALS)
        print(f"\nengagement corpus: {len(CASES)} hits (rows: labelled, columns: called)")
        print(" " * width, *(f"{a:>8}" for a in ACTUALS))
        for actual in ACTUALS:
            print(f"{actual:<{width}}", *(f"{result.confusion[actual][c]:>8}" for c in ACTUALS))
        recall = {c: f"{result.machine_recall(c):.1%}" for c in MACHINE_CLASSES}
        print(f"machine recall {result.machine_recall():.1%} {recall}")
        print(
            f"human called machine {result.human_called_machine():.1%}; misses at lines",
            [m.line for m in result.misses],
        )
    recall, false_machine = result.machine_recall(), result.human_called_machine()
    assert recall is not None and recall >= 0.95
    assert false_machine is not None and false_machine <= 0.02
    # machines called machine are called the right kind of machine
    for cls in MACHINE_CLASSES:
        assert result.confusion[cls][cls] == result.called_machine(cls), cls


def test_every_class_is_on_both_sides_of_the_line() -> None:
    machines = {case.machine_class for _, case in CASES if case.label == "machine"}
    look_alikes = {case.resembles for _, case in CASES if case.resembles is not None}
    assert machines == set(MACHINE_CLASSES)
    assert look_alikes == set(MACHINE_CLASSES)
    assert len(CASES) >= 300
    for cls in MACHINE_CLASSES:
        assert sum(1 for _, c in CASES if c.machine_class == cls) >= 30, cls
    scenarios = {case.case for _, case in CASES}
    for issue_case in ("two_tabs", "apple_network_person", "gmail_image_proxy_open", "yahoo_image_open"):
        assert issue_case in scenarios
    assert {case.kind for _, case in CASES} == {"open", "click", "visit"}


def test_every_case_cites_its_documentation() -> None:
    sources = {case.source for _, case in CASES}
    assert len(sources) >= 12
    assert all(source.startswith(("https://", "http://")) for source in sources)


def test_the_shipped_file_is_what_the_script_writes() -> None:
    written = [json.loads(line) for line in PACKAGED_CORPUS.read_text(encoding="utf-8").splitlines()]
    assert written == corpus(), "run: python scripts/engagement_corpus.py"


def line(**changes: Any) -> str:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{not json", "line 2: not JSON"),
        ("[1, 2]", "line 2: must be a JSON object"),
        (line(label="robot"), "line 2: label: Input should be 'human' or 'machine'"),
        (line(label="machine"), "line 2: class: a machine hit needs its class"),
        (line(**{"class": "gateway"}), "line 2: class: only machine hits have a class"),
        (line(label="machine", **{"class": "satellite"}), "line 2: class: Input should be"),
        (line(kind="hover"), "line 2: kind: Input should be"),
        (line(source="Microsoft's docs"), "line 2: source: must be the http(s) address"),
        (line(source=None), "line 2: source: Field required"),
        (line(seconds_after_send=-1), "line 2: seconds_after_send: Input should be greater than or equal to 0"),
        (line(earlier_hits=[{"seconds": 900, "url": "https://x.example/"}]), "is not earlier than this one"),
        (line(clicks=3), "line 2: clicks: Extra inputs are not permitted"),
        (line(headers={"accept": 1}), "line 2: headers.accept: Input should be a valid string"),
    ],
)
def test_a_bad_line_is_named_with_its_field(text: str, error: str) -> None:
    with pytest.raises(CorpusError) as raised:
        parse_corpus([line(), text, line()], "mine.jsonl")
    assert str(raised.value).startswith("mine.jsonl, line 2") and error.split(": ", 1)[-1] in str(raised.value)


def test_blank_lines_are_skipped_and_an_empty_corpus_is_an_error(tmp_path: Path) -> None:
    cases = parse_corpus(["", line(), "  ", line(label="machine", **{"class": "cloud"})])
    assert [number for number, _ in cases] == [2, 4]
    with pytest.raises(CorpusError, match="no cases"):
        parse_corpus(["", " "], "empty.jsonl")
    with pytest.raises(CorpusError, match="cannot be read"):
        load_corpus(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b"\xff\xfe{}")
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_corpus(tmp_path / "latin1.jsonl")


def test_a_case_becomes_the_hit_the_tracking_links_see() -> None:
    _, case = parse_corpus(
        [line(earlier_hits=[{"seconds": 598.8, "url": "https://site.example/demo"}], links_in_message=4)]
    )[0]
    hit = case.hit()
    assert hit.sent_at is not None and (hit.at - hit.sent_at).total_seconds() == 600
    assert hit.headers == {"accept": "text/html"} and hit.links_in_message == 4
    assert [(h.kind, h.url, (hit.at - h.at).total_seconds()) for h in hit.message_hits] == [
        ("click", "https://site.example/demo", pytest.approx(1.2))
    ]
