"""CloudWatch providers: `cloudwatch` (GetMetricData with bounds), `cloudwatch_alarm` (a gate on alarms)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.exceptions import ApplicationError

from sluice.activities.aws import call
from sluice.activities.providers._compare import compare_verdict
from sluice.activities.providers._verdict import (
    Wording,
    bounds,
    number,
    ratio_verdict,
    value_verdict,
    verdict,
)
from sluice.activities.sequential import Totals
from sluice.contracts.calls import AnalyzeInput
from sluice.contracts.spec import CloudWatchAlarmGate, CloudWatchMetric, CloudWatchQuery, MetricSpec
from sluice.contracts.status import MetricVerdict, Verdict

_DEFAULT_WINDOW = timedelta(minutes=5)
"""Look-back when the analysis has no start time yet."""


class CloudWatchStats:
    """`GetMetricData` over the window, judged against the metric's bounds.

    - `errors` + `requests`: both are summed over the window (from the new version's first
      weight > 0, or the last `window`), and errors/requests must stay at or below `max`.
      Fewer than `min_requests` requests is inconclusive, never a pass.
    - `value`: the statistic of the most recent period with data must stay within `min`/`max`.
    - `compare: stable`: the two counts are also fetched for the stable version's series, and
      both versions' sums since the first weight > 0 advance the sequential test (as the
      HAProxy and Prometheus counters do).

    An AWS error (access denied, throttling, a wrong dimension) is an inconclusive verdict
    whose detail says what went wrong; no data at all is inconclusive too.
    """

    async def measure(self, metric: MetricSpec, tick: AnalyzeInput) -> MetricVerdict:
        """Fetch the metric's data points and judge them."""
        assert isinstance(metric, CloudWatchMetric)
        now = datetime.now(UTC)
        period = int(metric.period.total_seconds())
        since = tick.since or now - _DEFAULT_WINDOW
        start = now - metric.window if metric.window is not None else since
        # Data points are stamped with the start of their period: round down to include the first.
        start = datetime.fromtimestamp(start.timestamp() // period * period, UTC)
        queries = {"errors": metric.errors, "requests": metric.requests, "value": metric.value}
        if metric.compare is not None and metric.errors is not None and metric.requests is not None:
            queries["stable_errors"] = metric.stable_query(metric.errors)
            queries["stable_requests"] = metric.stable_query(metric.requests)
        wanted = {key: q for key, q in queries.items() if q is not None}
        bound = _bound(metric)
        try:
            # End a period after now: data points from this very second are included (the API
            # compares with whole seconds), and a future end is allowed and returns nothing more.
            end = now + timedelta(seconds=period)
            series = await _metric_data(metric.region, wanted, period, start, end, metric.name)
        except ApplicationError as err:
            return verdict(metric.name, Verdict.INCONCLUSIVE, f"CloudWatch: {err.message}", bound=bound)

        if "value" in series:
            points = series["value"]
            if not points:
                return verdict(
                    metric.name, Verdict.INCONCLUSIVE, f"no data since {start:%H:%M:%S}Z", bound=bound
                )
            return value_verdict(metric.name, points[-1][1], low=metric.min, high=metric.max)

        errors = sum(v for _, v in series["errors"])
        requests = sum(v for _, v in series["requests"])
        if metric.compare is not None:
            # Sums of counts: whole numbers, whatever the float arithmetic on the way did.
            totals = Totals(
                canary_requests=float(round(requests)),
                stable_requests=float(round(sum(v for _, v in series["stable_requests"]))),
                canary_events=(float(round(errors)),),
                stable_events=(float(round(sum(v for _, v in series["stable_errors"]))),),
            )
            return compare_verdict(
                metric.name,
                "errors",
                ["errors"],
                totals,
                tick,
                alpha=metric.alpha,
                tolerance=metric.tolerance,
                min_requests=metric.min_requests,
            )
        return ratio_verdict(
            metric.name,
            errors,
            requests,
            Wording("{part} errors in {whole} requests", "requests", "errors"),
            low=metric.min,
            high=metric.max,
            min_requests=metric.min_requests,
            window=f"since {start:%H:%M:%S}Z",
            counts={"requests": requests, "errors": errors},
        )


class CloudWatchAlarms:
    """Fails while any named alarm is in ALARM, the gate CodeDeploy users already configure.

    OK passes; INSUFFICIENT_DATA passes or is inconclusive (`on_insufficient_data`); an alarm
    that does not exist is inconclusive, so a typo never passes silently.
    """

    async def measure(self, metric: MetricSpec, tick: AnalyzeInput) -> MetricVerdict:
        """Read the alarms' states with DescribeAlarms."""
        assert isinstance(metric, CloudWatchAlarmGate)
        bound = "no alarm in ALARM"
        try:
            reply = await call(
                "cloudwatch",
                metric.region,
                "describe_alarms",
                f"metric {metric.name}",
                AlarmNames=metric.alarms,
                AlarmTypes=["MetricAlarm", "CompositeAlarm"],
                MaxRecords=100,
            )
        except ApplicationError as err:
            return verdict(metric.name, Verdict.INCONCLUSIVE, f"CloudWatch: {err.message}", bound=bound)
        alarms = [*reply.get("MetricAlarms", []), *reply.get("CompositeAlarms", [])]
        states = {a["AlarmName"]: a.get("StateValue", "INSUFFICIENT_DATA") for a in alarms}
        counts: dict[str, float] = {
            "alarm": sum(s == "ALARM" for s in states.values()),
            "ok": sum(s == "OK" for s in states.values()),
            "insufficient_data": sum(s == "INSUFFICIENT_DATA" for s in states.values()),
        }
        firing = [a for a in alarms if a.get("StateValue") == "ALARM"]
        if firing:
            reasons = "; ".join(f"{a['AlarmName']}: {a.get('StateReason', '')}" for a in firing)
            return verdict(metric.name, Verdict.FAIL, f"in ALARM: {reasons}", bound=bound, counts=counts)
        missing = [name for name in metric.alarms if name not in states]
        if missing:
            return verdict(
                metric.name,
                Verdict.INCONCLUSIVE,
                f"no such alarm: {', '.join(missing)} (check the names and the region)",
                bound=bound,
                counts=counts,
            )
        waiting = [name for name, state in states.items() if state == "INSUFFICIENT_DATA"]
        if waiting and metric.on_insufficient_data == "inconclusive":
            return verdict(
                metric.name,
                Verdict.INCONCLUSIVE,
                f"INSUFFICIENT_DATA: {', '.join(waiting)}",
                bound=bound,
                counts=counts,
            )
        note = f" ({len(waiting)} with INSUFFICIENT_DATA)" if waiting else ""
        return verdict(
            metric.name, Verdict.PASS, f"{len(states)} alarms not in ALARM{note}", bound=bound, counts=counts
        )


async def _metric_data(
    region: str | None,
    queries: dict[str, CloudWatchQuery],
    period: int,
    start: datetime,
    end: datetime,
    where: str,
) -> dict[str, list[tuple[datetime, float]]]:
    """Data points per query id, oldest first, following NextToken."""
    params: dict[str, Any] = {
        "MetricDataQueries": [
            {
                "Id": key,
                "MetricStat": {
                    "Metric": {
                        "Namespace": q.namespace,
                        "MetricName": q.metric_name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in q.dimensions.items()],
                    },
                    "Period": period,
                    "Stat": q.stat,
                },
                "ReturnData": True,
            }
            for key, q in queries.items()
        ],
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }
    series: dict[str, list[tuple[datetime, float]]] = {key: [] for key in queries}
    while True:
        reply = await call("cloudwatch", region, "get_metric_data", f"metric {where}", **params)
        for result in reply.get("MetricDataResults", []):
            series[result["Id"]] += zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
        token = reply.get("NextToken")
        if not token:
            break
        params["NextToken"] = token
    return {key: sorted(points, key=lambda p: p[0]) for key, points in series.items()}


def _bound(metric: CloudWatchMetric) -> str:
    if metric.compare is not None:
        return f"e < {number(1 / metric.alpha)}"
    return bounds(metric.min, metric.max)
