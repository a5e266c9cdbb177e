"""AWS IoT's rules for the names and values RegisterThing writes into the registry.

The patterns and lengths are those of the AWS IoT API reference (CreateThing, CreateThingGroup,
CreateThingType, CreateBillingGroup, CreatePolicy and the AttributePayload type); AWS refuses
anything else with 400 InvalidParameterException / InvalidRequestException. Values come from
devices through template parameters, so a CR LF, a NUL, a lone surrogate, a space or a 2,048
character value must be refused here rather than stored. An error names the field as AWS's API
does (``ThingName``, ``AttributePayload.Attributes.serial``) and the template location it came
from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emulator.errors import TemplateError
from emulator.fleet.intrinsics import brief


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    min_length: int
    max_length: int
    description: str

    def check(self, value: str, field: str, path: str) -> str:
        """Return ``value`` if AWS would accept it for ``field``; raise TemplateError if not."""
        if self.min_length <= len(value) <= self.max_length and self.pattern.fullmatch(value):
            return value
        if len(value) > self.max_length:
            problem = f"is {len(value)} characters, more than {self.max_length}"
        else:
            problem = f"{brief(value)} is not {self.description}"
        raise TemplateError(f"{field}: {problem} ({path})")


# CreateThing: thingName, [a-zA-Z0-9:_-]+, 1-128 characters.
THING_NAME = Rule(re.compile(r"[a-zA-Z0-9:_-]+"), 1, 128, "1-128 characters of [a-zA-Z0-9:_-]")
# CreateThingGroup, CreateThingType and CreateBillingGroup use the same rule as thing names.
THING_GROUP_NAME = THING_TYPE_NAME = BILLING_GROUP_NAME = THING_NAME
# AttributePayload: names [a-zA-Z0-9_.,@/:#-]+ up to 128, values [a-zA-Z0-9_.,@/:#=\[\]-]* up to
# 800 (an empty value is allowed by the pattern).
ATTRIBUTE_NAME = Rule(re.compile(r"[a-zA-Z0-9_.,@/:#-]+"), 1, 128, "1-128 characters of [a-zA-Z0-9_.,@/:#-]")
ATTRIBUTE_VALUE = Rule(
    re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]*"), 0, 800, "at most 800 characters of [a-zA-Z0-9_.,@/:#=[]-]"
)
# CreatePolicy: policyName, [\w+=,.@-]+, 1-128 characters (\w in ASCII, as AWS means it).
POLICY_NAME = Rule(re.compile(r"[\w+=,.@-]+", re.ASCII), 1, 128, "1-128 characters of [a-zA-Z0-9_+=,.@-]")
