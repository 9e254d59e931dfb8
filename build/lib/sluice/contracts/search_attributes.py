"""The search attributes that make rollouts filterable in the Temporal UI and CLI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

SERVICE = SearchAttributeKey.for_keyword("SluiceService")
VERSION = SearchAttributeKey.for_keyword("SluiceVersion")
PHASE = SearchAttributeKey.for_keyword("SluicePhase")
WEIGHT = SearchAttributeKey.for_int("SluiceWeight")

# Name -> Temporal type, for `temporal operator search-attribute create` and the dev server.
REGISTRATION: dict[str, str] = {
    SERVICE.name: "Keyword",
    VERSION.name: "Keyword",
    PHASE.name: "Keyword",
    WEIGHT.name: "Int",
}
