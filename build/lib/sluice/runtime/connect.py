"""Connect to Temporal the way Temporal's own tools do (`temporalio.envconfig`).

`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`,
`TEMPORAL_PROFILE` and the TOML config file all apply, so the same commands work against
`sluice dev`, a self-hosted cluster or Temporal Cloud. Every client carries the tracing
interceptor and, when `SLUICE_CODEC_KEY` is set, encrypts payloads (see `sluice.runtime.codec`).
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from sluice.runtime import telemetry
from sluice.runtime.codec import data_converter

DEFAULT_ADDRESS = "127.0.0.1:7233"


async def connect_client(profile: str | None = None, runtime: Runtime | None = None) -> Client:
    """A client with Sluice's data converter and tracing; defaults to the local dev server."""
    config = ClientConfig.load_client_connect_config(profile=profile)
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return await Client.connect(
        **config,
        data_converter=data_converter(),
        interceptors=telemetry.interceptors(),
        runtime=runtime,
    )
