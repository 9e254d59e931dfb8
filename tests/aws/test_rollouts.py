"""Whole rollouts on AWS routers: dev server, `sluice worker` and the CLI, with AWS in a real moto_server.

For each router the weights are read back from the AWS API (not from Sluice's status) at every
step, and after a promotion, a rollback on a failing CloudWatch metric and an abort.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.aws.resources import aws, make_alb, make_lambda, make_route53
from tests.support.cli import run_sluice
from tests.support.moto import MotoServer
from tests.support.procs import ManagedProcess, wait_until
from tests.support.temporal import DevServer, start_worker

pytestmark = pytest.mark.integration
_services = itertools.count(1)


@dataclass
class Target:
    """One router's resources in moto and a way to read its canary percent straight from AWS."""

    router: dict[str, Any]
    canary_percent: Callable[[], int]
    end_state: Callable[[], object]
    """Everything a test compares after a promotion (e.g. the alias' primary version)."""


def alb_target() -> Target:
    alb = make_alb(third_group=True)

    def percent() -> int:
        w = alb.weights()
        assert w["other"] == 20, w  # a third group keeps its weight throughout
        return round(100 * w["canary"] / (w["stable"] + w["canary"]))

    def end() -> object:
        action = alb.default_action()
        return alb.weights(action), action["ForwardConfig"]["TargetGroupStickinessConfig"]

    return Target(alb.router(), percent, end)


def lambda_target() -> Target:
    fn = make_lambda()

    def percent() -> int:
        primary, extra = fn.state()
        if primary == fn.canary:
            assert not extra
            return 100
        assert primary == fn.stable
        return round(100 * extra.get(fn.canary, 0.0))

    return Target(fn.router(), percent, fn.state)


def route53_target() -> Target:
    zone = make_route53()

    def percent() -> int:
        w = zone.weights()
        return round(100 * w["checkout-v2"] / (w["checkout-v1"] + w["checkout-v2"]))

    return Target(zone.router(), percent, zone.weights)


TARGETS = {"alb": alb_target, "lambda_alias": lambda_target, "route53": route53_target}
PROMOTED = {
    "alb": (
        {"stable": 0, "canary": 100, "other": 20},
        {"Enabled": True, "DurationSeconds": 300},
    ),
    "lambda_alias": ("2", {}),
    "route53": {"checkout-v1": 0, "checkout-v2": 100},
}


