"""The operator web page at /ui/: static HTML, CSS and JavaScript modules, no build step.

The page signs in with an API key (kept in the tab's sessionStorage) and calls the JSON API itself;
these views only serve files. Device keys and CSRs are made in the browser (WebCrypto and the
vendored @peculiar/x509): no private key passes through here.

GET /ui/             the page
GET /ui/static/...   its CSS, modules and vendored libraries
GET /ui/ca.pem       the CA the service trusts for the broker (PROVISIONER_CA_FILE), for device bundles
"""

from __future__ import annotations

from flask import Blueprint, Response, redirect

from service.errors import NotFound
from service.http import context

blueprint = Blueprint("ui", __name__, url_prefix="/ui", static_folder="static")

# Everything from this origin, nothing inline, nothing framed: a page that holds an API key and
# private keys must not run anyone else's script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@blueprint.after_request
def _lock_down(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response


@blueprint.get("")
def page_without_slash() -> Response:
    return redirect("/ui/", 308)  # type: ignore[return-value]


@blueprint.get("/")
def page() -> Response:
    response = blueprint.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.get("/ca.pem")
def ca_certificate() -> Response:
    # The broker's CA is the one a device must trust to reach the same endpoint; it is public.
    ca_file = context.settings().ca_file
    if ca_file is None:
        raise NotFound(
            "PROVISIONER_CA_FILE is not set: the service trusts the system's CAs. Devices connecting "
            "to AWS IoT Core trust Amazon Root CA 1 (https://www.amazontrust.com/repository/AmazonRootCA1.pem)."
        )
    return Response(ca_file.read_bytes(), mimetype="application/x-pem-file")
