"""The base of every spec model, the validators of the names a spec writes, and strict numbers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from sluice.contracts.durations import Duration

# Every pattern is matched with `fullmatch`: `$` also matches before a trailing newline, and a
# newline in a name sent to a runtime API is an injection.
_SERVICE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_VERSION = re.compile(r"[A-Za-z0-9_.+-]{1,128}")
_METRIC_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+(?:[/?#]\S*)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _service(value: str) -> str:
    if not _SERVICE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a service name; use lowercase letters, digits and '-' "
            "(at most 63, not starting or ending with '-'), e.g. 'checkout'"
        )
    return value


def _safe_name(value: str) -> str:
    if not _SAFE_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} may only contain letters, digits, '_', '.' and '-' "
            "(it is sent to the router's runtime API, so spaces, ';' and newlines are refused)"
        )
    return value


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a version label; use letters, digits, '_', '.', '+' and '-', "
            "e.g. 'v2' or '1.4.0'"
        )
    return value


def _metric_name(value: str) -> str:
    if not _METRIC_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a metric name; use lowercase letters, digits, '_', '.' and '-', "
            "e.g. 'canary-5xx'"
        )
    return value


def _http_url(value: str) -> str:
    if len(value) > 2048 or not _HTTP_URL.fullmatch(value) or _CONTROL.search(value):
        raise ValueError(
            f"{value[:200]!r} is not an http(s) URL, e.g. 'http://127.0.0.1:8080/healthz' "
            "(at most 2048 characters; write a space or other special character percent-encoded, as %20)"
        )
    return value


def _plain_text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{value!r} contains a control character (a newline, tab or NUL); remove it")
    return value


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def pattern(regex: re.Pattern[str], what: str, example: str) -> AfterValidator:
    """A validator refusing a string `regex` does not match: `'x' is not {what}, e.g. {example}`."""

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}, e.g. {example!r}")
        return value

    return AfterValidator(check)


ServiceName = Annotated[str, AfterValidator(_service)]
SafeName = Annotated[str, AfterValidator(_safe_name)]
VersionLabel = Annotated[str, AfterValidator(_version)]
MetricName = Annotated[str, AfterValidator(_metric_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
PlainText = Annotated[str, AfterValidator(_plain_text)]
"""Free text (an approver, an alarm, a dimension): any characters but control characters."""
PositiveDuration = Annotated[Duration, AfterValidator(_positive_duration)]
"""A duration longer than 0s: timeouts and soaks."""

Count = Annotated[int, Field(strict=True)]
"""A whole number written as one: `true`, `"10"` and `10.5` are refused, not coerced."""
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite number written as one (an integer is fine): `true`, `"0.5"`, `.inf` and `.nan` are refused."""


def located(field: str, message: str) -> PydanticCustomError:
    """An error about `field` (`stable_version`, `[3]`) of the model that raises it, not the whole model.

    `issues_from` appends `field` to the model's path, so a model validator's error still names
    the field to change.
    """
    return PydanticCustomError("spec_field", "{message}", {"field": field, "message": message})


class SpecModel(BaseModel):
    """Base for every spec model: unknown fields are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")

AwsRegion = Annotated[str, pattern(_AWS_REGION, "an AWS region", "eu-west-1")]
