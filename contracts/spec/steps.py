"""Steps (shift, bake, wait, approval) and the presets that expand into steps."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from sluice.contracts.durations import Duration, format_duration, parse_duration
from sluice.contracts.spec.base import Number, PlainText, SpecModel, located


class PauseSpec(SpecModel):
    """`pause: 30s` bakes for a duration; `pause: {}` waits for an operator's resume or promote."""

    duration: Duration | None = None
    """Bake this long; without it, wait for an operator."""

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, data: Any) -> Any:
        if isinstance(data, str | int | float) and not isinstance(data, bool):
            parse_duration(data)  # report a bad shorthand at `steps[i].pause`, with the hint
            return {"duration": data}
        return data

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("a pause must last longer than 0s; use `pause: {}` to wait for a human")
        return value


class ApprovalSpec(SpecModel):
    """A durable approval gate: progress waits until one of `approvers` approves, or `timeout`.

    Approving is an update (`sluice approve`) whose validator rejects anyone not listed, so a
    refused approval leaves no trace in the history; an accepted one is recorded with who and why.
    """

    approvers: Annotated[
        list[Annotated[PlainText, Field(min_length=1, max_length=128)]], Field(max_length=100)
    ] = Field(default_factory=list)
    """Who may approve (as given to `--by`); empty means anyone."""
    timeout: Duration | None = None
    """How long to wait; without it the gate waits until someone approves or aborts."""
    on_timeout: Literal["rollback", "continue"] = "rollback"
    """At the timeout: roll back (100% stable) or continue with the next step."""
    require_verified: bool = False
    """Only an approval signed with an approver's SSH key (`sluice approve --sign-with KEY`),
    verified against the worker's `SLUICE_ALLOWED_SIGNERS`, passes; a plain `--by` is refused."""

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("an approval timeout must be longer than 0s; leave it out to wait indefinitely")
        return value

    def describe(self) -> str:
        """`approval by alice or bob (4h, then rollback)`."""
        who = " or ".join(self.approvers) if self.approvers else "anyone"
        limit = f" ({format_duration(self.timeout)}, then {self.on_timeout})" if self.timeout else ""
        signed = ", signed" if self.require_verified else ""
        return f"approval by {who}{signed}{limit}"


_STEP_KINDS = ("set_weight", "pause", "approval")


class Step(SpecModel):
    """One step: exactly one of `set_weight`, `pause` or `approval`.

    `watch` is never written by users: the engine appends it for `post_promotion` (a bake
    after 100% during which analysis keeps running and a failure rolls back).
    """

    set_weight: Annotated[int, Field(ge=0, le=100, strict=True)] | None = None
    """Send this percent (0-100) of requests to the new version, the rest to stable."""
    pause: PauseSpec | None = None
    approval: ApprovalSpec | None = None
    watch: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a step is a mapping with one key, e.g. `- set_weight: 10` or `- pause: 30s`")
        given = {k for k in (*_STEP_KINDS, "watch") if data.get(k) is not None}
        if "pause" in data and data["pause"] is None and not given:
            # Often an empty template variable (`pause: ${BAKE}`): waiting for a human instead of
            # baking would be a silent change of plan, so say which of the two was meant.
            raise located(
                "pause",
                "empty pause; write a duration to bake (`pause: 5m`) or `pause: {}` to wait for an "
                "operator's resume or promote",
            )
        if "approval" in data and data["approval"] is None and not given:
            data = {**data, "approval": {}}  # `- approval:` alone: anyone may approve, no timeout
        kinds = [k for k in (*_STEP_KINDS, "watch") if data.get(k) is not None]
        if len(kinds) > 1:
            raise ValueError(
                "a step has exactly one of set_weight, pause or approval; split it into two steps"
            )
        if not kinds and not (set(data) - set(_STEP_KINDS)):
            raise ValueError("empty step; write `- set_weight: N`, `- pause: 30s` or `- approval: {...}`")
        return data

    def describe(self) -> str:
        """One line for timelines and the UI: `shift to 50%`, `bake 1m`, `wait for resume`."""
        if self.set_weight is not None:
            return f"shift to {self.set_weight}%"
        if self.approval is not None:
            return self.approval.describe()
        if self.watch is not None:
            return f"post-promotion watch {format_duration(self.watch)}"
        assert self.pause is not None
        if self.pause.duration is None:
            return "wait for resume or promote"
        return f"bake {format_duration(self.pause.duration)}"


PresetName = Literal[
    "Canary10Percent5Minutes",
    "Canary10Percent15Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery3Minutes",
    "AllAtOnce",
]
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)
"""CodeDeploy's predefined configurations, as `preset:` names them."""


class ExponentialPreset(SpecModel):
    """AppConfig-style exponential growth: weights `growth_factor * 2^n` % until 100%.

    The steps are spread evenly over `deploy_time`; `bake_time` is a post-promotion watch
    (analysis keeps running at 100% and a failure rolls back), like AppConfig's final bake.
    """

    type: Literal["exponential"]
    growth_factor: Annotated[Number, Field(gt=0, le=100)]
    """The first weight in percent; each next one doubles it, up to 100."""
    deploy_time: Duration
    bake_time: Duration = timedelta(0)

    def weights(self) -> list[int]:
        """`growth_factor=10`: 10, 20, 40, 80, 100."""
        out: list[int] = []
        n = 0
        while True:
            w = min(100, max(1, round(self.growth_factor * 2**n)))
            if not out or w > out[-1]:
                out.append(w)
            if w >= 100:
                return out
            n += 1


def named_preset_steps(name: str) -> list[Step]:
    """CodeDeploy's predefined configurations as steps."""
    if name == "AllAtOnce":
        return [Step(set_weight=100)]
    if name.startswith("Canary10Percent"):
        minutes = 5 if name == "Canary10Percent5Minutes" else 15
        return [
            Step(set_weight=10),
            Step(pause=PauseSpec(duration=timedelta(minutes=minutes))),
            Step(set_weight=100),
        ]
    minutes = 1 if name == "Linear10PercentEvery1Minute" else 3
    steps: list[Step] = []
    for w in range(10, 101, 10):
        steps.append(Step(set_weight=w))
        if w < 100:
            steps.append(Step(pause=PauseSpec(duration=timedelta(minutes=minutes))))
    return steps
