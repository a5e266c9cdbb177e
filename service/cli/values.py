"""Option types: times (ISO 8601 or a duration from now), durations, template names, parameter rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from service.callers import rules
from service.callers.enrollment_csv import TEMPLATE_NAME
from service.cli.context import now

# click 8.4 made ParamType generic in the type it converts to; the older ones pyproject.toml allows
# cannot subscript it at run time, so only the type checker sees the subscripts.
if TYPE_CHECKING:
    _TimeType = click.ParamType[datetime]
    _DurationType = click.ParamType[timedelta]
    _TextType = click.ParamType[str]
    _RuleType = click.ParamType[tuple[str, str]]
else:
    _TimeType = _DurationType = _TextType = _RuleType = click.ParamType

_DURATION = re.compile(r"^(\d{1,9})([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Moment(_TimeType):
    """An ISO 8601 time (no zone means UTC), or a duration from now: `30d` ahead or `1h` ago."""

    name = "time"

    def __init__(self, *, ahead: bool) -> None:
        self.ahead = ahead

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        duration = _DURATION.match(text)
        if duration:
            span = timedelta(seconds=int(duration.group(1)) * _SECONDS[duration.group(2)])
            return now() + span if self.ahead else now() - span
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text[:60]!r} is neither an ISO 8601 time (2027-01-01T00:00:00Z) "
                "nor a duration (90s, 15m, 12h, 30d, 2w)",
                param,
                ctx,
            )
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


class Duration(_DurationType):
    """A span: 0, or a number with s, m, h, d or w (90s, 15m, 12h, 30d, 2w)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip()
        if text == "0":
            return timedelta(0)
        duration = _DURATION.match(text)
        if duration is None:
            self.fail(f"{text[:60]!r} is not a duration (0, 90s, 15m, 12h, 30d, 2w)", param, ctx)
        return timedelta(seconds=int(duration.group(1)) * _SECONDS[duration.group(2)])


class TemplateName(_TextType):
    name = "template"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not TEMPLATE_NAME.match(str(value)):
            self.fail(f"{str(value)[:60]!r} is not a template name (1-36 of [0-9A-Za-z_-])", param, ctx)
        return str(value)


class ParameterName(_TextType):
    name = "parameter"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not 1 <= len(str(value)) <= 128:
            self.fail("a parameter name has 1-128 characters", param, ctx)
        return str(value)


class Rule(_RuleType):
    """`NAME=REGEX`: the device parameter NAME must be present and fully match REGEX."""

    name = "NAME=REGEX"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        name, equals, pattern = str(value).partition("=")
        if not equals or not 1 <= len(name) <= 128:
            example = "SerialNumber=^SN-[0-9]{6}$"
            self.fail(f"{str(value)[:60]!r} is not NAME=REGEX (e.g. {example})", param, ctx)
        # The service's own check (RE2, as the gate runs rules): `\z` passes, lookaround does not.
        why = rules.problem(pattern)
        if why is not None:
            self.fail(f"the rule for {name!r} cannot be used: {why}", param, ctx)
        return name, pattern


DURATION = Duration()
TEMPLATE = TemplateName()
PARAMETER = ParameterName()
RULE = Rule()
