"""SigV4 query-string verification for the MQTT-over-WebSocket upgrade.

AWS IoT Core authenticates `wss://<endpoint>/mqtt` with a SigV4 *presigned* query string
(https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html, MQTT over WebSocket):
service `iotdevicegateway`, region from the credential scope, payload hash of the empty body.
The session token of temporary credentials is never part of the signed query, wherever it
stands in the URL (awscrt puts it just before the signature, browser signers append it after),
so it is left out of the canonical query here.

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
from typing import Literal
from urllib.parse import quote, unquote

from .errors import AuthError

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "iotdevicegateway"
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
    scope_parts = auth["X-Amz-Credential"].split("/")
    if len(scope_parts) != 5 or scope_parts[4] != "aws4_request":
        raise AuthError(
            "malformed X-Amz-Credential, expected <key>/<yyyymmdd>/<region>/<service>/aws4_request"
        )
    access_key_id, scope_day, region, scope_service, _ = scope_parts
    if scope_service != service:
        raise AuthError(f"credential scope service is {scope_service!r}, expected {service!r}")
    signed_at = _parse_amz_date(auth["X-Amz-Date"])
    if scope_day != auth["X-Amz-Date"][:8]:
        raise AuthError("credential scope date does not match X-Amz-Date")
    _check_time(signed_at, auth.get("X-Amz-Expires"), now, max_age_without_expires, clock_skew)

    secret = secrets.get(access_key_id)
    if secret is None:
        raise AuthError("unknown access key id")
    signed_names = auth["X-Amz-SignedHeaders"].split(";")
    if "host" not in signed_names:
        raise AuthError("X-Amz-SignedHeaders must include 'host'")
    header_lines = []
    for name in signed_names:
        values = _header_values(headers, name)
        if not values:
            raise AuthError(f"signed header {name!r} missing from request")
        header_lines.append((name, ",".join(values)))

    unsigned = {_SIGNATURE, _TOKEN}
    signed_pairs = [(k, v) for k, v in pairs if k not in unsigned]
    expected = _signature(
        secret,
        auth["X-Amz-Date"],
        f"{scope_day}/{region}/{scope_service}",
        _canonical_request(raw_path, signed_pairs, header_lines),
    )
    # Bytes, because compare_digest raises TypeError on non-ASCII str.
    if not hmac.compare_digest(expected.encode(), auth[_SIGNATURE].encode()):
        raise AuthError("signature does not match")
    return Identity(access_key_id=access_key_id, region=region)


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
        secret_access_key, amz_date, scope, _canonical_request("/mqtt", params, header_lines)
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


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    # websockets' Headers keeps repeated headers and looks up case-insensitively via get_all;
    # a plain dict may hold the name in any case. SigV4 joins repeated values with commas.
    get_all = getattr(headers, "get_all", None)
    if callable(get_all):
        values = list(get_all(name))
    else:
        values = [v for k, v in headers.items() if k.lower() == name]
    return [_trim(v) for v in values]


def _canonical_request(
    raw_path: str, pairs: list[tuple[str, str]], header_lines: list[tuple[str, str]]
) -> str:
    query = "&".join(f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in pairs))
    return "\n".join(
        [
            "GET",
            _canonical_uri(raw_path),
            query,
            "".join(f"{name}:{value}\n" for name, value in header_lines),
            ";".join(name for name, _ in header_lines),
            _EMPTY_PAYLOAD_HASH,
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
