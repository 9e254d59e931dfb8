"""The traffic routers a spec can name, each splitting traffic between two targets."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Literal, Union, get_args

from pydantic import AfterValidator, Field, model_validator

from sluice.contracts.durations import Duration
from sluice.contracts.spec.base import (
    AwsRegion,
    HttpUrl,
    PositiveDuration,
    SafeName,
    SpecModel,
    located,
    pattern,
)
from sluice.contracts.spec.plugins import RouterPlugin, discover

_SOCKET_PATH = re.compile(r"/[^\s\x00-\x1f\x7f]{0,4095}")
_HOST_PORT = re.compile(r"[A-Za-z0-9_.-]{1,253}:(\d{1,5})")


def _admin_socket(value: str) -> str:
    if _SOCKET_PATH.fullmatch(value):
        return value
    host_port = _HOST_PORT.fullmatch(value)
    if host_port and 1 <= int(host_port.group(1)) <= 65535:
        return value
    raise ValueError(
        f"{value!r} is neither a unix socket path (starting with '/', without spaces or control "
        "characters) nor host:port (a port from 1 to 65535), "
        "e.g. '/run/haproxy/admin.sock' or '127.0.0.1:9999'"
    )


def _admin_sockets(value: str | list[str]) -> str | list[str]:
    if isinstance(value, str):
        return _admin_socket(value)
    if not value:
        raise ValueError("an empty list; name at least one runtime API socket")
    return [_admin_socket(v) for v in value]


def _socket_key(value: str) -> str:
    """A socket as a traffic target key: a unix path as written, `host:port` with the host in lower case."""
    if value.startswith("/"):
        return value
    host, _, port = value.rpartition(":")
    return f"{host.lower()}:{port}"


class HAProxyRouter(SpecModel):
    """Two servers of one HAProxy backend, weighted through the runtime API."""

    type: Literal["haproxy"]
    admin_socket: Annotated[str | list[str], AfterValidator(_admin_sockets)]
    """HAProxy's runtime API (`level admin`: a unix socket path or host:port), or a list of them (an HA
    pair, a fleet): each gets every change."""
    backend: SafeName
    """The backend holding both servers."""
    stable_server: SafeName
    """The server running the current version."""
    canary_server: SafeName
    """The server running the new version."""
    timeout: PositiveDuration = timedelta(seconds=5)
    """Per runtime API command."""

    @model_validator(mode="after")
    def _distinct_servers(self) -> HAProxyRouter:
        if self.stable_server == self.canary_server:
            raise ValueError(
                "stable_server and canary_server are the same server; "
                "name the two servers that run the old and the new version"
            )
        return self

    def describe(self) -> str:
        """One line for plans and the UI: which router splits traffic between which two targets."""
        return (
            f"haproxy `{self.backend}` (stable server `{self.stable_server}`, "
            f"canary server `{self.canary_server}`)"
        )

    def traffic_targets(self) -> tuple[str, ...]:
        """What this router drives, one key per HAProxy instance: `haproxy:<admin socket>#<backend>`.

        Two rollouts whose routers share a key would move the same traffic (see `RolloutSpec`'s
        `traffic_targets`). Sockets are compared as written (a host name in lower case).
        """
        sockets = [self.admin_socket] if isinstance(self.admin_socket, str) else self.admin_socket
        return tuple(sorted({f"haproxy:{_socket_key(s)}#{self.backend}" for s in sockets}))


_ARN_PARTITION_REGION_ACCOUNT = r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}"
_LISTENER_ARN = re.compile(
    rf"{_ARN_PARTITION_REGION_ACCOUNT}:listener/app/[A-Za-z0-9-]{{1,32}}/[0-9a-f]+/[0-9a-f]+"
)
_RULE_ARN = re.compile(
    rf"{_ARN_PARTITION_REGION_ACCOUNT}:listener-rule/app/[A-Za-z0-9-]{{1,32}}/[0-9a-f]+/[0-9a-f]+/[0-9a-f]+"
)
_TARGET_GROUP_ARN = re.compile(rf"{_ARN_PARTITION_REGION_ACCOUNT}:targetgroup/[A-Za-z0-9-]{{1,32}}/[0-9a-f]+")
_LAMBDA_FUNCTION = re.compile(r"(?:arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_-]{1,64}")
_LAMBDA_ALIAS = re.compile(r"(?!\d+\Z)[A-Za-z0-9_-]{1,128}")
_LAMBDA_VERSION = re.compile(r"[1-9]\d{0,9}")
_APIGW_ID = re.compile(r"[a-z0-9]{1,64}")
_APIGW_STAGE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_HOSTED_ZONE = re.compile(r"(?:/hostedzone/)?[A-Z0-9]{1,32}")
_DNS_NAME = re.compile(
    r"(?:\*\.)?(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_-]{1,63}\.?"
)
_SET_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:+=@/ -]{1,128}")


ListenerArn = Annotated[
    str,
    pattern(
        _LISTENER_ARN,
        "an ALB listener ARN",
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2",
    ),
]
RuleArn = Annotated[
    str,
    pattern(
        _RULE_ARN,
        "an ALB listener rule ARN",
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/"
        "f2f7dc8efc522ab2/9683b2d02a6cabee",
    ),
]
TargetGroupArn = Annotated[
    str,
    pattern(
        _TARGET_GROUP_ARN,
        "a target group ARN",
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/checkout-v2/73e2d6bc24d8a067",
    ),
]


def _region_of(arn: str) -> str:
    return arn.split(":")[3]


class ALBRouter(SpecModel):
    """An ALB listener's forward action (its default action, or one rule) with two weighted target groups."""

    type: Literal["alb"]
    listener_arn: ListenerArn
    """The listener whose forward action is weighted."""
    rule_arn: RuleArn | None = None
    """Weight this rule's forward action instead of the default action; a rule of `listener_arn`."""
    stable_target_group_arn: TargetGroupArn
    """The target group running the current version."""
    canary_target_group_arn: TargetGroupArn
    """The target group running the new version; must differ from stable."""
    region: AwsRegion | None = None
    """Default: the region in `listener_arn`."""

    @model_validator(mode="after")
    def _consistent(self) -> ALBRouter:
        if self.stable_target_group_arn == self.canary_target_group_arn:
            raise ValueError(
                "stable_target_group_arn and canary_target_group_arn are the same target group; "
                "name the groups that run the old and the new version"
            )
        if self.rule_arn is not None:
            listener_path = self.listener_arn.split(":listener/", 1)[1]
            rule_path = self.rule_arn.split(":listener-rule/", 1)[1]
            if rule_path.rsplit("/", 1)[0] != listener_path:
                raise ValueError("rule_arn is not a rule of listener_arn; take both from the same listener")
        return self

    @property
    def aws_region(self) -> str:
        """`region`, or the region in the listener ARN."""
        return self.region or _region_of(self.listener_arn)

    def describe(self) -> str:
        """One line for plans and the UI: which router splits traffic between which two targets."""
        where = f"rule `{self.rule_arn.rsplit('/', 1)[1]}`" if self.rule_arn else "default action"
        listener = self.listener_arn.split(":listener/", 1)[1]
        return (
            f"alb listener `{listener}` {where} (stable target group "
            f"`{self.stable_target_group_arn.split(':targetgroup/', 1)[1]}`, canary target group "
            f"`{self.canary_target_group_arn.split(':targetgroup/', 1)[1]}`)"
        )

    def traffic_targets(self) -> tuple[str, ...]:
        """`alb:<rule ARN>`, or `alb:<listener ARN>#default` for the listener's default action."""
        return (f"alb:{self.rule_arn}",) if self.rule_arn else (f"alb:{self.listener_arn}#default",)


