"""Files a router owns (NGINX's include file, Traefik's dynamic file): read, and replaced atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from temporalio.exceptions import ApplicationError

from sluice.contracts import errors
from sluice.contracts.text import cap


def read_owned(path: Path, where: str, fix: str) -> str:
    """The file's text; ROUTER_CONFIG (not retryable) naming `fix` when it is missing or unreadable."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise config_error(f"{where}: {path} does not exist; {fix}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise config_error(f"{where}: cannot read {path}: {err}") from None


def replace_owned(path: Path, text: str, where: str) -> None:
    """Replace the file's content in one rename, so a reader (NGINX, Traefik's watch) never sees half.

    The new file is written next to the old one (a rename is atomic only within a file
    system), flushed to disk, and given the old file's permission bits.
    """
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    except OSError as err:
        raise config_error(f"{where}: cannot stat {path}: {err}") from None
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".sluice", dir=path.parent)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as err:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise config_error(
            f"{where}: cannot write {path} ({err.strerror or err}); the worker's user must be able "
            f"to create files in {path.parent}"
        ) from None


def config_error(message: str) -> ApplicationError:
    """ROUTER_CONFIG: the router is set up wrong; a human has to fix it, so not retryable."""
    return ApplicationError(cap(message), type=errors.ROUTER_CONFIG, non_retryable=True)
