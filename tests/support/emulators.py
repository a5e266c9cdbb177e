"""Emulators a test builds for itself, beside the shared `emulator` fixture: one with nothing but
its plain MQTT listener, and one started again on the ports of another. Neither is started here."""

from __future__ import annotations

from pathlib import Path

from emulator import Emulator, Limits


def plain_mqtt_only(data_dir: Path, limits: Limits) -> Emulator:
    """An emulator with these limits and no TLS or WebSocket listener (`with` starts and stops it)."""
    return Emulator(
        data_dir=data_dir,
        limits=limits,
        key_algorithm="ec",
        key_pool_size=1,
        mqtts_port=None,
        ws_port=None,
        wss_port=None,
    )


def on_the_ports_of(ports: dict[str, int], data_dir: Path, key_pool_size: int) -> Emulator:
    """An emulator on the MQTT, MQTTS, WS and WSS `ports` of one that stopped, with its CA and
    registry from `data_dir`: to a service, the same AWS IoT endpoint coming back."""
    return Emulator(
        data_dir=data_dir,
        key_algorithm="ec",
        key_pool_size=key_pool_size,
        mqtt_port=ports["mqtt"],
        mqtts_port=ports["mqtts"],
        ws_port=ports["ws"],
        wss_port=ports["wss"],
    )
