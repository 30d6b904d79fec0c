"""Engagement events by hand (`leadloop event open|click|visit`) and the relay that signals stored ones."""

import asyncio
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from leadloop.infra.settings import InsecureSettings, get_settings
from starter.cli.connections import database, temporal
from starter.cli.terminal import configure_logging, console, fail

if TYPE_CHECKING:
    from temporalio.client import Client

# sqlalchemy and temporalio load inside the commands that use them (connections.py says why)


def relay(
    once: Annotated[bool, typer.Option("--once", help="one round, then exit")] = False,
) -> None:
    """Signal stored events and inbound messages (bounces, replies) that their workflows have not heard of yet
    (Temporal was unreachable).

    Outside the demo it refuses the published or a short secret, as the HTTP service it relays for does.
    """
    from leadloop.services.events import EventSignaller
    from leadloop.services.inbound_delivery import InboundRelay
    from leadloop.services.inbound_retention import Retention

    settings = get_settings()
    try:
        # it signs nothing itself, but it runs beside `leadloop api` from the same settings: a deployment that
        # would put dead links into emails is stopped at every process it starts, not at the first that signs
        settings.refuse_unsafe_secrets("the event relay")
    except InsecureSettings as exc:
        raise fail(str(exc)) from None
    configure_logging()

    async def run() -> int:
        async with database(settings) as sessions:
            client = await temporal(settings, lazy=True)

            async def get_client() -> "Client":
                return client

            signaller = EventSignaller(sessions, get_client, settings.coalesce_seconds)
            inbound = InboundRelay(sessions, get_client, retention=Retention(sessions, settings.inbound_retention_days))
            if once:
                return await signaller.sweep() + await inbound.signal()
            await asyncio.gather(
                signaller.relay(settings.relay_interval), inbound.relay(settings.relay_interval, asyncio.Event())
            )
            return 0

    try:
        sent = asyncio.run(run())
    except KeyboardInterrupt:
        return
    console.print(f"{sent} pending event(s) and inbound message(s) signalled")


def inject(kind: Literal["open", "click", "visit"], lead_id: int, url: str | None, machine: bool) -> None:
    """Store the event and signal it at once; the relay retries what cannot be signalled now."""
    from leadloop.services.manual_events import inject_event

    settings = get_settings()
    if url is not None and not url.startswith(("http://", "https://")):
        raise fail(f"--url must be an http(s) address, not {url!r}")

    async def run() -> int | None:
        async with database(settings) as sessions:
            client = await temporal(settings, lazy=True)
            return await inject_event(sessions, client, lead_id=lead_id, kind=kind, url=url, machine=machine)

    signalled = asyncio.run(run())
    if signalled is None:
        raise fail(f"no lead {lead_id} in the database")
    where = (
        "signalled to its workflow"
        if signalled
        else "stored, not signalled: the lead's workflow has ended or Temporal is unreachable (the relay retries)"
    )
    console.print(f"{'machine' if machine else 'human'} {kind} for lead {lead_id}: {where}")


def event_open(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    machine: Annotated[bool, typer.Option(help="record it as a machine hit")] = False,
) -> None:
    """An open, as if the lead's mail client fetched the pixel."""
    inject("open", lead_id, None, machine)


def event_click(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    url: Annotated[str, typer.Option(help="the clicked URL")] = "https://leadloop.example/",
    machine: Annotated[bool, typer.Option(help="record it as a machine hit")] = False,
) -> None:
    """A click on a link in an email."""
    inject("click", lead_id, url, machine)


def event_visit(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    url: Annotated[str, typer.Option(help="the page visited")] = "https://leadloop.example/",
) -> None:
    """A page view on the marketer's site."""
    inject("visit", lead_id, url, False)
