"""Metrics (what each provider measures and when it passes) and the analysis that checks them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator

from sluice.contracts.durations import Duration, format_duration
from sluice.contracts.spec.base import (
    AwsRegion,
    Count,
    HttpUrl,
    MetricName,
    Number,
    PlainText,
    PositiveDuration,
    SpecModel,
    located,
    pattern,
)


class _MetricBase(SpecModel):
    name: MetricName
    """Metric name (lowercase letters, digits, `_ . -`), unique in its analysis."""


class _ComparableMetric(_MetricBase):
    """Fields of `compare: stable`: an anytime-valid sequential test of the new version against stable.

    The test rejects (the verdict fails) once its e-value reaches `M/alpha`, with alpha split
    over the analysis' `M` compare metrics so it bounds the whole analysis; it passes only
    while there is no rejection and both versions have served `min_requests`; with less
    traffic it is inconclusive. See `activities/sequential.py` for the formula and papers.
    """

    compare: Literal["stable"] | None = None
    """`stable`: a sequential test against the stable version instead of fixed bounds."""
    alpha: Annotated[Number, Field(gt=0, le=0.2)] = 0.01
    """With `compare`: the false-rollback probability of the analysis, split over its compare metrics."""
    tolerance: Annotated[Number, Field(ge=0, le=10)] = 0.1
    """With `compare`: fail only above (1 + tolerance) times stable's rate."""
    clustering: Literal["independent", "estimate"] = Field(
        "independent", exclude_if=lambda v: v == "independent"
    )
    """With `compare`: `independent` (the test's model) or `estimate` clustering from stable's spread."""
    # Left out of the spec's dump (and so of its digest) at its default: existing specs keep theirs.

    def _compare_rule(self, what: str, min_requests: int) -> str:
        return (
            f"{what} not worse than stable's by more than {self.tolerance:.0%} "
            f"(sequential test, alpha {self.alpha:g}; at least {min_requests} requests each)"
        )


def _bounds(low: float | None, high: float | None) -> str:
    """`≥ 0.5 and ≤ 2`, `≤ 0.01`."""
    return " and ".join(
        b for b in (f"≥ {low:g}" if low is not None else "", f"≤ {high:g}" if high is not None else "") if b
    )


class HAProxyMetric(_ComparableMetric):
    """The router's own counters for the new version's server, since its first weight > 0.

    With `max`, the new version's 5xx ratio must stay at or below it. With `compare: stable`,
    its 5xx rate is tested against the stable server's (both servers' counters since the first
    weight > 0).
    """

    provider: Literal["haproxy"]
    measure: Literal["error_ratio"] = "error_ratio"
    max: Annotated[Number, Field(ge=0, le=1)] | None = None
    """Fail above this 5xx ratio (0-1) of the new version's server."""
    min_requests: Annotated[Count, Field(ge=1, le=1_000_000_000)] = 20
    """Fewer responses than this (per version, with `compare`): inconclusive, never a pass."""

    @model_validator(mode="after")
    def _bound_or_compare(self) -> HAProxyMetric:
        if self.compare is None and self.max is None:
            raise ValueError(
                "an haproxy metric needs `max:` (a 5xx ratio limit) or `compare: stable` "
                "(a sequential test against the stable server)"
            )
        if self.compare is not None and self.max is not None:
            raise ValueError("use either `max:` or `compare: stable`, not both; write two metrics for both")
        return self

    def describe(self) -> str:
        """What the metric must show to pass, in words."""
        if self.compare is not None:
            return self._compare_rule("5xx rate", self.min_requests)
        return f"error ratio ≤ {self.max:g} (at least {self.min_requests} requests)"


class HttpMetric(_MetricBase):
    """Synthetic GET requests sent by the engine; a 2xx or 3xx answer is a success."""

    provider: Literal["http"]
    url: HttpUrl
    """Requested with GET from the worker; 2xx and 3xx are successes."""
    requests: Annotated[Count, Field(ge=1, le=100)] = 5
    """Requests per tick, sent concurrently."""
    min_success_ratio: Annotated[Number, Field(ge=0, le=1)]
    """Fail below this share (0-1) of successful answers."""
    timeout: PositiveDuration = timedelta(seconds=2)

    def describe(self) -> str:
        """What the metric must show to pass, in words."""
        return (
            f"≥ {self.min_success_ratio:.0%} of {self.requests} GET {self.url} "
            f"answer 2xx/3xx within {format_duration(self.timeout)}"
        )


