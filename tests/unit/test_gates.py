"""What a waiting approval gate refuses, and how gate decisions read in the status, the UI and webhooks."""

from __future__ import annotations

from datetime import UTC, datetime

from sluice.activities.notify import headline
from sluice.cli.render import render_status
from sluice.contracts.notify import RolloutEvent
from sluice.contracts.status import (
    ApprovalWait,
    OperatorAction,
    Phase,
    RolloutStatus,
    refusal_at_gate,
)
from sluice.workflows.render import current_details
from tests.unit.test_cli import sluice

AT = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
GATE = ApprovalWait(step="approval by alice, bob", approvers=["alice", "bob"], since=AT)


def test_resume_never_passes_a_gate_and_says_to_approve() -> None:
    why = refusal_at_gate(GATE, "checkout", "resume", "alice")
    assert why is not None and "`resume` does not give" in why
    assert "sluice approve checkout --by NAME --reason R" in why


def test_promote_passes_a_gate_only_for_its_approvers() -> None:
    assert refusal_at_gate(GATE, "checkout", "promote", "bob") is None
    why = refusal_at_gate(GATE, "checkout", "promote", "mallory")
    assert why is not None and "'mallory' may not skip it" in why and "alice, bob" in why
    assert refusal_at_gate(GATE, "checkout", "promote", " ") is not None
    anyone = GATE.model_copy(update={"approvers": []})
    assert refusal_at_gate(anyone, "checkout", "promote", "carol") is None
    between_rings = refusal_at_gate(GATE, "checkout", "promote", "alice", promote_passes=False)
    assert between_rings is not None and "between rings" in between_rings


def test_pause_and_abort_are_never_refused_at_a_gate() -> None:
    assert refusal_at_gate(GATE, "checkout", "pause", "mallory") is None
    assert refusal_at_gate(GATE, "checkout", "abort", "mallory") is None


def _status() -> RolloutStatus:
    actions = [
        OperatorAction(
            action="promote_refused", reason="'mallory' may not skip it", by="mallory", at=AT, step_index=1
        ),
        OperatorAction(action="approve", reason="dashboards green", by="bob", at=AT, step_index=1),
        OperatorAction(action="pause", reason="lunch", by="carol", at=AT, step_index=2),
        OperatorAction(action="promote", reason="hotfix", by="alice", at=AT, step_index=2, gate="approval"),
        OperatorAction(
            action="approval_timeout", reason="no approval within 4h", by="sluice", at=AT, step_index=3
        ),
    ]
    return RolloutStatus(
        service="checkout",
        version="v2",
        spec_digest="d",
        phase=Phase.PROGRESSING,
        message="",
        step_index=2,
        step_count=5,
        step="shift to 50%",
        started_at=AT,
        actions=actions,
    )


def test_who_says_a_self_declared_name_is_unverified() -> None:
    _, approve, _, _, timeout = _status().actions
    assert approve.who() == "bob (unverified)"
    assert approve.model_copy(update={"verified": True}).who() == "bob"
    assert timeout.who() == "sluice"  # the engine's own decision


def test_status_and_web_ui_list_every_gate_decision_with_who_why_when() -> None:
    text = "\n".join(render_status(_status()))
    assert "mallory (unverified)" in text and "bob (unverified)" in text
    details = current_details(_status())
    assert "| gate decision | by | at (UTC) | step | why |" in details
    assert "| promote_refused | mallory (unverified) | 2026-12-03 14:00:00 | 2 |" in details
    assert "| approve | bob (unverified) | 2026-12-03 14:00:00 | 2 | dashboards green |" in details
    assert "| approval_timeout | sluice |" in details
    assert "| promote | alice (unverified) |" in details  # it skipped a gate
    assert "| pause |" not in details  # not a gate decision


def test_a_gate_decision_webhook_names_who_and_whether_verified() -> None:
    status = _status()
    event = RolloutEvent(
        kind="gate_decision",
        event_id="rollout-checkout/run/3",
        service="checkout",
        version="v2",
        stable_version="v1",
        phase="awaiting_approval",
        message="",
        step="approval",
        step_index=1,
        step_count=5,
        at=AT,
        action=status.actions[1],
    )
    assert headline(event) == "checkout v1 → v2: approve by bob (unverified): dashboards green"
    body = event.model_dump(mode="json")
    assert body["action"]["by"] == "bob" and body["action"]["verified"] is False


def test_help_of_approve_and_promote_does_not_claim_identity_is_checked() -> None:
    approve = " ".join(sluice("approve", "--help").stdout.split())
    assert "NOT verified" in approve and "recorded as unverified" in approve
    promote = " ".join(sluice("promote", "--help").stdout.split())
    assert "--full" in promote and "not verified" in promote
