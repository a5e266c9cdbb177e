"""Errors of AWS IoT's control plane, in the service's one tree (service.errors.ServiceError):

    ServiceError
    ├── ControlPlaneUnavailable     503: the control plane cannot be used (no AWS credentials or
    │                               region, credentials AWS refuses) or reached (+ Retry-After)
    └── AwsRejected
        └── ControlPlaneRejected    AWS IoT answered an error: 404 no such resource, 409 a state
                                    or deletion rule, 422 a value AWS refuses, 429 throttled
                                    (+ Retry-After), 502 anything else; AWS's `errorCode` and
                                    `errorMessage` and the `operation` are passed through

Only `service.aws.control` raises them (botocore's exceptions are converted there, once).
Messages never hold a credential: AWS's own messages name resources, never secrets.
"""

from __future__ import annotations

from service.errors import AwsRejected, ServiceError


class ControlPlaneUnavailable(ServiceError):
    status = 503
    slug = "control-plane-unavailable"
    title = "AWS IoT's control plane cannot be used"


class ControlPlaneRejected(AwsRejected):
    slug = "control-plane-rejected"
    title = "AWS IoT's control plane refused the request"
