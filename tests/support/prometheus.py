"""A real Prometheus 2.42 on loopback scraping the given targets every second."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import ManagedProcess

PROMETHEUS_BIN = "prometheus"


@dataclass(frozen=True)
class PrometheusInstance:
    """A running Prometheus: its base URL and process."""

    process: ManagedProcess
    port: int
    config_path: Path

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:9090`."""
        return f"http://127.0.0.1:{self.port}"

    def query(self, promql: str, timeout: float = 5.0) -> dict[str, object]:
        """Run an instant query and return the decoded JSON body (any HTTP status)."""
        return query(self.url, promql, timeout)

    def wait_for_sample(self, promql: str, timeout: float = 30.0) -> None:
        """Poll until `promql` returns at least one sample (targets are found after a few s)."""

        def has_sample() -> bool:
            data = self.query(promql)["data"]
            assert isinstance(data, dict)
            return bool(data.get("result"))

        self.process.wait_ready(has_sample, timeout, f"a sample for {promql!r}")

    def stop(self) -> None:
        """Stop Prometheus by PID."""
        self.process.stop()


def write_config(path: Path, targets: Sequence[str], job: str = "demo") -> Path:
    """Write a config that scrapes `targets` (`host:port`, path `/metrics`) every 1s."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML, and needs no YAML library here.
    path.write_text(json.dumps(config, indent=2))
    return path


def query(base_url: str, promql: str, timeout: float = 5.0) -> dict[str, object]:
    """GET /api/v1/query and return the decoded JSON body, even for a 4xx answer."""
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body: dict[str, object] = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = json.loads(err.read())
    return body


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
        return bool(resp.status == 200)


def start_prometheus(
    workdir: Path, *, port: int, targets: Sequence[str], timeout: float = 30.0
) -> PrometheusInstance:
    """Write a config under `workdir`, start Prometheus on 127.0.0.1:`port`, wait for /-/ready."""
    cfg = write_config(workdir / "prometheus.yml", targets)
    proc = ManagedProcess(
        [
            PROMETHEUS_BIN,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        workdir / "prometheus.log",
        name="prometheus",
    ).start()
    instance = PrometheusInstance(process=proc, port=port, config_path=cfg)
    try:
        proc.wait_ready(lambda: _ready(instance.url), timeout, "/-/ready")
    except BaseException:
        proc.stop()
        raise
    return instance
