"""iot-factory: provision devices at the factory through the provisioning service.

    iot-factory device --template demo --param SerialNumber=SN-1 --out devices
    iot-factory batch --csv serials.csv --template demo --out devices --concurrency 4
    iot-factory whoami

The service URL and API key come from --url/--api-key or IOT_FACTORY_URL/IOT_FACTORY_API_KEY (the
environment is better for the key: a command line is visible to every user of the machine).
Exit status: 0 all done, 1 a device failed, 2 a usage error, 130 interrupted (Ctrl-C or SIGTERM:
a batch lets the devices under way finish first; a second signal abandons them).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from provisioner_client import keys
from provisioner_client.batch import Batch, CsvProblem, Outcome, Report, Row, read_rows
from provisioner_client.client import Client
from provisioner_client.errors import ProvisionerError
from provisioner_client.messages import explain
from provisioner_client.outputs import write_device
from provisioner_client.summary import print_summary, write_failures
from provisioner_client.terminal import plain, shown

F = TypeVar("F", bound=Callable[..., Any])
AMAZON_ROOT_CA = "https://www.amazontrust.com/repository/AmazonRootCA1.pem"
INTERRUPTED = 130

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", ctx, param)
        pairs[name.strip()] = rest.strip()
    return pairs


@dataclass(frozen=True)
class ServiceOptions:
    """Where the service is and how to reach it."""

    url: str
    api_key: str | None = field(repr=False)  # never printed, not even in a traceback's locals
    timeout: float


@dataclass(frozen=True)
class DeviceOptions:
    """What a device is provisioned with and what its folder gets."""

    template: str
    out_dir: Path
    use_rsa: bool
    ca_file: Path | None
    iot_endpoint: str | None


def _options(group: type[Any], name: str, *options: Callable[[F], F]) -> Callable[[F], F]:
    """A decorator adding these options to a command, in this order; their values reach the
    command as one `group` (a dataclass with a field per option), its parameter `name`."""
    fields = [field.name for field in dataclasses.fields(group)]

    def add(command: F) -> F:
        @functools.wraps(command)
        def run(**values: Any) -> Any:
            grouped = group(**{field: values.pop(field) for field in fields})
            return command(**values, **{name: grouped})

        for option in reversed(options):
            run = option(run)
        return cast(F, run)

    return add


service_options = _options(
    ServiceOptions,
    "service",
    click.option(
        "--url",
        envvar="IOT_FACTORY_URL",
        default="http://127.0.0.1:8000",
        show_default=True,
        show_envvar=True,
        help="The provisioning service.",
    ),
    click.option(
        "--api-key",
        envvar="IOT_FACTORY_API_KEY",
        show_envvar=True,
        help="The API key (better from the environment). Never printed.",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=30,
        show_default=True,
        help="Seconds for one request.",
    ),
)
device_options = _options(
    DeviceOptions,
    "target",
    click.option(
        "--template",
        envvar="IOT_FACTORY_TEMPLATE",
        required=True,
        show_envvar=True,
        help="The fleet provisioning template.",
    ),
    click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default="devices",
        show_default=True,
        help="Each device gets the folder OUT/<thingName>/.",
    ),
    click.option("--rsa", "use_rsa", is_flag=True, help="RSA 2048 keys instead of EC P-256."),
    click.option(
        "--ca-file",
        envvar="IOT_FACTORY_CA_FILE",
        show_envvar=True,
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="The CA the device must trust, copied to ca.pem (Amazon Root CA 1 for AWS IoT; "
        "the emulator's <data dir>/ca.pem in local mode).",
    ),
    click.option(
        "--iot-endpoint",
        envvar="IOT_FACTORY_IOT_ENDPOINT",
        show_envvar=True,
        help="The AWS IoT endpoint, written to config.json.",
    ),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Provision devices through the provisioning service; keys are made on this machine."""


@cli.command()
@service_options
@device_options
@click.option(
    "--param",
    "parameters",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_pairs,
    help="A template parameter (repeat it).",
)
def device(service: ServiceOptions, target: DeviceOptions, parameters: dict[str, str]) -> None:
    """Provision one device: make its key here, send only the CSR, write its folder."""
    ca_pem = _read_ca(target.ca_file)
    key = keys.make_key(use_rsa=target.use_rsa)
    csr = keys.make_csr(key, parameters.get("SerialNumber") or "device")
    with _client(service, max_retries=3, deadline=120) as client, _service_errors():
        result = client.provision(target.template, parameters, csr.decode("ascii"))
    if not keys.certificate_matches_key(result.certificate_pem, key):
        err.print("[red]The service returned a certificate for another key; nothing was written.[/]")
        raise click.exceptions.Exit(1)
    try:
        folder = write_device(
            target.out_dir, result, keys.key_pem(key), ca_pem=ca_pem, endpoint=target.iot_endpoint
        )
    except OSError as error:
        err.print(
            f"[red]✗[/] {shown(result.thing_name)} was provisioned but its files cannot be written "
            f"({shown(str(error))}): revoke certificate {shown(result.certificate_id)} and try again."
        )
        raise click.exceptions.Exit(1) from None
    _warn_without_ca(ca_pem)
    out.print(
        f"[green]✓[/] {shown(result.thing_name)} provisioned "
        f"(certificate {shown(result.certificate_id[:12])}…) → {shown(str(folder))}/"
    )


