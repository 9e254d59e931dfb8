"""Signed approvals: the statement an approver signs with an SSH key, and its fields. No I/O.

The CLI (`sluice approve --sign-with KEY`) signs the statement with `ssh-keygen -Y sign` under
the namespace `SIGNATURE_NAMESPACE`; the workflow checks every field against the gate that
waits (this rollout, this run, this gate, this approver, not expired) and a worker activity
checks the signature with `ssh-keygen -Y verify` against the worker's `allowed_signers` file
(git's convention for signed commits). The statement and the signature are public: no key
ever leaves the approver's machine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

SIGNATURE_NAMESPACE = "sluice-approval"
"""The `-n` namespace of `ssh-keygen -Y sign/verify`: a signature made for anything else
(a git commit, a file) is not an approval, and an approval is not anything else."""

MAX_VALIDITY = timedelta(hours=1)
"""A statement expiring later than this after the workflow sees it is refused."""

_HEADER = "sluice approval v1"
_FIELDS = ("workflow_id", "run_id", "gate", "gate_since", "by", "expires")


def approval_statement(
    workflow_id: str, run_id: str, gate: str, gate_since: datetime, by: str, expires: datetime
) -> str:
    """The text an approver signs: one `key: value` line per field, after a version header."""
    values = {
        "workflow_id": workflow_id,
        "run_id": run_id,
        "gate": gate,
        "gate_since": _iso(gate_since),
        "by": by,
        "expires": _iso(expires),
    }
    if any("\n" in v for v in values.values()):
        raise ValueError("a signed approval's fields must be single lines")
    return "\n".join([_HEADER, *(f"{k}: {values[k]}" for k in _FIELDS)]) + "\n"


def statement_problem(
    statement: str,
    workflow_id: str,
    run_id: str,
    gate: str,
    gate_since: datetime,
    by: str,
    now: datetime,
) -> str | None:
    """Why `statement` is not an approval of this gate by `by` now, else None (deterministic)."""
    lines = statement.splitlines()
    if not lines or lines[0] != _HEADER:
        return f"the signed statement does not start with {_HEADER!r}"
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    expected = {
        "workflow_id": workflow_id,
        "run_id": run_id,
        "gate": gate,
        "gate_since": _iso(gate_since),
        "by": by,
    }
    for key, value in expected.items():
        if fields.get(key) != value:
            return (
                f"the signed statement is for {key} {fields.get(key)!r}, not {value!r} "
                "(signed for another rollout, run, gate or approver: sign again for this one)"
            )
    try:
        expires = datetime.fromisoformat(fields.get("expires", ""))
    except ValueError:
        return "the signed statement has no valid `expires`"
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if expires <= now:
        return f"the signed approval expired at {_iso(expires)}: sign again"
    if expires - now > MAX_VALIDITY:
        return f"the signed approval is valid for longer than {MAX_VALIDITY}: sign one that expires sooner"
    return None


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds")
