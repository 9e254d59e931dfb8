"""Signed approvals: the statement's checks, and real `ssh-keygen -Y sign/verify` with keys made here."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluice.activities.approvals import ALLOWED_SIGNERS_ENV, _verify
from sluice.contracts.approvals import SIGNATURE_NAMESPACE, approval_statement, statement_problem
from sluice.contracts.calls import VerifyApprovalInput
from sluice.runtime.signing import SigningFailed, sign_statement

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=5)


def statement(**change: object) -> str:
    fields: dict[str, object] = {
        "workflow_id": "rollout-checkout",
        "run_id": "run-1",
        "gate": "approval by alice, signed",
        "gate_since": SINCE,
        "by": "alice",
        "expires": NOW + timedelta(minutes=10),
        **change,
    }
    return approval_statement(**fields)  # type: ignore[arg-type]


def problem(text: str) -> str | None:
    return statement_problem(
        text, "rollout-checkout", "run-1", "approval by alice, signed", SINCE, "alice", NOW
    )


def test_a_statement_binds_the_rollout_run_gate_approver_and_expiry() -> None:
    assert problem(statement()) is None
    assert "workflow_id" in (problem(statement(workflow_id="rollout-payments")) or "")
    assert "run_id" in (problem(statement(run_id="run-0")) or "")
    assert "gate_since" in (problem(statement(gate_since=SINCE - timedelta(hours=2))) or "")  # another gate
    assert "by" in (problem(statement(by="mallory")) or "")
    assert "expired" in (problem(statement(expires=NOW - timedelta(seconds=1))) or "")
    assert "longer than" in (problem(statement(expires=NOW + timedelta(hours=3))) or "")
    assert "does not start" in (problem("approve everything\n") or "")


@dataclass
class Keys:
    alice: Path
    mallory: Path
    allowed_signers: Path


def _keypair(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True
    )
    return path


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Keys]:
    alice, mallory = _keypair(tmp_path / "alice"), _keypair(tmp_path / "mallory")
    allowed = tmp_path / "allowed_signers"
    public = Path(f"{alice}.pub").read_text().split()
    allowed.write_text(f'alice namespaces="{SIGNATURE_NAMESPACE}" {public[0]} {public[1]}\n')
    monkeypatch.setenv(ALLOWED_SIGNERS_ENV, str(allowed))
    yield Keys(alice, mallory, allowed)


def test_a_valid_signature_verifies_and_no_key_reaches_the_signature(keys: Keys) -> None:
    text = statement()
    signature = sign_statement(str(keys.alice), text)
    assert "BEGIN SSH SIGNATURE" in signature
    assert "PRIVATE KEY" not in signature and keys.alice.read_text().splitlines()[1] not in signature
    result = _verify(VerifyApprovalInput(statement=text, signature=signature, principal="alice"))
    assert result.verified, result.reason


def test_forged_altered_or_misattributed_signatures_are_refused(keys: Keys) -> None:
    text = statement()
    forged = sign_statement(str(keys.mallory), text)  # mallory's key, claiming to be alice
    result = _verify(VerifyApprovalInput(statement=text, signature=forged, principal="alice"))
    assert not result.verified and "does not verify for 'alice'" in result.reason
    genuine = sign_statement(str(keys.alice), text)
    altered = text.replace("run-1", "run-2")  # replayed on another run
    assert not _verify(VerifyApprovalInput(statement=altered, signature=genuine, principal="alice")).verified
    assert not _verify(VerifyApprovalInput(statement=text, signature=genuine, principal="bob")).verified


def test_a_signature_for_another_purpose_is_not_an_approval(keys: Keys, tmp_path: Path) -> None:
    text = statement()
    other = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(keys.alice), "-n", "git"],
        input=text.encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert not _verify(VerifyApprovalInput(statement=text, signature=other, principal="alice")).verified


def test_a_worker_without_allowed_signers_verifies_nothing(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = statement()
    signature = sign_statement(str(keys.alice), text)
    monkeypatch.delenv(ALLOWED_SIGNERS_ENV)
    result = _verify(VerifyApprovalInput(statement=text, signature=signature, principal="alice"))
    assert not result.verified and ALLOWED_SIGNERS_ENV in result.reason


def test_signing_with_a_missing_key_says_so(tmp_path: Path) -> None:
    with pytest.raises(SigningFailed, match="could not sign"):
        sign_statement(str(tmp_path / "nope"), statement())


def test_require_verified_changes_the_digest_only_when_set() -> None:
    from sluice.contracts.spec import load_spec

    text = (Path(__file__).resolve().parents[2] / "examples" / "rollout.yaml").read_text()
    gated = text.replace("- pause: {}", "- approval: {approvers: [alice]}")
    explicit = gated.replace("[alice]}", "[alice], require_verified: false}")
    signed = gated.replace("[alice]}", "[alice], require_verified: true}")
    assert load_spec(gated).digest() == load_spec(explicit).digest() != load_spec(signed).digest()
