"""`--set KEY=VALUE`: simple fields replaced before validation, errors naming the key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sluice.contracts.spec import RolloutSpec, SpecError, load_spec
from tests.unit.spec.support import ROOT

TEXT = (ROOT / "examples" / "rollout.yaml").read_text()


def issues(*sets: str, text: str = TEXT) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as err:
        load_spec(text, "rollout.yaml", sets)
    return [(i.path, i.message) for i in err.value.issues]


def test_simple_fields_are_set_and_text_stays_as_written() -> None:
    spec = load_spec(
        TEXT,
        "rollout.yaml",
        ["version=1.10", "stable_version=2", "analysis.interval=10s", "analysis.failure_limit=2"],
    )
    assert isinstance(spec, RolloutSpec)
    assert (spec.version, spec.stable_version) == ("1.10", "2")
    assert spec.analysis is not None
    assert spec.analysis.interval == timedelta(seconds=10) and spec.analysis.failure_limit == 2


def test_a_router_field_is_set_in_the_router_its_type_names() -> None:
    alb = (ROOT / "examples" / "alb.yaml").read_text()
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/checkout-v3/0123456789abcdef"
    spec = load_spec(alb, "alb.yaml", [f"router.canary_target_group_arn={arn}"])
    assert spec.router.canary_target_group_arn == arn  # type: ignore[union-attr]


def test_a_field_taking_a_value_or_a_list_is_set_to_the_value() -> None:
    spec = load_spec(TEXT, overrides=["router.admin_socket=127.0.0.1:9999"])
    assert spec.router.admin_socket == "127.0.0.1:9999"  # type: ignore[union-attr]


def test_the_last_of_two_sets_wins_and_no_set_changes_nothing() -> None:
    assert load_spec(TEXT, overrides=["version=v3", "version=v4"]).version == "v4"
    assert load_spec(TEXT, overrides=[]).digest() == load_spec(TEXT).digest()


def test_setting_a_value_changes_the_digest_as_editing_the_file_would() -> None:
    by_set = load_spec(TEXT, overrides=["version=v3"])
    by_edit = load_spec(TEXT.replace("version: v2", "version: v3", 1))
    assert by_set == by_edit and by_set.digest() == by_edit.digest()


@pytest.mark.parametrize(
    ("item", "path", "says"),
    [
        ("versoin=v3", "--set versoin", "did you mean `version`?"),
        ("analysis.intervall=5s", "--set analysis.intervall", "did you mean `interval`?"),
        ("steps=[]", "--set steps", "not a simple field"),
        ("analysis=x", "--set analysis", "not a simple field"),
        ("version", "--set version", "expected KEY=VALUE"),
        ("=v3", "--set =v3", "expected KEY=VALUE"),
        ("version.major=1", "--set version.major", "holds no fields"),
    ],
)
def test_a_bad_key_is_named(item: str, path: str, says: str) -> None:
    found = issues(item)
    assert [p for p, _ in found] == [path] and says in found[0][1], found


def test_a_bad_value_is_reported_at_its_field_with_the_set_that_gave_it() -> None:
    [(path, message)] = issues("analysis.interval=5 seconds")
    assert path == "analysis.interval" and "(set by --set analysis.interval=5 seconds)" in message
    [(path, message)] = issues("version=v 3")
    assert path == "version" and message.endswith("(set by --set version=v 3)")


def test_numbers_are_parsed_as_yaml_scalars_where_a_number_belongs() -> None:
    [(path, message)] = issues("analysis.failure_limit=1.5")
    assert path == "analysis.failure_limit" and "without a fraction" in message
    [(path, message)] = issues("analysis.failure_limit=two")
    assert message == 'expected a whole number, got "two" (set by --set analysis.failure_limit=two)'


def test_bad_sets_come_with_the_files_other_problems() -> None:
    text = TEXT.replace("  backend: be_checkout", "  backend: 'a b'", 1)
    assert [p for p, _ in issues("versoin=v3", text=text)] == ["--set versoin", "router.backend"]
