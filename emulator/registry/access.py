"""Who may connect: AWS IoT lets a device in only with a certificate in the ACTIVE state.

UpdateCertificate's reference: "Devices cannot use a certificate that is not in the ACTIVE state
to reconnect." The broker asks at CONNECT, and again when the certificate changes.
"""

from __future__ import annotations

from emulator.registry.store import Registry


def connect_refusal(registry: Registry, certificate_id: str | None, *, require_active: bool) -> str | None:
    """Why a connection with this TLS client certificate is refused, or None.

    No certificate (plain TCP, WebSocket with SigV4) is not this rule's business. Without
    `require_active`, PENDING_ACTIVATION and unknown certificates are let in; INACTIVE and
    REVOKED never are.
    """
    if certificate_id is None:
        return None
    status = registry.certificate_status(certificate_id)
    if status in ("REVOKED", "INACTIVE"):
        return f"certificate {certificate_id[:12]}... is {status}"
    if require_active and status != "ACTIVE":
        return f"certificate {certificate_id[:12]}... is {status or 'unknown'}, not ACTIVE"
    return None
