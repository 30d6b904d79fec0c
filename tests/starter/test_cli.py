"""The `leadloop` command as a marketer runs it: cadence check and preview, and enrol's refusals."""

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from leadloop import PROJECT_ROOT

LEADLOOP = str(Path(sys.executable).parent / "leadloop")


def leadloop(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEADLOOP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})},
    )


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, str]:
    """A copy of the sample cadences and templates to break."""
    shutil.copytree(PROJECT_ROOT / "cadences", tmp_path / "cadences")
    shutil.copytree(PROJECT_ROOT / "templates" / "email", tmp_path / "templates")
    return {"LEADLOOP_CADENCE_DIR": str(tmp_path / "cadences"), "LEADLOOP_TEMPLATE_DIR": str(tmp_path / "templates")}


def test_check_passes_on_the_samples() -> None:
    result = leadloop("cadence", "check")
    assert result.returncode == 0, result.stderr
    assert "welcome" in result.stdout and "4 steps, 30 renders" in result.stdout


def test_check_reports_file_line_and_field(workspace: dict[str, str]) -> None:
    path = Path(workspace["LEADLOOP_CADENCE_DIR"]) / "welcome.yaml"
    line = path.read_text().splitlines().index("    wait: 2d") + 1
    path.write_text(path.read_text().replace("    wait: 2d", "    wait: -2d\n    colour: blue"))
    result = leadloop("cadence", "check", env=workspace)
    assert result.returncode == 1
    assert f"{path}:{line}: steps[1].wait: wait '-2d' is negative" in result.stderr
    assert f"{path}:{line + 1}: steps[1].colour: unknown field" in result.stderr


def test_check_reports_bad_scoring_and_routing_files(workspace: dict[str, str]) -> None:
    folder = Path(workspace["LEADLOOP_CADENCE_DIR"])
    scoring = folder / "scoring.yaml"
    scoring.write_text(scoring.read_text().replace("half_life: 14d", "half_life: 14d\nbonus: 5"))
    routing = folder / "routing.yaml"
    routing.write_text(routing.read_text() + "  - name: late\n    when: {country: [FR]}\n    team: emea\n")
    result = leadloop("cadence", "check", env=workspace)
    assert result.returncode == 1
    assert f"{scoring}:7: bonus: unknown field" in result.stderr
    assert "rule 'late' can never match" in result.stderr and str(routing) in result.stderr
    assert "ok" in result.stdout and "welcome" in result.stdout  # the good files still pass


def test_a_bant_rule_that_scores_presence_is_refused_and_nothing_enrolled(
    workspace: dict[str, str], tmp_path: Path
) -> None:
    """`budget: 10` gave `budget: none` ten points: check and enrol refuse it, naming file and line."""
    scoring = Path(workspace["LEADLOOP_CADENCE_DIR"]) / "scoring.yaml"
    text = scoring.read_text()
    assert "    budget: {approved: 10, planned: 5}\n" in text
    scoring.write_text(text.replace("    budget: {approved: 10, planned: 5}\n", "    budget: 10\n"))
    line = scoring.read_text().splitlines().index("    budget: 10") + 1
    expected = f"{scoring}:{line}: profile.fields.budget: 10 points for any budget scores 'budget: none' too"
    check = leadloop("cadence", "check", env=workspace)
    assert check.returncode == 1 and expected in check.stderr
    assert "welcome.yaml: 'welcome'" in check.stdout  # the cadences still pass
    env = {
        **workspace,
        "LEADLOOP_SCORING_FILE": str(scoring),
        "LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'l.db'}",
    }
    assert leadloop("db", "upgrade", env=env).returncode == 0
    enrol = leadloop("enroll", "--email", "lucia@example.es", env=env)
    assert enrol.returncode == 1 and expected in enrol.stderr
    with sqlite3.connect(tmp_path / "l.db") as db:
        assert db.execute("select count(*) from leads").fetchone() == (0,)


def test_reps_import_refuses_a_bad_roster_and_changes_nothing(tmp_path: Path) -> None:
    env = {"LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"}
    assert leadloop("db", "upgrade", env=env).returncode == 0
    bad = tmp_path / "reps.yaml"
    bad.write_text("teams:\n  - name: a\n    reps: []\n  - name: b\n    reps:\n      - {email: x@y.example, name: X}\n")
    result = leadloop("reps", "import", str(bad), env=env)
    assert result.returncode == 1 and "team 'a' is empty" in result.stderr
    assert "no reps yet" in leadloop("reps", "list", env=env).stdout
    good = leadloop("reps", "import", str(PROJECT_ROOT / "examples" / "reps.yaml"), env=env)
    assert good.returncode == 0 and "6 rep(s) added" in good.stdout, good.stderr
    listed = leadloop("reps", "list", env={**env, "COLUMNS": "200"}).stdout
    assert "Νίκος Αλεξίου" in listed and "0 / 25" in listed
    again = leadloop("reps", "import", str(PROJECT_ROOT / "examples" / "reps.yaml"), env=env)
    assert "0 rep(s) added, 0 updated" in again.stdout


