"""Rollout and ring specs: strategies, the post-promotion watch, rings, cross-field rules and the digest."""

from __future__ import annotations

import pytest
import yaml

from sluice.cli.render import render_plan
from sluice.contracts.plan import build_plan, plan_json
from sluice.contracts.spec import (
    RingRolloutSpec,
    RolloutSpec,
    SpecError,
    load_spec,
    parse_any_spec,
)
from tests.unit.spec.support import (
    ROOT,
    aws_issues,
    example,
    issues_with,
    only_issue,
    rejected,
    spec_with,
    steps_of,
)


def test_bad_service_name_and_duplicate_metric_names() -> None:
    path, msg = only_issue(rejected(lambda d: d.__setitem__("service", "Checkout Service")))
    assert path == "service" and "lowercase" in msg
    err = rejected(lambda d: d["analysis"]["metrics"][1].__setitem__("name", "canary-5xx"))
    assert "unique" in only_issue(err)[1]


def test_plan_shows_a_preset_expansion_and_the_watch() -> None:
    s = spec_with(steps=None, preset="Canary10Percent5Minutes", post_promotion="10m")
    text = "\n".join(render_plan(build_plan(s)))
    assert "preset Canary10Percent5Minutes" in text and "post-promotion watch 10m" in text
    assert "added" not in text
    data = plan_json(build_plan(s))
    assert data["preset"] == "Canary10Percent5Minutes" and data["steps"][-1]["kind"] == "watch"


def test_blue_green_example_and_its_expansion() -> None:
    s = load_spec((ROOT / "examples" / "blue_green.yaml").read_text())
    assert isinstance(s, RolloutSpec) and s.strategy == "blue_green"
    assert steps_of(s) == [
        "bake 1m",
        "approval by alice or bob (2h, then rollback)",
        "shift to 100%",
        "post-promotion watch 10m",
    ]


def test_blue_green_refuses_partial_weights_and_presets() -> None:
    assert any("switches 100% at once" in m for _, m in issues_with(strategy="blue_green"))
    assert any("presets" in m for _, m in issues_with(strategy="blue_green", steps=None, preset="AllAtOnce"))


def test_scale_down_delay_must_cover_the_watch() -> None:
    found = issues_with(strategy="blue_green", steps=[], post_promotion="30m", scale_down_delay="10m")
    assert any("scale_down_delay is shorter" in m for _, m in found)


def test_blue_green_fields_need_blue_green() -> None:
    assert any("blue_green only" in m for _, m in issues_with(scale_down_delay="10m"))


def test_rings_example_validates() -> None:
    s = load_spec((ROOT / "examples" / "rings.yaml").read_text())
    assert isinstance(s, RingRolloutSpec) and [r.name for r in s.rings] == ["canary-region", "eu"]
    first = s.ring_spec(0)
    assert first.watch_time is not None and first.router.type == "haproxy"
    assert steps_of(first)[-1] == "post-promotion watch 30m"
    assert s.ring_spec(1).watch_time is None


def test_ring_errors_name_the_ring() -> None:
    data = yaml.safe_load((ROOT / "examples" / "rings.yaml").read_text())
    data["rings"][1]["approval"] = {"approvers": ["bob"]}
    with pytest.raises(SpecError) as err:
        parse_any_spec(data)
    assert "last ring" in err.value.issues[0].message
    data["rings"][1].pop("approval")
    data["rings"][1]["name"] = "canary-region"
    with pytest.raises(SpecError) as err:
        parse_any_spec(data)
    assert "unique" in err.value.issues[0].message


def test_digest_of_a_spec_without_new_fields_is_unchanged() -> None:
    # The digest as computed before the strategies fields existed (main at a7e9ab1).
    assert load_spec((ROOT / "examples" / "rollout.yaml").read_text()).digest() == "65b138b82b63ccf0"


def test_haproxy_counters_need_the_haproxy_router() -> None:
    metric = {"name": "canary-5xx", "provider": "haproxy", "max": 0.01}
    [(path, msg)] = aws_issues("lambda_alias", lambda d: d["analysis"]["metrics"].append(metric))
    assert path == "analysis.metrics[1].provider" and "provider cloudwatch" in msg


DIGESTS = {
    "alb": "5cd98a097fffd6c8",
    "apigateway": "e59db79cd3a49d82",
    "blue_green": "03aecba4130c916e",
    "caddy": "6b4ab27c6d73611c",
    "compare": "8ea9a74692f10780",
    "compose": "0392d11299c096d2",
    "lambda_alias": "5e4239cc922f6725",
    "nginx": "f6c72b67a3c9624a",
    "notify": "322524ca99b547c0",
    "rings": "aacf472d9fd8c166",
    "rollout": "65b138b82b63ccf0",
    "route53": "2d89c142f552bc6b",
    "traefik": "19f416be6c56f9d2",
}
"""Each example's digest as main computed it before the spec became a package: a CI re-run of an
unchanged spec must keep recognising its rollout."""


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_digest_of_every_example_is_unchanged(name: str) -> None:
    assert load_spec((ROOT / "examples" / f"{name}.yaml").read_text()).digest() == DIGESTS[name]


@pytest.mark.parametrize("service", ["checkout\n", "\ncheckout", "check out", "checkout\x00"])
def test_service_names_are_matched_to_the_true_end(service: str) -> None:
    path, msg = only_issue(rejected(lambda d: d.__setitem__("service", service)))
    assert path == "service" and "not a service name" in msg


def test_ring_errors_name_the_field() -> None:
    data = example("rings")
    data["rings"][0]["soak"] = "0s"
    with pytest.raises(SpecError) as err:
        parse_any_spec(data)
    assert [(i.path, i.message) for i in err.value.issues] == [("rings[0].soak", "must be longer than 0s")]
    data = example("rings")
    data["rings"][1]["approval"] = {}
    with pytest.raises(SpecError) as err:
        parse_any_spec(data)
    assert err.value.issues[0].path == "rings[1].approval"


@pytest.mark.parametrize(
    ("target", "where"),
    [
        ({"url": "https://hooks.example.com/a b"}, "notify[0]"),
        ({"url": "https://hooks.example.com/x\n"}, "notify[0]"),
        ({"url_env": "SLACK_URL\n"}, "notify[0].url_env"),
    ],
)
def test_webhook_targets_are_matched_to_the_true_end(target: dict[str, str], where: str) -> None:
    path, _ = only_issue(rejected(lambda d: d.__setitem__("notify", [target])))
    assert path.startswith(where)