class PrometheusMetric(_ComparableMetric):
    """An instant PromQL query whose single value must stay within `min`/`max`.

    With `compare: stable` instead: counter selectors (`requests` and `errors`, or a latency
    `histogram`) whose exact counts since the first weight > 0 are fetched once per version
    (`{{version}}` filled with `version`, then with `stable_version`) and compared by a
    sequential test.
    """

    provider: Literal["prometheus"]
    address: HttpUrl
    """Prometheus base URL, e.g. http://127.0.0.1:9090."""
    query: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None
    """Instant PromQL query returning one sample; `{{version}}`, `{{stable_version}}`, `{{service}}`."""
    max: Number | None = None
    """Fail above this value."""
    min: Number | None = None
    """Fail below this value."""
    timeout: PositiveDuration = timedelta(seconds=5)
    requests: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None
    """With `compare`: the counter selector of all requests, with `{{version}}`."""
    errors: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None
    """With `compare`: the counter selector of failed requests, with `{{version}}`."""
    histogram: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None
    """With `compare` (instead of requests/errors): a latency histogram's `_bucket` selector."""
    min_requests: Annotated[Count, Field(ge=1, le=1_000_000_000)] = 20
    """With `compare`: requests each version must have served before the metric can pass."""

    @property
    def compares_latency(self) -> bool:
        """True for a `compare: stable` metric on a latency histogram (else it compares errors)."""
        return self.histogram is not None

    @model_validator(mode="after")
    def _has_bound(self) -> PrometheusMetric:
        counters = {"requests": self.requests, "errors": self.errors, "histogram": self.histogram}
        if self.compare is not None:
            if self.query is not None or self.min is not None or self.max is not None:
                raise ValueError(
                    "`compare: stable` takes counter selectors (`requests` + `errors`, or "
                    "`histogram`) instead of `query`, `min` and `max`; write two metrics for both"
                )
            if self.histogram is not None and (self.requests or self.errors):
                raise ValueError(
                    "compare either errors (`requests` + `errors`) or latency (`histogram`), not both"
                )
            if self.histogram is None and not (self.requests and self.errors):
                raise ValueError(
                    "`compare: stable` needs `requests` and `errors` counter selectors, e.g. "
                    "requests: 'http_requests_total{version=\"{{version}}\"}', or a latency `histogram` "
                    "selector, e.g. 'http_request_duration_seconds_bucket{version=\"{{version}}\"}'"
                )
            return self
        given = sorted(k for k, v in counters.items() if v is not None)
        if given:
            what = ", ".join(given)
            raise ValueError(f"{what} only apply with `compare: stable`; add it or use `query:`")
        if self.query is None:
            raise ValueError(
                "a prometheus metric needs `query:` (or `compare: stable` with counter selectors)"
            )
        if self.max is None and self.min is None:
            raise ValueError("a prometheus metric needs a bound; add `max:` (fail above it) and/or `min:`")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); nothing could pass")
        return self

    def describe(self) -> str:
        """What the metric must show to pass, in words."""
        if self.compare is not None:
            return self._compare_rule("latency" if self.compares_latency else "5xx rate", self.min_requests)
        return f"query value {_bounds(self.min, self.max)}"


Dimension = Annotated[PlainText, Field(min_length=1, max_length=1024)]
"""A CloudWatch dimension name or value."""
_CW_NAMESPACE = re.compile(r"[0-9A-Za-z._/#-](?:[0-9A-Za-z._/# -]{0,253}[0-9A-Za-z._/#-])?")
_CW_STAT = re.compile(
    r"(?:SampleCount|Average|Sum|Minimum|Maximum|p\d{1,2}(?:\.\d+)?|[A-Za-z]{2}\([^\x00-\x1f\x7f]*\))"
)


class CloudWatchQuery(SpecModel):
    """One CloudWatch metric (namespace, name, dimensions) and the statistic to read from it."""

    namespace: Annotated[str, pattern(_CW_NAMESPACE, "a CloudWatch namespace", "AWS/ApplicationELB")]
    """E.g. AWS/ApplicationELB, AWS/Lambda."""
    metric_name: Annotated[PlainText, Field(min_length=1, max_length=255)]
    """E.g. HTTPCode_Target_5XX_Count, RequestCount, Errors, Invocations."""
    dimensions: Annotated[dict[Dimension, Dimension], Field(max_length=30)] = Field(default_factory=dict)
    """Name: value pairs selecting the new version's series, e.g. {TargetGroup: targetgroup/...}."""
    stat: Annotated[str, pattern(_CW_STAT, "a CloudWatch statistic", "Sum")] = "Sum"
    """Sum (counts), Average, Minimum, Maximum, SampleCount, or a percentile such as p99."""


