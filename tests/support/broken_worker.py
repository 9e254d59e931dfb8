"""A worker whose rollout workflows fail every workflow task: a rollout it picks up is deaf.

`python -m tests.support.broken_worker` against the server in TEMPORAL_ADDRESS. It registers
`Rollout` and `RingRollout` on Sluice's task queue with a run method that raises a plain
exception, which fails the workflow task (not the workflow): Temporal retries the task
forever, so the rollout can no longer act on a signal, a timer or a cancel. That is the state
`sluice abort --force` exists for. Prints `polling task queue` once it polls.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.worker import Worker

from sluice.contracts.names import RING_WORKFLOW_TYPE, TASK_QUEUE, WORKFLOW_TYPE
from sluice.runtime.connect import connect_client


def _fail() -> None:
    raise RuntimeError("broken on purpose: this workflow task fails every time")


@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class BrokenRollout:
    """Fails every task of a `Rollout`."""

    @workflow.run
    async def run(self, inp: dict[str, Any]) -> None:
        _fail()


@workflow.defn(name=RING_WORKFLOW_TYPE, sandboxed=False)
class BrokenRingRollout:
    """Fails every task of a `RingRollout`."""

    @workflow.run
    async def run(self, inp: dict[str, Any]) -> None:
        _fail()


async def main() -> None:
    client = await connect_client()
    worker = Worker(client, task_queue=TASK_QUEUE, workflows=[BrokenRollout, BrokenRingRollout])
    print(f"polling task queue {TASK_QUEUE!r} with broken rollout workflows", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
