"""`leadloop report` draws names as plain text: a rep called `Marta $$ López` is a label, not TeX."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from leadloop.infra.db import Rep, make_engine, make_sessionmaker
from leadloop.infra.settings import get_settings
from leadloop.reporting.charts import chart_reps
from leadloop.reporting.models import RepStats, SalesStats
from starter.cli import app
from tests.conftest import free_port
from tests.leadloop.reporting.test_report import seed

MARTA = "Marta $$ López"  # mathtext reads $...$ as a formula; `$$` alone is an empty one, and it crashed


@pytest.fixture
def dollar_rep(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The report's hand-computed dataset, with Marta's name as a sales tool might export it."""

    async def prepare() -> None:
        engine = make_engine(database_url)
        try:
            await seed(make_sessionmaker(engine))
            async with engine.begin() as conn:
                await conn.execute(update(Rep).where(Rep.name == "Marta López").values(name=MARTA))
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    monkeypatch.setenv("LEADLOOP_DATABASE_URL", database_url)
    monkeypatch.setenv("LEADLOOP_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def test_a_rep_named_with_dollars_is_drawn_as_written(dollar_rep: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report_files" / "reps.png").stat().st_size > 0
    assert f"<td>{MARTA}</td>" in out.read_text(encoding="utf-8")


def test_dollar_signs_in_a_chart_label_are_drawn() -> None:
    """The dollars are ink on the chart (plain text), not swallowed as formula delimiters."""

    def drawn(name: str) -> bytes:
        return chart_reps(
            SalesStats(reps=[RepStats(rep_id=2, rep=name, team="south-east", handovers=2, accepted=1, rejected=1)])
        )

    assert drawn(MARTA) != drawn("Marta  López")