def test_event_for_an_unknown_lead_is_refused(tmp_path: Path) -> None:
    env = {"LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"}
    assert leadloop("db", "upgrade", env=env).returncode == 0
    result = leadloop("event", "click", "42", env=env)
    assert result.returncode == 1 and "no lead 42" in result.stderr
    bad_url = leadloop("event", "click", "42", "--url", "javascript:alert(1)", env=env)
    assert bad_url.returncode == 1 and "http(s)" in bad_url.stderr


def test_check_catches_template_syntax_errors_and_undefined_variables(workspace: dict[str, str]) -> None:
    templates = Path(workspace["LEADLOOP_TEMPLATE_DIR"])
    (templates / "tips" / "de.html.j2").write_text(
        '{% extends "_layout/base.html.j2" %}\n{% block body %}\n<p>{{ lead.first_name </p>\n{% endblock %}\n'
    )
    (templates / "checkin" / "pl.txt.j2").write_text(
        '{% extends "_layout/base.txt.j2" %}\n{% block body %}\nCześć {{ lead.frist_name }}\n{% endblock %}\n'
    )
    result = leadloop("cadence", "check", env=workspace)
    assert result.returncode == 1
    assert f"{templates / 'tips' / 'de.html.j2'}:3: step 'tips' (de): TemplateSyntaxError" in result.stderr
    assert f"{templates / 'checkin' / 'pl.txt.j2'}:3: step 'checkin' (pl): UndefinedError" in result.stderr
    assert "frist_name" in result.stderr


def test_check_catches_a_template_missing_for_locale_and_default(workspace: dict[str, str]) -> None:
    templates = Path(workspace["LEADLOOP_TEMPLATE_DIR"])
    for part in ("en.txt.j2", "en.html.j2"):
        (templates / "case-study" / part).unlink()
    result = leadloop("cadence", "check", env=workspace)
    assert result.returncode == 1
    cadence = Path(workspace["LEADLOOP_CADENCE_DIR"]) / "welcome.yaml"
    line = cadence.read_text().splitlines().index("    template: case-study") + 1
    assert f"welcome.yaml:{line}: steps[2].template: no template 'case-study' for locale(s) en" in result.stderr


def test_check_fails_on_a_body_without_a_subject_in_its_language(workspace: dict[str, str]) -> None:
    """A Spanish body with no Spanish subject would go out under the English subject: check names file, line,
    step and locale, and touches nothing."""
    cadence = Path(workspace["LEADLOOP_CADENCE_DIR"]) / "welcome.yaml"
    text = cadence.read_text()
    broken = text.replace("      es: \"{{ lead.first_name or 'Hola' }}, ¿es buen momento?\"\n", "").replace(
        "    pl: \"{{ lead.first_name or 'Dzień dobry' }}, osobista oferta, zanim ucichniemy\"\n", ""
    )
    assert broken.count("\n") == text.count("\n") - 2
    cadence.write_text(broken)
    before = {p: p.read_bytes() for p in Path(workspace["LEADLOOP_CADENCE_DIR"]).parent.rglob("*") if p.is_file()}
    result = leadloop("cadence", "check", env=workspace)
    assert result.returncode == 1
    lines = broken.splitlines()
    step_line = lines.index("  - id: checkin") + 4  # its `subject:` key
    big_bang_line = lines.index("  subject:") + 1
    assert (
        f"{cadence}:{step_line}: steps[3].subject: step 'checkin' has a body template in 'es' "
        "(checkin/es.*.j2) but no subject in 'es': add subject.es"
    ) in result.stderr
    assert f"{cadence}:{big_bang_line}: big_bang.subject: step 'big-bang' has a body template in 'pl'" in result.stderr
    assert "welcome.yaml: 'welcome'" not in result.stdout and "ok" in result.stdout  # the other files still pass
    after = {p: p.read_bytes() for p in Path(workspace["LEADLOOP_CADENCE_DIR"]).parent.rglob("*") if p.is_file()}
    assert after == before


def test_preview_of_a_recycle_cadence_speaks_the_leads_language(tmp_path: Path) -> None:
    """The lead a rep sends back to the influencer cadence reads Spanish subjects over its Spanish bodies."""
    lead = tmp_path / "lead.json"
    lead.write_text('{"email": "lucia@example.es", "first_name": "Lucía", "locale": "es", "company": "Olivos SL"}')
    result = leadloop("cadence", "preview", "influencer", "--lead", str(lead), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "02-checkin.subject.txt").read_text() == "¿Quién más debería ver esto?\n"
    body = (tmp_path / "out" / "02-checkin.txt").read_text()
    assert "¿Es buen momento para hablar de cómo gestiona Olivos SL" in body


