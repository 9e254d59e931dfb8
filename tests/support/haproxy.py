"""A real HAProxy 2.6 on loopback: one backend with a `stable` and a `canary` server."""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import ManagedProcess

HAPROXY_BIN = "haproxy"
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes on Linux, including the NUL


@dataclass(frozen=True)
class HAProxyInstance:
    """A running HAProxy: where it listens, its runtime API socket and its process."""

    process: ManagedProcess
    config_path: Path
    admin_socket: Path
    frontend_port: int
    backend: str
    stable_server: str = "stable"
    canary_server: str = "canary"
    master_worker: bool = False
    state_file: Path | None = None

    @property
    def url(self) -> str:
        """The frontend's base URL, e.g. `http://127.0.0.1:8080`."""
        return f"http://127.0.0.1:{self.frontend_port}"

    def router(self) -> dict[str, str]:
        """The spec's `router:` section that drives this instance (`type: haproxy`)."""
        return {
            "type": "haproxy",
            "admin_socket": str(self.admin_socket),
            "backend": self.backend,
            "stable_server": self.stable_server,
            "canary_server": self.canary_server,
        }

    def command(self, command: str, timeout: float = 5.0) -> str:
        """Send one runtime API command to this instance and return the reply."""
        return runtime_command(self.admin_socket, command, timeout)

    def stop(self) -> None:
        """Stop HAProxy by PID."""
        self.process.stop()

    def worker_pid(self) -> int:
        """The pid of the process that answers the runtime API (`show info`)."""
        for line in self.command("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise RuntimeError(f"no Pid in `show info` from {self.admin_socket}")

    def save_server_state(self) -> None:
        """`show servers state` into the config's `server-state-file`, as a reload script does."""
        if self.state_file is None:
            raise RuntimeError("this HAProxy was started without a server-state-file")
        self.state_file.write_text(self.command("show servers state"))

    def reload(self, timeout: float = 10.0) -> None:
        """Reload like `systemctl reload haproxy`: SIGUSR2 to the master (started with `-W`).

        A new worker reads the config file again and takes over; its runtime weights are the
        config's (or the `server-state-file`'s, if the config loads one). Returns once the new
        worker answers on the runtime API.
        """
        if not self.master_worker:
            raise RuntimeError("reload needs an HAProxy started with master_worker=True")
        before = self.worker_pid()

        def new_worker() -> bool:
            try:
                return self.worker_pid() != before
            except (OSError, RuntimeError, ValueError):
                return False

        # Just after it starts, the master may not have its signal handlers yet (a SIGUSR2
        # then goes unnoticed): ask again every 2 s until a new worker answers.
        for _ in range(max(int(timeout / 2), 1) - 1):
            os.kill(self.process.pid, signal.SIGUSR2)
            try:
                self.process.wait_ready(new_worker, 2.0, "a new worker after the reload")
                return
            except TimeoutError:
                continue
        os.kill(self.process.pid, signal.SIGUSR2)
        self.process.wait_ready(new_worker, 2.0, "a new worker after the reload")


def write_config(
    path: Path,
    *,
    service: str,
    frontend_port: int,
    stable_addr: str,
    canary_addr: str,
    admin_socket: Path,
    stable_weight: int = 100,
    canary_weight: int = 0,
    socket_level: str = "admin",
    state_file: Path | None = None,
) -> Path:
    """Write an HAProxy config: backend `be_<service>` with servers `stable` and `canary`.

    `balance roundrobin` so that a split is exact over a window of requests; no health
    checks, so weights alone decide where requests go. `http-reuse never` and
    `option http-server-close` keep one request per server-side connection so the
    servers' counters and the split are easy to reason about in tests. `retries 1` with
    `option redispatch 1` sends a request that cannot reach a dead server to the other one
    at once (HAProxy otherwise waits 1 s per retry and then answers 503).

    With `state_file`, a reload keeps the runtime weights saved in it (`server-state-file`
    and `load-server-state-from-file global`, the recipe of docs/operations.md).
    """
    state_global = f"    server-state-file {state_file}\n" if state_file is not None else ""
    state_defaults = "    load-server-state-from-file global\n" if state_file is not None else ""
    config = f"""\
global
    stats socket {admin_socket} mode 600 level {socket_level}
    stats timeout 30s
    maxconn 4096
{state_global}
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    option http-server-close
    http-reuse never
    retries 1
    option redispatch 1
{state_defaults}
frontend fe_{service}
    bind 127.0.0.1:{frontend_port}
    default_backend be_{service}

backend be_{service}
    balance roundrobin
    server stable {stable_addr} weight {stable_weight}
    server canary {canary_addr} weight {canary_weight}
"""
    if len(str(admin_socket)) > _MAX_UNIX_PATH:
        raise ValueError(f"unix socket path too long ({len(str(admin_socket))} > 107): {admin_socket}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config)
    return path


def runtime_command(admin_socket: Path | str, command: str, timeout: float = 5.0) -> str:
    """Send one command to the runtime API (unix socket path or `host:port`); return the reply.

    HAProxy answers one command per connection unless told otherwise, then closes it.
    """
    target = str(admin_socket)
    sock: socket.socket
    if target.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: str | tuple[str, int] = target
    else:
        host, _, port = target.rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = (host, int(port))
    with sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(command.encode() + b"\n")
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def start_haproxy(
    workdir: Path,
    *,
    service: str,
    frontend_port: int,
    stable_addr: str,
    canary_addr: str,
    stable_weight: int = 100,
    canary_weight: int = 0,
    socket_level: str = "admin",
    timeout: float = 10.0,
    master_worker: bool = False,
    keep_state: bool = False,
) -> HAProxyInstance:
    """Write a config under `workdir`, start `haproxy -db -f cfg` and wait for its socket.

    The runtime API socket is `workdir/haproxy.sock` at `socket_level` (`admin` lets the
    router set weights; `operator` or `user` are for testing refusals). `master_worker`
    starts it with `-W` so that `reload()` works as a systemd reload does; `keep_state`
    adds a `server-state-file` (`workdir/haproxy.state`) that a reload loads.
    """
    state_file = workdir / "haproxy.state" if keep_state else None
    admin_socket = workdir / "haproxy.sock"
    cfg = write_config(
        workdir / "haproxy.cfg",
        service=service,
        frontend_port=frontend_port,
        stable_addr=stable_addr,
        canary_addr=canary_addr,
        admin_socket=admin_socket,
        stable_weight=stable_weight,
        canary_weight=canary_weight,
        socket_level=socket_level,
        state_file=state_file,
    )
    argv = [HAPROXY_BIN, *(["-W"] if master_worker else []), "-db", "-f", str(cfg)]
    proc = ManagedProcess(argv, workdir / "haproxy.log", name="haproxy").start()
    try:
        proc.wait_ready(
            lambda: "Name:" in runtime_command(admin_socket, "show info", 1.0),
            timeout,
            f"runtime API on {admin_socket}",
        )
    except BaseException:
        proc.stop()
        raise
    return HAProxyInstance(
        process=proc,
        config_path=cfg,
        admin_socket=admin_socket,
        frontend_port=frontend_port,
        backend=f"be_{service}",
        master_worker=master_worker,
        state_file=state_file,
    )
