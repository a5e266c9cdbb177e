"""Secrets in the settings: read from `*_FILE` (Docker and Kubernetes secrets), and placeholders
copied from an example refused, so no deployment starts on a key that anyone could read."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings, SettingsError

KEY = "k" * 24
AWS = {"PROVISIONER_IOT_ENDPOINT": "abc123-ats.iot.eu-west-1.amazonaws.com"}


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    return caught.value.problems


def test_api_keys_come_from_a_file_one_a_line_or_comma_separated(tmp_path: Path) -> None:
    keys = tmp_path / "api_keys"
    keys.write_text(f"{KEY}\n{'b' * 20},{'c' * 20}\n")
    s = Settings.from_env({**AWS, "PROVISIONER_API_KEYS_FILE": str(keys)})
    assert s.api_keys == (KEY, "b" * 20, "c" * 20)


def test_the_database_url_comes_from_a_file(tmp_path: Path) -> None:
    url = tmp_path / "database_url"
    url.write_text("postgresql+psycopg://app:s3cr3t-9f2c@db/app\n")
    s = Settings.from_env({"PROVISIONER_API_KEYS": KEY, "PROVISIONER_DATABASE_URL_FILE": str(url)})
    assert s.store_url == "postgresql+psycopg://app:s3cr3t-9f2c@db/app"


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    keys = tmp_path / "api_keys"
    keys.write_text(KEY)
    found = problems({**AWS, "PROVISIONER_API_KEYS": KEY, "PROVISIONER_API_KEYS_FILE": str(keys)})
    assert found == ["PROVISIONER_API_KEYS and PROVISIONER_API_KEYS_FILE are both set; set one of them"]


def test_a_missing_or_empty_secret_file_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    found = problems(
        {
            **AWS,
            "PROVISIONER_API_KEYS_FILE": str(tmp_path / "absent"),
            "PROVISIONER_DATABASE_URL_FILE": str(empty),
        }
    )
    assert (
        f"PROVISIONER_API_KEYS_FILE={str(tmp_path / 'absent')!r} cannot be read: No such file or directory"
        in (found)
    )
    assert f"PROVISIONER_DATABASE_URL_FILE={str(empty)!r} is empty" in found
    assert any(p.startswith("PROVISIONER_API_KEYS is required outside local mode") for p in found)


@pytest.mark.parametrize(
    "key", ["change-me-to-a-long-random-key", "CHANGEME-0123456789abcdef", "x-placeholder-key-123"]
)
def test_a_placeholder_api_key_refuses_to_start_without_showing_it(key: str) -> None:
    found = problems({**AWS, "PROVISIONER_API_KEYS": f"{KEY},{key}"})
    assert found == [
        "PROVISIONER_API_KEYS key #2 is a placeholder from an example, not a secret: "
        "set a random key (openssl rand -hex 24)"
    ]
    assert key not in str(found)


def test_a_placeholder_api_key_is_refused_in_local_mode_too() -> None:
    assert problems({"PROVISIONER_API_KEYS": "change-me-to-a-long-random-key"})


def test_a_placeholder_database_password_is_refused_without_showing_the_url() -> None:
    url = "postgresql+psycopg://provisioner:change-me@postgres/provisioner"
    found = problems({**AWS, "PROVISIONER_API_KEYS": KEY, "PROVISIONER_DATABASE_URL": url})
    assert found == [
        "PROVISIONER_DATABASE_URL has a placeholder from an example as its password, not a secret: "
        "set a random one (openssl rand -hex 24)"
    ]


def test_a_random_database_password_passes() -> None:
    url = "postgresql+psycopg://provisioner:0f3a9c@postgres/provisioner"
    s = Settings.from_env({**AWS, "PROVISIONER_API_KEYS": KEY, "PROVISIONER_DATABASE_URL": url})
    assert s.database_url == url
