"""What the admin API takes: every field it cannot use is a 422 naming it, never a 201 that does
nothing useful, and never a 500. Over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.config import Settings


@pytest.fixture
def admin_api(
    serve: Callable[..., Any], unreachable_settings: Callable[..., Settings], database_url: str
) -> Any:
    return serve(unreachable_settings(PROVISIONER_DATABASE_URL=database_url))


def refused(response: Any, field: str) -> str:
    assert response.status_code == 422, response.text
    problem = response.json()
    assert field in problem["errors"], problem
    return " ".join(problem["errors"][field])


@pytest.mark.parametrize(
    "expires_at",
    [
        (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
        "2020-01-01T00:00:00Z",
        "0001-01-01T00:30:00+01:00",  # before the year 1 in UTC
        "9999-12-31T23:00:00-02:00",  # after the year 9999 in UTC
    ],
)
def test_a_key_that_would_never_work_is_refused(admin_api: Any, expires_at: str) -> None:
    response = admin_api.post("/admin/keys", json={"name": "late", "expiresAt": expires_at})
    assert refused(response, "expiresAt")
    assert admin_api.get("/admin/keys").json()["items"] == []


@pytest.mark.parametrize("field", ["maxProvisions", "ratePerMinute"])
@pytest.mark.parametrize("value", [1.5, "2", True])
def test_key_limits_are_whole_numbers_never_truncated(admin_api: Any, field: str, value: Any) -> None:
    response = admin_api.post("/admin/keys", json={field: value})
    assert refused(response, field)
    assert admin_api.get("/admin/keys").json()["items"] == []


def test_a_key_expiring_in_the_future_with_whole_limits_is_made(admin_api: Any) -> None:
    expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = admin_api.post("/admin/keys", json={"expiresAt": expires, "maxProvisions": 2})
    assert response.status_code == 201, response.text
    assert response.json()["key"]["maxProvisions"] == 2 and response.json()["key"]["state"] == "active"
