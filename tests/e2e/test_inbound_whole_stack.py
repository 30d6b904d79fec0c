"""The whole stack hears back: real dev server, real worker process, the SMTP catcher, `leadloop enroll` and
`leadloop reps import`. Leads get the welcome email; the mail that comes back (built here as the raw RFC 5322
messages mail servers deliver, each answering the welcome's Message-ID) goes through the inbound pipeline
(delivered into a real IMAP mailbox, Debian's dovecot, and read by `leadloop inbox --once`: classify, match,
store, signal, then flag): a reply reaches the rep in her words and no further nurture email
goes out, an out-of-office pauses the drip until its return date, a hard bounce and a complaint suppress."""

import asyncio
import email
import email.policy
import email.utils
import json
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from leadloop.domain.mail import email_hash
from leadloop.domain.models import LeadNurtureResult, LeadState
from leadloop.infra.db import InboundMessage, Suppression, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from starter.mailbox import serve_mailbox
from tests.conftest import client_address, free_port, with_pydantic
from tests.dovecot import Dovecot
from tests.e2e.test_drip_whole_stack import BIN, run, start_worker
from tests.leadloop.services.test_imap_reader import STORED

SECRET = "an-e2e-test-secret-of-32-bytes++"
ZONE = "Europe/Athens"
#: a cadence day lasts three seconds; the second email follows the welcome after three days (nine seconds): each
#: message goes through a `leadloop inbox --once` process of its own, a second or two each
SCALE = 28800
FAST = f"""\
name: fast
version: 1
default_locale: en
default_timezone: {ZONE}
send_window: {{days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}}
auto_reply_pause: 7d
steps:
  - {{id: welcome, wait: 0, template: welcome, subject: "Welcome {{{{ lead.first_name }}}}"}}
  - {{id: tips, wait: 3d, template: tips, subject: "Tips"}}
  - {{id: checkin, wait: 3d, template: checkin, subject: "Is now a good time?"}}
"""
ROUTING = "version: 1\nrules:\n  - {name: all, team: south}\n"
REPS = """\
teams:
  - name: south
    sla: 4h
    reps:
      - {email: nikos@sales.example, name: Nikos Alexiou, timezone: Europe/Athens}
"""
LEADS = {
    "reply": "maria@example.gr",
    "away": "ann@contoso.example",
    "bounce": "gone@example.com",
    "complaint": "annoyed@yahoo.example",
}


def messages(folder: Path) -> list[tuple[float, EmailMessage]]:
    """Every caught message with the moment it was kept (its file's time)."""
    return [
        (p.stat().st_mtime, email.message_from_bytes(p.read_bytes(), policy=email.policy.default))  # type: ignore[misc]
        for p in sorted(folder.glob("*.eml"))
    ]


def to(folder: Path, address: str) -> list[tuple[float, EmailMessage]]:
    return [(at, m) for at, m in messages(folder) if address in str(m["To"])]


async def mail_to(folder: Path, address: str, count: int = 1, within: float = 60) -> list[tuple[float, EmailMessage]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        found = to(folder, address)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} mail(s) to {address} within {within}s")


def reply(welcome: EmailMessage, text: str) -> bytes:
    """Her answer from her mail client: In-Reply-To the welcome, the original quoted below her words."""
    msg = EmailMessage()
    msg["From"], msg["To"] = f"Μαρία <{LEADS['reply']}>", str(welcome["From"])
    msg["Subject"] = f"Re: {welcome['Subject']}"
    msg["Message-ID"], msg["Date"] = "<reply-1@mail.example.gr>", email.utils.format_datetime(datetime.now(UTC))
    msg["In-Reply-To"] = msg["References"] = str(welcome["Message-ID"])
    quoted = "\n".join(f"> {line}" for line in welcome.get_body(("plain",)).get_content().splitlines()[:5])  # type: ignore[union-attr]
    msg.set_content(f"{text}\n\nOn Tuesday, {welcome['From']} wrote:\n{quoted}\n")
    return msg.as_bytes()


def out_of_office(welcome: EmailMessage, back: date) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = f"Ann Lee <{LEADS['away']}>", str(welcome["From"])
    msg["Subject"] = f"Automatic reply: {welcome['Subject']}"
    msg["Message-ID"], msg["Auto-Submitted"] = "<ooo-1@contoso.example>", "auto-replied"
    msg["In-Reply-To"] = msg["References"] = str(welcome["Message-ID"])
    msg.set_content(
        f"Thank you for your message. I am out of the office until {back.day} {back:%B %Y} with limited access "
        "to email.\n"
    )
    return msg.as_bytes()


