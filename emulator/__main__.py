"""`python -m emulator`: run the AWS IoT fleet-provisioning emulator, or look into its registry.

    python -m emulator [--host 127.0.0.1] [--mqtt-port 1883] [--wss-port 8443] ... [--fault SPEC]
    python -m emulator list things|certificates|policies [--status ACTIVE] [--data-dir DIR]
    python -m emulator check-template FILE [--param NAME=VALUE ...] [--json]
    python -m emulator idevids --count 100 --out DIR   (a manufacturer CA and IDevIDs, for tests)

Once every listener accepts, one JSON line goes to stdout with the listener URLs and the CA and
claim certificate paths; logs go to stderr. Ctrl-C (or SIGTERM) stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path

from emulator.config import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, EmulatorConfig
from emulator.errors import ConfigError, EmulatorError
from emulator.fleet.faults import parse_spec
from emulator.mqtt.limits import Limits
from emulator.registry import Registry

DEFAULT_DATA_DIR = Path(".emulator-data")


def _port(value: str) -> int | None:
    if value.lower() in ("off", "none", "-"):
        return None
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} out of range")
    return port


# Options that each set the EmulatorConfig field of their name.
# The listeners' ports: (field, default, what listens there).
PORTS = (
    ("mqtt_port", "1883", "plain MQTT over TCP"),
    ("mqtts_port", "8883", "MQTT over TLS with client certificates"),
    ("ws_port", "8080", "MQTT over WebSocket with SigV4"),
    ("wss_port", "8443", "MQTT over WebSocket+TLS with SigV4"),
    # A free port by default: launchers that name only the MQTT ports (the service's local
    # mode, the benchmarks) must not collide on a fixed one. The ready line gives the URL.
    ("control_port", "0", "AWS IoT's control plane over HTTP, SigV4 (boto3, aws iot --endpoint-url)"),
    ("control_tls_port", "0", "the control plane over HTTPS"),
)
# Durations in seconds: (option, field, default, help).
SECONDS = (
    (
        "--disconnect-delay",
        "certificate_disconnect_delay",
        1.0,
        "close a certificate's connections this long after it leaves ACTIVE (default 1)",
    ),
    (
        "--token-lifetime",
        "token_lifetime",
        3600.0,
        "ownership tokens and their unredeemed certificates live this long (AWS: 3600)",
    ),
    ("--send-delay", "send_delay", 0.0, "delay every packet sent, to simulate a network round trip"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Local AWS IoT Core fleet-provisioning emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    for field, default, what in PORTS:
        parser.add_argument(
            "--" + field.replace("_", "-"),
            type=_port,
            default=_port(default),
            help=f"{what} (default {default}; 0 = any free port, off = disabled)",
        )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="CA, claim certificate and registry (default ./.emulator-data)",
    )
    parser.add_argument(
        "--templates-dir",
        type=Path,
        default=None,
        help="directory of <name>.json provisioning templates (default: demo)",
    )
    parser.add_argument(
        "--credentials",
        action="append",
        default=[],
        metavar="KEY_ID:SECRET",
        help="SigV4 credentials to accept (repeatable; default "
        f"{DEFAULT_ACCESS_KEY_ID}:<AWS's documentation example secret>)",
    )
    parser.add_argument(
        "--require-active-certificates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TLS clients connect only with ACTIVE certificates, as with AWS (default); "
        "--no-require-active-certificates also lets PENDING_ACTIVATION and unknown ones in",
    )
    for option, field, seconds, text in SECONDS:
        parser.add_argument(option, dest=field, type=float, default=seconds, metavar="SECONDS", help=text)
    parser.add_argument(
        "--endpoint-address",
        default=None,
        metavar="HOST",
        help="what DescribeEndpoint answers (default: --host)",
    )
    parser.add_argument(
        "--key-algorithm",
        choices=["rsa", "ec"],
        default="rsa",
        help="CreateKeysAndCertificate keys: rsa (AWS's RSA 2048) or ec (fast)",
    )
    parser.add_argument(
        "--strict-parameters",
        action="store_true",
        help="refuse the capitalised 'Parameters' key in RegisterThing",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. register_thing:latency=0.5 (see docs)",
    )
    parser.add_argument("--max-payload-bytes", type=int, default=Limits.max_payload_bytes)
    parser.add_argument("--log-level", default="INFO")
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    credentials = {DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET_ACCESS_KEY}
    if args.credentials:
        credentials = {}
        for pair in args.credentials:
            key_id, sep, secret = pair.partition(":")
            if not sep or not key_id or not secret:
                raise ConfigError("--credentials takes KEY_ID:SECRET")
            credentials[key_id] = secret
    fields = [field for field, _, _ in PORTS] + [field for _, field, _, _ in SECONDS]
    return EmulatorConfig(
        host=args.host,
        data_dir=args.data_dir,
        templates_dir=args.templates_dir,
        credentials=credentials,
        require_active_certificates=args.require_active_certificates,
        endpoint_address=args.endpoint_address,
        key_algorithm=args.key_algorithm,
        strict_parameters=args.strict_parameters,
        limits=dataclasses.replace(Limits(), max_payload_bytes=args.max_payload_bytes),
        **{field: getattr(args, field) for field in fields},
    )


async def _run(args: argparse.Namespace) -> None:
    from emulator.server import Emulator

    emulator = Emulator(config_from_args(args))
    for spec in args.fault:
        operation, fault = parse_spec(spec)
        # With a chance, several --fault values for one operation make a mix.
        (emulator.add_fault if fault.chance is not None else emulator.set_fault)(operation, fault)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(emulator.serve())
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, emulator.request_stop)
    while not emulator.is_ready() and not task.done():
        await asyncio.sleep(0.01)
    if not task.done():
        print(json.dumps(emulator.ready_info()), flush=True)
    await task
    emulator.registry.close()


def _list(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator list")
    parser.add_argument("what", choices=["things", "certificates", "policies", "templates-used"])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--status",
        choices=["ACTIVE", "INACTIVE", "REVOKED", "PENDING_ACTIVATION"],
        help="certificates: only those with this status",
    )
    args = parser.parse_args(argv)
    database = args.data_dir / "registry.sqlite3"
    if not database.exists():
        print(f"no registry at {database}", file=sys.stderr)
        return 1
    registry = Registry(database)
    rows = {
        "things": registry.list_things,
        "certificates": registry.list_certificates,
        "policies": registry.list_policies,
        "templates-used": registry.list_template_uses,
    }[args.what]()
    registry.close()
    if args.status is not None:
        if args.what != "certificates":
            parser.error("--status filters certificates only")
        rows = [row for row in rows if row["status"] == args.status]
    print(json.dumps(rows, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["list"]:
        return _list(argv[1:])
    if argv[:1] == ["idevids"]:
        from emulator.security.idevids import main as idevids

        return idevids(argv[1:])
    if argv[:1] == ["check-template"]:
        from emulator.fleet.template_check import main as check_template

        return check_template(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_run(args))
    except EmulatorError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"emulator: cannot listen on {args.host}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
