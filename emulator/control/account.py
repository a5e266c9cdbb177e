"""What every operation handler is given: the emulated account's registry, CA and settings."""

from __future__ import annotations

from dataclasses import dataclass

from emulator.config import EmulatorConfig
from emulator.control.arns import arn
from emulator.control.inputs import Call
from emulator.registry import Registry
from emulator.security.pki import CertificateAuthority

# Page sizes when the caller names none. AWS documents 25 for ListCertificates; for the other
# listings it documents none, and the emulator uses the same.
DEFAULT_PAGE_SIZE = 25


@dataclass(frozen=True)
class Account:
    config: EmulatorConfig
    registry: Registry
    authority: CertificateAuthority

    def arn(self, call: Call, kind: str, name: str) -> str:
        return arn(call.region, self.config.account_id, kind, name)