class LambdaAliasRouter(SpecModel):
    """A Lambda alias whose primary version is stable, with weighted routing to the new version."""

    type: Literal["lambda_alias"]
    function_name: Annotated[str, pattern(_LAMBDA_FUNCTION, "a Lambda function name or ARN", "checkout-api")]
    """The function's name or ARN."""
    alias: Annotated[str, pattern(_LAMBDA_ALIAS, "a Lambda alias name (not a number)", "live")]
    """The alias whose routing is weighted (not a number)."""
    stable_function_version: Annotated[
        str, pattern(_LAMBDA_VERSION, "a published Lambda version number (not $LATEST)", "7")
    ]
    """The published version the alias serves now, quoted: "7"."""
    canary_function_version: Annotated[
        str, pattern(_LAMBDA_VERSION, "a published Lambda version number (not $LATEST)", "8")
    ]
    """The published version of the new code, quoted: "8"."""
    region: AwsRegion | None = None
    """Default: the region in a function ARN, else boto3's default."""

    @model_validator(mode="after")
    def _distinct_versions(self) -> LambdaAliasRouter:
        if self.stable_function_version == self.canary_function_version:
            raise ValueError(
                "stable_function_version and canary_function_version are the same version; "
                "publish the new code as a new version first (`aws lambda publish-version`)"
            )
        return self

    @property
    def aws_region(self) -> str | None:
        """`region`, the region in a function ARN, or None for boto3's default."""
        if self.region:
            return self.region
        return _region_of(self.function_name) if self.function_name.startswith("arn:") else None

    def describe(self) -> str:
        """One line for plans and the UI: which router splits traffic between which two targets."""
        return (
            f"lambda_alias `{self.function_name}:{self.alias}` (stable version "
            f"`{self.stable_function_version}`, canary version `{self.canary_function_version}`)"
        )

    def traffic_targets(self) -> tuple[str, ...]:
        """`lambda_alias:<function name>:<alias>`, the name taken out of an ARN.

        Region and account are left out, so a name and its ARN are the same target; the same
        name and alias in two regions then count as one (a refusal to wait for, never a clash missed).
        """
        return (f"lambda_alias:{self.function_name.rsplit(':function:', 1)[-1]}:{self.alias}",)


