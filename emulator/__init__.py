"""A local stand-in for AWS IoT Core fleet provisioning: a real MQTT server that behaves as AWS does.

from emulator import Emulator
with Emulator(key_algorithm="ec") as emulator:
    emulator.urls["mqtt"], emulator.claim_cert_path, emulator.registry.list_things()
"""

from emulator.config import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, EmulatorConfig
from emulator.fleet.faults import Fault
from emulator.mqtt.limits import Limits
from emulator.server import Emulator

__all__ = [
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_SECRET_ACCESS_KEY",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "Limits",
]
