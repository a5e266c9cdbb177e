"""The pre-provisioning hook client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from hook_server import HookServer

from emulator.errors import AccessDenied
from emulator.fleet.hooks import HookDecision, call_pre_provisioning_hook

EVENT = {
    "claimCertificateId": "a" * 64,
    "certificateId": "b" * 64,
    "certificatePem": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
    "templateArn": "arn:aws:iot:emulator:000000000000:provisioningtemplate/demo",
    "clientId": "device-1",
    "parameters": {"SerialNumber": "SN1"},
}


@pytest.fixture
def hook() -> Iterator[HookServer]:
    with HookServer() as server:
        yield server


def test_allow_with_parameter_overrides(hook: HookServer) -> None:
    hook.answer(200, {"allowProvisioning": True, "parameterOverrides": {"DeviceLocation": "lab"}})
    decision = call_pre_provisioning_hook(hook.url, EVENT, timeout=5.0)
    assert decision == HookDecision(allow=True, parameter_overrides={"DeviceLocation": "lab"})
    assert hook.requests == [("POST", "application/json", EVENT)]


def test_allow_without_overrides_gives_empty_overrides(hook: HookServer) -> None:
    hook.answer(200, {"allowProvisioning": True, "parameterOverrides": None})
    assert call_pre_provisioning_hook(hook.url, EVENT) == HookDecision(allow=True)


def test_deny_raises_access_denied(hook: HookServer) -> None:
    hook.answer(200, {"allowProvisioning": False, "parameterOverrides": {"x": "y"}})
    with pytest.raises(AccessDenied) as caught:
        call_pre_provisioning_hook(hook.url, EVENT)
    assert caught.value.message == "pre-provisioning hook denied provisioning"
    assert caught.value.payload() == {
        "statusCode": 403,
        "errorCode": "ACCESS_DENIED",
        "errorMessage": "pre-provisioning hook denied provisioning",
    }


def test_slow_hook_times_out(hook: HookServer) -> None:
    hook.delay = 2.0
    started = time.monotonic()
    with pytest.raises(AccessDenied) as caught:
        call_pre_provisioning_hook(hook.url, EVENT, timeout=0.3)
    assert caught.value.message == "pre-provisioning hook failed: timed out after 0.3 s"
    assert time.monotonic() - started < 1.5


def test_server_error_is_a_failure(hook: HookServer) -> None:
    hook.answer(500, b"boom")
    with pytest.raises(AccessDenied, match=r"^pre-provisioning hook failed: HTTP 500 "):
        call_pre_provisioning_hook(hook.url, EVENT)


def test_redirect_is_not_followed(hook: HookServer) -> None:
    hook.answer(302, b"")
    hook.headers = {"Location": "http://127.0.0.1:1/elsewhere"}
    with pytest.raises(AccessDenied, match="HTTP 302"):
        call_pre_provisioning_hook(hook.url, EVENT)
    assert len(hook.requests) == 1


def test_invalid_json_is_a_failure(hook: HookServer) -> None:
    hook.answer(200, b"{allowProvisioning: yes")
    with pytest.raises(AccessDenied, match="hook failed: response is not valid JSON"):
        call_pre_provisioning_hook(hook.url, EVENT)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([True], "response is not a JSON object"),
        ({}, "allowProvisioning must be true or false, got None"),
        ({"allowProvisioning": "true"}, "allowProvisioning must be true or false"),
        ({"allowProvisioning": True, "parameterOverrides": {"n": 1}}, "parameterOverrides must"),
        ({"allowProvisioning": True, "parameterOverrides": ["x"]}, "parameterOverrides must"),
    ],
)
def test_wrong_types_are_a_failure(hook: HookServer, payload: object, message: str) -> None:
    hook.answer(200, payload)
    with pytest.raises(AccessDenied, match=f"hook failed: {message}"):
        call_pre_provisioning_hook(hook.url, EVENT)


def test_oversized_response_is_a_failure(hook: HookServer) -> None:
    hook.answer(200, b" " * 100_000 + b'{"allowProvisioning": true}')
    with pytest.raises(AccessDenied, match="response larger than"):
        call_pre_provisioning_hook(hook.url, EVENT)


def test_connection_refused_is_a_failure() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AccessDenied, match="hook failed: cannot connect"):
        call_pre_provisioning_hook(f"http://127.0.0.1:{port}/hook", EVENT, timeout=2.0)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "http:///nohost"])
def test_only_http_and_https_urls_are_called(url: str) -> None:
    with pytest.raises(AccessDenied, match="hook failed: unsupported URL"):
        call_pre_provisioning_hook(url, EVENT)
