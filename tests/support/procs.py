"""Start and stop real helper processes on loopback: free ports, polling, PID-based shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it; a small race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Call `predicate` until it returns True; raise TimeoutError naming `what` after `timeout` s.

    Exceptions from `predicate` count as "not yet" (a server that is still starting refuses
    connections); the last one is chained to the TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except Exception as err:
            last_error = err
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g}s") from last_error
        time.sleep(interval)


class ManagedProcess:
    """A subprocess with its output in a log file, stopped by its PID (SIGTERM, then SIGKILL).

    Use as a context manager, or call `start()` and `stop()`. `stop()` is idempotent. The
    process gets its own session so that a Ctrl-C in the terminal does not hit it first.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.name = name or Path(self.argv[0]).name
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id; raises RuntimeError before `start()`."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the process (once); its stdout and stderr go to `log_path`."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        env = {**os.environ, **self.env} if self.env is not None else None
        self._proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
        )
        return self

    def check_alive(self) -> None:
        """Raise RuntimeError with the log's tail if the process has already exited."""
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} (pid {self._proc.pid}) exited with {self._proc.returncode}; "
                f"log {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the log file, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Like `wait_until`, but fail at once (with the log) if the process dies meanwhile."""

        def ready() -> bool:
            self.check_alive()
            return predicate()

        try:
            wait_until(ready, timeout, what=f"{self.name}: {what}")
        except TimeoutError as err:
            self.check_alive()
            raise TimeoutError(f"{err}; log {self.log_path}:\n{self.log_tail()}") from err

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process by PID, SIGKILL it after `grace` seconds; return its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
