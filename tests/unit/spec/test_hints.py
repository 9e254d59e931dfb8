"""What a spec error tells its author: duplicate keys and syntax errors with file and line, the closest
field for a typo, Argo's and Flagger's names translated, and a quote hint for numbers YAML made up."""

from __future__ import annotations

import pytest

from sluice.contracts.spec import SpecError, load_spec
from tests.unit.spec.support import ROOT

EXAMPLE_TEXT = (ROOT / "examples" / "rollout.yaml").read_text()


def issues_of(text: str, source: str = "rollout.yaml") -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as err:
        load_spec(text, source)
    return [(i.path, i.message) for i in err.value.issues]


def test_a_second_steps_block_is_refused_with_both_lines() -> None:
    text = EXAMPLE_TEXT + "steps:\n  - set_weight: 100\n"
    last_line = text.count("\n") - 1
    first_line = EXAMPLE_TEXT.splitlines().index("steps:") + 1
    with pytest.raises(SpecError) as err:
        load_spec(text, "deploy/rollout.yaml")
    [issue] = err.value.issues
    assert issue.path == "steps"
    assert issue.message.startswith(f"duplicate key at deploy/rollout.yaml, line {last_line}, column 1")
    assert f"first at line {first_line}, column 1" in issue.message
    assert (issue.line, issue.column) == (last_line, 1)


def test_duplicate_keys_deep_inside_are_refused_at_their_path() -> None:
    text = EXAMPLE_TEXT.replace("      max: 0.01\n", "      max: 0.01\n      max: 0.5\n", 1)
    [(path, message)] = issues_of(text)
    assert path == "analysis.metrics[0].max" and "duplicate key" in message


def test_duplicate_keys_come_with_every_other_problem() -> None:
    text = EXAMPLE_TEXT.replace("version: v2", "version: v2\nversion: v3\nverison: v4", 1)
    assert [p for p, _ in issues_of(text)] == ["version", "verison"]


def test_merge_keys_may_be_overridden() -> None:
    text = (ROOT / "examples" / "rings.yaml").read_text()
    anchored = text.replace(
        "    router:\n      type: haproxy", "    router: &haproxy\n      type: haproxy", 1
    )
    assert anchored != text
    spec = load_spec(anchored)
    assert spec == load_spec(text)
    merged = "defaults: &d {interval: 5s, failure_limit: 1}\n" + EXAMPLE_TEXT.replace(
        "analysis:\n  interval: 5s", "analysis:\n  <<: *d\n  interval: 10s", 1
    )
    # The merge is valid YAML (no duplicate); the unknown `defaults` key is the only problem.
    assert [p for p, _ in issues_of(merged)] == ["defaults"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "service: x\n  version: [\n",
            "at deploy.yaml, line 2, column 10: mapping values are not allowed here",
        ),
        ("service: x\nversion: [\n", "at deploy.yaml, line 3, column 1: expected the node content"),
        ("service: a\x00b\n", "in deploy.yaml: the control character U+0000"),
    ],
)
def test_yaml_syntax_errors_name_the_file(text: str, says: str) -> None:
    [(path, message)] = issues_of(text, "deploy.yaml")
    assert path == "" and message.startswith("not valid YAML") and says in message
    assert "<unicode string>" not in message


@pytest.mark.parametrize(
    ("old", "new", "path", "hint"),
    [
        ("  - set_weight: 10 ", "  - setWeight: 10 ", "steps[0].setWeight", "did you mean `set_weight`?"),
        ("  failure_limit: 0", "  failureLimit: 0", "analysis.failureLimit", "did you mean `failure_limit`?"),
        ("  inconclusive_limit", "  inconclusiveLimit", "analysis.inconclusiveLimit", "`inconclusive_limit`"),
        ("  backend: be", "  bakend: be", "router.bakend", "did you mean `backend`?"),
        ("stable_version:", "stableVersion:", "stableVersion", "did you mean `stable_version`?"),
        (
            "      min_success_ratio",
            "      minSuccessRatio",
            "analysis.metrics[1].minSuccessRatio",
            "`min_success_ratio`",
        ),
        ("  interval: 5s ", "  intervall: 5s ", "analysis.intervall", "did you mean `interval`?"),
        (
            "      max: 0.5",
            "      successCondition: result < 0.5",
            "analysis.metrics[2].successCondition",
            "`max:` and/or `min:`",
        ),
        ("  failure_limit: 0", "  threshold: 1", "analysis.threshold", "`failure_limit`"),
        ("steps:", "stepWeight: 10\nmaxWeight: 50\nsteps:", "stepWeight", "written out as steps"),
        (
            "  canary_server: canary",
            "  canaryService: canary",
            "router.canaryService",
            "`canary_server` (haproxy)",
        ),
        (
            "service: checkout",
            "apiVersion: argoproj.io/v1alpha1\nservice: checkout",
            "apiVersion",
            "not a Kubernetes",
        ),
        (
            "  failure_limit: 0",
            "  failure_limit: 0\n  count: 3",
            "analysis.count",
            "the fields here are interval, ",
        ),
    ],
)
def test_unknown_fields_get_the_closest_field_or_the_translation(
    old: str, new: str, path: str, hint: str
) -> None:
    assert old in EXAMPLE_TEXT
    issues = issues_of(EXAMPLE_TEXT.replace(old, new, 1))
    assert [p for p, _ in issues if p == path] == [path], issues
    message = dict(issues)[path]
    assert message.startswith("unknown field") and hint in message, message


