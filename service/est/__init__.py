"""The EST front door (RFC 7030): a second door into the same provision use case as POST /provision.

    codec.py       EST's bodies: PKCS#10 in, certs-only PKCS#7 and CsrAttrs out, base64
    auth.py        the caller: an API key as HTTP Basic or Bearer
    enrollment.py  a simpleenroll as a ProvisionRequest: template from the label, parameters and
                   an Idempotency-Key from the CSR
    answers.py     certificates as PKCS#7, refusals as text (RFC 7030's statuses)
    door.py        the routes under /.well-known/est/
    settings.py    what cacerts answers (PROVISIONER_EST_CACERTS_FILE)

It imports nothing of service.http (and service.http nothing of it): both stand on the use case
(service.provisioning), the callers (service.callers) and the error tree (service.errors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from service.config import Settings


def init_app(app: Flask, settings: Settings) -> None:
    """Register the EST door on `app`; its setting is read (and checked) now."""
    from service.est import door
    from service.est.settings import EstSettings

    door.init_app(app, EstSettings.from_env(settings))
