"""ARNs of the emulated account, and the certificate a principal or policy target names.

AWS IoT names its resources `arn:aws:iot:<region>:<account>:cert/<certificate id>`, `.../thing/<name>`
and `.../policy/<name>`. The region is the one the caller signed for; the account is the
emulator's (`EmulatorConfig.account_id`). Principals the emulator can hold are X.509
certificates only (no Cognito identities, IAM users or thing groups); a certificate ARN is read
whatever its region and account say, as the emulator is one account in every region.
"""

from __future__ import annotations

import re

from emulator.errors import InvalidControlRequest

_CERTIFICATE_ARN = re.compile(r"arn:aws[a-z-]*:iot:[a-z0-9-]*:[0-9]{12}:cert/([0-9a-fA-F]{64})")


def arn(region: str, account_id: str, kind: str, name: str) -> str:
    return f"arn:aws:iot:{region}:{account_id}:{kind}/{name}"


def certificate_of(principal: str, member: str = "principal") -> str:
    """The certificate id in a certificate ARN; InvalidRequestException for anything else."""
    match = _CERTIFICATE_ARN.fullmatch(principal)
    if match is None:
        shown = principal if len(principal) <= 100 else principal[:97] + "..."
        raise InvalidControlRequest(
            f"{member} {shown!r} is not a certificate ARN (arn:aws:iot:<region>:<account>:cert/"
            "<64 hex digits>); the emulator's principals are X.509 certificates"
        )
    return match.group(1)