@dataclass
class Rollout:
    service: str
    server: DevServer
    workdir: Path
    target: Target
    worker: ManagedProcess

    def spec(self, steps: list[dict[str, Any]], **analysis: Any) -> Path:
        data: dict[str, Any] = {
            "service": self.service,
            "version": "v2",
            "stable_version": "v1",
            "router": self.target.router,
            "steps": steps,
        }
        if analysis:
            data["analysis"] = {"interval": "1s", "inconclusive_limit": 1000, **analysis}
        path = self.workdir / "rollout.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def sluice(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_sluice(*args, env=self.server.env(), timeout=60)

    def start(self, spec: Path) -> None:
        done = self.sluice("start", "-f", str(spec))
        assert done.returncode == 0, done.stdout + done.stderr

    def status(self) -> dict[str, Any]:
        done = self.sluice("status", self.service, "--output", "json")
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def wait(self, check: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def ok() -> bool:
            nonlocal last
            last = self.status()
            return check(last)

        try:
            wait_until(ok, timeout, interval=0.3, what="rollout status")
        except TimeoutError as err:
            raise AssertionError(
                f"status never matched; last: {json.dumps(last, indent=1)}\n"
                f"worker log:\n{self.worker.log_tail(40)}"
            ) from err
        return last


@pytest.fixture
def aws_worker(dev_server: DevServer, aws_env: MotoServer, tmp_path: Path) -> Iterator[ManagedProcess]:
    proc = start_worker(dev_server, tmp_path / "worker.log", extra_env=aws_env.env())
    yield proc
    proc.stop()


@pytest.fixture(params=sorted(TARGETS))
def rollout(
    request: pytest.FixtureRequest, aws_worker: ManagedProcess, dev_server: DevServer, tmp_path: Path
) -> Rollout:
    kind: str = request.param
    service = f"{kind.replace('_', '-')}-{os.getpid() % 10000}-{next(_services)}"
    return Rollout(service, dev_server, tmp_path, TARGETS[kind](), aws_worker)


def put_counts(errors: float, requests: float) -> None:
    """The new version's counts, as ALB/Lambda/API Gateway would publish them."""
    now = datetime.now(UTC)
    dims = [{"Name": "Version", "Value": "v2"}]
    aws("cloudwatch").put_metric_data(
        Namespace="Sluice/Test",
        MetricData=[
            {"MetricName": "Errors", "Dimensions": dims, "Timestamp": now, "Value": errors, "Unit": "Count"},
            {
                "MetricName": "Requests",
                "Dimensions": dims,
                "Timestamp": now,
                "Value": requests,
                "Unit": "Count",
            },
        ],
    )


ERROR_RATIO = {
    "name": "canary-errors",
    "provider": "cloudwatch",
    "errors": {"namespace": "Sluice/Test", "metric_name": "Errors", "dimensions": {"Version": "v2"}},
    "requests": {"namespace": "Sluice/Test", "metric_name": "Requests", "dimensions": {"Version": "v2"}},
    "max": 0.05,
    "min_requests": 50,
}


def kind_of(rollout: Rollout) -> str:
    return str(rollout.target.router["type"])


def test_promotion_reads_back_every_step(rollout: Rollout) -> None:
    spec = rollout.spec(
        [{"set_weight": 10}, {"pause": {}}, {"set_weight": 50}, {"pause": {}}, {"set_weight": 100}],
        metrics=[ERROR_RATIO],
    )
    assert rollout.target.canary_percent() == 0
    rollout.start(spec)
    at10 = rollout.wait(lambda s: s["phase"] == "paused" and s["step_index"] == 1)
    assert at10["weights"] == {"stable": 90, "canary": 10}
    assert rollout.target.canary_percent() == 10
    put_counts(errors=1, requests=100)
    passed = rollout.wait(lambda s: any(v["verdict"] == "pass" for v in s["verdicts"]))
    assert passed["verdicts"][0]["counts"] == {"requests": 100, "errors": 1}
    assert rollout.sluice("resume", rollout.service, "--reason", "10% ok").returncode == 0

    at50 = rollout.wait(lambda s: s["phase"] == "paused" and s["step_index"] == 3)
    assert at50["weights"] == {"stable": 50, "canary": 50}
    assert rollout.target.canary_percent() == 50
    assert rollout.sluice("resume", rollout.service, "--reason", "50% ok").returncode == 0

    final = rollout.wait(lambda s: s["phase"] == "promoted")
    assert final["weights"] == {"stable": 0, "canary": 100}
    assert rollout.target.canary_percent() == 100
    assert rollout.target.end_state() == PROMOTED[kind_of(rollout)]


def test_failing_cloudwatch_metric_rolls_back(rollout: Rollout) -> None:
    spec = rollout.spec([{"set_weight": 20}, {"pause": "2m"}], metrics=[ERROR_RATIO])
    rollout.start(spec)
    rollout.wait(lambda s: (s.get("weights") or {}).get("canary") == 20)
    assert rollout.target.canary_percent() == 20
    put_counts(errors=30, requests=100)
    final = rollout.wait(lambda s: s["phase"] == "rolled_back")
    assert final["weights"] == {"stable": 100, "canary": 0}
    assert final["rollback"]["verified_at"] is not None
    assert "canary-errors" in final["message"]
    assert "30 errors in 100 requests (30%)" in final["verdicts"][0]["detail"]
    assert rollout.target.canary_percent() == 0


def put_version_counts(version: str, errors: float, requests: float) -> None:
    """One version's counts (dimension Version), as a target group or Lambda version publishes them."""
    dims = [{"Name": "Version", "Value": version}]
    aws("cloudwatch").put_metric_data(
        Namespace="Sluice/Test",
        MetricData=[
            {"MetricName": name, "Dimensions": dims, "Value": value, "Unit": "Count"}
            for name, value in (("Errors", errors), ("Requests", requests))
        ],
    )


def test_cloudwatch_compare_stable_rolls_back_a_worse_new_version(alb_rollout: Rollout) -> None:
    compare = {
        **{k: v for k, v in ERROR_RATIO.items() if k != "max"},
        "name": "errors-vs-stable",
        "compare": "stable",
        "stable_dimensions": {"Version": "v1"},
    }
    rollout = alb_rollout
    rollout.start(rollout.spec([{"set_weight": 20}, {"pause": "5m"}], metrics=[compare]))
    rollout.wait(lambda s: (s.get("weights") or {}).get("canary") == 20)
    put_version_counts("v2", errors=2, requests=200)
    put_version_counts("v1", errors=8, requests=800)  # both at 1%
    healthy = rollout.wait(lambda s: any(v["verdict"] == "pass" for v in s["verdicts"]))
    counts = healthy["verdicts"][0]["counts"]
    assert (counts["new_requests"], counts["stable_requests"]) == (200, 800)
    put_version_counts("v2", errors=40, requests=200)  # now 10.5% against stable's 1%
    put_version_counts("v1", errors=8, requests=800)
    final = rollout.wait(lambda s: s["phase"] == "rolled_back")
    assert final["weights"] == {"stable": 100, "canary": 0}
    assert rollout.target.canary_percent() == 0
    assert "worse than stable" in final["verdicts"][0]["detail"], final["verdicts"]


def test_abort_rolls_back(rollout: Rollout) -> None:
    rollout.start(rollout.spec([{"set_weight": 30}, {"pause": {}}]))
    rollout.wait(lambda s: s["phase"] == "paused")
    assert rollout.target.canary_percent() == 30
    assert rollout.sluice("abort", rollout.service, "--reason", "test abort").returncode == 0
    final = rollout.wait(lambda s: s["phase"] == "aborted")
    assert final["weights"] == {"stable": 100, "canary": 0}
    assert rollout.target.canary_percent() == 0


@pytest.fixture
def alb_rollout(aws_worker: ManagedProcess, dev_server: DevServer, tmp_path: Path) -> Rollout:
    service = f"alb-alarm-{os.getpid() % 10000}-{next(_services)}"
    return Rollout(service, dev_server, tmp_path, alb_target(), aws_worker)


def test_cloudwatch_alarm_in_alarm_rolls_back(alb_rollout: Rollout) -> None:
    cloudwatch = aws("cloudwatch")
    for name in ("checkout-5xx", "checkout-latency"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/ApplicationELB",
            MetricName="HTTPCode_Target_5XX_Count",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=5,
            ComparisonOperator="GreaterThanThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="quiet")
    gate = {"name": "alarms", "provider": "cloudwatch_alarm", "alarms": ["checkout-5xx", "checkout-latency"]}
    alb_rollout.start(alb_rollout.spec([{"set_weight": 10}, {"pause": "2m"}], metrics=[gate]))
    passed = alb_rollout.wait(lambda s: bool(s["verdicts"]) and s["verdicts"][0]["verdict"] == "pass")
    assert passed["verdicts"][0]["counts"]["ok"] == 2
    assert alb_rollout.target.canary_percent() == 10
    # moto never evaluates alarms itself: the test moves one to ALARM, as CloudWatch would.
    cloudwatch.set_alarm_state(AlarmName="checkout-5xx", StateValue="ALARM", StateReason="5xx above 5")
    final = alb_rollout.wait(lambda s: s["phase"] == "rolled_back")
    assert "checkout-5xx: 5xx above 5" in final["verdicts"][0]["detail"]
    assert final["weights"] == {"stable": 100, "canary": 0}
    assert alb_rollout.target.canary_percent() == 0


def test_preflight_failure_leaves_the_listener_alone(
    aws_worker: ManagedProcess, dev_server: DevServer, tmp_path: Path
) -> None:
    alb = make_alb(canary_targets=False)
    before = alb.default_action()
    rollout = Rollout(
        f"alb-pre-{os.getpid() % 10000}-{next(_services)}",
        dev_server,
        tmp_path,
        Target(alb.router(), lambda: 0, alb.default_action),
        aws_worker,
    )
    rollout.start(rollout.spec([{"set_weight": 50}]))
    final = rollout.wait(lambda s: s["phase"] == "rolled_back")
    assert "preflight failed, traffic was not touched" in final["message"]
    assert "no healthy target" in final["message"]
    assert alb.default_action() == before