def hard_bounce(welcome: EmailMessage, to: str = LEADS["bounce"], status: str = "5.1.1") -> bytes:
    """A Postfix DSN (RFC 3464) naming the welcome in its returned headers."""
    why = "user unknown" if status == "5.1.1" else "message refused by the recipient's policy"
    return (
        "From: MAILER-DAEMON@mx.example.com\r\nTo: hello@leadloop.example\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{status}@mx.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.com.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {to}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} {why}\r\n\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {welcome['Message-ID']}\r\n"
        f"To: {to}\r\n\r\n--b--\r\n"
    ).encode()


def complaint(welcome: EmailMessage) -> bytes:
    """A Yahoo feedback-loop report (ARF, RFC 5965) with the welcome attached."""
    return (
        "From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>\r\nTo: fbl@leadloop.example\r\n"
        f"Subject: FW: {welcome['Subject']}\r\nMessage-ID: <arf-1@fbl.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"\r\n\r\n'
        "--ARF\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        "--ARF\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        "User-Agent: Yahoo!-Mail-Feedback/2.0\r\nVersion: 1\r\n\r\n"
        "--ARF\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
        f"From: {welcome['From']}\r\nTo: {LEADS['complaint']}\r\nSubject: {welcome['Subject']}\r\n"
        f"Message-ID: {welcome['Message-ID']}\r\n\r\nWelcome.\r\n--ARF--\r\n"
    ).encode()


