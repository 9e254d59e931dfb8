"""The Sluice worker: hosts the rollout workflow and its activities on the `sluice` task queue.

Run one per deployment, or several (they share the task queue). Connection settings come
from Temporal's environment configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`,
`TEMPORAL_PROFILE`, TLS and API key), the same as the `sluice` CLI. `SLUICE_METRICS_ADDRESS`
serves Prometheus metrics, `OTEL_EXPORTER_OTLP_ENDPOINT` exports traces and
`SLUICE_CODEC_KEY` encrypts payloads (see `starter.telemetry` and `starter.codec`).
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
from starter import telemetry
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
    log = logging.getLogger("sluice.worker")
    telemetry.configure_tracing("sluice-worker")
    metrics_at = telemetry.metrics_address()
    client = await connect_client(runtime=telemetry.worker_runtime(metrics_at))
    if metrics_at:
        log.info("serving Prometheus metrics on http://%s/metrics", metrics_at)
    worker = build_worker(client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker polling task queue %r on %s",
        worker.task_queue,
        client.service_client.config.target_host,
    )
    try:
        async with worker:
            await stop.wait()
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
