"""The control plane's HTTP on the wire: what boto3 would never send (malformed JSON, unknown paths,
oversized or trickled bodies, broken HTTP, no signature) gets a precise AWS-shaped error, never a
500 and never a hang. Requests are signed by botocore's SigV4 signer and sent raw."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from iot_control import provision_device, send_raw, signed_request

from emulator import Emulator, EmulatorConfig
from emulator.config import HttpLimits


def raw_socket(emulator: Emulator) -> socket.socket:
    parts = urlsplit(emulator.urls["control"])
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_errors_carry_the_code_in_x_amzn_errortype_and_a_message(emulator: Emulator) -> None:
    answer = signed_request(emulator, "GET", "/things/nobody")
    assert answer.status == 404
    assert answer.error_type == "ResourceNotFoundException"
    assert answer.json() == {"message": "Thing nobody does not exist"}
    assert answer.headers["content-type"] == "application/json" and answer.headers["x-amzn-requestid"]


def test_malformed_json_is_invalid_request(emulator: Emulator, tmp_path: Path) -> None:
    device = provision_device(emulator, tmp_path, "MJ-1")
    path = "/target-policies/anything"
    for body, expected in (
        (b'{"target": ', "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object, got list"),
        (b"\xff\xfe", "request body is not UTF-8"),
        (json.dumps({"target": 7}).encode(), "target is required and must be a non-empty string"),
        (json.dumps({"target": "arn:nope"}).encode(), "is not a certificate ARN"),
    ):
        answer = signed_request(emulator, "POST", path, body, {"Content-Type": "application/json"})
        assert (answer.status, answer.error_type) == (400, "InvalidRequestException"), body
        assert expected in answer.json()["message"]
    target = json.dumps({"target": device.certificate_arn}).encode()
    assert signed_request(emulator, "POST", path, target).status == 200  # DetachPolicy of nothing


def test_inputs_are_checked_against_botocore_model(emulator: Emulator) -> None:
    long_name = "x" * 129
    cases = {
        f"/things/{long_name}": "Member must have length less than or equal to 128",
        "/things/bad%20name": "Member must satisfy regular expression pattern: [a-zA-Z0-9:_-]+",
        "/certificates/abc": "Member must have length greater than or equal to 64",
        "/things?maxResults=0": "Member must have value greater than or equal to 1",
        "/things?maxResults=251": "Member must have value less than or equal to 250",
        "/things?maxResults=ten": "Member must be an integer",
        "/things?nextToken=not-a-token": "nextToken is not a token this API returned",
        "/certificates?marker=Ingi": "marker is not a marker this API returned",
        "/certificates?isAscendingOrder=maybe": "Member must be a boolean",
        "/things?thingTypeName=a&thingTypeName=b": "query parameter thingTypeName given 2 times",
        "/things/a%ZZb": "Member must satisfy regular expression pattern",
        "/things/%C3%28": "path is not UTF-8 once percent-decoded",
    }
    for path, expected in cases.items():
        answer = signed_request(emulator, "GET", path)
        assert (answer.status, answer.error_type) == (400, "InvalidRequestException"), path
        assert expected in answer.json()["message"], (path, answer.json())
    answer = signed_request(emulator, "PUT", "/certificates/" + "ab" * 32 + "?newStatus=SUSPENDED")
    assert "Member must satisfy enum value set: [ACTIVE, INACTIVE, REVOKED" in answer.json()["message"]


def test_unknown_paths_and_methods_name_what_is_served(emulator: Emulator) -> None:
    answer = signed_request(emulator, "GET", "/thing-groups/line-3")
    assert (answer.status, answer.error_type) == (404, "UnknownOperationException")
    assert "the emulator serves DescribeEndpoint" in answer.json()["message"]
    answer = signed_request(emulator, "PATCH", "/things/t1")
    assert (answer.status, answer.error_type) == (404, "UnknownOperationException")
    assert "GET (DescribeThing), DELETE (DeleteThing)" in answer.json()["message"]


def test_requests_without_a_valid_signature_learn_nothing(emulator: Emulator) -> None:
    unsigned = signed_request(emulator, "GET", "/thing-groups/x", sign=False)
    assert (unsigned.status, unsigned.error_type) == (403, "MissingAuthenticationTokenException")
    assert unsigned.json() == {"message": "Missing Authentication Token"}
    forged = signed_request(emulator, "GET", "/things", secret="guessed")
    assert (forged.status, forged.error_type) == (403, "InvalidSignatureException")
    assert "(signature does not match)" in forged.json()["message"]
    # A signature over other bytes than those sent: the body is part of the signed request.
    good = signed_request(emulator, "GET", "/things")
    assert good.status == 200
    headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/iot/aws4_request"}
    broken = send_raw(emulator, "GET", "/things", b"", {**headers, "X-Amz-Date": "20260101T000000Z"})
    assert (broken.status, broken.error_type) == (403, "InvalidSignatureException")
    assert (
        "malformed Authorization header" in broken.json()["message"] or "without" in broken.json()["message"]
    )


def test_a_signed_label_with_reserved_characters_reaches_its_route(
    emulator: Emulator, tmp_path: Path
) -> None:
    device = provision_device(emulator, tmp_path, "RC-1")
    # ListAttachedPolicies takes an ARN as a path label: ':' and '/' percent-encoded in one segment.
    answer = signed_request(emulator, "POST", "/attached-policies/" + quote(device.certificate_arn, safe=""))
    assert answer.status == 200 and len(answer.json()["policies"]) == 1


def test_oversized_bodies_are_refused_before_or_while_reading(emulator: Emulator) -> None:
    limit = emulator.config.http_limits.max_body_bytes
    with raw_socket(emulator) as sock:
        sock.sendall(
            b"POST /certificates HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (limit + 1)
        )  # and no body: refused from the header alone
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"x-amzn-ErrorType: RequestEntityTooLargeException" in answer
    assert b"exceeds the limit of %d bytes" % limit in answer

    chunk = b"a" * 16384
    with raw_socket(emulator) as sock:
        sock.sendall(b"POST /certificates HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(limit // len(chunk) + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_broken_http_gets_400_and_a_closed_connection(emulator: Emulator) -> None:
    for request in (
        b"GET /things HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /things HTTP/1.1\r\nBad Header Line\r\n\r\n",
    ):
        with raw_socket(emulator) as sock:
            sock.sendall(request)
            answer = read_all(sock)  # returns only because the server closes
        assert answer.startswith(b"HTTP/1.1 400 "), request
        assert b"malformed HTTP request" in answer


def test_one_connection_serves_requests_in_turn(emulator: Emulator) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY

    data = b""
    for path in ("/things", "/endpoint", "/certificates"):
        request = AWSRequest(method="GET", url=emulator.urls["control"] + path)
        SigV4Auth(Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY), "iot", "us-east-1").add_auth(
            request
        )
        host = emulator.urls["control"].removeprefix("http://")
        head = f"Host: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        data += f"GET {path} HTTP/1.1\r\n{head}\r\n".encode()
    with raw_socket(emulator) as sock:
        sock.sendall(data)  # pipelined: answered in order
        sock.shutdown(socket.SHUT_WR)
        answers = read_all(sock)
    assert answers.count(b"HTTP/1.1 200 OK") == 3
    assert answers.index(b'"things"') < answers.index(b'"endpointAddress"') < answers.index(b'"certificates"')


def test_slow_clients_are_cut_off_with_408(tmp_path: Path) -> None:
    limits = HttpLimits(idle_timeout=0.5, request_timeout=0.5)
    config = EmulatorConfig(data_dir=tmp_path, key_algorithm="ec", key_pool_size=1, http_limits=limits)
    with Emulator(config, mqtt_port=None, mqtts_port=None, ws_port=None, wss_port=None) as emulator:
        started = time.monotonic()
        with raw_socket(emulator) as sock:
            sock.sendall(b"GET /things HTTP/1.1\r\nHost: x\r\n")  # the head never ends
            head = read_all(sock)
        assert head.startswith(b"HTTP/1.1 408 ") and b"RequestTimeoutException" in head
        with raw_socket(emulator) as sock:
            sock.sendall(b"POST /certificates HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            body = read_all(sock)
        assert body.startswith(b"HTTP/1.1 408 ") and b"not received within 0.5 s" in body
        with raw_socket(emulator) as sock:
            assert read_all(sock) == b""  # an idle connection is closed quietly
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("size", [20 * 1024])
def test_oversized_head_gets_431(emulator: Emulator, size: int) -> None:
    with raw_socket(emulator) as sock:
        sock.sendall(b"GET /things HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"RequestHeaderFieldsTooLargeException" in answer


def test_no_route_answers_garbage_with_a_server_error(emulator: Emulator) -> None:
    from emulator.control.routes import ROUTES

    labels = [
        "x" * 300,
        "%FF%FE",
        "..",
        "arn%3Aaws%3Aiot%3Aus-east-1%3A000000000000%3Acert%2F" + "ab" * 32,
        "0x" + "f" * 62,
    ]
    queries = [
        "",
        "?maxResults=-1&nextToken=%%%",
        "?pageSize=1&marker=" + "A" * 2000,
        "?newStatus=&forceDelete=yes&setAsActive=1&expectedVersion=99999999999999999999",
        "?thingPrincipalType=SOMETIMES&endpointType=" + "e" * 200 + "&attributeValue=v",
    ]
    bodies = [b"", b"null", b'{"target": null, "certificateSigningRequest": 5}', b"{" * 5000, b'"\\ud800"']
    for route in ROUTES:
        for n, label in enumerate(labels):
            path = "/" + "/".join(label if part.startswith("{") else part for part in route.segments)
            answer = signed_request(emulator, route.method, path + queries[n], bodies[n])
            assert answer.status < 500, (route.operation, path, answer.status, answer.body[:200])
            assert answer.status == 200 or answer.error_type, (route.operation, path)
