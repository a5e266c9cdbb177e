"""The lifecycle features over real HTTP: the service app (its store in tmp_path) on the shared
emulator, its control plane the emulator's over HTTPS (trusting the emulator's CA), signed with the
emulator's test pair. No background sweep: a test sweeps when it means to.

Fixtures
    lifecycle_env   the PROVISIONER_* settings that point the control plane at the emulator
    lifecycle_api   start_service(**lifecycle_env): an ApiClient (every answer checked against
                    openapi.yaml) with the bootstrap admin key
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emulator import Emulator


@pytest.fixture
def lifecycle_env(emulator: Emulator) -> dict[str, str]:
    return {
        "PROVISIONER_CONTROL_ENDPOINT": emulator.urls["control-tls"],
        "PROVISIONER_CONTROL_CA_FILE": str(emulator.ca_path),
        "PROVISIONER_ORPHAN_SWEEP_SECONDS": "0",
        "PROVISIONER_ORPHAN_GRACE_SECONDS": "0",
    }


@pytest.fixture
def lifecycle_api(start_service: Callable[..., object], lifecycle_env: dict[str, str]) -> object:
    return start_service(**lifecycle_env)
