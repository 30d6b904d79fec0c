"""Screenshot of a lead's workflow page in the Temporal UI, taken with Debian's headless Chromium."""

import argparse
import asyncio
import os
import shutil
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from leadloop.infra.process import run_and_exit
from leadloop.infra.settings import get_settings
from leadloop.infra.temporal import connect
from leadloop.services.enrollment import workflow_id as lead_workflow_id

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

DEFAULT_UI = "http://localhost:8233"
#: the UI's tabs this script knows how to wait for: the user metadata (summary, details, current details)
#: and the event history (every timer's and activity's summary)
TABS = ("user-metadata", "history")
#: Chromium cannot capture larger pages in one piece
MAX_SIZE = 16_000
#: the UI asks a worker for the current details; without one it shows none, which is worth a warning, not a wait
CURRENT_DETAILS_WAIT = 10.0
# the UI renders summaries as Markdown, which turns quotes and slashes typographic
_TYPOGRAPHIC = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "⁄": "/", "–": "-", "—": "-"})


class ScreenshotError(Exception):
    """Why no screenshot was taken, in one line; nothing was written."""


@dataclass
class Screenshot:
    path: Path
    url: str
    workflow_id: str
    run_id: str
    width: int
    height: int
    text: str = ""  # what the page showed, its frames included (the UI renders summaries in frames)
    warnings: list[str] = field(default_factory=list)


def plain(text: str) -> str:
    """Text as the workflow wrote it: typographic quotes undone, whitespace collapsed."""
    return " ".join(text.translate(_TYPOGRAPHIC).replace("…", "...").split())


def resolve_workflow_id(target: str) -> str:
    """A lead id ("3") names its workflow ("lead-3"); anything else is taken as a workflow id."""
    target = target.strip()
    return lead_workflow_id(int(target)) if target.isdigit() else target


def default_chromium() -> str:
    return shutil.which("chromium") or "/usr/bin/chromium"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _chromium(path: str) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ScreenshotError(
            f"chromium not found at {path}: install Debian's chromium (`make browser`) or pass --chromium PATH"
        )
    return path


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def _check_ui(ui_url: str) -> None:
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            response = await http.get(ui_url)
    except httpx.HTTPError as exc:
        raise ScreenshotError(
            f"the Temporal UI at {ui_url} is unreachable ({type(exc).__name__}): start the dev server with its UI "
            "(`make demo` serves it on http://localhost:8233) or pass --ui-url"
        ) from None
    if response.status_code >= 400:
        raise ScreenshotError(f"the Temporal UI at {ui_url} answered HTTP {response.status_code}")


async def _find_run(address: str, namespace: str, workflow_id: str) -> tuple[str, str | None]:
    """The workflow's latest run id and its static summary."""
    settings = get_settings().model_copy(update={"temporal_address": address, "temporal_namespace": namespace})
    try:
        client: Client = await connect(settings)
    except RuntimeError as exc:
        raise ScreenshotError(f"cannot reach Temporal at {address}: {_one_line(exc)}") from None
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND and "namespace" in exc.message.lower():
            raise ScreenshotError(f"namespace '{namespace}' not found at {address}") from None
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ScreenshotError(f"workflow {workflow_id} not found in namespace '{namespace}' at {address}") from None
        raise ScreenshotError(f"Temporal at {address} refused to describe {workflow_id}: {exc.message}") from None
    return description.run_id, await description.static_summary()


async def _frame_text(page: "Page", frame_id: str) -> str:
    locator = page.frame_locator(f"#{frame_id}").locator("body")
    try:
        return await locator.inner_text(timeout=1_000)
    except Exception:  # the frame is not there yet, or is being replaced
        return ""