def test_camel_case_in_an_exponential_preset_and_a_ring() -> None:
    text = (ROOT / "examples" / "rings.yaml").read_text().replace("    soak:", "    soakTime:", 1)
    assert "soakTime" in text
    [(path, message)] = issues_of(text)
    assert path == "rings[0].soakTime" and "did you mean `soak`?" in message


@pytest.mark.parametrize(
    ("old", "new", "path", "quoted"),
    [
        ("version: v2", "version: 1.10", "version", 'version: "1.10"'),
        ("stable_version: v1", "stable_version: 2", "stable_version", 'stable_version: "2"'),
        ("version: v2", "version: 3", "version", 'version: "3"'),
        ("  backend: be_checkout", "  backend: yes", "router.backend", 'backend: "yes"'),
    ],
)
def test_numbers_yaml_made_of_labels_get_a_quote_hint(old: str, new: str, path: str, quoted: str) -> None:
    [(where, message)] = issues_of(EXAMPLE_TEXT.replace(old, new, 1))
    assert where == path and "write it in quotes" in message and quoted in message, message


def test_the_quote_hint_quotes_what_was_written_not_what_yaml_made_of_it() -> None:
    [(_, message)] = issues_of(EXAMPLE_TEXT.replace("version: v2", "version: 1.10", 1))
    assert (
        message == 'expected text, but YAML read 1.10 as the number 1.1; write it in quotes: version: "1.10"'
    )


def test_issues_carry_the_line_of_their_field() -> None:
    with pytest.raises(SpecError) as err:
        load_spec(EXAMPLE_TEXT.replace("  backend: be_checkout", "  backend: 'a b'", 1))
    [issue] = err.value.issues
    assert issue.path == "router.backend"
    assert issue.line == EXAMPLE_TEXT.splitlines().index("  backend: be_checkout") + 1 and issue.column == 3


# --- one pass -------------------------------------------------------------------------------


def test_a_bad_address_no_longer_hides_a_missing_bound() -> None:
    text = EXAMPLE_TEXT.replace("address: http://127.0.0.1:9090", "address: htp://127.0.0.1:9090", 1)
    text = text.replace("      max: 0.5\n", "")
    assert [p for p, _ in issues_of(text)] == ["analysis.metrics[2].address", "analysis.metrics[2]"]
    assert "needs a bound" in issues_of(text)[1][1]


def test_a_bad_name_no_longer_hides_a_model_rule_of_the_same_router() -> None:
    text = EXAMPLE_TEXT.replace("  backend: be_checkout", "  backend: 'be checkout'", 1)
    text = text.replace("  canary_server: canary", "  canary_server: stable", 1)
    issues = issues_of(text)
    assert [p for p, _ in issues] == ["router.backend", "router"]
    assert "are the same server" in issues[1][1]


def test_a_rule_that_reads_a_bad_field_is_not_run_on_a_guess() -> None:
    # `compare` is refused, so whether `max` may go with it cannot be judged: no second issue.
    text = EXAMPLE_TEXT.replace("      max: 0.01\n", "      max: 0.01\n      compare: stabel\n", 1)
    assert [p for p, _ in issues_of(text)] == ["analysis.metrics[0].compare"]


def test_a_bad_top_level_field_does_not_make_rings_report_it_missing() -> None:
    text = (ROOT / "examples" / "rings.yaml").read_text().replace("version: v2", "version: v 2", 1)
    assert [p for p, _ in issues_of(text)] == ["version"]


def test_valid_specs_are_untouched_by_the_one_pass_check() -> None:
    spec = load_spec(EXAMPLE_TEXT)
    assert spec.model_dump(mode="json")["version"] == "v2"
