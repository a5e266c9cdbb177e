"""The root command: settings and store for the commands, and the one place errors become exits.

Exit status: 0 done; 1 the command could not be done (a ServiceError: not found, database
unavailable, a CSV with bad lines); 2 bad input or settings (click's usage errors too).
"""

from __future__ import annotations

from typing import Any, NoReturn

import click

from service.cli import audit, database, device_cas, devices, enrollments, keys, orphans
from service.cli.context import Runtime
from service.config import SettingsError
from service.errors import InvalidInput, ServiceError

EPILOG = (
    "With no command it runs the server under gunicorn (what `make run` does); gunicorn's options "
    "pass through, e.g. `python -m service --workers 3`. Commands read the same PROVISIONER_* "
    "settings as the server and work on its database."
)


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as error:
            _fail(str(error), 2)
        except InvalidInput as error:
            _fail(error.detail, 2)
        except ServiceError as error:
            _fail(error.detail, 1)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:
            if ctx.params.get("traceback"):
                raise
            # A bug, or a database URL the driver cannot use: its message may quote the URL.
            _fail(
                f"unexpected {type(error).__name__} (message withheld: it may quote the database URL; "
                "check PROVISIONER_DATABASE_URL, or add --traceback first to see it)",
                1,
            )


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(status)


@click.group(
    cls=_Root,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--traceback", is_flag=True, hidden=True, help="Show an unexpected error's traceback.")
@click.pass_context
def root(ctx: click.Context, traceback: bool) -> None:
    """Provisioning-as-a-service for AWS IoT Core: the operator's commands."""
    runtime = ctx.ensure_object(Runtime)
    ctx.call_on_close(runtime.close)


root.add_command(keys.group)
root.add_command(enrollments.group)
root.add_command(device_cas.group)
root.add_command(audit.group)
root.add_command(database.group)
root.add_command(devices.group)
root.add_command(devices.certificates_group)
root.add_command(orphans.group)
root.add_command(orphans.reconcile_command)