class CloudWatchMetric(_ComparableMetric):
    """CloudWatch `GetMetricData` over the analysis window: an error ratio, or one value with bounds.

    Either `errors` and `requests` (two counts summed over the window; the ratio must stay
    at or below `max`, with at least `min_requests` requests), or `value` (the statistic over
    the window must stay within `min`/`max`). With `compare: stable` instead of `max`, the
    same two counts are also fetched for the stable version (each query's dimensions with
    `stable_dimensions` laid over them) and the new version's error rate is tested against
    stable's with the anytime-valid sequential test.
    """

    provider: Literal["cloudwatch"]
    errors: CloudWatchQuery | None = None
    """With `requests`: the count of failed requests (stat Sum)."""
    requests: CloudWatchQuery | None = None
    """With `errors`: the count of all requests (stat Sum)."""
    value: CloudWatchQuery | None = None
    """Instead of errors/requests: one statistic that must stay within `min`/`max`."""
    max: Number | None = None
    """Fail above this (the error ratio, 0-1, or the value)."""
    min: Number | None = None
    """Fail below this value."""
    min_requests: Annotated[Count, Field(ge=1, le=1_000_000_000)] = 20
    """Fewer requests than this (per version, with `compare`): inconclusive, never a pass."""
    period: Duration = timedelta(seconds=60)
    """CloudWatch's period: 1s, 5s, 10s, 30s or a multiple of 60s."""
    window: PositiveDuration | None = None
    """How far back to look; by default since the new version's first weight > 0."""
    region: AwsRegion | None = None
    """Default: boto3's."""
    stable_dimensions: Annotated[dict[Dimension, Dimension], Field(max_length=30)] = Field(
        default_factory=dict
    )
    """With `compare: stable`: the dimension values that select the stable version's series."""

    @model_validator(mode="after")
    def _one_mode(self) -> CloudWatchMetric:
        ratio = self.errors is not None or self.requests is not None
        if ratio and self.value is not None:
            raise ValueError("use either `errors` and `requests` (a ratio) or `value`, not both")
        if self.compare is not None:
            self._check_compare()
        elif self.stable_dimensions:
            raise ValueError("`stable_dimensions` only applies with `compare: stable`; add it or drop them")
        elif ratio:
            if self.errors is None or self.requests is None:
                raise ValueError("a ratio needs both `errors` and `requests`")
            if self.errors.stat != "Sum" or self.requests.stat != "Sum":
                raise ValueError("`errors` and `requests` are counts: their stat must be Sum")
            if self.max is None or self.min is not None:
                raise ValueError("an error ratio needs `max:` (the highest ratio that passes) and no `min:`")
            if not 0 <= self.max <= 1:
                raise located("max", f"{self.max:g} is not a ratio; an error ratio is between 0 and 1")
        elif self.value is None:
            raise ValueError("say what to measure: `errors` and `requests` (a ratio) or `value`")
        elif self.max is None and self.min is None:
            raise ValueError("a cloudwatch value needs a bound; add `max:` and/or `min:`")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); nothing could pass")
        seconds = self.period.total_seconds()
        if (
            seconds < 1
            or (seconds >= 60 and seconds % 60)
            or (seconds < 60 and seconds not in (1, 5, 10, 30))
        ):
            raise ValueError("period must be 1s, 5s, 10s, 30s or a multiple of 60s (CloudWatch's rule)")
        return self

    def _check_compare(self) -> None:
        if self.value is not None or self.errors is None or self.requests is None:
            raise ValueError(
                "`compare: stable` on cloudwatch compares error rates: give `errors` and `requests` "
                "(Sum counts) and `stable_dimensions`, not `value`"
            )
        if self.errors.stat != "Sum" or self.requests.stat != "Sum":
            raise ValueError("`errors` and `requests` are counts: their stat must be Sum")
        if self.max is not None or self.min is not None:
            raise ValueError("use either `max:` or `compare: stable`, not both; write two metrics for both")
        if self.window is not None:
            raise ValueError(
                "`compare: stable` counts everything since the new version's first weight > 0; drop `window`"
            )
        if not self.stable_dimensions:
            raise ValueError(
                "`compare: stable` needs `stable_dimensions`: the dimension values of the stable "
                "version's series, e.g. {TargetGroup: targetgroup/checkout-v1/0123456789abcdef}"
            )
        for query in (self.errors, self.requests):
            if all(query.dimensions.get(k) == v for k, v in self.stable_dimensions.items()):
                raise ValueError(
                    f"`stable_dimensions` select the same series as {query.metric_name}'s own "
                    "dimensions; give the stable version's values"
                )

    def stable_query(self, query: CloudWatchQuery) -> CloudWatchQuery:
        """`query` for the stable version: its dimensions with `stable_dimensions` laid over them."""
        return query.model_copy(update={"dimensions": {**query.dimensions, **self.stable_dimensions}})

    def describe(self) -> str:
        """What the metric must show to pass, in words."""
        if self.errors is not None and self.requests is not None:
            if self.compare is not None:
                return (
                    f"CloudWatch {self.errors.metric_name}/{self.requests.metric_name} not worse than "
                    f"stable by more than {self.tolerance:.0%} (alpha {self.alpha:g}, at least "
                    f"{self.min_requests} requests each)"
                )
            return (
                f"CloudWatch {self.errors.metric_name}/{self.requests.metric_name} ≤ {self.max:g} "
                f"(at least {self.min_requests} requests)"
            )
        assert self.value is not None
        return f"CloudWatch {self.value.metric_name} {self.value.stat} {_bounds(self.min, self.max)}"


