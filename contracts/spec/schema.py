"""The JSON Schema of a rollout spec, for editors: generated from the models, with the shorthands added.

`sluice schema` prints it; `docs/rollout.schema.json` is a copy kept equal to it by a unit test,
which also validates every example against it. The models stay the authority: the schema helps an
editor complete and flag a spec, `sluice validate` has the last word (cross-field rules such as
"`max` or `compare`, not both" are not in the schema).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import TypeAdapter

from sluice.contracts.durations import DURATION_HINT
from sluice.contracts.spec.rollout import AnySpec

SCHEMA_ID = "https://raw.githubusercontent.com/sluice-rollouts/sluice/main/docs/rollout.schema.json"
"""Where the schema is published (the copy in docs/), as its `$id` and for `$schema=` lines: the raw
URL of docs/rollout.schema.json on the default branch; change it here (and regenerate the copy) if
the repository lives elsewhere."""

_DURATION: dict[str, Any] = {
    "type": "string",
    "pattern": r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$",
    "description": f"A duration: {DURATION_HINT}. A bare number is refused: it needs a unit.",
    "examples": ["30s", "5m", "1h30m"],
}


def rollout_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07) of a rollout spec, with `$id`, title and field descriptions.

    Draft-07, not pydantic's 2020-12: the VS Code YAML extension (yaml-language-server) validates
    with draft-07 and below, and SchemaStore serves schemas to it and to most editors.
    """
    generated = TypeAdapter(AnySpec).json_schema(ref_template="#/definitions/{model}")
    defs: dict[str, Any] = generated["$defs"]
    _shorthands(defs)
    for definition in defs.values():
        for prop in definition.get("properties", {}).values():
            prop.pop("title", None)  # "Set Weight": the field's own name says it better
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "Sluice rollout spec",
        "description": (
            "A progressive rollout run by Sluice on Temporal: a service, its new version, where traffic "
            "is split (router, or rings of routers), the steps and the analysis that can roll it back. "
            "`sluice validate -f FILE` checks the rules this schema cannot express. "
            "Reference: docs/spec.md."
        ),
        # The loader's rule: a spec with `rings:` is a ring rollout, any other a single rollout.
        "if": {"required": ["rings"]},
        "then": {"$ref": "#/definitions/RingRolloutSpec"},
        "else": {"$ref": "#/definitions/RolloutSpec"},
        "definitions": defs,
    }


def _shorthands(defs: dict[str, Any]) -> None:
    """What the models accept beyond their fields' shapes, which a plain export would refuse."""
    pause = defs["PauseSpec"]
    defs["PauseSpec"] = {
        "description": pause.get("description", ""),
        "anyOf": [
            {**_DURATION, "description": "Bake for this long (analysis keeps running)."},
            {**{k: v for k, v in pause.items() if k != "description"}, "title": "PauseSpec"},
        ],
    }
    step = defs["Step"]
    properties = step["properties"]
    properties.pop("watch", None)  # appended by the engine for `post_promotion`, never written
    properties["pause"]["description"] = (
        "`pause: 30s` bakes; `pause: {}` waits for `sluice resume` or `promote`."
    )
    properties["approval"]["description"] = (
        "A durable approval gate; `approval: {}` (or an empty `approval:`) lets anyone approve."
    )
    step["minProperties"] = 1
    step["additionalProperties"] = False
    # Every duration field (`Duration` in the models) gets the same description and examples.
    for definition in defs.values():
        for prop in definition.get("properties", {}).values():
            for option in [prop, *prop.get("anyOf", [])]:
                if option.get("pattern") == _DURATION["pattern"]:
                    option.update(copy.deepcopy({k: v for k, v in _DURATION.items() if k != "description"}))
                    prop.setdefault("description", _DURATION["description"])
