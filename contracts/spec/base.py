"""The base of every spec model, the validators of the names a spec writes, and strict numbers."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from sluice.contracts.durations import Duration

# Every pattern is matched with `fullmatch`: `$` also matches before a trailing newline, and a
# newline in a name sent to a runtime API is an injection.
_SERVICE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_VERSION = re.compile(r"[A-Za-z0-9_.+-]{1,128}")
_METRIC_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+(?:[/?#]\S*)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _service(value: str) -> str:
    if not _SERVICE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a service name; use lowercase letters, digits and '-' "
            "(at most 63, not starting or ending with '-'), e.g. 'checkout'"
        )
    return value


def _safe_name(value: str) -> str:
    if not _SAFE_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} may only contain letters, digits, '_', '.' and '-' "
            "(it is sent to the router's runtime API, so spaces, ';' and newlines are refused)"
        )
    return value


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a version label; use letters, digits, '_', '.', '+' and '-', "
            "e.g. 'v2' or '1.4.0'"
        )
    return value


def _metric_name(value: str) -> str:
    if not _METRIC_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a metric name; use lowercase letters, digits, '_', '.' and '-', "
            "e.g. 'canary-5xx'"
        )
    return value


def _http_url(value: str) -> str:
    if len(value) > 2048 or not _HTTP_URL.fullmatch(value) or _CONTROL.search(value):
        raise ValueError(
            f"{value[:200]!r} is not an http(s) URL, e.g. 'http://127.0.0.1:8080/healthz' "
            "(at most 2048 characters; write a space or other special character percent-encoded, as %20)"
        )
    return value


def _plain_text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{value!r} contains a control character (a newline, tab or NUL); remove it")
    return value


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


@dataclass(frozen=True, slots=True)
class Matching(AfterValidator):
    """An AfterValidator that also writes `regex` into the JSON Schema as a `pattern`, so an editor
    flags a bad name as it is typed (the validator's message stays the one users read)."""

    regex: re.Pattern[str] | None = None

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        schema = handler(core_schema)
        if self.regex is not None:  # fullmatch, as the validator matches; `\Z` is `$` in ECMA regex
            schema["pattern"] = "^(?:" + self.regex.pattern.replace("\\Z", "$") + ")$"
        return schema


def pattern(regex: re.Pattern[str], what: str, example: str) -> AfterValidator:
    """A validator refusing a string `regex` does not match: `'x' is not {what}, e.g. {example}`."""

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}, e.g. {example!r}")
        return value

    return Matching(check, regex=regex)


ServiceName = Annotated[str, Matching(_service, regex=_SERVICE)]
SafeName = Annotated[str, Matching(_safe_name, regex=_SAFE_NAME)]
VersionLabel = Annotated[str, Matching(_version, regex=_VERSION)]
MetricName = Annotated[str, Matching(_metric_name, regex=_METRIC_NAME)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
PlainText = Annotated[str, AfterValidator(_plain_text)]
"""Free text (an approver, an alarm, a dimension): any characters but control characters."""
PositiveDuration = Annotated[Duration, AfterValidator(_positive_duration)]
"""A duration longer than 0s: timeouts and soaks."""

Count = Annotated[int, Field(strict=True)]
"""A whole number written as one: `true`, `"10"` and `10.5` are refused, not coerced."""
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite number written as one (an integer is fine): `true`, `"0.5"`, `.inf` and `.nan` are refused."""


def located(field: str, message: str) -> PydanticCustomError:
    """An error about `field` (`stable_version`, `[3]`) of the model that raises it, not the whole model.

    `issues_from` appends `field` to the model's path, so a model validator's error still names
    the field to change.
    """
    return PydanticCustomError("spec_field", "{message}", {"field": field, "message": message})


class SpecModel(BaseModel):
    """Base for every spec model: unknown fields are errors, models are immutable, and a model with
    a bad field still runs its cross-field checks on the fields that are fine (one pass)."""

    # A field's docstring is its description in the JSON Schema (`sluice schema`) editors show.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem_at_once(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Pydantic skips a model's `after` validators when a field fails, so a bad `address` hid a
        # missing bound until it was fixed. On failure, run them on a copy holding only the
        # fields that validated; a check that reads a failed field is skipped (it cannot judge).
        try:
            return handler(data)
        except ValidationError as err:
            extra = _cross_field_errors(cls, data, err) if isinstance(data, dict) else []
            if not extra:
                raise
            errors = [*map(_init_details, err.errors()), *extra]
            raise ValidationError.from_exception_data(err.title, errors) from None

    def model_dump(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Pydantic's `model_dump`, refusing the partial copy a cross-field check runs on (it would
        leave the failed fields out silently, and a ring's check would call them missing)."""
        if len(self.__dict__) < len(type(self).model_fields):
            raise AttributeError("a partially validated spec cannot be dumped")
        return super().model_dump(*args, **kwargs)


_AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")

AwsRegion = Annotated[str, pattern(_AWS_REGION, "an AWS region", "eu-west-1")]


_BUILTIN_ERRORS = frozenset(get_args(ErrorType))


def _init_details(error: Any) -> InitErrorDetails:
    """A pydantic error as `from_exception_data` takes it back (custom types with their message)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind not in _BUILTIN_ERRORS:
        kind = PydanticCustomError(kind, "{message}", {**ctx, "message": error["msg"]})
    details: InitErrorDetails = {"type": kind, "loc": error["loc"], "input": error["input"]}
    if ctx and isinstance(kind, str):
        details["ctx"] = ctx
    return details


@cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    return TypeAdapter(model.model_fields[name].rebuild_annotation())


def _cross_field_errors(
    model: type[SpecModel], data: dict[str, Any], err: ValidationError
) -> list[InitErrorDetails]:
    """The errors of `model`'s `after` validators run on the fields of `data` that validated."""
    first = {e["loc"][0] if e["loc"] else None for e in err.errors()}
    if None in first or not first <= set(model.model_fields) | set(data):
        return []  # the model as a whole was refused (a `before` check): nothing to cross-check
    failed = {str(name) for name in first}
    values: dict[str, Any] = {}
    for name in model.model_fields:
        if name in failed or name not in data:
            continue
        try:
            values[name] = _field_adapter(model, name).validate_python(data[name])
        except ValidationError:
            failed.add(name)  # not expected (it raised no error above), but never judge on a guess
    partial = model.model_construct(**values)
    for name in failed:
        partial.__dict__.pop(name, None)  # reading it raises AttributeError: the check is skipped
    out: list[InitErrorDetails] = []
    for decorator in model.__pydantic_decorators__.model_validators.values():
        if decorator.info.mode != "after":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # e.g. model_dump of the partial copy: skip the check
                decorator.func(partial)
        except PydanticCustomError as found:
            out.append({"type": found, "loc": (), "input": data})
        except (ValueError, AssertionError) as found:
            out.append({"type": "value_error", "loc": (), "input": data, "ctx": {"error": str(found)}})
        except Exception:  # it read a field that failed, or tripped over its absence: skip it
            continue
    return out
