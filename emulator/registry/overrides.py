"""OverrideSettings: what RegisterThing does to a thing that already exists.

AWS documents the setting (DO_NOTHING, REPLACE, MERGE, FAIL) under "Resources" in
https://docs.aws.amazon.com/iot/latest/developerguide/provision-template.html.

Pure functions over `ThingSpec`, so the rules can be read and tested without the database.
"""

from __future__ import annotations

from emulator.errors import InvalidRequest, ResourceConflict
from emulator.registry.specs import ThingSpec

OVERRIDE_VALUES = ("DO_NOTHING", "REPLACE", "MERGE", "FAIL")
# AttributePayload, ThingTypeName and ThingGroups are the documented keys. BillingGroup has none;
# a "BillingGroup" key is honoured if a template has one, else the default applies as for any
# absent key.
OVERRIDE_KEYS = ("AttributePayload", "ThingTypeName", "ThingGroups", "BillingGroup")


def override_thing(existing: ThingSpec, new: ThingSpec, default: str) -> ThingSpec:
    """The thing after provisioning `new` over `existing`; `default` stands for absent keys.

    MERGE is documented for attributes and groups only; on a single value (type, billing group)
    it replaces the value when the template gives one and keeps it otherwise.
    """
    settings = {key: new.override_settings.get(key, default) for key in OVERRIDE_KEYS}
    for key, value in settings.items():
        if value not in OVERRIDE_VALUES:
            raise InvalidRequest(
                f"OverrideSettings {key} {value!r} is not one of {', '.join(OVERRIDE_VALUES)}",
                status=400,
                code="InvalidParameterException",
            )
    if "FAIL" in settings.values():
        # AWS: FAIL rejects the request when the resource exists (doc).
        raise ResourceConflict(f"thing '{existing.thing_name}' already exists and OverrideSettings is FAIL")
    attributes = dict(existing.attributes)
    if settings["AttributePayload"] == "REPLACE":
        attributes = dict(new.attributes)
    elif settings["AttributePayload"] == "MERGE":
        attributes.update(new.attributes)
    groups = existing.thing_groups
    if settings["ThingGroups"] == "REPLACE":
        groups = new.thing_groups
    elif settings["ThingGroups"] == "MERGE":
        groups = groups + tuple(g for g in new.thing_groups if g not in groups)
    return ThingSpec(
        thing_name=existing.thing_name,
        attributes=attributes,
        thing_type_name=_single(settings["ThingTypeName"], existing.thing_type_name, new.thing_type_name),
        thing_groups=groups,
        billing_group=_single(settings["BillingGroup"], existing.billing_group, new.billing_group),
    )


def _single(setting: str, old: str | None, new: str | None) -> str | None:
    if setting == "REPLACE" or (setting == "MERGE" and new is not None):
        return new
    return old
