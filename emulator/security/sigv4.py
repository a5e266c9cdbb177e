"""SigV4 verification: the presigned MQTT-over-WebSocket upgrade and signed control-plane requests.

AWS IoT Core authenticates `wss://<endpoint>/mqtt` with a SigV4 *presigned* query string
(https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html, MQTT over WebSocket):
service `iotdevicegateway`, region from the credential scope, payload hash of the empty body.
The session token of temporary credentials is never part of the signed query, wherever it
stands in the URL (awscrt puts it just before the signature, browser signers append it after),
so it is left out of the canonical query here.

The control plane (`emulator/control/`) is signed the ordinary way, as botocore and the AWS CLI do
it: an `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` header,
`X-Amz-Date`, service `iot`, and the SHA-256 of the body. `verify_signed_request` checks those with
the same canonical request, scope, clock and signature code as the presigned upgrade.

Stdlib only. `presign_path` is the same algorithm run the other way; tests and docs use it to make
browser-style and SDK-style URLs. The service has its own presigner (awscrt): the two sides share
no code on purpose, so a bug on one side cannot hide a bug on the other.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol
from urllib.parse import quote, unquote

from emulator.errors import AuthError, MissingAuthentication, UnknownAccessKey

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "iotdevicegateway"
CONTROL_SERVICE = "iot"  # the signing name in botocore's model of AWS IoT's control plane
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# strptime alone would take one-digit months and days, and isdigit() takes non-ASCII digits.
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SECONDS = re.compile(r"[0-9]{1,7}")
_EMPTY_PAYLOAD_HASH = hashlib.sha256(b"").hexdigest()
# AWS refuses presigned URLs valid for longer than a week ("X-Amz-Expires must be less than a
# week (in seconds) that is 604800"); we refuse them the same way rather than clamp silently.
_MAX_EXPIRES = 7 * 24 * 3600
_SIGNATURE = "X-Amz-Signature"
_TOKEN = "X-Amz-Security-Token"
_REQUIRED = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", _SIGNATURE)
_AUTHORIZATION_FIELDS = ("Credential", "SignedHeaders", "Signature")


class MultiHeaders(Protocol):
    """Received headers that keep repeated ones (websockets' Headers, the control plane's)."""

    def get_all(self, name: str) -> list[str]: ...


HeaderSource = Mapping[str, str] | MultiHeaders


@dataclass(frozen=True)
class Identity:
    """Who signed the upgrade: the access key id and the region of its credential scope."""

    access_key_id: str
    region: str


def verify_presigned_request(
    path: str,
    headers: Mapping[str, str],
    secrets: Mapping[str, str],
    *,
    now: datetime,
    service: str = SERVICE,
    max_age_without_expires: timedelta = timedelta(minutes=15),
    clock_skew: timedelta = timedelta(minutes=5),
) -> Identity:
    """Check a presigned WebSocket upgrade; return who signed it or raise `AuthError`.

    `path` is the raw request target (`/mqtt?X-Amz-...`), `headers` the received headers
    (a dict in any case, or websockets' `Headers`), `secrets` maps access key id to secret key.
    Reasons never carry the secret, the session token or the expected signature.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    raw_path, _, raw_query = path.partition("?")
    pairs = _parse_query(raw_query)
    auth = _auth_params(pairs)

    if auth["X-Amz-Algorithm"] != ALGORITHM:
        raise AuthError(f"X-Amz-Algorithm is {auth['X-Amz-Algorithm']!r}, expected {ALGORITHM!r}")
    scope = _Scope.parse(auth["X-Amz-Credential"], auth["X-Amz-Date"], service, "X-Amz-Credential")
    signed_at = _parse_amz_date(auth["X-Amz-Date"])
    _check_time(signed_at, auth.get("X-Amz-Expires"), now, max_age_without_expires, clock_skew)
    secret = _secret(secrets, scope.access_key_id)
    header_lines = _signed_header_lines(headers, auth["X-Amz-SignedHeaders"], "X-Amz-SignedHeaders")
    unsigned = {_SIGNATURE, _TOKEN}
    signed_pairs = [(k, v) for k, v in pairs if k not in unsigned]
    expected = _signature(
        secret,
        auth["X-Amz-Date"],
        scope.text,
        _canonical_request("GET", raw_path, signed_pairs, header_lines, _EMPTY_PAYLOAD_HASH),
    )
    _compare(expected, auth[_SIGNATURE])
    return Identity(access_key_id=scope.access_key_id, region=scope.region)


def verify_signed_request(
    method: str,
    target: str,
    headers: HeaderSource,
    body: bytes,
    secrets: Mapping[str, str],
    *,
    now: datetime,
    service: str = CONTROL_SERVICE,
    clock_skew: timedelta = timedelta(minutes=5),
) -> Identity:
    """Check a request signed in its `Authorization` header; return who signed it or raise.

    `target` is the raw request target (`/things?maxResults=2`), `headers` the received headers
    (an object with `get_all(name)`, or a dict), `body` the whole body. The request must be
    dated (`X-Amz-Date`) within `clock_skew` of `now`, either way, as AWS's services require.
    Raises `MissingAuthentication` without an Authorization header, `UnknownAccessKey` for a key
    id the emulator does not hold, `AuthError` for everything else; reasons never carry the
    secret, the session token or the expected signature.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    authorization = _header_values(headers, "authorization")
    if not authorization:
        raise MissingAuthentication("no Authorization header")
    if len(authorization) > 1:
        raise AuthError("more than one Authorization header")
    fields = _authorization_fields(authorization[0])
    amz_dates = _header_values(headers, "x-amz-date")
    if len(amz_dates) != 1:
        raise AuthError("the request must carry exactly one X-Amz-Date header")
    amz_date = amz_dates[0]
    signed_at = _parse_amz_date(amz_date)
    scope = _Scope.parse(fields["Credential"], amz_date, service, "Credential")
    if abs(signed_at - now) > clock_skew:
        raise AuthError(
            f"Signature expired or not yet valid: X-Amz-Date {amz_date} is more than "
            f"{int(clock_skew.total_seconds() // 60)} minutes from the server's time "
            f"{now.astimezone(UTC).strftime(_DATE_FORMAT)}"
        )
    secret = _secret(secrets, scope.access_key_id)
    header_lines = _signed_header_lines(headers, fields["SignedHeaders"], "SignedHeaders")
    raw_path, _, raw_query = target.partition("?")
    expected = _signature(
        secret,
        amz_date,
        scope.text,
        _canonical_request(
            method.upper(), raw_path, _parse_query(raw_query), header_lines, hashlib.sha256(body).hexdigest()
        ),
    )
    _compare(expected, fields["Signature"])
    return Identity(access_key_id=scope.access_key_id, region=scope.region)


@dataclass(frozen=True)
class _Scope:
    access_key_id: str
    day: str
    region: str
    service: str

    @property
    def text(self) -> str:
        return f"{self.day}/{self.region}/{self.service}"

    @classmethod
    def parse(cls, credential: str, amz_date: str, service: str, field_name: str) -> _Scope:
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise AuthError(
                f"malformed {field_name}, expected <key>/<yyyymmdd>/<region>/<service>/aws4_request"
            )
        scope = cls(parts[0], parts[1], parts[2], parts[3])
        if scope.service != service:
            raise AuthError(f"credential scope service is {scope.service!r}, expected {service!r}")
        if scope.day != amz_date[:8]:
            raise AuthError("credential scope date does not match X-Amz-Date")
        return scope


def _secret(secrets: Mapping[str, str], access_key_id: str) -> str:
    secret = secrets.get(access_key_id)
    if secret is None:
        raise UnknownAccessKey("unknown access key id")
    return secret


def _signed_header_lines(
    headers: HeaderSource, signed_headers: str, field_name: str
) -> list[tuple[str, str]]:
    signed_names = signed_headers.split(";")
    if "host" not in signed_names:
        raise AuthError(f"{field_name} must include 'host'")
    header_lines = []
    for name in signed_names:
        values = _header_values(headers, name)
        if not values:
            raise AuthError(f"signed header {name!r} missing from request")
        header_lines.append((name, ",".join(values)))
    return header_lines


def _compare(expected: str, given: str) -> None:
    # Bytes, because compare_digest raises TypeError on non-ASCII str.
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise AuthError("signature does not match")


def _authorization_fields(header: str) -> dict[str, str]:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError(f"Authorization header algorithm is {algorithm[:40]!r}, expected {ALGORITHM!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise AuthError(
                "malformed Authorization header, expected Credential=..., SignedHeaders=..., Signature=..."
            )
        if name in fields:
            raise AuthError(f"duplicate {name} in the Authorization header")
        fields[name] = value
    for name in _AUTHORIZATION_FIELDS:
        if not fields.get(name):
            raise AuthError(f"Authorization header without {name}")
    return fields


def presign_path(
    host_header: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    session_token: str | None = None,
    *,
    now: datetime,
    expires: int | None = None,
    token_position: Literal["after", "before_signature"] = "after",
    signed_headers: Iterable[str] = ("host",),
    extra_headers: Mapping[str, str] | None = None,
) -> str:
    """Presign `GET /mqtt` the way AWS IoT expects; return `/mqtt?X-Amz-...`.

    Parameters come in awscrt's order (the canonical query is sorted anyway). The session token is
    never signed: `token_position="after"` appends it after the signature (AWS browser SDK,
    aws4fetch), `"before_signature"` puts it just before it (awscrt, the AWS IoT Device SDK).
    Every name in `signed_headers` must be `host` or a key of `extra_headers`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    amz_date = now.astimezone(UTC).strftime(_DATE_FORMAT)
    scope = f"{amz_date[:8]}/{region}/{SERVICE}"
    headers = {"host": host_header}
    headers.update({k.lower(): v for k, v in (extra_headers or {}).items()})
    names = sorted({n.lower() for n in signed_headers})
    params = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key_id}/{scope}/aws4_request"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-SignedHeaders", ";".join(names)),
    ]
    if expires is not None:
        params.append(("X-Amz-Expires", str(expires)))
    header_lines = [(n, _trim(headers[n])) for n in names]
    signature = _signature(
        secret_access_key,
        amz_date,
        scope,
        _canonical_request("GET", "/mqtt", params, header_lines, _EMPTY_PAYLOAD_HASH),
    )
    token = [] if session_token is None else [(_TOKEN, session_token)]
    if token_position == "before_signature":
        query = [*params, *token, (_SIGNATURE, signature)]
    else:
        query = [*params, (_SIGNATURE, signature), *token]
    return "/mqtt?" + "&".join(f"{_encode(k)}={_encode(v)}" for k, v in query)


