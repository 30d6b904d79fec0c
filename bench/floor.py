"""The orchestration floor: the same shape of work as a lead's drip with nothing of leadloop in it.

Each workflow does S steps; every step after the first waits a durable timer of `wait` seconds, then runs a
no-op activity (leadloop's step 1 sends at once, the others after their wait). Run as a worker process
with the SDK's default worker settings, as `worker.py` runs leadloop's:
`PYTHONPATH=. .venv/bin/python bench/floor.py ADDRESS TASK_QUEUE`.
"""

import asyncio
import signal
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn
async def noop(step: int) -> int:
    return step


@workflow.defn
class Floor:
    @workflow.run
    async def run(self, steps: int, wait: float) -> int:
        for step in range(steps):
            if step:
                await workflow.sleep(wait)
            await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=30))
        return steps


async def serve(address: str, queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=queue, workflows=[Floor], activities=[noop]):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
