"""For tests/client: a served service with a store (its URL, its admin API) and the factory CLI to run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

CLI = [sys.executable, "-m", "provisioner_client"]
CLI_TIMEOUT = 120

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def batch_args(rows: Path, out: Path, *more: str) -> list[str]:
    """`iot-factory batch` of the CSV `rows` for the demo template into `out`, then `more`."""
    return ["batch", "--csv", str(rows), "--template", "demo", "--out", str(out), *more]


@dataclass
class Service:
    url: str
    admin: requests.Session
    log: Path

    def create_key(self, **scope: Any) -> str:
        """A new API key with this scope (KeyCreate fields, camelCase); its secret."""
        response = self.admin.post(
            self.url + "/admin/keys", json={"name": "factory-test", **scope}, timeout=30
        )
        assert response.status_code == 201, response.text
        return str(response.json()["apiKey"])

    def enroll(self, value: str, **entry: Any) -> None:
        body = {"template": "demo", "value": value, **entry}
        response = self.admin.post(self.url + "/admin/enrollments", json=body, timeout=30)
        assert response.status_code in (200, 201), response.text

    def registrations(self, **query: Any) -> list[dict[str, Any]]:
        response = self.admin.get(
            self.url + "/admin/registrations", params={"limit": 1000, **query}, timeout=30
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["next"] is None, "more than one page of audit records"
        return list(page["items"])
