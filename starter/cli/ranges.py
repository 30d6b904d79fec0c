"""The published address ranges of gateways, clouds and mail proxies: `update` builds a ranges file from downloaded
provider lists, `show` says what a file holds, `check` which range an address falls in."""

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from leadloop.domain.ranges import PACKAGED_RANGES, MachineRanges, RangesError, address_of, load_ranges
from leadloop.infra.settings import get_settings
from starter.cli.terminal import console, fail

FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file", help="a ranges file (default: LEADLOOP_MACHINE_RANGES_FILE, else the one shipped)", show_default=False
    ),
]


def _configured() -> Path:
    return get_settings().machine_ranges_file or PACKAGED_RANGES


def _load(path: Path) -> MachineRanges:
    try:
        return load_ranges(path)
    except RangesError as exc:
        raise fail(str(exc)) from None


def ranges_update(
    files: Annotated[
        list[Path],
        typer.Argument(help="downloaded provider lists (AWS, Google, Azure, Microsoft 365, Apple, documented CSV)"),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="where to write (default: LEADLOOP_MACHINE_RANGES_FILE)", show_default=False),
    ] = None,
    on: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="the day the files were downloaded (YYYY-MM-DD; default today): the file's date and the published "
            "date of lists that carry none",
            show_default=False,
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="only the given lists; else the output file's other sources are kept")
    ] = False,
) -> None:
    """Build a ranges file from downloaded provider lists: the given lists replace their sources, the others stay.

    Overlaps are resolved (gateway > mail_proxy > private_relay > apple > cloud), the result is checked whole and
    written atomically. Nothing is fetched: download the lists first (see the README).
    """
    from leadloop.domain.range_sources import build, read_source, write_ranges

    target = out or get_settings().machine_ranges_file
    if target is None:
        raise fail("no file to write: pass --out PATH (and set LEADLOOP_MACHINE_RANGES_FILE to it to use it)")
    try:
        day = date.fromisoformat(on) if on is not None else datetime.now(UTC).date()
    except ValueError:
        raise fail(f"--date {on!r} is not a date (YYYY-MM-DD)") from None
    if not target.parent.is_dir():
        raise fail(f"cannot write {target}: {target.parent} is not a folder")
    try:
        given = []
        for file in files:
            try:
                raw = file.read_bytes()
            except OSError as exc:
                raise RangesError(f"{file}: cannot be read ({exc.strerror or exc})") from None
            given += read_source(str(file), raw, day)
        # the file being replaced is the base; a first update starts from the shipped one, so nothing is lost
        base = None
        if not fresh:
            try:
                base = load_ranges(target if target.exists() else PACKAGED_RANGES)
            except RangesError as exc:
                raise RangesError(f"{exc} (--fresh builds the file from the given lists alone)") from None
        ranges = build(base, given, day)
        write_ranges(ranges, target)
    except RangesError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc.strerror or exc}") from None
    counts = ranges.counts()
    given_ids = ", ".join(f"{g.source.id} ({counts.get(g.source.id, 0)})" for g in given)
    console.print(f"wrote {target}: {len(ranges)} ranges, version {ranges.version}; updated: {given_ids}")


def ranges_show(file: FileOption = None) -> None:
    """What a ranges file holds: its version and date, and each source with its kind, date and count of ranges."""
    path = file or _configured()
    ranges = _load(path)
    console.print(f"file: {path}")
    console.print(f"version: {ranges.version} (generated {ranges.generated.isoformat()}), {len(ranges)} ranges")
    counts = ranges.counts()
    table = Table(title="sources")
    for column in ("source", "kind", "provider", "published", "ranges", "url"):
        table.add_column(column)
    for source in ranges.sources.values():
        table.add_row(
            source.id,
            source.kind,
            source.provider,
            source.published.isoformat(),
            str(counts.get(source.id, 0)),
            source.url,
        )
    console.print(table)


def ranges_check(
    ips: Annotated[list[str], typer.Argument(help="client addresses (IPv4, IPv6, IPv4-mapped IPv6)")],
    file: FileOption = None,
) -> None:
    """Which published range each address falls in, or none."""
    bad = [ip for ip in ips if address_of(ip) is None]
    if bad:
        raise fail(f"not an IP address: {', '.join(bad)}")
    ranges = _load(file or _configured())
    for ip in ips:
        match = ranges.lookup(ip)
        if match is None:
            console.print(f"{ip}: in no published range")
        else:
            console.print(
                f"{ip}: {match.kind} ({'machine' if match.machine else 'not machine on its own'}), "
                f"{match.source.provider}, {match.network} [{match.source.id}, published "
                f"{match.source.published.isoformat()}]"
            )