class ApiGatewayRouter(SpecModel):
    """A REST API stage's canary settings: `percentTraffic` to the canary deployment."""

    type: Literal["apigateway"]
    rest_api_id: Annotated[str, pattern(_APIGW_ID, "a REST API id", "a1b2c3d4e5")]
    """The REST API."""
    stage: Annotated[str, pattern(_APIGW_STAGE, "a stage name", "prod")]
    """The stage whose canary settings are weighted."""
    stable_deployment_id: Annotated[str, pattern(_APIGW_ID, "a deployment id", "abc123")]
    """The deployment the stage serves now."""
    canary_deployment_id: Annotated[str, pattern(_APIGW_ID, "a deployment id", "def456")]
    """The new version's deployment."""
    region: AwsRegion | None = None
    """Default: boto3's."""

    @model_validator(mode="after")
    def _distinct_deployments(self) -> ApiGatewayRouter:
        if self.stable_deployment_id == self.canary_deployment_id:
            raise ValueError(
                "stable_deployment_id and canary_deployment_id are the same deployment; "
                "deploy the new version first (`aws apigateway create-deployment`)"
            )
        return self

    @property
    def aws_region(self) -> str | None:
        """`region`, or None for boto3's default."""
        return self.region

    def describe(self) -> str:
        """One line for plans and the UI: which router splits traffic between which two targets."""
        return (
            f"apigateway `{self.rest_api_id}/{self.stage}` (stable deployment "
            f"`{self.stable_deployment_id}`, canary deployment `{self.canary_deployment_id}`)"
        )

    def traffic_targets(self) -> tuple[str, ...]:
        """`apigateway:<rest api id>/<stage>` (REST API ids are random, so the region is left out)."""
        return (f"apigateway:{self.rest_api_id}/{self.stage}",)


