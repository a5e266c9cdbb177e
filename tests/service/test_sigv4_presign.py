"""The service's presigned `/mqtt` path, pinned to URLs signed by AWS's own signer."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from repository import TEST_DATA

from service.mqtt.sigv4 import (
    AwsCredentials,
    credentials_from_botocore,
    host_header_for,
    presign_mqtt_path,
    static_credentials,
)

VECTORS = json.loads((TEST_DATA / "sigv4-vectors.json").read_text())
HOST_ONLY = [
    c for c in VECTORS["cases"] if c["expect"] == "accept" and "X-Amz-SignedHeaders=host&" in c["signedPath"]
]
HOST = "a1b2c3d4e5f6g7-ats.iot.ap-northeast-2.amazonaws.com"
REGION = "ap-northeast-2"
TEMP = AwsCredentials(
    "ASIAEXAMPLETEMP",
    "tempSecretKeyExample/+=abc",
    "IQoJb3JpZ2luX2VjEXAMPLE//session+token/with=chars==",
)
T0 = datetime(2026, 11, 26, 7, 15, tzinfo=UTC)
TOKEN_PARAM = "X-Amz-Security-Token="


def _params(path: str) -> list[str]:
    return path.split("?", 1)[1].split("&")


def _without_token(path: str) -> str:
    base, _ = path.split("?", 1)
    return base + "?" + "&".join(p for p in _params(path) if not p.startswith(TOKEN_PARAM))


def _token(path: str) -> list[str]:
    return [p for p in _params(path) if p.startswith(TOKEN_PARAM)]


@pytest.mark.parametrize("case", HOST_ONLY, ids=lambda c: f"{c['host']}-{c['signer'][:12]}")
def test_presigned_path_equals_aws_signed_vector(case):
    credentials = AwsCredentials(case["accessKeyId"], case["secretAccessKey"], case["sessionToken"])
    when = datetime.strptime(case["time"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    path = presign_mqtt_path(case["host"], case["region"], credentials, now=when)
    if case["signer"].startswith("awscrt"):
        assert path == case["signedPath"]
    else:
        # The browser-style vector appends the token after X-Amz-Signature; awscrt puts it just
        # before. The token is unsigned, so the vector only requires the same signed parameters
        # in the same order (same signature) and the same token, wherever it stands.
        assert _without_token(path) == _without_token(case["signedPath"])
        assert _token(path) == _token(case["signedPath"])


def test_presigned_path_has_no_expires():
    path = presign_mqtt_path(HOST, REGION, TEMP, now=T0)
    assert path.startswith("/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    assert "X-Amz-Expires" not in path


def test_session_token_is_sent_once_but_not_signed():
    with_token = presign_mqtt_path(HOST, REGION, TEMP, now=T0)
    tokenless = AwsCredentials(TEMP.access_key_id, TEMP.secret_access_key)
    without_token = presign_mqtt_path(HOST, REGION, tokenless, now=T0)
    # Same signature with and without the token: the token is outside the canonical request.
    assert _without_token(with_token) == without_token
    assert _token(with_token) == [TOKEN_PARAM + quote(TEMP.session_token, safe="")]


def test_session_token_stands_just_before_the_signature():
    names = [p.split("=")[0] for p in _params(presign_mqtt_path(HOST, REGION, TEMP, now=T0))]
    assert names[-2:] == ["X-Amz-Security-Token", "X-Amz-Signature"]


def test_presign_signs_the_current_time_by_default():
    before = datetime.now(UTC).replace(microsecond=0)
    path = presign_mqtt_path(HOST, REGION, TEMP)
    signed_at = datetime.strptime(re.search(r"X-Amz-Date=(\w+)", path).group(1), "%Y%m%dT%H%M%SZ").replace(
        tzinfo=UTC
    )
    assert before <= signed_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_presign_refuses_naive_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        presign_mqtt_path(HOST, REGION, TEMP, now=datetime(2026, 11, 26, 7, 15))


def test_emulator_verifier_accepts_service_presigned_path():
    from emulator.security.sigv4 import Identity, verify_presigned_request

    host = host_header_for("localhost", 8443, tls=True)
    path = presign_mqtt_path(host, REGION, TEMP, now=T0)
    identity = verify_presigned_request(
        path, {"Host": host}, {TEMP.access_key_id: TEMP.secret_access_key}, now=T0
    )
    assert identity == Identity(TEMP.access_key_id, REGION)


@pytest.mark.parametrize(
    ("host", "port", "tls", "expected"),
    [
        ("example.com", 443, True, "example.com"),
        ("example.com", 8443, True, "example.com:8443"),
        ("example.com", 80, True, "example.com:80"),
        ("localhost", 80, False, "localhost"),
        ("localhost", 443, False, "localhost:443"),
        ("localhost", 18080, False, "localhost:18080"),
    ],
)
def test_host_header_omits_only_the_scheme_default_port(host, port, tls, expected):
    assert host_header_for(host, port, tls) == expected


def test_credentials_repr_hides_secret_and_token():
    shown = repr(TEMP)
    assert TEMP.access_key_id in shown
    assert TEMP.secret_access_key not in shown
    assert TEMP.session_token not in shown
    assert "session_token=None" in repr(AwsCredentials("AKID", "secret"))


def test_static_credentials_give_the_configured_keys():
    source = static_credentials("AKID", "secret", "token")
    assert source() == AwsCredentials("AKID", "secret", "token")


@pytest.fixture
def isolated_aws_env(monkeypatch, tmp_path):
    """botocore's default chain with no environment keys, no files and no metadata services."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def test_botocore_credentials_come_from_the_environment(isolated_aws_env):
    isolated_aws_env.setenv("AWS_ACCESS_KEY_ID", "ASIAENV")
    isolated_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    isolated_aws_env.setenv("AWS_SESSION_TOKEN", "envtoken")
    assert credentials_from_botocore()() == AwsCredentials("ASIAENV", "envsecret", "envtoken")


def test_botocore_credentials_come_from_a_named_profile(isolated_aws_env, tmp_path):
    (tmp_path / "credentials").write_text(
        "[claims]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profilesecret\n"
    )
    assert credentials_from_botocore("claims")() == AwsCredentials("AKIDPROFILE", "profilesecret")


def test_botocore_credentials_raise_clear_error_when_chain_is_empty(isolated_aws_env):
    with pytest.raises(ValueError, match="no AWS credentials found in the standard chain"):
        credentials_from_botocore()()


def test_botocore_credentials_raise_clear_error_for_unknown_profile(isolated_aws_env):
    with pytest.raises(ValueError, match="AWS profile 'missing' not found"):
        credentials_from_botocore("missing")()
