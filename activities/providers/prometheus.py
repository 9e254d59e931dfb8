"""Prometheus provider: an instant PromQL query whose single value must stay within min/max."""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from sluice.activities.providers._compare import compare_verdict, latency_totals
from sluice.activities.providers._verdict import bounds, number, value_verdict, verdict
from sluice.activities.sequential import Totals
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import MetricSpec, PrometheusMetric
from sluice.contracts.status import MetricVerdict, Verdict
from sluice.contracts.text import cap

RETRIES = 2
"""Extra attempts for a query that timed out, could not connect or got a 5xx."""
BACKOFF = 0.2
"""Seconds before the first retry; doubled for each next one."""

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")


class QueryProblem(Exception):
    """Why a query gave no usable value; becomes an inconclusive verdict's detail."""


def render_query(query: str, tick: AnalyzeInput, version: str | None = None) -> str:
    """Fill `{{version}}`, `{{stable_version}}` and `{{service}}` from the tick.

    `version` replaces the tick's version for `{{version}}` (a comparison fills it with the
    stable version for the stable series). The values were validated by the spec (letters,
    digits and `_.+-`), so they cannot break out of a PromQL string. Raises QueryProblem for
    an unknown placeholder or `{{stable_version}}` when the spec has none.
    """
    values = {
        "version": version or tick.version,
        "stable_version": tick.stable_version,
        "service": tick.service,
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise QueryProblem(
                f"unknown placeholder {{{{{name}}}}}; use {{{{version}}}}, "
                "{{stable_version}} or {{service}}"
            )
        value = values[name]
        if value is None:
            raise QueryProblem(
                f"the query uses {{{{{name}}}}} but the spec sets no {name}; add it to the spec"
            )
        return value

    return _PLACEHOLDER.sub(fill, query)


class PrometheusQuery:
    """Runs `metric.query` at Prometheus' current time and judges its single value.

    The result must be a scalar or a vector with exactly one sample. Everything that
    leaves no value (Prometheus unreachable, an HTTP error, a bad query, an empty result,
    NaN, several series) is inconclusive, with Prometheus' own error text in `detail`.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport

    async def measure(self, metric: MetricSpec, tick: AnalyzeInput) -> MetricVerdict:
        """Query Prometheus and compare the value with `metric.min` / `metric.max`."""
        assert isinstance(metric, PrometheusMetric)
        if metric.compare is not None:
            return await self._compare(metric, tick)
        assert metric.query is not None
        bound = _bound(metric)
        try:
            query = render_query(metric.query, tick)
            value = await self._query(metric, query)
        except QueryProblem as problem:
            return verdict(metric.name, Verdict.INCONCLUSIVE, str(problem), bound=bound)
        return value_verdict(metric.name, value, low=metric.min, high=metric.max)

    async def _query(self, metric: PrometheusMetric, query: str) -> float:
        return _single_value(await self._data(metric, query), query)

    async def _data(self, metric: PrometheusMetric, query: str, at: datetime | None = None) -> Any:
        """The `data` of a successful instant query (at Prometheus' now, or `at`); QueryProblem otherwise.

        A timeout, a connection error or a 5xx from Prometheus is retried (RETRIES more
        attempts, short backoff); a rejected query (4xx) is not: it would fail again.
        """
        timeout = metric.timeout.total_seconds()
        url = f"{metric.address.rstrip('/')}/api/v1/query"
        params = {"query": query, "timeout": f"{timeout:g}s"}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                async with httpx.AsyncClient(timeout=timeout, transport=self._transport) as client:
                    resp = await client.get(url, params=params)
            except httpx.TimeoutException:
                if not last:
                    await asyncio.sleep(BACKOFF * 2**attempt)
                    continue
                raise QueryProblem(
                    f"Prometheus at {metric.address} did not answer within {timeout:g}s "
                    f"({RETRIES + 1} attempts)"
                ) from None
            except httpx.HTTPError as err:
                if not last:
                    await asyncio.sleep(BACKOFF * 2**attempt)
                    continue
                raise QueryProblem(
                    f"Prometheus at {metric.address} is unreachable ({RETRIES + 1} attempts): "
                    f"{err or type(err).__name__}"
                ) from None
            if resp.status_code >= 500 and not last:
                await asyncio.sleep(BACKOFF * 2**attempt)
                continue
            break

        try:
            body: Any = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise QueryProblem(
                f"Prometheus at {metric.address} answered HTTP {resp.status_code} without JSON: "
                f"{cap(resp.text, 120)!r}"
            )
        if resp.status_code >= 400 or body.get("status") != "success":
            kind = body.get("errorType", "error")
            raise QueryProblem(
                f"Prometheus rejected the query (HTTP {resp.status_code}, {kind}): "
                f"{body.get('error', 'no error message')}"
            )
        return body.get("data")

    # --- compare: stable ----------------------------------------------------------------------

    async def _compare(self, metric: PrometheusMetric, tick: AnalyzeInput) -> MetricVerdict:
        """Increases of both versions' counters since the first weight > 0; one sequential-test tick."""
        bound = f"e < {number(1 / metric.alpha)}"
        if tick.since is None or tick.stable_version is None:
            why = "the analysis start time" if tick.since is None else "stable_version"
            return verdict(
                metric.name, Verdict.INCONCLUSIVE, f"cannot compare: {why} is unknown", bound=bound
            )
        # Exact counts since the first weight > 0: each series' value now minus its value then.
        since = tick.since
        versions = (tick.version, tick.stable_version)
        note = ""
        try:
            if metric.histogram is not None:
                canary_h, stable_h = await asyncio.gather(
                    *(self._buckets(metric, render_query(metric.histogram, tick, v), since) for v in versions)
                )
                shared = latency_totals(canary_h, stable_h)
                if shared is None:
                    raise QueryProblem("the two versions' histograms share no finite bucket bound (`le`)")
                events, totals = shared
                kind: Literal["errors", "latency"] = "latency"
            else:
                assert metric.requests is not None and metric.errors is not None
                queries = [
                    render_query(q, tick, v) for v in versions for q in (metric.requests, metric.errors)
                ]
                c_req, c_err, s_req, s_err = await asyncio.gather(
                    *(self._increase(metric, q, since) for q in queries)
                )
                if c_req is None or s_req is None:
                    side = "new" if c_req is None else "stable"
                    raise QueryProblem(
                        f"no data for the {side} version's requests ({queries[0 if c_req is None else 2]}); "
                        "check the selector and the version label"
                    )
                if c_err is None or s_err is None:
                    note = "; no error series yet, counted as 0 errors"
                events = ["5xx"]
                totals = Totals(
                    canary_requests=c_req,
                    stable_requests=s_req,
                    canary_events=(c_err or 0.0,),
                    stable_events=(s_err or 0.0,),
                )
                kind = "errors"
        except QueryProblem as problem:
            return verdict(metric.name, Verdict.INCONCLUSIVE, str(problem), bound=bound)
        return compare_verdict(
            metric.name,
            kind,
            events,
            totals,
            tick,
            alpha=metric.alpha,
            tolerance=metric.tolerance,
            min_requests=metric.min_requests,
            note=note,
        )

    async def _increase(self, metric: PrometheusMetric, selector: str, since: datetime) -> float | None:
        """The counters' exact increase since `since`, summed over series; None when there is no series."""
        counted = await self._counted(metric, selector, since)
        if not counted:
            return None
        return float(round(sum(counted.values())))

    async def _buckets(self, metric: PrometheusMetric, selector: str, since: datetime) -> dict[float, float]:
        """Cumulative bucket counts by `le` since `since`, each series counted exactly."""
        counted = await self._counted(metric, selector, since)
        if not counted:
            raise QueryProblem(f"no data: the histogram query returned no series ({selector})")
        buckets: dict[float, float] = {}
        for labels, value in counted.items():
            le = dict(labels).get("le")
            if le is None:
                raise QueryProblem(
                    f"the histogram series have no `le` label; select the `_bucket` series ({selector})"
                )
            buckets[float(le)] = buckets.get(float(le), 0.0) + value
        if math.inf not in buckets:
            raise QueryProblem(f'the histogram has no le="+Inf" bucket ({selector})')
        return {le: float(round(count)) for le, count in buckets.items()}

    async def _counted(self, metric: PrometheusMetric, selector: str, since: datetime) -> dict[Labels, float]:
        """Each series' count since `since`: its last value since then minus its value at `since`.

        `last_over_time` keeps series that stopped since (an instance replaced mid-rollout)
        with the count they reached. Unlike `increase`, nothing is extrapolated.
        """
        window = max(1, math.ceil((datetime.now(UTC) - since).total_seconds()))
        now, then = await asyncio.gather(
            self._series(metric, f"last_over_time({selector}[{window}s])", selector),
            self._series(metric, selector, selector, at=since),
        )
        return counted_since(now, then)

    async def _series(
        self, metric: PrometheusMetric, query: str, selector: str, at: datetime | None = None
    ) -> dict[Labels, float]:
        data = await self._data(metric, query, at)
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, list) or data.get("resultType") != "vector":
            raise QueryProblem(
                f"a counter selector must return series (an instant vector), e.g. "
                f'http_requests_total{{version="{{{{version}}}}"}} ({selector})'
            )
        values: dict[Labels, float] = {}
        for series in result:
            value = float(series["value"][1])
            if math.isfinite(value):
                # Functions drop `__name__`; drop it here too so both queries' series match.
                labels = {k: v for k, v in series.get("metric", {}).items() if k != "__name__"}
                values[frozenset(labels.items())] = value
        return values


Labels = frozenset[tuple[str, str]]
"""One series' label set."""


def counted_since(now: dict[Labels, float], then: dict[Labels, float]) -> dict[Labels, float]:
    """Per series, what a counter counted between `then` and `now`, without extrapolation.

    A series absent at `then` appeared since (counters start at 0), so all of it counts; a
    series whose value went down was reset (a restart): only what it counted since the
    restart is known, so that counts; a series absent from `now` counts nothing.
    """
    out: dict[Labels, float] = {}
    for labels, value in now.items():
        before = then.get(labels, 0.0)
        out[labels] = value - before if value >= before else value
    return out


def _single_value(data: Any, query: str) -> float:
    if not isinstance(data, dict):
        raise QueryProblem("Prometheus answered without a `data` object")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        raw = result[1]
    elif kind == "vector" and isinstance(result, list):
        if not result:
            raise QueryProblem(f"no data: the query returned no series ({query})")
        if len(result) > 1:
            labels = ", ".join(str(s.get("metric", {})) for s in result[:3])
            raise QueryProblem(
                f"the query returned {len(result)} series ({labels}…); aggregate it to one "
                "value, e.g. with sum(...)"
            )
        raw = result[0]["value"][1]
    else:
        raise QueryProblem(
            f"the query returned a {kind}; it must return one number (an instant vector "
            "with one series, or a scalar)"
        )
    value = float(raw)
    if math.isnan(value):
        raise QueryProblem(f"no data: the query returned NaN, e.g. a ratio over no requests ({query})")
    return value


def _bound(metric: PrometheusMetric) -> str:
    return bounds(metric.min, metric.max)
