"""Verify a signed approval with `ssh-keygen -Y verify` against the worker's allowed signers.

The allowed signers file (git's format: `alice namespaces="sluice-approval" ssh-ed25519 AAAA...`)
is named by the worker's `SLUICE_ALLOWED_SIGNERS`, read here, so it is the worker's
configuration, not the spec's: whoever can start a rollout cannot also choose whose keys count.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from temporalio import activity

from sluice.contracts.approvals import SIGNATURE_NAMESPACE
from sluice.contracts.calls import VerifyApprovalInput, VerifyApprovalResult
from sluice.contracts.text import cap

ALLOWED_SIGNERS_ENV = "SLUICE_ALLOWED_SIGNERS"


@activity.defn(name="verify_approval")
async def verify_approval(inp: VerifyApprovalInput) -> VerifyApprovalResult:
    """Verified only if `signature` over `statement` is by a key the allowed signers list for `principal`."""
    return await asyncio.to_thread(_verify, inp)


def _verify(inp: VerifyApprovalInput) -> VerifyApprovalResult:
    allowed = os.environ.get(ALLOWED_SIGNERS_ENV, "").strip()
    if not allowed:
        why = f"this worker has no ${ALLOWED_SIGNERS_ENV}: it cannot verify signed approvals"
        return VerifyApprovalResult(verified=False, reason=why)
    if not Path(allowed).is_file():
        return VerifyApprovalResult(
            verified=False, reason=f"${ALLOWED_SIGNERS_ENV} ({allowed}) is not a file"
        )
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        return VerifyApprovalResult(verified=False, reason="ssh-keygen is not installed on this worker")
    with tempfile.TemporaryDirectory(prefix="sluice-approval-") as tmp:
        signature = Path(tmp, "approval.sig")
        signature.write_text(inp.signature)
        command = [ssh_keygen, "-Y", "verify", "-f", allowed, "-I", inp.principal, "-n", SIGNATURE_NAMESPACE]
        done = subprocess.run(
            [*command, "-s", str(signature)],
            input=inp.statement.encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=10,
            check=False,
        )
    text = " ".join(done.stdout.decode(errors="replace").split())
    if done.returncode == 0:
        return VerifyApprovalResult(verified=True, reason=cap(text, 200))
    return VerifyApprovalResult(
        verified=False, reason=cap(f"the signature does not verify for {inp.principal!r}: {text}", 300)
    )
