"""The CLI's Rich consoles: every string is shown as it is, never read as markup, emoji codes or links."""

from rich.console import Console
from rich.text import Text


def plain_console(*, stderr: bool = False) -> Console:
    """A console on which no string is markup: names, notes, URLs and arguments print literally.

    Lead, rep and cadence names, rep notes, reasons, URLs and command arguments reach every print, table cell
    and title; with markup on, `[/bold]` in a name ends the command (MarkupError) and `[link=...]` turns into a
    terminal hyperlink. Escaping at each call site is one forgotten call away from that, so the console refuses
    markup for all of them and the few styled words go through `styled`. No guessed highlighting either: a
    name is not recoloured as if it were a number or a URL.
    """
    return Console(stderr=stderr, soft_wrap=True, markup=False, emoji=False, highlight=False)


def styled(label: str, style: str, rest: str = "") -> Text:
    """`label` in `style`, then `rest` exactly as given (a prefix such as "error:" before a message)."""
    return Text.assemble((label, style), rest)
