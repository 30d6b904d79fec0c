"""The CLI's consoles, its error line and its log format: what every command writes and how it says it failed."""

import logging

import typer

from leadloop.infra.extras import MissingExtra, require_extra
from starter.output import plain_console, styled

console = plain_console()  # never markup: data and arguments print as they are (starter/output.py)
err = plain_console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Write `error: <message>` to stderr; the command raises what this returns, ending with `code`."""
    err.print(styled("error:", "red", f" {message}"))
    return typer.Exit(code)


def note(message: str) -> None:
    """Write `note: <message>` to stderr: something the user should know, the command goes on."""
    err.print(styled("note:", "yellow", f" {message}"))


def need_extra(extra: str, feature: str) -> None:
    """Exit 1 naming the extra to install when `feature` needs one this installation lacks."""
    try:
        require_extra(extra, feature)
    except MissingExtra as exc:
        raise fail(str(exc)) from None


def configure_logging() -> None:
    """INFO lines with time and logger for the long-running commands (servers, worker-side stacks)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command
