"""Settings from PROVISIONER_* variables: parsing, derivation, and every problem listed at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from service.config import Settings, SettingsError

KEY = "k" * 16
AWS_HOST = "abc123-ats.iot.eu-west-1.amazonaws.com"


@pytest.fixture
def claim(tmp_path: Path) -> dict[str, str]:
    """Readable claim certificate, key and CA files (contents do not matter to settings)."""
    paths = {}
    for name in ("claim.pem", "claim.key", "ca.pem"):
        (tmp_path / name).write_text("-----BEGIN X-----\n")
        paths[name] = str(tmp_path / name)
    return {
        "PROVISIONER_CLAIM_CERT": paths["claim.pem"],
        "PROVISIONER_CLAIM_KEY": paths["claim.key"],
        "PROVISIONER_CA_FILE": paths["ca.pem"],
    }


def settings(**env: str) -> Settings:
    return Settings.from_env({"PROVISIONER_API_KEYS": KEY, **env})


def problems(**env: str) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    return caught.value.problems


def test_no_endpoint_means_local_mode_with_defaults_and_a_key_to_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.local_mode and s.iot_endpoint is None
    assert s.generate_api_key is True and s.api_keys == ()
    assert s.endpoint_host is None and s.transport is None
    assert (s.pool_size, s.pool_wait_seconds, s.request_timeout_seconds) == (4, 2.0, 20.0)
    assert (s.step_timeout_seconds, s.connect_timeout_seconds) == (10.0, 10.0)
    assert (s.reconnect_min_seconds, s.reconnect_max_seconds) == (0.5, 30.0)
    assert s.allow_server_generated_keys is True
    assert (s.max_body_bytes, s.max_parameters) == (65536, 32)
    assert (s.max_parameter_key_length, s.max_parameter_value_length) == (128, 2048)
    assert s.log_level == "INFO"
    assert s.emulator_mode == "sigv4"
    assert s.emulator_data_dir == tmp_path / ".emulator-data"


def test_local_mode_with_keys_generates_none():
    s = Settings.from_env({"PROVISIONER_API_KEYS": KEY})
    assert s.local_mode and s.api_keys == (KEY,) and s.generate_api_key is False


def test_every_variable_is_parsed(claim, tmp_path):
    s = Settings.from_env(
        {
            **claim,
            "PROVISIONER_IOT_ENDPOINT": AWS_HOST,
            "PROVISIONER_AUTH_MODE": "Certificate",
            "PROVISIONER_IOT_PORT": "443",
            "PROVISIONER_AWS_REGION": "eu-west-1",
            "PROVISIONER_AWS_PROFILE": "factory",
            "PROVISIONER_POOL_SIZE": "8",
            "PROVISIONER_POOL_WAIT_SECONDS": "0.5",
            "PROVISIONER_REQUEST_TIMEOUT_SECONDS": "15",
            "PROVISIONER_STEP_TIMEOUT_SECONDS": "5",
            "PROVISIONER_CONNECT_TIMEOUT_SECONDS": "3",
            "PROVISIONER_RECONNECT_MIN_SECONDS": "1",
            "PROVISIONER_RECONNECT_MAX_SECONDS": "60",
            "PROVISIONER_API_KEYS": f" {KEY} ,, {'z' * 20},",
            "PROVISIONER_ALLOW_SERVER_KEYS": "no",
            "PROVISIONER_MAX_BODY_BYTES": "32768",
            "PROVISIONER_MAX_PARAMETERS": "10",
            "PROVISIONER_MAX_PARAMETER_KEY_LENGTH": "64",
            "PROVISIONER_MAX_PARAMETER_VALUE_LENGTH": "512",
            "PROVISIONER_LOG_LEVEL": "debug",
            "PROVISIONER_EMULATOR_MODE": "CERTIFICATE",
            "PROVISIONER_EMULATOR_DATA_DIR": str(tmp_path / "emu"),
        }
    )
    assert s.iot_endpoint == AWS_HOST and s.auth_mode == "certificate" and s.iot_port == 443
    assert (s.endpoint_host, s.endpoint_port, s.transport, s.tls) == (AWS_HOST, 443, "tcp", True)
    assert s.alpn_protocols == ("x-amzn-mqtt-ca",)
    assert s.region == "eu-west-1" and s.aws_profile == "factory"
    assert s.claim_cert == Path(claim["PROVISIONER_CLAIM_CERT"])
    assert s.claim_key == Path(claim["PROVISIONER_CLAIM_KEY"])
    assert s.ca_file == Path(claim["PROVISIONER_CA_FILE"])
    assert (s.pool_size, s.pool_wait_seconds, s.request_timeout_seconds) == (8, 0.5, 15.0)
    assert (s.step_timeout_seconds, s.connect_timeout_seconds) == (5.0, 3.0)
    assert (s.reconnect_min_seconds, s.reconnect_max_seconds) == (1.0, 60.0)
    assert s.api_keys == (KEY, "z" * 20) and s.generate_api_key is False
    assert s.allow_server_generated_keys is False
    assert (s.max_body_bytes, s.max_parameters) == (32768, 10)
    assert (s.max_parameter_key_length, s.max_parameter_value_length) == (64, 512)
    assert s.log_level == "DEBUG"
    assert s.emulator_mode == "certificate" and s.emulator_data_dir == tmp_path / "emu"
    assert isinstance(s.pool_size, int) and isinstance(s.request_timeout_seconds, float)


def test_every_problem_is_listed_at_once():
    found = problems(
        PROVISIONER_IOT_ENDPOINT="ftp://example.com",
        PROVISIONER_AUTH_MODE="password",
        PROVISIONER_POOL_SIZE="abc",
        PROVISIONER_REQUEST_TIMEOUT_SECONDS="-1",
        PROVISIONER_ALLOW_SERVER_KEYS="maybe",
        PROVISIONER_LOG_LEVEL="loud",
        PROVISIONER_EMULATOR_MODE="x509",
        PROVISIONER_API_KEYS="short",
    )
    assert found == [
        "PROVISIONER_AUTH_MODE must be one of sigv4, certificate, got 'password'",
        "PROVISIONER_ALLOW_SERVER_KEYS must be true/false/1/0/yes/no, got 'maybe'",
        "PROVISIONER_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
        "PROVISIONER_EMULATOR_MODE must be one of sigv4, certificate, got 'x509'",
        "PROVISIONER_POOL_SIZE must be an integer between 1 and 50, got 'abc'",
        "PROVISIONER_REQUEST_TIMEOUT_SECONDS must be a number between 0.1 and 300, got '-1'",
        "PROVISIONER_API_KEYS key #1 has 5 characters; each key needs at least 16",
        "PROVISIONER_IOT_ENDPOINT scheme must be wss, ws, mqtts or mqtt, got 'ftp'",
    ]


def test_settings_error_lists_each_problem_on_its_own_line():
    error = SettingsError(["first problem", "second problem"])
    assert str(error).splitlines() == [
        "2 problem(s) with the PROVISIONER_* settings:",
        "- first problem",
        "- second problem",
    ]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # (endpoint, auth mode, port override) -> (auth, host, port, transport, tls, path, alpn)
        ({"PROVISIONER_IOT_ENDPOINT": AWS_HOST}, ("sigv4", AWS_HOST, 443, "websockets", True, "/mqtt", ())),
        (
            {"PROVISIONER_IOT_ENDPOINT": AWS_HOST, "PROVISIONER_AUTH_MODE": "certificate", "certs": "1"},
            ("certificate", AWS_HOST, 8883, "tcp", True, "/mqtt", ()),
        ),
        (
            {
                "PROVISIONER_IOT_ENDPOINT": AWS_HOST,
                "PROVISIONER_AUTH_MODE": "certificate",
                "PROVISIONER_IOT_PORT": "443",
                "certs": "1",
            },
            ("certificate", AWS_HOST, 443, "tcp", True, "/mqtt", ("x-amzn-mqtt-ca",)),
        ),
        (
            {"PROVISIONER_IOT_ENDPOINT": f"wss://{AWS_HOST}"},
            ("sigv4", AWS_HOST, 443, "websockets", True, "/mqtt", ()),
        ),
        (
            {
                "PROVISIONER_IOT_ENDPOINT": "wss://localhost:8443/custom",
                "PROVISIONER_AWS_REGION": "us-east-1",
            },
            ("sigv4", "localhost", 8443, "websockets", True, "/custom", ()),
        ),
        (
            {"PROVISIONER_IOT_ENDPOINT": "WS://127.0.0.1:8080/", "PROVISIONER_AWS_REGION": "us-east-1"},
            ("sigv4", "127.0.0.1", 8080, "websockets", False, "/mqtt", ()),
        ),
        (
            {
                "PROVISIONER_IOT_ENDPOINT": "ws://localhost",
                "PROVISIONER_IOT_PORT": "9001",
                "PROVISIONER_AWS_REGION": "us-east-1",
            },
            ("sigv4", "localhost", 9001, "websockets", False, "/mqtt", ()),
        ),
        (
            {"PROVISIONER_IOT_ENDPOINT": "mqtts://emulator.local", "certs": "1"},
            ("certificate", "emulator.local", 8883, "tcp", True, "/mqtt", ()),
        ),
        (
            {"PROVISIONER_IOT_ENDPOINT": "mqtts://emulator.local:443", "certs": "1"},
            ("certificate", "emulator.local", 443, "tcp", True, "/mqtt", ("x-amzn-mqtt-ca",)),
        ),
        (
            {"PROVISIONER_IOT_ENDPOINT": "mqtt://127.0.0.1:1883"},
            ("certificate", "127.0.0.1", 1883, "tcp", False, "/mqtt", ()),
        ),
        (
            {"PROVISIONER_IOT_ENDPOINT": "mqtt://[::1]:1883"},
            ("certificate", "::1", 1883, "tcp", False, "/mqtt", ()),
        ),
    ],
)
def test_endpoint_forms(claim, env, expected):
    if env.pop("certs", None) is None:
        claim = {}
    s = settings(**env, **claim)
    assert (
        s.auth_mode,
        s.endpoint_host,
        s.endpoint_port,
        s.transport,
        s.tls,
        s.websocket_path,
        s.alpn_protocols,
    ) == expected


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("ftp://example.com", "scheme must be wss, ws, mqtts or mqtt, got 'ftp'"),
        ("ws://localhost", "ws:// needs an explicit port, like ws://localhost:1883"),
        ("mqtt://localhost", "mqtt:// needs an explicit port"),
        ("wss://user:secret@localhost", "must not contain user info, a query or a fragment"),
        ("wss://user:secret@localhost:99999", "must not contain user info, a query or a fragment"),
        ("wss://localhost?X-Amz-Signature=1", "must not contain user info, a query or a fragment"),
        ("wss://localhost:99999", "has an invalid port"),
        ("mqtts://localhost:8883/mqtt", "mqtts:// takes no path, got '/mqtt'"),
        (f"{AWS_HOST}:8883", "must be a host name"),
        ("not a host", "must be a host name"),
        ("wss://bad_host", "has no valid host"),
    ],
)
def test_invalid_endpoints_are_problems(endpoint, message):
    [found] = problems(
        PROVISIONER_IOT_ENDPOINT=endpoint, PROVISIONER_API_KEYS=KEY, PROVISIONER_AWS_REGION="us-east-1"
    )
    assert found.startswith("PROVISIONER_IOT_ENDPOINT") and message in found
    assert "secret" not in found


def test_port_override_must_agree_with_the_url():
    assert problems(
        PROVISIONER_IOT_ENDPOINT="mqtt://localhost:1883",
        PROVISIONER_IOT_PORT="1884",
        PROVISIONER_API_KEYS=KEY,
    ) == ["PROVISIONER_IOT_PORT=1884 contradicts the port 1883 in PROVISIONER_IOT_ENDPOINT"]
    assert problems(PROVISIONER_IOT_PORT="0", PROVISIONER_API_KEYS=KEY) == [
        "PROVISIONER_IOT_PORT must be an integer between 1 and 65535, got '0'"
    ]


def test_sigv4_needs_a_websocket_endpoint(claim):
    [found] = problems(
        PROVISIONER_IOT_ENDPOINT="mqtts://localhost",
        PROVISIONER_AUTH_MODE="sigv4",
        PROVISIONER_AWS_REGION="us-east-1",
        PROVISIONER_API_KEYS=KEY,
        PROVISIONER_CA_FILE=claim["PROVISIONER_CA_FILE"],
    )
    assert found == (
        "PROVISIONER_AUTH_MODE=sigv4 signs a WebSocket upgrade and needs a wss:// "
        "or ws:// endpoint, got mqtts://"
    )


def test_certificate_mode_needs_an_mqtt_endpoint(claim):
    [found] = problems(
        PROVISIONER_IOT_ENDPOINT="wss://localhost",
        PROVISIONER_AUTH_MODE="certificate",
        PROVISIONER_API_KEYS=KEY,
        **claim,
    )
    assert "PROVISIONER_AUTH_MODE=certificate needs an mqtts:// or mqtt:// endpoint" in found


def test_certificate_mode_over_tls_requires_readable_claim_files(claim, tmp_path):
    assert problems(PROVISIONER_IOT_ENDPOINT="mqtts://localhost", PROVISIONER_API_KEYS=KEY) == [
        "PROVISIONER_CLAIM_CERT is required in certificate mode",
        "PROVISIONER_CLAIM_KEY is required in certificate mode",
    ]
    missing = str(tmp_path / "missing.pem")
    assert problems(
        PROVISIONER_IOT_ENDPOINT="mqtts://localhost",
        PROVISIONER_API_KEYS=KEY,
        PROVISIONER_CLAIM_CERT=missing,
        PROVISIONER_CLAIM_KEY=str(tmp_path),
        PROVISIONER_CA_FILE=missing,
    ) == [
        f"PROVISIONER_CLAIM_CERT={missing!r} does not exist or is not a file",
        f"PROVISIONER_CLAIM_KEY={str(tmp_path)!r} does not exist or is not a file",
        f"PROVISIONER_CA_FILE={missing!r} does not exist or is not a file",
    ]


def test_claim_files_with_a_bare_host_need_an_explicit_auth_mode(claim):
    # A bare host defaults to sigv4: claim files beside it suggest certificate was meant. Ask.
    found = problems(PROVISIONER_IOT_ENDPOINT=AWS_HOST, PROVISIONER_API_KEYS=KEY, **claim)
    assert found == [
        "PROVISIONER_CLAIM_CERT/KEY are set but PROVISIONER_AUTH_MODE is not: set it to "
        "certificate to connect with the claim certificate, or to sigv4 to sign with AWS "
        "credentials"
    ]
    s = settings(PROVISIONER_IOT_ENDPOINT=AWS_HOST, PROVISIONER_AUTH_MODE="sigv4", **claim)
    assert s.auth_mode == "sigv4" and s.transport == "websockets"


def test_files_that_plain_mqtt_cannot_use_are_problems(claim):
    found = problems(PROVISIONER_IOT_ENDPOINT="mqtt://localhost:1883", PROVISIONER_API_KEYS=KEY, **claim)
    assert found == [
        "PROVISIONER_CLAIM_CERT is set but mqtt:// has no TLS to present it; use mqtts://",
        "PROVISIONER_CLAIM_KEY is set but mqtt:// has no TLS to present it; use mqtts://",
        "PROVISIONER_CA_FILE is set but mqtt:// uses no TLS",
    ]


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({"PROVISIONER_IOT_ENDPOINT": AWS_HOST}, "eu-west-1"),
        ({"PROVISIONER_IOT_ENDPOINT": "wss://abc-ats.iot.cn-north-1.amazonaws.com.cn"}, "cn-north-1"),
        ({"PROVISIONER_IOT_ENDPOINT": "data.iot-fips.us-gov-west-1.amazonaws.com"}, "us-gov-west-1"),
        ({"PROVISIONER_IOT_ENDPOINT": AWS_HOST, "AWS_REGION": "us-east-1"}, "eu-west-1"),
        ({"PROVISIONER_IOT_ENDPOINT": AWS_HOST, "PROVISIONER_AWS_REGION": "eu-west-1"}, "eu-west-1"),
        (
            {
                "PROVISIONER_IOT_ENDPOINT": "ws://localhost:9001",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-west-2",
            },
            "us-east-1",
        ),
        ({"PROVISIONER_IOT_ENDPOINT": "ws://localhost:9001", "AWS_DEFAULT_REGION": "us-west-2"}, "us-west-2"),
        (
            {
                "PROVISIONER_IOT_ENDPOINT": "ws://localhost:9001",
                "PROVISIONER_AWS_REGION": "ap-south-1",
                "AWS_REGION": "us-east-1",
            },
            "ap-south-1",
        ),
        ({"PROVISIONER_IOT_ENDPOINT": "mqtt://localhost:1883"}, None),
    ],
)
def test_region_derivation(env, region):
    assert settings(**env).region == region


def test_region_problems():
    assert problems(PROVISIONER_IOT_ENDPOINT="ws://localhost:9001", PROVISIONER_API_KEYS=KEY) == [
        "PROVISIONER_AWS_REGION is required in sigv4 mode: it cannot be derived from the "
        "endpoint host 'localhost' (AWS_REGION or AWS_DEFAULT_REGION also do)"
    ]
    assert problems(
        PROVISIONER_IOT_ENDPOINT=AWS_HOST, PROVISIONER_AWS_REGION="us-east-1", PROVISIONER_API_KEYS=KEY
    ) == [
        "PROVISIONER_AWS_REGION=us-east-1 contradicts the endpoint's region eu-west-1: SigV4 would be refused"
    ]
    assert problems(
        PROVISIONER_IOT_ENDPOINT="ws://localhost:9001",
        PROVISIONER_AWS_REGION="Europe",
        PROVISIONER_API_KEYS=KEY,
    ) == ["PROVISIONER_AWS_REGION must look like 'eu-west-1', got 'Europe'"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PROVISIONER_POOL_SIZE", "abc", "an integer between 1 and 50, got 'abc'"),
        ("PROVISIONER_POOL_SIZE", "0", "an integer between 1 and 50, got '0'"),
        ("PROVISIONER_POOL_SIZE", "51", "an integer between 1 and 50, got '51'"),
        ("PROVISIONER_POOL_SIZE", "4.5", "an integer between 1 and 50, got '4.5'"),
        ("PROVISIONER_POOL_WAIT_SECONDS", "nan", "a number between 0 and 60, got 'nan'"),
        ("PROVISIONER_POOL_WAIT_SECONDS", "-0.5", "a number between 0 and 60, got '-0.5'"),
        ("PROVISIONER_STEP_TIMEOUT_SECONDS", "inf", "a number between 0.1 and 300, got 'inf'"),
        ("PROVISIONER_CONNECT_TIMEOUT_SECONDS", "ten", "a number between 0.1 and 300, got 'ten'"),
        ("PROVISIONER_RECONNECT_MIN_SECONDS", "0", "a number between 0.01 and 3600, got '0'"),
        ("PROVISIONER_MAX_BODY_BYTES", "200000", "an integer between 1024 and 131072, got '200000'"),
        ("PROVISIONER_MAX_PARAMETERS", "-1", "an integer between 0 and 1000, got '-1'"),
        ("PROVISIONER_MAX_PARAMETER_KEY_LENGTH", "0", "an integer between 1 and 1024, got '0'"),
        ("PROVISIONER_MAX_PARAMETER_VALUE_LENGTH", "1e9", "an integer between 1 and 131072, got '1e9'"),
    ],
)
def test_numbers_are_checked_with_clear_problems(name, value, message):
    assert problems(**{name: value}) == [f"{name} must be {message}"]


def test_timings_must_fit_together():
    assert problems(
        PROVISIONER_REQUEST_TIMEOUT_SECONDS="5",
        PROVISIONER_STEP_TIMEOUT_SECONDS="6",
        PROVISIONER_POOL_WAIT_SECONDS="5",
        PROVISIONER_RECONNECT_MIN_SECONDS="40",
    ) == [
        "PROVISIONER_STEP_TIMEOUT_SECONDS must not exceed PROVISIONER_REQUEST_TIMEOUT_SECONDS",
        "PROVISIONER_POOL_WAIT_SECONDS must be less than PROVISIONER_REQUEST_TIMEOUT_SECONDS",
        "PROVISIONER_RECONNECT_MIN_SECONDS must not exceed PROVISIONER_RECONNECT_MAX_SECONDS",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("NO", False),
        ("", True),
    ],
)
def test_booleans(value, expected):
    assert settings(PROVISIONER_ALLOW_SERVER_KEYS=value).allow_server_generated_keys is expected


def test_empty_variables_count_as_unset():
    s = settings(PROVISIONER_IOT_ENDPOINT="  ", PROVISIONER_POOL_SIZE="", PROVISIONER_CA_FILE="")
    assert s.local_mode and s.pool_size == 4 and s.ca_file is None


def test_api_keys_are_required_outside_local_mode():
    assert problems(PROVISIONER_IOT_ENDPOINT="mqtt://localhost:1883", PROVISIONER_API_KEYS=" , ") == [
        "PROVISIONER_API_KEYS is required outside local mode: comma-separated keys of at least 16 characters"
    ]


def test_api_key_problems_never_show_the_key():
    short, spaced = "hunter2", "correct horse battery staple"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PROVISIONER_API_KEYS": f"{KEY},{short},{spaced}"})
    assert caught.value.problems == [
        "PROVISIONER_API_KEYS key #2 has 7 characters; each key needs at least 16",
        "PROVISIONER_API_KEYS key #3 contains spaces or characters outside printable ASCII, "
        "which an Authorization header cannot carry",
    ]
    assert short not in str(caught.value) and "horse" not in str(caught.value)


def test_repr_hides_api_keys():
    secret = "very-secret-key-0123456789"
    s = settings(PROVISIONER_API_KEYS=f"{secret},{KEY}")
    assert secret not in repr(s) and secret not in str(s) and KEY not in repr(s)
    assert "api_keys=<2 hidden>" in repr(s)


def test_repr_hides_static_credentials():
    s = settings().replace(static_credentials=("AKIDEXAMPLE", "very-secret-value"))
    assert "very-secret-value" not in repr(s) and "AKIDEXAMPLE" not in repr(s)
    assert "static_credentials=<hidden>" in repr(s)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings().pool_size = 5  # type: ignore[misc]


def test_replace_derives_and_checks_again(claim):
    local = Settings.from_env({})
    pointed = local.replace(
        iot_endpoint="mqtts://127.0.0.1:18883",
        auth_mode="certificate",
        api_keys=(KEY,),
        claim_cert=Path(claim["PROVISIONER_CLAIM_CERT"]),
        claim_key=Path(claim["PROVISIONER_CLAIM_KEY"]),
    )
    assert (pointed.endpoint_host, pointed.endpoint_port, pointed.tls) == ("127.0.0.1", 18883, True)
    assert pointed.generate_api_key is False and not pointed.local_mode
    with pytest.raises(SettingsError, match="PROVISIONER_CLAIM_CERT is required"):
        local.replace(iot_endpoint="mqtts://127.0.0.1:18883", auth_mode="certificate", api_keys=(KEY,))
    with pytest.raises(SettingsError, match="PROVISIONER_POOL_SIZE must be an integer"):
        pointed.replace(pool_size=0)
    with pytest.raises(ValueError, match="init=False"):
        pointed.replace(endpoint_port=1)
