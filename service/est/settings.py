"""The EST door's own setting, read once when the app is made: what `cacerts` answers.

    PROVISIONER_EST_CACERTS_FILE   PEM: the CA certificates issued certificates chain to (RFC 7030
                                   4.1.3), the issuing CA first. Unset: PROVISIONER_CA_FILE, the CA
                                   the service trusts for AWS IoT, which in local mode is the
                                   emulator's, the one that signs what the emulator issues. Against
                                   AWS IoT set it: AWS's server CA is not what signs device
                                   certificates.

The file is read and checked here, when the app is made, so that a wrong path or a file without
a certificate stops the service at start (SettingsError) instead of failing each `cacerts`.
It is kept apart from service.config so that the EST door brings its own: nothing outside it
reads this setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from service.config import Settings, SettingsError

CACERTS_VARIABLE = "PROVISIONER_EST_CACERTS_FILE"


@dataclass(frozen=True)
class EstSettings:
    cacerts: tuple[x509.Certificate, ...]  # empty: none configured (cacerts answers 404, saying so)
    cacerts_file: Path | None

    @classmethod
    def from_env(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> EstSettings:
        env = os.environ if environ is None else environ
        named = env.get(CACERTS_VARIABLE, "").strip()
        path = Path(named).expanduser() if named else settings.ca_file
        variable = CACERTS_VARIABLE if named else "PROVISIONER_CA_FILE"
        if path is None:
            return cls(cacerts=(), cacerts_file=None)
        try:
            certificates = tuple(x509.load_pem_x509_certificates(path.read_bytes()))
        except OSError as error:
            raise SettingsError([f"{variable}={str(path)!r} cannot be read: {error.strerror}"]) from None
        except ValueError:
            raise SettingsError(
                [f"{variable}={str(path)!r} holds no PEM certificate (EST's cacerts answers with it)"]
            ) from None
        return cls(cacerts=certificates, cacerts_file=path)
