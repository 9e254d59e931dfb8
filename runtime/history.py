"""What a rollout run was started with, read from its Temporal history: no worker needed.

The first event of a run holds the workflow's input (`RolloutInput` or `RingRolloutInput`);
decoding it with the client's data converter also decrypts it (`SLUICE_CODEC_KEY`). Only
the routers are validated, so a run started by an older Sluice whose spec would no longer
pass today's rules still says where its traffic is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from sluice.contracts.names import RING_WORKFLOW_TYPE, WORKFLOW_TYPE
from sluice.contracts.spec import RouterModel, RouterSpec
from sluice.contracts.spec.routers import traffic_targets_of

_ROUTER: TypeAdapter[RouterModel] = TypeAdapter(RouterSpec)


class SpecUnreadable(Exception):
    """The run's input could not be read or decoded; `str()` says why in a sentence."""


@dataclass(frozen=True)
class RunRouter:
    """One router a run drives: its own, or one ring's (`ring` names it)."""

    ring: str | None
    router: RouterModel

    @property
    def label(self) -> str:
        """`ring eu: haproxy ...`, or the router's own description for a single rollout."""
        return f"ring {self.ring}: {self.router.describe()}" if self.ring else self.router.describe()


@dataclass(frozen=True)
class StartedWith:
    """The parts of a run's input that say where its traffic is."""

    workflow_id: str
    run_id: str
    service: str | None
    version: str | None
    routers: list[RunRouter]

    def traffic_targets(self) -> tuple[str, ...]:
        """Every router's traffic target keys (see `RouterModel.traffic_targets`)."""
        return tuple(sorted({key for r in self.routers for key in traffic_targets_of(r.router)}))


async def started_with(temporal: Client, workflow_id: str, run_id: str, workflow_type: str) -> StartedWith:
    """Read the input of run `run_id` from its first history event.

    Raises `SpecUnreadable` when the history cannot be read, the payload cannot be decoded
    (another codec key) or it names no valid router; `RPCError` passes through.
    """
    if workflow_type not in (WORKFLOW_TYPE, RING_WORKFLOW_TYPE):
        raise SpecUnreadable(f"{workflow_id} is a {workflow_type} workflow, not a Sluice rollout")
    handle = temporal.get_workflow_handle(workflow_id, run_id=run_id)
    first = None
    async for event in handle.fetch_history_events(page_size=1):
        first = event
        break
    if first is None or not first.HasField("workflow_execution_started_event_attributes"):
        raise SpecUnreadable(f"the history of {workflow_id} does not begin with its start")
    payloads = list(first.workflow_execution_started_event_attributes.input.payloads)
    if not payloads:
        raise SpecUnreadable(f"{workflow_id} was started without an input")
    try:
        [raw] = await temporal.data_converter.decode(payloads[:1], [dict[str, Any]])
    except Exception as err:  # a codec with another key, or a payload that is not JSON
        raise SpecUnreadable(
            f"cannot decode the input of {workflow_id} ({type(err).__name__}: {err}); is "
            "SLUICE_CODEC_KEY the key the rollout was started with?"
        ) from None
    spec = raw.get("spec") if isinstance(raw, dict) else None
    if not isinstance(spec, dict):
        raise SpecUnreadable(f"the input of {workflow_id} holds no rollout spec")
    if workflow_type == RING_WORKFLOW_TYPE:
        rings = spec.get("rings")
        if not isinstance(rings, list) or not rings:
            raise SpecUnreadable(f"the ring rollout {workflow_id} lists no rings in its input")
        located = [(str(r.get("name")) if isinstance(r, dict) else "?", r) for r in rings]
        routers = [
            _router(workflow_id, name, ring.get("router") if isinstance(ring, dict) else None)
            for name, ring in located
        ]
    else:
        routers = [_router(workflow_id, None, spec.get("router"))]
    service, version = spec.get("service"), spec.get("version")
    return StartedWith(
        workflow_id,
        run_id,
        service if isinstance(service, str) else None,
        version if isinstance(version, str) else None,
        routers,
    )


def _router(workflow_id: str, ring: str | None, data: object) -> RunRouter:
    try:
        return RunRouter(ring, _ROUTER.validate_json(json.dumps(data)))
    except (ValidationError, TypeError, ValueError) as err:
        where = f"ring {ring}'s router" if ring else "router"
        raise SpecUnreadable(f"the {where} in the input of {workflow_id} is not valid: {err}") from None


__all__ = ["RPCError", "RunRouter", "SpecUnreadable", "StartedWith", "started_with"]
