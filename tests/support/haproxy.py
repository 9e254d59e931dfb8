"""A real HAProxy 2.6 on loopback: one backend with a `stable` and a `canary` server."""

from __future__ import annotations

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
) -> Path:
    """Write an HAProxy config: backend `be_<service>` with servers `stable` and `canary`.

    `balance roundrobin` so that a split is exact over a window of requests; no health
    checks, so weights alone decide where requests go. `http-reuse never` and
    `option http-server-close` keep one request per server-side connection so the
    servers' counters and the split are easy to reason about in tests. `retries 1` with
    `option redispatch 1` sends a request that cannot reach a dead server to the other one
    at once (HAProxy otherwise waits 1 s per retry and then answers 503).
    """
    config = f"""\
global
    stats socket {admin_socket} mode 600 level {socket_level}
    stats timeout 30s
    maxconn 4096

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
) -> HAProxyInstance:
    """Write a config under `workdir`, start `haproxy -db -f cfg` and wait for its socket.

    The runtime API socket is `workdir/haproxy.sock` at `socket_level` (`admin` lets the
    router set weights; `operator` or `user` are for testing refusals).
    """
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
    )
    proc = ManagedProcess(
        [HAPROXY_BIN, "-db", "-f", str(cfg)], workdir / "haproxy.log", name="haproxy"
    ).start()
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
    )
