"""Replay saved histories with the worker's data converter: a change that breaks running rollouts fails here.

Histories live in tests/histories/. Refresh them (after an intended, patched change) with
`SLUICE_RECORD_HISTORIES=tests/histories pytest tests/workflow/test_rollout_workflow.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.rollout import RolloutWorkflow

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*.json"))


def test_histories_are_present() -> None:
    assert len(HISTORIES) >= 10, "tests/histories lost its saved rollouts"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"rollout-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[RolloutWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
