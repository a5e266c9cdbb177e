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


@pytest.fixture
def checked_api(serve: Callable[..., Any], unreachable_settings: Callable[..., Settings]) -> Any:
    """For rules checked before any query: one store is enough (SQLite)."""
    return serve(unreachable_settings())


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
    # fixed ids: parallel workers must collect the same test names (the first value is "now")
    ids=["just-expired", "long-expired", "before-year-1", "after-year-9999"],
)
def test_a_key_that_would_never_work_is_refused(checked_api: Any, expires_at: str) -> None:
    response = checked_api.post("/admin/keys", json={"name": "late", "expiresAt": expires_at})
    assert refused(response, "expiresAt")
    assert checked_api.get("/admin/keys").json()["items"] == []


@pytest.mark.parametrize("field", ["maxProvisions", "ratePerMinute"])
@pytest.mark.parametrize("value", [1.5, "2", True])
def test_key_limits_are_whole_numbers_never_truncated(checked_api: Any, field: str, value: Any) -> None:
    response = checked_api.post("/admin/keys", json={field: value})
    assert refused(response, field)
    assert checked_api.get("/admin/keys").json()["items"] == []


def test_a_key_expiring_in_the_future_with_whole_limits_is_made(checked_api: Any) -> None:
    expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = checked_api.post("/admin/keys", json={"expiresAt": expires, "maxProvisions": 2})
    assert response.status_code == 201, response.text
    assert response.json()["key"]["maxProvisions"] == 2 and response.json()["key"]["state"] == "active"


# --- text no store can keep: NUL anywhere, lone surrogates; cursors past their columns ----------

NUL, SURROGATE = "\x00", "\ud800"


TEXT_FIELDS = [
    (
        "/provision",
        {"templateName": "demo", "parameters": {"SerialNumber": "SN-{}"}},
        "parameters.SerialNumber",
    ),
    ("/provision", {"templateName": "demo", "parameters": {"S{}": "SN-1"}}, "parameters"),
    ("/admin/keys", {"name": "line {}"}, "name"),
    ("/admin/keys", {"parameterRules": {"SerialNumber": "^SN-{}$"}}, "parameterRules.SerialNumber"),
    ("/admin/enrollments", {"template": "demo", "value": "SN-{}"}, "value"),
    ("/admin/enrollments", {"template": "demo", "parameter": "S{}", "value": "SN-1"}, "parameter"),
]


def test_text_no_store_can_keep_is_422_naming_the_field(admin_api: Any) -> None:
    for path, body, field in TEXT_FIELDS:
        for bad in (NUL, SURROGATE):
            assert refused(admin_api.post(path, json=_fill(body, bad)), field), (path, field, bad)
    assert admin_api.get("/admin/registrations").status_code == 200  # the store still answers


def test_a_nul_in_a_query_or_a_key_id_is_422_naming_it(admin_api: Any) -> None:
    for query, field in [
        ("keyId=k%00", "keyId"),
        ("template=demo%00", "template"),
        ("thingName=%00", "thingName"),
    ]:
        assert refused(admin_api.get(f"/admin/registrations?{query}"), field)
    csv_import = admin_api.post(
        "/admin/enrollments/import?template=demo&parameter=Serial%00",
        data="SerialNumber\nSN-1\n",
        headers={"Content-Type": "text/csv"},
    )
    assert refused(csv_import, "parameter")
    for method in ("GET", "DELETE"):
        assert refused(admin_api.request(method, "/admin/keys/k%00"), "keyId")
        for unknown in ("k000000000000", "x" * 300, "%F0%9F%94%91"):
            assert admin_api.request(method, f"/admin/keys/{unknown}").status_code == 404


@pytest.mark.parametrize("value", [2**31, 2**63, 10**20, -1])
def test_an_enrollment_cursor_outside_its_column_is_422(checked_api: Any, value: int) -> None:
    assert refused(checked_api.get(f"/admin/enrollments?after={value}"), "after")


@pytest.mark.parametrize("value", [2**63, 10**20, 0])
def test_a_registration_cursor_outside_its_column_is_422(checked_api: Any, value: int) -> None:
    assert refused(checked_api.get(f"/admin/registrations?before={value}"), "before")


