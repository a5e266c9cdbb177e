"""A provisioned device's folder: <out>/<thingName>/ with what the device needs to connect.

certificate.pem   the device certificate AWS IoT issued
private.key       its private key (0600), made on this machine
ca.pem            the CA the device must trust for the server (only when one was given)
config.json       thingName, certificateId, deviceConfiguration (and endpoint); written last,
                  so a folder with config.json is complete
"""

from __future__ import annotations

import re
from pathlib import Path

from provisioner_client.files import SECRET, make_directory, write_atomic, write_json
from provisioner_client.results import ProvisionResult

CONFIG = "config.json"
# AWS IoT thing names are [a-zA-Z0-9:_-]{1,128}: safe as a folder name, but check, never trust.
_THING_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")


def device_folder(out_dir: Path, thing_name: str) -> Path:
    if not _THING_NAME.fullmatch(thing_name):
        raise ValueError(f"the service returned a thing name that is not AWS's form: {thing_name!r}")
    return out_dir / thing_name


def is_complete(folder: Path) -> bool:
    return (folder / CONFIG).is_file()


def write_device(
    out_dir: Path,
    result: ProvisionResult,
    private_key_pem: bytes,
    *,
    ca_pem: bytes | None,
    endpoint: str | None,
) -> Path:
    """Write the device's folder (every file atomically, config.json last); return it."""
    # 0700: the folder holds the device's private key (an existing one is made so too).
    folder = make_directory(device_folder(out_dir, result.thing_name), private=True)
    write_atomic(folder / "private.key", private_key_pem, mode=SECRET)
    write_atomic(folder / "certificate.pem", result.certificate_pem.encode("ascii"))
    if ca_pem is not None:
        write_atomic(folder / "ca.pem", ca_pem)
    config: dict[str, object] = {
        "thingName": result.thing_name,
        "certificateId": result.certificate_id,
        "deviceConfiguration": dict(result.device_configuration),
    }
    if endpoint:
        config["endpoint"] = endpoint
    write_json(folder / CONFIG, config)
    return folder
