"""The client certificate a request presented, and the device caller it proves: what every front
door that takes device certificates calls (the JSON door, service.http.provision; EST,
service.est). It knows no Flask: it reads the WSGI environ.

How a door uses it, per request:

    devices: DeviceCallers = current_app.extensions["device_callers"]   # one per app (create_app)
    chain = devices.presented(request.environ)    # bytes (PEM or DER), or None: no certificate
    if chain is not None:
        caller = devices.caller(chain, template=label_or_None)   # a DeviceCaller, or raises a
                                                                 # DeviceRefused (403, its own type)
        request = ProvisionRequest(caller=caller,
                                   template=caller.identity.template,
                                   parameters=caller.identity.parameters_with(body_parameters),
                                   ...)                          # InvalidInput 422 on an override
        if csr is not None:
            require_new_key(caller, csr)         # OperationalKeyReused (422): the CSR carries the
                                                 # device certificate's own key

A DeviceRefused carries `certificate` (issuer, serial, fingerprint; never a key): hand it to
`Provisioning.unreadable(arrival, None, error)`, which writes it to the audit trail.

Where the certificate comes from. The TLS listener is nginx (`ssl_verify_client optional_no_ca`:
it asks every client for a certificate and checks none; the service does, so a CA registered at
run time is trusted at once, with no reload). nginx passes the certificate it got, URL-encoded
PEM, in the `X-Client-Certificate` header, which it sets on every request (empty without one), so
a client's own header never reaches the service. The header is believed only on a connection
from that nginx: every connection with PROVISIONER_BEHIND_PROXY (the production shape, where
nothing else reaches gunicorn), or one that came in on PROVISIONER_PROXY_SOCKET (`make run`,
where gunicorn also serves plain HTTP itself). A request sent straight to gunicorn cannot forge
it. A WSGI server that terminated TLS itself (gunicorn with --certfile) gives the certificate of
its TLS socket instead; nginx and that socket give the device certificate alone, so a device
CA is registered with the intermediates between it and its devices.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from cryptography import x509

from service.callers.devices import Trust
from service.callers.devices import require_new_key as _require_new_key
from service.callers.devices.certificates import MAX_PRESENTED_BYTES
from service.callers.model import DeviceCaller
from service.config import Settings
from service.errors import DeviceChainTooLong
from service.store import Store

CERTIFICATE_HEADER = "X-Client-Certificate"
_ENVIRON_KEY = "HTTP_X_CLIENT_CERTIFICATE"
# URL-encoding at most triples a PEM's length.
MAX_HEADER_LENGTH = 3 * MAX_PRESENTED_BYTES
EXTENSION = "device_callers"


def from_proxy(environ: Mapping[str, Any], settings: Settings) -> bool:
    """Whether this request came through the TLS front (nginx): every request does behind the
    proxy; else only one on PROVISIONER_PROXY_SOCKET."""
    if settings.behind_proxy:
        return True
    if settings.proxy_socket is None:
        return False
    connection = environ.get("gunicorn.socket")
    if not isinstance(connection, socket.socket) or connection.family != socket.AF_UNIX:
        return False
    try:
        return bool(connection.getsockname() == str(settings.proxy_socket))
    except OSError:
        return False


def presented_chain(environ: Mapping[str, Any], settings: Settings) -> bytes | None:
    """The client certificate this request presented (PEM from nginx, DER from a TLS socket), or
    None when it presented none. DeviceChainTooLong when nginx passed more than a chain can be."""
    if from_proxy(environ, settings):
        value = environ.get(_ENVIRON_KEY) or ""
        if not value:
            return None
        if len(value) > MAX_HEADER_LENGTH:
            raise DeviceChainTooLong(f"the presented client certificate is over {MAX_PRESENTED_BYTES} bytes")
        return unquote_to_bytes(value)
    connection = environ.get("gunicorn.socket")
    if isinstance(connection, ssl.SSLSocket):
        return connection.getpeercert(binary_form=True) or None
    return None


class _StoreCas:
    """Trust's source: this worker's store, asked for when a refresh needs it (after the fork)."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store

    def revisions(self) -> dict[str, int]:
        return self._store().device_cas.revisions()

    def material(self, ca_id: str) -> Any:
        return self._store().device_cas.material(ca_id)


class DeviceCallers:
    """The device callers of one app: its registered device CAs (`Trust`, refreshed from the
    store every 2 s, so a CA registered, a device blocked or a CRL loaded reaches every worker
    within that time) and the settings that say which requests came through the TLS front."""

    def __init__(self, settings: Settings, store: Callable[[], Store], *, trust: Trust | None = None) -> None:
        self._settings = settings
        self.trust = trust if trust is not None else Trust(_StoreCas(store))

    def presented(self, environ: Mapping[str, Any]) -> bytes | None:
        return presented_chain(environ, self._settings)

    def caller(
        self, chain: bytes | str, *, template: str | None = None, now: datetime | None = None
    ) -> DeviceCaller:
        """The device caller `chain` proves, or the DeviceRefused that says why not. `template`
        (an EST label, a request's templateName) narrows the groups its CA is registered for."""
        identity = self.trust.verify(chain, now=now or datetime.now(UTC), template=template)
        return DeviceCaller(identity)


def require_new_key(caller: DeviceCaller, csr: str | bytes | x509.CertificateSigningRequest) -> None:
    """OperationalKeyReused (422) when the CSR (PEM, DER or parsed) carries the key of the
    device's certificate: the operational key must be made new on the device."""
    if isinstance(csr, str):
        csr = csr.encode()
    if isinstance(csr, bytes):
        csr = (
            x509.load_pem_x509_csr(csr) if csr.lstrip().startswith(b"-----") else x509.load_der_x509_csr(csr)
        )
    _require_new_key(caller.identity.public_key, csr)