class Route53Router(SpecModel):
    """Two weighted records (same name and type, different SetIdentifier) in one hosted zone."""

    type: Literal["route53"]
    hosted_zone_id: Annotated[str, pattern(_HOSTED_ZONE, "a hosted zone id", "Z0123456789ABCDEFGHIJ")]
    """The hosted zone (a `/hostedzone/` prefix is accepted)."""
    record_name: Annotated[str, pattern(_DNS_NAME, "a DNS name", "api.example.com")]
    """The weighted records' name, e.g. api.example.com."""
    record_type: Literal["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NAPTR", "PTR", "SPF", "DS"] = "A"
    """The weighted records' type."""
    stable_set_identifier: Annotated[
        str, pattern(_SET_IDENTIFIER, "a record SetIdentifier (1-128 characters)", "checkout-v1")
    ]
    """The SetIdentifier of the current version's record."""
    canary_set_identifier: Annotated[
        str, pattern(_SET_IDENTIFIER, "a record SetIdentifier (1-128 characters)", "checkout-v2")
    ]
    """The SetIdentifier of the new version's record."""
    wait_after_change: Duration = timedelta(0)
    """Time to wait after each change is INSYNC, so resolvers' caches (the records' TTL) expire."""

    @model_validator(mode="after")
    def _consistent(self) -> Route53Router:
        if self.stable_set_identifier == self.canary_set_identifier:
            raise ValueError(
                "stable_set_identifier and canary_set_identifier are the same record; "
                "name the two weighted records of the old and the new version"
            )
        if self.wait_after_change > timedelta(seconds=15):
            raise ValueError(
                "wait_after_change is at most 15s (it runs inside the 30s traffic activity, after up "
                "to 10s waiting for INSYNC); for a "
                "longer TTL add `- pause: <TTL>` steps after each `set_weight` instead"
            )
        return self

    @property
    def aws_region(self) -> str | None:
        """Route 53 is global; boto3's default region is used for signing."""
        return None

    def describe(self) -> str:
        """One line for plans and the UI: which router splits traffic between which two targets."""
        return (
            f"route53 `{self.record_name}` {self.record_type} (stable record `{self.stable_set_identifier}`, "
            f"canary record `{self.canary_set_identifier}`)"
        )

    def traffic_targets(self) -> tuple[str, ...]:
        """`route53:<zone id>:<record name>:<type>`, the name in lower case with its final dot."""
        zone = self.hosted_zone_id.removeprefix("/hostedzone/")
        name = self.record_name.lower().rstrip(".") + "."
        return (f"route53:{zone}:{name}:{self.record_type}",)


# --- the proxies teams run outside Kubernetes: NGINX, Traefik, Caddy ----------------------------

_ABSOLUTE_PATH = re.compile(r"/[^\s\x00-\x1f\x7f;{}'\"#]{0,4095}")
# host:port as a proxy dials it: a name or IPv4 address, or an IPv6 address in brackets.
_DIAL = re.compile(r"(?:[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([1-9]\d{0,4})")
_NGINX_SERVER = re.compile(rf"{_DIAL.pattern}|unix:{_ABSOLUTE_PATH.pattern}")
_BINARY = re.compile(r"[A-Za-z0-9_.+-]{1,255}|/[^\s\x00-\x1f\x7f]{0,4095}")
_TRAEFIK_SERVICE = re.compile(r"[A-Za-z0-9_.-]{1,128}(?:@[A-Za-z0-9_-]{1,64})?")

AbsolutePath = Annotated[
    str,
    pattern(
        _ABSOLUTE_PATH,
        "an absolute path without spaces, quotes, ';', '{', '}', '#' or control characters",
        "/etc/nginx/sluice/checkout.conf",
    ),
]


def _port_in_range(value: str) -> str:
    match = _DIAL.fullmatch(value)
    if match and not 1 <= int(match.group(1)) <= 65535:
        raise ValueError(f"{value!r} has a port above 65535")
    return value


Dial = Annotated[
    str,
    pattern(_DIAL, "host:port (an IPv6 address in brackets)", "127.0.0.1:8081"),
    AfterValidator(_port_in_range),
]
NginxServer = Annotated[
    str,
    pattern(_NGINX_SERVER, "an NGINX server address: host:port or unix:/path", "127.0.0.1:8081"),
    AfterValidator(_port_in_range),
]
Binary = Annotated[
    str, pattern(_BINARY, "a program name (found on PATH) or an absolute path", "/usr/sbin/nginx")
]


