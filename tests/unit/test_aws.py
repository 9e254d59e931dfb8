"""AWS client errors mapped to the stable error codes routers raise."""

from __future__ import annotations

import botocore.exceptions
import pytest
from temporalio.exceptions import ApplicationError

from sluice.activities.aws import _from_client_error, client
from sluice.contracts import errors


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "UpdateAlias",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind", "final"),
    [
        ("AccessDeniedException", 403, errors.ROUTER_REJECTED, True),
        ("ValidationException", 400, errors.ROUTER_CONFIG, True),
        ("ResourceNotFoundException", 404, errors.ROUTER_CONFIG, True),
        ("TooManyRequestsException", 429, errors.ROUTER_UNREACHABLE, False),
        ("ServiceException", 500, errors.ROUTER_UNREACHABLE, False),
        ("ResourceConflictException", 409, errors.ROUTER_UNREACHABLE, False),
    ],
)
def test_aws_errors_map_to_stable_codes(code: str, status: int, kind: str, final: bool) -> None:
    api = client("lambda", "eu-west-1")
    err = _from_client_error(_client_error(code, status), "lambda", "update_alias", api, "here")
    assert isinstance(err, ApplicationError)
    assert (err.type, err.non_retryable) == (kind, final)
    if kind == errors.ROUTER_REJECTED:
        assert "lambda:UpdateAlias" in err.message