def test_a_missing_locale_falls_back_to_the_default(workspace: dict[str, str], tmp_path: Path) -> None:
    templates = Path(workspace["LEADLOOP_TEMPLATE_DIR"])
    for part in ("hu.txt.j2", "hu.html.j2"):
        (templates / "tips" / part).unlink()
    lead = tmp_path / "lead.json"
    lead.write_text(
        '{"email": "eszter@example.hu", "first_name": "Eszter", "locale": "hu", "company": "Győri Gépgyár"}'
    )
    assert leadloop("cadence", "check", env=workspace).returncode == 0
    result = leadloop(
        "cadence", "preview", "welcome", "--lead", str(lead), "--out", str(tmp_path / "out"), env=workspace
    )
    assert result.returncode == 0, result.stderr
    assert "Kedves Eszter" in (tmp_path / "out" / "01-welcome.txt").read_text()
    assert "Three things teams at companies like Győri Gépgyár" in (tmp_path / "out" / "02-tips.txt").read_text()


def test_preview_writes_every_step(tmp_path: Path) -> None:
    result = leadloop("cadence", "preview", "welcome", "--lead", "examples/lead.json", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 15  # four steps and the big bang, three files each
    assert "05-big-bang.html" in files
    assert "Μαρία, μια προσωπική προσφορά" in (tmp_path / "05-big-bang.subject.txt").read_text()
    assert (tmp_path / "01-welcome.subject.txt").read_text() == "Καλώς ήρθατε, Μαρία\n"
    html = (tmp_path / "02-tips.html").read_text()
    assert "Ακρόπολις Λογισμικό" in html and "<html" in html


def test_preview_of_an_unknown_cadence_fails_clearly(tmp_path: Path) -> None:
    result = leadloop("cadence", "preview", "nope", "--lead", "examples/lead.json", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "no cadence named 'nope'" in result.stderr


def test_enroll_refuses_a_csv_without_an_email_column(tmp_path: Path) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("name,company\nAnn,Acme\n")
    result = leadloop("enroll", str(csv), "--cadence", "welcome", env={"LEADLOOP_TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert result.returncode == 1
    assert "no 'email' column" in result.stderr


def test_reject_with_an_unknown_reason_and_empty_update_are_refused(tmp_path: Path) -> None:
    env = {"LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"}
    result = leadloop("reject", "1", "--reason", "too_expensive", env=env)
    assert result.returncode == 1 and "unknown reason 'too_expensive'" in result.stderr
    assert "no_budget" in result.stderr
    assert leadloop("db", "upgrade", env=env).returncode == 0
    empty = leadloop("lead", "update", "1", env=env)
    assert empty.returncode == 1 and "nothing to change" in empty.stderr
    missing = leadloop("lead", "update", "1", "--email", "a@b.example", env=env)
    assert missing.returncode == 1 and "no lead 1" in missing.stderr


def test_recycle_file_naming_an_unknown_cadence_fails_at_check_time(workspace: dict[str, str]) -> None:
    recycle = Path(workspace["LEADLOOP_CADENCE_DIR"]) / "recycle.yaml"
    recycle.write_text(recycle.read_text().replace("cadence: influencer", "cadence: influencers"))
    result = leadloop("cadence", "check", env=workspace)
    assert result.returncode == 1
    assert "reasons.no_authority.cadence: cadence 'influencers' does not load" in result.stderr
    line = (
        recycle.read_text().splitlines().index(next(x for x in recycle.read_text().splitlines() if "influencers" in x))
        + 1
    )
    assert f"{recycle}:{line}:" in result.stderr


def test_dispositions_lists_recorded_decisions(tmp_path: Path) -> None:
    import asyncio

    from leadloop.infra.db import DispositionRow, Lead, make_engine, make_sessionmaker

    url = f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    env = {"LEADLOOP_DATABASE_URL": url}
    assert leadloop("db", "upgrade", env=env).returncode == 0

    async def seed() -> None:
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as session:
            session.add(Lead(id=5, email="a@b.example", attributes={}))
            await session.flush()
            row = DispositionRow(
                key="lead-5.c0.a1",
                lead_id=5,
                cycle=0,
                rep_id=None,
                action="reject",
                reason="no_budget",
                note="Q3",
                outcome="back to nurture",
                source="page",
            )
            session.add(row)
            await session.commit()
        await engine.dispose()

    asyncio.run(seed())
    listed = leadloop("dispositions", "--reason", "no_budget", env=env).stdout
    assert "no_budget" in listed and "back to nurture" in listed and "Q3" in listed
    assert "no_budget" not in leadloop("dispositions", "--reason", "bad_fit", env=env).stdout


def test_the_command_keeps_its_exit_codes_and_flushes_its_output(tmp_path: Path) -> None:
    """`leadloop` leaves with os._exit (past the SDK's teardown abort): the code and every line still arrive."""
    ok = leadloop("--help")
    assert ok.returncode == 0 and "enroll" in ok.stdout
    unknown = leadloop("no-such-command")
    assert unknown.returncode == 2 and "No such command" in unknown.stderr
    preview = leadloop("cadence", "preview", "nope", "--lead", "examples/lead.json", "--out", str(tmp_path))
    assert preview.returncode == 1 and "no cadence named 'nope'" in preview.stderr
    many = leadloop("cadence", "check")
    assert many.returncode == 0 and many.stdout.count("\n") >= 3, many.stdout
