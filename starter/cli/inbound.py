"""Inbound mail by hand: `leadloop inbound classify FILE.eml` shows a verdict and its evidence, storing nothing."""

import json
from pathlib import Path
from typing import Annotated

import typer

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
