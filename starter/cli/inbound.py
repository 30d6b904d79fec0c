"""Inbound mail for operators: what was received and what leadloop made of it (`list`, `show`), and `classify`,
which shows the verdict on one file and stores nothing."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from starter.cli.connections import in_session
from starter.cli.terminal import console, fail


def inbound_classify(
    file: Annotated[Path, typer.Argument(help="a raw message (.eml, RFC 5322)", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Classify one inbound message (reply, auto-reply, bounce, complaint, unsubscribe) and say why.

    Nothing is stored and no lead is touched: it shows what leadloop would make of the message.
    """
    from leadloop.domain.inbound import classify

    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None
    verdict = classify(raw)
    if as_json:
        print(json.dumps(verdict.model_dump(mode="json"), ensure_ascii=False))
        return
    console.print(f"kind: {verdict.kind} ({verdict.confidence} confidence)")
    shown = {
        "answers": verdict.answers,
        "lead email": verdict.lead_email,
        "status": verdict.status,
        "return date": verdict.return_date.isoformat() if verdict.return_date else None,
        "left the company": "yes" if verdict.left_company else None,
        "contact instead": verdict.contact_hint,
        "challenge-response": "yes (ignored)" if verdict.challenge else None,
    }
    for label, value in shown.items():
        if value is not None:
            console.print(f"{label}: {value}")
    if verdict.reply_text and verdict.kind in ("human_reply", "unsubscribe_request"):
        console.print("reply:")
        for line in verdict.reply_text.splitlines():
            console.print(f"  {line}")
    console.print("evidence:")
    for reason in verdict.evidence:
        console.print(f"  - {reason}")


def inbound_list(
    kind: Annotated[str | None, typer.Option("--kind", help="only this kind (human_reply, hard_bounce, ...)")] = None,
    unmatched: Annotated[bool, typer.Option("--unmatched", help="only messages no lead was found for")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many, newest first")] = 100,
) -> None:
    """Inbound messages, newest first: when, where from, kind, the lead and send they answer, status."""
    from leadloop.domain.inbound import INBOUND_KINDS
    from leadloop.services.inbound import list_inbound  # sqlalchemy: see connections.py

    if kind is not None and kind not in INBOUND_KINDS:
        raise fail(f"unknown kind {kind!r}; one of: {', '.join(INBOUND_KINDS)}")
    rows = in_session(lambda session: list_inbound(session, kind=kind, unmatched=unmatched, limit=limit))
    table = Table(title="inbound messages")
    for column in ("id", "received (UTC)", "source", "kind", "lead", "answers", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id),
            f"{row.received_at:%Y-%m-%d %H:%M}",
            row.source,
            row.kind or "not classified",
            str(row.lead_id) if row.lead_id is not None else "unmatched",
            row.outbox_key or "",
            row.status,
        )
    console.print(table)


def inbound_show(inbound_id: Annotated[int, typer.Argument(help="the id `leadloop inbound list` shows")]) -> None:
    """One inbound message: what leadloop read from it, why it matched its lead (or did not), and the evidence."""
    from leadloop.services.inbound import get_inbound  # sqlalchemy: see connections.py

    row = in_session(lambda session: get_inbound(session, inbound_id))
    if row is None:
        raise fail(f"no inbound message {inbound_id}")
    shown = {
        "id": str(row.id),
        "received (UTC)": f"{row.received_at:%Y-%m-%d %H:%M:%S}",
        "source": f"{row.source} ({row.source_key})",
        "message id": row.message_id,
        "kind": row.kind or "not classified",
        "lead": str(row.lead_id) if row.lead_id is not None else "unmatched",
        "answers": row.outbox_key,
        "matched by": row.match_reason,
        "return date": row.return_date.isoformat() if row.return_date else None,
        "status": row.status,
        "size": f"{row.raw_size} bytes" + ("" if row.raw is not None else " (body dropped after the retention period)"),
    }
    for label, value in shown.items():
        if value:
            console.print(f"{label}: {value}")
    evidence = row.evidence or {}
    if evidence:
        console.print("evidence:")
        for key, value in evidence.items():
            console.print(f"  {key}: {value}")
