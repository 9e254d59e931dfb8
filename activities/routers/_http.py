"""HTTP calls to a proxy's API (Traefik's, Caddy's admin API): transport failures are ROUTER_UNREACHABLE."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from sluice.contracts import errors
from sluice.contracts.text import cap


async def send(
    client: httpx.AsyncClient, method: str, url: str, where: str, *, json: Any = None
) -> httpx.Response:
    """One request; an error that is not an HTTP answer (refused, timed out, reset) is retryable."""
    try:
        return await client.request(method, url, json=json)
    except httpx.TimeoutException:
        raise ApplicationError(
            f"{where}: no answer from {url} within {client.timeout.read or 0:g}s",
            type=errors.ROUTER_UNREACHABLE,
        ) from None
    except httpx.HTTPError as err:
        raise ApplicationError(
            cap(f"{where}: {method} {url} failed: {err or type(err).__name__}"),
            type=errors.ROUTER_UNREACHABLE,
        ) from None


def body_of(response: httpx.Response, limit: int = 160) -> str:
    """The answer's body as one capped line, for error messages."""
    return cap(" ".join(response.text.split()) or f"HTTP {response.status_code}", limit)


def json_of(response: httpx.Response, where: str) -> Any:
    """The answer's JSON; ROUTER_REJECTED if it is not JSON (not the API the spec names)."""
    try:
        return response.json()
    except ValueError:
        raise ApplicationError(
            cap(f"{where}: {response.request.url} did not answer JSON: {body_of(response, 80)}"),
            type=errors.ROUTER_REJECTED,
            non_retryable=True,
        ) from None
