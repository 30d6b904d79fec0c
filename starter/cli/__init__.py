"""The `leadloop` command line (Typer + Rich): every command, in the order `leadloop --help` lists them, and `main`."""

import typer

from leadloop.infra.process import run_and_exit
from starter.cli import (
    admin,
    cadence,
    classify_check,
    enroll,
    events,
    inbound,
    keys,
    lead_actions,
    lead_changes,
    lead_views,
    processes,
    ranges,
    report,
    reps,
    segments,
    webhooks,
)

__all__ = ["app", "main"]

app = typer.Typer(help="leadloop: durable lead nurture and recycle automation on Temporal.", no_args_is_help=True)
cadence_app = typer.Typer(help="Check and preview marketers' cadence files.", no_args_is_help=True)
db_app = typer.Typer(help="leadloop's own database.", no_args_is_help=True)
reps_app = typer.Typer(help="Sales teams and reps.", no_args_is_help=True)
event_app = typer.Typer(help="Inject an engagement event by hand (operators, demos).", no_args_is_help=True)
lead_app = typer.Typer(help="One lead's data.", no_args_is_help=True)
inbound_app = typer.Typer(help="Replies, auto-replies, bounces and complaints.", no_args_is_help=True)
keys_app = typer.Typer(help="The HTTP API's keys: named, scoped, kept as hashes.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Lifecycle webhooks to your CRM: endpoints, deliveries, replays.", no_args_is_help=True)
segment_app = typer.Typer(
    help="Saved segments: named filters over leads' stage, score, category, tags, cadence, rep.", no_args_is_help=True
)
ranges_app = typer.Typer(
    help="The published address ranges of mail gateways, clouds and mail proxies.", no_args_is_help=True
)
for group, group_name in (
    (cadence_app, "cadence"),
    (db_app, "db"),
    (reps_app, "reps"),
    (event_app, "event"),
    (lead_app, "lead"),
    (inbound_app, "inbound"),
    (ranges_app, "ranges"),
    (keys_app, "keys"),
    (webhooks_app, "webhooks"),
    (segment_app, "segment"),
):
    app.add_typer(group, name=group_name)

COMMANDS = (
    (app, "server", processes.server),
    (app, "setup", admin.setup),
    (app, "worker", processes.worker),
    (app, "mailbox", processes.mailbox),
    (db_app, "upgrade", admin.db_upgrade),
    (cadence_app, "check", cadence.cadence_check),
    (cadence_app, "preview", cadence.cadence_preview),
    (app, "enroll", enroll.enroll),
    (app, "retry", lead_actions.retry),
    (app, "state", lead_views.state),
    (app, "api", processes.api),
    (app, "relay", events.relay),
    (app, "inbox", processes.inbox),
    (reps_app, "import", reps.reps_import),
    (reps_app, "list", reps.reps_list),
    (event_app, "open", events.event_open),
    (event_app, "click", events.event_click),
    (event_app, "visit", events.event_visit),
    (app, "accept", lead_actions.accept),
    (app, "reject", lead_actions.reject),
    (lead_app, "update", lead_actions.lead_update),
    (app, "dispositions", lead_views.dispositions),
    (app, "pause", lead_actions.pause),
    (app, "resume", lead_actions.resume),
    (app, "status", lead_views.status),
    (app, "history", lead_views.history),
    (app, "forget", lead_actions.forget),
    (app, "list", lead_views.list_leads),
    (app, "demo", processes.demo),
    (app, "report", report.report),
    (inbound_app, "classify", inbound.inbound_classify),
    (inbound_app, "list", inbound.inbound_list),
    (inbound_app, "show", inbound.inbound_show),
    (ranges_app, "update", ranges.ranges_update),
    (ranges_app, "show", ranges.ranges_show),
    (ranges_app, "check", ranges.ranges_check),
    (app, "classify-check", classify_check.classify_check),
    (keys_app, "add", keys.keys_add),
    (keys_app, "list", keys.keys_list),
    (keys_app, "revoke", keys.keys_revoke),
    (webhooks_app, "add", webhooks.webhooks_add),
    (webhooks_app, "list", webhooks.webhooks_list),
    (webhooks_app, "remove", webhooks.webhooks_remove),
    (webhooks_app, "rotate-secret", webhooks.webhooks_rotate_secret),
    (webhooks_app, "enable", webhooks.webhooks_enable),
    (webhooks_app, "deliveries", webhooks.webhooks_deliveries),
    (webhooks_app, "replay", webhooks.webhooks_replay),
    (segment_app, "add", segments.segment_add),
    (segment_app, "list", segments.segment_list),
    (segment_app, "count", segments.segment_count),
    (segment_app, "remove", segments.segment_remove),
    (app, "bulk", segments.bulk),
    (app, "find", lead_changes.find),
    (app, "owner", lead_changes.owner),
    (app, "goal", lead_changes.goal),
    (app, "stop", lead_changes.stop),
    (app, "reenrol", lead_changes.reenrol),
    (app, "move", lead_changes.move),
    (app, "tag", lead_changes.tag),
)
for group, command_name, command in COMMANDS:
    group.command(command_name)(command)


def main() -> None:
    """The `leadloop` command: the Typer app, ended past the interpreter's teardown (leadloop/infra/process.py)."""
    run_and_exit(app)
