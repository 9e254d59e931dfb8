"""`runtime/telemetry.py`: the metrics endpoint setting."""

from __future__ import annotations

import pytest

from sluice.runtime import telemetry


def test_metrics_address_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(telemetry.METRICS_ADDRESS_ENV, raising=False)
    assert telemetry.metrics_address() is None
    monkeypatch.setenv(telemetry.METRICS_ADDRESS_ENV, "off")
    assert telemetry.metrics_address() is None
    monkeypatch.setenv(telemetry.METRICS_ADDRESS_ENV, "0.0.0.0:9464")
    assert telemetry.metrics_address() == "0.0.0.0:9464"
    monkeypatch.setenv(telemetry.METRICS_ADDRESS_ENV, "9464")
    with pytest.raises(ValueError, match="host:port"):
        telemetry.metrics_address()


def test_metrics_address_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # `sluice worker --metrics-address` passes its value; `off` turns a set variable off.
    monkeypatch.setenv(telemetry.METRICS_ADDRESS_ENV, "0.0.0.0:9464")
    assert telemetry.metrics_address("127.0.0.1:9999") == "127.0.0.1:9999"
    assert telemetry.metrics_address("off") is None
    with pytest.raises(ValueError, match="host:port"):
        telemetry.metrics_address("nonsense")
