"""AWS IoT's control plane (service.aws.control), beside service.mqtt (the data plane): the only
code that talks to it. service.lifecycle uses it to manage what the service issued."""

from service.aws.control import (
    Certificate,
    ControlPlane,
    ControlPlaneHolder,
    Issued,
    Target,
    Thing,
    certificate_id_of,
    target_of,
)
from service.aws.errors import ControlPlaneRejected, ControlPlaneUnavailable

__all__ = [
    "Certificate",
    "ControlPlane",
    "ControlPlaneHolder",
    "ControlPlaneRejected",
    "ControlPlaneUnavailable",
    "Issued",
    "Target",
    "Thing",
    "certificate_id_of",
    "target_of",
]
