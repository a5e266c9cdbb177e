"""The processes under test, started and stopped here: the emulator and the service (gunicorn).

Each runs as its own subprocess so psutil can tell its CPU time and memory apart from the load
generator's (this process).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from service.serving.launcher import gunicorn_command

# The service's histogram of its store's two transactions around a provision (checks, settlement).
STORE_METRIC = "provisioner_store_transaction_duration_seconds"
SETUP_TIMEOUT = 20.0  # emulator ready line, gunicorn workers ready
STOP_TIMEOUT = 10.0


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def peak_rss_bytes(process: psutil.Process) -> int:
    """The process's peak resident set since it started (Linux VmHWM), else its current RSS."""
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(process.memory_info().rss)


def free_port() -> int:
    # The port may be taken again between close and gunicorn's bind; on loopback, in a
    # benchmark that runs alone, that race is not worth more code.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(proc: subprocess.Popen[str], signum: int, what: str) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signum)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"{what} did not stop within {STOP_TIMEOUT:g} s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait(STOP_TIMEOUT)


class EmulatorProcess:
    """`python -m emulator` on free ports; `info` is the JSON line it prints when ready."""

    def __init__(
        self,
        data_dir: Path,
        log_file: IO[str],
        *,
        send_delay: float = 0.0,
        key_algorithm: str = "ec",
        listeners: Iterable[str] = ("mqtt", "ws"),
    ) -> None:
        wanted = set(listeners)
        ports = [
            arg
            for scheme in ("mqtt", "mqtts", "ws", "wss")
            for arg in (f"--{scheme}-port", "0" if scheme in wanted else "off")
        ]
        self.command = [
            sys.executable,
            "-m",
            "emulator",
            "--host",
            "127.0.0.1",
            *ports,
            "--data-dir",
            str(data_dir),
            "--key-algorithm",
            key_algorithm,
            "--send-delay",
            f"{send_delay:g}",
            # WARNING: the per-request INFO lines would cost the emulator CPU.
            "--log-level",
            "WARNING",
        ]
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=log_file, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], SETUP_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(
                f"the emulator did not report ready within {SETUP_TIMEOUT:g} s "
                f"(its log: {getattr(log_file, 'name', '?')})"
            )
        self.info: dict[str, Any] = json.loads(line)
        self.process = psutil.Process(self.proc.pid)

    def url(self, scheme: str) -> str:
        return str(self.info["listeners"][scheme])

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT, "the emulator")  # the CLI stops cleanly on SIGINT
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class ServiceProcess:
    """The service as production runs it: gunicorn, gthread workers, `service.serving.gunicorn_conf`."""

    def __init__(
        self, env: dict[str, str], log_file: IO[str], *, workers: int, cwd: Path | None = None
    ) -> None:
        """`cwd`: run the service from that checkout (python -m puts it first on sys.path)."""
        self.port = free_port()
        self.workers_wanted = workers
        self.env = {**env, "PROVISIONER_BIND": f"127.0.0.1:{self.port}", "PROVISIONER_WORKERS": str(workers)}
        self.command = gunicorn_command()
        self.proc = subprocess.Popen(
            self.command, env={**os.environ, **self.env}, stdout=log_file, stderr=log_file, text=True, cwd=cwd
        )
        self.master = psutil.Process(self.proc.pid)
        self._workers: list[psutil.Process] = []

    def wait_ready(self, pool_size: int) -> None:
        """Wait for every worker to exist and for /readyz to report a full pool several times in
        a row, each on a new connection (so the kernel spreads the checks over the workers)."""
        deadline = time.monotonic() + SETUP_TIMEOUT
        in_a_row = 0
        while in_a_row < 4 * self.workers_wanted:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode} during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service was not ready within {SETUP_TIMEOUT:g} s")
            ready = self._full_pool(pool_size) and len(self.workers()) == self.workers_wanted
            in_a_row = in_a_row + 1 if ready else 0
            time.sleep(0.02 if ready else 0.1)
        self._workers = self.workers()

    def _full_pool(self, pool_size: int) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/readyz", headers={"Authorization": f"Bearer {self._admin_key}"})
            response = connection.getresponse()
            body = json.loads(response.read() or b"{}")
        except (OSError, ValueError, http.client.HTTPException):
            return False
        finally:
            connection.close()
        return response.status == 200 and body.get("readyConnections") == pool_size

    def store_seconds(self) -> tuple[float, float]:
        """From /metrics (every worker's): the seconds the store's transactions around provisions
        took so far, and how many provisions' checks ran; (0, 0) when the service does not tell
        (an older checkout, or /metrics unreadable)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {self._admin_key}"})
            response = connection.getresponse()
            text = response.read().decode()
        except (OSError, http.client.HTTPException):
            return 0.0, 0.0
        finally:
            connection.close()
        if response.status != 200:
            return 0.0, 0.0
        seconds = checks = 0.0
        for family in text_string_to_metric_families(text):
            if family.name == STORE_METRIC:
                for sample in family.samples:
                    if sample.name == STORE_METRIC + "_sum":
                        seconds += sample.value
                    elif sample.name == STORE_METRIC + "_count" and sample.labels["transaction"] == "checks":
                        checks += sample.value
        return seconds, checks

    @property
    def _admin_key(self) -> str:
        # The pool's detail and /metrics are for admins: the bootstrap key is one.
        return self.env.get("PROVISIONER_API_KEYS", "").split(",")[0]

    def workers(self) -> list[psutil.Process]:
        try:
            return sorted(self.master.children(), key=lambda p: p.pid)
        except psutil.NoSuchProcess:
            return []

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.workers()]

    def cpu_seconds(self) -> float:
        """CPU time of the workers that served (the master only supervises)."""
        total = 0.0
        for worker in self.workers():
            try:
                total += cpu_seconds(worker)
            except psutil.NoSuchProcess:
                pass
        return total

    def peak_rss_bytes(self) -> list[int]:
        peaks = []
        for worker in self.workers():
            try:
                peaks.append(peak_rss_bytes(worker))
            except psutil.NoSuchProcess:
                pass
        return peaks

    def stop(self) -> None:
        # SIGTERM: gunicorn's graceful shutdown (workers drain their pools, then exit).
        _stop(self.proc, signal.SIGTERM, "gunicorn")