@cli.command()
@service_options
@device_options
@click.option(
    "--csv",
    "csv_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="One device per row; the header names the columns.",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="PARAMETER=COLUMN",
    callback=_pairs,
    help="Send COLUMN as PARAMETER (repeat it); without it every column is the parameter of its name.",
)
@click.option(
    "--param",
    "constants",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_pairs,
    help="A parameter with the same value for every row.",
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--max-retries",
    type=click.IntRange(0, 20),
    default=6,
    show_default=True,
    help="Resends of one device on 429/503/lost connections (same Idempotency-Key).",
)
@click.option(
    "--failures",
    "failures_csv",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to list the failed rows [default: OUT/failures.csv].",
)
def batch(
    service: ServiceOptions,
    target: DeviceOptions,
    csv_file: Path,
    columns: dict[str, str],
    constants: dict[str, str],
    concurrency: int,
    max_retries: int,
    failures_csv: Path | None,
) -> None:
    """Provision one device per CSV row; rerun the same command to finish an interrupted batch."""
    ca_pem = _read_ca(target.ca_file)
    try:
        rows = read_rows(csv_file, columns, constants)
    except CsvProblem as problem:
        raise click.UsageError(plain(problem)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise click.UsageError(plain(f"cannot read {csv_file}: {error}")) from None
    out_dir = target.out_dir
    failures_csv = failures_csv or out_dir / "failures.csv"
    _warn_without_ca(ca_pem)
    with _client(service, max_retries=max_retries, deadline=600) as client:
        work = Batch(
            client,
            target.template,
            out_dir,
            use_rsa=target.use_rsa,
            ca_pem=ca_pem,
            endpoint=target.iot_endpoint,
        )
        try:
            known, todo = work.prepare(rows)
        except OSError as error:
            raise click.ClickException(plain(f"cannot use {out_dir}: {error}")) from None
        report = Report(total=len(rows), outcomes=list(known))
        try:
            _run_with_progress(work, todo, report, concurrency)
        except KeyboardInterrupt:  # the second Ctrl-C: abandon what is under way
            report.interrupted = True
            _finish(report, failures_csv)
            err.print("Abandoned the devices under way; the next run recovers them.")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(INTERRUPTED)  # worker threads may still wait on the network
    _finish(report, failures_csv)
    if report.interrupted:
        raise click.exceptions.Exit(INTERRUPTED)
    if not report.succeeded:
        raise click.exceptions.Exit(1)


@cli.command()
@service_options
def whoami(service: ServiceOptions) -> None:
    """Check the API key: its id, role and the templates it may use."""
    with _client(service, max_retries=0, deadline=service.timeout) as client, _service_errors():
        identity = client.whoami()
    templates = identity.scope.get("templates")
    out.print(
        plain(
            f"key {identity.key_id}, role {identity.role}, templates: "
            f"{', '.join(templates) if templates is not None else 'any'}"
        ),
        markup=False,
        emoji=False,
    )


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "-/s")


def _run_with_progress(work: Batch, todo: list[Row], report: Report, concurrency: int) -> None:
    progress = Progress(
        TextColumn("provisioning"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    )

    def on_outcome(outcome: Outcome) -> None:
        progress.advance(task)
        if outcome.state == "failed":
            progress.console.print(f"[red]✗[/] line {outcome.row.line}: {shown(outcome.reason)}")

    with progress:
        task = progress.add_task("provisioning", total=report.total, completed=len(report.outcomes))
        work.run(todo, report, concurrency=concurrency, on_outcome=on_outcome)


def _finish(report: Report, failures_csv: Path) -> None:
    try:
        write_failures(report, failures_csv)
    except OSError as error:
        err.print(f"[red]Cannot write {shown(str(failures_csv))}: {shown(str(error))}[/]")
        failures_csv = Path("-")
    print_summary(out, report, failures_csv if report.failures else None)


def _read_ca(ca_file: Path | None) -> bytes | None:
    if ca_file is None:
        return None
    data = ca_file.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise click.BadParameter(f"{ca_file} is not a PEM certificate", param_hint="--ca-file")
    return data


def _warn_without_ca(ca_pem: bytes | None) -> None:
    if ca_pem is None:
        err.print(
            "[yellow]No --ca-file: no ca.pem written.[/] For AWS IoT give Amazon Root CA 1 "
            f"({AMAZON_ROOT_CA}); in local mode the emulator's CA, .emulator-data/ca.pem."
        )


@contextmanager
def _client(service: ServiceOptions, **options: Any) -> Iterator[Client]:
    if not service.api_key:
        raise click.UsageError("no API key: set IOT_FACTORY_API_KEY (or pass --api-key)")
    try:
        client = Client(service.url, service.api_key, timeout=service.timeout, **options)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--url") from None
    with client:
        yield client


@contextmanager
def _service_errors() -> Iterator[None]:
    try:
        yield
    except ProvisionerError as error:
        err.print(f"[red]✗[/] {shown(explain(error))}")
        raise click.exceptions.Exit(1) from None


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both raise KeyboardInterrupt, which a batch handles gracefully.

    Installed explicitly: a process started with SIGINT ignored (a background job of a shell or a
    factory script) inherits SIG_IGN, and Python then leaves Ctrl-C ignored; SIGTERM (a supervisor
    stopping the line) would otherwise kill the batch without recording the devices under way.
    """

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    _stop_on_signals()
    cli(prog_name="iot-factory")
