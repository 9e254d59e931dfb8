"""Webhook notifications: the spec's `notify:` targets, the event sent, and the activity's input.

A target names its URL directly (`url`) or through an environment variable of the worker
(`url_env`); the variable is read inside the activity, so a secret URL never enters the
workflow's history.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from sluice.contracts.durations import Duration
from sluice.contracts.status import Drift, MetricVerdict, OperatorAction, Weights

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_WEBHOOK_URL = re.compile(r"https?://[^\s/?#\x00-\x1f\x7f]+(?:[/?#][^\s\x00-\x1f\x7f]*)?")


def _webhook_url(value: str) -> str:
    if len(value) > 2048 or not _WEBHOOK_URL.fullmatch(value):
        raise ValueError(
            f"{value[:200]!r} is not an http(s) URL, e.g. 'https://hooks.example.com/sluice' "
            "(at most 2048 characters; write a space or other special character percent-encoded, as %20)"
        )
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an environment variable name; use letters, digits and '_', "
            "e.g. 'SLACK_WEBHOOK_URL'"
        )
    return value


class NotifyTarget(BaseModel):
    """One webhook: where (`url` or `url_env`), in which format, with which timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    url: Annotated[str, AfterValidator(_webhook_url)] | None = None
    """The webhook's URL, written in the spec (so visible in the history)."""
    url_env: Annotated[str, AfterValidator(_env_name)] | None = None
    """Instead of `url`: the worker's environment variable holding a secret URL."""
    format: Literal["json", "slack"] = "json"
    """`json` (the event as JSON) or `slack` (an incoming-webhook message)."""
    timeout: Duration = timedelta(seconds=5)
    """Per delivery attempt, at most 30s."""

    @model_validator(mode="after")
    def _one_url(self) -> NotifyTarget:
        if (self.url is None) == (self.url_env is None):
            raise ValueError(
                "give exactly one of `url` (written in the spec, so visible in the history) or "
                "`url_env` (the name of the worker's environment variable holding a secret URL)"
            )
        if self.timeout <= timedelta(0) or self.timeout > timedelta(seconds=30):
            raise ValueError("timeout must be between 1ms and 30s")
        return self

    def describe(self) -> str:
        """How the target is named in messages: never the secret URL itself."""
        return f"${self.url_env}" if self.url_env else str(self.url)


EventKind = Literal["phase_changed", "verdict_failed", "traffic_drifted", "gate_decision"]


class RolloutEvent(BaseModel):
    """What a notification says: a phase change, a tick with failing verdicts, or drifted traffic."""

    kind: EventKind
    event_id: str
    """`<workflow id>/<run id>/<n>`: the same for every delivery attempt, for de-duplication."""
    service: str
    version: str
    stable_version: str | None = None
    phase: str
    previous_phase: str | None = None
    message: str
    step: str
    step_index: int
    step_count: int
    weights: Weights | None = None
    failed: list[MetricVerdict] = Field(default_factory=list)
    at: datetime
    ring: str | None = None
    """The ring this rollout rolls out, when it is one ring of a ring rollout."""
    drift: Drift | None = None
    """`traffic_drifted`: the split expected, the split found, when, and what Sluice did."""
    action: OperatorAction | None = None
    """`gate_decision`: the approval, refusal or gate timeout, with who (verified or not), why, when."""


class NotifyInput(BaseModel):
    """Input of the `notify` activity: one event for one target."""

    target: NotifyTarget
    event: RolloutEvent
