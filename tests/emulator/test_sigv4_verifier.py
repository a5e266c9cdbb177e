"""The emulator's SigV4 check of the WebSocket upgrade, pinned to AWS-signed vectors."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from repository import TEST_DATA
from websockets.datastructures import Headers

from emulator.errors import AuthError
from emulator.security.sigv4 import Identity, presign_path, verify_presigned_request

VECTORS = json.loads((TEST_DATA / "sigv4-vectors.json").read_text())
ACCEPT = [c for c in VECTORS["cases"] if c["expect"] == "accept"]
REJECT = [c for c in VECTORS["cases"] if c["expect"] == "reject"]
AWSCRT = [c for c in ACCEPT if c["signer"].startswith("awscrt")]
HOST = "a1b2c3d4e5f6g7-ats.iot.ap-northeast-2.amazonaws.com"
REGION = "ap-northeast-2"
AK, SK = "ASIAEXAMPLETEMP", "tempSecretKeyExample/+=abc"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//session+token/with=chars=="
T0 = datetime(2026, 11, 26, 7, 15, tzinfo=UTC)


def _case_id(case: dict) -> str:
    signed = re.search(r"X-Amz-SignedHeaders=([^&]*)", case["signedPath"])
    token = "token" if case["sessionToken"] else "no-token"
    return f"{case['host']}-{signed.group(1) if signed else '?'}-{token}-{case['signer'][:6]}"


def _at(case: dict) -> datetime:
    return datetime.strptime(case["time"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _verify(path: str, headers=None, *, now: datetime = T0, secrets=None, **kwargs) -> Identity:
    return verify_presigned_request(
        path,
        {"Host": HOST} if headers is None else headers,
        {AK: SK} if secrets is None else secrets,
        now=now,
        **kwargs,
    )


def _presigned(**kwargs) -> str:
    return presign_path(HOST, REGION, AK, SK, TOKEN, now=T0, **kwargs)


@pytest.mark.parametrize("case", ACCEPT, ids=_case_id)
def test_accepts_every_aws_signed_vector_at_its_time(case):
    identity = verify_presigned_request(
        case["signedPath"],
        case["headers"],
        {case["accessKeyId"]: case["secretAccessKey"]},
        now=_at(case),
    )
    assert identity == Identity(access_key_id=case["accessKeyId"], region=case["region"])


@pytest.mark.parametrize("case", REJECT, ids=_case_id)
def test_refuses_vector_whose_session_token_was_signed(case):
    with pytest.raises(AuthError, match="signature does not match"):
        verify_presigned_request(
            case["signedPath"],
            case["headers"],
            {case["accessKeyId"]: case["secretAccessKey"]},
            now=_at(case),
        )


def test_refuses_wrong_secret():
    with pytest.raises(AuthError, match="signature does not match"):
        _verify(_presigned(), secrets={AK: SK + "x"})


def test_refuses_unknown_access_key_id():
    with pytest.raises(AuthError, match="unknown access key id"):
        _verify(_presigned(), secrets={"AKIDOTHER": SK})


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: p + "&clientId=intruder",
        lambda p: p.replace("%2Fap-northeast-2%2F", "%2Fus-east-1%2F"),
        lambda p: p.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host&X-Amz-Expires=60"),
        lambda p: p.replace("/mqtt?", "/other?"),
    ],
    ids=["extra-param", "other-region", "added-expires", "other-path"],
)
def test_refuses_tampered_request(tamper):
    with pytest.raises(AuthError, match="signature does not match"):
        _verify(tamper(_presigned()))


def test_refuses_host_other_than_the_signed_one():
    with pytest.raises(AuthError, match="signature does not match"):
        _verify(_presigned(), {"Host": "evil.example.com"})


def test_refuses_stale_date_without_expires():
    path = _presigned()
    assert _verify(path, now=T0 + timedelta(minutes=15))
    with pytest.raises(AuthError, match="request expired at 2026-11-26T07:30:00"):
        _verify(path, now=T0 + timedelta(minutes=16))


def test_honours_expires_accepting_within_and_refusing_after():
    path = _presigned(expires=3600)
    assert _verify(path, now=T0 + timedelta(minutes=59))
    with pytest.raises(AuthError, match="request expired at 2026-11-26T08:15:00"):
        _verify(path, now=T0 + timedelta(minutes=61))


def test_refuses_expires_longer_than_a_week():
    with pytest.raises(AuthError, match="X-Amz-Expires must be an integer from 1 to 604800"):
        _verify(_presigned(expires=604801))


def test_refuses_date_in_the_future_beyond_clock_skew():
    path = _presigned()
    assert _verify(path, now=T0 - timedelta(minutes=5))
    with pytest.raises(AuthError, match="X-Amz-Date in the future"):
        _verify(path, now=T0 - timedelta(minutes=6))


def test_refuses_credential_scope_for_another_service():
    path = _presigned().replace("%2Fiotdevicegateway%2F", "%2Fs3%2F")
    with pytest.raises(AuthError, match="credential scope service is 's3', expected 'iotdevicegateway'"):
        _verify(path)


def test_refuses_credential_scope_day_other_than_x_amz_date_day():
    path = _presigned().replace("%2F20261126%2F", "%2F20261125%2F")
    with pytest.raises(AuthError, match="credential scope date does not match X-Amz-Date"):
        _verify(path)


def test_refuses_algorithm_other_than_hmac_sha256():
    path = _presigned().replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
    with pytest.raises(AuthError, match="X-Amz-Algorithm is 'AWS4-ECDSA-P256-SHA256'"):
        _verify(path)


@pytest.mark.parametrize(
    "param",
    ["X-Amz-Signature", "X-Amz-Date", "X-Amz-Credential", "X-Amz-Algorithm", "X-Amz-SignedHeaders"],
)
def test_refuses_request_missing_an_auth_parameter(param):
    path = re.sub(rf"&?{param}=[^&]*", "", _presigned())
    with pytest.raises(AuthError, match=f"missing {param}"):
        _verify(path)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (
            lambda p: re.sub("X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=%C3%A9", p),
            "signature does not match",
        ),
        (lambda p: p.replace("T071500Z", "T71500Z"), "malformed X-Amz-Date"),
        (lambda p: p + "&X-Amz-Expires=%C2%B2", "X-Amz-Expires must be an integer"),
        (lambda p: p.replace("%2Faws4_request", ""), "malformed X-Amz-Credential"),
    ],
    ids=["non-ascii-signature", "short-date", "non-ascii-digit-expires", "short-credential"],
)
def test_refuses_malformed_auth_parameters_with_auth_error(tamper, reason):
    with pytest.raises(AuthError, match=reason):
        _verify(tamper(_presigned()))


def test_refuses_duplicated_signature_parameter():
    with pytest.raises(AuthError, match="duplicate X-Amz-Signature"):
        _verify(_presigned() + "&X-Amz-Signature=" + "0" * 64)


def test_accepts_token_appended_after_signature_by_botocore():
    # botocore puts a token inside the signed query, which AWS IoT refuses; browser-style
    # clients therefore sign token-less credentials and append the token afterwards.
    request = AWSRequest(method="GET", url=f"https://{HOST}/mqtt", headers={"Host": HOST})
    SigV4QueryAuth(Credentials(AK, SK), "iotdevicegateway", REGION, expires=300).add_auth(request)
    path = request.url.removeprefix(f"https://{HOST}")
    path += "&X-Amz-Security-Token=" + quote(TOKEN, safe="")
    assert "X-Amz-Expires=300" in path
    assert _verify(path, now=datetime.now(UTC)) == Identity(AK, REGION)


def test_refuses_request_missing_a_signed_header():
    case = next(c for c in AWSCRT if "connection%3Bhost" in c["signedPath"])
    with pytest.raises(AuthError, match="signed header 'connection' missing from request"):
        verify_presigned_request(
            case["signedPath"],
            {"Host": case["host"]},
            {case["accessKeyId"]: case["secretAccessKey"]},
            now=_at(case),
        )


def test_refuses_signed_headers_without_host():
    path = _presigned(signed_headers=("connection",), extra_headers={"Connection": "Upgrade"})
    with pytest.raises(AuthError, match="X-Amz-SignedHeaders must include 'host'"):
        _verify(path, {"Host": HOST, "Connection": "Upgrade"})


@pytest.mark.parametrize(
    "headers",
    [
        {"HOST": HOST, "connection": "Upgrade"},
        {"host": f"  {HOST} ", "CONNECTION": "  Upgrade"},
        Headers([("Host", HOST), ("Connection", "Upgrade"), ("Upgrade", "websocket")]),
    ],
    ids=["dict-upper", "dict-untrimmed", "websockets-headers"],
)
def test_looks_up_signed_headers_case_insensitively(headers):
    path = _presigned(signed_headers=("host", "connection"), extra_headers={"Connection": "Upgrade"})
    assert _verify(path, headers) == Identity(AK, REGION)


def test_refusal_reasons_never_reveal_secret_token_or_signature():
    path = _presigned(token_position="before_signature")
    attempts = [
        lambda: _verify(path, secrets={AK: SK + "x"}),
        lambda: _verify(path + "&clientId=x"),
        lambda: _verify(path, now=T0 + timedelta(hours=1)),
        lambda: _verify(path, secrets={}),
        lambda: _verify(path, {"Host": "other"}),
    ]
    for attempt in attempts:
        with pytest.raises(AuthError) as refused:
            attempt()
        reason = str(refused.value)
        for secret in (SK, TOKEN, quote(TOKEN, safe="")):
            assert secret not in reason
        assert not re.search(r"[0-9a-f]{64}", reason), reason


@pytest.mark.parametrize("token_position", ["after", "before_signature"])
@pytest.mark.parametrize("expires", [None, 900])
def test_presign_path_round_trips_in_both_token_positions(token_position, expires):
    path = _presigned(token_position=token_position, expires=expires)
    names = [p.split("=")[0] for p in path.split("?")[1].split("&")]
    token_at, signature_at = names.index("X-Amz-Security-Token"), names.index("X-Amz-Signature")
    assert (token_at > signature_at) == (token_position == "after")
    assert _verify(path, now=T0 + timedelta(minutes=10)) == Identity(AK, REGION)


@pytest.mark.parametrize("case", ACCEPT, ids=_case_id)
def test_presign_path_reproduces_aws_signed_vectors(case):
    # awscrt puts the token just before the signature; the browser-style vector appends it.
    position = "before_signature" if case in AWSCRT else "after"
    signed = re.search(r"X-Amz-SignedHeaders=([^&]*)", case["signedPath"]).group(1)
    path = presign_path(
        case["host"],
        case["region"],
        case["accessKeyId"],
        case["secretAccessKey"],
        case["sessionToken"],
        now=_at(case),
        token_position=position,
        signed_headers=signed.split("%3B"),
        extra_headers=case["headers"],
    )
    assert path == case["signedPath"]
