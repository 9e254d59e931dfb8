"""HTTP provider: a synthetic smoke check, `requests` GETs whose success ratio must stay high."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from sluice.activities.providers._verdict import Wording, ratio_verdict
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import HttpMetric, MetricSpec
from sluice.contracts.status import MetricVerdict


class HttpSmokeCheck:
    """Sends `metric.requests` concurrent GETs to `metric.url`; a status below 400 is a success.

    A request that cannot connect or times out counts as a failure, so a check whose
    target is down FAILs instead of being inconclusive: the URL names the new version
    (or the route to it), and if the engine cannot reach it, users most likely cannot
    either. There is no minimum sample here: the engine sends the requests itself, so
    the count is always `metric.requests`.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport

    async def measure(self, metric: MetricSpec, tick: AnalyzeInput) -> MetricVerdict:
        """Send the GETs and judge the success ratio against `metric.min_success_ratio`."""
        assert isinstance(metric, HttpMetric)
        timeout = metric.timeout.total_seconds()
        async with httpx.AsyncClient(
            timeout=timeout, transport=self._transport, follow_redirects=False
        ) as client:
            outcomes = await asyncio.gather(*(_get(client, metric.url) for _ in range(metric.requests)))
        failures = Counter(o for o in outcomes if o is not None)
        succeeded = metric.requests - sum(failures.values())
        counts: dict[str, float] = {
            "requests": metric.requests,
            "succeeded": succeeded,
            "failed": metric.requests - succeeded,
        }
        note = "; failures: " + ", ".join(f"{n}× {why}" for why, n in failures.items()) if failures else ""
        return ratio_verdict(
            metric.name,
            succeeded,
            metric.requests,
            Wording("{part} of {whole} GETs succeeded", "GETs", "succeeded"),
            low=metric.min_success_ratio,
            counts=counts,
            note=note,
        )


async def _get(client: httpx.AsyncClient, url: str) -> str | None:
    """None for a success, else a short reason (`HTTP 500`, `connection refused`, `timeout`)."""
    try:
        resp = await client.get(url)
    except httpx.TimeoutException:
        return "timeout"
    except httpx.ConnectError as err:
        return "connection refused" if _refused(err) else "connect error"
    except httpx.HTTPError as err:
        return type(err).__name__
    return None if resp.status_code < 400 else f"HTTP {resp.status_code}"


def _refused(err: BaseException) -> bool:
    """True if a ConnectionRefusedError is in the chain (anyio hides it two levels down)."""
    seen: set[int] = set()
    stack: list[BaseException] = [err]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False
