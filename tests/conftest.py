"""Shared fixtures: a real emulator on free loopback ports, and device-side key material."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator import Emulator


@pytest.fixture(scope="session")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    # EC keys for CreateKeysAndCertificate keep the suite fast; RSA is covered on its own.
    emulator = Emulator(data_dir=tmp_path_factory.mktemp("emulator"), key_algorithm="ec",
                        key_pool_size=2).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(shared_emulator: Emulator) -> Iterator[Emulator]:
    """The shared emulator with an empty registry and no faults."""
    shared_emulator.reset()
    yield shared_emulator
    shared_emulator.faults.clear()


def make_csr(common_name: str = "device") -> tuple[str, str]:
    """A device key (PEM) and a CSR for it, as a device or factory tool would make them."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def device_csr() -> tuple[str, str]:
    return make_csr()


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    path = tmp_path / "templates"
    path.mkdir()
    return path