def _at_most(limit: timedelta, why: str) -> AfterValidator:
    """A timeout no longer than `limit`: the router's work runs inside one 30s traffic activity."""

    def check(value: timedelta) -> timedelta:
        if value > limit:
            raise ValueError(f"must be at most {limit.total_seconds():g}s ({why})")
        return value

    return AfterValidator(check)


_IN_ACTIVITY = "it runs inside the 30s traffic activity"


class NginxRouter(SpecModel):
    """Two `server` lines of an NGINX upstream, in an include file Sluice owns, applied by reload.

    Sluice runs `nginx -t`/`-s reload` itself, so the worker runs on the NGINX host.
    """

    type: Literal["nginx"]
    config: AbsolutePath
    """The main nginx.conf (`nginx -c`), which includes `upstream_file` inside an `upstream` block."""
    prefix: AbsolutePath | None = None
    """`nginx -p`: where relative paths in the config start (default: NGINX's compiled-in prefix)."""
    upstream_file: AbsolutePath
    """The file Sluice owns: exactly the two `server` lines, rewritten on every change."""
    stable_server: NginxServer
    canary_server: NginxServer
    binary: Binary = "nginx"
    timeout: Annotated[PositiveDuration, _at_most(timedelta(seconds=20), _IN_ACTIVITY)] = timedelta(
        seconds=10
    )
    """For one whole change: `nginx -t`, `nginx -s reload` and the new workers starting."""

    @model_validator(mode="after")
    def _consistent(self) -> NginxRouter:
        if self.stable_server == self.canary_server:
            raise ValueError(
                "stable_server and canary_server are the same server; "
                "name the two servers that run the old and the new version"
            )
        if self.upstream_file == self.config:
            raise located(
                "upstream_file",
                "upstream_file is the main config; name a separate file that the config includes "
                "inside its upstream block (Sluice rewrites it whole)",
            )
        return self

    def describe(self) -> str:
        """One line for plans and the UI: which router splits traffic between which two targets."""
        return (
            f"nginx `{self.upstream_file}` (stable server `{self.stable_server}`, "
            f"canary server `{self.canary_server}`)"
        )

    def traffic_targets(self) -> tuple[str, ...]:
        """`nginx:<upstream_file>`: the include file Sluice owns is the traffic it drives."""
        return (f"nginx:{self.upstream_file}",)


class TraefikRouter(SpecModel):
    """A weighted round-robin service in Traefik's file provider, read back through Traefik's API."""

    type: Literal["traefik"]
    api_url: HttpUrl
    """Traefik's API (`--api`), e.g. the `traefik` entry point with `--api.insecure`."""
    dynamic_file: AbsolutePath
    """The file Sluice owns in the file provider's watched directory: only the weighted service."""
    service: SafeName
    """The weighted service's name in `dynamic_file` (the routers use it as `service`)."""
    stable_service: Annotated[
        str, pattern(_TRAEFIK_SERVICE, "a Traefik service name (with @provider if not @file)", "checkout-v1")
    ]
    canary_service: Annotated[
        str, pattern(_TRAEFIK_SERVICE, "a Traefik service name (with @provider if not @file)", "checkout-v2")
    ]
    timeout: Annotated[PositiveDuration, _at_most(timedelta(seconds=20), _IN_ACTIVITY)] = timedelta(
        seconds=10
    )
    """For one whole change: until Traefik's API serves the new weights (its file watch
    throttles reloads to one per `providersThrottleDuration`, 2s by default)."""

    @model_validator(mode="after")
    def _consistent(self) -> TraefikRouter:
        if _file_name(self.stable_service) == _file_name(self.canary_service):
            raise ValueError(
                "stable_service and canary_service are the same service; "
                "name the two services that run the old and the new version"
            )
        if self.service in (_file_name(self.stable_service), _file_name(self.canary_service)):
            raise located(
                "service",
                "service is the weighted service Sluice writes; it cannot also be stable_service "
                "or canary_service",
            )
        return self

    def describe(self) -> str:
        """One line for plans and the UI: which router splits traffic between which two targets."""
        return (
            f"traefik service `{self.service}` (stable service `{self.stable_service}`, "
            f"canary service `{self.canary_service}`)"
        )

    def traffic_targets(self) -> tuple[str, ...]:
        """`traefik:<dynamic_file>#<service>`: the weighted service in the file Sluice owns."""
        return (f"traefik:{self.dynamic_file}#{self.service}",)


