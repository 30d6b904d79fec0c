"""`leadloop classify-check`: the human/machine classifier over a labelled corpus, as a confusion matrix."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from starter.cli.terminal import console, fail


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def classify_check(
    corpus: Annotated[
        Path, typer.Argument(help="labelled hits, one JSON object a line (see the README)", show_default=False)
    ],
    ranges: Annotated[
        Path | None, typer.Option("--ranges", help="a ranges file instead of the packaged one", show_default=False)
    ] = None,
) -> None:
    """Run the classifier over a labelled corpus: confusion matrix, machine recall per class, the share of human
    hits called machine, and every line put on the wrong side.

    Nothing is stored. Exits 0 when it ran (even with misses), 1 for a corpus or ranges file it cannot read.
    """
    from leadloop.domain.engagement_corpus import ACTUALS, MACHINE_CLASSES, CorpusError, check_corpus, load_corpus
    from leadloop.domain.ranges import PACKAGED_RANGES, RangesError, load_ranges

    try:
        machine_ranges = load_ranges(ranges or PACKAGED_RANGES)
        cases = load_corpus(corpus)
    except (CorpusError, RangesError) as exc:
        raise fail(str(exc)) from None
    result = check_corpus(cases, machine_ranges)

    matrix = Table(title=f"{corpus.name}: {len(cases)} hits (rows: labelled, columns: called)")
    matrix.add_column("labelled")
    for column in ACTUALS:
        matrix.add_column(column, justify="right")
    matrix.add_column("total", justify="right")
    for actual in ACTUALS:
        row = result.confusion[actual]
        matrix.add_row(actual, *(str(row[called]) for called in ACTUALS), str(result.total(actual)))
    console.print(matrix)

    recall = Table(title="machine hits called machine")
    recall.add_column("class")
    recall.add_column("hits", justify="right")
    recall.add_column("called machine", justify="right")
    recall.add_column("recall", justify="right")
    for cls in MACHINE_CLASSES:
        recall.add_row(cls, str(result.total(cls)), str(result.called_machine(cls)), _share(result.machine_recall(cls)))
    machines = sum(result.total(c) for c in MACHINE_CLASSES)
    caught = sum(result.called_machine(c) for c in MACHINE_CLASSES)
    recall.add_row("all", str(machines), str(caught), _share(result.machine_recall()))
    console.print(recall)
    console.print(
        f"human hits called machine: {result.called_machine('human')} of {result.total('human')} "
        f"({_share(result.human_called_machine())})"
    )

    if not result.misses:
        console.print("misclassified: none")
        return
    misses = Table(title=f"misclassified: {len(result.misses)}")
    misses.add_column("line", justify="right")
    misses.add_column("label")
    misses.add_column("case")
    misses.add_column("verdict")
    misses.add_column("reason", overflow="fold")
    for miss in result.misses:
        verdict = "human" if miss.verdict.human else f"machine ({miss.verdict.machine_class})"
        label = miss.case.label if miss.case.label == "human" else f"machine ({miss.case.machine_class})"
        misses.add_row(
            str(miss.line), label, miss.case.case, f"{verdict} {miss.verdict.confidence:.2f}", miss.verdict.reason
        )
    console.print(misses)
