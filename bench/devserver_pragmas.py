"""Measures the dev server's persistence modes: workflow starts/s and timer+activity steps/s.

Run: .venv/bin/python bench/devserver_pragmas.py [--workflows 200] [--steps 3] [--runs 3]
Each mode runs N workflows x S (1 s durable timer + no-op activity), client and worker in this
process, the server beside it; the table shows medians over --runs runs.
"""

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from starter.devserver import start_dev_server, stop_process


@activity.defn
async def noop(step: int) -> int:
    return step


@workflow.defn
class Floor:
    @workflow.run
    async def run(self, steps: int) -> int:
        for step in range(steps):
            await workflow.sleep(1)
            await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=30))
        return steps


MODES = {
    "in-memory": None,
    "sqlite default pragmas": [],
    "sqlite wal + synchronous=normal": ["journal_mode=wal", "synchronous=normal"],
}


async def measure(pragmas: list[str] | None, workflows: int, steps: int, port: int) -> tuple[float, float]:
    args = ["server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless", "--log-level", "never"]
    with tempfile.TemporaryDirectory() as tmp:
        if pragmas is not None:
            args += ["--db-filename", str(Path(tmp) / "t.db")]
            for pragma in pragmas:
                args += ["--sqlite-pragma", pragma]
        server = await start_dev_server(None, port=port, args=args)
        try:
            client = await Client.connect(f"127.0.0.1:{port}")
            queue = f"bench-{uuid.uuid4()}"
            async with Worker(
                client,
                task_queue=queue,
                workflows=[Floor],
                activities=[noop],
                max_concurrent_activities=200,
                max_concurrent_workflow_tasks=200,
            ):
                began = time.perf_counter()
                handles = await asyncio.gather(
                    *(client.start_workflow(Floor.run, steps, id=f"w{i}", task_queue=queue) for i in range(workflows))
                )
                started = time.perf_counter()
                await asyncio.gather(*(h.result() for h in handles))
                done = time.perf_counter()
        finally:
            await stop_process(server)
    return workflows / (started - began), workflows * steps / (done - began)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    print(f"{opts.workflows} workflows x {opts.steps} x (1 s timer + no-op activity), median of {opts.runs} runs")
    print(f"{'dev server persistence':34} {'starts/s':>9} {'steps/s':>9}")
    for name, pragmas in MODES.items():
        results = [await measure(pragmas, opts.workflows, opts.steps, 17233 + i) for i in range(opts.runs)]
        starts = statistics.median(r[0] for r in results)
        steps = statistics.median(r[1] for r in results)
        print(f"{name:34} {starts:9.0f} {steps:9.1f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
