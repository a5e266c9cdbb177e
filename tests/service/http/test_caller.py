"""GET /caller: the presented key's id, role and scope (the operator page asks at sign-in)."""

from __future__ import annotations

from typing import Any


def test_caller_describes_a_bootstrap_key(api: Any) -> None:
    response = api.get("/caller")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {
        "keyId": "bootstrap-1",
        "role": "admin",
        "scope": {"templates": None, "parameterRules": {}, "serverKeys": True, "enrolledOnly": False},
    }


def test_caller_describes_an_issued_key_without_its_secret(api: Any) -> None:
    issued = api.post(
        "/admin/keys",
        json={
            "role": "provision",
            "templates": ["demo"],
            "parameterRules": {"SerialNumber": "^SN-[0-9]+$"},
            "serverKeys": False,
            "enrolledOnly": True,
        },
    ).json()
    response = api.get("/caller", key=issued["apiKey"])
    assert response.status_code == 200
    assert response.json() == {
        "keyId": issued["key"]["keyId"],
        "role": "provision",
        "scope": {
            "templates": ["demo"],
            "parameterRules": {"SerialNumber": "^SN-[0-9]+$"},
            "serverKeys": False,
            "enrolledOnly": True,
        },
    }
    assert issued["apiKey"] not in response.text


def test_caller_without_a_valid_key_is_401(api: Any) -> None:
    assert api.get("/caller", key=None).status_code == 401
    assert api.get("/caller", key="iotp_nosuchkey_0123456789abcdef").status_code == 401
