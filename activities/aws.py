"""boto3 for the AWS routers and providers: clients, calls off the event loop, errors as stable codes.

Clients use boto3's standard credential chain and region settings (profiles, environment,
instance and task roles) and honour `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`,
which is how the tests point them at a local `moto_server`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config
from temporalio.exceptions import ApplicationError

from sluice.contracts import errors
from sluice.contracts.text import cap

# botocore retries throttling and 5xx a few times itself (standard mode, with backoff and
# jitter); what is left after that is raised as retryable and Temporal's retry policy
# takes over. Timeouts stay well inside the 30s start-to-close timeout of an activity.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=10,
    user_agent_extra="sluice",
)

_ACCESS_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "AuthFailure",
}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "PriorRequestNotComplete",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "InternalServiceError",
    "RequestTimeout",
    "RequestTimeoutException",
    # Another change is still being applied (Lambda, API Gateway, Route 53): try again shortly.
    "ResourceConflictException",
    "ConflictException",
    "ConcurrentModification",
}

# IAM prefixes differ from boto3's service names for some services.
_IAM_PREFIX = {
    "elbv2": "elasticloadbalancing",
    "lambda": "lambda",
    "route53": "route53",
    "cloudwatch": "cloudwatch",
}

_lock = threading.Lock()


@functools.cache
def client(service: str, region: str | None) -> Any:
    """A cached boto3 client (clients are thread-safe; sessions are not, hence the lock)."""
    with _lock:
        return boto3.session.Session().client(service, region_name=region, config=_CONFIG)


def permission(service: str, operation: str, api: Any) -> str:
    """The IAM action a boto3 call needs: `elasticloadbalancing:ModifyListener`, `apigateway:PATCH`."""
    model = api.meta.service_model.operation_model(api.meta.method_to_api_mapping[operation])
    if service == "apigateway":
        return f"apigateway:{model.http['method']}"
    return f"{_IAM_PREFIX.get(service, service)}:{model.name}"


async def call(service: str, region: str | None, operation: str, where: str, **params: Any) -> dict[str, Any]:
    """Run one boto3 call in a thread; raise ApplicationError with a stable type on failure.

    - AccessDenied and friends: ROUTER_REJECTED, not retryable, naming the IAM action.
    - Not found / validation (any other 4xx): ROUTER_CONFIG, not retryable, with AWS's message.
    - Throttling, 5xx, timeouts, connection errors: ROUTER_UNREACHABLE, retryable.
    - No credentials or no region: ROUTER_CONFIG, not retryable.
    """
    try:
        api = client(service, region)
    except botocore.exceptions.NoRegionError:
        raise _config(f"{where}: no AWS region; set `region:` in the spec or AWS_REGION") from None
    try:
        result: dict[str, Any] = await asyncio.to_thread(getattr(api, operation), **params)
    except botocore.exceptions.ClientError as err:
        raise _from_client_error(err, service, operation, api, where) from None
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as err:
        raise _config(
            f"{where}: no AWS credentials ({err}); give the worker a role, a profile or AWS_* variables"
        ) from None
    except (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectionError,
        botocore.exceptions.ConnectTimeoutError,
        botocore.exceptions.ReadTimeoutError,
    ) as err:
        raise ApplicationError(
            cap(f"{where}: AWS {service} did not answer {operation}: {err}"), type=errors.ROUTER_UNREACHABLE
        ) from None
    except botocore.exceptions.ParamValidationError as err:
        raise _config(f"{where}: {operation} refused its parameters: {err}") from None
    return result


def _from_client_error(
    err: botocore.exceptions.ClientError, service: str, operation: str, api: Any, where: str
) -> ApplicationError:
    info = err.response.get("Error", {})
    code = str(info.get("Code", "Unknown"))
    message = str(info.get("Message", "")) or str(err)
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _ACCESS_DENIED or status == 403:
        return ApplicationError(
            cap(
                f"{where}: access denied to {operation}; the worker's AWS identity needs "
                f"{permission(service, operation, api)} (see the README's IAM policy): {message}"
            ),
            type=errors.ROUTER_REJECTED,
            non_retryable=True,
        )
    if code in _THROTTLED or status >= 500 or status == 429:
        return ApplicationError(
            cap(f"{where}: AWS {service} {operation} failed ({code}, retrying): {message}"),
            type=errors.ROUTER_UNREACHABLE,
        )
    return _config(f"{where}: {operation} failed ({code}): {message}")


def _config(message: str) -> ApplicationError:
    return ApplicationError(cap(message), type=errors.ROUTER_CONFIG, non_retryable=True)