def test_cursors_at_the_ends_of_their_columns_page_to_nothing(admin_api: Any) -> None:
    assert admin_api.get(f"/admin/enrollments?after={2**31 - 1}").json() == {"items": [], "next": None}
    assert admin_api.get(f"/admin/registrations?before={2**63 - 1}").json() == {"items": [], "next": None}


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00%2B01:00", "9999-12-31T23:00:00-02:00"])
def test_a_time_filter_outside_the_years_1_to_9999_in_utc_is_422(checked_api: Any, moment: str) -> None:
    assert refused(checked_api.get(f"/admin/registrations?since={moment}"), "since")


def _fill(value: Any, bad: str) -> Any:
    if isinstance(value, str):
        return value.replace("{}", bad)
    if isinstance(value, dict):
        return {_fill(k, bad): _fill(v, bad) for k, v in value.items()}
    return value


# --- enrollment CSV: a strict parser, every line break, its own size limit ----------------------


def import_csv(api: Any, text: str | bytes) -> Any:
    return api.post(
        "/admin/enrollments/import?template=demo", data=text, headers={"Content-Type": "text/csv"}
    )


def enrolled(api: Any) -> list[str]:
    return [e["value"] for e in api.get("/admin/enrollments?limit=1000").json()["items"]]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_an_enrollment_csv_with_any_line_ends_imports_every_line(checked_api: Any, newline: str) -> None:
    text = newline.join(["SerialNumber,enabled", "SN-1,true", "SN-2,false", "SN-3,"]) + newline
    response = import_csv(checked_api, text)
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 3, "updated": 0}
    assert enrolled(checked_api) == ["SN-1", "SN-2", "SN-3"]


def test_an_unbalanced_quote_is_422_naming_its_line_never_a_merged_serial(checked_api: Any) -> None:
    response = import_csv(checked_api, 'SerialNumber\nSN-1\n"SN-2\nSN-3\nSN-4\n')
    assert response.status_code == 422, response.text
    assert list(response.json()["errors"]) == ["line 3"]
    closed_later = import_csv(checked_api, 'SerialNumber\nSN-1\n"SN-2\nSN-3"\nSN-4\n')
    assert closed_later.status_code == 422, closed_later.text
    assert "line break" in " ".join(closed_later.json()["errors"]["line 3"])
    stray = import_csv(checked_api, 'SerialNumber,enabled\nSN-1,"true"x\n')
    assert stray.status_code == 422 and list(stray.json()["errors"]) == ["line 2"]
    assert enrolled(checked_api) == []


def test_a_nul_in_an_enrollment_csv_is_422_naming_its_line(admin_api: Any) -> None:
    for bad in (NUL, NUL * 2):
        response = import_csv(admin_api, f"SerialNumber\nSN-1\nSN-{bad}2\n")
        assert response.status_code == 422, response.text
        assert list(response.json()["errors"]) == ["line 3"]
    assert enrolled(admin_api) == []


def test_an_import_of_100000_serials_fits_its_own_body_limit(checked_api: Any) -> None:
    serials = [f"SN-{n:09d}" for n in range(99_999)]
    text = "SerialNumber,enabled,reprovision\n" + "".join(f"{s},true,once\n" for s in serials)
    assert len(text.encode()) > checked_api.settings.max_body_bytes * 16  # over the limit it had
    response = import_csv(checked_api, text)
    assert response.status_code == 200, response.text[:500]
    assert response.json() == {"added": 99_999, "updated": 0}
    too_many = import_csv(checked_api, "SerialNumber\n" + "".join(f"X-{n}\n" for n in range(100_000)))
    assert too_many.status_code == 413, too_many.text[:500]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/admin/keys", {"serverKeys": 0}, "serverKeys"),
        ("/admin/keys", {"enrolledOnly": "yes"}, "enrolledOnly"),
        ("/admin/enrollments", {"template": "demo", "value": "SN-1", "enabled": 1}, "enabled"),
    ],
)
def test_booleans_are_true_or_false_never_0_1_or_words(
    checked_api: Any, path: str, body: dict[str, Any], field: str
) -> None:
    # The contract says boolean; schemathesis found 0 taken as false (test_contract_fuzz).
    assert refused(checked_api.post(path, json=body), field)
