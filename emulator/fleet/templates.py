"""Provisioning templates: loading them from a directory and evaluating one for RegisterThing.

Files: one JSON file per template, ``<name>.json``; the file name is the template name (AWS's rule:
1-36 characters of ``[0-9A-Za-z_-]``); other files are ignored with a warning. A file holds either
the template body itself, or a wrapper mirroring AWS's CreateProvisioningTemplate fields::

    {"templateBody": {...} or "<the body as a JSON string>",
     "enabled": true,
     "preProvisioningHook": {"url": "http://127.0.0.1:9000/hook", "timeoutSeconds": 5}}

``enabled`` defaults to true; ``url`` stands in for AWS's ``targetArn`` (a Lambda) and receives the
hook event (``emulator.fleet.hooks``); ``timeoutSeconds`` defaults to AWS's 5 s. Other fields
(description, provisioningRoleArn, ...) are ignored. Files are read on every ``get``, so edits
apply to the next request. The demo template ships as ``emulator/data/demo.json`` and is served as
``demo`` unless the directory has its own ``demo.json``.

Evaluation is in ``emulator.fleet.evaluation`` (resources) and ``emulator.fleet.intrinsics``
(functions), and its result is the registry's value types (``emulator.registry.specs``); this
module re-exports what callers use, so ``from emulator.fleet.templates import evaluate`` works.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emulator.errors import ConfigError, TemplateError, TemplateNotFound
from emulator.fleet.evaluation import DEFAULT_HOOK_TIMEOUT, Template, evaluate
from emulator.fleet.intrinsics import CERTIFICATE_ID_REF, MAX_DEPTH, brief, expect
from emulator.registry.specs import Evaluation, PolicySpec, ThingSpec

__all__ = [
    "CERTIFICATE_ID_REF",
    "MAX_DEPTH",
    "Evaluation",
    "PolicySpec",
    "Template",
    "TemplateStore",
    "ThingSpec",
    "evaluate",
    "parse_template",
]

log = logging.getLogger(__name__)

TEMPLATE_NAME = re.compile(r"[0-9A-Za-z_-]{1,36}")
# AWS's answer to RegisterThing on a disabled template is unconfirmed: TemplateStore takes it.
DISABLED = (400, "InvalidRequestException")
DEMO_PATH = Path(__file__).parents[1] / "data" / "demo.json"


class TemplateStore:
    """Templates read from ``<directory>/<name>.json`` on every ``get``, plus the packaged demo."""

    def __init__(self, directory: Path | None, *, disabled: tuple[int, str] = DISABLED) -> None:
        """``disabled`` is the (statusCode, errorCode) for RegisterThing on a disabled template."""
        if directory is not None and not directory.is_dir():
            raise ConfigError(f"templates directory {directory} does not exist")
        self._directory = directory
        self._disabled = disabled
        self._warned: set[str] = set()
        self.names()  # warn about ignored files at start, not at the first request

    def names(self) -> list[str]:
        found = {"demo"}
        for path in self._directory.iterdir() if self._directory is not None else ():
            if path.suffix == ".json" and TEMPLATE_NAME.fullmatch(path.stem):
                found.add(path.stem)
            elif not path.name.startswith(".") and path.name not in self._warned:
                # Dotfiles (.gitkeep) are expected; anything else is probably a mistake.
                self._warned.add(path.name)
                log.warning("ignoring %s: not <name>.json, name of [0-9A-Za-z_-]{1,36}", path)
        return sorted(found)

    def get(self, name: str) -> Template:
        # The name check also keeps names like '../x' out of the file system.
        if not TEMPLATE_NAME.fullmatch(name):
            raise TemplateNotFound(f"template {brief(name)} does not exist")
        template = parse_template(name, *self._read(name))
        if not template.enabled:
            status, code = self._disabled
            raise TemplateError(f"template {name!r} is disabled", status=status, code=code)
        return template

    def _read(self, name: str) -> tuple[str, str]:
        if self._directory is not None:
            path = self._directory / f"{name}.json"
            try:
                return path.read_text(encoding="utf-8"), str(path)
            except FileNotFoundError:
                pass
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateError(f"template file {path} cannot be read: {exc}") from None
        if name == "demo":
            # Found from this file rather than importlib.resources.files("emulator"): under pytest,
            # tests/emulator can shadow the package name as a namespace package.
            return DEMO_PATH.read_text(encoding="utf-8"), "emulator/data/demo.json"
        raise TemplateNotFound(f"template {name!r} does not exist")


def _load_json(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TemplateError(f"{where}: not valid JSON: {exc}") from None
    return expect(data, dict, where)


def parse_template(name: str, text: str, source: str) -> Template:
    """A template from the text of its file (a plain body or a CreateProvisioningTemplate wrapper)."""
    data = _load_json(text, source)
    if "templateBody" not in data:
        return Template(name=name, body=data)
    body = data["templateBody"]
    if isinstance(body, str):  # CreateProvisioningTemplate takes the body as a JSON string
        body = _load_json(body, f"{source}: templateBody")
    body = expect(body, dict, f"{source}: templateBody", " or a JSON string")
    enabled = expect(data.get("enabled", True), bool, f"{source}: enabled")
    hook = data.get("preProvisioningHook")
    if hook is None:
        return Template(name=name, body=body, enabled=enabled)
    hook = expect(hook, dict, f"{source}: preProvisioningHook")
    url = expect(hook.get("url"), str, f"{source}: preProvisioningHook.url")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise TemplateError(f"{source}: preProvisioningHook.url must be an http(s) URL")
    timeout = hook.get("timeoutSeconds", DEFAULT_HOOK_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise TemplateError(f"{source}: preProvisioningHook.timeoutSeconds must be positive")
    return Template(
        name=name,
        body=body,
        enabled=enabled,
        pre_provisioning_hook_url=url,
        pre_provisioning_hook_timeout=float(timeout),
    )
