"""The Sluice worker: hosts the rollout workflow and its activities on the `sluice` task queue.

Run one per deployment, or several (they share the task queue). Connection settings come
from Temporal's environment configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`,
`TEMPORAL_PROFILE`, TLS and API key), the same as the `sluice` CLI.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from activities.rollout import ALL_ACTIVITIES
from contracts.names import TASK_QUEUE
from starter.connect import connect_client
from workflows.rings import RingRolloutWorkflow
from workflows.rollout import RolloutWorkflow


def build_worker(client: Client, task_queue: str = TASK_QUEUE) -> Worker:
    """A worker for `client` with every Sluice workflow and activity registered."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RolloutWorkflow, RingRolloutWorkflow],
        activities=ALL_ACTIVITIES,
    )


async def main() -> None:
    """Run until SIGINT or SIGTERM, then finish in-flight activities and stop."""
    logging.basicConfig(
        level=os.environ.get("SLUICE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    client = await connect_client()
    worker = build_worker(client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("sluice.worker").info(
        "worker polling task queue %r on %s",
        worker.task_queue,
        client.service_client.config.target_host,
    )
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
