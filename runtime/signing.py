"""Sign an approval statement with the approver's SSH key (`ssh-keygen -Y sign`), on their machine.

Only the signature leaves this process; the key stays where it is (an agent-held or
passphrase-protected key works as `ssh-keygen` itself allows).
"""

from __future__ import annotations

import shutil
import subprocess

from sluice.contracts.approvals import SIGNATURE_NAMESPACE


class SigningFailed(Exception):
    """`ssh-keygen -Y sign` is missing or refused (no such key, wrong passphrase)."""


def sign_statement(key_path: str, statement: str) -> str:
    """The armored SSH signature of `statement` under `SIGNATURE_NAMESPACE` by the key at `key_path`."""
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        raise SigningFailed("ssh-keygen is not installed here; it signs approvals (OpenSSH 8.1 or later)")
    done = subprocess.run(
        [ssh_keygen, "-Y", "sign", "-f", key_path, "-n", SIGNATURE_NAMESPACE],
        input=statement.encode(),
        capture_output=True,
        timeout=120,  # a passphrase prompt waits for the person
        check=False,
    )
    signature = done.stdout.decode(errors="replace")
    if done.returncode != 0 or "BEGIN SSH SIGNATURE" not in signature:
        why = " ".join(done.stderr.decode(errors="replace").split()) or f"exit {done.returncode}"
        raise SigningFailed(f"ssh-keygen could not sign with {key_path}: {why}")
    return signature