def _parse_query(raw_query: str) -> list[tuple[str, str]]:
    # Decode with unquote, not unquote_plus: SigV4 signers encode '+' as %2B, and a bare '+'
    # is a literal plus to AWS, not a space.
    pairs = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


def _auth_params(pairs: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("X-Amz-"):
            if key in found:
                raise AuthError(f"duplicate {key}")
            found[key] = value
    for key in _REQUIRED:
        if key not in found:
            raise AuthError(f"missing {key}")
    return found


def _parse_amz_date(text: str) -> datetime:
    reason = "malformed X-Amz-Date, expected yyyymmddThhmmssZ"
    if not _AMZ_DATE.fullmatch(text):
        raise AuthError(reason)
    try:
        return datetime.strptime(text, _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # a well-shaped but impossible date, e.g. month 13
        raise AuthError(reason) from None


def _check_time(
    signed_at: datetime,
    raw_expires: str | None,
    now: datetime,
    max_age: timedelta,
    clock_skew: timedelta,
) -> None:
    if signed_at - now > clock_skew:
        raise AuthError("X-Amz-Date in the future")
    if raw_expires is None:
        lifetime = max_age
    else:
        if not _SECONDS.fullmatch(raw_expires) or not 0 < int(raw_expires) <= _MAX_EXPIRES:
            raise AuthError(f"X-Amz-Expires must be an integer from 1 to {_MAX_EXPIRES}")
        lifetime = timedelta(seconds=int(raw_expires))
    if now > signed_at + lifetime:
        raise AuthError(f"request expired at {(signed_at + lifetime).isoformat()}")


def _header_values(headers: HeaderSource, name: str) -> list[str]:
    # websockets' Headers keeps repeated headers and looks up case-insensitively via get_all;
    # a plain dict may hold the name in any case. SigV4 joins repeated values with commas.
    get_all = getattr(headers, "get_all", None)
    if callable(get_all):
        values = list(get_all(name))
    elif isinstance(headers, Mapping):
        values = [v for k, v in headers.items() if k.lower() == name]
    else:
        values = []
    return [_trim(v) for v in values]


def _canonical_request(
    method: str,
    raw_path: str,
    pairs: list[tuple[str, str]],
    header_lines: list[tuple[str, str]],
    payload_hash: str,
) -> str:
    query = "&".join(f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in pairs))
    return "\n".join(
        [
            method,
            _canonical_uri(raw_path),
            query,
            "".join(f"{name}:{value}\n" for name, value in header_lines),
            ";".join(name for name, _ in header_lines),
            payload_hash,
        ]
    )


def _canonical_uri(raw_path: str) -> str:
    # AWS's signers (awscrt, botocore) normalise the path first: drop empty and '.' segments,
    # resolve '..', keep a trailing slash. Then every service but S3 encodes the already
    # encoded path once more, so '%' becomes '%25'.
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    normalised = "/" + "/".join(segments)
    if raw_path.endswith("/") and segments:
        normalised += "/"
    return quote(normalised, safe="/-_.~")


def _signature(secret: str, amz_date: str, scope: str, canonical_request: str) -> str:
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            amz_date,
            f"{scope}/aws4_request",
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in [*scope.split("/"), "aws4_request"]:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _trim(value: str) -> str:
    return re.sub(" +", " ", value.strip())
