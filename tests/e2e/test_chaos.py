"""The chaos run in small (`make chaos` is the full one): 30 leads through a 3-step cadence on the real dev
server, worker, HTTP service and SMTP server as their own processes, while the worker is killed -9 twice,
the HTTP service is killed -9 under clicks, the dev server is stopped and restarted on its file and the SMTP
server goes down. Nothing lost, nothing twice, nothing stuck."""

import pytest

from bench.chaos import run_chaos

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


async def test_nothing_lost_or_sent_twice_while_the_parts_are_killed() -> None:
    report = await run_chaos(leads=30, steps=3, step_seconds=6, smtp_outage=5, clicks_per_s=20, within=400)
    checks, figures = report["checks"], report["figures"]
    assert checks == dict.fromkeys(checks, 0), report
    assert report["ok"]
    assert figures["emails expected"] == 90
    # one may be missing only if marked uncertain (a worker killed between the data and the reply): never resent
    assert figures["emails delivered"] + figures["emails missing, marked uncertain (never resent)"] == 90
    assert figures["clicks answered 302"] > 0 and figures["clicks stored"] >= figures["clicks answered 302"]
    assert figures["workflows"] == {"completed: cadence_complete": 30}
    timeline = "\n".join(report["timeline"])
    for happened in (
        "worker killed -9 (first)",
        "worker killed -9 (second)",
        "HTTP service killed -9",
        "dev server restarted on the same database file",
        "SMTP server up",
    ):
        assert happened in timeline
