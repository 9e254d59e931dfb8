"""Prometheus provider: an instant PromQL query whose single value must stay within min/max."""

from __future__ import annotations

import math
import re
from typing import Any

import httpx

from activities.providers._verdict import number, verdict
from contracts.calls import AnalyzeInput
from contracts.spec import MetricSpec, PrometheusMetric
from contracts.status import MetricVerdict, Verdict

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")


class QueryProblem(Exception):
    """Why a query gave no usable value; becomes an inconclusive verdict's detail."""


def render_query(query: str, tick: AnalyzeInput) -> str:
    """Fill `{{version}}`, `{{stable_version}}` and `{{service}}` from the tick.

    The values were validated by the spec (letters, digits and `_.+-`), so they cannot
    break out of a PromQL string. Raises QueryProblem for an unknown placeholder or
    `{{stable_version}}` when the spec has none.
    """
    values = {
        "version": tick.version,
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
        bound = _bound(metric)
        try:
            query = render_query(metric.query, tick)
            value = await self._query(metric, query)
        except QueryProblem as problem:
            return verdict(metric.name, Verdict.INCONCLUSIVE, str(problem), bound=bound)

        if metric.max is not None and value > metric.max:
            result, detail = (
                Verdict.FAIL,
                f"{number(value)} is above the maximum {number(metric.max)}",
            )
        elif metric.min is not None and value < metric.min:
            result, detail = (
                Verdict.FAIL,
                f"{number(value)} is below the minimum {number(metric.min)}",
            )
        else:
            result, detail = Verdict.PASS, f"{number(value)} is within {bound}"
        return verdict(metric.name, result, detail, value=value, bound=bound, counts={"value": value})

    async def _query(self, metric: PrometheusMetric, query: str) -> float:
        timeout = metric.timeout.total_seconds()
        url = f"{metric.address.rstrip('/')}/api/v1/query"
        params = {"query": query, "timeout": f"{timeout:g}s"}
        try:
            async with httpx.AsyncClient(timeout=timeout, transport=self._transport) as client:
                resp = await client.get(url, params=params)
        except httpx.TimeoutException:
            raise QueryProblem(f"Prometheus at {metric.address} did not answer within {timeout:g}s") from None
        except httpx.HTTPError as err:
            raise QueryProblem(
                f"Prometheus at {metric.address} is unreachable: {err or type(err).__name__}"
            ) from None

        try:
            body: Any = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise QueryProblem(
                f"Prometheus at {metric.address} answered HTTP {resp.status_code} without JSON: "
                f"{resp.text[:120]!r}"
            )
        if resp.status_code >= 400 or body.get("status") != "success":
            kind = body.get("errorType", "error")
            raise QueryProblem(
                f"Prometheus rejected the query (HTTP {resp.status_code}, {kind}): "
                f"{body.get('error', 'no error message')}"
            )
        return _single_value(body.get("data"), query)


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
    parts = []
    if metric.min is not None:
        parts.append(f">= {number(metric.min)}")
    if metric.max is not None:
        parts.append(f"<= {number(metric.max)}")
    return " and ".join(parts)
