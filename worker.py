"""The Sluice worker: hosts the rollout workflows and their activities on the `sluice` task queue.

Run it as `sluice worker` (or `python -m sluice worker`; `python worker.py` in a checkout).
Run one per deployment, or several (they share the task queue). Connection settings come
from Temporal's environment configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`,
`TEMPORAL_PROFILE`, TLS and API key), the same as the `sluice` CLI. `SLUICE_METRICS_ADDRESS`
(or `--metrics-address`) serves Prometheus metrics, `OTEL_EXPORTER_OTLP_ENDPOINT` exports
traces and `SLUICE_CODEC_KEY` encrypts payloads (see `sluice.runtime.telemetry` and
`sluice.runtime.codec`). With metrics on, live gauges of each service's rollout weight and
phase are refreshed every `SLUICE_GAUGE_INTERVAL` (see `sluice.runtime.gauges`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from sluice.activities.approvals import verify_approval
from sluice.activities.rollout import ALL_ACTIVITIES
from sluice.contracts.names import TASK_QUEUE
from sluice.runtime import gauges, telemetry
from sluice.runtime.client import SluiceClient
from sluice.runtime.connect import connect_client
from sluice.workflows.rings import RingRolloutWorkflow
from sluice.workflows.rollout import RolloutWorkflow


def build_worker(client: Client, task_queue: str = TASK_QUEUE) -> Worker:
    """A worker for `client` with every Sluice workflow and activity registered."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RolloutWorkflow, RingRolloutWorkflow],
        activities=[*ALL_ACTIVITIES, verify_approval],
    )


LOG_LEVEL_ENV = "SLUICE_LOG_LEVEL"


async def run_worker(
    log_level: str | None = None, metrics_address: str | None = None, task_queue: str = TASK_QUEUE
) -> None:
    """Run until SIGINT or SIGTERM, then finish in-flight activities and stop.

    `log_level` defaults to `$SLUICE_LOG_LEVEL` (else INFO); `metrics_address` (`host:port`)
    defaults to `$SLUICE_METRICS_ADDRESS` (unset or `off`: no metrics endpoint).
    """
    logging.basicConfig(
        level=(log_level or os.environ.get(LOG_LEVEL_ENV) or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("sluice.worker")
    telemetry.configure_tracing("sluice-worker")
    metrics_at = telemetry.metrics_address(metrics_address)
    gauge_interval = gauges.interval_from_env()
    runtime = telemetry.worker_runtime(metrics_at)
    client = await connect_client(runtime=runtime)
    refreshing: asyncio.Task[None] | None = None
    if metrics_at and runtime is not None:
        log.info("serving Prometheus metrics on http://%s/metrics", metrics_at)
        live = gauges.RolloutGauges(
            SluiceClient(client, client.service_client.config.target_host), runtime.metric_meter
        )
        refreshing = asyncio.create_task(live.run(gauge_interval))
    worker = build_worker(client, task_queue)
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
        if refreshing is not None:
            await gauges.stop(refreshing)
        telemetry.shutdown()


if __name__ == "__main__":
    # `python worker.py` from a checkout: the same as `sluice worker` with no options.
    asyncio.run(run_worker())
