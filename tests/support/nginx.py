"""A real NGINX (Debian's package) on loopback: one upstream whose two servers live in an include file."""

from __future__ import annotations

import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import ManagedProcess

NGINX_BIN = shutil.which("nginx") or "/usr/sbin/nginx"
"""Debian installs it in /usr/sbin, which a non-root user's PATH often lacks."""


@dataclass(frozen=True)
class NginxInstance:
    """A running NGINX: its prefix directory, config, the include file Sluice owns, and its port."""

    process: ManagedProcess
    prefix: Path
    config_path: Path
    upstream_file: Path
    frontend_port: int
    stable_addr: str
    canary_addr: str

    @property
    def url(self) -> str:
        """The frontend's base URL, e.g. `http://127.0.0.1:8080`."""
        return f"http://127.0.0.1:{self.frontend_port}"

    @property
    def pid_file(self) -> Path:
        return self.prefix / "nginx.pid"

    def router(self) -> dict[str, str]:
        """The spec's `router:` section that drives this instance (`type: nginx`)."""
        return {
            "type": "nginx",
            "binary": NGINX_BIN,
            "config": str(self.config_path),
            "prefix": str(self.prefix),
            "upstream_file": str(self.upstream_file),
            "stable_server": self.stable_addr,
            "canary_server": self.canary_addr,
        }

    def stop(self) -> None:
        """Stop NGINX by PID (SIGTERM: a fast shutdown of the master and its workers)."""
        self.process.stop()


def write_config(prefix: Path, *, frontend_port: int, upstream_file: Path, extra_http: str = "") -> Path:
    """Write `nginx.conf` under `prefix`: one upstream `demo` that includes `upstream_file`.

    One worker process, so the weighted round robin is exact over each cycle (every worker
    keeps its own cycle). Logs, pid and temporary files stay under `prefix`, so NGINX runs as
    any user. `proxy_next_upstream error` (the default) sends a request a dead server refused to
    the other server.
    """
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    config = f"""\
worker_processes 1;
pid nginx.pid;
error_log logs/error.log notice;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    upstream demo {{
        include {upstream_file};
    }}
    server {{
        listen 127.0.0.1:{frontend_port};
        location / {{
            proxy_pass http://demo;
        }}
    }}
{extra_http}}}
"""
    path = prefix / "nginx.conf"
    path.write_text(config)
    return path


def write_servers(upstream_file: Path, stable_addr: str, canary_addr: str, stable: int, canary: int) -> None:
    """Write the include file by hand (as an operator would), `0` as `down`."""

    def line(addr: str, weight: int) -> str:
        return f"server {addr} {'down' if weight == 0 else f'weight={weight}'};\n"

    upstream_file.write_text(line(stable_addr, stable) + line(canary_addr, canary))


def start_nginx(
    prefix: Path,
    *,
    frontend_port: int,
    stable_addr: str,
    canary_addr: str,
    stable_weight: int = 100,
    canary_weight: int = 0,
    timeout: float = 10.0,
) -> NginxInstance:
    """Write the config and include file under `prefix`, run `nginx -g 'daemon off;'`, wait for it."""
    upstream_file = prefix / "sluice" / "demo-servers.conf"
    upstream_file.parent.mkdir(parents=True, exist_ok=True)
    write_servers(upstream_file, stable_addr, canary_addr, stable_weight, canary_weight)
    config = write_config(prefix, frontend_port=frontend_port, upstream_file=upstream_file)
    proc = ManagedProcess(
        [NGINX_BIN, "-p", str(prefix), "-c", str(config), "-e", "stderr", "-g", "daemon off;"],
        prefix / "nginx.out",
        name="nginx",
    ).start()
    url = f"http://127.0.0.1:{frontend_port}/healthz"
    try:
        proc.wait_ready(lambda: (prefix / "nginx.pid").exists() and _status(url) == 200, timeout, url)
    except BaseException:
        proc.stop()
        raise
    return NginxInstance(
        process=proc,
        prefix=prefix,
        config_path=config,
        upstream_file=upstream_file,
        frontend_port=frontend_port,
        stable_addr=stable_addr,
        canary_addr=canary_addr,
    )


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=1) as resp:
        status: int = resp.status
        return status
