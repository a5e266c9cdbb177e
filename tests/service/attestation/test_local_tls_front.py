"""`make run`'s shape with mutual TLS: `python -m service` in local mode (its own emulator) keeps
gunicorn's plain listener and puts nginx in front on PROVISIONER_TLS_BIND, reaching gunicorn on a
socket of its own. Only requests on that socket may carry a device certificate: the same header
sent straight to gunicorn's own listener is not believed. Needs Debian's nginx (skipped without
it, except in CI)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from attested import audit_of, device, new_csr, nginx_header, register_ca, until_trusted
from served import free_port, wait_ready

from emulator.security.idevids import Manufacturer

HAVE_NGINX = shutil.which("nginx") is not None or os.access("/usr/sbin/nginx", os.X_OK)
pytestmark = pytest.mark.skipif(
    not HAVE_NGINX and os.environ.get("CI") != "true", reason="nginx is not installed (apt-get install nginx)"
)
ADMIN_KEY = "local-tls-admin-key-0123456789"


def test_make_run_serves_devices_over_mutual_tls_and_plain_http_as_before(tmp_path: Path) -> None:
    port, tls_port = free_port(), free_port()
    data = tmp_path / "emulator-data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PROVISIONER_", "AWS_"))},
        "PROVISIONER_BIND": f"127.0.0.1:{port}",
        "PROVISIONER_TLS_BIND": f"127.0.0.1:{tls_port}",
        "PROVISIONER_EMULATOR_DATA_DIR": str(data),
        "PROVISIONER_API_KEYS": ADMIN_KEY,
        "PROVISIONER_WORKERS": "1",
        "PROVISIONER_POOL_SIZE": "2",
    }
    log = tmp_path / "service.log"
    with open(log, "ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "service"], env=env, stdout=output, stderr=output)
    base, secure = f"http://127.0.0.1:{port}", f"https://localhost:{tls_port}"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        wait_ready(base, process)
        assert b"mutual TLS: https://127.0.0.1:" in log.read_bytes()
        maker = Manufacturer.create("Local Devices")
        register_ca(
            lambda path, **kw: requests.post(base + path, headers=admin, timeout=30, **kw), maker.ca_pem()
        )
        identity = device(tmp_path / "devices", maker, "LOCAL-000001")
        trusted = data / "tls" / "ca.pem"  # local mode's CA for its TLS listener

        def over_tls() -> requests.Response:
            return requests.post(
                secure + "/provision",
                json={"csr": new_csr()},
                cert=identity.files,
                verify=str(trusted),
                timeout=30,
            )

        response = until_trusted(over_tls)
        assert response.status_code == 201, response.text
        assert response.json()["thingName"] == "demo-LOCAL-000001"
        [record] = audit_of(
            lambda path: requests.get(base + path, headers=admin, timeout=30), identity.certificate
        )
        assert record["callerAddress"] == "127.0.0.1"  # the one hop nginx forwarded on its socket

        # Straight to gunicorn's own listener, the header nginx would set is not believed.
        _, other = maker.issue("LOCAL-000002")
        forged = requests.post(
            base + "/provision",
            json={"csr": new_csr()},
            headers={"X-Client-Certificate": nginx_header(other)},
            timeout=30,
        )
        assert forged.status_code == 401, forged.text
        # API keys on the plain listener, as before.
        keyed = requests.post(
            base + "/provision",
            json={"templateName": "demo", "parameters": {"SerialNumber": "LOCAL-KEYED"}},
            headers=admin,
            timeout=30,
        )
        assert keyed.status_code == 201, keyed.text
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-3000:]
    # nginx stopped with the service: nothing listens on the TLS port any more.
    with pytest.raises(requests.ConnectionError):
        requests.get(secure + "/healthz", verify=False, timeout=5)