async def _until(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


async def _page_text(page: "Page") -> str:
    parts = [await page.locator("main").inner_text()]
    for frame in page.frames[1:]:
        try:
            parts.append(await frame.locator("body").inner_text(timeout=1_000))
        except Exception:  # a frame that went away meanwhile shows nothing
            continue
    return "\n".join(parts)


async def _whole_page(page: "Page", width: int, height: int) -> None:
    """Grow the viewport until nothing scrolls: the UI scrolls an inner element, not the document,
    so Playwright's full-page capture alone would cut the event table at the window's edges."""
    measure = """() => [document.scrollingElement, ...document.querySelectorAll('#content-wrapper')]
        .filter(Boolean)
        .reduce(([w, h], e) => [Math.max(w, e.scrollWidth - e.clientWidth),
                                Math.max(h, e.scrollHeight - e.clientHeight)], [0, 0])"""
    for _ in range(3):
        hidden_width, hidden_height = (int(n) for n in await page.evaluate(measure))
        grown = (min(MAX_SIZE, width + max(0, hidden_width)), min(MAX_SIZE, height + max(0, hidden_height)))
        if grown == (width, height):
            return
        width, height = grown
        await page.set_viewport_size({"width": width, "height": height})


async def take_screenshot(
    target: str,
    output: Path,
    *,
    ui_url: str = DEFAULT_UI,
    namespace: str | None = None,
    address: str | None = None,
    tab: str = "user-metadata",
    width: int = 1400,
    height: int = 900,
    chromium: str | None = None,
    wait: float = 30.0,
) -> Screenshot:
    """Open the workflow's page in the UI, wait until it shows the workflow, save a full-page PNG.

    Args:
        target: a lead id ("3") or a workflow id ("lead-3").
        namespace, address: Temporal's, where the run id and summary are found; leadloop's settings by default.
        wait: seconds the page may take to show the workflow.
        tab: "user-metadata" (summary, details, current details) or "history" (every event's summary).
        width, height: the viewport; the PNG shows the whole page, so it may be larger.

    Raises:
        ScreenshotError: chromium missing, UI or Temporal unreachable, no such workflow, page never rendered.
    """
    if tab not in TABS:
        raise ScreenshotError(f"unknown tab '{tab}': one of {', '.join(TABS)}")
    workflow_id = resolve_workflow_id(target)
    browser_path = _chromium(chromium or default_chromium())
    try:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeoutError
        from playwright.async_api import async_playwright
    except ImportError:
        raise ScreenshotError("the playwright package is missing: `make install` installs it") from None
    settings = get_settings()
    namespace = namespace or settings.temporal_namespace
    address = address or settings.temporal_address
    ui_url = ui_url.rstrip("/")
    await _check_ui(ui_url)
    run_id, summary = await _find_run(address, namespace, workflow_id)
    url = f"{ui_url}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}/{run_id}/{tab}"
    warnings: list[str] = []
    async with async_playwright() as pw:
        try:
            browser = await pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        except PlaywrightError as exc:
            raise ScreenshotError(f"chromium at {browser_path} did not start: {_one_line(exc)[:200]}") from None
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            try:
                await page.goto(url, timeout=wait * 1000)
                heading = page.get_by_test_id("workflow-id-heading")
                await heading.or_(page.get_by_text("Uh oh.")).first.wait_for(timeout=wait * 1000)
            except PlaywrightError as exc:
                raise ScreenshotError(
                    f"the UI did not show {workflow_id} within {wait:g} s ({url}): {_one_line(exc)[:120]}"
                ) from None
            if not await heading.is_visible():
                shown = plain(await page.locator("main").inner_text())
                raise ScreenshotError(f"the UI could not show {workflow_id} ({url}): {shown[:120]}")
            if not await _until(lambda: _has_text(heading, workflow_id), wait):
                raise ScreenshotError(f"the UI's page at {url} names another workflow than {workflow_id}")
            if tab == "user-metadata":
                if summary and not await _until(
                    lambda: _frame_has(page, "user-metadata-summary", plain(summary)), wait
                ):
                    raise ScreenshotError(
                        f"the UI did not show the summary of {workflow_id} within {wait:g} s "
                        "(the UI shows encrypted summaries only through a codec server)"
                    )
                if not await _until(
                    lambda: _frame_has(page, "user-metadata-current-details", ""), min(wait, CURRENT_DETAILS_WAIT)
                ):
                    warnings.append(
                        "the UI shows no current details: the UI asks a worker for them, is one polling the task queue?"
                    )
            else:
                try:
                    await page.get_by_test_id("event-summary-row").first.wait_for(timeout=wait * 1000)
                except PlaywrightTimeoutError:
                    raise ScreenshotError(f"the UI showed no events of {workflow_id} within {wait:g} s") from None
            text = await _page_text(page)
            await _whole_page(page, width, height)
            png = await page.screenshot(full_page=True, type="png")
        finally:
            await browser.close()
    shot_width, shot_height = png_size(png)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    partial.write_bytes(png)
    partial.replace(output)
    return Screenshot(output, url, workflow_id, run_id, shot_width, shot_height, text, warnings)


async def _has_text(locator: "Locator", expected: str) -> bool:
    return plain(await locator.inner_text()) == expected


async def _frame_has(page: "Page", frame_id: str, expected: str) -> bool:
    """The frame shows `expected` (any text when empty)."""
    shown = plain(await _frame_text(page, frame_id))
    return bool(shown) and expected in shown


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of pixels")
    return number


def parser() -> argparse.ArgumentParser:
    settings = get_settings()
    cli = argparse.ArgumentParser(
        prog="ui_screenshot.py",
        description="Save a full-page screenshot of a lead's workflow page in the Temporal UI (headless Chromium). "
        "The PNG shows the whole page, so it may be larger than the viewport.",
    )
    cli.add_argument("lead", help="lead id (3) or workflow id (lead-3)")
    cli.add_argument("--ui-url", default=DEFAULT_UI, help=f"the Temporal UI (default {DEFAULT_UI})")
    cli.add_argument(
        "--namespace",
        default=settings.temporal_namespace,
        help="Temporal namespace (default LEADLOOP_TEMPORAL_NAMESPACE: %(default)s)",
    )
    cli.add_argument(
        "--address",
        default=settings.temporal_address,
        help="Temporal frontend, where the run is found (default LEADLOOP_TEMPORAL_ADDRESS: %(default)s)",
    )
    cli.add_argument("-o", "--output", type=Path, help="PNG to write (default .leadloop/screenshots/<workflow id>.png)")
    cli.add_argument(
        "--tab",
        choices=TABS,
        default="user-metadata",
        help="user-metadata: summary and current details; history: every event's summary",
    )
    cli.add_argument("--width", type=_positive, default=1400, help="viewport width in px (default %(default)s)")
    cli.add_argument("--height", type=_positive, default=900, help="viewport height in px (default %(default)s)")
    cli.add_argument("--chromium", default=default_chromium(), help="Chromium binary (default %(default)s)")
    cli.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the page (default %(default)s)")
    cli.add_argument("--text", action="store_true", help="also print the text the page showed")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    output: Path = args.output or get_settings().state_dir / "screenshots" / f"{resolve_workflow_id(args.lead)}.png"
    try:
        shot = asyncio.run(
            take_screenshot(
                args.lead,
                output,
                ui_url=args.ui_url,
                namespace=args.namespace,
                address=args.address,
                tab=args.tab,
                width=args.width,
                height=args.height,
                chromium=args.chromium,
                wait=args.timeout,
            )
        )
    except ScreenshotError as exc:
        print(f"ui_screenshot: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    for warning in shot.warnings:
        print(f"ui_screenshot: warning: {warning}", file=sys.stderr)
    print(f"{shot.path}: {shot.workflow_id} (run {shot.run_id}), {shot.width}x{shot.height} px, from {shot.url}")
    if args.text:
        print(shot.text)
    return 0


if __name__ == "__main__":
    run_and_exit(main)  # past the interpreter's teardown, where the SDK's threads can abort it
