"""`leadloop webhooks ...`: the CRM's lifecycle webhook endpoints, their deliveries and replays."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from leadloop.domain.crm_webhooks import PERSONAL_FIELDS, WebhookInputError
from leadloop.infra.settings import get_settings
from starter.cli.connections import database
from starter.cli.terminal import console, fail, note

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from leadloop.services.outbound_webhooks import DeliveryView, EndpointSecret, EndpointView, ReplayResult

# sqlalchemy loads inside the commands that use it (connections.py says why)
T = TypeVar("T")


def _in_session(work: "Callable[[AsyncSession], Awaitable[T]]") -> T:
    """Run `work` on the migrated database; a bad name, URL, type or field is the error line, exit 1."""

    async def run() -> T:
        async with database(get_settings(), migrated=True) as sessions, sessions() as session:
            return await work(session)

    try:
        return asyncio.run(run())
    except WebhookInputError as exc:
        raise fail(str(exc)) from None


def _show_secret(done: "EndpointSecret", what: str) -> None:
    console.print(f"endpoint '{done.endpoint.name}' {what}: {done.endpoint.url}", highlight=False)
    console.print(f"secret (shown once; give it to the receiver): {done.secret}", highlight=False)
    console.print(f"its fingerprint, as `webhooks list` shows it: {done.endpoint.secret_hint}", highlight=False)


def webhooks_add(
    url: Annotated[str, typer.Argument(help="where to POST the events (http or https)")],
    name: Annotated[str, typer.Option("--name", help="the endpoint's name in other commands")],
    event: Annotated[
        list[str] | None, typer.Option("--event", help="an event type to send (repeat it); none: every type")
    ] = None,
    personal_data: Annotated[
        list[str] | None,
        typer.Option(
            "--personal-data",
            help=f"a lead field the endpoint may receive (repeat it): {', '.join(PERSONAL_FIELDS)}; none by default",
        ),
    ] = None,
) -> None:
    """Add a CRM endpoint for lifecycle webhooks; its signing secret is shown once."""
    from leadloop.services.outbound_webhooks import add_endpoint

    allow_private = get_settings().private_webhooks_allowed()
    done = _in_session(
        lambda session: add_endpoint(session, name, url, event or [], personal_data or [], allow_private=allow_private)
    )
    _show_secret(done, "added")
    types = ", ".join(done.endpoint.event_types) or "every type"
    fields = ", ".join(done.endpoint.personal_data) or "no personal data"
    console.print(f"events: {types}; {fields}", highlight=False)


def webhooks_list() -> None:
    """Every endpoint: URL, events, personal data, whether enabled, and its deliveries by status."""
    from leadloop.services.outbound_webhooks import list_endpoints

    rows = _in_session(list_endpoints)
    table = Table(title="webhook endpoints")
    columns = ("name", "url", "events", "personal data", "secret", "state", "pending", "failing", "delivered", "dead")
    for column in columns:
        table.add_column(column)
    for e in rows:
        table.add_row(
            e.name,
            e.url,
            ", ".join(e.event_types) or "all",
            ", ".join(e.personal_data) or "none",
            e.secret_hint,
            _state(e),
            str(e.pending),
            str(e.failing),
            str(e.delivered),
            str(e.dead),
        )
    console.print(table)
    if not rows:
        console.print("no endpoints yet: `leadloop webhooks add URL --name NAME`")


def _state(e: "EndpointView") -> str:
    if not e.enabled:
        since = f" since {e.disabled_at:%Y-%m-%d %H:%M}" if e.disabled_at else ""
        return f"disabled{since}: {e.disabled_reason or 'by hand'}"
    if e.failing_since:
        return f"enabled, failing since {e.failing_since:%Y-%m-%d %H:%M}"
    return "enabled"


def webhooks_remove(name: Annotated[str, typer.Argument(help="the endpoint's name")]) -> None:
    """Remove an endpoint, with its deliveries (pending ones are never sent)."""
    from leadloop.services.outbound_webhooks import remove_endpoint

    gone = _in_session(lambda session: remove_endpoint(session, name))
    console.print(f"endpoint '{gone.name}' removed ({gone.pending} pending delivery(ies) dropped)", highlight=False)


def webhooks_rotate_secret(name: Annotated[str, typer.Argument(help="the endpoint's name")]) -> None:
    """Give an endpoint a new signing secret (shown once); every attempt from now on, retries included, uses it."""
    from leadloop.services.outbound_webhooks import rotate_secret

    _show_secret(_in_session(lambda session: rotate_secret(session, name)), "has a new secret")


def webhooks_enable(name: Annotated[str, typer.Argument(help="the endpoint's name")]) -> None:
    """Enable a disabled endpoint again (its dead deliveries: `leadloop webhooks replay ID`)."""
    from leadloop.services.outbound_webhooks import enable_endpoint

    e = _in_session(lambda session: enable_endpoint(session, name))
    console.print(f"endpoint '{e.name}' enabled; {e.dead} dead delivery(ies) can be replayed", highlight=False)


def webhooks_deliveries(
    failed: Annotated[bool, typer.Option("--failed", help="only dead ones and those still failing")] = False,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="only this endpoint's")] = None,
    lead: Annotated[int | None, typer.Option("--lead", help="only this lead's", min=1)] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many, newest first", min=1)] = 50,
) -> None:
    """Deliveries, newest first, with every attempt and the receiver's answer."""
    from leadloop.services.outbound_webhooks import list_deliveries

    rows = _in_session(
        lambda session: list_deliveries(session, failed=failed, endpoint=endpoint, lead_id=lead, limit=limit)
    )
    for d in rows:
        _print_delivery(d)
    console.print(f"{len(rows)} delivery(ies)")


def _print_delivery(d: "DeliveryView") -> None:
    console.print(
        f"#{d.id} {d.status} · {d.endpoint} · lead {d.lead_id} · {d.event_type} · {d.message_id} · "
        f"{d.attempts} attempt(s)",
        highlight=False,
    )
    for a in d.tries:
        said = f"{a.status_code} {a.answer or ''}".strip() if a.status_code is not None else (a.error or "")
        console.print(f"    {a.attempt}. {a.at:%Y-%m-%d %H:%M:%S} {said}", highlight=False)
    if d.last_error and not d.tries:
        console.print(f"    {d.last_error}", highlight=False)


def webhooks_replay(
    delivery_id: Annotated[int, typer.Argument(help="the delivery's id (`webhooks deliveries`)")],
) -> None:
    """Send a delivery again now: the same webhook-id and body, signed with the endpoint's current secret."""
    from leadloop.services.outbound_webhooks import replay

    settings = get_settings()

    async def run() -> "ReplayResult":
        async with database(settings, migrated=True) as sessions:
            return await replay(
                sessions,
                delivery_id,
                answer_within=settings.webhook_timeout.total_seconds(),
                allow_private=settings.private_webhooks_allowed(),
            )

    try:
        done = asyncio.run(run())
    except WebhookInputError as exc:
        raise fail(str(exc)) from None
    if done.endpoint_disabled:
        note(f"endpoint '{done.delivery.endpoint}' is disabled: `leadloop webhooks enable {done.delivery.endpoint}`")
    if not done.delivered:
        raise fail(f"delivery {delivery_id} not delivered: {done.answer}")
    console.print(f"delivery {delivery_id} delivered ({done.answer})", highlight=False)
