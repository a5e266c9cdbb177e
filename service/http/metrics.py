"""GET /metrics: the Prometheus text exposition of every worker's metrics (service.metrics).

An admin key (`Authorization: Bearer`) by default; PROVISIONER_METRICS_REQUIRE_ADMIN=false opens it,
for a scraper on a private listener (the production shape's nginx answers 404 for it unless
PROVISIONER_PROXY_METRICS=true). No metric carries a secret or a device's name.
"""

from __future__ import annotations

from flask import Blueprint, Response

from service import metrics
from service.http import auth, context

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def exposition() -> Response:
    if context.settings().metrics_require_admin:
        auth.admin()
    response = Response(metrics.exposition(), mimetype=None, content_type=metrics.CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response