def _file_name(service: str) -> str:
    """A Traefik service name as the file provider knows it: `x` and `x@file` are the same."""
    return service.removesuffix("@file")


class CaddyRouter(SpecModel):
    """Two upstreams of a Caddy `reverse_proxy` with `weighted_round_robin`, through the admin API."""

    type: Literal["caddy"]
    admin_address: Dial
    """Caddy's admin API (`admin.listen`), e.g. `127.0.0.1:2019`."""
    handler_id: SafeName
    """The `@id` of the `reverse_proxy` handler in Caddy's JSON config."""
    stable_upstream: Dial
    """The stable upstream's `dial` address, as in the handler's `upstreams`."""
    canary_upstream: Dial
    timeout: Annotated[PositiveDuration, _at_most(timedelta(seconds=20), _IN_ACTIVITY)] = timedelta(seconds=5)
    """Per admin API request."""

    @model_validator(mode="after")
    def _distinct_upstreams(self) -> CaddyRouter:
        if self.stable_upstream == self.canary_upstream:
            raise ValueError(
                "stable_upstream and canary_upstream are the same upstream; "
                "name the two upstreams that run the old and the new version"
            )
        return self

    def describe(self) -> str:
        """One line for plans and the UI: which router splits traffic between which two targets."""
        return (
            f"caddy handler `{self.handler_id}` (stable upstream `{self.stable_upstream}`, "
            f"canary upstream `{self.canary_upstream}`)"
        )

    def traffic_targets(self) -> tuple[str, ...]:
        """`caddy:<admin address>#<handler id>`: the reverse_proxy handler whose weights Sluice sets."""
        return (f"caddy:{self.admin_address.lower()}#{self.handler_id}",)


RouterModel = (
    HAProxyRouter
    | ALBRouter
    | LambdaAliasRouter
    | ApiGatewayRouter
    | Route53Router
    | NginxRouter
    | TraefikRouter
    | CaddyRouter
)
BUILTIN_ROUTER_TYPES: tuple[str, ...] = tuple(
    get_args(model.model_fields["type"].annotation)[0] for model in get_args(RouterModel)
)
"""The built-in routers' `type` tags, in the order of `RouterModel`."""
ROUTER_PLUGINS: tuple[RouterPlugin, ...] = tuple(discover(BUILTIN_ROUTER_TYPES))
"""Router types from installed packages (the `sluice.routers` entry points), found at import."""

if TYPE_CHECKING:
    RouterSpec = Annotated[RouterModel, Field(discriminator="type")]
else:
    # Plugins' spec models join the same discriminated union: validated, located and digested
    # like built-in ones. Type checkers see the built-in routers only.
    RouterSpec = Annotated[
        Union[(*get_args(RouterModel), *(p.spec_model for p in ROUTER_PLUGINS))],
        Field(discriminator="type"),
    ]
ROUTER_TYPES: tuple[str, ...] = BUILTIN_ROUTER_TYPES + tuple(p.router_type for p in ROUTER_PLUGINS)
"""The routers' `type` tags, in the order of `RouterSpec` (plugins' last)."""


def traffic_targets_of(router: SpecModel) -> tuple[str, ...]:
    """A router's traffic target keys; a plugin's model without `traffic_targets` is keyed by its
    whole configuration (`<type>:<fields as JSON>`), so two rollouts on one such target still clash."""
    own = getattr(router, "traffic_targets", None)
    if callable(own):
        keys: tuple[str, ...] = tuple(own())
        return keys
    return (f"{getattr(router, 'type', type(router).__name__)}:{router.model_dump_json()}",)
