"""The base of every spec model and the validators of the names a spec writes."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

_SERVICE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_VERSION = re.compile(r"^[A-Za-z0-9_.+-]{1,128}$")
_METRIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _service(value: str) -> str:
    if not _SERVICE.match(value):
        raise ValueError(
            f"{value!r} is not a service name; use lowercase letters, digits and '-' "
            "(at most 63, not starting or ending with '-'), e.g. 'checkout'"
        )
    return value


def _safe_name(value: str) -> str:
    if not _SAFE_NAME.match(value):
        raise ValueError(
            f"{value!r} may only contain letters, digits, '_', '.' and '-' "
            "(it is sent to the router's runtime API, so spaces, ';' and newlines are refused)"
        )
    return value


def _version(value: str) -> str:
    if not _VERSION.match(value):
        raise ValueError(
            f"{value!r} is not a version label; use letters, digits, '_', '.', '+' and '-', "
            "e.g. 'v2' or '1.4.0'"
        )
    return value


def _metric_name(value: str) -> str:
    if not _METRIC_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a metric name; use lowercase letters, digits, '_', '.' and '-', "
            "e.g. 'canary-5xx'"
        )
    return value


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL, e.g. 'http://127.0.0.1:8080/healthz'")
    return value


def pattern(regex: re.Pattern[str], what: str, example: str) -> AfterValidator:
    """A validator refusing a string `regex` does not match: `'x' is not {what}, e.g. {example}`."""

    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not {what}, e.g. {example!r}")
        return value

    return AfterValidator(check)


ServiceName = Annotated[str, AfterValidator(_service)]
SafeName = Annotated[str, AfterValidator(_safe_name)]
VersionLabel = Annotated[str, AfterValidator(_version)]
MetricName = Annotated[str, AfterValidator(_metric_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class SpecModel(BaseModel):
    """Base for every spec model: unknown fields are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_AWS_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")

AwsRegion = Annotated[str, pattern(_AWS_REGION, "an AWS region", "eu-west-1")]
