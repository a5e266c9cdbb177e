"""Certificates: DescribeCertificate, ListCertificates, UpdateCertificate, DeleteCertificate and
CreateCertificateFromCsr (the control plane's, not fleet provisioning's MQTT one).

AWS's rules for status and deletion are the registry's (`emulator/registry/lifecycle.py`); the
listeners act on a certificate that leaves ACTIVE (`Emulator`), whichever plane changed it.
"""

from __future__ import annotations

import uuid
from typing import Any

from cryptography import x509

from emulator.control.account import DEFAULT_PAGE_SIZE, Account
from emulator.control.inputs import CERTIFICATE_ID, MARKER, Call, encode_token
from emulator.errors import InvalidControlRequest, ProvisioningError, ResourceNotFound
from emulator.security import pki

# CertificateStatus in botocore's model: UpdateCertificate takes any of these on the wire and
# refuses the ones developers may not set (the registry says which).
CERTIFICATE_STATUSES = (
    "ACTIVE",
    "INACTIVE",
    "REVOKED",
    "PENDING_TRANSFER",
    "REGISTER_INACTIVE",
    "PENDING_ACTIVATION",
)
_GENERATIONS = uuid.UUID("6f1d7f0c-54a4-4a55-9d0b-3a3f8d2f1c11")


def describe_certificate(account: Account, call: Call) -> dict[str, Any]:
    certificate_id = call.label("certificateId", CERTIFICATE_ID)
    record = account.registry.pages.certificate_record(certificate_id)
    if record is None:
        raise ResourceNotFound(f"Certificate {certificate_id} does not exist")
    certificate = x509.load_pem_x509_certificate(record["certificatePem"].encode())
    return {
        "certificateDescription": {
            "certificateArn": account.arn(call, "cert", certificate_id),
            "certificateId": certificate_id,
            "status": record["status"],
            "certificatePem": record["certificatePem"],
            "ownedBy": account.config.account_id,
            "creationDate": record["createdAt"],
            "lastModifiedDate": record["updatedAt"],
            "customerVersion": record["customerVersion"],
            "transferData": {},
            # Changes with every change of the certificate, as AWS's does.
            "generationId": str(uuid.uuid5(_GENERATIONS, f"{certificate_id}/{record['customerVersion']}")),
            "validity": {
                "notBefore": certificate.not_valid_before_utc.timestamp(),
                "notAfter": certificate.not_valid_after_utc.timestamp(),
            },
            "certificateMode": "DEFAULT",
        }
    }


def list_certificates(account: Account, call: Call) -> dict[str, Any]:
    limit = call.page_size("pageSize", DEFAULT_PAGE_SIZE)
    ascending = bool(call.query_bool("isAscendingOrder"))
    after = call.token("marker", MARKER)
    if after is not None and not (
        isinstance(after, list)
        and len(after) == 2
        and isinstance(after[0], int | float)
        and isinstance(after[1], str)
    ):
        raise InvalidControlRequest("marker is not a marker this API returned")
    records = account.registry.pages.certificates_page(
        None if after is None else (after[0], after[1]), limit + 1, ascending=ascending
    )
    answer: dict[str, Any] = {
        "certificates": [
            {
                "certificateArn": account.arn(call, "cert", record["certificateId"]),
                "certificateId": record["certificateId"],
                "status": record["status"],
                "certificateMode": "DEFAULT",
                "creationDate": record["createdAt"],
            }
            for record in records[:limit]
        ]
    }
    if len(records) > limit:
        last = records[limit - 1]
        answer["nextMarker"] = encode_token([last["createdAt"], last["certificateId"]])
    return answer


def update_certificate(account: Account, call: Call) -> None:
    certificate_id = call.label("certificateId", CERTIFICATE_ID)
    new_status = call.query_enum("newStatus", CERTIFICATE_STATUSES)
    if new_status is None:
        raise InvalidControlRequest("newStatus is required")
    account.registry.lifecycle.update_certificate(certificate_id, new_status)


def delete_certificate(account: Account, call: Call) -> None:
    certificate_id = call.label("certificateId", CERTIFICATE_ID)
    account.registry.lifecycle.delete_certificate(
        certificate_id, force_delete=bool(call.query_bool("forceDelete"))
    )


def create_certificate_from_csr(account: Account, call: Call) -> dict[str, Any]:
    """AWS issues the certificate ACTIVE with `setAsActive=true`, INACTIVE otherwise."""
    set_as_active = bool(call.query_bool("setAsActive"))
    try:
        csr = pki.load_csr(call.body_text("certificateSigningRequest"))
    except ProvisioningError as exc:  # the CSR checks are shared with fleet provisioning
        raise InvalidControlRequest(exc.message) from None
    certificate = account.authority.issue(csr.public_key())
    certificate_id = pki.certificate_id(certificate)
    certificate_pem = pki.pem(certificate)
    account.registry.add_certificate(
        certificate_id,
        certificate_pem,
        status="ACTIVE" if set_as_active else "INACTIVE",
        owner="control-plane",
    )
    return {
        "certificateArn": account.arn(call, "cert", certificate_id),
        "certificateId": certificate_id,
        "certificatePem": certificate_pem,
    }
