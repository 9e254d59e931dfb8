"""Replay saved histories with the worker's data converter: a change that breaks running rollouts fails here.

Histories of every workflow type (`Rollout`, `RingRollout` and its rings' rollouts) live in
tests/histories/. Add fresh ones (after an intended, patched change) with
`SLUICE_RECORD_HISTORIES=tests/histories pytest tests/workflow/test_rollout_workflow.py \
tests/workflow/test_strategies.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from sluice.workflows.rings import RingRolloutWorkflow
from sluice.workflows.rollout import RolloutWorkflow

WORKFLOWS = [RolloutWorkflow, RingRolloutWorkflow]

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*.json"))


def test_histories_are_present() -> None:
    assert len(HISTORIES) >= 10, "tests/histories lost its saved rollouts"


def test_every_workflow_type_has_histories() -> None:
    types = {
        WorkflowHistory.from_json("x", p.read_text())
        .events[0]
        .workflow_execution_started_event_attributes.workflow_type.name
        for p in HISTORIES
    }
    assert types >= {"Rollout", "RingRollout"}, types


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"rollout-{path.stem}", path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
