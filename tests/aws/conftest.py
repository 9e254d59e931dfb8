"""A real moto_server for the AWS tests: one per session on a free port, reset before every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import dev_server  # noqa: F401  (the e2e tests here share it)
from tests.support.moto import MotoServer, start_moto_server


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start_moto_server(tmp_path_factory.mktemp("moto"))
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())  # boto3 in this process (tests, routers) talks to moto
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture
def aws_env(moto: MotoServer) -> MotoServer:
    """A fresh moto_server: every resource of the previous test is gone."""
    moto.reset()
    return moto
