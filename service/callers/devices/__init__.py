"""Devices that prove who they are: registered device CAs (enrollment groups), chain checks and the
parameters a device certificate gives its provision.

    groups.register / change / block / put_crl     an operator's CA, block list and CRL, checked
    Trust(store.device_cas).verify(chain)          -> DeviceIdentity, or a DeviceRefused saying why
    require_new_key(identity.public_key, csr)      the operational key must not be the IDevID's
    identity.parameters_with(body_parameters)      the body adds only what the group leaves open
"""

from service.callers.devices.certificates import (
    PresentedCertificate,
    describe,
    fingerprint,
    load_chain,
    require_new_key,
)
from service.callers.devices.groups import DeviceCaSpec
from service.callers.devices.model import DeviceGroup, DeviceIdentity
from service.callers.devices.parameters import SOURCES, ParameterSource
from service.callers.devices.trust import CaTrust, Trust

__all__ = [
    "SOURCES",
    "CaTrust",
    "DeviceCaSpec",
    "DeviceGroup",
    "DeviceIdentity",
    "ParameterSource",
    "PresentedCertificate",
    "Trust",
    "describe",
    "fingerprint",
    "load_chain",
    "require_new_key",
]
