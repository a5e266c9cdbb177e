"""SigV4 presigned path for the MQTT-over-WebSocket upgrade to AWS IoT Core.

Signed by awscrt exactly as the AWS IoT Device SDK does it
(`awsiot.mqtt_connection_builder.websockets_with_default_aws_signing`): query-string signing,
service `iotdevicegateway`, `omit_session_token=True` and no expiration, so there is no
`X-Amz-Expires` (AWS's own IoT signers never send one). Using AWS's signer rather than our own
keeps crypto code out of the service.

Where the session token ends up: awscrt appends its parameters in a fixed order, not sorted
(Algorithm, Credential, Date, SignedHeaders, Security-Token, Signature), so the token stands just
before `X-Amz-Signature`, and `omit_session_token` keeps it out of the canonical request. AWS IoT
refuses a signed token and accepts this URL: it is the SDK's own. We leave it there rather than
move it after the signature as browser signers do; both are unsigned, so either is accepted.

The path is signed anew on every (re)connect, so temporary credentials are fetched fresh each time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import botocore.exceptions
import botocore.session
from awscrt.auth import (
    AwsCredentialsProvider,
    AwsSignatureType,
    AwsSigningAlgorithm,
    AwsSigningConfig,
    aws_sign_request,
)
from awscrt.http import HttpHeaders, HttpRequest

SERVICE = "iotdevicegateway"
PATH = "/mqtt"
# Signing is local CPU work (no credential fetch: the provider is static), so this only
# guards against a hung native call.
_SIGN_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        # Credentials end up in logs and tracebacks; only the key id is safe to show.
        token = None if self.session_token is None else "***"
        return (
            f"AwsCredentials(access_key_id={self.access_key_id!r}, "
            f"secret_access_key='***', session_token={token!r})"
        )


def host_header_for(host: str, port: int, tls: bool) -> str:
    """The Host header paho sends, which is what must be signed: no port when it is the default."""
    default_port = 443 if tls else 80
    return host if port == default_port else f"{host}:{port}"


def presign_mqtt_path(
    host_header: str, region: str, credentials: AwsCredentials, *, now: datetime | None = None
) -> str:
    """Return `/mqtt?X-Amz-...` signed for `host_header` in `region` at `now` (default: now)."""
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        # awscrt would read a naive datetime as local time and sign a skewed X-Amz-Date.
        raise ValueError("now must be timezone-aware")
    provider = AwsCredentialsProvider.new_static(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    config = AwsSigningConfig(
        algorithm=AwsSigningAlgorithm.V4,
        signature_type=AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=provider,
        region=region,
        service=SERVICE,
        date=now,
        omit_session_token=True,
    )
    # Only Host is signed: paho adds Connection, Upgrade etc. itself, and a signed header that
    # the handshake then sends differently would break the signature.
    request = HttpRequest("GET", PATH, HttpHeaders([("Host", host_header)]))
    signed: HttpRequest = aws_sign_request(request, config).result(timeout=_SIGN_TIMEOUT_SECONDS)
    path: str = signed.path
    return path


def static_credentials(
    access_key_id: str, secret_access_key: str, session_token: str | None = None
) -> Callable[[], AwsCredentials]:
    """A credentials source that always gives the same keys (from settings)."""
    credentials = AwsCredentials(access_key_id, secret_access_key, session_token)
    return lambda: credentials


def credentials_from_botocore(profile: str | None = None) -> Callable[[], AwsCredentials]:
    """A credentials source backed by botocore's default chain, fresh on every call.

    botocore refreshes temporary credentials (SSO, assumed roles, instance or container roles)
    inside `get_frozen_credentials`, so calling it at each connect never signs with expired keys.
    Nothing is resolved until the first call.
    """
    session = botocore.session.Session(profile=profile)

    def fetch() -> AwsCredentials:
        try:
            found = session.get_credentials()
        except botocore.exceptions.ProfileNotFound:
            raise ValueError(f"AWS profile {profile!r} not found") from None
        if found is None:
            raise ValueError(
                "no AWS credentials found in the standard chain (environment, "
                "shared config, SSO, container or instance role)"
            )
        frozen = found.get_frozen_credentials()
        return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)

    return fetch
