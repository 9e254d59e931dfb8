"""The example plugin's spec model: validated like a built-in router's, as part of the spec."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import model_validator

from sluice.contracts.spec.base import PositiveDuration, SafeName, SpecModel


class FileRouter(SpecModel):
    """Two named targets whose weights are kept in a JSON file."""

    router: ClassVar[str] = "sluice_example_router.router:FileTrafficRouter"

    type: Literal["example_file"]
    path: str
    stable_target: SafeName
    canary_target: SafeName
    timeout: PositiveDuration = timedelta(seconds=2)

    @model_validator(mode="after")
    def _checks(self) -> FileRouter:
        if not self.path.startswith("/"):
            raise ValueError("path must be absolute")
        if self.stable_target == self.canary_target:
            raise ValueError("stable_target and canary_target are the same target")
        return self

    def describe(self) -> str:
        """One line for plans and the UI."""
        return f"example_file `{self.path}` (stable `{self.stable_target}`, canary `{self.canary_target}`)"
