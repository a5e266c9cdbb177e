"""The endpoint setting: an AWS data endpoint host name or a URL, and the connection it names."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

AuthMode = Literal["sigv4", "certificate"]
Transport = Literal["websockets", "tcp"]

# AWS IoT over TLS on 443 needs this ALPN protocol for X.509 client authentication (AWS IoT
# developer guide, device communication protocols).
ALPN_MQTT_CA = "x-amzn-mqtt-ca"

# `<prefix>-ats.iot.<region>.amazonaws.com` (also `.iot-fips.` and China's `.amazonaws.com.cn`).
_AWS_ENDPOINT = re.compile(
    r"^[a-z0-9-]+\.iot(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$"
)
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_SCHEMES: dict[str, tuple[Transport, bool, int | None]] = {
    # scheme: (transport, tls, default port; None = the URL must say)
    "wss": ("websockets", True, 443),
    "ws": ("websockets", False, None),
    "mqtts": ("tcp", True, 8883),
    "mqtt": ("tcp", False, None),
}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    transport: Transport
    tls: bool
    websocket_path: str
    alpn_protocols: tuple[str, ...]


def default_auth_mode(endpoint: str | None) -> AuthMode:
    scheme = endpoint.partition("://")[0].lower() if endpoint and "://" in endpoint else ""
    return "certificate" if scheme in ("mqtt", "mqtts") else "sigv4"


def region_of(endpoint: str | None) -> str | None:
    if not endpoint:
        return None
    host = urlsplit(endpoint).hostname if "://" in endpoint else endpoint
    match = _AWS_ENDPOINT.fullmatch((host or "").lower())
    return match["region"] if match else None


def parse_endpoint(endpoint: str, auth_mode: str, port: int | None) -> Endpoint:
    """The connection an endpoint names; ValueError says what is wrong with it."""
    if "://" not in endpoint:
        if not valid_host(endpoint):
            raise ValueError(
                f"PROVISIONER_IOT_ENDPOINT must be a host name (like "
                f"'abc123-ats.iot.eu-west-1.amazonaws.com') or a wss://, ws://, "
                f"mqtts:// or mqtt:// URL, got {endpoint!r}"
            )
        # An AWS data endpoint: SigV4 goes over WSS on 443, certificates over TLS on 8883.
        if auth_mode == "certificate":
            return _endpoint(endpoint, port or 8883, "tcp", True, "/mqtt", auth_mode)
        return _endpoint(endpoint, port or 443, "websockets", True, "/mqtt", auth_mode)
    url = urlsplit(endpoint)
    scheme = url.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"PROVISIONER_IOT_ENDPOINT scheme must be wss, ws, mqtts or mqtt, got {url.scheme!r}"
        )
    transport, tls, default_port = _SCHEMES[scheme]
    # Checked first, and the URL is not echoed until then: user info may hold a password.
    if "@" in url.netloc or url.query or url.fragment:
        raise ValueError(
            "PROVISIONER_IOT_ENDPOINT must not contain user info, a query or a "
            "fragment (credentials come from the AWS credential chain)"
        )
    try:
        url_port = url.port
    except ValueError:
        raise ValueError(f"PROVISIONER_IOT_ENDPOINT has an invalid port: {endpoint!r}") from None
    if not url.hostname or not valid_host(url.hostname):
        raise ValueError(f"PROVISIONER_IOT_ENDPOINT has no valid host: {endpoint!r}")
    if url_port is not None and port is not None and url_port != port:
        raise ValueError(
            f"PROVISIONER_IOT_PORT={port} contradicts the port {url_port} in PROVISIONER_IOT_ENDPOINT"
        )
    chosen = url_port or port or default_port
    if chosen is None:
        raise ValueError(
            f"PROVISIONER_IOT_ENDPOINT {scheme}:// needs an explicit port, "
            f"like {scheme}://{url.hostname}:1883"
        )
    path = url.path if url.path not in ("", "/") else "/mqtt"
    if transport == "tcp" and url.path not in ("", "/"):
        raise ValueError(f"PROVISIONER_IOT_ENDPOINT {scheme}:// takes no path, got {url.path!r}")
    return _endpoint(url.hostname, chosen, transport, tls, path, auth_mode)


def valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST.fullmatch(host))
    return True


def _endpoint(host: str, port: int, transport: Transport, tls: bool, path: str, auth_mode: str) -> Endpoint:
    alpn = (ALPN_MQTT_CA,) if auth_mode == "certificate" and tls and port == 443 else ()
    return Endpoint(host, port, transport, tls, path, alpn)
