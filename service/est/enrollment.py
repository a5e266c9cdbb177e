"""A simpleenroll as the provision use case takes it: the label's template, the CSR checked, the
template's parameters taken from the CSR, and an Idempotency-Key the client never sends.

The label (`/.well-known/est/<label>/simpleenroll`) names the provisioning template. Without a
label, a key allowed exactly one template uses that one. The service keeps no list of AWS IoT's
templates: a label that cannot be a template name is refused here, one AWS IoT does not have is
refused by AWS IoT at RegisterThing (404, "unknown label").

For a caller with an API key the device's parameters come from the CSR's subject: `SerialNumber`
is its serialNumber attribute (2.5.4.5), else its common name. The key's scope then judges them
as it judges the JSON door's (a parameter rule, enrolled devices only). A device that presented
its certificate over mutual TLS gets its template and parameters from its enrollment group (its
device CA), as on the JSON door; the label, if any, picks the template among the CA's groups.

EST clients send no Idempotency-Key, and a client whose answer was lost sends the same CSR again
(RFC 7030 4.2.3 has it poll with the same request). So the door derives the key from the CSR's
SHA-256 and the label, scoped to the caller as every Idempotency-Key is (an API key, or the device
certificate): the retry gets the first
certificate back instead of a second one (within PROVISIONER_IDEMPOTENCY_TTL_HOURS). Without a
store there are no such records, and no key is derived.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AttributeOID, NameOID

from service.callers.devices.certificates import key_problem
from service.callers.idempotency import Idempotency
from service.callers.model import AnyCaller, Caller
from service.errors import InvalidInput, NotFound
from service.provisioning.request import Arrival, IdempotencyKey, ProvisionRequest
from service.text import problem

# AWS IoT's rule for a provisioning template's name.
LABEL = re.compile(r"^[0-9A-Za-z_-]{1,36}$")
SERIAL_PARAMETER = "SerialNumber"
MAX_VALUE_LENGTH = 2048  # the JSON door's bound on a parameter value (PROVISIONER_MAX_PARAMETER_VALUE)


def template_of(label: str | None, caller: Caller) -> str:
    """The template a label names, or the caller's only one when there is no label."""
    if label is not None:
        return checked_label(label)
    allowed = caller.scope.templates
    if allowed is not None and len(allowed) == 1:
        return allowed[0]
    raise NotFound(
        "Name the provisioning template as the EST label: /.well-known/est/<template>/simpleenroll "
        f"(API key {caller.key_id} may use {'any template' if allowed is None else 'several'})."
    )


def checked_label(label: str) -> str:
    if not LABEL.fullmatch(label):
        raise NotFound(
            "Unknown EST label: a label names a provisioning template, 1-36 of A-Z, a-z, 0-9, _ and -."
        )
    return label


def checked_csr(csr: x509.CertificateSigningRequest) -> None:
    """A CSR AWS IoT would take: signed by the key it carries, an RSA >= 2048 or P-256/384/521 key;
    and none that asks for a proof of possession this door cannot check."""
    try:
        signed = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput(
            "The CSR's key or signature algorithm is not one AWS IoT accepts (RSA of 2048 bits or "
            "more, or ECC on P-256, P-384 or P-521)."
        ) from None
    if not signed:
        raise InvalidInput(
            "The CSR's signature is not valid: a PKCS#10 must be signed by the private key of the "
            "public key it carries."
        )
    if _asks_for_tls_unique(csr):
        raise InvalidInput(
            "The CSR carries a challengePassword: RFC 7030's proof of possession bound to the TLS "
            "session (tls-unique). This server cannot check it (TLS ends at its proxy, and TLS 1.3 "
            "has no tls-unique), so it enrolls no CSR that relies on it: send the CSR without a "
            "challengePassword (libest: without -z)."
        )
    why = key_problem(key)
    if why is not None:
        raise InvalidInput(
            f"The CSR carries {why}; AWS IoT accepts RSA of 2048 bits or more, or ECC on P-256, "
            "P-384 or P-521."
        )


def _asks_for_tls_unique(csr: x509.CertificateSigningRequest) -> bool:
    try:
        csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD)
    except x509.AttributeNotFound:
        return False
    return True


def parameters_from_csr(csr: x509.CertificateSigningRequest) -> dict[str, str]:
    """The template parameters a CSR gives a caller with an API key."""
    for oid, name in ((NameOID.SERIAL_NUMBER, "serialNumber"), (NameOID.COMMON_NAME, "common name")):
        values = [a.value for a in csr.subject.get_attributes_for_oid(oid) if isinstance(a.value, str)]
        if not values:
            continue
        value = values[0]
        if not value or len(value) > MAX_VALUE_LENGTH or problem(value) or not value.isprintable():
            raise InvalidInput(
                f"The CSR subject's {name} cannot be the {SERIAL_PARAMETER} parameter: it must be "
                f"1-{MAX_VALUE_LENGTH} printable characters."
            )
        return {SERIAL_PARAMETER: value}
    raise InvalidInput(
        f"The CSR's subject has no serialNumber and no common name: the template's {SERIAL_PARAMETER} "
        "parameter comes from it (put the device's serial number in the subject, e.g. "
        "-subj /serialNumber=SN-0001 or /CN=SN-0001)."
    )


def provision_request(
    arrival: Arrival,
    caller: AnyCaller,
    template: str,
    parameters: dict[str, str],
    csr: x509.CertificateSigningRequest,
    *,
    idempotent: bool,
) -> ProvisionRequest:
    der = csr.public_bytes(serialization.Encoding.DER)
    idempotency = None
    if idempotent:
        digest = hashlib.sha256(der).hexdigest()
        same = Idempotency.digest({"est": "simpleenroll", "template": template, "csr": digest})
        idempotency = IdempotencyKey(f"est:{template}:{digest}", same)
    return ProvisionRequest(
        arrival=arrival,
        caller=caller,
        template=template,
        parameters=parameters,
        csr=csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        idempotency=idempotency,
    )
