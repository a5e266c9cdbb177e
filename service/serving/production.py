"""The production shape on one machine: nginx in front of gunicorn.

`python -m service.serving.production` is what `make run-production` calls. It renders
nginx.conf.template (service.serving.nginx) into a run directory, starts gunicorn on a unix socket
there and nginx listening on PROVISIONER_BIND (the public address), and stops both on Ctrl-C or
SIGTERM (gunicorn drains its requests). With no PROVISIONER_IOT_ENDPOINT it runs in local mode
against the emulator, as `make run` does.

Why the proxy is required: gunicorn's gthread worker holds a thread for a connection from its
first byte to the end of its body, so clients that trickle headers or a body hold every thread
and the service stops answering. nginx reads every request whole (within its client timeouts)
before gunicorn sees it. `bench/slow_clients.py` measures both.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from service.config import Settings, SettingsError
from service.serving import local_mode as local
from service.serving import tls
from service.serving.launcher import gunicorn_command
from service.serving.nginx import find_nginx, render_nginx_config, wait_for_socket


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.serving.production", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--run-dir", type=Path, help="socket, nginx.conf, pid, logs (default: a new temp dir)"
    )
    parser.add_argument(
        "--render",
        metavar="UPSTREAM",
        help="only print nginx.conf for gunicorn at UPSTREAM (host:port; deploy/nginx.compose.conf)",
    )
    parser.add_argument(
        "--resolver",
        metavar="ADDRESS",
        help="with --render: look UPSTREAM's name up at request time through this DNS server "
        "(compose: Docker's 127.0.0.11)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"service: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if args.render:
        print(
            render_nginx_config(
                listen=settings.bind,
                upstream=args.render,
                run_dir=args.run_dir or Path("/tmp"),
                max_body_bytes=settings.max_body_bytes,
                resolver=args.resolver,
                rate_per_address=settings.proxy_rate_per_address,
                metrics=settings.proxy_metrics,
                tls=tls.listener(settings),
            ),
            end="",
        )
        return 0
    try:
        nginx = find_nginx()
    except FileNotFoundError as exc:
        print(f"service: {exc}", file=sys.stderr)
        return 2
    run_dir = (args.run_dir or Path(tempfile.mkdtemp(prefix="provisioner-"))).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    socket_path = run_dir / "gunicorn.sock"
    socket_path.unlink(missing_ok=True)
    listen = settings.bind
    env = dict(os.environ)
    env["PROVISIONER_BIND"] = f"unix:{socket_path}"
    # Only nginx reaches this socket: the caller's address is the one hop it forwards.
    env["PROVISIONER_BEHIND_PROXY"] = "true"
    local.export_for_workers(env, listen)  # local mode: start the emulator, as `make run` does
    config = run_dir / "nginx.conf"
    secure = tls.listener(settings)
    config.write_text(
        render_nginx_config(
            listen=listen,
            upstream=f"unix:{socket_path}",
            run_dir=run_dir,
            max_body_bytes=settings.max_body_bytes,
            as_root=os.geteuid() == 0,
            rate_per_address=settings.proxy_rate_per_address,
            metrics=settings.proxy_metrics,
            tls=secure,
        )
    )
    # Their own sessions: Ctrl-C reaches only us, and we stop both gracefully (gunicorn takes
    # SIGINT as a quick shutdown that does not drain).
    gunicorn = subprocess.Popen(
        gunicorn_command(),
        env=env,
        start_new_session=True,
    )
    processes = [gunicorn]

    def stop(signum: int, frame: object) -> None:
        for process in processes:
            if process.poll() is None:  # nginx: SIGQUIT is its graceful stop; gunicorn: SIGTERM
                process.send_signal(signal.SIGTERM if process is gunicorn else signal.SIGQUIT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        wait_for_socket(socket_path, gunicorn)
        nginx_process = subprocess.Popen(
            [nginx, "-p", str(run_dir), "-c", str(config)], start_new_session=True
        )
        processes.insert(0, nginx_process)
        print(
            f"production shape: nginx on http://{listen} -> gunicorn on unix:{socket_path}\n"
            f"  nginx config in {run_dir}",
            file=sys.stderr,
            flush=True,
        )
        if secure is not None:
            print(tls.announcement(secure), file=sys.stderr, flush=True)
        while all(process.poll() is None for process in processes):
            time.sleep(0.2)
    except RuntimeError as exc:
        print(f"service: {exc}", file=sys.stderr)
    finally:
        stop(signal.SIGTERM, None)
        codes = [process.wait() for process in processes]
    return max(codes, key=abs)


if __name__ == "__main__":
    sys.exit(main())
