"""AWS IoT's control plane over HTTP(S), as boto3 and the AWS CLI call it with `endpoint_url`.

    http.py          HTTP/1.1 (h11) on asyncio streams: bounded heads, bodies and waits
    service.py       ControlPlane: SigV4, routing, the handler, every error rendered once
    routes.py        the route table: method + path -> operation -> handler
    inputs.py        one call's inputs checked against botocore's model; paging tokens
    things.py        DescribeEndpoint, things and their principals
    certificates.py  certificates: describe, list, status, delete, create from a CSR
    policies.py      policies attached to certificates
    arns.py          the account's ARNs; the certificate a principal names
    account.py       what every handler is given

The rules about what may change (REVOKED is final, delete only when inactive and detached) are
the registry's, so fleet provisioning over MQTT and this plane share them.
"""
