"""The `notify` activity: POST one rollout event to one webhook, as Sluice JSON or a Slack message.

The URL of a `url_env` target is read from the worker's environment here, inside the
activity, and never appears in a result, an error message or a log line, so it never
reaches the workflow's history. Failures raise `NotifyFailed` (retried by the workflow's
policy) or `NotifyConfig` (the variable is not set; not retried).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from sluice.contracts import errors
from sluice.contracts.notify import NotifyInput, NotifyTarget, RolloutEvent
from sluice.contracts.text import cap

USER_AGENT = "sluice-notify/1"
_PHASE_WORDS = {
    "progressing": "progressing",
    "paused": "paused",
    "rolling_back": "rolling back",
    "promoted": "promoted",
    "rolled_back": "rolled back",
    "aborted": "aborted",
    "failed": "FAILED",
}


@activity.defn(name="notify")
async def notify(inp: NotifyInput) -> int:
    """Deliver the event; returns the receiver's HTTP status. Raises `NotifyFailed` to be retried."""
    url = resolve_url(inp.target)
    body = render_body(inp.target.format, inp.event, os.environ.get("SLUICE_UI_URL"))
    headers = {"User-Agent": USER_AGENT, "X-Sluice-Event-Id": inp.event.event_id}
    try:
        async with httpx.AsyncClient(timeout=inp.target.timeout.total_seconds()) as client:
            response = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError as err:
        # httpx messages can quote the URL; say what happened without it.
        raise ApplicationError(
            f"webhook {inp.target.describe()} unreachable: {_redact(str(err) or type(err).__name__, url)}",
            type=errors.NOTIFY_FAILED,
        ) from None
    if not 200 <= response.status_code < 300:
        raise ApplicationError(
            f"webhook {inp.target.describe()} answered HTTP {response.status_code}",
            type=errors.NOTIFY_FAILED,
        )
    return response.status_code


def resolve_url(target: NotifyTarget) -> str:
    """The URL to POST to: written in the spec, or read from the worker's environment."""
    if target.url is not None:
        return target.url
    assert target.url_env is not None
    url = os.environ.get(target.url_env, "").strip()
    if not url:
        raise ApplicationError(
            f"webhook URL variable ${target.url_env} is not set on this worker; set it in the "
            "worker's environment (it is read there so the URL stays out of the history)",
            type=errors.NOTIFY_CONFIG,
            non_retryable=True,
        )
    return url


def _redact(text: str, url: str) -> str:
    text = text.replace(url, "<webhook url>")
    return cap(text, 200)


def headline(event: RolloutEvent) -> str:
    """One line a person reads in a chat channel."""
    versions = f"{event.stable_version} → {event.version}" if event.stable_version else event.version
    who = f"{event.service} (ring {event.ring})" if event.ring else event.service
    if event.kind == "verdict_failed":
        names = ", ".join(v.metric for v in event.failed) or "a metric"
        return f"{who} {versions}: analysis failed ({names})"
    if event.kind == "traffic_drifted" and event.drift is not None:
        d = event.drift
        return (
            f"{who} {versions}: TRAFFIC DRIFTED, expected new {d.expected.canary}% but found "
            f"{d.found.canary}% ({d.action})"
        )
    if event.kind == "gate_decision" and event.action is not None:
        a = event.action
        return f"{who} {versions}: {a.action.replace('_', ' ')} by {a.who()}: {a.reason}"
    return f"{who} {versions}: {_PHASE_WORDS.get(event.phase, event.phase)}"


def render_body(fmt: str, event: RolloutEvent, ui_base: str | None) -> dict[str, Any]:
    """The JSON document POSTed: the event itself, or a Slack incoming-webhook message."""
    link = None
    if ui_base:
        link = f"{ui_base.rstrip('/')}/namespaces/{_namespace()}/workflows/{event.event_id.split('/')[0]}"
    if fmt == "json":
        return {**event.model_dump(mode="json"), "ui_url": link}
    lines = [f"*{headline(event)}*", event.message]
    if event.weights is not None:
        lines.append(
            f"step {event.step_index + 1}/{event.step_count} ({event.step}), weights: "
            f"stable {event.weights.stable}%, new {event.weights.canary}%"
        )
    for verdict in event.failed:
        lines.append(f"• `{verdict.metric}`: {verdict.verdict.value}, {verdict.detail}")
    if link:
        lines.append(f"<{link}|Open in the Temporal Web UI>")
    return {"text": "\n".join(line for line in lines if line)}


def _namespace() -> str:
    try:
        return activity.info().namespace
    except RuntimeError:  # outside an activity (unit tests)
        return "default"
