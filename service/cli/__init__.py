"""The operator's command line: `python -m service <command>`, also installed as `iot-provisioner`.

    keys         create (the key is shown once), list, show, revoke
    enrollments  import a CSV (all lines or none), add, enable, disable, list
    device-cas   register, list, show, change, delete; block, unblock; crl load, crl drop
    audit        the registration records, newest first (table, json, csv); audit prune
    db           upgrade (run the migrations), status
    devices      list, show (the thing, its certificates, the audit trail), decommission, rotate
    certificates revoke, suspend, reactivate (AWS IoT disconnects the devices using one)
    orphans      the report of certificates got from AWS and not handed out; orphans sweep
    reconcile    the audit trail against AWS IoT, the differences both ways

With no command, or with gunicorn's options (`python -m service --workers 3`), it runs the server
as it always has: `make run` calls it that way. The commands read the same PROVISIONER_* settings
as the server and work on its store; they never print a stored key or the database URL.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = (
    "keys",
    "enrollments",
    "device-cas",
    "audit",
    "db",
    "devices",
    "certificates",
    "orphans",
    "reconcile",
)
OPTIONS = ("--help", "-h", "--traceback")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS + OPTIONS:
        # Imported here: the server's launcher process needs neither click nor the store.
        from service.cli.root import root

        root.main(args)  # exits with the command's status
        return 0
    from service.serving import launcher

    return launcher.run(args)