class CloudWatchAlarmGate(_MetricBase):
    """Fails while any of the named CloudWatch alarms is in the ALARM state."""

    provider: Literal["cloudwatch_alarm"]
    alarms: Annotated[
        list[Annotated[PlainText, Field(min_length=1, max_length=255)]], Field(min_length=1, max_length=100)
    ]
    """Metric or composite alarm names; the verdict fails while any is in ALARM."""
    on_insufficient_data: Literal["pass", "inconclusive"] = "pass"
    """What an alarm in INSUFFICIENT_DATA counts as."""
    region: AwsRegion | None = None
    """Default: boto3's."""

    def describe(self) -> str:
        """What the metric must show to pass, in words."""
        return f"no alarm in ALARM among {', '.join(self.alarms)}"


MetricModel = HAProxyMetric | HttpMetric | PrometheusMetric | CloudWatchMetric | CloudWatchAlarmGate
MetricSpec = Annotated[MetricModel, Field(discriminator="provider")]
PROVIDER_TYPES: tuple[str, ...] = tuple(
    get_args(model.model_fields["provider"].annotation)[0] for model in get_args(MetricModel)
)
"""The metrics' `provider` tags, in the order of `MetricSpec`."""


class AnalysisSpec(SpecModel):
    """Metrics checked every `interval` from the first weight > 0 until the last step."""

    interval: Duration = timedelta(seconds=5)
    """Time between analysis ticks, at least 500ms."""
    failure_limit: Annotated[Count, Field(ge=0, le=1000)] = 0
    """Failing ticks tolerated in total; one more rolls back."""
    inconclusive_limit: Annotated[Count, Field(ge=0, le=1000)] = 6
    """Inconclusive ticks in a row tolerated; one more applies `on_inconclusive`."""
    on_inconclusive: Literal["rollback", "pause"] = "rollback"
    """What too many inconclusive ticks do: roll back, or pause for a human."""
    on_drift: Literal["reapply", "pause", "rollback"] = "reapply"
    """What a tick that reads a split other than the one Sluice applied does (someone set a
    weight by hand, a reload reset it): re-apply Sluice's split, pause for a human (traffic
    stays where it was found), or roll back."""
    metrics: Annotated[list[MetricSpec], Field(min_length=1, max_length=50)]
    """At least one metric; a tick fails if any metric fails."""

    @field_validator("interval")
    @classmethod
    def _interval_floor(cls, value: timedelta) -> timedelta:
        if value < timedelta(milliseconds=500):
            raise ValueError("interval must be at least 500ms; each tick runs an activity")
        return value

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, value: list[MetricSpec]) -> list[MetricSpec]:
        seen: set[str] = set()
        for metric in value:
            if metric.name in seen:
                raise ValueError(f"two metrics are named {metric.name!r}; names must be unique")
            seen.add(metric.name)
        return value