@pytest.mark.e2e
async def test_replies_out_of_office_bounces_and_complaints_act_on_the_leads(
    dev_env: WorkflowEnvironment, dovecot: Dovecot, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    rules = tmp_path / "cadences"
    rules.mkdir()
    (rules / "fast.yaml").write_text(FAST)
    (rules / "routing.yaml").write_text(ROUTING)
    (tmp_path / "reps.yaml").write_text(REPS)
    mail = tmp_path / "mail"
    smtp_port = free_port()
    mailbox = await serve_mailbox(mail, "127.0.0.1", smtp_port)
    env = {
        **os.environ,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
        "LEADLOOP_TEMPORAL_NAMESPACE": "e2e-inbound",
        "LEADLOOP_TASK_QUEUE": f"e2e-{uuid.uuid4()}",
        "LEADLOOP_DATABASE_URL": db_url,
        "LEADLOOP_SMTP_PORT": str(smtp_port),
        "LEADLOOP_CADENCE_DIR": str(rules),
        "LEADLOOP_ROUTING_FILE": str(rules / "routing.yaml"),
        "LEADLOOP_TIME_SCALE": str(SCALE),
        "LEADLOOP_SECRET_KEY": SECRET,
        "COLUMNS": "200",
        **dovecot.env("none"),
    }
    csv = tmp_path / "leads.csv"
    csv.write_text("email,first_name,timezone\n" + "".join(f"{a},{n.title()},{ZONE}\n" for n, a in LEADS.items()))
    code, out, err = await run(str(BIN / "leadloop"), "reps", "import", str(tmp_path / "reps.yaml"), env=env)
    assert code == 0 and "1 rep(s) added" in out, err
    worker = await start_worker(env, tmp_path / "worker.log")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    client = await connect_namespace(dev_env, "e2e-inbound")

    async def deliver(*raws: bytes) -> None:
        """The messages land in the IMAP mailbox; one `leadloop inbox --once` reads them (store, signal, flag)."""
        uids = [dovecot.append(raw) for raw in raws]
        code, out, err = await run(str(BIN / "leadloop"), "inbox", "--once", env=env)
        assert code == 0, out + err
        flags = dovecot.flags()
        assert all(STORED in flags[uid] for uid in uids)  # flagged once stored and signalled, never before

    async def state(lead_id: int) -> LeadState:
        result: LeadState = await client.get_workflow_handle(f"lead-{lead_id}").query("state", result_type=LeadState)
        return result

    try:
        code, _, err = await run(str(BIN / "leadloop"), "enroll", str(csv), "--cadence", "fast", env=env)
        assert code == 0, err
        welcomes = {name: (await mail_to(mail, address))[0] for name, address in LEADS.items()}
        ids = {name: number for number, name in enumerate(LEADS, start=1)}

        # what came back, all in the mailbox before one pass of the reader: an out-of-office back in five days
        # and a policy block for one lead, her reply for another, a hard bounce and a complaint for two more
        sent_at, away = welcomes["away"]
        _, welcome = welcomes["reply"]
        back = (datetime.now(ZoneInfo(ZONE)) + timedelta(days=5)).date()
        await deliver(
            out_of_office(away, back),
            hard_bounce(away, LEADS["away"], "5.7.1"),
            reply(welcome, "Yes, call me on Tuesday. Μαρία"),
            hard_bounce(welcomes["bounce"][1]),
            complaint(welcomes["complaint"][1]),
        )

        # the out-of-office: nothing until the business day after her return, then the drip goes on
        paused = await until(lambda: state(ids["away"]), lambda s: s.back_at is not None)
        assert paused.next_send_at is not None and paused.stage == "nurturing"
        assert paused.back_at is not None and paused.back_at.astimezone(ZoneInfo(ZONE)).date() > back
        assert "out of office" in paused.waiting_for
        # the policy block: counted and shown, her address kept (the refusal is about our sending)
        shown = await until(lambda: state(ids["away"]), lambda s: s.inbound.policy_block == 1)
        assert shown.stage == "nurturing"
        code, out, err = await run(str(BIN / "leadloop"), "status", str(ids["away"]), env=env)
        assert code == 0, err
        assert "inbound: auto reply 1, policy block 1" in out and "not the address" in out, out

        # her reply, "yes, call me on Tuesday": the drip stops, the rep reads her words
        (_, note), *later = await mail_to(mail, "nikos@sales.example", within=30)  # later: the SLA's reminders
        assert str(note["Subject"]).endswith("(replied)") and all("Reminder" in str(m["Subject"]) for _, m in later)
        body = note.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "Yes, call me on Tuesday. Μαρία" in body and "wrote:" not in body  # her words, the quote stripped
        assert str(welcome["Message-ID"]) in body and "<reply-1@mail.example.gr>" in body
        assert (await state(ids["reply"])).stage == "with_sales"

        # the tips email was due three cadence days (9 s) after the welcome; it waits at least five days (15 s)
        (tips_at, tips), *_ = (await mail_to(mail, LEADS["away"], 2, within=60))[1:]
        assert str(tips["Subject"]) == "Tips" and tips_at - sent_at >= 5 * 86400 / SCALE

        # operators see it: history lists each message
        code, out, err = await run(str(BIN / "leadloop"), "history", str(ids["reply"]), "--json", env=env)
        assert code == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        said = [e["detail"] for e in lines if e["kind"] == "inbound"]
        assert said == [f"human reply: “Yes, call me on Tuesday. Μαρία” (answers lead-{ids['reply']}.c0.welcome)"]
        assert not [e for e in lines if e["detail"].startswith("signal inbound")]  # not an operator's signal

        # the bounced and the complaining leads' workflows ended suppressed
        for kind in ("bounce", "complaint"):
            handle = client.get_workflow_handle(f"lead-{ids[kind]}", result_type=LeadNurtureResult)
            result = await asyncio.wait_for(handle.result(), 30)
            assert result.stage == "suppressed", kind
        async with sessions() as session:
            reasons = {r.email_hash: r.reason for r in (await session.execute(select(Suppression))).scalars()}
            stored = {r.kind: r.status for r in (await session.execute(select(InboundMessage))).scalars()}
        assert reasons == {email_hash(LEADS["bounce"]): "hard_bounce", email_hash(LEADS["complaint"]): "complaint"}
        assert stored == dict.fromkeys(
            ("human_reply", "auto_reply", "hard_bounce", "complaint", "policy_block"), "signalled"
        )
        assert email_hash(LEADS["away"]) not in reasons

        # days later: the lead who replied got nothing more, and leadloop answered none of the mail
        await asyncio.sleep(8 * 86400 / SCALE)
        assert len(to(mail, LEADS["reply"])) == 1
        assert len(to(mail, LEADS["bounce"])) == len(to(mail, LEADS["complaint"])) == 1
        assert not [m for _, m in messages(mail) if m["In-Reply-To"]]
    finally:
        worker.terminate()
        await worker.wait()
        mailbox.close()
        await mailbox.wait_closed()
        await engine.dispose()


async def connect_namespace(dev_env: WorkflowEnvironment, namespace: str) -> Any:
    from temporalio.client import Client

    config = with_pydantic(dev_env.client).config()
    config["namespace"] = namespace
    return Client(**config)


async def until(read: Any, check: Any, within: float = 30) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        current = await read()
        if check(current):
            return current
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached; last {current}")
